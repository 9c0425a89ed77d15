//! Reloading rvs.toml, the pure half: what changed between the configuration rvsd last loaded
//! and a new one, as control requests in the order they are applied. rvsd's `reload` module
//! validates, applies and logs them.
//!
//! Diff semantics, as keepalived's reload: only what the file changed is sent, so state that an
//! operator (rvsadm, rvsctl) or a health checker changed live, and that the file did not change,
//! is left alone. A service or real server whose lines changed takes the file's values whole.
//! What cannot change in a running daemon (EAL arguments, ports, workers, table capacity,
//! control socket, log settings, the metrics listener, `[sync]`) is listed in [`Plan::not_live`] and never
//! applied.

use crate::cli::{self, Table};
use crate::config::{Config, MacAddr};
use crate::format;
use crate::model::{DestSpec, ServiceKey, ServiceSpec, ServiceStatus, Stats, Timeouts};
use crate::proto::{Neighbour, Request};
use crate::sysctl::{IpvsSysctls, PREFIX};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// What a reload did, as rvsd answers `Request::Reload` and logs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Changes applied, one [`describe`] line each.
    pub applied: Vec<String>,
    /// File changes that met live state an operator had changed (a real server the file adds
    /// was added live already, one it removes was deleted live): what was done instead.
    pub adjusted: Vec<String>,
    /// Changes the running daemon refused, with its reason (e.g. every real-server slot in use
    /// by draining ones); the rest of the reload was applied.
    pub failed: Vec<String>,
    /// Keys the file changed that only a restart applies; left as they are.
    pub not_live: Vec<String>,
}

/// The live-changeable part of a configuration, resolved: services with their real servers,
/// the connection timeouts, the IPVS sysctls and the static neighbours.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    services: BTreeMap<ServiceKey, WantedService>,
    timeouts: Timeouts,
    sysctls: IpvsSysctls,
    neighbours: BTreeMap<(String, IpAddr), MacAddr>,
}

#[derive(Debug, Clone, PartialEq)]
struct WantedService {
    spec: ServiceSpec,
    /// In the file's order; ports already resolved (`-r host` means the virtual port).
    dests: Vec<DestSpec>,
}

impl Wanted {
    /// Resolves `cfg`'s service lines in order, as rvsd applies them at start (`-E`/`-e`
    /// merged with earlier lines, `--set` over `[conntrack] timeouts`). An error names the line.
    pub fn of(cfg: &Config) -> Result<Wanted, String> {
        let changes =
            cli::parse_restore(&cfg.services).map_err(|e| format!("services: {}", e.0))?;
        let mut table = Table::default();
        let mut timeouts = cfg.conntrack.timeouts.unwrap_or_default();
        for (line, change) in changes {
            let request = table
                .resolve(&change)
                .map_err(|e| format!("services: line {line}: {}", e.0))?;
            if let Request::SetTimeouts(t) = request {
                // `--set`: 0 leaves a value as it is.
                for (to, from) in [
                    (&mut timeouts.tcp, t.tcp),
                    (&mut timeouts.tcp_fin, t.tcp_fin),
                    (&mut timeouts.udp, t.udp),
                ] {
                    if from != 0 {
                        *to = from;
                    }
                }
            }
        }
        let services = table
            .services()
            .map(|(spec, dests)| {
                let dests = dests
                    .iter()
                    .map(|d| DestSpec {
                        port: if d.port == 0 { spec.key.port } else { d.port },
                        ..d.clone()
                    })
                    .collect();
                (
                    spec.key,
                    WantedService {
                        spec: spec.clone(),
                        dests,
                    },
                )
            })
            .collect();
        let neighbours = cfg
            .neighbours
            .iter()
            .map(|n| ((n.port.clone(), n.address), n.mac))
            .collect();
        Ok(Wanted {
            services,
            timeouts,
            sysctls: cfg.ipvs,
            neighbours,
        })
    }
}

/// The changes from one configuration to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Requests in the order to apply them: services removed, added, edited; then real servers
    /// removed, then added or edited in the file's order; timeouts; sysctls; neighbours removed,
    /// then added or replaced.
    pub changes: Vec<Request>,
    /// One line per key that needs a restart (see [`ReloadReport::not_live`]).
    pub not_live: Vec<String>,
}

/// What changed from `old` (the configuration last loaded) to `new`.
pub fn plan(old: &Config, new: &Config) -> Result<Plan, String> {
    let (was, will) = (Wanted::of(old)?, Wanted::of(new)?);
    let mut changes = Vec::new();

    for key in was
        .services
        .keys()
        .filter(|k| !will.services.contains_key(k))
    {
        changes.push(Request::DelService(*key));
    }
    for (key, svc) in &will.services {
        match was.services.get(key) {
            None => changes.push(Request::AddService(svc.spec.clone())),
            Some(old) if old.spec != svc.spec => {
                changes.push(Request::EditService(svc.spec.clone()))
            }
            Some(_) => {}
        }
    }
    let no_dests = Vec::new();
    for (key, svc) in &will.services {
        let before = was.services.get(key).map_or(&no_dests, |s| &s.dests);
        let find = |list: &'_ [DestSpec], d: &DestSpec| {
            list.iter()
                .find(|x| (x.addr, x.port) == (d.addr, d.port))
                .cloned()
        };
        for d in before.iter().filter(|d| find(&svc.dests, d).is_none()) {
            changes.push(Request::DelDest {
                service: *key,
                addr: d.addr,
                port: d.port,
            });
        }
        for d in &svc.dests {
            match find(before, d) {
                None => changes.push(Request::AddDest {
                    service: *key,
                    dest: d.clone(),
                }),
                Some(old) if old != *d => changes.push(Request::EditDest {
                    service: *key,
                    dest: d.clone(),
                }),
                Some(_) => {}
            }
        }
    }

    if was.timeouts != will.timeouts {
        changes.push(Request::SetTimeouts(will.timeouts));
    }
    let sysctls: Vec<(String, u32)> = will
        .sysctls
        .list()
        .into_iter()
        .zip(was.sysctls.list())
        .filter(|((_, new), (_, old))| new != old)
        .map(|((name, value), _)| (name.to_string(), value))
        .collect();
    if !sysctls.is_empty() {
        changes.push(Request::SetSysctls(sysctls));
    }
    for (port, addr) in was.neighbours.keys() {
        if !will.neighbours.contains_key(&(port.clone(), *addr)) {
            changes.push(Request::DelNeighbour {
                port: port.clone(),
                addr: *addr,
            });
        }
    }
    for ((port, addr), mac) in &will.neighbours {
        if was.neighbours.get(&(port.clone(), *addr)) != Some(mac) {
            changes.push(Request::AddNeighbour(Neighbour {
                port: port.clone(),
                addr: *addr,
                mac: *mac,
                permanent: true,
            }));
        }
    }

    let restart_only = [
        ("eal", old.eal != new.eal),
        ("ports", old.ports != new.ports),
        ("workers", old.workers != new.workers),
        (
            "conntrack.capacity",
            old.conntrack.capacity != new.conntrack.capacity,
        ),
        ("control", old.control != new.control),
        ("log", old.log != new.log),
        ("metrics", old.metrics != new.metrics),
        // The sync daemons' role changes live through SetSyncRole (rvsadm --start-daemon);
        // the socket and group only at a restart.
        ("sync", old.sync != new.sync),
    ];
    let not_live = restart_only
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| format!("{key}: changed, needs a restart (left as it is)"))
        .collect();
    Ok(Plan { changes, not_live })
}

/// The configuration in force after `new` is applied to a daemon running `running`: `new`'s
/// live parts with `running`'s restart-only ones, so that the next reload still reports a
/// restart-only key the file changed and the daemon never took.
pub fn in_force(running: &Config, new: Config) -> Config {
    Config {
        eal: running.eal.clone(),
        ports: running.ports.clone(),
        workers: running.workers.clone(),
        conntrack: crate::config::ConntrackConfig {
            capacity: running.conntrack.capacity,
            timeouts: new.conntrack.timeouts,
        },
        control: running.control.clone(),
        log: running.log.clone(),
        metrics: running.metrics.clone(),
        sync: running.sync.clone(),
        ..new
    }
}

/// A change in the words operators know: rvsadm's for services and real servers (as `-S`
/// writes them), sysctl's and ip-neigh's for the rest.
pub fn describe(request: &Request) -> String {
    let saved = |spec: &ServiceSpec, dest: Option<&DestSpec>| {
        let dests = dest
            .map(|d| crate::model::DestStatus {
                spec: d.clone(),
                active_conns: 0,
                inactive_conns: 0,
                stats: Stats::default(),
            })
            .into_iter()
            .collect();
        let status = ServiceStatus {
            spec: spec.clone(),
            dests,
            stats: Stats::default(),
        };
        // The service's line, then the real server's.
        let text = format::save(&[status]);
        let line = text.lines().nth(usize::from(dest.is_some()));
        line.unwrap_or_default().to_string()
    };
    let bare = |key: &ServiceKey| ServiceSpec {
        key: *key,
        scheduler: cli::DEFAULT_SCHEDULER,
        persistence: None,
        netmask: crate::model::default_netmask(),
        sched_flags: Default::default(),
        ops: false,
    };
    let service = |key: &ServiceKey| format!("{} {}:{}", key.protocol.flag(), key.addr, key.port);
    match request {
        Request::AddService(spec) => saved(spec, None),
        Request::EditService(spec) => saved(spec, None).replacen("-A", "-E", 1),
        Request::DelService(key) => format!("-D {}", service(key)),
        Request::AddDest { service, dest } => saved(&bare(service), Some(dest)),
        Request::EditDest { service, dest } => {
            saved(&bare(service), Some(dest)).replacen("-a", "-e", 1)
        }
        Request::DelDest {
            service: key,
            addr,
            port,
        } => format!("-d {} -r {addr}:{port}", service(key)),
        Request::SetTimeouts(t) => format!("--set {} {} {}", t.tcp, t.tcp_fin, t.udp),
        Request::SetSysctls(pairs) => {
            let set: Vec<String> = pairs
                .iter()
                .map(|(n, v)| format!("{PREFIX}{n}={v}"))
                .collect();
            format!("sysctl -w {}", set.join(" "))
        }
        Request::AddNeighbour(n) => {
            format!("neigh replace {} lladdr {} dev {}", n.addr, n.mac, n.port)
        }
        Request::DelNeighbour { port, addr } => format!("neigh del {addr} dev {port}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, SchedulerKind};

    const PORT: &str = "[[ports]]\nname = \"ext\"\ndevice = \"net_null0\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";

    fn config(extra: &str, services: &str) -> Config {
        let text = format!("services = \"\"\"\n{services}\"\"\"\n{extra}\n{PORT}");
        Config::parse(&text, "t.toml").unwrap()
    }

    fn key(port: u16) -> ServiceKey {
        ServiceKey {
            protocol: Protocol::Tcp,
            addr: "198.51.100.1".parse().unwrap(),
            port,
        }
    }

    fn lines(p: &Plan) -> Vec<String> {
        p.changes.iter().map(describe).collect()
    }

    const BASE: &str = "-A -t 198.51.100.1:80 -s rr\n\
                        -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
                        -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1\n\
                        -A -t 198.51.100.1:443 -s wlc\n\
                        -a -t 198.51.100.1:443 -r 192.0.2.2:443 -m -w 1\n";

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let a = config("", BASE);
        let p = plan(&a, &a.clone()).unwrap();
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn services_and_real_servers_added_edited_and_removed() {
        let old = config("", BASE);
        let new = config(
            "",
            "-A -t 198.51.100.1:80 -s wrr -p 60\n\
             -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 3 -x 10 -y 5\n\
             -a -t 198.51.100.1:80 -r 192.0.2.4 -m -w 1\n\
             -A -u 198.51.100.1:53 -s rr\n\
             -a -u 198.51.100.1:53 -r 192.0.2.5:53 -m\n",
        );
        let p = plan(&old, &new).unwrap();
        assert_eq!(
            lines(&p),
            [
                "-D -t 198.51.100.1:443",
                "-E -t 198.51.100.1:80 -s wrr -p 60",
                "-A -u 198.51.100.1:53 -s rr",
                "-d -t 198.51.100.1:80 -r 192.0.2.3:80",
                "-e -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 3 -x 10 -y 5",
                // `-r host` alone means the virtual port, as the daemon reads it.
                "-a -t 198.51.100.1:80 -r 192.0.2.4:80 -m -w 1",
                "-a -u 198.51.100.1:53 -r 192.0.2.5:53 -m -w 1",
            ]
        );
        assert!(p.not_live.is_empty(), "{:?}", p.not_live);
        // The removed service's real servers go with it: no -d of their own.
        assert!(!p
            .changes
            .iter()
            .any(|r| matches!(r, Request::DelDest { service, .. } if *service == key(443))));
    }

    #[test]
    fn flags_and_edit_lines_are_resolved_before_the_diff() {
        let old = config("", "-A -t 198.51.100.1:80 -s sh -b sh-port\n");
        // The same service written as -A then -E: the result is what counts.
        let same = config(
            "",
            "-A -t 198.51.100.1:80 -s rr\n-E -t 198.51.100.1:80 -s sh -b sh-port\n",
        );
        assert_eq!(plan(&old, &same).unwrap(), Plan::default());
        let new = config("", "-A -t 198.51.100.1:80 -s sh -b sh-fallback,sh-port\n");
        let p = plan(&old, &new).unwrap();
        match p.changes.as_slice() {
            [Request::EditService(spec)] => {
                assert_eq!(spec.scheduler, SchedulerKind::Sh);
                assert!(spec.sched_flags.sh_fallback && spec.sched_flags.sh_port);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeouts_from_the_table_and_set_lines() {
        let old = config(
            "[conntrack.timeouts]\ntcp = 900\ntcp_fin = 120\nudp = 300\n",
            "",
        );
        let new = config(
            "[conntrack.timeouts]\ntcp = 900\ntcp_fin = 120\nudp = 300\n",
            "--set 0 60 0\n",
        );
        let p = plan(&old, &new).unwrap();
        assert_eq!(lines(&p), ["--set 900 60 300"]);
        // No table means the defaults: the same timeouts written out change nothing.
        let defaults = config("", "");
        assert_eq!(plan(&old, &defaults).unwrap(), Plan::default());
    }

    #[test]
    fn only_changed_sysctls_are_set_and_a_removed_one_returns_to_its_default() {
        let old = config("[ipvs]\nexpire_nodest_conn = 1\nsloppy_tcp = 1\n", "");
        let new = config("[ipvs]\nexpire_nodest_conn = 1\nsecure_tcp = 2\n", "");
        let p = plan(&old, &new).unwrap();
        assert_eq!(
            p.changes,
            [Request::SetSysctls(vec![
                ("secure_tcp".into(), 2),
                ("sloppy_tcp".into(), 0)
            ])]
        );
    }

    #[test]
    fn neighbours_added_replaced_and_removed() {
        let n = |addr: &str, mac: &str| {
            format!("[[neighbours]]\naddress = \"{addr}\"\nmac = \"{mac}\"\nport = \"ext\"\n")
        };
        let old = config(
            &format!(
                "{}{}",
                n("192.0.2.7", "02:00:00:00:00:07"),
                n("192.0.2.8", "02:00:00:00:00:08")
            ),
            "",
        );
        let new = config(
            &format!(
                "{}{}",
                n("192.0.2.8", "02:00:00:00:00:88"),
                n("192.0.2.9", "02:00:00:00:00:09")
            ),
            "",
        );
        let p = plan(&old, &new).unwrap();
        assert_eq!(
            lines(&p),
            [
                "neigh del 192.0.2.7 dev ext",
                "neigh replace 192.0.2.8 lladdr 02:00:00:00:00:88 dev ext",
                "neigh replace 192.0.2.9 lladdr 02:00:00:00:00:09 dev ext",
            ]
        );
    }

    #[test]
    fn fields_that_need_a_restart_are_reported_not_planned() {
        let old = config("", BASE);
        let mut new = old.clone();
        new.eal.args.push("--no-huge".into());
        new.ports[0].mtu = 9000;
        new.workers.lcores = vec![1, 2];
        new.conntrack.capacity = 4096;
        new.control.socket = "/run/rvs/other.sock".into();
        new.log.level = Some("debug".into());
        new.metrics = Some(crate::config::MetricsConfig {
            listen: "198.51.100.1:9180".parse().unwrap(),
            optional: false,
        });
        let p = plan(&old, &new).unwrap();
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        let keys: Vec<&str> = p
            .not_live
            .iter()
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "eal",
                "ports",
                "workers",
                "conntrack.capacity",
                "control",
                "log",
                "metrics"
            ]
        );
        // Timeouts live in [conntrack] too, but change live.
        new.conntrack.timeouts = Some(Timeouts {
            tcp: 60,
            ..Timeouts::default()
        });
        let p = plan(&old, &new).unwrap();
        assert_eq!(lines(&p), ["--set 60 120 300"]);
        // After the reload the restart-only keys are still the running ones, so the next
        // reload of the same file reports them again and plans nothing.
        let now = in_force(&old, new.clone());
        assert_eq!(now.conntrack.timeouts, new.conntrack.timeouts);
        let again = plan(&now, &new).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert_eq!(again.not_live.len(), 7, "{:?}", again.not_live);
        assert_eq!(plan(&now, &old).unwrap().not_live.len(), 0);
    }

    #[test]
    fn an_edit_of_a_service_the_file_never_added_is_named_with_its_line() {
        let old = config("", BASE);
        let mut new = old.clone();
        new.services =
            "-A -t 198.51.100.1:80 -s rr\n-e -t 198.51.100.1:80 -r 192.0.2.9:80 -w 2\n".into();
        let err = plan(&old, &new).unwrap_err();
        assert!(err.starts_with("services: line 2: "), "{err}");
    }
}
