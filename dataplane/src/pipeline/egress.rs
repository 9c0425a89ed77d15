//! The way out: plain routing, the route and MTU check, and the L2 header (or a hold while
//! the next hop's MAC is unknown).

use super::family::IpHeader;
use super::icmp_error::IcmpError;
use super::{Action, Pipeline, Refusal};
use crate::frag::FragVerdict;
use crate::packet::eth;
use crate::stats::{DropReason, Event};
use std::net::IpAddr;

impl Pipeline {
    /// Plain routing with the TTL (hop limit) decremented. TTL <= 1 and over-MTU packets are dropped
    /// and counted (`ttl_expired`, `mtu_exceeded`) and answered with the ICMP error a router
    /// sends. A first fragment's decision (routed) is recorded for the later fragments.
    pub(super) fn forward<H: IpHeader>(&self, frame: &mut [u8], ip: &H) -> Result<Action, Refusal> {
        if ip.hops() <= 1 {
            return Err(Refusal::Answer(
                DropReason::TtlExpired,
                IcmpError::TTL_EXCEEDED,
            ));
        }
        let (out, next_hop) = self.egress(ip.dst(), ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        H::decrement_hops(l3).ok_or(DropReason::Malformed)?;
        if !ip.is_later_fragment() {
            self.record_fragment(ip, FragVerdict::Route);
        }
        self.stats().event(Event::Forwarded);
        Ok(self.l2_out(frame, out, next_hop))
    }

    /// Route lookup plus the egress MTU check (over it: IPv4 with DF set answered with ICMP
    /// fragmentation needed, IPv6 always with packet too big, the egress MTU in both).
    /// Always inlined: out of line (LLVM's choice), an IPv6 destination went in and the next
    /// hop came back through memory, and IPv6 established packets took 1.1-1.2x the time
    /// (benches/RESULTS.md).
    #[inline(always)]
    pub(super) fn egress<H: IpHeader>(
        &self,
        dst: H::Addr,
        ip: &H,
    ) -> Result<(u16, H::Addr), Refusal> {
        let (out, next_hop) = H::route(&self.dp, dst).ok_or(DropReason::NoRoute)?;
        let mtu = self
            .dp
            .ports
            .get(usize::from(out))
            .map_or(0, |p| usize::from(p.mtu));
        if ip.packet_len() > mtu {
            return Err(ip.too_big(mtu));
        }
        Ok((out, next_hop))
    }

    pub(super) fn l2_out(
        &self,
        frame: &mut [u8],
        port: u16,
        next_hop: impl Into<IpAddr>,
    ) -> Action {
        let next_hop = next_hop.into();
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
