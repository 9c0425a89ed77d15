//! Parsing and in-place rewriting of Ethernet, ARP, IPv4, IPv6, TCP, UDP, ICMP, ICMPv6 and NDP
//! on plain byte buffers.
//!
//! Every function takes `&[u8]`/`&mut [u8]` and returns `Option`/`Result`: malformed or truncated
//! input is an error value, never a panic. Offsets are relative to the start of the header the
//! function is about (the Ethernet frame, the IPv4 packet, the L4 segment).

pub mod arp;
pub mod checksum;
pub mod eth;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod ndp;

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What every layer asks of a parsed IPv4 or IPv6 header, whatever it does with the packet:
/// its addresses, protocol, fragment state, length and upper-layer bytes, and where the
/// addresses sit. The layers' own family traits build on it (`icmp::ErrorHeader`,
/// `l4::ReplyHeader`, the pipeline's `IpHeader`), so each of these is said once.
pub trait IpHdr {
    type Addr: Copy + Eq + Debug + Into<IpAddr>;
    /// Offsets of the source and destination addresses in the header.
    const OFF_SRC: usize;
    const OFF_DST: usize;
    /// The fixed header's length (no options, no extension headers).
    const MIN_HDR_LEN: usize;
    fn src(&self) -> Self::Addr;
    fn dst(&self) -> Self::Addr;
    /// The upper-layer protocol (after IPv6's extension headers).
    fn proto(&self) -> u8;
    /// A fragment (an IPv6 atomic fragment is not one).
    fn is_fragment(&self) -> bool;
    /// The packet's length from the IP header on (padding after it excluded).
    fn packet_len(&self) -> usize;
    /// The upper-layer bytes of the packet `l3` (which starts at the IP header).
    fn upper<'a>(&self, l3: &'a [u8]) -> Option<&'a [u8]>;
}

impl IpHdr for ipv4::Ipv4Hdr {
    type Addr = Ipv4Addr;
    const OFF_SRC: usize = ipv4::OFF_SRC;
    const OFF_DST: usize = ipv4::OFF_DST;
    const MIN_HDR_LEN: usize = ipv4::MIN_HDR_LEN;
    #[inline]
    fn src(&self) -> Ipv4Addr {
        self.src
    }
    #[inline]
    fn dst(&self) -> Ipv4Addr {
        self.dst
    }
    #[inline]
    fn proto(&self) -> u8 {
        self.proto
    }
    #[inline]
    fn is_fragment(&self) -> bool {
        ipv4::Ipv4Hdr::is_fragment(self)
    }
    #[inline]
    fn packet_len(&self) -> usize {
        self.total_len
    }
    #[inline]
    fn upper<'a>(&self, l3: &'a [u8]) -> Option<&'a [u8]> {
        self.payload(l3)
    }
}

impl IpHdr for ipv6::Ipv6Hdr {
    type Addr = Ipv6Addr;
    const OFF_SRC: usize = ipv6::OFF_SRC;
    const OFF_DST: usize = ipv6::OFF_DST;
    const MIN_HDR_LEN: usize = ipv6::HDR_LEN;
    #[inline]
    fn src(&self) -> Ipv6Addr {
        self.src
    }
    #[inline]
    fn dst(&self) -> Ipv6Addr {
        self.dst
    }
    #[inline]
    fn proto(&self) -> u8 {
        self.proto
    }
    #[inline]
    fn is_fragment(&self) -> bool {
        ipv6::Ipv6Hdr::is_fragment(self)
    }
    #[inline]
    fn packet_len(&self) -> usize {
        self.total_len
    }
    #[inline]
    fn upper<'a>(&self, l3: &'a [u8]) -> Option<&'a [u8]> {
        self.payload(l3)
    }
}

/// Why a packet could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its headers or its stated length.
    Truncated,
    /// IP version is not 4.
    BadVersion,
    /// IHL below 5 (20 bytes).
    BadHeaderLen,
    /// Total length below the header length or beyond the frame.
    BadTotalLen,
    /// The IPv4 header checksum does not verify.
    BadChecksum,
    /// A fragment (MF set or offset non-zero).
    Fragment,
    /// A header field has a value this parser does not handle (e.g. ARP for another hardware).
    Unsupported,
}

/// Big-endian u16 at `off`.
#[inline]
pub(crate) fn get16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

/// `N` bytes at `off`.
#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// An IPv4 address stored at `off`.
#[inline]
pub(crate) fn get_ip(b: &[u8], off: usize) -> Option<Ipv4Addr> {
    array::<4>(b, off).map(Ipv4Addr::from)
}

/// Copies `src` to `off`; `None` (and nothing written) if it does not fit.
#[inline]
pub(crate) fn put(b: &mut [u8], off: usize, src: &[u8]) -> Option<()> {
    b.get_mut(off..off.checked_add(src.len())?)?
        .copy_from_slice(src);
    Some(())
}

#[inline]
pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) -> Option<()> {
    put(b, off, &v.to_be_bytes())
}

/// An IPv6 address stored at `off`.
#[inline]
pub(crate) fn get_ip6(b: &[u8], off: usize) -> Option<Ipv6Addr> {
    array::<16>(b, off).map(Ipv6Addr::from)
}

#[inline]
pub(crate) fn put_ip6(b: &mut [u8], off: usize, ip: Ipv6Addr) -> Option<()> {
    put(b, off, &ip.octets())
}

#[inline]
pub(crate) fn put_ip(b: &mut [u8], off: usize, ip: Ipv4Addr) -> Option<()> {
    put(b, off, &ip.octets())
}
