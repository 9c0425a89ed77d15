//! The namespace lab test: rvsd as an LVS-NAT director between a client and two nginx real
//! servers, configured with rvsadm exactly as the classic ipvsadm walk-through does.
//!
//! The lab is built by `scripts/lab.sh` (namespaces rvs-cli, rvs-dir, rvs-sw, rvs-rs1, rvs-rs2;
//! documentation addresses only, see DESIGN.md). It needs root, iproute2, ethtool, nginx (with its stream module),
//! curl, nftables and 2 MB hugepages: `scripts/setup.sh` installs and reserves them.
//! A missing prerequisite FAILS these tests. `RVS_SKIP_LAB=1 cargo test` skips them explicitly
//! (a developer machine without root): rvsd's build script then compiles them with `--cfg
//! rvs_skip_lab`, which marks each one `#[ignore]`, so the run reports them as ignored, not
//! passed; `-- --include-ignored` runs them all the same. `RVS_LAB_EAL_ARGS="--no-huge -m 256"`
//! runs rvsd without hugepages.
//!
//! rvsd is `CARGO_BIN_EXE_rvsd`; rvsadm is taken from the same target directory. When it is not
//! there (`cargo test` builds the binaries of the package under test only), testkit builds it
//! with `cargo build -p control --bin rvsadm`; `scripts/test.sh` runs `cargo build --workspace`
//! first, so it is normally there already.
//!
//! The namespace names are fixed, so the scenarios run one at a time (a global lock), and each
//! one tears its lab down and stops rvsd by PID in a Drop guard (testkit's `Rvsd`), also when it
//! panics.
//!
//! One file, past 600 lines: every lab scenario shares one lab bring-up, its lock and its failure
//! dump, and cargo runs one test binary per file.

use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use testkit::daemon::{
    bin_beside, control_bin_beside, head_and_tail, rvsadm_beside, workspace_root, Launch, Rvsd,
};
use testkit::lab::{
    assert_lab_prerequisites, cmd, counter, curl_in, find_tool, http_url, ip6_counter, lab_lock,
    lab_script_quiet, lab_sh, ping_in, ping_received, put_slow_download, run, udp_ask,
    udp_exchange, unix_now, xorshift_bytes, LabLock, Ran, WrkRun, KEEPALIVE_WRK_LUA, LAB_STATE_DIR,
};

const VIP: &str = "198.51.100.1";
const RS: [(&str, &str); 2] = [("rs1", "192.0.2.2"), ("rs2", "192.0.2.3")];
/// The lab's IPv6 (scripts/lab.sh): VIP on the external segment, real servers on the internal.
const VIP6: &str = "2001:db8:100::1";
const RS6: [(&str, &str); 2] = [("rs1", "2001:db8:2::2"), ("rs2", "2001:db8:2::3")];
const UDP_PORT: u16 = 9000;
const LAB_NAMESPACES: [&str; 5] = ["rvs-cli", "rvs-dir", "rvs-sw", "rvs-rs1", "rvs-rs2"];
/// The HA lab's (`lab.sh ha-up`, lab_ha.rs): its directors instead of rvs-dir.
const HA_LAB_NAMESPACES: [&str; 6] = [
    "rvs-cli", "rvs-dirA", "rvs-dirB", "rvs-sw", "rvs-rs1", "rvs-rs2",
];

/// The start of every scenario: the lab's lock, then its prerequisites.
fn lab_start(test: &str, extra_tools: &[&str]) -> LabLock {
    let lock = lab_lock();
    assert_lab_prerequisites(test, extra_tools);
    lock
}

fn lab_script(args: &[&str], envs: &[(&str, &str)]) -> Ran {
    let mut c = cmd("bash");
    c.arg(lab_sh()).args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    run(c, Duration::from_secs(120)).unwrap_or_else(|e| panic!("scripts/lab.sh {args:?}: {e}"))
}

/// No lab namespace and no lab state folder is left after `what`.
fn assert_lab_gone(what: &str) {
    assert!(
        lab_namespaces_present().is_empty(),
        "{what} left namespaces: {:?}",
        lab_namespaces_present()
    );
    assert!(
        !Path::new(LAB_STATE_DIR).exists(),
        "{what} left {LAB_STATE_DIR}"
    );
}

fn lab_namespaces_present() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/run/netns")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    LAB_NAMESPACES.contains(&n.as_str())
                        || HA_LAB_NAMESPACES.contains(&n.as_str())
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

/// EAL's `--file-prefix` of this test process's lab rvsd (dpdk-dumpcap attaches with it).
fn lab_file_prefix() -> String {
    format!("rvs-lab-test-{}", std::process::id())
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

/// A lab that is always taken down: `scripts/lab.sh down` and rvsd stopped by PID on drop.
struct Lab {
    tmp: PathBuf,
    socket: PathBuf,
    rvsd: Option<Rvsd>,
    rvsd_log: PathBuf,
}

impl Lab {
    fn up(kernel: bool) -> Lab {
        Lab::up_with(kernel, RS.len())
    }

    /// A lab with `servers` real servers rvs-rs1.. at 192.0.2.2.. (RVS_LAB_SERVERS).
    fn up_with(kernel: bool, servers: usize) -> Lab {
        let tmp = unique_tmp_dir("test");
        let lab = Lab {
            socket: tmp.join("rvs.sock"),
            rvsd_log: tmp.join("rvsd.log"),
            tmp,
            rvsd: None,
        };
        let args: &[&str] = if kernel { &["up", "--kernel"] } else { &["up"] };
        let r = lab_script(args, &[("RVS_LAB_SERVERS", &servers.to_string())]);
        assert!(r.status.success(), "{}", r.describe("scripts/lab.sh up"));
        lab
    }

    /// Starts rvsd in rvs-dir with a copy of the default config and a per-test socket, and
    /// waits (bounded) for the socket.
    fn start_rvsd(&mut self) {
        self.start_rvsd_with("");
    }

    /// As `start_rvsd`, with `extra` (TOML tables) appended to the config.
    fn start_rvsd_with(&mut self, extra: &str) {
        let rvsd = PathBuf::from(env!("CARGO_BIN_EXE_rvsd"));
        assert!(rvsd.is_file(), "rvsd binary missing: {}", rvsd.display());
        let default = workspace_root().join("rvsd/rvs.toml");
        let text = fs::read_to_string(&default)
            .unwrap_or_else(|e| panic!("read {}: {e}", default.display()));
        let socket = self.socket.to_str().expect("utf-8 temp path");
        let text = text.replace(
            "socket = \"/run/rvs/rvs.sock\"",
            &format!("socket = \"{socket}\""),
        );
        let eal_args = std::env::var("RVS_LAB_EAL_ARGS").unwrap_or_default();
        // A file prefix per test process, so that a lab rvsd never meets another rvsd's files.
        let file_prefix = lab_file_prefix();
        let default_prefix = "\"--file-prefix=rvs\"";
        assert!(
            text.contains(default_prefix),
            "{} has no {default_prefix} in [eal] args",
            default.display()
        );
        let text = text.replace(default_prefix, &format!("\"--file-prefix={file_prefix}\""));
        let config = self.tmp.join("rvs.toml");
        fs::write(&config, text + extra).expect("write config copy");

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
        let rvsd = Rvsd::spawn(
            c,
            Launch {
                socket: self.socket.clone(),
                log: self.rvsd_log.clone(),
                file_prefix: Some(file_prefix),
            },
        );
        rvsd.wait_ready(Duration::from_secs(60));
        self.rvsd = Some(rvsd);
    }

    fn rvsd_alive(&self) -> bool {
        self.rvsd.as_ref().is_some_and(Rvsd::alive)
    }

    /// The end of a scenario: rvsd still runs, and exits cleanly within 10 s of SIGTERM.
    fn stop_rvsd(&mut self) {
        assert!(
            self.rvsd_alive(),
            "rvsd died\n--- rvsd log ---\n{}",
            self.rvsd_log_tail()
        );
        let st = self.rvsd.take().expect("rvsd running").stop();
        assert!(
            st.success(),
            "rvsd must exit cleanly on SIGTERM, got {st}\n--- rvsd log ---\n{}",
            self.rvsd_log_tail()
        );
    }

    /// rvsadm with this lab's socket; panics (with rvsd's log) when it fails.
    fn adm(&self, args: &[&str]) -> String {
        self.control(rvsadm(), args)
    }

    /// rvsctl with this lab's socket; panics (with rvsd's log) when it fails.
    fn ctl(&self, args: &[&str]) -> String {
        self.control(rvsctl(), args)
    }

    fn control(&self, bin: PathBuf, args: &[&str]) -> String {
        let name = bin
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut c = cmd(bin);
        c.args(args).env("RVS_SOCKET", &self.socket);
        let r = run(c, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{name} {}: {e}", args.join(" ")));
        assert!(
            r.status.success(),
            "{}\n--- rvsd log ---\n{}",
            r.describe(&format!("{name} {}", args.join(" "))),
            self.rvsd_log_tail()
        );
        r.stdout
    }

    /// The table cleared, then TCP VIP:80 rr over both real servers, warmed up by two requests
    /// (ARP, the path); returns the service's address.
    fn rr_web_service(&self) -> String {
        let web = format!("{VIP}:80");
        self.adm(&["-C"]);
        self.adm(&["-A", "-t", &web, "-s", "rr"]);
        for (_, ip) in RS {
            self.adm(&["-a", "-t", &web, "-r", &format!("{ip}:80"), "-m"]);
        }
        for _ in 0..2 {
            curl_vip();
        }
        web
    }

    fn rvsd_log_tail(&self) -> String {
        head_and_tail(&self.rvsd_log, 15, 40)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if thread::panicking() && self.rvsd_alive() {
            // What rvsd saw, while it still runs: the failure's explanation is usually here.
            for args in [&["-L", "--counters"][..], &["-L", "-n", "-c"][..]] {
                let mut c = cmd(rvsadm());
                c.args(args).env("RVS_SOCKET", &self.socket);
                if let Ok(r) = run(c, Duration::from_secs(5)) {
                    eprintln!(
                        "--- rvsadm {} ---\n{}{}",
                        args.join(" "),
                        r.stdout,
                        r.stderr
                    );
                }
            }
        }
        // Dropped while the test panics, the guard prints rvsd's log.
        if let Some(mut rvsd) = self.rvsd.take() {
            match rvsd.shutdown(Duration::from_secs(10)) {
                Ok((st, killed)) => {
                    if killed {
                        eprintln!("lab: rvsd (pid {}) ignored SIGTERM; killed", rvsd.pid());
                    } else if thread::panicking() {
                        eprintln!("lab: rvsd exited: {st}");
                    }
                }
                Err(e) => eprintln!("lab: stopping rvsd: {e}"),
            }
        } else if thread::panicking() {
            eprintln!("--- rvsd log ---\n{}", self.rvsd_log_tail());
        }
        if thread::panicking() {
            if let Some(st) = lab_script_quiet("status") {
                eprintln!("--- scripts/lab.sh status ---\n{}{}", st.stdout, st.stderr);
            }
            for (name, _) in RS {
                let log = Path::new("/run/rvs-lab").join(name).join("error.log");
                eprintln!("--- {} ---\n{}", log.display(), head_and_tail(&log, 15, 10));
            }
        }
        lab_script_quiet("down");
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// rvsadm from the same target directory as rvsd.
fn rvsadm() -> PathBuf {
    rvsadm_beside(Path::new(env!("CARGO_BIN_EXE_rvsd")))
}

/// rvsctl (IPVS sysctls, counters) from the same target directory as rvsd.
fn rvsctl() -> PathBuf {
    control_bin_beside(Path::new(env!("CARGO_BIN_EXE_rvsd")), "rvsctl")
}

/// `addr:port` of a lab address (IPv6 in brackets, as rvsadm takes and lists it).
fn sock(addr: &str, port: u16) -> SocketAddr {
    let ip: IpAddr = addr.parse().expect("a lab address");
    SocketAddr::new(ip, port)
}

/// One HTTP request from the client namespace to the VIP; the body, trimmed.
fn curl_vip() -> String {
    curl_to(VIP)
}

/// One HTTP request from the client namespace to `vip`:80; the body, trimmed.
fn curl_to(vip: &str) -> String {
    let url = http_url(sock(vip, 80), "/");
    let r = curl_in("rvs-cli", &url, 10).expect("run curl");
    assert!(
        r.status.success(),
        "{}",
        r.describe(&format!("curl from rvs-cli to {url}"))
    );
    r.stdout.trim().to_owned()
}

fn udp_round_robin(n: usize) -> Vec<String> {
    udp_round_robin_to(VIP, n)
}

/// `n` UDP datagrams from the client to `vip`:UDP_PORT, each from a new source port; the
/// answers, each checked to come from the VIP.
fn udp_round_robin_to(vip: &str, n: usize) -> Vec<String> {
    let dst = sock(vip, UDP_PORT);
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
    listed_on(VIP, &RS, proto, port, conns)
}

/// As [`listed`], on `vip` with `reals` (IPv6 in brackets, as ipvsadm lists it).
fn listed_on(
    vip: &str,
    reals: &[(&str, &str)],
    proto: &'static str,
    port: u16,
    conns: u64,
) -> Listed {
    Listed {
        proto,
        vaddr: sock(vip, port).to_string(),
        sched: "rr",
        reals: reals
            .iter()
            .map(|(_, ip)| (sock(ip, port).to_string(), conns))
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
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn lab_script_is_idempotent_and_cleans_up_after_failure() {
    let _lock = lab_start("lab_script_is_idempotent_and_cleans_up_after_failure", &[]);
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
    assert_lab_gone("a failed up");

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
        2,
        "one nginx (HTTP and UDP) in each real server: {pids:?}"
    );
    assert!(
        pids.iter().all(|&p| pid_alive(p)),
        "lab processes running: {pids:?}"
    );

    let r = lab_script(&["down"], &[]);
    assert!(r.status.success(), "{}", r.describe("down"));
    assert_lab_gone("down");
    assert!(
        pids.iter().all(|&p| !pid_alive(p)),
        "down left lab processes running: {pids:?}"
    );

    // The same for the HA lab (no rvsd needed): a failed ha-up leaves nothing, a second one
    // replaces the first, down removes it (its bridges go with rvs-sw).
    let r = lab_script(&["ha-up"], &[("NGINX", "/bin/false")]);
    assert!(!r.status.success(), "{}", r.describe("ha-up, broken nginx"));
    assert_lab_gone("a failed ha-up");
    for _ in 0..2 {
        let r = lab_script(&["ha-up"], &[]);
        assert!(r.status.success(), "{}", r.describe("ha-up"));
        let mut want: Vec<String> = HA_LAB_NAMESPACES.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(lab_namespaces_present(), want);
    }
    let r = lab_script(&["down"], &[]);
    assert!(r.status.success(), "{}", r.describe("down after ha-up"));
    assert_lab_gone("down after ha-up");
}

/// The lab itself, with the Linux kernel as the director (nftables DNAT round-robin): proves
/// the topology, nginx and the UDP service independently of rvsd.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn kernel_director_lab_round_robin() {
    let _lock = lab_start("kernel_director_lab_round_robin", &["nft", "ping"]);
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

    // IPv6 (ip6 nat): the checks rvsd_nat_walkthrough_ipv6 makes, here on the kernel.
    let http6: Vec<String> = (0..4).map(|_| curl_to(VIP6)).collect();
    assert_eq!(
        http6,
        alternating(4),
        "HTTP answers over IPv6 through the kernel director"
    );
    assert_eq!(
        udp_round_robin_to(VIP6, 4),
        alternating(4),
        "UDP answers over IPv6 through the kernel director"
    );
    let frags_before = ip6_counter("rvs-cli", "Ip6FragCreates").expect("Ip6FragCreates");
    let dst = sock(VIP6, UDP_PORT);
    let (answer, from) = udp_exchange("rvs-cli", dst, &xorshift_bytes(6, 3000))
        .unwrap_or_else(|e| panic!("fragmented UDP datagram to {dst}: {e}"));
    assert_eq!((answer.as_str(), from), ("rs1", dst));
    let frags = ip6_counter("rvs-cli", "Ip6FragCreates").expect("Ip6FragCreates") - frags_before;
    assert!(frags >= 3, "Ip6FragCreates +{frags}");
    let ping = ping_in("rvs-cli", VIP6.parse().unwrap(), 3).expect("run ping");
    assert_eq!(
        ping_received(&ping.stdout),
        Some(3),
        "{}",
        ping.describe("ping the IPv6 VIP")
    );
}

/// The LVS-NAT walk-through with rvsd and rvsadm.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_nat_walkthrough() {
    let _lock = lab_start("rvsd_nat_walkthrough", &[]);
    let rvsadm = rvsadm();
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

    lab.stop_rvsd();
}

/// The LVS-NAT walk-through over IPv6 (issue 16): services on the VIP 2001:db8:100::1 with
/// the real servers 2001:db8:2::2 and ::3 (as ipvsadm's IPv6 syntax writes them), four curls
/// alternating rs1 rs2 rs1 rs2, UDP round robin, a datagram larger than the 1500-byte MTU (the
/// client's kernel sends it in fragments) answered, ping6 to the VIP answered, and the IPv6
/// services listed as ipvsadm lists them.
///
/// What rvsd must do for it (lab.sh, rvs.toml): answer neighbour solicitations for the VIP on
/// the external port (from 2001:db8:100::10) and for the DIP 2001:db8:2::1, the real servers'
/// default route, on the internal one; resolve the real servers with solicitations of its own;
/// NAT TCP and UDP, fragments of a tracked flow and echo requests to the VIP.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_nat_walkthrough_ipv6() {
    let _lock = lab_start("rvsd_nat_walkthrough_ipv6", &["ping"]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();

    let tcp_vip = sock(VIP6, 80).to_string();
    let udp_vip = sock(VIP6, UDP_PORT).to_string();

    lab.adm(&["-C"]);
    lab.adm(&["-A", "-t", &tcp_vip, "-s", "rr"]);
    for (_, ip) in RS6 {
        lab.adm(&["-a", "-t", &tcp_vip, "-r", &sock(ip, 80).to_string(), "-m"]);
    }
    let empty = lab.adm(&["-L", "-n"]);
    check_listing(&empty, &[listed_on(VIP6, &RS6, "TCP", 80, 0)]);

    let http: Vec<String> = (0..4).map(|_| curl_to(VIP6)).collect();
    assert_eq!(
        http,
        alternating(4),
        "four curls to [{VIP6}] must alternate rs1, rs2, rs1, rs2\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );
    let after_tcp = lab.adm(&["-L", "-n"]);
    check_listing(&after_tcp, &[listed_on(VIP6, &RS6, "TCP", 80, 2)]);

    lab.adm(&["-A", "-u", &udp_vip, "-s", "rr"]);
    for (_, ip) in RS6 {
        lab.adm(&[
            "-a",
            "-u",
            &udp_vip,
            "-r",
            &sock(ip, UDP_PORT).to_string(),
            "-m",
        ]);
    }
    assert_eq!(
        udp_round_robin_to(VIP6, 4),
        alternating(4),
        "UDP datagrams to [{VIP6}] from new source ports must alternate rs1, rs2, rs1, rs2\n\
         --- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );

    // 3000 bytes of payload: the client's kernel sends three fragments (1500-byte MTU), rvsd
    // passes them to one real server, whose kernel reassembles them for nginx.
    let frags_before = ip6_counter("rvs-cli", "Ip6FragCreates").expect("Ip6FragCreates");
    let dst = sock(VIP6, UDP_PORT);
    let (answer, from) =
        udp_exchange("rvs-cli", dst, &xorshift_bytes(6, 3000)).unwrap_or_else(|e| {
            panic!(
                "fragmented UDP datagram to {dst}: {e}\n--- rvsd log ---\n{}",
                lab.rvsd_log_tail()
            )
        });
    assert_eq!(from, dst, "the answer must come from the VIP (source NAT)");
    assert_eq!(
        answer, "rs1",
        "the fifth UDP connection goes to rs1 (round robin)"
    );
    let frags = ip6_counter("rvs-cli", "Ip6FragCreates").expect("Ip6FragCreates") - frags_before;
    assert!(
        frags >= 3,
        "the client's kernel must have fragmented the datagram (Ip6FragCreates +{frags})"
    );

    let vip6: IpAddr = VIP6.parse().unwrap();
    let ping = ping_in("rvs-cli", vip6, 3).expect("run ping");
    assert_eq!(
        ping_received(&ping.stdout),
        Some(3),
        "{}\n--- rvsd log ---\n{}",
        ping.describe(&format!("ping {VIP6} from rvs-cli")),
        lab.rvsd_log_tail()
    );

    let listing = lab.adm(&["-L", "-n"]);
    println!("rvsadm -L -n:\n{listing}");
    // Five UDP connections round robin: three on rs1, two on rs2.
    let mut udp = listed_on(VIP6, &RS6, "UDP", UDP_PORT, 3);
    udp.reals[1].1 = 2;
    check_listing(&listing, &[listed_on(VIP6, &RS6, "TCP", 80, 2), udp]);

    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// Live updates under load: no request fails, and after each change new requests go
// only to the real servers still eligible.

/// One request of the load: when it was started and finished, and which real server answered
/// (the body, "rsN") or why it failed.
struct Shot {
    start: Instant,
    end: Instant,
    answer: Result<String, String>,
}

/// One curl to `url` from the client namespace (a new TCP connection each time).
fn curl_shot(url: &str) -> Shot {
    let start = Instant::now();
    let out = cmd("ip")
        .args(["netns", "exec", "rvs-cli", "curl", "-sS", "--max-time", "5"])
        .arg(url)
        .stdin(Stdio::null())
        .output();
    let end = Instant::now();
    let answer = match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        Ok(o) => Err(format!(
            "{}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(e.to_string()),
    };
    Shot { start, end, answer }
}

/// `loops` curl loops against `url`, each bounded to `max_each` requests, until
/// [`CurlLoad::finish`]. Dropped unfinished (the test failed), it stops and joins its threads, so
/// no curl outlives its lab and runs into the next test's.
struct CurlLoad {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<thread::JoinHandle<Vec<Shot>>>,
}

impl CurlLoad {
    fn start(url: String, loops: usize, max_each: usize) -> CurlLoad {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..loops)
            .map(|_| {
                let (url, stop) = (url.clone(), stop.clone());
                thread::spawn(move || {
                    let mut shots = Vec::new();
                    while !stop.load(Ordering::Relaxed) && shots.len() < max_each {
                        shots.push(curl_shot(&url));
                    }
                    shots
                })
            })
            .collect();
        CurlLoad { stop, threads }
    }

    /// Stops the loops and returns every request they made.
    fn finish(mut self) -> Vec<Shot> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.threads)
            .into_iter()
            .flat_map(|h| h.join().expect("load thread"))
            .collect()
    }
}

impl Drop for CurlLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// A change made under load: when it began and was done, and the servers eligible after it.
struct Change {
    what: String,
    begin: Instant,
    done: Instant,
    eligible: Vec<&'static str>,
}

/// (weight, ActiveConn, InActConn) of real server `rip` in `rvsadm -L -n` output.
fn rs_state(listing: &str, rip: &str) -> Option<(u32, u64, u64)> {
    listing.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 6 && f[0] == "->" && f[1] == rip).then(|| {
            (
                f[3].parse().unwrap_or(u32::MAX),
                f[4].parse().unwrap_or(u64::MAX),
                f[5].parse().unwrap_or(u64::MAX),
            )
        })
    })
}

/// Waits (bounded) until real server `rip` of `service` has no active connection: a quiesced
/// server is drained before it is removed, as operators do with ipvsadm (removed, its
/// connections would go on to their end anyway: `expire_nodest_conn` 0).
fn wait_drained(lab: &Lab, service: &str, rip: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = lab.adm(&["-L", "-n", "-t", service]);
        match rs_state(&l, rip) {
            Some((_, 0, _)) => return,
            Some(_) => {}
            None => panic!("{rip} not listed:\n{l}"),
        }
        assert!(Instant::now() < deadline, "{rip} not drained in 10 s:\n{l}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Under continuous curl load (four loops, about 10 s) the test quiesces one real server
/// (-e -w 0), removes another (-d, after draining it), adds, edits and deletes other services,
/// brings the servers back: no request fails, and every request started after a change and
/// finished before the next one went to a server eligible then.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn live_updates_under_curl_load_lose_nothing() {
    let _lock = lab_start("live_updates_under_curl_load_lose_nothing", &[]);
    let mut lab = Lab::up_with(false, 3);
    lab.start_rvsd();
    let web = format!("{VIP}:80");
    let (rs1, rs2, rs3) = ("192.0.2.2:80", "192.0.2.3:80", "192.0.2.4:80");
    lab.adm(&["-C"]);
    lab.adm(&["-A", "-t", &web, "-s", "rr"]);
    for rip in [rs1, rs2, rs3] {
        lab.adm(&["-a", "-t", &web, "-r", rip, "-m", "-w", "1"]);
    }
    // Warm up ARP and the path before the load starts.
    for _ in 0..3 {
        curl_vip();
    }

    let load = CurlLoad::start(format!("http://{VIP}/"), 4, 2000);
    let hold = |d: u64| thread::sleep(Duration::from_millis(d));
    let mut changes: Vec<Change> = Vec::new();
    let t0 = Instant::now();
    changes.push(Change {
        what: "start".into(),
        begin: t0,
        done: t0,
        eligible: vec!["rs1", "rs2", "rs3"],
    });
    let mut change = |what: &str, steps: &[&[&str]], eligible: &[&'static str]| {
        let begin = Instant::now();
        for args in steps {
            lab.adm(args);
        }
        changes.push(Change {
            what: what.into(),
            begin,
            done: Instant::now(),
            eligible: eligible.to_vec(),
        });
    };
    hold(1500);
    change(
        "rs2 weight 0",
        &[&["-e", "-t", &web, "-r", rs2, "-w", "0"]],
        &["rs1", "rs3"],
    );
    hold(1500);
    let alt = format!("{VIP}:8080");
    let udp = format!("{VIP}:{UDP_PORT}");
    change(
        "services added and edited",
        &[
            &["-A", "-t", &alt, "-s", "rr"],
            &["-a", "-t", &alt, "-r", rs1, "-m"],
            &["-E", "-t", &alt, "-M", "255.255.255.0"],
            &["-A", "-u", &udp, "-s", "rr"],
            &["-a", "-u", &udp, "-r", "192.0.2.3", "-m"],
            &["-E", "-t", &web, "-s", "rr"],
            &["-Z"],
        ],
        &["rs1", "rs3"],
    );
    // The new service works under the load (port 8080 on the VIP goes to rs1:80).
    assert_eq!(
        curl_shot(&format!("http://{alt}/")).answer.as_deref(),
        Ok("rs1")
    );
    hold(1000);
    change(
        "rs3 weight 0",
        &[&["-e", "-t", &web, "-r", rs3, "-w", "0"]],
        &["rs1"],
    );
    wait_drained(&lab, &web, rs3);
    change("rs3 removed", &[&["-d", "-t", &web, "-r", rs3]], &["rs1"]);
    hold(1500);
    change(
        "rs2 weight 3, services deleted",
        &[
            &["-e", "-t", &web, "-r", rs2, "-w", "3"],
            &["-D", "-t", &alt],
            &["-D", "-u", &udp],
        ],
        &["rs1", "rs2"],
    );
    hold(1500);
    change(
        "rs3 added again",
        &[&["-a", "-t", &web, "-r", rs3, "-m", "-w", "1"]],
        &["rs1", "rs2", "rs3"],
    );
    hold(1500);
    let end = Instant::now();
    let shots = load.finish();

    let at = |t: Instant| format!("{:.3}s", t.duration_since(t0).as_secs_f64());
    let timeline: String = changes
        .iter()
        .map(|c| format!("  {} .. {}: {}\n", at(c.begin), at(c.done), c.what))
        .collect();
    let failed: Vec<String> = shots
        .iter()
        .filter_map(|s| {
            s.answer
                .as_ref()
                .err()
                .map(|e| format!("  {} .. {}: {e}", at(s.start), at(s.end)))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed:\n{}\nchanges:\n{timeline}--- rvsd log ---\n{}",
        failed.len(),
        shots.len(),
        failed.join("\n"),
        lab.rvsd_log_tail()
    );
    assert!(
        shots.len() >= 100,
        "only {} requests in {:?}",
        shots.len(),
        end - t0
    );

    // Eligibility: a request started after change i was done and finished before change i+1
    // began must have gone to a server eligible after change i; one that overlapped later
    // changes may have gone to a server eligible in any of the phases it overlapped.
    let mut per_phase: Vec<std::collections::BTreeMap<String, usize>> =
        vec![Default::default(); changes.len()];
    for s in &shots {
        let answer = s.answer.as_ref().expect("checked above");
        let Some(first) = changes.iter().rposition(|c| c.done <= s.start) else {
            continue;
        };
        let last = changes
            .iter()
            .rposition(|c| c.begin < s.end)
            .unwrap_or(first);
        let allowed: Vec<&str> = changes[first..=last.max(first)]
            .iter()
            .flat_map(|c| c.eligible.iter().copied())
            .collect();
        assert!(
            allowed.contains(&answer.as_str()),
            "request {} .. {} went to {answer}, eligible: {allowed:?}\nchanges:\n{timeline}",
            at(s.start),
            at(s.end)
        );
        if last <= first {
            *per_phase[first].entry(answer.clone()).or_default() += 1;
        }
    }
    // And the eligible servers really shared the load: each got some of every phase.
    for (c, seen) in changes.iter().zip(&per_phase) {
        let total: usize = seen.values().sum();
        if total >= 12 {
            for rs in &c.eligible {
                assert!(
                    seen.get(*rs).copied().unwrap_or(0) > 0,
                    "after '{}' {rs} got none of {total} requests: {seen:?}\nchanges:\n{timeline}",
                    c.what
                );
            }
        }
    }
    println!(
        "{} requests, none failed; per phase: {:?}\nchanges:\n{timeline}",
        shots.len(),
        per_phase
    );

    // The counters and rates saw the traffic (-Z was given under load, so counts are since then).
    let stats = lab.adm(&["-L", "-n", "--stats", "--exact", "-t", &web]);
    let rates = lab.adm(&["-L", "-n", "--rate", "--exact", "-t", &web]);
    let first_number = |text: &str, prefix: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {prefix} in\n{text}"))
    };
    assert!(first_number(&stats, "TCP") > 0, "{stats}");
    assert!(
        first_number(&rates, "TCP") > 0,
        "CPS measured under load:\n{rates}"
    );
    // -Z of that one service: its counters restart from zero (no new connection since the
    // load stopped); the rates, measurements of the last seconds, stay.
    lab.adm(&["-Z", "-t", &web]);
    let zeroed = lab.adm(&["-L", "-n", "--stats", "--exact", "-t", &web]);
    assert_eq!(first_number(&zeroed, "TCP"), 0, "{zeroed}");
    let rates = lab.adm(&["-L", "-n", "--rate", "--exact", "-t", &web]);
    assert!(first_number(&rates, "TCP") > 0, "rates after -Z:\n{rates}");
    let listing = lab.adm(&["-L", "-n", "-t", &web]);
    assert_eq!(rs_state(&listing, rs1).map(|s| s.0), Some(1), "{listing}");
    assert_eq!(rs_state(&listing, rs2).map(|s| s.0), Some(3), "{listing}");
    assert_eq!(rs_state(&listing, rs3).map(|s| s.0), Some(1), "{listing}");
    lab.stop_rvsd();
}

/// A long download through a real server that is set to weight 0 mid-transfer (while other
/// services and the other real server are added, edited and removed) completes intact; new
/// requests meanwhile go to the other server.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn established_download_survives_weight_zero_and_other_changes() {
    let _lock = lab_start(
        "established_download_survives_weight_zero_and_other_changes",
        &[],
    );
    let mut lab = Lab::up(false);
    // A different file of the same name on each real server, so its content says who sent it.
    const SIZE: usize = 3 << 20;
    let content = |name: &str| -> Vec<u8> {
        let seed = name.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        xorshift_bytes(seed, SIZE)
    };
    for (name, _) in RS {
        put_slow_download(name, &content(name));
    }
    lab.start_rvsd();
    let web = lab.rr_web_service();

    // About 3 s: the lab's nginx paces /slow/ at 1 MB/s.
    let out = lab.tmp.join("download.bin");
    let mut download = cmd("ip")
        .args([
            "netns",
            "exec",
            "rvs-cli",
            "curl",
            "-sS",
            "--max-time",
            "60",
        ])
        .arg("-o")
        .arg(&out)
        .arg(format!("http://{VIP}/slow/big.bin"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the download");
    // Which real server carries it: the one with an active connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (busy, idle) = loop {
        let l = lab.adm(&["-L", "-n"]);
        let active: Vec<&(&str, &str)> = RS
            .iter()
            .filter(|(_, ip)| rs_state(&l, &format!("{ip}:80")).is_some_and(|s| s.1 > 0))
            .collect();
        if let [one] = active[..] {
            let other = RS.iter().find(|r| r.0 != one.0).expect("two servers");
            break (*one, *other);
        }
        assert!(Instant::now() < deadline, "no download in progress:\n{l}");
        thread::sleep(Duration::from_millis(50));
    };
    let busy_rip = format!("{}:80", busy.1);
    let idle_rip = format!("{}:80", idle.1);
    thread::sleep(Duration::from_millis(300));

    // Mid-transfer: the busy server to weight 0, other services come and go.
    lab.adm(&["-e", "-t", &web, "-r", &busy_rip, "-w", "0"]);
    for _ in 0..4 {
        assert_eq!(
            curl_vip(),
            idle.0,
            "new requests go to the server still eligible"
        );
    }
    let alt = format!("{VIP}:8080");
    lab.adm(&["-A", "-t", &alt, "-s", "rr"]);
    lab.adm(&["-a", "-t", &alt, "-r", &idle_rip, "-m"]);
    lab.adm(&["-E", "-t", &web, "-s", "rr"]);
    lab.adm(&["-D", "-t", &alt]);
    lab.adm(&["-d", "-t", &web, "-r", &idle_rip]);
    let l = lab.adm(&["-L", "-n"]);
    assert!(
        download.try_wait().expect("try_wait curl").is_none(),
        "the download ended before the changes were made: make it longer"
    );
    assert_eq!(
        rs_state(&l, &busy_rip).map(|s| (s.0, s.1)),
        Some((0, 1)),
        "the download still runs on the quiesced server:\n{l}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = download.try_wait().expect("try_wait curl") {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "download still running after 60 s"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = download.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "download failed: {status}: {err}");
    let got = fs::read(&out).expect("downloaded file");
    assert_eq!(got.len(), SIZE, "download size");
    assert!(
        got == content(busy.0),
        "the download's content differs from {}'s file",
        busy.0
    );

    // Back to weight 1: it takes new requests again.
    lab.adm(&["-e", "-t", &web, "-r", &busy_rip, "-w", "1"]);
    assert_eq!(curl_vip(), busy.0);
    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// Removing a real server under keep-alive load (expire_nodest_conn).

/// What one wrk run reported (testkit's [`WrkRun`], read through), and when the change was
/// made.
#[derive(Debug)]
struct KeepAliveRun {
    wrk: WrkRun,
    /// The second (unix time) at which the real server was removed.
    removed_at: u64,
}

impl std::ops::Deref for KeepAliveRun {
    type Target = WrkRun;

    fn deref(&self) -> &WrkRun {
        &self.wrk
    }
}

/// wrk from the client namespace, four keep-alive connections for 5 s (2 s timeout); after
/// 2 s, `change` runs.
fn keepalive_load(lab: &Lab, change: impl FnOnce()) -> KeepAliveRun {
    keepalive_load_for(lab, 4, 5, change)
}

/// As [`keepalive_load`], with `conns` connections for `secs` seconds.
fn keepalive_load_for(lab: &Lab, conns: u32, secs: u64, change: impl FnOnce()) -> KeepAliveRun {
    let script = lab.tmp.join("keepalive.lua");
    fs::write(&script, KEEPALIVE_WRK_LUA).expect("write the wrk script");
    let mut c = cmd("ip");
    c.args(["netns", "exec", "rvs-cli", "wrk", "-t2"])
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "2s"])
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{VIP}/"));
    let wrk = thread::spawn(move || run(c, Duration::from_secs(secs + 25)));
    thread::sleep(Duration::from_secs(2));
    change();
    let removed_at = unix_now();
    let r = wrk
        .join()
        .expect("wrk thread")
        .unwrap_or_else(|e| panic!("wrk: {e}"));
    assert!(r.status.success(), "{}", r.describe("wrk"));
    let wrk =
        WrkRun::parse(&r.stdout).unwrap_or_else(|| panic!("no LAB lines from wrk:\n{}", r.stdout));
    let out = KeepAliveRun { wrk, removed_at };
    assert!(out.requests > 0, "no LAB lines from wrk:\n{}", r.stdout);
    println!("{out:?}");
    out
}

/// Under keep-alive load (wrk, four connections, two on each real server), `rvsadm -d` of one
/// real server: with expire_nodest_conn 0 (the default) no request fails and none hangs, and
/// the removed server's connections go on answering; with 1, its clients' connections are
/// reset at their next request (wrk sees a socket error, not a timeout) and their new
/// connections go to the remaining server.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn removing_a_real_server_under_keepalive_load() {
    let _lock = lab_start("removing_a_real_server_under_keepalive_load", &["wrk"]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let web = lab.rr_web_service();
    let rs1 = "192.0.2.2:80";
    let ctx = |lab: &Lab| {
        format!(
            "\n--- rvsadm -L -n -c ---\n{}--- rvsd log ---\n{}",
            lab.adm(&["-L", "-n", "-c"]),
            lab.rvsd_log_tail()
        )
    };

    // expire_nodest_conn 0.
    let run = keepalive_load(&lab, || {
        lab.adm(&["-d", "-t", &web, "-r", rs1]);
    });
    let after = run.removed_at + 1;
    assert_eq!(
        run.errors,
        [0; 5],
        "no failed or hung request: {run:?}{}",
        ctx(&lab)
    );
    assert!(
        run.answers_from("rs1", after) > 0 && run.answers_from("rs2", after) > 0,
        "both servers' connections answer after rs1's removal: {run:?}{}",
        ctx(&lab)
    );
    assert!(run.answers.iter().all(|a| a.0.starts_with("rs")), "{run:?}");
    let counters = lab.adm(&["-L", "--counters"]);
    assert_eq!(counter(&counters, "tcp_rst_sent"), 0, "{counters}");
    // Nothing was routed plainly: no real server's segment reached the client un-NATed.
    assert_eq!(counter(&counters, "forwarded"), 0, "{counters}");

    // expire_nodest_conn 1.
    lab.adm(&["-a", "-t", &web, "-r", rs1, "-m"]);
    lab.ctl(&["sysctl", "-w", "expire_nodest_conn=1"]);
    assert_eq!(
        lab.ctl(&["sysctl", "expire_nodest_conn"]).trim(),
        "net.ipv4.vs.expire_nodest_conn = 1"
    );
    // New connections alternate between both servers again.
    let both: Vec<String> = (0..2).map(|_| curl_vip()).collect();
    assert!(both.contains(&"rs1".to_string()), "{both:?}");
    let run = keepalive_load(&lab, || {
        lab.adm(&["-d", "-t", &web, "-r", rs1]);
    });
    let [connect, read, write, status, timeout] = run.errors;
    assert_eq!(
        (connect, status, timeout),
        (0, 0, 0),
        "reset, not timed out: {run:?}{}",
        ctx(&lab)
    );
    assert!(
        (1..=4).contains(&(read + write)),
        "rs1's connections are reset (a socket error each): {run:?}{}",
        ctx(&lab)
    );
    // A response in flight at the removal may still arrive; nothing from rs1 after that.
    let settled = run.removed_at + 2;
    assert_eq!(run.answers_from("rs1", settled), 0, "{run:?}{}", ctx(&lab));
    assert!(run.answers_from("rs2", settled) > 0, "{run:?}{}", ctx(&lab));
    let counters = lab.adm(&["-L", "--counters"]);
    assert!(counter(&counters, "tcp_rst_sent") >= 1, "{counters}");
    assert!(counter(&counters, "drop.dest_removed") >= 1, "{counters}");
    // rs1's retransmissions of answers it sent before the reset (their ACKs never reached it)
    // match no connection any more: dropped (drop.rs_no_conn), never routed to the client.
    assert_eq!(counter(&counters, "forwarded"), 0, "{counters}");
    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// Schedulers and persistence.

/// The service line and the (address, weight) of each real-server line of `rvsadm -L -n -t`.
fn service_and_weights(listing: &str) -> (String, Vec<(String, u32)>) {
    let mut lines = listing
        .lines()
        .skip_while(|l| !l.starts_with("TCP") && !l.starts_with("UDP"));
    let service = lines.next().unwrap_or_default().to_owned();
    let weights = lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[0] == "->").then(|| (f[1].to_owned(), f[3].parse().unwrap_or(0)))
        })
        .collect();
    (service, weights)
}

/// `-s wrr` with weights 2 and 1: the kernel's sequence. Its cycle is rs1 rs1 rs2; where it
/// starts depends on the current weight `cw` the real-server changes left behind, exactly as
/// in the kernel: adding rs1 (weight 2) and then rs2 (weight 1) leaves cw at 1, so the first
/// pass is rs1 rs2; a new scheduler (`-E -s`) starts at the top of the cycle.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_wrr_follows_the_kernel_sequence() {
    let _lock = lab_start("rvsd_wrr_follows_the_kernel_sequence", &[]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let web = format!("{VIP}:80");
    lab.adm(&["-C"]);
    lab.adm(&["-A", "-t", &web, "-s", "wrr"]);
    lab.adm(&["-a", "-t", &web, "-r", "192.0.2.2:80", "-m", "-w", "2"]);
    lab.adm(&["-a", "-t", &web, "-r", "192.0.2.3:80", "-m", "-w", "1"]);
    let (service, weights) = service_and_weights(&lab.adm(&["-L", "-n", "-t", &web]));
    assert_eq!(service, format!("TCP  {web} wrr"));
    assert_eq!(
        weights,
        [
            ("192.0.2.2:80".to_owned(), 2),
            ("192.0.2.3:80".to_owned(), 1)
        ]
    );

    let http: Vec<String> = (0..8).map(|_| curl_vip()).collect();
    assert_eq!(
        http,
        ["rs1", "rs2", "rs1", "rs1", "rs2", "rs1", "rs1", "rs2"],
        "wrr 2:1 after adding the servers one by one\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );
    lab.adm(&["-E", "-t", &web, "-s", "rr"]);
    lab.adm(&["-E", "-t", &web, "-s", "wrr"]);
    let http: Vec<String> = (0..6).map(|_| curl_vip()).collect();
    assert_eq!(
        http,
        ["rs1", "rs1", "rs2", "rs1", "rs1", "rs2"],
        "wrr 2:1 from a fresh start\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );
    // Weight 0 quiesces rs1: only rs2 from now on.
    lab.adm(&["-e", "-t", &web, "-r", "192.0.2.2:80", "-w", "0"]);
    let http: Vec<String> = (0..3).map(|_| curl_vip()).collect();
    assert_eq!(http, ["rs2", "rs2", "rs2"]);
    lab.stop_rvsd();
}

/// `-p`: every connection of one client goes to one real server (rr would alternate), TCP
/// and UDP; quiescing that server (weight 0) keeps the client there, unless
/// `expire_quiescent_template` is 1: then the template goes and the client moves.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_persistence_keeps_a_client_on_one_server() {
    let _lock = lab_start("rvsd_persistence_keeps_a_client_on_one_server", &[]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let web = format!("{VIP}:80");
    let udp = format!("{VIP}:{UDP_PORT}");
    lab.adm(&["-C"]);
    lab.adm(&["-A", "-t", &web, "-s", "rr", "-p", "60"]);
    lab.adm(&[
        "-A",
        "-u",
        &udp,
        "-s",
        "rr",
        "-p",
        "60",
        "-M",
        "255.255.255.0",
    ]);
    for (_, ip) in RS {
        lab.adm(&["-a", "-t", &web, "-r", &format!("{ip}:80"), "-m"]);
        lab.adm(&["-a", "-u", &udp, "-r", &format!("{ip}:{UDP_PORT}"), "-m"]);
    }
    let listing = lab.adm(&["-L", "-n"]);
    assert!(
        listing
            .lines()
            .any(|l| l == format!("TCP  {web} rr persistent 60")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l == format!("UDP  {udp} rr persistent 60 mask 255.255.255.0")),
        "{listing}"
    );

    let http: Vec<String> = (0..6).map(|_| curl_vip()).collect();
    assert_eq!(
        http,
        vec![http[0].clone(); 6],
        "one client, one server\n--- rvsd log ---\n{}",
        lab.rvsd_log_tail()
    );
    let answers = udp_round_robin(4);
    assert_eq!(answers, vec![answers[0].clone(); 4], "UDP from new ports");

    // Quiesce the client's server: the template holds (expire_quiescent_template 0); with 1,
    // it goes, and the client moves to the other one and stays there.
    let first_ip = RS
        .iter()
        .find(|(n, _)| *n == http[0])
        .expect("a lab server")
        .1;
    let other = RS
        .iter()
        .find(|(n, _)| *n != http[0])
        .expect("the other one")
        .0;
    lab.adm(&["-e", "-t", &web, "-r", &format!("{first_ip}:80"), "-w", "0"]);
    let stayed: Vec<String> = (0..3).map(|_| curl_vip()).collect();
    assert_eq!(
        stayed,
        vec![http[0].clone(); 3],
        "a quiesced server keeps its clients"
    );
    lab.ctl(&["sysctl", "-w", "expire_quiescent_template=1"]);
    let moved: Vec<String> = (0..3).map(|_| curl_vip()).collect();
    assert_eq!(moved, [other, other, other]);
    lab.adm(&["-e", "-t", &web, "-r", &format!("{first_ip}:80"), "-w", "1"]);
    assert_eq!(curl_vip(), other, "the new template holds");
    lab.stop_rvsd();
}

/// Fragmented UDP both ways through rvsd, in every order `scripts/lab-fragments-check.sh`
/// sends (kernel, in order, later fragments reversed, and the first fragment last each way):
/// every datagram is answered, from the VIP, round robin, with the fragment counters as the
/// script expects (`FRAG_EARLY=answer`: a fragment that comes before its first one waits for
/// it).
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_fragments_in_any_order_are_answered() {
    let _lock = lab_start("rvsd_fragments_in_any_order_are_answered", &["python3"]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let mut c = cmd("bash");
    c.arg(workspace_root().join("scripts/lab-fragments-check.sh"))
        .env("RVS_SOCKET", &lab.socket)
        .env("RVSADM", rvsadm())
        .env("FRAG_EARLY", "answer")
        .env("FRAG_COUNT", "2");
    let r = run(c, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("scripts/lab-fragments-check.sh: {e}"));
    println!("{}", r.stdout);
    assert!(
        r.status.success(),
        "{}\n--- rvsd log ---\n{}",
        r.describe("FRAG_EARLY=answer scripts/lab-fragments-check.sh"),
        lab.rvsd_log_tail()
    );
    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// Reloading the configuration under load.

/// Under keep-alive load (wrk, eight connections for 10 s), rvsd's configuration file is
/// rewritten and SIGHUP-reloaded five times: a real server added, a weight changed, the
/// scheduler changed, timeouts changed, the file reloaded unchanged. No request fails, none
/// times out, every answer is a real server's 200, and afterwards every connection the director
/// tracked has finished (none left ESTABLISHED).
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn sighup_reloads_under_keepalive_load_lose_nothing() {
    let _lock = lab_start("sighup_reloads_under_keepalive_load_lose_nothing", &["wrk"]);
    let mut lab = Lab::up_with(false, 3);
    lab.start_rvsd();
    // The file rvsd started from, written by start_rvsd; its services come first (a top-level
    // key before the tables), extra tables last.
    let file = lab.tmp.join("rvs.toml");
    let base = fs::read_to_string(&file).expect("read the lab's rvs.toml");
    let web = format!("{VIP}:80");
    let write = |sched: &str, rs1_weight: u32, rs3: bool, extra: &str| {
        let mut services = format!(
            "-A -t {web} -s {sched}\n\
             -a -t {web} -r 192.0.2.2:80 -m -w {rs1_weight}\n\
             -a -t {web} -r 192.0.2.3:80 -m -w 1\n"
        );
        if rs3 {
            services.push_str(&format!("-a -t {web} -r 192.0.2.4:80 -m -w 1\n"));
        }
        fs::write(
            &file,
            format!("services = \"\"\"\n{services}\"\"\"\n{base}\n{extra}"),
        )
        .expect("rewrite rvs.toml");
    };
    let pid = lab.rvsd.as_ref().expect("rvsd running").pid();
    let reloads = std::cell::Cell::new(0);
    let reload = || {
        // SAFETY: kill(2) on rvsd's PID, which its guard has not reaped.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) };
        reloads.set(reloads.get() + 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_to_string(&lab.rvsd_log)
            .unwrap_or_default()
            .matches("configuration reloaded")
            .count()
            < reloads.get()
        {
            assert!(
                Instant::now() < deadline && lab.rvsd_alive(),
                "reload {} not logged\n--- rvsd log ---\n{}",
                reloads.get(),
                lab.rvsd_log_tail()
            );
            thread::sleep(Duration::from_millis(20));
        }
    };

    // The service comes from the file too.
    write("rr", 1, false, "");
    reload();
    let warm: Vec<String> = (0..2).map(|_| curl_vip()).collect();
    assert_eq!(warm, alternating(2));

    let run = keepalive_load_for(&lab, 8, 10, || {
        let steps: [(&str, u32, bool, &str); 4] = [
            ("rr", 1, true, ""),
            ("rr", 3, true, ""),
            ("wrr", 3, true, ""),
            (
                "wrr",
                3,
                true,
                "[conntrack.timeouts]\ntcp = 600\ntcp_fin = 60\nudp = 60\n",
            ),
        ];
        for (sched, weight, rs3, extra) in steps {
            write(sched, weight, rs3, extra);
            reload();
            thread::sleep(Duration::from_millis(1200));
        }
        // The same file again.
        reload();
    });
    let ctx = |lab: &Lab| {
        format!(
            "\n--- rvsadm -L -n -c ---\n{}--- rvsd log ---\n{}",
            lab.adm(&["-L", "-n", "-c"]),
            lab.rvsd_log_tail()
        )
    };
    assert_eq!(reloads.get(), 6);
    let not_200 = run
        .answers
        .iter()
        .filter(|a| !a.0.starts_with("rs"))
        .count();
    assert!(
        run.errors == [0; 5] && not_200 == 0,
        "no failed, hung or non-200 request: {run:?}{}",
        ctx(&lab)
    );
    // Each connection asks every 10 ms: a stalled one would show as far fewer requests.
    assert!(run.requests > 8 * 10 * 40, "{run:?}{}", ctx(&lab));

    let listing = lab.adm(&["-L", "-n", "-t", &web]);
    let (service, weights) = service_and_weights(&listing);
    assert!(service.contains("wrr"), "{listing}");
    assert_eq!(
        weights,
        [
            ("192.0.2.2:80".to_string(), 3),
            ("192.0.2.3:80".to_string(), 1),
            ("192.0.2.4:80".to_string(), 1)
        ],
        "{listing}"
    );
    assert!(lab.adm(&["-L", "-n", "--timeout"]).contains("600 60 60"));
    let log = fs::read_to_string(&lab.rvsd_log).unwrap_or_default();
    assert!(!log.contains("reload refused"), "{log}");

    // wrk closed its connections: the director sees every one of them finish.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conns = lab.adm(&["-L", "-n", "-c"]);
        if !conns.contains("ESTABLISHED") {
            break;
        }
        assert!(Instant::now() < deadline, "connections left open:\n{conns}");
        thread::sleep(Duration::from_millis(200));
    }
    lab.stop_rvsd();
}

/// A process started for a scenario (dpdk-dumpcap), stopped by PID when dropped, also when the
/// scenario panics.
struct Spawned {
    child: std::process::Child,
    stderr: PathBuf,
}

impl Spawned {
    /// SIGINT (dpdk-dumpcap's stop: it finishes the file), then up to `grace` to exit; SIGKILL
    /// after that. True when it exited on SIGINT.
    fn interrupt(&mut self, grace: Duration) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return false;
        }
        // SAFETY: kill(2) on our own child's PID, not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every frame of the enhanced packet blocks of a pcapng file.
///
/// DPDK 22.11's pcapng writer ends a packet block's options (flags, queue) without the
/// end-of-options marker, which pcap-file's packet block parser refuses: pcap-file walks the
/// blocks (section and interface headers parsed), and the frame is taken from the raw packet
/// block by its fixed layout (interface, timestamp high and low, captured length, original
/// length, data).
fn pcapng_frames(path: &Path) -> Vec<Vec<u8>> {
    use pcap_file::pcapng::PcapNgReader;
    use pcap_file::Endianness;
    const ENHANCED_PACKET_BLOCK: u32 = 6;
    let file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = PcapNgReader::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let big = reader.section().endianness == Endianness::Big;
    let mut frames = Vec::new();
    while let Some(block) = reader.next_raw_block() {
        let block = block.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if block.type_ != ENHANCED_PACKET_BLOCK {
            continue;
        }
        let body = &block.body;
        let len: [u8; 4] = body
            .get(12..16)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_else(|| {
                panic!("{}: a packet block of {} bytes", path.display(), body.len())
            });
        let captured = if big {
            u32::from_be_bytes(len)
        } else {
            u32::from_le_bytes(len)
        } as usize;
        let data = body.get(20..20 + captured).unwrap_or_else(|| {
            panic!(
                "{}: captured length {captured} past the block",
                path.display()
            )
        });
        frames.push(data.to_vec());
    }
    frames
}

/// A TCP SYN (no ACK) in an untagged Ethernet/IPv4 frame: (source, destination, destination
/// port).
fn tcp_syn(frame: &[u8]) -> Option<(std::net::Ipv4Addr, std::net::Ipv4Addr, u16)> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let tcp = ip.get(ihl..)?;
    let flags = *tcp.get(13)?;
    let (syn, ack) = (flags & 0x02 != 0, flags & 0x10 != 0);
    if !syn || ack {
        return None;
    }
    let addr = |at: usize| -> Option<std::net::Ipv4Addr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(b.into())
    };
    let dport = u16::from_be_bytes(tcp.get(2..4)?.try_into().ok()?);
    Some((addr(12)?, addr(16)?, dport))
}

/// dpdk-dumpcap, DPDK's capture tool, attaches to the lab's rvsd as a secondary process (its
/// file prefix, not --in-memory; rvsd's pdump server) with the command `rvsctl capture` prints,
/// and captures the internal port: a curl to the VIP is there as the DNATed SYN, from the
/// client to a real server's port 80.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn dpdk_dumpcap_captures_the_dnated_syn() {
    let _lock = lab_start("dpdk_dumpcap_captures_the_dnated_syn", &["dpdk-dumpcap"]);
    assert!(
        !std::env::var("RVS_LAB_EAL_ARGS")
            .unwrap_or_default()
            .contains("--no-huge"),
        "dpdk-dumpcap maps rvsd's hugepage files: this scenario needs hugepages, not --no-huge"
    );
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    lab.rr_web_service();

    let pcap = lab.tmp.join("int.pcapng");
    let pcap_arg = pcap.to_str().expect("utf-8 temp path");
    let hint = lab.ctl(&["capture", "int", "-w", pcap_arg]);
    let words: Vec<&str> = hint.split_whitespace().collect();
    let prefix = lab_file_prefix();
    assert_eq!(
        words,
        [
            "dpdk-dumpcap",
            &format!("--file-prefix={prefix}"),
            "-i",
            "net_af_xdp1",
            "-w",
            pcap_arg
        ],
        "rvsctl capture int: {hint}"
    );

    let stderr = lab.tmp.join("dumpcap.err");
    let mut c = cmd("ip");
    c.args(["netns", "exec", "rvs-dir"])
        .args(&words)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr).expect("create dumpcap.err"));
    // `ip netns exec` execs dpdk-dumpcap: the child's PID is dumpcap's.
    let mut dumpcap = Spawned {
        child: c.spawn().expect("start dpdk-dumpcap"),
        stderr,
    };
    // Capturing once it has written the file's header (the pcapng section and interface).
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::metadata(&pcap).map_or(0, |m| m.len()) == 0 {
        assert!(
            matches!(dumpcap.child.try_wait(), Ok(None)),
            "dpdk-dumpcap exited: {}\n--- rvsd log ---\n{}",
            dumpcap.stderr_text(),
            lab.rvsd_log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "dpdk-dumpcap wrote nothing in 30 s: {}",
            dumpcap.stderr_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(500));

    let served = curl_vip();
    assert!(RS.iter().any(|(name, _)| *name == served), "{served}");
    thread::sleep(Duration::from_millis(500));
    assert!(
        dumpcap.interrupt(Duration::from_secs(10)),
        "dpdk-dumpcap did not stop on SIGINT: {}",
        dumpcap.stderr_text()
    );

    let frames = pcapng_frames(&pcap);
    let syns: Vec<_> = frames.iter().filter_map(|f| tcp_syn(f)).collect();
    let client: std::net::Ipv4Addr = "198.51.100.10".parse().expect("address");
    let served_ip: std::net::Ipv4Addr = RS
        .iter()
        .find(|(name, _)| *name == served)
        .map(|(_, ip)| ip.parse().expect("address"))
        .expect("a real server");
    assert!(
        syns.contains(&(client, served_ip, 80)),
        "no DNATed SYN {client} -> {served_ip}:80 among {} captured frames; SYNs: {syns:?}\n{}",
        frames.len(),
        dumpcap.stderr_text()
    );
    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// Metrics and status page, with the real Prometheus and Chromium.

const METRICS_ADDR: &str = "203.0.113.1";

/// One GET from inside rvs-dir: the body of a 2xx answer, or what went wrong.
fn dir_try_get(url: &str) -> Result<String, String> {
    let mut c = cmd("ip");
    c.args([
        "netns",
        "exec",
        "rvs-dir",
        "curl",
        "-sSf",
        "--max-time",
        "5",
        url,
    ]);
    let r = run(c, Duration::from_secs(15)).map_err(|e| e.to_string())?;
    if r.status.success() {
        Ok(r.stdout)
    } else {
        Err(r.describe(&format!("curl {url}")))
    }
}

fn dir_get(url: &str) -> String {
    dir_try_get(url).unwrap_or_else(|e| panic!("{e}"))
}

/// Per real server (`remote_address`), the value of `query` in Prometheus's answer.
fn prometheus_values(query: &str) -> Vec<(String, u64)> {
    let url = format!("http://{METRICS_ADDR}:9090/api/v1/query?query={query}");
    let answer: serde_json::Value =
        serde_json::from_str(&dir_get(&url)).unwrap_or_else(|e| panic!("{url}: {e}"));
    let mut out: Vec<(String, u64)> = answer["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|s| {
                    let rip = s["metric"]["remote_address"].as_str()?.to_string();
                    let v = s["value"][1].as_str()?.parse().ok()?;
                    Some((rip, v))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `Conns` of each real server in `rvsadm -Ln --stats`.
fn stats_conns(listing: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let rip = f.get(1)?.split(':').next()?;
            (f.first() == Some(&"->")).then_some(())?;
            Some((rip.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect();
    out.sort();
    out
}

/// rvsd's metrics listener on 203.0.113.1:9180 inside rvs-dir, scraped every second by Debian's
/// Prometheus (also in rvs-dir): after curls through the VIP, its HTTP API returns each real
/// server's connections as `rvsadm -Ln --stats` and `-Ln` count them. Then headless Chromium
/// loads the status page: after the page's own refresh the DOM holds the service and both real
/// servers with those counts; with RVS_UPDATE_SCREENSHOT=1 its screenshot replaces
/// docs/status-page.png.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_metrics_scraped_by_prometheus_and_status_page_in_chromium() {
    let test = "rvsd_metrics_scraped_by_prometheus_and_status_page_in_chromium";
    let _lock = lab_start(test, &["prometheus", "chromium"]);
    let mut lab = Lab::up(false);
    for args in [
        &["-n", "rvs-dir", "link", "set", "lo", "up"][..],
        &[
            "-n",
            "rvs-dir",
            "addr",
            "add",
            "203.0.113.1/32",
            "dev",
            "lo",
        ][..],
    ] {
        let r = run(
            {
                let mut c = cmd("ip");
                c.args(args);
                c
            },
            Duration::from_secs(10),
        )
        .expect("run ip");
        assert!(
            r.status.success(),
            "{}",
            r.describe(&format!("ip {}", args.join(" ")))
        );
    }
    lab.start_rvsd_with(&format!("\n[metrics]\nlisten = \"{METRICS_ADDR}:9180\"\n"));
    let web = lab.rr_web_service();
    for _ in 0..4 {
        curl_vip();
    }

    let prom_dir = lab.tmp.join("prometheus");
    fs::create_dir_all(&prom_dir).expect("prometheus dir");
    let prom_config = prom_dir.join("prometheus.yml");
    fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: rvs\n    static_configs:\n      \
             - targets: ['{METRICS_ADDR}:9180']\n"
        ),
    )
    .expect("write prometheus.yml");
    let prom_log = fs::File::create(prom_dir.join("log")).expect("prometheus log");
    let mut c = cmd("ip");
    c.args(["netns", "exec", "rvs-dir"])
        .arg(find_tool("prometheus").expect("prometheus"))
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            prom_dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={METRICS_ADDR}:9090"))
        .stdin(Stdio::null())
        .stdout(prom_log.try_clone().expect("log"))
        .stderr(prom_log);
    // `ip netns exec` execs prometheus: the child's PID is prometheus's.
    let mut prometheus = Spawned {
        child: c.spawn().expect("start prometheus"),
        stderr: prom_dir.join("log"),
    };

    let ready_url = format!("http://{METRICS_ADDR}:9090/-/ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = dir_try_get(&ready_url) {
        let exited = prometheus.child.try_wait().ok().flatten();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "prometheus not ready ({exited:?}): {e}\n--- prometheus log ---\n{}",
            head_and_tail(&prom_dir.join("log"), 10, 30)
        );
        thread::sleep(Duration::from_millis(200));
    }
    let stats = lab.adm(&["-L", "-n", "--stats"]);
    let listing = lab.adm(&["-L", "-n"]);
    let conns = stats_conns(&stats);
    let inactive: Vec<(String, u64)> = RS
        .iter()
        .map(|(_, ip)| {
            let (_, _, inact) = rs_state(&listing, &format!("{ip}:80")).expect("listed");
            (ip.to_string(), inact)
        })
        .collect();
    assert_eq!(conns.len(), 2, "{stats}");
    assert_eq!(conns.iter().map(|(_, n)| n).sum::<u64>(), 6, "{stats}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut seen_conns, mut seen_inactive) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        seen_conns = prometheus_values("rvs_backend_connections_total");
        seen_inactive = prometheus_values("node_ipvs_backend_connections_inactive");
        if seen_conns == conns && seen_inactive == inactive {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        (&seen_conns, &seen_inactive),
        (&conns, &inactive),
        "Prometheus's answers against rvsadm -Ln --stats:\n{stats}\nand -Ln:\n{listing}\n\
         --- prometheus log ---\n{}",
        head_and_tail(&prom_dir.join("log"), 10, 30)
    );
    assert!(
        prometheus.interrupt(Duration::from_secs(10)),
        "prometheus stops on SIGINT"
    );

    let page = format!("http://{METRICS_ADDR}:9180/");
    let chromium = |extra: &[String]| -> Ran {
        let mut c = cmd("ip");
        c.args([
            "netns",
            "exec",
            "rvs-dir",
            "chromium",
            "--headless",
            "--no-sandbox",
        ])
        .args([
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,820",
        ])
        .arg(format!(
            "--user-data-dir={}",
            lab.tmp.join("chromium").display()
        ))
        .arg("--virtual-time-budget=4000")
        .args(extra)
        .arg(&page);
        let r = run(c, Duration::from_secs(120)).expect("run chromium");
        assert!(r.status.success(), "{}", r.describe("chromium"));
        r
    };
    let dom = chromium(&["--dump-dom".to_string()]).stdout;
    let refreshes: u32 = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        refreshes >= 2,
        "the page refreshed itself at least twice:\n{dom}"
    );
    assert!(
        dom.contains(&format!("data-service=\"tcp:{web}\"")),
        "{dom}"
    );
    for ((rip, n), (_, inact)) in conns.iter().zip(&inactive) {
        let row = format!(
            "data-real=\"{rip}:80\" data-active=\"0\" data-inactive=\"{inact}\" data-conns=\"{n}\""
        );
        assert!(dom.contains(&row), "missing {row} in\n{dom}");
    }
    assert!(dom.contains("Health"), "{dom}");
    // Both connection tables' backing, as status.json reports it, and their memory.
    let status: serde_json::Value =
        serde_json::from_str(&dir_get(&format!("http://{METRICS_ADDR}:9180/status.json")))
            .expect("status.json");
    let counter = |name: &str| {
        status["counters"]
            .as_array()
            .and_then(|c| c.iter().find(|kv| kv[0] == name))
            .and_then(|kv| kv[1].as_u64())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    let backings: Vec<u64> = dom
        .split("data-hugetlb=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next()?.parse().ok())
        .collect();
    assert_eq!(
        backings,
        [counter("conntrack.hugetlb"), counter("conntrack6.hugetlb")],
        "{dom}"
    );
    assert_eq!(dom.matches(" MiB<").count(), 2, "{dom}");

    // The screenshot under load, so that the rates show: the manager's estimate over the last
    // seconds, as `rvsadm -L --rate` prints it.
    let load = CurlLoad::start(format!("http://{VIP}/"), 2, 2_000);
    thread::sleep(Duration::from_secs(5));
    let status: serde_json::Value =
        serde_json::from_str(&dir_get(&format!("http://{METRICS_ADDR}:9180/status.json")))
            .expect("status.json");
    let cps = status["services"][0]["stats"]["rates"]["cps"].as_u64();
    assert!(
        cps.is_some_and(|r| r > 0),
        "a live connection rate: {status}"
    );
    let shot = lab.tmp.join("status-page.png");
    chromium(&[format!("--screenshot={}", shot.display())]);
    let shots = load.finish();
    let failed: Vec<&String> = shots
        .iter()
        .filter_map(|s| s.answer.as_ref().err())
        .collect();
    assert!(failed.is_empty(), "requests failed under load: {failed:?}");
    let png = fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    // The docs' screenshot is refreshed only when asked, so a test run leaves the tree clean.
    if std::env::var_os("RVS_UPDATE_SCREENSHOT").is_some() {
        fs::write(workspace_root().join("docs/status-page.png"), &png)
            .expect("save the screenshot");
    }

    lab.adm(&["-C"]);
    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// The kernel exception path: sockets in rvs-dir reach the real servers through rvsd's port.

/// One command inside namespace `ns`, bounded; its output.
fn in_ns(ns: &str, args: &[&str], timeout: Duration) -> Ran {
    let mut c = cmd("ip");
    c.args(["netns", "exec", ns]).args(args);
    run(c, timeout).unwrap_or_else(|e| panic!("{ns}: {}: {e}", args.join(" ")))
}

/// UDP datagrams from a thread in namespace `ns` to `dst`, about `per_ms` a millisecond for
/// `secs` seconds; how many were sent.
fn udp_flood(ns: &str, dst: SocketAddr, per_ms: usize, secs: u64) -> thread::JoinHandle<u64> {
    let ns_path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let f = fs::File::open(&ns_path).expect("namespace file");
        // SAFETY: a valid namespace fd; affects the calling thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        let end = Instant::now() + Duration::from_secs(secs);
        let mut sent = 0u64;
        while Instant::now() < end {
            for _ in 0..per_ms {
                if sock.send_to(b"flood", dst).is_ok() {
                    sent += 1;
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
        sent
    })
}

/// From rvs-dir, whose veths belong to AF_XDP: ping and curl to a real server work only
/// through rvsd's kernel twin (rvs-int0, the DIP); curls to the VIP keep working meanwhile.
/// Then a UDP flood from a real server at the DIP is rate-limited (`drop.kernel_rate_limited`)
/// while VIP traffic still flows.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_exception_path_carries_director_sockets() {
    let _lock = lab_start("rvsd_exception_path_carries_director_sockets", &["ping"]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let web = lab.rr_web_service();
    let (rs1, rs1_ip) = RS[0];

    // The twin carries the DIP, and is the only interface in rvs-dir that does.
    let addrs = in_ns(
        "rvs-dir",
        &["ip", "-o", "-4", "addr"],
        Duration::from_secs(10),
    )
    .stdout;
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("rvs-int0") && l.contains("192.0.2.1/24")),
        "{addrs}\n{}",
        lab.rvsd_log_tail()
    );
    assert!(!addrs.contains("rvs-dint"), "{addrs}");

    let ping = in_ns(
        "rvs-dir",
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", rs1_ip],
        Duration::from_secs(20),
    );
    assert!(
        ping.status.success() && ping.stdout.contains("3 received"),
        "{}\n--- rvsd log ---\n{}",
        ping.describe("ping from rvs-dir"),
        lab.rvsd_log_tail()
    );
    for _ in 0..3 {
        let curl = in_ns(
            "rvs-dir",
            &[
                "curl",
                "-sS",
                "--max-time",
                "10",
                &format!("http://{rs1_ip}/"),
            ],
            Duration::from_secs(20),
        );
        assert!(
            curl.status.success() && curl.stdout.trim() == rs1,
            "{}\n--- counters ---\n{}",
            curl.describe("curl from rvs-dir to rs1"),
            lab.ctl(&["counters"])
        );
        // The VIP is unaffected.
        let answer = curl_vip();
        assert!(RS.iter().any(|(name, _)| *name == answer), "{answer}");
    }
    let counters = lab.ctl(&["counters"]);
    assert!(counter(&counters, "to_kernel") >= 3 + 3, "{counters}");
    assert!(counter(&counters, "from_kernel") >= 3 + 3, "{counters}");
    assert_eq!(
        counter(&counters, "drop.kernel_rate_limited"),
        0,
        "{counters}"
    );

    // A flood at the DIP from a real server: 3 s at ~20,000 datagrams a second, five times
    // the default rate (4000/s per worker, burst 256; the lab has one worker).
    let before = counter(&counters, "to_kernel");
    let dip: SocketAddr = "192.0.2.1:9999".parse().unwrap();
    let flood = udp_flood("rvs-rs2", dip, 20, 3);
    let start = Instant::now();
    let mut answers = Vec::new();
    while start.elapsed() < Duration::from_secs(2) {
        answers.push(curl_vip());
    }
    let sent = flood.join().expect("flood thread");
    let secs = start.elapsed().as_secs_f64();
    let after = lab.ctl(&["counters"]);
    let up = counter(&after, "to_kernel") - before;
    let limited = counter(&after, "drop.kernel_rate_limited");
    println!(
        "flood: {sent} datagrams in {secs:.1} s, {up} up to the kernel, {limited} rate-limited, \
         {} VIP requests answered meanwhile",
        answers.len()
    );
    assert!(limited > 0, "{after}");
    assert!(
        (up as f64) <= 4000.0 * (secs + 1.0) + 256.0,
        "{up} up in {secs:.1} s\n{after}"
    );
    assert!(!answers.is_empty() && answers.iter().all(|a| RS.iter().any(|(n, _)| n == a)));
    // And the VIP service is listed as it was.
    let listing = lab.adm(&["-L", "-n"]);
    assert!(listing.contains(&web), "{listing}");
    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// Health checks through rvsd: rvs-healthd in rvs-dir, its checks through the kernel twin, nginx
// on a real server stopped and started by PID (`scripts/lab.sh rs-stop N` / `rs-start N`).

/// rvs-healthd from the target directory rvsd is in (built when missing).
fn healthd_bin() -> PathBuf {
    bin_beside(
        Path::new(env!("CARGO_BIN_EXE_rvsd")),
        "health",
        "rvs-healthd",
    )
}

/// rvs-healthd running in rvs-dir against the lab's rvsd; killed by PID on drop.
struct Healthd {
    child: std::process::Child,
    log: PathBuf,
}

impl Healthd {
    fn start(lab: &Lab, conf: &Path) -> Healthd {
        let log = lab.tmp.join("rvs-healthd.log");
        let out = fs::File::create(&log).expect("rvs-healthd log");
        // `ip netns exec` execs rvs-healthd: the child's PID is rvs-healthd's.
        let child = cmd("ip")
            .args(["netns", "exec", "rvs-dir"])
            .arg(healthd_bin())
            .arg("-f")
            .arg(conf)
            .arg("--socket")
            .arg(&lab.socket)
            // rvsd's configuration: the ports' kernel twins, for vrrp_instance.
            .arg("--rvs-config")
            .arg(lab.tmp.join("rvs.toml"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("start rvs-healthd");
        Healthd { child, log }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM by PID; its exit status (killed after 10 s).
    fn stop(mut self) -> (ExitStatus, String) {
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let st = loop {
            if let Some(st) = self.child.try_wait().expect("wait rvs-healthd") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "rvs-healthd ignores SIGTERM\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        };
        (st, self.log())
    }
}

impl Drop for Healthd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- rvs-healthd log ---\n{}", self.log());
        }
    }
}

/// Debian's keepalived and rvs-healthd both accept `conf` (`--config-test`).
fn both_accept(conf: &Path) {
    for program in [PathBuf::from("keepalived"), healthd_bin()] {
        let mut c = cmd(&program);
        c.arg("--config-test").arg("-f").arg(conf);
        let r = run(c, Duration::from_secs(20)).expect("config test");
        assert!(
            r.status.success(),
            "{}\n{}",
            r.describe(&format!(
                "{} --config-test -f {}",
                program.display(),
                conf.display()
            )),
            fs::read_to_string(conf).unwrap_or_default()
        );
    }
}

/// The real servers `rvsadm -L -n` lists under `service` ("IP:PORT"): address -> weight; none
/// while the service is not there (rvs-healthd not yet started, or gone).
fn weights_of(lab: &Lab, service: &str) -> Vec<(String, u32)> {
    let mut c = cmd(rvsadm());
    c.args(["-L", "-n", "-t", service])
        .env("RVS_SOCKET", &lab.socket);
    let r = run(c, Duration::from_secs(20)).expect("run rvsadm");
    if !r.status.success() && r.stderr.contains("No such service") {
        return Vec::new();
    }
    assert!(r.status.success(), "{}", r.describe("rvsadm -L -n -t"));
    r.stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "->").then_some(())?;
            let ep = w.next()?;
            let _forward = w.next()?;
            Some((ep.to_string(), w.next()?.parse().ok()?))
        })
        .filter(|(ep, _)| ep != "RemoteAddress:Port")
        .collect()
}

/// Waits (at most `within`) until `service`'s real servers are `want`; when that was seen.
fn wait_weights(
    lab: &Lab,
    service: &str,
    want: &[(&str, u32)],
    within: Duration,
    healthd: &Healthd,
) -> Instant {
    let want: Vec<(String, u32)> = want.iter().map(|(e, w)| (e.to_string(), *w)).collect();
    let deadline = Instant::now() + within;
    loop {
        let mut got = weights_of(lab, service);
        got.sort();
        let mut sorted = want.clone();
        sorted.sort();
        if got == sorted {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "after {within:?} rvsadm -Ln -t {service} shows {got:?}, wanted {want:?}\n\
             --- rvs-healthd log ---\n{}",
            healthd.log()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// `scripts/lab.sh rs-stop N` or `rs-start N`: nginx of real server N, by its PID.
fn real_server_nginx(action: &str, n: usize) {
    let r = lab_script(&[action, &n.to_string()], &[]);
    assert!(
        r.status.success(),
        "{}",
        r.describe(&format!("lab.sh {action} {n}"))
    );
}

/// The HTTP_GET digest of `http://ip/` as keepalived's genhash prints it, fetched from rvs-dir
/// through rvsd's kernel twin (as an operator writing keepalived.conf would).
fn genhash_in_dir(ip: &str) -> String {
    // Right after rvsd's socket appears its twins may still be coming up ("network
    // unreachable"): a few tries.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = in_ns(
            "rvs-dir",
            &["genhash", "-s", ip, "-p", "80", "-u", "/"],
            Duration::from_secs(20),
        );
        if (r.status.success() && !r.stdout.contains("unreachable")) || Instant::now() > deadline {
            break r;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert!(r.status.success(), "{}", r.describe("genhash"));
    r.stdout
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 32)
        .unwrap_or_else(|| panic!("no MD5 in genhash's output:\n{}", r.describe("genhash")))
        .to_ascii_lowercase()
}

/// keepalived.conf for the seed's setup, as an LVS user writes it: VIP:80 round robin over
/// rs1 (HTTP_GET with the page's digest, weight 0 when it fails) and rs2 (TCP_CHECK, removed
/// when it fails).
fn seed_keepalived_conf(digest: &str) -> String {
    format!(
        "! rvs lab: the seed's LVS-NAT service, health-checked
virtual_server {VIP} 80 {{
    delay_loop 2
    lb_algo rr
    lb_kind NAT
    protocol TCP

    real_server 192.0.2.2 80 {{
        weight 1
        inhibit_on_failure
        HTTP_GET {{
            url {{
                path /
                digest {digest}
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
    real_server 192.0.2.3 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
}}
"
    )
}

/// SIGTERM to rvs-healthd: it exits 0 having removed what it installed, as keepalived removes
/// its IPVS services, so rvsd lists no service on the VIP. Its log.
fn stop_healthd_and_check_release(lab: &Lab, healthd: Healthd) -> String {
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd exit: {st}\n{log}");
    assert!(log.contains("virtual server removed"), "{log}");
    let listing = lab.adm(&["-L", "-n"]);
    assert!(
        !listing.contains(VIP),
        "service left after SIGTERM:\n{listing}"
    );
    log
}

/// The answers of the shots that started in `[from, to)`: (answered by, failed).
fn shots_between(shots: &[Shot], from: Instant, to: Instant) -> (Vec<&str>, Vec<&str>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for s in shots.iter().filter(|s| s.start >= from && s.start < to) {
        match &s.answer {
            Ok(a) => ok.push(a.as_str()),
            Err(e) => failed.push(e.as_str()),
        }
    }
    (ok, failed)
}

/// The seed's setup health-checked by rvs-healthd in rvs-dir through rvsd's kernel twin. Under a
/// curl loop through the VIP, rs2's nginx is stopped by PID: rs2 leaves the rotation within
/// `delay_loop * retry + connect_timeout` (plus slack), after which every curl succeeds from
/// rs1; nginx started again, rs2 returns and answers. Then rs1's page changes: its HTTP_GET
/// digest fails and it goes to weight 0 (inhibit_on_failure), every curl answers rs2, and the
/// page restored brings it back. SIGTERM to rvs-healthd removes its virtual server.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvs_healthd_takes_a_dead_real_server_out_and_back_through_rvsd() {
    let _lock = lab_start(
        "rvs_healthd_takes_a_dead_real_server_out_and_back_through_rvsd",
        &["keepalived", "genhash"],
    );
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let web = format!("{VIP}:80");
    let (rs1, rs2) = ("192.0.2.2:80", "192.0.2.3:80");

    let digest = genhash_in_dir("192.0.2.2");
    let md5sum = cmd("md5sum")
        .arg(Path::new(LAB_STATE_DIR).join("rs1/www/index.html"))
        .output()
        .expect("md5sum");
    assert!(
        String::from_utf8_lossy(&md5sum.stdout).starts_with(&digest),
        "genhash {digest} against md5sum {}",
        String::from_utf8_lossy(&md5sum.stdout)
    );
    let conf = lab.tmp.join("keepalived.conf");
    fs::write(&conf, seed_keepalived_conf(&digest)).expect("write keepalived.conf");
    both_accept(&conf);

    let healthd = Healthd::start(&lab, &conf);
    let all_in = [(rs1, 1), (rs2, 1)];
    wait_weights(&lab, &web, &all_in, Duration::from_secs(15), &healthd);

    // delay_loop * retry + connect_timeout for rs2's TCP_CHECK. A refused connect fails at
    // once, so the worst is delay_loop (the next check) + retry * delay_before_retry, the same
    // 3 s. Slack 1 s: lab.sh's own start before its kill, the 20 ms listing poll, the checks'
    // round trips through the exception path and rvs-healthd's scheduling tick.
    let bound = Duration::from_secs(2 + 1);
    let slack = Duration::from_secs(1);

    let load = CurlLoad::start(format!("http://{VIP}/"), 2, 100_000);
    thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    real_server_nginx("rs-stop", 2);
    let out = wait_weights(&lab, &web, &[(rs1, 1)], bound + slack, &healthd);
    thread::sleep(Duration::from_secs(3));
    let restarted = Instant::now();
    real_server_nginx("rs-start", 2);
    let listening = Instant::now();
    // One successful check brings it back: within delay_loop, plus the same slack.
    let back = wait_weights(
        &lab,
        &web,
        &all_in,
        Duration::from_secs(2) + slack,
        &healthd,
    );
    thread::sleep(Duration::from_secs(3));
    let end = Instant::now();
    let shots = load.finish();

    let detection = out - killed;
    let recovery = back - listening;
    println!(
        "rs2 stopped: out of the rotation after {:.2} s (bound delay_loop * retry + \
         connect_timeout = {:.1} s); started (lab.sh rs-start took {:.2} s): back after {:.2} s \
         (bound delay_loop = 2 s)",
        detection.as_secs_f64(),
        bound.as_secs_f64(),
        (listening - restarted).as_secs_f64(),
        recovery.as_secs_f64()
    );

    let (before, failed) = shots_between(&shots, killed - Duration::from_secs(2), killed);
    assert!(failed.is_empty(), "before the kill: {failed:?}");
    assert!(
        before.contains(&"rs1") && before.contains(&"rs2"),
        "{before:?}"
    );
    // Until rvs-healthd noticed, the requests rr gave rs2 failed (refused): the cost of
    // detection, counted here.
    let (during, refused) = shots_between(&shots, killed, out);
    let (after, failed) = shots_between(&shots, out, restarted);
    assert!(
        failed.is_empty(),
        "rs2 out, yet requests failed: {failed:?}"
    );
    assert!(
        !after.is_empty() && after.iter().all(|a| *a == "rs1"),
        "rs2 out: {after:?}"
    );
    let (returned, failed) = shots_between(&shots, back, end);
    assert!(failed.is_empty(), "rs2 back, requests failed: {failed:?}");
    assert!(
        returned.contains(&"rs2") && returned.contains(&"rs1"),
        "rs2 back: {returned:?}"
    );
    println!(
        "curl loop: {} requests; before detection {} answered and {} failed, {} from rs1 alone \
         while rs2 was out, {} after it returned",
        shots.len(),
        during.len(),
        refused.len(),
        after.len(),
        returned.len()
    );

    // HTTP_GET's digest: rs1 serving another page fails it; inhibit_on_failure keeps it in at
    // weight 0 until the page is right again.
    let page = Path::new(LAB_STATE_DIR).join("rs1/www/index.html");
    fs::write(&page, "rs1 under maintenance\n").expect("rewrite rs1's page");
    let changed = Instant::now();
    // Up to delay_loop for the next check, delay_before_retry for the retry, plus the slack.
    let out = wait_weights(
        &lab,
        &web,
        &[(rs1, 0), (rs2, 1)],
        Duration::from_secs(2 + 1) + slack,
        &healthd,
    );
    println!(
        "rs1's page changed: weight 0 after {:.2} s (digest mismatch)",
        (out - changed).as_secs_f64()
    );
    for _ in 0..4 {
        assert_eq!(curl_vip(), "rs2");
    }
    fs::write(&page, "rs1\n").expect("restore rs1's page");
    wait_weights(
        &lab,
        &web,
        &all_in,
        Duration::from_secs(2) + slack,
        &healthd,
    );
    let log = healthd.log();
    assert!(log.contains("digest"), "the digest failure logged:\n{log}");

    stop_healthd_and_check_release(&lab, healthd);
    lab.stop_rvsd();
}

/// Health checks to IPv6 real servers through rvsd's internal twin, which carries the port's
/// IPv6 address (2001:db8:2::1/64, `nodad`) and link-local address while IPv6 stays off on the
/// DPDK ports' veths:
/// ping6 and curl from rvs-dir reach a real server; rvs-healthd checks [VIP6]:80's real servers
/// ([rs1]:80 HTTP_GET with its page's digest, weight 0 when it fails; [rs2]:80 TCP_CHECK,
/// removed when it fails); each one's nginx stopped by PID takes it out, started again brings
/// it back; SIGTERM removes the virtual server.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvs_healthd_checks_ipv6_real_servers_through_the_twin() {
    let _lock = lab_start(
        "rvs_healthd_checks_ipv6_real_servers_through_the_twin",
        &["keepalived", "ping"],
    );
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let ((rs1_name, rs1_ip), (_, rs2_ip)) = (RS6[0], RS6[1]);
    let (rs1, rs2) = (sock(rs1_ip, 80).to_string(), sock(rs2_ip, 80).to_string());
    let web = sock(VIP6, 80).to_string();

    // The twin carries DIP6 (rvsd's socket answers before its twins are up: bounded wait);
    // the veths AF_XDP owns have IPv6 off and no address.
    let deadline = Instant::now() + Duration::from_secs(10);
    let addrs = loop {
        let a = in_ns(
            "rvs-dir",
            &["ip", "-o", "-6", "addr"],
            Duration::from_secs(10),
        )
        .stdout;
        if a.lines()
            .any(|l| l.contains("rvs-int0") && l.contains("2001:db8:2::1/64"))
        {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no 2001:db8:2::1/64 on rvs-int0:\n{a}\n--- rvsd log ---\n{}",
            lab.rvsd_log_tail()
        );
        thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !addrs.contains("rvs-dint") && !addrs.contains("rvs-dext"),
        "{addrs}"
    );
    // The only link-local addresses are the twins', each its port's own (EUI-64 from the
    // DPDK port's MAC, which rvsd answers solicitations for), not one of the kernel's making.
    for (twin, port) in [("rvs-int0", "rvs-dint"), ("rvs-ext0", "rvs-dext")] {
        let ll = dataplane::packet::ipv6::link_local_of(link_mac("rvs-dir", port));
        assert!(
            addrs
                .lines()
                .any(|l| l.contains(twin) && l.contains(&format!("inet6 {ll}/64"))),
            "{twin} has {ll}: {addrs}"
        );
    }
    assert_eq!(
        addrs.matches("fe80").count(),
        2,
        "only the twins' link-local addresses: {addrs}"
    );
    for ifname in ["rvs-dint", "rvs-dext"] {
        let off = in_ns(
            "rvs-dir",
            &[
                "cat",
                &format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
            ],
            Duration::from_secs(10),
        );
        assert_eq!(off.stdout.trim(), "1", "{ifname}: {}", off.describe("cat"));
    }

    // ping6 (its echo replies go up the twin) and curl from rvs-dir to rs1.
    let ping = in_ns(
        "rvs-dir",
        &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", rs1_ip],
        Duration::from_secs(20),
    );
    assert!(
        ping.status.success() && ping.stdout.contains("3 received"),
        "{}\n--- counters ---\n{}",
        ping.describe("ping -6 from rvs-dir"),
        lab.ctl(&["counters"])
    );
    let url = http_url(sock(rs1_ip, 80), "/");
    let curl = curl_in("rvs-dir", &url, 10).expect("run curl");
    assert!(
        curl.status.success() && curl.stdout.trim() == rs1_name,
        "{}\n--- counters ---\n{}",
        curl.describe(&format!("curl from rvs-dir to {url}")),
        lab.ctl(&["counters"])
    );

    let md5sum = cmd("md5sum")
        .arg(Path::new(LAB_STATE_DIR).join("rs1/www/index.html"))
        .output()
        .expect("md5sum");
    let digest = String::from_utf8_lossy(&md5sum.stdout)
        .split_whitespace()
        .next()
        .expect("md5sum output")
        .to_string();
    let conf = lab.tmp.join("keepalived.conf");
    fs::write(
        &conf,
        format!(
            "! rvs lab: an IPv6 LVS-NAT service, health-checked
virtual_server {VIP6} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP

    real_server {rs1_ip} 80 {{
        weight 1
        inhibit_on_failure
        HTTP_GET {{
            url {{
                path /
                digest {digest}
            }}
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
    real_server {rs2_ip} 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 0.5
        }}
    }}
}}
"
        ),
    )
    .expect("write keepalived.conf");
    both_accept(&conf);

    let healthd = Healthd::start(&lab, &conf);
    let within = Duration::from_secs(20);
    wait_weights(&lab, &web, &[(&rs1, 1), (&rs2, 1)], within, &healthd);
    let answer = curl_to(VIP6);
    assert!(RS6.iter().any(|(n, _)| *n == answer), "{answer}");

    // rs1 down: weight 0 (inhibit_on_failure); up again: weight 1.
    real_server_nginx("rs-stop", 1);
    wait_weights(&lab, &web, &[(&rs1, 0), (&rs2, 1)], within, &healthd);
    for _ in 0..4 {
        assert_eq!(curl_to(VIP6), "rs2", "rs1 is out");
    }
    real_server_nginx("rs-start", 1);
    wait_weights(&lab, &web, &[(&rs1, 1), (&rs2, 1)], within, &healthd);
    // rs2 down: removed; up again: back.
    real_server_nginx("rs-stop", 2);
    wait_weights(&lab, &web, &[(&rs1, 1)], within, &healthd);
    real_server_nginx("rs-start", 2);
    wait_weights(&lab, &web, &[(&rs1, 1), (&rs2, 1)], within, &healthd);

    let counters = lab.ctl(&["counters"]);
    assert!(counter(&counters, "to_kernel") > 0, "{counters}");
    assert!(counter(&counters, "from_kernel") > 0, "{counters}");
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd exit: {st}\n{log}");
    assert!(
        log.contains(&format!("connect to {rs2}")),
        "the failed TCP_CHECK logged with its IPv6 address:\n{log}"
    );
    let listing = lab.adm(&["-L", "-n"]);
    assert!(
        !listing.contains(VIP6),
        "service left after SIGTERM:\n{listing}"
    );
    lab.stop_rvsd();
}

/// MISC_CHECK and the sorry server through rvsd: each real server is checked by a script that
/// curls it from rvs-dir (through the kernel twin); `quorum 2` over two servers of weight 1, so
/// stopping rs2's nginx loses the quorum: rs1 leaves too and the sorry server (rs3) answers
/// every request; rs2 started again, the quorum is back and the sorry server leaves.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvs_healthd_misc_check_and_sorry_server_through_rvsd() {
    let _lock = lab_start(
        "rvs_healthd_misc_check_and_sorry_server_through_rvsd",
        &["keepalived"],
    );
    let mut lab = Lab::up_with(false, 3);
    lab.start_rvsd();
    let web = format!("{VIP}:80");
    let (rs1, rs2, sorry) = ("192.0.2.2:80", "192.0.2.3:80", "192.0.2.4:80");

    let script = lab.tmp.join("check-http.sh");
    fs::write(
        &script,
        "#!/bin/sh\n# MISC_CHECK: up when the real server's page answers 2xx within 1 s\n\
         exec curl -sf -o /dev/null --max-time 1 \"http://$1/\"\n",
    )
    .expect("write the check script");
    let mut perm = fs::metadata(&script).expect("script").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&script, perm).expect("chmod the check script");
    let s = script.display();
    let conf = lab.tmp.join("keepalived.conf");
    fs::write(
        &conf,
        format!(
            "# keepalived refuses check scripts run as root without script security.
global_defs {{
    script_user root
    enable_script_security
}}

virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    quorum 2
    sorry_server 192.0.2.4 80

    real_server 192.0.2.2 80 {{
        weight 1
        MISC_CHECK {{
            misc_path \"{s} 192.0.2.2\"
            misc_timeout 2
        }}
    }}
    real_server 192.0.2.3 80 {{
        weight 1
        MISC_CHECK {{
            misc_path \"{s} 192.0.2.3\"
            misc_timeout 2
        }}
    }}
}}
"
        ),
    )
    .expect("write keepalived.conf");
    both_accept(&conf);

    let healthd = Healthd::start(&lab, &conf);
    let all_in = [(rs1, 1), (rs2, 1)];
    wait_weights(&lab, &web, &all_in, Duration::from_secs(15), &healthd);
    let answers: Vec<String> = (0..4).map(|_| curl_vip()).collect();
    assert_eq!(answers, alternating(4), "both real servers in");

    // MISC_CHECK's retry is 0: down at the first failed run, up to delay_loop (1 s) after the
    // stop; its curl is refused at once. Slack 2 s: lab.sh, the script's start, the poll.
    real_server_nginx("rs-stop", 2);
    let stopped = Instant::now();
    wait_weights(
        &lab,
        &web,
        &[(sorry, 1)],
        Duration::from_secs(1 + 2),
        &healthd,
    );
    println!(
        "rs2 stopped: quorum lost, sorry server in, within {:.2} s",
        stopped.elapsed().as_secs_f64()
    );
    for _ in 0..4 {
        assert_eq!(
            curl_vip(),
            "rs3",
            "the sorry server answers while quorum is lost"
        );
    }

    real_server_nginx("rs-start", 2);
    wait_weights(&lab, &web, &all_in, Duration::from_secs(1 + 2), &healthd);
    let answers: Vec<String> = (0..4).map(|_| curl_vip()).collect();
    assert!(
        answers.iter().filter(|a| *a == "rs1").count() == 2
            && answers.iter().filter(|a| *a == "rs2").count() == 2,
        "quorum back: {answers:?}"
    );
    let log = stop_healthd_and_check_release(&lab, healthd);
    assert!(log.contains("quorum lost"), "{log}");
    assert!(log.contains("MISC_CHECK"), "{log}");
    lab.stop_rvsd();
}

/// The middle value and the largest of `v` (sorted here), in seconds.
fn median_and_worst(v: &mut [Duration]) -> (f64, f64) {
    v.sort();
    let median = if v.len().is_multiple_of(2) {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    } else {
        v[v.len() / 2]
    };
    (
        median.as_secs_f64(),
        v.last().copied().unwrap_or_default().as_secs_f64(),
    )
}

/// Detection time through rvsd's ports: 20 times, rs2's nginx stopped by PID (each stop at
/// another point of the 1 s check cycle) and started again; how long until `rvsadm -Ln` shows
/// rs2 gone, and back. Timers as docs/keepalived.md's earlier figure: `delay_loop 1`,
/// `connect_timeout 1`, `retry 1`, `delay_before_retry 1`. Run by hand (about 2 minutes):
/// `cargo test -p rvsd --test lab -- --ignored --nocapture health_detection_time`.
#[test]
#[ignore = "a measurement (about 2 minutes): run with --ignored"]
fn health_detection_time_over_20_stops_through_rvsd() {
    let _lock = lab_start("health_detection_time_over_20_stops_through_rvsd", &[]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let web = format!("{VIP}:80");
    let (rs1, rs2) = ("192.0.2.2:80", "192.0.2.3:80");
    let conf = lab.tmp.join("keepalived.conf");
    let mut text = format!(
        "virtual_server {VIP} 80 {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    \
         protocol TCP\n"
    );
    for rs in ["192.0.2.2", "192.0.2.3"] {
        text += &format!(
            "    real_server {rs} 80 {{\n        weight 1\n        TCP_CHECK {{\n            \
             connect_timeout 1\n            retry 1\n            delay_before_retry 1\n        \
             }}\n    }}\n"
        );
    }
    text += "}\n";
    fs::write(&conf, text).expect("write keepalived.conf");
    let healthd = Healthd::start(&lab, &conf);
    let all_in = [(rs1, 1), (rs2, 1)];
    wait_weights(&lab, &web, &all_in, Duration::from_secs(15), &healthd);

    // delay_loop * retry + connect_timeout.
    let bound = Duration::from_secs(2);
    let (mut detection, mut recovery, mut stop_took) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..20u64 {
        // 0, 50, ... 950 ms: the stop lands at another point of the cycle each time.
        thread::sleep(Duration::from_millis(1000 + 50 * i));
        let stop = Instant::now();
        real_server_nginx("rs-stop", 2);
        stop_took.push(stop.elapsed());
        let out = wait_weights(&lab, &web, &[(rs1, 1)], Duration::from_secs(10), &healthd);
        detection.push(out - stop);
        real_server_nginx("rs-start", 2);
        let listening = Instant::now();
        let back = wait_weights(&lab, &web, &all_in, Duration::from_secs(10), &healthd);
        recovery.push(back - listening);
    }
    let (d_median, d_worst) = median_and_worst(&mut detection);
    let (r_median, r_worst) = median_and_worst(&mut recovery);
    let (s_median, _) = median_and_worst(&mut stop_took);
    println!(
        "detection over 20 stops: median {d_median:.2}s, worst {d_worst:.2}s (delay_loop * retry + \
         connect_timeout = {:.1} s; timed from the start of lab.sh rs-stop, which took \
         {s_median:.2}s median)",
        bound.as_secs_f64()
    );
    println!(
        "recovery over 20 starts: median {r_median:.2}s, worst {r_worst:.2}s (one success: \
         within delay_loop = 1.0 s; timed from nginx listening)"
    );
    // Slack 1 s: lab.sh itself, the 20 ms poll, round trips through the exception path.
    assert!(
        d_worst <= bound.as_secs_f64() + 1.0,
        "worst detection {d_worst:.2}s"
    );
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd exit: {st}\n{log}");
    lab.stop_rvsd();
}

/// `key=value` of rvs-healthd's log line that holds `key=`.
fn log_field(log: &str, key: &str) -> f64 {
    log.lines()
        .rev()
        .find_map(|l| {
            let v = l.split(&format!("{key}=")).nth(1)?;
            v.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {key}= in rvs-healthd's log:\n{log}"))
}

/// `missed N` of each port in `rvsctl ports`: (port, missed).
fn ports_missed(ports: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut port = String::new();
    for l in ports.lines() {
        if !l.starts_with(' ') {
            port = l.split(':').next().unwrap_or_default().to_string();
        } else if let Some(v) = l.split("missed ").nth(1) {
            let n = v.split_whitespace().next().and_then(|n| n.parse().ok());
            out.push((port.clone(), n.unwrap_or(0)));
        }
    }
    out
}

/// The check load on rvsd: 1,000 real servers (500 virtual services on VIP ports 8000-8499,
/// each with rs1:80 and rs2:80, TCP_CHECK every second) checked by rvs-healthd through the
/// exception path while curl loops run through VIP:80. Reports the checks a second and rvsd's
/// exception and port counters; no request may fail, no check go down, and nothing be dropped
/// on the way up. rvsd runs with the default `[exception] rate` (4,000 frames/s): a TCP check
/// sends about 2 frames up (to_kernel / checks), some 2,000/s here. Run by hand (a minute):
/// `cargo test -p rvsd --test lab -- --ignored --nocapture health_check_load`.
#[test]
#[ignore = "a measurement (about 1 minute): run with --ignored"]
fn health_check_load_of_1000_real_servers_on_rvsd() {
    let _lock = lab_start("health_check_load_of_1000_real_servers_on_rvsd", &[]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    lab.rr_web_service();
    let conf = lab.tmp.join("keepalived.conf");
    let mut text = String::new();
    for port in 8000..8500 {
        text += &format!(
            "virtual_server {VIP} {port} {{\n    delay_loop 1\n    lb_algo rr\n    lb_kind NAT\n    \
             protocol TCP\n"
        );
        for rs in ["192.0.2.2", "192.0.2.3"] {
            text += &format!(
                "    real_server {rs} 80 {{\n        TCP_CHECK {{\n            connect_timeout 1\n        \
                 }}\n    }}\n"
            );
        }
        text += "}\n";
    }
    fs::write(&conf, text).expect("write keepalived.conf");
    both_accept(&conf);

    let counters_before = lab.ctl(&["counters"]);
    let ports_before = ports_missed(&lab.ctl(&["ports"]));
    let healthd = Healthd::start(&lab, &conf);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listing = lab.adm(&["-L", "-n"]);
        let n = listing
            .lines()
            .filter(|l| l.trim_start().starts_with("-> 192.0.2."))
            .count();
        if n == 1000 + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} real servers listed after 60 s\n{}",
            healthd.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    let load = CurlLoad::start(format!("http://{VIP}/"), 2, 100_000);
    thread::sleep(Duration::from_secs(20));
    let shots = load.finish();
    let counters = lab.ctl(&["counters"]);
    let ports_after = ports_missed(&lab.ctl(&["ports"]));
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd exit: {st}\n{log}");

    let checks = log_field(&log, "checks_completed");
    let secs = log_field(&log, "seconds");
    let failed: Vec<&str> = shots
        .iter()
        .filter_map(|s| s.answer.as_ref().err().map(String::as_str))
        .collect();
    let delta = |name: &str| counter(&counters, name) - counter(&counters_before, name);
    println!(
        "1,000 real servers, delay_loop 1: {checks} checks in {secs:.1} s = {:.0} checks/s",
        checks / secs
    );
    for name in [
        "to_kernel",
        "from_kernel",
        "drop.kernel_rate_limited",
        "drop.kernel_queue_full",
        "exception.up_tx_full",
        "exception.down_ring_full",
    ] {
        println!("  {name} +{}", delta(name));
    }
    for ((port, after), (_, before)) in ports_after.iter().zip(&ports_before) {
        println!("  port {port} missed +{}", after - before);
    }
    println!(
        "VIP:80 meanwhile: {} requests, {} failed",
        shots.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "VIP requests failed: {failed:?}");
    assert!(!shots.is_empty());
    assert!(
        !log.contains("real server down"),
        "a check failed under load:\n{}",
        log.lines()
            .filter(|l| l.contains("down"))
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(delta("drop.kernel_rate_limited"), 0, "{counters}");
    assert_eq!(delta("drop.kernel_queue_full"), 0, "{counters}");
    lab.stop_rvsd();
}

// ---------------------------------------------------------------------------------------------
// VRRP's needs of the kernel twin: link-local multicast both ways, and addresses held on request.
// Observed from rvs-cli with a packet socket on its eth0 (every frame, as tcpdump -e sees them).

/// The group MAC of VRRP's 224.0.0.18.
const VRRP_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
const VRRP_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 18);
const SYNC_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 81);
const SYNC_PORT: u16 = 8848;
const CLI_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 10);
const EXT_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 1);

/// The MAC of `ifname` in namespace `ns`, from `ip -o link`.
fn link_mac(ns: &str, ifname: &str) -> [u8; 6] {
    let out = in_ns(
        ns,
        &["ip", "-o", "link", "show", "dev", ifname],
        Duration::from_secs(10),
    )
    .stdout;
    let text = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC for {ns}/{ifname} in {out}"));
    let mut mac = [0u8; 6];
    for (b, h) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(h, 16).expect("hex MAC");
    }
    mac
}

/// Waits (bounded) until twin `ifname` in rvs-dir carries `addr` (a prefix of `ip -o addr`'s
/// "a.b.c.d/len"): rvsd's control socket answers before its ports and twins are up.
fn wait_twin_addr(ifname: &str, addr: &str) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let out = in_ns(
            "rvs-dir",
            &["ip", "-o", "-4", "addr", "show", "dev", ifname],
            Duration::from_secs(10),
        )
        .stdout;
        if out.contains(&format!("inet {addr}")) {
            return;
        }
        assert!(Instant::now() < end, "{ifname} never had {addr}: {out}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A setsockopt of a plain value that must succeed.
fn set_opt<T>(fd: &std::os::fd::OwnedFd, level: i32, name: i32, value: &T) {
    // SAFETY: a valid socket; `value` points at a live T of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "setsockopt {level}/{name}: {}",
        io::Error::last_os_error()
    );
}

/// Waits up to `wait` for `fd` to be readable, then reads one datagram or frame into `buf`.
fn recv_within(fd: &std::os::fd::OwnedFd, buf: &mut [u8], wait: Duration) -> Option<usize> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
        return None;
    }
    // SAFETY: a valid socket and a writable buffer of buf.len() bytes.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).ok()
}

/// An AF_PACKET socket on one interface of a namespace: every frame that arrives there, and
/// frames sent as they are (an ARP request as arping sends it).
struct Wire {
    fd: std::os::fd::OwnedFd,
}

impl Wire {
    fn open(ns: &str, ifname: &str) -> Wire {
        let name = std::ffi::CString::new(ifname).expect("interface name");
        testkit::netns::run_in(ns, move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket call; the fd is owned below.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            assert!(raw >= 0, "packet socket: {}", io::Error::last_os_error());
            // SAFETY: a fresh fd nothing else owns.
            let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            // SAFETY: a NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(index > 0, "no interface {name:?}");
            // SAFETY: sockaddr_ll is plain data; all zero is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: a valid socket and address of the size given.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "bind packet socket: {}", io::Error::last_os_error());
            // Only what arrives: not our own frames going out.
            let ignore_outgoing: i32 = 1;
            set_opt(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                &ignore_outgoing,
            );
            Wire { fd }
        })
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: a valid bound socket and a readable buffer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            n,
            frame.len() as isize,
            "send: {}",
            io::Error::last_os_error()
        );
    }

    /// Every arriving frame `want` accepts, for `wait` (all of it), and what was waiting
    /// already (`Duration::ZERO`: only that, so that the next reads see new frames).
    fn capture(&self, wait: Duration, want: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 2048];
        let mut got = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match recv_within(&self.fd, &mut buf, left) {
                Some(n) if want(&buf[..n]) => got.push(buf[..n].to_vec()),
                Some(_) => {}
                None if left.is_zero() => return got,
                None => {}
            }
        }
    }

    /// The first arriving frame `want` accepts, within `wait`.
    fn first(&self, wait: Duration, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        let end = Instant::now() + wait;
        let mut buf = vec![0u8; 2048];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if let Some(n) = recv_within(&self.fd, &mut buf, left) {
                if want(&buf[..n]) {
                    return Some(buf[..n].to_vec());
                }
            }
        }
        None
    }
}

/// What the multicast checks look at in an IPv4 frame.
struct Ip4Frame<'a> {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ttl: u8,
    proto: u8,
    dst: std::net::Ipv4Addr,
    /// After the IP header.
    payload: &'a [u8],
}

/// `f` as an IPv4 frame; None for anything else.
fn ipv4_frame(f: &[u8]) -> Option<Ip4Frame<'_>> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
    Some(Ip4Frame {
        dst_mac: f.get(..6)?.try_into().ok()?,
        src_mac: f.get(6..12)?.try_into().ok()?,
        ttl: *ip.get(8)?,
        proto: *ip.get(9)?,
        dst: dst.into(),
        payload: ip.get(ihl..)?,
    })
}

/// A raw IPv4 socket for protocol 112 (VRRP) in namespace `ns`, sending multicast out of the
/// interface holding `via` with TTL 255 (as VRRP must), and joined to 224.0.0.18 there.
fn vrrp_socket(ns: &str, via: std::net::Ipv4Addr) -> std::os::fd::OwnedFd {
    testkit::netns::run_in(ns, move || {
        // SAFETY: plain socket call; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, 112) };
        assert!(raw >= 0, "raw socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let addr = |a: std::net::Ipv4Addr| libc::in_addr {
            s_addr: u32::from(a).to_be(),
        };
        set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &addr(via));
        set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &255i32);
        // Our own adverts are not looped back to us (keepalived does the same).
        set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &0i32);
        let join = libc::ip_mreq {
            imr_multiaddr: addr(VRRP_GROUP),
            imr_interface: addr(via),
        };
        set_opt(&fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &join);
        fd
    })
}

/// Sends `payload` as one datagram to `group` on a socket connected nowhere.
fn send_to_group(fd: &std::os::fd::OwnedFd, group: std::net::Ipv4Addr, port: u16, payload: &[u8]) {
    // SAFETY: sockaddr_in is plain data; all zero is a valid value.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as u16;
    sin.sin_port = port.to_be();
    sin.sin_addr.s_addr = u32::from(group).to_be();
    // SAFETY: a valid socket, buffer and address of the size given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(
        n,
        payload.len() as isize,
        "sendto {group}: {}",
        io::Error::last_os_error()
    );
}

/// A UDP socket in namespace `ns` on port 8848 (IPVS sync), joined to 224.0.0.81 on the
/// interface holding `via` and sending multicast out of it.
fn sync_socket(ns: &str, via: std::net::Ipv4Addr) -> UdpSocket {
    testkit::netns::run_in(ns, move || {
        let s = UdpSocket::bind(("0.0.0.0", SYNC_PORT)).expect("bind 8848");
        s.join_multicast_v4(&SYNC_GROUP, &via)
            .expect("join 224.0.0.81");
        s.set_multicast_loop_v4(false).expect("no loop");
        let fd = std::os::fd::AsFd::as_fd(&s)
            .try_clone_to_owned()
            .expect("dup");
        let via = libc::in_addr {
            s_addr: u32::from(via).to_be(),
        };
        set_opt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &via);
        s
    })
}

/// VRRP adverts and IPVS sync datagrams through the external port's twin (rvs-ext0): sent by
/// sockets in rvs-dir, they reach rvs-cli to the group MAC (VRRP with TTL 255); sent from
/// rvs-cli, they reach the sockets in rvs-dir that joined the group on the twin.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_carries_link_local_multicast_through_the_twin() {
    let _lock = lab_start("rvsd_carries_link_local_multicast_through_the_twin", &[]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let wire = Wire::open("rvs-cli", "eth0");
    let dext_mac = link_mac("rvs-dir", "rvs-dext");
    wait_twin_addr("rvs-ext0", "198.51.100.1/");

    // Out: rvs-dir -> rvs-cli.
    let dir_vrrp = vrrp_socket("rvs-dir", EXT_IP);
    let dir_sync = sync_socket("rvs-dir", EXT_IP);
    send_to_group(&dir_vrrp, VRRP_GROUP, 0, b"\x31advert-from-dir");
    let advert = |f: &[u8]| {
        ipv4_frame(f).is_some_and(|ip| {
            ip.proto == 112 && ip.dst == VRRP_GROUP && ip.payload.ends_with(b"advert-from-dir")
        })
    };
    let seen = wire
        .first(Duration::from_secs(5), advert)
        .unwrap_or_else(|| {
            panic!(
                "no advert from rvs-dir in rvs-cli\n{}\n{}",
                lab.ctl(&["counters"]),
                lab.rvsd_log_tail()
            )
        });
    let ip = ipv4_frame(&seen).expect("ipv4");
    assert_eq!(
        ip.dst_mac, VRRP_MAC,
        "the group MAC (tcpdump -e: 01:00:5e:00:00:12)"
    );
    assert_eq!(ip.src_mac, dext_mac, "from rvsd's external port");
    assert_eq!(ip.ttl, 255, "VRRP's TTL kept");
    dir_sync
        .send_to(b"sync-from-dir", (SYNC_GROUP, SYNC_PORT))
        .expect("send sync");
    let sync = |f: &[u8]| {
        ipv4_frame(f).is_some_and(|ip| {
            ip.proto == 17 && ip.dst == SYNC_GROUP && ip.payload.ends_with(b"sync-from-dir")
        })
    };
    let seen = wire
        .first(Duration::from_secs(5), sync)
        .unwrap_or_else(|| panic!("no sync datagram in rvs-cli\n{}", lab.ctl(&["counters"])));
    let ip = ipv4_frame(&seen).expect("ipv4");
    assert_eq!(ip.dst_mac, [0x01, 0x00, 0x5e, 0x00, 0x00, 0x51]);
    assert_eq!(ip.src_mac, dext_mac);

    // In: rvs-cli -> the sockets in rvs-dir.
    let cli_vrrp = vrrp_socket("rvs-cli", CLI_IP);
    let cli_sync = sync_socket("rvs-cli", CLI_IP);
    let mut buf = [0u8; 1500];
    let mut got_advert = None;
    for _ in 0..3 {
        send_to_group(&cli_vrrp, VRRP_GROUP, 0, b"\x31advert-from-cli");
        let end = Instant::now() + Duration::from_secs(2);
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let Some(n) = recv_within(&dir_vrrp, &mut buf, left) else {
                break;
            };
            // A raw socket reads the IP header too: the source and TTL as they arrived.
            if buf[..n].ends_with(b"advert-from-cli") {
                got_advert = Some((
                    buf[8],
                    std::net::Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
                ));
                break;
            }
        }
        if got_advert.is_some() {
            break;
        }
    }
    let (ttl, src) = got_advert.unwrap_or_else(|| {
        panic!(
            "the advert from rvs-cli did not reach rvs-dir's socket\n{}",
            lab.ctl(&["counters"])
        )
    });
    assert_eq!((ttl, src), (255, CLI_IP));
    cli_sync
        .send_to(b"sync-from-cli", (SYNC_GROUP, SYNC_PORT))
        .expect("send sync");
    dir_sync
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let (n, from) = dir_sync.recv_from(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no sync datagram in rvs-dir: {e}\n{}",
            lab.ctl(&["counters"])
        )
    });
    assert_eq!(&buf[..n], b"sync-from-cli");
    assert_eq!(from, SocketAddr::from((CLI_IP, SYNC_PORT)));

    let counters = lab.ctl(&["counters"]);
    assert!(counter(&counters, "multicast_to_kernel") >= 2, "{counters}");
    assert!(
        counter(&counters, "multicast_from_kernel") >= 2,
        "{counters}"
    );
    lab.stop_rvsd();
}

/// An ARP frame's opcode, sender MAC, sender and target address; None for anything else.
fn arp_parts(f: &[u8]) -> Option<(u16, [u8; 6], std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    if f.get(12..14)? != [0x08, 0x06] {
        return None;
    }
    let a = f.get(14..42)?;
    let op = u16::from_be_bytes([a[6], a[7]]);
    let sha: [u8; 6] = a[8..14].try_into().ok()?;
    let spa = std::net::Ipv4Addr::new(a[14], a[15], a[16], a[17]);
    let tpa = std::net::Ipv4Addr::new(a[24], a[25], a[26], a[27]);
    Some((op, sha, spa, tpa))
}

/// arping from rvs-cli's eth0: a broadcast ARP request for `target`, five tries 500 ms apart;
/// the MAC that answered, if any.
fn arping(wire: &Wire, cli_mac: [u8; 6], target: std::net::Ipv4Addr) -> Option<[u8; 6]> {
    let request = testkit::arp_request(cli_mac, CLI_IP, target);
    // Not a reply to an earlier question (rvs-cli's kernel asks too).
    wire.capture(Duration::ZERO, |_| false);
    for _ in 0..5 {
        wire.send(&request);
        let reply = wire.first(Duration::from_millis(500), |f| {
            arp_parts(f).is_some_and(|(op, _, spa, tpa)| op == 2 && spa == target && tpa == CLI_IP)
        });
        if let Some(f) = reply {
            return arp_parts(&f).map(|(_, sha, ..)| sha);
        }
    }
    None
}

/// A TCP listener in rvs-dir on `addr`:7777 that answers one connection with "hello from
/// rvs-dir"; and a connection to it from rvs-cli: what the client read.
fn tcp_through_twin(addr: std::net::Ipv4Addr) -> io::Result<String> {
    use std::io::Write;
    let listener =
        testkit::netns::run_in("rvs-dir", move || std::net::TcpListener::bind((addr, 7777)))?;
    let server = thread::spawn(move || -> io::Result<()> {
        listener.set_nonblocking(false)?;
        let (mut s, _) = listener.accept()?;
        s.write_all(b"hello from rvs-dir")
    });
    let stream = testkit::netns::run_in("rvs-cli", move || {
        std::net::TcpStream::connect_timeout(
            &SocketAddr::from((addr, 7777)),
            Duration::from_secs(5),
        )
    })?;
    let mut stream = stream;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut got = String::new();
    stream.read_to_string(&mut got)?;
    server.join().expect("server thread")?;
    Ok(got)
}

/// `SetVirtualAddrs` through rvsctl, as rvs-healthd's VRRP sends it: an address of the client
/// subnet that is not otherwise rvsd's is answered by ARP, announced with gratuitous ARP, on
/// the twin (a kernel socket in rvs-dir serves a client on it) only while held.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_holds_virtual_addresses_on_request() {
    let _lock = lab_start("rvsd_holds_virtual_addresses_on_request", &[]);
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    let wire = Wire::open("rvs-cli", "eth0");
    let cli_mac = link_mac("rvs-cli", "eth0");
    let dext_mac = link_mac("rvs-dir", "rvs-dext");
    wait_twin_addr("rvs-ext0", "198.51.100.1/");
    let vaddr = std::net::Ipv4Addr::new(198, 51, 100, 5);
    let twin_has = || {
        in_ns(
            "rvs-dir",
            &["ip", "-o", "-4", "addr", "show", "dev", "rvs-ext0"],
            Duration::from_secs(10),
        )
        .stdout
        .contains("inet 198.51.100.5/24")
    };
    assert_eq!(arping(&wire, cli_mac, EXT_IP), Some(dext_mac), "the VIP");
    assert_eq!(arping(&wire, cli_mac, vaddr), None, "not rvsd's");

    // Named, not held (a BACKUP): still no answer, not on the twin.
    lab.ctl(&["vaddr", "release", "VI_1", "dev", "ext", "198.51.100.5/24"]);
    assert_eq!(arping(&wire, cli_mac, vaddr), None, "released");
    assert!(!twin_has());

    // Held (MASTER): gratuitous ARPs, ARP answers, on the twin.
    wire.capture(Duration::ZERO, |_| false);
    lab.ctl(&["vaddr", "hold", "VI_1", "dev", "ext", "198.51.100.5/24"]);
    // Five, 200 ms apart: all in within 3 s even on a loaded machine.
    let garps = wire.capture(Duration::from_secs(3), |f| {
        arp_parts(f).is_some_and(|(op, sha, spa, tpa)| {
            op == 1 && sha == dext_mac && spa == vaddr && tpa == vaddr
        })
    });
    assert_eq!(
        garps.len(),
        5,
        "gratuitous ARPs for {vaddr}\n{}",
        lab.ctl(&["counters"])
    );
    assert!(garps.iter().all(|f| f[..6] == [0xff; 6]), "broadcast");
    assert_eq!(arping(&wire, cli_mac, vaddr), Some(dext_mac), "held");
    assert!(twin_has(), "{}", lab.rvsd_log_tail());
    let listing = lab.ctl(&["vaddr"]);
    assert_eq!(listing, "198.51.100.5/24 dev ext instance VI_1 held\n");
    // A kernel socket in rvs-dir on the held address serves rvs-cli through the twin, and
    // rvsd answers its ping itself.
    let got = tcp_through_twin(vaddr).unwrap_or_else(|e| {
        panic!(
            "TCP to {vaddr}:7777 in rvs-dir: {e}\n{}",
            lab.ctl(&["counters"])
        )
    });
    assert_eq!(got, "hello from rvs-dir");
    let ping = in_ns(
        "rvs-cli",
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "198.51.100.5"],
        Duration::from_secs(20),
    );
    assert!(
        ping.status.success(),
        "{}",
        ping.describe("ping the held address")
    );

    // Released again: no answers, off the twin.
    lab.ctl(&["vaddr", "release", "VI_1", "dev", "ext", "198.51.100.5/24"]);
    assert_eq!(arping(&wire, cli_mac, vaddr), None, "released again");
    assert!(!twin_has());
    assert_eq!(
        lab.ctl(&["vaddr"]),
        "198.51.100.5/24 dev ext instance VI_1 released\n"
    );
    let counters = lab.ctl(&["counters"]);
    assert_eq!(counter(&counters, "garp_sent"), 5, "{counters}");
    // The VIP was never affected.
    assert_eq!(arping(&wire, cli_mac, EXT_IP), Some(dext_mac));
    lab.stop_rvsd();
}

/// The VRRP scenario's virtual address: on the client segment, not otherwise rvsd's.
const VRRP_VIP: &str = "198.51.100.50";

/// keepalived.conf for one side of the VRRP scenario (version 3, VRID 51, advert_int 1): the
/// generic notify script writes the state entered to `state`.
fn vrrp_conf(dev: &str, priority: u8, nopreempt: bool, notify: &Path, globals: &str) -> String {
    format!(
        "global_defs {{\n  vrrp_version 3\n{globals}}}\nvrrp_instance VI_LAB {{\n  state BACKUP\n  interface {dev}\n  virtual_router_id 51\n  priority {priority}\n  advert_int 1\n  {}\n  virtual_ipaddress {{\n    {VRRP_VIP}/24 dev {dev}\n  }}\n  notify {}\n}}\n",
        if nopreempt { "nopreempt" } else { "" },
        notify.display()
    )
}

/// The IPv6 VRRP instance of the scenario (VRID 52, advert_int 1): the IPv6 VIP 2001:db8:100::1
/// on `dev` (IPv6 mode: adverts to ff02::12 from `dev`'s link-local address), its own notify
/// script.
fn vrrp6_instance(dev: &str, priority: u8, notify: &Path) -> String {
    format!(
        "vrrp_instance VI_LAB6 {{\n  state BACKUP\n  interface {dev}\n  virtual_router_id 52\n  priority {priority}\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP6}/64 dev {dev}\n  }}\n  notify {}\n}}\n",
        notify.display()
    )
}

/// A notify script writing its third argument (the state) to `state`, atomically.
fn notify_script(path: &Path, state: &Path) {
    fs::write(
        path,
        format!(
            "#!/bin/sh\necho \"$3\" > {0}.tmp && mv {0}.tmp {0}\n",
            state.display()
        ),
    )
    .expect("write notify script");
    let r = run(
        {
            let mut c = cmd("chmod");
            c.arg("755").arg(path);
            c
        },
        Duration::from_secs(5),
    )
    .expect("chmod");
    assert!(r.status.success());
}

/// Debian's keepalived (VRRP only) in rvs-cli; stopped by PID (SIGTERM, SIGKILL after 5 s),
/// also when the scenario panics.
struct Keepalived {
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl Keepalived {
    fn start(dir: &Path, conf: &Path) -> Keepalived {
        let log = dir.join("keepalived.log");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("keepalived log");
        let child = cmd("ip")
            .args([
                "netns",
                "exec",
                "rvs-cli",
                "keepalived",
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
            ])
            .arg(conf)
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(dir.join("vrrp.pid"))
            .arg("-c")
            .arg(dir.join("checkers.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("start keepalived");
        Keepalived {
            child: Some(child),
            log,
        }
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's PID, not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "--- keepalived log ---\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn read_state(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Waits until the notify file at `path` says `want`; how long that took.
fn wait_vrrp_state(path: &Path, want: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if read_state(path) == want {
            return t0.elapsed();
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{} is {:?}, not {want}, after {within:?}",
        path.display(),
        read_state(path)
    );
}

/// Whether `ifname` in `ns` carries the IPv6 VRRP address (the IPv6 VIP).
fn has_vrrp_vip6(ns: &str, ifname: &str) -> bool {
    in_ns(
        ns,
        &["ip", "-o", "-6", "addr", "show", "dev", ifname],
        Duration::from_secs(10),
    )
    .stdout
    .contains(&format!("inet6 {VIP6}/64"))
}

/// Whether `ifname` in `ns` carries the VRRP address.
fn has_vrrp_vip(ns: &str, ifname: &str) -> bool {
    in_ns(
        ns,
        &["ip", "-o", "-4", "addr", "show", "dev", ifname],
        Duration::from_secs(10),
    )
    .stdout
    .contains(&format!("inet {VRRP_VIP}/"))
}

/// The VRRP scenarios' files: notify scripts writing each side's state, and the two
/// keepalived.conf (keepalived in rvs-cli on eth0, rvs-healthd in rvs-dir on rvsd's twin
/// rvs-ext0).
struct VrrpSides {
    k_state: PathBuf,
    r_state: PathBuf,
    k_conf: PathBuf,
    r_conf: PathBuf,
    r_notify: PathBuf,
    /// rvs-healthd's global_defs lines beyond `vrrp_version 3`.
    r_globals: String,
    /// With the IPv6 instance VI_LAB6 on both sides ([`VrrpSides::with_ipv6`]): keepalived's
    /// and rvs-healthd's state files for it.
    ipv6: Option<(PathBuf, PathBuf)>,
}

impl VrrpSides {
    fn new(lab: &Lab, k_priority: u8) -> VrrpSides {
        let t = &lab.tmp;
        let sides = VrrpSides {
            k_state: t.join("state-keepalived"),
            r_state: t.join("state-healthd"),
            k_conf: t.join("keepalived-cli.conf"),
            r_conf: t.join("keepalived-dir.conf"),
            r_notify: t.join("notify-r.sh"),
            r_globals: String::new(),
            ipv6: None,
        };
        notify_script(&t.join("notify-k.sh"), &sides.k_state);
        notify_script(&sides.r_notify, &sides.r_state);
        let k = vrrp_conf("eth0", k_priority, false, &t.join("notify-k.sh"), "");
        fs::write(&sides.k_conf, k).expect("write keepalived.conf");
        sides
    }

    /// Both sides run the IPv6 instance VI_LAB6 too (keepalived at `k_priority`, rvs-healthd
    /// at its IPv4 instance's priority), with state files `state-keepalived6` and
    /// `state-healthd6`.
    fn with_ipv6(mut self, lab: &Lab, k_priority: u8) -> VrrpSides {
        let t = &lab.tmp;
        let (k6, r6) = (t.join("state-keepalived6"), t.join("state-healthd6"));
        notify_script(&t.join("notify-k6.sh"), &k6);
        notify_script(&t.join("notify-r6.sh"), &r6);
        let mut k = fs::read_to_string(&self.k_conf).expect("read keepalived.conf");
        k.push_str(&vrrp6_instance("eth0", k_priority, &t.join("notify-k6.sh")));
        fs::write(&self.k_conf, k).expect("write keepalived.conf");
        self.ipv6 = Some((k6, r6));
        self
    }

    /// rvs-healthd's keepalived.conf.
    fn healthd(&self, priority: u8, nopreempt: bool) -> &Path {
        let mut text = vrrp_conf(
            "rvs-ext0",
            priority,
            nopreempt,
            &self.r_notify,
            &self.r_globals,
        );
        if let Some((_, r6)) = &self.ipv6 {
            let notify = self.r_notify.with_file_name("notify-r6.sh");
            text.push_str(&vrrp6_instance("rvs-ext0", priority, &notify));
            let _ = fs::remove_file(r6);
        }
        fs::write(&self.r_conf, text).expect("write keepalived.conf");
        let _ = fs::remove_file(&self.r_state);
        &self.r_conf
    }
}

/// Master_Down_Interval at priority 100 (3.61 s) with slack for process starts and polling.
const VRRP_ELECTION: Duration = Duration::from_secs(6);
const VRRP_ADVERT: Duration = Duration::from_secs(1);

/// rvs-healthd's VRRP against Debian's keepalived across rvsd: keepalived in rvs-cli on its
/// eth0, rvs-healthd in rvs-dir on rvsd's external twin rvs-ext0, its adverts carried by rvsd's
/// link-local multicast both ways; one vrrp_instance each (version 3, VRID 51, advert_int 1,
/// VIP 198.51.100.50). rvs-healthd at 150 preempts keepalived at 100; SIGTERM to rvs-healthd
/// sends priority 0 and keepalived takes over within 3 advert intervals; started again,
/// rvs-healthd preempts back; with `nopreempt` it stays BACKUP. Then the other way: keepalived
/// at 200 preempts rvs-healthd, and when keepalived stops rvs-healthd takes over within 3
/// intervals. keepalived's side is read from its notify file and `ip addr`, rvs-healthd's from
/// its notify file.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvs_healthd_vrrp_interoperates_with_keepalived_through_rvsd() {
    let _lock = lab_start(
        "rvs_healthd_vrrp_interoperates_with_keepalived_through_rvsd",
        &["keepalived"],
    );
    let mut lab = Lab::up(false);
    lab.start_rvsd();
    wait_twin_addr("rvs-ext0", "198.51.100.1/");
    let sides = VrrpSides::new(&lab, 100);

    let mut keepalived = Keepalived::start(&lab.tmp, &sides.k_conf);
    wait_vrrp_state(&sides.k_state, "MASTER", VRRP_ELECTION);
    assert!(has_vrrp_vip("rvs-cli", "eth0"));

    let healthd = Healthd::start(&lab, sides.healthd(150, false));
    wait_vrrp_state(&sides.r_state, "MASTER", VRRP_ELECTION);
    wait_vrrp_state(&sides.k_state, "BACKUP", VRRP_ADVERT);
    assert!(
        !has_vrrp_vip("rvs-cli", "eth0"),
        "keepalived let the VIP go"
    );

    // SIGTERM: priority 0, keepalived takes over after its skew time.
    let t0 = Instant::now();
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd: {st}\n{log}");
    wait_vrrp_state(&sides.k_state, "MASTER", 3 * VRRP_ADVERT);
    println!(
        "keepalived took over {:.2?} after rvs-healthd's SIGTERM (bound 3 s)",
        t0.elapsed()
    );
    assert!(has_vrrp_vip("rvs-cli", "eth0"));

    // Back at 150: preemption.
    let healthd = Healthd::start(&lab, sides.healthd(150, false));
    wait_vrrp_state(&sides.r_state, "MASTER", VRRP_ELECTION);
    wait_vrrp_state(&sides.k_state, "BACKUP", VRRP_ADVERT);
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd: {st}\n{log}");
    wait_vrrp_state(&sides.k_state, "MASTER", 3 * VRRP_ADVERT);

    // With nopreempt, 150 joins keepalived's election and stays BACKUP.
    let healthd = Healthd::start(&lab, sides.healthd(150, true));
    wait_vrrp_state(&sides.r_state, "BACKUP", VRRP_ELECTION);
    thread::sleep(2 * VRRP_ELECTION);
    assert_eq!(read_state(&sides.r_state), "BACKUP", "nopreempt");
    assert_eq!(read_state(&sides.k_state), "MASTER");
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd: {st}\n{log}");
    keepalived.stop();

    // The other way: rvs-healthd master at 100, keepalived at 200 preempts it, then stops.
    let healthd = Healthd::start(&lab, sides.healthd(100, false));
    wait_vrrp_state(&sides.r_state, "MASTER", VRRP_ELECTION);
    let k_conf = vrrp_conf("eth0", 200, false, &lab.tmp.join("notify-k.sh"), "");
    fs::write(&sides.k_conf, k_conf).expect("write keepalived.conf");
    let mut keepalived = Keepalived::start(&lab.tmp, &sides.k_conf);
    wait_vrrp_state(&sides.k_state, "MASTER", VRRP_ELECTION);
    wait_vrrp_state(&sides.r_state, "BACKUP", VRRP_ADVERT);
    let t0 = Instant::now();
    keepalived.stop();
    wait_vrrp_state(&sides.r_state, "MASTER", 3 * VRRP_ADVERT);
    println!(
        "rvs-healthd took over {:.2?} after keepalived's SIGTERM (bound 3 s)",
        t0.elapsed()
    );
    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd: {st}\n{log}");
    lab.stop_rvsd();
}

/// rvsd holds the VRRP addresses while rvs-healthd is MASTER, and only then: rvs-healthd at 150
/// against keepalived at 100 (in rvs-cli, which holds them first) takes them over, for an
/// IPv4 instance and an IPv6 one (VRRPv3's IPv6 mode: adverts to ff02::12 from link-local
/// addresses, the IPv6 VIP 2001:db8:100::1). rvsd then has them on the twin rvs-ext0, lists
/// them held (`rvsctl vaddr`), sent gratuitous ARPs and unsolicited neighbour advertisements
/// for them, answers ARP from rvs-cli with its port's MAC, and a curl to the IPv6 VIP goes
/// through it to a real server. After rvs-healthd's SIGTERM keepalived has both again and
/// rvsd neither answers ARP for the IPv4 one nor has either on the twin.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn rvsd_holds_the_vrrp_address_while_rvs_healthd_is_master() {
    let _lock = lab_start(
        "rvsd_holds_the_vrrp_address_while_rvs_healthd_is_master",
        &["keepalived"],
    );
    let mut lab = Lab::up(false);
    // The connection sync daemons on the internal port, their role following VI_LAB.
    lab.start_rvsd_with("\n[sync]\nport = \"int\"\n");
    wait_twin_addr("rvs-ext0", "198.51.100.1/");
    let wire = Wire::open("rvs-cli", "eth0");
    let cli_mac = link_mac("rvs-cli", "eth0");
    let dext_mac = link_mac("rvs-dir", "rvs-dext");
    let vip: std::net::Ipv4Addr = VRRP_VIP.parse().expect("VIP");
    let vip6: std::net::Ipv6Addr = VIP6.parse().expect("VIP6");
    let mut sides = VrrpSides::new(&lab, 100).with_ipv6(&lab, 100);
    sides.r_globals = "  lvs_sync_daemon rvs-int0 VI_LAB\n".into();
    let (k_state6, r_state6) = sides.ipv6.clone().expect("the IPv6 instance");
    // The IPv6 VIP's service, as in rvsd_nat_walkthrough_ipv6.
    let tcp_vip6 = sock(VIP6, 80).to_string();
    lab.adm(&["-A", "-t", &tcp_vip6, "-s", "rr"]);
    for (_, ip) in RS6 {
        lab.adm(&["-a", "-t", &tcp_vip6, "-r", &sock(ip, 80).to_string(), "-m"]);
    }
    assert_eq!(
        arping(&wire, cli_mac, vip),
        None,
        "no one holds the VIP yet"
    );

    let mut keepalived = Keepalived::start(&lab.tmp, &sides.k_conf);
    wait_vrrp_state(&sides.k_state, "MASTER", VRRP_ELECTION);
    wait_vrrp_state(&k_state6, "MASTER", VRRP_ADVERT);
    assert!(
        has_vrrp_vip6("rvs-cli", "eth0"),
        "keepalived holds the IPv6 VIP"
    );
    let healthd = Healthd::start(&lab, sides.healthd(150, false));
    wait_vrrp_state(&sides.r_state, "BACKUP", VRRP_ELECTION);
    wait_vrrp_state(&r_state6, "BACKUP", VRRP_ADVERT);
    assert_eq!(
        lab.ctl(&["vaddr"]),
        format!(
            "{VRRP_VIP}/24 dev ext instance VI_LAB released\n\
             {VIP6}/64 dev ext instance VI_LAB6 released\n"
        ),
        "a BACKUP names its address, not held"
    );
    assert_eq!(
        lab.adm(&["-L", "--daemon"]),
        "backup sync daemon (mcast=rvs-int0, syncid=0)\n",
        "a BACKUP receives only"
    );
    wire.capture(Duration::ZERO, |_| false);
    wait_vrrp_state(&sides.r_state, "MASTER", VRRP_ELECTION);
    wait_vrrp_state(&sides.k_state, "BACKUP", VRRP_ADVERT);
    let t6 = Instant::now();
    wait_vrrp_state(&r_state6, "MASTER", VRRP_ADVERT);
    wait_vrrp_state(&k_state6, "BACKUP", VRRP_ADVERT);
    let is_garp = |f: &[u8]| {
        arp_parts(f).is_some_and(|(op, sha, spa, tpa)| {
            op == 1 && sha == dext_mac && spa == vip && tpa == vip
        })
    };
    // An unsolicited NA (ICMPv6 type 136) for the IPv6 VIP from the port's MAC.
    let is_na = |f: &[u8]| {
        f.len() >= 78
            && f[6..12] == dext_mac
            && f[12..14] == [0x86, 0xdd]
            && f[20] == 58
            && f[54] == 136
            && f[62..78] == vip6.octets()
    };
    let announced = wire.capture(Duration::from_millis(1500), |f| is_garp(f) || is_na(f));
    assert!(
        announced.iter().any(|f| is_garp(f)),
        "gratuitous ARPs on takeover"
    );
    assert!(
        announced.iter().any(|f| is_na(f)),
        "unsolicited neighbour advertisements on takeover\n{}",
        lab.ctl(&["counters"])
    );
    assert_eq!(
        lab.ctl(&["vaddr"]),
        format!(
            "{VRRP_VIP}/24 dev ext instance VI_LAB held\n\
             {VIP6}/64 dev ext instance VI_LAB6 held\n"
        )
    );
    assert!(
        has_vrrp_vip6("rvs-dir", "rvs-ext0"),
        "{}",
        lab.rvsd_log_tail()
    );
    assert!(
        !has_vrrp_vip6("rvs-cli", "eth0"),
        "keepalived let the IPv6 VIP go"
    );
    // The IPv6 VIP now reaches a real server through rvsd.
    let answer = curl_to(VIP6);
    assert!(
        RS.iter().any(|(name, _)| *name == answer),
        "curl -g http://[{VIP6}]/ answered {answer:?}"
    );
    println!(
        "IPv6 VIP through rvsd {:.2?} after the IPv6 instance's takeover began",
        t6.elapsed()
    );
    assert_eq!(
        lab.adm(&["-L", "--daemon"]),
        "master sync daemon (mcast=rvs-int0, syncid=0)\nbackup sync daemon (mcast=rvs-int0, syncid=0)\n",
        "a MASTER sends and receives"
    );
    assert!(
        has_vrrp_vip("rvs-dir", "rvs-ext0"),
        "{}",
        lab.rvsd_log_tail()
    );
    assert!(!has_vrrp_vip("rvs-cli", "eth0"), "keepalived let it go");
    assert_eq!(arping(&wire, cli_mac, vip), Some(dext_mac), "rvsd answers");
    let ping = in_ns(
        "rvs-cli",
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", VRRP_VIP],
        Duration::from_secs(20),
    );
    assert!(ping.status.success(), "{}", ping.describe("ping the VIP"));

    let (st, log) = healthd.stop();
    assert!(st.success(), "rvs-healthd: {st}\n{log}");
    wait_vrrp_state(&sides.k_state, "MASTER", 3 * VRRP_ADVERT);
    wait_vrrp_state(&k_state6, "MASTER", 3 * VRRP_ADVERT);
    assert_eq!(arping(&wire, cli_mac, vip), None, "released on SIGTERM");
    assert!(!has_vrrp_vip("rvs-dir", "rvs-ext0"));
    assert!(has_vrrp_vip("rvs-cli", "eth0"));
    assert!(!has_vrrp_vip6("rvs-dir", "rvs-ext0"));
    assert!(has_vrrp_vip6("rvs-cli", "eth0"));
    assert_eq!(
        lab.ctl(&["vaddr"]),
        format!(
            "{VRRP_VIP}/24 dev ext instance VI_LAB released\n\
             {VIP6}/64 dev ext instance VI_LAB6 released\n"
        )
    );
    assert_eq!(
        lab.adm(&["-L", "--daemon"]),
        "backup sync daemon (mcast=rvs-int0, syncid=0)\n",
        "released at exit: receiving only"
    );
    assert!(
        !log.contains("rvsd refused"),
        "rvsd took every request:\n{log}"
    );
    keepalived.stop();
    lab.stop_rvsd();
}
