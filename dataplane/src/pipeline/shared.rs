//! The state every worker shares: ports, routes, neighbours, connections, persistence
//! templates, fragment decisions, the service snapshot and the counters.

use super::kernel::KernelPath;
use super::owned::OwnedAddrs;
use crate::addr_set::AddrFilter6;
use crate::conntrack::{ConnTable, ConnTable6};
use crate::frag::{FragTable, FragTable6, FRAG_SLOTS};
use crate::neigh::{NeighTable, NeighTable6};
use crate::packet::ipv6;
use crate::persist::Persist;
use crate::service::{Snapshot, MAX_DESTS};
use crate::stats::Stats;
use crate::sync::{SyncOut, SyncStats};
use arc_swap::ArcSwap;
use control::config::{Cidr, PortRole};
use control::model::Timeouts;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Neighbour table slots.
const NEIGH_CAPACITY: usize = 4096;

/// The IPv6 connection table's capacity for a configured capacity of `connections`: a
/// quarter of it (an IPv6 connection takes more memory than an IPv4 one, and most traffic is
/// IPv4 today), at least 1024.
pub fn ipv6_capacity(connections: usize) -> usize {
    (connections / 4).max(1024)
}

/// The persistence table's capacity in a family whose connection table holds `connections`:
/// a quarter of it, at least 1024, at most 4M templates.
fn templates(connections: usize) -> usize {
    (connections / 4).clamp(1024, 1 << 22)
}

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
    /// The port's own IPv6 addresses with their prefix lengths; each makes its prefix directly
    /// reachable through the port.
    pub addrs6: Vec<(Ipv6Addr, u8)>,
    /// IPv6 next hop for destinations outside every port's prefixes.
    pub gateway6: Option<Ipv6Addr>,
    pub mtu: u16,
}

impl PortSetup {
    pub(super) fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|c| c.contains(ip))
    }

    /// Whether `ip` is in one of the port's IPv6 prefixes, or link-local (fe80::/10: every
    /// IPv6 link has it).
    pub(super) fn on_link6(&self, ip: Ipv6Addr) -> bool {
        ipv6::is_link_local(ip) || self.addrs6.iter().any(|&(a, len)| same_prefix6(a, ip, len))
    }

    /// Whether `ip` is one of the port's own IPv6 addresses, its link-local address included.
    pub(super) fn holds6(&self, ip: Ipv6Addr) -> bool {
        ip == self.link_local6() || self.addrs6.iter().any(|&(a, _)| a == ip)
    }

    /// The port's link-local address, made from its MAC (modified EUI-64, RFC 4291 2.5.1):
    /// the source of its neighbour discovery towards link-local neighbours.
    pub(super) fn link_local6(&self) -> Ipv6Addr {
        ipv6::link_local_of(self.mac)
    }

    /// The source of what the port sends to `dst` over IPv6 on its own behalf (neighbour
    /// solicitations, ICMPv6 errors): the address whose prefix holds `dst`, else the first
    /// one, else (for a link-local `dst`, or a port with none) its link-local address.
    pub(super) fn source6(&self, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        if ipv6::is_link_local(dst) {
            return Some(self.link_local6());
        }
        self.addrs6
            .iter()
            .find(|&&(a, len)| same_prefix6(a, dst, len))
            .or(self.addrs6.first())
            .map(|&(a, _)| a)
            .or(Some(self.link_local6()))
    }

    pub(super) fn holds_vips(&self) -> bool {
        self.role != PortRole::Internal
    }
}

#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Index in this list = the port number `process` and `Action` use.
    pub ports: Vec<PortSetup>,
    pub conn_capacity: usize,
    pub timeouts: Timeouts,
    /// Number of workers (each calls `Pipeline::new` with its index `0..workers`).
    pub workers: usize,
}

/// Whether `a` and `b` share their first `len` bits.
fn same_prefix6(a: Ipv6Addr, b: Ipv6Addr, len: u8) -> bool {
    let mask = prefix_mask6(len);
    u128::from(a) & mask == u128::from(b) & mask
}

/// The netmask of an IPv6 prefix of `len` bits, as an integer.
fn prefix_mask6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

/// A connected subnet: `W` is the address as an integer (u32 for IPv4, u128 for IPv6), so
/// that a route lookup is a mask and a compare per route.
#[derive(Debug, Clone, Copy)]
struct Route<W> {
    net: W,
    mask: W,
    port: u16,
}

/// Everything the workers share: ports, routes, neighbours, connections, services, counters.
pub struct Dataplane {
    pub(super) ports: Vec<PortSetup>,
    /// Connected subnets, longest prefix first.
    routes: Vec<Route<u32>>,
    gateway: Option<(u16, Ipv4Addr)>,
    /// IPv6's: connected prefixes, longest first, and the first port's IPv6 gateway.
    routes6: Box<[Route<u128>]>,
    gateway6: Option<(u16, Ipv6Addr)>,
    /// The addresses we hold: configured, less those a VRRP instance names but does not hold,
    /// plus those it holds ([`super::VirtualAddrs`] publishes it; workers load it per burst).
    pub(super) owned: ArcSwap<OwnedAddrs>,
    /// `owned`'s generation, bumped after each publish: a worker compares it once per burst
    /// and loads `owned` only when it moved (cheaper than an ArcSwap load per burst).
    pub(super) owned_generation: AtomicU64,
    /// The broadcast addresses of our subnets (/30 and wider), for `is_martian`.
    broadcasts: Box<[u32]>,
    pub(super) neigh: NeighTable,
    pub(super) neigh6: NeighTable6,
    pub(super) conns: ConnTable,
    /// IPv6 connections: a sibling table sharing `conns`' real-server counts, so that a real
    /// server's ActiveConn/InActConn count both families ([`ConnTable6::sharing`]).
    pub(super) conns6: ConnTable6,
    /// Persistence templates (`-p`).
    pub(super) persist: Persist,
    pub(super) frags: FragTable,
    pub(super) frags6: FragTable6,
    /// Every port's own IPv6 addresses, link-local ones included (`Pipeline::is_local6`), as
    /// integers (cheaper to compare).
    pub(super) local6: Box<[u128]>,
    /// `local6` as a filter, asked first.
    pub(super) local6_filter: AddrFilter6,
    pub(super) snapshot: ArcSwap<Snapshot>,
    /// Bumped after each store to `snapshot`: a worker compares it once per burst and loads
    /// `snapshot` only when it moved (as `owned_generation` does for `owned`).
    pub(super) snapshot_published: AtomicU64,
    pub(super) stats: Stats,
    pub(super) workers: usize,
    /// The latest `now_ms` a worker reported, for the control side (`-L -c` expiry times).
    pub(super) clock_ms: AtomicU64,
    /// Free connection-table entries as last sampled ([`Dataplane::sample_free_entries`]),
    /// for the flood defences' automatic mode.
    free_entries: AtomicU64,
    /// The ports with a kernel twin and the rate up to the kernel.
    pub(super) kernel: KernelPath,
    /// Connection sync: the workers' queues to the sync thread (`crate::sync`).
    pub(super) sync: SyncOut,
    /// What the sync thread sent, received and refused.
    sync_stats: SyncStats,
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
        Dataplane::with_kernel_path(cfg, KernelPath::default())
    }

    /// [`Dataplane::new`] with a kernel exception path: traffic for our own addresses that the
    /// dataplane does not handle goes up to the twins `kernel` names (docs/exception-path.md).
    pub fn with_kernel_path(cfg: DataplaneConfig, kernel: KernelPath) -> Arc<Dataplane> {
        let mut ports = cfg.ports;
        ports.truncate(usize::from(u16::MAX));
        let mut routes: Vec<(u8, Route<u32>)> = Vec::new();
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
        let mut routes6: Vec<(u8, Route<u128>)> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            for &(a, len) in &p.addrs6 {
                let mask = prefix_mask6(len);
                routes6.push((
                    len,
                    Route {
                        net: u128::from(a) & mask,
                        mask,
                        port: i as u16,
                    },
                ));
            }
        }
        // Longest prefix first; equal prefixes keep port order.
        routes.sort_by_key(|r| std::cmp::Reverse(r.0));
        routes6.sort_by_key(|r| std::cmp::Reverse(r.0));
        let gateway = ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.gateway.map(|g| (i as u16, g)));
        let broadcasts: Box<[u32]> = routes
            .iter()
            .filter(|(_, r)| r.mask < 0xffff_fffe)
            .map(|(_, r)| r.net | !r.mask)
            .collect();
        let owned = ArcSwap::from_pointee(OwnedAddrs::configured(&ports, &broadcasts));
        let workers = cfg.workers.max(1);
        let conns = ConnTable::new(cfg.conn_capacity, MAX_DESTS, &cfg.timeouts);
        let conns6 = ConnTable6::sharing(&conns, ipv6_capacity(cfg.conn_capacity));
        let local6: Box<[u128]> = ports
            .iter()
            .flat_map(|p| p.addrs6.iter().map(|&(a, _)| a).chain([p.link_local6()]))
            .map(u128::from)
            .collect();
        Arc::new(Dataplane {
            stats: Stats::new(
                workers,
                ports.iter().map(|p| p.name.clone()).collect(),
                MAX_DESTS,
            ),
            routes: routes.into_iter().map(|(_, r)| r).collect(),
            gateway,
            routes6: routes6.into_iter().map(|(_, r)| r).collect(),
            gateway6: ports
                .iter()
                .enumerate()
                .find_map(|(i, p)| p.gateway6.map(|g| (i as u16, g))),
            owned,
            owned_generation: AtomicU64::new(0),
            broadcasts,
            neigh: NeighTable::new(NEIGH_CAPACITY),
            neigh6: NeighTable6::new(NEIGH_CAPACITY),
            free_entries: AtomicU64::new(conns.capacity() as u64),
            conns,
            conns6,
            persist: Persist::new(
                templates(cfg.conn_capacity),
                templates(ipv6_capacity(cfg.conn_capacity)),
            ),
            frags: FragTable::new(FRAG_SLOTS),
            frags6: FragTable6::new6(FRAG_SLOTS),
            local6_filter: AddrFilter6::new(local6.iter().copied()),
            local6,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            snapshot_published: AtomicU64::new(0),
            ports,
            workers,
            clock_ms: AtomicU64::new(0),
            kernel,
            sync: SyncOut::new(workers),
            sync_stats: SyncStats::default(),
        })
    }

    pub fn ports(&self) -> &[PortSetup] {
        &self.ports
    }

    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// The IPv6 connections (see [`Dataplane::conns`]).
    pub fn conns6(&self) -> &ConnTable6 {
        &self.conns6
    }

    pub fn neigh(&self) -> &NeighTable {
        &self.neigh
    }

    pub fn neigh6(&self) -> &NeighTable6 {
        &self.neigh6
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

    /// Connection sync's side of the workers: the master switch, the refresh period, the
    /// queues the sync thread drains.
    pub fn sync(&self) -> &SyncOut {
        &self.sync
    }

    /// The sync thread's counters.
    pub fn sync_stats(&self) -> &SyncStats {
        &self.sync_stats
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
        let old = self.snapshot.swap(s);
        // After the store: a worker that sees the new count loads the new snapshot (Release
        // here, Acquire in `Pipeline::begin_burst`).
        self.snapshot_published.fetch_add(1, Ordering::Release);
        old
    }

    /// Samples how many connection-table entries are free (capacity - length) for the flood
    /// defences (`drop_entry`, `drop_packet`, `secure_tcp` in automatic mode). The table's
    /// length is the sum of every real-server slot's counts, too dear for a worker's burst, so
    /// the control thread samples it: every second, as the kernel's defence timer does, and
    /// after every sysctl change. Workers read the sample once per burst.
    pub fn sample_free_entries(&self) {
        let free = self.conns.capacity().saturating_sub(self.conns.len());
        self.free_entries.store(free as u64, Ordering::Relaxed);
    }

    /// The last sample of [`Dataplane::sample_free_entries`] (the capacity before the first).
    pub fn free_entries(&self) -> u64 {
        self.free_entries.load(Ordering::Relaxed)
    }

    /// The workers' clock as last seen by a worker (0 before the first burst).
    pub fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    /// The addresses rvs holds now (configured and virtual).
    pub fn owned_addrs(&self) -> Arc<OwnedAddrs> {
        self.owned.load_full()
    }

    /// Egress port and next hop for `dst`.
    pub(super) fn route(&self, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        let d = u32::from(dst);
        self.routes
            .iter()
            .find(|r| d & r.mask == r.net)
            .map(|r| (r.port, dst))
            .or(self.gateway)
    }

    /// Egress port and next hop for the IPv6 destination `dst`: the port whose prefix (the
    /// longest) holds it, else the first port with an IPv6 gateway. A link-local destination
    /// is only on the link it came from, which routing does not know: none.
    pub(super) fn route6(&self, dst: Ipv6Addr) -> Option<(u16, Ipv6Addr)> {
        if ipv6::is_link_local(dst) {
            return None;
        }
        let d = u128::from(dst);
        self.routes6
            .iter()
            .find(|r| d & r.mask == r.net)
            .map(|r| (r.port, dst))
            .or(self.gateway6)
    }

    /// The broadcast addresses of our subnets.
    pub(super) fn broadcasts(&self) -> &[u32] {
        &self.broadcasts
    }

    /// Never routed: unspecified, loopback, multicast, class E/broadcast, or the broadcast
    /// address of one of our subnets.
    pub(super) fn is_martian(&self, ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        o[0] == 0 || o[0] == 127 || o[0] >= 224 || self.broadcasts.contains(&u32::from(ip))
    }
}

/// A two-arm dataplane for the crate's own unit tests (the tests in tests/ use
/// `testkit::director`, which this crate's unit tests cannot): ext 198.51.100.1/24 at `ext_mac`,
/// int 192.0.2.1/24 at `int_mac`, one worker, 1024 connections.
#[cfg(test)]
pub(crate) fn two_arm_for_tests(ext_mac: [u8; 6], int_mac: [u8; 6]) -> Arc<Dataplane> {
    two_arm_with_for_tests(ext_mac, int_mac, None)
}

/// [`two_arm_for_tests`] with IPv6 addresses too: ext 2001:db8:100::2/64, int 2001:db8:2::1/64.
#[cfg(test)]
pub(crate) fn dual_stack_for_tests(ext_mac: [u8; 6], int_mac: [u8; 6]) -> Arc<Dataplane> {
    two_arm_with_for_tests(ext_mac, int_mac, Some(["2001:db8:100::2", "2001:db8:2::1"]))
}

#[cfg(test)]
fn two_arm_with_for_tests(
    ext_mac: [u8; 6],
    int_mac: [u8; 6],
    addrs6: Option<[&str; 2]>,
) -> Arc<Dataplane> {
    use control::config::{Cidr, PortRole};
    let port = |name: &str, mac, role, addr, i: usize| PortSetup {
        name: name.into(),
        mac,
        role,
        addrs: vec![Cidr::parse(addr).unwrap()],
        gateway: None,
        addrs6: addrs6
            .map(|a| vec![(a[i].parse().unwrap(), 64)])
            .unwrap_or_default(),
        gateway6: None,
        mtu: 1500,
    };
    Dataplane::new(DataplaneConfig {
        ports: vec![
            port("ext", ext_mac, PortRole::External, "198.51.100.1/24", 0),
            port("int", int_mac, PortRole::Internal, "192.0.2.1/24", 1),
        ],
        conn_capacity: 1024,
        timeouts: control::model::Timeouts::default(),
        workers: 1,
    })
}
