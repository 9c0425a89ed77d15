//! Ethernet II headers.

use super::{array, get16, put};

pub const HDR_LEN: usize = 14;
/// Shortest frame on the wire without FCS; shorter frames are padded up to it.
pub const MIN_FRAME: usize = 60;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
}

impl EthHdr {
    pub fn parse(frame: &[u8]) -> Option<EthHdr> {
        Some(EthHdr {
            dst: array(frame, 0)?,
            src: array(frame, 6)?,
            ethertype: get16(frame, 12)?,
        })
    }

    pub fn write(&self, frame: &mut [u8]) -> Option<()> {
        if frame.len() < HDR_LEN {
            return None;
        }
        put(frame, 0, &self.dst)?;
        put(frame, 6, &self.src)?;
        put(frame, 12, &self.ethertype.to_be_bytes())
    }
}

/// True for a VLAN (802.1Q) or QinQ (802.1ad) tag.
pub fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ
}

/// True for group (multicast and broadcast) addresses: the I/G bit of the first octet.
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// The group MAC an IPv4 multicast address maps to (RFC 1112 6.4): 01:00:5e and the low 23 bits
/// of the address.
pub fn ipv4_multicast_mac(group: std::net::Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// The group MAC an IPv6 multicast address maps to (RFC 2464 7): 33:33 and the low 32 bits of
/// the address.
pub fn ipv6_multicast_mac(group: std::net::Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// Sets both MAC addresses of `frame`; `None` if it is shorter than a header.
pub fn set_macs(frame: &mut [u8], dst: &[u8; 6], src: &[u8; 6]) -> Option<()> {
    write_macs(frame.first_chunk_mut()?, dst, src);
    Some(())
}

/// Writes the destination and source MACs of the Ethernet header `hdr`.
#[inline]
pub fn write_macs(hdr: &mut [u8; HDR_LEN], dst: &[u8; 6], src: &[u8; 6]) {
    // Both always present in a header-sized array: two plain 6-byte stores.
    if let Some((d, rest)) = hdr.split_first_chunk_mut::<6>() {
        *d = *dst;
        if let Some(s) = rest.first_chunk_mut::<6>() {
            *s = *src;
        }
    }
}

/// MAC as a u64 (low 48 bits), e.g. for atomic storage.
pub fn mac_to_u64(mac: &[u8; 6]) -> u64 {
    let [a, b, c, d, e, f] = *mac;
    u64::from_be_bytes([0, 0, a, b, c, d, e, f])
}

pub fn mac_from_u64(v: u64) -> [u8; 6] {
    let [_, _, a, b, c, d, e, f] = v.to_be_bytes();
    [a, b, c, d, e, f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_mac_keeps_the_low_23_bits() {
        use std::net::Ipv4Addr;
        let vrrp = ipv4_multicast_mac(Ipv4Addr::new(224, 0, 0, 18));
        assert_eq!(vrrp, [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12]);
        assert!(is_multicast(&vrrp));
        // The 24th bit is lost: 224.128.0.81 and 224.0.0.81 share a MAC.
        let sync = ipv4_multicast_mac(Ipv4Addr::new(224, 0, 0, 81));
        assert_eq!(sync, [0x01, 0x00, 0x5e, 0x00, 0x00, 0x51]);
        assert_eq!(ipv4_multicast_mac(Ipv4Addr::new(224, 128, 0, 81)), sync);
        assert_eq!(
            ipv4_multicast_mac(Ipv4Addr::new(239, 255, 1, 2)),
            [0x01, 0x00, 0x5e, 0x7f, 0x01, 0x02]
        );
    }

    #[test]
    fn ipv6_multicast_mac_keeps_the_low_32_bits() {
        let all_nodes = ipv6_multicast_mac("ff02::1".parse().unwrap());
        assert_eq!(all_nodes, [0x33, 0x33, 0, 0, 0, 1]);
        assert!(is_multicast(&all_nodes));
        assert_eq!(
            ipv6_multicast_mac("ff02::1:ff12:3456".parse().unwrap()),
            [0x33, 0x33, 0xff, 0x12, 0x34, 0x56]
        );
    }

    #[test]
    fn parse_and_write_round_trip() {
        let h = EthHdr {
            dst: [1, 2, 3, 4, 5, 6],
            src: [7, 8, 9, 10, 11, 12],
            ethertype: ETHERTYPE_ARP,
        };
        let mut f = [0u8; 14];
        h.write(&mut f).unwrap();
        assert_eq!(f, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x06]);
        assert_eq!(EthHdr::parse(&f), Some(h));
    }

    #[test]
    fn short_frames_are_refused() {
        for n in 0..HDR_LEN {
            assert_eq!(EthHdr::parse(&[0u8; 14][..n]), None, "len {n}");
            assert_eq!(set_macs(&mut [0u8; 14][..n], &[0; 6], &[0; 6]), None);
        }
    }

    #[test]
    fn mac_u64_round_trip_and_multicast() {
        let m = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
        assert_eq!(mac_to_u64(&m), 0x02aa_bbcc_ddee);
        assert_eq!(mac_from_u64(mac_to_u64(&m)), m);
        assert!(!is_multicast(&m));
        assert!(is_multicast(&BROADCAST));
        assert!(is_multicast(&[0x01, 0, 0x5e, 0, 0, 1]));
        assert!(is_vlan(0x8100) && is_vlan(0x88a8) && !is_vlan(0x0800));
    }
}
