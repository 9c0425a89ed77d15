//! The checkers against real nginx servers in namespaces of their own (`rvs-health-PID-N-*`,
//! addresses from 203.0.113.0/24; see `health::testlab`): each check sees nginx up, fails
//! when nginx is killed by PID, and recovers when it is started again; the engine takes a
//! dead real server out (or to weight 0) and brings in the sorry server when the quorum is
//! lost. Needs root (namespaces). `detection_time` (ignored: a measurement, not a check)
//! prints the time from a kill to the weight change over 20 cycles:
//!
//! ```text
//! cargo test -p health --test checkers -- --ignored --nocapture detection_time
//! ```

use health::check::{self, Verdict};
use health::conf::{self, Connect, HttpGet, MiscCheck, Url};
use health::engine::Engine;
use health::state::WeightChange;
use health::testlab::{in_netns, unique_prefix, HealthLab, Recorder};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn page(i: usize) -> String {
    format!("real server {i}\n")
}

fn lab(n: usize, dir: &Path) -> HealthLab {
    HealthLab::new(&unique_prefix(), n, dir, page).expect("namespaces and nginx (root needed)")
}

fn rs(i: usize) -> SocketAddr {
    SocketAddrV4::new(HealthLab::real_server(i), 80).into()
}

fn up() -> Verdict {
    Verdict::Up(WeightChange::Unchanged)
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn each_checker_fails_when_nginx_dies_and_recovers_when_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = lab(1, tmp.path());
    let t = Duration::from_secs(2);
    let tcp = Connect {
        dst: rs(0),
        bind: Some(SocketAddrV4::new(HealthLab::director_side(0), 0).into()),
    };
    let url = |path: &str, digest: Option<String>| Url {
        path: path.into(),
        digest,
        status: Vec::new(),
        virtualhost: None,
    };
    let good = HttpGet {
        connect: Connect {
            dst: rs(0),
            bind: None,
        },
        urls: vec![url("/", Some(format!("{:x}", md5::compute(page(0)))))],
        http10: false,
    };
    let wrong_digest = HttpGet {
        urls: vec![url("/index.html", Some("0".repeat(32)))],
        ..good.clone()
    };
    let missing = HttpGet {
        urls: vec![url("/missing", None)],
        ..good.clone()
    };
    let misc = MiscCheck {
        argv: conf::model::split_command(&format!("curl -sf -m 2 -o /dev/null http://{}/", rs(0)))
            .unwrap(),
        dynamic: false,
    };
    let dir = lab.director.name().to_string();
    let all = || {
        in_netns(&dir, || {
            (
                check::tcp(&tcp, t),
                check::http(&good, t),
                check::misc(&misc, t),
            )
        })
        .unwrap()
    };
    assert_eq!(all(), (up(), up(), up()));
    // The digest to write is the one keepalived's genhash prints for the page.
    let out = lab
        .director
        .command("genhash")
        .args(["-s", &rs(0).ip().to_string(), "-p", "80", "-u", "/"])
        .output()
        .expect("genhash (package keepalived, scripts/setup.sh)");
    let printed = String::from_utf8_lossy(&out.stdout);
    let genhash = printed.split_whitespace().last().unwrap_or_default();
    assert_eq!(
        Some(genhash),
        good.urls[0].digest.as_deref(),
        "genhash printed {printed:?}"
    );
    let (d, m) = in_netns(&dir, || {
        (check::http(&wrong_digest, t), check::http(&missing, t))
    })
    .unwrap();
    assert!(
        matches!(&d, Verdict::Down(e) if e.contains("digest")),
        "{d:?}"
    );
    assert!(
        matches!(&m, Verdict::Down(e) if e.contains("status 404")),
        "{m:?}"
    );

    lab.nginx[0].kill();
    let (a, b, c) = all();
    assert!(
        matches!(&a, Verdict::Down(e) if e.contains("refused")),
        "{a:?}"
    );
    assert!(
        matches!(&b, Verdict::Down(e) if e.contains("refused")),
        "{b:?}"
    );
    assert!(
        matches!(&c, Verdict::Down(e) if e.contains("exited with status 7")),
        "{c:?}"
    );

    lab.nginx[0].restart().unwrap();
    assert_eq!(all(), (up(), up(), up()));
}

/// Runs the engine on `config` in the director namespace until `f` returns.
fn with_engine<T>(director: &str, config: &str, f: impl FnOnce(&Recorder) -> T) -> T {
    let cfg = conf::parse_str(config, Path::new("test.conf")).unwrap_or_else(|e| panic!("{e}"));
    let rec = Recorder::default();
    let mut engine = Engine::new(&cfg, rec.clone());
    engine.install().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let runner = s.spawn(|| in_netns(director, || engine.run(&stop, 8)));
        // Stop the engine also when `f` panics.
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let guard = StopOnDrop(&stop);
        let out = f(&rec);
        drop(guard);
        runner.join().unwrap().unwrap();
        out
    })
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn the_engine_takes_dead_servers_out_and_swaps_in_the_sorry_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = lab(2, tmp.path());
    let digest = format!("{:x}", md5::compute(page(1)));
    let config = format!(
        "virtual_server 198.51.100.10 80 {{
    lb_algo rr
    lb_kind NAT
    delay_loop 0.3
    retry 1
    delay_before_retry 0.2
    connect_timeout 1
    warmup 0
    sorry_server 203.0.113.200 80
    real_server {} 80 {{
        weight 2
        inhibit_on_failure
        TCP_CHECK {{ }}
    }}
    real_server {} 80 {{
        weight 3
        HTTP_GET {{
            url {{
                path /
                digest {digest}
            }}
        }}
    }}
}}
",
        HealthLab::real_server(0),
        HealthLab::real_server(1)
    );
    let sorry: SocketAddr = "203.0.113.200:80".parse().unwrap();
    let within = Duration::from_secs(10);
    let director = lab.director.name().to_string();
    with_engine(&director, &config, |rec| {
        assert_eq!(rec.weight(rs(0)), Some(2));
        assert_eq!(rec.weight(rs(1)), Some(3));
        assert_eq!(rec.weight(sorry), None);

        lab.nginx[0].kill();
        assert!(
            rec.wait_for(rs(0), Some(0), within).is_some(),
            "inhibited: weight 0, {:?}",
            rec.weights()
        );
        assert_eq!(rec.weight(rs(1)), Some(3));

        lab.nginx[1].kill();
        assert!(
            rec.wait_for(rs(1), None, within).is_some(),
            "removed: {:?}",
            rec.weights()
        );
        assert_eq!(rec.weight(sorry), Some(1), "quorum lost: sorry server in");

        lab.nginx[1].restart().unwrap();
        assert!(
            rec.wait_for(rs(1), Some(3), within).is_some(),
            "{:?}",
            rec.weights()
        );
        assert_eq!(rec.weight(sorry), None, "quorum back: sorry server out");

        lab.nginx[0].restart().unwrap();
        assert!(
            rec.wait_for(rs(0), Some(2), within).is_some(),
            "{:?}",
            rec.weights()
        );
    });
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn detection_time() {
    const CYCLES: usize = 20;
    let (delay_loop, retry, dbr, connect_timeout) = (1.0, 1, 1.0, 1.0);
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = lab(1, tmp.path());
    let config = format!(
        "virtual_server 198.51.100.10 80 {{
    lb_algo rr
    lb_kind NAT
    delay_loop {delay_loop}
    real_server {} 80 {{
        inhibit_on_failure
        TCP_CHECK {{
            retry {retry}
            delay_before_retry {dbr}
            connect_timeout {connect_timeout}
            warmup 0
        }}
    }}
}}
",
        HealthLab::real_server(0)
    );
    let mut down = Vec::new();
    let mut back = Vec::new();
    let director = lab.director.name().to_string();
    with_engine(&director, &config, |rec| {
        for n in 0..CYCLES {
            // A kill at a different point of the check cycle each time: n/CYCLES of delay_loop
            // after the last check (the one that saw nginx back).
            std::thread::sleep(Duration::from_secs_f64(
                delay_loop * n as f64 / CYCLES as f64,
            ));
            let killed = Instant::now();
            lab.nginx[0].kill();
            let seen = rec
                .wait_for(rs(0), Some(0), Duration::from_secs(30))
                .expect("weight 0");
            down.push(seen - killed);
            let started = Instant::now();
            lab.nginx[0].restart().unwrap();
            let seen = rec
                .wait_for(rs(0), Some(1), Duration::from_secs(30))
                .expect("weight back");
            back.push(seen - started);
        }
    });
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (dm, dw) = stats(&mut down);
    let (bm, bw) = stats(&mut back);
    println!(
        "detection over {CYCLES} kills: median {dm:.2?}, worst {dw:.2?} (delay_loop * retry + connect_timeout = {:.1} s; \
         keepalived's own worst case for a refused connect: delay_loop + retry * delay_before_retry = {:.1} s)",
        delay_loop * f64::from(retry) + connect_timeout,
        delay_loop + f64::from(retry) * dbr
    );
    println!("recovery over {CYCLES} restarts: median {bm:.2?}, worst {bw:.2?} (one success: within delay_loop = {delay_loop:.1} s)");
}

/// The process's CPU time (user + system) so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage(2) fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs())
            + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn a_thousand_real_servers_all_come_up_and_cost_little() {
    const N: u16 = 1000;
    let tmp = tempfile::tempdir().unwrap();
    let lab = lab(1, tmp.path());
    // 1,000 real servers on one address (ports 10000..), every check to nginx's port 80;
    // alpha: each starts down and comes in at its first success.
    let mut config = String::from(
        "virtual_server 198.51.100.10 80 {\n lb_algo wlc\n lb_kind NAT\n delay_loop 1\n alpha\n",
    );
    for p in 0..N {
        config += &format!(
            " real_server {} {} {{ TCP_CHECK {{ connect_port 80\n connect_timeout 1 }} }}\n",
            HealthLab::real_server(0),
            10_000 + p
        );
    }
    config += "}\n";
    let cfg = conf::parse_str(&config, Path::new("thousand.conf")).unwrap();
    let rec = Recorder::default();
    let mut engine = Engine::new(&cfg, rec.clone());
    engine.install().unwrap();
    assert!(rec.weights().is_empty(), "alpha: none in before its check");
    let stop = AtomicBool::new(false);
    let director = lab.director.name().to_string();
    let (cpu, wall) = std::thread::scope(|s| {
        let runner = s.spawn(|| in_netns(&director, || engine.run(&stop, 64)));
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let deadline = t0 + Duration::from_secs(30);
        while rec.weights().len() < usize::from(N) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A few more rounds of steady checking.
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        runner.join().unwrap().unwrap();
        (cpu_time() - cpu0, t0.elapsed())
    });
    assert_eq!(
        rec.weights().len(),
        usize::from(N),
        "every real server came in"
    );
    let done = engine.completed();
    println!(
        "{N} real servers: {done} checks in {wall:.1?} ({:.0}/s), CPU {cpu:.2?} ({:.0} µs a check)",
        done as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / done as f64
    );
    assert!(done >= u64::from(N), "{done} checks");
}
