//! `rte_mbuf` as the burst driver's frame buffer (an owned handle over the pointer), and thin
//! helpers over raw mbuf pointers for rvs-pktgen; single-segment packets only.

use dataplane::driver::FrameBuf;
use dpdk_sys::{rte_mbuf, rte_mempool};
use std::ptr::NonNull;

/// An mbuf this worker owns, from `rte_eth_rx_burst` or its port's mempool, until it is handed
/// to `rte_eth_tx_burst` or freed with [`Mbuf::free`]. Dropping it leaks the mbuf: the driver
/// gives every frame back through its `FrameIo`.
///
/// Same layout as `*mut rte_mbuf`, so that a batch of them is the array `rte_eth_tx_burst`
/// takes.
#[repr(transparent)]
pub struct Mbuf(NonNull<rte_mbuf>);

impl Mbuf {
    /// Takes ownership of `m`; None if it is null.
    ///
    /// # Safety
    /// `m` must be a valid mbuf the caller owns and no longer uses.
    pub unsafe fn from_raw(m: *mut rte_mbuf) -> Option<Mbuf> {
        NonNull::new(m).map(Mbuf)
    }

    /// A new mbuf from `pool`, length 0; None when the pool is empty.
    ///
    /// # Safety
    /// `pool` must be a valid mempool.
    pub unsafe fn alloc(pool: *mut rte_mempool) -> Option<Mbuf> {
        // SAFETY: a fresh mbuf from the pool is ours.
        unsafe { Mbuf::from_raw(dpdk_sys::rte_pktmbuf_alloc(pool)) }
    }

    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.0.as_ptr()
    }

    /// Gives the mbuf back to its pool.
    pub fn free(self) {
        // SAFETY: we own it, and `self` is gone afterwards.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.as_ptr()) }
    }

    fn data_len(&self) -> usize {
        // SAFETY: we own a valid mbuf.
        usize::from(unsafe { (*self.as_ptr()).data_len })
    }

    fn tailroom(&self) -> usize {
        // SAFETY: we own a valid mbuf.
        unsafe { tailroom(self.as_ptr()) }
    }

    /// The port the PMD (or the exception thread) wrote in the mbuf.
    pub fn port(&self) -> u16 {
        // SAFETY: we own a valid mbuf.
        unsafe { (*self.as_ptr()).port }
    }
}

// The per-frame accessors read the struct's fields in Rust (bindgen's layout of the installed
// DPDK's rte_mbuf) as DPDK's own inline functions do: the C wrappers of those cannot be
// inlined across the FFI boundary, and the worker called four of them on every frame.

/// `rte_pktmbuf_tailroom`: the bytes after the packet data in the mbuf's buffer.
///
/// # Safety
/// `m` must be a valid mbuf.
#[inline]
unsafe fn tailroom(m: *const rte_mbuf) -> usize {
    let m = &*m;
    usize::from(m.buf_len)
        .saturating_sub(usize::from(m.data_off))
        .saturating_sub(usize::from(m.data_len))
}

/// `rte_pktmbuf_mtod`: where the packet data starts.
///
/// # Safety
/// `m` must be a valid mbuf.
#[inline]
unsafe fn data_ptr(m: *mut rte_mbuf) -> *mut u8 {
    (*m).buf_addr.cast::<u8>().add(usize::from((*m).data_off))
}

// The byte views borrow the handle, which owns the mbuf alone: no other view of it exists
// while they live.
impl FrameBuf for Mbuf {
    fn data(&self) -> &[u8] {
        // SAFETY: we own the mbuf; the view lives no longer than `&self`.
        unsafe { data_mut(self.as_ptr()) }
    }

    fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: we own the mbuf; `&mut self` makes the view exclusive while it lives.
        unsafe { data_mut(self.as_ptr()) }
    }

    fn data_with_room(&mut self) -> (&mut [u8], usize) {
        // SAFETY: as in `data_mut`.
        unsafe { data_with_room(self.as_ptr()) }
    }

    fn set_len(&mut self, len: usize) -> bool {
        let fits = len <= self.data_len() + self.tailroom();
        match u16::try_from(len) {
            Ok(len) if fits => {
                // SAFETY: we own a valid single-segment mbuf; `len` is within its room.
                unsafe {
                    (*self.as_ptr()).data_len = len;
                    (*self.as_ptr()).pkt_len = u32::from(len);
                }
                true
            }
            _ => false,
        }
    }

    fn is_contiguous(&self) -> bool {
        // SAFETY: we own a valid mbuf.
        unsafe { (*self.as_ptr()).nb_segs == 1 }
    }
}

/// The packet bytes of a single-segment mbuf.
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller for the lifetime of the slice.
#[inline]
pub unsafe fn data_mut<'a>(m: *mut rte_mbuf) -> &'a mut [u8] {
    let len = usize::from((*m).data_len);
    std::slice::from_raw_parts_mut(data_ptr(m), len)
}

/// The packet bytes of a single-segment mbuf followed by its tailroom, and the packet length:
/// `(buf, len)` with `buf[..len]` the packet.
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller for the lifetime of the slice.
#[inline]
pub unsafe fn data_with_room<'a>(m: *mut rte_mbuf) -> (&'a mut [u8], usize) {
    let len = usize::from((*m).data_len);
    let buf = std::slice::from_raw_parts_mut(data_ptr(m), len + tailroom(m));
    (buf, len)
}

/// Allocates an mbuf and fills it with `len` bytes written by `fill` (which returns how many it
/// wrote; 0 means nothing to send). Returns None when the pool is empty or `fill` wrote nothing.
///
/// # Safety
/// `pool` must be a valid mempool.
pub unsafe fn alloc_with(
    pool: *mut rte_mempool,
    fill: impl FnOnce(&mut [u8]) -> usize,
) -> Option<*mut rte_mbuf> {
    let m = dpdk_sys::rte_pktmbuf_alloc(pool);
    if m.is_null() {
        return None;
    }
    let room = dpdk_sys::rte_pktmbuf_tailroom(m) as usize;
    let buf = std::slice::from_raw_parts_mut(dpdk_sys::rvs_mbuf_data(m) as *mut u8, room);
    let n = fill(buf);
    if n == 0 || n > room {
        dpdk_sys::rte_pktmbuf_free(m);
        return None;
    }
    dpdk_sys::rvs_mbuf_set_len(m, n as u16);
    Some(m)
}
