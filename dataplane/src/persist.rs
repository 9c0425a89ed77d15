//! Persistence (`-p timeout`, `-M netmask`): templates that keep a client on its real server.
//!
//! As the kernel's `ip_vs_sched_persist`, a new connection to a persistent service first looks
//! for a template keyed by (protocol, client address & netmask, VIP, virtual port), the virtual
//! port being 0 for a port-0 service (one template for all its ports). A template names a real
//! server; it is used when that server is still in the service with a weight above 0 (an
//! overloaded server keeps its persistent clients, as in the kernel). Otherwise the service's
//! scheduler picks a server and the template is (re)written. A template expires `timeout`
//! seconds after the last new connection that used it.
//!
//! A template whose server was removed or set to weight 0 is dropped: it no longer counts the
//! next time it is looked up and is overwritten (the kernel's `ip_vs_check_template` with
//! `expire_quiescent_template=1`). Setting the weight back above 0 before any new connection of
//! that client revives it, as in the kernel, whose check is also made at lookup.
//!
//! # The table
//!
//! Fixed capacity, allocated once: a power-of-two array of 128-byte buckets, each a sequence
//! counter and [`WAYS`] entries of atomics. Lookups take no lock: they read the entries and
//! validate what they read with the bucket's counter (a seqlock; a lookup that keeps meeting
//! writers gives up after a few tries and counts as a miss). Writers (a new connection that
//! needs a template, or refreshes one) take the bucket by compare-and-swap on the counter,
//! and never wait long: after a bounded number of tries the template is simply not written
//! (the connection is scheduled all the same). Nothing is allocated after [`Persist::new`].
//! When a bucket is full, the template that expires first is replaced (the kernel's table has
//! no such limit).

use crate::sched::{fmix64, Dests, Flow};
use crate::service::Service;
use std::net::Ipv4Addr;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Entries per bucket (five 24-byte entries and the counter fill two cache lines).
pub const WAYS: usize = 5;

/// Tries a lookup or a write makes before giving up on a busy bucket.
const TRIES: usize = 32;

/// What identifies a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub proto: u8,
    /// Client address & netmask.
    pub cnet: Ipv4Addr,
    pub vip: Ipv4Addr,
    /// The virtual port; 0 for a port-0 service.
    pub vport: u16,
}

impl Key {
    /// The template key of a new connection `flow` (protocol `proto`) to `svc`.
    pub fn of(svc: &Service, proto: u8, flow: &Flow) -> Key {
        let mask = u32::from(svc.spec.netmask);
        Key {
            proto,
            cnet: Ipv4Addr::from(u32::from(flow.client) & mask),
            vip: flow.vip,
            vport: if svc.spec.key.port == 0 {
                0
            } else {
                flow.vport
            },
        }
    }

    /// The key `words` made.
    fn from_words(a: u64, b: u32) -> Key {
        Key {
            proto: (b >> 16) as u8,
            cnet: Ipv4Addr::from((a >> 32) as u32),
            vip: Ipv4Addr::from(a as u32),
            vport: b as u16,
        }
    }

    fn words(&self) -> (u64, u32) {
        (
            (u64::from(u32::from(self.cnet)) << 32) | u64::from(u32::from(self.vip)),
            USED | (u32::from(self.proto) << 16) | u32::from(self.vport),
        )
    }
}

/// Marks a used entry in `key_b` (so that an empty entry, all zero, matches no key).
const USED: u32 = 1 << 31;

/// The real server a template names: its slot and its address and port (a slot is reused by
/// other servers later, so all three must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub slot: u16,
    pub rip: Ipv4Addr,
    pub rport: u16,
}

impl Target {
    fn of(dests: &Dests<'_>, i: usize) -> Option<Target> {
        let d = dests.get(i)?;
        Some(Target {
            slot: u16::try_from(d.slot).ok()?,
            rip: d.spec.addr,
            rport: d.spec.port,
        })
    }

    /// The index of this server in `dests`, if it is there with a weight above 0.
    fn find(&self, dests: &Dests<'_>) -> Option<usize> {
        (0..dests.len()).find(|&i| {
            dests.get(i).is_some_and(|d| {
                d.slot == u32::from(self.slot)
                    && d.spec.addr == self.rip
                    && d.spec.port == self.rport
                    && d.spec.weight > 0
            })
        })
    }

    fn word(&self) -> u32 {
        (u32::from(self.slot) << 16) | u32::from(self.rport)
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// cnet << 32 | vip
    key_a: AtomicU64,
    /// USED | proto << 16 | vport; 0 when empty.
    key_b: AtomicU32,
    /// slot << 16 | rport
    target: AtomicU32,
    rip: AtomicU32,
    /// Expiry in seconds of the workers' clock (rounded up).
    expires_s: AtomicU32,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket {
    /// Even: stable; odd: a writer is changing the entries.
    seq: AtomicU32,
    entries: [Entry; WAYS],
}

/// A template as read from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    target: Target,
    expires_s: u32,
}

impl Entry {
    /// The entry's target and expiry, read plainly: validate with the bucket's counter.
    fn found(&self) -> Found {
        let t = self.target.load(Ordering::Relaxed);
        Found {
            target: Target {
                slot: (t >> 16) as u16,
                rport: t as u16,
                rip: Ipv4Addr::from(self.rip.load(Ordering::Relaxed)),
            },
            expires_s: self.expires_s.load(Ordering::Relaxed),
        }
    }
}

/// A live template, as [`Persist::for_each`] reports it (`rvsadm -L -c` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template {
    pub key: Key,
    pub target: Target,
    /// Expiry on the workers' clock, in ms (a whole second).
    pub expires_ms: u64,
}

/// The template table, shared by all workers.
pub struct Persist {
    buckets: Box<[Bucket]>,
    mask: usize,
}

impl std::fmt::Debug for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persist")
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Expiry second of a template refreshed at `now_ms` for `timeout_s` seconds.
fn expiry(now_ms: u64, timeout_s: u32) -> u32 {
    let ms = now_ms.saturating_add(u64::from(timeout_s) * 1000);
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// Still valid at `now_ms`.
fn live(expires_s: u32, now_ms: u64) -> bool {
    now_ms < u64::from(expires_s) * 1000
}

impl Persist {
    /// A table for at least `capacity` templates (rounded up to a power-of-two number of
    /// buckets; at least one bucket).
    pub fn new(capacity: usize) -> Persist {
        let buckets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        Persist {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            mask: buckets - 1,
        }
    }

    /// Templates the table can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    fn bucket(&self, a: u64, b: u32) -> Option<&Bucket> {
        let h = fmix64(a ^ u64::from(b).rotate_left(29));
        self.buckets.get(h as usize & self.mask)
    }

    /// The live template of `key` at `now_ms`, without taking any lock.
    fn lookup(&self, key: &Key, now_ms: u64) -> Option<Found> {
        let (a, b) = key.words();
        let bucket = self.bucket(a, b)?;
        for _ in 0..TRIES {
            let s1 = bucket.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let found = bucket.entries.iter().find_map(|e| {
                (e.key_b.load(Ordering::Relaxed) == b && e.key_a.load(Ordering::Relaxed) == a)
                    .then(|| e.found())
            });
            fence(Ordering::Acquire);
            if bucket.seq.load(Ordering::Relaxed) == s1 {
                return found.filter(|f| live(f.expires_s, now_ms));
            }
        }
        None
    }

    /// Takes the bucket for writing (bounded tries); the returned guard releases it.
    fn lock<'a>(&self, bucket: &'a Bucket) -> Option<WriteGuard<'a>> {
        for _ in 0..TRIES {
            let s = bucket.seq.load(Ordering::Relaxed);
            if s & 1 == 0
                && bucket
                    .seq
                    .compare_exchange_weak(
                        s,
                        s.wrapping_add(1),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                fence(Ordering::Release);
                return Some(WriteGuard { bucket, seq: s });
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Writes `target` as the template of `key`, expiring at `expires_s`, unless the bucket
    /// already holds a live template of `key` that `keep` accepts: that one is refreshed
    /// and returned instead (another worker wrote it first). `None` when the bucket stayed
    /// busy (nothing written).
    fn claim(
        &self,
        key: &Key,
        target: Target,
        expires_s: u32,
        now_ms: u64,
        keep: impl Fn(&Target) -> bool,
    ) -> Option<Target> {
        let (a, b) = key.words();
        let bucket = self.bucket(a, b)?;
        let _guard = self.lock(bucket)?;
        let mut victim: Option<(&Entry, u32)> = None;
        for e in &bucket.entries {
            let eb = e.key_b.load(Ordering::Relaxed);
            let exp = e.expires_s.load(Ordering::Relaxed);
            if eb == b && e.key_a.load(Ordering::Relaxed) == a {
                let existing = e.found().target;
                if live(exp, now_ms) && keep(&existing) {
                    e.expires_s.store(exp.max(expires_s), Ordering::Relaxed);
                    return Some(existing);
                }
                victim = Some((e, 0));
                break;
            }
            // Prefer an empty or expired entry, else the one expiring first.
            let rank = if eb == 0 || !live(exp, now_ms) {
                0
            } else {
                exp
            };
            if victim.is_none_or(|(_, r)| rank < r) {
                victim = Some((e, rank));
            }
        }
        let (e, _) = victim?;
        e.key_a.store(a, Ordering::Relaxed);
        e.key_b.store(b, Ordering::Relaxed);
        e.target.store(target.word(), Ordering::Relaxed);
        e.rip.store(u32::from(target.rip), Ordering::Relaxed);
        e.expires_s.store(expires_s, Ordering::Relaxed);
        Some(target)
    }

    /// The real server (an index into `dests`) for a new connection `flow` (protocol `proto`)
    /// to the persistent service `svc` with timeout `timeout_s`: its template's, else the
    /// scheduler's pick, remembered. `None` when no server is eligible.
    pub fn pick(
        &self,
        svc: &Service,
        dests: &Dests<'_>,
        proto: u8,
        flow: &Flow,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<usize> {
        let key = Key::of(svc, proto, flow);
        let expires_s = expiry(now_ms, timeout_s);
        if let Some(found) = self.lookup(&key, now_ms) {
            if let Some(i) = found.target.find(dests) {
                if found.expires_s < expires_s {
                    // Refresh; a busy bucket only delays the refresh to the next connection.
                    let _ = self.claim(&key, found.target, expires_s, now_ms, |t| {
                        t.find(dests).is_some()
                    });
                }
                return Some(i);
            }
        }
        let i = svc.scheduler.pick(dests, flow)?;
        let Some(target) = Target::of(dests, i) else {
            return Some(i);
        };
        match self.claim(&key, target, expires_s, now_ms, |t| t.find(dests).is_some()) {
            // Another worker made the template first: follow it.
            Some(t) if t != target => Some(t.find(dests).unwrap_or(i)),
            _ => Some(i),
        }
    }

    /// Calls `f` with every template live at `now_ms`, each read consistently (walks the whole
    /// table: for reports). A bucket that writers keep busy is skipped.
    pub fn for_each(&self, now_ms: u64, mut f: impl FnMut(Template)) {
        for bucket in self.buckets.iter() {
            let mut read = [None; WAYS];
            let consistent = (0..TRIES).any(|_| {
                let s1 = bucket.seq.load(Ordering::Acquire);
                if s1 & 1 == 1 {
                    std::hint::spin_loop();
                    return false;
                }
                for (r, e) in read.iter_mut().zip(&bucket.entries) {
                    let b = e.key_b.load(Ordering::Relaxed);
                    *r = (b != 0).then(|| (e.key_a.load(Ordering::Relaxed), b, e.found()));
                }
                fence(Ordering::Acquire);
                bucket.seq.load(Ordering::Relaxed) == s1
            });
            if !consistent {
                continue;
            }
            for (a, b, found) in read.into_iter().flatten() {
                if live(found.expires_s, now_ms) {
                    f(Template {
                        key: Key::from_words(a, b),
                        target: found.target,
                        expires_ms: u64::from(found.expires_s) * 1000,
                    });
                }
            }
        }
    }

    /// Templates live at `now_ms` (for tests and reports; walks the whole table).
    pub fn live_count(&self, now_ms: u64) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| {
                e.key_b.load(Ordering::Relaxed) != 0
                    && live(e.expires_s.load(Ordering::Relaxed), now_ms)
            })
            .count()
    }
}

struct WriteGuard<'a> {
    bucket: &'a Bucket,
    seq: u32,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.bucket
            .seq
            .store(self.seq.wrapping_add(2), Ordering::Release);
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use super::*;

    fn key(last: u8, vport: u16) -> Key {
        Key {
            proto: 6,
            cnet: Ipv4Addr::new(198, 51, 100, last),
            vip: Ipv4Addr::new(198, 51, 100, 1),
            vport,
        }
    }

    fn target(slot: u16) -> Target {
        Target {
            slot,
            rip: Ipv4Addr::new(192, 0, 2, 2 + slot as u8),
            rport: 80,
        }
    }

    #[test]
    fn claim_then_lookup_until_expiry() {
        let p = Persist::new(64);
        assert_eq!(p.lookup(&key(10, 80), 0), None);
        let exp = expiry(1_500, 2);
        assert_eq!(exp, 4, "3.5 s rounded up");
        assert_eq!(
            p.claim(&key(10, 80), target(1), exp, 1_500, |_| true),
            Some(target(1))
        );
        let f = p.lookup(&key(10, 80), 3_999).unwrap();
        assert_eq!(f.target, target(1));
        assert_eq!(p.lookup(&key(10, 80), 4_000), None, "expired");
        assert_eq!(p.lookup(&key(10, 81), 0), None, "other port");
        assert_eq!(p.lookup(&key(11, 80), 0), None, "other client");
        let mut udp = key(10, 80);
        udp.proto = 17;
        assert_eq!(p.lookup(&udp, 0), None, "other protocol");
        assert_eq!(p.live_count(0), 1);
        assert_eq!(p.live_count(4_000), 0);
    }

    #[test]
    fn an_existing_live_template_wins_unless_rejected() {
        let p = Persist::new(64);
        p.claim(&key(10, 80), target(1), 100, 0, |_| true);
        // Another worker's claim follows the first one, and refreshes it.
        assert_eq!(
            p.claim(&key(10, 80), target(2), 200, 0, |_| true),
            Some(target(1))
        );
        assert_eq!(p.lookup(&key(10, 80), 150_000).unwrap().expires_s, 200);
        // A rejected one (its server gone) is overwritten.
        assert_eq!(
            p.claim(&key(10, 80), target(2), 300, 0, |t| t.slot != 1),
            Some(target(2))
        );
        assert_eq!(p.lookup(&key(10, 80), 0).unwrap().target, target(2));
    }

    #[test]
    fn a_full_bucket_replaces_what_expires_first() {
        // One bucket: WAYS templates fit; the next replaces the earliest expiry.
        let p = Persist::new(1);
        assert_eq!(p.capacity(), WAYS);
        for i in 0..WAYS as u8 {
            p.claim(&key(i, 80), target(1), 100 + u32::from(i), 0, |_| true);
        }
        assert_eq!(p.live_count(0), WAYS);
        p.claim(&key(200, 80), target(1), 500, 0, |_| true);
        assert_eq!(p.live_count(0), WAYS);
        assert_eq!(p.lookup(&key(0, 80), 0), None, "the earliest went");
        assert!(p.lookup(&key(1, 80), 0).is_some());
        assert!(p.lookup(&key(200, 80), 0).is_some());
        // Expired entries are reused first.
        p.claim(&key(201, 80), target(1), 900, 101_000, |_| true);
        assert!(p.lookup(&key(2, 80), 0).is_some(), "live at 0 and kept");
        assert_eq!(p.lookup(&key(1, 80), 0), None, "expired at 101 s, reused");
    }

    #[test]
    fn a_busy_bucket_is_a_miss_not_a_wait() {
        let p = Persist::new(1);
        p.claim(&key(10, 80), target(1), 100, 0, |_| true);
        let bucket = &p.buckets[0];
        let guard = p.lock(bucket).unwrap();
        assert_eq!(p.lookup(&key(10, 80), 0), None);
        assert_eq!(p.claim(&key(11, 80), target(1), 100, 0, |_| true), None);
        drop(guard);
        assert!(p.lookup(&key(10, 80), 0).is_some());
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_template() {
        let p = Persist::new(1);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for n in 0..20_000u32 {
                    let slot = (n % 7) as u16 + 1;
                    p.claim(&key(10, 80), target(slot), 1_000, 0, |_| false);
                }
                stop.store(true, Ordering::Relaxed);
            });
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(f) = p.lookup(&key(10, 80), 0) {
                        // rip and slot were written together: they always agree.
                        assert_eq!(f.target, target(f.target.slot));
                    }
                }
            });
        });
    }
}
