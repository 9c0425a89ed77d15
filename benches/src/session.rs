//! Complete TCP connections for RFC 9693's stateful measures (rvs-pktgen `--conn-test`), on
//! plain byte buffers: the client side's per-connection state machine and the segments it
//! sends, the real-server side's answers, every check on what arrives, and the trial's phases
//! and schedule. rvs-pktgen only moves the frames (src/bin/pktgen/conn.rs).
//!
//! One connection, with `D` = [`DATA_LEN`] payload bytes each way:
//!
//! ```text
//! client                                   server (RIP as the DUT makes it; VIP with testpmd)
//! SYN        seq c                    ->
//!                                     <-   SYN-ACK   seq s        ack c+1
//! ACK        seq c+1    ack s+1       ->   (absorbed, counted)
//! PSH-ACK    seq c+1    ack s+1   [D] ->
//!                                     <-   PSH-ACK   seq s+1      ack c+1+D  [D]
//! FIN-ACK    seq c+1+D  ack s+1+D     ->
//!                                     <-   FIN-ACK   seq s+1+D    ack c+2+D
//! ACK        seq c+2+D  ack s+2+D     ->   (absorbed, counted)
//! ```
//!
//! `c` and `s` are both derived from the connection's index (its client address and port, which
//! a VS/NAT director leaves alone), so the server side needs no state and either side checks
//! every sequence and acknowledgement number. The capacity test's validation probe is one more
//! data exchange on an open connection (`seq c+1+D`, answered with `ack c+1+2D`).
//!
//! A trial runs phases (see [`Mode`]): a warm-up of a few connections outside the measured ones
//! (the DUT resolves the real servers' MACs), then the measured phases, each kicking its
//! connections at a fixed rate and reacting to every reply at once. A phase ends when all its
//! connections reached their goal, or `drain` after its last kick; the trial passes when every
//! measured phase completed all of its connections with no fault anywhere. There is no
//! retransmission: one lost segment fails its connection, hence the trial (zero loss).

use crate::frame::{
    self, be16, be32, checksums_ok, parse_l4, put16, put32, Mismatch, ETHERTYPE_IPV4, IP, IP_DST,
    IP_SRC, L4, MIN_FRAME, PROTO_TCP, TCP_ACK, TCP_HLEN, TCP_SYN,
};
use dataplane::packet::checksum::{self, pseudo_header_sum};
use serde_json::{json, Value};
use std::net::Ipv4Addr;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
/// Payload bytes of each data segment: "rvs", a tag, the connection index, zeros.
pub const DATA_LEN: usize = 32;
const D: u32 = DATA_LEN as u32;
/// Connections of one warm-up round, and rounds at most.
pub const WARMUP_CONNS: u32 = 16;
pub const WARMUP_ROUNDS: u32 = 20;
/// The longest frame this module writes (a data segment).
pub const MAX_LEN: usize = L4 + TCP_HLEN + DATA_LEN;

/// The client's initial sequence number of connection `idx` (spread over the whole space, so
/// wrap-around is exercised).
pub fn client_isn(idx: u32) -> u32 {
    idx.wrapping_mul(0x9e37_79b1) ^ 0x5a5a_0000
}

/// The server's initial sequence number of connection `idx`.
pub fn server_isn(idx: u32) -> u32 {
    idx.wrapping_mul(0x85eb_ca6b) ^ 0xc0de_0001
}

/// What a trial measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Complete connections (open, a data segment each way, close) at the rate under test.
    Setup,
    /// Open the connections at the load rate and hold them; then the tear-down (FIN, FIN-ACK,
    /// ACK) of all of them at the rate under test.
    Teardown,
    /// Open the connections at the load rate and hold them; then a validation pass (one more
    /// data exchange on every one of them) at the load rate.
    Capacity,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Setup => "setup",
            Mode::Teardown => "teardown",
            Mode::Capacity => "capacity",
        }
    }
}

/// Where a connection stands (one byte per connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Idle = 0,
    SynSent,
    DataSent,
    /// Data exchanged, held open.
    Open,
    FinSent,
    /// FIN-ACK received and acknowledged.
    Closed,
    ProbeSent,
    Probed,
}

impl Stage {
    const ALL: [Stage; 8] = [
        Stage::Idle,
        Stage::SynSent,
        Stage::DataSent,
        Stage::Open,
        Stage::FinSent,
        Stage::Closed,
        Stage::ProbeSent,
        Stage::Probed,
    ];

    fn name(self) -> &'static str {
        match self {
            Stage::Idle => "idle",
            Stage::SynSent => "syn_sent",
            Stage::DataSent => "data_sent",
            Stage::Open => "open",
            Stage::FinSent => "fin_sent",
            Stage::Closed => "closed",
            Stage::ProbeSent => "probe_sent",
            Stage::Probed => "probed",
        }
    }
}

/// A segment the client side sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegKind {
    Syn,
    /// The handshake's ACK.
    Ack,
    Data,
    /// The capacity test's validation probe.
    Probe,
    Fin,
    /// The ACK of the server's FIN.
    LastAck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    pub idx: u32,
    pub kind: SegKind,
}

/// Why a frame was refused (counted per kind, on each side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Truncated,
    /// Not IPv4 TCP.
    Protocol,
    Checksum,
    /// Client side: not from VIP:vport. Server side: not from a client of this trial.
    Source,
    /// Client side: not to a client of this trial. Server side: not to the service port.
    Destination,
    /// Flags other than those expected at the connection's stage.
    Flags,
    /// A sequence or acknowledgement number other than expected.
    Sequence,
    /// A data segment whose payload is not its connection's.
    Payload,
    /// Client side: a reply to a connection not waiting for one (duplicate, late, stray).
    Stage,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Truncated,
        Fault::Protocol,
        Fault::Checksum,
        Fault::Source,
        Fault::Destination,
        Fault::Flags,
        Fault::Sequence,
        Fault::Payload,
        Fault::Stage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Truncated => "truncated",
            Fault::Protocol => "protocol",
            Fault::Checksum => "checksum",
            Fault::Source => "source",
            Fault::Destination => "destination",
            Fault::Flags => "tcp_flags",
            Fault::Sequence => "sequence",
            Fault::Payload => "payload",
            Fault::Stage => "stage",
        }
    }
}

impl From<Mismatch> for Fault {
    fn from(m: Mismatch) -> Fault {
        match m {
            Mismatch::Truncated => Fault::Truncated,
            Mismatch::Checksum => Fault::Checksum,
            _ => Fault::Protocol,
        }
    }
}

type Faults = [u64; Fault::ALL.len()];

fn count(f: &mut Faults, fault: Fault) {
    if let Some(c) = f.get_mut(fault as usize) {
        *c += 1;
    }
}

fn faults_json(f: &Faults) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in Fault::ALL.iter().zip(f) {
        if *v > 0 {
            m.insert(k.name().into(), (*v).into());
        }
    }
    Value::Object(m)
}

/// Segments the server side absorbed without answering, and what it answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerCounts {
    pub syn: u64,
    pub handshake_ack: u64,
    pub data: u64,
    pub probe: u64,
    pub fin: u64,
    pub last_ack: u64,
}

/// What the server side did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The buffer now holds the answer, this long: send it back out of the same port.
    Reply(usize),
    /// An ACK that needs no answer (counted).
    Absorbed,
}

// ---------------------------------------------------------------------------------------------
// Frames.

/// Both ends of a segment as it is written: MACs, addresses, ports.
#[derive(Debug, Clone, Copy)]
struct Ends {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
}

/// The payload of a data segment: "rvs", `tag`, the connection index, zeros.
fn payload(tag: u8, idx: u32) -> [u8; DATA_LEN] {
    let mut p = [0u8; DATA_LEN];
    p[..3].copy_from_slice(b"rvs");
    p[3] = tag;
    p[4..8].copy_from_slice(&idx.to_be_bytes());
    p
}

/// Writes an IPv4 TCP segment (no options, DF, TTL 64) with both checksums into `buf`, padded
/// to [`MIN_FRAME`]; returns its length, 0 when `buf` is too short.
fn write_segment(
    buf: &mut [u8],
    e: &Ends,
    seq: u32,
    ack: u32,
    flags: u8,
    data: Option<&[u8; DATA_LEN]>,
) -> usize {
    let plen = data.map_or(0, |d| d.len());
    let end = L4 + TCP_HLEN + plen;
    let len = end.max(MIN_FRAME);
    let Some(f) = buf.get_mut(..len) else {
        return 0;
    };
    f.fill(0);
    f[0..6].copy_from_slice(&e.dst_mac);
    f[6..12].copy_from_slice(&e.src_mac);
    put16(f, 12, ETHERTYPE_IPV4);
    f[IP] = 0x45;
    put16(f, IP + 2, (end - IP) as u16);
    put16(f, IP + 6, 0x4000); // DF
    f[IP + 8] = 64;
    f[IP + 9] = PROTO_TCP;
    f[IP_SRC..IP_SRC + 4].copy_from_slice(&e.src.octets());
    f[IP_DST..IP_DST + 4].copy_from_slice(&e.dst.octets());
    let c = checksum::checksum(&f[IP..L4]);
    put16(f, IP + 10, c);
    put16(f, L4, e.sport);
    put16(f, L4 + 2, e.dport);
    put32(f, L4 + 4, seq);
    put32(f, L4 + 8, ack);
    f[L4 + 12] = 0x50;
    f[L4 + 13] = flags;
    put16(f, L4 + 14, 65535);
    if let Some(d) = data {
        f[L4 + TCP_HLEN..end].copy_from_slice(d);
    }
    let sum = pseudo_header_sum(e.src, e.dst, PROTO_TCP, (end - L4) as u16);
    let c = !checksum::fold(checksum::sum(&f[L4..end], sum));
    put16(f, L4 + 16, c);
    len
}

/// A TCP segment that passed the common checks: its addresses, ports, flags (FIN SYN RST PSH
/// ACK), numbers and payload offsets.
struct Tcp {
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: usize,
    payload_len: usize,
}

fn parse_tcp(f: &[u8]) -> Result<Tcp, Fault> {
    let v = parse_l4(f)?;
    if v.proto != PROTO_TCP {
        return Err(Fault::Protocol);
    }
    if !checksums_ok(f, &v) {
        return Err(Fault::Checksum);
    }
    Ok(Tcp {
        src: Ipv4Addr::from(be32(f, IP_SRC)),
        sport: be16(f, v.l4),
        dst: Ipv4Addr::from(be32(f, IP_DST)),
        dport: be16(f, v.l4 + 2),
        flags: f[v.l4 + 13] & 0x1f,
        seq: be32(f, v.l4 + 4),
        ack: be32(f, v.l4 + 8),
        payload: v.payload,
        payload_len: v.end - v.payload,
    })
}

/// Whether `t` carries the data payload `tag` of connection `idx`.
fn data_ok(f: &[u8], t: &Tcp, tag: u8, idx: u32) -> bool {
    t.payload_len == DATA_LEN
        && f.get(t.payload..t.payload + DATA_LEN) == Some(&payload(tag, idx)[..])
}

// ---------------------------------------------------------------------------------------------
// The trial.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kick {
    Open,
    Close,
    Probe,
}

/// One phase: connections `first..first + conns`, kicked at `rate` per second, to `goal`.
#[derive(Debug, Clone)]
struct Phase {
    name: &'static str,
    first: u32,
    conns: u32,
    rate: u64,
    kick: Kick,
    /// Setup closes a connection as soon as its data came back.
    close: bool,
    goal: Stage,
    // progress
    kicked: u32,
    done: u32,
    start: u64,
    first_kick: u64,
    last_kick: u64,
    last_done: u64,
    tx_failed: u64,
    /// The ACKs the server side absorbs without answering (the handshake's, the last one):
    /// which this phase's connections send (bits of [`ACK_HANDSHAKE`], [`ACK_LAST`]), how many
    /// it expects and how many arrived (each once).
    ack_kinds: u8,
    acks_expected: u64,
    acks: u64,
    client_faults: Faults,
    server_faults: Faults,
    /// When it ended: how many of its connections stood at each stage short of the goal.
    left: [u32; Stage::ALL.len()],
}

/// Bits of the per-connection record of absorbed ACKs the server side saw.
const ACK_HANDSHAKE: u8 = 1;
const ACK_LAST: u8 = 2;

impl Phase {
    /// With `close`, an opened connection is closed as soon as its data came back.
    fn new(
        name: &'static str,
        first: u32,
        conns: u32,
        rate: u64,
        kick: Kick,
        close: bool,
    ) -> Phase {
        let goal = match kick {
            Kick::Open if close => Stage::Closed,
            Kick::Open => Stage::Open,
            Kick::Close => Stage::Closed,
            Kick::Probe => Stage::Probed,
        };
        let ack_kinds = match kick {
            Kick::Open if close => ACK_HANDSHAKE | ACK_LAST,
            Kick::Open => ACK_HANDSHAKE,
            Kick::Close => ACK_LAST,
            Kick::Probe => 0,
        };
        Phase {
            name,
            first,
            conns,
            rate,
            kick,
            close,
            goal,
            kicked: 0,
            done: 0,
            start: 0,
            first_kick: 0,
            last_kick: 0,
            last_done: 0,
            tx_failed: 0,
            ack_kinds,
            acks_expected: u64::from(conns) * u64::from(ack_kinds.count_ones()),
            acks: 0,
            client_faults: [0; Fault::ALL.len()],
            server_faults: [0; Fault::ALL.len()],
            left: [0; Stage::ALL.len()],
        }
    }

    /// Every connection reached the goal and every absorbed ACK arrived.
    fn complete(&self) -> bool {
        self.done == self.conns && self.acks == self.acks_expected
    }

    fn passed(&self) -> bool {
        self.complete()
            && self.tx_failed == 0
            && self.client_faults.iter().all(|&c| c == 0)
            && self.server_faults.iter().all(|&c| c == 0)
    }
}

/// The trial's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub mode: Mode,
    /// Connections measured (the table capacity test: held at once).
    pub conns: u32,
    /// The rate under test, connections per second (setup, tear-down).
    pub rate: u64,
    /// The safe rate the connections are opened at and validated at (tear-down, capacity).
    pub load_rate: u64,
    /// Ticks after a phase's last kick before its missing connections count as failed.
    pub drain: u64,
    /// Ticks per second of the clock `now` is read from.
    pub hz: u64,
    pub vip: Ipv4Addr,
    pub vport: u16,
    /// The generator's client-side MAC and the DUT's.
    pub client_mac: [u8; 6],
    pub dut_mac: [u8; 6],
}

/// One trial: the connections' stages, the phases, the counters.
pub struct Trial {
    cfg: Config,
    stages: Vec<u8>,
    phases: Vec<Phase>,
    /// The phase running (index in `phases`); `phases.len()` once over.
    cur: usize,
    /// Per connection, the absorbed ACKs the server side saw ([`ACK_HANDSHAKE`], [`ACK_LAST`]).
    ackbits: Vec<u8>,
    warmup_rounds: u32,
    pub server: ServerCounts,
}

impl Trial {
    pub fn new(cfg: Config) -> Result<Trial, String> {
        let total = u64::from(cfg.conns) + u64::from(WARMUP_CONNS * WARMUP_ROUNDS);
        if cfg.conns == 0 || total > u64::from(frame::MAX_FLOWS) {
            return Err(format!(
                "connections must be 1..={} (the client space less the warm-up's)",
                frame::MAX_FLOWS - WARMUP_CONNS * WARMUP_ROUNDS
            ));
        }
        if cfg.rate == 0 || cfg.load_rate == 0 || cfg.hz == 0 {
            return Err("the rates (--rate, --load-rate) must be > 0".into());
        }
        let (n, rate, load) = (cfg.conns, cfg.rate, cfg.load_rate);
        let warm = Phase::new("warmup", n, WARMUP_CONNS, load, Kick::Open, true);
        let measured = match cfg.mode {
            Mode::Setup => vec![Phase::new("setup", 0, n, rate, Kick::Open, true)],
            Mode::Teardown => vec![
                Phase::new("load", 0, n, load, Kick::Open, false),
                Phase::new("teardown", 0, n, rate, Kick::Close, false),
            ],
            Mode::Capacity => vec![
                Phase::new("load", 0, n, load, Kick::Open, false),
                Phase::new("validate", 0, n, load, Kick::Probe, false),
            ],
        };
        let mut phases = vec![warm];
        phases.extend(measured);
        Ok(Trial {
            cfg,
            stages: vec![Stage::Idle as u8; total as usize],
            ackbits: vec![0; total as usize],
            phases,
            cur: 0,
            warmup_rounds: 1,
            server: ServerCounts::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether every phase has run.
    pub fn over(&self) -> bool {
        self.cur >= self.phases.len()
    }

    /// The name of the phase running ("over" at the end).
    pub fn phase_name(&self) -> &'static str {
        self.phases.get(self.cur).map_or("over", |p| p.name)
    }

    /// Whether every measured phase completed all its connections with no fault and nothing
    /// left unsent.
    pub fn passed(&self) -> bool {
        self.over() && self.phases.iter().skip(1).all(Phase::passed)
    }

    fn stage(&self, idx: u32) -> Stage {
        let b = self.stages.get(idx as usize).copied().unwrap_or(0);
        Stage::ALL
            .get(usize::from(b))
            .copied()
            .unwrap_or(Stage::Idle)
    }

    fn set(&mut self, idx: u32, s: Stage) {
        if let Some(b) = self.stages.get_mut(idx as usize) {
            *b = s as u8;
        }
    }

    /// Advances the phases at `now`: a phase starts when the previous one ended, and ends when
    /// all its connections reached the goal or `drain` after its last kick. A warm-up round
    /// that did not complete is followed by another on fresh connections (up to
    /// [`WARMUP_ROUNDS`]); the warm-up's outcome does not count.
    pub fn poll(&mut self, now: u64) {
        let Some(p) = self.phases.get_mut(self.cur) else {
            return;
        };
        if p.start == 0 {
            p.start = now.max(1);
            return;
        }
        let all_kicked = p.kicked == p.conns;
        let finished = p.complete() || now.saturating_sub(p.last_kick) > self.cfg.drain;
        if !(all_kicked && finished) {
            return;
        }
        let (first, conns, goal) = (p.first, p.conns, p.goal);
        let mut left = [0u32; Stage::ALL.len()];
        for i in first..first + conns {
            let st = self.stage(i);
            if st != goal {
                left[st as usize] += 1;
            }
        }
        let p = &mut self.phases[self.cur];
        p.left = left;
        if self.cur == 0 && !p.complete() && self.warmup_rounds < WARMUP_ROUNDS {
            let next = p.first + p.conns;
            let load = self.cfg.load_rate;
            self.phases[0] = Phase::new("warmup", next, WARMUP_CONNS, load, Kick::Open, true);
            self.warmup_rounds += 1;
            return;
        }
        self.cur += 1;
    }

    /// The segments due at `now` (new kicks by the phase's rate), at most `out.len()`; returns
    /// how many were written to `out`.
    pub fn due(&mut self, now: u64, out: &mut [Seg]) -> usize {
        let hz = self.cfg.hz;
        let Some(p) = self.phases.get_mut(self.cur) else {
            return 0;
        };
        if p.start == 0 || p.kicked == p.conns {
            return 0;
        }
        let elapsed = u128::from(now.saturating_sub(p.start));
        let due =
            (elapsed * u128::from(p.rate) / u128::from(hz) + 1).min(u128::from(p.conns)) as u32;
        let n = (due.saturating_sub(p.kicked) as usize).min(out.len());
        let kind = match p.kick {
            Kick::Open => SegKind::Syn,
            Kick::Close => SegKind::Fin,
            Kick::Probe => SegKind::Probe,
        };
        let (first, kick) = (p.first + p.kicked, p.kick);
        if n > 0 {
            if p.kicked == 0 {
                p.first_kick = now;
            }
            p.kicked += n as u32;
            p.last_kick = now;
        }
        for (i, slot) in out.iter_mut().take(n).enumerate() {
            let idx = first + i as u32;
            *slot = Seg { idx, kind };
            let next = match kick {
                Kick::Open => Stage::SynSent,
                Kick::Close => Stage::FinSent,
                Kick::Probe => Stage::ProbeSent,
            };
            self.set(idx, next);
        }
        n
    }

    /// `n` segments the generator built but could not send (no buffer, the DUT's ring full):
    /// their connections cannot complete; counted apart from the DUT's failures.
    pub fn tx_failed(&mut self, n: usize) {
        if let Some(p) = self.phases.get_mut(self.cur) {
            p.tx_failed += n as u64;
        }
    }

    /// Writes client segment `seg` into `buf`; returns its length (0: `buf` too short).
    pub fn write(&self, buf: &mut [u8], seg: Seg) -> usize {
        let (ip, port) = frame::client_of(seg.idx);
        let e = Ends {
            src_mac: self.cfg.client_mac,
            dst_mac: self.cfg.dut_mac,
            src: ip,
            sport: port,
            dst: self.cfg.vip,
            dport: self.cfg.vport,
        };
        let (c, s) = (client_isn(seg.idx), server_isn(seg.idx));
        let data = payload(b'C', seg.idx);
        let probe = payload(b'c', seg.idx);
        let (seq, ack, flags, p) = match seg.kind {
            SegKind::Syn => (c, 0, TCP_SYN, None),
            SegKind::Ack => (c.wrapping_add(1), s.wrapping_add(1), TCP_ACK, None),
            SegKind::Data => (
                c.wrapping_add(1),
                s.wrapping_add(1),
                TCP_PSH | TCP_ACK,
                Some(&data),
            ),
            SegKind::Probe => (
                c.wrapping_add(1 + D),
                s.wrapping_add(1 + D),
                TCP_PSH | TCP_ACK,
                Some(&probe),
            ),
            SegKind::Fin => (
                c.wrapping_add(1 + D),
                s.wrapping_add(1 + D),
                TCP_FIN | TCP_ACK,
                None,
            ),
            SegKind::LastAck => (c.wrapping_add(2 + D), s.wrapping_add(2 + D), TCP_ACK, None),
        };
        write_segment(buf, &e, seq, ack, flags, p)
    }

    fn client_fault(&mut self, f: Fault) {
        if let Some(p) = self.phases.get_mut(self.cur) {
            count(&mut p.client_faults, f);
        }
    }

    fn server_fault(&mut self, f: Fault) {
        if let Some(p) = self.phases.get_mut(self.cur) {
            count(&mut p.server_faults, f);
        }
    }

    fn reached(&mut self, idx: u32, stage: Stage, now: u64) {
        self.set(idx, stage);
        if let Some(p) = self.phases.get_mut(self.cur) {
            let mine = idx >= p.first && idx - p.first < p.conns;
            if mine && stage == p.goal {
                p.done += 1;
                p.last_done = now;
            }
        }
    }

    /// The client side: checks a frame that arrived on the client port and moves its
    /// connection on; the segments to send in answer are written to `out` (returns how many).
    /// A refused frame is counted by [`Fault`] and changes nothing.
    pub fn on_reply(&mut self, f: &[u8], now: u64, out: &mut [Seg; 2]) -> usize {
        match self.check_reply(f, now, out) {
            Ok(n) => n,
            Err(e) => {
                self.client_fault(e);
                0
            }
        }
    }

    fn check_reply(&mut self, f: &[u8], now: u64, out: &mut [Seg; 2]) -> Result<usize, Fault> {
        let t = parse_tcp(f)?;
        if t.src != self.cfg.vip || t.sport != self.cfg.vport {
            return Err(Fault::Source);
        }
        let idx = frame::flow_of(t.dst, t.dport)
            .filter(|&i| (i as usize) < self.stages.len())
            .ok_or(Fault::Destination)?;
        let (c, s) = (client_isn(idx), server_isn(idx));
        let expect = |flags: u8, seq: u32, ack: u32| {
            if t.flags != flags {
                Err(Fault::Flags)
            } else if t.seq != seq || t.ack != ack {
                Err(Fault::Sequence)
            } else {
                Ok(())
            }
        };
        let close = self.phases.get(self.cur).is_some_and(|p| p.close);
        match self.stage(idx) {
            Stage::SynSent => {
                expect(TCP_SYN | TCP_ACK, s, c.wrapping_add(1))?;
                if t.payload_len != 0 {
                    return Err(Fault::Payload);
                }
                out[0] = Seg {
                    idx,
                    kind: SegKind::Ack,
                };
                out[1] = Seg {
                    idx,
                    kind: SegKind::Data,
                };
                self.set(idx, Stage::DataSent);
                Ok(2)
            }
            Stage::DataSent => {
                expect(TCP_PSH | TCP_ACK, s.wrapping_add(1), c.wrapping_add(1 + D))?;
                if !data_ok(f, &t, b'S', idx) {
                    return Err(Fault::Payload);
                }
                if close {
                    out[0] = Seg {
                        idx,
                        kind: SegKind::Fin,
                    };
                    self.set(idx, Stage::FinSent);
                    Ok(1)
                } else {
                    self.reached(idx, Stage::Open, now);
                    Ok(0)
                }
            }
            Stage::FinSent => {
                expect(
                    TCP_FIN | TCP_ACK,
                    s.wrapping_add(1 + D),
                    c.wrapping_add(2 + D),
                )?;
                out[0] = Seg {
                    idx,
                    kind: SegKind::LastAck,
                };
                self.reached(idx, Stage::Closed, now);
                Ok(1)
            }
            Stage::ProbeSent => {
                expect(
                    TCP_PSH | TCP_ACK,
                    s.wrapping_add(1 + D),
                    c.wrapping_add(1 + 2 * D),
                )?;
                if !data_ok(f, &t, b's', idx) {
                    return Err(Fault::Payload);
                }
                self.reached(idx, Stage::Probed, now);
                Ok(0)
            }
            Stage::Idle | Stage::Open | Stage::Closed | Stage::Probed => Err(Fault::Stage),
        }
    }

    /// The real-server side: checks a client segment as the DUT delivered it (to any address,
    /// the service port; from a client of this trial) and rewrites `buf` (the frame in its
    /// buffer with room) into the server's answer, or absorbs an ACK. A refused frame is
    /// counted by [`Fault`] and gets `Err`.
    pub fn serve(&mut self, buf: &mut [u8]) -> Result<Served, Fault> {
        let r = self.answer(buf);
        if let Err(e) = r {
            self.server_fault(e);
        }
        r
    }

    /// The server side saw absorbed ACK `bit` of connection `idx`: counted once for the phase
    /// running, when its connections send that one.
    fn absorbed(&mut self, idx: u32, bit: u8) {
        let Some(b) = self.ackbits.get_mut(idx as usize) else {
            return;
        };
        let new = *b & bit == 0;
        *b |= bit;
        if let Some(p) = self.phases.get_mut(self.cur) {
            let mine = idx >= p.first && idx - p.first < p.conns;
            if new && mine && p.ack_kinds & bit != 0 {
                p.acks += 1;
            }
        }
    }

    fn answer(&mut self, buf: &mut [u8]) -> Result<Served, Fault> {
        let t = parse_tcp(buf)?;
        if t.dport != self.cfg.vport {
            return Err(Fault::Destination);
        }
        let idx = frame::flow_of(t.src, t.sport)
            .filter(|&i| (i as usize) < self.stages.len())
            .ok_or(Fault::Source)?;
        let (c, s) = (client_isn(idx), server_isn(idx));
        let is = |seq: u32, ack: u32| t.seq == seq && t.ack == ack;
        let (seq, ack, flags, data) = match (t.flags, t.payload_len) {
            (TCP_SYN, 0) if t.seq == c => {
                self.server.syn += 1;
                (s, c.wrapping_add(1), TCP_SYN | TCP_ACK, None)
            }
            (TCP_ACK, 0) if is(c.wrapping_add(1), s.wrapping_add(1)) => {
                self.server.handshake_ack += 1;
                self.absorbed(idx, ACK_HANDSHAKE);
                return Ok(Served::Absorbed);
            }
            (TCP_ACK, 0) if is(c.wrapping_add(2 + D), s.wrapping_add(2 + D)) => {
                self.server.last_ack += 1;
                self.absorbed(idx, ACK_LAST);
                return Ok(Served::Absorbed);
            }
            (f, DATA_LEN) if f == TCP_PSH | TCP_ACK && is(c.wrapping_add(1), s.wrapping_add(1)) => {
                if !data_ok(buf, &t, b'C', idx) {
                    return Err(Fault::Payload);
                }
                self.server.data += 1;
                (
                    s.wrapping_add(1),
                    c.wrapping_add(1 + D),
                    f,
                    Some(payload(b'S', idx)),
                )
            }
            (f, DATA_LEN)
                if f == TCP_PSH | TCP_ACK && is(c.wrapping_add(1 + D), s.wrapping_add(1 + D)) =>
            {
                if !data_ok(buf, &t, b'c', idx) {
                    return Err(Fault::Payload);
                }
                self.server.probe += 1;
                (
                    s.wrapping_add(1 + D),
                    c.wrapping_add(1 + 2 * D),
                    f,
                    Some(payload(b's', idx)),
                )
            }
            (f, 0)
                if f == TCP_FIN | TCP_ACK && is(c.wrapping_add(1 + D), s.wrapping_add(1 + D)) =>
            {
                self.server.fin += 1;
                (s.wrapping_add(1 + D), c.wrapping_add(2 + D), f, None)
            }
            // Flags the client sends, with numbers or a length other than expected.
            (f, _) if [TCP_SYN, TCP_ACK, TCP_PSH | TCP_ACK, TCP_FIN | TCP_ACK].contains(&f) => {
                return Err(Fault::Sequence)
            }
            _ => return Err(Fault::Flags),
        };
        // Answered from the MAC it was sent to, to the one it came from.
        let (mut src_mac, mut dst_mac) = ([0u8; 6], [0u8; 6]);
        src_mac.copy_from_slice(&buf[..6]);
        dst_mac.copy_from_slice(&buf[6..12]);
        let e = Ends {
            src_mac,
            dst_mac,
            src: t.dst,
            sport: t.dport,
            dst: t.src,
            dport: t.sport,
        };
        match write_segment(buf, &e, seq, ack, flags, data.as_ref()) {
            0 => Err(Fault::Truncated),
            len => Ok(Served::Reply(len)),
        }
    }

    /// The trial's outcome: every phase's figures, the server side's counts, pass or fail.
    pub fn report(&self) -> Value {
        let hz = self.cfg.hz as f64;
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| {
                let mut left = serde_json::Map::new();
                for (st, n) in Stage::ALL.iter().zip(p.left) {
                    if n > 0 {
                        left.insert(st.name().into(), n.into());
                    }
                }
                let send_s = p.last_kick.saturating_sub(p.first_kick) as f64 / hz;
                let done_s = p.last_done.saturating_sub(p.first_kick) as f64 / hz;
                json!({
                    "phase": p.name, "conns": p.conns, "rate": p.rate, "kicked": p.kicked,
                    "completed": p.done, "acks_absorbed": p.acks, "acks_expected": p.acks_expected, "incomplete_by_stage": Value::Object(left),
                    "tx_failed": p.tx_failed,
                    "client_faults": faults_json(&p.client_faults),
                    "server_faults": faults_json(&p.server_faults),
                    "send_s": send_s, "done_s": done_s,
                    "offered_cps": if send_s > 0.0 { f64::from(p.conns.saturating_sub(1)) / send_s } else { 0.0 },
                    "passed": p.passed(),
                })
            })
            .collect();
        let s = &self.server;
        json!({
            "mode": self.cfg.mode.name(),
            "conns": self.cfg.conns,
            "rate": self.cfg.rate,
            "load_rate": self.cfg.load_rate,
            "data_len": DATA_LEN,
            "warmup_rounds": self.warmup_rounds,
            "phases": phases,
            "server": { "syn": s.syn, "handshake_ack": s.handshake_ack, "data": s.data,
                        "probe": s.probe, "fin": s.fin, "last_ack": s.last_ack },
            "passed": self.passed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const DMAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const HZ: u64 = 1_000_000;

    fn cfg(mode: Mode, conns: u32) -> Config {
        Config {
            mode,
            conns,
            rate: 100_000,
            load_rate: 50_000,
            drain: HZ / 2,
            hz: HZ,
            vip: VIP,
            vport: 80,
            client_mac: CMAC,
            dut_mac: DMAC,
        }
    }

    /// A VS/NAT director in both directions: inbound to `rip`, replies from the VIP, with
    /// both checksums recomputed by testkit's reference checksum.
    fn nat(f: &mut [u8], inbound: bool, rip: Ipv4Addr) {
        let at = if inbound { IP_DST } else { IP_SRC };
        let ip = if inbound { rip } else { VIP };
        f[at..at + 4].copy_from_slice(&ip.octets());
        f[IP + 8] -= 1;
        put16(f, IP + 10, 0);
        let c = testkit::inet_checksum(&f[IP..L4]);
        put16(f, IP + 10, c);
        let end = IP + usize::from(be16(f, IP + 2));
        put16(f, L4 + 16, 0);
        let (s, d) = (
            Ipv4Addr::from(be32(f, IP_SRC)),
            Ipv4Addr::from(be32(f, IP_DST)),
        );
        let c = testkit::l4_checksum(s, d, PROTO_TCP, &f[L4..end]);
        put16(f, L4 + 16, c);
    }

    /// Client segment `s` as a frame of its own.
    fn frame_of(t: &Trial, s: Seg) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        let len = t.write(&mut b, s);
        b.truncate(len);
        b
    }

    /// Runs a trial against a NAT in memory (`through` may drop or alter frames: it gets the
    /// frame, whether it goes to the server, and its position in the whole run) until it is
    /// over; returns it.
    fn run(mut t: Trial, mut through: impl FnMut(&mut Vec<u8>, bool, u64) -> bool) -> Trial {
        let rip = Ipv4Addr::new(192, 0, 2, 3);
        let mut now = 1u64;
        let mut nth = 0u64;
        let mut to_server: Vec<Vec<u8>> = Vec::new();
        let mut to_client: Vec<Vec<u8>> = Vec::new();
        let mut segs = [Seg {
            idx: 0,
            kind: SegKind::Syn,
        }; 8];
        while !t.over() {
            t.poll(now);
            let n = t.due(now, &mut segs);
            to_server.extend(segs[..n].iter().map(|s| frame_of(&t, *s)));
            for mut f in std::mem::take(&mut to_server) {
                nth += 1;
                if !through(&mut f, true, nth) {
                    continue;
                }
                nat(&mut f, true, rip);
                f.resize(128, 0);
                if let Ok(Served::Reply(len)) = t.serve(&mut f) {
                    f.truncate(len);
                    to_client.push(f);
                }
            }
            for mut f in std::mem::take(&mut to_client) {
                nth += 1;
                if !through(&mut f, false, nth) {
                    continue;
                }
                nat(&mut f, false, rip);
                let mut out = [Seg {
                    idx: 0,
                    kind: SegKind::Syn,
                }; 2];
                let k = t.on_reply(&f, now, &mut out);
                to_server.extend(out[..k].iter().map(|s| frame_of(&t, *s)));
            }
            now += 10;
        }
        t
    }

    #[test]
    fn complete_connections_pass_through_a_nat() {
        for mode in [Mode::Setup, Mode::Teardown, Mode::Capacity] {
            let t = run(Trial::new(cfg(mode, 300)).unwrap(), |_, _, _| true);
            let r = t.report();
            assert!(t.passed(), "{mode:?}: {r}");
            assert_eq!(r["warmup_rounds"], 1);
            let s = t.server;
            let all = 300 + u64::from(WARMUP_CONNS);
            assert_eq!(
                (s.syn, s.handshake_ack, s.data),
                (all, all, all),
                "{mode:?}"
            );
            let closed = if mode == Mode::Capacity { 16 } else { all };
            assert_eq!((s.fin, s.last_ack), (closed, closed), "{mode:?}");
            assert_eq!(s.probe, if mode == Mode::Capacity { 300 } else { 0 });
            let last = r["phases"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["completed"], 300);
            assert_eq!(last["incomplete_by_stage"], json!({}));
        }
    }

    #[test]
    fn one_lost_segment_fails_the_trial_and_says_where() {
        // Lose one frame on its way, well after the warm-up's 16 connections: whichever it is
        // (a segment the server answers, an answer, an absorbed ACK), the trial fails.
        for lost in 700..708 {
            let t = run(Trial::new(cfg(Mode::Setup, 300)).unwrap(), |_, _, n| {
                n != lost
            });
            assert!(!t.passed());
            let r = t.report();
            let p = &r["phases"][1];
            assert_eq!(r["phases"][0]["passed"], true);
            assert_eq!(p["passed"], false);
            let short = p["acks_expected"].as_u64().unwrap() - p["acks_absorbed"].as_u64().unwrap();
            if p["completed"] == 299 {
                assert_eq!(p["incomplete_by_stage"].as_object().unwrap().len(), 1);
            } else {
                assert_eq!((p["completed"].as_u64(), short), (Some(300), 1), "{r}");
            }
        }
    }

    #[test]
    fn a_lost_warmup_connection_gets_another_round() {
        let t = run(Trial::new(cfg(Mode::Setup, 50)).unwrap(), |_, _, n| n != 3);
        assert!(t.passed());
        assert_eq!(t.report()["warmup_rounds"], 2);
    }

    #[test]
    fn wrong_numbers_addresses_and_payloads_are_faults() {
        // A reply whose acknowledgement is off by one.
        let mut once = true;
        let t = run(
            Trial::new(cfg(Mode::Setup, 100)).unwrap(),
            |f, to_server, n| {
                if once && !to_server && n > 300 && f[L4 + 13] == TCP_SYN | TCP_ACK {
                    once = false;
                    let a = be32(f, L4 + 8);
                    put32(f, L4 + 8, a.wrapping_add(1));
                    nat(f, false, VIP);
                }
                true
            },
        );
        assert!(!t.passed());
        assert_eq!(t.report()["phases"][1]["client_faults"]["sequence"], 1);

        // A client segment with a wrong sequence number reaches the server.
        let mut once = true;
        let t = run(
            Trial::new(cfg(Mode::Capacity, 100)).unwrap(),
            |f, to_server, n| {
                if once && to_server && n >= 400 {
                    once = false;
                    let seq = be32(f, L4 + 4);
                    put32(f, L4 + 4, seq ^ 0x100);
                }
                true
            },
        );
        assert!(!t.passed());
        let r = t.report();
        let faults: u64 = r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["server_faults"]["sequence"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(faults, 1, "{r}");
    }

    #[test]
    fn segments_are_well_formed_and_numbered() {
        let t = Trial::new(cfg(Mode::Setup, 10)).unwrap();
        let idx = 7;
        let (c, s) = (client_isn(idx), server_isn(idx));
        let mut b = [0u8; 128];
        for (kind, seq, ack, flags, len) in [
            (SegKind::Syn, c, 0, TCP_SYN, 60),
            (
                SegKind::Ack,
                c.wrapping_add(1),
                s.wrapping_add(1),
                TCP_ACK,
                60,
            ),
            (
                SegKind::Data,
                c.wrapping_add(1),
                s.wrapping_add(1),
                TCP_PSH | TCP_ACK,
                86,
            ),
            (
                SegKind::Fin,
                c.wrapping_add(33),
                s.wrapping_add(33),
                TCP_FIN | TCP_ACK,
                60,
            ),
            (
                SegKind::LastAck,
                c.wrapping_add(34),
                s.wrapping_add(34),
                TCP_ACK,
                60,
            ),
            (
                SegKind::Probe,
                c.wrapping_add(33),
                s.wrapping_add(33),
                TCP_PSH | TCP_ACK,
                86,
            ),
        ] {
            assert_eq!(t.write(&mut b, Seg { idx, kind }), len, "{kind:?}");
            let f = &b[..len];
            let tcp = parse_tcp(f).unwrap();
            assert_eq!((tcp.seq, tcp.ack, tcp.flags), (seq, ack, flags), "{kind:?}");
            assert_eq!((tcp.src, tcp.sport), frame::client_of(idx));
            assert_eq!((tcp.dst, tcp.dport), (VIP, 80));
            assert_eq!(&f[..6], &DMAC);
            // testkit's reference checksums agree.
            let end = IP + usize::from(be16(f, IP + 2));
            assert_eq!(testkit::inet_checksum(&f[IP..L4]), 0);
            let mut seg = f[L4..end].to_vec();
            let stored = be16(&seg, 16);
            put16(&mut seg, 16, 0);
            assert_eq!(testkit::l4_checksum(tcp.src, VIP, PROTO_TCP, &seg), stored);
        }
        assert_eq!(
            t.write(
                &mut [0u8; 59],
                Seg {
                    idx,
                    kind: SegKind::Syn
                }
            ),
            0
        );
        // The initial sequence numbers spread over the whole space.
        assert!((0..100u32).any(|i| client_isn(i) > 1 << 31 && server_isn(i) < 1 << 31));
        assert!((0..100u32).any(|i| client_isn(i) < 1 << 31 && server_isn(i) > 1 << 31));
    }

    /// Writes client segment `kind` of connection `idx` into `b`.
    fn write(t: &Trial, b: &mut [u8], idx: u32, kind: SegKind) {
        assert!(t.write(b, Seg { idx, kind }) > 0);
    }

    #[test]
    fn the_server_refuses_strays() {
        let mut t = Trial::new(cfg(Mode::Setup, 10)).unwrap();
        let mut b = [0u8; 128];
        // A SYN with the wrong ISN.
        write(&t, &mut b, 3, SegKind::Syn);
        put32(&mut b, L4 + 4, 12345);
        nat(&mut b, true, VIP);
        assert_eq!(t.serve(&mut b), Err(Fault::Sequence));
        // A checksum the DUT did not fix.
        write(&t, &mut b, 3, SegKind::Syn);
        nat(&mut b, true, VIP);
        b[L4 + 14] ^= 1;
        assert_eq!(t.serve(&mut b), Err(Fault::Checksum));
        // A reset.
        write(&t, &mut b, 3, SegKind::Ack);
        b[L4 + 13] = TCP_RST;
        nat(&mut b, true, VIP);
        assert_eq!(t.serve(&mut b), Err(Fault::Flags));
        // Another service port.
        write(&t, &mut b, 3, SegKind::Syn);
        put16(&mut b, L4 + 2, 81);
        nat(&mut b, true, VIP);
        assert_eq!(t.serve(&mut b), Err(Fault::Destination));
        // A client outside the trial's connections.
        write(&t, &mut b, 5_000_000, SegKind::Syn);
        assert_eq!(t.serve(&mut b), Err(Fault::Source));
        // UDP.
        b[IP + 9] = frame::PROTO_UDP;
        assert!(t.serve(&mut b).is_err());
        assert_eq!(t.server, ServerCounts::default());
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(Trial::new(cfg(Mode::Setup, 0)).is_err());
        assert!(Trial::new(cfg(Mode::Setup, frame::MAX_FLOWS)).is_err());
        let mut c = cfg(Mode::Teardown, 10);
        c.rate = 0;
        assert!(Trial::new(c).is_err());
    }
}
