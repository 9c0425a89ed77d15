//! Virtual services and real servers: the control thread's master state and the immutable
//! snapshot the workers read.
//!
//! - [`snapshot`]: what workers read ([`Snapshot`], [`Service`]), loaded once per burst;
//! - [`dest`]: a real server as workers and schedulers see it ([`Dest`], [`MAX_DESTS`]);
//! - [`manager`]: the control thread's [`ServiceManager`], which applies `control::proto`
//!   requests and publishes a new snapshot with arc-swap after every change.
//!
//! Dependencies run one way: `manager -> pipeline -> snapshot -> sched -> dest`; nothing a
//! worker reads depends on the manager.
//!
//! # Real-server slots
//!
//! Each real server gets a *slot id* for its lifetime (the identity `(service, RIP, rport)`;
//! edits keep it, delete + add makes a new one). Everything counted about a real server is
//! indexed by slot, outside the snapshot, so it survives snapshot rebuilds:
//! - active/inactive connections: atomics in the connection table, changed only on state
//!   changes and expiry (`conntrack::DestCounts`);
//! - connections, packets and bytes: per-worker arrays in `stats` indexed by slot, written only
//!   by their worker (no shared cache line is written per packet) and summed on read. `-Z` and
//!   slot reuse record a baseline here instead of writing the workers' counters.
//!
//! A deleted real server's slot is retired: no new connection is inserted for it, and its
//! connections go on, counted on the slot, until they end or time out (with
//! `expire_nodest_conn` set, until their next packet). It is reused only once no snapshot still
//! names it (its lease `Arc` is unshared) and its counts are back to zero, so neither a worker
//! scheduling from an older snapshot nor an old connection can ever be charged to a newer
//! server.

pub mod dest;
pub mod manager;
mod neighbours;
pub mod snapshot;

pub use dest::{Dest, MAX_DESTS};
pub use manager::{ServiceManager, MAX_WEIGHT};
pub use snapshot::{OpsReply, Service, Snapshot};
