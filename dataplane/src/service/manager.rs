//! The control thread's side: the master copy of services and real servers, which applies
//! `control::proto` requests and publishes a new [`Snapshot`] after each change.
//!
//! Every request is checked completely before anything changes, so an error changes nothing.
//! Old snapshots are kept here until no worker holds them, so their memory is freed on the
//! control thread, never on a worker.

use super::dest::{Dest, MAX_DESTS};
use super::snapshot::{RealService, Service, Snapshot};
use crate::conntrack::{Backing, ConnInfo};
use crate::pipeline::Dataplane;
use crate::sched::{self, SchedState};
use crate::stats::{add_rates, RateEstimator, RATE_SAMPLES};
use control::model::{
    family_refusal, ops_refusal, ConnStatus, DestSpec, DestStatus, Protocol, Rates, ServiceKey,
    ServiceSpec, ServiceStatus, Stats,
};
use control::proto::{Request, Response};
use control::sysctl::IpvsSysctls;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Largest `-w` weight, as ipvsadm.
pub const MAX_WEIGHT: u32 = 65535;

#[derive(Debug)]
struct DestState {
    spec: DestSpec,
    slot: u32,
    last_weight: u32,
    lease: Arc<()>,
}

#[derive(Debug)]
struct ServiceState {
    spec: ServiceSpec,
    dests: Vec<DestState>,
    sched: Arc<SchedState>,
    /// Traffic of real servers deleted from this service (since the last `-Z`).
    removed_stats: Stats,
}

/// The control thread's master copy of services and real servers.
pub struct ServiceManager {
    dp: Arc<Dataplane>,
    services: BTreeMap<ServiceKey, ServiceState>,
    /// Slots never used yet start at `next_slot`; `free_slots` holds reusable ones.
    next_slot: u32,
    free_slots: Vec<u32>,
    /// Deleted real servers whose slot waits for its snapshots and connections to go.
    draining: Vec<Draining>,
    /// Per-slot counter values at the last `-Z` or reuse.
    baselines: Vec<Stats>,
    /// Published snapshots some worker may still hold.
    retained: Vec<Arc<Snapshot>>,
    generation: u64,
    /// `--rate`: real servers' counters sampled by [`ServiceManager::tick`].
    rates: RateEstimator<RateKey>,
    /// The IPVS sysctls, published with every snapshot.
    sysctls: IpvsSysctls,
}

/// A deleted real server whose slot is not free yet: its connections go on (`expire_nodest_conn`
/// 0) and are counted on the slot until the last one ends.
#[derive(Debug)]
struct Draining {
    slot: u32,
    lease: Arc<()>,
    /// Its service address, still recognised as a real server's (see
    /// [`Snapshot::is_real_service`]) while it drains.
    real: RealService,
}

/// A real server's identity for `--rate`: its slot and what it is, so that a reused slot
/// starts a new history.
type RateKey = (u32, ServiceKey, IpAddr, u16);

fn add_stats(a: &mut Stats, b: &Stats) {
    a.conns = a.conns.wrapping_add(b.conns);
    a.in_pkts = a.in_pkts.wrapping_add(b.in_pkts);
    a.out_pkts = a.out_pkts.wrapping_add(b.out_pkts);
    a.in_bytes = a.in_bytes.wrapping_add(b.in_bytes);
    a.out_bytes = a.out_bytes.wrapping_add(b.out_bytes);
}

fn sub_stats(a: &Stats, b: &Stats) -> Stats {
    Stats {
        conns: a.conns.saturating_sub(b.conns),
        in_pkts: a.in_pkts.saturating_sub(b.in_pkts),
        out_pkts: a.out_pkts.saturating_sub(b.out_pkts),
        in_bytes: a.in_bytes.saturating_sub(b.in_bytes),
        out_bytes: a.out_bytes.saturating_sub(b.out_bytes),
        ..Default::default()
    }
}

type Result<T> = std::result::Result<T, String>;

/// A change that needs no new snapshot, as its answer.
fn ok_or_error(r: Result<()>) -> Response {
    r.map_or_else(Response::Error, |()| Response::Ok)
}

impl ServiceManager {
    pub fn new(dp: Arc<Dataplane>) -> ServiceManager {
        ServiceManager {
            dp,
            services: BTreeMap::new(),
            next_slot: 0,
            free_slots: Vec::new(),
            draining: Vec::new(),
            baselines: vec![Stats::default(); MAX_DESTS],
            retained: Vec::new(),
            generation: 0,
            rates: RateEstimator::new(RATE_SAMPLES),
            sysctls: IpvsSysctls::default(),
        }
    }

    /// Applies one control request.
    pub fn handle(&mut self, req: Request) -> Response {
        self.collect_garbage();
        let changed = match req {
            Request::AddService(spec) => self.add_service(&spec),
            Request::EditService(spec) => self.edit_service(&spec),
            Request::DelService(key) => self.del_service(&key),
            Request::AddDest { service, dest } => self.add_dest(&service, &dest),
            Request::EditDest { service, dest } => self.edit_dest(&service, &dest),
            Request::DelDest {
                service,
                addr,
                port,
            } => self.del_dest(&service, addr, port),
            Request::Clear => {
                self.clear();
                Ok(())
            }
            Request::Zero { service } => return ok_or_error(self.zero(service.as_ref())),
            Request::SetTimeouts(t) => {
                self.dp.conns().timeouts().set(&t);
                return Response::Ok;
            }
            Request::GetTimeouts => return Response::Timeouts(self.dp.conns().timeouts().get()),
            Request::Counters => return Response::Counters(self.counters()),
            Request::List { service } => return self.list(service.as_ref()),
            Request::ListConns => return Response::Conns(self.list_conns()),
            Request::GetSysctls => return self.get_sysctls(),
            Request::SetSysctls(pairs) => self.set_sysctls(&pairs),
            Request::ListNeighbours => return self.list_neighbours(),
            Request::AddNeighbour(n) => return ok_or_error(self.add_neighbour(&n)),
            Request::DelNeighbour { port, addr } => {
                return ok_or_error(self.del_neighbour(&port, addr))
            }
            // Reading the configuration file is rvsd's, which answers it before this.
            Request::Reload => {
                return Response::Error("reload is not handled by the service manager".into())
            }
            // The daemon's own facts (DPDK ports, versions, the sync daemons) and the virtual
            // addresses (which change the kernel twins too): rvsd's control server answers them.
            Request::Ports { .. }
            | Request::Version
            | Request::SetSyncRole { .. }
            | Request::SyncStatus
            | Request::SetVirtualAddrs { .. }
            | Request::ListVirtualAddrs => {
                return Response::Error("not a service request: rvsd answers it".into())
            }
        };
        match changed {
            Ok(()) => {
                self.publish();
                Response::Ok
            }
            Err(e) => Response::Error(e),
        }
    }

    /// The control thread's periodic work, every `stats::RATE_TICK_MS` at `now_ms` (a
    /// monotonic clock): samples every real server's counters for `--rate` and frees old
    /// snapshots. Never called by a worker.
    pub fn tick(&mut self, now_ms: u64) {
        self.collect_garbage();
        self.dp.sample_free_entries();
        let stats = self.dp.stats();
        let totals: Vec<(RateKey, Stats)> = self
            .services
            .iter()
            .flat_map(|(key, svc)| {
                svc.dests.iter().map(move |d| {
                    (
                        (d.slot, *key, d.spec.addr, d.spec.port),
                        stats.slot_total(d.slot),
                    )
                })
            })
            .collect();
        self.rates.sample(now_ms, totals);
    }

    pub(super) fn dataplane(&self) -> &Arc<Dataplane> {
        &self.dp
    }

    fn get_sysctls(&self) -> Response {
        Response::Sysctls(
            self.sysctls
                .list()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        )
    }

    /// Sets every pair or, if one is refused, none.
    fn set_sysctls(&mut self, pairs: &[(String, u32)]) -> Result<()> {
        let mut next = self.sysctls;
        for (name, value) in pairs {
            next.set(name, *value).map_err(|e| e.to_string())?;
        }
        for (name, value) in pairs {
            let old = self.sysctls.get(name).unwrap_or(*value);
            if old != *value {
                tracing::info!(sysctl = %name, old, new = *value, "IPVS sysctl changed");
            }
        }
        self.sysctls = next;
        // The defences' automatic mode starts from a fresh sample, not a second-old one.
        self.dp.sample_free_entries();
        Ok(())
    }

    // --- checks ----------------------------------------------------------------------------

    /// The spec as the manager keeps it (an IPv6 service's netmask left at the IPv4 default
    /// becomes /128), or why it is refused.
    fn check_service_spec(spec: &ServiceSpec) -> Result<ServiceSpec> {
        let mut spec = spec.clone();
        spec.normalize_netmask()?;
        Self::check_service_rules(&spec)?;
        Ok(spec)
    }

    fn check_service_rules(spec: &ServiceSpec) -> Result<()> {
        if spec.key.port == 0 && spec.persistence.is_none() {
            return Err("Zero port specified for non-persistent service".into());
        }
        if let Some(why) = ops_refusal(spec) {
            return Err(why.into());
        }
        sched::check_spec(spec)
    }

    fn check_dest_spec(dest: &DestSpec) -> Result<()> {
        if dest.weight > MAX_WEIGHT {
            return Err(format!("illegal weight {} (0..{MAX_WEIGHT})", dest.weight));
        }
        if dest.lower_threshold > dest.upper_threshold {
            return Err(format!(
                "lower threshold {} is larger than upper threshold {}",
                dest.lower_threshold, dest.upper_threshold
            ));
        }
        Ok(())
    }

    /// A real server of a one-packet scheduling service backs no other service of its
    /// protocol: its replies match no connection and are mapped back to the service by its
    /// address and port alone (the snapshot's `ops_reply`). The error for real server
    /// `addr:port` in service `key` (one-packet scheduling if `ops`), if another service
    /// has it.
    fn ops_conflict(&self, key: &ServiceKey, ops: bool, addr: IpAddr, port: u16) -> Result<()> {
        let other = self.services.iter().find(|(k, svc)| {
            *k != key
                && k.protocol == key.protocol
                && (ops || svc.spec.ops)
                && svc
                    .dests
                    .iter()
                    .any(|d| d.spec.addr == addr && d.spec.port == port)
        });
        match other {
            Some((k, _)) => Err(format!(
                "real server {addr}:{port} already backs {k}: a real server of a one-packet \
                 scheduling service (-o) cannot back another virtual service (its replies match \
                 no connection, so rvs tells the service by the real server's address and port)"
            )),
            None => Ok(()),
        }
    }

    /// `-r host` without a port means the virtual port.
    fn dest_port(svc: &ServiceKey, port: u16) -> u16 {
        if port == 0 {
            svc.port
        } else {
            port
        }
    }

    // --- changes (each checks everything first) -----------------------------------------------

    fn add_service(&mut self, spec: &ServiceSpec) -> Result<()> {
        let spec = &Self::check_service_spec(spec)?;
        if self.services.contains_key(&spec.key) {
            return Err("Service already exists".into());
        }
        self.services.insert(
            spec.key,
            ServiceState {
                spec: spec.clone(),
                dests: Vec::new(),
                sched: Arc::default(),
                removed_stats: Stats::default(),
            },
        );
        Ok(())
    }

    fn edit_service(&mut self, spec: &ServiceSpec) -> Result<()> {
        let svc = self.services.get(&spec.key).ok_or("No such service")?;
        let spec = &Self::check_service_spec(spec)?;
        if spec.ops && !svc.spec.ops {
            for d in &svc.dests {
                self.ops_conflict(&spec.key, true, d.spec.addr, d.spec.port)?;
            }
        }
        let svc = self.services.get_mut(&spec.key).ok_or("No such service")?;
        if svc.spec.scheduler != spec.scheduler {
            svc.sched = Arc::default();
        }
        svc.spec = spec.clone();
        Ok(())
    }

    fn del_service(&mut self, key: &ServiceKey) -> Result<()> {
        let svc = self.services.remove(key).ok_or("No such service")?;
        for d in svc.dests {
            self.retire(key, d);
        }
        Ok(())
    }

    fn add_dest(&mut self, key: &ServiceKey, dest: &DestSpec) -> Result<()> {
        let svc = self.services.get(key).ok_or("Service not defined")?;
        let mut spec = dest.clone();
        spec.port = Self::dest_port(key, spec.port);
        Self::check_dest_spec(&spec)?;
        if let Some(why) = family_refusal(key.addr, spec.addr) {
            return Err(why);
        }
        if svc
            .dests
            .iter()
            .any(|d| d.spec.addr == spec.addr && d.spec.port == spec.port)
        {
            return Err("Destination already exists".into());
        }
        self.ops_conflict(key, svc.spec.ops, spec.addr, spec.port)?;
        let slot = self
            .alloc_slot()
            .ok_or_else(|| format!("too many real servers (at most {MAX_DESTS}, removed ones included until their connections end)"))?;
        if let Some(svc) = self.services.get_mut(key) {
            svc.dests.push(DestState {
                last_weight: spec.weight,
                spec,
                slot,
                lease: Arc::new(()),
            });
        }
        Ok(())
    }

    fn edit_dest(&mut self, key: &ServiceKey, dest: &DestSpec) -> Result<()> {
        let svc = self.services.get_mut(key).ok_or("Service not defined")?;
        let mut spec = dest.clone();
        spec.port = Self::dest_port(key, spec.port);
        let d = svc
            .dests
            .iter_mut()
            .find(|d| d.spec.addr == spec.addr && d.spec.port == spec.port)
            .ok_or("No such destination")?;
        Self::check_dest_spec(&spec)?;
        if spec.weight != 0 {
            d.last_weight = spec.weight;
        }
        d.spec = spec;
        Ok(())
    }

    fn del_dest(&mut self, key: &ServiceKey, addr: IpAddr, port: u16) -> Result<()> {
        let svc = self.services.get_mut(key).ok_or("Service not defined")?;
        let port = Self::dest_port(key, port);
        let i = svc
            .dests
            .iter()
            .position(|d| d.spec.addr == addr && d.spec.port == port)
            .ok_or("No such destination")?;
        let d = svc.dests.remove(i);
        let gone = self.dest_stats(d.slot);
        if let Some(svc) = self.services.get_mut(key) {
            add_stats(&mut svc.removed_stats, &gone);
        }
        self.retire(key, d);
        Ok(())
    }

    fn clear(&mut self) {
        let services = std::mem::take(&mut self.services);
        for (key, svc) in services {
            for d in svc.dests {
                self.retire(&key, d);
            }
        }
    }

    fn zero(&mut self, key: Option<&ServiceKey>) -> Result<()> {
        if let Some(k) = key {
            if !self.services.contains_key(k) {
                return Err("No such service".into());
            }
        }
        let stats = self.dp.stats();
        for (k, svc) in self.services.iter_mut() {
            if key.is_some_and(|want| want != k) {
                continue;
            }
            svc.removed_stats = Stats::default();
            for d in &svc.dests {
                if let Some(b) = self.baselines.get_mut(d.slot as usize) {
                    *b = stats.slot_total(d.slot);
                }
            }
        }
        Ok(())
    }

    // --- slots ---------------------------------------------------------------------------------

    fn alloc_slot(&mut self) -> Option<u32> {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None if (self.next_slot as usize) < MAX_DESTS => {
                self.next_slot += 1;
                self.next_slot - 1
            }
            None => return None,
        };
        self.dp.conns().revive_dest(slot);
        if let Some(b) = self.baselines.get_mut(slot as usize) {
            *b = self.dp.stats().slot_total(slot);
        }
        Some(slot)
    }

    /// A real server leaves `svc`: no new connections (the slot is retired in the connection
    /// table, for workers still scheduling from an older snapshot); its connections go on.
    fn retire(&mut self, svc: &ServiceKey, d: DestState) {
        self.dp.conns().retire_dest(d.slot);
        self.draining.push(Draining {
            slot: d.slot,
            lease: d.lease,
            real: RealService {
                proto: svc.protocol.ip_proto(),
                addr: d.spec.addr,
                port: d.spec.port,
            },
        });
    }

    /// Frees old snapshots no worker holds any more (here, not on a worker) and recycles the
    /// slots of deleted real servers that nothing refers to: no snapshot (its lease is
    /// unshared, so no worker can schedule to it) and no connection (its counts are zero; the
    /// table keeps them exact, and nothing can add to them once no snapshot names the slot).
    fn collect_garbage(&mut self) {
        self.retained.retain(|s| Arc::strong_count(s) > 1);
        let conns = self.dp.conns();
        let mut still = Vec::with_capacity(self.draining.len());
        for d in self.draining.drain(..) {
            let idle = conns
                .dest(d.slot)
                .is_some_and(|c| c.active() == 0 && c.inactive() == 0);
            if Arc::strong_count(&d.lease) == 1 && idle {
                self.free_slots.push(d.slot);
            } else {
                still.push(d);
            }
        }
        self.draining = still;
    }

    /// Builds and publishes the snapshot of the current state.
    fn publish(&mut self) {
        self.generation += 1;
        let mut services = Vec::with_capacity(self.services.len());
        for svc in self.services.values() {
            let dests: Vec<Dest> = svc
                .dests
                .iter()
                .map(|d| Dest::leased(d.spec.clone(), d.slot, d.last_weight, d.lease.clone()))
                .collect();
            // Every service's scheduler kind was checked when it was added or edited.
            let Ok(scheduler) = sched::build(&svc.spec, &dests, &svc.sched) else {
                continue;
            };
            services.push(Service {
                spec: svc.spec.clone(),
                dests,
                scheduler,
            });
        }
        let removed: Vec<RealService> = self.draining.iter().map(|d| d.real).collect();
        let old = self.dp.publish(Arc::new(Snapshot::new(
            services,
            &removed,
            self.generation,
            self.sysctls,
        )));
        self.retained.push(old);
        self.collect_garbage();
    }

    // --- reports -------------------------------------------------------------------------------

    fn dest_stats(&self, slot: u32) -> Stats {
        let total = self.dp.stats().slot_total(slot);
        match self.baselines.get(slot as usize) {
            Some(b) => sub_stats(&total, b),
            None => total,
        }
    }

    fn status(&self, svc: &ServiceState) -> ServiceStatus {
        let mut stats = svc.removed_stats;
        // A service's rate is the sum of its real servers' rates (those measured already); a
        // service without real servers carries no traffic.
        let mut rates = svc.dests.is_empty().then(Rates::default);
        let dests = svc
            .dests
            .iter()
            .map(|d| {
                let c = self.dp.conns().dest(d.slot);
                let mut s = self.dest_stats(d.slot);
                s.rates = self
                    .rates
                    .rates(&(d.slot, svc.spec.key, d.spec.addr, d.spec.port));
                if let Some(r) = &s.rates {
                    rates = Some(rates.map_or(*r, |sum| add_rates(&sum, r)));
                }
                add_stats(&mut stats, &s);
                DestStatus {
                    spec: d.spec.clone(),
                    active_conns: c.map_or(0, |c| c.active()),
                    inactive_conns: c.map_or(0, |c| c.inactive()),
                    stats: s,
                }
            })
            .collect();
        stats.rates = rates;
        ServiceStatus {
            spec: svc.spec.clone(),
            dests,
            stats,
        }
    }

    fn list(&self, key: Option<&ServiceKey>) -> Response {
        let services = match key {
            Some(k) => match self.services.get(k) {
                Some(s) => vec![self.status(s)],
                None => return Response::Error("No such service".into()),
            },
            None => self.services.values().map(|s| self.status(s)).collect(),
        };
        Response::Services {
            table_size: self.dp.conns().capacity() as u64,
            services,
        }
    }

    /// Every dataplane counter (see `Stats::counters`) plus the connection table's figures:
    /// `conntrack.entries`, `conntrack.capacity`, `conntrack.evictions`, `conntrack.bytes` (the
    /// memory it holds) and `conntrack.hugetlb` (1 if on reserved hugepages) (`conntrack6.*`
    /// for the IPv6 table), and the fragment table's `frag.capacity`.
    fn counters(&self) -> Vec<(String, u64)> {
        let mut c = self.dp.stats().counters();
        let conns = self.dp.conns();
        c.push(("conntrack.entries".into(), conns.len() as u64));
        c.push(("conntrack.capacity".into(), conns.capacity() as u64));
        c.push(("conntrack.evictions".into(), conns.evictions()));
        c.push(("conntrack.bytes".into(), conns.memory_bytes() as u64));
        c.push((
            "conntrack.hugetlb".into(),
            u64::from(conns.backing() == Backing::HugeTlb),
        ));
        let conns6 = self.dp.conns6();
        c.push(("conntrack6.entries".into(), conns6.len() as u64));
        c.push(("conntrack6.capacity".into(), conns6.capacity() as u64));
        c.push(("conntrack6.evictions".into(), conns6.evictions()));
        c.push(("conntrack6.bytes".into(), conns6.memory_bytes() as u64));
        c.push((
            "conntrack6.hugetlb".into(),
            u64::from(conns6.backing() == Backing::HugeTlb),
        ));
        c.push(("frag.capacity".into(), self.dp.frags().capacity() as u64));
        c.extend(self.dp.sync_stats().counters());
        c
    }

    fn list_conns(&self) -> Vec<ConnStatus> {
        let now = self.dp.now_ms();
        let mut out = Vec::new();
        let mut conn = |c: ConnInfo<IpAddr>| {
            out.push(ConnStatus {
                protocol: Protocol::of_ip_proto(c.proto),
                expires_in: u32::try_from(c.expires_ms.saturating_sub(now).div_ceil(1000))
                    .unwrap_or(u32::MAX),
                state: c.state.name().to_string(),
                client: c.client,
                virt: c.virt,
                dest: c.real,
            });
        };
        // IPv4 connections first, then IPv6 (as libipvs lists them).
        self.dp.conns().for_each(|c| conn(c.widen()));
        self.dp.conns6().for_each(|c| conn(c.widen()));
        // Persistence templates (IPv4, then IPv6), as the kernel lists them: client network
        // with port 0, state NONE (TCP) or UDP, the real server the clients stick to.
        self.dp.persist().for_each(now, |t| {
            let protocol = Protocol::of_ip_proto(t.key.proto);
            out.push(ConnStatus {
                protocol,
                // Rounded down: a template's expiry is already rounded up to a whole second.
                expires_in: u32::try_from(t.expires_ms.saturating_sub(now) / 1000)
                    .unwrap_or(u32::MAX),
                state: match protocol {
                    Protocol::Tcp => "NONE",
                    Protocol::Udp => "UDP",
                }
                .to_string(),
                client: (t.key.cnet, 0),
                virt: (t.key.vip, t.key.vport),
                dest: (t.target.rip, t.target.rport),
            });
        });
        out
    }
}
