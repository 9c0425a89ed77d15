//! `rvsctl ports`, `rvsctl version` and `rvsctl capture` against rvsd on a net_null port.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use testkit::daemon::{control_bin_beside, net_null, Rvsd, RvsdConfig, VdevPort};

fn rvsctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(control_bin_beside(
        Path::new(env!("CARGO_BIN_EXE_rvsd")),
        "rvsctl",
    ))
    .args(args)
    .env("RVS_SOCKET", socket)
    .output()
    .expect("run rvsctl")
}

fn stdout_ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "rvsctl {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rvsctl_shows_ports_version_and_the_capture_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = RvsdConfig::new(dir.path().join("rvs.sock"))
        .port(VdevPort::one_arm(net_null(0)).mac([2, 0, 0, 0, 0, 1]));
    let rvsd = Rvsd::start(Path::new(env!("CARGO_BIN_EXE_rvsd")), &config, dir.path());
    rvsd.wait_ready(Duration::from_secs(60));
    let socket = rvsd.socket();
    let prefix = config.file_prefix();

    let ports = stdout_ok(rvsctl(socket, &["ports"]), "ports");
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 3, "{ports}");
    assert!(
        lines[0].starts_with(
            "lan: device net_null0 driver net_null port 0 mac 02:00:00:00:00:01 link up "
        ),
        "{ports}"
    );
    assert!(lines[0].ends_with(" mtu 1500"), "{ports}");
    assert!(lines[1].starts_with("    RX: packets 0 bytes 0 missed 0 errors 0 nombuf 0"));
    assert!(lines[2].starts_with("    TX: packets "), "{ports}");

    // -s adds the driver's extended counters; ethdev's generic ones are always there.
    let stats = stdout_ok(rvsctl(socket, &["ports", "-s"]), "ports -s");
    assert!(stats.contains("\n    rx_good_packets 0\n"), "{stats}");

    let version = stdout_ok(rvsctl(socket, &["version"]), "version");
    let want = format!("rvsctl {v}\nrvsd {v}\n", v = env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&want), "{version}");
    assert!(
        version.contains("\nDPDK 22.") || version.contains("\nDPDK 2"),
        "{version}"
    );
    assert!(
        version.contains(&format!(
            "EAL file prefix {prefix} (runtime folder /var/run/dpdk/{prefix})"
        )),
        "{version}"
    );

    let capture = stdout_ok(rvsctl(socket, &["capture"]), "capture");
    assert_eq!(
        capture,
        format!("dpdk-dumpcap --file-prefix={prefix} -i net_null0 -w /tmp/rvs-lan.pcapng\n")
    );
    let one = stdout_ok(
        rvsctl(socket, &["capture", "lan", "-w", "/tmp/x.pcapng"]),
        "capture lan",
    );
    assert_eq!(
        one,
        format!("dpdk-dumpcap --file-prefix={prefix} -i net_null0 -w /tmp/x.pcapng\n")
    );
    let bad = rvsctl(socket, &["capture", "wan"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no port named \"wan\" (ports: lan)"));
    assert!(rvsd.alive(), "{}", rvsd.log_tail(40));
}
