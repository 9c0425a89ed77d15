//! The hashes of the packet path.
//!
//! **The keyed hash of the shared tables** (connections, neighbours, fragment decisions,
//! persistence templates): [`HashKey::hash`] of two 64-bit words is a folded 64x64->128
//! multiply (wyhash's mixer) of the words XORed with the key's two random halves, folded
//! through a second multiply by the golden ratio, and [`range`] maps it onto a table's slots
//! by multiply-shift, which uses the hash's high bits and works for any table size. The keys
//! are random per table and per process, so nobody outside can aim traffic at one bucket.
//! The second multiply is there for traffic nobody aims: with the first alone, words that
//! differ in a few bits (a client's consecutive source ports) land on an arithmetic sequence
//! whose step depends on the key, which some keys fold into a few buckets.
//!
//! Dense one-word keys (the neighbour table's: the addresses of a subnet) go through
//! [`HashKey::spread`] instead: Fibonacci hashing of the keyed word, which spreads consecutive
//! keys evenly over the table, as no random-like hash can (200 neighbours of a /24 in 256 slots
//! with 8-slot probe windows all fit with it; with `hash`, some 5% of them do not, since a
//! random placement overfills some windows). Nothing else about it is weaker: an attacker who
//! could choose the keys still cannot know the key.
//!
//! **The unkeyed mixer** [`fmix64`] is for what must hash the same on every director and
//! every run: the schedulers' hashes (`sched`, e.g. Maglev's, specified in `sched/mh.rs`) and
//! their fingerprints. Those are not table hashes and never use a [`HashKey`].

/// A table's hash key: two random words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKey {
    k0: u64,
    k1: u64,
}

impl HashKey {
    /// `N` independent random keys (one per hash function a table needs).
    #[cfg(not(loom))]
    pub fn random<const N: usize>() -> [HashKey; N] {
        use std::hash::BuildHasher;
        // std's per-process random SipHash keys (a new state per call), hashing the index.
        let r = std::collections::hash_map::RandomState::new();
        std::array::from_fn(|i| HashKey {
            k0: r.hash_one(2 * i),
            k1: r.hash_one(2 * i + 1),
        })
    }

    /// Fixed under loom: every execution of a model must take the same paths.
    #[cfg(loom)]
    pub fn random<const N: usize>() -> [HashKey; N] {
        const FIXED: [u64; 4] = [
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
        ];
        let word = |j: usize| FIXED.get(j % 4).copied().unwrap_or(0) ^ fmix64(j as u64 / 4);
        std::array::from_fn(|i| HashKey {
            k0: word(2 * i),
            k1: word(2 * i + 1),
        })
    }

    /// The hash of the words `a` and `b`.
    #[inline]
    pub fn hash(&self, a: u64, b: u64) -> u64 {
        mum(mum(a ^ self.k0, b ^ self.k1), 0x9e37_79b9_7f4a_7c15)
    }

    /// Key word `i % 2`: for hashes of keys wider than two words, which fold the extra words
    /// with them first (the connection table's IPv6 tuples).
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        if i.is_multiple_of(2) {
            self.k0
        } else {
            self.k1
        }
    }

    /// The hash of a dense one-word key `x` (see the module documentation): take its high bits
    /// (with [`range`]).
    #[inline]
    pub fn spread(&self, x: u64) -> u64 {
        // 2^64 / the golden ratio: consecutive multiples are as far apart as can be.
        (x ^ self.k0).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Folded 64x64->128 multiply (wyhash's mixer): one multiply, good avalanche when its inputs
/// are keyed with random words or, as in [`HashKey::hash`]'s second step, already mixed.
#[inline]
pub fn mum(x: u64, y: u64) -> u64 {
    let r = u128::from(x) * u128::from(y);
    (r as u64) ^ ((r >> 64) as u64)
}

/// `h` mapped onto `0..n` (multiply-shift: uses the high bits of `h`).
#[inline]
pub fn range(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// MurmurHash3's 64-bit finaliser: a fast bijective mixer with full avalanche. Unkeyed (see
/// the module documentation).
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_covers_every_slot_and_stays_in_bounds() {
        for n in [1usize, 2, 3, 7, 64, 1000] {
            let mut seen = vec![false; n];
            for i in 0..(64 * n as u64) {
                let r = range(fmix64(i), n);
                assert!(r < n);
                seen[r] = true;
            }
            assert!(seen.iter().all(|s| *s), "n = {n}");
        }
        assert_eq!(range(u64::MAX, 10), 9);
        assert_eq!(range(0, 10), 0);
    }

    #[test]
    fn keys_differ_and_spread_sequential_keys() {
        let [a, b] = HashKey::random::<2>();
        assert_ne!(a, b);
        assert_ne!(HashKey::random::<1>(), HashKey::random::<1>());
        // Sequential addresses (a /24 of clients) over 256 buckets: no bucket gets more than a
        // small multiple of its share.
        let mut load = [0u32; 256];
        for ip in 0xc000_0200u64..0xc000_0200 + 4096 {
            load[range(a.hash(ip << 32, 80), 256)] += 1;
        }
        assert!(load.iter().all(|&l| l < 64), "{load:?}");
    }

    /// A client's consecutive source ports (one word of the pair) over 256 buckets: no
    /// bucket gets more than six times its share, for 200 random keys and for one key under
    /// which the hash of one multiply put 149 of the 1,024 in one bucket (with it, some keys
    /// left a third of a 1,000-connection table in its second buckets).
    #[test]
    fn consecutive_ports_spread_for_every_key() {
        let bad_for_one_multiply = HashKey {
            k0: 0xfe19_10af_ab85_8695,
            k1: 0x0c87_fe95_d5b0_6782,
        };
        let keys = HashKey::random::<200>();
        for key in std::iter::once(bad_for_one_multiply).chain(keys) {
            let mut load = [0u32; 256];
            let a = (0xc633_640a_u64 << 32) | 0xc633_6401;
            for port in 10_000u64..11_024 {
                load[range(key.hash(a, (port << 32) | (80 << 16) | 17), 256)] += 1;
            }
            assert!(load.iter().all(|&l| l <= 24), "{key:?}: {load:?}");
        }
    }

    #[test]
    fn spread_fills_a_table_with_consecutive_keys_evenly() {
        for key in HashKey::random::<8>() {
            // 256 consecutive keys over 256 slots: no slot gets more than two.
            let mut load = [0u8; 256];
            for ip in 0xc000_0200u64..0xc000_0300 {
                load[range(key.spread(ip), 256)] += 1;
            }
            assert!(load.iter().all(|&l| l <= 2), "{load:?}");
        }
    }

    #[test]
    fn fmix64_is_murmur3s_finaliser() {
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }
}
