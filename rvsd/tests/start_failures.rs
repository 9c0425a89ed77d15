//! Start-up failures a newcomer hits end with one line saying what to do: the real rvsd, started
//! on arguments that EAL or a port refuses, exits non-zero and its last stderr line is the advice.
//! Each run has a file prefix of its own and never touches the machine's hugepages: the hugepage
//! case points EAL at a folder that is not a hugetlbfs mount.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs rvsd on one port `device` with `eal` args (a file prefix of its own added); returns
/// whether it succeeded and its stderr.
fn run_rvsd(dir: &Path, eal: &[&str], device: &str) -> (bool, String) {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let prefix = format!(
        "rvs-test-start-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut args: Vec<String> = eal.iter().map(|s| s.to_string()).collect();
    args.extend(["--file-prefix".into(), prefix.clone()]);
    let list = args
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "[eal]\nargs = [{list}]\n[[ports]]\nname = \"ext\"\ndevice = \"{device}\"\nrole = \"both\"\n\
         addresses = [\"198.51.100.1/24\"]\n[workers]\nlcores = [0]\n[conntrack]\ncapacity = 1024\n\
         [control]\nsocket = \"{}\"\n",
        dir.join("rvs.sock").display()
    );
    let config = dir.join("rvs.toml");
    std::fs::write(&config, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .arg("--config")
        .arg(&config)
        .env("RVS_LOG", "error")
        .output()
        .expect("run rvsd");
    // EAL's runtime folder for the prefix, left behind by a failed start.
    let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&prefix));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_advice(eal: &[&str], device: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, err) = run_rvsd(dir.path(), eal, device);
    assert!(!ok, "rvsd started with {eal:?}:\n{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("rvsd: "),
        "{eal:?}: last line {last:?}:\n{err}"
    );
    for n in needles {
        assert!(
            last.contains(n),
            "{eal:?}: last line lacks {n:?}: {last:?}\n{err}"
        );
    }
}

#[test]
fn a_huge_dir_that_is_no_hugetlbfs_mount() {
    assert_advice(
        &[
            "-l",
            "0",
            "--no-pci",
            "--vdev=net_null0",
            "--huge-dir",
            "/nonexistent",
        ],
        "net_null0",
        &[
            "--huge-dir /nonexistent is not a hugetlbfs mount",
            "mount -t hugetlbfs nodev /nonexistent",
        ],
    );
}

/// One net_null port on ordinary memory, EAL kept off PCI.
const NULL_PORT_NO_HUGE: [&str; 5] = ["--no-pci", "--vdev=net_null0", "--no-huge", "-m", "256"];

#[test]
fn no_huge_with_in_memory() {
    assert_advice(
        &[&["-l", "0", "--in-memory"], &NULL_PORT_NO_HUGE[..]].concat(),
        "net_null0",
        &[
            "--no-huge and --in-memory do not go together",
            "drop --in-memory",
        ],
    );
}

#[test]
fn an_lcore_the_machine_does_not_have() {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("online CPUs");
    let last: u32 = online
        .trim()
        .rsplit([',', '-'])
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a CPU number");
    let missing = last + 1;
    assert!(missing < 128, "this machine has every lcore EAL knows");
    let list = format!("0,{missing}");
    assert_advice(
        &[&["-l", list.as_str()], &NULL_PORT_NO_HUGE[..]].concat(),
        "net_null0",
        &[
            &format!("-l {list} names lcores {missing} that this machine does not have"),
            "-l within",
        ],
    );
}

#[test]
fn a_pci_device_that_does_not_exist() {
    assert_advice(
        &["-l", "0", "--no-huge", "-m", "256", "-a", "0000:99:00.0"],
        "0000:99:00.0",
        &["no PCI device 0000:99:00.0", "dpdk-devbind.py --status"],
    );
}

#[test]
fn a_vdev_port_that_eal_did_not_create() {
    assert_advice(
        &[&["-l", "0"], &NULL_PORT_NO_HUGE[..]].concat(),
        "net_null1",
        &["add --vdev=net_null1"],
    );
}
