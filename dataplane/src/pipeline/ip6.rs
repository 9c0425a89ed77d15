//! The IPv6 stage: the header and its extension headers checked, neighbour discovery answered
//! and learnt from, martians dropped, then by protocol as IPv4 is (`tcp_udp`, `forward`, the
//! fragment path and the ICMP error NAT are one code for both families, see `family`); ICMPv6
//! echo to us answered; the ICMPv6 errors rvs originates (time exceeded, port unreachable,
//! packet too big), and the unsolicited neighbour advertisements a worker sends at start.

use super::family::IpHeader;
use super::icmp_error::IcmpError;
use super::{Action, Pipeline, PortSetup, Refusal};
use crate::neigh::NdpOutcome;
use crate::packet::eth::{self, EthHdr};
use crate::packet::icmp::ErrorSpec;
use crate::packet::icmpv6;
use crate::packet::ipv4::{PROTO_TCP, PROTO_UDP};
use crate::packet::ipv6::{self, Ipv6Error, Ipv6Hdr, PROTO_ICMPV6};
use crate::packet::ndp;
use crate::packet::ndp::NdpError;
use crate::stats::{DropReason, Event};
use std::net::Ipv6Addr;

impl Pipeline {
    /// An IPv6 frame for one of our MACs, or (`group`) for a multicast MAC: only neighbour
    /// discovery is taken from those (solicitations to a solicited-node group).
    pub(super) fn ipv6(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
        group: bool,
    ) -> Result<Action, Refusal> {
        if eth::is_multicast(&hdr.src) {
            // No station sends from a group MAC: never learnt, never answered.
            return Err(DropReason::Malformed.into());
        }
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        // `parse6`, with the header borrowed where `Ipv6Hdr::parse` left it: moved into
        // another `Result` (or out of one), it was copied in wide loads over the narrow
        // stores that wrote it, which the store buffer cannot forward (a stall per packet).
        let parsed = Ipv6Hdr::parse(l3);
        let in_transit;
        let ip = match &parsed {
            Ok(ip) => ip,
            Err(e) => {
                in_transit = self.parse6_refused(l3, *e)?;
                &in_transit
            }
        };
        if ip.proto == PROTO_ICMPV6 && ip.frag_offset() == 0 && is_ndp(l3, ip) {
            if ip.has_ext_headers() && ip.in_fragment(l3) {
                // RFC 6980: neighbour discovery in a fragment, an atomic one included, is
                // never taken (nor routed: it is link-local).
                return Err(DropReason::BadFragment.into());
            }
            if ip.src.is_multicast() || ip.src.is_loopback() {
                return Err(DropReason::Martian.into());
            }
            return Err(Refusal::Ndp);
        }
        if group {
            return Err(self.link_multicast6(in_port, hdr, ip));
        }
        let (vip, local) = (self.snap.is_vip6(ip.dst), self.is_local6(ip.dst));
        if self.martian6(ip.src, ip.dst, local) {
            return Err(DropReason::Martian.into());
        }
        // A sender on one of our links is learnt as if it had advertised itself (as IPv4
        // learns from any packet): lazily for TCP/UDP, only when no connection is found; the
        // MAC known now asked through the worker's memo, as there.
        let learn = || {
            if port.on_link6(ip.src) && self.next_hop_mac6(in_port, ip.src) != Some(hdr.src) {
                self.dp.neigh6.learn(in_port, ip.src, hdr.src);
            }
        };
        let tcp_udp = ip.proto == PROTO_TCP || ip.proto == PROTO_UDP;
        if !tcp_udp || ip.is_later_fragment() {
            learn();
        }
        let ours = vip || local;
        if let Some(frag) = ip.frag {
            if frag.offset != 0 && (vip || !local) {
                // A later fragment follows its first fragment's decision, whatever headers of
                // the fragmentable part hide its protocol (the table is keyed by the fragment
                // header's next header).
                if frag.next == PROTO_TCP && frag.offset == 8 {
                    // RFC 1858's overlap, as for IPv4.
                    return Err(DropReason::BadFragment.into());
                }
                let key = ip.frag_key().ok_or(DropReason::BadFragment)?;
                return self.follow_first_fragment(frame, ip, &key, ours);
            }
            if ours && !(vip && tcp_udp) {
                // For rvs itself: it reassembles nothing; the kernel behind a twin does, for
                // the non-VIP ones.
                return Err(if vip {
                    DropReason::Fragment.into()
                } else {
                    Refusal::Local(DropReason::Fragment)
                });
            }
            if !tcp_udp {
                return self.forward(frame, ip);
            }
        }
        match ip.proto {
            PROTO_TCP | PROTO_UDP => self.tcp_udp(frame, ip, learn),
            PROTO_ICMPV6 => self.icmp6(in_port, port, hdr, frame, ip, vip, local),
            _ if vip => Err(DropReason::UnknownProto.into()),
            _ if local => Err(Refusal::Local(DropReason::Local)),
            _ => self.forward(frame, ip),
        }
    }

    /// IPv6 to a group MAC that is not neighbour discovery: a VRRP advert to a link-local
    /// scope group (ff02::12, to the group's own MAC: `kernel::carried_multicast6`) goes up
    /// to the ingress port's twin, within the exception path's rate, as the IPv4 stage sends
    /// 224.0.0.0/24 up (`link_multicast`); everything else (MLD, router advertisements, other
    /// protocols or groups, a port without a twin) is dropped as `l2_multicast`: rvs routes no
    /// multicast, and the twin's kernel needs none of the rest.
    fn link_multicast6(&self, in_port: u16, hdr: &EthHdr, ip: &Ipv6Hdr) -> Refusal {
        let refused = Refusal::Drop(DropReason::L2Multicast);
        if !self.dp.kernel.has_twin(in_port)
            || !super::kernel::carried_multicast6(ip)
            || hdr.dst != eth::ipv6_multicast_mac(ip.dst)
        {
            return refused;
        }
        // Our own advert looped back by a switch is one of these.
        if self.martian_source6(ip.src) {
            return Refusal::Drop(DropReason::Martian);
        }
        Refusal::Local(DropReason::L2Multicast)
    }

    /// The IPv6 martian rule, `dst_local` saying whether `dst` is one of our addresses: never
    /// from a group, an unspecified or loopback address, ourselves or a VIP; never to a group
    /// or special address (as the IPv4 stage's martians); a link-local source reaches our own
    /// addresses only (RFC 4291 2.5.6: never forwarded to another link).
    #[inline]
    pub(super) fn martian6(&self, src: Ipv6Addr, dst: Ipv6Addr, dst_local: bool) -> bool {
        self.martian_source6(src)
            || (!dst_local && (!ipv6::forwardable(dst) || ipv6::is_link_local(src)))
    }

    /// A source no packet from the wire carries: a group, unspecified, loopback or
    /// IPv4-mapped address, one of ours or a VIP (as the IPv4 stage's martian source check).
    #[inline]
    fn martian_source6(&self, src: Ipv6Addr) -> bool {
        ipv6::is_martian_src(src) || self.is_local6(src) || self.snap.is_vip6(src)
    }

    /// ICMPv6 that is not neighbour discovery: errors about tracked connections NATed (the
    /// IPv4 path's `conn_error`), echo requests to us answered, the rest to a VIP dropped, to
    /// a port address sent up to the kernel twin, the rest routed.
    #[allow(clippy::too_many_arguments)]
    fn icmp6(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
        ip: &Ipv6Hdr,
        vip: bool,
        local: bool,
    ) -> Result<Action, Refusal> {
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let msg = ip.payload(l3).ok_or(DropReason::Truncated)?;
        let (&icmp_type, &code) = (
            msg.first().ok_or(DropReason::Truncated)?,
            msg.get(1).ok_or(DropReason::Truncated)?,
        );
        if icmpv6::is_error(icmp_type) {
            // Destination unreachable, packet too big, time exceeded: the errors IPVS relates
            // to a connection (ip_vs_in_icmp_v6); a parameter problem is not.
            let about_conn = icmp_type <= icmpv6::TYPE_TIME_EXCEEDED;
            if let Some(e) = icmpv6::parse_error(msg).filter(|_| about_conn) {
                let checksum_ok = icmpv6::checksum_ok(ip.src, ip.dst, msg);
                if let Some(action) = self.conn_error(frame, ip, &e, checksum_ok)? {
                    return Ok(action);
                }
            }
            return if vip {
                Err(DropReason::IcmpUnrelated.into())
            } else if local {
                // About the kernel's own traffic (a packet too big for its TCP): its business.
                Err(Refusal::Local(DropReason::IcmpUnrelated))
            } else {
                self.forward(frame, ip)
            };
        }
        if !(vip || local) {
            return self.forward(frame, ip);
        }
        if icmp_type != icmpv6::TYPE_ECHO_REQUEST || code != 0 {
            // Echo replies to the kernel's ping6, ...: its business (not a VIP's).
            return Err(if vip {
                DropReason::IcmpUnhandled.into()
            } else {
                Refusal::Local(DropReason::IcmpUnhandled)
            });
        }
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        icmpv6::echo_reply_in_place(l3, ip).ok_or(DropReason::Malformed)?;
        eth::set_macs(frame, &hdr.src, &port.mac).ok_or(DropReason::Malformed)?;
        self.stats().event(Event::EchoReplied);
        Ok(Action::Tx(in_port))
    }

    /// Neighbour discovery: learns the sender, answers solicitations for the addresses the
    /// port holds (its own, and those a VRRP instance holds there now) and, on ports that hold
    /// them, the IPv6 VIPs no instance names (one that an instance names only while held,
    /// as ARP for IPv4: `owned`); the rest is consumed.
    /// The frame is `buf[..len]`, the rest of `buf` room for the answer.
    pub(super) fn ndp(
        &self,
        in_port: u16,
        buf: &mut [u8],
        len: usize,
    ) -> Result<Action, DropReason> {
        let port = self
            .dp
            .ports
            .get(usize::from(in_port))
            .ok_or(DropReason::BadPort)?;
        let outcome = self
            .dp
            .neigh6
            .ndp_input(
                in_port,
                port.mac,
                buf,
                len,
                |ip| port.on_link6(ip) && !self.is_local6(ip),
                |target| {
                    port.holds6(target)
                        || self.owned.owns(in_port, target)
                        || (port.holds_vips()
                            && self.snap.is_vip6(target)
                            && !self.owned.is_managed(target))
                },
            )
            .map_err(|e| match e {
                // Router solicitations and advertisements, redirects: not rvs's business.
                NdpError::NotNdp => DropReason::NdpConsumed,
                _ => DropReason::Malformed,
            })?;
        match outcome {
            NdpOutcome::Replied(len) => {
                self.stats().event(Event::NdpReplied);
                Ok(Action::Reply { port: in_port, len })
            }
            NdpOutcome::NotOurs => Err(DropReason::NdpNotOurs),
            NdpOutcome::Consumed => Err(DropReason::NdpConsumed),
        }
    }

    /// The IPv6 header of the packet `l3` as the IPv6 stage takes it: [`Ipv6Hdr::parse`], but
    /// a routing header with segments left on a packet in transit (its destination neither
    /// ours nor a VIP) is no reason to refuse it: only the node in the destination field
    /// processes it (RFC 8200 4.4), a router forwards the packet as any other. For us, as
    /// before: `bad_ext_header` (rvs is never a source route's hop).
    #[inline]
    pub(super) fn parse6(&self, l3: &[u8]) -> Result<Ipv6Hdr, DropReason> {
        Ipv6Hdr::parse(l3).or_else(|e| self.parse6_refused(l3, e))
    }

    /// [`Pipeline::parse6`] of a packet `Ipv6Hdr::parse` refused with `e`.
    #[cold]
    fn parse6_refused(&self, l3: &[u8], e: Ipv6Error) -> Result<Ipv6Hdr, DropReason> {
        if e != Ipv6Error::RoutingSegmentsLeft {
            return Err(ip6_error(e));
        }
        let ip = Ipv6Hdr::parse_in_transit(l3).map_err(ip6_error)?;
        if self.is_local6(ip.dst) || self.snap.is_vip6(ip.dst) {
            return Err(ip6_error(e));
        }
        Ok(ip)
    }

    /// Whether `ip` is one of the ports' own IPv6 addresses (their link-local ones included),
    /// or one a VRRP instance holds now.
    pub(super) fn is_local6(&self, ip: Ipv6Addr) -> bool {
        let a = u128::from(ip);
        (self.dp.local6_filter.may_hold(a) && self.dp.local6.contains(&a)) || self.owned.holds6(ip)
    }

    /// Builds the ICMPv6 error `p` about the (unchanged) IPv6 frame `buf[..len]` in its place,
    /// if RFC 4443 (2.4) and the rate limit allow: never about an ICMPv6 error, never to or
    /// from a group, special address or ourselves. From the packet's destination when that is
    /// a VIP or ours, else from the ingress port's address.
    pub(super) fn icmp6_error(
        &mut self,
        in_port: u16,
        buf: &mut [u8],
        len: usize,
        p: IcmpError,
    ) -> Action {
        let Some((port, ip)) = self.answerable6(in_port, buf, len) else {
            return Action::Drop;
        };
        let Some(l3) = buf.get(eth::HDR_LEN..len) else {
            return Action::Drop;
        };
        if ipv6::is_martian_src(ip.src)
            || self.is_local6(ip.src)
            || self.snap.is_vip6(ip.src)
            || !icmpv6::may_answer(l3, &ip)
        {
            return Action::Drop;
        }
        let src = if self.is_local6(ip.dst) || self.snap.is_vip6(ip.dst) {
            Some(ip.dst)
        } else {
            port.source6(ip.src)
        };
        let (Some(src), src_mac) = (src, port.mac) else {
            return Action::Drop;
        };
        self.emit_icmp_error(in_port, p, p.v6(), |(icmp_type, code, rest)| {
            let spec = ErrorSpec {
                icmp_type,
                code,
                rest,
                src,
                src_mac,
            };
            icmpv6::build_error_in_place(buf, len, &ip, &spec)
        })
    }

    /// The ingress port and IPv6 header of the frame `buf[..len]` an ICMPv6 error or a TCP
    /// RST is to be built for, unless its source MAC is a group address.
    pub(super) fn answerable6(
        &self,
        in_port: u16,
        buf: &[u8],
        len: usize,
    ) -> Option<(&PortSetup, Ipv6Hdr)> {
        let port = self.dp.ports.get(usize::from(in_port))?;
        let frame = buf.get(..len)?;
        let hdr = EthHdr::parse(frame)?;
        let ip = self.parse6(frame.get(eth::HDR_LEN..)?).ok()?;
        (!eth::is_multicast(&hdr.src)).then_some((port, ip))
    }

    /// The IPv6 addresses a worker announces with unsolicited neighbour advertisements: each
    /// port's own, and on ports that hold VIPs, every IPv6 VIP no VRRP instance names (those
    /// are announced when an instance takes them: `BurstDriver::announce`).
    pub(crate) fn ipv6_announcements(&self) -> impl Iterator<Item = (u16, Ipv6Addr)> + '_ {
        self.dp.ports.iter().enumerate().flat_map(move |(i, p)| {
            let vips = p
                .holds_vips()
                .then(|| self.snap.vips6())
                .into_iter()
                .flatten()
                .filter(|&v| !self.owned.is_managed(v));
            p.addrs6
                .iter()
                .map(|&(a, _)| a)
                .chain(vips)
                .map(move |a| (i as u16, a))
        })
    }

    /// Writes an unsolicited neighbour advertisement of `addr` out of `port` into `buf`;
    /// returns its length, 0 if `buf` is too small or the port is unknown.
    pub(crate) fn unsolicited_na(&self, port: u16, addr: Ipv6Addr, buf: &mut [u8]) -> usize {
        self.dp.ports.get(usize::from(port)).map_or(0, |p| {
            ndp::build_unsolicited_advertisement(buf, p.mac, addr).unwrap_or(0)
        })
    }
}

/// Whether the ICMPv6 message of `ip` (in `l3`) is neighbour discovery (router/neighbour
/// solicitation and advertisement, redirect: types 133-137).
fn is_ndp(l3: &[u8], ip: &Ipv6Hdr) -> bool {
    l3.get(ip.l4_off)
        .is_some_and(|t| (icmpv6::TYPE_ROUTER_SOLICIT..=icmpv6::TYPE_REDIRECT).contains(t))
}

/// The drop reason for an IPv6 header `Ipv6Hdr::parse` refused.
fn ip6_error(e: Ipv6Error) -> DropReason {
    match e {
        Ipv6Error::Truncated => DropReason::Truncated,
        Ipv6Error::BadVersion => DropReason::BadVersion,
        Ipv6Error::BadPayloadLen => DropReason::BadTotalLen,
        Ipv6Error::NestedFragment | Ipv6Error::BadFragment => DropReason::BadFragment,
        Ipv6Error::UnknownExtHeader => DropReason::UnknownExtHeader,
        Ipv6Error::ExtOverrun
        | Ipv6Error::HopByHopNotFirst
        | Ipv6Error::RepeatedHeader
        | Ipv6Error::RoutingSegmentsLeft => DropReason::BadExtHeader,
    }
}
