//! Never queue, as the kernel's `ip_vs_nq.c`: the first available server with no active
//! connection; when every one is busy, the least `(active + 1) / weight` (as sed).

use super::sed::sed_overhead;
use super::wlc::least_weighted;
use super::{Dests, Flow, Scheduler};

#[derive(Debug)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        // The kernel finds the idle server in the same pass as the sed minimum; two passes
        // pick the same server and keep one copy of the weighted comparison.
        (0..dests.len())
            .find(|&i| dests.load(i).is_some_and(|l| l.active == 0))
            .or_else(|| least_weighted(dests, sed_overhead))
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
    fn the_first_idle_server_whatever_its_weight() {
        let table = ConnTable::new(1024, 8, &Timeouts::default());
        // A busy (w 100), B idle but with inactive ones (w 1), C idle (w 50): B.
        let list = [dest(2, 100, 0), dest(3, 1, 1), dest(4, 50, 2)];
        load(&table, 0, 1, 0);
        load(&table, 1, 0, 40);
        let dests = Dests::new(&list, &table);
        assert_eq!(NeverQueue.pick(&dests, &flow(0)), Some(1));
    }

    #[test]
    fn all_busy_falls_back_to_sed() {
        let table = ConnTable::new(1024, 8, &Timeouts::default());
        // A: (3+1)/1 = 4; B: (5+1)/3 = 2; C: (1+1)/1 = 2 (tie with B: the first, B).
        let list = [dest(2, 1, 0), dest(3, 3, 1), dest(4, 1, 2)];
        load(&table, 0, 3, 0);
        load(&table, 1, 5, 0);
        load(&table, 2, 1, 0);
        let dests = Dests::new(&list, &table);
        assert_eq!(NeverQueue.pick(&dests, &flow(0)), Some(1));
    }

    #[test]
    fn idle_but_weight_zero_or_overloaded_is_not_taken() {
        let table = ConnTable::new(64, 8, &Timeouts::default());
        let mut list = [dest(2, 0, 0), dest(3, 1, 1), dest(4, 1, 2)];
        list[1].spec.upper_threshold = 1;
        load(&table, 1, 0, 1);
        load(&table, 2, 2, 0);
        let dests = Dests::new(&list, &table);
        assert_eq!(NeverQueue.pick(&dests, &flow(0)), Some(2));
        list[2].spec.weight = 0;
        let dests = Dests::new(&list, &table);
        assert_eq!(NeverQueue.pick(&dests, &flow(0)), None);
    }
}
