//! The driver's own logic: hold queue, ARP retries, hold timeout, TX batches, and the counters
//! of all of it. What the pipeline does with a frame is tested in tests/.

use super::*;
use std::net::Ipv4Addr;
use testkit::{arp, eth, udp_frame};

const EXT: u16 = 0;
const INT: u16 = 1;
const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
const INT_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 3, 9];
const EXT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// A host behind `int` whose MAC nobody has learnt.
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const ROOM: usize = 2048;
const T0: u64 = 10_000;

fn setup() -> (Arc<Dataplane>, BurstDriver<ByteFrame>, ByteIo) {
    let dp = crate::pipeline::two_arm_for_tests(EXT_MAC, INT_MAC);
    let driver = BurstDriver::new(dp.clone(), 0);
    (dp, driver, ByteIo::new(ROOM))
}

/// A client's datagram to HOST, routed to `int` (sport tells them apart).
fn to_host(sport: u16) -> ByteFrame {
    let f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, sport), (HOST, 9), b"x", true);
    ByteFrame::with_room(&f, ROOM)
}

/// A client's ARP request for ext's address: answered on ext.
fn who_has(spa_last: u8) -> ByteFrame {
    let spa = Ipv4Addr::new(198, 51, 100, spa_last);
    let f = eth(
        [0xff; 6],
        CLIENT_MAC,
        0x0806,
        &arp(1, CLIENT_MAC, spa, [0; 6], EXT_IP),
    );
    ByteFrame::with_room(&f, ROOM)
}

/// One poll loop at `now` with `frames` received on ext.
fn poll(
    d: &mut BurstDriver<ByteFrame>,
    io: &mut ByteIo,
    now: u64,
    frames: impl IntoIterator<Item = ByteFrame>,
) {
    d.begin(now);
    d.rx_burst(io, EXT, &mut frames.into_iter().collect());
    d.finish(io);
}

/// How many frames went out, on all ports.
fn sent(io: &ByteIo) -> usize {
    io.sent.iter().map(Vec::len).sum()
}

/// The ARP requests for `target` that went out on `port`.
fn arp_requests(io: &ByteIo, port: u16, target: Ipv4Addr) -> usize {
    io.sent_on(port)
        .iter()
        .filter(|f| {
            let b = f.bytes();
            b[12..14] == [8, 6] && b[20..22] == [0, 1] && b[38..42] == target.octets()
        })
        .count()
}

/// rx + generated = tx + drops + held.
fn assert_accounting(dp: &Dataplane, d: &BurstDriver<ByteFrame>) {
    let s = dp.stats();
    let (drops, generated) = (s.dropped(), s.generated());
    assert_eq!(
        s.rx_packets() + generated,
        s.tx_packets() + drops + d.held() as u64,
        "rx {} + generated {generated} = tx {} + drops {drops} + held {}",
        s.rx_packets(),
        s.tx_packets(),
        d.held()
    );
}

#[test]
fn held_frames_go_out_once_the_next_hop_is_known() {
    let (dp, mut d, mut io) = setup();
    poll(&mut d, &mut io, T0, [to_host(1), to_host(2)]);
    assert_eq!(d.held(), 2);
    assert_eq!(arp_requests(&io, INT, HOST), 1, "one request per next hop");
    assert_eq!(sent(&io), 1);
    let req = io.sent_on(INT)[0].bytes();
    assert_eq!((&req[..6], &req[6..12]), (&[0xff; 6][..], &INT_MAC[..]));
    assert_eq!(&req[28..32], &[192, 0, 2, 1], "from int's address");
    assert_eq!(dp.stats().events(Event::ArpRequests), 1);
    assert_accounting(&dp, &d);

    // The answer is learnt: both go out at the end of the next loop, MACs filled in.
    dp.neigh().learn(INT, HOST, HOST_MAC);
    io.clear();
    poll(&mut d, &mut io, T0 + 10, []);
    assert_eq!(d.held(), 0);
    assert_eq!(sent(&io), 2);
    let mut sports: Vec<u16> = io
        .sent_on(INT)
        .iter()
        .map(|f| {
            let b = f.bytes();
            assert_eq!((&b[..6], &b[6..12]), (&HOST_MAC[..], &INT_MAC[..]));
            u16::from_be_bytes([b[34], b[35]])
        })
        .collect();
    sports.sort();
    assert_eq!(sports, [1, 2]);
    assert_eq!(dp.stats().tx_packets(), 3);
    assert_accounting(&dp, &d);
}

#[test]
fn unanswered_next_hops_are_asked_again_then_given_up() {
    let (dp, mut d, mut io) = setup();
    poll(&mut d, &mut io, T0, [to_host(1)]);
    poll(&mut d, &mut io, T0 + ARP_RETRY_MS - 1, []);
    assert_eq!(
        arp_requests(&io, INT, HOST),
        1,
        "not again before ARP_RETRY_MS"
    );
    poll(&mut d, &mut io, T0 + ARP_RETRY_MS, []);
    assert_eq!(arp_requests(&io, INT, HOST), 2);
    poll(&mut d, &mut io, T0 + HOLD_MS, []);
    assert_eq!(d.held(), 1, "held for HOLD_MS");
    assert_eq!(arp_requests(&io, INT, HOST), 3);
    poll(&mut d, &mut io, T0 + HOLD_MS + 1, []);
    assert_eq!(d.held(), 0);
    assert_eq!(dp.stats().drops(DropReason::NeighUnresolved), 1);
    assert_eq!(arp_requests(&io, INT, HOST), 3);
    assert_accounting(&dp, &d);

    // The next hop is forgotten with its last frame: a new frame asks at once.
    poll(&mut d, &mut io, T0 + HOLD_MS + 2, [to_host(2)]);
    assert_eq!(arp_requests(&io, INT, HOST), 4);
    assert_accounting(&dp, &d);
}

#[test]
fn a_full_hold_queue_drops_what_does_not_fit() {
    let (dp, mut d, mut io) = setup();
    poll(&mut d, &mut io, T0, (0..=HOLD_CAPACITY as u16).map(to_host));
    assert_eq!(d.held(), HOLD_CAPACITY);
    assert_eq!(d.held_frames().count(), HOLD_CAPACITY);
    assert_eq!(dp.stats().drops(DropReason::HoldQueueFull), 1);
    assert_eq!(arp_requests(&io, INT, HOST), 1);
    assert_accounting(&dp, &d);
}

#[test]
fn frames_the_port_does_not_take_are_counted() {
    let (dp, mut d, mut io) = setup();
    io.tx_limit = 1;
    poll(&mut d, &mut io, T0, [who_has(10), who_has(11), who_has(12)]);
    assert_eq!(sent(&io), 1);
    assert_eq!(dp.stats().tx_packets(), 1);
    assert_eq!(dp.stats().drops(DropReason::TxFull), 2);
    assert_accounting(&dp, &d);
}

#[test]
fn no_buffer_for_an_arp_request_is_a_counted_drop() {
    let (dp, mut d, mut io) = setup();
    io.room = 0;
    poll(&mut d, &mut io, T0, [to_host(1)]);
    assert_eq!(d.held(), 1, "the frame itself still waits");
    assert_eq!(dp.stats().events(Event::ArpRequests), 1);
    assert_eq!(dp.stats().drops(DropReason::MbufAlloc), 1);
    assert_eq!(sent(&io), 0);
    assert_accounting(&dp, &d);
}

#[test]
fn long_bursts_are_handled_whole_and_in_order() {
    let (dp, mut d, mut io) = setup();
    // More than a burst and more than a TX batch holds: the batch goes out early.
    let n = BURST * 3 + HOLD_CAPACITY + 40;
    poll(
        &mut d,
        &mut io,
        T0,
        (0..n).map(|i| who_has(10 + (i % 200) as u8)),
    );
    assert_eq!(sent(&io), n);
    for (i, f) in io.sent_on(EXT).iter().enumerate() {
        assert_eq!(f.bytes()[41], 10 + (i % 200) as u8, "reply {i} in order");
    }
    assert_eq!(dp.stats().tx_packets(), n as u64);
    assert_accounting(&dp, &d);
}

#[test]
fn an_icmp_error_takes_the_frames_room() {
    let (dp, mut d, mut io) = setup();
    let mut f = udp_frame(EXT_MAC, CLIENT_MAC, (CIP, 1), (HOST, 9), b"x", true);
    f[22] = 1; // TTL 1
    f[24] = 0;
    f[25] = 0;
    let c = testkit::inet_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    d.begin(T0);
    let a = d.rx_frame(&mut io, EXT, ByteFrame::with_room(&f, ROOM));
    d.finish(&mut io);
    let Action::Reply { port: EXT, len } = a else {
        panic!("{a:?}");
    };
    assert_eq!(sent(&io), 1);
    let reply = io.sent_on(EXT)[0].bytes();
    assert_eq!(reply.len(), len);
    assert_eq!(reply[34], 11, "time exceeded");
    // Without room, nothing to build it in: dropped.
    d.begin(T0 + 1000);
    let a = d.rx_frame(&mut io, EXT, ByteFrame::new(f.clone(), f.len()));
    assert_eq!(a, Action::Drop);
    assert_eq!(dp.stats().drops(DropReason::TtlExpired), 2);
    assert_accounting(&dp, &d);
}

/// A frame in two segments, as a chained mbuf.
struct Chained(ByteFrame);

impl FrameBuf for Chained {
    fn data(&self) -> &[u8] {
        self.0.data()
    }
    fn data_mut(&mut self) -> &mut [u8] {
        self.0.data_mut()
    }
    fn data_with_room(&mut self) -> (&mut [u8], usize) {
        self.0.data_with_room()
    }
    fn set_len(&mut self, len: usize) -> bool {
        self.0.set_len(len)
    }
    fn is_contiguous(&self) -> bool {
        false
    }
}

#[derive(Default)]
struct ChainedIo {
    freed: usize,
}

impl FrameIo for ChainedIo {
    type Frame = Chained;
    fn alloc(&mut self, _port: u16) -> Option<Chained> {
        None
    }
    fn transmit(&mut self, _port: u16, _batch: &mut Vec<Chained>) {}
    fn free(&mut self, _frame: Chained) {
        self.freed += 1;
    }
}

#[test]
fn chained_frames_are_counted_and_freed_unread() {
    let (dp, _, _) = setup();
    let mut d = BurstDriver::new(dp.clone(), 0);
    let mut io = ChainedIo::default();
    d.begin(T0);
    d.rx_burst(&mut io, EXT, &mut vec![Chained(who_has(10))]);
    d.finish(&mut io);
    assert_eq!(io.freed, 1);
    assert_eq!(dp.stats().rx_packets(), 1);
    assert_eq!(dp.stats().drops(DropReason::MultiSegment), 1);
    assert_eq!(dp.stats().events(Event::ArpReplied), 0);
}
