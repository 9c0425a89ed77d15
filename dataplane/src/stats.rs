//! Per-worker counters: written only by their own worker, summed by readers.
//!
//! A [`Counter`] is an `AtomicU64` that its single writer bumps with a relaxed load + store (no
//! locked read-modify-write, so it costs what a plain `u64` add does); readers on other threads
//! load it relaxed and sum over workers. Each worker's counters sit in their own cache-padded
//! block, so no two cores ever write the same cache line.

use control::model;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this (a second writer would lose updates, never
    /// corrupt memory).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            pub const COUNT: usize = $name::ALL.len();

            /// The counter's name, as the control side exposes it.
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }
    };
}

named_enum! {
    /// Why a frame was dropped (or consumed without being sent on).
    DropReason {
        /// A malformed Ethernet, ARP, TCP, UDP or ICMP header (a bad field value, e.g. TCP
        /// data offset below 5 or a UDP length beyond the packet).
        Malformed = "malformed",
        /// Shorter than the headers it announces (Ethernet, IPv4, TCP, UDP or ICMP header cut).
        Truncated = "truncated",
        /// Ethertype IPv4, but the IP version field is not 4.
        BadVersion = "bad_version",
        /// IPv4 IHL below 5, or a header longer than the frame.
        BadHeaderLen = "bad_header_len",
        /// IPv4 total length below the header length or beyond the frame.
        BadTotalLen = "bad_total_len",
        /// An ethertype other than IPv4, IPv6 and ARP (LLDP, ...).
        NotIpv4 = "not_ipv4",
        /// An 802.1Q/802.1ad tagged frame: VLANs are not configured.
        Vlan = "vlan",
        /// A unicast frame for another MAC.
        NotForUs = "not_for_us",
        /// IPv4 to a broadcast or multicast MAC (only ARP is taken from group addresses).
        L2Multicast = "l2_multicast",
        /// IPv4 header checksum does not verify (or the ICMP checksum of an ICMP error that
        /// would be rewritten).
        BadChecksum = "bad_checksum",
        /// An IPv4 fragment addressed to rvs itself (rvs reassembles nothing for its own
        /// addresses: fragmented pings to a VIP, ...); to a non-VIP address on a port with a
        /// kernel twin it goes up to the kernel, which reassembles.
        Fragment = "fragment",
        /// A non-first fragment whose first fragment's decision did not come while it was held
        /// (lost, dropped, later than the hold's wait, or its decision expired): see `frag` and
        /// `driver`.
        FragNoFirst = "frag_no_first",
        /// A fragment rvs refuses: a first fragment too short for its TCP/UDP header, a TCP
        /// fragment at offset 8 (RFC 1858 overlap attack), or IPv6 neighbour discovery in a
        /// fragment, an atomic one included (RFC 6980).
        BadFragment = "bad_fragment",
        /// Source or destination that is never routed (broadcast, multicast, 0/8, 127/8), or a
        /// source that is one of our addresses or a VIP.
        Martian = "martian",
        /// TCP/UDP/other to one of our own non-VIP addresses, on a port without a kernel twin
        /// (with one, it goes up to the kernel: `to_kernel`).
        Local = "local",
        /// ICMP to our addresses other than echo request (to a non-VIP address on a port with
        /// a kernel twin: up to the kernel).
        IcmpUnhandled = "icmp_unhandled",
        /// An ICMP error (type 3, 4, 11) to a VIP or our address about no tracked connection
        /// (to a non-VIP address on a port with a kernel twin: up to the kernel).
        IcmpUnrelated = "icmp_unrelated",
        /// An IPv6 extension-header chain rvs refuses: one that overruns the packet, a
        /// hop-by-hop header not first, a header repeated, a routing header with segments left
        /// to a VIP or one of our addresses (in transit it is routed).
        BadExtHeader = "bad_ext_header",
        /// An IPv6 next header that is neither a known extension header nor an upper-layer
        /// protocol rvs can walk past.
        UnknownExtHeader = "unknown_ext_header",
        /// An IPv6 neighbour solicitation for an address that is not ours.
        NdpNotOurs = "ndp_not_ours",
        /// Other neighbour discovery (advertisements, learnt from, then consumed; router
        /// solicitations and advertisements, redirects).
        NdpConsumed = "ndp_consumed",
        /// A protocol other than TCP, UDP and ICMP to a VIP.
        UnknownProto = "unknown_proto",
        /// To a VIP, but no service for that protocol and port.
        NoService = "no_service",
        /// A TCP packet other than SYN to a service, with no connection.
        UnknownFlow = "unknown_flow",
        /// Connection table full.
        TableFull = "table_full",
        /// The new connection's reply tuple is already used by another connection.
        ConnConflict = "conn_conflict",
        /// No eligible real server (all weight 0, overloaded, or none).
        NoDest = "no_dest",
        /// A client's TCP segment (not a SYN) of a connection whose real server was removed,
        /// with `expire_nodest_conn` 1: the connection is expired and the segment answered with
        /// a RST (`tcp_rst_sent`; a RST is not answered).
        DestRemoved = "dest_removed",
        /// TCP/UDP from a real server's service address and port (RIP:rport of a configured or
        /// removed real server) that matches no connection: never routed to the client
        /// un-NATed; with `nat_icmp_send` 1 answered with ICMP port unreachable
        /// (`icmp_port_unreach_sent`; not to a TCP RST).
        RsNoConn = "rs_no_conn",
        /// TTL would reach 0 on forwarding (an ICMP time exceeded is sent in its place unless
        /// RFC 1812 forbids it or the rate limit holds it back: `icmp_time_exceeded_sent`).
        TtlExpired = "ttl_expired",
        /// No port's subnet holds the destination and no gateway is set.
        NoRoute = "no_route",
        /// Larger than the egress port's MTU (with DF set, an ICMP fragmentation needed is sent
        /// in its place, as for `ttl_expired`; without DF rvs does not fragment).
        MtuExceeded = "mtu_exceeded",
        /// The ingress port number is not configured.
        BadPort = "bad_port",
        /// An ARP request for an address that is not ours.
        ArpNotOurs = "arp_not_ours",
        /// An ARP reply (learnt, then consumed) or another ARP opcode.
        ArpReply = "arp_reply",
        /// A chained (multi-segment) mbuf: the pipeline works on one contiguous buffer.
        MultiSegment = "multi_segment",
        /// The hold queue for frames awaiting ARP resolution is full.
        HoldQueueFull = "hold_queue_full",
        /// No mbuf for an ARP request.
        MbufAlloc = "mbuf_alloc",
        /// The next hop did not answer ARP in time.
        NeighUnresolved = "neigh_unresolved",
        /// The TX ring stayed full.
        TxFull = "tx_full",
        /// A later fragment that arrived before its first fragment's decision, dropped because
        /// the worker's fragment hold was full (see `driver`).
        FragHoldFull = "frag_hold_full",
        /// A new connection the `drop_packet` defence dropped (one of every `am_droprate`, or
        /// of a rate from the table's fill in automatic mode).
        DefenceDropPacket = "defence_drop_packet",
        /// For the kernel (see `to_kernel`), but over the worker's exception-path rate
        /// (`[exception] rate`, `burst`).
        KernelRateLimited = "kernel_rate_limited",
        /// For the kernel, but the exception queue to the kernel twin was full.
        KernelQueueFull = "kernel_queue_full",
        /// Sent by the kernel through a twin, but not routable: neither IPv4 nor IPv6, a bad
        /// header, a group or special destination (`martian`'s addresses; every IPv6 group:
        /// the kernel's MLD reports), no route, or over the egress MTU.
        KernelUnroutable = "kernel_unroutable",
    }
}

named_enum! {
    /// Things that happened to frames that were not dropped.
    Event {
        ArpReplied = "arp_replies",
        /// IPv6 neighbour solicitations answered with an advertisement.
        NdpReplied = "ndp_replies",
        EchoReplied = "echo_replies",
        ConnCreated = "conns_created",
        Dnat = "dnat",
        Snat = "snat",
        Forwarded = "forwarded",
        /// Returned `Action::Hold`: next hop MAC unknown.
        Held = "held",
        /// ARP requests built by the worker (generated frames: sent, or dropped as counted).
        ArpRequests = "arp_requests",
        /// IPv6 neighbour solicitations built by the worker to resolve a next hop (generated
        /// frames, as `arp_requests`).
        NeighSolicitations = "ndp_solicitations",
        /// ICMP time exceeded built in place of a packet dropped as `ttl_expired`.
        IcmpTimeExceeded = "icmp_time_exceeded_sent",
        /// ICMP fragmentation needed built in place of a packet dropped as `mtu_exceeded`.
        IcmpFragNeeded = "icmp_frag_needed_sent",
        /// ICMP port unreachable to a real server, built in place of a packet dropped as
        /// `rs_no_conn` (`nat_icmp_send` 1).
        IcmpPortUnreach = "icmp_port_unreach_sent",
        /// TCP RST to a client, built in place of a segment dropped as `dest_removed`.
        TcpRstSent = "tcp_rst_sent",
        /// Connections expired on a client's packet because their real server was removed
        /// (`expire_nodest_conn` 1); a UDP datagram or a SYN is then scheduled afresh.
        NodestExpired = "nodest_expired",
        /// ICMP errors not sent because of the per-worker rate limit.
        IcmpRateLimited = "icmp_rate_limited",
        /// ICMP errors about a tracked connection, rewritten and sent on.
        IcmpNat = "icmp_nat",
        /// IPv4 packets with header options, handled with the options kept.
        IpOptions = "ip_options",
        /// First fragments whose decision was recorded for the later fragments.
        FragFirst = "frag_first",
        /// Later fragments that followed their first fragment's decision.
        FragFollowed = "frag_followed",
        /// Fragment decisions that replaced a live one (fragment table bucket full) or could
        /// not be recorded (bucket busy).
        FragEvicted = "frag_evicted",
        /// Later fragments that arrived before their first fragment's decision and were held
        /// for it (then sent as `frag_followed`, or dropped as `frag_no_first` or
        /// `frag_hold_full`).
        FragHeld = "frag_held",
        /// Datagrams to a one-packet scheduling (`-o`) service, each scheduled on its own and
        /// DNATed without a connection.
        OpsScheduled = "ops_scheduled",
        /// Half-open connections (SYN_RECV, SYNACK) the `drop_entry` defence removed from
        /// the table before their timeout.
        DefenceDropEntry = "defence_drop_entry",
        /// ICMP errors to a VIP about a flow with no connection that `schedule_icmp` scheduled
        /// to a real server (a connection made for the flow, then the error NATed to it).
        IcmpScheduled = "icmp_scheduled",
        /// Frames for rvsd's own addresses that the dataplane does not handle, handed (L2
        /// stripped) to the exception queue of the ingress port's kernel twin.
        ToKernel = "to_kernel",
        /// IPv4 packets the kernel sent through a twin, handed to a worker to route out of a
        /// port (sent, held for ARP or dropped as counted).
        FromKernel = "from_kernel",
        /// Connection events (a new state the kernel syncs, a periodic refresh, a persistence
        /// template) queued for the sync thread while this director is the sync master.
        SyncQueued = "sync_queued",
        /// Connection events lost because the worker's sync queue was full (the backup learns
        /// of the connection at its next event or refresh).
        SyncQueueOverflow = "sync_queue_overflow",
        /// Of `to_kernel`'s frames: link-local multicast (224.0.0.0/24: VRRP adverts, IPVS
        /// sync) to its group MAC, sent up to the ingress port's twin (counted when the
        /// worker's rate let it through; the queue may still refuse it: `kernel_queue_full`).
        MulticastToKernel = "multicast_to_kernel",
        /// Of `from_kernel`'s packets: multicast the kernel sent through a twin, sent out of
        /// that twin's port to the group MAC.
        MulticastFromKernel = "multicast_from_kernel",
        /// Gratuitous ARPs built for addresses that became held (a VRRP instance's on
        /// becoming MASTER; generated frames: sent, or dropped as counted).
        GratuitousArp = "garp_sent",
        /// IPv6 unsolicited neighbour advertisements (to all nodes) for the port's IPv6
        /// addresses and the IPv6 VIPs, sent when the worker starts (generated frames).
        UnsolicitedNa = "unsolicited_na_sent",
    }
}

impl Event {
    /// The events that count frames rvs builds itself (ARP requests, ICMP errors, TCP RSTs)
    /// and those the kernel hands it (`from_kernel`): with them, `rx_packets + sum(generated)
    /// = tx_packets + sum(drop.*) + to_kernel` whenever nothing is held (see
    /// [`Stats::generated`]).
    pub const GENERATED: &'static [Event] = &[
        Event::FromKernel,
        Event::ArpRequests,
        Event::NeighSolicitations,
        Event::GratuitousArp,
        Event::UnsolicitedNa,
        Event::IcmpTimeExceeded,
        Event::IcmpFragNeeded,
        Event::IcmpPortUnreach,
        Event::TcpRstSent,
    ];
}

/// Packets and bytes of one real server (a stats slot) seen by one worker.
#[derive(Debug, Default)]
pub struct SlotTraffic {
    pub conns: Counter,
    pub in_pkts: Counter,
    pub out_pkts: Counter,
    pub in_bytes: Counter,
    pub out_bytes: Counter,
}

#[derive(Debug, Default)]
struct PortCounters {
    rx: Counter,
    tx: Counter,
}

/// One worker's counters.
#[derive(Debug)]
pub struct WorkerStats {
    drops: [Counter; DropReason::COUNT],
    events: [Counter; Event::COUNT],
    ports: Box<[CachePadded<PortCounters>]>,
    /// Indexed by real-server slot id (see `service`).
    slots: Box<[SlotTraffic]>,
    /// Loop rounds that received frames on some port, and rounds that received none: the
    /// worker's busy share, counted once per round of rx bursts, never per packet.
    busy_polls: Counter,
    idle_polls: Counter,
}

impl WorkerStats {
    fn new(ports: usize, slots: usize) -> WorkerStats {
        WorkerStats {
            drops: std::array::from_fn(|_| Counter::default()),
            events: std::array::from_fn(|_| Counter::default()),
            ports: (0..ports).map(|_| CachePadded::default()).collect(),
            slots: (0..slots).map(|_| SlotTraffic::default()).collect(),
            busy_polls: Counter::default(),
            idle_polls: Counter::default(),
        }
    }

    /// Counts one round of rx bursts over every port: `busy` if any of them received a frame.
    #[inline]
    pub fn poll(&self, busy: bool) {
        if busy {
            self.busy_polls.add(1);
        } else {
            self.idle_polls.add(1);
        }
    }

    #[inline]
    pub fn drop(&self, reason: DropReason) {
        if let Some(c) = self.drops.get(reason as usize) {
            c.add(1);
        }
    }

    #[inline]
    pub fn event(&self, ev: Event) {
        self.event_n(ev, 1);
    }

    /// Counts `n` events at once.
    #[inline]
    pub fn event_n(&self, ev: Event, n: u64) {
        if let Some(c) = self.events.get(ev as usize) {
            c.add(n);
        }
    }

    #[inline]
    pub fn rx(&self, port: u16) {
        if let Some(p) = self.ports.get(usize::from(port)) {
            p.rx.add(1);
        }
    }

    #[inline]
    pub fn tx(&self, port: u16, n: u64) {
        if let Some(p) = self.ports.get(usize::from(port)) {
            p.tx.add(n);
        }
    }

    /// The traffic counters of real-server slot `slot`.
    #[inline]
    pub fn slot(&self, slot: u32) -> Option<&SlotTraffic> {
        self.slots.get(usize::try_from(slot).ok()?)
    }
}

/// All workers' counters.
#[derive(Debug)]
pub struct Stats {
    workers: Box<[CachePadded<WorkerStats>]>,
    port_names: Vec<String>,
}

impl Stats {
    /// Counters for `workers` workers (at least one), the named ports and `slots` real-server
    /// slots.
    pub fn new(workers: usize, port_names: Vec<String>, slots: usize) -> Stats {
        Stats {
            workers: (0..workers.max(1))
                .map(|_| CachePadded::new(WorkerStats::new(port_names.len(), slots)))
                .collect(),
            port_names,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Worker `index`'s counters (indices past the last worker wrap around).
    #[inline]
    pub fn worker(&self, index: usize) -> &WorkerStats {
        // A worker's own index needs no division (a pipeline asks several times per packet).
        if let Some(w) = self.workers.get(index) {
            return w;
        }
        // `new` creates at least one worker, so the remainder is always a valid index.
        #[allow(clippy::indexing_slicing)]
        &self.workers[index % self.workers.len()]
    }

    fn sum(&self, f: impl Fn(&WorkerStats) -> u64) -> u64 {
        self.workers.iter().map(|w| f(w)).fold(0, u64::wrapping_add)
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.sum(|w| w.drops.get(reason as usize).map_or(0, Counter::get))
    }

    pub fn events(&self, ev: Event) -> u64 {
        self.sum(|w| w.events.get(ev as usize).map_or(0, Counter::get))
    }

    /// Frames rvs built itself or took from the kernel: the sum of the [`Event::GENERATED`]
    /// events.
    pub fn generated(&self) -> u64 {
        Event::GENERATED
            .iter()
            .map(|e| self.events(*e))
            .fold(0, u64::wrapping_add)
    }

    /// Every drop, whatever its reason.
    pub fn dropped(&self) -> u64 {
        DropReason::ALL
            .iter()
            .map(|r| self.drops(*r))
            .fold(0, u64::wrapping_add)
    }

    pub fn rx_packets(&self) -> u64 {
        self.sum(|w| w.ports.iter().map(|p| p.rx.get()).sum())
    }

    pub fn tx_packets(&self) -> u64 {
        self.sum(|w| w.ports.iter().map(|p| p.tx.get()).sum())
    }

    /// Traffic of real-server slot `slot`, summed over workers (`conns` included).
    pub fn slot_total(&self, slot: u32) -> model::Stats {
        let get =
            |f: fn(&SlotTraffic) -> &Counter| self.sum(|w| w.slot(slot).map_or(0, |s| f(s).get()));
        model::Stats {
            conns: get(|s| &s.conns),
            in_pkts: get(|s| &s.in_pkts),
            out_pkts: get(|s| &s.out_pkts),
            in_bytes: get(|s| &s.in_bytes),
            out_bytes: get(|s| &s.out_bytes),
            ..Default::default()
        }
    }

    /// Every counter by name, summed over workers: `rx_packets`, `tx_packets`,
    /// `port.<name>.rx_packets`/`tx_packets`, `drop.<reason>` and one per [`Event`]; then each
    /// worker's own `worker.<index>.rx_packets`/`tx_packets`/`busy_polls`/`idle_polls`/`dnat`/
    /// `snat` (which worker rewrote which direction: replies may reach any worker).
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            ("rx_packets".to_string(), self.rx_packets()),
            ("tx_packets".to_string(), self.tx_packets()),
        ];
        for (i, name) in self.port_names.iter().enumerate() {
            let rx = self.sum(|w| w.ports.get(i).map_or(0, |p| p.rx.get()));
            let tx = self.sum(|w| w.ports.get(i).map_or(0, |p| p.tx.get()));
            out.push((format!("port.{name}.rx_packets"), rx));
            out.push((format!("port.{name}.tx_packets"), tx));
        }
        out.extend(
            Event::ALL
                .iter()
                .map(|e| (e.name().to_string(), self.events(*e))),
        );
        out.extend(
            DropReason::ALL
                .iter()
                .map(|r| (format!("drop.{}", r.name()), self.drops(*r))),
        );
        for (i, w) in self.workers.iter().enumerate() {
            let rx = w
                .ports
                .iter()
                .map(|p| p.rx.get())
                .fold(0, u64::wrapping_add);
            let tx = w
                .ports
                .iter()
                .map(|p| p.tx.get())
                .fold(0, u64::wrapping_add);
            out.push((format!("worker.{i}.rx_packets"), rx));
            out.push((format!("worker.{i}.tx_packets"), tx));
            out.push((format!("worker.{i}.busy_polls"), w.busy_polls.get()));
            out.push((format!("worker.{i}.idle_polls"), w.idle_polls.get()));
            for e in [Event::Dnat, Event::Snat] {
                let n = w.events.get(e as usize).map_or(0, Counter::get);
                out.push((format!("worker.{i}.{}", e.name()), n));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Rates (`-L --rate`)

/// How often the control thread samples the counters for `--rate`, in milliseconds.
pub const RATE_TICK_MS: u64 = 1000;

/// Samples kept per real server: rates are measured between the oldest and the newest, so over
/// the last `(RATE_SAMPLES - 1) * RATE_TICK_MS` = 4 s once that much history exists.
pub const RATE_SAMPLES: usize = 5;

/// `--rate` by sliding window, measured on the control thread, never on a worker.
///
/// Every [`RATE_TICK_MS`] the control thread reads each real server's counters (summed over the
/// workers, without baselines, so `-Z` does not disturb them) and hands them to
/// [`RateEstimator::sample`] with the time of the reading. A real server's rate is the difference
/// between its newest and its oldest kept sample divided by the time between them: an exact
/// average over the last few seconds, rather than the kernel's estimator (a 2 s tick feeding an
/// exponentially weighted average). A real server with fewer than two samples has no rate yet
/// (`None`; rvsadm prints `-`), so nothing reported is ever made up. Keys that a sample does not
/// name are forgotten, so a deleted real server's history never leaks into a new one.
#[derive(Debug, Clone)]
pub struct RateEstimator<K> {
    samples: usize,
    series: std::collections::BTreeMap<K, std::collections::VecDeque<(u64, model::Stats)>>,
}

impl<K: Ord + Clone> RateEstimator<K> {
    /// An estimator that keeps `samples` readings per key (at least two).
    pub fn new(samples: usize) -> RateEstimator<K> {
        RateEstimator {
            samples: samples.max(2),
            series: std::collections::BTreeMap::new(),
        }
    }

    /// Records one reading per key at `now_ms` (a monotonic clock); keys not in `totals` are
    /// forgotten. A reading that is not later than the key's previous one is ignored.
    pub fn sample(&mut self, now_ms: u64, totals: impl IntoIterator<Item = (K, model::Stats)>) {
        let mut next = std::collections::BTreeMap::new();
        for (key, total) in totals {
            let mut s = self.series.remove(&key).unwrap_or_default();
            if s.back().is_none_or(|(t, _)| *t < now_ms) {
                if s.len() >= self.samples {
                    s.pop_front();
                }
                s.push_back((now_ms, total));
            }
            next.insert(key, s);
        }
        self.series = next;
    }

    /// The per-second rates of `key` over its kept window, or `None` before it has two samples.
    pub fn rates(&self, key: &K) -> Option<model::Rates> {
        let s = self.series.get(key)?;
        let ((t0, a), (t1, b)) = (s.front()?, s.back()?);
        let dt = t1.checked_sub(*t0).filter(|dt| *dt > 0)?;
        let per_second = |from: u64, to: u64| -> u64 {
            let delta = u128::from(to.saturating_sub(from));
            let rate = (delta * 1000 + u128::from(dt) / 2) / u128::from(dt);
            u64::try_from(rate).unwrap_or(u64::MAX)
        };
        Some(model::Rates {
            cps: per_second(a.conns, b.conns),
            in_pps: per_second(a.in_pkts, b.in_pkts),
            out_pps: per_second(a.out_pkts, b.out_pkts),
            in_bps: per_second(a.in_bytes, b.in_bytes),
            out_bps: per_second(a.out_bytes, b.out_bytes),
        })
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// `a + b`, column by column (saturating).
pub fn add_rates(a: &model::Rates, b: &model::Rates) -> model::Rates {
    model::Rates {
        cps: a.cps.saturating_add(b.cps),
        in_pps: a.in_pps.saturating_add(b.in_pps),
        out_pps: a.out_pps.saturating_add(b.out_pps),
        in_bps: a.in_bps.saturating_add(b.in_bps),
        out_bps: a.out_bps.saturating_add(b.out_bps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(conns: u64, pkts: u64, bytes: u64) -> model::Stats {
        model::Stats {
            conns,
            in_pkts: pkts,
            out_pkts: pkts / 2,
            in_bytes: bytes,
            out_bytes: bytes * 3,
            rates: None,
        }
    }

    #[test]
    fn rates_need_two_samples_and_average_over_the_window() {
        let mut e = RateEstimator::<u32>::new(3);
        assert_eq!(e.rates(&7), None);
        e.sample(10_000, [(7, totals(0, 0, 0))]);
        assert_eq!(e.rates(&7), None, "one sample: no rate yet");
        e.sample(11_000, [(7, totals(10, 1000, 64_000))]);
        assert_eq!(
            e.rates(&7),
            Some(model::Rates {
                cps: 10,
                in_pps: 1000,
                out_pps: 500,
                in_bps: 64_000,
                out_bps: 192_000
            })
        );
        // 2 s window: (30 - 0) conns over 2 s.
        e.sample(12_000, [(7, totals(30, 3000, 64_000))]);
        assert_eq!(e.rates(&7).unwrap().cps, 15);
        assert_eq!(e.rates(&7).unwrap().in_bps, 32_000);
        // The oldest sample slides out: (40 - 10) over 11 s..13 s.
        e.sample(13_000, [(7, totals(40, 3000, 64_000))]);
        let r = e.rates(&7).unwrap();
        assert_eq!((r.cps, r.in_pps, r.in_bps), (15, 1000, 0));
        // Idle: the rate decays to zero once the window holds no traffic.
        e.sample(14_000, [(7, totals(40, 3000, 64_000))]);
        e.sample(15_000, [(7, totals(40, 3000, 64_000))]);
        assert_eq!(e.rates(&7), Some(model::Rates::default()));
    }

    #[test]
    fn rates_use_the_real_time_between_samples_and_round() {
        let mut e = RateEstimator::<u32>::new(5);
        e.sample(0, [(1, totals(0, 0, 0))]);
        // A late tick (the control thread was busy): 3 conns over 1.5 s is 2/s.
        e.sample(1_500, [(1, totals(3, 1, 0))]);
        let r = e.rates(&1).unwrap();
        assert_eq!(r.cps, 2);
        assert_eq!(r.in_pps, 1, "0.67/s rounds to 1");
        // A reading at the same instant is ignored rather than dividing by zero.
        e.sample(1_500, [(1, totals(100, 100, 100))]);
        assert_eq!(e.rates(&1).unwrap().cps, 2);
    }

    #[test]
    fn forgotten_keys_start_afresh_and_counters_never_go_backwards() {
        let mut e = RateEstimator::<u32>::new(5);
        e.sample(0, [(1, totals(100, 0, 0)), (2, totals(5, 0, 0))]);
        e.sample(1_000, [(1, totals(200, 0, 0))]);
        assert_eq!(e.len(), 1, "key 2 was not sampled: forgotten");
        assert_eq!(e.rates(&2), None);
        e.sample(2_000, [(1, totals(300, 0, 0)), (2, totals(7, 0, 0))]);
        assert_eq!(e.rates(&2), None, "a returning key has no history");
        assert_eq!(e.rates(&1).unwrap().cps, 100);
        // A counter lower than before (cannot happen with monotonic counters) gives 0, not a
        // wrapped-around number.
        let mut e = RateEstimator::<u32>::new(2);
        e.sample(0, [(1, totals(50, 0, 0))]);
        e.sample(1_000, [(1, totals(10, 0, 0))]);
        assert_eq!(e.rates(&1).unwrap().cps, 0);
        assert!(!e.is_empty());
    }

    #[test]
    fn rates_of_huge_counters_do_not_overflow() {
        let mut e = RateEstimator::<u32>::new(2);
        e.sample(0, [(1, totals(0, 0, 0))]);
        e.sample(1, [(1, totals(u64::MAX, 0, 0))]);
        assert_eq!(e.rates(&1).unwrap().cps, u64::MAX);
        let sum = add_rates(&e.rates(&1).unwrap(), &e.rates(&1).unwrap());
        assert_eq!(sum.cps, u64::MAX);
    }

    #[test]
    fn counters_sum_over_workers_and_are_named() {
        let s = Stats::new(3, vec!["ext".into(), "int".into()], 4);
        s.worker(0).drop(DropReason::NoService);
        s.worker(1).drop(DropReason::NoService);
        s.worker(2).drop(DropReason::TableFull);
        s.worker(0).rx(1);
        s.worker(2).rx(0);
        s.worker(1).tx(1, 5);
        s.worker(2).event(Event::Dnat);
        s.worker(1).slot(3).unwrap().in_pkts.add(2);
        s.worker(2).slot(3).unwrap().in_pkts.add(3);
        s.worker(2).slot(3).unwrap().conns.add(1);
        s.worker(1).poll(true);
        s.worker(1).poll(false);
        s.worker(1).poll(false);
        assert!(s.worker(0).slot(4).is_none());
        assert_eq!(s.drops(DropReason::NoService), 2);
        assert_eq!(s.slot_total(3).in_pkts, 5);
        assert_eq!(s.slot_total(3).conns, 1);
        assert_eq!(s.slot_total(9), model::Stats::default());
        let c: std::collections::HashMap<String, u64> = s.counters().into_iter().collect();
        assert_eq!(c["rx_packets"], 2);
        assert_eq!(c["tx_packets"], 5);
        assert_eq!(c["port.int.rx_packets"], 1);
        assert_eq!(c["port.int.tx_packets"], 5);
        assert_eq!(c["drop.no_service"], 2);
        assert_eq!(c["drop.table_full"], 1);
        assert_eq!(c["dnat"], 1);
        assert_eq!(c["worker.0.rx_packets"], 1);
        assert_eq!(c["worker.2.rx_packets"], 1);
        assert_eq!(c["worker.1.tx_packets"], 5);
        assert_eq!(c["worker.1.busy_polls"], 1);
        assert_eq!(c["worker.1.idle_polls"], 2);
        assert_eq!(c["worker.0.idle_polls"], 0);
        assert_eq!(
            (c["worker.2.dnat"], c["worker.1.dnat"], c["worker.2.snat"]),
            (1, 0, 0)
        );
        assert_eq!(c.len(), 2 + 4 + Event::COUNT + DropReason::COUNT + 3 * 6);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.extend(Event::ALL.iter().map(|e| e.name()));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn worker_index_wraps() {
        let s = Stats::new(2, vec![], 0);
        s.worker(5).drop(DropReason::Vlan);
        assert_eq!(s.drops(DropReason::Vlan), 1);
        let zero = Stats::new(0, vec![], 0);
        assert_eq!(zero.workers(), 1);
    }
}
