//! table-bench: the connection table's lookup, insert and remove costs beside DPDK's `rte_hash`
//! (lock-free mode) and `DashMap`, at 1K..10M connections, with 1 and 2 threads, in one run.
//!
//! All three hold the same thing: N connections, each findable by two 5-tuples (inbound and
//! reply), i.e. 2N keys. So per operation:
//! - rvs `ConnTable`: `insert` of a `NewConn` (both tuples at once; it first checks neither is
//!   taken), `lookup` of a tuple, remove = `lookup` of the inbound tuple + `remove`;
//! - `rte_hash` created with `RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF |
//!   RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD` (lock-free readers; writers serialised by its
//!   internal lock), 16-byte keys, `rte_hash_crc` (SSE4.2) as DPDK applications use it: insert
//!   = 2 `rte_hash_add_key_data`, lookup = `rte_hash_lookup_data`, remove = 2 x
//!   (`rte_hash_del_key` + `rte_hash_free_key_with_position`, needed in LF mode to reuse the
//!   slot);
//! - `DashMap<Key, u32>` with its default hasher (SipHash-1-3): 2 `insert`, `get`, 2 `remove`.
//!
//! Threads split inserts and removes (contiguous halves) and each does `--lookups` random
//! lookups (uniform over all 2N tuples) on the full table. Keys are made in chunks of 512
//! outside the timed loops, so only the structures' own work is timed. Small tables repeat insert/remove
//! cycles until about 1M operations were timed. Each figure is the best of `--reps` runs; per
//! phase the time is the slowest thread's own (threads start each phase on a barrier).
//! ns/op is per thread (what one core sees); the aggregate rate is in the second table.
//!
//! `--family 6` measures the IPv6 table (64-byte entries; 40-byte keys for rte_hash and
//! DashMap), `--family 4,6` both, one after the other (rows of IPv6 are marked so).
//!
//! `--write-results FILE` replaces this benchmark's own section of FILE (between
//! `<!-- table-bench:begin -->` and `<!-- table-bench:end -->`), leaving the rest alone.

use clap::Parser;
use control::model::Timeouts;
use dashmap::DashMap;
use dataplane::conntrack::{ConnState, ConnTable, ConnTable6, Family, NewConn, Tuple, V4, V6};
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "table-bench",
    about = "connection table vs rte_hash (LF) vs DashMap"
)]
struct Args {
    /// Connections in the table (each is 2 keys).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,100000,1000000,10000000"
    )]
    sizes: Vec<usize>,
    /// Address families: 4, 6 or both (`4,6`).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    family: Vec<u8>,
    /// Thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Random lookups per thread per run.
    #[arg(long, default_value_t = 4_000_000)]
    lookups: usize,
    /// Runs per configuration; the best is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// EAL arguments for rte_hash (hugepages by default, as the table uses).
    #[arg(
        long,
        default_value = "-l 0 --in-memory --no-pci --no-telemetry --log-level lib.eal:error",
        allow_hyphen_values = true
    )]
    eal: String,
    #[arg(long)]
    no_rte_hash: bool,
    #[arg(long)]
    no_dashmap: bool,
    /// Replace this benchmark's section of FILE (e.g. benches/RESULTS.md).
    #[arg(long)]
    write_results: Option<PathBuf>,
}

/// What the benchmark needs of an address family: its connections, its table and the key the
/// other structures store.
trait BenchFam: Family {
    /// The key rte_hash and DashMap store (`#[repr(C)]`, no padding left undefined).
    type Key: Copy + Eq + Hash + Send + Sync + 'static;
    fn conn(i: usize) -> NewConn<Self::Addr>;
    fn key(t: &Tuple<Self::Addr>) -> Self::Key;
    fn table(n: usize) -> ConnTable<Self>;
    /// How a row of this family is marked ("" for IPv4, as before).
    const MARK: &'static str;
}

/// Connection `i`'s client host and port: 60000 ports per address.
fn client_of(i: usize) -> (usize, u16) {
    (i / 60_000, 1024 + (i % 60_000) as u16)
}

/// The 16-byte IPv4 key rte_hash and DashMap store.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    pad: [u8; 3],
}

/// The 40-byte IPv6 key.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key6 {
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    proto: u8,
    pad: [u8; 3],
}

impl BenchFam for V4 {
    type Key = Key;
    const MARK: &'static str = "";

    /// Connection `i`: client 198.51.100.x:1024.. (60000 ports per address, then
    /// 203.0.113.x), VIP 192.0.2.1:80, real server 192.0.2.(2 + i % 32):8080.
    fn conn(i: usize) -> NewConn {
        let (host, port) = client_of(i);
        let client = if host < 256 {
            Ipv4Addr::new(198, 51, 100, host as u8)
        } else {
            Ipv4Addr::new(203, 0, 113, (host - 256) as u8)
        };
        NewConn {
            proto: 6,
            client: (client, port),
            virt: (Ipv4Addr::new(192, 0, 2, 1), 80),
            real: (Ipv4Addr::new(192, 0, 2, 2 + (i % 32) as u8), 8080),
            dest: (i % 32) as u32,
            state: ConnState::Established,
        }
    }

    fn key(t: &Tuple) -> Key {
        Key {
            src: u32::from(t.src),
            dst: u32::from(t.dst),
            sport: t.sport,
            dport: t.dport,
            proto: t.proto,
            pad: [0; 3],
        }
    }

    fn table(n: usize) -> ConnTable {
        ConnTable::new(n, 64, &Timeouts::default())
    }
}

impl BenchFam for V6 {
    type Key = Key6;
    const MARK: &'static str = " IPv6";

    /// Connection `i`: client 2001:db8:100::1:x:1024.., VIP 2001:db8:100::1:80, real server
    /// 2001:db8:2::(2 + i % 32):8080.
    fn conn(i: usize) -> NewConn<Ipv6Addr> {
        let (host, port) = client_of(i);
        let net = |n: u128, host: u128| Ipv6Addr::from((0x2001_0db8_u128 << 96) | (n << 80) | host);
        NewConn {
            proto: 6,
            client: (net(0x100, 0x1_0000 | host as u128), port),
            virt: (net(0x100, 1), 80),
            real: (net(2, 2 + (i % 32) as u128), 8080),
            dest: (i % 32) as u32,
            state: ConnState::Established,
        }
    }

    fn key(t: &Tuple<Ipv6Addr>) -> Key6 {
        Key6 {
            src: t.src.octets(),
            dst: t.dst.octets(),
            sport: t.sport,
            dport: t.dport,
            proto: t.proto,
            pad: [0; 3],
        }
    }

    fn table(n: usize) -> ConnTable6 {
        ConnTable6::new6(n, 64, &Timeouts::default())
    }
}

fn tuple<F: BenchFam>(i: usize, reply: bool) -> Tuple<F::Addr> {
    let c = F::conn(i);
    if reply {
        c.reply()
    } else {
        c.inbound()
    }
}

/// The operations timed, on keys made beforehand (outside the timed loops).
trait Table<F: BenchFam>: Sync {
    /// Inserts connection `c` (number `i`); false if refused.
    fn insert(&self, c: &NewConn<F::Addr>, i: usize) -> bool;
    fn lookup(&self, t: &Tuple<F::Addr>) -> bool;
    fn remove(&self, c: &NewConn<F::Addr>) -> bool;
    fn thread_start(&self) {}
    fn thread_end(&self) {}
}

struct Rvs<F: BenchFam>(ConnTable<F>);

impl<F: BenchFam> Table<F> for Rvs<F> {
    fn insert(&self, c: &NewConn<F::Addr>, _: usize) -> bool {
        self.0.insert(c, 0).is_ok()
    }
    fn lookup(&self, t: &Tuple<F::Addr>) -> bool {
        self.0.lookup(t, 0).is_some()
    }
    fn remove(&self, c: &NewConn<F::Addr>) -> bool {
        match self.0.lookup(&c.inbound(), 0) {
            Some(h) => self.0.remove(h.conn),
            None => false,
        }
    }
}

/// DPDK's lock-free `rte_hash`, to compare with (only with the `dpdk` feature).
#[cfg(feature = "dpdk")]
mod rte {
    use super::{BenchFam, NewConn, Table, Tuple};
    use dpdk_sys as sys;
    use std::ffi::CString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Starts EAL for rte_hash; false (and a line saying why) when it cannot.
    pub fn start_eal(args: &str) -> bool {
        let eal: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
        match rvsd::dpdk::eal::init(&eal) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("table-bench: EAL failed ({e}); rte_hash skipped");
                false
            }
        }
    }

    pub struct RteHash<F>(*mut sys::rte_hash, std::marker::PhantomData<F>);

    // SAFETY: rte_hash in RW_CONCURRENCY_LF + MULTI_WRITER_ADD mode is made for concurrent use
    // from EAL threads (each bench thread registers itself).
    unsafe impl<F: Sync> Sync for RteHash<F> {}

    static HASH_ID: AtomicUsize = AtomicUsize::new(0);

    impl<F: BenchFam> RteHash<F> {
        pub fn new(keys: usize) -> Option<RteHash<F>> {
            let name =
                CString::new(format!("tb{}", HASH_ID.fetch_add(1, Ordering::Relaxed))).ok()?;
            let params = sys::rte_hash_parameters {
                name: name.as_ptr(),
                entries: keys.max(8) as u32,
                reserved: 0,
                key_len: std::mem::size_of::<F::Key>() as u32,
                hash_func: Some(sys::rte_hash_crc),
                hash_func_init_val: 0,
                socket_id: 0,
                extra_flag: (sys::RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF
                    | sys::RTE_HASH_EXTRA_FLAGS_MULTI_WRITER_ADD) as u8,
            };
            // SAFETY: valid parameters; the name is copied by rte_hash_create.
            let h = unsafe { sys::rte_hash_create(&params) };
            (!h.is_null()).then_some(RteHash(h, std::marker::PhantomData))
        }

        fn add(&self, t: &Tuple<F::Addr>, v: usize) -> bool {
            let k = F::key(t);
            // SAFETY: a live table; the key is key_len bytes; the data is an opaque number.
            unsafe {
                sys::rte_hash_add_key_data(self.0, (&k as *const F::Key).cast(), v as *mut _) == 0
            }
        }

        fn del(&self, t: &Tuple<F::Addr>) -> bool {
            let k = F::key(t);
            // SAFETY: as above. No reader runs during the remove phase, so the slot can be
            // freed at once (LF mode keeps it until told).
            unsafe {
                let pos = sys::rte_hash_del_key(self.0, (&k as *const F::Key).cast());
                pos >= 0 && sys::rte_hash_free_key_with_position(self.0, pos) == 0
            }
        }
    }

    impl<F> Drop for RteHash<F> {
        fn drop(&mut self) {
            // SAFETY: created by rte_hash_create, freed once, no user left.
            unsafe { sys::rte_hash_free(self.0) };
        }
    }

    impl<F: BenchFam> Table<F> for RteHash<F> {
        fn insert(&self, c: &NewConn<F::Addr>, i: usize) -> bool {
            self.add(&c.inbound(), i + 1) && self.add(&c.reply(), i + 1)
        }
        fn lookup(&self, t: &Tuple<F::Addr>) -> bool {
            let k = F::key(t);
            let mut data = std::ptr::null_mut();
            // SAFETY: as above.
            unsafe {
                sys::rte_hash_lookup_data(self.0, (&k as *const F::Key).cast(), &mut data) >= 0
            }
        }
        fn remove(&self, c: &NewConn<F::Addr>) -> bool {
            self.del(&c.inbound()) && self.del(&c.reply())
        }
        fn thread_start(&self) {
            // SAFETY: registers this non-EAL thread with an lcore id (rte_hash's per-lcore free
            // slot caches need one).
            let r = unsafe { sys::rte_thread_register() };
            assert_eq!(r, 0, "rte_thread_register failed");
        }
        fn thread_end(&self) {
            // SAFETY: this thread registered itself in thread_start.
            unsafe { sys::rte_thread_unregister() };
        }
    }
}

struct Dash<F: BenchFam>(DashMap<F::Key, u32>);

impl<F: BenchFam> Table<F> for Dash<F> {
    fn insert(&self, c: &NewConn<F::Addr>, i: usize) -> bool {
        self.0.insert(F::key(&c.inbound()), i as u32).is_none()
            && self.0.insert(F::key(&c.reply()), i as u32).is_none()
    }
    fn lookup(&self, t: &Tuple<F::Addr>) -> bool {
        self.0.get(&F::key(t)).is_some()
    }
    fn remove(&self, c: &NewConn<F::Addr>) -> bool {
        self.0.remove(&F::key(&c.inbound())).is_some()
            && self.0.remove(&F::key(&c.reply())).is_some()
    }
}

/// Keys are made in chunks of this many, then the chunk's operations are timed.
const CHUNK: usize = 512;

#[derive(Clone, Copy, Default)]
struct Times {
    /// ns per operation per thread: insert, lookup, remove.
    ns: [f64; 3],
    /// Aggregate million operations per second.
    mops: [f64; 3],
    failures: u64,
}

impl Times {
    fn best(self, o: Times) -> Times {
        let mut r = self;
        for k in 0..3 {
            if o.ns[k] < r.ns[k] {
                r.ns[k] = o.ns[k];
                r.mops[k] = o.mops[k];
            }
        }
        r.failures = r.failures.max(o.failures);
        r
    }
}

/// One run: `cycles` x (insert all, [lookups on the last], remove all) with `threads` threads.
fn run<F: BenchFam>(
    table: &dyn Table<F>,
    n: usize,
    threads: usize,
    lookups: usize,
    seed: u64,
) -> Times {
    let cycles = (1_000_000 / n).max(1);
    let barrier = Barrier::new(threads);
    let slowest = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    let failures = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, slowest, failures) = (&barrier, &slowest, &failures);
            s.spawn(move || {
                table.thread_start();
                let mine = (n * t / threads)..(n * (t + 1) / threads);
                let mut spent = [Duration::ZERO; 3];
                let mut bad = 0u64;
                let mut rng = seed ^ (0x9e37_79b9_7f4a_7c15 * (t as u64 + 1));
                let mut conns: Vec<NewConn<F::Addr>> = Vec::with_capacity(CHUNK);
                let mut tuples: Vec<Tuple<F::Addr>> = Vec::with_capacity(CHUNK);
                for cycle in 0..cycles {
                    barrier.wait();
                    for start in mine.clone().step_by(CHUNK) {
                        let idx = start..(start + CHUNK).min(mine.end);
                        conns.clear();
                        conns.extend(idx.clone().map(F::conn));
                        let t0 = Instant::now();
                        for (c, i) in conns.iter().zip(idx) {
                            bad += u64::from(!table.insert(c, i));
                        }
                        spent[0] += t0.elapsed();
                    }
                    if cycle + 1 == cycles {
                        barrier.wait();
                        for done in (0..lookups).step_by(CHUNK) {
                            tuples.clear();
                            for _ in done..(done + CHUNK).min(lookups) {
                                rng ^= rng << 13;
                                rng ^= rng >> 7;
                                rng ^= rng << 17;
                                let i = ((u128::from(rng) * n as u128) >> 64) as usize;
                                tuples.push(tuple::<F>(i, rng & 1 == 1));
                            }
                            let t0 = Instant::now();
                            for t in &tuples {
                                bad += u64::from(!table.lookup(t));
                            }
                            spent[1] += t0.elapsed();
                        }
                    }
                    barrier.wait();
                    for start in mine.clone().step_by(CHUNK) {
                        conns.clear();
                        conns.extend((start..(start + CHUNK).min(mine.end)).map(F::conn));
                        let t0 = Instant::now();
                        for c in &conns {
                            bad += u64::from(!table.remove(c));
                        }
                        spent[2] += t0.elapsed();
                    }
                }
                for (k, d) in spent.iter().enumerate() {
                    slowest[k].fetch_max(d.as_nanos() as u64, Ordering::Relaxed);
                }
                failures.fetch_add(bad, Ordering::Relaxed);
                table.thread_end();
            });
        }
    });
    let per_thread = [
        (n / threads * cycles) as f64,
        lookups as f64,
        (n / threads * cycles) as f64,
    ];
    let mut r = Times {
        failures: failures.load(Ordering::Relaxed),
        ..Times::default()
    };
    for k in 0..3 {
        let ns = slowest[k].load(Ordering::Relaxed) as f64;
        r.ns[k] = ns / per_thread[k];
        r.mops[k] = per_thread[k] * threads as f64 / ns * 1e3;
    }
    r
}

fn size_name(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}K", n / 1000),
        n => n.to_string(),
    }
}

const NAMES: [&str; 3] = ["rvs ConnTable", "rte_hash LF", "DashMap"];
const OPS: [&str; 3] = ["insert", "lookup", "remove"];

struct Row {
    mark: &'static str,
    n: usize,
    threads: usize,
    times: [Option<Times>; 3],
}

/// One family's sweep over the sizes and thread counts, appended to `rows`.
fn sweep<F: BenchFam>(args: &Args, eal_ok: bool, rows: &mut Vec<Row>, backing: &mut String) {
    let _ = eal_ok;
    for &n in &args.sizes {
        for &threads in &args.threads {
            let mut times: [Option<Times>; 3] = [None, None, None];
            for rep in 0..args.reps {
                let seed = 0x1234_5678 + rep as u64;
                // One structure alive at a time: the 10M ones take about 1 GB each.
                let t = Rvs(F::table(n));
                if backing.is_empty() || n == *args.sizes.iter().max().unwrap_or(&n) {
                    *backing = format!(
                        "{}{} entries: {} bytes ({:.1}/connection), {}",
                        size_name(n),
                        F::MARK,
                        t.0.memory_bytes(),
                        t.0.memory_bytes() as f64 / n as f64,
                        t.0.backing()
                    );
                }
                let r = run::<F>(&t, n, threads, args.lookups, seed);
                drop(t);
                times[0] = Some(times[0].map_or(r, |b| b.best(r)));
                #[cfg(feature = "dpdk")]
                if eal_ok {
                    match rte::RteHash::<F>::new(2 * n) {
                        Some(h) => {
                            let r = run::<F>(&h, n, threads, args.lookups, seed);
                            times[1] = Some(times[1].map_or(r, |b| b.best(r)));
                        }
                        None => eprintln!("rte_hash_create failed for {} keys", 2 * n),
                    }
                }
                if !args.no_dashmap {
                    let d = Dash::<F>(DashMap::with_capacity(2 * n));
                    let r = run::<F>(&d, n, threads, args.lookups, seed);
                    times[2] = Some(times[2].map_or(r, |b| b.best(r)));
                }
            }
            let line: Vec<String> = (0..3)
                .map(|k| {
                    let cells: Vec<String> = times
                        .iter()
                        .map(|t| t.map_or("-".into(), |t| format!("{:.1}", t.ns[k])))
                        .collect();
                    format!("{} {}", OPS[k], cells.join(" / "))
                })
                .collect();
            println!(
                "{}{} entries, {} thread(s), ns/op ({}): {}",
                size_name(n),
                F::MARK,
                threads,
                NAMES.join(" / "),
                line.join("; ")
            );
            for (name, t) in NAMES.iter().zip(&times) {
                if let Some(t) = t.filter(|t| t.failures > 0) {
                    eprintln!("warning: {name}: {} failed operations", t.failures);
                }
            }
            rows.push(Row {
                mark: F::MARK,
                n,
                threads,
                times,
            });
        }
    }
}

fn main() {
    let args = Args::parse();
    let started = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let load_start = loadavg();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = rvs_benches::cpu_model();
    println!("machine: nproc {nproc}, {cpu}; load average {load_start}");

    #[cfg(feature = "dpdk")]
    let eal_ok = !args.no_rte_hash && rte::start_eal(&args.eal);
    #[cfg(not(feature = "dpdk"))]
    if !args.no_rte_hash {
        eprintln!("table-bench: built without the dpdk feature; rte_hash skipped");
    }

    #[cfg(not(feature = "dpdk"))]
    let eal_ok = false;
    let mut rows = Vec::new();
    let mut backing = String::new();
    for fam in &args.family {
        match fam {
            4 => sweep::<V4>(&args, eal_ok, &mut rows, &mut backing),
            6 => sweep::<V6>(&args, eal_ok, &mut rows, &mut backing),
            other => {
                eprintln!("table-bench: --family {other}: 4 or 6");
                std::process::exit(2);
            }
        }
    }
    let load_end = loadavg();
    println!("rvs table memory: {backing}");

    let mut md = String::new();
    md.push_str("| entries | threads | op |");
    for name in NAMES {
        md.push_str(&format!(" {name} ns/op |"));
    }
    md.push_str("\n|---|---|---|---|---|---|\n");
    // Grouped by operation, then threads, so that each size sweep reads down a column.
    for (k, op) in OPS.iter().enumerate() {
        let mut by_threads: Vec<&Row> = rows.iter().collect();
        by_threads.sort_by_key(|r| (r.mark, r.threads, r.n));
        for r in by_threads {
            md.push_str(&format!(
                "| {}{} | {} | {op} |",
                size_name(r.n),
                r.mark,
                r.threads
            ));
            for t in &r.times {
                md.push_str(&match t {
                    Some(t) if t.failures == 0 => format!(" {:.1} |", t.ns[k]),
                    Some(t) => format!(" {:.1} ({} failed) |", t.ns[k], t.failures),
                    None => " - |".into(),
                });
            }
            md.push('\n');
        }
    }
    let mut agg = String::from("| entries | threads | op |");
    for name in NAMES {
        agg.push_str(&format!(" {name} Mops/s |"));
    }
    agg.push_str("\n|---|---|---|---|---|---|\n");
    for (k, op) in OPS.iter().enumerate() {
        for r in rows.iter().filter(|r| r.threads > 1) {
            agg.push_str(&format!(
                "| {}{} | {} | {op} |",
                size_name(r.n),
                r.mark,
                r.threads
            ));
            for t in &r.times {
                agg.push_str(&t.map_or(" - |".into(), |t| format!(" {:.1} |", t.mops[k])));
            }
            agg.push('\n');
        }
    }
    let command = std::env::args()
        .map(|a| {
            if a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    println!("\n{md}\n{agg}");

    if let Some(path) = &args.write_results {
        let section = format!(
            "## Connection table micro benchmark (table-bench)\n\n\
             `{command}` — {started}, nproc {nproc}, {cpu}, load average {load_start} at start, \
             {load_end} at the end (a shared machine: other builds and tests ran meanwhile, \
             which hurts the 2-thread figures most)\n\n\
             What is measured (see `benches/src/bin/table-bench.rs`): N connections, each \
             findable by its inbound and its reply tuple, so 2N keys in every structure. \
             insert = one connection (rvs: one `insert` of both tuples, after checking neither \
             is taken; rte_hash / DashMap: two key inserts), lookup = one random tuple of the \
             2N (a hit), remove = one connection by its tuples (rvs: lookup + remove; the \
             others: two key deletes, for rte_hash LF also `rte_hash_free_key_with_position`). \
             rte_hash: `RW_CONCURRENCY_LF | MULTI_WRITER_ADD`, 16-byte keys, `rte_hash_crc`, \
             EAL `{eal}` (writers serialised by its lock; lock-free readers). DashMap 6, default \
             hasher. ns/op is per thread (threads share the table; inserts and removes split \
             between them, lookups uniform over all keys), best of {reps} runs. rvs table \
             memory: {backing}.\n\n{md}\nAggregate throughput with 2 threads:\n\n{agg}\n",
            eal = args.eal,
            reps = args.reps,
        );
        if let Err(e) = rvs_benches::write_results_section(path, "table-bench", |_| section) {
            eprintln!("table-bench: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
        println!("results written to {}", path.display());
    }
}
