//! The connection table: one lock-free table shared by all workers, one entry per connection,
//! found by either of its two tuples.
//!
//! Each connection is reachable by its inbound tuple (CIP:cport -> VIP:vport) and its reply
//! tuple (RIP:rport -> CIP:cport), both as they appear on the wire, so one [`ConnTable::lookup`]
//! of a packet's 5-tuple finds the connection whichever way the packet travels, on any worker:
//! replies may arrive on any core (plain RSS, no flow rules).
//!
//! One memory region holds the entries and their index (one 64-byte bucket of slot words per
//! entry). Lookups read one bucket line and one entry line; nothing takes a lock, anywhere.
//!
//! **Both address families**, one piece of code: [`ConnTable<F>`](ConnTable) is generic over
//! [`Family`], [`V4`] (the default: `ConnTable`, `Tuple`, `Hit`, ... name the IPv4 ones) or
//! [`V6`] ([`ConnTable6`], `Tuple<Ipv6Addr>`, ...). Only what an entry holds differs
//! (`family.rs`); the index, the seqlock read, the insert protocol, removal, free lists and
//! aging are the same code. Memory per connection, index included, as `memory_bytes() /
//! capacity` measures it:
//!
//! | family | entry | [`BYTES_PER_CONN`] | 10M connections (`memory_bytes`, 2 MiB pages) |
//! | --- | --- | --- | --- |
//! | IPv4 | 32 bytes, two per line | **96** | 962 MB (96.2 bytes/connection) |
//! | IPv6 | 64 bytes, one line | **128** ([`BYTES_PER_CONN6`]) | 1282 MB (128.2 bytes/connection) |
//!
//! An IPv6 table is made beside the IPv4 one with [`ConnTable6::sharing`]: the two share one
//! set of real-server slots (active/inactive counts, retired flags, overload marks) and the
//! timeouts, so a real server's counts are its connections of both families, as ipvsadm's
//! ActiveConn/InActConn; entries, index, free lists and [`ConnTable::len`] stay per table.
//!
//! Each part, with the invariants it keeps, in its own file:
//!
//! | file | what |
//! | --- | --- |
//! | `layout.rs` | the region (entries and buckets), its size, what a connection costs |
//! | `family.rs` | what an IPv4 and an IPv6 entry hold, how a tuple is hashed and compared |
//! | `entry.rs` | an entry's meta word (generation, state, expiry) and the seqlock read that validates it with the family's words |
//! | `index.rs` | buckets and slot words, the two keyed hashes of a tuple, two-choice placement and the overflow bits |
//! | `lookup.rs` | lookups and the burst prefetch: never wait, write nothing, never return a wrong mapping |
//! | `insert.rs` | the lock-free insert: why exactly one of two concurrent inserts of a tuple wins |
//! | `remove.rs` | state changes, expiry refreshes and removal: one CAS each decides |
//! | `free.rs` | free entries (sharded Treiber stacks), a full table and SYN floods (reap, evict) |
//! | `aging.rs` | the aging sweep and the listing of live connections |
//! | `state.rs` | TCP states, transitions and their timeouts |
//! | `mem.rs` | mapping the region (hugepages, prefaulting) |
//!
//! **Counts** (per real server active/inactive) are changed only by the thread whose CAS made
//! the change (an insert counts before its commit and uncounts if it loses), so they are exact
//! whenever the table is quiescent; in between a count may be off by the operations in flight
//! (signed, readers clamp at 0). The table's length is counted apart, per free-list shard
//! (entries taken less entries given back), since the real-server counts may be shared by the
//! two families' tables.
//!
//! Times are milliseconds on the workers' clock (any epoch, below 2^40 ms).
//!
//! Under `--cfg loom` the atomics are loom's (`crate::atomic`) and the region is a plain heap
//! allocation; see `loom_model.rs` for how to run the model check. Figures against DPDK's
//! `rte_hash` and `DashMap`: `benches/src/bin/table-bench.rs`, results in `benches/RESULTS.md`.

mod aging;
mod entry;
mod family;
mod free;
mod index;
mod insert;
mod layout;
mod lookup;
#[cfg(all(test, loom))]
mod loom_model;
mod mem;
mod remove;
pub mod state;

pub use aging::{Aged, HalfOpen};
pub use family::{Family, V4, V6};
pub use free::{EVICT_SCAN, SHARDS};
pub use index::{BucketSet, Prefetched, FIRST_FIT};
pub use layout::{BYTES_PER_CONN, BYTES_PER_CONN6, MAX_CAPACITY};
pub use mem::Backing;
pub use state::{
    tcp_transition, tcp_transition_in, ConnState, Dir, StateTimeouts, TcpEvent, TcpTable,
};

use crate::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use crate::hash::HashKey;
use control::model;
use crossbeam_utils::CachePadded;
use free::Shard;
use layout::Storage;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// A packet's 5-tuple as it appears on the wire.
///
/// `repr(C, align(8))`, addresses first: an IPv6 address starts at offset 0 or 16 of the
/// tuple, and the tuple at an 8-byte boundary of any enum or struct that carries it, so the
/// 8- and 16-byte stores that build a tuple and the loads that hash or copy it meet at the
/// same offsets (a load straddling two stores cannot be forwarded; in the IPv6 burst prefetch
/// such a stall was one of the hottest instructions of the profile).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple<A = Ipv4Addr> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// A connection to insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConn<A = Ipv4Addr> {
    pub proto: u8,
    pub client: (A, u16),
    pub virt: (A, u16),
    pub real: (A, u16),
    /// The real server's slot id (see `service`): its counters and stats.
    pub dest: u32,
    pub state: ConnState,
}

impl<A: Copy> NewConn<A> {
    /// The tuple of client packets: CIP:cport -> VIP:vport.
    pub fn inbound(&self) -> Tuple<A> {
        Tuple {
            proto: self.proto,
            src: self.client.0,
            sport: self.client.1,
            dst: self.virt.0,
            dport: self.virt.1,
        }
    }

    /// The tuple of real-server packets: RIP:rport -> CIP:cport.
    pub fn reply(&self) -> Tuple<A> {
        Tuple {
            proto: self.proto,
            src: self.real.0,
            sport: self.real.1,
            dst: self.client.0,
            dport: self.client.1,
        }
    }
}

/// Names one incarnation of an entry: stale references (the entry was freed and reused) are
/// recognised by the generation and do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef {
    idx: u32,
    gen: u16,
}

/// A connection found by [`ConnTable::lookup`] or made by [`ConnTable::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit<A = Ipv4Addr> {
    pub conn: ConnRef,
    /// Which of the two tuples matched.
    pub dir: Dir,
    pub state: ConnState,
    pub proto: u8,
    pub dest: u32,
    pub client: (A, u16),
    pub virt: (A, u16),
    pub real: (A, u16),
}

/// A connection as [`ConnTable::for_each`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo<A = Ipv4Addr> {
    pub proto: u8,
    pub state: ConnState,
    pub expires_ms: u64,
    pub dest: u32,
    pub client: (A, u16),
    pub virt: (A, u16),
    pub real: (A, u16),
}

impl<A: Into<IpAddr>> ConnInfo<A> {
    /// The same connection with its addresses as `IpAddr` (listings of both families).
    pub fn widen(self) -> ConnInfo<IpAddr> {
        ConnInfo {
            proto: self.proto,
            state: self.state,
            expires_ms: self.expires_ms,
            dest: self.dest,
            client: (self.client.0.into(), self.client.1),
            virt: (self.virt.0.into(), self.virt.1),
            real: (self.real.0.into(), self.real.1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError<A = Ipv4Addr> {
    /// A connection with the same inbound tuple exists, or another worker is inserting it right
    /// now (then `update` on the hit returns `None` until it is in; its mapping is the one that
    /// wins unless a third insert of the same tuple beats both).
    Exists(Hit<A>),
    /// Another connection already uses the reply tuple (same client ip:port reaching the same
    /// real server through another VIP), or the inbound tuple is some connection's reply tuple.
    ReplyConflict,
    /// No free entry and nothing to evict, or both buckets of a tuple are full; or (IPv6) a
    /// protocol an entry cannot hold (other than TCP, UDP, SCTP, ICMPv6: see `family.rs`).
    Full,
    /// The real server was removed (or its slot is unknown, or, IPv6, not below
    /// [`V6::MAX_DEST_SLOTS`](Family::MAX_DEST_SLOTS)).
    DestRetired,
    /// Concurrent inserts of the same tuple kept beating this one (bounded retries ran out).
    /// Drop the packet; the client retransmits.
    Busy,
}

/// Active/inactive connection counts of one real server slot, kept exact by the table.
#[derive(Debug, Default)]
pub struct DestCounts {
    // Signed: a state change and a concurrent expiry may adjust in either order, so a count can
    // dip below zero for an instant; readers clamp.
    active: AtomicI64,
    inactive: AtomicI64,
    /// The scheduler's threshold hysteresis (see `sched`).
    pub overloaded: AtomicBool,
}

impl DestCounts {
    pub fn active(&self) -> u64 {
        u64::try_from(self.active.load(Ordering::Relaxed)).unwrap_or(0)
    }

    pub fn inactive(&self) -> u64 {
        u64::try_from(self.inactive.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn add(&self, state: ConnState, n: i64) {
        let c = if state.is_active() {
            &self.active
        } else {
            &self.inactive
        };
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Most real-server slots of an IPv4 table: its entries store the slot in 16 bits (an IPv6
/// entry in 14: [`Family::MAX_DEST_SLOTS`]).
pub const MAX_DEST_SLOTS: usize = 1 << 16;

/// What the tables of both families share when one is made [`ConnTable::sharing`] another:
/// one set of real-server slots (counts, retired flags) and the timeouts.
#[derive(Debug)]
struct Slots {
    dests: Arc<[CachePadded<DestCounts>]>,
    /// Removed real servers, read by inserts (and by the pipeline when `expire_nodest_conn` is
    /// set): apart from the counters, which are written per new connection, so a read does not
    /// miss on a line other cores keep writing.
    retired: Arc<[AtomicBool]>,
    timeouts: Arc<StateTimeouts>,
}

impl Slots {
    fn new(dest_slots: usize, timeouts: &model::Timeouts) -> Slots {
        let dest_slots = dest_slots.min(MAX_DEST_SLOTS);
        Slots {
            dests: (0..dest_slots).map(|_| CachePadded::default()).collect(),
            retired: (0..dest_slots).map(|_| AtomicBool::new(false)).collect(),
            timeouts: Arc::new(StateTimeouts::new(timeouts)),
        }
    }

    fn share(&self) -> Slots {
        Slots {
            dests: Arc::clone(&self.dests),
            retired: Arc::clone(&self.retired),
            timeouts: Arc::clone(&self.timeouts),
        }
    }
}

/// The shared connection table of one address family ([`V4`], the default, or [`V6`]). See
/// the module documentation.
pub struct ConnTable<F: Family = V4> {
    storage: Storage<F>,
    /// Per-process random keys of the two hashes of a tuple (see `index.rs`), so nobody can
    /// aim traffic at one bucket.
    keys: [HashKey; 2],
    shards: [CachePadded<Shard>; SHARDS],
    /// Never-used entries start here (handed to shards in chunks).
    bump: CachePadded<AtomicUsize>,
    /// Where the next eviction scan starts.
    evict_cursor: CachePadded<AtomicUsize>,
    evictions: CachePadded<AtomicU64>,
    /// One bit per bucket: set (for good) once an insert put a tuple whose first bucket it is
    /// in its second bucket, because the first was full. Lookups and inserts look at a second
    /// bucket only when its first one's bit is set: at the table's load that is almost never,
    /// so a miss (every new connection's first lookup) reads one bucket line, not two.
    overflow: Box<[AtomicU64]>,
    /// Real-server counts, retired flags and timeouts: this table's own, or shared with the
    /// other family's table ([`ConnTable::sharing`]).
    slots: Slots,
}

/// The IPv6 connection table.
pub type ConnTable6 = ConnTable<V6>;

impl<F: Family> std::fmt::Debug for ConnTable<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("family", &F::NAME)
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("memory_bytes", &self.memory_bytes())
            .field("backing", &self.backing())
            .finish()
    }
}

impl ConnTable<V4> {
    /// An IPv4 table for `capacity` connections (clamped to 1..=[`MAX_CAPACITY`]) whose entries
    /// refer to real-server slots `0..dest_slots` (at most [`MAX_DEST_SLOTS`]). All its memory
    /// is allocated here, at once.
    pub fn new(capacity: usize, dest_slots: usize, timeouts: &model::Timeouts) -> ConnTable {
        Self::with_slots(capacity, Slots::new(dest_slots, timeouts))
    }

    /// Bytes a table of `capacity` connections maps for its entries and index (rounded up to
    /// whole 2 MiB pages when it is hugepage-backed), without building it.
    pub fn footprint(capacity: usize) -> usize {
        Self::footprint_of(capacity)
    }
}

impl ConnTable<V6> {
    /// An IPv6 table with real-server slots of its own (as [`ConnTable::new`]; an IPv6 entry
    /// names slots below [`V6::MAX_DEST_SLOTS`](Family::MAX_DEST_SLOTS)). (Not `new`: with
    /// two `new`s, `ConnTable::new` would no longer pick the IPv4 one.)
    pub fn new6(capacity: usize, dest_slots: usize, timeouts: &model::Timeouts) -> ConnTable6 {
        Self::with_slots(capacity, Slots::new(dest_slots, timeouts))
    }

    /// An IPv6 table for `capacity` connections that shares `v4`'s real-server slots (their
    /// active/inactive counts, retired flags, overload marks) and timeouts: a real server's
    /// counts are its connections of both families (ipvsadm's ActiveConn/InActConn), retiring
    /// it refuses both families' new connections, and a timeout set on one table holds for
    /// both. Its entries, index, free lists and [`ConnTable::len`] are its own.
    pub fn sharing(v4: &ConnTable<V4>, capacity: usize) -> ConnTable6 {
        Self::with_slots(capacity, v4.slots.share())
    }

    /// As [`ConnTable::footprint`], for IPv6 entries.
    pub fn footprint6(capacity: usize) -> usize {
        Self::footprint_of(capacity)
    }
}

impl<F: Family> ConnTable<F> {
    fn with_slots(capacity: usize, slots: Slots) -> ConnTable<F> {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let nbuckets = Self::bucket_count(capacity);
        ConnTable {
            storage: Storage::new(nbuckets, capacity),
            overflow: (0..nbuckets.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            keys: HashKey::random(),
            shards: std::array::from_fn(|_| CachePadded::default()),
            bump: CachePadded::new(AtomicUsize::new(0)),
            evict_cursor: CachePadded::new(AtomicUsize::new(0)),
            evictions: CachePadded::new(AtomicU64::new(0)),
            slots,
        }
    }

    /// Whether `self` and `other` share their real-server slots ([`ConnTable::sharing`]).
    pub fn shares_slots_with<G: Family>(&self, other: &ConnTable<G>) -> bool {
        Arc::ptr_eq(&self.slots.dests, &other.slots.dests)
    }

    pub fn capacity(&self) -> usize {
        self.storage.capacity
    }

    /// Memory this table holds: the mapped region (entries and index) plus the per-real-server
    /// counters and the free-list shards. Shared counters are counted by each table sharing
    /// them (a few hundred KB at most).
    pub fn memory_bytes(&self) -> usize {
        self.storage.bytes()
            + self.slots.dests.len() * std::mem::size_of::<CachePadded<DestCounts>>()
            + self.slots.retired.len() * std::mem::size_of::<AtomicBool>()
            + self.overflow.len() * 8
            + self.shards.len() * std::mem::size_of::<CachePadded<Shard>>()
    }

    /// What backs the entries and index.
    pub fn backing(&self) -> Backing {
        self.storage.backing()
    }

    /// Whether the entries and index are large enough to ask for 2 MB hugepages: off reserved
    /// ones (`Backing::HugeTlb`), a lookup of such a table may miss the TLB.
    pub fn hugepage_sized(&self) -> bool {
        // What the region asked for, before rounding (`mem::Region::new` decides on it).
        Self::footprint_of(self.capacity()) >= mem::HUGE
    }

    /// This table's connections (entries taken: live, and inserts in flight), exact while no
    /// insert or remove is in flight. Counted per free-list shard (the line each insert and
    /// removal touches anyway), so it is this table's alone even when it shares its real-server
    /// counts with the other family's table: those count both families (one read per shard:
    /// not for the packet path).
    pub fn len(&self) -> usize {
        let n: i64 = self.shards.iter().map(|s| s.taken()).sum();
        usize::try_from(n).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SYN_RECV connections evicted to make room for new ones since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    pub fn timeouts(&self) -> &StateTimeouts {
        &self.slots.timeouts
    }

    /// The counters of real-server slot `slot` (shared with the other family's table, see
    /// [`ConnTable::sharing`]).
    pub fn dest(&self, slot: u32) -> Option<&DestCounts> {
        self.slots
            .dests
            .get(usize::try_from(slot).ok()?)
            .map(|d| &**d)
    }

    /// Marks a real server removed: new connections to it are refused at insert
    /// ([`InsertError::DestRetired`]), in both families' tables when they share slots. Its
    /// existing connections stay, counted, until they end or time out (or until the pipeline
    /// expires them: `expire_nodest_conn`), so the slot is free for reuse only once its counts
    /// are back to zero.
    pub fn retire_dest(&self, slot: u32) {
        if let Some(r) = self.slots.retired.get(slot as usize) {
            r.store(true, Ordering::Release);
        }
    }

    /// Makes a drained slot usable again by a new real server.
    pub fn revive_dest(&self, slot: u32) {
        if let Some(d) = self.dest(slot) {
            d.overloaded.store(false, Ordering::Relaxed);
        }
        if let Some(r) = self.slots.retired.get(slot as usize) {
            r.store(false, Ordering::Release);
        }
    }

    /// Whether real-server slot `slot` was removed ([`ConnTable::retire_dest`]) and not reused
    /// since.
    #[inline]
    pub fn dest_retired(&self, slot: u32) -> bool {
        self.slots
            .retired
            .get(slot as usize)
            .is_some_and(|r| r.load(Ordering::Acquire))
    }
}
