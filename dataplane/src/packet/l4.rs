//! TCP and UDP: ports, TCP flags, checksums, and the NAT rewrite of one endpoint.

use super::checksum;
use super::ipv4::{self, Ipv4Hdr, PROTO_TCP, PROTO_UDP};
use super::ipv6::{self, Ipv6Hdr};
use super::{get16, get_ip6, put16, put_ip6, ParseError};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const TCP_MIN_HDR: usize = 20;
pub const UDP_HDR: usize = 8;
pub(super) const TCP_CSUM: usize = 16;
pub(super) const UDP_CSUM: usize = 6;

/// TCP flag bits (the low byte of header word 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// The ports (and TCP flags) of a validated TCP or UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Hdr {
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// Zero for UDP.
    pub flags: TcpFlags,
}

impl L4Hdr {
    /// Parses the TCP or UDP header at the start of `seg` (the IPv4 payload, padding excluded).
    /// TCP: data offset >= 5 and within the segment. UDP: length field >= 8 and within the
    /// segment.
    pub fn parse(proto: u8, seg: &[u8]) -> Result<L4Hdr, ParseError> {
        L4Hdr::parse_inner(proto, seg, true)
    }

    /// As [`L4Hdr::parse`], for the first fragment of a fragmented datagram, which holds only the
    /// start of the L4 data: UDP's length field must be at least 8 but may exceed the segment;
    /// TCP's whole header (options included) must still be in this fragment (RFC 1858).
    pub fn parse_first_fragment(proto: u8, seg: &[u8]) -> Result<L4Hdr, ParseError> {
        L4Hdr::parse_inner(proto, seg, false)
    }

    /// The L4 header of the packet `ip` describes, whose payload is `seg`: whole datagrams with
    /// [`L4Hdr::parse`], first fragments with [`L4Hdr::parse_first_fragment`]. A non-first
    /// fragment has no L4 header: `Err(ParseError::Fragment)`.
    pub fn parse_ip(ip: &Ipv4Hdr, seg: &[u8]) -> Result<L4Hdr, ParseError> {
        if !ip.is_fragment() {
            L4Hdr::parse(ip.proto, seg)
        } else if ip.frag_offset() == 0 {
            L4Hdr::parse_first_fragment(ip.proto, seg)
        } else {
            Err(ParseError::Fragment)
        }
    }

    /// The TCP or UDP header of the IPv6 packet `ip` describes, whose upper-layer bytes are
    /// `seg` ([`Ipv6Hdr::payload`]): as [`L4Hdr::parse_ip`], and a UDP checksum of 0 is refused
    /// (`BadChecksum`): it is mandatory in IPv6 (RFC 8200 8.1).
    pub fn parse_ipv6(ip: &Ipv6Hdr, seg: &[u8]) -> Result<L4Hdr, ParseError> {
        let h = match ip.frag {
            None => L4Hdr::parse(ip.proto, seg)?,
            Some(f) if f.offset == 0 => L4Hdr::parse_first_fragment(ip.proto, seg)?,
            Some(_) => return Err(ParseError::Fragment),
        };
        if h.proto == PROTO_UDP && get16(seg, UDP_CSUM) == Some(0) {
            return Err(ParseError::BadChecksum);
        }
        Ok(h)
    }

    fn parse_inner(proto: u8, seg: &[u8], whole: bool) -> Result<L4Hdr, ParseError> {
        let sport = get16(seg, 0).ok_or(ParseError::Truncated)?;
        let dport = get16(seg, 2).ok_or(ParseError::Truncated)?;
        let flags = match proto {
            PROTO_TCP => {
                let doff = usize::from(*seg.get(12).ok_or(ParseError::Truncated)? >> 4) * 4;
                if doff < TCP_MIN_HDR || doff > seg.len() {
                    return Err(ParseError::BadHeaderLen);
                }
                TcpFlags(*seg.get(13).ok_or(ParseError::Truncated)?)
            }
            PROTO_UDP => {
                let len = usize::from(get16(seg, 4).ok_or(ParseError::Truncated)?);
                if len < UDP_HDR || (whole && len > seg.len()) {
                    return Err(ParseError::BadTotalLen);
                }
                if seg.len() < UDP_HDR {
                    return Err(ParseError::Truncated);
                }
                TcpFlags(0)
            }
            _ => return Err(ParseError::Unsupported),
        };
        Ok(L4Hdr {
            proto,
            sport,
            dport,
            flags,
        })
    }
}

fn csum_offset(proto: u8) -> Option<usize> {
    match proto {
        PROTO_TCP => Some(TCP_CSUM),
        PROTO_UDP => Some(UDP_CSUM),
        _ => None,
    }
}

/// Computes the TCP/UDP checksum of `seg` from scratch (the checksum field counts as zero).
/// For UDP a computed 0 is returned as 0xffff.
pub fn compute_checksum(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, seg: &[u8]) -> Option<u16> {
    let off = csum_offset(proto)?;
    let len = u16::try_from(seg.len()).ok()?;
    let before = seg.get(..off)?;
    let after = seg.get(off + 2..)?;
    let acc = checksum::pseudo_header_sum(src, dst, proto, len);
    let c = !checksum::fold(checksum::sum(after, checksum::sum(before, acc)));
    Some(if proto == PROTO_UDP {
        checksum::udp_nonzero(c)
    } else {
        c
    })
}

/// Reads the checksum field of `seg`.
pub fn checksum_field(proto: u8, seg: &[u8]) -> Option<u16> {
    get16(seg, csum_offset(proto)?)
}

/// Recomputes and stores the checksum of `seg`.
pub fn fill_checksum(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, seg: &mut [u8]) -> Option<()> {
    let c = compute_checksum(proto, src, dst, seg)?;
    put16(seg, csum_offset(proto)?, c)
}

/// Computes the TCP, UDP or ICMPv6 checksum of `seg` (the upper-layer packet) carried over IPv6
/// from `src` to `dst`, from scratch, over the pseudo-header (RFC 8200 8.1). For UDP a computed
/// 0 is returned as 0xffff.
pub fn compute_checksum_ipv6(proto: u8, src: Ipv6Addr, dst: Ipv6Addr, seg: &[u8]) -> Option<u16> {
    let off = csum_offset6(proto)?;
    let len = u32::try_from(seg.len()).ok()?;
    let before = seg.get(..off)?;
    let after = seg.get(off + 2..)?;
    let acc = checksum::pseudo_header_sum6(src, dst, proto, len);
    let c = !checksum::fold(checksum::sum(after, checksum::sum(before, acc)));
    Some(if proto == PROTO_UDP {
        checksum::udp_nonzero(c)
    } else {
        c
    })
}

/// Recomputes and stores the checksum of `seg` carried over IPv6 (TCP, UDP or ICMPv6).
pub fn fill_checksum_ipv6(proto: u8, src: Ipv6Addr, dst: Ipv6Addr, seg: &mut [u8]) -> Option<()> {
    let c = compute_checksum_ipv6(proto, src, dst, seg)?;
    put16(seg, csum_offset6(proto)?, c)
}

fn csum_offset6(proto: u8) -> Option<usize> {
    match proto {
        ipv6::PROTO_ICMPV6 => Some(2),
        _ => csum_offset(proto),
    }
}

/// Which endpoint of a packet a NAT rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Source address and port (SNAT: replies leave as VIP:vport).
    Src,
    /// Destination address and port (DNAT: client packets go to RIP:rport).
    Dst,
}

/// Rewrites one endpoint (address and port) of the TCP/UDP packet `p` described by `ip`, and
/// optionally decrements its TTL, updating the IP header checksum and the L4 checksum
/// incrementally (RFC 1624). A UDP checksum of 0 (none) stays 0; a computed 0 becomes 0xffff.
/// `None` if the packet is too short for the fields (nothing is written then).
#[inline]
pub fn rewrite_endpoint(
    p: &mut [u8],
    ip: &Ipv4Hdr,
    side: Side,
    addr: Ipv4Addr,
    port: u16,
    dec_ttl: bool,
) -> Option<()> {
    // Check every field is in range before writing anything: the header's fixed 20 bytes
    // (options, if any, follow them) and the L4 header up to its checksum, as arrays, so the
    // rewrite below indexes nothing at run time.
    if dec_ttl && ip.ttl == 0 {
        return None;
    }
    let (hdr, rest) = p.split_at_mut_checked(ip.hdr_len)?;
    let seg = rest.get_mut(..ip.total_len.checked_sub(ip.hdr_len)?)?;
    let hdr = hdr.first_chunk_mut::<{ ipv4::MIN_HDR_LEN }>()?;
    match ip.proto {
        PROTO_UDP => {
            let l4 = seg.first_chunk_mut::<{ UDP_CSUM + 2 }>()?;
            rewrite_l4(hdr, l4, ip, side, addr, port, dec_ttl)
        }
        PROTO_TCP => {
            let l4 = seg.first_chunk_mut::<{ TCP_CSUM + 2 }>()?;
            rewrite_l4(hdr, l4, ip, side, addr, port, dec_ttl)
        }
        _ => None,
    }
}

/// [`rewrite_endpoint`] on the IPv4 header's fixed part `hdr` and the first `N` bytes of the
/// TCP or UDP header (ports first, checksum in the last two): every offset is a constant
/// within an array, so the compiler drops the bounds checks of the field helpers.
#[inline]
fn rewrite_l4<const N: usize>(
    hdr: &mut [u8; ipv4::MIN_HDR_LEN],
    l4: &mut [u8; N],
    ip: &Ipv4Hdr,
    side: Side,
    addr: Ipv4Addr,
    port: u16,
    dec_ttl: bool,
) -> Option<()> {
    let (addr_at, port_at) = match side {
        Side::Src => (ipv4::OFF_SRC, 0),
        Side::Dst => (ipv4::OFF_DST, 2),
    };
    let addr_delta = ipv4::replace_addr(hdr, addr_at, addr)?;
    let mut ip_delta = addr_delta;
    if dec_ttl {
        let word = (u16::from(ip.ttl) << 8) | u16::from(ip.proto);
        ip_delta += checksum::delta16(word, word.checked_sub(0x100)?);
        ipv4::set_ttl(hdr, ip.ttl.checked_sub(1)?)?;
    }
    ipv4::adjust_header_checksum(hdr, ip_delta)?;
    rewrite_port(l4, ip.proto, port_at, port, addr_delta)
}

/// The transport half of a NAT rewrite, for both families: the port at `port_at` of the first
/// `N` bytes of a TCP or UDP header (checksum in the last two) replaced, the checksum adjusted
/// by the port change and `addr_delta` (the address change, which the pseudo-header carries).
/// A computed UDP checksum of 0 becomes 0xffff; a UDP checksum of 0 (none, IPv4 only) stays.
#[inline]
pub(super) fn rewrite_port<const N: usize>(
    l4: &mut [u8; N],
    proto: u8,
    port_at: usize,
    port: u16,
    addr_delta: u32,
) -> Option<()> {
    let csum_at = N.checked_sub(2)?;
    let old_port = get16(l4, port_at)?;
    put16(l4, port_at, port)?;
    let old_l4 = get16(l4, csum_at)?;
    let new_l4 = if proto == PROTO_UDP && old_l4 == 0 {
        0
    } else {
        let c = checksum::adjust(old_l4, addr_delta + checksum::delta16(old_port, port));
        if proto == PROTO_UDP {
            checksum::udp_nonzero(c)
        } else {
            c
        }
    };
    put16(l4, csum_at, new_l4)
}

/// [`rewrite_endpoint`] for IPv6: rewrites one endpoint (address and port) of the TCP/UDP packet
/// `p` (from its IPv6 header on) described by `ip`, and optionally decrements its hop limit,
/// updating the L4 checksum incrementally over the pseudo-header (IPv6 has no header checksum).
/// A computed UDP checksum of 0 becomes 0xffff (a received 0, refused by
/// [`L4Hdr::parse_ipv6`], stays 0). `None` (nothing written) if the packet is too short for
/// the fields, is a non-first fragment, is not TCP/UDP, or the hop limit is 0 with `dec_hop`.
pub fn rewrite_endpoint_ipv6(
    p: &mut [u8],
    ip: &Ipv6Hdr,
    side: Side,
    addr: Ipv6Addr,
    port: u16,
    dec_hop: bool,
) -> Option<()> {
    if (dec_hop && ip.hop_limit == 0) || ip.frag_offset() != 0 {
        return None;
    }
    // Every field in range before anything is written, as arrays (see `rewrite_endpoint`).
    let (hdr, rest) = p.split_at_mut_checked(ip.l4_off)?;
    let seg = rest.get_mut(..ip.total_len.checked_sub(ip.l4_off)?)?;
    let hdr = hdr.first_chunk_mut::<{ ipv6::HDR_LEN }>()?;
    match ip.proto {
        PROTO_UDP => {
            let l4 = seg.first_chunk_mut::<{ UDP_CSUM + 2 }>()?;
            rewrite_l4_ipv6(hdr, l4, ip.proto, side, addr, port, dec_hop)
        }
        PROTO_TCP => {
            let l4 = seg.first_chunk_mut::<{ TCP_CSUM + 2 }>()?;
            rewrite_l4_ipv6(hdr, l4, ip.proto, side, addr, port, dec_hop)
        }
        _ => None,
    }
}

/// [`rewrite_endpoint_ipv6`] on the fixed header `hdr` and the first `N` bytes of the TCP or
/// UDP header.
#[inline]
fn rewrite_l4_ipv6<const N: usize>(
    hdr: &mut [u8; ipv6::HDR_LEN],
    l4: &mut [u8; N],
    proto: u8,
    side: Side,
    addr: Ipv6Addr,
    port: u16,
    dec_hop: bool,
) -> Option<()> {
    let (addr_at, port_at) = match side {
        Side::Src => (ipv6::OFF_SRC, 0),
        Side::Dst => (ipv6::OFF_DST, 2),
    };
    let old_addr = get_ip6(hdr, addr_at)?;
    if dec_hop {
        ipv6::decrement_hop_limit(hdr)?;
    }
    put_ip6(hdr, addr_at, addr)?;
    rewrite_port(
        l4,
        proto,
        port_at,
        port,
        checksum::delta_ip6(old_addr, addr),
    )
}

/// What a TCP RST built in place needs of the IP header of the segment it answers, for
/// either family: one RST builder for both.
pub trait ReplyHeader: super::IpHdr {
    const ETHERTYPE: u16;
    /// Writes a header into `l3` for `upper_len` bytes of `proto` from `src` to `dst` with the
    /// default hop count (IPv4: DF set).
    fn write_header(
        l3: &mut [u8],
        upper_len: usize,
        proto: u8,
        src: Self::Addr,
        dst: Self::Addr,
    ) -> Option<()>;
    /// Recomputes the TCP/UDP checksum of `seg` over this family's pseudo-header.
    fn fill_checksum(proto: u8, src: Self::Addr, dst: Self::Addr, seg: &mut [u8]) -> Option<()>;
}

impl ReplyHeader for Ipv4Hdr {
    const ETHERTYPE: u16 = super::eth::ETHERTYPE_IPV4;
    fn write_header(
        l3: &mut [u8],
        upper_len: usize,
        proto: u8,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Option<()> {
        let total = u16::try_from(ipv4::MIN_HDR_LEN + upper_len).ok()?;
        ipv4::write_header(l3, total, super::icmp::DEFAULT_TTL, proto, src, dst)
    }
    fn fill_checksum(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, seg: &mut [u8]) -> Option<()> {
        fill_checksum(proto, src, dst, seg)
    }
}

impl ReplyHeader for Ipv6Hdr {
    const ETHERTYPE: u16 = super::eth::ETHERTYPE_IPV6;
    fn write_header(
        l3: &mut [u8],
        upper_len: usize,
        proto: u8,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Option<()> {
        let len = u16::try_from(upper_len).ok()?;
        ipv6::write_header(l3, len, proto, super::icmpv6::DEFAULT_HOP_LIMIT, src, dst)
    }
    fn fill_checksum(proto: u8, src: Ipv6Addr, dst: Ipv6Addr, seg: &mut [u8]) -> Option<()> {
        fill_checksum_ipv6(proto, src, dst, seg)
    }
}

/// Turns the Ethernet frame `buf[..len]`, a TCP segment described by `ip` (IPv4 or IPv6,
/// after a 14-byte Ethernet header, not a fragment), into the RST that answers it (RFC 793,
/// "Reset Generation"): from its destination to its source (addresses and ports swapped), sent
/// back to the frame's source MAC from `src_mac`. A segment with ACK gets `seq = its ack`,
/// flags RST; one without gets `seq = 0, ack = its seq + its length` (SYN and FIN count one
/// each), flags RST+ACK. No options, window 0; IPv4 with DF and TTL
/// [`super::icmp::DEFAULT_TTL`], IPv6 without extension headers and hop limit
/// [`super::icmpv6::DEFAULT_HOP_LIMIT`]; the checksum over the family's pseudo-header. The frame is padded to the Ethernet minimum when `buf` has room.
/// Returns the new frame length; `None` (nothing written) for a RST (never answered), a
/// fragment or a frame that is not as `ip` describes it.
pub fn build_rst_in_place<H: ReplyHeader>(
    buf: &mut [u8],
    len: usize,
    ip: &H,
    src_mac: [u8; 6],
) -> Option<usize> {
    const ETH: usize = super::eth::HDR_LEN;
    if ip.proto() != PROTO_TCP || ip.is_fragment() || len > buf.len() {
        return None;
    }
    let frame = buf.get(..len)?;
    let seg = ip.upper(frame.get(ETH..)?)?;
    let h = L4Hdr::parse(PROTO_TCP, seg).ok()?;
    if h.flags.rst() {
        return None;
    }
    let seq_in = u32::from_be_bytes(super::array(seg, 4)?);
    let ack_in = u32::from_be_bytes(super::array(seg, 8)?);
    let doff = usize::from(*seg.get(12)? >> 4) * 4;
    let data = seg.len().checked_sub(doff)?;
    let (seq, ack, flags) = if h.flags.ack() {
        (ack_in, 0, TcpFlags::RST)
    } else {
        let n = u32::try_from(data).ok()? + u32::from(h.flags.syn()) + u32::from(h.flags.fin());
        (0, seq_in.wrapping_add(n), TcpFlags::RST | TcpFlags::ACK)
    };
    let orig_src_mac: [u8; 6] = super::array(frame, 6)?;
    let total = ETH + H::MIN_HDR_LEN + TCP_MIN_HDR;
    let out_len = if buf.len() >= super::eth::MIN_FRAME {
        total.max(super::eth::MIN_FRAME)
    } else {
        total
    };
    let out = buf.get_mut(..out_len)?;
    out.get_mut(total..)?.fill(0);
    super::eth::EthHdr {
        dst: orig_src_mac,
        src: src_mac,
        ethertype: H::ETHERTYPE,
    }
    .write(out)?;
    let pkt = out.get_mut(ETH..total)?;
    H::write_header(pkt, TCP_MIN_HDR, PROTO_TCP, ip.dst(), ip.src())?;
    let tcp = pkt.get_mut(H::MIN_HDR_LEN..)?;
    tcp.fill(0);
    put16(tcp, 0, h.dport)?;
    put16(tcp, 2, h.sport)?;
    super::put(tcp, 4, &seq.to_be_bytes())?;
    super::put(tcp, 8, &ack.to_be_bytes())?;
    super::put(tcp, 12, &[(TCP_MIN_HDR as u8 / 4) << 4, flags])?;
    H::fill_checksum(PROTO_TCP, ip.dst(), ip.src(), tcp)?;
    Some(out_len)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// An IPv4 packet (no Ethernet) carrying TCP or UDP with a correct checksum.
    pub(crate) fn packet(
        proto: u8,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4_len = if proto == PROTO_TCP { 20 } else { 8 } + payload.len();
        let total = 20 + l4_len;
        let mut p = vec![0u8; total];
        ipv4::write_header(&mut p, total as u16, 64, proto, src, dst).unwrap();
        let seg = &mut p[20..];
        seg[0..2].copy_from_slice(&sport.to_be_bytes());
        seg[2..4].copy_from_slice(&dport.to_be_bytes());
        if proto == PROTO_TCP {
            seg[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
            seg[12] = 5 << 4;
            seg[13] = TcpFlags::SYN;
            seg[14..16].copy_from_slice(&64240u16.to_be_bytes());
            seg[20..].copy_from_slice(payload);
        } else {
            seg[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            seg[8..].copy_from_slice(payload);
        }
        fill_checksum(proto, src, dst, seg).unwrap();
        p
    }

    fn l4_ok(p: &[u8]) -> bool {
        let ip = Ipv4Hdr::parse(p).unwrap();
        let seg = ip.payload(p).unwrap();
        checksum_field(ip.proto, seg) == compute_checksum(ip.proto, ip.src, ip.dst, seg)
    }

    #[test]
    fn parses_tcp_and_udp() {
        let p = packet(PROTO_TCP, CIP, 40000, VIP, 80, b"hello");
        let ip = Ipv4Hdr::parse(&p).unwrap();
        let h = L4Hdr::parse(ip.proto, ip.payload(&p).unwrap()).unwrap();
        assert_eq!((h.sport, h.dport), (40000, 80));
        assert!(h.flags.syn() && !h.flags.ack() && !h.flags.rst() && !h.flags.fin());
        let p = packet(PROTO_UDP, CIP, 5353, VIP, 53, b"q");
        let ip = Ipv4Hdr::parse(&p).unwrap();
        let h = L4Hdr::parse(ip.proto, ip.payload(&p).unwrap()).unwrap();
        assert_eq!((h.sport, h.dport, h.flags), (5353, 53, TcpFlags(0)));
    }

    #[test]
    fn rejects_short_and_bad_headers() {
        let p = packet(PROTO_TCP, CIP, 1, VIP, 2, b"");
        let seg = &p[20..];
        for n in 0..20 {
            assert!(L4Hdr::parse(PROTO_TCP, &seg[..n]).is_err(), "tcp len {n}");
        }
        let mut bad = seg.to_vec();
        bad[12] = 4 << 4;
        assert_eq!(L4Hdr::parse(PROTO_TCP, &bad), Err(ParseError::BadHeaderLen));
        bad[12] = 6 << 4; // 24 bytes of header in a 20-byte segment
        assert_eq!(L4Hdr::parse(PROTO_TCP, &bad), Err(ParseError::BadHeaderLen));

        let p = packet(PROTO_UDP, CIP, 1, VIP, 2, b"abc");
        let seg = &p[20..];
        for n in 0..8 {
            assert!(L4Hdr::parse(PROTO_UDP, &seg[..n]).is_err(), "udp len {n}");
        }
        let mut bad = seg.to_vec();
        bad[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(L4Hdr::parse(PROTO_UDP, &bad), Err(ParseError::BadTotalLen));
        bad[4..6].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(L4Hdr::parse(PROTO_UDP, &bad), Err(ParseError::BadTotalLen));
        assert_eq!(L4Hdr::parse(1, seg), Err(ParseError::Unsupported));
    }

    #[test]
    fn known_udp_checksum() {
        // Independent reference: sum the pseudo header and segment by hand.
        let p = packet(
            PROTO_UDP,
            Ipv4Addr::new(10, 0, 0, 1),
            0x1234,
            Ipv4Addr::new(10, 0, 0, 2),
            0x5678,
            &[0xab, 0xcd],
        );
        // words: 0a00 0001 0a00 0002 0011 000a | 1234 5678 000a (csum) abcd
        let s: u32 =
            0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 0x0011 + 0x000a + 0x1234 + 0x5678 + 0x000a + 0xabcd;
        let s = (s & 0xffff) + (s >> 16);
        assert_eq!(checksum_field(PROTO_UDP, &p[20..]), Some(!(s as u16)));
    }

    #[test]
    fn dnat_and_snat_match_recompute() {
        for proto in [PROTO_TCP, PROTO_UDP] {
            let mut p = packet(proto, CIP, 40000, VIP, 80, b"GET / HTTP/1.0\r\n\r\n");
            let ip = Ipv4Hdr::parse(&p).unwrap();
            rewrite_endpoint(&mut p, &ip, Side::Dst, RIP, 8080, true).unwrap();
            let ip2 = Ipv4Hdr::parse(&p).expect("IP checksum still valid");
            assert_eq!((ip2.dst, ip2.ttl), (RIP, 63));
            assert_eq!(
                L4Hdr::parse(proto, ip2.payload(&p).unwrap()).unwrap().dport,
                8080
            );
            assert!(l4_ok(&p), "proto {proto}");

            let mut r = packet(proto, RIP, 8080, CIP, 40000, b"HTTP/1.0 200 OK\r\n");
            let ip = Ipv4Hdr::parse(&r).unwrap();
            rewrite_endpoint(&mut r, &ip, Side::Src, VIP, 80, false).unwrap();
            let ip2 = Ipv4Hdr::parse(&r).unwrap();
            assert_eq!((ip2.src, ip2.ttl), (VIP, 64));
            assert_eq!(
                L4Hdr::parse(proto, ip2.payload(&r).unwrap()).unwrap().sport,
                80
            );
            assert!(l4_ok(&r));
        }
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let mut p = packet(PROTO_UDP, CIP, 5000, VIP, 53, b"x");
        p[26..28].copy_from_slice(&[0, 0]);
        let ip = Ipv4Hdr::parse(&p).unwrap();
        rewrite_endpoint(&mut p, &ip, Side::Dst, RIP, 53, true).unwrap();
        assert_eq!(&p[26..28], &[0, 0]);
        assert_eq!(Ipv4Hdr::parse(&p).unwrap().dst, RIP);
    }

    #[test]
    fn udp_computed_zero_is_written_ffff() {
        // Search a payload word that makes the rewritten checksum come out as 0 (0xffff on the
        // wire); the incremental path must agree with the recompute, which maps 0 to 0xffff.
        let mut hit = false;
        for w in 0..=0xffffu16 {
            let mut p = packet(PROTO_UDP, CIP, 5000, VIP, 53, &w.to_be_bytes());
            let ip = Ipv4Hdr::parse(&p).unwrap();
            rewrite_endpoint(&mut p, &ip, Side::Dst, RIP, 5353, false).unwrap();
            let c = checksum_field(PROTO_UDP, &p[20..]).unwrap();
            assert_ne!(c, 0);
            assert!(l4_ok(&p));
            if c == 0xffff {
                hit = true;
                break;
            }
        }
        assert!(hit, "some payload gives a computed zero");
    }

    /// `packet` behind an Ethernet header from MAC ...:10 to ...:01, with `flags`, `seq` and
    /// `ack` set (checksum recomputed).
    fn tcp_frame(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = packet(PROTO_TCP, CIP, 40000, VIP, 80, payload);
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[33] = flags;
        fill_checksum(PROTO_TCP, CIP, VIP, &mut p[20..]).unwrap();
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x10, 8, 0];
        f.extend(p);
        f
    }

    /// (seq, ack, flags) of the RST built in place of `f`, after checking its headers.
    fn rst_of(mut f: Vec<u8>) -> (u32, u32, u8) {
        let len = f.len();
        let ip = Ipv4Hdr::parse(&f[14..]).unwrap();
        let n = build_rst_in_place(&mut f, len, &ip, [2, 0, 0, 0, 0, 1]).unwrap();
        assert_eq!(n, if len >= 60 { 60 } else { 54 });
        assert_eq!(
            &f[..12],
            &[2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 0, 1],
            "back to the sender"
        );
        let r = Ipv4Hdr::parse(&f[14..n]).unwrap();
        assert_eq!(
            (r.src, r.dst, r.total_len, r.ttl),
            (VIP, CIP, 40, super::super::icmp::DEFAULT_TTL)
        );
        assert!(r.dont_fragment());
        assert!(l4_ok(&f[14..14 + 40]));
        let t = &f[34..54];
        let h = L4Hdr::parse(PROTO_TCP, t).unwrap();
        assert_eq!((h.sport, h.dport), (80, 40000));
        assert_eq!(
            (t[12], &t[14..16]),
            (5 << 4, &[0u8, 0][..]),
            "no options, window 0"
        );
        assert!(f[54..n].iter().all(|&b| b == 0), "padding");
        let word = |o: usize| u32::from_be_bytes(t[o..o + 4].try_into().unwrap());
        (word(4), word(8), t[13])
    }

    #[test]
    fn rst_takes_its_sequence_numbers_from_the_segment() {
        const RA: u8 = TcpFlags::RST | TcpFlags::ACK;
        // With ACK: seq = its ack, no ACK of our own.
        assert_eq!(
            rst_of(tcp_frame(
                TcpFlags::ACK | TcpFlags::PSH,
                7,
                0x1234_5678,
                b"GET /"
            )),
            (0x1234_5678, 0, TcpFlags::RST)
        );
        // Without ACK: seq 0, ack = seq + data length (+1 for SYN, +1 for FIN).
        assert_eq!(
            rst_of(tcp_frame(TcpFlags::SYN, 1000, 0, b"")),
            (0, 1001, RA)
        );
        assert_eq!(
            rst_of(tcp_frame(
                TcpFlags::SYN | TcpFlags::FIN,
                u32::MAX,
                0,
                b"abc"
            )),
            (0, 4, RA),
            "wraps"
        );
        assert_eq!(rst_of(tcp_frame(0, 50, 0, b"xy")), (0, 52, RA));
    }

    /// The TCP segment `seq, ack, flags` (no options) from A:40000 to B:80 over IPv6 behind the
    /// extension headers `ext`, in an Ethernet frame from MAC ...:10 to ...:01.
    fn tcp_frame6(ext: &[(u8, Vec<u8>)], flags: u8, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        use super::super::ipv6::tests::{packet, A, B};
        let mut seg = vec![0u8; TCP_MIN_HDR];
        seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&80u16.to_be_bytes());
        seg[4..8].copy_from_slice(&seq.to_be_bytes());
        seg[8..12].copy_from_slice(&ack.to_be_bytes());
        seg[12] = 5 << 4;
        seg[13] = flags;
        seg.extend_from_slice(data);
        fill_checksum_ipv6(PROTO_TCP, A, B, &mut seg).unwrap();
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0x10, 0x86, 0xdd];
        f.extend(packet(ext, PROTO_TCP, &seg));
        f
    }

    /// The one's-complement sum of the IPv6 pseudo-header (RFC 8200 8.1) and `seg`, written
    /// out here independently of the code under test: 0xffff when `seg`'s checksum is right.
    fn pseudo_sum6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, seg: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, proto]);
        bytes.extend_from_slice(seg);
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn an_ipv6_rst_has_the_pseudo_header_checksum() {
        use super::super::ipv6::tests::{opts, A, B};
        for (ext, flags, seq, ack, data, want) in [
            (
                vec![],
                TcpFlags::ACK | TcpFlags::PSH,
                7,
                0x1234_5678,
                &b"GET /"[..],
                (0x1234_5678, 0, TcpFlags::RST),
            ),
            (
                vec![],
                TcpFlags::SYN,
                1000,
                0,
                &b""[..],
                (0, 1001, TcpFlags::RST | TcpFlags::ACK),
            ),
            // Behind a destination-options header: the RST carries none.
            (
                vec![(ipv6::PROTO_DEST_OPTS, opts(1))],
                TcpFlags::ACK,
                1,
                99,
                &b"xyz"[..],
                (99, 0, TcpFlags::RST),
            ),
        ] {
            let mut f = tcp_frame6(&ext, flags, seq, ack, data);
            f.resize(f.len() + 64, 0xee);
            let len = f.len() - 64;
            let ip = Ipv6Hdr::parse(&f[14..len]).unwrap();
            let n = build_rst_in_place(&mut f, len, &ip, [2, 0, 0, 0, 0, 1]).unwrap();
            assert_eq!(n, 14 + 40 + 20, "no padding past the Ethernet minimum");
            assert_eq!(
                &f[..14],
                &[2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 0, 1, 0x86, 0xdd],
                "back to the sender"
            );
            let r = Ipv6Hdr::parse(&f[14..n]).unwrap();
            assert_eq!((r.src, r.dst, r.proto, r.hop_limit), (B, A, PROTO_TCP, 64));
            assert!(!r.has_ext_headers());
            assert_eq!(r.payload_len, 20);
            let t = &f[54..74];
            let h = L4Hdr::parse(PROTO_TCP, t).unwrap();
            assert_eq!((h.sport, h.dport), (80, 40000));
            assert_eq!((t[12], &t[14..16]), (5 << 4, &[0u8, 0][..]));
            let word = |o: usize| u32::from_be_bytes(t[o..o + 4].try_into().unwrap());
            assert_eq!((word(4), word(8), t[13]), want);
            // The checksum: a full recompute over the pseudo-header, written independently,
            // and the library's own from scratch.
            assert_eq!(pseudo_sum6(B, A, PROTO_TCP, t), 0xffff);
            assert_eq!(
                compute_checksum_ipv6(PROTO_TCP, B, A, t),
                checksum_field(PROTO_TCP, t)
            );
        }
        // Never for a RST, a fragment or UDP.
        let f = tcp_frame6(&[], TcpFlags::RST, 1, 2, b"");
        let mut g = f.clone();
        let ip = Ipv6Hdr::parse(&f[14..]).unwrap();
        assert_eq!(build_rst_in_place(&mut g, f.len(), &ip, [0; 6]), None);
        assert_eq!(g, f, "nothing written");
        // A first fragment (more to come: its payload a multiple of 8 bytes).
        let frag = super::super::ipv6::tests::frag(0, true, 7);
        let mut f = tcp_frame6(
            &[(ipv6::PROTO_FRAGMENT, frag)],
            TcpFlags::ACK,
            1,
            2,
            b"abcd",
        );
        let ip = Ipv6Hdr::parse(&f[14..]).unwrap();
        let n = f.len();
        assert_eq!(build_rst_in_place(&mut f, n, &ip, [0; 6]), None);
    }

    #[test]
    fn no_rst_for_a_rst_a_fragment_or_udp() {
        let f = tcp_frame(TcpFlags::RST | TcpFlags::ACK, 1, 2, b"");
        let ip = Ipv4Hdr::parse(&f[14..]).unwrap();
        let mut g = f.clone();
        assert_eq!(build_rst_in_place(&mut g, f.len(), &ip, [0; 6]), None);
        assert_eq!(g, f, "nothing written");
        let mut frag = tcp_frame(TcpFlags::ACK, 1, 2, b"");
        let frag_ip = Ipv4Hdr {
            frag: ipv4::FLAG_MF,
            ..Ipv4Hdr::parse(&frag[14..]).unwrap()
        };
        let n = frag.len();
        assert_eq!(build_rst_in_place(&mut frag, n, &frag_ip, [0; 6]), None);
        let mut u = vec![0u8; 14];
        u.extend(packet(PROTO_UDP, CIP, 1, VIP, 2, b"x"));
        let uip = Ipv4Hdr::parse(&u[14..]).unwrap();
        let n = u.len();
        assert_eq!(build_rst_in_place(&mut u, n, &uip, [0; 6]), None);
    }

    #[test]
    fn rewrite_of_truncated_packet_writes_nothing() {
        let p = packet(PROTO_TCP, CIP, 40000, VIP, 80, b"");
        let ip = Ipv4Hdr::parse(&p).unwrap();
        for n in 0..p.len() {
            let mut q = p[..n].to_vec();
            let before = q.clone();
            assert_eq!(
                rewrite_endpoint(&mut q, &ip, Side::Dst, RIP, 1, true),
                None,
                "len {n}"
            );
            assert_eq!(q, before);
        }
    }

    pub(crate) mod v6 {
        use super::super::*;
        use crate::packet::ipv6::tests::{frag, opts, packet as ip6_packet};
        use crate::packet::ipv6::{PROTO_DEST_OPTS, PROTO_FRAGMENT, PROTO_HOP_BY_HOP};

        const CIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
        const VIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
        const RIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0xabcd, 2);

        /// An IPv6 TCP/UDP packet from `src` to `dst` behind `ext`, checksum filled in.
        pub(crate) fn packet6(
            ext: &[(u8, Vec<u8>)],
            proto: u8,
            src: (Ipv6Addr, u16),
            dst: (Ipv6Addr, u16),
            payload: &[u8],
        ) -> Vec<u8> {
            let hl = if proto == PROTO_TCP { 20 } else { 8 };
            let mut seg = vec![0u8; hl + payload.len()];
            seg[0..2].copy_from_slice(&src.1.to_be_bytes());
            seg[2..4].copy_from_slice(&dst.1.to_be_bytes());
            if proto == PROTO_TCP {
                seg[12] = 5 << 4;
                seg[13] = TcpFlags::SYN | TcpFlags::ACK;
            } else {
                let n = seg.len() as u16;
                seg[4..6].copy_from_slice(&n.to_be_bytes());
            }
            seg[hl..].copy_from_slice(payload);
            fill_checksum_ipv6(proto, src.0, dst.0, &mut seg).unwrap();
            let mut p = ip6_packet(ext, proto, &seg);
            p[8..24].copy_from_slice(&src.0.octets());
            p[24..40].copy_from_slice(&dst.0.octets());
            p
        }

        fn l4_ok(p: &[u8]) -> bool {
            let ip = Ipv6Hdr::parse(p).unwrap();
            let seg = ip.payload(p).unwrap();
            checksum_field(ip.proto, seg) == compute_checksum_ipv6(ip.proto, ip.src, ip.dst, seg)
        }

        fn chains() -> Vec<Vec<(u8, Vec<u8>)>> {
            vec![
                vec![],
                vec![(PROTO_HOP_BY_HOP, opts(0)), (PROTO_DEST_OPTS, opts(2))],
                vec![(PROTO_FRAGMENT, frag(0, false, 9))],
            ]
        }

        #[test]
        fn known_checksum_sums_to_ffff_with_the_pseudo_header() {
            let p = packet6(&[], PROTO_UDP, (CIP, 1234), (VIP, 53), b"abc");
            let seg = &p[40..];
            let acc = checksum::pseudo_header_sum6(CIP, VIP, PROTO_UDP, seg.len() as u32);
            assert_eq!(checksum::fold(checksum::sum(seg, acc)), 0xffff);
        }

        #[test]
        fn dnat_and_snat_match_recompute() {
            for ext in chains() {
                for proto in [PROTO_TCP, PROTO_UDP] {
                    let mut p = packet6(&ext, proto, (CIP, 40000), (VIP, 80), b"GET /\r\n");
                    let ip = Ipv6Hdr::parse(&p).unwrap();
                    let h = L4Hdr::parse_ipv6(&ip, ip.payload(&p).unwrap()).unwrap();
                    assert_eq!((h.sport, h.dport), (40000, 80));
                    rewrite_endpoint_ipv6(&mut p, &ip, Side::Dst, RIP, 8080, true).unwrap();
                    let ip2 = Ipv6Hdr::parse(&p).unwrap();
                    assert_eq!((ip2.dst, ip2.hop_limit, ip2.l4_off), (RIP, 63, ip.l4_off));
                    let h = L4Hdr::parse_ipv6(&ip2, ip2.payload(&p).unwrap()).unwrap();
                    assert_eq!(h.dport, 8080);
                    assert!(l4_ok(&p), "dnat {proto} {ext:?}");

                    let mut r = packet6(&ext, proto, (RIP, 8080), (CIP, 40000), b"200 OK");
                    let ip = Ipv6Hdr::parse(&r).unwrap();
                    rewrite_endpoint_ipv6(&mut r, &ip, Side::Src, VIP, 80, false).unwrap();
                    let ip2 = Ipv6Hdr::parse(&r).unwrap();
                    assert_eq!((ip2.src, ip2.hop_limit), (VIP, 64));
                    assert!(l4_ok(&r), "snat {proto} {ext:?}");
                }
            }
        }

        #[test]
        fn udp_zero_refused_and_computed_zero_written_ffff() {
            let mut p = packet6(&[], PROTO_UDP, (CIP, 5000), (VIP, 53), b"x");
            p[46..48].copy_from_slice(&[0, 0]);
            let ip = Ipv6Hdr::parse(&p).unwrap();
            assert_eq!(
                L4Hdr::parse_ipv6(&ip, ip.payload(&p).unwrap()),
                Err(ParseError::BadChecksum)
            );
            let mut hit = false;
            for w in 0..=0xffffu16 {
                let mut p = packet6(&[], PROTO_UDP, (CIP, 5000), (VIP, 53), &w.to_be_bytes());
                let ip = Ipv6Hdr::parse(&p).unwrap();
                rewrite_endpoint_ipv6(&mut p, &ip, Side::Dst, RIP, 5353, false).unwrap();
                let c = checksum_field(PROTO_UDP, &p[40..]).unwrap();
                assert_ne!(c, 0);
                assert!(l4_ok(&p));
                if c == 0xffff {
                    hit = true;
                    break;
                }
            }
            assert!(hit);
        }

        #[test]
        fn fragments_and_truncation() {
            // First fragment: ports readable, UDP length may exceed it.
            let mut p = packet6(
                &[(PROTO_FRAGMENT, frag(0, true, 1))],
                PROTO_UDP,
                (CIP, 1),
                (VIP, 2),
                &[0; 8],
            );
            p[52..54].copy_from_slice(&1000u16.to_be_bytes());
            let ip = Ipv6Hdr::parse(&p).unwrap();
            assert!(L4Hdr::parse_ipv6(&ip, ip.payload(&p).unwrap()).is_ok());
            let later = packet6(
                &[(PROTO_FRAGMENT, frag(8, false, 1))],
                PROTO_UDP,
                (CIP, 1),
                (VIP, 2),
                &[0; 8],
            );
            let ip = Ipv6Hdr::parse(&later).unwrap();
            assert_eq!(
                L4Hdr::parse_ipv6(&ip, ip.payload(&later).unwrap()),
                Err(ParseError::Fragment)
            );
            let mut q = later.clone();
            assert_eq!(
                rewrite_endpoint_ipv6(&mut q, &ip, Side::Dst, RIP, 1, true),
                None
            );
            assert_eq!(q, later);
            let p = packet6(&chains()[1], PROTO_TCP, (CIP, 1), (VIP, 2), b"");
            let ip = Ipv6Hdr::parse(&p).unwrap();
            for n in 0..p.len() {
                let mut q = p[..n].to_vec();
                let before = q.clone();
                assert_eq!(
                    rewrite_endpoint_ipv6(&mut q, &ip, Side::Dst, RIP, 1, true),
                    None,
                    "len {n}"
                );
                assert_eq!(q, before);
                if let Ok(ip) = Ipv6Hdr::parse(&p[..n]) {
                    let _ = L4Hdr::parse_ipv6(&ip, ip.payload(&p[..n]).unwrap_or(&[]));
                }
            }
        }
    }
}
