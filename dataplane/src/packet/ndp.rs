//! Neighbour Discovery (RFC 4861): neighbour solicitations and advertisements, IPv6's ARP.
//!
//! A message is accepted only as RFC 4861 7.1 validates it: hop limit 255 (it cannot have
//! crossed a router), code 0, a correct ICMPv6 checksum, a target that is not multicast, options
//! of non-zero length that end inside the message, a source that is not multicast (RFC 4291 2.7;
//! an answer to one would be an advertisement to a group with the solicited flag), no source
//! link-layer option from the unspecified address (duplicate address detection) and no
//! solicited flag on an advertisement to a multicast group. The frames rvs sends are 86 bytes:
//! Ethernet, IPv6 without extension headers, the 24-byte message and one link-layer address
//! option.

use super::eth::{self, EthHdr};
use super::icmpv6::{self, TYPE_NA, TYPE_NS};
use super::ipv6::{self, Ipv6Error, Ipv6Hdr, PROTO_ICMPV6};
use super::{array, get_ip6, put, put_ip6};
use std::net::Ipv6Addr;

/// Hop limit of every NDP message.
pub const HOP_LIMIT: u8 = 255;
/// Length of a solicitation or advertisement before its options.
pub const MSG_LEN: usize = 24;
/// Source link-layer address option.
pub const OPT_SOURCE_LL: u8 = 1;
/// Target link-layer address option.
pub const OPT_TARGET_LL: u8 = 2;
/// Advertisement flags (first byte after the checksum).
pub const FLAG_ROUTER: u8 = 0x80;
pub const FLAG_SOLICITED: u8 = 0x40;
pub const FLAG_OVERRIDE: u8 = 0x20;
/// Length of the frames rvs builds: Ethernet, IPv6, message, one 8-byte option.
pub const FRAME_LEN: usize = eth::HDR_LEN + ipv6::HDR_LEN + MSG_LEN + 8;

const OFF_TARGET: usize = 8;

/// Solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpKind {
    Solicitation,
    Advertisement,
}

/// A validated neighbour solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ndp {
    pub kind: NdpKind,
    /// Advertisement flags ([`FLAG_ROUTER`], [`FLAG_SOLICITED`], [`FLAG_OVERRIDE`]); 0 for a
    /// solicitation.
    pub flags: u8,
    pub target: Ipv6Addr,
    /// The link-layer address option: the source's (solicitation) or the target's
    /// (advertisement), if present.
    pub lladdr: Option<[u8; 6]>,
}

/// Why an NDP frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NdpError {
    #[error("not an Ethernet/IPv6 frame: {0:?}")]
    Ip(Ipv6Error),
    #[error("not a neighbour solicitation or advertisement")]
    NotNdp,
    #[error("message shorter than its fixed part")]
    Truncated,
    #[error("hop limit is not 255")]
    BadHopLimit,
    #[error("code is not 0")]
    BadCode,
    #[error("bad ICMPv6 checksum")]
    BadChecksum,
    #[error("multicast target")]
    BadTarget,
    #[error("option of length 0 or past the message")]
    BadOption,
    #[error("addresses not allowed for this message")]
    BadAddress,
}

/// Parses and validates the NDP message of the IPv6 packet `p` described by `ip` (see the module
/// documentation). The first link-layer address option of the kind that belongs to the message
/// is reported; other options are stepped over.
pub fn parse(p: &[u8], ip: &Ipv6Hdr) -> Result<Ndp, NdpError> {
    // Never from a fragment, an atomic one included (RFC 6980).
    if ip.proto != PROTO_ICMPV6 || ip.in_fragment(p) {
        return Err(NdpError::NotNdp);
    }
    let msg = ip.payload(p).ok_or(NdpError::Truncated)?;
    let (kind, want_opt) = match msg.first() {
        Some(&TYPE_NS) => (NdpKind::Solicitation, OPT_SOURCE_LL),
        Some(&TYPE_NA) => (NdpKind::Advertisement, OPT_TARGET_LL),
        _ => return Err(NdpError::NotNdp),
    };
    if msg.len() < MSG_LEN {
        return Err(NdpError::Truncated);
    }
    if ip.hop_limit != HOP_LIMIT {
        return Err(NdpError::BadHopLimit);
    }
    if msg.get(1) != Some(&0) {
        return Err(NdpError::BadCode);
    }
    if !icmpv6::checksum_ok(ip.src, ip.dst, msg) {
        return Err(NdpError::BadChecksum);
    }
    let target = get_ip6(msg, OFF_TARGET).ok_or(NdpError::Truncated)?;
    if target.is_multicast() {
        return Err(NdpError::BadTarget);
    }
    let flags = match kind {
        NdpKind::Solicitation => 0,
        NdpKind::Advertisement => msg.get(4).ok_or(NdpError::Truncated)? & 0xe0,
    };
    let mut lladdr = None;
    let mut off = MSG_LEN;
    // Each round moves at least 8 bytes on: bounded by the message length.
    while off < msg.len() {
        let (ty, units) = match msg.get(off..off + 2) {
            Some(&[t, l]) => (t, usize::from(l)),
            _ => return Err(NdpError::BadOption),
        };
        let len = units * 8;
        if len == 0 || off + len > msg.len() {
            return Err(NdpError::BadOption);
        }
        if ty == want_opt && lladdr.is_none() {
            lladdr = Some(array::<6>(msg, off + 2).ok_or(NdpError::BadOption)?);
        }
        off += len;
    }
    if ip.src.is_multicast() {
        return Err(NdpError::BadAddress);
    }
    match kind {
        NdpKind::Solicitation
            if ip.src.is_unspecified()
                && (lladdr.is_some() || ip.dst != ipv6::solicited_node(target)) =>
        {
            return Err(NdpError::BadAddress);
        }
        NdpKind::Advertisement if ip.dst.is_multicast() && flags & FLAG_SOLICITED != 0 => {
            return Err(NdpError::BadAddress);
        }
        _ => {}
    }
    Ok(Ndp {
        kind,
        flags,
        target,
        lladdr,
    })
}

/// Writes an 86-byte NDP frame into `buf`: Ethernet `eth_dst` <- `src_mac`, IPv6 `src` ->
/// `dst` with hop limit 255, message `ty` with `flags` and `target`, and one link-layer option
/// `opt` holding `src_mac`.
#[allow(clippy::too_many_arguments)]
fn write_frame(
    buf: &mut [u8],
    eth_dst: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    ty: u8,
    flags: u8,
    target: Ipv6Addr,
    opt: u8,
) -> Option<usize> {
    let frame = buf.get_mut(..FRAME_LEN)?;
    frame.fill(0);
    EthHdr {
        dst: eth_dst,
        src: src_mac,
        ethertype: eth::ETHERTYPE_IPV6,
    }
    .write(frame)?;
    let pkt = frame.get_mut(eth::HDR_LEN..)?;
    let plen = (MSG_LEN + 8) as u16;
    ipv6::write_header(pkt, plen, PROTO_ICMPV6, HOP_LIMIT, src, dst)?;
    let msg = pkt.get_mut(ipv6::HDR_LEN..)?;
    put(msg, 0, &[ty, 0, 0, 0, flags])?;
    put_ip6(msg, OFF_TARGET, target)?;
    put(msg, MSG_LEN, &[opt, 1])?;
    put(msg, MSG_LEN + 2, &src_mac)?;
    icmpv6::fill_checksum(src, dst, msg)?;
    Some(FRAME_LEN)
}

/// Turns the frame in `buf` holding the solicitation `ns` (its IPv6 packet described by `ip`,
/// after a 14-byte Ethernet header) into the advertisement that answers it, in place: "`ns.target`
/// is at `our_mac`", from the target address, with the router and override flags, and the
/// solicited flag unless the solicitation came from the unspecified address (duplicate address
/// detection), which is answered to all-nodes (RFC 4861 7.2.4). Sent to the solicitation's
/// source link-layer address, or its frame's source MAC. `buf` needs [`FRAME_LEN`] bytes (the
/// frame may grow). Returns the frame length; `None` (nothing written) without room.
pub fn answer_solicitation(
    buf: &mut [u8],
    ip: &Ipv6Hdr,
    ns: &Ndp,
    our_mac: [u8; 6],
) -> Option<usize> {
    if ns.kind != NdpKind::Solicitation || buf.len() < FRAME_LEN {
        return None;
    }
    let (dst, eth_dst, flags) = if ip.src.is_unspecified() {
        (
            ipv6::ALL_NODES,
            eth::ipv6_multicast_mac(ipv6::ALL_NODES),
            FLAG_ROUTER | FLAG_OVERRIDE,
        )
    } else {
        let mac = match ns.lladdr {
            Some(m) => m,
            None => array::<6>(buf, 6)?,
        };
        (ip.src, mac, FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE)
    };
    write_frame(
        buf,
        eth_dst,
        our_mac,
        ns.target,
        dst,
        TYPE_NA,
        flags,
        ns.target,
        OPT_TARGET_LL,
    )
}

/// Writes "who has `target`? tell `src`" into `buf`: a solicitation to `target`'s
/// solicited-node group with our source link-layer option. Returns [`FRAME_LEN`], `None` if
/// `buf` is shorter (nothing written).
pub fn build_solicitation(
    buf: &mut [u8],
    src_mac: [u8; 6],
    src: Ipv6Addr,
    target: Ipv6Addr,
) -> Option<usize> {
    let group = ipv6::solicited_node(target);
    write_frame(
        buf,
        eth::ipv6_multicast_mac(group),
        src_mac,
        src,
        group,
        TYPE_NS,
        0,
        target,
        OPT_SOURCE_LL,
    )
}

/// Writes an unsolicited advertisement "`target` is at `src_mac`" to all-nodes (RFC 4861
/// 7.2.6), from `target`, with the router and override flags and the target link-layer option.
/// Returns [`FRAME_LEN`], `None` if `buf` is shorter (nothing written).
pub fn build_unsolicited_advertisement(
    buf: &mut [u8],
    src_mac: [u8; 6],
    target: Ipv6Addr,
) -> Option<usize> {
    write_frame(
        buf,
        eth::ipv6_multicast_mac(ipv6::ALL_NODES),
        src_mac,
        target,
        ipv6::ALL_NODES,
        TYPE_NA,
        FLAG_ROUTER | FLAG_OVERRIDE,
        target,
        OPT_TARGET_LL,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
    pub(crate) const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    pub(crate) const HOST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);
    pub(crate) const DIP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

    /// The solicitation the host sends for `target` (from HOST, or from :: for DAD).
    pub(crate) fn ns_frame(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        let mut buf = vec![0u8; 128];
        let n = build_solicitation(&mut buf, HOST_MAC, src, target).unwrap();
        buf.truncate(n);
        if src.is_unspecified() {
            // DAD: no source link-layer option.
            buf.truncate(n - 8);
            ipv6::set_payload_len(&mut buf[14..], MSG_LEN as u16).unwrap();
            let dst = ipv6::solicited_node(target);
            icmpv6::fill_checksum(src, dst, &mut buf[54..]).unwrap();
        }
        buf
    }

    fn parsed(frame: &[u8]) -> Result<(Ipv6Hdr, Ndp), NdpError> {
        let ip = Ipv6Hdr::parse(&frame[14..]).map_err(NdpError::Ip)?;
        Ok((ip, parse(&frame[14..], &ip)?))
    }

    #[test]
    fn solicitation_bytes_and_parse() {
        let f = ns_frame(HOST, DIP);
        assert_eq!(f.len(), FRAME_LEN);
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0, 0, 1]);
        assert_eq!(&f[6..14], &[2, 0, 0, 0, 0, 0x10, 0x86, 0xdd]);
        let (ip, ns) = parsed(&f).unwrap();
        assert_eq!(
            (ip.src, ip.dst, ip.hop_limit),
            (HOST, "ff02::1:ff00:1".parse().unwrap(), 255)
        );
        assert_eq!(
            ns,
            Ndp {
                kind: NdpKind::Solicitation,
                flags: 0,
                target: DIP,
                lladdr: Some(HOST_MAC)
            }
        );
    }

    #[test]
    fn answers_to_the_source_or_all_nodes() {
        let mut f = ns_frame(HOST, DIP);
        f.resize(200, 0xee);
        let (ip, ns) = parsed(&f).unwrap();
        let n = answer_solicitation(&mut f, &ip, &ns, OUR_MAC).unwrap();
        assert_eq!(n, FRAME_LEN);
        assert_eq!(&f[..12], &[2, 0, 0, 0, 0, 0x10, 2, 0, 0, 0, 0, 1]);
        let (ip, na) = parsed(&f[..n]).unwrap();
        assert_eq!((ip.src, ip.dst), (DIP, HOST));
        assert_eq!(
            na,
            Ndp {
                kind: NdpKind::Advertisement,
                flags: FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE,
                target: DIP,
                lladdr: Some(OUR_MAC)
            }
        );
        let mut f = ns_frame(Ipv6Addr::UNSPECIFIED, DIP);
        let (ip, ns) = parsed(&f).unwrap();
        assert_eq!(ns.lladdr, None);
        assert_eq!(
            answer_solicitation(&mut f, &ip, &ns, OUR_MAC),
            None,
            "no room"
        );
        f.resize(FRAME_LEN, 0);
        let n = answer_solicitation(&mut f, &ip, &ns, OUR_MAC).unwrap();
        assert_eq!(&f[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let (ip, na) = parsed(&f[..n]).unwrap();
        assert_eq!((ip.src, ip.dst), (DIP, ipv6::ALL_NODES));
        assert_eq!(na.flags, FLAG_ROUTER | FLAG_OVERRIDE);
    }

    #[test]
    fn unsolicited_advertisement() {
        let mut buf = [0u8; FRAME_LEN];
        assert_eq!(
            build_unsolicited_advertisement(&mut buf[..FRAME_LEN - 1], OUR_MAC, DIP),
            None
        );
        assert!(buf.iter().all(|&b| b == 0));
        build_unsolicited_advertisement(&mut buf, OUR_MAC, DIP).unwrap();
        let (ip, na) = parsed(&buf).unwrap();
        assert_eq!((ip.src, ip.dst), (DIP, ipv6::ALL_NODES));
        assert_eq!(
            (na.flags, na.target, na.lladdr),
            (FLAG_ROUTER | FLAG_OVERRIDE, DIP, Some(OUR_MAC))
        );
    }

    #[test]
    fn refuses_what_rfc4861_refuses() {
        let good = ns_frame(HOST, DIP);
        let refill = |f: &mut Vec<u8>| {
            let ip = Ipv6Hdr::parse(&f[14..]).unwrap();
            icmpv6::fill_checksum(ip.src, ip.dst, &mut f[54..]).unwrap();
        };
        let case = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut f = good.clone();
            edit(&mut f);
            parsed(&f).map(|_| ())
        };
        assert_eq!(case(&|f| f[21] = 64), Err(NdpError::BadHopLimit));
        assert_eq!(
            case(&|f| {
                f[55] = 1;
                refill(f)
            }),
            Err(NdpError::BadCode)
        );
        assert_eq!(case(&|f| f[70] ^= 1), Err(NdpError::BadChecksum));
        assert_eq!(
            case(&|f| {
                f[62] = 0xff;
                refill(f)
            }),
            Err(NdpError::BadTarget)
        );
        assert_eq!(
            case(&|f| {
                f[79] = 0;
                refill(f)
            }),
            Err(NdpError::BadOption)
        );
        assert_eq!(
            case(&|f| {
                f[79] = 2;
                refill(f)
            }),
            Err(NdpError::BadOption)
        );
        // DAD with a source link-layer option.
        assert_eq!(
            case(&|f| {
                f[22..38].fill(0);
                refill(f)
            }),
            Err(NdpError::BadAddress)
        );
        // From a multicast source, a solicitation and an advertisement (whose solicited flag
        // does not matter here).
        for ty in [TYPE_NS, TYPE_NA] {
            assert_eq!(
                case(&|f| {
                    f[54] = ty;
                    f[22..38].copy_from_slice(&ipv6::ALL_NODES.octets());
                    refill(f)
                }),
                Err(NdpError::BadAddress),
                "type {ty}"
            );
        }
        assert_eq!(
            case(&|f| {
                f[54] = icmpv6::TYPE_ECHO_REQUEST;
                refill(f)
            }),
            Err(NdpError::NotNdp)
        );
        let ip = Ipv6Hdr::parse(&good[14..]).unwrap();
        for n in 14..good.len() {
            assert!(parse(&good[14..n], &ip).is_err(), "len {n}");
            assert!(Ipv6Hdr::parse(&good[14..n]).is_err(), "len {n}");
        }
        // In a fragment, an atomic one included (RFC 6980): not taken.
        for more in [false, true] {
            let mut f = good.clone();
            f[20] = ipv6::PROTO_FRAGMENT;
            let word = u16::from(more).to_be_bytes();
            f.splice(54..54, [PROTO_ICMPV6, 0, word[0], word[1], 0, 0, 0, 7]);
            ipv6::set_payload_len(&mut f[14..], 8 + 32).unwrap();
            assert_eq!(parsed(&f).map(|_| ()), Err(NdpError::NotNdp), "more {more}");
        }
        // Options are stepped over; unknown ones too.
        let mut f = good.clone();
        f.splice(78..78, [9u8, 1, 0, 0, 0, 0, 0, 0]);
        ipv6::set_payload_len(&mut f[14..], 40).unwrap();
        refill(&mut f);
        assert_eq!(parsed(&f).unwrap().1.lladdr, Some(HOST_MAC));
    }
}
