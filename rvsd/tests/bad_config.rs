//! Every bad rvs.toml is refused by the real rvsd binary (`rvsd --check --config FILE`, which
//! needs no DPDK) with a non-zero exit and a message on stderr that names the problem: the key
//! (and, for what the TOML parser finds, the line). A good file passes.

use std::path::PathBuf;
use std::process::Command;

const PORT: &str = r#"[[ports]]
name = "ext"
device = "net_null0"
role = "both"
addresses = ["198.51.100.1/24"]
"#;

fn rvsd_check(text: &str, tag: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join(format!("{tag}.toml"));
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .env("RVS_LOG", "error")
        .output()
        .expect("run rvsd");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_good_config_passes_the_check() {
    let (ok, err) = rvsd_check(PORT, "good");
    assert!(ok, "{err}");
    let full = format!(
        "services = \"\"\"\n-A -t 198.51.100.1:80 -s wrr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 2\n\"\"\"\n\
         {PORT}mac = \"02:00:00:00:01:01\"\ngateway = \"198.51.100.254\"\nmtu = 9000\n\
         [conntrack]\ncapacity = 1024\n[conntrack.timeouts]\ntcp = 900\ntcp_fin = 120\nudp = 300\n"
    );
    let (ok, err) = rvsd_check(&full, "good2");
    assert!(ok, "{err}\n{full}");
    for (i, listen) in ["203.0.113.1:9180", "[2001:db8::1]:9180"]
        .iter()
        .enumerate()
    {
        let text = format!("{PORT}[metrics]\nlisten = \"{listen}\"\noptional = true\n");
        let (ok, err) = rvsd_check(&text, &format!("metrics{i}"));
        assert!(ok, "{err}\n{text}");
    }
}

#[test]
fn every_bad_config_is_refused_naming_the_problem() {
    let with = |extra: &str| format!("{PORT}{extra}");
    // (what, file, substrings the message must hold)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("unknown key", with("mtux = 1500\n"), vec!["mtux", "line 6"]),
        (
            "unknown table",
            with("[conntrak]\ncapacity = 10\n"),
            vec!["conntrak", "line 6"],
        ),
        (
            "unknown top-level key",
            format!("workerz = 1\n{PORT}"),
            vec!["workerz", "line 1"],
        ),
        ("wrong type", with("mtu = \"big\"\n"), vec!["mtu", "line 6"]),
        (
            "out of range",
            with("mtu = 70000\n"),
            vec!["mtu", "line 6"],
        ),
        (
            "negative",
            with("[conntrack]\ncapacity = -1\n"),
            vec!["capacity", "line 7"],
        ),
        (
            "missing key",
            "[[ports]]\nname = \"ext\"\nrole = \"both\"\naddresses = [\"198.51.100.1/24\"]\n".into(),
            vec!["device"],
        ),
        ("no ports", "[conntrack]\ncapacity = 10\n".into(), vec!["ports"]),
        (
            "no address",
            PORT.replace("[\"198.51.100.1/24\"]", "[]"),
            vec!["ports[0].addresses"],
        ),
        (
            "address without prefix",
            PORT.replace("198.51.100.1/24", "198.51.100.1"),
            vec!["ports[0].addresses"],
        ),
        (
            "bad address",
            PORT.replace("198.51.100.1/24", "198.51.100.300/24"),
            vec!["ports[0].addresses"],
        ),
        (
            "bad prefix",
            PORT.replace("198.51.100.1/24", "198.51.100.1/33"),
            vec!["ports[0].addresses"],
        ),
        (
            "bad MAC",
            with("mac = \"02:00:00:00:00\"\n"),
            vec!["ports[0].mac"],
        ),
        (
            "bad MAC digits",
            with("mac = \"zz:00:00:00:00:01\"\n"),
            vec!["ports[0].mac"],
        ),
        (
            "bad role",
            PORT.replace("\"both\"", "\"middle\""),
            vec!["middle", "line 4"],
        ),
        (
            "bad gateway",
            with("gateway = \"198.51.100\"\n"),
            vec!["gateway", "line 6"],
        ),
        ("MTU too small", with("mtu = 20\n"), vec!["ports[0].mtu"]),
        (
            "duplicate port",
            format!("{PORT}{}", PORT.replace("198.51.100.1/24", "192.0.2.1/24")),
            vec!["ports[1].name"],
        ),
        (
            "no external port",
            PORT.replace("\"both\"", "\"internal\""),
            vec!["external"],
        ),
        (
            "zero capacity",
            with("[conntrack]\ncapacity = 0\n"),
            vec!["conntrack.capacity"],
        ),
        (
            "misspelt timeouts key",
            with("[conntrack.timeouts]\ntcp = 900\ntcp_fin = 120\nudpp = 300\n"),
            vec!["udpp", "line 9"],
        ),
        (
            "extra timeouts key",
            with("[conntrack.timeouts]\ntcp = 900\ntcp_fin = 120\nudp = 300\ntcpp = 5\n"),
            vec!["tcpp", "line 10"],
        ),
        (
            "wrong type in a list",
            format!("[eal]\nargs = [\"-l\", 1]\n{PORT}"),
            vec!["args", "line 2"],
        ),
        (
            "lcores not a list",
            with("[workers]\nlcores = \"1\"\n"),
            vec!["lcores", "line 7"],
        ),
        (
            "bad service line",
            format!(
                "services = \"\"\"\n-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -g\n\"\"\"\n{PORT}"
            ),
            vec!["services: line 2"],
        ),
        (
            "unknown scheduler in a service line",
            format!("services = \"-A -t 198.51.100.1:80 -s fastest\"\n{PORT}"),
            vec!["services: line 1", "fastest"],
        ),
        (
            "metrics.listen without a port",
            with("[metrics]\nlisten = \"203.0.113.1\"\n"),
            vec!["metrics.listen", "line 7"],
        ),
        (
            "metrics.listen not an address",
            with("[metrics]\nlisten = \"nonsense:80\"\n"),
            vec!["metrics.listen", "line 7"],
        ),
        (
            "metrics.optional not a boolean",
            with("[metrics]\nlisten = \"203.0.113.1:9180\"\noptional = \"yes\"\n"),
            vec!["metrics.optional", "line 8"],
        ),
        (
            "unknown metrics key",
            with("[metrics]\nlisten = \"203.0.113.1:9180\"\nlistn = 1\n"),
            vec!["listn", "line 8"],
        ),
        (
            "metrics without listen",
            with("[metrics]\noptional = true\n"),
            vec!["metrics", "listen", "line 6"],
        ),
        (
            "TOML syntax",
            with("[conntrack\ncapacity = 1\n"),
            vec!["line 6"],
        ),
        (
            "unterminated string",
            with("device2 = \"net_null0\n"),
            vec!["line 6"],
        ),
    ];
    for (i, (what, text, needles)) in cases.iter().enumerate() {
        let (ok, err) = rvsd_check(text, &format!("case{i}"));
        assert!(!ok, "{what}: rvsd accepted\n{text}");
        assert!(err.starts_with("rvsd: "), "{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: message lacks {n:?}:\n{err}");
        }
    }
}

#[test]
fn a_missing_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["--check", "--config", "/nonexistent/rvs.toml"])
        .output()
        .expect("run rvsd");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/rvs.toml"), "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn the_lab_config_runs_only_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(["--check", "--lab-config"])
        .env("RVS_LOG", "error")
        .output()
        .expect("run rvsd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args([
            "--check",
            "--lab-config",
            "--config",
            "/nonexistent/rvs.toml",
        ])
        .output()
        .expect("run rvsd");
    assert!(
        !out.status.success(),
        "--lab-config with --config is refused"
    );
}

#[test]
fn without_config_rvsd_reads_etc_rvs() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--check")
        .env("RVS_LOG", "error")
        .output()
        .expect("run rvsd");
    let err = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new("/etc/rvs/rvs.toml").exists() {
        // This machine has one: rvsd checked it rather than the embedded lab configuration.
        assert!(
            out.status.success() || err.contains("/etc/rvs/rvs.toml"),
            "{err}"
        );
        return;
    }
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("/etc/rvs/rvs.toml does not exist"), "{err}");
    assert!(err.contains("--lab-config"), "{err}");
}
