//! The kernel exception path for IPv6 on byte buffers (docs/exception-path.md): what goes up to
//! a port's kernel twin (IPv6 to a port address that the dataplane does not handle: a health
//! check's answer from a real server, echo replies to the kernel's ping6, ICMPv6 errors about
//! the kernel's own traffic, fragments), what stays in the dataplane (VIP traffic, echo
//! requests, NDP), and the kernel's IPv6 packets coming down a twin: routed out of the right
//! port, held for neighbour discovery, the kernel's multicast (MLD, router solicitations) and
//! martians never sent.

use dataplane::driver::{BurstDriver, ByteFrame, ByteIo};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, KernelPath};
use dataplane::service::ServiceManager;
use dataplane::stats::{DropReason, Event};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use testkit::director::{assert_balanced, poll_rx, two_arm_ports, EXT_MAC, INT_MAC};
use testkit::ipv6::*;
use testkit::plan::{CLIENT_MAC, RS1_MAC};
use testkit::{ACK, SYN, TCP, UDP};

const EXT: u16 = 0;
const INT: u16 = 1;
const ROOM: usize = 2048;
/// The client side's IPv6 router (the external port's `gateway6` where a test sets one).
const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0xfe);
/// Beyond every connected prefix.
const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x300, 0, 0, 0, 0, 9);
const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 3, 3];
const ECHO_REQUEST: u8 = 128;
const ECHO_REPLY: u8 = 129;

const SERVICES: &str = "-A -t [2001:db8:100::1]:80 -s rr\n\
     -a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
     -A -u [2001:db8:100::1]:53 -s rr -o\n\
     -a -u [2001:db8:100::1]:53 -r [2001:db8:2::2]:53 -m\n";

struct Dir {
    dp: Arc<Dataplane>,
    driver: BurstDriver<ByteFrame>,
    io: ByteIo,
    now: u64,
    _mgr: ServiceManager,
    tx0: u64,
}

impl Dir {
    /// The two-arm director with IPv6 (ext `EXT6`/64, int `DIP6`/64, ext's `gateway6` as
    /// given), the services above, twins on the ports `twins` says, CIP6 and RIP6_1 known.
    fn new(twins: [bool; 2], rate: u64, burst: u64, gateway6: Option<Ipv6Addr>) -> Dir {
        let mut ports = two_arm_ports(None, 1500);
        ports[0].addrs6 = vec![(EXT6, 64)];
        ports[0].gateway6 = gateway6;
        ports[1].addrs6 = vec![(DIP6, 64)];
        let dp = Dataplane::with_kernel_path(
            DataplaneConfig {
                ports,
                conn_capacity: 1024,
                timeouts: control::model::Timeouts::default(),
                workers: 1,
            },
            KernelPath {
                twins: twins.to_vec(),
                rate,
                burst,
            },
        );
        dp.neigh6().learn(EXT, CIP6, CLIENT_MAC);
        dp.neigh6().learn(INT, RIP6_1, RS1_MAC);
        let mut mgr = ServiceManager::new(dp.clone());
        testkit::services::rvsadm(&mut mgr, SERVICES);
        let mut d = Dir {
            driver: BurstDriver::new(dp.clone(), 0),
            dp,
            io: ByteIo::new(ROOM),
            now: 1_000,
            _mgr: mgr,
            tx0: 0,
        };
        // A first, empty poll loop: the worker's unsolicited neighbour advertisements (EXT6,
        // VIP6, DIP6) go out, and are not what the tests look at.
        d.driver.begin(d.now);
        d.driver.finish(&mut d.io);
        d.tx0 = d.dp.stats().tx_packets();
        assert_eq!(d.tx0, 3, "the unsolicited advertisements");
        d.io.clear();
        d
    }

    /// Frames sent since the start (the advertisements not counted).
    fn tx(&self) -> u64 {
        self.dp.stats().tx_packets() - self.tx0
    }

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

    fn balanced(&self) {
        assert_balanced(&self.dp, &self.driver);
    }
}

/// An ICMPv6 message from `src` to `dst` as an IPv6 packet.
fn icmp6_packet(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    ipv6(src, dst, ICMPV6, 64, &icmp6(src, dst, ty, code, body))
}

/// An ICMPv6 error (`ty`, `code`, the 4-byte `word`) from `src` to `dst` quoting `quoted`.
fn icmp6_error(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: u8,
    code: u8,
    word: u32,
    quoted: &[u8],
) -> Vec<u8> {
    let mut body = word.to_be_bytes().to_vec();
    body.extend_from_slice(quoted);
    icmp6_packet(src, dst, ty, code, &body)
}

/// The kernel's TCP segment from DIP6:`sport` to `dst`:80, as it comes out of a twin.
fn syn_from_dip(dst: Ipv6Addr, sport: u16) -> Vec<u8> {
    ipv6(
        DIP6,
        dst,
        TCP,
        64,
        &tcp_seg6((DIP6, sport), (dst, 80), SYN, b""),
    )
}

/// One frame of each kind of IPv6 own-address traffic the dataplane does not handle, with the
/// port it arrives on and the reason it is dropped without a twin.
fn own_address_frames() -> Vec<(&'static str, u16, Vec<u8>, DropReason)> {
    let on_int = |ip: &[u8]| eth6(INT_MAC, RS1_MAC, ip);
    let echo = [0, 7, 0, 1, b'p', b'o', b'n', b'g'];
    // Port unreachable about the kernel's datagram DIP6:40000 -> RIP6_1:9 (nothing tracked).
    let datagram = ipv6(
        DIP6,
        RIP6_1,
        UDP,
        64,
        &udp_seg6((DIP6, 40000), (RIP6_1, 9), b""),
    );
    // Packet too big about the kernel's own TCP (a health check's request).
    let segment = syn_from_dip(RIP6_1, 40002);
    vec![
        (
            // A health check's SYN-ACK from a real server's service port to the DIP.
            "tcp syn-ack from [RIP6]:80",
            INT,
            tcp_frame6(
                INT_MAC,
                RS1_MAC,
                (RIP6_1, 80),
                (DIP6, 40000),
                SYN | ACK,
                b"",
            ),
            DropReason::Local,
        ),
        (
            "udp from [RIP6]:53 (a one-packet service's port)",
            INT,
            udp_frame6(INT_MAC, RS1_MAC, (RIP6_1, 53), (DIP6, 40001), b"rs1"),
            DropReason::Local,
        ),
        (
            "tcp to the external port's non-VIP address",
            EXT,
            tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, 50000), (EXT6, 22), SYN, b""),
            DropReason::Local,
        ),
        (
            "echo reply to the DIP (the kernel's ping6)",
            INT,
            on_int(&icmp6_packet(RIP6_1, DIP6, ECHO_REPLY, 0, &echo)),
            DropReason::IcmpUnhandled,
        ),
        (
            "port unreachable to the DIP",
            INT,
            on_int(&icmp6_error(RIP6_1, DIP6, 1, 4, 0, &datagram)),
            DropReason::IcmpUnrelated,
        ),
        (
            "packet too big to the DIP",
            INT,
            on_int(&icmp6_error(RIP6_1, DIP6, 2, 0, 1280, &segment)),
            DropReason::IcmpUnrelated,
        ),
        (
            "protocol 112 to the DIP",
            INT,
            on_int(&ipv6(RIP6_1, DIP6, 112, 255, b"vrrp-ish")),
            DropReason::Local,
        ),
        (
            "first fragment to the DIP",
            INT,
            on_int(&ipv6(
                RIP6_1,
                DIP6,
                FRAGMENT,
                64,
                &frag_header(UDP, 0, true, 9, &[0; 16]),
            )),
            DropReason::Fragment,
        ),
        (
            "later fragment to the DIP",
            INT,
            on_int(&ipv6(
                RIP6_1,
                DIP6,
                FRAGMENT,
                64,
                &frag_header(UDP, 16, false, 9, &[0; 16]),
            )),
            DropReason::Fragment,
        ),
    ]
}

#[test]
fn own_address_ipv6_goes_up_to_the_ingress_twin_l2_stripped() {
    let mut d = Dir::new([true, true], 1000, 100, None);
    for (i, (what, port, frame, _)) in own_address_frames().into_iter().enumerate() {
        assert_eq!(d.send(port, &frame), Action::ToKernel { port }, "{what}");
        let (twin, up) = d.io.kernel.last().expect(what);
        assert_eq!(*twin, port, "{what}");
        assert_eq!(
            up.bytes(),
            &frame[14..],
            "{what}: the packet as it came, without L2"
        );
        assert_eq!(up.bytes()[0] >> 4, 6, "{what}");
        assert_eq!(d.events(Event::ToKernel), i as u64 + 1, "{what}");
    }
    assert_eq!(d.dp.stats().dropped(), 0, "{:?}", d.dp.stats().counters());
    assert_eq!(d.tx(), 0);
    d.balanced();
}

#[test]
fn without_a_twin_own_address_ipv6_is_dropped_as_before() {
    // A twin on ext only: what arrives on int is dropped under its old reason.
    let mut d = Dir::new([true, false], 1000, 100, None);
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
fn ipv6_vip_traffic_echo_and_ndp_stay_in_the_dataplane() {
    let mut d = Dir::new([true, true], 1000, 100, None);
    // A client's SYN to the VIP, DNATed to RIP6_1, and its reply SNATed back.
    let syn = tcp_frame6(EXT_MAC, CLIENT_MAC, (CIP6, 40000), (VIP6, 80), SYN, b"");
    assert_eq!(d.send(EXT, &syn), Action::Tx(INT));
    let synack = tcp_frame6(
        INT_MAC,
        RS1_MAC,
        (RIP6_1, 80),
        (CIP6, 40000),
        SYN | ACK,
        b"",
    );
    assert_eq!(d.send(INT, &synack), Action::Tx(EXT));
    // Echo requests to the DIP and the VIP are answered here.
    let ping = |dst| {
        eth6(
            INT_MAC,
            RS1_MAC,
            &icmp6_packet(RIP6_1, dst, ECHO_REQUEST, 0, &[0, 1, 0, 1, b'x']),
        )
    };
    assert_eq!(d.send(INT, &ping(DIP6)), Action::Tx(INT));
    assert_eq!(d.send(INT, &ping(VIP6)), Action::Tx(INT));
    // Neighbour solicitations for the DIP: answered, never the kernel's.
    let ns = neighbour_solicitation(RS1_MAC, RIP6_1, DIP6);
    assert!(matches!(d.send(INT, &ns), Action::Reply { port: INT, .. }));
    // To the VIP, not the kernel's: an echo reply, another protocol, a fragmented ping.
    let to_vip = [
        (
            eth6(
                EXT_MAC,
                CLIENT_MAC,
                &icmp6_packet(CIP6, VIP6, ECHO_REPLY, 0, &[0, 1, 0, 1]),
            ),
            DropReason::IcmpUnhandled,
        ),
        (
            eth6(EXT_MAC, CLIENT_MAC, &ipv6(CIP6, VIP6, 112, 255, b"x")),
            DropReason::UnknownProto,
        ),
        (
            eth6(
                EXT_MAC,
                CLIENT_MAC,
                &ipv6(
                    CIP6,
                    VIP6,
                    FRAGMENT,
                    64,
                    &frag_header(ICMPV6, 0, true, 3, &[ECHO_REQUEST, 0, 0, 0, 0, 1, 0, 1]),
                ),
            ),
            DropReason::Fragment,
        ),
    ];
    for (frame, reason) in &to_vip {
        let before = d.drops(*reason);
        assert_eq!(d.send(EXT, frame), Action::Drop, "{reason:?}");
        assert_eq!(d.drops(*reason), before + 1, "{reason:?}");
    }
    assert!(d.io.kernel.is_empty());
    assert_eq!(d.events(Event::ToKernel), 0);
    d.balanced();
}

#[test]
fn ipv6_up_shares_the_workers_rate() {
    let (rate, burst) = (100, 10);
    let mut d = Dir::new([true, true], rate, burst, None);
    let flood = |i: u16| udp_frame6(INT_MAC, RS1_MAC, (RIP6_1, 9999), (DIP6, i), b"flood");
    for i in 0..100 {
        d.send(INT, &flood(i));
    }
    assert_eq!(d.events(Event::ToKernel), burst);
    assert_eq!(d.drops(DropReason::KernelRateLimited), 100 - burst);
    d.balanced();
}

#[test]
fn ipv6_from_the_kernel_is_routed_out_of_the_right_port() {
    let mut d = Dir::new([true, true], 1000, 100, Some(GW6));
    // A health check's SYN from the DIP to RIP6_1 (known): out of int at once, the L2 header
    // written (IPv6 ethertype), the hop limit as the kernel set it, nothing else touched.
    let syn = syn_from_dip(RIP6_1, 40000);
    assert_eq!(d.down(INT, &syn), Action::Tx(INT));
    let out = d.io.sent_on(INT)[0].bytes().to_vec();
    let seen = check6(&out);
    assert_eq!((seen.dst_mac, seen.src_mac), (RS1_MAC, INT_MAC));
    assert_eq!((seen.src, seen.dst, seen.hop_limit), (DIP6, RIP6_1, 64));
    assert_eq!((seen.proto, seen.sport, seen.dport), (TCP, 40000, 80));
    assert_eq!(&out[14..], &syn[..]);
    d.io.clear();

    // To RIP6_2 (unknown): held, a neighbour solicitation out of int from the DIP; sent once
    // RIP6_2 advertises itself.
    let syn2 = syn_from_dip(RIP6_2, 40001);
    assert_eq!(
        d.down(INT, &syn2),
        Action::Hold {
            port: INT,
            next_hop: IpAddr::V6(RIP6_2)
        }
    );
    let sent = d.io.sent_on(INT);
    assert_eq!(sent.len(), 1, "the neighbour solicitation");
    let ns = check6(sent[0].bytes());
    assert_eq!((ns.proto, ns.sport, ns.src), (ICMPV6, 135, DIP6));
    assert_eq!(ns.dst, solicited_node(RIP6_2));
    d.io.clear();
    let na = neighbour_advertisement(INT_MAC, RS2_MAC, RIP6_2, DIP6);
    d.send(INT, &na);
    let out = d.io.sent_on(INT)[0].bytes();
    assert_eq!(&out[..6], &RS2_MAC);
    assert_eq!(&out[12..14], &[0x86, 0xdd]);
    assert_eq!(&out[14..], &syn2[..]);
    d.io.clear();

    // To a client on the external prefix: out of ext.
    let udp = ipv6(
        EXT6,
        CIP6,
        UDP,
        64,
        &udp_seg6((EXT6, 53), (CIP6, 5353), b"a"),
    );
    assert_eq!(d.down(EXT, &udp), Action::Tx(EXT));
    assert_eq!(check6(d.io.sent_on(EXT)[0].bytes()).dst_mac, CLIENT_MAC);
    d.io.clear();
    // Beyond every prefix: via the external gateway6 (unknown yet: held for it), even when the
    // internal twin sent it (the kernel's routes, not the twin, choose).
    let far = ipv6(DIP6, FAR6, UDP, 64, &udp_seg6((DIP6, 53), (FAR6, 53), b"f"));
    assert_eq!(
        d.down(INT, &far),
        Action::Hold {
            port: EXT,
            next_hop: IpAddr::V6(GW6)
        }
    );
    assert_eq!(d.events(Event::FromKernel), 4);
    d.balanced();
}

#[test]
fn the_kernels_ipv6_multicast_and_martians_are_never_sent() {
    let mut d = Dir::new([true, true], 1000, 100, None);
    let ff02 = |last: u16| Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, last);
    let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    // MLDv2 report to ff02::16 behind a hop-by-hop header (as the kernel sends it).
    let mld_body = icmp6(DIP6, ff02(0x16), 143, 0, &[0, 0, 0, 0]);
    let mld = ipv6(
        DIP6,
        ff02(0x16),
        HOP_BY_HOP,
        1,
        &ext_header(ICMPV6, 0, &mld_body),
    );
    let unroutable = [
        ("mld report", INT, mld),
        (
            "router solicitation from ::",
            EXT,
            icmp6_packet(Ipv6Addr::UNSPECIFIED, ff02(2), 133, 0, &[0; 4]),
        ),
        (
            "a solicitation to a solicited-node group",
            INT,
            icmp6_packet(DIP6, solicited_node(RIP6_2), 135, 0, &[0; 20]),
        ),
        (
            "udp to all-nodes",
            INT,
            ipv6(
                DIP6,
                ff02(1),
                UDP,
                1,
                &udp_seg6((DIP6, 5), (ff02(1), 5), b"m"),
            ),
        ),
        (
            "to a link-local address",
            INT,
            syn_from_dip(link_local, 40003),
        ),
        (
            "from a link-local address",
            INT,
            ipv6(
                link_local,
                RIP6_1,
                TCP,
                64,
                &tcp_seg6((link_local, 1), (RIP6_1, 80), SYN, b""),
            ),
        ),
        (
            "from ::",
            INT,
            ipv6(
                Ipv6Addr::UNSPECIFIED,
                RIP6_1,
                UDP,
                64,
                &udp_seg6((Ipv6Addr::UNSPECIFIED, 1), (RIP6_1, 1), b""),
            ),
        ),
        ("to ::1", INT, syn_from_dip(Ipv6Addr::LOCALHOST, 40004)),
        ("no route (no gateway6)", INT, syn_from_dip(FAR6, 40005)),
        ("over the MTU", INT, ipv6(DIP6, RIP6_1, UDP, 64, &[0; 1500])),
        ("truncated", INT, syn_from_dip(RIP6_1, 40006)[..30].to_vec()),
        ("neither IPv4 nor IPv6", INT, {
            let mut p = syn_from_dip(RIP6_1, 40007);
            p[0] = 0x50;
            p
        }),
    ];
    for (what, twin, p) in &unroutable {
        assert_eq!(d.down(*twin, p), Action::Drop, "{what}");
    }
    assert_eq!(
        d.drops(DropReason::KernelUnroutable),
        unroutable.len() as u64
    );
    assert_eq!(d.events(Event::FromKernel), unroutable.len() as u64);
    assert_eq!(d.events(Event::MulticastFromKernel), 0);
    assert_eq!(d.tx(), 0, "nothing sent, as unicast or at all");
    assert!(d.io.sent_on(INT).is_empty() && d.io.sent_on(EXT).is_empty());
    d.balanced();
}

/// A VRRP advert (next header 112, hop limit 255) from `src` to ff02::12.
fn vrrp6(src: Ipv6Addr) -> Vec<u8> {
    let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
    ipv6(src, group, 112, 255, &[0x31, 51, 100, 1, 0, 100, 0, 0])
}

#[test]
fn ipv6_vrrp_adverts_are_carried_between_the_twin_and_the_wire() {
    let mut d = Dir::new([true, false], 1000, 100, None);
    let peer_ll = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    let group_mac = [0x33, 0x33, 0, 0, 0, 0x12];
    // Up: a peer's advert to ff02::12's MAC goes to the twin as it came, without L2.
    let advert = vrrp6(peer_ll);
    let frame = eth6(group_mac, CLIENT_MAC, &advert);
    assert_eq!(d.send(EXT, &frame), Action::ToKernel { port: EXT });
    assert_eq!(d.io.kernel.last().unwrap().1.bytes(), &advert[..]);
    assert_eq!(d.events(Event::MulticastToKernel), 1);
    // Not up: to another MAC than the group's, from a group, MLD, a port without a twin.
    let mld = icmp6_packet(
        peer_ll,
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16),
        143,
        0,
        &[0; 4],
    );
    let refused = [
        (EXT, eth6([0x33, 0x33, 0, 0, 0, 0x13], CLIENT_MAC, &advert)),
        (
            EXT,
            eth6(
                group_mac,
                CLIENT_MAC,
                &vrrp6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
            ),
        ),
        (EXT, eth6([0x33, 0x33, 0, 0, 0, 0x16], CLIENT_MAC, &mld)),
        (INT, eth6(group_mac, RS1_MAC, &vrrp6(peer_ll))),
        // From a global address (RFC 5798 5.1.2.1: adverts come from a link-local one).
        (EXT, eth6(group_mac, CLIENT_MAC, &vrrp6(CIP6))),
        // Behind an extension header (here an atomic fragment).
        (
            EXT,
            eth6(
                group_mac,
                CLIENT_MAC,
                &ipv6(
                    peer_ll,
                    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
                    FRAGMENT,
                    255,
                    &frag_header(112, 0, false, 7, &[0x31, 51, 100, 1, 0, 100, 0, 0]),
                ),
            ),
        ),
    ];
    for (port, f) in &refused {
        assert_eq!(d.send(*port, f), Action::Drop, "{f:02x?}");
    }
    assert_eq!(d.io.kernel.len(), 1);
    // Down: the twin's advert from its link-local address goes out of its port to the
    // group's MAC, hop limit kept.
    let ours = vrrp6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1));
    assert_eq!(d.down(EXT, &ours), Action::Tx(EXT));
    let out = d.io.sent_on(EXT).last().unwrap().bytes().to_vec();
    assert_eq!(&out[..6], &group_mac);
    assert_eq!(&out[6..12], &EXT_MAC);
    assert_eq!(&out[14..], &ours[..]);
    assert_eq!(d.events(Event::MulticastFromKernel), 1);
    // Not down: from ::, through a port without a twin.
    assert_eq!(d.down(EXT, &vrrp6(Ipv6Addr::UNSPECIFIED)), Action::Drop);
    assert_eq!(d.down(INT, &ours), Action::Drop);
    d.balanced();
}
