//! Source hashing, as the kernel's `ip_vs_sh.c`: the client address (plus its port with
//! `sh-port`) picks one of 256 buckets, [`bucket_of`]; the buckets are filled by the real
//! servers in order, each taking as many consecutive buckets as its weight
//! ([`weighted_buckets`](super::weighted_buckets), built with the snapshot). A client whose
//! bucket's server has weight 0 or is overloaded gets nothing, unless `sh-fallback`: then the
//! buckets after it are probed (the kernel's `ip_vs_sh_get_fallback`) for an available one.

use super::{bucket_of, weighted_buckets, Dests, Flow, Scheduler, HASH_BUCKETS, NO_DEST};
use crate::service::dest::Dest;
use std::net::IpAddr;

#[derive(Debug)]
pub struct SourceHash {
    buckets: [u16; HASH_BUCKETS],
    port: bool,
    fallback: bool,
}

impl SourceHash {
    pub fn new(dests: &[Dest], port: bool, fallback: bool) -> SourceHash {
        SourceHash {
            buckets: weighted_buckets(dests),
            port,
            fallback,
        }
    }
}

/// Bucket lookup with the kernel's sh/mh fallback rule, shared by sh and dh.
pub(super) fn lookup(
    buckets: &[u16; HASH_BUCKETS],
    dests: &Dests<'_>,
    addr: IpAddr,
    port: u16,
    fallback: bool,
) -> Option<usize> {
    let at = |b: usize| match buckets.get(b) {
        Some(&d) if d != NO_DEST => Some(usize::from(d)),
        _ => None,
    };
    let ihash = bucket_of(addr, port, 0);
    let d = at(ihash)?;
    if dests.available(d) {
        return Some(d);
    }
    if !fallback {
        return None;
    }
    for offset in 0..HASH_BUCKETS {
        let roffset = (offset + ihash) % HASH_BUCKETS;
        let d = at(bucket_of(addr, port, roffset as u32))?;
        if dests.available(d) {
            return Some(d);
        }
    }
    None
}

impl Scheduler for SourceHash {
    fn pick(&self, dests: &Dests<'_>, flow: &Flow) -> Option<usize> {
        let port = if self.port { flow.cport } else { 0 };
        lookup(&self.buckets, dests, flow.client, port, self.fallback)
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

    fn from(client: Ipv4Addr, cport: u16) -> Flow {
        Flow {
            client: client.into(),
            cport,
            vip: Ipv4Addr::new(198, 51, 100, 1).into(),
            vport: 80,
        }
    }

    #[test]
    fn bucket_mapping_follows_the_formula_and_the_weights() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let list = [dest(2, 1, 0), dest(3, 2, 1), dest(4, 1, 2)];
        let sh = SourceHash::new(&list, false, false);
        let dests = Dests::new(&list, &table);
        // Buckets: A B B C A B B C ...: bucket b belongs to [A, B, B, C][b % 4].
        for last in 0..=255u8 {
            let client = Ipv4Addr::new(198, 51, 100, last);
            let b = (u32::from(client).wrapping_mul(2_654_435_761) & 255) as usize;
            let want = [0, 1, 1, 2][b % 4];
            assert_eq!(sh.pick(&dests, &from(client, 1000)), Some(want), "{client}");
            // Without sh-port the client port does not matter.
            assert_eq!(sh.pick(&dests, &from(client, 2000)), Some(want));
        }
    }

    #[test]
    fn sh_port_hashes_the_port_too() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let list = [dest(2, 1, 0), dest(3, 1, 1)];
        let sh = SourceHash::new(&list, true, false);
        let dests = Dests::new(&list, &table);
        let client = Ipv4Addr::new(198, 51, 100, 10);
        let mut seen = [0; 2];
        for port in 1000..1100u16 {
            let b = bucket_of(client, port, 0);
            let i = sh.pick(&dests, &from(client, port)).unwrap();
            assert_eq!(i, b % 2);
            seen[i] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn unavailable_target_gives_nothing_unless_fallback() {
        let table = ConnTable::new(64, 8, &Timeouts::default());
        let mut list = [dest(2, 1, 0), dest(3, 0, 1), dest(4, 1, 2)];
        list[2].spec.upper_threshold = 1;
        load(&table, 2, 1, 0);
        let plain = SourceHash::new(&list, false, false);
        let fb = SourceHash::new(&list, false, true);
        let dests = Dests::new(&list, &table);
        let mut fell_back = 0;
        for last in 0..=255u8 {
            let client = Ipv4Addr::new(198, 51, 100, last);
            let b = bucket_of(client, 0, 0);
            let target = b % 3;
            let got = plain.pick(&dests, &from(client, 1));
            let got_fb = fb.pick(&dests, &from(client, 1));
            if target == 0 {
                assert_eq!(got, Some(0));
                assert_eq!(got_fb, Some(0));
            } else {
                assert_eq!(got, None, "B has weight 0, C is overloaded");
                assert_eq!(got_fb, Some(0), "only A is available");
                fell_back += 1;
            }
        }
        assert!(fell_back > 0);
        // Nothing available at all: None with fallback too.
        list[0].spec.weight = 0;
        let fb = SourceHash::new(&list, false, true);
        let dests = Dests::new(&list, &table);
        assert_eq!(
            fb.pick(&dests, &from(Ipv4Addr::new(198, 51, 100, 7), 1)),
            None
        );
    }

    #[test]
    fn no_servers_no_pick() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let sh = SourceHash::new(&[], true, true);
        let dests = Dests::new(&[], &table);
        assert_eq!(
            sh.pick(&dests, &from(Ipv4Addr::new(198, 51, 100, 7), 1)),
            None
        );
    }
}
