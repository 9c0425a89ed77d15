//! IPv6 for the tests: the address plan's IPv6 half (DESIGN.md: clients and VIPs in
//! 2001:db8:100::/64, real servers in 2001:db8:2::/64), frame builders and a checker written
//! independently of the dataplane's packet code (own pseudo-header, own checksum, own layout),
//! and the two-arm director with IPv6 addresses.

use crate::director::two_arm_ports;
use crate::plan::{CLIENT_MAC, RS1_MAC};
use crate::{eth, inet_checksum, ACK, TCP, UDP};
use control::model::Timeouts;
use dataplane::pipeline::{Dataplane, DataplaneConfig};
use dataplane::service::ServiceManager;
use std::net::Ipv6Addr;
use std::sync::Arc;

pub const ICMPV6: u8 = 58;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Extension headers' next-header numbers.
pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const DEST_OPTS: u8 = 60;

/// The IPv6 VIP.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
/// The external port's own IPv6 address.
pub const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
/// The first IPv6 client.
pub const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
/// The director's IPv6 address on the real servers' side: their default route.
pub const DIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x2, 0, 0, 0, 0, 1);
/// Real servers 1 and 2.
pub const RIP6_1: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x2, 0, 0, 0, 0, 2);
pub const RIP6_2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x2, 0, 0, 0, 0, 3);

/// The two-arm director of `director::two_arm_with_twins` with IPv6 addresses too (ext
/// `EXT6`/64, int `DIP6`/64, int MTU `int_mtu`), no twins, the client (`CIP6`) and RS1
/// (`RIP6_1`) known neighbours, and `services` (rvsadm lines) applied.
pub fn two_arm6(int_mtu: u16, services: &str) -> (Arc<Dataplane>, ServiceManager) {
    let mut ports = two_arm_ports(None, int_mtu);
    ports[0].addrs6 = vec![(EXT6, 64)];
    ports[1].addrs6 = vec![(DIP6, 64)];
    let dp = Dataplane::new(DataplaneConfig {
        ports,
        conn_capacity: 1024,
        timeouts: Timeouts::default(),
        workers: 1,
    });
    dp.neigh6().learn(0, CIP6, CLIENT_MAC);
    dp.neigh6().learn(1, RIP6_1, RS1_MAC);
    let mut mgr = ServiceManager::new(dp.clone());
    crate::services::rvsadm(&mut mgr, services);
    (dp, mgr)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 8.1) and `seg`, complemented: the checksum
/// of an upper-layer message whose checksum field is zero.
pub fn checksum6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, seg: &[u8]) -> u16 {
    let mut data = Vec::with_capacity(40 + seg.len());
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.extend_from_slice(&(seg.len() as u32).to_be_bytes());
    data.extend_from_slice(&[0, 0, 0, proto]);
    data.extend_from_slice(seg);
    inet_checksum(&data)
}

/// Offset of the checksum field in a TCP, UDP or ICMPv6 message.
fn checksum_offset(proto: u8) -> usize {
    match proto {
        TCP => 16,
        UDP => 6,
        _ => 2,
    }
}

/// Fills the checksum of the upper-layer message `seg` (UDP's 0 sent as 0xffff).
fn fill_checksum6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, seg: &mut [u8]) {
    let off = checksum_offset(proto);
    seg[off..off + 2].copy_from_slice(&[0, 0]);
    let c = match checksum6(src, dst, proto, seg) {
        0 if proto == UDP => 0xffff,
        c => c,
    };
    seg[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// A TCP segment (one MSS option) with its IPv6 checksum.
pub fn tcp_seg6(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&src.1.to_be_bytes());
    s.extend_from_slice(&dst.1.to_be_bytes());
    s.extend_from_slice(&0x1000_0001u32.to_be_bytes());
    s.extend_from_slice(&(if flags & ACK != 0 { 0x2000_0001u32 } else { 0 }).to_be_bytes());
    s.extend_from_slice(&[6 << 4, flags]);
    s.extend_from_slice(&64800u16.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 0, 2, 4, 0x05, 0xa0]); // checksum, urgent, MSS 1440
    s.extend_from_slice(payload);
    fill_checksum6(src.0, dst.0, TCP, &mut s);
    s
}

/// A UDP datagram with its (mandatory) IPv6 checksum.
pub fn udp_seg6(src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16), payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&src.1.to_be_bytes());
    s.extend_from_slice(&dst.1.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    fill_checksum6(src.0, dst.0, UDP, &mut s);
    s
}

/// An ICMPv6 message (`body` after the checksum: for echo, identifier, sequence and data;
/// for errors, the 4-byte word and the quoted packet) with its checksum.
pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(body);
    fill_checksum6(src, dst, ICMPV6, &mut m);
    m
}

/// An IPv6 header and `payload`, `next` the payload's type.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, hop]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An extension header (hop-by-hop, routing, destination options: `len8` 8-byte units after
/// the first 8, padded with a PadN option or zeros) followed by `rest`, `next` its type.
pub fn ext_header(next: u8, len8: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, len8];
    h.resize(8 + usize::from(len8) * 8, 0);
    if h.len() > 2 {
        // PadN over the rest: a valid option area.
        h[2] = 1;
        h[3] = (h.len() - 4) as u8;
    }
    h.extend_from_slice(rest);
    h
}

/// A fragment header (`offset` in bytes, a multiple of 8) followed by `rest`.
pub fn frag_header(next: u8, offset: usize, more: bool, id: u32, rest: &[u8]) -> Vec<u8> {
    let word = ((offset as u16) & 0xfff8) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&word.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(rest);
    h
}

/// An Ethernet frame holding the IPv6 packet `ip`.
pub fn eth6(dst_mac: [u8; 6], src_mac: [u8; 6], ip: &[u8]) -> Vec<u8> {
    eth(dst_mac, src_mac, ETHERTYPE_IPV6, ip)
}

pub fn tcp_frame6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let seg = tcp_seg6(src, dst, flags, payload);
    eth6(dst_mac, src_mac, &ipv6(src.0, dst.0, TCP, 64, &seg))
}

pub fn udp_frame6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let seg = udp_seg6(src, dst, payload);
    eth6(dst_mac, src_mac, &ipv6(src.0, dst.0, UDP, 64, &seg))
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// The Ethernet address of the IPv6 group `g` (RFC 2464 7).
pub fn multicast_mac(g: Ipv6Addr) -> [u8; 6] {
    let o = g.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// A neighbour solicitation from `src` (`src_mac`, given as source link-layer option) for
/// `target`, to its solicited-node group, hop limit 255.
pub fn neighbour_solicitation(src_mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited_node(target);
    let mut body = vec![0; 4];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src_mac);
    let m = icmp6(src, group, 135, 0, &body);
    eth6(
        multicast_mac(group),
        src_mac,
        &ipv6(src, group, ICMPV6, 255, &m),
    )
}

/// A solicited neighbour advertisement from `src` (`src_mac`) to `dst` at `dst_mac`, with a
/// target link-layer option.
pub fn neighbour_advertisement(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Vec<u8> {
    let mut body = vec![0x60, 0, 0, 0]; // solicited, override
    body.extend_from_slice(&src.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&src_mac);
    let m = icmp6(src, dst, 136, 0, &body);
    eth6(dst_mac, src_mac, &ipv6(src, dst, ICMPV6, 255, &m))
}

/// What a checked IPv6 frame holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen6 {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// The upper-layer protocol (after a fragment header, if any).
    pub proto: u8,
    /// TCP/UDP ports, or ICMPv6 type and code.
    pub sport: u16,
    pub dport: u16,
    /// The upper-layer message (from its first byte to the packet's end).
    pub upper: Vec<u8>,
}

/// Parses an Ethernet/IPv6 frame (no extension headers but a fragment header) and asserts
/// the upper layer's checksum equals a full recompute (unless it is a later fragment).
pub fn check6(frame: &[u8]) -> Seen6 {
    assert_eq!(&frame[12..14], &[0x86, 0xdd], "IPv6 ethertype");
    let ip = &frame[14..];
    assert_eq!(ip[0] >> 4, 6, "version 6");
    let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let ip = &ip[..40 + plen];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
    let (mut proto, mut off, mut later) = (ip[6], 40, false);
    if proto == FRAGMENT {
        later = u16::from_be_bytes([ip[42], ip[43]]) & 0xfff8 != 0;
        proto = ip[40];
        off = 48;
    }
    let upper = ip[off..].to_vec();
    let (sport, dport) = match proto {
        _ if later => (0, 0),
        TCP | UDP => (
            u16::from_be_bytes([upper[0], upper[1]]),
            u16::from_be_bytes([upper[2], upper[3]]),
        ),
        ICMPV6 => (u16::from(upper[0]), u16::from(upper[1])),
        _ => (0, 0),
    };
    if !later && off == 40 && matches!(proto, TCP | UDP | ICMPV6) {
        let field = checksum_offset(proto);
        let mut zeroed = upper.clone();
        zeroed[field..field + 2].copy_from_slice(&[0, 0]);
        let want = match checksum6(src, dst, proto, &zeroed) {
            0 if proto == UDP => 0xffff,
            c => c,
        };
        let got = u16::from_be_bytes([upper[field], upper[field + 1]]);
        assert_eq!(got, want, "upper-layer checksum equals a full recompute");
    }
    Seen6 {
        dst_mac: frame[0..6].try_into().unwrap(),
        src_mac: frame[6..12].try_into().unwrap(),
        src,
        dst,
        hop_limit: ip[7],
        proto,
        sport,
        dport,
        upper,
    }
}
