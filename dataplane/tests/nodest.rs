//! A removed real server's connections (`expire_nodest_conn`) and packets from real servers
//! that match no connection (`rs_no_conn`, `nat_icmp_send`), on byte frames through the
//! pipeline.
//!
//! - `expire_nodest_conn` 0 (the default): the connections of a removed real server keep
//!   flowing to it, both directions NATed, counted on its slot until they end; the slot is
//!   reused only after that.
//! - 1: a client's packet of such a connection expires it: a TCP segment is answered with a
//!   RST from VIP:vport (RFC 793's sequence numbers; IPv4 and IPv6 alike), a UDP datagram or a SYN is scheduled
//!   afresh.
//! - A TCP/UDP packet from a real server's service address and port with no connection is
//!   dropped (never routed un-NATed), with `nat_icmp_send` 1 answered with ICMP port
//!   unreachable from the DIP.

mod common;

use common::{tcp_numbers, Lab, EXT, INT};
use control::model::ServiceKey;
use dataplane::pipeline::{Action, AGING_SWEEP_MS};
use dataplane::stats::{DropReason, Event};
use std::net::Ipv4Addr;
use testkit::plan::{CIP, DIP, RIP1, RIP2, RIP3, VIP};
use testkit::services::{tcp, udp};
use testkit::{check, ACK, FIN, PSH, RST, SYN};

const SETUP: &str = "-A -t 198.51.100.1:80 -s rr\n\
                     -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
                     -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1\n\
                     -A -u 198.51.100.1:53 -s rr\n\
                     -a -u 198.51.100.1:53 -r 192.0.2.2:53 -m -w 1\n\
                     -a -u 198.51.100.1:53 -r 192.0.2.3:53 -m -w 1";

fn web() -> ServiceKey {
    tcp(VIP, 80)
}

fn dns() -> ServiceKey {
    udp(VIP, 53)
}

#[test]
fn by_default_a_removed_servers_connections_keep_flowing_until_they_end() {
    let mut lab = Lab::new(SETUP);
    assert_eq!(lab.connect(1), RIP1);
    assert_eq!(lab.connect(2), RIP2);
    assert_eq!(lab.syn(3), RIP1, "half-open");
    let slot = lab.slot(web(), RIP1);
    assert_eq!(lab.slot_counts(slot), (1, 1));

    lab.rvsadm("-d -t 198.51.100.1:80 -r 192.0.2.2:80");
    assert_eq!(lab.counts(web()), [(RIP2, 1, 0)], "RS1 is not listed");
    // New connections go to RS2 only.
    assert_eq!(lab.syn(4), RIP2);
    // The live connection goes on: the client's data to RS1, RS1's answer as the VIP.
    let get = lab.client_tcp(1, 80, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(get.action, Action::Tx(INT));
    assert_eq!((check(&get.frame).dst, check(&get.frame).dport), (RIP1, 80));
    let resp = lab.server_tcp(RIP1, 80, 1, ACK | PSH);
    assert_eq!(resp.action, Action::Tx(EXT));
    let s = check(&resp.frame);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 80, CIP, 1));
    // Whole aging sweeps later, nothing was taken early.
    for _ in 0..3 {
        lab.now += AGING_SWEEP_MS;
        assert_eq!(lab.server_tcp(RIP1, 80, 1, ACK).action, Action::Tx(EXT));
    }
    // The half-open one completes, on RS1.
    assert_eq!(
        lab.server_tcp(RIP1, 80, 3, SYN | ACK).action,
        Action::Tx(EXT)
    );
    assert_eq!(lab.client_tcp(3, 80, ACK, b"").action, Action::Tx(INT));
    assert_eq!(lab.slot_counts(slot), (2, 0), "counted on the removed slot");
    // Closed: both move to InActConn; then they time out and the slot is empty.
    for cport in [1, 3] {
        assert_eq!(
            lab.client_tcp(cport, 80, FIN | ACK, b"").action,
            Action::Tx(INT)
        );
        assert_eq!(
            lab.server_tcp(RIP1, 80, cport, FIN | ACK).action,
            Action::Tx(EXT)
        );
    }
    assert_eq!(lab.slot_counts(slot), (0, 2));
    assert_eq!(lab.drops(DropReason::RsNoConn), 0);
    lab.now += 120_000 + AGING_SWEEP_MS;
    lab.client_udp(9, 53);
    assert_eq!(lab.slot_counts(slot), (0, 0));
    assert!(lab.conns().iter().all(|c| c.2 != RIP1 || c.0 == 9));
}

#[test]
fn a_removed_servers_slot_is_reused_only_after_its_last_connection() {
    let mut lab = Lab::new(SETUP);
    assert_eq!(lab.connect(1), RIP1);
    let old = lab.slot(web(), RIP1);
    lab.rvsadm("-d -t 198.51.100.1:80 -r 192.0.2.2:80");
    // The worker moves on to the new snapshot: no snapshot names the old slot any more, only
    // the connection still uses it.
    assert_eq!(lab.client_tcp(1, 80, ACK, b"x").action, Action::Tx(INT));
    // While RS1's connection lives, a new real server gets another slot, and RS1 added back
    // is a new real server too: the old connection stays charged to the old slot.
    lab.rvsadm("-a -t 198.51.100.1:80 -r 192.0.2.4:80 -m -w 1");
    assert_eq!(lab.client_tcp(1, 80, ACK, b"x").action, Action::Tx(INT));
    lab.rvsadm("-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1");
    let (rs3, rs1) = (lab.slot(web(), RIP3), lab.slot(web(), RIP1));
    assert!(
        rs3 != old && rs1 != old,
        "slot {old} handed out while in use"
    );
    for _ in 0..5 {
        let out = lab.client_tcp(1, 80, ACK, b"x");
        assert_eq!(out.action, Action::Tx(INT));
        assert_eq!(check(&out.frame).dst, RIP1);
    }
    assert_eq!(lab.slot_counts(old), (1, 0));
    assert_eq!(lab.slot_counts(rs1), (0, 0));
    assert_eq!(
        lab.counts(web()),
        [(RIP2, 0, 0), (RIP3, 0, 0), (RIP1, 0, 0)]
    );
    // A snapshot rebuild while it drains changes nothing.
    lab.rvsadm("-e -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 2");
    let slots: Vec<u32> = [RIP1, RIP2, RIP3]
        .into_iter()
        .map(|r| lab.slot(web(), r))
        .collect();
    assert!(!slots.contains(&old));

    // The connection ends (client RST: CLOSE, 10 s), the aging sweep frees it: the slot is
    // free, and the next real server takes it with clean counts.
    assert_eq!(lab.client_tcp(1, 80, RST, b"").action, Action::Tx(INT));
    assert_eq!(lab.slot_counts(old), (0, 1));
    lab.now += 10_000 + AGING_SWEEP_MS;
    lab.client_udp(9, 53);
    assert_eq!(lab.slot_counts(old), (0, 0));
    lab.rvsadm("-A -t 198.51.100.1:443 -s rr\n-a -t 198.51.100.1:443 -r 192.0.2.2:443 -m");
    assert_eq!(lab.slot(tcp(VIP, 443), RIP1), old, "reused once empty");
    assert_eq!(lab.counts(tcp(VIP, 443)), [(RIP1, 0, 0)]);
}

#[test]
fn expire_nodest_conn_resets_the_clients_of_a_removed_server() {
    let mut lab = Lab::new(SETUP);
    lab.sysctl("expire_nodest_conn", 1);
    // rr: odd ports to RS1, even ones to RS2.
    assert_eq!(lab.connect(1), RIP1);
    assert_eq!(lab.connect(2), RIP2);
    assert_eq!(lab.syn(3), RIP1);
    assert_eq!(lab.syn(4), RIP2);
    assert_eq!(lab.connect(5), RIP1);
    assert_eq!(lab.syn(6), RIP2);
    assert_eq!(lab.syn(7), RIP1);
    lab.rvsadm("-d -t 198.51.100.1:80 -r 192.0.2.2:80");

    // RS1's reply on a live connection is still NATed (only a client's packet expires it).
    let late = lab.server_tcp(RIP1, 80, 1, ACK | PSH);
    assert_eq!(late.action, Action::Tx(EXT));
    assert_eq!(check(&late.frame).src, VIP);

    // A segment with ACK: RST with seq = its ack, from VIP:80, back out of ext.
    let out = lab.client_tcp(1, 80, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        matches!(out.action, Action::Reply { port: EXT, .. }),
        "{:?}",
        out.action
    );
    let s = check(out.sent());
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport, s.proto),
        (VIP, 80, CIP, 1, 6)
    );
    assert_eq!(
        (s.dst_mac, s.src_mac),
        (testkit::plan::CLIENT_MAC, testkit::director::EXT_MAC)
    );
    assert_eq!(tcp_numbers(out.sent()), (0x2000_0001, 0, RST));
    assert_eq!(lab.drops(DropReason::DestRemoved), 1);
    assert_eq!(lab.events(Event::TcpRstSent), 1);
    assert_eq!(lab.events(Event::NodestExpired), 1);
    // The connection is gone: the next segment is an unknown flow, RS1's retransmission is
    // dropped (not routed to the client from the RIP).
    assert_eq!(lab.client_tcp(1, 80, ACK, b"").action, Action::Drop);
    assert_eq!(lab.drops(DropReason::UnknownFlow), 1);
    assert_eq!(lab.server_tcp(RIP1, 80, 1, ACK | PSH).action, Action::Drop);
    assert_eq!(lab.drops(DropReason::RsNoConn), 1);

    // A segment without ACK (a FIN of a half-open connection, 4 bytes of data): RST+ACK with
    // seq 0 and ack = its seq + data + FIN.
    let out = lab.client_tcp(3, 80, FIN, b"data");
    assert!(matches!(out.action, Action::Reply { port: EXT, .. }));
    assert_eq!(tcp_numbers(out.sent()), (0, 0x1000_0001 + 4 + 1, RST | ACK));
    // A client's RST is not answered; its connection goes all the same.
    assert_eq!(lab.client_tcp(5, 80, RST | ACK, b"").action, Action::Drop);
    assert_eq!(lab.drops(DropReason::DestRemoved), 3);
    assert_eq!(lab.events(Event::TcpRstSent), 2);
    // A SYN (retransmitted) is scheduled afresh: RS2.
    assert_eq!(lab.syn(7), RIP2);
    assert_eq!(lab.events(Event::NodestExpired), 4);
    // RS2's connections are untouched.
    assert_eq!(lab.client_tcp(2, 80, ACK, b"").action, Action::Tx(INT));
    assert_eq!(lab.client_tcp(6, 80, ACK, b"").action, Action::Tx(INT));
    let left: Vec<(u16, Ipv4Addr)> = lab.conns().into_iter().map(|c| (c.0, c.2)).collect();
    assert_eq!(left, [(2, RIP2), (4, RIP2), (6, RIP2), (7, RIP2)]);
    assert_eq!(lab.counts(web()), [(RIP2, 2, 2)]);
}

#[test]
fn expire_nodest_conn_decides_what_a_udp_flow_of_a_removed_server_does() {
    for expire in [0, 1] {
        let mut lab = Lab::new(SETUP);
        lab.sysctl("expire_nodest_conn", expire);
        let first = lab.client_udp(5000, 53);
        assert_eq!(check(&first.frame).dst, RIP1);
        let slot = lab.slot(dns(), RIP1);
        lab.rvsadm("-d -u 198.51.100.1:53 -r 192.0.2.2:53");
        let next = lab.client_udp(5000, 53);
        assert_eq!(next.action, Action::Tx(INT));
        if expire == 0 {
            assert_eq!(check(&next.frame).dst, RIP1, "keeps flowing");
            assert_eq!(lab.slot_counts(slot), (0, 1));
        } else {
            assert_eq!(check(&next.frame).dst, RIP2, "scheduled afresh");
            assert_eq!(lab.slot_counts(slot), (0, 0));
            assert_eq!(lab.counts(dns()), [(RIP2, 0, 1)]);
            assert_eq!(lab.events(Event::NodestExpired), 1);
            // The flow now lives on RS2: its answer is NATed, RS1's is dropped.
            assert_eq!(lab.server_udp(RIP2, 53, 5000).action, Action::Tx(EXT));
            assert_eq!(lab.server_udp(RIP1, 53, 5000).action, Action::Drop);
            assert_eq!(lab.drops(DropReason::RsNoConn), 1);
        }
        assert_eq!(lab.drops(DropReason::DestRemoved), 0);
        assert_eq!(lab.events(Event::TcpRstSent), 0);
    }
}

#[test]
fn a_real_servers_packet_without_connection_is_dropped_never_routed() {
    let mut lab = Lab::new(SETUP);
    // From a configured real server's service port, TCP and UDP: dropped, no answer.
    assert_eq!(
        lab.server_tcp(RIP1, 80, 4000, ACK | PSH).action,
        Action::Drop
    );
    assert_eq!(lab.server_udp(RIP2, 53, 4000).action, Action::Drop);
    assert_eq!(lab.drops(DropReason::RsNoConn), 2);
    // The real servers' own traffic from other ports is routed as before.
    let own = lab.server_tcp(RIP1, 40000, 443, SYN);
    assert_eq!(own.action, Action::Tx(EXT));
    assert_eq!(check(&own.frame).src, RIP1);
    assert_eq!(
        lab.server_udp(RIP1, 80, 4000).action,
        Action::Tx(EXT),
        "UDP 80 is no service"
    );
    assert_eq!(lab.events(Event::Forwarded), 2);

    // nat_icmp_send 1: ICMP port unreachable to the real server, from the DIP, quoting it.
    lab.sysctl("nat_icmp_send", 1);
    let out = lab.server_tcp(RIP2, 80, 4001, ACK);
    assert!(
        matches!(out.action, Action::Reply { port: INT, .. }),
        "{:?}",
        out.action
    );
    let s = check(out.sent());
    assert_eq!((s.src, s.dst, s.proto), (DIP, RIP2, 1));
    let icmp = &out.sent()[34..];
    assert_eq!((icmp[0], icmp[1]), (3, 3), "port unreachable");
    assert_eq!(
        &icmp[8 + 12..8 + 20],
        &[192, 0, 2, 3, 198, 51, 100, 10],
        "quotes it"
    );
    assert_eq!(lab.events(Event::IcmpPortUnreach), 1);
    // Not to a RST (as the kernel), and rate-limited like every ICMP error rvs sends.
    assert_eq!(lab.server_tcp(RIP2, 80, 4002, RST).action, Action::Drop);
    assert_eq!(lab.events(Event::IcmpPortUnreach), 1);
    let mut answered = 1;
    for cport in 0..100 {
        if let Action::Reply { .. } = lab.server_udp(RIP1, 53, 5000 + cport).action {
            answered += 1;
        }
    }
    assert_eq!(answered, dataplane::pipeline::ICMP_BURST);
    assert_eq!(lab.events(Event::IcmpRateLimited), 101 - answered);
    assert_eq!(lab.drops(DropReason::RsNoConn), 2 + 1 + 1 + 100);

    // A just-removed real server (its connection still draining) is recognised too.
    lab.now += 60_000;
    lab.sysctl("nat_icmp_send", 0);
    assert_eq!(lab.connect(7), RIP1);
    lab.rvsadm("-d -t 198.51.100.1:80 -r 192.0.2.2:80");
    assert_eq!(lab.server_tcp(RIP1, 80, 4003, ACK).action, Action::Drop);
    assert_eq!(
        lab.server_tcp(RIP1, 80, 7, ACK).action,
        Action::Tx(EXT),
        "its connection"
    );
    assert_eq!(lab.drops(DropReason::RsNoConn), 105);
}

#[test]
fn expire_nodest_conn_resets_ipv6_clients_too() {
    use control::proto::{Request, Response};
    use dataplane::pipeline::Pipeline;
    use testkit::ipv6::*;
    use testkit::plan::{CLIENT_MAC, RS1_MAC};
    let (dp, mut mgr) = two_arm6(
        1500,
        "-A -t [2001:db8:100::1]:80 -s rr\n\
         -a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
         -a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:80 -m",
    );
    let set = Request::SetSysctls(vec![("expire_nodest_conn".into(), 1)]);
    assert_eq!(mgr.handle(set), Response::Ok);
    let mut w = Pipeline::new(dp.clone(), 0);
    w.begin_burst(1_000);
    let (ext_mac, int_mac) = (testkit::director::EXT_MAC, testkit::director::INT_MAC);
    // A connection to RS1 (rr's first pick), then RS1 removed.
    let mut syn = tcp_frame6(ext_mac, CLIENT_MAC, (CIP6, 1), (VIP6, 80), SYN, b"");
    assert_eq!(w.process(EXT, &mut syn), Action::Tx(INT));
    assert_eq!(check6(&syn).dst, RIP6_1);
    let mut synack = tcp_frame6(int_mac, RS1_MAC, (RIP6_1, 80), (CIP6, 1), SYN | ACK, b"");
    assert_eq!(w.process(INT, &mut synack), Action::Tx(EXT));
    testkit::services::rvsadm(&mut mgr, "-d -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80");
    w.begin_burst(1_001);

    // The client's next segment (ACK 0x2000_0001): a RST from VIP6:80 with seq = its ack,
    // its checksum over the IPv6 pseudo-header (check6 recomputes it in full).
    let mut f = tcp_frame6(
        ext_mac,
        CLIENT_MAC,
        (CIP6, 1),
        (VIP6, 80),
        ACK | PSH,
        b"GET /",
    );
    let a = w.process(EXT, &mut f);
    let Action::Reply { port: EXT, len } = a else {
        panic!("{a:?}");
    };
    let s = check6(&f[..len]);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport, s.proto, s.hop_limit),
        (VIP6, 80, CIP6, 1, 6, 64)
    );
    assert_eq!((s.dst_mac, s.src_mac), (CLIENT_MAC, ext_mac));
    let t = &s.upper;
    assert_eq!(t.len(), 20);
    assert_eq!(
        (&t[4..8], &t[8..12], t[13]),
        (&0x2000_0001u32.to_be_bytes()[..], &[0u8; 4][..], RST)
    );
    let st = dp.stats();
    assert_eq!(st.drops(DropReason::DestRemoved), 1);
    assert_eq!(st.events(Event::TcpRstSent), 1);
    assert_eq!(st.events(Event::NodestExpired), 1);
    assert_eq!(dp.conns6().len(), 0, "the connection is gone");
}
