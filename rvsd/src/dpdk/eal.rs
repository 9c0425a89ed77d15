//! EAL start-up and lcore queries.

use super::{last_error, DpdkError};
use std::ffi::CString;
use std::os::raw::c_char;

/// Starts EAL with `args` (without the program name), its log routed through tracing. EAL can
/// start once per process.
pub fn init(args: &[String]) -> Result<(), DpdkError> {
    super::eal_log::install().map_err(DpdkError::Eal)?;
    let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
    owned.push(CString::new("rvsd").unwrap());
    for a in args {
        owned.push(
            CString::new(a.as_str())
                .map_err(|_| DpdkError::Eal(format!("argument {a:?} contains a NUL byte")))?,
        );
    }
    // EAL may permute argv, so hand it a copy of the pointers; the strings outlive the call and
    // are leaked on purpose because EAL keeps pointers into them (e.g. for --file-prefix).
    let mut argv: Vec<*mut c_char> = owned.iter().map(|s| s.as_ptr() as *mut c_char).collect();
    std::mem::forget(owned);
    // SAFETY: argv holds argc valid NUL-terminated strings that are never freed.
    let ret = unsafe { dpdk_sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
    std::mem::forget(argv);
    if ret < 0 {
        return Err(DpdkError::Eal(last_error()));
    }
    Ok(())
}

/// Releases EAL resources (hugepage files, vdevs) at exit.
pub fn cleanup() {
    // SAFETY: called once, after every worker has returned.
    unsafe {
        dpdk_sys::rte_eal_cleanup();
    }
}

pub fn main_lcore() -> u32 {
    // SAFETY: plain query after EAL init.
    unsafe { dpdk_sys::rte_get_main_lcore() }
}

/// Every lcore EAL enabled, main lcore included, in ascending order.
pub fn enabled_lcores() -> Vec<u32> {
    (0..dpdk_sys::RTE_MAX_LCORE)
        // SAFETY: plain query after EAL init.
        .filter(|&l| unsafe { dpdk_sys::rte_lcore_is_enabled(l) } != 0)
        .collect()
}

pub fn lcore_socket(lcore: u32) -> i32 {
    // SAFETY: plain query after EAL init.
    unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore) as i32 }
}

/// TSC ticks per second, for the workers' millisecond clock.
pub fn tsc_hz() -> u64 {
    // SAFETY: plain query after EAL init.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

pub fn tsc() -> u64 {
    // SAFETY: reads the time stamp counter.
    unsafe { dpdk_sys::rte_get_tsc_cycles() }
}
