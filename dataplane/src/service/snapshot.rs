//! What workers read: an immutable view of all services, published by the
//! [`ServiceManager`](super::ServiceManager) and loaded once per burst.
//!
//! Lookups are binary searches over sorted vectors: no hashing and no allocation on a worker.

use super::dest::Dest;
use crate::addr_set::{AddrSet, VIP};
use crate::sched::Scheduler;
use control::model::ServiceSpec;
use control::sysctl::IpvsSysctls;
use std::net::Ipv4Addr;

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
pub struct OpsReply {
    pub vip: Ipv4Addr,
    pub vport: u16,
    /// The real server's stats slot.
    pub slot: u32,
}

/// An immutable view of all services, replaced as a whole on every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Sorted by `svc_key`, for binary search without hashing.
    services: Vec<(u64, Service)>,
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
    /// Increases with every published snapshot.
    pub generation: u64,
    /// The IPVS sysctls in force (`[ipvs]`, `rvsctl sysctl -w`).
    pub sysctls: IpvsSysctls,
}

/// A real server's service address: protocol, RIP and rport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealService {
    pub proto: u8,
    pub addr: Ipv4Addr,
    pub port: u16,
}

fn svc_key(proto: u8, addr: Ipv4Addr, port: u16) -> u64 {
    (u64::from(proto) << 48) | (u64::from(u32::from(addr)) << 16) | u64::from(port)
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
        let mut services: Vec<(u64, Service)> = services
            .into_iter()
            .map(|s| {
                let key = &s.spec.key;
                (svc_key(key.protocol.ip_proto(), key.addr, key.port), s)
            })
            .collect();
        services.sort_by_key(|(k, _)| *k);
        let mut vips: Vec<Ipv4Addr> = services.iter().map(|(_, s)| s.spec.key.addr).collect();
        vips.sort();
        vips.dedup();
        let mut ops_replies: Vec<(u64, OpsReply)> = services
            .iter()
            .filter(|(_, s)| s.spec.ops)
            .flat_map(|(_, s)| {
                let key = &s.spec.key;
                s.dests.iter().map(move |d| {
                    (
                        svc_key(key.protocol.ip_proto(), d.spec.addr, d.spec.port),
                        OpsReply {
                            vip: key.addr,
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
        let mut real_services: Vec<u64> = services
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
            .filter(|r| r.port != 0)
            .map(|r| svc_key(r.proto, r.addr, r.port))
            .collect();
        real_services.sort_unstable();
        real_services.dedup();
        Snapshot {
            services,
            ops_replies,
            vip_set: AddrSet::new(vips.iter().map(|&v| (v, VIP))),
            vips,
            real_services,
            generation,
            sysctls,
        }
    }

    /// The service for `proto` (IP protocol number), VIP and virtual port.
    pub fn service(&self, proto: u8, vip: Ipv4Addr, port: u16) -> Option<&Service> {
        let k = svc_key(proto, vip, port);
        let i = self.services.binary_search_by_key(&k, |(k, _)| *k).ok()?;
        self.services.get(i).map(|(_, s)| s)
    }

    /// The one-packet scheduling service whose real server `rip:rport` is, for a datagram
    /// from there that matches no connection.
    pub fn ops_reply(&self, proto: u8, rip: Ipv4Addr, rport: u16) -> Option<&OpsReply> {
        if self.ops_replies.is_empty() {
            return None;
        }
        let k = svc_key(proto, rip, rport);
        let i = self
            .ops_replies
            .binary_search_by_key(&k, |(k, _)| *k)
            .ok()?;
        self.ops_replies.get(i).map(|(_, r)| r)
    }

    /// True if some service uses `ip` as its VIP.
    /// Every service's virtual address, sorted, once each.
    #[cfg(test)]
    pub(crate) fn vips(&self) -> &[Ipv4Addr] {
        &self.vips
    }

    /// [`crate::addr_set::VIP`] if `ip` is a service's virtual address, else 0: one probe.
    #[inline]
    pub fn vip_class(&self, ip: Ipv4Addr) -> u8 {
        self.vip_set.of(ip)
    }

    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.binary_search(&ip).is_ok()
    }

    /// True if `addr:port` (`proto`) is the service address of a real server, configured or
    /// removed with connections left: a packet from there is a reply or nothing.
    pub fn is_real_service(&self, proto: u8, addr: Ipv4Addr, port: u16) -> bool {
        self.real_services
            .binary_search(&svc_key(proto, addr, port))
            .is_ok()
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().map(|(_, s)| s)
    }
}
