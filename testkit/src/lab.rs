//! What the namespace lab tests share: the lab's lock and prerequisites, `scripts/lab.sh`,
//! commands run with a deadline, HTTP (curl), UDP exchanges, ping and the kernel's IPv6
//! counters from inside a namespace, for IPv4 and IPv6 alike, rvsadm's counters, and the wrk
//! keep-alive load with its per-server, per-second answers.
//!
//! The lab's namespace names are global (`rvs-cli`, `rvs-sw`, ...), so every test that builds a
//! lab with `scripts/lab.sh` holds [`lab_lock`]: a mutex within the test process and an flock on
//! `/run/rvs-lab.lock` across processes (other test binaries, other checkouts). The flock's
//! descriptor is close-on-exec, so the daemons a lab starts never hold it.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// scripts/lab.sh's state folder (its RVS_LAB_DIR): pid files, logs, each real server's nginx
/// folder (`rsN/www` its document root).
pub const LAB_STATE_DIR: &str = "/run/rvs-lab";

/// The flock every lab user takes (scripts run by hand too: `flock -o /run/rvs-lab.lock ...`).
pub const LAB_LOCK_FILE: &str = "/run/rvs-lab.lock";

static LAB_LOCK: Mutex<()> = Mutex::new(());

/// Held while a test owns the lab: within this process (a mutex) and across processes (the
/// flock on [`LAB_LOCK_FILE`]); both are released when it is dropped.
pub struct LabLock {
    _flock: LabFlock,
    _guard: MutexGuard<'static, ()>,
}

/// Waits for the lab to be free and takes it.
pub fn lab_lock() -> LabLock {
    let guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    LabLock {
        _flock: lab_flock(),
        _guard: guard,
    }
}

/// The flock on [`LAB_LOCK_FILE`] alone, for a lab that outlives one test (kept in a static,
/// which a mutex guard cannot be): the holder keeps its own tests one at a time.
pub struct LabFlock {
    _file: Option<fs::File>,
}

/// Waits for no other process to hold the lab and takes it.
pub fn lab_flock() -> LabFlock {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LAB_LOCK_FILE)
        .ok();
    if let Some(f) = &file {
        // SAFETY: flock on an open descriptor we own; released when the file is closed.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    }
    LabFlock { _file: file }
}

/// The tools every lab needs (scripts/lab.sh and its nginx real servers).
pub const LAB_TOOLS: [&str; 7] = ["bash", "ip", "ethtool", "ss", "nginx", "curl", "timeout"];

/// The lab's prerequisites for test `test`: root, [`LAB_TOOLS`] and `extra_tools`, and
/// `scripts/lab.sh`. A missing one is a panic, so that CI cannot pass without running the lab.
pub fn assert_lab_prerequisites(test: &str, extra_tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{test}: the lab needs root (network namespaces, af_packet, AF_XDP): run `sudo \
         scripts/test.sh`, or skip it explicitly with RVS_SKIP_LAB=1 cargo test"
    );
    let mut missing: Vec<&str> = LAB_TOOLS
        .into_iter()
        .chain(extra_tools.iter().copied())
        .filter(|t| find_tool(t).is_none())
        .collect();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "{test}: missing tools {missing:?}: run `sudo scripts/setup.sh` (or RVS_SKIP_LAB=1 to skip)"
    );
    assert!(
        lab_sh().is_file(),
        "{test}: {} is missing",
        lab_sh().display()
    );
}

/// `scripts/lab.sh`, which builds and runs the labs.
pub fn lab_sh() -> PathBuf {
    crate::daemon::workspace_root().join("scripts/lab.sh")
}

/// `scripts/lab.sh ARG` for Drop guards and exit handlers: never panics, reports a failure on
/// stderr.
pub fn lab_script_quiet(arg: &str) -> Option<Ran> {
    let mut c = cmd("bash");
    c.arg(lab_sh()).arg(arg);
    match run(c, Duration::from_secs(120)) {
        Ok(r) => {
            if !r.status.success() {
                eprintln!("{}", r.describe(&format!("scripts/lab.sh {arg}")));
            }
            Some(r)
        }
        Err(e) => {
            eprintln!("scripts/lab.sh {arg}: {e}");
            None
        }
    }
}

/// PATH for the commands the lab runs: as given, plus the sbin folders (ip, nginx live there).
pub fn search_path() -> String {
    let mut p = std::env::var("PATH").unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/local/bin",
        "/usr/bin",
        "/bin",
    ] {
        if !p.split(':').any(|x| x == d) {
            if !p.is_empty() {
                p.push(':');
            }
            p.push_str(d);
        }
    }
    p
}

/// Where `name` is on [`search_path`], if anywhere.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    search_path()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A command with [`search_path`] as its PATH.
pub fn cmd(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", search_path());
    c
}

/// What a finished command left: exit status, stdout, stderr.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// The status and both outputs, for an assertion's message.
    pub fn describe(&self, what: &str) -> String {
        format!(
            "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

static RUN_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs a command with its output in files (daemons it starts cannot hold a pipe of ours open)
/// and a deadline after which it is killed by PID.
pub fn run(mut c: Command, timeout: Duration) -> io::Result<Ran> {
    let dir = std::env::temp_dir();
    let n = RUN_SEQ.fetch_add(1, Ordering::Relaxed);
    let out_path = dir.join(format!("rvs-lab-run-{}-{n}.out", std::process::id()));
    let err_path = dir.join(format!("rvs-lab-run-{}-{n}.err", std::process::id()));
    let mut child = c
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path)?)
        .stderr(fs::File::create(&err_path)?)
        .spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let st = child.wait()?;
            let _ = fs::remove_file(&out_path);
            let _ = fs::remove_file(&err_path);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{c:?} still running after {timeout:?}; killed ({st})"),
            ));
        }
        thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(p) {
            let _ = f.read_to_string(&mut s);
        }
        let _ = fs::remove_file(p);
        s
    };
    Ok(Ran {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    })
}

/// One UDP exchange from inside namespace `ns`, from a fresh socket (a new source port, so a
/// new connection for the director): send, wait up to 2 s for the answer, up to 3 tries on the
/// same socket. Returns the answer (trimmed) and the address it came from. IPv4 or IPv6, as
/// `dst` is.
pub fn udp_ask(ns: &str, dst: SocketAddr) -> io::Result<(String, SocketAddr)> {
    udp_exchange(ns, dst, b"ping\n")
}

/// As [`udp_ask`], sending `payload`: one larger than the path's MTU leaves the client's kernel
/// in fragments (IPv4 with DF clear, IPv6 fragmented by its source as always).
pub fn udp_exchange(ns: &str, dst: SocketAddr, payload: &[u8]) -> io::Result<(String, SocketAddr)> {
    crate::netns::run_in(ns, || -> io::Result<(String, SocketAddr)> {
        let any: IpAddr = match dst {
            SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
            SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
        };
        let sock = UdpSocket::bind(SocketAddr::new(any, 0))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 1500];
        let mut last_err = None;
        for _ in 0..3 {
            sock.send_to(payload, dst)?;
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    return Ok((String::from_utf8_lossy(&buf[..n]).trim().to_owned(), from))
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no answer")))
    })
}

/// `http://ADDR:PORT/PATH` with an IPv6 address in brackets (`path` starts with `/`).
pub fn http_url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// `curl -gsS --max-time SECS URL` from inside namespace `ns` (`-g`: brackets of an IPv6
/// address taken literally), with a deadline of `secs` + 10 s.
pub fn curl_in(ns: &str, url: &str, secs: u64) -> io::Result<Ran> {
    let mut c = cmd("ip");
    c.args(["netns", "exec", ns, "curl", "-gsS", "--max-time"])
        .arg(secs.to_string())
        .arg(url);
    run(c, Duration::from_secs(secs + 10))
}

/// `ping -n -c COUNT -i 0.2 -W 2 ADDR` from inside namespace `ns` (ping takes an IPv6 address
/// as ICMPv6 by itself).
pub fn ping_in(ns: &str, addr: IpAddr, count: u32) -> io::Result<Ran> {
    let mut c = cmd("ip");
    c.args(["netns", "exec", ns, "ping", "-n", "-c"])
        .arg(count.to_string())
        .args(["-i", "0.2", "-W", "2"])
        .arg(addr.to_string());
    run(c, Duration::from_secs(u64::from(count) + 10))
}

/// The replies counted in ping's summary ("3 packets transmitted, 3 received, ..."), if any.
pub fn ping_received(stdout: &str) -> Option<u32> {
    stdout.lines().find_map(|l| {
        let (_, rest) = l.split_once(" packets transmitted, ")?;
        rest.split_once(" received")?.0.trim().parse().ok()
    })
}

/// One of the kernel's IPv6 counters in namespace `ns` (`/proc/net/snmp6`: `Ip6FragCreates`,
/// `Ip6ReasmOKs`, `Icmp6InEchoReplies`, ...); None when there is no such line.
pub fn ip6_counter(ns: &str, name: &str) -> Option<u64> {
    // /proc/self/net follows the thread group leader's namespace; this thread's is
    // /proc/thread-self/net.
    let text = crate::netns::run_in(ns, || fs::read_to_string("/proc/thread-self/net/snmp6"));
    snmp6_value(&text.ok()?, name)
}

fn snmp6_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(char::is_whitespace)?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// A counter of `rvsadm -L --counters` ("name value" lines, every counter listed); a panic,
/// with the listing, when it is not there.
pub fn counter(listing: &str, name: &str) -> u64 {
    listing
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(char::is_whitespace)?;
            (n == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no counter {name} in\n{listing}"))
}

/// `len` bytes of xorshift from `seed`: known content in which a byte out of place shows.
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Puts `content` at `/slow/big.bin` on lab real server `rs` ("rs1", ...), which its nginx
/// paces at 1 MB/s.
pub fn put_slow_download(rs: &str, content: &[u8]) {
    let dir = Path::new(LAB_STATE_DIR).join(rs).join("www/slow");
    fs::create_dir_all(&dir).expect("create www/slow");
    fs::write(dir.join("big.bin"), content).expect("write the download");
}

/// Now in unix seconds (the seconds of [`WrkRun::answers`]).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// wrk's script: each connection sends a request every 10 ms (so that a connection lives the
/// whole run: nginx closes one after 1000 requests); answers are counted per real server (the
/// body, "rsN") and second (`os.time`), so a test can tell which server answered after a
/// change; at the end, the answers, wrk's error counts and its request count, one `LAB` line
/// each ([`WrkRun::parse`]).
pub const KEEPALIVE_WRK_LUA: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) answers = {} end
function delay() return 10 end
function response(status, headers, body)
    local s = (status == 200 and body and body:match("^(rs%d+)")) or ("bad-" .. tostring(status))
    local k = s .. "@" .. os.time()
    answers[k] = (answers[k] or 0) + 1
end
function done(summary, latency, requests)
    local all = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("answers") or {}) do all[k] = (all[k] or 0) + v end
    end
    for k, v in pairs(all) do
        local s, sec = k:match("^(.-)@(%d+)$")
        io.write(string.format("LAB answers %s %s %d\n", s, sec, v))
    end
    local e = summary.errors
    io.write(string.format("LAB errors %d %d %d %d %d\n",
        e.connect, e.read, e.write, e.status, e.timeout))
    io.write(string.format("LAB requests %d\n", summary.requests))
end
"#;

/// What one wrk run with [`KEEPALIVE_WRK_LUA`] reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WrkRun {
    /// (server, unix second, answers); the server is "bad-STATUS" for an answer that was not
    /// a 200 from a real server.
    pub answers: Vec<(String, u64, u64)>,
    /// wrk's connect, read, write, status and timeout errors.
    pub errors: [u64; 5],
    pub requests: u64,
}

impl WrkRun {
    /// Reads wrk's `LAB` lines; None when there are none (wrk did not get to its `done`).
    pub fn parse(stdout: &str) -> Option<WrkRun> {
        let mut out = WrkRun::default();
        let mut seen = false;
        for line in stdout.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            match f.get(..2) {
                Some(["LAB", "answers"]) => out.answers.push((
                    f.get(2).map_or_else(String::new, |s| s.to_string()),
                    num(3).unwrap_or(0),
                    num(4).unwrap_or(0),
                )),
                Some(["LAB", "errors"]) => {
                    for (i, e) in out.errors.iter_mut().enumerate() {
                        *e = num(2 + i).unwrap_or(u64::MAX);
                    }
                }
                Some(["LAB", "requests"]) => {
                    out.requests = num(2).unwrap_or(0);
                    seen = true;
                }
                _ => {}
            }
        }
        seen.then_some(out)
    }

    /// Answers of `server` in the seconds from `from` on.
    pub fn answers_from(&self, server: &str, from: u64) -> u64 {
        self.answers
            .iter()
            .filter(|(s, sec, _)| s == server && *sec >= from)
            .map(|a| a.2)
            .sum()
    }

    /// Every wrk error (connect, read, write, status, timeout) together.
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Answers that were not a 200 from a real server.
    pub fn bad_answers(&self) -> u64 {
        self.answers
            .iter()
            .filter(|(s, _, _)| s.starts_with("bad-"))
            .map(|a| a.2)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_lab_lines_are_read_and_a_run_without_them_is_none() {
        let out = "Running 5s test\nLAB answers rs1 100 7\nLAB answers bad-502 101 2\n\
                   LAB errors 1 2 0 0 3\nLAB requests 9\n";
        let r = WrkRun::parse(out).expect("LAB lines");
        assert_eq!(r.requests, 9);
        assert_eq!(r.errors, [1, 2, 0, 0, 3]);
        assert_eq!(r.failed(), 6);
        assert_eq!(r.bad_answers(), 2);
        assert_eq!(r.answers_from("rs1", 100), 7);
        assert_eq!(r.answers_from("rs1", 101), 0);
        assert_eq!(WrkRun::parse("wrk: connection refused\n"), None);
    }

    #[test]
    fn xorshift_bytes_are_a_fixed_sequence() {
        let a = xorshift_bytes(0x9e37_79b9_7f4a_7c15, 64);
        assert_eq!(a, xorshift_bytes(0x9e37_79b9_7f4a_7c15, 64));
        assert_ne!(a, xorshift_bytes(1, 64));
        assert_eq!(&xorshift_bytes(0x9e37_79b9_7f4a_7c15, 8)[..], &a[..8]);
    }

    #[test]
    fn urls_bracket_ipv6_and_ping_and_snmp6_are_read() {
        let v6: SocketAddr = "[2001:db8:100::1]:80".parse().unwrap();
        assert_eq!(http_url(v6, "/"), "http://[2001:db8:100::1]:80/");
        let v4: SocketAddr = "198.51.100.1:80".parse().unwrap();
        assert_eq!(http_url(v4, "/x"), "http://198.51.100.1:80/x");
        let ping = "PING 2001:db8:100::1 (2001:db8:100::1) 56 data bytes\n\n--- 2001:db8:100::1 \
                    ping statistics ---\n3 packets transmitted, 2 received, 33.3333% packet loss\n";
        assert_eq!(ping_received(ping), Some(2));
        assert_eq!(
            ping_received("ping: connect: Network is unreachable\n"),
            None
        );
        let snmp6 = "Ip6InReceives                   \t12\nIp6FragCreates                  \t3\n";
        assert_eq!(snmp6_value(snmp6, "Ip6FragCreates"), Some(3));
        assert_eq!(snmp6_value(snmp6, "Ip6Frag"), None);
    }

    #[test]
    fn counter_reads_its_own_line_only() {
        let listing = "to_kernel_bytes 900\nto_kernel 7\ndrop.dest_removed 2\n";
        assert_eq!(counter(listing, "to_kernel"), 7);
        assert_eq!(counter(listing, "drop.dest_removed"), 2);
    }
}
