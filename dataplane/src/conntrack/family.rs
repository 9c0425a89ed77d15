//! The address families: what one entry holds for each, and how a tuple is hashed and compared.
//!
//! Everything else in the table (the index, the seqlock read, the insert protocol, removal,
//! free lists, aging) is one piece of code for both families: it handles an entry as its meta
//! word (`entry.rs`) plus the family's field words, which are fixed within a generation.
//!
//! - **IPv4** ([`V4`]): 32 bytes, two entries per cache line: meta, `client` (proto 8 <<
//!   48 | CIP 32 | cport 16), `virt` (dest slot 16 << 48 | VIP | vport), `real` (RIP | rport;
//!   the free-list link while free).
//! - **IPv6** ([`V6`]): 64 bytes, one cache line: meta, the three addresses in two words each
//!   (client, VIP, RIP; their bytes in memory order), and one word `cport 16 | vport 16 | rport 16 | proto
//!   code 2 | dest slot 14` (the free-list link while free). That is 8 + 3 * 16 + 6 + 2 = 64
//!   bytes with the 16 bits of protocol and slot squeezed into 16: an IPv6 entry holds
//!   real-server slots below 2^14 ([`V6::MAX_DEST_SLOTS`], the service manager's `MAX_DESTS`)
//!   and the protocols TCP, UDP, SCTP and ICMPv6 (an insert of another protocol fails `Full`,
//!   a lookup of one misses). Anything larger than a line would make every hit read two
//!   entry lines.
//!
//! The index is the same for both (one 64-byte bucket per entry), so a connection costs 96
//! bytes in IPv4 and 128 in IPv6 ([`Family::BYTES_PER_CONN`]).

use super::state::Dir;
use super::{NewConn, Tuple};
use crate::atomic::{AtomicU64, Ordering};
use crate::hash::{mum, HashKey};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

mod sealed {
    pub trait Sealed {}
}

/// An address family of the connection table: [`V4`] or [`V6`]. The hidden items are the
/// entry layout, for the table's own use.
pub trait Family: sealed::Sealed + Sized + Send + Sync + Debug + 'static {
    type Addr: Copy + Eq + Hash + Debug + Into<IpAddr> + Send + Sync + 'static;
    /// Bytes per connection, index included (entry + one 64-byte bucket).
    const BYTES_PER_CONN: usize;
    /// Most real-server slots an entry can name.
    const MAX_DEST_SLOTS: usize;
    const NAME: &'static str;

    #[doc(hidden)]
    type Entry: Default + Send + Sync + Debug;
    /// An entry's field words as read (everything but meta).
    #[doc(hidden)]
    type Words: Copy;

    #[doc(hidden)]
    fn meta(e: &Self::Entry) -> &AtomicU64;
    /// The word that holds the free-list link while the entry is free.
    #[doc(hidden)]
    fn link(e: &Self::Entry) -> &AtomicU64;
    /// Loads the field words (relaxed: the seqlock read orders them).
    #[doc(hidden)]
    fn load(e: &Self::Entry) -> Self::Words;
    /// Stores the field words (relaxed: the seqlock write orders them).
    #[doc(hidden)]
    fn store(e: &Self::Entry, w: &Self::Words);
    /// The words of a new connection; `None` if an entry cannot hold it (slot or protocol).
    #[doc(hidden)]
    fn encode(c: &NewConn<Self::Addr>) -> Option<Self::Words>;
    /// Whether the entry's tuple in direction `dir` is `t` (branch-free on `dir`).
    #[doc(hidden)]
    fn matches(w: &Self::Words, dir: Dir, t: &Tuple<Self::Addr>) -> bool;
    #[doc(hidden)]
    fn proto(w: &Self::Words) -> u8;
    #[doc(hidden)]
    fn dest(w: &Self::Words) -> u32;
    /// client, virt, real.
    #[doc(hidden)]
    fn endpoints(w: &Self::Words) -> [(Self::Addr, u16); 3];
    /// The keyed hash of a tuple; the table's two keys give its two independent hashes.
    #[doc(hidden)]
    fn hash(key: &HashKey, t: &Tuple<Self::Addr>) -> u64;
}

/// IPv4 connections (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V4;

/// IPv6 connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct V6;

impl sealed::Sealed for V4 {}
impl sealed::Sealed for V6 {}

/// `if c { a } else { b }` without a branch.
#[inline]
pub(super) fn select(c: bool, a: u64, b: u64) -> u64 {
    let m = u64::from(c).wrapping_neg();
    (a & m) | (b & !m)
}

// --- IPv4 ------------------------------------------------------------------------------------

/// One IPv4 connection: 32 bytes, two per cache line.
#[repr(C, align(32))]
#[derive(Debug, Default)]
pub struct Entry4 {
    meta: AtomicU64,
    /// client (proto << 48 | CIP:cport), virt (dest slot << 48 | VIP:vport), real (RIP:rport;
    /// the free-list link while free).
    words: [AtomicU64; 3],
}

const EP_MASK: u64 = (1 << 48) - 1;

#[inline]
fn ep(ip: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(ip)) << 16) | u64::from(port)
}

#[inline]
fn ep_split(v: u64) -> (Ipv4Addr, u16) {
    (Ipv4Addr::from((v >> 16) as u32), v as u16)
}

impl Family for V4 {
    type Addr = Ipv4Addr;
    const BYTES_PER_CONN: usize = 96;
    const MAX_DEST_SLOTS: usize = 1 << 16;
    const NAME: &'static str = "IPv4";
    type Entry = Entry4;
    type Words = [u64; 3];

    #[inline]
    fn meta(e: &Entry4) -> &AtomicU64 {
        &e.meta
    }
    #[inline]
    fn link(e: &Entry4) -> &AtomicU64 {
        let [_, _, real] = &e.words;
        real
    }
    #[inline]
    fn load(e: &Entry4) -> [u64; 3] {
        let [c, v, r] = &e.words;
        [
            c.load(Ordering::Relaxed),
            v.load(Ordering::Relaxed),
            r.load(Ordering::Relaxed),
        ]
    }
    #[inline]
    fn store(e: &Entry4, w: &[u64; 3]) {
        for (a, v) in e.words.iter().zip(w) {
            a.store(*v, Ordering::Relaxed);
        }
    }
    #[inline]
    fn encode(c: &NewConn<Ipv4Addr>) -> Option<[u64; 3]> {
        let dest = u16::try_from(c.dest).ok()?;
        Some([
            (u64::from(c.proto) << 48) | ep(c.client.0, c.client.1),
            (u64::from(dest) << 48) | ep(c.virt.0, c.virt.1),
            ep(c.real.0, c.real.1),
        ])
    }
    #[inline]
    fn matches(w: &[u64; 3], dir: Dir, t: &Tuple<Ipv4Addr>) -> bool {
        let [client, virt, real] = *w;
        let reply = dir == Dir::Reply;
        let src = select(reply, real, client) & EP_MASK;
        let dst = select(reply, client, virt) & EP_MASK;
        ((client >> 48) as u8 == t.proto)
            & (src == ep(t.src, t.sport))
            & (dst == ep(t.dst, t.dport))
    }
    #[inline]
    fn proto(w: &[u64; 3]) -> u8 {
        (w[0] >> 48) as u8
    }
    #[inline]
    fn dest(w: &[u64; 3]) -> u32 {
        (w[1] >> 48) as u32
    }
    #[inline]
    fn endpoints(w: &[u64; 3]) -> [(Ipv4Addr, u16); 3] {
        w.map(|x| ep_split(x & EP_MASK))
    }
    #[inline]
    fn hash(key: &HashKey, t: &Tuple<Ipv4Addr>) -> u64 {
        let a = (u64::from(u32::from(t.src)) << 32) | u64::from(u32::from(t.dst));
        let b = (u64::from(t.sport) << 32) | (u64::from(t.dport) << 16) | u64::from(t.proto);
        key.hash(a, b)
    }
}

// --- IPv6 ------------------------------------------------------------------------------------

/// One IPv6 connection: 64 bytes, one cache line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Entry6 {
    meta: AtomicU64,
    /// CIP hi, lo, VIP hi, lo, RIP hi, lo, then cport 16 | vport 16 | rport 16 | proto code 2
    /// | dest slot 14 (the free-list link while free).
    words: [AtomicU64; 7],
}

/// The protocols an IPv6 entry holds, by their 2-bit code.
const PROTOS6: [u8; 4] = [6, 17, 132, 58];
const DEST6_BITS: u32 = 14;

/// Each protocol's 2-bit code, 4 (matches no entry) for the others: a table, one load.
#[allow(clippy::indexing_slicing)] // const evaluation: out of bounds fails the build
const PROTO_CODE: [u8; 256] = {
    let mut t = [4u8; 256];
    let mut i = 0;
    while i < PROTOS6.len() {
        t[PROTOS6[i] as usize] = i as u8;
        i += 1;
    }
    t
};

#[inline]
fn proto_code(proto: u8) -> u64 {
    // A u8 indexes 256 entries: the check is compiled out.
    u64::from(PROTO_CODE.get(usize::from(proto)).copied().unwrap_or(4))
}

/// An address as two words in memory order (native-endian loads of its bytes: no byte swaps;
/// only equality and the hash look at them).
#[inline]
fn split6(a: Ipv6Addr) -> (u64, u64) {
    let o = a.octets();
    let (hi, lo) = o.split_at(8);
    let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
    (word(hi), word(lo))
}

#[inline]
fn join6(hi: u64, lo: u64) -> Ipv6Addr {
    let mut o = [0u8; 16];
    let (h, l) = o.split_at_mut(8);
    h.copy_from_slice(&hi.to_ne_bytes());
    l.copy_from_slice(&lo.to_ne_bytes());
    Ipv6Addr::from(o)
}

impl Family for V6 {
    type Addr = Ipv6Addr;
    const BYTES_PER_CONN: usize = 128;
    const MAX_DEST_SLOTS: usize = 1 << DEST6_BITS;
    const NAME: &'static str = "IPv6";
    type Entry = Entry6;
    type Words = [u64; 7];

    #[inline]
    fn meta(e: &Entry6) -> &AtomicU64 {
        &e.meta
    }
    #[inline]
    fn link(e: &Entry6) -> &AtomicU64 {
        let [.., ports] = &e.words;
        ports
    }
    #[inline]
    fn load(e: &Entry6) -> [u64; 7] {
        let mut w = [0; 7];
        for (v, a) in w.iter_mut().zip(&e.words) {
            *v = a.load(Ordering::Relaxed);
        }
        w
    }
    #[inline]
    fn store(e: &Entry6, w: &[u64; 7]) {
        for (a, v) in e.words.iter().zip(w) {
            a.store(*v, Ordering::Relaxed);
        }
    }
    #[inline]
    fn encode(c: &NewConn<Ipv6Addr>) -> Option<[u64; 7]> {
        let code = proto_code(c.proto);
        if code > 3 || c.dest >= 1 << DEST6_BITS {
            return None;
        }
        let (ch, cl) = split6(c.client.0);
        let (vh, vl) = split6(c.virt.0);
        let (rh, rl) = split6(c.real.0);
        let ports = (u64::from(c.client.1) << 48)
            | (u64::from(c.virt.1) << 32)
            | (u64::from(c.real.1) << 16)
            | (code << DEST6_BITS)
            | u64::from(c.dest);
        Some([ch, cl, vh, vl, rh, rl, ports])
    }
    #[inline]
    fn matches(w: &[u64; 7], dir: Dir, t: &Tuple<Ipv6Addr>) -> bool {
        let [ch, cl, vh, vl, rh, rl, ports] = *w;
        let reply = dir == Dir::Reply;
        let (sh, sl) = split6(t.src);
        let (dh, dl) = split6(t.dst);
        let (cport, vport, rport) = (ports >> 48, (ports >> 32) & 0xffff, (ports >> 16) & 0xffff);
        let sport = select(reply, rport, cport);
        let dport = select(reply, cport, vport);
        (select(reply, rh, ch) == sh)
            & (select(reply, rl, cl) == sl)
            & (select(reply, ch, vh) == dh)
            & (select(reply, cl, vl) == dl)
            & (sport == u64::from(t.sport))
            & (dport == u64::from(t.dport))
            & ((ports >> DEST6_BITS) & 3 == proto_code(t.proto))
    }
    #[inline]
    fn proto(w: &[u64; 7]) -> u8 {
        let code = (w[6] >> DEST6_BITS) & 3;
        PROTOS6.get(code as usize).copied().unwrap_or(0)
    }
    #[inline]
    fn dest(w: &[u64; 7]) -> u32 {
        (w[6] & ((1 << DEST6_BITS) - 1)) as u32
    }
    #[inline]
    fn endpoints(w: &[u64; 7]) -> [(Ipv6Addr, u16); 3] {
        let [ch, cl, vh, vl, rh, rl, ports] = *w;
        [
            (join6(ch, cl), (ports >> 48) as u16),
            (join6(vh, vl), (ports >> 32) as u16),
            (join6(rh, rl), (ports >> 16) as u16),
        ]
    }
    #[inline]
    fn hash(key: &HashKey, t: &Tuple<Ipv6Addr>) -> u64 {
        let (sh, sl) = split6(t.src);
        let (dh, dl) = split6(t.dst);
        let rest = (u64::from(t.sport) << 32) | (u64::from(t.dport) << 16) | u64::from(t.proto);
        // Each address folded by one multiply of its keyed halves, then the keyed hash of the
        // two folds (the ports in the first): four multiplies, each key's own (folding once for
        // both keys saved nothing measurable when both hashes were always worked out).
        let s = mum(sh ^ key.word(0), sl ^ key.word(1));
        let d = mum(dh ^ key.word(1), dl ^ key.word(0));
        key.hash(s ^ rest, d)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::conntrack::ConnState;

    fn conn6(proto: u8, dest: u32) -> NewConn<Ipv6Addr> {
        NewConn {
            proto,
            client: (Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x10), 40000),
            virt: (Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1), 443),
            real: (Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2), 8443),
            dest,
            state: ConnState::Udp,
        }
    }

    #[test]
    fn entry_sizes() {
        assert_eq!(std::mem::size_of::<Entry4>(), 32);
        assert_eq!(std::mem::align_of::<Entry4>(), 32);
        assert_eq!(std::mem::size_of::<Entry6>(), 64);
        assert_eq!(std::mem::align_of::<Entry6>(), 64);
    }

    #[test]
    fn v6_words_round_trip_and_match_both_tuples_only() {
        for proto in PROTOS6 {
            for dest in [0, 1, (1 << DEST6_BITS) - 1] {
                let c = conn6(proto, dest);
                let w = V6::encode(&c).unwrap();
                assert_eq!((V6::proto(&w), V6::dest(&w)), (proto, dest));
                assert_eq!(V6::endpoints(&w), [c.client, c.virt, c.real]);
                assert!(V6::matches(&w, Dir::Inbound, &c.inbound()));
                assert!(V6::matches(&w, Dir::Reply, &c.reply()));
                assert!(!V6::matches(&w, Dir::Reply, &c.inbound()));
                assert!(!V6::matches(&w, Dir::Inbound, &c.reply()));
                let other = Tuple {
                    proto: if proto == 6 { 17 } else { 6 },
                    ..c.inbound()
                };
                assert!(!V6::matches(&w, Dir::Inbound, &other));
            }
        }
        assert!(V6::encode(&conn6(1, 0)).is_none());
        assert!(V6::encode(&conn6(6, 1 << DEST6_BITS)).is_none());
        let w = V6::encode(&conn6(6, 0)).unwrap();
        let t = Tuple {
            proto: 1,
            ..conn6(6, 0).inbound()
        };
        assert!(!V6::matches(&w, Dir::Inbound, &t));
    }

    #[test]
    fn v6_hashes_see_every_address_bit() {
        let keys = HashKey::random::<2>();
        let t = conn6(6, 0).inbound();
        let base = keys.each_ref().map(|k| V6::hash(k, &t));
        for bit in 0..128 {
            let flip = |a: Ipv6Addr| Ipv6Addr::from(u128::from(a) ^ (1 << bit));
            let s = Tuple {
                src: flip(t.src),
                ..t
            };
            let d = Tuple {
                dst: flip(t.dst),
                ..t
            };
            assert_ne!(V6::hash(&keys[0], &s), base[0]);
            assert_ne!(V6::hash(&keys[1], &d), base[1]);
        }
    }
}
