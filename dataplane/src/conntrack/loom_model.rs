//! Model check of the table's core algorithm with [loom]: every interleaving (up to a
//! preemption bound) of 2 threads running insert / lookup / remove on a tiny table, with loom's
//! C11 memory model (stale loads included) and `SeqCst` fences as the insert protocol uses them.
//!
//! Run (a separate target directory keeps the normal build's cache):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p dataplane --lib --release \
//!     --target-dir target/loom conntrack::loom
//! ```
//!
//! About 15 s in release (`LOOM_MAX_PREEMPTIONS=N` changes the preemption bound, default here
//! 3; each step multiplies the time; `LOOM_VERBOSE=1` prints the executions explored).
//! Under `cfg(loom)` the table has 4 slots per bucket, 2 free-list shards and chunks of 1, all
//! threads start on shard 0 (so they contend on one Treiber stack and steal from the other),
//! and the hash seeds are fixed.
//!
//! Each model runs twice (see `crate::atomic::AtomicU64`): with plain loads, where loom explores which
//! store each load reads (weak memory, `SeqCst` fences), and with every access to the table's
//! words made a read-modify-write, which works around loom's incomplete partial-order
//! reduction (it misses a thread's load racing another thread's load-then-CAS) so that all
//! interleavings of the accesses to the entry, slot and free-list words up to the bound are
//! explored. Mutations checked by hand: dropping the
//! `SeqCst` fence before `settle`, ignoring pending rivals in `settle`, and dropping the
//! seqlock's second meta check each make a model fail.
//!
//! [loom]: https://docs.rs/loom

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::atomic::{model, model_bounded};
use control::model::Timeouts;
use loom::sync::Arc;
use loom::thread;

const UDP: u8 = 17;

fn table(capacity: usize) -> Arc<ConnTable> {
    Arc::new(ConnTable::new(capacity, 2, &Timeouts::default()))
}

/// A UDP connection from 198.51.100.10:`cport` to 198.51.100.1:53, sent to 192.0.2.2:`rport`.
fn conn(cport: u16, rport: u16, dest: u32) -> NewConn {
    <V4 as LoomFam>::conn(cport, rport, dest)
}

/// What the models that run for both families need of one.
trait LoomFam: Family {
    fn table(capacity: usize) -> Arc<ConnTable<Self>>;
    /// `conn` in this family (2001:db8:100::10 -> 2001:db8:100::1, sent to 2001:db8:2::2).
    fn conn(cport: u16, rport: u16, dest: u32) -> NewConn<Self::Addr>;
}

impl LoomFam for V4 {
    fn table(capacity: usize) -> Arc<ConnTable> {
        table(capacity)
    }
    fn conn(cport: u16, rport: u16, dest: u32) -> NewConn {
        NewConn {
            proto: UDP,
            client: (Ipv4Addr::new(198, 51, 100, 10), cport),
            virt: (Ipv4Addr::new(198, 51, 100, 1), 53),
            real: (Ipv4Addr::new(192, 0, 2, 2), rport),
            dest,
            state: ConnState::Udp,
        }
    }
}

impl LoomFam for V6 {
    fn table(capacity: usize) -> Arc<ConnTable6> {
        Arc::new(ConnTable6::new6(capacity, 2, &Timeouts::default()))
    }
    fn conn(cport: u16, rport: u16, dest: u32) -> NewConn<std::net::Ipv6Addr> {
        let a = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap();
        NewConn {
            proto: UDP,
            client: (a("2001:db8:100::10"), cport),
            virt: (a("2001:db8:100::1"), 53),
            real: (a("2001:db8:2::2"), rport),
            dest,
            state: ConnState::Udp,
        }
    }
}

/// A hit is exactly connection `c` (nothing mixed in from another one).
fn is<A: PartialEq>(h: &Hit<A>, c: &NewConn<A>) -> bool {
    h.proto == c.proto
        && h.client == c.client
        && h.virt == c.virt
        && h.real == c.real
        && h.dest == c.dest
}

fn counts<F: Family>(t: &ConnTable<F>, dest: u32) -> (u64, u64) {
    let d = t.dest(dest).unwrap();
    (d.active(), d.inactive())
}

/// Two workers insert the same inbound tuple (with different real servers) at once: exactly
/// one wins, the other is told about the winner, and the table holds one entry reachable by the
/// winner's two tuples only.
#[test]
fn loom_concurrent_inserts_of_one_tuple_exactly_one_wins() {
    concurrent_inserts_of_one_tuple_exactly_one_wins::<V4>();
}

#[test]
fn loom_concurrent_inserts_of_one_tuple_exactly_one_wins_v6() {
    concurrent_inserts_of_one_tuple_exactly_one_wins::<V6>();
}

fn concurrent_inserts_of_one_tuple_exactly_one_wins<F: LoomFam>() {
    model(|| {
        let t = F::table(2);
        let (a, b) = (F::conn(1, 100, 0), F::conn(1, 200, 1));
        let t2 = t.clone();
        let th = thread::spawn(move || t2.insert(&b, 0));
        let ra = t.insert(&a, 0);
        let rb = th.join().unwrap();
        let (win, lose, wc, lc) = match (ra, rb) {
            (Ok(h), r) => (h, r, a, b),
            (r, Ok(h)) => (h, r, b, a),
            (ra, rb) => panic!("nobody won: {ra:?} {rb:?}"),
        };
        match lose {
            Err(InsertError::Exists(h)) => assert_eq!(h.conn, win.conn, "told of the winner"),
            other => panic!("two winners, or a wrong answer: {other:?}"),
        }
        let h = t.lookup(&wc.inbound(), 0).unwrap();
        assert!(is(&h, &wc) && h.conn == win.conn && h.dir == Dir::Inbound);
        let h = t.lookup(&wc.reply(), 0).unwrap();
        assert!(is(&h, &wc) && h.dir == Dir::Reply);
        assert!(t.lookup(&lc.reply(), 0).is_none());
        assert_eq!(t.len(), 1);
        assert_eq!(counts(&t, wc.dest), (0, 1));
        assert_eq!(counts(&t, lc.dest), (0, 0));
    });
}

/// Two different connections sharing a reply tuple (one client ip:port reaching one real server
/// through two VIPs): exactly one gets in.
#[test]
fn loom_concurrent_inserts_sharing_the_reply_tuple_exactly_one_wins() {
    model(|| {
        let t = table(2);
        let a = conn(1, 100, 0);
        let b = NewConn {
            virt: (Ipv4Addr::new(198, 51, 100, 2), 53),
            ..a
        };
        let t2 = t.clone();
        let th = thread::spawn(move || t2.insert(&b, 0));
        let ra = t.insert(&a, 0);
        let rb = th.join().unwrap();
        let oks = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "{ra:?} {rb:?}");
        assert!([&ra, &rb]
            .iter()
            .any(|r| **r == Err(InsertError::ReplyConflict)));
        let h = t.lookup(&a.reply(), 0).unwrap();
        let winner = if ra.is_ok() { a } else { b };
        assert!(is(&h, &winner));
        assert_eq!(t.len(), 1);
        assert_eq!(counts(&t, 0), (0, 1));
    });
}

/// A reader racing a remove and the reuse of the same entry (capacity 1) for a connection with
/// the same inbound tuple but another real server sees nothing, or exactly one of the two
/// connections: never the fields of one mixed with the other's.
#[test]
fn loom_lookup_never_sees_a_mix_of_an_entry_and_its_reuse() {
    lookup_never_sees_a_mix_of_an_entry_and_its_reuse::<V4>();
}

/// The same with 64-byte IPv6 entries: seven field words read between the two meta reads.
#[test]
fn loom_lookup_never_sees_a_mix_of_an_entry_and_its_reuse_v6() {
    lookup_never_sees_a_mix_of_an_entry_and_its_reuse::<V6>();
}

fn lookup_never_sees_a_mix_of_an_entry_and_its_reuse<F: LoomFam>() {
    model(|| {
        let t = F::table(1);
        let (a, b) = (F::conn(1, 100, 0), F::conn(1, 200, 1));
        let ha = t.insert(&a, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || {
            assert!(t2.remove(ha.conn));
            t2.insert(&b, 0).unwrap()
        });
        if let Some(h) = t.lookup(&a.inbound(), 0) {
            assert!(is(&h, &a) || is(&h, &b), "mixed: {h:?}");
            assert_eq!(h.conn == ha.conn, is(&h, &a));
        }
        if let Some(h) = t.lookup(&a.reply(), 0) {
            assert!(is(&h, &a) && h.conn == ha.conn && h.dir == Dir::Reply);
        }
        let hb = th.join().unwrap();
        assert_eq!(t.lookup(&b.reply(), 0).map(|h| h.conn), Some(hb.conn));
        assert!(t.lookup(&a.reply(), 0).is_none());
        assert_eq!((counts(&t, 0), counts(&t, 1)), ((0, 0), (0, 1)));
        assert_eq!(t.len(), 1);
    });
}

/// Two removers of one connection (a packet's lookup and the aging scan, say): exactly one
/// succeeds, the counts go to zero once, and the entry can be used again.
#[test]
fn loom_concurrent_removes_exactly_one_succeeds() {
    model(|| {
        let t = table(1);
        let a = conn(1, 100, 0);
        let h = t.insert(&a, 0).unwrap();
        let t2 = t.clone();
        let th = thread::spawn(move || t2.remove(h.conn));
        let r1 = t.remove(h.conn);
        let r2 = th.join().unwrap();
        assert!(r1 ^ r2, "{r1} {r2}");
        assert_eq!(counts(&t, 0), (0, 0));
        assert!(t.is_empty());
        assert!(t.lookup(&a.inbound(), 0).is_none());
        t.insert(&conn(2, 100, 0), 0).unwrap();
    });
}

/// Two workers each insert and remove their own connection while sharing the free lists
/// (contended pops and pushes, stealing): afterwards both entries are free and usable.
#[test]
fn loom_free_lists_survive_concurrent_insert_remove() {
    model(|| {
        let t = table(2);
        let t2 = t.clone();
        let th = thread::spawn(move || {
            let b = conn(2, 200, 1);
            let h = t2.insert(&b, 0).unwrap();
            assert!(t2.remove(h.conn));
        });
        let a = conn(1, 100, 0);
        let h = t.insert(&a, 0).unwrap();
        assert!(t.lookup(&a.reply(), 0).is_some());
        assert!(t.remove(h.conn));
        th.join().unwrap();
        assert!(t.is_empty());
        assert_eq!((counts(&t, 0), counts(&t, 1)), ((0, 0), (0, 0)));
        let (c, d) = (conn(3, 100, 0), conn(4, 100, 0));
        t.insert(&c, 0).unwrap();
        t.insert(&d, 0).unwrap();
        assert_eq!(t.insert(&conn(5, 100, 0), 0), Err(InsertError::Full));
    });
}

/// Three workers insert the same inbound tuple at once (kills can chain: the lowest entry index
/// has priority over both others): exactly one wins; the others are told `Exists` (of the
/// winner, or of a rival that was in flight when they looked) or, after their retries ran out,
/// `Busy`. (Only the all-RMW run, preemption bound 3: with stale reads explored too, even
/// bound 1 takes minutes.)
#[test]
fn loom_three_inserts_of_one_tuple_exactly_one_wins() {
    model_bounded([None, Some(3)], || {
        let t = table(3);
        let cs = [conn(1, 100, 0), conn(1, 200, 1), conn(1, 300, 0)];
        let spawn = |c: NewConn| {
            let t = t.clone();
            thread::spawn(move || t.insert(&c, 0))
        };
        let (h1, h2) = (spawn(cs[1]), spawn(cs[2]));
        let r0 = t.insert(&cs[0], 0);
        let rs = [r0, h1.join().unwrap(), h2.join().unwrap()];
        let wins: Vec<(usize, Hit)> = rs
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.ok().map(|h| (i, h)))
            .collect();
        assert_eq!(wins.len(), 1, "{rs:?}");
        let (w, win) = wins[0];
        for (i, r) in rs.iter().enumerate() {
            if i != w {
                assert!(
                    matches!(r, Err(InsertError::Exists(_)) | Err(InsertError::Busy)),
                    "{r:?}"
                );
            }
        }
        let h = t.lookup(&cs[w].reply(), 0).unwrap();
        assert!(is(&h, &cs[w]) && h.conn == win.conn);
        assert_eq!(t.len(), 1);
        assert_eq!(counts(&t, 0).1 + counts(&t, 1).1, 1);
    });
}
