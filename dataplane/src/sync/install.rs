//! The backup's side: a synced connection goes into the shared table without scheduling, with
//! the state and the time left it carries, only for a configured service and one of its real
//! servers (the kernel's `ip_vs_proc_conn`); a template goes into the persistence table.

use super::codec::{Refused, SyncConn};
use crate::conntrack::{InsertError, NewConn, Tuple};
use crate::persist::{Key, Target};
use crate::pipeline::Dataplane;
use crate::service::Service;

/// What an install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// A connection or template that was not in the table.
    New,
    /// One that was: its state and expiry (a template's target and expiry) now as synced.
    Updated,
}

impl Dataplane {
    /// Installs the synced connection or template `c` at `now_ms` on the workers' clock.
    pub fn install_synced(&self, c: &SyncConn, now_ms: u64) -> Result<Installed, Refused> {
        let snap = self.snapshot();
        // A port-0 (persistent) service takes the ports no other service has, as for a
        // client's first packet.
        let svc = snap
            .service(c.proto, c.virt.0, c.virt.1)
            .or_else(|| snap.service(c.proto, c.virt.0, 0))
            .ok_or(Refused::NoService)?;
        let dest = real_server(svc, c)?;
        let timeout_ms = if c.timeout_s == 0 {
            // The kernel's backup takes the state's own timeout when none was sent.
            u64::from(self.conns().timeouts().get_ms(c.state))
        } else {
            u64::from(c.timeout_s) * 1000
        };
        let expires = now_ms.saturating_add(timeout_ms);
        if c.template {
            let key = Key {
                proto: c.proto,
                cnet: c.client.0,
                vip: c.virt.0,
                vport: c.virt.1,
            };
            let target = Target {
                slot: u16::try_from(dest.0).map_err(|_| Refused::NoRealServer)?,
                rip: c.real.0,
                rport: dest.1,
            };
            let timeout_s = u32::try_from(timeout_ms / 1000).unwrap_or(u32::MAX);
            return self
                .persist()
                .install(&key, target, timeout_s, now_ms)
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
        let inbound: Tuple = nc.inbound();
        let conns = self.conns();
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
fn real_server(svc: &Service, c: &SyncConn) -> Result<(u32, u16), Refused> {
    svc.dests
        .iter()
        .find(|d| {
            d.spec.addr == c.real.0
                && (d.spec.port == c.real.1
                    || (d.spec.port == 0 && (c.template || c.real.1 == c.virt.1)))
        })
        .map(|d| (d.slot, d.spec.port))
        .ok_or(Refused::NoRealServer)
}
