//! The poll-mode worker: rx burst from every port -> burst driver (pipeline, per-port TX
//! batches, hold queue for ARP) -> tx burst. This file is the mbuf side of it: what the driver
//! does is `dataplane::driver`, the same code the tests, the fuzz targets and the pipeline
//! benchmark run on byte buffers.
//!
//! No locks, no allocation and no syscalls in the loop.

use super::eal;
use super::exception::{Ring, WorkerKernel};
use super::mbuf::Mbuf;
use super::port::Port;
use dataplane::driver::{BurstDriver, FrameIo, BURST};
use dataplane::pipeline::Dataplane;
use dpdk_sys as sys;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cleared by the signal handler; every worker polls it once per loop.
pub static RUNNING: AtomicBool = AtomicBool::new(true);

/// What one worker lcore needs; moved onto the lcore at launch.
pub struct WorkerSetup {
    pub index: usize,
    /// The RX/TX queue this worker owns on every port.
    pub queue: u16,
    pub ports: Arc<Vec<Port>>,
    pub dataplane: Arc<Dataplane>,
    /// The rings to and from the kernel twins (None: no port has one).
    pub kernel: Option<WorkerKernel>,
}

/// This worker's queue on every port, and the ports' mempools: where the driver's frames come
/// from and go to.
struct Queues {
    ports: Arc<Vec<Port>>,
    queue: u16,
    /// Per port index: the up ring of its kernel twin.
    kernel_up: Vec<Option<Ring>>,
}

impl FrameIo for Queues {
    type Frame = Mbuf;

    fn alloc(&mut self, port: u16) -> Option<Mbuf> {
        let p = self.ports.get(usize::from(port))?;
        // SAFETY: the port's mempool lives as long as the port.
        unsafe { Mbuf::alloc(p.pool) }
    }

    fn transmit(&mut self, port: u16, batch: &mut Vec<Mbuf>) {
        let Some(p) = self.ports.get(usize::from(port)) else {
            return;
        };
        let mut sent = 0usize;
        // A full TX ring is retried a few times, then what is left goes back to the driver
        // (dropped and counted): spinning longer would stall every other port this worker
        // serves.
        for _ in 0..4 {
            let rest = &mut batch[sent..];
            // SAFETY: the batch holds valid mbufs owned by this worker, an array of
            // `*mut rte_mbuf` (Mbuf is repr(transparent)); the queue is ours. Those the NIC
            // took leave the batch below, unfreed.
            sent += unsafe {
                sys::rte_eth_tx_burst(
                    p.id,
                    self.queue,
                    rest.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                    rest.len() as u16,
                )
            } as usize;
            if sent == batch.len() {
                break;
            }
        }
        // Now the NIC's: forgotten, not freed (Mbuf has no Drop).
        batch.drain(..sent);
    }

    fn free(&mut self, frame: Mbuf) {
        frame.free();
    }

    fn to_kernel(&mut self, port: u16, frame: Mbuf) -> Result<(), Mbuf> {
        let Some(Some(ring)) = self.kernel_up.get(usize::from(port)) else {
            return Err(frame);
        };
        // SAFETY: we own the mbuf; the pipeline parsed its Ethernet header, so it is longer
        // than 14 bytes (adj changes nothing otherwise).
        unsafe { sys::rte_pktmbuf_adj(frame.as_ptr(), 14) };
        ring.enqueue(frame)
    }
}

struct Loop {
    io: Queues,
    driver: BurstDriver<Mbuf>,
    /// This worker's ring of packets from the kernel twins.
    kernel_down: Option<Ring>,
    dataplane: Arc<Dataplane>,
    index: usize,
}

impl Loop {
    fn new(setup: WorkerSetup) -> Loop {
        let (kernel_up, kernel_down) = match setup.kernel {
            Some(k) => (k.up, Some(k.down)),
            None => (Vec::new(), None),
        };
        Loop {
            driver: BurstDriver::new(setup.dataplane.clone(), setup.index),
            dataplane: setup.dataplane,
            index: setup.index,
            io: Queues {
                ports: setup.ports,
                queue: setup.queue,
                kernel_up,
            },
            kernel_down,
        }
    }

    fn run(&mut self) {
        let mut clock = MsClock::new(eal::tsc_hz());
        let mut rx: Vec<Mbuf> = Vec::with_capacity(BURST);
        let ports = self.io.ports.clone();
        let dataplane = self.dataplane.clone();
        let stats = dataplane.stats().worker(self.index);
        while RUNNING.load(Ordering::Relaxed) {
            self.driver.begin(clock.at(eal::tsc()));
            let mut busy = false;
            if let Some(down) = &self.kernel_down {
                // At most one burst from the kernel per loop.
                down.dequeue(&mut rx, BURST);
                busy |= !rx.is_empty();
                for m in rx.drain(..) {
                    // The exception thread wrote the twin's port index in the mbuf's port.
                    let twin = m.port();
                    self.driver.rx_from_kernel(&mut self.io, twin, m);
                }
            }
            for (in_port, port) in ports.iter().enumerate() {
                // SAFETY: the port is started and this worker owns queue `queue` on it; rx_burst
                // writes at most BURST mbuf pointers (non-null, now this worker's) into the
                // empty Vec's room, an array of `*mut rte_mbuf` as Mbuf is repr(transparent).
                unsafe {
                    let n = sys::rte_eth_rx_burst(
                        port.id,
                        self.io.queue,
                        rx.as_mut_ptr().cast::<*mut sys::rte_mbuf>(),
                        BURST as u16,
                    );
                    rx.set_len(usize::from(n));
                }
                busy |= !rx.is_empty();
                self.driver.rx_burst(&mut self.io, in_port as u16, &mut rx);
            }
            self.driver.finish(&mut self.io);
            stats.poll(busy);
        }
        // At shutdown: send what is batched, free what is held.
        self.driver.shutdown(&mut self.io);
    }
}

/// The workers' millisecond clock, from the TSC: `tsc / ticks per ms`, with the division done
/// once a millisecond (when a reading leaves the millisecond of the last division) instead of
/// once a loop. The same answer for every reading, a TSC that steps back included.
struct MsClock {
    ticks_per_ms: u64,
    now_ms: u64,
    /// The first tick of `now_ms`: `now_ms * ticks_per_ms`.
    ms_start: u64,
}

impl MsClock {
    fn new(tsc_hz: u64) -> MsClock {
        MsClock {
            ticks_per_ms: (tsc_hz / 1000).max(1),
            now_ms: 0,
            ms_start: 0,
        }
    }

    /// The millisecond the TSC reading `tsc` falls in.
    #[inline]
    fn at(&mut self, tsc: u64) -> u64 {
        // A reading before `ms_start` wraps to a large difference: divided again too.
        if tsc.wrapping_sub(self.ms_start) >= self.ticks_per_ms {
            self.now_ms = tsc / self.ticks_per_ms;
            self.ms_start = self.now_ms * self.ticks_per_ms;
        }
        self.now_ms
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

#[cfg(test)]
mod tests {
    use super::MsClock;
    use proptest::prelude::*;

    #[test]
    fn ms_clock_at_the_edges_of_a_millisecond() {
        for hz in [1_000, 2_000, 3_000, 2_000_000_000] {
            let ticks = hz / 1000;
            let mut clock = MsClock::new(hz);
            let mut readings: Vec<u64> = (1..6u64)
                .flat_map(|k| [k * ticks - 1, k * ticks, k * ticks + 1])
                .collect();
            // Forwards, then back (a TSC reset), then forwards again.
            readings.extend(readings.clone().iter().rev());
            readings.extend([0, 1, ticks, 7 * ticks]);
            for tsc in readings {
                assert_eq!(clock.at(tsc), tsc / ticks, "hz {hz}, tsc {tsc}");
            }
        }
    }

    proptest! {
        /// Whatever the TSC rate and the readings (steps within a millisecond or over many,
        /// forwards or back), the clock says what `tsc / ticks per ms` said.
        #[test]
        fn ms_clock_divides_as_the_loop_did(
            hz in prop_oneof![1u64..10_000, 1u64..10_000_000_000],
            start in 0u64..1 << 62,
            steps in proptest::collection::vec(-40_000_000i64..40_000_000, 1..64),
        ) {
            let mut clock = MsClock::new(hz);
            let ticks = (hz / 1000).max(1);
            let mut tsc = start;
            for step in steps {
                prop_assert_eq!(clock.at(tsc), tsc / ticks);
                tsc = tsc.saturating_add_signed(step);
            }
        }
    }
}
