//! The established fast path: a plain TCP or UDP packet (IPv4 without options, IPv6 without
//! extension headers, not a fragment) of a connection the burst prefetch found, NATed in one
//! straight pass instead of stage by stage. It takes every decision before it changes anything
//! and hands whatever it does not handle to the stages untouched (`None`); what it does handle
//! gets what the stages would give it, from the same functions (`tests/prefetch.rs` checks that
//! frame by frame). Each family has its own front (its stage's checks of the headers), asked
//! first by `process_buf` for IPv4 and by `classify` for IPv6; the NAT after them is one
//! generic pass, inlined into each.

use super::conn::{Mapping, OnHit, Segment};
use super::context::Hint;
use super::family::IpHeader;
use super::{Action, Pipeline};
use crate::conntrack::{Hit, Prefetched, Tuple};
use crate::packet::eth;
use crate::packet::ipv4::Ipv4Hdr;
use crate::packet::ipv6::Ipv6Hdr;
use crate::packet::l4::L4Hdr;
use crate::stats::DropReason;
use std::net::Ipv6Addr;

impl Pipeline {
    /// The IPv4 frame handled by the fast path, or `None` (nothing changed, nothing counted)
    /// for the stages to handle. A frame whose prefetch found no entry to try (a new
    /// connection's) leaves at the first test. `process_buf` asks it first.
    #[inline]
    pub(super) fn fast_established4(&self, in_port: u16, frame: &mut [u8]) -> Option<Action> {
        match self.peek_hint()? {
            Hint::V4(t, pre) if pre.has_candidate() => self.fast_nat4(in_port, frame, t, pre),
            _ => None,
        }
    }

    /// [`Pipeline::fast_established4`] for IPv6: `classify` asks it first.
    #[inline]
    pub(super) fn fast_established6(&self, in_port: u16, frame: &mut [u8]) -> Option<Action> {
        match self.peek_hint()? {
            Hint::V6(t, pre) if pre.has_candidate() => self.fast_nat6(in_port, frame, t, pre),
            _ => None,
        }
    }

    /// [`Pipeline::fast_established4`] of a frame whose prefetch read tuple `t` and named
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
        self.fast_nat(l2, l3, ip, &l4, t, &hit)
    }

    /// [`Pipeline::fast_established6`] of a frame whose prefetch read tuple `t` and named a
    /// candidate entry (`pre`): as [`Pipeline::fast_nat4`], with the IPv6 stage's checks.
    #[inline]
    fn fast_nat6(
        &self,
        in_port: u16,
        frame: &mut [u8],
        t: &Tuple<Ipv6Addr>,
        pre: &Prefetched,
    ) -> Option<Action> {
        let hit = self.dp.conns6.prefetched_hit(t, pre, self.now)?;
        let port = self.dp.ports.get(usize::from(in_port))?;
        let (l2, l3) = frame.split_first_chunk_mut::<{ eth::HDR_LEN }>()?;
        let (dst_mac, rest) = l2.split_first_chunk::<6>()?;
        if *dst_mac != port.mac
            // A group source MAC is dropped by the IPv6 stage.
            || rest.first_chunk::<6>().is_none_or(eth::is_multicast)
            || l2.get(12..) != Some(&eth::ETHERTYPE_IPV6.to_be_bytes())
        {
            return None;
        }
        // The IPv6 stage's checks of a packet it hands straight to the connection lookup. Its
        // martian rule is asked as if the destination were not ours: stricter (a link-local
        // end goes to the stages), never looser, and without asking whether it is.
        let parsed = Ipv6Hdr::parse(l3);
        let ip = parsed.as_ref().ok()?;
        if ip.has_ext_headers() || ip.hop_limit <= 1 || self.martian6(ip.src, ip.dst, false) {
            return None;
        }
        let l4 = L4Hdr::parse_ipv6(ip, ip.payload(l3)?).ok()?;
        self.fast_nat(l2, l3, ip, &l4, t, &hit)
    }

    /// The fast path's NAT of a frame whose headers passed its family's checks: what
    /// `tcp_udp` decides on a hit, the route, MTU and next hop's MAC; then, decided, the
    /// stages' own steps in their order.
    #[inline(always)]
    fn fast_nat<H: IpHeader>(
        &self,
        l2: &mut [u8; eth::HDR_LEN],
        l3: &mut [u8],
        ip: &H,
        l4: &L4Hdr,
        t: &Tuple<H::Addr>,
        hit: &Hit<H::Addr>,
    ) -> Option<Action> {
        let seg = Segment::of(ip, l4);
        if seg.t != *t || self.on_hit::<H>(hit, seg.new_syn) != OnHit::Nat {
            return None;
        }
        let m = Mapping::from(hit);
        let nat = m.rewrite(ip.dst());
        let (out, next_hop) = self.egress(nat.dst, ip).ok()?;
        let next_mac = H::next_hop_mac(self, out, next_hop)?;
        let out_mac = self.dp.ports.get(usize::from(out))?.mac;

        // Decided: the stages' own steps from here, in their order.
        self.hint.set(None);
        self.follow::<H>(hit, seg.ev);
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
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use testkit::ipv6::{udp_frame6, CIP6, RIP6_1, VIP6};
    use testkit::plan::{CIP, CLIENT_MAC, RIP1, RS1_MAC, VIP};

    const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const INT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

    fn datagram(cport: u16) -> Vec<u8> {
        testkit::udp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 53), b"q", true)
    }

    fn datagram6(cport: u16) -> Vec<u8> {
        udp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 53), b"q")
    }

    /// The two-arm director with one UDP service, `vip`:53 to `rip`:53, the client and the
    /// real server known neighbours, and a worker with its burst begun.
    fn director(vip: IpAddr, rip: IpAddr) -> (Arc<crate::pipeline::Dataplane>, Pipeline) {
        let dp = crate::pipeline::dual_stack_for_tests(EXT_MAC, INT_MAC);
        let mut mgr = ServiceManager::new(dp.clone());
        let key = testkit::services::udp(vip, 53);
        for request in [
            Request::AddService(testkit::services::service(key, SchedulerKind::Rr)),
            Request::AddDest {
                service: key,
                dest: testkit::services::dest(rip, 53, 1),
            },
        ] {
            assert_eq!(mgr.handle(request), Response::Ok);
        }
        dp.neigh.learn(0, CIP, CLIENT_MAC);
        dp.neigh.learn(1, RIP1, RS1_MAC);
        dp.neigh6.learn(0, CIP6, CLIENT_MAC);
        dp.neigh6.learn(1, RIP6_1, RS1_MAC);
        let mut w = Pipeline::new(dp.clone(), 0);
        w.begin_burst(1);
        (dp, w)
    }

    /// Prefetches `burst` and names its frame `i` as the one handled next.
    fn hinted(w: &mut Pipeline, burst: &[&[u8]], i: usize) {
        w.prefetch_burst(burst.iter().copied());
        w.use_prefetched(i);
    }

    /// A family's fast path (`Pipeline::fast_established4` or `6`).
    type FastPath = fn(&Pipeline, u16, &mut [u8]) -> Option<Action>;

    /// The first of two equal datagrams (`datagram()`) is declined by `fast` and opens its
    /// connection through the stages; the second is taken by `fast` and NATed as the first.
    fn opened_then_taken(w: &mut Pipeline, fast: FastPath, datagram: impl Fn() -> Vec<u8>) {
        let mut first = datagram();
        hinted(w, &[&first], 0);
        assert_eq!(fast(w, 0, &mut first), None);
        assert_eq!(w.process(0, &mut first), Action::Tx(1));

        let mut second = datagram();
        hinted(w, &[&second], 0);
        assert_eq!(fast(w, 0, &mut second), Some(Action::Tx(1)));
        assert_eq!(second, first, "NATed as the stages NATed the first");
        assert_eq!(w.peek_hint().map(|_| ()), None, "the hint is taken");
    }

    /// A sender's MAC changed by another worker (in the shared table) is learnt again from
    /// this worker's next new connection, though this worker's memo held the MAC the frame
    /// carries: the sender learning asks through the memo, which must see the table move.
    #[test]
    fn sender_learning_sees_a_change_made_behind_the_memo() {
        const MOVED_MAC: [u8; 6] = [2, 0, 0, 0, 9, 9];
        let (dp, mut w) = director(VIP.into(), RIP1.into());
        assert_eq!(w.next_hop_mac4(0, CIP), Some(CLIENT_MAC), "memo warmed");
        dp.neigh.learn(0, CIP, MOVED_MAC);
        let mut new_flow = datagram(40_000);
        assert_eq!(w.process(0, &mut new_flow), Action::Tx(1));
        assert_eq!(dp.neigh.lookup(0, CIP), Some(CLIENT_MAC), "learnt again");

        let (dp, mut w) = director(VIP6.into(), RIP6_1.into());
        assert_eq!(w.next_hop_mac6(0, CIP6), Some(CLIENT_MAC), "memo warmed");
        dp.neigh6.learn(0, CIP6, MOVED_MAC);
        let mut new_flow = datagram6(40_000);
        assert_eq!(w.process(0, &mut new_flow), Action::Tx(1));
        assert_eq!(dp.neigh6.lookup(0, CIP6), Some(CLIENT_MAC), "learnt again");
    }

    /// The fast path takes a tracked datagram, and declines one whose prefetch hint is not
    /// its own (a hint left by another frame), changing nothing.
    #[test]
    fn the_fast_path_takes_its_own_frames_only() {
        let (dp, mut w) = director(VIP.into(), RIP1.into());
        opened_then_taken(&mut w, Pipeline::fast_established4, || datagram(40_000));

        // Another client port, with the first datagram's hint.
        let mut other = datagram(40_001);
        let before = other.clone();
        hinted(&mut w, &[&datagram(40_000)], 0);
        let (counters, conns) = (dp.stats().counters(), dp.conns.len());
        assert_eq!(w.fast_established4(0, &mut other), None);
        assert_eq!(other, before);
        assert!(w.peek_hint().is_some(), "the hint is left to the stages");
        assert_eq!(dp.stats().counters(), counters);
        assert_eq!(dp.conns.len(), conns);
        assert_eq!(
            Ipv4Addr::from([other[30], other[31], other[32], other[33]]),
            VIP
        );
    }

    /// IPv6 too: a tracked datagram is taken and NATed as the stages NATed the first; one
    /// with hop limit 1 (the stages answer it) and one from a group MAC (the stages drop it)
    /// are left to the stages untouched, their hints kept.
    #[test]
    fn the_fast_path_takes_tracked_ipv6_datagrams() {
        let (dp, mut w) = director(VIP6.into(), RIP6_1.into());
        opened_then_taken(&mut w, Pipeline::fast_established6, || datagram6(40_000));

        let mut last_hop = datagram6(40_000);
        last_hop[14 + 7] = 1;
        let mut from_group = datagram6(40_000);
        from_group[6] |= 1;
        for mut spoilt in [last_hop, from_group] {
            let before = spoilt.clone();
            let (counters, conns) = (dp.stats().counters(), dp.conns6.len());
            hinted(&mut w, &[&spoilt], 0);
            assert_eq!(w.fast_established6(0, &mut spoilt), None);
            assert_eq!(spoilt, before);
            assert!(w.peek_hint().is_some(), "the hint is left to the stages");
            assert_eq!(dp.stats().counters(), counters);
            assert_eq!(dp.conns6.len(), conns);
            let len = spoilt.len();
            let by_stages = w.process_buf(0, &mut spoilt, len);
            assert!(
                matches!(by_stages, Action::Drop | Action::Reply { .. }),
                "{by_stages:?}"
            );
        }
    }
}
