//! A small set of IPv4 addresses, each with a byte of classes, answered by a word of filter
//! bits and at most one probe: what the IPv4 stage asks of a packet's two addresses (martian?
//! one of ours? a VIP?) without scanning a list per question; and for IPv6, a filter that
//! answers "certainly not" before a list is looked at.
//!
//! Each set is built on the control thread with the structure whose lists it indexes and
//! published with it: [`crate::pipeline::OwnedAddrs`] carries the broadcasts and held addresses,
//! [`crate::service::Snapshot`] the VIPs. A worker probes the ones of its burst; it builds and
//! frees nothing.

use std::net::Ipv4Addr;

/// A subnet's broadcast address (the rest of the martian rule is by first octet).
pub const MARTIAN: u8 = 1;
/// An address rvs holds.
pub const LOCAL: u8 = 2;
/// A service's virtual address.
pub const VIP: u8 = 4;

/// Open addressing with linear probing over a power-of-two table at most half full; a slot is
/// `address << 8 | classes`, 0 when empty (0.0.0.0 is never stored). A word of filter bits
/// in front answers most other addresses (most packets' are no member) without the probe.
#[derive(Debug)]
pub struct AddrSet {
    slots: Box<[u64]>,
    /// log2 of the slot count.
    bits: u32,
    /// A bit per member, picked by its hash's low 6 bits ([`AddrSet::hashed`]): clear, the
    /// address is certainly no member.
    filter: u64,
}

impl Default for AddrSet {
    fn default() -> AddrSet {
        AddrSet::new(std::iter::empty())
    }
}

impl AddrSet {
    /// The set of `listed` addresses with their classes (an address listed twice gets both).
    pub fn new(listed: impl IntoIterator<Item = (Ipv4Addr, u8)>) -> AddrSet {
        let listed: Vec<(Ipv4Addr, u8)> = listed.into_iter().collect();
        let bits = (2 * listed.len())
            .next_power_of_two()
            .max(8)
            .trailing_zeros();
        let mut set = AddrSet {
            slots: vec![0; 1 << bits].into_boxed_slice(),
            bits,
            filter: 0,
        };
        for (addr, class) in listed {
            set.add(addr, class);
        }
        set
    }

    /// Fibonacci hashing: the probe starts at the top `bits` bits of the product, the filter
    /// bit is its low 6 (one multiply for both; the product's lowest bits are those of `a`
    /// times an odd number, so as spread as the addresses' own low bits, which vary most).
    #[inline]
    fn hashed(&self, a: u32) -> (usize, u64) {
        let h = u64::from(a).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((h >> (64 - self.bits)) as usize, 1 << (h & 63))
    }

    fn add(&mut self, addr: Ipv4Addr, class: u8) {
        let a = u32::from(addr);
        if a == 0 {
            return;
        }
        let mask = self.slots.len() - 1;
        let (mut i, bit) = self.hashed(a);
        self.filter |= bit;
        while let Some(s) = self.slots.get_mut(i) {
            if *s == 0 || (*s >> 8) as u32 == a {
                *s = (u64::from(a) << 8) | (*s & 0xff) | u64::from(class);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The classes of `addr` in this set (0: not in it).
    #[inline]
    pub fn of(&self, addr: Ipv4Addr) -> u8 {
        let a = u32::from(addr);
        let (mut i, bit) = self.hashed(a);
        if self.filter & bit == 0 {
            return 0;
        }
        let mask = self.slots.len() - 1;
        // At most half full: an empty slot ends every probe.
        while let Some(&s) = self.slots.get(i) {
            if s == 0 {
                break;
            }
            if (s >> 8) as u32 == a {
                return s as u8;
            }
            i = (i + 1) & mask;
        }
        0
    }
}

/// A set of IPv6 addresses reduced to 64 bits (a Bloom filter with one hash): "certainly
/// not in the set" in a multiply and a shift, before the IPv6 stage scans a list of 16-byte
/// addresses. Most packets' addresses are neither ours nor a VIP, and a list lookup per
/// question costs more than the rest of the checks together.
#[derive(Debug, Default, Clone, Copy)]
pub struct AddrFilter6(u64);

impl AddrFilter6 {
    pub fn new(addrs: impl IntoIterator<Item = u128>) -> AddrFilter6 {
        AddrFilter6(addrs.into_iter().fold(0, |f, a| f | AddrFilter6::bit(a)))
    }

    #[inline]
    fn bit(a: u128) -> u64 {
        let folded = (a as u64) ^ ((a >> 64) as u64);
        // Fibonacci hashing: the top 6 bits of the product pick the bit.
        1 << (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
    }

    /// False when `a` is certainly not in the set.
    #[inline]
    pub fn may_hold(self, a: u128) -> bool {
        self.0 & AddrFilter6::bit(a) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Any set answers as a map of its members' classes ORed (0 for others): the filter
        /// never hides a member. Addresses from two /24s, so that members and probes collide
        /// in slots and filter bits.
        #[test]
        fn a_set_answers_as_a_map_of_its_members(
            listed in proptest::collection::vec((0u32..512, 1u8..8), 0..40),
            probes in proptest::collection::vec(0u32..512, 0..64),
        ) {
            let addr = |i: u32| Ipv4Addr::from(0xc633_6400 + i);
            let mut want: HashMap<Ipv4Addr, u8> = HashMap::new();
            for &(i, class) in &listed {
                *want.entry(addr(i)).or_default() |= class;
            }
            let set = AddrSet::new(listed.iter().map(|&(i, class)| (addr(i), class)));
            for i in listed.iter().map(|&(i, _)| i).chain(probes) {
                let a = addr(i);
                prop_assert_eq!(set.of(a), want.get(&a).copied().unwrap_or(0), "{}", a);
            }
        }
    }

    #[test]
    fn the_ipv6_filter_holds_its_members_and_rules_out_most_others() {
        let members: Vec<u128> = (1..=4u128).map(|i| (0x2001_0db8_0100 << 80) | i).collect();
        let f = AddrFilter6::new(members.iter().copied());
        assert!(members.iter().all(|&a| f.may_hold(a)));
        assert!(!AddrFilter6::default().may_hold(members[0]));
        // Four members set at most four bits of 64: most other addresses are ruled out.
        let others = (0x1000..0x2000u128).map(|i| (0x2001_0db8_0100 << 80) | i);
        let passed = others.filter(|&a| f.may_hold(a)).count();
        assert!(passed < 4096 / 8, "{passed} of 4096 non-members passed");
    }

    #[test]
    fn members_answer_their_classes_and_others_nothing() {
        let a = Ipv4Addr::new(198, 51, 100, 1);
        let b = Ipv4Addr::new(192, 0, 2, 255);
        let set = AddrSet::new([
            (a, LOCAL),
            (b, MARTIAN),
            (a, VIP),
            (Ipv4Addr::UNSPECIFIED, LOCAL),
        ]);
        assert_eq!(set.of(a), LOCAL | VIP);
        assert_eq!(set.of(b), MARTIAN);
        assert_eq!(set.of(Ipv4Addr::new(198, 51, 100, 2)), 0);
        assert_eq!(set.of(Ipv4Addr::UNSPECIFIED), 0);
        assert_eq!(AddrSet::default().of(a), 0);
        // Many addresses of one subnet, as a director with many VIPs has.
        let many: Vec<_> = (1..=200u8)
            .map(|i| (Ipv4Addr::new(203, 0, 113, i), VIP))
            .collect();
        let set = AddrSet::new(many.clone());
        for (ip, _) in many {
            assert_eq!(set.of(ip), VIP, "{ip}");
        }
        assert_eq!(set.of(Ipv4Addr::new(203, 0, 113, 201)), 0);
    }
}
