//! Property tests: every incremental rewrite equals a full recompute (computed independently in
//! `common`), and no byte sequence makes the pipeline panic.

use control::model::Timeouts;
use dataplane::packet::ipv4::Ipv4Hdr;
use dataplane::packet::l4::{rewrite_endpoint, Side};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use dataplane::stats::DropReason;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use testkit::director::{self, EXT_MAC};
use testkit::plan::{CIP, CLIENT_MAC, RIP1, RS1_MAC};
use testkit::services::rvsadm;
use testkit::*;

fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn nat_rewrite_equals_full_recompute(
        tcp in any::<bool>(),
        src in ip(), dst in ip(), new in ip(),
        sport in any::<u16>(), dport in any::<u16>(), new_port in any::<u16>(),
        ttl in 1..=255u8,
        dnat in any::<bool>(),
        dec_ttl in any::<bool>(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let proto = if tcp { TCP } else { UDP };
        let seg = if tcp { tcp_seg(src, sport, dst, dport, ACK, &payload) } else { udp_seg(src, sport, dst, dport, &payload, true) };
        let mut p = ipv4(src, dst, proto, ttl, &seg);
        let h = Ipv4Hdr::parse(&p).unwrap();
        let side = if dnat { Side::Dst } else { Side::Src };
        rewrite_endpoint(&mut p, &h, side, new, new_port, dec_ttl).unwrap();
        // `check` recomputes IP and L4 checksums from scratch and compares.
        let s = check(&eth([0; 6], [0; 6], 0x0800, &p));
        let want_ttl = if dec_ttl { ttl - 1 } else { ttl };
        if dnat {
            prop_assert_eq!((s.src, s.sport, s.dst, s.dport, s.ttl), (src, sport, new, new_port, want_ttl));
        } else {
            prop_assert_eq!((s.src, s.sport, s.dst, s.dport, s.ttl), (new, new_port, dst, dport, want_ttl));
        }
        // And the new value is exactly what a fresh build of the rewritten packet carries.
        let (s2, sp2, d2, dp2) = if dnat { (src, sport, new, new_port) } else { (new, new_port, dst, dport) };
        let fresh = if tcp { tcp_seg(s2, sp2, d2, dp2, ACK, &payload) } else { udp_seg(s2, sp2, d2, dp2, &payload, true) };
        let off = if tcp { 16 } else { 6 };
        prop_assert_eq!(&p[20 + off..22 + off], &fresh[off..off + 2]);
        let fresh_ip = ipv4(s2, d2, proto, want_ttl, &fresh);
        prop_assert_eq!(&p[10..12], &fresh_ip[10..12]);
    }

    #[test]
    fn udp_without_checksum_stays_without(src in ip(), dst in ip(), new in ip(), port in any::<u16>(),
                                          payload in proptest::collection::vec(any::<u8>(), 0..32)) {
        let seg = udp_seg(src, 1, dst, 2, &payload, false);
        let mut p = ipv4(src, dst, UDP, 64, &seg);
        let h = Ipv4Hdr::parse(&p).unwrap();
        rewrite_endpoint(&mut p, &h, Side::Dst, new, port, true).unwrap();
        prop_assert_eq!(&p[26..28], &[0u8, 0][..]);
        prop_assert_eq!(inet_checksum(&p[..20]), 0);
    }
}

/// A two-arm director with rr services TCP VIP:80 and UDP VIP:53 on RIP1, which is a known
/// neighbour.
fn lab() -> (Lab, Pipeline) {
    let dp = Dataplane::new(DataplaneConfig {
        ports: director::two_arm_ports(Some(Ipv4Addr::new(198, 51, 100, 254)), 1500),
        conn_capacity: 256,
        timeouts: Timeouts::default(),
        workers: 1,
    });
    let mut mgr = ServiceManager::new(dp.clone());
    rvsadm(
        &mut mgr,
        "-A -t 198.51.100.1:80 -s rr\n\
         -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
         -A -u 198.51.100.1:53 -s rr\n\
         -a -u 198.51.100.1:53 -r 192.0.2.2:53 -m -w 1",
    );
    dp.neigh().learn(1, RIP1, RS1_MAC);
    let mut w = Pipeline::new(dp.clone(), 0);
    w.begin_burst(1);
    (Lab { dp, _mgr: mgr }, w)
}

struct Lab {
    dp: std::sync::Arc<Dataplane>,
    _mgr: ServiceManager,
}

/// What the mutations start from: a client's frame of each kind, and a TCP SYN from it
/// straight to a real server.
fn seed_frames() -> Vec<Vec<u8>> {
    let to_rip = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1000), (RIP1, 22), SYN, b"");
    director::client_frames()
        .into_iter()
        .chain([to_rip])
        .collect()
}

/// Whole, the seeds take the paths the mutations probe: forwarded to the real server (TCP,
/// UDP, the SYN to RIP1) or answered on ext (ICMP echo, ARP).
#[test]
fn seed_frames_are_forwarded_or_answered() {
    let actions: Vec<Action> = seed_frames()
        .into_iter()
        .map(|mut f| lab().1.process(0, &mut f))
        .collect();
    let (ext, int) = (Action::Tx(0), Action::Tx(1));
    assert_eq!(actions, [int, int, ext, ext, int]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_frames_never_panic_and_drops_are_counted(
        which in 0..5usize,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
        port in 0..3u16,
    ) {
        let (lab, mut w) = lab();
        let mut f = seed_frames().swap_remove(which);
        for (pos, val) in flips {
            let n = f.len();
            f[pos % n] = val;
        }
        if let Some(c) = cut {
            f.truncate(c % (f.len() + 1));
        }
        let len = f.len();
        let drops_before: u64 = DropReason::ALL.iter().map(|r| lab.dp.stats().drops(*r)).sum();
        let a = w.process(port, &mut f);
        prop_assert_eq!(f.len(), len, "length never changes");
        let drops_after: u64 = DropReason::ALL.iter().map(|r| lab.dp.stats().drops(*r)).sum();
        prop_assert_eq!(drops_after - drops_before, u64::from(a == Action::Drop));
        if let Action::Tx(p) | Action::Hold { port: p, .. } = a {
            prop_assert!(p < 2);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), port in 0..2u16) {
        let (_lab, mut w) = lab();
        let mut f = bytes;
        let _ = w.process(port, &mut f);
        let mut buf = f.clone();
        let _ = w.fill_l2(port, Ipv4Addr::new(192, 0, 2, 2), &mut buf);
        let _ = w.neighbour_request(port, Ipv4Addr::new(192, 0, 2, 9), &mut buf);
    }
}
