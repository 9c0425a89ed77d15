//! rvs's DPDK telemetry commands seen by DPDK's own client: rvsd on a net_null port, a service
//! added with rvsadm, then Debian's `dpdk-telemetry.py -f PREFIX` (commands on stdin, one JSON
//! answer a line) lists `/rvs/services` beside `/ethdev/stats` and answers both.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::daemon::{control_bin_beside, net_null, rvsadm_beside, Rvsd, RvsdConfig, VdevPort};

const TELEMETRY: &str = "/usr/bin/dpdk-telemetry.py";

/// Runs `dpdk-telemetry.py -f prefix` with `commands` on stdin (bounded by `timeout`); the
/// answers by command.
fn telemetry(prefix: &str, commands: &[&str]) -> BTreeMap<String, Value> {
    assert!(
        Path::new(TELEMETRY).is_file(),
        "{TELEMETRY} is missing: apt-get install dpdk"
    );
    let mut child = Command::new("timeout")
        .args(["30", TELEMETRY, "-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dpdk-telemetry.py");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{}\n", commands.join("\n")).as_bytes())
        .expect("write commands");
    drop(stdin);
    let out = child.wait_with_output().expect("dpdk-telemetry.py output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dpdk-telemetry.py: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut answers = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let Value::Object(map) = v else { continue };
        answers.extend(map);
    }
    answers
}

fn run_ok(bin: &Path, socket: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env("RVS_SOCKET", socket)
        .output()
        .expect("run a control tool");
    assert!(
        out.status.success(),
        "{} {}: {}",
        bin.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dpdk_telemetry_shows_rvs_services_beside_ethdev_stats() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = RvsdConfig::new(dir.path().join("rvs.sock")).port(VdevPort::one_arm(net_null(0)));
    let rvsd_bin = Path::new(env!("CARGO_BIN_EXE_rvsd"));
    let rvsd = Rvsd::start(rvsd_bin, &config, dir.path());
    rvsd.wait_ready(Duration::from_secs(60));
    let prefix = config.file_prefix();
    let rvsadm = rvsadm_beside(rvsd_bin);
    let socket = rvsd.socket();
    // The socket is bound before EAL starts; an answer means start-up (telemetry included) is
    // over.
    run_ok(&rvsadm, socket, &["-L", "-n"]);

    // Before any service: the command exists and answers an empty dictionary.
    let before = telemetry(prefix, &["/rvs/services"]);
    assert_eq!(before["/rvs/services"], serde_json::json!({}), "{before:?}");

    let rvsadm = rvsadm_beside(rvsd_bin);
    let socket = rvsd.socket();
    for args in [
        "-A -t 198.51.100.1:80 -s wrr",
        "-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 3",
        "-a -t 198.51.100.1:80 -r 192.0.2.3:8080 -m -w 0",
    ] {
        let args: Vec<&str> = args.split(' ').collect();
        run_ok(&rvsadm, socket, &args);
    }

    let answers = telemetry(
        prefix,
        &[
            "/",
            "/rvs/services",
            "/ethdev/stats,0",
            "/rvs/stats",
            "/rvs/ports",
            "/rvs/info",
        ],
    );
    let commands: Vec<&str> = answers["/"]
        .as_array()
        .expect("/ lists the commands")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for c in [
        "/ethdev/stats",
        "/rvs/services",
        "/rvs/stats",
        "/rvs/ports",
        "/rvs/info",
    ] {
        assert!(commands.contains(&c), "{c} not in {commands:?}");
    }
    assert!(answers["/ethdev/stats"]["ipackets"].is_u64(), "{answers:?}");

    let services = answers["/rvs/services"].as_object().expect("a dictionary");
    assert_eq!(services.len(), 1, "{services:?}");
    let web = &services["TCP/198_51_100_1/80"];
    assert_eq!(web["protocol"], "TCP");
    assert_eq!(web["address"], "198.51.100.1");
    assert_eq!(web["port"], 80);
    assert_eq!(web["scheduler"], "wrr");
    let rs = web["real_servers"].as_object().expect("real servers");
    assert_eq!(rs.len(), 2, "{rs:?}");
    let rs1 = &rs["192_0_2_2/80"];
    assert_eq!(rs1["address"], "192.0.2.2");
    assert_eq!(rs1["weight"], 3);
    assert_eq!(rs1["forward"], "Masq");
    assert_eq!(rs1["active_conns"], 0);
    assert_eq!(rs1["inactive_conns"], 0);
    let rs2 = &rs["192_0_2_3/8080"];
    assert_eq!(rs2["port"], 8080);
    assert_eq!(rs2["weight"], 0);

    // /rvs/stats carries every counter of `rvsctl counters`, a '.' in a name written '/'.
    let rvsctl = control_bin_beside(rvsd_bin, "rvsctl");
    let counters = run_ok(&rvsctl, socket, &["counters"]);
    let want: Vec<String> = counters
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.replace('.', "/"))
        .collect();
    let stats = answers["/rvs/stats"].as_object().expect("a dictionary");
    let got: Vec<&String> = stats.keys().collect();
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    for name in &want {
        assert!(stats[name].is_u64(), "{name} missing from /rvs/stats");
    }
    assert_eq!(stats["conntrack/capacity"], 1024);

    let lan = &answers["/rvs/ports"]["lan"];
    assert_eq!(lan["device"], "net_null0");
    assert_eq!(lan["driver"], "net_null");
    assert_eq!(lan["link"], "up");

    let info = &answers["/rvs/info"];
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["dpdk"]
        .as_str()
        .is_some_and(|v| v.starts_with("DPDK ")));
    assert_eq!(info["file_prefix"], prefix);
    assert_eq!(info["workers"], 1);
    assert_eq!(info["conntrack_capacity"], 1024);
    assert_eq!(info["conntrack_entries"], 0);
    // A table of 1024 connections is too small to ask for hugepages.
    assert_eq!(info["conntrack_hugetlb"], 0);
    assert_eq!(info["conntrack6_hugetlb"], 0);
    assert!(info["conntrack_bytes"].as_u64() > Some(1024 * 32), "{info}");
    assert!(rvsd.alive(), "{}", rvsd.log_tail(40));
}
