//! VRRPv3 advertisements (RFC 5798 section 5) for IPv4 and IPv6: a typed reading of the bytes
//! after the IP header, and the checks a received one must pass before the state machine sees
//! it.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                 IPvX Address(es): 4 or 16 bytes each          |
//! ```
//! The checksum covers the VRRP message and, in version 3, the IP pseudo-header as TCP and UDP
//! do: IPv4's (source, destination, zero, protocol 112, VRRP length) or IPv6's (RFC 8200 8.1:
//! source, destination, 32-bit length, zeros, next header 112); it is computed with the
//! dataplane's one checksum code. Max Adver Int is in centiseconds (12 bits: at most 40.95 s).
//! One instance speaks one family (as keepalived's): its adverts go to 224.0.0.18 from an IPv4
//! address, or to ff02::12 from the interface's IPv6 link-local address, and carry addresses of
//! that family only; the family of the packet's addresses says how long each entry is.

use dataplane::packet::checksum;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IPPROTO_VRRP (IPv4 protocol, IPv6 next header).
pub const PROTO_VRRP: u8 = 112;
/// The VRRP IPv4 multicast group (RFC 5798 section 5.1.1.2).
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The VRRP IPv6 multicast group (RFC 5798 section 5.1.2.2), link-local scope.
pub const VRRP_GROUP6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// Sent with TTL (IPv6: hop limit) 255, and accepted only with it: proof the sender is on the
/// segment.
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

/// The VRRP group of `family`'s (an address of that family).
pub fn group_of(family: IpAddr) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(VRRP_GROUP),
        IpAddr::V6(_) => IpAddr::V6(VRRP_GROUP6),
    }
}

/// An advertisement's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    /// 255: the address owner; 0: the master is leaving.
    pub priority: u8,
    /// Max Adver Int in centiseconds (12 bits).
    pub interval_cs: u16,
    /// All of one family: the packet's.
    pub addrs: Vec<IpAddr>,
}

/// Why a received packet is not an advertisement to act on; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Shorter than its headers or its address count says, not IP, or source and destination
    /// of different families.
    Length,
    /// TTL (hop limit) other than 255: it did not come from this segment.
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

/// The length of one address entry for packets from `src`: 4 or 16.
fn entry_len(src: IpAddr) -> usize {
    match src {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

impl Advert {
    /// The interval as a duration.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_cs) * 10)
    }

    /// The VRRP message (no IP header) with its checksum for a packet from `src` to `dst` (of
    /// one family, the addresses' too). At most 255 addresses are written (the count field's
    /// limit).
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let addrs = &self.addrs[..self.addrs.len().min(255)];
        let mut b = Vec::with_capacity(HEADER_LEN + entry_len(src) * addrs.len());
        b.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        b.push(self.vrid);
        b.push(self.priority);
        b.push(addrs.len() as u8);
        b.extend_from_slice(&(self.interval_cs & MAX_INTERVAL_CS).to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        for a in addrs {
            match a {
                IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
            }
        }
        // Mixed families never leave here (the configuration has one per instance): 0.
        let sum = vrrp_checksum(src, dst, &b).unwrap_or(0);
        b[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Reads the VRRP message of a packet from `src` to `dst`, checking version, type, length
    /// and checksum; the addresses are of the packet's family.
    pub fn decode(msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, Reject> {
        let head = msg.get(..HEADER_LEN).ok_or(Reject::Length)?;
        let version = head[0] >> 4;
        if version != VERSION {
            return Err(Reject::Version(version));
        }
        let kind = head[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(Reject::Type(kind));
        }
        let entry = entry_len(src);
        let end = HEADER_LEN + entry * usize::from(head[3]);
        let body = msg.get(HEADER_LEN..end).ok_or(Reject::Length)?;
        // Only the message itself counts: anything after the addresses is not part of it.
        // Verified as RFC 1071 says (the whole sum, checksum field included, is all ones), so
        // that a sender writing 0xffff for 0x0000, the same ones' complement number, is heard.
        let whole = msg.get(..end).ok_or(Reject::Length)?;
        let sum = pseudo_header_sum(src, dst, whole.len()).ok_or(Reject::Length)?;
        if checksum::fold(checksum::sum(whole, sum)) != 0xffff {
            return Err(Reject::Checksum);
        }
        let addrs = body
            .chunks_exact(entry)
            .map(|c| match <[u8; 16]>::try_from(c) {
                Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
                Err(_) => IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            })
            .collect();
        Ok(Advert {
            vrid: head[1],
            priority: head[2],
            interval_cs: u16::from_be_bytes([head[4], head[5]]) & MAX_INTERVAL_CS,
            addrs,
        })
    }
}

/// The v3 checksum of `msg` (its checksum field counted as zero) with the pseudo-header of
/// `src`'s family; `None` when `src` and `dst` are of different families.
fn vrrp_checksum(src: IpAddr, dst: IpAddr, msg: &[u8]) -> Option<u16> {
    let acc = pseudo_header_sum(src, dst, msg.len())?;
    let acc = checksum::sum(&msg[..CHECKSUM_AT.min(msg.len())], acc);
    let acc = checksum::sum(msg.get(CHECKSUM_AT + 2..).unwrap_or(&[]), acc);
    Some(!checksum::fold(acc))
}

/// The sum of the pseudo-header of `src`'s family for a VRRP message of `len` bytes; `None`
/// when `src` and `dst` are of different families.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: usize) -> Option<u32> {
    Some(match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::pseudo_header_sum(s, d, PROTO_VRRP, u16::try_from(len).unwrap_or(u16::MAX))
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::pseudo_header_sum6(s, d, PROTO_VRRP, u32::try_from(len).unwrap_or(u32::MAX))
        }
        _ => return None,
    })
}

/// A received packet's addresses, TTL (hop limit) and VRRP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ttl: u8,
    /// The bytes after the IP header, up to its total length.
    pub payload: &'a [u8],
}

impl<'a> Received<'a> {
    /// Reads the IPv4 header of `packet` (as a raw IPv4 IPPROTO_VRRP socket returns it, header
    /// included) and checks what RFC 5798 section 7.1 asks of it: protocol 112 and TTL 255.
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
        let src = Ipv4Addr::new(head[12], head[13], head[14], head[15]);
        let dst = Ipv4Addr::new(head[16], head[17], head[18], head[19]);
        Received::checked(src.into(), dst.into(), head[8], payload)
    }

    /// An IPv6 packet as a raw IPv6 IPPROTO_VRRP socket gives it: no header, the payload (the
    /// kernel checked the next header), the addresses and hop limit from recvmsg's name and
    /// ancillary data; the hop limit must be 255.
    pub fn ipv6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        payload: &'a [u8],
    ) -> Result<Received<'a>, Reject> {
        Received::checked(src.into(), dst.into(), hop_limit, payload)
    }

    /// RFC 5798 section 7.1's TTL (hop limit) check, the same for both families.
    fn checked(
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        payload: &'a [u8],
    ) -> Result<Received<'a>, Reject> {
        if ttl != VRRP_TTL {
            return Err(Reject::Ttl(ttl));
        }
        Ok(Received {
            src,
            dst,
            ttl,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const SRC: IpAddr = IpAddr::V4(SRC4);
    const GROUP: IpAddr = IpAddr::V4(VRRP_GROUP);

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
        let a = Advert::decode(&bytes, SRC, GROUP).unwrap();
        assert_eq!(
            a,
            Advert {
                vrid: 51,
                priority: 100,
                interval_cs: 100,
                addrs: vec![Ipv4Addr::new(192, 0, 2, 100).into()],
            }
        );
        assert_eq!(a.interval(), Duration::from_secs(1));
        assert_eq!(a.encode(SRC, GROUP), bytes);
    }

    #[test]
    fn the_checksum_covers_the_pseudo_header() {
        let bytes = keepalived_advert();
        // Another source or destination: the same message no longer checks.
        assert_eq!(
            Advert::decode(&bytes, Ipv4Addr::new(192, 0, 2, 2).into(), GROUP),
            Err(Reject::Checksum)
        );
        assert_eq!(
            Advert::decode(&bytes, SRC, Ipv4Addr::new(192, 0, 2, 9).into()),
            Err(Reject::Checksum)
        );
        let mut flipped = bytes.clone();
        flipped[2] = 101;
        assert_eq!(Advert::decode(&flipped, SRC, GROUP), Err(Reject::Checksum));
        // A v2-style checksum (message only, no pseudo-header) is refused.
        let mut v2sum = bytes.clone();
        v2sum[6..8].copy_from_slice(&[0, 0]);
        let c = !checksum::fold(checksum::sum(&v2sum, 0));
        v2sum[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Advert::decode(&v2sum, SRC, GROUP), Err(Reject::Checksum));
    }

    /// 0x0000 and 0xffff are one ones' complement number: an advert whose checksum comes out
    /// as 0 is heard with either in its field.
    #[test]
    fn a_zero_checksum_may_be_written_as_all_ones() {
        let mut a = Advert {
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addrs: vec![Ipv4Addr::new(198, 51, 0, 0).into()],
        };
        // The address's low word set to the checksum with it at zero brings the sum to all
        // ones, so the checksum to 0.
        let c = a.encode(SRC, GROUP);
        let fix = u16::from_be_bytes([c[CHECKSUM_AT], c[CHECKSUM_AT + 1]]).to_be_bytes();
        a.addrs = vec![Ipv4Addr::new(198, 51, fix[0], fix[1]).into()];
        let mut bytes = a.encode(SRC, GROUP);
        assert_eq!(&bytes[CHECKSUM_AT..CHECKSUM_AT + 2], &[0, 0]);
        assert_eq!(Advert::decode(&bytes, SRC, GROUP), Ok(a.clone()));
        bytes[CHECKSUM_AT..CHECKSUM_AT + 2].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(Advert::decode(&bytes, SRC, GROUP), Ok(a));
    }

    #[test]
    fn version_type_and_length_are_checked() {
        let mut v2 = keepalived_advert();
        v2[0] = 0x21;
        assert_eq!(Advert::decode(&v2, SRC, GROUP), Err(Reject::Version(2)));
        let mut t2 = keepalived_advert();
        t2[0] = 0x32;
        assert_eq!(Advert::decode(&t2, SRC, GROUP), Err(Reject::Type(2)));
        let bytes = keepalived_advert();
        assert_eq!(
            Advert::decode(&bytes[..11], SRC, GROUP),
            Err(Reject::Length)
        );
        assert_eq!(Advert::decode(&bytes[..7], SRC, GROUP), Err(Reject::Length));
        let mut two = bytes.clone();
        two[3] = 2;
        assert_eq!(Advert::decode(&two, SRC, GROUP), Err(Reject::Length));
        // Trailing bytes beyond the addresses are not part of the message.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0, 0, 0, 0]);
        assert!(Advert::decode(&padded, SRC, GROUP).is_ok());
    }

    #[test]
    fn many_addresses_and_the_interval_field_round_trip() {
        let a = Advert {
            vrid: 255,
            priority: 0,
            interval_cs: MAX_INTERVAL_CS,
            addrs: (1..=20)
                .map(|i| Ipv4Addr::new(198, 51, 100, i).into())
                .collect(),
        };
        let b = a.encode(SRC, GROUP);
        assert_eq!(b.len(), 8 + 80);
        assert_eq!(b[4] & 0xf0, 0, "the reserved bits stay zero");
        assert_eq!(Advert::decode(&b, SRC, GROUP), Ok(a));
    }

    fn ipv4(ttl: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, ttl, proto, 0, 0]);
        p.extend_from_slice(&SRC4.octets());
        p.extend_from_slice(&VRRP_GROUP.octets());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn the_ip_header_must_say_ttl_255_and_protocol_112() {
        let adv = keepalived_advert();
        let p = ipv4(255, PROTO_VRRP, &adv);
        let r = Received::parse(&p).unwrap();
        assert_eq!((r.src, r.dst, r.ttl), (SRC, GROUP, 255));
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

    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);

    /// RFC 1071's sum, written out here (not the dataplane's code): 16-bit big-endian words,
    /// an odd byte padded with zero, carries folded, complemented.
    fn reference_checksum(bytes: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for pair in bytes.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            sum += hi | pair.get(1).map_or(0, |&b| u64::from(b));
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// RFC 8200 8.1's pseudo-header for `len` bytes of next header 112, then `msg`.
    fn with_pseudo6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&src.octets());
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, PROTO_VRRP]);
        b.extend_from_slice(msg);
        b
    }

    /// An IPv6 advertisement as RFC 5798 5.2 lays it out (keepalived's vrrphdr_t with one
    /// 16-byte address): VRID 51, priority 100, 1 s, 2001:db8:100::1, checksum zero for now.
    fn ipv6_advert_unsummed() -> Vec<u8> {
        let mut b = vec![0x31, 51, 100, 1, 0x00, 100, 0, 0];
        b.extend_from_slice(&VIP6.octets());
        b
    }

    #[test]
    fn an_ipv6_advert_carries_16_byte_addresses_and_the_ipv6_pseudo_header_checksum() {
        let a = Advert {
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addrs: vec![VIP6.into()],
        };
        let group = IpAddr::V6(VRRP_GROUP6);
        let bytes = a.encode(LL.into(), group);
        assert_eq!(bytes.len(), 8 + 16);
        let mut want = ipv6_advert_unsummed();
        assert_eq!(bytes[..6], want[..6]);
        assert_eq!(bytes[8..], want[8..]);
        // The checksum is the full recompute over pseudo-header and message, and the whole
        // then sums to zero.
        let sum = reference_checksum(&with_pseudo6(LL, VRRP_GROUP6, &want));
        want[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(bytes, want);
        assert_eq!(
            reference_checksum(&with_pseudo6(LL, VRRP_GROUP6, &bytes)),
            0
        );
        assert_eq!(Advert::decode(&bytes, LL.into(), group), Ok(a.clone()));
        // Another source, or an IPv4-style checksum: refused.
        let other = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
        assert_eq!(
            Advert::decode(&bytes, other.into(), group),
            Err(Reject::Checksum)
        );
        let mut v4sum = bytes.clone();
        let c = !checksum::fold(checksum::sum(
            &ipv6_advert_unsummed(),
            checksum::pseudo_header_sum(SRC4, VRRP_GROUP, PROTO_VRRP, 24),
        ));
        v4sum[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            Advert::decode(&v4sum, LL.into(), group),
            Err(Reject::Checksum)
        );
        // Read as IPv6, the count says 16 bytes an address: 4 are too few.
        assert_eq!(
            Advert::decode(&bytes[..20], LL.into(), group),
            Err(Reject::Length)
        );
        // Mixed families: not a packet at all.
        assert_eq!(
            Advert::decode(&bytes, LL.into(), GROUP),
            Err(Reject::Length)
        );
    }

    #[test]
    fn many_ipv6_addresses_round_trip() {
        let a = Advert {
            vrid: 7,
            priority: 255,
            interval_cs: 5,
            addrs: (1..=9)
                .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i).into())
                .collect(),
        };
        let (src, dst) = (IpAddr::V6(LL), IpAddr::V6(VRRP_GROUP6));
        let b = a.encode(src, dst);
        assert_eq!(b.len(), 8 + 9 * 16);
        assert_eq!(reference_checksum(&with_pseudo6(LL, VRRP_GROUP6, &b)), 0);
        assert_eq!(Advert::decode(&b, src, dst), Ok(a));
        assert_eq!(group_of(src), dst);
    }

    #[test]
    fn an_ipv6_packet_needs_hop_limit_255() {
        let msg = ipv6_advert_unsummed();
        let r = Received::ipv6(LL, VRRP_GROUP6, 255, &msg).unwrap();
        assert_eq!((r.src, r.dst, r.ttl), (LL.into(), VRRP_GROUP6.into(), 255));
        assert_eq!(
            Received::ipv6(LL, VRRP_GROUP6, 1, &msg),
            Err(Reject::Ttl(1))
        );
    }
}
