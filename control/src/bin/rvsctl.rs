//! rvsctl: what rvsd does that is not ipvsadm's language (rvsadm keeps that): IPVS sysctls,
//! neighbours, counters, reload, version.
//!
//! Exit status: 0 done, 1 the daemon refused or could not be reached, 2 a usage error (nothing
//! was sent).

use clap::Parser;
use control::client::{socket_path, Client, ClientError};
use control::config::MacAddr;
use control::proto::{check_neighbour, Neighbour, Request, Response};
use control::sysctl::{IpvsSysctls, PREFIX};
use std::net::Ipv4Addr;
use std::process::ExitCode;

// Shared with rvsd's rvsd-docs (man page and completions), which needs the parser only.
#[path = "../rvsctl_args.rs"]
mod args;
use args::{Args, Cmd};

/// A parsed `rvsctl neigh` command line.
enum NeighCmd {
    Show,
    Add(Neighbour),
    Del { port: String, addr: Ipv4Addr },
}

fn parse_neigh(words: &[String]) -> Result<NeighCmd, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let addr = |s: &str| -> Result<Ipv4Addr, String> {
        s.parse()
            .map_err(|_| format!("{s:?} is not an IPv4 address"))
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
