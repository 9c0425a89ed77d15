//! IPv6 services in the ServiceManager and the snapshot's IPv6 twins: the IPv4 lookups never
//! see them, families are never mixed, the netmask is a prefix length.

use control::model::{Netmask, Protocol, SchedulerKind, ServiceKey};
use control::proto::{Request, Response};
use std::net::{IpAddr, Ipv6Addr};
use testkit::director;
use testkit::plan::{CIP, VIP};
use testkit::services::{dest, service, tcp, udp};

const PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn ipv6_services_have_their_own_lookups() {
    let (dp, mut mgr) = director::one_arm(128, 1, &[CIP], PEER);
    let vip6 = v6("2001:db8:100::1");
    let rip6 = v6("2001:db8:2::2");
    let key6 = tcp(vip6, 80);
    let mut spec = service(key6, SchedulerKind::Sh);
    // The IPv4 default netmask (what JSON without the field reads as) becomes /128.
    spec.netmask = control::model::default_netmask();
    spec.persistence = Some(60);
    assert_eq!(mgr.handle(Request::AddService(spec)), Response::Ok);
    assert_eq!(
        mgr.handle(Request::AddDest {
            service: key6,
            dest: dest(rip6, 8080, 1)
        }),
        Response::Ok
    );
    let mut ops = service(udp(vip6, 53), SchedulerKind::Rr);
    ops.ops = true;
    assert_eq!(mgr.handle(Request::AddService(ops)), Response::Ok);
    assert_eq!(
        mgr.handle(Request::AddDest {
            service: udp(vip6, 53),
            dest: dest(rip6, 5353, 1)
        }),
        Response::Ok
    );
    assert_eq!(
        mgr.handle(Request::AddService(service(
            tcp(VIP, 80),
            SchedulerKind::Rr
        ))),
        Response::Ok
    );
    let snap = dp.snapshot();
    let s = snap.service6(6, vip6, 80).expect("the IPv6 service");
    assert_eq!(s.spec.netmask, Netmask::V6(128));
    assert_eq!(s.dests[0].addr6(), rip6);
    assert!(snap.service6(17, vip6, 80).is_none());
    assert!(snap.service6(6, vip6, 81).is_none());
    assert!(snap.service(6, VIP, 80).is_some());
    assert!(snap.service6(6, v6("::ffff:198.51.100.1"), 80).is_none());
    assert!(snap.is_vip6(vip6));
    assert!(!snap.is_vip6(rip6));
    assert!(snap.is_vip(VIP));
    assert_eq!(snap.vips6().collect::<Vec<_>>(), [vip6]);
    assert!(snap.is_real_service6(6, rip6, 8080));
    assert!(!snap.is_real_service6(6, rip6, 80));
    assert!(!snap.is_real_service(6, "0.0.0.0".parse().unwrap(), 8080));
    let r = snap.ops_reply6(17, rip6, 5353).expect("ops reply");
    assert_eq!((r.vip, r.vport), (vip6, 53));
    assert!(snap.ops_reply6(17, rip6, 53).is_none());
    assert_eq!(snap.services().count(), 3);
}

#[test]
fn families_are_never_mixed() {
    let (_dp, mut mgr) = director::one_arm(128, 1, &[CIP], PEER);
    let key6 = tcp(v6("2001:db8:100::1"), 80);
    assert_eq!(
        mgr.handle(Request::AddService(service(key6, SchedulerKind::Rr))),
        Response::Ok
    );
    assert_eq!(
        mgr.handle(Request::AddService(service(
            tcp(VIP, 80),
            SchedulerKind::Rr
        ))),
        Response::Ok
    );
    for (svc, rip) in [
        (key6, IpAddr::from(CIP)),
        (tcp(VIP, 80), IpAddr::from(v6("2001:db8:2::2"))),
    ] {
        match mgr.handle(Request::AddDest {
            service: svc,
            dest: dest(rip, 80, 1),
        }) {
            Response::Error(m) => assert!(
                m.starts_with("Operation not supported with specified address family"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // A dotted netmask on an IPv6 service, or a prefix length on an IPv4 one, is refused.
    let mut bad = service(tcp(v6("2001:db8:100::2"), 80), SchedulerKind::Rr);
    bad.netmask = Netmask::V4("255.255.0.0".parse().unwrap());
    assert!(
        matches!(mgr.handle(Request::AddService(bad)), Response::Error(m) if m.contains("ipv6 netmask"))
    );
    let mut bad = service(tcp(VIP, 81), SchedulerKind::Rr);
    bad.netmask = Netmask::V6(64);
    assert!(matches!(
        mgr.handle(Request::AddService(bad)),
        Response::Error(_)
    ));
    let _ = ServiceKey {
        protocol: Protocol::Tcp,
        addr: VIP.into(),
        port: 1,
    };
}
