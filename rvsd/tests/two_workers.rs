//! DPDK integration test: two workers share one connection table, and every connection's
//! packets are split between them: replies arrive on the *other* worker's queue.
//!
//! rvsd runs two worker lcores (`-l 0-1`) on one `net_pcap` port with two RX queues. Each RX
//! queue reads a named pipe (FIFO) that this test writes into, so the test decides what each
//! worker sees and when: it feeds one queue, waits until the output of that phase appeared on
//! that worker's TX queue (its own pcap file), then feeds the next. Nothing depends on timing.
//!
//! One detail makes this deterministic: `net_pcap` reads up to a whole burst (32 frames) from a
//! capture before returning, and a FIFO blocks while empty, so every phase writes exactly 32
//! frames: its own, then filler frames (an unknown ethertype, dropped without output).
//!
//! Phases (RS = real server):
//! 1. queue 0: ARP from client and both RSs, SYNs for connections A and B (worker 0 inserts
//!    them, round robin: A -> RS1, B -> RS2);
//! 2. queue 1: the SYN+ACK replies of A and B (worker 1 finds them by their reply tuple and
//!    SNATs them), and a SYN for connection C (worker 1 inserts it: RS1);
//! 3. queue 0: the client's ACKs of A and B (now ESTABLISHED), and C's SYN+ACK from RS1
//!    (worker 0 SNATs a connection worker 1 made);
//! 4. queue 1: C's ACK.
//!
//! Then the control socket lists the three connections as `rvsadm -L -n -c` would: all
//! ESTABLISHED, and RS1 with 2 active connections, RS2 with 1.

use control::client::Client;
use control::model::ConnStatus;
use control::proto::{Request, Response};
use pcap_file::pcap::PcapWriter;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::daemon::{net_pcap, Rvsd, RvsdConfig, VdevPort};
use testkit::plan::{
    BROADCAST, CIP, CLIENT_MAC, DIP, ONE_ARM_MAC, RIP1, RIP2, RS1_MAC, RS2_MAC, VIP,
};
use testkit::{arp, check, eth, pcap, tcp_frame, ACK, SYN};

/// `net_pcap`'s RX burst: it returns only once it has read this many frames (or hit the end).
const BURST: usize = 32;

/// One RX queue's pipe, held open for writing by the test.
struct Feed {
    w: PcapWriter<File>,
    sent: usize,
}

impl Feed {
    fn open(path: &Path) -> Feed {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        // Read+write: opening does not wait for a reader, and the pipe stays open (no EOF)
        // while rvsd reads it. The pcap header goes in now, before rvsd opens the capture.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        Feed {
            w: PcapWriter::new(f).unwrap(),
            sent: 0,
        }
    }

    /// Writes `frames` and filler up to a whole burst.
    fn phase(&mut self, frames: &[Vec<u8>]) {
        assert!(frames.len() <= BURST);
        let filler = eth(
            ONE_ARM_MAC,
            CLIENT_MAC,
            0x88b5,
            b"rvs two-worker test filler",
        );
        let mut all = frames.to_vec();
        all.resize(BURST, filler);
        pcap::write_frames(&mut self.w, self.sent + 1, &all);
        self.sent += BURST;
    }
}

fn wait_for(path: &Path, n: usize, rvsd: &mut Rvsd, what: &str) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = pcap::read(path);
        if out.len() >= n {
            return out;
        }
        if let Some(status) = rvsd.try_wait() {
            panic!("rvsd exited early ({status}) waiting for {what}");
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n} frames after 20 s",
            out.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    eth(BROADCAST, sha, 0x0806, &arp(1, sha, spa, [0; 6], tpa))
}

fn client(cport: u16, flags: u8) -> Vec<u8> {
    tcp_frame(ONE_ARM_MAC, CLIENT_MAC, (CIP, cport), (VIP, 80), flags, b"")
}

fn server(mac: [u8; 6], rs: Ipv4Addr, cport: u16, flags: u8) -> Vec<u8> {
    tcp_frame(ONE_ARM_MAC, mac, (rs, 80), (CIP, cport), flags, b"")
}

/// A client packet after DNAT to `rs`.
fn assert_dnat(f: &[u8], rs_mac: [u8; 6], rs: Ipv4Addr, cport: u16, flags: u8) {
    let s = check(f);
    assert_eq!((s.dst_mac, s.src_mac), (rs_mac, ONE_ARM_MAC), "MACs");
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (CIP, cport, rs, 80),
        "{s:?}"
    );
    assert_eq!(f[14 + 20 + 13], flags, "TCP flags");
}

/// A real-server packet after SNAT back to the VIP.
fn assert_snat(f: &[u8], cport: u16, flags: u8) {
    let s = check(f);
    assert_eq!((s.dst_mac, s.src_mac), (CLIENT_MAC, ONE_ARM_MAC), "MACs");
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (VIP, 80, CIP, cport),
        "{s:?}"
    );
    assert_eq!(f[14 + 20 + 13], flags, "TCP flags");
}

#[test]
fn replies_are_handled_on_the_other_workers_queue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (rx0, rx1) = (d.join("rx0.pcap"), d.join("rx1.pcap"));
    let (tx0, tx1): (PathBuf, PathBuf) = (d.join("tx0.pcap"), d.join("tx1.pcap"));
    let mut q0 = Feed::open(&rx0);
    let mut q1 = Feed::open(&rx1);
    let sock = d.join("rvs.sock");
    let config = RvsdConfig::new(&sock)
        .lcores(&[0, 1])
        .port(VdevPort::one_arm(net_pcap(0, &[&rx0, &rx1], &[&tx0, &tx1])).mac(ONE_ARM_MAC))
        .services(
            "-A -t 198.51.100.1:80 -s rr\n\
             -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
             -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1",
        );
    let mut daemon = Rvsd::start(Path::new(env!("CARGO_BIN_EXE_rvsd")), &config, d);

    // 1. Worker 0: neighbours, then SYNs of A (40001) and B (40002).
    q0.phase(&[
        arp_request(CLIENT_MAC, CIP, VIP),
        arp_request(RS1_MAC, RIP1, DIP),
        arp_request(RS2_MAC, RIP2, DIP),
        client(40001, SYN),
        client(40002, SYN),
    ]);
    let out0 = wait_for(&tx0, 5, &mut daemon, "phase 1 on queue 0");
    assert_dnat(&out0[3], RS1_MAC, RIP1, 40001, SYN);
    assert_dnat(&out0[4], RS2_MAC, RIP2, 40002, SYN);

    // 2. Worker 1: the replies of A and B (inserted by worker 0), and the SYN of C (40003).
    q1.phase(&[
        server(RS1_MAC, RIP1, 40001, SYN | ACK),
        server(RS2_MAC, RIP2, 40002, SYN | ACK),
        client(40003, SYN),
    ]);
    let out1 = wait_for(&tx1, 3, &mut daemon, "phase 2 on queue 1");
    assert_snat(&out1[0], 40001, SYN | ACK);
    assert_snat(&out1[1], 40002, SYN | ACK);
    assert_dnat(&out1[2], RS1_MAC, RIP1, 40003, SYN);

    // 3. Worker 0: the client's ACKs of A and B, and C's reply (inserted by worker 1).
    q0.phase(&[
        client(40001, ACK),
        client(40002, ACK),
        server(RS1_MAC, RIP1, 40003, SYN | ACK),
    ]);
    let out0 = wait_for(&tx0, 8, &mut daemon, "phase 3 on queue 0");
    assert_dnat(&out0[5], RS1_MAC, RIP1, 40001, ACK);
    assert_dnat(&out0[6], RS2_MAC, RIP2, 40002, ACK);
    assert_snat(&out0[7], 40003, SYN | ACK);

    // 4. Worker 1: C's ACK.
    q1.phase(&[client(40003, ACK)]);
    let out1 = wait_for(&tx1, 4, &mut daemon, "phase 4 on queue 1");
    assert_dnat(&out1[3], RS1_MAC, RIP1, 40003, ACK);

    // The one shared table: three ESTABLISHED connections, counted per real server.
    let mut c = Client::new(&sock);
    let Response::Conns(mut conns) = c.call(Request::ListConns).unwrap() else {
        panic!("not a connection list");
    };
    eprint!("{}", control::format::conns(&conns));
    conns.sort_by_key(|c| c.client.1);
    let want: Vec<(u16, &str, IpAddr)> = vec![
        (40001, "ESTABLISHED", RIP1.into()),
        (40002, "ESTABLISHED", RIP2.into()),
        (40003, "ESTABLISHED", RIP1.into()),
    ];
    let got: Vec<(u16, &str, IpAddr)> = conns
        .iter()
        .map(|c: &ConnStatus| (c.client.1, c.state.as_str(), c.dest.0))
        .collect();
    assert_eq!(got, want);
    for c in &conns {
        assert_eq!((c.client.0, c.virt), (CIP.into(), (VIP.into(), 80)));
        assert!(c.expires_in > 800, "ESTABLISHED: about 900 s left, {c:?}");
    }
    let Response::Services { services, .. } = c.call(Request::List { service: None }).unwrap()
    else {
        panic!("not a service list");
    };
    let counts: Vec<(IpAddr, u64, u64)> = services[0]
        .dests
        .iter()
        .map(|d| (d.spec.addr, d.active_conns, d.inactive_conns))
        .collect();
    assert_eq!(counts, vec![(RIP1.into(), 2, 0), (RIP2.into(), 1, 0)]);

    // Nothing else came out: every filler frame was dropped.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(pcap::read(&tx0).len(), 8);
    assert_eq!(pcap::read(&tx1).len(), 4);

    // Stop: SIGTERM, then end both pipes so that workers blocked reading them return.
    daemon.terminate();
    drop((q0, q1));
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "rvsd exit status after SIGTERM: {status}");
}
