//! Connection sync between two real rvsd processes, each in a network namespace of its own
//! (`rvs-synca-<pid>`, `rvs-syncb-<pid>`), their internal ports joined by one veth pair
//! (`int`, 192.0.2.252 and .253, each end a net_pcap port of its rvsd), each port with a
//! kernel twin that carries the sync socket.
//!
//! Director A (sync master) gets a client's UDP datagram to the VIP on a net_pcap port and
//! makes the connection, and one to the IPv6 VIP (its real server a static IPv6 neighbour);
//! its sync thread sends them (unicast to B, through A's twin, A's worker, the veth pair, B's
//! worker and B's twin; the IPv6 one in the kernel's `ip_vs_sync_v6` entry); B (backup)
//! installs them without scheduling and lists them. Messages of another sync group, or for a service B does not have, are counted
//! and not installed. Roles change at run time with `SetSyncRole`.

use control::client::{Client, ClientError};
use control::proto::{Request, Response};
use control::sync::{SyncConfig, SyncRole, SyncStatus};
use dataplane::conntrack::ConnState;
use dataplane::sync::{Encoder, SyncConn};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::daemon::{net_pcap, rvsadm_beside, Rvsd, RvsdConfig, VdevPort};
use testkit::netns::{is_root, Netns};
use testkit::plan::{CIP, CLIENT_MAC, RIP1, RS1_MAC, VIP};
use testkit::{ipv6, pcap, udp_frame, UDP};

const A_INT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 252);
const B_INT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 253);
const A_EXT_MAC: [u8; 6] = [2, 0, 0, 0, 0xa, 1];
const A_INT_MAC: [u8; 6] = [2, 0, 0, 0, 0xa, 2];
const B_INT_MAC: [u8; 6] = [2, 0, 0, 0, 0xb, 2];
const SYNCID: u8 = 5;
const SERVICES: &str = "-A -u 198.51.100.1:53 -s rr\n-a -u 198.51.100.1:53 -r 192.0.2.2:53 -m\n\
                        -A -u [2001:db8:100::1]:53 -s rr\n\
                        -a -u [2001:db8:100::1]:53 -r [2001:db8:2::2]:53 -m\n";

/// `[sync]` on port `int`: unicast to `peer`, or the kernel's multicast group without one.
fn sync_config(peer: Option<Ipv4Addr>, role: SyncRole) -> SyncConfig {
    SyncConfig {
        port: "int".into(),
        syncid: SYNCID,
        group: None,
        peer,
        udp_port: control::sync::DEFAULT_UDP_PORT,
        ttl: 1,
        maxlen: control::sync::DEFAULT_MAXLEN,
        role,
    }
}

/// The veth end `ifname` in `ns` as a DPDK port (net_pcap on the interface), offloads off so
/// that every frame leaves with its checksums whole.
fn veth_port(ns: &Netns, index: u32, ifname: &str) -> String {
    ns.ip_ok(&["-n", ns.name(), "link", "set", ifname, "up"]);
    let st = ns
        .command("ethtool")
        .args([
            "-K", ifname, "tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("ethtool");
    assert!(st.success(), "ethtool -K {ifname}");
    format!("net_pcap{index},iface={ifname}")
}

/// The answer to `request`; an error answer as `Response::Error`.
fn call(socket: &Path, request: Request) -> Response {
    match Client::new(socket).call(request) {
        Ok(r) => r,
        Err(ClientError::Daemon(e)) => Response::Error(e),
        Err(e) => panic!("{}: {e}", socket.display()),
    }
}

fn counter(socket: &Path, name: &str) -> u64 {
    match call(socket, Request::Counters) {
        Response::Counters(c) => c
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no counter {name}")),
        other => panic!("Counters answered {other:?}"),
    }
}

fn status(socket: &Path) -> SyncStatus {
    match call(socket, Request::SyncStatus) {
        Response::Sync(s) => s,
        other => panic!("SyncStatus answered {other:?}"),
    }
}

/// The counters of the rvsd on `socket` that are not 0, one per line (for failure messages).
fn nonzero(socket: &Path) -> String {
    match call(socket, Request::Counters) {
        Response::Counters(c) => c
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(n, v)| format!("{n} {v}\n"))
            .collect(),
        other => format!("{other:?}"),
    }
}

/// rvsadm `args` on the rvsd on `socket`: (success, stdout, stderr).
fn rvsadm(socket: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(rvsadm_beside(Path::new(env!("CARGO_BIN_EXE_rvsd"))))
        .env("RVS_SOCKET", socket)
        .args(args)
        .output()
        .expect("rvsadm");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rvsadm -L -c -n` of the rvsd on `socket`.
fn conns(socket: &Path) -> String {
    rvsadm(socket, &["-L", "-c", "-n"]).1
}

/// Waits up to `within` for `done`; false if it never held.
fn wait_for(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// One sync message of group `syncid` holding `c`.
fn message(syncid: u8, c: &SyncConn) -> Vec<u8> {
    let mut enc = Encoder::new(syncid, 1472);
    assert!(enc.push(c).is_none());
    enc.finish().expect("one entry")
}

/// Two directors in namespaces of their own: A (master) with a client's UDP datagram to the
/// VIP on `ext` (net_pcap) and the real server a static neighbour behind `int`; B (backup) with
/// the same service; their `int` ports joined by a veth pair, `[sync]` on `int` over unicast,
/// or over the kernel's multicast group when `multicast`.
struct Pair {
    sa: std::path::PathBuf,
    sb: std::path::PathBuf,
    rvsd_a: Rvsd,
    rvsd_b: Rvsd,
    ns_a: Netns,
    // Dropped last, after the daemons (fields drop in order).
    _ns_b: Netns,
    _tmp: tempfile::TempDir,
}

fn start_pair(multicast: bool) -> Pair {
    assert!(
        is_root(),
        "needs root (namespaces for the two directors and their twins): run as root, or skip \
         it explicitly with RVS_SKIP_LAB=1"
    );
    let pid = std::process::id();
    let tag = if multicast { "m" } else { "u" };
    let (ns_a, ns_b) = (
        Netns::new(format!("rvs-synca{tag}-{pid}")),
        Netns::new(format!("rvs-syncb{tag}-{pid}")),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let bin = Path::new(env!("CARGO_BIN_EXE_rvsd"));
    // The link between the directors' internal ports.
    ns_a.ip_ok(&[
        "-n",
        ns_a.name(),
        "link",
        "add",
        "rvs-sa-int",
        "type",
        "veth",
        "peer",
        "name",
        "rvs-sb-int",
        "netns",
        ns_b.name(),
    ]);

    // B: the backup, its one port on the link, lcore 1.
    let b = RvsdConfig::new(dir.join("b.sock"))
        .lcores(&[1])
        .port(
            VdevPort::new(
                "int",
                veth_port(&ns_b, 0, "rvs-sb-int"),
                "both",
                &["192.0.2.253/24"],
            )
            .mac(B_INT_MAC)
            .twin("rvs-sb-tw"),
        )
        .services(SERVICES)
        .sync(sync_config((!multicast).then_some(A_INT), SyncRole::Backup));
    // A: the master; a client's datagram to the VIP arrives on `ext` (net_pcap), the real
    // server is a static neighbour behind `int`, lcore 0.
    let (rx, tx) = (dir.join("a-in.pcap"), dir.join("a-out.pcap"));
    pcap::write(
        &rx,
        &[
            udp_frame(A_EXT_MAC, CLIENT_MAC, (CIP, 5000), (VIP, 53), b"q", true),
            ipv6::udp_frame6(
                A_EXT_MAC,
                CLIENT_MAC,
                (ipv6::CIP6, 5000),
                (ipv6::VIP6, 53),
                b"q",
            ),
        ],
    );
    let a = RvsdConfig::new(dir.join("a.sock"))
        .lcores(&[0])
        .port(
            VdevPort::new(
                "ext",
                net_pcap(0, &[&rx], &[&tx]),
                "external",
                &["198.51.100.2/24"],
            )
            .ipv6(&["2001:db8:100::2/64"])
            .mac(A_EXT_MAC),
        )
        .port(
            VdevPort::new(
                "int",
                veth_port(&ns_a, 1, "rvs-sa-int"),
                "internal",
                &["192.0.2.252/24"],
            )
            .ipv6(&["2001:db8:2::fc/64"])
            .mac(A_INT_MAC)
            .twin("rvs-sa-tw"),
        )
        .neighbour("int", RIP1, RS1_MAC)
        .neighbour("int", ipv6::RIP6_1, RS1_MAC)
        .services(SERVICES)
        // The datagram may come before B is up: the refresh sends it again.
        .sysctl("sync_refresh_period", 1)
        .sync(sync_config((!multicast).then_some(B_INT), SyncRole::Master));

    let rvsd_a: Rvsd = ns_a.rvsd(bin, &a, dir);
    rvsd_a.wait_ready(Duration::from_secs(30));
    let rvsd_b: Rvsd = ns_b.rvsd(bin, &b, dir);
    rvsd_b.wait_ready(Duration::from_secs(30));
    Pair {
        sa: a.socket().to_path_buf(),
        sb: b.socket().to_path_buf(),
        rvsd_a,
        rvsd_b,
        ns_a,
        _ns_b: ns_b,
        _tmp: tmp,
    }
}

#[test]
#[cfg_attr(
    rvs_skip_lab,
    ignore = "needs root and network namespaces (RVS_SKIP_LAB=1)"
)]
fn a_connection_made_on_the_master_is_installed_on_the_backup() {
    let Pair {
        sa,
        sb,
        mut rvsd_a,
        mut rvsd_b,
        ns_a,
        // Bound, not `..`: the temporary's other fields would be dropped at once.
        _ns_b,
        _tmp,
    } = start_pair(false);

    let logs = |a: &Rvsd, b: &Rvsd| {
        format!(
            "A:\n{}{}\nB:\n{}{}",
            nonzero(a.socket()),
            a.log_tail(30),
            nonzero(b.socket()),
            b.log_tail(30)
        )
    };

    let (st_a, st_b) = (status(&sa), status(&sb));
    assert_eq!(
        (st_a.master, st_a.backup, st_a.syncid),
        (true, false, SYNCID)
    );
    assert_eq!(
        (st_b.master, st_b.backup, st_b.interface.as_str()),
        (false, true, "rvs-sb-tw")
    );
    assert_eq!(st_b.transport, "unicast 192.0.2.252:8848");
    assert_eq!(
        st_a.ipvsadm_lines(),
        format!("master sync daemon (mcast=rvs-sa-tw, syncid={SYNCID})\n")
    );

    // The connection reaches B, with no packet of it ever seen there.
    let want = "198.51.100.10:5000  198.51.100.1:53    192.0.2.2:53";
    let seen = wait_for(Duration::from_secs(30), || {
        conns(&sb).contains("198.51.100.10:5000")
    });
    let listed = conns(&sb);
    assert!(
        seen,
        "B never listed the connection:\n{listed}\n{}",
        logs(&rvsd_a, &rvsd_b)
    );
    assert!(listed.contains("UDP"), "{listed}");
    let line = listed
        .lines()
        .find(|l| l.contains("198.51.100.10:5000"))
        .expect("the line");
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &words[words.len() - 3..],
        &want.split_whitespace().collect::<Vec<_>>()[..],
        "{line}"
    );
    // The IPv6 one too, in B's IPv6 table.
    let seen6 = wait_for(Duration::from_secs(10), || {
        conns(&sb).contains("2001:db8:100::10")
    });
    let listed = conns(&sb);
    assert!(
        seen6,
        "B never listed the IPv6 connection:\n{listed}\n{}",
        logs(&rvsd_a, &rvsd_b)
    );
    let line = listed
        .lines()
        .find(|l| l.contains("2001:db8:100::10"))
        .expect("the line");
    assert!(
        line.starts_with("UDP")
            && line.contains("[2001:db8:100::1]:53")
            && line.contains("[2001:db8:2::2]:53"),
        "{line}"
    );
    assert!(counter(&sa, "sync.msgs_sent") >= 1);
    assert!(counter(&sb, "sync.conns_installed") >= 2);
    assert_eq!(
        counter(&sb, "dnat"),
        0,
        "B never saw a packet of the connection"
    );

    // Foreign and unknown: a message of group 9, and one for a service B does not have,
    // sent from A's namespace to B's sync port.
    let good = SyncConn {
        proto: UDP,
        state: ConnState::Udp,
        template: false,
        client: (Ipv4Addr::new(198, 51, 100, 11), 6000),
        virt: (VIP, 53),
        real: (RIP1, 53),
        timeout_s: 300,
        fwmark: 0,
    };
    let stranger = SyncConn {
        virt: (Ipv4Addr::new(198, 51, 100, 99), 53),
        ..good
    };
    ns_a.run(|| {
        let s = UdpSocket::bind((A_INT, 0)).expect("bind in A's namespace");
        s.send_to(&message(9, &good), (B_INT, 8848)).expect("send");
        s.send_to(&message(SYNCID, &stranger), (B_INT, 8848))
            .expect("send");
    });
    let counted = wait_for(Duration::from_secs(10), || {
        counter(&sb, "sync.refused.foreign_syncid") >= 1
            && counter(&sb, "sync.refused.no_service") >= 1
    });
    assert!(counted, "B counted neither\n{}", logs(&rvsd_a, &rvsd_b));
    let listed = conns(&sb);
    assert!(
        !listed.contains("198.51.100.11") && !listed.contains("198.51.100.99"),
        "{listed}"
    );

    // Roles at run time, in ipvsadm's words: B stops its backup daemon, and a good message is
    // no longer taken. Another interface or syncid is refused and changes nothing.
    for bad in [
        &["--stop-daemon", "backup", "--syncid", "5"][..],
        &["--start-daemon", "master", "--mcast-interface", "eth0"],
        &["--start-daemon", "master", "--syncid", "6"],
    ] {
        let (ok, _, err) = rvsadm(&sb, bad);
        assert!(!ok && !err.is_empty(), "{bad:?} was taken");
    }
    assert_eq!(
        rvsadm(&sb, &["-L", "--daemon"]).1,
        format!("backup sync daemon (mcast=rvs-sb-tw, syncid={SYNCID})\n")
    );
    let (ok, _, err) = rvsadm(&sb, &["--stop-daemon", "backup"]);
    assert!(ok, "{err}");
    assert_eq!(rvsadm(&sb, &["-L", "--daemon"]).1, "");
    let before = counter(&sb, "sync.msgs_received");
    ns_a.run(|| {
        let s = UdpSocket::bind((A_INT, 0)).expect("bind");
        s.send_to(&message(SYNCID, &good), (B_INT, 8848))
            .expect("send");
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(&sb, "sync.msgs_received"), before);
    assert!(!conns(&sb).contains("198.51.100.11"));
    let (ok, _, err) = rvsadm(
        &sb,
        &[
            "--start-daemon",
            "backup",
            "--mcast-interface",
            "rvs-sb-tw",
            "--syncid",
            "5",
        ],
    );
    assert!(ok, "{err}");
    assert!(status(&sb).backup);
    ns_a.run(|| {
        let s = UdpSocket::bind((A_INT, 0)).expect("bind");
        s.send_to(&message(SYNCID, &good), (B_INT, 8848))
            .expect("send");
    });
    assert!(
        wait_for(Duration::from_secs(10), || conns(&sb)
            .contains("198.51.100.11:6000")),
        "{}",
        logs(&rvsd_a, &rvsd_b)
    );

    let (st_a, st_b) = (rvsd_a.stop(), rvsd_b.stop());
    assert!(
        st_a.success() && st_b.success(),
        "A {st_a}, B {st_b}\n{}",
        logs(&rvsd_a, &rvsd_b)
    );
}

#[test]
fn without_a_sync_table_the_requests_say_what_to_add() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = RvsdConfig::new(tmp.path().join("rvs.sock"))
        .port(VdevPort::one_arm(testkit::daemon::net_null(0)));
    let mut rvsd = Rvsd::start(Path::new(env!("CARGO_BIN_EXE_rvsd")), &cfg, tmp.path());
    rvsd.wait_ready(Duration::from_secs(30));
    for r in [
        Request::SyncStatus,
        Request::SetSyncRole {
            master: true,
            backup: false,
        },
    ] {
        match call(cfg.socket(), r) {
            Response::Error(e) => assert!(e.contains("[sync]"), "{e}"),
            other => panic!("answered {other:?}"),
        }
    }
    assert!(rvsd.stop().success());
}

/// The same over multicast (the kernel's group 224.0.0.81): the master's sync socket sends to
/// the group through its twin, rvsd carries it out with the group's MAC, and the backup's
/// worker hands it up to its twin, where the socket joined the group.
#[test]
#[cfg_attr(
    rvs_skip_lab,
    ignore = "needs root and network namespaces (RVS_SKIP_LAB=1)"
)]
fn a_connection_is_synced_over_multicast() {
    let p = start_pair(true);
    assert_eq!(status(&p.sb).transport, "mcast 224.0.0.81:8848");
    let seen = wait_for(Duration::from_secs(30), || {
        conns(&p.sb).contains("198.51.100.10:5000")
    });
    assert!(
        seen,
        "B never listed the connection:\n{}\nA:\n{}{}\nB:\n{}{}",
        conns(&p.sb),
        nonzero(&p.sa),
        p.rvsd_a.log_tail(20),
        nonzero(&p.sb),
        p.rvsd_b.log_tail(20)
    );
    assert!(counter(&p.sa, "multicast_from_kernel") >= 1);
    assert!(counter(&p.sb, "multicast_to_kernel") >= 1);
    assert!(counter(&p.sb, "sync.conns_installed") >= 1);
}
