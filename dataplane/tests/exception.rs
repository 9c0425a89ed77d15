//! The kernel exception path on byte buffers: what goes up to a port's kernel twin (own-address
//! traffic the dataplane does not handle), what does not (VIP traffic, echo, forwarding, ports
//! without a twin), the per-worker rate, and packets coming down from the kernel.

use dataplane::driver::{BurstDriver, ByteFrame, ByteIo};
use dataplane::packet::eth::{ipv4_multicast_mac, BROADCAST};
use dataplane::pipeline::{Action, Dataplane, KernelPath};
use dataplane::stats::{DropReason, Event};
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::director::{assert_balanced, poll_rx, two_arm_with_twins, EXT_MAC, INT_MAC};
use testkit::plan::{CIP, CLIENT_MAC, DIP, RIP1, RIP2, RS1_MAC, VIP};
use testkit::{eth, icmp_echo, ipv4, ipv4_with, tcp_frame, udp_frame, ACK, ICMP, SYN};

const EXT: u16 = 0;
const INT: u16 = 1;
const ROOM: usize = 2048;

struct Dir {
    dp: Arc<Dataplane>,
    driver: BurstDriver<ByteFrame>,
    io: ByteIo,
    now: u64,
}

impl Dir {
    /// The two-arm director with a VIP service (TCP 80 to RIP1:80, UDP 9000 to RIP1:9000 with
    /// one-packet scheduling), twins on the ports `twins` says, the client and RIP1 known.
    fn new(twins: [bool; 2], rate: u64, burst: u64) -> Dir {
        let dp = two_arm_with_twins(
            KernelPath {
                twins: twins.to_vec(),
                rate,
                burst,
            },
            "-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m\n\
             -A -u 198.51.100.1:9000 -s rr -o\n-a -u 198.51.100.1:9000 -r 192.0.2.2:9000 -m\n",
        );
        Dir {
            driver: BurstDriver::new(dp.clone(), 0),
            dp,
            io: ByteIo::new(ROOM),
            now: 1_000,
        }
    }

    /// One poll loop with `frame` received on `port`; what the pipeline decided.
    fn send(&mut self, port: u16, frame: &[u8]) -> Action {
        poll_rx(&mut self.driver, &mut self.io, self.now, port, frame, ROOM)
    }

    /// One poll loop with `packet` coming down from the kernel through the twin of `twin`.
    fn down(&mut self, twin: u16, packet: &[u8]) -> Action {
        let mut f = vec![0xee; 14];
        f.extend_from_slice(packet);
        self.driver.begin(self.now);
        let a = self
            .driver
            .rx_from_kernel(&mut self.io, twin, ByteFrame::with_room(&f, ROOM));
        self.driver.finish(&mut self.io);
        a
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.dp.stats().drops(r)
    }

    fn events(&self, e: Event) -> u64 {
        self.dp.stats().events(e)
    }

    /// rx + generated = tx + drops + to_kernel + held.
    fn balanced(&self) {
        assert_balanced(&self.dp, &self.driver);
    }
}

/// The frame's IPv4 packet (Ethernet stripped, padding cut).
fn packet_of(frame: &[u8]) -> Vec<u8> {
    let ip = &frame[14..];
    let len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    ip[..len].to_vec()
}

/// An Ethernet frame around the IPv4 packet `ip`.
fn ip_frame(dst_mac: [u8; 6], src_mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    eth(dst_mac, src_mac, 0x0800, ip)
}

/// A UDP datagram (with its checksum) as an IPv4 packet, without L2.
fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let seg = testkit::udp_seg(src.0, src.1, dst.0, dst.1, payload, true);
    ipv4(src.0, dst.0, 17, 64, &seg)
}

/// One frame of each kind of own-address traffic the dataplane does not handle, with the port
/// it arrives on and the reason it is dropped without a twin.
fn own_address_frames() -> Vec<(&'static str, u16, Vec<u8>, DropReason)> {
    let echo_reply = icmp_echo(0, 7, 1, b"pong");
    // Port unreachable quoting a UDP datagram DIP:40000 -> RIP1:9 (nothing tracked).
    let quoted = udp_packet((DIP, 40000), (RIP1, 9), b"");
    let mut unreach = vec![3, 3, 0, 0, 0, 0, 0, 0];
    unreach.extend_from_slice(&quoted);
    let c = testkit::inet_checksum(&unreach);
    unreach[2..4].copy_from_slice(&c.to_be_bytes());
    vec![
        (
            // A health check's SYN-ACK from a real server's service port to the DIP.
            "tcp syn-ack from RIP:80",
            INT,
            tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (DIP, 40000), SYN | ACK, b""),
            DropReason::Local,
        ),
        (
            "udp from RIP:9000 (a one-packet service's port)",
            INT,
            udp_frame(INT_MAC, RS1_MAC, (RIP1, 9000), (DIP, 40001), b"rs1", true),
            DropReason::Local,
        ),
        (
            "ssh to the DIP",
            INT,
            tcp_frame(INT_MAC, RS1_MAC, (RIP1, 50000), (DIP, 22), SYN, b""),
            DropReason::Local,
        ),
        (
            "tcp to the external port's non-VIP address",
            EXT,
            tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 50000), (DIP, 179), SYN, b""),
            DropReason::Local,
        ),
        (
            "echo reply to the DIP",
            INT,
            ip_frame(INT_MAC, RS1_MAC, &ipv4(RIP1, DIP, ICMP, 64, &echo_reply)),
            DropReason::IcmpUnhandled,
        ),
        (
            "port unreachable to the DIP",
            INT,
            ip_frame(INT_MAC, RS1_MAC, &ipv4(RIP1, DIP, ICMP, 64, &unreach)),
            DropReason::IcmpUnrelated,
        ),
        (
            "vrrp-like protocol 112 to the DIP",
            INT,
            ip_frame(INT_MAC, RS1_MAC, &ipv4(RIP1, DIP, 112, 255, b"vrrp")),
            DropReason::Local,
        ),
        (
            "first fragment to the DIP",
            INT,
            eth(
                INT_MAC,
                RS1_MAC,
                0x0800,
                &ipv4_with(RIP1, DIP, 17, 64, 9, 0x2000, &[0; 16]),
            ),
            DropReason::Fragment,
        ),
        (
            "later fragment to the DIP",
            INT,
            eth(
                INT_MAC,
                RS1_MAC,
                0x0800,
                &ipv4_with(RIP1, DIP, 17, 64, 9, 2, &[0; 16]),
            ),
            DropReason::Fragment,
        ),
    ]
}

#[test]
fn own_address_traffic_goes_up_to_the_ingress_twin_l2_stripped() {
    let mut d = Dir::new([true, true], 1000, 100);
    for (i, (what, port, frame, _)) in own_address_frames().into_iter().enumerate() {
        assert_eq!(d.send(port, &frame), Action::ToKernel { port }, "{what}");
        let (twin, up) = d.io.kernel.last().expect(what);
        assert_eq!(*twin, port, "{what}");
        assert_eq!(up.bytes(), &frame[14..], "{what}: the frame without L2");
        assert_eq!(packet_of(&frame), &up.bytes()[..packet_of(&frame).len()]);
        assert_eq!(d.events(Event::ToKernel), i as u64 + 1, "{what}");
    }
    assert_eq!(d.dp.stats().dropped(), 0, "{:?}", d.dp.stats().counters());
    assert_eq!(d.dp.stats().tx_packets(), 0);
    d.balanced();
}

#[test]
fn without_a_twin_own_address_traffic_is_dropped_as_before() {
    // A twin on ext only: what arrives on int is dropped under its old reason.
    let mut d = Dir::new([true, false], 1000, 100);
    for (what, port, frame, reason) in own_address_frames() {
        let before = d.drops(reason);
        let a = d.send(port, &frame);
        if port == INT {
            assert_eq!(a, Action::Drop, "{what}");
            assert_eq!(d.drops(reason), before + 1, "{what}");
        } else {
            assert_eq!(a, Action::ToKernel { port }, "{what}");
        }
    }
    assert_eq!(d.io.kernel.len(), 1);
    d.balanced();
}

#[test]
fn vip_traffic_echo_and_forwarding_stay_in_the_dataplane() {
    let mut d = Dir::new([true, true], 1000, 100);
    // A client's SYN to the VIP: DNATed to RIP1 on int.
    let syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), SYN, b"");
    assert_eq!(d.send(EXT, &syn), Action::Tx(INT));
    // Its reply: SNATed back out of ext.
    let synack = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 40000), SYN | ACK, b"");
    assert_eq!(d.send(INT, &synack), Action::Tx(EXT));
    // Echo requests to the DIP and to the VIP are answered here.
    let ping = |dst| {
        ip_frame(
            INT_MAC,
            RS1_MAC,
            &ipv4(RIP1, dst, ICMP, 64, &icmp_echo(8, 1, 1, b"ping")),
        )
    };
    assert_eq!(d.send(INT, &ping(DIP)), Action::Tx(INT));
    assert_eq!(d.send(INT, &ping(VIP)), Action::Tx(INT));
    // Plain routing between the ports.
    let fwd = udp_frame(INT_MAC, RS1_MAC, (RIP1, 5000), (CIP, 5000), b"x", true);
    assert_eq!(d.send(INT, &fwd), Action::Tx(EXT));
    // TCP to the VIP on a port without a service, ICMP other than echo to the VIP, and a
    // real server's un-NATable answer to a client are not the kernel's.
    let no_svc = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40001), (VIP, 22), SYN, b"");
    assert_eq!(d.send(EXT, &no_svc), Action::Drop);
    assert_eq!(d.drops(DropReason::NoService), 1);
    let echo_reply_to_vip = ip_frame(
        EXT_MAC,
        CLIENT_MAC,
        &ipv4(CIP, VIP, ICMP, 64, &icmp_echo(0, 1, 1, b"x")),
    );
    assert_eq!(d.send(EXT, &echo_reply_to_vip), Action::Drop);
    assert_eq!(d.drops(DropReason::IcmpUnhandled), 1);
    let stray = tcp_frame(INT_MAC, RS1_MAC, (RIP1, 80), (CIP, 40009), ACK, b"");
    assert_eq!(d.send(INT, &stray), Action::Drop);
    assert_eq!(d.drops(DropReason::RsNoConn), 1);
    assert!(d.io.kernel.is_empty());
    assert_eq!(d.events(Event::ToKernel), 0);
    d.balanced();
}

#[test]
fn up_traffic_is_rate_limited_per_worker_and_counted() {
    let (rate, burst) = (100, 10);
    let mut d = Dir::new([true, true], rate, burst);
    let flood = |i: u16| udp_frame(INT_MAC, RS1_MAC, (RIP1, 9999), (DIP, i), b"flood", true);
    // 1000 datagrams in one millisecond: the burst goes up, the rest is counted.
    for i in 0..1000 {
        d.send(INT, &flood(i));
    }
    assert_eq!(d.events(Event::ToKernel), burst);
    assert_eq!(d.drops(DropReason::KernelRateLimited), 1000 - burst);
    // Then the rate: 2 seconds later the bucket holds its burst again, no more; over 1 s of
    // a steady flood (10 per ms) about `rate` more go up.
    d.now += 2_000;
    for ms in 0..1000 {
        for i in 0..10 {
            d.send(INT, &flood(i));
        }
        d.now += 1;
        let _ = ms;
    }
    let up = d.events(Event::ToKernel) - burst;
    assert!((rate..=rate + burst + 1).contains(&up), "{up}");
    // VIP traffic still flows during the flood.
    let syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), SYN, b"");
    assert_eq!(d.send(EXT, &syn), Action::Tx(INT));
    d.balanced();
}

#[test]
fn a_full_kernel_queue_drops_and_counts() {
    let mut d = Dir::new([true, true], 1000, 100);
    d.io.kernel_limit = 2;
    for i in 0..5 {
        let f = udp_frame(INT_MAC, RS1_MAC, (RIP1, 53), (DIP, 1000 + i), b"x", true);
        d.send(INT, &f);
    }
    assert_eq!(d.events(Event::ToKernel), 2);
    assert_eq!(d.drops(DropReason::KernelQueueFull), 3);
    d.balanced();
}

/// The kernel's SYN from DIP:`sport` to `rip`:80, as it comes out of a twin (no L2).
fn syn_from_dip(rip: Ipv4Addr, sport: u16) -> Vec<u8> {
    ipv4(
        DIP,
        rip,
        6,
        64,
        &testkit::tcp_seg(DIP, sport, rip, 80, SYN, b""),
    )
}

#[test]
fn packets_from_the_kernel_are_routed_out_of_the_right_port() {
    let mut d = Dir::new([true, true], 1000, 100);
    // A health check's SYN from the DIP to RIP1 (known): out of int at once, L2 filled, TTL
    // as the kernel set it.
    let syn = syn_from_dip(RIP1, 40000);
    assert_eq!(d.down(INT, &syn), Action::Tx(INT));
    let out = d.io.sent_on(INT)[0].bytes().to_vec();
    let seen = testkit::check(&out);
    assert_eq!((seen.dst_mac, seen.src_mac), (RS1_MAC, INT_MAC));
    assert_eq!((seen.src, seen.dst, seen.ttl), (DIP, RIP1, 64));
    assert_eq!(&out[14..], &syn[..]);
    d.io.clear();

    // To RIP2 (unknown): held, an ARP request out of int; sent once RIP2 answers.
    let syn2 = syn_from_dip(RIP2, 40001);
    assert_eq!(
        d.down(INT, &syn2),
        Action::Hold {
            port: INT,
            next_hop: RIP2.into()
        }
    );
    assert_eq!(d.io.sent_on(INT).len(), 1, "the ARP request");
    assert_eq!(&d.io.sent_on(INT)[0].bytes()[12..14], &[0x08, 0x06]);
    d.io.clear();
    let rs2_mac = [2, 0, 0, 0, 3, 3];
    let reply = eth(
        INT_MAC,
        rs2_mac,
        0x0806,
        &testkit::arp(2, rs2_mac, RIP2, INT_MAC, DIP),
    );
    d.send(INT, &reply);
    let out = d.io.sent_on(INT)[0].bytes();
    assert_eq!(&out[..6], &rs2_mac);
    assert_eq!(&out[14..], &syn2[..]);
    d.io.clear();

    // To a client, from the VIP's side: out of ext.
    let udp = udp_packet((VIP, 53), (CIP, 5353), b"a");
    assert_eq!(d.down(EXT, &udp), Action::Tx(EXT));

    // Unroutable: no route (no gateway), broadcast, not IPv4, over the MTU, truncated.
    let nowhere = Ipv4Addr::new(203, 0, 113, 9);
    let bad = [
        ipv4(DIP, nowhere, 17, 64, &[0; 8]),
        ipv4(DIP, Ipv4Addr::BROADCAST, 17, 64, &[0; 8]),
        vec![0x60, 0, 0, 0, 0, 8, 17, 64],
        ipv4(DIP, RIP1, 17, 64, &[0; 1600]),
        syn[..10].to_vec(),
    ];
    for p in &bad {
        assert_eq!(d.down(INT, p), Action::Drop, "{p:?}");
    }
    assert_eq!(d.drops(DropReason::KernelUnroutable), bad.len() as u64);
    assert_eq!(d.events(Event::FromKernel), 3 + bad.len() as u64);
    d.balanced();
}

const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const SYNC_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// 01:00:5e:00:00:12, VRRP's group MAC.
const VRRP_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
/// The other director's MAC on the client segment.
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 9, 9];

/// A VRRPv3-like advert (protocol 112, TTL 255) from `src` to 224.0.0.18, as an IPv4 packet.
fn advert(src: Ipv4Addr) -> Vec<u8> {
    ipv4(src, VRRP_GROUP, 112, 255, &[0x31, 51, 100, 1, 0, 100, 0, 0])
}

#[test]
fn link_local_multicast_goes_up_to_the_ingress_twin() {
    let mut d = Dir::new([true, true], 1000, 100);
    let peer = Ipv4Addr::new(198, 51, 100, 2);
    // A peer's VRRP advert on ext, and IPVS sync datagrams on int.
    let vrrp = ip_frame(VRRP_MAC, PEER_MAC, &advert(peer));
    let sync_mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x51];
    let sync = udp_frame(
        sync_mac,
        RS1_MAC,
        (RIP2, 8848),
        (SYNC_GROUP, 8848),
        b"s",
        true,
    );
    for (what, port, frame) in [("vrrp", EXT, &vrrp), ("sync", INT, &sync)] {
        assert_eq!(d.send(port, frame), Action::ToKernel { port }, "{what}");
        let (twin, up) = d.io.kernel.last().expect(what);
        assert_eq!(*twin, port);
        // L2 stripped, nothing else touched: the advert keeps its TTL of 255.
        assert_eq!(up.bytes(), &frame[14..], "{what}");
    }
    assert_eq!(d.events(Event::MulticastToKernel), 2);
    assert_eq!(d.events(Event::ToKernel), 2);
    assert_eq!(d.dp.stats().dropped(), 0, "{:?}", d.dp.stats().counters());
    d.balanced();
}

#[test]
fn other_multicast_and_ports_without_a_twin_drop_as_before() {
    // A twin on ext only.
    let mut d = Dir::new([true, false], 1000, 100);
    let peer = Ipv4Addr::new(198, 51, 100, 2);
    let group = |g: Ipv4Addr, src: Ipv4Addr| {
        ip_frame(
            ipv4_multicast_mac(g),
            PEER_MAC,
            &ipv4(
                src,
                g,
                17,
                1,
                &testkit::udp_seg(src, 5000, g, 5000, b"m", true),
            ),
        )
    };
    let mut wrong_mac = ip_frame(VRRP_MAC, PEER_MAC, &advert(peer));
    wrong_mac[5] = 0x13;
    let mut bad_sum = ip_frame(VRRP_MAC, PEER_MAC, &advert(peer));
    bad_sum[14 + 10] ^= 0xff;
    let refused = [
        (
            "on int, no twin",
            INT,
            ip_frame(VRRP_MAC, RS1_MAC, &advert(RIP1)),
        ),
        (
            "beyond 224.0.0.0/24",
            EXT,
            group(Ipv4Addr::new(224, 0, 1, 18), peer),
        ),
        (
            "an admin-scoped group",
            EXT,
            group(Ipv4Addr::new(239, 1, 2, 3), peer),
        ),
        ("not the group's MAC", EXT, wrong_mac),
        (
            "to the broadcast MAC",
            EXT,
            ip_frame(BROADCAST, PEER_MAC, &advert(peer)),
        ),
        (
            "from the VIP (ours)",
            EXT,
            ip_frame(VRRP_MAC, PEER_MAC, &advert(VIP)),
        ),
        (
            "from the DIP (ours)",
            EXT,
            ip_frame(VRRP_MAC, PEER_MAC, &advert(DIP)),
        ),
        (
            "from 0.0.0.0",
            EXT,
            ip_frame(VRRP_MAC, PEER_MAC, &advert(Ipv4Addr::UNSPECIFIED)),
        ),
        ("bad header checksum", EXT, bad_sum),
        (
            "truncated",
            EXT,
            ip_frame(VRRP_MAC, PEER_MAC, &advert(peer))[..20].to_vec(),
        ),
    ];
    for (i, (what, port, frame)) in refused.iter().enumerate() {
        assert_eq!(d.send(*port, frame), Action::Drop, "{what}");
        assert_eq!(d.drops(DropReason::L2Multicast), i as u64 + 1, "{what}");
    }
    assert!(d.io.kernel.is_empty());
    assert_eq!(d.events(Event::MulticastToKernel), 0);
    d.balanced();
}

#[test]
fn multicast_up_shares_the_workers_rate() {
    let (rate, burst) = (100, 10);
    let mut d = Dir::new([true, true], rate, burst);
    let vrrp = ip_frame(VRRP_MAC, PEER_MAC, &advert(Ipv4Addr::new(198, 51, 100, 2)));
    for _ in 0..50 {
        d.send(EXT, &vrrp);
    }
    assert_eq!(d.events(Event::MulticastToKernel), burst);
    assert_eq!(d.drops(DropReason::KernelRateLimited), 50 - burst);
    d.balanced();
}

#[test]
fn multicast_from_a_twin_leaves_its_own_port_to_the_group_mac() {
    let mut d = Dir::new([true, true], 1000, 100);
    // keepalived's advert from the external twin: out of ext, 01:00:5e:00:00:12, TTL 255 kept.
    let ad = advert(VIP);
    assert_eq!(d.down(EXT, &ad), Action::Tx(EXT));
    let out = d.io.sent_on(EXT)[0].bytes().to_vec();
    assert_eq!(&out[..6], &VRRP_MAC);
    assert_eq!(&out[6..12], &EXT_MAC);
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    assert_eq!(&out[14..], &ad[..], "the packet as the kernel sent it");
    d.io.clear();
    // The sync thread's datagram to 224.0.0.81:8848 through the internal twin: out of int,
    // although the routes would send 224/4 nowhere.
    let sync = udp_packet((DIP, 8848), (SYNC_GROUP, 8848), b"sync");
    assert_eq!(d.down(INT, &sync), Action::Tx(INT));
    let out = d.io.sent_on(INT)[0].bytes().to_vec();
    assert_eq!(&out[..6], &[0x01, 0x00, 0x5e, 0x00, 0x00, 0x51]);
    assert_eq!(&out[6..12], &INT_MAC);
    assert_eq!(&out[14..], &sync[..]);
    assert!(d.io.sent_on(EXT).is_empty(), "never elsewhere");
    assert_eq!(d.events(Event::MulticastFromKernel), 2);
    assert_eq!(d.events(Event::FromKernel), 2);
    d.balanced();
}

#[test]
fn multicast_from_the_kernel_without_a_twin_or_too_big_is_unroutable() {
    let mut d = Dir::new([true, false], 1000, 100);
    let bad = [
        // Named as coming from int's twin, which does not exist.
        (INT, advert(DIP)),
        // Over ext's MTU.
        (EXT, ipv4(VIP, VRRP_GROUP, 112, 255, &[0; 1600])),
        // From a group address.
        (EXT, ipv4(VRRP_GROUP, VRRP_GROUP, 112, 255, &[0; 8])),
        // A port number past the last port.
        (7, advert(VIP)),
    ];
    for (twin, p) in &bad {
        assert_eq!(d.down(*twin, p), Action::Drop, "{twin} {p:?}");
    }
    assert_eq!(d.drops(DropReason::KernelUnroutable), bad.len() as u64);
    assert_eq!(d.events(Event::MulticastFromKernel), 0);
    assert_eq!(d.dp.stats().tx_packets(), 0);
    d.balanced();
}
