//! Tokens of LogQL. Numbers keep their raw text (with any unit suffix) so
//! that the parser decides, by context, whether `5m` is a duration, `20MB`
//! a byte size or `0x1p3` a float.

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    /// A quoted string, escapes already resolved.
    Str(String),
    /// Raw text of a number-like literal (`1.5`, `5m`, `1h30m`, `20MB`).
    Num(String),
    /// `--strict`, `--keep-empty`.
    Flag(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Eq,
    Neq,
    Re,
    Nre,
    PipeEq,
    PipeRe,
    PipePattern,
    NotPattern,
    Pipe,
    Gt,
    Gte,
    Lt,
    Lte,
    EqEq,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eof,
}

impl Tok {
    /// How an error message names the token, as Loki's parser does.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Str(s) => format!("{s:?}"),
            Tok::Num(s) => s.clone(),
            Tok::Flag(s) => format!("--{s}"),
            Tok::Eof => "end of input".into(),
            t => t.symbol().to_string(),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Eq => "=",
            Tok::Neq => "!=",
            Tok::Re => "=~",
            Tok::Nre => "!~",
            Tok::PipeEq => "|=",
            Tok::PipeRe => "|~",
            Tok::PipePattern => "|>",
            Tok::NotPattern => "!>",
            Tok::Pipe => "|",
            Tok::Gt => ">",
            Tok::Gte => ">=",
            Tok::Lt => "<",
            Tok::Lte => "<=",
            Tok::EqEq => "==",
            Tok::Add => "+",
            Tok::Sub => "-",
            Tok::Mul => "*",
            Tok::Div => "/",
            Tok::Mod => "%",
            Tok::Pow => "^",
            _ => "?",
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
}

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, ParseError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let next = b.get(i + 1).copied();
        let (tok, len) = match c {
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Add, 1),
            b'*' => (Tok::Mul, 1),
            b'/' => (Tok::Div, 1),
            b'%' => (Tok::Mod, 1),
            b'^' => (Tok::Pow, 1),
            b'=' => match next {
                Some(b'~') => (Tok::Re, 2),
                Some(b'=') => (Tok::EqEq, 2),
                _ => (Tok::Eq, 1),
            },
            b'!' => match next {
                Some(b'=') => (Tok::Neq, 2),
                Some(b'~') => (Tok::Nre, 2),
                Some(b'>') => (Tok::NotPattern, 2),
                _ => return Err(ParseError::at(src, i, "syntax error: unexpected !")),
            },
            b'|' => match next {
                Some(b'=') => (Tok::PipeEq, 2),
                Some(b'~') => (Tok::PipeRe, 2),
                Some(b'>') => (Tok::PipePattern, 2),
                _ => (Tok::Pipe, 1),
            },
            b'>' => match next {
                Some(b'=') => (Tok::Gte, 2),
                _ => (Tok::Gt, 1),
            },
            b'<' => match next {
                Some(b'=') => (Tok::Lte, 2),
                _ => (Tok::Lt, 1),
            },
            b'-' => {
                if next == Some(b'-') && b.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic()) {
                    let mut j = i + 2;
                    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-') {
                        j += 1;
                    }
                    (Tok::Flag(src[i + 2..j].to_string()), j - i)
                } else {
                    (Tok::Sub, 1)
                }
            }
            b'"' => {
                let (s, len) = lex_quoted(src, i)?;
                (Tok::Str(s), len)
            }
            b'`' => match src[i + 1..].find('`') {
                Some(end) => (Tok::Str(src[i + 1..i + 1 + end].to_string()), end + 2),
                None => return Err(ParseError::at(src, i, "literal not terminated")),
            },
            c if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let len = number_len(b, i);
                (Tok::Num(src[i..i + len].to_string()), len)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                (Tok::Ident(src[i..j].to_string()), j - i)
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ParseError::at(
                    src,
                    i,
                    &format!("syntax error: unexpected character {ch:?}"),
                ));
            }
        };
        out.push(Token { tok, pos: start });
        i += len;
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: src.len(),
    });
    Ok(out)
}

/// Length of a number-like literal: digits, dots, letters (units, hex,
/// exponents) and `µ`, with a sign allowed right after an exponent marker.
fn number_len(b: &[u8], start: usize) -> usize {
    let hex = b.get(start) == Some(&b'0') && matches!(b.get(start + 1), Some(b'x' | b'X'));
    let mut j = start;
    while j < b.len() {
        let c = b[j];
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' {
            j += 1;
            let exp = if hex {
                matches!(c, b'p' | b'P')
            } else {
                matches!(c, b'e' | b'E')
            };
            if exp
                && matches!(b.get(j), Some(b'+' | b'-'))
                && b.get(j + 1).is_some_and(|d| d.is_ascii_digit())
            {
                j += 1;
            }
        } else if c == 0xC2 && b.get(j + 1) == Some(&0xB5) {
            // `µs`
            j += 2;
        } else {
            break;
        }
    }
    j - start
}

/// A Go double-quoted string starting at `start`: its value and length.
pub(crate) fn lex_quoted(src: &str, start: usize) -> Result<(String, usize), ParseError> {
    let b = src.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = start + 1;
    let bad = |i: usize| ParseError::at(src, i, "invalid syntax: bad escape in string");
    while i < b.len() {
        match b[i] {
            b'"' => {
                return Ok((String::from_utf8_lossy(&out).into_owned(), i + 1 - start));
            }
            b'\n' => break,
            b'\\' => {
                let e = *b.get(i + 1).ok_or_else(|| bad(i))?;
                i += 2;
                match e {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'x' => {
                        let v = hex_digits(b, i, 2).ok_or_else(|| bad(i))?;
                        out.push(v as u8);
                        i += 2;
                    }
                    b'u' | b'U' => {
                        let n = if e == b'u' { 4 } else { 8 };
                        let v = hex_digits(b, i, n).ok_or_else(|| bad(i))?;
                        let ch = char::from_u32(v).ok_or_else(|| bad(i))?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        i += n;
                    }
                    b'0'..=b'7' => {
                        let digits = b.get(i - 1..i + 2).ok_or_else(|| bad(i))?;
                        let mut v: u32 = 0;
                        for d in digits {
                            if !(b'0'..=b'7').contains(d) {
                                return Err(bad(i));
                            }
                            v = v * 8 + u32::from(d - b'0');
                        }
                        if v > 255 {
                            return Err(bad(i));
                        }
                        out.push(v as u8);
                        i += 2;
                    }
                    _ => return Err(bad(i)),
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err(ParseError::at(src, start, "literal not terminated"))
}

fn hex_digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = std::str::from_utf8(b.get(at..at + n)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_and_flags() {
        assert_eq!(
            toks("1+1--1"),
            vec![
                Tok::Num("1".into()),
                Tok::Add,
                Tok::Num("1".into()),
                Tok::Sub,
                Tok::Sub,
                Tok::Num("1".into()),
                Tok::Eof
            ]
        );
        assert_eq!(toks("--strict")[0], Tok::Flag("strict".into()));
        assert_eq!(toks("1e-3")[0], Tok::Num("1e-3".into()));
        assert_eq!(toks("0x1p-3")[0], Tok::Num("0x1p-3".into()));
        assert_eq!(toks("1h30m")[0], Tok::Num("1h30m".into()));
    }

    #[test]
    fn go_escapes() {
        assert_eq!(
            toks(r#""a\x41\n\u00e9\101""#)[0],
            Tok::Str("aA\né\u{41}".into())
        );
        assert!(lex(r#""\q""#).is_err());
        assert!(lex("\"abc").is_err());
    }
}
