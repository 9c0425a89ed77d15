//! The fuzzing oracle for the rvs packet path, shared by the cargo-fuzz targets (fuzz/) and by
//! the corpus replay test (dataplane/tests/fuzz_corpus.rs), which includes this file by path.
//!
//! An input is a sequence of operations, each a frame fed to one pipeline worker that keeps its
//! state (connections, fragment decisions, neighbours) from one operation to the next:
//!
//! ```text
//! op := ctrl:u8 len:u16be frame[len]      (len is cut to what is left)
//! ctrl bit 0    ingress port (0 = ext, 1 = int)
//! ctrl bit 1    fix up the IPv4, TCP/UDP and ICMP checksums (IPv6: TCP/UDP/ICMPv6 over the
//!               pseudo-header, after the extension headers; not for fragments) first
//! ctrl bit 2    set the destination MAC to the ingress port's
//! ctrl bits 3-7 advance the clock by that many times 50 ms first
//! ```
//!
//! Each frame goes through the burst driver (`dataplane::driver`, as rvsd's worker runs it), one
//! poll loop per operation. The director serves both families (IPv4 and IPv6 VIPs, real servers
//! and port addresses); one oracle checks both, family by family where they differ. For every
//! frame the oracle checks what the pipeline did (see [`Harness::run_op`]): it never panics;
//! every frame it sends has a valid IPv4 header checksum (recomputed here from scratch), a valid
//! TCP/UDP or ICMP(v6) checksum wherever the input's was valid, a TTL or hop limit one lower, and
//! an address/port rewrite that the connection table (IPv4 or IPv6) or, for fragments, the
//! fragment table (IPv6: the decisions its first fragments were seen to get) explains; every ICMP
//! error it builds is well formed and quotes the input (IPv4: within 576 bytes; ICMPv6: within
//! 1280); every neighbour advertisement answers a solicitation for one of our addresses. A later
//! fragment held for its first fragment is checked the same way when it goes out. At the end the
//! counters add up: rx + generated = tx + drops + held (both hold queues).
//!
//! The checksum used here (testkit's reference checksum) is independent of the crate's.

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use control::cli::{parse_args, Change, Command};
use control::config::{Cidr, PortRole};
use control::model::Timeouts;
use control::proto::Response;
use dataplane::conntrack::{Dir, Tuple};
use dataplane::driver::{BurstDriver, ByteFrame, ByteIo};
use dataplane::frag::{FragKey, FragVerdict};
use dataplane::pipeline::{Action, Dataplane, DataplaneConfig, PortSetup};
use dataplane::service::ServiceManager;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const INT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
pub const RS1_MAC: [u8; 6] = [2, 0, 0, 0, 3, 2];
pub const RS2_MAC: [u8; 6] = [2, 0, 0, 0, 3, 3];
pub const EXT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
pub const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const DIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const RIP1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const RIP2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
/// The IPv6 half of the plan (testkit::ipv6's): ext 2001:db8:100::2/64 with VIP6
/// 2001:db8:100::1, int 2001:db8:2::1/64 with the real servers ::2 and ::3.
pub use testkit::ipv6::{CIP6, DIP6, EXT6, RIP6_1, RIP6_2, VIP6};
/// The internal port's MTU: below 1500, so that DF packets from clients can exceed it.
pub const INT_MTU: u16 = 1400;
/// Operations per input at most.
pub const MAX_OPS: usize = 24;
/// Buffer of a frame handed to the driver: as a DPDK mbuf's data room.
pub const ROOM: usize = 2048;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// The reference checksum (RFC 1071, the plain way): testkit's, independent of the crate's.
pub use testkit::inet_checksum as csum;
/// The IPv6 pseudo-header checksum (RFC 8200 8.1): testkit's, independent of the crate's.
use testkit::ipv6::checksum6;

fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, seg: &[u8]) -> u16 {
    let mut d = Vec::with_capacity(12 + seg.len());
    d.extend_from_slice(src);
    d.extend_from_slice(dst);
    d.push(0);
    d.push(proto);
    d.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    d.extend_from_slice(seg);
    csum(&d)
}

fn addr6(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[..16]);
    Ipv6Addr::from(o)
}

/// The upper-layer checksum (TCP, UDP, ICMPv6) of `seg` with its IPv6 pseudo-header: 0 when
/// it verifies.
fn sum6(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) -> u16 {
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum6(s, d, proto, seg),
        _ => 1,
    }
}

/// An IPv6 fragment header: offset in bytes, M flag, identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frag6 {
    offset: usize,
    more: bool,
    id: u32,
}

/// The oracle's own walk of the IPv6 packet `p` (padding excluded): the offset and protocol of
/// the upper-layer header (of the fragment data for a later fragment) and the fragment header,
/// if the packet is a fragment (an atomic fragment is not). Steps over hop-by-hop, routing and
/// destination options headers and a fragment header, eight headers at most; `None` if a
/// header runs past the packet. Independent of the crate's walk, and less strict than it: only
/// inputs the pipeline accepted and frames it sent are looked at this way.
fn walk6(p: &[u8]) -> Option<(usize, u8, Option<Frag6>)> {
    let mut next = *p.get(6)?;
    let mut off = 40;
    let mut frag = None;
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let h = p.get(off..off + 2)?;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
            }
            44 => {
                let h = p.get(off..off + 8)?;
                let w = u16::from_be_bytes([h[2], h[3]]);
                let f = Frag6 {
                    offset: usize::from(w >> 3) * 8,
                    more: w & 1 != 0,
                    id: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                };
                next = h[0];
                off += 8;
                if f.offset != 0 || f.more {
                    frag = Some(f);
                    if f.offset != 0 {
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    (off <= p.len()).then_some((off, next, frag))
}

/// A parsed view of an Ethernet/IPv4 or Ethernet/IPv6 frame (only what the oracle needs), or
/// None.
#[derive(Debug, Clone)]
struct Ip {
    v6: bool,
    /// IPv4: the header length; IPv6: the offset of the upper-layer header, after the
    /// extension headers (of the fragment data, for a later fragment).
    ihl: usize,
    total: usize,
    /// TTL or hop limit.
    ttl: u8,
    /// The upper-layer protocol (IPv6: after the extension headers).
    proto: u8,
    id: u32,
    /// IPv4: the flags and fragment offset word; IPv6: offset | M of the fragment header.
    frag: u32,
    /// Fragment offset in bytes.
    frag_off: usize,
    fragment: bool,
    src: IpAddr,
    dst: IpAddr,
    /// The IP packet (padding excluded).
    pkt: Vec<u8>,
}

impl Ip {
    fn parse(frame: &[u8]) -> Option<Ip> {
        match frame.get(12..14)? {
            [8, 0] => Ip::parse4(frame),
            [0x86, 0xdd] => Ip::parse6(frame),
            _ => None,
        }
    }

    fn parse4(frame: &[u8]) -> Option<Ip> {
        if frame.len() < 14 + 20 {
            return None;
        }
        let p = &frame[14..];
        if p[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(p[0] & 15) * 4;
        let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
        if ihl < 20 || total < ihl || total > p.len() {
            return None;
        }
        let frag = u16::from_be_bytes([p[6], p[7]]);
        Some(Ip {
            v6: false,
            ihl,
            total,
            ttl: p[8],
            proto: p[9],
            id: u16::from_be_bytes([p[4], p[5]]).into(),
            frag: frag.into(),
            frag_off: usize::from(frag & 0x1fff) * 8,
            fragment: frag & 0x3fff != 0,
            src: Ipv4Addr::new(p[12], p[13], p[14], p[15]).into(),
            dst: Ipv4Addr::new(p[16], p[17], p[18], p[19]).into(),
            pkt: p[..total].to_vec(),
        })
    }

    fn parse6(frame: &[u8]) -> Option<Ip> {
        let p = frame.get(14..)?;
        if p.len() < 40 || p[0] >> 4 != 6 {
            return None;
        }
        let total = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
        if total > p.len() {
            return None;
        }
        let pkt = &p[..total];
        let (ihl, proto, frag) = walk6(pkt)?;
        Some(Ip {
            v6: true,
            ihl,
            total,
            ttl: p[7],
            proto,
            id: frag.map_or(0, |f| f.id),
            frag: frag.map_or(0, |f| (f.offset as u32) << 1 | u32::from(f.more)),
            frag_off: frag.map_or(0, |f| f.offset),
            fragment: frag.is_some(),
            src: addr6(&p[8..24]).into(),
            dst: addr6(&p[24..40]).into(),
            pkt: pkt.to_vec(),
        })
    }

    fn header_ok(&self) -> bool {
        // IPv6 has no header checksum.
        self.v6 || csum(&self.pkt[..self.ihl]) == 0
    }

    fn payload(&self) -> &[u8] {
        &self.pkt[self.ihl..self.total]
    }

    fn offset(&self) -> usize {
        self.frag_off
    }

    fn is_fragment(&self) -> bool {
        self.fragment
    }

    fn icmp_proto(&self) -> u8 {
        if self.v6 {
            ICMPV6
        } else {
            ICMP
        }
    }

    fn is_icmp(&self) -> bool {
        self.proto == self.icmp_proto()
    }

    /// Ports, when the payload starts with a TCP/UDP header (whole packet or first fragment).
    fn ports(&self) -> Option<(u16, u16)> {
        if (self.proto != TCP && self.proto != UDP) || self.offset() != 0 {
            return None;
        }
        let s = self.payload();
        (s.len() >= 4).then(|| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u16::from_be_bytes([s[2], s[3]]),
            )
        })
    }

    /// Whether the TCP/UDP checksum over the IP payload verifies (IPv4 UDP 0: no checksum,
    /// fine; IPv6 UDP 0: not checkable, and refused by the pipeline).
    fn l4_ok(&self) -> Option<bool> {
        let seg = self.payload();
        match self.proto {
            TCP if seg.len() >= 20 => {}
            UDP if seg.len() >= 8 => {}
            _ => return None,
        }
        if self.proto == UDP && seg[6] == 0 && seg[7] == 0 {
            return (!self.v6).then_some(true);
        }
        if self.v6 {
            return Some(sum6(self.src, self.dst, self.proto, seg) == 0);
        }
        Some(pseudo_sum(&self.pkt[12..16], &self.pkt[16..20], self.proto, seg) == 0)
    }

    fn icmp_ok(&self) -> bool {
        let m = self.payload();
        if self.v6 {
            return m.len() >= 8 && sum6(self.src, self.dst, ICMPV6, m) == 0;
        }
        m.len() >= 8 && csum(m) == 0
    }

    fn is_vip(a: IpAddr) -> bool {
        a == IpAddr::V4(VIP) || a == IpAddr::V6(VIP6)
    }
}

/// Recomputes the checksums of an Ethernet/IPv4 or Ethernet/IPv6 frame in place, where its
/// lengths allow.
pub fn fix_checksums(frame: &mut [u8]) {
    if frame.len() >= 54 && frame[12..14] == [0x86, 0xdd] && frame[14] >> 4 == 6 {
        fix_checksums6(frame);
        return;
    }
    if frame.len() < 34 || frame[12..14] != [8, 0] || frame[14] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(frame[14] & 15) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    if ihl < 20 || 14 + ihl > frame.len() {
        return;
    }
    frame[24] = 0;
    frame[25] = 0;
    let c = csum(&frame[14..14 + ihl]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    if total < ihl || 14 + total > frame.len() {
        return;
    }
    let frag = u16::from_be_bytes([frame[20], frame[21]]);
    if frag & 0x3fff != 0 {
        return;
    }
    let proto = frame[23];
    let (src, dst) = (
        [frame[26], frame[27], frame[28], frame[29]],
        [frame[30], frame[31], frame[32], frame[33]],
    );
    let seg = &mut frame[14 + ihl..14 + total];
    match proto {
        TCP if seg.len() >= 20 => {
            seg[16] = 0;
            seg[17] = 0;
            let c = pseudo_sum(&src, &dst, TCP, seg);
            seg[16..18].copy_from_slice(&c.to_be_bytes());
        }
        UDP if seg.len() >= 8 => {
            seg[6] = 0;
            seg[7] = 0;
            let c = pseudo_sum(&src, &dst, UDP, seg);
            let c = if c == 0 { 0xffff } else { c };
            seg[6..8].copy_from_slice(&c.to_be_bytes());
        }
        ICMP if seg.len() >= 8 => {
            seg[2] = 0;
            seg[3] = 0;
            let c = csum(seg);
            seg[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// The IPv6 half of [`fix_checksums`]: the TCP, UDP or ICMPv6 checksum over the IPv6
/// pseudo-header and the upper-layer bytes after the extension headers. Not for fragments: a
/// first fragment's checksum covers the whole datagram, a later one has none.
fn fix_checksums6(frame: &mut [u8]) {
    let total = 40 + usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    if 14 + total > frame.len() {
        return;
    }
    let Some((off, proto, None)) = walk6(&frame[14..14 + total]) else {
        return;
    };
    let (src, dst) = (addr6(&frame[22..38]), addr6(&frame[38..54]));
    let seg = &mut frame[14 + off..14 + total];
    let at = match proto {
        TCP if seg.len() >= 20 => 16,
        UDP if seg.len() >= 8 => 6,
        ICMPV6 if seg.len() >= 4 => 2,
        _ => return,
    };
    seg[at] = 0;
    seg[at + 1] = 0;
    let c = checksum6(src, dst, proto, seg);
    let c = if c == 0 && proto == UDP { 0xffff } else { c };
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Runs `f` on this process's harness: one director per process, reused input after input
/// with the clock moved past every timeout in between (a fresh one costs milliseconds), made
/// anew when the clock runs out of room. A crash that needs an earlier input's state shows in
/// the oracle's message; fuzz/corpus replays run each input on a fresh director.
pub fn with_process_harness(f: impl FnOnce(&mut Harness)) {
    static HARNESS: std::sync::Mutex<Option<Harness>> = std::sync::Mutex::new(None);
    let mut guard = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = match guard.as_mut() {
        Some(h) => !h.next_input(),
        None => true,
    };
    if fresh {
        *guard = Some(Harness::new());
    }
    if let Some(h) = guard.as_mut() {
        f(h);
    }
}

/// One director and one worker, as the fuzz targets drive them.
pub struct Harness {
    pub dp: Arc<Dataplane>,
    pub driver: BurstDriver<ByteFrame>,
    io: ByteIo,
    _mgr: ServiceManager,
    pub now: u64,
    /// Counter totals when the current input started: (rx + generated, tx + drops + held).
    base: (u64, u64),
    /// The inputs of this input's later fragments held for their first fragment: checked as
    /// forwarded frames when they come out.
    awaiting: Vec<Vec<u8>>,
    /// The decisions IPv6 first fragments of this input got, as seen going out (the IPv6
    /// fragment table is not public): a later fragment's rewrite must be one of its datagram's.
    frags6: RefCell<Vec<(FragKey<Ipv6Addr>, FragVerdict<Ipv6Addr>)>>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// ext 198.51.100.1/24 and 2001:db8:100::2/64 (VIPs 198.51.100.100, 2001:db8:100::1), int
    /// 192.0.2.1/24 and 2001:db8:2::1/64 with MTU 1400; TCP 80 and UDP 53 on each VIP, rr over
    /// RS1 (80 / 5353) and RS2 (8080 / 53) of its family; the client and both real servers
    /// known as neighbours in both families.
    pub fn new() -> Harness {
        let ports = vec![
            PortSetup {
                name: "ext".into(),
                mac: EXT_MAC,
                role: PortRole::External,
                addrs: vec![Cidr::parse("198.51.100.1/24").unwrap()],
                gateway: None,
                addrs6: vec![(EXT6, 64)],
                gateway6: None,
                mtu: 1500,
            },
            PortSetup {
                name: "int".into(),
                mac: INT_MAC,
                role: PortRole::Internal,
                addrs: vec![Cidr::parse("192.0.2.1/24").unwrap()],
                gateway: None,
                addrs6: vec![(DIP6, 64)],
                gateway6: None,
                mtu: INT_MTU,
            },
        ];
        let dp = Dataplane::new(DataplaneConfig {
            ports,
            conn_capacity: 256,
            timeouts: Timeouts::default(),
            workers: 1,
        });
        let mut mgr = ServiceManager::new(dp.clone());
        for line in [
            "-A -t 198.51.100.100:80 -s rr",
            "-a -t 198.51.100.100:80 -r 192.0.2.2:80 -m",
            "-a -t 198.51.100.100:80 -r 192.0.2.3:8080 -m",
            "-A -u 198.51.100.100:53 -s rr",
            "-a -u 198.51.100.100:53 -r 192.0.2.2:5353 -m",
            "-a -u 198.51.100.100:53 -r 192.0.2.3:53 -m",
            "-A -t [2001:db8:100::1]:80 -s rr",
            "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m",
            "-a -t [2001:db8:100::1]:80 -r [2001:db8:2::3]:8080 -m",
            "-A -u [2001:db8:100::1]:53 -s rr",
            "-a -u [2001:db8:100::1]:53 -r [2001:db8:2::2]:5353 -m",
            "-a -u [2001:db8:100::1]:53 -r [2001:db8:2::3]:53 -m",
        ] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let Ok(inv) = parse_args(&args) else {
                panic!("setup: {line}");
            };
            let Command::Change(Change::Apply(req)) = inv.command else {
                panic!("setup: {line}");
            };
            assert_eq!(mgr.handle(req), Response::Ok, "setup: {line}");
        }
        for (port, ip, mac) in [(0, CIP, CLIENT_MAC), (1, RIP1, RS1_MAC), (1, RIP2, RS2_MAC)] {
            dp.neigh().learn(port, ip, mac);
        }
        for (port, ip, mac) in [
            (0, CIP6, CLIENT_MAC),
            (1, RIP6_1, RS1_MAC),
            (1, RIP6_2, RS2_MAC),
        ] {
            dp.neigh6().learn(port, ip, mac);
        }
        Harness {
            driver: BurstDriver::new(dp.clone(), 0),
            io: ByteIo::new(ROOM),
            _mgr: mgr,
            dp,
            now: 1_000_000,
            base: (0, 0),
            awaiting: Vec::new(),
            frags6: RefCell::new(Vec::new()),
        }
    }

    /// For a harness that runs input after input (the fuzz targets keep one per process, as a
    /// fresh director costs milliseconds): moves the clock past every timeout, so that no
    /// connection, fragment decision or rate-limit state of an earlier input is alive. True
    /// while the clock has room for that (the pipeline's clock stays below 2^40 ms); make a
    /// new harness when it returns false.
    pub fn next_input(&mut self) -> bool {
        // Longer than any connection timeout (TCP established: 900 s) and the fragment timeout.
        self.now += 1_000_000;
        self.now < 1 << 39
    }

    /// Runs every operation of `data` and checks the counters at the end.
    pub fn run(&mut self, data: &[u8]) {
        self.base = self.totals();
        self.awaiting.clear();
        self.frags6.borrow_mut().clear();
        let mut rest = data;
        let mut ops = 0;
        while rest.len() >= 3 && ops < MAX_OPS {
            let ctrl = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            let len = len.min(rest.len() - 3).min(ROOM);
            let frame = &rest[3..3 + len];
            rest = &rest[3 + len..];
            self.run_op(ctrl, frame);
            ops += 1;
        }
        self.check_accounting();
    }

    /// Feeds one frame and checks what came out.
    pub fn run_op(&mut self, ctrl: u8, frame: &[u8]) {
        let in_port = u16::from(ctrl & 1);
        self.now += u64::from(ctrl >> 3) * 50;
        let mut input = frame.to_vec();
        if ctrl & 4 != 0 && input.len() >= 6 {
            input[..6].copy_from_slice(if in_port == 0 { &EXT_MAC } else { &INT_MAC });
        }
        if ctrl & 2 != 0 {
            fix_checksums(&mut input);
        }
        let len = input.len();
        let mut buf = input.clone();
        buf.resize(ROOM.max(len), 0xee);
        let room = buf.len();
        self.driver.begin(self.now);
        let held = self.driver.held();
        let held_frags = self.driver.held_fragments();
        let action = self
            .driver
            .rx_frame(&mut self.io, in_port, ByteFrame::new(buf, len));
        if let Action::Hold { port, .. } = action {
            assert!(port < 2, "hold port {port}");
            // The frame is the newest in the hold queue, unless the queue was full.
            if self.driver.held() > held {
                let frame = self.driver.held_frames().last().unwrap();
                self.check_forwarded(&input, frame.bytes(), true);
            }
        }
        if action == Action::AwaitFirstFragment {
            let a = Ip::parse(&input).expect("only IP waits for its first fragment");
            assert!(a.offset() != 0, "only a later fragment waits for its first");
            if self.driver.held_fragments() > held_frags {
                self.awaiting.push(input.clone());
            }
        }
        self.driver.finish(&mut self.io);
        // Nothing else is queued on a port before the frame in the same loop: its first frame
        // sent is this one (held frames released and ARP requests follow).
        let sent = |port: u16| {
            let f = self.io.sent_on(port).first();
            f.expect("the frame was sent").bytes()
        };
        match action {
            Action::Drop | Action::Hold { .. } | Action::AwaitFirstFragment => {}
            Action::ToKernel { port } => {
                panic!("no port has a kernel twin, yet port {port} sent up")
            }
            Action::Tx(port) => {
                assert!(port < 2, "tx port {port}");
                self.check_forwarded(&input, sent(port), false);
            }
            Action::Reply { port, len: n } => {
                assert_eq!(
                    port, in_port,
                    "ICMP errors go back where the packet came from"
                );
                assert!(n <= room, "reply length {n} within the buffer");
                let out = sent(port);
                assert_eq!(out.len(), n);
                check_reply(&input, out);
            }
        }
        // After the frame's own check: an IPv6 first fragment's decision is known from it.
        self.check_released(action);
        self.io.clear();
    }

    /// Held fragments that went out in this poll loop (after the frame of the operation,
    /// `action`): each rewritten as its first fragment was.
    fn check_released(&mut self, action: Action) {
        for port in 0..2u16 {
            let own = matches!(action, Action::Tx(p) | Action::Reply { port: p, .. } if p == port);
            for out in self.io.sent_on(port).iter().skip(usize::from(own)) {
                let Some(b) = Ip::parse(out.bytes()) else {
                    continue;
                };
                if b.offset() == 0 {
                    continue;
                }
                // The held fragment this one was: same datagram fields and payload, and the
                // same addresses if one waits with them (routed as it came: two inputs may
                // differ in an address alone), else one its first fragment's decision turns
                // into this one (two inputs may differ in the address that was NATed), else
                // one address kept (then the check below fails: NATed as no decision says).
                let same = |pair: Pairing| {
                    self.awaiting.iter().position(|input| {
                        Ip::parse(input).is_some_and(|a| {
                            (a.id, a.proto, a.frag) == (b.id, b.proto, b.frag)
                                && a.payload() == b.payload()
                                && match pair {
                                    Pairing::Routed => a.src == b.src && a.dst == b.dst,
                                    Pairing::AsDecided => self.decided(&a, &b),
                                    Pairing::OneAddressKept => a.src == b.src || a.dst == b.dst,
                                }
                        })
                    })
                };
                let found = same(Pairing::Routed)
                    .or_else(|| same(Pairing::AsDecided))
                    .or_else(|| same(Pairing::OneAddressKept));
                if let Some(i) = found {
                    let input = self.awaiting.swap_remove(i);
                    self.check_forwarded(&input, out.bytes(), false);
                }
            }
        }
    }

    /// A frame sent on (Tx) or held for ARP (IPv6: for neighbour discovery): well formed,
    /// rewritten as the tables say.
    fn check_forwarded(&self, input: &[u8], out: &[u8], held: bool) {
        assert_eq!(out.len(), input.len());
        if input.len() >= 14 && input[12..14] == [8, 6] {
            return; // an ARP reply
        }
        let (Some(a), Some(b)) = (Ip::parse(input), Ip::parse(out)) else {
            panic!("a forwarded frame is IP in and out");
        };
        assert_eq!(a.v6, b.v6, "same family in and out");
        assert!(b.header_ok(), "IP header checksum of the output verifies");
        assert_eq!(a.total, b.total, "total length unchanged");
        if !held {
            let mac = out[6..12] == EXT_MAC[..] || out[6..12] == INT_MAC[..];
            assert!(mac, "source MAC is one of ours");
        }
        // Echo replies: addresses swapped, from us.
        if a.is_icmp() && b.src == a.dst && b.dst == a.src && a.src != a.dst {
            assert!(b.icmp_ok(), "echo reply checksum");
            if a.v6 {
                assert_eq!(&b.payload()[..2], &[129, 0], "an ICMPv6 echo reply");
                assert_eq!(&a.payload()[..2], &[128, 0], "to an echo request");
                assert_eq!(&b.payload()[4..], &a.payload()[4..], "id, seq, data kept");
            }
            return;
        }
        assert_eq!(b.ttl, a.ttl.wrapping_sub(1), "TTL decremented once");
        assert!(!Ip::is_vip(b.dst), "nothing leaves towards a VIP");
        if a.v6 && a.is_fragment() && a.offset() == 0 {
            // Recorded as the pipeline records it (after the route and MTU checks).
            let key = frag_key6(&a);
            let v = match (a.src == b.src, a.dst == b.dst, b.src, b.dst) {
                (true, true, _, _) => FragVerdict::Route,
                (true, false, _, IpAddr::V6(d)) => FragVerdict::Dnat { addr: d, slot: 0 },
                (false, true, IpAddr::V6(s), _) => FragVerdict::Snat { addr: s, slot: 0 },
                _ => panic!("a first fragment rewritten on both sides: {a:?} -> {b:?}"),
            };
            self.frags6.borrow_mut().push((key, v));
        }
        if a.offset() != 0 {
            self.check_later_fragment(&a, &b);
            return;
        }
        match (a.ports(), b.ports()) {
            (Some((asp, adp)), Some((bsp, bdp))) => {
                self.check_nat(&a, &b, (asp, adp), (bsp, bdp));
                if !a.is_fragment() {
                    if a.l4_ok() == Some(true) {
                        assert_eq!(b.l4_ok(), Some(true), "L4 checksum still verifies");
                    }
                } else {
                    // The first fragment's decision is recorded for the others.
                    if let (IpAddr::V4(src), IpAddr::V4(dst)) = (a.src, a.dst) {
                        let key = FragKey {
                            src,
                            dst,
                            proto: a.proto,
                            id: a.id,
                        };
                        let v = self.dp.frags().lookup(&key, self.now);
                        assert!(v.is_some(), "first fragment recorded");
                    }
                    self.check_later_fragment(&a, &b);
                }
            }
            _ => {
                if a.is_icmp() {
                    if a.icmp_ok() && (!a.v6 || a.src == b.src && a.dst == b.dst) {
                        assert!(b.icmp_ok(), "ICMP checksum still verifies");
                    }
                    if (a.src, a.dst) != (b.src, b.dst) {
                        check_icmp_nat(&a, &b);
                    } else if a.v6 {
                        assert_eq!(a.pkt[8..], b.pkt[8..], "routed ICMPv6 unchanged");
                    }
                } else {
                    assert_eq!((a.src, a.dst), (b.src, b.dst), "other protocols unchanged");
                    assert_eq!(a.payload(), b.payload());
                }
            }
        }
    }

    /// The connection `t` finds in the table of its family, as addresses of either family.
    fn lookup(&self, proto: u8, src: (IpAddr, u16), dst: (IpAddr, u16)) -> Option<HitView> {
        fn view<A: Into<IpAddr>>(h: dataplane::conntrack::Hit<A>) -> HitView {
            HitView {
                dir: h.dir,
                client: (h.client.0.into(), h.client.1),
                virt: (h.virt.0.into(), h.virt.1),
                real: (h.real.0.into(), h.real.1),
            }
        }
        match (src.0, dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let t = Tuple {
                    proto,
                    src: s,
                    sport: src.1,
                    dst: d,
                    dport: dst.1,
                };
                self.dp.conns().lookup(&t, self.now).map(view)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let t = Tuple {
                    proto,
                    src: s,
                    sport: src.1,
                    dst: d,
                    dport: dst.1,
                };
                self.dp.conns6().lookup(&t, self.now).map(view)
            }
            _ => None,
        }
    }

    /// TCP/UDP: unchanged, or a DNAT/SNAT that the connection table holds.
    fn check_nat(&self, a: &Ip, b: &Ip, ap: (u16, u16), bp: (u16, u16)) {
        if (a.src, ap.0, a.dst, ap.1) == (b.src, bp.0, b.dst, bp.1) {
            assert!(
                !Ip::is_vip(a.dst),
                "traffic to the VIP is never routed unchanged"
            );
            return;
        }
        let hit = self.lookup(a.proto, (a.src, ap.0), (a.dst, ap.1));
        let Some(hit) = hit else {
            panic!("rewritten {a:?} -> {b:?} without a connection");
        };
        if (a.dst, ap.1) != (b.dst, bp.1) {
            assert_eq!((a.src, ap.0), (b.src, bp.0), "DNAT keeps the source");
            assert_eq!(hit.dir, Dir::Inbound);
            assert_eq!(hit.virt, (a.dst, ap.1));
            assert_eq!(hit.real, (b.dst, bp.1), "to the connection's real server");
            assert_eq!(hit.client, (a.src, ap.0));
        } else {
            assert_eq!(hit.dir, Dir::Reply);
            assert_eq!(hit.real, (a.src, ap.0));
            assert_eq!(
                hit.virt,
                (b.src, bp.0),
                "as the connection's virtual service"
            );
            assert_eq!(hit.client, (a.dst, ap.1));
        }
    }

    /// A fragment's address rewrite is the one its first fragment got.
    fn check_later_fragment(&self, a: &Ip, b: &Ip) {
        if a.offset() != 0 {
            assert_eq!(a.payload(), b.payload(), "fragment payload untouched");
            if a.v6 {
                assert_eq!(a.pkt[40..], b.pkt[40..], "extension headers untouched");
            }
        }
        if (a.src, a.dst) == (b.src, b.dst) {
            return;
        }
        assert!(
            self.decided(a, b),
            "fragment rewritten {a:?} -> {b:?}, not as its first fragment: {:?}",
            self.verdicts(a)
        );
    }

    /// Whether a decision recorded for fragment `a`'s datagram rewrites its addresses into
    /// `b`'s.
    fn decided(&self, a: &Ip, b: &Ip) -> bool {
        self.verdicts(a).iter().any(|v| match *v {
            FragVerdict::Dnat { addr, .. } => (b.src, b.dst) == (a.src, addr),
            FragVerdict::Snat { addr, .. } => (b.src, b.dst) == (addr, a.dst),
            FragVerdict::Route => false,
        })
    }

    /// The decisions recorded for fragment `a`'s datagram: IPv4's in the dataplane's table,
    /// IPv6's as this oracle saw its first fragments leave.
    fn verdicts(&self, a: &Ip) -> Vec<FragVerdict<IpAddr>> {
        match (a.src, a.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let key = FragKey {
                    src,
                    dst,
                    proto: a.proto,
                    id: a.id,
                };
                self.dp
                    .frags()
                    .lookup(&key, self.now)
                    .map(widen)
                    .into_iter()
                    .collect()
            }
            _ => {
                let key = frag_key6(a);
                let seen = self.frags6.borrow();
                seen.iter()
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| widen(*v))
                    .collect()
            }
        }
    }

    /// (rx + generated, tx + drops + held) now.
    fn totals(&self) -> (u64, u64) {
        let s = self.dp.stats();
        let (drops, generated) = (s.dropped(), s.generated());
        let held = self.driver.held() as u64;
        (s.rx_packets() + generated, s.tx_packets() + drops + held)
    }

    /// Over the current input: rx + generated = tx + drops + held.
    pub fn check_accounting(&self) {
        let (a, b) = self.totals();
        assert_eq!(
            a - self.base.0,
            b - self.base.1,
            "counters add up: rx + generated = tx + drops + held"
        );
    }
}

/// How a released fragment is paired with the held input it was (`Oracle::check_released`),
/// in order of preference.
#[derive(Clone, Copy)]
enum Pairing {
    /// Same addresses: routed as it came.
    Routed,
    /// Addresses as its first fragment's recorded decision rewrites the input's.
    AsDecided,
    /// One address kept, the other changed (a wrong rewrite, which the check then reports).
    OneAddressKept,
}

/// A connection as the oracle compares it, of either family.
#[derive(Debug, Clone, Copy)]
struct HitView {
    dir: Dir,
    client: (IpAddr, u16),
    virt: (IpAddr, u16),
    real: (IpAddr, u16),
}

fn widen<A: Into<IpAddr>>(v: FragVerdict<A>) -> FragVerdict<IpAddr> {
    match v {
        FragVerdict::Route => FragVerdict::Route,
        FragVerdict::Dnat { addr, slot } => FragVerdict::Dnat {
            addr: addr.into(),
            slot,
        },
        FragVerdict::Snat { addr, slot } => FragVerdict::Snat {
            addr: addr.into(),
            slot,
        },
    }
}

/// The datagram key of an IPv6 fragment, as RFC 8200 (and the pipeline) key it.
fn frag_key6(a: &Ip) -> FragKey<Ipv6Addr> {
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (a.src, a.dst) else {
        panic!("not IPv6: {a:?}");
    };
    FragKey {
        src,
        dst,
        proto: a.proto,
        id: a.id,
    }
}

/// An ICMP error about a connection, rewritten: outer and quoted headers consistent.
fn check_icmp_nat(a: &Ip, b: &Ip) {
    assert!(b.icmp_ok(), "rewritten ICMP error checksum verifies");
    let (qa, qb) = (&a.payload()[8..], &b.payload()[8..]);
    if a.v6 {
        assert_eq!(qa.len(), qb.len());
        if b.src != a.src {
            // Towards the client: outer source and quoted destination became the VIP.
            assert_eq!(b.src, IpAddr::V6(VIP6));
            assert_eq!(&qb[24..40], &VIP6.octets());
        } else {
            // Towards a real server: outer destination and quoted source became its address.
            assert_eq!(IpAddr::V6(addr6(&qb[8..24])), b.dst);
        }
        return;
    }
    let ihl = usize::from(qa[0] & 15) * 4;
    if csum(&qa[..ihl]) == 0 {
        assert_eq!(csum(&qb[..ihl]), 0, "quoted IP checksum still verifies");
    }
    if b.src != a.src {
        // Towards the client: outer source and quoted destination became the VIP.
        assert_eq!(b.src, IpAddr::V4(VIP));
        assert_eq!(&qb[16..20], &VIP.octets());
    } else {
        // Towards a real server: outer destination and quoted source became its address.
        assert_eq!(&qb[12..16], &octets(b.dst)[..]);
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A frame rvs built in place of the input (`Action::Reply`): an ICMP or ICMPv6 error, or
/// the neighbour advertisement answering a solicitation.
fn check_reply(input: &[u8], out: &[u8]) {
    let b = Ip::parse(out).expect("the reply is IP");
    if b.v6 && b.proto == ICMPV6 && b.payload().first() == Some(&136) {
        check_advertisement(input, out, &b);
    } else {
        check_icmp_error(input, out);
    }
}

/// The neighbour advertisement answering the solicitation `input`: 86 bytes, hop limit 255, a
/// valid checksum, from the target, for one of our addresses or the VIP, with our MAC.
fn check_advertisement(input: &[u8], out: &[u8], b: &Ip) {
    let a = Ip::parse(input).expect("an IPv6 solicitation");
    assert!(
        a.v6 && a.is_icmp() && a.payload()[0] == 135,
        "answers a solicitation"
    );
    assert_eq!(out.len(), 86);
    assert_eq!(b.ttl, 255, "NDP hop limit");
    assert!(b.icmp_ok(), "advertisement checksum");
    let m = b.payload();
    assert_eq!(m.len(), 32);
    let target = addr6(&m[8..24]);
    assert_eq!(&m[8..24], &a.payload()[8..24], "the solicited target");
    assert_eq!(b.src, IpAddr::V6(target), "from the target");
    let link_local = target.segments()[0] & 0xffc0 == 0xfe80;
    assert!(
        [EXT6, DIP6, VIP6].contains(&target) || link_local,
        "one of ours: {target}"
    );
    assert!(out[6..12] == EXT_MAC[..] || out[6..12] == INT_MAC[..]);
    assert_eq!(&m[24..26], &[2, 1], "target link-layer option");
    assert_eq!(&m[26..32], &out[6..12]);
}

/// An ICMP error rvs built: well formed, about the input, within 576 bytes (IPv4) or 1280
/// (IPv6).
fn check_icmp_error(input: &[u8], out: &[u8]) {
    let a = Ip::parse(input).expect("ICMP errors answer IP packets");
    let b = Ip::parse(out).expect("the ICMP error is IP");
    assert_eq!(a.v6, b.v6, "an ICMP error of the packet's family");
    assert!(b.header_ok());
    assert!(b.is_icmp());
    assert_eq!(out.len(), 14 + b.total);
    assert!(b.icmp_ok(), "ICMP checksum");
    let m = b.payload();
    if b.v6 {
        assert_eq!(b.ihl, 40, "no extension headers");
        assert!(b.total <= 1280, "within the minimum MTU");
        assert_eq!(b.ttl, 64);
        assert!(
            matches!((m[0], m[1]), (3, 0) | (2, 0)),
            "time exceeded or packet too big"
        );
    } else {
        assert!(b.total <= 576);
        assert!(
            matches!((m[0], m[1]), (11, 0) | (3, 4)),
            "time exceeded or fragmentation needed"
        );
    }
    assert_eq!(b.dst, a.src, "to the sender");
    assert_eq!(&out[0..6], &input[6..12], "to the previous hop's MAC");
    assert_eq!(a.offset(), 0, "never about a later fragment");
    let q = &m[8..];
    assert!(
        q.len() >= a.total.min(a.ihl + 8),
        "quotes the header and 8 bytes"
    );
    assert_eq!(q, &a.pkt[..q.len()], "quotes the packet as received");
    if a.is_icmp() && !a.payload().is_empty() {
        let t = a.payload()[0];
        if a.v6 {
            assert!(
                t >= 128 && t != 137,
                "never about an ICMPv6 error or redirect"
            );
        } else if a.payload().len() >= 8 {
            assert!(matches!(t, 0 | 8 | 13..=18), "never about an ICMP error");
        }
    }
}
