//! ARP for IPv4 over Ethernet (RFC 826).

use super::eth::{self, EthHdr};
use super::{array, get16, get_ip, put, put16, put_ip};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP message (after the Ethernet header).
pub const LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

const HTYPE_ETHERNET: u16 = 1;

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    /// Sender hardware and protocol address.
    pub sha: [u8; 6],
    pub spa: Ipv4Addr,
    /// Target hardware and protocol address.
    pub tha: [u8; 6],
    pub tpa: Ipv4Addr,
}

impl Arp {
    /// Parses the ARP message at the start of `p` (the bytes after the Ethernet header).
    /// Anything but Ethernet/IPv4 with 6/4-byte addresses is refused.
    pub fn parse(p: &[u8]) -> Option<Arp> {
        if get16(p, 0)? != HTYPE_ETHERNET
            || get16(p, 2)? != eth::ETHERTYPE_IPV4
            || p.get(4..6)? != [6, 4]
        {
            return None;
        }
        Some(Arp {
            op: get16(p, 6)?,
            sha: array(p, 8)?,
            spa: get_ip(p, 14)?,
            tha: array(p, 18)?,
            tpa: get_ip(p, 24)?,
        })
    }

    /// Writes the message to the start of `p`.
    pub fn write(&self, p: &mut [u8]) -> Option<()> {
        if p.len() < LEN {
            return None;
        }
        put16(p, 0, HTYPE_ETHERNET)?;
        put16(p, 2, eth::ETHERTYPE_IPV4)?;
        put(p, 4, &[6, 4])?;
        put16(p, 6, self.op)?;
        put(p, 8, &self.sha)?;
        put_ip(p, 14, self.spa)?;
        put(p, 18, &self.tha)?;
        put_ip(p, 24, self.tpa)
    }
}

/// Parses the ARP message of an Ethernet frame: `None` unless the frame's ethertype is ARP and
/// the message is Ethernet/IPv4 (see [`Arp::parse`]).
pub fn parse_frame(frame: &[u8]) -> Option<Arp> {
    if EthHdr::parse(frame)?.ethertype != eth::ETHERTYPE_ARP {
        return None;
    }
    Arp::parse(frame.get(eth::HDR_LEN..)?)
}

/// Turns the ARP request in `frame` into the reply "`req.tpa` is at `our_mac`", in place: the
/// frame keeps its length (any padding is zeroed) and goes back to the requester.
pub fn reply_in_place(frame: &mut [u8], req: &Arp, our_mac: [u8; 6]) -> Option<()> {
    let reply = Arp {
        op: OP_REPLY,
        sha: our_mac,
        spa: req.tpa,
        tha: req.sha,
        tpa: req.spa,
    };
    let body = frame.get_mut(eth::HDR_LEN..)?;
    reply.write(body)?;
    body.get_mut(LEN..)?.fill(0);
    EthHdr {
        dst: req.sha,
        src: our_mac,
        ethertype: eth::ETHERTYPE_ARP,
    }
    .write(frame)
}

/// Writes a broadcast "who has `target`? tell `src_ip`" frame into `buf`, padded to the
/// Ethernet minimum. Returns the bytes written, or 0 if `buf` is shorter than 60 bytes.
pub fn build_request(
    buf: &mut [u8],
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    target: Ipv4Addr,
) -> usize {
    let Some(frame) = buf.get_mut(..eth::MIN_FRAME) else {
        return 0;
    };
    frame.fill(0);
    let hdr = EthHdr {
        dst: eth::BROADCAST,
        src: src_mac,
        ethertype: eth::ETHERTYPE_ARP,
    };
    let req = Arp {
        op: OP_REQUEST,
        sha: src_mac,
        spa: src_ip,
        tha: [0; 6],
        tpa: target,
    };
    match (
        hdr.write(frame),
        frame.get_mut(eth::HDR_LEN..).and_then(|b| req.write(b)),
    ) {
        (Some(()), Some(())) => eth::MIN_FRAME,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
    const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    /// A request as tcpdump would show it, written out byte by byte.
    fn request_bytes() -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&REQ_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        f.extend_from_slice(&REQ_MAC);
        f.extend_from_slice(&[198, 51, 100, 10]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&[198, 51, 100, 1]);
        f.resize(60, 0xee); // padding with junk
        f
    }

    #[test]
    fn parses_request() {
        let f = request_bytes();
        let a = Arp::parse(&f[14..]).unwrap();
        assert_eq!(a.op, OP_REQUEST);
        assert_eq!(a.sha, REQ_MAC);
        assert_eq!(a.spa, Ipv4Addr::new(198, 51, 100, 10));
        assert_eq!(a.tpa, Ipv4Addr::new(198, 51, 100, 1));
    }

    #[test]
    fn parses_frame_only_with_the_arp_ethertype() {
        let mut f = request_bytes();
        assert_eq!(parse_frame(&f), Arp::parse(&f[14..]));
        assert!(parse_frame(&f).is_some());
        assert_eq!(parse_frame(&f[..14 + LEN - 1]), None);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_frame(&f), None);
    }

    #[test]
    fn reply_in_place_is_the_expected_bytes() {
        let mut f = request_bytes();
        let req = Arp::parse(&f[14..]).unwrap();
        reply_in_place(&mut f, &req, OUR_MAC).unwrap();
        let mut want = REQ_MAC.to_vec();
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[198, 51, 100, 1]);
        want.extend_from_slice(&REQ_MAC);
        want.extend_from_slice(&[198, 51, 100, 10]);
        want.resize(60, 0);
        assert_eq!(f, want);
    }

    #[test]
    fn build_request_bytes() {
        let mut buf = [0xaau8; 100];
        let n = build_request(
            &mut buf,
            OUR_MAC,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
        );
        assert_eq!(n, 60);
        let mut want = vec![0xff; 6];
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        want.extend_from_slice(&OUR_MAC);
        want.extend_from_slice(&[192, 0, 2, 1]);
        want.extend_from_slice(&[0; 6]);
        want.extend_from_slice(&[192, 0, 2, 2]);
        want.resize(60, 0);
        assert_eq!(&buf[..60], &want[..]);
        assert_eq!(buf[60], 0xaa, "nothing written past the frame");
    }

    #[test]
    fn build_request_into_small_buffer_writes_nothing() {
        for len in 0..60 {
            let mut buf = vec![0xaau8; len];
            assert_eq!(
                build_request(&mut buf, OUR_MAC, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
                0
            );
            assert!(buf.iter().all(|b| *b == 0xaa));
        }
    }

    #[test]
    fn refuses_other_hardware_and_truncation() {
        let f = request_bytes();
        for n in 0..14 + LEN {
            assert_eq!(Arp::parse(&f[14..n.max(14)]), None, "len {n}");
        }
        for (off, val) in [(14, 1u8), (15, 6), (16, 0x86), (18, 8), (19, 16)] {
            let mut g = f.clone();
            g[off] = val;
            assert_eq!(Arp::parse(&g[14..]), None, "byte {off} = {val}");
        }
    }
}
