//! The control thread: a Unix socket server that applies `control::proto` requests to the
//! services through `service::ServiceManager`.
//!
//! One JSON request per line, one JSON response per line. Each client gets a thread of its own,
//! so a slow or idle client never stalls another; requests are applied one at a time under a
//! mutex (the control plane's only lock, never touched by workers). Oversized, malformed,
//! wrong-version or unknown requests get an error response; nothing a client sends can stop
//! the daemon.
//!
//! The accepting thread also samples the counters for `--rate` every `stats::RATE_TICK_MS`
//! ([`ServiceManager::tick`]), so the workers do nothing for rates.
//!
//! The socket is created with mode 0600 (under a tight umask, so it is never reachable by
//! others, not even briefly) and is owned by the user running rvsd.
//!
//! Every request that changes something is logged with the client's uid and pid (SO_PEERCRED),
//! whether it was applied or refused; listings are not. A reload logs itself (see `reload`).

use crate::reload::Trigger;
use control::config::IpCidr;
use control::proto::{
    PortInfo, Request, RequestEnvelope, Response, ResponseEnvelope, VersionInfo,
    VirtualAddrsStatus, MAX_REQUEST_BYTES, PROTOCOL_VERSION,
};
use dataplane::pipeline::VirtualAddrs;
use dataplane::service::ServiceManager;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

/// Clients served at once; each further one is accepted, answered "too many control clients"
/// and closed (none is left waiting in the listen backlog).
const MAX_CLIENTS: usize = 32;
/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the accepting thread waits for a connection before it looks at `running` and the
/// rate tick again.
const POLL_MS: u64 = 50;

pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    daemon: DaemonHooks,
}

/// rvsd's reload (`crate::reload`): run for `Request::Reload`, and by the accepting thread
/// when `requested` (SIGHUP's flag) is set.
#[derive(Clone)]
pub struct Reload {
    pub requested: &'static AtomicBool,
    pub run: Arc<dyn Fn(Trigger) -> Response + Send + Sync>,
}

/// The ports' own counters (DPDK's `rte_eth_stats`), appended to every `Counters` answer: the
/// dataplane cannot see what the NIC lost before it.
pub type DeviceCounters = Arc<dyn Fn() -> Vec<(String, u64)> + Send + Sync>;

/// `counters` as every reader shows them (control socket, metrics, telemetry): the dataplane's
/// from a `Counters` answer, then the ports' own.
pub fn all_counters(
    mut counters: Vec<(String, u64)>,
    device: &DeviceCounters,
) -> Vec<(String, u64)> {
    counters.extend(device());
    counters
}

/// Every port's device, link and counters (`Ports`); the argument asks for the driver's
/// extended counters too.
pub type PortInfos = Arc<dyn Fn(bool) -> Vec<PortInfo> + Send + Sync>;

/// Adds (`true`) or removes an address on the kernel twin of a port (by index); a port
/// without a twin has nothing to change (`exception::twin_address_setter`).
pub type TwinAddrSetter = Arc<dyn Fn(u16, IpCidr, bool) -> Result<(), String> + Send + Sync>;

/// The VRRP-held addresses (`SetVirtualAddrs`, `ListVirtualAddrs`): the dataplane's view and
/// the twins. Its own lock, taken by those requests only.
pub struct VirtualAddrHook {
    addrs: Mutex<VirtualAddrs>,
    twins: TwinAddrSetter,
}

impl VirtualAddrHook {
    pub fn new(addrs: VirtualAddrs, twins: TwinAddrSetter) -> VirtualAddrHook {
        VirtualAddrHook {
            addrs: Mutex::new(addrs),
            twins,
        }
    }

    fn answer(&self, request: &Request, ports: &[String]) -> Option<Response> {
        match request {
            Request::SetVirtualAddrs {
                instance,
                port,
                addrs,
                held,
            } => {
                let mut v = self.addrs.lock().unwrap_or_else(PoisonError::into_inner);
                let changes = match v.set(instance, port, addrs, *held) {
                    Ok(c) => c,
                    Err(e) => return Some(Response::Error(e)),
                };
                // Under the lock, so that two instances' changes reach the twin in order.
                let failed: Vec<String> = changes
                    .iter()
                    .filter_map(|c| {
                        (self.twins)(c.port, c.cidr, c.present)
                            .err()
                            .map(|e| format!("{}: {e}", c.cidr))
                    })
                    .collect();
                Some(if failed.is_empty() {
                    Response::Ok
                } else {
                    Response::Error(format!(
                        "applied in the dataplane, but the kernel twin refused: {}",
                        failed.join("; ")
                    ))
                })
            }
            Request::ListVirtualAddrs => {
                let v = self.addrs.lock().unwrap_or_else(PoisonError::into_inner);
                Some(Response::VirtualAddrs(
                    v.list()
                        .into_iter()
                        .map(|e| VirtualAddrsStatus {
                            instance: e.instance,
                            port: ports.get(usize::from(e.port)).cloned().unwrap_or_default(),
                            addrs: e.addrs,
                            held: e.held,
                        })
                        .collect(),
                ))
            }
            _ => None,
        }
    }
}

/// What rvsd answers itself, beside the service manager: the DPDK side, which the dataplane
/// does not see, the reload, and the virtual addresses (which change the twins).
#[derive(Clone)]
struct DaemonHooks {
    device_counters: DeviceCounters,
    ports: PortInfos,
    version: Option<VersionInfo>,
    reload: Option<Reload>,
    sync: Option<Arc<crate::sync::SyncDaemon>>,
    vaddrs: Option<Arc<VirtualAddrHook>>,
    /// Port names by index, for the virtual address listing.
    port_names: Arc<[String]>,
}

impl DaemonHooks {
    /// The answer to a request that is the daemon's, not the service manager's.
    fn answer(&self, request: &Request, peer: Option<Peer>) -> Option<Response> {
        match request {
            Request::Ports { xstats } => Some(Response::Ports((self.ports)(*xstats))),
            Request::Version => Some(match &self.version {
                Some(v) => Response::Version(v.clone()),
                None => Response::Error("this rvsd reports no version".into()),
            }),
            // The reload logs itself, with what it changed and who asked.
            Request::Reload => Some(match &self.reload {
                Some(r) => (r.run)(Trigger::Control(peer)),
                None => Response::Error("this rvsd has no configuration file to reload".into()),
            }),
            Request::SetSyncRole { master, backup } => Some(match &self.sync {
                Some(s) => {
                    s.set_role(*master, *backup);
                    Response::Ok
                }
                None => no_sync(),
            }),
            Request::SyncStatus => Some(match &self.sync {
                Some(s) => Response::Sync(s.status()),
                None => no_sync(),
            }),
            Request::SetVirtualAddrs { .. } | Request::ListVirtualAddrs => match &self.vaddrs {
                Some(v) => v.answer(request, &self.port_names),
                None => Some(Response::Error(
                    "this rvsd does not manage virtual addresses".into(),
                )),
            },
            _ => None,
        }
    }
}

fn no_sync() -> Response {
    Response::Error(
        "connection sync is not configured: add a [sync] table to rvs.toml (docs/sync.md)".into(),
    )
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlServer {
    /// Binds the socket with mode 0600. A stale socket file left by a dead daemon is replaced;
    /// a live daemon on the same path is an error.
    pub fn bind(path: &Path) -> std::io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            // Never delete something that is not a socket (a mistyped path in the config).
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
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
            daemon: DaemonHooks {
                device_counters: Arc::new(Vec::new),
                ports: Arc::new(|_| Vec::new()),
                version: None,
                reload: None,
                sync: None,
                vaddrs: None,
                port_names: Arc::new([]),
            },
        })
    }

    /// Appends `counters()` to every `Counters` answer.
    pub fn with_device_counters(mut self, counters: DeviceCounters) -> ControlServer {
        self.daemon.device_counters = counters;
        self
    }

    /// Answers `Ports` with `ports(xstats)`.
    pub fn with_port_info(mut self, ports: PortInfos) -> ControlServer {
        self.daemon.ports = ports;
        self
    }

    /// Answers `Version` with `version`.
    pub fn with_version(mut self, version: VersionInfo) -> ControlServer {
        self.daemon.version = Some(version);
        self
    }

    /// Answers `SetSyncRole` and `SyncStatus` with the sync daemons.
    pub fn with_sync(mut self, sync: Option<Arc<crate::sync::SyncDaemon>>) -> ControlServer {
        self.daemon.sync = sync;
        self
    }

    /// Answers `Request::Reload` with `reload`, and reloads when its flag is set.
    pub fn with_reload(mut self, reload: Reload) -> ControlServer {
        self.daemon.reload = Some(reload);
        self
    }

    /// Answers `SetVirtualAddrs` and `ListVirtualAddrs` with `hook`; `ports` names the ports
    /// by index.
    pub fn with_virtual_addrs(
        mut self,
        hook: VirtualAddrHook,
        ports: Vec<String>,
    ) -> ControlServer {
        self.daemon.vaddrs = Some(Arc::new(hook));
        self.daemon.port_names = ports.into();
        self
    }

    /// Serves clients until `running` is cleared; then removes the socket file (as dropping an
    /// unserved server does). Also ticks the
    /// service manager (rates) every `stats::RATE_TICK_MS`.
    pub fn serve(self, manager: Arc<Mutex<ServiceManager>>, running: &AtomicBool) {
        let clients = Arc::new(AtomicUsize::new(0));
        let epoch = Instant::now();
        let tick = Duration::from_millis(dataplane::stats::RATE_TICK_MS);
        let mut next_tick = epoch;
        while running.load(Ordering::Relaxed) {
            if let Some(r) = &self.daemon.reload {
                if r.requested.swap(false, Ordering::Relaxed) {
                    (r.run)(Trigger::Signal);
                }
            }
            let mut wait = Duration::from_millis(POLL_MS);
            if Instant::now() >= next_tick {
                // Never wait here for a client's long request: try again a little later.
                let guard = match manager.try_lock() {
                    Ok(m) => Some(m),
                    Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                };
                match guard {
                    Some(mut m) => {
                        let now = Instant::now();
                        let ms = u64::try_from(now.duration_since(epoch).as_millis())
                            .unwrap_or(u64::MAX);
                        m.tick(ms);
                        // Catch up without a burst of ticks after a stall.
                        next_tick = (next_tick + tick).max(now);
                    }
                    None => wait = Duration::from_millis(5),
                }
            }
            wait = wait.min(next_tick.saturating_duration_since(Instant::now()));
            if !self.wait_for_client(wait) {
                continue;
            }
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
                    let daemon = self.daemon.clone();
                    let count = clients.clone();
                    let spawned = std::thread::Builder::new()
                        .name("rvs-ctl-client".into())
                        .spawn(move || {
                            serve_client(stream, &manager, &daemon);
                            count.fetch_sub(1, Ordering::Relaxed);
                        });
                    if let Err(e) = spawned {
                        clients.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!("cannot start a control client thread: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // Dropping self removes the socket file.
    }

    /// Waits up to `limit` (at most POLL_MS) for a connection; true when one may be there.
    fn wait_for_client(&self, limit: Duration) -> bool {
        let ms = limit.as_millis().min(u128::from(POLL_MS)) as i32;
        let mut fd = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the listener's open descriptor.
        let n = unsafe { libc::poll(&mut fd, 1, ms) };
        // On an error (EINTR from a signal) let accept() find out; it does not block.
        n != 0
    }
}

/// The manager, also after a client thread panicked while holding it (each request is checked
/// completely before anything changes, so the state is still consistent).
fn lock(manager: &Mutex<ServiceManager>) -> MutexGuard<'_, ServiceManager> {
    manager.lock().unwrap_or_else(PoisonError::into_inner)
}

fn serve_client(stream: UnixStream, manager: &Mutex<ServiceManager>, daemon: &DaemonHooks) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let peer = Peer::of(&stream);
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
        let mut response = handle_line(&line, manager, peer, &|r, p| daemon.answer(r, p));
        if let Response::Counters(list) = response {
            response = Response::Counters(all_counters(list, &daemon.device_counters));
        }
        if reply(&stream, &response).is_err() {
            return;
        }
    }
}

/// Who is at the other end of a control connection, as the kernel recorded it at connect().
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

impl Peer {
    /// The peer's credentials (SO_PEERCRED); None if the kernel gives none.
    pub fn of(stream: &UnixStream) -> Option<Peer> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let size = std::mem::size_of::<libc::ucred>();
        let mut len = size as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                std::ptr::addr_of_mut!(cred).cast(),
                &mut len,
            )
        };
        (rc == 0 && len as usize == size).then_some(Peer {
            uid: cred.uid,
            pid: cred.pid,
        })
    }
}

/// Whether a request can change the daemon's state (and so is logged with who asked).
/// Exhaustive on purpose: a new request must be placed on one side.
fn changes_state(request: &Request) -> bool {
    match request {
        Request::AddService(_)
        | Request::EditService(_)
        | Request::DelService(_)
        | Request::AddDest { .. }
        | Request::EditDest { .. }
        | Request::DelDest { .. }
        | Request::Clear
        | Request::Zero { .. }
        | Request::SetTimeouts(_)
        | Request::SetSysctls(_)
        | Request::AddNeighbour(_)
        | Request::DelNeighbour { .. }
        | Request::SetSyncRole { .. }
        | Request::SetVirtualAddrs { .. }
        | Request::Reload => true,
        Request::List { .. }
        | Request::ListConns
        | Request::GetTimeouts
        | Request::Counters
        | Request::GetSysctls
        | Request::ListNeighbours
        | Request::Ports { .. }
        | Request::SyncStatus
        | Request::ListVirtualAddrs
        | Request::Version => false,
    }
}

/// Decodes one request line from `peer` and applies it; `daemon` answers the requests that
/// are rvsd's, not the service manager's (`None` passes a request on to the manager).
pub fn handle_line(
    line: &[u8],
    manager: &Mutex<ServiceManager>,
    peer: Option<Peer>,
    daemon: &dyn Fn(&Request, Option<Peer>) -> Option<Response>,
) -> Response {
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
    // The reload logs itself, with what it changed.
    let logged = (changes_state(&envelope.request) && envelope.request != Request::Reload)
        .then(|| envelope.request.clone());
    let response = match daemon(&envelope.request, peer) {
        Some(response) => response,
        None => {
            let mut m = lock(manager);
            // A bug in a request's handling must not take the control socket down with it.
            catch_unwind(AssertUnwindSafe(|| m.handle(envelope.request))).unwrap_or_else(|_| {
                tracing::error!("internal error while handling a control request");
                Response::Error("internal error in rvsd while handling the request".into())
            })
        }
    };
    if let Some(request) = logged {
        let uid = peer.map(|p| p.uid);
        let pid = peer.map(|p| p.pid);
        match &response {
            Response::Error(e) => {
                tracing::info!(uid, pid, ?request, error = %e, "control change refused")
            }
            _ => tracing::info!(uid, pid, ?request, "control change"),
        }
    }
    response
}

fn reply(mut stream: &UnixStream, response: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(&ResponseEnvelope::new(response.clone()))
        .unwrap_or_else(|_| br#"{"version":1,"result":{"error":"encoding failed"}}"#.to_vec());
    out.push(b'\n');
    stream.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::model::Timeouts;
    use dataplane::pipeline::{Dataplane, DataplaneConfig};

    /// A hook over the two-arm test director whose twin setter records what it is asked, and
    /// refuses removals when `refuse_del`.
    /// What the twin setter was asked: port index, address, present.
    type TwinLog = Arc<Mutex<Vec<(u16, String, bool)>>>;

    fn hook(refuse_del: bool) -> (DaemonHooks, TwinLog) {
        let dp = Dataplane::new(DataplaneConfig {
            ports: testkit::director::two_arm_ports(None, 1500),
            conn_capacity: 64,
            timeouts: Timeouts::default(),
            workers: 1,
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let twins: TwinAddrSetter = Arc::new(move |port, cidr: IpCidr, present| {
            log.lock().unwrap().push((port, cidr.to_string(), present));
            if refuse_del && !present {
                return Err("RTNETLINK answers: Cannot assign requested address".into());
            }
            Ok(())
        });
        let daemon = DaemonHooks {
            device_counters: Arc::new(Vec::new),
            ports: Arc::new(|_| Vec::new()),
            version: None,
            reload: None,
            sync: None,
            vaddrs: Some(Arc::new(VirtualAddrHook::new(VirtualAddrs::new(dp), twins))),
            port_names: vec!["ext".to_string(), "int".to_string()].into(),
        };
        (daemon, seen)
    }

    fn set(instance: &str, port: &str, addr: &str, held: bool) -> Request {
        Request::SetVirtualAddrs {
            instance: instance.into(),
            port: port.into(),
            addrs: vec![IpCidr::parse(addr).unwrap()],
            held,
        }
    }

    #[test]
    fn virtual_addrs_change_the_twin_and_are_listed() {
        let (daemon, seen) = hook(false);
        let ask = |r: Request| daemon.answer(&r, None).expect("answered by rvsd");
        assert_eq!(
            ask(set("VI_1", "ext", "198.51.100.5/24", true)),
            Response::Ok
        );
        assert_eq!(ask(set("VI_2", "int", "192.0.2.1/24", false)), Response::Ok);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (0, "198.51.100.5/24".to_string(), true),
                (1, "192.0.2.1/24".to_string(), false)
            ]
        );
        assert_eq!(
            ask(Request::ListVirtualAddrs),
            Response::VirtualAddrs(vec![
                VirtualAddrsStatus {
                    instance: "VI_1".into(),
                    port: "ext".into(),
                    addrs: vec![IpCidr::parse("198.51.100.5/24").unwrap()],
                    held: true,
                },
                VirtualAddrsStatus {
                    instance: "VI_2".into(),
                    port: "int".into(),
                    addrs: vec![IpCidr::parse("192.0.2.1/24").unwrap()],
                    held: false,
                },
            ])
        );
        // Refused: nothing reaches the twin.
        let before = seen.lock().unwrap().len();
        match ask(set("VI_1", "lan", "198.51.100.5/24", true)) {
            Response::Error(e) => assert!(e.contains("no port named"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(seen.lock().unwrap().len(), before);
        // Other requests are the service manager's.
        assert!(daemon.answer(&Request::Counters, None).is_none());
    }

    #[test]
    fn a_twin_that_refuses_is_reported() {
        let (daemon, _) = hook(true);
        let r = daemon.answer(&set("VI_1", "ext", "198.51.100.5/24", true), None);
        assert_eq!(r, Some(Response::Ok));
        match daemon.answer(&set("VI_1", "ext", "198.51.100.5/24", false), None) {
            Some(Response::Error(e)) => {
                assert!(
                    e.contains("applied in the dataplane") && e.contains("198.51.100.5/24"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
