//! A fixed table shared by the golden and round-trip tests: three services given out of order
//! (and one with its real servers out of order), so that sorting shows.

// Each test crate uses a different part of these helpers.
#![allow(dead_code)]

use control::model::{
    DestSpec, DestStatus, Forward, Protocol, Rates, SchedulerKind, ServiceKey, ServiceSpec,
    ServiceStatus, Stats,
};

pub fn stats(n: [u64; 5], rates: Option<[u64; 5]>) -> Stats {
    Stats {
        conns: n[0],
        in_pkts: n[1],
        out_pkts: n[2],
        in_bytes: n[3],
        out_bytes: n[4],
        rates: rates.map(|r| Rates {
            cps: r[0],
            in_pps: r[1],
            out_pps: r[2],
            in_bps: r[3],
            out_bps: r[4],
        }),
    }
}

pub fn key(protocol: Protocol, port: u16) -> ServiceKey {
    ServiceKey {
        protocol,
        addr: "198.51.100.1".parse().unwrap(),
        port,
    }
}

/// A real server: address, port, weight, active, inactive, -x, -y, counters, rates.
#[allow(clippy::too_many_arguments)]
pub fn dest(
    addr: &str,
    port: u16,
    weight: u32,
    active: u64,
    inactive: u64,
    thresholds: (u32, u32),
    counters: [u64; 5],
    rates: Option<[u64; 5]>,
) -> DestStatus {
    DestStatus {
        spec: DestSpec {
            addr: addr.parse().unwrap(),
            port,
            weight,
            forward: Forward::Masq,
            upper_threshold: thresholds.0,
            lower_threshold: thresholds.1,
        },
        active_conns: active,
        inactive_conns: inactive,
        stats: stats(counters, rates),
    }
}

pub fn state() -> Vec<ServiceStatus> {
    let https_rates = Some([12, 340, 330, 123_456_789, 1_000_000_000]);
    vec![
        ServiceStatus {
            spec: ServiceSpec {
                key: key(Protocol::Udp, 53),
                scheduler: SchedulerKind::Wlc,
                persistence: Some(300),
                netmask: "255.255.255.0".parse().unwrap(),
                sched_flags: Default::default(),
                ops: false,
            },
            dests: vec![dest(
                "192.0.2.2",
                53,
                1,
                0,
                1,
                (100, 50),
                [5, 6, 7, 8, 9],
                None,
            )],
            stats: stats([5, 6, 7, 8, 9], None),
        },
        ServiceStatus {
            spec: ServiceSpec {
                key: key(Protocol::Tcp, 443),
                scheduler: SchedulerKind::Sh,
                persistence: Some(360),
                netmask: control::model::default_netmask(),
                sched_flags: Default::default(),
                ops: false,
            },
            dests: vec![dest(
                "192.0.2.4",
                8443,
                0,
                0,
                0,
                (0, 0),
                [0; 5],
                https_rates,
            )],
            stats: stats([0, 0, 0, 100_000_000_000_000, u64::MAX], https_rates),
        },
        ServiceStatus {
            spec: ServiceSpec {
                key: key(Protocol::Tcp, 80),
                scheduler: SchedulerKind::Rr,
                persistence: None,
                netmask: control::model::default_netmask(),
                sched_flags: Default::default(),
                ops: false,
            },
            dests: vec![
                dest(
                    "192.0.2.3",
                    80,
                    1,
                    2,
                    7,
                    (0, 0),
                    [634, 26_789, 25_678, 100_000_000_000, 99_999_999_999_999],
                    None,
                ),
                dest(
                    "192.0.2.2",
                    80,
                    2,
                    3,
                    12,
                    (0, 0),
                    [600, 30_000, 20_000, 1_000_000_000, 99_999_999_999],
                    None,
                ),
            ],
            stats: stats([1234, 56_789, 45_678, 99_999_999, 100_000_000], None),
        },
    ]
}
