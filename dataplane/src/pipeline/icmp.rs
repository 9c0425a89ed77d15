//! ICMP that is not in fragments: errors about tracked connections are rewritten (as the
//! kernel's `ip_vs_nat_icmp`), errors to a VIP about untracked flows scheduled with
//! `schedule_icmp`, echo requests to us answered, the rest dropped or routed. The error NAT
//! serves ICMPv6 too (`ip6`).

use super::conn::Mapping;
use super::family::IpHeader;
use super::{Action, Pipeline, PortSetup, Refusal};
use crate::conntrack::{ConnState, Dir, Tuple};
use crate::packet::eth::{self, EthHdr};
use crate::packet::icmp::{self, IcmpHdr};
use crate::packet::ipv4::{Ipv4Hdr, PROTO_TCP};
use crate::packet::l4::Side;
use crate::stats::{DropReason, Event};

impl Pipeline {
    /// ICMP not in fragments: errors about tracked connections are rewritten and sent on; the
    /// rest to our addresses is answered (echo) or dropped; the rest is routed.
    pub(super) fn icmp(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        ours: bool,
    ) -> Result<Action, Refusal> {
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let msg = ip.payload(l3).ok_or(DropReason::Truncated)?;
        let h = IcmpHdr::parse(msg).map_err(|_| DropReason::Truncated)?;
        if h.is_conn_error() {
            if let Some(e) = icmp::parse_error(msg) {
                if let Some(action) = self.conn_error(frame, ip, &e, icmp::checksum_ok(msg))? {
                    return Ok(action);
                }
            }
            if ours {
                return Err(if self.snap.is_vip(ip.dst) {
                    DropReason::IcmpUnrelated.into()
                } else {
                    Refusal::Local(DropReason::IcmpUnrelated)
                });
            }
            return self.forward(frame, ip);
        }
        if ours {
            return self
                .icmp_local(in_port, port, hdr, frame, ip)
                .map_err(|reason| match reason {
                    // Echo replies (the kernel's own pings), redirects, ...: its business.
                    DropReason::IcmpUnhandled if !self.snap.is_vip(ip.dst) => {
                        Refusal::Local(reason)
                    }
                    _ => Refusal::Drop(reason),
                });
        }
        self.forward(frame, ip)
    }

    /// An ICMP or ICMPv6 error quoting the packet `e` (`checksum_ok`: the message's checksum
    /// verifies): NATed when the packet is of a tracked connection (or, with `schedule_icmp`,
    /// a new one to a VIP); `None` when it is about no connection.
    pub(super) fn conn_error<H: IpHeader>(
        &self,
        frame: &mut [u8],
        ip: &H,
        e: &icmp::Embedded<H::Addr>,
        checksum_ok: bool,
    ) -> Result<Option<Action>, Refusal> {
        // The quoted packet went the other way: its reversed tuple is the key.
        let t = Tuple {
            proto: e.proto,
            src: e.dst,
            sport: e.dport,
            dst: e.src,
            dport: e.sport,
        };
        // An error goes back to the sender of the packet it quotes; one addressed elsewhere
        // is not about that packet (and would be NATed towards ourselves).
        let hit = (ip.dst() == e.src)
            .then(|| H::conns(&self.dp).lookup(&t, self.now))
            .flatten();
        let m = if let Some(hit) = hit {
            Mapping::from(&hit)
        } else if self.snap.sysctls.schedule_icmp != 0
            && H::is_vip(&self.snap, ip.dst())
            && H::is_vip(&self.snap, t.dst)
        {
            // An error to a VIP quoting a packet from a VIP: `schedule_icmp` schedules it.
            if !checksum_ok {
                return Err(DropReason::BadChecksum.into());
            }
            self.schedule_icmp::<H>(&t)?
        } else {
            return Ok(None);
        };
        if !checksum_ok {
            return Err(DropReason::BadChecksum.into());
        }
        self.icmp_nat(frame, ip, e, &m).map(Some)
    }

    /// `schedule_icmp`: an ICMP error to a VIP about a packet of flow `t` (client -> VIP:vport,
    /// the quoted packet reversed) that has no connection is scheduled as the flow's first
    /// packet would be: a connection to the chosen real server (TCP in state NONE, UDP), with
    /// no packet of the flow seen yet. A one-packet scheduling service keeps none.
    fn schedule_icmp<H: IpHeader>(&self, t: &Tuple<H::Addr>) -> Result<Mapping<H::Addr>, Refusal> {
        // Nothing to schedule to: as with schedule_icmp=0.
        let svc = self
            .service_for::<H>(t)
            .map_err(|_| Refusal::from(DropReason::IcmpUnrelated))?;
        let to = self.schedule::<H>(svc, t)?;
        let m = if to.ops {
            to.inbound(t)
        } else {
            let state = if t.proto == PROTO_TCP {
                ConnState::None
            } else {
                ConnState::Udp
            };
            Mapping::from(&self.open::<H>(&to.conn(t, state), false, None)?)
        };
        self.stats().event(Event::IcmpScheduled);
        Ok(m)
    }

    /// An ICMP error quoting a tracked connection, rewritten as the kernel's `ip_vs_nat_icmp`
    /// does: on its way to the client (quoting a packet rvs sent to the real server) the outer
    /// source and the quoted destination become VIP:vport; on its way to the real server
    /// (quoting a reply rvs sent to the client) the outer destination and the quoted source
    /// become RIP:rport.
    fn icmp_nat<H: IpHeader>(
        &self,
        frame: &mut [u8],
        ip: &H,
        e: &icmp::Embedded<H::Addr>,
        hit: &Mapping<H::Addr>,
    ) -> Result<Action, Refusal> {
        let (nat, dst) = match hit.dir {
            Dir::Reply => (
                icmp::ErrorNat {
                    outer: Side::Src,
                    outer_addr: hit.virt.0,
                    inner: Side::Dst,
                    inner_addr: hit.virt.0,
                    inner_port: hit.virt.1,
                },
                ip.dst(),
            ),
            Dir::Inbound => (
                icmp::ErrorNat {
                    outer: Side::Dst,
                    outer_addr: hit.real.0,
                    inner: Side::Src,
                    inner_addr: hit.real.0,
                    inner_port: hit.real.1,
                },
                hit.real.0,
            ),
        };
        if ip.hops() <= 1 {
            return Err(DropReason::TtlExpired.into());
        }
        let (out, next_hop) = self.egress(dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        ip.nat_error(l3, e, &nat).ok_or(DropReason::Malformed)?;
        self.stats().event(Event::IcmpNat);
        Ok(self.l2_out(frame, out, next_hop))
    }

    fn icmp_local(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
    ) -> Result<Action, DropReason> {
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let msg = ip.payload(l3).ok_or(DropReason::Truncated)?;
        let h = IcmpHdr::parse(msg).map_err(|_| DropReason::Truncated)?;
        if h.icmp_type != icmp::TYPE_ECHO_REQUEST || h.code != 0 {
            return Err(DropReason::IcmpUnhandled);
        }
        icmp::echo_reply_in_place(l3, ip).ok_or(DropReason::Malformed)?;
        eth::set_macs(frame, &hdr.src, &port.mac).ok_or(DropReason::Malformed)?;
        self.stats().event(Event::EchoReplied);
        Ok(Action::Tx(in_port))
    }
}
