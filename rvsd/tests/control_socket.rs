//! rvsd's control socket end to end: the real rvsd (one `net_null` port that receives nothing,
//! `no-rx=1`) driven by the real rvsadm binary and by raw clients.
//!
//! - the ipvsadm language against the live daemon: -A/-a/-E/-e/-d/-D/--set/-Z, `-S` saved,
//!   `-C`, `-R` from the saved text, `-S` again identical; every rejected command exits non-zero
//!   and changes nothing (`-S` and `--timeout` compared before and after);
//! - `--rate` is measured by the running daemon;
//! - security and robustness: the socket is 0600 and owned by rvsd's user; malformed, wrong
//!   version, unknown and oversized requests get an error answer; an idle client stalls nobody;
//!   20 clients at once, and more than the daemon serves at once, all get an answer; rvsd stays
//!   up and answers afterwards, and removes its socket on SIGTERM.
//!
//! rvsd is `CARGO_BIN_EXE_rvsd`; rvsadm comes from the same target directory (built with
//! `cargo build -p control --bin rvsadm` when missing, as in tests/lab.rs). No root needed. The
//! daemons run one at a time: their worker spins on lcore 0.
//!
//! One file, past 600 lines: the cases share one daemon harness and run serially (one EAL per
//! process).

use control::proto::{Response, ResponseEnvelope, MAX_REQUEST_BYTES, PROTOCOL_VERSION};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use testkit::daemon::{net_null, rvsadm_beside, Rvsd, RvsdConfig, VdevPort};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rvsd_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rvsd"))
}

/// rvsd on a net_null port, with its socket in a temporary folder (testkit's guard: killed by
/// PID on drop, also when the test panics).
struct Daemon {
    rvsd: Rvsd,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(services: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("ctl").join("rvs.sock");
        let d = Daemon::start_at(dir, socket, services);
        d.rvsd.wait_ready(Duration::from_secs(30));
        d
    }

    /// Starts rvsd without waiting for its socket.
    fn start_at(dir: tempfile::TempDir, socket: PathBuf, services: &str) -> Daemon {
        let config = RvsdConfig::new(&socket)
            .port(VdevPort::one_arm(net_null(0)))
            .services(services);
        Daemon {
            rvsd: Rvsd::start(rvsd_bin(), &config, dir.path()),
            socket,
            _dir: dir,
        }
    }

    fn alive(&self) -> bool {
        self.rvsd.alive()
    }

    /// Waits (bounded) for rvsd to exit by itself.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.rvsd.wait_exit(within)
    }

    fn log_text(&self) -> String {
        self.rvsd.log_text()
    }

    fn adm(&self, args: &[&str]) -> Adm {
        self.adm_with_input(args, None)
    }

    fn adm_with_input(&self, args: &[&str], input: Option<&str>) -> Adm {
        let mut child = Command::new(rvsadm_beside(rvsd_bin()))
            .args(args)
            .env("RVS_SOCKET", &self.socket)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rvsadm");
        if let Some(text) = input {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write rvsadm stdin");
        }
        let out = child.wait_with_output().expect("rvsadm output");
        Adm {
            args: args.join(" "),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// rvsadm that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let r = self.adm(args);
        assert_eq!(r.code, Some(0), "{r:?}\n{}", self.log_text());
        r.stdout
    }

    /// What rejected commands must leave unchanged: the saved table and the timeouts.
    fn state(&self) -> String {
        format!(
            "{}{}",
            self.ok(&["-S", "-n"]),
            self.ok(&["-L", "--timeout"])
        )
    }

    fn connect(&self) -> Conn {
        Conn::new(&self.socket)
    }
}

#[derive(Debug)]
struct Adm {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// A raw control client: bytes out, JSON lines in.
struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Conn {
    fn new(path: &Path) -> Conn {
        let stream = UnixStream::connect(path).expect("connect to rvsd");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Conn { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to rvsd");
    }

    /// The next answer; panics on timeout or EOF.
    fn answer(&mut self) -> Response {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read answer");
        assert!(n > 0, "rvsd closed the connection without an answer");
        let env: ResponseEnvelope = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("answer is not a response envelope ({e}): {line}"));
        assert_eq!(env.version, PROTOCOL_VERSION);
        env.result
    }

    fn ask(&mut self, line: &str) -> Response {
        self.send(format!("{line}\n").as_bytes());
        self.answer()
    }

    /// True once rvsd has closed the connection: EOF, or a reset when it left part of our
    /// request unread.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn error_text(r: &Response) -> &str {
    match r {
        Response::Error(e) => e,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

const LIST: &str = r#"{"version":1,"request":{"list":{"service":null}}}"#;

fn listed_services(r: &Response) -> usize {
    match r {
        Response::Services { services, .. } => services.len(),
        other => panic!("expected services, got {other:?}"),
    }
}

/// A real-server line of `-L -n`, ipvsadm's `"  -> %-28s %-7s %-6d %-10u %-10u"`.
fn rs_line(addr: &str, weight: u32) -> String {
    format!(
        "  -> {addr:<28} {:<7} {weight:<6} {:<10} {:<10}\n",
        "Masq", 0, 0
    )
}

#[test]
fn rvsadm_changes_rvsd_and_save_restore_round_trips() {
    let _serial = serial();
    let d = Daemon::start("");
    let v1 = "198.51.100.1";
    let web = format!("{v1}:80");

    // The ipvsadm language, as people type it (service names, default ports, bundled options).
    for args in [
        vec!["-A", "-t", &web, "-s", "rr"],
        vec!["-a", "-t", &web, "-r", "192.0.2.2:80", "-m", "-w", "1"],
        vec![
            "-a",
            "-t",
            &web,
            "-r",
            "192.0.2.3:8080",
            "-m",
            "-w",
            "3",
            "-x",
            "100",
            "-y",
            "50",
        ],
        vec!["-a", "-t", "198.51.100.1:http", "-r", "192.0.2.4", "-w2"],
        vec![
            "--add-service",
            "--udp-service",
            "198.51.100.1:domain",
            "-s",
            "rr",
        ],
        vec!["-a", "-u", "198.51.100.1:53", "-r", "192.0.2.2:5353", "-m"],
        vec!["-A", "-t", "198.51.100.2:443", "-s", "rr"],
        vec![
            "-a",
            "-t",
            "198.51.100.2:https",
            "-r",
            "192.0.2.5:443",
            "-w",
            "4",
        ],
        vec!["-A", "-t", "198.51.100.3:8080", "-s", "rr"],
        vec!["-a", "-t", "198.51.100.3:8080", "-r", "192.0.2.6"],
        // -E/-e keep what is not given: the scheduler, the weight, the thresholds.
        vec!["-E", "-t", &web, "-M", "255.255.255.0"],
        vec!["-e", "-t", &web, "-r", "192.0.2.3:8080", "-w", "0"],
        vec!["-e", "-t", &web, "-r", "192.0.2.2", "-x", "10"],
        vec!["-d", "-t", &web, "-r", "192.0.2.4"],
        vec!["-D", "-t", "198.51.100.3:8080"],
        vec!["--set", "600", "60", "200"],
        vec!["-Z"],
        vec!["-Z", "-t", "198.51.100.2:443"],
    ] {
        d.ok(&args);
    }
    assert_eq!(
        d.ok(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 600 60 200\n"
    );
    d.ok(&["--set", "0", "0", "100"]);
    assert_eq!(
        d.ok(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 600 60 100\n",
        "--set: 0 keeps a value"
    );

    let saved = d.ok(&["-S", "-n"]);
    assert_eq!(
        saved,
        "-A -t 198.51.100.1:80 -s rr -M 255.255.255.0\n\
         -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1 -x 10\n\
         -a -t 198.51.100.1:80 -r 192.0.2.3:8080 -m -w 0 -x 100 -y 50\n\
         -A -t 198.51.100.2:443 -s rr\n\
         -a -t 198.51.100.2:443 -r 192.0.2.5:443 -m -w 4\n\
         -A -u 198.51.100.1:53 -s rr\n\
         -a -u 198.51.100.1:53 -r 192.0.2.2:5353 -m -w 1\n"
    );
    assert_eq!(d.ok(&["-S"]), saved, "-S and -S -n are the same");
    let listing = d.ok(&["-L", "-n"]);
    assert_eq!(
        listing,
        format!(
            "IP Virtual Server version 1.2.1 (size=1024)\n\
             Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  198.51.100.1:80 rr\n{}{}\
             TCP  198.51.100.2:443 rr\n{}\
             UDP  198.51.100.1:53 rr\n{}",
            rs_line("192.0.2.2:80", 1),
            rs_line("192.0.2.3:8080", 0),
            rs_line("192.0.2.5:443", 4),
            rs_line("192.0.2.2:5353", 1),
        )
    );

    // -C, then -R of the saved text gives the same table back.
    d.ok(&["-C"]);
    assert_eq!(d.ok(&["-S", "-n"]), "");
    let r = d.adm_with_input(&["-R"], Some(&saved));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(d.ok(&["-S", "-n"]), saved, "-S after -R");
    assert_eq!(d.ok(&["-L", "-n"]), listing, "-L -n after -R");
    // ipvsadm-style files restore too: the command word, comments, blank lines.
    d.ok(&["-C"]);
    let script: String = saved
        .lines()
        .map(|l| format!("/sbin/ipvsadm {l}  # from ipvsadm-save\n\n"))
        .collect();
    let r = d.adm_with_input(&["-R"], Some(&script));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(d.ok(&["-S", "-n"]), saved);

    // Rejected commands: a non-zero exit, a message, and no change at all.
    let before = d.state();
    let rejected: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-A", "-t", &web, "-s", "rr"], "Service already exists"),
        (
            vec!["-a", "-t", &web, "-r", "192.0.2.2:80"],
            "Destination already exists",
        ),
        (
            vec!["-a", "-t", "198.51.100.1:81", "-r", "192.0.2.2"],
            "Service not defined",
        ),
        (vec!["-e", "-t", &web, "-r", "192.0.2.9:80", "-w", "2"], ""),
        (vec!["-d", "-t", &web, "-r", "192.0.2.9"], ""),
        (vec!["-E", "-t", "198.51.100.9:80", "-s", "rr"], ""),
        (vec!["-D", "-t", "198.51.100.9:80"], "No such service"),
        (vec!["-Z", "-t", "198.51.100.9:80"], "No such service"),
        (
            vec!["-a", "-t", &web, "-r", "192.0.2.7", "-w", "70000"],
            "illegal weight specified",
        ),
        (
            vec!["-a", "-t", &web, "-r", "192.0.2.7", "-x", "5", "-y", "9"],
            "",
        ),
        (vec!["-e", "-t", &web, "-r", "192.0.2.2", "-y", "99"], ""),
        (vec!["-a", "-t", &web, "-r", "192.0.2.7", "-g"], "-g"),
        (vec!["-a", "-t", &web, "-r", "192.0.2.7", "-i"], "-i"),
        (
            vec!["-A", "-t", "198.51.100.1:0", "-s", "rr"],
            "Zero port specified for non-persistent service",
        ),
        (vec!["-A", "-t", "198.51.100.1:90", "-s", "nosuch"], ""),
        (
            vec!["-A", "-D", "-t", "198.51.100.1:90"],
            "multiple commands specified",
        ),
        (
            vec!["-A", "-t", "198.51.100.1:90", "-w", "1"],
            "Illegal 'weight' option with the 'add-service' command",
        ),
        (
            vec!["-a", "-t", &web],
            "You need to supply the 'real-server' option for the 'add-server' command",
        ),
        (vec!["--set", "1", "2"], ""),
        (vec!["--set", "1", "2", "x"], ""),
    ];
    for (args, message) in &rejected {
        let r = d.adm(args);
        assert!(
            matches!(r.code, Some(1) | Some(2)),
            "must be refused with status 1 or 2: {r:?}"
        );
        assert!(
            !r.stderr.trim().is_empty() && r.stderr.contains(message),
            "message {message:?} expected: {r:?}"
        );
        assert_eq!(
            d.state(),
            before,
            "a refused `rvsadm {}` changed rvsd",
            r.args
        );
    }
    // A restore with a bad line applies nothing.
    let bad = format!("-C\n-A -t 198.51.100.1:90 -s rr\n-a -t {web} -r 192.0.2.8 -w x\n");
    let r = d.adm_with_input(&["-R"], Some(&bad));
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("line 3"), "{r:?}");
    assert_eq!(d.state(), before, "a refused restore changed rvsd");

    assert!(d.alive(), "{}", d.log_text());
}

#[test]
fn rates_are_measured_by_the_running_daemon() {
    let _serial = serial();
    let d = Daemon::start("-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m");
    // Within a few ticks every column is a measured number (no traffic: zeros), never `-`.
    let deadline = Instant::now() + Duration::from_secs(5);
    let rates = loop {
        let out = d.ok(&["-L", "-n", "--rate"]);
        if !out.contains(&format!("{:>9}", "-")) {
            break out;
        }
        assert!(Instant::now() < deadline, "rates still unmeasured:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        rates,
        format!(
            "IP Virtual Server version 1.2.1 (size=1024)\n\
             Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  \
             -> RemoteAddress:Port\n\
             {:<33}{zeros}\n  -> {:<28}{zeros}\n",
            "TCP  198.51.100.1:80",
            "192.0.2.2:80",
            zeros = format!("{:>9}", 0).repeat(5)
        )
    );
    // -L --stats of the same daemon, for good measure.
    let stats = d.ok(&["-L", "-n", "--stats", "--exact"]);
    assert!(
        stats.starts_with("IP Virtual Server version 1.2.1 (size=1024)\nProt LocalAddress:Port"),
        "{stats}"
    );
}

#[test]
fn control_socket_is_private_and_survives_bad_clients() {
    let _serial = serial();
    let mut d = Daemon::start("-A -t 198.51.100.1:80 -s rr");

    // 0600, owned by the user running rvsd (this test's user), at the configured path, whose
    // missing folder rvsd created.
    let meta = std::fs::metadata(&d.socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o600, "socket mode {:o}", meta.mode());
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert_eq!((meta.uid(), meta.gid()), (uid, gid), "socket owner");

    // Bad requests, one connection each: an error answer every time.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed request"),
        (b"".to_vec(), "malformed request"),
        (b"null".to_vec(), "without a version"),
        (b"[1,2,3]".to_vec(), "without a version"),
        (b"\"clear\"".to_vec(), "without a version"),
        (b"{\"request\":\"clear\"}".to_vec(), "without a version"),
        (
            b"{\"version\":99,\"request\":\"clear\"}".to_vec(),
            "protocol version 99 not supported",
        ),
        (
            b"{\"version\":\"1\",\"request\":\"clear\"}".to_vec(),
            "without a version",
        ),
        (
            b"{\"version\":1,\"request\":{\"frobnicate\":{}}}".to_vec(),
            "unknown or malformed request",
        ),
        (
            b"{\"version\":1,\"request\":{\"add_service\":{\"key\":7}}}".to_vec(),
            "unknown or malformed request",
        ),
        (
            b"{\"version\":1,\"request\":{\"del_dest\":{\"service\":{\"protocol\":\"tcp\",\"addr\":\"198.51.100.1\",\"port\":80},\"addr\":\"not an address\",\"port\":80}}}".to_vec(),
            "unknown or malformed request",
        ),
        (b"\x00\xff\xfe binary \x01\x02".to_vec(), "malformed request"),
        (deep.into_bytes(), "malformed request"),
    ];
    for (bytes, want) in &cases {
        let mut c = d.connect();
        let mut line = bytes.clone();
        line.push(b'\n');
        c.send(&line);
        let r = c.answer();
        assert!(
            error_text(&r).contains(want),
            "{:?}: {r:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        );
        // The connection stays usable after an error.
        assert_eq!(listed_services(&c.ask(LIST)), 1);
    }

    // Several requests in one write are answered in order.
    let mut c = d.connect();
    c.send(format!("{LIST}\n{{bad\n{LIST}\n").as_bytes());
    assert_eq!(listed_services(&c.answer()), 1);
    error_text(&c.answer());
    assert_eq!(listed_services(&c.answer()), 1);

    // An oversized line: an error answer, then the connection is closed; nothing applied.
    let mut c = d.connect();
    let mut huge = br#"{"version":1,"request":"clear","pad":""#.to_vec();
    huge.resize(MAX_REQUEST_BYTES + 4096, b'x');
    huge.extend_from_slice(b"\"}\n");
    c.send(&huge);
    assert!(error_text(&c.answer()).contains("longer than"));
    assert!(
        c.closed(),
        "rvsd closes a connection after an oversized line"
    );
    // An endless line (no newline at all) is cut off the same way.
    let mut c = d.connect();
    let writer = {
        let mut s = c.stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..64 {
                if s.write_all(&chunk).is_err() {
                    return true; // rvsd hung up: good
                }
            }
            false
        })
    };
    assert!(error_text(&c.answer()).contains("longer than"));
    assert!(
        writer.join().expect("writer"),
        "rvsd kept reading a 4 MiB line"
    );

    // Idle clients (one silent, one with half a line) stall nobody.
    let _silent = d.connect();
    let mut half = d.connect();
    half.send(br#"{"version":1,"requ"#);
    let t = Instant::now();
    let mut c = d.connect();
    assert_eq!(listed_services(&c.ask(LIST)), 1);
    assert_eq!(d.ok(&["-L", "-n"]).lines().count(), 4);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "served in {:?} while two clients idle",
        t.elapsed()
    );
    // A client that goes away without reading its answer, or mid-request.
    let mut gone = d.connect();
    gone.send(format!("{LIST}\n").as_bytes());
    drop(gone);
    let mut gone = d.connect();
    gone.send(b"{\"version\":1,");
    drop(gone);

    // 20 clients at once, each with good and bad requests on its own connection.
    let n = 20;
    let barrier = Arc::new(Barrier::new(n));
    let socket = d.socket.clone();
    let workers: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let socket = socket.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let mut c = Conn::new(&socket);
                let add = format!(
                    r#"{{"version":1,"request":{{"add_dest":{{"service":{{"protocol":"tcp","addr":"198.51.100.1","port":80}},"dest":{{"addr":"192.0.2.{}","port":80}}}}}}}}"#,
                    10 + i
                );
                let mut answers = vec![c.ask(&add), c.ask("{oops"), c.ask(LIST)];
                answers.push(c.ask(&add)); // a duplicate: refused
                answers
            })
        })
        .collect();
    for w in workers {
        let a = w.join().expect("client thread");
        assert_eq!(a[0], Response::Ok);
        error_text(&a[1]);
        assert_eq!(listed_services(&a[2]), 1);
        assert_eq!(error_text(&a[3]), "Destination already exists");
    }
    let saved = d.ok(&["-S"]);
    assert_eq!(saved.lines().count(), 1 + n, "{saved}");

    // More clients than rvsd serves at once: every one gets an answer, service or a clear
    // "too many" error, and the daemon serves again once they leave.
    let mut crowd: Vec<Conn> = (0..40).map(|_| d.connect()).collect();
    let mut served = 0;
    let mut refused = 0;
    for c in &mut crowd {
        // A refused client may find the connection closed already: its answer is waiting.
        let _ = c.stream.write_all(format!("{LIST}\n").as_bytes());
        match c.answer() {
            Response::Services { .. } => served += 1,
            Response::Error(e) => {
                assert!(e.contains("too many"), "{e}");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        served >= 20 && served + refused == 40,
        "{served} served, {refused} refused"
    );
    drop(crowd);
    drop(_silent);
    drop(half);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = d.adm(&["-L", "-n"]);
        if r.code == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served after the crowd left: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Still alive, still answering, and the socket goes with the daemon.
    assert!(d.alive(), "{}", d.log_text());
    assert_eq!(d.ok(&["-S"]), saved);
    let st = d.rvsd.stop();
    assert!(
        st.success(),
        "rvsd exit after SIGTERM: {st}\n{}",
        d.log_text()
    );
    assert!(!d.socket.exists(), "rvsd left its socket behind");
}

#[test]
fn socket_path_is_guarded() {
    let _serial = serial();
    // A second rvsd on a live socket refuses to start and leaves the first one alone; it
    // refuses before EAL touches a device: its net_pcap port never opens its output file.
    let first = Daemon::start("");
    let dir = tempfile::tempdir().expect("temp dir");
    let tx = dir.path().join("second-tx.pcap");
    let config = RvsdConfig::new(&first.socket).port(VdevPort::one_arm(testkit::daemon::net_pcap(
        0,
        &[],
        &[tx.as_path()],
    )));
    let mut second = Rvsd::start(rvsd_bin(), &config, dir.path());
    let st = second.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    assert!(
        second.log_text().contains("another rvsd is serving"),
        "{}",
        second.log_text()
    );
    assert!(
        !tx.exists(),
        "the second rvsd probed its port before refusing: {}",
        second.log_text()
    );
    assert_eq!(first.ok(&["-S"]), "", "the first rvsd still answers");
    drop(first);

    // A stale socket file (a killed daemon's) is replaced.
    let dir = tempfile::tempdir().expect("temp dir");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    assert!(is_socket(&stale));
    let d = Daemon::start_at(dir, stale.clone(), "");
    d.rvsd.wait_ready(Duration::from_secs(30));
    assert_eq!(
        d.ok(&["-L", "--timeout"]),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    drop(d);

    // Something that is not a socket is never deleted.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("precious");
    std::fs::write(&file, "keep me").expect("write");
    let mut d = Daemon::start_at(dir, file.clone(), "");
    let st = d.wait_exit(Duration::from_secs(30));
    assert!(!st.success());
    assert!(d.log_text().contains("is not a socket"), "{}", d.log_text());
    assert_eq!(
        std::fs::read_to_string(&file).expect("still there"),
        "keep me"
    );
}
