//! What the TCP/UDP, fragment, ICMP-error and egress stages need of an IP header, for either
//! family: one NAT path (`conn`, `ip`'s later fragments, `icmp`'s error NAT, `egress`) written
//! once over [`IpHeader`], monomorphised for IPv4 and IPv6. What differs between the families
//! (the header's fields, the checksum rewrite, which tables and snapshot lists to look in,
//! which burst prefetch hints are theirs) is here, one impl per family.

use super::context::Hint;
use super::icmp_error::IcmpError;
use super::{Dataplane, Pipeline, Refusal};
use crate::conntrack::{ConnState, ConnTable, Family, Hit, Prefetched, Tuple, V4, V6};
use crate::frag::{FragAddr, FragKey, FragTable};
use crate::packet::ipv4::{self, Ipv4Hdr};
use crate::packet::ipv6::{self, Ipv6Hdr};
use crate::packet::l4::{self, L4Hdr, Side};
use crate::packet::{icmp, IpHdr, ParseError};
use crate::service::{OpsReply, Service, Snapshot};
use crate::stats::DropReason;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 header as the NAT path uses it.
/// (Addresses, protocol, length and upper-layer bytes are [`IpHdr`]'s, as every layer asks
/// them.)
pub(super) trait IpHeader: IpHdr<Addr: FragAddr> + Sized {
    type Fam: Family<Addr = Self::Addr>;

    /// `a` if it is of this family.
    fn addr_of(a: IpAddr) -> Option<Self::Addr>;
    /// TTL or hop limit.
    fn hops(&self) -> u8;
    /// A fragment at a non-zero offset (no L4 header).
    fn is_later_fragment(&self) -> bool;
    /// The datagram a fragment belongs to; `None` for a packet that is not a fragment.
    fn frag_key(&self) -> Option<FragKey<Self::Addr>>;
    /// Decrements the TTL or hop limit of the packet `l3` (IPv4's header checksum fixed).
    fn decrement_hops(l3: &mut [u8]) -> Option<()>;
    fn parse_l4(&self, seg: &[u8]) -> Result<L4Hdr, ParseError>;
    /// NAT of one end (address and port, checksums fixed incrementally), hop count decremented.
    fn rewrite_endpoint(
        &self,
        l3: &mut [u8],
        side: Side,
        addr: Self::Addr,
        port: u16,
    ) -> Option<()>;
    /// NAT of one address of a later fragment (no L4 header in it), hop count decremented.
    fn rewrite_addr(l3: &mut [u8], side: Side, addr: Self::Addr) -> Option<()>;
    /// Rewrites an ICMP error about a tracked connection (`icmp::nat_error`, one for both
    /// families).
    fn nat_error(
        &self,
        l3: &mut [u8],
        e: &icmp::Embedded<Self::Addr>,
        nat: &icmp::ErrorNat<Self::Addr>,
    ) -> Option<()>;
    /// Over the egress MTU: IPv4 answers only with DF set, IPv6 always (no router fragments).
    fn too_big(&self, mtu: usize) -> Refusal;

    fn conns(dp: &Dataplane) -> &ConnTable<Self::Fam>;
    fn frags(dp: &Dataplane) -> &FragTable<Self::Addr>;
    fn route(dp: &Dataplane, dst: Self::Addr) -> Option<(u16, Self::Addr)>;
    /// The MAC of `next_hop` on `port`, if known now ([`Pipeline::next_hop_mac`] without
    /// the detour through `IpAddr`).
    fn next_hop_mac(p: &Pipeline, port: u16, next_hop: Self::Addr) -> Option<[u8; 6]>;
    fn is_vip(snap: &Snapshot, a: Self::Addr) -> bool;
    fn service(snap: &Snapshot, proto: u8, vip: Self::Addr, port: u16) -> Option<&Service>;
    fn ops_reply(
        snap: &Snapshot,
        proto: u8,
        rip: Self::Addr,
        port: u16,
    ) -> Option<OpsReply<Self::Addr>>;
    fn is_real_service(snap: &Snapshot, proto: u8, rip: Self::Addr, port: u16) -> bool;
    fn is_local(p: &Pipeline, a: Self::Addr) -> bool;

    /// The burst prefetch's hint if it is of this family.
    fn hinted(h: &Hint) -> Option<(&Tuple<Self::Addr>, &Prefetched)>;

    /// The connection of `t`, starting from the burst prefetch's hint where it has one.
    #[inline]
    fn lookup(p: &Pipeline, t: &Tuple<Self::Addr>) -> Option<Hit<Self::Addr>> {
        let conns = Self::conns(&p.dp);
        match p.taken_hint().and_then(Self::hinted) {
            Some((seen, pre)) if seen == t => {
                // A connection this worker opened earlier in the burst (a client's second
                // datagram, or a request and its reply in one capture) is newer than the
                // prefetch: its buckets' misses are looked at again.
                let trust_miss = !p.inserted_since_prefetch.get().may_hold(pre);
                conns.lookup_prefetched(t, pre, trust_miss, p.now)
            }
            _ => conns.lookup(t, p.now),
        }
    }

    /// The connection `hit` entered `state`: queued for the sync master.
    fn sync_state(p: &Pipeline, hit: &Hit<Self::Addr>, state: ConnState);
}

impl IpHeader for Ipv4Hdr {
    type Fam = V4;

    #[inline]
    fn addr_of(a: IpAddr) -> Option<Ipv4Addr> {
        match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    #[inline]
    fn hops(&self) -> u8 {
        self.ttl
    }
    #[inline]
    fn is_later_fragment(&self) -> bool {
        self.frag_offset() != 0
    }
    #[inline]
    fn frag_key(&self) -> Option<FragKey> {
        Ipv4Hdr::is_fragment(self).then(|| super::ip::frag_key(self))
    }
    #[inline]
    fn decrement_hops(l3: &mut [u8]) -> Option<()> {
        ipv4::decrement_ttl(l3)
    }
    #[inline]
    fn parse_l4(&self, seg: &[u8]) -> Result<L4Hdr, ParseError> {
        L4Hdr::parse_ip(self, seg)
    }
    #[inline]
    fn rewrite_endpoint(&self, l3: &mut [u8], side: Side, addr: Ipv4Addr, port: u16) -> Option<()> {
        l4::rewrite_endpoint(l3, self, side, addr, port, true)
    }
    fn rewrite_addr(l3: &mut [u8], side: Side, addr: Ipv4Addr) -> Option<()> {
        let off = match side {
            Side::Src => ipv4::OFF_SRC,
            Side::Dst => ipv4::OFF_DST,
        };
        ipv4::rewrite_addr_dec_ttl(l3, off, addr)
    }
    fn nat_error(&self, l3: &mut [u8], e: &icmp::Embedded, nat: &icmp::ErrorNat) -> Option<()> {
        icmp::nat_error(l3, self, e, nat)
    }
    fn too_big(&self, mtu: usize) -> Refusal {
        if self.dont_fragment() {
            Refusal::Answer(DropReason::MtuExceeded, IcmpError::frag_needed(mtu))
        } else {
            Refusal::Drop(DropReason::MtuExceeded)
        }
    }

    #[inline]
    fn conns(dp: &Dataplane) -> &ConnTable {
        &dp.conns
    }
    #[inline]
    fn frags(dp: &Dataplane) -> &FragTable {
        &dp.frags
    }
    #[inline]
    fn route(dp: &Dataplane, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        dp.route(dst)
    }
    #[inline]
    fn next_hop_mac(p: &Pipeline, port: u16, next_hop: Ipv4Addr) -> Option<[u8; 6]> {
        p.next_hop_mac4(port, next_hop)
    }
    #[inline]
    fn is_vip(snap: &Snapshot, a: Ipv4Addr) -> bool {
        snap.is_vip(a)
    }
    #[inline]
    fn service(snap: &Snapshot, proto: u8, vip: Ipv4Addr, port: u16) -> Option<&Service> {
        snap.service(proto, vip, port)
    }
    #[inline]
    fn ops_reply(snap: &Snapshot, proto: u8, rip: Ipv4Addr, port: u16) -> Option<OpsReply> {
        snap.ops_reply(proto, rip, port).copied()
    }
    #[inline]
    fn is_real_service(snap: &Snapshot, proto: u8, rip: Ipv4Addr, port: u16) -> bool {
        snap.is_real_service(proto, rip, port)
    }
    #[inline]
    fn is_local(p: &Pipeline, a: Ipv4Addr) -> bool {
        p.is_local(a)
    }

    #[inline]
    fn hinted(h: &Hint) -> Option<(&Tuple, &Prefetched)> {
        match h {
            Hint::V4(t, p) => Some((t, p)),
            Hint::V6(..) => None,
        }
    }
    #[inline]
    fn sync_state(p: &Pipeline, hit: &Hit, state: ConnState) {
        p.sync_state_change(hit, state);
    }
}

impl IpHeader for Ipv6Hdr {
    type Fam = V6;

    fn addr_of(a: IpAddr) -> Option<Ipv6Addr> {
        match a {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn hops(&self) -> u8 {
        self.hop_limit
    }
    fn is_later_fragment(&self) -> bool {
        self.frag.is_some_and(|f| f.offset != 0)
    }
    fn frag_key(&self) -> Option<FragKey<Ipv6Addr>> {
        self.frag.map(|f| FragKey {
            src: self.src,
            dst: self.dst,
            proto: f.next,
            id: f.id,
        })
    }
    fn decrement_hops(l3: &mut [u8]) -> Option<()> {
        ipv6::decrement_hop_limit(l3)
    }
    fn parse_l4(&self, seg: &[u8]) -> Result<L4Hdr, ParseError> {
        L4Hdr::parse_ipv6(self, seg)
    }
    fn rewrite_endpoint(&self, l3: &mut [u8], side: Side, addr: Ipv6Addr, port: u16) -> Option<()> {
        l4::rewrite_endpoint_ipv6(l3, self, side, addr, port, true)
    }
    fn rewrite_addr(l3: &mut [u8], side: Side, addr: Ipv6Addr) -> Option<()> {
        let off = match side {
            Side::Src => ipv6::OFF_SRC,
            Side::Dst => ipv6::OFF_DST,
        };
        ipv6::rewrite_addr_dec_hop(l3, off, addr)
    }
    fn nat_error(
        &self,
        l3: &mut [u8],
        e: &icmp::Embedded<Ipv6Addr>,
        nat: &icmp::ErrorNat<Ipv6Addr>,
    ) -> Option<()> {
        icmp::nat_error(l3, self, e, nat)
    }
    fn too_big(&self, mtu: usize) -> Refusal {
        Refusal::Answer(DropReason::MtuExceeded, IcmpError::frag_needed(mtu))
    }

    fn conns(dp: &Dataplane) -> &ConnTable<V6> {
        &dp.conns6
    }
    fn frags(dp: &Dataplane) -> &FragTable<Ipv6Addr> {
        &dp.frags6
    }
    fn route(dp: &Dataplane, dst: Ipv6Addr) -> Option<(u16, Ipv6Addr)> {
        dp.route6(dst)
    }
    #[inline]
    fn next_hop_mac(p: &Pipeline, port: u16, next_hop: Ipv6Addr) -> Option<[u8; 6]> {
        p.next_hop_mac6(port, next_hop)
    }
    fn is_vip(snap: &Snapshot, a: Ipv6Addr) -> bool {
        snap.is_vip6(a)
    }
    fn service(snap: &Snapshot, proto: u8, vip: Ipv6Addr, port: u16) -> Option<&Service> {
        snap.service6(proto, vip, port)
    }
    fn ops_reply(
        snap: &Snapshot,
        proto: u8,
        rip: Ipv6Addr,
        port: u16,
    ) -> Option<OpsReply<Ipv6Addr>> {
        snap.ops_reply6(proto, rip, port)
    }
    fn is_real_service(snap: &Snapshot, proto: u8, rip: Ipv6Addr, port: u16) -> bool {
        snap.is_real_service6(proto, rip, port)
    }
    fn is_local(p: &Pipeline, a: Ipv6Addr) -> bool {
        p.is_local6(a)
    }

    #[inline]
    fn hinted(h: &Hint) -> Option<(&Tuple<Ipv6Addr>, &Prefetched)> {
        match h {
            Hint::V6(t, p) => Some((t, p)),
            Hint::V4(..) => None,
        }
    }
    fn sync_state(p: &Pipeline, hit: &Hit<Ipv6Addr>, state: ConnState) {
        p.sync_state_change(hit, state);
    }
}
