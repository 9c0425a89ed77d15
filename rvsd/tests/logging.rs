//! rvsd's log: plain text (no ANSI colour) when stderr is not a terminal, JSON lines with
//! `RVS_LOG_FORMAT=json`, and every control change logged with the uid and pid of the client
//! that asked (listings are not). The real rvsd on one `net_null` port, its stderr in a file.

use control::proto::{Response, ResponseEnvelope};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use testkit::daemon::{net_null, Launch, Rvsd, RvsdConfig, VdevPort};

// One daemon at a time: their workers spin on lcore 0.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// rvsd with `envs`, its socket and log in `dir`.
fn start(dir: &Path, envs: &[(&str, &str)]) -> Rvsd {
    start_with_args(dir, envs, &[])
}

/// rvsd with `envs` and the extra command-line `args`, its socket and log in `dir`.
fn start_with_args(dir: &Path, envs: &[(&str, &str)], args: &[&str]) -> Rvsd {
    let socket = dir.join("rvs.sock");
    let config = RvsdConfig::new(&socket).port(VdevPort::one_arm(net_null(0)));
    let path = dir.join("rvs.toml");
    config.write(&path);
    let mut c = Command::new(env!("CARGO_BIN_EXE_rvsd"));
    c.arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("RVS_LOG");
    c.env_remove("RVS_LOG_FORMAT");
    for (k, v) in envs {
        c.env(k, v);
    }
    let rvsd = Rvsd::spawn(
        c,
        Launch {
            socket,
            log: dir.join("rvsd.log"),
            file_prefix: Some(config.file_prefix().to_string()),
        },
    );
    rvsd.wait_ready(Duration::from_secs(30));
    rvsd
}

fn ask(socket: &Path, line: &str) -> Response {
    let mut s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(format!("{line}\n").as_bytes()).expect("send");
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).expect("answer");
    serde_json::from_str::<ResponseEnvelope>(&answer)
        .unwrap_or_else(|e| panic!("{e}: {answer}"))
        .result
}

const CLEAR: &str = r#"{"version":1,"request":"clear"}"#;
const LIST: &str = r#"{"version":1,"request":{"list":{"service":null}}}"#;
const DEL_MISSING: &str =
    r#"{"version":1,"request":{"del_service":{"protocol":"tcp","addr":"198.51.100.9","port":80}}}"#;

#[test]
fn text_log_has_no_colour_and_names_who_changed_what() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rvsd = start(dir.path(), &[]);
    assert_eq!(ask(rvsd.socket(), CLEAR), Response::Ok);
    assert!(matches!(
        ask(rvsd.socket(), LIST),
        Response::Services { .. }
    ));
    assert!(matches!(
        ask(rvsd.socket(), DEL_MISSING),
        Response::Error(_)
    ));
    rvsd.stop();
    let log = rvsd.log_text();

    assert!(!log.contains("\x1b["), "ANSI escapes in a log file:\n{log}");
    assert!(log.contains("rvsd ready"), "{log}");
    // SAFETY: getuid cannot fail.
    let who = format!(
        "uid={} pid={}",
        unsafe { libc::getuid() },
        std::process::id()
    );
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("control change"))
        .collect();
    assert_eq!(
        changes.len(),
        2,
        "the clear and the refused delete, not the list:\n{log}"
    );
    assert!(
        changes[0].contains(&who) && changes[0].contains("Clear"),
        "{log}"
    );
    assert!(
        changes[1].contains("control change refused")
            && changes[1].contains(&who)
            && changes[1].contains("DelService"),
        "{log}"
    );
}

#[test]
fn json_log_is_one_object_per_line_with_the_client() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rvsd = start(dir.path(), &[("RVS_LOG_FORMAT", "json")]);
    assert_eq!(ask(rvsd.socket(), CLEAR), Response::Ok);
    rvsd.stop();
    let log = rvsd.log_text();

    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!events.is_empty(), "{log}");
    let change = events
        .iter()
        .find(|e| e["fields"]["message"] == "control change")
        .unwrap_or_else(|| panic!("no control change event:\n{log}"));
    // SAFETY: getuid cannot fail.
    assert_eq!(
        change["fields"]["uid"],
        u64::from(unsafe { libc::getuid() })
    );
    assert_eq!(change["fields"]["pid"], u64::from(std::process::id()));
    // Each connection table says its size and what backs it; the test's tables (1024
    // connections) are under the 2 MiB that hugepages start at, so no warning.
    for family in ["ipv4", "ipv6"] {
        let table = events
            .iter()
            .find(|e| {
                e["fields"]["message"] == "connection table ready"
                    && e["fields"]["family"] == family
            })
            .unwrap_or_else(|| panic!("no {family} table event:\n{log}"));
        assert_eq!(table["fields"]["capacity"], 1024, "{table}");
        assert_eq!(table["fields"]["backing"], "anonymous 4K pages", "{table}");
    }
    assert!(
        !log.contains("not on reserved hugepages"),
        "a warning for a small table:\n{log}"
    );
}

#[test]
fn eal_lines_are_json_events_with_target_dpdk() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("temp dir");
    // testkit's configuration keeps EAL to errors; its start-up lines ("EAL: Detected ...") are
    // info.
    let mut rvsd = start_with_args(
        dir.path(),
        &[("RVS_LOG_FORMAT", "json")],
        &["--eal-args", "--log-level lib.eal:info"],
    );
    rvsd.stop();
    let log = rvsd.log_text();

    // log_text's first line names the file.
    let events: Vec<serde_json::Value> = log
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a raw line ({e}): {l}\n{log}")))
        .collect();
    let eal: Vec<&serde_json::Value> = events.iter().filter(|e| e["target"] == "dpdk").collect();
    assert!(
        eal.iter().any(|e| e["level"] == "INFO"
            && e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("EAL: Detected "))),
        "no EAL line through the logger:\n{log}"
    );
    assert!(
        eal.iter().all(|e| e["fields"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty() && !m.ends_with('\n'))),
        "{log}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "rvsd ready"),
        "{log}"
    );
}

#[test]
fn a_bad_log_setting_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("rvs.toml");
    RvsdConfig::new(dir.path().join("rvs.sock"))
        .port(VdevPort::one_arm(net_null(0)))
        .write(&path);
    let check = |envs: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rvsd"));
        c.args(["--check", "--config"]).arg(&path);
        c.env_remove("RVS_LOG").env_remove("RVS_LOG_FORMAT");
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().expect("run rvsd");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(check(&[]).0, "{}", check(&[]).1);
    let (ok, err) = check(&[("RVS_LOG_FORMAT", "xml")]);
    assert!(
        !ok && err.contains("RVS_LOG_FORMAT") && err.contains("xml"),
        "{err}"
    );
    let (ok, err) = check(&[("RVS_LOG", "rvsd=loud")]);
    assert!(!ok && err.contains("RVS_LOG"), "{err}");

    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("\n[log]\nlevel = \"rvsd=loud\"\n");
    std::fs::write(&path, text).expect("write");
    let (ok, err) = check(&[]);
    assert!(!ok && err.contains("log.level"), "{err}");
    assert!(
        check(&[("RVS_LOG", "warn")]).0,
        "RVS_LOG overrides [log] level"
    );
}
