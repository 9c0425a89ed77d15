//! table-mem: what the connection table costs in memory, measured on this process rather than
//! computed. It reads /proc/self/status before the table is built, after it is built (its
//! region is prefaulted then) and after `--conns` inserts (testkit's `plan::nth_conn`: distinct
//! clients, 32 real servers), and reports the growth per connection.
//!
//! Resident memory is VmRSS plus HugetlbPages: pages from the reserved hugepage pool
//! (`MAP_HUGETLB`, the table's first choice) are not counted in VmRSS. VmHWM is VmRSS's peak.
//! The table's own account (`ConnTable::memory_bytes`) is printed beside it for comparison.
//!
//! ```text
//! cargo run --release -p rvs-benches --no-default-features --bin table-mem [-- --conns 10000000]
//! ```

use clap::Parser;
use control::model::Timeouts;
use dataplane::conntrack::ConnTable;
use std::time::Instant;
use testkit::plan::nth_conn;

#[derive(Parser, Debug)]
#[command(
    name = "table-mem",
    about = "resident memory of a full connection table"
)]
struct Args {
    /// Table capacity, all of it filled.
    #[arg(long, default_value_t = 10_000_000)]
    conns: usize,
    /// Real-server slots the table counts connections for (rvsd: 64).
    #[arg(long, default_value_t = 64)]
    dests: usize,
}

/// The memory figures of /proc/self/status, in bytes.
#[derive(Debug, Clone, Copy)]
struct Mem {
    rss: u64,
    hwm: u64,
    hugetlb: u64,
}

impl Mem {
    fn now() -> Mem {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let kib = |field: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|k| k * 1024)
        };
        let must =
            |field: &str| kib(field).unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
        Mem {
            rss: must("VmRSS:"),
            hwm: must("VmHWM:"),
            // Absent on kernels before 4.4: no hugetlb pages counted then.
            hugetlb: kib("HugetlbPages:").unwrap_or(0),
        }
    }

    fn resident(&self) -> u64 {
        self.rss + self.hugetlb
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let args = Args::parse();
    let n = args.conns;
    let before = Mem::now();
    let t0 = Instant::now();
    let table = ConnTable::new(n, args.dests, &Timeouts::default());
    let built_in = t0.elapsed();
    let built = Mem::now();
    let t1 = Instant::now();
    for i in 0..n {
        table
            .insert(&nth_conn(i), 0)
            .unwrap_or_else(|e| panic!("connection {i}: {e:?}"));
    }
    let filled_in = t1.elapsed();
    let filled = Mem::now();
    assert_eq!(table.len(), n, "every connection is in the table");

    println!(
        "table-mem: {n} connections, {} real-server slots, backing: {}",
        args.dests,
        table.backing()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>16} {:>12}",
        "", "VmRSS MB", "VmHWM MB", "HugetlbPages MB", "resident MB"
    );
    for (what, m) in [
        ("before the table", before),
        (&*format!("built ({built_in:.2?})"), built),
        (&*format!("filled ({filled_in:.2?})"), filled),
    ] {
        println!(
            "{what:<22} {:>10.1} {:>10.1} {:>16.1} {:>12.1}",
            mb(m.rss),
            mb(m.hwm),
            mb(m.hugetlb),
            mb(m.resident())
        );
    }
    let growth = filled.resident().saturating_sub(before.resident());
    println!(
        "measured: {:.1} MB resident for the table, {:.1} bytes per connection \
         (of which {:.1} from the inserts)",
        mb(growth),
        growth as f64 / n as f64,
        filled.resident().saturating_sub(built.resident()) as f64 / n as f64
    );
    println!(
        "the table's own account (memory_bytes): {:.1} MB, {:.1} bytes per connection",
        mb(table.memory_bytes() as u64),
        table.memory_bytes() as f64 / n as f64
    );
}
