//! rvs control plane types shared by the daemon (`rvsd`) and the CLI (`rvsadm`).
//!
//! Nothing here depends on DPDK, so `rvsadm` builds anywhere.

pub mod config;
pub mod model;
pub mod proto;
