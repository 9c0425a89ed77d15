//! The sync daemons (docs/sync.md): one plain OS thread, never on a worker lcore, with one UDP
//! socket on the kernel twin of `[sync] port`. As master it drains the workers' sync queues,
//! batches the entries into version-1 messages and sends them; as backup it receives messages,
//! decodes them and installs what they carry. Either, both or neither, changed at run time by
//! `SetSyncRole` (rvsadm `--start-daemon`, or rvs-healthd when VRRP changes state).
//!
//! The datagrams go through the kernel twin, so the kernel does UDP and multicast and rvsd's
//! workers carry the frames like any other traffic of the director's own (the exception path).

use control::config::Config;
use control::sync::{SyncConfig, SyncStatus};
use dataplane::pipeline::Dataplane;
use dataplane::sync::{decode, Encoder, Installed};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The thread's sleep when a round moved nothing (a new event waits at most this long, the
/// kernel's master thread wakes every 20 ms: `IPVS_SYNC_SEND_DELAY`).
const IDLE: Duration = Duration::from_millis(5);
/// A partly filled message goes out once its oldest entry is this old.
const SEND_DELAY: Duration = Duration::from_millis(20);
/// Queue entries drained per round (the rest wait for the next round).
const DRAIN_PER_ROUND: usize = 4096;

/// The sync daemons of one rvsd.
pub struct SyncDaemon {
    cfg: SyncConfig,
    interface: String,
    dp: Arc<Dataplane>,
    backup: AtomicBool,
    socket: UdpSocket,
}

impl SyncDaemon {
    /// Opens the sync socket on `[sync] port`'s twin (which the exception path has set up),
    /// with the roles of `[sync] role`. `None` without `[sync]`.
    pub fn start(cfg: &Config, dp: Arc<Dataplane>) -> Result<Option<Arc<SyncDaemon>>, String> {
        let Some(sc) = cfg.sync.clone() else {
            return Ok(None);
        };
        let port = cfg.ports.iter().find(|p| p.name == sc.port);
        let (Some(port), Some(twin)) = (port, port.and_then(|p| p.kernel_twin.as_ref())) else {
            return Err(format!("sync.port: {:?} has no kernel_twin", sc.port));
        };
        let local = port
            .addresses
            .first()
            .map(|c| c.addr)
            .ok_or_else(|| format!("sync.port: {:?} has no address", sc.port))?;
        let socket = open_socket(&sc, twin.as_str(), local)
            .map_err(|e| format!("sync: cannot open the sync socket on {twin}: {e}"))?;
        let (master, backup) = sc.role.flags();
        dp.sync().set_master(master);
        tracing::info!(
            interface = %twin, syncid = sc.syncid, destination = %sc.destination(),
            udp_port = sc.udp_port, master, backup, "sync socket open"
        );
        Ok(Some(Arc::new(SyncDaemon {
            interface: twin.to_string(),
            cfg: sc,
            dp,
            backup: AtomicBool::new(backup),
            socket,
        })))
    }

    /// Starts or stops the master (send) and backup (receive) daemons.
    pub fn set_role(&self, master: bool, backup: bool) {
        self.dp.sync().set_master(master);
        self.backup.store(backup, Ordering::Relaxed);
        tracing::info!(master, backup, "sync role set");
    }

    pub fn status(&self) -> SyncStatus {
        let dest = self.cfg.destination();
        SyncStatus {
            master: self.dp.sync().is_master(),
            backup: self.backup.load(Ordering::Relaxed),
            syncid: self.cfg.syncid,
            port: self.cfg.port.clone(),
            interface: self.interface.clone(),
            transport: format!(
                "{} {dest}:{}",
                if dest.is_multicast() {
                    "mcast"
                } else {
                    "unicast"
                },
                self.cfg.udp_port
            ),
            counters: self.dp.sync_stats().counters(),
        }
    }

    pub fn spawn(self: Arc<Self>, running: &'static AtomicBool) -> Result<JoinHandle<()>, String> {
        std::thread::Builder::new()
            .name("rvs-sync".into())
            .spawn(move || self.run(running))
            .map_err(|e| format!("cannot start the sync thread: {e}"))
    }

    fn run(&self, running: &AtomicBool) {
        let mut enc = Encoder::new(self.cfg.syncid, usize::from(self.cfg.maxlen));
        let mut first_queued: Option<Instant> = None;
        let mut buf = vec![0u8; usize::from(u16::MAX)];
        let to = SocketAddrV4::new(self.cfg.destination(), self.cfg.udp_port);
        while running.load(Ordering::Relaxed) {
            let mut moved = 0;
            if self.dp.sync().is_master() {
                moved += self.dp.sync().drain(DRAIN_PER_ROUND, |c| {
                    first_queued.get_or_insert_with(Instant::now);
                    if let Some(msg) = enc.push(&c) {
                        self.send(&msg, to);
                    }
                });
                if first_queued.is_some_and(|t| t.elapsed() >= SEND_DELAY) {
                    if let Some(msg) = enc.finish() {
                        self.send(&msg, to);
                    }
                    first_queued = None;
                }
            } else if !enc.is_empty() {
                // No longer master: what was batched is not sent.
                enc.finish();
                first_queued = None;
            }
            moved += self.receive(&mut buf);
            if moved == 0 {
                std::thread::sleep(IDLE);
            }
        }
    }

    fn send(&self, msg: &[u8], to: SocketAddrV4) {
        let st = self.dp.sync_stats();
        match self.socket.send_to(msg, to) {
            Ok(_) => {
                st.msgs_sent.fetch_add(1, Ordering::Relaxed);
                st.conns_sent.fetch_add(
                    u64::from(msg.get(4).copied().unwrap_or(0)),
                    Ordering::Relaxed,
                );
            }
            Err(e) => {
                st.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("sync send to {to}: {e}");
            }
        }
    }

    /// Takes every datagram waiting; installs them as backup, else drops them. Returns how
    /// many it took.
    fn receive(&self, buf: &mut [u8]) -> usize {
        let st = self.dp.sync_stats();
        let mut n = 0;
        loop {
            let len = match self.socket.recv_from(buf) {
                Ok((len, _)) => len,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
                Err(e) => {
                    tracing::debug!("sync receive: {e}");
                    return n;
                }
            };
            n += 1;
            if !self.backup.load(Ordering::Relaxed) {
                continue;
            }
            st.msgs_received.fetch_add(1, Ordering::Relaxed);
            let now = self.dp.now_ms();
            let msg = buf.get(..len).unwrap_or_default();
            let decoded = decode(msg, self.cfg.syncid, |entry| {
                match entry.and_then(|c| self.dp.install_synced(&c, now)) {
                    Ok(Installed::New) => st.conns_installed.fetch_add(1, Ordering::Relaxed),
                    Ok(Installed::Updated) => st.conns_updated.fetch_add(1, Ordering::Relaxed),
                    Err(r) => {
                        st.refuse(r);
                        0
                    }
                };
            });
            if let Err(r) = decoded {
                st.refuse(r);
            }
        }
    }
}

/// A non-blocking UDP socket bound to `udp_port` on the twin `ifname` (SO_BINDTODEVICE), in
/// the multicast group on `local` when the destination is one, sending multicast out of the
/// twin with the configured TTL and without looping it back.
fn open_socket(sc: &SyncConfig, ifname: &str, local: Ipv4Addr) -> std::io::Result<UdpSocket> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    setsockopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        &one.to_ne_bytes(),
    )?;
    setsockopt(
        &fd,
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        ifname.as_bytes(),
    )?;
    let any = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: sc.udp_port.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: `any` is a valid sockaddr_in of the length given.
    let bound = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&any as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let socket = UdpSocket::from(fd);
    socket.set_nonblocking(true)?;
    let dest = sc.destination();
    if dest.is_multicast() {
        socket.join_multicast_v4(&dest, &local)?;
        socket.set_multicast_ttl_v4(u32::from(sc.ttl))?;
        socket.set_multicast_loop_v4(false)?;
        let mreq = libc::in_addr {
            s_addr: u32::from(local).to_be(),
        };
        // SAFETY: in_addr is plain old data; its bytes are what IP_MULTICAST_IF takes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&mreq as *const libc::in_addr).cast::<u8>(),
                std::mem::size_of::<libc::in_addr>(),
            )
        };
        setsockopt(&socket, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, bytes)?;
    }
    Ok(socket)
}

fn setsockopt(fd: &impl AsRawFd, level: i32, name: i32, value: &[u8]) -> std::io::Result<()> {
    // SAFETY: `value` is a valid buffer of the length given for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
