//! The control thread: a Unix socket server that applies `control::proto` requests to the
//! services through `service::ServiceManager`.
//!
//! One JSON request per line, one JSON response per line. Each client gets a thread of its own,
//! so a slow or idle client never stalls another; requests are applied one at a time under a
//! mutex (the control plane's only lock, never touched by workers). Oversized, malformed,
//! wrong-version or unknown requests get an error response; nothing a client sends can stop
//! the daemon.

use crate::service::ServiceManager;
use control::proto::{
    RequestEnvelope, Response, ResponseEnvelope, MAX_REQUEST_BYTES, PROTOCOL_VERSION,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 32;
/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
}

impl ControlServer {
    /// Binds the socket with mode 0600. A stale socket file left by a dead daemon is replaced;
    /// a live daemon on the same path is an error.
    pub fn bind(path: &Path) -> std::io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("another rvsd is serving {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        // Bind under a tight umask so the socket is never reachable by others, not even briefly.
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            listener,
        })
    }

    /// Serves clients until `running` is cleared; then removes the socket file.
    pub fn serve(self, manager: Arc<Mutex<ServiceManager>>, running: &AtomicBool) {
        let clients = Arc::new(AtomicUsize::new(0));
        while running.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if clients.load(Ordering::Relaxed) >= MAX_CLIENTS {
                        let _ = reply(
                            &stream,
                            &Response::Error("too many control clients, try again".into()),
                        );
                        continue;
                    }
                    clients.fetch_add(1, Ordering::Relaxed);
                    let manager = manager.clone();
                    let clients = clients.clone();
                    let spawned = std::thread::Builder::new()
                        .name("rvs-ctl-client".into())
                        .spawn(move || {
                            serve_client(stream, &manager);
                            clients.fetch_sub(1, Ordering::Relaxed);
                        });
                    if let Err(e) = spawned {
                        tracing::warn!("cannot start a control client thread: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, manager: &Mutex<ServiceManager>) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    // Read at most one byte past the limit per line, so an endless line cannot exhaust memory.
    let mut reader = BufReader::new(read_half);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(MAX_REQUEST_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if n > MAX_REQUEST_BYTES {
            let _ = reply(
                &stream,
                &Response::Error(format!("request longer than {MAX_REQUEST_BYTES} bytes")),
            );
            return;
        }
        let response = handle_line(&line, manager);
        if reply(&stream, &response).is_err() {
            return;
        }
    }
}

/// Decodes one request line and applies it.
pub fn handle_line(line: &[u8], manager: &Mutex<ServiceManager>) -> Response {
    // Check the version before the request body, so a newer client gets a clear answer even
    // when it sends requests this daemon does not know.
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Response::Error(format!("malformed request: {e}")),
    };
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Response::Error(format!(
                "protocol version {v} not supported (rvsd speaks {PROTOCOL_VERSION})"
            ))
        }
        None => return Response::Error("request without a version field".into()),
    }
    let envelope: RequestEnvelope = match serde_json::from_value(value) {
        Ok(e) => e,
        Err(e) => return Response::Error(format!("unknown or malformed request: {e}")),
    };
    match manager.lock() {
        Ok(mut m) => m.handle(envelope.request),
        Err(_) => Response::Error("internal error: service state poisoned".into()),
    }
}

fn reply(mut stream: &UnixStream, response: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(&ResponseEnvelope::new(response.clone()))
        .unwrap_or_else(|_| br#"{"version":1,"result":{"error":"encoding failed"}}"#.to_vec());
    out.push(b'\n');
    stream.write_all(&out)
}
