//! DPDK integration test: rvsd on a net_pcap port, one-arm mode.
//!
//! A capture of ARP requests, client SYNs, data, real-server replies, UDP, ICMP echo and junk is
//! fed to rvsd through `net_pcap`'s rx_pcap; everything rvsd sends lands in tx_pcap. One port and
//! one worker keep the order of the capture, so every output frame is checked in sequence: MACs,
//! addresses, ports, TTL, checksums (against a full recompute by testkit, independent of the
//! dataplane's code) and the round-robin order.
//!
//! The frames are built by testkit, by hand on purpose: the test must not share code with what
//! it checks.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::daemon::{net_pcap, Rvsd, RvsdConfig, VdevPort};
use testkit::plan::{
    BROADCAST, CIP, CLIENT_MAC, DIP, ONE_ARM_MAC, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP,
};
use testkit::{
    arp, eth, inet_checksum, ipv4, l4_checksum, pcap, tcp_frame, udp_frame, ACK, ICMP, PSH, SYN,
};

/// The test's own checksum over several pieces (testkit's, not the dataplane's).
fn checksum(chunks: &[&[u8]]) -> u16 {
    inet_checksum(&chunks.concat())
}

fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    eth(BROADCAST, sha, 0x0806, &arp(1, sha, spa, [0; 6], tpa))
}

fn arp_reply(sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    eth(tha, sha, 0x0806, &arp(2, sha, spa, tha, tpa))
}

fn client_udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8], csum: bool) -> Vec<u8> {
    udp_frame(ONE_ARM_MAC, CLIENT_MAC, src, dst, payload, csum)
}

fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16) -> Vec<u8> {
    let msg = testkit::icmp_echo(8, id, 1, b"rvs-ping-payload");
    eth(
        ONE_ARM_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(src, dst, ICMP, 64, &msg),
    )
}

// ---- output parsing and checks ----

#[derive(Debug)]
struct Ip<'a> {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    proto: u8,
    l4: &'a [u8],
}

fn parse_ip(frame: &[u8]) -> Ip<'_> {
    assert_eq!(&frame[12..14], &[0x08, 0x00], "not IPv4: {frame:02x?}");
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(checksum(&[&ip[..ihl]]), 0, "IPv4 header checksum wrong");
    Ip {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        ttl: ip[8],
        proto: ip[9],
        l4: &ip[ihl..total],
    }
}

fn ports(ip: &Ip) -> (u16, u16) {
    (
        u16::from_be_bytes([ip.l4[0], ip.l4[1]]),
        u16::from_be_bytes([ip.l4[2], ip.l4[3]]),
    )
}

fn assert_l4_checksum(ip: &Ip) {
    let field = if ip.proto == 6 { 16 } else { 6 };
    let stored = u16::from_be_bytes([ip.l4[field], ip.l4[field + 1]]);
    if ip.proto == 17 && stored == 0 {
        return; // absent UDP checksum, checked by the caller where it matters
    }
    assert_eq!(
        l4_checksum(ip.src, ip.dst, ip.proto, ip.l4),
        stored,
        "L4 checksum wrong (proto {})",
        ip.proto
    );
}

fn assert_macs(frame: &[u8], dst: [u8; 6], src: [u8; 6]) {
    assert_eq!(&frame[0..6], &dst, "destination MAC");
    assert_eq!(&frame[6..12], &src, "source MAC");
}

fn assert_arp_reply(frame: &[u8], to_mac: [u8; 6], to_ip: Ipv4Addr, for_ip: Ipv4Addr) {
    assert_macs(frame, to_mac, ONE_ARM_MAC);
    assert_eq!(&frame[12..14], &[0x08, 0x06], "ARP ethertype");
    let a = &frame[14..];
    assert_eq!(&a[6..8], &[0, 2], "ARP reply opcode");
    assert_eq!(&a[8..14], &ONE_ARM_MAC, "sender MAC");
    assert_eq!(&a[14..18], &for_ip.octets(), "sender IP");
    assert_eq!(&a[18..24], &to_mac, "target MAC");
    assert_eq!(&a[24..28], &to_ip.octets(), "target IP");
}

/// Checks a client->real server frame after DNAT.
fn assert_dnat(frame: &[u8], rs_mac: [u8; 6], rs: Ipv4Addr, cport: u16, flags: u8) {
    assert_macs(frame, rs_mac, ONE_ARM_MAC);
    let ip = parse_ip(frame);
    assert_eq!((ip.src, ip.dst, ip.ttl), (CIP, rs, 63), "{ip:?}");
    assert_eq!(ports(&ip), (cport, 80));
    assert_eq!(ip.l4[13], flags, "TCP flags");
    assert_eq!(&ip.l4[20..24], &[2, 4, 0x05, 0xb4], "MSS option untouched");
    assert_l4_checksum(&ip);
}

/// Checks a real server->client frame after SNAT.
fn assert_snat(frame: &[u8], cport: u16) {
    assert_macs(frame, CLIENT_MAC, ONE_ARM_MAC);
    let ip = parse_ip(frame);
    assert_eq!((ip.src, ip.dst, ip.ttl), (VIP, CIP, 63), "{ip:?}");
    assert_eq!(ports(&ip), (80, cport));
    assert_l4_checksum(&ip);
}

// ---- running rvsd ----

fn run_rvsd(dir: &Path, input: &[Vec<u8>], services: &str, expected: usize) -> Vec<Vec<u8>> {
    let rx = dir.join("in.pcap");
    let tx = dir.join("out.pcap");
    pcap::write(&rx, input);
    let config = RvsdConfig::new(dir.join("rvs.sock"))
        .port(VdevPort::one_arm(net_pcap(0, &[&rx], &[&tx])).mac(ONE_ARM_MAC))
        .services(services);
    let mut rvsd = Rvsd::start(Path::new(env!("CARGO_BIN_EXE_rvsd")), &config, dir);

    // rx_pcap is consumed at once; wait until every expected frame is out (or give up), then
    // stop rvsd so the capture is closed cleanly.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = rvsd.try_wait() {
            panic!("rvsd exited early: {status}\n{}", rvsd.log_tail(40));
        }
        if pcap::read(&tx).len() >= expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a wrongly extra frame a moment to show up, so "exactly N" is really checked.
    std::thread::sleep(Duration::from_millis(300));
    let status = rvsd.stop();
    assert!(status.success(), "rvsd exit status after SIGTERM: {status}");
    pcap::read(&tx)
}

#[test]
fn one_arm_nat_walkthrough_over_net_pcap() {
    let dir = tempfile::tempdir().unwrap();
    // (source, destination, flags, payload) of a TCP segment, framed by its sender.
    type Seg<'a> = ((Ipv4Addr, u16), (Ipv4Addr, u16), u8, &'a [u8]);
    let tcp = |src, dst, flags, payload| -> Seg { (src, dst, flags, payload) };
    let from_client = |(src, dst, flags, payload): Seg| {
        tcp_frame(ONE_ARM_MAC, CLIENT_MAC, src, dst, flags, payload)
    };
    let from_rs = |mac, (src, dst, flags, payload): Seg| {
        tcp_frame(ONE_ARM_MAC, mac, src, dst, flags, payload)
    };

    let mut truncated = from_client(tcp((CIP, 40100), (VIP, 80), SYN, b""));
    truncated.truncate(30);
    let mut bad_ihl = from_client(tcp((CIP, 40101), (VIP, 80), SYN, b""));
    bad_ihl[14] = 0x43;

    let input = vec![
        arp_request(CLIENT_MAC, CIP, VIP),
        arp_request(RS1_MAC, RIP1, DIP),
        arp_request(RS2_MAC, RIP2, DIP),
        from_client(tcp((CIP, 40001), (VIP, 80), SYN, b"")),
        from_client(tcp((CIP, 40002), (VIP, 80), SYN, b"")),
        from_rs(RS1_MAC, tcp((RIP1, 80), (CIP, 40001), SYN | ACK, b"")),
        from_rs(RS2_MAC, tcp((RIP2, 80), (CIP, 40002), SYN | ACK, b"")),
        from_client(tcp(
            (CIP, 40001),
            (VIP, 80),
            PSH | ACK,
            b"GET / HTTP/1.0\r\n\r\n",
        )),
        from_client(tcp((CIP, 40003), (VIP, 80), SYN, b"")),
        client_udp((CIP, 5353), (VIP, 53), b"no checksum", false),
        client_udp((CIP, 5354), (VIP, 53), b"with checksum", true),
        icmp_echo(CIP, VIP, 7),
        // Dropped: an ACK of no known flow, a SYN to a port with no service, junk.
        from_client(tcp((CIP, 40009), (VIP, 80), ACK, b"")),
        from_client(tcp((CIP, 40010), (VIP, 81), SYN, b"")),
        truncated,
        bad_ihl,
        vec![0u8; 10],
        // Last, so its reply shows everything before it went through.
        icmp_echo(CIP, DIP, 8),
    ];
    let services = "-A -t 198.51.100.1:80 -s rr\n\
                    -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
                    -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1\n\
                    -A -u 198.51.100.1:53 -s rr\n\
                    -a -u 198.51.100.1:53 -r 192.0.2.2:5300 -m -w 1\n\
                    -a -u 198.51.100.1:53 -r 192.0.2.3:5300 -m -w 1";
    let out = run_rvsd(dir.path(), &input, services, 13);
    assert_eq!(out.len(), 13, "rvsd sent {} frames, expected 13", out.len());

    assert_arp_reply(&out[0], CLIENT_MAC, CIP, VIP);
    assert_arp_reply(&out[1], RS1_MAC, RIP1, DIP);
    assert_arp_reply(&out[2], RS2_MAC, RIP2, DIP);
    // Round robin: first connection to RIP1, second to RIP2, third to RIP1 again.
    assert_dnat(&out[3], RS1_MAC, RIP1, 40001, SYN);
    assert_dnat(&out[4], RS2_MAC, RIP2, 40002, SYN);
    assert_snat(&out[5], 40001);
    assert_snat(&out[6], 40002);
    assert_dnat(&out[7], RS1_MAC, RIP1, 40001, PSH | ACK);
    assert!(out[7].ends_with(b"GET / HTTP/1.0\r\n\r\n"), "payload kept");
    assert_dnat(&out[8], RS1_MAC, RIP1, 40003, SYN);

    // UDP: its own round robin; an absent checksum stays absent, a present one is right.
    let u1 = parse_ip(&out[9]);
    assert_macs(&out[9], RS1_MAC, ONE_ARM_MAC);
    assert_eq!((u1.src, u1.dst, ports(&u1)), (CIP, RIP1, (5353, 5300)));
    assert_eq!(&u1.l4[6..8], &[0, 0], "UDP checksum 0 stays 0");
    let u2 = parse_ip(&out[10]);
    assert_macs(&out[10], RS2_MAC, ONE_ARM_MAC);
    assert_eq!((u2.src, u2.dst, ports(&u2)), (CIP, RIP2, (5354, 5300)));
    assert_ne!(&u2.l4[6..8], &[0, 0]);
    assert_l4_checksum(&u2);

    for (frame, from) in [(&out[11], VIP), (&out[12], DIP)] {
        assert_macs(frame, CLIENT_MAC, ONE_ARM_MAC);
        let ip = parse_ip(frame);
        assert_eq!((ip.src, ip.dst, ip.proto), (from, CIP, 1));
        assert_eq!(ip.l4[0], 0, "echo reply type");
        assert_eq!(checksum(&[ip.l4]), 0, "ICMP checksum");
        assert!(ip.l4.ends_with(b"rvs-ping-payload"));
    }
}

/// A SYN towards a real server whose MAC rvsd does not know yet waits while rvsd asks for it by
/// ARP, and goes out once the answer arrives.
#[test]
fn syn_waits_for_arp_resolution_of_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let input = vec![
        arp_request(CLIENT_MAC, CIP, VIP),
        tcp_frame(ONE_ARM_MAC, CLIENT_MAC, (CIP, 41000), (VIP, 80), SYN, b""),
        arp_reply(RS1_MAC, RIP1, ONE_ARM_MAC, DIP),
    ];
    let services = "-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m";
    let out = run_rvsd(dir.path(), &input, services, 3);
    assert_eq!(out.len(), 3, "rvsd sent {} frames, expected 3", out.len());
    assert_arp_reply(&out[0], CLIENT_MAC, CIP, VIP);

    let req = &out[1];
    assert_macs(req, BROADCAST, ONE_ARM_MAC);
    assert_eq!(&req[12..14], &[0x08, 0x06], "ARP ethertype");
    let a = &req[14..];
    assert_eq!(&a[6..8], &[0, 1], "ARP request opcode");
    assert_eq!(&a[8..14], &ONE_ARM_MAC, "sender MAC");
    assert_eq!(
        &a[14..18],
        &DIP.octets(),
        "asks from the DIP, the port facing RIP1"
    );
    assert_eq!(&a[24..28], &RIP1.octets(), "asks for RIP1");

    assert_dnat(&out[2], RS1_MAC, RIP1, 41000, SYN);
}

/// ICMP errors rvs builds go out through the DPDK worker with their own length (the mbuf grows
/// into its tailroom): time exceeded for a TTL-1 SYN to the VIP, fragmentation needed for a DF
/// datagram over the port's MTU (1500), both from the VIP back to the client's MAC, quoting the
/// packet as it arrived.
#[test]
fn icmp_errors_leave_through_the_worker_with_their_own_length() {
    let dir = tempfile::tempdir().unwrap();
    let mut ttl1 = tcp_frame(ONE_ARM_MAC, CLIENT_MAC, (CIP, 41000), (VIP, 80), SYN, b"");
    // TTL 1, header checksum again.
    ttl1[22] = 1;
    ttl1[24..26].copy_from_slice(&[0, 0]);
    let c = checksum(&[&ttl1[14..34]]);
    ttl1[24..26].copy_from_slice(&c.to_be_bytes());
    let big = client_udp((CIP, 5400), (VIP, 53), &[0x5a; 1572], true);
    assert_eq!(big.len(), 14 + 1600);
    let input = vec![
        arp_request(CLIENT_MAC, CIP, VIP),
        ttl1.clone(),
        big.clone(),
        icmp_echo(CIP, DIP, 9),
    ];
    let services = "-A -t 198.51.100.1:80 -s rr\n\
                    -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
                    -A -u 198.51.100.1:53 -s rr\n\
                    -a -u 198.51.100.1:53 -r 192.0.2.2:53 -m -w 1";
    let out = run_rvsd(dir.path(), &input, services, 4);
    assert_eq!(out.len(), 4, "rvsd sent {} frames, expected 4", out.len());
    assert_arp_reply(&out[0], CLIENT_MAC, CIP, VIP);
    for (frame, orig, ty, code, len) in [
        (&out[1], &ttl1, 11u8, 0u8, 14 + 28 + 44),
        (&out[2], &big, 3, 4, 14 + 576),
    ] {
        assert_eq!(frame.len(), len, "ICMP {ty}/{code} frame length");
        assert_macs(frame, CLIENT_MAC, ONE_ARM_MAC);
        let ip = parse_ip(frame);
        assert_eq!((ip.src, ip.dst, ip.proto), (VIP, CIP, 1));
        assert_eq!((ip.l4[0], ip.l4[1]), (ty, code));
        assert_eq!(checksum(&[ip.l4]), 0, "ICMP checksum");
        let quoted = &ip.l4[8..];
        assert_eq!(
            quoted,
            &orig[14..14 + quoted.len()],
            "quotes the packet as received"
        );
        if ty == 3 {
            assert_eq!(&ip.l4[4..8], &[0, 0, 0x05, 0xdc], "next-hop MTU 1500");
        }
    }
    assert_eq!(
        parse_ip(&out[3]).src,
        DIP,
        "the echo reply closes the capture"
    );
}

/// `rvsadm -L --counters` lists the port's own counters (DPDK's `rte_eth_stats`, what the NIC
/// saw and lost before rvsd) beside rvs's: five frames in, five counted by both.
#[test]
fn device_counters_are_listed_beside_rvs_counters() {
    let dir = tempfile::tempdir().unwrap();
    let rx = dir.path().join("in.pcap");
    let tx = dir.path().join("out.pcap");
    let input: Vec<Vec<u8>> = (0..5)
        .map(|i| arp_request(CLIENT_MAC, CIP, Ipv4Addr::new(198, 51, 100, 200 + i)))
        .collect();
    pcap::write(&rx, &input);
    let config = RvsdConfig::new(dir.path().join("rvs.sock"))
        .port(VdevPort::one_arm(net_pcap(0, &[&rx], &[&tx])).mac(ONE_ARM_MAC));
    let bin = Path::new(env!("CARGO_BIN_EXE_rvsd"));
    let mut rvsd = Rvsd::start(bin, &config, dir.path());
    rvsd.wait_ready(Duration::from_secs(30));
    let value = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let out = std::process::Command::new(testkit::daemon::rvsadm_beside(bin))
            .args(["-L", "--counters"])
            .env("RVS_SOCKET", dir.path().join("rvs.sock"))
            .output()
            .expect("run rvsadm");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if value(&text, "port.lan.rx_packets") == Some(5) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    rvsd.stop();
    assert_eq!(value(&text, "port.lan.rx_packets"), Some(5), "{text}");
    assert_eq!(value(&text, "port.lan.hw_rx_packets"), Some(5), "{text}");
    for name in [
        "hw_rx_missed",
        "hw_rx_errors",
        "hw_tx_errors",
        "hw_rx_nombuf",
    ] {
        assert_eq!(
            value(&text, &format!("port.lan.{name}")),
            Some(0),
            "{name}: {text}"
        );
    }
}

/// A static neighbour from rvs.toml's `[[neighbours]]` (a real server that answers no ARP, as
/// dpdk-testpmd): the client's SYN goes straight to its MAC, with no ARP request first.
#[test]
fn a_configured_static_neighbour_needs_no_arp() {
    let dir = tempfile::tempdir().unwrap();
    let rx = dir.path().join("in.pcap");
    let tx = dir.path().join("out.pcap");
    pcap::write(
        &rx,
        &[tcp_frame(
            ONE_ARM_MAC,
            CLIENT_MAC,
            (CIP, 41000),
            (VIP, 80),
            SYN,
            b"",
        )],
    );
    let config = RvsdConfig::new(dir.path().join("rvs.sock"))
        .port(VdevPort::one_arm(net_pcap(0, &[&rx], &[&tx])).mac(ONE_ARM_MAC))
        .neighbour("lan", RIP1, RS1_MAC)
        .services("-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m");
    let mut rvsd = Rvsd::start(Path::new(env!("CARGO_BIN_EXE_rvsd")), &config, dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while pcap::read(&tx).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(rvsd.stop().success());
    let out = pcap::read(&tx);
    assert_eq!(out.len(), 1, "exactly the SYN, no ARP request: {out:?}");
    assert_dnat(&out[0], RS1_MAC, RIP1, 41000, SYN);
}

/// The IPv6 walk-through through rvsd's DPDK worker on net_pcap (one arm, both IPv6 prefixes):
/// neighbour solicitations for the VIP and the DIP answered, SYNs DNATed round robin to the
/// IPv6 real servers and their SYN-ACKs SNATed back, an echo request to the VIP answered; every
/// checksum against testkit's full recompute. The unsolicited advertisements rvsd sends at start
/// (to all nodes) are checked apart: their number depends on when the services land.
#[test]
fn one_arm_ipv6_walkthrough_over_net_pcap() {
    use testkit::ipv6::*;
    let dir = tempfile::tempdir().unwrap();
    let from_client = |cport, flags| {
        tcp_frame6(
            ONE_ARM_MAC,
            CLIENT_MAC,
            (CIP6, cport),
            (VIP6, 80),
            flags,
            b"",
        )
    };
    let echo = icmp6(CIP6, VIP6, 128, 0, &[0, 7, 0, 1, b'r', b'v', b's']);
    let input = vec![
        neighbour_solicitation(CLIENT_MAC, CIP6, VIP6),
        neighbour_solicitation(RS1_MAC, RIP6_1, DIP6),
        neighbour_solicitation(RS2_MAC, RIP6_2, DIP6),
        from_client(40001, SYN),
        from_client(40002, SYN),
        tcp_frame6(
            ONE_ARM_MAC,
            RS1_MAC,
            (RIP6_1, 80),
            (CIP6, 40001),
            SYN | ACK,
            b"",
        ),
        tcp_frame6(
            ONE_ARM_MAC,
            RS2_MAC,
            (RIP6_2, 80),
            (CIP6, 40002),
            SYN | ACK,
            b"",
        ),
        eth6(
            ONE_ARM_MAC,
            CLIENT_MAC,
            &ipv6(CIP6, VIP6, ICMPV6, 64, &echo),
        ),
    ];
    let services = "-A -t [2001:db8:100::1]:80 -s rr\n\
                    -a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
                    -a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:80 -m";
    let rx = dir.path().join("in.pcap");
    let tx = dir.path().join("out.pcap");
    pcap::write(&rx, &input);
    let port = VdevPort::one_arm(net_pcap(0, &[&rx], &[&tx]))
        .mac(ONE_ARM_MAC)
        .ipv6(&["2001:db8:100::2/64", "2001:db8:2::1/64"]);
    let config = RvsdConfig::new(dir.path().join("rvs.sock"))
        .port(port)
        .services(services);
    let mut rvsd = Rvsd::start(Path::new(env!("CARGO_BIN_EXE_rvsd")), &config, dir.path());
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let split = |frames: Vec<Vec<u8>>| -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        frames
            .into_iter()
            .partition(|f| f[12..14] != [0x86, 0xdd] || check6(f).dst != all_nodes)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && split(pcap::read(&tx)).0.len() < 8 {
        if let Some(status) = rvsd.try_wait() {
            panic!("rvsd exited early: {status}\n{}", rvsd.log_tail(40));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(rvsd.stop().success(), "rvsd stopped cleanly");
    let (out, unsolicited) = split(pcap::read(&tx));
    assert_eq!(out.len(), 8, "rvsd sent {} frames, expected 8", out.len());

    for (frame, (to_mac, to, target)) in out[..3].iter().zip([
        (CLIENT_MAC, CIP6, VIP6),
        (RS1_MAC, RIP6_1, DIP6),
        (RS2_MAC, RIP6_2, DIP6),
    ]) {
        let na = check6(frame);
        assert_eq!((na.dst_mac, na.src_mac), (to_mac, ONE_ARM_MAC));
        assert_eq!(
            (na.src, na.dst, na.sport, na.hop_limit),
            (target, to, 136, 255)
        );
        assert_eq!(&na.upper[8..24], &target.octets(), "target");
    }
    for (frame, (mac, rip, cport)) in out[3..5]
        .iter()
        .zip([(RS1_MAC, RIP6_1, 40001), (RS2_MAC, RIP6_2, 40002)])
    {
        let s = check6(frame);
        assert_eq!((s.dst_mac, s.src_mac), (mac, ONE_ARM_MAC));
        assert_eq!((s.src, s.sport, s.dst, s.dport), (CIP6, cport, rip, 80));
        assert_eq!(s.hop_limit, 63);
    }
    for (frame, cport) in out[5..7].iter().zip([40001, 40002]) {
        let s = check6(frame);
        assert_eq!(s.dst_mac, CLIENT_MAC);
        assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP6, 80, CIP6, cport));
    }
    let reply = check6(&out[7]);
    assert_eq!((reply.src, reply.dst, reply.sport), (VIP6, CIP6, 129));
    assert!(reply.upper.ends_with(b"rvs"));

    // At start, one unsolicited advertisement per port address at least (the VIP's too once
    // the services are in), with the override flag and our MAC.
    let announced: Vec<Ipv6Addr> = unsolicited
        .iter()
        .map(|f| {
            let na = check6(f);
            assert_eq!(
                (na.sport, na.hop_limit, na.src_mac),
                (136, 255, ONE_ARM_MAC)
            );
            assert_eq!(na.upper[4] & 0x20, 0x20, "override flag");
            Ipv6Addr::from(<[u8; 16]>::try_from(&na.upper[8..24]).unwrap())
        })
        .collect();
    for a in [DIP6, Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2)] {
        assert!(announced.contains(&a), "{a} announced: {announced:?}");
    }
}
