//! The first stage: which port, which ethertype; ARP is answered and learnt from here.

use super::{Action, Pipeline, PortSetup, Refusal};
use crate::neigh::ArpOutcome;
use crate::packet::eth::{self, EthHdr};
use crate::stats::{DropReason, Event};

impl Pipeline {
    /// The frame's port and Ethernet header: IPv4 for us goes on, ARP is handled, the rest is
    /// dropped.
    pub(super) fn classify(&self, in_port: u16, frame: &mut [u8]) -> Result<Action, Refusal> {
        let port = self
            .dp
            .ports
            .get(usize::from(in_port))
            .ok_or(DropReason::BadPort)?;
        let eth = EthHdr::parse(frame).ok_or(DropReason::Truncated)?;
        match eth.ethertype {
            eth::ETHERTYPE_IPV4 => {
                if eth.dst != port.mac {
                    return Err(Refusal::Drop(if eth::is_multicast(&eth.dst) {
                        DropReason::L2Multicast
                    } else {
                        DropReason::NotForUs
                    }));
                }
                self.ipv4(in_port, port, &eth, frame)
            }
            eth::ETHERTYPE_ARP => self.arp(in_port, port, &eth, frame).map_err(Refusal::Drop),
            t if eth::is_vlan(t) => Err(Refusal::Drop(DropReason::Vlan)),
            _ => Err(Refusal::Drop(DropReason::NotIpv4)),
        }
    }

    /// ARP: learns the sender, answers requests for our addresses (and, on ports that hold
    /// them, the VIPs); everything else is consumed.
    fn arp(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
    ) -> Result<Action, DropReason> {
        if hdr.dst != port.mac && hdr.dst != eth::BROADCAST {
            return Err(DropReason::NotForUs);
        }
        let outcome = self.dp.neigh.arp_input(
            in_port,
            port.mac,
            frame,
            |ip| port.on_link(ip) && !self.dp.is_local(ip),
            |ip| port.owns(ip) || (port.holds_vips() && self.snap.is_vip(ip)),
        );
        match outcome.ok_or(DropReason::Malformed)? {
            ArpOutcome::Replied => {
                self.stats().event(Event::ArpReplied);
                Ok(Action::Tx(in_port))
            }
            ArpOutcome::NotOurs => Err(DropReason::ArpNotOurs),
            ArpOutcome::Consumed => Err(DropReason::ArpReply),
        }
    }
}
