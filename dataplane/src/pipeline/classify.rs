//! The first stage: which port, which ethertype; ARP is answered and learnt from here, and
//! link-local multicast is sent up to the kernel twin.

use super::{Action, Pipeline, PortSetup, Refusal};
use crate::neigh::ArpOutcome;
use crate::packet::eth::{self, EthHdr};
use crate::packet::ipv4::Ipv4Hdr;
use crate::stats::{DropReason, Event};

impl Pipeline {
    /// IPv6's established fast path first; then the frame's port and Ethernet header: IPv4 and
    /// IPv6 for us go on, ARP is handled, the rest is dropped. Out of line: inlined behind
    /// IPv4's fast path in `process_buf`, the stages made that fast path dearer, and a new
    /// connection's packet too.
    #[inline(never)]
    pub(super) fn classify(&self, in_port: u16, frame: &mut [u8]) -> Result<Action, Refusal> {
        // IPv6's fast path is tried here, not beside IPv4's in `process_buf`: there it cost
        // every IPv4 packet of an established connection 16-18 instructions
        // (benches/RESULTS.md). First, before anything is counted or changed, as it requires;
        // every frame IPv4's declined pays its first test (a new IPv4 connection's too).
        if let Some(action) = self.fast_established6(in_port, frame) {
            return Ok(action);
        }
        let port = self
            .dp
            .ports
            .get(usize::from(in_port))
            .ok_or(DropReason::BadPort)?;
        let eth = EthHdr::parse(frame).ok_or(DropReason::Truncated)?;
        match eth.ethertype {
            eth::ETHERTYPE_IPV4 => {
                if eth.dst != port.mac {
                    return Err(if eth::is_multicast(&eth.dst) {
                        self.link_multicast(in_port, &eth, frame)
                    } else {
                        Refusal::Drop(DropReason::NotForUs)
                    });
                }
                self.ipv4(in_port, port, &eth, frame)
            }
            eth::ETHERTYPE_IPV6 => {
                // Neighbour solicitations come to a solicited-node group's MAC (33:33:ff:..).
                let group = eth.dst != port.mac;
                if group && !eth::is_multicast(&eth.dst) {
                    return Err(Refusal::Drop(DropReason::NotForUs));
                }
                self.ipv6(in_port, port, &eth, frame, group)
            }
            eth::ETHERTYPE_ARP => self.arp(in_port, port, &eth, frame).map_err(Refusal::Drop),
            t if eth::is_vlan(t) => Err(Refusal::Drop(DropReason::Vlan)),
            _ => Err(Refusal::Drop(DropReason::NotIpv4)),
        }
    }

    /// IPv4 to a group MAC: link-local multicast (224.0.0.0/24, to the group's own MAC: VRRP
    /// adverts, IPVS sync) goes up to the ingress port's twin, within the exception path's
    /// rate; everything else (broadcast, other groups, a port without a twin) is dropped as
    /// `l2_multicast`. rvs routes no multicast: only the kernel behind the twin listens.
    fn link_multicast(&self, in_port: u16, hdr: &EthHdr, frame: &[u8]) -> Refusal {
        let refused = Refusal::Drop(DropReason::L2Multicast);
        if !self.dp.kernel.has_twin(in_port) {
            return refused;
        }
        let Some(Ok(ip)) = frame.get(eth::HDR_LEN..).map(Ipv4Hdr::parse_any) else {
            return refused;
        };
        let link_local = ip.dst.octets()[..3] == [224, 0, 0];
        // As the unicast path's martian source check: never from a group, special address,
        // one of ours or a VIP (our own advert looped back by a switch).
        if !link_local
            || hdr.dst != eth::ipv4_multicast_mac(ip.dst)
            || self.dp.is_martian(ip.src)
            || self.is_local(ip.src)
            || self.snap.is_vip(ip.src)
        {
            return refused;
        }
        Refusal::Local(DropReason::L2Multicast)
    }

    /// Whether ARP for `ip` on `in_port` is answered: an address the port holds now (see
    /// `owned`: a VRRP instance's only while it holds it), or on a port that holds VIPs, a VIP
    /// that no instance names.
    fn answers_arp(&self, in_port: u16, port: &PortSetup, ip: std::net::Ipv4Addr) -> bool {
        self.owned.owns(in_port, ip)
            || (port.holds_vips() && self.snap.is_vip(ip) && !self.owned.is_managed(ip))
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
            |ip| port.on_link(ip) && !self.is_local(ip),
            |ip| self.answers_arp(in_port, port, ip),
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
