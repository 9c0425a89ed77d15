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
//!     for each frame: match w.process(in_port, &mut frame[..len]) {
//!         Action::Tx(port) => send frame on port,  // rewritten in place, L2 filled in
//!         Action::Hold { port, next_hop } => {     // next hop MAC unknown
//!             let n = w.arp_request(port, next_hop, &mut new_buf); send new_buf[..n] on port;
//!             keep the frame; later w.fill_l2(port, next_hop, frame) -> true => send it
//!         }
//!         Action::Drop => free frame,             // already counted by reason
//!     }
//!     w.housekeeping(now_ms);                      // bounded aging work
//! }
//! ```
//!
//! `process` counts rx and every drop; the caller counts what it sends with
//! [`Worker::count_tx`] and its own drops with [`Worker::count_drop`]. The frame's length never
//! changes (all rewrites are in place). `now_ms` is a monotonic millisecond clock shared by all
//! workers (any epoch below 2^40 ms).
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
//!
//! Routing: the port with the longest connected prefix holding the destination (next hop = the
//! destination), else the first port with a gateway (next hop = the gateway). Forwarded and NATed
//! packets get their TTL decremented; one that would leave with TTL 0 is dropped and counted
//! (`ttl_expired`); generating ICMP time-exceeded and fragmentation-needed is a later step.

#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use crate::conntrack::{ConnState, ConnTable, Dir, Hit, InsertError, NewConn, TcpEvent, Tuple};
use crate::neigh::{ArpOutcome, NeighTable};
use crate::packet::arp;
use crate::packet::eth::{self, EthHdr};
use crate::packet::icmp::{self, IcmpHdr};
use crate::packet::ipv4::{self, Ipv4Hdr, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::packet::l4::{self, L4Hdr, Side};
use crate::packet::ParseError;
use crate::sched::{Dests, Flow};
use crate::service::{Snapshot, MAX_DESTS};
use crate::stats::{DropReason, Event, Stats, WorkerStats};
use arc_swap::ArcSwap;
use control::config::{Cidr, PortRole};
use control::model::Timeouts;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Neighbour table slots.
const NEIGH_CAPACITY: usize = 4096;
/// Connection-table entries each worker ages per `housekeeping` call.
const AGING_BUDGET: usize = 128;

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
            aging,
            snap,
            index,
            dp,
            now: 0,
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

    /// Ages a bounded slice of this worker's share of the connection table.
    pub fn housekeeping(&mut self, now_ms: u64) {
        self.dp.conns.housekeeping(
            self.aging.clone(),
            &mut self.aging_cursor,
            AGING_BUDGET,
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

    /// Handles one frame received on `in_port`, rewriting it in place. See the module
    /// documentation.
    pub fn process(&mut self, in_port: u16, frame: &mut [u8]) -> Action {
        let st = self.stats();
        st.rx(in_port);
        match self.classify(in_port, frame) {
            Ok(a) => a,
            Err(reason) => {
                st.drop(reason);
                Action::Drop
            }
        }
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
        let eth = EthHdr::parse(frame).ok_or(DropReason::Malformed)?;
        match eth.ethertype {
            eth::ETHERTYPE_IPV4 => {
                if eth.dst != port.mac {
                    return Err(DropReason::NotForUs);
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
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Malformed)?;
        let ip = Ipv4Hdr::parse(l3).map_err(|e| match e {
            ParseError::Fragment => DropReason::Fragment,
            ParseError::BadChecksum => DropReason::BadChecksum,
            _ => DropReason::Malformed,
        })?;
        if self.dp.is_martian(ip.src) || self.dp.is_martian(ip.dst) {
            return Err(DropReason::Martian);
        }
        if port.on_link(ip.src)
            && !self.dp.is_local(ip.src)
            && self.dp.neigh.lookup(in_port, ip.src) != Some(hdr.src)
        {
            self.dp.neigh.learn(in_port, ip.src, hdr.src);
        }
        let ours = self.dp.is_local(ip.dst) || self.snap.is_vip(ip.dst);
        match ip.proto {
            PROTO_TCP | PROTO_UDP => self.tcp_udp(frame, &ip),
            PROTO_ICMP if ours => self.icmp_local(in_port, port, hdr, frame, &ip),
            _ if ours => Err(DropReason::Local),
            _ => self.forward(frame, &ip),
        }
    }

    fn icmp_local(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
    ) -> Result<Action, DropReason> {
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Malformed)?;
        let msg = ip.payload(l3).ok_or(DropReason::Malformed)?;
        let h = IcmpHdr::parse(msg).map_err(|_| DropReason::Malformed)?;
        if h.icmp_type != icmp::TYPE_ECHO_REQUEST || h.code != 0 {
            return Err(DropReason::IcmpUnhandled);
        }
        icmp::echo_reply_in_place(l3, ip).ok_or(DropReason::Malformed)?;
        eth::set_macs(frame, &hdr.src, &port.mac).ok_or(DropReason::Malformed)?;
        self.stats().event(Event::EchoReplied);
        Ok(Action::Tx(in_port))
    }

    fn tcp_udp(&self, frame: &mut [u8], ip: &Ipv4Hdr) -> Result<Action, DropReason> {
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Malformed)?;
        let seg = ip.payload(l3).ok_or(DropReason::Malformed)?;
        let l4 = L4Hdr::parse(ip.proto, seg).map_err(|_| DropReason::Malformed)?;
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
            let reuse = hit.dir == Dir::Inbound
                && new_syn
                && matches!(hit.state, ConnState::TimeWait | ConnState::Close);
            if !reuse {
                conns.update(&hit, hit.dir, ev, self.now);
                return self.nat(frame, ip, &hit);
            }
            conns.remove(hit.conn);
        }

        if self.snap.is_vip(ip.dst) {
            let svc = self
                .snap
                .service(ip.proto, ip.dst, l4.dport)
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
            let i = svc
                .scheduler
                .pick(&Dests::new(&svc.dests, conns), &flow)
                .ok_or(DropReason::NoDest)?;
            let d = svc.dests.get(i).ok_or(DropReason::NoDest)?;
            let state = match ev {
                Some(ev) => crate::conntrack::tcp_transition(ConnState::None, Dir::Inbound, ev),
                None => ConnState::Udp,
            };
            let nc = NewConn {
                proto: ip.proto,
                client: (ip.src, l4.sport),
                virt: (ip.dst, l4.dport),
                real: (d.spec.addr, d.spec.port),
                dest: d.slot,
                state,
            };
            let hit = match conns.insert(&nc, self.now) {
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
                Err(InsertError::ReplyConflict) => return Err(DropReason::ConnConflict),
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

    /// DNAT (inbound) or SNAT (reply) of a tracked packet, TTL decremented, then out. A packet
    /// that arrives with TTL <= 1 is dropped and counted as `ttl_expired`; rvs does not send
    /// ICMP time exceeded for it yet, nor fragmentation-needed for one over the egress MTU
    /// (dropped as `mtu_exceeded`).
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
            return Err(DropReason::TtlExpired);
        }
        let (out, next_hop) = self.egress(nat.dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Malformed)?;
        l4::rewrite_endpoint(l3, ip, nat.side, nat.addr, nat.port, true)
            .ok_or(DropReason::Malformed)?;
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
    /// and counted (`ttl_expired`, `mtu_exceeded`); the ICMP errors a router would send for
    /// them are not generated yet.
    fn forward(&self, frame: &mut [u8], ip: &Ipv4Hdr) -> Result<Action, DropReason> {
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExpired);
        }
        let (out, next_hop) = self.egress(ip.dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Malformed)?;
        ipv4::decrement_ttl(l3).ok_or(DropReason::Malformed)?;
        self.stats().event(Event::Forwarded);
        Ok(self.l2_out(frame, out, next_hop))
    }

    /// Route lookup plus the egress MTU check.
    fn egress(&self, dst: Ipv4Addr, ip: &Ipv4Hdr) -> Result<(u16, Ipv4Addr), DropReason> {
        let (out, next_hop) = self.dp.route(dst).ok_or(DropReason::NoRoute)?;
        let mtu = self
            .dp
            .ports
            .get(usize::from(out))
            .map_or(0, |p| usize::from(p.mtu));
        if ip.total_len > mtu {
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
