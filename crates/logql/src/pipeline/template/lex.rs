//! Tokens inside one `{{ ... }}` action.

use super::TVal;

#[derive(Debug, Clone)]
pub(crate) enum ATok {
    /// `.a.b` (empty: `.`).
    Dot(Vec<String>),
    /// `$x.a` (`$` alone is the name "").
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(TVal),
    Pipe,
    LParen,
    RParen,
    Comma,
    Declare,
    Assign,
}

fn fields(s: &str, i: &mut usize) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    while *i < b.len() && b[*i] == b'.' {
        let start = *i + 1;
        let mut j = start;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        if j == start {
            break;
        }
        out.push(s[start..j].to_string());
        *i = j;
    }
    out
}

/// Lexes an action body (after `{{`) up to its `}}`: the tokens, the bytes
/// consumed including `}}`, and whether it ended with `-}}`.
pub(crate) fn lex_action(s: &str) -> Result<(Vec<ATok>, usize, bool), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Err("unclosed action".into());
        }
        if s[i..].starts_with("}}") {
            return Ok((out, i + 2, false));
        }
        if s[i..].starts_with("-}}") {
            return Ok((out, i + 3, true));
        }
        let c = b[i];
        match c {
            b'|' => {
                out.push(ATok::Pipe);
                i += 1;
            }
            b'(' => {
                out.push(ATok::LParen);
                i += 1;
            }
            b')' => {
                out.push(ATok::RParen);
                i += 1;
            }
            b',' => {
                out.push(ATok::Comma);
                i += 1;
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                out.push(ATok::Declare);
                i += 2;
            }
            b'=' => {
                out.push(ATok::Assign);
                i += 1;
            }
            b'.' => {
                let f = fields(s, &mut i);
                if f.is_empty() {
                    i += 1;
                }
                out.push(ATok::Dot(f));
            }
            b'$' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let name = s[start..j].to_string();
                i = j;
                let f = fields(s, &mut i);
                out.push(ATok::Var(name, f));
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' {
                        j += 1;
                    }
                    j += 1;
                }
                if j >= b.len() {
                    return Err("unterminated quoted string".into());
                }
                let raw = &s[i..=j];
                let v = crate::syntax::literals_unquote(raw)
                    .ok_or("invalid syntax in quoted string")?;
                out.push(ATok::Str(v));
                i = j + 1;
            }
            b'`' => {
                let end = s[i + 1..]
                    .find('`')
                    .ok_or("unterminated raw quoted string")?;
                out.push(ATok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            c if c.is_ascii_digit()
                || (c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                let raw = &s[start..i];
                let v = if let Ok(n) = raw.parse::<i64>() {
                    TVal::Int(n)
                } else if let Ok(f) = raw.parse::<f64>() {
                    TVal::Float(f)
                } else {
                    return Err(format!("bad number syntax: {raw:?}"));
                };
                out.push(ATok::Num(v));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(ATok::Ident(s[start..i].to_string()));
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected {ch:?} in command"));
            }
        }
    }
}
