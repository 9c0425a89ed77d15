//! The Internet checksum (RFC 1071): full computation and incremental update (RFC 1624).
//!
//! Sums are kept as `u32` accumulators of 16-bit big-endian words and folded with end-around
//! carry at the end. A checksum field holds the ones' complement of the folded sum.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds the 16-bit big-endian words of `data` to `acc` (an odd trailing byte is padded with 0)
/// and returns the folded sum (at most 0xffff), so results can be chained.
pub fn sum(data: &[u8], acc: u32) -> u32 {
    // A u64 accumulator cannot overflow below 2^34 bytes: fold once at the end. Whole 32-bit
    // words go in at once (half the additions of 16-bit ones): 2^16 = 1 modulo 0xffff, so a
    // word's high half folds back in as if it had been added on its own.
    let mut wide = u64::from(acc);
    if let Ok(&[a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3, e0, e1, e2, e3]) =
        <&[u8; 20]>::try_from(data)
    {
        // An IPv4 header without options, verified on every packet: five words, no loop.
        wide += u64::from(u32::from_be_bytes([a0, a1, a2, a3]))
            + u64::from(u32::from_be_bytes([b0, b1, b2, b3]))
            + u64::from(u32::from_be_bytes([c0, c1, c2, c3]))
            + u64::from(u32::from_be_bytes([d0, d1, d2, d3]))
            + u64::from(u32::from_be_bytes([e0, e1, e2, e3]));
        let folded = (wide & 0xffff_ffff) + (wide >> 32);
        return fold_u32(((folded & 0xffff_ffff) + (folded >> 32)) as u32);
    }
    let mut quads = data.chunks_exact(4);
    for q in quads.by_ref() {
        if let [a, b, c, d] = *q {
            wide += u64::from(u32::from_be_bytes([a, b, c, d]));
        }
    }
    let mut words = quads.remainder().chunks_exact(2);
    for w in words.by_ref() {
        if let [a, b] = *w {
            wide += u64::from(u16::from_be_bytes([a, b]));
        }
    }
    if let [last] = *words.remainder() {
        wide += u64::from(last) << 8;
    }
    let folded = (wide & 0xffff_ffff) + (wide >> 32);
    fold_u32(((folded & 0xffff_ffff) + (folded >> 32)) as u32)
}

/// Folds the carries of `acc` back in (end-around carry); the result fits in 16 bits but is
/// returned as `u32` so more words can be added.
#[inline]
fn fold_u32(acc: u32) -> u32 {
    // Two folds suffice for any u32, with no branch: the first leaves at most
    // 0xffff + 0xffff = 0x1fffe, the second at most 0xfffe + 1.
    let acc = (acc & 0xffff) + (acc >> 16);
    (acc & 0xffff) + (acc >> 16)
}

/// Folds `acc` to 16 bits.
#[inline]
pub fn fold(acc: u32) -> u16 {
    // fold_u32 leaves at most 0xffff, so the conversion never fails.
    u16::try_from(fold_u32(acc)).unwrap_or(0xffff)
}

/// The checksum of `data`: ones' complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// The checksum of `data` with the 16-bit field at `skip` (even) counted as zero: what a header
/// checksum field must hold. `None` if the field is not inside `data`.
pub fn checksum_skipping(data: &[u8], skip: usize) -> Option<u16> {
    let before = data.get(..skip)?;
    let after = data.get(skip.checked_add(2)?..)?;
    Some(!fold(sum(after, sum(before, 0))))
}

/// Sum of the TCP/UDP pseudo-header: source, destination, protocol and L4 length.
pub fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u16) -> u32 {
    let acc = sum(&src.octets(), 0);
    let acc = sum(&dst.octets(), acc);
    fold_u32(acc + u32::from(proto) + u32::from(l4_len))
}

/// Sum of the IPv6 upper-layer pseudo-header (RFC 8200 8.1): source, destination, upper-layer
/// packet length and next header.
pub fn pseudo_header_sum6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4_len: u32) -> u32 {
    let acc = sum(&src.octets(), 0);
    let acc = sum(&dst.octets(), acc);
    let acc = sum(&l4_len.to_be_bytes(), acc);
    fold_u32(acc + u32::from(proto))
}

/// A changed IPv6 address: the eight 16-bit word terms `~m + m'`, folded (so a few of these
/// can be added). Summed as four 32-bit words each side in 64 bits, then folded: the same
/// ones' complement sum (RFC 1071 2(C)) in fewer additions.
#[inline]
pub fn delta_ip6(old: Ipv6Addr, new: Ipv6Addr) -> u32 {
    let (o, n) = (!u128::from(old), u128::from(new));
    let quads = |v: u128| {
        u64::from(v as u32)
            + u64::from((v >> 32) as u32)
            + u64::from((v >> 64) as u32)
            + u64::from((v >> 96) as u32)
    };
    let wide = quads(o) + quads(n);
    let folded = (wide & 0xffff_ffff) + (wide >> 32);
    fold_u32(((folded & 0xffff_ffff) + (folded >> 32)) as u32)
}

/// One changed 16-bit word, as a term of an incremental update: `~m + m'` (RFC 1624 eqn. 3).
#[inline]
pub fn delta16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// A changed 32-bit field (an IPv4 address) as two 16-bit word terms.
#[inline]
pub fn delta32(old: u32, new: u32) -> u32 {
    delta16((old >> 16) as u16, (new >> 16) as u16) + delta16(old as u16, new as u16)
}

/// A changed IPv4 address.
#[inline]
pub fn delta_ip(old: Ipv4Addr, new: Ipv4Addr) -> u32 {
    delta32(u32::from(old), u32::from(new))
}

/// Applies the summed `delta` terms to checksum `hc`: `HC' = ~(~HC + Σ(~m + m'))` (RFC 1624
/// eqn. 3). `delta` is a sum of terms as [`delta16`] (below 2^17), [`delta32`] and
/// [`delta_ip6`] (below 2^18) give them; a few thousand of them keep `~HC + delta` below 2^32,
/// so one fold of the total is enough. (A NAT rewrite sums at most three, under 2^19.)
#[inline]
pub fn adjust(hc: u16, delta: u32) -> u16 {
    debug_assert!(
        delta <= 0xffff_0000,
        "delta {delta:#x} is no short sum of terms"
    );
    !fold(u32::from(!hc) + delta)
}

/// A UDP checksum after an update: 0 means "no checksum" on the wire, so a computed 0 is sent
/// as its ones' complement twin 0xffff (RFC 768).
#[inline]
pub fn udp_nonzero(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::packet::get16;
    use proptest::prelude::*;

    /// Two checksums that say the same: equal, or 0 and 0xffff (the two ones' complement
    /// zeros; an incremental update and a recompute may each give either).
    pub(crate) fn same_sum(a: u16, b: u16) -> bool {
        a == b || matches!((a, b), (0, 0xffff) | (0xffff, 0))
    }

    /// Asserts that `got` equals `want`, the checksum fields at `csums` (offsets) compared by
    /// [`same_sum`].
    pub(crate) fn assert_same_but_sums(got: &[u8], want: &[u8], csums: &[usize]) {
        let mut got = got.to_vec();
        for &at in csums {
            let (g, w) = (get16(&got, at).unwrap(), get16(want, at).unwrap());
            assert!(
                same_sum(g, w),
                "checksum at {at}: {g:#06x}, recomputed {w:#06x}"
            );
            got[at..at + 2].copy_from_slice(&want[at..at + 2]);
        }
        assert_eq!(got, want);
    }

    proptest! {
        /// `sum` adds 32-bit words; the definition adds 16-bit ones, one at a time.
        #[test]
        fn sum_equals_the_16_bit_word_definition(
            data in proptest::collection::vec(any::<u8>(), 0..100),
            acc in 0u32..=0xffff,
        ) {
            let mut want = u64::from(acc);
            for (i, b) in data.iter().enumerate() {
                want += u64::from(*b) << if i % 2 == 0 { 8 } else { 0 };
            }
            while want > 0xffff {
                want = (want & 0xffff) + (want >> 16);
            }
            prop_assert_eq!(u64::from(sum(&data, acc)), want);
        }

        /// Two branch-free folds give what folding until it fits gives, for any u32
        /// (the extremes included by the strategy's edges).
        #[test]
        fn fold_is_end_around_carry_until_it_fits(acc in prop_oneof![
            any::<u32>(),
            Just(u32::MAX),
            Just(0x1_fffe),
            Just(0xffff),
            Just(0x1_0000),
        ]) {
            let mut want = acc;
            while want > 0xffff {
                want = (want & 0xffff) + (want >> 16);
            }
            prop_assert_eq!(fold_u32(acc), want);
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A classic example header (Wikipedia "IPv4 header checksum"): checksum b861.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum_skipping(&hdr, 10), Some(0xb861));
        // A header with its checksum in place sums to 0xffff.
        assert_eq!(fold(sum(&hdr, 0)), 0xffff);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
    }

    #[test]
    fn skipping_out_of_range_is_none() {
        assert_eq!(checksum_skipping(&[0u8; 4], 3), None);
        assert_eq!(checksum_skipping(&[0u8; 4], 4), None);
        assert!(checksum_skipping(&[0u8; 4], 2).is_some());
    }

    #[test]
    fn long_input_does_not_overflow() {
        let data = vec![0xffu8; 1 << 20];
        assert_eq!(fold(sum(&data, 0)), 0xffff);
    }

    #[test]
    fn adjust_carries_around_at_the_fold_edge() {
        // ~HC + delta = 0x1ffff: folded, 1 (a single fold would leave 0, and 0xffff after it).
        assert_eq!(adjust(0, 0x1_0000), 0xfffe);
    }

    #[test]
    fn incremental_matches_full_for_every_word_change() {
        // Change word 2 of a buffer through many values; the adjusted checksum equals a recompute.
        let mut data = [0x45u8, 0x00, 0x12, 0x34, 0xab, 0xcd, 0x00, 0x01];
        let mut hc = checksum(&data);
        for new in (0u32..=0xffff).step_by(257).map(|v| v as u16) {
            let old = u16::from_be_bytes([data[2], data[3]]);
            data[2..4].copy_from_slice(&new.to_be_bytes());
            hc = adjust(hc, delta16(old, new));
            assert_eq!(hc, checksum(&data), "new word {new:#x}");
        }
    }

    proptest! {
        /// Many words changed at once, their terms summed unfolded into one `delta` (as a NAT
        /// rewrite sums an address, a port and the TTL): the adjusted checksum equals a
        /// recompute.
        #[test]
        fn one_adjust_of_many_summed_terms_matches_a_recompute(
            old in proptest::collection::vec(any::<u16>(), 1..512),
            seed in any::<u64>(),
        ) {
            let bytes = |words: &[u16]| words.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
            let new: Vec<u16> = old
                .iter()
                .enumerate()
                .map(|(i, &w)| w ^ (seed.rotate_left(i as u32) as u16))
                .collect();
            let delta: u32 = old.iter().zip(&new).map(|(&o, &n)| delta16(o, n)).sum();
            let adjusted = adjust(checksum(&bytes(&old)), delta);
            let full = checksum(&bytes(&new));
            prop_assert!(same_sum(adjusted, full), "adjusted {adjusted:#x} full {full:#x}");
        }

        /// An IPv6 address changed in a buffer: the adjusted checksum equals a recompute.
        #[test]
        fn ipv6_address_delta_matches_a_recompute(
            head in any::<[u8; 6]>(), old in any::<u128>(), new in any::<u128>()
        ) {
            let mut data = head.to_vec();
            data.extend(old.to_be_bytes());
            let hc = checksum(&data);
            data[6..].copy_from_slice(&new.to_be_bytes());
            let adjusted = adjust(hc, delta_ip6(Ipv6Addr::from(old), Ipv6Addr::from(new)));
            // 0 and 0xffff are the same sum; a recompute of a non-zero sum says 0x0000 never.
            let full = checksum(&data);
            prop_assert!(same_sum(adjusted, full),
                "adjusted {adjusted:#x} full {full:#x}");
        }
    }

    #[test]
    fn udp_zero_becomes_ffff() {
        assert_eq!(udp_nonzero(0), 0xffff);
        assert_eq!(udp_nonzero(0x1234), 0x1234);
    }
}
