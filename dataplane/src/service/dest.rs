//! A real server as workers see it, and how many can exist.
//!
//! Apart from [`super::snapshot`] because the schedulers use it: `sched` depends on this module,
//! the snapshot (which holds each service's scheduler) on `sched`, never the other way round.

use control::model::DestSpec;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Real servers that can exist at once (over all services), including removed ones whose
/// connections are still draining.
pub const MAX_DESTS: usize = 16384;

/// A real server as workers see it.
#[derive(Debug, Clone)]
pub struct Dest {
    pub spec: DestSpec,
    /// Index of its counters (see [`crate::service`] on slots).
    pub slot: u32,
    /// The last weight above 0 it had (its weight when added, if that was 0): the kernel's
    /// `last_weight`, with which mh keeps a quiesced server's table slots.
    pub last_weight: u32,
    /// Shared with the manager; while any snapshot holds a copy, the slot is not reused.
    _lease: Arc<()>,
}

impl Dest {
    /// The RIP of a real server of an IPv4 service (0.0.0.0 for an IPv6 one, which the
    /// manager never puts in an IPv4 service: families are never mixed).
    #[inline]
    pub fn addr4(&self) -> Ipv4Addr {
        match self.spec.addr {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The RIP of a real server of an IPv6 service (:: for an IPv4 one).
    #[inline]
    pub fn addr6(&self) -> Ipv6Addr {
        match self.spec.addr {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
        }
    }

    /// A real server outside any manager (tests and benchmarks): its slot is never reused.
    pub fn new(spec: DestSpec, slot: u32) -> Dest {
        Dest {
            last_weight: spec.weight,
            spec,
            slot,
            _lease: Arc::new(()),
        }
    }
    /// A manager's real server: its slot stays taken while `lease` is shared.
    pub(super) fn leased(spec: DestSpec, slot: u32, last_weight: u32, lease: Arc<()>) -> Dest {
        Dest {
            spec,
            slot,
            last_weight,
            _lease: lease,
        }
    }
}
