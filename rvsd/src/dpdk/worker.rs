//! The poll-mode worker: rx burst from every port -> pipeline -> per-port tx batches -> tx burst.
//!
//! No locks, no allocation and no syscalls in the loop. Frames whose next hop is not resolved yet
//! wait in a small hold queue while an ARP request goes out, as a kernel's neighbour queue does,
//! so the first SYN to a real server is not lost.

use super::eal;
use super::mbuf;
use super::port::Port;
use dataplane::pipeline::{Action, Dataplane, Worker as Pipeline};
use dataplane::stats::{DropReason, Event};
use dpdk_sys as sys;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Packets per rx burst, as DESIGN.md says.
pub const BURST: usize = 32;
/// Frames waiting for ARP resolution per worker.
const HOLD_CAPACITY: usize = 64;
/// How long a frame waits for its next hop before it is dropped.
const HOLD_MS: u64 = 1000;
/// Gap between ARP requests for the same next hop.
const ARP_RETRY_MS: u64 = 200;

/// Cleared by the signal handler; every worker polls it once per loop.
pub static RUNNING: AtomicBool = AtomicBool::new(true);

/// What one worker lcore needs; moved onto the lcore at launch.
pub struct WorkerSetup {
    pub index: usize,
    /// The RX/TX queue this worker owns on every port.
    pub queue: u16,
    pub ports: Arc<Vec<Port>>,
    pub dataplane: Arc<Dataplane>,
}

struct Held {
    mbuf: *mut sys::rte_mbuf,
    port: u16,
    next_hop: Ipv4Addr,
    since_ms: u64,
}

/// Per-port transmit batch.
struct TxBatch {
    mbufs: Vec<*mut sys::rte_mbuf>,
}

struct Loop {
    setup: WorkerSetup,
    pipeline: Pipeline,
    tx: Vec<TxBatch>,
    held: Vec<Held>,
    /// Last ARP request per next hop still in the hold queue: (port, next hop, sent at).
    arp_sent: Vec<(u16, Ipv4Addr, u64)>,
}

impl Loop {
    fn new(setup: WorkerSetup) -> Loop {
        let pipeline = Pipeline::new(setup.dataplane.clone(), setup.index);
        let tx_cap = BURST * (setup.ports.len() + 1) + HOLD_CAPACITY;
        let tx = setup
            .ports
            .iter()
            .map(|_| TxBatch {
                mbufs: Vec::with_capacity(tx_cap),
            })
            .collect();
        Loop {
            setup,
            pipeline,
            tx,
            held: Vec::with_capacity(HOLD_CAPACITY),
            arp_sent: Vec::with_capacity(HOLD_CAPACITY),
        }
    }

    fn run(&mut self) {
        let ms_ticks = (eal::tsc_hz() / 1000).max(1);
        let mut rx = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
        while RUNNING.load(Ordering::Relaxed) {
            let now_ms = eal::tsc() / ms_ticks;
            self.pipeline.begin_burst(now_ms);
            for in_port in 0..self.setup.ports.len() {
                let id = self.setup.ports[in_port].id;
                // SAFETY: the port is started and this worker owns queue `queue` on it.
                let n = unsafe {
                    sys::rte_eth_rx_burst(id, self.setup.queue, rx.as_mut_ptr(), BURST as u16)
                } as usize;
                self.prefetch(&rx[..n]);
                for &m in &rx[..n] {
                    self.handle(in_port as u16, m, now_ms);
                }
            }
            if !self.held.is_empty() {
                self.retry_held(now_ms);
            }
            self.flush();
            self.pipeline.housekeeping(now_ms);
        }
        self.drain();
    }

    /// Lets the pipeline prefetch the connection-table lines of the whole burst before it
    /// handles the first packet (see `Worker::prefetch_burst`).
    fn prefetch(&self, rx: &[*mut sys::rte_mbuf]) {
        let mut frames: [&[u8]; BURST] = [&[]; BURST];
        for (f, &m) in frames.iter_mut().zip(rx) {
            // SAFETY: m came from rx_burst and is ours; this shared view of its (first
            // segment's) bytes ends before `handle` touches the mbuf.
            *f = unsafe { mbuf::data_mut(m) };
        }
        self.pipeline.prefetch_burst(&frames[..rx.len()]);
    }

    fn handle(&mut self, in_port: u16, m: *mut sys::rte_mbuf, now_ms: u64) {
        // SAFETY: m came from rx_burst and is ours until sent or freed.
        unsafe {
            if !mbuf::is_single_segment(m) {
                self.pipeline.count_rx(in_port);
                self.pipeline.count_drop(DropReason::MultiSegment);
                mbuf::free(m);
                return;
            }
            let (buf, len) = mbuf::data_with_room(m);
            match self.pipeline.process_buf(in_port, buf, len) {
                Action::Tx(port) => self.queue_tx(port, m),
                Action::Reply { port, len } => match u16::try_from(len) {
                    Ok(len) => {
                        mbuf::set_len(m, len);
                        self.queue_tx(port, m);
                    }
                    Err(_) => {
                        self.pipeline.count_drop(DropReason::Malformed);
                        mbuf::free(m);
                    }
                },
                Action::Hold { port, next_hop } => self.hold(m, port, next_hop, now_ms),
                Action::Drop => mbuf::free(m),
            }
        }
    }

    fn queue_tx(&mut self, port: u16, m: *mut sys::rte_mbuf) {
        let Some(batch) = self.tx.get_mut(port as usize) else {
            self.pipeline.count_drop(DropReason::NoRoute);
            // SAFETY: ours to free.
            unsafe { mbuf::free(m) };
            return;
        };
        if batch.mbufs.len() == batch.mbufs.capacity() {
            self.flush_port(port as usize);
        }
        self.tx[port as usize].mbufs.push(m);
    }

    fn hold(&mut self, m: *mut sys::rte_mbuf, port: u16, next_hop: Ipv4Addr, now_ms: u64) {
        if self.held.len() == HOLD_CAPACITY {
            self.pipeline.count_drop(DropReason::HoldQueueFull);
            // SAFETY: ours to free.
            unsafe { mbuf::free(m) };
            return;
        }
        self.held.push(Held {
            mbuf: m,
            port,
            next_hop,
            since_ms: now_ms,
        });
        self.request_arp(port, next_hop, now_ms);
    }

    /// Sends an ARP request for `next_hop` unless one went out less than ARP_RETRY_MS ago.
    fn request_arp(&mut self, port: u16, next_hop: Ipv4Addr, now_ms: u64) {
        if let Some(sent) = self
            .arp_sent
            .iter_mut()
            .find(|(p, ip, _)| *p == port && *ip == next_hop)
        {
            if now_ms.saturating_sub(sent.2) < ARP_RETRY_MS {
                return;
            }
            sent.2 = now_ms;
        } else {
            self.arp_sent.push((port, next_hop, now_ms));
        }
        // A generated frame: counted here, then sent or dropped as counted.
        self.pipeline.count_event(Event::ArpRequests);
        let Some(p) = self.setup.ports.get(port as usize) else {
            self.pipeline.count_drop(DropReason::NoRoute);
            return;
        };
        let pipeline = &self.pipeline;
        // SAFETY: the port's mempool lives as long as the port.
        let req =
            unsafe { mbuf::alloc_with(p.pool, |buf| pipeline.arp_request(port, next_hop, buf)) };
        match req {
            Some(m) => self.queue_tx(port, m),
            None => self.pipeline.count_drop(DropReason::MbufAlloc),
        }
    }

    fn retry_held(&mut self, now_ms: u64) {
        let mut i = 0;
        while i < self.held.len() {
            let h = &self.held[i];
            let (m, port, next_hop, since) = (h.mbuf, h.port, h.next_hop, h.since_ms);
            // SAFETY: held mbufs are ours.
            let resolved = self
                .pipeline
                .fill_l2(port, next_hop, unsafe { mbuf::data_mut(m) });
            if resolved {
                self.held.swap_remove(i);
                self.queue_tx(port, m);
            } else if now_ms.saturating_sub(since) > HOLD_MS {
                self.held.swap_remove(i);
                self.pipeline.count_drop(DropReason::NeighUnresolved);
                // SAFETY: ours to free.
                unsafe { mbuf::free(m) };
            } else {
                self.request_arp(port, next_hop, now_ms);
                i += 1;
            }
        }
        let held = &self.held;
        self.arp_sent
            .retain(|(p, ip, _)| held.iter().any(|h| h.port == *p && h.next_hop == *ip));
    }

    fn flush(&mut self) {
        for port in 0..self.tx.len() {
            if !self.tx[port].mbufs.is_empty() {
                self.flush_port(port);
            }
        }
    }

    fn flush_port(&mut self, port: usize) {
        let id = self.setup.ports[port].id;
        let batch = &mut self.tx[port].mbufs;
        let mut sent = 0usize;
        // A full TX ring is retried a few times, then what is left is dropped and counted:
        // spinning longer would stall every other port this worker serves.
        for _ in 0..4 {
            // SAFETY: the batch holds valid mbufs owned by this worker; the queue is ours.
            sent += unsafe {
                sys::rte_eth_tx_burst(
                    id,
                    self.setup.queue,
                    batch.as_mut_ptr().add(sent),
                    (batch.len() - sent) as u16,
                )
            } as usize;
            if sent == batch.len() {
                break;
            }
        }
        self.pipeline.count_tx(port as u16, sent as u64);
        for &m in &batch[sent..] {
            self.pipeline.count_drop(DropReason::TxFull);
            // SAFETY: not taken by the driver, still ours.
            unsafe { mbuf::free(m) };
        }
        batch.clear();
    }

    /// At shutdown: send what is batched, free what is held.
    fn drain(&mut self) {
        self.flush();
        for h in self.held.drain(..) {
            // SAFETY: ours to free.
            unsafe { mbuf::free(h.mbuf) };
        }
    }
}

/// Runs a worker on the calling thread until RUNNING is cleared.
pub fn run(setup: WorkerSetup) {
    tracing::info!(
        worker = setup.index,
        lcore = unsafe { sys::rte_lcore_id() },
        "worker started"
    );
    Loop::new(setup).run();
}

unsafe extern "C" fn lcore_entry(arg: *mut std::os::raw::c_void) -> i32 {
    // SAFETY: `launch` passes a Box<WorkerSetup> it leaked for exactly this call.
    let setup = unsafe { Box::from_raw(arg as *mut WorkerSetup) };
    run(*setup);
    0
}

/// Starts a worker on a (non-main) lcore.
pub fn launch(lcore: u32, setup: WorkerSetup) -> Result<(), super::DpdkError> {
    let arg = Box::into_raw(Box::new(setup));
    // SAFETY: lcore_entry takes ownership of arg; EAL runs it once on `lcore`.
    let ret = unsafe { sys::rte_eal_remote_launch(Some(lcore_entry), arg as *mut _, lcore) };
    if ret != 0 {
        // SAFETY: not launched, so still ours.
        drop(unsafe { Box::from_raw(arg) });
        return Err(super::DpdkError::Lcore {
            lcore,
            message: format!("cannot launch a worker: {}", super::errno_text(ret)),
        });
    }
    Ok(())
}

/// Waits for every launched worker to return.
pub fn wait_all() {
    // SAFETY: called from the main lcore after RUNNING is cleared.
    unsafe { sys::rte_eal_mp_wait_lcore() };
}
