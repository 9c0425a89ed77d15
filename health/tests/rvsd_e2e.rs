//! rvs-healthd against a real rvsd: rvsd on a `net_null` port (only its control socket matters
//! here), rvs-healthd inside the director namespace of `health::testlab` checking nginx real
//! servers, and `rvsadm -Ln` showing what rvsd has: a killed real server's weight goes to 0
//! (inhibit_on_failure) or it leaves, it comes back when nginx does, the sorry server is in
//! while the quorum is lost, and SIGTERM removes the virtual server. Needs root.
//!
//! rvsd comes from the target directory rvs-healthd is in (built with `cargo build -p rvsd`
//! when missing), rvsadm beside it (testkit).

use health::testlab::{unique_prefix, HealthLab};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::daemon::{bin_beside, control_bin_beside, net_null, Rvsd, RvsdConfig, VdevPort};

fn rvsd_bin() -> PathBuf {
    bin_beside(Path::new(env!("CARGO_BIN_EXE_rvs-healthd")), "rvsd", "rvsd")
}

/// rvs-healthd, killed by PID on drop.
struct Healthd {
    child: Child,
    log: PathBuf,
}

impl Healthd {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Healthd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- rvs-healthd log ---\n{}", self.log());
        }
    }
}

/// `rvsadm -Ln`'s real servers of the one service: address:port -> weight.
fn listed(rvsadm: &Path, socket: &Path) -> BTreeMap<String, u32> {
    let out = Command::new(rvsadm)
        .args(["-L", "-n"])
        .env("RVS_SOCKET", socket)
        .output()
        .expect("rvsadm -Ln");
    assert!(
        out.status.success(),
        "rvsadm -Ln: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "->").then_some(())?;
            let ep = w.next()?.to_string();
            let _forward = w.next()?;
            Some((ep, w.next()?.parse().ok()?))
        })
        .collect()
}

fn wait_listed(rvsadm: &Path, socket: &Path, want: &[(&str, u32)], healthd: &Healthd) {
    let want: BTreeMap<String, u32> = want.iter().map(|(e, w)| (e.to_string(), *w)).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = listed(rvsadm, socket);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rvsadm -Ln shows {got:?}, wanted {want:?}\n{}",
            healthd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn rvsadm_shows_a_dead_real_server_leave_and_return_and_the_sorry_server_when_quorum_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = HealthLab::new(&unique_prefix(), 2, tmp.path(), |i| format!("rs{i}\n"))
        .expect("namespaces and nginx (root needed)");
    let rvsd_path = rvsd_bin();
    let rvsadm = control_bin_beside(&rvsd_path, "rvsadm");
    let socket = tmp.path().join("rvs.sock");
    let config = RvsdConfig::new(&socket).port(VdevPort::one_arm(net_null(0)));
    let rvsd = Rvsd::start(&rvsd_path, &config, tmp.path());
    rvsd.wait_ready(Duration::from_secs(30));

    let (rs0, rs1) = (HealthLab::real_server(0), HealthLab::real_server(1));
    let digest = format!("{:x}", md5::compute("rs1\n"));
    let conf = tmp.path().join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server 198.51.100.10 80 {{
    delay_loop 0.5
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server 203.0.113.200 80
    real_server {rs0} 80 {{
        weight 1
        inhibit_on_failure
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.3
            warmup 0
        }}
    }}
    real_server {rs1} 80 {{
        weight 1
        HTTP_GET {{
            url {{
                path /
                digest {digest}
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 0.3
            warmup 0
        }}
    }}
}}
"
        ),
    )
    .unwrap();
    let log = tmp.path().join("rvs-healthd.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut healthd = Healthd {
        child: lab
            .director
            .command(env!("CARGO_BIN_EXE_rvs-healthd"))
            .arg("-f")
            .arg(&conf)
            .arg("--socket")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start rvs-healthd"),
        log,
    };
    let (a, b) = (format!("{rs0}:80"), format!("{rs1}:80"));
    let sorry = "203.0.113.200:80";
    wait_listed(&rvsadm, &socket, &[(&a, 1), (&b, 1)], &healthd);

    lab.nginx[0].kill();
    wait_listed(&rvsadm, &socket, &[(&a, 0), (&b, 1)], &healthd);
    lab.nginx[0].restart().unwrap();
    wait_listed(&rvsadm, &socket, &[(&a, 1), (&b, 1)], &healthd);

    lab.nginx[1].kill();
    wait_listed(&rvsadm, &socket, &[(&a, 1)], &healthd);
    lab.nginx[0].kill();
    wait_listed(&rvsadm, &socket, &[(&a, 0), (sorry, 1)], &healthd);
    lab.nginx[1].restart().unwrap();
    wait_listed(&rvsadm, &socket, &[(&a, 0), (&b, 1)], &healthd);
    lab.nginx[0].restart().unwrap();
    wait_listed(&rvsadm, &socket, &[(&a, 1), (&b, 1)], &healthd);

    let log = healthd.log();
    assert!(
        log.contains("TCP_CHECK 203.0.113.2:80 of TCP 198.51.100.10:80] failed: connect to 203.0.113.2:80: Connection refused"),
        "every transition logged with its reason:\n{log}"
    );
    assert!(log.contains("quorum lost"), "{log}");

    // SIGTERM: the virtual server leaves rvsd, as keepalived removes its services on exit.
    // SAFETY: kill(2) of our own unreaped child.
    unsafe { libc::kill(healthd.child.id() as libc::pid_t, libc::SIGTERM) };
    let st = healthd.child.wait().unwrap();
    assert!(st.success(), "rvs-healthd exit: {st}\n{}", healthd.log());
    let out = Command::new(&rvsadm)
        .args(["-S", "-n"])
        .env("RVS_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "services left after exit"
    );
}
