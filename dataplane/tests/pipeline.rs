//! The packet path end to end on byte buffers: the LVS-NAT walk-through of DESIGN.md (client
//! 198.51.100.10, VIP 198.51.100.1, DIP 192.0.2.1, real servers 192.0.2.2 and 192.0.2.3).
//!
//! One file, past 600 lines: the walk-through's steps share one director and build on each other's
//! state.

use control::model::{SchedulerKind, ServiceKey, Timeouts};
use control::proto::{Request, Response};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use dataplane::stats::{DropReason, Event};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use testkit::plan::{BROADCAST as BCAST, CIP, CLIENT_MAC, DIP, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP};
use testkit::services::{self, dest, rvsadm, service, tcp, udp};
use testkit::*;

const EXT: u16 = 0;
const INT: u16 = 1;
use testkit::director::{self, EXT_MAC, INT_MAC};
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

fn web() -> ServiceKey {
    tcp(VIP, 80)
}

fn dns() -> ServiceKey {
    udp(VIP, 53)
}

struct Lab {
    dp: Arc<Dataplane>,
    w: Pipeline,
    mgr: ServiceManager,
    now: u64,
}

impl Lab {
    /// Two-arm director: ext 198.51.100.1/24, int 192.0.2.1/24; services web (TCP 80) and
    /// dns (UDP 53) on the VIP, both with RS1 and RS2.
    fn new(capacity: usize, gateway: Option<Ipv4Addr>) -> Lab {
        let ports = director::two_arm_ports(gateway, 1500);
        let dp = Dataplane::new(DataplaneConfig {
            ports,
            conn_capacity: capacity,
            timeouts: Timeouts::default(),
            workers: 1,
        });
        let w = Pipeline::new(dp.clone(), 0);
        let mut lab = Lab {
            mgr: ServiceManager::new(dp.clone()),
            dp,
            w,
            now: 1_000,
        };
        rvsadm(
            &mut lab.mgr,
            "-A -t 198.51.100.1:80 -s rr\n\
             -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
             -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1\n\
             -A -u 198.51.100.1:53 -s rr\n\
             -a -u 198.51.100.1:53 -r 192.0.2.2:53 -m -w 1\n\
             -a -u 198.51.100.1:53 -r 192.0.2.3:53 -m -w 1",
        );
        lab
    }

    fn ok(&mut self, r: Request) {
        assert_eq!(self.mgr.handle(r), Response::Ok);
    }

    fn send(&mut self, port: u16, frame: &mut [u8]) -> Action {
        self.w.begin_burst(self.now);
        let a = self.w.process(port, frame);
        self.w.housekeeping(self.now);
        a
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.dp.stats().drops(r)
    }

    /// Sends `frame` on `port`, which must drop it; the count of `reason` afterwards.
    #[track_caller]
    fn dropped(&mut self, port: u16, frame: &mut [u8], reason: DropReason) -> u64 {
        assert_eq!(self.send(port, frame), Action::Drop);
        self.drops(reason)
    }

    /// Teaches the director a neighbour through an ARP reply.
    fn learn(&mut self, port: u16, ip: Ipv4Addr, mac: [u8; 6]) {
        let (our_mac, our_ip) = if port == EXT {
            (EXT_MAC, VIP)
        } else {
            (INT_MAC, DIP)
        };
        let mut f = eth(our_mac, mac, 0x0806, &arp(2, mac, ip, our_mac, our_ip));
        assert_eq!(
            self.send(port, &mut f),
            Action::Drop,
            "replies are consumed"
        );
    }

    /// A client SYN to the web service; returns the action and the rewritten frame.
    fn syn(&mut self, cport: u16) -> (Action, Vec<u8>) {
        let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 80), SYN, b"");
        let a = self.send(EXT, &mut f);
        (a, f)
    }

    /// Both real servers and the client are known neighbours.
    fn with_neighbours(mut self) -> Lab {
        self.learn(EXT, CIP, CLIENT_MAC);
        self.learn(INT, RIP1, RS1_MAC);
        self.learn(INT, RIP2, RS2_MAC);
        self
    }

    fn conns(&mut self) -> Vec<control::model::ConnStatus> {
        services::conns(&mut self.mgr)
    }

    fn dest_counts(&mut self, key: ServiceKey) -> Vec<(Ipv4Addr, u64, u64)> {
        services::listed(&mut self.mgr, key)
            .dests
            .iter()
            .filter_map(|d| match d.spec.addr {
                IpAddr::V4(a) => Some((a, d.active_conns, d.inactive_conns)),
                IpAddr::V6(_) => None,
            })
            .collect()
    }
}

#[test]
fn arp_is_answered_for_our_addresses_and_vips() {
    let mut lab = Lab::new(64, None);
    // Who has 198.51.100.1 (VIP and ext address)? On ext.
    let mut f = arp_request(CLIENT_MAC, CIP, VIP);
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(EXT));
    let want = eth(
        CLIENT_MAC,
        EXT_MAC,
        0x0806,
        &arp(2, EXT_MAC, VIP, CLIENT_MAC, CIP),
    );
    assert_eq!(f, want);
    // The DIP on int, asked by a real server.
    let mut f = arp_request(RS1_MAC, RIP1, DIP);
    assert_eq!(lab.send(INT, &mut f), Action::Tx(INT));
    assert_eq!(
        f,
        eth(
            RS1_MAC,
            INT_MAC,
            0x0806,
            &arp(2, INT_MAC, DIP, RS1_MAC, RIP1)
        )
    );
    // A second VIP that is no port address: answered on the external port only.
    let vip2 = Ipv4Addr::new(198, 51, 100, 2);
    lab.ok(Request::AddService(service(
        tcp(vip2, 443),
        SchedulerKind::Rr,
    )));
    let mut f = arp_request(CLIENT_MAC, CIP, vip2);
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(EXT));
    let mut f = arp_request(RS1_MAC, RIP1, vip2);
    assert_eq!(lab.send(INT, &mut f), Action::Drop);
    // Not ours at all.
    let mut f = arp_request(CLIENT_MAC, CIP, Ipv4Addr::new(198, 51, 100, 77));
    assert_eq!(lab.dropped(EXT, &mut f, DropReason::ArpNotOurs), 2);
    assert_eq!(lab.dp.stats().events(Event::ArpReplied), 3);
    // Requests taught us the senders.
    assert_eq!(lab.dp.neigh().lookup(EXT, CIP), Some(CLIENT_MAC));
    assert_eq!(lab.dp.neigh().lookup(INT, RIP1), Some(RS1_MAC));
    // A request unicast to another MAC is not for us.
    let mut f = eth(
        RS2_MAC,
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, CIP, [0; 6], VIP),
    );
    assert_eq!(lab.dropped(EXT, &mut f, DropReason::NotForUs), 1);
}

#[test]
fn icmp_echo_to_vip_and_dip_is_answered_in_place() {
    let mut lab = Lab::new(64, None);
    for (port, our_mac, peer_mac, peer, ours) in [
        (EXT, EXT_MAC, CLIENT_MAC, CIP, VIP),
        (INT, INT_MAC, RS1_MAC, RIP1, DIP),
    ] {
        let mut f = eth(
            our_mac,
            peer_mac,
            0x0800,
            &ipv4(peer, ours, ICMP, 64, &icmp_echo(8, 0x4242, 3, b"ping data")),
        );
        let len = f.len();
        assert_eq!(lab.send(port, &mut f), Action::Tx(port));
        assert_eq!(f.len(), len);
        let s = check(&f);
        assert_eq!(
            (s.dst_mac, s.src_mac, s.src, s.dst, s.proto),
            (peer_mac, our_mac, ours, peer, ICMP)
        );
        // Type 0, same id/seq/data.
        let want = icmp_echo(0, 0x4242, 3, b"ping data");
        assert_eq!(&f[34..34 + want.len()], &want[..]);
    }
    assert_eq!(lab.dp.stats().events(Event::EchoReplied), 2);
    // An echo reply to us is not answered.
    let mut f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(CIP, VIP, ICMP, 64, &icmp_echo(0, 1, 1, b"")),
    );
    assert_eq!(lab.dropped(EXT, &mut f, DropReason::IcmpUnhandled), 1);
}

#[test]
fn lvs_nat_walk_through() {
    let mut lab = Lab::new(64, None);
    lab.learn(EXT, CIP, CLIENT_MAC);

    // First SYN: scheduled to RS1, whose MAC is not known yet -> Hold.
    let (a, mut syn1) = lab.syn(40000);
    assert_eq!(
        a,
        Action::Hold {
            port: INT,
            next_hop: RIP1.into()
        }
    );
    let s = check(&syn1);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport, s.ttl),
        (CIP, 40000, RIP1, 80, 63)
    );
    // The worker asks for RS1.
    let mut buf = [0u8; 128];
    let n = lab.w.neighbour_request(INT, RIP1, &mut buf);
    assert_eq!(n, 60);
    assert_eq!(&buf[..60], &arp_request(INT_MAC, DIP, RIP1)[..]);
    assert_eq!(lab.w.neighbour_request(INT, RIP1, &mut buf[..59]), 0);
    assert!(!lab.w.fill_l2(INT, RIP1, &mut syn1));
    lab.learn(INT, RIP1, RS1_MAC);
    assert!(lab.w.fill_l2(INT, RIP1, &mut syn1));
    let s = check(&syn1);
    assert_eq!((s.dst_mac, s.src_mac), (RS1_MAC, INT_MAC));

    // Second connection: RS2.
    lab.learn(INT, RIP2, RS2_MAC);
    let (a, syn2) = lab.syn(40001);
    assert_eq!(a, Action::Tx(INT));
    let s = check(&syn2);
    assert_eq!(
        (s.dst, s.dport, s.dst_mac, s.src_mac),
        (RIP2, 80, RS2_MAC, INT_MAC)
    );
    // Third: back to RS1.
    let (a, syn3) = lab.syn(40002);
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(check(&syn3).dst, RIP1);

    // SYN-ACK from RS1 is SNATed to the VIP and goes out to the client.
    let mut synack = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 40000), SYN | ACK, b"");
    assert_eq!(lab.send(INT, &mut synack), Action::Tx(EXT));
    let s = check(&synack);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport, s.ttl),
        (VIP, 80, CIP, 40000, 63)
    );
    assert_eq!((s.dst_mac, s.src_mac), (CLIENT_MAC, EXT_MAC));

    // The client's ACK and data follow the connection to RS1.
    let mut ack = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), ACK, b"");
    assert_eq!(lab.send(EXT, &mut ack), Action::Tx(INT));
    let mut get = tcp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (CIP, 40000),
        (VIP, 80),
        ACK | PSH,
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert_eq!(lab.send(EXT, &mut get), Action::Tx(INT));
    let s = check(&get);
    assert_eq!((s.dst, s.dport, s.dst_mac), (RIP1, 80, RS1_MAC));
    let mut resp = tcp_frame(
        INT_MAC,
        RS1_MAC,
        (RIP1, 80),
        (CIP, 40000),
        ACK | PSH,
        b"HTTP/1.0 200 OK\r\n\r\nhello",
    );
    assert_eq!(lab.send(INT, &mut resp), Action::Tx(EXT));
    assert_eq!(check(&resp).src, VIP);

    // States and counters as ipvsadm would show them.
    let mut conns = lab.conns();
    conns.sort_by_key(|c| c.client.1);
    let states: Vec<_> = conns
        .iter()
        .map(|c| (c.client.1, c.dest.0, c.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (40000, RIP1.into(), "ESTABLISHED"),
            (40001, RIP2.into(), "SYN_RECV"),
            (40002, RIP1.into(), "SYN_RECV")
        ]
    );
    assert_eq!(conns[0].expires_in, 900);
    assert_eq!(conns[0].virt, (VIP.into(), 80));
    // ActiveConn counts ESTABLISHED only: the half-open ones are InActConn.
    assert_eq!(lab.dest_counts(web()), [(RIP1, 1, 1), (RIP2, 0, 1)]);

    // --stats: RS1 saw 4 packets in (SYN, SYN retransmit none, ACK, GET = 3 + SYN of 40002) and 2 out.
    match lab.mgr.handle(Request::List {
        service: Some(web()),
    }) {
        Response::Services {
            table_size,
            services,
        } => {
            assert_eq!(table_size, 64);
            let rs1 = &services[0].dests[0].stats;
            assert_eq!((rs1.conns, rs1.in_pkts, rs1.out_pkts), (2, 4, 2));
            let ip_len = |f: &[u8]| u64::from(u16::from_be_bytes([f[16], f[17]]));
            assert_eq!(
                rs1.in_bytes,
                ip_len(&syn1) + ip_len(&ack) + ip_len(&get) + ip_len(&syn3)
            );
            assert_eq!(rs1.out_bytes, ip_len(&synack) + ip_len(&resp));
            assert_eq!(services[0].stats.conns, 3);
            assert_eq!(services[0].stats.in_pkts, 5);
        }
        other => panic!("{other:?}"),
    }
    // The client closes, the server closes: inactive.
    for (port, mut f) in [
        (
            EXT,
            tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), FIN | ACK, b""),
        ),
        (
            INT,
            tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 40000), FIN | ACK, b""),
        ),
    ] {
        assert!(matches!(lab.send(port, &mut f), Action::Tx(_)));
    }
    assert_eq!(lab.dest_counts(web()), [(RIP1, 0, 2), (RIP2, 0, 1)]);
    let stats = lab.dp.stats();
    assert_eq!(stats.events(Event::ConnCreated), 3);
    assert_eq!(stats.events(Event::Held), 1);
}

#[test]
fn unknown_tcp_flows_and_missing_services_are_dropped() {
    let mut lab = Lab::new(64, None).with_neighbours();
    for flags in [ACK, FIN | ACK, RST, SYN | RST, PSH | ACK] {
        let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5000), (VIP, 80), flags, b"x");
        assert_eq!(lab.send(EXT, &mut f), Action::Drop, "flags {flags:#x}");
    }
    assert_eq!(lab.drops(DropReason::UnknownFlow), 5);
    // Port 8080 on the VIP has no service.
    let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5000), (VIP, 8080), SYN, b"");
    assert_eq!(lab.dropped(EXT, &mut f, DropReason::NoService), 1);
    // TCP to the DIP: nothing listens.
    let mut f = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 5000), (DIP, 22), SYN, b"");
    assert_eq!(lab.dropped(INT, &mut f, DropReason::Local), 1);
    assert!(lab.conns().is_empty());
}

#[test]
fn udp_is_scheduled_per_datagram_flow_and_checksum_zero_stays_zero() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let mut q = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5353), (VIP, 53), b"query", true);
    assert_eq!(lab.send(EXT, &mut q), Action::Tx(INT));
    let s = check(&q);
    assert_eq!((s.dst, s.dport, s.ttl), (RIP1, 53, 63));
    // Same flow, no checksum: same server, checksum stays 0.
    let mut q2 = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5353), (VIP, 53), b"again", false);
    assert_eq!(lab.send(EXT, &mut q2), Action::Tx(INT));
    let s = check(&q2);
    assert_eq!((s.dst, s.l4_checksum), (RIP1, 0));
    // Another flow: RS2.
    let mut q3 = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5354), (VIP, 53), b"q", true);
    assert_eq!(lab.send(EXT, &mut q3), Action::Tx(INT));
    assert_eq!(check(&q3).dst, RIP2);
    // The answer is SNATed.
    let mut r = udp_frame(INT_MAC, RS1_MAC, (RIP1, 53), (CIP, 5353), b"answer", true);
    assert_eq!(lab.send(INT, &mut r), Action::Tx(EXT));
    let s = check(&r);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 53, CIP, 5353));
    let states: Vec<_> = lab
        .conns()
        .into_iter()
        .map(|c| (c.state, c.expires_in))
        .collect();
    assert_eq!(states, [("UDP".to_string(), 300), ("UDP".to_string(), 300)]);
    // UDP counts as inactive.
    assert_eq!(lab.dest_counts(dns()), [(RIP1, 0, 1), (RIP2, 0, 1)]);
    // After 300 s of silence the flow is gone and a new datagram is scheduled afresh (RS1).
    lab.now += 300_000;
    let mut q4 = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5353), (VIP, 53), b"late", true);
    assert_eq!(lab.send(EXT, &mut q4), Action::Tx(INT));
    assert_eq!(check(&q4).dst, RIP1);
    assert_eq!(lab.conns().len(), 1, "the other flow was aged out");
}

#[test]
fn syn_on_time_wait_is_scheduled_afresh() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let (a, f) = lab.syn(7000);
    assert_eq!((a, check(&f).dst), (Action::Tx(INT), RIP1));
    // Establish, then close it: client RST -> CLOSE.
    let mut ack = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 7000), (VIP, 80), ACK, b"");
    assert_eq!(lab.send(EXT, &mut ack), Action::Tx(INT));
    assert_eq!(lab.conns()[0].state, "ESTABLISHED");
    let mut rst = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 7000), (VIP, 80), RST, b"");
    assert_eq!(lab.send(EXT, &mut rst), Action::Tx(INT));
    assert_eq!(lab.conns()[0].state, "CLOSE");
    // Port reuse: the new SYN gets the next server.
    let (a, f) = lab.syn(7000);
    assert_eq!((a, check(&f).dst), (Action::Tx(INT), RIP2));
    let c = lab.conns();
    assert_eq!(
        (c.len(), c[0].state.as_str(), c[0].dest.0),
        (1, "SYN_RECV", RIP2.into())
    );
    assert_eq!(lab.dest_counts(web()), [(RIP1, 0, 0), (RIP2, 0, 1)]);
    // A SYN on a live (SYN_RECV) connection is a retransmit: same server.
    let (_, f) = lab.syn(7000);
    assert_eq!(check(&f).dst, RIP2);
}

/// A client reuses its port for a second virtual service that maps to the same real server
/// and port: the real side sees one tuple for both. A closed first connection gives the tuple
/// up (the SYN-ACK then leaves as the second service); a live one keeps it and the SYN is a
/// counted drop.
#[test]
fn a_closed_connection_gives_its_real_tuple_to_a_new_syn() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let alt = ServiceKey {
        port: 8080,
        ..web()
    };
    lab.ok(Request::AddService(service(alt, SchedulerKind::Rr)));
    lab.ok(Request::AddDest {
        service: alt,
        dest: dest(RIP1, 80, 1),
    });
    let (a, f) = lab.syn(7000);
    assert_eq!((a, check(&f).dst), (Action::Tx(INT), RIP1));
    let mut ack = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 7000), (VIP, 80), ACK, b"");
    assert_eq!(lab.send(EXT, &mut ack), Action::Tx(INT));

    // Live: the new SYN loses, the old connection's replies still leave as VIP:80.
    let mut syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 7000), (VIP, 8080), SYN, b"");
    assert_eq!(lab.dropped(EXT, &mut syn, DropReason::ConnConflict), 1);
    let mut reply = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 7000), ACK, b"");
    assert_eq!(lab.send(INT, &mut reply), Action::Tx(EXT));
    assert_eq!((check(&reply).src, check(&reply).sport), (VIP, 80));

    // Closed: the SYN takes the tuple, and the real server's SYN-ACK leaves as VIP:8080.
    let mut rst = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 7000), (VIP, 80), RST, b"");
    assert_eq!(lab.send(EXT, &mut rst), Action::Tx(INT));
    let mut syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 7000), (VIP, 8080), SYN, b"");
    assert_eq!(lab.send(EXT, &mut syn), Action::Tx(INT));
    assert_eq!((check(&syn).dst, check(&syn).dport), (RIP1, 80));
    let mut syn_ack = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 7000), SYN | ACK, b"");
    assert_eq!(lab.send(INT, &mut syn_ack), Action::Tx(EXT));
    assert_eq!((check(&syn_ack).src, check(&syn_ack).sport), (VIP, 8080));
    assert_eq!(lab.drops(DropReason::ConnConflict), 1);
    let c = lab.conns();
    assert_eq!(
        (c.len(), c[0].virt.1, c[0].state.as_str()),
        (1, 8080, "SYN_RECV")
    );
}

#[test]
fn removed_and_quiesced_servers_keep_their_connections() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let (_, a) = lab.syn(1); // RS1
    let (_, b) = lab.syn(2); // RS2
    assert_eq!((check(&a).dst, check(&b).dst), (RIP1, RIP2));
    // Quiesce RS2: its connection goes on, new ones go to RS1 only.
    lab.ok(Request::EditDest {
        service: web(),
        dest: dest(RIP2, 80, 0),
    });
    let mut more = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 2), (VIP, 80), ACK, b"data");
    assert_eq!(lab.send(EXT, &mut more), Action::Tx(INT));
    assert_eq!(check(&more).dst, RIP2);
    for p in 3..6 {
        assert_eq!(check(&lab.syn(p).1).dst, RIP1);
    }
    // Remove RS1 (expire_nodest_conn 0): its connections go on, both directions NATed.
    lab.ok(Request::DelDest {
        service: web(),
        addr: RIP1.into(),
        port: 80,
    });
    let mut ack = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 80), ACK, b"");
    assert_eq!(lab.send(EXT, &mut ack), Action::Tx(INT));
    assert_eq!(check(&ack).dst, RIP1);
    // One aging sweep of the table later (the next packet's housekeeping).
    lab.now += dataplane::pipeline::AGING_SWEEP_MS;
    let mut reply = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 3), ACK, b"");
    assert_eq!(lab.send(INT, &mut reply), Action::Tx(EXT));
    assert_eq!((check(&reply).src, check(&reply).sport), (VIP, 80));
    // Aging took nothing: RS1's four connections and RS2's are there.
    let c = lab.conns();
    assert_eq!(c.len(), 5);
    assert_eq!(c.iter().filter(|c| c.dest.0 == RIP1).count(), 4);
    // Nothing eligible (RS2 at weight 0): no_dest.
    let (a, _) = lab.syn(9);
    assert_eq!(a, Action::Drop);
    assert_eq!(lab.drops(DropReason::NoDest), 1);
}

#[test]
fn full_table_is_counted() {
    let mut lab = Lab::new(2, None).with_neighbours();
    assert_eq!(lab.syn(1).0, Action::Tx(INT));
    assert_eq!(lab.syn(2).0, Action::Tx(INT));
    // Both ESTABLISHED: nothing may be evicted, the new connection is dropped and counted.
    for cport in [1, 2] {
        let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, 80), ACK, b"");
        assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    }
    assert_eq!(lab.syn(3).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::TableFull), 1);
}

#[test]
fn full_table_evicts_half_open_connections_first() {
    let mut lab = Lab::new(2, None).with_neighbours();
    assert_eq!(lab.syn(1).0, Action::Tx(INT));
    let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 80), ACK, b"");
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    assert_eq!(lab.syn(2).0, Action::Tx(INT));
    // A SYN flood on a full table: the SYN_RECV entry makes room, the ESTABLISHED one stays.
    assert_eq!(lab.syn(3).0, Action::Tx(INT));
    assert_eq!(lab.drops(DropReason::TableFull), 0);
    let mut ports: Vec<(u16, String)> = lab
        .conns()
        .into_iter()
        .map(|c| (c.client.1, c.state))
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        vec![(1, "ESTABLISHED".into()), (3, "SYN_RECV".into())]
    );
}

#[test]
fn plain_routing_between_ports() {
    let mut lab = Lab::new(64, Some(Ipv4Addr::new(198, 51, 100, 254))).with_neighbours();
    // A real server's own connection out to a client: routed, TTL decremented, not rewritten.
    let mut f = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 33000), (CIP, 22), SYN, b"");
    assert_eq!(lab.send(INT, &mut f), Action::Tx(EXT));
    let s = check(&f);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport, s.ttl),
        (RIP1, 33000, CIP, 22, 63)
    );
    assert_eq!((s.dst_mac, s.src_mac), (CLIENT_MAC, EXT_MAC));
    // ICMP from a real server to a client is forwarded too.
    let mut p = eth(
        INT_MAC,
        RS1_MAC,
        0x0800,
        &ipv4(RIP1, CIP, ICMP, 64, &icmp_echo(8, 1, 1, b"")),
    );
    assert_eq!(lab.send(INT, &mut p), Action::Tx(EXT));
    assert_eq!(check(&p).ttl, 63);
    // Off-subnet: via the gateway on ext, whose MAC is unknown -> Hold, then resolved.
    let far = Ipv4Addr::new(203, 0, 113, 9);
    let mut f = udp_frame(INT_MAC, RS2_MAC, (RIP2, 123), (far, 123), b"ntp", true);
    let gw = Ipv4Addr::new(198, 51, 100, 254);
    assert_eq!(
        lab.send(INT, &mut f),
        Action::Hold {
            port: EXT,
            next_hop: gw.into()
        }
    );
    lab.learn(EXT, gw, GW_MAC);
    assert!(lab.w.fill_l2(EXT, gw, &mut f));
    let s = check(&f);
    assert_eq!(
        (s.dst, s.dst_mac, s.src_mac, s.ttl),
        (far, GW_MAC, EXT_MAC, 63)
    );
    // TTL 1 is not forwarded.
    let mut f = eth(
        INT_MAC,
        RS1_MAC,
        0x0800,
        &ipv4(RIP1, CIP, UDP, 1, &udp_seg(RIP1, 1, CIP, 2, b"", true)),
    );
    assert_eq!(lab.send(INT, &mut f), Action::Drop);
    // Nor is NAT traffic with TTL 1.
    let mut f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(CIP, VIP, TCP, 1, &tcp_seg(CIP, 9, VIP, 80, SYN, b"")),
    );
    assert_eq!(lab.dropped(EXT, &mut f, DropReason::TtlExpired), 2);
}

#[test]
fn no_route_without_gateway() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let mut f = udp_frame(
        INT_MAC,
        RS1_MAC,
        (RIP1, 1),
        (Ipv4Addr::new(203, 0, 113, 9), 2),
        b"",
        true,
    );
    assert_eq!(lab.dropped(INT, &mut f, DropReason::NoRoute), 1);
}

#[test]
fn l2_filtering_and_other_ethertypes() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let good = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 80), SYN, b"");
    // VLAN-tagged.
    let mut v = good.clone();
    v.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    assert_eq!(lab.send(EXT, &mut v), Action::Drop);
    // An ethertype rvs does not speak (LLDP).
    let mut lldp = good.clone();
    lldp[12..14].copy_from_slice(&[0x88, 0xcc]);
    assert_eq!(lab.send(EXT, &mut lldp), Action::Drop);
    // The IPv6 ethertype on an IPv4 packet.
    let mut v6 = good.clone();
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(lab.send(EXT, &mut v6), Action::Drop);
    assert_eq!(lab.drops(DropReason::BadVersion), 1);
    // Another host's MAC, and broadcast IPv4.
    let mut other = good.clone();
    other[0..6].copy_from_slice(&RS1_MAC);
    assert_eq!(lab.send(EXT, &mut other), Action::Drop);
    let mut b = good.clone();
    b[0..6].copy_from_slice(&BCAST);
    assert_eq!(lab.send(EXT, &mut b), Action::Drop);
    // A port that does not exist.
    let mut g = good.clone();
    assert_eq!(lab.send(7, &mut g), Action::Drop);
    // Martians.
    let mut m = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(
            CIP,
            Ipv4Addr::new(198, 51, 100, 255),
            UDP,
            64,
            &udp_seg(CIP, 1, Ipv4Addr::new(198, 51, 100, 255), 2, b"", true),
        ),
    );
    assert_eq!(lab.send(EXT, &mut m), Action::Drop);
    let mut m = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(
            Ipv4Addr::new(127, 0, 0, 1),
            VIP,
            UDP,
            64,
            &udp_seg(Ipv4Addr::new(127, 0, 0, 1), 1, VIP, 53, b"", true),
        ),
    );
    assert_eq!(lab.send(EXT, &mut m), Action::Drop);
    let d = |r| lab.drops(r);
    assert_eq!(
        (
            d(DropReason::Vlan),
            d(DropReason::NotIpv4),
            d(DropReason::NotForUs),
            d(DropReason::L2Multicast),
            d(DropReason::BadPort),
            d(DropReason::Martian)
        ),
        (1, 1, 1, 1, 1, 2)
    );
    assert!(lab.conns().is_empty());
}

#[test]
fn every_truncation_and_corruption_is_a_counted_drop() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let frames = director::client_frames();
    let all_drops = |lab: &Lab| -> u64 { DropReason::ALL.iter().map(|r| lab.drops(*r)).sum() };
    let mut expected_drops = all_drops(&lab);
    for f in &frames {
        // Strip the Ethernet padding so every cut removes real header or payload bytes.
        let real = if f[12..14] == [0x08, 0x06] {
            42
        } else {
            14 + usize::from(u16::from_be_bytes([f[16], f[17]]))
        };
        for n in 0..real {
            let mut cut = f[..n].to_vec();
            assert_eq!(
                lab.send(EXT, &mut cut),
                Action::Drop,
                "length {n} of {real}"
            );
            expected_drops += 1;
        }
    }
    assert_eq!(all_drops(&lab), expected_drops, "every drop has a reason");
    assert!(lab.drops(DropReason::Malformed) > 0);
    assert!(lab.drops(DropReason::Truncated) > 0);
    assert!(lab.drops(DropReason::BadTotalLen) > 0);

    let syn = &frames[0];
    let fix = |f: &mut Vec<u8>| {
        f[24] = 0;
        f[25] = 0;
        let ihl = usize::from(f[14] & 15) * 4;
        if ihl >= 20 && 14 + ihl <= f.len() {
            let c = inet_checksum(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
    };
    // (byte, value) patches of the SYN frame, then the IP checksum is fixed up.
    // (Fragments have tests of their own in tests/hostile.rs.)
    let cases: [(&[(usize, u8)], DropReason); 7] = [
        (&[(14, 0x65)], DropReason::BadVersion),         // version 6
        (&[(14, 0x44)], DropReason::BadHeaderLen),       // IHL 4
        (&[(14, 0x4f)], DropReason::BadHeaderLen),       // IHL 15: beyond the packet
        (&[(16, 0), (17, 19)], DropReason::BadTotalLen), // total length < IHL
        (&[(16, 0x07), (17, 0xd0)], DropReason::BadTotalLen), // total length 2000 > frame
        (&[(46, 0x40)], DropReason::Malformed),          // TCP data offset 4
        (&[(46, 0xf0)], DropReason::Malformed),          // TCP data offset 15
    ];
    for (i, (patches, reason)) in cases.iter().enumerate() {
        let before = lab.drops(*reason);
        let mut f = syn.clone();
        for &(at, v) in *patches {
            f[at] = v;
        }
        fix(&mut f);
        assert_eq!(lab.send(EXT, &mut f), Action::Drop, "case {i}");
        assert_eq!(lab.drops(*reason), before + 1, "case {i}");
    }
    // A later fragment with no first seen is not dropped here: the caller holds it for its
    // first fragment (tests/hostile.rs).
    let mut f = syn.clone();
    f[21] = 0x10;
    fix(&mut f);
    assert_eq!(lab.send(EXT, &mut f), Action::AwaitFirstFragment);
    // A bad IP checksum.
    let mut f = syn.clone();
    f[24] ^= 0xff;
    assert_eq!(lab.dropped(EXT, &mut f, DropReason::BadChecksum), 1);
    assert!(lab.conns().is_empty());
}

#[test]
fn ip_options_pass_through() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let seg = tcp_seg(CIP, 4000, VIP, 80, SYN, b"");
    let mut ip = vec![0x46, 0];
    ip.extend_from_slice(&((24 + seg.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, TCP, 0, 0]);
    ip.extend_from_slice(&CIP.octets());
    ip.extend_from_slice(&VIP.octets());
    ip.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    let c = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&seg);
    let mut f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &ip);
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    let s = check(&f);
    assert_eq!((s.dst, s.dport, s.ttl), (RIP1, 80, 63));
    assert_eq!(&f[34..38], &[1, 1, 1, 0], "options untouched");
}

#[test]
fn hold_leaves_the_source_mac_and_fill_l2_completes_it() {
    let mut lab = Lab::new(64, None);
    let (a, mut f) = lab.syn(1);
    assert_eq!(
        a,
        Action::Hold {
            port: INT,
            next_hop: RIP1.into()
        }
    );
    assert_eq!(&f[6..12], &INT_MAC);
    assert!(!lab.w.fill_l2(INT, RIP1, &mut f));
    assert!(!lab.w.fill_l2(9, RIP1, &mut f), "unknown port");
    // Learning from traffic: RS1 sends something to a client.
    let mut t = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 9999), (CIP, 1), ACK, b"");
    lab.send(INT, &mut t);
    assert!(lab.w.fill_l2(INT, RIP1, &mut f));
    assert_eq!(&f[0..6], &RS1_MAC);
}

#[test]
fn multiple_workers_share_connections() {
    let mut lab = Lab::new(64, None).with_neighbours();
    let dp = lab.dp.clone();
    let mut w2 = Pipeline::new(dp, 1);
    // Inbound on worker 0, reply on worker 1 (as RSS may spread them).
    let (a, _) = lab.syn(555);
    assert_eq!(a, Action::Tx(INT));
    let mut r = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 555), SYN | ACK, b"");
    w2.begin_burst(lab.now);
    assert_eq!(w2.process(INT, &mut r), Action::Tx(EXT));
    assert_eq!(check(&r).src, VIP);
}

/// Senders are learned from the packet that opens a connection (as from ARP): the reply to a
/// client rvs never saw ARP from goes straight to its MAC, not on hold.
#[test]
fn the_first_packet_of_a_connection_teaches_the_client_mac() {
    let mut lab = Lab::new(64, None);
    lab.learn(INT, RIP1, RS1_MAC);
    lab.learn(INT, RIP2, RS2_MAC);
    let (a, f) = lab.syn(7000);
    assert_eq!((a, check(&f).dst), (Action::Tx(INT), RIP1));
    let mut syn_ack = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 7000), SYN | ACK, b"");
    assert_eq!(lab.send(INT, &mut syn_ack), Action::Tx(EXT));
    let seen = check(&syn_ack);
    assert_eq!((seen.dst_mac, seen.src_mac), (CLIENT_MAC, EXT_MAC));
    assert_eq!((seen.src, seen.dst), (VIP, CIP));
}
