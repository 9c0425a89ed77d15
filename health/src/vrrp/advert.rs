//! VRRPv3 advertisements for IPv4 (RFC 5798 section 5): a typed reading of the bytes after the
//! IPv4 header, and the checks a received one must pass before the state machine sees it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                        IPv4 Address(es)                       |
//! ```
//! The checksum covers the VRRP message and, in version 3, the IPv4 pseudo-header (source,
//! destination, zero, protocol 112, VRRP length) as TCP and UDP do: it is computed with the
//! dataplane's one checksum code. Max Adver Int is in centiseconds (12 bits: at most 40.95 s).

use dataplane::packet::checksum;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

/// IPPROTO_VRRP.
pub const PROTO_VRRP: u8 = 112;
/// The VRRP IPv4 multicast group (RFC 5798 section 5.1.1.2).
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// Sent with TTL 255, and accepted only with it: proof the sender is on the segment.
pub const VRRP_TTL: u8 = 255;
/// The version this code speaks.
pub const VERSION: u8 = 3;
/// Type 1: ADVERTISEMENT, the only type.
const TYPE_ADVERTISEMENT: u8 = 1;
/// Version, type, VRID, priority, count, interval, checksum.
const HEADER_LEN: usize = 8;
const CHECKSUM_AT: usize = 6;
/// The largest interval the 12-bit field holds, in centiseconds.
pub const MAX_INTERVAL_CS: u16 = 0x0fff;

/// An advertisement's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    /// 255: the address owner; 0: the master is leaving.
    pub priority: u8,
    /// Max Adver Int in centiseconds (12 bits).
    pub interval_cs: u16,
    pub addrs: Vec<Ipv4Addr>,
}

/// Why a received packet is not an advertisement to act on; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Shorter than its headers or its address count says, or not IPv4.
    Length,
    /// TTL other than 255: it did not come from this segment.
    Ttl(u8),
    /// Not version 3 (keepalived's default is version 2: `version 3` or `vrrp_version 3`).
    Version(u8),
    /// Not type 1.
    Type(u8),
    /// Not protocol 112.
    Protocol(u8),
    Checksum,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Length => f.write_str("too short for its headers or address count"),
            Reject::Ttl(t) => write!(f, "TTL {t}, not 255"),
            Reject::Version(v) => write!(f, "VRRP version {v}, not 3"),
            Reject::Type(t) => write!(f, "VRRP type {t}, not 1 (advertisement)"),
            Reject::Protocol(p) => write!(f, "IP protocol {p}, not 112"),
            Reject::Checksum => f.write_str("bad checksum"),
        }
    }
}

impl Advert {
    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_cs) * 10)
    }

    /// The VRRP message (no IPv4 header) with its checksum for a packet from `src` to `dst`.
    /// At most 255 addresses are written (the count field's limit).
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let addrs = &self.addrs[..self.addrs.len().min(255)];
        let mut b = Vec::with_capacity(HEADER_LEN + 4 * addrs.len());
        b.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        b.push(self.vrid);
        b.push(self.priority);
        b.push(addrs.len() as u8);
        b.extend_from_slice(&(self.interval_cs & MAX_INTERVAL_CS).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        for a in addrs {
            b.extend_from_slice(&a.octets());
        }
        let sum = vrrp_checksum(src, dst, &b);
        b[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Reads the VRRP message of a packet from `src` to `dst`, checking version, type, length
    /// and checksum.
    pub fn decode(msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Advert, Reject> {
        let head = msg.get(..HEADER_LEN).ok_or(Reject::Length)?;
        let version = head[0] >> 4;
        if version != VERSION {
            return Err(Reject::Version(version));
        }
        let kind = head[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(Reject::Type(kind));
        }
        let count = usize::from(head[3]);
        let body = msg
            .get(HEADER_LEN..HEADER_LEN + 4 * count)
            .ok_or(Reject::Length)?;
        // Only the message itself counts: anything after the addresses is not part of it.
        let whole = &msg[..HEADER_LEN + 4 * count];
        let carried = u16::from_be_bytes([head[CHECKSUM_AT], head[CHECKSUM_AT + 1]]);
        if vrrp_checksum(src, dst, whole) != carried {
            return Err(Reject::Checksum);
        }
        Ok(Advert {
            vrid: head[1],
            priority: head[2],
            interval_cs: u16::from_be_bytes([head[4], head[5]]) & MAX_INTERVAL_CS,
            addrs: body
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect(),
        })
    }
}

/// The v3 checksum of `msg` (its checksum field counted as zero) with the IPv4 pseudo-header.
fn vrrp_checksum(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> u16 {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    let acc = checksum::pseudo_header_sum(src, dst, PROTO_VRRP, len);
    let acc = checksum::sum(&msg[..CHECKSUM_AT.min(msg.len())], acc);
    let acc = checksum::sum(msg.get(CHECKSUM_AT + 2..).unwrap_or(&[]), acc);
    !checksum::fold(acc)
}

/// A received IPv4 packet, as a raw IPPROTO_VRRP socket returns it (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// The bytes after the IPv4 header, up to its total length.
    pub payload: &'a [u8],
}

impl<'a> Received<'a> {
    /// Reads the IPv4 header of `packet` and checks what RFC 5798 section 7.1 asks of it:
    /// protocol 112 and TTL 255.
    pub fn parse(packet: &'a [u8]) -> Result<Received<'a>, Reject> {
        let first = *packet.first().ok_or(Reject::Length)?;
        if first >> 4 != 4 {
            return Err(Reject::Length);
        }
        let ihl = usize::from(first & 0x0f) * 4;
        let head = packet.get(..ihl.max(20)).ok_or(Reject::Length)?;
        let total = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let payload = packet.get(ihl..total).ok_or(Reject::Length)?;
        if head[9] != PROTO_VRRP {
            return Err(Reject::Protocol(head[9]));
        }
        if head[8] != VRRP_TTL {
            return Err(Reject::Ttl(head[8]));
        }
        Ok(Received {
            src: Ipv4Addr::new(head[12], head[13], head[14], head[15]),
            dst: Ipv4Addr::new(head[16], head[17], head[18], head[19]),
            ttl: head[8],
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    /// An advertisement written field by field from RFC 5798 section 5.2, as keepalived 2.2.7
    /// sends it for `virtual_router_id 51`, `priority 100`, `advert_int 1`, `version 3` and one
    /// address 192.0.2.100 from 192.0.2.1 (the layout of keepalived's vrrphdr_t). The checksum
    /// was worked out by hand: pseudo-header 0xc000 + 0x0201 + 0xe000 + 0x0012 + 112 + 12,
    /// message 0x3133 + 0x6401 + 0x0064 + 0xc000 + 0x0264, folded and complemented: 0x0572.
    fn keepalived_advert() -> Vec<u8> {
        vec![
            0x31, 51, 100, 1, // version 3, type 1, VRID 51, priority 100, one address
            0x00, 100, 0x05, 0x72, // interval 100 cs, checksum
            192, 0, 2, 100, // the virtual address
        ]
    }

    #[test]
    fn a_keepalived_advert_decodes_and_encodes_to_the_same_bytes() {
        let bytes = keepalived_advert();
        let a = Advert::decode(&bytes, SRC, VRRP_GROUP).unwrap();
        assert_eq!(
            a,
            Advert {
                vrid: 51,
                priority: 100,
                interval_cs: 100,
                addrs: vec![Ipv4Addr::new(192, 0, 2, 100)],
            }
        );
        assert_eq!(a.interval(), Duration::from_secs(1));
        assert_eq!(a.encode(SRC, VRRP_GROUP), bytes);
    }

    #[test]
    fn the_checksum_covers_the_pseudo_header() {
        let bytes = keepalived_advert();
        // Another source or destination: the same message no longer checks.
        assert_eq!(
            Advert::decode(&bytes, Ipv4Addr::new(192, 0, 2, 2), VRRP_GROUP),
            Err(Reject::Checksum)
        );
        assert_eq!(
            Advert::decode(&bytes, SRC, Ipv4Addr::new(192, 0, 2, 9)),
            Err(Reject::Checksum)
        );
        let mut flipped = bytes.clone();
        flipped[2] = 101;
        assert_eq!(
            Advert::decode(&flipped, SRC, VRRP_GROUP),
            Err(Reject::Checksum)
        );
        // A v2-style checksum (message only, no pseudo-header) is refused.
        let mut v2sum = bytes.clone();
        v2sum[6..8].copy_from_slice(&[0, 0]);
        let c = !checksum::fold(checksum::sum(&v2sum, 0));
        v2sum[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            Advert::decode(&v2sum, SRC, VRRP_GROUP),
            Err(Reject::Checksum)
        );
    }

    #[test]
    fn version_type_and_length_are_checked() {
        let mut v2 = keepalived_advert();
        v2[0] = 0x21;
        assert_eq!(
            Advert::decode(&v2, SRC, VRRP_GROUP),
            Err(Reject::Version(2))
        );
        let mut t2 = keepalived_advert();
        t2[0] = 0x32;
        assert_eq!(Advert::decode(&t2, SRC, VRRP_GROUP), Err(Reject::Type(2)));
        let bytes = keepalived_advert();
        assert_eq!(
            Advert::decode(&bytes[..11], SRC, VRRP_GROUP),
            Err(Reject::Length)
        );
        assert_eq!(
            Advert::decode(&bytes[..7], SRC, VRRP_GROUP),
            Err(Reject::Length)
        );
        let mut two = bytes.clone();
        two[3] = 2;
        assert_eq!(Advert::decode(&two, SRC, VRRP_GROUP), Err(Reject::Length));
        // Trailing bytes beyond the addresses are not part of the message.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0, 0, 0, 0]);
        assert!(Advert::decode(&padded, SRC, VRRP_GROUP).is_ok());
    }

    #[test]
    fn many_addresses_and_the_interval_field_round_trip() {
        let a = Advert {
            vrid: 255,
            priority: 0,
            interval_cs: MAX_INTERVAL_CS,
            addrs: (1..=20).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect(),
        };
        let b = a.encode(SRC, VRRP_GROUP);
        assert_eq!(b.len(), 8 + 80);
        assert_eq!(b[4] & 0xf0, 0, "the reserved bits stay zero");
        assert_eq!(Advert::decode(&b, SRC, VRRP_GROUP), Ok(a));
    }

    fn ipv4(ttl: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, ttl, proto, 0, 0]);
        p.extend_from_slice(&SRC.octets());
        p.extend_from_slice(&VRRP_GROUP.octets());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn the_ip_header_must_say_ttl_255_and_protocol_112() {
        let adv = keepalived_advert();
        let p = ipv4(255, PROTO_VRRP, &adv);
        let r = Received::parse(&p).unwrap();
        assert_eq!((r.src, r.dst, r.ttl), (SRC, VRRP_GROUP, 255));
        assert_eq!(r.payload, adv.as_slice());
        assert!(Advert::decode(r.payload, r.src, r.dst).is_ok());
        assert_eq!(
            Received::parse(&ipv4(254, PROTO_VRRP, &adv)),
            Err(Reject::Ttl(254))
        );
        assert_eq!(
            Received::parse(&ipv4(255, 17, &adv)),
            Err(Reject::Protocol(17))
        );
        assert_eq!(Received::parse(&p[..19]), Err(Reject::Length));
        assert_eq!(
            Received::parse(&p[..p.len() - 1]),
            Err(Reject::Length),
            "shorter than its total length"
        );
        assert_eq!(Received::parse(&[0x65; 40]), Err(Reject::Length));
    }
}
