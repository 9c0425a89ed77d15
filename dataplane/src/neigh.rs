//! The neighbour table: (port, IPv4) -> MAC, shared by all workers, lock-free.
//!
//! Fixed capacity, open addressing with a short linear probe window. Each slot is a
//! [`SeqSlot`]: readers never wait (a read that overlaps a write retries a few times, then counts
//! as a miss, which only means one more ARP request); writers take the slot with a
//! compare-and-swap and give up rather than wait if another writer holds it (learning is best
//! effort and happens again with the next packet). Entries are never deleted, only refreshed
//! when the MAC changes or replaced when the window is full, so a reader may stop at the first
//! empty slot.
//!
//! Learning writes only when something changed, so a busy neighbour costs readers nothing but
//! a shared cache line that stays clean.
//!
//! Static entries (rvs.toml's `[[neighbours]]`, `rvsctl neigh add`), for peers that answer no
//! ARP (dpdk-testpmd reflecting traffic), are marked in the key word: learning never changes
//! them and eviction passes them over. Deleting an entry (`rvsctl neigh del`) leaves a tombstone
//! that readers step over (unlike an empty slot, it does not end a probe) and writers reuse.

use crate::hash::{range, HashKey};
use crate::packet::arp::{self, Arp};
use crate::packet::eth::{self, mac_from_u64, mac_to_u64};
use crate::seqlock::{SeqSlot, Words};
use std::net::Ipv4Addr;

/// Slots probed per key.
const WINDOW: usize = 8;
/// Read attempts when a slot is being written.
const READ_TRIES: usize = 4;
/// Marks a used key word (so port 0 / 0.0.0.0 still differs from an empty slot).
const USED: u64 = 1 << 63;
/// Marks a static entry's key word.
const STATIC: u64 = 1 << 62;
/// A deleted entry: no (port, address) key has bit 61 set.
const TOMBSTONE: u64 = USED | (1 << 61);

/// What a slot holds: the key (0 when empty; with [`STATIC`] for a static entry) and the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Neighbour {
    key: u64,
    mac: u64,
}

impl Neighbour {
    /// The (port, address) key without the static mark.
    fn id(&self) -> u64 {
        self.key & !STATIC
    }

    fn is_static(&self) -> bool {
        self.key & STATIC != 0
    }

    /// Free for a new key: empty or deleted.
    fn is_free(&self) -> bool {
        self.key == 0 || self.key == TOMBSTONE
    }
}

impl Words<2> for Neighbour {
    fn to_words(&self) -> [u64; 2] {
        [self.key, self.mac]
    }
    fn from_words([key, mac]: [u64; 2]) -> Self {
        Neighbour { key, mac }
    }
}

/// One slot, never straddling a cache line.
#[derive(Debug, Default)]
#[repr(align(32))]
struct Slot(SeqSlot<Neighbour, 2>);

/// What [`NeighTable::arp_input`] did with an ARP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArpOutcome {
    /// The frame now holds our reply; send it back out of the port it came in on.
    Replied,
    /// A request for an address that is not ours.
    NotOurs,
    /// A reply or another opcode: learnt from, nothing to send.
    Consumed,
}

/// One entry as `rvsctl neigh` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighEntry {
    pub port: u16,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Configured (`[[neighbours]]`, `rvsctl neigh add`), not learnt.
    pub permanent: bool,
}

/// Why a static entry could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NeighError {
    #[error("its slots in the neighbour table are all taken by static entries")]
    Full,
    #[error("the neighbour table is busy; try again")]
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Learnt,
    Static,
}

#[derive(Debug)]
pub struct NeighTable {
    slots: Box<[Slot]>,
    mask: usize,
    key: HashKey,
}

fn key_of(port: u16, ip: Ipv4Addr) -> u64 {
    USED | (u64::from(port) << 32) | u64::from(u32::from(ip))
}

impl NeighTable {
    /// A table of at least `capacity` slots (rounded up to a power of two, at least WINDOW).
    pub fn new(capacity: usize) -> NeighTable {
        let n = capacity.max(WINDOW).next_power_of_two();
        let [key] = HashKey::random();
        NeighTable {
            slots: (0..n).map(|_| Slot::default()).collect(),
            mask: n - 1,
            key,
        }
    }

    fn home(&self, key: u64) -> usize {
        // Neighbours are dense keys (a subnet's addresses): see `crate::hash`.
        range(self.key.spread(key), self.slots.len())
    }

    fn slot(&self, home: usize, i: usize) -> Option<&SeqSlot<Neighbour, 2>> {
        self.slots.get((home + i) & self.mask).map(|s| &s.0)
    }

    /// The MAC of `ip` on `port`, if known. Never blocks.
    pub fn lookup(&self, port: u16, ip: Ipv4Addr) -> Option<[u8; 6]> {
        let key = key_of(port, ip);
        let home = self.home(key);
        for i in 0..WINDOW {
            let n = self.slot(home, i)?.read(READ_TRIES)?;
            if n.id() == key {
                return Some(mac_from_u64(n.mac));
            }
            if n.key == 0 {
                return None;
            }
        }
        None
    }

    /// Records that `ip` on `port` is at `mac`. Writes only if that is news; never changes a
    /// static entry. Returns whether the table now holds it (false: a concurrent writer was
    /// busy with the slot, try next time; or the key is static with another MAC).
    pub fn learn(&self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) -> bool {
        self.write(port, ip, mac, Kind::Learnt, 1).is_ok()
    }

    /// Adds or replaces the static entry `ip` on `port` at `mac` (the control thread's call).
    pub fn add_static(&self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), NeighError> {
        self.write(port, ip, mac, Kind::Static, 1000)
    }

    /// Deletes the entry of `ip` on `port`, static or learnt. False if there was none.
    pub fn remove(&self, port: u16, ip: Ipv4Addr) -> bool {
        let key = key_of(port, ip);
        let home = self.home(key);
        for i in 0..WINDOW {
            let Some(slot) = self.slot(home, i) else {
                return false;
            };
            let Some(n) = slot.read(READ_TRIES) else {
                continue;
            };
            if n.key == 0 {
                return false;
            }
            if n.id() == key {
                let Some(mut g) = slot.lock(1000) else {
                    return false;
                };
                if g.get().id() != key {
                    return false;
                }
                g.set(Neighbour {
                    key: TOMBSTONE,
                    mac: 0,
                });
                return true;
            }
        }
        false
    }

    /// Learning and adding: find the key, else the first free slot, else evict a learnt entry
    /// within the window (spread the victims by the address so one hot window does not always
    /// lose the same entry). `tries`: how often to try for a slot another writer holds.
    fn write(
        &self,
        port: u16,
        ip: Ipv4Addr,
        mac: [u8; 6],
        kind: Kind,
        tries: usize,
    ) -> Result<(), NeighError> {
        let key = key_of(port, ip);
        let stored = match kind {
            Kind::Learnt => key,
            Kind::Static => key | STATIC,
        };
        let want = mac_to_u64(&mac);
        let home = self.home(key);
        let mut target = None;
        let mut free = None;
        for i in 0..WINDOW {
            let slot = self.slot(home, i).ok_or(NeighError::Busy)?;
            let n = slot.read(READ_TRIES).ok_or(NeighError::Busy)?;
            if n.id() == key {
                if kind == Kind::Learnt && n.is_static() {
                    return if n.mac == want {
                        Ok(())
                    } else {
                        Err(NeighError::Busy)
                    };
                }
                if n.key == stored && n.mac == want {
                    return Ok(());
                }
                target = Some((slot, n.key));
                break;
            }
            if n.is_free() && free.is_none() {
                free = Some((slot, n.key));
            }
            if n.key == 0 {
                break;
            }
        }
        let (slot, expect) = match target.or(free) {
            Some(t) => t,
            None => self.victim(home, ip).ok_or(NeighError::Full)?,
        };
        let mut g = slot.lock(tries).ok_or(NeighError::Busy)?;
        // Another writer may have claimed the slot for another key since it was read.
        if g.get().key != expect {
            return Err(NeighError::Busy);
        }
        g.set(Neighbour {
            key: stored,
            mac: want,
        });
        Ok(())
    }

    /// A learnt entry of the window to replace, starting at a place spread by the address.
    fn victim(&self, home: usize, ip: Ipv4Addr) -> Option<(&SeqSlot<Neighbour, 2>, u64)> {
        let start = (home ^ usize::from(ip.octets()[3])) % WINDOW;
        (0..WINDOW).find_map(|i| {
            let slot = self.slot(home, (start + i) % WINDOW)?;
            let n = slot.read(READ_TRIES)?;
            (!n.is_static()).then_some((slot, n.key))
        })
    }

    /// The ARP responder. Handles the ARP frame `frame` received on `port` (our MAC there:
    /// `our_mac`): learns the sender when `learnable(sender ip)`, and turns a request for an
    /// address with `answer_for(target ip)` into the reply, in place. `None` if the frame is not
    /// a well-formed Ethernet/IPv4 ARP message.
    pub fn arp_input(
        &self,
        port: u16,
        our_mac: [u8; 6],
        frame: &mut [u8],
        learnable: impl Fn(Ipv4Addr) -> bool,
        answer_for: impl Fn(Ipv4Addr) -> bool,
    ) -> Option<ArpOutcome> {
        let a = Arp::parse(frame.get(eth::HDR_LEN..)?)?;
        // 0.0.0.0 senders are address probes (RFC 5227); group or zero MACs are bogus.
        if !a.spa.is_unspecified()
            && !eth::is_multicast(&a.sha)
            && a.sha != [0; 6]
            && learnable(a.spa)
        {
            self.learn(port, a.spa, a.sha);
        }
        if a.op != arp::OP_REQUEST {
            return Some(ArpOutcome::Consumed);
        }
        if !answer_for(a.tpa) {
            return Some(ArpOutcome::NotOurs);
        }
        arp::reply_in_place(frame, &a, our_mac)?;
        Some(ArpOutcome::Replied)
    }

    /// Every entry, for `rvsctl neigh` and diagnostics (not for the packet path).
    pub fn entries(&self) -> Vec<NeighEntry> {
        self.slots
            .iter()
            .filter_map(|s| s.0.read(READ_TRIES))
            .filter(|n| !n.is_free())
            .map(|n| {
                let k = n.id();
                NeighEntry {
                    port: (k >> 32) as u16,
                    ip: Ipv4Addr::from(k as u32),
                    mac: mac_from_u64(n.mac),
                    permanent: n.is_static(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mac(n: u32) -> [u8; 6] {
        let b = n.to_be_bytes();
        [0x02, 0, b[0], b[1], b[2], b[3]]
    }

    #[test]
    fn a_slot_never_straddles_a_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        assert_eq!(std::mem::align_of::<Slot>(), 32);
    }

    #[test]
    fn learn_lookup_update() {
        let t = NeighTable::new(64);
        let ip = Ipv4Addr::new(192, 0, 2, 2);
        assert_eq!(t.lookup(1, ip), None);
        assert!(t.learn(1, ip, mac(1)));
        assert_eq!(t.lookup(1, ip), Some(mac(1)));
        assert_eq!(t.lookup(0, ip), None, "per port");
        assert!(t.learn(1, ip, mac(2)));
        assert_eq!(t.lookup(1, ip), Some(mac(2)));
        let entry = NeighEntry {
            port: 1,
            ip,
            mac: mac(2),
            permanent: false,
        };
        assert_eq!(t.entries(), vec![entry]);
    }

    #[test]
    fn static_entries_win_over_learning_and_survive_eviction() {
        let t = NeighTable::new(8);
        let ip = Ipv4Addr::new(192, 0, 2, 9);
        t.add_static(1, ip, mac(9)).unwrap();
        assert!(
            !t.learn(1, ip, mac(10)),
            "learning a static entry's address changes nothing"
        );
        assert_eq!(t.lookup(1, ip), Some(mac(9)));
        // Fill the whole table (one window) with learnt entries: the static one stays.
        for i in 0..64u32 {
            t.learn(1, Ipv4Addr::from(0xc000_0300 + i), mac(i));
        }
        assert_eq!(t.lookup(1, ip), Some(mac(9)));
        let listed: Vec<_> = t.entries().into_iter().filter(|e| e.permanent).collect();
        assert_eq!(
            listed,
            vec![NeighEntry {
                port: 1,
                ip,
                mac: mac(9),
                permanent: true
            }]
        );
        // A static entry replaces a learnt one and is replaced by another static one.
        let other = Ipv4Addr::new(192, 0, 2, 20);
        t.remove(1, other);
        assert!(t.learn(1, other, mac(1)));
        t.add_static(1, other, mac(2)).unwrap();
        assert_eq!(t.lookup(1, other), Some(mac(2)));
        t.add_static(1, other, mac(3)).unwrap();
        assert_eq!(t.lookup(1, other), Some(mac(3)));
    }

    #[test]
    fn a_window_of_static_entries_refuses_one_more() {
        let t = NeighTable::new(8);
        for i in 0..8u32 {
            t.add_static(0, Ipv4Addr::from(0xc000_0200 + i), mac(i))
                .unwrap();
        }
        assert_eq!(
            t.add_static(0, Ipv4Addr::new(192, 0, 2, 100), mac(100)),
            Err(NeighError::Full)
        );
        assert!(!t.learn(0, Ipv4Addr::new(192, 0, 2, 101), mac(101)));
        for i in 0..8u32 {
            assert_eq!(t.lookup(0, Ipv4Addr::from(0xc000_0200 + i)), Some(mac(i)));
        }
    }

    #[test]
    fn removing_leaves_a_tombstone_that_lookups_step_over() {
        let t = NeighTable::new(8);
        // Eight keys in an eight-slot table: every probe passes the others' slots.
        let ips: Vec<Ipv4Addr> = (0..8u32).map(|i| Ipv4Addr::from(0xc000_0200 + i)).collect();
        for (i, ip) in ips.iter().enumerate() {
            t.add_static(0, *ip, mac(i as u32)).unwrap();
        }
        assert!(t.remove(0, ips[0]));
        assert!(!t.remove(0, ips[0]), "already gone");
        assert_eq!(t.lookup(0, ips[0]), None);
        for (i, ip) in ips.iter().enumerate().skip(1) {
            assert_eq!(
                t.lookup(0, *ip),
                Some(mac(i as u32)),
                "{ip} behind the tombstone"
            );
        }
        assert_eq!(t.entries().len(), 7);
        // The tombstone is reused.
        t.add_static(0, Ipv4Addr::new(192, 0, 2, 100), mac(100))
            .unwrap();
        assert_eq!(t.lookup(0, Ipv4Addr::new(192, 0, 2, 100)), Some(mac(100)));
    }

    #[test]
    fn port_zero_and_zero_address_are_keys_too() {
        let t = NeighTable::new(8);
        assert!(t.learn(0, Ipv4Addr::UNSPECIFIED, mac(7)));
        assert_eq!(t.lookup(0, Ipv4Addr::UNSPECIFIED), Some(mac(7)));
    }

    #[test]
    fn matches_a_map_until_full_and_never_lies() {
        let t = NeighTable::new(256);
        let mut model = HashMap::new();
        for i in 0..200u32 {
            let ip = Ipv4Addr::from(0xc000_0200 + i);
            t.learn((i % 2) as u16, ip, mac(i));
            model.insert(((i % 2) as u16, ip), mac(i));
        }
        // Past the window some entries may have been evicted, but a hit is always right.
        let mut hits = 0;
        for ((p, ip), m) in &model {
            if let Some(got) = t.lookup(*p, *ip) {
                assert_eq!(got, *m);
                hits += 1;
            }
        }
        assert!(hits >= 190, "{hits}");
    }

    #[test]
    fn concurrent_learners_and_readers_never_see_torn_entries() {
        let t = NeighTable::new(16);
        // Each ip's MAC encodes the ip, so a reader can check key/MAC consistency.
        let ips: Vec<Ipv4Addr> = (1..40u32)
            .map(|i| Ipv4Addr::from(0xc000_0200 + i))
            .collect();
        std::thread::scope(|s| {
            for w in 0..2 {
                let (t, ips) = (&t, &ips);
                s.spawn(move || {
                    for round in 0..2000 {
                        let ip = ips[(round * 7 + w) % ips.len()];
                        t.learn(1, ip, mac(u32::from(ip)));
                    }
                });
            }
            let (t, ips) = (&t, &ips);
            s.spawn(move || {
                for round in 0..20000 {
                    let ip = ips[round % ips.len()];
                    if let Some(m) = t.lookup(1, ip) {
                        assert_eq!(m, mac(u32::from(ip)));
                    }
                }
            });
        });
    }
}
