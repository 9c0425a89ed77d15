//! sched-bench: nanoseconds per scheduler pick, and Maglev's remapping on a change.
//!
//! `sched-bench` (default mode) builds each scheduler (rr, wrr, lc, wlc, sed, nq, sh, dh, mh)
//! for 2, 16 and 256 real servers exactly as a snapshot does (`sched::build`), gives every
//! server a few live connections in a real `ConnTable` (so lc/wlc/sed/nq read real counters and
//! the threshold check runs), and times `Scheduler::pick` over 4096 precomputed client flows,
//! one thread, no DPDK. Each figure is the median of `--rounds` timed runs of at least
//! `--min-ms` each. Two persistence rows time a persistent rr service's pick through the
//! template table (`Persist::pick`): a template hit, and a miss that schedules and writes one.
//!
//! `sched-bench --maglev-remap` builds the 65537-slot Maglev table for N = 2..10 equal-weight
//! servers and reports the fraction of slots (= of clients, which hash uniformly to slots)
//! whose server changes when one server is removed (averaged over which one) or one is added.
//!
//! The default mode prints both. `--write-results FILE` replaces this benchmark's own section
//! of FILE (between
//! `<!-- sched-bench:begin -->` and `<!-- sched-bench:end -->`), leaving the rest alone.

use clap::Parser;
use control::model::{SchedFlags, SchedulerKind, ServiceSpec, Timeouts};
use dataplane::conntrack::ConnTable;
use dataplane::persist::{Persist, Quiesced};
use dataplane::sched::{self, mh, Dests, Flow, SchedState};
use dataplane::service::{Dest, Service};
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::sched::{conn_on, real_servers, service_with, spread_flow};

#[derive(Parser, Debug)]
#[command(
    name = "sched-bench",
    about = "ns per scheduler pick; Maglev remap fractions"
)]
struct Args {
    /// Report Maglev's remapped fraction for N = 2..10 instead of timing picks.
    #[arg(long)]
    maglev_remap: bool,
    /// Timed runs per figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Minimum length of one timed run, in milliseconds.
    #[arg(long, default_value_t = 200)]
    min_ms: u64,
    /// Replace this benchmark's section of FILE (e.g. benches/RESULTS.md) with the results.
    #[arg(long)]
    write_results: Option<String>,
}

const SIZES: [usize; 3] = [2, 16, 256];
const FLOWS: usize = 4096;

fn spec(kind: SchedulerKind, persistence: Option<u32>) -> ServiceSpec {
    ServiceSpec {
        persistence,
        ..service_with(kind, SchedFlags::default())
    }
}

/// `n` real servers, weights 1..=5, an upper threshold far above their load (so the check
/// runs but passes).
fn servers(n: usize) -> Vec<Dest> {
    let weights: Vec<u32> = (0..n).map(|i| 1 + (i as u32 % 5)).collect();
    let mut list = real_servers(&weights);
    for d in &mut list {
        d.spec.upper_threshold = 1_000_000;
    }
    list
}

/// A table where server i has (i % 4) + 1 active and (i % 3) inactive connections.
fn loaded_table(list: &[Dest]) -> ConnTable {
    let table = ConnTable::new(8192, list.len().max(1), &Timeouts::default());
    let mut n = 0;
    for (i, d) in list.iter().enumerate() {
        let (active, inactive) = (i % 4 + 1, i % 3);
        for k in 0..active + inactive {
            n += 1;
            table
                .insert(&conn_on(d, n, k < active), 0)
                .expect("room in the benchmark's table");
        }
    }
    table
}

fn flows() -> Vec<Flow> {
    (0..FLOWS as u32).map(spread_flow).collect()
}

/// Median ns per call of `f` (called with a running counter) over `rounds` runs.
fn time_per_call(rounds: usize, min: Duration, mut f: impl FnMut(usize)) -> f64 {
    // Warm up and size a batch of about 1 ms.
    let mut batch = 1usize;
    loop {
        let t = Instant::now();
        for k in 0..batch {
            f(k);
        }
        if t.elapsed() >= Duration::from_millis(1) || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let mut results: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            let mut calls = 0usize;
            while t.elapsed() < min {
                for k in 0..batch {
                    f(calls + k);
                }
                calls += batch;
            }
            t.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    results.sort_by(|a, b| a.total_cmp(b));
    results[results.len() / 2]
}

fn machine() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus, rvs_benches::cpu_model())
}

/// The 1-minute load average, to tell a quiet machine from a busy one.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown date".into())
}

fn picks(args: &Args) -> String {
    let min = Duration::from_millis(args.min_ms);
    let flows = flows();
    let mut out = String::new();
    let _ = writeln!(out, "| scheduler | 2 servers | 16 servers | 256 servers |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    for kind in SchedulerKind::ALL {
        let mut row = format!("| {kind} |");
        for n in SIZES {
            let list = servers(n);
            let table = loaded_table(&list);
            let s = sched::build(&spec(kind, None), &list, &Arc::new(SchedState::default()))
                .expect("every scheduler is supported");
            let dests = Dests::new(&list, &table);
            let ns = time_per_call(args.rounds, min, |k| {
                black_box(s.pick(black_box(&dests), &flows[k % FLOWS]));
            });
            eprintln!("{kind} {n}: {ns:.1} ns/pick");
            let _ = write!(row, " {ns:.1} |");
        }
        let _ = writeln!(out, "{row}");
    }
    // Persistence: a persistent rr service through the template table.
    for (label, hit) in [
        ("rr -p, template hit", true),
        ("rr -p, template miss", false),
    ] {
        let mut row = format!("| {label} |");
        for n in SIZES {
            let list = servers(n);
            let table = loaded_table(&list);
            let state = Arc::new(SchedState::default());
            let scheduler = sched::build(&spec(SchedulerKind::Rr, Some(360)), &list, &state)
                .expect("rr is supported");
            let svc = Service {
                spec: spec(SchedulerKind::Rr, Some(360)),
                dests: list.clone(),
                scheduler,
            };
            let persist = Persist::new(1 << 20, 1024);
            let dests = Dests::new(&svc.dests, &table);
            let mut now = 1_000u64;
            if hit {
                for f in &flows {
                    persist.pick(&svc, &dests, 6, f, 360, Quiesced::Keep, now);
                }
            }
            let ns = time_per_call(args.rounds, min, |k| {
                let f = &flows[k % FLOWS];
                let f = if hit {
                    *f
                } else {
                    // A client never seen before (the table holds 1M templates; old ones
                    // are replaced as it fills).
                    Flow {
                        client: Ipv4Addr::from((k as u32).wrapping_mul(0x0100_0193)).into(),
                        ..*f
                    }
                };
                now += u64::from(k.is_multiple_of(1024));
                black_box(persist.pick(&svc, black_box(&dests), 6, &f, 360, Quiesced::Keep, now));
            });
            eprintln!("{label} {n}: {ns:.1} ns/pick");
            let _ = write!(row, " {ns:.1} |");
        }
        let _ = writeln!(out, "{row}");
    }
    out
}

/// The fraction of slots whose server (by address) differs between two tables.
fn moved(a_list: &[Dest], a: &[u16], b_list: &[Dest], b: &[u16]) -> f64 {
    let addr = |list: &[Dest], i: u16| list.get(usize::from(i)).map(|d| d.spec.addr);
    let n = a
        .iter()
        .zip(b)
        .filter(|(x, y)| addr(a_list, **x) != addr(b_list, **y))
        .count();
    n as f64 / a.len() as f64
}

fn maglev_remap() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| N | remove 1 of N: moved (mean over which) | max | 1/N | add 1 to N: moved | 1/(N+1) |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for n in 2..=10usize {
        let mut all = servers(n + 1);
        for d in &mut all {
            d.spec.weight = 1;
            d.last_weight = 1;
        }
        let list = &all[..n];
        let table = mh::populate(list);
        let (mut sum, mut max) = (0.0, 0.0f64);
        for k in 0..n {
            let fewer: Vec<Dest> = list
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, d)| d.clone())
                .collect();
            let f = moved(list, &table, &fewer, &mh::populate(&fewer));
            sum += f;
            max = max.max(f);
        }
        let added = moved(list, &table, &all, &mh::populate(&all));
        let _ = writeln!(
            out,
            "| {n} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |",
            sum / n as f64,
            max,
            1.0 / n as f64,
            added,
            1.0 / (n + 1) as f64
        );
        eprintln!(
            "N {n}: remove {:.4} (1/N {:.4}), add {added:.4}",
            sum / n as f64,
            1.0 / n as f64
        );
    }
    out
}

fn main() {
    let args = Args::parse();
    let (cpus, model) = machine();
    let date = today();
    let load = load_average();
    let remap = format!(
        "### Maglev (mh): clients remapped when one server of N changes\n\n\
         Command: `cargo run --release -p rvs-benches --bin sched-bench -- --maglev-remap` \
         ({date}). Exact fractions of the 65537 slots (clients hash uniformly to slots), equal \
         weights, servers compared by address.\n\n{}",
        maglev_remap()
    );
    let body = if args.maglev_remap {
        remap
    } else {
        let table = picks(&args);
        format!(
            "## Scheduler pick (ns per pick, one thread)\n\n\
             Command: `cargo run --release -p rvs-benches --bin sched-bench` (median of {} runs of \
             at least {} ms each). Machine: {cpus} CPUs ({model}), 1-minute load average \
             {load} when it started (other work was running); {date}.\n\n\
             Each real server holds a few live connections in a real `ConnTable` (lc, wlc, sed and \
             nq read its counters; every scheduler runs the `-x` threshold check); 4096 client \
             flows are picked for in turn.\n\n{table}\n{remap}",
            args.rounds, args.min_ms
        )
    };
    print!("{body}");
    if let Some(path) = &args.write_results {
        let written =
            rvs_benches::write_results_section(std::path::Path::new(path), "sched-bench", |_| body);
        if let Err(e) = written {
            eprintln!("sched-bench: writing {path}: {e}");
            std::process::exit(1);
        }
    }
}
