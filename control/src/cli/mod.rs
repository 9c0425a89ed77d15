//! rvsadm's command line: ipvsadm 1.31's grammar, parsed into a [`Command`].
//!
//! Hand-written rather than clap because ipvsadm's grammar is its own: `-p` takes an optional
//! value, short options bundle (`-Ln`), which options a command takes is a matrix, and the error
//! messages are ipvsadm's word for word, so people and scripts used to ipvsadm feel at home.
//!
//! Parsing is pure apart from name lookups (`/etc/services`, host names); nothing here talks to
//! the daemon. `-E`/`-e` become edits that [`Table::resolve`] merges with the current state.
//!
//! One job per file: `grammar` (ipvsadm's option table and command/option matrix),
//! `tokenize` (words into a raw command, options and arguments), `parse` (checking the raw form
//! against the matrix and building a [`Command`]), `address` (`host[:port]`, service names),
//! `command` (what a call asks for), `restore` (`-R` input), `table` (merging edits with the
//! daemon's state) and `help`.

mod address;
mod command;
mod grammar;
mod help;
mod parse;
mod restore;
mod table;
mod tokenize;

pub use command::{Change, Command, DaemonCommand, DestEdit, Invocation, ListCommand, ServiceEdit};
pub use help::{usage, version};
pub use parse::parse_args;
pub use restore::parse_restore;
pub use table::Table;

use crate::model::SchedulerKind;

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

/// A decimal number in `min..=max` (ipvsadm's string_to_number).
fn number(text: &str, min: u32, max: u32) -> Option<u32> {
    let n: i64 = text.parse().ok()?;
    u32::try_from(n).ok().filter(|n| (min..=max).contains(n))
}
