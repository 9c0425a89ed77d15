//! Static neighbours through the ServiceManager (`rvsctl neigh`): added by port name, used by
//! the packet path without an ARP request, never changed by learning, listed beside the learnt
//! ones, deleted; bad ones refused with the valid choices named.

use control::config::MacAddr;
use control::proto::{Neighbour, Request, Response};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use std::sync::Arc;
use testkit::director::{self, EXT_MAC, INT_MAC};
use testkit::plan::{CIP, CLIENT_MAC, DIP, RIP1, RS1_MAC, RS2_MAC, VIP};
use testkit::services::rvsadm;
use testkit::{arp, tcp_frame, SYN};

const EXT: u16 = 0;
const INT: u16 = 1;

fn setup() -> (Arc<Dataplane>, ServiceManager) {
    let dp = Dataplane::new(DataplaneConfig {
        ports: director::two_arm_ports(None, 1500),
        conn_capacity: 1024,
        timeouts: Default::default(),
        workers: 1,
    });
    let mut m = ServiceManager::new(dp.clone());
    rvsadm(
        &mut m,
        "-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m",
    );
    (dp, m)
}

fn rs1_static() -> Neighbour {
    Neighbour {
        port: "int".into(),
        addr: RIP1.into(),
        mac: MacAddr(RS1_MAC),
        permanent: true,
    }
}

fn listed(m: &mut ServiceManager) -> Vec<Neighbour> {
    match m.handle(Request::ListNeighbours) {
        Response::Neighbours(v) => v,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_static_neighbour_is_used_at_once_and_learning_does_not_change_it() {
    let (dp, mut m) = setup();
    assert_eq!(m.handle(Request::AddNeighbour(rs1_static())), Response::Ok);
    let mut p = Pipeline::new(dp.clone(), 0);
    p.begin_burst(1);
    let mut syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), SYN, b"");
    assert_eq!(p.process(EXT, &mut syn), Action::Tx(INT), "no ARP hold");
    assert_eq!(&syn[..6], &RS1_MAC, "sent to the static MAC");

    // An ARP reply claiming RIP1 at another MAC is learnt from, but the static entry stays.
    let reply = arp(2, RS2_MAC, RIP1, INT_MAC, DIP);
    let mut frame = testkit::eth(INT_MAC, RS2_MAC, 0x0806, &reply);
    p.process(INT, &mut frame);
    let mut syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40001), (VIP, 80), SYN, b"");
    assert_eq!(p.process(EXT, &mut syn), Action::Tx(INT));
    assert_eq!(&syn[..6], &RS1_MAC, "still the static MAC");
    let permanent: Vec<Neighbour> = listed(&mut m).into_iter().filter(|n| n.permanent).collect();
    assert_eq!(permanent, vec![rs1_static()]);
}

#[test]
fn static_and_learnt_are_listed_and_deleted_by_port_name() {
    let (dp, mut m) = setup();
    dp.neigh().learn(EXT, CIP, CLIENT_MAC);
    assert_eq!(m.handle(Request::AddNeighbour(rs1_static())), Response::Ok);
    let learnt = Neighbour {
        port: "ext".into(),
        addr: CIP.into(),
        mac: MacAddr(CLIENT_MAC),
        permanent: false,
    };
    assert_eq!(listed(&mut m), vec![learnt.clone(), rs1_static()]);

    let del = |port: &str| Request::DelNeighbour {
        port: port.into(),
        addr: RIP1.into(),
    };
    assert!(matches!(m.handle(del("ext")), Response::Error(e) if e.contains("no neighbour")));
    assert_eq!(m.handle(del("int")), Response::Ok);
    assert_eq!(listed(&mut m), vec![learnt]);
    assert_eq!(dp.neigh().lookup(INT, RIP1), None);
}

#[test]
fn bad_neighbours_are_refused_and_change_nothing() {
    let (_, mut m) = setup();
    let mut bad_port = rs1_static();
    bad_port.port = "eth9".into();
    let r = m.handle(Request::AddNeighbour(bad_port));
    assert!(
        matches!(&r, Response::Error(e) if e.contains("eth9") && e.contains("ext, int")),
        "{r:?}"
    );
    let mut group_mac = rs1_static();
    group_mac.mac = MacAddr([1, 0, 0x5e, 0, 0, 1]);
    let r = m.handle(Request::AddNeighbour(group_mac));
    assert!(
        matches!(&r, Response::Error(e) if e.contains("unicast MAC")),
        "{r:?}"
    );
    let mut broadcast = rs1_static();
    broadcast.addr = std::net::Ipv4Addr::BROADCAST.into();
    let r = m.handle(Request::AddNeighbour(broadcast));
    assert!(
        matches!(&r, Response::Error(e) if e.contains("unicast address")),
        "{r:?}"
    );
    assert_eq!(listed(&mut m), vec![]);
}

#[test]
fn a_static_ipv6_neighbour_is_never_solicited() {
    use dataplane::stats::Event;
    use testkit::ipv6::*;
    let (dp, mut m) = two_arm6(
        1500,
        "-A -t [2001:db8:100::1]:80 -s rr\n-a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:80 -m",
    );
    let rs2 = Neighbour {
        port: "int".into(),
        addr: RIP6_2.into(),
        mac: MacAddr(RS2_MAC),
        permanent: true,
    };
    assert_eq!(m.handle(Request::AddNeighbour(rs2.clone())), Response::Ok);
    assert_eq!(dp.neigh6().lookup(INT, RIP6_2), Some(RS2_MAC));
    assert_eq!(dp.neigh().entries().len(), 0, "not in the ARP table");
    let mut p = Pipeline::new(dp.clone(), 0);
    p.begin_burst(1);
    let mut syn = tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, 40000), (VIP6, 80), SYN, b"");
    assert_eq!(p.process(EXT, &mut syn), Action::Tx(INT), "not held");
    assert_eq!(&syn[..6], &RS2_MAC, "sent to the static MAC");
    assert_eq!(dp.stats().events(Event::NeighSolicitations), 0);
    // An advertisement claiming RIP6_2 at another MAC does not move it.
    let mut na = neighbour_advertisement(INT_MAC, RS1_MAC, RIP6_2, DIP6);
    p.process(INT, &mut na);
    assert_eq!(dp.neigh6().lookup(INT, RIP6_2), Some(RS2_MAC));
    let permanent: Vec<Neighbour> = listed(&mut m).into_iter().filter(|n| n.permanent).collect();
    assert_eq!(permanent, vec![rs2.clone()]);
    let del = Request::DelNeighbour {
        port: "int".into(),
        addr: RIP6_2.into(),
    };
    assert_eq!(m.handle(del), Response::Ok);
    assert_eq!(dp.neigh6().lookup(INT, RIP6_2), None);
    // A group address is refused.
    let group = Neighbour {
        addr: "ff02::1".parse().unwrap(),
        ..rs2
    };
    let r = m.handle(Request::AddNeighbour(group));
    assert!(
        matches!(&r, Response::Error(e) if e.contains("unicast address")),
        "{r:?}"
    );
}
