//! The kernel exception path's DPDK side (docs/exception-path.md): one kernel twin per port
//! that names one (`kernel_twin`), and the rings between the workers and the exception thread.
//!
//! A twin is a `net_tun` vdev rvsd probes itself: an L3 TUN interface in rvsd's namespace that
//! carries the port's addresses (IPv4 and IPv6), MTU and gateways. The kernel sends IP packets
//! without Ethernet and does no ARP or neighbour discovery of its own on it, so next-hop
//! resolution stays rvsd's (the workers' ARP, NDP and hold queue).
//!
//! ```text
//!  worker --(ToKernel, L2 stripped)--> up ring of the port (MP/SC) --> exception thread --> twin
//!  twin --> exception thread --(14 bytes prepended)--> down ring of a worker (SP/SC) --> worker
//! ```
//!
//! Workers make no syscalls: they only enqueue to and dequeue from rings. The exception thread is
//! a plain OS thread (not a worker lcore) that polls the rings and the twins, and sleeps when a
//! round found nothing: [`IDLE_SLEEP_MIN`] after the first empty round, twice as long after each
//! further one, up to [`IDLE_SLEEP_MAX`] (an idle thread then costs a few hundred polls a
//! second; the first packet after a quiet spell waits at most that long). A worker drains at
//! most one burst from its down ring per poll loop.

use super::mbuf::Mbuf;
use super::port::Port;
use control::config::{Config, IfName, IpCidr, PortConfig};
use dataplane::driver::{FrameBuf, BURST};
use dataplane::pipeline::KernelPath;
use dpdk_sys as sys;
use std::ffi::CString;
use std::os::raw::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// rte_ring.h's RING_F_SP_ENQ and RING_F_SC_DEQ (macros bindgen does not see).
const RING_F_SP_ENQ: u32 = 0x1;
const RING_F_SC_DEQ: u32 = 0x2;
/// Slots of each ring (a power of two; one is kept free, so 1023 mbufs).
const RING_SIZE: u32 = 1024;
/// Mbufs of a twin's receive pool.
const TWIN_MBUFS: u32 = 2047;
/// Descriptors of a twin's queues.
const TWIN_RING: u16 = 512;
/// The exception thread's sleep after a round with nothing to move, then doubled per empty
/// round up to the maximum.
pub const IDLE_SLEEP_MIN: Duration = Duration::from_micros(50);
pub const IDLE_SLEEP_MAX: Duration = Duration::from_millis(1);
/// The Ethernet header a worker strips going up and the exception thread makes room for coming
/// down.
const L2_LEN: u16 = 14;

/// A DPDK ring of mbuf pointers.
#[derive(Debug, Clone, Copy)]
pub struct Ring(NonNull<sys::rte_ring>);

// SAFETY: rte_ring is DPDK's lock-free ring, made for use from several threads; the flags it
// was created with say which sides may have several (see `ExceptionPath::start`).
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

impl Ring {
    fn create(name: &str, flags: u32) -> Result<Ring, String> {
        let cname = CString::new(name).map_err(|_| format!("bad ring name {name:?}"))?;
        // SAFETY: valid name; DPDK copies it. SOCKET_ID_ANY is -1.
        let r = unsafe { sys::rte_ring_create(cname.as_ptr(), RING_SIZE, -1, flags) };
        NonNull::new(r)
            .map(Ring)
            .ok_or_else(|| format!("cannot create ring {name}: {}", super::last_error()))
    }

    /// Queues `m`; gives it back if the ring is full.
    pub fn enqueue(&self, m: Mbuf) -> Result<(), Mbuf> {
        let obj = [m.as_ptr().cast::<c_void>()];
        // SAFETY: a live ring; one valid pointer. The ring owns the mbuf once it took it.
        let n = unsafe {
            sys::rte_ring_enqueue_burst(self.0.as_ptr(), obj.as_ptr(), 1, std::ptr::null_mut())
        };
        if n == 1 {
            // The ring's now (Mbuf has no Drop: nothing is freed here).
            Ok(())
        } else {
            Err(m)
        }
    }

    /// Moves up to `max` mbufs (at most the room left in `out`) from the ring into `out`.
    pub fn dequeue(&self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let room = max.min(out.capacity() - out.len());
        let len = out.len();
        // SAFETY: writes at most `room` non-null mbuf pointers (now ours) behind the Vec's
        // elements, an array of `*mut rte_mbuf` (Mbuf is repr(transparent)).
        unsafe {
            let n = sys::rte_ring_dequeue_burst(
                self.0.as_ptr(),
                out.as_mut_ptr().add(len).cast::<*mut c_void>(),
                room as u32,
                std::ptr::null_mut(),
            ) as usize;
            out.set_len(len + n);
            n
        }
    }
}

/// What a worker needs of the exception path.
#[derive(Debug, Clone)]
pub struct WorkerKernel {
    /// Per port index: the up ring of its twin, if it has one.
    pub up: Vec<Option<Ring>>,
    /// This worker's down ring: packets from the kernel to route.
    pub down: Ring,
}

/// Drops of the exception thread (the workers count theirs in the dataplane's counters).
#[derive(Debug, Default)]
pub struct ExceptionCounters {
    /// Packets a twin did not take (its queue to the kernel full).
    up_tx_full: AtomicU64,
    /// Packets from the kernel no worker's down ring had room for.
    down_ring_full: AtomicU64,
    /// Packets from the kernel rvs cannot hand on: chained or without headroom for L2.
    down_unusable: AtomicU64,
}

struct Twin {
    /// The index of the port it is the twin of.
    port: usize,
    ifname: IfName,
    dev: Port,
    up: Ring,
}

/// The twins and rings; run by [`ExceptionPath::spawn`].
pub struct ExceptionPath {
    twins: Vec<Twin>,
    /// Per port index: the up ring of its twin.
    up: Vec<Option<Ring>>,
    /// Per worker.
    down: Vec<Ring>,
    counters: Arc<ExceptionCounters>,
}

/// The dataplane's view of `cfg`'s exception path: which ports have a twin, and the rate.
pub fn kernel_path(cfg: &Config) -> KernelPath {
    KernelPath {
        twins: cfg.ports.iter().map(|p| p.kernel_twin.is_some()).collect(),
        rate: cfg.exception.rate,
        burst: cfg.exception.burst,
    }
}

impl ExceptionPath {
    /// Creates a twin for every port of `cfg` that names one (after EAL, before the workers),
    /// gives it the port's addresses (with IPv6, the port's link-local address made from its
    /// MAC, `macs` in port order), MTU and gateway, and the rings for `workers` workers.
    pub fn start(cfg: &Config, macs: &[[u8; 6]], workers: usize) -> Result<ExceptionPath, String> {
        let mut twins = Vec::new();
        let mut up = Vec::with_capacity(cfg.ports.len());
        for (i, pc) in cfg.ports.iter().enumerate() {
            let Some(ifname) = &pc.kernel_twin else {
                up.push(None);
                continue;
            };
            let mac = macs.get(i).copied().unwrap_or_default();
            let twin = Twin::start(i, pc, mac, ifname)
                .map_err(|e| format!("ports[{i}].kernel_twin {ifname:?}: {e}"))?;
            tracing::info!(port = %pc.name, twin = %ifname, id = twin.dev.id, "kernel twin up");
            up.push(Some(twin.up));
            twins.push(twin);
        }
        let down = (0..workers)
            .map(|w| Ring::create(&format!("rvs_down_{w}"), RING_F_SP_ENQ | RING_F_SC_DEQ))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExceptionPath {
            twins,
            up,
            down,
            counters: Arc::default(),
        })
    }

    /// Whether any port has a twin (else no thread is needed).
    pub fn is_empty(&self) -> bool {
        self.twins.is_empty()
    }

    /// Worker `index`'s rings.
    pub fn worker(&self, index: usize) -> Option<WorkerKernel> {
        Some(WorkerKernel {
            up: self.up.clone(),
            down: *self.down.get(index)?,
        })
    }

    /// The exception thread's drops and each twin's device counters, by name.
    pub fn counters_fn(&self) -> impl Fn() -> Vec<(String, u64)> + Send + Sync + 'static {
        let c = self.counters.clone();
        let twins: Vec<(String, u16)> = self
            .twins
            .iter()
            .map(|t| (t.dev.name.clone(), t.dev.id))
            .collect();
        move || {
            let mut out = vec![
                (
                    "exception.up_tx_full".into(),
                    c.up_tx_full.load(Ordering::Relaxed),
                ),
                (
                    "exception.down_ring_full".into(),
                    c.down_ring_full.load(Ordering::Relaxed),
                ),
                (
                    "exception.down_unusable".into(),
                    c.down_unusable.load(Ordering::Relaxed),
                ),
            ];
            for (name, id) in &twins {
                let mut st = sys::rte_eth_stats::default();
                // SAFETY: valid port id and out pointer; safe from any thread.
                if unsafe { sys::rte_eth_stats_get(*id, &mut st) } == 0 {
                    out.push((format!("port.{name}.hw_rx_packets"), st.ipackets));
                    out.push((format!("port.{name}.hw_tx_packets"), st.opackets));
                }
            }
            out
        }
    }

    /// Runs the exception thread until `running` is cleared; it stops the twins when it ends.
    pub fn spawn(
        self,
        running: &'static AtomicBool,
    ) -> Result<std::thread::JoinHandle<()>, String> {
        std::thread::Builder::new()
            .name("rvs-exception".into())
            .spawn(move || {
                self.run(running);
                for t in &self.twins {
                    t.dev.stop();
                    tracing::info!(twin = %t.ifname, "kernel twin removed");
                }
            })
            .map_err(|e| format!("cannot start the exception thread: {e}"))
    }

    fn run(&self, running: &AtomicBool) {
        let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST);
        let mut idle = IDLE_SLEEP_MIN;
        while running.load(Ordering::Relaxed) {
            let mut moved = 0;
            for t in &self.twins {
                moved += self.up_round(t, &mut burst);
                moved += self.down_round(t, &mut burst);
            }
            if moved == 0 {
                std::thread::sleep(idle);
                idle = (idle * 2).min(IDLE_SLEEP_MAX);
            } else {
                idle = IDLE_SLEEP_MIN;
            }
        }
    }

    /// From the workers to the kernel: one burst of the twin's up ring into the twin.
    fn up_round(&self, t: &Twin, burst: &mut Vec<Mbuf>) -> usize {
        let n = t.up.dequeue(burst, BURST);
        if n == 0 {
            return 0;
        }
        // SAFETY: the twin is started and only this thread uses its queue 0; the burst holds
        // valid mbufs we own, an array of `*mut rte_mbuf`; those sent leave the Vec below.
        let sent = usize::from(unsafe {
            sys::rte_eth_tx_burst(
                t.dev.id,
                0,
                burst.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                n as u16,
            )
        });
        let rest = burst.split_off(sent.min(n));
        // Now the twin's: forgotten, not freed (Mbuf has no Drop).
        burst.clear();
        self.counters
            .up_tx_full
            .fetch_add(rest.len() as u64, Ordering::Relaxed);
        rest.into_iter().for_each(Mbuf::free);
        n
    }

    /// From the kernel to the workers: one burst from the twin, each packet given room for an
    /// Ethernet header and queued to a worker by its destination address (one destination's
    /// packets stay in order).
    fn down_round(&self, t: &Twin, burst: &mut Vec<Mbuf>) -> usize {
        let Ok(port) = u16::try_from(t.port) else {
            return 0;
        };
        // SAFETY: as in `up_round`; rx_burst writes at most BURST non-null mbuf pointers (now
        // ours) into the empty Vec's room.
        let n = unsafe {
            let n = sys::rte_eth_rx_burst(
                t.dev.id,
                0,
                burst.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                BURST as u16,
            );
            burst.set_len(usize::from(n));
            usize::from(n)
        };
        for m in burst.drain(..) {
            // SAFETY: we own the mbuf; prepend returns null (and changes nothing) without room.
            let usable = m.is_contiguous()
                && !unsafe { sys::rte_pktmbuf_prepend(m.as_ptr(), L2_LEN) }.is_null();
            if !usable {
                self.counters.down_unusable.fetch_add(1, Ordering::Relaxed);
                m.free();
                continue;
            }
            // The worker routes multicast out of this twin's port: the mbuf's port says which
            // (rx_burst set it to the twin device's id, which the worker has no use for).
            // SAFETY: we own the mbuf; `port` is a plain field.
            unsafe { (*m.as_ptr()).port = port };
            let dst = dst_hash(m.data());
            let Some(ring) = self.down.get(dst % self.down.len().max(1)) else {
                m.free();
                continue;
            };
            if let Err(m) = ring.enqueue(m) {
                self.counters.down_ring_full.fetch_add(1, Ordering::Relaxed);
                m.free();
            }
        }
        n
    }
}

/// A hash of the destination address of the IP packet behind the room for L2 in `frame` (0
/// when it has none): one destination's packets go to one worker, in order.
fn dst_hash(frame: &[u8]) -> usize {
    let word = |d: &[u8]| u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let l2 = usize::from(L2_LEN);
    let dst = match frame.get(l2).map(|b| b >> 4) {
        // IPv6: the destination at 24..40, its four words folded.
        Some(6) => frame
            .get(l2 + 24..l2 + 40)
            .map_or(0, |d| d.chunks_exact(4).fold(0, |h, w| h ^ word(w))),
        _ => frame.get(l2 + 16..l2 + 20).map_or(0, word),
    };
    dst as usize
}

impl Twin {
    fn start(index: usize, pc: &PortConfig, mac: [u8; 6], ifname: &IfName) -> Result<Twin, String> {
        let device = format!("net_tun{index}");
        let args = CString::new(format!("{device},iface={ifname}"))
            .map_err(|_| "bad interface name".to_string())?;
        // SAFETY: valid devargs string; EAL is up.
        let ret = unsafe { sys::rte_dev_probe(args.as_ptr()) };
        if ret != 0 {
            return Err(format!(
                "cannot create the net_tun device: {}",
                super::errno_text(ret)
            ));
        }
        let twin_cfg = PortConfig {
            name: format!("{}-twin", pc.name),
            device,
            role: pc.role,
            addresses: Vec::new(),
            mac: None,
            gateway: None,
            addresses6: Vec::new(),
            gateway6: None,
            mtu: pc.mtu,
            rx_ring: TWIN_RING,
            tx_ring: TWIN_RING,
            kernel_twin: None,
        };
        let dev = Port::start(&twin_cfg, 1, TWIN_MBUFS).map_err(|e| e.to_string())?;
        configure_interface(ifname.as_str(), pc, mac)?;
        let up = Ring::create(&format!("rvs_up_{index}"), RING_F_SC_DEQ)?;
        Ok(Twin {
            port: index,
            ifname: ifname.clone(),
            dev,
            up,
        })
    }
}

/// Adds (`true`) or removes an address on the twin of port `port` (an index of `cfg.ports`),
/// for the VRRP-held addresses (`SetVirtualAddrs`), as keepalived's `ip addr add`/`del` do; a
/// port without a twin has nothing to change. After an IPv4 add, the port's default route is
/// put back (the kernel drops it with the last address of its subnet). IPv6 addresses go on
/// with `nodad` (rvs answers neighbour discovery for them; the kernel never sees it).
pub fn twin_address_setter(
    cfg: &Config,
) -> impl Fn(u16, IpCidr, bool) -> Result<(), String> + Send + Sync + 'static {
    let twins: Vec<Option<(String, Option<std::net::Ipv4Addr>)>> = cfg
        .ports
        .iter()
        .map(|p| {
            p.kernel_twin
                .as_ref()
                .map(|t| (t.as_str().to_string(), p.gateway))
        })
        .collect();
    move |port, cidr, present| {
        let Some(Some((ifname, gateway))) = twins.get(usize::from(port)) else {
            return Ok(());
        };
        let addr = cidr.to_string();
        if cidr.is_ipv6() {
            return if present {
                ip(&["-6", "addr", "replace", &addr, "dev", ifname, "nodad"])
            } else {
                ip(&["-6", "addr", "del", &addr, "dev", ifname])
            };
        }
        if !present {
            return ip(&["addr", "del", &addr, "dev", ifname]);
        }
        ip(&["addr", "replace", &addr, "dev", ifname])?;
        if let Some(gw) = gateway {
            // Unreachable until an address of its subnet is back: not an error here.
            let _ = default_route(ifname, *gw);
        }
        Ok(())
    }
}

/// Gives the twin the port's addresses (and so its connected routes), MTU, gateways and
/// multicast, with `ip`. IPv6 is on only where the port has IPv6 addresses, and then as a plain
/// host: no duplicate address detection (rvs answers neighbour discovery for the port's
/// addresses, the kernel never sees it through a TUN), no router solicitations or
/// advertisements, no link-local address of the kernel's making; the port's own link-local
/// address (from `mac`, which rvs answers solicitations for) instead, the source of VRRP's IPv6
/// adverts (RFC 5798 5.1.2.1).
fn configure_interface(ifname: &str, pc: &PortConfig, mac: [u8; 6]) -> Result<(), String> {
    let conf6 = format!("/proc/sys/net/ipv6/conf/{ifname}");
    if pc.addresses6.is_empty() {
        sysctl(&format!("{conf6}/disable_ipv6"), "1")?;
    } else {
        for (key, value) in [
            ("accept_dad", "0"),
            ("accept_ra", "0"),
            ("router_solicitations", "0"),
            // IN6_ADDR_GEN_MODE_NONE: no link-local address when the link comes up.
            ("addr_gen_mode", "1"),
            ("disable_ipv6", "0"),
        ] {
            sysctl(&format!("{conf6}/{key}"), value)?;
        }
    }
    // A VRRP instance may release the subnet's first (primary) address: its other addresses
    // there stay (by default the kernel would delete them with it).
    sysctl(
        &format!("/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries"),
        "1",
    )?;
    let mtu = pc.mtu.to_string();
    // Multicast on: VRRP adverts and IPVS sync (224.0.0.0/24) pass through the twin.
    ip(&[
        "link",
        "set",
        "dev",
        ifname,
        "mtu",
        &mtu,
        "multicast",
        "on",
        "up",
    ])?;
    for a in &pc.addresses {
        ip(&["addr", "replace", &a.to_string(), "dev", ifname])?;
    }
    if let Some(gw) = pc.gateway {
        default_route(ifname, gw)?;
    }
    if !pc.addresses6.is_empty() {
        let ll = format!("{}/64", dataplane::packet::ipv6::link_local_of(mac));
        ip(&["-6", "addr", "replace", &ll, "dev", ifname, "nodad"])?;
    }
    for a in &pc.addresses6 {
        ip(&[
            "-6",
            "addr",
            "replace",
            &a.to_string(),
            "dev",
            ifname,
            "nodad",
        ])?;
    }
    if let Some(gw) = pc.gateway6 {
        ip(&[
            "-6",
            "route",
            "replace",
            "default",
            "via",
            &gw.to_string(),
            "dev",
            ifname,
        ])?;
    }
    Ok(())
}

/// The twin's default route via `gw`.
fn default_route(ifname: &str, gw: std::net::Ipv4Addr) -> Result<(), String> {
    ip(&[
        "route",
        "replace",
        "default",
        "via",
        &gw.to_string(),
        "dev",
        ifname,
    ])
}

/// Sets the sysctl file `path` to `value`, when this kernel has it.
fn sysctl(path: &str, value: &str) -> Result<(), String> {
    if std::path::Path::new(path).exists() {
        std::fs::write(path, value).map_err(|e| format!("{path}: {e}"))?;
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::dst_hash;

    /// A packet as the exception thread holds it: room for L2, then `ip`.
    fn framed(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0xee; 14];
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn workers_are_chosen_by_the_destination_of_either_family() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[192, 0, 2, 1]);
        v4[16..20].copy_from_slice(&[192, 0, 2, 7]);
        assert_eq!(dst_hash(&framed(&v4)), 0xc000_0207);
        let v6 = |src: u8, dst: u8| {
            let mut p = [0u8; 40];
            p[0] = 0x60;
            p[8..12].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            p[23] = src;
            p[24..28].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            p[39] = dst;
            framed(&p)
        };
        // The source does not matter; the destination's every word does.
        assert_eq!(dst_hash(&v6(1, 2)), dst_hash(&v6(9, 2)));
        assert_eq!(dst_hash(&v6(1, 2)), 0x2001_0db8 ^ 2);
        assert_ne!(dst_hash(&v6(1, 2)), dst_hash(&v6(1, 3)));
        // Too short for its destination: 0, as for no packet at all.
        assert_eq!(dst_hash(&v6(1, 2)[..40]), 0);
        assert_eq!(dst_hash(&[]), 0);
    }
}
