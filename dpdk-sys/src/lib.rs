//! Raw bindings to the system DPDK (>= 22.11), generated at build time by bindgen.
//!
//! Static inline DPDK functions (`rte_eth_rx_burst`, `rte_pktmbuf_alloc`, `rte_lcore_id`, ...) are
//! exported through generated C wrappers and callable under their own names; the `rvs_*` helpers in
//! `wrapper.h` cover what DPDK only has as macros or struct fields.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]
#![allow(unnecessary_transmutes, unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
