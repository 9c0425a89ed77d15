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

/// What a slot holds: the key (0 when empty) and the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Neighbour {
    key: u64,
    mac: u64,
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
            if n.key == key {
                return Some(mac_from_u64(n.mac));
            }
            if n.key == 0 {
                return None;
            }
        }
        None
    }

    /// Records that `ip` on `port` is at `mac`. Writes only if that is news. Returns whether the
    /// table now holds it (false: a concurrent writer was busy with the slot; try next time).
    pub fn learn(&self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) -> bool {
        let key = key_of(port, ip);
        let want = mac_to_u64(&mac);
        let home = self.home(key);
        // Find the key, else the first empty slot, else evict within the window (spread the
        // victims by the key so one hot window does not always lose the same entry).
        let mut target = None;
        for i in 0..WINDOW {
            let Some(slot) = self.slot(home, i) else {
                return false;
            };
            let Some(n) = slot.read(READ_TRIES) else {
                return false;
            };
            if n.key == key {
                if n.mac == want {
                    return true;
                }
                target = Some((slot, n.key));
                break;
            }
            if n.key == 0 {
                target = Some((slot, 0));
                break;
            }
        }
        let (slot, expect) = match target {
            Some(t) => t,
            None => {
                let Some(slot) = self.slot(home, (home ^ ip.octets()[3] as usize) % WINDOW) else {
                    return false;
                };
                let Some(n) = slot.read(READ_TRIES) else {
                    return false;
                };
                (slot, n.key)
            }
        };
        let Some(mut g) = slot.lock(1) else {
            return false;
        };
        // Another writer may have claimed the slot for another key since it was read.
        if g.get().key != expect {
            return false;
        }
        g.set(Neighbour { key, mac: want });
        true
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

    /// Every entry, for diagnostics (not for the packet path).
    pub fn entries(&self) -> Vec<(u16, Ipv4Addr, [u8; 6])> {
        self.slots
            .iter()
            .filter_map(|s| s.0.read(READ_TRIES))
            .filter(|n| n.key != 0)
            .map(|n| {
                let k = n.key;
                (
                    (k >> 32) as u16,
                    Ipv4Addr::from(k as u32),
                    mac_from_u64(n.mac),
                )
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
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
        assert_eq!(t.entries(), vec![(1, ip, mac(2))]);
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
