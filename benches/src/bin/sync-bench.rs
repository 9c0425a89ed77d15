//! sync-bench: what one sync thread keeps up with, in connections per second, on one core and
//! without I/O (docs/sync.md).
//!
//! - `encode`: the master's side: connection events popped from a worker's queue and encoded
//!   into version-1 messages of 1472 bytes;
//! - `install`: the backup's side: those messages decoded and every connection installed in a
//!   table of `--conns` entries without scheduling (the first pass inserts, the second updates,
//!   as refreshes do).
//!
//! The backup's rate is the ceiling of the sync rate: past it, messages wait in the backup's
//! socket buffer and then are lost (the kernel counts them). Run pinned (`--cpu`), on an idle
//! machine; the result names the figures, not a verdict.

use clap::Parser;
use control::model::{Protocol, ServiceKey, Timeouts};
use dataplane::conntrack::ConnState;
use dataplane::pipeline::{Dataplane, DataplaneConfig};
use dataplane::service::ServiceManager;
use dataplane::sync::{codec::DEFAULT_MAXLEN, decode, Encoder, SyncConn, SyncOut};
use std::net::Ipv4Addr;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "sync-bench",
    about = "Sync encode and install rates, connections per second"
)]
struct Args {
    /// Connections per pass.
    #[arg(long, default_value_t = 1_000_000)]
    conns: u32,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const DESTS: u32 = 4;

fn setup(capacity: usize) -> (std::sync::Arc<Dataplane>, ServiceManager) {
    let dp = Dataplane::new(DataplaneConfig {
        ports: rvs_benches::two_arm_ports(),
        conn_capacity: capacity,
        timeouts: Timeouts::default(),
        workers: 1,
    });
    let mut mgr = ServiceManager::new(dp.clone());
    let key = ServiceKey {
        protocol: Protocol::Tcp,
        addr: VIP.into(),
        port: 80,
    };
    rvs_benches::add_rr_service(&mut mgr, key, DESTS, 80);
    (dp, mgr)
}

/// Connection `i`: a client of rvs-pktgen's flow space, established, on real server i % 4.
fn conn(i: u32) -> SyncConn {
    let (client, cport) = rvs_benches::frame::client_of(i);
    SyncConn {
        proto: 6,
        state: ConnState::Established,
        template: false,
        client: (client, cport),
        virt: (VIP, 80),
        real: (rvs_benches::rip(i % DESTS), 80),
        timeout_s: 900,
        fwmark: 0,
    }
}

fn main() {
    let args = Args::parse();
    if let Some(c) = args.cpu {
        rvs_benches::pin(c);
    }
    let n = args.conns.max(1);
    // The master: events through a worker's queue (in chunks of its capacity) into messages.
    let queue = SyncOut::new(1);
    queue.set_master(true);
    let events: Vec<SyncConn> = (0..n).map(conn).collect();
    let mut enc = Encoder::new(0, DEFAULT_MAXLEN);
    let mut msgs: Vec<Vec<u8>> = Vec::with_capacity(n as usize / 40 + 1);
    let t = Instant::now();
    for chunk in events.chunks(dataplane::sync::QUEUE_CAPACITY) {
        for c in chunk {
            queue.push(0, (*c).into());
        }
        queue.drain(usize::MAX, |c| msgs.extend(enc.push(&c)));
    }
    msgs.extend(enc.finish());
    let encode_s = t.elapsed().as_secs_f64();

    // The backup: decode and install, twice (new, then updated).
    let (dp, _mgr) = setup(n as usize);
    let pass = |now: u64| {
        let (mut ok, mut refused) = (0u64, 0u64);
        let t = Instant::now();
        for m in &msgs {
            let r = decode(m, 0, |e| match e.and_then(|c| dp.install_synced(&c, now)) {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            });
            assert!(r.is_ok());
        }
        (t.elapsed().as_secs_f64(), ok, refused)
    };
    let (new_s, new_ok, new_refused) = pass(1_000);
    let (upd_s, upd_ok, upd_refused) = pass(2_000);
    assert_eq!(
        (new_refused, upd_refused),
        (0, 0),
        "every connection installs"
    );
    assert_eq!(
        (new_ok, upd_ok, dp.conns().len() as u64),
        (u64::from(n), u64::from(n), u64::from(n))
    );
    let rate = |s: f64| f64::from(n) / s;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "conns": n, "messages": msgs.len(),
                "encode_conns_per_s": rate(encode_s),
                "install_new_conns_per_s": rate(new_s),
                "install_update_conns_per_s": rate(upd_s),
            })
        );
    } else {
        println!(
            "{n} connections in {} messages: encode {:.2} M conn/s; install new {:.2} M conn/s, \
             update {:.2} M conn/s",
            msgs.len(),
            rate(encode_s) / 1e6,
            rate(new_s) / 1e6,
            rate(upd_s) / 1e6
        );
    }
}
