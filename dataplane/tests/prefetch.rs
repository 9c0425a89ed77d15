//! The burst prefetch (`Pipeline::prefetch_burst` / `use_prefetched`, what the burst driver
//! does before each burst) is only a hint: a burst handled with it gives the same actions,
//! frames and counters as the same burst handled frame by frame without it, for IPv4 and
//! IPv6 frames mixed in one burst, with connections opened in the middle of the burst (whose
//! buckets the prefetch saw empty) and their next packets later in the same burst.

use dataplane::pipeline::{Action, Dataplane, Pipeline, PREFETCH_BURST};
use dataplane::service::ServiceManager;
use proptest::prelude::*;
use std::sync::Arc;
use testkit::director::{EXT_MAC, INT_MAC};
use testkit::ipv6::*;
use testkit::plan::{CIP, CLIENT_MAC, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP};
use testkit::{tcp_frame, udp_frame, ACK, SYN};

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
    _mgr: ServiceManager,
}

impl Director {
    fn new() -> Director {
        let (dp, mgr) = two_arm6(1500, SERVICES);
        dp.neigh().learn(EXT, CIP, CLIENT_MAC);
        dp.neigh().learn(INT, RIP1, RS1_MAC);
        dp.neigh().learn(INT, RIP2, RS2_MAC);
        dp.neigh6().learn(INT, RIP6_2, RS2_MAC);
        let w = Pipeline::new(dp.clone(), 0);
        Director { dp, w, _mgr: mgr }
    }

    /// Handles `burst` (frames with their ingress ports) at `now`, with the prefetch or
    /// without; the actions and the frames as they were left.
    fn burst(
        &mut self,
        now: u64,
        burst: &[(u16, Vec<u8>)],
        prefetch: bool,
    ) -> Vec<(Action, Vec<u8>)> {
        self.w.begin_burst(now);
        let mut frames: Vec<(u16, Vec<u8>)> = burst.to_vec();
        if prefetch {
            let views: Vec<&[u8]> = frames.iter().map(|(_, f)| f.as_slice()).collect();
            self.w.prefetch_burst(&views);
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

/// A frame of the mix: a client's TCP SYN or ACK or UDP datagram to a VIP, or a real server's
/// answer to one of the client ports, over IPv4 or IPv6.
#[derive(Debug, Clone, Copy)]
struct Pick {
    v6: bool,
    kind: u8,
    cport: u16,
    rs2: bool,
}

fn frame(p: Pick) -> (u16, Vec<u8>) {
    let cport = 40_000 + p.cport;
    let (rs_mac, rip4, rip6) = if p.rs2 {
        (RS2_MAC, RIP2, RIP6_2)
    } else {
        (RS1_MAC, RIP1, RIP6_1)
    };
    match (p.v6, p.kind) {
        (false, 0) => (
            EXT,
            tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 80), SYN, b""),
        ),
        (false, 1) => (
            EXT,
            tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 80), ACK, b"x"),
        ),
        (false, 2) => (
            EXT,
            udp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 53), b"q", true),
        ),
        (false, 3) => (
            INT,
            tcp_frame(INT_MAC, rs_mac, (rip4, 80), (CIP, cport), ACK, b"y"),
        ),
        (false, _) => (
            INT,
            udp_frame(INT_MAC, rs_mac, (rip4, 53), (CIP, cport), b"a", true),
        ),
        (true, 0) => (
            EXT,
            tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 80), SYN, b""),
        ),
        (true, 1) => (
            EXT,
            tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 80), ACK, b"x"),
        ),
        (true, 2) => (
            EXT,
            udp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 53), b"q"),
        ),
        (true, 3) => (
            INT,
            tcp_frame6(INT_MAC, rs_mac, (rip6, 80), (CIP6, cport), ACK, b"y"),
        ),
        (true, _) => (
            INT,
            udp_frame6(INT_MAC, rs_mac, (rip6, 53), (CIP6, cport), b"a"),
        ),
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    // Few client ports, so that flows repeat inside a burst and across bursts.
    (any::<bool>(), 0u8..5, 0u16..6, any::<bool>()).prop_map(|(v6, kind, cport, rs2)| Pick {
        v6,
        kind,
        cport,
        rs2,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn the_burst_prefetch_changes_no_outcome(
        bursts in prop::collection::vec(prop::collection::vec(pick(), 1..=PREFETCH_BURST + 4), 1..6)
    ) {
        let (mut with, mut without) = (Director::new(), Director::new());
        for (n, burst) in bursts.iter().enumerate() {
            let frames: Vec<(u16, Vec<u8>)> = burst.iter().map(|&p| frame(p)).collect();
            let now = 1_000 + 10 * n as u64;
            let a = with.burst(now, &frames, true);
            let b = without.burst(now, &frames, false);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                prop_assert_eq!(x, y, "burst {} frame {} ({:?})", n, i, burst[i]);
            }
        }
        prop_assert_eq!(with.dp.stats().counters(), without.dp.stats().counters());
        prop_assert_eq!(with.dp.conns().len(), without.dp.conns().len());
        prop_assert_eq!(with.dp.conns6().len(), without.dp.conns6().len());
    }
}
