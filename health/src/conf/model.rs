//! The LVS part of keepalived.conf as rvs-healthd runs it, with keepalived 2.2.7's defaults
//! (keepalived/check/check_data.c, check_api.c, check_tcp.c, check_http.c, check_misc.c):
//!
//! | what | default | inherited from |
//! |---|---|---|
//! | delay_loop | 60 s | real server, virtual server |
//! | connect_timeout | 5 s | real server, virtual server |
//! | retry | TCP_CHECK 1, HTTP_GET 1, MISC_CHECK 0 | real server, virtual server |
//! | delay_before_retry | HTTP_GET 3 s, others 1 s | real server, virtual server |
//! | warmup | the checker's delay_loop | real server, virtual server |
//! | alpha | off | real server, virtual server |
//! | inhibit_on_failure | off | virtual server |
//! | quorum / hysteresis | 1 / 0 | |
//! | lb_algo / lb_kind / protocol | wlc / NAT / TCP | |
//! | weight | 1 | virtual server's `weight` |
//! | HTTP_GET status_code | 200-299 | |
//!
//! Every statement inside `virtual_server`, `real_server` and the checkers is either
//! understood, refused with its place (what rvs cannot do: DR/TUN, other checkers, notify
//! scripts...), or, where it changes nothing rvs does (`smtp_alert`, `snmp_name`), accepted
//! with a warning. `vrrp_instance` and `vrrp_script` are read by [`super::vrrp`]; other
//! top-level sections (global_defs but for its VRRP settings, static_*, ...) are skipped with a
//! note.

use super::tree::Node;
use super::vrrp::{self, VrrpConfig};
use super::{Diag, Errors, Pos};
use control::model::{SchedFlags, SchedulerKind, ServiceKey, ServiceSpec};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// The configuration: the virtual servers, and the notes and warnings to log.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub services: Vec<VirtualServer>,
    /// The `vrrp_instance` and `vrrp_script` blocks and global_defs' VRRP settings.
    pub vrrp: VrrpConfig,
    /// Skipped sections and accepted-but-ignored directives, each with its place.
    pub notes: Vec<Diag>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    pub pos: Pos,
    pub spec: ServiceSpec,
    pub quorum: u32,
    pub hysteresis: u32,
    pub sorry_server: Option<SorryServer>,
    pub real_servers: Vec<RealServer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SorryServer {
    pub endpoint: SocketAddr,
    /// `sorry_server_inhibit`: weight 0 instead of removal while not needed.
    pub inhibit: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    pub pos: Pos,
    pub endpoint: SocketAddr,
    pub weight: u32,
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    /// Failed: weight 0 (kept, connections drain) rather than removed.
    pub inhibit_on_failure: bool,
    pub checkers: Vec<Checker>,
}

/// When a checker runs, as keepalived resolves it for that checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub delay_loop: Duration,
    /// Further attempts after a failure before the checker is down.
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// Connect timeout (TCP_CHECK, HTTP_GET) or script timeout (MISC_CHECK).
    pub timeout: Duration,
    /// The first check starts at a random point within this.
    pub warmup: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checker {
    pub pos: Pos,
    pub kind: CheckKind,
    pub timing: Timing,
    /// Starts down until its first success.
    pub alpha: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Tcp(Connect),
    Http(HttpGet),
    Misc(MiscCheck),
}

impl CheckKind {
    /// keepalived's name of the checker.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp(_) => "TCP_CHECK",
            CheckKind::Http(_) => "HTTP_GET",
            CheckKind::Misc(_) => "MISC_CHECK",
        }
    }
}

/// Where a connecting checker connects, and from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    pub dst: SocketAddr,
    /// `bindto` (and `bind_port`): the local address to connect from.
    pub bind: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub connect: Connect,
    pub urls: Vec<Url>,
    /// `http_protocol 1.0`: HTTP/1.0 rather than HTTP/1.1 with `Connection: close`.
    pub http10: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub path: String,
    /// Lowercase hex MD5 of the body, as `genhash` prints it.
    pub digest: Option<String>,
    /// Accepted status codes as inclusive ranges; empty means 200-299.
    pub status: Vec<(u16, u16)>,
    /// The Host header; the connect address when not set.
    pub virtualhost: Option<String>,
}

impl Url {
    pub fn accepts(&self, code: u16) -> bool {
        if self.status.is_empty() {
            (200..=299).contains(&code)
        } else {
            self.status
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&code))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiscCheck {
    /// The program and its arguments, split as keepalived splits `misc_path`.
    pub argv: Vec<String>,
    /// Exit codes 2..=255 set the weight to code - 2.
    pub dynamic: bool,
}

/// Timers and flags a virtual or real server passes down to its checkers.
#[derive(Debug, Clone, Copy, Default)]
struct Inherited {
    delay_loop: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    connect_timeout: Option<Duration>,
    warmup: Option<Duration>,
    alpha: Option<bool>,
}

impl Inherited {
    /// `self`'s values where set, else `parent`'s.
    fn over(self, parent: Inherited) -> Inherited {
        Inherited {
            delay_loop: self.delay_loop.or(parent.delay_loop),
            retry: self.retry.or(parent.retry),
            delay_before_retry: self.delay_before_retry.or(parent.delay_before_retry),
            connect_timeout: self.connect_timeout.or(parent.connect_timeout),
            warmup: self.warmup.or(parent.warmup),
            alpha: self.alpha.or(parent.alpha),
        }
    }

    /// Reads the statement if it is one of the inherited timers; false if it is not one.
    fn read(&mut self, b: &mut Builder, n: &Node) -> bool {
        match n.keyword.as_str() {
            "delay_loop" => self.delay_loop = b.timer(n),
            "retry" => self.retry = b.unsigned(n, 0, u32::MAX),
            "delay_before_retry" => self.delay_before_retry = b.timer(n),
            "connect_timeout" => self.connect_timeout = b.timer(n),
            "warmup" => self.warmup = b.timer(n),
            "alpha" => self.alpha = b.flag(n),
            _ => return false,
        }
        true
    }
}

const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Top-level sections that are not the LVS part: skipped with a note.
const SKIPPED_SECTIONS: &[&str] = &[
    "global_defs",
    "vrrp_track_file",
    "vrrp_track_process",
    "track_file",
    "track_process",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "linkbeat_interfaces",
    "garp_group",
    "bfd_instance",
    "SSL",
    "net_namespace",
    "net_namespace_ipvs",
    "instance",
    "use_pid_dir",
];

/// Statements accepted with a warning: they change nothing rvs does.
const HARMLESS: &[(&str, &str)] = &[
    (
        "smtp_alert",
        "rvs-healthd sends no mail; transitions are logged",
    ),
    ("snmp_name", "rvs-healthd has no SNMP agent"),
    (
        "log_all_failures",
        "rvs-healthd logs every failure at debug level",
    ),
];

/// Checkers keepalived has and rvs-healthd does not.
const OTHER_CHECKERS: &[&str] = &[
    "SSL_GET",
    "SMTP_CHECK",
    "DNS_CHECK",
    "BFD_CHECK",
    "UDP_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
];

pub(super) struct Builder {
    errors: Vec<Diag>,
    notes: Vec<Diag>,
}

/// Builds the LVS model of a parsed configuration.
pub fn build(nodes: &[Node]) -> Result<Config, Errors> {
    let mut b = Builder {
        errors: Vec::new(),
        notes: Vec::new(),
    };
    let mut services: Vec<VirtualServer> = Vec::new();
    let mut vrrp_nodes = Vec::new();
    for n in nodes {
        match n.keyword.as_str() {
            "virtual_server" => {
                if let Some(vs) = b.virtual_server(n) {
                    if let Some(first) = services.iter().find(|s| s.spec.key == vs.spec.key) {
                        let msg = format!("virtual_server {} is already defined at {}", vs.spec.key, first.pos);
                        b.error(n, msg);
                    } else {
                        services.push(vs);
                    }
                }
            }
            "virtual_server_group" => b.error(
                n,
                "virtual_server_group is not supported by rvs-healthd: write one virtual_server per address and port",
            ),
            "vrrp_instance" | "vrrp_script" => vrrp_nodes.push(n),
            "vrrp_sync_group" => b.error(
                n,
                "vrrp_sync_group is not supported by rvs-healthd: each vrrp_instance fails over on its own",
            ),
            k if SKIPPED_SECTIONS.contains(&k) => {
                if k == "global_defs" {
                    vrrp_nodes.push(n);
                    b.note(n, "global_defs: rvs-healthd reads vrrp_version and lvs_sync_daemon only");
                } else {
                    b.note(n, format!("{k} skipped: rvs-healthd reads the LVS and VRRP parts only"));
                }
            }
            k => b.error(n, format!("unknown keyword {k:?}")),
        }
    }
    let vrrp = vrrp::build(&mut b, &vrrp_nodes);
    if b.errors.is_empty() {
        Ok(Config {
            services,
            vrrp,
            notes: b.notes,
        })
    } else {
        Err(Errors(b.errors))
    }
}

impl Builder {
    pub(super) fn error(&mut self, n: &Node, msg: impl Into<String>) {
        self.errors.push(Diag::at(&n.pos, msg));
    }

    pub(super) fn note(&mut self, n: &Node, msg: impl Into<String>) {
        self.notes.push(Diag::at(&n.pos, msg));
    }

    pub(super) fn no_block(&mut self, n: &Node) {
        if n.block.is_some() {
            self.error(n, format!("{} takes no block", n.keyword));
        }
    }

    /// The statement's only argument.
    pub(super) fn one(&mut self, n: &Node) -> Option<String> {
        self.no_block(n);
        match n.args.as_slice() {
            [a] => Some(a.text.clone()),
            _ => {
                self.error(n, format!("{} takes one value", n.keyword));
                None
            }
        }
    }

    pub(super) fn unsigned(&mut self, n: &Node, min: u32, max: u32) -> Option<u32> {
        let v = self.one(n)?;
        match v.parse::<u32>() {
            Ok(x) if (min..=max).contains(&x) => Some(x),
            _ => {
                self.error(
                    n,
                    format!("{} {v:?}: not a number in {min}..={max}", n.keyword),
                );
                None
            }
        }
    }

    /// keepalived's TIMER: seconds, with up to six decimals.
    pub(super) fn timer(&mut self, n: &Node) -> Option<Duration> {
        let v = self.one(n)?;
        match parse_timer(&v) {
            Some(d) => Some(d),
            None => {
                self.error(n, format!("{} {v:?}: not a time in seconds", n.keyword));
                None
            }
        }
    }

    /// A flag: bare, or with on/off, true/false, yes/no.
    pub(super) fn flag(&mut self, n: &Node) -> Option<bool> {
        self.no_block(n);
        match n.arg_texts().as_slice() {
            [] => Some(true),
            [v] => match v.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" => Some(true),
                "off" | "false" | "no" => Some(false),
                _ => {
                    self.error(
                        n,
                        format!("{} {v:?}: expected on/off, true/false or yes/no", n.keyword),
                    );
                    None
                }
            },
            _ => {
                self.error(n, format!("{} takes at most one value", n.keyword));
                None
            }
        }
    }

    /// An IPv4 or IPv6 address (virtual and real servers, checkers' `connect_ip`, `bindto`,
    /// VRRP's `unicast_src_ip` and `unicast_peer`).
    pub(super) fn ip_addr(&mut self, n: &Node, text: &str) -> Option<IpAddr> {
        match text.parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(n, format!("{text:?} is not an IP address"));
                None
            }
        }
    }

    fn port(&mut self, n: &Node, text: &str) -> Option<u16> {
        match text.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => {
                self.error(n, format!("{text:?} is not a port"));
                None
            }
        }
    }

    /// `IP PORT` after the keyword (the port optional when `default_port` is given).
    fn endpoint(&mut self, n: &Node, default_port: Option<u16>) -> Option<SocketAddr> {
        let args = n.arg_texts();
        let (a, p) = match (args.as_slice(), default_port) {
            ([a, p], _) => (*a, self.port(n, p)?),
            ([a], Some(p)) => (*a, p),
            _ => {
                self.error(n, format!("{} takes an address and a port", n.keyword));
                return None;
            }
        };
        Some(SocketAddr::new(self.ip_addr(n, a)?, p))
    }

    /// NAT accepted; DR and TUN refused with the line.
    fn forwarding(&mut self, n: &Node) {
        let Some(m) = self.one(n) else { return };
        match m.as_str() {
            "NAT" => {}
            "DR" | "TUN" => self.error(
                n,
                format!(
                    "{} {m}: rvs forwards by NAT only (LVS-NAT); DR and TUN are not supported",
                    n.keyword
                ),
            ),
            _ => self.error(n, format!("{} {m:?}: expected NAT, DR or TUN", n.keyword)),
        }
    }

    /// A harmless directive: warned; true if it was one.
    pub(super) fn harmless(&mut self, n: &Node) -> bool {
        match HARMLESS.iter().find(|(k, _)| *k == n.keyword) {
            Some((k, why)) => {
                self.note(n, format!("{k} ignored: {why}"));
                true
            }
            None => false,
        }
    }

    pub(super) fn unknown(&mut self, n: &Node, within: &str) {
        self.error(
            n,
            format!(
                "{:?} is not supported in {within} by rvs-healthd (see docs/keepalived.md)",
                n.keyword
            ),
        );
    }

    fn virtual_server(&mut self, n: &Node) -> Option<VirtualServer> {
        let args = n.arg_texts();
        match args.first().copied() {
            Some("group") => {
                self.error(n, "virtual_server group is not supported by rvs-healthd: write one virtual_server per address and port");
                return None;
            }
            Some("fwmark") => {
                self.error(
                    n,
                    "virtual_server fwmark is not supported: rvs has no firewall-mark services",
                );
                return None;
            }
            _ => {}
        }
        let endpoint = self.endpoint(n, None);
        let Some(block) = &n.block else {
            self.error(n, "virtual_server needs a block");
            return None;
        };
        let mut timers = Inherited::default();
        let mut scheduler = None;
        let mut protocol = control::model::Protocol::Tcp;
        let mut persistence = None;
        let v6 = endpoint.is_some_and(|e| e.is_ipv6());
        let mut netmask = if v6 {
            control::model::Netmask::V6(128)
        } else {
            control::model::default_netmask()
        };
        let mut sched_flags = SchedFlags::default();
        let mut ops = false;
        let mut quorum = 1;
        let mut hysteresis = 0;
        let mut sorry: Option<&Node> = None;
        let mut sorry_inhibit = false;
        let mut inhibit = false;
        let mut weight = 1;
        let mut rs_nodes = Vec::new();
        for s in block {
            if timers.read(self, s) {
                continue;
            }
            match s.keyword.as_str() {
                "lb_algo" | "lvs_sched" => {
                    let Some(name) = self.one(s) else { continue };
                    match SchedulerKind::from_name(&name) {
                        Some(k) => scheduler = Some(k),
                        None => self.error(s, format!("{} {name:?}: rvs has the schedulers rr, wrr, lc, wlc, sed, nq, sh, dh and mh", s.keyword)),
                    }
                }
                "lb_kind" | "lvs_method" => self.forwarding(s),
                "persistence_timeout" => {
                    self.no_block(s);
                    persistence = if s.args.is_empty() {
                        Some(360)
                    } else {
                        self.unsigned(s, 1, 2_678_400)
                    };
                }
                "persistence_granularity" => {
                    if let Some(m) = self.one(s) {
                        // IPv6: a prefix length, as ipvsadm's -M and keepalived take it.
                        match (v6, parse_netmask(&m), m.parse::<u8>()) {
                            (true, _, Ok(len @ 1..=128)) => netmask = control::model::Netmask::V6(len),
                            (false, Some(mask), _) => netmask = control::model::Netmask::V4(mask),
                            (true, ..) => self.error(s, format!("persistence_granularity {m:?}: expected a prefix length (1-128) for an IPv6 virtual_server")),
                            (false, ..) => self.error(s, format!("persistence_granularity {m:?}: expected a netmask or a prefix length")),
                        }
                    }
                }
                "protocol" => match self.one(s).as_deref() {
                    Some("TCP") => protocol = control::model::Protocol::Tcp,
                    Some("UDP") => protocol = control::model::Protocol::Udp,
                    Some(p) => self.error(s, format!("protocol {p:?}: rvs balances TCP and UDP")),
                    None => {}
                },
                "ops" => ops = self.flag(s).unwrap_or(false),
                f @ ("sh-port" | "sh-fallback" | "mh-port" | "mh-fallback") => {
                    self.no_block(s);
                    sched_flags.set(f);
                }
                "quorum" => quorum = self.unsigned(s, 1, u32::MAX).unwrap_or(quorum),
                "hysteresis" => hysteresis = self.unsigned(s, 0, u32::MAX).unwrap_or(hysteresis),
                "sorry_server" => {
                    self.no_block(s);
                    sorry = Some(s);
                }
                "sorry_server_inhibit" => sorry_inhibit = self.flag(s).unwrap_or(false),
                "sorry_server_lvs_method" => self.forwarding(s),
                "inhibit_on_failure" => inhibit = self.flag(s).unwrap_or(false),
                // keepalived: 1..; rvsd's weights end at 65535.
                "weight" => weight = self.unsigned(s, 1, 65535).unwrap_or(weight),
                "omega" => {
                    // keepalived's omega runs notify scripts at shutdown; rvs-healthd has none.
                    if self.flag(s).is_some() {
                        self.note(s, "omega: no notify scripts to run at shutdown (rvs-healthd refuses notify_*); services are removed on exit as keepalived does");
                    }
                }
                "real_server" => rs_nodes.push(s),
                _ if self.harmless(s) => {}
                _ => self.unknown(s, "virtual_server"),
            }
        }
        // Without a valid address the real servers are still checked, for their errors.
        let placeholder = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0);
        let scheduler = scheduler.unwrap_or_else(|| {
            self.note(n, "no lb_algo: wlc, keepalived's default");
            SchedulerKind::Wlc
        });
        if let Some(f) = sched_flags.incompatible_with(scheduler) {
            self.error(
                n,
                format!(
                    "{f} is a flag of the {} scheduler, not {scheduler}",
                    if f.starts_with("sh") { "sh" } else { "mh" }
                ),
            );
        }
        let timers = timers.over(Inherited {
            delay_loop: Some(DEFAULT_DELAY_LOOP),
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            ..Inherited::default()
        });
        let spec = ServiceSpec {
            key: ServiceKey {
                protocol,
                addr: endpoint.unwrap_or(placeholder).ip(),
                port: endpoint.unwrap_or(placeholder).port(),
            },
            scheduler,
            persistence,
            netmask,
            sched_flags,
            ops,
        };
        let real_servers: Vec<RealServer> = rs_nodes
            .into_iter()
            .filter_map(|r| self.real_server(r, timers, inhibit, weight))
            .collect();
        for (i, rs) in real_servers.iter().enumerate() {
            if let Some(first) = real_servers[..i].iter().find(|o| o.endpoint == rs.endpoint) {
                let msg = format!(
                    "real_server {} is already defined at {}",
                    rs.endpoint, first.pos
                );
                self.errors.push(Diag::at(&rs.pos, msg));
            }
        }
        let endpoint = endpoint?;
        for rs in &real_servers {
            if rs.endpoint.is_ipv6() != endpoint.is_ipv6() {
                let msg = format!(
                    "real_server {}: not of virtual_server {}'s address family (rvs NATs within a family)",
                    rs.endpoint, endpoint
                );
                self.errors.push(Diag::at(&rs.pos, msg));
            }
        }
        if let Some(why) = control::model::ops_refusal(&spec) {
            self.error(n, why);
        }
        let sorry_server = sorry.and_then(|s| {
            let ep = self.endpoint(s, Some(endpoint.port()))?;
            if ep.is_ipv6() != endpoint.is_ipv6() {
                self.error(
                    s,
                    format!("sorry_server {ep}: not of the virtual_server's address family"),
                );
            }
            if real_servers.iter().any(|r| r.endpoint == ep) {
                self.error(
                    s,
                    format!("sorry_server {ep} is also a real_server of this virtual_server"),
                );
            }
            Some(SorryServer {
                endpoint: ep,
                inhibit: sorry_inhibit,
            })
        });
        Some(VirtualServer {
            pos: n.pos.clone(),
            spec,
            quorum,
            hysteresis,
            sorry_server,
            real_servers,
        })
    }

    fn real_server(
        &mut self,
        n: &Node,
        parent: Inherited,
        vs_inhibit: bool,
        vs_weight: u32,
    ) -> Option<RealServer> {
        let endpoint = self.endpoint(n, None);
        let mut timers = Inherited::default();
        let mut weight = vs_weight;
        let mut inhibit = vs_inhibit;
        let mut upper = 0;
        let mut lower = 0;
        let mut checker_nodes = Vec::new();
        for s in n.block.as_deref().unwrap_or_default() {
            if timers.read(self, s) {
                continue;
            }
            match s.keyword.as_str() {
                "weight" => weight = self.unsigned(s, 0, 65535).unwrap_or(weight),
                "inhibit_on_failure" => inhibit = self.flag(s).unwrap_or(inhibit),
                "lvs_method" => self.forwarding(s),
                "uthreshold" => upper = self.unsigned(s, 0, u32::MAX).unwrap_or(0),
                "lthreshold" => lower = self.unsigned(s, 0, u32::MAX).unwrap_or(0),
                "TCP_CHECK" | "HTTP_GET" | "MISC_CHECK" => checker_nodes.push(s),
                k if OTHER_CHECKERS.contains(&k) => self.error(
                    s,
                    format!("{k} is not supported by rvs-healthd: TCP_CHECK, HTTP_GET and MISC_CHECK are"),
                ),
                "notify_up" | "notify_down" => self.error(
                    s,
                    format!("{} is not supported by rvs-healthd: transitions are logged; a MISC_CHECK can run a script", s.keyword),
                ),
                _ if self.harmless(s) => {}
                _ => self.unknown(s, "real_server"),
            }
        }
        if lower > upper {
            self.error(
                n,
                format!("lthreshold {lower} is larger than uthreshold {upper}"),
            );
        }
        let endpoint = endpoint?;
        let timers = timers.over(parent);
        let checkers = checker_nodes
            .into_iter()
            .filter_map(|c| self.checker(c, endpoint, timers, parent.delay_loop))
            .collect();
        Some(RealServer {
            pos: n.pos.clone(),
            endpoint,
            weight,
            upper_threshold: upper,
            lower_threshold: lower,
            inhibit_on_failure: inhibit,
            checkers,
        })
    }

    /// A checker of real server `rs`, under its settings `parent`; `vs_delay_loop` is the
    /// MISC_CHECK timeout when misc_timeout is 0 or missing, as keepalived's.
    fn checker(
        &mut self,
        n: &Node,
        rs: SocketAddr,
        parent: Inherited,
        vs_delay_loop: Option<Duration>,
    ) -> Option<Checker> {
        let kind = n.keyword.as_str();
        if !n.args.is_empty() {
            self.error(n, format!("{kind} takes no value"));
        }
        let mut timers = Inherited::default();
        let mut connect_ip = None;
        let mut connect_port = None;
        let mut bindto = None;
        let mut bind_port = None;
        let mut urls = Vec::new();
        let mut http10 = false;
        let mut virtualhost = None;
        let mut misc_argv = None;
        let mut misc_timeout = None;
        let mut dynamic = false;
        let connecting = kind != "MISC_CHECK";
        for s in n.block.as_deref().unwrap_or_default() {
            let k = s.keyword.as_str();
            if !connecting && k == "connect_timeout" {
                self.error(
                    s,
                    "connect_timeout is not an option of MISC_CHECK: misc_timeout is",
                );
                continue;
            }
            if timers.read(self, s) {
                continue;
            }
            match (k, kind) {
                ("connect_ip", _) if connecting => connect_ip = self.one(s).and_then(|a| self.ip_addr(s, &a)),
                ("connect_port", _) if connecting => connect_port = self.one(s).and_then(|p| self.port(s, &p)),
                ("bindto", _) if connecting => bindto = self.one(s).and_then(|a| self.ip_addr(s, &a)),
                ("bind_port", _) if connecting => bind_port = self.one(s).and_then(|p| self.port(s, &p)),
                ("bind_if" | "fwmark", _) if connecting => self.error(
                    s,
                    format!("{k} is not supported by rvs-healthd: checks leave through the kernel's routing"),
                ),
                ("nb_get_retry", "HTTP_GET") => {
                    timers.retry = self.unsigned(s, 0, u32::MAX);
                    self.note(s, "nb_get_retry is deprecated (keepalived says so too): read as retry");
                }
                ("url", "HTTP_GET") => {
                    if let Some(u) = self.url(s) {
                        urls.push(u);
                    }
                }
                ("virtualhost", "HTTP_GET") => virtualhost = self.one(s),
                ("http_protocol", "HTTP_GET") => match self.one(s).as_deref() {
                    Some("1.0") => http10 = true,
                    Some("1.1") => http10 = false,
                    Some(p) => self.error(s, format!("http_protocol {p:?}: rvs-healthd speaks 1.0 and 1.1")),
                    None => {}
                },
                ("misc_path", "MISC_CHECK") => {
                    self.no_block(s);
                    match s.arg_texts().as_slice() {
                        [cmd] => match split_command(cmd) {
                            Some(argv) if !argv.is_empty() => misc_argv = Some(argv),
                            _ => self.error(s, format!("misc_path {cmd:?}: unbalanced quotes or empty")),
                        },
                        _ => self.error(s, "misc_path takes one value: quote a command line with arguments"),
                    }
                }
                ("misc_timeout", "MISC_CHECK") => {
                    misc_timeout = self.unsigned(s, 0, u32::MAX).map(|t| Duration::from_secs(t.into()))
                }
                ("misc_dynamic", "MISC_CHECK") => dynamic = self.flag(s).unwrap_or(false),
                ("user", "MISC_CHECK") => self.error(
                    s,
                    "user is not supported by rvs-healthd: scripts run as rvs-healthd's user",
                ),
                _ if self.harmless(s) => {}
                _ => self.unknown(s, kind),
            }
        }
        let (default_retry, default_dbr) = match kind {
            "HTTP_GET" => (1, Duration::from_secs(3)),
            "MISC_CHECK" => (0, Duration::from_secs(1)),
            _ => (1, Duration::from_secs(1)),
        };
        let t = timers.over(parent);
        let delay_loop = t.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
        let connect = Connect {
            dst: SocketAddr::new(
                connect_ip.unwrap_or(rs.ip()),
                connect_port.unwrap_or(rs.port()),
            ),
            bind: bindto.map(|a| SocketAddr::new(a, bind_port.unwrap_or(0))),
        };
        if connect
            .bind
            .is_some_and(|b| b.is_ipv6() != connect.dst.is_ipv6())
        {
            self.error(
                n,
                format!("bindto is not of {}'s address family", connect.dst),
            );
        }
        if bind_port.is_some() && bindto.is_none() {
            self.error(n, "bind_port needs bindto");
        }
        let check = match kind {
            "TCP_CHECK" => CheckKind::Tcp(connect),
            "HTTP_GET" => {
                if urls.is_empty() {
                    self.error(n, "HTTP_GET needs at least one url block");
                    return None;
                }
                for u in &mut urls {
                    if u.virtualhost.is_none() {
                        u.virtualhost.clone_from(&virtualhost);
                    }
                }
                CheckKind::Http(HttpGet {
                    connect,
                    urls,
                    http10,
                })
            }
            _ => {
                let Some(argv) = misc_argv else {
                    self.error(n, "MISC_CHECK needs misc_path");
                    return None;
                };
                CheckKind::Misc(MiscCheck { argv, dynamic })
            }
        };
        let timeout = match &check {
            // misc_timeout 0 or none: the virtual server's delay_loop, as keepalived.
            CheckKind::Misc(_) => misc_timeout
                .filter(|d| !d.is_zero())
                .unwrap_or(vs_delay_loop.unwrap_or(DEFAULT_DELAY_LOOP)),
            _ => t.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        };
        Some(Checker {
            pos: n.pos.clone(),
            kind: check,
            timing: Timing {
                delay_loop,
                retry: t.retry.unwrap_or(default_retry),
                delay_before_retry: t.delay_before_retry.unwrap_or(default_dbr),
                timeout,
                warmup: t.warmup.unwrap_or(delay_loop),
            },
            alpha: t.alpha.unwrap_or(false),
        })
    }

    fn url(&mut self, n: &Node) -> Option<Url> {
        let mut path = None;
        let mut digest = None;
        let mut status = Vec::new();
        let mut virtualhost = None;
        if !n.args.is_empty() {
            self.error(n, "url takes no value, only a block");
        }
        for s in n.block.as_deref().unwrap_or_default() {
            match s.keyword.as_str() {
                "path" => path = self.one(s),
                "digest" => {
                    if let Some(d) = self.one(s) {
                        if d.len() == 32 && d.bytes().all(|c| c.is_ascii_hexdigit()) {
                            digest = Some(d.to_ascii_lowercase());
                        } else {
                            self.error(
                                s,
                                format!("digest {d:?}: expected 32 hex digits (genhash's MD5)"),
                            );
                        }
                    }
                }
                "status_code" => {
                    self.no_block(s);
                    if s.args.is_empty() {
                        self.error(s, "status_code takes codes or ranges (200, 200-299)");
                    }
                    for a in s.arg_texts() {
                        match parse_status(a) {
                            Some(r) => status.push(r),
                            None => self.error(s, format!("status_code {a:?}: expected a code or a range of codes (100..=999)")),
                        }
                    }
                }
                "virtualhost" => virtualhost = self.one(s),
                _ => self.unknown(s, "url"),
            }
        }
        let Some(path) = path else {
            self.error(n, "url needs a path");
            return None;
        };
        Some(Url {
            path,
            digest,
            status,
            virtualhost,
        })
    }
}

/// Seconds with up to six decimals ("5", "0.5").
pub fn parse_timer(v: &str) -> Option<Duration> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty()
        || !whole.bytes().all(|c| c.is_ascii_digit())
        || frac.len() > 6
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    let micros: u32 = format!("{frac:0<6}").parse().ok()?;
    Some(Duration::from_secs(secs) + Duration::from_micros(micros.into()))
}

fn parse_netmask(v: &str) -> Option<Ipv4Addr> {
    if let Ok(m) = v.parse::<Ipv4Addr>() {
        let bits = u32::from(m);
        return (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(m);
    }
    let len: u32 = v.parse().ok().filter(|l| (1..=32).contains(l))?;
    Some(Ipv4Addr::from(u32::MAX << (32 - len)))
}

fn parse_status(v: &str) -> Option<(u16, u16)> {
    let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=999).contains(c));
    match v.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (code(a)?, code(b)?);
            (a <= b).then_some((a, b))
        }
        None => code(v).map(|c| (c, c)),
    }
}

/// Splits a command line into words as keepalived splits `misc_path`'s value: spaces separate,
/// `'...'` and `"..."` group, `\` escapes the next character. `None` on an open quote.
pub fn split_command(cmd: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut quote: Option<char> = None;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') | (None, '\\') => {
                word.push(chars.next().unwrap_or('\\'));
                started = true;
            }
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if started {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::testing::{errors, load, S};

    #[test]
    fn every_supported_directive() {
        let cfg = load(
            r#"! a full example
global_defs {
    router_id LVS_TEST
}
static_ipaddress {
    192.0.2.1/24 dev eth0
}
virtual_server 198.51.100.10 80 {
    delay_loop 10
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    protocol TCP
    quorum 3
    hysteresis 1
    alpha
    omega
    retry 4
    delay_before_retry 2.5
    connect_timeout 7
    warmup 0
    inhibit_on_failure
    sorry_server 203.0.113.100 8080
    sorry_server_inhibit
    sorry_server_lvs_method NAT
    smtp_alert

    real_server 203.0.113.2 80 {
        weight 3
        uthreshold 100
        lthreshold 10
        lvs_method NAT
        TCP_CHECK {
            connect_port 8080
            connect_ip 203.0.113.3
            bindto 203.0.113.1
            bind_port 40000
            connect_timeout 2
            retry 2
            delay_before_retry 1
        }
    }
    real_server 203.0.113.6 80 {
        inhibit_on_failure off
        alpha no
        delay_loop 5
        HTTP_GET {
            url {
                path /health
                digest 9B3A0C85A887A256D6939DA88AABD8CD
                status_code 200 300-302
            }
            url {
                path /
                virtualhost www.example.org
            }
            nb_get_retry 5
            http_protocol 1.0
            virtualhost lb.example.org
        }
        MISC_CHECK {
            misc_path "/usr/local/bin/check 'one arg' two"
            misc_timeout 4
            misc_dynamic
        }
    }
}
virtual_server 198.51.100.10 53 {
    protocol UDP
    lb_algo sh
    sh-port
    ops
    real_server 203.0.113.2 53 {
        MISC_CHECK {
            misc_path /bin/true
        }
    }
}
"#,
        );
        assert_eq!(cfg.services.len(), 2);
        let vs = &cfg.services[0];
        assert_eq!(vs.spec.key.to_string(), "TCP 198.51.100.10:80");
        assert_eq!(vs.spec.scheduler, SchedulerKind::Wrr);
        assert_eq!(vs.spec.persistence, Some(600));
        assert_eq!(
            vs.spec.netmask,
            control::model::Netmask::V4(Ipv4Addr::new(255, 255, 255, 0))
        );
        assert_eq!((vs.quorum, vs.hysteresis), (3, 1));
        assert_eq!(
            vs.sorry_server,
            Some(SorryServer {
                endpoint: "203.0.113.100:8080".parse().unwrap(),
                inhibit: true
            })
        );
        let rs1 = &vs.real_servers[0];
        assert_eq!(
            (rs1.weight, rs1.upper_threshold, rs1.lower_threshold),
            (3, 100, 10)
        );
        assert!(rs1.inhibit_on_failure, "inherited from the virtual server");
        let tcp = &rs1.checkers[0];
        assert_eq!(
            tcp.kind,
            CheckKind::Tcp(Connect {
                dst: "203.0.113.3:8080".parse().unwrap(),
                bind: Some("203.0.113.1:40000".parse().unwrap()),
            })
        );
        assert_eq!(
            tcp.timing,
            Timing {
                delay_loop: S(10),
                retry: 2,
                delay_before_retry: S(1),
                timeout: S(2),
                warmup: S(0),
            }
        );
        assert!(tcp.alpha, "alpha inherited from the virtual server");
        let rs2 = &vs.real_servers[1];
        assert!(!rs2.inhibit_on_failure);
        let http = &rs2.checkers[0];
        let CheckKind::Http(h) = &http.kind else {
            panic!("{http:?}")
        };
        assert!(h.http10);
        assert_eq!(h.connect.dst, "203.0.113.6:80".parse().unwrap());
        assert_eq!(
            h.urls[0].digest.as_deref(),
            Some("9b3a0c85a887a256d6939da88aabd8cd")
        );
        assert_eq!(h.urls[0].status, [(200, 200), (300, 302)]);
        assert_eq!(h.urls[0].virtualhost.as_deref(), Some("lb.example.org"));
        assert_eq!(h.urls[1].virtualhost.as_deref(), Some("www.example.org"));
        assert!(h.urls[1].accepts(204) && !h.urls[1].accepts(301));
        assert_eq!(
            http.timing,
            Timing {
                delay_loop: S(5),
                retry: 5,
                delay_before_retry: Duration::from_millis(2500),
                timeout: S(7),
                warmup: S(0),
            }
        );
        assert!(!http.alpha);
        let misc = &rs2.checkers[1];
        assert_eq!(
            misc.kind,
            CheckKind::Misc(MiscCheck {
                argv: vec![
                    "/usr/local/bin/check".into(),
                    "one arg".into(),
                    "two".into()
                ],
                dynamic: true
            })
        );
        assert_eq!(misc.timing.timeout, S(4));
        assert_eq!(misc.timing.retry, 4, "the virtual server's retry");

        let udp = &cfg.services[1];
        assert_eq!(udp.spec.key.to_string(), "UDP 198.51.100.10:53");
        assert!(udp.spec.ops && udp.spec.sched_flags.sh_port);

        let notes: Vec<String> = cfg.notes.iter().map(Diag::to_string).collect();
        assert!(
            notes[0].starts_with("k.conf:2: global_defs: rvs-healthd reads vrrp_version"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("k.conf:5: static_ipaddress skipped"),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.starts_with("k.conf:18: omega")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("k.conf:27: smtp_alert ignored")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("nb_get_retry is deprecated")),
            "{notes:?}"
        );
    }

    #[test]
    fn keepalived_defaults() {
        let cfg = load(
            "virtual_server 198.51.100.10 80 {
  real_server 203.0.113.2 80 {
    TCP_CHECK {
    }
    HTTP_GET {
      url { path / }
    }
    MISC_CHECK {
      misc_path /bin/true
    }
  }
  sorry_server 203.0.113.100
}
",
        );
        let vs = &cfg.services[0];
        assert_eq!(vs.spec.scheduler, SchedulerKind::Wlc);
        assert_eq!(vs.spec.persistence, None);
        assert_eq!((vs.quorum, vs.hysteresis), (1, 0));
        assert_eq!(
            vs.sorry_server.unwrap().endpoint,
            "203.0.113.100:80".parse().unwrap(),
            "the virtual port"
        );
        let rs = &vs.real_servers[0];
        assert_eq!(rs.weight, 1);
        assert!(!rs.inhibit_on_failure);
        let t: Vec<Timing> = rs.checkers.iter().map(|c| c.timing).collect();
        let timing = |retry, dbr, timeout| Timing {
            delay_loop: S(60),
            retry,
            delay_before_retry: S(dbr),
            timeout: S(timeout),
            warmup: S(60),
        };
        assert_eq!(t, [timing(1, 1, 5), timing(1, 3, 5), timing(0, 1, 60)]);
        assert!(rs.checkers.iter().all(|c| !c.alpha));
        let CheckKind::Http(h) = &rs.checkers[1].kind else {
            panic!()
        };
        assert!(h.urls[0].status.is_empty() && h.urls[0].accepts(200) && !h.urls[0].accepts(404));
        assert!(cfg
            .notes
            .iter()
            .any(|n| n.message.contains("no lb_algo: wlc")));
    }

    #[test]
    fn a_misc_check_without_timeout_gets_the_virtual_servers_delay_loop() {
        let cfg = load(
            "virtual_server 198.51.100.10 80 {\n delay_loop 7\n real_server 203.0.113.2 80 {\n delay_loop 3\n MISC_CHECK { misc_path /bin/true\n misc_timeout 0 }\n }\n}\n",
        );
        let c = &cfg.services[0].real_servers[0].checkers[0];
        assert_eq!((c.timing.timeout, c.timing.delay_loop), (S(7), S(3)));
        let e = errors("virtual_server 198.51.100.10 80 {\n weight 0\n}\n");
        assert_eq!(e, ["k.conf:2: weight \"0\": not a number in 1..=65535"]);
    }

    #[test]
    fn ipv6_virtual_and_real_servers_are_checked_as_ipv4_ones() {
        let cfg = load(
            "virtual_server 2001:db8:100::1 80 {
  lb_algo rr
  persistence_timeout 60
  persistence_granularity 64
  sorry_server 2001:db8:2::99 8080
  real_server 2001:db8:2::2 80 {
    TCP_CHECK { bindto 2001:db8:2::1 }
  }
  real_server 2001:db8:2::3 80 {
    HTTP_GET {
      url { path / }
      connect_port 8080
    }
  }
}
",
        );
        let vs = &cfg.services[0];
        assert_eq!(
            vs.spec.key.addr,
            "2001:db8:100::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(vs.spec.netmask, control::model::Netmask::V6(64));
        let ep = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            vs.sorry_server.unwrap().endpoint,
            ep("[2001:db8:2::99]:8080")
        );
        let rs = &vs.real_servers;
        assert_eq!(rs[0].endpoint, ep("[2001:db8:2::2]:80"));
        let CheckKind::Tcp(c) = &rs[0].checkers[0].kind else {
            panic!("{:?}", rs[0].checkers[0].kind);
        };
        assert_eq!(
            (c.dst, c.bind),
            (ep("[2001:db8:2::2]:80"), Some(ep("[2001:db8:2::1]:0")))
        );
        let CheckKind::Http(h) = &rs[1].checkers[0].kind else {
            panic!("{:?}", rs[1].checkers[0].kind);
        };
        assert_eq!(h.connect.dst, ep("[2001:db8:2::3]:8080"));
        // Without persistence_granularity: the whole address, /128.
        let cfg = load("virtual_server 2001:db8:100::1 80 {\n lb_algo rr\n}\n");
        assert_eq!(
            cfg.services[0].spec.netmask,
            control::model::Netmask::V6(128)
        );
        // One family per virtual server: NAT does not translate between them.
        let e = errors(
            "virtual_server 2001:db8:100::1 80 {
  lb_algo rr
  sorry_server 203.0.113.200 80
  real_server 203.0.113.2 80 {
    TCP_CHECK { bindto 2001:db8:2::1 }
  }
  real_server 2001:db8:2::2 80 {
    TCP_CHECK { bindto 203.0.113.1 }
  }
  real_server 2001:db8:2::3 80 {
    TCP_CHECK { connect_ip nonsense }
  }
}
",
        );
        assert_eq!(
            e,
            [
                // In the order found: the checkers' with their real servers, then the family
                // of each real server, then the sorry server.
                "k.conf:5: bindto is not of 203.0.113.2:80's address family",
                "k.conf:8: bindto is not of [2001:db8:2::2]:80's address family",
                "k.conf:11: \"nonsense\" is not an IP address",
                "k.conf:4: real_server 203.0.113.2:80: not of virtual_server [2001:db8:100::1]:80's address family (rvs NATs within a family)",
                "k.conf:3: sorry_server 203.0.113.200:80: not of the virtual_server's address family",
            ]
        );
    }

    #[test]
    fn refusals_name_their_line() {
        let e = errors(
            "virtual_server 198.51.100.10 80 {
  lb_kind DR
  lb_algo lblc
  persistence_engine sip
  real_server 203.0.113.2 80 {
    lvs_method TUN
    notify_up /bin/true
    SSL_GET { }
    TCP_CHECK {
      bind_if eth0
      frobnicate 1
    }
    MISC_CHECK { misc_timeout 3 }
    HTTP_GET { regex x }
  }
}
virtual_server group G1 { }
virtual_server fwmark 1 { }
virtual_server 2001:db8::1 80 { persistence_granularity 255.255.255.0 }
virtual_server_group G1 { }
frobnicate
",
        );
        let want = [
            "k.conf:2: lb_kind DR: rvs forwards by NAT only (LVS-NAT); DR and TUN are not supported",
            "k.conf:3: lb_algo \"lblc\": rvs has the schedulers rr, wrr, lc, wlc, sed, nq, sh, dh and mh",
            "k.conf:4: \"persistence_engine\" is not supported in virtual_server by rvs-healthd (see docs/keepalived.md)",
            "k.conf:6: lvs_method TUN: rvs forwards by NAT only (LVS-NAT); DR and TUN are not supported",
            "k.conf:7: notify_up is not supported by rvs-healthd: transitions are logged; a MISC_CHECK can run a script",
            "k.conf:8: SSL_GET is not supported by rvs-healthd: TCP_CHECK, HTTP_GET and MISC_CHECK are",
            "k.conf:10: bind_if is not supported by rvs-healthd: checks leave through the kernel's routing",
            "k.conf:11: \"frobnicate\" is not supported in TCP_CHECK by rvs-healthd (see docs/keepalived.md)",
            "k.conf:13: MISC_CHECK needs misc_path",
            "k.conf:14: \"regex\" is not supported in HTTP_GET by rvs-healthd (see docs/keepalived.md)",
            "k.conf:14: HTTP_GET needs at least one url block",
            "k.conf:17: virtual_server group is not supported by rvs-healthd: write one virtual_server per address and port",
            "k.conf:18: virtual_server fwmark is not supported: rvs has no firewall-mark services",
            "k.conf:19: persistence_granularity \"255.255.255.0\": expected a prefix length (1-128) for an IPv6 virtual_server",
            "k.conf:20: virtual_server_group is not supported by rvs-healthd: write one virtual_server per address and port",
            "k.conf:21: unknown keyword \"frobnicate\"",
        ];
        assert_eq!(e, want);
    }

    #[test]
    fn bad_values_name_their_line() {
        let e = errors(
            "virtual_server 198.51.100.10 http {
  delay_loop soon
  quorum 0
  protocol SCTP
  persistence_granularity 255.0.255.0
  real_server 203.0.113.2 80 {
    weight 70000
    HTTP_GET {
      url { path /\n digest abc\n status_code 99 }
    }
  }
  real_server 203.0.113.2 80 { }
}
",
        );
        let want = [
            "k.conf:1: \"http\" is not a port",
            "k.conf:2: delay_loop \"soon\": not a time in seconds",
            "k.conf:3: quorum \"0\": not a number in 1..=4294967295",
            "k.conf:4: protocol \"SCTP\": rvs balances TCP and UDP",
            "k.conf:5: persistence_granularity \"255.0.255.0\": expected a netmask or a prefix length",
            "k.conf:7: weight \"70000\": not a number in 0..=65535",
            "k.conf:10: digest \"abc\": expected 32 hex digits (genhash's MD5)",
            "k.conf:11: status_code \"99\": expected a code or a range of codes (100..=999)",
            "k.conf:14: real_server 203.0.113.2:80 is already defined at k.conf:6",
        ];
        assert_eq!(e, want);
        let e = errors(
            "virtual_server 198.51.100.10 80 {\n real_server 203.0.113.2 80 { }\n real_server 203.0.113.2 80 { }\n}\nvirtual_server 198.51.100.10 80 { }\n",
        );
        assert_eq!(
            e,
            [
                "k.conf:3: real_server 203.0.113.2:80 is already defined at k.conf:2",
                "k.conf:5: virtual_server TCP 198.51.100.10:80 is already defined at k.conf:1",
            ]
        );
    }

    #[test]
    fn timers_and_commands() {
        assert_eq!(parse_timer("5"), Some(S(5)));
        assert_eq!(parse_timer("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_timer("1.000001"),
            Some(Duration::from_micros(1_000_001))
        );
        for bad in ["", ".5", "1.0000001", "-1", "1e3", "x"] {
            assert_eq!(parse_timer(bad), None, "{bad:?}");
        }
        assert_eq!(parse_netmask("24"), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(parse_netmask("0"), None);
        assert_eq!(
            split_command(r#"/bin/sh -c "exit 3" 'a b' c\ d"#).unwrap(),
            ["/bin/sh", "-c", "exit 3", "a b", "c d"]
        );
        assert_eq!(split_command("'open"), None);
    }
}
