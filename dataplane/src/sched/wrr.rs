//! Weighted round robin, as the kernel's `ip_vs_wrr.c`.
//!
//! `di` is the gcd of the positive weights, `mw` the largest weight less `di - 1`, and `cw`
//! (the current weight) starts at `mw`. A pick scans on from the last server chosen for the
//! first one that is not overloaded and has a weight of at least `cw`; at the end of the list
//! `cw` drops by `di`, and when it reaches 0 it starts again at `mw`. Weights 4, 3, 2 give
//! A A B A B C A B C. A change of the real servers (added, removed, weight or thresholds
//! edited) resets the position to the head of the list and adjusts `cw` as
//! `ip_vs_wrr_dest_changed` does.
//!
//! The position and `cw` are one atomic word (in the service's [`SchedState`]), advanced with
//! a compare-and-swap instead of the kernel's spinlock; when another worker wins the race the
//! pick is recomputed from the new word (a few times, then the last result stands).
//!
//! One addition to the kernel's loop, which changes no result: after a full pass over the list
//! in which nobody qualified, `cw` jumps straight down past the passes that cannot find anyone
//! either (all eligible weights are below them), so a pick costs O(servers) even when the
//! heaviest server is overloaded and `mw / di` is large (the kernel would walk 65535 passes
//! for weights 65535 and 1).

use super::{gcd, Dests, Flow, SchedState, Scheduler};
use crate::service::dest::Dest;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// The position word: the list position in the high half (0 = the list head, i + 1 = just
/// after server i), `cw` in the low half.
fn pack(cl: u32, cw: u32) -> u64 {
    (u64::from(cl) << 32) | u64::from(cw)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

#[derive(Debug)]
pub struct WeightedRoundRobin {
    state: Arc<SchedState>,
    /// Decreasing interval: the gcd of the positive weights (1 if none).
    di: u32,
    /// Largest weight - (di - 1); 0 when every weight is 0.
    mw: u32,
}

impl WeightedRoundRobin {
    /// `changed`: the real servers differ from the last build's, so the position is reset.
    pub fn new(dests: &[Dest], state: Arc<SchedState>, changed: bool) -> WeightedRoundRobin {
        let di = dests
            .iter()
            .map(|d| d.spec.weight)
            .filter(|w| *w > 0)
            .fold(0, gcd)
            .max(1);
        let max = dests.iter().map(|d| d.spec.weight).max().unwrap_or(0);
        let mw = max.saturating_sub(di - 1);
        if changed {
            // ip_vs_wrr_dest_changed
            let (_, cw) = unpack(state.cursor.load(Relaxed));
            let cw = if cw > mw || cw == 0 {
                mw
            } else if di > 1 {
                (cw / di) * di + 1
            } else {
                cw
            };
            state.cursor.store(pack(0, cw), Relaxed);
        }
        WeightedRoundRobin { state, di, mw }
    }

    /// The kernel's `ip_vs_wrr_schedule` from position `cl` and weight `cw`: the server chosen
    /// and the position word after it.
    fn scan(&self, dests: &Dests<'_>, cl: u32, cw: u32) -> (Option<usize>, u64) {
        let n = dests.len();
        let (di, mw) = (i64::from(self.di), i64::from(self.mw));
        // A word left by a list that has since changed: start over as a reset would.
        let cl = if cl as usize > n { 0 } else { cl as usize };
        let mut cw = if cw == 0 || i64::from(cw) > mw {
            mw
        } else {
            i64::from(cw)
        };
        let last_is_head = cl == 0;
        let mut start = cl;
        let mut stop: Option<usize> = None;
        let (mut last_pass, mut restarted) = (false, false);
        // The kernel's loop ends within 2 * (mw / di) + 2 passes; this bound is never reached.
        for _ in 0..2 * (mw / di) + 4 {
            let full = start == 0;
            let mut best = 0i64;
            for i in start..n {
                let w = i64::from(dests.weight(i));
                if w > 0 && !dests.overloaded(i) {
                    if w >= cw {
                        return (Some(i), pack(i as u32 + 1, cw as u32));
                    }
                    best = best.max(w);
                }
                if stop == Some(i) {
                    return (None, pack(i as u32 + 1, cw as u32));
                }
            }
            start = 0;
            cw -= di;
            if cw <= 0 {
                cw = mw;
                if last_pass || last_is_head {
                    return (None, pack(0, cw as u32));
                }
                restarted = true;
            }
            last_pass = cw <= di;
            if last_pass && restarted && !last_is_head {
                stop = Some(cl - 1);
            }
            // Skip the passes that cannot succeed (see the module documentation).
            let floor = best.max(di);
            if full && stop.is_none() && cw > floor {
                cw -= (cw - floor - 1) / di * di;
            }
        }
        (None, pack(0, mw as u32))
    }
}

impl Scheduler for WeightedRoundRobin {
    fn pick(&self, dests: &Dests<'_>, _flow: &Flow) -> Option<usize> {
        if self.mw == 0 || dests.is_empty() {
            return None;
        }
        self.state.advance(|seen| {
            let (cl, cw) = unpack(seen);
            self.scan(dests, cl, cw)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ConnTable;
    use crate::sched::tests::{dest, flow, idle, loaded, loaded_list, Loaded};
    use control::model::Timeouts;

    fn weights(ws: &[u32]) -> Vec<Dest> {
        ws.iter()
            .enumerate()
            .map(|(i, w)| dest(2 + i as u8, *w, i as u32))
            .collect()
    }

    /// `n` picks of a wrr built for `servers`, as letters ('-': none).
    fn letters(servers: &[Loaded], n: usize) -> String {
        let (list, table) = loaded_list(servers);
        let s = WeightedRoundRobin::new(&list, Arc::default(), true);
        let dests = Dests::new(&list, &table);
        (0..n)
            .map(|k| match s.pick(&dests, &flow(k as u16)) {
                Some(i) => char::from(b'A' + i as u8),
                None => '-',
            })
            .collect()
    }

    #[test]
    fn kernel_sequence_for_4_3_2() {
        assert_eq!(letters(&idle(&[4, 3, 2]), 18), "AABABCABCAABABCABC");
    }

    #[test]
    fn servers_added_one_by_one_start_where_the_kernel_does() {
        // ipvsadm -a A -w 4, then B -w 3, then C -w 2: each add runs dest_changed, which
        // leaves cw at 1 (mw of A alone with di 4 is 1), so the first pass is A B C, then the
        // 4,3,2 cycle.
        let table = ConnTable::new(8, 64, &Timeouts::default());
        let state = Arc::new(SchedState::default());
        let all = weights(&[4, 3, 2]);
        let mut s = WeightedRoundRobin::new(&[], state.clone(), true);
        for n in 1..=3 {
            s = WeightedRoundRobin::new(&all[..n], state.clone(), true);
        }
        let dests = Dests::new(&all, &table);
        let got: String = (0..12)
            .map(|k| char::from(b'A' + s.pick(&dests, &flow(k)).unwrap() as u8))
            .collect();
        assert_eq!(got, "ABCAABABCABC");
    }

    #[test]
    fn gcd_and_equal_weights() {
        // gcd 2: as 2, 1.
        assert_eq!(letters(&idle(&[4, 2]), 6), "AABAAB");
        assert_eq!(letters(&idle(&[2, 1]), 6), "AABAAB");
        // Equal weights: plain round robin.
        assert_eq!(letters(&idle(&[5, 5, 5]), 6), "ABCABC");
        assert_eq!(letters(&idle(&[1, 3]), 8), "BBABBBAB");
    }

    #[test]
    fn weight_zero_is_skipped_and_all_zero_is_none() {
        assert_eq!(letters(&idle(&[2, 0, 1]), 6), "AACAAC");
        assert_eq!(letters(&idle(&[0, 0]), 2), "--");
        assert_eq!(letters(&idle(&[]), 2), "--");
    }

    #[test]
    fn overloaded_servers_are_skipped_and_all_overloaded_is_none() {
        let a = loaded(3, 1, 0).upper(1);
        assert_eq!(letters(&[a, loaded(1, 0, 0)], 4), "BBBB");
        assert_eq!(letters(&[a, loaded(1, 0, 1).upper(1)], 2), "--");
    }

    #[test]
    fn heavy_overloaded_server_costs_no_extra_passes() {
        // Weights 65535 and 1 with the heavy one overloaded: B every time (the kernel would
        // walk 65534 passes to get there).
        let heavy = loaded(65535, 1, 0).upper(1);
        assert_eq!(letters(&[heavy, loaded(1, 0, 0)], 3), "BBB");
    }

    #[test]
    fn skipping_matches_the_plain_kernel_loop() {
        // Without overload the skip never changes a result: compare with a straight port of
        // the kernel loop for a few weight sets.
        fn kernel(ws: &[u32], n: usize) -> Vec<usize> {
            let di = ws.iter().copied().filter(|w| *w > 0).fold(0, gcd).max(1) as i64;
            let mw = *ws.iter().max().unwrap() as i64 - (di - 1);
            let (mut cl, mut cw) = (0usize, mw);
            let mut out = vec![];
            for _ in 0..n {
                let mut i = cl;
                loop {
                    if i == ws.len() {
                        i = 0;
                        cw -= di;
                        if cw <= 0 {
                            cw = mw;
                        }
                        continue;
                    }
                    if ws[i] as i64 >= cw {
                        out.push(i);
                        cl = i + 1;
                        break;
                    }
                    i += 1;
                }
            }
            out
        }
        for ws in [
            &[4u32, 3, 2][..],
            &[100, 1, 7],
            &[9, 6, 3],
            &[1, 50],
            &[10, 0, 20, 5],
        ] {
            let list = weights(ws);
            let table = ConnTable::new(8, 64, &Timeouts::default());
            let s = WeightedRoundRobin::new(&list, Arc::default(), true);
            let dests = Dests::new(&list, &table);
            let got: Vec<usize> = (0..300)
                .map(|k| s.pick(&dests, &flow(k)).unwrap())
                .collect();
            assert_eq!(got, kernel(ws, 300), "{ws:?}");
        }
    }

    #[test]
    fn a_change_resets_the_position_and_an_unchanged_rebuild_does_not() {
        let table = ConnTable::new(8, 64, &Timeouts::default());
        let state = Arc::new(SchedState::default());
        let list = weights(&[4, 3, 2]);
        let dests = Dests::new(&list, &table);
        let s = WeightedRoundRobin::new(&list, state.clone(), true);
        assert_eq!(s.pick(&dests, &flow(0)), Some(0));
        assert_eq!(s.pick(&dests, &flow(1)), Some(0));
        assert_eq!(s.pick(&dests, &flow(2)), Some(1));
        // An unrelated rebuild: the sequence goes on (A B C next).
        let s = WeightedRoundRobin::new(&list, state.clone(), false);
        assert_eq!(s.pick(&dests, &flow(3)), Some(0));
        // A change: back to the head with cw kept (2 now), so A B next.
        let s = WeightedRoundRobin::new(&list, state.clone(), true);
        assert_eq!(s.pick(&dests, &flow(4)), Some(0));
        assert_eq!(s.pick(&dests, &flow(5)), Some(1));
    }

    #[test]
    fn a_stale_word_from_a_longer_list_is_harmless() {
        let table = ConnTable::new(8, 64, &Timeouts::default());
        let state = Arc::new(SchedState::default());
        state.cursor.store(pack(9, 77), Relaxed);
        let list = weights(&[1, 1]);
        let s = WeightedRoundRobin::new(&list, state, false);
        let dests = Dests::new(&list, &table);
        assert_eq!(s.pick(&dests, &flow(0)), Some(0));
        assert_eq!(s.pick(&dests, &flow(1)), Some(1));
    }
}
