//! What the IPv4 stage asks of a packet's two addresses (martian? one of ours? a VIP?), answered
//! for each by one probe of a small per-worker hash table instead of a scan of each list.
//!
//! The lists change only with a new service snapshot (the VIPs) or a new set of held addresses
//! (VRRP): a worker rebuilds its table then, in `begin_burst`, never per packet. The answers are
//! exactly those of [`Dataplane::is_martian`], [`OwnedAddrs::is_local`] and
//! [`Snapshot::is_vip`] (the tests compare them on every address of the lists and around them).

use super::owned::OwnedAddrs;
use super::Dataplane;
use crate::service::Snapshot;
use std::net::Ipv4Addr;

/// The address is never routed: unspecified, loopback, multicast, class E, or a subnet's
/// broadcast ([`Dataplane::is_martian`]).
pub(super) const MARTIAN: u8 = 1;
/// We hold it ([`OwnedAddrs::is_local`]).
pub(super) const LOCAL: u8 = 2;
/// A service's virtual address ([`Snapshot::is_vip`]).
pub(super) const VIP: u8 = 4;

/// Open addressing with linear probing over a power-of-two table at most half full; a slot is
/// `address << 8 | classes`, 0 when empty (0.0.0.0 is martian by its first octet, never stored).
#[derive(Debug)]
pub(super) struct AddrClasses {
    slots: Box<[u64]>,
    /// log2 of the slot count.
    bits: u32,
}

impl AddrClasses {
    /// The classes of the addresses `dp`'s subnets, `owned` and `snap` list.
    pub(super) fn new(dp: &Dataplane, owned: &OwnedAddrs, snap: &Snapshot) -> AddrClasses {
        let listed = dp
            .broadcasts()
            .iter()
            .map(|&a| (Ipv4Addr::from(a), MARTIAN))
            .chain(owned.flat().iter().map(|&a| (a, LOCAL)))
            .chain(snap.vips().iter().map(|&a| (a, VIP)));
        let n = dp.broadcasts().len() + owned.flat().len() + snap.vips().len();
        let bits = (2 * n).next_power_of_two().max(8).trailing_zeros();
        let mut t = AddrClasses {
            slots: vec![0; 1 << bits].into_boxed_slice(),
            bits,
        };
        for (addr, class) in listed {
            t.add(addr, class);
        }
        t
    }

    fn home(&self, a: u32) -> usize {
        // Fibonacci hashing: the top `bits` bits of the product.
        (u64::from(a).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - self.bits)) as usize
    }

    fn add(&mut self, addr: Ipv4Addr, class: u8) {
        let a = u32::from(addr);
        if a == 0 {
            return;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(a);
        while let Some(s) = self.slots.get_mut(i) {
            if *s == 0 || (*s >> 8) as u32 == a {
                *s = (u64::from(a) << 8) | (*s & 0xff) | u64::from(class);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The classes of `addr`: an OR of [`MARTIAN`], [`LOCAL`], [`VIP`].
    #[inline]
    pub(super) fn of(&self, addr: Ipv4Addr) -> u8 {
        let a = u32::from(addr);
        let top = a >> 24;
        let special = u8::from(top == 0 || top == 127 || top >= 224) * MARTIAN;
        let mask = self.slots.len() - 1;
        let mut i = self.home(a);
        // At most half full: an empty slot ends every probe.
        while let Some(&s) = self.slots.get(i) {
            if s == 0 {
                break;
            }
            if (s >> 8) as u32 == a {
                return special | s as u8;
            }
            i = (i + 1) & mask;
        }
        special
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceManager;
    use control::model::SchedulerKind;
    use control::proto::{Request, Response};
    use testkit::services::{service, tcp, udp};

    /// Every listed address, its neighbours and the special ranges' edges get the answers of
    /// the three list lookups.
    #[test]
    fn classes_match_the_list_lookups() {
        let dp = crate::pipeline::two_arm_for_tests([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 1]);
        let mut mgr = ServiceManager::new(dp.clone());
        for key in [
            tcp(Ipv4Addr::new(198, 51, 100, 1), 80),
            udp(Ipv4Addr::new(198, 51, 100, 7), 53),
            tcp(Ipv4Addr::new(203, 0, 113, 9), 443),
        ] {
            let r = mgr.handle(Request::AddService(service(key, SchedulerKind::Rr)));
            assert_eq!(r, Response::Ok);
        }
        let (snap, owned) = (dp.snapshot(), dp.owned_addrs());
        assert_eq!(snap.vips().len(), 3);
        let t = AddrClasses::new(&dp, &owned, &snap);
        let mut probes: Vec<u32> = vec![0, 1, 0x7f00_0001, 0xdfff_ffff, 0xe000_0000, u32::MAX];
        let listed = dp
            .broadcasts()
            .iter()
            .copied()
            .chain(owned.flat().iter().map(|&a| u32::from(a)))
            .chain(snap.vips().iter().map(|&a| u32::from(a)));
        for a in listed {
            probes.extend([a.wrapping_sub(1), a, a.wrapping_add(1)]);
        }
        assert!(probes.len() > 12, "the lists are not empty");
        for a in probes {
            let ip = Ipv4Addr::from(a);
            let want = (u8::from(dp.is_martian(ip)) * MARTIAN)
                | (u8::from(owned.is_local(ip)) * LOCAL)
                | (u8::from(snap.is_vip(ip)) * VIP);
            assert_eq!(t.of(ip), want, "{ip}");
        }
    }
}
