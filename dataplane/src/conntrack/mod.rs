//! The connection table: one entry per connection, found by either of its two tuples.
//!
//! Each connection is reachable by its inbound tuple (CIP:cport -> VIP:vport) and its reply
//! tuple (RIP:rport -> CIP:cport), both as they appear on the wire, so one [`ConnTable::lookup`]
//! of a packet's 5-tuple finds the connection whichever way the packet travels, on any worker.
//!
//! # Design (the foundation table; a fully lock-free one will keep this API)
//!
//! - Fixed capacity, allocated once: an entry array, a lock-free free list of entry indices
//!   (a tagged Treiber stack) and a power-of-two array of 64-byte buckets of 7 slots. A slot
//!   word holds entry index, direction and a 31-bit hash tag. Each tuple may live in either of
//!   two buckets (two-choice hashing, the emptier one is used), so buckets practically never
//!   overflow at the table's load.
//! - **Lookups take no lock and never block**: they read slot words and entry fields (all
//!   atomics) and validate what they read with the entry's generation, a seqlock-style check
//!   against an entry being freed and reused under them.
//! - **Insert and remove take per-bucket spinlocks** (the up to four buckets of the two tuples,
//!   in ascending order): they are held for a few dozen instructions and serialise writers of
//!   the same buckets only; readers never wait for them.
//! - An entry's state and expiry share one atomic word with its generation, so state changes,
//!   refreshes and expiry are single compare-and-swaps; only the thread whose CAS succeeds
//!   adjusts the real server's active/inactive counters, which keeps them exact.
//! - Refreshing the expiry is skipped unless it moves by more than 1/16 of the timeout (at most
//!   1 s), so a busy established flow does not write the shared entry on every packet.
//! - Aging is done by the workers in bounded slices ([`ConnTable::housekeeping`]); a lookup
//!   that meets an expired entry (or one whose real server was removed) removes it and misses.
//!
//! Times are milliseconds on the workers' clock (any epoch, below 2^40 ms).

#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod state;

pub use state::{tcp_transition, ConnState, Dir, StateTimeouts, TcpEvent};

use crate::packet::ipv4::PROTO_TCP;
use control::model;
use crossbeam_utils::CachePadded;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::sync::atomic::{
    fence, AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

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
    /// A live connection with the same inbound tuple exists (another worker won the race).
    Exists(Hit),
    /// Another connection already uses the reply tuple (same client ip:port reaching the same
    /// real server through another VIP).
    ReplyConflict,
    /// No free entry, or both buckets of a tuple are full.
    Full,
    /// The real server was removed (or its slot is unknown).
    DestRetired,
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

const EXP_BITS: u32 = 40;
const EXP_MAX: u64 = (1 << EXP_BITS) - 1;
const ST_BUSY: u8 = 0xfe;
const ST_DEAD: u8 = 0xff;

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
fn live_state(m: u64) -> Option<ConnState> {
    ConnState::from_u8(state_of(m))
}

// --- endpoints: ip 32 | port 16, and the protocol above them in `client` ---------------------

const EP_MASK: u64 = (1 << 48) - 1;

#[inline]
fn ep(ip: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(ip)) << 16) | u64::from(port)
}
#[inline]
fn ep_split(v: u64) -> (Ipv4Addr, u16) {
    (Ipv4Addr::from((v >> 16) as u32), v as u16)
}

#[derive(Debug, Default)]
struct Entry {
    meta: AtomicU64,
    /// proto << 48 | CIP:cport
    client: AtomicU64,
    /// VIP:vport
    virt: AtomicU64,
    /// RIP:rport
    real: AtomicU64,
    dest: AtomicU32,
    /// Free-list link: index + 1, 0 at the end.
    next_free: AtomicU32,
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
    fn matches(&self, dir: Dir, t: &Tuple) -> bool {
        let (src, dst) = match dir {
            Dir::Inbound => (self.client, self.virt),
            Dir::Reply => (self.real, self.client),
        };
        self.proto == t.proto && src == ep(t.src, t.sport) && dst == ep(t.dst, t.dport)
    }

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

// --- buckets --------------------------------------------------------------------------------

const SLOTS: usize = 7;

#[repr(align(64))]
#[derive(Debug, Default)]
struct Bucket {
    lock: AtomicU32,
    /// 0 = empty; else tag 31 | dir 1 | entry index + 1 (32).
    slots: [AtomicU64; SLOTS],
}

#[inline]
fn slot_word(idx: u32, dir: Dir, tag: u32) -> u64 {
    let d = match dir {
        Dir::Inbound => 0,
        Dir::Reply => 1,
    };
    (u64::from(tag) << 33) | (d << 32) | (u64::from(idx) + 1)
}

/// Where a tuple may live: its two candidate buckets and the tag its slot words carry.
#[derive(Debug, Clone, Copy)]
struct Place {
    b1: usize,
    b2: usize,
    tag: u32,
}

/// Folded 64x64->128 multiply (wyhash's mixer): one multiply, good avalanche when both
/// inputs are keyed with random seeds.
#[inline]
fn mum(x: u64, y: u64) -> u64 {
    let r = u128::from(x) * u128::from(y);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The shared connection table. See the module documentation.
pub struct ConnTable {
    entries: Box<[Entry]>,
    buckets: Box<[Bucket]>,
    mask: usize,
    /// Per-process random hash keys, so nobody can aim traffic at one bucket.
    seeds: [u64; 4],
    /// Free list head: ABA tag 32 | entry index + 1 (32).
    free: CachePadded<AtomicU64>,
    len: CachePadded<AtomicUsize>,
    dests: Box<[CachePadded<DestCounts>]>,
    timeouts: StateTimeouts,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

/// Most entries a table can hold: indices are 32-bit.
pub const MAX_CAPACITY: usize = 1 << 31;

impl ConnTable {
    /// A table for `capacity` connections (clamped to 1..=[`MAX_CAPACITY`]) whose entries refer
    /// to real-server slots `0..dest_slots`.
    pub fn new(capacity: usize, dest_slots: usize, timeouts: &model::Timeouts) -> ConnTable {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let nbuckets = capacity.next_power_of_two().max(2);
        let entries: Box<[Entry]> = (0..capacity).map(|_| Entry::default()).collect();
        // Chain every entry into the free list: 0 -> 1 -> ... -> capacity-1.
        for (i, e) in entries.iter().enumerate() {
            let next = if i + 1 < capacity { i as u32 + 2 } else { 0 };
            e.next_free.store(next, Ordering::Relaxed);
            e.meta.store(pack(0, ST_DEAD, 0), Ordering::Relaxed);
        }
        ConnTable {
            entries,
            buckets: (0..nbuckets).map(|_| Bucket::default()).collect(),
            mask: nbuckets - 1,
            seeds: {
                let r = std::collections::hash_map::RandomState::new();
                std::array::from_fn(|i| r.hash_one(i))
            },
            free: CachePadded::new(AtomicU64::new(1)),
            len: CachePadded::new(AtomicUsize::new(0)),
            dests: (0..dest_slots).map(|_| CachePadded::default()).collect(),
            timeouts: StateTimeouts::new(timeouts),
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Live connections (approximate while writers run).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    }

    /// Makes a drained slot usable again by a new real server.
    pub fn revive_dest(&self, slot: u32) {
        if let Some(d) = self.dest(slot) {
            d.overloaded.store(false, Ordering::Relaxed);
            d.retired.store(false, Ordering::Release);
        }
    }

    fn place(&self, t: &Tuple) -> Place {
        let a = (u64::from(u32::from(t.src)) << 32) | u64::from(u32::from(t.dst));
        let b = (u64::from(t.sport) << 32) | (u64::from(t.dport) << 16) | u64::from(t.proto);
        // Two independent hashes (the multiplies run in parallel): one picks the first bucket,
        // the other the second bucket (low bits) and the tag (high bits).
        let h1 = mum(a ^ self.seeds[0], b ^ self.seeds[1]);
        let h2 = mum(a ^ self.seeds[2], b ^ self.seeds[3]);
        Place {
            b1: (h1 as usize) & self.mask,
            b2: (h2 as usize) & self.mask,
            tag: (h2 >> 33) as u32,
        }
    }

    /// Reads entry `idx` consistently (seqlock read); `None` if it is not a live connection.
    fn read(&self, idx: u32) -> Option<EntryView> {
        let e = self.entries.get(usize::try_from(idx).ok()?)?;
        let m1 = e.meta.load(Ordering::Acquire);
        live_state(m1)?;
        let client = e.client.load(Ordering::Relaxed);
        let virt = e.virt.load(Ordering::Relaxed);
        let real = e.real.load(Ordering::Relaxed);
        let dest = e.dest.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let m2 = e.meta.load(Ordering::Relaxed);
        if gen_of(m1) != gen_of(m2) {
            return None;
        }
        // Only the state and expiry may change within a generation: take the later ones.
        let state = live_state(m2)?;
        Some(EntryView {
            meta: m2,
            state,
            proto: (client >> 48) as u8,
            client: client & EP_MASK,
            virt,
            real,
            dest,
        })
    }

    /// Finds the live entry for `t` in its buckets.
    fn find(&self, t: &Tuple, p: &Place) -> Option<(u32, Dir, EntryView)> {
        let buckets = [p.b1, p.b2];
        let n = if p.b1 == p.b2 { 1 } else { 2 };
        for b in buckets.iter().take(n) {
            let Some(bucket) = self.buckets.get(*b) else {
                continue;
            };
            for s in &bucket.slots {
                let w = s.load(Ordering::Acquire);
                if w == 0 || (w >> 33) as u32 != p.tag {
                    continue;
                }
                let idx = (w as u32).wrapping_sub(1);
                let dir = if w & (1 << 32) == 0 {
                    Dir::Inbound
                } else {
                    Dir::Reply
                };
                if let Some(v) = self.read(idx) {
                    if v.matches(dir, t) {
                        return Some((idx, dir, v));
                    }
                }
            }
        }
        None
    }

    /// Finds the connection a packet with tuple `t` belongs to, in either direction. An entry
    /// found expired at `now`, or whose real server was removed, is removed and not returned.
    /// Lock-free unless it removes such an entry.
    pub fn lookup(&self, t: &Tuple, now: u64) -> Option<Hit> {
        let p = self.place(t);
        // A stale entry may hide a newer one for the same tuple behind it: remove and look
        // again (bounded: each round removes one entry).
        for _ in 0..4 {
            let (idx, dir, v) = self.find(t, &p)?;
            let hit = v.hit(idx, dir);
            let retired = self.dest(v.dest).is_some_and(DestCounts::is_retired);
            if expires_of(v.meta) > now && !retired {
                return Some(hit);
            }
            self.remove(hit.conn);
        }
        None
    }

    /// Inserts a new connection (both tuples) at time `now`. Entries for either tuple that
    /// are expired at `now` are removed first.
    pub fn insert(&self, c: &NewConn, now: u64) -> Result<Hit, InsertError> {
        let dest = self.dest(c.dest).ok_or(InsertError::DestRetired)?;
        if dest.is_retired() {
            return Err(InsertError::DestRetired);
        }
        let inb = c.inbound();
        let rep = c.reply();
        // Lookups remove stale entries; the checks under the locks below then see live ones.
        let _ = (self.lookup(&inb, now), self.lookup(&rep, now));
        let (pi, pr) = (self.place(&inb), self.place(&rep));
        let _locks = self.lock([pi.b1, pi.b2, pr.b1, pr.b2]);
        if let Some((idx, dir, v)) = self.find(&inb, &pi) {
            return Err(InsertError::Exists(v.hit(idx, dir)));
        }
        if self.find(&rep, &pr).is_some() {
            return Err(InsertError::ReplyConflict);
        }
        let slot_i = self.free_slot(&pi, None).ok_or(InsertError::Full)?;
        let slot_r = self.free_slot(&pr, Some(slot_i)).ok_or(InsertError::Full)?;
        let idx = self.pop_free().ok_or(InsertError::Full)?;
        let Some(e) = self.entries.get(idx as usize) else {
            return Err(InsertError::Full);
        };

        // Seqlock write: mark busy with the next generation, fill in, publish.
        let gen = gen_of(e.meta.load(Ordering::Relaxed)).wrapping_add(1);
        e.meta.store(pack(gen, ST_BUSY, 0), Ordering::Relaxed);
        fence(Ordering::Release);
        e.client.store(
            (u64::from(c.proto) << 48) | ep(c.client.0, c.client.1),
            Ordering::Relaxed,
        );
        e.virt.store(ep(c.virt.0, c.virt.1), Ordering::Relaxed);
        e.real.store(ep(c.real.0, c.real.1), Ordering::Relaxed);
        e.dest.store(c.dest, Ordering::Relaxed);
        // Count before publishing, so an expiry (which must see the entry first) never counts
        // down before this counts up.
        dest.add(c.state, 1);
        let expires = now.saturating_add(u64::from(self.timeouts.get_ms(c.state)));
        e.meta
            .store(pack(gen, c.state as u8, expires), Ordering::Release);
        slot_i.store(slot_word(idx, Dir::Inbound, pi.tag), Ordering::Release);
        slot_r.store(slot_word(idx, Dir::Reply, pr.tag), Ordering::Release);
        self.len.fetch_add(1, Ordering::Relaxed);
        Ok(Hit {
            conn: ConnRef { idx, gen },
            dir: Dir::Inbound,
            state: c.state,
            proto: c.proto,
            dest: c.dest,
            client: c.client,
            virt: c.virt,
            real: c.real,
        })
    }

    /// An empty slot in the emptier of `p`'s buckets (the caller holds their locks), other
    /// than `not`.
    fn free_slot(&self, p: &Place, not: Option<&AtomicU64>) -> Option<&AtomicU64> {
        let usable = |s: &&AtomicU64| {
            s.load(Ordering::Relaxed) == 0 && not.is_none_or(|n| !std::ptr::eq(*s, n))
        };
        let free_in = |b: usize| {
            self.buckets
                .get(b)
                .map_or(0, |bk| bk.slots.iter().filter(usable).count())
        };
        let b = if free_in(p.b2) > free_in(p.b1) {
            p.b2
        } else {
            p.b1
        };
        self.buckets.get(b)?.slots.iter().find(usable)
    }

    /// Applies a packet to the connection: TCP state transition for `ev` travelling `dir`, and
    /// the expiry refreshed to `now` + the (new) state's timeout. Returns the state after the
    /// packet, or `None` if the connection is gone (expired or reused since the lookup).
    pub fn update(&self, hit: &Hit, dir: Dir, ev: Option<TcpEvent>, now: u64) -> Option<ConnState> {
        let e = self.entries.get(usize::try_from(hit.conn.idx).ok()?)?;
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
                pack(hit.conn.gen, new_st as u8, expires),
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

    /// Removes a connection now. Returns false if it was already gone.
    pub fn remove(&self, conn: ConnRef) -> bool {
        let Some(e) = self.entries.get(conn.idx as usize) else {
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
                pack(conn.gen, ST_DEAD, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break st,
                Err(cur) => m = cur,
            }
        };
        // This thread owns the dead entry now: nobody else modifies or reuses it until it is
        // back on the free list, so its fields are stable.
        let v = EntryView {
            meta: m,
            state,
            proto: (e.client.load(Ordering::Relaxed) >> 48) as u8,
            client: e.client.load(Ordering::Relaxed) & EP_MASK,
            virt: e.virt.load(Ordering::Relaxed),
            real: e.real.load(Ordering::Relaxed),
            dest: e.dest.load(Ordering::Relaxed),
        };
        if let Some(d) = self.dest(v.dest) {
            d.add(state, -1);
        }
        let (pi, pr) = (
            self.place(&v.tuple(Dir::Inbound)),
            self.place(&v.tuple(Dir::Reply)),
        );
        {
            let _locks = self.lock([pi.b1, pi.b2, pr.b1, pr.b2]);
            for (p, dir) in [(pi, Dir::Inbound), (pr, Dir::Reply)] {
                let word = slot_word(conn.idx, dir, p.tag);
                for b in [p.b1, p.b2] {
                    if let Some(bk) = self.buckets.get(b) {
                        for s in &bk.slots {
                            if s.load(Ordering::Relaxed) == word {
                                s.store(0, Ordering::Release);
                            }
                        }
                    }
                }
            }
        }
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.push_free(conn.idx);
        true
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
        let range = range.start.min(self.capacity())..range.end.min(self.capacity());
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
            let Some(e) = self.entries.get(idx) else {
                continue;
            };
            let m = e.meta.load(Ordering::Acquire);
            if live_state(m).is_none() {
                continue;
            }
            let dest = e.dest.load(Ordering::Relaxed);
            let retired = self.dest(dest).is_some_and(DestCounts::is_retired);
            if (expires_of(m) <= now || retired)
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
        for idx in 0..self.entries.len() {
            if let Some(v) = self.read(idx as u32) {
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

    // --- free list (tagged Treiber stack) ------------------------------------------------

    fn pop_free(&self) -> Option<u32> {
        let mut head = self.free.load(Ordering::Acquire);
        loop {
            let top = head as u32;
            let idx = top.checked_sub(1)?;
            let next = self
                .entries
                .get(idx as usize)?
                .next_free
                .load(Ordering::Relaxed);
            let new = (((head >> 32) + 1) << 32) | u64::from(next);
            match self
                .free
                .compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(idx),
                Err(cur) => head = cur,
            }
        }
    }

    fn push_free(&self, idx: u32) {
        let Some(e) = self.entries.get(idx as usize) else {
            return;
        };
        let mut head = self.free.load(Ordering::Relaxed);
        loop {
            e.next_free.store(head as u32, Ordering::Relaxed);
            let new = (((head >> 32) + 1) << 32) | (u64::from(idx) + 1);
            match self
                .free
                .compare_exchange_weak(head, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(cur) => head = cur,
            }
        }
    }

    // --- bucket locks --------------------------------------------------------------------

    /// Locks the distinct buckets among `b` in ascending order (so two writers never wait for
    /// each other in a cycle); they unlock when the guard drops.
    fn lock(&self, mut b: [usize; 4]) -> BucketLocks<'_> {
        b.sort_unstable();
        let mut held = BucketLocks {
            table: self,
            held: [usize::MAX; 4],
        };
        let mut last = None;
        for (i, bi) in b.into_iter().enumerate() {
            if last == Some(bi) {
                continue;
            }
            last = Some(bi);
            if let Some(bucket) = self.buckets.get(bi) {
                while bucket
                    .lock
                    .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
                {
                    while bucket.lock.load(Ordering::Relaxed) != 0 {
                        std::hint::spin_loop();
                    }
                }
                if let Some(h) = held.held.get_mut(i) {
                    *h = bi;
                }
            }
        }
        held
    }
}

struct BucketLocks<'a> {
    table: &'a ConnTable,
    held: [usize; 4],
}

impl Drop for BucketLocks<'_> {
    fn drop(&mut self) {
        for &b in &self.held {
            if let Some(bucket) = self.table.buckets.get(b) {
                bucket.lock.store(0, Ordering::Release);
            }
        }
    }
}
