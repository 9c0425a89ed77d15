//! The addresses rvs holds, per port: its configured addresses, and the virtual addresses a
//! VRRP instance holds on request (`SetVirtualAddrs`, sent by rvs-healthd on becoming MASTER).
//! An address that some instance names is ours only while an instance holds it: then rvs
//! answers ARP (IPv6: neighbour solicitations) for it on its port, treats it as local (echo,
//! the kernel exception path) and announces it with gratuitous ARPs (IPv6: unsolicited
//! neighbour advertisements); while none holds it, none of that. This covers a VIP (on the
//! external port) and the DIP (on the internal port) that move between two directors, of
//! either family. Addresses no instance names (a plain VIP, a port's own address) keep their
//! static rules. A port's own IPv6 addresses (`addresses6`, its link-local one) are always its
//! own: no instance may name them.
//!
//! Published as the service snapshot is: the control thread builds a new immutable
//! [`OwnedAddrs`] and swaps it in ([`VirtualAddrs`]); each worker loads it once per burst.
//! Lookups scan short flat lists: a director holds a handful of addresses
//! ([`MAX_VIRTUAL_ADDRS`] at most come from instances).

use super::{Dataplane, Pipeline};
use crate::addr_set::{AddrFilter6, AddrSet, LOCAL, MARTIAN};
use crate::packet::arp;
use control::config::{Cidr, Cidr6, IpCidr};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Gratuitous ARPs (IPv6: unsolicited neighbour advertisements) sent for an address when it
/// becomes held (keepalived's `garp_master_repeat` is 5 as well).
pub const GARP_COUNT: u32 = 5;
/// Between two of them: spread over a second, so that one lost frame does not matter.
pub const GARP_INTERVAL_MS: u64 = 200;
/// Addresses all instances may name together.
pub const MAX_VIRTUAL_ADDRS: usize = 256;
/// Longest instance name (keepalived's `vrrp_instance` names are short words).
const MAX_INSTANCE_NAME: usize = 64;

/// An IPv4 address we hold on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAddr {
    pub port: u16,
    /// The address, with the prefix the kernel twin gets.
    pub cidr: Cidr,
}

/// An IPv6 address an instance holds on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldAddr6 {
    pub port: u16,
    /// The address, with the prefix the kernel twin gets.
    pub cidr: Cidr6,
}

/// A held address to announce (gratuitous ARP, unsolicited NA): those held since a later
/// generation than a worker has seen are new to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Announce {
    pub since: u64,
    pub port: u16,
    pub addr: IpAddr,
}

/// The set the packet path probes: the held addresses (LOCAL) and the subnets' broadcasts
/// (MARTIAN).
fn address_classes(flat: &[Ipv4Addr], broadcasts: &[u32]) -> AddrSet {
    AddrSet::new(
        flat.iter()
            .map(|&a| (a, LOCAL))
            .chain(broadcasts.iter().map(|&b| (Ipv4Addr::from(b), MARTIAN))),
    )
}

/// The addresses rvs holds now (see the module documentation).
#[derive(Debug, Default)]
pub struct OwnedAddrs {
    /// Every address we hold, in port order.
    held: Box<[HeldAddr]>,
    /// The addresses of `held`, flat.
    flat: Box<[Ipv4Addr]>,
    /// `flat` (LOCAL) and our subnets' broadcasts (MARTIAN) as one set, for the packet path.
    classes: AddrSet,
    /// The IPv6 addresses instances hold, in port order (the ports' own are in
    /// `Dataplane::local6`).
    held6: Box<[HeldAddr6]>,
    /// `held6`'s addresses as a filter, asked first (every IPv6 packet asks twice).
    held6_filter: AddrFilter6,
    /// Every address an instance names, held or not, of either family.
    managed: Box<[IpAddr]>,
    /// The held addresses some instance names, each with the generation it became held in.
    pub(crate) announce: Box<[Announce]>,
    /// Bumped by every change.
    pub(crate) generation: u64,
}

impl OwnedAddrs {
    /// Each port's configured addresses, no instance: what rvs holds at start.
    pub(super) fn configured(dp_ports: &[super::PortSetup], broadcasts: &[u32]) -> OwnedAddrs {
        let held: Vec<HeldAddr> = dp_ports
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.addrs.iter().map(move |&cidr| HeldAddr {
                    port: i as u16,
                    cidr,
                })
            })
            .collect();
        let flat: Box<[Ipv4Addr]> = held.iter().map(|h| h.cidr.addr).collect();
        OwnedAddrs {
            classes: address_classes(&flat, broadcasts),
            flat,
            held: held.into(),
            ..OwnedAddrs::default()
        }
    }

    /// The classes ([`crate::addr_set`]) of `ip` among our addresses and subnet broadcasts.
    #[inline]
    pub(super) fn classes_of(&self, ip: Ipv4Addr) -> u8 {
        self.classes.of(ip)
    }

    /// One of the addresses we hold (on any port).
    pub fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.flat.contains(&ip)
    }

    /// Whether we hold `ip` on `port`: ARP (IPv6: a solicitation) for it is answered there.
    /// Of IPv6 addresses, only those an instance holds are here.
    pub fn owns(&self, port: u16, ip: impl Into<IpAddr>) -> bool {
        match ip.into() {
            IpAddr::V4(ip) => self
                .held
                .iter()
                .any(|h| h.port == port && h.cidr.addr == ip),
            IpAddr::V6(ip) => self
                .held6
                .iter()
                .any(|h| h.port == port && h.cidr.addr == ip),
        }
    }

    /// Whether an instance holds the IPv6 address `ip` (on any port).
    pub fn holds6(&self, ip: Ipv6Addr) -> bool {
        self.held6_filter.may_hold(u128::from(ip)) && self.held6.iter().any(|h| h.cidr.addr == ip)
    }

    /// Whether an instance names `ip` (held or not): then only its holding makes it ours.
    pub fn is_managed(&self, ip: impl Into<IpAddr>) -> bool {
        self.managed.contains(&ip.into())
    }

    /// The IPv6 addresses instances hold.
    pub fn held6(&self) -> &[HeldAddr6] {
        &self.held6
    }

    /// Every address we hold.
    pub fn held(&self) -> &[HeldAddr] {
        &self.held
    }

    /// The source address for what rvs originates out of `port` towards `dst` (ARP requests,
    /// ICMP errors): the held address whose subnet holds `dst`, else the port's first held
    /// address, else 0.0.0.0 (an ARP probe: never an address a peer holds).
    pub fn source(&self, port: u16, dst: Ipv4Addr) -> Ipv4Addr {
        let mut on_port = self.held.iter().filter(|h| h.port == port);
        let first = on_port.clone().next();
        on_port
            .find(|h| h.cidr.contains(dst))
            .or(first)
            .map_or(Ipv4Addr::UNSPECIFIED, |h| h.cidr.addr)
    }
}

/// One instance's addresses on one port.
#[derive(Debug, Clone)]
struct Entry {
    addrs: Vec<IpCidr>,
    held: bool,
}

/// What a `SetVirtualAddrs` changed for the kernel twins: an address to add to (`present`) or
/// remove from the twin of `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwinChange {
    pub port: u16,
    pub cidr: IpCidr,
    pub present: bool,
}

/// One instance's addresses on one port, as `ListVirtualAddrs` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualAddrsEntry {
    pub instance: String,
    pub port: u16,
    pub addrs: Vec<IpCidr>,
    pub held: bool,
}

/// The control side of the virtual addresses: every instance's addresses by port, and the
/// publishing of what rvs holds. Held under the control thread's lock; workers never see it.
pub struct VirtualAddrs {
    dp: Arc<Dataplane>,
    entries: BTreeMap<(String, u16), Entry>,
}

impl std::fmt::Debug for VirtualAddrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualAddrs")
            .field("entries", &self.entries)
            .finish()
    }
}

impl VirtualAddrs {
    pub fn new(dp: Arc<Dataplane>) -> VirtualAddrs {
        VirtualAddrs {
            dp,
            entries: BTreeMap::new(),
        }
    }

    /// Sets `instance`'s addresses on port `port` (a port name) and whether it holds them; an
    /// empty `addrs` forgets the instance on that port. Publishes what rvs holds now and
    /// returns what the port's kernel twin must gain and lose. A bad request changes nothing
    /// and says why.
    pub fn set(
        &mut self,
        instance: &str,
        port: &str,
        addrs: &[IpCidr],
        held: bool,
    ) -> Result<Vec<TwinChange>, String> {
        if instance.is_empty()
            || instance.len() > MAX_INSTANCE_NAME
            || instance.chars().any(char::is_control)
        {
            return Err(format!(
                "bad instance name {instance:?}: 1 to {MAX_INSTANCE_NAME} printable characters"
            ));
        }
        let ports = self.dp.ports();
        let index = ports
            .iter()
            .position(|p| p.name == port)
            .ok_or_else(|| format!("no port named {port:?}"))? as u16;
        let mut addrs = addrs.to_vec();
        addrs.sort_by_key(|c| c.addr());
        addrs.dedup_by_key(|c| c.addr());
        for c in &addrs {
            match *c {
                IpCidr::V4(c) => {
                    check_unicast(c)?;
                    if let Some(other) = ports.iter().enumerate().find(|(i, p)| {
                        *i != usize::from(index) && p.addrs.iter().any(|a| a.addr == c.addr)
                    }) {
                        return Err(format!(
                            "{} is an address of port {:?}, not of {port:?}",
                            c.addr, other.1.name
                        ));
                    }
                }
                IpCidr::V6(c) => {
                    if let Some(other) = ports.iter().find(|p| p.holds6(c.addr)) {
                        return Err(format!(
                            "{} is port {:?}'s own IPv6 address: an instance names other ones",
                            c.addr, other.name
                        ));
                    }
                }
            }
            let elsewhere = self
                .entries
                .iter()
                .find(|((_, p), e)| *p != index && e.addrs.iter().any(|a| a.addr() == c.addr()));
            if let Some(((name, p), _)) = elsewhere {
                let on = ports.get(usize::from(*p)).map_or("?", |p| p.name.as_str());
                return Err(format!(
                    "{} is named by instance {name:?} on port {on:?}, not {port:?}",
                    c.addr()
                ));
            }
        }
        // Held (again): announced again, whether it was held before or not. A VRRP master
        // that meets another one (a partition healing) asks for it, as keepalived sends its
        // gratuitous ARPs again then.
        let announce: Vec<(u16, IpAddr)> = if held {
            addrs.iter().map(|c| (index, c.addr())).collect()
        } else {
            Vec::new()
        };
        let key = (instance.to_string(), index);
        let mut entries = self.entries.clone();
        if addrs.is_empty() {
            entries.remove(&key);
        } else {
            entries.insert(key, Entry { addrs, held });
        }
        let managed = entries.values().flat_map(|e| &e.addrs).count();
        if managed > MAX_VIRTUAL_ADDRS {
            return Err(format!(
                "too many virtual addresses ({managed}; at most {MAX_VIRTUAL_ADDRS})"
            ));
        }
        self.entries = entries;
        Ok(self.publish(&announce))
    }

    /// Every instance's addresses, by instance then port.
    pub fn list(&self) -> Vec<VirtualAddrsEntry> {
        self.entries
            .iter()
            .map(|((instance, port), e)| VirtualAddrsEntry {
                instance: instance.clone(),
                port: *port,
                addrs: e.addrs.clone(),
                held: e.held,
            })
            .collect()
    }

    /// Builds and publishes what rvs holds now, with `again` (port, address) announced anew;
    /// the twins' changes from what it held before.
    fn publish(&self, again: &[(u16, IpAddr)]) -> Vec<TwinChange> {
        let old = self.dp.owned.load_full();
        let generation = old.generation + 1;
        let managed: Vec<IpAddr> = {
            let mut m: Vec<IpAddr> = self
                .entries
                .values()
                .flat_map(|e| e.addrs.iter().map(|c| c.addr()))
                .collect();
            m.sort();
            m.dedup();
            m
        };
        // Every address held now, both families, in port order: the port's own IPv4 addresses
        // that no instance names, then what instances hold.
        let mut all: Vec<(u16, IpCidr)> = Vec::new();
        for (i, p) in self.dp.ports().iter().enumerate() {
            let port = i as u16;
            let mut add = |cidr: IpCidr| {
                if !all
                    .iter()
                    .any(|&(q, c)| q == port && c.addr() == cidr.addr())
                {
                    all.push((port, cidr));
                }
            };
            // Configured addresses an instance names follow the instance, like the others.
            p.addrs
                .iter()
                .filter(|c| !managed.contains(&IpAddr::V4(c.addr)))
                .for_each(|&c| add(c.into()));
            self.entries
                .iter()
                .filter(|((_, p), e)| *p == port && e.held)
                .flat_map(|(_, e)| &e.addrs)
                .for_each(|&c| add(c));
        }
        let announce = all
            .iter()
            .filter(|(_, c)| managed.contains(&c.addr()))
            .map(|&(port, c)| Announce {
                since: old
                    .announce
                    .iter()
                    .find(|a| a.port == port && a.addr == c.addr())
                    .filter(|_| !again.contains(&(port, c.addr())))
                    .map_or(generation, |a| a.since),
                port,
                addr: c.addr(),
            })
            .collect();
        let before: Vec<(u16, IpCidr)> = old
            .held
            .iter()
            .map(|h| (h.port, h.cidr.into()))
            .chain(old.held6.iter().map(|h| (h.port, h.cidr.into())))
            .collect();
        let mut changes: Vec<TwinChange> = before
            .iter()
            .filter(|o| !all.contains(o))
            .map(|&(port, cidr)| TwinChange {
                port,
                cidr,
                present: false,
            })
            .collect();
        changes.extend(
            all.iter()
                .filter(|h| !before.contains(h))
                .map(|&(port, cidr)| TwinChange {
                    port,
                    cidr,
                    present: true,
                }),
        );
        let held: Box<[HeldAddr]> = all
            .iter()
            .filter_map(|&(port, c)| match c {
                IpCidr::V4(cidr) => Some(HeldAddr { port, cidr }),
                IpCidr::V6(_) => None,
            })
            .collect();
        let held6: Box<[HeldAddr6]> = all
            .iter()
            .filter_map(|&(port, c)| match c {
                IpCidr::V6(cidr) => Some(HeldAddr6 { port, cidr }),
                IpCidr::V4(_) => None,
            })
            .collect();
        let flat: Box<[Ipv4Addr]> = held.iter().map(|h| h.cidr.addr).collect();
        self.dp.owned.store(Arc::new(OwnedAddrs {
            classes: address_classes(&flat, self.dp.broadcasts()),
            flat,
            held,
            held6_filter: AddrFilter6::new(held6.iter().map(|h| u128::from(h.cidr.addr))),
            held6,
            managed: managed.into(),
            announce,
            generation,
        }));
        // After the store: a worker that sees this generation loads the new list (Release
        // here, Acquire in `Pipeline::begin_burst`).
        self.dp
            .owned_generation
            .store(generation, std::sync::atomic::Ordering::Release);
        changes
    }
}

/// A virtual address must be one a host can hold: not 0/8, 127/8, multicast, class E, and not
/// its own subnet's network or broadcast address.
fn check_unicast(c: Cidr) -> Result<(), String> {
    let o = c.addr.octets();
    let host = u32::from(c.addr) & !c.mask();
    if o[0] == 0 || o[0] == 127 || o[0] >= 224 {
        return Err(format!("{} is not a unicast address", c.addr));
    }
    if c.prefix_len < 31 && (host == 0 || host == !c.mask()) {
        return Err(format!(
            "{}/{} is its subnet's network or broadcast address",
            c.addr, c.prefix_len
        ));
    }
    Ok(())
}

impl Pipeline {
    /// One of the addresses rvs holds now.
    pub(super) fn is_local(&self, ip: Ipv4Addr) -> bool {
        self.owned.is_local(ip)
    }

    /// The addresses rvs holds, as this worker's burst sees them.
    pub(crate) fn owned(&self) -> &OwnedAddrs {
        &self.owned
    }

    /// Writes a gratuitous ARP for `addr` out of `port` into `buf` (a broadcast request from
    /// and for `addr`, as keepalived sends): bytes written, 0 if `buf` is too small or the
    /// port unknown.
    pub fn gratuitous_arp(&self, port: u16, addr: Ipv4Addr, buf: &mut [u8]) -> usize {
        let Some(p) = self.dp.ports.get(usize::from(port)) else {
            return 0;
        };
        arp::build_request(buf, p.mac, addr, addr)
    }

    /// The announcement of a held address out of `port` into `buf`: a gratuitous ARP for IPv4,
    /// an unsolicited neighbour advertisement for IPv6. Bytes written, 0 if `buf` is too small
    /// or the port unknown.
    pub(crate) fn announcement(&self, port: u16, addr: IpAddr, buf: &mut [u8]) -> usize {
        match addr {
            IpAddr::V4(a) => self.gratuitous_arp(port, a, buf),
            IpAddr::V6(a) => self.unsolicited_na(port, a, buf),
        }
    }
}
