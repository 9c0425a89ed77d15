//! IPVS connection sync: the master director sends connection events to its backups in the
//! kernel's sync protocol (version 1, [`codec`]); a backup installs them in its table without
//! scheduling, so that established connections survive a takeover (docs/sync.md).
//!
//! Sync follows connection events, never every packet:
//! - a worker queues a connection when it enters a state the kernel syncs (TCP ESTABLISHED,
//!   FIN_WAIT, CLOSE_WAIT, CLOSE, TIME_WAIT; a UDP connection when it is made), and a
//!   persistence template when a new connection uses it;
//! - the worker's aging walk re-queues every synced-state connection of its slice once per
//!   `sync_refresh_period` (the sysctl, in the service snapshot), so that a backup started later learns the long-lived ones and the
//!   backup's expiry follows the master's;
//! - each worker has its own bounded queue ([`SyncOut`]); an event that finds it full is
//!   counted (`sync_queue_overflow`) and lost, never waited for.
//!
//! While the director is not the sync master the workers queue nothing: the packet path then
//! pays one comparison per state change and nothing per packet.

pub mod codec;
pub mod install;

pub use codec::{decode, Encode, Encoder, Refused, SyncConn, SyncEntry};
pub use install::Installed;

use crate::conntrack::{ConnInfo, ConnState};
use crate::packet::ipv4::PROTO_TCP;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Events each worker's queue holds (the sync thread drains them every few milliseconds).
pub const QUEUE_CAPACITY: usize = 16384;

/// Whether the kernel syncs a connection of `proto` in `state` (`ip_vs_sync_conn_needed`):
/// TCP in ESTABLISHED or a closing state, and UDP.
pub fn syncable(proto: u8, state: ConnState) -> bool {
    if proto != PROTO_TCP {
        return true;
    }
    matches!(
        state,
        ConnState::Established
            | ConnState::FinWait
            | ConnState::CloseWait
            | ConnState::Close
            | ConnState::TimeWait
    )
}

/// The sync entry of connection `c` at `now_ms`: it carries the seconds it has left (at least
/// one), so that the backup's copy expires when the master's does.
pub fn entry_of<A: Copy>(c: &ConnInfo<A>, now_ms: u64) -> SyncConn<A> {
    let left_s = c.expires_ms.saturating_sub(now_ms).div_ceil(1000).max(1);
    SyncConn {
        proto: c.proto,
        state: c.state,
        template: false,
        client: c.client,
        virt: c.virt,
        real: c.real,
        timeout_s: u32::try_from(left_s).unwrap_or(u32::MAX),
        fwmark: 0,
    }
}

/// The workers' side of sync: whether to queue, the refresh period, one queue per worker.
pub struct SyncOut {
    master: CachePadded<AtomicBool>,
    queues: Box<[CachePadded<ArrayQueue<SyncEntry>>]>,
}

impl std::fmt::Debug for SyncOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOut")
            .field("master", &self.is_master())
            .finish()
    }
}

impl SyncOut {
    /// Queues for `workers` workers; not master.
    pub fn new(workers: usize) -> SyncOut {
        SyncOut {
            master: CachePadded::new(AtomicBool::new(false)),
            queues: (0..workers.max(1))
                .map(|_| CachePadded::new(ArrayQueue::new(QUEUE_CAPACITY)))
                .collect(),
        }
    }

    /// Whether workers queue connection events (this director is the sync master).
    #[inline]
    pub fn is_master(&self) -> bool {
        self.master.load(Ordering::Relaxed)
    }

    pub fn set_master(&self, on: bool) {
        self.master.store(on, Ordering::Relaxed);
    }

    /// Queues `c` on `worker`'s queue; false if it was full (the event is lost).
    pub fn push(&self, worker: usize, c: SyncEntry) -> bool {
        self.queues
            .get(worker % self.queues.len())
            .is_some_and(|q| q.push(c).is_ok())
    }

    /// Takes up to `max` queued events from every worker's queue, oldest first per queue.
    pub fn drain(&self, max: usize, mut f: impl FnMut(SyncEntry)) -> usize {
        let mut n = 0;
        for q in self.queues.iter() {
            while n < max {
                let Some(c) = q.pop() else { break };
                f(c);
                n += 1;
            }
        }
        n
    }
}

/// What the sync thread did, for `rvsadm -L --daemon`, `rvsctl counters` and /metrics.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub msgs_sent: AtomicU64,
    pub conns_sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub msgs_received: AtomicU64,
    pub conns_installed: AtomicU64,
    pub conns_updated: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
}

impl SyncStats {
    pub fn refuse(&self, r: Refused) {
        if let Some(c) = self.refused.get(r as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn refused(&self, r: Refused) -> u64 {
        self.refused
            .get(r as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Every counter as (name, value), names prefixed `sync.`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut v = vec![
            ("sync.msgs_sent".to_string(), get(&self.msgs_sent)),
            ("sync.conns_sent".to_string(), get(&self.conns_sent)),
            ("sync.send_errors".to_string(), get(&self.send_errors)),
            ("sync.msgs_received".to_string(), get(&self.msgs_received)),
            (
                "sync.conns_installed".to_string(),
                get(&self.conns_installed),
            ),
            ("sync.conns_updated".to_string(), get(&self.conns_updated)),
        ];
        v.extend(
            Refused::ALL
                .iter()
                .map(|r| (format!("sync.refused.{}", r.name()), self.refused(*r))),
        );
        v
    }
}
