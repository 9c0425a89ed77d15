//! Least connection, as the kernel's `ip_vs_lc.c`: the available server with the least
//! `(active << 8) + inactive`; on a tie, the first in the list.

use super::least::least_by;
use super::{Dests, Flow, Load, Scheduler};

#[derive(Debug)]
pub struct LeastConnection;

impl Scheduler for LeastConnection {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        least_by(dests, Load::overhead, |doh, loh| doh < loh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{loaded, pick_among};

    #[test]
    fn least_overhead_wins_and_ties_go_to_the_first() {
        // A: 1 active + 0 inactive = 256; B: 0 + 300 = 300; C: 1 + 1 = 257.
        let (b, c) = (loaded(9, 0, 300), loaded(1, 1, 1));
        assert_eq!(
            pick_among(&LeastConnection, &[loaded(1, 1, 0), b, c]),
            Some(0)
        );
        // Weights do not matter (only 0 does).
        assert_eq!(
            pick_among(&LeastConnection, &[loaded(0, 1, 0), b, c]),
            Some(2)
        );
        // Ties: the first.
        let idle = [loaded(0, 0, 0), loaded(9, 0, 0), loaded(1, 0, 0)];
        assert_eq!(pick_among(&LeastConnection, &idle), Some(1));
    }

    #[test]
    fn overloaded_and_weight_zero_are_skipped() {
        let b = loaded(1, 0, 2).upper(2);
        assert_eq!(pick_among(&LeastConnection, &[loaded(1, 3, 0), b]), Some(0));
        assert_eq!(pick_among(&LeastConnection, &[loaded(0, 3, 0), b]), None);
    }
}
