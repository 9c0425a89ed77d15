//! Least connection, as the kernel's `ip_vs_lc.c`: the available server with the least
//! `(active << 8) + inactive`; on a tie, the first in the list.

use super::{Dests, Flow, Scheduler};

#[derive(Debug)]
pub struct LeastConnection;

impl Scheduler for LeastConnection {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        let mut least: Option<(usize, u64)> = None;
        for i in 0..dests.len() {
            let Some(load) = dests.load(i) else {
                continue;
            };
            let doh = load.overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
                least = Some((i, doh));
            }
        }
        least.map(|(i, _)| i)
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
    use crate::conntrack::ConnTable;
    use crate::sched::tests::{dest, flow, load};
    use control::model::Timeouts;

    #[test]
    fn least_overhead_wins_and_ties_go_to_the_first() {
        let table = ConnTable::new(1024, 8, &Timeouts::default());
        let list = [dest(2, 1, 0), dest(3, 9, 1), dest(4, 1, 2)];
        // A: 1 active + 0 inactive = 256; B: 0 + 300 = 300; C: 1 + 1 = 257.
        load(&table, 0, 1, 0);
        load(&table, 1, 0, 300);
        load(&table, 2, 1, 1);
        let dests = Dests::new(&list, &table);
        assert_eq!(LeastConnection.pick(&dests, &flow(0)), Some(0));
        // Weights do not matter (only 0 does).
        let list = [dest(2, 0, 0), dest(3, 9, 1), dest(4, 1, 2)];
        let dests = Dests::new(&list, &table);
        assert_eq!(LeastConnection.pick(&dests, &flow(0)), Some(2));
        // Ties: the first.
        let empty = ConnTable::new(8, 8, &Timeouts::default());
        let dests = Dests::new(&list, &empty);
        assert_eq!(LeastConnection.pick(&dests, &flow(0)), Some(1));
    }

    #[test]
    fn overloaded_and_weight_zero_are_skipped() {
        let table = ConnTable::new(64, 8, &Timeouts::default());
        let mut list = [dest(2, 1, 0), dest(3, 1, 1)];
        list[1].spec.upper_threshold = 2;
        load(&table, 0, 3, 0);
        load(&table, 1, 0, 2);
        let dests = Dests::new(&list, &table);
        assert_eq!(LeastConnection.pick(&dests, &flow(0)), Some(0));
        list[0].spec.weight = 0;
        let dests = Dests::new(&list, &table);
        assert_eq!(LeastConnection.pick(&dests, &flow(0)), None);
    }
}
