//! Round robin: the next available server after the last one chosen.

use super::{Dests, Flow, SchedState, Scheduler};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

#[derive(Debug)]
pub struct RoundRobin {
    /// `cursor` holds the index after the last server chosen (0 at first).
    state: Arc<SchedState>,
}

impl RoundRobin {
    pub fn new(state: Arc<SchedState>) -> RoundRobin {
        RoundRobin { state }
    }
}

impl Scheduler for RoundRobin {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        // With nobody available the cursor stays, and no swap is tried.
        self.state.advance(|seen| {
            let start = (seen % n as u64) as usize;
            match (0..n)
                .map(|k| (start + k) % n)
                .find(|&i| dests.available(i))
            {
                Some(i) => (Some(i), i as u64 + 1),
                None => (None, seen),
            }
        })
    }

    /// The server `ahead` places after the cursor: right while the servers from the cursor on
    /// are available and no other worker picks in between; `None` where that one is not
    /// available (no walk).
    fn predict(&self, dests: &Dests<'_>, _flow: &Flow, ahead: usize) -> Option<usize> {
        let n = dests.len() as u64;
        let at = self.state.cursor.load(Relaxed).checked_add(ahead as u64)? % n.max(1);
        let i = usize::try_from(at).ok()?;
        (i < dests.len() && dests.available(i)).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ConnTable;
    use crate::sched::tests::{dest, flow};
    use control::model::Timeouts;

    fn picks(list: &[crate::service::Dest], n: usize) -> Vec<usize> {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let rr = RoundRobin::new(Arc::default());
        let dests = Dests::new(list, &table);
        (0..n)
            .map(|k| rr.pick(&dests, &flow(k as u16)).unwrap())
            .collect()
    }

    #[test]
    fn two_and_three_servers_alternate_in_order() {
        assert_eq!(picks(&[dest(2, 1, 0), dest(3, 1, 1)], 5), [0, 1, 0, 1, 0]);
        assert_eq!(
            picks(&[dest(2, 1, 0), dest(3, 1, 1), dest(4, 1, 2)], 7),
            [0, 1, 2, 0, 1, 2, 0]
        );
    }

    #[test]
    fn weights_do_not_matter_except_zero() {
        assert_eq!(
            picks(&[dest(2, 5, 0), dest(3, 1, 1), dest(4, 100, 2)], 4),
            [0, 1, 2, 0]
        );
        assert_eq!(
            picks(&[dest(2, 1, 0), dest(3, 0, 1), dest(4, 1, 2)], 4),
            [0, 2, 0, 2]
        );
        assert_eq!(picks(&[dest(2, 0, 0), dest(3, 1, 1)], 3), [1, 1, 1]);
    }

    #[test]
    fn nothing_eligible_is_none() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let rr = RoundRobin::new(Arc::default());
        assert_eq!(rr.pick(&Dests::new(&[], &table), &flow(0)), None);
        let list = [dest(2, 0, 0), dest(3, 0, 1)];
        assert_eq!(rr.pick(&Dests::new(&list, &table), &flow(0)), None);
    }

    #[test]
    fn position_survives_a_rebuild_with_the_same_state() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let state = Arc::new(SchedState::default());
        let list = [dest(2, 1, 0), dest(3, 1, 1), dest(4, 1, 2)];
        let dests = Dests::new(&list, &table);
        assert_eq!(
            RoundRobin::new(state.clone()).pick(&dests, &flow(0)),
            Some(0)
        );
        assert_eq!(
            RoundRobin::new(state.clone()).pick(&dests, &flow(0)),
            Some(1)
        );
    }

    #[test]
    fn concurrent_picks_stay_balanced() {
        let table = ConnTable::new(8, 8, &Timeouts::default());
        let rr = RoundRobin::new(Arc::default());
        let list = [dest(2, 1, 0), dest(3, 1, 1)];
        let counts: Vec<[usize; 2]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let dests = Dests::new(&list, &table);
                        let mut c = [0usize; 2];
                        for k in 0..10_000 {
                            c[rr.pick(&dests, &flow(k)).unwrap()] += 1;
                        }
                        c
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let total = [counts[0][0] + counts[1][0], counts[0][1] + counts[1][1]];
        assert_eq!(total[0] + total[1], 20_000);
        // Retries lose a little balance under contention, never much.
        assert!(total[0].abs_diff(total[1]) < 2_000, "{total:?}");
    }
}
