//! The virtual-service model, in ipvsadm's terms: services (`-A`), real servers (`-a`) and what
//! `-L` reports about them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    /// The VIP: IPv4 or IPv6. A service's real servers are of its family.
    pub addr: IpAddr,
    pub port: u16,
}

impl ServiceKey {
    /// The order libipvs lists services in (`ipvs_cmp_services`): family (IPv4 first),
    /// protocol, address, port.
    pub fn list_order(&self) -> (bool, Protocol, IpAddr, u16) {
        (self.addr.is_ipv6(), self.protocol, self.addr, self.port)
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.protocol.label(),
            SockAddr(self.addr, self.port)
        )
    }
}

/// `addr:port` as ipvsadm prints it: `192.0.2.1:80`, `[2001:db8::1]:80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockAddr(pub IpAddr, pub u16);

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// Persistence granularity (`-M`): a dotted netmask for an IPv4 service, a prefix length
/// (1..=128) for an IPv6 one, as ipvsadm takes and prints them. Serialised as the netmask's
/// text (`"255.255.255.0"`) or the prefix length (`64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Netmask {
    V4(Ipv4Addr),
    V6(u8),
}

impl Netmask {
    /// The default of a service at `addr`: /32 or /128, one template per client address.
    pub fn full(addr: IpAddr) -> Netmask {
        match addr {
            IpAddr::V4(_) => Netmask::V4(Ipv4Addr::BROADCAST),
            IpAddr::V6(_) => Netmask::V6(128),
        }
    }

    /// True for /32 (IPv4) or /128 (IPv6): ipvsadm prints no mask then.
    pub fn is_full(&self) -> bool {
        matches!(self, Netmask::V4(Ipv4Addr::BROADCAST) | Netmask::V6(128))
    }

    /// True if this mask is of the family of `addr`.
    pub fn fits(&self, addr: IpAddr) -> bool {
        matches!(
            (self, addr),
            (Netmask::V4(_), IpAddr::V4(_)) | (Netmask::V6(1..=128), IpAddr::V6(_))
        )
    }

    /// The IPv6 prefix as a mask (`/0` for an IPv4 netmask: not meant for one).
    pub fn v6_mask(&self) -> u128 {
        match *self {
            Netmask::V6(len) if len > 0 => u128::MAX << (128 - u32::from(len.min(128))),
            _ => 0,
        }
    }

    /// `addr` with the host bits cleared (unchanged when the families differ).
    pub fn apply(&self, addr: IpAddr) -> IpAddr {
        match (self, addr) {
            (Netmask::V4(m), IpAddr::V4(a)) => {
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(*m)))
            }
            (Netmask::V6(_), IpAddr::V6(a)) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & self.v6_mask()))
            }
            _ => addr,
        }
    }
}

impl Default for Netmask {
    fn default() -> Self {
        default_netmask()
    }
}

impl std::str::FromStr for Netmask {
    type Err = String;

    /// A dotted netmask (IPv4) or a prefix length 1..=128 (IPv6).
    fn from_str(s: &str) -> Result<Netmask, String> {
        if let Ok(m) = s.parse::<Ipv4Addr>() {
            return Ok(Netmask::V4(m));
        }
        match s.parse::<u8>() {
            Ok(len @ 1..=128) => Ok(Netmask::V6(len)),
            _ => Err(format!(
                "bad netmask {s:?}: a dotted IPv4 netmask or an IPv6 prefix length (1..128)"
            )),
        }
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netmask::V4(m) => write!(f, "{m}"),
            Netmask::V6(len) => write!(f, "{len}"),
        }
    }
}

/// Why a service's and its real server's address families cannot go together, if they cannot.
/// The kernel takes a real server of the other family only for tunneling (-i) and answers
/// EINVAL for masquerading; libipvs words a family mismatch (EAFNOSUPPORT) as below, which rvs
/// uses with the reason added.
pub fn family_refusal(service: IpAddr, dest: IpAddr) -> Option<String> {
    if service.is_ipv4() == dest.is_ipv4() {
        return None;
    }
    let (d, s) = if dest.is_ipv6() {
        ("IPv6", "IPv4")
    } else {
        ("IPv4", "IPv6")
    };
    Some(format!(
        "Operation not supported with specified address family: real server {dest} is {d}, \
         the service is {s} (masquerading keeps the family)"
    ))
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
    /// Persistence granularity (`-M`): a netmask (255.255.255.255 by default) for IPv4, a
    /// prefix length (128 by default) for IPv6. A daemon given the IPv4 default for an IPv6
    /// service (JSON without the field) reads it as /128.
    #[serde(default = "default_netmask")]
    pub netmask: Netmask,
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

pub fn default_netmask() -> Netmask {
    Netmask::V4(Ipv4Addr::BROADCAST)
}

impl ServiceSpec {
    /// The netmask made to fit the service's family where it was left at the default (an
    /// IPv6 service given the IPv4 default gets /128); an error for any other mismatch.
    pub fn normalize_netmask(&mut self) -> Result<(), String> {
        if self.key.addr.is_ipv6() && self.netmask == default_netmask() {
            self.netmask = Netmask::V6(128);
        }
        if self.netmask.fits(self.key.addr) {
            return Ok(());
        }
        Err(match self.netmask {
            Netmask::V6(_) if self.key.addr.is_ipv6() => "illegal ipv6 netmask specified".into(),
            Netmask::V6(_) => format!(
                "illegal virtual server persistent mask specified: {} is an IPv4 service (a dotted netmask)",
                self.key
            ),
            Netmask::V4(_) => format!(
                "illegal ipv6 netmask specified: {} is an IPv6 service (a prefix length, 1..128)",
                self.key
            ),
        })
    }
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
    /// The RIP: of the service's family.
    pub addr: IpAddr,
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
    pub client: (IpAddr, u16),
    pub virt: (IpAddr, u16),
    pub dest: (IpAddr, u16),
}
