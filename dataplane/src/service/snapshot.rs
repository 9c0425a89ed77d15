//! What workers read: an immutable view of all services, published by the
//! [`ServiceManager`](super::ServiceManager) and loaded once per burst.
//!
//! Lookups are searches of sorted vectors ([`find_sorted`]): no hashing and no allocation on
//! a worker.

use super::dest::Dest;
use crate::addr_set::{AddrFilter6, AddrSet, VIP};
use crate::sched::Scheduler;
use control::model::ServiceSpec;
use control::sysctl::IpvsSysctls;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A virtual service as workers see it.
#[derive(Debug)]
pub struct Service {
    pub spec: ServiceSpec,
    pub dests: Vec<Dest>,
    pub scheduler: Box<dyn Scheduler>,
}

/// Where a real server's datagrams to clients come from, as clients must see them: the
/// one-packet scheduling (`-o`) service the real server backs. OPS keeps no connection, so
/// its replies are SNATed by this map alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpsReply<A = Ipv4Addr> {
    pub vip: A,
    pub vport: u16,
    /// The real server's stats slot.
    pub slot: u32,
}

/// An immutable view of all services, replaced as a whole on every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The IPv4 services sorted by `svc_key`, then the IPv6 ones under `u64::MAX` (indexed
    /// by `v6.services`, only iterated here).
    services: Vec<(u64, Service)>,
    /// How many of `services` are IPv4's: the part `Snapshot::service` searches.
    v4_services: usize,
    /// The real servers of one-packet scheduling services by (protocol, RIP, rport), sorted
    /// by that key (`svc_key` of the real server's end). The service manager lets a real
    /// server of such a service back no other service, so each key has one answer.
    ops_replies: Vec<(u64, OpsReply)>,
    /// Sorted, deduplicated VIPs.
    vips: Vec<Ipv4Addr>,
    /// `vips` as a set for the packet path.
    vip_set: AddrSet,
    /// Sorted, deduplicated real services (`svc_key` of protocol, RIP and rport) of the real
    /// servers configured and of those removed whose connections are still draining.
    real_services: Vec<u64>,
    /// The IPv6 twins of the above (kept apart so that the IPv4 lookups stay on 64-bit keys).
    v6: V6Index,
    /// Increases with every published snapshot.
    pub generation: u64,
    /// The IPVS sysctls in force (`[ipvs]`, `rvsctl sysctl -w`).
    pub sysctls: IpvsSysctls,
}

/// The IPv6 services' indexes: as the IPv4 ones, keyed by [`Key6`]. Index into `Snapshot::services`.
#[derive(Debug, Default)]
struct V6Index {
    /// Sorted by key; the index of the service in `Snapshot::services`.
    services: Vec<(Key6, usize)>,
    ops_replies: Vec<(Key6, OpsReply<Ipv6Addr>)>,
    /// Sorted, as integers: a comparison is two words, not sixteen bytes.
    vips: Vec<u128>,
    /// `vips` as a filter, asked first.
    vip_filter: AddrFilter6,
    real_services: Vec<Key6>,
}

/// An IPv6 service address as a sortable key: the address, then protocol and port.
type Key6 = (u128, u32);

fn key6(proto: u8, addr: Ipv6Addr, port: u16) -> Key6 {
    (u128::from(addr), (u32::from(proto) << 16) | u32::from(port))
}

/// A real server's service address: protocol, RIP and rport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealService {
    pub proto: u8,
    pub addr: IpAddr,
    pub port: u16,
}

/// Sorted lists up to this long are searched front to back ([`find_sorted`]).
const SCAN_MAX: usize = 8;

/// The index of `k` in `items`, sorted by `key`: a scan for a short list, else a binary
/// search. A new connection looks its service up twice (its reply's prefetch, then its
/// stage), and over a few services an equality test an item costs less than a binary
/// search's ordered comparisons (an IPv6 service key is 20 bytes). The VIP lists keep their
/// binary search: a filter word answers most questions first, and the larger inlined scan
/// keeps LLVM from inlining the IPv6 fast path's martian check.
#[inline]
fn find_sorted<T, K: Ord>(items: &[T], k: &K, key: impl Fn(&T) -> &K) -> Option<usize> {
    if items.len() <= SCAN_MAX {
        items.iter().position(|item| key(item) == k)
    } else {
        items.binary_search_by(|item| key(item).cmp(k)).ok()
    }
}

fn svc_key(proto: u8, addr: Ipv4Addr, port: u16) -> u64 {
    (u64::from(proto) << 48) | (u64::from(u32::from(addr)) << 16) | u64::from(port)
}

/// Which family's index a service address goes to.
enum AnyKey {
    V4(u64),
    V6(Key6),
}

fn any_key(proto: u8, addr: IpAddr, port: u16) -> AnyKey {
    match addr {
        IpAddr::V4(a) => AnyKey::V4(svc_key(proto, a, port)),
        IpAddr::V6(a) => AnyKey::V6(key6(proto, a, port)),
    }
}

impl Snapshot {
    /// Indexes `services` (one per key) by protocol, VIP and port, and their real servers' and
    /// the `removed` real servers' (protocol, RIP, rport); built on the control thread.
    pub(super) fn new(
        services: Vec<Service>,
        removed: &[RealService],
        generation: u64,
        sysctls: IpvsSysctls,
    ) -> Snapshot {
        // IPv4 services first, by their 64-bit key; then the IPv6 ones, indexed apart.
        let mut all: Vec<(AnyKey, Service)> = services
            .into_iter()
            .map(|s| {
                let key = &s.spec.key;
                (any_key(key.protocol.ip_proto(), key.addr, key.port), s)
            })
            .collect();
        all.sort_by(|(a, _), (b, _)| match (a, b) {
            (AnyKey::V4(a), AnyKey::V4(b)) => a.cmp(b),
            (AnyKey::V6(a), AnyKey::V6(b)) => a.cmp(b),
            (AnyKey::V4(_), AnyKey::V6(_)) => std::cmp::Ordering::Less,
            (AnyKey::V6(_), AnyKey::V4(_)) => std::cmp::Ordering::Greater,
        });
        let mut services: Vec<(u64, Service)> = Vec::with_capacity(all.len());
        let mut v6 = V6Index::default();
        for (key, s) in all {
            match key {
                // The IPv6 ones come last: their keys here are never searched (the IPv4
                // lookups stop before them, see `service`), only iterated.
                AnyKey::V4(k) => services.push((k, s)),
                AnyKey::V6(k) => {
                    v6.services.push((k, services.len()));
                    services.push((u64::MAX, s));
                }
            }
        }
        let v4_services = services.len() - v6.services.len();
        let (v4s, v6s) = services.split_at(v4_services);
        let mut vips: Vec<Ipv4Addr> = v4s.iter().map(|(_, s)| vip4(s)).collect();
        vips.sort();
        vips.dedup();
        v6.vips = v6s.iter().map(|(_, s)| u128::from(vip6(s))).collect();
        v6.vips.sort();
        v6.vips.dedup();
        v6.vip_filter = AddrFilter6::new(v6.vips.iter().copied());
        let mut ops_replies: Vec<(u64, OpsReply)> = v4s
            .iter()
            .filter(|(_, s)| s.spec.ops)
            .flat_map(|(_, s)| {
                let key = &s.spec.key;
                let vip = vip4(s);
                s.dests.iter().map(move |d| {
                    (
                        svc_key(key.protocol.ip_proto(), d.addr4(), d.spec.port),
                        OpsReply {
                            vip,
                            vport: key.port,
                            slot: d.slot,
                        },
                    )
                })
            })
            .collect();
        // Stable: of two services claiming one real server (the manager refuses that), the
        // first in key order answers.
        ops_replies.sort_by_key(|(k, _)| *k);
        ops_replies.dedup_by_key(|(k, _)| *k);
        v6.ops_replies = v6s
            .iter()
            .filter(|(_, s)| s.spec.ops)
            .flat_map(|(_, s)| {
                let key = &s.spec.key;
                let vip = vip6(s);
                s.dests.iter().map(move |d| {
                    (
                        key6(key.protocol.ip_proto(), d.addr6(), d.spec.port),
                        OpsReply {
                            vip,
                            vport: key.port,
                            slot: d.slot,
                        },
                    )
                })
            })
            .collect();
        v6.ops_replies.sort_by_key(|(k, _)| *k);
        v6.ops_replies.dedup_by_key(|(k, _)| *k);
        let reals = services
            .iter()
            .flat_map(|(_, s)| {
                let proto = s.spec.key.protocol.ip_proto();
                s.dests.iter().map(move |d| RealService {
                    proto,
                    addr: d.spec.addr,
                    port: d.spec.port,
                })
            })
            .chain(removed.iter().copied())
            // A real server without a port (port-0 service) answers on the client's port:
            // there is no one service port to recognise it by.
            .filter(|r| r.port != 0);
        let mut real_services: Vec<u64> = Vec::new();
        for r in reals {
            match any_key(r.proto, r.addr, r.port) {
                AnyKey::V4(k) => real_services.push(k),
                AnyKey::V6(k) => v6.real_services.push(k),
            }
        }
        real_services.sort_unstable();
        real_services.dedup();
        v6.real_services.sort_unstable();
        v6.real_services.dedup();
        Snapshot {
            services,
            v4_services,
            ops_replies,
            vip_set: AddrSet::new(vips.iter().map(|&v| (v, VIP))),
            vips,
            real_services,
            v6,
            generation,
            sysctls,
        }
    }

    /// The service for `proto` (IP protocol number), VIP and virtual port.
    pub fn service(&self, proto: u8, vip: Ipv4Addr, port: u16) -> Option<&Service> {
        let v4 = self.services.get(..self.v4_services)?;
        let i = find_sorted(v4, &svc_key(proto, vip, port), |(k, _)| k)?;
        v4.get(i).map(|(_, s)| s)
    }

    /// The IPv6 service for `proto`, VIP and virtual port.
    pub fn service6(&self, proto: u8, vip: Ipv6Addr, port: u16) -> Option<&Service> {
        let k = key6(proto, vip, port);
        let i = find_sorted(&self.v6.services, &k, |(k, _)| k)?;
        let (_, at) = self.v6.services.get(i)?;
        self.services.get(*at).map(|(_, s)| s)
    }

    /// [`Snapshot::ops_reply`] for an IPv6 real server.
    pub fn ops_reply6(&self, proto: u8, rip: Ipv6Addr, rport: u16) -> Option<OpsReply<Ipv6Addr>> {
        if self.v6.ops_replies.is_empty() {
            return None;
        }
        let k = key6(proto, rip, rport);
        let i = find_sorted(&self.v6.ops_replies, &k, |(k, _)| k)?;
        self.v6.ops_replies.get(i).map(|(_, r)| *r)
    }

    /// True if some IPv6 service uses `ip` as its VIP.
    #[inline]
    pub fn is_vip6(&self, ip: Ipv6Addr) -> bool {
        let a = u128::from(ip);
        self.v6.vip_filter.may_hold(a) && self.v6.vips.binary_search(&a).is_ok()
    }

    /// Every IPv6 service's virtual address, sorted, once each.
    pub fn vips6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.v6.vips.iter().map(|&v| Ipv6Addr::from(v))
    }

    /// [`Snapshot::is_real_service`] for IPv6.
    pub fn is_real_service6(&self, proto: u8, addr: Ipv6Addr, port: u16) -> bool {
        !self.v6.real_services.is_empty()
            && find_sorted(&self.v6.real_services, &key6(proto, addr, port), |k| k).is_some()
    }

    /// The one-packet scheduling service whose real server `rip:rport` is, for a datagram
    /// from there that matches no connection.
    pub fn ops_reply(&self, proto: u8, rip: Ipv4Addr, rport: u16) -> Option<&OpsReply> {
        if self.ops_replies.is_empty() {
            return None;
        }
        let k = svc_key(proto, rip, rport);
        let i = find_sorted(&self.ops_replies, &k, |(k, _)| k)?;
        self.ops_replies.get(i).map(|(_, r)| r)
    }

    /// Every IPv4 service's virtual address, sorted, once each.
    #[cfg(test)]
    pub(crate) fn vips(&self) -> &[Ipv4Addr] {
        &self.vips
    }

    /// [`crate::addr_set::VIP`] if `ip` is a service's virtual address, else 0: a filter word,
    /// then at most one probe.
    /// Never another class: the fast path's martian check leaves this probe out for the
    /// destination (`Pipeline::martian_packet`).
    #[inline]
    pub fn vip_class(&self, ip: Ipv4Addr) -> u8 {
        self.vip_set.of(ip) & VIP
    }

    /// True if some IPv4 service uses `ip` as its VIP.
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.binary_search(&ip).is_ok()
    }

    /// True if `addr:port` (`proto`) is the service address of a real server, configured or
    /// removed with connections left: a packet from there is a reply or nothing.
    pub fn is_real_service(&self, proto: u8, addr: Ipv4Addr, port: u16) -> bool {
        find_sorted(&self.real_services, &svc_key(proto, addr, port), |k| k).is_some()
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().map(|(_, s)| s)
    }
}

/// An IPv4 service's VIP (families are checked by the manager; 0.0.0.0 never matches a packet).
fn vip4(s: &Service) -> Ipv4Addr {
    match s.spec.key.addr {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

fn vip6(s: &Service) -> Ipv6Addr {
    match s.spec.key.addr {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `find_sorted` finds what a binary search finds, on both sides of `SCAN_MAX`, for
        /// present and absent keys alike.
        #[test]
        fn find_sorted_agrees_with_a_binary_search(
            mut keys in proptest::collection::vec(0u16..64, 0..2 * SCAN_MAX),
            probe in 0u16..64,
        ) {
            keys.sort_unstable();
            keys.dedup();
            let items: Vec<(u16, usize)> = keys.iter().enumerate().map(|(i, &k)| (k, i)).collect();
            let want = keys.binary_search(&probe).ok();
            prop_assert_eq!(find_sorted(&items, &probe, |(k, _)| k), want);
            prop_assert_eq!(find_sorted(&keys, &probe, |k| k), want);
        }
    }
}
