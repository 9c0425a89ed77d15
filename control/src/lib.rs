//! rvs control plane types shared by the daemon (`rvsd`) and the CLI (`rvsadm`).
//!
//! Nothing here depends on DPDK, so `rvsadm` builds anywhere.

pub mod cli;
pub mod client;
pub mod config;
pub mod eal_files;
pub mod format;
pub mod model;
pub mod proto;
pub mod reload;
pub mod sync;
pub mod sysctl;
