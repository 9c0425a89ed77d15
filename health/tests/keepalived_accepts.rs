//! Every example configuration rvs-healthd accepts (tests/configs/*.conf, with their includes)
//! is one Debian's keepalived accepts too: `keepalived --config-test -f FILE` exits 0, and
//! rvs-healthd's own `--config-test` agrees. keepalived comes from scripts/setup.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    v.sort();
    assert!(v.len() >= 2, "examples in {}", dir.display());
    v
}

#[test]
fn keepalived_accepts_every_example_rvs_healthd_accepts() {
    let keepalived = ["/usr/sbin/keepalived", "/sbin/keepalived"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("keepalived is not installed: run scripts/setup.sh (apt-get install keepalived)");
    for file in examples() {
        let cfg = health::conf::load(&file)
            .unwrap_or_else(|e| panic!("rvs-healthd refuses {}:\n{e}", file.display()));
        assert!(!cfg.services.is_empty(), "{}", file.display());
        // keepalived's and rvs-healthd's own --config-test.
        for program in [keepalived, Path::new(env!("CARGO_BIN_EXE_rvs-healthd"))] {
            let out = Command::new(program)
                .arg("--config-test")
                .arg("-f")
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
            assert!(
                out.status.success(),
                "{} --config-test -f {}: {}\n{}{}",
                program.display(),
                file.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn the_examples_hold_what_they_say() {
    let cfg = health::conf::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/all-checkers.conf"),
    )
    .unwrap();
    // The two real servers come from conf.d/ through the include's glob.
    let vs = &cfg.services[0];
    let eps: Vec<String> = vs
        .real_servers
        .iter()
        .map(|r| r.endpoint.to_string())
        .collect();
    assert_eq!(eps, ["203.0.113.2:443", "203.0.113.6:443"]);
    assert!(vs.real_servers[1].pos.file.ends_with("conf.d/rs2.conf"));
    let kinds: Vec<&str> = vs
        .real_servers
        .iter()
        .flat_map(|r| &r.checkers)
        .map(|c| c.kind.name())
        .collect();
    assert_eq!(kinds, ["TCP_CHECK", "HTTP_GET", "MISC_CHECK"]);
}

#[test]
fn a_refused_file_exits_non_zero_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("dr.conf");
    std::fs::write(&f, "virtual_server 198.51.100.1 80 {\n    lb_kind DR\n}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rvs-healthd"))
        .arg("-t")
        .arg("-f")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: lb_kind DR: rvs forwards by NAT only",
            f.display()
        )),
        "{err}"
    );
}
