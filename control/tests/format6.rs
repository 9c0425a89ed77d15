//! IPv6 in rvsadm's output: golden text from ipvsadm 1.31's printf formats replayed for a mixed
//! table (addrport_to_anyname brackets IPv6 addresses; names longer than a column are printed
//! whole; libipvs sorts IPv4 services before IPv6 ones, then by protocol, address, port), and
//! `-S` output that `-R` replays into the same requests.

mod common;

use common::{dest, stats};
use control::cli::{parse_restore, Table};
use control::format::{self, ListFormat, View};
use control::model::{
    ConnStatus, DestStatus, Netmask, Protocol, SchedulerKind, ServiceKey, ServiceSpec,
    ServiceStatus,
};
use control::proto::Request;

fn lines(golden: &[&str]) -> String {
    golden.iter().map(|l| format!("{l}\n")).collect()
}

fn view(view: View, exact: bool) -> ListFormat {
    ListFormat {
        view,
        exact,
        sort: true,
    }
}

#[allow(clippy::too_many_arguments)] // one row of the table
fn service(
    protocol: Protocol,
    addr: &str,
    port: u16,
    scheduler: SchedulerKind,
    persistence: Option<u32>,
    netmask: Netmask,
    dests: Vec<DestStatus>,
    counters: [u64; 5],
    rates: Option<[u64; 5]>,
) -> ServiceStatus {
    ServiceStatus {
        spec: ServiceSpec {
            key: ServiceKey {
                protocol,
                addr: addr.parse().unwrap(),
                port,
            },
            scheduler,
            persistence,
            netmask,
            sched_flags: Default::default(),
            ops: false,
        },
        dests,
        stats: stats(counters, rates),
    }
}

/// Given out of order: IPv6 before IPv4, UDP before TCP, real servers reversed.
fn state6() -> Vec<ServiceStatus> {
    let big = [10, 20, 30, 123_456_789, 1_000_000_000];
    let v4 = Netmask::V4("255.255.255.255".parse().unwrap());
    vec![
        service(
            Protocol::Udp,
            "2001:db8:100::1",
            53,
            SchedulerKind::Rr,
            None,
            Netmask::V6(128),
            vec![dest(
                "2001:db8:2:0:1234:5678:9abc:def0",
                5353,
                1,
                0,
                3,
                (0, 0),
                [7, 8, 9, 10, 11],
                None,
            )],
            [7, 8, 9, 10, 11],
            None,
        ),
        service(
            Protocol::Tcp,
            "2001:db8:100::1",
            80,
            SchedulerKind::Wlc,
            Some(360),
            Netmask::V6(64),
            vec![
                dest("2001:db8:2::10", 8080, 2, 0, 0, (0, 0), [0; 5], None),
                dest("2001:db8:2::2", 80, 1, 4, 5, (10, 5), big, Some(big)),
            ],
            big,
            Some(big),
        ),
        service(
            Protocol::Udp,
            "198.51.100.1",
            53,
            SchedulerKind::Rr,
            None,
            v4,
            vec![dest("192.0.2.2", 53, 1, 0, 1, (0, 0), [1; 5], None)],
            [1; 5],
            None,
        ),
        service(
            Protocol::Tcp,
            "198.51.100.1",
            80,
            SchedulerKind::Rr,
            None,
            v4,
            vec![dest(
                "192.0.2.2",
                80,
                1,
                0,
                0,
                (0, 0),
                [1, 2, 3, 4, 5],
                None,
            )],
            [1, 2, 3, 4, 5],
            None,
        ),
    ]
}

const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)";

#[test]
fn list_numeric_ipv6() {
    assert_eq!(
        format::list(4096, &state6(), &view(View::Default, false)),
        lines(&[
            HEADER,
            "Prot LocalAddress:Port Scheduler Flags",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
            "TCP  198.51.100.1:80 rr",
            "  -> 192.0.2.2:80                 Masq    1      0          0         ",
            "UDP  198.51.100.1:53 rr",
            "  -> 192.0.2.2:53                 Masq    1      0          1         ",
            "TCP  [2001:db8:100::1]:80 wlc persistent 360 mask 64",
            "  -> [2001:db8:2::2]:80           Masq    1      4          5         ",
            "  -> [2001:db8:2::10]:8080        Masq    2      0          0         ",
            "UDP  [2001:db8:100::1]:53 rr",
            "  -> [2001:db8:2:0:1234:5678:9abc:def0]:5353 Masq    1      0          3         ",
        ])
    );
}

#[test]
fn list_stats_ipv6() {
    assert_eq!(
        format::list(4096, &state6(), &view(View::Stats, false)),
        lines(&[
            HEADER,
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  198.51.100.1:80                     1        2        3        4        5",
            "  -> 192.0.2.2:80                        1        2        3        4        5",
            "UDP  198.51.100.1:53                     1        1        1        1        1",
            "  -> 192.0.2.2:53                        1        1        1        1        1",
            "TCP  [2001:db8:100::1]:80               10       20       30  123456K    1000M",
            "  -> [2001:db8:2::2]:80                 10       20       30  123456K    1000M",
            "  -> [2001:db8:2::10]:8080               0        0        0        0        0",
            "UDP  [2001:db8:100::1]:53                7        8        9       10       11",
            "  -> [2001:db8:2:0:1234:5678:9abc:def0]:5353        7        8        9       10       11",
        ])
    );
}

#[test]
fn list_stats_exact_ipv6() {
    assert_eq!(
        format::list(4096, &state6(), &view(View::Stats, true)),
        lines(&[
            HEADER,
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
            "  -> RemoteAddress:Port",
            "TCP  198.51.100.1:80                     1        2        3        4        5",
            "  -> 192.0.2.2:80                        1        2        3        4        5",
            "UDP  198.51.100.1:53                     1        1        1        1        1",
            "  -> 192.0.2.2:53                        1        1        1        1        1",
            "TCP  [2001:db8:100::1]:80               10       20       30 123456789 1000000000",
            "  -> [2001:db8:2::2]:80                 10       20       30 123456789 1000000000",
            "  -> [2001:db8:2::10]:8080               0        0        0        0        0",
            "UDP  [2001:db8:100::1]:53                7        8        9       10       11",
            "  -> [2001:db8:2:0:1234:5678:9abc:def0]:5353        7        8        9       10       11",
        ])
    );
}

#[test]
fn list_rate_and_thresholds_ipv6() {
    let rate = format::list(4096, &state6(), &view(View::Rate, false));
    assert!(rate.contains(
        "\nTCP  [2001:db8:100::1]:80               10       20       30  123456K    1000M\n\
         \x20 -> [2001:db8:2::2]:80                 10       20       30  123456K    1000M\n"
    ));
    let t = format::list(4096, &state6(), &view(View::Thresholds, false));
    assert!(t.contains(
        "\nTCP  [2001:db8:100::1]:80 wlc persistent 360 mask 64\n\
         \x20 -> [2001:db8:2::2]:80           10         5          4          5         \n"
    ));
}

#[test]
fn connections_ipv6() {
    let conn =
        |protocol, expires_in, state: &str, c: (&str, u16), v: (&str, u16), d: (&str, u16)| {
            ConnStatus {
                protocol,
                expires_in,
                state: state.to_string(),
                client: (c.0.parse().unwrap(), c.1),
                virt: (v.0.parse().unwrap(), v.1),
                dest: (d.0.parse().unwrap(), d.1),
            }
        };
    let conns = [
        conn(
            Protocol::Tcp,
            899,
            "ESTABLISHED",
            ("2001:db8:100::10", 40000),
            ("2001:db8:100::1", 80),
            ("2001:db8:2::2", 80),
        ),
        conn(
            Protocol::Udp,
            250,
            "UDP",
            ("2001:db8:100::a", 5),
            ("::1", 53),
            ("2001:db8:2::2", 53),
        ),
    ];
    assert_eq!(
        format::conns(&conns),
        lines(&[
            "IPVS connection entries",
            "pro expire state       source             virtual            destination",
            "TCP 14:59  ESTABLISHED [2001:db8:100::10]:40000 [2001:db8:100::1]:80 [2001:db8:2::2]:80",
            "UDP 04:10  UDP         [2001:db8:100::a]:5 [::1]:53           [2001:db8:2::2]:53",
        ])
    );
}

const SAVED: &[&str] = &[
    "-A -t 198.51.100.1:80 -s rr",
    "-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1",
    "-A -u 198.51.100.1:53 -s rr",
    "-a -u 198.51.100.1:53 -r 192.0.2.2:53 -m -w 1",
    "-A -t [2001:db8:100::1]:80 -s wlc -p 360 -M 64",
    "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m -w 1 -x 10 -y 5",
    "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::10]:8080 -m -w 2",
    "-A -u [2001:db8:100::1]:53 -s rr",
    "-a -u [2001:db8:100::1]:53 -r [2001:db8:2:0:1234:5678:9abc:def0]:5353 -m -w 1",
];

#[test]
fn save_ipv6_and_restore_round_trip() {
    let services = state6();
    let saved = format::save(&services);
    assert_eq!(saved, lines(SAVED));
    let mut table = Table::default();
    let replayed: Vec<Request> = parse_restore(&saved)
        .unwrap()
        .iter()
        .map(|(_, change)| table.resolve(change).unwrap())
        .collect();
    let mut ordered: Vec<&ServiceStatus> = services.iter().collect();
    ordered.sort_by_key(|s| s.spec.key.list_order());
    let mut expected = Vec::new();
    for s in ordered {
        expected.push(Request::AddService(s.spec.clone()));
        let mut dests: Vec<_> = s.dests.iter().map(|d| d.spec.clone()).collect();
        dests.sort_by_key(|d| (d.addr, d.port));
        for dest in dests {
            expected.push(Request::AddDest {
                service: s.spec.key,
                dest,
            });
        }
    }
    assert_eq!(replayed, expected);
    // And the table the replay built saves to the same text.
    let rebuilt: Vec<ServiceStatus> = table
        .services()
        .map(|(spec, dests)| ServiceStatus {
            spec: spec.clone(),
            dests: dests
                .iter()
                .map(|d| DestStatus {
                    spec: d.clone(),
                    active_conns: 0,
                    inactive_conns: 0,
                    stats: Default::default(),
                })
                .collect(),
            stats: Default::default(),
        })
        .collect();
    assert_eq!(format::save(&rebuilt), saved);
}
