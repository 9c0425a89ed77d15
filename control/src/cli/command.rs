//! What one rvsadm call asks for, and the checks a change must pass whether it comes whole
//! from the command line or from an edit merged with the daemon's state.

use super::{fail, CliError};
use crate::format::ListFormat;
use crate::model::{
    ops_refusal, DestSpec, Netmask, SchedFlags, SchedulerKind, ServiceKey, ServiceSpec,
};
use crate::proto::Request;
use std::net::IpAddr;

/// What one rvsadm call asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A change to the table: `-A -E -D -a -e -d -C -Z --set`.
    Change(Change),
    /// `-L` / `-l`
    List(ListCommand),
    /// `-S`
    Save,
    /// `-R`: the changes come from stdin, see [`parse_restore`](super::parse_restore).
    Restore,
    /// `-h`
    Help,
    /// `-v`
    Version,
    /// `--start-daemon` / `--stop-daemon`.
    Daemon(DaemonCommand),
}

/// `--start-daemon STATE [--mcast-interface IF] [--syncid N]` or `--stop-daemon STATE`: one of
/// the two sync daemons on or off. rvs's daemons run on `[sync]`'s interface and syncid; an
/// interface or syncid given here must be those (it is checked, never changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonCommand {
    pub start: bool,
    /// `master` (true) or `backup` (false).
    pub master: bool,
    pub interface: Option<String>,
    pub syncid: Option<u8>,
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
    /// `--daemon`: the sync daemons that run.
    Daemons,
}

/// `-E`: the fields given on the command line; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEdit {
    pub key: ServiceKey,
    pub scheduler: Option<SchedulerKind>,
    /// `Some(0)` (`-p 0`, an rvsadm extension) turns persistence off.
    pub persistence: Option<u32>,
    pub netmask: Option<Netmask>,
    /// `-b`: replaces the flags. Without it the flags are kept, less those that do not
    /// belong to the (new) scheduler.
    pub sched_flags: Option<SchedFlags>,
    /// `-o` turns one-packet scheduling on; without it, it stays as it is.
    pub ops: bool,
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
        spec.ops |= self.ops;
        check_zero_port(&spec)?;
        check_ops(&spec)?;
        Ok(spec)
    }
}

/// `-e`: the fields given on the command line; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestEdit {
    pub service: ServiceKey,
    pub addr: IpAddr,
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

/// The flags, if they all belong to `scheduler` (ipvsadm's "incompatible scheduler flag").
pub(super) fn check_sched_flags(
    flags: SchedFlags,
    scheduler: SchedulerKind,
) -> Result<SchedFlags, CliError> {
    match flags.incompatible_with(scheduler) {
        Some(flag) => fail(format!("incompatible scheduler flag `{flag}'")),
        None => Ok(flags),
    }
}

pub(super) fn check_zero_port(spec: &ServiceSpec) -> Result<(), CliError> {
    if spec.key.port == 0 && spec.persistence.is_none() {
        return fail("Zero port specified for non-persistent service");
    }
    Ok(())
}

pub(super) fn check_ops(spec: &ServiceSpec) -> Result<(), CliError> {
    match ops_refusal(spec) {
        Some(why) => fail(why),
        None => Ok(()),
    }
}

pub(super) fn check_thresholds(dest: &DestSpec) -> Result<(), CliError> {
    if dest.lower_threshold > dest.upper_threshold {
        return fail(format!(
            "the lower threshold (-y {}) is higher than the upper threshold (-x {})",
            dest.lower_threshold, dest.upper_threshold
        ));
    }
    Ok(())
}
