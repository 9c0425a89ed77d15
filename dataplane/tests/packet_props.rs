//! Property tests: every incremental rewrite equals a full recompute (computed independently in
//! `common`), and no byte sequence makes the pipeline panic.

use control::model::{
    default_netmask, DestSpec, Forward, Protocol, SchedulerKind, ServiceKey, ServiceSpec, Timeouts,
};
use control::proto::{Request, Response};
use dataplane::packet::ipv4::Ipv4Hdr;
use dataplane::packet::l4::{rewrite_endpoint, Side};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use dataplane::stats::DropReason;
use proptest::prelude::*;
use std::net::Ipv4Addr;
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

fn lab() -> (Lab, Pipeline) {
    let dp = Dataplane::new(DataplaneConfig {
        ports: director::two_arm_ports(Some(Ipv4Addr::new(198, 51, 100, 254)), 1500),
        conn_capacity: 256,
        timeouts: Timeouts::default(),
        workers: 1,
    });
    let mut mgr = ServiceManager::new(dp.clone());
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let key = ServiceKey {
            protocol,
            addr: Ipv4Addr::new(198, 51, 100, 1),
            port: 80,
        };
        let spec = ServiceSpec {
            key,
            scheduler: SchedulerKind::Rr,
            persistence: None,
            netmask: default_netmask(),
            sched_flags: Default::default(),
            ops: false,
        };
        assert_eq!(mgr.handle(Request::AddService(spec)), Response::Ok);
        let dest = DestSpec {
            addr: Ipv4Addr::new(192, 0, 2, 2),
            port: 80,
            weight: 1,
            forward: Forward::Masq,
            upper_threshold: 0,
            lower_threshold: 0,
        };
        assert_eq!(
            mgr.handle(Request::AddDest { service: key, dest }),
            Response::Ok
        );
    }
    dp.neigh()
        .learn(1, Ipv4Addr::new(192, 0, 2, 2), [2, 0, 0, 0, 3, 2]);
    let mut w = Pipeline::new(dp.clone(), 0);
    w.begin_burst(1);
    (Lab { dp, _mgr: mgr }, w)
}

struct Lab {
    dp: std::sync::Arc<Dataplane>,
    _mgr: ServiceManager,
}

fn seed_frames() -> Vec<Vec<u8>> {
    let ext = [2, 0, 0, 0, 1, 1];
    let cli = [2, 0, 0, 0, 0, 0x10];
    let cip = Ipv4Addr::new(198, 51, 100, 10);
    let vip = Ipv4Addr::new(198, 51, 100, 1);
    vec![
        tcp_frame(ext, cli, (cip, 1000), (vip, 80), SYN, b"hello"),
        udp_frame(ext, cli, (cip, 1000), (vip, 80), b"hello", true),
        eth(
            ext,
            cli,
            0x0800,
            &ipv4(cip, vip, ICMP, 64, &icmp_echo(8, 1, 2, b"data")),
        ),
        eth([0xff; 6], cli, 0x0806, &arp(1, cli, cip, [0; 6], vip)),
        tcp_frame(
            ext,
            cli,
            (cip, 1000),
            (Ipv4Addr::new(192, 0, 2, 2), 22),
            SYN,
            b"",
        ),
    ]
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
        let _ = w.arp_request(port, Ipv4Addr::new(192, 0, 2, 9), &mut buf);
    }
}
