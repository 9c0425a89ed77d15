//! ICMP (RFC 792): echo request -> echo reply in place.

use super::checksum;
use super::ipv4::{self, Ipv4Hdr};
use super::{put, put16, ParseError};

pub const HDR_LEN: usize = 8;
pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACH: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
const OFF_CSUM: usize = 2;

/// TTL of the packets rvs originates.
pub const DEFAULT_TTL: u8 = 64;

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
}

/// Computes the checksum of the ICMP message `msg` from scratch.
pub fn compute_checksum(msg: &[u8]) -> Option<u16> {
    checksum::checksum_skipping(msg, OFF_CSUM)
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

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;
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
