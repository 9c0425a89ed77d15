//! Per packet: classify -> lookup/schedule -> rewrite -> verdict. No DPDK types, no allocation,
//! no locks, no syscalls.
//!
//! CONTRACT used by `dpdk::worker` (keep these signatures):
//!
//! ```ignore
//! let dp: Arc<Dataplane> = Dataplane::new(DataplaneConfig { ports, conn_capacity, timeouts, workers });
//! let mut w = Worker::new(dp.clone(), worker_index);
//! loop {
//!     w.begin_burst(now_ms);                       // loads the service snapshot once per burst
//!     for each frame: match w.process(in_port, &mut frame[..len]) {
//!         Action::Tx(port) => send frame on port,  // rewritten in place, L2 filled in
//!         Action::Hold { port, next_hop } => {     // next hop MAC unknown
//!             let n = w.arp_request(port, next_hop, &mut new_buf); send new_buf[..n] on port;
//!             keep the frame; later w.fill_l2(port, next_hop, frame) -> true => send it
//!         }
//!         Action::Drop => free frame,             // already counted by reason
//!     }
//!     w.housekeeping(now_ms);                      // bounded aging work
//! }
//! ```
