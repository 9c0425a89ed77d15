//! Persistence (`-p`, `-M`) end to end on byte buffers: templates keep a client on its real
//! server across connections, expire `timeout` seconds after the last connection that used
//! them, group clients by netmask, and go when their server is removed or, with
//! `expire_quiescent_template` 1, set to weight 0.
//! The service's scheduler is rr, so without persistence consecutive connections alternate.

use control::model::{Protocol, SchedulerKind, ServiceKey, Timeouts};
use control::proto::{Request, Response};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::plan::{client, RIP1, RIP2, VIP};
use testkit::services::{self, dest, rvsadm, service};
use testkit::*;

const EXT: u16 = 0;
const INT: u16 = 1;
use testkit::director::{self, EXT_MAC};
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

fn key(protocol: Protocol, port: u16) -> ServiceKey {
    ServiceKey {
        protocol,
        addr: VIP.into(),
        port,
    }
}

struct Director {
    dp: Arc<Dataplane>,
    w: Pipeline,
    mgr: ServiceManager,
    now: u64,
    next_port: u16,
}

impl Director {
    /// A two-arm director with one rr service (`key`), persistent for `timeout` seconds with
    /// `netmask`, and real servers RIP1 and RIP2 (on `rport`).
    fn new(key: ServiceKey, timeout: u32, netmask: &str, rport: u16) -> Director {
        let dp = Dataplane::new(DataplaneConfig {
            ports: director::two_arm_ports(None, 1500),
            conn_capacity: 4096,
            timeouts: Timeouts::default(),
            workers: 1,
        });
        for last in 2..=60 {
            dp.neigh().learn(EXT, client(last), PEER_MAC);
        }
        for rip in [RIP1, RIP2] {
            dp.neigh().learn(INT, rip, PEER_MAC);
        }
        let w = Pipeline::new(dp.clone(), 0);
        let mut d = Director {
            mgr: ServiceManager::new(dp.clone()),
            dp,
            w,
            now: 1_000,
            next_port: 10_000,
        };
        let vs = match key.protocol {
            Protocol::Tcp => format!("-t {}:{}", key.addr, key.port),
            Protocol::Udp => format!("-u {}:{}", key.addr, key.port),
        };
        // Without a port (`rport` 0) a real server takes the virtual port.
        let rs = |rip: Ipv4Addr| match rport {
            0 => rip.to_string(),
            p => format!("{rip}:{p}"),
        };
        rvsadm(
            &mut d.mgr,
            &format!(
                "-A {vs} -s rr -p {timeout} -M {netmask}\n\
                 -a {vs} -r {} -m -w 1\n\
                 -a {vs} -r {} -m -w 1",
                rs(RIP1),
                rs(RIP2)
            ),
        );
        d
    }

    fn ok(&mut self, r: Request) {
        assert_eq!(self.mgr.handle(r), Response::Ok);
    }

    /// A new connection from `from` (a fresh source port) to VIP:`vport`: the real server
    /// and port it went to.
    fn connect(&mut self, proto: Protocol, from: Ipv4Addr, vport: u16) -> (Ipv4Addr, u16) {
        self.next_port += 1;
        let src = (from, self.next_port);
        let mut f = match proto {
            Protocol::Tcp => tcp_frame(EXT_MAC, PEER_MAC, src, (VIP, vport), SYN, b""),
            Protocol::Udp => udp_frame(EXT_MAC, PEER_MAC, src, (VIP, vport), b"q", true),
        };
        self.w.begin_burst(self.now);
        let a = self.w.process(EXT, &mut f);
        assert_eq!(a, Action::Tx(INT), "{proto:?} from {from} to port {vport}");
        let seen = check(&f);
        (seen.dst, seen.dport)
    }

    fn tcp(&mut self, from: Ipv4Addr) -> Ipv4Addr {
        self.connect(Protocol::Tcp, from, 80).0
    }

    fn advance_s(&mut self, s: u64) {
        self.now += s * 1000;
    }
}

#[test]
fn a_client_stays_on_its_server_and_others_are_scheduled() {
    let mut d = Director::new(key(Protocol::Tcp, 80), 60, "255.255.255.255", 80);
    let first = d.tcp(client(10));
    assert_eq!(first, RIP1, "rr's first pick");
    for _ in 0..5 {
        assert_eq!(d.tcp(client(10)), RIP1, "same client, same server");
    }
    // New clients are scheduled by rr (which moved on only once).
    assert_eq!(d.tcp(client(11)), RIP2);
    assert_eq!(d.tcp(client(12)), RIP1);
    assert_eq!(d.tcp(client(11)), RIP2);
    assert_eq!(d.tcp(client(10)), RIP1);
    assert_eq!(d.dp.persist().live_count(d.now), 3);
}

#[test]
fn the_template_expires_timeout_after_the_last_connection() {
    let mut d = Director::new(key(Protocol::Tcp, 80), 10, "255.255.255.255", 80);
    assert_eq!(d.tcp(client(10)), RIP1);
    // Each connection within 10 s of the previous one keeps it.
    for _ in 0..4 {
        d.advance_s(8);
        assert_eq!(d.tcp(client(10)), RIP1);
    }
    // 11 s of silence: the template is gone, rr picks again (RIP2 is next).
    d.advance_s(11);
    assert_eq!(d.dp.persist().live_count(d.now), 0);
    assert_eq!(d.tcp(client(10)), RIP2);
    assert_eq!(d.tcp(client(10)), RIP2);
}

#[test]
fn netmask_groups_clients() {
    let mut d = Director::new(key(Protocol::Tcp, 80), 60, "255.255.255.240", 80);
    // 198.51.100.16-31 share one template, .32-47 another.
    let a = d.tcp(client(16));
    for last in 17..32 {
        assert_eq!(d.tcp(client(last)), a, "client .{last}");
    }
    let b = d.tcp(client(32));
    assert_ne!(a, b, "another /28 is scheduled afresh (rr moves on)");
    assert_eq!(d.tcp(client(47)), b);
    assert_eq!(d.tcp(client(20)), a);
}

#[test]
fn weight_zero_keeps_the_template_by_default() {
    // expire_quiescent_template 0 (the kernel's default): the client stays on its server.
    let mut d = Director::new(key(Protocol::Tcp, 80), 60, "255.255.255.255", 80);
    assert_eq!(d.tcp(client(10)), RIP1);
    d.ok(Request::EditDest {
        service: key(Protocol::Tcp, 80),
        dest: dest(RIP1, 80, 0),
    });
    for _ in 0..3 {
        assert_eq!(
            d.tcp(client(10)),
            RIP1,
            "quiesced server: the template holds"
        );
    }
    assert_eq!(d.tcp(client(11)), RIP2, "a new client is not sent there");
}

#[test]
fn weight_zero_drops_the_template_with_expire_quiescent_template() {
    let mut d = Director::new(key(Protocol::Tcp, 80), 60, "255.255.255.255", 80);
    d.ok(Request::SetSysctls(vec![(
        "expire_quiescent_template".into(),
        1,
    )]));
    assert_eq!(d.tcp(client(10)), RIP1);
    d.ok(Request::EditDest {
        service: key(Protocol::Tcp, 80),
        dest: dest(RIP1, 80, 0),
    });
    assert_eq!(d.tcp(client(10)), RIP2, "quiesced server: new template");
    d.ok(Request::EditDest {
        service: key(Protocol::Tcp, 80),
        dest: dest(RIP1, 80, 1),
    });
    assert_eq!(d.tcp(client(10)), RIP2, "the new template stays");
}

#[test]
fn removing_the_server_drops_the_template() {
    let mut d = Director::new(key(Protocol::Tcp, 80), 60, "255.255.255.255", 80);
    assert_eq!(d.tcp(client(10)), RIP1);
    d.ok(Request::DelDest {
        service: key(Protocol::Tcp, 80),
        addr: RIP1.into(),
        port: 80,
    });
    assert_eq!(d.tcp(client(10)), RIP2);
    // Added back (a new real server): the client stays where its template now points.
    d.ok(Request::AddDest {
        service: key(Protocol::Tcp, 80),
        dest: dest(RIP1, 80, 1),
    });
    assert_eq!(d.tcp(client(10)), RIP2);
}

#[test]
fn udp_services_persist_too() {
    let mut d = Director::new(key(Protocol::Udp, 53), 30, "255.255.255.255", 53);
    let (first, _) = d.connect(Protocol::Udp, client(10), 53);
    for _ in 0..4 {
        assert_eq!(d.connect(Protocol::Udp, client(10), 53).0, first);
    }
    assert_ne!(d.connect(Protocol::Udp, client(11), 53).0, first);
}

#[test]
fn a_port_zero_service_takes_every_port_and_keeps_the_client_on_one_server() {
    // -A -t VIP:0 -p 60; -a -r RIP (no port: the client's port).
    let mut d = Director::new(key(Protocol::Tcp, 0), 60, "255.255.255.255", 0);
    let (rs, port) = d.connect(Protocol::Tcp, client(10), 80);
    assert_eq!(port, 80, "the real port is the client's destination port");
    for vport in [443, 8080, 22, 80] {
        assert_eq!(d.connect(Protocol::Tcp, client(10), vport), (rs, vport));
    }
    let (other, _) = d.connect(Protocol::Tcp, client(11), 443);
    assert_ne!(other, rs);
    // One template per client for all ports.
    assert_eq!(d.dp.persist().live_count(d.now), 2);
}

#[test]
fn a_port_zero_service_yields_to_a_service_on_the_port() {
    let mut d = Director::new(key(Protocol::Tcp, 0), 60, "255.255.255.255", 0);
    let web = key(Protocol::Tcp, 80);
    d.ok(Request::AddService(service(web, SchedulerKind::Rr)));
    d.ok(Request::AddDest {
        service: web,
        dest: dest(RIP2, 8080, 1),
    });
    assert_eq!(
        d.connect(Protocol::Tcp, client(10), 80),
        (RIP2, 8080),
        "the port-80 service"
    );
    assert_eq!(d.connect(Protocol::Tcp, client(10), 81).1, 81, "port 0");
}

#[test]
fn zero_port_needs_persistence() {
    let mut d = Director::new(key(Protocol::Tcp, 80), 60, "255.255.255.255", 80);
    let r = d.mgr.handle(Request::AddService(service(
        key(Protocol::Udp, 0),
        SchedulerKind::Rr,
    )));
    assert_eq!(
        r,
        Response::Error("Zero port specified for non-persistent service".into())
    );
}

/// `-L -c` lists the templates beside the connections, as the kernel does: the client network
/// with port 0, state NONE (TCP) or UDP, the real server, seconds left.
#[test]
fn templates_are_listed_with_the_connections() {
    let mut d = Director::new(key(Protocol::Tcp, 80), 60, "255.255.255.0", 80);
    assert_eq!(d.tcp(client(10)), RIP1);
    assert_eq!(d.tcp(client(11)), RIP1, "same /24, same template");
    d.advance_s(5);
    assert_eq!(d.tcp(client(12)), RIP1);
    d.w.begin_burst(d.now);
    let all = services::conns(&mut d.mgr);
    let (templates, conns): (Vec<_>, Vec<_>) = all.iter().partition(|c| c.state == "NONE");
    assert_eq!(conns.len(), 3, "{all:?}");
    assert!(conns.iter().all(|c| c.state == "SYN_RECV"), "{all:?}");
    assert_eq!(templates.len(), 1, "{all:?}");
    let t = templates[0];
    assert_eq!(
        (t.protocol, t.client, t.virt, t.dest, t.expires_in),
        (
            Protocol::Tcp,
            (Ipv4Addr::new(198, 51, 100, 0).into(), 0),
            (VIP.into(), 80),
            (RIP1.into(), 80),
            60
        ),
        "refreshed by the last connection"
    );

    // A UDP port-0 service: one template for every port, listed with virtual port 0.
    let mut d = Director::new(key(Protocol::Udp, 0), 30, "255.255.255.255", 0);
    assert_eq!(d.connect(Protocol::Udp, client(20), 53), (RIP1, 53));
    assert_eq!(d.connect(Protocol::Udp, client(20), 123), (RIP1, 123));
    let all = services::conns(&mut d.mgr);
    let templates: Vec<_> = all.iter().filter(|c| c.client.1 == 0).collect();
    assert_eq!(templates.len(), 1, "{all:?}");
    assert_eq!(
        (
            templates[0].state.as_str(),
            templates[0].client.0,
            templates[0].virt,
            templates[0].dest
        ),
        ("UDP", client(20).into(), (VIP.into(), 0), (RIP1.into(), 0)),
    );
    // Past the timeout the template is not listed any more.
    d.advance_s(31);
    d.w.begin_burst(d.now);
    let all = services::conns(&mut d.mgr);
    assert!(all.iter().all(|c| c.client.1 != 0), "{all:?}");
}
