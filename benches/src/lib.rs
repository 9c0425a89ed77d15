//! rvs benchmarks. `frame` holds rvs-pktgen's packet logic on plain byte buffers (client frames,
//! the real-server reflection, reply checks, ARP) so it is tested without DPDK; the binary
//! `rvs-pktgen` (src/bin) drives it over two DPDK ports. `scripts/bench.sh` runs the traffic
//! benchmark and writes `benches/RESULTS.md`.

pub mod frame;
