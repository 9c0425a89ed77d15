//! The namespace lab test: rvsd as an LVS-NAT director between a client and two nginx real
//! servers, configured with rvsadm exactly as the classic ipvsadm walk-through does.
//!
//! The lab is built by `scripts/lab.sh` (namespaces rvs-cli, rvs-dir, rvs-sw, rvs-rs1, rvs-rs2;
//! documentation addresses only, see DESIGN.md). It needs root, iproute2, ethtool, nginx, socat,
//! curl, nftables and 2 MB hugepages: `scripts/setup.sh` installs and reserves them.
//! A missing prerequisite FAILS these tests. Set `RVS_SKIP_LAB=1` to skip them explicitly (a
//! developer machine without root); `RVS_LAB_EAL_ARGS="--no-huge -m 256"` runs rvsd without
//! hugepages.
//!
//! rvsd is `CARGO_BIN_EXE_rvsd`; rvsadm is taken from the same target directory. When it is not
//! there (`cargo test` builds the binaries of the package under test only), this test builds it
//! with `cargo build -p control --bin rvsadm`; `scripts/test.sh` runs `cargo build --workspace`
//! first, so it is normally there already.
//!
//! The namespace names are fixed, so the scenarios run one at a time (a global lock), and each
//! one tears its lab down and stops rvsd by PID in a Drop guard, also when it panics.

use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const VIP: &str = "198.51.100.1";
const RS: [(&str, &str); 2] = [("rs1", "192.0.2.2"), ("rs2", "192.0.2.3")];
const UDP_PORT: u16 = 9000;
const LAB_NAMESPACES: [&str; 5] = ["rvs-cli", "rvs-dir", "rvs-sw", "rvs-rs1", "rvs-rs2"];
const LAB_STATE_DIR: &str = "/run/rvs-lab";

static LAB_LOCK: Mutex<()> = Mutex::new(());

fn lab_lock() -> MutexGuard<'static, ()> {
    LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dataplane/ has a parent")
        .to_path_buf()
}

fn lab_sh() -> PathBuf {
    workspace_root().join("scripts/lab.sh")
}

/// PATH for the commands we run: as given, plus the sbin folders (ip, nginx live there).
fn search_path() -> String {
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

fn find_tool(name: &str) -> Option<PathBuf> {
    search_path()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", search_path());
    c
}

/// `None` when the lab is skipped on purpose (RVS_SKIP_LAB=1); panics when a prerequisite is
/// missing, so that CI cannot pass without running the lab.
fn prerequisites(test: &str, extra_tools: &[&str]) -> Option<()> {
    if std::env::var("RVS_SKIP_LAB").as_deref() == Ok("1") {
        eprintln!(
            "{test}: SKIPPED because RVS_SKIP_LAB=1 (the lab needs root and scripts/setup.sh)"
        );
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{test}: the lab needs root (network namespaces, af_packet): run `sudo scripts/test.sh`, \
         or set RVS_SKIP_LAB=1 to skip it explicitly"
    );
    let mut missing: Vec<&str> = [
        "bash", "ip", "ethtool", "ss", "nginx", "socat", "curl", "timeout",
    ]
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
    Some(())
}

/// What a finished command left: exit status, stdout, stderr.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self, what: &str) -> String {
        format!(
            "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

static RUN_SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs a command with its output in files (daemons it starts cannot hold a pipe of ours open)
/// and a deadline after which it is killed by PID.
fn run(mut c: Command, timeout: Duration) -> io::Result<Ran> {
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

fn lab_script(args: &[&str], envs: &[(&str, &str)]) -> Ran {
    let mut c = cmd("bash");
    c.arg(lab_sh()).args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    run(c, Duration::from_secs(120)).unwrap_or_else(|e| panic!("scripts/lab.sh {args:?}: {e}"))
}

/// For Drop guards: never panics, reports a failure on stderr.
fn lab_script_quiet(arg: &str) -> Option<Ran> {
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

fn lab_namespaces_present() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    LAB_NAMESPACES.contains(&n.as_str())
                        || n.strip_prefix("rvs-rs")
                            .is_some_and(|d| d.parse::<u32>().is_ok())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn unique_tmp_dir(tag: &str) -> PathBuf {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rvs-lab-{tag}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("create temp dir");
    d
}

fn pid_alive(pid: u32) -> bool {
    // Zombies count as gone.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a PID we started ourselves.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Stops a child: SIGTERM, `grace` to exit, then SIGKILL. Returns its exit status.
fn stop_child(child: &mut Child, grace: Duration) -> io::Result<(ExitStatus, bool)> {
    if let Some(st) = child.try_wait()? {
        return Ok((st, false));
    }
    signal(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait()? {
            return Ok((st, false));
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    Ok((child.wait()?, true))
}

/// The end of a log, with its first lines too when it is long (EAL prints its error first and
/// its usage text after it).
fn tail(path: &Path, lines: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    let head = 15;
    if v.len() <= lines + head {
        return v.join("\n");
    }
    format!(
        "{}\n[... {} lines ...]\n{}",
        v[..head].join("\n"),
        v.len() - head - lines,
        v[v.len() - lines..].join("\n")
    )
}

/// A lab that is always taken down: `scripts/lab.sh down` and rvsd stopped by PID on drop.
struct Lab {
    tmp: PathBuf,
    /// EAL's runtime folder when rvsd runs without --in-memory; removed on drop.
    dpdk_runtime_dir: Option<PathBuf>,
    socket: PathBuf,
    rvsd: Option<Child>,
    rvsd_log: PathBuf,
}

impl Lab {
    fn up(kernel: bool) -> Lab {
        let tmp = unique_tmp_dir("test");
        let lab = Lab {
            socket: tmp.join("rvs.sock"),
            rvsd_log: tmp.join("rvsd.log"),
            tmp,
            dpdk_runtime_dir: None,
            rvsd: None,
        };
        let args: &[&str] = if kernel { &["up", "--kernel"] } else { &["up"] };
        let r = lab_script(args, &[]);
        assert!(r.status.success(), "{}", r.describe("scripts/lab.sh up"));
        lab
    }

    /// Starts rvsd in rvs-dir with a copy of the default config and a per-test socket, and
    /// waits (bounded) for the socket.
    fn start_rvsd(&mut self) {
        let rvsd = PathBuf::from(env!("CARGO_BIN_EXE_rvsd"));
        assert!(rvsd.is_file(), "rvsd binary missing: {}", rvsd.display());
        let default = workspace_root().join("dataplane/rvs.toml");
        let text = fs::read_to_string(&default)
            .unwrap_or_else(|e| panic!("read {}: {e}", default.display()));
        let socket = self.socket.to_str().expect("utf-8 temp path");
        let text = text.replace(
            "socket = \"/run/rvs/rvs.sock\"",
            &format!("socket = \"{socket}\""),
        );
        let eal_args = std::env::var("RVS_LAB_EAL_ARGS").unwrap_or_default();
        // EAL refuses --no-huge together with --in-memory (--no-huge implies legacy memory):
        // without hugepages, give the process a file prefix of its own instead.
        let text = if eal_args.contains("--no-huge") {
            let prefix = format!("rvs-lab-test-{}", std::process::id());
            self.dpdk_runtime_dir = Some(PathBuf::from("/var/run/dpdk").join(&prefix));
            text.replace("\"--in-memory\"", &format!("\"--file-prefix={prefix}\""))
        } else {
            text
        };
        let config = self.tmp.join("rvs.toml");
        fs::write(&config, text).expect("write config copy");

        if !eal_args.contains("--no-huge") {
            let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
            let total = meminfo
                .lines()
                .find_map(|l| l.strip_prefix("HugePages_Total:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let mounted = fs::read_to_string("/proc/mounts")
                .unwrap_or_default()
                .lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"));
            assert!(
                total > 0 && mounted,
                "no hugepages (HugePages_Total {total}, hugetlbfs mounted: {mounted}): run \
                 `sudo scripts/setup.sh`, or set RVS_LAB_EAL_ARGS=\"--no-huge -m 256\""
            );
        }

        let log = fs::File::create(&self.rvsd_log).expect("create rvsd log");
        let mut c = cmd("ip");
        c.args(["netns", "exec", "rvs-dir"])
            .arg(&rvsd)
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&self.socket);
        if !eal_args.is_empty() {
            c.arg(format!("--eal-args={eal_args}"));
        }
        // `ip netns exec` execs rvsd: the child's PID is rvsd's.
        let child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn ip netns exec rvs-dir rvsd");
        self.rvsd = Some(child);

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if is_socket(&self.socket) {
                break;
            }
            let child = self.rvsd.as_mut().expect("rvsd child");
            if let Some(st) = child.try_wait().expect("try_wait rvsd") {
                panic!(
                    "rvsd exited ({st}) before creating {}\n--- rvsd log ---\n{}",
                    self.socket.display(),
                    tail(&self.rvsd_log, 40)
                );
            }
            assert!(
                Instant::now() < deadline,
                "rvsd did not create {} within 60 s\n--- rvsd log ---\n{}",
                self.socket.display(),
                tail(&self.rvsd_log, 40)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn rvsd_alive(&mut self) -> bool {
        match self.rvsd.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// Stops rvsd with SIGTERM and returns how it exited.
    fn stop_rvsd(&mut self) -> ExitStatus {
        let mut child = self.rvsd.take().expect("rvsd running");
        let (st, killed) = stop_child(&mut child, Duration::from_secs(10)).expect("stop rvsd");
        assert!(
            !killed,
            "rvsd did not exit within 10 s of SIGTERM\n--- rvsd log ---\n{}",
            tail(&self.rvsd_log, 40)
        );
        st
    }

    /// rvsadm with this lab's socket; panics (with rvsd's log) when it fails.
    fn adm(&self, args: &[&str]) -> String {
        let mut c = cmd(rvsadm_path());
        c.args(args).env("RVS_SOCKET", &self.socket);
        let r = run(c, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("rvsadm {}: {e}", args.join(" ")));
        assert!(
            r.status.success(),
            "{}\n--- rvsd log ---\n{}",
            r.describe(&format!("rvsadm {}", args.join(" "))),
            tail(&self.rvsd_log, 40)
        );
        r.stdout
    }

    fn rvsd_log_tail(&self) -> String {
        tail(&self.rvsd_log, 40)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.rvsd.take() {
            match stop_child(&mut child, Duration::from_secs(10)) {
                Ok((st, killed)) => {
                    if killed {
                        eprintln!("lab: rvsd (pid {}) ignored SIGTERM; killed", child.id());
                    } else if thread::panicking() {
                        eprintln!("lab: rvsd exited: {st}");
                    }
                }
                Err(e) => eprintln!("lab: stopping rvsd: {e}"),
            }
        }
        if thread::panicking() {
            eprintln!(
                "--- rvsd log (last 40 lines) ---\n{}",
                tail(&self.rvsd_log, 40)
            );
            if let Some(st) = lab_script_quiet("status") {
                eprintln!("--- scripts/lab.sh status ---\n{}{}", st.stdout, st.stderr);
            }
        }
        lab_script_quiet("down");
        if let Some(d) = &self.dpdk_runtime_dir {
            let _ = fs::remove_dir_all(d);
        }
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::metadata(p)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

/// rvsadm from the same target directory as rvsd; built once if it is not there.
fn rvsadm_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let rvsd = PathBuf::from(env!("CARGO_BIN_EXE_rvsd"));
        let path = rvsd.with_file_name(format!("rvsadm{}", std::env::consts::EXE_SUFFIX));
        if !path.is_file() {
            let cargo = std::env::var_os("CARGO")
                .or_else(|| option_env!("CARGO").map(Into::into))
                .unwrap_or_else(|| "cargo".into());
            let mut c = cmd(cargo);
            c.current_dir(workspace_root())
                .args(["build", "-p", "control", "--bin", "rvsadm"]);
            if rvsd.parent().and_then(|p| p.file_name()) == Some("release".as_ref()) {
                c.arg("--release");
            }
            let r = run(c, Duration::from_secs(1200)).expect("cargo build -p control --bin rvsadm");
            assert!(
                r.status.success(),
                "{}",
                r.describe("cargo build -p control --bin rvsadm")
            );
        }
        assert!(path.is_file(), "rvsadm not found at {}", path.display());
        path
    })
    .clone()
}

/// One HTTP request from the client namespace; the body, trimmed.
fn curl_vip() -> String {
    let mut c = cmd("ip");
    c.args([
        "netns",
        "exec",
        "rvs-cli",
        "curl",
        "-sS",
        "--max-time",
        "10",
    ])
    .arg(format!("http://{VIP}/"));
    let r = run(c, Duration::from_secs(20)).expect("run curl");
    assert!(
        r.status.success(),
        "{}",
        r.describe("curl from rvs-cli to the VIP")
    );
    r.stdout.trim().to_owned()
}

/// One UDP exchange from inside namespace `ns`, from a fresh socket (a new source port, so a
/// new connection for the director): send, wait up to 2 s for the answer, up to 3 tries on the
/// same socket. Returns the answer (trimmed) and the address it came from.
fn udp_ask(ns: &str, dst: SocketAddr) -> io::Result<(String, SocketAddr)> {
    let ns_path = format!("/run/netns/{ns}");
    thread::spawn(move || -> io::Result<(String, SocketAddr)> {
        // setns(2) moves only this thread into the namespace; it ends with the thread.
        let f = fs::File::open(&ns_path)?;
        // SAFETY: a valid namespace fd; affects the calling thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buf = [0u8; 1500];
        let mut last_err = None;
        for _ in 0..3 {
            sock.send_to(b"ping\n", dst)?;
            match sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    return Ok((String::from_utf8_lossy(&buf[..n]).trim().to_owned(), from))
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("no answer")))
    })
    .join()
    .map_err(|_| io::Error::other("udp thread panicked"))?
}

fn udp_round_robin(n: usize) -> Vec<String> {
    let dst: SocketAddr = format!("{VIP}:{UDP_PORT}").parse().unwrap();
    (0..n)
        .map(|i| {
            let (answer, from) = udp_ask("rvs-cli", dst)
                .unwrap_or_else(|e| panic!("UDP datagram {} to {dst}: {e}", i + 1));
            assert_eq!(from, dst, "UDP answer must come from the VIP (source NAT)");
            answer
        })
        .collect()
}

fn alternating(n: usize) -> Vec<String> {
    (0..n).map(|i| RS[i % RS.len()].0.to_owned()).collect()
}

/// Real-server line exactly as ipvsadm prints it: "  -> %-28s %-7s %-6d %-10u %-10u".
fn rs_line(addr: &str, fwd: &str, weight: u32, active: u64, inactive: u64) -> String {
    format!("  -> {addr:<28} {fwd:<7} {weight:<6} {active:<10} {inactive:<10}")
}

/// One virtual service as `rvsadm -L -n` must list it.
struct Listed {
    proto: &'static str,
    vaddr: String,
    sched: &'static str,
    /// (rip:port, expected ActiveConn + InActConn), in listing order.
    reals: Vec<(String, u64)>,
}

/// A round-robin service on the VIP with both real servers, each with `conns` connections.
fn listed(proto: &'static str, port: u16, conns: u64) -> Listed {
    Listed {
        proto,
        vaddr: format!("{VIP}:{port}"),
        sched: "rr",
        reals: RS
            .iter()
            .map(|(_, ip)| (format!("{ip}:{port}"), conns))
            .collect(),
    }
}

/// Checks `rvsadm -L -n` output line by line against ipvsadm's format.
fn check_listing(out: &str, services: &[Listed]) {
    let lines: Vec<&str> = out.lines().collect();
    let ctx = || format!("\n--- rvsadm -L -n ---\n{out}");
    assert!(lines.len() >= 3, "listing too short{}", ctx());
    assert!(
        lines[0].contains(" version ") && lines[0].contains("(size=") && lines[0].ends_with(')'),
        "first line must be like 'IP Virtual Server version 1.2.1 (size=4096)'{}",
        ctx()
    );
    assert_eq!(
        lines[1],
        "Prot LocalAddress:Port Scheduler Flags",
        "{}",
        ctx()
    );
    assert_eq!(
        lines[2],
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "{}",
        ctx()
    );
    let mut i = 3;
    for Listed {
        proto,
        vaddr,
        sched,
        reals,
    } in services
    {
        let want = format!("{proto:<4} {vaddr} {sched}");
        assert_eq!(
            lines.get(i).copied(),
            Some(want.as_str()),
            "service line{}",
            ctx()
        );
        i += 1;
        for (raddr, total) in reals {
            let line = lines.get(i).copied().unwrap_or_default();
            let f: Vec<&str> = line.split_whitespace().collect();
            assert!(
                f.len() == 6 && f[0] == "->",
                "real server line '{line}'{}",
                ctx()
            );
            let active: u64 = f[4]
                .parse()
                .unwrap_or_else(|_| panic!("ActiveConn in '{line}'"));
            let inactive: u64 = f[5]
                .parse()
                .unwrap_or_else(|_| panic!("InActConn in '{line}'"));
            assert_eq!(
                line,
                rs_line(raddr, "Masq", 1, active, inactive),
                "exact format{}",
                ctx()
            );
            assert_eq!(
                active + inactive,
                *total,
                "{proto} {raddr}: ActiveConn + InActConn{}",
                ctx()
            );
            i += 1;
        }
    }
    assert_eq!(
        lines.len(),
        i,
        "unexpected lines after the services{}",
        ctx()
    );
}

#[test]
fn lab_script_is_idempotent_and_cleans_up_after_failure() {
    let _lock = lab_lock();
    if prerequisites("lab_script_is_idempotent_and_cleans_up_after_failure", &[]).is_none() {
        return;
    }
    struct Down;
    impl Drop for Down {
        fn drop(&mut self) {
            lab_script_quiet("down");
        }
    }
    let _down = Down;

    for _ in 0..2 {
        let r = lab_script(&["down"], &[]);
        assert!(r.status.success(), "{}", r.describe("down with no lab"));
    }
    assert!(lab_namespaces_present().is_empty());

    // A step that fails half-way (nginx cannot start) leaves nothing behind.
    let r = lab_script(&["up"], &[("NGINX", "/bin/false")]);
    assert!(
        !r.status.success(),
        "up with a broken nginx must fail\n{}",
        r.describe("up")
    );
    assert!(
        lab_namespaces_present().is_empty(),
        "a failed up left namespaces: {:?}",
        lab_namespaces_present()
    );
    assert!(
        !Path::new(LAB_STATE_DIR).exists(),
        "a failed up left {LAB_STATE_DIR}"
    );

    // up twice: the second one replaces the first (a leftover of a killed run).
    for _ in 0..2 {
        let r = lab_script(&["up"], &[]);
        assert!(r.status.success(), "{}", r.describe("up"));
        let mut want: Vec<String> = LAB_NAMESPACES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(lab_namespaces_present(), want);
    }
    let pids: Vec<u32> = fs::read_dir(Path::new(LAB_STATE_DIR).join("pids"))
        .expect("pid files")
        .filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        4,
        "nginx and socat in each real server: {pids:?}"
    );
    assert!(
        pids.iter().all(|&p| pid_alive(p)),
        "lab processes running: {pids:?}"
    );

    let r = lab_script(&["down"], &[]);
    assert!(r.status.success(), "{}", r.describe("down"));
    assert!(
        lab_namespaces_present().is_empty(),
        "down left namespaces: {:?}",
        lab_namespaces_present()
    );
    assert!(
        !Path::new(LAB_STATE_DIR).exists(),
        "down left {LAB_STATE_DIR}"
    );
    assert!(
        pids.iter().all(|&p| !pid_alive(p)),
        "down left lab processes running: {pids:?}"
    );
}

/// The lab itself, with the Linux kernel as the director (nftables DNAT round-robin): proves
/// the topology, nginx and the UDP service independently of rvsd.
#[test]
fn kernel_director_lab_round_robin() {
    let _lock = lab_lock();
    if prerequisites("kernel_director_lab_round_robin", &["nft"]).is_none() {
        return;
    }
    let _lab = Lab::up(true);
    let http: Vec<String> = (0..4).map(|_| curl_vip()).collect();
    assert_eq!(
        http,
        alternating(4),
        "HTTP answers through the kernel director"
    );
    assert_eq!(
        udp_round_robin(4),
        alternating(4),
        "UDP answers through the kernel director"
    );
}

/// The LVS-NAT walk-through with rvsd and rvsadm.
#[test]
fn rvsd_nat_walkthrough() {
    let _lock = lab_lock();
    if prerequisites("rvsd_nat_walkthrough", &[]).is_none() {
        return;
    }
    let rvsadm = rvsadm_path();
    assert!(rvsadm.is_file());
    let mut lab = Lab::up(false);
    lab.start_rvsd();

    let tcp_vip = format!("{VIP}:80");
    let udp_vip = format!("{VIP}:{UDP_PORT}");

    lab.adm(&["-C"]);
    lab.adm(&["-A", "-t", &tcp_vip, "-s", "rr"]);
    for (_, ip) in RS {
        lab.adm(&["-a", "-t", &tcp_vip, "-r", &format!("{ip}:80"), "-m"]);
    }
    let empty = lab.adm(&["-L", "-n"]);
    check_listing(&empty, &[listed("TCP", 80, 0)]);

    let http: Vec<String> = (0..4).map(|_| curl_vip()).collect();
    assert_eq!(
        http,
        alternating(4),
        "four curls to the VIP must alternate rs1, rs2, rs1, rs2\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );
    let after_tcp = lab.adm(&["-L", "-n"]);
    check_listing(&after_tcp, &[listed("TCP", 80, 2)]);

    lab.adm(&["-A", "-u", &udp_vip, "-s", "rr"]);
    for (_, ip) in RS {
        lab.adm(&[
            "-a",
            "-u",
            &udp_vip,
            "-r",
            &format!("{ip}:{UDP_PORT}"),
            "-m",
        ]);
    }
    assert_eq!(
        udp_round_robin(4),
        alternating(4),
        "UDP datagrams from new source ports must alternate rs1, rs2, rs1, rs2\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );

    let listing = lab.adm(&["-L", "-n"]);
    println!("rvsadm -L -n:\n{listing}");
    check_listing(
        &listing,
        &[listed("TCP", 80, 2), listed("UDP", UDP_PORT, 2)],
    );

    assert!(
        lab.rvsd_alive(),
        "rvsd died\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );
    let st = lab.stop_rvsd();
    assert!(
        st.success(),
        "rvsd must exit cleanly on SIGTERM, got {st}\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );
}
