//! The scan of the load-based schedulers (lc, wlc, sed, nq): the kernel's loop over the real
//! servers that keeps the first available one and replaces it only by a later one that is
//! strictly less loaded, so ties go to the first in the list.
//!
//! Generic over the load and its comparison, so each scheduler gets its own loop with the
//! comparison inlined: no allocation, no dynamic dispatch, each server's counters read once.

use super::{Dests, Load};

/// The available server (see [`Dests::load`]) whose `key` is least by `less(candidate,
/// least so far)`; on a tie, the first.
#[inline]
pub(super) fn least_by<K: Copy>(
    dests: &Dests<'_>,
    key: impl Fn(&Load) -> K,
    less: impl Fn(K, K) -> bool,
) -> Option<usize> {
    let mut least: Option<(usize, K)> = None;
    for i in 0..dests.len() {
        let Some(load) = dests.load(i) else {
            continue;
        };
        let k = key(&load);
        match least {
            Some((_, l)) if !less(k, l) => {}
            _ => least = Some((i, k)),
        }
    }
    least.map(|(i, _)| i)
}

/// The kernel's wlc/sed comparison: the least `overhead / weight`, compared without division
/// as `loh * w(dest) > doh * w(least)` (the kernel does not skip weight-0 servers after the
/// first available one, but they can never be smaller, so skipping them changes nothing).
#[inline]
pub(super) fn least_weighted(dests: &Dests<'_>, overhead: impl Fn(&Load) -> u64) -> Option<usize> {
    least_by(
        dests,
        |l| (overhead(l), l.weight),
        |(doh, dw), (loh, lw)| u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw),
    )
}
