//! rvs-pktgen: the traffic generator of the memif benchmark (DESIGN.md, "Performance method").
//!
//! On one lcore it plays N clients on its external port and the real servers on its internal
//! port, over IPv4 or (`--family 6`) IPv6. Client frames (UDP, or TCP opening each flow with a
//! SYN) go to VIP:vport; what the DUT (rvsd, or testpmd io forwarding) delivers on the internal
//! port is reflected back as the real server's answer (addresses and ports swapped, like
//! testpmd's 5tswap); the replies arriving on the external port are checked (source VIP:vport,
//! destination the client of the flow they carry, checksums) and timed. It reports delivered
//! Mpps, loss and round-trip latency, as a human summary on stderr and one JSON line on stdout.
//!
//! Phases: warm-up (at least `--warmup` seconds and, without `--new-conns`, until every flow has
//! been opened once, so the measurement sees established flows only), measurement (`--duration`
//! seconds), drain (`--drain-ms`: no sending, replies still counted). Only frames sent during the
//! measurement count: loss = sent - replies to them, whenever those arrive before the end.
//!
//! IPv4 (default): VIP 198.51.100.1, DUT 192.0.2.1 on the server side, real servers 192.0.2.0/24,
//! clients 198.51.100.10-254; the DUT's MAC learnt by ARP, and ARP answered on both sides.
//! IPv6 (`--family 6`): VIP 2001:db8:100::1, DUT 2001:db8:2::1, real servers 2001:db8:2::/64,
//! clients 2001:db8:100::1:a-fe (`frame::client6_of`), 84-byte frames on the wire (the
//! 64-byte IPv4 frame's L4 header and payload behind the 20 bytes longer header); neighbour
//! solicitation and advertisement instead of ARP, for the probe and the DUT's solicitations.
//!
//! The ports are memif servers by default (`/tmp/rvs-bench/{ext,int}.sock`): start rvs-pktgen
//! first, then the DUT as memif client on the same sockets. It waits for both links.
//!
//! One file, past 600 lines: one program whose ports, send/receive loops and report share its run
//! state; the packet logic is in frame.rs.

use clap::{Parser, ValueEnum};
use control::config::{MacAddr, PortConfig, PortRole};
use dpdk_sys as sys;
use hdrhistogram::Histogram;
use rvs_benches::frame::{self, Generator, Mismatch, Proto, Reflected};
use rvsd::dpdk::{eal, port::Port};
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

#[path = "pktgen/conn.rs"]
mod conn;

/// Frames per rx/tx burst.
const BURST: usize = 32;
/// Tries for a reflected burst before what the DUT would not take is dropped (and counted):
/// spinning longer would stop the client side from sending and receiving.
const TX_TRIES: usize = 4;
/// The real servers' subnet; ARP for its addresses (but the DIP) is answered on the internal port.
const SERVER_NET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 0);
const DEFAULT_EAL: &[&str] = &[
    "-l",
    "1",
    "--in-memory",
    "--no-pci",
    "--vdev=net_memif0,role=server,socket=/tmp/rvs-bench/ext.sock,socket-abstract=no,id=0,mac=02:00:00:00:01:01",
    "--vdev=net_memif1,role=server,socket=/tmp/rvs-bench/int.sock,socket-abstract=no,id=0,mac=02:00:00:00:01:02",
];

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The address family of the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Family {
    #[value(name = "4")]
    V4,
    #[value(name = "6")]
    V6,
}

impl Family {
    fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }
}

/// The addresses of a run: `--vip` and `--dip`, or their family's defaults.
#[derive(Clone, Copy, Debug)]
struct Plan {
    family: Family,
    vip: IpAddr,
    dip: IpAddr,
}

impl Plan {
    fn new(args: &Args) -> Result<Plan, String> {
        let (vip, dip): (IpAddr, IpAddr) = match args.family {
            Family::V4 => (
                Ipv4Addr::new(198, 51, 100, 1).into(),
                Ipv4Addr::new(192, 0, 2, 1).into(),
            ),
            Family::V6 => (testkit::ipv6::VIP6.into(), testkit::ipv6::DIP6.into()),
        };
        let plan = Plan {
            family: args.family,
            vip: args.vip.unwrap_or(vip),
            dip: args.dip.unwrap_or(dip),
        };
        let v6 = args.family == Family::V6;
        if plan.vip.is_ipv6() != v6 || plan.dip.is_ipv6() != v6 {
            return Err(format!(
                "--vip {} and --dip {} must be IPv{} addresses (--family {})",
                plan.vip,
                plan.dip,
                args.family.number(),
                args.family.number()
            ));
        }
        Ok(plan)
    }

    /// The client of flow 0: the link probe's source.
    fn client0(&self) -> IpAddr {
        match self.family {
            Family::V4 => frame::client_of(0).0.into(),
            Family::V6 => frame::client6_of(0).0.into(),
        }
    }

    /// Whether the server side answers ARP or solicitations for `ip`.
    fn is_server(&self, ip: IpAddr) -> bool {
        match (ip, self.dip) {
            (IpAddr::V4(a), IpAddr::V4(d)) => is_server(a, d),
            (IpAddr::V6(a), IpAddr::V6(d)) => frame::is_server6(a, d),
            _ => false,
        }
    }
}

/// Whether the client side answers ARP or solicitations for `ip`.
fn is_client(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => frame::is_client(a),
        IpAddr::V6(a) => frame::is_client6(a),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProtoArg {
    Udp,
    Tcp,
}

/// RFC 9693's stateful measures with complete TCP connections (`--conn-test`).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ConnTest {
    Setup,
    Teardown,
    Capacity,
}

#[derive(Parser, Debug)]
#[command(
    name = "rvs-pktgen",
    version,
    about = "Traffic generator for the rvs memif benchmark: clients and real servers on two DPDK ports",
    after_help = "EAL arguments go after `--`; without them: -l 1 --in-memory --no-pci and two memif \
                  servers at /tmp/rvs-bench/ext.sock and int.sock (socket-abstract=no)."
)]
struct Args {
    /// Concurrent flows (suffixes K, M: 10M). Flow i is client 198.51.100.(10 + i/60000)
    /// (IPv6: 2001:db8:100::1:(10 + i/60000)), port 1024 + i%60000; at most 14.7M.
    #[arg(long, default_value = "1K", value_parser = parse_count)]
    flows: u64,
    #[arg(long, value_enum, default_value_t = ProtoArg::Udp)]
    proto: ProtoArg,
    /// Client packets per second (suffixes K, M); 0 sends as fast as the DUT takes them.
    #[arg(long, default_value = "0", value_parser = parse_count)]
    rate: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds before the measurement (longer if opening every flow takes longer).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Milliseconds to wait for replies after the last measured frame.
    #[arg(long, default_value_t = 500)]
    drain_ms: u64,
    /// Every frame opens a new flow (a TCP SYN or the first UDP datagram of a new client port),
    /// walking the whole client space: measures new connections per second.
    #[arg(long)]
    new_conns: bool,
    /// Frame size on the wire in bytes, FCS included (64 = a 60-byte frame in the buffer);
    /// 64 for IPv4 and 84 for IPv6 (the same L4 header and payload) when not given.
    #[arg(long)]
    size: Option<usize>,
    /// Address family: 4, or 6 (IPv6 addresses, neighbour discovery instead of ARP).
    #[arg(long, value_enum, default_value = "4")]
    family: Family,
    /// The VIP; 198.51.100.1, or 2001:db8:100::1 with --family 6, when not given.
    #[arg(long)]
    vip: Option<IpAddr>,
    /// Virtual port; 9000 for UDP and 80 for TCP when not given.
    #[arg(long)]
    vport: Option<u16>,
    /// The DUT's address on the real-server side (never answered by the server side's ARP or
    /// neighbour advertisements); 192.0.2.1, or 2001:db8:2::1 with --family 6, when not given.
    #[arg(long)]
    dip: Option<IpAddr>,
    /// DPDK device of the client side.
    #[arg(long, default_value = "net_memif0")]
    ext_dev: String,
    /// DPDK device of the real-server side.
    #[arg(long, default_value = "net_memif1")]
    int_dev: String,
    /// The DUT's client-side MAC; given, it is not resolved by ARP or neighbour solicitation
    /// (for testpmd, which forwards frames unchanged and answers neither).
    #[arg(long)]
    dut_mac: Option<String>,
    /// Do not check replies (addresses, flow, checksums): only time them.
    #[arg(long)]
    no_check: bool,
    /// Seconds to wait for both links and the DUT's ARP (or neighbour) answer.
    #[arg(long, default_value_t = 30.0)]
    link_timeout: f64,
    /// After reporting, seconds to wait for the DUT to disconnect before closing the ports.
    #[arg(long, default_value_t = 0.0)]
    linger: f64,
    /// RX/TX queues per port, one per DUT worker (its `[workers] lcores`, or testpmd's --rxq).
    /// memif has no RSS, so rvs-pktgen picks the queue of every frame as RSS would: by a hash of
    /// the frame's own addresses and ports (`frame::queue_of`), so a reply after NAT reaches
    /// another worker than its request for about 1 - 1/N of the flows.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,
    /// Packet buffers per port mempool.
    #[arg(long, default_value_t = 16383)]
    mbufs: u32,
    /// One trial of RFC 9693's stateful measures, with complete TCP connections (handshake, a
    /// data segment each way, both FINs): `setup` opens and closes --flows connections at
    /// --rate per second; `teardown` opens them at --load-rate, holds them, then closes them
    /// at --rate; `capacity` opens them at --load-rate and validates every one at that rate
    /// with one more data exchange. The JSON line says whether every connection completed.
    #[arg(long, value_enum)]
    conn_test: Option<ConnTest>,
    /// Connections per second the connections are opened at (and validated at) before the
    /// measured phase of `--conn-test teardown` and `capacity`.
    #[arg(long, default_value = "50K", value_parser = parse_count)]
    load_rate: u64,
    /// A label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// EAL arguments (after `--`).
    #[arg(last = true, allow_hyphen_values = true)]
    eal: Vec<String>,
}

/// "10M" -> 10_000_000, "1K" -> 1000, "1500" -> 1500.
fn parse_count(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("bad count {s:?} (e.g. 1000, 100K, 10M)"))
}

/// Counters of one run. Only the lcore writes them; they are read at the end.
#[derive(Default)]
struct Counters {
    /// Client frames sent, all phases.
    sent: u64,
    /// Client frames sent during the measurement window.
    sent_win: u64,
    /// Valid replies received, all phases.
    rcvd: u64,
    /// Valid replies to frames sent in the window.
    rcvd_win: u64,
    /// Replies that failed a check, by `Mismatch` (index in Mismatch::ALL).
    mismatch: [u64; 7],
    /// Frames from the DUT on the server side that could not be reflected, by kind.
    server_mismatch: [u64; 7],
    reflected: u64,
    /// TCP segments the stateless server does not answer.
    server_ignored: u64,
    /// Reflected frames the DUT did not take (its RX ring full), dropped here.
    server_tx_drop: u64,
    /// Those of them dropped during the measurement window.
    server_tx_drop_win: u64,
    /// Client bursts the DUT did not take whole (retried, so not lost).
    client_tx_short: u64,
    mbuf_alloc_fail: u64,
    arp_answered: u64,
    /// Neighbour solicitations answered (IPv6).
    ndp_answered: u64,
    /// ARP or ICMPv6 frames not answered (not for us, or not a request).
    other: u64,
    /// Time (TSC) every flow had been opened once; 0 while not.
    all_opened_at: u64,
    /// Replies reflected onto another queue (DUT worker) than the request came from.
    replies_to_other_queue: u64,
    /// Valid replies received, by client-side queue (DUT worker), all phases.
    replies_by_queue: Vec<u64>,
}

fn mismatch_index(m: Mismatch) -> usize {
    Mismatch::ALL.iter().position(|&x| x == m).unwrap_or(0)
}

struct Ports {
    ext: Port,
    int: Port,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvs-pktgen: {e}");
            // The script reads the JSON line whatever happened.
            println!("{}", serde_json::json!({ "label": args.label, "error": e }));
            ExitCode::FAILURE
        }
    }
}

fn port_config(name: &str, device: &str) -> PortConfig {
    PortConfig {
        name: name.into(),
        device: device.into(),
        role: PortRole::Both,
        addresses: Vec::new(),
        mac: None,
        gateway: None,
        addresses6: Vec::new(),
        gateway6: None,
        mtu: 1500,
        rx_ring: 1024,
        tx_ring: 1024,
        kernel_twin: None,
    }
}

fn run(args: &Args) -> Result<(), String> {
    let plan = Plan::new(args)?;
    if plan.family == Family::V6 && args.conn_test.is_some() {
        return Err("--conn-test runs over IPv4 only (session.rs)".into());
    }
    let proto = match args.proto {
        ProtoArg::Udp => Proto::Udp,
        ProtoArg::Tcp => Proto::Tcp,
    };
    let vport = args.vport.unwrap_or(match proto {
        Proto::Udp => 9000,
        Proto::Tcp => 80,
    });
    if args.flows == 0 || args.flows > u64::from(frame::MAX_FLOWS) {
        return Err(format!(
            "--flows must be 1..={} (the client address space)",
            frame::MAX_FLOWS
        ));
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0 && args.link_timeout > 0.0) {
        return Err("--duration must be > 0, --warmup >= 0, --link-timeout > 0".into());
    }
    let min_frame = match plan.family {
        Family::V4 => frame::MIN_FRAME,
        Family::V6 => frame::MIN_FRAME6,
    };
    let size = args.size.unwrap_or(min_frame + 4);
    let frame_len = size
        .checked_sub(4)
        .filter(|l| (min_frame..=frame::MAX_FRAME).contains(l))
        .ok_or_else(|| {
            format!(
                "--size {size} outside {}..={} for IPv{} (bytes on the wire, FCS included)",
                min_frame + 4,
                frame::MAX_FRAME + 4,
                plan.family.number()
            )
        })?;
    let dut_mac = match &args.dut_mac {
        Some(m) => Some(
            m.parse::<MacAddr>()
                .map_err(|e| format!("--dut-mac: {e}"))?
                .0,
        ),
        None => None,
    };

    let eal_args: Vec<String> = if args.eal.is_empty() {
        std::fs::create_dir_all("/tmp/rvs-bench")
            .map_err(|e| format!("cannot create /tmp/rvs-bench: {e}"))?;
        DEFAULT_EAL.iter().map(|s| s.to_string()).collect()
    } else {
        args.eal.clone()
    };
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    eal::init(&eal_args).map_err(|e| e.to_string())?;
    let ext = Port::start(&port_config("ext", &args.ext_dev), args.queues, args.mbufs)
        .map_err(|e| e.to_string())?;
    let int = Port::start(&port_config("int", &args.int_dev), args.queues, args.mbufs)
        .map_err(|e| e.to_string())?;
    let ports = Ports { ext, int };
    let result = match args.conn_test {
        Some(test) => {
            let mode = match test {
                ConnTest::Setup => rvs_benches::session::Mode::Setup,
                ConnTest::Teardown => rvs_benches::session::Mode::Teardown,
                ConnTest::Capacity => rvs_benches::session::Mode::Capacity,
            };
            conn::bench(args, &plan, &ports, mode, args.vport.unwrap_or(80), dut_mac)
        }
        None => bench(args, &plan, &ports, proto, vport, frame_len, dut_mac),
    };
    if let Ok(report) = &result {
        println!("{report}");
        // Flushed now: the script waits for this line before it stops the DUT.
        let _ = std::io::Write::flush(&mut std::io::stdout());
        linger(args, &ports);
    }
    ports.ext.stop();
    ports.int.stop();
    eal::cleanup();
    result.map(|_| ())
}

/// Keeps the memif connections open (dropping whatever arrives) until the DUT has gone, so the
/// DUT disconnects first: testpmd, as memif client, was seen to crash when its server went away.
fn linger(args: &Args, ports: &Ports) {
    let hz = eal::tsc_hz();
    let deadline = eal::tsc() + (args.linger * hz as f64) as u64;
    let mut rx = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    while eal::tsc() < deadline
        && !STOP.load(Ordering::Relaxed)
        && (link_up(ports.ext.id) || link_up(ports.int.id))
    {
        for (id, q) in [ports.ext.id, ports.int.id]
            .into_iter()
            .flat_map(|id| (0..args.queues).map(move |q| (id, q)))
        {
            // SAFETY: the port is started; its queues are ours; what arrives is ours to free.
            unsafe {
                let n = sys::rte_eth_rx_burst(id, q, rx.as_mut_ptr(), BURST as u16);
                if n > 0 {
                    sys::rte_pktmbuf_free_bulk(rx.as_mut_ptr(), u32::from(n));
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn link_up(port: u16) -> bool {
    let mut link = sys::rte_eth_link::default();
    // SAFETY: valid port id and out pointer.
    let ret = unsafe { sys::rte_eth_link_get_nowait(port, &mut link) };
    ret == 0 && link.link_status() != 0
}

/// Sends `frames` mbufs on `port`'s `queue`, retrying a few times; returns how many the port
/// took and frees the rest.
///
/// # Safety
/// Every pointer in `frames` must be a valid mbuf owned by the caller.
unsafe fn send_all(port: u16, queue: u16, frames: &mut [*mut sys::rte_mbuf]) -> usize {
    let mut sent = 0usize;
    for _ in 0..TX_TRIES {
        sent += usize::from(sys::rte_eth_tx_burst(
            port,
            queue,
            frames.as_mut_ptr().add(sent),
            (frames.len() - sent) as u16,
        ));
        if sent == frames.len() {
            return sent;
        }
    }
    let rest = &mut frames[sent..];
    sys::rte_pktmbuf_free_bulk(rest.as_mut_ptr(), rest.len() as u32);
    sent
}

/// The data of `m` and its tailroom, to answer an ARP request or a neighbour solicitation in
/// place: the padded ARP reply (60 bytes) is longer than a request without padding (the
/// kernel's, 42 bytes over veth), an advertisement (86) than a solicitation without options.
///
/// # Safety
/// `m` must be a valid single-segment mbuf owned by the caller; no other slice of its data may
/// be used while this one is.
unsafe fn arp_room<'a>(m: *mut sys::rte_mbuf) -> &'a mut [u8] {
    rvsd::dpdk::mbuf::data_with_room(m).0
}

/// Allocates one frame from `pool` filled by `fill`, sends it on `port`.
fn send_one(port: &Port, fill: impl FnOnce(&mut [u8]) -> usize) {
    // SAFETY: the port's mempool lives as long as the port.
    if let Some(m) = unsafe { rvsd::dpdk::mbuf::alloc_with(port.pool, fill) } {
        let mut one = [m];
        // SAFETY: m is a valid mbuf we own.
        unsafe { send_all(port.id, 0, &mut one) };
    }
}

/// Whether the server side answers ARP for `ip`: the server subnet but its network, broadcast
/// and the DUT's own address.
fn is_server(ip: Ipv4Addr, dip: Ipv4Addr) -> bool {
    let o = ip.octets();
    u32::from(ip) & 0xffff_ff00 == u32::from(SERVER_NET) && o[3] != 0 && o[3] != 255 && ip != dip
}

/// Waits for both links, then learns the DUT's client-side MAC by ARP (IPv6: a neighbour
/// solicitation) for the VIP.
fn prepare(
    args: &Args,
    plan: &Plan,
    ports: &Ports,
    dut_mac: Option<[u8; 6]>,
) -> Result<[u8; 6], String> {
    let hz = eal::tsc_hz();
    let deadline = eal::tsc() + (args.link_timeout * hz as f64) as u64;
    while !(link_up(ports.ext.id) && link_up(ports.int.id)) {
        if STOP.load(Ordering::Relaxed) || eal::tsc() > deadline {
            return Err(format!(
                "links not up after {} s (ext {}, int {}): is the DUT running as memif client \
                 on the same sockets?",
                args.link_timeout,
                if link_up(ports.ext.id) { "up" } else { "down" },
                if link_up(ports.int.id) { "up" } else { "down" }
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if let Some(mac) = dut_mac {
        return Ok(mac);
    }
    let client0 = plan.client0();
    let mut last_req = 0u64;
    let mut rx = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    loop {
        let now = eal::tsc();
        if STOP.load(Ordering::Relaxed) || now > deadline {
            return Err(format!(
                "the DUT did not answer {} for {} on {} within {} s",
                match plan.family {
                    Family::V4 => "ARP",
                    Family::V6 => "a neighbour solicitation",
                },
                plan.vip,
                args.ext_dev,
                args.link_timeout
            ));
        }
        if now - last_req > hz / 10 {
            last_req = now;
            send_one(&ports.ext, |buf| {
                frame::build_probe(buf, ports.ext.mac, client0, plan.vip)
            });
        }
        for (port, ours) in [(&ports.ext, true), (&ports.int, false)] {
            // SAFETY: the port is started; queue 0 is ours.
            let n = usize::from(unsafe { sys::rte_eth_rx_burst(port.id, 0, rx.as_mut_ptr(), 32) });
            let mut found = None;
            for &m in &rx[..n] {
                // SAFETY: m came from rx_burst and is ours.
                let f = unsafe { rvsd::dpdk::mbuf::data_mut(m) };
                if ours {
                    found = found.or(frame::probe_answer(f, plan.vip));
                }
                // The DUT may already ask for clients or servers: answer, as in the run.
                // SAFETY: as above; `f` is not used after this.
                let room = unsafe { arp_room(m) };
                let answer = if ours {
                    frame::answer_neighbour(room, port.mac, is_client)
                } else {
                    frame::answer_neighbour(room, port.mac, |ip| plan.is_server(ip))
                };
                if let Some(len) = answer {
                    // SAFETY: valid single-segment mbuf; the answer fits its data room.
                    unsafe { sys::rvs_mbuf_set_len(m, len as u16) };
                    let mut one = [m];
                    // SAFETY: m is ours; send_all takes or frees it.
                    unsafe { send_all(port.id, 0, &mut one) };
                } else {
                    // SAFETY: ours to free.
                    unsafe { sys::rte_pktmbuf_free(m) };
                }
            }
            if let Some(mac) = found {
                return Ok(mac);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn bench(
    args: &Args,
    plan: &Plan,
    ports: &Ports,
    proto: Proto,
    vport: u16,
    frame_len: usize,
    dut_mac: Option<[u8; 6]>,
) -> Result<String, String> {
    let dut = prepare(args, plan, ports, dut_mac)?;
    let hz = eal::tsc_hz();
    let gen = Generator::new(proto, frame_len, ports.ext.mac, dut, plan.vip, vport)?;
    // Latencies are recorded in TSC cycles, up to a minute.
    let mut hist = Histogram::<u64>::new_with_bounds(1, hz.max(2) * 60, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut c = Counters {
        replies_by_queue: vec![0; usize::from(args.queues)],
        ..Counters::default()
    };
    let flows = args.flows as u32;
    let nq = usize::from(args.queues);
    let mut turn = 0u16;
    let check = !args.no_check;
    let warmup = (args.warmup * hz as f64) as u64;
    let window = (args.duration * hz as f64) as u64;
    let drain = args.drain_ms * hz / 1000;
    // Opening 10M flows takes a while; give up when it takes absurdly long.
    let open_deadline = 600 * hz;

    let start = eal::tsc();
    // Measurement window [ws, we) once it started.
    let mut ws: Option<u64> = None;
    let mut we = u64::MAX;
    let mut cursor: u32 = 0; // next flow (established) / next tuple (new-conns)
    let mut opening = true; // first pass over the flows: TCP sends SYNs
                            // Client frames built, not yet taken by the DUT, by queue: [head, head + len) of each.
    let mut pending = vec![[std::ptr::null_mut::<sys::rte_mbuf>(); BURST]; nq];
    let (mut p_head, mut p_len, mut p_tsc) = (vec![0usize; nq], vec![0usize; nq], 0u64);
    let mut built = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    let mut rx = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    // Frames to send back, by queue.
    let mut out = vec![[std::ptr::null_mut::<sys::rte_mbuf>(); BURST]; nq];
    let mut n_out = vec![0usize; nq];
    let mut free = [std::ptr::null_mut::<sys::rte_mbuf>(); BURST];
    let mut next_report = start + hz;
    let mut last_report = (start, 0u64, 0u64);

    loop {
        let now = eal::tsc();
        if STOP.load(Ordering::Relaxed) && now < we {
            // Interrupted: measure what was sent so far, then drain.
            we = now;
            ws.get_or_insert(now);
        }
        if ws.is_none() {
            let opened = args.new_conns || c.all_opened_at != 0;
            if now - start >= warmup && opened {
                ws = Some(now);
                we = now + window;
            } else if now - start > open_deadline {
                return Err(format!(
                    "opening {} flows took more than {} s",
                    flows,
                    open_deadline / hz
                ));
            }
        }
        let sending = now < we;
        if !sending && now >= we.saturating_add(drain) {
            break;
        }

        // --- client side: send
        if sending {
            if p_len.iter().all(|&l| l == 0) {
                let allowed = if args.rate == 0 {
                    BURST as u64
                } else {
                    let due = ((now - start) as u128 * args.rate as u128 / hz as u128) as u64;
                    due.saturating_sub(c.sent).min(BURST as u64)
                };
                let n = allowed as usize;
                // SAFETY: valid mempool; `built` has room for BURST pointers.
                if n > 0
                    && unsafe {
                        sys::rte_pktmbuf_alloc_bulk(ports.ext.pool, built.as_mut_ptr(), n as u32)
                    } == 0
                {
                    p_head.fill(0);
                    for &m in &built[..n] {
                        let (idx, syn) = if args.new_conns {
                            let i = cursor;
                            cursor = if cursor + 1 == frame::MAX_FLOWS {
                                0
                            } else {
                                cursor + 1
                            };
                            (i, true)
                        } else {
                            let i = cursor;
                            let syn = opening;
                            cursor += 1;
                            if cursor == flows {
                                cursor = 0;
                                if opening {
                                    opening = false;
                                    c.all_opened_at = now;
                                }
                            }
                            (i, syn)
                        };
                        // SAFETY: a fresh mbuf from our pool; its data room (2048 bytes)
                        // holds any frame Generator accepts (<= 1514).
                        unsafe {
                            let room = sys::rte_pktmbuf_tailroom(m) as usize;
                            let buf = std::slice::from_raw_parts_mut(
                                sys::rvs_mbuf_data(m) as *mut u8,
                                room,
                            );
                            let len = gen.write(buf, idx, syn && proto == Proto::Tcp, now);
                            sys::rvs_mbuf_set_len(m, len as u16);
                            let q = usize::from(frame::queue_of(&buf[..len], args.queues));
                            pending[q][p_len[q]] = m;
                            p_len[q] += 1;
                        }
                    }
                    p_tsc = now;
                } else if n > 0 {
                    c.mbuf_alloc_fail += 1;
                }
            }
            for q in 0..nq {
                if p_len[q] == 0 {
                    continue;
                }
                // SAFETY: pending[q][p_head..p_head + p_len] are built mbufs we own.
                let k = usize::from(unsafe {
                    sys::rte_eth_tx_burst(
                        ports.ext.id,
                        q as u16,
                        pending[q].as_mut_ptr().add(p_head[q]),
                        p_len[q] as u16,
                    )
                });
                c.sent += k as u64;
                if ws.is_some_and(|s| p_tsc >= s) && p_tsc < we {
                    c.sent_win += k as u64;
                }
                if k < p_len[q] {
                    c.client_tx_short += 1;
                }
                p_head[q] += k;
                p_len[q] -= k;
            }
        } else {
            for q in 0..nq {
                if p_len[q] > 0 {
                    // Built but never sent before the window closed: not counted anywhere.
                    // SAFETY: ours to free.
                    unsafe {
                        sys::rte_pktmbuf_free_bulk(
                            pending[q].as_mut_ptr().add(p_head[q]),
                            p_len[q] as u32,
                        )
                    };
                    p_len[q] = 0;
                }
            }
        }

        // --- server side: reflect what the DUT forwarded, each answer on its own tuple's queue
        // One queue of each port per turn (a queue per DUT worker).
        let q_in = turn % args.queues;
        turn = turn.wrapping_add(1);
        // SAFETY: the port is started; its queues are ours.
        let n = usize::from(unsafe {
            sys::rte_eth_rx_burst(ports.int.id, q_in, rx.as_mut_ptr(), BURST as u16)
        });
        if n > 0 {
            let mut n_free = 0usize;
            for &m in &rx[..n] {
                // SAFETY: m came from rx_burst and is ours until sent or freed.
                let f = unsafe { rvsd::dpdk::mbuf::data_mut(m) };
                let keep = if frame::is_arp_or_ndp(f) {
                    let arp = frame::is_arp(f);
                    // SAFETY: as above; `f` is not used after this.
                    let room = unsafe { arp_room(m) };
                    match frame::answer_neighbour(room, ports.int.mac, |ip| plan.is_server(ip)) {
                        Some(len) => {
                            if arp {
                                c.arp_answered += 1;
                            } else {
                                c.ndp_answered += 1;
                            }
                            // SAFETY: valid mbuf; the reply fits its data room.
                            unsafe { sys::rvs_mbuf_set_len(m, len as u16) };
                            true
                        }
                        None => {
                            c.other += 1;
                            false
                        }
                    }
                } else {
                    match frame::reflect(f, check) {
                        Ok(Reflected::Reply) => {
                            c.reflected += 1;
                            true
                        }
                        Ok(Reflected::Ignored) => {
                            c.server_ignored += 1;
                            false
                        }
                        Err(e) => {
                            c.server_mismatch[mismatch_index(e)] += 1;
                            false
                        }
                    }
                };
                if keep {
                    // SAFETY: as above; `f` is not used after this.
                    let answer = unsafe { rvsd::dpdk::mbuf::data_mut(m) };
                    let q = usize::from(frame::queue_of(answer, args.queues));
                    c.replies_to_other_queue += u64::from(q != usize::from(q_in));
                    out[q][n_out[q]] = m;
                    n_out[q] += 1;
                } else {
                    free[n_free] = m;
                    n_free += 1;
                }
            }
            for q in 0..nq {
                if n_out[q] > 0 {
                    // SAFETY: out[q][..n_out[q]] are mbufs we own; send_all takes or frees them.
                    let sent = unsafe { send_all(ports.int.id, q as u16, &mut out[q][..n_out[q]]) };
                    c.server_tx_drop += (n_out[q] - sent) as u64;
                    if ws.is_some() && sending {
                        c.server_tx_drop_win += (n_out[q] - sent) as u64;
                    }
                    n_out[q] = 0;
                }
            }
            if n_free > 0 {
                // SAFETY: ours to free.
                unsafe { sys::rte_pktmbuf_free_bulk(free.as_mut_ptr(), n_free as u32) };
            }
        }

        // --- client side: receive and check replies
        // SAFETY: the port is started; its queues are ours.
        let n = usize::from(unsafe {
            sys::rte_eth_rx_burst(ports.ext.id, q_in, rx.as_mut_ptr(), BURST as u16)
        });
        if n > 0 {
            let now = eal::tsc();
            let (mut n_arp, mut n_free) = (0usize, 0usize);
            for &m in &rx[..n] {
                // SAFETY: m came from rx_burst and is ours until sent or freed.
                let f = unsafe { rvsd::dpdk::mbuf::data_mut(m) };
                if frame::is_arp_or_ndp(f) {
                    let arp = frame::is_arp(f);
                    // SAFETY: as above; `f` is not used after this.
                    let room = unsafe { arp_room(m) };
                    if let Some(len) = frame::answer_neighbour(room, ports.ext.mac, is_client) {
                        if arp {
                            c.arp_answered += 1;
                        } else {
                            c.ndp_answered += 1;
                        }
                        // SAFETY: valid mbuf; the reply fits its data room.
                        unsafe { sys::rvs_mbuf_set_len(m, len as u16) };
                        out[0][n_arp] = m;
                        n_arp += 1;
                        continue;
                    }
                    c.other += 1;
                } else {
                    let reply = if check {
                        frame::check_reply(f, proto, plan.vip, vport, true)
                            .and_then(|r| {
                                // Established flows only come from this run's flows.
                                if !args.new_conns && r.flow >= flows {
                                    Err(Mismatch::Destination)
                                } else {
                                    Ok(r)
                                }
                            })
                            .map(|r| r.tsc48)
                    } else {
                        frame::read_tsc(f)
                    };
                    match reply {
                        Ok(tsc48) => {
                            c.rcvd += 1;
                            c.replies_by_queue[usize::from(q_in)] += 1;
                            if let Some(s) = ws {
                                // In the window when sent in [ws, we), in 48-bit arithmetic.
                                let since = tsc48.wrapping_sub(s) & frame::TSC_MASK;
                                if since < we.saturating_sub(s) {
                                    c.rcvd_win += 1;
                                    let lat = now.wrapping_sub(tsc48) & frame::TSC_MASK;
                                    hist.saturating_record(lat.max(1));
                                }
                            }
                        }
                        Err(e) => c.mismatch[mismatch_index(e)] += 1,
                    }
                }
                free[n_free] = m;
                n_free += 1;
            }
            if n_arp > 0 {
                // SAFETY: ARP replies we own; send_all takes or frees them.
                unsafe { send_all(ports.ext.id, 0, &mut out[0][..n_arp]) };
            }
            if n_free > 0 {
                // SAFETY: ours to free.
                unsafe { sys::rte_pktmbuf_free_bulk(free.as_mut_ptr(), n_free as u32) };
            }
        }

        if !args.quiet && now >= next_report {
            let dt = (now - last_report.0) as f64 / hz as f64;
            let phase = match ws {
                None => "warmup",
                Some(_) if now < we => "measure",
                Some(_) => "drain",
            };
            eprintln!(
                "rvs-pktgen: {:5.1}s {phase:7} sent {:.3} Mpps, replies {:.3} Mpps, mismatches {}, server-side drops {}",
                (now - start) as f64 / hz as f64,
                (c.sent - last_report.1) as f64 / dt / 1e6,
                (c.rcvd - last_report.2) as f64 / dt / 1e6,
                c.mismatch.iter().sum::<u64>() + c.server_mismatch.iter().sum::<u64>(),
                c.server_tx_drop,
            );
            last_report = (now, c.sent, c.rcvd);
            next_report = now + hz;
        }
    }

    let ws = ws.unwrap_or(start);
    let win_s = we.saturating_sub(ws) as f64 / hz as f64;
    Ok(report(
        args, plan, ports, proto, vport, frame_len, dut, &c, &hist, hz, win_s, start, ws,
    ))
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    plan: &Plan,
    ports: &Ports,
    proto: Proto,
    vport: u16,
    frame_len: usize,
    dut: [u8; 6],
    c: &Counters,
    hist: &Histogram<u64>,
    hz: u64,
    win_s: f64,
    start: u64,
    ws: u64,
) -> String {
    let ns = |cycles: u64| cycles as f64 * 1e9 / hz as f64;
    let lost = c.sent_win.saturating_sub(c.rcvd_win);
    let loss_pct = if c.sent_win > 0 {
        lost as f64 * 100.0 / c.sent_win as f64
    } else {
        0.0
    };
    let delivered = if win_s > 0.0 {
        c.rcvd_win as f64 / win_s
    } else {
        0.0
    };
    let offered = if win_s > 0.0 {
        c.sent_win as f64 / win_s
    } else {
        0.0
    };
    let q = |p: f64| ns(hist.value_at_quantile(p)) / 1000.0;
    let (p50, p99, p999, max, mean) = if hist.is_empty() {
        (0.0, 0.0, 0.0, 0.0, 0.0)
    } else {
        (
            q(0.5),
            q(0.99),
            q(0.999),
            ns(hist.max()) / 1000.0,
            ns(hist.mean() as u64) / 1000.0,
        )
    };
    let mismatches: u64 = c.mismatch.iter().sum();
    let server_mismatches: u64 = c.server_mismatch.iter().sum();
    let by_kind = |arr: &[u64; 7]| {
        let mut m = serde_json::Map::new();
        for (k, v) in Mismatch::ALL.iter().zip(arr) {
            if *v > 0 {
                m.insert(k.name().into(), (*v).into());
            }
        }
        serde_json::Value::Object(m)
    };
    let open_s = if c.all_opened_at != 0 {
        Some((c.all_opened_at - start) as f64 / hz as f64)
    } else {
        None
    };
    let stats = |p: &Port| {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port id and out pointer.
        unsafe { sys::rte_eth_stats_get(p.id, &mut s) };
        serde_json::json!({
            "ipackets": s.ipackets, "opackets": s.opackets, "imissed": s.imissed,
            "ierrors": s.ierrors, "oerrors": s.oerrors, "rx_nombuf": s.rx_nombuf,
        })
    };

    eprintln!(
        "rvs-pktgen: IPv{} {} {} flows{}, {} B frames, rate {}, {:.2} s measured (warm-up {:.2} s{})",
        plan.family.number(),
        match proto {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        },
        args.flows,
        if args.new_conns {
            " (new connection per frame)"
        } else {
            ""
        },
        frame_len + 4,
        if args.rate == 0 {
            "max".to_string()
        } else {
            format!("{} pps", args.rate)
        },
        win_s,
        (ws - start) as f64 / hz as f64,
        open_s
            .map(|s| format!(", all flows opened after {s:.2} s"))
            .unwrap_or_default(),
    );
    eprintln!(
        "  sent {} ({:.3} Mpps), replies {} ({:.3} Mpps{}), lost {} ({:.4} %)",
        c.sent_win,
        offered / 1e6,
        c.rcvd_win,
        delivered / 1e6,
        if args.new_conns {
            " = new connections/s"
        } else {
            ""
        },
        lost,
        loss_pct
    );
    eprintln!(
        "  round trip latency: p50 {p50:.2} us, p99 {p99:.2} us, p99.9 {p999:.2} us, max {max:.2} us"
    );
    eprintln!(
        "  mismatches: replies {mismatches}, server side {server_mismatches}; server-side tx drops {}, \
         client bursts retried {}, ARP answered {}, neighbour solicitations answered {}",
        c.server_tx_drop, c.client_tx_short, c.arp_answered, c.ndp_answered
    );

    serde_json::json!({
        "label": args.label,
        "family": plan.family.number(),
        "proto": match proto { Proto::Udp => "udp", Proto::Tcp => "tcp" },
        "flows": args.flows,
        "new_conns": args.new_conns,
        "size": frame_len + 4,
        "frame_len": frame_len,
        "rate": args.rate,
        "vip": plan.vip.to_string(),
        "vport": vport,
        "dut_mac": MacAddr(dut).to_string(),
        "checked": !args.no_check,
        "window_s": win_s,
        "warmup_s": (ws - start) as f64 / hz as f64,
        "open_s": open_s,
        "sent": c.sent_win,
        "received": c.rcvd_win,
        "lost": lost,
        "loss_pct": loss_pct,
        "offered_mpps": offered / 1e6,
        "delivered_mpps": delivered / 1e6,
        "latency_us": { "p50": p50, "p99": p99, "p999": p999, "max": max, "mean": mean,
                        "samples": hist.len() },
        "mismatches": mismatches,
        "mismatch_kinds": by_kind(&c.mismatch),
        "server_mismatches": server_mismatches,
        "server_mismatch_kinds": by_kind(&c.server_mismatch),
        "total": { "sent": c.sent, "received": c.rcvd, "reflected": c.reflected,
                   "server_ignored": c.server_ignored, "server_tx_drop": c.server_tx_drop,
                   "server_tx_drop_win": c.server_tx_drop_win,
                   "client_tx_short": c.client_tx_short, "mbuf_alloc_fail": c.mbuf_alloc_fail,
                   "arp_answered": c.arp_answered, "ndp_answered": c.ndp_answered,
                   "other": c.other,
                   "replies_to_other_queue": c.replies_to_other_queue,
                   "replies_by_queue": c.replies_by_queue },
        "queues": args.queues,
        "port_stats": { "ext": stats(&ports.ext), "int": stats(&ports.int) },
        "tsc_hz": hz,
        "interrupted": STOP.load(Ordering::Relaxed),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_suffixes() {
        assert_eq!(parse_count("1500"), Ok(1500));
        assert_eq!(parse_count("1K"), Ok(1000));
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert_eq!(parse_count("100k"), Ok(100_000));
        assert!(parse_count("x").is_err());
        assert!(parse_count("M").is_err());
        assert!(parse_count("").is_err());
    }

    #[test]
    fn server_side_answers_arp_for_real_servers_only() {
        let dip = Ipv4Addr::new(192, 0, 2, 1);
        assert!(is_server(Ipv4Addr::new(192, 0, 2, 2), dip));
        assert!(is_server(Ipv4Addr::new(192, 0, 2, 254), dip));
        assert!(!is_server(dip, dip));
        assert!(!is_server(Ipv4Addr::new(192, 0, 2, 255), dip));
        assert!(!is_server(Ipv4Addr::new(192, 0, 3, 2), dip));
        assert!(!is_server(Ipv4Addr::new(198, 51, 100, 1), dip));
    }

    #[test]
    fn family_picks_the_addresses() {
        let parse = |extra: &[&str]| {
            let a = Args::try_parse_from([&["rvs-pktgen"][..], extra].concat()).unwrap();
            Plan::new(&a)
        };
        let p = parse(&[]).unwrap();
        assert_eq!(p.family, Family::V4);
        assert_eq!(p.vip, IpAddr::from(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(p.client0(), IpAddr::from(frame::CLIENT_FIRST));
        let p = parse(&["--family", "6"]).unwrap();
        assert_eq!(p.vip, IpAddr::from(testkit::ipv6::VIP6));
        assert_eq!(p.dip, IpAddr::from(testkit::ipv6::DIP6));
        assert_eq!(p.client0(), IpAddr::from(frame::CLIENT6_FIRST));
        assert!(p.is_server(testkit::ipv6::RIP6_1.into()));
        assert!(!p.is_server(testkit::ipv6::DIP6.into()));
        assert!(!p.is_server(Ipv4Addr::new(192, 0, 2, 2).into()));
        assert!(is_client(frame::CLIENT6_FIRST.into()) && !is_client(testkit::ipv6::VIP6.into()));
        let vip6: std::net::Ipv6Addr = "2001:db8:100::7".parse().unwrap();
        let p = parse(&["--family", "6", "--vip", "2001:db8:100::7"]).unwrap();
        assert_eq!(p.vip, IpAddr::from(vip6));
        assert!(parse(&["--vip", "2001:db8:100::7"]).is_err());
        assert!(parse(&["--family", "6", "--dip", "192.0.2.1"]).is_err());
        assert!(Args::try_parse_from(["rvs-pktgen", "--family", "5"]).is_err());
    }

    #[test]
    fn arguments_parse() {
        let a = Args::try_parse_from([
            "rvs-pktgen",
            "--flows",
            "10M",
            "--proto",
            "tcp",
            "--new-conns",
            "--",
            "-l",
            "1",
        ])
        .unwrap();
        assert_eq!(a.flows, 10_000_000);
        assert!(a.new_conns);
        assert_eq!(a.eal, ["-l", "1"]);
    }
}
