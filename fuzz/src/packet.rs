//! The packet parsers and rewriters on arbitrary bytes: nothing panics, nothing is written out
//! of bounds (the slices see to that), a refused rewrite writes nothing, and a rewrite of a
//! packet whose checksums verified leaves them verifying.
//!
//! Input: `sel:u8 addr:[u8;4] port:u16be room:u16be` then the bytes to parse (an IPv4 or IPv6
//! packet for the L3/L4 functions, an Ethernet frame for the rest). IPv6 rewrites use the
//! address 2001:db8::`addr`. Every input goes through both families' parsers; the rewrites of
//! the family the version nibble names follow (see [`check6`] for IPv6).

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::oracle::csum;
use dataplane::packet::arp::Arp;
use dataplane::packet::eth::{self, EthHdr};
use dataplane::packet::icmp::{self, IcmpHdr};
use dataplane::packet::icmpv6;
use dataplane::packet::ipv4::{self, Ipv4Hdr};
use dataplane::packet::ipv6::{self, Ipv6Hdr};
use dataplane::packet::l4::{self, L4Hdr, Side};
use dataplane::packet::ndp::{self, NdpKind};
use std::net::{Ipv4Addr, Ipv6Addr};
use testkit::ipv6::checksum6;

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

    // IPv6: every input, whatever its version nibble says.
    let a = data[1..5].try_into().unwrap_or([0; 4]);
    let addr6 = Ipv6Addr::from(u128::from(u32::from_be_bytes(a)) | 0x2001_0db8 << 96);
    check6(sel, addr6, port, room, bytes);

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

/// The reference IPv6 upper-layer check (testkit's pseudo-header sum, independent of the
/// crate's): the message `seg` of `proto` from `src` to `dst` verifies.
fn ok6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, seg: &[u8]) -> bool {
    checksum6(src, dst, proto, seg) == 0
}

fn addr_at(b: &[u8], off: usize) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&b[off..off + 16]).unwrap())
}

/// The IPv6 parsers and in-place rewrites on `bytes` (an IPv6 packet, perhaps padded).
fn check6(sel: u8, addr: Ipv6Addr, port: u16, room: usize, bytes: &[u8]) {
    // The quoted walk (an ICMPv6 error's quote, cut anywhere) never panics, and stays inside.
    let quoted = Ipv6Hdr::parse_quoted(bytes);
    if let Ok(q) = quoted {
        assert!(
            q.l4_off <= bytes.len().min(q.total_len),
            "quoted chain inside"
        );
    }
    let Ok(ip) = Ipv6Hdr::parse(bytes) else {
        return;
    };
    // A parsed header is consistent with the bytes.
    assert!(ip.l4_off >= ipv6::HDR_LEN && ip.l4_off <= ip.total_len);
    assert_eq!(ip.total_len, ipv6::HDR_LEN + usize::from(ip.payload_len));
    assert!(ip.payload_len > 0 && ip.total_len <= bytes.len());
    assert_eq!(bytes[0] >> 4, 6);
    assert_eq!(
        (ip.src, ip.dst, ip.hop_limit),
        (addr_at(bytes, 8), addr_at(bytes, 24), bytes[7])
    );
    assert_eq!(ip.frag_offset() % 8, 0);
    if ip.frag_offset() == 0 {
        // The chain was walked to its end: what is left is no extension header rvs walks.
        assert!(
            !matches!(ip.proto, 0 | 43 | 44 | 60 | 135 | 139 | 140 | 143..=254),
            "upper layer {} after the chain",
            ip.proto
        );
    }
    // A whole packet's quote is walked the same way (the fragment checks apart).
    assert_eq!(quoted, Ok(ip), "parse_quoted agrees with parse");
    let seg = ip.payload(bytes).expect("payload within the packet");
    let l4h = L4Hdr::parse_ipv6(&ip, seg);
    if let Ok(h) = l4h {
        assert!(ip.proto == ipv4::PROTO_TCP || ip.proto == ipv4::PROTO_UDP);
        assert_eq!(
            (get16(seg, 0), get16(seg, 2)),
            (Some(h.sport), Some(h.dport))
        );
        if h.proto == ipv4::PROTO_UDP {
            assert_ne!(get16(seg, 6), Some(0), "IPv6 UDP checksum is mandatory");
        }
        assert_eq!(ip.frag_offset(), 0, "no L4 header in a later fragment");
    }
    // The crate's full checksum equals the reference where it computes one.
    if ip.frag.is_none() {
        if let Some(c) = l4::compute_checksum_ipv6(ip.proto, ip.src, ip.dst, seg) {
            let at = match ip.proto {
                ipv4::PROTO_TCP => 16,
                ipv4::PROTO_UDP => 6,
                _ => 2,
            };
            let mut z = seg.to_vec();
            z[at..at + 2].fill(0);
            let want = match checksum6(ip.src, ip.dst, ip.proto, &z) {
                0 if ip.proto == ipv4::PROTO_UDP => 0xffff,
                c => c,
            };
            assert_eq!(c, want, "IPv6 checksum equals the reference");
        }
    }
    assert_eq!(
        icmpv6::checksum_ok(ip.src, ip.dst, seg),
        seg.len() >= 8 && ok6(ip.src, ip.dst, 58, seg),
        "ICMPv6 checksum check equals the reference"
    );
    // Neighbour discovery: accepted only as RFC 4861 7.1 validates it.
    if let Ok(n) = ndp::parse(bytes, &ip) {
        assert_eq!(ip.proto, 58);
        assert!(ip.frag.is_none());
        assert_eq!(ip.hop_limit, 255, "NDP hop limit");
        let want = match n.kind {
            NdpKind::Solicitation => 135,
            NdpKind::Advertisement => 136,
        };
        assert_eq!((seg[0], seg[1]), (want, 0));
        assert!(ok6(ip.src, ip.dst, 58, seg), "NDP checksum verifies");
        assert!(!n.target.is_multicast());
        assert_eq!(n.target, addr_at(seg, 8));
        // Every option has a non-zero length and ends inside the message.
        let mut off = 24;
        while off < seg.len() {
            let units = usize::from(*seg.get(off + 1).expect("option length"));
            assert!(units > 0 && off + units * 8 <= seg.len(), "option inside");
            off += units * 8;
        }
        if n.kind == NdpKind::Solicitation {
            // Its answer, built in place, parses as an advertisement of the target.
            let mut buf = vec![0u8; 14];
            buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            buf.extend_from_slice(bytes);
            buf.resize(buf.len().max(ndp::FRAME_LEN), 0);
            let mac = [2, 0, 0, 0, 0, 2];
            let len = ndp::answer_solicitation(&mut buf, &ip, &n, mac).expect("room");
            let a = Ipv6Hdr::parse(&buf[14..len]).expect("the advertisement");
            let na = ndp::parse(&buf[14..len], &a).expect("a valid advertisement");
            assert_eq!(
                (na.kind, na.target, na.lladdr),
                (NdpKind::Advertisement, n.target, Some(mac))
            );
        }
    }
    let _ = icmpv6::may_answer(bytes, &ip);

    match sel % 4 {
        0 => {
            // NAT rewrite of one endpoint.
            let side = if sel & 4 == 0 { Side::Src } else { Side::Dst };
            let dec = sel & 8 != 0;
            let before = seg.len() >= 8 && ok6(ip.src, ip.dst, ip.proto, seg);
            let mut p = bytes.to_vec();
            match l4::rewrite_endpoint_ipv6(&mut p, &ip, side, addr, port, dec) {
                None => assert_eq!(p, bytes, "a refused rewrite writes nothing"),
                Some(()) => {
                    assert!(ip.proto == ipv4::PROTO_TCP || ip.proto == ipv4::PROTO_UDP);
                    let ip2 = Ipv6Hdr::parse(&p).expect("still a valid packet");
                    let seg2 = ip2.payload(&p).unwrap();
                    let (a, pt) = match side {
                        Side::Src => (ip2.src, get16(seg2, 0)),
                        Side::Dst => (ip2.dst, get16(seg2, 2)),
                    };
                    assert_eq!((a, pt), (addr, Some(port)));
                    assert_eq!(ip2.hop_limit, ip.hop_limit - u8::from(dec));
                    let zero_udp = ip.proto == ipv4::PROTO_UDP && get16(seg, 6) == Some(0);
                    if zero_udp {
                        assert_eq!(get16(seg2, 6), Some(0), "a zero UDP checksum stays 0");
                    } else if before && !ip.is_fragment() {
                        assert!(
                            ok6(ip2.src, ip2.dst, ip.proto, seg2),
                            "incremental checksum equals a full recompute"
                        );
                    }
                }
            }
        }
        1 => {
            // ICMPv6 error NAT.
            let Some(e) = icmpv6::parse_error(seg) else {
                return;
            };
            assert!(matches!(seg[0], 1..=4));
            let q = &seg[8..];
            assert_eq!((e.src, e.dst), (addr_at(q, 8), addr_at(q, 24)));
            assert_eq!(
                (get16(q, e.hdr_len), get16(q, e.hdr_len + 2)),
                (Some(e.sport), Some(e.dport))
            );
            let nat = dataplane::packet::icmp::ErrorNat {
                outer: if sel & 4 == 0 { Side::Src } else { Side::Dst },
                outer_addr: addr,
                inner: if sel & 8 == 0 { Side::Src } else { Side::Dst },
                inner_addr: addr,
                inner_port: port,
            };
            let mut p = bytes.to_vec();
            match icmpv6::nat_error(&mut p, &ip, &e, &nat) {
                None => assert_eq!(p, bytes),
                Some(()) => {
                    let ip2 = Ipv6Hdr::parse(&p).expect("outer header");
                    assert_eq!(ip2.hop_limit, ip.hop_limit - 1);
                    let m = ip2.payload(&p).unwrap();
                    assert!(ok6(ip2.src, ip2.dst, 58, m), "ICMPv6 checksum recomputed");
                    let q2 = &m[8..];
                    let (qa, qp) = match nat.inner {
                        Side::Src => (addr_at(q2, 8), get16(q2, e.hdr_len)),
                        Side::Dst => (addr_at(q2, 24), get16(q2, e.hdr_len + 2)),
                    };
                    assert_eq!((qa, qp), (addr, Some(port)));
                    // A quote holding the whole quoted datagram: its checksum still verifies.
                    // (Only where the datagram is long enough to hold its checksum field: the
                    // sum of a shorter one may come out right by chance, with nothing there
                    // for the NAT to keep right.)
                    if let Ok(qh) = Ipv6Hdr::parse(q) {
                        let qs = qh.payload(q).unwrap();
                        let udp0 = e.proto == ipv4::PROTO_UDP && get16(qs, 6) == Some(0);
                        let has_field = l4::checksum_field(e.proto, qs).is_some();
                        if !qh.is_fragment() && has_field && !udp0 && ok6(e.src, e.dst, e.proto, qs)
                        {
                            let qh2 = Ipv6Hdr::parse(q2).expect("quoted header");
                            let qs2 = qh2.payload(q2).unwrap();
                            assert!(
                                ok6(qh2.src, qh2.dst, e.proto, qs2),
                                "quoted checksum still verifies"
                            );
                        }
                    }
                }
            }
        }
        2 => {
            // An ICMPv6 error built in place (after a fake Ethernet header).
            let mut buf = vec![0u8; 14];
            buf[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            buf.extend_from_slice(bytes);
            let len = buf.len();
            buf.resize(len + room, 0);
            let spec = icmp::ErrorSpec {
                icmp_type: icmpv6::TYPE_PACKET_TOO_BIG,
                code: 0,
                rest: u32::from(port),
                src: addr,
                src_mac: [2, 0, 0, 0, 0, 2],
            };
            let before = buf.clone();
            match icmpv6::build_error_in_place(&mut buf, len, &ip, &spec) {
                None => assert_eq!(buf, before),
                Some(n) => {
                    assert!(n <= buf.len() && n <= 14 + ipv6::MIN_MTU);
                    assert_eq!(&buf[..12], &[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
                    let e = Ipv6Hdr::parse(&buf[14..n]).expect("the error's header");
                    assert_eq!(e.total_len, n - 14);
                    assert_eq!((e.src, e.dst, e.proto, e.hop_limit), (addr, ip.src, 58, 64));
                    let m = e.payload(&buf[14..n]).unwrap();
                    assert!(ok6(e.src, e.dst, 58, m), "ICMPv6 checksum");
                    assert_eq!(&m[..2], &[2, 0]);
                    assert_eq!(&m[4..8], &u32::from(port).to_be_bytes());
                    let q = &m[8..];
                    assert_eq!(q, &bytes[..q.len()]);
                    assert!(q.len() >= ip.total_len.min(ip.l4_off + 8));
                }
            }
        }
        _ => {
            // Echo reply in place; address rewrite of a later fragment; hop limit.
            let mut p = bytes.to_vec();
            match icmpv6::echo_reply_in_place(&mut p, &ip) {
                None => assert_eq!(p, bytes),
                Some(()) => {
                    assert_eq!((seg[0], seg[1]), (128, 0));
                    let r = Ipv6Hdr::parse(&p).expect("the reply");
                    assert_eq!((r.src, r.dst, r.hop_limit), (ip.dst, ip.src, 64));
                    let m = r.payload(&p).unwrap();
                    assert_eq!(m[0], 129);
                    assert_eq!(&m[4..], &seg[4..]);
                    assert!(ok6(r.src, r.dst, 58, m), "echo reply checksum");
                }
            }
            let off = if sel & 4 == 0 {
                ipv6::OFF_SRC
            } else {
                ipv6::OFF_DST
            };
            let mut p = bytes.to_vec();
            match ipv6::rewrite_addr_dec_hop(&mut p, off, addr) {
                None => assert_eq!(p, bytes),
                Some(()) => {
                    assert_eq!(p[7], bytes[7] - 1);
                    assert_eq!(addr_at(&p, off), addr);
                    assert_eq!(&p[40..], &bytes[40..]);
                }
            }
            let mut p = bytes.to_vec();
            if ipv6::decrement_hop_limit(&mut p).is_some() {
                assert_eq!(p[7], bytes[7] - 1);
            }
        }
    }
}
