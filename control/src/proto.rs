//! The control protocol: one JSON request per line on the Unix socket, one JSON response per line.
//!
//! ```text
//! -> {"version":1,"request":{"add_service":{...}}}
//! <- {"version":1,"result":{"ok":null}}        or   {"version":1,"result":{"error":"..."}}
//! ```
//! A request with another version is refused, so old and new tools never misread each other.

use crate::config::MacAddr;
use crate::model::{ConnStatus, DestSpec, ServiceKey, ServiceSpec, ServiceStatus, Timeouts};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line the daemon accepts, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvs.sock";

/// Environment variable that points rvsadm at another socket.
pub const SOCKET_ENV: &str = "RVS_SOCKET";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub version: u32,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    pub version: u32,
    pub result: Response,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// `-A`
    AddService(ServiceSpec),
    /// `-E`: fields are replaced as given (rvsadm fills unspecified ones from the current state).
    EditService(ServiceSpec),
    /// `-D`
    DelService(ServiceKey),
    /// `-a`
    AddDest { service: ServiceKey, dest: DestSpec },
    /// `-e`
    EditDest { service: ServiceKey, dest: DestSpec },
    /// `-d`
    DelDest {
        service: ServiceKey,
        addr: Ipv4Addr,
        port: u16,
    },
    /// `-C`
    Clear,
    /// `-L`: all services, or one.
    List { service: Option<ServiceKey> },
    /// `-L -c`
    ListConns,
    /// `-Z`: all services, or one.
    Zero { service: Option<ServiceKey> },
    /// `--set tcp tcpfin udp` (0 leaves a value unchanged).
    SetTimeouts(Timeouts),
    /// `-L --timeout`
    GetTimeouts,
    /// Every dataplane counter by name (rx/tx per port, drops by reason, events, connection
    /// table figures): an rvs extension, `{"version":1,"request":"counters"}`.
    Counters,
    /// Every IPVS sysctl rvs honours with its value (`rvsctl sysctl`).
    GetSysctls,
    /// Sets IPVS sysctls (`rvsctl sysctl -w name=value ...`): all or none.
    SetSysctls(Vec<(String, u32)>),
    /// Every neighbour entry, static and learnt (`rvsctl neigh`).
    ListNeighbours,
    /// Adds or replaces a static neighbour (`rvsctl neigh add ADDR lladdr MAC dev PORT`).
    AddNeighbour(Neighbour),
    /// Deletes a neighbour entry, static or learnt (`rvsctl neigh del ADDR dev PORT`).
    DelNeighbour { port: String, addr: Ipv4Addr },
    /// Re-reads the configuration file and applies what changed since the last load, as SIGHUP
    /// does (`rvsctl reload`); answered with [`Response::Reloaded`].
    Reload,
}

/// Whether `addr` at `mac` can be a static neighbour: a unicast address and MAC.
pub fn check_neighbour(addr: Ipv4Addr, mac: MacAddr) -> Result<(), String> {
    if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
        return Err(format!("{addr} is not a unicast address"));
    }
    if mac.0 == [0; 6] || mac.0[0] & 1 != 0 {
        return Err(format!("{mac} is not a unicast MAC"));
    }
    Ok(())
}

/// A neighbour entry: port name, address, MAC, and whether it is static.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    pub port: String,
    pub addr: Ipv4Addr,
    pub mac: MacAddr,
    /// Configured (`[[neighbours]]`, `rvsctl neigh add`), not learnt.
    #[serde(default)]
    pub permanent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok,
    Error(String),
    Services {
        /// Connection table capacity, printed as `size=` in the `-L` header.
        table_size: u64,
        services: Vec<ServiceStatus>,
    },
    Conns(Vec<ConnStatus>),
    Timeouts(Timeouts),
    /// `(name, value)` pairs, in a stable order (see `dataplane::stats::Stats::counters`).
    Counters(Vec<(String, u64)>),
    /// `(name, value)` of every IPVS sysctl, in `control::sysctl::KNOBS` order.
    Sysctls(Vec<(String, u32)>),
    Neighbours(Vec<Neighbour>),
    /// The answer to `Reload`: what it applied, adjusted, could not apply, and left for a restart.
    Reloaded(crate::reload::ReloadReport),
}

impl RequestEnvelope {
    pub fn new(request: Request) -> Self {
        RequestEnvelope {
            version: PROTOCOL_VERSION,
            request,
        }
    }
}

impl ResponseEnvelope {
    pub fn new(result: Response) -> Self {
        ResponseEnvelope {
            version: PROTOCOL_VERSION,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, SchedulerKind};

    #[test]
    fn request_round_trips_through_json() {
        let req = RequestEnvelope::new(Request::AddService(ServiceSpec {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                addr: "198.51.100.1".parse().unwrap(),
                port: 80,
            },
            scheduler: SchedulerKind::Rr,
            persistence: None,
            netmask: crate::model::default_netmask(),
            sched_flags: Default::default(),
            ops: false,
        }));
        let line = serde_json::to_string(&req).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<RequestEnvelope>(&line).unwrap(), req);
    }
}
