//! The kernel exception path as the pipeline sees it (docs/exception-path.md): traffic for our
//! own non-VIP addresses that no stage handles goes up to the ingress port's kernel twin, within
//! a per-worker token bucket, and so does link-local multicast (VRRP, IPVS sync; for IPv6,
//! VRRP's only: [`carried_multicast6`]); IPv4 and IPv6 packets the kernel sends through a twin
//! come down here to be routed out of a port as the dataplane's own packets are, IPv4
//! multicast and IPv6 VRRP adverts (to ff02::12) out of the twin's own port (other IPv6
//! multicast is dropped: MLD reports and router solicitations are about the twin, not the
//! wire).
//!
//! Only refused frames reach [`Pipeline::send_up`] (a stage's `Refusal::Local`), so the
//! established-flow path pays nothing for it.

use super::{Action, Pipeline};
use crate::packet::eth;
use crate::packet::ipv4::Ipv4Hdr;
use crate::packet::ipv6::{self, Ipv6Hdr};
use crate::stats::{DropReason, Event};

/// IPPROTO_VRRP (RFC 5798), IPv6's next header for VRRP adverts.
pub const PROTO_VRRP: u8 = 112;

/// The IPv6 multicast the exception path carries between a twin and the wire, both ways: VRRP
/// (next header 112 right after the fixed header: no extension header, no fragment, atomic
/// ones included) from a link-local address (RFC 5798 5.1.2.1) to a link-local scope group
/// (ff02::/16: VRRP's ff02::12), as 224.0.0.18 is carried for IPv4. Other IPv6 multicast
/// (MLD, router discovery, a UDP datagram to all-nodes) is neither sent up nor down: it is
/// about the twin, not the wire.
pub(super) fn carried_multicast6(ip: &Ipv6Hdr) -> bool {
    ipv6::is_link_local_multicast(ip.dst)
        && ip.proto == PROTO_VRRP
        && ip.l4_off == ipv6::HDR_LEN
        && ipv6::is_link_local(ip.src)
}

/// Frames each worker sends up per second unless configured ([`KernelPath::rate`]).
pub const KERNEL_RATE_PER_SEC: u64 = 4000;
/// The token bucket's depth unless configured.
pub const KERNEL_BURST: u64 = 256;

/// Which ports have a kernel twin, and how much each worker may send up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPath {
    /// Per port index: whether it has a twin (missing entries: no twin).
    pub twins: Vec<bool>,
    /// Frames per second per worker.
    pub rate: u64,
    /// Token bucket depth.
    pub burst: u64,
}

impl Default for KernelPath {
    /// No twin on any port: own-address traffic is dropped as before.
    fn default() -> KernelPath {
        KernelPath {
            twins: Vec::new(),
            rate: KERNEL_RATE_PER_SEC,
            burst: KERNEL_BURST,
        }
    }
}

impl KernelPath {
    pub(super) fn has_twin(&self, port: u16) -> bool {
        self.twins.get(usize::from(port)).copied().unwrap_or(false)
    }
}

/// A token bucket on the workers' millisecond clock: `rate` tokens per second, at most `burst`.
/// Whole tokens only; the time of a partial token is kept, so that low rates are exact.
#[derive(Debug, Clone, Copy)]
pub(super) struct TokenBucket {
    tokens: u64,
    /// The millisecond the tokens were last counted up to.
    at_ms: u64,
}

impl TokenBucket {
    pub(super) fn full(burst: u64) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            at_ms: 0,
        }
    }

    /// Takes one token at `now_ms` if there is one.
    pub(super) fn take(&mut self, now_ms: u64, rate: u64, burst: u64) -> bool {
        if now_ms < self.at_ms {
            // A clock from another epoch: start counting again.
            self.at_ms = now_ms;
        }
        let elapsed = now_ms - self.at_ms;
        let earned = elapsed.saturating_mul(rate) / 1000;
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(burst);
            // Advance by the time the earned tokens took, not to now: the remainder counts
            // towards the next token. A full bucket forgets it.
            self.at_ms = if self.tokens == burst {
                now_ms
            } else {
                self.at_ms + earned.saturating_mul(1000) / rate.max(1)
            };
        }
        let ok = self.tokens > 0;
        if ok {
            self.tokens -= 1;
        }
        ok
    }
}

impl Pipeline {
    /// A frame for our own stack that arrived on `in_port`, refused by its stage as `reason`:
    /// up to the port's twin if it has one and the bucket a token, else dropped.
    pub(super) fn send_up(&mut self, in_port: u16, reason: DropReason) -> Action {
        let kp = &self.dp.kernel;
        if !kp.has_twin(in_port) {
            self.stats().drop(reason);
            return Action::Drop;
        }
        let (rate, burst) = (kp.rate, kp.burst);
        if !self.kernel_bucket.take(self.now, rate, burst) {
            self.stats().drop(DropReason::KernelRateLimited);
            return Action::Drop;
        }
        if reason == DropReason::L2Multicast {
            self.stats().event(Event::MulticastToKernel);
        }
        // Counted (`to_kernel`) by the driver once the queue has taken it.
        Action::ToKernel { port: in_port }
    }

    /// An IPv4 or IPv6 packet the kernel sent through the twin of port `twin`, in `frame`
    /// behind room for an Ethernet header (`frame[..14]`, any content): routed by its
    /// destination as rvs's own packets are (no TTL or hop-limit decrement: it starts here), the
    /// L2 header written, or held for ARP or neighbour discovery; IPv4 multicast goes out of
    /// `twin` itself to the group's MAC, never anywhere else. Counts it (`from_kernel`,
    /// `multicast_from_kernel`) and any drop (`kernel_unroutable`).
    pub fn route_from_kernel(&mut self, twin: u16, frame: &mut [u8]) -> Action {
        self.stats().event(Event::FromKernel);
        let routed = match frame.get(eth::HDR_LEN).map(|b| b >> 4) {
            Some(4) => self.route_local(twin, frame),
            Some(6) => self.route_local6(twin, frame),
            _ => None,
        };
        match routed {
            Some(action) => action,
            None => {
                self.stats().drop(DropReason::KernelUnroutable);
                Action::Drop
            }
        }
    }

    fn route_local(&self, twin: u16, frame: &mut [u8]) -> Option<Action> {
        frame
            .get_mut(12..eth::HDR_LEN)?
            .copy_from_slice(&eth::ETHERTYPE_IPV4.to_be_bytes());
        let ip = Ipv4Hdr::parse_any(frame.get(eth::HDR_LEN..)?).ok()?;
        if ip.dst.is_multicast() {
            if self.dp.is_martian(ip.src) {
                return None;
            }
            let mac = eth::ipv4_multicast_mac(ip.dst);
            return self.multicast_out(twin, frame, mac, ip.total_len);
        }
        if self.dp.is_martian(ip.dst) {
            return None;
        }
        let (out, next_hop) = self.dp.route(ip.dst)?;
        let mtu = self.dp.ports.get(usize::from(out))?.mtu;
        if ip.total_len > usize::from(mtu) {
            return None;
        }
        Some(self.l2_out(frame, out, next_hop))
    }

    /// An IPv6 packet from a twin: routed as the dataplane's own IPv6 packets are (`route6`:
    /// the port whose prefix holds the destination, else the first IPv6 gateway), the egress
    /// MTU checked (the kernel knows it: the twin has the port's), held for neighbour discovery
    /// while the next hop is unknown. A VRRP advert to ff02::12 from the twin's link-local
    /// address ([`carried_multicast6`]) goes out of `twin`'s port as IPv4 multicast does.
    /// Never routed: other multicast (the kernel's MLD reports and router solicitations on the
    /// twin, which a TUN carries as plain IP), and any other destination or source that is
    /// link-local, loopback, unspecified or IPv4-mapped (rvs holds no neighbour of the
    /// kernel's link-local addresses).
    fn route_local6(&self, twin: u16, frame: &mut [u8]) -> Option<Action> {
        frame
            .get_mut(12..eth::HDR_LEN)?
            .copy_from_slice(&eth::ETHERTYPE_IPV6.to_be_bytes());
        let ip = Ipv6Hdr::parse(frame.get(eth::HDR_LEN..)?).ok()?;
        if carried_multicast6(&ip) {
            if ipv6::is_martian_src(ip.src) {
                return None;
            }
            let mac = eth::ipv6_multicast_mac(ip.dst);
            return self.multicast_out(twin, frame, mac, ip.total_len);
        }
        if !ipv6::forwardable(ip.dst) || !ipv6::forwardable(ip.src) {
            return None;
        }
        let (out, next_hop) = self.dp.route6(ip.dst)?;
        let mtu = self.dp.ports.get(usize::from(out))?.mtu;
        if ip.total_len > usize::from(mtu) {
            return None;
        }
        Some(self.l2_out(frame, out, next_hop))
    }

    /// Multicast from the kernel (a VRRP advert, IPVS sync, an IGMP report), `total_len` bytes
    /// of IP: out of the port whose twin sent it (the interface the kernel's socket chose), to
    /// the group's MAC `group_mac` (RFC 1112, RFC 2464 7), the kernel's TTL or hop limit kept
    /// (VRRP's 255).
    fn multicast_out(
        &self,
        twin: u16,
        frame: &mut [u8],
        group_mac: [u8; 6],
        total_len: usize,
    ) -> Option<Action> {
        if !self.dp.kernel.has_twin(twin) {
            return None;
        }
        let port = self.dp.ports.get(usize::from(twin))?;
        if total_len > usize::from(port.mtu) {
            return None;
        }
        eth::set_macs(frame, &group_mac, &port.mac)?;
        self.stats().event(Event::MulticastFromKernel);
        Some(Action::Tx(twin))
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;

    #[test]
    fn bucket_gives_its_burst_then_its_rate() {
        let (rate, burst) = (500, 4);
        let mut b = TokenBucket::full(burst);
        let taken = (0..10).filter(|_| b.take(0, rate, burst)).count();
        assert_eq!(taken, 4);
        // 500/s: one token every 2 ms, the odd millisecond carried over.
        assert!(!b.take(1, rate, burst));
        assert!(b.take(2, rate, burst));
        assert!(!b.take(2, rate, burst));
        assert!(!b.take(3, rate, burst));
        assert!(b.take(4, rate, burst));
        // Over one second at most rate + burst.
        let mut b = TokenBucket::full(burst);
        let taken = (0..1000u64)
            .flat_map(|ms| std::iter::repeat_n(ms, 10))
            .filter(|&ms| b.take(ms, rate, burst))
            .count();
        assert!((500..=504).contains(&taken), "{taken}");
        // A long pause refills to the burst, never past it.
        let taken = (0..100).filter(|_| b.take(60_000, rate, burst)).count();
        assert_eq!(taken, 4);
    }
}
