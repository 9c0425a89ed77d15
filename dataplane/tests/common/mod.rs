//! The director the connection-knob tests (`conn_knobs.rs`, `nodest.rs`) drive: two arms (ext
//! with the VIP and the clients, int with the real servers), every host a known neighbour, set
//! up with rvsadm lines, one worker driven frame by frame.

// Each test crate that includes this uses a part of it.
#![allow(dead_code)]

use control::model::{ServiceKey, Timeouts};
use control::proto::{Request, Response};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, Pipeline};
use dataplane::service::ServiceManager;
use dataplane::stats::{DropReason, Event};
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::director::{self, EXT_MAC, INT_MAC};
use testkit::plan::{CIP, CLIENT_MAC, RIP1, RIP2, RIP3, RS1_MAC};
use testkit::services;

pub const EXT: u16 = 0;
pub const INT: u16 = 1;

pub struct Lab {
    pub dp: Arc<Dataplane>,
    pub w: Pipeline,
    pub mgr: ServiceManager,
    pub now: u64,
}

/// A frame as the pipeline left it, with what it said to do with it.
pub struct Out {
    pub action: Action,
    pub frame: Vec<u8>,
}

impl Out {
    /// The bytes to send: the whole frame, or the part a `Reply` built.
    pub fn sent(&self) -> &[u8] {
        match self.action {
            Action::Reply { len, .. } => &self.frame[..len],
            _ => &self.frame,
        }
    }
}

impl Lab {
    /// The director with `lines` (rvsadm -R) applied; the client and RIP1..3 are known
    /// neighbours (every real server answers from RS1_MAC).
    pub fn new(lines: &str) -> Lab {
        let dp = Dataplane::new(DataplaneConfig {
            ports: director::two_arm_ports(None, 1500),
            conn_capacity: 4096,
            timeouts: Timeouts::default(),
            workers: 1,
        });
        dp.neigh().learn(EXT, CIP, CLIENT_MAC);
        for rip in [RIP1, RIP2, RIP3] {
            dp.neigh().learn(INT, rip, RS1_MAC);
        }
        let mut lab = Lab {
            w: Pipeline::new(dp.clone(), 0),
            mgr: ServiceManager::new(dp.clone()),
            dp,
            now: 1_000,
        };
        services::rvsadm(&mut lab.mgr, lines);
        lab
    }

    pub fn rvsadm(&mut self, lines: &str) {
        services::rvsadm(&mut self.mgr, lines);
    }

    /// `rvsctl sysctl -w name=value`.
    pub fn sysctl(&mut self, name: &str, value: u32) {
        assert_eq!(
            self.mgr
                .handle(Request::SetSysctls(vec![(name.into(), value)])),
            Response::Ok
        );
    }

    /// Hands `frame` to the worker on `port` at the current time (then ages the table, as a
    /// worker's poll loop does).
    pub fn send(&mut self, port: u16, mut frame: Vec<u8>) -> Out {
        self.w.begin_burst(self.now);
        let len = frame.len();
        // Room to grow, as an mbuf's tailroom gives it.
        frame.resize(len + 600, 0);
        let action = self.w.process_buf(port, &mut frame, len);
        self.w.housekeeping(self.now);
        if !matches!(action, Action::Reply { .. }) {
            frame.truncate(len);
        }
        Out { action, frame }
    }

    /// A TCP segment from the client's port `cport` to VIP:`vport`.
    pub fn client_tcp(&mut self, cport: u16, vport: u16, flags: u8, data: &[u8]) -> Out {
        let f = testkit::tcp_frame(
            EXT_MAC,
            CLIENT_MAC,
            (CIP, cport),
            (testkit::plan::VIP, vport),
            flags,
            data,
        );
        self.send(EXT, f)
    }

    /// A TCP segment from real server `rip`'s port `rport` to the client's port `cport`.
    pub fn server_tcp(&mut self, rip: Ipv4Addr, rport: u16, cport: u16, flags: u8) -> Out {
        let f = testkit::tcp_frame(INT_MAC, RS1_MAC, (rip, rport), (CIP, cport), flags, b"");
        self.send(INT, f)
    }

    /// A UDP datagram from the client's port `cport` to VIP:`vport`.
    pub fn client_udp(&mut self, cport: u16, vport: u16) -> Out {
        let f = testkit::udp_frame(
            EXT_MAC,
            CLIENT_MAC,
            (CIP, cport),
            (testkit::plan::VIP, vport),
            b"q",
            true,
        );
        self.send(EXT, f)
    }

    /// A UDP datagram from real server `rip`'s port `rport` to the client's port `cport`.
    pub fn server_udp(&mut self, rip: Ipv4Addr, rport: u16, cport: u16) -> Out {
        let f = testkit::udp_frame(INT_MAC, RS1_MAC, (rip, rport), (CIP, cport), b"a", true);
        self.send(INT, f)
    }

    /// The client's SYN on `cport` to VIP:80 and the real server it was sent to.
    pub fn syn(&mut self, cport: u16) -> Ipv4Addr {
        let out = self.client_tcp(cport, 80, testkit::SYN, b"");
        assert_eq!(out.action, Action::Tx(INT), "SYN from port {cport}");
        testkit::check(&out.frame).dst
    }

    /// A whole handshake from `cport` to VIP:80 (SYN, the server's SYN-ACK, the client's ACK):
    /// the real server it reached.
    pub fn connect(&mut self, cport: u16) -> Ipv4Addr {
        let rip = self.syn(cport);
        let synack = self.server_tcp(rip, 80, cport, testkit::SYN | testkit::ACK);
        assert_eq!(synack.action, Action::Tx(EXT));
        let ack = self.client_tcp(cport, 80, testkit::ACK, b"");
        assert_eq!(ack.action, Action::Tx(INT));
        rip
    }

    /// (RIP, ActiveConn, InActConn) of every real server of `key`, as `-L` lists them.
    pub fn counts(&mut self, key: ServiceKey) -> Vec<(Ipv4Addr, u64, u64)> {
        services::listed(&mut self.mgr, key)
            .dests
            .iter()
            .map(|d| (v4(d.spec.addr), d.active_conns, d.inactive_conns))
            .collect()
    }

    /// The slot of real server `rip` in `key` (to follow its counts once it is removed).
    pub fn slot(&self, key: ServiceKey, rip: Ipv4Addr) -> u32 {
        let snap = self.dp.snapshot();
        let svc = snap
            .service(key.protocol.ip_proto(), v4(key.addr), key.port)
            .expect("service");
        svc.dests
            .iter()
            .find(|d| d.addr4() == rip)
            .expect("real server")
            .slot
    }

    /// (active, inactive) counted on slot `slot`.
    pub fn slot_counts(&self, slot: u32) -> (u64, u64) {
        let d = self.dp.conns().dest(slot).expect("slot");
        (d.active(), d.inactive())
    }

    /// Connections (and templates) as `-L -c` lists them: (client port, state, RIP).
    pub fn conns(&mut self) -> Vec<(u16, String, Ipv4Addr)> {
        let mut v: Vec<_> = services::conns(&mut self.mgr)
            .into_iter()
            .map(|c| (c.client.1, c.state, v4(c.dest.0)))
            .collect();
        v.sort();
        v
    }

    pub fn drops(&self, r: DropReason) -> u64 {
        self.dp.stats().drops(r)
    }

    pub fn events(&self, e: Event) -> u64 {
        self.dp.stats().events(e)
    }
}

/// (sequence number, acknowledgment number, flags) of the TCP segment in `frame`.
pub fn tcp_numbers(frame: &[u8]) -> (u32, u32, u8) {
    let ihl = usize::from(frame[14] & 15) * 4;
    let t = &frame[14 + ihl..];
    let word = |o: usize| u32::from_be_bytes([t[o], t[o + 1], t[o + 2], t[o + 3]]);
    (word(4), word(8), t[13])
}

/// The IPv4 address these IPv4 tests put in an `IpAddr`.
pub fn v4(a: std::net::IpAddr) -> Ipv4Addr {
    match a {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(_) => panic!("IPv6 address {a} in an IPv4 test"),
    }
}
