//! The directors the dataplane tests run. Most: two arms, port `ext` (198.51.100.1/24, the
//! VIPs' side) and port `int` (192.0.2.1/24, the real servers'), as DESIGN.md's lab plan.
//! Some: one arm, port `lan` with clients and real servers on 198.51.100.0/24.

use crate::plan::{
    CIP, CLIENT_MAC, DIP, EXT_CIDR, INT_CIDR, ONE_ARM_MAC, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP,
};
use crate::{arp, arp_request, eth, icmp_echo, ipv4, tcp_frame, udp_frame, ICMP, SYN};
use control::config::{Cidr, PortRole};
use control::model::Timeouts;
use dataplane::driver::{BurstDriver, ByteFrame, ByteIo};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, KernelPath, PortSetup};
use dataplane::service::ServiceManager;
use dataplane::stats::Event;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const INT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];

/// Ports `ext` (with `ext_gateway`, MTU 1500) and `int` (no gateway, MTU `int_mtu`).
pub fn two_arm_ports(ext_gateway: Option<Ipv4Addr>, int_mtu: u16) -> Vec<PortSetup> {
    vec![
        PortSetup {
            name: "ext".into(),
            mac: EXT_MAC,
            role: PortRole::External,
            addrs: vec![Cidr::parse(EXT_CIDR).expect("cidr")],
            gateway: ext_gateway,
            addrs6: Vec::new(),
            gateway6: None,
            mtu: 1500,
        },
        PortSetup {
            name: "int".into(),
            mac: INT_MAC,
            role: PortRole::Internal,
            addrs: vec![Cidr::parse(INT_CIDR).expect("cidr")],
            gateway: None,
            addrs6: Vec::new(),
            gateway6: None,
            mtu: int_mtu,
        },
    ]
}

/// The two-arm director (ports as `two_arm_ports(None, 1500)`, 1024 connections, one worker)
/// with the kernel twins `kernel` says, the client (`CIP`) and RIP1 known neighbours, and
/// `services` (rvsadm lines) applied.
pub fn two_arm_with_twins(kernel: KernelPath, services: &str) -> Arc<Dataplane> {
    let dp = Dataplane::with_kernel_path(
        DataplaneConfig {
            ports: two_arm_ports(None, 1500),
            conn_capacity: 1024,
            timeouts: Timeouts::default(),
            workers: 1,
        },
        kernel,
    );
    dp.neigh().learn(0, CIP, CLIENT_MAC);
    dp.neigh().learn(1, RIP1, RS1_MAC);
    let mut mgr = ServiceManager::new(dp.clone());
    crate::services::rvsadm(&mut mgr, services);
    dp
}

/// One poll loop of `driver` at `now` (ms) with `frame` received on `port`, in a buffer of
/// `room` bytes (a DPDK mbuf's data room is 2048); what the pipeline decided.
pub fn poll_rx(
    driver: &mut BurstDriver<ByteFrame>,
    io: &mut ByteIo,
    now: u64,
    port: u16,
    frame: &[u8],
    room: usize,
) -> Action {
    driver.begin(now);
    let a = driver.rx_frame(io, port, ByteFrame::with_room(frame, room));
    driver.finish(io);
    a
}

/// The accounting of a director with kernel twins: rx + generated = tx + drops + to_kernel +
/// held (by `driver`).
pub fn assert_balanced(dp: &Dataplane, driver: &BurstDriver<ByteFrame>) {
    let s = dp.stats();
    assert_eq!(
        s.rx_packets() + s.generated(),
        s.tx_packets() + s.dropped() + s.events(Event::ToKernel) + driver.held() as u64,
        "{:?}",
        s.counters()
    );
}

/// The ARP replies with which the client (`CIP`, on port 0, `ext`) and RS1 and RS2 (`RIP1`,
/// `RIP2`, on port 1, `int`) make themselves known to the two-arm director: (port, frame).
pub fn neighbour_replies() -> [(u16, Vec<u8>); 3] {
    [(0, CIP, CLIENT_MAC), (1, RIP1, RS1_MAC), (1, RIP2, RS2_MAC)].map(|(port, ip, mac)| {
        let (our_mac, our_ip) = if port == 0 {
            (EXT_MAC, VIP)
        } else {
            (INT_MAC, DIP)
        };
        (
            port,
            eth(our_mac, mac, 0x0806, &arp(2, mac, ip, our_mac, our_ip)),
        )
    })
}

/// One frame of each kind a client (`CIP`, `CLIENT_MAC`) sends to the two-arm director's port
/// `ext`: a TCP SYN with data to VIP:80, a UDP datagram to VIP:53, an ICMP echo request to the
/// VIP and a broadcast ARP request for it.
pub fn client_frames() -> [Vec<u8>; 4] {
    [
        tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 80), SYN, b"payload"),
        udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 53), b"q", true),
        eth(
            EXT_MAC,
            CLIENT_MAC,
            0x0800,
            &ipv4(CIP, VIP, ICMP, 64, &icmp_echo(8, 1, 1, b"abcdefgh")),
        ),
        arp_request(CLIENT_MAC, CIP, VIP),
    ]
}

/// A one-arm director (port 0, `lan`: role both, 198.51.100.1/24, MAC `ONE_ARM_MAC`) with a
/// `capacity`-connection table, `workers` workers, no services, and every one of `peers` a
/// known neighbour at `peer_mac`.
pub fn one_arm(
    capacity: usize,
    workers: usize,
    peers: &[Ipv4Addr],
    peer_mac: [u8; 6],
) -> (Arc<Dataplane>, ServiceManager) {
    let dp = Dataplane::new(DataplaneConfig {
        ports: vec![PortSetup {
            name: "lan".into(),
            mac: ONE_ARM_MAC,
            role: PortRole::Both,
            addrs: vec![Cidr::parse(EXT_CIDR).expect("cidr")],
            gateway: None,
            addrs6: Vec::new(),
            gateway6: None,
            mtu: 1500,
        }],
        conn_capacity: capacity,
        timeouts: Timeouts::default(),
        workers,
    });
    for &ip in peers {
        dp.neigh().learn(0, ip, peer_mac);
    }
    let mgr = ServiceManager::new(dp.clone());
    (dp, mgr)
}
