//! One seqlock slot type for the small shared tables: neighbours (`neigh`), fragment decisions
//! (`frag`) and persistence templates (`persist`, one slot per bucket of templates).
//!
//! A [`SeqSlot`] holds a `Copy` value stored as `N` 64-bit words ([`Words`]) behind a sequence
//! counter: even while the value is stable, odd while a writer is in the slot.
//!
//! - **Readers** never wait and write nothing: read the counter, the words, the counter again;
//!   the copy is good if the counter was even and did not move. A read that keeps meeting
//!   writers gives up after a bounded number of tries (the tables count that as a miss).
//! - **Writers** take the slot by moving the counter from even to odd with one compare-and-swap
//!   ([`SeqSlot::lock`], or [`SeqSlot::lock_at`] for "only if nothing changed since I read it"),
//!   write through the [`SeqGuard`], and release it (counter + 2) when the guard drops. A writer
//!   that finds the slot taken does not wait: after a bounded number of tries it gives up (every
//!   table here is best effort: the next packet tries again).
//!
//! Memory ordering (Boehm, "Can seqlocks get along with programming language memory models?",
//! 2012): the writer's CAS is an acquire and is followed by a release fence, so none of its word
//! stores is seen before the counter turned odd; its unlock is a release store. The reader
//! loads the counter with acquire, the words relaxed, then an acquire fence before loading the
//! counter again, so if any word came from a later write, the second load sees that write's
//! odd (or later) counter. The words are atomics, not plain memory: a reader racing a writer
//! reads a torn value and throws it away, which on plain memory would be a data race.
//!
//! Cost: a read is `N + 2` loads of one or two cache lines and two compares; a write a CAS and
//! `N + 1` stores. The loom model (the `loom_model` tests below) checks that a reader never accepts a
//! torn value, that writers exclude each other, and that of two writers at one version exactly
//! one gets in; run it with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p dataplane --lib --release \
//!     --target-dir target/loom seqlock::loom
//! ```
//!
//! (a second, each model run both ways of `crate::atomic::model`). Mutations checked by hand:
//! dropping the reader's acquire fence or its second counter check, the writer's release fence,
//! or the CAS that takes the slot each make a model fail.
//!
//! # Why the connection table's entries are not `SeqSlot`s
//!
//! Its entry's version word (`meta` in `conntrack`) is not a bare counter: it holds the
//! connection's state and expiry beside the generation, and these change in place by CAS while
//! readers go on (a state change or an expiry refresh must not make every concurrent lookup
//! retry or miss), readers validate the generation only, and the insert protocol commits and
//! kills entries with CASes on that word (`PENDING -> LIVE`, `PENDING -> FREE`), which a lock
//! word cannot express. A free entry's fields also carry the free-list link. So the table keeps
//! its own seqlock read (`conntrack/entry.rs`), checked by its own loom model.

use crate::atomic::{fence, spin_loop, AtomicU64, Ordering};
use std::marker::PhantomData;

/// A value a [`SeqSlot`] can hold: `N` 64-bit words. The all-zero words are the value of a
/// new slot.
pub trait Words<const N: usize>: Copy {
    fn to_words(&self) -> [u64; N];
    fn from_words(words: [u64; N]) -> Self;
}

impl<const N: usize> Words<N> for [u64; N] {
    fn to_words(&self) -> [u64; N] {
        *self
    }
    fn from_words(words: [u64; N]) -> Self {
        words
    }
}

/// The counter value a read saw: what [`SeqSlot::lock_at`] expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(u64);

/// One value of type `T` behind a sequence counter. See the module documentation.
#[repr(C)]
pub struct SeqSlot<T: Words<N>, const N: usize> {
    /// Even: stable; odd: a writer is in the slot.
    seq: AtomicU64,
    words: [AtomicU64; N],
    _value: PhantomData<T>,
}

impl<T: Words<N>, const N: usize> Default for SeqSlot<T, N> {
    /// A slot holding the all-zero words.
    fn default() -> Self {
        SeqSlot {
            seq: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
            _value: PhantomData,
        }
    }
}

impl<T: Words<N>, const N: usize> std::fmt::Debug for SeqSlot<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqSlot")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Words<N>, const N: usize> SeqSlot<T, N> {
    /// One read attempt: the value and the version it was read at, or `None` if a writer was
    /// in the slot (or came and went) meanwhile.
    #[inline]
    pub fn read_versioned(&self) -> Option<(T, Version)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let words: [u64; N] =
            std::array::from_fn(|i| self.words.get(i).map_or(0, |w| w.load(Ordering::Relaxed)));
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then(|| (T::from_words(words), Version(s1)))
    }

    /// A consistent copy of the value, in at most `tries` attempts (`None`: writers kept the
    /// slot busy). Never blocks.
    #[inline]
    pub fn read(&self, tries: usize) -> Option<T> {
        for _ in 0..tries {
            if let Some((v, _)) = self.read_versioned() {
                return Some(v);
            }
            spin_loop();
        }
        None
    }

    /// Takes the slot for writing, in at most `tries` attempts (`None`: other writers kept it).
    pub fn lock(&self, tries: usize) -> Option<SeqGuard<'_, T, N>> {
        for _ in 0..tries {
            let s = self.seq.load(Ordering::Relaxed);
            if s & 1 == 0 {
                if let Some(g) = self.lock_at(Version(s)) {
                    return Some(g);
                }
            }
            spin_loop();
        }
        None
    }

    /// Takes the slot for writing if it is still at `version`, i.e. nobody wrote it since the
    /// read that returned `version`. One attempt.
    pub fn lock_at(&self, version: Version) -> Option<SeqGuard<'_, T, N>> {
        let s = version.0;
        if s & 1 == 1 {
            return None;
        }
        self.seq
            .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        // No word store may become visible before the counter is odd.
        fence(Ordering::Release);
        Some(SeqGuard { slot: self, seq: s })
    }
}

/// A slot taken for writing; dropping it releases the slot (counter + 2).
pub struct SeqGuard<'a, T: Words<N>, const N: usize> {
    slot: &'a SeqSlot<T, N>,
    /// The even counter value the slot was taken at.
    seq: u64,
}

impl<T: Words<N>, const N: usize> SeqGuard<'_, T, N> {
    /// The value in the slot (no other writer can change it while the guard lives).
    #[inline]
    pub fn get(&self) -> T {
        T::from_words(std::array::from_fn(|i| {
            self.slot
                .words
                .get(i)
                .map_or(0, |w| w.load(Ordering::Relaxed))
        }))
    }

    /// Writes `v` into the slot; readers see it once the guard drops.
    #[inline]
    pub fn set(&mut self, v: T) {
        for (w, x) in self.slot.words.iter().zip(v.to_words()) {
            w.store(x, Ordering::Relaxed);
        }
    }
}

impl<T: Words<N>, const N: usize> Drop for SeqGuard<'_, T, N> {
    fn drop(&mut self) {
        self.slot
            .seq
            .store(self.seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn write_then_read() {
        let s = SeqSlot::<[u64; 3], 3>::default();
        assert_eq!(s.read(1), Some([0, 0, 0]));
        let mut g = s.lock(1).unwrap();
        assert_eq!(g.get(), [0, 0, 0]);
        g.set([1, 2, 3]);
        assert_eq!(s.read(3), None, "busy while the guard lives");
        assert!(s.lock(3).is_none(), "one writer at a time");
        drop(g);
        assert_eq!(s.read(1), Some([1, 2, 3]));
    }

    #[test]
    fn lock_at_fails_once_the_slot_moved_on() {
        let s = SeqSlot::<[u64; 1], 1>::default();
        let (_, v0) = s.read_versioned().unwrap();
        s.lock(1).unwrap().set([7]);
        assert!(s.lock_at(v0).is_none());
        let (val, v1) = s.read_versioned().unwrap();
        assert_eq!(val, [7]);
        s.lock_at(v1).unwrap().set([8]);
        assert_eq!(s.read(1), Some([8]));
    }

    #[test]
    fn readers_never_see_torn_values() {
        // Every write stores [n, n, n, n]: a reader must never accept a mix.
        let s = SeqSlot::<[u64; 4], 4>::default();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for n in 1..200_000u64 {
                    if let Some(mut g) = s.lock(4) {
                        g.set([n; 4]);
                    }
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            sc.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(v) = s.read(2) {
                        assert!(v.iter().all(|w| *w == v[0]), "torn: {v:?}");
                    }
                }
            });
        });
    }
}

/// The loom model; see the module documentation for the command.
#[cfg(all(test, loom))]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod loom_model {
    use super::*;
    use crate::atomic::model;
    use loom::sync::Arc;
    use loom::thread;

    type Slot = SeqSlot<[u64; 2], 2>;

    /// A writer stores [1, 1] then [2, 2] while a reader reads: a read that succeeds is one of
    /// the three values whole, and reads never go back in time.
    #[test]
    fn loom_a_reader_never_accepts_a_torn_value() {
        model(|| {
            let s = Arc::new(Slot::default());
            let s2 = s.clone();
            let w = thread::spawn(move || {
                for n in 1..=2 {
                    s2.lock(1).unwrap().set([n, n]);
                }
            });
            let mut last = 0;
            for _ in 0..2 {
                if let Some([a, b]) = s.read(1) {
                    assert_eq!(a, b, "torn");
                    assert!(a >= last, "went back from {last} to {a}");
                    last = a;
                }
            }
            w.join().unwrap();
            assert_eq!(s.read(1), Some([2, 2]));
        });
    }

    /// Two writers each add 1 to both words under the lock: the locks exclude each other (no
    /// lost update), and a writer that finds the slot taken gives up instead of waiting.
    #[test]
    fn loom_writers_exclude_each_other() {
        model(|| {
            let s = Arc::new(Slot::default());
            let add = |s: &Slot| match s.lock(2) {
                Some(mut g) => {
                    let [a, b] = g.get();
                    g.set([a + 1, b + 1]);
                    1
                }
                None => 0,
            };
            let s2 = s.clone();
            let t = thread::spawn(move || add(&s2));
            let mine = add(&s);
            let theirs = t.join().unwrap();
            assert!(mine + theirs >= 1, "somebody gets in");
            assert_eq!(s.read(1), Some([mine + theirs; 2]));
        });
    }

    /// Two writers each read the slot and try to write it at the version they read: if they
    /// read the same version, exactly one gets in; somebody always does; the slot ends with the
    /// value of the successful writer that read the later version.
    #[test]
    fn loom_of_two_writers_at_one_version_exactly_one_wins() {
        model(|| {
            let s = Arc::new(Slot::default());
            // `None`: the other writer was in the slot, so there was nothing to try.
            let attempt = |s: &Slot, id: u64| {
                let (_, v) = s.read_versioned()?;
                Some((v, s.lock_at(v).map(|mut g| g.set([id, id])).is_some()))
            };
            let s2 = s.clone();
            let t = thread::spawn(move || attempt(&s2, 2));
            let one = attempt(&s, 1);
            let two = t.join().unwrap();
            if let (Some((v1, ok1)), Some((v2, ok2))) = (one, two) {
                if v1 == v2 {
                    assert!(ok1 ^ ok2, "{ok1} {ok2}");
                }
            }
            let last = [(one, 1), (two, 2)]
                .into_iter()
                .filter_map(|(r, id)| r.filter(|(_, ok)| *ok).map(|(v, _)| (v.0, id)))
                .max();
            let Some((_, id)) = last else {
                panic!("nobody wrote: {one:?} {two:?}");
            };
            assert_eq!(s.read(1), Some([id, id]));
        });
    }
}
