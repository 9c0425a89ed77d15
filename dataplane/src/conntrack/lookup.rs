//! Lookups, and the burst prefetch in front of them.
//!
//! Lookups never wait and write nothing (unless they meet an expired entry, which they remove,
//! see `remove.rs`): they read slot words, then the entry's words, and validate with the
//! generation (the seqlock read of `entry.rs`). Only a fully inserted (`LIVE`) entry is ever
//! returned, and only if its tuple matches the one looked up, so a stale slot or a reused entry
//! reads as a miss, never as a wrong mapping. A hit reads one bucket line and one entry line,
//! a miss one bucket line (the second bucket only when the first overflowed, see `index.rs`).

use super::entry::{expires_of, gen_of, EntryView};
use super::family::Family;
use super::index::{matching, prefetch, scan, slot_dir, slot_idx, Place, Prefetched};
use super::{ConnRef, ConnTable, Hit, Tuple};

impl<F: Family> ConnTable<F> {
    /// Whether a live entry is dead in all but name: expired at `now`. (A connection of a
    /// removed real server is not: it goes on until it ends or times out.)
    #[inline]
    pub(super) fn stale(&self, v: &EntryView<F>, now: u64) -> bool {
        expires_of(v.meta) <= now
    }

    /// Burst prefetch, stage 1: starts loading `t`'s first bucket into the cache. A worker
    /// calls this for every packet of a burst, then [`ConnTable::prefetch_entry`] with what it
    /// returned for every packet, then handles them: the cache misses of a large table (a
    /// bucket line, then an entry line, one after the other for each packet) overlap across
    /// the burst instead of adding up. A hint only: it changes nothing and never faults.
    #[inline]
    pub fn prefetch_bucket(&self, t: &Tuple<F::Addr>) -> Prefetched {
        let place = self.place(t);
        if let Some(b) = self.bucket(place.b1) {
            prefetch(b);
        }
        Prefetched {
            place,
            candidate: 0,
        }
    }

    /// Burst prefetch, stage 2: starts loading the entries the tuple's first bucket points to
    /// with its tag (nearly always one: its connection), and keeps the first of those slot
    /// words in `p` for [`ConnTable::lookup_prefetched`] and [`ConnTable::prefetched_hit`].
    /// Reads the bucket, so call it once [`ConnTable::prefetch_bucket`] has had the rest of
    /// the burst to bring it in.
    #[inline]
    pub fn prefetch_entry(&self, p: &mut Prefetched) {
        let Some(b) = self.bucket(p.place.b1) else {
            return;
        };
        let (words, m) = scan(b, p.place.tag);
        for w in matching(&words, m) {
            if let Some(e) = self.entry(slot_idx(w)) {
                prefetch(e);
            }
        }
        p.candidate = matching(&words, m).next().unwrap_or(0);
    }

    /// Finds the connection a packet with tuple `t` belongs to, in either direction. An entry
    /// found expired at `now` is removed and not returned.
    /// Lock-free; never blocks.
    #[inline]
    pub fn lookup(&self, t: &Tuple<F::Addr>, now: u64) -> Option<Hit<F::Addr>> {
        self.lookup_at(t, &self.place(t), now)
    }

    /// [`ConnTable::lookup`] of a tuple the burst prefetch looked at (`p`, from
    /// [`ConnTable::prefetch_bucket`] of this very tuple): its hash is not worked out again,
    /// and the entry its first bucket named then is tried first, without reading the bucket
    /// again. That entry is validated as any other (live, not expired, its own tuple `t` in
    /// the slot's direction): the bucket may have changed since, but a live entry holding
    /// `t` is `t`'s connection wherever it was found, since no two live entries share a tuple.
    /// With `trust_miss`, no candidate in a first bucket that never overflowed is a miss
    /// without a second look: the caller vouches that nothing it could be looking for was
    /// inserted into that bucket since the prefetch read it (see `Pipeline::tcp_udp`: a
    /// connection another worker inserted since is found by the insert that follows a miss, a
    /// reply cannot overtake the insert of its connection, and this worker's own inserts in the
    /// burst are tracked by bucket).
    /// Anything else takes the full lookup.
    #[inline]
    pub fn lookup_prefetched(
        &self,
        t: &Tuple<F::Addr>,
        p: &Prefetched,
        trust_miss: bool,
        now: u64,
    ) -> Option<Hit<F::Addr>> {
        if trust_miss && p.candidate == 0 && !self.overflowed(p.place.b1) {
            return None;
        }
        self.prefetched_hit(t, p, now)
            .or_else(|| self.lookup_at(t, &p.place, now))
    }

    /// `t`'s connection, read only, if it is the entry the burst prefetch's `p` (from
    /// [`ConnTable::prefetch_bucket`] of this very tuple) named: the fast path's lookup. `None`
    /// says nothing of whether the table holds `t`: the entry named may be another
    /// connection's (freed and taken since the prefetch), expired, or still pending, and a
    /// tuple in its second bucket has no candidate at all. The buckets are not read again here:
    /// the caller's full lookup ([`ConnTable::lookup_prefetched`]) does that, and a second way
    /// to a hit cost every established packet instructions. Always inlined: out of line, its
    /// `Hit` came back through memory (IPv6's established packets 0.90-0.94x the time
    /// inlined, benches/RESULTS.md).
    #[inline(always)]
    pub fn prefetched_hit(
        &self,
        t: &Tuple<F::Addr>,
        p: &Prefetched,
        now: u64,
    ) -> Option<Hit<F::Addr>> {
        if p.candidate == 0 {
            return None;
        }
        let (idx, dir) = (slot_idx(p.candidate), slot_dir(p.candidate));
        let v = self.read(idx)?;
        (v.is_live() && v.matches(dir, t) && !self.stale(&v, now)).then(|| v.hit(idx, dir))
    }

    #[inline]
    fn lookup_at(&self, t: &Tuple<F::Addr>, p: &Place, now: u64) -> Option<Hit<F::Addr>> {
        // A stale entry may hide a newer one for the same tuple behind it: remove and look
        // again (bounded: each round removes one entry).
        for _ in 0..4 {
            let (idx, dir, v) = self.find(t, p, false)?;
            if !self.stale(&v, now) {
                return Some(v.hit(idx, dir));
            }
            self.remove(ConnRef {
                idx,
                gen: gen_of(v.meta),
            });
        }
        None
    }
}
