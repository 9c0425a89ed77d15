//! Schedulers: which real server gets a new connection.
//!
//! One file per LVS scheduler, all behind [`Scheduler`]: rr, wrr, lc, wlc, sed, nq, sh, dh and
//! mh (Maglev), each following the kernel's `ip_vs_<name>.c` (see `docs/schedulers.md` for
//! the algorithms and where rvs differs).
//!
//! A [`Scheduler`] is built for one service from its real-server list each time a snapshot is
//! built, on the control thread, so table-based schedulers (sh, dh, mh) precompute their tables
//! there and never on a worker. It picks an index into that list. What must change per new
//! connection lives in atomics, never behind a lock: the service's [`SchedState`], which
//! outlives snapshot rebuilds (rr keeps its position across an unrelated edit; wrr resets its
//! position only when the real-server list changes, as the kernel does). Load-based schedulers
//! (lc, wlc, sed, nq) read the live active/inactive counts through [`Dests`]; hashing ones use
//! [`Flow`].
//!
//! Every scheduler skips real servers with weight 0 and overloaded ones (`-x`/`-y`, see
//! [`Dests::overloaded`]); sh and mh give such a server's connections to nobody unless their
//! fallback flag is set. `pick` never allocates, locks or panics.

pub mod dh;
pub mod lc;
mod least;
pub mod mh;
pub mod nq;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod wlc;
pub mod wrr;

pub use crate::hash::fmix64;

use crate::conntrack::{ConnTable, DestCounts};
use crate::service::dest::Dest;
use control::model::{SchedulerKind, ServiceSpec};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The connection being scheduled: both addresses of the service's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub client: IpAddr,
    pub cport: u16,
    pub vip: IpAddr,
    pub vport: u16,
}

/// Per-service scheduler state that survives snapshot rebuilds. Each scheduler decides what
/// `cursor` means (rr: index after the last server chosen; wrr: position and current weight).
#[derive(Debug, Default)]
pub struct SchedState {
    pub cursor: AtomicU64,
    /// Fingerprint of the real-server list (addresses, ports, weights, thresholds) the last
    /// [`build`] saw; 0 before the first. Written by the control thread only.
    pub built: AtomicU64,
}

impl SchedState {
    /// Records the fingerprint of `dests`; true when it differs from the last build's (the
    /// kernel's `add_dest`/`del_dest`/`upd_dest` hooks).
    fn dests_changed(&self, dests: &[Dest]) -> bool {
        let f = fingerprint(dests);
        self.built.swap(f, Relaxed) != f
    }

    /// Moves `cursor` on with a compare-and-swap (rr, wrr): `step` maps the cursor seen to the
    /// server chosen and the cursor after it. Another worker may move the cursor meanwhile:
    /// the step is redone from the new cursor a few times, so two workers do not both take the
    /// same step, then the last choice stands. A step that leaves the cursor as it was needs
    /// no swap.
    #[inline]
    fn advance(&self, mut step: impl FnMut(u64) -> (Option<usize>, u64)) -> Option<usize> {
        let mut seen = self.cursor.load(Relaxed);
        let mut choice = None;
        for _ in 0..4 {
            let (c, next) = step(seen);
            choice = c;
            if next == seen {
                break;
            }
            match self.cursor.compare_exchange(seen, next, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(cur) => seen = cur,
            }
        }
        choice
    }
}

/// A non-zero digest of what a real-server list looks like to a scheduler.
fn fingerprint(dests: &[Dest]) -> u64 {
    let mut h = fmix64(dests.len() as u64 ^ 0x5ced_0001);
    for d in dests {
        let s = &d.spec;
        for v in [
            (u64::from(fold(s.addr)) << 16) | u64::from(s.port),
            match s.addr {
                IpAddr::V4(_) => 0,
                IpAddr::V6(a) => fmix64(u128::from(a) as u64 ^ (u128::from(a) >> 64) as u64),
            },
            u64::from(s.weight),
            (u64::from(s.upper_threshold) << 32) | u64::from(s.lower_threshold),
        ] {
            h = fmix64(h ^ v).wrapping_add(0x9e37_79b9_7f4a_7c15);
        }
    }
    h | 1
}

/// Greatest common divisor (Euclid).
pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// "No server" in the bucket tables of sh, dh and mh.
pub(crate) const NO_DEST: u16 = u16::MAX;

/// Buckets of the sh and dh tables.
pub const HASH_BUCKETS: usize = 256;

/// The sh/dh bucket table (the kernel's `ip_vs_sh_reassign`/`ip_vs_dh_reassign`): walking the
/// real servers in order, round and round, each fills as many consecutive buckets as its
/// weight (a weight-0 server still fills one, and is then skipped when picked); all buckets are
/// empty without real servers.
pub(crate) fn weighted_buckets(dests: &[Dest]) -> [u16; HASH_BUCKETS] {
    let mut table = [NO_DEST; HASH_BUCKETS];
    if dests.is_empty() {
        return table;
    }
    let mut d = 0usize;
    let mut count = 0u32;
    for b in table.iter_mut() {
        *b = d as u16;
        count += 1;
        if count >= dests.get(d).map_or(0, |x| x.spec.weight) {
            d = (d + 1) % dests.len();
            count = 0;
        }
    }
    table
}

/// An address as the kernel's sh, dh and mh hash it: an IPv4 address in host order; an IPv6
/// one folded to 32 bits, the XOR of its four words (`addr->ip6[0] ^ ... ^ addr->ip6[3]`,
/// then ntohl, in ip_vs_sh.c, ip_vs_dh.c and ip_vs_mh.c).
#[inline]
pub fn fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32)
        }
    }
}

/// The sh/dh hash (the spec's, as the classic kernel `ip_vs_sh_hashkey`): the host-order
/// address ([`fold`]ed for IPv6) plus the port (for sh-port) times 2654435761, plus the probe
/// offset, modulo 256.
#[inline]
pub fn bucket_of(addr: impl Into<IpAddr>, port: u16, offset: u32) -> usize {
    let v = fold(addr.into()).wrapping_add(u32::from(port));
    (offset.wrapping_add(v.wrapping_mul(2_654_435_761)) as usize) & (HASH_BUCKETS - 1)
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

    /// The kernel's `ip_vs_dest_conn_overhead` (lc, wlc): `(active << 8) + inactive`.
    pub fn overhead(&self, i: usize) -> u64 {
        self.counts(i)
            .map_or(0, |c| (c.active() << 8).saturating_add(c.inactive()))
    }

    /// The `-x`/`-y` thresholds, with the kernel's hysteresis: overloaded once active +
    /// inactive reaches the upper threshold; cleared when it falls below the lower one, or
    /// below 3/4 of the upper one when no lower one is set.
    pub fn overloaded(&self, i: usize) -> bool {
        let (Some(d), Some(c)) = (self.list.get(i), self.counts(i)) else {
            return true;
        };
        overloaded(d, c, c.active() + c.inactive())
    }

    /// Weight and connection counts of server `i` when it may get new connections (weight
    /// above 0, not overloaded), reading its counters once: the load-based schedulers' loop.
    #[inline]
    pub fn load(&self, i: usize) -> Option<Load> {
        let d = self.list.get(i)?;
        if d.spec.weight == 0 {
            return None;
        }
        let c = self.conns.dest(d.slot)?;
        let (active, inactive) = (c.active(), c.inactive());
        if overloaded(d, c, active + inactive) {
            return None;
        }
        Some(Load {
            weight: d.spec.weight,
            active,
            inactive,
        })
    }

    /// May get new connections: weight above 0 and not overloaded.
    pub fn available(&self, i: usize) -> bool {
        self.weight(i) > 0 && !self.overloaded(i)
    }
}

/// What [`Dests::load`] reports about an available server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub weight: u32,
    pub active: u64,
    pub inactive: u64,
}

impl Load {
    /// The kernel's `ip_vs_dest_conn_overhead` (lc, wlc): `(active << 8) + inactive`.
    #[inline]
    pub fn overhead(&self) -> u64 {
        (self.active << 8).saturating_add(self.inactive)
    }
}

/// The threshold hysteresis of [`Dests::overloaded`] for a server with `total` connections.
fn overloaded(d: &Dest, c: &DestCounts, total: u64) -> bool {
    let upper = u64::from(d.spec.upper_threshold);
    if upper == 0 {
        if c.overloaded.load(Relaxed) {
            c.overloaded.store(false, Relaxed);
        }
        return false;
    }
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

/// Picks a real server for a new connection.
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// An index into `dests` (an available server), or `None` when none is eligible.
    fn pick(&self, dests: &Dests<'_>, flow: &Flow) -> Option<usize>;

    /// The server [`Scheduler::pick`] is likely to choose for `flow` once `ahead` other new
    /// flows of this service have taken theirs, changing nothing. Only a hint: the burst
    /// prefetch loads the bucket of the new connection's reply tuple by it, so it may be
    /// wrong. `None` where a guess would need the picks before it or the counts that the
    /// burst's own inserts change: weighted round robin would walk `ahead` picks, and the
    /// least-connection family's picks follow the counts.
    fn predict(&self, _dests: &Dests<'_>, _flow: &Flow, _ahead: usize) -> Option<usize> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scheduler '{0}' is not supported yet")]
pub struct Unsupported(pub SchedulerKind);

/// Refuses the kinds this build does not implement (never silently replaced by another).
/// Every kind rvsadm names is implemented: nine of LVS's schedulers (not yet lblc, lblcr, fo,
/// ovf, twos).
pub fn check_supported(kind: SchedulerKind) -> Result<(), Unsupported> {
    match kind {
        SchedulerKind::Rr
        | SchedulerKind::Wrr
        | SchedulerKind::Lc
        | SchedulerKind::Wlc
        | SchedulerKind::Sed
        | SchedulerKind::Nq
        | SchedulerKind::Sh
        | SchedulerKind::Dh
        | SchedulerKind::Mh => Ok(()),
    }
}

/// Checks a service's scheduler and its `-b` flags (sh-* flags need sh, mh-* flags mh).
pub fn check_spec(spec: &ServiceSpec) -> Result<(), String> {
    check_supported(spec.scheduler).map_err(|e| e.to_string())?;
    match spec.sched_flags.incompatible_with(spec.scheduler) {
        Some(flag) => Err(format!(
            "scheduler flag '{flag}' does not apply to scheduler '{}'",
            spec.scheduler
        )),
        None => Ok(()),
    }
}

/// Builds the scheduler of one service for the real-server list `dests` (on the control
/// thread: tables are computed here).
pub fn build(
    spec: &ServiceSpec,
    dests: &[Dest],
    state: &Arc<SchedState>,
) -> Result<Box<dyn Scheduler>, Unsupported> {
    check_supported(spec.scheduler)?;
    let changed = state.dests_changed(dests);
    let flags = spec.sched_flags;
    Ok(match spec.scheduler {
        SchedulerKind::Rr => Box::new(rr::RoundRobin::new(state.clone())),
        SchedulerKind::Wrr => Box::new(wrr::WeightedRoundRobin::new(dests, state.clone(), changed)),
        SchedulerKind::Lc => Box::new(lc::LeastConnection),
        SchedulerKind::Wlc => Box::new(wlc::WeightedLeastConnection),
        SchedulerKind::Sed => Box::new(sed::ShortestExpectedDelay),
        SchedulerKind::Nq => Box::new(nq::NeverQueue),
        SchedulerKind::Sh => Box::new(sh::SourceHash::new(dests, flags.sh_port, flags.sh_fallback)),
        SchedulerKind::Dh => Box::new(dh::DestinationHash::new(dests)),
        SchedulerKind::Mh => Box::new(mh::Maglev::new(dests, flags.mh_port, flags.mh_fallback)),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    #[test]
    fn ipv6_addresses_fold_as_the_kernel_does() {
        // ip_vs_sh/dh/mh_hashkey: addr->ip6[0] ^ ip6[1] ^ ip6[2] ^ ip6[3], then ntohl.
        let a: std::net::Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let want = 0x2001_0db8u32 ^ 0x0001_0002 ^ 0x0003_0004 ^ 0x0005_0006;
        assert_eq!(fold(a.into()), want);
        assert_eq!(fold(Ipv4Addr::new(192, 0, 2, 1).into()), 0xc000_0201);
        // sh/dh buckets: the folded address times 2654435761, as for IPv4.
        assert_eq!(
            bucket_of(a, 0, 0),
            (want.wrapping_mul(2_654_435_761) & 255) as usize
        );
        assert_eq!(
            bucket_of(a, 80, 3),
            (3u32.wrapping_add(want.wrapping_add(80).wrapping_mul(2_654_435_761)) & 255) as usize
        );
    }
    use super::*;
    use crate::conntrack::{ConnState, NewConn};
    use control::model::{DestSpec, SchedFlags, Timeouts};

    pub(crate) fn dest(last: u8, weight: u32, slot: u32) -> Dest {
        Dest::new(
            DestSpec {
                addr: Ipv4Addr::new(192, 0, 2, last).into(),
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
            client: Ipv4Addr::new(198, 51, 100, 10).into(),
            cport: 1024 + n,
            vip: Ipv4Addr::new(198, 51, 100, 1).into(),
            vport: 80,
        }
    }

    pub(crate) fn spec_of(kind: SchedulerKind, flags: SchedFlags) -> ServiceSpec {
        ServiceSpec {
            key: control::model::ServiceKey {
                protocol: control::model::Protocol::Tcp,
                addr: Ipv4Addr::new(198, 51, 100, 1).into(),
                port: 80,
            },
            scheduler: kind,
            persistence: None,
            netmask: control::model::default_netmask(),
            sched_flags: flags,
            ops: false,
        }
    }

    /// Gives the real server in `slot` `active` more active and `inactive` more inactive
    /// connections (from client ports that never repeat within one table).
    pub(crate) fn load(table: &ConnTable, slot: u32, active: u64, inactive: u64) {
        let before = table
            .dest(slot)
            .map(|d| (d.active(), d.inactive()))
            .unwrap();
        use std::sync::atomic::AtomicU16;
        static PORT: AtomicU16 = AtomicU16::new(1);
        for k in 0..active + inactive {
            let c = NewConn {
                proto: 6,
                client: (
                    Ipv4Addr::new(203, 0, 113, slot as u8),
                    PORT.fetch_add(1, Relaxed),
                ),
                virt: (Ipv4Addr::new(198, 51, 100, 1), 80),
                real: (Ipv4Addr::new(192, 0, 2, 2), 80),
                dest: slot,
                state: if k < active {
                    ConnState::Established
                } else {
                    ConnState::TimeWait
                },
            };
            table.insert(&c, 0).unwrap();
        }
        let d = table.dest(slot).unwrap();
        assert_eq!(
            (d.active(), d.inactive()),
            (before.0 + active, before.1 + inactive)
        );
    }

    /// A real server of a load-based scheduler test: weight, active and inactive
    /// connections, and the `-x` threshold (0: none).
    #[derive(Clone, Copy)]
    pub(crate) struct Loaded {
        weight: u32,
        active: u64,
        inactive: u64,
        upper: u32,
    }

    pub(crate) const fn loaded(weight: u32, active: u64, inactive: u64) -> Loaded {
        Loaded {
            weight,
            active,
            inactive,
            upper: 0,
        }
    }

    impl Loaded {
        pub(crate) const fn upper(self, upper: u32) -> Loaded {
            Loaded { upper, ..self }
        }
    }

    /// Servers with these weights and no connections.
    pub(crate) fn idle(weights: &[u32]) -> Vec<Loaded> {
        weights.iter().map(|&w| loaded(w, 0, 0)).collect()
    }

    /// `servers` as a real-server list (192.0.2.2, .3, ... in slots 0, 1, ...) and a fresh
    /// table holding their connections.
    pub(crate) fn loaded_list(servers: &[Loaded]) -> (Vec<Dest>, ConnTable) {
        let table = ConnTable::new(1024, 8, &Timeouts::default());
        let list = (0u32..)
            .zip(servers)
            .map(|(slot, s)| {
                load(&table, slot, s.active, s.inactive);
                let mut d = dest(2 + slot as u8, s.weight, slot);
                d.spec.upper_threshold = s.upper;
                d
            })
            .collect();
        (list, table)
    }

    /// What `sched` picks for a new connection among `servers` (see [`loaded_list`]).
    pub(crate) fn pick_among(sched: &impl Scheduler, servers: &[Loaded]) -> Option<usize> {
        let (list, table) = loaded_list(servers);
        sched.pick(&Dests::new(&list, &table), &flow(0))
    }

    #[test]
    fn every_kind_is_supported_and_flags_must_fit_the_scheduler() {
        for k in SchedulerKind::ALL {
            assert_eq!(check_supported(k), Ok(()));
            assert!(build(&spec_of(k, SchedFlags::default()), &[], &Arc::default()).is_ok());
            assert_eq!(check_spec(&spec_of(k, SchedFlags::default())), Ok(()));
        }
        let sh_port = SchedFlags {
            sh_port: true,
            ..Default::default()
        };
        let mh_fallback = SchedFlags {
            mh_fallback: true,
            ..Default::default()
        };
        assert_eq!(check_spec(&spec_of(SchedulerKind::Sh, sh_port)), Ok(()));
        assert_eq!(check_spec(&spec_of(SchedulerKind::Mh, mh_fallback)), Ok(()));
        assert_eq!(
            check_spec(&spec_of(SchedulerKind::Mh, sh_port)),
            Err("scheduler flag 'sh-port' does not apply to scheduler 'mh'".into())
        );
        assert_eq!(
            check_spec(&spec_of(SchedulerKind::Rr, mh_fallback)),
            Err("scheduler flag 'mh-fallback' does not apply to scheduler 'rr'".into())
        );
    }

    /// A prediction is a pick that changes nothing: for the kinds that predict (round robin
    /// and the hashes), the server the next pick takes, here with one server out (weight 0);
    /// round robin's `ahead` places on, the pick after `ahead` others while the servers there
    /// are available. Predicting leaves every kind's picks as they were.
    #[test]
    fn predictions_are_the_picks_to_come_and_change_none() {
        let table = ConnTable::new(64, 8, &Timeouts::default());
        let list = [dest(2, 1, 0), dest(3, 2, 1), dest(4, 0, 2), dest(5, 1, 3)];
        let dests = Dests::new(&list, &table);
        let mut seen = [0u8; SchedulerKind::ALL.len()];
        for k in SchedulerKind::ALL {
            let build_one = || build(&spec_of(k, SchedFlags::default()), &list, &Arc::default());
            let (predicting, alone) = (build_one().unwrap(), build_one().unwrap());
            let predicts = matches!(
                k,
                SchedulerKind::Rr | SchedulerKind::Sh | SchedulerKind::Dh | SchedulerKind::Mh
            );
            for n in 0..40u8 {
                // Clients and VIPs apart, so that the hashes meet every server.
                let f = Flow {
                    client: Ipv4Addr::new(198, 51, 100, 10 + n).into(),
                    cport: 1024 + u16::from(n),
                    vip: Ipv4Addr::new(203, 0, 113, n).into(),
                    vport: 80,
                };
                let predicted = predicting.predict(&dests, &f, 0);
                let picked = predicting.pick(&dests, &f);
                assert_eq!(picked, alone.pick(&dests, &f), "{k:?}: flow {n}");
                if predicts && predicted != picked {
                    // Round robin predicts no walk past a server that is out.
                    assert!(
                        k == SchedulerKind::Rr && predicted.is_none(),
                        "{k:?}: flow {n}"
                    );
                } else if !predicts {
                    assert_eq!(predicted, None, "{k:?}");
                }
                assert_ne!(picked, Some(2), "{k:?}: never the server out");
                seen[k as usize] |= picked.map_or(0, |i| 1 << i);
            }
        }
        for k in [
            SchedulerKind::Rr,
            SchedulerKind::Sh,
            SchedulerKind::Dh,
            SchedulerKind::Mh,
        ] {
            assert_eq!(seen[k as usize], 0b1011, "{k:?} picked every server in");
        }
        let rr = build(
            &spec_of(SchedulerKind::Rr, SchedFlags::default()),
            &list,
            &Arc::default(),
        )
        .unwrap();
        let f = flow(0);
        assert_eq!(rr.pick(&dests, &f), Some(0));
        // The cursor is at 1: 1, then 2 (out: no prediction), then 3, 0.
        let ahead: Vec<_> = (0..4).map(|a| rr.predict(&dests, &f, a)).collect();
        assert_eq!(ahead, [Some(1), None, Some(3), Some(0)]);
        let picks: Vec<_> = (0..3).map(|_| rr.pick(&dests, &f)).collect();
        assert_eq!(picks, [Some(1), Some(3), Some(0)]);
    }

    #[test]
    fn overhead_is_active_shifted_plus_inactive() {
        let table = ConnTable::new(64, 4, &Timeouts::default());
        let list = [dest(2, 1, 0), dest(3, 1, 1)];
        load(&table, 0, 2, 3);
        let dests = Dests::new(&list, &table);
        assert_eq!(dests.overhead(0), (2 << 8) + 3);
        assert_eq!(dests.overhead(1), 0);
        assert_eq!(dests.overhead(9), 0, "out of range");
    }

    #[test]
    fn sh_dh_buckets_fill_by_weight_round_and_round() {
        let list = [dest(2, 3, 0), dest(3, 0, 1), dest(4, 2, 2)];
        let t = weighted_buckets(&list);
        // 3 x A, 1 x B (weight 0 still takes one), 2 x C, then again from A.
        assert_eq!(&t[..12], &[0, 0, 0, 1, 2, 2, 0, 0, 0, 1, 2, 2]);
        assert_eq!(t[255], [0, 0, 0, 1, 2, 2][255 % 6]);
        assert!(weighted_buckets(&[]).iter().all(|b| *b == NO_DEST));
    }

    #[test]
    fn bucket_formula_is_the_specs() {
        for a in [0u32, 1, 0xc633_640a, 0xffff_ffff, 0x0102_0304] {
            let addr = Ipv4Addr::from(a);
            assert_eq!(
                bucket_of(addr, 0, 0),
                (u64::from(a) * 2_654_435_761 % (1 << 32)) as usize & 255
            );
            assert_eq!(
                bucket_of(addr, 8080, 3),
                (3 + (u64::from(a.wrapping_add(8080)) * 2_654_435_761 % (1 << 32))) as usize & 255
            );
        }
    }

    #[test]
    fn fingerprint_sees_weight_and_threshold_changes_only() {
        let a = [dest(2, 1, 0), dest(3, 2, 1)];
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b[1].slot = 7;
        assert_eq!(fingerprint(&a), fingerprint(&b), "slots do not matter");
        b[1].spec.weight = 3;
        assert_ne!(fingerprint(&a), fingerprint(&b));
        let mut c = a.clone();
        c[0].spec.upper_threshold = 5;
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_ne!(fingerprint(&a), fingerprint(&a[..1]));
        assert_ne!(fingerprint(&[]), 0);
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
