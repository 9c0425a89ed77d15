//! ServiceManager: ipvsadm-like requests, errors that change nothing, counters that survive
//! snapshot rebuilds.

use control::model::{Protocol, SchedulerKind, ServiceKey, ServiceSpec, Timeouts};
use control::proto::{Request, Response};
use dataplane::pipeline::{Action, Dataplane, Pipeline};
use dataplane::service::ServiceManager;
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::director;
use testkit::plan::{CIP, ONE_ARM_MAC as MAC, VIP};
use testkit::services::{dest, service, tcp};
use testkit::*;

const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];
const RIP1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 21);
const RIP2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 22);

fn key(port: u16) -> ServiceKey {
    tcp(VIP, port)
}

fn svc(port: u16, scheduler: SchedulerKind) -> ServiceSpec {
    service(key(port), scheduler)
}

/// One-arm director (role both) with one neighbour MAC for everything.
fn setup() -> (Arc<Dataplane>, ServiceManager) {
    director::one_arm(128, 1, &[CIP, RIP1, RIP2], PEER)
}

fn list(mgr: &mut ServiceManager) -> Response {
    mgr.handle(Request::List { service: None })
}

#[test]
fn errors_are_ipvsadm_like_and_change_nothing() {
    let (dp, mut mgr) = setup();
    assert_eq!(
        mgr.handle(Request::AddService(svc(80, SchedulerKind::Rr))),
        Response::Ok
    );
    assert_eq!(
        mgr.handle(Request::AddDest {
            service: key(80),
            dest: dest(RIP1, 80, 1)
        }),
        Response::Ok
    );
    let before = list(&mut mgr);
    let generation = dp.snapshot().generation;

    let mut sh_flag_on_rr = svc(81, SchedulerKind::Rr);
    sh_flag_on_rr.sched_flags.sh_port = true;
    let mut mh_flag_on_sh = svc(80, SchedulerKind::Sh);
    mh_flag_on_sh.sched_flags.mh_fallback = true;
    let mut bad_thresholds = dest(RIP2, 80, 1);
    bad_thresholds.upper_threshold = 5;
    bad_thresholds.lower_threshold = 6;
    let cases: Vec<(Request, &str)> = vec![
        (
            Request::AddService(svc(80, SchedulerKind::Rr)),
            "Service already exists",
        ),
        (
            Request::AddService(sh_flag_on_rr),
            "scheduler flag 'sh-port' does not apply to scheduler 'rr'",
        ),
        (
            Request::AddService(svc(0, SchedulerKind::Rr)),
            "Zero port specified for non-persistent service",
        ),
        (
            Request::EditService(svc(81, SchedulerKind::Rr)),
            "No such service",
        ),
        (
            Request::EditService(mh_flag_on_sh),
            "scheduler flag 'mh-fallback' does not apply to scheduler 'sh'",
        ),
        (Request::DelService(key(81)), "No such service"),
        (
            Request::AddDest {
                service: key(81),
                dest: dest(RIP2, 80, 1),
            },
            "Service not defined",
        ),
        (
            Request::AddDest {
                service: key(80),
                dest: dest(RIP1, 80, 3),
            },
            "Destination already exists",
        ),
        (
            Request::AddDest {
                service: key(80),
                dest: dest(RIP1, 0, 3),
            },
            "Destination already exists",
        ),
        (
            Request::AddDest {
                service: key(80),
                dest: dest(RIP2, 80, 65536),
            },
            "illegal weight 65536 (0..65535)",
        ),
        (
            Request::AddDest {
                service: key(80),
                dest: bad_thresholds,
            },
            "lower threshold 6 is larger than upper threshold 5",
        ),
        (
            Request::EditDest {
                service: key(81),
                dest: dest(RIP1, 80, 2),
            },
            "Service not defined",
        ),
        (
            Request::EditDest {
                service: key(80),
                dest: dest(RIP2, 80, 2),
            },
            "No such destination",
        ),
        (
            Request::EditDest {
                service: key(80),
                dest: dest(RIP1, 80, 70000),
            },
            "illegal weight 70000 (0..65535)",
        ),
        (
            Request::DelDest {
                service: key(81),
                addr: RIP1.into(),
                port: 80,
            },
            "Service not defined",
        ),
        (
            Request::DelDest {
                service: key(80),
                addr: RIP1.into(),
                port: 8080,
            },
            "No such destination",
        ),
        (
            Request::List {
                service: Some(key(81)),
            },
            "No such service",
        ),
        (
            Request::Zero {
                service: Some(key(81)),
            },
            "No such service",
        ),
    ];
    for (req, want) in cases {
        assert_eq!(
            mgr.handle(req.clone()),
            Response::Error(want.into()),
            "{req:?}"
        );
        assert_eq!(list(&mut mgr), before, "{req:?} changed the services");
        assert_eq!(
            dp.snapshot().generation,
            generation,
            "{req:?} published a snapshot"
        );
    }
}

#[test]
fn list_edit_delete_clear() {
    let (dp, mut mgr) = setup();
    mgr.handle(Request::AddService(svc(80, SchedulerKind::Rr)));
    mgr.handle(Request::AddService(svc(22, SchedulerKind::Rr)));
    // -r without a port takes the virtual port.
    assert_eq!(
        mgr.handle(Request::AddDest {
            service: key(80),
            dest: dest(RIP1, 0, 1)
        }),
        Response::Ok
    );
    mgr.handle(Request::AddDest {
        service: key(80),
        dest: dest(RIP2, 8080, 1),
    });
    let Response::Services {
        table_size,
        services,
    } = list(&mut mgr)
    else {
        panic!()
    };
    assert_eq!(table_size, 128);
    let keys: Vec<u16> = services.iter().map(|s| s.spec.key.port).collect();
    assert_eq!(keys, [22, 80], "sorted by protocol, address, port");
    let d: Vec<(std::net::IpAddr, u16, u32)> = services[1]
        .dests
        .iter()
        .map(|d| (d.spec.addr, d.spec.port, d.spec.weight))
        .collect();
    assert_eq!(d, [(RIP1.into(), 80, 1), (RIP2.into(), 8080, 1)]);
    // The snapshot the workers see.
    let snap = dp.snapshot();
    assert!(snap.is_vip(VIP));
    assert_eq!(snap.service(6, VIP, 80).unwrap().dests.len(), 2);
    assert!(snap.service(17, VIP, 80).is_none());

    assert_eq!(
        mgr.handle(Request::EditDest {
            service: key(80),
            dest: dest(RIP2, 8080, 5)
        }),
        Response::Ok
    );
    // Listed alone.
    assert_eq!(services::listed(&mut mgr, key(80)).dests[1].spec.weight, 5);
    assert_eq!(
        mgr.handle(Request::DelDest {
            service: key(80),
            addr: RIP1.into(),
            port: 0
        }),
        Response::Ok
    );
    assert_eq!(dp.snapshot().service(6, VIP, 80).unwrap().dests.len(), 1);
    assert_eq!(mgr.handle(Request::DelService(key(22))), Response::Ok);
    assert_eq!(mgr.handle(Request::Clear), Response::Ok);
    let Response::Services { services, .. } = list(&mut mgr) else {
        panic!()
    };
    assert!(services.is_empty());
    assert!(!dp.snapshot().is_vip(VIP));
}

#[test]
fn timeouts_set_and_get() {
    let (_, mut mgr) = setup();
    assert_eq!(
        mgr.handle(Request::GetTimeouts),
        Response::Timeouts(Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300
        })
    );
    assert_eq!(
        mgr.handle(Request::SetTimeouts(Timeouts {
            tcp: 3600,
            tcp_fin: 0,
            udp: 30
        })),
        Response::Ok
    );
    assert_eq!(
        mgr.handle(Request::GetTimeouts),
        Response::Timeouts(Timeouts {
            tcp: 3600,
            tcp_fin: 120,
            udp: 30
        })
    );
}

fn syn(w: &mut Pipeline, cport: u16) -> Action {
    let mut f = tcp_frame(MAC, PEER, (CIP, cport), (VIP, 80), SYN, b"");
    w.process(0, &mut f)
}

#[test]
fn counters_survive_rebuilds_zero_and_slot_reuse() {
    let (dp, mut mgr) = setup();
    let mut w = Pipeline::new(dp.clone(), 0);
    mgr.handle(Request::AddService(svc(80, SchedulerKind::Rr)));
    mgr.handle(Request::AddDest {
        service: key(80),
        dest: dest(RIP1, 80, 1),
    });
    w.begin_burst(10);
    for p in 0..3 {
        assert_eq!(syn(&mut w, p), Action::Tx(0));
    }
    // A rebuild (another service added, the dest edited) keeps counts and stats.
    mgr.handle(Request::AddService(svc(443, SchedulerKind::Rr)));
    mgr.handle(Request::EditDest {
        service: key(80),
        dest: dest(RIP1, 80, 7),
    });
    w.begin_burst(20);
    let rs1 = |mgr: &mut ServiceManager| {
        services::listed(mgr, key(80)).dests.first().map(|d| {
            (
                d.active_conns,
                d.inactive_conns,
                d.stats.conns,
                d.stats.in_pkts,
            )
        })
    };
    // Half-open (SYN_RECV) connections are InActConn.
    assert_eq!(rs1(&mut mgr), Some((0, 3, 3, 3)));
    // -Z clears the traffic counters, not the connection counts.
    assert_eq!(mgr.handle(Request::Zero { service: None }), Response::Ok);
    assert_eq!(rs1(&mut mgr), Some((0, 3, 0, 0)));
    assert_eq!(syn(&mut w, 100), Action::Tx(0));
    assert_eq!(rs1(&mut mgr), Some((0, 4, 1, 1)));

    // Delete and re-add: a new real server whose counters start from zero; the old one's
    // connections go on until they end (here: SYN_RECV times out after 60 s).
    let old_slot = dp.snapshot().service(6, VIP, 80).unwrap().dests[0].slot;
    mgr.handle(Request::DelDest {
        service: key(80),
        addr: RIP1.into(),
        port: 80,
    });
    mgr.handle(Request::AddDest {
        service: key(80),
        dest: dest(RIP1, 80, 1),
    });
    let new_slot = dp.snapshot().service(6, VIP, 80).unwrap().dests[0].slot;
    assert_ne!(
        old_slot, new_slot,
        "a slot in use is never handed out again"
    );
    assert_eq!(rs1(&mut mgr), Some((0, 0, 0, 0)));
    assert_eq!(
        dp.conns().len(),
        4,
        "the removed server's connections go on"
    );
    // Timed out, and one aging sweep later.
    let later = 20 + 60_000 + dataplane::pipeline::AGING_SWEEP_MS;
    w.begin_burst(later);
    w.housekeeping(later);
    assert_eq!(
        dp.conns().len(),
        0,
        "connections of the removed server are gone"
    );
    // The service's stats keep the deleted server's traffic.
    let web = services::listed(&mut mgr, key(80));
    assert_eq!((web.stats.conns, web.stats.in_pkts), (1, 1));

    // Once nothing refers to the old slot, it is reused, with fresh counters.
    mgr.handle(Request::AddDest {
        service: key(80),
        dest: dest(RIP2, 80, 1),
    });
    let slots: Vec<u32> = dp
        .snapshot()
        .service(6, VIP, 80)
        .unwrap()
        .dests
        .iter()
        .map(|d| d.slot)
        .collect();
    assert_eq!(slots, [new_slot, old_slot]);
    let web = services::listed(&mut mgr, key(80));
    let rs2 = &web.dests[1];
    assert_eq!(
        (
            rs2.active_conns,
            rs2.inactive_conns,
            rs2.stats.conns,
            rs2.stats.in_pkts
        ),
        (0, 0, 0, 0)
    );
}

#[test]
fn list_conns_reports_state_and_expiry() {
    let (dp, mut mgr) = setup();
    let mut w = Pipeline::new(dp.clone(), 0);
    mgr.handle(Request::AddService(svc(80, SchedulerKind::Rr)));
    mgr.handle(Request::AddDest {
        service: key(80),
        dest: dest(RIP1, 8080, 1),
    });
    w.begin_burst(5_000);
    assert_eq!(syn(&mut w, 1234), Action::Tx(0));
    w.begin_burst(15_500);
    let Response::Conns(c) = mgr.handle(Request::ListConns) else {
        panic!()
    };
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].protocol, Protocol::Tcp);
    assert_eq!(c[0].state, "SYN_RECV");
    assert_eq!(
        c[0].expires_in, 50,
        "60 s from 5 s, seen at 15.5 s, rounded up"
    );
    assert_eq!(
        (c[0].client, c[0].virt, c[0].dest),
        ((CIP.into(), 1234), (VIP.into(), 80), (RIP1.into(), 8080))
    );
}
