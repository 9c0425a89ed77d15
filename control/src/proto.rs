//! The control protocol: one JSON request per line on the Unix socket, one JSON response per line.
//!
//! ```text
//! -> {"version":1,"request":{"add_service":{...}}}
//! <- {"version":1,"result":{"ok":null}}        or   {"version":1,"result":{"error":"..."}}
//! ```
//! A request with another version is refused, so old and new tools never misread each other.

use crate::config::{IpCidr, MacAddr};
use crate::model::{ConnStatus, DestSpec, ServiceKey, ServiceSpec, ServiceStatus, Timeouts};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

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
        addr: IpAddr,
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
    DelNeighbour { port: String, addr: IpAddr },
    /// Every port with its device, link and DPDK counters (`rvsctl ports`); with `xstats`, also
    /// the driver's extended counters. Answered by rvsd, not by the service manager.
    Ports {
        #[serde(default)]
        xstats: bool,
    },
    /// rvsd's and DPDK's versions and the EAL file prefix (`rvsctl version`, `rvsctl capture`).
    /// Answered by rvsd, not by the service manager.
    Version,
    /// Re-reads the configuration file and applies what changed since the last load, as SIGHUP
    /// does (`rvsctl reload`); answered with [`Response::Reloaded`].
    Reload,
    /// Starts or stops the sync daemons (`rvsadm --start-daemon/--stop-daemon`; rvs-healthd
    /// when a VRRP instance with `lvs_sync_daemon` changes state): `master` sends this
    /// director's connections, `backup` installs the peer's. Needs `[sync]` in rvs.toml.
    /// Answered by rvsd.
    SetSyncRole { master: bool, backup: bool },
    /// The sync daemons' state and counters (`rvsadm -L --daemon`); answered with
    /// [`Response::Sync`] by rvsd.
    SyncStatus,
    /// A VRRP instance's addresses on a port (`port`: rvsd's port name): while `held`, rvsd
    /// answers ARP (IPv6: neighbour solicitations) for them, owns them and has them on the
    /// port's kernel twin; sent by rvs-healthd's VRRP on entering (true) and leaving (false)
    /// MASTER. Addresses of either family, written as CIDR strings ("198.51.100.5/24",
    /// "2001:db8:100::1/64"): IPv4-only requests read as they always did.
    SetVirtualAddrs {
        instance: String,
        port: String,
        addrs: Vec<IpCidr>,
        held: bool,
    },
    /// Every instance's addresses by port, held or not (`rvsctl vaddr`); answered with
    /// [`Response::VirtualAddrs`].
    ListVirtualAddrs,
}

/// One VRRP instance's addresses on one port, as `ListVirtualAddrs` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualAddrsStatus {
    pub instance: String,
    pub port: String,
    pub addrs: Vec<IpCidr>,
    pub held: bool,
}

/// A DPDK port as `rvsctl ports` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The port's name in rvs.toml.
    pub name: String,
    /// The DPDK device name (`net_af_xdp0`, `0000:03:00.0`): what dpdk-dumpcap's `-i` takes.
    pub device: String,
    /// The DPDK port id.
    pub port_id: u16,
    pub driver: String,
    pub mac: MacAddr,
    pub link_up: bool,
    /// Link speed in Mbit/s; 0 when the driver does not know it.
    pub speed_mbps: u32,
    pub full_duplex: bool,
    pub mtu: u16,
    /// The device's own counters (`rte_eth_stats`).
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Frames the receive ring had no room for: lost before rvsd saw them.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// Receives that found no free mbuf.
    pub rx_nombuf: u64,
    /// The driver's extended counters (`rte_eth_xstats`), when asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xstats: Vec<(String, u64)>,
}

/// What `rvsctl version` reports of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// rvsd's version (its package version).
    pub rvsd: String,
    /// DPDK's version string (`rte_version()`, e.g. "DPDK 22.11.11").
    pub dpdk: String,
    /// EAL's runtime folder (`/var/run/dpdk/PREFIX`): where secondary processes such as
    /// dpdk-dumpcap and dpdk-telemetry.py find rvsd.
    pub runtime_dir: String,
    /// EAL's file prefix, the runtime folder's last component (`--file-prefix`).
    pub file_prefix: String,
    /// EAL runs `--in-memory`: no secondary process (dpdk-dumpcap) can attach.
    pub in_memory: bool,
}

/// Whether `addr` at `mac` can be a static neighbour: a unicast address and MAC.
pub fn check_neighbour(addr: IpAddr, mac: MacAddr) -> Result<(), String> {
    let unicast = match addr {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_broadcast() || a.is_multicast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast() || a.is_loopback()),
    };
    if !unicast {
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
    /// IPv4 (the ARP table) or IPv6 (the neighbour discovery table).
    pub addr: IpAddr,
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
    Ports(Vec<PortInfo>),
    Version(VersionInfo),
    /// The answer to `Reload`: what it applied, adjusted, could not apply, and left for a restart.
    Reloaded(crate::reload::ReloadReport),
    Sync(crate::sync::SyncStatus),
    /// The answer to `ListVirtualAddrs`, by instance then port.
    VirtualAddrs(Vec<VirtualAddrsStatus>),
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

    #[test]
    fn virtual_addrs_requests_have_stable_json() {
        let set = RequestEnvelope::new(Request::SetVirtualAddrs {
            instance: "VI_1".into(),
            port: "ext".into(),
            addrs: vec![IpCidr::parse("198.51.100.5/24").unwrap()],
            held: true,
        });
        let line = serde_json::to_string(&set).unwrap();
        assert_eq!(
            line,
            r#"{"version":1,"request":{"set_virtual_addrs":{"instance":"VI_1","port":"ext","addrs":["198.51.100.5/24"],"held":true}}}"#
        );
        assert_eq!(serde_json::from_str::<RequestEnvelope>(&line).unwrap(), set);
        let list = serde_json::to_string(&RequestEnvelope::new(Request::ListVirtualAddrs)).unwrap();
        assert_eq!(list, r#"{"version":1,"request":"list_virtual_addrs"}"#);
        // As docs/exception-path.md shows the exchange.
        let ok = serde_json::to_string(&ResponseEnvelope::new(Response::Ok)).unwrap();
        assert_eq!(ok, r#"{"version":1,"result":"ok"}"#);
        // An address without a prefix length is refused, naming the fix.
        let bad = r#"{"version":1,"request":{"set_virtual_addrs":{"instance":"VI_1","port":"ext","addrs":["198.51.100.5"],"held":true}}}"#;
        let e = serde_json::from_str::<RequestEnvelope>(bad).unwrap_err();
        assert!(e.to_string().contains("prefix length"), "{e}");
        // IPv6 addresses travel the same way, beside IPv4 ones.
        let both = r#"{"version":1,"request":{"set_virtual_addrs":{"instance":"VI_6","port":"ext","addrs":["2001:db8:100::1/64","198.51.100.5/24"],"held":false}}}"#;
        let r = serde_json::from_str::<RequestEnvelope>(both).unwrap();
        assert_eq!(
            r.request,
            Request::SetVirtualAddrs {
                instance: "VI_6".into(),
                port: "ext".into(),
                addrs: vec![
                    IpCidr::parse("2001:db8:100::1/64").unwrap(),
                    IpCidr::parse("198.51.100.5/24").unwrap()
                ],
                held: false,
            }
        );
        assert_eq!(serde_json::to_string(&r).unwrap(), both);
    }

    #[test]
    fn ports_and_version_requests_have_stable_json() {
        let ports =
            serde_json::to_string(&RequestEnvelope::new(Request::Ports { xstats: true })).unwrap();
        assert_eq!(
            ports,
            r#"{"version":1,"request":{"ports":{"xstats":true}}}"#
        );
        // A client that leaves xstats out gets the plain listing.
        let plain: RequestEnvelope =
            serde_json::from_str(r#"{"version":1,"request":{"ports":{}}}"#).unwrap();
        assert_eq!(plain.request, Request::Ports { xstats: false });
        let version = serde_json::to_string(&RequestEnvelope::new(Request::Version)).unwrap();
        assert_eq!(version, r#"{"version":1,"request":"version"}"#);
    }
}
