//! Maglev hashing, as the kernel's `ip_vs_mh.c` (Eisenbud et al., NSDI 2016, section 3.4),
//! with a lookup table of [`TABLE_SIZE`] = 65537 slots (a prime; the kernel's default is 4093).
//!
//! # The table (built with the snapshot, on the control thread)
//!
//! Each real server gets a permutation of the slots from two hashes of its address and port:
//! `offset = H(K1, rip, rport) % M`, `skip = H(K2, rip, rport) % (M - 1) + 1`, visiting
//! `offset, offset + skip, offset + 2 skip, ... (mod M)`. Taking turns in the order of their
//! addresses and ports, each server claims its next free slot until the table is full; a
//! server claims `turns` slots per turn, its weight divided by the gcd of all weights and
//! shifted right so that the largest is below 2^[`TURN_BITS`] (the kernel's
//! `ip_vs_mh_permutate`/`ip_vs_mh_populate`). The weight used is the server's *last* weight
//! above 0 ([`Dest::last_weight`]), so a server set to weight 0 keeps its slots: its clients
//! get nothing (the kernel's "quiesced" behaviour) unless `mh-fallback` is set, and come back
//! to it when its weight returns. A server added with weight 0 gets no slots.
//!
//! # The pick (on a worker)
//!
//! `slot = H(K1, client address, client port if mh-port else 0) % M`; the slot's server if it
//! is available, else nothing, or with `mh-fallback` the kernel's probe: for offset
//! `0, 1, ...`, the slot `H(K1, client, port, (offset + slot) % M) % M`, until an available
//! server (or an empty table) is met.
//!
//! # The hash (rvs's choice, stable across versions and directors)
//!
//! The kernel hashes with hsiphash and fixed keys; rvs uses
//! `H(seed, addr, port, offset) = fmix64(fmix64(seed ^ (addr << 16 | port)) ^ offset)`, with
//! `fmix64` MurmurHash3's 64-bit finaliser, `addr` the IPv4 address as a host-order u32,
//! `K1 = 2654435761` and `K2 = 2654446892` (the kernel's two hash keys). It depends on nothing
//! but its inputs, and the servers take their turns in address order (the kernel uses its list
//! order, which follows the order of the `ipvsadm -a` commands), so the same set of real
//! servers (addresses, ports and weights) gives the same table on every director, of any rvs
//! build, whatever order they were added in: several directors behind ECMP send a client to
//! the same real server whichever of them the router picks, and a change of one server moves
//! only about 1/N of the clients (see `docs/schedulers.md`).

use super::fold;
use super::{fmix64, gcd, Dests, Flow, Scheduler, NO_DEST};
use crate::service::dest::Dest;
use std::net::IpAddr;

/// Slots of the lookup table (a prime).
pub const TABLE_SIZE: usize = 65537;

/// Per turn a server claims at most 2^TURN_BITS slots: the kernel's `IP_VS_MH_TAB_BITS`,
/// scaled to the table size (the kernel uses 6 bits for 4093 slots; 8 here).
pub const TURN_BITS: u32 = 8;

/// The first hash key (offsets and lookups).
pub const K1: u64 = 2_654_435_761;
/// The second hash key (skips).
pub const K2: u64 = 2_654_446_892;

/// The Maglev hash; see the module documentation.
#[inline]
pub fn hash(seed: u64, addr: impl Into<IpAddr>, port: u16, offset: u32) -> u64 {
    // IPv6: the address folded to 32 bits as the kernel's ip_vs_mh_hashkey does.
    let key = (u64::from(fold(addr.into())) << 16) | u64::from(port);
    fmix64(fmix64(seed ^ key) ^ u64::from(offset))
}

#[inline]
fn slot_of(h: u64) -> usize {
    (h % TABLE_SIZE as u64) as usize
}

/// Builds the lookup table of `dests` (real-server indices, [`NO_DEST`] everywhere when no
/// server has a last weight above 0).
pub fn populate(dests: &[Dest]) -> Box<[u16]> {
    let m = TABLE_SIZE;
    let mut table = vec![NO_DEST; m].into_boxed_slice();
    let g = dests
        .iter()
        .map(|d| d.last_weight)
        .filter(|w| *w > 0)
        .fold(0, gcd);
    if g == 0 {
        return table;
    }
    // ip_vs_mh_shift_weight
    let mw = dests.iter().map(|d| d.last_weight).max().unwrap_or(0) / g;
    let rshift = (u32::BITS - mw.leading_zeros()).saturating_sub(TURN_BITS);
    // ip_vs_mh_permutate: (index, next position, skip, turns) per server, taking turns in
    // address order rather than list order (see the module documentation).
    let mut order: Vec<usize> = (0..dests.len()).collect();
    order.sort_by_key(|&i| dests.get(i).map(|d| (d.spec.addr, d.spec.port)));
    let mut setup: Vec<(usize, usize, usize, u32)> = order
        .iter()
        .filter_map(|&i| Some((i, dests.get(i)?)))
        .map(|(i, d)| {
            let (a, p) = (d.spec.addr, d.spec.port);
            let offset = slot_of(hash(K1, a, p, 0));
            let skip = (hash(K2, a, p, 0) % (m as u64 - 1)) as usize + 1;
            let lw = d.last_weight;
            let turns = match (lw / g) >> rshift {
                0 => u32::from(lw != 0),
                t => t,
            };
            (i, offset, skip, turns)
        })
        .collect();
    // ip_vs_mh_populate
    let mut taken = vec![false; m];
    let mut n = 0usize;
    while n < m {
        for (i, perm, skip, turns) in setup.iter_mut() {
            for _ in 0..*turns {
                while taken.get(*perm).copied().unwrap_or(false) {
                    *perm += *skip;
                    if *perm >= m {
                        *perm -= m;
                    }
                }
                if let (Some(t), Some(s)) = (taken.get_mut(*perm), table.get_mut(*perm)) {
                    *t = true;
                    *s = *i as u16;
                }
                n += 1;
                if n == m {
                    return table;
                }
            }
        }
    }
    table
}

#[derive(Debug)]
pub struct Maglev {
    table: Box<[u16]>,
    port: bool,
    fallback: bool,
}

impl Maglev {
    pub fn new(dests: &[Dest], port: bool, fallback: bool) -> Maglev {
        Maglev {
            table: populate(dests),
            port,
            fallback,
        }
    }

    /// The lookup table (real-server indices; [`NO_DEST`] when empty).
    pub fn table(&self) -> &[u16] {
        &self.table
    }

    fn at(&self, slot: usize) -> Option<usize> {
        match self.table.get(slot) {
            Some(&d) if d != NO_DEST => Some(usize::from(d)),
            _ => None,
        }
    }
}

impl Scheduler for Maglev {
    fn pick(&self, dests: &Dests<'_>, flow: &Flow) -> Option<usize> {
        let port = if self.port { flow.cport } else { 0 };
        let ihash = slot_of(hash(K1, flow.client, port, 0));
        let d = self.at(ihash)?;
        if dests.available(d) {
            return Some(d);
        }
        // Probing ends at an available server; with none at all it would walk the whole
        // table to the same answer, so check that first.
        if !self.fallback || !(0..dests.len()).any(|i| dests.available(i)) {
            return None;
        }
        for offset in 0..TABLE_SIZE {
            let roffset = ((offset + ihash) % TABLE_SIZE) as u32;
            let d = self.at(slot_of(hash(K1, flow.client, port, roffset)))?;
            if dests.available(d) {
                return Some(d);
            }
        }
        None
    }

    /// The pick itself: a function of the flow and the servers' availability alone.
    fn predict(&self, dests: &Dests<'_>, flow: &Flow, _ahead: usize) -> Option<usize> {
        self.pick(dests, flow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ConnTable;
    use crate::sched::tests::{dest, load};
    use control::model::Timeouts;
    use std::net::Ipv4Addr;

    fn servers(n: usize) -> Vec<Dest> {
        (0..n).map(|i| dest(2 + i as u8, 1, i as u32)).collect()
    }

    fn counts(table: &[u16], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &d in table {
            c[usize::from(d)] += 1;
        }
        c
    }

    fn client(k: u32) -> Flow {
        Flow {
            client: Ipv4Addr::from(0xc633_6400 + k).into(),
            cport: (k % 60000) as u16 + 1024,
            vip: Ipv4Addr::new(198, 51, 100, 1).into(),
            vport: 80,
        }
    }

    #[test]
    fn hash_is_pinned() {
        // The documented hash: any change here changes every director's table.
        assert_eq!(
            hash(K1, Ipv4Addr::new(192, 0, 2, 2), 80, 0),
            fmix64(fmix64(K1 ^ ((0xc000_0202u64 << 16) | 80)))
        );
        assert_ne!(
            hash(K1, Ipv4Addr::new(192, 0, 2, 2), 80, 0),
            hash(K2, Ipv4Addr::new(192, 0, 2, 2), 80, 0)
        );
    }

    #[test]
    fn table_is_full_and_even_for_equal_weights() {
        for n in [1usize, 2, 3, 7, 16] {
            let t = populate(&servers(n));
            assert_eq!(t.len(), TABLE_SIZE);
            let c = counts(&t, n);
            let fair = TABLE_SIZE / n;
            for x in &c {
                // Maglev's guarantee: within one slot of each other per turn round.
                assert!(x.abs_diff(fair) <= 1, "n {n}: {c:?}");
            }
        }
    }

    #[test]
    fn weights_are_honoured_via_gcd_reduced_turns() {
        let mut list = servers(3);
        list[0].last_weight = 300;
        list[1].last_weight = 200;
        list[2].last_weight = 100;
        let c = counts(&populate(&list), 3);
        // 3:2:1 of 65537, within a turn round.
        for (x, share) in c.iter().zip([3.0, 2.0, 1.0]) {
            let want = TABLE_SIZE as f64 * share / 6.0;
            assert!((*x as f64 - want).abs() <= 6.0, "{c:?}");
        }
        // Huge weights are shifted down to 8 bits, keeping the ratio.
        list[0].last_weight = 65535;
        list[1].last_weight = 21844; // gcd 1: turns 255 and 85 after the shift
        list[2].last_weight = 0;
        let c = counts(&populate(&list[..2]), 2);
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((ratio - 3.0).abs() < 0.05, "{c:?}");
    }

    #[test]
    fn same_servers_same_table_regardless_of_slots_and_order() {
        let a = servers(5);
        let mut b = servers(5);
        for (i, d) in b.iter_mut().enumerate() {
            d.slot = 100 + i as u32;
        }
        assert_eq!(populate(&a), populate(&b));
        // Another order of the same servers: the same server in every slot.
        let mut c = servers(5);
        c.reverse();
        let (ta, tc) = (populate(&a), populate(&c));
        for (x, y) in ta.iter().zip(tc.iter()) {
            assert_eq!(a[usize::from(*x)].spec.addr, c[usize::from(*y)].spec.addr);
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [3usize, 5, 8] {
            let all = servers(n);
            let before = populate(&all);
            let after = populate(&all[..n - 1]);
            let moved = before
                .iter()
                .zip(after.iter())
                .filter(|(a, b)| a != b)
                .count();
            let frac = moved as f64 / TABLE_SIZE as f64;
            // The removed server's 1/n must move; Maglev moves a little more.
            assert!(frac >= 1.0 / n as f64 - 0.001, "n {n}: {frac}");
            assert!(frac < 1.0 / n as f64 * 1.5, "n {n}: {frac}");
        }
    }

    #[test]
    fn lookup_uses_the_client_address_and_mh_port() {
        let table = ConnTable::new(8, 64, &Timeouts::default());
        let list = servers(4);
        let dests = Dests::new(&list, &table);
        let plain = Maglev::new(&list, false, false);
        let with_port = Maglev::new(&list, true, false);
        let mut differs = 0;
        for k in 0..500 {
            let f = client(k);
            let want = usize::from(plain.table()[slot_of(hash(K1, f.client, 0, 0))]);
            assert_eq!(plain.pick(&dests, &f), Some(want));
            let mut g = f;
            g.cport = g.cport.wrapping_add(1);
            assert_eq!(plain.pick(&dests, &g), Some(want), "port ignored");
            let p = with_port.pick(&dests, &f).unwrap();
            assert_eq!(
                p,
                usize::from(with_port.table()[slot_of(hash(K1, f.client, f.cport, 0))])
            );
            differs += usize::from(p != want);
        }
        assert!(differs > 100);
    }

    #[test]
    fn weight_zero_keeps_its_slots_and_gets_nothing_unless_fallback() {
        let table = ConnTable::new(8, 64, &Timeouts::default());
        let mut list = servers(3);
        let before = populate(&list);
        list[1].spec.weight = 0; // quiesced: last_weight stays 1
        let plain = Maglev::new(&list, false, false);
        let fb = Maglev::new(&list, false, true);
        assert_eq!(plain.table(), &before[..], "same table: slots kept");
        let dests = Dests::new(&list, &table);
        let (mut none, mut moved) = (0, 0);
        for k in 0..3000 {
            let f = client(k);
            let home = usize::from(before[slot_of(hash(K1, f.client, 0, 0))]);
            let got = plain.pick(&dests, &f);
            let got_fb = fb.pick(&dests, &f).unwrap();
            if home == 1 {
                assert_eq!(got, None);
                assert_ne!(got_fb, 1);
                none += 1;
            } else {
                assert_eq!(got, Some(home));
                assert_eq!(got_fb, home, "other clients stay");
            }
            moved += usize::from(got_fb != home);
        }
        assert!(none > 500 && moved == none, "{none} {moved}");
        // Added with weight 0: no slots at all.
        let mut fresh = servers(3);
        fresh[2].spec.weight = 0;
        fresh[2].last_weight = 0;
        let c = counts(&populate(&fresh), 3);
        assert_eq!(c[2], 0);
    }

    #[test]
    fn overloaded_home_falls_back_and_nothing_available_is_none() {
        let table = ConnTable::new(64, 64, &Timeouts::default());
        let mut list = servers(2);
        list[0].spec.upper_threshold = 1;
        load(&table, 0, 1, 0);
        let fb = Maglev::new(&list, false, true);
        let dests = Dests::new(&list, &table);
        for k in 0..200 {
            assert_eq!(fb.pick(&dests, &client(k)), Some(1));
        }
        list[1].spec.weight = 0;
        let fb = Maglev::new(&list, false, true);
        let dests = Dests::new(&list, &table);
        assert_eq!(fb.pick(&dests, &client(1)), None);
        assert_eq!(Maglev::new(&[], true, true).pick(&dests, &client(1)), None);
    }
}
