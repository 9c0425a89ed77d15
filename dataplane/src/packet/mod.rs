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

use std::net::{Ipv4Addr, Ipv6Addr};

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
