//! Service flags and IPVS sysctls that change what the pipeline does with new flows: one-packet
//! scheduling (`-o`), the flood defences (`drop_entry`, `drop_packet`, `secure_tcp`) and
//! `schedule_icmp`. Each drives the pipeline of a two-arm director on byte frames.

use control::proto::{Request, Response};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline, AGING_SWEEP_MS};
use dataplane::service::ServiceManager;
use dataplane::stats::{DropReason, Event};
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::director::{two_arm_ports, EXT_MAC, INT_MAC};
use testkit::plan::{client, CIP, CLIENT_MAC, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP};
use testkit::services::{conns, listed, rvsadm, udp};
use testkit::{
    check, eth, inet_checksum, ipv4, tcp_frame, tcp_seg, udp_frame, udp_seg, ACK, ICMP, SYN, TCP,
    UDP,
};

const EXT: u16 = 0;
const INT: u16 = 1;

/// A two-arm director with one worker's pipeline, every host a known neighbour.
struct Director {
    dp: Arc<Dataplane>,
    mgr: ServiceManager,
    pipe: Pipeline,
    now: u64,
}

impl Director {
    fn new(capacity: usize, services: &str) -> Director {
        let dp = Dataplane::new(DataplaneConfig {
            ports: two_arm_ports(None, 1500),
            conn_capacity: capacity,
            timeouts: Default::default(),
            workers: 1,
        });
        let mut mgr = ServiceManager::new(dp.clone());
        rvsadm(&mut mgr, services);
        for i in 0..=255 {
            dp.neigh().learn(EXT, client(i), CLIENT_MAC);
        }
        dp.neigh().learn(INT, RIP1, RS1_MAC);
        dp.neigh().learn(INT, RIP2, RS2_MAC);
        Director {
            pipe: Pipeline::new(dp.clone(), 0),
            dp,
            mgr,
            now: 10_000,
        }
    }

    fn sysctl(&mut self, name: &str, value: u32) {
        let r = self
            .mgr
            .handle(Request::SetSysctls(vec![(name.into(), value)]));
        assert_eq!(r, Response::Ok, "{name}={value}");
    }

    /// The control thread's second: samples the free entries the automatic defences go by.
    fn tick(&mut self) {
        self.mgr.tick(self.now);
    }

    /// One frame in its own burst at the director's clock.
    fn send(&mut self, port: u16, frame: &mut [u8]) -> Action {
        self.pipe.begin_burst(self.now);
        self.pipe.process(port, frame)
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.dp.stats().drops(r)
    }

    /// A client's SYN to VIP:80 from port `port`.
    fn syn(&mut self, port: u16) -> Action {
        let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, port), (VIP, 80), SYN, b"");
        self.send(EXT, &mut f)
    }

    /// A segment of the connection from client port `port`, either way (`to_client`: from
    /// the real server it went to).
    fn segment(&mut self, port: u16, flags: u8, to_client: bool) -> Action {
        let c = conns(&mut self.mgr);
        let conn = c
            .iter()
            .find(|c| c.client == (CIP.into(), port))
            .unwrap_or_else(|| panic!("no connection from port {port}: {c:?}"));
        let mut f = if to_client {
            let mac = if conn.dest.0 == RIP1 {
                RS1_MAC
            } else {
                RS2_MAC
            };
            tcp_frame(
                INT_MAC,
                mac,
                (
                    match conn.dest.0 {
                        std::net::IpAddr::V4(a) => a,
                        std::net::IpAddr::V6(_) => unreachable!(),
                    },
                    conn.dest.1,
                ),
                (CIP, port),
                flags,
                b"",
            )
        } else {
            tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, port), (VIP, 80), flags, b"")
        };
        self.send(if to_client { INT } else { EXT }, &mut f)
    }

    /// A client's SYN from `port` and the real server's SYN-ACK, both passed on.
    fn syn_and_answer(&mut self, port: u16) {
        assert_eq!(self.syn(port), Action::Tx(INT), "SYN from {port}");
        assert_eq!(
            self.segment(port, SYN | ACK, true),
            Action::Tx(EXT),
            "SYN-ACK to {port}"
        );
    }

    /// The state of the connection from client port `port`, as `-L -c` names it.
    fn state(&mut self, port: u16) -> Option<String> {
        conns(&mut self.mgr)
            .into_iter()
            .find(|c| c.client == (CIP.into(), port))
            .map(|c| c.state)
    }

    /// One full aging sweep of the worker's share, after a burst (as the driver does).
    fn age(&mut self) {
        self.now += AGING_SWEEP_MS;
        self.pipe.begin_burst(self.now);
        self.pipe.housekeeping(self.now);
    }

    fn events(&self, e: Event) -> u64 {
        self.dp.stats().events(e)
    }
}

// --- one-packet scheduling (-o) --------------------------------------------------------------

const DNS: &str = "\
-A -u 198.51.100.1:53 -s rr -o
-a -u 198.51.100.1:53 -r 192.0.2.2:5353 -m
-a -u 198.51.100.1:53 -r 192.0.2.3:5353 -m
";

#[test]
fn ops_schedules_every_datagram_and_keeps_no_connection() {
    let mut d = Director::new(1024, DNS);
    let mut servers = Vec::new();
    // One client port: without -o every datagram would follow the first one's connection.
    for i in 0..6u8 {
        let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4000), (VIP, 53), &[i], true);
        assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
        let s = check(&f);
        assert_eq!((s.src, s.sport, s.dport), (CIP, 4000, 5353));
        servers.push(s.dst);

        // The real server's answer goes back as from VIP:53, without a connection.
        let rip = s.dst;
        let mac = if rip == RIP1 { RS1_MAC } else { RS2_MAC };
        let mut r = udp_frame(INT_MAC, mac, (rip, 5353), (CIP, 4000), b"answer", true);
        assert_eq!(d.send(INT, &mut r), Action::Tx(EXT));
        let s = check(&r);
        assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 53, CIP, 4000));
        assert_eq!(s.dst_mac, CLIENT_MAC);
    }
    assert_eq!(servers, [RIP1, RIP2, RIP1, RIP2, RIP1, RIP2], "round robin");
    assert!(conns(&mut d.mgr).is_empty(), "nothing in the table");
    assert_eq!(d.dp.conns().len(), 0);
    assert_eq!(d.events(Event::OpsScheduled), 6);
    assert_eq!(d.events(Event::ConnCreated), 0);
    assert_eq!((d.events(Event::Dnat), d.events(Event::Snat)), (6, 6));
    // Each datagram counts as a connection of its real server, as the kernel's do.
    let svc = listed(&mut d.mgr, udp(VIP, 53));
    let per_server: Vec<(u64, u64, u64)> = svc
        .dests
        .iter()
        .map(|x| (x.stats.conns, x.stats.in_pkts, x.stats.out_pkts))
        .collect();
    assert_eq!(per_server, [(3, 3, 3), (3, 3, 3)]);
    assert!(svc
        .dests
        .iter()
        .all(|x| x.active_conns + x.inactive_conns == 0));

    // A datagram from a real server's other port, or from another host, is routed as it is.
    let mut other = udp_frame(INT_MAC, RS1_MAC, (RIP1, 5354), (CIP, 4000), b"x", true);
    assert_eq!(d.send(INT, &mut other), Action::Tx(EXT));
    assert_eq!(check(&other).src, RIP1);
}

#[test]
fn ops_without_the_flag_keeps_connections() {
    let mut d = Director::new(1024, &DNS.replace(" -o", ""));
    for i in 0..4u8 {
        let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4000), (VIP, 53), &[i], true);
        assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
        assert_eq!(check(&f).dst, RIP1, "the first datagram's connection");
    }
    assert_eq!(conns(&mut d.mgr).len(), 1);
    assert_eq!(d.events(Event::OpsScheduled), 0);
}

#[test]
fn ops_follows_edits_of_the_service() {
    let mut d = Director::new(1024, &DNS.replace(" -o", ""));
    let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4000), (VIP, 53), b"a", true);
    assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
    assert_eq!(check(&f).dst, RIP1);
    rvsadm(&mut d.mgr, "-E -u 198.51.100.1:53 -o");
    assert!(listed(&mut d.mgr, udp(VIP, 53)).spec.ops);
    // The connection made before -o still carries its flow...
    let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4000), (VIP, 53), b"b", true);
    assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
    assert_eq!(check(&f).dst, RIP1);
    // ...new flows are scheduled datagram by datagram.
    let dsts: Vec<Ipv4Addr> = (0..2)
        .map(|_| {
            let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4001), (VIP, 53), b"c", true);
            assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
            check(&f).dst
        })
        .collect();
    assert_eq!(dsts, [RIP2, RIP1]);
    assert_eq!(conns(&mut d.mgr).len(), 1);
}

#[test]
fn ops_refuses_what_its_replies_could_not_be_told_from() {
    let mut d = Director::new(1024, DNS);
    let refused = |d: &mut Director, line: &str| -> String {
        let changes = control::cli::parse_restore(line).unwrap();
        let mut table = control::cli::Table::new(&testkit::services::services(&mut d.mgr));
        let request = table.resolve(&changes[0].1).unwrap();
        match d.mgr.handle(request) {
            Response::Error(e) => e,
            other => panic!("{line}: {other:?}"),
        }
    };
    // A real server of the OPS service in another service (another VIP or port).
    rvsadm(
        &mut d.mgr,
        "-A -u 198.51.100.2:53 -s rr\n-A -u 198.51.100.1:54 -s rr",
    );
    for line in [
        "-a -u 198.51.100.2:53 -r 192.0.2.2:5353 -m",
        "-a -u 198.51.100.1:54 -r 192.0.2.2:5353 -m",
    ] {
        let e = refused(&mut d, line);
        assert!(
            e.contains("192.0.2.2:5353") && e.contains("UDP 198.51.100.1:53") && e.contains("-o"),
            "{line}: {e}"
        );
    }
    // Another port of the same host, and the same port over TCP, are other real servers.
    rvsadm(
        &mut d.mgr,
        "-a -u 198.51.100.2:53 -r 192.0.2.2:5354 -m\n-A -t 198.51.100.1:53 -s rr\n\
         -a -t 198.51.100.1:53 -r 192.0.2.2:5353 -m",
    );
    // Turning -o on for a service whose real server backs another one.
    rvsadm(&mut d.mgr, "-a -u 198.51.100.1:54 -r 192.0.2.2:5354 -m");
    let e = refused(&mut d, "-E -u 198.51.100.2:53 -o");
    assert!(
        e.contains("192.0.2.2:5354") && e.contains("UDP 198.51.100.1:54"),
        "{e}"
    );
    assert!(
        !listed(&mut d.mgr, udp(Ipv4Addr::new(198, 51, 100, 2), 53))
            .spec
            .ops
    );
    // TCP, straight over the control socket (rvsadm refuses it before it is sent).
    let mut spec = testkit::services::service(
        testkit::services::tcp(VIP, 8053),
        control::model::SchedulerKind::Rr,
    );
    spec.ops = true;
    let r = d.mgr.handle(Request::AddService(spec));
    assert_eq!(
        r,
        Response::Error("One-Packet Scheduling is only for UDP virtual services".into())
    );
}

// --- flood defences ---------------------------------------------------------------------------

const WEB: &str = "\
-A -t 198.51.100.1:80 -s rr
-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m
-a -t 198.51.100.1:80 -r 192.0.2.3:80 -m
-A -u 198.51.100.1:53 -s rr -o
-a -u 198.51.100.1:53 -r 192.0.2.2:53 -m
";

/// A 64-entry table whose automatic defences act below 16 free entries.
fn small_director() -> Director {
    let mut d = Director::new(64, WEB);
    assert_eq!(d.dp.conns().capacity(), 64);
    d.sysctl("amemthresh", 16);
    d
}

/// Opens `n` half-open connections from ports `first..`, then samples the free entries.
fn fill(d: &mut Director, first: u16, n: u16) {
    for p in first..first + n {
        assert_eq!(d.syn(p), Action::Tx(INT), "SYN from {p}");
    }
    d.tick();
}

/// How many of `n` new connections (SYNs from ports `first..`, then UDP datagrams to the
/// one-packet service) `drop_packet` drops, in order.
fn dropped_of(d: &mut Director, first: u16, n: u16) -> Vec<u16> {
    let mut out = Vec::new();
    for p in first..first + n {
        let a = if p % 2 == 0 {
            d.syn(p)
        } else {
            let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, p), (VIP, 53), b"q", true);
            d.send(EXT, &mut f)
        };
        if a == Action::Drop {
            out.push(p - first + 1);
        }
    }
    out
}

#[test]
fn drop_packet_in_each_mode() {
    let mut d = small_director();
    // 0: never.
    assert!(dropped_of(&mut d, 1000, 20).is_empty());
    // 3: one of every am_droprate new connections (TCP and UDP alike), whatever is free.
    d.sysctl("drop_packet", 3);
    d.sysctl("am_droprate", 5);
    assert_eq!(dropped_of(&mut d, 2000, 20), [5, 10, 15, 20]);
    assert_eq!(d.drops(DropReason::DefenceDropPacket), 4);
    // Packets of existing connections are never dropped.
    for _ in 0..10 {
        assert_eq!(d.segment(1000, ACK, false), Action::Tx(INT));
    }
    // 1 and 2: only while fewer than amemthresh entries are free, at a rate from the fill.
    for mode in [1, 2] {
        let mut d = small_director();
        d.sysctl("drop_packet", mode);
        assert!(dropped_of(&mut d, 1000, 20).is_empty(), "mode {mode}: room");
        // 10 TCP connections made above; 40 more leave 14 free: rate 16 / (16 - 14) = 8.
        fill(&mut d, 3000, 40);
        assert_eq!(d.dp.free_entries(), 14);
        assert_eq!(dropped_of(&mut d, 4000, 16), [8, 16], "mode {mode}: rate 8");
        assert_eq!(d.drops(DropReason::DefenceDropPacket), 2);
    }
}

#[test]
fn drop_entry_in_each_mode() {
    for mode in [0, 1, 2, 3] {
        let mut d = small_director();
        d.sysctl("drop_entry", mode);
        // One established connection, and half-open ones: SYN_RECV, and SYNACK (the
        // secure table's state after the server's SYN-ACK).
        d.syn_and_answer(1);
        assert_eq!(d.segment(1, ACK, false), Action::Tx(INT));
        assert_eq!(d.state(1).as_deref(), Some("ESTABLISHED"));
        d.sysctl("secure_tcp", 3);
        d.syn_and_answer(2);
        assert_eq!(d.state(2).as_deref(), Some("SYNACK"));
        d.sysctl("secure_tcp", 0);
        fill(&mut d, 100, 10);
        d.age();
        let left = conns(&mut d.mgr).len();
        match mode {
            // Plenty free: the automatic modes leave them, as 0 does.
            0..=2 => assert_eq!(left, 12, "mode {mode}"),
            _ => {
                assert_eq!(left, 1, "mode {mode}: only the established one");
                assert_eq!(d.state(1).as_deref(), Some("ESTABLISHED"));
                assert_eq!(d.events(Event::DefenceDropEntry), 11);
            }
        }
        if mode == 1 || mode == 2 {
            // 12 + 40 leave 12 free (< 16): the next sweep drops every half-open one.
            fill(&mut d, 200, 40);
            d.age();
            assert_eq!(conns(&mut d.mgr).len(), 1, "mode {mode}: full enough");
            assert_eq!(d.events(Event::DefenceDropEntry), 51);
        }
        if mode == 0 {
            assert_eq!(d.events(Event::DefenceDropEntry), 0);
        }
    }
}

#[test]
fn secure_tcp_in_each_mode() {
    for mode in [0, 1, 2, 3] {
        let mut d = small_director();
        d.sysctl("secure_tcp", mode);
        // A SYN then the client's ACK, the server silent (a spoofed handshake).
        assert_eq!(d.syn(1), Action::Tx(INT));
        assert_eq!(d.segment(1, ACK, false), Action::Tx(INT));
        let secure = mode == 3;
        let want = if secure { "SYN_RECV" } else { "ESTABLISHED" };
        assert_eq!(d.state(1).as_deref(), Some(want), "mode {mode}");
        // A real handshake.
        d.syn_and_answer(2);
        let want = if secure { "SYNACK" } else { "SYN_RECV" };
        assert_eq!(d.state(2).as_deref(), Some(want), "mode {mode}");
        assert_eq!(d.segment(2, ACK, false), Action::Tx(INT));
        assert_eq!(d.segment(2, ACK, true), Action::Tx(EXT));
        assert_eq!(d.state(2).as_deref(), Some("ESTABLISHED"), "mode {mode}");
        if mode == 1 || mode == 2 {
            // Fewer than amemthresh free: the secure table from the next burst on.
            fill(&mut d, 100, 50);
            assert_eq!(d.syn(3), Action::Tx(INT));
            assert_eq!(d.segment(3, ACK, false), Action::Tx(INT));
            assert_eq!(d.state(3).as_deref(), Some("SYN_RECV"), "mode {mode}: full");
        }
    }
}

// --- schedule_icmp ----------------------------------------------------------------------------

/// An ICMP error (type `ty`, code `code`) from the client to the VIP about a packet of
/// `proto` that VIP:vport sent to CIP:cport.
fn icmp_error_to_vip(ty: u8, code: u8, proto: u8, vport: u16, cport: u16) -> Vec<u8> {
    let seg = if proto == TCP {
        tcp_seg(VIP, vport, CIP, cport, SYN | ACK, b"")
    } else {
        udp_seg(VIP, vport, CIP, cport, b"answer", true)
    };
    let quoted = ipv4(VIP, CIP, proto, 64, &seg);
    let mut m = vec![ty, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&quoted);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    eth(EXT_MAC, CLIENT_MAC, 0x0800, &ipv4(CIP, VIP, ICMP, 64, &m))
}

#[test]
fn schedule_icmp_off_drops_errors_about_untracked_flows() {
    let mut d = Director::new(1024, WEB);
    let mut f = icmp_error_to_vip(3, 3, TCP, 80, 5000);
    assert_eq!(d.send(EXT, &mut f), Action::Drop);
    assert_eq!(d.drops(DropReason::IcmpUnrelated), 1);
    assert!(conns(&mut d.mgr).is_empty());
}

#[test]
fn schedule_icmp_schedules_the_quoted_flow_and_nats_the_error_to_it() {
    let mut d = Director::new(1024, WEB);
    d.sysctl("schedule_icmp", 1);
    // Types 3, 4 and 11, TCP and UDP: each flow gets a connection to the next real server
    // (round robin), and the error goes there, rewritten as for a tracked connection.
    let cases = [
        (3, 3, TCP, 80, 5000, RIP1),
        (4, 0, TCP, 80, 5001, RIP2),
        (11, 0, TCP, 80, 5002, RIP1),
    ];
    for (ty, code, proto, vport, cport, rip) in cases {
        let mut f = icmp_error_to_vip(ty, code, proto, vport, cport);
        assert_eq!(d.send(EXT, &mut f), Action::Tx(INT), "type {ty}");
        let s = check(&f);
        assert_eq!(
            (s.src, s.dst, s.proto),
            (CIP, rip, ICMP),
            "type {ty}: to the real server"
        );
        let quoted = &f[14 + 20 + 8..];
        let q = check_quoted(quoted);
        assert_eq!(
            q,
            (rip, 80, CIP, cport),
            "type {ty}: quoted source is RIP:rport"
        );
        let c = conns(&mut d.mgr);
        let conn = c.iter().find(|c| c.client == (CIP.into(), cport)).unwrap();
        assert_eq!((conn.virt, conn.dest), ((VIP.into(), 80), (rip.into(), 80)));
        assert_eq!(conn.state, "NONE", "no packet of the flow seen yet");
    }
    // The connection is the flow's: the client's SYN that follows goes to the same server.
    let mut syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5001), (VIP, 80), SYN, b"");
    assert_eq!(d.send(EXT, &mut syn), Action::Tx(INT));
    assert_eq!(check(&syn).dst, RIP2);
    // UDP to the one-packet service: scheduled, NATed, nothing kept.
    let mut f = icmp_error_to_vip(3, 3, UDP, 53, 6000);
    assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
    assert_eq!(check(&f).dst, RIP1);
    assert!(conns(&mut d.mgr).iter().all(|c| c.client.1 != 6000));
    assert_eq!(d.events(Event::IcmpScheduled), 4);
    assert_eq!(d.events(Event::IcmpNat), 4);
    assert_eq!(d.events(Event::ConnCreated), 3);
    // No service for the quoted port: unrelated, as without schedule_icmp.
    let mut f = icmp_error_to_vip(3, 3, TCP, 81, 5003);
    assert_eq!(d.send(EXT, &mut f), Action::Drop);
    assert_eq!(d.drops(DropReason::IcmpUnrelated), 1);
    // A bad ICMP checksum makes no connection.
    let mut f = icmp_error_to_vip(3, 3, TCP, 80, 5004);
    let n = f.len();
    f[n - 1] ^= 0xff;
    assert_eq!(d.send(EXT, &mut f), Action::Drop);
    assert_eq!(d.drops(DropReason::BadChecksum), 1);
    assert!(conns(&mut d.mgr).iter().all(|c| c.client.1 != 5004));
    // Other ICMP to the VIP is not scheduled: an echo request is answered.
    let ping = testkit::icmp_echo(8, 1, 1, b"ping");
    let mut f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(CIP, VIP, ICMP, 64, &ping),
    );
    assert_eq!(d.send(EXT, &mut f), Action::Tx(EXT));
    assert_eq!(d.events(Event::IcmpScheduled), 4);
}

/// The quoted packet's (source, source port, destination, destination port), its IP header
/// checksum checked.
fn check_quoted(q: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ihl = usize::from(q[0] & 15) * 4;
    assert_eq!(inet_checksum(&q[..ihl]), 0, "quoted IP header checksum");
    let addr = |o: usize| Ipv4Addr::new(q[o], q[o + 1], q[o + 2], q[o + 3]);
    let port = |o: usize| u16::from_be_bytes([q[ihl + o], q[ihl + o + 1]]);
    (addr(12), port(0), addr(16), port(2))
}

// --- scheduler flags (-b) ----------------------------------------------------------------------

/// Where SYNs from CIP's ports `ports` go (None: dropped), through the whole pipeline.
fn servers_for(d: &mut Director, ports: std::ops::Range<u16>) -> Vec<Option<Ipv4Addr>> {
    ports
        .map(|p| {
            let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, p), (VIP, 80), SYN, b"");
            match d.send(EXT, &mut f) {
                Action::Tx(INT) => Some(check(&f).dst),
                Action::Drop => None,
                other => panic!("port {p}: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn sched_flags_reach_the_scheduler_through_the_service() {
    for sched in ["sh", "mh"] {
        let services = |flags: &str| {
            format!(
                "-A -t 198.51.100.1:80 -s {sched}{flags}\n\
                 -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m\n\
                 -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m\n"
            )
        };
        // Without -port: one client, one server, whatever its source port.
        let mut d = Director::new(1024, &services(""));
        let plain = servers_for(&mut d, 1000..1040);
        let home = plain[0].expect("scheduled");
        assert!(plain.iter().all(|s| *s == Some(home)), "{sched}: {plain:?}");
        // With it: the ports spread the client over both servers.
        let mut d = Director::new(1024, &services(&format!(" -b {sched}-port")));
        let spread = servers_for(&mut d, 1000..1040);
        assert!(
            spread.contains(&Some(RIP1)) && spread.contains(&Some(RIP2)),
            "{sched}-port: {spread:?}"
        );
        // The client's server quiesced: nothing for it, unless -fallback.
        let quiesce = format!("-e -t 198.51.100.1:80 -r {home}:80 -w 0");
        let other = if home == RIP1 { RIP2 } else { RIP1 };
        let mut d = Director::new(1024, &services(""));
        rvsadm(&mut d.mgr, &quiesce);
        assert_eq!(servers_for(&mut d, 2000..2004), [None; 4], "{sched}");
        assert_eq!(d.drops(DropReason::NoDest), 4);
        let mut d = Director::new(1024, &services(&format!(" -b {sched}-fallback")));
        rvsadm(&mut d.mgr, &quiesce);
        assert_eq!(
            servers_for(&mut d, 2000..2004),
            [Some(other); 4],
            "{sched}-fallback"
        );
        // Back to its weight: back to its server.
        rvsadm(&mut d.mgr, &quiesce.replace("-w 0", "-w 1"));
        assert_eq!(servers_for(&mut d, 3000..3002), [Some(home); 2], "{sched}");
    }
}
