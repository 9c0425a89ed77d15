//! The service manager as the tests drive it: rvsadm lines for set-up, and the plain
//! requests and answers around it.

use control::cli::{parse_restore, Table};
use control::model::{
    ConnStatus, DestSpec, Forward, Protocol, SchedulerKind, ServiceKey, ServiceSpec, ServiceStatus,
};
use control::proto::{Request, Response};
use dataplane::service::ServiceManager;

/// Applies rvsadm command lines (`-A -t 198.51.100.1:80 -s rr`, one per line, as `rvsadm -R`
/// reads them) to `mgr`, each edit completed from the current state as rvsadm does; every line
/// must be accepted.
pub fn rvsadm(mgr: &mut ServiceManager, lines: &str) {
    let changes = parse_restore(lines).unwrap_or_else(|e| panic!("{}\n{lines}", e.0));
    let mut table = Table::new(&services(mgr));
    for (line, change) in changes {
        let request = table
            .resolve(&change)
            .unwrap_or_else(|e| panic!("line {line}: {}\n{lines}", e.0));
        ok(mgr, request);
    }
}

/// A request that must succeed.
pub fn ok(mgr: &mut ServiceManager, request: Request) {
    assert_eq!(mgr.handle(request.clone()), Response::Ok, "{request:?}");
}

/// Every service, as `-L` lists them.
pub fn services(mgr: &mut ServiceManager) -> Vec<ServiceStatus> {
    match mgr.handle(Request::List { service: None }) {
        Response::Services { services, .. } => services,
        other => panic!("List answered {other:?}"),
    }
}

/// The one service `key`, as `-L -t|-u` lists it.
pub fn listed(mgr: &mut ServiceManager, key: ServiceKey) -> ServiceStatus {
    match mgr.handle(Request::List { service: Some(key) }) {
        Response::Services { mut services, .. } => {
            assert_eq!(services.len(), 1, "{key} listed once");
            services.remove(0)
        }
        other => panic!("List {key} answered {other:?}"),
    }
}

/// Connections and persistence templates, as `-L -c` lists them.
pub fn conns(mgr: &mut ServiceManager) -> Vec<ConnStatus> {
    match mgr.handle(Request::ListConns) {
        Response::Conns(c) => c,
        other => panic!("ListConns answered {other:?}"),
    }
}

pub fn tcp(addr: impl Into<std::net::IpAddr>, port: u16) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Tcp,
        addr: addr.into(),
        port,
    }
}

pub fn udp(addr: impl Into<std::net::IpAddr>, port: u16) -> ServiceKey {
    ServiceKey {
        protocol: Protocol::Udp,
        addr: addr.into(),
        port,
    }
}

/// `-A` with `-s scheduler` and nothing else.
pub fn service(key: ServiceKey, scheduler: SchedulerKind) -> ServiceSpec {
    ServiceSpec {
        key,
        scheduler,
        persistence: None,
        netmask: control::model::Netmask::full(key.addr),
        sched_flags: Default::default(),
        ops: false,
    }
}

/// `-a -r addr:port -m -w weight`, no thresholds.
pub fn dest(addr: impl Into<std::net::IpAddr>, port: u16, weight: u32) -> DestSpec {
    DestSpec {
        addr: addr.into(),
        port,
        weight,
        forward: Forward::Masq,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::director::one_arm;
    use crate::plan::{RIP1, RIP2, VIP};

    #[test]
    fn rvsadm_lines_make_the_requests_they_say() {
        let (_, mut by_lines) = one_arm(64, 1, &[], [0; 6]);
        rvsadm(
            &mut by_lines,
            "-A -t 198.51.100.1:80 -s rr\n\
             -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
             -a -t 198.51.100.1:80 -r 192.0.2.3:8080 -m -w 3\n\
             # an edit takes what it leaves out from the current state\n\
             -e -t 198.51.100.1:80 -r 192.0.2.3:8080 -w 2\n\
             -A -u 198.51.100.1:53 -s wlc",
        );
        let (_, mut by_requests) = one_arm(64, 1, &[], [0; 6]);
        ok(
            &mut by_requests,
            Request::AddService(service(tcp(VIP, 80), SchedulerKind::Rr)),
        );
        for d in [dest(RIP1, 80, 1), dest(RIP2, 8080, 2)] {
            ok(
                &mut by_requests,
                Request::AddDest {
                    service: tcp(VIP, 80),
                    dest: d,
                },
            );
        }
        ok(
            &mut by_requests,
            Request::AddService(service(udp(VIP, 53), SchedulerKind::Wlc)),
        );
        assert_eq!(services(&mut by_lines), services(&mut by_requests));
        assert!(conns(&mut by_lines).is_empty());
    }

    #[test]
    #[should_panic(expected = "Service not defined")]
    fn a_refused_line_fails_the_test() {
        let (_, mut mgr) = one_arm(64, 1, &[], [0; 6]);
        rvsadm(&mut mgr, "-a -t 198.51.100.1:80 -r 192.0.2.2:80");
    }
}
