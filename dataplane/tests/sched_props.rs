//! Scheduler properties over random real-server sets (proptest), through the public API the
//! pipeline uses (`sched::build` + `Scheduler::pick`):
//!
//! - shares of new connections follow the weights: exactly over whole cycles for rr and wrr;
//!   within 2 connections of the ideal for lc and wlc, and within servers + 1 for sed and nq
//!   (they weigh the connection to be made, `(active + 1) / weight`, which shifts the split by
//!   up to one connection per server), when every connection stays active; within 5 percentage points (sh, 256 buckets) and 2 points (mh, 65537 slots) for
//!   the hashing schedulers over 20000 random clients;
//! - a server with weight 0 or over its `-x` threshold is never picked for a new connection,
//!   and a scheduler that can pick (rr, wrr, lc, wlc, sed, nq, and sh/mh with their fallback
//!   flag) always finds a server while one is available.

use control::model::{SchedFlags, SchedulerKind, Timeouts};
use dataplane::conntrack::ConnTable;
use dataplane::sched::{self, Dests, SchedState, Scheduler};
use dataplane::service::Dest;
use proptest::prelude::*;
use std::sync::Arc;
use testkit::sched::{conn_on, real_servers, service_with, spread_flow as flow};

fn build(kind: SchedulerKind, flags: SchedFlags, list: &[Dest]) -> Box<dyn Scheduler> {
    sched::build(
        &service_with(kind, flags),
        list,
        &Arc::new(SchedState::default()),
    )
    .unwrap()
}

/// One more connection (the `n`-th) for server `to`, active or not.
fn connect(table: &ConnTable, to: &Dest, n: u32, active: bool) {
    table.insert(&conn_on(to, n as usize, active), 0).unwrap();
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// wrr: over whole cycles (sum of weights / gcd picks) every server gets exactly its
    /// weight / gcd; weight-0 servers get nothing.
    #[test]
    fn wrr_shares_are_exactly_proportional(
        weights in prop::collection::vec(0u32..=12, 1..8),
        cycles in 1usize..4,
    ) {
        let g = weights.iter().copied().fold(0, gcd);
        prop_assume!(g > 0);
        let list = real_servers(&weights);
        let table = ConnTable::new(16, 16, &Timeouts::default());
        let s = build(SchedulerKind::Wrr, SchedFlags::default(), &list);
        let d = Dests::new(&list, &table);
        let cycle: u32 = weights.iter().map(|w| w / g).sum();
        let mut count = vec![0u32; weights.len()];
        for k in 0..cycle as usize * cycles {
            count[s.pick(&d, &flow(k as u32)).unwrap()] += 1;
        }
        for (c, w) in count.iter().zip(&weights) {
            prop_assert_eq!(*c, w / g * cycles as u32);
        }
    }

    /// rr: equal shares over whole rounds among the servers with weight above 0.
    #[test]
    fn rr_shares_are_equal(weights in prop::collection::vec(0u32..=3, 1..8)) {
        let live = weights.iter().filter(|w| **w > 0).count();
        prop_assume!(live > 0);
        let list = real_servers(&weights);
        let table = ConnTable::new(16, 16, &Timeouts::default());
        let s = build(SchedulerKind::Rr, SchedFlags::default(), &list);
        let d = Dests::new(&list, &table);
        let mut count = vec![0u32; weights.len()];
        for k in 0..live * 3 {
            count[s.pick(&d, &flow(k as u32)).unwrap()] += 1;
        }
        for (c, w) in count.iter().zip(&weights) {
            prop_assert_eq!(*c, if *w > 0 { 3 } else { 0 });
        }
    }

    /// lc, wlc, sed, nq with every connection staying active: the counts end up near the
    /// ideal split (equal for lc, proportional to weight for the others): within 2
    /// connections for lc, servers + 1 for wlc, sed and nq (each lighter server can be one
    /// pick ahead of its share, and the heaviest then lags by their sum: weights 1,1,1,1,6
    /// after 114 picks give 12,12,12,12,66 against 11.4 and 68.4).
    #[test]
    fn load_based_shares_follow_the_weights(
        weights in prop::collection::vec(1u32..=6, 1..6),
        picks in 20u32..120,
    ) {
        let sum: u32 = weights.iter().sum();
        for kind in [SchedulerKind::Lc, SchedulerKind::Wlc, SchedulerKind::Sed, SchedulerKind::Nq] {
            let list = real_servers(&weights);
            let table = ConnTable::new(1024, 16, &Timeouts::default());
            let s = build(kind, SchedFlags::default(), &list);
            let mut count = vec![0u32; weights.len()];
            for k in 0..picks {
                let i = s.pick(&Dests::new(&list, &table), &flow(k)).unwrap();
                count[i] += 1;
                connect(&table, &list[i], k, true);
            }
            let tolerance = match kind {
                SchedulerKind::Lc => 2.0,
                _ => weights.len() as f64 + 1.0,
            };
            for (c, w) in count.iter().zip(&weights) {
                let ideal = if kind == SchedulerKind::Lc {
                    f64::from(picks) / weights.len() as f64
                } else {
                    f64::from(picks) * f64::from(*w) / f64::from(sum)
                };
                prop_assert!(
                    (f64::from(*c) - ideal).abs() <= tolerance,
                    "{kind}: {count:?} for weights {weights:?}"
                );
            }
        }
    }

    /// sh and mh over 20000 random clients: each server's share is its weight's share of the
    /// total within 5 points (sh) or 2 points (mh).
    #[test]
    fn hashing_shares_follow_the_weights(weights in prop::collection::vec(1u32..=8, 1..6)) {
        let sum: u32 = weights.iter().sum();
        let list = real_servers(&weights);
        let table = ConnTable::new(16, 16, &Timeouts::default());
        let d = Dests::new(&list, &table);
        for (kind, tolerance) in [(SchedulerKind::Sh, 0.05), (SchedulerKind::Mh, 0.02)] {
            let s = build(kind, SchedFlags::default(), &list);
            let n = 20_000u32;
            let mut count = vec![0u32; weights.len()];
            for k in 0..n {
                count[s.pick(&d, &flow(k)).unwrap()] += 1;
            }
            for (c, w) in count.iter().zip(&weights) {
                let share = f64::from(*c) / f64::from(n);
                let want = f64::from(*w) / f64::from(sum);
                prop_assert!(
                    (share - want).abs() <= tolerance,
                    "{kind}: {count:?} for weights {weights:?}"
                );
            }
        }
    }

    /// No scheduler ever picks a weight-0 or overloaded server for a new connection, and the
    /// ones that can pick always do while a server is available.
    #[test]
    fn weight_zero_and_overloaded_are_never_picked(
        servers in prop::collection::vec((0u32..=4, 0u32..=3, 0u32..=4), 1..7),
    ) {
        // (weight, upper threshold -x (0: none), connections already there)
        let mut list = real_servers(&servers.iter().map(|s| s.0).collect::<Vec<_>>());
        let table = ConnTable::new(1024, 16, &Timeouts::default());
        let mut n = 0;
        for (i, &(_, x, conns)) in servers.iter().enumerate() {
            list[i].spec.upper_threshold = x;
            for c in 0..conns {
                connect(&table, &list[i], n, c.is_multiple_of(2));
                n += 1;
            }
        }
        let d = Dests::new(&list, &table);
        let eligible: Vec<bool> = (0..list.len()).map(|i| d.available(i)).collect();
        let any = eligible.iter().any(|e| *e);
        let fallback = SchedFlags {
            sh_fallback: true,
            mh_fallback: true,
            ..Default::default()
        };
        for kind in SchedulerKind::ALL {
            for flags in [SchedFlags::default(), fallback.retain_for(kind)] {
                let s = build(kind, flags, &list);
                let must_find = any
                    && match kind {
                        SchedulerKind::Sh | SchedulerKind::Mh => !flags.is_empty(),
                        SchedulerKind::Dh => false,
                        _ => true,
                    };
                for k in 0..200 {
                    match s.pick(&d, &flow(k)) {
                        Some(i) => prop_assert!(
                            eligible[i],
                            "{kind} {flags:?} picked {i}: {servers:?}"
                        ),
                        None => prop_assert!(!must_find, "{kind} {flags:?} found none: {servers:?}"),
                    }
                }
            }
        }
    }
}
