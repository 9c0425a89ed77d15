//! DPDK's own log (EAL, PMDs, telemetry) through rvsd's logger: EAL writes each message to a
//! glibc custom stream (`fopencookie`) whose write callback hands every complete line to
//! tracing under target `dpdk`, so the text/JSON choice and the no-colour rule cover DPDK's
//! lines too. Without it EAL writes to stderr and syslog by itself.
//!
//! `rte_vlog` sets the message's level, formats into the stream and flushes it, so the write
//! callback runs while `rte_log_cur_msg_loglevel()` still names that message's level. Writes
//! are serialised by the stream's own lock; the line buffer's mutex is never contended.

use std::ffi::c_void;
use std::os::raw::{c_char, c_int};
use std::sync::Mutex;

/// Bytes of a line that EAL has not finished yet.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Points DPDK's log at tracing. Call before `rte_eal_init`, which logs while it starts.
pub fn install() -> Result<(), String> {
    let funcs = dpdk_sys::cookie_io_functions_t {
        read: None,
        write: Some(write),
        seek: None,
        close: None,
    };
    // SAFETY: the mode is a NUL-terminated string; the callbacks ignore the cookie.
    let file = unsafe { dpdk_sys::fopencookie(std::ptr::null_mut(), c"w".as_ptr(), funcs) };
    if file.is_null() {
        return Err(format!(
            "cannot open a log stream for DPDK: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: file is a valid stream that is never closed, as EAL keeps writing to it.
    if unsafe { dpdk_sys::rte_openlog_stream(file) } != 0 {
        return Err("rte_openlog_stream refused rvsd's log stream".into());
    }
    Ok(())
}

/// The stream's write callback: logs every complete line, keeps the rest for the next write.
///
/// # Safety
/// `buf` holds `size` readable bytes (stdio's contract with a cookie stream).
unsafe extern "C" fn write(
    _cookie: *mut c_void,
    buf: *const c_char,
    size: usize,
) -> dpdk_sys::__ssize_t {
    if size == 0 {
        return 0;
    }
    // SAFETY: stdio hands a buffer of `size` readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), size) };
    // SAFETY: a per-thread read of the level rte_vlog set for the message being written.
    let level = unsafe { dpdk_sys::rte_log_cur_msg_loglevel() };
    let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    pending.extend_from_slice(bytes);
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        emit(level, String::from_utf8_lossy(&line[..end]).trim_end());
    }
    size as dpdk_sys::__ssize_t
}

/// rte_log's levels (`RTE_LOG_EMERG` 1 .. `RTE_LOG_DEBUG` 8) as tracing's; info where the level
/// is unknown.
fn emit(level: c_int, line: &str) {
    if line.is_empty() {
        return;
    }
    match u32::try_from(level).unwrap_or(0) {
        1..=dpdk_sys::RTE_LOG_ERR => tracing::error!(target: "dpdk", "{line}"),
        dpdk_sys::RTE_LOG_WARNING => tracing::warn!(target: "dpdk", "{line}"),
        dpdk_sys::RTE_LOG_DEBUG => tracing::debug!(target: "dpdk", "{line}"),
        _ => tracing::info!(target: "dpdk", "{line}"),
    }
}
