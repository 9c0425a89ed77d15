//! rvsd: a DPDK layer-4 load balancer in the LVS VS/NAT mould.
//!
//! The packet logic (`packet`, `conntrack`, `sched`, `service`, `neigh`, `pipeline`) works on
//! plain byte buffers and never touches DPDK, so it is unit-tested, fuzzed and benchmarked without
//! a NIC. `dpdk` owns EAL, ports and the poll-mode workers; `control` serves the Unix socket.

pub mod conntrack;
pub mod control;
pub mod dpdk;
pub mod frag;
pub mod neigh;
pub mod packet;
pub mod persist;
pub mod pipeline;
pub mod sched;
pub mod service;
pub mod stats;
