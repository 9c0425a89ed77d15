//! Connection events for the sync master (see `crate::sync`): a new state the kernel syncs, a
//! template a new connection used, and the periodic refresh walk. Nothing is queued unless
//! this director is the sync master; no event waits for room.

use super::Pipeline;
use crate::conntrack::{ConnState, Hit};
use crate::persist::Key;
use crate::sched::Flow;
use crate::service::{Dest, Service};
use crate::stats::{Event, WorkerStats};
use crate::sync::{entry_of, syncable, SyncConn, SyncOut};

impl Pipeline {
    /// `hit`'s connection has just entered `state` (or was made in it).
    #[inline]
    pub(super) fn sync_state_change(&self, hit: &Hit, state: ConnState) {
        let sync = &self.dp.sync;
        if !sync.is_master() || !syncable(hit.proto, state) {
            return;
        }
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
        queue(sync, self.index, self.stats(), c);
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
        let key = Key::of(svc, proto, flow);
        let c = SyncConn {
            proto,
            state: ConnState::None,
            template: true,
            client: (key.cnet, 0),
            virt: (key.vip, key.vport),
            real: (d.addr4(), d.spec.port),
            timeout_s,
            fwmark: 0,
        };
        queue(sync, self.index, self.stats(), c);
    }

    /// Re-queues the synced-state connections of this worker's slice due since the last step
    /// (`elapsed_ms` ago), so that each goes out once per `sync_refresh_period`.
    pub(super) fn sync_refresh(&mut self, elapsed_ms: u64, now_ms: u64) {
        let sync = &self.dp.sync;
        let period = u64::from(self.snap.sysctls.sync_refresh_period) * 1000;
        if period == 0 || !sync.is_master() {
            return;
        }
        // Entry-milliseconds owed since the last step: a slice of n entries walked in `period`
        // is n * elapsed / period entries now, the remainder carried to the next step.
        let walked = self.dp.conns.in_use(self.aging.clone()).len() as u64;
        self.sync_credit = self
            .sync_credit
            .saturating_add(walked.saturating_mul(elapsed_ms.min(period)));
        let budget = self.sync_credit / period;
        self.sync_credit %= period;
        let st = self.dp.stats.worker(self.index);
        self.dp.conns.visit(
            self.aging.clone(),
            &mut self.sync_cursor,
            usize::try_from(budget).unwrap_or(usize::MAX),
            |c| {
                if syncable(c.proto, c.state) {
                    queue(sync, self.index, st, entry_of(&c, now_ms));
                }
            },
        );
    }
}

fn queue(sync: &SyncOut, worker: usize, st: &WorkerStats, c: SyncConn) {
    st.event(if sync.push(worker, c) {
        Event::SyncQueued
    } else {
        Event::SyncQueueOverflow
    });
}
