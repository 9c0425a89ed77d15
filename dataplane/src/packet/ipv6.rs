//! IPv6 headers (RFC 8200): validation, the extension-header walk, hop limit and address
//! rewriting.
//!
//! The walk is bounded by construction: every extension header rvs steps over may appear once
//! (destination options twice), so a chain has at most five of them before the upper-layer
//! header, and each must end inside the packet. Anything else is an error value: a chain that
//! loops (a repeated header), overruns the packet, puts hop-by-hop anywhere but first, nests a
//! fragment header, asks rvs to process a routing header (segments left; `parse_in_transit`
//! steps over it for a packet not addressed to rvs), or names an extension header rvs does not
//! walk. IPv6 has no header checksum: rewriting an address only touches the upper-layer
//! checksum (see `l4::rewrite_endpoint_ipv6`).

use super::{get16, get_ip6, put, put16, put_ip6};
use std::net::Ipv6Addr;

pub const HDR_LEN: usize = 40;
/// The minimum link MTU (RFC 8200 5): no IPv6 packet rvs builds is larger.
pub const MIN_MTU: usize = 1280;

const OFF_PAYLOAD_LEN: usize = 4;
pub const OFF_NEXT_HEADER: usize = 6;
const OFF_HOP_LIMIT: usize = 7;
pub const OFF_SRC: usize = 8;
pub const OFF_DST: usize = 24;

pub const PROTO_HOP_BY_HOP: u8 = 0;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ROUTING: u8 = 43;
pub const PROTO_FRAGMENT: u8 = 44;
pub const PROTO_ESP: u8 = 50;
pub const PROTO_AH: u8 = 51;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_NO_NEXT: u8 = 59;
pub const PROTO_DEST_OPTS: u8 = 60;
pub const PROTO_SCTP: u8 = 132;

/// Length of the fragment header.
pub const FRAG_HDR_LEN: usize = 8;
/// Most destination options headers a chain may hold (RFC 8200 4.1: before routing, and last).
const MAX_DEST_OPTS: u8 = 2;

/// The fragment header of a fragment (RFC 8200 4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Fragment offset in bytes.
    pub offset: usize,
    /// M flag: more fragments follow.
    pub more: bool,
    pub id: u32,
    /// The fragment header's next header: the same in every fragment of a datagram (a later
    /// fragment's upper-layer protocol is only known from its first fragment when headers of
    /// the fragmentable part come first).
    pub next: u8,
}

/// The fields of a validated IPv6 header and its extension-header chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Hdr {
    /// Payload length as in the header (extension headers included).
    pub payload_len: u16,
    /// [`HDR_LEN`] + `payload_len`. Bytes after it in the frame are link padding.
    pub total_len: usize,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The upper-layer protocol after the extension headers; for a non-first fragment, the next
    /// header of its fragment header (what the fragmentable part starts with).
    pub proto: u8,
    /// Offset of the upper-layer header (of the fragment data, for a non-first fragment) from
    /// the start of the IPv6 header.
    pub l4_off: usize,
    /// `Some` for a fragment; an atomic fragment (offset 0, M clear) is not one.
    pub frag: Option<FragInfo>,
}

/// Why an IPv6 packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Error {
    /// Shorter than the fixed header (or, quoted, than a header of its chain).
    Truncated,
    /// Version is not 6.
    BadVersion,
    /// Payload length 0 (a jumbogram, RFC 2675) or beyond the frame.
    BadPayloadLen,
    /// An extension header ends past the packet (or past the first fragment).
    ExtOverrun,
    /// Hop-by-hop options anywhere but right after the IPv6 header.
    HopByHopNotFirst,
    /// An extension header seen twice (destination options: three times).
    RepeatedHeader,
    /// A fragment header after a fragment header.
    NestedFragment,
    /// A fragment whose length is not a multiple of 8 though more follow, empty, or that ends
    /// past 65535 bytes of reassembled payload.
    BadFragment,
    /// A routing header with segments left: rvs would have to process it.
    RoutingSegmentsLeft,
    /// An extension header rvs does not walk (mobility, HIP, shim6, experimental, unassigned).
    UnknownExtHeader,
}

/// What an extension-header walk may take for granted about the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// A whole packet: every header within `total_len`, fragments checked.
    Whole,
    /// The quote in an ICMPv6 error: headers within the bytes quoted.
    Quoted,
    /// A whole packet in transit: as `Whole`, but a routing header with segments left is
    /// stepped over (RFC 8200 4.4: only the node in the destination field processes it).
    Transit,
}

impl Ipv6Hdr {
    /// Parses and validates the IPv6 packet at the start of `p` (which may carry link padding
    /// after the packet) and walks its extension headers: see the module documentation.
    /// Inline: the header without extension headers then never goes through memory (a
    /// returned `Ipv6Hdr`, written field by field and copied in wide loads, stalled the
    /// store buffer on every packet); the walk stays out of line.
    #[inline]
    pub fn parse(p: &[u8]) -> Result<Ipv6Hdr, Ipv6Error> {
        let fixed = p.first_chunk::<HDR_LEN>().ok_or(Ipv6Error::Truncated)?;
        let payload_len = fixed_payload_len(fixed)?;
        let total_len = HDR_LEN + usize::from(payload_len);
        if payload_len == 0 || total_len > p.len() {
            return Err(Ipv6Error::BadPayloadLen);
        }
        let next = fixed[OFF_NEXT_HEADER];
        if matches!(next, PROTO_TCP | PROTO_UDP | PROTO_ICMPV6) {
            // No extension header, as most packets: what the walk's first round would say.
            return header(fixed, next, HDR_LEN, None);
        }
        Ipv6Hdr::walk(
            fixed,
            p.get(..total_len).ok_or(Ipv6Error::Truncated)?,
            Walk::Whole,
        )
    }

    /// Parses the packet quoted in an ICMPv6 error (RFC 4443 2.4(c): as much of it as fits),
    /// which is usually cut short: `total_len` is what its header says, and the chain is
    /// walked within the bytes there are (a header cut off is `Truncated`). The caller checks
    /// that the upper-layer bytes it needs are present.
    pub fn parse_quoted(p: &[u8]) -> Result<Ipv6Hdr, Ipv6Error> {
        let fixed = p.first_chunk::<HDR_LEN>().ok_or(Ipv6Error::Truncated)?;
        let payload_len = fixed_payload_len(fixed)?;
        let total_len = HDR_LEN + usize::from(payload_len);
        let avail = p
            .get(..total_len.min(p.len()))
            .ok_or(Ipv6Error::Truncated)?;
        Ipv6Hdr::walk(fixed, avail, Walk::Quoted)
    }

    /// [`Ipv6Hdr::parse`] of a packet whose destination is not this node: a routing header
    /// with segments left is walked past, not refused (RFC 8200 4.4: a node processes it only
    /// when it is the packet's destination; a router on the way forwards the packet as any
    /// other). The caller decides that the destination is not its own.
    pub fn parse_in_transit(p: &[u8]) -> Result<Ipv6Hdr, Ipv6Error> {
        match Ipv6Hdr::parse(p) {
            Err(Ipv6Error::RoutingSegmentsLeft) => {
                // `parse` checked the fixed header and the payload length.
                let fixed = p.first_chunk::<HDR_LEN>().ok_or(Ipv6Error::Truncated)?;
                let total_len = HDR_LEN + usize::from(fixed_payload_len(fixed)?);
                let p = p.get(..total_len).ok_or(Ipv6Error::Truncated)?;
                Ipv6Hdr::walk(fixed, p, Walk::Transit)
            }
            parsed => parsed,
        }
    }

    /// Walks the chain of `p` (the packet, padding excluded, or the quoted bytes).
    fn walk(fixed: &[u8; HDR_LEN], p: &[u8], mode: Walk) -> Result<Ipv6Hdr, Ipv6Error> {
        let overrun = match mode {
            Walk::Whole | Walk::Transit => Ipv6Error::ExtOverrun,
            Walk::Quoted => Ipv6Error::Truncated,
        };
        let payload_len = u16::from_be_bytes([fixed[4], fixed[5]]);
        let total_len = HDR_LEN + usize::from(payload_len);
        let mut next = fixed[OFF_NEXT_HEADER];
        let mut off = HDR_LEN;
        let mut frag = None;
        // Headers seen: hop-by-hop and routing (flags), destination options (count).
        let (mut routing, mut dest_opts) = (false, 0u8);
        let mut first = true;
        loop {
            // Each arm either returns or moves `off` forward and sets a flag that makes a
            // second visit an error: at most 1 + 2 + 1 + 1 rounds.
            let len = match next {
                PROTO_HOP_BY_HOP | PROTO_ROUTING | PROTO_DEST_OPTS => {
                    let len = ext_len(p, off).ok_or(overrun)?;
                    match next {
                        PROTO_HOP_BY_HOP if !first => return Err(Ipv6Error::HopByHopNotFirst),
                        PROTO_ROUTING if routing => return Err(Ipv6Error::RepeatedHeader),
                        PROTO_ROUTING => {
                            routing = true;
                            if *p.get(off + 3).ok_or(overrun)? != 0 && mode != Walk::Transit {
                                return Err(Ipv6Error::RoutingSegmentsLeft);
                            }
                        }
                        PROTO_DEST_OPTS if dest_opts >= MAX_DEST_OPTS => {
                            return Err(Ipv6Error::RepeatedHeader)
                        }
                        PROTO_DEST_OPTS => dest_opts += 1,
                        _ => {}
                    }
                    len
                }
                PROTO_FRAGMENT => {
                    if frag.is_some() {
                        return Err(Ipv6Error::NestedFragment);
                    }
                    let h = p
                        .get(off..off + FRAG_HDR_LEN)
                        .and_then(|h| h.first_chunk::<FRAG_HDR_LEN>())
                        .ok_or(overrun)?;
                    let word = u16::from_be_bytes([h[2], h[3]]);
                    let info = FragInfo {
                        offset: usize::from(word >> 3) * 8,
                        more: word & 1 != 0,
                        id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                        next: h[0],
                    };
                    if info.offset == 0 && !info.more {
                        // An atomic fragment (RFC 6946): the whole datagram, walked on.
                        frag = Some(None);
                    } else {
                        let data = off + FRAG_HDR_LEN;
                        if mode != Walk::Quoted {
                            let len = total_len.saturating_sub(data);
                            if len == 0
                                || (info.more && !len.is_multiple_of(8))
                                || info.offset + len > usize::from(u16::MAX)
                            {
                                return Err(Ipv6Error::BadFragment);
                            }
                        }
                        frag = Some(Some(info));
                        if info.offset != 0 {
                            // No headers of the fragmentable part here: report what it is.
                            return header(fixed, h[0], data, Some(info));
                        }
                    }
                    next = h[0];
                    off += FRAG_HDR_LEN;
                    first = false;
                    continue;
                }
                // Extension headers rvs does not walk (RFC 7045: mobility, HIP, shim6, the
                // experimental values), and the unassigned range new ones would come from.
                135 | 139 | 140 | 143..=254 => return Err(Ipv6Error::UnknownExtHeader),
                // An upper-layer protocol (AH and ESP included: rvs does not look inside).
                _ => return header(fixed, next, off, frag.flatten()),
            };
            next = *p.get(off).ok_or(overrun)?;
            off += len;
            first = false;
        }
    }

    /// A fragment (not an atomic one).
    pub fn is_fragment(&self) -> bool {
        self.frag.is_some()
    }

    /// Carried in a fragment, an atomic one included (which the walk does not report: see
    /// [`Ipv6Hdr::frag`]): a fragment header in the chain of the packet `p` this header was
    /// parsed from. Neighbour discovery asks (RFC 6980); the chain, checked by the walk, is
    /// stepped over again only when there is one.
    pub fn in_fragment(&self, p: &[u8]) -> bool {
        if self.frag.is_some() {
            return true;
        }
        let (mut next, mut off) = (p.get(OFF_NEXT_HEADER).copied(), HDR_LEN);
        while off < self.l4_off {
            match next {
                Some(PROTO_FRAGMENT) => return true,
                Some(PROTO_HOP_BY_HOP | PROTO_ROUTING | PROTO_DEST_OPTS) => {}
                _ => return false,
            }
            let Some(len) = ext_len(p, off) else {
                return false;
            };
            next = p.get(off).copied();
            off += len;
        }
        false
    }

    /// The fragment offset in bytes (0 for the first fragment and for whole datagrams).
    pub fn frag_offset(&self) -> usize {
        self.frag.map_or(0, |f| f.offset)
    }

    /// Extension headers precede the upper-layer header.
    pub fn has_ext_headers(&self) -> bool {
        self.l4_off > HDR_LEN
    }

    /// The upper-layer bytes of the packet `p` this header was parsed from (padding excluded).
    pub fn payload<'a>(&self, p: &'a [u8]) -> Option<&'a [u8]> {
        p.get(self.l4_off..self.total_len)
    }

    pub fn payload_mut<'a>(&self, p: &'a mut [u8]) -> Option<&'a mut [u8]> {
        p.get_mut(self.l4_off..self.total_len)
    }
}

/// The version check and the payload length of a fixed header.
fn fixed_payload_len(fixed: &[u8; HDR_LEN]) -> Result<u16, Ipv6Error> {
    if fixed[0] >> 4 != 6 {
        return Err(Ipv6Error::BadVersion);
    }
    Ok(u16::from_be_bytes([
        fixed[OFF_PAYLOAD_LEN],
        fixed[OFF_PAYLOAD_LEN + 1],
    ]))
}

/// The length of the hop-by-hop, routing or destination options header at `off`, if it ends
/// within `p`.
fn ext_len(p: &[u8], off: usize) -> Option<usize> {
    let len = (usize::from(*p.get(off + 1)?) + 1) * 8;
    (off + len <= p.len()).then_some(len)
}

/// The header of `fixed` with the chain's results; `None` never happens (the addresses lie
/// within the 40 bytes), but is not worth a panic.
#[inline]
fn header(
    fixed: &[u8; HDR_LEN],
    proto: u8,
    l4_off: usize,
    frag: Option<FragInfo>,
) -> Result<Ipv6Hdr, Ipv6Error> {
    let payload_len = u16::from_be_bytes([fixed[4], fixed[5]]);
    Ok(Ipv6Hdr {
        payload_len,
        total_len: HDR_LEN + usize::from(payload_len),
        hop_limit: fixed[OFF_HOP_LIMIT],
        src: addr_at(fixed, OFF_SRC),
        dst: addr_at(fixed, OFF_DST),
        proto,
        l4_off,
        frag,
    })
}

/// The address at `off` of the fixed header (with `off` a constant, the compiler sees that
/// it fits: no check is left).
#[inline]
fn addr_at(fixed: &[u8; HDR_LEN], off: usize) -> Ipv6Addr {
    fixed
        .get(off..off + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

/// Decrements the hop limit. `None` (nothing written) if it is already 0 or the header is
/// short.
pub fn decrement_hop_limit(p: &mut [u8]) -> Option<()> {
    let h = p.get_mut(OFF_HOP_LIMIT)?;
    *h = h.checked_sub(1)?;
    Some(())
}

/// Sets the hop limit.
pub fn set_hop_limit(p: &mut [u8], hop_limit: u8) -> Option<()> {
    put(p, OFF_HOP_LIMIT, &[hop_limit])
}

/// Writes `addr` at `off` ([`OFF_SRC`] or [`OFF_DST`]) and decrements the hop limit; the
/// payload is not touched (for fragments past the first, which carry no upper-layer header).
/// `None` (nothing written) if the hop limit is 0, `off` is neither, or the header is short.
pub fn rewrite_addr_dec_hop(p: &mut [u8], off: usize, addr: Ipv6Addr) -> Option<()> {
    if (off != OFF_SRC && off != OFF_DST) || p.len() < HDR_LEN {
        return None;
    }
    decrement_hop_limit(p)?;
    put_ip6(p, off, addr)
}

/// Swaps source and destination.
pub fn swap_addrs(p: &mut [u8]) -> Option<()> {
    let src = get_ip6(p, OFF_SRC)?;
    let dst = get_ip6(p, OFF_DST)?;
    put_ip6(p, OFF_SRC, dst)?;
    put_ip6(p, OFF_DST, src)
}

/// Builds a 40-byte header (traffic class and flow label 0) into `p`.
pub fn write_header(
    p: &mut [u8],
    payload_len: u16,
    next_header: u8,
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Option<()> {
    let hdr = p.get_mut(..HDR_LEN)?;
    hdr.fill(0);
    put(hdr, 0, &[0x60])?;
    put16(hdr, OFF_PAYLOAD_LEN, payload_len)?;
    put(hdr, OFF_NEXT_HEADER, &[next_header, hop_limit])?;
    put_ip6(hdr, OFF_SRC, src)?;
    put_ip6(hdr, OFF_DST, dst)
}

/// Sets the payload length field.
pub fn set_payload_len(p: &mut [u8], payload_len: u16) -> Option<()> {
    put16(p, OFF_PAYLOAD_LEN, payload_len)
}

/// Reads the payload length field.
pub fn payload_len_field(p: &[u8]) -> Option<u16> {
    get16(p, OFF_PAYLOAD_LEN)
}

/// Link-local unicast, fe80::/10.
#[inline]
pub fn is_link_local(a: Ipv6Addr) -> bool {
    u128::from(a) >> 118 == 0xfe80 >> 6
}

/// An IPv4-mapped address, ::ffff:0:0/96 (never on the wire, RFC 4291 2.5.5.2).
#[inline]
fn is_v4_mapped(a: Ipv6Addr) -> bool {
    u128::from(a) >> 32 == 0xffff
}

/// A source address no packet may carry from the wire: unspecified, loopback, multicast or
/// IPv4-mapped. (The unspecified source of duplicate address detection is NDP's business; it is
/// never forwarded.)
#[inline]
pub fn is_martian_src(a: Ipv6Addr) -> bool {
    // Unspecified (::) and loopback (::1) are the integers 0 and 1; multicast is ff00::/8.
    u128::from(a) <= 1 || a.is_multicast() || is_v4_mapped(a)
}

/// An address rvs may forward to or from: not unspecified, loopback, multicast, link-local or
/// IPv4-mapped.
#[inline]
pub fn forwardable(a: Ipv6Addr) -> bool {
    !(is_martian_src(a) || is_link_local(a))
}

/// The link-local address made from `mac` (modified EUI-64, RFC 4291 2.5.1 and appendix A):
/// a port's, and its kernel twin's.
pub fn link_local_of(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// A link-local scope multicast group, ff02::/16 (all-nodes, VRRP's ff02::12, ...): one link's
/// business, never routed.
pub fn is_link_local_multicast(a: Ipv6Addr) -> bool {
    a.segments()[0] == 0xff02
}

/// The solicited-node multicast address of `a` (RFC 4291 2.7.1): ff02::1:ff00:0/104 and the
/// low 24 bits of `a`.
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// All-nodes multicast, ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10);
    pub(crate) const B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);

    /// An IPv6 packet: header, the extension headers `ext` (next header, bytes; each one's
    /// first byte is filled with the following one's type), then `proto` and `payload`.
    pub(crate) fn packet(ext: &[(u8, Vec<u8>)], proto: u8, payload: &[u8]) -> Vec<u8> {
        let ext_len: usize = ext.iter().map(|(_, b)| b.len()).sum();
        let mut p = vec![0u8; HDR_LEN];
        let first = ext.first().map_or(proto, |(t, _)| *t);
        let plen = (ext_len + payload.len()) as u16;
        write_header(&mut p, plen, first, 64, A, B).unwrap();
        for (i, (_, b)) in ext.iter().enumerate() {
            let mut b = b.clone();
            b[0] = ext.get(i + 1).map_or(proto, |(t, _)| *t);
            p.extend(b);
        }
        p.extend_from_slice(payload);
        p
    }

    /// An options header of `units` 8-byte units (padding options only).
    pub(crate) fn opts(units: u8) -> Vec<u8> {
        let mut b = vec![0u8; usize::from(units + 1) * 8];
        b[1] = units;
        b[2] = 1; // PadN
        b[3] = (b.len() - 4) as u8;
        b
    }

    pub(crate) fn frag(offset: usize, more: bool, id: u32) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        let w = ((offset / 8) as u16) << 3 | u16::from(more);
        b[2..4].copy_from_slice(&w.to_be_bytes());
        b[4..8].copy_from_slice(&id.to_be_bytes());
        b
    }

    fn routing(segments_left: u8) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        b[1] = 2;
        b[2] = 4;
        b[3] = segments_left;
        b
    }

    #[test]
    fn parses_a_plain_header_and_allows_padding() {
        let mut p = packet(&[], PROTO_UDP, &[0; 8]);
        let h = Ipv6Hdr::parse(&p).unwrap();
        assert_eq!(
            h,
            Ipv6Hdr {
                payload_len: 8,
                total_len: 48,
                hop_limit: 64,
                src: A,
                dst: B,
                proto: PROTO_UDP,
                l4_off: 40,
                frag: None
            }
        );
        p.resize(60, 0xee);
        assert_eq!(Ipv6Hdr::parse(&p), Ok(h));
        assert_eq!(h.payload(&p).unwrap().len(), 8);
        assert!(!h.is_fragment() && !h.has_ext_headers());
    }

    #[test]
    fn in_fragment_sees_atomic_fragments_too() {
        let case = |ext: &[(u8, Vec<u8>)]| {
            let p = packet(ext, PROTO_ICMPV6, &[135, 0, 0, 0, 0, 0, 0, 0]);
            Ipv6Hdr::parse(&p).unwrap().in_fragment(&p)
        };
        assert!(!case(&[]));
        assert!(!case(&[
            (PROTO_HOP_BY_HOP, opts(0)),
            (PROTO_DEST_OPTS, opts(1))
        ]));
        assert!(!case(&[(PROTO_ROUTING, routing(0))]));
        // An atomic fragment: no `frag`, but a fragment header all the same.
        assert!(case(&[(PROTO_FRAGMENT, frag(0, false, 1))]));
        assert!(case(&[
            (PROTO_HOP_BY_HOP, opts(0)),
            (PROTO_DEST_OPTS, opts(0)),
            (PROTO_FRAGMENT, frag(0, false, 1)),
            (PROTO_DEST_OPTS, opts(0)),
        ]));
        assert!(case(&[(PROTO_FRAGMENT, frag(0, true, 1))]));
    }

    #[test]
    fn walks_the_usual_chain() {
        let ext = [
            (PROTO_HOP_BY_HOP, opts(0)),
            (PROTO_DEST_OPTS, opts(1)),
            (PROTO_ROUTING, routing(0)),
            (PROTO_FRAGMENT, frag(0, true, 0xdead_beef)),
            (PROTO_DEST_OPTS, opts(0)),
        ];
        let p = packet(&ext, PROTO_TCP, &[0; 24]);
        let h = Ipv6Hdr::parse(&p).unwrap();
        assert_eq!((h.proto, h.l4_off), (PROTO_TCP, 40 + 8 + 16 + 24 + 8 + 8));
        assert_eq!(
            h.frag,
            Some(FragInfo {
                offset: 0,
                more: true,
                id: 0xdead_beef,
                next: PROTO_DEST_OPTS,
            })
        );
        assert_eq!(h.payload(&p).unwrap().len(), 24);
    }

    #[test]
    fn fragments() {
        // A later fragment: the rest is data, its first header reported.
        let p = packet(
            &[(PROTO_FRAGMENT, frag(1024, true, 7))],
            PROTO_UDP,
            &[0; 16],
        );
        let h = Ipv6Hdr::parse(&p).unwrap();
        assert_eq!((h.proto, h.l4_off, h.frag_offset()), (PROTO_UDP, 48, 1024));
        // Data that would be a bad chain is not walked.
        let p = packet(
            &[(PROTO_FRAGMENT, frag(8, false, 7))],
            PROTO_HOP_BY_HOP,
            &[0xff; 5],
        );
        assert_eq!(Ipv6Hdr::parse(&p).unwrap().proto, PROTO_HOP_BY_HOP);
        // Atomic fragment: not a fragment.
        let p = packet(&[(PROTO_FRAGMENT, frag(0, false, 7))], PROTO_UDP, &[0; 8]);
        let h = Ipv6Hdr::parse(&p).unwrap();
        assert_eq!((h.frag, h.l4_off), (None, 48));
        // More fragments with a length not a multiple of 8, empty, or past 64 KiB.
        for (o, m, n) in [
            (0, true, 12),
            (0, true, 0),
            (8, false, 0),
            (65528, false, 16),
        ] {
            let p = packet(&[(PROTO_FRAGMENT, frag(o, m, 1))], PROTO_UDP, &vec![0; n]);
            assert_eq!(
                Ipv6Hdr::parse(&p),
                Err(Ipv6Error::BadFragment),
                "{o} {m} {n}"
            );
        }
        let p = packet(
            &[
                (PROTO_FRAGMENT, frag(0, true, 1)),
                (PROTO_FRAGMENT, frag(0, true, 2)),
            ],
            PROTO_UDP,
            &[0; 8],
        );
        assert_eq!(Ipv6Hdr::parse(&p), Err(Ipv6Error::NestedFragment));
    }

    #[test]
    fn refuses_bad_chains() {
        let case = |ext: &[(u8, Vec<u8>)]| Ipv6Hdr::parse(&packet(ext, PROTO_UDP, &[0; 8]));
        assert_eq!(
            case(&[(PROTO_DEST_OPTS, opts(0)), (PROTO_HOP_BY_HOP, opts(0))]),
            Err(Ipv6Error::HopByHopNotFirst)
        );
        assert_eq!(
            case(&[(PROTO_HOP_BY_HOP, opts(0)), (PROTO_HOP_BY_HOP, opts(0))]),
            Err(Ipv6Error::HopByHopNotFirst)
        );
        assert_eq!(
            case(&[(PROTO_ROUTING, routing(0)), (PROTO_ROUTING, routing(0))]),
            Err(Ipv6Error::RepeatedHeader)
        );
        assert!(case(&[(PROTO_DEST_OPTS, opts(0)), (PROTO_DEST_OPTS, opts(0))]).is_ok());
        assert_eq!(
            case(&[
                (PROTO_DEST_OPTS, opts(0)),
                (PROTO_DEST_OPTS, opts(0)),
                (PROTO_DEST_OPTS, opts(0))
            ]),
            Err(Ipv6Error::RepeatedHeader)
        );
        assert_eq!(
            case(&[(PROTO_ROUTING, routing(1))]),
            Err(Ipv6Error::RoutingSegmentsLeft)
        );
        // In transit the routing header is stepped over, and the rest of the chain walked.
        let transit =
            |ext: &[(u8, Vec<u8>)]| Ipv6Hdr::parse_in_transit(&packet(ext, PROTO_UDP, &[0; 8]));
        let rh = (PROTO_ROUTING, routing(1));
        let h = transit(&[(PROTO_HOP_BY_HOP, opts(0)), rh.clone()]).unwrap();
        assert_eq!((h.proto, h.l4_off), (PROTO_UDP, 40 + 8 + 24));
        let fragment = (PROTO_FRAGMENT, frag(0, true, 5));
        let h = transit(&[rh.clone(), fragment, (PROTO_DEST_OPTS, opts(0))]).unwrap();
        assert_eq!((h.frag.map(|f| f.id), h.l4_off), (Some(5), 40 + 24 + 8 + 8));
        assert_eq!(
            transit(&[rh.clone(), rh.clone()]),
            Err(Ipv6Error::RepeatedHeader)
        );
        assert_eq!(
            transit(&[rh.clone(), (PROTO_HOP_BY_HOP, opts(0))]),
            Err(Ipv6Error::HopByHopNotFirst)
        );
        // Without a routing header with segments left: what `parse` says.
        for ext in [
            vec![],
            vec![(PROTO_ROUTING, routing(0))],
            vec![(135, opts(0))],
        ] {
            let p = packet(&ext, PROTO_UDP, &[0; 8]);
            assert_eq!(Ipv6Hdr::parse_in_transit(&p), Ipv6Hdr::parse(&p));
        }
        for t in [135u8, 139, 140, 200, 253, 254] {
            assert_eq!(
                case(&[(t, opts(0))]),
                Err(Ipv6Error::UnknownExtHeader),
                "{t}"
            );
        }
        // Upper-layer protocols rvs does not handle are reported, not refused.
        for t in [PROTO_ESP, PROTO_AH, PROTO_NO_NEXT, PROTO_SCTP, 47] {
            assert_eq!(case(&[(t, opts(0))]).map(|h| h.proto), Ok(t));
        }
        // A header that runs past the packet.
        let mut p = packet(&[(PROTO_DEST_OPTS, opts(0))], PROTO_UDP, &[0; 8]);
        p[41] = 2;
        assert_eq!(Ipv6Hdr::parse(&p), Err(Ipv6Error::ExtOverrun));
        // Version, jumbogram, payload beyond the frame.
        let good = packet(&[], PROTO_UDP, &[0; 8]);
        let mut p = good.clone();
        p[0] = 0x40;
        assert_eq!(Ipv6Hdr::parse(&p), Err(Ipv6Error::BadVersion));
        let mut p = good.clone();
        p[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(Ipv6Hdr::parse(&p), Err(Ipv6Error::BadPayloadLen));
        let mut p = good.clone();
        p[5] = 9;
        assert_eq!(Ipv6Hdr::parse(&p), Err(Ipv6Error::BadPayloadLen));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let ext = [
            (PROTO_HOP_BY_HOP, opts(0)),
            (PROTO_DEST_OPTS, opts(1)),
            (PROTO_ROUTING, routing(0)),
            (PROTO_FRAGMENT, frag(0, true, 1)),
        ];
        let p = packet(&ext, PROTO_TCP, &[0; 24]);
        let l4_off = Ipv6Hdr::parse(&p).unwrap().l4_off;
        for n in 0..p.len() {
            assert!(Ipv6Hdr::parse(&p[..n]).is_err(), "len {n}");
            // The quote holds the chain from l4_off on.
            let q = Ipv6Hdr::parse_quoted(&p[..n]);
            assert_eq!(q.is_ok(), n >= l4_off, "quoted len {n}");
            if let Ok(q) = q {
                assert_eq!((q.l4_off, q.total_len), (l4_off, p.len()));
            }
        }
    }

    proptest! {
        /// Any bytes after a valid fixed header: never a panic, and an accepted chain lies
        /// within the packet.
        #[test]
        fn arbitrary_chains_never_panic(
            body in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(43), Just(44), Just(60), Just(6), Just(17), any::<u8>()],
                0..200
            ),
            first in prop_oneof![Just(0u8), Just(43), Just(44), Just(60), any::<u8>()],
            cut in 0usize..260,
        ) {
            let mut p = vec![0u8; HDR_LEN];
            write_header(&mut p, body.len() as u16, first, 64, A, B).unwrap();
            p.extend(&body);
            if let Ok(h) = Ipv6Hdr::parse(&p) {
                prop_assert!(h.l4_off <= h.total_len && h.total_len <= p.len());
                prop_assert!(h.l4_off <= HDR_LEN + 5 * 2048);
            }
            let q = &p[..cut.min(p.len())];
            if let Ok(h) = Ipv6Hdr::parse_quoted(q) {
                prop_assert!(h.l4_off <= q.len());
            }
        }
    }

    #[test]
    fn helpers() {
        let mut p = packet(&[], PROTO_UDP, &[0; 8]);
        rewrite_addr_dec_hop(&mut p, OFF_DST, A).unwrap();
        let h = Ipv6Hdr::parse(&p).unwrap();
        assert_eq!((h.dst, h.hop_limit), (A, 63));
        assert_eq!(rewrite_addr_dec_hop(&mut p, 9, A), None);
        set_hop_limit(&mut p, 0).unwrap();
        let before = p.clone();
        assert_eq!(rewrite_addr_dec_hop(&mut p, OFF_SRC, B), None);
        assert_eq!(decrement_hop_limit(&mut p), None);
        assert_eq!(p, before);
        assert_eq!(
            solicited_node("2001:db8::12:3456".parse().unwrap()),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        for (a, martian, fwd) in [
            ("::", true, false),
            ("::1", true, false),
            ("ff02::1", true, false),
            ("::ffff:192.0.2.1", true, false),
            ("::2", false, true),
            ("::fffe:c000:201", false, true),
            ("::1:ffff:c000:201", false, true),
            ("fe80::1", false, false),
            ("febf:ffff::1", false, false),
            ("fec0::1", false, true),
            ("fe7f::1", false, true),
            ("2001:db8::1", false, true),
        ] {
            let a: Ipv6Addr = a.parse().unwrap();
            assert_eq!((is_martian_src(a), forwardable(a)), (martian, fwd), "{a}");
            assert_eq!(is_link_local(a), a.segments()[0] & 0xffc0 == 0xfe80, "{a}");
        }
    }
}
