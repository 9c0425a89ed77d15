//! Weighted least connection, as the kernel's `ip_vs_wlc.c`: the available server with the
//! least `overhead / weight`, overhead being `(active << 8) + inactive`, compared without
//! division (`loh * w(dest) > doh * w(least)`); on a tie, the first in the list.

use super::{Dests, Flow, Load, Scheduler};

#[derive(Debug)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        least_weighted(dests, |l| l.overhead())
    }
}

/// The kernel's two-stage wlc/sed loop: the first available server, then any later one whose
/// `overhead / weight` is strictly smaller, compared as `loh * w(dest) > doh * w(least)`
/// (the kernel does not skip weight-0 servers in the second stage, but they can never be
/// smaller, so skipping them changes nothing).
pub(super) fn least_weighted(dests: &Dests<'_>, overhead: impl Fn(&Load) -> u64) -> Option<usize> {
    let mut least: Option<(usize, u64, u32)> = None;
    for i in 0..dests.len() {
        let Some(load) = dests.load(i) else {
            continue;
        };
        let doh = overhead(&load);
        let better = least.is_none_or(|(_, loh, lw)| {
            u128::from(loh) * u128::from(load.weight) > u128::from(doh) * u128::from(lw)
        });
        if better {
            least = Some((i, doh, load.weight));
        }
    }
    least.map(|(i, _, _)| i)
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
    use crate::conntrack::ConnTable;
    use crate::sched::tests::{dest, flow, load};
    use control::model::Timeouts;

    #[test]
    fn least_overhead_per_weight() {
        let table = ConnTable::new(1024, 8, &Timeouts::default());
        // A: 2 active, w 1 -> 512; B: 3 active, w 2 -> 384; C: 5 active, w 4 -> 320.
        let list = [dest(2, 1, 0), dest(3, 2, 1), dest(4, 4, 2)];
        load(&table, 0, 2, 0);
        load(&table, 1, 3, 0);
        load(&table, 2, 5, 0);
        let dests = Dests::new(&list, &table);
        assert_eq!(WeightedLeastConnection.pick(&dests, &flow(0)), Some(2));
        // C at weight 2 -> 640: B wins.
        let list = [dest(2, 1, 0), dest(3, 2, 1), dest(4, 2, 2)];
        let dests = Dests::new(&list, &table);
        assert_eq!(WeightedLeastConnection.pick(&dests, &flow(0)), Some(1));
    }

    #[test]
    fn ties_go_to_the_first_and_idle_servers_fill_by_order() {
        let empty = ConnTable::new(8, 8, &Timeouts::default());
        let list = [dest(2, 1, 0), dest(3, 5, 1)];
        let dests = Dests::new(&list, &empty);
        // 0 * 5 > 0 * 1 is false: the first stays.
        assert_eq!(WeightedLeastConnection.pick(&dests, &flow(0)), Some(0));
    }

    #[test]
    fn inactive_counts_one_256th() {
        let table = ConnTable::new(1024, 8, &Timeouts::default());
        // A: 1 active (256), B: 255 inactive (255): B.
        let list = [dest(2, 1, 0), dest(3, 1, 1)];
        load(&table, 0, 1, 0);
        load(&table, 1, 0, 255);
        let dests = Dests::new(&list, &table);
        assert_eq!(WeightedLeastConnection.pick(&dests, &flow(0)), Some(1));
    }

    #[test]
    fn weight_zero_and_overloaded_never_win() {
        let table = ConnTable::new(64, 8, &Timeouts::default());
        let mut list = [dest(2, 0, 0), dest(3, 1, 1), dest(4, 1, 2)];
        list[2].spec.upper_threshold = 1;
        load(&table, 1, 4, 0);
        load(&table, 2, 1, 0);
        let dests = Dests::new(&list, &table);
        assert_eq!(WeightedLeastConnection.pick(&dests, &flow(0)), Some(1));
        list[1].spec.weight = 0;
        let dests = Dests::new(&list, &table);
        assert_eq!(WeightedLeastConnection.pick(&dests, &flow(0)), None);
    }
}
