//! The connection table: one lock-free table shared by all workers, one entry per connection,
//! found by either of its two tuples.
//!
//! Each connection is reachable by its inbound tuple (CIP:cport -> VIP:vport) and its reply
//! tuple (RIP:rport -> CIP:cport), both as they appear on the wire, so one [`ConnTable::lookup`]
//! of a packet's 5-tuple finds the connection whichever way the packet travels, on any worker:
//! replies may arrive on any core (plain RSS, no flow rules).
//!
//! # Layout and memory per connection
//!
//! One memory region, mapped once at start (`mem::Region`: 2 MiB hugepages where the pool has
//! them, else transparent hugepages; prefaulted), holds two arrays:
//!
//! - **entries**, 32 bytes each (two per cache line, never straddling one): `meta` (generation
//!   16 | state 8 | expiry 40 bits, in ms), `client` (proto | CIP | cport), `virt` (real-server
//!   slot 16 | VIP | vport) and `real` (RIP | rport; the free-list link while free);
//! - **buckets** of the index, one 64-byte cache line each, 8 slot words of `tag 31 | dir 1 |
//!   entry index + 1 (32)` (the tag is never 0, so an empty slot never matches). There are as
//!   many buckets as entries: 8 slots for the 2 tuples of a connection, an average load of 2 of
//!   8 at full capacity.
//!
//! Beside the region, one *overflow* bit per bucket (see below) and small per-real-server
//! counters. So a connection costs [`BYTES_PER_CONN`] = 32 + 64 = **96 bytes, index included**
//! (plus that one bit); 10M connections take 962 MB with 2 MiB-page rounding and the counters
//! of 64 real servers (resident, as measured by `table-mem` in benches/), under the 1.5 GB
//! target. [`ConnTable::footprint`] computes the region's size and [`ConnTable::memory_bytes`]
//! reports what a table holds.
//!
//! Each tuple has two candidate buckets (two independent keyed hashes, ranged by multiply-
//! shift so any bucket count works). An insert takes the first bucket while fewer than
//! [`FIRST_FIT`] (6) of its slots are taken, which at load 2/8 is nearly always, else the emptier
//! of the two (two-choice balancing, which keeps both from filling up: without it a 10M table
//! refused a few dozen inserts near capacity). Putting a tuple in its second bucket first sets
//! the first bucket's overflow bit (for good); lookups read the second bucket only when that
//! bit is set, so a hit reads one bucket line and one entry line, and a miss (the first lookup
//! of every new connection) one bucket line. Both buckets full does not happen at this load
//! short of an attack on the random per-process keys; if it does, a stale or SYN_RECV entry in
//! those buckets is removed, else the insert fails `Full`.
//!
//! # Concurrency: lock-free, no locks anywhere
//!
//! - **Lookups** never wait and write nothing (unless they meet an expired entry, which they
//!   remove as below): they read slot words, then the entry's words, and validate with the
//!   generation (a seqlock read: meta, fields, acquire fence, meta again). Only a fully
//!   inserted (`LIVE`) entry is ever returned, and only if its tuple matches the one looked
//!   up, so a stale slot or a reused entry reads as a miss, never as a wrong mapping.
//! - **Insert** (any worker, any time), with no lock:
//!   1. take a free entry (per-thread free-list shard, see below), mark it `BUSY` with a new
//!      generation, write its fields, then mark it `PENDING` (release);
//!   2. claim an empty slot for each tuple with a compare-and-swap from 0;
//!   3. a `SeqCst` fence, then scan both tuples' buckets (the second one if the first's
//!      overflow bit is set: a rival sets that bit before its own fence) for another entry with
//!      the same tuple.
//!      A `LIVE` one makes this insert lose (`Exists` / `ReplyConflict`). Of two `PENDING` ones
//!      the lower entry index has priority: the lower one kills the higher with a CAS of the
//!      other's meta (`PENDING -> FREE`), the higher one backs off by itself;
//!   4. commit with one CAS of its own meta `PENDING -> LIVE`. That CAS fails only if a
//!      higher-priority insert killed it; the loser then clears its slots and frees its entry.
//!
//!   **Exactly one of two concurrent inserts of a tuple wins**: both claim a slot, then fence,
//!   then scan, so (store-buffering is forbidden across `SeqCst` fences) at least one sees the
//!   other. If both see each other, the priority order decides. If only the higher-priority one
//!   (lower index) sees the other, it kills it before its own commit, or finds it already
//!   `LIVE` and loses to it. If only the lower-priority one sees the other, it backs off. A
//!   commit and a kill are CASes on the same word, so they cannot both succeed. The entry with
//!   the lowest index among contenders is never killed, so some insert always completes: the
//!   algorithm is lock-free (not wait-free: a thread killed repeatedly gives up after
//!   `INSERT_ATTEMPTS` with [`InsertError::Busy`]). The loom model in `loom_model.rs` checks
//!   this exhaustively on a small table.
//! - **Remove**: one CAS `LIVE -> FREE` on the entry's meta decides the single remover (a
//!   packet's lookup, aging, eviction and the control side may race); the winner adjusts the
//!   counters, clears the two slot words (plain stores: only an entry's owner writes a slot
//!   holding its word) and pushes the entry on its free list. The same
//!   entry's next incarnation has a new generation, so stale [`ConnRef`]s do nothing.
//! - **Update** (state change, expiry refresh): one CAS on meta. A refresh is skipped unless the
//!   expiry moves by more than 1/16 of the timeout (at most 1 s), so an established flow does
//!   not write the shared entry on every packet.
//! - **Counts** (per real server active/inactive; the table's length is their sum): changed
//!   only by the thread whose CAS made the change (insert counts before its commit and uncounts
//!   if it loses), so they are exact whenever the table is quiescent; in between a count may be
//!   off by the operations in flight (signed, readers clamp at 0).
//! - **Free entries** live in [`SHARDS`] tagged Treiber stacks plus never-used ranges handed
//!   out in chunks; each thread pops from and pushes to its own shard (chosen once per thread)
//!   and steals from the others only when its own is empty, so two workers do not contend on one
//!   free-list head.
//!
//! # Table full, SYN floods
//!
//! When no entry is free, an insert first looks at a window of [`EVICT_SCAN`] entries (from a
//! shared cursor): an expired entry there is reaped; else the SYN_RECV entry with the earliest
//! expiry is evicted (counted in [`ConnTable::evictions`]) and its entry reused. Only if the
//! window has neither does the insert fail with [`InsertError::Full`] (the pipeline drops and
//! counts the packet). Established connections are never evicted.
//!
//! # Aging
//!
//! Workers age the table in bounded slices ([`ConnTable::housekeeping`]; the pipeline gives
//! each worker's share a full sweep every 2 s, a part of it each millisecond), so an expired
//! entry, or one whose real server was removed, is freed within a sweep; a lookup that meets
//! one first removes it and misses. No timer thread.
//!
//! Times are milliseconds on the workers' clock (any epoch, below 2^40 ms).
//!
//! Under `--cfg loom` the atomics are loom's and the region is a plain heap allocation; see
//! `loom_model.rs` for how to run the model check. Figures against DPDK's `rte_hash` and
//! `DashMap`: `benches/src/bin/table-bench.rs`, results in `benches/RESULTS.md`.

#[cfg(all(test, loom))]
mod loom_model;
mod mem;
pub mod state;

pub use mem::Backing;
pub use state::{tcp_transition, ConnState, Dir, StateTimeouts, TcpEvent};

use crate::packet::ipv4::PROTO_TCP;
use control::model;
use crossbeam_utils::CachePadded;
use std::net::Ipv4Addr;
use std::ops::Range;
use sync::{fence, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

mod sync {
    #[cfg(loom)]
    pub use loom::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicUsize, Ordering};
    #[cfg(not(loom))]
    pub use std::sync::atomic::{fence, AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

    /// Loom's `AtomicU64`, whose loads and stores can be run as read-modify-writes
    /// (`fetch_add(0)`, `swap`): loom's partial-order reduction tracks only the last access to
    /// an atomic, and misses interleavings where a thread's load is followed by its own CAS
    /// (loom issues #166, #392). With every access an RMW, every access to a word conflicts
    /// with every other one and all interleavings are explored (sequentially consistent ones;
    /// the plain mode explores stale reads instead). Stores become swaps too, because loom
    /// orders plain stores only partially and would let an RMW read an older value than a
    /// concurrent plain store (loom issue #282). `loom_model.rs` runs each model both ways.
    #[cfg(loom)]
    #[derive(Debug, Default)]
    pub struct AtomicU64(loom::sync::atomic::AtomicU64);

    #[cfg(loom)]
    std::thread_local! {
        /// Per test thread: loom runs a model's threads as coroutines on the test's thread.
        pub static RMW_LOADS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[cfg(loom)]
    impl AtomicU64 {
        pub fn new(v: u64) -> Self {
            AtomicU64(loom::sync::atomic::AtomicU64::new(v))
        }
        pub fn load(&self, o: Ordering) -> u64 {
            if RMW_LOADS.with(|r| r.get()) {
                self.0.fetch_add(0, o)
            } else {
                self.0.load(o)
            }
        }
        pub fn store(&self, v: u64, o: Ordering) {
            if RMW_LOADS.with(|r| r.get()) {
                self.0.swap(v, o);
            } else {
                self.0.store(v, o)
            }
        }
        pub fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
            self.0.fetch_add(v, o)
        }
        pub fn fetch_or(&self, v: u64, o: Ordering) -> u64 {
            self.0.fetch_or(v, o)
        }
        pub fn compare_exchange(
            &self,
            a: u64,
            b: u64,
            s: Ordering,
            f: Ordering,
        ) -> Result<u64, u64> {
            self.0.compare_exchange(a, b, s, f)
        }
        pub fn compare_exchange_weak(
            &self,
            a: u64,
            b: u64,
            s: Ordering,
            f: Ordering,
        ) -> Result<u64, u64> {
            self.0.compare_exchange_weak(a, b, s, f)
        }
    }
}

/// A packet's 5-tuple as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub proto: u8,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

/// A connection to insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewConn {
    pub proto: u8,
    pub client: (Ipv4Addr, u16),
    pub virt: (Ipv4Addr, u16),
    pub real: (Ipv4Addr, u16),
    /// The real server's slot id (see `service`): its counters and stats.
    pub dest: u32,
    pub state: ConnState,
}

impl NewConn {
    /// The tuple of client packets: CIP:cport -> VIP:vport.
    pub fn inbound(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.client.0,
            sport: self.client.1,
            dst: self.virt.0,
            dport: self.virt.1,
        }
    }

    /// The tuple of real-server packets: RIP:rport -> CIP:cport.
    pub fn reply(&self) -> Tuple {
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
pub struct Hit {
    pub conn: ConnRef,
    /// Which of the two tuples matched.
    pub dir: Dir,
    pub state: ConnState,
    pub proto: u8,
    pub dest: u32,
    pub client: (Ipv4Addr, u16),
    pub virt: (Ipv4Addr, u16),
    pub real: (Ipv4Addr, u16),
}

/// A connection as [`ConnTable::for_each`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub proto: u8,
    pub state: ConnState,
    pub expires_ms: u64,
    pub dest: u32,
    pub client: (Ipv4Addr, u16),
    pub virt: (Ipv4Addr, u16),
    pub real: (Ipv4Addr, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// A connection with the same inbound tuple exists, or another worker is inserting it right
    /// now (then `update` on the hit returns `None` until it is in; its mapping is the one that
    /// wins unless a third insert of the same tuple beats both).
    Exists(Hit),
    /// Another connection already uses the reply tuple (same client ip:port reaching the same
    /// real server through another VIP), or the inbound tuple is some connection's reply tuple.
    ReplyConflict,
    /// No free entry and nothing to evict, or both buckets of a tuple are full.
    Full,
    /// The real server was removed (or its slot is unknown).
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
    retired: AtomicBool,
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

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
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

// --- entry meta word: generation 16 | state 8 | expires 40 -------------------------------------
//
// state byte: 0 free; 1..=12 live (ConnState + 1); 0x80 | (ConnState + 1) pending (fields
// complete, slots being claimed and checked); 0xff busy (fields being written). All-zero memory
// is a free entry of generation 0.

const EXP_BITS: u32 = 40;
const EXP_MAX: u64 = (1 << EXP_BITS) - 1;
const ST_FREE: u8 = 0;
const ST_BUSY: u8 = 0xff;
const ST_PENDING: u8 = 0x80;

#[inline]
fn pack(gen: u16, state: u8, expires: u64) -> u64 {
    (u64::from(gen) << 48) | (u64::from(state) << EXP_BITS) | expires.min(EXP_MAX)
}
#[inline]
fn gen_of(m: u64) -> u16 {
    (m >> 48) as u16
}
#[inline]
fn state_of(m: u64) -> u8 {
    (m >> EXP_BITS) as u8
}
#[inline]
fn expires_of(m: u64) -> u64 {
    m & EXP_MAX
}
#[inline]
fn live_code(s: ConnState) -> u8 {
    s as u8 + 1
}
#[inline]
fn pending_code(s: ConnState) -> u8 {
    ST_PENDING | live_code(s)
}
/// The state of a live entry.
#[inline]
fn live_state(m: u64) -> Option<ConnState> {
    let c = state_of(m);
    if c & ST_PENDING != 0 {
        return None;
    }
    ConnState::from_u8(c.checked_sub(1)?)
}
/// The state of a pending entry.
#[inline]
fn pending_state(m: u64) -> Option<ConnState> {
    let c = state_of(m);
    if c & ST_PENDING == 0 || c == ST_BUSY {
        return None;
    }
    ConnState::from_u8((c & !ST_PENDING).checked_sub(1)?)
}

// --- endpoints: ip 32 | port 16; the protocol / dest slot in the top 16 bits ------------------

const EP_MASK: u64 = (1 << 48) - 1;

#[inline]
fn ep(ip: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(ip)) << 16) | u64::from(port)
}
#[inline]
fn ep_split(v: u64) -> (Ipv4Addr, u16) {
    (Ipv4Addr::from((v >> 16) as u32), v as u16)
}

/// One connection: 32 bytes, two per cache line.
#[repr(C, align(32))]
#[derive(Debug, Default)]
struct Entry {
    meta: AtomicU64,
    /// proto << 48 | CIP:cport
    client: AtomicU64,
    /// dest slot << 48 | VIP:vport
    virt: AtomicU64,
    /// RIP:rport; while the entry is free, the free-list link (index + 1, 0 at the end).
    real: AtomicU64,
}

/// The fields of an entry, read consistently.
#[derive(Clone, Copy)]
struct EntryView {
    meta: u64,
    state: ConnState,
    proto: u8,
    client: u64,
    virt: u64,
    real: u64,
    dest: u32,
}

impl EntryView {
    /// Whether the entry's tuple in direction `dir` is `t`. Branch-free on `dir` (which
    /// direction a lookup hits is unpredictable, and a mispredicted branch that waits for the
    /// entry's cache miss would also throw away the next lookups' loads already in flight).
    #[inline]
    fn matches(&self, dir: Dir, t: &Tuple) -> bool {
        let reply = dir == Dir::Reply;
        let src = select(reply, self.real, self.client);
        let dst = select(reply, self.client, self.virt);
        (self.proto == t.proto) & (src == ep(t.src, t.sport)) & (dst == ep(t.dst, t.dport))
    }

    #[inline]
    fn hit(&self, idx: u32, dir: Dir) -> Hit {
        Hit {
            conn: ConnRef {
                idx,
                gen: gen_of(self.meta),
            },
            dir,
            state: self.state,
            proto: self.proto,
            dest: self.dest,
            client: ep_split(self.client),
            virt: ep_split(self.virt),
            real: ep_split(self.real),
        }
    }

    #[inline]
    fn is_live(&self) -> bool {
        live_state(self.meta).is_some()
    }

    #[inline]
    fn tuple(&self, dir: Dir) -> Tuple {
        let (src, dst) = match dir {
            Dir::Inbound => (self.client, self.virt),
            Dir::Reply => (self.real, self.client),
        };
        let (s, sp) = ep_split(src);
        let (d, dp) = ep_split(dst);
        Tuple {
            proto: self.proto,
            src: s,
            sport: sp,
            dst: d,
            dport: dp,
        }
    }
}

/// `if c { a } else { b }` without a branch.
#[inline]
fn select(c: bool, a: u64, b: u64) -> u64 {
    let m = u64::from(c).wrapping_neg();
    (a & m) | (b & !m)
}

// --- buckets --------------------------------------------------------------------------------

/// Slot words per bucket (a 64-byte line); fewer under loom to keep the model small.
#[cfg(not(loom))]
const SLOTS: usize = 8;
#[cfg(loom)]
const SLOTS: usize = 4;

/// An insert takes its first bucket while fewer slots than this are taken there.
pub const FIRST_FIT: usize = SLOTS - 2;

#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Bucket {
    /// 0 = empty; else tag 31 | dir 1 | entry index + 1 (32).
    slots: [AtomicU64; SLOTS],
}

/// Asks the CPU to bring the cache line holding `r` into all cache levels (no effect where
/// there is no prefetch instruction).
#[inline(always)]
fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; it reads nothing and never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[inline]
fn slot_word(idx: u32, dir: Dir, tag: u32) -> u64 {
    let d = match dir {
        Dir::Inbound => 0,
        Dir::Reply => 1,
    };
    (u64::from(tag) << 33) | (d << 32) | (u64::from(idx) + 1)
}
#[inline]
fn slot_tag(w: u64) -> u32 {
    (w >> 33) as u32
}
#[inline]
fn slot_idx(w: u64) -> u32 {
    (w as u32).wrapping_sub(1)
}
#[inline]
fn slot_dir(w: u64) -> Dir {
    if w & (1 << 32) == 0 {
        Dir::Inbound
    } else {
        Dir::Reply
    }
}

/// Where a tuple may live: its first bucket, the hash that picks its second one (computed
/// only when the first does not hold it), and the tag its slot words carry (never 0, so an
/// empty slot never matches).
#[derive(Debug, Clone, Copy)]
struct Place {
    b1: usize,
    h2: u64,
    tag: u32,
}

/// A tuple whose first bucket [`ConnTable::prefetch_bucket`] is bringing in: where to look
/// in [`ConnTable::prefetch_entry`].
#[derive(Debug, Clone, Copy)]
pub struct Prefetched(Place);

/// The slot words of a bucket, and a bit per slot whose tag is `tag`: branch-free, so which
/// slot holds the tuple costs no misprediction.
#[inline]
fn scan(bucket: &Bucket, tag: u32) -> ([u64; SLOTS], u32) {
    let mut words = [0u64; SLOTS];
    let mut m = 0u32;
    for (k, (s, w)) in bucket.slots.iter().zip(words.iter_mut()).enumerate() {
        *w = s.load(Ordering::Acquire);
        m |= u32::from(slot_tag(*w) == tag) << k;
    }
    (words, m)
}

/// The words of `scan`'s mask, in slot order.
#[inline]
fn matching(words: &[u64; SLOTS], mut m: u32) -> impl Iterator<Item = u64> + '_ {
    std::iter::from_fn(move || {
        if m == 0 {
            return None;
        }
        let k = m.trailing_zeros() as usize;
        m &= m - 1;
        words.get(k).copied()
    })
}

/// Folded 64x64->128 multiply (wyhash's mixer): one multiply, good avalanche when both
/// inputs are keyed with random seeds.
#[inline]
fn mum(x: u64, y: u64) -> u64 {
    let r = u128::from(x) * u128::from(y);
    (r as u64) ^ ((r >> 64) as u64)
}

/// `h` mapped onto `0..n` (multiply-shift: uses the high bits of `h`).
#[inline]
fn range(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

// --- free entries ---------------------------------------------------------------------------

/// Free-list shards. Each thread uses one (picked once per thread, round robin), so two workers
/// do not share a free-list head.
#[cfg(not(loom))]
pub const SHARDS: usize = 16;
#[cfg(loom)]
pub const SHARDS: usize = 2;
/// Never-used entries a shard takes from the table's bump pointer at a time.
#[cfg(not(loom))]
const CHUNK: usize = 64;
#[cfg(loom)]
const CHUNK: usize = 1;

#[derive(Debug, Default)]
struct Shard {
    /// Treiber stack head: ABA tag 32 | entry index + 1 (32).
    head: AtomicU64,
    /// Never-used entries held by this shard: next 32 | end 32.
    fresh: AtomicU64,
}

#[cfg(not(loom))]
fn shard_index() -> usize {
    use std::cell::Cell;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD
        .try_with(|s| {
            let v = s.get();
            if v != usize::MAX {
                return v;
            }
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS;
            s.set(n);
            n
        })
        .unwrap_or(0)
}

/// Under loom every thread shares shard 0 (contended pops and pushes are what to check), and
/// the rest is reached by stealing.
#[cfg(loom)]
fn shard_index() -> usize {
    0
}

// --- the storage ----------------------------------------------------------------------------

/// Buckets and entries: one mapped region, or (loom) two heap arrays of loom atomics.
struct Storage {
    #[cfg(not(loom))]
    region: mem::Region,
    #[cfg(loom)]
    buckets: Box<[Bucket]>,
    #[cfg(loom)]
    entries: Box<[Entry]>,
    nbuckets: usize,
    capacity: usize,
}

impl Storage {
    fn new(nbuckets: usize, capacity: usize) -> Storage {
        #[cfg(not(loom))]
        {
            let bytes =
                nbuckets * std::mem::size_of::<Bucket>() + capacity * std::mem::size_of::<Entry>();
            Storage {
                region: mem::Region::new(bytes),
                nbuckets,
                capacity,
            }
        }
        #[cfg(loom)]
        {
            Storage {
                buckets: (0..nbuckets).map(|_| Bucket::default()).collect(),
                entries: (0..capacity).map(|_| Entry::default()).collect(),
                nbuckets,
                capacity,
            }
        }
    }

    #[inline]
    fn buckets(&self) -> &[Bucket] {
        #[cfg(not(loom))]
        // SAFETY: Bucket is atomics only, valid zeroed, 64-byte aligned at offset 0 of a
        // page-aligned region sized in `new` for both arrays, which do not overlap.
        unsafe {
            self.region.slice(0, self.nbuckets)
        }
        #[cfg(loom)]
        &self.buckets
    }

    #[inline]
    fn entries(&self) -> &[Entry] {
        #[cfg(not(loom))]
        // SAFETY: as above; the entries follow the buckets (a multiple of 64 bytes, so 32-byte
        // aligned).
        unsafe {
            self.region
                .slice(self.nbuckets * std::mem::size_of::<Bucket>(), self.capacity)
        }
        #[cfg(loom)]
        &self.entries
    }

    fn bytes(&self) -> usize {
        #[cfg(not(loom))]
        {
            self.region.bytes()
        }
        #[cfg(loom)]
        {
            self.nbuckets * std::mem::size_of::<Bucket>()
                + self.capacity * std::mem::size_of::<Entry>()
        }
    }

    fn backing(&self) -> Backing {
        #[cfg(not(loom))]
        {
            self.region.backing()
        }
        #[cfg(loom)]
        {
            Backing::Heap
        }
    }
}

// --- the table ------------------------------------------------------------------------------

/// Most entries a table can hold: indices are 32-bit (and below 2^31).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Most real-server slots: an entry stores its slot in 16 bits.
pub const MAX_DEST_SLOTS: usize = 1 << 16;
/// Bytes per connection, index included: a 32-byte entry and one 64-byte bucket per entry.
pub const BYTES_PER_CONN: usize = 96;
/// Entries an insert looks at for something to reap or evict when no entry is free.
pub const EVICT_SCAN: usize = 64;
/// Attempts of an insert that keeps being killed by concurrent inserts of the same tuple.
const INSERT_ATTEMPTS: usize = 4;

/// The shared connection table. See the module documentation.
pub struct ConnTable {
    storage: Storage,
    /// Per-process random hash keys, so nobody can aim traffic at one bucket.
    seeds: [u64; 4],
    shards: [CachePadded<Shard>; SHARDS],
    /// Never-used entries start here (handed to shards in chunks).
    bump: CachePadded<AtomicUsize>,
    /// Where the next eviction scan starts.
    evict_cursor: CachePadded<AtomicUsize>,
    evictions: CachePadded<AtomicU64>,
    dests: Box<[CachePadded<DestCounts>]>,
    /// One bit per bucket: set (for good) once an insert put a tuple whose first bucket it is
    /// in its second bucket, because the first was full. Lookups and inserts look at a second
    /// bucket only when its first one's bit is set: at the table's load that is almost never,
    /// so a miss (every new connection's first lookup) reads one bucket line, not two.
    overflow: Box<[AtomicU64]>,
    /// Removed real servers, read by every lookup: apart from the counters, which are written
    /// per new connection, so a lookup does not miss on a line other cores keep writing.
    retired: Box<[AtomicBool]>,
    timeouts: StateTimeouts,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("memory_bytes", &self.memory_bytes())
            .field("backing", &self.backing())
            .finish()
    }
}

#[cfg(not(loom))]
fn random_seeds() -> [u64; 4] {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new();
    std::array::from_fn(|i| r.hash_one(i))
}

/// Fixed under loom: every execution of a model must take the same paths.
#[cfg(loom)]
fn random_seeds() -> [u64; 4] {
    [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ]
}

impl ConnTable {
    /// A table for `capacity` connections (clamped to 1..=[`MAX_CAPACITY`]) whose entries refer
    /// to real-server slots `0..dest_slots` (at most [`MAX_DEST_SLOTS`]). All its memory is
    /// allocated here, at once.
    pub fn new(capacity: usize, dest_slots: usize, timeouts: &model::Timeouts) -> ConnTable {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let dest_slots = dest_slots.min(MAX_DEST_SLOTS);
        let nbuckets = Self::bucket_count(capacity);
        ConnTable {
            storage: Storage::new(nbuckets, capacity),
            overflow: (0..nbuckets.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            seeds: random_seeds(),
            shards: std::array::from_fn(|_| CachePadded::default()),
            bump: CachePadded::new(AtomicUsize::new(0)),
            evict_cursor: CachePadded::new(AtomicUsize::new(0)),
            evictions: CachePadded::new(AtomicU64::new(0)),
            dests: (0..dest_slots).map(|_| CachePadded::default()).collect(),
            retired: (0..dest_slots).map(|_| AtomicBool::new(false)).collect(),
            timeouts: StateTimeouts::new(timeouts),
        }
    }

    fn bucket_count(capacity: usize) -> usize {
        capacity.max(1)
    }

    /// Bytes a table of `capacity` connections maps for its entries and index (rounded up to
    /// whole 2 MiB pages when it is hugepage-backed), without building it.
    pub fn footprint(capacity: usize) -> usize {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        Self::bucket_count(capacity) * std::mem::size_of::<Bucket>()
            + capacity * std::mem::size_of::<Entry>()
    }

    pub fn capacity(&self) -> usize {
        self.storage.capacity
    }

    /// Memory this table holds: the mapped region (entries and index) plus the per-real-server
    /// counters and the free-list shards.
    pub fn memory_bytes(&self) -> usize {
        self.storage.bytes()
            + self.dests.len() * std::mem::size_of::<CachePadded<DestCounts>>()
            + self.retired.len() * std::mem::size_of::<AtomicBool>()
            + self.overflow.len() * 8
            + self.shards.len() * std::mem::size_of::<CachePadded<Shard>>()
    }

    /// What backs the entries and index.
    pub fn backing(&self) -> Backing {
        self.storage.backing()
    }

    /// Live connections: exact while no insert or remove is in flight. The sum of the
    /// real-server counts (one read per real-server slot: not for the packet path), which
    /// the table keeps exact anyway, so that inserts and removes need no counter of their own.
    pub fn len(&self) -> usize {
        let n: i64 = self
            .dests
            .iter()
            .map(|d| d.active.load(Ordering::Relaxed) + d.inactive.load(Ordering::Relaxed))
            .sum();
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
        &self.timeouts
    }

    /// The counters of real-server slot `slot`.
    pub fn dest(&self, slot: u32) -> Option<&DestCounts> {
        self.dests.get(usize::try_from(slot).ok()?).map(|d| &**d)
    }

    /// Marks a real server removed: its connections are dropped as soon as a packet or the
    /// aging scan meets them, and new connections to it are refused at insert.
    pub fn retire_dest(&self, slot: u32) {
        if let Some(d) = self.dest(slot) {
            d.retired.store(true, Ordering::Release);
        }
        if let Some(r) = self.retired.get(slot as usize) {
            r.store(true, Ordering::Release);
        }
    }

    /// Makes a drained slot usable again by a new real server.
    pub fn revive_dest(&self, slot: u32) {
        if let Some(d) = self.dest(slot) {
            d.overloaded.store(false, Ordering::Relaxed);
            d.retired.store(false, Ordering::Release);
        }
        if let Some(r) = self.retired.get(slot as usize) {
            r.store(false, Ordering::Release);
        }
    }

    #[inline]
    fn is_retired(&self, slot: u32) -> bool {
        self.retired
            .get(slot as usize)
            .is_some_and(|r| r.load(Ordering::Acquire))
    }

    #[inline]
    fn entry(&self, idx: u32) -> Option<&Entry> {
        self.storage.entries().get(idx as usize)
    }

    #[inline]
    fn bucket(&self, b: usize) -> Option<&Bucket> {
        self.storage.buckets().get(b)
    }

    #[inline]
    fn place(&self, t: &Tuple) -> Place {
        let a = (u64::from(u32::from(t.src)) << 32) | u64::from(u32::from(t.dst));
        let b = (u64::from(t.sport) << 32) | (u64::from(t.dport) << 16) | u64::from(t.proto);
        // Two independent hashes (the multiplies run in parallel): the high bits of each pick
        // a bucket, the low bits of the first make the tag.
        let h1 = mum(a ^ self.seeds[0], b ^ self.seeds[1]);
        let h2 = mum(a ^ self.seeds[2], b ^ self.seeds[3]);
        Place {
            b1: range(h1, self.storage.nbuckets),
            h2,
            tag: ((h1 as u32) >> 1) | 1,
        }
    }

    /// `p`'s distinct candidate buckets, first choice first.
    #[inline]
    fn buckets_of(&self, p: &Place) -> ([usize; 2], usize) {
        let b2 = range(p.h2, self.storage.nbuckets);
        ([p.b1, b2], if p.b1 == b2 { 1 } else { 2 })
    }

    /// The buckets that may hold `p`'s tuple: the first, and the second only if an insert
    /// ever overflowed the first (see `overflow`).
    #[inline]
    fn search_of(&self, p: &Place) -> ([usize; 2], usize) {
        let (bs, n) = self.buckets_of(p);
        (bs, if self.overflowed(p.b1) { n } else { 1 })
    }

    /// Whether an insert ever put a tuple whose first choice is bucket `b` in its second one.
    #[inline]
    fn overflowed(&self, b: usize) -> bool {
        self.overflow
            .get(b / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (b % 64)) != 0)
    }

    fn mark_overflow(&self, b: usize) {
        if let Some(w) = self.overflow.get(b / 64) {
            if w.load(Ordering::Relaxed) & (1 << (b % 64)) == 0 {
                w.fetch_or(1 << (b % 64), Ordering::AcqRel);
            }
        }
    }

    /// Reads entry `idx` consistently (seqlock read); `None` unless it is live or pending.
    #[inline]
    fn read(&self, idx: u32) -> Option<EntryView> {
        let e = self.entry(idx)?;
        let m1 = e.meta.load(Ordering::Acquire);
        let c = state_of(m1);
        if c == ST_FREE || c == ST_BUSY {
            return None;
        }
        let client = e.client.load(Ordering::Relaxed);
        let virt = e.virt.load(Ordering::Relaxed);
        let real = e.real.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let m2 = e.meta.load(Ordering::Relaxed);
        if gen_of(m1) != gen_of(m2) {
            return None;
        }
        // Within a generation the fields are fixed once pending; only the state and expiry
        // move: take the later ones.
        let state = live_state(m2).or_else(|| pending_state(m2))?;
        Some(EntryView {
            meta: m2,
            state,
            proto: (client >> 48) as u8,
            client: client & EP_MASK,
            virt: virt & EP_MASK,
            real: real & EP_MASK,
            dest: (virt >> 48) as u32,
        })
    }

    /// Finds an entry for `t` in its buckets: live ones only, or pending ones too. The second
    /// bucket is only looked at when the first does not hold the tuple and has overflowed.
    #[inline]
    fn find(&self, t: &Tuple, p: &Place, pending_too: bool) -> Option<(u32, Dir, EntryView)> {
        if let Some(r) = self.find_in(p.b1, t, p.tag, pending_too) {
            return Some(r);
        }
        if !self.overflowed(p.b1) {
            return None;
        }
        let b2 = range(p.h2, self.storage.nbuckets);
        if b2 == p.b1 {
            return None;
        }
        self.find_in(b2, t, p.tag, pending_too)
    }

    #[inline]
    fn find_in(
        &self,
        b: usize,
        t: &Tuple,
        tag: u32,
        pending_too: bool,
    ) -> Option<(u32, Dir, EntryView)> {
        let (words, m) = scan(self.bucket(b)?, tag);
        for w in matching(&words, m) {
            let (idx, dir) = (slot_idx(w), slot_dir(w));
            if let Some(v) = self.read(idx) {
                if (pending_too || v.is_live()) && v.matches(dir, t) {
                    return Some((idx, dir, v));
                }
            }
        }
        None
    }

    /// Whether a live entry is dead in all but name: expired at `now` or its real server
    /// removed.
    #[inline]
    fn stale(&self, v: &EntryView, now: u64) -> bool {
        expires_of(v.meta) <= now || self.is_retired(v.dest)
    }

    /// Burst prefetch, stage 1: starts loading `t`'s first bucket into the cache. A worker
    /// calls this for every packet of a burst, then [`ConnTable::prefetch_entry`] with what it
    /// returned for every packet, then handles them: the cache misses of a large table (a
    /// bucket line, then an entry line, one after the other for each packet) overlap across
    /// the burst instead of adding up. A hint only: it changes nothing and never faults.
    #[inline]
    pub fn prefetch_bucket(&self, t: &Tuple) -> Prefetched {
        let p = self.place(t);
        if let Some(b) = self.bucket(p.b1) {
            prefetch(b);
        }
        Prefetched(p)
    }

    /// Burst prefetch, stage 2: starts loading the entries the tuple's first bucket points to
    /// with its tag (nearly always one: its connection). Reads the bucket, so call it once
    /// [`ConnTable::prefetch_bucket`] has had the rest of the burst to bring it in.
    #[inline]
    pub fn prefetch_entry(&self, p: &Prefetched) {
        let Some(b) = self.bucket(p.0.b1) else {
            return;
        };
        let (words, m) = scan(b, p.0.tag);
        for w in matching(&words, m) {
            if let Some(e) = self.entry(slot_idx(w)) {
                prefetch(e);
            }
        }
    }

    /// Finds the connection a packet with tuple `t` belongs to, in either direction. An entry
    /// found expired at `now`, or whose real server was removed, is removed and not returned.
    /// Lock-free; never blocks.
    #[inline]
    pub fn lookup(&self, t: &Tuple, now: u64) -> Option<Hit> {
        let p = self.place(t);
        // A stale entry may hide a newer one for the same tuple behind it: remove and look
        // again (bounded: each round removes one entry).
        for _ in 0..4 {
            let (idx, dir, v) = self.find(t, &p, false)?;
            if !self.stale(&v, now) {
                return Some(v.hit(idx, dir));
            }
            self.remove(ConnRef {
                idx,
                gen: gen_of(v.meta),
            });
        }
        None
    }

    /// A live or pending connection using `t` (stale live ones are removed on the way): the
    /// error an insert of a connection with inbound tuple `inb` gets for it.
    fn conflict(&self, t: &Tuple, p: &Place, inb: &Tuple, now: u64) -> Option<InsertError> {
        for _ in 0..4 {
            let (idx, _, v) = self.find(t, p, true)?;
            if v.is_live() && self.stale(&v, now) {
                self.remove(ConnRef {
                    idx,
                    gen: gen_of(v.meta),
                });
                continue;
            }
            return Some(Self::loss(inb, &v, idx));
        }
        None
    }

    /// What an insert of a connection with inbound tuple `inb` is told about a rival that holds
    /// one of its tuples: the same connection (`Exists`) or another one (`ReplyConflict`).
    fn loss(inb: &Tuple, v: &EntryView, idx: u32) -> InsertError {
        if v.matches(Dir::Inbound, inb) {
            InsertError::Exists(v.hit(idx, Dir::Inbound))
        } else {
            InsertError::ReplyConflict
        }
    }

    /// Inserts a new connection (both tuples) at time `now`. Entries for either tuple that
    /// are expired at `now` are removed first. Lock-free; see the module documentation.
    pub fn insert(&self, c: &NewConn, now: u64) -> Result<Hit, InsertError> {
        let dest = u16::try_from(c.dest)
            .ok()
            .and_then(|_| self.dest(c.dest))
            .ok_or(InsertError::DestRetired)?;
        if self.is_retired(c.dest) {
            return Err(InsertError::DestRetired);
        }
        let (inb, rep) = (c.inbound(), c.reply());
        let (pi, pr) = (self.place(&inb), self.place(&rep));
        let client = (u64::from(c.proto) << 48) | ep(c.client.0, c.client.1);
        let virt = (u64::from(c.dest) << 48) | ep(c.virt.0, c.virt.1);
        let real = ep(c.real.0, c.real.1);
        let expires = now
            .saturating_add(u64::from(self.timeouts.get_ms(c.state)))
            .min(EXP_MAX);

        for _ in 0..INSERT_ATTEMPTS {
            // What is there already, live or being inserted by another worker.
            // (Both tuples are looked at, so expired entries of both are reaped.)
            let (ci, cr) = (
                self.conflict(&inb, &pi, &inb, now),
                self.conflict(&rep, &pr, &inb, now),
            );
            if let Some(e) = ci.or(cr) {
                return Err(e);
            }

            let idx = self.alloc(now).ok_or(InsertError::Full)?;
            let Some(e) = self.entry(idx) else {
                return Err(InsertError::Full);
            };
            // Seqlock write: busy with the next generation, fields, then pending (release).
            let gen = gen_of(e.meta.load(Ordering::Relaxed)).wrapping_add(1);
            e.meta.store(pack(gen, ST_BUSY, 0), Ordering::Relaxed);
            fence(Ordering::Release);
            e.client.store(client, Ordering::Relaxed);
            e.virt.store(virt, Ordering::Relaxed);
            e.real.store(real, Ordering::Relaxed);
            let pending = pack(gen, pending_code(c.state), expires);
            e.meta.store(pending, Ordering::Release);

            let wi = slot_word(idx, Dir::Inbound, pi.tag);
            let wr = slot_word(idx, Dir::Reply, pr.tag);
            let Some(si) = self.claim_slot(&pi, wi, now) else {
                self.release(idx, gen, [None, None], None);
                return Err(InsertError::Full);
            };
            let Some(sr) = self.claim_slot(&pr, wr, now) else {
                self.release(idx, gen, [Some(si), None], None);
                return Err(InsertError::Full);
            };
            // Count before the commit, so that a removal (which needs the entry live) never
            // counts down before this counted up.
            dest.add(c.state, 1);

            // Both slots are visible to everybody before we look for a rival: of two inserts
            // of one tuple, at least one sees the other.
            fence(Ordering::SeqCst);
            if let Some(err) = self.settle(idx, [(&inb, &pi), (&rep, &pr)], now) {
                self.release(idx, gen, [Some(si), Some(sr)], Some((dest, c.state)));
                return Err(err);
            }
            let live = pack(gen, live_code(c.state), expires);
            if e.meta
                .compare_exchange(pending, live, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(Hit {
                    conn: ConnRef { idx, gen },
                    dir: Dir::Inbound,
                    state: c.state,
                    proto: c.proto,
                    dest: c.dest,
                    client: c.client,
                    virt: c.virt,
                    real: c.real,
                });
            }
            // Killed by an insert of the same tuple with priority over us: undo, and look
            // again (the winner is pending or live now).
            self.release(idx, gen, [Some(si), Some(sr)], Some((dest, c.state)));
        }
        Err(InsertError::Busy)
    }

    /// Looks for rivals of pending entry `idx` (same tuple, other entry) in both tuples'
    /// buckets: `Some(error)` if this insert must give way, `None` if it may commit (rivals
    /// of lower priority were killed).
    fn settle(&self, idx: u32, tuples: [(&Tuple, &Place); 2], now: u64) -> Option<InsertError> {
        let inb = tuples[0].0;
        for (t, p) in tuples {
            // A rival in the second bucket set the overflow bit before its fence: after ours,
            // either we see the bit or it sees our slot.
            let (bs, n) = self.search_of(p);
            for b in bs.iter().take(n) {
                let Some(bucket) = self.bucket(*b) else {
                    continue;
                };
                let (words, m) = scan(bucket, p.tag);
                for w in matching(&words, m) {
                    if slot_idx(w) == idx {
                        continue;
                    }
                    let (oidx, odir) = (slot_idx(w), slot_dir(w));
                    // A pending rival changes state once; a live one makes us lose.
                    for _ in 0..4 {
                        let Some(v) = self.read(oidx) else {
                            break;
                        };
                        if !v.matches(odir, t) {
                            break;
                        }
                        let ogen = gen_of(v.meta);
                        if v.is_live() {
                            if self.stale(&v, now) {
                                self.remove(ConnRef {
                                    idx: oidx,
                                    gen: ogen,
                                });
                                break;
                            }
                            return Some(Self::loss(inb, &v, oidx));
                        }
                        if oidx < idx {
                            // Its priority is higher: give way.
                            return Some(Self::loss(inb, &v, oidx));
                        }
                        let Some(oe) = self.entry(oidx) else {
                            break;
                        };
                        if oe
                            .meta
                            .compare_exchange(
                                v.meta,
                                pack(ogen, ST_FREE, 0),
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                        {
                            break; // killed it; its owner cleans up
                        }
                        // It changed (committed, or was killed): look again.
                    }
                }
            }
        }
        None
    }

    /// Undoes a pending insert: free (unless a rival killed it already), slots cleared,
    /// counts taken back, entry back on the free list.
    fn release(
        &self,
        idx: u32,
        gen: u16,
        slots: [Option<&AtomicU64>; 2],
        counted: Option<(&DestCounts, ConnState)>,
    ) {
        let Some(e) = self.entry(idx) else {
            return;
        };
        let mut m = e.meta.load(Ordering::Acquire);
        while gen_of(m) == gen && state_of(m) != ST_FREE {
            match e.meta.compare_exchange_weak(
                m,
                pack(gen, ST_FREE, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(cur) => m = cur,
            }
        }
        for s in slots.into_iter().flatten() {
            s.store(0, Ordering::Release);
        }
        if let Some((d, st)) = counted {
            d.add(st, -1);
        }
        self.push_free(idx);
    }

    /// Claims an empty slot for `word`: in `p`'s first bucket while it has fewer than
    /// [`FIRST_FIT`] slots taken (lookups then read one bucket), else in the emptier of the two
    /// (two-choice balancing, so that both never fill up at the table's load). When both are
    /// full, reaps or evicts something there (see `make_room_in`) and tries once more. The scan
    /// of a bucket starts at a slot picked by the entry index, so concurrent inserts into one
    /// bucket mostly CAS different words.
    fn claim_slot(&self, p: &Place, word: u64, now: u64) -> Option<&AtomicU64> {
        let start = slot_idx(word) as usize;
        let ([b1, b2], n) = self.buckets_of(p);
        for round in 0..2 {
            let order = if n == 2 && {
                let u1 = self.taken(b1);
                u1 >= FIRST_FIT && self.taken(b2) < u1
            } {
                [b2, b1]
            } else {
                [b1, b2]
            };
            for b in order.into_iter().take(n) {
                if b != b1 {
                    // Before the slot in the second bucket exists, lookups must be told to
                    // look there.
                    self.mark_overflow(b1);
                }
                if let Some(s) = self.claim_in(b, word, start) {
                    return Some(s);
                }
            }
            if round == 0 && !self.make_room_in(p, now) {
                break;
            }
        }
        None
    }

    /// Slots taken in bucket `b`.
    fn taken(&self, b: usize) -> usize {
        self.bucket(b).map_or(SLOTS, |bk| {
            bk.slots
                .iter()
                .filter(|s| s.load(Ordering::Relaxed) != 0)
                .count()
        })
    }

    fn claim_in(&self, b: usize, word: u64, start: usize) -> Option<&AtomicU64> {
        let bucket = self.bucket(b)?;
        let (tail, head) = bucket.slots.split_at(start % SLOTS);
        head.iter().chain(tail).find(|s| {
            s.load(Ordering::Relaxed) == 0
                && s.compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Frees a slot in `p`'s buckets: removes a stale entry there, else evicts the SYN_RECV
    /// one with the earliest expiry. False if neither exists.
    fn make_room_in(&self, p: &Place, now: u64) -> bool {
        let mut victim: Option<(u32, EntryView)> = None;
        let (bs, n) = self.buckets_of(p);
        for b in bs.iter().take(n) {
            let Some(bucket) = self.bucket(*b) else {
                continue;
            };
            for s in &bucket.slots {
                let w = s.load(Ordering::Acquire);
                if w == 0 {
                    continue;
                }
                let Some(v) = self.read(slot_idx(w)).filter(EntryView::is_live) else {
                    continue;
                };
                let r = ConnRef {
                    idx: slot_idx(w),
                    gen: gen_of(v.meta),
                };
                if self.stale(&v, now) {
                    self.remove(r);
                    return true;
                }
                if v.state == ConnState::SynRecv
                    && victim.is_none_or(|(_, b)| expires_of(v.meta) < expires_of(b.meta))
                {
                    victim = Some((r.idx, v));
                }
            }
        }
        self.evict(victim)
    }

    fn evict(&self, victim: Option<(u32, EntryView)>) -> bool {
        let Some((idx, v)) = victim else {
            return false;
        };
        let r = ConnRef {
            idx,
            gen: gen_of(v.meta),
        };
        if self.remove(r) {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Applies a packet to the connection: TCP state transition for `ev` travelling `dir`, and
    /// the expiry refreshed to `now` + the (new) state's timeout. Returns the state after the
    /// packet, or `None` if the connection is gone (expired or reused since the lookup) or not
    /// in yet (an `Exists` hit of an insert still in flight).
    pub fn update(&self, hit: &Hit, dir: Dir, ev: Option<TcpEvent>, now: u64) -> Option<ConnState> {
        let e = self.entry(hit.conn.idx)?;
        let mut m = e.meta.load(Ordering::Acquire);
        // A CAS fails only when another worker changed the entry meanwhile; a few retries
        // settle it, and giving up merely skips one refresh.
        for _ in 0..8 {
            if gen_of(m) != hit.conn.gen {
                return None;
            }
            let st = live_state(m)?;
            let new_st = match ev {
                Some(ev) if hit.proto == PROTO_TCP => tcp_transition(st, dir, ev),
                _ => st,
            };
            let timeout = u64::from(self.timeouts.get_ms(new_st));
            let expires = now.saturating_add(timeout).min(EXP_MAX);
            if new_st == st && expires <= expires_of(m).saturating_add((timeout / 16).min(1000)) {
                return Some(st);
            }
            match e.meta.compare_exchange(
                m,
                pack(hit.conn.gen, live_code(new_st), expires),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if new_st.is_active() != st.is_active() {
                        if let Some(d) = self.dest(hit.dest) {
                            d.add(st, -1);
                            d.add(new_st, 1);
                        }
                    }
                    return Some(new_st);
                }
                Err(cur) => m = cur,
            }
        }
        live_state(m)
    }

    /// Removes a connection now. Returns false if it was already gone. Lock-free.
    pub fn remove(&self, conn: ConnRef) -> bool {
        let Some(e) = self.entry(conn.idx) else {
            return false;
        };
        let mut m = e.meta.load(Ordering::Acquire);
        let state = loop {
            if gen_of(m) != conn.gen {
                return false;
            }
            let Some(st) = live_state(m) else {
                return false;
            };
            match e.meta.compare_exchange_weak(
                m,
                pack(conn.gen, ST_FREE, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break st,
                Err(cur) => m = cur,
            }
        };
        // This thread owns the free entry now: nobody else modifies or reuses it until it is
        // back on a free list, so its fields are stable.
        let client = e.client.load(Ordering::Relaxed);
        let virt = e.virt.load(Ordering::Relaxed);
        let v = EntryView {
            meta: m,
            state,
            proto: (client >> 48) as u8,
            client: client & EP_MASK,
            virt: virt & EP_MASK,
            real: e.real.load(Ordering::Relaxed) & EP_MASK,
            dest: (virt >> 48) as u32,
        };
        if let Some(d) = self.dest(v.dest) {
            d.add(state, -1);
        }
        for dir in [Dir::Inbound, Dir::Reply] {
            let p = self.place(&v.tuple(dir));
            let word = slot_word(conn.idx, dir, p.tag);
            let (bs, n) = self.search_of(&p);
            // Only this entry's owner writes a slot holding its word (others only claim empty
            // ones), so a plain store clears it.
            'found: for b in bs.iter().take(n) {
                if let Some(bk) = self.bucket(*b) {
                    for s in &bk.slots {
                        if s.load(Ordering::Relaxed) == word {
                            s.store(0, Ordering::Release);
                            break 'found;
                        }
                    }
                }
            }
        }
        self.push_free(conn.idx);
        true
    }

    /// Entries ever handed out: the rest of the array has never held a connection.
    fn used(&self) -> usize {
        self.bump.load(Ordering::Relaxed).min(self.capacity())
    }

    /// Ages up to `budget` entries of `range` (a worker's own slice, see [`ConnTable::slice`]),
    /// resuming at `*cursor`: entries expired at `now` or whose real server was removed are
    /// removed. Returns how many were removed.
    pub fn housekeeping(
        &self,
        range: Range<usize>,
        cursor: &mut usize,
        budget: usize,
        now: u64,
    ) -> usize {
        let used = self.used();
        let range = range.start.min(used)..range.end.min(used);
        if range.is_empty() {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(range.len()) {
            if !range.contains(cursor) {
                *cursor = range.start;
            }
            let idx = *cursor;
            *cursor += 1;
            let Some(e) = self.entry(idx as u32) else {
                continue;
            };
            let m = e.meta.load(Ordering::Acquire);
            if live_state(m).is_none() {
                continue;
            }
            let dest = (e.virt.load(Ordering::Relaxed) >> 48) as u32;
            if (expires_of(m) <= now || self.is_retired(dest))
                && self.remove(ConnRef {
                    idx: idx as u32,
                    gen: gen_of(m),
                })
            {
                removed += 1;
            }
        }
        removed
    }

    /// Worker `index`'s share of the entries when `workers` workers age the table.
    pub fn slice(&self, index: usize, workers: usize) -> Range<usize> {
        let workers = workers.max(1);
        let index = index % workers;
        let n = self.capacity();
        (n * index / workers)..(n * (index + 1) / workers)
    }

    /// Calls `f` for every live connection (for listing; not on the packet path).
    pub fn for_each(&self, mut f: impl FnMut(ConnInfo)) {
        for idx in 0..self.used() {
            if let Some(v) = self.read(idx as u32).filter(EntryView::is_live) {
                f(ConnInfo {
                    proto: v.proto,
                    state: v.state,
                    expires_ms: expires_of(v.meta),
                    dest: v.dest,
                    client: ep_split(v.client),
                    virt: ep_split(v.virt),
                    real: ep_split(v.real),
                });
            }
        }
    }

    // --- free entries ----------------------------------------------------------------------

    /// Shard `i % SHARDS`.
    #[inline]
    #[allow(clippy::indexing_slicing)] // `i % SHARDS` indexes an array of SHARDS: in bounds
    fn shard(&self, i: usize) -> &Shard {
        &self.shards[i % SHARDS]
    }

    fn my_shard(&self) -> &Shard {
        self.shard(shard_index())
    }

    /// A free entry: this thread's free list, its never-used chunk (refilled from the bump
    /// pointer), then the other shards'; when all are empty, reaps or evicts (bounded) and
    /// tries again.
    fn alloc(&self, now: u64) -> Option<u32> {
        if let Some(i) = self.take_free() {
            return Some(i);
        }
        for _ in 0..2 {
            if !self.make_room(now) {
                break;
            }
            if let Some(i) = self.take_free() {
                return Some(i);
            }
        }
        None
    }

    fn take_free(&self) -> Option<u32> {
        let me = shard_index();
        let own = self.shard(me);
        if let Some(i) = self.pop(own).or_else(|| self.take_fresh(own)) {
            return Some(i);
        }
        if let Some(i) = self.refill(own) {
            return Some(i);
        }
        for k in 1..SHARDS {
            let s = self.shard(me + k);
            if let Some(i) = self.pop(s).or_else(|| self.take_fresh(s)) {
                return Some(i);
            }
        }
        None
    }

    /// One never-used entry from `s`'s chunk.
    fn take_fresh(&self, s: &Shard) -> Option<u32> {
        let mut f = s.fresh.load(Ordering::Relaxed);
        loop {
            let (next, end) = ((f >> 32) as u32, f as u32);
            if next >= end {
                return None;
            }
            match s.fresh.compare_exchange_weak(
                f,
                (u64::from(next + 1) << 32) | u64::from(end),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(next),
                Err(cur) => f = cur,
            }
        }
    }

    /// Takes a new chunk of never-used entries for `s` and returns its first one.
    fn refill(&self, s: &Shard) -> Option<u32> {
        let cap = self.capacity();
        if self.bump.load(Ordering::Relaxed) >= cap {
            return None;
        }
        let start = self.bump.fetch_add(CHUNK, Ordering::Relaxed);
        if start >= cap {
            return None;
        }
        let end = (start + CHUNK).min(cap) as u32;
        let start = start as u32;
        let old = s.fresh.load(Ordering::Relaxed);
        let (next, oend) = ((old >> 32) as u32, old as u32);
        let new = (u64::from(start + 1) << 32) | u64::from(end);
        if next >= oend
            && s.fresh
                .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(start);
        }
        // Another thread of this shard installed a chunk meanwhile (more threads than
        // shards): keep ours on the free list instead.
        for i in start + 1..end {
            self.push_free_to(s, i);
        }
        Some(start)
    }

    /// When no entry is free: looks at [`EVICT_SCAN`] entries from the shared cursor and
    /// removes an expired one (or one of a removed real server), else evicts the SYN_RECV one
    /// with the earliest expiry. False if it found neither.
    fn make_room(&self, now: u64) -> bool {
        let used = self.used();
        if used == 0 {
            return false;
        }
        let n = EVICT_SCAN.min(used);
        let start = self.evict_cursor.fetch_add(n, Ordering::Relaxed) % used;
        let mut victim: Option<(u32, EntryView)> = None;
        for k in 0..n {
            let idx = ((start + k) % used) as u32;
            let Some(v) = self.read(idx).filter(EntryView::is_live) else {
                continue;
            };
            if self.stale(&v, now) {
                self.remove(ConnRef {
                    idx,
                    gen: gen_of(v.meta),
                });
                return true;
            }
            if v.state == ConnState::SynRecv
                && victim.is_none_or(|(_, b)| expires_of(v.meta) < expires_of(b.meta))
            {
                victim = Some((idx, v));
            }
        }
        self.evict(victim)
    }

    // --- tagged Treiber stacks ---------------------------------------------------------------

    fn pop(&self, s: &Shard) -> Option<u32> {
        let mut head = s.head.load(Ordering::Acquire);
        loop {
            let idx = (head as u32).checked_sub(1)?;
            let next = self.entry(idx)?.real.load(Ordering::Relaxed) as u32;
            let tag = ((head >> 32) as u32).wrapping_add(1);
            let new = (u64::from(tag) << 32) | u64::from(next);
            match s
                .head
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(idx),
                Err(cur) => head = cur,
            }
        }
    }

    fn push_free(&self, idx: u32) {
        self.push_free_to(self.my_shard(), idx);
    }

    fn push_free_to(&self, s: &Shard, idx: u32) {
        let Some(e) = self.entry(idx) else {
            return;
        };
        let mut head = s.head.load(Ordering::Relaxed);
        loop {
            // Release: a reader that sees the link in `real` also sees the entry free (its
            // seqlock check then fails), as it would for a field write of the next insert.
            e.real.store(head & 0xffff_ffff, Ordering::Release);
            let tag = ((head >> 32) as u32).wrapping_add(1);
            let new = (u64::from(tag) << 32) | (u64::from(idx) + 1);
            match s
                .head
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(cur) => head = cur,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn entry_and_bucket_sizes_give_96_bytes_per_connection() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        assert_eq!(std::mem::align_of::<Entry>(), 32);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
        for cap in [1, 12, 1000, 1 << 20, 10_000_000] {
            assert_eq!(ConnTable::bucket_count(cap), cap);
            assert_eq!(ConnTable::footprint(cap), cap * BYTES_PER_CONN);
        }
        const { assert!(BYTES_PER_CONN <= 128) };
    }

    #[test]
    fn ten_million_connections_fit_in_1_5_gb() {
        let ten_m = 10_000_000;
        // The region, rounded up to whole hugepages, plus every real-server slot's counters.
        let region = ConnTable::footprint(ten_m).div_ceil(2 << 20) * (2 << 20);
        let side = MAX_DEST_SLOTS * (128 + 1) + SHARDS * 128;
        assert!(region + side <= 1_500_000_000, "{}", region + side);
    }

    #[test]
    fn meta_encoding_round_trips() {
        for s in ConnState::ALL {
            let m = pack(7, live_code(s), 123);
            assert_eq!(live_state(m), Some(s));
            assert_eq!(pending_state(m), None);
            let p = pack(7, pending_code(s), 123);
            assert_eq!(live_state(p), None);
            assert_eq!(pending_state(p), Some(s));
            assert_eq!((gen_of(p), expires_of(p)), (7, 123));
        }
        for c in [ST_FREE, ST_BUSY] {
            assert_eq!(live_state(pack(1, c, 0)), None);
            assert_eq!(pending_state(pack(1, c, 0)), None);
        }
        assert_eq!(expires_of(pack(0, 1, u64::MAX)), EXP_MAX);
    }
}
