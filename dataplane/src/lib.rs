//! The rvs packet path, free of DPDK: everything a worker does with a frame works on plain byte
//! buffers, so it is unit-tested, fuzzed and benchmarked on any machine. The daemon (`rvsd`)
//! wraps it in DPDK ports and lcores.
//!
//! `packet` (typed views over byte slices), `conntrack` (the shared connection table), `sched`
//! (LVS schedulers), `service` (snapshots the workers read), `neigh`, `frag`, `persist`,
//! `pipeline` (classify -> lookup/schedule -> rewrite -> verdict), `driver` (what a worker does
//! with a burst, on any frame buffer), `stats` and `sync` (IPVS connection sync).

// The packet path never panics: no indexing, unwrap, expect or panic (clippy.toml allows them
// in unit tests).
#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod addr_set;
mod atomic;
pub mod conntrack;
pub mod driver;
pub mod frag;
pub mod hash;
pub mod neigh;
pub mod packet;
pub mod persist;
pub mod pipeline;
pub mod sched;
pub mod seqlock;
pub mod service;
pub mod stats;
pub mod sync;
