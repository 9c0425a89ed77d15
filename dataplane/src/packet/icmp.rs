//! ICMP (RFC 792): echo request -> echo reply in place; ICMP errors about NATed connections
//! (the embedded header rewritten as IPVS does); ICMP errors rvs originates (time exceeded,
//! fragmentation needed, port unreachable), built in place of the packet they are about.

use super::checksum;
use super::ipv4::{self, Ipv4Hdr, PROTO_TCP, PROTO_UDP};
use super::l4::{self, Side};
use super::{get16, get_ip, put, put16, ParseError};
use std::net::Ipv4Addr;

pub const HDR_LEN: usize = 8;
pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACH: u8 = 3;
pub const TYPE_SOURCE_QUENCH: u8 = 4;
pub const TYPE_REDIRECT: u8 = 5;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
pub const TYPE_PARAM_PROBLEM: u8 = 12;
/// Destination unreachable: port unreachable.
pub const CODE_PORT_UNREACH: u8 = 3;
/// Destination unreachable: fragmentation needed and DF set (RFC 792, RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;
const OFF_CSUM: usize = 2;

/// TTL of the packets rvs originates.
pub const DEFAULT_TTL: u8 = 64;

/// The largest ICMP error rvs builds, IP header included (RFC 1812 4.3.2.3: as much of the
/// original datagram as fits without exceeding 576 bytes).
pub const MAX_ERROR_LEN: usize = 576;

/// TOS of the ICMP errors rvs originates: precedence "internetwork control", as Linux sends.
const ERROR_TOS: u8 = 0xc0;

/// Type and code of an ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpHdr {
    pub icmp_type: u8,
    pub code: u8,
}

impl IcmpHdr {
    /// Parses the ICMP header at the start of `msg` (the IPv4 payload).
    pub fn parse(msg: &[u8]) -> Result<IcmpHdr, ParseError> {
        match msg.get(..HDR_LEN) {
            Some([t, c, ..]) => Ok(IcmpHdr {
                icmp_type: *t,
                code: *c,
            }),
            _ => Err(ParseError::Truncated),
        }
    }

    /// An ICMP error message (RFC 1812 4.3.2.7), which rvs never answers with an error of its
    /// own: destination unreachable, source quench, redirect, time exceeded, parameter problem,
    /// and, as Linux's `icmp_pointers` table has it, every type that is not a known query or
    /// reply (1, 2, 6, 7, 9, 10, and all above 18). Only echo (0, 8), timestamp (13, 14),
    /// information (15, 16) and address mask (17, 18) messages are not errors.
    pub fn is_error(self) -> bool {
        !matches!(
            self.icmp_type,
            TYPE_ECHO_REPLY | TYPE_ECHO_REQUEST | 13..=18
        )
    }

    /// An error that IPVS relates to a connection: destination unreachable, source quench,
    /// time exceeded (types 3, 4, 11).
    pub fn is_conn_error(self) -> bool {
        matches!(
            self.icmp_type,
            TYPE_DEST_UNREACH | TYPE_SOURCE_QUENCH | TYPE_TIME_EXCEEDED
        )
    }
}

/// Computes the checksum of the ICMP message `msg` from scratch.
pub fn compute_checksum(msg: &[u8]) -> Option<u16> {
    checksum::checksum_skipping(msg, OFF_CSUM)
}

/// The ICMP message `msg` (its checksum field included) verifies.
pub fn checksum_ok(msg: &[u8]) -> bool {
    msg.len() >= HDR_LEN && checksum::fold(checksum::sum(msg, 0)) == 0xffff
}

/// Turns the echo request IPv4 packet `p` (described by `ip`) into its echo reply in place:
/// addresses swapped, TTL reset to [`DEFAULT_TTL`], type 0, both checksums recomputed. Identifier,
/// sequence number and data are echoed unchanged. `None` if `p` is not an echo request.
pub fn echo_reply_in_place(p: &mut [u8], ip: &Ipv4Hdr) -> Option<()> {
    let msg = ip.payload(p)?;
    let hdr = IcmpHdr::parse(msg).ok()?;
    if hdr.icmp_type != TYPE_ECHO_REQUEST || hdr.code != 0 {
        return None;
    }
    let msg = ip.payload_mut(p)?;
    put(msg, 0, &[TYPE_ECHO_REPLY, 0])?;
    let c = compute_checksum(msg)?;
    put16(msg, OFF_CSUM, c)?;
    ipv4::swap_addrs(p)?;
    ipv4::set_ttl(p, DEFAULT_TTL)?;
    ipv4::fill_header_checksum(p, ip.hdr_len)
}

// ---------------------------------------------------------------------------------------------
// ICMP errors about connections

/// The packet quoted in an ICMP error: its IP header and the first 8 bytes of its TCP/UDP
/// header (RFC 792 guarantees at least that much). `A` is the address family (ICMPv6 errors:
/// `Ipv6Addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded<A = Ipv4Addr> {
    /// Offset of the TCP/UDP header in the quoted packet: the IPv4 header length (options
    /// included), or the IPv6 header and its extension headers.
    pub hdr_len: usize,
    pub proto: u8,
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
}

/// Offset of the quoted IPv4 header in an ICMP error message.
const EMB_OFF: usize = HDR_LEN;

/// The TCP/UDP packet quoted by the ICMP error `msg` (types 3, 4, 11): `None` for other types,
/// other protocols, a quote shorter than its IPv4 header plus 8 bytes, a quoted header that is
/// not IPv4 with IHL >= 5, or a quoted non-first fragment (no ports in it). The quoted header's
/// own checksum is not verified (a router may quote a header it found damaged).
pub fn parse_error(msg: &[u8]) -> Option<Embedded> {
    let h = IcmpHdr::parse(msg).ok()?;
    if !h.is_conn_error() {
        return None;
    }
    let emb = msg.get(EMB_OFF..)?;
    let vihl = *emb.first()?;
    let hdr_len = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || hdr_len < ipv4::MIN_HDR_LEN {
        return None;
    }
    let l4 = emb.get(hdr_len..hdr_len.checked_add(8)?)?;
    let frag = get16(emb, 6)?;
    if frag & ipv4::FRAG_OFFSET_MASK != 0 {
        return None;
    }
    let proto = *emb.get(9)?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    Some(Embedded {
        hdr_len,
        proto,
        src: get_ip(emb, ipv4::OFF_SRC)?,
        dst: get_ip(emb, ipv4::OFF_DST)?,
        sport: get16(l4, 0)?,
        dport: get16(l4, 2)?,
    })
}

/// How an ICMP error about a NATed connection is rewritten (as the Linux kernel's
/// `ip_vs_nat_icmp`): one outer address, and the matching address and port of the quoted
/// packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorNat<A = Ipv4Addr> {
    /// Which outer address changes: `Src` (error on its way to the client: becomes the VIP) or
    /// `Dst` (on its way to the real server: becomes the RIP).
    pub outer: Side,
    pub outer_addr: A,
    /// Which endpoint of the quoted packet changes.
    pub inner: Side,
    pub inner_addr: A,
    pub inner_port: u16,
}

/// What [`nat_error`] needs of the outer IP header of an ICMP error, for either family: one
/// rewrite for ICMP and ICMPv6 (`icmpv6` implements it for IPv6).
/// (The addresses' offsets and the fixed header's length, [`super::IpHdr`]'s, are those of
/// the outer header and of the quoted one.)
pub trait ErrorHeader: super::IpHdr {
    /// Offset of the ICMP message in the packet (after IPv4's options or IPv6's extension
    /// headers), or `None` when [`nat_error`] must not rewrite the packet: its TTL or hop limit
    /// is 0 (IPv6 also: it is not ICMPv6, or it is a fragment).
    fn error_msg_off(&self) -> Option<usize>;
    /// Writes `addr` at `off` of `p` and returns the checksum delta of the change.
    fn replace_addr(p: &mut [u8], off: usize, addr: Self::Addr) -> Option<u32>;
    /// Writes `addr` at `off` of the outer header `p` and decrements its TTL or hop limit
    /// (IPv4: the header checksum adjusted).
    fn rewrite_addr_dec_hops(p: &mut [u8], off: usize, addr: Self::Addr) -> Option<()>;
    /// Adjusts the quoted header `hdr`'s own checksum by `delta` (IPv4; IPv6 has none).
    fn adjust_quoted_header(hdr: &mut [u8], delta: u32) -> Option<()>;
    /// Recomputes the checksum of the ICMP message `p[msg_off..end]` (ICMPv6: over the
    /// pseudo-header of `p`'s addresses as they are now).
    fn fill_error_checksum(p: &mut [u8], msg_off: usize, end: usize) -> Option<()>;
}

impl ErrorHeader for Ipv4Hdr {
    fn error_msg_off(&self) -> Option<usize> {
        (self.ttl != 0).then_some(self.hdr_len)
    }
    fn replace_addr(p: &mut [u8], off: usize, addr: Ipv4Addr) -> Option<u32> {
        ipv4::replace_addr(p, off, addr)
    }
    fn rewrite_addr_dec_hops(p: &mut [u8], off: usize, addr: Ipv4Addr) -> Option<()> {
        ipv4::rewrite_addr_dec_ttl(p, off, addr)
    }
    fn adjust_quoted_header(hdr: &mut [u8], delta: u32) -> Option<()> {
        ipv4::adjust_header_checksum(hdr, delta)
    }
    fn fill_error_checksum(p: &mut [u8], msg_off: usize, end: usize) -> Option<()> {
        let msg = p.get_mut(msg_off..end)?;
        let c = compute_checksum(msg)?;
        put16(msg, OFF_CSUM, c)
    }
}

/// Rewrites the ICMP or ICMPv6 error packet `p` (described by `ip`, quoting `e`) as `nat`
/// says, and decrements its TTL or hop limit. The outer IPv4 checksum and the quoted IPv4
/// checksum are updated incrementally; the quoted TCP/UDP checksum is updated incrementally
/// when the quote holds it (a quoted UDP checksum of 0 stays 0); the ICMP checksum is
/// recomputed over the whole message (ICMPv6: and the new pseudo-header). `None` (and nothing
/// written) if the packet is too short or its TTL or hop limit is 0, and for IPv6 if it is not
/// ICMPv6 or is a fragment.
pub fn nat_error<H: ErrorHeader>(
    p: &mut [u8],
    ip: &H,
    e: &Embedded<H::Addr>,
    nat: &ErrorNat<H::Addr>,
) -> Option<()> {
    // Every offset relative to the IP packet, checked before anything is written.
    let msg_off = ip.error_msg_off()?;
    let emb = msg_off.checked_add(EMB_OFF)?;
    let l4 = emb.checked_add(e.hdr_len)?;
    let (inner_addr_off, inner_port_off) = match nat.inner {
        Side::Src => (emb + H::OFF_SRC, 0),
        Side::Dst => (emb + H::OFF_DST, 2),
    };
    let end = ip.packet_len();
    if p.len() < end || l4 + 8 > end || emb + H::MIN_HDR_LEN > end {
        return None;
    }
    let outer_off = match nat.outer {
        Side::Src => H::OFF_SRC,
        Side::Dst => H::OFF_DST,
    };

    H::rewrite_addr_dec_hops(p, outer_off, nat.outer_addr)?;

    // Quoted header: address (and IPv4's header checksum), port, L4 checksum if quoted.
    let addr_delta = H::replace_addr(p, inner_addr_off, nat.inner_addr)?;
    H::adjust_quoted_header(p.get_mut(emb..)?, addr_delta)?;
    let quoted_l4 = p.get_mut(l4..end)?;
    let (proto, port) = (e.proto, nat.inner_port);
    if proto == PROTO_TCP {
        match quoted_l4.first_chunk_mut::<{ l4::TCP_CSUM + 2 }>() {
            Some(tcp) => l4::rewrite_port(tcp, proto, inner_port_off, port, addr_delta)?,
            None => put16(quoted_l4, inner_port_off, port)?,
        }
    } else {
        let udp = quoted_l4.first_chunk_mut::<{ l4::UDP_CSUM + 2 }>()?;
        l4::rewrite_port(udp, proto, inner_port_off, port, addr_delta)?;
    }

    H::fill_error_checksum(p, msg_off, end)
}

// ---------------------------------------------------------------------------------------------
// ICMP errors rvs originates

/// An ICMP error to build in place of the packet it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorSpec<A = Ipv4Addr> {
    pub icmp_type: u8,
    pub code: u8,
    /// The second word of the ICMP header: 0, or the next-hop MTU (in its low 16 bits) for
    /// fragmentation needed (RFC 1191; ICMPv6 packet too big: the whole word, RFC 4443 3.2).
    pub rest: u32,
    /// Source address of the error.
    pub src: A,
    pub src_mac: [u8; 6],
}

/// May rvs send an ICMP error about the IPv4 packet `p` (described by `ip`)? Not about a
/// non-first fragment, nor about an ICMP error message (RFC 1812 4.3.2.7). The caller checks
/// the addresses (no broadcast, multicast, loopback or zero source or destination).
pub fn may_answer(p: &[u8], ip: &Ipv4Hdr) -> bool {
    if ip.frag_offset() != 0 {
        return false;
    }
    if ip.proto != ipv4::PROTO_ICMP {
        return true;
    }
    match ip.payload(p).and_then(|m| IcmpHdr::parse(m).ok()) {
        Some(h) => !h.is_error(),
        None => false,
    }
}

/// Turns the Ethernet frame `buf[..len]` (an IPv4 packet described by `ip` after a 14-byte
/// Ethernet header) into the ICMP error `spec` about it, sent back to the frame's source MAC.
/// `buf` may extend past `len` (room to grow). The error quotes as much of the packet as fits in
/// [`MAX_ERROR_LEN`] and in `buf`, and at least its IP header and 8 more bytes (or the whole
/// packet, if shorter). Returns the new frame length, or `None` (nothing written) when `buf` has
/// no room for that minimum or the frame is not as `ip` describes it.
pub fn build_error_in_place(
    buf: &mut [u8],
    len: usize,
    ip: &Ipv4Hdr,
    spec: &ErrorSpec,
) -> Option<usize> {
    const ETH: usize = super::eth::HDR_LEN;
    const OUT: usize = ETH + ipv4::MIN_HDR_LEN + HDR_LEN;
    if len > buf.len() || ETH + ip.total_len > len {
        return None;
    }
    let orig_src_mac: [u8; 6] = super::array(buf, 6)?;
    let min_quote = ip.total_len.min(ip.hdr_len + 8);
    let quote = ip
        .total_len
        .min(MAX_ERROR_LEN - ipv4::MIN_HDR_LEN - HDR_LEN)
        .min(buf.len().checked_sub(OUT)?);
    if quote < min_quote {
        return None;
    }
    buf.copy_within(ETH..ETH + quote, OUT);
    let total = ipv4::MIN_HDR_LEN + HDR_LEN + quote;
    let pkt = buf.get_mut(ETH..ETH + total)?;
    ipv4::write_header_with(
        pkt,
        &ipv4::HeaderFields {
            tos: ERROR_TOS,
            total_len: u16::try_from(total).ok()?,
            id: 0,
            frag: 0,
            ttl: DEFAULT_TTL,
            proto: ipv4::PROTO_ICMP,
            src: spec.src,
            dst: ip.src,
        },
    )?;
    let msg = pkt.get_mut(ipv4::MIN_HDR_LEN..)?;
    put(msg, 0, &[spec.icmp_type, spec.code, 0, 0])?;
    put(msg, 4, &spec.rest.to_be_bytes())?;
    let c = compute_checksum(msg)?;
    put16(msg, OFF_CSUM, c)?;
    super::eth::EthHdr {
        dst: orig_src_mac,
        src: spec.src_mac,
        ethertype: super::eth::ETHERTYPE_IPV4,
    }
    .write(buf)?;
    Some(ETH + total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::checksum::tests::assert_same_but_sums;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    pub(crate) fn echo_request(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        id: u16,
        seq: u16,
        data: &[u8],
    ) -> Vec<u8> {
        let total = 20 + 8 + data.len();
        let mut p = vec![0u8; total];
        ipv4::write_header(&mut p, total as u16, 64, ipv4::PROTO_ICMP, src, dst).unwrap();
        p[20] = TYPE_ECHO_REQUEST;
        p[24..26].copy_from_slice(&id.to_be_bytes());
        p[26..28].copy_from_slice(&seq.to_be_bytes());
        p[28..].copy_from_slice(data);
        let c = compute_checksum(&p[20..]).unwrap();
        p[22..24].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn echo_reply_swaps_and_recomputes() {
        let a = Ipv4Addr::new(198, 51, 100, 10);
        let b = Ipv4Addr::new(198, 51, 100, 1);
        let mut p = echo_request(a, b, 0x1234, 7, b"abcdefgh");
        let ip = Ipv4Hdr::parse(&p).unwrap();
        echo_reply_in_place(&mut p, &ip).unwrap();
        let r = Ipv4Hdr::parse(&p).unwrap();
        assert_eq!((r.src, r.dst, r.ttl), (b, a, DEFAULT_TTL));
        assert_eq!(p[20], TYPE_ECHO_REPLY);
        assert_eq!(&p[24..28], &[0x12, 0x34, 0, 7]);
        assert_eq!(&p[28..], b"abcdefgh");
        // An independent check: the whole message sums to 0xffff.
        assert_eq!(checksum::fold(checksum::sum(&p[20..], 0)), 0xffff);
    }

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// A UDP or TCP packet (no Ethernet) with correct checksums.
    fn l4_packet(proto: u8, src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
        let l4_len = if proto == PROTO_TCP { 20 } else { 12 };
        let total = 20 + l4_len;
        let mut p = vec![0u8; total];
        ipv4::write_header(&mut p, total as u16, 64, proto, src, dst).unwrap();
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        if proto == PROTO_TCP {
            p[32] = 5 << 4;
            p[33] = 0x02;
        } else {
            p[24..26].copy_from_slice(&(l4_len as u16).to_be_bytes());
            p[28..32].copy_from_slice(b"data");
        }
        super::super::l4::fill_checksum(proto, src, dst, &mut p[20..]).unwrap();
        p
    }

    /// An ICMP error from `from` to `to` quoting the first `quote` bytes of `orig`.
    fn error_about(
        from: Ipv4Addr,
        to: Ipv4Addr,
        ty: u8,
        code: u8,
        orig: &[u8],
        quote: usize,
    ) -> Vec<u8> {
        let q = &orig[..quote.min(orig.len())];
        let total = 20 + 8 + q.len();
        let mut p = vec![0u8; total];
        ipv4::write_header(&mut p, total as u16, 64, ipv4::PROTO_ICMP, from, to).unwrap();
        p[20] = ty;
        p[21] = code;
        p[28..].copy_from_slice(q);
        let c = compute_checksum(&p[20..]).unwrap();
        p[22..24].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn sum_ok(b: &[u8]) -> bool {
        checksum::fold(checksum::sum(b, 0)) == 0xffff
    }

    #[test]
    fn parse_error_finds_the_quoted_ports() {
        let orig = l4_packet(PROTO_UDP, CIP, 4000, RIP, 53);
        let p = error_about(RIP, CIP, TYPE_DEST_UNREACH, 3, &orig, 28);
        let ip = Ipv4Hdr::parse(&p).unwrap();
        let e = parse_error(ip.payload(&p).unwrap()).unwrap();
        assert_eq!(
            e,
            Embedded {
                hdr_len: 20,
                proto: PROTO_UDP,
                src: CIP,
                dst: RIP,
                sport: 4000,
                dport: 53
            }
        );
        // Too short a quote, other types, other protocols, later fragments: nothing.
        let short = error_about(RIP, CIP, TYPE_DEST_UNREACH, 3, &orig, 27);
        assert_eq!(parse_error(&short[20..]), None);
        let echo = error_about(RIP, CIP, TYPE_ECHO_REQUEST, 0, &orig, 28);
        assert_eq!(parse_error(&echo[20..]), None);
        let param = error_about(RIP, CIP, TYPE_PARAM_PROBLEM, 0, &orig, 28);
        assert_eq!(parse_error(&param[20..]), None);
        let mut other = orig.clone();
        other[9] = 47;
        let gre = error_about(RIP, CIP, TYPE_TIME_EXCEEDED, 0, &other, 28);
        assert_eq!(parse_error(&gre[20..]), None);
        let mut later = orig.clone();
        later[6] = 0;
        later[7] = 1;
        let frag = error_about(RIP, CIP, TYPE_TIME_EXCEEDED, 0, &later, 28);
        assert_eq!(parse_error(&frag[20..]), None);
        let mut v6 = orig.clone();
        v6[0] = 0x65;
        let bad = error_about(RIP, CIP, TYPE_TIME_EXCEEDED, 0, &v6, 28);
        assert_eq!(parse_error(&bad[20..]), None);
        for n in 0..36 {
            assert_eq!(parse_error(&p[20..20 + n]), None, "len {n}");
        }
    }

    #[test]
    fn nat_error_to_client_rewrites_outer_and_quoted_headers() {
        // The real server's port unreachable about CIP:4000 -> RIP:5353 (what rvs sent it),
        // on its way to the client: must look like it is about CIP:4000 -> VIP:53.
        for (proto, quote) in [(PROTO_UDP, 28), (PROTO_TCP, 28), (PROTO_TCP, 40)] {
            let orig = l4_packet(proto, CIP, 4000, RIP, 5353);
            let mut p = error_about(RIP, CIP, TYPE_DEST_UNREACH, 3, &orig, quote);
            let ip = Ipv4Hdr::parse(&p).unwrap();
            let e = parse_error(ip.payload(&p).unwrap()).unwrap();
            let nat = ErrorNat {
                outer: Side::Src,
                outer_addr: VIP,
                inner: Side::Dst,
                inner_addr: VIP,
                inner_port: 53,
            };
            nat_error(&mut p, &ip, &e, &nat).unwrap();
            let out = Ipv4Hdr::parse(&p).expect("outer checksum verifies");
            assert_eq!((out.src, out.dst, out.ttl), (VIP, CIP, 63));
            assert!(sum_ok(&p[20..]), "ICMP checksum verifies");
            assert!(sum_ok(&p[28..48]), "quoted IP checksum verifies");
            let expect = l4_packet(proto, CIP, 4000, VIP, 53);
            assert_eq!(
                &p[28..28 + quote],
                &expect[..quote],
                "{proto} quote {quote}"
            );
        }
    }

    #[test]
    fn nat_error_to_real_server_and_udp_zero_checksum() {
        // A client's port unreachable about VIP:53 -> CIP:4000 (a reply rvs sent), on its way
        // to the real server: must quote RIP:5353 -> CIP:4000.
        let mut orig = l4_packet(PROTO_UDP, VIP, 53, CIP, 4000);
        let mut p = error_about(CIP, VIP, TYPE_DEST_UNREACH, 3, &orig, 48);
        let ip = Ipv4Hdr::parse(&p).unwrap();
        let e = parse_error(ip.payload(&p).unwrap()).unwrap();
        let nat = ErrorNat {
            outer: Side::Dst,
            outer_addr: RIP,
            inner: Side::Src,
            inner_addr: RIP,
            inner_port: 5353,
        };
        nat_error(&mut p, &ip, &e, &nat).unwrap();
        let out = Ipv4Hdr::parse(&p).unwrap();
        assert_eq!((out.src, out.dst), (CIP, RIP));
        assert!(sum_ok(&p[20..]));
        let expect = l4_packet(PROTO_UDP, RIP, 5353, CIP, 4000);
        assert_eq!(&p[28..], &expect[..]);
        // A quoted UDP checksum of 0 stays 0.
        orig[26] = 0;
        orig[27] = 0;
        let mut p = error_about(CIP, VIP, TYPE_DEST_UNREACH, 3, &orig, 48);
        let ip = Ipv4Hdr::parse(&p).unwrap();
        let e = parse_error(ip.payload(&p).unwrap()).unwrap();
        nat_error(&mut p, &ip, &e, &nat).unwrap();
        assert_eq!(&p[54..56], &[0, 0]);
        assert!(sum_ok(&p[20..]));
        // Short buffers: nothing written.
        let p = error_about(CIP, VIP, TYPE_DEST_UNREACH, 3, &orig, 48);
        for n in 0..p.len() {
            let mut q = p[..n].to_vec();
            assert_eq!(nat_error(&mut q, &ip, &e, &nat), None);
            assert_eq!(q, p[..n]);
        }
    }

    proptest! {
        /// Any addresses and ports, either way: every checksum the rewrite leaves (outer IPv4
        /// header, quoted IPv4 header, quoted TCP/UDP, ICMP) is what a recompute from scratch
        /// of the expected packet gives.
        #[test]
        fn nat_error_checksums_match_a_recompute(
            tcp: bool, to_client: bool, addrs in any::<[u32; 3]>(), ports in any::<[u16; 3]>()
        ) {
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            let [c, v, r] = addrs.map(Ipv4Addr::from);
            let [cp, vp, rp] = ports;
            let quote = if tcp { 40 } else { 32 };
            let (mut p, nat, want) = if to_client {
                let orig = l4_packet(proto, c, cp, r, rp);
                let nat = ErrorNat { outer: Side::Src, outer_addr: v, inner: Side::Dst, inner_addr: v, inner_port: vp };
                let want = l4_packet(proto, c, cp, v, vp);
                (error_about(r, c, 3, 3, &orig, quote), nat, error_about(v, c, 3, 3, &want, quote))
            } else {
                let orig = l4_packet(proto, v, vp, c, cp);
                let nat = ErrorNat { outer: Side::Dst, outer_addr: r, inner: Side::Src, inner_addr: r, inner_port: rp };
                let want = l4_packet(proto, r, rp, c, cp);
                (error_about(c, v, 3, 3, &orig, quote), nat, error_about(c, r, 3, 3, &want, quote))
            };
            let mut want = want;
            ipv4::set_ttl(&mut want, 63).unwrap();
            ipv4::fill_header_checksum(&mut want, 20).unwrap();
            let ip = Ipv4Hdr::parse(&p).unwrap();
            let e = parse_error(ip.payload(&p).unwrap()).unwrap();
            nat_error(&mut p, &ip, &e, &nat).unwrap();
            let l4_csum = 48 + if tcp { 16 } else { 6 };
            assert_same_but_sums(&p, &want, &[10, 22, 38, l4_csum]);
        }
    }

    #[test]
    fn build_error_quotes_the_packet_and_checks_room() {
        let orig = l4_packet(PROTO_TCP, CIP, 4000, VIP, 80);
        let mut frame = vec![0xaa; 14];
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x10]);
        frame.extend_from_slice(&orig);
        let len = frame.len();
        let ip = Ipv4Hdr::parse(&frame[14..]).unwrap();
        let spec = ErrorSpec {
            icmp_type: TYPE_DEST_UNREACH,
            code: CODE_FRAG_NEEDED,
            rest: 1400,
            src: VIP,
            src_mac: [2, 0, 0, 0, 1, 1],
        };
        // No room past the frame: a 40-byte packet needs 28 more bytes.
        let mut tight = frame.clone();
        assert_eq!(build_error_in_place(&mut tight, len, &ip, &spec), None);
        assert_eq!(tight, frame, "nothing written");
        let mut buf = frame.clone();
        buf.resize(2048, 0);
        let n = build_error_in_place(&mut buf, len, &ip, &spec).unwrap();
        assert_eq!(n, 14 + 20 + 8 + 40);
        assert_eq!(&buf[0..6], &[2, 0, 0, 0, 0, 0x10]);
        assert_eq!(&buf[6..12], &[2, 0, 0, 0, 1, 1]);
        let out = Ipv4Hdr::parse(&buf[14..n]).unwrap();
        assert_eq!(
            (out.src, out.dst, out.proto, out.ttl, out.total_len),
            (VIP, CIP, ipv4::PROTO_ICMP, DEFAULT_TTL, 68)
        );
        assert!(sum_ok(&buf[34..n]));
        assert_eq!(&buf[34..36], &[TYPE_DEST_UNREACH, CODE_FRAG_NEEDED]);
        assert_eq!(&buf[38..42], &1400u32.to_be_bytes());
        assert_eq!(&buf[42..n], &orig[..]);
        // A long packet is quoted up to 576 bytes in all.
        let mut big = vec![0u8; 14 + 1500];
        big[14..14 + 20].copy_from_slice(&orig[..20]);
        big[16..18].copy_from_slice(&1500u16.to_be_bytes());
        ipv4::fill_header_checksum(&mut big[14..], 20).unwrap();
        let ip = Ipv4Hdr::parse(&big[14..]).unwrap();
        big.resize(2048, 0);
        let n = build_error_in_place(&mut big, 14 + 1500, &ip, &spec).unwrap();
        assert_eq!(n, 14 + MAX_ERROR_LEN);
        // A frame shorter than the packet it claims: refused.
        let mut short = frame.clone();
        assert_eq!(build_error_in_place(&mut short[..30], 30, &ip, &spec), None);
    }

    #[test]
    fn never_answer_errors_or_later_fragments() {
        let orig = l4_packet(PROTO_UDP, CIP, 4000, RIP, 53);
        let ip = Ipv4Hdr::parse(&orig).unwrap();
        assert!(may_answer(&orig, &ip));
        let err = error_about(RIP, CIP, TYPE_DEST_UNREACH, 3, &orig, 28);
        assert!(!may_answer(&err, &Ipv4Hdr::parse(&err).unwrap()));
        let echo = echo_request(CIP, VIP, 1, 1, b"x");
        assert!(may_answer(&echo, &Ipv4Hdr::parse(&echo).unwrap()));
        // Unknown and unassigned types count as errors, as in Linux (found by fuzzing: rvs
        // answered a type 1 message with time exceeded).
        for t in [1u8, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 19, 42, 255] {
            let mut m = echo.clone();
            m[20] = t;
            assert!(!may_answer(&m, &Ipv4Hdr::parse(&m).unwrap()), "type {t}");
        }
        for t in [0u8, 8, 13, 14, 15, 16, 17, 18] {
            let mut m = echo.clone();
            m[20] = t;
            assert!(may_answer(&m, &Ipv4Hdr::parse(&m).unwrap()), "type {t}");
        }
        let mut later = orig.clone();
        later[6] = 0;
        later[7] = 4;
        ipv4::fill_header_checksum(&mut later, 20).unwrap();
        assert!(!may_answer(&later, &Ipv4Hdr::parse_any(&later).unwrap()));
    }

    #[test]
    fn only_echo_requests_are_answered() {
        let mut p = echo_request(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 1, b"");
        p[20] = TYPE_ECHO_REPLY;
        let ip = Ipv4Hdr::parse(&p).unwrap();
        let before = p.clone();
        assert_eq!(echo_reply_in_place(&mut p, &ip), None);
        assert_eq!(p, before);
        for n in 0..8 {
            assert_eq!(
                IcmpHdr::parse(&before[20..20 + n]),
                Err(ParseError::Truncated)
            );
        }
    }
}
