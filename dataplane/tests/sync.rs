//! Connection sync end to end on byte buffers: a master director's workers queue connection
//! events, the codec carries them, a backup director installs them without scheduling, and
//! the backup then carries the connection's packets to the same real server.

use control::model::ConnStatus;
use dataplane::conntrack::ConnState;
use dataplane::persist::Key6;
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use dataplane::stats::Event;
use dataplane::sync::{self, Encode, Encoder, Installed, Refused, SyncConn, SyncEntry};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use testkit::director::{self, EXT_MAC, INT_MAC};
use testkit::plan::{CIP, CLIENT_MAC, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP};
use testkit::services::{self, rvsadm};
use testkit::*;

const EXT: u16 = 0;
const INT: u16 = 1;

/// One two-arm director with the web (TCP 80, rr), dns (UDP 53, rr) and sticky (TCP 443, rr,
/// persistent 300 s) services on RS1 and RS2, its neighbours known.
struct Director {
    dp: Arc<Dataplane>,
    w: Pipeline,
    mgr: ServiceManager,
    now: u64,
}

impl Director {
    fn new() -> Director {
        let dp = Dataplane::new(DataplaneConfig {
            ports: director::two_arm_ports(None, 1500),
            conn_capacity: 1 << 16,
            timeouts: Default::default(),
            workers: 1,
        });
        let mut d = Director {
            w: Pipeline::new(dp.clone(), 0),
            mgr: ServiceManager::new(dp.clone()),
            dp,
            now: 1_000,
        };
        rvsadm(
            &mut d.mgr,
            "-A -t 198.51.100.1:80 -s rr\n\
             -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m\n\
             -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m\n\
             -A -u 198.51.100.1:53 -s rr\n\
             -a -u 198.51.100.1:53 -r 192.0.2.2:53 -m\n\
             -a -u 198.51.100.1:53 -r 192.0.2.3:53 -m\n\
             -A -t 198.51.100.1:443 -s rr -p 300\n\
             -a -t 198.51.100.1:443 -r 192.0.2.2:443 -m\n\
             -a -t 198.51.100.1:443 -r 192.0.2.3:443 -m",
        );
        for (port, mut f) in director::neighbour_replies() {
            d.send(port, &mut f);
        }
        d
    }

    fn send(&mut self, port: u16, frame: &mut [u8]) -> Action {
        self.w.begin_burst(self.now);
        let a = self.w.process(port, frame);
        self.w.housekeeping(self.now);
        a
    }

    /// A client segment to VIP:`vport` from `cport`; returns where it went.
    fn client(&mut self, cport: u16, vport: u16, flags: u8) -> Seen {
        let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, cport), (VIP, vport), flags, b"");
        assert_eq!(self.send(EXT, &mut f), Action::Tx(INT));
        check(&f)
    }

    /// A real server's segment to the client; returns what left for the client.
    fn server(&mut self, from: (Ipv4Addr, u16), cport: u16, flags: u8) -> Seen {
        let mac = if from.0 == RIP1 { RS1_MAC } else { RS2_MAC };
        let mut f = tcp_frame(INT_MAC, mac, from, (CIP, cport), flags, b"");
        assert_eq!(self.send(INT, &mut f), Action::Tx(EXT));
        check(&f)
    }

    /// A full handshake from `cport` to VIP:`vport`; returns the real server it went to.
    fn handshake(&mut self, cport: u16, vport: u16) -> (Ipv4Addr, u16) {
        let s = self.client(cport, vport, SYN);
        let rs = (s.dst, s.dport);
        self.server(rs, cport, SYN | ACK);
        self.client(cport, vport, ACK);
        rs
    }

    /// The IPv4 entries queued (this director has IPv4 services only).
    fn drain(&self) -> Vec<SyncConn> {
        drain(&self.dp)
            .into_iter()
            .map(|e| match e {
                SyncEntry::V4(c) => c,
                SyncEntry::V6(c) => panic!("IPv6 entry in an IPv4 test: {c:?}"),
            })
            .collect()
    }

    fn conns(&mut self) -> Vec<ConnStatus> {
        services::conns(&mut self.mgr)
    }

    fn install(&self, events: &[impl Encode]) -> Vec<Result<Installed, Refused>> {
        install(&self.dp, events, self.now)
    }

    fn dest_counts(&mut self, port: u16) -> Vec<(Ipv4Addr, u64, u64)> {
        services::listed(&mut self.mgr, services::tcp(VIP, port))
            .dests
            .iter()
            .map(|d| (d.spec.addr, d.active_conns, d.inactive_conns))
            .map(|(a, x, y)| match a {
                std::net::IpAddr::V4(a) => (a, x, y),
                std::net::IpAddr::V6(_) => panic!("IPv6 in an IPv4 test"),
            })
            .collect()
    }
}

/// Every entry `dp`'s workers queued.
fn drain(dp: &Dataplane) -> Vec<SyncEntry> {
    let mut v = Vec::new();
    dp.sync().drain(usize::MAX, |c| v.push(c));
    v
}

/// Carries `events` through the codec and installs them on `dp` at `now`.
fn install(dp: &Dataplane, events: &[impl Encode], now: u64) -> Vec<Result<Installed, Refused>> {
    let mut enc = Encoder::new(1, sync::codec::DEFAULT_MAXLEN);
    let mut msgs: Vec<Vec<u8>> = events.iter().filter_map(|c| enc.push(c)).collect();
    msgs.extend(enc.finish());
    let mut out = Vec::new();
    for m in msgs {
        sync::decode(&m, 1, |e| {
            out.push(e.and_then(|c| dp.install_synced(&c, now)))
        })
        .expect("message decodes");
    }
    out
}

#[test]
fn an_established_connection_moves_to_the_backup_and_carries_on() {
    let mut master = Director::new();
    let mut backup = Director::new();
    master.dp.sync().set_master(true);
    // A first connection takes RS1, so the synced one is on RS2, where the backup's own round
    // robin would not send a new connection.
    master.handshake(40000, 80);
    master.drain();
    let rs = master.handshake(40001, 80);
    assert_eq!(rs, (RIP2, 80));
    // SYN_RECV is not synced; ESTABLISHED is, with its full timeout.
    let ev = master.drain();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (ev[0].state, ev[0].client, ev[0].real, ev[0].timeout_s),
        (ConnState::Established, (CIP, 40001), (RIP2, 80), 900)
    );
    assert_eq!(backup.install(&ev), vec![Ok(Installed::New)]);
    let listed = backup.conns();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].state.as_str(),
            listed[0].dest,
            listed[0].expires_in
        ),
        ("ESTABLISHED", (RIP2.into(), 80), 900)
    );
    assert_eq!(backup.dest_counts(80), vec![(RIP1, 0, 0), (RIP2, 1, 0)]);
    // The backup takes over: the client's next segment goes to RS2, RS2's reply comes from
    // the VIP, and nothing was scheduled.
    let s = backup.client(40001, 80, ACK | PSH);
    assert_eq!((s.dst, s.dport, s.dst_mac), (RIP2, 80, RS2_MAC));
    let s = backup.server((RIP2, 80), 40001, ACK);
    assert_eq!((s.src, s.sport, s.dst, s.dport), (VIP, 80, CIP, 40001));
    assert_eq!(backup.dp.stats().events(Event::ConnCreated), 0);

    // The client's FIN on the master: CLOSE_WAIT (the kernel's input FIN from ESTABLISHED)
    // reaches the backup, which updates its copy.
    master.client(40001, 80, FIN | ACK);
    let ev = master.drain();
    assert_eq!(
        ev.iter().map(|c| c.state).collect::<Vec<_>>(),
        vec![ConnState::CloseWait]
    );
    assert_eq!(backup.install(&ev), vec![Ok(Installed::Updated)]);
    assert_eq!(backup.conns()[0].state, "CLOSE_WAIT");
    assert_eq!(backup.dest_counts(80), vec![(RIP1, 0, 0), (RIP2, 0, 1)]);
}

#[test]
fn nothing_is_queued_unless_master() {
    let mut d = Director::new();
    d.handshake(40000, 80);
    let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5000), (VIP, 53), b"q", true);
    assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
    assert!(d.drain().is_empty());
    assert_eq!(d.dp.stats().events(Event::SyncQueued), 0);
    // Master: a UDP connection is synced as it is made.
    d.dp.sync().set_master(true);
    let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 5001), (VIP, 53), b"q", true);
    assert_eq!(d.send(EXT, &mut f), Action::Tx(INT));
    let ev = d.drain();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].proto, ev[0].state, ev[0].timeout_s),
        (UDP, ConnState::Udp, 300)
    );
    assert_eq!(d.dp.stats().events(Event::SyncQueued), 1);
}

#[test]
fn the_backup_refuses_what_it_does_not_serve() {
    let mut master = Director::new();
    let backup = Director::new();
    master.dp.sync().set_master(true);
    master.handshake(40000, 80);
    let good = master.drain();
    let mut unknown_vip = good[0];
    unknown_vip.virt = (Ipv4Addr::new(198, 51, 100, 99), 80);
    let mut unknown_port = good[0];
    unknown_port.virt.1 = 8080;
    let mut unknown_rs = good[0];
    unknown_rs.real = (Ipv4Addr::new(192, 0, 2, 77), 80);
    assert_eq!(
        backup.install(&[unknown_vip, unknown_port, unknown_rs]),
        vec![
            Err(Refused::NoService),
            Err(Refused::NoService),
            Err(Refused::NoRealServer)
        ]
    );
    assert_eq!(backup.dp.conns().len(), 0);
    // A message of another sync group is refused whole.
    let mut enc = Encoder::new(2, 1472);
    enc.push(&good[0]);
    let msg = enc.finish().unwrap();
    assert_eq!(
        sync::decode(&msg, 1, |_| panic!("no entry")),
        Err(Refused::ForeignSyncid)
    );
}

#[test]
fn the_refresh_walk_resends_synced_connections_with_the_time_they_have_left() {
    let mut d = Director::new();
    d.dp.sync().set_master(true);
    let set = control::proto::Request::SetSysctls(vec![("sync_refresh_period".into(), 10)]);
    assert_eq!(d.mgr.handle(set), control::proto::Response::Ok);
    d.handshake(40000, 80);
    let mut f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40001), (VIP, 80), SYN, b"");
    d.send(EXT, &mut f); // SYN_RECV: never synced, never refreshed
    d.drain();
    // 30 s of idle housekeeping, a step every 100 ms: each synced connection goes out once
    // per 10 s, with the seconds it has left.
    let mut seen = Vec::new();
    for _ in 0..300 {
        d.now += 100;
        d.w.begin_burst(d.now);
        d.w.housekeeping(d.now);
        seen.extend(d.drain().into_iter().map(|c| (d.now, c)));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (at, c) in &seen {
        assert_eq!((c.client, c.state), ((CIP, 40000), ConnState::Established));
        let left = (1_000 + 900_000 - at).div_ceil(1000);
        assert_eq!(u64::from(c.timeout_s), left);
    }
}

#[test]
fn persistence_templates_pin_the_backups_new_connections_too() {
    let mut master = Director::new();
    let mut backup = Director::new();
    master.dp.sync().set_master(true);
    // The master pins the client to RS2 (its first pick for the sticky service is RS1, so
    // take that one with another client first).
    let mut other = tcp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (Ipv4Addr::new(198, 51, 100, 20), 1),
        (VIP, 443),
        SYN,
        b"",
    );
    assert_eq!(master.send(EXT, &mut other), Action::Tx(INT));
    master.drain();
    assert_eq!(master.handshake(41000, 443), (RIP2, 443));
    let ev = master.drain();
    let tpl: Vec<_> = ev.iter().filter(|c| c.template).collect();
    assert_eq!(tpl.len(), 1, "{ev:?}");
    assert_eq!(
        (tpl[0].client, tpl[0].virt, tpl[0].real, tpl[0].timeout_s),
        ((CIP, 0), (VIP, 443), (RIP2, 443), 300)
    );
    assert!(backup.install(&ev).iter().all(Result::is_ok));
    // On the backup, a new connection of the same client follows the template to RS2
    // (its own scheduler would pick RS1).
    let s = backup.client(41001, 443, SYN);
    assert_eq!((s.dst, s.dport), (RIP2, 443));
    assert!(backup
        .conns()
        .iter()
        .any(|c| c.client == (CIP.into(), 0) && c.dest == (RIP2.into(), 443)));
}

#[test]
fn a_full_queue_counts_what_it_loses() {
    let mut d = Director::new();
    d.dp.sync().set_master(true);
    let n = sync::QUEUE_CAPACITY + 10;
    for i in 0..n {
        let src = Ipv4Addr::new(198, 51, 100, 100 + (i / 60000) as u8);
        let mut f = udp_frame(
            EXT_MAC,
            CLIENT_MAC,
            (src, 1024 + (i % 60000) as u16),
            (VIP, 53),
            b"q",
            true,
        );
        d.w.begin_burst(d.now);
        assert_eq!(d.w.process(EXT, &mut f), Action::Tx(INT));
    }
    let st = d.dp.stats();
    assert_eq!(st.events(Event::SyncQueued), sync::QUEUE_CAPACITY as u64);
    assert_eq!(st.events(Event::SyncQueueOverflow), 10);
    assert_eq!(d.drain().len(), sync::QUEUE_CAPACITY);
}

/// The IPv6 side of the two-arm director: web (TCP 80, rr) and sticky (TCP 443, rr,
/// persistent 300 s) on RS1 and RS2.
const SERVICES6: &str = "-A -t [2001:db8:100::1]:80 -s rr\n\
     -a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
     -a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:80 -m\n\
     -A -t [2001:db8:100::1]:443 -s rr -p 300\n\
     -a -t [2001:db8:100::1]:443 -r [2001:db8:2::2]:443 -m\n\
     -a -t [2001:db8:100::1]:443 -r [2001:db8:2::3]:443 -m";

struct Director6 {
    dp: Arc<Dataplane>,
    w: Pipeline,
    mgr: ServiceManager,
    now: u64,
}

impl Director6 {
    fn new() -> Director6 {
        let (dp, mgr) = ipv6::two_arm6(1500, SERVICES6);
        dp.neigh6().learn(INT, ipv6::RIP6_2, RS2_MAC);
        Director6 {
            w: Pipeline::new(dp.clone(), 0),
            dp,
            mgr,
            now: 1_000,
        }
    }

    fn send(&mut self, port: u16, f: &mut [u8]) -> Action {
        self.w.begin_burst(self.now);
        let a = self.w.process(port, f);
        self.w.housekeeping(self.now);
        a
    }

    fn client(&mut self, cport: u16, vport: u16, flags: u8) -> ipv6::Seen6 {
        let (c, v) = ((ipv6::CIP6, cport), (ipv6::VIP6, vport));
        let mut f = ipv6::tcp_frame6(EXT_MAC, CLIENT_MAC, c, v, flags, b"");
        assert_eq!(self.send(EXT, &mut f), Action::Tx(INT));
        ipv6::check6(&f)
    }

    fn handshake(&mut self, cport: u16, vport: u16) -> (Ipv6Addr, u16) {
        let s = self.client(cport, vport, SYN);
        let mac = if s.dst == ipv6::RIP6_1 {
            RS1_MAC
        } else {
            RS2_MAC
        };
        let mut f = ipv6::tcp_frame6(
            INT_MAC,
            mac,
            (s.dst, s.dport),
            (ipv6::CIP6, cport),
            SYN | ACK,
            b"",
        );
        assert_eq!(self.send(INT, &mut f), Action::Tx(EXT));
        self.client(cport, vport, ACK);
        (s.dst, s.dport)
    }

    /// The IPv6 entries queued.
    fn drain(&self) -> Vec<SyncConn<Ipv6Addr>> {
        drain(&self.dp)
            .into_iter()
            .map(|e| match e {
                SyncEntry::V6(c) => c,
                SyncEntry::V4(c) => panic!("IPv4 entry in an IPv6 test: {c:?}"),
            })
            .collect()
    }
}

#[test]
fn an_ipv6_connection_and_its_template_move_to_the_backup() {
    let mut master = Director6::new();
    let mut backup = Director6::new();
    master.dp.sync().set_master(true);
    // A first connection takes RS1, so the synced one is on RS2.
    master.handshake(40000, 80);
    master.drain();
    assert_eq!(master.handshake(40001, 80), (ipv6::RIP6_2, 80));
    let ev = master.drain();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        (
            ev[0].state,
            ev[0].client,
            ev[0].virt,
            ev[0].real,
            ev[0].timeout_s
        ),
        (
            ConnState::Established,
            (ipv6::CIP6, 40001),
            (ipv6::VIP6, 80),
            (ipv6::RIP6_2, 80),
            900
        )
    );
    assert_eq!(backup.dp.conns6().len(), 0);
    assert_eq!(
        install(&backup.dp, &ev, backup.now),
        vec![Ok(Installed::New)]
    );
    // Listed (rvsadm -L -c) in the IPv6 table, and carried on to RS2 without scheduling.
    assert_eq!((backup.dp.conns6().len(), backup.dp.conns().len()), (1, 0));
    let listed = services::conns(&mut backup.mgr);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].state.as_str(), listed[0].client, listed[0].dest),
        (
            "ESTABLISHED",
            (IpAddr::V6(ipv6::CIP6), 40001),
            (IpAddr::V6(ipv6::RIP6_2), 80)
        )
    );
    let s = backup.client(40001, 80, ACK | PSH);
    assert_eq!((s.dst, s.dport, s.dst_mac), (ipv6::RIP6_2, 80, RS2_MAC));
    assert_eq!(backup.dp.stats().events(Event::ConnCreated), 0);
    // The client's FIN on the master updates the backup's copy.
    master.client(40001, 80, FIN | ACK);
    let ev = master.drain();
    assert_eq!(
        ev.iter().map(|c| c.state).collect::<Vec<_>>(),
        vec![ConnState::CloseWait]
    );
    assert_eq!(
        install(&backup.dp, &ev, backup.now),
        vec![Ok(Installed::Updated)]
    );

    // A persistent service: the template goes with the connection, in IPv6 form.
    let mut other = ipv6::tcp_frame6(
        EXT_MAC,
        CLIENT_MAC,
        ("2001:db8:100::20".parse().unwrap(), 1),
        (ipv6::VIP6, 443),
        SYN,
        b"",
    );
    master
        .dp
        .neigh6()
        .learn(EXT, "2001:db8:100::20".parse().unwrap(), CLIENT_MAC);
    assert_eq!(master.send(EXT, &mut other), Action::Tx(INT));
    master.drain();
    assert_eq!(master.handshake(41000, 443), (ipv6::RIP6_2, 443));
    let ev = master.drain();
    let tpl: Vec<_> = ev.iter().filter(|c| c.template).collect();
    assert_eq!(tpl.len(), 1, "{ev:?}");
    assert_eq!(
        (tpl[0].client, tpl[0].virt, tpl[0].real, tpl[0].timeout_s),
        ((ipv6::CIP6, 0), (ipv6::VIP6, 443), (ipv6::RIP6_2, 443), 300)
    );
    assert!(install(&backup.dp, &ev, backup.now)
        .iter()
        .all(Result::is_ok));
    let key = Key6 {
        proto: TCP,
        cnet: ipv6::CIP6,
        vip: ipv6::VIP6,
        vport: 443,
    };
    let pinned = backup.dp.persist().target6(&key, backup.now);
    assert_eq!(pinned.map(|t| (t.rip, t.rport)), Some((ipv6::RIP6_2, 443)));
    // Listed by the backup's `-L -c` as the master lists it (which also has the other
    // client's).
    let templates = |d: &mut Director6| {
        let listed = services::conns(&mut d.mgr);
        listed
            .into_iter()
            .filter(|c| c.state == "NONE" && c.client.0 == IpAddr::V6(ipv6::CIP6))
            .map(|c| (c.client, c.virt, c.dest, c.expires_in))
            .collect::<Vec<_>>()
    };
    let want = vec![(
        (IpAddr::V6(ipv6::CIP6), 0),
        (IpAddr::V6(ipv6::VIP6), 443),
        (IpAddr::V6(ipv6::RIP6_2), 443),
        300,
    )];
    assert_eq!(templates(&mut backup), want);
    assert_eq!(templates(&mut master), want);
    // The backup's own new connection of that client follows the template to RS2 (its
    // round robin would pick RS1).
    let s = backup.client(41001, 443, SYN);
    assert_eq!((s.dst, s.dport), (ipv6::RIP6_2, 443));
}

#[test]
fn the_refresh_walk_resends_ipv6_connections_too() {
    let mut d = Director6::new();
    d.dp.sync().set_master(true);
    let set = control::proto::Request::SetSysctls(vec![("sync_refresh_period".into(), 10)]);
    assert_eq!(d.mgr.handle(set), control::proto::Response::Ok);
    d.handshake(40000, 80);
    d.drain();
    let mut seen = Vec::new();
    for _ in 0..100 {
        d.now += 100;
        d.w.begin_burst(d.now);
        d.w.housekeeping(d.now);
        seen.extend(d.drain());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].client, seen[0].state),
        ((ipv6::CIP6, 40000), ConnState::Established)
    );
}
