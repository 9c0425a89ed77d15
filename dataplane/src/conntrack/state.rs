//! The LVS connection states, the TCP state machine and the per-state timeouts.
//!
//! The transition table is the kernel's (`ip_vs_proto_tcp.c`, as in
//! `spec/lvs-semantics.md`): the packet's flags pick one event with priority
//! rst > syn > fin > ack; a packet with none of them changes nothing. While the `secure_tcp`
//! defence is active, packets are applied with the kernel's `tcp_states_dos` table instead
//! ([`TcpTable::Secure`]).

use control::model;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// A connection's state. TCP uses the eleven LVS TCP states; UDP has a single state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ConnState {
    None = 0,
    Established,
    SynSent,
    SynRecv,
    FinWait,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    SynAck,
    Udp,
}

impl ConnState {
    /// Every state, in `repr` order.
    pub const ALL: [ConnState; 12] = [
        ConnState::None,
        ConnState::Established,
        ConnState::SynSent,
        ConnState::SynRecv,
        ConnState::FinWait,
        ConnState::TimeWait,
        ConnState::Close,
        ConnState::CloseWait,
        ConnState::LastAck,
        ConnState::Listen,
        ConnState::SynAck,
        ConnState::Udp,
    ];

    pub fn from_u8(v: u8) -> Option<ConnState> {
        ConnState::ALL.get(usize::from(v)).copied()
    }

    /// The name `ipvsadm -L -c` prints.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::None => "NONE",
            ConnState::Established => "ESTABLISHED",
            ConnState::SynSent => "SYN_SENT",
            ConnState::SynRecv => "SYN_RECV",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::CloseWait => "CLOSE_WAIT",
            ConnState::LastAck => "LAST_ACK",
            ConnState::Listen => "LISTEN",
            ConnState::SynAck => "SYNACK",
            ConnState::Udp => "UDP",
        }
    }

    /// Counted in a real server's ActiveConn (else InActConn): ESTABLISHED only, as in the
    /// kernel, where every connection starts inactive and a TCP one is active while it is
    /// ESTABLISHED. Half-open connections (a SYN flood) and UDP are inactive.
    pub fn is_active(self) -> bool {
        self == ConnState::Established
    }

    /// Default timeout in seconds.
    pub fn default_timeout_s(self) -> u32 {
        match self {
            ConnState::None => 2,
            ConnState::Established => 900,
            ConnState::SynSent => 120,
            ConnState::SynRecv => 60,
            ConnState::FinWait => 120,
            ConnState::TimeWait => 120,
            ConnState::Close => 10,
            ConnState::CloseWait => 60,
            ConnState::LastAck => 30,
            ConnState::Listen => 120,
            ConnState::SynAck => 120,
            ConnState::Udp => 300,
        }
    }
}

/// Which way a packet travels on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client -> VIP (the kernel's INPUT).
    Inbound,
    /// Real server -> client (OUTPUT).
    Reply,
}

/// The TCP event a packet's flags stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    Syn = 0,
    Fin = 1,
    Ack = 2,
    Rst = 3,
}

impl TcpEvent {
    /// Picks the event by priority rst > syn > fin > ack; `None` for none of them.
    pub fn from_flags(flags: crate::packet::l4::TcpFlags) -> Option<TcpEvent> {
        if flags.rst() {
            Some(TcpEvent::Rst)
        } else if flags.syn() {
            Some(TcpEvent::Syn)
        } else if flags.fin() {
            Some(TcpEvent::Fin)
        } else if flags.ack() {
            Some(TcpEvent::Ack)
        } else {
            None
        }
    }
}

use ConnState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynAck as SA, SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `[event][from state]` for client -> server; columns NO ES SS SR FW TW CL CW LA LI SA.
const INBOUND: [[ConnState; 11]; 4] = [
    /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];

/// The same for server -> client.
const REPLY: [[ConnState; 11]; 4] = [
    /* syn */ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];

/// The kernel's `tcp_states_dos` (INPUT and OUTPUT), verbatim: what `secure_tcp` switches to.
/// A client's ACK no longer establishes a SYN_RECV connection (it stays half-open, with
/// SYN_RECV's timeout, unless the server answered); the server's SYN-ACK makes it SYNACK, and
/// the server's next packet ESTABLISHED.
const INBOUND_SECURE: [[ConnState; 11]; 4] = [
    /* syn */ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA],
    /* fin */ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA],
    /* ack */ [CL, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA],
    /* rst */ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// The same for server -> client.
const REPLY_SECURE: [[ConnState; 11]; 4] = [
    /* syn */ [SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA],
    /* fin */ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    /* ack */ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    /* rst */ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];

/// Which transition table a packet is applied with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpTable {
    /// The normal one (`spec/lvs-semantics.md`).
    #[default]
    Normal,
    /// The kernel's `tcp_states_dos`, while the `secure_tcp` defence is active.
    Secure,
}

/// The TCP state after a packet with event `ev` travelling `dir`, by the normal table. UDP (and
/// any state outside the TCP table) is returned unchanged.
pub fn tcp_transition(state: ConnState, dir: Dir, ev: TcpEvent) -> ConnState {
    tcp_transition_in(TcpTable::Normal, state, dir, ev)
}

/// [`tcp_transition`] by the table `which`.
pub fn tcp_transition_in(which: TcpTable, state: ConnState, dir: Dir, ev: TcpEvent) -> ConnState {
    let table = match (which, dir) {
        (TcpTable::Normal, Dir::Inbound) => &INBOUND,
        (TcpTable::Normal, Dir::Reply) => &REPLY,
        (TcpTable::Secure, Dir::Inbound) => &INBOUND_SECURE,
        (TcpTable::Secure, Dir::Reply) => &REPLY_SECURE,
    };
    table
        .get(ev as usize)
        .and_then(|row| row.get(state as usize))
        .copied()
        .unwrap_or(state)
}

/// Per-state timeouts in milliseconds, shared by all workers and changed by `--set`.
#[derive(Debug)]
pub struct StateTimeouts {
    ms: [AtomicU32; ConnState::ALL.len()],
}

impl StateTimeouts {
    /// The defaults, with `tcp`, `tcp_fin` and `udp` from `t` (0 keeps the default).
    pub fn new(t: &model::Timeouts) -> StateTimeouts {
        let s = StateTimeouts {
            ms: std::array::from_fn(|i| {
                let st = ConnState::ALL.get(i).copied().unwrap_or(ConnState::None);
                AtomicU32::new(st.default_timeout_s().saturating_mul(1000))
            }),
        };
        s.set(t);
        s
    }

    /// Timeout of `state` in milliseconds.
    #[inline]
    pub fn get_ms(&self, state: ConnState) -> u32 {
        self.ms.get(state as usize).map_or(0, |a| a.load(Relaxed))
    }

    fn set_one(&self, state: ConnState, secs: u32) {
        if secs != 0 {
            if let Some(a) = self.ms.get(state as usize) {
                a.store(secs.saturating_mul(1000), Relaxed);
            }
        }
    }

    /// `--set tcp tcpfin udp`: ESTABLISHED, FIN_WAIT and UDP timeouts in seconds; 0 leaves a
    /// value unchanged.
    pub fn set(&self, t: &model::Timeouts) {
        self.set_one(ConnState::Established, t.tcp);
        self.set_one(ConnState::FinWait, t.tcp_fin);
        self.set_one(ConnState::Udp, t.udp);
    }

    /// The values `-L --timeout` prints.
    pub fn get(&self) -> model::Timeouts {
        model::Timeouts {
            tcp: self.get_ms(ConnState::Established) / 1000,
            tcp_fin: self.get_ms(ConnState::FinWait) / 1000,
            udp: self.get_ms(ConnState::Udp) / 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::l4::TcpFlags;

    /// The rows of `spec/lvs-semantics.md`, verbatim.
    const SPEC: &str = "
  - client->server syn: SR ES ES SR SR SR SR SR SR SR SR
  - client->server fin: CL CW SS TW TW TW CL CW LA LI TW
  - client->server ack: ES ES SS ES FW TW CL CW CL LI ES
  - client->server rst: CL CL CL SR CL CL CL CL LA LI SR
  - server->client syn: SS ES SS SR SS SS SS SS SS LI SR
  - server->client fin: TW FW SS TW FW TW CL TW LA LI TW
  - server->client ack: ES ES SS ES FW TW CL CW LA ES ES
  - server->client rst: CL CL SS CL CL TW CL CL CL CL CL";

    /// The kernel's `tcp_states_dos` (net/netfilter/ipvs/ip_vs_proto_tcp.c), INPUT and
    /// OUTPUT, verbatim (the INPUT-ONLY rows are for connections without output, which rvs
    /// does not track).
    const DOS: &str = "
  - client->server syn: SR ES ES SR SR SR SR SR SR SR SA
  - client->server fin: CL CW SS TW TW TW CL CW LA LI SA
  - client->server ack: CL ES SS SR FW TW CL CW CL LI SA
  - client->server rst: CL CL CL SR CL CL CL CL LA LI CL
  - server->client syn: SS ES SS SA SS SS SS SS SS LI SA
  - server->client fin: TW FW SS TW FW TW CL TW LA LI TW
  - server->client ack: ES ES SS ES FW TW CL CW LA ES ES
  - server->client rst: CL CL SS CL CL TW CL CL CL CL CL";

    fn abbrev(s: &str) -> ConnState {
        match s {
            "NO" => ConnState::None,
            "ES" => ConnState::Established,
            "SS" => ConnState::SynSent,
            "SR" => ConnState::SynRecv,
            "FW" => ConnState::FinWait,
            "TW" => ConnState::TimeWait,
            "CL" => ConnState::Close,
            "CW" => ConnState::CloseWait,
            "LA" => ConnState::LastAck,
            "LI" => ConnState::Listen,
            "SA" => ConnState::SynAck,
            _ => panic!("unknown state {s}"),
        }
    }

    #[test]
    fn transition_table_is_the_spec() {
        check_table(TcpTable::Normal, SPEC);
    }

    #[test]
    fn secure_table_is_the_kernels_tcp_states_dos() {
        check_table(TcpTable::Secure, DOS);
    }

    fn check_table(which: TcpTable, rows_text: &str) {
        let columns: Vec<ConnState> = "NO ES SS SR FW TW CL CW LA LI SA"
            .split(' ')
            .map(abbrev)
            .collect();
        let mut rows = 0;
        for line in rows_text.lines().filter(|l| !l.trim().is_empty()) {
            let (head, cells) = line
                .trim()
                .trim_start_matches("- ")
                .split_once(": ")
                .unwrap();
            let (dir, ev) = head.split_once(' ').unwrap();
            let dir = if dir == "client->server" {
                Dir::Inbound
            } else {
                Dir::Reply
            };
            let ev = match ev {
                "syn" => TcpEvent::Syn,
                "fin" => TcpEvent::Fin,
                "ack" => TcpEvent::Ack,
                "rst" => TcpEvent::Rst,
                _ => panic!("{ev}"),
            };
            let cells: Vec<ConnState> = cells.split(' ').map(abbrev).collect();
            assert_eq!(cells.len(), 11);
            for (from, to) in columns.iter().zip(&cells) {
                assert_eq!(
                    tcp_transition_in(which, *from, dir, ev),
                    *to,
                    "{which:?} {dir:?} {ev:?} from {from:?}"
                );
            }
            rows += 1;
        }
        assert_eq!(rows, 8);
    }

    #[test]
    fn udp_never_changes() {
        for ev in [TcpEvent::Syn, TcpEvent::Fin, TcpEvent::Ack, TcpEvent::Rst] {
            assert_eq!(
                tcp_transition(ConnState::Udp, Dir::Inbound, ev),
                ConnState::Udp
            );
        }
    }

    #[test]
    fn flag_priority() {
        let f = |b| TcpEvent::from_flags(TcpFlags(b));
        assert_eq!(
            f(TcpFlags::RST | TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK),
            Some(TcpEvent::Rst)
        );
        assert_eq!(
            f(TcpFlags::SYN | TcpFlags::FIN | TcpFlags::ACK),
            Some(TcpEvent::Syn)
        );
        assert_eq!(f(TcpFlags::FIN | TcpFlags::ACK), Some(TcpEvent::Fin));
        assert_eq!(f(TcpFlags::ACK | TcpFlags::PSH), Some(TcpEvent::Ack));
        assert_eq!(f(TcpFlags::PSH), None);
    }

    #[test]
    fn a_normal_connection_walks_the_table() {
        use Dir::*;
        let mut s = ConnState::None;
        // The connection is active (ActiveConn) only between the handshake's ACK and the FIN.
        for (dir, ev, want, active) in [
            (Inbound, TcpEvent::Syn, ConnState::SynRecv, false),
            (Reply, TcpEvent::Syn, ConnState::SynRecv, false), // SYN+ACK
            (Inbound, TcpEvent::Ack, ConnState::Established, true),
            (Inbound, TcpEvent::Fin, ConnState::CloseWait, false),
            (Reply, TcpEvent::Fin, ConnState::TimeWait, false),
            (Inbound, TcpEvent::Ack, ConnState::TimeWait, false),
        ] {
            s = tcp_transition(s, dir, ev);
            assert_eq!((s, s.is_active()), (want, active));
        }
    }

    #[test]
    fn a_secure_handshake_waits_for_the_server() {
        use Dir::*;
        let walk = |steps: &[(Dir, TcpEvent, ConnState)]| {
            let mut s = ConnState::None;
            for (dir, ev, want) in steps {
                s = tcp_transition_in(TcpTable::Secure, s, *dir, *ev);
                assert_eq!(s, *want, "{dir:?} {ev:?}");
            }
        };
        // A spoofed SYN then ACK stays half-open: SYN_RECV, not ESTABLISHED.
        walk(&[
            (Inbound, TcpEvent::Syn, ConnState::SynRecv),
            (Inbound, TcpEvent::Ack, ConnState::SynRecv),
        ]);
        // A real handshake: SYNACK once the server answers, ESTABLISHED at its next packet.
        walk(&[
            (Inbound, TcpEvent::Syn, ConnState::SynRecv),
            (Reply, TcpEvent::Syn, ConnState::SynAck),
            (Inbound, TcpEvent::Ack, ConnState::SynAck),
            (Reply, TcpEvent::Ack, ConnState::Established),
        ]);
    }

    #[test]
    fn timeouts_defaults_and_set() {
        let t = StateTimeouts::new(&model::Timeouts::default());
        assert_eq!(
            t.get(),
            model::Timeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            }
        );
        assert_eq!(t.get_ms(ConnState::None), 2000);
        assert_eq!(t.get_ms(ConnState::SynRecv), 60_000);
        assert_eq!(t.get_ms(ConnState::Close), 10_000);
        t.set(&model::Timeouts {
            tcp: 100,
            tcp_fin: 0,
            udp: 5,
        });
        assert_eq!(
            t.get(),
            model::Timeouts {
                tcp: 100,
                tcp_fin: 120,
                udp: 5
            }
        );
        assert_eq!(t.get_ms(ConnState::Established), 100_000);
    }

    #[test]
    fn active_states() {
        let active: Vec<_> = ConnState::ALL
            .iter()
            .filter(|s| s.is_active())
            .map(|s| s.name())
            .collect();
        assert_eq!(active, ["ESTABLISHED"]);
        for s in ConnState::ALL {
            assert_eq!(ConnState::from_u8(s as u8), Some(s));
        }
        assert_eq!(ConnState::from_u8(12), None);
    }
}
