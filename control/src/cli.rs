//! rvsadm's command line: ipvsadm 1.31's grammar, parsed into a [`Command`].
//!
//! Hand-written rather than clap because ipvsadm's grammar is its own: `-p` takes an optional
//! value, short options bundle (`-Ln`), which options a command takes is a matrix, and the error
//! messages are ipvsadm's word for word, so people and scripts used to ipvsadm feel at home.
//!
//! Parsing is pure apart from name lookups (`/etc/services`, host names); nothing here talks to
//! the daemon. `-E`/`-e` become edits that [`Table::resolve`] merges with the current state.

use crate::format::{ListFormat, View};
use crate::model::{
    default_netmask, DestSpec, Forward, Protocol, SchedFlags, SchedulerKind, ServiceKey,
    ServiceSpec, ServiceStatus, Timeouts,
};
use crate::proto::Request;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, ToSocketAddrs};

/// Why a command cannot be sent: a malformed command line or restore line (rvsadm exits with
/// status 2), or an edit that does not fit the daemon's current state (status 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(message.into()))
}

/// The persistence timeout `-p` gives without a value (ipvsadm's IPVS_SVC_PERSISTENT_TIMEOUT).
pub const DEFAULT_PERSISTENCE: u32 = 360;

/// The longest timeout ipvsadm accepts, for `-p` and `--set`: 31 days.
pub const MAX_TIMEOUT: u32 = 86400 * 31;

/// The scheduler `-A` uses without `-s`, as in ipvsadm.
pub const DEFAULT_SCHEDULER: SchedulerKind = SchedulerKind::Wlc;

/// What one rvsadm call asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A change to the table: `-A -E -D -a -e -d -C -Z --set`.
    Change(Change),
    /// `-L` / `-l`
    List(ListCommand),
    /// `-S`
    Save,
    /// `-R`: the changes come from stdin, see [`parse_restore`].
    Restore,
    /// `-h`
    Help,
    /// `-v`
    Version,
}

/// A change, as the command line gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Sent to the daemon as it is.
    Apply(Request),
    /// `-E`: merged with the current service first.
    EditService(ServiceEdit),
    /// `-e`: merged with the current real server first.
    EditDest(DestEdit),
}

/// What `-L` lists.
#[derive(Debug, Clone, PartialEq)]
pub enum ListCommand {
    /// The services (all, or the one selected with `-t`/`-u`).
    Services {
        service: Option<ServiceKey>,
        format: ListFormat,
    },
    /// `-c`
    Conns,
    /// `--timeout`
    Timeouts,
    /// `--counters` (an rvs extension): every dataplane counter by name.
    Counters,
}

/// `-E`: the fields given on the command line; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEdit {
    pub key: ServiceKey,
    pub scheduler: Option<SchedulerKind>,
    /// `Some(0)` (`-p 0`, an rvsadm extension) turns persistence off.
    pub persistence: Option<u32>,
    pub netmask: Option<Ipv4Addr>,
    /// `-b`: replaces the flags. Without it the flags are kept, less those that do not
    /// belong to the (new) scheduler.
    pub sched_flags: Option<SchedFlags>,
}

impl ServiceEdit {
    /// The service as it will be after the edit.
    pub fn apply(&self, current: &ServiceSpec) -> Result<ServiceSpec, CliError> {
        let mut spec = current.clone();
        if let Some(s) = self.scheduler {
            spec.scheduler = s;
        }
        if let Some(p) = self.persistence {
            spec.persistence = (p != 0).then_some(p);
        }
        if let Some(m) = self.netmask {
            spec.netmask = m;
        }
        spec.sched_flags = match self.sched_flags {
            Some(flags) => check_sched_flags(flags, spec.scheduler)?,
            None => spec.sched_flags.retain_for(spec.scheduler),
        };
        check_zero_port(&spec)?;
        Ok(spec)
    }
}

/// `-e`: the fields given on the command line; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestEdit {
    pub service: ServiceKey,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub weight: Option<u32>,
    pub upper_threshold: Option<u32>,
    pub lower_threshold: Option<u32>,
}

impl DestEdit {
    /// The real server as it will be after the edit.
    pub fn apply(&self, current: &DestSpec) -> Result<DestSpec, CliError> {
        let mut dest = current.clone();
        if let Some(w) = self.weight {
            dest.weight = w;
        }
        if let Some(x) = self.upper_threshold {
            dest.upper_threshold = x;
        }
        if let Some(y) = self.lower_threshold {
            dest.lower_threshold = y;
        }
        check_thresholds(&dest)?;
        Ok(dest)
    }
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub command: Command,
    /// `--socket PATH`, when given.
    pub socket: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The grammar tables.

/// ipvsadm's commands, in the order of its `cmdnames` (plus help and version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    AddService,
    EditService,
    DelService,
    Clear,
    List,
    AddServer,
    DelServer,
    EditServer,
    Set,
    Restore,
    Save,
    Zero,
    Help,
    Version,
}

impl Cmd {
    /// The name ipvsadm's messages use (`-C` is "flush" there).
    fn name(self) -> &'static str {
        match self {
            Cmd::AddService => "add-service",
            Cmd::EditService => "edit-service",
            Cmd::DelService => "delete-service",
            Cmd::Clear => "flush",
            Cmd::List => "list",
            Cmd::AddServer => "add-server",
            Cmd::DelServer => "delete-server",
            Cmd::EditServer => "edit-server",
            Cmd::Set => "set",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::Help => "help",
            Cmd::Version => "version",
        }
    }

    /// ipvsadm's `commands_v_options` row, one mark per [`Opt`] in order:
    /// `+` required, `x` illegal, `1` at most one of the `1`s, `.` optional.
    fn matrix(self) -> &'static str {
        //                          n c s s p M r f w x y t s r t n e b c
        //                          u o v c e a e w e u l i t a h o x   o
        //                          m n c h r s a d i t t m a t r s a   u
        match self {
            Cmd::AddService | Cmd::EditService => "xx+...xxxxxxxxxxx.x",
            Cmd::DelService => "xx+xxxxxxxxxxxxxxxx",
            Cmd::List => ".11xxxxxxxx1.....x1",
            Cmd::AddServer | Cmd::EditServer => "xx+xxx+....xxxxxxxx",
            Cmd::DelServer => "xx+xxx+xxxxxxxxxxxx",
            Cmd::Save => ".xxxxxxxxxxxxxxxxxx",
            Cmd::Zero => "xx.xxxxxxxxxxxxxxxx",
            Cmd::Clear | Cmd::Set | Cmd::Restore | Cmd::Help | Cmd::Version => {
                "xxxxxxxxxxxxxxxxxxx"
            }
        }
    }
}

/// ipvsadm's options (those rvs implements), in the order of its `optnames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    Timeout,
    Stats,
    Rate,
    Thresholds,
    NoSort,
    Exact,
    SchedFlags,
    /// rvs's own: `-L --counters`.
    Counters,
}

const OPT_COUNT: usize = 19;

const ALL_OPTS: [Opt; OPT_COUNT] = [
    Opt::Numeric,
    Opt::Connection,
    Opt::Service,
    Opt::Scheduler,
    Opt::Persistent,
    Opt::Netmask,
    Opt::Server,
    Opt::Forward,
    Opt::Weight,
    Opt::UThreshold,
    Opt::LThreshold,
    Opt::Timeout,
    Opt::Stats,
    Opt::Rate,
    Opt::Thresholds,
    Opt::NoSort,
    Opt::Exact,
    Opt::SchedFlags,
    Opt::Counters,
];

impl Opt {
    /// The name ipvsadm's messages use.
    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::Server => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::UThreshold => "u-threshold",
            Opt::LThreshold => "l-threshold",
            Opt::Timeout => "timeout",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::Thresholds => "thresholds",
            Opt::NoSort => "nosort",
            Opt::Exact => "exact",
            Opt::SchedFlags => "sched-flags",
            Opt::Counters => "counters",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    /// Taken from the same word (`-p300`, `--persistent=300`) or from the next word when that
    /// does not start with `-` (popt's POPT_ARGFLAG_OPTIONAL).
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cmd(Cmd),
    Opt(Opt),
    /// `--socket PATH`: rvsadm's own, allowed with every command.
    Socket,
    /// `--sort`: the default; accepted for compatibility.
    NoOp,
    /// ipvsadm knows it, rvs does not do it: the message says so.
    Unsupported(&'static str),
}

struct OptDef {
    short: Option<char>,
    long: &'static str,
    arg: Arg,
    kind: Kind,
}

const fn def(short: Option<char>, long: &'static str, arg: Arg, kind: Kind) -> OptDef {
    OptDef {
        short,
        long,
        arg,
        kind,
    }
}

// What rvsadm says about ipvsadm options rvs does not implement.
const NO_FWMARK: &str =
    "rvs does not support firewall-mark services (-f): give the service as -t or -u host:port";
const NO_IPV6: &str = "IPv6 is not supported by rvs yet";
const NO_OPS: &str = "rvs does not support one-packet scheduling (-o)";
const NO_PE: &str = "rvs does not support persistence engines (--pe)";
const NO_PERSISTENT_CONN: &str = "rvs does not report persistent connections (--persistent-conn)";
const NO_SYNC: &str = "rvs has no connection synchronisation daemon \
     (--start-daemon, --stop-daemon, --daemon, --mcast-interface, --syncid)";

/// Every option rvsadm knows, short and long.
#[rustfmt::skip]
const OPTIONS: &[OptDef] = &[
    def(Some('A'), "add-service",     Arg::None,     Kind::Cmd(Cmd::AddService)),
    def(Some('E'), "edit-service",    Arg::None,     Kind::Cmd(Cmd::EditService)),
    def(Some('D'), "delete-service",  Arg::None,     Kind::Cmd(Cmd::DelService)),
    def(Some('C'), "clear",           Arg::None,     Kind::Cmd(Cmd::Clear)),
    def(Some('L'), "list",            Arg::None,     Kind::Cmd(Cmd::List)),
    def(Some('l'), "list",            Arg::None,     Kind::Cmd(Cmd::List)),
    def(Some('Z'), "zero",            Arg::None,     Kind::Cmd(Cmd::Zero)),
    def(Some('a'), "add-server",      Arg::None,     Kind::Cmd(Cmd::AddServer)),
    def(Some('e'), "edit-server",     Arg::None,     Kind::Cmd(Cmd::EditServer)),
    def(Some('d'), "delete-server",   Arg::None,     Kind::Cmd(Cmd::DelServer)),
    def(None,      "set",             Arg::None,     Kind::Cmd(Cmd::Set)),
    def(Some('R'), "restore",         Arg::None,     Kind::Cmd(Cmd::Restore)),
    def(Some('S'), "save",            Arg::None,     Kind::Cmd(Cmd::Save)),
    def(Some('h'), "help",            Arg::None,     Kind::Cmd(Cmd::Help)),
    def(Some('v'), "version",         Arg::None,     Kind::Cmd(Cmd::Version)),
    def(Some('t'), "tcp-service",     Arg::Required, Kind::Opt(Opt::Service)),
    def(Some('u'), "udp-service",     Arg::Required, Kind::Opt(Opt::Service)),
    def(Some('s'), "scheduler",       Arg::Required, Kind::Opt(Opt::Scheduler)),
    def(Some('p'), "persistent",      Arg::Optional, Kind::Opt(Opt::Persistent)),
    def(Some('M'), "netmask",         Arg::Required, Kind::Opt(Opt::Netmask)),
    def(Some('r'), "real-server",     Arg::Required, Kind::Opt(Opt::Server)),
    def(Some('m'), "masquerading",    Arg::None,     Kind::Opt(Opt::Forward)),
    def(Some('g'), "gatewaying",      Arg::None,     Kind::Opt(Opt::Forward)),
    def(Some('i'), "ipip",            Arg::None,     Kind::Opt(Opt::Forward)),
    def(Some('w'), "weight",          Arg::Required, Kind::Opt(Opt::Weight)),
    def(Some('x'), "u-threshold",     Arg::Required, Kind::Opt(Opt::UThreshold)),
    def(Some('y'), "l-threshold",     Arg::Required, Kind::Opt(Opt::LThreshold)),
    def(Some('n'), "numeric",         Arg::None,     Kind::Opt(Opt::Numeric)),
    def(Some('c'), "connection",      Arg::None,     Kind::Opt(Opt::Connection)),
    def(None,      "timeout",         Arg::None,     Kind::Opt(Opt::Timeout)),
    def(None,      "stats",           Arg::None,     Kind::Opt(Opt::Stats)),
    def(None,      "rate",            Arg::None,     Kind::Opt(Opt::Rate)),
    def(None,      "thresholds",      Arg::None,     Kind::Opt(Opt::Thresholds)),
    def(None,      "nosort",          Arg::None,     Kind::Opt(Opt::NoSort)),
    def(Some('X'), "exact",           Arg::None,     Kind::Opt(Opt::Exact)),
    def(None,      "sort",            Arg::None,     Kind::NoOp),
    def(None,      "socket",          Arg::Required, Kind::Socket),
    def(Some('f'), "fwmark-service",  Arg::Required, Kind::Unsupported(NO_FWMARK)),
    def(Some('6'), "ipv6",            Arg::None,     Kind::Unsupported(NO_IPV6)),
    def(Some('o'), "ops",             Arg::None,     Kind::Unsupported(NO_OPS)),
    def(Some('b'), "sched-flags",     Arg::Required, Kind::Opt(Opt::SchedFlags)),
    def(None,      "counters",        Arg::None,     Kind::Opt(Opt::Counters)),
    def(None,      "pe",              Arg::Required, Kind::Unsupported(NO_PE)),
    def(None,      "persistent-conn", Arg::None,     Kind::Unsupported(NO_PERSISTENT_CONN)),
    def(None,      "start-daemon",    Arg::Required, Kind::Unsupported(NO_SYNC)),
    def(None,      "stop-daemon",     Arg::Required, Kind::Unsupported(NO_SYNC)),
    def(None,      "daemon",          Arg::None,     Kind::Unsupported(NO_SYNC)),
    def(None,      "mcast-interface", Arg::Required, Kind::Unsupported(NO_SYNC)),
    def(None,      "syncid",          Arg::Required, Kind::Unsupported(NO_SYNC)),
];

const TRY_HELP: &str = "Try `rvsadm -h' or 'rvsadm --help' for more information.";

// ---------------------------------------------------------------------------------------------
// Tokenising: words -> command + options + positional arguments.

/// The words of one call, sorted out but not yet interpreted.
#[derive(Default)]
struct Raw {
    cmd: Option<Cmd>,
    /// Per [`Opt`]: the option as written (which of `-m/-g/-i`, `-t/-u`) and its value.
    given: [Option<(&'static OptDef, Option<String>)>; OPT_COUNT],
    positional: Vec<String>,
    socket: Option<String>,
}

impl Raw {
    fn record(&mut self, def: &'static OptDef, value: Option<String>) -> Result<(), CliError> {
        match def.kind {
            Kind::Cmd(cmd) => {
                if self.cmd.is_some() {
                    return fail("multiple commands specified");
                }
                self.cmd = Some(cmd);
            }
            Kind::Opt(opt) => {
                let slot = &mut self.given[opt as usize];
                if slot.is_some() {
                    return fail(format!("multiple '{}' options specified", opt.name()));
                }
                *slot = Some((def, value));
            }
            Kind::Socket => {
                if self.socket.is_some() {
                    return fail("multiple 'socket' options specified");
                }
                self.socket = value;
            }
            Kind::NoOp => {}
            Kind::Unsupported(message) => return fail(message),
        }
        Ok(())
    }

    fn has(&self, opt: Opt) -> bool {
        self.given[opt as usize].is_some()
    }

    /// The value of an option that takes one (`None`: not given, or `-p` without a value).
    fn value(&self, opt: Opt) -> Option<&str> {
        self.given[opt as usize]
            .as_ref()
            .and_then(|(_, v)| v.as_deref())
    }

    fn long_name(&self, opt: Opt) -> Option<&'static str> {
        self.given[opt as usize].as_ref().map(|(d, _)| d.long)
    }
}

fn tokenize<S: AsRef<str>>(args: &[S]) -> Result<Raw, CliError> {
    let mut raw = Raw::default();
    let mut words = args.iter().map(|s| s.as_ref()).peekable();
    while let Some(word) = words.next() {
        if word == "--" {
            raw.positional.extend(words.by_ref().map(str::to_string));
        } else if let Some(body) = word.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let def = OPTIONS
                .iter()
                .find(|d| d.long == name)
                .ok_or_else(|| CliError(format!("{word}: unknown option\n{TRY_HELP}")))?;
            let value = match def.arg {
                Arg::None if inline.is_some() => {
                    return fail(format!("--{name}: option does not take an argument"))
                }
                Arg::None => None,
                Arg::Required => Some(match inline {
                    Some(v) => v,
                    None => required_value(&mut words, word)?,
                }),
                Arg::Optional => inline.or_else(|| optional_value(&mut words)),
            };
            raw.record(def, value)?;
        } else if word.len() > 1 && word.starts_with('-') {
            let letters = &word[1..];
            for (at, letter) in letters.char_indices() {
                let def = OPTIONS
                    .iter()
                    .find(|d| d.short == Some(letter))
                    .ok_or_else(|| CliError(format!("-{letter}: unknown option\n{TRY_HELP}")))?;
                if def.arg == Arg::None {
                    raw.record(def, None)?;
                    continue;
                }
                // The rest of the word is the value (`-w5`, `-p300`), else the next word.
                let rest = &letters[at + letter.len_utf8()..];
                let value = if !rest.is_empty() {
                    Some(rest.to_string())
                } else if def.arg == Arg::Required {
                    Some(required_value(&mut words, &format!("-{letter}"))?)
                } else {
                    optional_value(&mut words)
                };
                raw.record(def, value)?;
                break;
            }
        } else {
            raw.positional.push(word.to_string());
        }
    }
    Ok(raw)
}

fn required_value<'a>(
    words: &mut impl Iterator<Item = &'a str>,
    option: &str,
) -> Result<String, CliError> {
    match words.next() {
        Some(v) => Ok(v.to_string()),
        None => fail(format!("{option}: missing argument")),
    }
}

fn optional_value<'a, I: Iterator<Item = &'a str>>(
    words: &mut std::iter::Peekable<I>,
) -> Option<String> {
    words.next_if(|w| !w.starts_with('-')).map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// Checking and building the command.

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
            let spec = ServiceSpec {
                key: required_service(raw)?,
                scheduler,
                persistence: persistence(raw, 1)?,
                netmask: netmask(raw)?.unwrap_or_else(default_netmask),
                sched_flags: match sched_flags(raw)? {
                    Some(flags) => check_sched_flags(flags, scheduler)?,
                    None => SchedFlags::default(),
                },
            };
            check_zero_port(&spec)?;
            change(Request::AddService(spec))
        }
        Cmd::EditService => Ok(Command::Change(Change::EditService(ServiceEdit {
            key: required_service(raw)?,
            scheduler: scheduler(raw)?,
            persistence: persistence(raw, 0)?,
            netmask: netmask(raw)?,
            sched_flags: sched_flags(raw)?,
        }))),
        Cmd::DelService => change(Request::DelService(required_service(raw)?)),
        Cmd::AddServer => {
            let (service, addr, port) = server(raw)?;
            let dest = DestSpec {
                addr,
                port,
                weight: weight(raw)?.unwrap_or(1),
                forward: Forward::Masq,
                upper_threshold: threshold(raw, Opt::UThreshold)?.unwrap_or(0),
                lower_threshold: threshold(raw, Opt::LThreshold)?.unwrap_or(0),
            };
            check_thresholds(&dest)?;
            change(Request::AddDest { service, dest })
        }
        Cmd::EditServer => {
            let (service, addr, port) = server(raw)?;
            Ok(Command::Change(Change::EditDest(DestEdit {
                service,
                addr,
                port,
                weight: weight(raw)?,
                upper_threshold: threshold(raw, Opt::UThreshold)?,
                lower_threshold: threshold(raw, Opt::LThreshold)?,
            })))
        }
        Cmd::DelServer => {
            let (service, addr, port) = server(raw)?;
            change(Request::DelDest {
                service,
                addr,
                port,
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
        Some((addr, port)) => Ok(Some(ServiceKey {
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

/// `-t/-u` and `-r` together; without a port, the real server takes the virtual port.
fn server(raw: &Raw) -> Result<(ServiceKey, Ipv4Addr, u16), CliError> {
    let key = required_service(raw)?;
    let text = raw
        .value(Opt::Server)
        .expect("the matrix requires a real server");
    let Some((addr, port)) = parse_host_port(text, key.protocol)? else {
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
    Ok((key, addr, port.unwrap_or(key.port)))
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

/// `-p [timeout]`: `None` when not given; `min` is 1 for `-A`, 0 for `-E` (where 0 turns
/// persistence off).
fn persistence(raw: &Raw, min: u32) -> Result<Option<u32>, CliError> {
    if !raw.has(Opt::Persistent) {
        return Ok(None);
    }
    match raw.value(Opt::Persistent) {
        Some(v) => timeout_value(v, min).map(Some),
        None => Ok(Some(DEFAULT_PERSISTENCE)),
    }
}

fn netmask(raw: &Raw) -> Result<Option<Ipv4Addr>, CliError> {
    raw.value(Opt::Netmask)
        .map(|v| {
            v.parse()
                .map_err(|_| CliError("illegal virtual server persistent mask specified".into()))
        })
        .transpose()
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

/// The flags, if they all belong to `scheduler` (ipvsadm's "incompatible scheduler flag").
fn check_sched_flags(flags: SchedFlags, scheduler: SchedulerKind) -> Result<SchedFlags, CliError> {
    match flags.incompatible_with(scheduler) {
        Some(flag) => fail(format!("incompatible scheduler flag `{flag}'")),
        None => Ok(flags),
    }
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

/// A decimal number in `min..=max` (ipvsadm's string_to_number).
fn number(text: &str, min: u32, max: u32) -> Option<u32> {
    let n: i64 = text.parse().ok()?;
    u32::try_from(n).ok().filter(|n| (min..=max).contains(n))
}

fn check_zero_port(spec: &ServiceSpec) -> Result<(), CliError> {
    if spec.key.port == 0 && spec.persistence.is_none() {
        return fail("Zero port specified for non-persistent service");
    }
    Ok(())
}

fn check_thresholds(dest: &DestSpec) -> Result<(), CliError> {
    if dest.lower_threshold > dest.upper_threshold {
        return fail(format!(
            "the lower threshold (-y {}) is higher than the upper threshold (-x {})",
            dest.lower_threshold, dest.upper_threshold
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Addresses and ports.

/// `host[:port]` as ipvsadm's parse_service reads it: `Ok(None)` when malformed (the caller
/// names what was malformed), the port `None` when not given.
fn parse_host_port(
    text: &str,
    protocol: Protocol,
) -> Result<Option<(Ipv4Addr, Option<u16>)>, CliError> {
    if text.starts_with('[') || text.parse::<Ipv6Addr>().is_ok() {
        return fail(NO_IPV6);
    }
    // ipvsadm refuses a bare number, which would otherwise read as a 32-bit address.
    if text.is_empty() || text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text, None),
    };
    let Some(addr) = host.parse().ok().or_else(|| resolve_host(host)) else {
        return Ok(None);
    };
    let port = match port {
        None => None,
        Some(p) => match number(p, 0, 65535).or_else(|| service_port(p, protocol).map(u32::from)) {
            Some(n) => Some(n as u16),
            None => return Ok(None),
        },
    };
    Ok(Some((addr, port)))
}

/// A host name's first IPv4 address.
fn resolve_host(host: &str) -> Option<Ipv4Addr> {
    if host.is_empty() {
        return None;
    }
    (host, 0).to_socket_addrs().ok()?.find_map(|a| match a {
        std::net::SocketAddr::V4(v4) => Some(*v4.ip()),
        std::net::SocketAddr::V6(_) => None,
    })
}

/// Ports of well-known services for systems without `/etc/services`.
const BUILTIN_SERVICES: &[(&str, u16)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("smtp", 25),
    ("domain", 53),
    ("http", 80),
    ("www", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("ldap", 389),
    ("https", 443),
    ("imaps", 993),
    ("pop3s", 995),
    ("mysql", 3306),
    ("postgresql", 5432),
];

/// A service name's port, from `/etc/services` as getservbyname reads it, or from a small
/// built-in table when that file is missing.
fn service_port(name: &str, protocol: Protocol) -> Option<u16> {
    match std::fs::read_to_string("/etc/services") {
        Ok(text) => port_in_services(&text, name, protocol),
        Err(_) => BUILTIN_SERVICES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p),
    }
}

/// Looks `name` (or an alias) up in `/etc/services` text for the given protocol.
fn port_in_services(text: &str, name: &str, protocol: Protocol) -> Option<u16> {
    let proto = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let primary = fields.next()?;
        let (port, p) = fields.next()?.split_once('/')?;
        let matches = primary == name || fields.any(|alias| alias == name);
        (matches && p == proto).then(|| port.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// -R: restore input.

/// Parses `-R` input: one command per line, each a change (`-A -E -D -a -e -d -C -Z --set`).
/// A leading `ipvsadm`/`rvsadm` word is skipped, `#` starts a comment, blank lines are skipped.
/// Every line is checked before any is returned; an error names the first bad line (1-based).
pub fn parse_restore(text: &str) -> Result<Vec<(usize, Change)>, CliError> {
    let mut changes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let at = |e: CliError| CliError(format!("line {number}: {e}"));
        let code = line.split('#').next().unwrap_or("");
        let mut words: Vec<&str> = code.split_whitespace().collect();
        if words
            .first()
            .is_some_and(|w| matches!(w.rsplit('/').next(), Some("ipvsadm" | "rvsadm")))
        {
            words.remove(0);
        }
        if words.is_empty() {
            continue;
        }
        let invocation = parse_args(&words).map_err(at)?;
        if invocation.socket.is_some() {
            return Err(at(CliError(
                "--socket is not allowed in restore input".into(),
            )));
        }
        match invocation.command {
            Command::Change(change) => changes.push((number, change)),
            _ => {
                return Err(at(CliError(
                    "only -A, -E, -D, -a, -e, -d, -C, -Z and --set can be restored".into(),
                )))
            }
        }
    }
    Ok(changes)
}

// ---------------------------------------------------------------------------------------------
// Merging edits with the daemon's state.

/// The services as the daemon reported them, kept up to date while a batch of changes is
/// resolved, so that `-E`/`-e` fill in what the command line leaves out, even for a service
/// added earlier in the same `-R` input.
#[derive(Debug, Clone, Default)]
pub struct Table {
    services: BTreeMap<ServiceKey, (ServiceSpec, Vec<DestSpec>)>,
}

impl Table {
    pub fn new(services: &[ServiceStatus]) -> Table {
        let services = services
            .iter()
            .map(|s| {
                let dests = s.dests.iter().map(|d| d.spec.clone()).collect();
                (s.spec.key, (s.spec.clone(), dests))
            })
            .collect();
        Table { services }
    }

    /// The request a change becomes; edits are merged with the current state, and the table
    /// is updated as the daemon will be. Errors use ipvsadm's wording for missing entries.
    pub fn resolve(&mut self, change: &Change) -> Result<Request, CliError> {
        let request = match change {
            Change::Apply(request) => request.clone(),
            Change::EditService(edit) => {
                let (current, _) = self
                    .services
                    .get(&edit.key)
                    .ok_or_else(|| CliError("No such service".into()))?;
                Request::EditService(edit.apply(current)?)
            }
            Change::EditDest(edit) => {
                let (_, dests) = self
                    .services
                    .get(&edit.service)
                    .ok_or_else(|| CliError("Service not defined".into()))?;
                let current = dests
                    .iter()
                    .find(|d| d.addr == edit.addr && d.port == edit.port)
                    .ok_or_else(|| CliError("No such destination".into()))?;
                Request::EditDest {
                    service: edit.service,
                    dest: edit.apply(current)?,
                }
            }
        };
        self.apply(&request);
        Ok(request)
    }

    fn apply(&mut self, request: &Request) {
        match request {
            Request::AddService(spec) => {
                self.services
                    .entry(spec.key)
                    .or_insert_with(|| (spec.clone(), Vec::new()));
            }
            Request::EditService(spec) => {
                if let Some(entry) = self.services.get_mut(&spec.key) {
                    entry.0 = spec.clone();
                }
            }
            Request::DelService(key) => {
                self.services.remove(key);
            }
            Request::AddDest { service, dest } | Request::EditDest { service, dest } => {
                if let Some((_, dests)) = self.services.get_mut(service) {
                    dests.retain(|d| (d.addr, d.port) != (dest.addr, dest.port));
                    dests.push(dest.clone());
                }
            }
            Request::DelDest {
                service,
                addr,
                port,
            } => {
                if let Some((_, dests)) = self.services.get_mut(service) {
                    dests.retain(|d| (d.addr, d.port) != (*addr, *port));
                }
            }
            Request::Clear => self.services.clear(),
            Request::List { .. }
            | Request::ListConns
            | Request::Zero { .. }
            | Request::SetTimeouts(_)
            | Request::GetTimeouts
            | Request::Counters => {}
        }
    }
}

impl Change {
    /// The service an edit changes: resolving it needs the daemon's current state.
    pub fn edited_service(&self) -> Option<ServiceKey> {
        match self {
            Change::Apply(_) => None,
            Change::EditService(e) => Some(e.key),
            Change::EditDest(e) => Some(e.service),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Help and version.

/// `rvsadm -v`
pub fn version() -> String {
    format!(
        "rvsadm v{} (ipvsadm 1.31 syntax, rvs control protocol {})\n",
        env!("CARGO_PKG_VERSION"),
        crate::proto::PROTOCOL_VERSION
    )
}

/// `rvsadm -h`, shaped like ipvsadm's.
pub fn usage() -> String {
    let schedulers: Vec<&str> = SchedulerKind::ALL.iter().map(|k| k.name()).collect();
    format!(
        "{version}\
Usage:
  rvsadm -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  rvsadm -D -t|u service-address
  rvsadm -C
  rvsadm -R
  rvsadm -S [-n]
  rvsadm -a|e -t|u service-address -r server-address [options]
  rvsadm -d -t|u service-address -r server-address
  rvsadm -L|l [options]
  rvsadm -Z [-t|u service-address]
  rvsadm --set tcp tcpfin udp
  rvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options (unspecified options are kept)
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options (unspecified options are kept)
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --help            -h        display this help message
  --version         -v        display the version

Options:
  --tcp-service  -t service-address   service-address is host[:port]
  --udp-service  -u service-address   service-address is host[:port]
  --scheduler    -s scheduler         one of {schedulers},
                                      the default scheduler is {default}.
  --persistent   -p [timeout]         persistent service (default {persist} s; -E -p 0 turns it off)
  --netmask      -M netmask           persistent granularity mask
  --sched-flags  -b flags             scheduler flags (comma-separated): sh-fallback,
                                      sh-port (sh), mh-fallback, mh-port (mh)
  --real-server  -r server-address    server-address is host (and port)
  --masquerading -m                   masquerading (NAT), the only method rvs implements (default)
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --counters                          output of rvsd's packet counters (rx, tx, drops by reason)
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact        -X                   expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --numeric      -n                   numeric output of addresses and ports (rvsadm always is)
  --socket       PATH                 rvsd's control socket (default ${env}, else {socket})

Not supported by rvs: -f (fwmark services), -g and -i (direct routing, tunneling), -6, -o,
--pe, --persistent-conn and the connection sync daemon options.
",
        version = version(),
        schedulers = schedulers.join("|"),
        default = DEFAULT_SCHEDULER,
        persist = DEFAULT_PERSISTENCE,
        env = crate::proto::SOCKET_ENV,
        socket = crate::proto::DEFAULT_SOCKET,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &str = "\
# comment line
http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP
domain\t\t53/tcp
domain\t\t53/udp
ntp\t\t123/udp
";

    #[test]
    fn services_file_lookup_by_name_alias_and_protocol() {
        assert_eq!(port_in_services(SERVICES, "http", Protocol::Tcp), Some(80));
        assert_eq!(port_in_services(SERVICES, "www", Protocol::Tcp), Some(80));
        assert_eq!(port_in_services(SERVICES, "http", Protocol::Udp), None);
        assert_eq!(
            port_in_services(SERVICES, "domain", Protocol::Udp),
            Some(53)
        );
        assert_eq!(port_in_services(SERVICES, "ntp", Protocol::Tcp), None);
        assert_eq!(port_in_services(SERVICES, "comment", Protocol::Tcp), None);
    }

    #[test]
    fn matrix_rows_cover_every_option() {
        for cmd in [
            Cmd::AddService,
            Cmd::EditService,
            Cmd::DelService,
            Cmd::Clear,
            Cmd::List,
            Cmd::AddServer,
            Cmd::DelServer,
            Cmd::EditServer,
            Cmd::Set,
            Cmd::Restore,
            Cmd::Save,
            Cmd::Zero,
            Cmd::Help,
            Cmd::Version,
        ] {
            assert_eq!(cmd.matrix().len(), OPT_COUNT, "{cmd:?}");
        }
        for (i, opt) in ALL_OPTS.iter().enumerate() {
            assert_eq!(*opt as usize, i);
        }
    }

    #[test]
    fn every_option_letter_and_name_is_unique() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                assert!(a.short.is_none() || a.short != b.short, "{}", a.long);
                // -L and -l share "list" on purpose; the first wins for --list.
                assert!(a.long != b.long || a.long == "list", "{}", a.long);
            }
        }
    }

    #[test]
    fn host_port_forms() {
        let p = |t| parse_host_port(t, Protocol::Tcp);
        let a: Ipv4Addr = "192.0.2.2".parse().unwrap();
        assert_eq!(p("192.0.2.2:8080"), Ok(Some((a, Some(8080)))));
        assert_eq!(p("192.0.2.2"), Ok(Some((a, None))));
        assert_eq!(p("192.0.2.2:0"), Ok(Some((a, Some(0)))));
        assert_eq!(p("192.0.2.2:65536"), Ok(None));
        assert_eq!(p("192.0.2.2:"), Ok(None));
        assert_eq!(p("12345"), Ok(None));
        assert_eq!(p(""), Ok(None));
        assert_eq!(
            p("[2001:db8::1]:80"),
            Err(CliError("IPv6 is not supported by rvs yet".into()))
        );
        assert_eq!(
            p("2001:db8::1"),
            Err(CliError("IPv6 is not supported by rvs yet".into()))
        );
    }

    #[test]
    fn host_names_resolve_to_ipv4() {
        assert_eq!(
            parse_host_port("localhost:80", Protocol::Tcp),
            Ok(Some((Ipv4Addr::LOCALHOST, Some(80))))
        );
    }
}
