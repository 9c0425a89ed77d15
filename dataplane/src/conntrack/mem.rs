//! The table's one memory region: mapped once at start, hugepage-backed where possible, touched
//! in full before the first packet so that no page fault (a kernel allocation) ever happens on
//! the packet path.
//!
//! Order of preference:
//! 1. `MAP_HUGETLB` 2 MiB pages from the reserved pool (`/proc/sys/vm/nr_hugepages`, as DPDK
//!    uses), mapped with `MAP_POPULATE`: reserved and faulted in by the kernel at once;
//! 2. ordinary anonymous memory with `madvise(MADV_HUGEPAGE)` (transparent hugepages), then
//!    prefaulted (`MADV_POPULATE_WRITE`, or a write to every page on kernels without it).
//!
//! Regions under 2 MiB (small test tables) skip step 1, so they never pin a hugepage each.
//! Nothing here depends on DPDK.

// Under loom the table lives on the heap: only `Backing` is used.
#![cfg_attr(loom, allow(dead_code))]

use std::ptr::NonNull;

/// The size of the hugepages asked for.
pub(super) const HUGE: usize = 2 << 20;
const PAGE: usize = 4096;
/// `MADV_POPULATE_WRITE` (Linux 5.14); not in every libc release.
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// What backs the table's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Reserved 2 MiB hugepages (`MAP_HUGETLB`).
    HugeTlb,
    /// Anonymous memory advised as transparent hugepages (`MADV_HUGEPAGE`); the kernel decides.
    TransparentHuge,
    /// Anonymous 4 KiB pages (regions under 2 MiB, or larger ones where `MADV_HUGEPAGE`
    /// failed).
    Normal,
    /// The heap (only under the loom model checker).
    Heap,
}

impl std::fmt::Display for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backing::HugeTlb => "hugetlb 2M pages",
            Backing::TransparentHuge => "anonymous, madvise(MADV_HUGEPAGE)",
            Backing::Normal => "anonymous 4K pages",
            Backing::Heap => "heap",
        })
    }
}

/// A zero-filled, page-aligned, prefaulted mapping, unmapped on drop.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// SAFETY: the region is plain memory owned by this value; what is stored in it (atomics only,
// see `ConnTable`) is itself Send + Sync.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to).saturating_mul(to)
}

impl Region {
    /// Maps at least `len` bytes. Aborts the process (as `Box::new` would) only when even plain
    /// anonymous memory cannot be had: at start-up, never on the packet path.
    pub fn new(len: usize) -> Region {
        let len = len.max(1);
        if len >= HUGE {
            let hlen = round_up(len, HUGE);
            // SAFETY: a fresh private anonymous mapping; nothing else is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    hlen,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE
                        | libc::MAP_ANONYMOUS
                        | libc::MAP_HUGETLB
                        | libc::MAP_POPULATE,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                if let Some(ptr) = NonNull::new(p.cast::<u8>()) {
                    return Region {
                        ptr,
                        len: hlen,
                        backing: Backing::HugeTlb,
                    };
                }
            }
        }
        let plen = round_up(len, PAGE);
        // SAFETY: as above.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                plen,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        let Some(ptr) = NonNull::new(p.cast::<u8>()).filter(|_| p != libc::MAP_FAILED) else {
            let layout = std::alloc::Layout::from_size_align(plen, PAGE)
                .unwrap_or(std::alloc::Layout::new::<u8>());
            std::alloc::handle_alloc_error(layout);
        };
        let mut backing = Backing::Normal;
        if plen >= HUGE {
            // SAFETY: advice on our own mapping.
            if unsafe { libc::madvise(p, plen, libc::MADV_HUGEPAGE) } == 0 {
                backing = Backing::TransparentHuge;
            }
        }
        // Fault every page in now, not on the packet path.
        // SAFETY: as above.
        if unsafe { libc::madvise(p, plen, MADV_POPULATE_WRITE) } != 0 {
            for off in (0..plen).step_by(PAGE) {
                // SAFETY: inside the mapping; writing the zero that is already there.
                unsafe { ptr.as_ptr().add(off).write_volatile(0) };
            }
        }
        Region {
            ptr,
            len: plen,
            backing,
        }
    }

    /// Bytes mapped.
    pub fn bytes(&self) -> usize {
        self.len
    }

    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// `count` values of `T` at byte `offset`.
    ///
    /// # Safety
    /// `T` must be valid when all-zero and hold only atomics (the region is shared between
    /// threads and never accessed non-atomically); `offset` must be a multiple of `T`'s
    /// alignment (at most 4096) and `offset + count * size_of::<T>()` at most [`Region::bytes`];
    /// typed views of one region must not overlap.
    pub unsafe fn slice<T>(&self, offset: usize, count: usize) -> &[T] {
        debug_assert!(offset.is_multiple_of(std::mem::align_of::<T>()));
        debug_assert!(offset + count * std::mem::size_of::<T>() <= self.len);
        // SAFETY: per the caller's promise; the memory lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset).cast::<T>(), count) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn small_and_large_regions_are_zeroed_and_usable() {
        for len in [1, 4096, 100_000, HUGE + 1] {
            let r = Region::new(len);
            assert!(r.bytes() >= len);
            assert_eq!(r.ptr.as_ptr() as usize % PAGE, 0);
            // SAFETY: AtomicU64 is valid zeroed; offset 0 is aligned; the count fits.
            let words: &[AtomicU64] = unsafe { r.slice(0, r.bytes() / 8) };
            assert!(words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
            words[words.len() - 1].store(7, Ordering::Relaxed);
            if len < HUGE {
                assert_eq!(r.backing(), Backing::Normal);
            }
        }
    }
}
