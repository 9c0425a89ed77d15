//! Connection counting and the connection knobs, on byte frames through the pipeline:
//!
//! - ActiveConn counts ESTABLISHED connections only (a SYN flood is InActConn), and the
//!   load-based schedulers (lc, wlc, nq) see it that way;
//! - `conn_reuse_mode`: a SYN reusing a closed connection's ports is scheduled afresh (1, the
//!   default) or continues to the same real server (0);
//! - `sloppy_tcp`: only a SYN opens a connection (0, the default), or any segment but a RST
//!   (1), its state following from what the segment says.
//!
//! `expire_quiescent_template` is in `persistence.rs`, `expire_nodest_conn` and
//! `nat_icmp_send` in `nodest.rs`.

mod common;

use common::{Lab, EXT, INT};
use control::model::ServiceKey;
use dataplane::pipeline::Action;
use dataplane::stats::DropReason;
use std::net::Ipv4Addr;
use testkit::plan::{RIP1, RIP2, VIP};
use testkit::services::tcp;
use testkit::{check, ACK, FIN, PSH, RST, SYN};

fn web() -> ServiceKey {
    tcp(VIP, 80)
}

fn lab(sched: &str) -> Lab {
    Lab::new(&format!(
        "-A -t 198.51.100.1:80 -s {sched}\n\
         -a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1\n\
         -a -t 198.51.100.1:80 -r 192.0.2.3:80 -m -w 1"
    ))
}

#[test]
fn a_syn_flood_is_inactive_until_the_handshake_completes() {
    let mut lab = lab("rr");
    for cport in 1000..1100 {
        lab.syn(cport);
    }
    assert_eq!(lab.counts(web()), [(RIP1, 0, 50), (RIP2, 0, 50)]);
    // The server's SYN-ACK leaves it half-open; the client's ACK makes it ESTABLISHED.
    assert_eq!(
        lab.server_tcp(RIP1, 80, 1000, SYN | ACK).action,
        Action::Tx(EXT)
    );
    assert_eq!(lab.counts(web()), [(RIP1, 0, 50), (RIP2, 0, 50)]);
    assert_eq!(lab.client_tcp(1000, 80, ACK, b"").action, Action::Tx(INT));
    assert_eq!(lab.counts(web()), [(RIP1, 1, 49), (RIP2, 0, 50)]);
    // Data keeps it active; the FIN makes it inactive again (CLOSE_WAIT), and so it stays.
    lab.client_tcp(1000, 80, ACK | PSH, b"GET /");
    assert_eq!(lab.counts(web()), [(RIP1, 1, 49), (RIP2, 0, 50)]);
    lab.client_tcp(1000, 80, FIN | ACK, b"");
    assert_eq!(lab.counts(web()), [(RIP1, 0, 50), (RIP2, 0, 50)]);
    lab.server_tcp(RIP1, 80, 1000, FIN | ACK);
    lab.client_tcp(1000, 80, ACK, b"");
    assert_eq!(lab.counts(web()), [(RIP1, 0, 50), (RIP2, 0, 50)]);
    let states: Vec<String> = lab.conns().into_iter().map(|c| c.1).collect();
    assert_eq!(states.iter().filter(|s| *s == "SYN_RECV").count(), 99);
    assert_eq!(states.iter().filter(|s| *s == "TIME_WAIT").count(), 1);
}

/// (active << 8) + inactive: one ESTABLISHED connection weighs 256 half-open ones. After one
/// connection is established on RS1, a flood of SYNs all goes to RS2 until RS2's half-open
/// connections outweigh it; counted as active, they would alternate.
#[test]
fn lc_and_wlc_weigh_half_open_connections_as_inactive() {
    for sched in ["lc", "wlc"] {
        let mut lab = lab(sched);
        assert_eq!(lab.connect(1), RIP1, "{sched}: both idle, the first");
        let picks: Vec<Ipv4Addr> = (2..202).map(|p| lab.syn(p)).collect();
        assert!(picks.iter().all(|&r| r == RIP2), "{sched}: {picks:?}");
        assert_eq!(lab.counts(web()), [(RIP1, 1, 0), (RIP2, 0, 200)]);
        // RS2 at 256 + 1 half-open ones outweighs RS1's one established (256).
        let more: Vec<Ipv4Addr> = (202..259).map(|p| lab.syn(p)).collect();
        assert_eq!(more.iter().filter(|&&r| r == RIP1).count(), 1, "{sched}");
        assert_eq!(more.last(), Some(&RIP1), "{sched}: at 257 against 256");
    }
}

/// nq sends to the first idle server (no active connection): a server full of half-open
/// connections is still idle.
#[test]
fn nq_finds_a_server_with_only_half_open_connections_idle() {
    let mut lab = lab("nq");
    for p in 1..=20 {
        assert_eq!(lab.syn(p), RIP1, "half-open connections leave RS1 idle");
    }
    assert_eq!(lab.counts(web()), [(RIP1, 0, 20), (RIP2, 0, 0)]);
    // Establish one on RS1 (port 1): RS1 is busy, RS2 idle, and stays idle under SYNs.
    lab.server_tcp(RIP1, 80, 1, SYN | ACK);
    lab.client_tcp(1, 80, ACK, b"");
    assert_eq!(lab.counts(web()), [(RIP1, 1, 19), (RIP2, 0, 0)]);
    for p in 100..110 {
        assert_eq!(lab.syn(p), RIP2);
    }
    assert_eq!(lab.counts(web()), [(RIP1, 1, 19), (RIP2, 0, 10)]);
}

#[test]
fn conn_reuse_mode_decides_where_a_syn_on_a_closed_connection_goes() {
    for mode in [1, 0] {
        let mut lab = lab("rr");
        lab.sysctl("conn_reuse_mode", mode);
        assert_eq!(lab.connect(7000), RIP1);
        // Closed by the client (CLOSE), then the same port opens again.
        assert_eq!(lab.client_tcp(7000, 80, RST, b"").action, Action::Tx(INT));
        assert_eq!(lab.conns(), [(7000, "CLOSE".to_string(), RIP1)]);
        let again = lab.syn(7000);
        let conns = lab.conns();
        if mode == 1 {
            assert_eq!(again, RIP2, "scheduled afresh (rr moves on)");
            assert_eq!(conns, [(7000, "SYN_RECV".to_string(), RIP2)]);
            assert_eq!(lab.counts(web()), [(RIP1, 0, 0), (RIP2, 0, 1)]);
        } else {
            assert_eq!(again, RIP1, "the same real server, the same connection");
            assert_eq!(conns, [(7000, "SYN_RECV".to_string(), RIP1)]);
            assert_eq!(lab.counts(web()), [(RIP1, 0, 1), (RIP2, 0, 0)]);
        }
        // Either way it completes where it went.
        lab.server_tcp(again, 80, 7000, SYN | ACK);
        lab.client_tcp(7000, 80, ACK, b"");
        assert_eq!(lab.conns(), [(7000, "ESTABLISHED".to_string(), again)]);
    }
}

#[test]
fn sloppy_tcp_lets_any_segment_but_a_rst_open_a_connection() {
    let mut lab = lab("rr");
    // Off (the default): only a SYN.
    for flags in [ACK, ACK | PSH, FIN | ACK, 0] {
        assert_eq!(lab.client_tcp(100, 80, flags, b"x").action, Action::Drop);
    }
    assert_eq!(lab.drops(DropReason::UnknownFlow), 4);
    assert!(lab.conns().is_empty());

    lab.sysctl("sloppy_tcp", 1);
    // A connection picked up mid-stream (after a failover without sync): its state is what
    // its segment says, ESTABLISHED for an ACK, counted active.
    let out = lab.client_tcp(101, 80, ACK | PSH, b"more data");
    assert_eq!(out.action, Action::Tx(INT));
    let s = check(&out.frame);
    assert_eq!((s.dst, s.dport), (RIP1, 80));
    let back = lab.server_tcp(RIP1, 80, 101, ACK);
    assert_eq!(
        (back.action, check(&back.frame).src),
        (Action::Tx(EXT), VIP)
    );
    // A FIN alone opens in CLOSE, a segment with none of SYN/FIN/ACK/RST in CLOSE (the
    // kernel's state for either), a SYN in SYN_RECV as always.
    assert_eq!(lab.client_tcp(102, 80, FIN, b"").action, Action::Tx(INT));
    assert_eq!(lab.client_tcp(103, 80, PSH, b"x").action, Action::Tx(INT));
    assert_eq!(lab.syn(104), RIP2);
    // A RST opens nothing.
    assert_eq!(lab.client_tcp(105, 80, RST | ACK, b"").action, Action::Drop);
    assert_eq!(lab.drops(DropReason::UnknownFlow), 5);
    assert_eq!(
        lab.conns(),
        [
            (101, "ESTABLISHED".to_string(), RIP1),
            (102, "CLOSE".to_string(), RIP2),
            (103, "CLOSE".to_string(), RIP1),
            (104, "SYN_RECV".to_string(), RIP2),
        ]
    );
    assert_eq!(lab.counts(web()), [(RIP1, 1, 1), (RIP2, 0, 2)]);
}
