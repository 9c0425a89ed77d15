//! pipeline-bench: the packet pipeline alone, without I/O: pre-built frames through the burst
//! driver (`dataplane::driver::BurstDriver`, rvsd's worker loop on byte buffers instead of
//! mbufs) on one core, in nanoseconds (or, under callgrind, instructions) per packet.
//!
//! Setup: the real `Dataplane` and `ServiceManager` (no DPDK), an external port
//! 198.51.100.1/24 holding the VIP 198.51.100.1:80 for TCP and UDP (round robin over four real
//! servers 192.0.2.2-5:80 behind the internal port 192.0.2.1/24), neighbours known. Clients are
//! rvs-pktgen's flow space (`frame::client_of`), frames are rvs-pktgen's (`frame::Generator`,
//! 60 bytes without FCS, valid checksums).
//!
//! `--family 6`: the same over IPv6. The ports get testkit's IPv6 addresses too (external
//! 2001:db8:100::2/64, internal 2001:db8:2::1/64), the VIP is [2001:db8:100::1]:80 for TCP and
//! UDP (round robin over 2001:db8:2::2-5:80), clients are `frame::client6_of`'s (in
//! 2001:db8:100::/64, the IPv4 flow space's twin) and frames 80 bytes (`frame::MIN_FRAME6`: the
//! same L4 header and payload behind the 20 bytes longer header) in 128-byte slots. The IPv6
//! connection table is sized a quarter of the IPv4 one (`ipv6_capacity` in dataplane/src/pipeline/shared.rs), so the
//! IPv4 table is made four times as large as the flows need, and left empty.
//!
//! Per point (`--flows N`, `--proto`, `--path`):
//!
//! 1. warm-up: the table is filled with N flows (one packet per flow for UDP; SYN then ACK for
//!    TCP), which leaves them established;
//! 2. `--packets P` frames are built into 64-byte slots of one buffer, outside the timing;
//!    - `established`: data frames (TCP ACK / UDP) of flows drawn uniformly at random from the N;
//!    - `new`: P flows not in the table (indices N..N+P): TCP SYNs / first UDP datagrams, each a
//!      new connection (the table holds N+P slots, so none is refused);
//!    - `reply`: the real server's answer (UDP datagram / TCP ACK) in flows drawn as for
//!      `established`: the warm-up's last frame of each flow after NAT, reflected as a server
//!      answers it (`frame::reflect`: MACs, addresses and ports swapped), kept per flow. It
//!      enters on the internal port and must leave on the external one. The clients are
//!      neighbours on the external link, `ceil(N / 60000)` hosts (`frame::client_of`), as in
//!      the traffic benchmark: the replies' next hops are as many;
//! 3. the measured loop ([`measured`], never inlined so callgrind's `--toggle-collect` can
//!    select it): per 32 frames one poll loop of the driver, as rvsd's worker runs it: the
//!    burst's handles (a pointer to the slot and the length, as the NIC hands over mbuf
//!    pointers), `begin`, `rx_burst` (the burst's connection-table lines prefetched, then each
//!    frame through the pipeline in place and into the TX batch; `--no-prefetch` hands the
//!    frames over one by one with `rx_frame` instead), `finish` (the TX batch handed to a sink
//!    that counts it). Every frame must come out on the internal port (a reply on the external
//!    one), or the run fails.
//!
//! Natively the loop runs `--repeat` times (frames rebuilt between runs, outside the timing) and
//! the best and median ns/packet are reported. The clock does not move, so `finish` ages
//! nothing. `--json` prints one JSON line per point. `--sync-master` measures with connection
//! sync on (see [`SyncDrain`]).

use clap::{Parser, ValueEnum};
use control::model::{Protocol, ServiceKey, Timeouts};
use dataplane::conntrack::ConnTable;
use dataplane::driver::{BurstDriver, FrameBuf, FrameIo, BURST};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig};
use dataplane::service::ServiceManager;
use rvs_benches::frame::{self, Generator, MAX_FLOWS, MIN_FRAME, MIN_FRAME6};
use std::net::{IpAddr, Ipv4Addr};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProtoArg {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FamilyArg {
    #[value(name = "4")]
    V4,
    #[value(name = "6")]
    V6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PathArg {
    /// Packets of flows already in the table.
    Established,
    /// Each packet a new flow (TCP SYN / first UDP datagram).
    New,
    /// The real servers' answers in flows already in the table (in on the internal port,
    /// out on the external one to the client's MAC): the other half of the traffic.
    Reply,
}

#[derive(Parser, Debug, Clone, Copy)]
#[command(
    name = "pipeline-bench",
    about = "The pipeline through its burst driver without I/O, ns per packet"
)]
struct Args {
    /// Flows in the table before the measured packets.
    #[arg(long, default_value_t = 1_000_000)]
    flows: u32,
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    proto: ProtoArg,
    #[arg(long, value_enum, default_value_t = PathArg::Established)]
    path: PathArg,
    /// IP version of the service, clients and frames.
    #[arg(long, value_enum, default_value_t = FamilyArg::V4)]
    family: FamilyArg,
    /// Measured packets per run.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u32,
    /// Measured runs (natively); 1 under callgrind.
    #[arg(long, default_value_t = 5)]
    repeat: u32,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
    /// Hand frames to the driver one by one, without the prefetch of each burst (rvsd always
    /// prefetches): shows what the prefetch is worth.
    #[arg(long)]
    no_prefetch: bool,
    /// Run as connection-sync master (after the warm-up): workers queue connection events,
    /// and a drain thread on another core encodes them into sync messages, as rvsd's sync
    /// thread does (docs/sync.md). Shows what sync costs the worker.
    #[arg(long)]
    sync_master: bool,
}

use testkit::director::EXT_MAC;
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
use testkit::ipv6::{DIP6, EXT6, VIP6};
const VPORT: u16 = 80;
const DESTS: u32 = 4;
/// Bytes per frame slot: IPv4 frames (60 bytes) in 64, IPv6 ones (80) in 128.
const SLOT: usize = 64;
const SLOT6: usize = 128;
const NOW_MS: u64 = 1_000;

/// The dataplane with room for `capacity` connections of `family`.
fn setup(capacity: usize, family: FamilyArg) -> Arc<Dataplane> {
    let v6 = family == FamilyArg::V6;
    let mut ports = rvs_benches::two_arm_ports();
    let conn_capacity = if v6 {
        ports[0].addrs6 = vec![(EXT6, 64)];
        ports[1].addrs6 = vec![(DIP6, 64)];
        // The IPv6 table gets a quarter of conn_capacity (shared.rs, ipv6_capacity).
        capacity.saturating_mul(4)
    } else {
        capacity
    };
    let dp = Dataplane::new(DataplaneConfig {
        ports,
        conn_capacity,
        timeouts: Timeouts::default(),
        workers: 1,
    });
    if v6 {
        assert!(dp.conns6().capacity() >= capacity, "IPv6 table too small");
    }
    let vip: IpAddr = if v6 { VIP6.into() } else { VIP.into() };
    let mut mgr = ServiceManager::new(dp.clone());
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let key = ServiceKey {
            protocol,
            addr: vip,
            port: VPORT,
        };
        rvs_benches::add_rr_service(&mut mgr, key, DESTS, VPORT);
    }
    for d in 0..DESTS {
        if v6 {
            dp.neigh6().learn(1, rvs_benches::rip6(d), PEER_MAC);
        } else {
            dp.neigh().learn(1, rvs_benches::rip(d), PEER_MAC);
        }
    }
    // The service manager must outlive the workers' use of its snapshots: leak it.
    std::mem::forget(mgr);
    dp
}

/// xorshift64*: uniform flow picks without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (((r >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// The buffer every frame of a run lives in, `S` bytes each ([`SLOT`] or [`SLOT6`]), as mbufs'
/// data in their pool. It lives as long as the process.
struct Slab<const S: usize> {
    base: NonNull<u8>,
    slots: usize,
}

impl<const S: usize> Slab<S> {
    fn new(slots: usize) -> Slab<S> {
        let bytes = Box::leak(vec![0u8; slots * S].into_boxed_slice());
        Slab {
            base: NonNull::from(bytes).cast(),
            slots,
        }
    }

    /// Slot `k`, to write a frame into.
    ///
    /// # Safety
    /// No [`SlotFrame`] of slot `k` may be alive while the slice is.
    unsafe fn slot_mut(&mut self, k: usize) -> &mut [u8] {
        assert!(k < self.slots);
        // SAFETY: slot k is inside the slab; the caller rules out other views of it.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(k * S), S) }
    }

    /// The frame of `len` bytes in slot `k`: a handle like an mbuf pointer, what the driver
    /// moves around instead of the bytes.
    ///
    /// # Safety
    /// At most one frame of slot `k` may be alive at a time, and no slice of `slot_mut`.
    #[inline]
    unsafe fn frame(&self, k: usize, len: usize) -> SlotFrame<S> {
        debug_assert!(k < self.slots && len <= S);
        SlotFrame {
            // SAFETY: slot k is inside the slab.
            slot: unsafe { NonNull::new_unchecked(self.base.as_ptr().add(k * S)) },
            len,
        }
    }
}

/// A frame in its slot of the [`Slab`].
struct SlotFrame<const S: usize> {
    slot: NonNull<u8>,
    len: usize,
}

// A frame is the only view of its slot while it lives (`Slab::frame`), and the slab is never
// freed: its views borrow the frame.
impl<const S: usize> FrameBuf for SlotFrame<S> {
    fn data(&self) -> &[u8] {
        // SAFETY: see above; len <= S.
        unsafe { std::slice::from_raw_parts(self.slot.as_ptr(), self.len) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: see above; len <= S.
        unsafe { std::slice::from_raw_parts_mut(self.slot.as_ptr(), self.len) }
    }

    fn data_with_room(&mut self) -> (&mut [u8], usize) {
        // SAFETY: see above.
        let buf = unsafe { std::slice::from_raw_parts_mut(self.slot.as_ptr(), S) };
        (buf, self.len)
    }

    fn set_len(&mut self, len: usize) -> bool {
        let fits = len <= S;
        if fits {
            self.len = len;
        }
        fits
    }
}

/// Counts what is sent per port and lets the frames go (the slab keeps the bytes); allocates
/// nothing.
struct Sink<const S: usize> {
    sent: [u64; 2],
}

impl<const S: usize> Default for Sink<S> {
    fn default() -> Self {
        Sink { sent: [0; 2] }
    }
}

impl<const S: usize> FrameIo for Sink<S> {
    type Frame = SlotFrame<S>;

    fn alloc(&mut self, _port: u16) -> Option<SlotFrame<S>> {
        None
    }

    fn transmit(&mut self, port: u16, batch: &mut Vec<SlotFrame<S>>) {
        if let Some(n) = self.sent.get_mut(usize::from(port)) {
            *n += batch.len() as u64;
            batch.clear();
        }
    }

    fn free(&mut self, _frame: SlotFrame<S>) {}
}

/// Fills the table with flows `0..n` (established), a burst of flows per poll loop, in the
/// first slots of `slab`. With `replies`, each flow's last frame after NAT, reflected as its
/// real server answers it, is appended there (`S` bytes a flow).
fn warm<const S: usize>(
    d: &mut BurstDriver<SlotFrame<S>>,
    io: &mut Sink<S>,
    slab: &mut Slab<S>,
    g: &Generator,
    proto: ProtoArg,
    n: u32,
    mut replies: Option<&mut Vec<u8>>,
) {
    let steps: &[bool] = match proto {
        ProtoArg::Udp => &[false],
        ProtoArg::Tcp => &[true, false],
    };
    let mut k = 0;
    // The slots of this loop's flows' last frames: their replies are kept once it is sent.
    let mut last = Vec::with_capacity(BURST);
    for i in 0..n {
        if (i as usize).is_multiple_of(BURST) {
            d.finish(io);
            keep_replies(slab, &mut last, replies.as_deref_mut());
            d.begin(NOW_MS);
            k = 0;
        }
        for &syn in steps {
            // SAFETY: the frames of earlier loops are gone (sent), this loop's are in other
            // slots.
            let len = g.write(unsafe { slab.slot_mut(k) }, i, syn, 0);
            let a = d.rx_frame(io, 0, unsafe { slab.frame(k, len) });
            assert_eq!(a, Action::Tx(1), "warm-up flow {i} not forwarded");
            k += 1;
        }
        last.push(k - 1);
    }
    d.finish(io);
    keep_replies(slab, &mut last, replies);
}

/// Appends to `replies`, where kept, the sent (NATed) frames of `slab`'s `slots`, each
/// reflected as its real server answers it (`S` bytes a flow, in flow order); empties `slots`.
fn keep_replies<const S: usize>(
    slab: &mut Slab<S>,
    slots: &mut Vec<usize>,
    replies: Option<&mut Vec<u8>>,
) {
    let Some(r) = replies else {
        slots.clear();
        return;
    };
    for k in slots.drain(..) {
        // SAFETY: the loop's frames were handed to the sink (`finish`): none is alive.
        let mut answer = unsafe { slab.slot_mut(k) }.to_vec();
        let reflected = frame::reflect(&mut answer, true);
        assert_eq!(
            reflected,
            Ok(frame::Reflected::Reply),
            "a warm-up flow's reply"
        );
        r.extend_from_slice(&answer);
    }
}

/// Writes the measured frames into the first `args.packets` slots of `slab` (`replies`: the
/// warm-up's, for the reply path).
fn build<const S: usize>(
    slab: &mut Slab<S>,
    g: &Generator,
    args: &Args,
    rng: &mut Rng,
    replies: &[u8],
) {
    for k in 0..args.packets {
        // SAFETY: no frame is alive between runs.
        let slot = unsafe { slab.slot_mut(k as usize) };
        match args.path {
            PathArg::Established => _ = g.write(slot, rng.below(args.flows), false, 0),
            PathArg::New => _ = g.write(slot, args.flows + k, args.proto == ProtoArg::Tcp, 0),
            PathArg::Reply => {
                let at = rng.below(args.flows) as usize * S;
                slot.copy_from_slice(&replies[at..at + S]);
            }
        }
    }
}

/// The measured loop: the frames of `slab`'s first `n` slots (`len` bytes each) through the
/// driver, a burst of `BURST` handed over per poll loop, as the NIC hands over mbufs.
#[inline(never)]
fn measured<const S: usize>(
    d: &mut BurstDriver<SlotFrame<S>>,
    io: &mut Sink<S>,
    slab: &Slab<S>,
    n: usize,
    len: usize,
    port: u16,
    prefetch: bool,
) {
    let mut rx = Vec::with_capacity(BURST);
    for first in (0..n).step_by(BURST) {
        // SAFETY: each slot's frame is made once per run; the frames of earlier loops are gone.
        rx.extend((first..n.min(first + BURST)).map(|k| unsafe { slab.frame(k, len) }));
        d.begin(NOW_MS);
        if prefetch {
            d.rx_burst(io, port, &mut rx);
        } else {
            for f in rx.drain(..) {
                d.rx_frame(io, port, f);
            }
        }
        d.finish(io);
    }
}

/// The core's clock in GHz right now, from a chain of dependent 64-bit multiplies (3 cycles
/// each on current x86 cores): turns ns/packet into cycles/packet, and with callgrind's
/// instruction count into instructions per cycle. (The TSC rate is not the core clock: turbo
/// runs the core faster.) `None` off x86_64.
fn core_ghz() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        const ROUNDS: u64 = 20_000_000;
        let mut x: u64 = 3;
        let t = Instant::now();
        for _ in 0..ROUNDS {
            // SAFETY: register-only arithmetic.
            unsafe {
                std::arch::asm!(
                    "imul {0}, {0}", "imul {0}, {0}", "imul {0}, {0}", "imul {0}, {0}",
                    inout(reg) x,
                    options(nomem, nostack, pure),
                );
            }
        }
        std::hint::black_box(x);
        Some((ROUNDS * 4 * 3) as f64 / t.elapsed().as_nanos() as f64)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

fn main() {
    let args = Args::parse();
    if let Some(c) = args.cpu {
        rvs_benches::pin(c);
    }
    let flows = args.flows.max(1);
    let packets = args.packets.max(1);
    let extra = match args.path {
        PathArg::Established | PathArg::Reply => 0,
        PathArg::New => packets.saturating_mul(args.repeat.max(1)),
    };
    if u64::from(flows) + u64::from(extra) > u64::from(MAX_FLOWS) {
        eprintln!(
            "flows + packets x repeat ({}) past the client space ({MAX_FLOWS})",
            u64::from(flows) + u64::from(extra)
        );
        std::process::exit(2);
    }
    let capacity = (flows + extra) as usize;
    let proto = match args.proto {
        ProtoArg::Udp => frame::Proto::Udp,
        ProtoArg::Tcp => frame::Proto::Tcp,
    };
    let v6 = args.family == FamilyArg::V6;
    let g = if v6 {
        Generator::new(proto, MIN_FRAME6, PEER_MAC, EXT_MAC, VIP6, VPORT)
    } else {
        Generator::new(proto, MIN_FRAME, PEER_MAC, EXT_MAC, VIP, VPORT)
    }
    .expect("generator");
    let dp = setup(capacity, args.family);
    let args = Args {
        flows,
        packets,
        ..args
    };
    let (warm_s, mut ns, drain) = if v6 {
        run::<SLOT6>(&dp, &g, &args)
    } else {
        run::<SLOT>(&dp, &g, &args)
    };
    let sync_msgs = drain.map_or(0, SyncDrain::stop);
    let stats = dp.stats();
    let (queued, overflow) = (
        stats.events(dataplane::stats::Event::SyncQueued),
        stats.events(dataplane::stats::Event::SyncQueueOverflow),
    );
    let ghz = core_ghz();
    ns.sort_by(f64::total_cmp);
    let best = ns[0];
    let median = ns[ns.len() / 2];
    let path = match args.path {
        PathArg::Established => "established",
        PathArg::New => "new",
        PathArg::Reply => "reply",
    };
    let p = match args.proto {
        ProtoArg::Udp => "udp",
        ProtoArg::Tcp => "tcp",
    };
    // The table the flows are in (IPv6: not the IPv4 one, four times as large and empty).
    let (table, conns) = if v6 {
        (ConnTable::footprint6(capacity), dp.conns6().len())
    } else {
        (ConnTable::footprint(capacity), dp.conns().len())
    };
    let table_mib = table as f64 / (1 << 20) as f64;
    if args.json {
        let mut j = serde_json::json!({
            "proto": p, "path": path, "flows": flows, "packets": packets,
            "repeat": ns.len(), "ns_best": best, "ns_median": median,
            "mpps_best": 1e3 / best, "warmup_s": warm_s, "table_mib": table_mib,
            "conns": conns, "prefetch": !args.no_prefetch, "clock_ghz": ghz,
            "sync_master": args.sync_master, "sync_queued": queued,
            "sync_overflow": overflow, "sync_msgs": sync_msgs,
        });
        // IPv4's line as it was before IPv6; IPv6's says so.
        if v6 {
            j["family"] = 6.into();
        }
        println!("{j}");
    } else {
        println!(
            "{}{p} {path} flows={flows} packets={packets} runs={}: best {best:.1} ns/pkt \
             ({:.2} Mpps), median {median:.1} ns/pkt; warm-up {warm_s:.1} s, table {table_mib:.0} MiB",
            if v6 { "ipv6 " } else { "" },
            ns.len(),
            1e3 / best
        );
        if args.sync_master {
            println!(
                "sync master: {queued} events queued, {overflow} lost to a full queue, \
                 {sync_msgs} messages encoded"
            );
        }
    }
}

/// Warm-up, then the measured runs with frames in `S`-byte slots: the warm-up's seconds, each
/// run's ns/packet, and the sync drain when `--sync-master` started one after the warm-up.
/// Exits when a run does not forward every frame.
fn run<const S: usize>(
    dp: &Arc<Dataplane>,
    g: &Generator,
    args: &Args,
) -> (f64, Vec<f64>, Option<SyncDrain>) {
    let (flows, packets) = (args.flows, args.packets);
    let mut d = BurstDriver::new(dp.clone(), 0);
    let mut io = Sink::<S>::default();
    let mut slab = Slab::<S>::new((packets as usize).max(2 * BURST));

    let t0 = Instant::now();
    let reply = args.path == PathArg::Reply;
    let mut replies = Vec::with_capacity(if reply { flows as usize * S } else { 0 });
    let keep = reply.then_some(&mut replies);
    warm(&mut d, &mut io, &mut slab, g, args.proto, flows, keep);
    let warm_s = t0.elapsed().as_secs_f64();
    // Replies enter on the internal port and leave on the external one.
    let (port, want) = if reply {
        (1, [u64::from(packets), 0])
    } else {
        (0, [0, u64::from(packets)])
    };
    let drain = args.sync_master.then(|| SyncDrain::start(dp.clone()));

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ns = Vec::new();
    let mut built = *args;
    for r in 0..args.repeat.max(1) {
        if args.path == PathArg::New {
            built.flows = flows + r * packets;
        }
        build(&mut slab, g, &built, &mut rng, &replies);
        io = Sink::default();
        let t = Instant::now();
        measured(
            &mut d,
            &mut io,
            &slab,
            packets as usize,
            g.len(),
            port,
            !args.no_prefetch,
        );
        let el = t.elapsed().as_nanos() as f64;
        if io.sent != want {
            eprintln!(
                "{:?} of {packets} measured frames sent (ports 0, 1)",
                io.sent
            );
            std::process::exit(1);
        }
        ns.push(el / f64::from(packets));
    }
    (warm_s, ns, drain)
}

/// The sync thread's work in rvsd, on a thread of its own: drains the worker's queue and
/// encodes the events into sync messages (not sent), sleeping 100 us when the queue is empty.
struct SyncDrain {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl SyncDrain {
    fn start(dp: Arc<Dataplane>) -> SyncDrain {
        use std::sync::atomic::{AtomicBool, Ordering};
        dp.sync().set_master(true);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut enc = dataplane::sync::Encoder::new(0, dataplane::sync::codec::DEFAULT_MAXLEN);
            let mut msgs = 0u64;
            loop {
                let done = flag.load(Ordering::Relaxed);
                let n = dp
                    .sync()
                    .drain(4096, |c| msgs += u64::from(enc.push(&c).is_some()));
                if n == 0 {
                    if done {
                        return msgs + u64::from(enc.finish().is_some());
                    }
                    std::thread::sleep(std::time::Duration::from_micros(100));
                }
            }
        });
        SyncDrain { stop, thread }
    }

    /// Stops after the queue is empty; the messages encoded.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
