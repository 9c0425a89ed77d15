//! The lock-free insert: one connection, both tuples, any worker, any time, with no lock.
//!
//! 1. take a free entry (per-thread free-list shard, see `free.rs`), mark it `BUSY` with a new
//!    generation, write its fields, then mark it `PENDING` (release);
//! 2. claim an empty slot for each tuple with a compare-and-swap from 0;
//! 3. a `SeqCst` fence, then scan both tuples' buckets (the second one if the first's
//!    overflow bit is set: a rival sets that bit before its own fence) for another entry with
//!    the same tuple.
//!    A `LIVE` one makes this insert lose (`Exists` / `ReplyConflict`). Of two `PENDING` ones
//!    the lower entry index has priority: the lower one kills the higher with a CAS of the
//!    other's meta (`PENDING -> FREE`), the higher one backs off by itself;
//! 4. commit with one CAS of its own meta `PENDING -> LIVE`. That CAS fails only if a
//!    higher-priority insert killed it; the loser then clears its slots and frees its entry.
//!
//! **Exactly one of two concurrent inserts of a tuple wins**: both claim a slot, then fence,
//! then scan, so (store-buffering is forbidden across `SeqCst` fences) at least one sees the
//! other. If both see each other, the priority order decides. If only the higher-priority one
//! (lower index) sees the other, it kills it before its own commit, or finds it already
//! `LIVE` and loses to it. If only the lower-priority one sees the other, it backs off. A
//! commit and a kill are CASes on the same word, so they cannot both succeed. The entry with
//! the lowest index among contenders is never killed, so some insert always completes: the
//! algorithm is lock-free (not wait-free: a thread killed repeatedly gives up after
//! `INSERT_ATTEMPTS` with [`InsertError::Busy`]). The loom model in `loom_model.rs` checks
//! this exhaustively on a small table.
//!
//! An insert counts its connection in the real server's counters before its commit (so a
//! removal, which needs the entry live, never counts down before this counted up), and takes
//! the count back if it loses.
//!
//! When both buckets of a tuple are full (not at this load, short of an attack on the hash
//! keys), the insert removes a stale entry there or evicts the SYN_RECV one that expires
//! first, and tries once more; else it fails `Full`.

use super::entry::{
    expires_of, gen_of, live_code, pack, pending_code, state_of, EntryView, EXP_MAX, ST_BUSY,
    ST_FREE,
};
use super::family::Family;
use super::index::{
    empty_mask, load_slots, matching, scan, slot_dir, slot_idx, slot_word, Bucket, BucketSet,
    Place, FIRST_FIT, SLOTS,
};
use super::state::{ConnState, Dir};
use super::{ConnRef, ConnTable, DestCounts, Hit, InsertError, NewConn, Tuple};
use crate::atomic::{fence, AtomicU64, Ordering};

/// Attempts of an insert that keeps being killed by concurrent inserts of the same tuple.
const INSERT_ATTEMPTS: usize = 4;

/// Claims for `word` one of `bucket`'s slots that `empty` (a bit per slot, [`empty_mask`])
/// saw empty, trying them from slot `entry index % SLOTS` on, wrapping: concurrent inserts
/// into one bucket mostly CAS different words.
#[inline]
fn claim_empty(bucket: &Bucket, empty: u32, word: u64) -> Option<&AtomicU64> {
    let start = slot_idx(word) as usize % SLOTS;
    // Bit j of `m`: slot (start + j) % SLOTS.
    let all = (1u32 << SLOTS) - 1;
    let mut m = ((empty >> start) | (empty << (SLOTS - start))) & all;
    while m != 0 {
        let s = bucket
            .slots
            .get((start + m.trailing_zeros() as usize) % SLOTS)?;
        m &= m - 1;
        if s.compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return Some(s);
        }
    }
    None
}

impl<F: Family> ConnTable<F> {
    /// A live or pending connection using `t` (stale live ones are removed on the way): the
    /// error an insert of a connection with inbound tuple `inb` gets for it. A new connection's
    /// tuples nearly never meet a slot with their tag: that answer comes inline, from one scan
    /// (out of line, the search's setup for the entries it then never read cost some 50
    /// instructions a tuple).
    #[inline]
    fn conflict(
        &self,
        t: &Tuple<F::Addr>,
        p: &Place,
        inb: &Tuple<F::Addr>,
        now: u64,
    ) -> Option<InsertError<F::Addr>> {
        if !self.may_hold_entry(p) {
            return None;
        }
        self.conflict_in_entries(t, p, inb, now)
    }

    /// [`ConnTable::conflict`] once a slot carries the tuple's tag.
    #[inline(never)]
    fn conflict_in_entries(
        &self,
        t: &Tuple<F::Addr>,
        p: &Place,
        inb: &Tuple<F::Addr>,
        now: u64,
    ) -> Option<InsertError<F::Addr>> {
        for _ in 0..4 {
            let (idx, _, v) = self.find(t, p, true)?;
            if v.is_live() && self.stale(&v, now) {
                self.remove(ConnRef {
                    idx,
                    gen: gen_of(v.meta),
                });
                continue;
            }
            return Some(Self::loss(inb, &v, idx));
        }
        None
    }

    /// What an insert of a connection with inbound tuple `inb` is told about a rival that holds
    /// one of its tuples: the same connection (`Exists`) or another one (`ReplyConflict`).
    fn loss(inb: &Tuple<F::Addr>, v: &EntryView<F>, idx: u32) -> InsertError<F::Addr> {
        if v.matches(Dir::Inbound, inb) {
            InsertError::Exists(v.hit(idx, Dir::Inbound))
        } else {
            InsertError::ReplyConflict
        }
    }

    /// Inserts a new connection (both tuples) at time `now`. Entries for either tuple that
    /// are expired at `now` are removed first. Lock-free; see the module documentation.
    pub fn insert(
        &self,
        c: &NewConn<F::Addr>,
        now: u64,
    ) -> Result<Hit<F::Addr>, InsertError<F::Addr>> {
        self.insert_noting(c, now, &mut BucketSet::default())
    }

    /// [`ConnTable::insert`] that adds, when it inserts, both tuples' first buckets to
    /// `inserted` (the burst prefetch's caller keeps that set, see [`BucketSet`]): from the
    /// insert's own placement, so no hash is worked out again.
    pub fn insert_noting(
        &self,
        c: &NewConn<F::Addr>,
        now: u64,
        inserted: &mut BucketSet,
    ) -> Result<Hit<F::Addr>, InsertError<F::Addr>> {
        let expires = now.saturating_add(u64::from(self.slots.timeouts.get_ms(c.state)));
        self.insert_until_noting(c, now, expires, inserted)
    }

    /// [`ConnTable::insert`] with the expiry given: a connection copied from another
    /// director's table (IPVS sync) keeps the time it had left there.
    pub fn insert_until(
        &self,
        c: &NewConn<F::Addr>,
        now: u64,
        expires: u64,
    ) -> Result<Hit<F::Addr>, InsertError<F::Addr>> {
        self.insert_until_noting(c, now, expires, &mut BucketSet::default())
    }

    fn insert_until_noting(
        &self,
        c: &NewConn<F::Addr>,
        now: u64,
        expires: u64,
        inserted: &mut BucketSet,
    ) -> Result<Hit<F::Addr>, InsertError<F::Addr>> {
        let dest = self.dest(c.dest).ok_or(InsertError::DestRetired)?;
        if self.dest_retired(c.dest) {
            return Err(InsertError::DestRetired);
        }
        let words = F::encode(c).ok_or(if (c.dest as usize) < F::MAX_DEST_SLOTS {
            InsertError::Full
        } else {
            InsertError::DestRetired
        })?;
        let (inb, rep) = (c.inbound(), c.reply());
        let (pi, pr) = (self.place(&inb), self.place(&rep));
        let expires = expires.min(EXP_MAX);

        for _ in 0..INSERT_ATTEMPTS {
            // What is there already, live or being inserted by another worker.
            // (Both tuples are looked at, so expired entries of both are reaped.)
            let (ci, cr) = (
                self.conflict(&inb, &pi, &inb, now),
                self.conflict(&rep, &pr, &inb, now),
            );
            if let Some(e) = ci.or(cr) {
                return Err(e);
            }

            let idx = self.alloc(now).ok_or(InsertError::Full)?;
            let Some(e) = self.entry(idx) else {
                return Err(InsertError::Full);
            };
            // Seqlock write: busy with the next generation, fields, then pending (release).
            let meta = F::meta(e);
            let gen = gen_of(meta.load(Ordering::Relaxed)).wrapping_add(1);
            meta.store(pack(gen, ST_BUSY, 0), Ordering::Relaxed);
            fence(Ordering::Release);
            F::store(e, &words);
            let pending = pack(gen, pending_code(c.state), expires);
            meta.store(pending, Ordering::Release);

            let wi = slot_word(idx, Dir::Inbound, pi.tag);
            let wr = slot_word(idx, Dir::Reply, pr.tag);
            let Some(si) = self.claim_slot(&inb, &pi, wi, now) else {
                self.release(idx, gen, [None, None], None);
                return Err(InsertError::Full);
            };
            let Some(sr) = self.claim_slot(&rep, &pr, wr, now) else {
                self.release(idx, gen, [Some(si), None], None);
                return Err(InsertError::Full);
            };
            // Count before the commit, so that a removal (which needs the entry live) never
            // counts down before this counted up.
            dest.add(c.state, 1);

            // Both slots are visible to everybody before we look for a rival: of two inserts
            // of one tuple, at least one sees the other.
            fence(Ordering::SeqCst);
            if let Some(err) = self.settle(idx, [(&inb, &pi), (&rep, &pr)], now) {
                self.release(idx, gen, [Some(si), Some(sr)], Some((dest, c.state)));
                return Err(err);
            }
            let live = pack(gen, live_code(c.state), expires);
            if meta
                .compare_exchange(pending, live, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                inserted.add(pi.b1);
                inserted.add(pr.b1);
                return Ok(Hit {
                    conn: ConnRef { idx, gen },
                    dir: Dir::Inbound,
                    state: c.state,
                    proto: c.proto,
                    dest: c.dest,
                    client: c.client,
                    virt: c.virt,
                    real: c.real,
                });
            }
            // Killed by an insert of the same tuple with priority over us: undo, and look
            // again (the winner is pending or live now).
            self.release(idx, gen, [Some(si), Some(sr)], Some((dest, c.state)));
        }
        Err(InsertError::Busy)
    }

    /// Looks for rivals of pending entry `idx` (same tuple, other entry) in both tuples'
    /// buckets: `Some(error)` if this insert must give way, `None` if it may commit (rivals
    /// of lower priority were killed).
    fn settle(
        &self,
        idx: u32,
        tuples: [(&Tuple<F::Addr>, &Place); 2],
        now: u64,
    ) -> Option<InsertError<F::Addr>> {
        let inb = tuples[0].0;
        for (t, p) in tuples {
            // A rival in the second bucket set the overflow bit before its fence: after ours,
            // either we see the bit or it sees our slot.
            let (bs, n) = self.search_of(t, p);
            for b in bs.iter().take(n) {
                let Some(bucket) = self.bucket(*b) else {
                    continue;
                };
                let (words, m) = scan(bucket, p.tag);
                for w in matching(&words, m) {
                    if slot_idx(w) == idx {
                        continue;
                    }
                    let (oidx, odir) = (slot_idx(w), slot_dir(w));
                    // A pending rival changes state once; a live one makes us lose.
                    for _ in 0..4 {
                        let Some(v) = self.read(oidx) else {
                            break;
                        };
                        if !v.matches(odir, t) {
                            break;
                        }
                        let ogen = gen_of(v.meta);
                        if v.is_live() {
                            if self.stale(&v, now) {
                                self.remove(ConnRef {
                                    idx: oidx,
                                    gen: ogen,
                                });
                                break;
                            }
                            return Some(Self::loss(inb, &v, oidx));
                        }
                        if oidx < idx {
                            // Its priority is higher: give way.
                            return Some(Self::loss(inb, &v, oidx));
                        }
                        let Some(oe) = self.entry(oidx) else {
                            break;
                        };
                        if F::meta(oe)
                            .compare_exchange(
                                v.meta,
                                pack(ogen, ST_FREE, 0),
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                        {
                            break; // killed it; its owner cleans up
                        }
                        // It changed (committed, or was killed): look again.
                    }
                }
            }
        }
        None
    }

    /// Undoes a pending insert: free (unless a rival killed it already), slots cleared,
    /// counts taken back, entry back on the free list.
    fn release(
        &self,
        idx: u32,
        gen: u16,
        slots: [Option<&AtomicU64>; 2],
        counted: Option<(&DestCounts, ConnState)>,
    ) {
        let Some(e) = self.entry(idx) else {
            return;
        };
        let meta = F::meta(e);
        let mut m = meta.load(Ordering::Acquire);
        while gen_of(m) == gen && state_of(m) != ST_FREE {
            match meta.compare_exchange_weak(
                m,
                pack(gen, ST_FREE, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(cur) => m = cur,
            }
        }
        for s in slots.into_iter().flatten() {
            s.store(0, Ordering::Release);
        }
        if let Some((d, st)) = counted {
            d.add(st, -1);
        }
        self.push_free(idx);
    }

    /// Claims an empty slot for `word` of tuple `t` (placed at `p`): in its first bucket while
    /// that has fewer than [`FIRST_FIT`] slots taken (lookups then read one bucket), else in
    /// the emptier of the two (two-choice balancing, so that both never fill up at the table's
    /// load). When both are full, reaps or evicts something there (see `make_room_in`) and
    /// tries once more. The scan of a bucket starts at a slot picked by the entry index, so
    /// concurrent inserts into one bucket mostly CAS different words. The common case, a first
    /// bucket with room, is inline: one load of the bucket, a CAS on an empty slot.
    #[inline]
    fn claim_slot(&self, t: &Tuple<F::Addr>, p: &Place, word: u64, now: u64) -> Option<&AtomicU64> {
        if let Some(bucket) = self.bucket(p.b1) {
            let empty = empty_mask(&load_slots(bucket));
            if SLOTS - (empty.count_ones() as usize) < FIRST_FIT {
                if let Some(s) = claim_empty(bucket, empty, word) {
                    return Some(s);
                }
            }
        }
        self.claim_slot_anywhere(t, p, word, now)
    }

    /// [`ConnTable::claim_slot`] beyond its common case.
    #[inline(never)]
    fn claim_slot_anywhere(
        &self,
        t: &Tuple<F::Addr>,
        p: &Place,
        word: u64,
        now: u64,
    ) -> Option<&AtomicU64> {
        let (b1, b2) = (p.b1, self.second_bucket(t));
        let n = if b1 == b2 { 1 } else { 2 };
        for round in 0..2 {
            let u1 = self.taken(b1);
            let order = if n == 2 && u1 >= FIRST_FIT && self.taken(b2) < u1 {
                [b2, b1]
            } else {
                [b1, b2]
            };
            for b in order.into_iter().take(n) {
                if b != b1 {
                    // Before the slot in the second bucket exists, lookups must be told to
                    // look there.
                    self.mark_overflow(b1);
                }
                if let Some(s) = self.claim_in(b, word) {
                    return Some(s);
                }
            }
            let candidates = [b1, b2];
            let candidates = candidates.get(..n).unwrap_or(&candidates);
            if round == 0 && !self.make_room_in(candidates, now) {
                break;
            }
        }
        None
    }

    /// Slots taken in bucket `b`.
    fn taken(&self, b: usize) -> usize {
        self.bucket(b).map_or(SLOTS, |bk| {
            SLOTS - empty_mask(&load_slots(bk)).count_ones() as usize
        })
    }

    /// Claims for `word` a slot of bucket `b` that is empty now.
    fn claim_in(&self, b: usize, word: u64) -> Option<&AtomicU64> {
        let bucket = self.bucket(b)?;
        claim_empty(bucket, empty_mask(&load_slots(bucket)), word)
    }

    /// Frees a slot in `buckets` (an insert's candidates): removes a stale entry there, else
    /// evicts the SYN_RECV one with the earliest expiry. False if neither exists.
    fn make_room_in(&self, buckets: &[usize], now: u64) -> bool {
        let mut victim: Option<(u32, EntryView<F>)> = None;
        for b in buckets {
            let Some(bucket) = self.bucket(*b) else {
                continue;
            };
            for s in &bucket.slots {
                let w = s.load(Ordering::Acquire);
                if w == 0 {
                    continue;
                }
                let Some(v) = self.read(slot_idx(w)).filter(EntryView::is_live) else {
                    continue;
                };
                let r = ConnRef {
                    idx: slot_idx(w),
                    gen: gen_of(v.meta),
                };
                if self.stale(&v, now) {
                    self.remove(r);
                    return true;
                }
                if v.state == ConnState::SynRecv
                    && victim.is_none_or(|(_, b)| expires_of(v.meta) < expires_of(b.meta))
                {
                    victim = Some((r.idx, v));
                }
            }
        }
        self.evict(victim)
    }

    pub(super) fn evict(&self, victim: Option<(u32, EntryView<F>)>) -> bool {
        let Some((idx, v)) = victim else {
            return false;
        };
        let r = ConnRef {
            idx,
            gen: gen_of(v.meta),
        };
        if self.remove(r) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// For every start slot and every set of empty slots, `claim_empty` takes the first empty
    /// slot from the start on, wrapping (as a scan of the bucket from there would), and
    /// nothing when none is empty.
    #[test]
    fn a_claim_takes_the_first_empty_slot_from_its_start() {
        for start in 0..SLOTS {
            for empty in 0..(1u32 << SLOTS) {
                let bucket = Bucket::default();
                for (k, s) in bucket.slots.iter().enumerate() {
                    if empty & (1 << k) == 0 {
                        s.store(
                            slot_word(1000 + k as u32, Dir::Inbound, 7),
                            Ordering::Relaxed,
                        );
                    }
                }
                // An entry index that picks `start`.
                let word = slot_word(start as u32 + SLOTS as u32 * 5, Dir::Reply, 9);
                let want = (0..SLOTS)
                    .map(|j| (start + j) % SLOTS)
                    .find(|&k| empty & (1 << k) != 0);
                let got = claim_empty(&bucket, empty, word).map(|s| {
                    bucket
                        .slots
                        .iter()
                        .position(|x| std::ptr::eq(x, s))
                        .unwrap()
                });
                assert_eq!(got, want, "start {start}, empty {empty:#b}");
                if let Some(k) = want {
                    assert_eq!(bucket.slots[k].load(Ordering::Relaxed), word);
                }
            }
        }
    }
}
