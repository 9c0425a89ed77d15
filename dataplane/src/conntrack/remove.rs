//! Changes to a live entry: state changes and expiry refreshes, and removal.
//!
//! - **Update** (state change, expiry refresh): one CAS on meta. A refresh is skipped unless the
//!   expiry moves by more than 1/16 of the timeout (at most 1 s), so an established flow does
//!   not write the shared entry on every packet.
//! - **Remove**: one CAS `LIVE -> FREE` on the entry's meta decides the single remover (a
//!   packet's lookup, aging, eviction and the control side may race); the winner adjusts the
//!   counters, clears the two slot words (plain stores: only an entry's owner writes a slot
//!   holding its word) and pushes the entry on its free list. The same entry's next incarnation
//!   has a new generation, so stale [`ConnRef`]s do nothing.

use super::entry::{expires_of, gen_of, live_code, live_state, pack, EntryView, EXP_MAX, ST_FREE};
use super::family::Family;
use super::index::slot_word;
use super::state::{tcp_transition_in, ConnState, Dir, TcpEvent, TcpTable};
use super::{ConnRef, ConnTable, Hit};
use crate::atomic::Ordering;
use crate::packet::ipv4::PROTO_TCP;

impl<F: Family> ConnTable<F> {
    /// Applies a packet to the connection: TCP state transition for `ev` travelling `dir`, and
    /// the expiry refreshed to `now` + the (new) state's timeout. Returns the state after the
    /// packet, or `None` if the connection is gone (expired or reused since the lookup) or not
    /// in yet (an `Exists` hit of an insert still in flight).
    pub fn update(
        &self,
        hit: &Hit<F::Addr>,
        dir: Dir,
        ev: Option<TcpEvent>,
        now: u64,
    ) -> Option<ConnState> {
        self.update_in(TcpTable::Normal, hit, dir, ev, now)
    }

    /// [`ConnTable::update`] with the TCP transition table `table` (`secure_tcp`). Always
    /// inlined: once a packet on every tracked path, and LLVM kept it a call (about 15-30
    /// instructions a packet, callgrind).
    #[inline(always)]
    pub fn update_in(
        &self,
        table: TcpTable,
        hit: &Hit<F::Addr>,
        dir: Dir,
        ev: Option<TcpEvent>,
        now: u64,
    ) -> Option<ConnState> {
        let e = self.entry(hit.conn.idx)?;
        let meta = F::meta(e);
        let mut m = meta.load(Ordering::Acquire);
        // A CAS fails only when another worker changed the entry meanwhile; a few retries
        // settle it, and giving up merely skips one refresh.
        for _ in 0..8 {
            if gen_of(m) != hit.conn.gen {
                return None;
            }
            let st = live_state(m)?;
            let new_st = match ev {
                Some(ev) if hit.proto == PROTO_TCP => tcp_transition_in(table, st, dir, ev),
                _ => st,
            };
            let timeout = u64::from(self.slots.timeouts.get_ms(new_st));
            let expires = now.saturating_add(timeout).min(EXP_MAX);
            if new_st == st && expires <= expires_of(m).saturating_add((timeout / 16).min(1000)) {
                return Some(st);
            }
            match meta.compare_exchange(
                m,
                pack(hit.conn.gen, live_code(new_st), expires),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.recount(hit.dest, st, new_st);
                    return Some(new_st);
                }
                Err(cur) => m = cur,
            }
        }
        live_state(m)
    }

    /// Sets the connection's state and expiry as another director's table has them (IPVS
    /// sync), whatever they were. False if the connection is gone.
    pub fn resync(&self, hit: &Hit<F::Addr>, state: ConnState, expires: u64) -> bool {
        let Some(e) = self.entry(hit.conn.idx) else {
            return false;
        };
        let meta = F::meta(e);
        let mut m = meta.load(Ordering::Acquire);
        loop {
            if gen_of(m) != hit.conn.gen {
                return false;
            }
            let Some(st) = live_state(m) else {
                return false;
            };
            match meta.compare_exchange_weak(
                m,
                pack(hit.conn.gen, live_code(state), expires.min(EXP_MAX)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.recount(hit.dest, st, state);
                    return true;
                }
                Err(cur) => m = cur,
            }
        }
    }

    /// Moves one connection of real-server slot `dest` from `from`'s count (active or
    /// inactive) to `to`'s, by the thread whose CAS made the change.
    fn recount(&self, dest: u32, from: ConnState, to: ConnState) {
        if from.is_active() != to.is_active() {
            if let Some(d) = self.dest(dest) {
                d.add(from, -1);
                d.add(to, 1);
            }
        }
    }

    /// Removes a connection now. Returns false if it was already gone. Lock-free.
    pub fn remove(&self, conn: ConnRef) -> bool {
        let Some(e) = self.entry(conn.idx) else {
            return false;
        };
        let meta = F::meta(e);
        let mut m = meta.load(Ordering::Acquire);
        let state = loop {
            if gen_of(m) != conn.gen {
                return false;
            }
            let Some(st) = live_state(m) else {
                return false;
            };
            match meta.compare_exchange_weak(
                m,
                pack(conn.gen, ST_FREE, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break st,
                Err(cur) => m = cur,
            }
        };
        // This thread owns the free entry now: nobody else modifies or reuses it until it is
        // back on a free list, so its fields are stable.
        let v: EntryView<F> = EntryView {
            meta: m,
            state,
            words: F::load(e),
        };
        if let Some(d) = self.dest(v.dest()) {
            d.add(state, -1);
        }
        for dir in [Dir::Inbound, Dir::Reply] {
            let t = v.tuple(dir);
            let p = self.place(&t);
            let word = slot_word(conn.idx, dir, p.tag);
            let (bs, n) = self.search_of(&t, &p);
            // Only this entry's owner writes a slot holding its word (others only claim empty
            // ones), so a plain store clears it.
            'found: for b in bs.iter().take(n) {
                if let Some(bk) = self.bucket(*b) {
                    for s in &bk.slots {
                        if s.load(Ordering::Relaxed) == word {
                            s.store(0, Ordering::Release);
                            break 'found;
                        }
                    }
                }
            }
        }
        self.push_free(conn.idx);
        true
    }
}
