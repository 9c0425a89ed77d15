//! Per packet: classify -> lookup/schedule -> rewrite -> verdict. No DPDK types, no allocation,
//! no locks that readers wait on, no syscalls, no panics.
//!
//! [`Dataplane`] is the state all workers share; each worker owns a [`Pipeline`] over it and
//! hands it one frame at a time: [`Pipeline::process_buf`] takes the frame's bytes followed by
//! the room left in its buffer, rewrites the frame in place and returns an [`Action`]. What a
//! worker does around that (bursts, prefetching, per-port TX batches, frames held for ARP, the
//! counters of what it sends) is [`crate::driver::BurstDriver`]: rvsd's DPDK worker, the fuzz
//! targets, pipeline-bench and the hostile-input tests all run it.
//!
//! In front of the stages, `fast`: the established fast path (a TCP/UDP packet of a
//! connection the burst prefetch found, through the stages' own checks and rewrite in one
//! pass, or handed to the stages untouched), IPv4's asked by `process_buf`, IPv6's by
//! `classify`.
//!
//! One file per stage: `classify` (port, ethertype, ARP), `ip` (IPv4 checks, martians,
//! fragments), `icmp` (errors about connections, echo), `conn` (TCP/UDP lookup, scheduling,
//! NAT), `egress` (routing, MTU, L2 header), `icmp_error` (the errors rvs originates) and
//! `reset` (the TCP RSTs rvs originates), `sync` (connection events for the sync master); the shared state is in `shared`, the per-worker
//! context in `context`, the kernel exception path in `kernel`, the addresses rvs holds
//! (configured and VRRP-held) in `owned`. A stage returns the `Action` or a `Refusal`: the drop reason and, for
//! the drops that are answered, the ICMP error or RST to build in the frame's place.
//!
//! `process(in_port, frame)` is `process_buf(in_port, frame, frame.len())`: no room to grow, so
//! an ICMP error that does not fit in the frame itself is not sent (the drop is still counted).
//!
//! Accounting: `process_buf` counts rx and every drop; the driver counts the rest (see
//! [`crate::driver`]), so that `rx_packets + generated = tx_packets + sum(drop.*) + held`
//! (`Stats::generated`): a frame answered by an ICMP error or a TCP RST counts as dropped (by its
//! reason) and the answer as generated. Apart from `Reply`, the frame's length never changes
//! (all rewrites are in place). `now_ms` is a monotonic millisecond clock shared by all workers (any epoch
//! below 2^40 ms).
//!
//! What `process` does with a frame:
//! - ARP: learns the sender (on a connected subnet); answers requests for the addresses the
//!   port holds (its own, less those a VRRP instance names but does not hold, plus those an
//!   instance holds there: `owned`) and, on external/both ports, for every VIP no instance
//!   names; other ARP is consumed.
//! - ICMP echo request to one of our addresses or a VIP: echo reply in place, same port.
//! - TCP/UDP of a tracked connection: client -> VIP:vport is DNATed to RIP:rport, RIP:rport ->
//!   client is SNATed to VIP:vport; the TCP state follows the packet.
//! - TCP SYN (without RST) or any UDP to a service: a real server is scheduled, the connection
//!   inserted and the packet DNATed. Other TCP to a service without a connection is dropped
//!   (with `sloppy_tcp`, any segment but a RST opens one).
//! - A removed real server's connections go on (`expire_nodest_conn` 0), or a client's packet
//!   expires its connection (1): a TCP segment is answered with a RST from VIP:vport, a SYN or
//!   a UDP datagram is scheduled afresh.
//! - TCP/UDP from a real server's service address and port that matches no connection is
//!   dropped (`rs_no_conn`), never routed un-NATed; with `nat_icmp_send`, answered with ICMP
//!   port unreachable.
//! - Any other IPv4 not addressed to us is routed plainly between the ports (the real servers'
//!   other traffic, as a director with ip_forward=1 does).
//! - ICMP errors (types 3, 4, 11) quoting a tracked connection: rewritten as IPVS does (outer
//!   address, quoted address and port, checksums) and sent on; to a VIP or our address about
//!   nothing tracked: dropped (`icmp_unrelated`).
//! - IPv4 fragments: the first one (offset 0) takes the normal path and its decision is
//!   recorded; later ones follow it (`frag`), and one that comes before its first fragment's
//!   decision is handed back to be held (`AwaitFirstFragment`); see docs/packet-verdicts.md.
//!
//! Routing: the port with the longest connected prefix holding the destination (next hop = the
//! destination), else the first port with a gateway (next hop = the gateway). Forwarded and NATed
//! packets get their TTL decremented; one that would leave with TTL 0 is dropped
//! (`ttl_expired`) and answered with ICMP time exceeded; one larger than the egress MTU is
//! dropped (`mtu_exceeded`) and, with DF set, answered with ICMP fragmentation needed. ICMP
//! errors follow RFC 1812: never about an ICMP error, a non-first fragment, or from/to a group or
//! special address; a per-worker token bucket ([`ICMP_RATE_PER_SEC`], burst [`ICMP_BURST`])
//! limits them. They go back out of the ingress port to the frame's source MAC (the previous
//! hop), from the packet's destination when that is a VIP or ours, else from the ingress port's
//! address. Every verdict and its counter: docs/packet-verdicts.md.

mod classify;
mod conn;
mod context;
mod defence;
mod egress;
mod family;
mod fast;
mod icmp;
mod icmp_error;
mod ip;
mod ip6;
mod kernel;
mod owned;
mod reset;
mod shared;
mod sync;

pub use context::{Pipeline, AGING_SWEEP_MS, PREFETCH_BURST};
pub use icmp_error::{ICMP_BURST, ICMP_RATE_PER_SEC};
pub use kernel::{KernelPath, KERNEL_BURST, KERNEL_RATE_PER_SEC};
pub use owned::{
    HeldAddr, HeldAddr6, OwnedAddrs, TwinChange, VirtualAddrs, VirtualAddrsEntry, GARP_COUNT,
    GARP_INTERVAL_MS, MAX_VIRTUAL_ADDRS,
};
#[cfg(test)]
pub(crate) use shared::{dual_stack_for_tests, two_arm_for_tests};
pub use shared::{Dataplane, DataplaneConfig, PortSetup};

use crate::stats::DropReason;
use icmp_error::IcmpError;
use std::net::IpAddr;

/// What the caller does with the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send it on this port.
    Tx(u16),
    /// Send `buf[..len]` on `port`: a frame rvs built in the buffer in place of the one
    /// received (an ICMP error, a TCP RST); its length may differ from the received frame's.
    Reply { port: u16, len: usize },
    /// The next hop's MAC is unknown: send an ARP request (IPv6: a neighbour solicitation,
    /// [`Pipeline::neighbour_request`]) and keep the frame until `fill_l2` succeeds.
    Hold { port: u16, next_hop: IpAddr },
    /// A later fragment whose datagram has no recorded decision yet (its first fragment has
    /// not passed): keep the frame, unchanged, and offer it to
    /// [`Pipeline::retry_fragment`] on later poll loops until that returns something else;
    /// whoever gives up on it counts it (`frag_no_first`).
    AwaitFirstFragment,
    /// For our own stack: strip the Ethernet header and queue the packet to the kernel twin of
    /// `port` (the ingress port); count `to_kernel`, or `kernel_queue_full` if the queue is
    /// full. Within the worker's rate already (docs/exception-path.md).
    ToKernel { port: u16 },
    /// Free it (already counted).
    Drop,
}

/// Why a stage does not pass the frame on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Dropped, counted under this reason.
    Drop(DropReason),
    /// Dropped, counted under this reason, and answered with this ICMP error where RFC 1812
    /// and the rate limit allow (`Pipeline::icmp_error`).
    Answer(DropReason, IcmpError),
    /// A TCP segment dropped, counted under this reason, and answered with a RST from its
    /// destination (`Pipeline::tcp_reset`).
    Reset(DropReason),
    /// For our own stack (to a non-VIP address of ours, nothing the dataplane handles): up
    /// to the ingress port's kernel twin, else dropped under this reason
    /// (`Pipeline::send_up`).
    Local(DropReason),
    /// IPv6 neighbour discovery: handled with the whole buffer (`Pipeline::ndp`), since the
    /// advertisement answering a solicitation may be longer than it (RFC 4861 lets a
    /// solicitation leave out its link-layer option; a DAD probe has none).
    Ndp,
}

impl From<DropReason> for Refusal {
    fn from(reason: DropReason) -> Refusal {
        Refusal::Drop(reason)
    }
}
