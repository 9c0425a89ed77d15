//! The metrics listener of the real rvsd (one `net_null` port): `/metrics` passes Debian's
//! `promtool check metrics` in the classic format and ends in `# EOF` in OpenMetrics; the status
//! page and `/status.json` answer; unknown paths, other methods and garbage get 404, 405 and
//! 400, a stalled client holds up nobody, and rvsd stays up; an address in use stops start-up with an error naming it, unless
//! `optional = true`.
//!
//! rvsd listens on 203.0.113.1, so each test runs it in a network namespace of its own
//! (`rvs-metrics-<pid>-<n>`, 203.0.113.1/32 on its `lo`) and talks to it from a thread that
//! joined that namespace. Needs root; skipped with the lab under RVS_SKIP_LAB=1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testkit::daemon::{net_null, Rvsd, RvsdConfig, VdevPort};
use testkit::netns::Netns;

const LISTEN: &str = "203.0.113.1:9180";

/// rvsd's worker spins on lcore 0: one daemon at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A network namespace of this test's own (`rvs-metrics-<pid>-<n>`, 203.0.113.1/32 on its `lo`).
fn metrics_ns() -> Netns {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let ns = Netns::new(format!(
        "rvs-metrics-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    ns.ip_ok(&[
        "-n",
        ns.name(),
        "addr",
        "add",
        "203.0.113.1/32",
        "dev",
        "lo",
    ]);
    ns
}

/// rvsd in `ns` on `config`, its files in `dir`.
fn rvsd_in(ns: &Netns, config: &RvsdConfig, dir: &Path) -> Rvsd {
    ns.rvsd(Path::new(env!("CARGO_BIN_EXE_rvsd")), config, dir)
}

fn config(dir: &Path) -> RvsdConfig {
    RvsdConfig::new(dir.join("rvs.sock"))
        .port(VdevPort::one_arm(net_null(0)))
        .services(
            "-A -t 198.51.100.1:80 -s wrr\n\
             -a -t 198.51.100.1:80 -r 198.51.100.2:80 -m -w 1\n\
             -a -t 198.51.100.1:80 -r 198.51.100.3:80 -m -w 3\n",
        )
}

fn listen() -> SocketAddr {
    LISTEN.parse().expect("address")
}

/// Sends `request` as it is and returns the whole answer (the listener closes after it:
/// `Connection: close`), retrying the connection for a while (rvsd is starting).
fn exchange(request: &[u8]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match TcpStream::connect(listen()) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("connect {LISTEN}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str, extra: &str) -> String {
    exchange(
        format!("GET {path} HTTP/1.1\r\nHost: rvs\r\nConnection: close\r\n{extra}\r\n").as_bytes(),
    )
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package: scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let mut msg = String::from_utf8_lossy(&out.stdout).into_owned();
    msg.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), msg)
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn metrics_pass_promtool_and_every_page_answers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = metrics_ns();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rvsd = rvsd_in(&ns, &config(dir.path()).metrics(listen()), dir.path());
    rvsd.wait_ready(Duration::from_secs(30));

    let classic = ns.run(|| get("/metrics", ""));
    assert_eq!(status_line(&classic), "HTTP/1.1 200 OK", "{classic}");
    assert!(
        classic.contains("Content-Type: text/plain; version=0.0.4"),
        "{classic}"
    );
    let text = body(&classic);
    for expected in [
        "# TYPE node_ipvs_connections_total counter",
        "node_ipvs_connections_total 0",
        r#"node_ipvs_backend_weight{local_address="198.51.100.1",local_port="80",remote_address="198.51.100.3",remote_port="80",proto="TCP",local_mark=""} 3"#,
        r#"rvs_conntrack_capacity{family="ipv4"} 1024"#,
        r#"rvs_port_hw_rx_missed_total{port="lan"} 0"#,
        r#"rvs_worker_polls_total{worker="0",state="idle"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let (ok, msg) = promtool(text);
    assert!(
        ok && msg.trim().is_empty(),
        "promtool check metrics: {msg}\n{text}"
    );

    let om = ns.run(|| {
        get(
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0\r\n",
        )
    });
    assert!(
        om.contains("Content-Type: application/openmetrics-text"),
        "{om}"
    );
    assert!(body(&om).ends_with("# EOF\n"), "{om}");
    assert!(body(&om).contains("# TYPE node_ipvs_connections counter"));

    let page = ns.run(|| get("/", ""));
    assert_eq!(status_line(&page), "HTTP/1.1 200 OK");
    assert!(body(&page).contains("<title>rvs status</title>"));
    let json = ns.run(|| get("/status.json", ""));
    let v: serde_json::Value = serde_json::from_str(body(&json)).expect("status.json");
    assert_eq!(v["services"][0]["dests"][1]["spec"]["weight"], 3);

    let head =
        ns.run(|| exchange(b"HEAD /metrics HTTP/1.1\r\nHost: rvs\r\nConnection: close\r\n\r\n"));
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK");
    assert_eq!(body(&head), "", "HEAD has no body");
    let missing = ns.run(|| get("/nothing", ""));
    assert_eq!(status_line(&missing), "HTTP/1.1 404 Not Found");
    let post = ns.run(|| {
        exchange(b"POST /metrics HTTP/1.1\r\nHost: rvs\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    });
    assert_eq!(status_line(&post), "HTTP/1.1 405 Method Not Allowed");
    assert!(post.contains("Allow: GET, HEAD"), "{post}");
    let garbage = ns.run(|| exchange(b"\x01\x02 nonsense\r\n\r\n"));
    assert!(status_line(&garbage).contains(" 400 "), "{garbage:?}");

    // A client that sends half a request and waits stalls nobody else.
    let stalled = ns.run(|| {
        let mut s = TcpStream::connect(listen()).expect("connect");
        s.write_all(b"GET /metr").expect("send");
        s
    });
    // Still serving, and rvsd still up.
    assert_eq!(
        status_line(&ns.run(|| get("/metrics", ""))),
        "HTTP/1.1 200 OK"
    );
    assert!(rvsd.alive(), "{}", rvsd.log_tail(30));
    drop(stalled);
    let st = rvsd.stop();
    assert!(st.success(), "rvsd exit {st}\n{}", rvsd.log_tail(30));
}

#[test]
#[cfg_attr(rvs_skip_lab, ignore = "RVS_SKIP_LAB=1")]
fn an_address_in_use_stops_start_up_unless_optional() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = metrics_ns();
    let dir = tempfile::tempdir().expect("tempdir");
    // The socket belongs to the namespace it was made in, whichever thread holds it later.
    let taken = ns.run(|| TcpListener::bind(listen()).expect("take the address"));

    let mut refused = rvsd_in(&ns, &config(dir.path()).metrics(listen()), dir.path());
    let st = refused.wait_exit(Duration::from_secs(30));
    assert!(
        !st.success(),
        "rvsd must refuse to start\n{}",
        refused.log_text()
    );
    let log = refused.log_text();
    assert!(
        log.contains("metrics.listen 203.0.113.1:9180") && log.contains("in use"),
        "the error names the key and the address: {log}"
    );
    assert!(!log.contains("rvsd ready"), "{log}");

    let mut optional = rvsd_in(
        &ns,
        &config(dir.path()).metrics_optional(listen()),
        dir.path(),
    );
    optional.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert!(optional.alive(), "{}", optional.log_tail(30));
    let log = optional.log_text();
    assert!(
        log.contains("WARN") && log.contains("starting without the metrics listener"),
        "{log}"
    );
    let st = optional.stop();
    assert!(st.success(), "rvsd exit {st}\n{}", optional.log_tail(30));
    drop(taken);
}
