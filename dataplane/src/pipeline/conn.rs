//! TCP and UDP: connection lookup, scheduling a real server for a new connection, and the
//! DNAT/SNAT of tracked packets.

use super::context::count_dest;
use super::icmp_error::IcmpError;
use super::{Action, Pipeline, Refusal};
use crate::conntrack::{ConnState, Dir, Hit, InsertError, NewConn, TcpEvent, Tuple};
use crate::frag::FragVerdict;
use crate::packet::eth;
use crate::packet::ipv4::{Ipv4Hdr, PROTO_TCP};
use crate::packet::l4::{self, L4Hdr, Side};
use crate::packet::ParseError;
use crate::persist::Quiesced;
use crate::sched::{Dests, Flow};
use crate::stats::{DropReason, Event};
use std::net::Ipv4Addr;

/// The rewrite a NATed packet gets.
struct Nat {
    side: Side,
    addr: Ipv4Addr,
    port: u16,
    /// Where the packet goes after the rewrite.
    dst: Ipv4Addr,
}

impl Pipeline {
    /// A TCP or UDP packet (or first fragment): NAT by its connection, else a new one when it
    /// opens one to a service, else routed. `learn_sender` runs unless it found a connection.
    pub(super) fn tcp_udp(
        &self,
        frame: &mut [u8],
        ip: &Ipv4Hdr,
        learn_sender: impl Fn(),
    ) -> Result<Action, Refusal> {
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let seg = ip.payload(l3).ok_or(DropReason::Truncated)?;
        let l4 = L4Hdr::parse_ip(ip, seg).map_err(|e| l4_error(e, ip))?;
        let t = Tuple {
            proto: ip.proto,
            src: ip.src,
            sport: l4.sport,
            dst: ip.dst,
            dport: l4.dport,
        };
        let tcp = ip.proto == PROTO_TCP;
        let ev = if tcp {
            TcpEvent::from_flags(l4.flags)
        } else {
            None
        };
        let new_syn = tcp && l4.flags.syn() && !l4.flags.rst();
        let sys = &self.snap.sysctls;
        let conns = &self.dp.conns;

        // Set when this packet expired its connection because the real server was removed.
        let mut expired_nodest = false;
        if let Some(hit) = conns.lookup(&t, self.now) {
            let from_client = hit.dir == Dir::Inbound;
            // Only a client's packet checks the real server, as the kernel's ip_vs_in: replies
            // of a removed server are still NATed until the client's next packet.
            expired_nodest =
                from_client && sys.expire_nodest_conn != 0 && conns.dest_retired(hit.dest);
            // A SYN reusing the ports of a closed connection starts a new one (port reuse),
            // unless conn_reuse_mode is 0.
            let reuse =
                from_client && new_syn && sys.conn_reuse_mode != 0 && yields_to_new_syn(hit.state);
            if !reuse && !expired_nodest {
                conns.update(&hit, hit.dir, ev, self.now);
                return self.nat(frame, ip, &hit);
            }
            if conns.remove(hit.conn) && expired_nodest {
                self.stats().event(Event::NodestExpired);
            }
        }
        learn_sender();

        // Whether this packet may open a connection: any UDP datagram; a TCP SYN, or with
        // sloppy_tcp any segment but a RST (as the kernel's tcp_conn_schedule).
        let opens = !tcp || new_syn || (sys.sloppy_tcp != 0 && !l4.flags.rst());
        if expired_nodest && !opens {
            // The client learns at once that its connection is gone (the kernel's own stack
            // would answer the segment, which reaches the VIP with no socket, with a RST).
            return Err(if l4.flags.rst() {
                DropReason::DestRemoved.into()
            } else {
                Refusal::Reset(DropReason::DestRemoved)
            });
        }

        if self.snap.is_vip(ip.dst) {
            // A port-0 (persistent) service takes the ports no other service has.
            let svc = self
                .snap
                .service(ip.proto, ip.dst, l4.dport)
                .or_else(|| self.snap.service(ip.proto, ip.dst, 0))
                .ok_or(DropReason::NoService)?;
            if !opens {
                return Err(DropReason::UnknownFlow.into());
            }
            let flow = Flow {
                client: ip.src,
                cport: l4.sport,
                vip: ip.dst,
                vport: l4.dport,
            };
            let dests = Dests::new(&svc.dests, conns);
            let i = match svc.spec.persistence {
                Some(timeout) => self.dp.persist.pick(
                    svc,
                    &dests,
                    ip.proto,
                    &flow,
                    timeout,
                    Quiesced::of(sys),
                    self.now,
                ),
                None => svc.scheduler.pick(&dests, &flow),
            }
            .ok_or(DropReason::NoDest)?;
            let d = svc.dests.get(i).ok_or(DropReason::NoDest)?;
            // A real server without a port (in a port-0 service) gets the client's port.
            let rport = if d.spec.port == 0 {
                l4.dport
            } else {
                d.spec.port
            };
            // The state follows from what the packet says (a sloppy_tcp ACK opens ESTABLISHED).
            let state = match ev {
                Some(ev) => crate::conntrack::tcp_transition(ConnState::None, Dir::Inbound, ev),
                // sloppy_tcp, a segment with none of SYN, FIN, ACK, RST: the kernel's CLOSE.
                None if tcp => ConnState::Close,
                None => ConnState::Udp,
            };
            let nc = NewConn {
                proto: ip.proto,
                client: (ip.src, l4.sport),
                virt: (ip.dst, l4.dport),
                real: (d.spec.addr, rport),
                dest: d.slot,
                state,
            };
            let mut inserted = conns.insert(&nc, self.now);
            if new_syn
                && inserted == Err(InsertError::ReplyConflict)
                && self.reclaim_closed(&nc.reply())
            {
                inserted = conns.insert(&nc, self.now);
            }
            let hit = match inserted {
                Ok(hit) => {
                    self.stats().event(Event::ConnCreated);
                    if let Some(s) = self.stats().slot(d.slot) {
                        s.conns.add(1);
                    }
                    hit
                }
                Err(InsertError::Exists(hit)) => {
                    conns.update(&hit, hit.dir, ev, self.now);
                    hit
                }
                Err(InsertError::ReplyConflict | InsertError::Busy) => {
                    return Err(DropReason::ConnConflict.into())
                }
                Err(InsertError::Full) => return Err(DropReason::TableFull.into()),
                Err(InsertError::DestRetired) => return Err(DropReason::NoDest.into()),
            };
            return self.nat(frame, ip, &hit);
        }
        if self.dp.is_local(ip.dst) {
            return Err(DropReason::Local.into());
        }
        if self.snap.is_real_service(ip.proto, ip.src, l4.sport) {
            // A real server's answer on no connection (its connection expired or was never
            // made here): routed on, it would reach the client un-NATed, from the RIP.
            return Err(if sys.nat_icmp_send != 0 && !l4.flags.rst() {
                Refusal::Answer(DropReason::RsNoConn, IcmpError::PORT_UNREACH)
            } else {
                DropReason::RsNoConn.into()
            });
        }
        self.forward(frame, ip)
    }

    /// Removes the closed connection (TIME_WAIT, CLOSE) holding real-side tuple `reply`, so a
    /// new SYN can take it: the client reuses its port for another virtual service that maps to
    /// the same real server and port while the old connection lingers in the table. (The
    /// kernel's newest-first lookup gives the new connection the replies too.) A live
    /// connection keeps its tuple: true only if a closed one was removed.
    fn reclaim_closed(&self, reply: &Tuple) -> bool {
        let conns = &self.dp.conns;
        match conns.lookup(reply, self.now) {
            Some(old) if yields_to_new_syn(old.state) => conns.remove(old.conn),
            _ => false,
        }
    }

    /// DNAT (inbound) or SNAT (reply) of a tracked packet, TTL decremented, then out. A packet
    /// that arrives with TTL <= 1 is dropped as `ttl_expired` (ICMP time exceeded back); one
    /// over the egress MTU as `mtu_exceeded` (with DF: ICMP fragmentation needed back). A first
    /// fragment's rewrite is recorded for the later fragments.
    fn nat(&self, frame: &mut [u8], ip: &Ipv4Hdr, hit: &Hit) -> Result<Action, Refusal> {
        let nat = match hit.dir {
            Dir::Inbound => Nat {
                side: Side::Dst,
                addr: hit.real.0,
                port: hit.real.1,
                dst: hit.real.0,
            },
            Dir::Reply => Nat {
                side: Side::Src,
                addr: hit.virt.0,
                port: hit.virt.1,
                dst: ip.dst,
            },
        };
        if ip.ttl <= 1 {
            return Err(Refusal::Answer(
                DropReason::TtlExpired,
                IcmpError::TTL_EXCEEDED,
            ));
        }
        let (out, next_hop) = self.egress(nat.dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        l4::rewrite_endpoint(l3, ip, nat.side, nat.addr, nat.port, true)
            .ok_or(DropReason::Malformed)?;
        self.record_fragment(
            ip,
            match hit.dir {
                Dir::Inbound => FragVerdict::Dnat {
                    addr: nat.addr,
                    slot: hit.dest,
                },
                Dir::Reply => FragVerdict::Snat {
                    addr: nat.addr,
                    slot: hit.dest,
                },
            },
        );
        let st = self.stats();
        count_dest(st, hit.dest, hit.dir, ip.total_len as u64);
        st.event(match hit.dir {
            Dir::Inbound => Event::Dnat,
            Dir::Reply => Event::Snat,
        });
        Ok(self.l2_out(frame, out, next_hop))
    }
}

/// A closed connection gives its tuples up to a new SYN that needs them.
fn yields_to_new_syn(state: ConnState) -> bool {
    matches!(state, ConnState::TimeWait | ConnState::Close)
}

/// The drop reason for a TCP/UDP header `L4Hdr::parse_ip` refused in the packet `ip`.
fn l4_error(e: ParseError, ip: &Ipv4Hdr) -> DropReason {
    match e {
        _ if ip.is_fragment() => DropReason::BadFragment,
        ParseError::Truncated => DropReason::Truncated,
        _ => DropReason::Malformed,
    }
}
