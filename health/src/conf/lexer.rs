//! keepalived.conf's words: lines of words, quoted strings and braces, with the file and line
//! each comes from, and `include` expanded where it stands.
//!
//! The rules are keepalived's (lib/parser.c, `decomment` and `alloc_strvec`):
//! - `#` or `!` outside a quoted string starts a comment, to the end of the line; `\#` and
//!   `\!` are the characters themselves;
//! - `"..."` is one word, spaces included, without its quotes; an unterminated quote is an error;
//! - `{` and `}` are words of their own, also when written against another word;
//! - a `\` at the end of a line continues it on the next line;
//! - `include PATTERN` reads the files the glob pattern matches (braces too), in sorted
//!   order; a relative pattern is relative to the folder of the file that includes it
//!   (keepalived changes into that folder while reading it). A pattern matching nothing is
//!   an error here (keepalived logs it and goes on: a missing file would otherwise drop
//!   checks silently).

use super::{Diag, Pos};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How deep `include` may nest: a file including itself stops here.
const MAX_INCLUDE_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    /// A `"..."` string: never a brace, even when it reads `"{"`.
    Quoted,
    Open,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub text: String,
    pub pos: Pos,
}

/// The words of one logical line (continuations joined), at the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub tokens: Vec<Token>,
}

/// Reads `path` and every file it includes into lines.
pub fn read_file(path: &Path) -> Result<Vec<Line>, Diag> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diag::file(path, format!("cannot read {}: {e}", path.display())))?;
    read_text(&text, path)
}

/// The lines of `text`, read as the file `path` (whose folder relative includes start from).
pub fn read_text(text: &str, path: &Path) -> Result<Vec<Line>, Diag> {
    let mut lines = Vec::new();
    expand(text, path, 0, &mut lines)?;
    Ok(lines)
}

fn read_into(path: &Path, depth: usize, out: &mut Vec<Line>, from: &Pos) -> Result<(), Diag> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diag::at(from, format!("cannot read {}: {e}", path.display())))?;
    expand(&text, path, depth, out)
}

fn expand(text: &str, path: &Path, depth: usize, out: &mut Vec<Line>) -> Result<(), Diag> {
    let file = Arc::new(path.to_path_buf());
    for line in tokenize(text, &file)? {
        let is_include = line
            .tokens
            .first()
            .is_some_and(|t| t.kind == TokenKind::Word && t.text == "include");
        if !is_include {
            out.push(line);
            continue;
        }
        let at = &line.tokens[0].pos;
        let [_, pattern] = line.tokens.as_slice() else {
            return Err(Diag::at(at, "include takes one file name or glob pattern"));
        };
        if depth + 1 >= MAX_INCLUDE_DEPTH {
            return Err(Diag::at(
                at,
                format!(
                    "includes nested deeper than {MAX_INCLUDE_DEPTH} (a file including itself?)"
                ),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let matches = glob(&pattern.text, base).map_err(|e| Diag::at(at, e))?;
        if matches.is_empty() {
            return Err(Diag::at(
                at,
                format!("include {}: no file matches", pattern.text),
            ));
        }
        for m in matches {
            read_into(&m, depth + 1, out, at)?;
        }
    }
    Ok(())
}

/// Splits one file's text into lines of tokens.
pub fn tokenize(text: &str, file: &Arc<PathBuf>) -> Result<Vec<Line>, Diag> {
    let mut lines = Vec::new();
    let mut pending: Option<Line> = None;
    for (n, raw) in text.lines().enumerate() {
        let pos = Pos {
            file: file.clone(),
            line: u32::try_from(n + 1).unwrap_or(u32::MAX),
        };
        let (tokens, continued) = split_line(raw, &pos)?;
        let line = pending.get_or_insert_with(|| Line { tokens: Vec::new() });
        line.tokens.extend(tokens);
        if !continued {
            if let Some(l) = pending.take().filter(|l| !l.tokens.is_empty()) {
                lines.push(l);
            }
        }
    }
    if let Some(l) = pending.filter(|l| !l.tokens.is_empty()) {
        lines.push(l);
    }
    Ok(lines)
}

/// One physical line's tokens, and whether it ends in a continuation `\`.
fn split_line(raw: &str, pos: &Pos) -> Result<(Vec<Token>, bool), Diag> {
    // keepalived takes an include's pattern from the raw line, so braces stay in the glob.
    if let Some(rest) = raw.trim_start().strip_prefix("include") {
        if rest.starts_with(char::is_whitespace) {
            let word = |kind, text: String| Token {
                kind,
                text,
                pos: pos.clone(),
            };
            return Ok((
                vec![
                    word(TokenKind::Word, "include".into()),
                    word(TokenKind::Quoted, include_pattern(rest, pos)?),
                ],
                false,
            ));
        }
    }
    split_words(raw, pos)
}

/// An include's pattern: the rest of the line without its comment and quotes; one word.
fn include_pattern(rest: &str, pos: &Pos) -> Result<String, Diag> {
    let rest = rest.trim();
    let mut out = String::new();
    let mut in_quote = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '#' | '!' if !in_quote => break,
            c if c.is_whitespace() && !in_quote => {
                let tail = rest[i..].trim_start();
                if tail.is_empty() || tail.starts_with(['#', '!']) {
                    break;
                }
                return Err(Diag::at(pos, "include takes one file name or glob pattern"));
            }
            c => out.push(c),
        }
    }
    if in_quote {
        return Err(Diag::at(pos, "unterminated quote in include"));
    }
    Ok(out)
}

fn split_words(raw: &str, pos: &Pos) -> Result<(Vec<Token>, bool), Diag> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_quote = false;
    let mut chars = raw.chars().peekable();
    let flush = |word: &mut String, quoted: &mut bool, tokens: &mut Vec<Token>| {
        if !word.is_empty() || *quoted {
            tokens.push(Token {
                kind: if *quoted {
                    TokenKind::Quoted
                } else {
                    TokenKind::Word
                },
                text: std::mem::take(word),
                pos: pos.clone(),
            });
        }
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if in_quote {
            if c == '"' {
                in_quote = false;
            } else {
                word.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                quoted = true;
            }
            '#' | '!' => break,
            '\\' => match chars.peek() {
                Some(&e @ ('#' | '!')) => {
                    word.push(e);
                    chars.next();
                }
                None => {
                    flush(&mut word, &mut quoted, &mut tokens);
                    return Ok((tokens, true));
                }
                Some(_) => word.push(c),
            },
            '{' | '}' => {
                flush(&mut word, &mut quoted, &mut tokens);
                tokens.push(Token {
                    kind: if c == '{' {
                        TokenKind::Open
                    } else {
                        TokenKind::Close
                    },
                    text: c.to_string(),
                    pos: pos.clone(),
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut quoted, &mut tokens),
            c => word.push(c),
        }
    }
    if in_quote {
        return Err(Diag::at(
            pos,
            format!("unterminated quote in {:?}", raw.trim()),
        ));
    }
    flush(&mut word, &mut quoted, &mut tokens);
    Ok((tokens, false))
}

/// The paths `pattern` matches, sorted, through glibc's glob(3) with braces, as keepalived
/// calls it; a relative pattern is taken relative to `base`.
fn glob(pattern: &str, base: &Path) -> Result<Vec<PathBuf>, String> {
    // glibc's GLOB_BRACE, a GNU extension the libc crate does not name.
    const GLOB_BRACE: libc::c_int = 1 << 10;
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let c = CString::new(full.to_string_lossy().as_bytes())
        .map_err(|_| format!("include {pattern}: a NUL byte in the name"))?;
    // SAFETY: glob_t is plain data; glob(3) initialises it, globfree(3) releases it.
    let mut g: libc::glob_t = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string that outlives the call; `g` is a valid glob_t.
    let rc = unsafe { libc::glob(c.as_ptr(), GLOB_BRACE, None, &mut g) };
    let mut out = Vec::new();
    if rc == 0 {
        for i in 0..g.gl_pathc {
            // SAFETY: glob(3) filled gl_pathv with gl_pathc NUL-terminated strings.
            let p = unsafe { CStr::from_ptr(*g.gl_pathv.add(i)) };
            out.push(PathBuf::from(p.to_string_lossy().into_owned()));
        }
    }
    // SAFETY: `g` was set up by glob(3) above (also when it matched nothing).
    unsafe { libc::globfree(&mut g) };
    match rc {
        0 | libc::GLOB_NOMATCH => Ok(out),
        rc => Err(format!("include {pattern}: glob failed ({rc})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Vec<String>> {
        tokenize(text, &Arc::new(PathBuf::from("t.conf")))
            .unwrap()
            .into_iter()
            .map(|l| l.tokens.into_iter().map(|t| t.text).collect())
            .collect()
    }

    #[test]
    fn comments_quotes_braces_and_continuations() {
        let text = "a b # c\n! whole line\n  x \"one two\" y!z\nq{r}\nm \\# n \\! o\nlong \\\n  tail\n\"#\" \"\"\n";
        assert_eq!(
            words(text),
            vec![
                vec!["a", "b"],
                vec!["x", "one two", "y"],
                vec!["q", "{", "r", "}"],
                vec!["m", "#", "n", "!", "o"],
                vec!["long", "tail"],
                vec!["#", ""],
            ]
        );
    }

    #[test]
    fn lines_are_numbered_from_one_and_a_continuation_keeps_its_first() {
        let f = Arc::new(PathBuf::from("t.conf"));
        let lines = tokenize("\n# c\nfirst \\\nsecond\nthird\n", &f).unwrap();
        assert_eq!(lines[0].tokens[0].pos.line, 3);
        assert_eq!(lines[0].tokens[1].pos.line, 4);
        assert_eq!(lines[1].tokens[0].pos.line, 5);
    }

    #[test]
    fn a_quoted_brace_is_a_word() {
        let f = Arc::new(PathBuf::from("t.conf"));
        let lines = tokenize("a \"{\" {", &f).unwrap();
        let kinds: Vec<TokenKind> = lines[0].tokens.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [TokenKind::Word, TokenKind::Quoted, TokenKind::Open]);
    }

    #[test]
    fn an_unterminated_quote_names_its_line() {
        let f = Arc::new(PathBuf::from("t.conf"));
        let e = tokenize("ok\nmisc_path \"/bin/true\n", &f).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.conf:2: unterminated quote in \"misc_path \\\"/bin/true\""
        );
    }

    #[test]
    fn includes_glob_relative_to_the_including_file_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("conf.d");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("b.conf"), "from_b\n").unwrap();
        std::fs::write(sub.join("a.conf"), "from_a\ninclude ../more/{x,y}.inc\n").unwrap();
        std::fs::create_dir(dir.path().join("more")).unwrap();
        std::fs::write(dir.path().join("more/y.inc"), "from_y\n").unwrap();
        std::fs::write(dir.path().join("more/x.inc"), "from_x\n").unwrap();
        std::fs::write(sub.join("skip.txt"), "never\n").unwrap();
        let main = dir.path().join("keepalived.conf");
        std::fs::write(&main, "top\ninclude conf.d/*.conf\nend\n").unwrap();
        let lines = read_file(&main).unwrap();
        let got: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                let t = &l.tokens[0];
                (t.text.clone(), t.pos.to_string())
            })
            .collect();
        let at = |f: &str, l: u32| format!("{}:{l}", dir.path().join(f).display());
        let want = [
            ("top", at("keepalived.conf", 1)),
            ("from_a", at("conf.d/a.conf", 1)),
            (
                "from_x",
                format!("{}:1", sub.join("../more/x.inc").display()),
            ),
            (
                "from_y",
                format!("{}:1", sub.join("../more/y.inc").display()),
            ),
            ("from_b", at("conf.d/b.conf", 1)),
            ("end", at("keepalived.conf", 3)),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.clone()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn include_errors_name_the_include_line() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("k.conf");
        std::fs::write(&main, "a\ninclude nothing-*.conf\n").unwrap();
        let e = read_file(&main).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2: include nothing-*.conf: no file matches",
                main.display()
            )
        );

        std::fs::write(&main, "include a.conf b.conf\n").unwrap();
        let e = read_file(&main).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:1: include takes one file name or glob pattern",
                main.display()
            )
        );

        std::fs::write(&main, "include k.conf # itself\n").unwrap();
        let e = read_file(&main).unwrap_err().to_string();
        assert!(e.contains("nested deeper than 16"), "{e}");
    }
}
