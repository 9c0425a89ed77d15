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

    /// The protocol of IP protocol number `p`: TCP for 6, UDP otherwise (rvs balances those
    /// two only).
    pub fn of_ip_proto(p: u8) -> Protocol {
        if p == Protocol::Tcp.ip_proto() {
            Protocol::Tcp
        } else {
            Protocol::Udp
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

/// The schedulers `-s` names: nine of LVS's (not yet lblc, lblcr, fo, ovf, twos). Which ones
/// the daemon implements is the daemon's business: it answers an unsupported one with an error.
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
    /// Scheduler flags (`-b`); left out of the JSON when none is set.
    #[serde(default, skip_serializing_if = "SchedFlags::is_empty")]
    pub sched_flags: SchedFlags,
    /// One-packet scheduling (`-o`, UDP only): every datagram is scheduled on its own and no
    /// connection is kept. Left out of the JSON when off, so that older peers read it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ops: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a service spec cannot use one-packet scheduling, if it cannot: ipvsadm's rule (UDP
/// only) and rvs's (a virtual port: replies are mapped back to the service by the real
/// server's address and port alone, see docs/rvsadm.md).
pub fn ops_refusal(spec: &ServiceSpec) -> Option<&'static str> {
    if !spec.ops {
        None
    } else if spec.key.protocol != Protocol::Udp {
        Some("One-Packet Scheduling is only for UDP virtual services")
    } else if spec.key.port == 0 {
        Some("One-Packet Scheduling needs a virtual port (not 0): rvs maps replies back to the service by the real server's address and port")
    } else {
        None
    }
}

/// The scheduler flags of `-b` (ipvsadm's `--sched-flags`): the sh and mh schedulers' options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedFlags {
    /// sh: a connection whose bucket's server is unavailable goes to another one.
    pub sh_fallback: bool,
    /// sh: hash the client's port too, not only its address.
    pub sh_port: bool,
    /// mh: as `sh_fallback`, for Maglev.
    pub mh_fallback: bool,
    /// mh: as `sh_port`, for Maglev.
    pub mh_port: bool,
}

impl SchedFlags {
    /// The flag names, in the order ipvsadm prints them.
    pub const NAMES: [&'static str; 4] = ["sh-fallback", "sh-port", "mh-fallback", "mh-port"];

    pub fn is_empty(&self) -> bool {
        *self == SchedFlags::default()
    }

    /// The set flags' names in ipvsadm's order (`sh-fallback,sh-port` when joined with `,`).
    pub fn names(&self) -> Vec<&'static str> {
        let set = [
            self.sh_fallback,
            self.sh_port,
            self.mh_fallback,
            self.mh_port,
        ];
        Self::NAMES
            .iter()
            .zip(set)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Sets the flag called `name`; false if there is no such flag.
    pub fn set(&mut self, name: &str) -> bool {
        let flag = match name {
            "sh-fallback" => &mut self.sh_fallback,
            "sh-port" => &mut self.sh_port,
            "mh-fallback" => &mut self.mh_fallback,
            "mh-port" => &mut self.mh_port,
            _ => return false,
        };
        *flag = true;
        true
    }

    /// The scheduler a flag belongs to (`sh-*`: sh, `mh-*`: mh).
    pub fn scheduler_of(name: &str) -> Option<SchedulerKind> {
        match name {
            "sh-fallback" | "sh-port" => Some(SchedulerKind::Sh),
            "mh-fallback" | "mh-port" => Some(SchedulerKind::Mh),
            _ => None,
        }
    }

    /// The first set flag that does not belong to `scheduler`, if any.
    pub fn incompatible_with(&self, scheduler: SchedulerKind) -> Option<&'static str> {
        self.names()
            .into_iter()
            .find(|n| Self::scheduler_of(n) != Some(scheduler))
    }

    /// Only the flags that belong to `scheduler`.
    pub fn retain_for(&self, scheduler: SchedulerKind) -> SchedFlags {
        let sh = scheduler == SchedulerKind::Sh;
        let mh = scheduler == SchedulerKind::Mh;
        SchedFlags {
            sh_fallback: self.sh_fallback && sh,
            sh_port: self.sh_port && sh,
            mh_fallback: self.mh_fallback && mh,
            mh_port: self.mh_port && mh,
        }
    }
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
/// Unknown keys are refused (a misspelt `[conntrack.timeouts]` key in rvs.toml is an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
