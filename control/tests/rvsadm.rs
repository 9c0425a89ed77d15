//! The rvsadm binary end to end, against a fake rvsd on a Unix socket in a temporary folder:
//! what it sends, what it prints, and its exit status.

mod common;

use control::format::{self, ListFormat};
use control::model::{Protocol, SchedulerKind, ServiceSpec};
use control::proto::{Request, RequestEnvelope, Response, ResponseEnvelope};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// A fake daemon: records every request and answers with `answer`.
struct FakeDaemon {
    path: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl FakeDaemon {
    fn start(name: &str, answer: impl Fn(&Request) -> Response + Send + 'static) -> FakeDaemon {
        let path = socket_path(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        // Left blocked in accept when the test ends; the test process's exit ends it.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                for line in BufReader::new(stream.try_clone().unwrap()).lines() {
                    let envelope: RequestEnvelope = serde_json::from_str(&line.unwrap()).unwrap();
                    let response = answer(&envelope.request);
                    log.lock().unwrap().push(envelope.request);
                    let mut out = serde_json::to_string(&ResponseEnvelope::new(response)).unwrap();
                    out.push('\n');
                    stream.write_all(out.as_bytes()).unwrap();
                }
            }
        });
        FakeDaemon { path, seen }
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rvsadm-{}-{name}.sock", std::process::id()))
}

/// A daemon holding the common test state.
fn answer_from_state(request: &Request) -> Response {
    match request {
        Request::List { service } => Response::Services {
            table_size: 4096,
            services: common::state()
                .into_iter()
                .filter(|s| service.is_none_or(|k| k == s.spec.key))
                .collect(),
        },
        _ => Response::Ok,
    }
}

fn rvsadm(socket: &PathBuf, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove(control::proto::SOCKET_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn list_prints_the_daemon_s_table() {
    let daemon = FakeDaemon::start("list", answer_from_state);
    let out = rvsadm(&daemon.path, &["-L", "-n"], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format::list(4096, &common::state(), &ListFormat::default())
    );
    assert_eq!(daemon.seen(), [Request::List { service: None }]);
}

#[test]
fn list_of_an_unknown_service_fails() {
    let daemon = FakeDaemon::start("list-one", answer_from_state);
    let out = rvsadm(&daemon.path, &["-L", "-t", "198.51.100.1:8080"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "No such service\n");
}

#[test]
fn edit_fetches_the_service_and_sends_it_merged() {
    let daemon = FakeDaemon::start("edit", answer_from_state);
    let out = rvsadm(
        &daemon.path,
        &["-E", "-u", "198.51.100.1:53", "-s", "rr"],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = common::key(Protocol::Udp, 53);
    assert_eq!(
        daemon.seen(),
        [
            Request::List { service: Some(key) },
            Request::EditService(ServiceSpec {
                key,
                scheduler: SchedulerKind::Rr,
                persistence: Some(300),
                netmask: "255.255.255.0".parse().unwrap(),
                sched_flags: Default::default(),
                ops: false,
            })
        ]
    );
}

#[test]
fn usage_errors_exit_2_and_send_nothing() {
    let daemon = FakeDaemon::start("usage", answer_from_state);
    let out = rvsadm(
        &daemon.path,
        &["-a", "-t", "198.51.100.1:80", "-r", "192.0.2.2", "-g"],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("masquerading (NAT, -m) only"));
    assert!(daemon.seen().is_empty());
}

#[test]
fn daemon_errors_exit_1_with_the_daemon_s_message() {
    let daemon = FakeDaemon::start("refuse", |_| {
        Response::Error("Service already exists".into())
    });
    let out = rvsadm(&daemon.path, &["-A", "-t", "198.51.100.1:80"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Service already exists\n");
}

#[test]
fn unreachable_daemon_names_the_socket() {
    let path = socket_path("nobody-home");
    let out = rvsadm(&path, &["-C"], "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.starts_with("cannot connect to rvsd at"), "{stderr}");
}

#[test]
fn socket_comes_from_the_environment_without_the_option() {
    let daemon = FakeDaemon::start("env", answer_from_state);
    let out = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(["-Z"])
        .env(control::proto::SOCKET_ENV, &daemon.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(daemon.seen(), [Request::Zero { service: None }]);
}

#[test]
fn restore_checks_every_line_before_sending_any() {
    let daemon = FakeDaemon::start("restore-bad", answer_from_state);
    let input = "-A -t 198.51.100.1:8080 -s rr\n-a -t 198.51.100.1:8080 -r 192.0.2.2 -w 70000\n";
    let out = rvsadm(&daemon.path, &["-R"], input);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "line 2: illegal weight specified\n");
    assert!(daemon.seen().is_empty());
}

#[test]
fn restore_replays_a_save() {
    let daemon = FakeDaemon::start("restore", |_| Response::Ok);
    let saved = format::save(&common::state());
    let out = rvsadm(&daemon.path, &["-R"], &format!("-C\n{saved}"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seen = daemon.seen();
    assert_eq!(seen.len(), 1 + saved.lines().count());
    assert_eq!(seen[0], Request::Clear);
}

#[test]
fn restore_stops_at_the_first_refused_line_and_says_what_was_applied() {
    let daemon = FakeDaemon::start("restore-refused", |r| match r {
        Request::AddDest { .. } => Response::Error("Service not defined".into()),
        _ => Response::Ok,
    });
    let input = "-A -t 198.51.100.1:8080 -s rr\n# web\n-a -t 198.51.100.2:8080 -r 192.0.2.2\n-C\n";
    let out = rvsadm(&daemon.path, &["-R"], input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "line 3: Service not defined (the 1 command(s) before it were applied, none after it)\n"
    );
    assert_eq!(daemon.seen().len(), 2);
}

#[test]
fn help_and_version_need_no_daemon() {
    let path = socket_path("no-daemon-needed");
    let out = rvsadm(&path, &["-h"], "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), control::cli::usage());
    let out = rvsadm(&path, &["--version"], "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), control::cli::version());
}
