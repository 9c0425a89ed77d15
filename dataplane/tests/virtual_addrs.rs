//! VRRP-held ("virtual") addresses on byte buffers: an address an instance names is ours only
//! while held (ARP answers, echo, the kernel twin, gratuitous ARP on becoming held); addresses
//! no instance names keep their rules; bad requests change nothing.

use control::config::{Cidr, IpCidr};
use dataplane::driver::{BurstDriver, ByteFrame, ByteIo};
use dataplane::pipeline::{
    Action, Dataplane, KernelPath, TwinChange, VirtualAddrs, GARP_COUNT, GARP_INTERVAL_MS,
    MAX_VIRTUAL_ADDRS,
};
use dataplane::stats::{DropReason, Event};
use std::net::Ipv4Addr;
use std::sync::Arc;
use testkit::director::{assert_balanced, poll_rx, two_arm_with_twins, EXT_MAC, INT_MAC};
use testkit::plan::{CIP, CLIENT_MAC, DIP, RIP1, RS1_MAC, VIP};
use testkit::{arp_request, eth, icmp_echo, ipv4, tcp_frame, ICMP, SYN};

const EXT: u16 = 0;
const INT: u16 = 1;
const ROOM: usize = 2048;
/// An address of the client subnet that is not otherwise rvs's.
const VADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 5);

fn cidr(s: &str) -> IpCidr {
    IpCidr::parse(s).expect("cidr")
}

struct Dir {
    dp: Arc<Dataplane>,
    vaddrs: VirtualAddrs,
    driver: BurstDriver<ByteFrame>,
    io: ByteIo,
    now: u64,
}

impl Dir {
    /// The two-arm director with twins on both ports and a TCP service VIP:80 -> RIP1:80.
    fn new() -> Dir {
        let dp = two_arm_with_twins(
            KernelPath {
                twins: vec![true, true],
                rate: 1000,
                burst: 100,
            },
            "-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m\n",
        );
        Dir {
            vaddrs: VirtualAddrs::new(dp.clone()),
            driver: BurstDriver::new(dp.clone(), 0),
            dp,
            io: ByteIo::new(ROOM),
            now: 1_000,
        }
    }

    fn set(&mut self, instance: &str, port: &str, addrs: &[&str], held: bool) -> Vec<TwinChange> {
        let addrs: Vec<IpCidr> = addrs.iter().map(|a| cidr(a)).collect();
        self.vaddrs
            .set(instance, port, &addrs, held)
            .unwrap_or_else(|e| panic!("set {instance} {port} {addrs:?} {held}: {e}"))
    }

    /// One poll loop with `frame` received on `port`.
    fn send(&mut self, port: u16, frame: &[u8]) -> Action {
        poll_rx(&mut self.driver, &mut self.io, self.now, port, frame, ROOM)
    }

    /// An empty poll loop at `now` (ms).
    fn idle(&mut self, now: u64) {
        self.now = now;
        self.driver.begin(self.now);
        self.driver.finish(&mut self.io);
    }

    /// Whether a broadcast ARP request for `addr` on `port` is answered, with our MAC.
    fn arp_answered(&mut self, port: u16, addr: Ipv4Addr) -> bool {
        let (mac, sender) = if port == EXT {
            (CLIENT_MAC, CIP)
        } else {
            (RS1_MAC, RIP1)
        };
        self.io.clear();
        match self.send(port, &arp_request(mac, sender, addr)) {
            Action::Tx(p) => {
                assert_eq!(p, port);
                let reply = self.io.sent_on(port)[0].bytes().to_vec();
                let our_mac = if port == EXT { EXT_MAC } else { INT_MAC };
                assert_eq!(&reply[20..22], &[0, 2], "an ARP reply");
                assert_eq!(&reply[22..28], &our_mac);
                assert_eq!(&reply[28..32], &addr.octets());
                true
            }
            Action::Drop => false,
            other => panic!("ARP for {addr}: {other:?}"),
        }
    }

    fn events(&self, e: Event) -> u64 {
        self.dp.stats().events(e)
    }

    /// The gratuitous ARPs sent on `port` since the last clear: the address each announces.
    fn garps(&self, port: u16) -> Vec<Ipv4Addr> {
        self.io
            .sent_on(port)
            .iter()
            .map(|f| f.bytes())
            .filter(|f| f[12..14] == [0x08, 0x06])
            .map(|f| {
                assert_eq!(&f[..6], &[0xff; 6], "broadcast");
                assert_eq!(&f[20..22], &[0, 1], "a request, as keepalived sends");
                let spa = Ipv4Addr::new(f[28], f[29], f[30], f[31]);
                let tpa = Ipv4Addr::new(f[38], f[39], f[40], f[41]);
                assert_eq!(spa, tpa, "sender and target are the address");
                assert_eq!(&f[6..12], &f[22..28], "from the port's MAC");
                spa
            })
            .collect()
    }

    /// rx + generated = tx + drops + to_kernel + held.
    fn balanced(&self) {
        assert_balanced(&self.dp, &self.driver);
    }
}

fn ping(dst: Ipv4Addr) -> Vec<u8> {
    eth(
        EXT_MAC,
        CLIENT_MAC,
        0x0800,
        &ipv4(CIP, dst, ICMP, 64, &icmp_echo(8, 1, 1, b"ping")),
    )
}

#[test]
fn an_address_is_ours_only_while_its_instance_holds_it() {
    let mut d = Dir::new();
    assert!(!d.arp_answered(EXT, VADDR), "nobody names it yet");
    let changes = d.set("VI_1", "ext", &["198.51.100.5/24"], false);
    assert!(changes.is_empty(), "{changes:?}");
    assert!(!d.arp_answered(EXT, VADDR));
    assert!(!d.dp.owned_addrs().is_local(VADDR));

    // Held: ARP answered, echo answered, other traffic to it goes up to the twin.
    let changes = d.set("VI_1", "ext", &["198.51.100.5/24"], true);
    assert_eq!(
        changes,
        [TwinChange {
            port: EXT,
            cidr: cidr("198.51.100.5/24"),
            present: true
        }]
    );
    assert!(d.arp_answered(EXT, VADDR));
    assert!(!d.arp_answered(INT, VADDR), "on its own port only");
    d.io.clear();
    assert_eq!(d.send(EXT, &ping(VADDR)), Action::Tx(EXT));
    assert_eq!(d.events(Event::EchoReplied), 1);
    let ssh = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VADDR, 22), SYN, b"");
    assert_eq!(d.send(EXT, &ssh), Action::ToKernel { port: EXT });

    // Released: no ARP answer, not local, off the twin.
    let changes = d.set("VI_1", "ext", &["198.51.100.5/24"], false);
    assert_eq!(
        changes,
        [TwinChange {
            port: EXT,
            cidr: cidr("198.51.100.5/24"),
            present: false
        }]
    );
    assert!(!d.arp_answered(EXT, VADDR));
    assert!(!d.dp.owned_addrs().is_local(VADDR));
    assert_ne!(d.send(EXT, &ssh), Action::ToKernel { port: EXT });
    // The VIP and the port's address are untouched.
    assert!(d.arp_answered(EXT, VIP));
    assert!(d.arp_answered(INT, DIP));
    d.balanced();
}

#[test]
fn becoming_held_sends_gratuitous_arps_spread_over_time() {
    let mut d = Dir::new();
    d.idle(d.now);
    assert_eq!(d.events(Event::GratuitousArp), 0);
    d.set("VI_1", "ext", &["198.51.100.5/32", "198.51.100.6/32"], true);
    let start = d.now + 1;
    let mut sent = Vec::new();
    for ms in 0..2 * GARP_COUNT as u64 * GARP_INTERVAL_MS {
        d.io.clear();
        d.idle(start + ms);
        let g = d.garps(EXT);
        if !g.is_empty() {
            sent.push((ms, g));
        }
    }
    let times: Vec<u64> = sent.iter().map(|(ms, _)| *ms).collect();
    let want: Vec<u64> = (0..u64::from(GARP_COUNT))
        .map(|i| i * GARP_INTERVAL_MS)
        .collect();
    assert_eq!(
        times, want,
        "the first at once, then every {GARP_INTERVAL_MS} ms"
    );
    for (_, g) in &sent {
        assert_eq!(
            g,
            &[
                Ipv4Addr::new(198, 51, 100, 5),
                Ipv4Addr::new(198, 51, 100, 6)
            ]
        );
    }
    assert_eq!(d.events(Event::GratuitousArp), 2 * u64::from(GARP_COUNT));
    assert!(d.io.sent_on(INT).is_empty());

    // Another address held later: only it is announced.
    d.set("VI_2", "int", &["192.0.2.9/24"], true);
    d.io.clear();
    d.idle(d.now + 1);
    assert!(d.garps(EXT).is_empty());
    assert_eq!(d.garps(INT), [Ipv4Addr::new(192, 0, 2, 9)]);
    // Held again while held (a master that met another master re-asserts): announced again,
    // its announcement starting over.
    d.set("VI_1", "ext", &["198.51.100.5/32", "198.51.100.6/32"], true);
    d.io.clear();
    d.idle(d.now + 1);
    assert_eq!(
        d.garps(EXT),
        [
            Ipv4Addr::new(198, 51, 100, 5),
            Ipv4Addr::new(198, 51, 100, 6)
        ]
    );
    assert_eq!(
        d.events(Event::GratuitousArp),
        2 * u64::from(GARP_COUNT) + 3
    );

    // Released before its announcements end: they stop.
    d.set("VI_2", "int", &["192.0.2.9/24"], false);
    for step in 1..=u64::from(GARP_COUNT) {
        d.io.clear();
        d.idle(d.now + step * GARP_INTERVAL_MS);
        assert!(d.garps(INT).is_empty());
    }
    d.balanced();
}

#[test]
fn only_worker_0_announces() {
    let d = Dir::new();
    let mut other: BurstDriver<ByteFrame> = BurstDriver::new(d.dp.clone(), 1);
    let mut io = ByteIo::new(ROOM);
    let mut vaddrs = VirtualAddrs::new(d.dp.clone());
    vaddrs
        .set("VI_1", "ext", &[cidr("198.51.100.5/32")], true)
        .expect("set");
    for ms in 0..1500 {
        other.begin(2_000 + ms);
        other.finish(&mut io);
    }
    assert!(io.sent_on(EXT).is_empty());
}

#[test]
fn a_vip_an_instance_names_is_answered_only_while_held() {
    let mut d = Dir::new();
    assert!(
        d.arp_answered(EXT, VIP),
        "a plain VIP (the port's address too)"
    );
    let changes = d.set("VI_1", "ext", &["198.51.100.1/24"], false);
    // The configured address follows the instance: off the twin while not held.
    assert_eq!(
        changes,
        [TwinChange {
            port: EXT,
            cidr: cidr("198.51.100.1/24"),
            present: false
        }]
    );
    assert!(!d.arp_answered(EXT, VIP));
    // Its services still work for a client that sends to it anyway (a stale ARP cache).
    let syn = tcp_frame(EXT_MAC, CLIENT_MAC, (CIP, 40000), (VIP, 80), SYN, b"");
    assert_eq!(d.send(EXT, &syn), Action::Tx(INT));
    d.set("VI_1", "ext", &["198.51.100.1/24"], true);
    assert!(d.arp_answered(EXT, VIP));
    // Forgotten (empty list): back to the static rules.
    d.set("VI_1", "ext", &[], false);
    assert!(d.arp_answered(EXT, VIP));
    assert!(d.vaddrs.list().is_empty());
    d.balanced();
}

#[test]
fn the_dip_moves_with_its_instance_and_rvs_never_speaks_from_it_meanwhile() {
    let mut d = Dir::new();
    d.set("VI_2", "int", &["192.0.2.1/24"], false);
    assert!(!d.arp_answered(INT, DIP));
    // ARP requests rvs sends out of int come from no address (a probe), never from the DIP
    // the other director holds.
    let mut buf = [0u8; 64];
    let n = d
        .driver
        .pipeline()
        .neighbour_request(INT, Ipv4Addr::new(192, 0, 2, 3), &mut buf);
    assert_eq!(n, 60);
    assert_eq!(&buf[28..32], &[0, 0, 0, 0]);
    d.set("VI_2", "int", &["192.0.2.1/24"], true);
    assert!(d.arp_answered(INT, DIP));
    // A new burst sees the change.
    d.idle(d.now + 1);
    let n = d
        .driver
        .pipeline()
        .neighbour_request(INT, Ipv4Addr::new(192, 0, 2, 3), &mut buf);
    assert_eq!(n, 60);
    assert_eq!(&buf[28..32], &DIP.octets());
}

#[test]
fn instances_share_an_address_on_one_port() {
    let mut d = Dir::new();
    d.set("VI_1", "ext", &["198.51.100.5/32"], true);
    d.set("VI_3", "ext", &["198.51.100.5/32"], false);
    assert!(d.arp_answered(EXT, VADDR), "held by VI_1");
    let changes = d.set("VI_1", "ext", &["198.51.100.5/32"], false);
    assert_eq!(changes.len(), 1);
    assert!(!d.arp_answered(EXT, VADDR));
    let list = d.vaddrs.list();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].instance.as_str(), list[0].port, list[0].held),
        ("VI_1", EXT, false)
    );
    assert_eq!(list[1].instance, "VI_3");
}

#[test]
fn bad_requests_change_nothing_and_say_why() {
    let mut d = Dir::new();
    d.set("VI_1", "ext", &["198.51.100.5/32"], true);
    let before = d.dp.owned_addrs().held().to_vec();
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("VI_1", "nope", &["198.51.100.7/32"], "no port named"),
        ("", "ext", &["198.51.100.7/32"], "bad instance name"),
        ("VI\n1", "ext", &["198.51.100.7/32"], "bad instance name"),
        ("VI_1", "ext", &["224.0.0.18/32"], "not a unicast"),
        ("VI_1", "ext", &["127.0.0.1/32"], "not a unicast"),
        ("VI_1", "ext", &["0.0.0.0/32"], "not a unicast"),
        ("VI_1", "ext", &["198.51.100.255/24"], "broadcast"),
        ("VI_1", "ext", &["198.51.100.0/24"], "network"),
        (
            "VI_1",
            "ext",
            &["192.0.2.1/24"],
            "an address of port \"int\"",
        ),
        (
            "VI_9",
            "int",
            &["198.51.100.5/32"],
            "named by instance \"VI_1\"",
        ),
    ];
    for (instance, port, addrs, want) in cases {
        let addrs: Vec<IpCidr> = addrs.iter().map(|a| cidr(a)).collect();
        let err = d
            .vaddrs
            .set(instance, port, &addrs, true)
            .expect_err(instance);
        assert!(err.contains(want), "{instance} {port} {addrs:?}: {err}");
    }
    let many: Vec<IpCidr> = (0..=MAX_VIRTUAL_ADDRS as u32)
        .map(|i| {
            IpCidr::V4(Cidr {
                addr: Ipv4Addr::from(u32::from(Ipv4Addr::new(203, 0, 113, 0)) + (i << 8) + 1),
                prefix_len: 32,
            })
        })
        .collect();
    let err = d.vaddrs.set("VI_4", "ext", &many, true).expect_err("many");
    assert!(err.contains("too many"), "{err}");
    assert_eq!(d.dp.owned_addrs().held(), &before[..]);
    assert_eq!(d.vaddrs.list().len(), 1);
    assert!(d.arp_answered(EXT, VADDR));
    assert_eq!(d.dp.stats().drops(DropReason::Malformed), 0);
}
