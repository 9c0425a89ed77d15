//! Everything that touches DPDK: EAL start-up, ports with their queues and mempools, and the
//! poll-mode workers that move mbufs between the NIC and `pipeline`.

pub mod capture;
pub mod eal;
pub mod eal_log;
pub mod exception;
pub mod mbuf;
pub mod port;
pub mod telemetry;
pub mod worker;

use std::ffi::CStr;

/// The text of DPDK's last error on this thread.
pub fn last_error() -> String {
    // SAFETY: rte_strerror returns a pointer to a static or per-thread string.
    unsafe {
        let errno = dpdk_sys::rvs_rte_errno();
        let msg = dpdk_sys::rte_strerror(errno);
        if msg.is_null() {
            format!("rte_errno {errno}")
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

/// The text of a negative errno a DPDK function returned.
pub fn errno_text(ret: i32) -> String {
    std::io::Error::from_raw_os_error(-ret).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL initialisation failed: {0}")]
    Eal(String),
    #[error("port {name:?}: {message}")]
    Port { name: String, message: String },
    #[error("lcore {lcore}: {message}")]
    Lcore { lcore: u32, message: String },
}
