//! The checks themselves, each a blocking call bounded by its timeout, run on the engine's
//! check threads: TCP connect, HTTP GET (status and MD5 digest of the body), and a script.
//! They use ordinary sockets, so they leave through whatever the kernel routes (on a
//! director, rvsd's kernel exception path).

use crate::conf::{Connect, HttpGet, MiscCheck};
use crate::state::WeightChange;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The largest HTTP answer read; the digest of a longer body is that of its first part.
const MAX_HTTP_ANSWER: usize = 4 << 20;

/// A check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Up(WeightChange),
    /// Down, and why (the error as the check saw it).
    Down(String),
}

/// Connects to `c.dst` (from `c.bind` when set) within `timeout`.
pub fn connect(c: &Connect, timeout: Duration) -> Result<TcpStream, String> {
    let family = match c.dst {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(b) = c.bind {
        let (sa, len) = sockaddr(b);
        // SAFETY: `sa` holds a valid sockaddr_in or sockaddr_in6 of the length given.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), len) };
        if rc != 0 {
            return Err(format!("bind to {b}: {}", std::io::Error::last_os_error()));
        }
    }
    let (sa, len) = sockaddr(c.dst);
    // SAFETY: as for bind.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), len) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(format!("connect to {}: {e}", c.dst));
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n == 0 {
            return Err(format!("connect to {}: timed out after {timeout:?}", c.dst));
        }
        if n < 0 {
            return Err(format!("poll: {}", std::io::Error::last_os_error()));
        }
        let mut err: libc::c_int = 0;
        let mut len = socklen::<libc::c_int>();
        // SAFETY: SO_ERROR writes one c_int into `err`, whose size `len` gives.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                std::ptr::from_mut(&mut err).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(format!("getsockopt: {}", std::io::Error::last_os_error()));
        }
        if err != 0 {
            return Err(format!(
                "connect to {}: {}",
                c.dst,
                std::io::Error::from_raw_os_error(err)
            ));
        }
    }
    let stream = TcpStream::from(fd);
    stream
        .set_nonblocking(false)
        .map_err(|e| format!("set blocking: {e}"))?;
    Ok(stream)
}

/// `a` as a sockaddr_in or sockaddr_in6 in a sockaddr_storage, and the length that says which.
fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all zeros is a valid sockaddr_storage (a plain C struct).
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for any sockaddr.
            unsafe {
                std::ptr::from_mut(&mut ss)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            socklen::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe {
                std::ptr::from_mut(&mut ss)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            socklen::<libc::sockaddr_in6>()
        }
    };
    (ss, len)
}

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// TCP_CHECK: up when the connection is accepted within the timeout.
pub fn tcp(c: &Connect, timeout: Duration) -> Verdict {
    match connect(c, timeout) {
        Ok(_) => Verdict::Up(WeightChange::Unchanged),
        Err(e) => Verdict::Down(e),
    }
}

/// HTTP_GET: every url answers with an accepted status and, where given, the digest.
pub fn http(h: &HttpGet, timeout: Duration) -> Verdict {
    for url in &h.urls {
        if let Err(e) = http_one(h, url, timeout) {
            return Verdict::Down(format!("GET {}: {e}", url.path));
        }
    }
    Verdict::Up(WeightChange::Unchanged)
}

fn http_one(h: &HttpGet, url: &crate::conf::Url, timeout: Duration) -> Result<(), String> {
    let mut s = connect(&h.connect, timeout)?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let host = match &url.virtualhost {
        Some(v) => v.clone(),
        // An IPv6 literal in brackets (RFC 7230 5.4), with the port or without.
        None if h.connect.dst.port() == 80 => match h.connect.dst.ip() {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        },
        None => h.connect.dst.to_string(),
    };
    let request = if h.http10 {
        format!(
            "GET {} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\n\r\n",
            url.path
        )
    } else {
        format!(
            "GET {} HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\nConnection: close\r\n\r\n",
            url.path
        )
    };
    s.write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let answer = read_answer(&mut s)?;
    let (status, body) = parse_answer(&answer)?;
    if !url.accepts(status) {
        return Err(format!("status {status} not accepted"));
    }
    if let Some(want) = &url.digest {
        let got = format!("{:x}", md5::compute(body));
        if &got != want {
            return Err(format!("digest {got} (wanted {want})"));
        }
    }
    Ok(())
}

/// Reads until the peer closes, or the body's Content-Length is read.
fn read_answer(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= MAX_HTTP_ANSWER {
            buf.truncate(MAX_HTTP_ANSWER);
            break;
        }
        if let Some(end) = header_end(&buf) {
            if let Some(len) = content_length(&buf[..end]) {
                if buf.len() >= end + len {
                    buf.truncate(end + len);
                    break;
                }
            }
        }
    }
    Ok(buf)
}

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// The status code and the body (the bytes after the header, as genhash hashes them).
pub fn parse_answer(answer: &[u8]) -> Result<(u16, &[u8]), String> {
    let end = header_end(answer).ok_or_else(|| {
        if answer.is_empty() {
            "empty answer".to_string()
        } else {
            "no end of header in the answer".to_string()
        }
    })?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut words = status_line.split_whitespace();
    let version = words.next().unwrap_or_default();
    let code = words.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if version.starts_with("HTTP/") => Ok((c, &answer[end..])),
        _ => Err(format!("bad status line {status_line:?}")),
    }
}

/// MISC_CHECK: runs the program in its own process group; exit 0 is up; with misc_dynamic
/// 2..=255 is up with weight code - 2; anything else, a signal or the timeout is down. On
/// the timeout the group gets SIGTERM, then SIGKILL 2 s later, as keepalived does.
pub fn misc(m: &MiscCheck, timeout: Duration) -> Verdict {
    let Some((prog, args)) = m.argv.split_first() else {
        return Verdict::Down("empty command".into());
    };
    let mut child = match Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Verdict::Down(format!("cannot run {prog}: {e}")),
    };
    let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
    // When to send the next signal: SIGTERM at the timeout, SIGKILL 2 s later, then give up.
    let mut next_signal = Instant::now() + timeout;
    let mut signal = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Verdict::Down(format!("wait for {prog}: {e}")),
        }
        if Instant::now() >= next_signal {
            let sig = match signal {
                None => libc::SIGTERM,
                Some(_) => libc::SIGKILL,
            };
            // SAFETY: kill(2) of the process group of our own unreaped child.
            unsafe { libc::kill(-pid, sig) };
            if signal == Some(libc::SIGKILL) {
                break match child.wait() {
                    Ok(st) => st,
                    Err(e) => return Verdict::Down(format!("wait for {prog}: {e}")),
                };
            }
            signal = Some(sig);
            next_signal = Instant::now() + Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if signal.is_some() {
        // Children it left behind in its group go too.
        // SAFETY: as above; the group may be empty already.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        return Verdict::Down(format!("{prog} timed out after {timeout:?}"));
    }
    match (status.code(), m.dynamic) {
        (Some(0), false) => Verdict::Up(WeightChange::Unchanged),
        (Some(0), true) => Verdict::Up(WeightChange::Configured),
        (Some(c @ 2..=255), true) => {
            Verdict::Up(WeightChange::Set(u32::try_from(c - 2).unwrap_or(0)))
        }
        (Some(c), _) => Verdict::Down(format!("{prog} exited with status {c}")),
        (None, _) => Verdict::Down(format!(
            "{prog} killed by signal {}",
            status.signal().unwrap_or(0)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    fn misc_check(script: &str, dynamic: bool) -> MiscCheck {
        MiscCheck {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            dynamic,
        }
    }

    #[test]
    fn misc_exit_codes_as_keepalived_reads_them() {
        let t = Duration::from_secs(5);
        assert_eq!(
            misc(&misc_check("exit 0", false), t),
            Verdict::Up(WeightChange::Unchanged)
        );
        assert_eq!(
            misc(&misc_check("exit 0", true), t),
            Verdict::Up(WeightChange::Configured)
        );
        assert_eq!(
            misc(&misc_check("exit 9", true), t),
            Verdict::Up(WeightChange::Set(7))
        );
        assert_eq!(
            misc(&misc_check("exit 2", true), t),
            Verdict::Up(WeightChange::Set(0))
        );
        assert!(
            matches!(misc(&misc_check("exit 1", true), t), Verdict::Down(e) if e.contains("status 1"))
        );
        assert!(
            matches!(misc(&misc_check("exit 9", false), t), Verdict::Down(e) if e.contains("status 9"))
        );
        assert!(
            matches!(misc(&misc_check("kill -9 $$", false), t), Verdict::Down(e) if e.contains("signal 9"))
        );
    }

    #[test]
    fn a_misc_script_past_its_timeout_is_stopped_and_down() {
        let started = Instant::now();
        let v = misc(&misc_check("sleep 30", false), Duration::from_millis(300));
        assert!(
            matches!(&v, Verdict::Down(e) if e.contains("timed out")),
            "{v:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn tcp_connect_refused_and_accepted() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let c = Connect {
            dst: (Ipv4Addr::LOCALHOST, port).into(),
            bind: Some((Ipv4Addr::LOCALHOST, 0).into()),
        };
        assert_eq!(
            tcp(&c, Duration::from_secs(1)),
            Verdict::Up(WeightChange::Unchanged)
        );
        drop(l);
        assert!(
            matches!(tcp(&c, Duration::from_secs(1)), Verdict::Down(e) if e.contains("refused"))
        );
    }

    #[test]
    fn tcp_and_http_checks_to_an_ipv6_server() {
        let l = match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) {
            Ok(l) => l,
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                eprintln!("skipped: no ::1 here ({e})");
                return;
            }
            Err(e) => panic!("bind [::1]: {e}"),
        };
        let port = l.local_addr().unwrap().port();
        let dst: SocketAddr = (Ipv6Addr::LOCALHOST, port).into();
        let connect = Connect {
            dst,
            bind: Some((Ipv6Addr::LOCALHOST, 0).into()),
        };
        let t = Duration::from_secs(2);
        // One connection for TCP_CHECK, one for HTTP_GET: its request as the server saw it.
        let server = std::thread::spawn(move || {
            let (first, from) = l.accept().unwrap();
            assert!(from.is_ipv6(), "{from}");
            drop(first);
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while header_end(&req).is_none() {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "request cut");
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nrs6")
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        assert_eq!(tcp(&connect, t), Verdict::Up(WeightChange::Unchanged));
        let h = HttpGet {
            connect,
            urls: vec![crate::conf::Url {
                path: "/".into(),
                digest: Some(format!("{:x}", md5::compute("rs6"))),
                status: Vec::new(),
                virtualhost: None,
            }],
            http10: false,
        };
        assert_eq!(http(&h, t), Verdict::Up(WeightChange::Unchanged));
        let req = server.join().unwrap();
        assert!(
            req.contains(&format!("\r\nHost: [::1]:{port}\r\n")),
            "the Host header names the IPv6 literal in brackets: {req:?}"
        );
        // Nobody listening any more: refused, and said so with the address.
        assert!(
            matches!(tcp(&connect, t), Verdict::Down(e) if e.contains("refused") && e.contains(&dst.to_string()))
        );
    }

    #[test]
    fn the_answer_splits_into_status_and_body() {
        let (code, body) = parse_answer(b"HTTP/1.1 503 Busy\r\nA: b\r\n\r\nbody\r\n").unwrap();
        assert_eq!((code, body), (503, &b"body\r\n"[..]));
        assert!(parse_answer(b"").is_err());
        assert!(parse_answer(b"junk\r\n\r\n").is_err());
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n"),
            Some(12)
        );
    }
}
