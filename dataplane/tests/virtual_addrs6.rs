//! VRRP-held IPv6 addresses on byte buffers: an IPv6 VIP an instance names is answered
//! (neighbour solicitations) only while held, and announced with unsolicited neighbour
//! advertisements when it becomes held; IPv6 VIPs no instance names stay claimed; a held
//! address that is not a VIP is one of ours (echo); the ports' own IPv6 addresses are refused.

use control::config::IpCidr;
use dataplane::driver::{BurstDriver, ByteFrame, ByteIo};
use dataplane::pipeline::{
    Action, Dataplane, DataplaneConfig, KernelPath, TwinChange, VirtualAddrs, GARP_COUNT,
    GARP_INTERVAL_MS,
};
use dataplane::service::ServiceManager;
use dataplane::stats::Event;
use std::net::Ipv6Addr;
use std::sync::Arc;
use testkit::director::{assert_balanced, poll_rx, two_arm_ports, EXT_MAC};
use testkit::ipv6::*;
use testkit::plan::CLIENT_MAC;

const EXT: u16 = 0;
const ROOM: usize = 2048;
/// A second IPv6 VIP, which no instance names.
const VIP6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x20);
/// An address of the client prefix that is not otherwise rvs's.
const VADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 5);

struct Dir {
    dp: Arc<Dataplane>,
    vaddrs: VirtualAddrs,
    driver: BurstDriver<ByteFrame>,
    io: ByteIo,
    now: u64,
    _mgr: ServiceManager,
}

impl Dir {
    fn new() -> Dir {
        let mut ports = two_arm_ports(None, 1500);
        ports[0].addrs6 = vec![(EXT6, 64)];
        ports[1].addrs6 = vec![(DIP6, 64)];
        let dp = Dataplane::with_kernel_path(
            DataplaneConfig {
                ports,
                conn_capacity: 1024,
                timeouts: control::model::Timeouts::default(),
                workers: 1,
            },
            KernelPath {
                twins: vec![true, true],
                rate: 1000,
                burst: 100,
            },
        );
        dp.neigh6().learn(EXT, CIP6, CLIENT_MAC);
        let mut mgr = ServiceManager::new(dp.clone());
        testkit::services::rvsadm(
            &mut mgr,
            "-A -t [2001:db8:100::1]:80 -s rr\n-a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\
             -A -t [2001:db8:100::20]:80 -s rr\n-a -t [2001:db8:100::20]:80 -r [2001:db8:2::2]:80 -m\n",
        );
        Dir {
            vaddrs: VirtualAddrs::new(dp.clone()),
            driver: BurstDriver::new(dp.clone(), 0),
            dp,
            io: ByteIo::new(ROOM),
            now: 1_000,
            _mgr: mgr,
        }
    }

    fn set(&mut self, addrs: &[&str], held: bool) -> Result<Vec<TwinChange>, String> {
        let addrs: Vec<IpCidr> = addrs.iter().map(|a| IpCidr::parse(a).unwrap()).collect();
        self.vaddrs.set("VI_6", "ext", &addrs, held)
    }

    fn idle(&mut self, now: u64) {
        self.now = now;
        self.driver.begin(self.now);
        self.driver.finish(&mut self.io);
    }

    /// Whether a solicitation from the client for `target` is answered, with our MAC.
    fn ns_answered(&mut self, target: Ipv6Addr) -> bool {
        self.io.clear();
        let ns = neighbour_solicitation(CLIENT_MAC, CIP6, target);
        match poll_rx(&mut self.driver, &mut self.io, self.now, EXT, &ns, ROOM) {
            Action::Reply { port, .. } => {
                assert_eq!(port, EXT);
                let na = check6(self.io.sent_on(EXT)[0].bytes());
                assert_eq!((na.sport, na.src_mac), (136, EXT_MAC), "a solicited NA");
                assert_eq!(&na.upper[8..24], &target.octets(), "for {target}");
                true
            }
            Action::Drop => false,
            other => panic!("NS for {target}: {other:?}"),
        }
    }

    /// The unsolicited neighbour advertisements sent on ext since the last clear: the target
    /// each announces.
    fn unsolicited(&self) -> Vec<Ipv6Addr> {
        self.io
            .sent_on(EXT)
            .iter()
            .map(|f| check6(f.bytes()))
            .filter(|s| {
                s.proto == ICMPV6
                    && s.sport == 136
                    && s.dst == "ff02::1".parse::<Ipv6Addr>().unwrap()
            })
            .map(|s| {
                assert_eq!(s.hop_limit, 255);
                assert_eq!(s.src_mac, EXT_MAC);
                Ipv6Addr::from(<[u8; 16]>::try_from(&s.upper[8..24]).unwrap())
            })
            .collect()
    }
}

#[test]
fn an_ipv6_vip_an_instance_names_is_answered_only_while_held() {
    let mut d = Dir::new();
    // At start: the ports' addresses and both VIPs announced, both VIPs answered.
    d.idle(d.now);
    let mut at_start = d.unsolicited();
    at_start.sort();
    assert_eq!(at_start, [VIP6, EXT6, VIP6_B]);
    assert!(d.ns_answered(VIP6) && d.ns_answered(VIP6_B));

    // Named, released (a BACKUP): no answer; the other VIP is still claimed.
    let changes = d.set(&["2001:db8:100::1/64"], false).unwrap();
    assert!(changes.is_empty(), "{changes:?}");
    assert!(!d.ns_answered(VIP6), "released");
    assert!(d.ns_answered(VIP6_B), "no instance names it");
    d.io.clear();
    d.idle(d.now + 10);
    assert!(d.unsolicited().is_empty());

    // Held (MASTER): on the twin, answered, five unsolicited advertisements 200 ms apart.
    let changes = d.set(&["2001:db8:100::1/64"], true).unwrap();
    assert_eq!(
        changes,
        [TwinChange {
            port: EXT,
            cidr: IpCidr::parse("2001:db8:100::1/64").unwrap(),
            present: true,
        }]
    );
    d.io.clear();
    let t0 = d.now;
    let mut seen = Vec::new();
    for step in 0..=(GARP_COUNT as u64 * GARP_INTERVAL_MS / 10) {
        d.idle(t0 + step * 10);
        seen.extend(d.unsolicited());
        d.io.clear();
    }
    assert_eq!(seen, vec![VIP6; GARP_COUNT as usize]);
    // The four at start (EXT6, both VIPs on ext, DIP6 on int), then the held VIP's.
    assert_eq!(
        d.dp.stats().events(Event::UnsolicitedNa),
        4 + u64::from(GARP_COUNT)
    );
    assert!(d.ns_answered(VIP6), "held");
    assert_eq!(d.dp.owned_addrs().held6().len(), 1);

    // Released again: no answer, off the twin.
    let changes = d.set(&["2001:db8:100::1/64"], false).unwrap();
    assert_eq!(
        changes,
        [TwinChange {
            port: EXT,
            cidr: IpCidr::parse("2001:db8:100::1/64").unwrap(),
            present: false,
        }]
    );
    assert!(!d.ns_answered(VIP6));
    // Forgotten (no instance names it): claimed again.
    d.vaddrs.set("VI_6", "ext", &[], false).unwrap();
    assert!(d.ns_answered(VIP6));
    assert_balanced(&d.dp, &d.driver);
}

#[test]
fn a_held_ipv6_address_is_ours_and_the_ports_own_are_refused() {
    let mut d = Dir::new();
    assert!(!d.ns_answered(VADDR6));
    d.set(&["2001:db8:100::5/64"], true).unwrap();
    assert!(d.ns_answered(VADDR6));
    // An echo request to it is answered by rvs.
    let ping = eth6(
        EXT_MAC,
        CLIENT_MAC,
        &ipv6(
            CIP6,
            VADDR6,
            ICMPV6,
            64,
            &icmp6(CIP6, VADDR6, 128, 0, &[0, 1, 0, 1]),
        ),
    );
    d.io.clear();
    assert_eq!(
        poll_rx(&mut d.driver, &mut d.io, d.now, EXT, &ping, ROOM),
        Action::Tx(EXT)
    );
    for own in ["2001:db8:100::2/64", "2001:db8:2::1/64"] {
        let e = d.set(&[own], true).unwrap_err();
        assert!(e.contains("own IPv6 address"), "{own}: {e}");
    }
    // The refusals changed nothing.
    assert!(d.ns_answered(VADDR6));
    assert_balanced(&d.dp, &d.driver);
}
