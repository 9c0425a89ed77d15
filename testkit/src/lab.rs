//! What the namespace lab tests share: the lab's lock, commands run with a deadline, and the
//! wrk keep-alive load with its per-server, per-second answers.
//!
//! The lab's namespace names are global (`rvs-cli`, `rvs-sw`, ...), so every test that builds a
//! lab with `scripts/lab.sh` holds [`lab_lock`]: a mutex within the test process and an flock on
//! `/run/rvs-lab.lock` across processes (other test binaries, other checkouts). The flock's
//! descriptor is close-on-exec, so the daemons a lab starts never hold it.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

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
}
