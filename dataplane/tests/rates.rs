//! `--rate`: the service manager samples the per-worker counters on its tick (an injected clock
//! here) and reports per-second rates over a sliding window; nothing is reported before it is
//! measured.

use control::format::{self, ListFormat, View};
use control::model::Rates;
use control::proto::Request;
use dataplane::pipeline::{Action, Dataplane, Pipeline};
use dataplane::service::ServiceManager;
use dataplane::stats::{RATE_SAMPLES, RATE_TICK_MS};
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::director;
use testkit::plan::{CIP, ONE_ARM_MAC as MAC, VIP};
use testkit::services::{ok, rvsadm, services, tcp};
use testkit::*;

const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];
const RIP1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const RIP2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);

/// One-arm director with `workers` workers and every peer's MAC known.
fn setup(workers: usize) -> (Arc<Dataplane>, ServiceManager) {
    director::one_arm(1024, workers, &[CIP, RIP1, RIP2], PEER)
}

/// (service rates, rates of each real server in order) of the service on `port`.
fn rates(mgr: &mut ServiceManager, port: u16) -> (Option<Rates>, Vec<Option<Rates>>) {
    let all = services(mgr);
    let s = all
        .iter()
        .find(|s| s.spec.key == tcp(VIP, port))
        .expect("service listed");
    (
        s.stats.rates,
        s.dests.iter().map(|d| d.stats.rates).collect(),
    )
}

/// The counter slot of real server `addr` in the service on `port`.
fn slot(dp: &Dataplane, port: u16, addr: Ipv4Addr) -> u32 {
    dp.snapshot()
        .service(6, VIP, port)
        .expect("service published")
        .dests
        .iter()
        .find(|d| d.spec.addr == addr)
        .expect("real server published")
        .slot
}

/// What a worker's packet path would count for `slot`: `conns` connections, `pkts` packets of
/// `size` bytes in each direction.
fn traffic(dp: &Dataplane, worker: usize, slot: u32, conns: u64, pkts: u64, size: u64) {
    let s = dp.stats().worker(worker).slot(slot).expect("slot exists");
    s.conns.add(conns);
    s.in_pkts.add(pkts);
    s.out_pkts.add(pkts);
    s.in_bytes.add(pkts * size);
    s.out_bytes.add(pkts * size);
}

fn r(cps: u64, pps: u64, bps: u64) -> Rates {
    Rates {
        cps,
        in_pps: pps,
        out_pps: pps,
        in_bps: bps,
        out_bps: bps,
    }
}

#[test]
fn rates_are_measured_from_every_workers_counters_over_a_sliding_window() {
    assert_eq!(RATE_TICK_MS, 1000);
    assert_eq!(RATE_SAMPLES, 5, "a 4 s window");
    let (dp, mut mgr) = setup(2);
    rvsadm(
        &mut mgr,
        "-A -t 198.51.100.1:80 -s rr\n\
         -a -t 198.51.100.1:80 -r 198.51.100.21:80 -m -w 1\n\
         -a -t 198.51.100.1:80 -r 198.51.100.22:80 -m -w 1",
    );
    let (s1, s2) = (slot(&dp, 80, RIP1), slot(&dp, 80, RIP2));

    // Nothing measured yet: no rate at all rather than a made-up zero.
    assert_eq!(rates(&mut mgr, 80), (None, vec![None, None]));
    mgr.tick(10_000);
    traffic(&dp, 0, s1, 10, 600, 100);
    traffic(&dp, 1, s1, 10, 400, 100);
    assert_eq!(rates(&mut mgr, 80), (None, vec![None, None]));

    // One second later: both workers' counters summed, per second.
    mgr.tick(11_000);
    assert_eq!(
        rates(&mut mgr, 80),
        (
            Some(r(20, 1000, 100_000)),
            vec![Some(r(20, 1000, 100_000)), Some(r(0, 0, 0))]
        )
    );

    // Traffic on RS2 only for three more seconds: RS1's burst is averaged over the window.
    for t in 1..=3 {
        traffic(&dp, t % 2, s2, 4, 200, 50);
        mgr.tick(11_000 + t as u64 * 1000);
    }
    let (svc, dests) = rates(&mut mgr, 80);
    assert_eq!(dests[0], Some(r(5, 250, 25_000)), "20 conns over 4 s");
    assert_eq!(dests[1], Some(r(3, 150, 7_500)), "12 conns over 4 s");
    assert_eq!(svc, Some(r(8, 400, 32_500)), "the sum of its real servers");

    // The burst slides out of the window...
    mgr.tick(15_000);
    assert_eq!(
        rates(&mut mgr, 80).1,
        vec![Some(r(0, 0, 0)), Some(r(3, 150, 7_500))]
    );
    // ... and an idle service decays to zero once the window holds no traffic.
    for t in 16..=19 {
        mgr.tick(t * 1000);
    }
    assert_eq!(
        rates(&mut mgr, 80),
        (Some(r(0, 0, 0)), vec![Some(r(0, 0, 0)), Some(r(0, 0, 0))])
    );
}

#[test]
fn zero_keeps_rates_and_new_or_readded_servers_start_unmeasured() {
    let (dp, mut mgr) = setup(1);
    rvsadm(
        &mut mgr,
        "-A -t 198.51.100.1:80 -s rr\n\
         -A -t 198.51.100.1:443 -s rr\n\
         -a -t 198.51.100.1:80 -r 198.51.100.21:80 -m -w 1",
    );
    let s1 = slot(&dp, 80, RIP1);
    mgr.tick(0);
    traffic(&dp, 0, s1, 2, 100, 1000);
    mgr.tick(1000);
    assert_eq!(
        rates(&mut mgr, 443),
        (Some(Rates::default()), vec![]),
        "a service without real servers carries no traffic"
    );

    // -Z clears counters; rates stay what was measured.
    ok(&mut mgr, Request::Zero { service: None });
    assert_eq!(services(&mut mgr)[0].stats.in_pkts, 0);
    assert_eq!(rates(&mut mgr, 80).1, vec![Some(r(2, 100, 100_000))]);

    // A real server added now has no rate until it has been sampled twice; the service's rate
    // is what is measured.
    rvsadm(
        &mut mgr,
        "-a -t 198.51.100.1:80 -r 198.51.100.22:80 -m -w 1",
    );
    assert_eq!(
        rates(&mut mgr, 80),
        (
            Some(r(2, 100, 100_000)),
            vec![Some(r(2, 100, 100_000)), None]
        )
    );
    mgr.tick(2000);
    assert_eq!(rates(&mut mgr, 80).1[1], None);
    mgr.tick(3000);
    assert_eq!(rates(&mut mgr, 80).1[1], Some(Rates::default()));

    // Deleted and added again: a new real server, with no history of the old one.
    rvsadm(&mut mgr, "-d -t 198.51.100.1:80 -r 198.51.100.21:80");
    mgr.tick(4000);
    rvsadm(
        &mut mgr,
        "-a -t 198.51.100.1:80 -r 198.51.100.21:80 -m -w 1",
    );
    mgr.tick(5000);
    let (_, dests) = rates(&mut mgr, 80);
    // Listed in the order added: RIP2, then the new RIP1.
    assert_eq!(dests, vec![Some(Rates::default()), None], "RIP1 is new");
    // Edits keep the history.
    rvsadm(&mut mgr, "-e -t 198.51.100.1:80 -r 198.51.100.22:80 -w 5");
    assert_eq!(rates(&mut mgr, 80).1[0], Some(Rates::default()));
}

#[test]
fn rates_follow_real_traffic_through_the_packet_path() {
    let (dp, mut mgr) = setup(1);
    rvsadm(
        &mut mgr,
        "-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 198.51.100.21:80 -m -w 1",
    );
    let mut w = Pipeline::new(dp.clone(), 0);
    mgr.tick(0);
    w.begin_burst(1);
    let mut bytes = 0u64;
    for cport in 0..30u16 {
        let mut f = tcp_frame(MAC, PEER, (CIP, 20_000 + cport), (VIP, 80), SYN, b"");
        bytes += u64::from(u16::from_be_bytes([f[16], f[17]])); // IP total length
        assert_eq!(w.process(0, &mut f), Action::Tx(0));
    }
    mgr.tick(2000);
    let (svc, dests) = rates(&mut mgr, 80);
    let want = Rates {
        cps: 15,
        in_pps: 15,
        out_pps: 0,
        in_bps: 0,
        out_bps: 0,
    };
    let got = dests[0].expect("measured");
    assert_eq!((got.cps, got.in_pps, got.out_pps), (15, 15, 0));
    assert_eq!(got.in_bps, bytes / 2, "IP bytes per second");
    assert_eq!(svc.map(|s| s.cps), Some(want.cps));
}

#[test]
fn rate_listing_prints_the_measured_rates() {
    let (dp, mut mgr) = setup(1);
    rvsadm(
        &mut mgr,
        "-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 198.51.100.21:80 -m -w 1",
    );
    let s1 = slot(&dp, 80, RIP1);
    let view = ListFormat {
        view: View::Rate,
        ..Default::default()
    };
    let listed = |mgr: &mut ServiceManager| format::list(1024, &services(mgr), &view);
    let header = "IP Virtual Server version 1.2.1 (size=1024)\n\
                  Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  \
                  -> RemoteAddress:Port\n";
    let dash = format!("{:>9}", "-").repeat(5);
    assert_eq!(
        listed(&mut mgr),
        format!(
            "{header}{:<33}{dash}\n  -> {:<28}{dash}\n",
            "TCP  198.51.100.1:80", "198.51.100.21:80"
        )
    );
    mgr.tick(0);
    traffic(&dp, 0, s1, 3, 1_200, 1_000_000);
    mgr.tick(1000);
    let columns = "        3     1200     1200    1200M    1200M";
    assert_eq!(
        listed(&mut mgr),
        format!(
            "{header}{:<33}{columns}\n  -> {:<28}{columns}\n",
            "TCP  198.51.100.1:80", "198.51.100.21:80"
        )
    );
}
