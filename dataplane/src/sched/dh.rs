//! Destination hashing, as the kernel's `ip_vs_dh.c`: as sh, but the packet's destination
//! address picks the bucket. In VS/NAT that is the VIP, so a service always gets one real
//! server (the kernel behaves the same; dh is meant for firewall-mark cache clusters, where
//! the destination varies). No flags; an unavailable target gets nothing.

use super::sh::lookup;
use super::{weighted_buckets, Dests, Flow, Scheduler, HASH_BUCKETS};
use crate::service::dest::Dest;

#[derive(Debug)]
pub struct DestinationHash {
    buckets: [u16; HASH_BUCKETS],
}

impl DestinationHash {
    pub fn new(dests: &[Dest]) -> DestinationHash {
        DestinationHash {
            buckets: weighted_buckets(dests),
        }
    }
}

impl Scheduler for DestinationHash {
    fn pick(&self, dests: &Dests<'_>, flow: &Flow) -> Option<usize> {
        lookup(&self.buckets, dests, flow.vip, 0, false)
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
    use crate::sched::bucket_of;
    use crate::sched::tests::dest;
    use control::model::Timeouts;
    use std::net::Ipv4Addr;

    fn to(vip: Ipv4Addr, client_last: u8) -> Flow {
        Flow {
            client: Ipv4Addr::new(198, 51, 100, client_last).into(),
            cport: 1000 + u16::from(client_last),
            vip: vip.into(),
            vport: 80,
        }
    }

    #[test]
    fn the_destination_picks_the_bucket() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let list = [dest(2, 2, 0), dest(3, 1, 1)];
        let dh = DestinationHash::new(&list);
        let dests = Dests::new(&list, &table);
        for last in 1..=254u8 {
            let vip = Ipv4Addr::new(198, 51, 100, last);
            let want = [0, 0, 1][bucket_of(vip, 0, 0) % 3];
            // Every client of one destination gets the same server.
            for c in [10, 11, 200] {
                assert_eq!(dh.pick(&dests, &to(vip, c)), Some(want), "{vip}");
            }
        }
    }

    #[test]
    fn unavailable_target_gives_nothing() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let list = [dest(2, 0, 0), dest(3, 1, 1)];
        let dh = DestinationHash::new(&list);
        let dests = Dests::new(&list, &table);
        for last in 1..=254u8 {
            let vip = Ipv4Addr::new(198, 51, 100, last);
            let got = dh.pick(&dests, &to(vip, 10));
            if bucket_of(vip, 0, 0).is_multiple_of(2) {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(1));
            }
        }
    }
}
