//! IPv4 and IPv6 fragments follow their datagram's first fragment.
//!
//! rvs does not reassemble. The first fragment (offset 0) carries the TCP/UDP ports, so it goes
//! through the normal path (connection lookup or scheduling, NAT, routing); the decision taken for
//! it is recorded here under the datagram's key (source, destination, protocol, IP id), and every
//! later fragment with that key gets the same decision: the same address rewrite and so the same
//! real server. The L4 checksum lives in the first fragment only and is adjusted there, as for a
//! whole packet. A later fragment whose first fragment was not seen (lost, dropped, or overtaken
//! in flight) finds no entry: the burst driver holds it briefly and looks again every poll loop
//! (see [`crate::driver`]), and drops and counts it if no decision comes: rvs never guesses
//! where it belongs.
//!
//! The table is shared by all workers (RSS may hash a datagram's fragments onto other queues than
//! its connection's packets; with `RTE_ETH_RSS_FRAG_IPV4` most NICs hash all fragments of one
//! datagram by addresses alone, but nothing here relies on that). It is lock-free: every slot is
//! a [`SeqSlot`]. A writer takes a slot with one compare-and-swap, only if nobody wrote it since
//! it chose it, and gives up (the decision is not recorded) otherwise; a reader never waits: it
//! retries once if a writer was busy in the slot and otherwise reports a miss. One piece of
//! code serves both families ([`FragTable`] for IPv4, [`FragTable6`] for IPv6, whose ids are
//! 32 bits): a slot is 3 words of key, expiry and verdict for IPv4, 8 for IPv6. Entries expire [`FRAG_TIMEOUT_MS`] after the first
//! fragment; an insert into a full bucket replaces the entry closest to expiry. The capacity is
//! fixed at start and nothing is allocated afterwards.

use crate::hash::{mum, range, HashKey};
use crate::seqlock::{SeqSlot, Version, Words};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Slots in the table (a power of two): 2 MiB for IPv4, 4.5 MiB for IPv6.
pub const FRAG_SLOTS: usize = 1 << 16;
/// How long after its first fragment a datagram's decision is kept. Fragments of one datagram
/// leave the sender back to back; 2 s covers any sane reordering, and keeps the table from
/// filling with stale entries under a fragment flood (32K datagrams/s before live entries are
/// replaced).
pub const FRAG_TIMEOUT_MS: u64 = 2_000;
/// Slots probed per key.
const BUCKET: usize = 4;
/// `now_ms` fits in 40 bits (see the pipeline contract).
const TIME_MASK: u64 = (1 << 40) - 1;

/// The datagram a fragment belongs to (RFC 791: source, destination, protocol, identification;
/// RFC 8200: source, destination, identification, the protocol after the fragment header).
/// IPv4 ids are 16 bits: an IPv4 table keys on the low 16 bits of `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey<A = Ipv4Addr> {
    pub src: A,
    pub dst: A,
    pub proto: u8,
    pub id: u32,
}

/// What was done with the first fragment, to be done with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragVerdict<A = Ipv4Addr> {
    /// Routed unchanged (TTL or hop limit decremented).
    Route,
    /// Destination rewritten to `addr` (client -> real server); `slot` is the real server's
    /// stats slot (below 2^30).
    Dnat { addr: A, slot: u32 },
    /// Source rewritten to `addr` (real server -> client, as the VIP).
    Snat { addr: A, slot: u32 },
}

impl<A: Copy> FragVerdict<A> {
    /// kind 2 | slot 30, and the address (`None` for `Route`).
    fn split(self) -> (u32, Option<A>) {
        match self {
            FragVerdict::Route => (1 << 30, None),
            FragVerdict::Dnat { addr, slot } => ((2 << 30) | (slot & 0x3fff_ffff), Some(addr)),
            FragVerdict::Snat { addr, slot } => ((3 << 30) | (slot & 0x3fff_ffff), Some(addr)),
        }
    }

    fn join(kind_slot: u32, addr: A) -> Option<FragVerdict<A>> {
        let slot = kind_slot & 0x3fff_ffff;
        match kind_slot >> 30 {
            1 => Some(FragVerdict::Route),
            2 => Some(FragVerdict::Dnat { addr, slot }),
            3 => Some(FragVerdict::Snat { addr, slot }),
            _ => None,
        }
    }
}

/// How an insert went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragInsert {
    /// Stored in a free, expired or same-key slot.
    Stored,
    /// Stored over a live entry of another datagram (the bucket was full).
    Evicted,
    /// Not stored: other writers held every candidate slot.
    Busy,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::Ipv4Addr {}
    impl Sealed for std::net::Ipv6Addr {}
}

/// The address of a fragment table ([`Ipv4Addr`] or [`Ipv6Addr`]); the hidden items are what
/// a slot holds for it.
pub trait FragAddr: sealed::Sealed + Copy + Eq + Hash + Debug + Send + Sync + 'static {
    #[doc(hidden)]
    type Entry: Copy;
    #[doc(hidden)]
    type Slot: FragSlot<Self::Entry>;
    #[doc(hidden)]
    fn hash(k: &HashKey, key: &FragKey<Self>) -> u64;
    /// The slot value recording `v` for `key` until `expires` (never 0: 0 is an empty slot).
    #[doc(hidden)]
    fn entry(key: &FragKey<Self>, expires: u64, v: FragVerdict<Self>) -> Self::Entry;
    /// Whether `e` is a (live or expired) entry with the key of `probe` (an `entry`).
    #[doc(hidden)]
    fn same_key(e: &Self::Entry, probe: &Self::Entry) -> bool;
    /// The expiry; 0 for an empty slot.
    #[doc(hidden)]
    fn expiry(e: &Self::Entry) -> u64;
    #[doc(hidden)]
    fn verdict(e: &Self::Entry) -> Option<FragVerdict<Self>>;
}

/// A [`SeqSlot`] of any width, as the table uses it.
#[doc(hidden)]
pub trait FragSlot<T>: Default + Debug + Send + Sync {
    fn read_versioned(&self) -> Option<(T, Version)>;
    fn read(&self, tries: usize) -> Option<T>;
    /// Replaces the value with `f(current)` if nobody wrote the slot since `version`; returns
    /// the value replaced.
    fn replace_at(&self, version: Version, f: impl FnOnce(&T) -> T) -> Option<T>;
}

impl<T: Words<N> + Send + Sync, const N: usize> FragSlot<T> for SeqSlot<T, N> {
    #[inline]
    fn read_versioned(&self) -> Option<(T, Version)> {
        SeqSlot::read_versioned(self)
    }
    #[inline]
    fn read(&self, tries: usize) -> Option<T> {
        SeqSlot::read(self, tries)
    }
    fn replace_at(&self, version: Version, f: impl FnOnce(&T) -> T) -> Option<T> {
        let mut g = self.lock_at(version)?;
        let cur = g.get();
        g.set(f(&cur));
        Some(cur)
    }
}

/// An IPv4 slot's value: 3 words.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry4 {
    /// src << 32 | dst.
    addrs: u64,
    /// proto << 56 | id (16 bits) << 40 | expiry (ms, 40 bits); 0 when empty.
    rest: u64,
    /// kind 2 | slot 30 | address 32.
    value: u64,
}

impl Words<3> for Entry4 {
    fn to_words(&self) -> [u64; 3] {
        [self.addrs, self.rest, self.value]
    }
    fn from_words([addrs, rest, value]: [u64; 3]) -> Self {
        Entry4 { addrs, rest, value }
    }
}

impl FragAddr for Ipv4Addr {
    type Entry = Entry4;
    type Slot = SeqSlot<Entry4, 3>;

    #[inline]
    fn hash(k: &HashKey, key: &FragKey<Ipv4Addr>) -> u64 {
        let addrs = (u64::from(u32::from(key.src)) << 32) | u64::from(u32::from(key.dst));
        k.hash(
            addrs,
            (u64::from(key.proto) << 16) | u64::from(key.id & 0xffff),
        )
    }
    #[inline]
    fn entry(key: &FragKey<Ipv4Addr>, expires: u64, v: FragVerdict<Ipv4Addr>) -> Entry4 {
        let (kind_slot, addr) = v.split();
        Entry4 {
            addrs: (u64::from(u32::from(key.src)) << 32) | u64::from(u32::from(key.dst)),
            rest: (u64::from(key.proto) << 56)
                | (u64::from(key.id & 0xffff) << 40)
                | (expires & TIME_MASK),
            value: (u64::from(kind_slot) << 32)
                | u64::from(u32::from(addr.unwrap_or(Ipv4Addr::UNSPECIFIED))),
        }
    }
    #[inline]
    fn same_key(e: &Entry4, probe: &Entry4) -> bool {
        e.rest != 0 && e.addrs == probe.addrs && e.rest & !TIME_MASK == probe.rest & !TIME_MASK
    }
    #[inline]
    fn expiry(e: &Entry4) -> u64 {
        e.rest & TIME_MASK
    }
    #[inline]
    fn verdict(e: &Entry4) -> Option<FragVerdict<Ipv4Addr>> {
        FragVerdict::join((e.value >> 32) as u32, Ipv4Addr::from(e.value as u32))
    }
}

/// An IPv6 slot's value: 8 words: src (2), dst (2), proto << 56 | expiry 40 (0 when empty),
/// id 32 | kind 2 | slot 30, address (2).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry6([u64; 8]);

impl Words<8> for Entry6 {
    fn to_words(&self) -> [u64; 8] {
        self.0
    }
    fn from_words(w: [u64; 8]) -> Self {
        Entry6(w)
    }
}

fn split6(a: Ipv6Addr) -> (u64, u64) {
    let v = u128::from(a);
    ((v >> 64) as u64, v as u64)
}

impl FragAddr for Ipv6Addr {
    type Entry = Entry6;
    type Slot = SeqSlot<Entry6, 8>;

    #[inline]
    fn hash(k: &HashKey, key: &FragKey<Ipv6Addr>) -> u64 {
        let (sh, sl) = split6(key.src);
        let (dh, dl) = split6(key.dst);
        // Each address folded by one multiply of its keyed halves (as the connection table's
        // IPv6 hash), then the keyed hash of the folds with the id and protocol.
        let s = mum(sh ^ k.word(0), sl ^ k.word(1));
        let d = mum(dh ^ k.word(1), dl ^ k.word(0));
        k.hash(s ^ ((u64::from(key.id) << 8) | u64::from(key.proto)), d)
    }
    #[inline]
    fn entry(key: &FragKey<Ipv6Addr>, expires: u64, v: FragVerdict<Ipv6Addr>) -> Entry6 {
        let (sh, sl) = split6(key.src);
        let (dh, dl) = split6(key.dst);
        let (kind_slot, addr) = v.split();
        let (ah, al) = split6(addr.unwrap_or(Ipv6Addr::UNSPECIFIED));
        Entry6([
            sh,
            sl,
            dh,
            dl,
            (u64::from(key.proto) << 56) | (expires & TIME_MASK),
            (u64::from(key.id) << 32) | u64::from(kind_slot),
            ah,
            al,
        ])
    }
    #[inline]
    fn same_key(e: &Entry6, probe: &Entry6) -> bool {
        let ([s0, s1, s2, s3, srest, sid, ..], [p0, p1, p2, p3, prest, pid, ..]) = (e.0, probe.0);
        srest != 0
            && (s0, s1, s2, s3) == (p0, p1, p2, p3)
            && srest & !TIME_MASK == prest & !TIME_MASK
            && sid >> 32 == pid >> 32
    }
    #[inline]
    fn expiry(e: &Entry6) -> u64 {
        let [.., rest, _, _, _] = e.0;
        rest & TIME_MASK
    }
    #[inline]
    fn verdict(e: &Entry6) -> Option<FragVerdict<Ipv6Addr>> {
        let [.., id_kind_slot, ah, al] = e.0;
        let addr = Ipv6Addr::from((u128::from(ah) << 64) | u128::from(al));
        FragVerdict::join(id_kind_slot as u32, addr)
    }
}

/// The shared fragment table of one address family.
pub struct FragTable<A: FragAddr = Ipv4Addr> {
    slots: Box<[A::Slot]>,
    mask: usize,
    key: HashKey,
}

/// The IPv6 fragment table.
pub type FragTable6 = FragTable<Ipv6Addr>;

impl<A: FragAddr> std::fmt::Debug for FragTable<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragTable")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl FragTable<Ipv4Addr> {
    /// An IPv4 table of `slots` entries (rounded up to a power of two, at least `BUCKET`).
    pub fn new(slots: usize) -> FragTable {
        Self::with_slots(slots)
    }
}

impl FragTable<Ipv6Addr> {
    /// An IPv6 table of `slots` entries (rounded up to a power of two, at least `BUCKET`).
    /// (Not `new`: `FragTable::new` then still means the IPv4 one.)
    pub fn new6(slots: usize) -> FragTable6 {
        Self::with_slots(slots)
    }
}

impl<A: FragAddr> FragTable<A> {
    fn with_slots(slots: usize) -> FragTable<A> {
        let n = slots.max(BUCKET).next_power_of_two();
        // A per-table random key, so that nobody can aim datagrams at one bucket.
        let [key] = HashKey::random();
        FragTable {
            slots: (0..n).map(|_| A::Slot::default()).collect(),
            mask: n - 1,
            key,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn home(&self, key: &FragKey<A>) -> usize {
        range(<A as FragAddr>::hash(&self.key, key), self.slots.len())
    }

    fn slot(&self, home: usize, i: usize) -> Option<&A::Slot> {
        self.slots.get((home + i) & self.mask)
    }

    /// Records `verdict` for the datagram `key` at `now_ms`.
    pub fn insert(&self, key: &FragKey<A>, verdict: FragVerdict<A>, now_ms: u64) -> FragInsert {
        let home = self.home(key);
        let expires = now_ms.saturating_add(FRAG_TIMEOUT_MS) & TIME_MASK;
        let new = A::entry(key, expires.max(1), verdict);
        // Pick: the same key, else a free or expired slot, else the one that expires first.
        let mut best = None; // (slot, version read, expiry)
        for i in 0..BUCKET {
            let Some(s) = self.slot(home, i) else {
                continue;
            };
            let Some((e, version)) = s.read_versioned() else {
                continue;
            };
            if A::same_key(&e, &new) {
                best = Some((s, version, 0));
                break;
            }
            let exp = A::expiry(&e);
            let exp = if exp <= now_ms { 0 } else { exp };
            if best.is_none_or(|(_, _, b)| exp < b) {
                best = Some((s, version, exp));
            }
        }
        let Some((s, version, exp)) = best else {
            return FragInsert::Busy;
        };
        // Only if nobody wrote the slot since it was chosen.
        let Some(cur) = s.replace_at(version, |_| new) else {
            return FragInsert::Busy;
        };
        let live_other = A::expiry(&cur) > now_ms && !A::same_key(&cur, &new);
        if exp != 0 || live_other {
            FragInsert::Evicted
        } else {
            FragInsert::Stored
        }
    }

    /// The verdict recorded for `key`, if one is live at `now_ms`.
    pub fn lookup(&self, key: &FragKey<A>, now_ms: u64) -> Option<FragVerdict<A>> {
        let home = self.home(key);
        let probe = A::entry(key, 0, FragVerdict::Route);
        for i in 0..BUCKET {
            let Some(e) = self.slot(home, i).and_then(|s| s.read(2)) else {
                continue;
            };
            if A::same_key(&e, &probe) && A::expiry(&e) > now_ms {
                return A::verdict(&e);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    /// What the tests need of an address family: addresses by number.
    trait TestAddr: FragAddr {
        /// Address `n` of the clients' / VIPs' net (`net` 0) or the real servers' (`net` 1).
        fn addr(net: u8, n: u8) -> Self;
        fn host(self) -> u8;
        fn table(slots: usize) -> FragTable<Self>;
    }

    impl TestAddr for Ipv4Addr {
        fn addr(net: u8, n: u8) -> Self {
            if net == 0 {
                Ipv4Addr::new(198, 51, 100, n)
            } else {
                Ipv4Addr::new(192, 0, 2, n)
            }
        }
        fn host(self) -> u8 {
            self.octets()[3]
        }
        fn table(slots: usize) -> FragTable<Self> {
            FragTable::new(slots)
        }
    }

    impl TestAddr for Ipv6Addr {
        fn addr(net: u8, n: u8) -> Self {
            let base: u128 = if net == 0 {
                0x2001_0db8_0100 << 80
            } else {
                0x2001_0db8_0002 << 80
            };
            Ipv6Addr::from(base | u128::from(n))
        }
        fn host(self) -> u8 {
            self.octets()[15]
        }
        fn table(slots: usize) -> FragTable<Self> {
            FragTable6::new6(slots)
        }
    }

    fn key<A: TestAddr>(id: u32) -> FragKey<A> {
        FragKey {
            src: A::addr(0, 10),
            dst: A::addr(0, 1),
            proto: 17,
            id,
        }
    }

    /// Runs a generic test for both families.
    macro_rules! both {
        ($($name:ident),* $(,)?) => {
            mod v4 {
                $(#[test] fn $name() { super::$name::<std::net::Ipv4Addr>() })*
            }
            mod v6 {
                $(#[test] fn $name() { super::$name::<std::net::Ipv6Addr>() })*
            }
        };
    }

    both!(
        verdicts_round_trip,
        insert_lookup_expire_and_overwrite,
        full_bucket_evicts_the_oldest_and_never_mixes_keys,
        concurrent_writers_and_readers_never_see_torn_entries,
    );

    fn verdicts_round_trip<A: TestAddr>() {
        let k = key::<A>(7);
        for v in [
            FragVerdict::Route,
            FragVerdict::Dnat {
                addr: A::addr(1, 2),
                slot: 16383,
            },
            FragVerdict::Snat {
                addr: A::addr(0, 1),
                slot: 0,
            },
        ] {
            let e = A::entry(&k, 1234, v);
            assert_eq!(A::verdict(&e), Some(v));
            assert_eq!(A::expiry(&e), 1234);
            assert!(A::same_key(&e, &A::entry(&k, 0, FragVerdict::Route)));
        }
    }

    fn insert_lookup_expire_and_overwrite<A: TestAddr>() {
        let t = A::table(64);
        let d = FragVerdict::Dnat {
            addr: A::addr(1, 2),
            slot: 3,
        };
        assert_eq!(t.lookup(&key(1), 1000), None);
        assert_eq!(t.insert(&key(1), d, 1000), FragInsert::Stored);
        assert_eq!(t.lookup(&key(1), 1000), Some(d));
        assert_eq!(t.lookup(&key(2), 1000), None, "another id");
        let mut other = key(1);
        other.proto = 6;
        assert_eq!(t.lookup(&other, 1000), None, "another protocol");
        other = key(1);
        other.src = A::addr(0, 11);
        assert_eq!(t.lookup(&other, 1000), None, "another source");
        other = key(1);
        other.dst = A::addr(0, 2);
        assert_eq!(t.lookup(&other, 1000), None, "another destination");
        assert_eq!(t.lookup(&key(1), 1000 + FRAG_TIMEOUT_MS - 1), Some(d));
        assert_eq!(t.lookup(&key(1), 1000 + FRAG_TIMEOUT_MS), None, "expired");
        // A new first fragment with the same key replaces the decision.
        assert_eq!(
            t.insert(&key(1), FragVerdict::Route, 1500),
            FragInsert::Stored
        );
        assert_eq!(t.lookup(&key(1), 1500), Some(FragVerdict::Route));
    }

    #[test]
    fn ipv6_ids_are_32_bits_and_ipv4_ids_16() {
        let t = FragTable6::new6(64);
        let d = FragVerdict::Snat {
            addr: Ipv6Addr::addr(0, 1),
            slot: 9,
        };
        assert_eq!(t.insert(&key(0x1234_5678), d, 1000), FragInsert::Stored);
        assert_eq!(t.lookup(&key(0x1234_5678), 1000), Some(d));
        assert_eq!(t.lookup(&key(0x5678), 1000), None);
        assert_eq!(t.lookup(&key(0x1235_5678), 1000), None);
        // IPv4 keys on the low 16 bits (all an IPv4 header has).
        let t4 = FragTable::new(64);
        let d4 = FragVerdict::Snat {
            addr: Ipv4Addr::addr(0, 1),
            slot: 9,
        };
        assert_eq!(t4.insert(&key(0x5678), d4, 1000), FragInsert::Stored);
        assert_eq!(t4.lookup(&key(0x5678), 1000), Some(d4));
        assert_eq!(t4.lookup(&key(0x5679), 1000), None);
    }

    fn full_bucket_evicts_the_oldest_and_never_mixes_keys<A: TestAddr>() {
        let t = A::table(4); // one bucket: every key collides
        let dnat = |id: u32| FragVerdict::Dnat {
            addr: A::addr(1, id as u8 + 2),
            slot: id,
        };
        for id in 0..4u32 {
            assert_eq!(
                t.insert(&key(id), dnat(id), 1000 + u64::from(id)),
                FragInsert::Stored
            );
        }
        let v = FragVerdict::Route;
        assert_eq!(t.insert(&key(9), v, 1010), FragInsert::Evicted);
        assert_eq!(t.lookup(&key(0), 1010), None, "the oldest went");
        for id in 1..4u32 {
            assert_eq!(t.lookup(&key(id), 1010), Some(dnat(id)));
        }
        assert_eq!(t.lookup(&key(9), 1010), Some(v));
        // Expired entries are reused without counting as evictions.
        assert_eq!(
            t.insert(&key(10), v, 1000 + FRAG_TIMEOUT_MS + 5),
            FragInsert::Stored
        );
    }

    fn concurrent_writers_and_readers_never_see_torn_entries<A: TestAddr>() {
        // Every writer stores, for key id k, a verdict whose address encodes k: a reader that
        // finds key k must find k's address, whatever the interleaving.
        let t = Arc::new(A::table(8));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for round in 0..20_000u32 {
                        let id = (round * 7 + w) % 64;
                        let v = FragVerdict::Dnat {
                            addr: A::addr(1, id as u8),
                            slot: id,
                        };
                        t.insert(&key(id), v, 1000);
                    }
                })
            })
            .collect();
        let reader = {
            let t = t.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = 0u64;
                // One more pass after the writers are done: on a loaded machine they may
                // finish before this thread first runs, and the table still holds their last
                // verdicts then.
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    for id in 0..64u32 {
                        match t.lookup(&key::<A>(id), 1000) {
                            Some(FragVerdict::Dnat { addr, slot }) => {
                                assert_eq!(u32::from(addr.host()), id);
                                assert_eq!(slot, id);
                                seen += 1;
                            }
                            Some(other) => panic!("unexpected {other:?}"),
                            None => {}
                        }
                    }
                    if last {
                        break;
                    }
                }
                seen
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
