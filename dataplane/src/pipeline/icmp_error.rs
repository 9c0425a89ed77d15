//! The ICMP errors rvs originates as a router (RFC 1812): time exceeded, fragmentation needed
//! and (as IPVS's `nat_icmp_send`) port unreachable, built in place of the frame they answer,
//! rate-limited per worker.

use super::{Action, Pipeline, PortSetup};
use crate::packet::eth::{self, EthHdr};
use crate::packet::ipv4::Ipv4Hdr;
use crate::packet::{icmp, icmpv6};
use crate::stats::Event;

/// ICMP errors each worker may originate per second (as Linux's icmp_msgs_per_sec), so that no
/// flood of expiring or oversized packets is amplified.
pub const ICMP_RATE_PER_SEC: u64 = 1000;
/// Token bucket depth of that limit.
pub const ICMP_BURST: u64 = 50;

/// An ICMP (or ICMPv6) error to send in place of the frame being dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IcmpError {
    /// Time to live (hop limit) exceeded in transit.
    TtlExceeded,
    /// Port unreachable: to a real server about a packet from its service port that matches
    /// no connection (`nat_icmp_send`).
    PortUnreach,
    /// Over the egress MTU: IPv4's fragmentation needed (DF set), IPv6's packet too big
    /// (IPv6 routers never fragment); `mtu` is the egress MTU.
    TooBig { mtu: u16 },
}

impl IcmpError {
    /// Time to live exceeded in transit.
    pub(super) const TTL_EXCEEDED: IcmpError = IcmpError::TtlExceeded;
    /// Port unreachable (`nat_icmp_send`).
    pub(super) const PORT_UNREACH: IcmpError = IcmpError::PortUnreach;

    /// Fragmentation needed (packet too big) with the egress MTU as next-hop MTU.
    pub(super) fn frag_needed(mtu: usize) -> IcmpError {
        IcmpError::TooBig {
            mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        }
    }

    /// ICMP type, code and the header's second word (next-hop MTU for fragmentation needed).
    fn v4(self) -> (u8, u8, u32) {
        match self {
            IcmpError::TtlExceeded => (icmp::TYPE_TIME_EXCEEDED, icmp::CODE_TTL_EXCEEDED, 0),
            IcmpError::PortUnreach => (icmp::TYPE_DEST_UNREACH, icmp::CODE_PORT_UNREACH, 0),
            IcmpError::TooBig { mtu } => (
                icmp::TYPE_DEST_UNREACH,
                icmp::CODE_FRAG_NEEDED,
                u32::from(mtu),
            ),
        }
    }

    /// ICMPv6 type, code and the header's second word (the MTU for packet too big).
    pub(super) fn v6(self) -> (u8, u8, u32) {
        match self {
            IcmpError::TtlExceeded => (icmpv6::TYPE_TIME_EXCEEDED, icmpv6::CODE_HOP_LIMIT, 0),
            IcmpError::PortUnreach => (icmpv6::TYPE_DEST_UNREACH, icmpv6::CODE_PORT_UNREACH, 0),
            IcmpError::TooBig { mtu } => (icmpv6::TYPE_PACKET_TOO_BIG, 0, u32::from(mtu)),
        }
    }

    /// What is counted when it is sent.
    pub(super) fn sent(self) -> Event {
        match self {
            IcmpError::TtlExceeded => Event::IcmpTimeExceeded,
            IcmpError::PortUnreach => Event::IcmpPortUnreach,
            IcmpError::TooBig { .. } => Event::IcmpFragNeeded,
        }
    }
}

impl Pipeline {
    /// Builds the ICMP error `p` about the (unchanged) frame `buf[..len]` in its place, if
    /// RFC 1812 and the rate limit allow.
    pub(super) fn icmp_error(
        &mut self,
        in_port: u16,
        buf: &mut [u8],
        len: usize,
        p: IcmpError,
    ) -> Action {
        if buf.get(12..14) == Some(&eth::ETHERTYPE_IPV6.to_be_bytes()) {
            return self.icmp6_error(in_port, buf, len, p);
        }
        let (Some((port, ip)), Some(l3)) = (
            self.answerable(in_port, buf, len),
            buf.get(eth::HDR_LEN..len),
        ) else {
            return Action::Drop;
        };
        // Never to a group (see `answerable`) or special address, never about ICMP errors or
        // later fragments, never to ourselves.
        if self.dp.is_martian(ip.src)
            || self.is_local(ip.src)
            || self.snap.is_vip(ip.src)
            || !icmp::may_answer(l3, &ip)
        {
            return Action::Drop;
        }
        let src = if self.is_local(ip.dst) || self.snap.is_vip(ip.dst) {
            ip.dst
        } else {
            self.owned.source(in_port, ip.src)
        };
        if src.is_unspecified() {
            return Action::Drop;
        }
        let src_mac = port.mac;
        self.emit_icmp_error(in_port, p, p.v4(), |(icmp_type, code, rest)| {
            let spec = icmp::ErrorSpec {
                icmp_type,
                code,
                rest,
                src,
                src_mac,
            };
            icmp::build_error_in_place(buf, len, &ip, &spec)
        })
    }

    /// The end both families' errors share: a token of the rate limit, then `build` with the
    /// error's (type, code, second word) `fields`, counted as sent or rate-limited.
    pub(super) fn emit_icmp_error(
        &mut self,
        in_port: u16,
        p: IcmpError,
        fields: (u8, u8, u32),
        build: impl FnOnce((u8, u8, u32)) -> Option<usize>,
    ) -> Action {
        if !self.icmp_token() {
            self.stats().event(Event::IcmpRateLimited);
            return Action::Drop;
        }
        match build(fields) {
            Some(n) => {
                self.stats().event(p.sent());
                Action::Reply {
                    port: in_port,
                    len: n,
                }
            }
            None => Action::Drop,
        }
    }

    /// The ingress port and the IPv4 header of the frame `buf[..len]` that an answer (an ICMP
    /// error, a TCP RST) is to be built for; `None` when it has none, or when its source MAC is
    /// a group address (no answer goes there).
    pub(super) fn answerable(
        &self,
        in_port: u16,
        buf: &[u8],
        len: usize,
    ) -> Option<(&PortSetup, Ipv4Hdr)> {
        let port = self.dp.ports.get(usize::from(in_port))?;
        let frame = buf.get(..len)?;
        let hdr = EthHdr::parse(frame)?;
        let ip = Ipv4Hdr::parse_any(frame.get(eth::HDR_LEN..)?).ok()?;
        (!eth::is_multicast(&hdr.src)).then_some((port, ip))
    }

    /// Takes one token from the ICMP error bucket, refilled at [`ICMP_RATE_PER_SEC`].
    fn icmp_token(&mut self) -> bool {
        let (mut tokens, mut last) = self.icmp_bucket;
        let add = self
            .now
            .saturating_sub(last)
            .saturating_mul(ICMP_RATE_PER_SEC)
            / 1000;
        if add > 0 || self.now < last {
            tokens = tokens.saturating_add(add).min(ICMP_BURST);
            last = self.now;
        }
        let ok = tokens > 0;
        if ok {
            tokens -= 1;
        }
        self.icmp_bucket = (tokens, last);
        ok
    }
}
