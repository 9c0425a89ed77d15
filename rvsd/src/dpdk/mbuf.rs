//! Thin safe helpers over `rte_mbuf` pointers, for single-segment packets.

use dpdk_sys::{rte_mbuf, rte_mempool};

/// The packet bytes of a single-segment mbuf.
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller for the lifetime of the slice.
pub unsafe fn data_mut<'a>(m: *mut rte_mbuf) -> &'a mut [u8] {
    let len = dpdk_sys::rvs_mbuf_data_len(m) as usize;
    std::slice::from_raw_parts_mut(dpdk_sys::rvs_mbuf_data(m) as *mut u8, len)
}

/// The packet bytes of a single-segment mbuf followed by its tailroom, and the packet length:
/// `(buf, len)` with `buf[..len]` the packet. For the pipeline's `process_buf`.
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller for the lifetime of the slice.
pub unsafe fn data_with_room<'a>(m: *mut rte_mbuf) -> (&'a mut [u8], usize) {
    let len = dpdk_sys::rvs_mbuf_data_len(m) as usize;
    let room = dpdk_sys::rte_pktmbuf_tailroom(m) as usize;
    let buf = std::slice::from_raw_parts_mut(dpdk_sys::rvs_mbuf_data(m) as *mut u8, len + room);
    (buf, len)
}

/// Sets the length of a single-segment mbuf (at most its data length plus tailroom).
///
/// # Safety
/// `m` must be a valid mbuf owned by the caller.
pub unsafe fn set_len(m: *mut rte_mbuf, len: u16) {
    dpdk_sys::rvs_mbuf_set_len(m, len);
}

/// # Safety
/// `m` must be a valid mbuf.
pub unsafe fn is_single_segment(m: *mut rte_mbuf) -> bool {
    dpdk_sys::rvs_mbuf_nb_segs(m) == 1
}

/// # Safety
/// `m` must be a valid mbuf owned by the caller; it is gone afterwards.
pub unsafe fn free(m: *mut rte_mbuf) {
    dpdk_sys::rte_pktmbuf_free(m);
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
