//! rvsctl's bad calls, as the binary runs them: exit status 2, a message naming the problem and
//! the valid choices, and no attempt to reach the daemon (the socket does not exist, and no
//! "cannot connect" message appears).

use std::process::Command;

fn rvsctl(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsctl"))
        .args(args)
        .env("RVS_SOCKET", "/nonexistent/rvsctl-bad-calls.sock")
        .output()
        .expect("run rvsctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_sysctl_writes_exit_2_listing_what_is_valid() {
    let cases: &[(&[&str], &str)] = &[
        (&["sysctl", "-w", "expire_nodest=1"], "expire_nodest_conn"),
        (&["sysctl", "-w", "expire_nodest_conn=2"], "0..=1"),
        (&["sysctl", "-w", "conn_reuse_mode=x"], "not a number"),
        (&["sysctl", "-w", "sloppy_tcp"], "name=value"),
        // One bad pair refuses the good one beside it too.
        (
            &["sysctl", "-w", "sloppy_tcp=1", "-w", "secure_tcp=9"],
            "secure_tcp",
        ),
        (&["sysctl", "-w", "sloppy_tcp=1", "sloppy_tcp"], "not both"),
        (&["bogus"], "bogus"),
        (
            &[
                "neigh",
                "add",
                "192.0.2.300",
                "lladdr",
                "02:00:00:00:00:09",
                "dev",
                "int",
            ],
            "IPv4",
        ),
        (
            &[
                "neigh",
                "add",
                "192.0.2.9",
                "lladdr",
                "02:00:00:00:09",
                "dev",
                "int",
            ],
            "MAC",
        ),
        (
            &[
                "neigh",
                "add",
                "192.0.2.9",
                "lladdr",
                "01:00:5e:00:00:01",
                "dev",
                "int",
            ],
            "unicast MAC",
        ),
        (
            &[
                "neigh",
                "add",
                "255.255.255.255",
                "lladdr",
                "02:00:00:00:00:09",
                "dev",
                "int",
            ],
            "unicast address",
        ),
        (
            &[
                "neigh",
                "add",
                "ff02::1",
                "lladdr",
                "02:00:00:00:00:09",
                "dev",
                "int",
            ],
            "unicast address",
        ),
        (&["neigh", "add", "192.0.2.9", "dev", "int"], "usage"),
        (&["neigh", "del", "192.0.2.9"], "usage"),
    ];
    let mut bad = Vec::new();
    for (args, needle) in cases {
        let (code, err) = rvsctl(args);
        if code != Some(2) || !err.contains(needle) || err.contains("rvsctl-bad-calls.sock") {
            bad.push(format!(
                "rvsctl {args:?}: exit {code:?}, wanted {needle:?}: {err}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_good_call_without_a_daemon_says_so_and_exits_1() {
    let (code, err) = rvsctl(&["sysctl"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("rvsctl-bad-calls.sock"), "{err}");
}
