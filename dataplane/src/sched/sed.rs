//! Shortest expected delay, as the kernel's `ip_vs_sed.c`: the available server with the
//! least `(active + 1) / weight`, compared without division; inactive connections do not
//! count. On a tie, the first in the list.

use super::least::least_weighted;
use super::{Dests, Flow, Load, Scheduler};

#[derive(Debug)]
pub struct ShortestExpectedDelay;

/// The kernel's `ip_vs_sed_dest_overhead`: active + 1.
pub(super) fn sed_overhead(load: &Load) -> u64 {
    load.active.saturating_add(1)
}

impl Scheduler for ShortestExpectedDelay {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        least_weighted(dests, sed_overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ConnTable;
    use crate::sched::tests::{dest, flow, load, loaded, pick_among};
    use control::model::Timeouts;

    #[test]
    fn expected_delay_per_weight() {
        // A: (1+1)/1 = 2; B: (2+1)/2 = 1.5; C: (6+1)/3 = 2.33: B.
        let list = [loaded(1, 1, 0), loaded(2, 2, 100), loaded(3, 6, 0)];
        assert_eq!(pick_among(&ShortestExpectedDelay, &list), Some(1));
    }

    #[test]
    fn idle_servers_go_by_weight_unlike_wlc() {
        // All idle: (0+1)/w is least for the heaviest; wlc would keep the first.
        let idle = [loaded(1, 0, 0), loaded(3, 0, 0), loaded(2, 0, 0)];
        assert_eq!(pick_among(&ShortestExpectedDelay, &idle), Some(1));
    }

    #[test]
    fn sequence_as_connections_accumulate() {
        // Weights 2 and 1, every pick becomes an active connection:
        // (1/2 vs 1/1) A, (2/2 vs 1) A (tie: first), (3/2 vs 1) B, (3/2 vs 2/1) A, ...
        let table = ConnTable::new(1024, 8, &Timeouts::default());
        let list = [dest(2, 2, 0), dest(3, 1, 1)];
        let mut got = String::new();
        for k in 0..6 {
            let dests = Dests::new(&list, &table);
            let i = ShortestExpectedDelay.pick(&dests, &flow(k)).unwrap();
            got.push(char::from(b'A' + i as u8));
            load(&table, i as u32, 1, 0);
        }
        assert_eq!(got, "AABAAB");
    }

    #[test]
    fn weight_zero_and_overloaded_never_win() {
        let list = [loaded(0, 0, 0), loaded(1, 0, 0), loaded(5, 1, 0).upper(1)];
        assert_eq!(pick_among(&ShortestExpectedDelay, &list), Some(1));
    }
}
