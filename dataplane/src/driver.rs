//! The burst driver: what a worker does with the frames of one poll loop around
//! [`Pipeline::process_buf`], for any kind of frame buffer. rvsd's DPDK worker runs it on mbufs;
//! the tests, the fuzz targets and pipeline-bench run it on byte buffers ([`ByteFrame`],
//! [`ByteIo`]), so every one of them runs the same caller logic.
//!
//! Per poll loop: [`BurstDriver::begin`] (the clock, the service snapshot), then
//! [`BurstDriver::rx_burst`] with each port's received frames (the connection-table lines of
//! each burst of [`BURST`] are prefetched before its first frame is handled), then
//! [`BurstDriver::finish`]: frames held for ARP are retried, the per-port TX batches
//! transmitted, and the worker's share of the connection table aged.
//!
//! Frames whose next hop has no MAC yet wait in a hold queue ([`HOLD_CAPACITY`] frames, at most
//! [`HOLD_MS`] each) while ARP requests go out ([`ARP_RETRY_MS`] apart per next hop), as a
//! kernel's neighbour queue does, so that the first SYN to a real server is not lost.
//!
//! Later fragments that arrive before their datagram's first fragment has passed (the
//! pipeline's [`Action::AwaitFirstFragment`]) wait the same way in a second queue of their own
//! ([`FRAG_HOLD_CAPACITY`] frames, at most [`FRAG_HOLD_MS`] each): every poll loop offers them
//! to [`Pipeline::retry_fragment`], which finds the decision once the first fragment has passed
//! on any worker (the fragment table is shared), and they go out as their first fragment did.
//! A fragment still waiting after [`FRAG_HOLD_MS`] is dropped as `frag_no_first`; one that
//! finds the queue full as `frag_hold_full`. The kernel reassembles before its lookup and so
//! takes fragments in any order; this gives rvs the same for the reordering seen in practice
//! without reassembling anything.
//!
//! No allocation (the batches and queues are sized at creation), no locks, no syscalls: the
//! [`FrameIo`] decides what allocating and transmitting cost.
//!
//! Accounting: the pipeline counts every frame it is handed (rx) and every drop it decides; the
//! driver counts a frame it cannot hand over (rx and `drop.multi_segment`), every frame sent
//! (tx, per port), every frame it gives up (`drop.tx_full`, `drop.hold_queue_full`,
//! `drop.neigh_unresolved`, `drop.frag_no_first` and `drop.frag_hold_full` for held fragments,
//! `drop.mbuf_alloc`, ...), every ARP request it generates (`arp_requests`) and every frame it
//! queues up to a kernel twin (`to_kernel`, or `drop.kernel_queue_full`). So, at any time,
//! `rx_packets + generated = tx_packets + sum(drop.*) + to_kernel + held()`, where `generated`
//! is the frames rvs built or took from the kernel ([`crate::stats::Stats::generated`]: ARP
//! requests, ICMP errors, TCP resets, `from_kernel`) and [`BurstDriver::held`] the frames in
//! both hold queues. Only [`BurstDriver::shutdown`] frees frames uncounted.
//!
//! The kernel exception path (docs/exception-path.md): a frame the pipeline sends up
//! ([`Action::ToKernel`]) goes to [`FrameIo::to_kernel`], which strips its Ethernet header and
//! queues it for the exception thread; a packet the kernel sent comes back through
//! [`BurstDriver::rx_from_kernel`], routed and sent like any frame of the loop.
//!
//! ```
//! use control::model::Timeouts;
//! use dataplane::driver::{BurstDriver, ByteFrame, ByteIo};
//! use dataplane::pipeline::{Dataplane, DataplaneConfig};
//! use std::net::Ipv4Addr;
//! use testkit::director::two_arm_ports;
//!
//! // Port 0 "ext" 198.51.100.1/24, port 1 "int" 192.0.2.1/24.
//! let dp = Dataplane::new(DataplaneConfig {
//!     ports: two_arm_ports(None, 1500),
//!     conn_capacity: 1024,
//!     timeouts: Timeouts::default(),
//!     workers: 1,
//! });
//! let mut driver = BurstDriver::new(dp.clone(), 0);
//! let mut io = ByteIo::new(2048);
//!
//! // A client asks for 198.51.100.1 on ext.
//! let client = [2, 0, 0, 0, 0, 0x10];
//! let (cip, ext_ip) = (Ipv4Addr::new(198, 51, 100, 10), Ipv4Addr::new(198, 51, 100, 1));
//! let who_has = testkit::eth([0xff; 6], client, 0x0806, &testkit::arp(1, client, cip, [0; 6], ext_ip));
//!
//! // One poll loop: each port's burst (a frame on ext, nothing on int), then the loop's end.
//! driver.begin(1_000);
//! driver.rx_burst(&mut io, 0, &mut vec![ByteFrame::with_room(&who_has, 2048)]);
//! driver.rx_burst(&mut io, 1, &mut Vec::new());
//! driver.finish(&mut io);
//!
//! // The answer went out on ext, to the client.
//! let reply = io.sent_on(0)[0].bytes();
//! assert_eq!(&reply[..6], &client[..]);
//! let s = dp.stats();
//! assert_eq!((s.rx_packets(), s.tx_packets(), driver.held()), (1, 1, 0));
//! ```
//!
//! Past 600 lines with its docs: the driver, its hold queues and its two I/O traits are one
//! mechanism; the tests are in driver/tests.rs.

use crate::pipeline::{
    Action, Dataplane, Pipeline, GARP_COUNT, GARP_INTERVAL_MS, MAX_VIRTUAL_ADDRS, PREFETCH_BURST,
};
use crate::stats::{DropReason, Event};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Frames per received burst, as DESIGN.md says, and per prefetch.
pub const BURST: usize = PREFETCH_BURST;
/// Frames waiting for ARP resolution per worker.
pub const HOLD_CAPACITY: usize = 64;
/// Unsolicited neighbour advertisements worker 0 sends after a change, at most.
pub const MAX_NA_PER_CHANGE: usize = 256;
/// How long a frame waits for its next hop before it is dropped.
pub const HOLD_MS: u64 = 1000;
/// Gap between ARP requests for the same next hop.
pub const ARP_RETRY_MS: u64 = 200;
/// Later fragments waiting for their first fragment, per worker.
pub const FRAG_HOLD_CAPACITY: usize = 64;
/// How long a later fragment waits for its first fragment's decision before it is dropped
/// (`frag_no_first`). A sender puts a datagram's fragments on the wire back to back, so a
/// first fragment overtaken on the way is microseconds to milliseconds behind; half a second
/// covers that a hundred times over, while a fragment whose first is lost for good (or a
/// flood of such fragments) gives its buffer back four times sooner than the fragment table
/// forgets a decision ([`crate::frag::FRAG_TIMEOUT_MS`]), which a held fragment never needs.
pub const FRAG_HOLD_MS: u64 = 500;

/// A frame buffer the driver can hand to the pipeline: an mbuf in rvsd, [`ByteFrame`]
/// elsewhere. Freeing is the [`FrameIo`]'s job, not `Drop`'s.
pub trait FrameBuf {
    /// The frame's bytes.
    fn data(&self) -> &[u8];
    /// The frame's bytes, to rewrite in place.
    fn data_mut(&mut self) -> &mut [u8];
    /// The frame's bytes followed by the room behind them in the buffer, and the frame's length:
    /// `(buf, len)` with `buf[..len]` the frame.
    fn data_with_room(&mut self) -> (&mut [u8], usize);
    /// Sets the frame's length, within its bytes and room; false if the buffer cannot hold it.
    fn set_len(&mut self, len: usize) -> bool;
    /// Whether the frame is all in [`FrameBuf::data`] (a chained mbuf is not).
    fn is_contiguous(&self) -> bool {
        true
    }
}

/// Where the driver gets new frames and sends frames: a port's mempool and TX queue in rvsd.
pub trait FrameIo {
    type Frame: FrameBuf;
    /// An empty frame (length 0, its whole buffer room) to send on `port`, if one is free.
    fn alloc(&mut self, port: u16) -> Option<Self::Frame>;
    /// Transmits frames from the front of `batch` on `port`, removing those it took; what it
    /// leaves was not sent (the driver frees and counts them).
    fn transmit(&mut self, port: u16, batch: &mut Vec<Self::Frame>);
    /// Gives a frame back.
    fn free(&mut self, frame: Self::Frame);
    /// Strips the frame's Ethernet header and queues the IP packet for the kernel twin of
    /// `port`, without blocking; gives the frame back if it cannot (queue full, no twin). An
    /// I/O without an exception path gives every frame back: the pipeline sends nothing up
    /// unless the dataplane was built with twins (`Dataplane::with_kernel_path`).
    fn to_kernel(&mut self, port: u16, frame: Self::Frame) -> Result<(), Self::Frame> {
        let _ = port;
        Err(frame)
    }
}

/// A frame waiting for something (`W`): its next hop's MAC, or its first fragment's decision.
struct Held<F, W> {
    frame: F,
    waits_for: W,
    since_ms: u64,
}

/// What a frame in the ARP hold waits for: the MAC of `next_hop` on `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NextHop {
    port: u16,
    next_hop: IpAddr,
}

/// A bounded queue of frames that wait for something, each at most `max_wait_ms`; sized at
/// creation, never grown. The driver has two: frames waiting for their next hop's MAC (the
/// ARP hold) and later fragments waiting for their first fragment's decision (the fragment
/// hold), each with its own room, so that a flood of one kind never takes the other's.
struct HoldQueue<F, W> {
    held: VecDeque<Held<F, W>>,
    capacity: usize,
    max_wait_ms: u64,
}

/// Whether a held frame has waited longer than its queue's `max_wait_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    InTime,
    Overdue,
}

impl<F, W: Copy> HoldQueue<F, W> {
    fn new(capacity: usize, max_wait_ms: u64) -> Self {
        HoldQueue {
            held: VecDeque::with_capacity(capacity),
            capacity,
            max_wait_ms,
        }
    }

    fn len(&self) -> usize {
        self.held.len()
    }

    fn frames(&self) -> impl Iterator<Item = &F> {
        self.held.iter().map(|h| &h.frame)
    }

    /// Queues `frame` at `now_ms`; gives it back if the queue is full.
    fn push(&mut self, frame: F, waits_for: W, now_ms: u64) -> Result<(), F> {
        if self.held.len() >= self.capacity {
            return Err(frame);
        }
        self.held.push_back(Held {
            frame,
            waits_for,
            since_ms: now_ms,
        });
        Ok(())
    }

    /// Offers every held frame, oldest first, to `step`, saying whether it has waited too
    /// long; a frame `step` gives back stays, in order. No allocation.
    fn retry(&mut self, now_ms: u64, mut step: impl FnMut(F, W, Waited) -> Option<F>) {
        for _ in 0..self.held.len() {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            let waited = if now_ms.saturating_sub(h.since_ms) > self.max_wait_ms {
                Waited::Overdue
            } else {
                Waited::InTime
            };
            if let Some(frame) = step(h.frame, h.waits_for, waited) {
                self.held.push_back(Held { frame, ..h });
            }
        }
    }

    fn waits_for(&self) -> impl Iterator<Item = W> + '_ {
        self.held.iter().map(|h| h.waits_for)
    }

    fn drain(&mut self) -> impl Iterator<Item = F> + '_ {
        self.held.drain(..).map(|h| h.frame)
    }
}

/// The last ARP request for a next hop that frames are held for.
struct ArpSent {
    port: u16,
    next_hop: IpAddr,
    at_ms: u64,
}

/// Gratuitous ARPs still to send for an address that became held.
#[derive(Debug, Clone, Copy)]
struct Garp {
    port: u16,
    /// IPv4: gratuitous ARPs; IPv6: unsolicited neighbour advertisements.
    addr: IpAddr,
    left: u32,
    due_ms: u64,
}

/// One worker's pipeline with its TX batches and hold queue. See the module documentation.
pub struct BurstDriver<F> {
    pipeline: Pipeline,
    /// Worker 0 announces the addresses that become held ([`GARP_COUNT`] gratuitous ARPs
    /// each): the generation of the held addresses it last looked at; None on other workers.
    garp_seen: Option<u64>,
    garps: Vec<Garp>,
    /// Worker 0 announces its IPv6 addresses and VIPs (one unsolicited neighbour advertisement
    /// each) at start and whenever the service snapshot changes: the snapshot generation it
    /// last announced (`u64::MAX` before the first); None on other workers.
    na_seen: Option<u64>,
    /// The addresses of the announcement under way (room kept: no allocation on the worker).
    na_list: Vec<(u16, Ipv6Addr)>,
    now_ms: u64,
    /// One TX batch per port, sent in `finish` or when full.
    tx: Vec<Vec<F>>,
    /// Frames waiting for their next hop's MAC.
    arp_hold: HoldQueue<F, NextHop>,
    /// Later fragments waiting for their first fragment's decision.
    frag_hold: HoldQueue<F, ()>,
    arp_sent: Vec<ArpSent>,
}

impl<F> std::fmt::Debug for BurstDriver<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurstDriver")
            .field("pipeline", &self.pipeline)
            .field("arp_hold", &self.arp_hold.len())
            .field("frag_hold", &self.frag_hold.len())
            .finish()
    }
}

impl<F: FrameBuf> BurstDriver<F> {
    /// The driver of worker `index` (see [`Pipeline::new`]).
    pub fn new(dp: Arc<Dataplane>, index: usize) -> BurstDriver<F> {
        let ports = dp.ports().len();
        // Room for a burst from every port, one generated frame per received one, and every
        // held frame released at once: a batch is only sent early if something is amiss.
        let tx_cap = BURST * (ports + 1) + HOLD_CAPACITY + FRAG_HOLD_CAPACITY;
        BurstDriver {
            pipeline: Pipeline::new(dp, index),
            garp_seen: (index == 0).then_some(0),
            garps: Vec::with_capacity(if index == 0 { MAX_VIRTUAL_ADDRS } else { 0 }),
            na_seen: (index == 0).then_some(u64::MAX),
            na_list: Vec::with_capacity(if index == 0 { MAX_NA_PER_CHANGE } else { 0 }),
            now_ms: 0,
            tx: (0..ports).map(|_| Vec::with_capacity(tx_cap)).collect(),
            arp_hold: HoldQueue::new(HOLD_CAPACITY, HOLD_MS),
            frag_hold: HoldQueue::new(FRAG_HOLD_CAPACITY, FRAG_HOLD_MS),
            arp_sent: Vec::with_capacity(HOLD_CAPACITY),
        }
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Frames held: waiting for their next hop's MAC or for their first fragment's decision.
    pub fn held(&self) -> usize {
        self.arp_hold.len() + self.frag_hold.len()
    }

    /// Later fragments waiting for their first fragment's decision.
    pub fn held_fragments(&self) -> usize {
        self.frag_hold.len()
    }

    /// The frames waiting for their next hop's MAC, oldest first.
    pub fn held_frames(&self) -> impl Iterator<Item = &F> {
        self.arp_hold.frames()
    }

    /// Starts a poll loop at `now_ms` (see [`Pipeline::begin_burst`]).
    pub fn begin(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.pipeline.begin_burst(now_ms);
    }

    /// Handles the frames received on `in_port` (all of `burst`, which is left empty),
    /// [`BURST`] at a time: the connection-table lines of a burst are prefetched, then each
    /// frame goes through the pipeline and on to a TX batch, the hold queue or back to `io`.
    pub fn rx_burst<Io: FrameIo<Frame = F>>(
        &mut self,
        io: &mut Io,
        in_port: u16,
        burst: &mut Vec<F>,
    ) {
        while !burst.is_empty() {
            let n = burst.len().min(BURST);
            self.prefetch(burst.get(..n).unwrap_or_default());
            for (i, frame) in burst.drain(..n).enumerate() {
                self.pipeline.use_prefetched(i);
                self.rx_frame(io, in_port, frame);
            }
        }
    }

    fn prefetch(&mut self, burst: &[F]) {
        self.pipeline
            .prefetch_burst(burst.iter().map(FrameBuf::data));
    }

    /// [`BurstDriver::rx_burst`] of one frame without the prefetch; returns what the pipeline
    /// decided (tests check it).
    #[inline]
    pub fn rx_frame<Io: FrameIo<Frame = F>>(
        &mut self,
        io: &mut Io,
        in_port: u16,
        mut frame: F,
    ) -> Action {
        if !frame.is_contiguous() {
            self.pipeline.count_rx(in_port);
            self.pipeline.count_drop(DropReason::MultiSegment);
            io.free(frame);
            return Action::Drop;
        }
        let (buf, len) = frame.data_with_room();
        let action = self.pipeline.process_buf(in_port, buf, len);
        self.dispatch(io, frame, action);
        action
    }

    /// Does what the pipeline decided with `frame`: a forwarded frame joins its port's TX
    /// batch here, inlined; the rest, rarer, out of line.
    #[inline]
    fn dispatch<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io, frame: F, action: Action) {
        match action {
            Action::Tx(port) => self.queue_tx(io, port, frame),
            _ => self.dispatch_other(io, frame, action),
        }
    }

    /// [`BurstDriver::dispatch`] of any action but `Tx` (which it takes too, so that the match
    /// stays whole without a panic).
    #[inline(never)]
    fn dispatch_other<Io: FrameIo<Frame = F>>(
        &mut self,
        io: &mut Io,
        mut frame: F,
        action: Action,
    ) {
        match action {
            Action::Tx(port) => self.queue_tx(io, port, frame),
            Action::Reply { port, len } => {
                if frame.set_len(len) {
                    self.queue_tx(io, port, frame);
                } else {
                    self.pipeline.count_drop(DropReason::Malformed);
                    io.free(frame);
                }
            }
            Action::Hold { port, next_hop } => self.hold(io, frame, port, next_hop),
            Action::AwaitFirstFragment => self.hold_fragment(io, frame),
            Action::ToKernel { port } => match io.to_kernel(port, frame) {
                Ok(()) => self.pipeline.count_event(Event::ToKernel),
                Err(frame) => {
                    self.pipeline.count_drop(DropReason::KernelQueueFull);
                    io.free(frame);
                }
            },
            Action::Drop => io.free(frame),
        }
    }

    /// Routes an IPv4 or IPv6 packet the kernel sent through the twin of port `twin`: `frame`
    /// holds room for an Ethernet header, then the packet ([`Pipeline::route_from_kernel`]); it
    /// goes out in this loop's TX batches, or waits for ARP or NDP. Returns what the pipeline
    /// decided.
    pub fn rx_from_kernel<Io: FrameIo<Frame = F>>(
        &mut self,
        io: &mut Io,
        twin: u16,
        mut frame: F,
    ) -> Action {
        let action = self.pipeline.route_from_kernel(twin, frame.data_mut());
        self.dispatch(io, frame, action);
        action
    }

    /// Ends a poll loop: retries the held fragments (sent once their first fragment's decision
    /// is recorded, dropped after [`FRAG_HOLD_MS`]) and the frames held for ARP (sent once
    /// their next hop is known, dropped after [`HOLD_MS`]), transmits every TX batch, ages the
    /// connection table.
    pub fn finish<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io) {
        if self.frag_hold.len() > 0 {
            self.retry_fragments(io);
        }
        if self.arp_hold.len() > 0 {
            self.retry_held(io);
        }
        self.announce(io);
        self.flush(io);
        self.pipeline.housekeeping(self.now_ms);
    }

    /// On worker 0: gratuitous ARPs (IPv6: unsolicited neighbour advertisements) for the
    /// addresses that became held or were held again (a VRRP instance's on becoming MASTER, or
    /// on meeting another master), [`GARP_COUNT`] each, [`GARP_INTERVAL_MS`] apart, while still
    /// held.
    /// A generation compare per loop when nothing changes.
    fn announce<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io) {
        self.announce6(io);
        let Some(seen) = self.garp_seen else {
            return;
        };
        let owned = self.pipeline.owned();
        if owned.generation != seen {
            for a in owned.announce.iter().filter(|a| a.since > seen) {
                let fresh = Garp {
                    port: a.port,
                    addr: a.addr,
                    left: GARP_COUNT,
                    due_ms: self.now_ms,
                };
                // Announced again while its announcement runs: it starts over.
                let room = self.garps.len() < self.garps.capacity();
                match self
                    .garps
                    .iter_mut()
                    .find(|g| g.port == a.port && g.addr == a.addr)
                {
                    Some(g) => *g = fresh,
                    None if room => self.garps.push(fresh),
                    None => {}
                }
            }
            // Released meanwhile: no more announcements of it.
            self.garps.retain(|g| owned.owns(g.port, g.addr));
            self.garp_seen = Some(owned.generation);
        }
        if self.garps.is_empty() {
            return;
        }
        let now = self.now_ms;
        let mut garps = std::mem::take(&mut self.garps);
        for g in garps.iter_mut().filter(|g| g.due_ms <= now) {
            g.left -= 1;
            g.due_ms = now + GARP_INTERVAL_MS;
            self.send_garp(io, g.port, g.addr);
        }
        garps.retain(|g| g.left > 0);
        self.garps = garps;
    }

    /// On worker 0: an unsolicited neighbour advertisement (RFC 4861 7.2.6) for each IPv6
    /// address of the ports and each IPv6 VIP, at start and when a snapshot change changes
    /// that list (at most [`MAX_NA_PER_CHANGE`]), so that neighbours whose cache holds an old
    /// MAC (another director's) move to ours at once.
    fn announce6<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io) {
        let Some(seen) = self.na_seen else {
            return;
        };
        let generation = self.pipeline.snapshot_generation();
        if generation == seen {
            return;
        }
        self.na_seen = Some(generation);
        // Only when the addresses changed (not at every weight edit): another director that
        // announced the same VIP is not fought over at each change of ours.
        let same = self
            .pipeline
            .ipv6_announcements()
            .take(MAX_NA_PER_CHANGE)
            .eq(self.na_list.iter().copied());
        if same && seen != u64::MAX {
            return;
        }
        let mut list = std::mem::take(&mut self.na_list);
        list.clear();
        list.extend(self.pipeline.ipv6_announcements().take(MAX_NA_PER_CHANGE));
        for &(port, addr) in &list {
            self.send_generated(io, port, Event::UnsolicitedNa, |p, buf| {
                p.unsolicited_na(port, addr, buf)
            });
        }
        self.na_list = list;
    }

    /// Builds a frame with `build` (its length, 0 if it could not) and sends it on `port`,
    /// counted as the generated frame `ev`.
    fn send_generated<Io: FrameIo<Frame = F>>(
        &mut self,
        io: &mut Io,
        port: u16,
        ev: Event,
        build: impl FnOnce(&Pipeline, &mut [u8]) -> usize,
    ) {
        // A generated frame: counted here, then sent or dropped as counted.
        self.pipeline.count_event(ev);
        if usize::from(port) >= self.tx.len() {
            self.pipeline.count_drop(DropReason::NoRoute);
            return;
        }
        let Some(mut f) = io.alloc(port) else {
            self.pipeline.count_drop(DropReason::MbufAlloc);
            return;
        };
        let (buf, _) = f.data_with_room();
        let n = build(&self.pipeline, buf);
        if n == 0 || !f.set_len(n) {
            self.pipeline.count_drop(DropReason::MbufAlloc);
            io.free(f);
            return;
        }
        self.queue_tx(io, port, f);
    }

    fn send_garp<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io, port: u16, addr: IpAddr) {
        let ev = match addr {
            IpAddr::V4(_) => Event::GratuitousArp,
            IpAddr::V6(_) => Event::UnsolicitedNa,
        };
        self.send_generated(io, port, ev, |p, buf| p.announcement(port, addr, buf));
    }

    /// At shutdown: transmits what is batched and frees what is held (uncounted).
    pub fn shutdown<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io) {
        self.flush(io);
        for frame in self.arp_hold.drain().chain(self.frag_hold.drain()) {
            io.free(frame);
        }
        self.arp_sent.clear();
    }

    #[inline]
    fn queue_tx<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io, port: u16, frame: F) {
        let Some(batch) = self.tx.get_mut(usize::from(port)) else {
            self.pipeline.count_drop(DropReason::NoRoute);
            io.free(frame);
            return;
        };
        if batch.len() == batch.capacity() {
            transmit(&self.pipeline, io, port, batch);
        }
        batch.push(frame);
    }

    fn hold<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io, frame: F, port: u16, next_hop: IpAddr) {
        if let Err(frame) = self
            .arp_hold
            .push(frame, NextHop { port, next_hop }, self.now_ms)
        {
            self.pipeline.count_drop(DropReason::HoldQueueFull);
            io.free(frame);
            return;
        }
        self.request_neighbour(io, port, next_hop);
    }

    /// Holds a later fragment that came before its first fragment's decision.
    fn hold_fragment<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io, frame: F) {
        match self.frag_hold.push(frame, (), self.now_ms) {
            Ok(()) => self.pipeline.count_event(Event::FragHeld),
            Err(frame) => {
                self.pipeline.count_drop(DropReason::FragHoldFull);
                io.free(frame);
            }
        }
    }

    /// Offers every held fragment to the pipeline again: the decision its first fragment
    /// recorded meanwhile (on any worker) sends it on; one that has waited more than
    /// [`FRAG_HOLD_MS`] without is dropped as `frag_no_first`.
    fn retry_fragments<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io) {
        // Taken out for the walk (no allocation), so that the step may use the rest of self.
        let mut hold = std::mem::replace(&mut self.frag_hold, HoldQueue::new(0, 0));
        hold.retry(self.now_ms, |mut frame, (), waited| {
            match (self.pipeline.retry_fragment(frame.data_mut()), waited) {
                (Action::AwaitFirstFragment, Waited::InTime) => return Some(frame),
                (Action::AwaitFirstFragment, Waited::Overdue) => {
                    self.pipeline.count_drop(DropReason::FragNoFirst);
                    io.free(frame);
                }
                (action, _) => self.dispatch(io, frame, action),
            }
            None
        });
        self.frag_hold = hold;
    }

    /// Sends an ARP request (a neighbour solicitation) for `next_hop` unless one went out less than [`ARP_RETRY_MS`] ago.
    fn request_neighbour<Io: FrameIo<Frame = F>>(
        &mut self,
        io: &mut Io,
        port: u16,
        next_hop: IpAddr,
    ) {
        let now = self.now_ms;
        if let Some(sent) = self
            .arp_sent
            .iter_mut()
            .find(|s| s.port == port && s.next_hop == next_hop)
        {
            if now.saturating_sub(sent.at_ms) < ARP_RETRY_MS {
                return;
            }
            sent.at_ms = now;
        } else {
            self.arp_sent.push(ArpSent {
                port,
                next_hop,
                at_ms: now,
            });
        }
        let ev = match next_hop {
            IpAddr::V4(_) => Event::ArpRequests,
            IpAddr::V6(_) => Event::NeighSolicitations,
        };
        self.send_generated(io, port, ev, |p, buf| {
            p.neighbour_request(port, next_hop, buf)
        });
    }

    /// Sends the held frames whose next hop is known now, drops those that waited more than
    /// [`HOLD_MS`] (`neigh_unresolved`), asks again for the rest.
    fn retry_held<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io) {
        // Taken out for the walk (no allocation), so that the step may use the rest of self.
        let mut hold = std::mem::replace(&mut self.arp_hold, HoldQueue::new(0, 0));
        hold.retry(
            self.now_ms,
            |mut frame, NextHop { port, next_hop }, waited| {
                if self.pipeline.fill_l2(port, next_hop, frame.data_mut()) {
                    self.queue_tx(io, port, frame);
                } else if waited == Waited::Overdue {
                    self.pipeline.count_drop(DropReason::NeighUnresolved);
                    io.free(frame);
                } else {
                    return Some(frame);
                }
                None
            },
        );
        // Ask again (at most every ARP_RETRY_MS) for those still waiting.
        for NextHop { port, next_hop } in hold.waits_for() {
            self.request_neighbour(io, port, next_hop);
        }
        self.arp_hold = hold;
        let hold = &self.arp_hold;
        self.arp_sent.retain(|s| {
            hold.waits_for()
                .any(|w| w.port == s.port && w.next_hop == s.next_hop)
        });
    }

    fn flush<Io: FrameIo<Frame = F>>(&mut self, io: &mut Io) {
        for (port, batch) in self.tx.iter_mut().enumerate() {
            if !batch.is_empty() {
                transmit(&self.pipeline, io, port as u16, batch);
            }
        }
    }
}

/// Transmits `batch` on `port` and empties it: what `io` did not take is freed as `tx_full`.
fn transmit<Io: FrameIo>(pipeline: &Pipeline, io: &mut Io, port: u16, batch: &mut Vec<Io::Frame>) {
    let queued = batch.len();
    io.transmit(port, batch);
    let sent = queued.saturating_sub(batch.len());
    pipeline.count_tx(port, sent as u64);
    for frame in batch.drain(..) {
        pipeline.count_drop(DropReason::TxFull);
        io.free(frame);
    }
}

/// A frame in a byte buffer: `buf[..len]` is the frame, the rest of `buf` room it may grow into
/// (an ICMP error built in its place). For tests, fuzzing and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteFrame {
    buf: Vec<u8>,
    len: usize,
}

impl ByteFrame {
    /// The frame `buf[..len]` (`len` cut to the buffer), the rest of `buf` its room.
    pub fn new(buf: Vec<u8>, len: usize) -> ByteFrame {
        let len = len.min(buf.len());
        ByteFrame { buf, len }
    }

    /// A copy of `frame` in a zeroed buffer of `size` bytes (at least the frame's length).
    pub fn with_room(frame: &[u8], size: usize) -> ByteFrame {
        let mut buf = frame.to_vec();
        buf.resize(size.max(frame.len()), 0);
        ByteFrame::new(buf, frame.len())
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&self.buf)
    }

    /// The whole buffer (frame and room), to write a new frame into; see [`ByteFrame::set_len`].
    pub fn buf_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl FrameBuf for ByteFrame {
    fn data(&self) -> &[u8] {
        self.bytes()
    }

    fn data_mut(&mut self) -> &mut [u8] {
        let len = self.len.min(self.buf.len());
        self.buf.split_at_mut(len).0
    }

    fn data_with_room(&mut self) -> (&mut [u8], usize) {
        (&mut self.buf, self.len)
    }

    fn set_len(&mut self, len: usize) -> bool {
        let fits = len <= self.buf.len();
        if fits {
            self.len = len;
        }
        fits
    }
}

/// A [`FrameIo`] over [`ByteFrame`]s: keeps the frames transmitted on each port, in order;
/// allocates zeroed frames of `room` bytes.
#[derive(Debug)]
pub struct ByteIo {
    /// The frames transmitted so far on each port (take them out as they are checked).
    pub sent: Vec<Vec<ByteFrame>>,
    /// The buffer size of an allocated frame; 0: allocation fails.
    pub room: usize,
    /// At most this many frames taken per transmit call (as a full TX ring).
    pub tx_limit: usize,
    /// The packets queued up to a kernel twin so far: the twin's port and the IP packet (its
    /// Ethernet header stripped).
    pub kernel: Vec<(u16, ByteFrame)>,
    /// At most this many packets taken by the kernel queue (as a full ring).
    pub kernel_limit: usize,
}

impl ByteIo {
    pub fn new(room: usize) -> ByteIo {
        ByteIo {
            sent: Vec::new(),
            room,
            tx_limit: usize::MAX,
            kernel: Vec::new(),
            kernel_limit: usize::MAX,
        }
    }

    /// The frames transmitted on `port` so far.
    pub fn sent_on(&self, port: u16) -> &[ByteFrame] {
        self.sent.get(usize::from(port)).map_or(&[], |s| s)
    }

    /// Forgets the frames transmitted so far.
    pub fn clear(&mut self) {
        self.sent.iter_mut().for_each(Vec::clear);
    }
}

impl FrameIo for ByteIo {
    type Frame = ByteFrame;

    fn alloc(&mut self, _port: u16) -> Option<ByteFrame> {
        (self.room > 0).then(|| ByteFrame::new(vec![0; self.room], 0))
    }

    fn transmit(&mut self, port: u16, batch: &mut Vec<ByteFrame>) {
        let port = usize::from(port);
        if self.sent.len() <= port {
            self.sent.resize_with(port + 1, Vec::new);
        }
        let Some(sent) = self.sent.get_mut(port) else {
            return;
        };
        if batch.len() <= self.tx_limit {
            sent.append(batch);
        } else {
            sent.extend(batch.drain(..self.tx_limit));
        }
    }

    fn free(&mut self, _frame: ByteFrame) {}

    fn to_kernel(&mut self, port: u16, frame: ByteFrame) -> Result<(), ByteFrame> {
        if self.kernel.len() >= self.kernel_limit {
            return Err(frame);
        }
        let packet = frame
            .bytes()
            .get(crate::packet::eth::HDR_LEN..)
            .unwrap_or(&[]);
        self.kernel
            .push((port, ByteFrame::with_room(packet, packet.len())));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
