//! rvsd, the rvs daemon, around the DPDK-free `dataplane` crate: `dpdk` owns EAL, ports and the
//! poll-mode workers (a thin mbuf adapter of the dataplane's burst driver); `control_server`
//! serves the Unix control socket; `reload` applies a changed configuration live; `metrics` the
//! Prometheus endpoint and status page; `sync` the IPVS connection sync daemons. `main.rs` wires them together.

pub mod control_server;
pub mod dpdk;
pub mod metrics;
pub mod reload;
pub mod sync;
