//! VRRP interop with Debian's keepalived (`/usr/sbin/keepalived`, 2.2.7), without rvsd: two
//! namespaces `rvs-vrrp-PID-N{a,b}` on a veth pair (192.0.2.0/24), keepalived's VRRP on `va`
//! in one, rvs-healthd on `vb` in the other, one `vrrp_instance` (version 3, VRID 51, advert_int
//! 1, VIP 192.0.2.100) on each side with its own priority. Both sides run a generic `notify`
//! script writing the state they enter to a file, so both are read the same way.
//!
//! rvs-healthd talks to [`FakeRvsd`], a stand-in for rvsd's control socket that answers Ok and
//! records each request: this test proves the protocol side (elections, takeover, preemption
//! both ways, the SetVirtualAddrs requests), not rvsd's ARP; rvsd/tests/lab.rs does that with
//! rvsd. Needs root. keepalived and rvs-healthd are stopped by PID, and the namespaces
//! removed, by their guards' Drop, also when a test fails.

use control::config::IpCidr;
use control::proto::Request;
use health::testlab::{FakeRvsd, NsProcess, VethPair};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const ADVERT: Duration = Duration::from_secs(1);
const VIP: &str = "192.0.2.100";
const VIP6: &str = "2001:db8:5::100";

/// Master_Down_Interval at priority 100 plus slack for process start and polling.
const ELECTION: Duration = Duration::from_millis(3_610 + 2_000);

struct Peer {
    priority: u8,
    nopreempt: bool,
    /// `unicast_src_ip` and `unicast_peer` (the other side) instead of 224.0.0.18.
    unicast: bool,
}

impl Peer {
    /// A side at `priority` that preempts, on multicast.
    fn at(priority: u8) -> Peer {
        Peer {
            priority,
            nopreempt: false,
            unicast: false,
        }
    }

    fn nopreempt(self) -> Peer {
        Peer {
            nopreempt: true,
            ..self
        }
    }

    fn unicast(self) -> Peer {
        Peer {
            unicast: true,
            ..self
        }
    }
}

struct Interop {
    dir: PathBuf,
    // Field order is drop order: the processes, then the fake rvsd, then the namespaces.
    keepalived: Option<NsProcess>,
    healthd: Option<NsProcess>,
    rvsd: FakeRvsd,
    pair: VethPair,
}

/// The keepalived.conf of one side; rvs-healthd's (`vb`) also names the instance for the
/// connection sync role.
fn instance(dev: &str, p: &Peer, notify: &Path) -> String {
    let sync = if dev == "vb" {
        "  lvs_sync_daemon vb VI_T id 1\n"
    } else {
        ""
    };
    let (own, other) = if dev == "vb" {
        (VethPair::B, VethPair::A)
    } else {
        (VethPair::A, VethPair::B)
    };
    let unicast = if p.unicast {
        format!("unicast_src_ip {own}\n  unicast_peer {{\n    {other}\n  }}")
    } else {
        String::new()
    };
    format!(
        "global_defs {{\n  vrrp_version 3\n{sync}}}\nvrrp_instance VI_T {{\n  state BACKUP\n  interface {dev}\n  virtual_router_id 51\n  priority {}\n  advert_int 1\n  {}\n  {unicast}\n  virtual_ipaddress {{\n    {VIP}/32 dev {dev}\n  }}\n  notify {}\n}}\n",
        p.priority,
        if p.nopreempt { "nopreempt" } else { "" },
        notify.display()
    )
}

impl Interop {
    fn new() -> Interop {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!(
            "rvs-vrrp-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().unwrap().keep();
        let pair = VethPair::new(&prefix).expect("namespaces and a veth pair (root needed)");
        for side in ["k", "r"] {
            let script = dir.join(format!("notify-{side}.sh"));
            let state = dir.join(format!("state-{side}"));
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"$3\" > {0}.tmp && mv {0}.tmp {0}\n",
                    state.display()
                ),
            )
            .unwrap();
            std::process::Command::new("chmod")
                .arg("755")
                .arg(&script)
                .status()
                .unwrap();
        }
        // rvsd's configuration as rvs-healthd reads it: the port whose twin is `vb`.
        std::fs::write(
            dir.join("rvs.toml"),
            "[[ports]]\nname = \"ext\"\ndevice = \"net_null0\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\nkernel_twin = \"vb\"\n",
        )
        .unwrap();
        let rvsd = FakeRvsd::start(&dir.join("rvs.sock")).unwrap();
        Interop {
            dir,
            keepalived: None,
            healthd: None,
            rvsd,
            pair,
        }
    }

    fn start_keepalived(&mut self, p: &Peer) {
        let text = instance("va", p, &self.dir.join("notify-k.sh"));
        self.start_keepalived_with(&text);
    }

    /// keepalived on keepalived.conf `text`.
    fn start_keepalived_with(&mut self, text: &str) {
        let conf = self.dir.join("keepalived.conf");
        std::fs::write(&conf, text).unwrap();
        let d = |f: &str| self.dir.join(f).display().to_string();
        let args = [
            "-n".to_string(),
            "-l".into(),
            "-D".into(),
            "-P".into(),
            "-f".into(),
            d("keepalived.conf"),
            "-p".into(),
            d("keepalived.pid"),
            "-r".into(),
            d("vrrp.pid"),
            "-c".into(),
            d("checkers.pid"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.keepalived = Some(
            NsProcess::start(
                &self.pair.a,
                Path::new("/usr/sbin/keepalived"),
                &args,
                &self.dir.join("keepalived.log"),
            )
            .unwrap(),
        );
    }

    fn start_healthd(&mut self, p: &Peer) {
        let text = instance("vb", p, &self.dir.join("notify-r.sh"));
        self.start_healthd_with(&text);
    }

    /// rvs-healthd on keepalived.conf `text`.
    fn start_healthd_with(&mut self, text: &str) {
        let conf = self.dir.join("healthd.conf");
        std::fs::write(&conf, text).unwrap();
        let args = [
            "-f".to_string(),
            conf.display().to_string(),
            "--socket".into(),
            self.rvsd.path().display().to_string(),
            "--rvs-config".into(),
            self.dir.join("rvs.toml").display().to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.healthd = Some(
            NsProcess::start(
                &self.pair.b,
                Path::new(env!("CARGO_BIN_EXE_rvs-healthd")),
                &args,
                &self.dir.join("healthd.log"),
            )
            .unwrap(),
        );
    }

    fn state(&self, side: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("state-{side}")))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Waits until `side`'s notify file says `want`; how long that took.
    fn wait_state(&self, side: &str, want: &str, within: Duration) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.state(side) == want {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "{side} is {:?}, not {want}, after {within:?}\n{}",
            self.state(side),
            self.logs()
        );
    }

    /// Waits until rvs-healthd is MASTER (within `within`) and keepalived BACKUP (an advert
    /// later), and checks that rvs-healthd's last request to rvsd holds the VIP.
    fn wait_healthd_master(&self, within: Duration) {
        self.wait_state("r", "MASTER", within);
        self.wait_state("k", "BACKUP", ADVERT);
        assert_eq!(self.healthd_holds_vip(), Some(true));
    }

    /// Waits until keepalived is MASTER (within `within`) and rvs-healthd BACKUP (an advert
    /// later), and checks that rvs-healthd's last request to rvsd releases the VIP.
    fn wait_keepalived_master(&self, within: Duration) {
        self.wait_state("k", "MASTER", within);
        self.wait_state("r", "BACKUP", ADVERT);
        assert_eq!(self.healthd_holds_vip(), Some(false));
    }

    /// Asserts `side` stays `want` for `span`.
    fn stays(&self, side: &str, want: &str, span: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < span {
            assert_eq!(
                self.state(side),
                want,
                "{side} after {:?}\n{}",
                t0.elapsed(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether keepalived's side has the VIP on `va`.
    fn keepalived_holds_vip(&self) -> bool {
        let out = std::process::Command::new("ip")
            .args(["-n", self.pair.a.name(), "-4", "addr", "show", "dev", "va"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("inet {VIP}/32"))
    }

    /// rvs-healthd's last SetSyncRole: (master, backup).
    fn sync_role(&self) -> Option<(bool, bool)> {
        self.rvsd
            .requests()
            .iter()
            .rev()
            .find_map(|(_, r)| match r {
                Request::SetSyncRole { master, backup } => Some((*master, *backup)),
                _ => None,
            })
    }

    /// rvs-healthd's last SetVirtualAddrs for the IPv6 instance VI_6: held or not.
    fn healthd_holds_vip6(&self) -> Option<bool> {
        self.rvsd
            .requests()
            .iter()
            .rev()
            .find_map(|(_, r)| match r {
                Request::SetVirtualAddrs {
                    instance,
                    addrs,
                    held,
                    ..
                } if instance == "VI_6" => {
                    assert_eq!(addrs, &[IpCidr::parse(&format!("{VIP6}/64")).unwrap()]);
                    Some(*held)
                }
                _ => None,
            })
    }

    /// rvs-healthd's last SetVirtualAddrs: held or not.
    fn healthd_holds_vip(&self) -> Option<bool> {
        self.rvsd
            .requests()
            .iter()
            .rev()
            .find_map(|(_, r)| match r {
                Request::SetVirtualAddrs {
                    instance,
                    port,
                    addrs,
                    held,
                } => {
                    assert_eq!((instance.as_str(), port.as_str()), ("VI_T", "ext"));
                    assert_eq!(addrs, &[IpCidr::parse(&format!("{VIP}/32")).unwrap()]);
                    Some(*held)
                }
                _ => None,
            })
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- keepalived.log\n{}\n--- healthd.log\n{}",
            read("keepalived.log"),
            read("healthd.log")
        )
    }

    fn stop_healthd(&mut self) {
        let status = self.healthd.take().and_then(|mut h| h.stop());
        assert!(
            status.is_some_and(|s| s.success()),
            "rvs-healthd exit {status:?}\n{}",
            self.logs()
        );
    }

    /// The PID of keepalived's VRRP process (its `-r` file).
    fn keepalived_vrrp_pid(&self) -> libc::pid_t {
        let text = std::fs::read_to_string(self.dir.join("vrrp.pid")).unwrap();
        text.trim().parse().unwrap()
    }

    fn stop_keepalived(&mut self) {
        self.keepalived.take().and_then(|mut k| k.stop());
    }
}

impl Drop for Interop {
    fn drop(&mut self) {
        self.keepalived.take();
        self.healthd.take();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn rvs_healthd_at_higher_priority_preempts_hands_over_at_sigterm_and_preempts_back() {
    let mut t = Interop::new();
    let k = Peer::at(100);
    let r = Peer::at(150);
    t.start_keepalived(&k);
    t.wait_state("k", "MASTER", ELECTION);
    assert!(t.keepalived_holds_vip());
    // rvs-healthd starts in BACKUP, discards the lower adverts and preempts after
    // Master_Down_Interval (3 s + skew at 150).
    t.start_healthd(&r);
    t.wait_healthd_master(ELECTION);
    assert_eq!(
        t.sync_role(),
        Some((true, true)),
        "MASTER sends and receives"
    );
    assert!(!t.keepalived_holds_vip());
    t.stays("k", "BACKUP", 3 * ADVERT);
    // SIGTERM: rvs-healthd sends priority 0, keepalived takes over after its skew time.
    let t0 = Instant::now();
    t.stop_healthd();
    t.wait_state("k", "MASTER", 3 * ADVERT);
    let took = t0.elapsed();
    assert!(took < 3 * ADVERT, "takeover after priority 0 took {took:?}");
    assert_eq!(t.healthd_holds_vip(), Some(false), "released on SIGTERM");
    assert!(t.keepalived_holds_vip());
    eprintln!("keepalived took over {took:?} after rvs-healthd's SIGTERM");
    // Back again: preemption returns the VIP to the higher priority.
    t.start_healthd(&r);
    t.wait_healthd_master(ELECTION);
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn keepalived_at_higher_priority_preempts_and_rvs_healthd_takes_over_when_it_stops() {
    let mut t = Interop::new();
    let k = Peer::at(150);
    let r = Peer::at(100);
    t.start_healthd(&r);
    t.wait_state("r", "MASTER", ELECTION);
    assert_eq!(t.healthd_holds_vip(), Some(true));
    t.start_keepalived(&k);
    t.wait_keepalived_master(ELECTION);
    assert_eq!(t.sync_role(), Some((false, true)), "BACKUP only receives");
    assert!(t.keepalived_holds_vip());
    // keepalived stops (SIGTERM: it sends priority 0): rvs-healthd takes over within its
    // skew time, well inside 3 advert intervals.
    let t0 = Instant::now();
    t.stop_keepalived();
    t.wait_state("r", "MASTER", 3 * ADVERT);
    let took = t0.elapsed();
    assert!(took < 3 * ADVERT, "takeover took {took:?}");
    assert_eq!(t.healthd_holds_vip(), Some(true));
    eprintln!("rvs-healthd took over {took:?} after keepalived's SIGTERM");
    // keepalived returns and preempts again.
    t.start_keepalived(&k);
    t.wait_state("r", "BACKUP", ELECTION);
    t.wait_state("k", "MASTER", ADVERT);
    assert_eq!(t.healthd_holds_vip(), Some(false));
    // A master that goes silent without a word: keepalived's VRRP process frozen by its PID
    // (SIGSTOP; a SIGKILL would not do, as keepalived's parent then makes it send priority
    // 0). The backup waits Master_Down_Interval from the last advert: 3 * 1 s + (256 - 100) /
    // 256 s.
    let vrrp_pid = t.keepalived_vrrp_pid();
    let t0 = Instant::now();
    signal(vrrp_pid, libc::SIGSTOP);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        t.wait_state("r", "MASTER", ELECTION);
        t0.elapsed()
    }));
    signal(vrrp_pid, libc::SIGCONT);
    let took = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
    // The down timer started at the last advert heard, up to one interval before the stop.
    assert!(
        (Duration::from_millis(2_600)..Duration::from_millis(4_200)).contains(&took),
        "took over after {took:?}, not within Master_Down_Interval (3.61 s) of the last advert"
    );
    eprintln!("rvs-healthd took over {took:?} after keepalived went silent");
}

/// The IPv6 instance VI_6 (VRID 61): 2001:db8:5::100/64 on `dev`, adverts to ff02::12 from
/// `dev`'s link-local address.
fn instance6(dev: &str, priority: u8, notify: &Path) -> String {
    format!(
        "global_defs {{\n  vrrp_version 3\n}}\nvrrp_instance VI_6 {{\n  state BACKUP\n  interface {dev}\n  virtual_router_id 61\n  priority {priority}\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP6}/64 dev {dev}\n  }}\n  notify {}\n}}\n",
        notify.display()
    )
}

/// VRRPv3's IPv6 mode both ways: rvs-healthd at 100 becomes MASTER alone; keepalived at 150
/// preempts it (rvs-healthd read keepalived's IPv6 adverts: 16-byte address, IPv6 checksum,
/// hop limit 255) and holds 2001:db8:5::100 after rvs-healthd released it; keepalived's
/// SIGTERM (priority 0) gives it back within three intervals.
#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn ipv6_instances_elect_and_hand_over_with_keepalived() {
    let mut t = Interop::new();
    let healthd = instance6("vb", 100, &t.dir.join("notify-r.sh"));
    t.start_healthd_with(&healthd);
    t.wait_state("r", "MASTER", ELECTION);
    assert_eq!(t.healthd_holds_vip6(), Some(true));
    let keepalived = instance6("va", 150, &t.dir.join("notify-k.sh"));
    t.start_keepalived_with(&keepalived);
    t.wait_state("k", "MASTER", ELECTION);
    t.wait_state("r", "BACKUP", ADVERT);
    assert_eq!(t.healthd_holds_vip6(), Some(false));
    let t0 = Instant::now();
    t.stop_keepalived();
    t.wait_state("r", "MASTER", 3 * ADVERT);
    assert_eq!(t.healthd_holds_vip6(), Some(true));
    eprintln!(
        "rvs-healthd took over {:?} after keepalived's SIGTERM (IPv6)",
        t0.elapsed()
    );
    t.stop_healthd();
    let log = std::fs::read_to_string(t.dir.join("healthd.log")).unwrap_or_default();
    for bad in ["drop_ttl: 0", "drop_checksum: 0", "drop_length: 0"] {
        assert!(log.contains(bad), "{bad}:\n{log}");
    }
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) on the PID of keepalived's VRRP process, which this test started.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}");
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn nopreempt_keeps_the_current_master_both_ways() {
    // rvs-healthd at 150 with nopreempt joins keepalived's election at 100: it stays BACKUP.
    let mut t = Interop::new();
    t.start_keepalived(&Peer::at(100));
    t.wait_state("k", "MASTER", ELECTION);
    t.start_healthd(&Peer::at(150).nopreempt());
    t.wait_state("r", "BACKUP", ELECTION);
    t.stays("r", "BACKUP", 2 * ELECTION);
    assert_eq!(t.state("k"), "MASTER");
    assert_eq!(t.healthd_holds_vip(), Some(false));
    drop(t);

    // keepalived at 150 with nopreempt joins rvs-healthd's at 100: keepalived stays BACKUP.
    let mut t = Interop::new();
    t.start_healthd(&Peer::at(100));
    t.wait_state("r", "MASTER", ELECTION);
    t.start_keepalived(&Peer::at(150).nopreempt());
    t.wait_state("k", "BACKUP", ELECTION);
    t.stays("k", "BACKUP", 2 * ELECTION);
    assert_eq!(t.state("r"), "MASTER");
    assert_eq!(t.healthd_holds_vip(), Some(true));
    assert!(!t.keepalived_holds_vip());
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn a_hold_rvsd_did_not_take_is_sent_again() {
    let mut t = Interop::new();
    t.rvsd.set_refusing(true);
    t.start_healthd(&Peer::at(100));
    // Alone on the link: MASTER after Master_Down_Interval, its hold refused.
    t.wait_state("r", "MASTER", ELECTION);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(t.healthd_holds_vip(), None, "refused, so not recorded");
    let back = Instant::now();
    t.rvsd.set_refusing(false);
    while t.healthd_holds_vip() != Some(true) {
        assert!(
            back.elapsed() < health::vrrp::run::RETRY * 3,
            "not sent again\n{}",
            t.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    t.stop_healthd();
    assert_eq!(t.healthd_holds_vip(), Some(false));
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn unicast_peers_elect_and_hand_over_as_multicast_ones_do() {
    let mut t = Interop::new();
    let k = Peer::at(100).unicast();
    let r = Peer::at(150).unicast();
    t.start_keepalived(&k);
    t.wait_state("k", "MASTER", ELECTION);
    t.start_healthd(&r);
    t.wait_healthd_master(ELECTION);
    let t0 = Instant::now();
    t.stop_healthd();
    t.wait_state("k", "MASTER", 3 * ADVERT);
    eprintln!(
        "unicast: keepalived took over {:?} after rvs-healthd's SIGTERM",
        t0.elapsed()
    );
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1: namespaces need root")]
fn a_failing_track_script_lowers_the_priority_and_hands_over() {
    let mut t = Interop::new();
    t.start_keepalived(&Peer::at(100));
    t.wait_state("k", "MASTER", ELECTION);
    // rvs-healthd at 150 while a file exists, 90 (150 - 60) while it does not.
    let flag = t.dir.join("healthy");
    std::fs::write(&flag, "").unwrap();
    let base = instance("vb", &Peer::at(150), &t.dir.join("notify-r.sh"));
    let text = format!(
        "vrrp_script chk {{\n  script \"/usr/bin/test -f {}\"\n  interval 1\n  weight -60\n}}\n{}",
        flag.display(),
        base.replace("  notify ", "  track_script {\n    chk\n  }\n  notify ")
    );
    t.start_healthd_with(&text);
    t.wait_state("r", "MASTER", ELECTION);
    t.wait_state("k", "BACKUP", ADVERT);
    // The script fails: rvs-healthd advertises 90, keepalived (100) preempts it after its
    // Master_Down_Interval, plus up to a script interval to notice.
    std::fs::remove_file(&flag).unwrap();
    t.wait_keepalived_master(ELECTION + Duration::from_secs(1));
    // Good again: 150 preempts back.
    std::fs::write(&flag, "").unwrap();
    t.wait_healthd_master(ELECTION + Duration::from_secs(1));
}
