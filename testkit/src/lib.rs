//! One test kit for rvs's tests, benchmarks and fuzz targets.
//!
//! Here: frame builders and checkers written independently of the dataplane's packet code
//! (own checksum, own byte layout), so the tests compare against something else. Modules:
//! `plan` (the address plan), `director` (the directors the dataplane tests run), `services`
//! (the service manager driven with rvsadm lines), `sched` (what the scheduler tests and
//! benchmarks schedule), `pcap` (pcap files), `daemon` (rvsd in a process guard, with an
//! rvs.toml builder for vdev ports), `ipv6` (the IPv6 half: addresses, frames, checker, director), `netns` (network namespaces of a test's own) and `lab`
//! (what the namespace lab tests share: its lock, commands with a deadline, the wrk keep-alive
//! load).

pub mod daemon;
pub mod director;
pub mod ipv6;
pub mod lab;
pub mod netns;
pub mod pcap;
pub mod plan;
pub mod sched;
pub mod services;

use std::net::Ipv4Addr;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// RFC 1071, the plain way: sum 16-bit words with end-around carry, complement.
pub fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for chunk in data.chunks(2) {
        let w = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from(chunk[0]) << 8
        };
        sum += u64::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.push(0);
    p.push(proto);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

/// The L4 checksum of `seg` (its checksum field treated as zero).
pub fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    let off = if proto == TCP { 16 } else { 6 };
    let mut data = pseudo(src, dst, proto, seg.len());
    let mut s = seg.to_vec();
    s[off] = 0;
    s[off + 1] = 0;
    data.extend_from_slice(&s);
    let c = inet_checksum(&data);
    if proto == UDP && c == 0 {
        0xffff
    } else {
        c
    }
}

pub fn tcp_seg(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&0x1000_0001u32.to_be_bytes()); // seq
    s.extend_from_slice(&(if flags & ACK != 0 { 0x2000_0001u32 } else { 0 }).to_be_bytes());
    s.push(6 << 4); // data offset 6: one MSS option
    s.push(flags);
    s.extend_from_slice(&64240u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    s.extend_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    s.extend_from_slice(payload);
    let c = l4_checksum(src, dst, TCP, &s);
    s[16..18].copy_from_slice(&c.to_be_bytes());
    s
}

pub fn udp_seg(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
    with_checksum: bool,
) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    if with_checksum {
        let c = l4_checksum(src, dst, UDP, &s);
        s[6..8].copy_from_slice(&c.to_be_bytes());
    }
    s
}

pub fn icmp_echo(ty: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, ttl, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = inet_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// An IPv4 packet as [`ipv4`] builds it, with a chosen id and flags/offset word (a fragment:
/// `0x2000` more fragments, the low 13 bits the offset in 8-byte units).
pub fn ipv4_with(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    id: u16,
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = ipv4(src, dst, proto, ttl, payload);
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[10] = 0;
    p[11] = 0;
    let c = inet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// A broadcast ARP request from `sha` (`spa`): who has `tpa`?
pub fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    eth([0xff; 6], sha, 0x0806, &arp(1, sha, spa, [0; 6], tpa))
}

pub fn tcp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let seg = tcp_seg(src.0, src.1, dst.0, dst.1, flags, payload);
    eth(dst_mac, src_mac, 0x0800, &ipv4(src.0, dst.0, TCP, 64, &seg))
}

pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
    with_checksum: bool,
) -> Vec<u8> {
    let seg = udp_seg(src.0, src.1, dst.0, dst.1, payload, with_checksum);
    eth(dst_mac, src_mac, 0x0800, &ipv4(src.0, dst.0, UDP, 64, &seg))
}

/// What a checked IPv4 frame holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub l4_checksum: u16,
}

/// Parses an Ethernet/IPv4 frame and asserts both checksums verify (independently computed).
pub fn check(frame: &[u8]) -> Seen {
    assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 ethertype");
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(inet_checksum(&ip[..ihl]), 0, "IP header checksum verifies");
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let proto = ip[9];
    let seg = &ip[ihl..total];
    let (sport, dport, l4_checksum) = match proto {
        TCP | UDP => {
            let off = if proto == TCP { 16 } else { 6 };
            let c = u16::from_be_bytes([seg[off], seg[off + 1]]);
            if !(proto == UDP && c == 0) {
                assert_eq!(
                    c,
                    l4_checksum(src, dst, proto, seg),
                    "L4 checksum equals a full recompute"
                );
            }
            (
                u16::from_be_bytes([seg[0], seg[1]]),
                u16::from_be_bytes([seg[2], seg[3]]),
                c,
            )
        }
        ICMP => {
            assert_eq!(inet_checksum(seg), 0, "ICMP checksum verifies");
            (0, 0, u16::from_be_bytes([seg[2], seg[3]]))
        }
        _ => (0, 0, 0),
    };
    Seen {
        dst_mac: frame[0..6].try_into().unwrap(),
        src_mac: frame[6..12].try_into().unwrap(),
        src,
        dst,
        ttl: ip[8],
        proto,
        sport,
        dport,
        l4_checksum,
    }
}
