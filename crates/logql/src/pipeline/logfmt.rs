//! The `logfmt` parser stage: `key=value` pairs, values bare or quoted
//! with Go escapes. Without `--strict` a malformed pair is skipped; with
//! it the line gets `LogfmtParserErr`.

use super::json::sanitize_key;
use super::labels::LabelSet;

pub(crate) const LOGFMT_ERR: &str = "LogfmtParserErr";

pub(crate) struct Logfmt {
    pub(crate) strict: bool,
    pub(crate) keep_empty: bool,
    /// (label, key) pairs; empty means every key.
    pub(crate) params: Vec<(String, String)>,
}

/// One pair, or why it is malformed.
type Pair<'a> = Result<(&'a str, std::borrow::Cow<'a, str>), String>;

/// Splits a line into pairs; a malformed pair is reported and skipped.
fn pairs(line: &str) -> Vec<Pair<'_>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        let key = &line[ks..i];
        if i < b.len() && b[i] == b'"' {
            out.push(Err(format!(
                "logfmt syntax error at pos {}: unexpected '\"'",
                i + 1
            )));
            while i < b.len() && b[i] > b' ' {
                i += 1;
            }
            continue;
        }
        if key.is_empty() {
            out.push(Err(format!(
                "logfmt syntax error at pos {}: unexpected '='",
                i + 1
            )));
            while i < b.len() && b[i] > b' ' {
                i += 1;
            }
            continue;
        }
        if i >= b.len() || b[i] != b'=' {
            out.push(Ok((key, "".into())));
            continue;
        }
        i += 1;
        if i < b.len() && b[i] == b'"' {
            let vs = i;
            i += 1;
            let mut escaped = false;
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'\\' => {
                        escaped = true;
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        closed = true;
                        break;
                    }
                    _ => i += 1,
                }
            }
            if !closed {
                out.push(Err(format!(
                    "logfmt syntax error at pos {}: unterminated quoted value",
                    line.len() + 1
                )));
                break;
            }
            let raw = &line[vs + 1..i - 1];
            let v = if escaped {
                match unescape(raw) {
                    Some(s) => s.into(),
                    None => {
                        out.push(Err(format!(
                            "logfmt syntax error at pos {}: invalid quoted value",
                            vs + 1
                        )));
                        continue;
                    }
                }
            } else {
                raw.into()
            };
            out.push(Ok((key, v)));
        } else {
            let vs = i;
            let mut bad = None;
            while i < b.len() && b[i] > b' ' {
                if bad.is_none() && (b[i] == b'"' || b[i] == b'=') {
                    bad = Some((i, b[i] as char));
                }
                i += 1;
            }
            if let Some((at, c)) = bad {
                out.push(Err(format!(
                    "logfmt syntax error at pos {}: unexpected '{c}'",
                    at + 1
                )));
                continue;
            }
            out.push(Ok((key, line[vs..i].into())));
        }
    }
    out
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '/' => out.push('/'),
            'u' => {
                let h: String = it.by_ref().take(4).collect();
                out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

impl Logfmt {
    pub(crate) fn apply(&self, line: &str, labels: &mut LabelSet) {
        let mut seen: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        for p in pairs(line) {
            let (key, value) = match p {
                Ok(kv) => kv,
                Err(e) => {
                    if self.strict {
                        labels.set_error(LOGFMT_ERR, e);
                        return;
                    }
                    continue;
                }
            };
            let name = if self.params.is_empty() {
                sanitize_key(key, true)
            } else {
                match self.params.iter().find(|(_, k)| k == key) {
                    Some((label, _)) => std::borrow::Cow::Borrowed(label.as_str()),
                    None => continue,
                }
            };
            if value.is_empty() && !self.keep_empty {
                continue;
            }
            if seen.contains(&name) {
                continue;
            }
            labels.add_parsed(&name, &value);
            seen.push(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::Labels;

    fn run(line: &str, strict: bool, keep_empty: bool) -> LabelSet {
        let mut l = LabelSet::from_stream(&Labels::default());
        Logfmt {
            strict,
            keep_empty,
            params: vec![],
        }
        .apply(line, &mut l);
        l
    }

    #[test]
    fn edge_cases() {
        let l = run(
            r#"a-b=1 9x=2 dup=first dup=second msg="hi there" empty="#,
            false,
            false,
        )
        .to_labels();
        assert_eq!(l.get("a_b"), Some("1"));
        assert_eq!(l.get("_9x"), Some("2"));
        assert_eq!(l.get("dup"), Some("first"));
        assert_eq!(l.get("msg"), Some("hi there"));
        assert_eq!(l.get("empty"), None);
        let k = run("empty=", false, true).to_labels();
        assert_eq!(k.get("empty"), Some(""));
        let bad = run(r#"good=1 bad="unterminated"#, false, false).to_labels();
        assert_eq!(bad.len(), 1);
        assert!(run(r#"good=1 bad="unterminated"#, true, false).has_error());
    }
}
