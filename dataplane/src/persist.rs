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
//! check is also made at lookup. A template names its server by slot, address and port: a
//! slot is reused by other servers later, so all three must match.
//!
//! # The tables
//!
//! One table per address family, the same code over the family's entry (`TemplateAddr`); both
//! fixed capacity, allocated once: a power-of-two array of buckets, each a [`SeqSlot`] of a
//! few entries. An entry holds the whole key (client network, VIP, protocol, virtual port),
//! the server's slot, address and port, and the expiry, so every live template can be listed
//! (`rvsadm -L -c`) as the kernel lists its templates, in both families.
//!
//! | family | entry | entries per bucket | bucket | per template |
//! |--------|-------|--------------------|--------|--------------|
//! | IPv4   | 24 bytes (3 words) | [`WAYS`] = 5 | 128 bytes (2 cache lines) | 25.6 bytes |
//! | IPv6   | 64 bytes (8 words) | [`WAYS6`] = 4 | 320 bytes (5 cache lines) | 80 bytes |
//!
//! (a bucket is its entries and one sequence word, rounded up to whole cache lines; the
//! number of buckets is rounded up to a power of two, so a table takes up to twice that.) The
//! dataplane sizes each family's table at a quarter of that family's connection table (at
//! least 1024, at most 4M templates): with `conntrack.capacity` 1M, 256K IPv4 templates
//! (8 MiB) and 64K IPv6 ones (5 MiB).
//!
//! Lookups take no lock: they read the bucket's entries consistently (a lookup that keeps
//! meeting writers gives up after a few tries and counts as a miss). Writers (a new connection
//! that needs a template, or refreshes one) take the bucket with a compare-and-swap, and never
//! wait long: after a bounded number of tries the template is simply not written (the
//! connection is scheduled all the same). Nothing is allocated after [`Persist::new`]. When a
//! bucket is full, the template that expires first is replaced (the kernel's table has no such
//! limit).

use crate::hash::{range, HashKey};
use crate::sched::{Dests, Flow};
use crate::seqlock::{SeqSlot, Words};
use crate::service::Service;
use crate::sync::install::Installed;
use control::model::Netmask;
use control::sysctl::IpvsSysctls;
use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Entries per IPv4 bucket (five 24-byte entries and the counter fill two cache lines).
pub const WAYS: usize = 5;
/// The words of an IPv4 bucket's entries.
const WORDS: usize = 3 * WAYS;
/// Entries per IPv6 bucket (four 64-byte entries and the counter: five cache lines).
pub const WAYS6: usize = 4;
/// The words of an IPv6 bucket's entries.
const WORDS6: usize = 8 * WAYS6;

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

/// What identifies a template, in the addresses of its family ([`Key`], [`Key6`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateKey<A> {
    pub proto: u8,
    /// Client address & netmask (IPv6: the bits past the prefix length, `-M`, cleared).
    pub cnet: A,
    pub vip: A,
    /// The virtual port; 0 for a port-0 service.
    pub vport: u16,
}

/// An IPv4 template's key.
pub type Key = TemplateKey<Ipv4Addr>;
/// An IPv6 template's key.
pub type Key6 = TemplateKey<Ipv6Addr>;

/// Marks a used entry in its `key_b` (so that an empty entry, all zero, matches no key).
const USED: u32 = 1 << 31;

impl<A> TemplateKey<A> {
    /// The key's word beside the addresses: USED | proto << 16 | vport.
    fn word(&self) -> u32 {
        USED | (u32::from(self.proto) << 16) | u32::from(self.vport)
    }

    /// The key of `word` and the addresses `cnet`, `vip`.
    fn with_word(cnet: A, vip: A, word: u32) -> TemplateKey<A> {
        TemplateKey {
            proto: (word >> 16) as u8,
            cnet,
            vip,
            vport: word as u16,
        }
    }
}

impl<A: Into<IpAddr>> TemplateKey<A> {
    fn widen(self) -> TemplateKey<IpAddr> {
        TemplateKey {
            proto: self.proto,
            cnet: self.cnet.into(),
            vip: self.vip.into(),
            vport: self.vport,
        }
    }
}

/// The template key of a new connection `flow` (protocol `proto`) to `svc`, a service of
/// family `A`.
fn key_of<A: TemplateAddr>(svc: &Service, proto: u8, flow: &Flow) -> TemplateKey<A> {
    let addr = |a: IpAddr| A::of(a).unwrap_or(A::ZERO);
    TemplateKey {
        proto,
        cnet: addr(flow.client).masked(&svc.spec.netmask),
        vip: addr(flow.vip),
        vport: if svc.spec.key.port == 0 {
            0
        } else {
            flow.vport
        },
    }
}

impl Key {
    /// The template key of a new connection `flow` (protocol `proto`) to the IPv4 service
    /// `svc` (an IPv6 flow's is [`Key6::of`]).
    pub fn of(svc: &Service, proto: u8, flow: &Flow) -> Key {
        key_of(svc, proto, flow)
    }
}

impl Key6 {
    /// The template key of a new IPv6 connection `flow` to `svc`.
    pub fn of(svc: &Service, proto: u8, flow: &Flow) -> Key6 {
        key_of(svc, proto, flow)
    }
}

/// The real server a template names: its slot, address and port (a slot is reused by other
/// servers later, so all three must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<A> {
    pub slot: u16,
    pub rip: A,
    pub rport: u16,
}

impl<A> Target<A> {
    /// The real server in slot `slot` at `rip`:`rport`; `None` for a slot past a template's
    /// room (16 bits).
    pub fn new(slot: u32, rip: A, rport: u16) -> Option<Target<A>> {
        Some(Target {
            slot: u16::try_from(slot).ok()?,
            rip,
            rport,
        })
    }

    /// slot << 16 | rport
    fn word(&self) -> u32 {
        (u32::from(self.slot) << 16) | u32::from(self.rport)
    }

    /// The target of `word` (slot << 16 | rport) at `rip`.
    fn with_word(word: u32, rip: A) -> Target<A> {
        Target {
            slot: (word >> 16) as u16,
            rip,
            rport: word as u16,
        }
    }
}

impl<A: Into<IpAddr>> Target<A> {
    fn widen(self) -> Target<IpAddr> {
        Target {
            slot: self.slot,
            rip: self.rip.into(),
            rport: self.rport,
        }
    }
}

impl<A: Copy + Into<IpAddr>> Target<A> {
    /// The index of this server in `dests`, if it is there and may keep its clients: any
    /// weight with [`Quiesced::Keep`], above 0 with [`Quiesced::Expire`].
    fn find(&self, dests: &Dests<'_>, quiesced: Quiesced) -> Option<usize> {
        let rip: IpAddr = self.rip.into();
        (0..dests.len()).find(|&i| {
            dests.get(i).is_some_and(|d| {
                d.slot == u32::from(self.slot)
                    && d.spec.addr == rip
                    && d.spec.port == self.rport
                    && (d.spec.weight > 0 || quiesced == Quiesced::Keep)
            })
        })
    }
}

/// An address family's templates: its addresses, how its key is masked and hashed, and the
/// number an entry keeps an address as (the entry's words are its [`Ways`]' [`Words`]).
pub(crate) trait TemplateAddr: Copy + Eq + Debug + Into<IpAddr> {
    /// The unspecified address (a flow of the other family's, which never happens).
    const ZERO: Self;
    /// The address as a number (an empty entry's is 0).
    type Raw: Copy + Eq + Debug + Default;
    fn raw(self) -> Self::Raw;
    fn from_raw(raw: Self::Raw) -> Self;
    /// `addr` if it is of this family.
    fn of(addr: IpAddr) -> Option<Self>;
    /// The address with the bits past `netmask` cleared (a netmask of the other family keeps
    /// it whole).
    fn masked(self, netmask: &Netmask) -> Self;
    /// The bucket hash of `key` under the table's secret `k` (so that clients cannot pick
    /// addresses that collide).
    fn hash(key: &TemplateKey<Self>, k: &HashKey) -> u64;
}

impl TemplateAddr for Ipv4Addr {
    const ZERO: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    type Raw = u32;
    fn raw(self) -> u32 {
        u32::from(self)
    }
    fn from_raw(raw: u32) -> Ipv4Addr {
        Ipv4Addr::from(raw)
    }
    fn of(addr: IpAddr) -> Option<Ipv4Addr> {
        match addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
    fn masked(self, netmask: &Netmask) -> Ipv4Addr {
        match netmask {
            Netmask::V4(m) => Ipv4Addr::from(u32::from(self) & u32::from(*m)),
            Netmask::V6(_) => self,
        }
    }
    fn hash(key: &Key, k: &HashKey) -> u64 {
        k.hash(
            addr_pair(key.cnet.raw(), key.vip.raw()),
            u64::from(key.word()),
        )
    }
}

impl TemplateAddr for Ipv6Addr {
    const ZERO: Ipv6Addr = Ipv6Addr::UNSPECIFIED;
    type Raw = u128;
    fn raw(self) -> u128 {
        u128::from(self)
    }
    fn from_raw(raw: u128) -> Ipv6Addr {
        Ipv6Addr::from(raw)
    }
    fn of(addr: IpAddr) -> Option<Ipv6Addr> {
        match addr {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
    fn masked(self, netmask: &Netmask) -> Ipv6Addr {
        match netmask {
            Netmask::V6(_) => Ipv6Addr::from(u128::from(self) & netmask.v6_mask()),
            Netmask::V4(_) => self,
        }
    }
    fn hash(key: &Key6, k: &HashKey) -> u64 {
        let c = u128::from(key.cnet);
        let v = u128::from(key.vip);
        let h = k.hash(c as u64, (c >> 64) as u64);
        let a = k.hash(
            h ^ v as u64,
            ((v >> 64) as u64).rotate_left(17) ^ h.rotate_left(29),
        );
        k.hash(a, u64::from(key.word()))
    }
}

/// Two IPv4 addresses in one word: `hi << 32 | lo`.
fn addr_pair(hi: u32, lo: u32) -> u64 {
    (u64::from(hi) << 32) | u64::from(lo)
}

/// One template, its addresses as numbers (`R`, a [`TemplateAddr::Raw`]); all zero when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry<R> {
    cnet: R,
    vip: R,
    /// USED | proto << 16 | vport; 0 when empty.
    key_b: u32,
    /// slot << 16 | rport
    target: u32,
    rip: R,
    /// Expiry in seconds of the workers' clock (rounded up).
    expires_s: u32,
}

/// A key as entries hold it: its addresses as numbers, and its word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored<R> {
    cnet: R,
    vip: R,
    word: u32,
}

impl<R: Copy + Eq> Entry<R> {
    fn is(&self, key: &Stored<R>) -> bool {
        self.key_b == key.word && self.cnet == key.cnet && self.vip == key.vip
    }

    fn found<A: TemplateAddr<Raw = R>>(&self) -> Found<A> {
        Found {
            target: Target::with_word(self.target, A::from_raw(self.rip)),
            expires_s: self.expires_s,
        }
    }
}

/// A bucket's entries, as its slot holds them (`W` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ways<R, const W: usize>([Entry<R>; W]);

/// An IPv4 entry in three words: cnet << 32 | vip, key_b << 32 | target, rip << 32 | expiry.
impl Words<WORDS> for Ways<u32, WAYS> {
    fn to_words(&self) -> [u64; WORDS] {
        let mut w = [0; WORDS];
        for (c, e) in w.chunks_exact_mut(3).zip(&self.0) {
            c.copy_from_slice(&[
                addr_pair(e.cnet, e.vip),
                (u64::from(e.key_b) << 32) | u64::from(e.target),
                (u64::from(e.rip) << 32) | u64::from(e.expires_s),
            ]);
        }
        w
    }
    fn from_words(w: [u64; WORDS]) -> Self {
        let mut chunks = w.chunks_exact(3);
        Ways(std::array::from_fn(|_| match chunks.next() {
            Some(&[a, b, c]) => Entry {
                cnet: (a >> 32) as u32,
                vip: a as u32,
                key_b: (b >> 32) as u32,
                target: b as u32,
                rip: (c >> 32) as u32,
                expires_s: c as u32,
            },
            _ => Entry::default(),
        }))
    }
}

/// An IPv6 entry in eight words: cnet (2), vip (2), key_b << 32 | target, rip (2), expiry.
impl Words<WORDS6> for Ways<u128, WAYS6> {
    fn to_words(&self) -> [u64; WORDS6] {
        let mut w = [0; WORDS6];
        let split = |x: u128| [(x >> 64) as u64, x as u64];
        for (c, e) in w.chunks_exact_mut(8).zip(&self.0) {
            let ([c0, c1], [v0, v1], [r0, r1]) = (split(e.cnet), split(e.vip), split(e.rip));
            c.copy_from_slice(&[
                c0,
                c1,
                v0,
                v1,
                (u64::from(e.key_b) << 32) | u64::from(e.target),
                r0,
                r1,
                u64::from(e.expires_s),
            ]);
        }
        w
    }
    fn from_words(w: [u64; WORDS6]) -> Self {
        let join = |hi: u64, lo: u64| (u128::from(hi) << 64) | u128::from(lo);
        let mut chunks = w.chunks_exact(8);
        Ways(std::array::from_fn(|_| match chunks.next() {
            Some(&[c0, c1, v0, v1, b, r0, r1, x]) => Entry {
                cnet: join(c0, c1),
                vip: join(v0, v1),
                key_b: (b >> 32) as u32,
                target: b as u32,
                rip: join(r0, r1),
                expires_s: x as u32,
            },
            _ => Entry::default(),
        }))
    }
}

/// A bucket: whole cache lines.
#[repr(align(64))]
struct Bucket<R, const W: usize, const N: usize>(SeqSlot<Ways<R, W>, N>)
where
    Ways<R, W>: Words<N>;

/// A template as read from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found<A> {
    target: Target<A>,
    expires_s: u32,
}

/// A live template, as [`Persist::for_each`] reports it (`rvsadm -L -c` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template<A> {
    pub key: TemplateKey<A>,
    pub target: Target<A>,
    /// Expiry on the workers' clock, in ms (a whole second).
    pub expires_ms: u64,
}

impl<A: Into<IpAddr>> Template<A> {
    /// The template with its addresses as `IpAddr`.
    pub fn widen(self) -> Template<IpAddr> {
        Template {
            key: self.key.widen(),
            target: self.target.widen(),
            expires_ms: self.expires_ms,
        }
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

/// The templates of one family: buckets of `W` entries held in `N` words.
struct Table<A: TemplateAddr, const W: usize, const N: usize>
where
    Ways<A::Raw, W>: Words<N>,
{
    buckets: Box<[Bucket<A::Raw, W, N>]>,
    key: HashKey,
}

/// The IPv4 templates.
type Table4 = Table<Ipv4Addr, WAYS, WORDS>;
/// The IPv6 templates.
type Table6 = Table<Ipv6Addr, WAYS6, WORDS6>;

impl<A: TemplateAddr, const W: usize, const N: usize> Table<A, W, N>
where
    Ways<A::Raw, W>: Words<N>,
{
    /// A table for at least `capacity` templates (rounded up to a power-of-two number of
    /// buckets; at least one bucket).
    fn new(capacity: usize) -> Self {
        let buckets = capacity.div_ceil(W).max(1).next_power_of_two();
        let [key] = HashKey::random();
        Table {
            buckets: (0..buckets).map(|_| Bucket(SeqSlot::default())).collect(),
            key,
        }
    }

    fn capacity(&self) -> usize {
        self.buckets.len() * W
    }

    fn bucket(&self, key: &TemplateKey<A>) -> Option<&SeqSlot<Ways<A::Raw, W>, N>> {
        let h = A::hash(key, &self.key);
        self.buckets.get(range(h, self.buckets.len())).map(|b| &b.0)
    }

    /// `key` as entries hold it.
    fn stored(key: &TemplateKey<A>) -> Stored<A::Raw> {
        Stored {
            cnet: key.cnet.raw(),
            vip: key.vip.raw(),
            word: key.word(),
        }
    }

    /// The live template of `key` at `now_ms`, without taking any lock.
    fn lookup(&self, key: &TemplateKey<A>, now_ms: u64) -> Option<Found<A>> {
        let ways = self.bucket(key)?.read(TRIES)?;
        let stored = Self::stored(key);
        ways.0
            .iter()
            .find(|e| e.is(&stored))
            .map(Entry::found)
            .filter(|f| live(f.expires_s, now_ms))
    }

    /// Writes `target` as the template of `key`, expiring at `expires_s`, unless the bucket
    /// already holds a live template of `key` that `keep` accepts: that one is refreshed
    /// and returned instead (another worker wrote it first). `None` when the bucket stayed
    /// busy (nothing written).
    fn claim(
        &self,
        key: &TemplateKey<A>,
        target: Target<A>,
        expires_s: u32,
        now_ms: u64,
        keep: impl Fn(&Target<A>) -> bool,
    ) -> Option<Target<A>> {
        let mut guard = self.bucket(key)?.lock(TRIES)?;
        let mut ways = guard.get();
        let written = Self::claim_in(&mut ways, key, target, expires_s, now_ms, keep);
        guard.set(ways);
        written
    }

    /// `claim` on the entries of a bucket taken for writing.
    fn claim_in(
        ways: &mut Ways<A::Raw, W>,
        key: &TemplateKey<A>,
        target: Target<A>,
        expires_s: u32,
        now_ms: u64,
        keep: impl Fn(&Target<A>) -> bool,
    ) -> Option<Target<A>> {
        let stored = Self::stored(key);
        let mut victim: Option<(&mut Entry<A::Raw>, u32)> = None;
        for e in ways.0.iter_mut() {
            if e.is(&stored) {
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
            cnet: stored.cnet,
            vip: stored.vip,
            key_b: stored.word,
            target: target.word(),
            rip: target.rip.raw(),
            expires_s,
        };
        Some(target)
    }

    /// [`Persist::pick`] for the template `key` of `flow`.
    #[allow(clippy::too_many_arguments)] // Persist::pick's, and the key
    fn pick(
        &self,
        key: &TemplateKey<A>,
        svc: &Service,
        dests: &Dests<'_>,
        flow: &Flow,
        timeout_s: u32,
        quiesced: Quiesced,
        now_ms: u64,
    ) -> Option<usize> {
        let expires_s = expiry(now_ms, timeout_s);
        let usable = |t: &Target<A>| t.find(dests, quiesced).is_some();
        if let Some(found) = self.lookup(key, now_ms) {
            if let Some(i) = found.target.find(dests, quiesced) {
                if found.expires_s < expires_s {
                    // Refresh; a busy bucket only delays the refresh to the next connection.
                    let _ = self.claim(key, found.target, expires_s, now_ms, usable);
                }
                return Some(i);
            }
        }
        let i = svc.scheduler.pick(dests, flow)?;
        // None: its slot does not fit a template, or it is not of the family.
        let target = dests
            .get(i)
            .and_then(|d| Target::new(d.slot, A::of(d.spec.addr)?, d.spec.port));
        let Some(target) = target else {
            return Some(i);
        };
        match self.claim(key, target, expires_s, now_ms, usable) {
            // Another worker made the template first: follow it.
            Some(t) if t != target => Some(t.find(dests, quiesced).unwrap_or(i)),
            _ => Some(i),
        }
    }

    /// [`Persist::install`] in this table.
    fn install(
        &self,
        key: &TemplateKey<A>,
        target: Target<A>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<Installed> {
        let existed = self.lookup(key, now_ms).is_some_and(|f| f.target == target);
        self.claim(key, target, expiry(now_ms, timeout_s), now_ms, |t| {
            *t == target
        })?;
        Some(if existed {
            Installed::Updated
        } else {
            Installed::New
        })
    }

    /// Calls `f` with every template live at `now_ms`, each read consistently (walks the whole
    /// table). A bucket that writers keep busy is skipped.
    fn for_each(&self, now_ms: u64, mut f: impl FnMut(Template<A>)) {
        for bucket in self.buckets.iter() {
            let Some(ways) = bucket.0.read(TRIES) else {
                continue;
            };
            for e in ways.0.iter().filter(|e| e.key_b != 0) {
                if live(e.expires_s, now_ms) {
                    f(Template {
                        key: TemplateKey::with_word(
                            A::from_raw(e.cnet),
                            A::from_raw(e.vip),
                            e.key_b,
                        ),
                        target: e.found().target,
                        expires_ms: u64::from(e.expires_s) * 1000,
                    });
                }
            }
        }
    }

    /// Takes bucket `i` for writing, as a writer would (tests).
    #[cfg(test)]
    fn lock_bucket(&self, i: usize) -> Option<crate::seqlock::SeqGuard<'_, Ways<A::Raw, W>, N>> {
        self.buckets.get(i)?.0.lock(TRIES)
    }
}

/// The template tables, shared by all workers: one per address family.
pub struct Persist {
    v4: Table4,
    v6: Table6,
}

impl std::fmt::Debug for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persist")
            .field("capacity", &self.capacity())
            .field("capacity6", &self.capacity6())
            .finish()
    }
}

impl Persist {
    /// Tables for at least `capacity` IPv4 and `capacity6` IPv6 templates (each rounded up
    /// to a power-of-two number of buckets; at least one bucket).
    pub fn new(capacity: usize, capacity6: usize) -> Persist {
        Persist {
            v4: Table::new(capacity),
            v6: Table::new(capacity6),
        }
    }

    /// IPv4 templates the table can hold.
    pub fn capacity(&self) -> usize {
        self.v4.capacity()
    }

    /// IPv6 templates the table can hold.
    pub fn capacity6(&self) -> usize {
        self.v6.capacity()
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
        match flow.client {
            IpAddr::V4(_) => self.v4.pick(
                &Key::of(svc, proto, flow),
                svc,
                dests,
                flow,
                timeout_s,
                quiesced,
                now_ms,
            ),
            IpAddr::V6(_) => self.v6.pick(
                &Key6::of(svc, proto, flow),
                svc,
                dests,
                flow,
                timeout_s,
                quiesced,
                now_ms,
            ),
        }
    }

    /// Installs a template synced from another director: `key` pins `target` for `timeout_s`
    /// from `now_ms` (a live template of `key` for another server is replaced). `None` when
    /// the bucket stayed busy.
    pub fn install(
        &self,
        key: &Key,
        target: Target<Ipv4Addr>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<Installed> {
        self.v4.install(key, target, timeout_s, now_ms)
    }

    /// [`Persist::install`] of an IPv6 template.
    pub fn install6(
        &self,
        key: &Key6,
        target: Target<Ipv6Addr>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<Installed> {
        self.v6.install(key, target, timeout_s, now_ms)
    }

    /// The real server the live IPv6 template of `key` pins at `now_ms` (tests and reports).
    pub fn target6(&self, key: &Key6, now_ms: u64) -> Option<Target<Ipv6Addr>> {
        self.v6.lookup(key, now_ms).map(|f| f.target)
    }

    /// Calls `f` with every template live at `now_ms`, the IPv4 ones first, each read
    /// consistently (walks both tables: for reports). A bucket that writers keep busy is
    /// skipped.
    pub fn for_each(&self, now_ms: u64, mut f: impl FnMut(Template<IpAddr>)) {
        self.v4.for_each(now_ms, |t| f(t.widen()));
        self.v6.for_each(now_ms, |t| f(t.widen()));
    }

    /// Templates of both families live at `now_ms` (for tests and reports; walks both
    /// tables; a bucket that writers keep busy is skipped).
    pub fn live_count(&self, now_ms: u64) -> usize {
        let mut n = 0;
        self.for_each(now_ms, |_| n += 1);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::ConnTable;
    use crate::service::Dest;
    use control::model::{
        DestSpec, Forward, Protocol, SchedulerKind, ServiceKey, ServiceSpec, Timeouts,
    };

    fn key(last: u8, vport: u16) -> Key {
        Key {
            proto: 6,
            cnet: Ipv4Addr::new(198, 51, 100, last),
            vip: Ipv4Addr::new(198, 51, 100, 1),
            vport,
        }
    }

    fn target(slot: u16) -> Target<Ipv4Addr> {
        Target {
            slot,
            rip: Ipv4Addr::new(192, 0, 2, 2 + slot as u8),
            rport: 80,
        }
    }

    fn v6(a: &str) -> Ipv6Addr {
        a.parse().unwrap()
    }

    fn key6(cnet: &str, vport: u16) -> Key6 {
        Key6 {
            proto: 6,
            cnet: v6(cnet),
            vip: v6("2001:db8:100::1"),
            vport,
        }
    }

    fn target6(slot: u16) -> Target<Ipv6Addr> {
        Target {
            slot,
            rip: Ipv6Addr::from(u128::from(v6("2001:db8:2::2")) + u128::from(slot)),
            rport: 443,
        }
    }

    /// Templates of `t` live at `now_ms`.
    fn live_in<A: TemplateAddr, const W: usize, const N: usize>(
        t: &Table<A, W, N>,
        now_ms: u64,
    ) -> usize
    where
        Ways<A::Raw, W>: Words<N>,
    {
        let mut n = 0;
        t.for_each(now_ms, |_| n += 1);
        n
    }

    /// An rr service on `vip`:`port`, persistent with `netmask`, and its real servers.
    fn service(vip: &str, port: u16, netmask: Netmask, rips: &[&str]) -> (Service, Vec<Dest>) {
        let spec = ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                addr: vip.parse().unwrap(),
                port,
            },
            scheduler: SchedulerKind::Rr,
            persistence: Some(60),
            netmask,
            sched_flags: Default::default(),
            ops: false,
        };
        let dests: Vec<Dest> = rips
            .iter()
            .zip(1..)
            .map(|(rip, slot)| {
                let spec = DestSpec {
                    addr: rip.parse().unwrap(),
                    port: 0,
                    weight: 1,
                    forward: Forward::Masq,
                    upper_threshold: 0,
                    lower_threshold: 0,
                };
                Dest::new(spec, slot)
            })
            .collect();
        let svc = Service {
            scheduler: crate::sched::build(&spec, &dests, &Default::default()).unwrap(),
            spec,
            dests: Vec::new(),
        };
        (svc, dests)
    }

    fn flow(client: &str, vip: &str, vport: u16) -> Flow {
        Flow {
            client: client.parse().unwrap(),
            cport: 1000,
            vip: vip.parse().unwrap(),
            vport,
        }
    }

    #[test]
    fn ipv6_templates_are_keyed_by_client_prefix_vip_proto_and_port() {
        let t = Table6::new(64);
        let a = key6("2001:db8:100:1::", 80);
        assert_eq!(t.claim(&a, target6(1), 100, 0, |_| true), Some(target6(1)));
        assert_eq!(t.lookup(&a, 0).unwrap().target, target6(1));
        for other in [
            key6("2001:db8:100:2::", 80),
            key6("2001:db8:100:1::", 81),
            Key6 {
                proto: 17,
                ..key6("2001:db8:100:1::", 80)
            },
            Key6 {
                vip: v6("2001:db8:100::2"),
                ..key6("2001:db8:100:1::", 80)
            },
        ] {
            assert_eq!(t.lookup(&other, 0), None, "{other:?}");
        }
        assert_eq!(live_in(&t, 0), 1);
    }

    #[test]
    fn ipv6_key_masks_the_client_with_the_prefix_length() {
        let (svc, _) = service("2001:db8:100::1", 80, Netmask::V6(48), &[]);
        let flow = |c: &str| flow(c, "2001:db8:100::1", 80);
        let a = Key6::of(&svc, 6, &flow("2001:db8:100:ffff::7"));
        assert_eq!(a.cnet, v6("2001:db8:100::"));
        assert_eq!(a, Key6::of(&svc, 6, &flow("2001:db8:100:1:2:3:4:5")));
        assert_ne!(a, Key6::of(&svc, 6, &flow("2001:db8:101::7")));
    }

    /// `-M 64` on a port-0 service: the clients of one /64 share a template, on every port,
    /// listed with their prefix, the VIP with port 0 and the real server's whole address.
    #[test]
    fn an_ipv6_prefix_shares_one_template_listed_with_its_full_addresses() {
        let vip = "2001:db8:100::1";
        let rips = ["2001:db8:2::2", "2001:db8:2::3"];
        let (svc, list) = service(vip, 0, Netmask::V6(64), &rips);
        let conns = ConnTable::new(8, 8, &Timeouts::default());
        let dests = Dests::new(&list, &conns);
        let p = Persist::new(64, 64);
        let pick = |client: &str, vport: u16| {
            let i = p.pick(
                &svc,
                &dests,
                6,
                &flow(client, vip, vport),
                60,
                Quiesced::Keep,
                1_000,
            );
            list[i.unwrap()].spec.addr
        };
        let first = pick("2001:db8:100:7::10", 443);
        assert_eq!(first, rips[0].parse::<IpAddr>().unwrap(), "rr's first pick");
        // The same /64, another port: the same server, the same template.
        assert_eq!(pick("2001:db8:100:7:ffff::11", 80), first);
        assert_eq!(pick("2001:db8:100:7::12", 22), first);
        // Another /64: scheduled, its own template (rr moved on once).
        let other = pick("2001:db8:100:8::10", 443);
        assert_eq!(other, rips[1].parse::<IpAddr>().unwrap());
        assert_eq!((p.capacity(), p.capacity6()), (80, 64));
        let mut listed = Vec::new();
        p.for_each(1_000, |t| listed.push(t));
        listed.sort_by_key(|t| t.key.cnet);
        let tpl = |cnet: &str, rip: &str, slot| Template {
            key: TemplateKey {
                proto: 6,
                cnet: cnet.parse().unwrap(),
                vip: vip.parse().unwrap(),
                vport: 0,
            },
            target: Target {
                slot,
                rip: rip.parse().unwrap(),
                rport: 0,
            },
            expires_ms: 61_000,
        };
        assert_eq!(
            listed,
            vec![
                tpl("2001:db8:100:7::", rips[0], 1),
                tpl("2001:db8:100:8::", rips[1], 2),
            ]
        );
        assert_eq!(p.live_count(61_000), 0, "expired");
    }

    #[test]
    fn both_families_are_listed_ipv4_first() {
        let p = Persist::new(64, 64);
        p.v6.claim(&key6("2001:db8:100::", 443), target6(3), 10, 0, |_| true);
        p.v4.claim(&key(10, 80), target(1), 10, 0, |_| true);
        let mut listed = Vec::new();
        p.for_each(0, |t| listed.push(t));
        assert_eq!(
            listed,
            vec![
                Template {
                    key: key(10, 80).widen(),
                    target: target(1).widen(),
                    expires_ms: 10_000,
                },
                Template {
                    key: key6("2001:db8:100::", 443).widen(),
                    target: target6(3).widen(),
                    expires_ms: 10_000,
                },
            ]
        );
        assert_eq!(p.live_count(0), 2);
        assert_eq!(p.target6(&key6("2001:db8:100::", 443), 0), Some(target6(3)));
        assert_eq!(p.target6(&key6("2001:db8:100::", 443), 10_000), None);
    }

    #[test]
    fn a_template_names_its_server_by_slot_address_and_port() {
        let (_, list) = service("2001:db8:100::1", 443, Netmask::V6(128), &["2001:db8:2::2"]);
        let conns = ConnTable::new(8, 8, &Timeouts::default());
        let dests = Dests::new(&list, &conns);
        let rip = v6("2001:db8:2::2");
        let at = |slot, rip, rport| Target { slot, rip, rport };
        assert_eq!(at(1, rip, 0).find(&dests, Quiesced::Keep), Some(0));
        // Another address of the same 32-bit fold, another slot, another port: not this one.
        let same_fold = Ipv6Addr::from(u128::from(rip) ^ (1 << 64) ^ 1);
        assert_eq!(
            crate::sched::fold(same_fold.into()),
            crate::sched::fold(rip.into())
        );
        assert_eq!(at(1, same_fold, 0).find(&dests, Quiesced::Keep), None);
        assert_eq!(at(2, rip, 0).find(&dests, Quiesced::Keep), None);
        assert_eq!(at(1, rip, 443).find(&dests, Quiesced::Keep), None);
    }

    #[test]
    fn buckets_are_whole_cache_lines() {
        assert_eq!(std::mem::size_of::<Bucket<u32, WAYS, WORDS>>(), 128);
        assert_eq!(std::mem::align_of::<Bucket<u32, WAYS, WORDS>>(), 64);
        assert_eq!(std::mem::size_of::<Bucket<u128, WAYS6, WORDS6>>(), 320);
        assert_eq!(std::mem::align_of::<Bucket<u128, WAYS6, WORDS6>>(), 64);
    }

    #[test]
    fn entries_round_trip_through_their_words() {
        let mut w4 = Ways([Entry::default(); WAYS]);
        let mut w6 = Ways([Entry::default(); WAYS6]);
        Table4::claim_in(&mut w4, &key(10, 80), target(7), 99, 0, |_| true);
        Table6::claim_in(&mut w6, &key6("2001:db8::", 0), target6(9), 99, 0, |_| true);
        assert_eq!(Ways::from_words(w4.to_words()), w4);
        assert_eq!(Ways::from_words(w6.to_words()), w6);
        assert_eq!(
            Ways::<u32, WAYS>::from_words([0; WORDS]).0,
            [Entry::default(); WAYS]
        );
        assert_eq!(
            Ways::<u128, WAYS6>::from_words([0; WORDS6]).0,
            [Entry::default(); WAYS6]
        );
    }

    #[test]
    fn claim_then_lookup_until_expiry() {
        let p = Table4::new(64);
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
        assert_eq!(live_in(&p, 0), 1);
        assert_eq!(live_in(&p, 4_000), 0);
    }

    #[test]
    fn an_ipv6_template_expires_and_is_not_listed_after() {
        let p = Persist::new(64, 64);
        let k = key6("2001:db8:100::", 443);
        let exp = expiry(1_500, 2);
        assert_eq!(p.install6(&k, target6(1), 2, 1_500), Some(Installed::New));
        assert_eq!(p.target6(&k, 3_999), Some(target6(1)));
        assert_eq!(p.live_count(3_999), 1);
        assert_eq!(p.target6(&k, exp as u64 * 1000), None, "expired");
        assert_eq!(p.live_count(4_000), 0);
        // Installed again for the same server: updated, with the new expiry.
        assert_eq!(
            p.install6(&k, target6(1), 60, 2_000),
            Some(Installed::Updated)
        );
        assert_eq!(p.target6(&k, 61_999), Some(target6(1)));
        // For another server: that one now.
        assert_eq!(p.install6(&k, target6(2), 60, 2_000), Some(Installed::New));
        assert_eq!(p.target6(&k, 2_000), Some(target6(2)));
        assert_eq!(p.live_count(2_000), 1);
    }

    #[test]
    fn an_existing_live_template_wins_unless_rejected() {
        let p = Table4::new(64);
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
        let p = Table4::new(1);
        assert_eq!(p.capacity(), WAYS);
        for i in 0..WAYS as u8 {
            p.claim(&key(i, 80), target(1), 100 + u32::from(i), 0, |_| true);
        }
        assert_eq!(live_in(&p, 0), WAYS);
        p.claim(&key(200, 80), target(1), 500, 0, |_| true);
        assert_eq!(live_in(&p, 0), WAYS);
        assert_eq!(p.lookup(&key(0, 80), 0), None, "the earliest went");
        assert!(p.lookup(&key(1, 80), 0).is_some());
        assert!(p.lookup(&key(200, 80), 0).is_some());
        // Expired entries are reused first.
        p.claim(&key(201, 80), target(1), 900, 101_000, |_| true);
        assert!(p.lookup(&key(2, 80), 0).is_some(), "live at 0 and kept");
        assert_eq!(p.lookup(&key(1, 80), 0), None, "expired at 101 s, reused");
    }

    #[test]
    fn a_full_ipv6_bucket_replaces_what_expires_first() {
        let p = Table6::new(1);
        assert_eq!(p.capacity(), WAYS6);
        let k = |i: u16| key6(&format!("2001:db8:100:{i:x}::"), 443);
        for i in 0..WAYS6 as u16 {
            p.claim(&k(i), target6(i), 100 + u32::from(i), 0, |_| true);
        }
        assert_eq!(live_in(&p, 0), WAYS6);
        p.claim(&k(200), target6(9), 500, 0, |_| true);
        assert_eq!(live_in(&p, 0), WAYS6);
        assert_eq!(p.lookup(&k(0), 0), None, "the earliest went");
        assert_eq!(p.lookup(&k(1), 0).unwrap().target, target6(1));
        assert_eq!(p.lookup(&k(200), 0).unwrap().target, target6(9));
        // Expired entries are reused first.
        p.claim(&k(201), target6(1), 900, 101_000, |_| true);
        assert!(p.lookup(&k(2), 0).is_some(), "live at 0 and kept");
        assert_eq!(p.lookup(&k(1), 0), None, "expired at 101 s, reused");
        // A rejected template (its server gone) is overwritten in place.
        assert_eq!(
            p.claim(&k(2), target6(5), 300, 0, |t| t.slot != 2),
            Some(target6(5))
        );
        assert_eq!(p.lookup(&k(2), 0).unwrap().target, target6(5));
    }

    #[test]
    fn a_busy_bucket_is_a_miss_not_a_wait() {
        let p = Table4::new(1);
        p.claim(&key(10, 80), target(1), 100, 0, |_| true);
        let guard = p.lock_bucket(0).unwrap();
        assert_eq!(p.lookup(&key(10, 80), 0), None);
        assert_eq!(p.claim(&key(11, 80), target(1), 100, 0, |_| true), None);
        drop(guard);
        assert!(p.lookup(&key(10, 80), 0).is_some());
        let p = Table6::new(1);
        p.claim(&key6("2001:db8::", 80), target6(1), 100, 0, |_| true);
        let guard = p.lock_bucket(0).unwrap();
        assert_eq!(p.lookup(&key6("2001:db8::", 80), 0), None);
        drop(guard);
        assert!(p.lookup(&key6("2001:db8::", 80), 0).is_some());
    }

    #[test]
    fn concurrent_readers_never_see_a_torn_template() {
        let p = Table4::new(1);
        let p6 = Table6::new(1);
        let k6 = key6("2001:db8::", 80);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for n in 0..20_000u32 {
                    let slot = (n % 7) as u16 + 1;
                    p.claim(&key(10, 80), target(slot), 1_000, 0, |_| false);
                    p6.claim(&k6, target6(slot), 1_000, 0, |_| false);
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // rip and slot were written together: they always agree.
                    if let Some(f) = p.lookup(&key(10, 80), 0) {
                        assert_eq!(f.target, target(f.target.slot));
                    }
                    if let Some(f) = p6.lookup(&k6, 0) {
                        assert_eq!(f.target, target6(f.target.slot));
                    }
                }
            });
        });
    }
}
