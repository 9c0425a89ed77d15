//! `-R`: restore input, one change per line.

use super::command::{Change, Command};
use super::parse::parse_args;
use super::CliError;

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
