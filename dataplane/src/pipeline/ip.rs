//! The IPv4 stage: header checks, martians, sender learning, then by protocol; and fragments:
//! a first fragment takes the normal path and its decision is recorded, later ones follow it.

use super::context::count_dest;
use super::family::IpHeader;
use super::{Action, Pipeline, PortSetup, Refusal};
use crate::addr_set::{LOCAL, VIP};
use crate::conntrack::Dir;
use crate::frag::{FragInsert, FragKey, FragVerdict};
use crate::packet::eth::{self, EthHdr};
use crate::packet::ipv4::{Ipv4Hdr, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::packet::l4::Side;
use crate::packet::ParseError;
use crate::stats::{DropReason, Event};

impl Pipeline {
    /// An IPv4 frame for one of our MACs.
    pub(super) fn ipv4(
        &self,
        in_port: u16,
        port: &PortSetup,
        hdr: &EthHdr,
        frame: &mut [u8],
    ) -> Result<Action, Refusal> {
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        // Borrowed where the parse left it (a header moved out of its `Result` was copied in
        // wide loads over the narrow stores that wrote it: a store-buffer stall per packet).
        let parsed = Ipv4Hdr::parse_any(l3);
        let ip = parsed.as_ref().map_err(|e| ip_error(*e))?;
        let dst_class = self
            .not_martian(ip.src, ip.dst)
            .ok_or(DropReason::Martian)?;
        // A sender on one of our links is learned as if it had sent ARP: from every packet
        // that connection tracking does not handle, and from a TCP/UDP packet only when it
        // finds no connection (`tcp_udp`): established flows skip the neighbour lookup. The
        // source is none of ours: `not_martian` refused those. The MAC known now is asked
        // through the worker's memo (the table's answer; a sender is often a reply's next hop
        // already there).
        let learn = || {
            if port.on_link(ip.src) && self.next_hop_mac4(in_port, ip.src) != Some(hdr.src) {
                self.dp.neigh.learn(in_port, ip.src, hdr.src);
            }
        };
        let tcp_udp = ip.proto == PROTO_TCP || ip.proto == PROTO_UDP;
        if !tcp_udp || ip.frag_offset() != 0 {
            learn();
        }
        if ip.has_options() {
            // Options are kept as they are, as the kernel's NAT does.
            self.stats().event(Event::IpOptions);
        }
        let vip = dst_class & VIP != 0;
        let ours = dst_class & (VIP | LOCAL) != 0;
        if ip.is_fragment() {
            if ours && !(vip && tcp_udp) {
                // For rvs itself (a fragmented ping to a VIP, anything to the DIP): rvs
                // reassembles nothing; the kernel behind a twin does, for the non-VIP ones.
                return Err(if vip {
                    DropReason::Fragment.into()
                } else {
                    Refusal::Local(DropReason::Fragment)
                });
            }
            if ip.frag_offset() != 0 {
                return self.later_fragment(frame, ip, ours);
            }
            if !tcp_udp {
                return self.forward(frame, ip);
            }
        }
        match ip.proto {
            PROTO_TCP | PROTO_UDP => self.tcp_udp(frame, ip, learn),
            PROTO_ICMP => self.icmp(in_port, port, hdr, frame, ip, ours),
            _ if vip => Err(DropReason::UnknownProto.into()),
            _ if ours => Err(Refusal::Local(DropReason::Local)),
            _ => self.forward(frame, ip),
        }
    }

    /// A fragment at a non-zero offset: it follows the decision taken for its first fragment,
    /// or waits for it.
    fn later_fragment(
        &self,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        ours: bool,
    ) -> Result<Action, Refusal> {
        if ip.proto == PROTO_TCP && ip.frag_offset() == 8 {
            // RFC 1858: a TCP fragment at offset 8 can only mean to overwrite the TCP header.
            return Err(DropReason::BadFragment.into());
        }
        self.follow_first_fragment(frame, ip, &frag_key(ip), ours)
    }

    /// A later fragment (of either family) follows the decision recorded under `key` for its
    /// first fragment, or waits for it.
    pub(super) fn follow_first_fragment<H: IpHeader>(
        &self,
        frame: &mut [u8],
        ip: &H,
        key: &FragKey<H::Addr>,
        ours: bool,
    ) -> Result<Action, Refusal> {
        let (side, addr, dst, slot, dir) = match H::frags(&self.dp).lookup(key, self.now) {
            Some(FragVerdict::Route) if !ours => return self.forward(frame, ip),
            Some(FragVerdict::Dnat { addr, slot }) => (Side::Dst, addr, addr, slot, Dir::Inbound),
            Some(FragVerdict::Snat { addr, slot }) => (Side::Src, addr, ip.dst(), slot, Dir::Reply),
            Some(FragVerdict::Route) => return Err(DropReason::FragNoFirst.into()),
            // Overtaken by a later fragment of its own datagram, or lost: the caller holds the
            // frame a while and offers it again (`retry_fragment`).
            None => return Ok(Action::AwaitFirstFragment),
        };
        if ip.hops() <= 1 {
            return Err(DropReason::TtlExpired.into());
        }
        let (out, next_hop) = self.egress(dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        H::rewrite_addr(l3, side, addr).ok_or(DropReason::Malformed)?;
        let st = self.stats();
        count_dest(st, slot, dir, ip.packet_len() as u64);
        st.event(Event::FragFollowed);
        Ok(self.l2_out(frame, out, next_hop))
    }

    /// A later fragment that [`Pipeline::process_buf`] answered with
    /// [`Action::AwaitFirstFragment`], offered again (the frame as it was then): the recorded
    /// decision now, if any (any worker's first fragment records it: the table is shared),
    /// else `AwaitFirstFragment` again. Counts no rx (the frame was counted when it came in)
    /// but every drop it decides.
    pub fn retry_fragment(&mut self, frame: &mut [u8]) -> Action {
        if frame.get(12..14) == Some(&eth::ETHERTYPE_IPV6.to_be_bytes()) {
            return self.retry_fragment6(frame);
        }
        let parsed = frame
            .get(eth::HDR_LEN..)
            .map(|l3| Ipv4Hdr::parse_any(l3).map_err(ip_error));
        let refusal = match parsed {
            Some(Ok(ip)) => {
                let ours = self.snap.is_vip(ip.dst) || self.is_local(ip.dst);
                match self.later_fragment(frame, &ip, ours) {
                    Ok(action) => return action,
                    Err(r) => r,
                }
            }
            Some(Err(reason)) => reason.into(),
            None => DropReason::Truncated.into(),
        };
        // A later fragment is never answered (RFC 1812: no ICMP error about it; no RST: it has
        // no TCP header).
        // Nor sent up: a later fragment to our own address went up in `ipv4` (ours), never here.
        self.drop_retried(refusal)
    }

    /// [`Pipeline::retry_fragment`] of an IPv6 later fragment.
    fn retry_fragment6(&mut self, frame: &mut [u8]) -> Action {
        let parsed = frame.get(eth::HDR_LEN..).map(|l3| self.parse6(l3));
        let refusal = match parsed {
            Some(Ok(ip)) => {
                let ours = self.snap.is_vip6(ip.dst) || self.is_local6(ip.dst);
                let Some(key) = ip.frag_key() else {
                    return self.drop_retried(DropReason::BadFragment.into());
                };
                match self.follow_first_fragment(frame, &ip, &key, ours) {
                    Ok(action) => return action,
                    Err(r) => r,
                }
            }
            Some(Err(_)) => DropReason::Malformed.into(),
            None => DropReason::Truncated.into(),
        };
        self.drop_retried(refusal)
    }

    /// A retried later fragment's refusal: counted and dropped, never answered.
    fn drop_retried(&self, refusal: Refusal) -> Action {
        let reason = match refusal {
            Refusal::Drop(reason)
            | Refusal::Answer(reason, _)
            | Refusal::Reset(reason)
            | Refusal::Local(reason) => reason,
            // Never for a fragment (neighbour discovery in fragments is refused).
            Refusal::Ndp => DropReason::Malformed,
        };
        self.stats().drop(reason);
        Action::Drop
    }

    /// Records the decision for a first fragment's datagram.
    pub(super) fn record_fragment<H: IpHeader>(&self, ip: &H, verdict: FragVerdict<H::Addr>) {
        let Some(key) = ip.frag_key() else {
            return;
        };
        let st = self.stats();
        st.event(Event::FragFirst);
        match H::frags(&self.dp).insert(&key, verdict, self.now) {
            FragInsert::Stored => {}
            FragInsert::Evicted | FragInsert::Busy => st.event(Event::FragEvicted),
        }
    }
}

/// The drop reason for an IPv4 header `Ipv4Hdr::parse_any` refused.
fn ip_error(e: ParseError) -> DropReason {
    match e {
        ParseError::Truncated => DropReason::Truncated,
        ParseError::BadVersion => DropReason::BadVersion,
        ParseError::BadHeaderLen => DropReason::BadHeaderLen,
        ParseError::BadTotalLen => DropReason::BadTotalLen,
        ParseError::BadChecksum => DropReason::BadChecksum,
        ParseError::Fragment => DropReason::Fragment,
        ParseError::Unsupported => DropReason::Malformed,
    }
}

/// The datagram a fragment belongs to.
pub(super) fn frag_key(ip: &Ipv4Hdr) -> FragKey {
    FragKey {
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        id: u32::from(ip.id),
    }
}
