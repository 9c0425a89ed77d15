//! Every bad rvsadm call, as the binary runs it: exit status 2, a message on stderr that names
//! the problem, and no attempt to reach the daemon (the socket path does not exist, and no
//! "cannot connect" message appears).

use std::process::Command;

fn rvsadm(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(args)
        .env("RVS_SOCKET", "/nonexistent/rvs-bad-calls.sock")
        .output()
        .expect("run rvsadm");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_calls_exit_2_naming_the_problem_without_reaching_the_daemon() {
    let cases: &[(&str, &str)] = &[
        ("-A -t 198.51.100.1:80 -s fastest", "fastest"),
        ("-A -t 198.51.100.1:99999", "address"),
        ("-A -t 300.1.1.1:80", "address"),
        ("-A -t 198.51.100.1:http-alt-x", "address"),
        ("-A -t 198.51.100.1:80 -M 255.0.255", "mask"),
        ("-A -t 198.51.100.1:80 -p 0", "timeout"),
        ("-A -t 198.51.100.1:80 -p 9999999", "timeout"),
        ("-A -t 198.51.100.1:0 -s rr", "Zero port"),
        ("-A -t [2001:db8::1]:80 -p -M 129", "ipv6 netmask"),
        ("-A -t [2001:db8::1]", "address"),
        ("-a -t [2001:db8::1]:80 -r 192.0.2.2 -m", "address family"),
        ("-A -f 1", "firewall-mark"),
        ("-a -t 198.51.100.1:80 -r 192.0.2.2 -w 70000", "weight"),
        ("-a -t 198.51.100.1:80 -r 192.0.2.2 -w -1", "weight"),
        ("-a -t 198.51.100.1:80 -r 192.0.2.2 -g", "-g"),
        ("-a -t 198.51.100.1:80 -r 192.0.2.2 -i", "-i"),
        ("-a -t 198.51.100.1:80 -r 192.0.2.2 -x 1 -y 5", "threshold"),
        ("-a -t 198.51.100.1:80 -r not-an-address", "real server"),
        ("-a -t 198.51.100.1:80", "real-server"),
        ("-A", "service-address"),
        ("-A -D", "multiple commands"),
        ("-L -c -s rr", "scheduler"),
        ("--set 1 2", "3 timeout values"),
        ("--set 1 2 x", "timeout"),
        ("--bogus", "--bogus"),
        ("-A -t 198.51.100.1:80 stray", "stray"),
        ("-A -t", "-t: missing argument"),
        ("-L --counters -c", "conflicts"),
        ("-L --counters --stats", "conflicts"),
        ("-A -t 198.51.100.1:80 --counters", "counters"),
    ];
    let mut bad = Vec::new();
    for (line, needle) in cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let (code, err) = rvsadm(&args);
        if code != Some(2)
            || !err.to_lowercase().contains(&needle.to_lowercase())
            || err.contains("rvs-bad-calls.sock")
        {
            bad.push(format!(
                "rvsadm {line}: exit {code:?}, wanted {needle:?}: {err}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn counters_are_a_list_form() {
    use control::cli::{parse_args, Command, ListCommand};
    let inv = parse_args(&["-L", "--counters"]).expect("-L --counters parses");
    assert_eq!(inv.command, Command::List(ListCommand::Counters));
    let inv = parse_args(&["-l", "--counters", "-n"]).expect("with -n too");
    assert_eq!(inv.command, Command::List(ListCommand::Counters));
}
