//! Network namespaces of a test's own (named `rvs-*`, documentation addresses only), deleted
//! on drop even when the test fails, and rvsd started inside one.

use crate::daemon::{Rvsd, RvsdConfig};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

/// Whether this process runs as root (namespaces, veths and twins need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A network namespace, deleted on drop.
pub struct Netns(String);

impl Netns {
    /// Creates namespace `name` (a stale one of the same name is deleted first) with `lo` up.
    /// Panics unless root, naming how to skip.
    pub fn new(name: impl Into<String>) -> Netns {
        assert!(
            is_root(),
            "needs root (a network namespace): run as root, or RVS_SKIP_LAB=1 to skip"
        );
        let name = name.into();
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ns = Netns(name);
        ns.ip_ok(&["netns", "add", &ns.0]);
        ns.ip_ok(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// `ip -n NS ARGS`'s standard output (whatever its exit status).
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ip ARGS`, which must succeed.
    pub fn ip_ok(&self, args: &[&str]) {
        let st = Command::new("ip").args(args).status().expect("run ip");
        assert!(st.success(), "ip {args:?}: {st}");
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it, so the
    /// child's PID is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }

    /// rvsd (`bin`) in the namespace on `config`, its file and log in `dir`.
    pub fn rvsd(&self, bin: &Path, config: &RvsdConfig, dir: &Path) -> Rvsd {
        Rvsd::start_with(self.command(bin), config, dir)
    }

    /// Runs `f` on a thread inside the namespace (sockets it opens live there).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.0, f)
    }
}

/// Runs `f` on a thread inside the named namespace, which need not be this test's own (the
/// lab's `rvs-cli`, say): setns moves that thread only, and the namespace ends with it.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on an open namespace descriptor; it moves this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
