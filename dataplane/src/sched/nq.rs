//! Never queue, as the kernel's `ip_vs_nq.c`: the first available server with no active
//! connection; when every one is busy, the least `(active + 1) / weight` (as sed).

use super::least::least_weighted;
use super::sed::sed_overhead;
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
mod tests {
    use super::*;
    use crate::sched::tests::{loaded, pick_among};

    #[test]
    fn the_first_idle_server_whatever_its_weight() {
        // A busy (w 100), B idle but with inactive ones (w 1), C idle (w 50): B.
        let list = [loaded(100, 1, 0), loaded(1, 0, 40), loaded(50, 0, 0)];
        assert_eq!(pick_among(&NeverQueue, &list), Some(1));
    }

    #[test]
    fn all_busy_falls_back_to_sed() {
        // A: (3+1)/1 = 4; B: (5+1)/3 = 2; C: (1+1)/1 = 2 (tie with B: the first, B).
        let list = [loaded(1, 3, 0), loaded(3, 5, 0), loaded(1, 1, 0)];
        assert_eq!(pick_among(&NeverQueue, &list), Some(1));
    }

    #[test]
    fn idle_but_weight_zero_or_overloaded_is_not_taken() {
        let (a, b) = (loaded(0, 0, 0), loaded(1, 0, 1).upper(1));
        assert_eq!(pick_among(&NeverQueue, &[a, b, loaded(1, 2, 0)]), Some(2));
        assert_eq!(pick_among(&NeverQueue, &[a, b, loaded(0, 2, 0)]), None);
    }
}
