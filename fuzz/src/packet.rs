//! The packet parsers and rewriters on arbitrary bytes: nothing panics, nothing is written out
//! of bounds (the slices see to that), a refused rewrite writes nothing, and a rewrite of a
//! packet whose checksums verified leaves them verifying.
//!
//! Input: `sel:u8 addr:[u8;4] port:u16be room:u16be` then the bytes to parse (an IPv4 packet
//! for the L3/L4 functions, an Ethernet frame for the rest).

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::oracle::csum;
use dataplane::packet::arp::Arp;
use dataplane::packet::eth::{self, EthHdr};
use dataplane::packet::icmp::{self, IcmpHdr};
use dataplane::packet::ipv4::{self, Ipv4Hdr};
use dataplane::packet::l4::{self, L4Hdr, Side};
use std::net::Ipv4Addr;

fn l4_ok(ip: &Ipv4Hdr, p: &[u8]) -> Option<bool> {
    let seg = ip.payload(p)?;
    let c = l4::checksum_field(ip.proto, seg)?;
    if ip.proto == ipv4::PROTO_UDP && c == 0 {
        return Some(true);
    }
    Some(
        l4::compute_checksum(ip.proto, ip.src, ip.dst, seg)? == c || {
            // A computed 0 (written as 0xffff for UDP) and a stored 0 or 0xffff both verify.
            let mut full = Vec::new();
            full.extend_from_slice(&ip.src.octets());
            full.extend_from_slice(&ip.dst.octets());
            full.extend_from_slice(&[0, ip.proto]);
            full.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            full.extend_from_slice(seg);
            csum(&full) == 0
        },
    )
}

pub fn check(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let sel = data[0];
    let addr = Ipv4Addr::new(data[1], data[2], data[3], data[4]);
    let port = u16::from_be_bytes([data[5], data[6]]);
    let room = usize::from(u16::from_be_bytes([data[7], data[8]])) % 2048;
    let bytes = &data[9..];

    // Ethernet, ARP, VLAN helpers.
    if let Some(h) = EthHdr::parse(bytes) {
        let _ = eth::is_vlan(h.ethertype) || eth::is_multicast(&h.dst);
        if let Some(a) = bytes.get(eth::HDR_LEN..).and_then(Arp::parse) {
            let mut out = [0u8; 28];
            a.write(&mut out).expect("28 bytes hold an ARP message");
            assert_eq!(Arp::parse(&out), Some(a), "ARP round trip");
        }
    }

    // IPv4: parse never panics; a parsed header is consistent with the bytes.
    let Ok(ip) = Ipv4Hdr::parse_any(bytes) else {
        return;
    };
    assert!(ip.hdr_len >= 20 && ip.hdr_len <= ip.total_len && ip.total_len <= bytes.len());
    assert_eq!(
        csum(&bytes[..ip.hdr_len]),
        0,
        "a parsed header's checksum verifies"
    );
    assert_eq!(Ipv4Hdr::parse(bytes).is_ok(), !ip.is_fragment());
    let seg = ip.payload(bytes).expect("payload within the packet");
    let l4h = L4Hdr::parse_ip(&ip, seg);
    let _ = IcmpHdr::parse(seg);

    match sel % 4 {
        0 => {
            // NAT rewrite of one endpoint.
            let side = if sel & 4 == 0 { Side::Src } else { Side::Dst };
            let before = l4_ok(&ip, bytes);
            let mut p = bytes.to_vec();
            match l4::rewrite_endpoint(&mut p, &ip, side, addr, port, sel & 8 != 0) {
                None => assert_eq!(p, bytes, "a refused rewrite writes nothing"),
                Some(()) => {
                    let ip2 = Ipv4Hdr::parse_any(&p).expect("header still verifies");
                    let (a, pt) = match side {
                        Side::Src => (ip2.src, get16(ip2.payload(&p).unwrap(), 0)),
                        Side::Dst => (ip2.dst, get16(ip2.payload(&p).unwrap(), 2)),
                    };
                    assert_eq!((a, pt), (addr, Some(port)));
                    if before == Some(true) && !ip.is_fragment() {
                        assert_eq!(l4_ok(&ip2, &p), Some(true), "L4 checksum still verifies");
                    }
                }
            }
        }
        1 => {
            // ICMP error NAT.
            if let Some(e) = icmp::parse_error(seg) {
                let nat = icmp::ErrorNat {
                    outer: if sel & 4 == 0 { Side::Src } else { Side::Dst },
                    outer_addr: addr,
                    inner: if sel & 8 == 0 { Side::Src } else { Side::Dst },
                    inner_addr: addr,
                    inner_port: port,
                };
                let mut p = bytes.to_vec();
                match icmp::nat_error(&mut p, &ip, &e, &nat) {
                    None => assert_eq!(p, bytes),
                    Some(()) => {
                        let ip2 = Ipv4Hdr::parse_any(&p).expect("outer header verifies");
                        assert!(icmp::checksum_ok(ip2.payload(&p).unwrap()));
                        let q = &ip2.payload(&p).unwrap()[8..];
                        let qo = &seg[8..];
                        if csum(&qo[..e.hdr_len]) == 0 {
                            assert_eq!(csum(&q[..e.hdr_len]), 0, "quoted header verifies");
                        }
                    }
                }
            }
        }
        2 => {
            // An ICMP error built in place (the bytes after a fake Ethernet header).
            let mut buf = vec![0u8; 14];
            buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            buf.extend_from_slice(bytes);
            let len = buf.len();
            buf.resize(len + room, 0);
            let spec = icmp::ErrorSpec {
                icmp_type: icmp::TYPE_TIME_EXCEEDED,
                code: 0,
                rest: u32::from(port),
                src: addr,
                src_mac: [2, 0, 0, 0, 0, 2],
            };
            let before = buf.clone();
            match icmp::build_error_in_place(&mut buf, len, &ip, &spec) {
                None => assert_eq!(buf, before),
                Some(n) => {
                    assert!(n <= buf.len() && n <= 14 + icmp::MAX_ERROR_LEN);
                    let e = Ipv4Hdr::parse(&buf[14..n]).expect("the error's header");
                    assert_eq!(e.total_len, n - 14);
                    assert!(icmp::checksum_ok(e.payload(&buf[14..n]).unwrap()));
                    let q = &buf[42..n];
                    assert_eq!(q, &bytes[..q.len()]);
                    assert!(q.len() >= ip.total_len.min(ip.hdr_len + 8));
                }
            }
        }
        _ => {
            // Address rewrite of a later fragment, TTL decrement.
            let off = if sel & 4 == 0 {
                ipv4::OFF_SRC
            } else {
                ipv4::OFF_DST
            };
            let mut p = bytes.to_vec();
            match ipv4::rewrite_addr_dec_ttl(&mut p, off, addr) {
                None => assert_eq!(p, bytes),
                Some(()) => {
                    let ip2 = Ipv4Hdr::parse_any(&p).expect("header still verifies");
                    assert_eq!(ip2.ttl, ip.ttl - 1);
                    assert_eq!(&p[ip.hdr_len..], &bytes[ip.hdr_len..]);
                }
            }
            let mut p = bytes.to_vec();
            if ipv4::decrement_ttl(&mut p).is_some() {
                assert!(Ipv4Hdr::parse_any(&p).is_ok());
            }
            let _ = l4h;
        }
    }
}

fn get16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}
