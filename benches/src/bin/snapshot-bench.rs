//! snapshot-bench: how long a service change takes to reach every worker.
//!
//! N worker threads run the worker loop's service-facing part (`Pipeline::begin_burst`, then
//! optionally a burst of 32 established-flow packets through `Pipeline::process`, then
//! `housekeeping`) on the real `Dataplane` and `ServiceManager`, without DPDK. The main thread
//! plays the control thread: it edits a real server's weight (`Request::EditDest`, which
//! rebuilds and publishes the whole snapshot) many times, and for each update measures
//!
//! - `apply`: `ServiceManager::handle` from call to return (check, rebuild, publish);
//! - `visible`: from the call until the LAST worker runs with the new snapshot, an upper bound of
//!   publish -> visible (it includes building the snapshot);
//! - `after return`: from `handle` returning until the last worker has it (0 when every worker
//!   had it before `handle` returned).
//!
//! Workers record the time they first see a new generation (`Pipeline::snapshot_generation`).
//! `--write-results FILE` replaces this benchmark's own section of FILE (between
//! `<!-- snapshot-bench:begin -->` and `<!-- snapshot-bench:end -->`), leaving the rest alone.

use clap::Parser;
use control::model::{DestSpec, Forward, Protocol, ServiceKey, Timeouts};
use control::proto::{Request, Response};
use dataplane::packet::checksum::checksum;
use dataplane::pipeline::{Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use hdrhistogram::Histogram;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "snapshot-bench",
    about = "service snapshot publish -> worker visibility"
)]
struct Args {
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Snapshot updates to measure.
    #[arg(long, default_value_t = 20_000)]
    updates: usize,
    /// Virtual services in the table (the snapshot holds them all).
    #[arg(long, default_value_t = 1)]
    services: usize,
    /// Real servers per service.
    #[arg(long, default_value_t = 3)]
    dests: usize,
    /// Workers also push a 32-packet burst of established flows through the pipeline per loop.
    #[arg(long)]
    load: bool,
    /// Pause between updates, in microseconds.
    #[arg(long, default_value_t = 200)]
    gap_us: u64,
    /// Pin worker i to CPU i+1 and the updating thread to CPU 0 (as rvsd's lcores are), and
    /// run them at nice -20 when allowed: on a shared machine, other processes then preempt the
    /// spinning workers less often.
    #[arg(long)]
    pin: bool,
    /// With --pin: the workers also run SCHED_FIFO (priority 1), as on a core isolated for
    /// rvsd; the kernel's RT throttling still leaves other tasks 5% of that CPU. Keep runs short.
    #[arg(long)]
    fifo: bool,
    /// Replace this benchmark's section of FILE (e.g. benches/RESULTS.md) with the results.
    #[arg(long)]
    write_results: Option<std::path::PathBuf>,
}

use testkit::director::EXT_MAC;
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const BURST: usize = 32;

fn service_key(i: usize) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        addr: VIP.into(),
        port: 1000 + i as u16,
    }
}

fn dest(i: usize, port: u16, weight: u32) -> DestSpec {
    DestSpec {
        addr: rvs_benches::rip(i as u32).into(),
        port,
        weight,
        forward: Forward::Masq,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

// ---- frames (only for --load) ----

/// A client -> VIP:port TCP frame with `flags`, checksums right.
fn tcp_frame(client: Ipv4Addr, cport: u16, port: u16, flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&cport.to_be_bytes());
    tcp[2..4].copy_from_slice(&port.to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&client.octets());
    pseudo.extend_from_slice(&VIP.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let c = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&client.octets());
    ip.extend_from_slice(&VIP.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&EXT_MAC);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f.resize(60, 0);
    f
}

// ---- the measurement ----

struct Seen {
    generation: AtomicU64,
    /// Nanoseconds since the common epoch when `generation` was first seen.
    at_ns: AtomicU64,
}

/// Pins the calling thread to `cpu` (modulo the CPUs there are) and raises its priority; best
/// effort.
fn pin_to(cpu: usize, n: usize, fifo: bool) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and the syscalls only touch it and this
    // thread's scheduling.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, -20);
        if fifo {
            let p = libc::sched_param { sched_priority: 1 };
            if libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) != 0 {
                eprintln!("SCHED_FIFO refused: {}", std::io::Error::last_os_error());
            }
        }
    }
}

fn worker_loop(
    dp: Arc<Dataplane>,
    index: usize,
    seen: Arc<Vec<Seen>>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    load: bool,
    pin: Option<(usize, bool)>,
) -> u64 {
    if let Some((nproc, fifo)) = pin {
        pin_to(index + 1, nproc, fifo);
    }
    let mut w = Pipeline::new(dp, index);
    // Each worker has its own 32 client flows to service 0, opened with a SYN.
    let client = Ipv4Addr::new(198, 51, 100, 10 + index as u8);
    let port = service_key(0).port;
    let mut templates = Vec::new();
    if load {
        w.begin_burst(1);
        for f in 0..BURST as u16 {
            let mut syn = tcp_frame(client, 10_000 + f, port, 0x02);
            w.process(0, &mut syn);
            templates.push(tcp_frame(client, 10_000 + f, port, 0x10));
        }
    }
    let mut bufs: Vec<Vec<u8>> = templates.clone();
    let mut last = u64::MAX;
    let mut loops = 0u64;
    let slot = &seen[index];
    while !stop.load(Ordering::Relaxed) {
        let now = epoch.elapsed();
        let now_ms = now.as_millis() as u64 + 1;
        w.begin_burst(now_ms);
        let g = w.snapshot_generation();
        if g != last {
            last = g;
            slot.at_ns
                .store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
            slot.generation.store(g, Ordering::Release);
        }
        if load {
            for (b, t) in bufs.iter_mut().zip(&templates) {
                b.copy_from_slice(t);
                std::hint::black_box(w.process(0, b));
            }
        }
        w.housekeeping(now_ms);
        loops += 1;
    }
    loops
}

fn percentiles(h: &Histogram<u64>) -> String {
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
    format!(
        "| {} | {} | {} | {} | {} | {} |",
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.9)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max()),
        us(h.mean() as u64),
    )
}

fn main() {
    let args = Args::parse();
    let workers = args.workers.max(1);
    let services = args.services.max(1);
    let dests = args.dests.max(1);
    let dp = Dataplane::new(DataplaneConfig {
        ports: rvs_benches::two_arm_ports(),
        conn_capacity: 1 << 16,
        timeouts: Timeouts::default(),
        workers,
    });
    for w in 0..workers {
        dp.neigh()
            .learn(0, Ipv4Addr::new(198, 51, 100, 10 + w as u8), PEER_MAC);
    }
    let mut mgr = ServiceManager::new(dp.clone());
    for s in 0..services {
        rvs_benches::add_rr_service(&mut mgr, service_key(s), dests as u32, 80);
    }
    for d in 0..dests {
        dp.neigh().learn(1, rvs_benches::rip(d as u32), PEER_MAC);
    }

    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = args.pin.then_some((nproc, args.fifo));
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Vec<Seen>> = Arc::new(
        (0..workers)
            .map(|_| Seen {
                generation: AtomicU64::new(0),
                at_ns: AtomicU64::new(0),
            })
            .collect(),
    );
    let threads: Vec<_> = (0..workers)
        .map(|i| {
            let (dp, seen, stop) = (dp.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || worker_loop(dp, i, seen, epoch, stop, args.load, pin))
        })
        .collect();
    // Every worker running before the first update.
    let start_gen = dp.snapshot().generation;
    while seen
        .iter()
        .any(|s| s.generation.load(Ordering::Acquire) != start_gen)
    {
        std::hint::spin_loop();
    }

    if args.pin {
        pin_to(0, nproc, false);
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let mut apply = Histogram::<u64>::new(3).expect("histogram");
    let mut visible = Histogram::<u64>::new(3).expect("histogram");
    let mut after = Histogram::<u64>::new(3).expect("histogram");
    let mut timeouts = 0usize;
    let target = service_key(0);
    let run_start = Instant::now();
    for k in 0..args.updates {
        // A little jitter, so updates do not fall into step with the worker loop.
        let gap = args.gap_us + (k as u64 * 7919) % (args.gap_us / 2 + 1);
        let until = Instant::now() + Duration::from_micros(gap);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let t0 = epoch.elapsed().as_nanos() as u64;
        let r = mgr.handle(Request::EditDest {
            service: target,
            dest: dest(0, 80, 1 + (k % 2) as u32),
        });
        let t1 = epoch.elapsed().as_nanos() as u64;
        assert_eq!(r, Response::Ok);
        let want = dp.snapshot().generation;
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut last_seen = 0u64;
        let mut all = true;
        for s in seen.iter() {
            while s.generation.load(Ordering::Acquire) < want {
                if Instant::now() > deadline {
                    all = false;
                    break;
                }
                std::hint::spin_loop();
            }
            last_seen = last_seen.max(s.at_ns.load(Ordering::Relaxed));
        }
        if !all {
            timeouts += 1;
            continue;
        }
        let _ = apply.record((t1 - t0).max(1));
        let _ = visible.record(last_seen.saturating_sub(t0).max(1));
        let _ = after.record(last_seen.saturating_sub(t1));
    }
    let elapsed = run_start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let loops: u64 = threads.into_iter().map(|t| t.join().expect("worker")).sum();

    let cmdline: Vec<String> = std::env::args().collect();
    let cpu = rvs_benches::cpu_model();
    let title = format!(
        "workers={workers} services={services} dests/service={dests} load={} pin={}{}",
        args.load,
        args.pin,
        if args.pin && args.fifo { " fifo" } else { "" }
    );
    let table = format!(
        "{} updates, {timeouts} not seen within 1 s; {:.0} worker loops/s per worker\n\n\
         | µs | p50 | p90 | p99 | p99.9 | max | mean |\n|---|---|---|---|---|---|---|\n\
         | apply (handle) {}\n| visible (call -> last worker) {}\n| after return -> last worker {}\n",
        args.updates,
        loops as f64 / elapsed.as_secs_f64() / workers as f64,
        percentiles(&apply),
        percentiles(&visible),
        percentiles(&after),
    );
    println!("{title}\n{table}");
    println!("machine: nproc {nproc}, {cpu}, load average at start {loadavg}");
    println!("command: {}", cmdline.join(" "));

    if let Some(path) = args.write_results {
        let date = std::process::Command::new("date")
            .arg("-u")
            .arg("+%Y-%m-%d %H:%M UTC")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let entry = format!(
            "### {title}\n\n`{}` — {date}, nproc {nproc}, {cpu}, load average at start \
             {loadavg} (a shared machine)\n\n{table}\n",
            cmdline.join(" ")
        );
        write_section(&path, &entry);
    }
}

/// Adds `entry` to this benchmark's section of `path` (created at the end when missing); an
/// entry with the same title line replaces the old one. Nothing outside the section changes.
fn write_section(path: &std::path::Path, entry: &str) {
    let header = "## Snapshot visibility (snapshot-bench)\n\n\
        How long a service change takes to reach every worker: `ServiceManager::handle` of an \
        `EditDest` (rebuild + publish of the whole snapshot), then until the last worker's \
        `begin_burst` runs with it. No DPDK: worker threads run the loop's service-facing part \
        on the real `Dataplane`. Target (DESIGN.md): < 1 ms.\n\n\
        Reading the tables: `after return` is the publish mechanism itself (an arc-swap store, \
        picked up at the worker's next `begin_burst`); `apply` grows with the table, since every \
        change rebuilds the whole snapshot (compare 1 and 1000 services). The millisecond tails \
        are the operating system on a shared machine, not rvs: without `--pin` other processes \
        deschedule the spinning worker thread for whole time slices; with `--pin --fifo` the \
        kernel's RT throttling (`sched_rt_runtime_us` 950000 of 1000000) stops a spinning \
        SCHED_FIFO thread for 50 ms in every second, which is the ~50 ms maximum. rvsd's workers \
        are lcores that own their CPU, where neither happens.\n\n";
    let title = entry.lines().next().unwrap_or_default();
    rvs_benches::write_results_section(path, "snapshot-bench", |body| {
        // Keep other entries (split on the "### " titles), drop one with this title.
        let mut entries: Vec<String> = Vec::new();
        for chunk in body.unwrap_or_default().split("\n### ") {
            let chunk = chunk.trim_matches('\n');
            let chunk = chunk.strip_prefix("### ").unwrap_or(chunk);
            if chunk.is_empty() || chunk.starts_with("## ") {
                continue;
            }
            let chunk = format!("### {chunk}\n");
            if chunk.lines().next() != Some(title) {
                entries.push(chunk);
            }
        }
        entries.push(entry.trim_end().to_string() + "\n");
        format!("{header}{}", entries.join("\n"))
    })
    .expect("write results");
}
