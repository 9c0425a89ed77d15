//! keepalived.conf's VRRP part as rvs-healthd runs it (VRRPv3, IPv4 or IPv6), with keepalived
//! 2.2.7's keywords and defaults (keepalived/vrrp/vrrp_parser.c, vrrp.c):
//!
//! | what | default |
//! |---|---|
//! | `version` (global_defs `vrrp_version`) | 2 in keepalived: rvs-healthd speaks 3 only, so one of them must say 3 |
//! | `priority` | 100; 255 with `state MASTER` and no priority |
//! | `state` | BACKUP (MASTER when priority is 255) |
//! | `advert_int` | 1 s, in centiseconds up to 40.95 |
//! | `virtual_ipaddress` | ADDR[/LEN] [dev IF]: /32 (IPv6: /128), the instance's `interface` |
//! | `vrrp_script` | interval 1 s, timeout: the interval, weight 0, rise 1, fall 1 |
//!
//! keepalived's own adjustments are made here with a note: `nopreempt` and `preempt_delay`
//! with `state MASTER` are cleared, `nopreempt` and `preempt_delay` at priority 255 too.
//! Anything else unknown inside `vrrp_instance` or `vrrp_script` is refused with its line.
//!
//! An instance is IPv4 or IPv6, as in keepalived: the family of its first `virtual_ipaddress`
//! (IPv6: adverts to ff02::12 from the interface's link-local address); an address of the other
//! family in the same instance is refused with its line, and so are `unicast_src_ip` and
//! `unicast_peer` in an IPv6 instance (rvsd carries IPv6 adverts to ff02::12 only) and of the
//! other family in an IPv4 one.

use super::model::{split_command, Builder};
use super::tree::Node;
use super::Pos;
use control::config::IpCidr;
use std::net::IpAddr;
use std::time::Duration;

/// The VRRP part of the configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VrrpConfig {
    pub instances: Vec<Instance>,
    pub scripts: Vec<Script>,
    /// global_defs `lvs_sync_daemon IF INSTANCE [id N]`.
    pub sync_daemon: Option<SyncDaemon>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub pos: Pos,
    pub name: String,
    /// `interface`: the kernel interface the adverts use (an rvsd port's kernel twin).
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    /// `advert_int` in centiseconds.
    pub interval_cs: u16,
    /// Preempt_Mode (false with `nopreempt`).
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub addrs: Vec<VirtualAddr>,
    pub tracks: Vec<Track>,
    pub notify: Notify,
    /// `unicast_src_ip`: the source of our adverts (else the interface's first IPv4 address,
    /// or its IPv6 link-local address).
    pub unicast_src: Option<IpAddr>,
    /// `unicast_peer { ... }`: adverts go to each peer instead of 224.0.0.18 (ff02::12).
    pub unicast_peers: Vec<IpAddr>,
}

impl Instance {
    /// An IPv6 instance (its addresses are IPv6; none are of the other family).
    pub fn is_ipv6(&self) -> bool {
        self.addrs.first().is_some_and(|a| a.cidr.is_ipv6())
    }
}

/// One `virtual_ipaddress` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualAddr {
    pub cidr: IpCidr,
    /// `dev`: the interface (kernel twin) that holds it.
    pub dev: String,
}

/// One `track_script` line, its weight resolved (the line's, else the script's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Index into [`VrrpConfig::scripts`].
    pub script: usize,
    /// Added to the priority while the script is good (> 0) or failed (< 0); 0: failed means
    /// FAULT.
    pub weight: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub pos: Pos,
    pub name: String,
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub weight: i32,
    /// Successes in a row that make a failed script good.
    pub rise: u32,
    /// Failures in a row that make a good script failed.
    pub fall: u32,
}

/// The notify scripts: each runs on entering its state; `any` runs on every change with
/// keepalived's arguments `INSTANCE NAME STATE PRIORITY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    pub any: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDaemon {
    pub interface: String,
    /// The vrrp_instance whose state decides the sync role.
    pub instance: String,
    pub syncid: Option<u8>,
}

const DEFAULT_PRIORITY: u8 = 100;
const DEFAULT_INTERVAL_CS: u16 = 100;
/// keepalived's default protocol version; rvs-healthd needs 3.
const KEEPALIVED_DEFAULT_VERSION: u8 = 2;

/// Statements inside `vrrp_instance` accepted with a note: nothing for rvs-healthd to do.
const HARMLESS_IN_INSTANCE: &[(&str, &str)] = &[
    (
        "smtp_alert",
        "rvs-healthd sends no mail; transitions are logged",
    ),
    (
        "garp_master_delay",
        "rvsd sends the gratuitous ARPs when it takes the addresses",
    ),
    (
        "garp_master_repeat",
        "rvsd sends the gratuitous ARPs when it takes the addresses",
    ),
    (
        "dont_track_primary",
        "rvs-healthd does not track the interface's link",
    ),
];

/// Reads the `vrrp_instance`, `vrrp_script` and `global_defs` nodes.
pub(super) fn build(b: &mut Builder, nodes: &[&Node]) -> VrrpConfig {
    let mut cfg = VrrpConfig::default();
    let mut default_version = KEEPALIVED_DEFAULT_VERSION;
    let mut sync_node = None;
    for n in nodes.iter().filter(|n| n.keyword == "global_defs") {
        for s in n.block.iter().flatten() {
            match s.keyword.as_str() {
                "vrrp_version" => {
                    if let Some(v) = b.unsigned(s, 2, 3) {
                        default_version = v as u8;
                    }
                }
                "lvs_sync_daemon" => sync_node = Some(s),
                _ => {}
            }
        }
    }
    for n in nodes.iter().filter(|n| n.keyword == "vrrp_script") {
        if let Some(s) = script(b, n) {
            match cfg.scripts.iter().find(|x| x.name == s.name) {
                Some(first) => {
                    let msg = format!("vrrp_script {} is already defined at {}", s.name, first.pos);
                    b.error(n, msg);
                }
                None => cfg.scripts.push(s),
            }
        }
    }
    for n in nodes.iter().filter(|n| n.keyword == "vrrp_instance") {
        if let Some(i) = instance(b, n, default_version, &cfg.scripts) {
            if let Some(first) = cfg.instances.iter().find(|x| x.name == i.name) {
                let msg = format!(
                    "vrrp_instance {} is already defined at {}",
                    i.name, first.pos
                );
                b.error(n, msg);
            } else if let Some(other) = cfg
                .instances
                .iter()
                .find(|x| x.vrid == i.vrid && x.interface == i.interface)
            {
                let msg = format!(
                    "virtual_router_id {} on {} is already vrrp_instance {}'s",
                    i.vrid, i.interface, other.name
                );
                b.error(n, msg);
            } else {
                cfg.instances.push(i);
            }
        }
    }
    if let Some(s) = sync_node {
        cfg.sync_daemon = sync_daemon(b, s, &cfg.instances);
    }
    cfg
}

fn sync_daemon(b: &mut Builder, n: &Node, instances: &[Instance]) -> Option<SyncDaemon> {
    b.no_block(n);
    let args = n.arg_texts();
    let [interface, instance, rest @ ..] = args.as_slice() else {
        b.error(
            n,
            "lvs_sync_daemon takes an interface and a vrrp_instance name",
        );
        return None;
    };
    if !instances.iter().any(|i| i.name == *instance) {
        b.error(
            n,
            format!("lvs_sync_daemon: {instance:?} is not a vrrp_instance"),
        );
        return None;
    }
    let mut syncid = None;
    let mut i = 0;
    while i < rest.len() {
        match (rest[i], rest.get(i + 1)) {
            ("id", Some(v)) => match v.parse::<u8>() {
                Ok(id) => syncid = Some(id),
                Err(_) => b.error(
                    n,
                    format!("lvs_sync_daemon id {v:?}: not a number in 0..=255"),
                ),
            },
            ("maxlen" | "port" | "ttl" | "group", Some(_)) => {
                b.note(
                    n,
                    format!(
                        "lvs_sync_daemon {}: rvsd's own sync settings apply",
                        rest[i]
                    ),
                );
            }
            (w, _) => {
                b.error(
                    n,
                    format!(
                        "lvs_sync_daemon: {w:?} is not id, maxlen, port, ttl or group with a value"
                    ),
                );
                return None;
            }
        }
        i += 2;
    }
    Some(SyncDaemon {
        interface: interface.to_string(),
        instance: instance.to_string(),
        syncid,
    })
}

/// The name after `vrrp_instance` or `vrrp_script`, and its block.
fn named<'a>(b: &mut Builder, n: &'a Node) -> Option<(String, &'a [Node])> {
    let name = match n.arg_texts().as_slice() {
        [name] => name.to_string(),
        _ => {
            b.error(n, format!("{} takes one name", n.keyword));
            return None;
        }
    };
    match &n.block {
        Some(block) => Some((name, block)),
        None => {
            b.error(n, format!("{} needs a block", n.keyword));
            None
        }
    }
}

/// A script or notify command: one word, quoted when it has arguments (keepalived reads
/// further words as the user and group to run it as, which rvs-healthd does not switch to).
fn command(b: &mut Builder, n: &Node) -> Option<Vec<String>> {
    b.no_block(n);
    match n.arg_texts().as_slice() {
        [cmd] => match split_command(cmd) {
            Some(argv) if !argv.is_empty() => Some(argv),
            _ => {
                b.error(
                    n,
                    format!("{} {cmd:?}: unbalanced quotes or empty", n.keyword),
                );
                None
            }
        },
        [] => {
            b.error(n, format!("{} needs a command", n.keyword));
            None
        }
        _ => {
            b.error(n, format!("{}: a user and group to run as are not supported (scripts run as rvs-healthd's user); quote a command line with arguments", n.keyword));
            None
        }
    }
}

fn weight(b: &mut Builder, n: &Node, text: &str) -> Option<i32> {
    match text.parse::<i32>() {
        Ok(w) if (-253..=253).contains(&w) => Some(w),
        _ => {
            b.error(n, format!("weight {text:?}: not a number in -253..=253"));
            None
        }
    }
}

fn script(b: &mut Builder, n: &Node) -> Option<Script> {
    let (name, block) = named(b, n)?;
    let mut argv = None;
    let mut interval = Duration::from_secs(1);
    let mut timeout = None;
    let mut w = 0;
    let (mut rise, mut fall) = (1, 1);
    for s in block {
        match s.keyword.as_str() {
            "script" => argv = command(b, s),
            "interval" => interval = b.timer(s).unwrap_or(interval),
            "timeout" => timeout = b.timer(s),
            "weight" => match s.arg_texts().as_slice() {
                [v] => w = weight(b, s, v).unwrap_or(0),
                _ => b.error(s, "weight takes one value (reverse is not supported)"),
            },
            "rise" => rise = b.unsigned(s, 1, u32::MAX).unwrap_or(rise),
            "fall" => fall = b.unsigned(s, 1, u32::MAX).unwrap_or(fall),
            "user" => b.error(
                s,
                "user is not supported by rvs-healthd: scripts run as rvs-healthd's user",
            ),
            _ => b.unknown(s, "vrrp_script"),
        }
    }
    if interval.is_zero() {
        b.error(n, "vrrp_script interval must be more than 0");
    }
    let Some(argv) = argv else {
        b.error(n, "vrrp_script needs script");
        return None;
    };
    Some(Script {
        pos: n.pos.clone(),
        name,
        argv,
        interval,
        timeout: timeout.unwrap_or(interval),
        weight: w,
        rise,
        fall,
    })
}

/// The family words for messages.
fn family(ipv6: bool) -> &'static str {
    if ipv6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// `ADDR[/LEN] [dev IF]` lines, all of the first one's family.
fn virtual_addrs(b: &mut Builder, n: &Node, interface: Option<&str>) -> Vec<VirtualAddr> {
    let mut out: Vec<VirtualAddr> = Vec::new();
    for s in n.block.iter().flatten() {
        let addr = s.keyword.as_str();
        let cidr = match addr.split_once('/') {
            Some(_) => IpCidr::parse(addr),
            None if addr.contains(':') => IpCidr::parse(&format!("{addr}/128")),
            None => IpCidr::parse(&format!("{addr}/32")),
        };
        let cidr = match cidr {
            Ok(c) => c,
            Err(e) => {
                b.error(s, format!("virtual_ipaddress {addr:?}: {e}"));
                continue;
            }
        };
        if let (true, IpCidr::V6(c)) = (out.is_empty(), &cidr) {
            if c.addr.segments()[0] & 0xffc0 != 0xfe80 {
                // RFC 5798 5.2.9; keepalived logs the same and goes on, as rvs-healthd does.
                b.note(
                    s,
                    format!("virtual_ipaddress {addr}: the first IPv6 address of an instance should be link-local (RFC 5798 5.2.9); the adverts carry the list as written"),
                );
            }
        }
        if let Some(first) = out.first().filter(|f| f.cidr.is_ipv6() != cidr.is_ipv6()) {
            b.error(
                s,
                format!(
                    "virtual_ipaddress {addr}: an {} address in an {} instance (its first address is {}); \
                     a vrrp_instance is IPv4 or IPv6, as in keepalived: use one instance per family",
                    family(cidr.is_ipv6()),
                    family(first.cidr.is_ipv6()),
                    first.cidr
                ),
            );
            continue;
        }
        let mut dev = interface.map(str::to_string);
        let args = s.arg_texts();
        let mut i = 0;
        let mut ok = true;
        while i < args.len() {
            match (args[i], args.get(i + 1)) {
                ("dev", Some(d)) => dev = Some(d.to_string()),
                (w, _) => {
                    b.error(s, format!("virtual_ipaddress {addr}: {w:?} is not supported (ADDR[/LEN] [dev IF])"));
                    ok = false;
                    break;
                }
            }
            i += 2;
        }
        match (ok, dev) {
            (true, Some(dev)) => out.push(VirtualAddr { cidr, dev }),
            (true, None) => b.error(
                s,
                format!("virtual_ipaddress {addr}: no dev and no interface"),
            ),
            (false, _) => {}
        }
    }
    if out.len() > 255 {
        b.error(
            n,
            "virtual_ipaddress: at most 255 addresses (the advert's count field)",
        );
    }
    out
}

fn instance(
    b: &mut Builder,
    n: &Node,
    default_version: u8,
    scripts: &[Script],
) -> Option<Instance> {
    let (name, block) = named(b, n)?;
    let mut master = None;
    let mut interface = None;
    let mut vrid = None;
    let mut priority = None;
    let mut interval_cs = DEFAULT_INTERVAL_CS;
    let mut version = default_version;
    let mut nopreempt: Option<&Node> = None;
    let mut preempt_delay: Option<(&Node, Duration)> = None;
    let mut addr_node = None;
    let mut tracks = Vec::new();
    let mut notify = Notify::default();
    let mut unicast_src = None;
    let mut unicast_peers = Vec::new();
    for s in block {
        match s.keyword.as_str() {
            "state" => match b.one(s).as_deref() {
                Some("MASTER") => master = Some(true),
                Some("BACKUP") => master = Some(false),
                Some(v) => b.error(s, format!("state {v:?}: expected MASTER or BACKUP")),
                None => {}
            },
            "interface" => interface = b.one(s),
            "virtual_router_id" => vrid = b.unsigned(s, 1, 255).map(|v| v as u8),
            "priority" => priority = b.unsigned(s, 1, 255).map(|v| v as u8),
            "advert_int" => {
                if let Some(d) = b.timer(s) {
                    let c = d.as_millis().div_ceil(10);
                    match u16::try_from(c) {
                        Ok(c) if (1..=4095).contains(&c) => interval_cs = c,
                        _ => b.error(s, "advert_int: VRRPv3 carries 0.01 to 40.95 seconds"),
                    }
                }
            }
            "version" => version = b.unsigned(s, 2, 3).map_or(version, |v| v as u8),
            "nopreempt" => {
                b.no_block(s);
                nopreempt = Some(s);
            }
            "preempt" => {
                b.no_block(s);
                nopreempt = None;
            }
            "preempt_delay" => {
                if let Some(d) = b.timer(s) {
                    if d > Duration::from_secs(1000) {
                        b.error(
                            s,
                            "preempt_delay: at most 1000 seconds (keepalived's limit)",
                        );
                    } else {
                        preempt_delay = Some((s, d));
                    }
                }
            }
            "virtual_ipaddress" => addr_node = Some(s),
            "track_script" => {
                for t in s.block.iter().flatten() {
                    let Some(i) = scripts.iter().position(|x| x.name == t.keyword) else {
                        b.error(
                            t,
                            format!("track_script {:?}: no vrrp_script of that name", t.keyword),
                        );
                        continue;
                    };
                    let w = match t.arg_texts().as_slice() {
                        [] => scripts[i].weight,
                        ["weight", v] => weight(b, t, v).unwrap_or(0),
                        _ => {
                            b.error(
                                t,
                                "track_script: NAME [weight N] (reverse is not supported)",
                            );
                            continue;
                        }
                    };
                    tracks.push(Track {
                        script: i,
                        weight: w,
                    });
                }
            }
            "notify_master" => notify.master = command(b, s),
            "notify_backup" => notify.backup = command(b, s),
            "notify_fault" => notify.fault = command(b, s),
            "notify_stop" => notify.stop = command(b, s),
            "notify" => notify.any = command(b, s),
            "unicast_src_ip" => {
                if let Some(a) = b.one(s) {
                    unicast_src = b.ip_addr(s, &a).map(|a| (s, a));
                }
            }
            "unicast_peer" => {
                for p in s.block.iter().flatten() {
                    if !p.args.is_empty() {
                        b.error(
                            p,
                            "unicast_peer: one address a line (min_ttl, max_ttl are not supported)",
                        );
                    }
                    if let Some(a) = b.ip_addr(p, &p.keyword) {
                        unicast_peers.push((p, a));
                    }
                }
            }
            "authentication" => {
                // keepalived ignores it in version 3 as well.
                b.note(
                    s,
                    "authentication ignored: VRRP version 3 has none (RFC 5798)",
                );
            }
            k => match HARMLESS_IN_INSTANCE.iter().find(|(h, _)| *h == k) {
                Some((h, why)) => b.note(s, format!("{h} ignored: {why}")),
                None => b.unknown(s, "vrrp_instance"),
            },
        }
    }
    let addrs = match addr_node {
        Some(a) => virtual_addrs(b, a, interface.as_deref()),
        None => Vec::new(),
    };
    // The unicast addresses are of the instance's family.
    let ipv6 = addrs.first().is_some_and(|a| a.cidr.is_ipv6());
    let src = unicast_src.iter().map(|(s, a)| ("unicast_src_ip", s, a));
    let peers = unicast_peers.iter().map(|(s, a)| ("unicast_peer", s, a));
    for (what, s, a) in src.chain(peers) {
        if ipv6 {
            // The adverts would leave the twin from its link-local address to a unicast
            // peer, which rvsd's exception path does not carry (only ff02::12 is).
            b.error(
                s,
                format!(
                    "{what} {a}: unicast adverts are IPv4 only in rvs-healthd (rvsd carries IPv6 VRRP to ff02::12 only): leave unicast_src_ip and unicast_peer out of an IPv6 vrrp_instance"
                ),
            );
        } else if !addrs.is_empty() && a.is_ipv6() != ipv6 {
            b.error(
                s,
                format!(
                    "{what} {a}: an {} address in an {} vrrp_instance",
                    family(a.is_ipv6()),
                    family(ipv6)
                ),
            );
        }
    }
    if version != 3 {
        b.error(n, format!("vrrp_instance {name}: VRRP version {version}; rvs-healthd speaks version 3 only (RFC 5798): add `version 3`, or `vrrp_version 3` in global_defs"));
    }
    let Some(interface) = interface else {
        b.error(n, format!("vrrp_instance {name} needs interface"));
        return None;
    };
    let Some(vrid) = vrid else {
        b.error(n, format!("vrrp_instance {name} needs virtual_router_id"));
        return None;
    };
    let master = master.unwrap_or(priority == Some(255));
    let priority = priority.unwrap_or(if master { 255 } else { DEFAULT_PRIORITY });
    let mut preempt = nopreempt.is_none();
    let mut delay = preempt_delay.map_or(Duration::ZERO, |(_, d)| d);
    // keepalived's own corrections, each with a note as keepalived logs them.
    if let Some(s) = nopreempt.filter(|_| master || priority == 255) {
        b.note(
            s,
            "nopreempt cleared: it does not work with state MASTER or priority 255 (as keepalived)",
        );
        preempt = true;
    }
    if let Some((s, _)) = preempt_delay {
        if master || !preempt {
            b.note(s, "preempt_delay cleared: it does not work with state MASTER or nopreempt (as keepalived)");
            delay = Duration::ZERO;
        }
    }
    if addrs.is_empty() {
        b.error(n, format!("vrrp_instance {name} needs virtual_ipaddress"));
    }
    Some(Instance {
        pos: n.pos.clone(),
        name,
        interface,
        vrid,
        priority,
        interval_cs,
        preempt,
        preempt_delay: delay,
        addrs,
        tracks,
        notify,
        unicast_src: unicast_src.map(|(_, a)| a),
        unicast_peers: unicast_peers.into_iter().map(|(_, a)| a).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::testing::{errors, load, S};
    use crate::conf::Diag;

    #[test]
    fn every_vrrp_directive() {
        let cfg = load(
            r#"global_defs {
    router_id LVS_A
    vrrp_version 3
    lvs_sync_daemon rvs-int0 VI_1 id 7 maxlen 1472
}
vrrp_script chk_nginx {
    script "/usr/bin/pgrep -x nginx"
    interval 2
    timeout 1.5
    weight -30
    rise 2
    fall 3
}
vrrp_script chk_file {
    script /bin/true
}
vrrp_instance VI_1 {
    state BACKUP
    interface rvs-ext0
    virtual_router_id 51
    priority 150
    advert_int 0.5
    preempt_delay 5
    virtual_ipaddress {
        198.51.100.10/24 dev rvs-ext0
        198.51.100.11
        203.0.113.1/24 dev rvs-int0
    }
    track_script {
        chk_nginx
        chk_file weight 10
    }
    notify_master "/etc/keepalived/state.sh MASTER"
    notify_backup /etc/keepalived/backup.sh
    notify_fault /etc/keepalived/fault.sh
    notify_stop /etc/keepalived/stop.sh
    notify /etc/keepalived/notify.sh
    unicast_src_ip 198.51.100.2
    unicast_peer {
        198.51.100.3
    }
    garp_master_delay 1
}
vrrp_instance VI_2 {
    state MASTER
    interface rvs-ext0
    virtual_router_id 52
    nopreempt
    version 3
    virtual_ipaddress {
        198.51.100.20
    }
}
"#,
        );
        let v = &cfg.vrrp;
        assert_eq!(v.scripts.len(), 2);
        let s = &v.scripts[0];
        assert_eq!(s.argv, ["/usr/bin/pgrep", "-x", "nginx"]);
        assert_eq!(
            (s.interval, s.timeout, s.weight, s.rise, s.fall),
            (S(2), Duration::from_millis(1500), -30, 2, 3)
        );
        assert_eq!(
            (
                v.scripts[1].interval,
                v.scripts[1].timeout,
                v.scripts[1].weight
            ),
            (S(1), S(1), 0)
        );
        let i = &v.instances[0];
        assert_eq!(
            (
                i.name.as_str(),
                i.interface.as_str(),
                i.vrid,
                i.priority,
                i.interval_cs
            ),
            ("VI_1", "rvs-ext0", 51, 150, 50)
        );
        assert!(i.preempt);
        assert_eq!(i.preempt_delay, S(5));
        let addrs: Vec<String> = i
            .addrs
            .iter()
            .map(|a| format!("{} {}", a.cidr, a.dev))
            .collect();
        assert_eq!(
            addrs,
            [
                "198.51.100.10/24 rvs-ext0",
                "198.51.100.11/32 rvs-ext0",
                "203.0.113.1/24 rvs-int0"
            ]
        );
        assert_eq!(
            i.tracks,
            [
                Track {
                    script: 0,
                    weight: -30
                },
                Track {
                    script: 1,
                    weight: 10
                }
            ]
        );
        assert_eq!(
            i.notify.master.as_deref(),
            Some(&["/etc/keepalived/state.sh".to_string(), "MASTER".to_string()][..])
        );
        assert!(i.notify.backup.is_some() && i.notify.fault.is_some());
        assert!(i.notify.stop.is_some() && i.notify.any.is_some());
        assert_eq!(i.unicast_src, Some("198.51.100.2".parse().unwrap()));
        assert_eq!(i.unicast_peers, ["198.51.100.3".parse::<IpAddr>().unwrap()]);
        assert!(!i.is_ipv6());
        let i2 = &v.instances[1];
        assert_eq!(i2.priority, 255, "state MASTER without priority: the owner");
        assert!(i2.preempt, "nopreempt cleared with state MASTER");
        assert_eq!(
            v.sync_daemon,
            Some(SyncDaemon {
                interface: "rvs-int0".into(),
                instance: "VI_1".into(),
                syncid: Some(7)
            })
        );
        let notes: Vec<String> = cfg.notes.iter().map(Diag::to_string).collect();
        for want in [
            "k.conf:1: global_defs: rvs-healthd reads vrrp_version and lvs_sync_daemon only",
            "k.conf:4: lvs_sync_daemon maxlen: rvsd's own sync settings apply",
            "k.conf:42: garp_master_delay ignored",
            "k.conf:48: nopreempt cleared",
        ] {
            assert!(
                notes.iter().any(|n| n.starts_with(want)),
                "{want}: {notes:?}"
            );
        }
    }

    #[test]
    fn keepalived_defaults_and_corrections() {
        let cfg = load(
            "vrrp_instance V {\n interface eth0\n virtual_router_id 1\n version 3\n nopreempt\n preempt_delay 3\n virtual_ipaddress {\n 192.0.2.1\n }\n}\n",
        );
        let i = &cfg.vrrp.instances[0];
        assert_eq!((i.priority, i.interval_cs), (100, 100));
        assert!(!i.preempt);
        assert_eq!(i.preempt_delay, Duration::ZERO, "cleared with nopreempt");
        assert_eq!(cfg.vrrp.sync_daemon, None);
        assert!(cfg.services.is_empty());
    }

    #[test]
    fn refusals_name_their_line() {
        let e = errors(
            r#"vrrp_script s {
  script "/bin/true"
  user nobody
  frobnicate
}
vrrp_script t {
  interval 1
}
vrrp_instance A {
  interface eth0
  virtual_router_id 300
  priority 0
  advert_int 50
  state SLAVE
  virtual_ipaddress {
    192.0.2.1/24 brd 192.0.2.255
    2001:db8::1/129
    192.0.2.300
  }
  track_script {
    nothere
    s weight 1 reverse
  }
  notify_master /bin/true root
  use_vmac
}
vrrp_instance B {
  interface eth0
  virtual_router_id 5
}
vrrp_instance C {
  interface eth0
  virtual_router_id 5
  version 3
  virtual_ipaddress {
    192.0.2.5
  }
}
vrrp_instance D {
  interface eth0
  virtual_router_id 5
  version 3
  virtual_ipaddress {
    192.0.2.6
  }
}
vrrp_sync_group G {
}
"#,
        );
        let want = [
            "k.conf:3: user is not supported by rvs-healthd: scripts run as rvs-healthd's user",
            "k.conf:4: \"frobnicate\" is not supported in vrrp_script by rvs-healthd (see docs/keepalived.md)",
            "k.conf:6: vrrp_script needs script",
            "k.conf:11: virtual_router_id \"300\": not a number in 1..=255",
            "k.conf:12: priority \"0\": not a number in 1..=255",
            "k.conf:13: advert_int: VRRPv3 carries 0.01 to 40.95 seconds",
            "k.conf:14: state \"SLAVE\": expected MASTER or BACKUP",
            "k.conf:21: track_script \"nothere\": no vrrp_script of that name",
            "k.conf:22: track_script: NAME [weight N] (reverse is not supported)",
            "k.conf:24: notify_master: a user and group to run as are not supported (scripts run as rvs-healthd's user); quote a command line with arguments",
            "k.conf:25: \"use_vmac\" is not supported in vrrp_instance by rvs-healthd (see docs/keepalived.md)",
            "k.conf:16: virtual_ipaddress 192.0.2.1/24: \"brd\" is not supported (ADDR[/LEN] [dev IF])",
            "k.conf:17: virtual_ipaddress \"2001:db8::1/129\": bad prefix length \"129\" in \"2001:db8::1/129\" (0..128)",
            "k.conf:18: virtual_ipaddress \"192.0.2.300\": bad IPv4 address \"192.0.2.300\"",
            "k.conf:9: vrrp_instance A: VRRP version 2; rvs-healthd speaks version 3 only (RFC 5798): add `version 3`, or `vrrp_version 3` in global_defs",
            "k.conf:9: vrrp_instance A needs virtual_router_id",
            "k.conf:27: vrrp_instance B: VRRP version 2; rvs-healthd speaks version 3 only (RFC 5798): add `version 3`, or `vrrp_version 3` in global_defs",
            "k.conf:27: vrrp_instance B needs virtual_ipaddress",
            "k.conf:31: virtual_router_id 5 on eth0 is already vrrp_instance B's",
            "k.conf:39: virtual_router_id 5 on eth0 is already vrrp_instance B's",
            "k.conf:47: vrrp_sync_group is not supported by rvs-healthd: each vrrp_instance fails over on its own",
        ];
        let mut got = e.clone();
        got.sort();
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{e:#?}");
    }

    #[test]
    fn an_ipv6_instance_and_the_families_kept_apart() {
        let cfg = load(
            r#"vrrp_instance V6 {
  interface rvs-ext0
  virtual_router_id 52
  version 3
  virtual_ipaddress {
    2001:db8:100::1/64
    2001:db8:100::5
    2001:db8:2::1/64 dev rvs-int0
  }
}
"#,
        );
        let i = &cfg.vrrp.instances[0];
        assert!(i.is_ipv6());
        let notes: Vec<String> = cfg.notes.iter().map(|d| d.message.clone()).collect();
        assert_eq!(
            notes,
            ["virtual_ipaddress 2001:db8:100::1/64: the first IPv6 address of an instance should be link-local (RFC 5798 5.2.9); the adverts carry the list as written"],
        );
        let addrs: Vec<String> = i
            .addrs
            .iter()
            .map(|a| format!("{} {}", a.cidr, a.dev))
            .collect();
        assert_eq!(
            addrs,
            [
                "2001:db8:100::1/64 rvs-ext0",
                "2001:db8:100::5/128 rvs-ext0",
                "2001:db8:2::1/64 rvs-int0"
            ]
        );
        assert!(i.unicast_peers.is_empty());
        let e = errors(
            r#"vrrp_instance M {
  interface eth0
  virtual_router_id 1
  version 3
  virtual_ipaddress {
    2001:db8::1/64
    192.0.2.1/24
  }
  unicast_src_ip 192.0.2.9
}
vrrp_instance N {
  interface eth0
  virtual_router_id 2
  version 3
  virtual_ipaddress {
    192.0.2.2
    2001:db8::2
  }
  unicast_peer {
    2001:db8::3
  }
}
"#,
        );
        assert_eq!(
            e,
            [
                "k.conf:7: virtual_ipaddress 192.0.2.1/24: an IPv4 address in an IPv6 instance (its first address is 2001:db8::1/64); a vrrp_instance is IPv4 or IPv6, as in keepalived: use one instance per family",
                "k.conf:9: unicast_src_ip 192.0.2.9: unicast adverts are IPv4 only in rvs-healthd (rvsd carries IPv6 VRRP to ff02::12 only): leave unicast_src_ip and unicast_peer out of an IPv6 vrrp_instance",
                "k.conf:17: virtual_ipaddress 2001:db8::2: an IPv6 address in an IPv4 instance (its first address is 192.0.2.2/32); a vrrp_instance is IPv4 or IPv6, as in keepalived: use one instance per family",
                "k.conf:20: unicast_peer 2001:db8::3: an IPv6 address in an IPv4 vrrp_instance",
            ],
            "{e:#?}"
        );
    }
}
