//! The TCP RSTs rvs originates: to a client whose connection rvs expired because its real
//! server was removed (`expire_nodest_conn`), so that the client fails fast instead of
//! retransmitting into nothing. IPv4 and IPv6 alike (one builder, `l4::build_rst_in_place`).

use super::{Action, Pipeline};
use crate::packet::eth;
use crate::packet::l4;
use crate::stats::Event;

impl Pipeline {
    /// Builds the RST answering the TCP segment `buf[..len]` (received on `in_port`) in its
    /// place, from the segment's destination (VIP:vport) back to its sender, out of the ingress
    /// port to the frame's source MAC. Not rate-limited: one per connection rvs expired. `Drop`
    /// when the segment may not be answered (a RST, a fragment, a group source MAC).
    pub(super) fn tcp_reset(&self, in_port: u16, buf: &mut [u8], len: usize) -> Action {
        let ipv6 = eth::EthHdr::parse(buf.get(..len).unwrap_or_default())
            .is_some_and(|h| h.ethertype == eth::ETHERTYPE_IPV6);
        let built = if ipv6 {
            self.answerable6(in_port, buf, len)
                .and_then(|(port, ip)| l4::build_rst_in_place(buf, len, &ip, port.mac))
        } else {
            self.answerable(in_port, buf, len)
                .and_then(|(port, ip)| l4::build_rst_in_place(buf, len, &ip, port.mac))
        };
        match built {
            Some(n) => {
                self.stats().event(Event::TcpRstSent);
                Action::Reply {
                    port: in_port,
                    len: n,
                }
            }
            None => Action::Drop,
        }
    }
}
