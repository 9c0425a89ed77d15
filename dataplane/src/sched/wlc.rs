//! Weighted least connection, as the kernel's `ip_vs_wlc.c`: the available server with the
//! least `overhead / weight`, overhead being `(active << 8) + inactive`, compared without
//! division (`loh * w(dest) > doh * w(least)`); on a tie, the first in the list.

use super::least::least_weighted;
use super::{Dests, Flow, Load, Scheduler};

#[derive(Debug)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        least_weighted(dests, Load::overhead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{loaded, pick_among};

    #[test]
    fn least_overhead_per_weight() {
        // A: 2 active, w 1 -> 512; B: 3 active, w 2 -> 384; C: 5 active, w 4 -> 320.
        let (a, b) = (loaded(1, 2, 0), loaded(2, 3, 0));
        let wlc = WeightedLeastConnection;
        assert_eq!(pick_among(&wlc, &[a, b, loaded(4, 5, 0)]), Some(2));
        // C at weight 2 -> 640: B wins.
        assert_eq!(pick_among(&wlc, &[a, b, loaded(2, 5, 0)]), Some(1));
    }

    #[test]
    fn ties_go_to_the_first_and_idle_servers_fill_by_order() {
        // 0 * 5 > 0 * 1 is false: the first stays.
        let idle = [loaded(1, 0, 0), loaded(5, 0, 0)];
        assert_eq!(pick_among(&WeightedLeastConnection, &idle), Some(0));
    }

    #[test]
    fn inactive_counts_one_256th() {
        // A: 1 active (256), B: 255 inactive (255): B.
        let list = [loaded(1, 1, 0), loaded(1, 0, 255)];
        assert_eq!(pick_among(&WeightedLeastConnection, &list), Some(1));
    }

    #[test]
    fn weight_zero_and_overloaded_never_win() {
        let (a, c) = (loaded(0, 0, 0), loaded(1, 1, 0).upper(1));
        let wlc = WeightedLeastConnection;
        assert_eq!(pick_among(&wlc, &[a, loaded(1, 4, 0), c]), Some(1));
        assert_eq!(pick_among(&wlc, &[a, loaded(0, 4, 0), c]), None);
    }
}
