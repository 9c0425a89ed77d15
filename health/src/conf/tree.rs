//! The block structure of keepalived.conf: a statement is a keyword and the words after it on
//! its line; a `{` after it (on the same line or the next) opens its block, which holds
//! statements up to the matching `}`. Words after a `{` or `}` on the same line start the next
//! statement, so `url { path / }` on one line is a block with one statement.

use super::lexer::{Line, Token, TokenKind};
use super::{Diag, Pos};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub keyword: String,
    pub pos: Pos,
    pub args: Vec<Token>,
    /// The block's statements; `None` when the statement has no block.
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// The argument texts.
    pub fn arg_texts(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }
}

/// One token with whether it starts a line.
struct Cursor {
    tokens: Vec<(Token, bool)>,
    at: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&(Token, bool)> {
        self.tokens.get(self.at)
    }
    fn next(&mut self) -> Option<(Token, bool)> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }
}

/// Builds the statement tree of a whole configuration.
pub fn parse(lines: Vec<Line>) -> Result<Vec<Node>, Diag> {
    let tokens = lines
        .into_iter()
        .flat_map(|l| l.tokens.into_iter().enumerate().map(|(i, t)| (t, i == 0)))
        .collect();
    let mut c = Cursor { tokens, at: 0 };
    let nodes = statements(&mut c, None)?;
    Ok(nodes)
}

/// Statements up to the `}` closing the block opened at `open` (or the end, at top level).
fn statements(c: &mut Cursor, open: Option<&Pos>) -> Result<Vec<Node>, Diag> {
    let mut nodes = Vec::new();
    loop {
        let Some((tok, _)) = c.next() else {
            return match open {
                Some(p) => Err(Diag::at(p, "this block has no closing '}'")),
                None => Ok(nodes),
            };
        };
        match tok.kind {
            TokenKind::Close => {
                return match open {
                    Some(_) => Ok(nodes),
                    None => Err(Diag::at(&tok.pos, "'}' closes no block")),
                };
            }
            TokenKind::Open => {
                return Err(Diag::at(&tok.pos, "'{' without a keyword before it"));
            }
            TokenKind::Word | TokenKind::Quoted => {}
        }
        let mut args = Vec::new();
        // The rest of the line, up to a brace.
        while let Some((t, starts_line)) = c.peek() {
            if *starts_line || matches!(t.kind, TokenKind::Open | TokenKind::Close) {
                break;
            }
            args.push(c.next().map(|(t, _)| t).unwrap_or_else(|| unreachable!()));
        }
        let block = match c.peek() {
            Some((t, _)) if t.kind == TokenKind::Open => {
                c.next();
                Some(statements(c, Some(&tok.pos))?)
            }
            _ => None,
        };
        nodes.push(Node {
            keyword: tok.text,
            pos: tok.pos,
            args,
            block,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn tree(text: &str) -> Result<Vec<Node>, Diag> {
        parse(tokenize(text, &Arc::new(PathBuf::from("t.conf")))?)
    }

    /// A compact picture: `kw(args){...}`.
    fn show(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| {
                let mut s = n.keyword.clone();
                if !n.args.is_empty() {
                    s += &format!("({})", n.arg_texts().join(","));
                }
                if let Some(b) = &n.block {
                    s += &format!("{{{}}}", show(b));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn nested_blocks_with_braces_anywhere() {
        let t = tree(
            "global_defs {\n  router_id x\n}\nvirtual_server 203.0.113.1 80 {\n  delay_loop 6\n  real_server 203.0.113.2 80\n  {\n    TCP_CHECK { connect_timeout 3 }\n  }\n}\n",
        )
        .unwrap();
        assert_eq!(
            show(&t),
            "global_defs{router_id(x)} virtual_server(203.0.113.1,80){delay_loop(6) real_server(203.0.113.2,80){TCP_CHECK{connect_timeout(3)}}}"
        );
        assert_eq!(t[1].pos.line, 4);
        let rs = &t[1].block.as_ref().unwrap()[1];
        assert_eq!(rs.pos.line, 6);
    }

    #[test]
    fn an_empty_block_and_a_statement_without_one() {
        let t = tree("a {}\nb 1 2\nc { }\n").unwrap();
        assert_eq!(show(&t), "a{} b(1,2) c{}");
    }

    #[test]
    fn unbalanced_braces_are_errors_with_their_line() {
        assert_eq!(
            tree("a {\n b 1\n").unwrap_err().to_string(),
            "t.conf:1: this block has no closing '}'"
        );
        assert_eq!(
            tree("a 1\n}\n").unwrap_err().to_string(),
            "t.conf:2: '}' closes no block"
        );
        assert_eq!(
            tree("a\n{\n}\n{\n}").unwrap_err().to_string(),
            "t.conf:4: '{' without a keyword before it"
        );
    }
}
