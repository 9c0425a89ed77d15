//! TCP and UDP: connection lookup, scheduling a real server for a new connection, and the
//! DNAT/SNAT of tracked packets.

use super::context::count_dest;
use super::family::IpHeader;
use super::icmp_error::IcmpError;
use super::{Action, Dataplane, Pipeline, Refusal};
use crate::conntrack::{ConnState, Dir, Hit, InsertError, NewConn, Prefetched, TcpEvent, Tuple};
use crate::frag::FragVerdict;
use crate::packet::eth;
use crate::packet::ipv4::PROTO_TCP;
use crate::packet::l4::{L4Hdr, Side};
use crate::packet::ParseError;
use crate::persist::Quiesced;
use crate::sched::{Dests, Flow};
use crate::service::{Dest, Service, Snapshot};
use crate::stats::{DropReason, Event};
use std::net::IpAddr;

/// The rewrite a NATed packet gets.
pub(super) struct Nat<A> {
    pub(super) side: Side,
    pub(super) addr: A,
    pub(super) port: u16,
    /// Where the packet goes after the rewrite.
    pub(super) dst: A,
}

impl Pipeline {
    /// A TCP or UDP packet (or first fragment): NAT by its connection, else a new one when it
    /// opens one to a service, else routed. `learn_sender` runs unless it found a connection.
    pub(super) fn tcp_udp<H: IpHeader>(
        &self,
        frame: &mut [u8],
        ip: &H,
        learn_sender: impl Fn(),
    ) -> Result<Action, Refusal> {
        let l3 = frame.get(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        let seg = ip.upper(l3).ok_or(DropReason::Truncated)?;
        let l4 = ip
            .parse_l4(seg)
            .map_err(|e| l4_error(e, ip.is_fragment()))?;
        let Segment {
            t,
            tcp,
            ev,
            new_syn,
        } = Segment::of(ip, &l4);
        let sys = &self.snap.sysctls;
        let conns = H::conns(&self.dp);

        // Set when this packet expired its connection because the real server was removed.
        let mut expired_nodest = false;
        // Borrowed where it lies: moving the `Hit` (IPv6 addresses are byte arrays, written
        // field by field) copied it in 16-byte loads that the store buffer cannot forward.
        let found = H::lookup(self, &t);
        if let Some(hit) = &found {
            match self.on_hit::<H>(hit, new_syn) {
                OnHit::Nat => {
                    self.follow::<H>(hit, ev);
                    return self.nat(frame, ip, hit);
                }
                OnHit::ExpireNodest => {
                    expired_nodest = true;
                    if conns.remove(hit.conn) {
                        self.stats().event(Event::NodestExpired);
                    }
                }
                OnHit::Reuse => {
                    conns.remove(hit.conn);
                }
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

        if H::is_vip(&self.snap, ip.dst()) {
            let svc = self.service_for::<H>(&t)?;
            if !opens {
                return Err(DropReason::UnknownFlow.into());
            }
            let to = self.schedule::<H>(svc, &t)?;
            if to.ops {
                return self.one_packet(frame, ip, &to.inbound(&t));
            }
            // The state follows from what the packet says (a sloppy_tcp ACK opens ESTABLISHED).
            let state = match ev {
                Some(ev) => crate::conntrack::tcp_transition_in(
                    self.defences.tcp_table,
                    ConnState::None,
                    Dir::Inbound,
                    ev,
                ),
                // sloppy_tcp, a segment with none of SYN, FIN, ACK, RST: the kernel's CLOSE.
                None if tcp => ConnState::Close,
                None => ConnState::Udp,
            };
            let hit = self.open::<H>(&to.conn(&t, state), new_syn, ev)?;
            return self.nat(frame, ip, &hit);
        }
        if H::is_local(self, ip.dst()) {
            // Before the one-packet replies: a real server's answer to our own socket (a
            // health check's reply from RIP:rport to DIP) is the kernel's, never NATed.
            return Err(Refusal::Local(DropReason::Local));
        }
        if let Some(back) = H::ops_reply(&self.snap, ip.proto(), ip.src(), l4.sport) {
            // A real server's answer to a one-packet-scheduled datagram: no connection, the
            // service is known by the real server's address and port alone.
            let m = Mapping {
                dir: Dir::Reply,
                virt: (back.vip, back.vport),
                real: (ip.src(), l4.sport),
                dest: back.slot,
            };
            return self.nat_to(frame, ip, &m);
        }
        if H::is_real_service(&self.snap, ip.proto(), ip.src(), l4.sport) {
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

    /// What a packet (`new_syn`: a TCP SYN without RST) does with the connection `hit` it
    /// found.
    #[inline]
    pub(super) fn on_hit<H: IpHeader>(&self, hit: &Hit<H::Addr>, new_syn: bool) -> OnHit {
        let sys = &self.snap.sysctls;
        // Only a client's packet checks the real server, as the kernel's ip_vs_in: replies of
        // a removed server are still NATed until the client's next packet.
        if hit.dir != Dir::Inbound {
            return OnHit::Nat;
        }
        if sys.expire_nodest_conn != 0 && H::conns(&self.dp).dest_retired(hit.dest) {
            return OnHit::ExpireNodest;
        }
        // A SYN reusing the ports of a closed connection starts a new one (port reuse),
        // unless conn_reuse_mode is 0.
        if new_syn && sys.conn_reuse_mode != 0 && yields_to_new_syn(hit.state) {
            return OnHit::Reuse;
        }
        OnHit::Nat
    }

    /// The packet's TCP event `ev` (none for UDP) applied to its connection `hit`: its state
    /// and expiry; a new state is queued for the sync master. Always inlined: LLVM kept it a
    /// call on every tracked packet (about 13 instructions a packet, callgrind).
    #[inline(always)]
    pub(super) fn follow<H: IpHeader>(&self, hit: &Hit<H::Addr>, ev: Option<TcpEvent>) {
        let conns = H::conns(&self.dp);
        let state = conns.update_in(self.defences.tcp_table, hit, hit.dir, ev, self.now);
        if let Some(state) = state.filter(|s| *s != hit.state) {
            H::sync_state(self, hit, state);
        }
    }

    /// A datagram to a one-packet scheduling (`-o`) service, scheduled as `m` says: DNATed
    /// without a connection, counted as a connection of its real server (as the kernel's
    /// one-packet connections are).
    fn one_packet<H: IpHeader>(
        &self,
        frame: &mut [u8],
        ip: &H,
        m: &Mapping<H::Addr>,
    ) -> Result<Action, Refusal> {
        let action = self.nat_to(frame, ip, m)?;
        let st = self.stats();
        st.event(Event::OpsScheduled);
        if let Some(s) = st.slot(m.dest) {
            s.conns.add(1);
        }
        Ok(action)
    }

    /// The service a new flow `t` (client -> VIP:vport) is for: the one of its port, else a
    /// port-0 (persistent) service, which takes the ports no other service has.
    pub(super) fn service_for<H: IpHeader>(&self, t: &Tuple<H::Addr>) -> Result<&Service, Refusal> {
        service_of::<H>(&self.snap, t).ok_or_else(|| DropReason::NoService.into())
    }

    /// A real server of `svc` for the new flow `t`, by persistence template or scheduler,
    /// unless the `drop_packet` defence takes this new connection.
    pub(super) fn schedule<H: IpHeader>(
        &self,
        svc: &Service,
        t: &Tuple<H::Addr>,
    ) -> Result<Scheduled<H::Addr>, Refusal> {
        if self.drop_new_conn() {
            return Err(DropReason::DefenceDropPacket.into());
        }
        let flow = flow_of(t);
        let dests = Dests::new(&svc.dests, &self.dp.conns);
        let i = match svc.spec.persistence {
            Some(timeout) => self.dp.persist.pick(
                svc,
                &dests,
                t.proto,
                &flow,
                timeout,
                Quiesced::of(&self.snap.sysctls),
                self.now,
            ),
            None => svc.scheduler.pick(&dests, &flow),
        }
        .ok_or(DropReason::NoDest)?;
        let d = svc.dests.get(i).ok_or(DropReason::NoDest)?;
        let to = Scheduled::to::<H>(svc, d, t).ok_or(DropReason::NoDest)?;
        if let Some(timeout) = svc.spec.persistence {
            self.sync_template(svc, d, t.proto, &flow, timeout);
        }
        Ok(to)
    }

    /// Inserts the new connection `nc` and counts it; one that another worker inserted first
    /// is taken as it is, with the packet's event `ev` applied. `syn`: a SYN may take the
    /// tuple of a closed connection (port reuse).
    pub(super) fn open<H: IpHeader>(
        &self,
        nc: &NewConn<H::Addr>,
        syn: bool,
        ev: Option<TcpEvent>,
    ) -> Result<Hit<H::Addr>, Refusal> {
        let conns = H::conns(&self.dp);
        // The burst prefetch's misses in the buckets of a connection inserted here are not
        // trusted (`IpHeader::lookup`).
        let mut noted = self.inserted_since_prefetch.get();
        let mut inserted = conns.insert_noting(nc, self.now, &mut noted);
        if syn
            && inserted == Err(InsertError::ReplyConflict)
            && self.reclaim_closed::<H>(&nc.reply())
        {
            inserted = conns.insert_noting(nc, self.now, &mut noted);
        }
        self.inserted_since_prefetch.set(noted);
        match inserted {
            Ok(hit) => {
                H::sync_state(self, &hit, nc.state);
                self.stats().event(Event::ConnCreated);
                if let Some(s) = self.stats().slot(nc.dest) {
                    s.conns.add(1);
                }
                Ok(hit)
            }
            Err(InsertError::Exists(hit)) => {
                conns.update_in(self.defences.tcp_table, &hit, hit.dir, ev, self.now);
                Ok(hit)
            }
            Err(InsertError::ReplyConflict | InsertError::Busy) => {
                Err(DropReason::ConnConflict.into())
            }
            Err(InsertError::Full) => Err(DropReason::TableFull.into()),
            Err(InsertError::DestRetired) => Err(DropReason::NoDest.into()),
        }
    }

    /// Removes the closed connection (TIME_WAIT, CLOSE) holding real-side tuple `reply`, so a
    /// new SYN can take it: the client reuses its port for another virtual service that maps to
    /// the same real server and port while the old connection lingers in the table. (The
    /// kernel's newest-first lookup gives the new connection the replies too.) A live
    /// connection keeps its tuple: true only if a closed one was removed.
    fn reclaim_closed<H: IpHeader>(&self, reply: &Tuple<H::Addr>) -> bool {
        let conns = H::conns(&self.dp);
        match conns.lookup(reply, self.now) {
            Some(old) if yields_to_new_syn(old.state) => conns.remove(old.conn),
            _ => false,
        }
    }

    /// DNAT (inbound) or SNAT (reply) of a tracked packet, TTL decremented, then out. A packet
    /// that arrives with TTL <= 1 is dropped as `ttl_expired` (ICMP time exceeded back); one
    /// over the egress MTU as `mtu_exceeded` (with DF: ICMP fragmentation needed back). A first
    /// fragment's rewrite is recorded for the later fragments.
    fn nat<H: IpHeader>(
        &self,
        frame: &mut [u8],
        ip: &H,
        hit: &Hit<H::Addr>,
    ) -> Result<Action, Refusal> {
        self.nat_to(frame, ip, &Mapping::from(hit))
    }

    /// [`Pipeline::nat`] by a connection's ends, whether the table holds the connection or
    /// not (one-packet scheduling).
    fn nat_to<H: IpHeader>(
        &self,
        frame: &mut [u8],
        ip: &H,
        hit: &Mapping<H::Addr>,
    ) -> Result<Action, Refusal> {
        let nat = hit.rewrite(ip.dst());
        if ip.hops() <= 1 {
            return Err(Refusal::Answer(
                DropReason::TtlExpired,
                IcmpError::TTL_EXCEEDED,
            ));
        }
        let (out, next_hop) = self.egress(nat.dst, ip)?;
        let l3 = frame.get_mut(eth::HDR_LEN..).ok_or(DropReason::Truncated)?;
        ip.rewrite_endpoint(l3, nat.side, nat.addr, nat.port)
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
        self.count_nat(hit, ip.packet_len());
        Ok(self.l2_out(frame, out, next_hop))
    }

    /// Counts a packet of `len` bytes NATed by `m`.
    #[inline]
    pub(super) fn count_nat<A>(&self, m: &Mapping<A>, len: usize) {
        let st = self.stats();
        count_dest(st, m.dest, m.dir, len as u64);
        st.event(match m.dir {
            Dir::Inbound => Event::Dnat,
            Dir::Reply => Event::Snat,
        });
    }
}

/// What the connection path reads of a packet's TCP or UDP header.
pub(super) struct Segment<A> {
    /// The packet's 5-tuple.
    pub(super) t: Tuple<A>,
    pub(super) tcp: bool,
    /// The TCP event its flags stand for (none for UDP).
    pub(super) ev: Option<TcpEvent>,
    /// A TCP SYN without RST: it may open a connection.
    pub(super) new_syn: bool,
}

impl<A> Segment<A> {
    /// Always inlined: LLVM kept it a call on the fast path, the tuple built in memory and
    /// read back (14-22 instructions an established packet, benches/RESULTS.md).
    #[inline(always)]
    pub(super) fn of<H: IpHeader<Addr = A>>(ip: &H, l4: &L4Hdr) -> Segment<A> {
        let tcp = ip.proto() == PROTO_TCP;
        Segment {
            t: Tuple {
                proto: ip.proto(),
                src: ip.src(),
                sport: l4.sport,
                dst: ip.dst(),
                dport: l4.dport,
            },
            tcp,
            ev: if tcp {
                TcpEvent::from_flags(l4.flags)
            } else {
                None
            },
            new_syn: tcp && l4.flags.syn() && !l4.flags.rst(),
        }
    }
}

/// What a packet does with the connection it found ([`Pipeline::on_hit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnHit {
    /// NATed by it.
    Nat,
    /// A client's packet whose real server was removed, with `expire_nodest_conn`: the
    /// connection ends; a packet that may open a connection is scheduled afresh, any other is
    /// dropped (a TCP segment answered with a RST).
    ExpireNodest,
    /// A client's SYN on a closed connection's ports: the connection ends, and the SYN opens
    /// a new one.
    Reuse,
}

/// A real server scheduled for a new flow.
pub(super) struct Scheduled<A> {
    /// The real server's address and port for this flow.
    pub(super) real: (A, u16),
    /// Its stats slot.
    pub(super) slot: u32,
    /// One-packet scheduling: no connection is kept.
    pub(super) ops: bool,
}

impl<A: Copy> Scheduled<A> {
    /// Real server `d` of `svc` as the new flow `t`'s; `None` for a real server of the other
    /// family (the control side refuses them; never NATed across families).
    fn to<H: IpHeader<Addr = A>>(svc: &Service, d: &Dest, t: &Tuple<A>) -> Option<Self> {
        // A real server without a port (in a port-0 service) gets the client's port.
        let rport = if d.spec.port == 0 {
            t.dport
        } else {
            d.spec.port
        };
        Some(Scheduled {
            real: (H::addr_of(d.spec.addr)?, rport),
            slot: d.slot,
            ops: svc.spec.ops && t.proto != PROTO_TCP,
        })
    }

    /// The connection of the new flow `t` (client -> VIP:vport) to this real server.
    pub(super) fn conn(&self, t: &Tuple<A>, state: ConnState) -> NewConn<A> {
        NewConn {
            proto: t.proto,
            client: (t.src, t.sport),
            virt: (t.dst, t.dport),
            real: self.real,
            dest: self.slot,
            state,
        }
    }

    /// The NAT of a packet of the new flow, for a flow that keeps no connection.
    pub(super) fn inbound(&self, t: &Tuple<A>) -> Mapping<A> {
        Mapping {
            dir: Dir::Inbound,
            virt: (t.dst, t.dport),
            real: self.real,
            dest: self.slot,
        }
    }
}

/// What NAT needs of a connection: which way the packet goes, the connection's two ends on
/// the director's side and its real server's slot.
pub(super) struct Mapping<A> {
    pub(super) dir: Dir,
    pub(super) virt: (A, u16),
    pub(super) real: (A, u16),
    pub(super) dest: u32,
}

impl<A: Copy> From<&Hit<A>> for Mapping<A> {
    fn from(hit: &Hit<A>) -> Mapping<A> {
        Mapping {
            dir: hit.dir,
            virt: hit.virt,
            real: hit.real,
            dest: hit.dest,
        }
    }
}

impl<A: Copy> Mapping<A> {
    /// The rewrite of a packet of this mapping whose destination is `pkt_dst`.
    #[inline]
    pub(super) fn rewrite(&self, pkt_dst: A) -> Nat<A> {
        match self.dir {
            Dir::Inbound => Nat {
                side: Side::Dst,
                addr: self.real.0,
                port: self.real.1,
                dst: self.real.0,
            },
            Dir::Reply => Nat {
                side: Side::Src,
                addr: self.virt.0,
                port: self.virt.1,
                dst: pkt_dst,
            },
        }
    }
}

/// The service of the new flow `t` (client -> VIP:vport): the one of its port, else a port-0
/// (persistent) service, which takes the ports no other service has.
fn service_of<'s, H: IpHeader>(snap: &'s Snapshot, t: &Tuple<H::Addr>) -> Option<&'s Service> {
    H::service(snap, t.proto, t.dst, t.dport).or_else(|| H::service(snap, t.proto, t.dst, 0))
}

/// Burst prefetch, stage 2, of a frame with tuple `t` whose first bucket the prefetch saw
/// (`p`): starts loading the entry that bucket names. A frame whose bucket has no slot with
/// its tuple's tag is a new connection's, likely: its reply tuple's first bucket, where the
/// insert looks for a rival, is loaded too ([`predicted_reply`]). That bucket depends on the
/// real server picked, so stage 1 cannot know it, and its miss was the largest single cost of
/// a new connection. `picks`: the burst's new flows so far.
#[inline(always)]
pub(super) fn prefetch_found<H: IpHeader>(
    snap: &Snapshot,
    dp: &Dataplane,
    t: &Tuple<H::Addr>,
    p: &mut Prefetched,
    picks: &mut PicksAhead,
) {
    H::conns(dp).prefetch_entry(p);
    if !p.has_candidate() {
        prefetch_reply::<H>(snap, dp, t, picks);
    }
}

/// [`prefetch_found`] of a frame of no connection, out of line: an established packet
/// passes it by at one test.
#[inline(never)]
fn prefetch_reply<H: IpHeader>(
    snap: &Snapshot,
    dp: &Dataplane,
    t: &Tuple<H::Addr>,
    picks: &mut PicksAhead,
) {
    if let Some(reply) = predicted_reply::<H>(snap, dp, t, picks) {
        #[cfg(test)]
        tests::PREFETCHED_REPLIES.with(|r| r.borrow_mut().push(format!("{reply:?}")));
        H::conns(dp).prefetch_bucket(&reply);
    }
}

/// The reply tuple the new flow `t`'s connection will have if its service's scheduler picks
/// the server it predicts with the service's new flows in `picks` before it (which then count
/// this one too; [`Scheduler::predict`]). `None` where it predicts nothing, for a persistent
/// service (the template decides), where `t` is no service's and in a burst of more services
/// than `picks` keeps.
///
/// [`Scheduler::predict`]: crate::sched::Scheduler::predict
pub(super) fn predicted_reply<H: IpHeader>(
    snap: &Snapshot,
    dp: &Dataplane,
    t: &Tuple<H::Addr>,
    picks: &mut PicksAhead,
) -> Option<Tuple<H::Addr>> {
    let svc = service_of::<H>(snap, t)?;
    if svc.spec.persistence.is_some() {
        return None;
    }
    let ahead = picks.count(svc)?;
    let dests = Dests::new(&svc.dests, &dp.conns);
    let i = svc.scheduler.predict(&dests, &flow_of(t), ahead)?;
    let to = Scheduled::to::<H>(svc, svc.dests.get(i)?, t)?;
    Some(to.conn(t, ConnState::None).reply())
}

/// The new flows the burst prefetch has met so far, per service: a flow's pick comes after
/// those of its service's flows before it in the burst (round robin's cursor moves once for
/// each). A few services a burst; the flows of any more are not predicted. (TCP segments other
/// than SYNs, which open nothing, are counted too: the prefetch reads no flags.)
pub(super) struct PicksAhead {
    /// A service (by address; `null` where unused) and its flows so far.
    services: [(*const Service, usize); PicksAhead::SERVICES],
}

impl PicksAhead {
    const SERVICES: usize = 4;

    /// The flows of `svc` met before this one, which is counted in; `None` once the burst has
    /// met more services than are kept.
    fn count(&mut self, svc: &Service) -> Option<usize> {
        let key: *const Service = svc;
        for (s, n) in &mut self.services {
            if s.is_null() {
                *s = key;
            }
            if *s == key {
                *n += 1;
                return Some(*n - 1);
            }
        }
        None
    }
}

impl Default for PicksAhead {
    fn default() -> Self {
        PicksAhead {
            services: [(std::ptr::null(), 0); PicksAhead::SERVICES],
        }
    }
}

/// The scheduler's view of the new flow `t` (client -> VIP:vport).
fn flow_of<A: Copy + Into<IpAddr>>(t: &Tuple<A>) -> Flow {
    Flow {
        client: t.src.into(),
        cport: t.sport,
        vip: t.dst.into(),
        vport: t.dport,
    }
}

/// A closed connection gives its tuples up to a new SYN that needs them.
fn yields_to_new_syn(state: ConnState) -> bool {
    matches!(state, ConnState::TimeWait | ConnState::Close)
}

/// The drop reason for a TCP/UDP header refused in a packet (a first fragment or not).
fn l4_error(e: ParseError, fragment: bool) -> DropReason {
    match e {
        _ if fragment => DropReason::BadFragment,
        ParseError::Truncated => DropReason::Truncated,
        _ => DropReason::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ipv4::{Ipv4Hdr, PROTO_UDP};
    use crate::service::ServiceManager;
    use control::model::SchedulerKind;
    use control::proto::{Request, Response};
    use std::cell::RefCell;
    use std::net::Ipv4Addr;
    use std::sync::Arc;
    use testkit::plan::{CIP, CLIENT_MAC, RIP1, RIP2, RIP3, RS1_MAC, VIP};

    thread_local! {
        /// The reply tuples whose buckets `prefetch_found` loaded on this thread, in order.
        pub(super) static PREFETCHED_REPLIES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const INT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

    /// A director with two round-robin UDP services: VIP:53 to RIP1-3:5353 and VIP:54 to
    /// RIP1-2:5454; the client and the real servers known neighbours; a worker, burst begun;
    /// the manager, kept for the test's length.
    fn director() -> (Arc<Dataplane>, Pipeline, ServiceManager) {
        let dp = crate::pipeline::dual_stack_for_tests(EXT_MAC, INT_MAC);
        let mut mgr = ServiceManager::new(dp.clone());
        for (port, rport, rips) in [
            (53, 5353, &[RIP1, RIP2, RIP3][..]),
            (54, 5454, &[RIP1, RIP2]),
        ] {
            let key = testkit::services::udp(VIP, port);
            let service = testkit::services::service(key, SchedulerKind::Rr);
            assert_eq!(mgr.handle(Request::AddService(service)), Response::Ok);
            for &rip in rips {
                let dest = testkit::services::dest(rip, rport, 1);
                let add = Request::AddDest { service: key, dest };
                assert_eq!(mgr.handle(add), Response::Ok);
                dp.neigh.learn(1, rip, RS1_MAC);
            }
        }
        dp.neigh.learn(0, CIP, CLIENT_MAC);
        let mut w = Pipeline::new(dp.clone(), 0);
        w.begin_burst(1);
        (dp, w, mgr)
    }

    fn flow(cport: u16, vport: u16) -> Tuple {
        Tuple {
            proto: PROTO_UDP,
            src: CIP,
            sport: cport,
            dst: VIP,
            dport: vport,
        }
    }

    fn datagram(t: &Tuple) -> Vec<u8> {
        testkit::udp_frame(
            EXT_MAC,
            CLIENT_MAC,
            (t.src, t.sport),
            (t.dst, t.dport),
            b"q",
            true,
        )
    }

    /// The reply tuple of the connection a NATed client datagram `f` (of flow `t`) opened.
    fn reply_of(t: &Tuple, f: &[u8]) -> Tuple {
        Tuple {
            proto: PROTO_UDP,
            src: Ipv4Addr::from([f[30], f[31], f[32], f[33]]),
            sport: u16::from_be_bytes([f[36], f[37]]),
            dst: t.src,
            dport: t.sport,
        }
    }

    /// The reply tuples predicted for new datagrams to a round-robin service (each after the
    /// ones before it) are those of the connections the datagrams then open.
    #[test]
    fn new_flows_are_predicted_the_replies_they_open() {
        let (dp, mut w, _mgr) = director();
        let flows: Vec<Tuple> = (0..7).map(|k| flow(40_000 + k, 53)).collect();
        let mut picks = PicksAhead::default();
        let predicted: Vec<_> = flows
            .iter()
            .map(|t| predicted_reply::<Ipv4Hdr>(&w.snap, &dp, t, &mut picks))
            .collect();
        let opened: Vec<_> = flows
            .iter()
            .map(|t| {
                let mut f = datagram(t);
                assert_eq!(w.process(0, &mut f), Action::Tx(1));
                Some(reply_of(t, &f))
            })
            .collect();
        assert_eq!(predicted, opened);
        assert_eq!(
            opened.iter().flatten().map(|r| r.src).collect::<Vec<_>>(),
            [RIP1, RIP2, RIP3, RIP1, RIP2, RIP3, RIP1],
            "round robin over the three"
        );
    }

    /// Through the burst prefetch: in a burst of new datagrams to two round-robin services,
    /// interleaved, with datagrams of open connections among them, the reply buckets loaded
    /// are those of the new connections, each predicted after its own service's flows only.
    #[test]
    fn the_burst_prefetch_loads_the_reply_buckets_of_its_new_flows() {
        let (_dp, mut w, _mgr) = director();
        // Open two connections first, one per service.
        let open = [flow(41_000, 53), flow(41_001, 54)];
        for t in &open {
            let mut f = datagram(t);
            assert_eq!(w.process(0, &mut f), Action::Tx(1));
        }
        let burst = [
            flow(42_000, 53),
            open[0],
            flow(42_001, 54),
            flow(42_002, 53),
            flow(42_003, 54),
            open[1],
            flow(42_004, 53),
            flow(42_005, 54),
        ];
        let mut frames: Vec<Vec<u8>> = burst.iter().map(datagram).collect();
        PREFETCHED_REPLIES.with(|r| r.borrow_mut().clear());
        w.prefetch_burst(frames.iter().map(Vec::as_slice));
        let loaded = PREFETCHED_REPLIES.with(|r| r.take());
        let mut opened = Vec::new();
        for (i, (t, f)) in burst.iter().zip(&mut frames).enumerate() {
            w.use_prefetched(i);
            assert_eq!(w.process(0, f), Action::Tx(1));
            if !open.contains(t) {
                opened.push(format!("{:?}", reply_of(t, f)));
            }
        }
        assert_eq!(loaded, opened);
    }
}
