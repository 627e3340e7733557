//! LogQL text → [`ast::Expr`]: a hand-written lexer and recursive-descent
//! parser. Errors carry line and column as Loki's do
//! (`parse error at line 1, col 9: syntax error: unexpected ...`).

pub mod ast;
mod lexer;
pub mod literals;
mod parse_label_filter;
mod parse_log;
mod parser;

pub use parser::parse;

/// A query that does not parse or does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ParseError {
    /// An error at byte `pos` of `src`.
    pub(crate) fn at(src: &str, pos: usize, message: &str) -> Self {
        let pos = pos.min(src.len());
        let before = src.get(..pos).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map_or(pos, |nl| pos - nl - 1) + 1;
        ParseError {
            line,
            col,
            message: message.to_string(),
        }
    }
}

/// A Go double-quoted string literal (with its quotes) → its value.
pub(crate) fn literals_unquote(raw: &str) -> Option<String> {
    match lexer::lex_quoted(raw, 0) {
        Ok((s, len)) if len == raw.len() => Some(s),
        _ => None,
    }
}
