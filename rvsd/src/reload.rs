//! Reloading the configuration live, on SIGHUP or `rvsctl reload` (`Request::Reload`).
//!
//! rvsd re-reads the file it started from and applies the difference between the configuration
//! it last loaded and the new one (`control::reload::plan`), so what an operator or a health
//! checker changed live and the file did not is left alone. All or none: the new configuration
//! is parsed and then applied whole to a scratch [`ServiceManager`] (the start-up sequence,
//! [`apply_config`]) before the live one is touched; any error refuses the reload, names the
//! key or line, and leaves the running configuration as it is. Removed real servers drain as
//! with `rvsadm -d`: their connections go on.
//!
//! The SIGHUP handler only sets [`REQUESTED`]; the control thread notices it within its poll
//! interval and calls [`Reloader::reload`], which holds the service manager's lock while it
//! applies the plan, so no control request interleaves.

use crate::control_server::Peer;
use control::config::Config;
use control::model::ServiceStatus;
use control::proto::{Neighbour, Request, Response};
use control::reload::{describe, in_force, plan, ReloadReport};
use dataplane::pipeline::{Dataplane, DataplaneConfig, PortSetup};
use dataplane::service::ServiceManager;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

/// Set by the SIGHUP handler (an atomic store is async-signal-safe); cleared by the control
/// thread when it starts the reload.
pub static REQUESTED: AtomicBool = AtomicBool::new(false);

/// What asked for a reload, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    Signal,
    /// `Request::Reload` from a control client (its credentials when the kernel gave them).
    Control(Option<Peer>),
}

/// Reads the configuration again, as at start (same file, same command-line overrides).
pub type Loader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

pub struct Reloader {
    load: Loader,
    manager: Arc<Mutex<ServiceManager>>,
    /// The configuration last loaded: what the next reload is compared with. Its lock also
    /// keeps two reloads from running at once.
    current: Mutex<Config>,
}

impl Reloader {
    /// `current` is the configuration rvsd started on, already applied to `manager`.
    pub fn new(load: Loader, manager: Arc<Mutex<ServiceManager>>, current: Config) -> Reloader {
        Reloader {
            load,
            manager,
            current: Mutex::new(current),
        }
    }

    /// Reloads and logs the outcome with who asked; the answer for `Request::Reload`.
    pub fn reload(&self, trigger: Trigger) -> Response {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let (by, uid, pid) = match trigger {
            Trigger::Signal => ("SIGHUP", None, None),
            Trigger::Control(peer) => ("control", peer.map(|p| p.uid), peer.map(|p| p.pid)),
        };
        match self.try_reload(&mut current) {
            Ok(r) => {
                tracing::info!(
                    by, uid, pid, applied = ?r.applied, adjusted = ?r.adjusted,
                    "configuration reloaded"
                );
                for line in &r.not_live {
                    tracing::warn!(by, "reload: {line}");
                }
                for line in &r.failed {
                    tracing::warn!(by, "reload: refused by the running daemon: {line}");
                }
                Response::Reloaded(r)
            }
            Err(e) => {
                tracing::warn!(by, uid, pid, error = %e, "reload refused, the running configuration stays");
                Response::Error(format!("reload refused, nothing changed: {e}"))
            }
        }
    }

    fn try_reload(&self, current: &mut Config) -> Result<ReloadReport, String> {
        let new = (self.load)()?;
        let plan = plan(current, &new)?;
        validate(&new)?;
        let mut m = self.manager.lock().unwrap_or_else(PoisonError::into_inner);
        let mut report = ReloadReport {
            not_live: plan.not_live,
            ..ReloadReport::default()
        };
        for change in plan.changes {
            let (request, note) = adapt(&list(&mut m), change);
            if let Some(note) = note {
                report.adjusted.push(note);
            }
            let Some(request) = request else { continue };
            match m.handle(request.clone()) {
                Response::Error(e) => report.failed.push(format!("{}: {e}", describe(&request))),
                _ => report.applied.push(describe(&request)),
            }
        }
        *current = in_force(current, new);
        Ok(report)
    }
}

/// Applies `cfg`'s services, IPVS sysctls and static neighbours to `manager`, as rvsd does at
/// start; an error names the key (and for services the line).
pub fn apply_config(manager: &mut ServiceManager, cfg: &Config) -> Result<(), String> {
    apply_services(manager, &cfg.services)?;
    let sysctls = cfg
        .ipvs
        .list()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    if let Response::Error(e) = manager.handle(Request::SetSysctls(sysctls)) {
        return Err(format!("ipvs: {e}"));
    }
    for (i, n) in cfg.neighbours.iter().enumerate() {
        let request = Request::AddNeighbour(Neighbour {
            port: n.port.clone(),
            addr: n.address,
            mac: n.mac,
            permanent: true,
        });
        if let Response::Error(e) = manager.handle(request) {
            return Err(format!("neighbours[{i}]: {e}"));
        }
    }
    Ok(())
}

/// Applies the `services` of rvs.toml, rvsadm -S lines, as rvsadm -R would.
fn apply_services(manager: &mut ServiceManager, text: &str) -> Result<(), String> {
    let changes = control::cli::parse_restore(text).map_err(|e| format!("services: {}", e.0))?;
    for (line, change) in changes {
        let current = list(manager);
        let request = control::cli::Table::new(&current)
            .resolve(&change)
            .map_err(|e| format!("services: line {line}: {}", e.0))?;
        if let Response::Error(e) = manager.handle(request) {
            return Err(format!("services: line {line}: {e}"));
        }
    }
    Ok(())
}

fn list(manager: &mut ServiceManager) -> Vec<ServiceStatus> {
    match manager.handle(Request::List { service: None }) {
        Response::Services { services, .. } => services,
        _ => Vec::new(),
    }
}

/// Applies `cfg` whole to a scratch service manager on a small dataplane of its own, so that
/// everything the live one would refuse (an unsupported scheduler, a real server of a
/// one-packet service backing another) refuses the reload before anything changes.
fn validate(cfg: &Config) -> Result<(), String> {
    let ports = cfg
        .ports
        .iter()
        .map(|p| PortSetup {
            name: p.name.clone(),
            mac: p.mac.map_or([2, 0, 0, 0, 0, 1], |m| m.0),
            role: p.role,
            addrs: p.addresses.clone(),
            gateway: p.gateway,
            addrs6: p
                .ipv6_addresses()
                .iter()
                .map(|c| (c.addr, c.prefix_len))
                .collect(),
            gateway6: p.gateway6,
            mtu: p.mtu,
        })
        .collect();
    let scratch = Dataplane::new(DataplaneConfig {
        ports,
        conn_capacity: 64,
        timeouts: cfg.conntrack.timeouts.unwrap_or_default(),
        workers: 1,
    });
    apply_config(&mut ServiceManager::new(scratch), cfg)
}

/// A planned change as it fits the live state, which an operator may have changed since the
/// last load: what the file adds and is there already is edited to the file's values, what it
/// edits and is gone is added again, what it removes and is gone is skipped. Returns the
/// request to send (if any) and a note when it differs from the plan.
fn adapt(live: &[ServiceStatus], change: Request) -> (Option<Request>, Option<String>) {
    let service = |key| live.iter().find(|s| s.spec.key == key);
    let has_dest = |key, addr, port| {
        service(key).is_some_and(|s| {
            s.dests
                .iter()
                .any(|d| d.spec.addr == addr && d.spec.port == port)
        })
    };
    let instead = |planned: &Request, sent: Option<Request>, why: &str| {
        let note = match &sent {
            Some(r) => format!("{}: {why}, so {}", describe(planned), describe(r)),
            None => format!("{}: {why}, skipped", describe(planned)),
        };
        (sent, Some(note))
    };
    match &change {
        Request::AddService(spec) if service(spec.key).is_some() => instead(
            &change,
            Some(Request::EditService(spec.clone())),
            "present already",
        ),
        Request::EditService(spec) if service(spec.key).is_none() => instead(
            &change,
            Some(Request::AddService(spec.clone())),
            "removed live",
        ),
        Request::DelService(key) if service(*key).is_none() => {
            instead(&change, None, "removed live")
        }
        Request::AddDest { service: key, .. }
        | Request::EditDest { service: key, .. }
        | Request::DelDest { service: key, .. }
            if service(*key).is_none() =>
        {
            instead(&change, None, "its service was removed live")
        }
        Request::AddDest { service: key, dest } if has_dest(*key, dest.addr, dest.port) => instead(
            &change,
            Some(Request::EditDest {
                service: *key,
                dest: dest.clone(),
            }),
            "present already",
        ),
        Request::EditDest { service: key, dest } if !has_dest(*key, dest.addr, dest.port) => {
            instead(
                &change,
                Some(Request::AddDest {
                    service: *key,
                    dest: dest.clone(),
                }),
                "removed live",
            )
        }
        Request::DelDest {
            service: key,
            addr,
            port,
        } if !has_dest(*key, *addr, *port) => instead(&change, None, "removed live"),
        _ => (Some(change), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::model::{DestSpec, DestStatus, Forward, Protocol, SchedulerKind, ServiceKey};
    use control::model::{ServiceSpec, Stats};

    fn key(port: u16) -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            addr: "198.51.100.1".parse().unwrap(),
            port,
        }
    }

    fn spec(port: u16, scheduler: SchedulerKind) -> ServiceSpec {
        ServiceSpec {
            key: key(port),
            scheduler,
            persistence: None,
            netmask: control::model::default_netmask(),
            sched_flags: Default::default(),
            ops: false,
        }
    }

    fn dest(last: u8, weight: u32) -> DestSpec {
        DestSpec {
            addr: [192, 0, 2, last].into(),
            port: 80,
            weight,
            forward: Forward::Masq,
            upper_threshold: 0,
            lower_threshold: 0,
        }
    }

    /// TCP :80 with real server .2 live.
    fn live() -> Vec<ServiceStatus> {
        vec![ServiceStatus {
            spec: spec(80, SchedulerKind::Rr),
            dests: vec![DestStatus {
                spec: dest(2, 1),
                active_conns: 0,
                inactive_conns: 0,
                stats: Stats::default(),
            }],
            stats: Stats::default(),
        }]
    }

    #[test]
    fn a_plan_that_matches_the_live_state_is_sent_as_it_is() {
        for change in [
            Request::AddService(spec(443, SchedulerKind::Rr)),
            Request::EditService(spec(80, SchedulerKind::Wrr)),
            Request::DelService(key(80)),
            Request::AddDest {
                service: key(80),
                dest: dest(3, 1),
            },
            Request::EditDest {
                service: key(80),
                dest: dest(2, 5),
            },
            Request::DelDest {
                service: key(80),
                addr: [192, 0, 2, 2].into(),
                port: 80,
            },
        ] {
            assert_eq!(adapt(&live(), change.clone()), (Some(change), None));
        }
    }

    #[test]
    fn a_plan_that_meets_live_changes_is_fitted_to_them_and_says_so() {
        let fitted = |change: Request| {
            let (sent, note) = adapt(&live(), change);
            (sent, note.expect("a note"))
        };
        let (sent, note) = fitted(Request::AddService(spec(80, SchedulerKind::Wrr)));
        assert_eq!(
            sent,
            Some(Request::EditService(spec(80, SchedulerKind::Wrr)))
        );
        assert_eq!(
            note,
            "-A -t 198.51.100.1:80 -s wrr: present already, so -E -t 198.51.100.1:80 -s wrr"
        );
        let add = |d| Request::AddDest {
            service: key(80),
            dest: d,
        };
        let edit = |d| Request::EditDest {
            service: key(80),
            dest: d,
        };
        let del_dest = Request::DelDest {
            service: key(80),
            addr: [192, 0, 2, 3].into(),
            port: 80,
        };
        let cases = [
            (
                Request::EditService(spec(443, SchedulerKind::Wrr)),
                Some(Request::AddService(spec(443, SchedulerKind::Wrr))),
            ),
            (add(dest(2, 4)), Some(edit(dest(2, 4)))),
            (edit(dest(3, 4)), Some(add(dest(3, 4)))),
            (del_dest, None),
        ];
        for (change, want) in cases {
            assert_eq!(fitted(change.clone()).0, want, "{change:?}");
        }
        let (sent, note) = fitted(Request::DelService(key(443)));
        assert_eq!(
            (sent, note.as_str()),
            (None, "-D -t 198.51.100.1:443: removed live, skipped")
        );
        // A real server of a service removed live: skipped, whatever the change.
        let (sent, note) = fitted(Request::AddDest {
            service: key(443),
            dest: dest(3, 1),
        });
        assert_eq!(sent, None);
        assert!(
            note.ends_with("its service was removed live, skipped"),
            "{note}"
        );
    }
}
