//! Real servers for health-check tests: network namespaces joined by veth pairs, nginx in
//! each real server's namespace, and a recorder standing in for rvsd. Needs root.
//!
//! ```text
//!  <prefix>-dir                 <prefix>-rs0            <prefix>-rs1 ...
//!  rs0 203.0.113.1/30  ----- dir 203.0.113.2/30  nginx :80
//!  rs1 203.0.113.5/30  ----- dir 203.0.113.6/30  nginx :80
//! ```
//! Real server `i` is 203.0.113.(4i+2), its director side 203.0.113.(4i+1); nothing else
//! is addressed. Every namespace, veth and nginx is removed or killed by its guard's Drop
//! (nginx by PID), also when a test panics. The prefix must start with `rvs-health-` or
//! another name no one else uses; [`unique_prefix`] gives one per test.

use crate::engine::Lvs;
use control::proto::{Request, Response};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A namespace prefix no other test of this or another process uses: `rvs-health-PID-N`.
pub fn unique_prefix() -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    format!(
        "rvs-health-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn run(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    run(Command::new("ip").args(args))
}

/// A network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn new(name: &str) -> io::Result<Netns> {
        ip(&["netns", "add", name])?;
        let ns = Netns { name: name.into() };
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: the program keeps the command's PID.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs `f` on a thread inside namespace `ns`; threads and processes it starts are in it too.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let file = File::open(Path::new("/run/netns").join(ns))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on an open namespace file; it changes this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// nginx serving one page on `addr` in a namespace, as one process (`master_process off`) so
/// that killing its PID stops the listener at once, like a crash.
pub struct Nginx {
    ns: String,
    dir: PathBuf,
    addr: SocketAddrV4,
    child: Option<Child>,
}

impl Nginx {
    /// Writes the configuration and `page` as /index.html under `dir`, and starts nginx.
    pub fn start(ns: &Netns, dir: &Path, addr: SocketAddrV4, page: &str) -> io::Result<Nginx> {
        std::fs::create_dir_all(dir.join("www"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::write(dir.join("www/index.html"), page)?;
        std::fs::write(dir.join("nginx.conf"), nginx_conf(dir, addr)?)?;
        let mut n = Nginx {
            ns: ns.name().into(),
            dir: dir.into(),
            addr,
            child: None,
        };
        n.restart()?;
        Ok(n)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts nginx again (after [`Nginx::kill`]) and waits until it accepts connections.
    pub fn restart(&mut self) -> io::Result<()> {
        let log = File::create(self.dir.join("nginx.out"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "nginx", "-e"])
            .arg(self.dir.join("error.log"))
            .arg("-p")
            .arg(format!("{}/", self.dir.display()))
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = self.addr;
        loop {
            let up = in_netns(&self.ns, || {
                TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok()
            })?;
            if up {
                return Ok(());
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "nginx exited ({st}): {}",
                    std::fs::read_to_string(self.dir.join("nginx.out")).unwrap_or_default()
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "nginx not listening on {addr} after 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL by PID, and reaped: the port refuses connections from now on.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx's configuration: one server, temp paths under `dir` for the modules this nginx has.
fn nginx_conf(dir: &Path, addr: SocketAddrV4) -> io::Result<String> {
    let v = Command::new("nginx").arg("-V").output()?;
    let v = String::from_utf8_lossy(&v.stderr);
    let d = dir.display();
    let mut temp = format!("    client_body_temp_path {d}/tmp/client_body;\n");
    for m in ["proxy", "fastcgi", "uwsgi", "scgi"] {
        if !v.contains(&format!("--without-http_{m}_module")) {
            temp += &format!("    {m}_temp_path {d}/tmp/{m};\n");
        }
    }
    Ok(format!(
        "# a real server for rvs-healthd's tests
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}    default_type text/plain;
    server {{
        listen {addr};
        root {d}/www;
        index index.html;
    }}
}}
"
    ))
}

/// A director namespace and `n` real server namespaces, each with nginx serving
/// `page(i)` on port 80.
pub struct HealthLab {
    // Field order is drop order: nginx first, then the namespaces.
    pub nginx: Vec<Nginx>,
    pub servers: Vec<Netns>,
    pub director: Netns,
}

impl HealthLab {
    pub fn new(
        prefix: &str,
        n: usize,
        dir: &Path,
        page: impl Fn(usize) -> String,
    ) -> io::Result<HealthLab> {
        assert!(n <= 64, "one /30 per real server in 203.0.113.0/24");
        let director = Netns::new(&format!("{prefix}-dir"))?;
        let mut lab = HealthLab {
            nginx: Vec::new(),
            servers: Vec::new(),
            director,
        };
        for i in 0..n {
            let rs = Netns::new(&format!("{prefix}-rs{i}"))?;
            let dev = format!("rs{i}");
            let d = lab.director.name().to_string();
            ip(&[
                "-n",
                &d,
                "link",
                "add",
                &dev,
                "type",
                "veth",
                "peer",
                "name",
                "dir",
                "netns",
                rs.name(),
            ])?;
            ip(&[
                "-n",
                &d,
                "addr",
                "add",
                &format!("{}/30", Self::director_side(i)),
                "dev",
                &dev,
            ])?;
            ip(&["-n", &d, "link", "set", &dev, "up"])?;
            ip(&[
                "-n",
                rs.name(),
                "addr",
                "add",
                &format!("{}/30", Self::real_server(i)),
                "dev",
                "dir",
            ])?;
            ip(&["-n", rs.name(), "link", "set", "dir", "up"])?;
            lab.servers.push(rs);
        }
        for i in 0..n {
            let addr = SocketAddrV4::new(Self::real_server(i), 80);
            let ng = Nginx::start(&lab.servers[i], &dir.join(format!("rs{i}")), addr, &page(i))?;
            lab.nginx.push(ng);
        }
        Ok(lab)
    }

    /// Real server `i`'s address.
    pub fn real_server(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, u8::try_from(4 * i + 2).unwrap_or(254))
    }

    /// The director's address on real server `i`'s link.
    pub fn director_side(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, u8::try_from(4 * i + 1).unwrap_or(253))
    }
}

/// A stand-in for rvsd: the real servers' weights as the requests set them, and each change
/// with its time.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
struct Recorded {
    weights: BTreeMap<SocketAddr, u32>,
    changes: Vec<(Instant, SocketAddr, Option<u32>)>,
}

impl Recorder {
    /// The weight of `ep`, `None` when it is not in.
    pub fn weight(&self, ep: SocketAddr) -> Option<u32> {
        self.lock().weights.get(&ep).copied()
    }

    pub fn weights(&self) -> BTreeMap<SocketAddr, u32> {
        self.lock().weights.clone()
    }

    /// Every change so far: when, which real server, its weight after (`None`: removed).
    pub fn changes(&self) -> Vec<(Instant, SocketAddr, Option<u32>)> {
        self.lock().changes.clone()
    }

    /// Waits (at most `within`) until `ep`'s weight is `want`; the time it was seen.
    pub fn wait_for(&self, ep: SocketAddr, want: Option<u32>, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if self.weight(ep) == want {
                return Some(Instant::now());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Lvs for Recorder {
    fn call(&mut self, r: Request) -> Result<Response, String> {
        let mut g = self.lock();
        let change = match &r {
            Request::AddDest { dest, .. } | Request::EditDest { dest, .. } => {
                Some((SocketAddr::new(dest.addr, dest.port), Some(dest.weight)))
            }
            Request::DelDest { addr, port, .. } => Some((SocketAddr::new(*addr, *port), None)),
            _ => None,
        };
        if let Some((ep, w)) = change {
            match w {
                Some(w) => g.weights.insert(ep, w),
                None => g.weights.remove(&ep),
            };
            g.changes.push((Instant::now(), ep, w));
        }
        Ok(Response::Ok)
    }
}

/// A stand-in for rvsd's control socket for tests that run rvs-healthd as a process: it answers
/// every request Ok and records it with its time. Nothing in rvs-healthd knows it is not rvsd.
pub struct FakeRvsd {
    path: PathBuf,
    requests: Arc<Mutex<Vec<(Instant, Request)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    refusing: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeRvsd {
    pub fn start(path: &Path) -> io::Result<FakeRvsd> {
        let listener = std::os::unix::net::UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (rec, halt, refuse) = (requests.clone(), stop.clone(), refusing.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (rec, refuse) = (rec.clone(), refuse.clone());
                        std::thread::spawn(move || serve(conn, &rec, &refuse));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(FakeRvsd {
            path: path.into(),
            requests,
            stop,
            refusing,
        })
    }

    /// While set, every request is answered with an error and not recorded (an rvsd that is
    /// not ready).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::Relaxed);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every request so far, with when it came.
    pub fn requests(&self) -> Vec<(Instant, Request)> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn serve(
    conn: std::os::unix::net::UnixStream,
    rec: &Mutex<Vec<(Instant, Request)>>,
    refusing: &std::sync::atomic::AtomicBool,
) {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let answer = match serde_json::from_str::<control::proto::RequestEnvelope>(&line) {
            Ok(_) if refusing.load(Ordering::Relaxed) => Response::Error("not ready".into()),
            Ok(env) => {
                rec.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((Instant::now(), env.request));
                Response::Ok
            }
            Err(e) => Response::Error(format!("bad request: {e}")),
        };
        let Ok(mut out) = serde_json::to_string(&control::proto::ResponseEnvelope::new(answer))
        else {
            return;
        };
        out.push('\n');
        if writer.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

impl Drop for FakeRvsd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A process in a namespace (`ip netns exec`, which keeps the PID), stopped by its PID on drop:
/// SIGTERM, then SIGKILL if it has not exited within 5 s.
pub struct NsProcess {
    child: Option<Child>,
}

impl NsProcess {
    /// Starts `program args` in `ns`, its stdout and stderr appended to `log`.
    pub fn start(ns: &Netns, program: &Path, args: &[&str], log: &Path) -> io::Result<NsProcess> {
        let out = File::options().create(true).append(true).open(log)?;
        let child = ns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(NsProcess { child: Some(child) })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM by PID; waits for the exit (SIGKILL after 5 s). Its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// SIGKILL by PID: no goodbye (a crash).
    pub fn kill(&mut self) -> Option<std::process::ExitStatus> {
        self.signal_and_wait(libc::SIGKILL)
    }

    fn signal_and_wait(&mut self, sig: libc::c_int) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = libc::pid_t::try_from(child.id()).ok()?;
        // SAFETY: kill(2) on our own child's PID, not yet reaped.
        unsafe { libc::kill(pid, sig) };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two namespaces joined by a veth pair: `a` (interface `va`, 192.0.2.2/24) and `b`
/// (interface `vb`, 192.0.2.1/24), for a VRRP peer in each. Removed on drop.
pub struct VethPair {
    pub b: Netns,
    pub a: Netns,
}

impl VethPair {
    pub const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    pub const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    /// Namespaces `<prefix>a` and `<prefix>b`.
    pub fn new(prefix: &str) -> io::Result<VethPair> {
        let pair = VethPair {
            a: Netns::new(&format!("{prefix}a"))?,
            b: Netns::new(&format!("{prefix}b"))?,
        };
        let (a, b) = (pair.a.name(), pair.b.name());
        ip(&[
            "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b,
        ])?;
        ip(&["-n", a, "addr", "add", "192.0.2.2/24", "dev", "va"])?;
        ip(&["-n", b, "addr", "add", "192.0.2.1/24", "dev", "vb"])?;
        ip(&["-n", a, "link", "set", "va", "up"])?;
        ip(&["-n", b, "link", "set", "vb", "up"])?;
        Ok(pair)
    }
}
