//! rvs-pktgen's frames, on plain byte buffers (no DPDK here, so all of it is unit-tested):
//! the client frames it sends to the VIP, the real-server reflection (testpmd's 5tswap plus a
//! stateless TCP peer), the checks on the replies that come back, and ARP.
//!
//! Client frame layout (Ethernet II, IPv4 without options or IPv6 without extension headers):
//!
//! ```text
//! UDP: eth(14) ip(20|40) udp(8)  payload: tsc48(6) flow(4) zero padding
//! TCP: eth(14) ip(20|40) tcp(20) payload: tsc48(6) [flow(4) when the frame has room] padding
//! ```
//!
//! IPv6 frames are the IPv4 ones with the 20 bytes longer header: the shortest is
//! [`MIN_FRAME6`] (80 bytes), with the same L4 header and payload as a [`MIN_FRAME`] IPv4 one.
//!
//! `tsc48` is the low 48 bits of the TSC when the frame was built (wraps after days at any real
//! TSC rate), `flow` the flow index. A 60-byte TCP frame (64 on the wire) only has room for the
//! timestamp, so TCP also carries the flow index in its sequence numbers: the client's ISN is the
//! flow index, and the stateless server acknowledges `seq + payload (+1 for SYN)`, so every reply
//! has `ack - 1 - payload_len == flow` (see [`reflect`]).
//!
//! One file, past 600 lines: about half is the unit tests of the frames it builds and checks.

use dataplane::packet::arp;
use dataplane::packet::checksum::{self, adjust, delta16, delta32, pseudo_header_sum};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_HLEN: usize = 14;
pub const IP_HLEN: usize = 20;
pub const IP6_HLEN: usize = 40;
pub const UDP_HLEN: usize = 8;
pub const TCP_HLEN: usize = 20;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
/// The shortest frame in a buffer: 64 bytes on the wire less the 4-byte FCS the NIC appends.
pub const MIN_FRAME: usize = 60;
/// The shortest IPv6 client frame: a [`MIN_FRAME`] IPv4 frame's L4 header and payload behind
/// the IPv6 header (what a 60-byte TCP frame carries needs 80 bytes over IPv6).
pub const MIN_FRAME6: usize = MIN_FRAME + IP6_HLEN - IP_HLEN;
/// The longest untagged frame for a 1500-byte MTU, without FCS.
pub const MAX_FRAME: usize = 1514;
/// Timestamps are carried in 48 bits.
pub const TSC_MASK: u64 = (1 << 48) - 1;
/// Payload bytes: the timestamp, then the flow index where there is room.
const PAYLOAD_TSC: usize = 6;
const PAYLOAD_FLOW: usize = 4;

// Where the fields sit in a frame without IP options.
pub(crate) const IP: usize = ETH_HLEN;
pub(crate) const IP_SRC: usize = IP + 12;
pub(crate) const IP_DST: usize = IP + 16;
pub(crate) const L4: usize = IP + IP_HLEN;
pub(crate) const IP6_SRC: usize = IP + 8;
pub(crate) const IP6_DST: usize = IP + 24;
pub(crate) const L4_6: usize = IP + IP6_HLEN;

/// The client address space: flow `i` is client `198.51.100.(10 + i / 60000)`, source port
/// `1024 + i % 60000`. Hosts .10 to .254 of the client subnet give 14.7M distinct flows.
pub const CLIENT_FIRST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const PORTS_PER_CLIENT: u32 = 60_000;
pub const CLIENT_PORT_BASE: u16 = 1024;
pub const CLIENT_HOSTS: u32 = 245;
pub const MAX_FLOWS: u32 = CLIENT_HOSTS * PORTS_PER_CLIENT;

/// The client address and port of flow `idx` (below [`MAX_FLOWS`]).
pub fn client_of(idx: u32) -> (Ipv4Addr, u16) {
    let host = u32::from(CLIENT_FIRST) + idx / PORTS_PER_CLIENT;
    let port = CLIENT_PORT_BASE + (idx % PORTS_PER_CLIENT) as u16;
    (Ipv4Addr::from(host), port)
}

/// The flow a client address and port belong to, if they are in the client space.
pub fn flow_of(ip: Ipv4Addr, port: u16) -> Option<u32> {
    let host = u32::from(ip).checked_sub(u32::from(CLIENT_FIRST))?;
    let p = u32::from(port.checked_sub(CLIENT_PORT_BASE)?);
    if host >= CLIENT_HOSTS || p >= PORTS_PER_CLIENT {
        return None;
    }
    Some(host * PORTS_PER_CLIENT + p)
}

/// The IPv6 client address space, the IPv4 one's twin inside 2001:db8:100::/64 (the IPv6
/// clients' and VIP's prefix of the address plan, testkit's `ipv6`): flow `i` is client
/// `2001:db8:100::1:(10 + i / 60000)`, source port `1024 + i % 60000`; [`MAX_FLOWS`] flows.
pub const CLIENT6_FIRST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 1, 10);

/// The IPv6 client address and port of flow `idx` (below [`MAX_FLOWS`]).
pub fn client6_of(idx: u32) -> (Ipv6Addr, u16) {
    let host = u128::from(CLIENT6_FIRST) + u128::from(idx / PORTS_PER_CLIENT);
    let port = CLIENT_PORT_BASE + (idx % PORTS_PER_CLIENT) as u16;
    (Ipv6Addr::from(host), port)
}

/// The flow an IPv6 client address and port belong to, if they are in the client space.
pub fn flow6_of(ip: Ipv6Addr, port: u16) -> Option<u32> {
    let host = u128::from(ip).checked_sub(u128::from(CLIENT6_FIRST))?;
    let p = u32::from(port.checked_sub(CLIENT_PORT_BASE)?);
    if host >= u128::from(CLIENT_HOSTS) || p >= PORTS_PER_CLIENT {
        return None;
    }
    Some(host as u32 * PORTS_PER_CLIENT + p)
}

/// Whether `ip` is one of the client addresses (ARP for these is answered on the client side).
pub fn is_client(ip: Ipv4Addr) -> bool {
    u32::from(ip)
        .checked_sub(u32::from(CLIENT_FIRST))
        .is_some_and(|h| h < CLIENT_HOSTS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Udp => PROTO_UDP,
            Proto::Tcp => PROTO_TCP,
        }
    }

    fn l4_hlen(self) -> usize {
        match self {
            Proto::Udp => UDP_HLEN,
            Proto::Tcp => TCP_HLEN,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Byte access.

pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// Client frames.

/// Builds client frames from a template: everything but the client address, port, timestamp,
/// flow index and TCP sequence numbers is written once, and both checksums start from the sum of
/// the constant part so a frame costs a copy and a dozen additions (the dataplane's checksum
/// code: [`checksum::sum`] and [`checksum::fold`]).
pub struct Generator {
    proto: Proto,
    /// IPv6 frames (the VIP is an IPv6 address), else IPv4.
    v6: bool,
    /// Offset of the L4 header: [`L4`] or [`L4_6`].
    l4: usize,
    len: usize,
    payload_len: usize,
    template: Vec<u8>,
    /// Folded sum of the IPv4 header with source address and checksum zero (IPv6: 0, it has no
    /// header checksum).
    ip_sum: u32,
    /// Folded sum of pseudo header, L4 header and payload with every per-packet field zero.
    l4_sum: u32,
}

impl Generator {
    /// `len` is the frame length in the buffer (no FCS), [`MIN_FRAME`]..=[`MAX_FRAME`] for an
    /// IPv4 `vip`, [`MIN_FRAME6`]..=[`MAX_FRAME`] for an IPv6 one (whose frames are IPv6).
    pub fn new(
        proto: Proto,
        len: usize,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        vip: impl Into<IpAddr>,
        vport: u16,
    ) -> Result<Generator, String> {
        let vip = vip.into();
        let (v6, l4, min) = match vip {
            IpAddr::V4(_) => (false, L4, MIN_FRAME),
            IpAddr::V6(_) => (true, L4_6, MIN_FRAME6),
        };
        if !(min..=MAX_FRAME).contains(&len) {
            return Err(format!(
                "frame length {len} outside {min}..={MAX_FRAME} bytes (without FCS)"
            ));
        }
        let l4_len = len - l4;
        let payload_len = l4_len - proto.l4_hlen();
        let mut t = vec![0u8; len];
        t[0..6].copy_from_slice(&dst_mac);
        t[6..12].copy_from_slice(&src_mac);
        let pseudo = match vip {
            IpAddr::V4(vip) => {
                put16(&mut t, 12, ETHERTYPE_IPV4);
                t[IP] = 0x45;
                put16(&mut t, IP + 2, (len - IP) as u16);
                t[IP + 8] = 64; // TTL
                t[IP + 9] = proto.number();
                t[IP_DST..IP_DST + 4].copy_from_slice(&vip.octets());
                pseudo_header_sum(Ipv4Addr::UNSPECIFIED, vip, proto.number(), l4_len as u16)
            }
            IpAddr::V6(vip) => {
                put16(&mut t, 12, ETHERTYPE_IPV6);
                t[IP] = 0x60; // version 6, traffic class and flow label 0
                put16(&mut t, IP + 4, l4_len as u16); // payload length
                t[IP + 6] = proto.number(); // next header
                t[IP + 7] = 64; // hop limit
                t[IP6_DST..IP6_DST + 16].copy_from_slice(&vip.octets());
                checksum::pseudo_header_sum6(
                    Ipv6Addr::UNSPECIFIED,
                    vip,
                    proto.number(),
                    l4_len as u32,
                )
            }
        };
        put16(&mut t, l4 + 2, vport);
        match proto {
            Proto::Udp => put16(&mut t, l4 + 4, l4_len as u16),
            Proto::Tcp => put16(&mut t, l4 + 14, 65535), // window
        }
        let ip_sum = if v6 { 0 } else { checksum::sum(&t[IP..l4], 0) };
        let l4_sum = checksum::sum(&t[l4..], pseudo);
        Ok(Generator {
            proto,
            v6,
            l4,
            len,
            payload_len,
            template: t,
            ip_sum,
            l4_sum,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Whether the frames are IPv6.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// Writes the frame of flow `idx` into `buf` and returns its length, or 0 when `buf` is too
    /// short. `syn` makes it the flow's opening SYN (TCP only).
    pub fn write(&self, buf: &mut [u8], idx: u32, syn: bool, tsc: u64) -> usize {
        let Some(f) = buf.get_mut(..self.len) else {
            return 0;
        };
        f.copy_from_slice(&self.template);
        // Every per-packet term below is a 16-bit word: a u32 holds their sum unfolded.
        let words = |b: &[u8]| {
            b.chunks_exact(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum::<u32>()
        };
        let (ipw, port) = if self.v6 {
            let (ip, port) = client6_of(idx);
            let ip = ip.octets();
            f[IP6_SRC..IP6_SRC + 16].copy_from_slice(&ip);
            (words(&ip), port)
        } else {
            let (ip, port) = client_of(idx);
            let ip = ip.octets();
            f[IP_SRC..IP_SRC + 4].copy_from_slice(&ip);
            let ipw = words(&ip);
            put16(f, IP + 10, !checksum::fold(self.ip_sum + ipw));
            (ipw, port)
        };

        let l4 = self.l4;
        put16(f, l4, port);
        let payload = l4 + self.proto.l4_hlen();
        let tsc = tsc & TSC_MASK;
        f[payload..payload + PAYLOAD_TSC].copy_from_slice(&tsc.to_be_bytes()[2..]);
        // The tsc's three words sum to the same as its 48 bits folded.
        let tsc_sum = (tsc >> 32) + ((tsc >> 16) & 0xffff) + (tsc & 0xffff);
        let mut var = ipw + u32::from(port) + tsc_sum as u32;
        if self.payload_len >= PAYLOAD_TSC + PAYLOAD_FLOW {
            put32(f, payload + PAYLOAD_TSC, idx);
            var += (idx >> 16) + (idx & 0xffff);
        }
        match self.proto {
            Proto::Udp => {
                let c = !checksum::fold(self.l4_sum + var);
                put16(f, l4 + 6, checksum::udp_nonzero(c));
            }
            Proto::Tcp => {
                // SYN: seq = flow index (the ISN). Later segments: seq = ISN + 1 and they
                // acknowledge the server's SYN (the stateless server's ISN is 0).
                let (seq, ack, flags) = if syn {
                    (idx, 0u32, TCP_SYN)
                } else {
                    (idx.wrapping_add(1), 1u32, TCP_ACK)
                };
                put32(f, l4 + 4, seq);
                put32(f, l4 + 8, ack);
                let off_flags = 0x5000u16 | u16::from(flags);
                put16(f, l4 + 12, off_flags);
                var += (seq >> 16) + (seq & 0xffff) + (ack >> 16) + (ack & 0xffff);
                var += u32::from(off_flags);
                put16(f, l4 + 16, !checksum::fold(self.l4_sum + var));
            }
        }
        self.len
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing what arrives.

/// Why a frame was not what was expected; counted per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Too short for its headers, or lengths that disagree.
    Truncated,
    /// Not IPv4, or IPv4 but neither TCP nor UDP, or not the protocol being sent.
    Protocol,
    /// IPv4 header or L4 checksum wrong.
    Checksum,
    /// Reply source is not VIP:vport.
    Source,
    /// Reply destination is not a client of this run.
    Destination,
    /// The flow index the reply carries is not its destination's.
    Flow,
    /// TCP flags are not what the server side sends (SYN-ACK or ACK).
    Flags,
}

impl Mismatch {
    pub const ALL: [Mismatch; 7] = [
        Mismatch::Truncated,
        Mismatch::Protocol,
        Mismatch::Checksum,
        Mismatch::Source,
        Mismatch::Destination,
        Mismatch::Flow,
        Mismatch::Flags,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mismatch::Truncated => "truncated",
            Mismatch::Protocol => "protocol",
            Mismatch::Checksum => "checksum",
            Mismatch::Source => "source",
            Mismatch::Destination => "destination",
            Mismatch::Flow => "flow",
            Mismatch::Flags => "tcp_flags",
        }
    }
}

/// The L4 view of an IPv4 (or, from [`parse_l4_any`], IPv6) TCP/UDP frame.
pub(crate) struct L4View {
    /// An IPv6 frame: addresses at [`IP6_SRC`] and [`IP6_DST`], else [`IP_SRC`] and [`IP_DST`].
    pub(crate) v6: bool,
    pub(crate) proto: u8,
    /// Offset of the L4 header.
    pub(crate) l4: usize,
    /// Offset of the payload.
    pub(crate) payload: usize,
    /// Offset one past the IP packet (frames may carry Ethernet padding beyond it).
    pub(crate) end: usize,
}

fn ethertype(f: &[u8]) -> u16 {
    be16(f, 12)
}

pub(crate) fn parse_l4(f: &[u8]) -> Result<L4View, Mismatch> {
    if f.len() < L4 {
        return Err(Mismatch::Truncated);
    }
    if ethertype(f) != ETHERTYPE_IPV4 || f[IP] >> 4 != 4 {
        return Err(Mismatch::Protocol);
    }
    let ihl = usize::from(f[IP] & 0xf) * 4;
    let total = usize::from(be16(f, IP + 2));
    let end = IP + total;
    if ihl < IP_HLEN || total < ihl || end > f.len() {
        return Err(Mismatch::Truncated);
    }
    let l4 = IP + ihl;
    let proto = f[IP + 9];
    let hlen = match proto {
        PROTO_UDP => UDP_HLEN,
        PROTO_TCP => {
            if end < l4 + TCP_HLEN {
                return Err(Mismatch::Truncated);
            }
            let doff = usize::from(f[l4 + 12] >> 4) * 4;
            if doff < TCP_HLEN {
                return Err(Mismatch::Truncated);
            }
            doff
        }
        _ => return Err(Mismatch::Protocol),
    };
    if l4 + hlen > end {
        return Err(Mismatch::Truncated);
    }
    Ok(L4View {
        v6: false,
        proto,
        l4,
        payload: l4 + hlen,
        end,
    })
}

/// [`parse_l4`], and IPv6 frames too (TCP or UDP right after the fixed header: no extension
/// headers, which the generator never sends and rvs never adds).
pub(crate) fn parse_l4_any(f: &[u8]) -> Result<L4View, Mismatch> {
    if ethertype(f) != ETHERTYPE_IPV6 {
        return parse_l4(f);
    }
    if f.len() < L4_6 {
        return Err(Mismatch::Truncated);
    }
    if f[IP] >> 4 != 6 {
        return Err(Mismatch::Protocol);
    }
    let end = L4_6 + usize::from(be16(f, IP + 4));
    if end > f.len() {
        return Err(Mismatch::Truncated);
    }
    let (proto, l4) = (f[IP + 6], L4_6);
    let hlen = match proto {
        PROTO_UDP => UDP_HLEN,
        PROTO_TCP => {
            if end < l4 + TCP_HLEN {
                return Err(Mismatch::Truncated);
            }
            let doff = usize::from(f[l4 + 12] >> 4) * 4;
            if doff < TCP_HLEN {
                return Err(Mismatch::Truncated);
            }
            doff
        }
        _ => return Err(Mismatch::Protocol),
    };
    if l4 + hlen > end {
        return Err(Mismatch::Truncated);
    }
    Ok(L4View {
        v6: true,
        proto,
        l4,
        payload: l4 + hlen,
        end,
    })
}

fn ip6_at(f: &[u8], at: usize) -> Ipv6Addr {
    let mut b = [0u8; 16];
    if let Some(s) = f.get(at..at + 16) {
        b.copy_from_slice(s);
    }
    Ipv6Addr::from(b)
}

/// A parsed frame's source and destination addresses.
fn addrs(f: &[u8], v: &L4View) -> (IpAddr, IpAddr) {
    if v.v6 {
        (ip6_at(f, IP6_SRC).into(), ip6_at(f, IP6_DST).into())
    } else {
        (
            Ipv4Addr::from(be32(f, IP_SRC)).into(),
            Ipv4Addr::from(be32(f, IP_DST)).into(),
        )
    }
}

/// Whether the IPv4 header and L4 checksums of a parsed frame are right (IPv6: the L4 one,
/// which UDP must have).
pub(crate) fn checksums_ok(f: &[u8], v: &L4View) -> bool {
    let (Some(ip_hdr), Some(seg)) = (f.get(IP..v.l4), f.get(v.l4..v.end)) else {
        return false;
    };
    if v.v6 {
        let pseudo = checksum::pseudo_header_sum6(
            ip6_at(f, IP6_SRC),
            ip6_at(f, IP6_DST),
            v.proto,
            seg.len() as u32,
        );
        return (v.proto != PROTO_UDP || be16(f, v.l4 + 6) != 0)
            && checksum::fold(checksum::sum(seg, pseudo)) == 0xffff;
    }
    if checksum::fold(checksum::sum(ip_hdr, 0)) != 0xffff {
        return false;
    }
    if v.proto == PROTO_UDP && be16(f, v.l4 + 6) == 0 {
        return true; // sent without a checksum
    }
    let Ok(len) = u16::try_from(seg.len()) else {
        return false;
    };
    let src = Ipv4Addr::from(be32(f, IP_SRC));
    let dst = Ipv4Addr::from(be32(f, IP_DST));
    checksum::fold(checksum::sum(
        seg,
        pseudo_header_sum(src, dst, v.proto, len),
    )) == 0xffff
}

/// What the server side did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflected {
    /// Rewritten in place into the server's answer; send it back out of the same port.
    Reply,
    /// Not answered: a TCP segment the stateless server does not answer (RST, FIN, bare SYN-ACK).
    Ignored,
}

/// The real-server side: turns a TCP/UDP frame into the server's answer in place, as testpmd's
/// 5tswap does (MACs, IP addresses and L4 ports swapped; the checksums do not change because
/// the sums are over the same words). TCP gets a stateless peer on top: a SYN is answered with
/// SYN-ACK (seq 0, ack = seq + payload + 1), any other ACK segment with an ACK (seq = the
/// acknowledgement it got, ack = seq + payload), with the checksum updated incrementally.
/// With `verify`, the frame's checksums are checked first (what the DUT rewrote).
pub fn reflect(f: &mut [u8], verify: bool) -> Result<Reflected, Mismatch> {
    let v = parse_l4_any(f)?;
    if verify && !checksums_ok(f, &v) {
        return Err(Mismatch::Checksum);
    }
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    let (src, dst, alen) = if v.v6 {
        (IP6_SRC, IP6_DST, 16)
    } else {
        (IP_SRC, IP_DST, 4)
    };
    for i in 0..alen {
        f.swap(src + i, dst + i);
    }
    let l4 = v.l4;
    f.swap(l4, l4 + 2);
    f.swap(l4 + 1, l4 + 3);
    if v.proto == PROTO_TCP {
        let flags = f[l4 + 13];
        let seq = be32(f, l4 + 4);
        let ack = be32(f, l4 + 8);
        let len = (v.end - v.payload) as u32;
        let (new_seq, new_ack, new_flags) = if flags & 0x17 == TCP_SYN {
            (0, seq.wrapping_add(len).wrapping_add(1), TCP_SYN | TCP_ACK)
        } else if flags & 0x17 == TCP_ACK {
            (ack, seq.wrapping_add(len), TCP_ACK)
        } else {
            return Ok(Reflected::Ignored);
        };
        let old_word = be16(f, l4 + 12);
        let new_word = (old_word & 0xff00) | u16::from(new_flags);
        let delta = delta32(seq, new_seq) + delta32(ack, new_ack) + delta16(old_word, new_word);
        let c = adjust(be16(f, l4 + 16), delta);
        put32(f, l4 + 4, new_seq);
        put32(f, l4 + 8, new_ack);
        put16(f, l4 + 12, new_word);
        put16(f, l4 + 16, c);
    }
    Ok(Reflected::Reply)
}

/// The queue, of `queues`, an IPv4 TCP/UDP frame goes out on: a hash of its own addresses and
/// ports, as a NIC's RSS would pick the receiving queue on the DUT (memif has no RSS, so the
/// sender picks). A reply is hashed by its own tuple, not its connection's, so after NAT request
/// and reply land on different queues for about 1 - 1/queues of the flows, as with RSS. Other
/// frames: queue 0.
pub fn queue_of(f: &[u8], queues: u16) -> u16 {
    if queues <= 1 {
        return 0;
    }
    let (addrs, l4) = match be16(f, 12) {
        ETHERTYPE_IPV4 if f.len() >= L4 + 4 => (
            (u64::from(be32(f, IP_SRC)) << 32) | u64::from(be32(f, IP_DST)),
            IP + usize::from(f[IP] & 0x0f) * 4,
        ),
        // IPv6 (TCP/UDP right after the header, as the generator sends): both addresses
        // folded into 64 bits.
        ETHERTYPE_IPV6 if f.len() >= L4_6 + 4 => {
            let (s, d) = (
                u128::from(ip6_at(f, IP6_SRC)),
                u128::from(ip6_at(f, IP6_DST)),
            );
            let fold = |a: u128| (a >> 64) as u64 ^ a as u64;
            (fold(s).rotate_left(32) ^ fold(d), L4_6)
        }
        _ => return 0,
    };
    if l4 + 4 > f.len() {
        return 0;
    }
    // splitmix64's finaliser over the addresses and the ports.
    let mut h = addrs ^ u64::from(be32(f, l4)).rotate_left(17);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (((h >> 32) * u64::from(queues)) >> 32) as u16
}

/// A reply that passed the client-side checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub flow: u32,
    /// The low 48 bits of the TSC the client frame was built at.
    pub tsc48: u64,
}

/// The client side: checks a reply is from VIP:vport to the client of the flow it carries, with
/// right checksums (when `verify`), and returns the flow and timestamp.
pub fn check_reply(
    f: &[u8],
    proto: Proto,
    vip: impl Into<IpAddr>,
    vport: u16,
    verify: bool,
) -> Result<Reply, Mismatch> {
    let v = parse_l4_any(f)?;
    if v.proto != proto.number() {
        return Err(Mismatch::Protocol);
    }
    let payload_len = v.end - v.payload;
    if payload_len < PAYLOAD_TSC {
        return Err(Mismatch::Truncated);
    }
    if verify && !checksums_ok(f, &v) {
        return Err(Mismatch::Checksum);
    }
    let (src, dst) = addrs(f, &v);
    if src != vip.into() || be16(f, v.l4) != vport {
        return Err(Mismatch::Source);
    }
    let flow = match dst {
        IpAddr::V4(dst) => flow_of(dst, be16(f, v.l4 + 2)),
        IpAddr::V6(dst) => flow6_of(dst, be16(f, v.l4 + 2)),
    }
    .ok_or(Mismatch::Destination)?;
    let p = v.payload;
    let tsc48 = f[p..p + PAYLOAD_TSC]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if payload_len >= PAYLOAD_TSC + PAYLOAD_FLOW && be32(f, p + PAYLOAD_TSC) != flow {
        return Err(Mismatch::Flow);
    }
    if v.proto == PROTO_TCP {
        let flags = f[v.l4 + 13] & 0x17;
        if flags != TCP_SYN | TCP_ACK && flags != TCP_ACK {
            return Err(Mismatch::Flags);
        }
        let ack = be32(f, v.l4 + 8);
        if ack.wrapping_sub(1).wrapping_sub(payload_len as u32) != flow {
            return Err(Mismatch::Flow);
        }
    }
    Ok(Reply { flow, tsc48 })
}

/// The timestamp of a client frame (as reflected and rewritten), without any other check.
pub fn read_tsc(f: &[u8]) -> Result<u64, Mismatch> {
    let v = parse_l4_any(f)?;
    if v.end - v.payload < PAYLOAD_TSC {
        return Err(Mismatch::Truncated);
    }
    Ok(f[v.payload..v.payload + PAYLOAD_TSC]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

// ---------------------------------------------------------------------------------------------
// ARP (Ethernet/IPv4 only), with the dataplane's parser and encoder (`packet::arp`).

// ---------------------------------------------------------------------------------------------
// Neighbour discovery (IPv6's ARP), with the dataplane's parser and encoder (`packet::ndp`).

/// If `f` is a neighbour solicitation for an address `ours` accepts, rewrites it in place into
/// the advertisement from `mac` (`ndp::answer_solicitation`: to the solicitation's source) and
/// returns its length (86 bytes). `f` is the frame's buffer with its room.
pub fn answer_ndp(f: &mut [u8], mac: [u8; 6], ours: impl Fn(Ipv6Addr) -> bool) -> Option<usize> {
    use dataplane::packet::{ipv6, ndp};
    if f.len() < L4_6 + 4 || ethertype(f) != ETHERTYPE_IPV6 {
        return None;
    }
    let ip = ipv6::Ipv6Hdr::parse(&f[IP..]).ok()?;
    if ip.proto != ipv6::PROTO_ICMPV6 || ip.frag.is_some() {
        return None;
    }
    let ns = ndp::parse(f.get(IP..)?, &ip).ok()?;
    if ns.kind != ndp::NdpKind::Solicitation || !ours(ns.target) {
        return None;
    }
    ndp::answer_solicitation(f, &ip, &ns, mac)
}

/// The IPv6 real servers' prefix, 2001:db8:2::/64 (the address plan's, testkit's `ipv6`).
pub const SERVER6_NET: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x2, 0, 0, 0, 0, 0);

/// Whether `ip` is one of the IPv6 client addresses (solicitations for these are answered on
/// the client side).
pub fn is_client6(ip: Ipv6Addr) -> bool {
    u128::from(ip)
        .checked_sub(u128::from(CLIENT6_FIRST))
        .is_some_and(|h| h < u128::from(CLIENT_HOSTS))
}

/// Whether the server side answers solicitations for `ip`: [`SERVER6_NET`] but its
/// subnet-router anycast address (host part 0) and the DUT's own address `dip`.
pub fn is_server6(ip: Ipv6Addr, dip: Ipv6Addr) -> bool {
    let (a, net) = (u128::from(ip), u128::from(SERVER6_NET));
    a >> 64 == net >> 64 && a as u64 != 0 && ip != dip
}

/// Whether `f` is ICMPv6 right after the IPv6 header: neighbour discovery (or other ICMPv6 the
/// DUT sends), never a client or server frame.
pub fn is_icmp6(f: &[u8]) -> bool {
    use dataplane::packet::ipv6::PROTO_ICMPV6;
    f.len() >= L4_6 && ethertype(f) == ETHERTYPE_IPV6 && f[IP + 6] == PROTO_ICMPV6
}

/// Whether `f` is address resolution rather than traffic: ARP, or ICMPv6 ([`is_icmp6`]).
pub fn is_arp_or_ndp(f: &[u8]) -> bool {
    is_arp(f) || is_icmp6(f)
}

/// Answers an ARP request or a neighbour solicitation for an address `ours` accepts, in place
/// ([`answer_arp`], [`answer_ndp`]); returns the answer's length. `f` is the frame's buffer with
/// its room (86 bytes for an advertisement).
pub fn answer_neighbour(
    f: &mut [u8],
    mac: [u8; 6],
    ours: impl Fn(IpAddr) -> bool,
) -> Option<usize> {
    if is_arp(f) {
        answer_arp(f, mac, |a| ours(a.into()))
    } else {
        answer_ndp(f, mac, |a| ours(a.into()))
    }
}

/// Writes the link probe into `buf`: "who has `target`? tell `src`" from `mac`, an ARP request
/// for IPv4 addresses, a neighbour solicitation (to the target's solicited-node group, with
/// the source link-layer option) for IPv6 ones. Returns its length; 0 when `buf` is too short
/// or the families differ.
pub fn build_probe(buf: &mut [u8], mac: [u8; 6], src: IpAddr, target: IpAddr) -> usize {
    match (src, target) {
        (IpAddr::V4(s), IpAddr::V4(t)) => arp::build_request(buf, mac, s, t),
        (IpAddr::V6(s), IpAddr::V6(t)) => {
            dataplane::packet::ndp::build_solicitation(buf, mac, s, t).unwrap_or(0)
        }
        _ => 0,
    }
}

/// The answer to [`build_probe`]: the MAC that `target` is at, if `f` is an ARP reply from
/// `target` or a valid neighbour advertisement for it (its target link-layer option, else the
/// frame's source MAC).
pub fn probe_answer(f: &[u8], target: IpAddr) -> Option<[u8; 6]> {
    use dataplane::packet::{ipv6, ndp};
    match target {
        IpAddr::V4(t) => {
            let a = arp::parse_frame(f)?;
            (a.op == arp::OP_REPLY && a.spa == t).then_some(a.sha)
        }
        IpAddr::V6(t) => {
            if !is_icmp6(f) {
                return None;
            }
            let ip = ipv6::Ipv6Hdr::parse(&f[IP..]).ok()?;
            let na = ndp::parse(&f[IP..], &ip).ok()?;
            if na.kind != ndp::NdpKind::Advertisement || na.target != t {
                return None;
            }
            na.lladdr.or_else(|| f[6..12].try_into().ok())
        }
    }
}

/// Whether `f` is an ARP frame.
pub fn is_arp(f: &[u8]) -> bool {
    f.len() >= ETH_HLEN && ethertype(f) == ETHERTYPE_ARP
}

/// If `f` is an ARP request for an address `ours` accepts (and not a gratuitous one), rewrites
/// it in place into the reply from `mac`, padded to [`MIN_FRAME`], and returns that length.
/// `f` is the frame's buffer with its room: the reply may be longer than the request.
pub fn answer_arp(f: &mut [u8], mac: [u8; 6], ours: impl Fn(Ipv4Addr) -> bool) -> Option<usize> {
    let f = f.get_mut(..MIN_FRAME)?;
    let req = arp::parse_frame(f)?;
    if req.op != arp::OP_REQUEST || !ours(req.tpa) || req.spa == req.tpa {
        return None;
    }
    arp::reply_in_place(f, &req, mac)?;
    Some(MIN_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const DST: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    /// Both checksums right, by testkit's reference checksum (not the dataplane code the frames
    /// are built and checked with); `checksums_ok` must say the same.
    fn full_ok(f: &[u8]) -> bool {
        let v = parse_l4(f).unwrap();
        let seg = &f[v.l4..v.end];
        let stored = be16(seg, if v.proto == PROTO_UDP { 6 } else { 16 });
        let (src, dst) = (
            Ipv4Addr::from(be32(f, IP_SRC)),
            Ipv4Addr::from(be32(f, IP_DST)),
        );
        let ok = testkit::inet_checksum(&f[IP..v.l4]) == 0
            && ((v.proto == PROTO_UDP && stored == 0)
                || testkit::l4_checksum(src, dst, v.proto, seg) == stored);
        assert_eq!(checksums_ok(f, &v), ok);
        ok
    }

    /// What the DUT does: DNAT to a real server, as rvs would (full checksum recompute).
    fn dnat(f: &mut [u8], rip: Ipv4Addr, rport: u16) {
        let v = parse_l4(f).unwrap();
        f[IP_DST..IP_DST + 4].copy_from_slice(&rip.octets());
        put16(f, v.l4 + 2, rport);
        recompute(f);
    }

    fn snat(f: &mut [u8], vip: Ipv4Addr, vport: u16) {
        let v = parse_l4(f).unwrap();
        f[IP_SRC..IP_SRC + 4].copy_from_slice(&vip.octets());
        put16(f, v.l4, vport);
        recompute(f);
    }

    /// Both checksums recomputed with testkit's reference checksum.
    fn recompute(f: &mut [u8]) {
        let v = parse_l4(f).unwrap();
        put16(f, IP + 10, 0);
        let c = testkit::inet_checksum(&f[IP..v.l4]);
        put16(f, IP + 10, c);
        let at = if v.proto == PROTO_UDP {
            v.l4 + 6
        } else {
            v.l4 + 16
        };
        let (src, dst) = (
            Ipv4Addr::from(be32(f, IP_SRC)),
            Ipv4Addr::from(be32(f, IP_DST)),
        );
        let c = testkit::l4_checksum(src, dst, v.proto, &f[v.l4..v.end]);
        put16(f, at, c);
    }

    #[test]
    fn flow_space_round_trips() {
        for idx in [0, 1, 59_999, 60_000, 1_000_000, 9_999_999, MAX_FLOWS - 1] {
            let (ip, port) = client_of(idx);
            assert_eq!(flow_of(ip, port), Some(idx), "{idx}");
            assert!(is_client(ip));
        }
        assert_eq!(client_of(0), (CLIENT_FIRST, 1024));
        assert_eq!(client_of(MAX_FLOWS - 1).0, Ipv4Addr::new(198, 51, 100, 254));
        assert_eq!(flow_of(Ipv4Addr::new(198, 51, 100, 9), 2000), None);
        assert_eq!(flow_of(CLIENT_FIRST, 1023), None);
        assert_eq!(flow_of(CLIENT_FIRST, 61_024), None);
        assert!(!is_client(VIP));
        assert!(!is_client(Ipv4Addr::new(198, 51, 100, 255)));
    }

    #[test]
    fn generated_frames_have_right_checksums() {
        for proto in [Proto::Udp, Proto::Tcp] {
            for len in [60, 61, 64, 128, 1514] {
                let g = Generator::new(proto, len, SRC, DST, VIP, 9000).unwrap();
                let mut buf = vec![0u8; 2048];
                for (idx, syn, tsc) in [
                    (0, true, 0),
                    (123_456, false, u64::MAX),
                    (MAX_FLOWS - 1, true, 0x1234_5678_9abc_def0),
                ] {
                    assert_eq!(g.write(&mut buf, idx, syn, tsc), len);
                    let f = &buf[..len];
                    assert!(full_ok(f), "{proto:?} len {len} idx {idx}");
                    let (ip, port) = client_of(idx);
                    assert_eq!(Ipv4Addr::from(be32(f, IP_SRC)), ip);
                    assert_eq!(be16(f, L4), port);
                    assert_eq!(be16(f, L4 + 2), 9000);
                }
            }
        }
    }

    #[test]
    fn ipv6_frames_are_right_by_testkit() {
        use testkit::ipv6::{checksum6, VIP6};
        assert_eq!(client6_of(0), (CLIENT6_FIRST, 1024));
        for idx in [0, 1, 60_000, 9_999_999, MAX_FLOWS - 1] {
            let (ip, port) = client6_of(idx);
            assert_eq!(flow6_of(ip, port), Some(idx));
            assert!(ip.segments()[..4] == [0x2001, 0xdb8, 0x100, 0]);
        }
        assert_eq!(flow6_of(VIP6, 2000), None);
        assert!(Generator::new(Proto::Tcp, MIN_FRAME6 - 1, SRC, DST, VIP6, 80).is_err());
        for proto in [Proto::Udp, Proto::Tcp] {
            for len in [MIN_FRAME6, 81, 200, MAX_FRAME] {
                let g = Generator::new(proto, len, SRC, DST, VIP6, 9000).unwrap();
                assert!(g.is_v6());
                // Same L4 header and payload as the IPv4 frame 20 bytes shorter.
                let g4 = Generator::new(proto, len - 20, SRC, DST, VIP, 9000).unwrap();
                assert_eq!(g.payload_len(), g4.payload_len());
                let mut buf = vec![0u8; 2048];
                for (idx, syn, tsc) in [(0, true, 0), (123_456, false, u64::MAX)] {
                    assert_eq!(g.write(&mut buf, idx, syn, tsc), len);
                    let f = &buf[..len];
                    assert_eq!(be16(f, 12), ETHERTYPE_IPV6);
                    assert_eq!(f[IP] >> 4, 6);
                    assert_eq!(usize::from(be16(f, IP + 4)), len - L4_6);
                    assert_eq!(f[IP + 6], proto.number());
                    let src =
                        Ipv6Addr::from(<[u8; 16]>::try_from(&f[IP6_SRC..IP6_SRC + 16]).unwrap());
                    let dst =
                        Ipv6Addr::from(<[u8; 16]>::try_from(&f[IP6_DST..IP6_DST + 16]).unwrap());
                    let (ip, port) = client6_of(idx);
                    assert_eq!((src, dst), (ip, VIP6));
                    assert_eq!((be16(f, L4_6), be16(f, L4_6 + 2)), (port, 9000));
                    // The checksum over the segment with its checksum in place: 0.
                    assert_eq!(
                        checksum6(src, dst, proto.number(), &f[L4_6..]),
                        0,
                        "{proto:?} {len}"
                    );
                    let mut g4f = vec![0u8; len - 20];
                    g4.write(&mut g4f, idx, syn, tsc);
                    // L4 past the ports and checksum: the same bytes.
                    let (c6, c4) = if proto == Proto::Udp {
                        (6, 6)
                    } else {
                        (16, 16)
                    };
                    assert_eq!(f[L4_6 + 2..L4_6 + c6], g4f[L4 + 2..L4 + c4]);
                    assert_eq!(f[L4_6 + c6 + 2..], g4f[L4 + c4 + 2..]);
                }
            }
        }
    }

    /// IPv6 DNAT or SNAT as rvs does it, with testkit's checksum: `dst` side (DNAT) or source.
    fn nat6(f: &mut [u8], dnat: bool, addr: Ipv6Addr, port: u16) {
        let (at, pat) = if dnat {
            (IP6_DST, L4_6 + 2)
        } else {
            (IP6_SRC, L4_6)
        };
        f[at..at + 16].copy_from_slice(&addr.octets());
        put16(f, pat, port);
        let v = parse_l4_any(f).unwrap();
        let off = v.l4 + if v.proto == PROTO_UDP { 6 } else { 16 };
        put16(f, off, 0);
        let c = testkit::ipv6::checksum6(
            ip6_at(f, IP6_SRC),
            ip6_at(f, IP6_DST),
            v.proto,
            &f[v.l4..v.end],
        );
        put16(
            f,
            off,
            if c == 0 && v.proto == PROTO_UDP {
                0xffff
            } else {
                c
            },
        );
    }

    /// Client -> DUT (DNAT) -> server reflection -> DUT (SNAT) -> client check, over IPv6.
    #[test]
    fn ipv6_round_trip_through_a_nat_passes_the_checks() {
        use testkit::ipv6::{RIP6_1, VIP6};
        for proto in [Proto::Udp, Proto::Tcp] {
            for len in [MIN_FRAME6, 84, 200] {
                for syn in [true, false] {
                    let g = Generator::new(proto, len, SRC, DST, VIP6, 80).unwrap();
                    let mut f = vec![0u8; len];
                    let tsc = 0xabcd_0123_4567_89ab;
                    g.write(&mut f, 777_777, syn, tsc);
                    assert!(checksums_ok(&f, &parse_l4_any(&f).unwrap()));
                    // Not IPv4: the IPv4-only parser refuses it.
                    assert_eq!(parse_l4(&f).err(), Some(Mismatch::Protocol));
                    nat6(&mut f, true, RIP6_1, 8080);
                    assert_eq!(reflect(&mut f, true), Ok(Reflected::Reply));
                    assert_eq!(ip6_at(&f, IP6_SRC), RIP6_1);
                    assert_eq!(be16(&f, L4_6), 8080);
                    assert_eq!(f[0..6], SRC);
                    if proto == Proto::Tcp {
                        let want = if syn { TCP_SYN | TCP_ACK } else { TCP_ACK };
                        assert_eq!(f[L4_6 + 13], want);
                    }
                    nat6(&mut f, false, VIP6, 80);
                    let want = Reply {
                        flow: 777_777,
                        tsc48: tsc & TSC_MASK,
                    };
                    assert_eq!(check_reply(&f, proto, VIP6, 80, true), Ok(want));
                    assert_eq!(read_tsc(&f), Ok(tsc & TSC_MASK));
                    assert_eq!(check_reply(&f, proto, VIP, 80, true), Err(Mismatch::Source));
                    let mut bad = f.clone();
                    bad[IP + 7] = 1; // hop limit: not in the checksum
                    assert!(check_reply(&bad, proto, VIP6, 80, true).is_ok());
                    bad[IP6_DST + 15] ^= 1; // another destination, checksum not updated
                    assert_eq!(
                        check_reply(&bad, proto, VIP6, 80, true),
                        Err(Mismatch::Checksum)
                    );
                }
            }
        }
    }

    #[test]
    fn ipv6_queues_spread_flows() {
        let g = Generator::new(Proto::Udp, MIN_FRAME6, SRC, DST, testkit::ipv6::VIP6, 80).unwrap();
        let mut buf = [0u8; 128];
        let on_one: usize = (0..1000)
            .map(|flow| {
                let n = g.write(&mut buf, flow, false, 0);
                assert!(queue_of(&buf[..n], 8) < 8);
                usize::from(queue_of(&buf[..n], 2) == 1)
            })
            .sum();
        assert!((400..600).contains(&on_one), "{on_one} of 1000 on queue 1");
    }

    #[test]
    fn neighbour_solicitations_for_our_addresses_are_answered() {
        use dataplane::packet::{ipv6::Ipv6Hdr, ndp};
        use testkit::ipv6::{neighbour_solicitation, DIP6, RIP6_1};
        let peer = [2, 0, 0, 0, 0, 2];
        let mut f = neighbour_solicitation(peer, DIP6, RIP6_1);
        let mut other = f.clone();
        f.resize(128, 0);
        let n = answer_ndp(&mut f, SRC, |a| a == RIP6_1).unwrap();
        let ip = Ipv6Hdr::parse(&f[IP..n]).unwrap();
        let na = ndp::parse(&f[IP..n], &ip).unwrap();
        assert_eq!(na.kind, ndp::NdpKind::Advertisement);
        assert_eq!((na.target, na.lladdr), (RIP6_1, Some(SRC)));
        assert_eq!((ip.src, ip.dst), (RIP6_1, DIP6));
        assert_eq!((&f[0..6], &f[6..12]), (&peer[..], &SRC[..]));
        // Not ours, an advertisement, not NDP: left alone.
        other.resize(128, 0);
        assert_eq!(answer_ndp(&mut other, SRC, |_| false), None);
        assert_eq!(answer_ndp(&mut f, SRC, |_| true), None);
        let g = Generator::new(Proto::Udp, MIN_FRAME6, SRC, DST, RIP6_1, 80).unwrap();
        let mut d = [0u8; 128];
        g.write(&mut d, 0, false, 0);
        assert_eq!(answer_ndp(&mut d, SRC, |_| true), None);
    }

    /// The server side's reflection of IPv6 frames the DUT rewrote: both checksums right by
    /// testkit's full recompute after the port and address swap and the TCP peer's rewrite.
    #[test]
    fn ipv6_reflection_keeps_checksums_right_by_testkit() {
        use testkit::ipv6::{checksum6, RIP6_2, VIP6};
        for proto in [Proto::Udp, Proto::Tcp] {
            for len in [MIN_FRAME6, 100, MAX_FRAME] {
                for syn in [true, false] {
                    let g = Generator::new(proto, len, SRC, DST, VIP6, 9000).unwrap();
                    let mut f = vec![0u8; len];
                    g.write(&mut f, 4_242_424, syn, 0x0123_4567_89ab);
                    nat6(&mut f, true, RIP6_2, 9000);
                    assert_eq!(reflect(&mut f, true), Ok(Reflected::Reply));
                    let (src, dst) = (ip6_at(&f, IP6_SRC), ip6_at(&f, IP6_DST));
                    assert_eq!((src, dst), (RIP6_2, client6_of(4_242_424).0));
                    assert_eq!(checksum6(src, dst, proto.number(), &f[L4_6..]), 0);
                    if proto == Proto::Tcp {
                        // The stateless peer: SYN-ACK (seq 0) or ACK, acknowledging seq + len.
                        let plen = (len - L4_6 - TCP_HLEN) as u32;
                        let seq = if syn { 4_242_424 } else { 4_242_425 };
                        let ack = seq + plen + u32::from(syn);
                        assert_eq!(be32(&f, L4_6 + 8), ack);
                        assert_eq!(be32(&f, L4_6 + 4), if syn { 0 } else { 1 });
                    }
                }
            }
        }
    }

    #[test]
    fn ipv6_client_and_server_addresses() {
        use testkit::ipv6::{DIP6, RIP6_1, VIP6};
        assert!(is_client6(CLIENT6_FIRST) && is_client6(client6_of(MAX_FLOWS - 1).0));
        assert!(!is_client6(VIP6) && !is_client6(RIP6_1));
        assert!(!is_client6(Ipv6Addr::from(u128::from(CLIENT6_FIRST) + 245)));
        assert!(is_server6(RIP6_1, DIP6) && is_server6(crate::rip6(3), DIP6));
        assert!(!is_server6(DIP6, DIP6) && !is_server6(SERVER6_NET, DIP6));
        assert!(!is_server6(VIP6, DIP6) && !is_server6(CLIENT6_FIRST, DIP6));
    }

    /// The link probe: an ARP request or a neighbour solicitation byte for byte as testkit
    /// builds it, answered as the DUT answers, and the answer read back.
    #[test]
    fn link_probe_is_built_and_its_answer_read() {
        use testkit::ipv6::{checksum6, neighbour_advertisement, neighbour_solicitation, VIP6};
        let dut = [2, 0, 0, 0, 0, 1];
        let c6 = client6_of(0).0;
        let mut buf = [0u8; 128];
        let n = build_probe(&mut buf, SRC, c6.into(), VIP6.into());
        assert_eq!(buf[..n], neighbour_solicitation(SRC, c6, VIP6)[..]);
        // The ICMPv6 checksum by testkit's full recompute.
        let group = ip6_at(&buf, IP6_DST);
        assert_eq!(checksum6(c6, group, 58, &buf[L4_6..n]), 0);
        assert!(is_icmp6(&buf[..n]) && is_arp_or_ndp(&buf[..n]) && !is_arp(&buf[..n]));
        // Answered as rvsd answers it, then read back.
        let mut ans = buf;
        let len = answer_ndp(&mut ans, dut, |a| a == VIP6).unwrap();
        assert_eq!(probe_answer(&ans[..len], VIP6.into()), Some(dut));
        assert_eq!(probe_answer(&ans[..len], c6.into()), None);
        assert_eq!(probe_answer(&buf[..n], VIP6.into()), None); // a solicitation
        let na = neighbour_advertisement(SRC, dut, VIP6, c6);
        assert_eq!(probe_answer(&na, VIP6.into()), Some(dut));
        let mut bad = na.clone();
        bad[L4_6 + 2] ^= 1; // checksum
        assert_eq!(probe_answer(&bad, VIP6.into()), None);

        let c4 = client_of(0).0;
        let n = build_probe(&mut buf, SRC, c4.into(), VIP.into());
        let req = arp::parse_frame(&buf[..n]).unwrap();
        assert_eq!((req.op, req.spa, req.tpa), (arp::OP_REQUEST, c4, VIP));
        let reply = testkit::eth(SRC, dut, 0x0806, &testkit::arp(2, dut, VIP, SRC, c4));
        assert_eq!(probe_answer(&reply, VIP.into()), Some(dut));
        assert_eq!(probe_answer(&reply, c4.into()), None);
        assert_eq!(build_probe(&mut buf, SRC, c4.into(), VIP6.into()), 0);
        assert_eq!(build_probe(&mut buf[..40], SRC, c6.into(), VIP6.into()), 0);
    }

    /// rvsd resolving a client (ext side) or a real server (int side): ARP and solicitations
    /// answered by one call, for the side's own addresses only.
    #[test]
    fn neighbour_requests_of_both_families_are_answered() {
        use testkit::ipv6::{neighbour_solicitation, DIP6, RIP6_1, VIP6};
        let dut = [2, 0, 0, 0, 0, 2];
        let servers = |a: IpAddr| match a {
            IpAddr::V4(a) => a == Ipv4Addr::new(192, 0, 2, 2),
            IpAddr::V6(a) => is_server6(a, DIP6),
        };
        let mut ns = neighbour_solicitation(dut, DIP6, RIP6_1);
        ns.resize(128, 0);
        assert_eq!(answer_neighbour(&mut ns, SRC, servers), Some(86));
        assert_eq!(probe_answer(&ns[..86], RIP6_1.into()), Some(SRC));
        let mut ns = neighbour_solicitation(dut, VIP6, DIP6);
        ns.resize(128, 0);
        assert_eq!(answer_neighbour(&mut ns, SRC, servers), None);
        let req = testkit::arp(
            arp::OP_REQUEST,
            dut,
            Ipv4Addr::new(192, 0, 2, 1),
            [0; 6],
            Ipv4Addr::new(192, 0, 2, 2),
        );
        let mut f = testkit::eth([0xff; 6], dut, 0x0806, &req);
        f.resize(64, 0);
        assert_eq!(answer_neighbour(&mut f, SRC, servers), Some(60));
        let g = Generator::new(Proto::Udp, MIN_FRAME6, SRC, DST, VIP6, 80).unwrap();
        let mut d = [0u8; 128];
        let n = g.write(&mut d, 0, false, 0);
        assert!(!is_arp_or_ndp(&d[..n]));
        assert_eq!(answer_neighbour(&mut d, SRC, |_| true), None);
    }

    #[test]
    fn short_buffer_or_bad_length_is_refused() {
        assert!(Generator::new(Proto::Udp, 59, SRC, DST, VIP, 1).is_err());
        assert!(Generator::new(Proto::Udp, 1515, SRC, DST, VIP, 1).is_err());
        let g = Generator::new(Proto::Udp, 60, SRC, DST, VIP, 1).unwrap();
        assert_eq!(g.write(&mut [0u8; 59], 0, false, 0), 0);
    }

    /// Client -> DUT (DNAT) -> server reflection -> DUT (SNAT) -> client check, as with rvsd.
    #[test]
    fn round_trip_through_a_nat_passes_the_checks() {
        let rip = Ipv4Addr::new(192, 0, 2, 3);
        for proto in [Proto::Udp, Proto::Tcp] {
            for len in [60, 64, 200] {
                for syn in [true, false] {
                    let g = Generator::new(proto, len, SRC, DST, VIP, 80).unwrap();
                    let mut f = vec![0u8; len];
                    let tsc = 0xabcd_0123_4567_89ab;
                    g.write(&mut f, 777_777, syn, tsc);
                    dnat(&mut f, rip, 8080);
                    assert_eq!(reflect(&mut f, true), Ok(Reflected::Reply));
                    assert!(full_ok(&f), "{proto:?} {len} {syn}");
                    assert_eq!(Ipv4Addr::from(be32(&f, IP_SRC)), rip);
                    assert_eq!(be16(&f, L4), 8080);
                    assert_eq!(f[0..6], SRC);
                    if proto == Proto::Tcp {
                        let want = if syn { TCP_SYN | TCP_ACK } else { TCP_ACK };
                        assert_eq!(f[L4 + 13], want);
                    }
                    snat(&mut f, VIP, 80);
                    let r = check_reply(&f, proto, VIP, 80, true).unwrap();
                    assert_eq!(
                        r,
                        Reply {
                            flow: 777_777,
                            tsc48: tsc & TSC_MASK
                        }
                    );
                }
            }
        }
    }

    /// With testpmd io forwarding nothing is rewritten: the reflection alone makes a valid reply.
    #[test]
    fn plain_reflection_passes_the_checks() {
        for proto in [Proto::Udp, Proto::Tcp] {
            let g = Generator::new(proto, 60, SRC, DST, VIP, 9000).unwrap();
            let mut f = vec![0u8; 60];
            g.write(&mut f, 42, true, 99);
            reflect(&mut f, true).unwrap();
            assert_eq!(
                check_reply(&f, proto, VIP, 9000, true),
                Ok(Reply {
                    flow: 42,
                    tsc48: 99
                })
            );
        }
    }

    #[test]
    fn mismatches_are_classified() {
        let g = Generator::new(Proto::Udp, 64, SRC, DST, VIP, 9000).unwrap();
        let mut f = vec![0u8; 64];
        g.write(&mut f, 5, false, 1);
        reflect(&mut f, false).unwrap();
        let good = f.clone();

        assert_eq!(
            check_reply(&f, Proto::Tcp, VIP, 9000, true),
            Err(Mismatch::Protocol)
        );
        assert_eq!(
            check_reply(&f, Proto::Udp, VIP, 9001, true),
            Err(Mismatch::Source)
        );
        assert_eq!(
            check_reply(&f[..40], Proto::Udp, VIP, 9000, true),
            Err(Mismatch::Truncated)
        );

        f[IP + 8] = 1; // TTL changed without a checksum update
        assert_eq!(
            check_reply(&f, Proto::Udp, VIP, 9000, true),
            Err(Mismatch::Checksum)
        );
        assert!(check_reply(&f, Proto::Udp, VIP, 9000, false).is_ok());

        let mut f = good.clone();
        f[IP_DST + 3] = 200; // another client, whose flow index differs from the payload's
        recompute(&mut f);
        assert_eq!(
            check_reply(&f, Proto::Udp, VIP, 9000, true),
            Err(Mismatch::Flow)
        );
        f[IP_DST + 2] = 99;
        recompute(&mut f);
        assert_eq!(
            check_reply(&f, Proto::Udp, VIP, 9000, true),
            Err(Mismatch::Destination)
        );

        let mut f = good;
        f[12] = 0x86;
        assert_eq!(
            check_reply(&f, Proto::Udp, VIP, 9000, true),
            Err(Mismatch::Protocol)
        );
    }

    #[test]
    fn tcp_reset_is_not_answered_and_bad_flags_are_caught() {
        let g = Generator::new(Proto::Tcp, 60, SRC, DST, VIP, 80).unwrap();
        let mut f = vec![0u8; 60];
        g.write(&mut f, 1, false, 0);
        let mut rst = f.clone();
        rst[L4 + 13] = 0x04;
        recompute(&mut rst);
        assert_eq!(reflect(&mut rst, true), Ok(Reflected::Ignored));
        reflect(&mut f, true).unwrap();
        f[L4 + 13] = TCP_ACK | 0x01; // FIN-ACK
        recompute(&mut f);
        assert_eq!(
            check_reply(&f, Proto::Tcp, VIP, 80, true),
            Err(Mismatch::Flags)
        );
    }

    #[test]
    fn arp_requests_for_our_addresses_are_answered() {
        let peer = [2, 0, 0, 0, 0, 2];
        let (spa, tpa) = (
            Ipv4Addr::new(198, 51, 100, 1),
            Ipv4Addr::new(198, 51, 100, 11),
        );
        // The request as a kernel sends it (42 bytes), in a buffer with room for the reply.
        let req = testkit::arp(arp::OP_REQUEST, peer, spa, [0; 6], tpa);
        let mut f = [&[0xff; 6][..], &peer, &[0x08, 0x06], &req].concat();
        assert_eq!(f.len(), 42);
        f.resize(64, 0xee);
        let mut other = f.clone();
        assert_eq!(answer_arp(&mut f, SRC, is_client), Some(60));
        let reply = arp::parse_frame(&f).unwrap();
        assert_eq!(
            reply,
            arp::Arp {
                op: arp::OP_REPLY,
                sha: SRC,
                spa: tpa,
                tha: peer,
                tpa: spa
            }
        );
        assert_eq!(f[0..6], peer);
        assert_eq!(f[6..12], SRC);
        // Byte for byte the reply testkit builds (padding zeroed).
        let want = testkit::eth(peer, SRC, 0x0806, &testkit::arp(2, SRC, tpa, peer, spa));
        assert_eq!(f[..60], want[..]);
        // Not ours: left alone.
        assert_eq!(answer_arp(&mut other, SRC, |_| false), None);
        // A reply is not answered, nor a gratuitous request.
        assert_eq!(answer_arp(&mut f, SRC, |_| true), None);
        let gratuitous = testkit::arp(arp::OP_REQUEST, peer, tpa, [0; 6], tpa);
        let mut g = testkit::eth([0xff; 6], peer, 0x0806, &gratuitous);
        assert_eq!(answer_arp(&mut g, SRC, |_| true), None);
        assert!(arp::parse_frame(&f[..30]).is_none());
        assert!(!is_arp(&f[..13]) && is_arp(&f));
    }

    #[test]
    fn queues_spread_flows_and_split_request_from_reply() {
        let g = Generator::new(Proto::Udp, 60, SRC, DST, VIP, 9000).unwrap();
        let rip = Ipv4Addr::new(192, 0, 2, 2);
        let mut buf = [0u8; 128];
        let (mut on_one, mut split) = (0, 0);
        for flow in 0..1000 {
            let n = g.write(&mut buf, flow, false, 0);
            let f = &mut buf[..n];
            assert_eq!(queue_of(f, 1), 0);
            let q = queue_of(f, 2);
            on_one += usize::from(q == 1);
            assert!(queue_of(f, 8) < 8);
            // The reply rvs forwards back: from the real server to the client.
            dnat(f, rip, 9000);
            reflect(f, false).unwrap();
            split += usize::from(queue_of(f, 2) != q);
        }
        assert!((400..600).contains(&on_one), "{on_one} of 1000 on queue 1");
        assert!((400..600).contains(&split), "{split} of 1000 split");
        // Not IPv4: queue 0.
        assert_eq!(queue_of(&[0u8; 60], 4), 0);
        assert_eq!(queue_of(&[], 4), 0);
    }
}
