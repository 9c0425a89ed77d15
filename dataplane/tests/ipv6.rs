//! The IPv6 packet path end to end on byte buffers: the LVS-NAT walk-through with IPv6
//! (client 2001:db8:100::10, VIP 2001:db8:100::1, DIP 2001:db8:2::1, real servers
//! 2001:db8:2::2 and ::3): neighbour discovery, NAT both ways with checksums checked against
//! a full recompute, hop limit, packet too big, fragments following their flow, ICMPv6
//! errors NATed, echo, and the extension-header chains that are refused.

use dataplane::pipeline::{Action, Dataplane, Pipeline};
use dataplane::service::ServiceManager;
use dataplane::stats::{DropReason, Event};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use testkit::director::{EXT_MAC, INT_MAC};
use testkit::ipv6::*;
use testkit::plan::{CLIENT_MAC, RS1_MAC, RS2_MAC};
use testkit::services;
use testkit::{ACK, SYN, TCP, UDP};

const EXT: u16 = 0;
const INT: u16 = 1;

const SERVICES: &str = "-A -t [2001:db8:100::1]:80 -s rr\n\
     -a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
     -a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:80 -m\n\
     -A -u [2001:db8:100::1]:53 -s rr\n\
     -a -u [2001:db8:100::1]:53 -r [2001:db8:2::2]:53 -m";

struct Lab {
    dp: Arc<Dataplane>,
    w: Pipeline,
    mgr: ServiceManager,
}

impl Lab {
    /// The two-arm director with IPv6 (int MTU `int_mtu`), the services above, RS2 known too.
    fn new(int_mtu: u16) -> Lab {
        let (dp, mgr) = two_arm6(int_mtu, SERVICES);
        dp.neigh6().learn(INT, RIP6_2, RS2_MAC);
        let mut w = Pipeline::new(dp.clone(), 0);
        w.begin_burst(1_000);
        Lab { dp, w, mgr }
    }

    fn send(&mut self, port: u16, frame: &mut [u8]) -> Action {
        let len = frame.len();
        self.w.process_buf(port, frame, len)
    }

    /// Sends `frame` with room to grow (an ICMPv6 error built in its place).
    fn send_with_room(&mut self, port: u16, frame: &[u8]) -> (Action, Vec<u8>) {
        let mut buf = frame.to_vec();
        buf.resize(2048, 0);
        let a = self.w.process_buf(port, &mut buf, frame.len());
        (a, buf)
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.dp.stats().drops(r)
    }
}

fn syn(cport: u16) -> Vec<u8> {
    tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, cport), (VIP6, 80), SYN, b"")
}

#[test]
fn solicitations_for_our_addresses_and_the_vip_are_answered() {
    let mut lab = Lab::new(1500);
    for (port, mac, src, target) in [
        (EXT, CLIENT_MAC, CIP6, VIP6),
        (EXT, CLIENT_MAC, CIP6, EXT6),
        (INT, RS1_MAC, RIP6_1, DIP6),
    ] {
        let mut f = neighbour_solicitation(mac, src, target);
        let a = lab.send(port, &mut f);
        let Action::Reply { port: out, len } = a else {
            panic!("{target}: {a:?}");
        };
        assert_eq!(out, port);
        let seen = check6(&f[..len]);
        assert_eq!((seen.src, seen.dst, seen.hop_limit), (target, src, 255));
        assert_eq!((seen.dst_mac, seen.proto, seen.sport), (mac, 58, 136));
        let our_mac = if port == EXT { EXT_MAC } else { INT_MAC };
        assert_eq!(seen.src_mac, our_mac);
        // Target address, then the target link-layer option with our MAC.
        assert_eq!(&seen.upper[8..24], &target.octets());
        assert_eq!(
            &seen.upper[24..32],
            &[&[2u8, 1][..], &our_mac[..]].concat()[..]
        );
        assert_eq!(seen.upper[4] & 0x40, 0x40, "solicited flag");
    }
    // The VIP is not answered on the real servers' side; a stranger's address nowhere.
    let mut f = neighbour_solicitation(RS1_MAC, RIP6_1, VIP6);
    assert_eq!(lab.send(INT, &mut f), Action::Drop);
    let stranger = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x99);
    let mut f = neighbour_solicitation(CLIENT_MAC, CIP6, stranger);
    assert_eq!(lab.send(EXT, &mut f), Action::Drop);
    assert_eq!(lab.drops(DropReason::NdpNotOurs), 2);
    assert_eq!(lab.dp.stats().events(Event::NdpReplied), 3);
    // The solicitations taught us their senders.
    let rs3 = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 9);
    let mut f = neighbour_solicitation([2, 0, 0, 0, 0, 9], rs3, DIP6);
    assert!(matches!(lab.send(INT, &mut f), Action::Reply { .. }));
    assert_eq!(lab.dp.neigh6().lookup(INT, rs3), Some([2, 0, 0, 0, 0, 9]));
}

#[test]
fn neighbour_discovery_in_a_fragment_is_dropped() {
    // RFC 6980: a solicitation for our address in an atomic fragment (offset 0, M clear: the
    // whole message), with other extension headers or without, or in a first fragment, is
    // never answered nor learnt from.
    let mut lab = Lab::new(1500);
    let sender = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 9);
    let mac = [2, 0, 0, 0, 0, 9];
    let plain = neighbour_solicitation(mac, sender, DIP6);
    let (l2, ip) = plain.split_at(14);
    let (fixed, msg) = ip.split_at(40);
    let (src, dst) = (sender, solicited_node(DIP6));
    let atomic = frag_header(ICMPV6, 0, false, 7, msg);
    for chain in [
        ipv6(src, dst, FRAGMENT, 255, &atomic),
        ipv6(src, dst, HOP_BY_HOP, 255, &ext_header(FRAGMENT, 0, &atomic)),
        ipv6(
            src,
            dst,
            FRAGMENT,
            255,
            &frag_header(ICMPV6, 0, true, 8, msg),
        ),
    ] {
        assert_eq!(chain[8..40], fixed[8..40], "the solicitation's addresses");
        let mut f = [l2, &chain[..]].concat();
        let before = lab.drops(DropReason::BadFragment);
        assert_eq!(lab.send(INT, &mut f), Action::Drop);
        assert_eq!(lab.drops(DropReason::BadFragment), before + 1);
    }
    assert_eq!(lab.dp.neigh6().lookup(INT, sender), None, "nothing learnt");
    // The same message unfragmented is answered.
    let mut f = plain.clone();
    assert!(matches!(lab.send(INT, &mut f), Action::Reply { .. }));
    assert_eq!(lab.dp.neigh6().lookup(INT, sender), Some(mac));
}

#[test]
fn tcp_is_natted_both_ways_round_robin() {
    let mut lab = Lab::new(1500);
    let mut want = [(RIP6_1, RS1_MAC), (RIP6_2, RS2_MAC)].into_iter().cycle();
    for cport in [40001, 40002, 40003] {
        let mut f = syn(cport);
        assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT), "SYN {cport}");
        let seen = check6(&f);
        let (rip, mac) = want.next().unwrap();
        assert_eq!((seen.src, seen.dst, seen.dport), (CIP6, rip, 80));
        assert_eq!(
            (seen.dst_mac, seen.src_mac, seen.hop_limit),
            (mac, INT_MAC, 63)
        );
        // The real server's SYN-ACK goes back from the VIP.
        let mut back = tcp_frame6(INT_MAC, mac, (rip, 80), (CIP6, cport), SYN | ACK, b"");
        assert_eq!(lab.send(INT, &mut back), Action::Tx(EXT), "SYN-ACK {cport}");
        let seen = check6(&back);
        assert_eq!((seen.src, seen.sport, seen.dst), (VIP6, 80, CIP6));
        assert_eq!(seen.dst_mac, CLIENT_MAC);
        // Data on the connection goes to the same real server.
        let mut data = tcp_frame6(
            EXT_MAC,
            CLIENT_MAC,
            (CIP6, cport),
            (VIP6, 80),
            ACK,
            b"GET /",
        );
        assert_eq!(lab.send(EXT, &mut data), Action::Tx(INT));
        assert_eq!(check6(&data).dst, rip);
    }
    let st = lab.dp.stats();
    assert_eq!(st.events(Event::ConnCreated), 3);
    assert_eq!(lab.dp.conns6().len(), 3);
}

#[test]
fn udp_and_its_fragments_follow_the_flow() {
    let mut lab = Lab::new(1500);
    let mut f = udp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, 5353), (VIP6, 53), b"query");
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    assert_eq!(check6(&f).dst, RIP6_1);

    // A datagram in two fragments: the first carries the UDP header (its checksum covers the
    // whole datagram, so the NAT's incremental update is what a full recompute would give).
    let payload = [7u8; 64];
    let whole = udp_seg6((CIP6, 5354), (VIP6, 53), &payload);
    let (first, rest) = whole.split_at(48);
    let id = 0x0102_0304;
    let mut f1 = eth6(
        EXT_MAC,
        CLIENT_MAC,
        &ipv6(
            CIP6,
            VIP6,
            FRAGMENT,
            64,
            &frag_header(UDP, 0, true, id, first),
        ),
    );
    let mut f2 = eth6(
        EXT_MAC,
        CLIENT_MAC,
        &ipv6(
            CIP6,
            VIP6,
            FRAGMENT,
            64,
            &frag_header(UDP, 48, false, id, rest),
        ),
    );
    // The later fragment first: it waits for its first fragment's decision.
    assert_eq!(lab.send(EXT, &mut f2), Action::AwaitFirstFragment);
    assert_eq!(lab.send(EXT, &mut f1), Action::Tx(INT));
    let s1 = check6(&f1);
    assert_eq!((s1.dst, s1.dport, s1.hop_limit), (RIP6_1, 53, 63));
    assert_eq!(lab.w.retry_fragment(&mut f2), Action::Tx(INT));
    let s2 = check6(&f2);
    assert_eq!((s2.src, s2.dst, s2.hop_limit), (CIP6, RIP6_1, 63));
    // Reassembled, the datagram's checksum verifies with the new destination.
    let mut dgram = s1.upper.clone();
    dgram.extend_from_slice(&s2.upper);
    assert_eq!(checksum6(CIP6, RIP6_1, UDP, &dgram), 0, "datagram checksum");
    assert_eq!(lab.dp.stats().events(Event::FragFollowed), 1);
}

#[test]
fn hop_limit_and_mtu_are_answered_with_icmpv6() {
    let mut lab = Lab::new(1280);
    // Hop limit 1: time exceeded from the VIP (the packet's destination), quoting it.
    let seg = tcp_seg6((CIP6, 40001), (VIP6, 80), SYN, b"");
    let f = eth6(EXT_MAC, CLIENT_MAC, &ipv6(CIP6, VIP6, TCP, 1, &seg));
    let (a, buf) = lab.send_with_room(EXT, &f);
    let Action::Reply { port: EXT, len } = a else {
        panic!("{a:?}");
    };
    let seen = check6(&buf[..len]);
    assert_eq!(
        (seen.src, seen.dst, seen.sport, seen.dport),
        (VIP6, CIP6, 3, 0)
    );
    assert_eq!(&seen.upper[8..8 + 40], &f[14..54], "the packet quoted");
    assert_eq!(lab.drops(DropReason::TtlExpired), 1);

    // Over the real servers' MTU: packet too big with the MTU, never fragmented.
    let mut f = syn(40002);
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    let big = tcp_frame6(
        EXT_MAC,
        CLIENT_MAC,
        (CIP6, 40002),
        (VIP6, 80),
        ACK,
        &[0; 1300],
    );
    let (a, buf) = lab.send_with_room(EXT, &big);
    let Action::Reply { port: EXT, len } = a else {
        panic!("{a:?}");
    };
    let seen = check6(&buf[..len]);
    assert_eq!((seen.dst, seen.sport, seen.dport), (CIP6, 2, 0));
    assert_eq!(&seen.upper[4..8], &1280u32.to_be_bytes());
    assert!(len - 14 <= 1280, "an ICMPv6 error fits the minimum MTU");
    assert_eq!(lab.drops(DropReason::MtuExceeded), 1);
}

#[test]
fn echo_to_the_vip_and_our_address_is_answered() {
    let mut lab = Lab::new(1500);
    for dst in [VIP6, EXT6] {
        let m = icmp6(CIP6, dst, 128, 0, &[0, 1, 0, 1, b'h', b'i']);
        let mut f = eth6(EXT_MAC, CLIENT_MAC, &ipv6(CIP6, dst, ICMPV6, 64, &m));
        assert_eq!(lab.send(EXT, &mut f), Action::Tx(EXT));
        let seen = check6(&f);
        assert_eq!((seen.src, seen.dst, seen.sport), (dst, CIP6, 129));
        assert_eq!(&seen.upper[4..], &[0, 1, 0, 1, b'h', b'i']);
    }
    assert_eq!(lab.dp.stats().events(Event::EchoReplied), 2);
}

#[test]
fn icmpv6_errors_about_a_connection_are_natted() {
    let mut lab = Lab::new(1500);
    let mut f = syn(40001);
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    // The client's host says the VIP's reply was unreachable: the error goes to RS1 with the
    // quoted packet's source rewritten back to RIP:80.
    let quoted = ipv6(
        VIP6,
        CIP6,
        TCP,
        60,
        &tcp_seg6((VIP6, 80), (CIP6, 40001), SYN | ACK, b""),
    );
    let mut body = vec![0; 4];
    body.extend_from_slice(&quoted);
    let m = icmp6(CIP6, VIP6, 1, 4, &body);
    let mut e = eth6(EXT_MAC, CLIENT_MAC, &ipv6(CIP6, VIP6, ICMPV6, 64, &m));
    assert_eq!(lab.send(EXT, &mut e), Action::Tx(INT));
    let seen = check6(&e);
    assert_eq!((seen.src, seen.dst, seen.sport), (CIP6, RIP6_1, 1));
    let inner = &seen.upper[8..];
    assert_eq!(&inner[8..24], &RIP6_1.octets(), "quoted source");
    assert_eq!(&inner[40..42], &80u16.to_be_bytes(), "quoted source port");
    assert_eq!(lab.dp.stats().events(Event::IcmpNat), 1);
    // About nothing tracked: dropped.
    let quoted = ipv6(
        VIP6,
        CIP6,
        TCP,
        60,
        &tcp_seg6((VIP6, 80), (CIP6, 9), ACK, b""),
    );
    let mut body = vec![0; 4];
    body.extend_from_slice(&quoted);
    let m = icmp6(CIP6, VIP6, 1, 4, &body);
    let mut e = eth6(EXT_MAC, CLIENT_MAC, &ipv6(CIP6, VIP6, ICMPV6, 64, &m));
    assert_eq!(lab.send(EXT, &mut e), Action::Drop);
    assert_eq!(lab.drops(DropReason::IcmpUnrelated), 1);
}

#[test]
fn unknown_next_hops_are_held_and_solicited() {
    let (dp, _mgr) = two_arm6(1500, SERVICES);
    let mut w = Pipeline::new(dp.clone(), 0);
    w.begin_burst(1_000);
    // RS2 is unknown in this director.
    let mut f = syn(40001);
    assert_eq!(w.process(EXT, &mut f), Action::Tx(INT));
    let mut f = syn(40002);
    let a = w.process(EXT, &mut f);
    assert_eq!(
        a,
        Action::Hold {
            port: INT,
            next_hop: IpAddr::V6(RIP6_2)
        }
    );
    let mut buf = [0u8; 128];
    let n = w.neighbour_request(INT, RIP6_2, &mut buf);
    assert!(n > 0);
    let seen = check6(&buf[..n]);
    assert_eq!((seen.src, seen.dst), (DIP6, solicited_node(RIP6_2)));
    assert_eq!(
        (seen.dst_mac, seen.sport, seen.hop_limit),
        (multicast_mac(solicited_node(RIP6_2)), 135, 255)
    );
    assert_eq!(&seen.upper[8..24], &RIP6_2.octets());
    // Its advertisement lets the held frame go.
    let mut na = neighbour_advertisement(INT_MAC, RS2_MAC, RIP6_2, DIP6);
    assert_eq!(w.process(INT, &mut na), Action::Drop, "consumed");
    assert!(w.fill_l2(INT, RIP6_2, &mut f));
    assert_eq!(check6(&f).dst_mac, RS2_MAC);
}

#[test]
fn refused_extension_header_chains_are_counted() {
    let mut lab = Lab::new(1500);
    let udp = udp_seg6((CIP6, 5353), (VIP6, 53), b"q");
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        // An unknown next header.
        (
            ipv6(CIP6, VIP6, 253, 64, &ext_header(UDP, 0, &udp)),
            DropReason::UnknownExtHeader,
        ),
        // Hop-by-hop after a destination-options header.
        (
            ipv6(
                CIP6,
                VIP6,
                DEST_OPTS,
                64,
                &ext_header(HOP_BY_HOP, 0, &ext_header(UDP, 0, &udp)),
            ),
            DropReason::BadExtHeader,
        ),
        // A fragment inside a fragment.
        (
            ipv6(
                CIP6,
                VIP6,
                FRAGMENT,
                64,
                &frag_header(FRAGMENT, 0, true, 1, &frag_header(UDP, 0, true, 2, &udp)),
            ),
            DropReason::BadFragment,
        ),
        // An extension header running past the packet.
        (
            ipv6(CIP6, VIP6, DEST_OPTS, 64, &[UDP, 200, 1, 0]),
            DropReason::BadExtHeader,
        ),
    ];
    for (ip, reason) in cases {
        let before = lab.drops(reason);
        let mut f = eth6(EXT_MAC, CLIENT_MAC, &ip);
        assert_eq!(lab.send(EXT, &mut f), Action::Drop, "{reason:?}");
        assert_eq!(lab.drops(reason), before + 1, "{reason:?}");
    }
    // A valid chain (hop-by-hop, destination options) is walked and NATed.
    let ip = ipv6(
        CIP6,
        VIP6,
        HOP_BY_HOP,
        64,
        &ext_header(DEST_OPTS, 0, &ext_header(UDP, 0, &udp)),
    );
    let mut f = eth6(EXT_MAC, CLIENT_MAC, &ip);
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    // Every truncation of a frame is dropped, never a panic.
    let full = syn(40009);
    for n in 0..full.len() {
        let mut f = full[..n].to_vec();
        assert_eq!(lab.send(EXT, &mut f), Action::Drop, "{n} bytes");
    }
}

#[test]
fn a_routing_header_with_segments_left_is_routed_in_transit_only() {
    let mut lab = Lab::new(1500);
    // A segment routing header (type 4) with one segment left, in front of UDP.
    let routed = |dst: Ipv6Addr, hop: u8| {
        let mut rh = ext_header(UDP, 2, &udp_seg6((CIP6, 7000), (dst, 7777), b"sr"));
        rh[2..4].copy_from_slice(&[4, 1]);
        eth6(EXT_MAC, CLIENT_MAC, &ipv6(CIP6, dst, ROUTING, hop, &rh))
    };
    // In transit (RS2, a host behind us but not ours): RFC 8200 4.4 leaves the routing header
    // to the node in the destination field, so it is routed as any packet, hop limit 63.
    let sent = routed(RIP6_2, 64);
    let mut f = sent.clone();
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    assert_eq!(&f[..6], &RS2_MAC, "to the next hop");
    assert_eq!(f[14 + 7], 63, "hop limit decremented");
    assert_eq!(
        (&f[14..21], &f[22..]),
        (&sent[14..21], &sent[22..]),
        "nothing else"
    );
    // With hop limit 1: time exceeded, as for any packet routed.
    let (a, buf) = lab.send_with_room(EXT, &routed(RIP6_2, 1));
    let Action::Reply { port: EXT, len } = a else {
        panic!("{a:?}");
    };
    let seen = check6(&buf[..len]);
    assert_eq!((seen.dst, seen.sport, seen.dport), (CIP6, 3, 0));
    assert_eq!(lab.drops(DropReason::TtlExpired), 1);
    // To us (a port address or the VIP): rvs would have to process it; dropped as before.
    for dst in [DIP6, EXT6, VIP6] {
        let before = lab.drops(DropReason::BadExtHeader);
        let mut f = routed(dst, 64);
        assert_eq!(lab.send(EXT, &mut f), Action::Drop, "{dst}");
        assert_eq!(lab.drops(DropReason::BadExtHeader), before + 1, "{dst}");
    }
}

#[test]
fn persistence_keeps_an_ipv6_client_prefix_on_one_real_server() {
    // -M 64: every client of the /64 sticks to the real server its first connection got.
    let (dp, _mgr) = two_arm6(
        1500,
        "-A -t [2001:db8:100::1]:443 -s rr -p 300 -M 64\n\
         -a -t [2001:db8:100::1]:443 -r [2001:db8:2::2]:443 -m\n\
         -a -t [2001:db8:100::1]:443 -r [2001:db8:2::3]:443 -m",
    );
    dp.neigh6().learn(INT, RIP6_2, RS2_MAC);
    let mut w = Pipeline::new(dp.clone(), 0);
    w.begin_burst(1_000);
    let mut first = None;
    for (host, cport) in [(0x10, 40001), (0x10, 40002), (0x11, 40003), (0x12, 40004)] {
        let client = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, host);
        dp.neigh6().learn(EXT, client, CLIENT_MAC);
        let mut f = tcp_frame6(EXT_MAC, CLIENT_MAC, (client, cport), (VIP6, 443), SYN, b"");
        assert_eq!(w.process(EXT, &mut f), Action::Tx(INT));
        let rip = check6(&f).dst;
        let stuck = *first.get_or_insert(rip);
        assert_eq!(stuck, rip, "{client} stuck to {stuck}");
    }
    // A client of another /64 is scheduled on its own: round robin moves on.
    let other = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 1, 0, 0, 0, 0x10);
    let mut f = tcp_frame6(EXT_MAC, CLIENT_MAC, (other, 40005), (VIP6, 443), SYN, b"");
    // Not on link: no route back is needed for the DNAT itself.
    assert_eq!(w.process(EXT, &mut f), Action::Tx(INT));
    assert_ne!(Some(check6(&f).dst), first);
}

/// `-L -c` lists IPv6 templates as ipvsadm lists the kernel's: the client prefix (`-M`) with
/// port 0, state NONE (TCP) or UDP, the VIP (port 0 for a port-0 service), the real server,
/// addresses in brackets.
#[test]
fn ipv6_templates_are_listed_with_the_connections() {
    let (dp, mut mgr) = two_arm6(
        1500,
        "-A -t [2001:db8:100::1]:443 -s rr -p 60 -M 64\n\
         -a -t [2001:db8:100::1]:443 -r [2001:db8:2::2]:443 -m\n\
         -a -t [2001:db8:100::1]:443 -r [2001:db8:2::3]:443 -m\n\
         -A -u [2001:db8:100::1]:0 -s rr -p 30\n\
         -a -u [2001:db8:100::1]:0 -r 2001:db8:2::3 -m",
    );
    dp.neigh6().learn(INT, RIP6_2, RS2_MAC);
    let mut w = Pipeline::new(dp.clone(), 0);
    w.begin_burst(1_000);
    // Two clients of one /64: one template.
    for (host, cport) in [(0x10, 40001), (0x11, 40002)] {
        let client = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, host);
        dp.neigh6().learn(EXT, client, CLIENT_MAC);
        let mut f = tcp_frame6(EXT_MAC, CLIENT_MAC, (client, cport), (VIP6, 443), SYN, b"");
        assert_eq!(w.process(EXT, &mut f), Action::Tx(INT));
        assert_eq!(check6(&f).dst, RIP6_1);
    }
    // A port-0 service: one template for every port, with virtual port 0.
    for vport in [53, 123] {
        let mut f = udp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, 5000), (VIP6, vport), b"q");
        assert_eq!(w.process(EXT, &mut f), Action::Tx(INT));
        assert_eq!((check6(&f).dst, check6(&f).dport), (RIP6_2, vport));
    }
    assert_eq!(dp.persist().live_count(1_000), 2);
    let text = control::format::conns(&services::conns(&mut mgr));
    // A template's source is the client network with port 0.
    let source_port_0 = |l: &&str| {
        l.split_whitespace()
            .nth(3)
            .is_some_and(|s| s.ends_with(":0"))
    };
    let mut templates: Vec<_> = text.lines().filter(source_port_0).collect();
    templates.sort();
    assert_eq!(
        templates,
        [
            "TCP 01:00  NONE        [2001:db8:100::]:0 [2001:db8:100::1]:443 [2001:db8:2::2]:443",
            "UDP 00:30  UDP         [2001:db8:100::10]:0 [2001:db8:100::1]:0 [2001:db8:2::3]:0",
        ],
        "{text}"
    );
    // Past its timeout a template is not listed any more.
    w.begin_burst(32_000);
    let text = control::format::conns(&services::conns(&mut mgr));
    assert!(!text.contains("]:0 [2001:db8:100::1]:0 "), "{text}");
    assert!(text.contains("[2001:db8:100::]:0 "), "{text}");
}

#[test]
fn ipv6_connections_are_listed_with_the_ipv4_ones() {
    use control::proto::{Request, Response};
    let mut lab = Lab::new(1500);
    let mut f = syn(40001);
    assert_eq!(lab.send(EXT, &mut f), Action::Tx(INT));
    let Response::Conns(conns) = lab.mgr.handle(Request::ListConns) else {
        panic!("no connection listing");
    };
    let c = conns.iter().find(|c| c.client.1 == 40001).expect("listed");
    assert_eq!(
        (c.client.0, c.virt, c.dest, c.state.as_str()),
        (
            IpAddr::V6(CIP6),
            (IpAddr::V6(VIP6), 80),
            (IpAddr::V6(RIP6_1), 80),
            "SYN_RECV"
        )
    );
}

/// Found in review: a DAD probe (78 bytes, no link-layer option) is answered in the room after
/// the frame, so rvs defends the VIP; a later fragment whose first fragment had a destination
/// options header after the fragment header follows it; a link-local source is never forwarded
/// off its link; an advertisement without the override flag does not replace a known MAC.
#[test]
fn review_findings_stay_fixed() {
    let mut lab = Lab::new(1500);
    // DAD for the VIP, from ::.
    let group = solicited_node(VIP6);
    let mut body = vec![0; 4];
    body.extend_from_slice(&VIP6.octets());
    let m = icmp6(Ipv6Addr::UNSPECIFIED, group, 135, 0, &body);
    let probe = eth6(
        multicast_mac(group),
        [2, 0, 0, 0, 0, 0x77],
        &ipv6(Ipv6Addr::UNSPECIFIED, group, ICMPV6, 255, &m),
    );
    assert_eq!(probe.len(), 78);
    let (a, buf) = lab.send_with_room(EXT, &probe);
    let Action::Reply { port: EXT, len } = a else {
        panic!("DAD probe: {a:?}");
    };
    let na = check6(&buf[..len]);
    assert_eq!(
        (na.src, na.dst, na.sport),
        (VIP6, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 136)
    );

    // Destination options in the fragmentable part.
    let whole = udp_seg6((CIP6, 5354), (VIP6, 53), &[7u8; 64]);
    let mut fr = ext_header(UDP, 0, &[]);
    fr.extend_from_slice(&whole);
    let (first, rest) = fr.split_at(56);
    let f = |off, more, part: &[u8]| {
        eth6(
            EXT_MAC,
            CLIENT_MAC,
            &ipv6(
                CIP6,
                VIP6,
                FRAGMENT,
                64,
                &frag_header(DEST_OPTS, off, more, 9, part),
            ),
        )
    };
    let (mut f1, mut f2) = (f(0, true, first), f(56, false, rest));
    assert_eq!(lab.send(EXT, &mut f1), Action::Tx(INT));
    assert_eq!(lab.send(EXT, &mut f2), Action::Tx(INT));
    assert_eq!(check6(&f2).dst, check6(&f1).dst);

    // A link-local source to the VIP: a martian.
    let ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10);
    let before = lab.drops(DropReason::Martian);
    let mut f = tcp_frame6(EXT_MAC, CLIENT_MAC, (ll, 40000), (VIP6, 80), SYN, b"");
    assert_eq!(lab.send(EXT, &mut f), Action::Drop);
    assert_eq!(lab.drops(DropReason::Martian), before + 1);

    // An unsolicited advertisement without override for RS1: RS1's MAC stays.
    let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let evil = [2, 0, 0, 0, 0xee, 0xee];
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&RIP6_1.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&evil);
    let m = icmp6(RIP6_1, all, 136, 0, &body);
    let mut f = eth6(
        multicast_mac(all),
        evil,
        &ipv6(RIP6_1, all, ICMPV6, 255, &m),
    );
    assert_eq!(lab.send(INT, &mut f), Action::Drop);
    assert_eq!(lab.dp.neigh6().lookup(INT, RIP6_1), Some(RS1_MAC));
}
