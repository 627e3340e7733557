//! Script text → commands.

use miru_model::{Label, Labels};

use super::{Command, EvalCmd, EvalKind, Expect, ExpectedSeries, LoadLine, ScriptError};
use crate::syntax::literals::{parse_go_duration, parse_go_float, parse_prom_duration};

fn err(line: usize, m: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        message: m.into(),
    }
}

fn duration(s: &str, line: usize) -> Result<i64, ScriptError> {
    parse_go_duration(s)
        .ok()
        .or_else(|| parse_prom_duration(s).map(|v| v as f64))
        .map(|v| v as i64)
        .ok_or_else(|| err(line, format!("bad duration {s:?}")))
}

/// Splits `{...}` (quotes respected) from the rest.
fn split_braces(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if !s.starts_with('{') {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 1;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match (quote, b[i]) {
            (Some(b'"'), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (None, b'"' | b'`') => quote = Some(b[i]),
            (None, b'}') => return Some((&s[..=i], &s[i + 1..])),
            _ => {}
        }
        i += 1;
    }
    None
}

/// `{a="b", c="d"}`: empty values are kept.
pub(crate) fn parse_labels(s: &str, line: usize) -> Result<Labels, ScriptError> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .ok_or_else(|| err(line, "bad label set"))?;
    let mut out: Vec<Label> = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or_else(|| err(line, "bad label"))?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let (value, tail) = quoted(after).ok_or_else(|| err(line, "bad label value"))?;
        out.push(Label::new(name, value));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Labels::from_sorted(out))
}

/// A `"..."` (escapes resolved) or backtick string at the start of `s`.
fn quoted(s: &str) -> Option<(String, &str)> {
    let b = s.as_bytes();
    match b.first()? {
        b'`' => {
            let end = s[1..].find('`')? + 1;
            Some((s[1..end].to_string(), &s[end + 1..]))
        }
        b'"' => {
            let mut i = 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            let raw = s.get(..=i)?;
            Some((crate::syntax::literals_unquote(raw)?, &s[i + 1..]))
        }
        _ => None,
    }
}

fn load_line(s: &str, line: usize) -> Result<LoadLine, ScriptError> {
    let (sel, rest) = split_braces(s).ok_or_else(|| err(line, "load line needs a selector"))?;
    let labels = parse_labels(sel, line)?;
    let rest = rest.trim_start();
    let q = rest
        .as_bytes()
        .first()
        .copied()
        .ok_or_else(|| err(line, "missing line"))?;
    if q != b'"' && q != b'`' {
        return Err(err(line, "line must be quoted"));
    }
    // The line is taken verbatim (no unescaping).
    let end = rest[1..]
        .find(q as char)
        .ok_or_else(|| err(line, "unterminated line"))?
        + 1;
    let text = rest[1..end].to_string();
    let mut tail = rest[end + 1..].trim_start();
    tail = tail
        .strip_prefix('@')
        .ok_or_else(|| err(line, "missing @"))?
        .trim_start();
    let t_end = tail.find(char::is_whitespace).unwrap_or(tail.len());
    let start_ns = duration(&tail[..t_end], line)?;
    tail = tail[t_end..].trim_start();
    let (mut every_ns, mut count, mut metadata) = (0, 1, Vec::new());
    while let Some(open) = tail.strip_prefix('[') {
        let close = open.find(']').ok_or_else(|| err(line, "unclosed ["))?;
        let body = &open[..close];
        if let Some(r) = body.strip_prefix("repeat every ") {
            let parts: Vec<&str> = r.split_whitespace().collect();
            let [step, "for", n] = parts.as_slice() else {
                return Err(err(line, "bad repeat"));
            };
            every_ns = duration(step, line)?;
            count = n.parse().map_err(|_| err(line, "bad repeat count"))?;
        } else if let Some(m) = body.strip_prefix("metadata") {
            let mut r = m.trim();
            while !r.is_empty() {
                let eq = r.find('=').ok_or_else(|| err(line, "bad metadata"))?;
                let (v, t) = quoted(r[eq + 1..].trim_start())
                    .ok_or_else(|| err(line, "bad metadata value"))?;
                metadata.push((r[..eq].trim().to_string(), v));
                r = t.trim_start();
            }
        } else {
            return Err(err(line, format!("unknown load option [{body}]")));
        }
        tail = open[close + 1..].trim_start();
    }
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err(err(line, format!("unexpected {tail:?}")));
    }
    Ok(LoadLine {
        labels,
        line: text,
        start_ns,
        every_ns,
        count,
        metadata,
    })
}

fn value(s: &str, line: usize) -> Result<f64, ScriptError> {
    parse_go_float(s).ok_or_else(|| err(line, format!("bad value {s:?}")))
}

/// `1 2 _ 3+1x2 5x3` → values.
fn values(s: &str, line: usize) -> Result<Vec<Option<f64>>, ScriptError> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok.starts_with('#') {
            break;
        }
        if tok == "_" {
            out.push(None);
            continue;
        }
        if let Some((base, n)) = tok.rsplit_once('x').filter(|(b, n)| {
            !b.is_empty()
                && n.chars().all(|c| c.is_ascii_digit())
                && !n.is_empty()
                && !b.starts_with("0x")
        }) {
            let n: usize = n.parse().map_err(|_| err(line, "bad count"))?;
            let (start, delta) = match base[1..].find(['+', '-']).map(|i| i + 1) {
                Some(i) => (value(&base[..i], line)?, value(&base[i..], line)?),
                None => (value(base, line)?, 0.0),
            };
            for k in 0..=n.min(100_000) {
                out.push(Some(start + delta * k as f64));
            }
            continue;
        }
        out.push(Some(value(tok, line)?));
    }
    Ok(out)
}

fn eval_header(s: &str, line: usize) -> Result<(EvalKind, String), ScriptError> {
    if let Some(r) = s.strip_prefix("eval instant at ") {
        let (t, q) = r
            .split_once(' ')
            .ok_or_else(|| err(line, "missing query"))?;
        return Ok((
            EvalKind::Instant {
                at_ns: duration(t, line)?,
            },
            q.trim().to_string(),
        ));
    }
    if let Some(r) = s.strip_prefix("eval range from ") {
        let parts: Vec<&str> = r.splitn(6, ' ').collect();
        let [a, "to", b, "step", st, q] = parts.as_slice() else {
            return Err(err(line, "bad eval range"));
        };
        return Ok((
            EvalKind::Range {
                start_ns: duration(a, line)?,
                end_ns: duration(b, line)?,
                step_ns: duration(st, line)?,
            },
            q.trim().to_string(),
        ));
    }
    Err(err(line, format!("unknown eval form: {s}")))
}

pub fn parse_script(text: &str) -> Result<Vec<Command>, ScriptError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let ln = i + 1;
        let l = lines[i];
        i += 1;
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t == "clear" {
            out.push(Command::Clear);
        } else if t == "load" {
            let mut ls = Vec::new();
            while i < lines.len() && lines[i].starts_with([' ', '\t']) {
                let b = lines[i].trim();
                if !b.is_empty() && !b.starts_with('#') {
                    ls.push(load_line(b, i + 1)?);
                }
                i += 1;
            }
            out.push(Command::Load(ls));
        } else if t.starts_with("eval ") {
            let (kind, query) = eval_header(t, ln)?;
            let mut cmd = EvalCmd {
                line: ln,
                query,
                kind,
                fail: None,
                empty: false,
                ordered: false,
                scalar: None,
                series: Vec::new(),
            };
            while i < lines.len() && lines[i].starts_with([' ', '\t']) {
                let b = lines[i].trim();
                let bl = i + 1;
                i += 1;
                if b.is_empty() || b.starts_with('#') {
                    continue;
                }
                if let Some(r) = b.strip_prefix("expect fail") {
                    let r = r.trim();
                    cmd.fail = Some(if let Some(m) = r.strip_prefix("msg:") {
                        Expect::Msg(m.trim().to_string())
                    } else if let Some(m) = r.strip_prefix("regex:") {
                        Expect::Regex(m.trim().to_string())
                    } else {
                        Expect::Any
                    });
                } else if b == "expect empty" {
                    cmd.empty = true;
                } else if b == "expect ordered" {
                    cmd.ordered = true;
                } else if b.starts_with("skip ") {
                } else if b.starts_with('{') {
                    let (sel, rest) = split_braces(b).ok_or_else(|| err(bl, "bad series"))?;
                    cmd.series.push(ExpectedSeries {
                        labels: parse_labels(sel, bl)?,
                        values: values(rest, bl)?,
                    });
                } else {
                    let v = values(b, bl)?;
                    cmd.scalar = v.first().copied().flatten();
                }
            }
            out.push(Command::Eval(Box::new(cmd)));
        } else {
            return Err(err(ln, format!("unknown command: {t}")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_loads() {
        assert_eq!(
            values("1 _ 2+1x2 5x1", 1).unwrap(),
            vec![
                Some(1.0),
                None,
                Some(2.0),
                Some(3.0),
                Some(4.0),
                Some(5.0),
                Some(5.0)
            ]
        );
        let l = load_line(
            r#"{app="a"} "x {{.i}}" @ 20s [repeat every 20s for 4] [metadata k="v"]"#,
            1,
        )
        .unwrap();
        assert_eq!(
            (l.start_ns, l.every_ns, l.count),
            (20_000_000_000, 20_000_000_000, 4)
        );
        assert_eq!(l.metadata, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(values("-Inf NaN -5", 1).unwrap().len(), 3);
    }
}
