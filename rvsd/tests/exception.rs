//! DPDK integration test of the kernel exception path: rvsd, inside a namespace of its own
//! (`rvs-tap-<pid>`), on a net_pcap port with a kernel twin.
//!
//! The capture holds a UDP datagram from a real server to the DIP's closed port 9 and a TCP SYN
//! to the DIP's port 7 where nothing listens either. Both must go up the twin to the kernel
//! (they are for rvsd's own address and no VIP service), and the kernel's answers (ICMP port
//! unreachable, a TCP RST) must come down the twin and leave the DPDK port with the real
//! server's MAC, learned by the dataplane from the datagram. An echo request to the DIP is
//! answered by the dataplane, not the kernel; the twin carries the port's address and MTU.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::daemon::{net_pcap, Launch, Rvsd, RvsdConfig, VdevPort};
use testkit::netns::{is_root, Netns};
use testkit::plan::{DIP, ONE_ARM_MAC, RIP1, RS1_MAC};
use testkit::{eth, icmp_echo, ipv4, pcap, tcp_frame, udp_frame, ICMP, SYN};

#[test]
#[cfg_attr(
    rvs_skip_lab,
    ignore = "needs root and network namespaces (RVS_SKIP_LAB=1)"
)]
fn own_address_traffic_reaches_the_kernel_and_its_answers_leave_the_port() {
    assert!(
        is_root(),
        "needs root (a network namespace for rvsd and its twin): run as root, or skip it \
         explicitly with RVS_SKIP_LAB=1"
    );
    let ns = Netns::new(format!("rvs-tap-{}", std::process::id()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (rx, tx) = (dir.join("in.pcap"), dir.join("out.pcap"));
    let udp = udp_frame(
        ONE_ARM_MAC,
        RS1_MAC,
        (RIP1, 40000),
        (DIP, 9),
        b"hello",
        true,
    );
    let syn = tcp_frame(ONE_ARM_MAC, RS1_MAC, (RIP1, 40001), (DIP, 7), SYN, b"");
    let ping = eth(
        ONE_ARM_MAC,
        RS1_MAC,
        0x0800,
        &ipv4(RIP1, DIP, ICMP, 64, &icmp_echo(8, 5, 1, b"dataplane")),
    );
    pcap::write(&rx, &[udp, syn, ping]);

    let config = RvsdConfig::new(dir.join("rvs.sock"))
        .port(VdevPort::one_arm(net_pcap(0, &[&rx], &[&tx])).mac(ONE_ARM_MAC));
    // testkit writes the file; the twin is added here, as `kernel_twin` on the port.
    let text = config.to_toml();
    assert_eq!(text.matches("[[ports]]\n").count(), 1, "{text}");
    let text = text.replace(
        "[[ports]]\n",
        "[[ports]]\nkernel_twin = \"rvs-tap-tw0\"\nmtu = 1400\n",
    );
    control::config::Config::parse(&text, "the test's rvs.toml").expect("a valid config");
    let path = dir.join("rvs.toml");
    std::fs::write(&path, text).expect("write rvs.toml");

    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns.name(),
        env!("CARGO_BIN_EXE_rvsd"),
        "--config",
    ])
    .arg(&path);
    let mut rvsd = Rvsd::spawn(
        cmd,
        Launch {
            socket: config.socket().to_path_buf(),
            log: dir.join("rvsd.log"),
            file_prefix: Some(config.file_prefix().to_string()),
        },
    );
    // The socket is bound before EAL starts: ready means the counters answer.
    rvsd.wait_ready(Duration::from_secs(30));

    // The echo reply, the ICMP port unreachable and the RST: wait for all three.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counters = || {
        let out = Command::new(testkit::daemon::control_bin_beside(
            Path::new(env!("CARGO_BIN_EXE_rvsd")),
            "rvsctl",
        ))
        .args([
            "--socket",
            config.socket().to_str().expect("utf-8"),
            "counters",
        ])
        .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let mut last = String::new();
    while Instant::now() < deadline {
        last = counters();
        if last
            .lines()
            .any(|l| l.starts_with("tx_packets") && l.ends_with(" 3"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let link = ns.ip(&["-o", "link", "show", "rvs-tap-tw0"]);
    let addrs = ns.ip(&["-o", "-4", "addr", "show", "rvs-tap-tw0"]);
    let status = rvsd.stop();
    let log = rvsd.log_text();
    assert!(status.success(), "rvsd: {status}\n{log}");
    assert!(
        link.contains("mtu 1400") && link.contains(",UP"),
        "link: {link}\n{log}"
    );
    assert!(addrs.contains("192.0.2.1/24"), "{addrs}\n{log}");

    let out = pcap::read(&tx);
    assert_eq!(
        out.len(),
        3,
        "echo reply, port unreachable, RST\n{last}\n{log}"
    );
    let mut kinds = Vec::new();
    for f in &out {
        // Every answer goes to the real server's MAC from the port's, checksums right.
        let seen = testkit::check(f);
        assert_eq!(
            (seen.dst_mac, seen.src_mac),
            (RS1_MAC, ONE_ARM_MAC),
            "{f:02x?}"
        );
        assert_eq!((seen.src, seen.dst), (DIP, RIP1), "{f:02x?}");
        let l4 = &f[34..];
        kinds.push(match seen.proto {
            1 => (l4[0], l4[1]),
            6 => (6, l4[13] & 0x04),
            p => panic!("protocol {p}: {f:02x?}"),
        });
    }
    // The echo reply comes first: the dataplane answers it in its own loop, while the
    // kernel's answers take the exception thread's round trip.
    assert_eq!(kinds[0], (0, 0), "echo reply by the dataplane");
    assert!(kinds.contains(&(3, 3)), "port unreachable: {kinds:?}");
    assert!(kinds.contains(&(6, 0x04)), "RST: {kinds:?}");
    // The quoted datagram in the port unreachable is the one sent.
    let unreach = out
        .iter()
        .find(|f| f[23] == 1 && f[34] == 3)
        .expect("unreach");
    let quoted = &unreach[42..];
    assert_eq!(&quoted[12..20], &[RIP1.octets(), DIP.octets()].concat()[..]);
    let counter = |name: &str| -> u64 {
        last.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no counter {name}\n{last}"))
    };
    assert_eq!(counter("to_kernel"), 2, "{last}");
    assert_eq!(counter("echo_replies"), 1, "{last}");
    assert_eq!(counter("drop.local"), 0, "{last}");
    // The kernel's own chatter on a new interface (an IGMP report to a group) is not
    // routed; everything else it sent left the port.
    assert_eq!(
        counter("from_kernel"),
        2 + counter("drop.kernel_unroutable"),
        "{last}"
    );
}
