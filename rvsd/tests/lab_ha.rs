//! The two-director HA lab (`scripts/lab.sh ha-up`, docs/ha.md) and its failover harness.
//!
//! Two rvsd directors, rvs-dirA and rvs-dirB, each with its two net_af_xdp ports on the same
//! client segment and the same real-server segment (two bridges in rvs-sw), the same services,
//! and an rvs-healthd running VRRP (one instance: the VIP on the external port, the DIP on the
//! internal one; A preferred, preempt_delay) and setting the sync role (lvs_sync_daemon): the
//! master's rvsd sends its connections to the other (scripts/lib/ha-lab.sh, docs/ha.md).
//!
//! One bring-up for every scenario of this file: the first scenario brings the lab up (and
//! holds the lab's flock, testkit's `lab_flock`, until the process exits; a mutex keeps the
//! scenarios of this process one at a time), the others find it
//! up; each starts from `lab.sh ha-reset` (links up, A holding, both rvsd running), and the lab
//! is taken down when the test process exits (an `atexit` handler; a lab left by a killed run
//! is removed by the next `ha-up` or `up`).
//!
//! The failover harness ([`failover`]) runs long-lived paced downloads (content checked byte
//! for byte), a wrk keep-alive load and a UDP probe every 10 ms through the VIP, makes a
//! failover action on director A (`kill -9` of its rvsd, or all its links down), lets B take
//! over by VRRP, then brings A back (a new rvsd, links up) so that it takes the VIP back after
//! its preempt_delay, and reports failed requests, hung connections, downloads intact, and the
//! gaps in service the probe saw at the takeover and at the return.
//!
//! Needs what the lab of lab.rs needs (root, iproute2, ethtool, nginx with its stream module,
//! curl, hugepages: `scripts/setup.sh`) and wrk; `RVS_SKIP_LAB=1` skips it as there.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread;
use std::time::{Duration, Instant};
use testkit::daemon::{control_bin_beside, head_and_tail, rvsadm_beside};
use testkit::lab::{
    assert_lab_prerequisites, cmd, counter, lab_flock, lab_script_quiet, lab_sh, put_slow_download,
    run, udp_ask, unix_now, xorshift_bytes, LabFlock, Ran, WrkRun, KEEPALIVE_WRK_LUA,
    LAB_STATE_DIR,
};
use testkit::netns::run_in;

const VIP: &str = "198.51.100.1";
const RS: [&str; 2] = ["rs1", "rs2"];
const UDP_PORT: u16 = 9000;
const CLIENT_NS: &str = "rvs-cli";

/// The downloads' size: about 6 s each, as the lab's nginx paces /slow/ at 1 MB/s.
const DOWNLOAD_SIZE: usize = 6 << 20;

/// A director of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Director {
    A,
    B,
}

impl Director {
    fn name(self) -> &'static str {
        match self {
            Director::A => "A",
            Director::B => "B",
        }
    }

    fn socket(self) -> PathBuf {
        PathBuf::from(format!("/run/rvs/rvs-dir{}.sock", self.name()))
    }

    fn log(self) -> PathBuf {
        Path::new(LAB_STATE_DIR)
            .join(format!("dir{}", self.name()))
            .join("rvsd.log")
    }
}

fn rvsd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvsd"))
}

fn rvsadm() -> PathBuf {
    rvsadm_beside(&rvsd_bin())
}

/// `scripts/lab.sh ARGS` with this build's rvsd, rvsadm, rvsctl and rvs-healthd (no release
/// build).
fn lab_script(args: &[&str]) -> Ran {
    let mut c = cmd("bash");
    c.arg(lab_sh())
        .args(args)
        .env("RVSD", rvsd_bin())
        .env("RVSADM", rvsadm())
        .env("RVSCTL", control_bin_beside(&rvsd_bin(), "rvsctl"))
        .env(
            "RVS_HEALTHD",
            testkit::daemon::bin_beside(&rvsd_bin(), "health", "rvs-healthd"),
        );
    run(c, Duration::from_secs(180)).unwrap_or_else(|e| panic!("scripts/lab.sh {args:?}: {e}"))
}

fn lab_script_ok(args: &[&str]) -> Ran {
    let r = lab_script(args);
    assert!(
        r.status.success(),
        "{}\n{}",
        r.describe(&format!("scripts/lab.sh {}", args.join(" "))),
        directors_logs()
    );
    r
}

fn directors_logs() -> String {
    [Director::A, Director::B]
        .iter()
        .map(|d| {
            format!(
                "--- rvsd {} log ---\n{}\n--- rvs-healthd {} log ---\n{}\n",
                d.name(),
                head_and_tail(&d.log(), 10, 30),
                d.name(),
                head_and_tail(&d.log().with_file_name("healthd.log"), 5, 20)
            )
        })
        .collect()
}

/// Whether director `d`'s rvsd holds the VIP now (its VRRP instance is MASTER).
fn holds_vip(d: Director) -> bool {
    let mut c = cmd(control_bin_beside(&rvsd_bin(), "rvsctl"));
    c.arg("vaddr").env("RVS_SOCKET", d.socket());
    run(c, Duration::from_secs(10)).is_ok_and(|r| {
        r.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{VIP}/")) && l.ends_with(" held"))
    })
}

/// Waits up to `within` until `d` holds the VIP; when it did.
fn wait_holds(d: Director, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if holds_vip(d) {
            return Some(Instant::now());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The HA lab, up for the whole test process once a scenario asked for it.
struct HaLab {
    _lock: LabFlock,
    tmp: PathBuf,
}

static HA_LAB: Mutex<Option<HaLab>> = Mutex::new(None);

extern "C" fn ha_lab_down() {
    // Only a lab this process brought up (and whose lock it still holds): after a failed
    // ha-up the lock is gone, and the lab may be another process's by now.
    let ours = HA_LAB.lock().unwrap_or_else(|e| e.into_inner()).is_some();
    if !ours {
        return;
    }
    lab_script_quiet("down");
}

/// The start of every scenario: the HA lab up (brought up by the first scenario), reset to
/// both directors running with A holding the VIP and the DIP. The guard keeps the scenarios of
/// this process one at a time.
fn ha_lab(test: &str) -> MutexGuard<'static, Option<HaLab>> {
    let mut guard = HA_LAB.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        let lock = lab_flock();
        assert_lab_prerequisites(test, &["wrk"]);
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| {
            // SAFETY: registers a plain function; it runs once, at process exit.
            unsafe { libc::atexit(ha_lab_down) };
        });
        lab_script_ok(&["ha-up"]);
        let tmp = std::env::temp_dir().join(format!("rvs-lab-ha-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("create the HA lab's temp folder");
        // The same download on every real server (whichever answers, the bytes are known).
        for rs in RS {
            put_slow_download(rs, &download_content());
        }
        *guard = Some(HaLab { _lock: lock, tmp });
    }
    lab_script_ok(&["ha-reset"]);
    guard
}

/// The downloads' bytes: xorshift from a fixed seed, so that a byte out of place shows.
fn download_content() -> Vec<u8> {
    xorshift_bytes(0x9e37_79b9_7f4a_7c15, DOWNLOAD_SIZE)
}

/// rvsadm against director `d`'s rvsd.
fn adm(d: Director, args: &[&str]) -> String {
    let mut c = cmd(rvsadm());
    c.args(args).env("RVS_SOCKET", d.socket());
    let r = run(c, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("rvsadm {} (director {}): {e}", args.join(" "), d.name()));
    assert!(
        r.status.success(),
        "{}\n{}",
        r.describe(&format!(
            "rvsadm {} (director {})",
            args.join(" "),
            d.name()
        )),
        directors_logs()
    );
    r.stdout
}

/// One HTTP request from the client namespace (a new connection); the body, trimmed.
fn curl_vip() -> Result<String, String> {
    let mut c = cmd("ip");
    c.args(["netns", "exec", CLIENT_NS, "curl", "-sS", "--max-time", "5"])
        .arg(format!("http://{VIP}/"));
    let r = run(c, Duration::from_secs(15)).map_err(|e| e.to_string())?;
    if r.status.success() {
        Ok(r.stdout.trim().to_owned())
    } else {
        Err(format!("{}: {}", r.status, r.stderr.trim()))
    }
}

/// One UDP exchange with the VIP from the client namespace (a new connection for the
/// director): the answer, trimmed, and where it came from.
fn udp_vip() -> std::io::Result<(String, SocketAddr)> {
    udp_ask(
        CLIENT_NS,
        format!("{VIP}:{UDP_PORT}").parse().expect("VIP:port"),
    )
}

// ---------------------------------------------------------------------------------------------
// The failover harness

/// wrk's keep-alive connections in a failover.
const WRK_CONNECTIONS: u64 = 8;

/// wrk's timeout per request: longer than a takeover (Master_Down_Interval, 3.6 s), which a
/// request in flight waits out; a connection that gets no answer for this long has hung.
const WRK_TIMEOUT: Duration = Duration::from_secs(10);

/// What is done to director A while the load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// `kill -9` of its rvsd.
    Kill9,
    /// All its links set down (`ip link set down` of both ports in rvs-dirA).
    LinksDown,
}

/// A UDP datagram to the VIP every 10 ms from one socket (one connection), and when each
/// answer came.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<std::io::Result<ProbeRun>>>,
}

#[derive(Debug, Default)]
struct ProbeRun {
    sent: u64,
    replies: Vec<Instant>,
}

impl Probe {
    fn start() -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let dst: SocketAddr = format!("{VIP}:{UDP_PORT}").parse().expect("VIP:port");
        let thread = thread::spawn(move || -> std::io::Result<ProbeRun> {
            run_in(CLIENT_NS, || {
                let sock = UdpSocket::bind("0.0.0.0:0")?;
                sock.set_read_timeout(Some(Duration::from_millis(2)))?;
                let mut out = ProbeRun::default();
                let mut buf = [0u8; 1500];
                let mut next = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    if Instant::now() >= next {
                        // A send can fail while the neighbour is unresolved: the probe goes on.
                        let _ = sock.send_to(b"probe\n", dst);
                        out.sent += 1;
                        next += Duration::from_millis(10);
                    }
                    if let Ok((_, from)) = sock.recv_from(&mut buf) {
                        if from == dst {
                            out.replies.push(Instant::now());
                        }
                    }
                }
                Ok(out)
            })
        });
        Probe {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> ProbeRun {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("probe running")
            .join()
            .expect("probe thread")
            .expect("probe socket")
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A child process killed (by PID) if the scenario ends before it does.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// How one download ended.
#[derive(Debug)]
enum Download {
    /// Every byte, in order.
    Intact,
    /// curl succeeded, but the file differs (size, first differing byte).
    Corrupt { size: usize, first_diff: usize },
    /// curl's exit status (28: hung until --max-time) and what it had by then.
    Failed { curl_exit: i32, size: usize },
}

impl Download {
    fn text(&self) -> String {
        match self {
            Download::Intact => "intact".into(),
            Download::Corrupt { size, first_diff } => {
                format!("CORRUPT: {size} bytes, first wrong byte at {first_diff}")
            }
            Download::Failed { curl_exit, size } => {
                format!("FAILED: curl exit {curl_exit} after {size} of {DOWNLOAD_SIZE} bytes")
            }
        }
    }
}

/// What a failover did to the traffic through the VIP.
#[derive(Debug)]
struct Report {
    action: Action,
    downloads: Vec<Download>,
    wrk: WrkRun,
    /// wrk's answers in each second of its run (unix seconds from its start on).
    wrk_seconds: Vec<u64>,
    /// The index in `wrk_seconds` of the second of the action.
    action_second: usize,
    probe_sent: u64,
    probe_answered: u64,
    /// Answers the probe had before the action.
    answered_before: u64,
    /// From the action to the probe's first answer after it; None: none came.
    takeover_time: Option<Duration>,
    /// The longest time without an answer, from the last before the action to the first after
    /// it (or to the end of the run).
    service_gap: Duration,
    /// From the action to director B holding the VIP (rvsctl vaddr); None: it never did.
    b_holds: Option<Duration>,
    /// From the action to director A holding the VIP again after its return; None: never.
    a_back: Option<Duration>,
    /// The longest time without an answer from A's return on (its rvsd restarted, or its
    /// links up again) to the end of the run.
    return_gap: Duration,
}

impl Report {
    /// Requests that failed: wrk's errors and non-200 answers, and downloads that did not end
    /// whole.
    fn failed_requests(&self) -> u64 {
        self.wrk.failed()
            + self.wrk.bad_answers()
            + self
                .downloads
                .iter()
                .filter(|d| !matches!(d, Download::Intact))
                .count() as u64
    }

    /// Whole seconds from [`WRK_TIMEOUT`] after the action on, before wrk's last (partial)
    /// one, in which the keep-alive load got no answer at all: its connections hung (wrk
    /// counts a timeout only for some of them). Before that, a request in flight at the
    /// failure waits out the takeover and TCP's retransmission backoff (the retransmission
    /// after a 3.4 s gap comes about 6.2 s after the loss), and wrk counts one that waits past
    /// its timeout.
    fn silent_seconds(&self) -> usize {
        let end = self.wrk_seconds.len().saturating_sub(1);
        let from = self.action_second + 1 + WRK_TIMEOUT.as_secs() as usize;
        self.wrk_seconds
            .get(from..end)
            .map_or(0, |s| s.iter().filter(|n| **n == 0).count())
    }

    /// Connections that hung rather than failed: wrk's timeouts, every wrk connection when the
    /// load went silent, and downloads ended by --max-time (curl exit 28).
    fn hung_connections(&self) -> u64 {
        let wrk_hung = if self.silent_seconds() > 0 {
            WRK_CONNECTIONS.max(self.wrk.errors[4])
        } else {
            self.wrk.errors[4]
        };
        wrk_hung
            + self
                .downloads
                .iter()
                .filter(|d| matches!(d, Download::Failed { curl_exit: 28, .. }))
                .count() as u64
    }

    fn intact_downloads(&self) -> usize {
        self.downloads
            .iter()
            .filter(|d| matches!(d, Download::Intact))
            .count()
    }

    fn text(&self) -> String {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        let mut s = format!(
            "failover report: {:?} of director A, takeover by VRRP, then A back\n",
            self.action
        );
        s += &format!(
            "  failed requests {}, hung connections {}\n",
            self.failed_requests(),
            self.hung_connections()
        );
        s += &format!(
            "  downloads: {} of {} intact\n",
            self.intact_downloads(),
            self.downloads.len()
        );
        for (i, d) in self.downloads.iter().enumerate() {
            s += &format!("    download {}: {}\n", i + 1, d.text());
        }
        let e = self.wrk.errors;
        s += &format!(
            "  wrk keep-alive: {} requests, errors connect {} read {} write {} status {} \
             timeout {}, non-200 answers {}\n",
            self.wrk.requests,
            e[0],
            e[1],
            e[2],
            e[3],
            e[4],
            self.wrk.bad_answers()
        );
        let per_second: Vec<String> = self
            .wrk_seconds
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == self.action_second {
                    format!("[action] {n}")
                } else {
                    n.to_string()
                }
            })
            .collect();
        s += &format!(
            "  wrk answers per second: {}; silent seconds from {} s after the action: {}\n",
            per_second.join(" "),
            WRK_TIMEOUT.as_secs(),
            self.silent_seconds()
        );
        s += &format!(
            "  UDP probe (every 10 ms): {} sent, {} answered ({} before the action)\n",
            self.probe_sent, self.probe_answered, self.answered_before
        );
        s += &match self.takeover_time {
            Some(t) => format!(
                "  takeover: first answer {} after the action; gap in service {}\n",
                ms(t),
                ms(self.service_gap)
            ),
            None => format!(
                "  takeover: none (no answer after the action; gap at least {})\n",
                ms(self.service_gap)
            ),
        };
        let opt = |d: Option<Duration>| d.map_or("never".to_string(), ms);
        s += &format!(
            "  VRRP: B held the VIP {} after the action; A held it again {} after the action; \
             longest gap in service from A's return on {}\n",
            opt(self.b_holds),
            opt(self.a_back),
            ms(self.return_gap)
        );
        s
    }
}

/// Paced downloads and a keep-alive load through the VIP, `action` on director A two seconds
/// in, B's takeover by VRRP, A's return (a new rvsd after a kill, its links up after they went
/// down) once B holds the VIP, and A holding it again after its preempt_delay; and what it all
/// cost. The load lasts `secs` seconds; a download gets `secs` + 4 s at most.
fn failover(lab: &HaLab, action: Action, secs: u64) -> Report {
    let expected = download_content();
    let downloads: Vec<(PathBuf, Reaped)> = (0..3)
        .map(|i| {
            let out = lab.tmp.join(format!("download-{i}.bin"));
            let _ = fs::remove_file(&out);
            let child = cmd("ip")
                .args(["netns", "exec", CLIENT_NS, "curl", "-sS", "--max-time"])
                .arg((secs + 4).to_string())
                .arg("-o")
                .arg(&out)
                .arg(format!("http://{VIP}/slow/big.bin"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a download");
            (out, Reaped(child))
        })
        .collect();

    let script = lab.tmp.join("keepalive.lua");
    fs::write(&script, KEEPALIVE_WRK_LUA).expect("write the wrk script");
    let mut c = cmd("ip");
    c.args(["netns", "exec", CLIENT_NS, "wrk", "-t2"])
        .arg(format!("-c{WRK_CONNECTIONS}"))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg(format!("{}s", WRK_TIMEOUT.as_secs()))
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{VIP}/"));
    let wrk_start = unix_now();
    let wrk = thread::spawn(move || run(c, Duration::from_secs(secs + 30)));
    let probe = Probe::start();

    thread::sleep(Duration::from_secs(2));
    match action {
        Action::Kill9 => lab_script_ok(&["ha-kill", "A"]),
        Action::LinksDown => lab_script_ok(&["ha-links", "A", "down"]),
    };
    // Done (the script waits for rvsd's death): no answer after this came through A.
    let acted = Instant::now();
    let acted_unix = unix_now();
    let b_holds = wait_holds(Director::B, Duration::from_secs(10)).map(|t| t - acted);
    // A comes back: a new rvsd (and rvs-healthd), or its links up again; as a BACKUP it gets
    // B's connections (the sync refresh) before its preempt_delay lets it take them back.
    let returned = Instant::now();
    match action {
        Action::Kill9 => lab_script_ok(&["ha-start", "A"]),
        Action::LinksDown => {
            // Its rvsd went on alone, as master of nothing: restarted, as after a crash.
            lab_script_ok(&["ha-stop", "A"]);
            lab_script_ok(&["ha-links", "A", "up"]);
            lab_script_ok(&["ha-start", "A"])
        }
    };
    let a_back = wait_holds(Director::A, Duration::from_secs(secs)).map(|t| t - acted);

    let wrk = wrk.join().expect("wrk thread").expect("run wrk");
    let wrk_end = unix_now();
    let wrk = WrkRun::parse(&wrk.stdout).unwrap_or_else(|| panic!("{}", wrk.describe("wrk")));
    let downloads = downloads
        .into_iter()
        .map(|(path, mut child)| {
            let st = child.0.wait().expect("wait for a download");
            let got = fs::read(&path).unwrap_or_default();
            match st.code() {
                Some(0) if got == expected => Download::Intact,
                Some(0) => Download::Corrupt {
                    size: got.len(),
                    first_diff: got
                        .iter()
                        .zip(&expected)
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.len().min(expected.len())),
                },
                code => Download::Failed {
                    curl_exit: code.unwrap_or(-1),
                    size: got.len(),
                },
            }
        })
        .collect();
    let end = Instant::now();
    let run = probe.finish();

    let before = run.replies.iter().filter(|t| **t <= acted).count();
    let last_before = run.replies[..before].last().copied().unwrap_or(acted);
    let first_after = run.replies.get(before).copied();
    let after_return: Vec<Instant> = run
        .replies
        .iter()
        .copied()
        .filter(|t| *t >= returned)
        .collect();
    let return_gap = after_return
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(after_return.last().map(|t| end - *t))
        .max()
        .unwrap_or(end - returned);
    Report {
        action,
        downloads,
        wrk: wrk.clone(),
        probe_sent: run.sent,
        probe_answered: run.replies.len() as u64,
        answered_before: before as u64,
        wrk_seconds: (wrk_start..=wrk_end)
            .map(|sec| wrk.answers.iter().filter(|a| a.1 == sec).map(|a| a.2).sum())
            .collect(),
        action_second: (acted_unix - wrk_start) as usize,
        takeover_time: first_after.map(|t| t - acted),
        service_gap: first_after.unwrap_or(end) - last_before,
        b_holds,
        a_back,
        return_gap,
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Both directors up, director A the VRRP master: HTTP and UDP through the VIP go round robin
/// over both real servers through A, with the VIP as the answers' source; B has the same
/// services but answers no ARP for the VIP, carries nothing, and has A's connections (sync).
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn ha_lab_carries_traffic_through_a_while_b_idles() {
    let _lab = ha_lab("ha_lab_carries_traffic_through_a_while_b_idles");
    assert!(holds_vip(Director::A) && !holds_vip(Director::B));
    let before_a = adm(Director::A, &["-L", "--counters"]);
    let before_b = adm(Director::B, &["-L", "--counters"]);
    let http: Vec<String> = (0..4)
        .map(|i| curl_vip().unwrap_or_else(|e| panic!("curl {} through the VIP: {e}", i + 1)))
        .collect();
    assert_eq!(http, ["rs1", "rs2", "rs1", "rs2"], "HTTP round robin via A");
    let vip: SocketAddr = format!("{VIP}:{UDP_PORT}").parse().expect("VIP:port");
    let udp: Vec<String> = (0..4)
        .map(|i| {
            let (answer, from) =
                udp_vip().unwrap_or_else(|e| panic!("UDP {} through the VIP: {e}", i + 1));
            assert_eq!(from, vip, "the UDP answer must come from the VIP");
            answer
        })
        .collect();
    assert_eq!(udp, ["rs1", "rs2", "rs1", "rs2"], "UDP round robin via A");

    let a = adm(Director::A, &["-L", "--counters"]);
    assert!(
        counter(&a, "conns_created") >= counter(&before_a, "conns_created") + 8,
        "A made the 8 connections:\n{a}"
    );
    let b = adm(Director::B, &["-L", "--counters"]);
    for name in ["conns_created", "dnat", "snat"] {
        assert_eq!(
            counter(&b, name),
            counter(&before_b, name),
            "B carries nothing ({name}):\n{b}"
        );
    }
    // A's connections reach B: the UDP ones at once, the TCP ones as they close.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = String::new();
    while Instant::now() < deadline {
        listed = adm(Director::B, &["-L", "-c", "-n"]);
        if listed.matches(&format!("{VIP}:{UDP_PORT}")).count() >= 4
            && listed.matches(&format!("{VIP}:80 ")).count() >= 4
        {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(
        listed.matches(&format!("{VIP}:{UDP_PORT}")).count() >= 4
            && listed.matches(&format!("{VIP}:80 ")).count() >= 4,
        "B has A's connections by sync:\n{listed}\nB's counters:\n{b}"
    );
    assert_eq!(
        adm(Director::B, &["-L", "--daemon"]),
        "backup sync daemon (mcast=rvs-int0, syncid=1)\n"
    );
    let ports = {
        let mut c = cmd(control_bin_beside(&rvsd_bin(), "rvsctl"));
        c.arg("ports").env("RVS_SOCKET", Director::B.socket());
        run(c, Duration::from_secs(20)).expect("rvsctl ports")
    };
    assert!(
        ports.status.success() && ports.stdout.matches("link up").count() == 2,
        "both of B's ports are up: {}",
        ports.describe("rvsctl ports (director B)")
    );
}

/// issue 14's acceptance test for a crash: kill -9 of the master's rvsd under load; the
/// backup takes over (VRRP's Master_Down_Interval) and nothing is lost; then the old master
/// comes back, takes the VIP back after its preempt_delay, and again nothing is lost.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn failover_kill9_loses_no_connection() {
    zero_loss_failover("failover_kill9_loses_no_connection", Action::Kill9);
}

/// As [`failover_kill9_loses_no_connection`], with all of the master's links down.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn failover_links_down_loses_no_connection() {
    zero_loss_failover("failover_links_down_loses_no_connection", Action::LinksDown);
}

/// VRRP's advert interval and B's priority in the HA lab's keepalived.conf.
const ADVERT_INTERVAL: Duration = Duration::from_secs(1);
const B_PRIORITY: u32 = 100;

/// RFC 5798's Master_Down_Interval for B: three advert intervals and B's skew time.
fn master_down_interval() -> Duration {
    3 * ADVERT_INTERVAL + ADVERT_INTERVAL * (256 - B_PRIORITY) / 256
}

fn zero_loss_failover(test: &str, action: Action) {
    let lab = ha_lab(test);
    let report = failover(lab.as_ref().expect("HA lab up"), action, 30);
    println!("{}", report.text());
    let logs = || format!("{}\n{}", report.text(), directors_logs());
    assert!(report.answered_before > 50, "{}", logs());
    assert_eq!(report.failed_requests(), 0, "{}", logs());
    assert_eq!(report.hung_connections(), 0, "{}", logs());
    assert_eq!(report.intact_downloads(), 3, "{}", logs());
    let b_holds = report
        .b_holds
        .unwrap_or_else(|| panic!("B never took over\n{}", logs()));
    // A silent master is noticed after Master_Down_Interval; the second is for the action's
    // own time (the kill and its wait, the links going down) and the polling.
    assert!(
        b_holds <= master_down_interval() + Duration::from_secs(1),
        "B took over within Master_Down_Interval\n{}",
        logs()
    );
    assert!(
        report.a_back.is_some(),
        "A never took the VIP back\n{}",
        logs()
    );
    assert!(report.takeover_time.is_some(), "{}", logs());
}
