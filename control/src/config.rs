//! `rvs.toml`, the daemon's configuration file.
//!
//! Parsed once into typed values: addresses are [`Cidr`]s and MACs [`MacAddr`]s from the start,
//! so nothing downstream parses them again. Every table denies unknown keys, so a misspelt key
//! is an error. Every error names the key (its path, e.g. `ports[0].addresses[1]`) and, for what
//! is wrong in the file's text, the line (the toml crate reports it); what is wrong across keys
//! (a duplicate port name, no external port) is named by key alone.

use crate::model::Timeouts;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub eal: EalConfig,
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub conntrack: ConntrackConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// IPVS sysctls (`net.ipv4.vs.*` without the prefix), e.g. `expire_nodest_conn = 1`;
    /// unset ones keep the kernel's defaults (see `control::sysctl`).
    #[serde(default)]
    pub ipvs: crate::sysctl::IpvsSysctls,
    /// Static neighbours, for peers that answer no ARP (e.g. dpdk-testpmd reflecting traffic).
    #[serde(default)]
    pub neighbours: Vec<NeighbourConfig>,
    /// Services present at start, as `rvsadm -S` saves them: one rvsadm command per line
    /// (`-A -t 198.51.100.1:80 -s rr`, `-a -t 198.51.100.1:80 -r 192.0.2.2:80 -m -w 1`).
    #[serde(default)]
    pub services: String,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub exception: ExceptionConfig,
    /// `[metrics]`: the Prometheus endpoint and status page; no section, no listener.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// `[sync]`: IPVS connection sync (docs/sync.md); no section, no sync daemon.
    #[serde(default)]
    pub sync: Option<crate::sync::SyncConfig>,
}

/// `[metrics]`: rvsd's HTTP listener for `/metrics` (Prometheus) and the status page `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The address and port to listen on ("198.51.100.1:9180").
    pub listen: std::net::SocketAddr,
    /// Whether rvsd starts without the listener when the address cannot be bound (it logs a
    /// warning then); by default such an address is a start-up error.
    #[serde(default)]
    pub optional: bool,
}

/// `[log]`: rvsd's log on stderr. The `RVS_LOG` and `RVS_LOG_FORMAT` environment variables
/// override `level` and `format`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: a level ("info", "debug") or directives ("warn,rvsd=debug"); info when
    /// absent. rvsd checks it when it starts (`--check` included).
    #[serde(default)]
    pub level: Option<String>,
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format {s:?}, expected \"text\" or \"json\""
            )),
        }
    }
}

/// One `[[neighbours]]` entry: `address` on port `port` is at `mac`; learning never changes it.
/// An IPv4 address goes into the ARP table, an IPv6 one into the neighbour discovery table
/// (never solicited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourConfig {
    pub address: IpAddr,
    pub mac: MacAddr,
    /// The port's `name`.
    pub port: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EalConfig {
    /// Arguments passed to `rte_eal_init` (without the program name).
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    /// Faces the clients and holds the VIPs.
    External,
    /// Faces the real servers and holds the DIP.
    Internal,
    /// One-arm mode: clients and real servers behind the same port.
    Both,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// A short name used in logs and counters, e.g. "ext".
    pub name: String,
    /// The DPDK device name: a PCI address ("0000:03:00.0") or a vdev name ("net_af_packet0").
    pub device: String,
    pub role: PortRole,
    /// The port's own addresses in CIDR form ("192.0.2.1/24"); each makes its subnet directly
    /// reachable through this port.
    pub addresses: Vec<Cidr>,
    /// A MAC address to set on the port ("02:00:00:00:00:01"); the device's own when absent.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Next hop for destinations outside every port's subnets.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// The port's own IPv6 addresses in CIDR form ("2001:db8:2::1/64"), beside the IPv4 ones
    /// of `addresses`; each makes its prefix directly reachable through this port. Also
    /// read as `address6`.
    #[serde(default, alias = "address6", skip_serializing_if = "Vec::is_empty")]
    pub addresses6: Vec<Cidr6>,
    /// IPv6 next hop for destinations outside every port's prefixes: an address in one of
    /// the port's `addresses6` prefixes, or a link-local one (fe80::/10, as routers announce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    #[serde(default = "default_ring_size")]
    pub rx_ring: u16,
    #[serde(default = "default_ring_size")]
    pub tx_ring: u16,
    /// The kernel interface rvsd creates for this port's exception path ("rvs-ext0"): it carries
    /// the port's addresses in rvsd's namespace, and traffic to them that the dataplane does not
    /// handle goes up to it (docs/exception-path.md). None: no exception path on this port.
    #[serde(default)]
    pub kernel_twin: Option<IfName>,
}

/// A Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), none of them '/', ',', '=', ':',
/// whitespace or control characters (DPDK's vdev arguments split on ',' and '=').
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IfName(String);

impl IfName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = String;

    fn from_str(s: &str) -> Result<IfName, String> {
        let bad_char =
            |c: char| matches!(c, '/' | ',' | '=' | ':') || c.is_whitespace() || c.is_control();
        if s.is_empty() || s.len() > 15 || s == "." || s == ".." || s.chars().any(bad_char) {
            return Err(format!(
                "bad interface name {s:?}: 1 to 15 characters, without '/', ',', '=', ':' or \
                 spaces, e.g. \"rvs-ext0\""
            ));
        }
        Ok(IfName(s.to_string()))
    }
}

impl TryFrom<String> for IfName {
    type Error = String;

    fn try_from(s: String) -> Result<IfName, String> {
        s.parse()
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

impl std::fmt::Display for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[exception]`: the kernel exception path's limits (docs/exception-path.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionConfig {
    /// Frames each worker may send up to the kernel per second; more are dropped
    /// (`kernel_rate_limited`), so that a flood at our own addresses cannot starve the workers.
    #[serde(default = "default_kernel_rate")]
    pub rate: u64,
    /// The token bucket's depth: frames a worker may send up at once after a quiet spell.
    #[serde(default = "default_kernel_burst")]
    pub burst: u64,
}

impl Default for ExceptionConfig {
    fn default() -> Self {
        ExceptionConfig {
            rate: default_kernel_rate(),
            burst: default_kernel_burst(),
        }
    }
}

fn default_kernel_rate() -> u64 {
    4000
}

fn default_kernel_burst() -> u64 {
    256
}

fn default_mtu() -> u16 {
    1500
}

fn default_ring_size() -> u16 {
    1024
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// The lcores that run poll-mode workers; each gets one RX and one TX queue per port.
    /// Empty: every lcore EAL was given except the main one (or the main one if alone).
    #[serde(default)]
    pub lcores: Vec<u32>,
    /// Packet buffers per port mempool.
    #[serde(default = "default_mbufs")]
    pub mbufs_per_port: u32,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            lcores: Vec::new(),
            mbufs_per_port: default_mbufs(),
        }
    }
}

fn default_mbufs() -> u32 {
    16383
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackConfig {
    /// Maximum number of concurrent connections.
    #[serde(default = "default_capacity")]
    pub capacity: u64,
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            capacity: default_capacity(),
            timeouts: None,
        }
    }
}

fn default_capacity() -> u64 {
    1 << 20
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default = "default_socket")]
    pub socket: String,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: default_socket(),
        }
    }
}

fn default_socket() -> String {
    crate::proto::DEFAULT_SOCKET.to_string()
}

/// A MAC address, written as six colon-separated hex bytes ("02:00:00:00:00:01").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<MacAddr, String> {
        let bad = || format!("bad MAC address {s:?}, expected e.g. 02:00:00:00:00:01");
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for byte in mac.iter_mut() {
            *byte = parts
                .next()
                .filter(|p| p.len() == 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(bad)?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(mac))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;

    fn try_from(s: String) -> Result<MacAddr, String> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A port address parsed from CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("address {s:?} needs a prefix length, e.g. 192.0.2.1/24"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| {
            if a.parse::<Ipv6Addr>().is_ok() {
                format!("{a:?} is an IPv6 address: IPv6 addresses go in addresses6")
            } else {
                format!("bad IPv4 address {a:?}")
            }
        })?;
        let prefix_len: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= 32)
            .ok_or_else(|| format!("bad prefix length {p:?} in {s:?}"))?;
        Ok(Cidr { addr, prefix_len })
    }

    pub fn mask(self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len)
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.addr) & self.mask())
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;

    fn try_from(s: String) -> Result<Cidr, String> {
        Cidr::parse(&s)
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A port's IPv6 address parsed from CIDR notation ("2001:db8:2::1/64").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr6 {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
}

impl Cidr6 {
    pub fn parse(s: &str) -> Result<Cidr6, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("address {s:?} needs a prefix length, e.g. 2001:db8:2::1/64"))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| {
            if a.parse::<Ipv4Addr>().is_ok() {
                format!("{a:?} is an IPv4 address: IPv4 addresses go in addresses")
            } else {
                format!("bad IPv6 address {a:?}")
            }
        })?;
        let prefix_len: u8 = p
            .parse()
            .ok()
            .filter(|n| *n <= 128)
            .ok_or_else(|| format!("bad prefix length {p:?} in {s:?} (0..128)"))?;
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
            return Err(format!("{addr} is not a unicast address"));
        }
        Ok(Cidr6 { addr, prefix_len })
    }

    pub fn mask(self) -> u128 {
        if self.prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix_len.min(128)))
        }
    }

    pub fn contains(self, ip: Ipv6Addr) -> bool {
        (u128::from(ip) & self.mask()) == (u128::from(self.addr) & self.mask())
    }
}

impl TryFrom<String> for Cidr6 {
    type Error = String;

    fn try_from(s: String) -> Result<Cidr6, String> {
        Cidr6::parse(&s)
    }
}

impl From<Cidr6> for String {
    fn from(c: Cidr6) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for Cidr6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An address of either family in CIDR notation: a [`Cidr`] or a [`Cidr6`], written as they
/// are ("198.51.100.5/24", "2001:db8:100::1/64"). What a VRRP instance names
/// (`SetVirtualAddrs`): JSON that names IPv4 addresses only reads as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum IpCidr {
    V4(Cidr),
    V6(Cidr6),
}

impl IpCidr {
    /// IPv6 when the address has a colon, else IPv4; each family's own errors.
    pub fn parse(s: &str) -> Result<IpCidr, String> {
        if s.split('/').next().is_some_and(|a| a.contains(':')) {
            Cidr6::parse(s).map(IpCidr::V6)
        } else {
            Cidr::parse(s).map(IpCidr::V4)
        }
    }

    pub fn addr(self) -> IpAddr {
        match self {
            IpCidr::V4(c) => IpAddr::V4(c.addr),
            IpCidr::V6(c) => IpAddr::V6(c.addr),
        }
    }

    pub fn prefix_len(self) -> u8 {
        match self {
            IpCidr::V4(c) => c.prefix_len,
            IpCidr::V6(c) => c.prefix_len,
        }
    }

    pub fn is_ipv6(self) -> bool {
        matches!(self, IpCidr::V6(_))
    }
}

impl From<Cidr> for IpCidr {
    fn from(c: Cidr) -> IpCidr {
        IpCidr::V4(c)
    }
}

impl From<Cidr6> for IpCidr {
    fn from(c: Cidr6) -> IpCidr {
        IpCidr::V6(c)
    }
}

impl TryFrom<String> for IpCidr {
    type Error = String;

    fn try_from(s: String) -> Result<IpCidr, String> {
        IpCidr::parse(&s)
    }
}

impl From<IpCidr> for String {
    fn from(c: IpCidr) -> String {
        c.to_string()
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpCidr::V4(c) => c.fmt(f),
            IpCidr::V6(c) => c.fmt(f),
        }
    }
}

impl PortConfig {
    /// The port's IPv6 addresses (`addresses6`).
    pub fn ipv6_addresses(&self) -> Vec<Cidr6> {
        self.addresses6.clone()
    }
}

/// fe80::/10.
fn is_link_local6(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates; `origin` names the source in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
            serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
                // The key's path ("." for the document itself, e.g. a syntax error), then the
                // toml crate's message with the line.
                let key = e.path().to_string();
                let message = match key.as_str() {
                    "." => e.into_inner().to_string(),
                    _ => format!("{key}: {}", e.into_inner()),
                };
                ConfigError::Parse {
                    path: origin.to_string(),
                    message,
                }
            })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.ports.is_empty() {
            return Err("ports: at least one port is needed".into());
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.addresses.is_empty() {
                return Err(format!(
                    "ports[{i}].addresses: at least one address is needed"
                ));
            }
            if self.ports[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("ports[{i}].name: duplicate port name {:?}", p.name));
            }
            if let Some(twin) = &p.kernel_twin {
                if let Some(j) = self.ports[..i]
                    .iter()
                    .position(|q| q.kernel_twin.as_ref() == Some(twin))
                {
                    return Err(format!(
                        "ports[{i}].kernel_twin: {twin:?} is ports[{j}]'s twin already"
                    ));
                }
            }
            if let Some(g) = p.gateway6 {
                let on_link = p.addresses6.iter().any(|c| c.contains(g));
                if g.is_unspecified() || g.is_multicast() || g.is_loopback() {
                    return Err(format!("ports[{i}].gateway6: {g} is not a unicast address"));
                }
                if !on_link && !is_link_local6(g) {
                    return Err(format!(
                        "ports[{i}].gateway6: {g} is neither in one of the port's addresses6 \
                         prefixes nor link-local (fe80::/10)"
                    ));
                }
                if p.addresses6.is_empty() {
                    return Err(format!(
                        "ports[{i}].gateway6: the port has no IPv6 address (addresses6)"
                    ));
                }
            }
            if let Some(j) = (0..p.addresses6.len()).find(|&j| {
                p.addresses6[..j]
                    .iter()
                    .any(|c| c.addr == p.addresses6[j].addr)
            }) {
                return Err(format!(
                    "ports[{i}].addresses6[{j}]: duplicate address {}",
                    p.addresses6[j].addr
                ));
            }
            if !p.addresses6.is_empty() && p.mtu < 1280 {
                return Err(format!(
                    "ports[{i}].mtu: {} is below the IPv6 minimum 1280 (the port has addresses6)",
                    p.mtu
                ));
            }
            if p.mtu < 68 {
                return Err(format!(
                    "ports[{i}].mtu: {} is below the IPv4 minimum 68",
                    p.mtu
                ));
            }
        }
        let has_ext = self.ports.iter().any(|p| p.role != PortRole::Internal);
        if !has_ext {
            return Err(
                "ports: no port with role \"external\" or \"both\" to hold the VIPs".into(),
            );
        }
        crate::cli::parse_restore(&self.services).map_err(|e| format!("services: {}", e.0))?;
        if self.conntrack.capacity == 0 {
            return Err("conntrack.capacity: must be at least 1".into());
        }
        self.ipvs.validate().map_err(|e| format!("ipvs.{e}"))?;
        if self.exception.rate == 0 || self.exception.burst == 0 {
            return Err("exception.rate, exception.burst: must be at least 1".into());
        }
        if let Some(s) = &self.sync {
            let twin = self
                .ports
                .iter()
                .find(|p| p.name == s.port)
                .and_then(|p| p.kernel_twin.as_ref());
            s.validate(twin.map(IfName::as_str))?;
        }
        for (i, n) in self.neighbours.iter().enumerate() {
            if !self.ports.iter().any(|p| p.name == n.port) {
                let names: Vec<&str> = self.ports.iter().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "neighbours[{i}].port: no port named {:?} (ports: {})",
                    n.port,
                    names.join(", ")
                ));
            }
            if let Err(e) = crate::proto::check_neighbour(n.address, n.mac) {
                return Err(format!("neighbours[{i}]: {e}"));
            }
        }
        Ok(())
    }
}

/// The configuration rvsd runs on when started with `--lab-config`: the lab of DESIGN.md, rvsd on
/// net_af_xdp over the veths `rvs-dext` (external) and `rvs-dint` (internal) in namespace `rvs-dir`.
pub const DEFAULT_CONFIG: &str = include_str!("../../rvsd/rvs.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_config_is_valid() {
        let cfg = Config::parse(DEFAULT_CONFIG, "default").unwrap();
        assert_eq!(cfg.ports.len(), 2);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = "[[ports]]\nname = \"ext\"\ndevice = \"net_null0\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\nmtux = 1500\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("mtux"), "{err}");
        assert!(err.contains("line 6"), "{err}");
    }

    #[test]
    fn ipvs_sysctls_are_read_and_bad_ones_named_with_the_valid_ones() {
        let port = "[[ports]]\nname = \"ext\"\ndevice = \"net_null0\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";
        let cfg = Config::parse(&format!("{port}[ipvs]\nexpire_nodest_conn = 1\n"), "t").unwrap();
        assert_eq!(cfg.ipvs.expire_nodest_conn, 1);
        assert_eq!(
            cfg.ipvs.conn_reuse_mode, 1,
            "unset knobs keep the kernel's default"
        );
        let err = Config::parse(&format!("{port}[ipvs]\nexpire_nodest = 1\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expire_nodest") && err.contains("expire_nodest_conn"),
            "{err}"
        );
        assert!(err.contains("line 7"), "{err}");
        let err = Config::parse(&format!("{port}[ipvs]\nsecure_tcp = 4\n"), "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ipvs.secure_tcp") && err.contains("0..=3"),
            "{err}"
        );
    }

    #[test]
    fn static_neighbours_are_read_and_checked() {
        let port = "[[ports]]\nname = \"int\"\ndevice = \"net_null0\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";
        let good = "[[neighbours]]\naddress = \"192.0.2.9\"\nmac = \"02:00:00:00:00:09\"\nport = \"int\"\n";
        let cfg = Config::parse(&format!("{port}{good}"), "t").unwrap();
        assert_eq!(cfg.neighbours[0].mac, MacAddr([2, 0, 0, 0, 0, 9]));
        let err = Config::parse(
            &format!("{port}{}", good.replace("\"int\"", "\"ext\"")),
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("neighbours[0].port") && err.contains("int"),
            "{err}"
        );
        let err = Config::parse(&format!("{port}{}", good.replace("02:00", "01:00")), "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neighbours[0]") && err.contains("unicast MAC"),
            "{err}"
        );
        let err = Config::parse(&format!("{port}{}", good.replace("port =", "prot =")), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        // IPv6 too; a bad address or a group names the key.
        let good6 = good.replace("192.0.2.9", "2001:db8:2::9");
        let cfg = Config::parse(&format!("{port}{good6}"), "t").unwrap();
        let want: IpAddr = "2001:db8:2::9".parse().unwrap();
        assert_eq!(cfg.neighbours[0].address, want);
        for (bad, key) in [
            ("2001:db8:2::9::1", "address"),
            ("192.0.2", "address"),
            ("ff02::1", "neighbours[0]"),
            ("::", "neighbours[0]"),
            ("224.0.0.1", "neighbours[0]"),
        ] {
            let err = Config::parse(&format!("{port}{}", good.replace("192.0.2.9", bad)), "t")
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_key_is_named() {
        let text = "[[ports]]\nname = \"ext\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("device"), "{err}");
    }

    #[test]
    fn bad_address_is_named() {
        let text = "[[ports]]\nname = \"ext\"\ndevice = \"x\"\nrole = \"both\"\naddresses = [\"192.0.2.1\"]\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("ports[0].addresses"), "{err}");
    }

    #[test]
    fn mac_parses_and_rejects() {
        let m: MacAddr = "02:00:00:00:0a:ff".parse().unwrap();
        assert_eq!(m, MacAddr([2, 0, 0, 0, 10, 255]));
        assert_eq!(m.to_string(), "02:00:00:00:0a:ff");
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_and_mac_are_typed_and_bad_ones_name_key_and_line() {
        let port = "[[ports]]\nname = \"ext\"\ndevice = \"x\"\nrole = \"both\"\n";
        let text = format!(
            "{port}addresses = [\"192.0.2.1/24\", \"198.51.100.1/25\"]\n\
             mac = \"02:00:00:00:01:01\"\n"
        );
        let cfg = Config::parse(&text, "t.toml").unwrap();
        let p = &cfg.ports[0];
        assert_eq!(
            p.addresses,
            [
                Cidr::parse("192.0.2.1/24").unwrap(),
                Cidr::parse("198.51.100.1/25").unwrap()
            ]
        );
        assert_eq!(p.addresses[1].to_string(), "198.51.100.1/25");
        assert_eq!(p.mac, Some(MacAddr([2, 0, 0, 0, 1, 1])));
        for (bad, key, line) in [
            (
                "addresses = [\"192.0.2.1/24\", \"192.0.2.1\"]\n",
                "ports[0].addresses[1]",
                "line 5",
            ),
            (
                "addresses = [\"192.0.2.1/24\"]\nmac = \"02:00\"\n",
                "ports[0].mac",
                "line 6",
            ),
        ] {
            let err = Config::parse(&format!("{port}{bad}"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("t.toml: {key}: ")), "{err}");
            assert!(err.contains(line), "{err}");
        }
    }

    #[test]
    fn ipv6_addresses_and_gateway6_name_the_key() {
        let port = "[[ports]]\nname = \"ext\"\ndevice = \"x\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";
        let text = format!(
            "{port}addresses6 = [\"2001:db8:100::2/64\", \"2001:db8:2::1/64\"]\n\
             gateway6 = \"fe80::1\"\n"
        );
        let cfg = Config::parse(&text, "t.toml").unwrap();
        let p = &cfg.ports[0];
        assert_eq!(
            p.ipv6_addresses(),
            [
                Cidr6::parse("2001:db8:100::2/64").unwrap(),
                Cidr6::parse("2001:db8:2::1/64").unwrap()
            ]
        );
        assert_eq!(p.gateway6, Some("fe80::1".parse().unwrap()));
        assert!(p.addresses6[1].contains("2001:db8:2::77".parse().unwrap()));
        assert!(!p.addresses6[1].contains("2001:db8:3::77".parse().unwrap()));
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(Config::parse(&text, "again").unwrap(), cfg);
        // `address6` is read too; an on-link gateway6 is fine.
        let alias =
            format!("{port}address6 = [\"2001:db8:2::1/64\"]\ngateway6 = \"2001:db8:2::fe\"\n");
        assert_eq!(
            Config::parse(&alias, "t.toml").unwrap().ports[0].addresses6,
            [Cidr6::parse("2001:db8:2::1/64").unwrap()]
        );
        for (bad, key, says) in [
            (
                "addresses6 = [\"2001:db8:2::1/64\", \"2001:db8:2::g/64\"]\n",
                "ports[0].addresses6[1]",
                "bad IPv6 address",
            ),
            (
                "addresses6 = [\"2001:db8:2::1/129\"]\n",
                "ports[0].addresses6[0]",
                "prefix length",
            ),
            (
                "addresses6 = [\"2001:db8:2::1\"]\n",
                "ports[0].addresses6[0]",
                "needs a prefix length",
            ),
            (
                "addresses6 = [\"192.0.2.9/24\"]\n",
                "ports[0].addresses6[0]",
                "IPv4 addresses go in addresses",
            ),
            (
                "addresses6 = [\"ff02::1/64\"]\n",
                "ports[0].addresses6[0]",
                "not a unicast",
            ),
            (
                "addresses6 = [\"2001:db8:2::1/64\"]\ngateway6 = \"2001:db8:3::1\"\n",
                "ports[0].gateway6",
                "link-local",
            ),
            (
                "gateway6 = \"fe80::1\"\n",
                "ports[0].gateway6",
                "no IPv6 address",
            ),
            ("gateway6 = \"fe80::1::\"\n", "ports[0].gateway6", ""),
            (
                "addresses6 = [\"2001:db8:2::1/64\"]\nmtu = 1200\n",
                "ports[0].mtu",
                "1280",
            ),
        ] {
            let err = Config::parse(&format!("{port}{bad}"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("t.toml: {key}: ")), "{err}");
            assert!(err.contains(says), "{err}");
        }
        // An IPv6 address among the IPv4 ones says where it goes.
        let err = Config::parse(
            "[[ports]]\nname = \"ext\"\ndevice = \"x\"\nrole = \"both\"\naddresses = [\"2001:db8:2::1/64\"]\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ports[0].addresses[0]") && err.contains("addresses6"),
            "{err}"
        );
    }

    #[test]
    fn services_in_the_config_take_ipv6() {
        let text = "services = \"\"\"\n-A -t [2001:db8:100::1]:80 -s rr -p 60 -M 64\n-a -t [2001:db8:100::1]:80 -r [2001:db8:2::2]:80 -m\n\"\"\"\n[[ports]]\nname = \"ext\"\ndevice = \"x\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";
        Config::parse(text, "t.toml").unwrap();
        let bad = text.replace("[2001:db8:2::2]:80", "192.0.2.2:80");
        let err = Config::parse(&bad, "t.toml").unwrap_err().to_string();
        assert!(
            err.contains("services: line 2") && err.contains("address family"),
            "{err}"
        );
    }

    #[test]
    fn a_config_serialises_and_parses_back_the_same() {
        let cfg = Config::parse(DEFAULT_CONFIG, "default").unwrap();
        let text = toml::to_string(&cfg).unwrap();
        assert_eq!(Config::parse(&text, "again").unwrap(), cfg);
    }

    #[test]
    fn bad_service_line_is_named() {
        let text = "services = \"\"\"\n-A -t 198.51.100.1:80 -s rr\n-a -t 198.51.100.1:80 -r 192.0.2.2:80 -g\n\"\"\"\n[[ports]]\nname = \"ext\"\ndevice = \"x\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";
        let err = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("services: line 2"), "{err}");
    }

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("192.0.2.1/24").unwrap();
        assert!(c.contains("192.0.2.200".parse().unwrap()));
        assert!(!c.contains("198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn ip_cidr_reads_either_family_as_its_own_type_does() {
        let v4 = IpCidr::parse("198.51.100.5/24").unwrap();
        assert_eq!(v4, IpCidr::V4(Cidr::parse("198.51.100.5/24").unwrap()));
        assert_eq!(v4.addr(), "198.51.100.5".parse::<IpAddr>().unwrap());
        let v6 = IpCidr::parse("2001:db8:100::1/64").unwrap();
        assert_eq!((v6.is_ipv6(), v6.prefix_len()), (true, 64));
        assert_eq!(v6.to_string(), "2001:db8:100::1/64");
        assert!(IpCidr::parse("2001:db8::1")
            .unwrap_err()
            .contains("prefix length"));
        assert!(IpCidr::parse("ff02::12/128")
            .unwrap_err()
            .contains("unicast"));
        assert!(IpCidr::parse("192.0.2.300/24")
            .unwrap_err()
            .contains("bad IPv4"));
    }

    #[test]
    fn log_table_is_read_and_bad_keys_named() {
        let port = "[[ports]]\nname = \"ext\"\ndevice = \"net_null0\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\n";
        let cfg = Config::parse(port, "t.toml").unwrap();
        assert_eq!(cfg.log, LogConfig::default());
        assert_eq!(cfg.log.format, LogFormat::Text);

        let text = format!("{port}[log]\nlevel = \"debug\"\nformat = \"json\"\n");
        let cfg = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(cfg.log.level.as_deref(), Some("debug"));
        assert_eq!(cfg.log.format, LogFormat::Json);

        let text = format!("{port}[log]\nformat = \"xml\"\n");
        let err = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("log.format"), "{err}");
        assert!(err.contains("line 7"), "{err}");

        let text = format!("{port}[log]\nlevle = \"debug\"\n");
        let err = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("levle"), "{err}");

        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("xml".parse::<LogFormat>().unwrap_err().contains("xml"));
    }

    #[test]
    fn kernel_twin_and_exception_are_read_and_bad_values_named() {
        let port = |twin: &str| {
            format!("[[ports]]\nname = \"ext\"\ndevice = \"net_null0\"\nrole = \"both\"\naddresses = [\"192.0.2.1/24\"]\nkernel_twin = {twin}\n")
        };
        let cfg = Config::parse(&port("\"rvs-ext0\""), "t.toml").unwrap();
        assert_eq!(
            cfg.ports[0].kernel_twin.as_ref().map(IfName::as_str),
            Some("rvs-ext0")
        );
        assert_eq!(cfg.exception, ExceptionConfig::default());
        for bad in [
            "\"\"",
            "\"a-name-far-too-long\"",
            "\"a,b\"",
            "\"x y\"",
            "\"a/b\"",
        ] {
            let err = Config::parse(&port(bad), "t.toml").unwrap_err().to_string();
            assert!(err.contains("ports[0].kernel_twin"), "{bad}: {err}");
            assert!(err.contains("line 6"), "{bad}: {err}");
        }
        let two = format!(
            "{}{}",
            port("\"tw0\""),
            port("\"tw0\"").replace("\"ext\"", "\"int\"")
        );
        let err = Config::parse(&two, "t.toml").unwrap_err().to_string();
        assert!(err.contains("ports[1].kernel_twin"), "{err}");

        let text = format!("{}[exception]\nrate = 100\nburst = 10\n", port("\"tw0\""));
        let cfg = Config::parse(&text, "t.toml").unwrap();
        assert_eq!((cfg.exception.rate, cfg.exception.burst), (100, 10));
        let text = format!("{}[exception]\nrate = 0\n", port("\"tw0\""));
        let err = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("exception.rate"), "{err}");
    }
}
