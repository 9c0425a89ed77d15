//! The established fast path: a plain TCP or UDP packet over IPv4 (no options, not a
//! fragment) of a connection the burst prefetch found, NATed in one straight pass instead of
//! stage by stage. It takes every decision before it changes anything and hands whatever it
//! does not handle to the stages untouched (`None`); what it does handle gets what the stages
//! would give it, from the same functions (`tests/fast_path.rs` checks that frame by frame).

use super::conn::{Mapping, OnHit};
use super::context::Hint;
use super::family::IpHeader;
use super::{Action, Pipeline};
use crate::addr_set::MARTIAN;
use crate::conntrack::{Prefetched, TcpEvent, Tuple};
use crate::packet::eth;
use crate::packet::ipv4::{Ipv4Hdr, PROTO_TCP};
use crate::packet::l4::L4Hdr;
use crate::packet::IpHdr;
use crate::stats::DropReason;

impl Pipeline {
    /// The frame handled by the fast path, or `None` (nothing changed, nothing counted) for
    /// the stages to handle. A frame whose prefetch found no entry to try (a new connection's)
    /// leaves at the first test.
    #[inline]
    pub(super) fn fast_established(&self, in_port: u16, frame: &mut [u8]) -> Option<Action> {
        match self.peek_hint()? {
            Hint::V4(t, pre) if pre.has_candidate() => {
                self.fast_established4(in_port, frame, t, pre)
            }
            _ => None,
        }
    }

    /// [`Pipeline::fast_established`] of an IPv4 frame whose prefetch names a candidate entry.
    #[inline]
    fn fast_established4(
        &self,
        in_port: u16,
        frame: &mut [u8],
        t: &Tuple,
        pre: &Prefetched,
    ) -> Option<Action> {
        // First the connection (by the prefetched tuple, read from this frame's bytes): a new
        // connection's packet leaves at once. Then the frame's checks, which confirm the tuple.
        let hit = self.dp.conns.prefetched_hit(t, pre, self.now)?;
        let port = self.dp.ports.get(usize::from(in_port))?;
        let (l2, l3) = frame.split_at_mut_checked(eth::HDR_LEN)?;
        if l2.get(..6)? != port.mac || l2.get(12..)? != eth::ETHERTYPE_IPV4.to_be_bytes() {
            return None;
        }
        // Options are counted by the IPv4 stage.
        if l3.first() != Some(&0x45) {
            return None;
        }
        let parsed = Ipv4Hdr::parse_any(l3);
        let ip = parsed.as_ref().ok()?;
        if ip.is_fragment() || ip.ttl <= 1 {
            return None;
        }
        let l4 = L4Hdr::parse(ip.proto, ip.payload(l3)?).ok()?;
        let seen = Tuple {
            proto: ip.proto,
            src: ip.src,
            sport: l4.sport,
            dst: ip.dst,
            dport: l4.dport,
        };
        // The IPv4 stage's martian checks, in its order of precedence over the lookup.
        if seen != *t || self.addr_class(ip.src) != 0 || self.addr_class(ip.dst) & MARTIAN != 0 {
            return None;
        }
        let tcp = ip.proto == PROTO_TCP;
        let new_syn = tcp && l4.flags.syn() && !l4.flags.rst();
        if self.on_hit::<Ipv4Hdr>(&hit, new_syn) != OnHit::Nat {
            return None;
        }
        let m = Mapping::from(&hit);
        let nat = m.rewrite(ip.dst);
        let (out, next_hop) = self.egress(nat.dst, ip).ok()?;
        let next_mac = self.next_hop_mac(out, next_hop)?;
        let out_mac = self.dp.ports.get(usize::from(out))?.mac;
        // The last step that may decline; it writes nothing then.
        eth::set_macs(l2, &next_mac, &out_mac)?;

        // Decided: the stages' own steps from here.
        self.hint.set(None);
        let ev = if tcp {
            TcpEvent::from_flags(l4.flags)
        } else {
            None
        };
        self.follow::<Ipv4Hdr>(&hit, ev);
        if ip
            .rewrite_endpoint(l3, nat.side, nat.addr, nat.port)
            .is_none()
        {
            self.stats().drop(DropReason::Malformed);
            return Some(Action::Drop);
        }
        self.count_nat(&m, ip.packet_len());
        Some(Action::Tx(out))
    }
}
