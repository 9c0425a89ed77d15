//! rvsctl: what rvsd does that is not ipvsadm's language (rvsadm keeps that): IPVS sysctls,
//! neighbours, counters, reload, ports, version, capture hints, VRRP-held addresses.
//!
//! Exit status: 0 done, 1 the daemon refused or could not be reached, 2 a usage error (nothing
//! was sent).

use clap::Parser;
use control::client::{socket_path, Client, ClientError};
use control::config::{IpCidr, MacAddr};
use control::proto::{
    check_neighbour, Neighbour, PortInfo, Request, Response, VersionInfo, VirtualAddrsStatus,
};
use control::sysctl::{IpvsSysctls, PREFIX};
use std::net::IpAddr;
use std::process::ExitCode;

// Shared with rvsd's rvsd-docs (man page and completions), which needs the parser only.
#[path = "../rvsctl_args.rs"]
mod args;
use args::{Args, Cmd};

/// A parsed `rvsctl neigh` command line.
enum NeighCmd {
    Show,
    Add(Neighbour),
    Del { port: String, addr: IpAddr },
}

fn parse_neigh(words: &[String]) -> Result<NeighCmd, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let addr = |s: &str| -> Result<IpAddr, String> {
        s.parse()
            .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 address"))
    };
    match w.as_slice() {
        [] | ["show"] | ["list"] => Ok(NeighCmd::Show),
        ["add" | "replace", a, "lladdr", mac, "dev", port] => {
            let addr = addr(a)?;
            let mac: MacAddr = mac.parse()?;
            check_neighbour(addr, mac)?;
            Ok(NeighCmd::Add(Neighbour {
                port: port.to_string(),
                addr,
                mac,
                permanent: true,
            }))
        }
        ["del" | "delete", a, "dev", port] => Ok(NeighCmd::Del {
            port: port.to_string(),
            addr: addr(a)?,
        }),
        _ => Err(
            "usage: rvsctl neigh [show] | add ADDR lladdr MAC dev PORT | del ADDR dev PORT".into(),
        ),
    }
}

/// A parsed `rvsctl vaddr` command line: a listing, or a `SetVirtualAddrs` to send.
fn parse_vaddr(words: &[String]) -> Result<Request, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let usage = "usage: rvsctl vaddr [show] | hold|release INSTANCE dev PORT ADDR/LEN... | \
                 del INSTANCE dev PORT";
    match w.as_slice() {
        [] | ["show"] | ["list"] => Ok(Request::ListVirtualAddrs),
        [verb @ ("hold" | "release"), instance, "dev", port, addrs @ ..] if !addrs.is_empty() => {
            Ok(Request::SetVirtualAddrs {
                instance: instance.to_string(),
                port: port.to_string(),
                addrs: addrs
                    .iter()
                    .map(|a| IpCidr::parse(a))
                    .collect::<Result<_, _>>()?,
                held: *verb == "hold",
            })
        }
        ["del" | "delete", instance, "dev", port] => Ok(Request::SetVirtualAddrs {
            instance: instance.to_string(),
            port: port.to_string(),
            addrs: Vec::new(),
            held: false,
        }),
        _ => Err(usage.into()),
    }
}

/// `rvsctl vaddr`: one line per address, as ip-addr(8) words it, with its instance and state.
fn format_vaddrs(list: &[VirtualAddrsStatus]) -> String {
    let mut out = String::new();
    for v in list {
        let state = if v.held { "held" } else { "released" };
        for a in &v.addrs {
            out.push_str(&format!(
                "{a} dev {} instance {} {state}\n",
                v.port, v.instance
            ));
        }
    }
    out
}

/// `rvsctl ports`: a block per port, as `ip -s link` words it.
fn format_ports(ports: &[PortInfo]) -> String {
    let mut out = String::new();
    for p in ports {
        let link = if p.link_up {
            let speed = match p.speed_mbps {
                0 => "speed unknown".to_string(),
                s if s % 1000 == 0 => format!("{} Gbit/s", s / 1000),
                s => format!("{s} Mbit/s"),
            };
            let duplex = if p.full_duplex { "full" } else { "half" };
            format!("up {speed} {duplex}-duplex")
        } else {
            "down".to_string()
        };
        out.push_str(&format!(
            "{}: device {} driver {} port {} mac {} link {link} mtu {}\n",
            p.name, p.device, p.driver, p.port_id, p.mac, p.mtu
        ));
        out.push_str(&format!(
            "    RX: packets {} bytes {} missed {} errors {} nombuf {}\n",
            p.rx_packets, p.rx_bytes, p.rx_missed, p.rx_errors, p.rx_nombuf
        ));
        out.push_str(&format!(
            "    TX: packets {} bytes {} errors {}\n",
            p.tx_packets, p.tx_bytes, p.tx_errors
        ));
        for (name, value) in &p.xstats {
            out.push_str(&format!("    {name} {value}\n"));
        }
    }
    out
}

/// `rvsctl version`: rvsd's part.
fn format_version(v: &VersionInfo) -> String {
    let mut out = format!("rvsd {}\n{}\n", v.rvsd, v.dpdk);
    if v.in_memory {
        out.push_str("EAL --in-memory (no file prefix: dpdk-dumpcap cannot attach)\n");
    } else {
        out.push_str(&format!(
            "EAL file prefix {} (runtime folder {})\n",
            v.file_prefix, v.runtime_dir
        ));
    }
    out
}

/// A word as a POSIX shell reads it back unchanged.
fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// `rvsctl capture`: one dpdk-dumpcap command line per port (the one named, or every port),
/// writing `file` (default /tmp/rvs-PORT.pcapng).
fn capture_commands(
    v: &VersionInfo,
    ports: &[PortInfo],
    port: Option<&str>,
    file: Option<&str>,
) -> Result<Vec<String>, String> {
    if v.in_memory {
        return Err(
            "rvsd runs EAL --in-memory, so no secondary process (dpdk-dumpcap) can \
                    attach: give it a file prefix in [eal] args (--file-prefix=rvs) in place of \
                    --in-memory, and restart it"
                .into(),
        );
    }
    let chosen: Vec<&PortInfo> = match port {
        Some(name) => match ports.iter().find(|p| p.name == name) {
            Some(p) => vec![p],
            None => {
                let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "no port named {name:?} (ports: {})",
                    names.join(", ")
                ));
            }
        },
        None => ports.iter().collect(),
    };
    if chosen.len() > 1 && file.is_some() {
        return Err("-w FILE needs a port name: one file per port".into());
    }
    Ok(chosen
        .into_iter()
        .map(|p| {
            let default = format!("/tmp/rvs-{}.pcapng", p.name);
            format!(
                "dpdk-dumpcap --file-prefix={} -i {} -w {}",
                shell_word(&v.file_prefix),
                shell_word(&p.device),
                shell_word(file.unwrap_or(&default))
            )
        })
        .collect())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut client = Client::new(socket_path(
        args.socket.as_deref(),
        std::env::var_os(control::proto::SOCKET_ENV),
    ));
    match run(&mut client, args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("rvsctl: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(m)) => {
            eprintln!("rvsctl: {m}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    /// Bad arguments: nothing was sent.
    Usage(String),
    /// The daemon could not be reached, or refused.
    Runtime(String),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Runtime(e.to_string())
    }
}

fn run(client: &mut Client, command: Cmd) -> Result<(), Failure> {
    match command {
        Cmd::Sysctl { write, names } if !write.is_empty() => {
            if !names.is_empty() {
                return Err(Failure::Usage(
                    "give either -w NAME=VALUE or names to show, not both".into(),
                ));
            }
            // Checked here first (same table as the daemon's), so a typo sends nothing.
            let mut check = IpvsSysctls::default();
            let mut pairs = Vec::with_capacity(write.len());
            for w in &write {
                let (name, value) = check
                    .set_assignment(w)
                    .map_err(|e| Failure::Usage(e.to_string()))?;
                pairs.push((name.to_string(), value));
            }
            expect_ok(client.call(Request::SetSysctls(pairs.clone()))?)?;
            for (name, value) in pairs {
                println!("{PREFIX}{name} = {value}");
            }
            Ok(())
        }
        Cmd::Sysctl { names, .. } => {
            let values = match client.call(Request::GetSysctls)? {
                Response::Sysctls(v) => v,
                other => return Err(unexpected(&other)),
            };
            let wanted: Vec<&str> = names
                .iter()
                .map(|n| n.strip_prefix(PREFIX).unwrap_or(n))
                .collect();
            for w in &wanted {
                if !values.iter().any(|(n, _)| n == w) {
                    // The daemon's list is the authority; the local table words the error.
                    let e = IpvsSysctls::default().get(w).err();
                    return Err(Failure::Usage(e.map_or_else(
                        || format!("rvsd does not report {w}"),
                        |e| e.to_string(),
                    )));
                }
            }
            for (name, value) in values {
                if wanted.is_empty() || wanted.contains(&name.as_str()) {
                    println!("{PREFIX}{name} = {value}");
                }
            }
            Ok(())
        }
        Cmd::Neigh { words } => match parse_neigh(&words).map_err(Failure::Usage)? {
            NeighCmd::Show => {
                match client.call(Request::ListNeighbours)? {
                    Response::Neighbours(list) => {
                        for n in list {
                            let state = if n.permanent { "PERMANENT" } else { "learnt" };
                            println!("{} dev {} lladdr {} {state}", n.addr, n.port, n.mac);
                        }
                    }
                    other => return Err(unexpected(&other)),
                }
                Ok(())
            }
            NeighCmd::Add(n) => expect_ok(client.call(Request::AddNeighbour(n))?),
            NeighCmd::Del { port, addr } => {
                expect_ok(client.call(Request::DelNeighbour { port, addr })?)
            }
        },
        Cmd::Vaddr { words } => match parse_vaddr(&words).map_err(Failure::Usage)? {
            Request::ListVirtualAddrs => match client.call(Request::ListVirtualAddrs)? {
                Response::VirtualAddrs(list) => {
                    print!("{}", format_vaddrs(&list));
                    Ok(())
                }
                other => Err(unexpected(&other)),
            },
            set => expect_ok(client.call(set)?),
        },
        Cmd::Reload => match client.call(Request::Reload)? {
            Response::Reloaded(r) => {
                let sections = [
                    ("applied", &r.applied),
                    ("adjusted", &r.adjusted),
                    ("not live", &r.not_live),
                    ("failed", &r.failed),
                ];
                for (label, lines) in sections {
                    for line in lines {
                        println!("{label}: {line}");
                    }
                }
                if sections.iter().all(|(_, lines)| lines.is_empty()) {
                    println!("no change");
                }
                match r.failed.len() {
                    0 => Ok(()),
                    n => Err(Failure::Runtime(format!(
                        "reloaded, but rvsd refused {n} change(s)"
                    ))),
                }
            }
            Response::Error(e) => Err(Failure::Runtime(e)),
            other => Err(unexpected(&other)),
        },
        Cmd::Ports { stats } => match client.call(Request::Ports { xstats: stats })? {
            Response::Ports(list) => {
                print!("{}", format_ports(&list));
                Ok(())
            }
            other => Err(unexpected(&other)),
        },
        Cmd::Version => {
            println!("rvsctl {}", env!("CARGO_PKG_VERSION"));
            match client.call(Request::Version)? {
                Response::Version(v) => {
                    print!("{}", format_version(&v));
                    Ok(())
                }
                other => Err(unexpected(&other)),
            }
        }
        Cmd::Capture { port, file } => {
            let version = match client.call(Request::Version)? {
                Response::Version(v) => v,
                other => return Err(unexpected(&other)),
            };
            let ports = match client.call(Request::Ports { xstats: false })? {
                Response::Ports(list) => list,
                other => return Err(unexpected(&other)),
            };
            let lines = capture_commands(&version, &ports, port.as_deref(), file.as_deref())
                .map_err(Failure::Usage)?;
            for l in lines {
                println!("{l}");
            }
            Ok(())
        }
        Cmd::Counters => {
            match client.call(Request::Counters)? {
                Response::Counters(list) => {
                    for (name, value) in list {
                        println!("{name} {value}");
                    }
                }
                other => return Err(unexpected(&other)),
            }
            Ok(())
        }
    }
}

fn expect_ok(r: Response) -> Result<(), Failure> {
    match r {
        Response::Ok => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(r: &Response) -> Failure {
    Failure::Runtime(format!("unexpected answer from rvsd: {r:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn port(name: &str, device: &str) -> PortInfo {
        PortInfo {
            name: name.into(),
            device: device.into(),
            port_id: 1,
            driver: "net_af_xdp".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            link_up: true,
            speed_mbps: 10_000,
            full_duplex: true,
            mtu: 1500,
            rx_packets: 10,
            tx_packets: 20,
            rx_bytes: 1000,
            tx_bytes: 2000,
            rx_missed: 3,
            rx_errors: 4,
            tx_errors: 5,
            rx_nombuf: 6,
            xstats: vec![("rx_good_packets".into(), 10)],
        }
    }

    fn version(in_memory: bool) -> VersionInfo {
        VersionInfo {
            rvsd: "0.1.0".into(),
            dpdk: "DPDK 22.11.11".into(),
            runtime_dir: "/var/run/dpdk/rvs".into(),
            file_prefix: "rvs".into(),
            in_memory,
        }
    }

    #[test]
    fn subcommands_parse() {
        let a = Args::try_parse_from(["rvsctl", "ports", "-s"]).unwrap();
        assert!(matches!(a.command, Cmd::Ports { stats: true }));
        let a = Args::try_parse_from(["rvsctl", "port"]).unwrap();
        assert!(matches!(a.command, Cmd::Ports { stats: false }));
        let a = Args::try_parse_from(["rvsctl", "version"]).unwrap();
        assert!(matches!(a.command, Cmd::Version));
        let a = Args::try_parse_from(["rvsctl", "capture", "int", "-w", "/tmp/x.pcapng"]).unwrap();
        match a.command {
            Cmd::Capture { port, file } => {
                assert_eq!(port.as_deref(), Some("int"));
                assert_eq!(file.as_deref(), Some("/tmp/x.pcapng"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Args::try_parse_from(["rvsctl", "capture", "a", "b"]).is_err());
    }

    #[test]
    fn ports_are_printed_with_link_and_counters() {
        let text = format_ports(&[port("int", "net_af_xdp1")]);
        assert_eq!(
            text,
            "int: device net_af_xdp1 driver net_af_xdp port 1 mac 02:00:00:00:00:01 \
             link up 10 Gbit/s full-duplex mtu 1500\n    \
             RX: packets 10 bytes 1000 missed 3 errors 4 nombuf 6\n    \
             TX: packets 20 bytes 2000 errors 5\n    rx_good_packets 10\n"
        );
        let mut down = port("ext", "net_af_xdp0");
        down.link_up = false;
        assert!(format_ports(&[down]).contains("link down mtu"));
    }

    #[test]
    fn version_names_the_file_prefix_or_in_memory() {
        assert_eq!(
            format_version(&version(false)),
            "rvsd 0.1.0\nDPDK 22.11.11\nEAL file prefix rvs (runtime folder /var/run/dpdk/rvs)\n"
        );
        assert!(format_version(&version(true)).contains("--in-memory"));
    }

    #[test]
    fn capture_prints_a_dumpcap_command_per_port() {
        let ports = [port("ext", "net_af_xdp0"), port("int", "0000:03:00.1")];
        assert_eq!(
            capture_commands(&version(false), &ports, None, None).unwrap(),
            [
                "dpdk-dumpcap --file-prefix=rvs -i net_af_xdp0 -w /tmp/rvs-ext.pcapng",
                "dpdk-dumpcap --file-prefix=rvs -i 0000:03:00.1 -w /tmp/rvs-int.pcapng",
            ]
        );
        assert_eq!(
            capture_commands(
                &version(false),
                &ports,
                Some("int"),
                Some("/tmp/a b.pcapng")
            )
            .unwrap(),
            ["dpdk-dumpcap --file-prefix=rvs -i 0000:03:00.1 -w '/tmp/a b.pcapng'"]
        );
        let e = capture_commands(&version(false), &ports, Some("lan"), None).unwrap_err();
        assert!(e.contains("ext, int"), "{e}");
        assert!(capture_commands(&version(false), &ports, None, Some("/tmp/x")).is_err());
        let e = capture_commands(&version(true), &ports, None, None).unwrap_err();
        assert!(e.contains("--file-prefix"), "{e}");
    }

    #[test]
    fn vaddr_words_parse_and_list() {
        let words = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        assert_eq!(parse_vaddr(&[]).unwrap(), Request::ListVirtualAddrs);
        assert_eq!(
            parse_vaddr(&words(
                "hold VI_1 dev ext 198.51.100.5/24 2001:db8:100::1/64"
            ))
            .unwrap(),
            Request::SetVirtualAddrs {
                instance: "VI_1".into(),
                port: "ext".into(),
                addrs: vec![
                    IpCidr::parse("198.51.100.5/24").unwrap(),
                    IpCidr::parse("2001:db8:100::1/64").unwrap()
                ],
                held: true,
            }
        );
        assert!(matches!(
            parse_vaddr(&words("release VI_1 dev ext 198.51.100.5/24")).unwrap(),
            Request::SetVirtualAddrs { held: false, .. }
        ));
        assert!(matches!(
            parse_vaddr(&words("del VI_1 dev ext")).unwrap(),
            Request::SetVirtualAddrs { ref addrs, held: false, .. } if addrs.is_empty()
        ));
        for bad in [
            "hold VI_1 dev ext",
            "hold VI_1 ext 198.51.100.5/24",
            "hold VI_1 dev ext 198.51.100.5",
            "flip VI_1",
        ] {
            assert!(parse_vaddr(&words(bad)).is_err(), "{bad}");
        }
        let list = [VirtualAddrsStatus {
            instance: "VI_1".into(),
            port: "ext".into(),
            addrs: vec![
                IpCidr::parse("198.51.100.5/24").unwrap(),
                IpCidr::parse("198.51.100.6/32").unwrap(),
            ],
            held: false,
        }];
        assert_eq!(
            format_vaddrs(&list),
            "198.51.100.5/24 dev ext instance VI_1 released\n\
             198.51.100.6/32 dev ext instance VI_1 released\n"
        );
    }

    #[test]
    fn shell_words_survive_quoting() {
        assert_eq!(shell_word("net_pcap0"), "net_pcap0");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
