//! The index: buckets of slot words, and where a tuple may live.
//!
//! A bucket is one 64-byte cache line of 8 slot words `tag 31 | dir 1 | entry index + 1 (32)`
//! (0 = empty; the tag is never 0, so an empty slot never matches). A slot word names the entry
//! and which of its two tuples it stands for.
//!
//! Each tuple has two candidate buckets (two independent keyed hashes, `crate::hash`, ranged by
//! multiply-shift so any bucket count works). An insert takes the first bucket while fewer than
//! [`FIRST_FIT`] (6) of its slots are taken, which at load 2/8 is nearly always, else the emptier
//! of the two (two-choice balancing, which keeps both from filling up: without it a 10M table
//! refused a few dozen inserts near capacity). Putting a tuple in its second bucket first sets
//! the first bucket's overflow bit (for good); lookups read the second bucket only when that
//! bit is set, so a hit reads one bucket line and one entry line, and a miss (the first lookup
//! of every new connection) one bucket line. Both buckets full does not happen at this load
//! short of an attack on the random per-process keys; if it does, a stale or SYN_RECV entry in
//! those buckets is removed, else the insert fails `Full` (see `insert.rs`).

use super::entry::EntryView;
use super::family::Family;
use super::state::Dir;
use super::{ConnTable, Tuple};
use crate::atomic::{AtomicU64, Ordering};
use crate::hash::range;

/// Slot words per bucket (a 64-byte line); fewer under loom to keep the model small.
#[cfg(not(loom))]
pub(super) const SLOTS: usize = 8;
#[cfg(loom)]
pub(super) const SLOTS: usize = 4;

/// An insert takes its first bucket while fewer slots than this are taken there.
pub const FIRST_FIT: usize = SLOTS - 2;

#[repr(C, align(64))]
#[derive(Debug, Default)]
pub(super) struct Bucket {
    /// 0 = empty; else tag 31 | dir 1 | entry index + 1 (32).
    pub(super) slots: [AtomicU64; SLOTS],
}

/// Asks the CPU to bring the cache line holding `r` into all cache levels (no effect where
/// there is no prefetch instruction).
#[inline(always)]
pub(super) fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[inline]
pub(super) fn slot_word(idx: u32, dir: Dir, tag: u32) -> u64 {
    let d = match dir {
        Dir::Inbound => 0,
        Dir::Reply => 1,
    };
    (u64::from(tag) << 33) | (d << 32) | (u64::from(idx) + 1)
}
#[inline]
pub(super) fn slot_tag(w: u64) -> u32 {
    (w >> 33) as u32
}
#[inline]
pub(super) fn slot_idx(w: u64) -> u32 {
    (w as u32).wrapping_sub(1)
}
#[inline]
pub(super) fn slot_dir(w: u64) -> Dir {
    if w & (1 << 32) == 0 {
        Dir::Inbound
    } else {
        Dir::Reply
    }
}

/// Where a tuple lives first: its first bucket, and the tag its slot words carry (never 0, so
/// an empty slot never matches). Its second bucket takes the second hash, worked out only when
/// it is needed ([`ConnTable::second_bucket`]): by a lookup, an insert's rival check or a
/// removal when the first bucket overflowed, and by an insert whose first bucket is nearly
/// full (or was filled under it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Place {
    pub(super) b1: usize,
    pub(super) tag: u32,
}

/// What the burst prefetch learnt of a tuple: where it lives ([`ConnTable::prefetch_bucket`])
/// and, once [`ConnTable::prefetch_entry`] has read its first bucket, the first slot word there
/// with its tag (0: none), whose entry [`ConnTable::lookup_prefetched`] tries first.
#[derive(Debug, Clone, Copy)]
pub struct Prefetched {
    pub(super) place: Place,
    pub(super) candidate: u64,
}

impl Prefetched {
    /// Whether the prefetch found an entry to try first ([`ConnTable::prefetched_hit`]).
    #[inline]
    pub fn has_candidate(&self) -> bool {
        self.candidate != 0
    }
}

/// A cheap set of first buckets, a bit each (the bucket's index modulo 256): where a worker
/// inserted connections since its last burst prefetch ([`ConnTable::insert_noting`]), so that
/// a lookup there does not trust the prefetch's miss. A bucket that shares a bit with one in
/// the set only costs a full lookup: as a burst's 32 new connections fill it (64 tuples), about
/// a tenth of its misses are looked up in full on average with 256 bits, a third with 64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketSet([u64; 4]);

impl BucketSet {
    #[inline]
    fn bit(b: usize) -> (usize, u64) {
        ((b / 64) % 4, 1 << (b % 64))
    }

    #[inline]
    pub(super) fn add(&mut self, b: usize) {
        let (w, bit) = BucketSet::bit(b);
        if let Some(word) = self.0.get_mut(w) {
            *word |= bit;
        }
    }

    /// Whether the first bucket of the tuple the prefetch `p` looked at may be in the set.
    #[inline]
    pub fn may_hold(&self, p: &Prefetched) -> bool {
        let (w, bit) = BucketSet::bit(p.place.b1);
        self.0.get(w).is_some_and(|word| word & bit != 0)
    }
}

/// The slot words of a bucket, and a bit per slot whose tag is `tag`: branch-free, so which
/// slot holds the tuple costs no misprediction.
#[inline]
pub(super) fn scan(bucket: &Bucket, tag: u32) -> ([u64; SLOTS], u32) {
    let words = load_slots(bucket);
    let m = tag_mask(&words, tag);
    (words, m)
}

/// A bucket's slot words, each an acquire load, one after the other (the definition).
#[inline]
#[cfg_attr(all(target_arch = "x86_64", not(loom)), allow(dead_code))]
pub(super) fn load_slots_scalar(bucket: &Bucket) -> [u64; SLOTS] {
    let mut words = [0u64; SLOTS];
    for (s, w) in bucket.slots.iter().zip(words.iter_mut()) {
        *w = s.load(Ordering::Acquire);
    }
    words
}

#[cfg(not(all(target_arch = "x86_64", not(loom))))]
pub(super) use load_slots_scalar as load_slots;

/// [`load_slots_scalar`] in assembly: eight atomic loads compile to eight loads and eight
/// moves into vector registers plus four shuffles, some 20 instructions on every scan (a
/// lookup's, an insert's conflict and rival checks, its count of a bucket's taken slots), and
/// LLVM does not merge atomic loads. Here each pair of words goes straight into a vector
/// register: `movq` the low word, `movhps` the high one, eight instructions. Each is an aligned
/// 8-byte load, atomic on every x86_64 CPU by Intel's and AMD's manuals, made in slot order,
/// and x86 never reorders a load with a later load: the effect of the definition's eight
/// acquire loads. (A 16-byte `movdqa` per pair would save four more instructions, but the
/// manuals make it atomic only on CPUs with AVX, and asking the CPU on every scan cost more.)
/// To the compiler the assembly may read and write any memory, so nothing is moved across it.
#[cfg(all(target_arch = "x86_64", not(loom)))]
#[inline]
pub(super) fn load_slots(bucket: &Bucket) -> [u64; SLOTS] {
    use std::arch::x86_64::{__m128i, _mm_storeu_si128};
    let p = bucket.slots.as_ptr();
    let (a, b, c, d): (__m128i, __m128i, __m128i, __m128i);
    // SAFETY: `p` is a bucket (`Bucket` is `align(64)`), 64 bytes long: the eight aligned
    // 8-byte loads read it and nothing else. The stores write `words`, 64 bytes.
    unsafe {
        std::arch::asm!(
            "movq {a}, qword ptr [{p}]",
            "movhps {a}, qword ptr [{p} + 8]",
            "movq {b}, qword ptr [{p} + 16]",
            "movhps {b}, qword ptr [{p} + 24]",
            "movq {c}, qword ptr [{p} + 32]",
            "movhps {c}, qword ptr [{p} + 40]",
            "movq {d}, qword ptr [{p} + 48]",
            "movhps {d}, qword ptr [{p} + 56]",
            p = in(reg) p,
            a = out(xmm_reg) a,
            b = out(xmm_reg) b,
            c = out(xmm_reg) c,
            d = out(xmm_reg) d,
            options(nostack, preserves_flags),
        );
        let mut words = [0u64; SLOTS];
        let q = words.as_mut_ptr().cast::<__m128i>();
        _mm_storeu_si128(q, a);
        _mm_storeu_si128(q.add(1), b);
        _mm_storeu_si128(q.add(2), c);
        _mm_storeu_si128(q.add(3), d);
        words
    }
}

/// A bit per word of `words` whose tag is `tag`, one slot at a time (the definition).
#[inline]
#[cfg_attr(all(target_arch = "x86_64", not(loom)), allow(dead_code))]
fn tag_mask_scalar(words: &[u64; SLOTS], tag: u32) -> u32 {
    words
        .iter()
        .enumerate()
        .fold(0, |m, (k, &w)| m | (u32::from(slot_tag(w) == tag) << k))
}

#[cfg(not(all(target_arch = "x86_64", not(loom))))]
use tag_mask_scalar as tag_mask;

/// [`tag_mask_scalar`] in SSE2 (x86_64's baseline), two words per compare: every bucket scan
/// of a lookup, an insert's conflict and rival checks runs it, and the scalar loop was some 40
/// instructions a bucket. The words are the caller's copy, so this reads no shared memory.
#[cfg(all(target_arch = "x86_64", not(loom)))]
#[inline]
fn tag_mask(words: &[u64; SLOTS], tag: u32) -> u32 {
    use std::arch::x86_64::*;
    const TAG_BITS: i64 = !((1i64 << 33) - 1);
    // SAFETY: SSE2 is always there on x86_64; the four unaligned loads read the 64 bytes of
    // `words` and nothing else.
    unsafe {
        let p = words.as_ptr().cast::<__m128i>();
        let keep = _mm_set1_epi64x(TAG_BITS);
        let want = _mm_set1_epi64x((i64::from(tag) << 33) & TAG_BITS);
        // Masked, a word's low half is 0 as is `want`'s: the high halves' 32-bit compare
        // decides, and lanes 1 and 3 of each compare hold the two words' answers.
        let eq = |i: usize| {
            _mm_castsi128_ps(_mm_cmpeq_epi32(
                _mm_and_si128(_mm_loadu_si128(p.add(i)), keep),
                want,
            ))
        };
        let lo = _mm_shuffle_ps::<0b11_01_11_01>(eq(0), eq(1));
        let hi = _mm_shuffle_ps::<0b11_01_11_01>(eq(2), eq(3));
        (_mm_movemask_ps(lo) | (_mm_movemask_ps(hi) << 4)) as u32
    }
}

/// A bit per empty slot (word 0) of `words`, one slot at a time (the definition).
#[inline]
#[cfg_attr(all(target_arch = "x86_64", not(loom)), allow(dead_code))]
pub(super) fn empty_mask_scalar(words: &[u64; SLOTS]) -> u32 {
    words
        .iter()
        .enumerate()
        .fold(0, |m, (k, &w)| m | (u32::from(w == 0) << k))
}

#[cfg(not(all(target_arch = "x86_64", not(loom))))]
pub(super) use empty_mask_scalar as empty_mask;

/// [`empty_mask_scalar`] in SSE2, as [`tag_mask`]: every insert's claim asks it, and the scalar
/// loop was some 70 instructions an insert. SSE2 has no 64-bit compare: a word is 0 when both
/// its 32-bit halves are.
#[cfg(all(target_arch = "x86_64", not(loom)))]
#[inline]
pub(super) fn empty_mask(words: &[u64; SLOTS]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is always there on x86_64; the four unaligned loads read the 64 bytes of
    // `words` and nothing else.
    unsafe {
        let p = words.as_ptr().cast::<__m128i>();
        let zero = _mm_setzero_si128();
        let eq = |i: usize| _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_loadu_si128(p.add(i)), zero));
        // Of two compares (four words), the low halves' lanes and the high halves' lanes.
        let both = |a: __m128, b: __m128| {
            _mm_and_ps(
                _mm_shuffle_ps::<0b10_00_10_00>(a, b),
                _mm_shuffle_ps::<0b11_01_11_01>(a, b),
            )
        };
        let lo = both(eq(0), eq(1));
        let hi = both(eq(2), eq(3));
        (_mm_movemask_ps(lo) | (_mm_movemask_ps(hi) << 4)) as u32
    }
}

/// The words of `scan`'s mask, in slot order.
#[inline]
pub(super) fn matching(words: &[u64; SLOTS], mut m: u32) -> impl Iterator<Item = u64> + '_ {
    std::iter::from_fn(move || {
        if m == 0 {
            return None;
        }
        let k = m.trailing_zeros() as usize;
        m &= m - 1;
        words.get(k).copied()
    })
}

impl<F: Family> ConnTable<F> {
    #[inline]
    pub(super) fn place(&self, t: &Tuple<F::Addr>) -> Place {
        // The first of two independent hashes (`family.rs`): its high bits pick the bucket,
        // its low bits make the tag.
        let [k1, _] = &self.keys;
        let h1 = F::hash(k1, t);
        Place {
            b1: range(h1, self.storage.nbuckets),
            tag: ((h1 as u32) >> 1) | 1,
        }
    }

    /// `t`'s second bucket: the high bits of its second hash.
    #[inline]
    pub(super) fn second_bucket(&self, t: &Tuple<F::Addr>) -> usize {
        let [_, k2] = &self.keys;
        range(F::hash(k2, t), self.storage.nbuckets)
    }

    /// The buckets that may hold tuple `t` (placed at `p`): the first, and the second only if
    /// an insert ever overflowed the first (see `overflow`) and it is another bucket.
    #[inline]
    pub(super) fn search_of(&self, t: &Tuple<F::Addr>, p: &Place) -> ([usize; 2], usize) {
        if !self.overflowed(p.b1) {
            return ([p.b1, p.b1], 1);
        }
        let b2 = self.second_bucket(t);
        ([p.b1, b2], if p.b1 == b2 { 1 } else { 2 })
    }

    /// Whether an insert ever put a tuple whose first choice is bucket `b` in its second one.
    #[inline]
    pub(super) fn overflowed(&self, b: usize) -> bool {
        self.overflow
            .get(b / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (b % 64)) != 0)
    }

    pub(super) fn mark_overflow(&self, b: usize) {
        if let Some(w) = self.overflow.get(b / 64) {
            if w.load(Ordering::Relaxed) & (1 << (b % 64)) == 0 {
                w.fetch_or(1 << (b % 64), Ordering::AcqRel);
            }
        }
    }

    /// Whether the table may hold an entry (live or pending) for the tuple placed at `p`: a slot
    /// of its first bucket carries its tag, or that bucket overflowed. False only where
    /// [`ConnTable::find`] would find nothing, from the same scan without reading an entry.
    #[inline]
    pub(super) fn may_hold_entry(&self, p: &Place) -> bool {
        self.bucket(p.b1).is_none_or(|b| scan(b, p.tag).1 != 0) || self.overflowed(p.b1)
    }

    /// Finds an entry for `t` in its buckets: live ones only, or pending ones too. The second
    /// bucket is only looked at when the first does not hold the tuple and has overflowed.
    #[inline]
    pub(super) fn find(
        &self,
        t: &Tuple<F::Addr>,
        p: &Place,
        pending_too: bool,
    ) -> Option<(u32, Dir, EntryView<F>)> {
        if let Some(r) = self.find_in(p.b1, t, p.tag, pending_too) {
            return Some(r);
        }
        if !self.overflowed(p.b1) {
            return None;
        }
        let b2 = self.second_bucket(t);
        if b2 == p.b1 {
            return None;
        }
        self.find_in(b2, t, p.tag, pending_too)
    }

    #[inline]
    pub(super) fn find_in(
        &self,
        b: usize,
        t: &Tuple<F::Addr>,
        tag: u32,
        pending_too: bool,
    ) -> Option<(u32, Dir, EntryView<F>)> {
        let (words, m) = scan(self.bucket(b)?, tag);
        for w in matching(&words, m) {
            let (idx, dir) = (slot_idx(w), slot_dir(w));
            if let Some(v) = self.read(idx) {
                if (pending_too || v.is_live()) && v.matches(dir, t) {
                    return Some((idx, dir, v));
                }
            }
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The SIMD tag compare answers as the definition does, for any slot words (empty,
        /// either direction, tags equal to the one looked for or one bit off).
        #[test]
        fn tag_mask_is_the_scalar_definition(
            tag in 1u32..(1 << 31),
            picks in proptest::collection::vec((0u8..4, any::<u32>(), any::<bool>()), SLOTS),
        ) {
            let mut words = [0u64; SLOTS];
            for (w, (kind, idx, reply)) in words.iter_mut().zip(&picks) {
                let dir = if *reply { Dir::Reply } else { Dir::Inbound };
                let t = match kind {
                    0 => tag,
                    1 => tag ^ (1 << (idx % 31)),
                    2 => idx >> 1,
                    _ => 0,
                };
                *w = if *kind == 3 { 0 } else { slot_word(*idx % (u32::MAX - 1), dir, t) };
            }
            prop_assert_eq!(tag_mask(&words, tag), tag_mask_scalar(&words, tag));
        }

        /// The vector empty-slot mask is the definition's, whichever words are 0 and
        /// whichever half of a word is not.
        #[test]
        fn the_empty_mask_is_the_definitions(picks in proptest::array::uniform8((0u8..4, any::<u32>()))) {
            let mut words = [0u64; SLOTS];
            for (w, (kind, x)) in words.iter_mut().zip(&picks) {
                let x = u64::from(*x | 1);
                *w = match kind {
                    0 => 0,
                    1 => x,
                    2 => x << 32,
                    _ => x | (x << 32),
                };
            }
            prop_assert_eq!(empty_mask(&words), empty_mask_scalar(&words));
        }

        /// A bucket set holds a bucket's bit and nothing at a distance under 256: the buckets
        /// 64, 128 and 192 away share its bit in a word of their own, 256 away its very bit.
        #[test]
        fn a_bucket_set_tells_buckets_apart_modulo_256(b in 0usize..(1 << 20)) {
            let mut set = BucketSet::default();
            let at = |b1: usize| Prefetched { place: Place { b1, tag: 1 }, candidate: 0 };
            prop_assert!(!set.may_hold(&at(b)));
            set.add(b);
            prop_assert!(set.may_hold(&at(b)));
            prop_assert!(set.may_hold(&at(b + 256)));
            for d in [1, 63, 64, 128, 192, 255] {
                prop_assert!(!set.may_hold(&at(b + d)), "{} + {}", b, d);
            }
        }

        /// The assembly's load of a bucket reads every word, each in its slot, as the
        /// definition.
        #[test]
        fn load_slots_is_the_scalar_definition(words in proptest::array::uniform8(any::<u64>())) {
            let bucket = Bucket::default();
            for (s, w) in bucket.slots.iter().zip(words.iter()) {
                s.store(*w, Ordering::Relaxed);
            }
            prop_assert_eq!(load_slots(&bucket), load_slots_scalar(&bucket));
            prop_assert_eq!(&load_slots(&bucket)[..], &words[..SLOTS]);
        }
    }
}
