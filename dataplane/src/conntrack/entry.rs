//! An entry: its meta word, and the seqlock read that validates it with the family's field
//! words (`family.rs`: what an IPv4 and an IPv6 entry hold).
//!
//! The meta word is `generation 16 | state 8 | expiry 40` (ms). The state byte is 0 free;
//! 1..=12 live (`ConnState` + 1); `0x80 | (ConnState + 1)` pending (fields complete, slots
//! being claimed and checked, see `insert.rs`); 0xff busy (fields being written). All-zero
//! memory is a free entry of generation 0.
//!
//! Readers validate what they read with the generation (a seqlock read: meta, fields, acquire
//! fence, meta again; see [`ConnTable::read`]). Within a generation the fields are fixed once the
//! entry is pending; only the state and the expiry move, by CAS on meta while readers go on (so
//! an entry is not a `crate::seqlock::SeqSlot`: see that module's documentation). Only a live
//! entry whose tuple matches the one looked up is ever returned, so a stale slot word or a
//! reused entry reads as a miss, never as a wrong mapping.

use super::family::Family;
use super::state::{ConnState, Dir};
use super::{ConnRef, ConnTable, Hit, Tuple};
use crate::atomic::{fence, Ordering};

// --- the meta word ---------------------------------------------------------------------------

pub(super) const EXP_BITS: u32 = 40;
pub(super) const EXP_MAX: u64 = (1 << EXP_BITS) - 1;
pub(super) const ST_FREE: u8 = 0;
pub(super) const ST_BUSY: u8 = 0xff;
pub(super) const ST_PENDING: u8 = 0x80;

#[inline]
pub(super) fn pack(gen: u16, state: u8, expires: u64) -> u64 {
    (u64::from(gen) << 48) | (u64::from(state) << EXP_BITS) | expires.min(EXP_MAX)
}
#[inline]
pub(super) fn gen_of(m: u64) -> u16 {
    (m >> 48) as u16
}
#[inline]
pub(super) fn state_of(m: u64) -> u8 {
    (m >> EXP_BITS) as u8
}
#[inline]
pub(super) fn expires_of(m: u64) -> u64 {
    m & EXP_MAX
}
#[inline]
pub(super) fn live_code(s: ConnState) -> u8 {
    s as u8 + 1
}
#[inline]
pub(super) fn pending_code(s: ConnState) -> u8 {
    ST_PENDING | live_code(s)
}
/// The state of a live entry.
#[inline]
pub(super) fn live_state(m: u64) -> Option<ConnState> {
    let c = state_of(m);
    if c & ST_PENDING != 0 {
        return None;
    }
    ConnState::from_u8(c.checked_sub(1)?)
}
/// The state of a pending entry.
#[inline]
pub(super) fn pending_state(m: u64) -> Option<ConnState> {
    let c = state_of(m);
    if c & ST_PENDING == 0 || c == ST_BUSY {
        return None;
    }
    ConnState::from_u8((c & !ST_PENDING).checked_sub(1)?)
}

// --- the fields ------------------------------------------------------------------------------

/// The fields of an entry, read consistently: the meta word and the family's field words
/// (see `family.rs`).
pub(super) struct EntryView<F: Family> {
    pub(super) meta: u64,
    pub(super) state: ConnState,
    pub(super) words: F::Words,
}

impl<F: Family> Clone for EntryView<F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Family> Copy for EntryView<F> {}

impl<F: Family> EntryView<F> {
    /// Whether the entry's tuple in direction `dir` is `t`. Branch-free on `dir` (which
    /// direction a lookup hits is unpredictable, and a mispredicted branch that waits for the
    /// entry's cache miss would also throw away the next lookups' loads already in flight).
    #[inline]
    pub(super) fn matches(&self, dir: Dir, t: &Tuple<F::Addr>) -> bool {
        F::matches(&self.words, dir, t)
    }

    #[inline]
    pub(super) fn dest(&self) -> u32 {
        F::dest(&self.words)
    }

    #[inline]
    pub(super) fn hit(&self, idx: u32, dir: Dir) -> Hit<F::Addr> {
        let [client, virt, real] = F::endpoints(&self.words);
        Hit {
            conn: ConnRef {
                idx,
                gen: gen_of(self.meta),
            },
            dir,
            state: self.state,
            proto: F::proto(&self.words),
            dest: self.dest(),
            client,
            virt,
            real,
        }
    }

    #[inline]
    pub(super) fn is_live(&self) -> bool {
        live_state(self.meta).is_some()
    }

    #[inline]
    pub(super) fn tuple(&self, dir: Dir) -> Tuple<F::Addr> {
        let [client, virt, real] = F::endpoints(&self.words);
        let (src, dst) = match dir {
            Dir::Inbound => (client, virt),
            Dir::Reply => (real, client),
        };
        Tuple {
            proto: F::proto(&self.words),
            src: src.0,
            sport: src.1,
            dst: dst.0,
            dport: dst.1,
        }
    }
}

impl<F: Family> ConnTable<F> {
    /// Reads entry `idx` consistently (seqlock read); `None` unless it is live or pending.
    #[inline]
    pub(super) fn read(&self, idx: u32) -> Option<EntryView<F>> {
        let e = self.entry(idx)?;
        let m1 = F::meta(e).load(Ordering::Acquire);
        let c = state_of(m1);
        if c == ST_FREE || c == ST_BUSY {
            return None;
        }
        let words = F::load(e);
        fence(Ordering::Acquire);
        let m2 = F::meta(e).load(Ordering::Relaxed);
        if gen_of(m1) != gen_of(m2) {
            return None;
        }
        // Within a generation the fields are fixed once pending; only the state and expiry
        // move: take the later ones.
        let state = live_state(m2).or_else(|| pending_state(m2))?;
        Some(EntryView {
            meta: m2,
            state,
            words,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_encoding_round_trips() {
        for s in ConnState::ALL {
            let m = pack(7, live_code(s), 123);
            assert_eq!(live_state(m), Some(s));
            assert_eq!(pending_state(m), None);
            let p = pack(7, pending_code(s), 123);
            assert_eq!(live_state(p), None);
            assert_eq!(pending_state(p), Some(s));
            assert_eq!((gen_of(p), expires_of(p)), (7, 123));
        }
        for c in [ST_FREE, ST_BUSY] {
            assert_eq!(live_state(pack(1, c, 0)), None);
            assert_eq!(pending_state(pack(1, c, 0)), None);
        }
        assert_eq!(expires_of(pack(0, 1, u64::MAX)), EXP_MAX);
    }
}
