//! Packet capture by DPDK's secondary processes: `dpdk-dumpcap` attaches to rvsd (the primary)
//! through EAL's runtime folder and asks its pdump server to copy a port's packets to it.
//!
//! That needs two things of rvsd: EAL not running `--in-memory` (a secondary process maps the
//! primary's hugepage files, which `--in-memory` never creates), and the pdump server
//! ([`init`], after EAL init; [`uninit`] at shutdown). The copy is made on the worker only for a
//! port and queue someone captures: without a capture the workers pay nothing.
//!
//! With a file prefix (`--file-prefix=rvs`, the packaged default), EAL keeps its hugepage
//! files (`/dev/hugepages/rvsmap_*`, each holding its hugepage) and runtime folder
//! (`/var/run/dpdk/rvs`) while rvsd runs, and leaves the files behind even after
//! `rte_eal_cleanup`: rvsd removes them at a clean stop (`control::eal_files`). After a
//! crash they stay until the next rvsd with the same prefix starts, which removes the stale
//! ones first. A second rvsd with the same prefix is refused by EAL (and before that by the
//! control socket), so two rvsd side by side need prefixes of their own.

use super::errno_text;
use control::proto::VersionInfo;
use dpdk_sys as sys;
use std::ffi::CStr;
use std::path::Path;

/// Starts the pdump server, so that `dpdk-dumpcap` can capture rvsd's ports. After EAL init.
pub fn init() -> Result<(), String> {
    // SAFETY: called once on the main thread after rte_eal_init.
    let ret = unsafe { sys::rte_pdump_init() };
    if ret != 0 {
        return Err(format!(
            "cannot start the packet capture server (rte_pdump_init): {}",
            super::last_error()
        ));
    }
    Ok(())
}

/// Stops the pdump server; after the workers stopped, before EAL cleanup.
pub fn uninit() {
    // SAFETY: called once at shutdown; no worker runs any more.
    let ret = unsafe { sys::rte_pdump_uninit() };
    if ret != 0 {
        tracing::warn!("rte_pdump_uninit: {}", errno_text(ret));
    }
}

/// EAL's runtime folder, where secondary processes find this primary.
pub fn runtime_dir() -> String {
    // SAFETY: EAL's static string, valid after init.
    let dir = unsafe { sys::rte_eal_get_runtime_dir() };
    if dir.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string owned by EAL for the process's life.
    unsafe { CStr::from_ptr(dir) }
        .to_string_lossy()
        .into_owned()
}

/// DPDK's version string ("DPDK 22.11.11").
pub fn dpdk_version() -> String {
    // SAFETY: rte_version returns a static string.
    unsafe { CStr::from_ptr(sys::rte_version()) }
        .to_string_lossy()
        .into_owned()
}

/// What `rvsctl version` reports: rvsd's and DPDK's versions, EAL's runtime folder and file
/// prefix (its last component), and whether EAL runs `--in-memory` (no secondary process can
/// attach) according to `eal_args`.
pub fn version_info(eal_args: &[String]) -> VersionInfo {
    let runtime_dir = runtime_dir();
    let file_prefix = Path::new(&runtime_dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    VersionInfo {
        rvsd: env!("CARGO_PKG_VERSION").to_string(),
        dpdk: dpdk_version(),
        runtime_dir,
        file_prefix,
        in_memory: eal_args.iter().any(|a| a == "--in-memory"),
    }
}
