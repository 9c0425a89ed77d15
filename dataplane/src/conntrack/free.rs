//! Free entries, and what an insert does when there is none (a full table, a SYN flood).
//!
//! Free entries live in [`SHARDS`] tagged Treiber stacks plus never-used ranges handed out in
//! chunks; each thread pops from and pushes to its own shard (chosen once per thread) and
//! steals from the others only when its own is empty, so two workers do not contend on one
//! free-list head. A free entry's link word (`family.rs`) holds its free-list link.
//!
//! When no entry is free, an insert first looks at a window of [`EVICT_SCAN`] entries (from a
//! shared cursor): an expired entry there is reaped; else the SYN_RECV entry with the earliest
//! expiry is evicted (counted in [`ConnTable::evictions`]) and its entry reused. Only if the
//! window has neither does the insert fail with [`InsertError::Full`](super::InsertError::Full)
//! (the pipeline drops and counts the packet). Established connections are never evicted.

use super::entry::{expires_of, gen_of, EntryView};
use super::family::Family;
use super::state::ConnState;
use super::{ConnRef, ConnTable};
use crate::atomic::{AtomicI64, AtomicU64, Ordering};

/// Entries an insert looks at for something to reap or evict when no entry is free.
pub const EVICT_SCAN: usize = 64;

/// Free-list shards. Each thread uses one (picked once per thread, round robin), so two workers
/// do not share a free-list head.
#[cfg(not(loom))]
pub const SHARDS: usize = 16;
#[cfg(loom)]
pub const SHARDS: usize = 2;
/// Never-used entries a shard takes from the table's bump pointer at a time.
#[cfg(not(loom))]
const CHUNK: usize = 64;
#[cfg(loom)]
const CHUNK: usize = 1;

#[derive(Debug, Default)]
pub(super) struct Shard {
    /// Treiber stack head: ABA tag 32 | entry index + 1 (32).
    head: AtomicU64,
    /// Never-used entries held by this shard: next 32 | end 32.
    fresh: AtomicU64,
    /// Entries taken by this shard's threads less those they gave back: summed over the shards,
    /// the table's length (see `ConnTable::len`). On the line the thread's pops and pushes
    /// write anyway.
    taken: AtomicI64,
}

impl Shard {
    pub(super) fn taken(&self) -> i64 {
        self.taken.load(Ordering::Relaxed)
    }
}

#[cfg(not(loom))]
fn shard_index() -> usize {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD
        .try_with(|s| {
            let v = s.get();
            if v != usize::MAX {
                return v;
            }
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS;
            s.set(n);
            n
        })
        .unwrap_or(0)
}

/// Under loom every thread shares shard 0 (contended pops and pushes are what to check), and
/// the rest is reached by stealing.
#[cfg(loom)]
fn shard_index() -> usize {
    0
}

impl<F: Family> ConnTable<F> {
    /// Shard `i % SHARDS`.
    #[inline]
    #[allow(clippy::indexing_slicing)] // `i % SHARDS` indexes an array of SHARDS: in bounds
    fn shard(&self, i: usize) -> &Shard {
        &self.shards[i % SHARDS]
    }

    fn my_shard(&self) -> &Shard {
        self.shard(shard_index())
    }

    /// A free entry: this thread's free list, its never-used chunk (refilled from the bump
    /// pointer), then the other shards'; when all are empty, reaps or evicts (bounded) and
    /// tries again.
    pub(super) fn alloc(&self, now: u64) -> Option<u32> {
        if let Some(i) = self.take_free() {
            return Some(i);
        }
        for _ in 0..2 {
            if !self.make_room(now) {
                break;
            }
            if let Some(i) = self.take_free() {
                return Some(i);
            }
        }
        None
    }

    fn take_free(&self) -> Option<u32> {
        let me = shard_index();
        let own = self.shard(me);
        let i = self.take_from(me, own)?;
        own.taken.fetch_add(1, Ordering::Relaxed);
        Some(i)
    }

    fn take_from(&self, me: usize, own: &Shard) -> Option<u32> {
        if let Some(i) = self.pop(own).or_else(|| self.take_fresh(own)) {
            return Some(i);
        }
        if let Some(i) = self.refill(own) {
            return Some(i);
        }
        for k in 1..SHARDS {
            let s = self.shard(me + k);
            if let Some(i) = self.pop(s).or_else(|| self.take_fresh(s)) {
                return Some(i);
            }
        }
        None
    }

    /// One never-used entry from `s`'s chunk.
    fn take_fresh(&self, s: &Shard) -> Option<u32> {
        let mut f = s.fresh.load(Ordering::Relaxed);
        loop {
            let (next, end) = ((f >> 32) as u32, f as u32);
            if next >= end {
                return None;
            }
            match s.fresh.compare_exchange_weak(
                f,
                (u64::from(next + 1) << 32) | u64::from(end),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(next),
                Err(cur) => f = cur,
            }
        }
    }

    /// Takes a new chunk of never-used entries for `s` and returns its first one.
    fn refill(&self, s: &Shard) -> Option<u32> {
        let cap = self.capacity();
        if self.bump.load(Ordering::Relaxed) >= cap {
            return None;
        }
        let start = self.bump.fetch_add(CHUNK, Ordering::Relaxed);
        if start >= cap {
            return None;
        }
        let end = (start + CHUNK).min(cap) as u32;
        let start = start as u32;
        let old = s.fresh.load(Ordering::Relaxed);
        let (next, oend) = ((old >> 32) as u32, old as u32);
        let new = (u64::from(start + 1) << 32) | u64::from(end);
        if next >= oend
            && s.fresh
                .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(start);
        }
        // Another thread of this shard installed a chunk meanwhile (more threads than
        // shards): keep ours on the free list instead.
        for i in start + 1..end {
            self.push_free_to(s, i);
        }
        Some(start)
    }

    /// When no entry is free: looks at [`EVICT_SCAN`] entries from the shared cursor and
    /// removes an expired one, else evicts the SYN_RECV one with the earliest expiry. False if
    /// it found neither.
    fn make_room(&self, now: u64) -> bool {
        let used = self.used();
        if used == 0 {
            return false;
        }
        let n = EVICT_SCAN.min(used);
        let start = self.evict_cursor.fetch_add(n, Ordering::Relaxed) % used;
        let mut victim: Option<(u32, EntryView<F>)> = None;
        for k in 0..n {
            let idx = ((start + k) % used) as u32;
            let Some(v) = self.read(idx).filter(EntryView::is_live) else {
                continue;
            };
            if self.stale(&v, now) {
                self.remove(ConnRef {
                    idx,
                    gen: gen_of(v.meta),
                });
                return true;
            }
            if v.state == ConnState::SynRecv
                && victim.is_none_or(|(_, b)| expires_of(v.meta) < expires_of(b.meta))
            {
                victim = Some((idx, v));
            }
        }
        self.evict(victim)
    }

    // --- tagged Treiber stacks ---------------------------------------------------------------

    fn pop(&self, s: &Shard) -> Option<u32> {
        let mut head = s.head.load(Ordering::Acquire);
        loop {
            let idx = (head as u32).checked_sub(1)?;
            let next = F::link(self.entry(idx)?).load(Ordering::Relaxed) as u32;
            let tag = ((head >> 32) as u32).wrapping_add(1);
            let new = (u64::from(tag) << 32) | u64::from(next);
            match s
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(idx),
                Err(cur) => head = cur,
            }
        }
    }

    /// Gives back an entry taken by `alloc`.
    pub(super) fn push_free(&self, idx: u32) {
        let s = self.my_shard();
        s.taken.fetch_sub(1, Ordering::Relaxed);
        self.push_free_to(s, idx);
    }

    fn push_free_to(&self, s: &Shard, idx: u32) {
        let Some(e) = self.entry(idx) else {
            return;
        };
        let mut head = s.head.load(Ordering::Relaxed);
        loop {
            // Release: a reader that sees the link in a field word also sees the entry free
            // (its seqlock check then fails), as it would for a field write of the next insert.
            F::link(e).store(head & 0xffff_ffff, Ordering::Release);
            let tag = ((head >> 32) as u32).wrapping_add(1);
            let new = (u64::from(tag) << 32) | (u64::from(idx) + 1);
            match s
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(cur) => head = cur,
            }
        }
    }
}
