//! The backup's side: a synced connection goes into the shared table of its family without
//! scheduling, with the state and the time left it carries, only for a configured service and
//! one of its real servers (the kernel's `ip_vs_proc_conn`); a template goes into the
//! persistence table. One install for both families, over [`Installable`].

use super::codec::{Refused, SyncConn, SyncEntry, WireAddr};
use crate::conntrack::{ConnTable, Family, InsertError, NewConn, Tuple, V4, V6};
use crate::persist::{Key, Key6, Target};
use crate::pipeline::Dataplane;
use crate::service::{Service, Snapshot};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What an install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// A connection or template that was not in the table.
    New,
    /// One that was: its state and expiry (a template's target and expiry) now as synced.
    Updated,
}

/// What the install needs of an address family: its connection table, its services, its
/// template key.
trait Installable: WireAddr {
    type Fam: Family<Addr = Self>;
    fn conns(dp: &Dataplane) -> &ConnTable<Self::Fam>;
    fn service(snap: &Snapshot, proto: u8, vip: Self, port: u16) -> Option<&Service>;
    /// Writes the template `c` (its client network, VIP and vport) pinning `target`.
    fn install_template(
        dp: &Dataplane,
        c: &SyncConn<Self>,
        target: Target<Self>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<Installed>;
}

impl Installable for Ipv4Addr {
    type Fam = V4;
    fn conns(dp: &Dataplane) -> &ConnTable<V4> {
        dp.conns()
    }
    fn service(snap: &Snapshot, proto: u8, vip: Ipv4Addr, port: u16) -> Option<&Service> {
        snap.service(proto, vip, port)
    }
    fn install_template(
        dp: &Dataplane,
        c: &SyncConn<Ipv4Addr>,
        target: Target<Ipv4Addr>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<Installed> {
        let key = Key {
            proto: c.proto,
            cnet: c.client.0,
            vip: c.virt.0,
            vport: c.virt.1,
        };
        dp.persist().install(&key, target, timeout_s, now_ms)
    }
}

impl Installable for Ipv6Addr {
    type Fam = V6;
    fn conns(dp: &Dataplane) -> &ConnTable<V6> {
        dp.conns6()
    }
    fn service(snap: &Snapshot, proto: u8, vip: Ipv6Addr, port: u16) -> Option<&Service> {
        snap.service6(proto, vip, port)
    }
    fn install_template(
        dp: &Dataplane,
        c: &SyncConn<Ipv6Addr>,
        target: Target<Ipv6Addr>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Option<Installed> {
        let key = Key6 {
            proto: c.proto,
            cnet: c.client.0,
            vip: c.virt.0,
            vport: c.virt.1,
        };
        dp.persist().install6(&key, target, timeout_s, now_ms)
    }
}

impl Dataplane {
    /// Installs the synced connection or template `e` at `now_ms` on the workers' clock.
    pub fn install_synced(&self, e: &SyncEntry, now_ms: u64) -> Result<Installed, Refused> {
        match e {
            SyncEntry::V4(c) => self.install_conn(c, now_ms),
            SyncEntry::V6(c) => self.install_conn(c, now_ms),
        }
    }

    fn install_conn<A: Installable>(
        &self,
        c: &SyncConn<A>,
        now_ms: u64,
    ) -> Result<Installed, Refused> {
        let snap = self.snapshot();
        // A port-0 (persistent) service takes the ports no other service has, as for a
        // client's first packet.
        let svc = A::service(&snap, c.proto, c.virt.0, c.virt.1)
            .or_else(|| A::service(&snap, c.proto, c.virt.0, 0))
            .ok_or(Refused::NoService)?;
        let dest = real_server(svc, c)?;
        let conns = A::conns(self);
        let timeout_ms = if c.timeout_s == 0 {
            // The kernel's backup takes the state's own timeout when none was sent.
            u64::from(conns.timeouts().get_ms(c.state))
        } else {
            u64::from(c.timeout_s) * 1000
        };
        let expires = now_ms.saturating_add(timeout_ms);
        if c.template {
            let target = Target::new(dest.0, c.real.0, dest.1).ok_or(Refused::NoRealServer)?;
            let timeout_s = u32::try_from(timeout_ms / 1000).unwrap_or(u32::MAX);
            return A::install_template(self, c, target, timeout_s, now_ms)
                .ok_or(Refused::TableFull);
        }
        let nc = NewConn {
            proto: c.proto,
            client: c.client,
            virt: c.virt,
            real: c.real,
            dest: dest.0,
            state: c.state,
        };
        let inbound: Tuple<A> = nc.inbound();
        for _ in 0..2 {
            if let Some(hit) = conns.lookup(&inbound, now_ms) {
                if hit.real == c.real {
                    if conns.resync(&hit, c.state, expires) {
                        return Ok(Installed::Updated);
                    }
                    continue;
                }
                // The master scheduled the client's ports anew (its old connection here is
                // stale): the synced one replaces it, as the kernel's backup does.
                conns.remove(hit.conn);
            }
            return match conns.insert_until(&nc, now_ms, expires) {
                Ok(_) => Ok(Installed::New),
                Err(InsertError::Exists(hit)) if conns.resync(&hit, c.state, expires) => {
                    Ok(Installed::Updated)
                }
                Err(InsertError::DestRetired) => Err(Refused::NoRealServer),
                Err(_) => Err(Refused::TableFull),
            };
        }
        Err(Refused::TableFull)
    }
}

/// The slot and configured port of `c`'s real server among `svc`'s. A real server configured
/// without a port (port-0 services) takes the client's virtual port.
fn real_server<A: WireAddr>(svc: &Service, c: &SyncConn<A>) -> Result<(u32, u16), Refused> {
    svc.dests
        .iter()
        .find(|d| {
            d.spec.addr == c.real.0.into()
                && (d.spec.port == c.real.1
                    || (d.spec.port == 0 && (c.template || c.real.1 == c.virt.1)))
        })
        .map(|d| (d.slot, d.spec.port))
        .ok_or(Refused::NoRealServer)
}
