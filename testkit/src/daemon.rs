//! rvsd as the DPDK tests run it: an rvs.toml for vdev ports ([`RvsdConfig`]) and a guard
//! around the process ([`Rvsd`]).
//!
//! The guard kills rvsd by PID when it is dropped, also when the test panics, and removes what
//! EAL leaves for its `--file-prefix`: the runtime folder under /var/run/dpdk and, for a killed
//! rvsd on hugepages, its hugepage files (each holds a hugepage until removed). rvsd's stdout and
//! stderr go to a log file, whose head and tail the guard prints when the test panics.
//!
//! The rvsd binary is an argument: `env!("CARGO_BIN_EXE_rvsd")` exists only in rvsd's own
//! tests.

use crate::plan::{EXT_CIDR, INT_CIDR};
use control::config::{Config, MacAddr};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ has a parent")
        .to_path_buf()
}

/// rvsadm from the same target directory as `rvsd` (see [`control_bin_beside`]).
pub fn rvsadm_beside(rvsd: &Path) -> PathBuf {
    control_bin_beside(rvsd, "rvsadm")
}

/// The control crate's binary `name` (rvsadm, rvsctl) from the same target directory as
/// `rvsd` (see [`bin_beside`]).
pub fn control_bin_beside(rvsd: &Path, name: &str) -> PathBuf {
    bin_beside(rvsd, "control", name)
}

/// Binary `name` of workspace package `package` from the same target directory as `exe`;
/// built (`cargo build -p PACKAGE --bin NAME`, in release mode beside a release `exe`) when it
/// is not there, since `cargo test` builds the binaries of the package under test only.
pub fn bin_beside(exe: &Path, package: &str, name: &str) -> PathBuf {
    // One build at a time: tests of one binary run on several threads.
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let path = exe.with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        let cargo = std::env::var_os("CARGO")
            .or_else(|| option_env!("CARGO").map(Into::into))
            .unwrap_or_else(|| "cargo".into());
        let mut c = Command::new(cargo);
        c.current_dir(workspace_root())
            .args(["build", "-p", package, "--bin", name]);
        if exe.parent().and_then(|p| p.file_name()) == Some("release".as_ref()) {
            c.arg("--release");
        }
        let st = c
            .status()
            .unwrap_or_else(|e| panic!("cargo build -p {package} --bin {name}: {e}"));
        assert!(st.success(), "cargo build -p {package} --bin {name}: {st}");
    }
    assert!(path.is_file(), "{name} not found at {}", path.display());
    path
}

/// EAL's `--vdev` value of a `net_pcap` port reading the pcap files (or FIFOs) `rx` and
/// writing `tx`, one RX/TX queue per file.
pub fn net_pcap(index: u32, rx: &[&Path], tx: &[&Path]) -> String {
    let mut v = format!("net_pcap{index}");
    for p in rx {
        v.push_str(&format!(",rx_pcap={}", p.display()));
    }
    for p in tx {
        v.push_str(&format!(",tx_pcap={}", p.display()));
    }
    v
}

/// EAL's `--vdev` value of a `net_null` port that receives nothing.
pub fn net_null(index: u32) -> String {
    format!("net_null{index},no-rx=1")
}

/// A port on a DPDK virtual device (`net_pcap`, `net_null`, `net_ring`...).
#[derive(Debug, Clone)]
pub struct VdevPort {
    name: String,
    /// EAL's `--vdev` value; the device is its name, before the first comma.
    devargs: String,
    role: &'static str,
    mac: Option<[u8; 6]>,
    addresses: Vec<String>,
    /// `addresses6`: the port's IPv6 addresses (CIDRs).
    addresses6: Vec<String>,
    kernel_twin: Option<String>,
}

impl VdevPort {
    /// Port `name` with `role` ("external", "internal", "both") and `addresses` (CIDRs) on
    /// the vdev `devargs`.
    pub fn new(
        name: &str,
        devargs: impl Into<String>,
        role: &'static str,
        addresses: &[&str],
    ) -> VdevPort {
        VdevPort {
            name: name.into(),
            devargs: devargs.into(),
            role,
            mac: None,
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            addresses6: Vec::new(),
            kernel_twin: None,
        }
    }

    /// Gives the port IPv6 addresses (CIDRs, `addresses6`).
    pub fn ipv6(mut self, addresses: &[&str]) -> VdevPort {
        self.addresses6 = addresses.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Gives the port a kernel twin interface named `ifname` (in rvsd's namespace).
    pub fn twin(mut self, ifname: &str) -> VdevPort {
        self.kernel_twin = Some(ifname.into());
        self
    }

    /// Port `lan` in one-arm mode (role both) with both subnets of the plan (198.51.100.1/24,
    /// 192.0.2.1/24), on the vdev `devargs`, with the device's own MAC.
    pub fn one_arm(devargs: impl Into<String>) -> VdevPort {
        VdevPort {
            name: "lan".into(),
            devargs: devargs.into(),
            role: "both",
            mac: None,
            addresses: vec![EXT_CIDR.into(), INT_CIDR.into()],
            addresses6: Vec::new(),
            kernel_twin: None,
        }
    }

    /// Sets the port's MAC.
    pub fn mac(mut self, mac: [u8; 6]) -> VdevPort {
        self.mac = Some(mac);
        self
    }

    fn device(&self) -> &str {
        self.devargs.split(',').next().unwrap_or_default()
    }
}

/// An rvs.toml for rvsd on vdev ports, without hugepages or PCI, with a runtime-file prefix of
/// its own (so rvsd processes side by side share nothing).
#[derive(Debug, Clone)]
pub struct RvsdConfig {
    file_prefix: String,
    lcores: Vec<u32>,
    ports: Vec<VdevPort>,
    services: String,
    socket: PathBuf,
    conntrack_capacity: u64,
    /// `[[neighbours]]`: (port name, address, MAC).
    neighbours: Vec<(String, std::net::IpAddr, [u8; 6])>,
    /// `[metrics]`: (listen, optional).
    metrics: Option<(std::net::SocketAddr, bool)>,
    /// `[sync]`.
    sync: Option<control::sync::SyncConfig>,
    /// `[ipvs]`: sysctls set.
    ipvs: Vec<(String, u32)>,
}

impl RvsdConfig {
    /// One worker on lcore 0, a 1024-connection table, the control socket at `socket`; no
    /// ports and no services yet.
    pub fn new(socket: impl Into<PathBuf>) -> RvsdConfig {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        RvsdConfig {
            file_prefix: format!(
                "rvs-test-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ),
            lcores: vec![0],
            ports: Vec::new(),
            services: String::new(),
            socket: socket.into(),
            conntrack_capacity: 1024,
            neighbours: Vec::new(),
            metrics: None,
            sync: None,
            ipvs: Vec::new(),
        }
    }

    /// `[sync]`: connection sync as `sync` says.
    pub fn sync(mut self, sync: control::sync::SyncConfig) -> RvsdConfig {
        self.sync = Some(sync);
        self
    }

    /// `[ipvs]`: sets sysctl `name` to `value`.
    pub fn sysctl(mut self, name: &str, value: u32) -> RvsdConfig {
        self.ipvs.push((name.into(), value));
        self
    }

    /// `[metrics]`: the metrics listener on `listen`, a start-up error if it cannot be bound.
    pub fn metrics(mut self, listen: std::net::SocketAddr) -> RvsdConfig {
        self.metrics = Some((listen, false));
        self
    }

    /// `[metrics]` with `optional = true`: rvsd starts without the listener if `listen` cannot
    /// be bound.
    pub fn metrics_optional(mut self, listen: std::net::SocketAddr) -> RvsdConfig {
        self.metrics = Some((listen, true));
        self
    }

    /// A static neighbour: `addr` (IPv4 or IPv6) on port `port` is at `mac`.
    pub fn neighbour(
        mut self,
        port: &str,
        addr: impl Into<std::net::IpAddr>,
        mac: [u8; 6],
    ) -> RvsdConfig {
        self.neighbours.push((port.into(), addr.into(), mac));
        self
    }

    /// The worker lcores (EAL gets the same list).
    pub fn lcores(mut self, lcores: &[u32]) -> RvsdConfig {
        self.lcores = lcores.to_vec();
        self
    }

    pub fn port(mut self, port: VdevPort) -> RvsdConfig {
        self.ports.push(port);
        self
    }

    /// Services present at start: rvsadm lines, as `rvsadm -S` saves them.
    pub fn services(mut self, lines: &str) -> RvsdConfig {
        self.services = lines.into();
        self
    }

    pub fn file_prefix(&self) -> &str {
        &self.file_prefix
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn eal_args(&self) -> Vec<String> {
        let lcores: Vec<String> = self.lcores.iter().map(u32::to_string).collect();
        let mut args: Vec<String> = [
            "-l",
            &lcores.join(","),
            "--no-huge",
            "-m",
            "256",
            "--file-prefix",
            &self.file_prefix,
            "--no-pci",
            "--log-level",
            "lib.eal:error",
        ]
        .map(String::from)
        .into();
        args.extend(self.ports.iter().map(|p| format!("--vdev={}", p.devargs)));
        args
    }

    /// The file's text; checked by control's own parser, so a test never starts rvsd on a
    /// file it refuses.
    pub fn to_toml(&self) -> String {
        let ports: Vec<toml::Value> = self
            .ports
            .iter()
            .map(|p| {
                let mut t = toml::Table::new();
                t.insert("name".into(), p.name.clone().into());
                t.insert("device".into(), p.device().into());
                t.insert("role".into(), p.role.into());
                if let Some(m) = p.mac {
                    t.insert("mac".into(), MacAddr(m).to_string().into());
                }
                t.insert("addresses".into(), p.addresses.clone().into());
                if !p.addresses6.is_empty() {
                    t.insert("addresses6".into(), p.addresses6.clone().into());
                }
                if let Some(twin) = &p.kernel_twin {
                    t.insert("kernel_twin".into(), twin.clone().into());
                }
                t.into()
            })
            .collect();
        let table = |entries: Vec<(&str, toml::Value)>| -> toml::Value {
            toml::Value::Table(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
        };
        let lcores: Vec<i64> = self.lcores.iter().map(|&l| i64::from(l)).collect();
        let mut doc = toml::Table::new();
        doc.insert("services".into(), self.services.clone().into());
        doc.insert("eal".into(), table(vec![("args", self.eal_args().into())]));
        doc.insert("ports".into(), ports.into());
        doc.insert(
            "workers".into(),
            table(vec![
                ("lcores", lcores.into()),
                ("mbufs_per_port", 2047.into()),
            ]),
        );
        doc.insert(
            "conntrack".into(),
            table(vec![(
                "capacity",
                i64::try_from(self.conntrack_capacity)
                    .expect("capacity")
                    .into(),
            )]),
        );
        doc.insert(
            "control".into(),
            table(vec![(
                "socket",
                self.socket.to_str().expect("a UTF-8 socket path").into(),
            )]),
        );
        let neighbours: Vec<toml::Value> = self
            .neighbours
            .iter()
            .map(|(port, addr, mac)| {
                table(vec![
                    ("port", port.clone().into()),
                    ("address", addr.to_string().into()),
                    ("mac", MacAddr(*mac).to_string().into()),
                ])
            })
            .collect();
        doc.insert("neighbours".into(), neighbours.into());
        if let Some((listen, optional)) = self.metrics {
            doc.insert(
                "metrics".into(),
                table(vec![
                    ("listen", listen.to_string().into()),
                    ("optional", optional.into()),
                ]),
            );
        }
        if let Some(sync) = &self.sync {
            doc.insert(
                "sync".into(),
                toml::Value::try_from(sync).expect("[sync] as TOML"),
            );
        }
        if !self.ipvs.is_empty() {
            let knobs = self
                .ipvs
                .iter()
                .map(|(k, v)| (k.as_str(), i64::from(*v).into()))
                .collect();
            doc.insert("ipvs".into(), table(knobs));
        }
        let text = toml::to_string(&doc).expect("TOML");
        if let Err(e) = Config::parse(&text, "testkit's rvs.toml") {
            panic!("{e}\n{text}");
        }
        text
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_toml())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// A running rvsd, killed by PID on drop.
pub struct Rvsd {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    file_prefix: Option<String>,
}

impl Rvsd {
    /// Writes `config` into `dir` and starts `bin --config` on it, its output into a log file
    /// beside it; does not wait for anything.
    pub fn start(bin: &Path, config: &RvsdConfig, dir: &Path) -> Rvsd {
        Rvsd::start_with(Command::new(bin), config, dir)
    }

    /// [`Rvsd::start`] with `command` as rvsd: rvsd itself, or a command that execs it (`ip
    /// netns exec NS rvsd`); `--config FILE` is appended.
    pub fn start_with(mut command: Command, config: &RvsdConfig, dir: &Path) -> Rvsd {
        let prefix = config.file_prefix();
        let path = dir.join(format!("{prefix}.toml"));
        config.write(&path);
        command.arg("--config").arg(&path);
        Rvsd::spawn(
            command,
            Launch {
                socket: config.socket().to_path_buf(),
                log: dir.join(format!("{prefix}.log")),
                file_prefix: Some(prefix.to_string()),
            },
        )
    }

    /// Starts `command`: rvsd itself, or a command that execs it and so keeps its PID (`ip
    /// netns exec`). Its stdin is null, its output goes to `launch.log`.
    pub fn spawn(mut command: Command, launch: Launch) -> Rvsd {
        let log = std::fs::File::create(&launch.log)
            .unwrap_or_else(|e| panic!("create {}: {e}", launch.log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        Rvsd {
            child: Some(child),
            socket: launch.socket,
            log: launch.log,
            file_prefix: launch.file_prefix,
        }
    }

    /// Waits (at most `within`) until the control socket answers a connection; panics with
    /// rvsd's log when rvsd exits first or the time is up.
    pub fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        // Until it answers: a stale socket file may be there before rvsd replaces it.
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                self.alive(),
                "rvsd exited before creating {}\n{}",
                self.socket.display(),
                self.log_tail(40)
            );
            assert!(
                Instant::now() < deadline,
                "no control socket {} after {within:?}\n{}",
                self.socket.display(),
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("rvsd started").id()
    }

    /// True while rvsd runs (a zombie does not); reaps nothing.
    pub fn alive(&self) -> bool {
        let Some(c) = &self.child else { return false };
        std::fs::read_to_string(format!("/proc/{}/stat", c.id())).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    }

    /// rvsd's exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("rvsd started");
        child.try_wait().expect("try_wait on rvsd")
    }

    /// Sends SIGTERM (rvsd's clean stop).
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's PID, which is not reaped while `self` holds it.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits (at most `within`) for rvsd to exit; panics with its log when it does not.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "rvsd still running after {within:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and its exit status within 10 s (a panic otherwise).
    pub fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait_exit(Duration::from_secs(10))
    }

    /// SIGTERM, `grace` to exit, then SIGKILL; never panics (for Drop guards). The exit
    /// status, and whether it had to be killed.
    pub fn shutdown(&mut self, grace: Duration) -> io::Result<(ExitStatus, bool)> {
        let child = self.child.as_mut().expect("rvsd started");
        if let Some(st) = child.try_wait()? {
            return Ok((st, false));
        }
        // SAFETY: kill(2) on our own child's PID, not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait()? {
                return Ok((st, false));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill()?;
        Ok((child.wait()?, true))
    }

    /// Everything rvsd wrote so far.
    pub fn log_text(&self) -> String {
        format!(
            "--- rvsd log {} ---\n{}",
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// The log's first 15 lines (EAL prints its error first and its usage text after it)
    /// and its last `lines`.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- rvsd log {} ---\n{}",
            self.log.display(),
            head_and_tail(&self.log, 15, lines)
        )
    }
}

impl Drop for Rvsd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(prefix) = &self.file_prefix {
            let _ = std::fs::remove_dir_all(control::eal_files::runtime_dir(prefix));
            control::eal_files::remove_hugepage_files(prefix);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(40));
        }
    }
}

/// What [`Rvsd::spawn`] needs beside the command.
pub struct Launch {
    /// The control socket rvsd serves.
    pub socket: PathBuf,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// EAL's `--file-prefix`, whose runtime folder and hugepage files are removed after rvsd;
    /// `None` with `--in-memory`, which leaves none.
    pub file_prefix: Option<String>,
}

/// The first `head` and last `tail` lines of a file, with a count of what is between.
pub fn head_and_tail(path: &Path, head: usize, tail: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    if v.len() <= head + tail {
        return v.join("\n");
    }
    format!(
        "{}\n[... {} lines ...]\n{}",
        v[..head].join("\n"),
        v.len() - head - tail,
        v[v.len() - tail..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_one_rvsd_accepts() {
        let rx = Path::new("/tmp/in.pcap");
        let tx = Path::new("/tmp/out.pcap");
        let c = RvsdConfig::new("/tmp/x/rvs.sock")
            .lcores(&[0, 1])
            .port(VdevPort::one_arm(net_pcap(0, &[rx], &[tx])).mac([2, 0, 0, 0, 0, 1]))
            .services("-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m");
        let cfg = Config::parse(&c.to_toml(), "test").expect("valid");
        assert_eq!(cfg.ports.len(), 1);
        assert_eq!(cfg.ports[0].device, "net_pcap0");
        assert_eq!(
            cfg.ports[0].mac.map(|m| m.to_string()).as_deref(),
            Some("02:00:00:00:00:01")
        );
        let addresses: Vec<String> = cfg.ports[0]
            .addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(addresses, [EXT_CIDR, INT_CIDR]);
        assert_eq!(cfg.workers.lcores, [0, 1]);
        assert_eq!(cfg.control.socket, "/tmp/x/rvs.sock");
        let eal = cfg.eal.args.join(" ");
        assert!(
            eal.starts_with("-l 0,1 --no-huge -m 256 --file-prefix rvs-test-"),
            "{eal}"
        );
        assert!(
            eal.ends_with("--vdev=net_pcap0,rx_pcap=/tmp/in.pcap,tx_pcap=/tmp/out.pcap"),
            "{eal}"
        );
        assert!(cfg.services.contains("-s rr"));
        assert_ne!(
            c.file_prefix(),
            RvsdConfig::new("/tmp/y").file_prefix(),
            "a prefix per rvsd"
        );
    }
}
