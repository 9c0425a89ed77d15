//! keepalived.conf, in three steps: [`lexer`] (words with file and line, includes expanded),
//! [`tree`] (blocks), [`model`] (the LVS part: virtual servers, real servers, checkers, with
//! keepalived 2.2.7's defaults).

pub mod lexer;
pub mod model;
pub mod tree;
pub mod vrrp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use model::{
    CheckKind, Checker, Config, Connect, HttpGet, MiscCheck, RealServer, SorryServer, Timing, Url,
    VirtualServer,
};

/// Where a word stands: file and line (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<PathBuf>,
    pub line: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A message about the configuration, with where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    /// `file:line`, or the file alone.
    pub place: String,
    pub message: String,
}

impl Diag {
    pub fn at(pos: &Pos, message: impl Into<String>) -> Diag {
        Diag {
            place: pos.to_string(),
            message: message.into(),
        }
    }

    pub fn file(path: &Path, message: impl Into<String>) -> Diag {
        Diag {
            place: path.display().to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every error found in a configuration (each with its place), one per line when shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Diag>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(Diag::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for Errors {}

/// Reads, includes, parses and checks the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, Errors> {
    let lines = lexer::read_file(path).map_err(|d| Errors(vec![d]))?;
    let nodes = tree::parse(lines).map_err(|d| Errors(vec![d]))?;
    model::build(&nodes)
}

/// The same from text (as if read from a file called `name`, which may include others
/// relative to its folder).
pub fn parse_str(text: &str, name: &Path) -> Result<Config, Errors> {
    let lines = lexer::read_text(text, name).map_err(|d| Errors(vec![d]))?;
    let nodes = tree::parse(lines).map_err(|d| Errors(vec![d]))?;
    model::build(&nodes)
}

/// What the configuration tests share: text read as a file `k.conf`.
#[cfg(test)]
pub(crate) mod testing {
    use super::{parse_str, Config, Diag};
    use std::path::Path;
    use std::time::Duration;

    /// The configuration in `text`; a panic, with the errors, when it is refused.
    pub fn load(text: &str) -> Config {
        parse_str(text, Path::new("k.conf")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The errors `text` is refused with; a panic when it is accepted.
    pub fn errors(text: &str) -> Vec<String> {
        match parse_str(text, Path::new("k.conf")) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.0.iter().map(Diag::to_string).collect(),
        }
    }

    /// Seconds, for the durations a test expects.
    pub const S: fn(u64) -> Duration = Duration::from_secs;
}
