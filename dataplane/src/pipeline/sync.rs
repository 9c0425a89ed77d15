//! Connection events for the sync master (see `crate::sync`): a new state the kernel syncs, a
//! template a new connection used, and the periodic refresh walk, for connections of both
//! families. Nothing is queued unless this director is the sync master; no event waits for
//! room.

use super::Pipeline;
use crate::conntrack::{ConnInfo, ConnState, ConnTable, Family, Hit};
use crate::persist::{Key, Key6};
use crate::sched::Flow;
use crate::service::{Dest, Service};
use crate::stats::{Event, WorkerStats};
use crate::sync::{entry_of, syncable, SyncConn, SyncEntry, SyncOut};
use std::net::IpAddr;
use std::ops::Range;

/// Where the refresh walk of one family's slice of its table resumes, and the progress it
/// owes in entry-milliseconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct RefreshWalk {
    cursor: usize,
    credit: u64,
}

impl RefreshWalk {
    /// A walk of a slice that starts at `start`.
    pub(super) fn new(start: usize) -> RefreshWalk {
        RefreshWalk {
            cursor: start,
            credit: 0,
        }
    }
}

impl Pipeline {
    /// `hit`'s connection has just entered `state` (or was made in it).
    #[inline]
    pub(super) fn sync_state_change<A: Copy>(&self, hit: &Hit<A>, state: ConnState)
    where
        SyncConn<A>: Into<SyncEntry>,
    {
        let sync = &self.dp.sync;
        if !sync.is_master() || !syncable(hit.proto, state) {
            return;
        }
        // Both families' tables share the timeouts.
        let timeout_ms = self.dp.conns.timeouts().get_ms(state);
        let c = SyncConn {
            proto: hit.proto,
            state,
            template: false,
            client: hit.client,
            virt: hit.virt,
            real: hit.real,
            timeout_s: timeout_ms.div_ceil(1000),
            fwmark: 0,
        };
        queue(sync, self.index, self.stats(), c.into());
    }

    /// A new connection of `flow` to the persistent service `svc` used (or made) the template
    /// that pins real server `d` for `timeout_s`: the backups get it too, as the kernel syncs
    /// a connection's controlling template with it.
    pub(super) fn sync_template(
        &self,
        svc: &Service,
        d: &Dest,
        proto: u8,
        flow: &Flow,
        timeout_s: u32,
    ) {
        let sync = &self.dp.sync;
        if !sync.is_master() {
            return;
        }
        fn template<A>(proto: u8, cnet: A, virt: (A, u16), real: (A, u16), t: u32) -> SyncConn<A> {
            SyncConn {
                proto,
                state: ConnState::None,
                template: true,
                client: (cnet, 0),
                virt,
                real,
                timeout_s: t,
                fwmark: 0,
            }
        }
        let rport = d.spec.port;
        let c: SyncEntry = match flow.client {
            IpAddr::V4(_) => {
                let k = Key::of(svc, proto, flow);
                template(
                    proto,
                    k.cnet,
                    (k.vip, k.vport),
                    (d.addr4(), rport),
                    timeout_s,
                )
                .into()
            }
            IpAddr::V6(_) => {
                let k = Key6::of(svc, proto, flow);
                template(
                    proto,
                    k.cnet,
                    (k.vip, k.vport),
                    (d.addr6(), rport),
                    timeout_s,
                )
                .into()
            }
        };
        queue(sync, self.index, self.stats(), c);
    }

    /// Re-queues the synced-state connections of this worker's slices (both families) due
    /// since the last step (`elapsed_ms` ago), so that each goes out once per
    /// `sync_refresh_period`.
    pub(super) fn sync_refresh(&mut self, elapsed_ms: u64, now_ms: u64) {
        let sync = &self.dp.sync;
        let period = u64::from(self.snap.sysctls.sync_refresh_period) * 1000;
        if period == 0 || !sync.is_master() {
            return;
        }
        let st = self.dp.stats.worker(self.index);
        let step = Step {
            sync,
            worker: self.index,
            st,
            elapsed_ms,
            period,
            now_ms,
        };
        step.walk(&self.dp.conns, self.aging.clone(), &mut self.sync_walk);
        step.walk(&self.dp.conns6, self.aging6.clone(), &mut self.sync_walk6);
    }
}

/// One step of the refresh walks.
struct Step<'a> {
    sync: &'a SyncOut,
    worker: usize,
    st: &'a WorkerStats,
    elapsed_ms: u64,
    period: u64,
    now_ms: u64,
}

impl Step<'_> {
    /// Walks `range` of `conns` as far as `walk` is owed: a slice of n entries walked in
    /// `period` is n * elapsed / period entries now, the remainder carried to the next step.
    fn walk<F: Family>(&self, conns: &ConnTable<F>, range: Range<usize>, walk: &mut RefreshWalk)
    where
        SyncConn<F::Addr>: Into<SyncEntry>,
    {
        let walked = conns.in_use(range.clone()).len() as u64;
        walk.credit = walk
            .credit
            .saturating_add(walked.saturating_mul(self.elapsed_ms.min(self.period)));
        let budget = walk.credit / self.period;
        walk.credit %= self.period;
        conns.visit(
            range,
            &mut walk.cursor,
            usize::try_from(budget).unwrap_or(usize::MAX),
            |c: ConnInfo<F::Addr>| {
                if syncable(c.proto, c.state) {
                    queue(
                        self.sync,
                        self.worker,
                        self.st,
                        entry_of(&c, self.now_ms).into(),
                    );
                }
            },
        );
    }
}

fn queue(sync: &SyncOut, worker: usize, st: &WorkerStats, c: SyncEntry) {
    st.event(if sync.push(worker, c) {
        Event::SyncQueued
    } else {
        Event::SyncQueueOverflow
    });
}
