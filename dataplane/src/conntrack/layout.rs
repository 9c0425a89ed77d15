//! Layout and memory per connection.
//!
//! One memory region, mapped once at start (`mem::Region`: 2 MiB hugepages where the pool has
//! them, else transparent hugepages; prefaulted), holds two arrays:
//!
//! - **entries**: `meta` (generation 16 | state 8 | expiry 40 bits, in ms; see `entry.rs`) and
//!   the family's field words (`family.rs`): 32 bytes for IPv4 (two per cache line, never
//!   straddling one: `client` proto | CIP | cport, `virt` slot | VIP | vport, `real` RIP |
//!   rport), 64 bytes for IPv6 (one line: the three addresses, then ports, protocol and slot);
//! - **buckets** of the index, one 64-byte cache line each, 8 slot words of `tag 31 | dir 1 |
//!   entry index + 1 (32)` (the tag is never 0, so an empty slot never matches); see
//!   `index.rs`. There are as many buckets as entries: 8 slots for the 2 tuples of a
//!   connection, an average load of 2 of 8 at full capacity.
//!
//! Beside the region, one *overflow* bit per bucket (`index.rs`) and small per-real-server
//! counters. So an IPv4 connection costs [`BYTES_PER_CONN`] = 32 + 64 = **96 bytes, index
//! included** (plus that one bit); 10M connections take 962 MB with 2 MiB-page rounding and the
//! counters of 64 real servers (resident, as measured by `table-mem` in benches/), under the
//! 1.5 GB target. An IPv6 connection costs [`BYTES_PER_CONN6`] = 64 + 64 = **128 bytes**: 10M
//! take 1282 MB (`memory_bytes`, measured by table-bench `--family 6`). Buckets per entry are
//! the same for both: the index's load (2 tuples in 8 slots) does not depend on the family.
//! [`ConnTable::footprint`] (`ConnTable6::footprint6`) computes the region's size and
//! [`ConnTable::memory_bytes`] reports what a table holds.

use super::family::{Family, V4, V6};
use super::index::Bucket;
use super::{Backing, ConnTable};
use std::marker::PhantomData;

/// Most entries a table can hold: indices are 32-bit (and below 2^31).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Bytes per IPv4 connection, index included: a 32-byte entry and one 64-byte bucket per entry.
pub const BYTES_PER_CONN: usize = V4::BYTES_PER_CONN;
/// Bytes per IPv6 connection, index included: a 64-byte entry and one 64-byte bucket per entry.
pub const BYTES_PER_CONN6: usize = V6::BYTES_PER_CONN;

/// Buckets and entries: one mapped region, or (loom) two heap arrays of loom atomics.
pub(super) struct Storage<F: Family> {
    #[cfg(not(loom))]
    region: super::mem::Region,
    #[cfg(loom)]
    buckets: Box<[Bucket]>,
    #[cfg(loom)]
    entries: Box<[F::Entry]>,
    pub(super) nbuckets: usize,
    pub(super) capacity: usize,
    family: PhantomData<F>,
}

impl<F: Family> Storage<F> {
    pub(super) fn new(nbuckets: usize, capacity: usize) -> Storage<F> {
        #[cfg(not(loom))]
        {
            let bytes = nbuckets * std::mem::size_of::<Bucket>()
                + capacity * std::mem::size_of::<F::Entry>();
            Storage {
                region: super::mem::Region::new(bytes),
                nbuckets,
                capacity,
                family: PhantomData,
            }
        }
        #[cfg(loom)]
        {
            Storage {
                buckets: (0..nbuckets).map(|_| Bucket::default()).collect(),
                entries: (0..capacity).map(|_| F::Entry::default()).collect(),
                nbuckets,
                capacity,
                family: PhantomData,
            }
        }
    }

    #[inline]
    pub(super) fn buckets(&self) -> &[Bucket] {
        #[cfg(not(loom))]
        // SAFETY: Bucket is atomics only, valid zeroed, 64-byte aligned at offset 0 of a
        // page-aligned region sized in `new` for both arrays, which do not overlap.
        unsafe {
            self.region.slice(0, self.nbuckets)
        }
        #[cfg(loom)]
        &self.buckets
    }

    #[inline]
    pub(super) fn entries(&self) -> &[F::Entry] {
        #[cfg(not(loom))]
        // SAFETY: as above (an entry is atomics only, valid zeroed); the entries follow the
        // buckets (a multiple of 64 bytes, so aligned for 32- and 64-byte entries).
        unsafe {
            self.region
                .slice(self.nbuckets * std::mem::size_of::<Bucket>(), self.capacity)
        }
        #[cfg(loom)]
        &self.entries
    }

    pub(super) fn bytes(&self) -> usize {
        #[cfg(not(loom))]
        {
            self.region.bytes()
        }
        #[cfg(loom)]
        {
            self.nbuckets * std::mem::size_of::<Bucket>()
                + self.capacity * std::mem::size_of::<F::Entry>()
        }
    }

    pub(super) fn backing(&self) -> Backing {
        #[cfg(not(loom))]
        {
            self.region.backing()
        }
        #[cfg(loom)]
        {
            Backing::Heap
        }
    }
}

impl<F: Family> ConnTable<F> {
    pub(super) fn bucket_count(capacity: usize) -> usize {
        capacity.max(1)
    }

    /// Bytes a table of `capacity` connections maps for its entries and index, without building
    /// it (see `ConnTable::footprint`).
    pub(super) fn footprint_of(capacity: usize) -> usize {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        Self::bucket_count(capacity) * std::mem::size_of::<Bucket>()
            + capacity * std::mem::size_of::<F::Entry>()
    }

    #[inline]
    pub(super) fn entry(&self, idx: u32) -> Option<&F::Entry> {
        self.storage.entries().get(idx as usize)
    }

    #[inline]
    pub(super) fn bucket(&self, b: usize) -> Option<&Bucket> {
        self.storage.buckets().get(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(loom))]
    use control::model::Timeouts;

    #[test]
    fn entry_and_bucket_sizes_give_96_and_128_bytes_per_connection() {
        assert_eq!(std::mem::size_of::<<V4 as Family>::Entry>(), 32);
        assert_eq!(std::mem::size_of::<<V6 as Family>::Entry>(), 64);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
        for cap in [1, 12, 1000, 1 << 20, 10_000_000] {
            assert_eq!(ConnTable::<V4>::bucket_count(cap), cap);
            assert_eq!(ConnTable::footprint(cap), cap * BYTES_PER_CONN);
            assert_eq!(
                crate::conntrack::ConnTable6::footprint6(cap),
                cap * BYTES_PER_CONN6
            );
        }
        const { assert!(BYTES_PER_CONN <= 128 && BYTES_PER_CONN6 <= 128) };
    }

    /// What `BYTES_PER_CONN` claims, as a built table holds it (`memory_bytes()` / capacity,
    /// counters and shards included; not rounded to 2 MiB pages at this size).
    #[test]
    #[cfg(not(loom))]
    fn measured_bytes_per_connection() {
        let cap = 1 << 20;
        let t = Timeouts::default();
        let v4 = ConnTable::new(cap, 64, &t);
        let v6 = crate::conntrack::ConnTable6::sharing(&v4, cap);
        let per = |bytes: usize| bytes as f64 / cap as f64;
        let (b4, b6) = (per(v4.memory_bytes()), per(v6.memory_bytes()));
        assert!(
            b4 >= BYTES_PER_CONN as f64 && b4 < BYTES_PER_CONN as f64 + 1.0,
            "{b4}"
        );
        assert!(
            b6 >= BYTES_PER_CONN6 as f64 && b6 < BYTES_PER_CONN6 as f64 + 1.0,
            "{b6}"
        );
    }
}
