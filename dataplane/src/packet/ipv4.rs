//! IPv4 headers (RFC 791): validation, TTL, address rewriting with incremental checksums.

use super::checksum;
use super::{get16, get_ip, put, put16, put_ip, ParseError};
use std::net::Ipv4Addr;

pub const MIN_HDR_LEN: usize = 20;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

const OFF_TOS: usize = 1;
const OFF_TOTAL_LEN: usize = 2;
const OFF_ID: usize = 4;
const OFF_FRAG: usize = 6;
const OFF_TTL: usize = 8;
const OFF_CSUM: usize = 10;
pub const OFF_SRC: usize = 12;
pub const OFF_DST: usize = 16;

pub const FLAG_DF: u16 = 0x4000;
pub const FLAG_MF: u16 = 0x2000;
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// The fields of a validated IPv4 header. Options, if any, are left as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Hdr {
    /// Header length in bytes (IHL * 4), options included.
    pub hdr_len: usize,
    /// Total length: header plus payload. Bytes after it in the frame are link padding.
    pub total_len: usize,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Identification (groups the fragments of one datagram).
    pub id: u16,
    /// The flags and fragment offset word: [`FLAG_DF`], [`FLAG_MF`], offset in 8-byte units.
    pub frag: u16,
}

impl Ipv4Hdr {
    /// Parses and validates the IPv4 packet at the start of `p` (which may carry link padding
    /// after the packet): version 4, IHL >= 5, total length within `p` and covering the header,
    /// a correct header checksum, and no fragmentation.
    pub fn parse(p: &[u8]) -> Result<Ipv4Hdr, ParseError> {
        let h = Ipv4Hdr::parse_any(p)?;
        if h.is_fragment() {
            return Err(ParseError::Fragment);
        }
        Ok(h)
    }

    /// As [`Ipv4Hdr::parse`], but fragments are accepted (see [`Ipv4Hdr::is_fragment`]).
    /// Inline, the header without options out of line: a returned header, written field by
    /// field and then copied in wide loads, stalls the store buffer (as `Ipv6Hdr::parse`).
    #[inline]
    pub fn parse_any(p: &[u8]) -> Result<Ipv4Hdr, ParseError> {
        if let Some(h) = p.first_chunk::<MIN_HDR_LEN>() {
            if h[0] == 0x45 {
                return Ipv4Hdr::parse_plain(h, p.len());
            }
        }
        Ipv4Hdr::parse_options(p)
    }

    /// [`Ipv4Hdr::parse_any`] of anything but the common header: options, or refused.
    fn parse_options(p: &[u8]) -> Result<Ipv4Hdr, ParseError> {
        let vihl = *p.first().ok_or(ParseError::Truncated)?;
        if vihl >> 4 != 4 {
            return Err(ParseError::BadVersion);
        }
        let hdr_len = usize::from(vihl & 0x0f) * 4;
        if hdr_len < MIN_HDR_LEN {
            return Err(ParseError::BadHeaderLen);
        }
        let hdr = p.get(..hdr_len).ok_or(if p.len() < MIN_HDR_LEN {
            ParseError::Truncated
        } else {
            // A whole minimal header, but its IHL points past the data.
            ParseError::BadHeaderLen
        })?;
        let total_len = usize::from(get16(hdr, OFF_TOTAL_LEN).ok_or(ParseError::Truncated)?);
        if total_len < hdr_len || total_len > p.len() {
            return Err(ParseError::BadTotalLen);
        }
        if checksum::fold(checksum::sum(hdr, 0)) != 0xffff {
            return Err(ParseError::BadChecksum);
        }
        let frag = get16(hdr, OFF_FRAG).ok_or(ParseError::Truncated)?;
        let field = |off: usize| hdr.get(off).copied().ok_or(ParseError::Truncated);
        Ok(Ipv4Hdr {
            hdr_len,
            total_len,
            ttl: field(OFF_TTL)?,
            proto: field(OFF_TTL + 1)?,
            src: get_ip(hdr, OFF_SRC).ok_or(ParseError::Truncated)?,
            dst: get_ip(hdr, OFF_DST).ok_or(ParseError::Truncated)?,
            id: get16(hdr, OFF_ID).ok_or(ParseError::Truncated)?,
            frag,
        })
    }

    /// [`Ipv4Hdr::parse_any`] of the common header, version 4 without options, at the start of
    /// `avail` bytes: the same checks and answers, with no bounds to check field by field.
    #[inline]
    fn parse_plain(h: &[u8; MIN_HDR_LEN], avail: usize) -> Result<Ipv4Hdr, ParseError> {
        let [_, _, l0, l1, i0, i1, f0, f1, ttl, proto, _, _, s0, s1, s2, s3, d0, d1, d2, d3] = *h;
        let total_len = usize::from(u16::from_be_bytes([l0, l1]));
        if total_len < MIN_HDR_LEN || total_len > avail {
            return Err(ParseError::BadTotalLen);
        }
        if checksum::fold(checksum::sum(h, 0)) != 0xffff {
            return Err(ParseError::BadChecksum);
        }
        Ok(Ipv4Hdr {
            hdr_len: MIN_HDR_LEN,
            total_len,
            ttl,
            proto,
            src: Ipv4Addr::new(s0, s1, s2, s3),
            dst: Ipv4Addr::new(d0, d1, d2, d3),
            id: u16::from_be_bytes([i0, i1]),
            frag: u16::from_be_bytes([f0, f1]),
        })
    }

    /// A fragment: more fragments follow (MF) or the offset is not zero.
    pub fn is_fragment(&self) -> bool {
        self.frag & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// The fragment offset in bytes (0 for the first fragment and for whole datagrams).
    pub fn frag_offset(&self) -> usize {
        usize::from(self.frag & FRAG_OFFSET_MASK) * 8
    }

    /// Don't Fragment is set.
    pub fn dont_fragment(&self) -> bool {
        self.frag & FLAG_DF != 0
    }

    /// The header carries options (IHL > 5).
    pub fn has_options(&self) -> bool {
        self.hdr_len > MIN_HDR_LEN
    }

    /// The L4 payload of the packet `p` this header was parsed from (padding excluded).
    pub fn payload<'a>(&self, p: &'a [u8]) -> Option<&'a [u8]> {
        p.get(self.hdr_len..self.total_len)
    }

    pub fn payload_mut<'a>(&self, p: &'a mut [u8]) -> Option<&'a mut [u8]> {
        p.get_mut(self.hdr_len..self.total_len)
    }
}

/// Reads the header checksum field.
pub fn header_checksum_field(p: &[u8]) -> Option<u16> {
    get16(p, OFF_CSUM)
}

/// Computes the header checksum of the IPv4 header at the start of `p` from scratch.
pub fn compute_header_checksum(p: &[u8], hdr_len: usize) -> Option<u16> {
    checksum::checksum_skipping(p.get(..hdr_len)?, OFF_CSUM)
}

/// Recomputes and stores the header checksum.
pub fn fill_header_checksum(p: &mut [u8], hdr_len: usize) -> Option<()> {
    let c = compute_header_checksum(p, hdr_len)?;
    put16(p, OFF_CSUM, c)
}

/// Adds `delta` (see [`checksum::delta16`]) to the header checksum in place.
pub fn adjust_header_checksum(p: &mut [u8], delta: u32) -> Option<()> {
    let c = get16(p, OFF_CSUM)?;
    put16(p, OFF_CSUM, checksum::adjust(c, delta))
}

/// Decrements the TTL and updates the header checksum incrementally. `None` (nothing written)
/// if the TTL is already 0 or the header is short.
pub fn decrement_ttl(p: &mut [u8]) -> Option<()> {
    let word = get16(p, OFF_TTL)?; // TTL and protocol share a 16-bit word
    let ttl = (word >> 8).checked_sub(1)?;
    let new = (ttl << 8) | (word & 0xff);
    adjust_header_checksum(p, checksum::delta16(word, new))?;
    put16(p, OFF_TTL, new)
}

/// Sets the TTL and recomputes nothing: callers that change more fields recompute once.
pub fn set_ttl(p: &mut [u8], ttl: u8) -> Option<()> {
    put(p, OFF_TTL, &[ttl])
}

/// Writes `addr` at `off` (OFF_SRC or OFF_DST) and returns the checksum delta of the change,
/// for both the IP header and the L4 pseudo-header. The IP checksum is not touched.
pub fn replace_addr(p: &mut [u8], off: usize, addr: Ipv4Addr) -> Option<u32> {
    let old = get_ip(p, off)?;
    put_ip(p, off, addr)?;
    Some(checksum::delta_ip(old, addr))
}

/// Writes `addr` at `off` (OFF_SRC or OFF_DST), decrements the TTL and updates the header
/// checksum incrementally; the payload is not touched (for fragments past the first, which
/// carry no L4 header). `None` (nothing written) if the TTL is 0 or the header is short.
pub fn rewrite_addr_dec_ttl(p: &mut [u8], off: usize, addr: Ipv4Addr) -> Option<()> {
    if off != OFF_SRC && off != OFF_DST {
        return None;
    }
    get_ip(p, off)?;
    let word = get16(p, OFF_TTL)?;
    let ttl = (word >> 8).checked_sub(1)?;
    let new = (ttl << 8) | (word & 0xff);
    let delta = replace_addr(p, off, addr)? + checksum::delta16(word, new);
    put16(p, OFF_TTL, new)?;
    adjust_header_checksum(p, delta)
}

/// Swaps source and destination (a sum-neutral change: the checksum stays valid).
pub fn swap_addrs(p: &mut [u8]) -> Option<()> {
    let src = get_ip(p, OFF_SRC)?;
    let dst = get_ip(p, OFF_DST)?;
    put_ip(p, OFF_SRC, dst)?;
    put_ip(p, OFF_DST, src)
}

/// Builds a 20-byte header (no options, DF set, ID 0) into `p` with a correct checksum.
/// Used by tests and by packet generators.
pub fn write_header(
    p: &mut [u8],
    total_len: u16,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> Option<()> {
    write_header_with(
        p,
        &HeaderFields {
            tos: 0,
            total_len,
            id: 0,
            frag: FLAG_DF,
            ttl,
            proto,
            src,
            dst,
        },
    )
}

/// The fields [`write_header_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFields {
    pub tos: u8,
    pub total_len: u16,
    pub id: u16,
    /// Flags and fragment offset word.
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

/// Builds a 20-byte header (no options) from `f` into `p` with a correct checksum.
pub fn write_header_with(p: &mut [u8], f: &HeaderFields) -> Option<()> {
    let hdr = p.get_mut(..MIN_HDR_LEN)?;
    hdr.fill(0);
    put(hdr, 0, &[0x45])?;
    put(hdr, OFF_TOS, &[f.tos])?;
    put16(hdr, OFF_TOTAL_LEN, f.total_len)?;
    put16(hdr, OFF_ID, f.id)?;
    put16(hdr, OFF_FRAG, f.frag)?;
    put(hdr, OFF_TTL, &[f.ttl, f.proto])?;
    put_ip(hdr, OFF_SRC, f.src)?;
    put_ip(hdr, OFF_DST, f.dst)?;
    fill_header_checksum(hdr, MIN_HDR_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(total: u16) -> Vec<u8> {
        let mut p = vec![0u8; usize::from(total)];
        write_header(
            &mut p,
            total,
            64,
            PROTO_UDP,
            Ipv4Addr::new(198, 51, 100, 10),
            Ipv4Addr::new(198, 51, 100, 1),
        )
        .unwrap();
        p
    }

    #[test]
    fn parses_valid_header() {
        let p = sample(28);
        let h = Ipv4Hdr::parse(&p).unwrap();
        assert_eq!(h.hdr_len, 20);
        assert_eq!(h.total_len, 28);
        assert_eq!(h.ttl, 64);
        assert_eq!(h.proto, PROTO_UDP);
        assert_eq!(h.src, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(h.dst, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(h.payload(&p).unwrap().len(), 8);
    }

    #[test]
    fn padding_after_total_length_is_allowed() {
        let mut p = sample(28);
        p.resize(46, 0xee);
        let h = Ipv4Hdr::parse(&p).unwrap();
        assert_eq!(h.payload(&p).unwrap().len(), 8);
    }

    #[test]
    fn header_with_options_passes() {
        // IHL 6: one 4-byte option (NOPs + EOL), total 32.
        let mut p = vec![0u8; 32];
        p[0] = 0x46;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[8] = 64;
        p[9] = PROTO_UDP;
        p[12..16].copy_from_slice(&[192, 0, 2, 2]);
        p[16..20].copy_from_slice(&[198, 51, 100, 10]);
        p[20..24].copy_from_slice(&[1, 1, 1, 0]);
        fill_header_checksum(&mut p, 24).unwrap();
        let h = Ipv4Hdr::parse(&p).unwrap();
        assert_eq!(h.hdr_len, 24);
        assert_eq!(h.payload(&p).unwrap().len(), 8);
    }

    #[test]
    fn rejects_malformed() {
        let good = sample(28);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = good.clone();
            f(&mut p);
            Ipv4Hdr::parse(&p)
        };
        let refill = |p: &mut Vec<u8>| {
            let ihl = usize::from(p[0] & 15) * 4;
            if ihl >= 20 && ihl <= p.len() {
                fill_header_checksum(p, ihl).unwrap();
            }
        };
        assert_eq!(
            with(&|p| {
                p[0] = 0x65;
                refill(p)
            }),
            Err(ParseError::BadVersion)
        );
        assert_eq!(with(&|p| p[0] = 0x44), Err(ParseError::BadHeaderLen));
        assert_eq!(with(&|p| p[0] = 0x40), Err(ParseError::BadHeaderLen));
        assert_eq!(with(&|p| p[0] = 0x4f), Err(ParseError::BadHeaderLen)); // 60-byte header, 28 bytes
        assert_eq!(
            with(&|p| {
                p[2..4].copy_from_slice(&19u16.to_be_bytes());
                refill(p)
            }),
            Err(ParseError::BadTotalLen)
        );
        assert_eq!(
            with(&|p| {
                p[2..4].copy_from_slice(&29u16.to_be_bytes());
                refill(p)
            }),
            Err(ParseError::BadTotalLen)
        );
        assert_eq!(with(&|p| p[11] ^= 1), Err(ParseError::BadChecksum));
        assert_eq!(
            with(&|p| {
                p[6] = 0x20;
                refill(p)
            }),
            Err(ParseError::Fragment)
        ); // MF
        assert_eq!(
            with(&|p| {
                p[6] = 0x40;
                p[7] = 1;
                refill(p)
            }),
            Err(ParseError::Fragment)
        ); // offset 8
        assert!(with(&|p| {
            p[6] = 0x40;
            refill(p)
        })
        .is_ok()); // DF alone is fine
        let mut frag = good.clone();
        frag[6] = 0x20; // MF, offset 0: a first fragment
        frag[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        refill(&mut frag);
        let h = Ipv4Hdr::parse_any(&frag).unwrap();
        assert!(h.is_fragment() && !h.dont_fragment());
        assert_eq!((h.id, h.frag_offset()), (0xbeef, 0));
        frag[6] = 0x00;
        frag[7] = 3; // offset 24, last fragment
        refill(&mut frag);
        let h = Ipv4Hdr::parse_any(&frag).unwrap();
        assert!(h.is_fragment());
        assert_eq!(h.frag_offset(), 24);
        let h = Ipv4Hdr::parse_any(&good).unwrap();
        assert!(!h.is_fragment() && h.dont_fragment() && !h.has_options());
        for n in 0..20 {
            assert_eq!(
                Ipv4Hdr::parse(&good[..n]),
                Err(ParseError::Truncated),
                "len {n}"
            );
        }
        for n in 20..28 {
            assert_eq!(
                Ipv4Hdr::parse(&good[..n]),
                Err(ParseError::BadTotalLen),
                "len {n}"
            );
        }
    }

    #[test]
    fn ttl_decrement_keeps_checksum_right() {
        let mut p = sample(28);
        for ttl in (0..64u8).rev() {
            decrement_ttl(&mut p).unwrap();
            assert_eq!(p[8], ttl);
            assert_eq!(header_checksum_field(&p), compute_header_checksum(&p, 20));
        }
        let before = p.clone();
        assert_eq!(decrement_ttl(&mut p), None);
        assert_eq!(p, before, "TTL 0 is left alone");
    }

    #[test]
    fn address_rewrite_delta_matches_recompute() {
        let mut p = sample(28);
        let d = replace_addr(&mut p, OFF_DST, Ipv4Addr::new(192, 0, 2, 3)).unwrap();
        adjust_header_checksum(&mut p, d).unwrap();
        assert_eq!(header_checksum_field(&p), compute_header_checksum(&p, 20));
        assert_eq!(Ipv4Hdr::parse(&p).unwrap().dst, Ipv4Addr::new(192, 0, 2, 3));
        swap_addrs(&mut p).unwrap();
        assert_eq!(header_checksum_field(&p), compute_header_checksum(&p, 20));
        assert_eq!(Ipv4Hdr::parse(&p).unwrap().src, Ipv4Addr::new(192, 0, 2, 3));
    }
}
