//! Schedulers: which real server gets a new connection.
//!
//! A [`Scheduler`] is built for one service from its real-server list each time a snapshot is
//! built (so table-based schedulers such as sh/dh/mh can precompute from weights), and picks an
//! index into that list. What must change per new connection lives in atomics, never behind a
//! lock: a scheduler's own fields, or the service's [`SchedState`], which outlives snapshot
//! rebuilds (rr keeps its position across an unrelated edit). Load-based schedulers (lc, wlc,
//! sed, nq) read the live active/inactive counts through [`Dests`]; hashing ones use [`Flow`].

#![warn(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod rr;

use crate::conntrack::{ConnTable, DestCounts};
use crate::service::Dest;
use control::model::SchedulerKind;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The connection being scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub client: Ipv4Addr,
    pub cport: u16,
    pub vip: Ipv4Addr,
    pub vport: u16,
}

/// Per-service scheduler state that survives snapshot rebuilds. Each scheduler decides what
/// the word means (rr: index after the last server chosen).
#[derive(Debug, Default)]
pub struct SchedState {
    pub cursor: AtomicU64,
}

/// A service's real servers as a scheduler sees them: spec (weight, thresholds) plus the live
/// connection counts.
#[derive(Clone, Copy)]
pub struct Dests<'a> {
    list: &'a [Dest],
    conns: &'a ConnTable,
}

impl<'a> Dests<'a> {
    pub fn new(list: &'a [Dest], conns: &'a ConnTable) -> Dests<'a> {
        Dests { list, conns }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&'a Dest> {
        self.list.get(i)
    }

    fn counts(&self, i: usize) -> Option<&'a DestCounts> {
        self.conns.dest(self.list.get(i)?.slot)
    }

    pub fn weight(&self, i: usize) -> u32 {
        self.list.get(i).map_or(0, |d| d.spec.weight)
    }

    pub fn active(&self, i: usize) -> u64 {
        self.counts(i).map_or(0, DestCounts::active)
    }

    pub fn inactive(&self, i: usize) -> u64 {
        self.counts(i).map_or(0, DestCounts::inactive)
    }

    /// The `-x`/`-y` thresholds, with the kernel's hysteresis: overloaded once active +
    /// inactive reaches the upper threshold; cleared when it falls below the lower one, or
    /// below 3/4 of the upper one when no lower one is set.
    pub fn overloaded(&self, i: usize) -> bool {
        let (Some(d), Some(c)) = (self.list.get(i), self.counts(i)) else {
            return true;
        };
        let upper = u64::from(d.spec.upper_threshold);
        if upper == 0 {
            if c.overloaded.load(Relaxed) {
                c.overloaded.store(false, Relaxed);
            }
            return false;
        }
        let total = c.active() + c.inactive();
        if c.overloaded.load(Relaxed) {
            let lower = u64::from(d.spec.lower_threshold);
            let below = if lower > 0 {
                total < lower
            } else {
                total * 4 < upper * 3
            };
            if below {
                c.overloaded.store(false, Relaxed);
            }
            !below
        } else if total >= upper {
            c.overloaded.store(true, Relaxed);
            true
        } else {
            false
        }
    }

    /// May get new connections: weight above 0 and not overloaded.
    pub fn available(&self, i: usize) -> bool {
        self.weight(i) > 0 && !self.overloaded(i)
    }
}

/// Picks a real server for a new connection.
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// An index into `dests` (an available server), or `None` when none is eligible.
    fn pick(&self, dests: &Dests<'_>, flow: &Flow) -> Option<usize>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler '{0}' is not supported yet")]
pub struct Unsupported(pub SchedulerKind);

/// Refuses the kinds this build does not implement (never silently replaced by another).
pub fn check_supported(kind: SchedulerKind) -> Result<(), Unsupported> {
    match kind {
        SchedulerKind::Rr => Ok(()),
        other => Err(Unsupported(other)),
    }
}

/// Builds the scheduler of one service for the real-server list `dests`.
pub fn build(
    kind: SchedulerKind,
    _dests: &[Dest],
    state: &Arc<SchedState>,
) -> Result<Box<dyn Scheduler>, Unsupported> {
    check_supported(kind)?;
    Ok(match kind {
        SchedulerKind::Rr => Box::new(rr::RoundRobin::new(state.clone())),
        other => return Err(Unsupported(other)),
    })
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub(crate) mod tests {
    use super::*;
    use crate::conntrack::{ConnState, NewConn};
    use control::model::{DestSpec, Timeouts};

    pub(crate) fn dest(last: u8, weight: u32, slot: u32) -> Dest {
        Dest::new(
            DestSpec {
                addr: Ipv4Addr::new(192, 0, 2, last),
                port: 80,
                weight,
                forward: control::model::Forward::Masq,
                upper_threshold: 0,
                lower_threshold: 0,
            },
            slot,
        )
    }

    pub(crate) fn flow(n: u16) -> Flow {
        Flow {
            client: Ipv4Addr::new(198, 51, 100, 10),
            cport: 1024 + n,
            vip: Ipv4Addr::new(198, 51, 100, 1),
            vport: 80,
        }
    }

    #[test]
    fn unsupported_kinds_are_refused_by_name() {
        assert!(check_supported(SchedulerKind::Rr).is_ok());
        let e = build(SchedulerKind::Wrr, &[], &Arc::default()).unwrap_err();
        assert_eq!(e.to_string(), "scheduler 'wrr' is not supported yet");
        for k in SchedulerKind::ALL
            .into_iter()
            .filter(|k| *k != SchedulerKind::Rr)
        {
            assert_eq!(check_supported(k), Err(Unsupported(k)));
        }
    }

    #[test]
    fn thresholds_have_hysteresis() {
        let table = ConnTable::new(64, 4, &Timeouts::default());
        let mut d = dest(2, 1, 0);
        d.spec.upper_threshold = 4;
        let list = [d];
        let dests = Dests::new(&list, &table);
        let mut conns = Vec::new();
        for i in 0..4u16 {
            assert!(!dests.overloaded(0), "{i} conns");
            let c = NewConn {
                proto: 6,
                client: (Ipv4Addr::new(198, 51, 100, 10), 1000 + i),
                virt: (Ipv4Addr::new(198, 51, 100, 1), 80),
                real: (Ipv4Addr::new(192, 0, 2, 2), 80),
                dest: 0,
                state: ConnState::SynRecv,
            };
            conns.push(table.insert(&c, 0).unwrap());
        }
        assert!(dests.overloaded(0), "4 >= upper 4");
        assert!(!dests.available(0));
        // No lower threshold: cleared below 3/4 of 4 = 3, i.e. at 2.
        table.remove(conns.pop().unwrap().conn);
        assert!(dests.overloaded(0), "3 is not below 3");
        table.remove(conns.pop().unwrap().conn);
        assert!(!dests.overloaded(0), "2 < 3");
        assert!(dests.available(0));
    }

    #[test]
    fn weight_zero_is_unavailable() {
        let table = ConnTable::new(8, 4, &Timeouts::default());
        let list = [dest(2, 0, 0), dest(3, 1, 1)];
        let dests = Dests::new(&list, &table);
        assert!(!dests.available(0));
        assert!(dests.available(1));
        assert!(!dests.available(2), "out of range");
    }
}
