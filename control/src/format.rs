//! ipvsadm's output formats, as pure functions from the daemon's answers to text, so that they
//! are golden-tested. Addresses and ports are always numeric (rvsadm resolves no names, with or
//! without `-n`).

use crate::model::{
    ConnStatus, DestStatus, Forward, Rates, ServiceKey, ServiceStatus, SockAddr, Stats, Timeouts,
};
use std::fmt::Write;
use std::net::IpAddr;

/// The IPVS version the `-L` header names: tools that parse ipvsadm's output look for it.
pub const IPVS_VERSION: &str = "1.2.1";

/// Which columns `-L` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// Scheduler, flags, forwarding, weight, active and inactive connections.
    #[default]
    Default,
    /// `--stats`: counters.
    Stats,
    /// `--rate`: per-second rates.
    Rate,
    /// `--thresholds`: connection thresholds.
    Thresholds,
}

/// How `-L` prints the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFormat {
    pub view: View,
    /// `--exact`: numbers in full instead of scaled to K, M, G, T.
    pub exact: bool,
    /// Services by protocol, address, port and real servers by address, port (unless `--nosort`).
    pub sort: bool,
}

impl Default for ListFormat {
    fn default() -> Self {
        ListFormat {
            view: View::Default,
            exact: false,
            sort: true,
        }
    }
}

/// `-L`: the whole table, under the `IP Virtual Server version` header.
pub fn list(table_size: u64, services: &[ServiceStatus], format: &ListFormat) -> String {
    let mut out = format!("IP Virtual Server version {IPVS_VERSION} (size={table_size})\n");
    out.push_str(&title(format.view));
    for service in ordered(services, format.sort) {
        service_entry(&mut out, service, format);
    }
    out
}

/// `-L -t|-u service`: one service, without the version header (as ipvsadm).
pub fn list_service(service: &ServiceStatus, format: &ListFormat) -> String {
    let mut out = title(format.view);
    service_entry(&mut out, service, format);
    out
}

/// `-S`: one replayable command per line, services and real servers sorted.
pub fn save(services: &[ServiceStatus]) -> String {
    let mut out = String::new();
    for service in ordered(services, true) {
        let spec = &service.spec;
        let svc = format!(
            "{} {}",
            spec.key.protocol.flag(),
            addr_port(spec.key.addr, spec.key.port)
        );
        let _ = write!(out, "-A {svc} -s {}", spec.scheduler);
        if let Some(timeout) = spec.persistence {
            let _ = write!(out, " -p {timeout}");
        }
        // Unlike ipvsadm, also without -p, so that a replay gives back exactly this service.
        // IPv6: the prefix length (`-M 64`), as ipvsadm prints it.
        if !spec.netmask.is_full() {
            let _ = write!(out, " -M {}", spec.netmask);
        }
        // ipvsadm's order: -o before -b.
        if spec.ops {
            out.push_str(" -o");
        }
        if !spec.sched_flags.is_empty() {
            let _ = write!(out, " -b {}", spec.sched_flags.names().join(","));
        }
        out.push('\n');
        for dest in ordered_dests(&service.dests, true) {
            let d = &dest.spec;
            let _ = write!(
                out,
                "-a {svc} -r {} {} -w {}",
                addr_port(d.addr, d.port),
                forward_switch(d.forward),
                d.weight
            );
            if d.upper_threshold != 0 {
                let _ = write!(out, " -x {}", d.upper_threshold);
            }
            if d.lower_threshold != 0 {
                let _ = write!(out, " -y {}", d.lower_threshold);
            }
            out.push('\n');
        }
    }
    out
}

/// `-L -c`: the connection table, in the daemon's order.
pub fn conns(conns: &[ConnStatus]) -> String {
    let mut out = String::from("IPVS connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    for c in conns {
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.protocol.label(),
            format!("{:02}:{:02}", c.expires_in / 60, c.expires_in % 60),
            c.state,
            addr_port(c.client.0, c.client.1),
            addr_port(c.virt.0, c.virt.1),
            addr_port(c.dest.0, c.dest.1),
        );
    }
    out
}

/// `-L --timeout`
pub fn timeouts(t: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcp_fin, t.udp
    )
}

/// One counter as `--stats` prints it (ipvsadm's print_largenum): right-aligned in 9
/// columns, scaled to K/M/G/T above 10^8; with `exact`, in full and at least 9 wide.
pub fn large_num(n: u64, exact: bool) -> String {
    if exact {
        let digits = n.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        format!("{digits:>width$}")
    } else if n < 100_000_000 {
        format!("{n:>9}")
    } else if n < 1_000_000_000 {
        format!("{:>8}K", n / 1_000)
    } else if n < 100_000_000_000 {
        format!("{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        format!("{:>8}G", n / 1_000_000_000)
    } else {
        format!("{:>8}T", n / 1_000_000_000_000)
    }
}

fn title(view: View) -> String {
    let columns = |c: [&str; 5]| {
        format!(
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", c[0], c[1], c[2], c[3], c[4]
        )
    };
    match view {
        View::Default => "Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
            .to_string(),
        View::Stats => columns(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
        View::Rate => columns(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
        View::Thresholds => format!(
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port\n",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
    }
}

fn service_entry(out: &mut String, service: &ServiceStatus, format: &ListFormat) {
    let spec = &service.spec;
    let name = service_name(&spec.key);
    match format.view {
        View::Stats => {
            let _ = write!(out, "{name:<33}{}", counters(&service.stats, format.exact));
        }
        View::Rate => {
            let _ = write!(
                out,
                "{name:<33}{}",
                service_rates(&service.stats, format.exact)
            );
        }
        View::Default | View::Thresholds => {
            let _ = write!(out, "{name} {}", spec.scheduler);
            if !spec.sched_flags.is_empty() {
                let _ = write!(out, " ({})", spec.sched_flags.names().join(","));
            }
            if let Some(timeout) = spec.persistence {
                let _ = write!(out, " persistent {timeout}");
                if !spec.netmask.is_full() {
                    let _ = write!(out, " mask {}", spec.netmask);
                }
            }
            if spec.ops {
                out.push_str(" ops");
            }
        }
    }
    out.push('\n');
    for dest in ordered_dests(&service.dests, format.sort) {
        dest_entry(out, dest, format);
    }
}

fn dest_entry(out: &mut String, dest: &DestStatus, format: &ListFormat) {
    let d = &dest.spec;
    let name = addr_port(d.addr, d.port);
    let _ = match format.view {
        View::Default => writeln!(
            out,
            "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
            d.forward.label(),
            d.weight,
            dest.active_conns,
            dest.inactive_conns
        ),
        View::Stats => writeln!(
            out,
            "  -> {name:<28}{}",
            counters(&dest.stats, format.exact)
        ),
        View::Rate => writeln!(
            out,
            "  -> {name:<28}{}",
            dest_rates(&dest.stats, format.exact)
        ),
        View::Thresholds => writeln!(
            out,
            "  -> {name:<28} {:<10} {:<10} {:<10} {:<10}",
            d.upper_threshold, d.lower_threshold, dest.active_conns, dest.inactive_conns
        ),
    };
}

fn counters(s: &Stats, exact: bool) -> String {
    [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes]
        .iter()
        .map(|n| large_num(*n, exact))
        .collect()
}

/// A service's rates: all five scaled as counters are (ipvsadm does the same).
fn service_rates(s: &Stats, exact: bool) -> String {
    match &s.rates {
        Some(r) => [r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps]
            .iter()
            .map(|n| large_num(*n, exact))
            .collect(),
        None => unmeasured(),
    }
}

/// A real server's rates: ipvsadm prints CPS and the packet rates plainly, the byte rates
/// scaled.
fn dest_rates(s: &Stats, exact: bool) -> String {
    match &s.rates {
        Some(Rates {
            cps,
            in_pps,
            out_pps,
            in_bps,
            out_bps,
        }) => format!(
            " {cps:>8} {in_pps:>8} {out_pps:>8}{}{}",
            large_num(*in_bps, exact),
            large_num(*out_bps, exact)
        ),
        None => unmeasured(),
    }
}

/// Rates the daemon did not report: a dash per column rather than an invented zero.
fn unmeasured() -> String {
    format!("{:>9}", "-").repeat(5)
}

/// "TCP  192.0.2.1:80": ipvsadm's `"%-4s %s"` of protocol and address.
fn service_name(key: &ServiceKey) -> String {
    format!(
        "{:<4} {}",
        key.protocol.label(),
        addr_port(key.addr, key.port)
    )
}

/// `192.0.2.1:80`, `[2001:db8::1]:80` (ipvsadm's addrport_to_anyname with -n). An IPv6
/// name longer than its column is printed whole, pushing the rest of the line right, as
/// ipvsadm does (it truncates IPv4 names only, which never reach the column's width).
fn addr_port(addr: IpAddr, port: u16) -> String {
    SockAddr(addr, port).to_string()
}

/// The `-S` switch of a forwarding method.
fn forward_switch(forward: Forward) -> &'static str {
    match forward {
        Forward::Masq => "-m",
    }
}

fn ordered(services: &[ServiceStatus], sort: bool) -> Vec<&ServiceStatus> {
    let mut v: Vec<&ServiceStatus> = services.iter().collect();
    if sort {
        v.sort_by_key(|s| s.spec.key.list_order());
    }
    v
}

fn ordered_dests(dests: &[DestStatus], sort: bool) -> Vec<&DestStatus> {
    let mut v: Vec<&DestStatus> = dests.iter().collect();
    if sort {
        v.sort_by_key(|d| (d.spec.addr, d.spec.port));
    }
    v
}
