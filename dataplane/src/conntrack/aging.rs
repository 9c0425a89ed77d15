//! Aging, and the listing of live connections: the walks over the entry array.
//!
//! Workers age the table in bounded slices ([`ConnTable::housekeeping`]; the pipeline gives
//! each worker's share a full sweep every 2 s, a part of it each millisecond), so an expired
//! entry is freed within a sweep; a lookup that meets one first removes it and misses. While the
//! `drop_entry` defence is active the sweep also removes the half-open TCP connections it meets.
//! No timer thread. Only entries ever handed out are walked. A removed real server's connections
//! are not aged any faster: they end or time out like the others.

use super::entry::{expires_of, gen_of, live_state, EntryView};
use super::family::Family;
use super::{ConnInfo, ConnRef, ConnState, ConnTable};
use crate::atomic::Ordering;
use std::ops::Range;

/// What the aging sweep does with half-open TCP connections that have not expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HalfOpen {
    /// Left to their timeout.
    #[default]
    Keep,
    /// Removed (`drop_entry`).
    Drop,
}

/// What one aging step removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aged {
    /// Expired connections, and those of removed real servers.
    pub expired: usize,
    /// Half-open connections removed early ([`HalfOpen::Drop`]).
    pub half_open: usize,
}

impl<F: Family> ConnTable<F> {
    /// Entries ever handed out: the rest of the array has never held a connection.
    pub(super) fn used(&self) -> usize {
        self.bump.load(Ordering::Relaxed).min(self.capacity())
    }

    /// Ages up to `budget` entries of `range` (a worker's own slice, see [`ConnTable::slice`]),
    /// resuming at `*cursor`: entries expired at `now` are removed. Returns how many were
    /// removed.
    pub fn housekeeping(
        &self,
        range: Range<usize>,
        cursor: &mut usize,
        budget: usize,
        now: u64,
    ) -> usize {
        let aged = self.housekeeping_with(range, cursor, budget, now, HalfOpen::Keep);
        aged.expired + aged.half_open
    }

    /// [`ConnTable::housekeeping`], and with [`HalfOpen::Drop`] (the `drop_entry` defence)
    /// also removes the half-open TCP connections it meets (SYN_RECV, SYNACK) before their
    /// time: a SYN flood's entries go within a sweep instead of after SYN_RECV's timeout.
    pub fn housekeeping_with(
        &self,
        range: Range<usize>,
        cursor: &mut usize,
        budget: usize,
        now: u64,
        half_open: HalfOpen,
    ) -> Aged {
        let mut aged = Aged::default();
        let used = self.used();
        let range = range.start.min(used)..range.end.min(used);
        if range.is_empty() {
            return aged;
        }
        for _ in 0..budget.min(range.len()) {
            if !range.contains(cursor) {
                *cursor = range.start;
            }
            let idx = *cursor;
            *cursor += 1;
            let Some(e) = self.entry(idx as u32) else {
                continue;
            };
            let m = F::meta(e).load(Ordering::Acquire);
            let Some(state) = live_state(m) else {
                continue;
            };
            let conn = ConnRef {
                idx: idx as u32,
                gen: gen_of(m),
            };
            if expires_of(m) <= now {
                if self.remove(conn) {
                    aged.expired += 1;
                }
            } else if half_open == HalfOpen::Drop
                && matches!(state, ConnState::SynRecv | ConnState::SynAck)
                && self.remove(conn)
            {
                aged.half_open += 1;
            }
        }
        aged
    }

    /// Worker `index`'s share of the entries when `workers` workers age the table.
    pub fn slice(&self, index: usize, workers: usize) -> Range<usize> {
        let workers = workers.max(1);
        let index = index % workers;
        let n = self.capacity();
        (n * index / workers)..(n * (index + 1) / workers)
    }

    /// Calls `f` for every live connection (for listing; not on the packet path).
    pub fn for_each(&self, mut f: impl FnMut(ConnInfo<F::Addr>)) {
        for idx in 0..self.used() {
            if let Some(c) = self.info(idx) {
                f(c);
            }
        }
    }

    /// The part of `range` that has ever held a connection: what a walk of it looks at.
    pub fn in_use(&self, range: Range<usize>) -> Range<usize> {
        let used = self.used();
        range.start.min(used)..range.end.min(used)
    }

    /// Calls `f` for the live connections among up to `budget` entries of `range`, resuming
    /// at `*cursor` and wrapping around (as [`ConnTable::housekeeping`] walks): the sync
    /// refresh walks a worker's slice this way.
    pub fn visit(
        &self,
        range: Range<usize>,
        cursor: &mut usize,
        budget: usize,
        mut f: impl FnMut(ConnInfo<F::Addr>),
    ) {
        let range = self.in_use(range);
        for _ in 0..budget.min(range.len()) {
            if !range.contains(cursor) {
                *cursor = range.start;
            }
            if let Some(c) = self.info(*cursor) {
                f(c);
            }
            *cursor += 1;
        }
    }

    /// Entry `idx` if it holds a live connection.
    fn info(&self, idx: usize) -> Option<ConnInfo<F::Addr>> {
        let v = self
            .read(u32::try_from(idx).ok()?)
            .filter(EntryView::is_live)?;
        let hit = v.hit(u32::try_from(idx).ok()?, super::Dir::Inbound);
        Some(ConnInfo {
            proto: hit.proto,
            state: v.state,
            expires_ms: expires_of(v.meta),
            dest: hit.dest,
            client: hit.client,
            virt: hit.virt,
            real: hit.real,
        })
    }
}
