//! IPv4 fragments follow their datagram's first fragment.
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
//! retries once if a writer was busy in the slot and otherwise reports a miss. Entries expire [`FRAG_TIMEOUT_MS`] after the first
//! fragment; an insert into a full bucket replaces the entry closest to expiry. The capacity is
//! fixed at start and nothing is allocated afterwards.

use crate::hash::{range, HashKey};
use crate::seqlock::{SeqSlot, Words};
use std::net::Ipv4Addr;

/// Slots in the table (a power of two): 2 MiB.
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

/// The datagram a fragment belongs to (RFC 791: source, destination, protocol, identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub id: u16,
}

impl FragKey {
    fn addrs(&self) -> u64 {
        (u64::from(u32::from(self.src)) << 32) | u64::from(u32::from(self.dst))
    }

    fn rest(&self, expires: u64) -> u64 {
        (u64::from(self.proto) << 56) | (u64::from(self.id) << 40) | (expires & TIME_MASK)
    }
}

/// What was done with the first fragment, to be done with the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragVerdict {
    /// Routed unchanged (TTL decremented).
    Route,
    /// Destination rewritten to `addr` (client -> real server); `slot` is the real server's
    /// stats slot.
    Dnat { addr: Ipv4Addr, slot: u32 },
    /// Source rewritten to `addr` (real server -> client, as the VIP).
    Snat { addr: Ipv4Addr, slot: u32 },
}

impl FragVerdict {
    fn pack(self) -> u64 {
        let (kind, addr, slot) = match self {
            FragVerdict::Route => (1u64, Ipv4Addr::UNSPECIFIED, 0u32),
            FragVerdict::Dnat { addr, slot } => (2, addr, slot),
            FragVerdict::Snat { addr, slot } => (3, addr, slot),
        };
        (kind << 62) | (u64::from(slot & 0x3fff_ffff) << 32) | u64::from(u32::from(addr))
    }

    fn unpack(v: u64) -> Option<FragVerdict> {
        let addr = Ipv4Addr::from((v & 0xffff_ffff) as u32);
        let slot = ((v >> 32) & 0x3fff_ffff) as u32;
        match v >> 62 {
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

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The key's addresses (see [`FragKey::addrs`]).
    addrs: u64,
    /// proto << 56 | id << 40 | expiry (ms, 40 bits); 0 when empty.
    rest: u64,
    /// The packed [`FragVerdict`].
    value: u64,
}

impl Entry {
    /// Whether this is a (live or expired) entry of the datagram with these words.
    fn is(&self, addrs: u64, want: u64) -> bool {
        self.rest != 0 && self.addrs == addrs && self.rest & !TIME_MASK == want
    }
}

impl Words<3> for Entry {
    fn to_words(&self) -> [u64; 3] {
        [self.addrs, self.rest, self.value]
    }
    fn from_words([addrs, rest, value]: [u64; 3]) -> Self {
        Entry { addrs, rest, value }
    }
}

type Slot = SeqSlot<Entry, 3>;

/// The shared fragment table.
pub struct FragTable {
    slots: Box<[Slot]>,
    mask: usize,
    key: HashKey,
}

impl std::fmt::Debug for FragTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragTable")
            .field("slots", &self.slots.len())
            .finish()
    }
}

fn expiry_of(rest: u64) -> u64 {
    rest & TIME_MASK
}

impl FragTable {
    /// A table of `slots` entries (rounded up to a power of two, at least `BUCKET`).
    pub fn new(slots: usize) -> FragTable {
        let n = slots.max(BUCKET).next_power_of_two();
        // A per-table random key, so that nobody can aim datagrams at one bucket.
        let [key] = HashKey::random();
        FragTable {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: n - 1,
            key,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn home(&self, key: &FragKey) -> usize {
        let h = self.key.hash(
            key.addrs(),
            (u64::from(key.proto) << 16) | u64::from(key.id),
        );
        range(h, self.slots.len())
    }

    fn slot(&self, home: usize, i: usize) -> Option<&Slot> {
        self.slots.get((home + i) & self.mask)
    }

    /// Records `verdict` for the datagram `key` at `now_ms`.
    pub fn insert(&self, key: &FragKey, verdict: FragVerdict, now_ms: u64) -> FragInsert {
        let home = self.home(key);
        let addrs = key.addrs();
        let want = key.rest(0);
        let expires = now_ms.saturating_add(FRAG_TIMEOUT_MS) & TIME_MASK;
        // Pick: the same key, else a free or expired slot, else the one that expires first.
        let mut best = None; // (slot, version read, expiry)
        for i in 0..BUCKET {
            let Some(s) = self.slot(home, i) else {
                continue;
            };
            let Some((e, version)) = s.read_versioned() else {
                continue;
            };
            if e.is(addrs, want) {
                best = Some((s, version, 0));
                break;
            }
            let exp = if e.rest == 0 || expiry_of(e.rest) <= now_ms {
                0
            } else {
                expiry_of(e.rest)
            };
            if best.is_none_or(|(_, _, b)| exp < b) {
                best = Some((s, version, exp));
            }
        }
        let Some((s, version, exp)) = best else {
            return FragInsert::Busy;
        };
        // Only if nobody wrote the slot since it was chosen.
        let Some(mut g) = s.lock_at(version) else {
            return FragInsert::Busy;
        };
        let cur = g.get();
        let live_other = cur.rest != 0 && expiry_of(cur.rest) > now_ms && !cur.is(addrs, want);
        g.set(Entry {
            addrs,
            rest: key.rest(expires.max(1)),
            value: verdict.pack(),
        });
        if exp != 0 || live_other {
            FragInsert::Evicted
        } else {
            FragInsert::Stored
        }
    }

    /// The verdict recorded for `key`, if one is live at `now_ms`.
    pub fn lookup(&self, key: &FragKey, now_ms: u64) -> Option<FragVerdict> {
        let home = self.home(key);
        let addrs = key.addrs();
        let want = key.rest(0);
        for i in 0..BUCKET {
            let Some(e) = self.slot(home, i).and_then(|s| s.read(2)) else {
                continue;
            };
            if e.is(addrs, want) && expiry_of(e.rest) > now_ms {
                return FragVerdict::unpack(e.value);
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

    fn key(id: u16) -> FragKey {
        FragKey {
            src: Ipv4Addr::new(198, 51, 100, 10),
            dst: Ipv4Addr::new(198, 51, 100, 1),
            proto: 17,
            id,
        }
    }

    #[test]
    fn verdicts_round_trip() {
        for v in [
            FragVerdict::Route,
            FragVerdict::Dnat {
                addr: Ipv4Addr::new(192, 0, 2, 2),
                slot: 16383,
            },
            FragVerdict::Snat {
                addr: Ipv4Addr::new(198, 51, 100, 1),
                slot: 0,
            },
        ] {
            assert_eq!(FragVerdict::unpack(v.pack()), Some(v));
        }
        assert_eq!(FragVerdict::unpack(0), None);
    }

    #[test]
    fn insert_lookup_expire_and_overwrite() {
        let t = FragTable::new(64);
        let d = FragVerdict::Dnat {
            addr: Ipv4Addr::new(192, 0, 2, 2),
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
        other.src = Ipv4Addr::new(198, 51, 100, 11);
        assert_eq!(t.lookup(&other, 1000), None, "another source");
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
    fn full_bucket_evicts_the_oldest_and_never_mixes_keys() {
        let t = FragTable::new(4); // one bucket: every key collides
        for id in 0..4u16 {
            let v = FragVerdict::Dnat {
                addr: Ipv4Addr::new(192, 0, 2, id as u8 + 2),
                slot: u32::from(id),
            };
            assert_eq!(
                t.insert(&key(id), v, 1000 + u64::from(id)),
                FragInsert::Stored
            );
        }
        let v = FragVerdict::Route;
        assert_eq!(t.insert(&key(9), v, 1010), FragInsert::Evicted);
        assert_eq!(t.lookup(&key(0), 1010), None, "the oldest went");
        for id in 1..4u16 {
            assert_eq!(
                t.lookup(&key(id), 1010),
                Some(FragVerdict::Dnat {
                    addr: Ipv4Addr::new(192, 0, 2, id as u8 + 2),
                    slot: u32::from(id)
                })
            );
        }
        assert_eq!(t.lookup(&key(9), 1010), Some(v));
        // Expired entries are reused without counting as evictions.
        assert_eq!(
            t.insert(&key(10), v, 1000 + FRAG_TIMEOUT_MS + 5),
            FragInsert::Stored
        );
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_torn_entries() {
        // Every writer stores, for key id k, a verdict whose address encodes k: a reader that
        // finds key k must find k's address, whatever the interleaving.
        let t = Arc::new(FragTable::new(8));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for round in 0..20_000u32 {
                        let id = ((round * 7 + w) % 64) as u16;
                        let v = FragVerdict::Dnat {
                            addr: Ipv4Addr::from(0xc000_0200 | u32::from(id)),
                            slot: u32::from(id),
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
                    for id in 0..64u16 {
                        match t.lookup(&key(id), 1000) {
                            Some(FragVerdict::Dnat { addr, slot }) => {
                                assert_eq!(u32::from(addr) & 0xff, u32::from(id));
                                assert_eq!(slot, u32::from(id));
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
