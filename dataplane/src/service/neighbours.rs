//! The control side of the neighbour table: static entries added and deleted by name of port,
//! and the listing `rvsctl neigh` prints. (The table itself, shared with the workers, is
//! `crate::neigh`.)

use super::ServiceManager;
use control::config::MacAddr;
use control::proto::{check_neighbour, Neighbour, Response};
use std::net::IpAddr;

impl ServiceManager {
    fn port_index(&self, name: &str) -> Result<u16, String> {
        let ports = self.dataplane().ports();
        ports
            .iter()
            .position(|p| p.name == name)
            .and_then(|i| u16::try_from(i).ok())
            .ok_or_else(|| {
                let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                format!("no port named {name:?} (ports: {})", names.join(", "))
            })
    }

    pub(super) fn list_neighbours(&self) -> Response {
        let dp = self.dataplane();
        let v4 = dp.neigh().entries().into_iter().map(|e| e.widen());
        let v6 = dp.neigh6().entries().into_iter().map(|e| e.widen());
        let mut list: Vec<Neighbour> = v4
            .chain(v6)
            .filter_map(|e| {
                Some(Neighbour {
                    port: dp.ports().get(usize::from(e.port))?.name.clone(),
                    addr: e.ip,
                    mac: MacAddr(e.mac),
                    permanent: e.permanent,
                })
            })
            .collect();
        list.sort_by(|a, b| (&a.port, a.addr).cmp(&(&b.port, b.addr)));
        Response::Neighbours(list)
    }

    pub(super) fn add_neighbour(&self, n: &Neighbour) -> Result<(), String> {
        let port = self.port_index(&n.port)?;
        check_neighbour(n.addr, n.mac)?;
        let dp = self.dataplane();
        match n.addr {
            IpAddr::V4(a) => dp.neigh().add_static(port, a, n.mac.0),
            IpAddr::V6(a) => dp.neigh6().add_static(port, a, n.mac.0),
        }
        .map_err(|e| format!("cannot add {} on {}: {e}", n.addr, n.port))?;
        tracing::info!(addr = %n.addr, mac = %n.mac, port = %n.port, "static neighbour added");
        Ok(())
    }

    pub(super) fn del_neighbour(&self, port: &str, addr: IpAddr) -> Result<(), String> {
        let index = self.port_index(port)?;
        let dp = self.dataplane();
        let removed = match addr {
            IpAddr::V4(a) => dp.neigh().remove(index, a),
            IpAddr::V6(a) => dp.neigh6().remove(index, a),
        };
        if !removed {
            return Err(format!("no neighbour {addr} on {port}"));
        }
        tracing::info!(%addr, port, "neighbour deleted");
        Ok(())
    }
}
