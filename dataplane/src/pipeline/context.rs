//! The per-worker pipeline context: the service snapshot and clock of the current burst, the
//! worker's share of connection aging, its ICMP error budget, and the per-frame entry points.

use super::conn::{prefetch_found, PicksAhead};
use super::defence::Defences;
use super::icmp_error::ICMP_BURST;
use super::kernel::TokenBucket;
use super::owned::OwnedAddrs;
use super::sync::RefreshWalk;
use super::{Action, Dataplane, Refusal};
use crate::addr_set::MARTIAN;
use crate::conntrack::{BucketSet, Dir, Prefetched, Tuple};
use crate::neigh::NeighMemo;
use crate::packet::eth;
use crate::packet::ipv4::{self, Ipv4Hdr, PROTO_TCP, PROTO_UDP};
use crate::packet::ipv6::{self, Ipv6Hdr};
use crate::packet::{arp, ndp};
use crate::service::Snapshot;
use crate::stats::{DropReason, Event, WorkerStats};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Each worker ages its whole share of the connection table once in this many milliseconds,
/// a share of it in each millisecond (see [`Pipeline::housekeeping`]).
pub const AGING_SWEEP_MS: u64 = 2000;

/// Frames of a burst [`Pipeline::prefetch_burst`] looks at (the rest are not prefetched).
pub const PREFETCH_BURST: usize = 32;

/// One worker's view of the dataplane. Not shared: each worker thread owns one.
pub struct Pipeline {
    pub(super) dp: Arc<Dataplane>,
    pub(super) index: usize,
    pub(super) snap: Arc<Snapshot>,
    /// `Dataplane::snapshot_published` when `snap` was loaded.
    snap_published: u64,
    /// The addresses rvs holds, as of this burst.
    pub(super) owned: Arc<OwnedAddrs>,
    pub(super) now: u64,
    pub(super) aging: Range<usize>,
    aging_cursor: usize,
    /// This worker's share of the IPv6 table and where its sweep is.
    pub(super) aging6: Range<usize>,
    aging6_cursor: usize,
    /// The sync refresh walks (`sync.rs`) of `aging` and `aging6`.
    pub(super) sync_walk: RefreshWalk,
    pub(super) sync_walk6: RefreshWalk,
    /// The millisecond of the last aging step.
    aged_at: u64,
    /// ICMP error token bucket: (tokens, last refill in ms).
    pub(super) icmp_bucket: (u64, u64),
    /// Frames up to the kernel: this worker's share of the exception path.
    pub(super) kernel_bucket: TokenBucket,
    /// The flood defences in force this burst (`defence`).
    pub(super) defences: Defences,
    /// `drop_packet`'s countdown to the next new connection it drops.
    pub(super) drop_countdown: Cell<u32>,
    /// What [`Pipeline::prefetch_burst`] learnt of each frame of the burst.
    pub(super) prefetched: [Option<Hint>; PREFETCH_BURST],
    /// The index in `prefetched` of the frame being handled ([`Pipeline::use_prefetched`]),
    /// taken by its connection lookup (an index: cheaper to pass on than the hint).
    pub(super) hint: Cell<Option<u8>>,
    /// The first buckets of both tuples of every connection this worker inserted since the
    /// last prefetch: a lookup there may not trust the prefetch's miss (the connection may be
    /// newer than the prefetch). One set for both families' tables: a bit set by the other
    /// family only costs a lookup.
    pub(super) inserted_since_prefetch: Cell<BucketSet>,
    /// The next hops' MACs this worker looked up last, per family.
    neigh_memo: NeighMemo<Ipv4Addr>,
    neigh_memo6: NeighMemo<Ipv6Addr>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("index", &self.index)
            .finish()
    }
}

impl Pipeline {
    /// The pipeline of worker `index` of `dp.workers()` (an index past the last one shares
    /// counters with another worker; it works, but the counts may lose updates).
    pub fn new(dp: Arc<Dataplane>, index: usize) -> Pipeline {
        // The count first: a publish in between is then picked up by the first burst.
        let snap_published = dp.snapshot_published.load(Ordering::Acquire);
        let snap = dp.snapshot();
        let owned = dp.owned_addrs();
        let aging = dp.conns.slice(index, dp.workers);
        let aging6 = dp.conns6.slice(index, dp.workers);
        Pipeline {
            aging6_cursor: aging6.start,
            sync_walk6: RefreshWalk::new(aging6.start),
            aging6,
            kernel_bucket: TokenBucket::full(dp.kernel.burst),
            aging_cursor: aging.start,
            sync_walk: RefreshWalk::new(aging.start),
            aged_at: 0,
            aging,
            snap,
            snap_published,
            owned,
            index,
            dp,
            now: 0,
            icmp_bucket: (ICMP_BURST, 0),
            defences: Defences::default(),
            drop_countdown: Cell::new(0),
            prefetched: [None; PREFETCH_BURST],
            hint: Cell::new(None),
            inserted_since_prefetch: Cell::new(BucketSet::default()),
            neigh_memo: NeighMemo::default(),
            neigh_memo6: NeighMemo::default(),
        }
    }

    /// Starts a burst at `now_ms`: picks up a new service snapshot if one was published, and
    /// works out which flood defences act.
    pub fn begin_burst(&mut self, now_ms: u64) {
        if now_ms != self.now {
            self.now = now_ms;
            self.dp.clock_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
        let published = self.dp.snapshot_published.load(Ordering::Acquire);
        if published != self.snap_published {
            self.snap_published = published;
            // The old snapshot is kept alive by the service manager, so dropping it here frees
            // nothing on this thread.
            self.snap = self.dp.snapshot();
        }
        if self.dp.owned_generation.load(Ordering::Acquire) != self.owned.generation {
            self.owned = self.dp.owned.load_full();
        }
        self.update_defences();
    }

    /// The generation of the service snapshot this worker uses now (the one `begin_burst`
    /// picked up); for tests and the snapshot-visibility benchmark.
    pub fn snapshot_generation(&self) -> u64 {
        self.snap.generation
    }

    /// Prefetches the connection-table lines that `frames` (one burst, before any of it is
    /// handled) will look up: every bucket first, then every entry, so that the misses of a
    /// table larger than the cache overlap across the burst instead of stalling each packet
    /// twice; with the entries, for a frame whose bucket has no slot with its tuple's tag, the
    /// bucket of the reply tuple a new connection would insert ([`prefetch_found`]). Frames
    /// that are not plain TCP/UDP over IPv4 or IPv6 (no extension headers) are skipped. What
    /// it learns of frame `i` (its tuple's hash, the entry its bucket names) saves work in
    /// that frame's lookup when the caller says [`Pipeline::use_prefetched`]`(i)` before
    /// handling it. A hint: handling the frames afterwards gives the same result with or
    /// without it. The frames come as an iterator so that the burst driver hands over its
    /// frames' bytes without an array of them to fill first.
    pub fn prefetch_burst<'a>(&mut self, frames: impl IntoIterator<Item = &'a [u8]>) {
        let (conns, conns6) = (&self.dp.conns, &self.dp.conns6);
        let mut n = 0;
        for (p, f) in self.prefetched.iter_mut().zip(frames) {
            *p = match peek_tuple(f) {
                Some(Peeked::V4(t)) => Some(Hint::V4(t, conns.prefetch_bucket(&t))),
                Some(Peeked::V6(t)) => Some(Hint::V6(t, conns6.prefetch_bucket(&t))),
                None => None,
            };
            n += 1;
        }
        let (snap, dp) = (&*self.snap, &*self.dp);
        let mut picks = PicksAhead::default();
        for h in self.prefetched.iter_mut().take(n).flatten() {
            match h {
                Hint::V4(t, p) => prefetch_found::<Ipv4Hdr>(snap, dp, t, p, &mut picks),
                Hint::V6(t, p) => prefetch_found::<Ipv6Hdr>(snap, dp, t, p, &mut picks),
            }
        }
        if let Some(rest) = self.prefetched.get_mut(n..) {
            rest.fill(None);
        }
        // An index left by a frame that never reached its lookup names nothing now.
        self.hint.set(None);
        self.inserted_since_prefetch.set(BucketSet::default());
    }

    /// The next frame handled is frame `i` of the burst given to [`Pipeline::prefetch_burst`]:
    /// its connection lookup starts from what the prefetch learnt (if the frame's tuple is the
    /// one the prefetch read, which it checks).
    #[inline]
    pub fn use_prefetched(&mut self, i: usize) {
        self.hint.set(u8::try_from(i).ok());
    }

    /// The prefetch's hint for the frame being handled, left for [`Pipeline::taken_hint`].
    #[inline]
    pub(super) fn peek_hint(&self) -> Option<&Hint> {
        self.prefetched.get(usize::from(self.hint.get()?))?.as_ref()
    }

    /// The prefetch's hint for the frame being handled, once: a second lookup of the frame
    /// (a connection reused) starts afresh.
    #[inline]
    pub(super) fn taken_hint(&self) -> Option<&Hint> {
        let hint = self.peek_hint();
        self.hint.set(None);
        hint
    }

    /// Ages this worker's share of the connection table: once per millisecond, the share
    /// of it due since the last step, so that all of it is looked at every `AGING_SWEEP_MS`
    /// whatever the poll-loop rate. (A fixed number of entries per loop tied the sweep to how
    /// fast the loop spins: an idle worker did little else, a busy one aged less often.)
    /// Expired entries met by a lookup or an insert are removed there too. While `drop_entry`
    /// acts, half-open connections are removed too (`defence_drop_entry`).
    pub fn housekeeping(&mut self, now_ms: u64) {
        if now_ms == self.aged_at {
            return;
        }
        let elapsed = now_ms.saturating_sub(self.aged_at).min(AGING_SWEEP_MS);
        self.aged_at = now_ms;
        let share = (self.aging.len() as u64)
            .saturating_mul(elapsed)
            .div_ceil(AGING_SWEEP_MS);
        let aged = self.dp.conns.housekeeping_with(
            self.aging.clone(),
            &mut self.aging_cursor,
            usize::try_from(share).unwrap_or(usize::MAX),
            now_ms,
            self.defences.half_open,
        );
        let share6 = (self.aging6.len() as u64)
            .saturating_mul(elapsed)
            .div_ceil(AGING_SWEEP_MS);
        let aged6 = self.dp.conns6.housekeeping_with(
            self.aging6.clone(),
            &mut self.aging6_cursor,
            usize::try_from(share6).unwrap_or(usize::MAX),
            now_ms,
            self.defences.half_open,
        );
        let half_open = aged.half_open + aged6.half_open;
        if half_open > 0 {
            self.stats()
                .event_n(Event::DefenceDropEntry, half_open as u64);
        }
        self.sync_refresh(elapsed, now_ms);
    }

    /// What the IPv4 stage asks of an address, as an OR of [`crate::addr_set`]'s classes:
    /// martian (unspecified, loopback, multicast, class E by first octet, or a subnet's
    /// broadcast), ours, a VIP; one look at the held addresses' set and one at the snapshot's
    /// (each a filter word, and a probe only where it may hold the address).
    /// The same answers as [`Dataplane::is_martian`], [`OwnedAddrs::is_local`] and
    /// [`Snapshot::is_vip`].
    #[inline]
    pub(super) fn addr_class(&self, ip: Ipv4Addr) -> u8 {
        self.held_class(ip) | self.snap.vip_class(ip)
    }

    /// [`Pipeline::addr_class`] without the VIP class: the probe of the held addresses only,
    /// which is where MARTIAN and LOCAL come from (the snapshot's set holds VIPs only).
    #[inline]
    fn held_class(&self, ip: Ipv4Addr) -> u8 {
        // The martians by first octet: 0, 127 and 224-255 (0 and 224-255 are the octets
        // whose predecessor, wrapping, is 223 or more). Both tests always run: no branch.
        let top = (u32::from(ip) >> 24) as u8;
        let special = u8::from((top.wrapping_sub(1) >= 223) | (top == 127)) * MARTIAN;
        special | self.owned.classes_of(ip)
    }

    /// The classes of a packet's destination `dst`, or `None` if the packet is a martian:
    /// from one of our addresses, a VIP or a martian source, or to a martian destination
    /// (as Linux's martian checks: a land attack or a loop, an echo request from the VIP to
    /// the VIP, would be answered).
    #[inline]
    pub(super) fn not_martian(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Option<u8> {
        let dst_class = self.addr_class(dst);
        (self.addr_class(src) == 0 && dst_class & MARTIAN == 0).then_some(dst_class)
    }

    /// `not_martian(src, dst).is_none()` for a caller with no use for the destination's
    /// classes (the fast path): whether the destination is a VIP does not decide it, so its
    /// probe of the VIPs is left out. Always inlined: LLVM kept it a call, with its saved
    /// registers about 6 instructions an established IPv4 packet (callgrind, pipeline-bench).
    #[inline(always)]
    pub(super) fn martian_packet(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.addr_class(src) != 0 || self.held_class(dst) & MARTIAN != 0
    }

    pub(super) fn stats(&self) -> &WorkerStats {
        self.dp.stats.worker(self.index)
    }

    /// Counts a drop the burst driver decided on (TX ring full, no buffer, ...).
    pub(crate) fn count_drop(&self, reason: DropReason) {
        self.stats().drop(reason);
    }

    /// Counts `n` frames sent on `port`.
    pub(crate) fn count_tx(&self, port: u16, n: u64) {
        self.stats().tx(port, n);
    }

    /// Counts a frame received on `port` that the driver does not hand to `process_buf` (it
    /// counts its drop too).
    pub(crate) fn count_rx(&self, port: u16) {
        self.stats().rx(port);
    }

    /// Counts an event the driver saw (e.g. [`Event::ArpRequests`] for each ARP request it
    /// builds).
    pub(crate) fn count_event(&self, ev: Event) {
        self.stats().event(ev);
    }

    /// Handles one frame received on `in_port`, rewriting it in place: `process_buf` with no
    /// room past the frame. See the module documentation.
    pub fn process(&mut self, in_port: u16, frame: &mut [u8]) -> Action {
        let len = frame.len();
        self.process_buf(in_port, frame, len)
    }

    /// Handles the frame `buf[..len]` received on `in_port`; the bytes after `len` are room an
    /// ICMP error built in place may grow into ([`Action::Reply`]). See the module
    /// documentation.
    pub fn process_buf(&mut self, in_port: u16, buf: &mut [u8], len: usize) -> Action {
        let st = self.stats();
        st.rx(in_port);
        let Some(frame) = buf.get_mut(..len) else {
            st.drop(DropReason::Truncated);
            return Action::Drop;
        };
        if let Some(action) = self.fast_established4(in_port, frame) {
            return action;
        }
        match self.classify(in_port, frame) {
            Ok(a) => a,
            Err(Refusal::Drop(reason)) => {
                st.drop(reason);
                Action::Drop
            }
            Err(Refusal::Answer(reason, error)) => {
                st.drop(reason);
                self.icmp_error(in_port, buf, len, error)
            }
            Err(Refusal::Reset(reason)) => {
                st.drop(reason);
                self.tcp_reset(in_port, buf, len)
            }
            Err(Refusal::Local(reason)) => self.send_up(in_port, reason),
            Err(Refusal::Ndp) => self.ndp(in_port, buf, len).unwrap_or_else(|reason| {
                st.drop(reason);
                Action::Drop
            }),
        }
    }

    /// Writes the L2 header for `next_hop` on `port` if its MAC is known now.
    #[inline]
    pub fn fill_l2(&self, port: u16, next_hop: impl Into<IpAddr>, frame: &mut [u8]) -> bool {
        let mac = self.next_hop_mac(port, next_hop);
        let (Some(p), Some(mac)) = (self.dp.ports.get(usize::from(port)), mac) else {
            return false;
        };
        eth::set_macs(frame, &mac, &p.mac).is_some()
    }

    /// The MAC of `next_hop` on `port`, if known now.
    #[inline]
    pub(super) fn next_hop_mac(&self, port: u16, next_hop: impl Into<IpAddr>) -> Option<[u8; 6]> {
        match next_hop.into() {
            IpAddr::V4(a) => self.next_hop_mac4(port, a),
            IpAddr::V6(a) => self.next_hop_mac6(port, a),
        }
    }

    /// [`Pipeline::next_hop_mac`] of an IPv4 next hop (`IpHeader::next_hop_mac`).
    #[inline]
    pub(super) fn next_hop_mac4(&self, port: u16, next_hop: Ipv4Addr) -> Option<[u8; 6]> {
        self.dp.neigh.lookup_memo(&self.neigh_memo, port, next_hop)
    }

    /// [`Pipeline::next_hop_mac`] of an IPv6 next hop, with no `IpAddr` on the way
    /// (`IpHeader::next_hop_mac`): the fast path does not copy the 16 bytes into an enum and
    /// back.
    #[inline]
    pub(super) fn next_hop_mac6(&self, port: u16, next_hop: Ipv6Addr) -> Option<[u8; 6]> {
        self.dp
            .neigh6
            .lookup_memo(&self.neigh_memo6, port, next_hop)
    }

    /// Writes a request for `target`'s MAC out of `port` into `buf`: an ARP request (from an
    /// address the port holds, [`OwnedAddrs::source`]) or an IPv6 neighbour solicitation (from
    /// the port's first IPv6 address). Returns the bytes written, 0 if `buf` is too small or
    /// the port is unknown or has no address of that family.
    pub fn neighbour_request(&self, port: u16, target: impl Into<IpAddr>, buf: &mut [u8]) -> usize {
        let Some(p) = self.dp.ports.get(usize::from(port)) else {
            return 0;
        };
        match target.into() {
            IpAddr::V4(t) => arp::build_request(buf, p.mac, self.owned.source(port, t), t),
            IpAddr::V6(t) => p.source6(t).map_or(0, |src| {
                ndp::build_solicitation(buf, p.mac, src, t).unwrap_or(0)
            }),
        }
    }
}

/// Counts in `st` a packet of `bytes` NATed for real server `slot`, in direction `dir`.
pub(super) fn count_dest(st: &WorkerStats, slot: u32, dir: Dir, bytes: u64) {
    let Some(s) = st.slot(slot) else {
        return;
    };
    match dir {
        Dir::Inbound => {
            s.in_pkts.add(1);
            s.in_bytes.add(bytes);
        }
        Dir::Reply => {
            s.out_pkts.add(1);
            s.out_bytes.add(bytes);
        }
    }
}

/// What the burst prefetch learnt of one frame: its tuple and where the tuple lives in its
/// family's connection table.
#[derive(Debug, Clone, Copy)]
pub(super) enum Hint {
    V4(Tuple, Prefetched),
    V6(Tuple<Ipv6Addr>, Prefetched),
}

/// A frame's 5-tuple as [`peek_tuple`] reads it.
#[derive(Debug, PartialEq)]
enum Peeked {
    V4(Tuple),
    V6(Tuple<Ipv6Addr>),
}

/// The 5-tuple of a TCP or UDP frame (no VLAN tag; IPv4 not a later fragment, IPv6 with no
/// extension header), read without any validation: only a prefetch hint, the pipeline checks
/// everything later.
#[inline]
fn peek_tuple(frame: &[u8]) -> Option<Peeked> {
    let ip = frame.get(eth::HDR_LEN..)?;
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ports = |l4: &[u8]| -> Option<(u16, u16)> {
        let p: [u8; 4] = l4.get(..4)?.try_into().ok()?;
        Some((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ))
    };
    match ethertype {
        eth::ETHERTYPE_IPV4 => {
            let (&vihl, &proto) = (ip.first()?, ip.get(9)?);
            let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
            if (proto != PROTO_TCP && proto != PROTO_UDP) || frag & ipv4::FRAG_OFFSET_MASK != 0 {
                return None;
            }
            let addr = |o: usize| -> Option<Ipv4Addr> {
                let b: [u8; 4] = ip.get(o..o + 4)?.try_into().ok()?;
                Some(Ipv4Addr::from(b))
            };
            let (sport, dport) = ports(ip.get(usize::from(vihl & 0x0f) * 4..)?)?;
            Some(Peeked::V4(Tuple {
                proto,
                src: addr(ipv4::OFF_SRC)?,
                sport,
                dst: addr(ipv4::OFF_DST)?,
                dport,
            }))
        }
        eth::ETHERTYPE_IPV6 => {
            let proto = *ip.get(ipv6::OFF_NEXT_HEADER)?;
            if proto != PROTO_TCP && proto != PROTO_UDP {
                return None;
            }
            let addr = |o: usize| -> Option<Ipv6Addr> {
                let b: [u8; 16] = ip.get(o..o + 16)?.try_into().ok()?;
                Some(Ipv6Addr::from(b))
            };
            let (sport, dport) = ports(ip.get(ipv6::HDR_LEN..)?)?;
            Some(Peeked::V6(Tuple {
                proto,
                src: addr(ipv6::OFF_SRC)?,
                sport,
                dst: addr(ipv6::OFF_DST)?,
                dport,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 (IHL `ihl`) + the first 4 bytes of a TCP/UDP header.
    fn frame(ethertype: u16, ihl: u8, proto: u8, frag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(ethertype.to_be_bytes());
        let mut ip = vec![0u8; usize::from(ihl) * 4];
        ip[0] = 0x40 | ihl;
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[198, 51, 100, 10]);
        ip[16..20].copy_from_slice(&[198, 51, 100, 1]);
        f.extend(ip);
        f.extend([0x1f, 0x40, 0x00, 0x50]); // 8000 -> 80
        f
    }

    /// Every listed address, its neighbours and the special ranges' edges get the answers of
    /// the three list lookups.
    #[test]
    fn address_classes_match_the_list_lookups() {
        use crate::addr_set::{LOCAL, VIP};
        use crate::service::ServiceManager;
        use control::model::SchedulerKind;
        use control::proto::{Request, Response};
        use testkit::services::{service, tcp, udp};

        let dp = crate::pipeline::two_arm_for_tests([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]);
        let mut mgr = ServiceManager::new(dp.clone());
        for key in [
            tcp(Ipv4Addr::new(198, 51, 100, 1), 80),
            udp(Ipv4Addr::new(198, 51, 100, 7), 53),
            tcp(Ipv4Addr::new(203, 0, 113, 9), 443),
        ] {
            let r = mgr.handle(Request::AddService(service(key, SchedulerKind::Rr)));
            assert_eq!(r, Response::Ok);
        }
        let mut w = Pipeline::new(dp.clone(), 0);
        w.begin_burst(1);
        let (snap, owned) = (dp.snapshot(), dp.owned_addrs());
        assert_eq!(snap.vips().len(), 3);
        let mut probes: Vec<u32> = vec![0, 1, 0x7f00_0001, 0xdfff_ffff, 0xe000_0000, u32::MAX];
        // Every first octet, which alone decides most martians.
        probes.extend((0..=255u32).map(|o| (o << 24) | 0x0001_0203));
        let listed = dp
            .broadcasts()
            .iter()
            .copied()
            .chain(owned.held().iter().map(|h| u32::from(h.cidr.addr)))
            .chain(snap.vips().iter().map(|&a| u32::from(a)));
        for a in listed {
            probes.extend([a.wrapping_sub(1), a, a.wrapping_add(1)]);
        }
        assert!(probes.len() > 12, "the lists are not empty");
        for &a in &probes {
            let ip = Ipv4Addr::from(a);
            let want = (u8::from(dp.is_martian(ip)) * MARTIAN)
                | (u8::from(owned.is_local(ip)) * LOCAL)
                | (u8::from(snap.is_vip(ip)) * VIP);
            assert_eq!(w.addr_class(ip), want, "{ip}");
        }
        // The fast path's question, without the destination's VIP probe, answers as the
        // stage's for every pair (VIPs, ours, broadcasts, martians and their neighbours).
        for &s in &probes {
            for &d in &probes {
                let (src, dst) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
                let stage = w.not_martian(src, dst).is_none();
                assert_eq!(w.martian_packet(src, dst), stage, "{src} -> {dst}");
            }
        }
    }

    #[test]
    fn peek_tuple_reads_plain_tcp_and_udp_only() {
        let want = |proto| {
            Peeked::V4(Tuple {
                proto,
                src: Ipv4Addr::new(198, 51, 100, 10),
                sport: 8000,
                dst: Ipv4Addr::new(198, 51, 100, 1),
                dport: 80,
            })
        };
        assert_eq!(peek_tuple(&frame(0x0800, 5, 6, 0)), Some(want(6)));
        assert_eq!(peek_tuple(&frame(0x0800, 5, 17, 0)), Some(want(17)));
        // Options move the ports; DF and a first fragment (MF) do not matter.
        assert_eq!(peek_tuple(&frame(0x0800, 7, 6, 0x4000)), Some(want(6)));
        assert_eq!(peek_tuple(&frame(0x0800, 5, 17, 0x2000)), Some(want(17)));
        // Not a flow lookup: ICMP, a later fragment, VLAN-tagged, ARP.
        assert_eq!(peek_tuple(&frame(0x0800, 5, 1, 0)), None);
        assert_eq!(peek_tuple(&frame(0x0800, 5, 17, 0x2001)), None);
        assert_eq!(peek_tuple(&frame(0x8100, 5, 6, 0)), None);
        assert_eq!(peek_tuple(&frame(0x0806, 5, 6, 0)), None);
        // Every truncation is a None, never a panic.
        let f = frame(0x0800, 7, 6, 0);
        for n in 0..f.len() {
            assert_eq!(peek_tuple(&f[..n]), None, "{n} bytes");
        }
    }

    /// Ethernet + IPv6 with next header `next` + the first 4 bytes after the fixed header.
    fn frame6(next: u8) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(eth::ETHERTYPE_IPV6.to_be_bytes());
        let mut ip = vec![0u8; ipv6::HDR_LEN];
        ip[0] = 0x60;
        ip[ipv6::OFF_NEXT_HEADER] = next;
        ip[ipv6::OFF_SRC..ipv6::OFF_SRC + 16].copy_from_slice(&CIP6.octets());
        ip[ipv6::OFF_DST..ipv6::OFF_DST + 16].copy_from_slice(&VIP6.octets());
        f.extend(ip);
        f.extend([0x1f, 0x40, 0x00, 0x50]); // 8000 -> 80
        f
    }

    const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);

    /// Both families' frames get a hint, each for its own table (tests/prefetch.rs shows the
    /// hints change no outcome).
    #[test]
    fn the_burst_prefetch_hints_both_families() {
        let dp = crate::pipeline::two_arm_for_tests([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]);
        let mut w = Pipeline::new(dp, 0);
        let (v4, v6, icmp) = (frame(0x0800, 5, 17, 0), frame6(6), frame6(58));
        w.prefetch_burst([&v6[..], &v4, &icmp]);
        assert!(
            matches!(w.prefetched[0], Some(Hint::V6(t, _)) if t.src == CIP6 && t.dport == 80),
            "{:?}",
            w.prefetched[0]
        );
        assert!(matches!(w.prefetched[1], Some(Hint::V4(t, _)) if t.proto == 17));
        assert!(w.prefetched[2..].iter().all(Option::is_none));
        w.use_prefetched(0);
        assert_eq!(w.hint.get(), Some(0));
        w.use_prefetched(PREFETCH_BURST);
        assert!(w.taken_hint().is_none(), "past the prefetched frames");
    }

    #[test]
    fn peek_tuple_reads_ipv6_tcp_and_udp_without_extension_headers() {
        let want = |proto| {
            Peeked::V6(Tuple {
                proto,
                src: CIP6,
                sport: 8000,
                dst: VIP6,
                dport: 80,
            })
        };
        assert_eq!(peek_tuple(&frame6(6)), Some(want(6)));
        assert_eq!(peek_tuple(&frame6(17)), Some(want(17)));
        // ICMPv6, a fragment header, hop-by-hop options: left to the pipeline.
        for next in [58, 44, 0, 43, 60] {
            assert_eq!(peek_tuple(&frame6(next)), None, "next header {next}");
        }
        let f = frame6(17);
        for n in 0..f.len() {
            assert_eq!(peek_tuple(&f[..n]), None, "{n} bytes");
        }
    }
}
