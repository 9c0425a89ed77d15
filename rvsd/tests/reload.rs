//! Reloading rvs.toml in a running rvsd (one `net_null` port that receives nothing): the file
//! rvsd started from is rewritten, then SIGHUP or `rvsctl reload`, and `rvsadm -Ln`, `rvsctl
//! sysctl`, `rvsctl neigh` and `rvsadm -L --timeout` show what changed.
//!
//! - diff semantics: a real server an operator added live and the file never named survives;
//! - services and real servers added, edited (scheduler, weight, thresholds) and removed;
//!   timeouts, IPVS sysctls and static neighbours; keys that need a restart are reported and
//!   left as they are; an unchanged file changes nothing;
//! - a file with an error (TOML syntax, bad key, unresolvable service line, sysctl out of range,
//!   a service the daemon refuses) is refused whole, by SIGHUP and by `rvsctl reload`, with the
//!   key or line named; nothing changes and rvsd keeps running.
//!
//! The daemons run one at a time: their worker spins on lcore 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use testkit::daemon::{control_bin_beside, net_null, rvsadm_beside, Rvsd, RvsdConfig, VdevPort};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rvsd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rvsd"))
}

const START: &str = "-A -t 198.51.100.1:80 -s rr\n\
                     -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
                     -A -t 198.51.100.1:443 -s wlc\n\
                     -a -t 198.51.100.1:443 -r 192.0.2.2:443 -m -w 1\n";

/// rvsd started from a file this test rewrites.
struct Daemon {
    rvsd: Rvsd,
    config: RvsdConfig,
    /// The file rvsd was started with (`--config`).
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = RvsdConfig::new(dir.path().join("rvs.sock"))
            .port(VdevPort::one_arm(net_null(0)))
            .services(START);
        let rvsd = Rvsd::start(rvsd_bin(), &config, dir.path());
        rvsd.wait_ready(Duration::from_secs(30));
        let file = dir.path().join(format!("{}.toml", config.file_prefix()));
        assert!(file.is_file(), "testkit writes {}", file.display());
        Daemon {
            rvsd,
            config,
            file,
            _dir: dir,
        }
    }

    /// Rewrites rvsd's file: `services`, then `extra` TOML appended.
    fn rewrite(&self, services: &str, extra: &str) {
        self.rewrite_config(self.config.clone().services(services), extra);
    }

    fn rewrite_config(&self, config: RvsdConfig, extra: &str) {
        let text = config.to_toml();
        std::fs::write(&self.file, format!("{text}\n{extra}")).expect("rewrite rvs.toml");
    }

    fn run(&self, bin: &str, args: &[&str]) -> Output {
        let path = match bin {
            "rvsadm" => rvsadm_beside(rvsd_bin()),
            _ => control_bin_beside(rvsd_bin(), bin),
        };
        Command::new(&path)
            .args(args)
            .env("RVS_SOCKET", self.rvsd.socket())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// stdout of a command that must succeed.
    fn ok(&self, bin: &str, args: &[&str]) -> String {
        let out = self.run(bin, args);
        assert!(
            out.status.success(),
            "{bin} {args:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.rvsd.log_tail(30)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    fn list(&self) -> String {
        self.ok("rvsadm", &["-Ln"])
    }

    /// Everything a reload can change, as the tools print it.
    fn state(&self) -> String {
        [
            self.ok("rvsadm", &["-Ln"]),
            self.ok("rvsadm", &["-Ln", "--timeout"]),
            self.ok("rvsctl", &["sysctl"]),
            self.ok("rvsctl", &["neigh"]),
        ]
        .concat()
    }

    fn sighup(&self) {
        // SAFETY: kill(2) on our own child's PID, which the guard has not reaped.
        unsafe { libc::kill(self.rvsd.pid() as libc::pid_t, libc::SIGHUP) };
    }

    /// Waits (at most 10 s) until rvsd's log holds `n` lines with `what`.
    fn wait_log(&self, what: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.rvsd.log_text().matches(what).count() < n {
            assert!(self.rvsd.alive(), "rvsd died\n{}", self.rvsd.log_tail(40));
            assert!(
                Instant::now() < deadline,
                "no {n} × {what:?} in the log\n{}",
                self.rvsd.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `-Ln` line of real server `rs` (e.g. "192.0.2.2:80"), or None.
fn rs_line<'a>(list: &'a str, service: &str, rs: &str) -> Option<&'a str> {
    let mut in_service = false;
    for line in list.lines() {
        if !line.starts_with("  ") {
            in_service = line.contains(service);
        } else if in_service && line.contains(&format!("-> {rs} ")) {
            return Some(line);
        }
    }
    None
}

fn service_line<'a>(list: &'a str, service: &str) -> Option<&'a str> {
    list.lines()
        .find(|l| l.contains(service) && !l.starts_with("  "))
}

fn weight(list: &str, service: &str, rs: &str) -> Option<u32> {
    let line = rs_line(list, service, rs)?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn sighup_and_rvsctl_reload_apply_the_difference_and_leave_live_changes_alone() {
    let _one = serial();
    let d = Daemon::start();
    // An operator's change the file never names.
    d.ok(
        "rvsadm",
        &[
            "-a",
            "-t",
            "198.51.100.1:80",
            "-r",
            "192.0.2.9:80",
            "-m",
            "-w",
            "5",
        ],
    );

    // Reload 1 (SIGHUP): a real server added, a weight and thresholds changed, a scheduler
    // changed, a UDP service added; timeouts, a sysctl and a static neighbour.
    let second = "-A -t 198.51.100.1:80 -s wrr\n\
                  -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 3 -x 100 -y 10\n\
                  -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1\n\
                  -A -t 198.51.100.1:443 -s wlc\n\
                  -a -t 198.51.100.1:443 -r 192.0.2.2:443 -m -w 1\n\
                  -A -u 198.51.100.1:53 -s rr\n\
                  -a -u 198.51.100.1:53 -r 192.0.2.5:53 -m\n";
    let extra = "[conntrack.timeouts]\ntcp = 600\ntcp_fin = 60\nudp = 30\n\
                 [ipvs]\nexpire_nodest_conn = 1\n";
    let with_neighbour = d.config.clone().services(second).neighbour(
        "lan",
        "192.0.2.7".parse::<std::net::Ipv4Addr>().unwrap(),
        [2, 0, 0, 0, 0, 7],
    );
    d.rewrite_config(with_neighbour, extra);
    d.sighup();
    d.wait_log("configuration reloaded", 1);
    let list = d.list();
    assert!(
        service_line(&list, "TCP  198.51.100.1:80 wrr").is_some(),
        "{list}"
    );
    // 192.0.2.9 is the operator's real server, which the file never names: it stays.
    let weights = [
        ("198.51.100.1:80", "192.0.2.2:80"),
        ("198.51.100.1:80", "192.0.2.3:80"),
        ("198.51.100.1:80", "192.0.2.9:80"),
        ("198.51.100.1:53", "192.0.2.5:53"),
    ]
    .map(|(service, rs)| weight(&list, service, rs));
    assert_eq!(weights, [Some(3), Some(1), Some(5), Some(1)], "{list}");
    let saved = d.ok("rvsadm", &["-Sn"]);
    assert!(
        saved.contains("-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 3 -x 100 -y 10"),
        "{saved}"
    );
    let timeouts = d.ok("rvsadm", &["-Ln", "--timeout"]);
    assert!(timeouts.contains("600 60 30"), "{timeouts}");
    let sysctl = d.ok("rvsctl", &["sysctl", "expire_nodest_conn"]);
    assert_eq!(sysctl.trim(), "net.ipv4.vs.expire_nodest_conn = 1");
    let neigh = d.ok("rvsctl", &["neigh"]);
    assert!(
        neigh.contains("192.0.2.7 dev lan lladdr 02:00:00:00:00:07 PERMANENT"),
        "{neigh}"
    );
    let log = d.rvsd.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("configuration reloaded") && l.contains("SIGHUP")),
        "{log}"
    );

    // Reload 2 (rvsctl): a real server and a service removed, the neighbour and the sysctl
    // dropped; a key that needs a restart is reported and left as it is.
    let third = "-A -t 198.51.100.1:80 -s wrr\n\
                 -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 3 -x 100 -y 10\n\
                 -A -t 198.51.100.1:443 -s wlc\n\
                 -a -t 198.51.100.1:443 -r 192.0.2.2:443 -m -w 1\n";
    let size_before = d.list().lines().next().map(str::to_owned);
    d.rewrite(
        third,
        "[conntrack.timeouts]\ntcp = 600\ntcp_fin = 60\nudp = 30\n",
    );
    let text = std::fs::read_to_string(&d.file).unwrap();
    std::fs::write(&d.file, text.replace("capacity = 1024", "capacity = 2048")).unwrap();
    let out = d.ok("rvsctl", &["reload"]);
    for want in [
        "applied: -D -u 198.51.100.1:53",
        "applied: -d -t 198.51.100.1:80 -r 192.0.2.3:80",
        "applied: sysctl -w net.ipv4.vs.expire_nodest_conn=0",
        "applied: neigh del 192.0.2.7 dev lan",
        "not live: conntrack.capacity",
    ] {
        assert!(out.contains(want), "{want:?} in\n{out}");
    }
    assert_eq!(
        out.lines().filter(|l| l.starts_with("applied:")).count(),
        4,
        "{out}"
    );
    let list = d.list();
    assert!(
        rs_line(&list, "198.51.100.1:80", "192.0.2.3:80").is_none(),
        "{list}"
    );
    assert!(service_line(&list, "198.51.100.1:53").is_none(), "{list}");
    assert!(
        rs_line(&list, "198.51.100.1:80", "192.0.2.9:80").is_some(),
        "{list}"
    );
    assert_eq!(
        list.lines().next().map(str::to_owned),
        size_before,
        "table size stays"
    );
    assert!(!d.ok("rvsctl", &["neigh"]).contains("192.0.2.7"));
    let log = d.rvsd.log_text();
    assert!(
        log.lines().any(|l| l.contains("configuration reloaded")
            && l.contains("control")
            && l.contains("uid=")),
        "{log}"
    );

    // Reload 3: the same file again changes nothing; the capacity, still not the running one,
    // is reported again.
    let out = d.ok("rvsctl", &["reload"]);
    assert_eq!(
        out.trim(),
        "not live: conntrack.capacity: changed, needs a restart (left as it is)"
    );
    // Back to the running capacity: nothing at all.
    d.rewrite(
        third,
        "[conntrack.timeouts]\ntcp = 600\ntcp_fin = 60\nudp = 30\n",
    );
    assert_eq!(d.ok("rvsctl", &["reload"]).trim(), "no change");
}

#[test]
fn a_file_with_an_error_is_refused_whole_and_rvsd_keeps_running() {
    let _one = serial();
    let d = Daemon::start();
    let before = d.state();
    // Each is refused whole although its other lines would change things.
    let add = "-a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1\n";
    let cases: [(String, &str, &str); 5] = [
        (format!("{START}{add}"), "[ipvs\n", "TOML parse error at line"),
        (
            format!("{START}{add}-a -t 198.51.100.9:80 -r 192.0.2.4:80 -m\n"),
            "",
            "services: line 6",
        ),
        (format!("{START}{add}"), "[ipvs]\nsecure_tcp = 7\n", "ipvs.secure_tcp"),
        (format!("{START}{add}"), "[ipvs]\nsecure_tpc = 1\n", "secure_tpc"),
        // Parses, but the daemon refuses it: a real server of a one-packet service may not
        // back another service.
        (
            format!(
                "{START}{add}-A -u 198.51.100.1:53 -s rr -o\n-a -u 198.51.100.1:53 -r 192.0.2.5:53 -m\n\
                 -A -u 198.51.100.1:54 -s rr\n-a -u 198.51.100.1:54 -r 192.0.2.5:53 -m\n"
            ),
            "",
            "services: line 9",
        ),
    ];
    for (services, extra, named) in &cases {
        d.rewrite(services, extra);
        let out = d.run("rvsctl", &["reload"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{named}: {err}");
        assert!(
            err.contains("reload refused, nothing changed") && err.contains(named),
            "{named}: {err}"
        );
        assert_eq!(d.state(), before, "{named}: nothing changes");
    }
    // The key's line is named too.
    d.rewrite(START, "[ipvs]\nsecure_tpc = 1\n");
    let err = String::from_utf8_lossy(&d.run("rvsctl", &["reload"]).stderr).into_owned();
    let line = d.config.clone().services(START).to_toml().lines().count() + 3;
    assert!(err.contains(&format!("line {line}")), "{err}");

    // SIGHUP with a bad file: refused and logged, rvsd runs on unchanged.
    d.rewrite(&format!("{START}{add}"), "[ipvs]\nsecure_tcp = 7\n");
    d.sighup();
    d.wait_log("reload refused", 1);
    assert!(d.rvsd.alive());
    assert_eq!(d.state(), before);
    // A good file afterwards is compared with the configuration last loaded, not the bad one.
    d.rewrite(&format!("{START}{add}"), "");
    assert_eq!(
        d.ok("rvsctl", &["reload"]).trim(),
        "applied: -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1"
    );
}
