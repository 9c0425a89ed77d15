//! Checking the words of one call against ipvsadm's matrix and building the [`Command`].

use super::address::{parse_host_port, HostPort};
use super::command::{
    check_ops, check_sched_flags, check_thresholds, check_zero_port, Change, Command,
    DaemonCommand, DestEdit, Invocation, ListCommand, ServiceEdit,
};
use super::grammar::{Cmd, Opt, ALL_OPTS, TRY_HELP};
use super::tokenize::{tokenize, Raw};
use super::{fail, number, CliError, DEFAULT_PERSISTENCE, DEFAULT_SCHEDULER, MAX_TIMEOUT};
use crate::format::{ListFormat, View};
use crate::model::{
    family_refusal, DestSpec, Forward, Netmask, Protocol, SchedFlags, SchedulerKind, ServiceKey,
    ServiceSpec, Timeouts,
};
use crate::proto::Request;
use std::net::IpAddr;

/// Parses one call's arguments (without the program name).
///
/// No arguments at all lists the table, as ipvsadm does.
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Invocation, CliError> {
    let raw = tokenize(args)?;
    let only_socket =
        raw.cmd.is_none() && raw.positional.is_empty() && raw.given.iter().all(Option::is_none);
    let cmd = match raw.cmd {
        Some(cmd) => cmd,
        None if only_socket => Cmd::List,
        None => return fail(format!("no command specified\n{TRY_HELP}")),
    };
    check_options(cmd, &raw)?;
    let command = build(cmd, &raw)?;
    Ok(Invocation {
        command,
        socket: raw.socket,
    })
}

/// ipvsadm's `generic_opt_check`: walks the options in order, so the first offending one is
/// the one reported, as in ipvsadm.
fn check_options(cmd: Cmd, raw: &Raw) -> Result<(), CliError> {
    let mut exclusive: Option<Opt> = None;
    for (opt, mark) in ALL_OPTS.iter().zip(cmd.matrix().bytes()) {
        match (raw.has(*opt), mark) {
            (false, b'+') => {
                return fail(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            (true, b'x') => {
                return fail(format!(
                    "Illegal '{}' option with the '{}' command",
                    opt.name(),
                    cmd.name()
                ))
            }
            (true, b'1') => match exclusive {
                Some(first) => {
                    return fail(format!(
                        "The option '{}' conflicts with the '{}' option in the '{}' command",
                        opt.name(),
                        first.name(),
                        cmd.name()
                    ))
                }
                None => exclusive = Some(*opt),
            },
            _ => {}
        }
    }
    if cmd == Cmd::List {
        let what = raw.has(Opt::Connection) || raw.has(Opt::Timeout) || raw.has(Opt::Counters);
        let how = raw.has(Opt::Stats) || raw.has(Opt::Rate) || raw.has(Opt::Thresholds);
        if what && how {
            return fail("options conflicts in the list command");
        }
    }
    let takes = if cmd == Cmd::Set { 3 } else { 0 };
    if cmd == Cmd::Set && raw.positional.len() < takes {
        return fail("--set option requires 3 timeout values");
    }
    if let Some(extra) = raw.positional.get(takes) {
        return fail(format!("unexpected argument {extra}"));
    }
    Ok(())
}

fn build(cmd: Cmd, raw: &Raw) -> Result<Command, CliError> {
    let change = |request| Ok(Command::Change(Change::Apply(request)));
    match cmd {
        Cmd::AddService => {
            let scheduler = scheduler(raw)?.unwrap_or(DEFAULT_SCHEDULER);
            let key = required_service(raw)?;
            let spec = ServiceSpec {
                key,
                scheduler,
                persistence: persistence(raw, ZeroPersistence::Illegal)?,
                netmask: netmask(raw, key.addr)?.unwrap_or(Netmask::full(key.addr)),
                sched_flags: match sched_flags(raw)? {
                    Some(flags) => check_sched_flags(flags, scheduler)?,
                    None => SchedFlags::default(),
                },
                ops: raw.has(Opt::Ops),
            };
            check_zero_port(&spec)?;
            check_ops(&spec)?;
            change(Request::AddService(spec))
        }
        Cmd::EditService => Ok(Command::Change(Change::EditService(ServiceEdit {
            key: required_service(raw)?,
            scheduler: scheduler(raw)?,
            persistence: persistence(raw, ZeroPersistence::TurnsOff)?,
            netmask: netmask(raw, required_service(raw)?.addr)?,
            sched_flags: sched_flags(raw)?,
            ops: raw.has(Opt::Ops),
        }))),
        Cmd::DelService => change(Request::DelService(required_service(raw)?)),
        Cmd::AddServer => {
            let real = server(raw)?;
            let dest = DestSpec {
                addr: real.addr,
                port: real.port,
                weight: weight(raw)?.unwrap_or(1),
                forward: Forward::Masq,
                upper_threshold: threshold(raw, Opt::UThreshold)?.unwrap_or(0),
                lower_threshold: threshold(raw, Opt::LThreshold)?.unwrap_or(0),
            };
            check_thresholds(&dest)?;
            change(Request::AddDest {
                service: real.service,
                dest,
            })
        }
        Cmd::EditServer => {
            let real = server(raw)?;
            Ok(Command::Change(Change::EditDest(DestEdit {
                service: real.service,
                addr: real.addr,
                port: real.port,
                weight: weight(raw)?,
                upper_threshold: threshold(raw, Opt::UThreshold)?,
                lower_threshold: threshold(raw, Opt::LThreshold)?,
            })))
        }
        Cmd::DelServer => {
            let real = server(raw)?;
            change(Request::DelDest {
                service: real.service,
                addr: real.addr,
                port: real.port,
            })
        }
        Cmd::Clear => change(Request::Clear),
        Cmd::Zero => change(Request::Zero {
            service: service(raw)?,
        }),
        Cmd::Set => {
            let t: Vec<u32> = raw
                .positional
                .iter()
                .map(|v| timeout_value(v, 0))
                .collect::<Result<_, _>>()?;
            change(Request::SetTimeouts(Timeouts {
                tcp: t[0],
                tcp_fin: t[1],
                udp: t[2],
            }))
        }
        Cmd::List => Ok(Command::List(if raw.has(Opt::Connection) {
            ListCommand::Conns
        } else if raw.has(Opt::Timeout) {
            ListCommand::Timeouts
        } else if raw.has(Opt::Counters) {
            ListCommand::Counters
        } else if raw.has(Opt::Daemon) {
            ListCommand::Daemons
        } else {
            ListCommand::Services {
                service: service(raw)?,
                format: list_format(raw),
            }
        })),
        Cmd::Save => Ok(Command::Save),
        Cmd::Restore => Ok(Command::Restore),
        Cmd::Help => Ok(Command::Help),
        Cmd::Version => Ok(Command::Version),
        Cmd::StartDaemon | Cmd::StopDaemon => {
            let master = match raw.cmd_value.as_deref() {
                Some("master") => true,
                Some("backup") => false,
                other => {
                    return fail(format!(
                        "illegal {} parameter specified: {}",
                        cmd.name(),
                        other.unwrap_or_default()
                    ))
                }
            };
            let syncid = match raw.value(Opt::SyncId) {
                Some(v) => Some(
                    v.parse::<u8>()
                        .map_err(|_| CliError(format!("illegal syncid specified: {v}")))?,
                ),
                None => None,
            };
            Ok(Command::Daemon(DaemonCommand {
                start: cmd == Cmd::StartDaemon,
                master,
                interface: raw.value(Opt::McastInterface).map(str::to_string),
                syncid,
            }))
        }
    }
}

fn list_format(raw: &Raw) -> ListFormat {
    // ipvsadm's print_title: the first of these that is given wins.
    let view = if raw.has(Opt::Stats) {
        View::Stats
    } else if raw.has(Opt::Rate) {
        View::Rate
    } else if raw.has(Opt::Thresholds) {
        View::Thresholds
    } else {
        View::Default
    };
    ListFormat {
        view,
        exact: raw.has(Opt::Exact),
        sort: !raw.has(Opt::NoSort),
    }
}

fn service(raw: &Raw) -> Result<Option<ServiceKey>, CliError> {
    let (Some(long), Some(text)) = (raw.long_name(Opt::Service), raw.value(Opt::Service)) else {
        return Ok(None);
    };
    let protocol = if long == "udp-service" {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    match parse_host_port(text, protocol)? {
        Some(HostPort { addr, port }) => Ok(Some(ServiceKey {
            protocol,
            addr,
            port: port.unwrap_or(0),
        })),
        None => fail("illegal virtual server address[:port] specified"),
    }
}

/// The service of a command whose matrix row marks it `+`.
fn required_service(raw: &Raw) -> Result<ServiceKey, CliError> {
    Ok(service(raw)?.expect("the matrix requires a service"))
}

/// A real server as `-t/-u` and `-r` name it.
struct RealServer {
    service: ServiceKey,
    addr: IpAddr,
    port: u16,
}

/// `-t/-u` and `-r` together; without a port, the real server takes the virtual port.
fn server(raw: &Raw) -> Result<RealServer, CliError> {
    let key = required_service(raw)?;
    let text = raw
        .value(Opt::Server)
        .expect("the matrix requires a real server");
    let Some(HostPort { addr, port }) = parse_host_port(text, key.protocol)? else {
        return fail("illegal real server address[:port] specified");
    };
    if let Some(long) = raw.long_name(Opt::Forward) {
        match long {
            "masquerading" => {}
            "gatewaying" => return fail(
                "rvs implements masquerading (NAT, -m) only: -g (gatewaying, direct routing) is not supported",
            ),
            _ => return fail(
                "rvs implements masquerading (NAT, -m) only: -i (ipip, tunneling) is not supported",
            ),
        }
    }
    // The kernel refuses to add or edit a real server of the other family for masquerading
    // (a delete of one is answered "No such destination", by the daemon).
    if raw.cmd != Some(Cmd::DelServer) {
        if let Some(why) = family_refusal(key.addr, addr) {
            return fail(why);
        }
    }
    Ok(RealServer {
        service: key,
        addr,
        port: port.unwrap_or(key.port),
    })
}

fn scheduler(raw: &Raw) -> Result<Option<SchedulerKind>, CliError> {
    let Some(name) = raw.value(Opt::Scheduler) else {
        return Ok(None);
    };
    match SchedulerKind::from_name(name) {
        Some(kind) => Ok(Some(kind)),
        None => {
            let known: Vec<&str> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
            fail(format!(
                "Scheduler not found: '{name}' (one of {})",
                known.join(", ")
            ))
        }
    }
}

/// What `-p 0` means: an error for `-A`; for `-E` (an rvsadm extension), persistence off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZeroPersistence {
    Illegal,
    TurnsOff,
}

/// `-p [timeout]`: `None` when not given.
fn persistence(raw: &Raw, zero: ZeroPersistence) -> Result<Option<u32>, CliError> {
    if !raw.has(Opt::Persistent) {
        return Ok(None);
    }
    let min = match zero {
        ZeroPersistence::Illegal => 1,
        ZeroPersistence::TurnsOff => 0,
    };
    match raw.value(Opt::Persistent) {
        Some(v) => timeout_value(v, min).map(Some),
        None => Ok(Some(DEFAULT_PERSISTENCE)),
    }
}

/// `-M`: a dotted netmask for an IPv4 service, a prefix length 1..128 for an IPv6 one, with
/// ipvsadm's messages. ipvsadm reads `-M` by the family of a `-t/-u` given before it (an IPv6
/// prefix given before the service is misread there); rvsadm reads it by the service's family
/// wherever it stands.
fn netmask(raw: &Raw, service: IpAddr) -> Result<Option<Netmask>, CliError> {
    let Some(v) = raw.value(Opt::Netmask) else {
        return Ok(None);
    };
    match service {
        IpAddr::V4(_) => v
            .parse()
            .map(|m| Some(Netmask::V4(m)))
            .map_err(|_| CliError("illegal virtual server persistent mask specified".into())),
        IpAddr::V6(_) => match number(v, 1, 128) {
            Some(len) => Ok(Some(Netmask::V6(len as u8))),
            None => fail("illegal ipv6 netmask specified"),
        },
    }
}

/// `-b flag[,flag...]`, as ipvsadm's parse_sched_flags (checked against the scheduler by
/// [`check_sched_flags`] once the scheduler is known).
fn sched_flags(raw: &Raw) -> Result<Option<SchedFlags>, CliError> {
    let Some(text) = raw.value(Opt::SchedFlags) else {
        return Ok(None);
    };
    let mut flags = SchedFlags::default();
    let mut names = text.split(',').filter(|n| !n.is_empty()).peekable();
    if names.peek().is_none() {
        return fail(format!("invalid scheduler flag `{text}'"));
    }
    for name in names {
        if matches!(name, "flag-1" | "flag-2" | "flag-3") {
            return fail(format!(
                "rvs does not support the generic scheduler flag `{name}' \
                 (only sh-fallback, sh-port, mh-fallback and mh-port)"
            ));
        }
        if !flags.set(name) {
            return fail(format!("invalid scheduler flag `{name}'"));
        }
    }
    Ok(Some(flags))
}

fn weight(raw: &Raw) -> Result<Option<u32>, CliError> {
    raw.value(Opt::Weight)
        .map(|v| number(v, 0, 65535).ok_or_else(|| CliError("illegal weight specified".into())))
        .transpose()
}

fn threshold(raw: &Raw, opt: Opt) -> Result<Option<u32>, CliError> {
    let which = if opt == Opt::UThreshold { 'u' } else { 'l' };
    raw.value(opt)
        .map(|v| {
            number(v, 0, i32::MAX as u32)
                .ok_or_else(|| CliError(format!("illegal {which}_threshold specified")))
        })
        .transpose()
}

fn timeout_value(text: &str, min: u32) -> Result<u32, CliError> {
    number(text, min, MAX_TIMEOUT)
        .ok_or_else(|| CliError(format!("invalid timeout value `{text}' specified")))
}
