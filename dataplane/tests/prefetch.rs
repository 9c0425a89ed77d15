//! The burst prefetch (`Pipeline::prefetch_burst` / `use_prefetched`, what the burst driver
//! does before each burst) is only a hint, and the established fast path it opens (IPv4 and
//! IPv6) changes no outcome: a burst handled with it gives the same actions, frames and
//! counters as the same burst handled frame by frame through the stages, for IPv4 and IPv6
//! frames mixed in one burst, with connections opened in the middle of the burst (whose
//! buckets the prefetch saw empty) and their next packets later in the same burst. After
//! every burst the connections (state and expiry), each real server's traffic and the sync
//! master's queue are compared.
//! - Frames the fast path must hand to the stages: TTL 1, a bad header checksum, a first
//!   fragment, options, another MAC, over the MTU, a next hop whose MAC is unknown, a removed
//!   real server with expire_nodest_conn, a SYN on a closed connection's ports, a client that
//!   became a VIP, an expired connection.
//! - Frames it takes as the stages do: TCP state changes (FIN, RST), a zero UDP checksum, a
//!   group source MAC, link padding.
//! - IPv6 frames, spoiled the same ways, go through the IPv6 fast path's own checks (hop limit
//!   1, a zero UDP checksum, the MACs, the MTU, padding, a client that became a VIP); those
//!   with an extension header get no prefetch hint and go to the stages.

use control::proto::{Request, Response};
use dataplane::pipeline::{Action, Dataplane, Pipeline, PREFETCH_BURST};
use dataplane::service::ServiceManager;
use proptest::prelude::*;
use std::sync::Arc;
use testkit::director::{EXT_MAC, INT_MAC};
use testkit::ipv6::*;
use testkit::plan::{CIP, CLIENT_MAC, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP};
use testkit::{inet_checksum, tcp_frame, udp_frame, ACK, FIN, RST, SYN};

const EXT: u16 = 0;
const INT: u16 = 1;

const SERVICES: &str = "-A -t 198.51.100.1:80 -s rr\n\
     -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m\n\
     -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m\n\
     -A -u 198.51.100.1:53 -s rr\n\
     -a -u 198.51.100.1:53 -r 192.0.2.2:53 -m\n\
     -A -t [2001:db8:100::1]:80 -s rr\n\
     -a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
     -a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:80 -m\n\
     -A -u [2001:db8:100::1]:53 -s rr\n\
     -a -u [2001:db8:100::1]:53 -r [2001:db8:2::2]:53 -m";

/// One director: its dataplane, a worker and the manager that keeps its services.
struct Director {
    dp: Arc<Dataplane>,
    w: Pipeline,
    mgr: ServiceManager,
    rs2_removed: bool,
    client_is_vip: bool,
    /// The clock, in ms.
    now: u64,
}

impl Director {
    fn new() -> Director {
        let (dp, mgr) = two_arm6(1500, SERVICES);
        dp.neigh().learn(EXT, CIP, CLIENT_MAC);
        dp.neigh().learn(INT, RIP1, RS1_MAC);
        dp.neigh().learn(INT, RIP2, RS2_MAC);
        dp.neigh6().learn(INT, RIP6_2, RS2_MAC);
        // A sync master: `follow`'s state changes are queued and compared too.
        dp.sync().set_master(true);
        let w = Pipeline::new(dp.clone(), 0);
        Director {
            dp,
            w,
            mgr,
            rs2_removed: false,
            client_is_vip: false,
            now: 1_000,
        }
    }

    /// The connections as `ipvsadm -Lnc` lists them (state and expiry included), sorted.
    fn conns(&mut self) -> Vec<String> {
        let Response::Conns(conns) = self.mgr.handle(Request::ListConns) else {
            panic!("no connection list");
        };
        let mut conns: Vec<String> = conns.iter().map(|c| format!("{c:?}")).collect();
        conns.sort();
        conns
    }

    /// What the burst left beside the frames: each real-server slot's traffic (packets,
    /// bytes, connections) and the connection events queued for the sync master.
    fn traffic_and_sync(&self) -> (Vec<String>, Vec<String>) {
        let slots = (0..16)
            .map(|s| format!("{:?}", self.dp.stats().slot_total(s)))
            .collect();
        let mut sync = Vec::new();
        self.dp
            .sync()
            .drain(usize::MAX, |e| sync.push(format!("{e:?}")));
        (slots, sync)
    }

    /// Between bursts: what an operator or the network changes.
    fn change(&mut self, c: Change) {
        match c {
            Change::RemoveRs2 if !self.rs2_removed => {
                self.rs2_removed = true;
                for request in [
                    Request::SetSysctls(vec![("expire_nodest_conn".into(), 1)]),
                    Request::DelDest {
                        service: testkit::services::tcp(VIP, 80),
                        addr: RIP2.into(),
                        port: 80,
                    },
                    Request::DelDest {
                        service: testkit::services::tcp(VIP6, 80),
                        addr: RIP6_2.into(),
                        port: 80,
                    },
                ] {
                    testkit::services::ok(&mut self.mgr, request);
                }
            }
            Change::ClientIsVip if !self.client_is_vip => {
                self.client_is_vip = true;
                testkit::services::rvsadm(
                    &mut self.mgr,
                    "-A -u 198.51.100.10:7 -s rr\n-A -u [2001:db8:100::10]:7 -s rr",
                );
            }
            Change::None | Change::RemoveRs2 | Change::ClientIsVip => {}
            Change::Advance => self.now += 20_000,
            Change::AdvanceFar => self.now += 1_000_000,
            Change::ForgetRs1 => {
                self.dp.neigh().remove(INT, RIP1);
                self.dp.neigh6().remove(INT, RIP6_1);
            }
            Change::LearnRs1 => {
                self.dp.neigh().learn(INT, RIP1, RS1_MAC);
                self.dp.neigh6().learn(INT, RIP6_1, RS1_MAC);
            }
        }
    }

    /// Handles `burst` (frames with their ingress ports) 10 ms on, with the prefetch or
    /// without; the actions and the frames as they were left.
    fn burst(&mut self, burst: &[(u16, Vec<u8>)], prefetch: bool) -> Vec<(Action, Vec<u8>)> {
        self.now += 10;
        self.w.begin_burst(self.now);
        let mut frames: Vec<(u16, Vec<u8>)> = burst.to_vec();
        if prefetch {
            self.w
                .prefetch_burst(frames.iter().map(|(_, f)| f.as_slice()));
        }
        frames
            .iter_mut()
            .enumerate()
            .map(|(i, (port, f))| {
                if prefetch {
                    self.w.use_prefetched(i);
                }
                let len = f.len();
                let a = self.w.process_buf(*port, f, len);
                (a, f.clone())
            })
            .collect()
    }
}

/// A frame of the mix: a client's TCP segment or UDP datagram to a VIP, or a real server's
/// answer to one of the client ports, over IPv4 or IPv6; maybe changed in a way the fast path
/// must leave to the stages.
#[derive(Debug, Clone, Copy)]
struct Pick {
    v6: bool,
    kind: u8,
    flags: u8,
    cport: u16,
    rs2: bool,
    spoil: Spoil,
}

/// How a frame (of either family) is changed.
#[derive(Debug, Clone, Copy)]
enum Spoil {
    None,
    /// TTL or hop limit 1.
    Ttl1,
    /// IPv4: a bad header checksum.
    BadChecksum,
    /// A zero UDP checksum (IPv4: none; IPv6: refused).
    UdpChecksumZero,
    /// IPv4: more fragments; IPv6: an atomic fragment header.
    FirstFragment,
    /// IPv4: options; IPv6: a hop-by-hop header.
    Options,
    OtherMac,
    GroupSourceMac,
    OverMtu,
    /// 6 bytes of link padding after the packet.
    Padding,
}

/// What changes between two bursts.
#[derive(Debug, Clone, Copy)]
enum Change {
    None,
    /// expire_nodest_conn on, and 192.0.2.3 and 2001:db8:2::3 out of the TCP services.
    RemoveRs2,
    /// 192.0.2.2's and 2001:db8:2::2's MAC forgotten (their frames are held) ...
    ForgetRs1,
    /// ... and learnt again.
    LearnRs1,
    /// The clock jumps 20 s (closed and half-open TCP connections expire) ...
    Advance,
    /// ... or 1,000 s (all of them).
    AdvanceFar,
    /// The client's addresses become VIPs (its packets martians).
    ClientIsVip,
}

fn frame(p: Pick) -> (u16, Vec<u8>) {
    let cport = 40_000 + p.cport;
    let (rs_mac, rip4, rip6) = if p.rs2 {
        (RS2_MAC, RIP2, RIP6_2)
    } else {
        (RS1_MAC, RIP1, RIP6_1)
    };
    let flags = [SYN, ACK, FIN | ACK, RST | ACK][usize::from(p.flags % 4)];
    let data: &[u8] = if matches!(p.spoil, Spoil::OverMtu) {
        &[b'x'; 1500]
    } else {
        b"x"
    };
    let (port, mut f) = match (p.v6, p.kind) {
        (false, 0) => (
            EXT,
            tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 80), SYN, b""),
        ),
        (false, 1) => (
            EXT,
            tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 80), flags, data),
        ),
        (false, 2) => (
            EXT,
            udp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 53), data, true),
        ),
        (false, 3) => (
            INT,
            tcp_frame(INT_MAC, rs_mac, (rip4, 80), (CIP, cport), flags, data),
        ),
        (false, _) => (
            INT,
            udp_frame(INT_MAC, rs_mac, (rip4, 53), (CIP, cport), data, true),
        ),
        (true, 0) => (
            EXT,
            tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 80), SYN, b""),
        ),
        (true, 1) => (
            EXT,
            tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 80), flags, data),
        ),
        (true, 2) => (
            EXT,
            udp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 53), data),
        ),
        (true, 3) => (
            INT,
            tcp_frame6(INT_MAC, rs_mac, (rip6, 80), (CIP6, cport), flags, data),
        ),
        (true, _) => (
            INT,
            udp_frame6(INT_MAC, rs_mac, (rip6, 53), (CIP6, cport), data),
        ),
    };
    if p.v6 {
        spoil_ipv6(&mut f, p.spoil);
    } else {
        spoil_ipv4(&mut f, p.spoil);
    }
    if matches!(p.spoil, Spoil::Padding) {
        f.extend([0; 6]);
    }
    (port, f)
}

/// Where the IP header starts.
const IP: usize = 14;

/// `f` (Ethernet + IPv4 without options) changed as `spoil` says, its header checksum right
/// unless `spoil` is a bad checksum.
fn spoil_ipv4(f: &mut Vec<u8>, spoil: Spoil) {
    match spoil {
        Spoil::None | Spoil::OverMtu | Spoil::Padding => return,
        Spoil::OtherMac => {
            f[5] ^= 0x40;
            return;
        }
        Spoil::GroupSourceMac => {
            f[6] |= 0x01;
            return;
        }
        Spoil::BadChecksum => {
            f[IP + 10] ^= 0x01;
            return;
        }
        Spoil::UdpChecksumZero => {
            if f[IP + 9] == 17 {
                f[IP + 26..IP + 28].fill(0);
            }
            return;
        }
        Spoil::Ttl1 => f[IP + 8] = 1,
        Spoil::FirstFragment => f[IP + 6] |= 0x20,
        Spoil::Options => {
            // A 4-byte no-op/end-of-options word: IHL 6, total length + 4.
            f.splice(IP + 20..IP + 20, [1, 1, 1, 0]);
            f[IP] = 0x46;
            let total = u16::from_be_bytes([f[IP + 2], f[IP + 3]]) + 4;
            f[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
        }
    }
    f[IP + 10..IP + 12].fill(0);
    let c = inet_checksum(&f[IP..IP + usize::from(f[IP] & 0x0f) * 4]);
    f[IP + 10..IP + 12].copy_from_slice(&c.to_be_bytes());
}

/// `f` (Ethernet + IPv6 without extension headers) changed as `spoil` says (IPv6 has no
/// header checksum: `BadChecksum` changes nothing).
fn spoil_ipv6(f: &mut Vec<u8>, spoil: Spoil) {
    match spoil {
        Spoil::None | Spoil::OverMtu | Spoil::Padding | Spoil::BadChecksum => {}
        Spoil::OtherMac => f[5] ^= 0x40,
        Spoil::GroupSourceMac => f[6] |= 0x01,
        Spoil::UdpChecksumZero => {
            if f[IP + 6] == 17 {
                f[IP + 46..IP + 48].fill(0);
            }
        }
        Spoil::Ttl1 => f[IP + 7] = 1,
        // Offset 0, no more fragments, id 1.
        Spoil::FirstFragment => insert_ext6(f, 44, [0, 0, 0, 0, 0, 0, 1]),
        // PadN over the header's other 6 bytes.
        Spoil::Options => insert_ext6(f, 0, [0, 1, 4, 0, 0, 0, 0]),
    }
}

/// An 8-byte extension header of type `kind` (the next header, then `rest`) in front of the
/// upper-layer header of `f`; the upper-layer checksum is unchanged by it.
fn insert_ext6(f: &mut Vec<u8>, kind: u8, rest: [u8; 7]) {
    let mut ext = vec![f[IP + 6]];
    ext.extend(rest);
    f[IP + 6] = kind;
    f.splice(IP + 40..IP + 40, ext);
    let payload = u16::from_be_bytes([f[IP + 4], f[IP + 5]]) + 8;
    f[IP + 4..IP + 6].copy_from_slice(&payload.to_be_bytes());
}

fn pick() -> impl Strategy<Value = Pick> {
    let spoil = prop_oneof![
        8 => Just(Spoil::None),
        1 => Just(Spoil::Ttl1),
        1 => Just(Spoil::BadChecksum),
        1 => Just(Spoil::UdpChecksumZero),
        1 => Just(Spoil::GroupSourceMac),
        1 => Just(Spoil::FirstFragment),
        1 => Just(Spoil::Options),
        1 => Just(Spoil::OtherMac),
        1 => Just(Spoil::OverMtu),
        1 => Just(Spoil::Padding),
    ];
    // Few client ports, so that flows repeat inside a burst and across bursts.
    (any::<bool>(), 0u8..5, 0u8..4, 0u16..6, any::<bool>(), spoil).prop_map(
        |(v6, kind, flags, cport, rs2, spoil)| Pick {
            v6,
            kind,
            flags,
            cport,
            rs2,
            spoil,
        },
    )
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => Just(Change::None),
        1 => Just(Change::RemoveRs2),
        1 => Just(Change::ForgetRs1),
        1 => Just(Change::LearnRs1),
        1 => Just(Change::Advance),
        1 => Just(Change::AdvanceFar),
        1 => Just(Change::ClientIsVip),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_burst_prefetch_changes_no_outcome(
        bursts in prop::collection::vec(
            (change(), prop::collection::vec(pick(), 1..=PREFETCH_BURST + 4)),
            1..8,
        )
    ) {
        let (mut with, mut without) = (Director::new(), Director::new());
        for (n, (change, burst)) in bursts.iter().enumerate() {
            with.change(*change);
            without.change(*change);
            let frames: Vec<(u16, Vec<u8>)> = burst.iter().map(|&p| frame(p)).collect();
            let a = with.burst(&frames, true);
            let b = without.burst(&frames, false);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                prop_assert_eq!(x, y, "burst {} frame {} ({:?})", n, i, burst[i]);
            }
            prop_assert_eq!(with.conns(), without.conns(), "after burst {}", n);
            prop_assert_eq!(
                with.traffic_and_sync(),
                without.traffic_and_sync(),
                "after burst {}",
                n
            );
        }
        prop_assert_eq!(with.dp.stats().counters(), without.dp.stats().counters());
    }
}
