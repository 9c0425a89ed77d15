//! The connection table under real concurrency: two OS threads hammering one table, with
//! checkers. Each test is bounded in time (about a second) and in rounds.
//!
//! The 10M-connection test is `#[ignore]`d (slow in a debug build):
//!
//! ```text
//! cargo test -p dataplane --release --test conntrack_stress -- --ignored --nocapture
//! ```
//!
//! What such a table costs in memory is measured, resident, by `benches`' `table-mem`.

use control::model::Timeouts;
use dataplane::conntrack::{ConnState, ConnTable, Dir, Hit, InsertError, NewConn, TcpEvent, Tuple};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::plan::{nth_conn, VIP};

const TCP: u8 = 6;
const UDP: u8 = 17;

/// How long each churn test runs.
const RUN: Duration = Duration::from_millis(1200);

/// The real server a checker expects for a connection: the real port is a function of the
/// client port and the real-server slot, so a hit whose fields come from two different
/// connections is caught.
fn real_for(cport: u16, dest: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(192, 0, 2, 2 + dest as u8),
        cport.wrapping_mul(31).wrapping_add(1000 * dest as u16),
    )
}

fn conn(proto: u8, client: u8, cport: u16, dest: u32) -> NewConn {
    NewConn {
        proto,
        client: (Ipv4Addr::new(198, 51, 100, 10 + client), cport),
        virt: (VIP, 80),
        real: real_for(cport, dest),
        dest,
        state: if proto == TCP {
            ConnState::SynRecv
        } else {
            ConnState::Udp
        },
    }
}

/// Checks that a hit is one whole connection matching the tuple looked up.
fn check_hit(h: &Hit, t: &Tuple) {
    let (src, dst) = match h.dir {
        Dir::Inbound => (h.client, h.virt),
        Dir::Reply => (h.real, h.client),
    };
    assert_eq!(
        (h.proto, src, dst),
        (t.proto, (t.src, t.sport), (t.dst, t.dport)),
        "a lookup returned another connection: {h:?} for {t:?}"
    );
    assert_eq!(h.virt, (VIP, 80), "{h:?}");
    assert_eq!(
        h.real,
        real_for(h.client.1, h.dest),
        "mixed-up fields: {h:?}"
    );
}

/// A two-party spin barrier (std's Barrier sleeps; this keeps both threads hot so their
/// operations really overlap).
struct Spin {
    arrived: AtomicU32,
    round: AtomicU32,
}

impl Spin {
    fn wait(&self) {
        let round = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) == 1 {
            self.arrived.store(0, Ordering::Relaxed);
            self.round.store(round + 1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.round.load(Ordering::Acquire) == round {
            spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Both threads insert the same inbound tuple (different real servers) at the same instant,
/// round after round: exactly one wins every round, the loser is told of the winner, and both
/// then find the winner's mapping by both tuples.
#[test]
fn two_threads_inserting_one_tuple_exactly_one_wins_every_round() {
    let t = ConnTable::new(1024, 4, &Timeouts::default());
    let spin = Spin {
        arrived: AtomicU32::new(0),
        round: AtomicU32::new(0),
    };
    let stop = AtomicBool::new(false);
    let wins = [AtomicU32::new(0), AtomicU32::new(0)];
    let winner_real = AtomicU64::new(0);
    let rounds = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for me in 0..2u32 {
            let (t, spin, stop, wins, winner_real, rounds) =
                (&t, &spin, &stop, &wins, &winner_real, &rounds);
            s.spawn(move || {
                let mut round = 0u32;
                loop {
                    spin.wait();
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let cport = (round % 4000) as u16;
                    let c = conn(UDP, 0, cport, me);
                    let r = t.insert(&c, 0);
                    if let Ok(h) = &r {
                        wins[me as usize].fetch_add(1, Ordering::Relaxed);
                        winner_real.store(u64::from(h.real.1), Ordering::Relaxed);
                    }
                    spin.wait();
                    let won = r.is_ok();
                    let real = winner_real.load(Ordering::Relaxed) as u16;
                    if let Err(e) = r {
                        match e {
                            InsertError::Exists(h) => {
                                check_hit(&h, &c.inbound());
                                assert_eq!(h.real.1, real, "told of another winner");
                            }
                            InsertError::Busy => {}
                            e => panic!("round {round}: {e:?}"),
                        }
                    }
                    let h = t.lookup(&c.inbound(), 0).expect("the winner is in");
                    check_hit(&h, &c.inbound());
                    assert_eq!(h.real.1, real, "round {round}");
                    let back = Tuple {
                        proto: UDP,
                        src: h.real.0,
                        sport: h.real.1,
                        dst: h.client.0,
                        dport: h.client.1,
                    };
                    assert_eq!(t.lookup(&back, 0).map(|b| b.conn), Some(h.conn));
                    spin.wait();
                    if won {
                        assert!(t.remove(h.conn));
                    }
                    if me == 0 {
                        rounds.fetch_add(1, Ordering::Relaxed);
                        if start.elapsed() > RUN || round >= 200_000 {
                            stop.store(true, Ordering::Release);
                        }
                    }
                    round += 1;
                }
            });
        }
    });
    let n = rounds.load(Ordering::Relaxed) as u32;
    let (a, b) = (
        wins[0].load(Ordering::Relaxed),
        wins[1].load(Ordering::Relaxed),
    );
    assert_eq!(
        a + b,
        n,
        "one winner per round ({n} rounds, wins {a} + {b})"
    );
    assert!(t.is_empty());
    eprintln!("{n} rounds, wins {a} / {b}");
}

/// Two threads insert, look up, update and remove connections over one small key space
/// (constant collisions, entry reuse, aging in between), checking every hit. Afterwards the
/// table must be consistent: no tuple twice, counts equal to what is listed, and every entry
/// usable again.
#[test]
fn two_threads_churn_with_a_checker() {
    const CAP: usize = 512;
    let t = ConnTable::new(CAP, 4, &Timeouts::default());
    let stop = AtomicBool::new(false);
    let clock = AtomicU64::new(1000);
    let ops = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for me in 0..2usize {
            let (t, stop, clock, ops) = (&t, &stop, &clock, &ops);
            s.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (me as u64 + 1);
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut cursor = t.slice(me, 2).start;
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let r = next();
                    // 3 clients x 200 ports x 2 protocols: shared by both threads.
                    let proto = if r & 1 == 0 { TCP } else { UDP };
                    let client = ((r >> 1) % 3) as u8;
                    let cport = ((r >> 8) % 200) as u16;
                    let dest = ((r >> 20) % 3) as u32;
                    let c = conn(proto, client, cport, dest);
                    let now = clock.load(Ordering::Relaxed);
                    match (r >> 32) % 8 {
                        0..=2 => match t.insert(&c, now) {
                            Ok(h) => check_hit(&h, &c.inbound()),
                            Err(InsertError::Exists(h)) => check_hit(&h, &c.inbound()),
                            Err(InsertError::ReplyConflict) => {
                                panic!("reply tuples here follow inbound ones: {c:?}")
                            }
                            Err(InsertError::Full | InsertError::Busy) => {}
                            Err(e) => panic!("{e:?}"),
                        },
                        3 | 4 => {
                            let tu = if r >> 40 & 1 == 0 {
                                c.inbound()
                            } else {
                                c.reply()
                            };
                            if let Some(h) = t.lookup(&tu, now) {
                                check_hit(&h, &tu);
                            }
                        }
                        5 => {
                            let tu = c.reply();
                            if let Some(h) = t.lookup(&tu, now) {
                                check_hit(&h, &tu);
                                let ev =
                                    [TcpEvent::Syn, TcpEvent::Fin, TcpEvent::Ack, TcpEvent::Rst]
                                        [(r >> 44) as usize % 4];
                                let dir = if r >> 46 & 1 == 0 {
                                    Dir::Inbound
                                } else {
                                    Dir::Reply
                                };
                                t.update(&h, dir, Some(ev), now);
                            }
                        }
                        6 => {
                            if let Some(h) = t.lookup(&c.inbound(), now) {
                                t.remove(h.conn);
                            }
                        }
                        _ => {
                            // Time moves on (shared clock), aging runs on this thread's slice.
                            if me == 0 {
                                clock.fetch_add(r >> 48 & 0x3ff, Ordering::Relaxed);
                            }
                            t.housekeeping(t.slice(me, 2), &mut cursor, 16, now);
                        }
                    }
                    n += 1;
                    if n.is_multiple_of(4096) && (start.elapsed() > RUN || n > 5_000_000) {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                ops.fetch_add(n, Ordering::Relaxed);
            });
        }
    });

    // Quiescent: the listing is the truth the counters must agree with.
    let mut inbound = HashSet::new();
    let mut replies = HashSet::new();
    let mut per_dest: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut listed = 0;
    t.for_each(|c| {
        listed += 1;
        let nc = NewConn {
            proto: c.proto,
            client: c.client,
            virt: c.virt,
            real: c.real,
            dest: c.dest,
            state: c.state,
        };
        assert_eq!(c.real, real_for(c.client.1, c.dest), "{c:?}");
        assert!(inbound.insert(nc.inbound()), "inbound tuple twice: {c:?}");
        assert!(replies.insert(nc.reply()), "reply tuple twice: {c:?}");
        let e = per_dest.entry(c.dest).or_default();
        if c.state.is_active() {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    });
    assert_eq!(t.len(), listed);
    for d in 0..3 {
        let c = t.dest(d).unwrap();
        assert_eq!(
            (c.active(), c.inactive()),
            per_dest.get(&d).copied().unwrap_or_default(),
            "dest {d}"
        );
    }
    // Everything can be removed, and then every entry is usable again: none leaked.
    // (At time 0, so that nothing listed has expired.)
    for tu in &inbound {
        let h = t.lookup(tu, 0).expect("listed, so found");
        assert!(t.remove(h.conn));
    }
    assert!(t.is_empty());
    for d in 0..3 {
        let c = t.dest(d).unwrap();
        assert_eq!((c.active(), c.inactive()), (0, 0), "dest {d}");
    }
    for i in 0..CAP {
        let c = conn(UDP, 3 + (i / 200) as u8, (i % 200) as u16, 0);
        t.insert(&c, 0)
            .unwrap_or_else(|e| panic!("entry {i}: {e:?}"));
    }
    assert_eq!(
        t.insert(&conn(UDP, 9, 0, 0), 0),
        Err(InsertError::Full),
        "exactly the capacity"
    );
    eprintln!(
        "{} operations, {listed} connections at the end",
        ops.load(Ordering::Relaxed)
    );
}

/// 10M connections (distinct clients, 32 real servers): every one of them fits (no bucket
/// overflows before capacity), and each is found by both tuples.
#[test]
#[ignore = "builds and fills a 10M-connection table (about 1 GB); run with --release --ignored"]
fn ten_million_connections_fit_and_are_found() {
    const N: usize = 10_000_000;
    let t0 = Instant::now();
    let t = ConnTable::new(N, 64, &Timeouts::default());
    eprintln!("10M table ({}) built in {:?}", t.backing(), t0.elapsed());
    let t1 = Instant::now();
    for i in 0..N {
        t.insert(&nth_conn(i), 0)
            .unwrap_or_else(|e| panic!("connection {i}: {e:?}"));
    }
    eprintln!("filled in {:?}", t1.elapsed());
    assert_eq!(t.len(), N);
    assert_eq!(t.insert(&nth_conn(N), 0), Err(InsertError::Full));
    for i in (0..N).step_by(9973) {
        let c = nth_conn(i);
        assert_eq!(t.lookup(&c.inbound(), 0).unwrap().real, c.real);
        assert_eq!(t.lookup(&c.reply(), 0).unwrap().client, c.client);
    }
}
