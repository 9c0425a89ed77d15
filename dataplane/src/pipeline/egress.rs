//! The way out: plain routing, the route and MTU check, and the L2 header (or a hold while
//! the next hop's MAC is unknown).

use super::icmp_error::IcmpError;
use super::{Action, Pipeline, Refusal};
use crate::frag::FragVerdict;
use crate::packet::eth;
use crate::packet::ipv4::{self, Ipv4Hdr};
use crate::stats::{DropReason, Event};
use std::net::Ipv4Addr;

impl Pipeline {
    /// Plain IPv4 routing with the TTL decremented. TTL <= 1 and over-MTU packets are dropped
    /// and counted (`ttl_expired`, `mtu_exceeded`) and answered with the ICMP error a router
    /// sends. A first fragment's decision (routed) is recorded for the later fragments.
    pub(super) fn forward(&self, frame: &mut [u8], ip: &Ipv4Hdr) -> Result<Action, Refusal> {
        if ip.ttl <= 1 {
            return Err(Refusal::Answer(
                DropReason::TtlExpired,
                IcmpError::TTL_EXCEEDED,
            ));
        }
        let (out, next_hop) = self.egress(ip.dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        ipv4::decrement_ttl(l3).ok_or(DropReason::Malformed)?;
        if ip.frag_offset() == 0 {
            self.record_fragment(ip, FragVerdict::Route);
        }
        self.stats().event(Event::Forwarded);
        Ok(self.l2_out(frame, out, next_hop))
    }

    /// Route lookup plus the egress MTU check (over it with DF set: ICMP fragmentation needed
    /// with the egress MTU as next-hop MTU).
    pub(super) fn egress(&self, dst: Ipv4Addr, ip: &Ipv4Hdr) -> Result<(u16, Ipv4Addr), Refusal> {
        let (out, next_hop) = self.dp.route(dst).ok_or(DropReason::NoRoute)?;
        let mtu = self
            .dp
            .ports
            .get(usize::from(out))
            .map_or(0, |p| usize::from(p.mtu));
        if ip.total_len > mtu {
            return Err(if ip.dont_fragment() {
                Refusal::Answer(DropReason::MtuExceeded, IcmpError::frag_needed(mtu))
            } else {
                Refusal::Drop(DropReason::MtuExceeded)
            });
        }
        Ok((out, next_hop))
    }

    pub(super) fn l2_out(&self, frame: &mut [u8], port: u16, next_hop: Ipv4Addr) -> Action {
        if self.fill_l2(port, next_hop, frame) {
            Action::Tx(port)
        } else {
            if let Some(p) = self.dp.ports.get(usize::from(port)) {
                // The source MAC is known already; the destination follows in fill_l2.
                let _ = eth::set_macs(frame, &[0; 6], &p.mac);
            }
            self.stats().event(Event::Held);
            Action::Hold { port, next_hop }
        }
    }
}
