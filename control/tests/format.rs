//! Golden tests of rvsadm's output against ipvsadm's printf formats. The expected text was
//! produced by replaying ipvsadm 1.31's format strings (print_title, print_service_entry,
//! print_largenum, print_conn, list_timeout) for the same state, not by rvsadm itself.

mod common;

use common::state;
use control::format::{self, large_num, ListFormat, View};
use control::model::{ConnStatus, Protocol, Timeouts};

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

const LIST: &[&str] = &[
    "IP Virtual Server version 1.2.1 (size=4096)",
    "Prot LocalAddress:Port Scheduler Flags",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    "TCP  198.51.100.1:80 rr",
    "  -> 192.0.2.2:80                 Masq    2      3          12        ",
    "  -> 192.0.2.3:80                 Masq    1      2          7         ",
    "TCP  198.51.100.1:443 sh persistent 360",
    "  -> 192.0.2.4:8443               Masq    0      0          0         ",
    "UDP  198.51.100.1:53 wlc persistent 300 mask 255.255.255.0",
    "  -> 192.0.2.2:53                 Masq    1      0          1         ",
];

const STATS: &[&str] = &[
    "IP Virtual Server version 1.2.1 (size=4096)",
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
    "  -> RemoteAddress:Port",
    "TCP  198.51.100.1:80                  1234    56789    45678 99999999  100000K",
    "  -> 192.0.2.2:80                      600    30000    20000    1000M   99999M",
    "  -> 192.0.2.3:80                      634    26789    25678     100G   99999G",
    "TCP  198.51.100.1:443                    0        0        0     100T18446744T",
    "  -> 192.0.2.4:8443                      0        0        0        0        0",
    "UDP  198.51.100.1:53                     5        6        7        8        9",
    "  -> 192.0.2.2:53                        5        6        7        8        9",
];

const STATS_EXACT: &[&str] = &[
        "IP Virtual Server version 1.2.1 (size=4096)",
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes",
        "  -> RemoteAddress:Port",
        "TCP  198.51.100.1:80                  1234    56789    45678 99999999 100000000",
        "  -> 192.0.2.2:80                      600    30000    20000 1000000000 99999999999",
        "  -> 192.0.2.3:80                      634    26789    25678 100000000000 99999999999999",
        "TCP  198.51.100.1:443                    0        0        0 100000000000000 18446744073709551615",
        "  -> 192.0.2.4:8443                      0        0        0        0        0",
        "UDP  198.51.100.1:53                     5        6        7        8        9",
        "  -> 192.0.2.2:53                        5        6        7        8        9",
];

const RATE: &[&str] = &[
    "IP Virtual Server version 1.2.1 (size=4096)",
    "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
    "  -> RemoteAddress:Port",
    "TCP  198.51.100.1:80                     -        -        -        -        -",
    "  -> 192.0.2.2:80                        -        -        -        -        -",
    "  -> 192.0.2.3:80                        -        -        -        -        -",
    "TCP  198.51.100.1:443                   12      340      330  123456K    1000M",
    "  -> 192.0.2.4:8443                     12      340      330  123456K    1000M",
    "UDP  198.51.100.1:53                     -        -        -        -        -",
    "  -> 192.0.2.2:53                        -        -        -        -        -",
];

const THRESHOLDS: &[&str] = &[
    "IP Virtual Server version 1.2.1 (size=4096)",
    "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
    "  -> RemoteAddress:Port",
    "TCP  198.51.100.1:80 rr",
    "  -> 192.0.2.2:80                 0          0          3          12        ",
    "  -> 192.0.2.3:80                 0          0          2          7         ",
    "TCP  198.51.100.1:443 sh persistent 360",
    "  -> 192.0.2.4:8443               0          0          0          0         ",
    "UDP  198.51.100.1:53 wlc persistent 300 mask 255.255.255.0",
    "  -> 192.0.2.2:53                 100        50         0          1         ",
];

const LIST_ONE: &[&str] = &[
    "Prot LocalAddress:Port Scheduler Flags",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
    "UDP  198.51.100.1:53 wlc persistent 300 mask 255.255.255.0",
    "  -> 192.0.2.2:53                 Masq    1      0          1         ",
];

const CONNS: &[&str] = &[
    "IPVS connection entries",
    "pro expire state       source             virtual            destination",
    "TCP 14:59  ESTABLISHED 198.51.100.10:40000 198.51.100.1:80    192.0.2.2:80",
    "UDP 04:10  UDP         198.51.100.11:5353 198.51.100.1:53    192.0.2.2:53",
    "TCP 62:03  SYN_RECV    198.51.100.12:1    198.51.100.1:443   192.0.2.4:8443",
];

#[test]
fn list_numeric() {
    let out = format::list(4096, &state(), &ListFormat::default());
    assert_eq!(out, lines(LIST));
}

#[test]
fn list_stats() {
    let out = format::list(4096, &state(), &view(View::Stats, false));
    assert_eq!(out, lines(STATS));
}

#[test]
fn list_stats_exact() {
    let out = format::list(4096, &state(), &view(View::Stats, true));
    assert_eq!(out, lines(STATS_EXACT));
}

#[test]
fn list_rate_prints_dashes_where_the_daemon_reports_no_rates() {
    let out = format::list(4096, &state(), &view(View::Rate, false));
    assert_eq!(out, lines(RATE));
}

#[test]
fn list_thresholds() {
    let out = format::list(4096, &state(), &view(View::Thresholds, false));
    assert_eq!(out, lines(THRESHOLDS));
}

#[test]
fn list_one_service_has_no_version_header() {
    let services = state();
    let udp = services
        .iter()
        .find(|s| s.spec.key.protocol == Protocol::Udp)
        .unwrap();
    assert_eq!(
        format::list_service(udp, &ListFormat::default()),
        lines(LIST_ONE)
    );
}

#[test]
fn nosort_keeps_the_daemon_order() {
    let format = ListFormat {
        sort: false,
        ..ListFormat::default()
    };
    let out = format::list(4096, &state(), &format);
    let names: Vec<&str> = out
        .lines()
        .skip(3)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "198.51.100.1:53",
            "192.0.2.2:53",
            "198.51.100.1:443",
            "192.0.2.4:8443",
            "198.51.100.1:80",
            "192.0.2.3:80",
            "192.0.2.2:80",
        ]
    );
}

#[test]
fn empty_table_prints_the_headers_only() {
    assert_eq!(
        format::list(1 << 20, &[], &ListFormat::default()),
        lines(&LIST[..3]).replace("4096", "1048576")
    );
}

#[test]
fn large_numbers_scale_at_ipvsadm_boundaries() {
    let cases: &[(u64, &str)] = &[
        (0, "        0"),
        (99_999_999, " 99999999"),
        (100_000_000, "  100000K"),
        (999_999_999, "  999999K"),
        (1_000_000_000, "    1000M"),
        (99_999_999_999, "   99999M"),
        (100_000_000_000, "     100G"),
        (99_999_999_999_999, "   99999G"),
        (100_000_000_000_000, "     100T"),
        (u64::MAX, "18446744T"),
    ];
    for (n, text) in cases {
        assert_eq!(large_num(*n, false), *text, "{n}");
        assert_eq!(text.len(), 9, "every scaled number fills one 9-wide column");
    }
}

#[test]
fn exact_numbers_are_at_least_nine_wide_with_a_separating_space() {
    assert_eq!(large_num(0, true), "        0");
    assert_eq!(large_num(12_345_678, true), " 12345678");
    assert_eq!(large_num(123_456_789, true), " 123456789");
    assert_eq!(large_num(u64::MAX, true), " 18446744073709551615");
}

#[test]
fn connections() {
    let conn = |protocol,
                expires_in,
                state: &str,
                client: (&str, u16),
                virt: (&str, u16),
                dest: (&str, u16)| {
        ConnStatus {
            protocol,
            expires_in,
            state: state.to_string(),
            client: (client.0.parse().unwrap(), client.1),
            virt: (virt.0.parse().unwrap(), virt.1),
            dest: (dest.0.parse().unwrap(), dest.1),
        }
    };
    let conns = [
        conn(
            Protocol::Tcp,
            899,
            "ESTABLISHED",
            ("198.51.100.10", 40000),
            ("198.51.100.1", 80),
            ("192.0.2.2", 80),
        ),
        conn(
            Protocol::Udp,
            250,
            "UDP",
            ("198.51.100.11", 5353),
            ("198.51.100.1", 53),
            ("192.0.2.2", 53),
        ),
        conn(
            Protocol::Tcp,
            3723,
            "SYN_RECV",
            ("198.51.100.12", 1),
            ("198.51.100.1", 443),
            ("192.0.2.4", 8443),
        ),
    ];
    assert_eq!(format::conns(&conns), lines(CONNS));
}

#[test]
fn timeouts() {
    assert_eq!(
        format::timeouts(&Timeouts::default()),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
}

/// ipvsadm's print_sched_flags: ` (flags)` after the scheduler in -L, ` -b flags` at the end
/// of the -A line in -S, sh-fallback before sh-port.
#[test]
fn scheduler_flags_in_list_and_save() {
    let mut services = state();
    let https = services
        .iter_mut()
        .find(|s| s.spec.key.port == 443)
        .unwrap();
    https.spec.sched_flags.sh_port = true;
    https.spec.sched_flags.sh_fallback = true;
    let list = format::list(4096, &services, &view(View::Default, false));
    assert!(
        list.lines()
            .any(|l| l == "TCP  198.51.100.1:443 sh (sh-fallback,sh-port) persistent 360"),
        "{list}"
    );
    let thresholds = format::list(4096, &services, &view(View::Thresholds, false));
    assert!(
        thresholds
            .lines()
            .any(|l| l == "TCP  198.51.100.1:443 sh (sh-fallback,sh-port) persistent 360"),
        "{thresholds}"
    );
    let stats = format::list(4096, &services, &view(View::Stats, false));
    assert!(!stats.contains("sh-port"), "{stats}");
    let save = format::save(&services);
    assert!(
        save.lines()
            .any(|l| l == "-A -t 198.51.100.1:443 -s sh -p 360 -b sh-fallback,sh-port"),
        "{save}"
    );
}

/// ipvsadm 1.31's print_service_entry: ` ops` last on the -L line (after the scheduler flags
/// and persistence), ` -o` before ` -b` on the -S line.
#[test]
fn one_packet_scheduling_in_list_and_save() {
    let mut services = state();
    let dns = services.iter_mut().find(|s| s.spec.key.port == 53).unwrap();
    dns.spec.ops = true;
    let list = format::list(4096, &services, &view(View::Default, false));
    assert!(
        list.lines()
            .any(|l| l == "UDP  198.51.100.1:53 wlc persistent 300 mask 255.255.255.0 ops"),
        "{list}"
    );
    let stats = format::list(4096, &services, &view(View::Stats, false));
    assert!(!stats.contains("ops"), "{stats}");
    let save = format::save(&services);
    assert!(
        save.lines()
            .any(|l| l == "-A -u 198.51.100.1:53 -s wlc -p 300 -M 255.255.255.0 -o"),
        "{save}"
    );
    // Without persistence and with scheduler flags: flags in brackets, then ops.
    let dns = services.iter_mut().find(|s| s.spec.key.port == 53).unwrap();
    dns.spec.persistence = None;
    dns.spec.scheduler = control::model::SchedulerKind::Sh;
    dns.spec.sched_flags.sh_port = true;
    let list = format::list(4096, &services, &view(View::Default, false));
    assert!(
        list.lines()
            .any(|l| l == "UDP  198.51.100.1:53 sh (sh-port) ops"),
        "{list}"
    );
    let save = format::save(&services);
    assert!(
        save.lines()
            .any(|l| l == "-A -u 198.51.100.1:53 -s sh -M 255.255.255.0 -o -b sh-port"),
        "{save}"
    );
}

#[test]
fn save_prints_replayable_sorted_commands() {
    assert_eq!(
        format::save(&state()),
        lines(&[
            "-A -t 198.51.100.1:80 -s rr",
            "-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 2",
            "-a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1",
            "-A -t 198.51.100.1:443 -s sh -p 360",
            "-a -t 198.51.100.1:443 -r 192.0.2.4:8443 -m -w 0",
            "-A -u 198.51.100.1:53 -s wlc -p 300 -M 255.255.255.0",
            "-a -u 198.51.100.1:53 -r 192.0.2.2:53 -m -w 1 -x 100 -y 50",
        ])
    );
}
