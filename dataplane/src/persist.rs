//! Persistence (`-p timeout`, `-M netmask`): templates that keep a client on its real server.
//!
//! As the kernel's `ip_vs_sched_persist`, a new connection to a persistent service first looks
//! for a template keyed by (protocol, client address & netmask, VIP, virtual port), the virtual
//! port being 0 for a port-0 service (one template for all its ports). A template names a real
//! server; it is used when that server is still in the service (an overloaded server keeps its
//! persistent clients, as in the kernel). Otherwise the service's scheduler picks a server and
//! the template is (re)written. A template expires `timeout` seconds after the last new
//! connection that used it.
//!
//! A template whose server was removed is dropped: it no longer counts the next time it is
//! looked up and is overwritten (the kernel's `ip_vs_check_template`). One whose server is at
//! weight 0 (quiesced) follows `expire_quiescent_template` ([`Quiesced`]): with 0, the default,
//! it keeps sending its clients there; with 1 it is dropped in the same way. Setting the weight
//! back above 0 before any new connection of that client revives it, as in the kernel, whose
//! check is also made at lookup.
//!
//! # The table
//!
//! Fixed capacity, allocated once: a power-of-two array of 128-byte buckets, each a
//! [`SeqSlot`] of [`WAYS`] entries. Lookups take no lock: they read the bucket's entries
//! consistently (a lookup that keeps meeting writers gives up after a few tries and counts as a
//! miss). Writers (a new connection that needs a template, or refreshes one) take the bucket
//! with a compare-and-swap, and never wait long: after a bounded number of tries the template is
//! simply not written (the connection is scheduled all the same). Nothing is allocated after [`Persist::new`].
//! When a bucket is full, the template that expires first is replaced (the kernel's table has
//! no such limit).

use crate::hash::{range, HashKey};
use crate::sched::fold;
use crate::sched::{Dests, Flow};
use crate::seqlock::{SeqSlot, Words};
use crate::service::Service;
use control::model::Netmask;
use control::sysctl::IpvsSysctls;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Entries per bucket (five 24-byte entries and the counter fill two cache lines).
pub const WAYS: usize = 5;
/// The words of a bucket's entries.
const WORDS: usize = 3 * WAYS;

/// Tries a lookup or a write makes before giving up on a busy bucket.
const TRIES: usize = 32;

/// What a template whose real server is at weight 0 does (`expire_quiescent_template`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quiesced {
    /// 0, the kernel's default: it keeps sending its clients to the quiesced server.
    Keep,
    /// 1: it expires when next used, and the client is scheduled afresh.
    Expire,
}

impl Quiesced {
    /// The mode `expire_quiescent_template` sets.
    pub fn of(s: &IpvsSysctls) -> Quiesced {
        if s.expire_quiescent_template != 0 {
            Quiesced::Expire
        } else {
            Quiesced::Keep
        }
    }
}

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
    /// The template key of a new connection `flow` (protocol `proto`) to the IPv4 service
    /// `svc` (an IPv6 flow's is [`Key6::of`]).
    pub fn of(svc: &Service, proto: u8, flow: &Flow) -> Key {
        let mask = match svc.spec.netmask {
            Netmask::V4(m) => u32::from(m),
            Netmask::V6(_) => u32::MAX,
        };
        let v4 = |a: IpAddr| match a {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        Key {
            proto,
            cnet: Ipv4Addr::from(u32::from(v4(flow.client)) & mask),
            vip: v4(flow.vip),
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
/// Marks an IPv6 template in `key_b`: its `key_a` is a keyed 64-bit digest of the client
/// prefix and VIP (256 bits do not fit the entry), so it is never listed (`-L -c` shows the
/// IPv4 templates only). Sync sends it from the connection that uses it, whose addresses it
/// has.
const V6: u32 = 1 << 30;

/// What identifies an IPv6 template: (protocol, client address & /prefix, VIP, vport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key6 {
    pub proto: u8,
    /// Client address with the bits past the service's prefix length (`-M`) cleared.
    pub cnet: Ipv6Addr,
    pub vip: Ipv6Addr,
    /// The virtual port; 0 for a port-0 service.
    pub vport: u16,
}

impl Key6 {
    /// The template key of a new IPv6 connection `flow` to `svc`.
    pub fn of(svc: &Service, proto: u8, flow: &Flow) -> Key6 {
        let v6 = |a: IpAddr| match a {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
        };
        let mask = match svc.spec.netmask {
            Netmask::V6(_) => svc.spec.netmask.v6_mask(),
            Netmask::V4(_) => u128::MAX,
        };
        Key6 {
            proto,
            cnet: Ipv6Addr::from(u128::from(v6(flow.client)) & mask),
            vip: v6(flow.vip),
            vport: if svc.spec.key.port == 0 {
                0
            } else {
                flow.vport
            },
        }
    }

    /// The entry words: a digest under the table's secret key (so that clients cannot pick
    /// addresses that collide), and the IPv6 mark.
    fn words(&self, key: &HashKey) -> (u64, u32) {
        let c = u128::from(self.cnet);
        let v = u128::from(self.vip);
        let h = key.hash(c as u64, (c >> 64) as u64);
        let a = key.hash(
            h ^ v as u64,
            ((v >> 64) as u64).rotate_left(17) ^ h.rotate_left(29),
        );
        (
            a,
            USED | V6 | (u32::from(self.proto) << 16) | u32::from(self.vport),
        )
    }
}

/// The real server a template names: its slot and its address and port (a slot is reused by
/// other servers later, so all three must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub slot: u16,
    pub rip: Ipv4Addr,
    pub rport: u16,
}

impl Target {
    /// The real server in slot `slot` at `addr`:`rport`; `None` for a slot past a template's
    /// room (16 bits).
    pub fn new(slot: u32, addr: IpAddr, rport: u16) -> Option<Target> {
        Some(Target {
            slot: u16::try_from(slot).ok()?,
            // An IPv6 RIP is kept folded to 32 bits (the entry's room); the slot and port
            // identify the server all the same.
            rip: Ipv4Addr::from(fold(addr)),
            rport,
        })
    }

    fn of(dests: &Dests<'_>, i: usize) -> Option<Target> {
        let d = dests.get(i)?;
        Target::new(d.slot, d.spec.addr, d.spec.port)
    }

    /// The index of this server in `dests`, if it is there and may keep its clients: any
    /// weight with [`Quiesced::Keep`], above 0 with [`Quiesced::Expire`].
    fn find(&self, dests: &Dests<'_>, quiesced: Quiesced) -> Option<usize> {
        (0..dests.len()).find(|&i| {
            dests.get(i).is_some_and(|d| {
                d.slot == u32::from(self.slot)
                    && fold(d.spec.addr) == u32::from(self.rip)
                    && d.spec.port == self.rport
                    && (d.spec.weight > 0 || quiesced == Quiesced::Keep)
            })
        })
    }

    fn word(&self) -> u32 {
        (u32::from(self.slot) << 16) | u32::from(self.rport)
    }
}

/// One template; all zero when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    /// cnet << 32 | vip
    key_a: u64,
    /// USED | proto << 16 | vport; 0 when empty.
    key_b: u32,
    /// slot << 16 | rport
    target: u32,
    rip: u32,
    /// Expiry in seconds of the workers' clock (rounded up).
    expires_s: u32,
}

/// A bucket's entries, as its slot holds them: three words each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ways([Entry; WAYS]);

impl Words<WORDS> for Ways {
    fn to_words(&self) -> [u64; WORDS] {
        let mut w = [0; WORDS];
        for (c, e) in w.chunks_exact_mut(3).zip(&self.0) {
            c.copy_from_slice(&[
                e.key_a,
                (u64::from(e.key_b) << 32) | u64::from(e.target),
                (u64::from(e.rip) << 32) | u64::from(e.expires_s),
            ]);
        }
        w
    }
    fn from_words(w: [u64; WORDS]) -> Self {
        let mut ways = [Entry::default(); WAYS];
        for (e, c) in ways.iter_mut().zip(w.chunks_exact(3)) {
            if let [a, b, c] = *c {
                *e = Entry {
                    key_a: a,
                    key_b: (b >> 32) as u32,
                    target: b as u32,
                    rip: (c >> 32) as u32,
                    expires_s: c as u32,
                };
            }
        }
        Ways(ways)
    }
}

/// A bucket: two cache lines.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket(SeqSlot<Ways, WORDS>);

/// A template as read from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    target: Target,
    expires_s: u32,
}

impl Entry {
    fn is(&self, a: u64, b: u32) -> bool {
        self.key_b == b && self.key_a == a
    }

    fn found(&self) -> Found {
        let t = self.target;
        Found {
            target: Target {
                slot: (t >> 16) as u16,
                rport: t as u16,
                rip: Ipv4Addr::from(self.rip),
            },
            expires_s: self.expires_s,
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
    key: HashKey,
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
        let [key] = HashKey::random();
        Persist {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            key,
        }
    }

    /// Templates the table can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    fn bucket(&self, a: u64, b: u32) -> Option<&SeqSlot<Ways, WORDS>> {
        let h = self.key.hash(a, u64::from(b));
        self.buckets.get(range(h, self.buckets.len())).map(|b| &b.0)
    }

    /// The live template of `key` at `now_ms`, without taking any lock.
    #[cfg(test)]
    fn lookup(&self, key: &Key, now_ms: u64) -> Option<Found> {
        self.lookup_words(key.words(), now_ms)
    }

    fn lookup_words(&self, (a, b): (u64, u32), now_ms: u64) -> Option<Found> {
        let ways = self.bucket(a, b)?.read(TRIES)?;
        ways.0
            .iter()
            .find(|e| e.is(a, b))
            .map(Entry::found)
            .filter(|f| live(f.expires_s, now_ms))
    }

    /// Writes `target` as the template of `key`, expiring at `expires_s`, unless the bucket
    /// already holds a live template of `key` that `keep` accepts: that one is refreshed
    /// and returned instead (another worker wrote it first). `None` when the bucket stayed
    /// busy (nothing written).
    #[cfg(test)]
    fn claim(
        &self,
        key: &Key,
        target: Target,
        expires_s: u32,
        now_ms: u64,
        keep: impl Fn(&Target) -> bool,
    ) -> Option<Target> {
        self.claim_words(key.words(), target, expires_s, now_ms, keep)
    }

    fn claim_words(
        &self,
        (a, b): (u64, u32),
        target: Target,
        expires_s: u32,
        now_ms: u64,
        keep: impl Fn(&Target) -> bool,
    ) -> Option<Target> {
        let mut guard = self.bucket(a, b)?.lock(TRIES)?;
        let mut ways = guard.get();
        let written = Self::claim_in(&mut ways, (a, b), target, expires_s, now_ms, keep);
        guard.set(ways);
        written
    }

    /// `claim` on the entries of a bucket taken for writing.
    fn claim_in(
        ways: &mut Ways,
        (a, b): (u64, u32),
        target: Target,
        expires_s: u32,
        now_ms: u64,
        keep: impl Fn(&Target) -> bool,
    ) -> Option<Target> {
        let mut victim: Option<(&mut Entry, u32)> = None;
        for e in ways.0.iter_mut() {
            if e.is(a, b) {
                let existing = e.found().target;
                if live(e.expires_s, now_ms) && keep(&existing) {
                    e.expires_s = e.expires_s.max(expires_s);
                    return Some(existing);
                }
                victim = Some((e, 0));
                break;
            }
            // Prefer an empty or expired entry, else the one expiring first.
            let rank = if e.key_b == 0 || !live(e.expires_s, now_ms) {
                0
            } else {
                e.expires_s
            };
            if victim.as_ref().is_none_or(|(_, r)| rank < *r) {
                victim = Some((e, rank));
            }
        }
        let (e, _) = victim?;
        *e = Entry {
            key_a: a,
            key_b: b,
            target: target.word(),
            rip: u32::from(target.rip),
            expires_s,
        };
        Some(target)
    }

    /// The real server (an index into `dests`) for a new connection `flow` (protocol `proto`)
    /// to the persistent service `svc` with timeout `timeout_s`: its template's (a quiesced
    /// one's as `quiesced` says), else the scheduler's pick, remembered. `None` when no server
    /// is eligible.
    #[allow(clippy::too_many_arguments)] // the connection, its service and the knob: all used
    pub fn pick(
        &self,
        svc: &Service,
        dests: &Dests<'_>,
        proto: u8,
        flow: &Flow,
        timeout_s: u32,
        quiesced: Quiesced,
        now_ms: u64,
    ) -> Option<usize> {
        let key = match flow.client {
            IpAddr::V4(_) => Key::of(svc, proto, flow).words(),
            IpAddr::V6(_) => Key6::of(svc, proto, flow).words(&self.key),
        };
        let expires_s = expiry(now_ms, timeout_s);
        let usable = |t: &Target| t.find(dests, quiesced).is_some();
        if let Some(found) = self.lookup_words(key, now_ms) {
            if let Some(i) = found.target.find(dests, quiesced) {
                if found.expires_s < expires_s {
                    // Refresh; a busy bucket only delays the refresh to the next connection.
                    let _ = self.claim_words(key, found.target, expires_s, now_ms, usable);
                }
                return Some(i);
            }
        }
        let i = svc.scheduler.pick(dests, flow)?;
        let Some(target) = Target::of(dests, i) else {
            return Some(i);
        };
        match self.claim_words(key, target, expires_s, now_ms, usable) {
            // Another worker made the template first: follow it.
            Some(t) if t != target => Some(t.find(dests, quiesced).unwrap_or(i)),
            _ => Some(i),
        }
    }

    /// Installs a template synced from another director: `key` pins `target` for `timeout_s`
    /// from `now_ms` (a live template of `key` for another server is replaced). `None` when
    /// the bucket stayed busy.
    pub fn install(
        &self,
        key: &Key,
        target: Target,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<crate::sync::install::Installed> {
        self.install_words(key.words(), target, timeout_s, now_ms)
    }

    /// [`Persist::install`] of an IPv6 template.
    pub fn install6(
        &self,
        key: &Key6,
        target: Target,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<crate::sync::install::Installed> {
        self.install_words(key.words(&self.key), target, timeout_s, now_ms)
    }

    fn install_words(
        &self,
        key: (u64, u32),
        target: Target,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<crate::sync::install::Installed> {
        use crate::sync::install::Installed;
        let existed = self
            .lookup_words(key, now_ms)
            .is_some_and(|f| f.target == target);
        self.claim_words(key, target, expiry(now_ms, timeout_s), now_ms, |t| {
            *t == target
        })?;
        Some(if existed {
            Installed::Updated
        } else {
            Installed::New
        })
    }

    /// The real server the live IPv6 template of `key` pins at `now_ms` (for tests and
    /// reports: IPv6 templates are not listed).
    pub fn target6(&self, key: &Key6, now_ms: u64) -> Option<Target> {
        self.lookup_words(key.words(&self.key), now_ms)
            .map(|f| f.target)
    }

    /// Calls `f` with every template live at `now_ms`, each read consistently (walks the whole
    /// table: for reports). A bucket that writers keep busy is skipped.
    pub fn for_each(&self, now_ms: u64, mut f: impl FnMut(Template)) {
        for bucket in self.buckets.iter() {
            let Some(ways) = bucket.0.read(TRIES) else {
                continue;
            };
            // IPv6 templates hold a digest, not their addresses: not listed.
            for e in ways.0.iter().filter(|e| e.key_b != 0 && e.key_b & V6 == 0) {
                let found = e.found();
                if live(found.expires_s, now_ms) {
                    f(Template {
                        key: Key::from_words(e.key_a, e.key_b),
                        target: found.target,
                        expires_ms: u64::from(found.expires_s) * 1000,
                    });
                }
            }
        }
    }

    /// Templates live at `now_ms` (for tests and reports; walks the whole table; a bucket that
    /// writers keep busy is skipped).
    pub fn live_count(&self, now_ms: u64) -> usize {
        let mut n = 0;
        self.for_each(now_ms, |_| n += 1);
        n
    }

    /// Takes bucket `i` for writing, as a writer would (tests).
    #[cfg(test)]
    fn lock_bucket(&self, i: usize) -> Option<crate::seqlock::SeqGuard<'_, Ways, WORDS>> {
        self.buckets.get(i)?.0.lock(TRIES)
    }
}

#[cfg(test)]
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
    fn ipv6_templates_are_keyed_by_client_prefix_and_never_listed() {
        let p = Persist::new(64);
        let k = |cnet: &str, vport| Key6 {
            proto: 6,
            cnet: cnet.parse().unwrap(),
            vip: "2001:db8:100::1".parse().unwrap(),
            vport,
        };
        let a = k("2001:db8:100:1::", 80).words(&p.key);
        assert_ne!(a.1 & V6, 0);
        assert_eq!(
            p.claim_words(a, target(1), 100, 0, |_| true),
            Some(target(1))
        );
        assert_eq!(p.lookup_words(a, 0).unwrap().target, target(1));
        for other in [
            k("2001:db8:100:2::", 80),
            k("2001:db8:100:1::", 81),
            Key6 {
                proto: 17,
                ..k("2001:db8:100:1::", 80)
            },
        ] {
            assert_eq!(p.lookup_words(other.words(&p.key), 0), None, "{other:?}");
        }
        // An IPv4 key whose words would match the IPv6 digest's never does: the mark differs.
        let v4 = Key::from_words(a.0, a.1 & !V6);
        assert_eq!(p.lookup(&v4, 0), None);
        assert_eq!(p.live_count(0), 0, "IPv6 templates are not listed");
    }

    #[test]
    fn ipv6_key_masks_the_client_with_the_prefix_length() {
        use crate::sched::Flow;
        use control::model::{Netmask, Protocol, SchedulerKind, ServiceKey, ServiceSpec};
        let spec = ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                addr: "2001:db8:100::1".parse().unwrap(),
                port: 80,
            },
            scheduler: SchedulerKind::Rr,
            persistence: Some(60),
            netmask: Netmask::V6(48),
            sched_flags: Default::default(),
            ops: false,
        };
        let svc = Service {
            scheduler: crate::sched::build(&spec, &[], &Default::default()).unwrap(),
            spec,
            dests: Vec::new(),
        };
        let flow = |c: &str| Flow {
            client: c.parse().unwrap(),
            cport: 1000,
            vip: "2001:db8:100::1".parse().unwrap(),
            vport: 80,
        };
        let a = Key6::of(&svc, 6, &flow("2001:db8:100:ffff::7"));
        assert_eq!(a.cnet, "2001:db8:100::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(a, Key6::of(&svc, 6, &flow("2001:db8:100:1:2:3:4:5")));
        assert_ne!(a, Key6::of(&svc, 6, &flow("2001:db8:101::7")));
    }

    #[test]
    fn a_bucket_is_two_cache_lines() {
        assert_eq!(std::mem::size_of::<Bucket>(), 128);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
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
        let guard = p.lock_bucket(0).unwrap();
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
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(f) = p.lookup(&key(10, 80), 0) {
                        // rip and slot were written together: they always agree.
                        assert_eq!(f.target, target(f.target.slot));
                    }
                }
            });
        });
    }
}
