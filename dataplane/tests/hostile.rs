//! Hostile and unusual input on the packet path: every case of docs/packet-verdicts.md has a
//! verdict and a counter, ICMP errors are generated (time exceeded, fragmentation needed) and
//! rewritten (errors about tracked connections), fragments follow their first fragment, and the
//! counters add up: rx + generated = tx + drops.
//!
//! Frames are built and checked with tests/common (its own checksum code, independent of the
//! crate's).
//!
//! One file, past 600 lines: every verdict of docs/packet-verdicts.md shares the one harness whose
//! counters must add up.

use control::cli::{parse_args, Change, Command};
use control::model::Timeouts;
use control::proto::{Request, Response};
use dataplane::driver::{BurstDriver, ByteFrame, ByteIo, FRAG_HOLD_CAPACITY, FRAG_HOLD_MS};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, ICMP_BURST, ICMP_RATE_PER_SEC};
use dataplane::service::ServiceManager;
use dataplane::stats::{DropReason, Event};
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::*;

const EXT: u16 = 0;
const INT: u16 = 1;
use testkit::director::{self, EXT_MAC, INT_MAC};
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const RS1_MAC: [u8; 6] = [2, 0, 0, 0, 3, 2];
const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 3, 3];
const BCAST: [u8; 6] = [0xff; 6];

const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const DIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const RIP1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const RIP2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

/// Buffer size of the frames the tests hand to the driver, as a DPDK mbuf's data room (2048).
const ROOM: usize = 2048;

struct Lab {
    dp: Arc<Dataplane>,
    driver: BurstDriver<ByteFrame>,
    io: ByteIo,
    mgr: ServiceManager,
    now: u64,
}

fn adm(mgr: &mut ServiceManager, line: &str) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let inv = parse_args(&args).unwrap_or_else(|e| panic!("{line}: {e:?}"));
    let Command::Change(Change::Apply(req)) = inv.command else {
        panic!("{line}: not a plain change");
    };
    assert_eq!(mgr.handle(req), Response::Ok, "{line}");
}

impl Lab {
    /// Two-arm director (ext 198.51.100.1/24, int 192.0.2.1/24 with MTU `int_mtu`); TCP 80 and
    /// UDP 53 on the VIP, rr over RS1 and RS2 (port 80 / 5353); neighbours known.
    fn new(int_mtu: u16) -> Lab {
        let ports = director::two_arm_ports(None, int_mtu);
        let dp = Dataplane::new(DataplaneConfig {
            ports,
            conn_capacity: 1024,
            timeouts: Timeouts::default(),
            workers: 1,
        });
        let mut lab = Lab {
            driver: BurstDriver::new(dp.clone(), 0),
            io: ByteIo::new(ROOM),
            mgr: ServiceManager::new(dp.clone()),
            dp,
            now: 10_000,
        };
        for line in [
            "-A -t 198.51.100.1:80 -s rr",
            "-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m",
            "-a -t 198.51.100.1:80 -r 192.0.2.3:80 -m",
            "-A -u 198.51.100.1:53 -s rr",
            "-a -u 198.51.100.1:53 -r 192.0.2.2:5353 -m",
            "-a -u 198.51.100.1:53 -r 192.0.2.3:5353 -m",
        ] {
            adm(&mut lab.mgr, line);
        }
        for (port, f) in director::neighbour_replies() {
            assert_eq!(lab.send(port, &f).0, Action::Drop);
        }
        lab
    }

    /// Runs `frame` through the burst driver in a buffer with room to grow; returns the
    /// pipeline's action and the bytes sent for it (empty for Drop/Hold).
    fn send(&mut self, port: u16, frame: &[u8]) -> (Action, Vec<u8>) {
        self.poll(port, ByteFrame::with_room(frame, ROOM))
    }

    /// One poll loop of the driver with `frame` received on `port`: the action and the bytes
    /// sent for it, as the DPDK worker would send them.
    fn poll(&mut self, port: u16, frame: ByteFrame) -> (Action, Vec<u8>) {
        self.driver.begin(self.now);
        let a = self.driver.rx_frame(&mut self.io, port, frame);
        self.driver.finish(&mut self.io);
        let out = match a {
            // Nothing else is queued on the port before the frame in the same loop.
            Action::Tx(p) | Action::Reply { port: p, .. } => {
                let sent = self.io.sent_on(p).first();
                sent.expect("the frame was sent").bytes().to_vec()
            }
            _ => Vec::new(),
        };
        self.io.clear();
        (a, out)
    }

    fn drops(&self, r: DropReason) -> u64 {
        self.dp.stats().drops(r)
    }

    fn events(&self, e: Event) -> u64 {
        self.dp.stats().events(e)
    }

    /// One poll loop of the driver with `frames` received on `port`: the frames sent on each
    /// port.
    fn burst(&mut self, port: u16, frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        self.driver.begin(self.now);
        let mut rx: Vec<ByteFrame> = frames
            .iter()
            .map(|f| ByteFrame::with_room(f, ROOM))
            .collect();
        self.driver.rx_burst(&mut self.io, port, &mut rx);
        self.driver.finish(&mut self.io);
        let out = (0..2)
            .map(|p| {
                self.io
                    .sent_on(p)
                    .iter()
                    .map(|f| f.bytes().to_vec())
                    .collect()
            })
            .collect();
        self.io.clear();
        out
    }

    /// rx + generated frames = tx + drops (nothing is held in these tests).
    fn assert_accounting(&self) {
        assert_eq!(self.driver.held(), 0, "nothing held");
        let s = self.dp.stats();
        let (drops, generated) = (s.dropped(), s.generated());
        assert_eq!(
            s.rx_packets() + generated,
            s.tx_packets() + drops,
            "rx {} + generated {generated} = tx {} + drops {drops}",
            s.rx_packets(),
            s.tx_packets()
        );
    }

    fn conn_count(&mut self) -> usize {
        match self.mgr.handle(Request::ListConns) {
            Response::Conns(c) => c.len(),
            r => panic!("{r:?}"),
        }
    }
}

/// Splits the datagram `payload` (an L4 segment) into fragments of `chunk` bytes (a multiple
/// of 8), as IPv4 packets with id `id`.
fn fragments(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    payload: &[u8],
    chunk: usize,
) -> Vec<Vec<u8>> {
    assert_eq!(chunk % 8, 0);
    let mut out = Vec::new();
    let mut off = 0;
    while off < payload.len() {
        let end = (off + chunk).min(payload.len());
        let mf = if end < payload.len() { 0x2000 } else { 0 };
        let word = mf | (off / 8) as u16;
        out.push(ipv4_with(src, dst, proto, 64, id, word, &payload[off..end]));
        off = end;
    }
    out
}

/// The IPv4 packet inside an Ethernet frame, padding excluded.
fn ip_of(frame: &[u8]) -> &[u8] {
    let ip = &frame[14..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    &ip[..total]
}

fn addr_at(p: &[u8], off: usize) -> Ipv4Addr {
    Ipv4Addr::new(p[off], p[off + 1], p[off + 2], p[off + 3])
}

// ---------------------------------------------------------------------------------------------
// generated ICMP errors

#[test]
fn ttl_expiry_is_answered_with_time_exceeded() {
    let mut lab = Lab::new(1500);
    // To the VIP: the error comes from the VIP (as the kernel's, which owns the VIP).
    let seg = tcp_seg(CIP, 4000, VIP, 80, SYN, b"");
    let pkt = ipv4(CIP, VIP, TCP, 1, &seg);
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &pkt);
    let (a, out) = lab.send(EXT, &f);
    assert_eq!(
        a,
        Action::Reply {
            port: EXT,
            len: 14 + 28 + pkt.len()
        }
    );
    let s = check(&out);
    assert_eq!((s.src, s.dst, s.proto), (VIP, CIP, ICMP));
    assert_eq!((s.dst_mac, s.src_mac), (CLIENT_MAC, EXT_MAC));
    assert_eq!(&out[34..36], &[11, 0], "time exceeded in transit");
    assert_eq!(&out[42..], &pkt[..], "the whole packet quoted, unchanged");
    assert_eq!(lab.drops(DropReason::TtlExpired), 1);
    assert_eq!(lab.events(Event::IcmpTimeExceeded), 1);

    // Routed traffic (a real server to a client): from the ingress port's address.
    let seg = udp_seg(RIP1, 123, CIP, 123, b"ntp", true);
    let f = eth(INT_MAC, RS1_MAC, 0x0800, &ipv4(RIP1, CIP, UDP, 1, &seg));
    let (a, out) = lab.send(INT, &f);
    assert!(matches!(a, Action::Reply { port: INT, .. }), "{a:?}");
    let s = check(&out);
    assert_eq!((s.src, s.dst, s.dst_mac), (DIP, RIP1, RS1_MAC));

    // Without room past the frame, nothing can be built: dropped.
    let seg = tcp_seg(CIP, 4001, VIP, 80, SYN, b"");
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &ipv4(CIP, VIP, TCP, 1, &seg));
    let len = f.len();
    assert_eq!(lab.poll(EXT, ByteFrame::new(f, len)).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::TtlExpired), 3);
    assert_eq!(lab.events(Event::IcmpTimeExceeded), 2);
    lab.assert_accounting();
}

#[test]
fn df_over_mtu_gets_fragmentation_needed_and_plain_over_mtu_is_dropped() {
    let mut lab = Lab::new(1000);
    let payload = vec![0x5a; 1200];
    let seg = udp_seg(CIP, 4000, VIP, 53, &payload, true);
    let pkt = ipv4(CIP, VIP, UDP, 64, &seg); // DF set by testkit::ipv4
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &pkt);
    let (a, out) = lab.send(EXT, &f);
    assert_eq!(
        a,
        Action::Reply {
            port: EXT,
            len: 14 + 576
        }
    );
    let s = check(&out);
    assert_eq!((s.src, s.dst), (VIP, CIP));
    assert_eq!(&out[34..36], &[3, 4], "fragmentation needed");
    assert_eq!(&out[38..42], &[0, 0, 0x03, 0xe8], "next-hop MTU 1000");
    assert_eq!(&out[42..42 + 548], &pkt[..548]);
    assert_eq!(lab.drops(DropReason::MtuExceeded), 1);
    assert_eq!(lab.events(Event::IcmpFragNeeded), 1);
    // Without DF: dropped, no answer (rvs does not fragment).
    let mut nodf = pkt.clone();
    nodf[6] = 0;
    nodf[10] = 0;
    nodf[11] = 0;
    let c = inet_checksum(&nodf[..20]);
    nodf[10..12].copy_from_slice(&c.to_be_bytes());
    let (a, _) = lab.send(EXT, &eth(EXT_MAC, CLIENT_MAC, 0x0800, &nodf));
    assert_eq!(a, Action::Drop);
    assert_eq!(lab.drops(DropReason::MtuExceeded), 2);
    assert_eq!(lab.events(Event::IcmpFragNeeded), 1);
    lab.assert_accounting();
}

#[test]
fn no_icmp_about_icmp_errors_fragments_or_special_sources() {
    let mut lab = Lab::new(1500);
    // An ICMP error (port unreachable) with TTL 1 routed through: dropped, not answered.
    let quoted = ipv4(RIP1, CIP, UDP, 64, &udp_seg(RIP1, 1, CIP, 2, b"", true));
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&quoted);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let f = eth(INT_MAC, RS1_MAC, 0x0800, &ipv4(RIP1, CIP, ICMP, 1, &m));
    assert_eq!(lab.send(INT, &f).0, Action::Drop);
    // An echo request with TTL 1 routed through IS answered (traceroute -I).
    let f = eth(
        INT_MAC,
        RS1_MAC,
        0x0800,
        &ipv4(RIP1, CIP, ICMP, 1, &icmp_echo(8, 7, 1, b"trace")),
    );
    assert!(matches!(lab.send(INT, &f).0, Action::Reply { .. }));
    // A later fragment with TTL 1 of a routed datagram: not answered.
    let seg = udp_seg(RIP1, 1, CIP, 2, &[7u8; 64], true);
    let frags = fragments(RIP1, CIP, UDP, 99, &seg, 32);
    assert!(matches!(
        lab.send(INT, &eth(INT_MAC, RS1_MAC, 0x0800, &frags[0])).0,
        Action::Tx(EXT)
    ));
    let mut last = frags[2].clone();
    last[8] = 1;
    last[10] = 0;
    last[11] = 0;
    let c = inet_checksum(&last[..20]);
    last[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        lab.send(INT, &eth(INT_MAC, RS1_MAC, 0x0800, &last)).0,
        Action::Drop
    );
    // A frame from a multicast source MAC: not answered.
    let seg = tcp_seg(CIP, 4000, VIP, 80, SYN, b"");
    let f = eth(
        EXT_MAC,
        [0x01, 0, 0x5e, 0, 0, 1],
        0x0800,
        &ipv4(CIP, VIP, TCP, 1, &seg),
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::TtlExpired), 4);
    assert_eq!(lab.events(Event::IcmpTimeExceeded), 1);
    lab.assert_accounting();
}

#[test]
fn generated_icmp_is_rate_limited_per_worker() {
    let mut lab = Lab::new(1500);
    let mut answered = 0;
    let n = ICMP_BURST + 30;
    for i in 0..n {
        let seg = udp_seg(CIP, 5000 + i as u16, VIP, 53, b"x", true);
        let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &ipv4(CIP, VIP, UDP, 1, &seg));
        if matches!(lab.send(EXT, &f).0, Action::Reply { .. }) {
            answered += 1;
        }
    }
    assert_eq!(
        answered, ICMP_BURST,
        "a burst, then nothing within the same millisecond"
    );
    assert_eq!(lab.events(Event::IcmpRateLimited), 30);
    // 10 ms later: 10 more tokens at 1000/s.
    lab.now += 10;
    let mut more = 0;
    for i in 0..30u16 {
        let seg = udp_seg(CIP, 6000 + i, VIP, 53, b"x", true);
        let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &ipv4(CIP, VIP, UDP, 1, &seg));
        if matches!(lab.send(EXT, &f).0, Action::Reply { .. }) {
            more += 1;
        }
    }
    assert_eq!(more, 10 * ICMP_RATE_PER_SEC / 1000);
    assert_eq!(lab.drops(DropReason::TtlExpired), n + 30);
    lab.assert_accounting();
}

// ---------------------------------------------------------------------------------------------
// ICMP errors about tracked connections

#[test]
fn icmp_errors_about_connections_are_rewritten_both_ways() {
    let mut lab = Lab::new(1500);
    // A UDP flow CIP:4000 -> VIP:53, scheduled to RS1:5353.
    let q = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4000), (VIP, 53), b"query", true);
    let (a, sent) = lab.send(EXT, &q);
    assert_eq!(a, Action::Tx(INT));
    let to_rs = ip_of(&sent).to_vec();
    assert_eq!(addr_at(&to_rs, 16), RIP1);

    // RS1 answers port unreachable quoting what it got; the client must see one about VIP:53.
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&to_rs);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let f = eth(INT_MAC, RS1_MAC, 0x0800, &ipv4(RIP1, CIP, ICMP, 64, &m));
    let (a, out) = lab.send(INT, &f);
    assert_eq!(a, Action::Tx(EXT));
    let s = check(&out);
    assert_eq!((s.src, s.dst, s.ttl), (VIP, CIP, 63));
    let inner = &ip_of(&out)[28..];
    assert_eq!(
        inet_checksum(&inner[..20]),
        0,
        "quoted IP checksum verifies"
    );
    let original = ip_of(&q);
    assert_eq!(
        &inner[..20],
        &{
            // What the client sent, TTL as the real server got it.
            let mut h = original[..20].to_vec();
            h[8] = 63;
            h[10] = 0;
            h[11] = 0;
            let c = inet_checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        }[..]
    );
    assert_eq!(
        &inner[20..],
        &original[20..],
        "quoted UDP header and data as sent"
    );

    // The client's port unreachable about a reply VIP:53 -> CIP:4000 goes to RS1, quoting
    // RS1:5353 -> CIP:4000.
    let r = udp_frame(INT_MAC, RS1_MAC, (RIP1, 5353), (CIP, 4000), b"answer", true);
    let (a, reply) = lab.send(INT, &r);
    assert_eq!(a, Action::Tx(EXT));
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(ip_of(&reply));
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &ipv4(CIP, VIP, ICMP, 64, &m));
    let (a, out) = lab.send(EXT, &f);
    assert_eq!(a, Action::Tx(INT));
    let s = check(&out);
    assert_eq!((s.src, s.dst, s.dst_mac), (CIP, RIP1, RS1_MAC));
    let inner = &ip_of(&out)[28..];
    assert_eq!(inet_checksum(&inner[..20]), 0);
    assert_eq!(
        (addr_at(inner, 12), addr_at(inner, 16)),
        (RIP1, CIP),
        "quoted source is the real server again"
    );
    let useg = &inner[20..];
    assert_eq!(u16::from_be_bytes([useg[0], useg[1]]), 5353);
    assert_eq!(
        u16::from_be_bytes([useg[6], useg[7]]),
        l4_checksum(RIP1, CIP, UDP, useg),
        "quoted UDP checksum adjusted"
    );
    assert_eq!(lab.events(Event::IcmpNat), 2);

    // A bad ICMP checksum on an error that would be rewritten: dropped.
    let mut bad = f.clone();
    bad[36] ^= 0x55;
    assert_eq!(lab.send(EXT, &bad).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::BadChecksum), 1);
    lab.assert_accounting();
}

#[test]
fn tcp_time_exceeded_from_a_router_reaches_the_client_as_from_the_vip() {
    let mut lab = Lab::new(1500);
    let syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4444), (VIP, 80), SYN, b"");
    let (_, sent) = lab.send(EXT, &syn);
    let to_rs = ip_of(&sent).to_vec();
    // Some router beside the real servers (192.0.2.254) quotes only the first 8 bytes of TCP.
    let router = Ipv4Addr::new(192, 0, 2, 254);
    let mut m = vec![11, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&to_rs[..28]);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let f = eth(INT_MAC, RS2_MAC, 0x0800, &ipv4(router, CIP, ICMP, 64, &m));
    let (a, out) = lab.send(INT, &f);
    assert_eq!(a, Action::Tx(EXT));
    let s = check(&out);
    assert_eq!(s.src, VIP, "internal addresses never reach the client");
    let inner = &ip_of(&out)[28..];
    assert_eq!((addr_at(inner, 12), addr_at(inner, 16)), (CIP, VIP));
    assert_eq!(&inner[20..24], &[0x11, 0x5c, 0, 80]);
}

#[test]
fn unrelated_icmp_errors_are_dropped_or_routed() {
    let mut lab = Lab::new(1500);
    let quoted = ipv4(VIP, CIP, UDP, 64, &udp_seg(VIP, 53, CIP, 9999, b"", true));
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&quoted);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    // To the VIP about nothing tracked.
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &ipv4(CIP, VIP, ICMP, 64, &m));
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::IcmpUnrelated), 1);
    // Between other hosts (a real server's own traffic): routed as is.
    let f = eth(INT_MAC, RS1_MAC, 0x0800, &ipv4(RIP1, CIP, ICMP, 64, &m));
    let (a, out) = lab.send(INT, &f);
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(check(&out).src, RIP1);
    assert_eq!(lab.events(Event::IcmpNat), 0);
    lab.assert_accounting();
}

/// An ICMP error goes back to the sender of the packet it quotes. One that quotes a tracked
/// connection but is addressed elsewhere (here: to the VIP, about a packet rvs sent from the
/// client to a real server) is unrelated: dropped, never NATed back towards the VIP.
#[test]
fn icmp_errors_to_someone_other_than_the_quoted_sender_are_unrelated() {
    let mut lab = Lab::new(1500);
    let q = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 4000), (VIP, 53), b"query", true);
    let (a, sent) = lab.send(EXT, &q);
    assert_eq!(a, Action::Tx(INT));
    let to_rs = ip_of(&sent).to_vec();
    let mut m = vec![11, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&to_rs);
    let c = inet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let router = Ipv4Addr::new(192, 0, 2, 254);
    let f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(router, VIP, ICMP, 64, &m),
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::IcmpUnrelated), 1);
    assert_eq!(lab.events(Event::IcmpNat), 0);
    lab.assert_accounting();
}

// ---------------------------------------------------------------------------------------------
// fragments

/// Reassembles the payloads of IPv4 fragments (any order), returning (header of the first
/// fragment, datagram payload).
fn reassemble(frags: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let mut parts: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut first = Vec::new();
    for f in frags {
        let ihl = usize::from(f[0] & 15) * 4;
        let off = usize::from(u16::from_be_bytes([f[6], f[7]]) & 0x1fff) * 8;
        if off == 0 {
            first = f[..ihl].to_vec();
        }
        parts.push((off, f[ihl..].to_vec()));
    }
    parts.sort();
    let mut data = Vec::new();
    for (off, p) in parts {
        assert_eq!(off, data.len(), "contiguous");
        data.extend_from_slice(&p);
    }
    (first, data)
}

#[test]
fn udp_fragments_follow_their_first_fragment_to_the_same_real_server() {
    let mut lab = Lab::new(1500);
    // Four datagrams from different ports, rr alternates RS1/RS2; fragments interleaved.
    let mut all: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..4u16 {
        let data: Vec<u8> = (0..300)
            .map(|b| (b as u8).wrapping_mul(i as u8 + 3))
            .collect();
        let seg = udp_seg(CIP, 7000 + i, VIP, 53, &data, true);
        all.push(fragments(CIP, VIP, UDP, 0x4000 + i, &seg, 104));
    }
    let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 4];
    let mut macs: Vec<Vec<[u8; 6]>> = vec![Vec::new(); 4];
    let per_datagram = all[0].len();
    for k in 0..per_datagram {
        for (i, frags) in all.iter().enumerate() {
            let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &frags[k]);
            let (a, o) = lab.send(EXT, &f);
            assert_eq!(a, Action::Tx(INT), "datagram {i} fragment {k}");
            check_ip_only(&o);
            macs[i].push(o[0..6].try_into().unwrap());
            out[i].push(ip_of(&o).to_vec());
        }
    }
    for i in 0..4 {
        let rip = addr_at(&out[i][0], 16);
        let mac = if rip == RIP1 { RS1_MAC } else { RS2_MAC };
        for (k, f) in out[i].iter().enumerate() {
            assert_eq!(
                addr_at(f, 16),
                rip,
                "datagram {i} fragment {k}: same server"
            );
            assert_eq!(addr_at(f, 12), CIP);
            assert_eq!(f[8], 63, "TTL decremented");
            assert_eq!(macs[i][k], mac);
        }
        let (hdr, data) = reassemble(&out[i]);
        let dst = addr_at(&hdr, 16);
        assert_eq!(
            u16::from_be_bytes([data[2], data[3]]),
            5353,
            "port rewritten"
        );
        assert_eq!(
            u16::from_be_bytes([data[6], data[7]]),
            l4_checksum(CIP, dst, UDP, &data),
            "UDP checksum of the reassembled datagram verifies"
        );
    }
    let servers: Vec<Ipv4Addr> = out.iter().map(|o| addr_at(&o[0], 16)).collect();
    assert_eq!(servers, vec![RIP1, RIP2, RIP1, RIP2]);
    assert_eq!(lab.events(Event::FragFirst), 4);
    assert_eq!(lab.events(Event::FragFollowed), 8);

    // The real servers' fragmented answers go back as from the VIP.
    let data = vec![0xab; 250];
    let seg = udp_seg(RIP2, 5353, CIP, 7001, &data, true);
    let back: Vec<Vec<u8>> = fragments(RIP2, CIP, UDP, 77, &seg, 96)
        .iter()
        .map(|p| {
            let (a, o) = lab.send(INT, &eth(INT_MAC, RS2_MAC, 0x0800, p));
            assert_eq!(a, Action::Tx(EXT));
            check_ip_only(&o);
            ip_of(&o).to_vec()
        })
        .collect();
    for f in &back {
        assert_eq!((addr_at(f, 12), addr_at(f, 16)), (VIP, CIP));
    }
    let (_, data) = reassemble(&back);
    assert_eq!(u16::from_be_bytes([data[0], data[1]]), 53);
    assert_eq!(
        u16::from_be_bytes([data[6], data[7]]),
        l4_checksum(VIP, CIP, UDP, &data)
    );
    lab.assert_accounting();
}

/// The IP header checksum verifies (fragments have no L4 checksum of their own).
fn check_ip_only(frame: &[u8]) {
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 15) * 4;
    assert_eq!(inet_checksum(&ip[..ihl]), 0);
}

#[test]
fn fragments_before_their_first_wait_for_it_a_while() {
    let mut lab = Lab::new(1500);
    let seg = udp_seg(CIP, 7100, VIP, 53, &[1u8; 200], true);
    let frags = fragments(CIP, VIP, UDP, 0x1234, &seg, 64);
    // The last one first: nothing known yet, it is held.
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &frags[3]);
    assert_eq!(lab.send(EXT, &f).0, Action::AwaitFirstFragment);
    assert_eq!(lab.driver.held_fragments(), 1);
    assert_eq!(lab.events(Event::FragHeld), 1);
    // The first one's decision sends it on in the same poll loop, behind the first.
    let out = lab.burst(EXT, &[eth(EXT_MAC, CLIENT_MAC, 0x0800, &frags[0])]);
    let out = &out[usize::from(INT)];
    assert_eq!(out.len(), 2);
    let offsets: Vec<u16> = out
        .iter()
        .map(|f| u16::from_be_bytes([f[20], f[21]]) & 0x1fff)
        .collect();
    assert_eq!(
        offsets,
        [0, 3 * 8],
        "the first fragment, then the held last one"
    );
    assert!(
        out.iter().all(|f| addr_at(&f[14..], 16) != VIP),
        "both DNATed"
    );
    assert_eq!(lab.driver.held_fragments(), 0);
    for p in &frags[1..3] {
        let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, p);
        assert_eq!(lab.send(EXT, &f).0, Action::Tx(INT));
    }
    assert_eq!(lab.events(Event::FragFollowed), 3);
    assert_eq!(lab.drops(DropReason::FragNoFirst), 0);
    lab.assert_accounting();

    // After the fragment timeout the decision is gone: a later fragment waits
    // FRAG_HOLD_MS for a new one, then is dropped.
    lab.now += dataplane::frag::FRAG_TIMEOUT_MS;
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &frags[2]);
    assert_eq!(lab.send(EXT, &f).0, Action::AwaitFirstFragment);
    lab.now += FRAG_HOLD_MS;
    lab.burst(EXT, &[]);
    assert_eq!(lab.driver.held_fragments(), 1, "still within FRAG_HOLD_MS");
    lab.now += 1;
    lab.burst(EXT, &[]);
    assert_eq!(lab.driver.held_fragments(), 0);
    assert_eq!(lab.drops(DropReason::FragNoFirst), 1);
    lab.assert_accounting();

    // A first fragment to a port with no service: dropped, so its later fragments (before
    // and after it) wait in vain.
    let seg = udp_seg(CIP, 7200, VIP, 54, &[1u8; 200], true);
    let frags = fragments(CIP, VIP, UDP, 0x2345, &seg, 64);
    let order = [2, 0, 1, 3];
    let actions: Vec<Action> = order
        .iter()
        .map(|&i| {
            lab.send(EXT, &eth(EXT_MAC, CLIENT_MAC, 0x0800, &frags[i]))
                .0
        })
        .collect();
    assert_eq!(
        actions,
        [
            Action::AwaitFirstFragment,
            Action::Drop,
            Action::AwaitFirstFragment,
            Action::AwaitFirstFragment
        ]
    );
    assert_eq!(lab.drops(DropReason::NoService), 1);
    lab.now += FRAG_HOLD_MS + 1;
    lab.burst(EXT, &[]);
    assert_eq!(lab.drops(DropReason::FragNoFirst), 4);
    assert_eq!(lab.events(Event::FragHeld), 5);
    lab.assert_accounting();
}

#[test]
fn a_full_fragment_hold_drops_and_counts_the_overflow() {
    let mut lab = Lab::new(1500);
    // Orphan fragments of as many datagrams as the hold has room for, and three more.
    let orphans: Vec<Vec<u8>> = (0..FRAG_HOLD_CAPACITY as u16 + 3)
        .map(|id| {
            let seg = udp_seg(CIP, 7300, VIP, 53, &[2u8; 100], true);
            let last = fragments(CIP, VIP, UDP, id, &seg, 64).pop().unwrap();
            eth(EXT_MAC, CLIENT_MAC, 0x0800, &last)
        })
        .collect();
    lab.burst(EXT, &orphans);
    assert_eq!(lab.driver.held_fragments(), FRAG_HOLD_CAPACITY);
    assert_eq!(lab.drops(DropReason::FragHoldFull), 3);
    assert_eq!(lab.events(Event::FragHeld), FRAG_HOLD_CAPACITY as u64);
    // The ARP hold is another queue: a frame for an unknown next hop is still held.
    let seg = udp_seg(CIP, 1, Ipv4Addr::new(192, 0, 2, 77), 9, b"x", true);
    let f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(CIP, Ipv4Addr::new(192, 0, 2, 77), UDP, 64, &seg),
    );
    assert!(matches!(lab.send(EXT, &f).0, Action::Hold { .. }));
    lab.now += dataplane::driver::HOLD_MS + 1;
    lab.burst(EXT, &[]);
    assert_eq!(lab.driver.held(), 0);
    assert_eq!(
        lab.drops(DropReason::FragNoFirst),
        FRAG_HOLD_CAPACITY as u64
    );
    assert_eq!(lab.drops(DropReason::NeighUnresolved), 1);
    lab.assert_accounting();
}

/// Every order of a datagram's `n` fragments (n! of them).
fn orders(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in orders(n - 1) {
        for at in 0..=rest.len() {
            let mut o = rest.clone();
            o.insert(at, n - 1);
            out.push(o);
        }
    }
    out
}

/// How the fragments of one datagram reach the driver.
#[derive(Debug, Clone, Copy)]
enum Arrival {
    /// All in one received burst (one poll loop).
    OneBurst,
    /// One per poll loop.
    OnePerLoop,
}

/// One way through the director for [`every_order`].
struct Way {
    /// Where the datagrams come in, from which MAC, and where they must go out.
    port: u16,
    mac: [u8; 6],
    out_port: u16,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    /// The (source, destination) addresses and ports of the datagram that must come out.
    want: ((Ipv4Addr, Ipv4Addr), (u16, u16)),
}

/// Sends every order of the `n` fragments of datagrams along `way`, each order a new datagram
/// (ids from `first_id`), and checks that every fragment of each went out on `way.out_port`,
/// rewritten as a whole datagram would have been (`way.want`, the reassembled datagram's UDP
/// checksum verifying). Returns the next unused id.
fn every_order(lab: &mut Lab, n: usize, arrival: Arrival, way: &Way, first_id: u16) -> u16 {
    let Way {
        port,
        mac,
        out_port,
        src: (src, sport),
        dst: (dst, dport),
        want,
    } = *way;
    let our_mac = if port == EXT { EXT_MAC } else { INT_MAC };
    // Fragments of 64 bytes: n - 1 full ones and a shorter last one.
    let data = vec![0x5a; 64 * (n - 1) + 12];
    let seg = udp_seg(src, sport, dst, dport, &data, true);
    let mut id = first_id;
    for order in orders(n) {
        let frags = fragments(src, dst, UDP, id, &seg, 64);
        assert_eq!(frags.len(), n);
        let frames: Vec<Vec<u8>> = order
            .iter()
            .map(|&i| eth(our_mac, mac, 0x0800, &frags[i]))
            .collect();
        let out: Vec<Vec<u8>> = match arrival {
            Arrival::OneBurst => lab.burst(port, &frames).swap_remove(usize::from(out_port)),
            Arrival::OnePerLoop => frames
                .iter()
                .flat_map(|f| {
                    lab.burst(port, std::slice::from_ref(f))
                        .swap_remove(usize::from(out_port))
                })
                .collect(),
        };
        let ctx = format!("{n} fragments {arrival:?} in order {order:?}");
        assert_eq!(out.len(), n, "{ctx}: all sent");
        assert_eq!(lab.driver.held_fragments(), 0, "{ctx}");
        let ips: Vec<Vec<u8>> = out
            .iter()
            .map(|o| {
                check_ip_only(o);
                ip_of(o).to_vec()
            })
            .collect();
        let (hdr, data) = reassemble(&ips);
        let addrs = (addr_at(&hdr, 12), addr_at(&hdr, 16));
        let ports = (
            u16::from_be_bytes([data[0], data[1]]),
            u16::from_be_bytes([data[2], data[3]]),
        );
        assert_eq!((addrs, ports), want, "{ctx}");
        for f in &ips {
            assert_eq!(
                (addr_at(f, 12), addr_at(f, 16)),
                addrs,
                "{ctx}: every fragment"
            );
        }
        assert_eq!(
            u16::from_be_bytes([data[6], data[7]]),
            l4_checksum(addrs.0, addrs.1, UDP, &data),
            "{ctx}: the reassembled datagram's UDP checksum verifies"
        );
        id = id.wrapping_add(1);
        // Datagrams a millisecond apart, so that the fragment table's entries expire.
        lab.now += 1;
    }
    id
}

#[test]
fn fragments_in_every_order_follow_their_first_fragment() {
    let mut lab = Lab::new(1500);
    // A whole datagram first opens the connection (rr: RS1) that the replies need.
    let f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 7400), (VIP, 53), b"hello", true);
    assert_eq!(lab.send(EXT, &f).0, Action::Tx(INT));
    // Client -> VIP: DNAT to RS1:5353; RS1 -> client: SNAT to VIP:53.
    let request = Way {
        port: EXT,
        mac: CLIENT_MAC,
        out_port: INT,
        src: (CIP, 7400),
        dst: (VIP, 53),
        want: ((CIP, RIP1), (7400, 5353)),
    };
    let reply = Way {
        port: INT,
        mac: RS1_MAC,
        out_port: EXT,
        src: (RIP1, 5353),
        dst: (CIP, 7400),
        want: ((VIP, CIP), (53, 7400)),
    };
    let mut id = 1;
    for n in [3, 7] {
        for arrival in [Arrival::OneBurst, Arrival::OnePerLoop] {
            for way in [&request, &reply] {
                id = every_order(&mut lab, n, arrival, way, id);
            }
        }
    }
    assert_eq!(lab.drops(DropReason::FragNoFirst), 0);
    // Every fragment that came before its datagram's first fragment was held: as many as the
    // first fragment's position, summed over every order (n! (n-1) / 2), both ways, both
    // arrivals.
    assert_eq!(lab.events(Event::FragHeld), 2 * 2 * (6 + 5040 * 3));
    assert_eq!(lab.conn_count(), 1);
    lab.assert_accounting();
}

#[test]
fn refused_fragments() {
    let mut lab = Lab::new(1500);
    // RFC 1858: a TCP fragment at offset 8.
    let f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4_with(CIP, VIP, TCP, 64, 5, 1, &[0u8; 16]),
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    // A first fragment too short for the TCP header.
    let seg = tcp_seg(CIP, 4000, VIP, 80, SYN, b"");
    let f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4_with(CIP, VIP, TCP, 64, 6, 0x2000, &seg[..16]),
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::BadFragment), 2);
    // A fragmented ping to the VIP and a fragment to the DIP: rvs reassembles nothing for
    // itself.
    let ping = icmp_echo(8, 1, 1, &[9u8; 100]);
    let frags = fragments(CIP, VIP, ICMP, 7, &ping, 64);
    for p in &frags {
        let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, p);
        assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    }
    let seg = udp_seg(RIP1, 1, DIP, 2, &[0u8; 100], true);
    for p in fragments(RIP1, DIP, UDP, 8, &seg, 64) {
        let f = eth(INT_MAC, RS1_MAC, 0x0800, &p);
        assert_eq!(lab.send(INT, &f).0, Action::Drop);
    }
    assert_eq!(lab.drops(DropReason::Fragment), 4);
    assert_eq!(lab.conn_count(), 0);
    lab.assert_accounting();
}

// ---------------------------------------------------------------------------------------------
// the other verdicts

#[test]
fn every_other_verdict_has_its_counter() {
    let mut lab = Lab::new(1500);
    // A VIP port with no service.
    let f = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 8080), SYN, b"");
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::NoService), 1);
    // Unknown protocols: to the VIP dropped, to the DIP dropped, elsewhere routed.
    let gre = [0u8; 24];
    let f = eth(EXT_MAC, CLIENT_MAC, 0x0800, &ipv4(CIP, VIP, 47, 64, &gre));
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::UnknownProto), 1);
    let f = eth(INT_MAC, RS1_MAC, 0x0800, &ipv4(RIP1, DIP, 47, 64, &gre));
    assert_eq!(lab.send(INT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::Local), 1);
    let f = eth(INT_MAC, RS1_MAC, 0x0800, &ipv4(RIP1, CIP, 47, 64, &gre));
    assert_eq!(lab.send(INT, &f).0, Action::Tx(EXT));
    // Broadcast and multicast: IPv4 to a group MAC, or to a group/broadcast IP.
    let f = udp_frame(BCAST, CLIENT_MAC, (CIP, 1), (VIP, 53), b"", true);
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    let f = udp_frame(
        [0x01, 0, 0x5e, 0, 0, 0xfb],
        CLIENT_MAC,
        (CIP, 5353),
        (Ipv4Addr::new(224, 0, 0, 251), 5353),
        b"",
        true,
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::L2Multicast), 2);
    let f = udp_frame(
        EXT_MAC,
        CLIENT_MAC,
        (CIP, 1),
        (Ipv4Addr::new(255, 255, 255, 255), 2),
        b"",
        true,
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::Martian), 1);
    // Sources that are ours: an echo request from the VIP to the VIP (found by fuzzing: it
    // was answered), a SYN from the DIP.
    let f = eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(VIP, VIP, ICMP, 64, &icmp_echo(8, 1, 1, b"land")),
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    let f = tcp_frame(EXT_MAC, CLIENT_MAC, (DIP, 1), (VIP, 80), SYN, b"");
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::Martian), 3);
    // ...but a broadcast ARP request for the VIP is answered.
    let f = eth(
        BCAST,
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, CIP, [0; 6], VIP),
    );
    assert_eq!(lab.send(EXT, &f).0, Action::Tx(EXT));
    // VLAN-tagged (802.1Q and 802.1ad).
    for tpid in [[0x81, 0x00], [0x88, 0xa8]] {
        let mut v = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 80), SYN, b"");
        v.splice(12..12, [tpid[0], tpid[1], 0x00, 0x05]);
        assert_eq!(lab.send(EXT, &v).0, Action::Drop);
    }
    assert_eq!(lab.drops(DropReason::Vlan), 2);
    // Wrong IP version under the IPv4 ethertype.
    let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (VIP, 53), b"", true);
    f[14] = 0x65;
    assert_eq!(lab.send(EXT, &f).0, Action::Drop);
    assert_eq!(lab.drops(DropReason::BadVersion), 1);
    // Frames shorter than an Ethernet header.
    for n in 0..14 {
        assert_eq!(lab.send(EXT, &vec![0u8; n]).0, Action::Drop);
    }
    assert_eq!(lab.drops(DropReason::Truncated), 14);
    // IP options are kept and counted.
    let seg = udp_seg(CIP, 4000, VIP, 53, b"opt", true);
    let mut ip = vec![0x47, 0];
    ip.extend_from_slice(&((28 + seg.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, UDP, 0, 0]);
    ip.extend_from_slice(&CIP.octets());
    ip.extend_from_slice(&VIP.octets());
    ip.extend_from_slice(&[0x07, 7, 4, 0, 0, 0, 0, 1]); // record route (empty) + NOP/EOL
    let c = inet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&seg);
    let (a, out) = lab.send(EXT, &eth(EXT_MAC, CLIENT_MAC, 0x0800, &ip));
    assert_eq!(a, Action::Tx(INT));
    let s = check(&out);
    assert_eq!((s.dport, s.ttl), (5353, 63));
    assert_eq!(&out[34..42], &[0x07, 7, 4, 0, 0, 0, 0, 1]);
    assert_eq!(lab.events(Event::IpOptions), 1);
    lab.assert_accounting();

    // The same counters over the control protocol, by name.
    let Response::Counters(c) = lab.mgr.handle(Request::Counters) else {
        panic!("counters");
    };
    let get = |name: &str| {
        c.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(get("drop.vlan"), 2);
    assert_eq!(get("drop.l2_multicast"), 2);
    assert_eq!(get("ip_options"), 1);
    assert_eq!(get("rx_packets"), lab.dp.stats().rx_packets());
    assert_eq!(get("conntrack.capacity"), lab.dp.conns().capacity() as u64);
    assert_eq!(get("conntrack.entries"), 1);
    assert!(get("frag.capacity") >= 1024);
}

// ---------------------------------------------------------------------------------------------
// IPv6

mod v6 {
    //! Hostile IPv6 on the burst driver: truncation at every length, extension-header chains
    //! that loop or overrun, fragments inside fragments, malformed neighbour discovery, ICMPv6
    //! errors about unknown flows, oversized packets. Each gets its drop reason, and the
    //! counters add up. Frames come from testkit::ipv6 (independent of the dataplane's code).

    use super::{ROOM, RS1_MAC};
    use dataplane::driver::{BurstDriver, ByteFrame, ByteIo, FRAG_HOLD_MS};
    use dataplane::pipeline::{Action, Dataplane};
    use dataplane::service::ServiceManager;
    use dataplane::stats::{DropReason as D, Event as E};
    use std::net::Ipv6Addr;
    use std::sync::Arc;
    use testkit::director::{EXT_MAC, INT_MAC};
    use testkit::ipv6::*;
    use testkit::plan::CLIENT_MAC;
    use testkit::{SYN, TCP, UDP};

    const EXT: u16 = 0;
    const INT: u16 = 1;
    const SERVICES: &str = "-A -t [2001:db8:100::1]:80 -s rr\n\
         -a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
         -A -u [2001:db8:100::1]:53 -s rr\n\
         -a -u [2001:db8:100::1]:53 -r [2001:db8:2::2]:5353 -m";

    struct Lab6 {
        dp: Arc<Dataplane>,
        driver: BurstDriver<ByteFrame>,
        io: ByteIo,
        _mgr: ServiceManager,
        now: u64,
    }

    impl Lab6 {
        /// testkit's two-arm director with IPv6 (int MTU `int_mtu`), TCP 80 and UDP 53 on
        /// VIP6 to RS1, on the burst driver.
        fn new(int_mtu: u16) -> Lab6 {
            let (dp, mgr) = two_arm6(int_mtu, SERVICES);
            let mut lab = Lab6 {
                driver: BurstDriver::new(dp.clone(), 0),
                io: ByteIo::new(ROOM),
                _mgr: mgr,
                dp,
                now: 10_000,
            };
            // The first loop sends the unsolicited advertisements.
            lab.driver.begin(lab.now);
            lab.driver.finish(&mut lab.io);
            lab.io.clear();
            lab
        }

        /// One poll loop with `frame` received on `port`: the action and the frame sent for it.
        fn send(&mut self, port: u16, frame: &[u8]) -> (Action, Vec<u8>) {
            self.driver.begin(self.now);
            let a = self
                .driver
                .rx_frame(&mut self.io, port, ByteFrame::with_room(frame, ROOM));
            self.driver.finish(&mut self.io);
            let out = match a {
                Action::Tx(p) | Action::Reply { port: p, .. } => {
                    let f = self.io.sent_on(p).first().expect("sent");
                    f.bytes().to_vec()
                }
                _ => Vec::new(),
            };
            self.io.clear();
            (a, out)
        }

        /// Sends `frame`, which must be dropped under `reason` and nothing else.
        fn refused(&mut self, port: u16, frame: &[u8], reason: D, what: &str) {
            let (before, all) = (self.drops(reason), self.dp.stats().dropped());
            let (a, _) = self.send(port, frame);
            assert_eq!(a, Action::Drop, "{what}");
            assert_eq!(self.drops(reason), before + 1, "{what}: {reason:?}");
            assert_eq!(self.dp.stats().dropped(), all + 1, "{what}: one drop");
        }

        fn drops(&self, r: D) -> u64 {
            self.dp.stats().drops(r)
        }

        fn events(&self, e: E) -> u64 {
            self.dp.stats().events(e)
        }

        /// rx + generated = tx + drops, nothing held.
        fn assert_accounting(&self) {
            assert_eq!(self.driver.held(), 0, "nothing held");
            let s = self.dp.stats();
            assert_eq!(
                s.rx_packets() + s.generated(),
                s.tx_packets() + s.dropped(),
                "rx + generated = tx + drops"
            );
        }
    }

    fn ext(ip: &[u8]) -> Vec<u8> {
        eth6(EXT_MAC, CLIENT_MAC, ip)
    }

    fn udp(cport: u16) -> Vec<u8> {
        udp_seg6((CIP6, cport), (VIP6, 53), b"query")
    }

    /// An IPv6 packet from the client to the VIP whose payload starts with header `first`.
    fn to_vip(first: u8, body: &[u8]) -> Vec<u8> {
        ext(&ipv6(CIP6, VIP6, first, 64, body))
    }

    #[test]
    fn truncation_at_every_length() {
        let mut lab = Lab6::new(1500);
        // A SYN behind hop-by-hop and destination options, cut at every length as the link
        // cuts it (the payload length still the whole packet's).
        let seg = tcp_seg6((CIP6, 41000), (VIP6, 80), SYN, b"");
        let body = ext_header(DEST_OPTS, 0, &ext_header(TCP, 1, &seg));
        let full = to_vip(HOP_BY_HOP, &body);
        for n in 0..full.len() {
            let reason = if n < 14 + 40 {
                D::Truncated
            } else {
                D::BadTotalLen
            };
            lab.refused(EXT, &full[..n], reason, &format!("cut at {n}"));
        }
        // Cut, with the payload length saying so: inside the chain, the chain overruns the
        // packet; inside the TCP header, the header is short.
        let l4 = 40 + 8 + 16;
        for plen in 1..full.len() - 14 - 40 {
            let mut f = full[..14 + 40 + plen].to_vec();
            f[18..20].copy_from_slice(&(plen as u16).to_be_bytes());
            let k = 40 + plen;
            let reason = match k {
                _ if k < l4 => D::BadExtHeader,
                _ if k < l4 + 13 => D::Truncated,
                _ => D::Malformed, // data offset past the segment
            };
            lab.refused(EXT, &f, reason, &format!("payload length {plen}"));
        }
        // Payload length 0 (a jumbogram) and beyond the frame.
        let mut f = full.clone();
        f[18..20].copy_from_slice(&[0, 0]);
        lab.refused(EXT, &f, D::BadTotalLen, "jumbogram");
        let mut f = full.clone();
        f[18..20].copy_from_slice(&[0xff, 0xff]);
        lab.refused(EXT, &f, D::BadTotalLen, "beyond the frame");
        // The whole frame goes through, walked.
        assert_eq!(lab.send(EXT, &full).0, Action::Tx(INT));
        // Every cut of an NDP solicitation, an ICMPv6 error and a UDP datagram: dropped.
        let ns = neighbour_solicitation(CLIENT_MAC, CIP6, VIP6);
        let q = to_vip(UDP, &udp(5000));
        let err = ext(&ipv6(
            CIP6,
            VIP6,
            ICMPV6,
            64,
            &icmp6(CIP6, VIP6, 1, 4, &[&[0u8; 4][..], &q[14..]].concat()),
        ));
        for f in [ns, q, err] {
            for n in 0..f.len() {
                let all = lab.dp.stats().dropped();
                assert_eq!(lab.send(EXT, &f[..n]).0, Action::Drop, "cut at {n}");
                assert_eq!(lab.dp.stats().dropped(), all + 1);
            }
        }
        lab.assert_accounting();
    }

    #[test]
    fn extension_header_chains_that_loop_overrun_or_are_unknown() {
        let mut lab = Lab6::new(1500);
        let u = udp(5001);
        let opts = |next: u8, rest: &[u8]| ext_header(next, 0, rest);
        let mut routing_left = ext_header(UDP, 2, &u);
        routing_left[3] = 1; // segments left: rvs is no source route's hop
        let routing_ok = {
            let mut r = ext_header(UDP, 2, &u);
            r[2] = 0; // type 0, segments left 0
            r[3] = 0;
            r
        };
        let mut overrun = opts(UDP, &u);
        overrun[1] = 200;
        let cases: Vec<(&str, Vec<u8>, D)> = vec![
            (
                "destination options three times (a loop)",
                to_vip(
                    DEST_OPTS,
                    &opts(DEST_OPTS, &opts(DEST_OPTS, &opts(UDP, &u))),
                ),
                D::BadExtHeader,
            ),
            (
                "hop-by-hop twice",
                to_vip(HOP_BY_HOP, &opts(HOP_BY_HOP, &opts(UDP, &u))),
                D::BadExtHeader,
            ),
            (
                "hop-by-hop not first",
                to_vip(DEST_OPTS, &opts(HOP_BY_HOP, &opts(UDP, &u))),
                D::BadExtHeader,
            ),
            (
                "routing twice",
                to_vip(ROUTING, &ext_header(ROUTING, 2, &routing_ok)),
                D::BadExtHeader,
            ),
            (
                "routing with segments left",
                to_vip(ROUTING, &routing_left),
                D::BadExtHeader,
            ),
            (
                "a header past the packet",
                to_vip(DEST_OPTS, &overrun),
                D::BadExtHeader,
            ),
            (
                "a header cut in its first two bytes",
                to_vip(DEST_OPTS, &[UDP]),
                D::BadExtHeader,
            ),
            (
                "mobility (135)",
                to_vip(135, &opts(UDP, &u)),
                D::UnknownExtHeader,
            ),
            (
                "HIP (139)",
                to_vip(139, &opts(UDP, &u)),
                D::UnknownExtHeader,
            ),
            (
                "shim6 (140)",
                to_vip(140, &opts(UDP, &u)),
                D::UnknownExtHeader,
            ),
            (
                "experimental (253)",
                to_vip(253, &opts(UDP, &u)),
                D::UnknownExtHeader,
            ),
            (
                "unknown after a valid header",
                to_vip(HOP_BY_HOP, &opts(254, &opts(UDP, &u))),
                D::UnknownExtHeader,
            ),
            ("ESP to the VIP", to_vip(50, &[0u8; 24]), D::UnknownProto),
            (
                "no next header to the VIP",
                to_vip(59, &[0u8; 8]),
                D::UnknownProto,
            ),
        ];
        for (what, f, reason) in cases {
            lab.refused(EXT, &f, reason, what);
        }
        // Destination options twice (before routing, and last) and a routing header with no
        // segments left are allowed: NATed.
        let routing_ok2 = {
            let mut r = ext_header(UDP, 2, &udp(5003));
            r[2..4].copy_from_slice(&[0, 0]);
            r
        };
        for (what, f) in [
            (
                "destination options twice",
                to_vip(DEST_OPTS, &opts(DEST_OPTS, &opts(UDP, &udp(5002)))),
            ),
            ("routing, segments left 0", to_vip(ROUTING, &routing_ok2)),
        ] {
            assert_eq!(lab.send(EXT, &f).0, Action::Tx(INT), "{what}");
        }
        lab.assert_accounting();
    }

    #[test]
    fn fragments_inside_fragments_and_other_bad_fragments() {
        let mut lab = Lab6::new(1500);
        let u = udp(5010);
        let frag = |next: u8, off: usize, more: bool, id: u32, rest: &[u8]| {
            to_vip(FRAGMENT, &frag_header(next, off, more, id, rest))
        };
        let nested = frag(FRAGMENT, 0, true, 1, &frag_header(UDP, 0, true, 2, &u));
        lab.refused(EXT, &nested, D::BadFragment, "a fragment inside a fragment");
        // ...also behind a destination options header, and as a later fragment's header.
        let f = to_vip(
            FRAGMENT,
            &frag_header(
                DEST_OPTS,
                0,
                true,
                3,
                &ext_header(FRAGMENT, 0, &frag_header(UDP, 0, true, 4, &u)),
            ),
        );
        lab.refused(EXT, &f, D::BadFragment, "fragment, options, fragment");
        let f = frag(UDP, 0, true, 5, &u[..12]);
        lab.refused(
            EXT,
            &f,
            D::BadFragment,
            "more fragments, length not a multiple of 8",
        );
        let f = frag(UDP, 65528, false, 6, &[0u8; 16]);
        lab.refused(EXT, &f, D::BadFragment, "past 64 KiB of datagram");
        let f = frag(UDP, 8, false, 7, &[]);
        lab.refused(EXT, &f, D::BadFragment, "empty");
        let seg = tcp_seg6((CIP6, 41001), (VIP6, 80), SYN, b"");
        let f = frag(TCP, 0, true, 8, &seg[..16]);
        lab.refused(
            EXT,
            &f,
            D::BadFragment,
            "first fragment shorter than TCP's header",
        );
        let f = frag(TCP, 8, false, 9, &[0u8; 16]);
        lab.refused(EXT, &f, D::BadFragment, "TCP at offset 8 (RFC 1858)");
        let echo = icmp6(CIP6, VIP6, 128, 0, &[0u8; 20]);
        let f = frag(ICMPV6, 0, true, 10, &echo[..24]);
        lab.refused(EXT, &f, D::Fragment, "a fragmented ping to the VIP");
        // An atomic fragment is a whole datagram: NATed.
        let f = frag(UDP, 0, false, 11, &u);
        assert_eq!(lab.send(EXT, &f).0, Action::Tx(INT), "atomic fragment");
        // A later fragment whose first never comes: held, then dropped as frag_no_first.
        let f = frag(UDP, 1024, false, 12, &[0u8; 16]);
        assert_eq!(lab.send(EXT, &f).0, Action::AwaitFirstFragment);
        lab.now += FRAG_HOLD_MS + 1;
        lab.driver.begin(lab.now);
        lab.driver.finish(&mut lab.io);
        lab.io.clear();
        assert_eq!(lab.drops(D::FragNoFirst), 1);
        lab.assert_accounting();
    }

    /// A neighbour solicitation from the client for `target`, its message edited by `edit`
    /// (the checksum recomputed after, unless `keep_sum`), hop limit `hop`.
    fn ns_with(target: Ipv6Addr, hop: u8, edit: impl Fn(&mut Vec<u8>), keep_sum: bool) -> Vec<u8> {
        let group = solicited_node(target);
        let mut body = vec![0; 4];
        body.extend_from_slice(&target.octets());
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&CLIENT_MAC);
        let mut m = icmp6(CIP6, group, 135, 0, &body);
        edit(&mut m);
        if !keep_sum {
            m[2..4].copy_from_slice(&[0, 0]);
            let c = checksum6(CIP6, group, ICMPV6, &m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
        }
        eth6(
            multicast_mac(group),
            CLIENT_MAC,
            &ipv6(CIP6, group, ICMPV6, hop, &m),
        )
    }

    #[test]
    fn malformed_neighbour_discovery() {
        let mut lab = Lab6::new(1500);
        let none = |_: &mut Vec<u8>| {};
        let (a, out) = lab.send(EXT, &ns_with(VIP6, 255, none, false));
        assert!(matches!(a, Action::Reply { port: EXT, len: 86 }), "{a:?}");
        let seen = check6(&out);
        assert_eq!(
            (seen.src, seen.dst, seen.sport, seen.hop_limit),
            (VIP6, CIP6, 136, 255)
        );
        for hop in [0u8, 1, 64, 254] {
            let f = ns_with(VIP6, hop, none, false);
            lab.refused(EXT, &f, D::Malformed, &format!("hop limit {hop}"));
        }
        let f = ns_with(VIP6, 255, |m| m[4] ^= 1, true);
        lab.refused(EXT, &f, D::Malformed, "bad checksum");
        let f = ns_with(VIP6, 255, |m| m[25] = 0, false);
        lab.refused(EXT, &f, D::Malformed, "zero-length option");
        let f = ns_with(VIP6, 255, |m| m[25] = 2, false);
        lab.refused(EXT, &f, D::Malformed, "option past the message");
        let f = ns_with(VIP6, 255, |m| m[1] = 1, false);
        lab.refused(EXT, &f, D::Malformed, "code 1");
        let f = ns_with(VIP6, 255, |m| m.truncate(20), false);
        lab.refused(EXT, &f, D::Malformed, "shorter than its fixed part");
        let group = "ff02::1".parse::<Ipv6Addr>().unwrap();
        let f = ns_with(
            VIP6,
            255,
            |m| m[8..24].copy_from_slice(&group.octets()),
            false,
        );
        lab.refused(EXT, &f, D::Malformed, "multicast target");
        let f = ns_with("2001:db8:100::99".parse().unwrap(), 255, none, false);
        lab.refused(EXT, &f, D::NdpNotOurs, "someone else's address");
        let na = neighbour_advertisement(EXT_MAC, CLIENT_MAC, CIP6, EXT6);
        lab.refused(EXT, &na, D::NdpConsumed, "an advertisement");
        // A solicitation to our unicast MAC, from a real server, for the DIP.
        let mut ns = neighbour_solicitation(RS1_MAC, RIP6_1, DIP6);
        ns[..6].copy_from_slice(&INT_MAC);
        assert!(matches!(
            lab.send(INT, &ns).0,
            Action::Reply { port: INT, .. }
        ));
        assert_eq!(lab.events(E::NdpReplied), 2);
        lab.assert_accounting();
    }

    #[test]
    fn icmpv6_errors_about_unknown_flows() {
        let mut lab = Lab6::new(1500);
        let err = |src: Ipv6Addr, dst: Ipv6Addr, ty: u8, quoted: &[u8]| {
            let body = [&[0u8; 4][..], quoted].concat();
            ipv6(src, dst, ICMPV6, 64, &icmp6(src, dst, ty, 0, &body))
        };
        // What the client would have got from the VIP, had there been a flow.
        let answer = ipv6(
            VIP6,
            CIP6,
            UDP,
            63,
            &udp_seg6((VIP6, 53), (CIP6, 5020), b"answer"),
        );
        for ty in [1u8, 2, 3, 4] {
            let f = ext(&err(CIP6, VIP6, ty, &answer));
            lab.refused(EXT, &f, D::IcmpUnrelated, &format!("type {ty} to the VIP"));
            let f = ext(&err(CIP6, EXT6, ty, &answer));
            lab.refused(
                EXT,
                &f,
                D::IcmpUnrelated,
                &format!("type {ty} to our address"),
            );
        }
        // Quotes that are cut, a later fragment, or not TCP/UDP: unrelated too.
        for (what, q) in [
            ("header only", answer[..40].to_vec()),
            ("7 bytes of UDP", answer[..47].to_vec()),
            ("empty", Vec::new()),
            (
                "a later fragment",
                ipv6(
                    VIP6,
                    CIP6,
                    FRAGMENT,
                    63,
                    &frag_header(UDP, 8, false, 1, &[0u8; 16]),
                ),
            ),
            (
                "ICMPv6",
                ipv6(VIP6, CIP6, ICMPV6, 63, &icmp6(VIP6, CIP6, 129, 0, &[0; 8])),
            ),
            (
                "not IPv6",
                testkit::ipv4(testkit::plan::VIP, testkit::plan::CIP, UDP, 63, &[0; 8]),
            ),
        ] {
            let f = ext(&err(CIP6, VIP6, 1, &q));
            lab.refused(EXT, &f, D::IcmpUnrelated, what);
        }
        // Between other hosts: routed, untouched but the hop limit.
        let far: Ipv6Addr = "2001:db8:2::99".parse().unwrap();
        let f = ext(&err(CIP6, far, 1, &answer));
        let (a, out) = lab.send(EXT, &f);
        assert!(matches!(a, Action::Tx(INT) | Action::Hold { .. }), "{a:?}");
        if a == Action::Tx(INT) {
            assert_eq!(&out[14 + 8..], &f[14 + 8..]);
        }
        // An ICMPv6 error that expires in transit is not answered with another.
        let mut f = ext(&err(CIP6, RIP6_1, 1, &answer));
        f[14 + 7] = 1;
        let sent = lab.events(E::IcmpTimeExceeded);
        lab.refused(EXT, &f, D::TtlExpired, "an error whose hop limit runs out");
        assert_eq!(
            lab.events(E::IcmpTimeExceeded),
            sent,
            "no error about an error"
        );
        lab.driver.begin(lab.now + 2_000);
        lab.driver.finish(&mut lab.io);
        lab.io.clear();
        let held_dropped = lab.drops(D::NeighUnresolved);
        let s = lab.dp.stats();
        assert_eq!(
            s.rx_packets() + s.generated(),
            s.tx_packets() + s.dropped(),
            "accounting ({held_dropped} unresolved)"
        );
    }

    #[test]
    fn oversized_packets_get_packet_too_big_within_1280_bytes() {
        let mut lab = Lab6::new(1400);
        // 1448 bytes to the VIP, towards the 1400-byte internal arm.
        let f = to_vip(UDP, &udp_seg6((CIP6, 5030), (VIP6, 53), &[0x42; 1400]));
        let sent = lab.events(E::IcmpFragNeeded);
        let (a, out) = lab.send(EXT, &f);
        let Action::Reply { port: EXT, len } = a else {
            panic!("{a:?}");
        };
        assert_eq!(len, 14 + 1280, "quoted up to the minimum MTU");
        let seen = check6(&out);
        assert_eq!(
            (seen.src, seen.dst, seen.proto, seen.hop_limit),
            (VIP6, CIP6, 58, 64)
        );
        assert_eq!(&seen.upper[..2], &[2, 0], "packet too big");
        assert_eq!(&seen.upper[4..8], &1400u32.to_be_bytes(), "the egress MTU");
        assert_eq!(
            &seen.upper[8..],
            &f[14..14 + 1280 - 48],
            "quotes the packet"
        );
        assert_eq!(lab.drops(D::MtuExceeded), 1);
        assert_eq!(lab.events(E::IcmpFragNeeded), sent + 1);
        // Exactly the MTU passes.
        let f = to_vip(UDP, &udp_seg6((CIP6, 5031), (VIP6, 53), &[0x42; 1352]));
        assert_eq!(lab.send(EXT, &f).0, Action::Tx(INT));
        // Oversized from a link-local source: dropped, never answered (RFC 4443 2.4(e)).
        let ll: Ipv6Addr = "fe80::10".parse().unwrap();
        let f = ext(&ipv6(
            ll,
            VIP6,
            UDP,
            64,
            &udp_seg6((ll, 1), (VIP6, 53), &[0; 1400]),
        ));
        let all = lab.dp.stats().dropped();
        assert_eq!(lab.send(EXT, &f).0, Action::Drop);
        assert_eq!(lab.dp.stats().dropped(), all + 1);
        assert_eq!(lab.events(E::IcmpFragNeeded), sent + 1, "not answered");
        // A frame larger than any buffer's data: the largest the NIC hands over, walked.
        let f = to_vip(UDP, &udp_seg6((CIP6, 5032), (VIP6, 53), &[0; 1452]));
        assert_eq!(f.len(), 1514);
        assert!(matches!(
            lab.send(EXT, &f).0,
            Action::Reply { port: EXT, .. }
        ));
        lab.assert_accounting();
    }
}
