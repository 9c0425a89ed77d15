//! ICMPv6 (RFC 4443): echo request -> echo reply in place; ICMPv6 errors about NATed connections
//! (outer and quoted packet rewritten, as for IPv4 in `icmp`); ICMPv6 errors rvs originates
//! (time exceeded, port unreachable, packet too big), built in place of the packet they are
//! about. Unlike ICMP, the ICMPv6 checksum covers the IPv6 pseudo-header, so every change of an
//! outer address changes it too. NDP messages are in `ndp`.

use super::icmp::{Embedded, ErrorHeader, ErrorSpec};
use super::ipv6::{self, Ipv6Hdr, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use super::l4;
use super::{checksum, eth};
use super::{get16, get_ip6, put, put16, put_ip6};
use std::net::Ipv6Addr;

pub const HDR_LEN: usize = 8;
pub const TYPE_DEST_UNREACH: u8 = 1;
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
pub const TYPE_TIME_EXCEEDED: u8 = 3;
pub const TYPE_PARAM_PROBLEM: u8 = 4;
pub const TYPE_ECHO_REQUEST: u8 = 128;
pub const TYPE_ECHO_REPLY: u8 = 129;
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
pub const TYPE_ROUTER_ADVERT: u8 = 134;
pub const TYPE_NS: u8 = 135;
pub const TYPE_NA: u8 = 136;
pub const TYPE_REDIRECT: u8 = 137;
/// Destination unreachable: port unreachable.
pub const CODE_PORT_UNREACH: u8 = 4;
/// Destination unreachable: address unreachable (no neighbour answers).
pub const CODE_ADDR_UNREACH: u8 = 3;
/// Time exceeded: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT: u8 = 0;
/// Parameter problem: unrecognized IPv6 option (which may be answered to multicast).
pub const CODE_UNRECOGNIZED_OPTION: u8 = 2;
const OFF_CSUM: usize = 2;

/// Hop limit of the ICMPv6 messages rvs originates (NDP's are 255).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// An error message (RFC 4443 2.1: types 0-127).
pub fn is_error(icmp_type: u8) -> bool {
    icmp_type < 128
}

/// The ICMPv6 checksum of `msg` sent from `src` to `dst`, from scratch.
pub fn compute_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Option<u16> {
    l4::compute_checksum_ipv6(PROTO_ICMPV6, src, dst, msg)
}

/// The ICMPv6 message `msg` (checksum field included) from `src` to `dst` verifies.
pub fn checksum_ok(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> bool {
    let Ok(len) = u32::try_from(msg.len()) else {
        return false;
    };
    msg.len() >= HDR_LEN
        && checksum::fold(checksum::sum(
            msg,
            checksum::pseudo_header_sum6(src, dst, PROTO_ICMPV6, len),
        )) == 0xffff
}

/// Recomputes and stores the checksum of the ICMPv6 message `msg` from `src` to `dst`.
pub fn fill_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &mut [u8]) -> Option<()> {
    let c = compute_checksum(src, dst, msg)?;
    put16(msg, OFF_CSUM, c)
}

/// Turns the echo request IPv6 packet `p` (described by `ip`) into its echo reply in place:
/// addresses swapped, hop limit [`DEFAULT_HOP_LIMIT`], type 129, checksum recomputed.
/// Identifier, sequence number, data and any extension headers stay. `None` (nothing written)
/// if `p` is not an unfragmented echo request to a unicast address.
pub fn echo_reply_in_place(p: &mut [u8], ip: &Ipv6Hdr) -> Option<()> {
    if ip.proto != PROTO_ICMPV6 || ip.is_fragment() || ip.dst.is_multicast() {
        return None;
    }
    match ip.payload(p)? {
        [TYPE_ECHO_REQUEST, 0, _, _, _, _, _, _, ..] => {}
        _ => return None,
    }
    ipv6::swap_addrs(p)?;
    ipv6::set_hop_limit(p, DEFAULT_HOP_LIMIT)?;
    let msg = ip.payload_mut(p)?;
    put(msg, 0, &[TYPE_ECHO_REPLY])?;
    fill_checksum(ip.dst, ip.src, msg)
}

// ---------------------------------------------------------------------------------------------
// ICMPv6 errors about connections

/// The TCP/UDP packet quoted by the ICMPv6 error `msg` (types 1-4): `None` for other types,
/// other protocols, a quote that does not reach 8 bytes past its extension headers, a quoted
/// header that is not IPv6 or whose chain is refused, or a quoted non-first fragment.
/// `hdr_len` of the result is the offset of the quoted TCP/UDP header.
pub fn parse_error(msg: &[u8]) -> Option<Embedded<Ipv6Addr>> {
    if !matches!(msg.first()?, 1..=4) || msg.len() < HDR_LEN {
        return None;
    }
    let quoted = msg.get(HDR_LEN..)?;
    let q = Ipv6Hdr::parse_quoted(quoted).ok()?;
    if q.frag_offset() != 0 || (q.proto != PROTO_TCP && q.proto != PROTO_UDP) {
        return None;
    }
    let l4 = quoted.get(q.l4_off..q.l4_off.checked_add(8)?)?;
    Some(Embedded {
        hdr_len: q.l4_off,
        proto: q.proto,
        src: q.src,
        dst: q.dst,
        sport: get16(l4, 0)?,
        dport: get16(l4, 2)?,
    })
}

/// ICMPv6 errors about connections are rewritten by the one [`nat_error`] of both families.
pub use super::icmp::nat_error;

impl ErrorHeader for Ipv6Hdr {
    fn error_msg_off(&self) -> Option<usize> {
        (self.hop_limit != 0 && self.proto == PROTO_ICMPV6 && !self.is_fragment())
            .then_some(self.l4_off)
    }
    fn replace_addr(p: &mut [u8], off: usize, addr: Ipv6Addr) -> Option<u32> {
        let old = get_ip6(p, off)?;
        put_ip6(p, off, addr)?;
        Some(checksum::delta_ip6(old, addr))
    }
    fn rewrite_addr_dec_hops(p: &mut [u8], off: usize, addr: Ipv6Addr) -> Option<()> {
        ipv6::rewrite_addr_dec_hop(p, off, addr)
    }
    fn adjust_quoted_header(_hdr: &mut [u8], _delta: u32) -> Option<()> {
        Some(())
    }
    fn fill_error_checksum(p: &mut [u8], msg_off: usize, end: usize) -> Option<()> {
        let src = get_ip6(p, ipv6::OFF_SRC)?;
        let dst = get_ip6(p, ipv6::OFF_DST)?;
        fill_checksum(src, dst, p.get_mut(msg_off..end)?)
    }
}

// ---------------------------------------------------------------------------------------------
// ICMPv6 errors rvs originates

/// May rvs send an ICMPv6 error about the IPv6 packet `p` (described by `ip`)? The general
/// rule of [`may_answer_with`], for an error that is not packet too big: a multicast
/// destination is never answered.
pub fn may_answer(p: &[u8], ip: &Ipv6Hdr) -> bool {
    may_answer_with(p, ip, TYPE_DEST_UNREACH, 0)
}

/// May rvs send the ICMPv6 error `icmp_type`/`code` about the IPv6 packet `p` (described by
/// `ip`)? RFC 4443 2.4(e): never about an ICMPv6 error or a redirect, nor to a packet sent to a
/// multicast address (except packet too big and parameter problem code 2), nor about a packet
/// whose source is not a single unicast node beyond this link (unspecified, multicast,
/// loopback, link-local, IPv4-mapped: see [`ipv6::forwardable`]); and, as for IPv4, never about
/// a non-first fragment.
pub fn may_answer_with(p: &[u8], ip: &Ipv6Hdr, icmp_type: u8, code: u8) -> bool {
    if ip.frag_offset() != 0 || !ipv6::forwardable(ip.src) {
        return false;
    }
    let multicast_ok = icmp_type == TYPE_PACKET_TOO_BIG
        || (icmp_type == TYPE_PARAM_PROBLEM && code == CODE_UNRECOGNIZED_OPTION);
    if ip.dst.is_multicast() && !multicast_ok {
        return false;
    }
    if ip.proto != PROTO_ICMPV6 {
        return true;
    }
    match ip.payload(p).and_then(|m| m.first()) {
        Some(&t) => !is_error(t) && t != TYPE_REDIRECT,
        None => false,
    }
}

/// Turns the Ethernet frame `buf[..len]` (an IPv6 packet described by `ip` after a 14-byte
/// Ethernet header) into the ICMPv6 error `spec` about it, sent back to the frame's source MAC
/// with hop limit [`DEFAULT_HOP_LIMIT`]. `buf` may extend past `len` (room to grow). The error
/// quotes as much of the packet as fits in [`ipv6::MIN_MTU`] and in `buf` (RFC 4443 2.4(c)), and
/// at least its headers and 8 more bytes (or the whole packet, if shorter). `spec.rest` is the
/// second word (the MTU of packet too big). Returns the new frame length, or `None` (nothing
/// written) when `buf` has no room for that minimum or the frame is not as `ip` describes it.
pub fn build_error_in_place(
    buf: &mut [u8],
    len: usize,
    ip: &Ipv6Hdr,
    spec: &ErrorSpec<Ipv6Addr>,
) -> Option<usize> {
    const ETH: usize = eth::HDR_LEN;
    const OUT: usize = ETH + ipv6::HDR_LEN + HDR_LEN;
    if len > buf.len() || ETH + ip.total_len > len {
        return None;
    }
    let orig_src_mac: [u8; 6] = super::array(buf, 6)?;
    let min_quote = ip.total_len.min(ip.l4_off.checked_add(8)?);
    let quote = ip
        .total_len
        .min(ipv6::MIN_MTU - ipv6::HDR_LEN - HDR_LEN)
        .min(buf.len().checked_sub(OUT)?);
    if quote < min_quote {
        return None;
    }
    buf.copy_within(ETH..ETH + quote, OUT);
    let plen = HDR_LEN + quote;
    let pkt = buf.get_mut(ETH..OUT + quote)?;
    ipv6::write_header(
        pkt,
        u16::try_from(plen).ok()?,
        PROTO_ICMPV6,
        DEFAULT_HOP_LIMIT,
        spec.src,
        ip.src,
    )?;
    let msg = pkt.get_mut(ipv6::HDR_LEN..)?;
    put(msg, 0, &[spec.icmp_type, spec.code, 0, 0])?;
    put(msg, 4, &spec.rest.to_be_bytes())?;
    fill_checksum(spec.src, ip.src, msg)?;
    eth::EthHdr {
        dst: orig_src_mac,
        src: spec.src_mac,
        ethertype: eth::ETHERTYPE_IPV6,
    }
    .write(buf)?;
    Some(OUT + quote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::tests::assert_same_but_sums;
    use crate::packet::icmp::ErrorNat;
    use crate::packet::ipv6::tests::{frag, opts, packet as ip6_packet};
    use crate::packet::ipv6::{PROTO_DEST_OPTS, PROTO_FRAGMENT, PROTO_HOP_BY_HOP};
    use crate::packet::l4::tests::v6::packet6;
    use crate::packet::l4::Side;
    use proptest::prelude::*;

    const CIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
    const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
    const RIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

    /// An ICMPv6 message (type, code, rest, body) in an IPv6 packet from `src` to `dst`.
    fn icmp6(
        ext: &[(u8, Vec<u8>)],
        src: Ipv6Addr,
        dst: Ipv6Addr,
        head: [u8; 8],
        body: &[u8],
    ) -> Vec<u8> {
        let mut msg = head.to_vec();
        msg.extend_from_slice(body);
        fill_checksum(src, dst, &mut msg).unwrap();
        let mut p = ip6_packet(ext, PROTO_ICMPV6, &msg);
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p
    }

    fn msg_ok(p: &[u8]) -> bool {
        let ip = Ipv6Hdr::parse(p).unwrap();
        checksum_ok(ip.src, ip.dst, ip.payload(p).unwrap())
    }

    #[test]
    fn echo_reply_swaps_and_recomputes() {
        for ext in [vec![], vec![(PROTO_DEST_OPTS, opts(0))]] {
            let head = [TYPE_ECHO_REQUEST, 0, 0, 0, 0x12, 0x34, 0, 7];
            let mut p = icmp6(&ext, CIP, VIP, head, b"abcdefgh");
            let ip = Ipv6Hdr::parse(&p).unwrap();
            assert!(msg_ok(&p));
            echo_reply_in_place(&mut p, &ip).unwrap();
            let r = Ipv6Hdr::parse(&p).unwrap();
            assert_eq!((r.src, r.dst, r.hop_limit), (VIP, CIP, DEFAULT_HOP_LIMIT));
            let m = r.payload(&p).unwrap();
            assert_eq!(&m[..2], &[TYPE_ECHO_REPLY, 0]);
            assert_eq!(&m[4..], b"\x12\x34\x00\x07abcdefgh");
            assert!(msg_ok(&p));
        }
        // Not a request, to multicast, fragmented, truncated: nothing written.
        let head = [TYPE_ECHO_REPLY, 0, 0, 0, 0, 0, 0, 0];
        let multi: Ipv6Addr = "ff02::1".parse().unwrap();
        let echo = [TYPE_ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0];
        for mut p in [
            icmp6(&[], CIP, VIP, head, b""),
            icmp6(&[], CIP, multi, echo, b""),
            icmp6(&[(PROTO_FRAGMENT, frag(0, true, 1))], CIP, VIP, echo, b""),
        ] {
            let ip = Ipv6Hdr::parse(&p).unwrap();
            let before = p.clone();
            assert_eq!(echo_reply_in_place(&mut p, &ip), None);
            assert_eq!(p, before);
        }
        let p = icmp6(&[], CIP, VIP, echo, b"");
        let ip = Ipv6Hdr::parse(&p).unwrap();
        for n in 0..p.len() {
            let mut q = p[..n].to_vec();
            assert_eq!(echo_reply_in_place(&mut q, &ip), None);
            assert_eq!(q, p[..n]);
        }
    }

    /// An error from `from` to `to` quoting the first `quote` bytes of `orig`.
    fn error_about(
        from: Ipv6Addr,
        to: Ipv6Addr,
        ty: u8,
        code: u8,
        orig: &[u8],
        quote: usize,
    ) -> Vec<u8> {
        icmp6(
            &[],
            from,
            to,
            [ty, code, 0, 0, 0, 0, 0, 0],
            &orig[..quote.min(orig.len())],
        )
    }

    #[test]
    fn parse_error_finds_the_quoted_ports() {
        let ext = vec![(PROTO_HOP_BY_HOP, opts(0))];
        let orig = packet6(&ext, PROTO_UDP, (CIP, 4000), (RIP, 53), b"data");
        let p = error_about(RIP, CIP, TYPE_DEST_UNREACH, CODE_PORT_UNREACH, &orig, 56);
        let ip = Ipv6Hdr::parse(&p).unwrap();
        let e = parse_error(ip.payload(&p).unwrap()).unwrap();
        assert_eq!(
            e,
            Embedded {
                hdr_len: 48,
                proto: PROTO_UDP,
                src: CIP,
                dst: RIP,
                sport: 4000,
                dport: 53
            }
        );
        for ty in [TYPE_PACKET_TOO_BIG, TYPE_TIME_EXCEEDED, TYPE_PARAM_PROBLEM] {
            let p = error_about(RIP, CIP, ty, 0, &orig, 56);
            assert_eq!(parse_error(&p[40..]), Some(e));
        }
        let short = error_about(RIP, CIP, TYPE_DEST_UNREACH, 4, &orig, 55);
        assert_eq!(parse_error(&short[40..]), None);
        for ty in [0u8, 5, TYPE_ECHO_REQUEST, TYPE_NS] {
            let p = error_about(RIP, CIP, ty, 0, &orig, 56);
            assert_eq!(parse_error(&p[40..]), None, "type {ty}");
        }
        let later = packet6(
            &[(PROTO_FRAGMENT, frag(8, false, 1))],
            PROTO_UDP,
            (CIP, 4000),
            (RIP, 53),
            b"data",
        );
        let p = error_about(RIP, CIP, TYPE_TIME_EXCEEDED, 1, &later, 100);
        assert_eq!(parse_error(&p[40..]), None);
        for n in 0..p.len() - 40 {
            assert_eq!(parse_error(&p[40..40 + n]), None, "len {n}");
        }
    }

    #[test]
    fn nat_error_rewrites_outer_and_quoted_both_ways() {
        // To the client: the real server's error about CIP:4000 -> RIP:5353 must look like it
        // is about CIP:4000 -> VIP:53 and come from the VIP.
        for (proto, quote) in [
            (PROTO_UDP, 48),
            (PROTO_TCP, 48),
            (PROTO_TCP, 60),
            (PROTO_UDP, 52),
        ] {
            let orig = packet6(&[], proto, (CIP, 4000), (RIP, 5353), b"data");
            let mut p = error_about(RIP, CIP, TYPE_DEST_UNREACH, 4, &orig, quote);
            let ip = Ipv6Hdr::parse(&p).unwrap();
            let e = parse_error(ip.payload(&p).unwrap()).unwrap();
            let nat = ErrorNat {
                outer: Side::Src,
                outer_addr: VIP,
                inner: Side::Dst,
                inner_addr: VIP,
                inner_port: 53,
            };
            nat_error(&mut p, &ip, &e, &nat).unwrap();
            let out = Ipv6Hdr::parse(&p).unwrap();
            assert_eq!((out.src, out.dst, out.hop_limit), (VIP, CIP, 63));
            assert!(msg_ok(&p), "ICMPv6 checksum");
            let expect = packet6(&[], proto, (CIP, 4000), (VIP, 53), b"data");
            assert_eq!(&p[48..48 + quote], &expect[..quote], "{proto} {quote}");
        }
        // To the real server: the client's error about VIP:53 -> CIP:4000 must quote
        // RIP:5353 -> CIP:4000; with an extension header in the quote.
        let ext = vec![(PROTO_DEST_OPTS, opts(0))];
        let orig = packet6(&ext, PROTO_UDP, (VIP, 53), (CIP, 4000), b"answer");
        let mut p = error_about(CIP, VIP, TYPE_DEST_UNREACH, 4, &orig, 200);
        let ip = Ipv6Hdr::parse(&p).unwrap();
        let e = parse_error(ip.payload(&p).unwrap()).unwrap();
        let nat = ErrorNat {
            outer: Side::Dst,
            outer_addr: RIP,
            inner: Side::Src,
            inner_addr: RIP,
            inner_port: 5353,
        };
        let pristine = p.clone();
        nat_error(&mut p, &ip, &e, &nat).unwrap();
        assert_eq!(Ipv6Hdr::parse(&p).unwrap().dst, RIP);
        assert!(msg_ok(&p));
        let expect = packet6(&ext, PROTO_UDP, (RIP, 5353), (CIP, 4000), b"answer");
        assert_eq!(&p[48..], &expect[..]);
        // Short buffers: nothing written.
        for n in 0..pristine.len() {
            let mut q = pristine[..n].to_vec();
            assert_eq!(nat_error(&mut q, &ip, &e, &nat), None);
            assert_eq!(q, pristine[..n]);
        }
        // A quoted UDP checksum of 0 stays 0.
        let mut orig = orig;
        orig[54..56].copy_from_slice(&[0, 0]);
        let mut p = error_about(CIP, VIP, TYPE_DEST_UNREACH, 4, &orig, 200);
        nat_error(&mut p, &ip, &e, &nat).unwrap();
        assert_eq!(&p[48 + 54..48 + 56], &[0, 0]);
        assert!(msg_ok(&p));
    }

    proptest! {
        /// Any addresses and ports, either way, with an extension header in the quote or not:
        /// the quoted TCP/UDP checksum and the ICMPv6 checksum (over the new pseudo-header)
        /// the rewrite leaves are what a recompute from scratch of the expected packet gives.
        #[test]
        fn nat_error_checksums_match_a_recompute(
            tcp: bool, to_client: bool, ext: bool,
            addrs in any::<[u128; 3]>(), ports in any::<[u16; 3]>()
        ) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let [c, v, r] = addrs.map(Ipv6Addr::from);
            let [cp, vp, rp] = ports;
            let ext = if ext { vec![(PROTO_DEST_OPTS, opts(0))] } else { vec![] };
            let quoted = |src, dst| packet6(&ext, proto, src, dst, b"data");
            let ty = TYPE_DEST_UNREACH;
            let (mut p, nat, want) = if to_client {
                let nat = ErrorNat { outer: Side::Src, outer_addr: v, inner: Side::Dst, inner_addr: v, inner_port: vp };
                let orig = quoted((c, cp), (r, rp));
                let want = quoted((c, cp), (v, vp));
                (error_about(r, c, ty, 4, &orig, 200), nat, error_about(v, c, ty, 4, &want, 200))
            } else {
                let nat = ErrorNat { outer: Side::Dst, outer_addr: r, inner: Side::Src, inner_addr: r, inner_port: rp };
                let orig = quoted((v, vp), (c, cp));
                let want = quoted((r, rp), (c, cp));
                (error_about(c, v, ty, 4, &orig, 200), nat, error_about(c, r, ty, 4, &want, 200))
            };
            let mut want = want;
            ipv6::set_hop_limit(&mut want, 63).unwrap();
            let ip = Ipv6Hdr::parse(&p).unwrap();
            let e = parse_error(ip.payload(&p).unwrap()).unwrap();
            nat_error(&mut p, &ip, &e, &nat).unwrap();
            let l4_csum = 48 + e.hdr_len + if tcp { 16 } else { 6 };
            assert_same_but_sums(&p, &want, &[40 + OFF_CSUM, l4_csum]);
        }
    }

    #[test]
    fn may_answer_follows_rfc4443() {
        let udp = packet6(&[], PROTO_UDP, (CIP, 4000), (VIP, 53), b"x");
        let ip = Ipv6Hdr::parse(&udp).unwrap();
        assert!(may_answer(&udp, &ip));
        let echo = icmp6(&[], CIP, VIP, [TYPE_ECHO_REQUEST, 0, 0, 0, 0, 0, 0, 0], b"");
        assert!(may_answer(&echo, &Ipv6Hdr::parse(&echo).unwrap()));
        for t in [1u8, 2, 3, 4, 100, 127, TYPE_REDIRECT] {
            let err = icmp6(&[], CIP, VIP, [t, 0, 0, 0, 0, 0, 0, 0], b"");
            assert!(!may_answer(&err, &Ipv6Hdr::parse(&err).unwrap()), "{t}");
        }
        for src in ["::", "ff02::1", "fe80::1", "::1"] {
            let ip = Ipv6Hdr {
                src: src.parse().unwrap(),
                ..ip
            };
            assert!(!may_answer(&udp, &ip), "{src}");
        }
        let multi = Ipv6Hdr {
            dst: "ff0e::1".parse().unwrap(),
            ..ip
        };
        assert!(!may_answer(&udp, &multi));
        assert!(may_answer_with(&udp, &multi, TYPE_PACKET_TOO_BIG, 0));
        assert!(may_answer_with(&udp, &multi, TYPE_PARAM_PROBLEM, 2));
        assert!(!may_answer_with(&udp, &multi, TYPE_PARAM_PROBLEM, 1));
        let later = packet6(
            &[(PROTO_FRAGMENT, frag(8, false, 1))],
            PROTO_UDP,
            (CIP, 1),
            (VIP, 2),
            b"",
        );
        assert!(!may_answer(&later, &Ipv6Hdr::parse(&later).unwrap()));
    }

    #[test]
    fn build_error_quotes_up_to_the_minimum_mtu() {
        let orig = packet6(&[], PROTO_TCP, (CIP, 4000), (VIP, 80), b"");
        let mut frame = vec![0xaa; 14];
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
        frame.extend_from_slice(&orig);
        let len = frame.len();
        let ip = Ipv6Hdr::parse(&frame[14..]).unwrap();
        let spec = ErrorSpec {
            icmp_type: TYPE_PACKET_TOO_BIG,
            code: 0,
            rest: 1400,
            src: VIP,
            src_mac: [2, 0, 0, 0, 1, 1],
        };
        let mut tight = frame.clone();
        assert_eq!(build_error_in_place(&mut tight, len, &ip, &spec), None);
        assert_eq!(tight, frame, "nothing written");
        let mut buf = frame.clone();
        buf.resize(2048, 0);
        let n = build_error_in_place(&mut buf, len, &ip, &spec).unwrap();
        assert_eq!(n, 14 + 40 + 8 + 60);
        assert_eq!(
            &buf[..14],
            &[2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 1, 1, 0x86, 0xdd]
        );
        let out = Ipv6Hdr::parse(&buf[14..n]).unwrap();
        assert_eq!(
            (out.src, out.dst, out.proto, out.hop_limit, out.total_len),
            (VIP, CIP, PROTO_ICMPV6, DEFAULT_HOP_LIMIT, 108)
        );
        assert!(msg_ok(&buf[14..n]));
        assert_eq!(&buf[54..56], &[TYPE_PACKET_TOO_BIG, 0]);
        assert_eq!(&buf[58..62], &1400u32.to_be_bytes());
        assert_eq!(&buf[62..n], &orig[..]);
        // A long packet: quoted up to 1280 bytes in all.
        let big = packet6(&[], PROTO_UDP, (CIP, 1), (VIP, 2), &[7; 1452]);
        let mut buf = vec![0u8; 14];
        buf.extend(&big);
        let ip = Ipv6Hdr::parse(&buf[14..]).unwrap();
        let len = buf.len();
        buf.resize(2048, 0);
        let n = build_error_in_place(&mut buf, len, &ip, &spec).unwrap();
        assert_eq!(n, 14 + ipv6::MIN_MTU);
        assert!(msg_ok(&buf[14..n]));
        // A frame shorter than the packet it claims: refused.
        let mut short = frame.clone();
        assert_eq!(build_error_in_place(&mut short[..60], 60, &ip, &spec), None);
    }
}
