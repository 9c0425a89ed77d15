//! Per packet: classify -> lookup/schedule -> rewrite -> verdict. No DPDK types, no allocation,
//! no locks that readers wait on, no syscalls, no panics.
//!
//! CONTRACT used by `dpdk::worker` (keep these signatures):
//!
//! ```ignore
//! let dp: Arc<Dataplane> = Dataplane::new(DataplaneConfig { ports, conn_capacity, timeouts, workers });
//! let mut w = Worker::new(dp.clone(), worker_index);
//! loop {
//!     w.begin_burst(now_ms);                       // loads the service snapshot once per burst
//!     // buf: the frame's bytes followed by the buffer's tailroom (mbuf data_len + tailroom)
//!     for each frame: match w.process_buf(in_port, &mut buf, len) {
//!         Action::Tx(port) => send buf[..len] on port,  // rewritten in place, L2 filled in
//!         Action::Reply { port, len } => send buf[..len] on port, // a new frame (ICMP error)
//!                                                  // built in the buffer; set the length first
//!         Action::Hold { port, next_hop } => {     // next hop MAC unknown
//!             w.count_event(Event::ArpRequests);
//!             let n = w.arp_request(port, next_hop, &mut new_buf); send new_buf[..n] on port;
//!             keep the frame; later w.fill_l2(port, next_hop, frame) -> true => send it
//!         }
//!         Action::Drop => free frame,             // already counted by reason
//!     }
//!     w.housekeeping(now_ms);                      // bounded aging work
//! }
//! ```
//!
//! `process(in_port, frame)` is `process_buf(in_port, frame, frame.len())`: no room to grow, so
//! an ICMP error that does not fit in the frame itself is not sent (the drop is still counted).
//!
//! Accounting: `process_buf` counts rx and every drop; the caller counts what it sends with
//! [`Worker::count_tx`], its own drops with [`Worker::count_drop`], frames it never hands to
//! `process_buf` with [`Worker::count_rx`] + a drop, and the frames it generates (ARP requests)
//! with [`Worker::count_event`]. Then, once nothing is held any more,
//! `rx_packets + arp_requests + icmp_time_exceeded_sent + icmp_frag_needed_sent = tx_packets +
//! sum(drop.*)`: a frame answered by an ICMP error counts as dropped (by its reason) and the
//! error as generated. Apart from `Reply`, the frame's length never changes (all rewrites are in
//! place). `now_ms` is a monotonic millisecond clock shared by all workers (any epoch below
//! 2^40 ms).
//!
//! What `process` does with a frame:
//! - ARP: learns the sender (on a connected subnet); answers requests for the port's own
//!   addresses and, on external/both ports, for every VIP; other ARP is consumed.
//! - ICMP echo request to one of our addresses or a VIP: echo reply in place, same port.
//! - TCP/UDP of a tracked connection: client -> VIP:vport is DNATed to RIP:rport, RIP:rport ->
//!   client is SNATed to VIP:vport; the TCP state follows the packet.
//! - TCP SYN (without RST) or any UDP to a service: a real server is scheduled, the connection
//!   inserted and the packet DNATed. Other TCP to a service without a connection is dropped.
//! - Any other IPv4 not addressed to us is routed plainly between the ports (the real servers'
//!   other traffic, as a director with ip_forward=1 does).
//! - ICMP errors (types 3, 4, 11) quoting a tracked connection: rewritten as IPVS does (outer
//!   address, quoted address and port, checksums) and sent on; to a VIP or our address about
//!   nothing tracked: dropped (`icmp_unrelated`).
//! - IPv4 fragments: the first one (offset 0) takes the normal path and its decision is
//!   recorded; later ones follow it (`frag`); see docs/packet-verdicts.md.
//!
//! Routing: the port with the longest connected prefix holding the destination (next hop = the
//! destination), else the first port with a gateway (next hop = the gateway). Forwarded and NATed
//! packets get their TTL decremented; one that would leave with TTL 0 is dropped
//! (`ttl_expired`) and answered with ICMP time exceeded; one larger than the egress MTU is
//! dropped (`mtu_exceeded`) and, with DF set, answered with ICMP fragmentation needed. ICMP
//! errors follow RFC 1812: never about an ICMP error, a non-first fragment, or from/to a group or
//! special address; a per-worker token bucket ([`ICMP_RATE_PER_SEC`], burst [`ICMP_BURST`])
//! limits them. They go back out of the ingress port to the frame's source MAC (the previous
//! hop), from the packet's destination when that is a VIP or ours, else from the ingress port's
//! address. Every verdict and its counter: docs/packet-verdicts.md.

use crate::conntrack::{ConnState, ConnTable, Dir, Hit, InsertError, NewConn, TcpEvent, Tuple};
use crate::frag::{FragInsert, FragKey, FragTable, FragVerdict, FRAG_SLOTS};
use crate::neigh::{ArpOutcome, NeighTable};
use crate::packet::arp;
use crate::packet::eth::{self, EthHdr};
use crate::packet::icmp::{self, IcmpHdr};
use crate::packet::ipv4::{self, Ipv4Hdr, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::packet::l4::{self, L4Hdr, Side};
use crate::packet::ParseError;
use crate::persist::Persist;
use crate::sched::{Dests, Flow};
use crate::service::{Snapshot, MAX_DESTS};
use crate::stats::{DropReason, Event, Stats, WorkerStats};
use arc_swap::ArcSwap;
use control::config::{Cidr, PortRole};
use control::model::Timeouts;
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// ICMP errors each worker may originate per second (as Linux's icmp_msgs_per_sec), so that no
/// flood of expiring or oversized packets is amplified.
pub const ICMP_RATE_PER_SEC: u64 = 1000;
/// Token bucket depth of that limit.
pub const ICMP_BURST: u64 = 50;

/// Neighbour table slots.
const NEIGH_CAPACITY: usize = 4096;
/// Each worker ages its whole share of the connection table once in this many milliseconds,
/// a share of it in each millisecond (see `Worker::housekeeping`).
pub const AGING_SWEEP_MS: u64 = 2000;

/// One port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSetup {
    pub name: String,
    pub mac: [u8; 6],
    pub role: PortRole,
    /// The port's own addresses; each makes its subnet directly reachable through the port.
    pub addrs: Vec<Cidr>,
    /// Next hop for destinations outside every port's subnets.
    pub gateway: Option<Ipv4Addr>,
    pub mtu: u16,
}

impl PortSetup {
    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|c| c.addr == ip)
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|c| c.contains(ip))
    }

    fn holds_vips(&self) -> bool {
        self.role != PortRole::Internal
    }
}

#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Index in this list = the port number `process` and `Action` use.
    pub ports: Vec<PortSetup>,
    pub conn_capacity: usize,
    pub timeouts: Timeouts,
    /// Number of workers (each calls `Worker::new` with its index `0..workers`).
    pub workers: usize,
}

/// What the caller does with the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send it on this port.
    Tx(u16),
    /// Send `buf[..len]` on `port`: a frame rvs built in the buffer in place of the one
    /// received (an ICMP error); its length differs from the received frame's.
    Reply { port: u16, len: usize },
    /// The next hop's MAC is unknown: send an ARP request and keep the frame until
    /// `fill_l2` succeeds.
    Hold { port: u16, next_hop: Ipv4Addr },
    /// Free it (already counted).
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    net: u32,
    mask: u32,
    port: u16,
}

/// Everything the workers share: ports, routes, neighbours, connections, services, counters.
pub struct Dataplane {
    ports: Vec<PortSetup>,
    /// Connected subnets, longest prefix first.
    routes: Vec<Route>,
    gateway: Option<(u16, Ipv4Addr)>,
    neigh: NeighTable,
    conns: ConnTable,
    /// Persistence templates (`-p`).
    persist: Persist,
    frags: FragTable,
    snapshot: ArcSwap<Snapshot>,
    stats: Stats,
    workers: usize,
    /// The latest `now_ms` a worker reported, for the control side (`-L -c` expiry times).
    clock_ms: AtomicU64,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("ports", &self.ports)
            .field("conns", &self.conns)
            .field("workers", &self.workers)
            .finish()
    }
}

impl Dataplane {
    /// Sets up the shared state. Degenerate sizes are clamped (at least one worker, a
    /// connection table of at least one entry); ports past `u16::MAX` are ignored.
    pub fn new(cfg: DataplaneConfig) -> Arc<Dataplane> {
        let mut ports = cfg.ports;
        ports.truncate(usize::from(u16::MAX));
        let mut routes: Vec<(u8, Route)> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            for c in &p.addrs {
                let mask = c.mask();
                routes.push((
                    c.prefix_len,
                    Route {
                        net: u32::from(c.addr) & mask,
                        mask,
                        port: i as u16,
                    },
                ));
            }
        }
        // Longest prefix first; equal prefixes keep port order.
        routes.sort_by_key(|r| std::cmp::Reverse(r.0));
        let gateway = ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.gateway.map(|g| (i as u16, g)));
        let workers = cfg.workers.max(1);
        Arc::new(Dataplane {
            stats: Stats::new(
                workers,
                ports.iter().map(|p| p.name.clone()).collect(),
                MAX_DESTS,
            ),
            routes: routes.into_iter().map(|(_, r)| r).collect(),
            gateway,
            neigh: NeighTable::new(NEIGH_CAPACITY),
            conns: ConnTable::new(cfg.conn_capacity, MAX_DESTS, &cfg.timeouts),
            persist: Persist::new((cfg.conn_capacity / 4).clamp(1024, 1 << 22)),
            frags: FragTable::new(FRAG_SLOTS),
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            ports,
            workers,
            clock_ms: AtomicU64::new(0),
        })
    }

    pub fn ports(&self) -> &[PortSetup] {
        &self.ports
    }

    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    pub fn neigh(&self) -> &NeighTable {
        &self.neigh
    }

    /// The persistence templates (`-p`).
    pub fn persist(&self) -> &Persist {
        &self.persist
    }

    /// The fragment table (decisions for the later fragments of datagrams).
    pub fn frags(&self) -> &FragTable {
        &self.frags
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The current service snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a new service snapshot; returns the previous one.
    pub(crate) fn publish(&self, s: Arc<Snapshot>) -> Arc<Snapshot> {
        self.snapshot.swap(s)
    }

    /// The workers' clock as last seen by a worker (0 before the first burst).
    pub fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.ports.iter().any(|p| p.owns(ip))
    }

    /// Egress port and next hop for `dst`.
    fn route(&self, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        let d = u32::from(dst);
        self.routes
            .iter()
            .find(|r| d & r.mask == r.net)
            .map(|r| (r.port, dst))
            .or(self.gateway)
    }

    /// Never routed: unspecified, loopback, multicast, class E/broadcast, or the broadcast
    /// address of one of our subnets.
    fn is_martian(&self, ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        o[0] == 0
            || o[0] == 127
            || o[0] >= 224
            || self
                .routes
                .iter()
                .any(|r| r.mask < 0xffff_fffe && u32::from(ip) == r.net | !r.mask)
    }
}

/// One worker's view of the dataplane. Not shared: each worker thread owns one.
pub struct Worker {
    dp: Arc<Dataplane>,
    index: usize,
    snap: Arc<Snapshot>,
    now: u64,
    aging: Range<usize>,
    aging_cursor: usize,
    /// The millisecond of the last aging step.
    aged_at: u64,
    /// ICMP error token bucket: (tokens, last refill in ms).
    icmp_bucket: Cell<(u64, u64)>,
    /// The ICMP error the path that dropped the current frame asks for.
    pending_icmp: Cell<Option<PendingIcmp>>,
}

/// An ICMP error to send in place of the frame being dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingIcmp {
    icmp_type: u8,
    code: u8,
    rest: u32,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .finish()
    }
}

/// The rewrite a NATed packet gets.
struct Nat {
    side: Side,
    addr: Ipv4Addr,
    port: u16,
    /// Where the packet goes after the rewrite.
    dst: Ipv4Addr,
}

impl Worker {
    /// Worker `index` of `dp.workers()` (an index past the last one shares counters with
    /// another worker; it works, but the counts may lose updates).
    pub fn new(dp: Arc<Dataplane>, index: usize) -> Worker {
        let snap = dp.snapshot();
        let aging = dp.conns.slice(index, dp.workers);
        Worker {
            aging_cursor: aging.start,
            aged_at: 0,
            aging,
            snap,
            index,
            dp,
            now: 0,
            icmp_bucket: Cell::new((ICMP_BURST, 0)),
            pending_icmp: Cell::new(None),
        }
    }

    /// Starts a burst at `now_ms`: picks up a new service snapshot if one was published.
    pub fn begin_burst(&mut self, now_ms: u64) {
        if now_ms != self.now {
            self.now = now_ms;
            self.dp.clock_ms.fetch_max(now_ms, Ordering::Relaxed);
        }
        let cur = self.dp.snapshot.load();
        if !Arc::ptr_eq(&cur, &self.snap) {
            // The old snapshot is kept alive by the service manager, so dropping it here frees
            // nothing on this thread.
            self.snap = arc_swap::Guard::into_inner(cur);
        }
    }

    /// The generation of the service snapshot this worker uses now (the one `begin_burst`
    /// picked up); for tests and the snapshot-visibility benchmark.
    pub fn snapshot_generation(&self) -> u64 {
        self.snap.generation
    }

    /// Prefetches the connection-table lines that `frames` (one burst, before any of it is
    /// handled) will look up: every bucket first, then every entry, so that the misses of a
    /// table larger than the cache overlap across the burst instead of stalling each packet
    /// twice. Frames that are not plain TCP/UDP over IPv4 are skipped. A hint: handling the
    /// frames afterwards gives the same result with or without it.
    pub fn prefetch_burst(&self, frames: &[&[u8]]) {
        let conns = &self.dp.conns;
        let mut started = [None; PREFETCH_BURST];
        for (p, f) in started.iter_mut().zip(frames) {
            *p = peek_tuple(f).map(|t| conns.prefetch_bucket(&t));
        }
        for p in started.iter().flatten() {
            conns.prefetch_entry(p);
        }
    }

    /// Ages this worker's share of the connection table: once per millisecond, the share
    /// of it due since the last step, so that all of it is looked at every `AGING_SWEEP_MS`
    /// whatever the poll-loop rate. (A fixed number of entries per loop tied the sweep to how
    /// fast the loop spins: an idle worker did little else, a busy one aged less often.)
    /// Expired entries met by a lookup or an insert are removed there too.
    pub fn housekeeping(&mut self, now_ms: u64) {
        if now_ms == self.aged_at {
            return;
        }
        let elapsed = now_ms.saturating_sub(self.aged_at).min(AGING_SWEEP_MS);
        self.aged_at = now_ms;
        let share = (self.aging.len() as u64)
            .saturating_mul(elapsed)
            .div_ceil(AGING_SWEEP_MS);
        self.dp.conns.housekeeping(
            self.aging.clone(),
            &mut self.aging_cursor,
            usize::try_from(share).unwrap_or(usize::MAX),
            now_ms,
        );
    }

    fn stats(&self) -> &WorkerStats {
        self.dp.stats.worker(self.index)
    }

    /// Counts a drop the caller decided on (TX ring full, no mbuf, ...).
    pub fn count_drop(&self, reason: DropReason) {
        self.stats().drop(reason);
    }

    /// Counts `n` frames sent on `port`.
    pub fn count_tx(&self, port: u16, n: u64) {
        self.stats().tx(port, n);
    }

    /// Counts a frame received on `port` that the caller does not hand to `process_buf` (it
    /// counts its drop too).
    pub fn count_rx(&self, port: u16) {
        self.stats().rx(port);
    }

    /// Counts an event the caller saw (e.g. [`Event::ArpRequests`] for each ARP request it
    /// builds).
    pub fn count_event(&self, ev: Event) {
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
        self.pending_icmp.set(None);
        let Some(frame) = buf.get_mut(..len) else {
            st.drop(DropReason::Truncated);
            return Action::Drop;
        };
        match self.classify(in_port, frame) {
            Ok(a) => a,
            Err(reason) => {
                st.drop(reason);
                match self.pending_icmp.take() {
                    Some(p) => self.icmp_error(in_port, buf, len, p),
                    None => Action::Drop,
                }
            }
        }
    }

    /// Builds the ICMP error `p` about the (unchanged) frame `buf[..len]` in its place, if
    /// RFC 1812 and the rate limit allow.
    fn icmp_error(&self, in_port: u16, buf: &mut [u8], len: usize, p: PendingIcmp) -> Action {
        let Some(port) = self.dp.ports.get(usize::from(in_port)) else {
            return Action::Drop;
        };
        let Some(frame) = buf.get(..len) else {
            return Action::Drop;
        };
        let (Some(eth), Some(l3)) = (EthHdr::parse(frame), frame.get(eth::HDR_LEN..)) else {
            return Action::Drop;
        };
        let Ok(ip) = Ipv4Hdr::parse_any(l3) else {
            return Action::Drop;
        };
        // Never to a group or special address, never about ICMP errors or later fragments,
        // never to ourselves.
        if eth::is_multicast(&eth.src)
            || self.dp.is_martian(ip.src)
            || self.dp.is_local(ip.src)
            || self.snap.is_vip(ip.src)
            || !icmp::may_answer(l3, &ip)
        {
            return Action::Drop;
        }
        let src = if self.dp.is_local(ip.dst) || self.snap.is_vip(ip.dst) {
            Some(ip.dst)
        } else {
            port.addrs
                .iter()
                .find(|c| c.contains(ip.src))
                .or(port.addrs.first())
                .map(|c| c.addr)
        };
        let Some(src) = src else {
            return Action::Drop;
        };
        if !self.icmp_token() {
            self.stats().event(Event::IcmpRateLimited);
            return Action::Drop;
        }
        let spec = icmp::ErrorSpec {
            icmp_type: p.icmp_type,
            code: p.code,
            rest: p.rest,
            src,
            src_mac: port.mac,
        };
        match icmp::build_error_in_place(buf, len, &ip, &spec) {
            Some(n) => {
                self.stats()
                    .event(if p.icmp_type == icmp::TYPE_TIME_EXCEEDED {
                        Event::IcmpTimeExceeded
                    } else {
                        Event::IcmpFragNeeded
                    });
                Action::Reply {
                    port: in_port,
                    len: n,
                }
            }
            None => Action::Drop,
        }
    }

    /// Takes one token from the ICMP error bucket, refilled at [`ICMP_RATE_PER_SEC`].
    fn icmp_token(&self) -> bool {
        let (mut tokens, mut last) = self.icmp_bucket.get();
        let add = self
            .now
            .saturating_sub(last)
            .saturating_mul(ICMP_RATE_PER_SEC)
            / 1000;
        if add > 0 || self.now < last {
            tokens = tokens.saturating_add(add).min(ICMP_BURST);
            last = self.now;
        }
        let ok = tokens > 0;
        if ok {
            tokens -= 1;
        }
        self.icmp_bucket.set((tokens, last));
        ok
    }

    /// Asks `process_buf` to answer the frame being dropped with this ICMP error.
    fn want_icmp(&self, icmp_type: u8, code: u8, rest: u32) {
        self.pending_icmp.set(Some(PendingIcmp {
            icmp_type,
            code,
            rest,
        }));
    }

    /// Writes the L2 header for `next_hop` on `port` if its MAC is known now.
    pub fn fill_l2(&self, port: u16, next_hop: Ipv4Addr, frame: &mut [u8]) -> bool {
        let (Some(p), Some(mac)) = (
            self.dp.ports.get(usize::from(port)),
            self.dp.neigh.lookup(port, next_hop),
        ) else {
            return false;
        };
        eth::set_macs(frame, &mac, &p.mac).is_some()
    }

    /// Writes an ARP request for `target` out of `port` into `buf` (from the port's address on
    /// the target's subnet, else its first address). Returns the bytes written, 0 if `buf` is
    /// too small (60 bytes are needed) or the port is unknown.
    pub fn arp_request(&self, port: u16, target: Ipv4Addr, buf: &mut [u8]) -> usize {
        let Some(p) = self.dp.ports.get(usize::from(port)) else {
            return 0;
        };
        let src = p
            .addrs
            .iter()
            .find(|c| c.contains(target))
            .or(p.addrs.first())
            .map_or(Ipv4Addr::UNSPECIFIED, |c| c.addr);
        arp::build_request(buf, p.mac, src, target)
    }

    fn classify(&self, in_port: u16, frame: &mut [u8]) -> Result<Action, DropReason> {
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
                        DropReason::L2Multicast
                    } else {
                        DropReason::NotForUs
                    });
                }
                self.ipv4(in_port, port, &eth, frame)
            }
            eth::ETHERTYPE_ARP => self.arp(in_port, port, &eth, frame),
            t if eth::is_vlan(t) => Err(DropReason::Vlan),
            _ => Err(DropReason::NotIpv4),
        }
    }

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

    fn ipv4(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
    ) -> Result<Action, DropReason> {
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let ip = Ipv4Hdr::parse_any(l3).map_err(ip_error)?;
        // Our own addresses and the VIPs are never a source from outside (as Linux's martian
        // source check): a land attack or a loop (found by fuzzing: an echo request from the
        // VIP to the VIP was answered).
        if self.dp.is_martian(ip.src)
            || self.dp.is_martian(ip.dst)
            || self.dp.is_local(ip.src)
            || self.snap.is_vip(ip.src)
        {
            return Err(DropReason::Martian);
        }
        // A sender on one of our links is learned as if it had sent ARP: from every packet
        // that connection tracking does not handle, and from a TCP/UDP packet only when it
        // finds no connection (`tcp_udp`): established flows skip the neighbour lookup.
        let learn = || {
            if port.on_link(ip.src)
                && !self.dp.is_local(ip.src)
                && self.dp.neigh.lookup(in_port, ip.src) != Some(hdr.src)
            {
                self.dp.neigh.learn(in_port, ip.src, hdr.src);
            }
        };
        let tcp_udp = ip.proto == PROTO_TCP || ip.proto == PROTO_UDP;
        if !tcp_udp || ip.frag_offset() != 0 {
            learn();
        }
        if ip.has_options() {
            // Options are kept as they are, as the kernel's NAT does.
            self.stats().event(Event::IpOptions);
        }
        let vip = self.snap.is_vip(ip.dst);
        let ours = vip || self.dp.is_local(ip.dst);
        if ip.is_fragment() {
            if ours && !(vip && tcp_udp) {
                // For rvs itself (a fragmented ping to a VIP, anything to the DIP): rvs
                // reassembles nothing.
                return Err(DropReason::Fragment);
            }
            if ip.frag_offset() != 0 {
                return self.later_fragment(frame, &ip, ours);
            }
            if !tcp_udp {
                return self.forward(frame, &ip);
            }
        }
        match ip.proto {
            PROTO_TCP | PROTO_UDP => self.tcp_udp(frame, &ip, learn),
            PROTO_ICMP => self.icmp(in_port, port, hdr, frame, &ip, ours),
            _ if vip => Err(DropReason::UnknownProto),
            _ if ours => Err(DropReason::Local),
            _ => self.forward(frame, &ip),
        }
    }

    /// A fragment at a non-zero offset: it follows the decision taken for its first fragment.
    fn later_fragment(
        &self,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        ours: bool,
    ) -> Result<Action, DropReason> {
        if ip.proto == PROTO_TCP && ip.frag_offset() == 8 {
            // RFC 1858: a TCP fragment at offset 8 can only mean to overwrite the TCP header.
            return Err(DropReason::BadFragment);
        }
        let key = FragKey {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            id: ip.id,
        };
        let (side, addr, dst, slot, dir) = match self.dp.frags.lookup(&key, self.now) {
            Some(FragVerdict::Route) if !ours => return self.forward(frame, ip),
            Some(FragVerdict::Dnat { addr, slot }) => (Side::Dst, addr, addr, slot, Dir::Inbound),
            Some(FragVerdict::Snat { addr, slot }) => (Side::Src, addr, ip.dst, slot, Dir::Reply),
            _ => return Err(DropReason::FragNoFirst),
        };
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let (out, next_hop) = self.egress(dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let off = match side {
            Side::Src => ipv4::OFF_SRC,
            Side::Dst => ipv4::OFF_DST,
        };
        ipv4::rewrite_addr_dec_ttl(l3, off, addr).ok_or(DropReason::Malformed)?;
        let st = self.stats();
        if let Some(s) = st.slot(slot) {
            let bytes = ip.total_len as u64;
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
        st.event(Event::FragFollowed);
        Ok(self.l2_out(frame, out, next_hop))
    }

    /// Records the decision for a first fragment's datagram.
    fn record_fragment(&self, ip: &Ipv4Hdr, verdict: FragVerdict) {
        if !ip.is_fragment() {
            return;
        }
        let key = FragKey {
            src: ip.src,
            dst: ip.dst,
            proto: ip.proto,
            id: ip.id,
        };
        let st = self.stats();
        st.event(Event::FragFirst);
        match self.dp.frags.insert(&key, verdict, self.now) {
            FragInsert::Stored => {}
            FragInsert::Evicted | FragInsert::Busy => st.event(Event::FragEvicted),
        }
    }

    /// ICMP not in fragments: errors about tracked connections are rewritten and sent on; the
    /// rest to our addresses is answered (echo) or dropped; the rest is routed.
    fn icmp(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        ours: bool,
    ) -> Result<Action, DropReason> {
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let msg = ip.payload(l3).ok_or(DropReason::Truncated)?;
        let h = IcmpHdr::parse(msg).map_err(|_| DropReason::Truncated)?;
        if h.is_conn_error() {
            if let Some(e) = icmp::parse_error(msg) {
                // The quoted packet went the other way: its reversed tuple is the key.
                let t = Tuple {
                    proto: e.proto,
                    src: e.dst,
                    sport: e.dport,
                    dst: e.src,
                    dport: e.sport,
                };
                if let Some(hit) = self.dp.conns.lookup(&t, self.now) {
                    if !icmp::checksum_ok(msg) {
                        return Err(DropReason::BadChecksum);
                    }
                    return self.icmp_nat(frame, ip, &e, &hit);
                }
            }
            if ours {
                return Err(DropReason::IcmpUnrelated);
            }
            return self.forward(frame, ip);
        }
        if ours {
            return self.icmp_local(in_port, port, hdr, frame, ip);
        }
        self.forward(frame, ip)
    }

    /// An ICMP error quoting a tracked connection, rewritten as the kernel's `ip_vs_nat_icmp`
    /// does: on its way to the client (quoting a packet rvs sent to the real server) the outer
    /// source and the quoted destination become VIP:vport; on its way to the real server
    /// (quoting a reply rvs sent to the client) the outer destination and the quoted source
    /// become RIP:rport.
    fn icmp_nat(
        &self,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        e: &icmp::Embedded,
        hit: &Hit,
    ) -> Result<Action, DropReason> {
        let (nat, dst) = match hit.dir {
            Dir::Reply => (
                icmp::ErrorNat {
                    outer: Side::Src,
                    outer_addr: hit.virt.0,
                    inner: Side::Dst,
                    inner_addr: hit.virt.0,
                    inner_port: hit.virt.1,
                },
                ip.dst,
            ),
            Dir::Inbound => (
                icmp::ErrorNat {
                    outer: Side::Dst,
                    outer_addr: hit.real.0,
                    inner: Side::Src,
                    inner_addr: hit.real.0,
                    inner_port: hit.real.1,
                },
                hit.real.0,
            ),
        };
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let (out, next_hop) = self.egress(dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        icmp::nat_error(l3, ip, e, &nat).ok_or(DropReason::Malformed)?;
        self.stats().event(Event::IcmpNat);
        Ok(self.l2_out(frame, out, next_hop))
    }

    fn icmp_local(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
    ) -> Result<Action, DropReason> {
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let msg = ip.payload(l3).ok_or(DropReason::Truncated)?;
        let h = IcmpHdr::parse(msg).map_err(|_| DropReason::Truncated)?;
        if h.icmp_type != icmp::TYPE_ECHO_REQUEST || h.code != 0 {
            return Err(DropReason::IcmpUnhandled);
        }
        icmp::echo_reply_in_place(l3, ip).ok_or(DropReason::Malformed)?;
        eth::set_macs(frame, &hdr.src, &port.mac).ok_or(DropReason::Malformed)?;
        self.stats().event(Event::EchoReplied);
        Ok(Action::Tx(in_port))
    }

    /// A TCP or UDP packet (or first fragment): NAT by its connection, else a new one when it
    /// opens one to a service, else routed. `learn_sender` runs unless it found a connection.
    fn tcp_udp(
        &self,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        learn_sender: impl Fn(),
    ) -> Result<Action, DropReason> {
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let seg = ip.payload(l3).ok_or(DropReason::Truncated)?;
        let l4 = L4Hdr::parse_ip(ip, seg).map_err(|e| l4_error(e, ip))?;
        let t = Tuple {
            proto: ip.proto,
            src: ip.src,
            sport: l4.sport,
            dst: ip.dst,
            dport: l4.dport,
        };
        let tcp = ip.proto == PROTO_TCP;
        let ev = if tcp {
            TcpEvent::from_flags(l4.flags)
        } else {
            None
        };
        let new_syn = tcp && l4.flags.syn() && !l4.flags.rst();
        let conns = &self.dp.conns;

        if let Some(hit) = conns.lookup(&t, self.now) {
            // A SYN reusing the ports of a closed connection starts a new one (port reuse).
            let reuse = hit.dir == Dir::Inbound && new_syn && yields_to_new_syn(hit.state);
            if !reuse {
                conns.update(&hit, hit.dir, ev, self.now);
                return self.nat(frame, ip, &hit);
            }
            conns.remove(hit.conn);
        }
        learn_sender();

        if self.snap.is_vip(ip.dst) {
            // A port-0 (persistent) service takes the ports no other service has.
            let svc = self
                .snap
                .service(ip.proto, ip.dst, l4.dport)
                .or_else(|| self.snap.service(ip.proto, ip.dst, 0))
                .ok_or(DropReason::NoService)?;
            if tcp && !new_syn {
                return Err(DropReason::UnknownFlow);
            }
            let flow = Flow {
                client: ip.src,
                cport: l4.sport,
                vip: ip.dst,
                vport: l4.dport,
            };
            let dests = Dests::new(&svc.dests, conns);
            let i = match svc.spec.persistence {
                Some(timeout) => self
                    .dp
                    .persist
                    .pick(svc, &dests, ip.proto, &flow, timeout, self.now),
                None => svc.scheduler.pick(&dests, &flow),
            }
            .ok_or(DropReason::NoDest)?;
            let d = svc.dests.get(i).ok_or(DropReason::NoDest)?;
            // A real server without a port (in a port-0 service) gets the client's port.
            let rport = if d.spec.port == 0 {
                l4.dport
            } else {
                d.spec.port
            };
            let state = match ev {
                Some(ev) => crate::conntrack::tcp_transition(ConnState::None, Dir::Inbound, ev),
                None => ConnState::Udp,
            };
            let nc = NewConn {
                proto: ip.proto,
                client: (ip.src, l4.sport),
                virt: (ip.dst, l4.dport),
                real: (d.spec.addr, rport),
                dest: d.slot,
                state,
            };
            let mut inserted = conns.insert(&nc, self.now);
            if new_syn
                && inserted == Err(InsertError::ReplyConflict)
                && self.reclaim_closed(&nc.reply())
            {
                inserted = conns.insert(&nc, self.now);
            }
            let hit = match inserted {
                Ok(hit) => {
                    self.stats().event(Event::ConnCreated);
                    if let Some(s) = self.stats().slot(d.slot) {
                        s.conns.add(1);
                    }
                    hit
                }
                Err(InsertError::Exists(hit)) => {
                    conns.update(&hit, hit.dir, ev, self.now);
                    hit
                }
                Err(InsertError::ReplyConflict | InsertError::Busy) => {
                    return Err(DropReason::ConnConflict)
                }
                Err(InsertError::Full) => return Err(DropReason::TableFull),
                Err(InsertError::DestRetired) => return Err(DropReason::NoDest),
            };
            return self.nat(frame, ip, &hit);
        }
        if self.dp.is_local(ip.dst) {
            return Err(DropReason::Local);
        }
        self.forward(frame, ip)
    }

    /// Removes the closed connection (TIME_WAIT, CLOSE) holding real-side tuple `reply`, so a
    /// new SYN can take it: the client reuses its port for another virtual service that maps to
    /// the same real server and port while the old connection lingers in the table. (The
    /// kernel's newest-first lookup gives the new connection the replies too.) A live
    /// connection keeps its tuple: true only if a closed one was removed.
    fn reclaim_closed(&self, reply: &Tuple) -> bool {
        let conns = &self.dp.conns;
        match conns.lookup(reply, self.now) {
            Some(old) if yields_to_new_syn(old.state) => conns.remove(old.conn),
            _ => false,
        }
    }

    /// DNAT (inbound) or SNAT (reply) of a tracked packet, TTL decremented, then out. A packet
    /// that arrives with TTL <= 1 is dropped as `ttl_expired` (ICMP time exceeded back); one
    /// over the egress MTU as `mtu_exceeded` (with DF: ICMP fragmentation needed back). A first
    /// fragment's rewrite is recorded for the later fragments.
    fn nat(&self, frame: &mut [u8], ip: &Ipv4Hdr, hit: &Hit) -> Result<Action, DropReason> {
        let nat = match hit.dir {
            Dir::Inbound => Nat {
                side: Side::Dst,
                addr: hit.real.0,
                port: hit.real.1,
                dst: hit.real.0,
            },
            Dir::Reply => Nat {
                side: Side::Src,
                addr: hit.virt.0,
                port: hit.virt.1,
                dst: ip.dst,
            },
        };
        if ip.ttl <= 1 {
            self.want_icmp(icmp::TYPE_TIME_EXCEEDED, icmp::CODE_TTL_EXCEEDED, 0);
            return Err(DropReason::TtlExpired);
        }
        let (out, next_hop) = self.egress(nat.dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        l4::rewrite_endpoint(l3, ip, nat.side, nat.addr, nat.port, true)
            .ok_or(DropReason::Malformed)?;
        self.record_fragment(
            ip,
            match hit.dir {
                Dir::Inbound => FragVerdict::Dnat {
                    addr: nat.addr,
                    slot: hit.dest,
                },
                Dir::Reply => FragVerdict::Snat {
                    addr: nat.addr,
                    slot: hit.dest,
                },
            },
        );
        let st = self.stats();
        let bytes = ip.total_len as u64;
        if let Some(s) = st.slot(hit.dest) {
            match hit.dir {
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
        st.event(match hit.dir {
            Dir::Inbound => Event::Dnat,
            Dir::Reply => Event::Snat,
        });
        Ok(self.l2_out(frame, out, next_hop))
    }

    /// Plain IPv4 routing with the TTL decremented. TTL <= 1 and over-MTU packets are dropped
    /// and counted (`ttl_expired`, `mtu_exceeded`) and answered with the ICMP error a router
    /// sends. A first fragment's decision (routed) is recorded for the later fragments.
    fn forward(&self, frame: &mut [u8], ip: &Ipv4Hdr) -> Result<Action, DropReason> {
        if ip.ttl <= 1 {
            self.want_icmp(icmp::TYPE_TIME_EXCEEDED, icmp::CODE_TTL_EXCEEDED, 0);
            return Err(DropReason::TtlExpired);
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
    fn egress(&self, dst: Ipv4Addr, ip: &Ipv4Hdr) -> Result<(u16, Ipv4Addr), DropReason> {
        let (out, next_hop) = self.dp.route(dst).ok_or(DropReason::NoRoute)?;
        let mtu = self
            .dp
            .ports
            .get(usize::from(out))
            .map_or(0, |p| usize::from(p.mtu));
        if ip.total_len > mtu {
            if ip.dont_fragment() {
                self.want_icmp(
                    icmp::TYPE_DEST_UNREACH,
                    icmp::CODE_FRAG_NEEDED,
                    u32::try_from(mtu).unwrap_or(0) & 0xffff,
                );
            }
            return Err(DropReason::MtuExceeded);
        }
        Ok((out, next_hop))
    }

    fn l2_out(&self, frame: &mut [u8], port: u16, next_hop: Ipv4Addr) -> Action {
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

/// The drop reason for an IPv4 header `Ipv4Hdr::parse_any` refused.
/// Frames of a burst [`Worker::prefetch_burst`] looks at (the rest are not prefetched).
pub const PREFETCH_BURST: usize = 32;

/// The 5-tuple of a TCP or UDP over IPv4 frame (no VLAN tag, not a later fragment), read
/// without any validation: only a prefetch hint, the pipeline checks everything later.
#[inline]
fn peek_tuple(frame: &[u8]) -> Option<Tuple> {
    let ip = frame.get(eth::HDR_LEN..)?;
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (&vihl, &proto) = (ip.first()?, ip.get(9)?);
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if ethertype != eth::ETHERTYPE_IPV4
        || (proto != PROTO_TCP && proto != PROTO_UDP)
        || frag & ipv4::FRAG_OFFSET_MASK != 0
    {
        return None;
    }
    let addr = |o: usize| -> Option<Ipv4Addr> {
        let b: [u8; 4] = ip.get(o..o + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    };
    let l4 = ip.get(usize::from(vihl & 0x0f) * 4..)?;
    Some(Tuple {
        proto,
        src: addr(ipv4::OFF_SRC)?,
        sport: u16::from_be_bytes([*l4.first()?, *l4.get(1)?]),
        dst: addr(ipv4::OFF_DST)?,
        dport: u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]),
    })
}

/// A closed connection gives its tuples up to a new SYN that needs them.
fn yields_to_new_syn(state: ConnState) -> bool {
    matches!(state, ConnState::TimeWait | ConnState::Close)
}

fn ip_error(e: ParseError) -> DropReason {
    match e {
        ParseError::Truncated => DropReason::Truncated,
        ParseError::BadVersion => DropReason::BadVersion,
        ParseError::BadHeaderLen => DropReason::BadHeaderLen,
        ParseError::BadTotalLen => DropReason::BadTotalLen,
        ParseError::BadChecksum => DropReason::BadChecksum,
        ParseError::Fragment => DropReason::Fragment,
        ParseError::Unsupported => DropReason::Malformed,
    }
}

/// The drop reason for a TCP/UDP header `L4Hdr::parse_ip` refused in the packet `ip`.
fn l4_error(e: ParseError, ip: &Ipv4Hdr) -> DropReason {
    match e {
        _ if ip.is_fragment() => DropReason::BadFragment,
        ParseError::Truncated => DropReason::Truncated,
        _ => DropReason::Malformed,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
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

    #[test]
    fn peek_tuple_reads_plain_tcp_and_udp_only() {
        let want = |proto| Tuple {
            proto,
            src: Ipv4Addr::new(198, 51, 100, 10),
            sport: 8000,
            dst: Ipv4Addr::new(198, 51, 100, 1),
            dport: 80,
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
}
