//! Tokenising: words -> command + options + positional arguments, not yet interpreted.

use super::grammar::{Arg, Cmd, Kind, Opt, OptDef, OPTIONS, OPT_COUNT, TRY_HELP};
use super::{fail, CliError};

/// The words of one call, sorted out but not yet interpreted.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) cmd: Option<Cmd>,
    /// Per [`Opt`], indexed by its number.
    pub(super) given: [Option<Given>; OPT_COUNT],
    pub(super) positional: Vec<String>,
    pub(super) socket: Option<String>,
    /// The command's own argument (`--start-daemon master`).
    pub(super) cmd_value: Option<String>,
}

/// An option as written (which of `-m/-g/-i`, `-t/-u`) and its value.
pub(super) struct Given {
    def: &'static OptDef,
    value: Option<String>,
}

impl Raw {
    fn record(&mut self, def: &'static OptDef, value: Option<String>) -> Result<(), CliError> {
        match def.kind {
            Kind::Cmd(cmd) => {
                if self.cmd.is_some() {
                    return fail("multiple commands specified");
                }
                self.cmd = Some(cmd);
                self.cmd_value = value;
            }
            Kind::Opt(opt) => {
                let slot = &mut self.given[opt as usize];
                if slot.is_some() {
                    return fail(format!("multiple '{}' options specified", opt.name()));
                }
                *slot = Some(Given { def, value });
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

    pub(super) fn has(&self, opt: Opt) -> bool {
        self.given[opt as usize].is_some()
    }

    /// The value of an option that takes one (`None`: not given, or `-p` without a value).
    pub(super) fn value(&self, opt: Opt) -> Option<&str> {
        self.given[opt as usize]
            .as_ref()
            .and_then(|g| g.value.as_deref())
    }

    pub(super) fn long_name(&self, opt: Opt) -> Option<&'static str> {
        self.given[opt as usize].as_ref().map(|g| g.def.long)
    }
}

pub(super) fn tokenize<S: AsRef<str>>(args: &[S]) -> Result<Raw, CliError> {
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
