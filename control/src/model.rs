//! The virtual-service model, in ipvsadm's terms: services (`-A`), real servers (`-a`) and what
//! `-L` reports about them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

/// Transport protocol of a virtual service (`-t` / `-u`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IP protocol number.
    pub fn ip_proto(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// "TCP" / "UDP" as ipvsadm prints it.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// The ipvsadm option letter: `-t` or `-u`.
    pub fn flag(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        }
    }
}

/// A virtual service's identity: protocol, VIP and virtual port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceKey {
    pub protocol: Protocol,
    pub addr: Ipv4Addr,
    pub port: u16,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}", self.protocol.label(), self.addr, self.port)
    }
}

/// The LVS schedulers (`-s`). Which ones the daemon implements is the daemon's business: it
/// answers an unsupported one with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sed,
    Nq,
    Sh,
    Dh,
    Mh,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 9] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Sh,
        SchedulerKind::Dh,
        SchedulerKind::Mh,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Mh => "mh",
        }
    }

    pub fn from_name(name: &str) -> Option<SchedulerKind> {
        SchedulerKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A virtual service as `-A`/`-E` configure it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    pub scheduler: SchedulerKind,
    /// Persistence timeout in seconds (`-p`); `None` when not persistent.
    #[serde(default)]
    pub persistence: Option<u32>,
    /// Persistence granularity (`-M`), as a netmask; 255.255.255.255 by default.
    #[serde(default = "default_netmask")]
    pub netmask: Ipv4Addr,
}

pub fn default_netmask() -> Ipv4Addr {
    Ipv4Addr::BROADCAST
}

/// Packet forwarding method of a real server. rvs implements masquerading (VS/NAT) only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    Masq,
}

impl Forward {
    /// The column text of `-L`: "Masq".
    pub fn label(self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
        }
    }
}

/// A real server as `-a`/`-e` configure it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestSpec {
    pub addr: Ipv4Addr,
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default = "default_forward")]
    pub forward: Forward,
    /// Upper connection threshold (`-x`); 0 = none.
    #[serde(default)]
    pub upper_threshold: u32,
    /// Lower connection threshold (`-y`); 0 = none.
    #[serde(default)]
    pub lower_threshold: u32,
}

pub fn default_weight() -> u32 {
    1
}

pub fn default_forward() -> Forward {
    Forward::Masq
}

/// Traffic counters, as `--stats` prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Per-second rates, as `--rate` prints them; `None` while the daemon does not measure them
    /// (rvsadm then prints `-`, never a made-up number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
}

/// Per-second rates over a recent window (connections, packets and bytes, in and out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

/// A real server as `-L` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestStatus {
    pub spec: DestSpec,
    pub active_conns: u64,
    pub inactive_conns: u64,
    #[serde(default)]
    pub stats: Stats,
}

/// A virtual service as `-L` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub spec: ServiceSpec,
    pub dests: Vec<DestStatus>,
    #[serde(default)]
    pub stats: Stats,
}

/// Connection timeouts in seconds, as `--set tcp tcpfin udp` and `-L --timeout` use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        }
    }
}

/// One tracked connection as `-L -c` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStatus {
    pub protocol: Protocol,
    /// Seconds until the entry expires.
    pub expires_in: u32,
    /// LVS state name, e.g. "ESTABLISHED", "SYN_RECV", "UDP".
    pub state: String,
    pub client: (Ipv4Addr, u16),
    pub virt: (Ipv4Addr, u16),
    pub dest: (Ipv4Addr, u16),
}
