//! The established fast path: a plain TCP or UDP packet over IPv4 (no options, not a
//! fragment) of a connection the burst prefetch found, NATed in one straight pass instead of
//! stage by stage. It takes every decision before it changes anything and hands whatever it
//! does not handle to the stages untouched (`None`); what it does handle gets what the stages
//! would give it, from the same functions (`tests/prefetch.rs` checks that frame by frame).
//! IPv6 goes through the stages: written once for both families (over `IpHeader`), the fast
//! path cost IPv4 more than it saved (benches/RESULTS.md).

use super::conn::{Mapping, OnHit, Segment};
use super::context::Hint;
use super::family::IpHeader;
use super::{Action, Pipeline};
use crate::conntrack::{Prefetched, Tuple};
use crate::packet::eth;
use crate::packet::ipv4::Ipv4Hdr;
use crate::packet::l4::L4Hdr;
use crate::packet::IpHdr;
use crate::stats::DropReason;

impl Pipeline {
    /// The frame handled by the fast path, or `None` (nothing changed, nothing counted) for
    /// the stages to handle. A frame whose prefetch found no entry to try (a new connection's)
    /// leaves at the first test.
    #[inline]
    pub(super) fn fast_established(&self, in_port: u16, frame: &mut [u8]) -> Option<Action> {
        match self.peek_hint()? {
            Hint::V4(t, pre) if pre.has_candidate() => self.fast_nat4(in_port, frame, t, pre),
            _ => None,
        }
    }

    /// [`Pipeline::fast_established`] of an IPv4 frame whose prefetch read tuple `t` and named
    /// a candidate entry (`pre`).
    #[inline]
    fn fast_nat4(
        &self,
        in_port: u16,
        frame: &mut [u8],
        t: &Tuple,
        pre: &Prefetched,
    ) -> Option<Action> {
        // First the connection (by the prefetched tuple, read from this frame's bytes): a
        // frame of no connection leaves early. Then the frame's checks, which confirm the tuple.
        let hit = self.dp.conns.prefetched_hit(t, pre, self.now)?;
        let port = self.dp.ports.get(usize::from(in_port))?;
        let (l2, l3) = frame.split_first_chunk_mut::<{ eth::HDR_LEN }>()?;
        if l2.first_chunk::<6>() != Some(&port.mac)
            || l2.get(12..) != Some(&eth::ETHERTYPE_IPV4.to_be_bytes())
            // Options are counted by the IPv4 stage.
            || l3.first() != Some(&0x45)
        {
            return None;
        }
        // The IPv4 stage's checks of a packet it hands straight to the connection lookup.
        let parsed = Ipv4Hdr::parse_any(l3);
        let ip = parsed.as_ref().ok()?;
        if ip.is_fragment() || ip.ttl <= 1 || self.martian_packet(ip.src, ip.dst) {
            return None;
        }
        let l4 = L4Hdr::parse(ip.proto, ip.payload(l3)?).ok()?;
        let seg = Segment::of(ip, &l4);
        if seg.t != *t || self.on_hit::<Ipv4Hdr>(&hit, seg.new_syn) != OnHit::Nat {
            return None;
        }
        let m = Mapping::from(&hit);
        let nat = m.rewrite(ip.dst);
        let (out, next_hop) = self.egress(nat.dst, ip).ok()?;
        let next_mac = self.next_hop_mac(out, next_hop)?;
        let out_mac = self.dp.ports.get(usize::from(out))?.mac;

        // Decided: the stages' own steps from here, in their order.
        self.hint.set(None);
        self.follow::<Ipv4Hdr>(&hit, seg.ev);
        if ip
            .rewrite_endpoint(l3, nat.side, nat.addr, nat.port)
            .is_none()
        {
            self.stats().drop(DropReason::Malformed);
            return Some(Action::Drop);
        }
        eth::write_macs(l2, &next_mac, &out_mac);
        self.count_nat(&m, ip.packet_len());
        Some(Action::Tx(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceManager;
    use control::model::SchedulerKind;
    use control::proto::{Request, Response};
    use std::net::Ipv4Addr;
    use testkit::plan::{CIP, CLIENT_MAC, RIP1, RS1_MAC, VIP};

    const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const INT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

    fn datagram(cport: u16) -> Vec<u8> {
        testkit::udp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 53), b"q", true)
    }

    /// Prefetches `burst` and names its frame `i` as the one handled next.
    fn hinted(w: &mut Pipeline, burst: &[&[u8]], i: usize) {
        w.prefetch_burst(burst);
        w.use_prefetched(i);
    }

    /// The fast path takes a tracked datagram, and declines one whose prefetch hint is not
    /// its own (a hint left by another frame), changing nothing.
    #[test]
    fn the_fast_path_takes_its_own_frames_only() {
        let dp = crate::pipeline::two_arm_for_tests(EXT_MAC, INT_MAC);
        let mut mgr = ServiceManager::new(dp.clone());
        let key = testkit::services::udp(VIP, 53);
        for request in [
            Request::AddService(testkit::services::service(key, SchedulerKind::Rr)),
            Request::AddDest {
                service: key,
                dest: testkit::services::dest(RIP1, 53, 1),
            },
        ] {
            assert_eq!(mgr.handle(request), Response::Ok);
        }
        dp.neigh.learn(0, CIP, CLIENT_MAC);
        dp.neigh.learn(1, RIP1, RS1_MAC);
        let mut w = Pipeline::new(dp.clone(), 0);
        w.begin_burst(1);
        // No connection yet: the stages open it.
        let mut first = datagram(40_000);
        hinted(&mut w, &[&first], 0);
        assert_eq!(w.fast_established(0, &mut first), None);
        assert_eq!(w.process(0, &mut first), Action::Tx(1));

        let mut second = datagram(40_000);
        hinted(&mut w, &[&second], 0);
        assert_eq!(w.fast_established(0, &mut second), Some(Action::Tx(1)));
        assert_eq!(second, first, "NATed as the stages NATed the first");
        assert_eq!(w.peek_hint().map(|_| ()), None, "the hint is taken");

        // Another client port, with the first datagram's hint.
        let mut other = datagram(40_001);
        let before = other.clone();
        hinted(&mut w, &[&datagram(40_000)], 0);
        let (counters, conns) = (dp.stats().counters(), dp.conns.len());
        assert_eq!(w.fast_established(0, &mut other), None);
        assert_eq!(other, before);
        assert!(w.peek_hint().is_some(), "the hint is left to the stages");
        assert_eq!(dp.stats().counters(), counters);
        assert_eq!(dp.conns.len(), conns);
        assert_eq!(
            Ipv4Addr::from([other[30], other[31], other[32], other[33]]),
            VIP
        );
    }
}
