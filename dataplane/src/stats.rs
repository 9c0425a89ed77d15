//! Per-worker counters: written only by their own worker, summed by readers.
//!
//! A [`Counter`] is an `AtomicU64` that its single writer bumps with a relaxed load + store (no
//! locked read-modify-write, so it costs what a plain `u64` add does); readers on other threads
//! load it relaxed and sum over workers. Each worker's counters sit in their own cache-padded
//! block, so no two cores ever write the same cache line.

#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

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
        /// Truncated or malformed Ethernet, ARP, IPv4, TCP, UDP or ICMP header.
        Malformed = "malformed",
        /// An ethertype other than IPv4 and ARP (IPv6, LLDP, ...).
        NotIpv4 = "not_ipv4",
        /// An 802.1Q/802.1ad tagged frame: VLANs are not configured.
        Vlan = "vlan",
        /// A frame for another MAC, or IPv4 to a broadcast/multicast MAC.
        NotForUs = "not_for_us",
        /// IPv4 header checksum does not verify.
        BadChecksum = "bad_checksum",
        /// An IPv4 fragment (not reassembled yet).
        Fragment = "fragment",
        /// Source or destination that is never routed (broadcast, multicast, 0/8, 127/8).
        Martian = "martian",
        /// TCP/UDP/other to one of our own non-VIP addresses: rvs has no local stack.
        Local = "local",
        /// ICMP to our addresses other than echo request.
        IcmpUnhandled = "icmp_unhandled",
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
        /// TTL would reach 0 on forwarding.
        TtlExpired = "ttl_expired",
        /// No port's subnet holds the destination and no gateway is set.
        NoRoute = "no_route",
        /// Larger than the egress port's MTU.
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
    }
}

named_enum! {
    /// Things that happened to frames that were not dropped.
    Event {
        ArpReplied = "arp_replies",
        EchoReplied = "echo_replies",
        ConnCreated = "conns_created",
        Dnat = "dnat",
        Snat = "snat",
        Forwarded = "forwarded",
        /// Returned `Action::Hold`: next hop MAC unknown.
        Held = "held",
    }
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
}

impl WorkerStats {
    fn new(ports: usize, slots: usize) -> WorkerStats {
        WorkerStats {
            drops: std::array::from_fn(|_| Counter::default()),
            events: std::array::from_fn(|_| Counter::default()),
            ports: (0..ports).map(|_| CachePadded::default()).collect(),
            slots: (0..slots).map(|_| SlotTraffic::default()).collect(),
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
        if let Some(c) = self.events.get(ev as usize) {
            c.add(1);
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
    pub fn worker(&self, index: usize) -> &WorkerStats {
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
    /// `port.<name>.rx_packets`/`tx_packets`, `drop.<reason>` and one per [`Event`].
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
        out
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;

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
        assert_eq!(c.len(), 2 + 4 + Event::COUNT + DropReason::COUNT);
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
