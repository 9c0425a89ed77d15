//! ICMP that is not in fragments: errors about tracked connections are rewritten (as the
//! kernel's `ip_vs_nat_icmp`), errors to a VIP about untracked flows scheduled with
//! `schedule_icmp`, echo requests to us answered, the rest dropped or routed.

use super::conn::Mapping;
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
                // The quoted packet went the other way: its reversed tuple is the key.
                let t = Tuple {
                    proto: e.proto,
                    src: e.dst,
                    sport: e.dport,
                    dst: e.src,
                    dport: e.sport,
                };
                // An error goes back to the sender of the packet it quotes; one addressed
                // elsewhere is not about that packet (and would be NATed towards ourselves).
                let hit = (ip.dst == e.src)
                    .then(|| self.dp.conns.lookup(&t, self.now))
                    .flatten();
                if let Some(hit) = hit {
                    if !icmp::checksum_ok(msg) {
                        return Err(DropReason::BadChecksum.into());
                    }
                    return self.icmp_nat(frame, ip, &e, &Mapping::from(&hit));
                }
                if self.snap.sysctls.schedule_icmp != 0 && vip_to_vip(self, ip, &t) {
                    if !icmp::checksum_ok(msg) {
                        return Err(DropReason::BadChecksum.into());
                    }
                    let m = self.schedule_icmp(&t)?;
                    return self.icmp_nat(frame, ip, &e, &m);
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

    /// `schedule_icmp`: an ICMP error to a VIP about a packet of flow `t` (client -> VIP:vport,
    /// the quoted packet reversed) that has no connection is scheduled as the flow's first
    /// packet would be: a connection to the chosen real server (TCP in state NONE, UDP), with
    /// no packet of the flow seen yet. A one-packet scheduling service keeps none.
    fn schedule_icmp(&self, t: &Tuple) -> Result<Mapping, Refusal> {
        // Nothing to schedule to: as with schedule_icmp=0.
        let svc = self
            .service_for(t)
            .map_err(|_| Refusal::from(DropReason::IcmpUnrelated))?;
        let to = self.schedule(svc, t)?;
        let m = if to.ops {
            to.inbound(t)
        } else {
            let state = if t.proto == PROTO_TCP {
                ConnState::None
            } else {
                ConnState::Udp
            };
            Mapping::from(&self.open(&to.conn(t, state), false, None)?)
        };
        self.stats().event(Event::IcmpScheduled);
        Ok(m)
    }

    /// An ICMP error quoting a tracked connection, rewritten as the kernel's `ip_vs_nat_icmp`
    /// does: on its way to the client (quoting a packet rvs sent to the real server) the outer
    /// source and the quoted destination become VIP:vport; on its way to the real server
    /// (quoting a reply rvs sent to the client) the outer destination and the quoted source
    /// become RIP:rport.
    fn icmp_nat(
        &self,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        e: &icmp::Embedded,
        hit: &Mapping,
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
                ip.dst,
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
        if ip.ttl <= 1 {
            return Err(DropReason::TtlExpired.into());
        }
        let (out, next_hop) = self.egress(dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        icmp::nat_error(l3, ip, e, &nat).ok_or(DropReason::Malformed)?;
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

/// An ICMP error to a VIP quoting a packet from a VIP (`t`, reversed, is client -> VIP:vport).
fn vip_to_vip(p: &Pipeline, ip: &Ipv4Hdr, t: &Tuple) -> bool {
    p.snap.is_vip(ip.dst) && p.snap.is_vip(t.dst)
}
