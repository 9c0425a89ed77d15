//! ipvsadm's grammar as data: its commands and options, the matrix of which options each
//! command takes, and every option rvsadm knows, short and long.

/// ipvsadm's commands, in the order of its `cmdnames` (plus help and version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cmd {
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
    /// `--start-daemon master|backup`
    StartDaemon,
    /// `--stop-daemon master|backup`
    StopDaemon,
}

impl Cmd {
    /// The name ipvsadm's messages use (`-C` is "flush" there).
    pub(super) fn name(self) -> &'static str {
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
            Cmd::StartDaemon => "start-daemon",
            Cmd::StopDaemon => "stop-daemon",
        }
    }

    /// ipvsadm's `commands_v_options` row, one mark per [`Opt`] in order:
    /// `+` required, `x` illegal, `1` at most one of the `1`s, `.` optional.
    pub(super) fn matrix(self) -> &'static str {
        //                          n c s s p M r f w x y t s r t n e o b c d m s
        //                          u o v c e a e w e u l i t a h o x p   o a c y
        //                          m n c h r s a d i t t m a t r s a s   u e a n
        match self {
            Cmd::AddService | Cmd::EditService => "xx+...xxxxxxxxxxx..xxxx",
            Cmd::DelService => "xx+xxxxxxxxxxxxxxxxxxxx",
            Cmd::List => ".11xxxxxxxx1.....xx11xx",
            Cmd::AddServer | Cmd::EditServer => "xx+xxx+....xxxxxxxxxxxx",
            Cmd::DelServer => "xx+xxx+xxxxxxxxxxxxxxxx",
            Cmd::Save => ".xxxxxxxxxxxxxxxxxxxxxx",
            Cmd::Zero => "xx.xxxxxxxxxxxxxxxxxxxx",
            Cmd::StartDaemon => "xxxxxxxxxxxxxxxxxxxxx..",
            Cmd::Clear | Cmd::Set | Cmd::Restore | Cmd::Help | Cmd::Version | Cmd::StopDaemon => {
                "xxxxxxxxxxxxxxxxxxxxxxx"
            }
        }
    }
}

/// ipvsadm's options (those rvs implements), in the order of its `optnames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opt {
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
    /// `-o`: one-packet scheduling (UDP services).
    Ops,
    SchedFlags,
    /// rvs's own: `-L --counters`.
    Counters,
    /// `-L --daemon`
    Daemon,
    /// `--mcast-interface IF` (with `--start-daemon`)
    McastInterface,
    /// `--syncid N` (with `--start-daemon`)
    SyncId,
}

pub(super) const OPT_COUNT: usize = 23;

pub(super) const ALL_OPTS: [Opt; OPT_COUNT] = [
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
    Opt::Ops,
    Opt::SchedFlags,
    Opt::Counters,
    Opt::Daemon,
    Opt::McastInterface,
    Opt::SyncId,
];

impl Opt {
    /// The name ipvsadm's messages use.
    pub(super) fn name(self) -> &'static str {
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
            Opt::Ops => "ops",
            Opt::SchedFlags => "sched-flags",
            Opt::Counters => "counters",
            Opt::Daemon => "daemon",
            Opt::McastInterface => "mcast-interface",
            Opt::SyncId => "syncid",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arg {
    None,
    Required,
    /// Taken from the same word (`-p300`, `--persistent=300`) or from the next word when that
    /// does not start with `-` (popt's POPT_ARGFLAG_OPTIONAL).
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Cmd(Cmd),
    Opt(Opt),
    /// `--socket PATH`: rvsadm's own, allowed with every command.
    Socket,
    /// `--sort`: the default; accepted for compatibility.
    NoOp,
    /// ipvsadm knows it, rvs does not do it: the message says so.
    Unsupported(&'static str),
}

pub(super) struct OptDef {
    pub(super) short: Option<char>,
    pub(super) long: &'static str,
    pub(super) arg: Arg,
    pub(super) kind: Kind,
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
// ipvsadm takes -6 only after -f (an IPv6 firewall-mark service); rvs has no -f, whose refusal
// comes first when it is given first. IPv6 services are given as -t|-u [addr]:port.
const SIX_BEFORE_F: &str = "-6 used before -f (rvs does not support firewall-mark services: \
     give an IPv6 service as -t|-u [addr]:port)";
const NO_PE: &str = "rvs does not support persistence engines (--pe)";
const NO_PERSISTENT_CONN: &str = "rvs does not report persistent connections (--persistent-conn)";

/// Every option rvsadm knows, short and long.
#[rustfmt::skip]
pub(super) const OPTIONS: &[OptDef] = &[
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
    def(Some('6'), "ipv6",            Arg::None,     Kind::Unsupported(SIX_BEFORE_F)),
    def(Some('o'), "ops",             Arg::None,     Kind::Opt(Opt::Ops)),
    def(Some('b'), "sched-flags",     Arg::Required, Kind::Opt(Opt::SchedFlags)),
    def(None,      "counters",        Arg::None,     Kind::Opt(Opt::Counters)),
    def(None,      "pe",              Arg::Required, Kind::Unsupported(NO_PE)),
    def(None,      "persistent-conn", Arg::None,     Kind::Unsupported(NO_PERSISTENT_CONN)),
    def(None,      "start-daemon",    Arg::Required, Kind::Cmd(Cmd::StartDaemon)),
    def(None,      "stop-daemon",     Arg::Required, Kind::Cmd(Cmd::StopDaemon)),
    def(None,      "daemon",          Arg::None,     Kind::Opt(Opt::Daemon)),
    def(None,      "mcast-interface", Arg::Required, Kind::Opt(Opt::McastInterface)),
    def(None,      "syncid",          Arg::Required, Kind::Opt(Opt::SyncId)),
];

pub(super) const TRY_HELP: &str = "Try `rvsadm -h' or 'rvsadm --help' for more information.";

#[cfg(test)]
mod tests {
    use super::*;

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
            Cmd::StartDaemon,
            Cmd::StopDaemon,
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
}
