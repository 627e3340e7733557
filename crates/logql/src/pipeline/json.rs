//! The `json` and `unpack` parser stages over a small hand-written JSON
//! reader: it keeps key order and duplicate keys (Loki keeps the first),
//! and the raw text of nested values that a `json a="path"` parameter
//! selects.

use std::borrow::Cow;

use super::labels::LabelSet;

pub(crate) const JSON_ERR: &str = "JSONParserErr";
const MAX_DEPTH: usize = 128;

#[derive(Debug)]
enum JVal {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    /// Items and the raw text span.
    Arr(Vec<JVal>, (usize, usize)),
    Obj(Vec<(String, JVal)>, (usize, usize)),
}

struct Reader<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at offset {}", self.i))
    }

    fn value(&mut self, depth: usize) -> Result<JVal, String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(JVal::Obj(items, (start, self.i)));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected ':'");
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(JVal::Obj(items, (start, self.i)));
                        }
                        _ => return self.err("expected ',' or '}'"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(JVal::Arr(items, (start, self.i)));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(JVal::Arr(items, (start, self.i)));
                        }
                        _ => return self.err("expected ',' or ']'"),
                    }
                }
            }
            Some(b'"') => Ok(JVal::Str(self.string()?)),
            Some(b't') => self.word("true", JVal::Bool(true)),
            Some(b'f') => self.word("false", JVal::Bool(false)),
            Some(b'n') => self.word("null", JVal::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                Ok(JVal::Num(self.number(start)?.to_string()))
            }
            _ => self.err("unexpected character"),
        }
    }

    /// The number starting at `start`, its raw text.
    fn number(&mut self, start: usize) -> Result<&'a str, String> {
        while self.i < self.b.len()
            && matches!(
                self.b[self.i],
                b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
            )
        {
            self.i += 1;
        }
        let raw = &self.s[start..self.i];
        if raw.parse::<f64>().is_err() {
            return self.err("invalid number");
        }
        Ok(raw)
    }

    fn word(&mut self, w: &str, v: JVal) -> Result<JVal, String> {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(v)
        } else {
            self.err("invalid literal")
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.string_cow().map(Cow::into_owned)
    }

    /// A string's value, borrowed from the line unless it has escapes.
    fn string_cow(&mut self) -> Result<Cow<'a, str>, String> {
        if self.b.get(self.i) != Some(&b'"') {
            return self.err("expected string");
        }
        let start = self.i;
        self.i += 1;
        let mut escaped = false;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                b'"' => {
                    self.i += 1;
                    let raw = &self.s[start..self.i];
                    if !escaped {
                        return Ok(Cow::Borrowed(&raw[1..raw.len() - 1]));
                    }
                    return serde_json::from_str::<String>(raw)
                        .map(Cow::Owned)
                        .map_err(|e| e.to_string());
                }
                _ => self.i += 1,
            }
        }
        self.err("unterminated string")
    }

    /// The scalar fields of the object at the cursor, appended to `out`
    /// with nested keys joined by `_` (the first of a repeated name wins):
    /// what the tree's flattening finds in [`value`](Self::value)'s tree, with the
    /// same errors at the same offsets, but without building the tree and
    /// borrowing keys and values from the line where it can.
    fn flatten_object(
        &mut self,
        depth: usize,
        prefix: Option<&str>,
        out: &mut Vec<Field<'a>>,
    ) -> Result<(), String> {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let k = self.string_cow()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return self.err("expected ':'");
            }
            self.i += 1;
            let key = match prefix {
                None => match k {
                    Cow::Borrowed(k) => sanitize_key(k, true),
                    Cow::Owned(k) => Cow::Owned(sanitize_key(&k, true).into_owned()),
                },
                Some(p) => Cow::Owned(format!("{p}_{}", sanitize_key(&k, false))),
            };
            self.flatten_member(depth + 1, key, out)?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    /// One member's value (as [`value`](Self::value) reads it) under `key`.
    fn flatten_member(
        &mut self,
        depth: usize,
        key: Cow<'a, str>,
        out: &mut Vec<Field<'a>>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        let start = self.i;
        let value: Cow<'a, str> = match self.b.get(self.i) {
            Some(b'{') => return self.flatten_object(depth, Some(&key), out),
            // Arrays and nulls give no label, but must be valid.
            Some(b'[' | b'n') => return self.value(depth).map(drop),
            Some(b'"') => self.string_cow()?,
            Some(b't') => self.word("true", JVal::Null).map(|_| "true".into())?,
            Some(b'f') => self.word("false", JVal::Null).map(|_| "false".into())?,
            Some(c) if *c == b'-' || c.is_ascii_digit() => Cow::Borrowed(self.number(start)?),
            _ => return self.err("unexpected character"),
        };
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, value));
        }
        Ok(())
    }
}

/// A scalar field of a JSON line: its label name and value.
type Field<'a> = (Cow<'a, str>, Cow<'a, str>);

fn parse_doc(line: &str) -> Result<JVal, String> {
    let mut r = Reader {
        b: line.as_bytes(),
        s: line,
        i: 0,
    };
    let v = r.value(0)?;
    r.ws();
    if r.i != r.b.len() {
        return r.err("trailing data");
    }
    Ok(v)
}

/// Loki's label-name sanitizing: non-word characters become `_`, and a
/// leading digit of the first segment gets a `_` prefix.
pub(crate) fn sanitize_key(key: &str, first: bool) -> std::borrow::Cow<'_, str> {
    let key = key.trim();
    let valid = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let leading_digit = first && key.as_bytes().first().is_some_and(u8::is_ascii_digit);
    // Most keys are already label names: no copy.
    if !leading_digit && key.bytes().all(valid) {
        return std::borrow::Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len() + 1);
    if leading_digit {
        out.push('_');
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    std::borrow::Cow::Owned(out)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathPart {
    Key(String),
    Index(usize),
}

/// `a.b[0]["c d"]`.
pub(crate) fn parse_path(s: &str) -> Result<Vec<PathPart>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut key = String::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                if !key.is_empty() {
                    out.push(PathPart::Key(std::mem::take(&mut key)));
                }
                i += 1;
            }
            b'[' => {
                if !key.is_empty() {
                    out.push(PathPart::Key(std::mem::take(&mut key)));
                }
                let end = s[i..].find(']').ok_or("missing ]")? + i;
                let inner = s[i + 1..end].trim();
                if let Some(q) = inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                    out.push(PathPart::Key(q.to_string()));
                } else {
                    out.push(PathPart::Index(inner.parse().map_err(|_| "invalid index")?));
                }
                i = end + 1;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or(' ');
                key.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    if !key.is_empty() {
        out.push(PathPart::Key(key));
    }
    if out.is_empty() {
        return Err("empty expression".into());
    }
    Ok(out)
}

fn lookup<'a>(mut v: &'a JVal, path: &[PathPart]) -> Option<&'a JVal> {
    for p in path {
        v = match (p, v) {
            (PathPart::Key(k), JVal::Obj(items, _)) => &items.iter().find(|(n, _)| n == k)?.1,
            (PathPart::Index(i), JVal::Arr(items, _)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// `json` without parameters: every scalar field, nested keys joined by `_`.
pub(crate) fn apply_all(line: &str, labels: &mut LabelSet) {
    let mut r = Reader {
        b: line.as_bytes(),
        s: line,
        i: 0,
    };
    r.ws();
    if r.b.get(r.i) != Some(&b'{') {
        // Not an object: the tree reader names the error.
        return match parse_doc(line) {
            Ok(_) => labels.set_error(JSON_ERR, "Value is not an object"),
            Err(e) => labels.set_error(JSON_ERR, e),
        };
    }
    let mut fields = Vec::with_capacity(16);
    let parsed = r.flatten_object(0, None, &mut fields).and_then(|()| {
        r.ws();
        if r.i != r.b.len() {
            return r.err("trailing data");
        }
        Ok(())
    });
    match parsed {
        Ok(()) => {
            for (k, v) in &fields {
                labels.add_parsed(k, v);
            }
        }
        Err(e) => labels.set_error(JSON_ERR, e),
    }
}

/// `json a="path", ...`: a missing path gives an empty value.
pub(crate) fn apply_paths(line: &str, params: &[(String, Vec<PathPart>)], labels: &mut LabelSet) {
    let doc = match parse_doc(line) {
        Ok(d) => d,
        Err(e) => return labels.set_error(JSON_ERR, e),
    };
    for (name, path) in params {
        let value = match lookup(&doc, path) {
            Some(JVal::Str(s)) => s.clone(),
            Some(JVal::Num(n)) => n.clone(),
            Some(JVal::Bool(b)) => b.to_string(),
            Some(JVal::Obj(_, (a, b)) | JVal::Arr(_, (a, b))) => line[*a..*b].to_string(),
            Some(JVal::Null) | None => String::new(),
        };
        labels.add_parsed(name, &value);
    }
}

/// `unpack`: string fields become labels; `_entry` replaces the line.
pub(crate) fn unpack(line: &mut Cow<'_, str>, labels: &mut LabelSet) {
    let items = match parse_doc(line) {
        Ok(JVal::Obj(items, _)) => items,
        Ok(_) => return labels.set_error(JSON_ERR, "Value is not an object"),
        Err(e) => return labels.set_error(JSON_ERR, e),
    };
    let mut entry = None;
    for (k, v) in items {
        if let JVal::Str(s) = v {
            if k == "_entry" {
                entry = Some(s);
            } else {
                labels.add_parsed(&sanitize_key(&k, true), &s);
            }
        }
    }
    if let Some(e) = entry {
        *line = Cow::Owned(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::Labels;

    /// The reference for [`Reader::flatten_object`]: the tree flattened.
    fn flatten(
        prefix: &str,
        items: &[(String, JVal)],
        seen: &mut Vec<String>,
        labels: &mut LabelSet,
    ) {
        for (k, v) in items {
            let key = if prefix.is_empty() {
                sanitize_key(k, true).into_owned()
            } else {
                format!("{prefix}_{}", sanitize_key(k, false))
            };
            let value = match v {
                JVal::Obj(inner, _) => {
                    flatten(&key, inner, seen, labels);
                    continue;
                }
                JVal::Null | JVal::Arr(..) => continue,
                JVal::Bool(b) => b.to_string(),
                JVal::Num(n) => n.clone(),
                JVal::Str(s) => s.clone(),
            };
            if seen.contains(&key) {
                continue;
            }
            labels.add_parsed(&key, &value);
            seen.push(key);
        }
    }

    /// What the tree reader and [`flatten`] make of `line`, as
    /// `apply_all` did before it read without a tree.
    fn reference(line: &str) -> LabelSet {
        let mut labels = LabelSet::from_stream(&Labels::from_pairs([("app", "a")]));
        match parse_doc(line) {
            Ok(JVal::Obj(items, _)) => flatten("", &items, &mut Vec::new(), &mut labels),
            Ok(_) => labels.set_error(JSON_ERR, "Value is not an object"),
            Err(e) => labels.set_error(JSON_ERR, e),
        }
        labels
    }

    fn streaming(line: &str) -> LabelSet {
        let mut labels = LabelSet::from_stream(&Labels::from_pairs([("app", "a")]));
        apply_all(line, &mut labels);
        labels
    }

    /// JSON documents of scalars, arrays and objects with repeated,
    /// escaped and non-label keys.
    fn json_doc() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just("1"),
            Just("-2.5e3"),
            Just("true"),
            Just("false"),
            Just("null"),
            Just(r#""v""#),
            Just(r#""x\"y""#),
            Just(r#""\u0041""#),
            Just(r#""""#),
        ]
        .prop_map(str::to_string);
        let key = prop_oneof![
            Just(r#""a""#),
            Just(r#""b""#),
            Just(r#""a b""#),
            Just(r#""1x""#),
            Just(r#""a_b""#),
            Just(r#""\u0061""#),
            Just(r#"" app ""#),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((key.clone(), inner), 0..6).prop_map(|v| {
                    let members: Vec<String> =
                        v.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn reading_without_a_tree_gives_what_the_tree_gives(
            doc in json_doc(),
            cut in proptest::option::of(0usize..200),
        ) {
            // Cut anywhere (on a char boundary) or whole.
            let line = match cut {
                Some(c) => (0..=c.min(doc.len())).rev().find(|i| doc.is_char_boundary(*i)).map_or("", |i| &doc[..i]),
                None => doc.as_str(),
            };
            let (want, got) = (reference(line), streaming(line));
            proptest::prop_assert_eq!(want.to_labels(), got.to_labels(), "{}", line);
        }
    }

    #[test]
    fn reading_without_a_tree_keeps_errors_nesting_and_escapes() {
        let deep = format!("{{\"a\":{}1{}}}", "{\"b\":".repeat(130), "}".repeat(130));
        for line in [
            r#"{"a":{"b":{"c":1}},"a_b_c":2,"x y":"\u00e9\"","n":null,"l":[{"q":1}],"t":true}"#,
            r#"{"a":1,"a":2,"b":{"a":3},"b_a":4}"#,
            r#"  {"k" : "v" }  "#,
            r#"{"k":"v"} x"#,
            r#"{"k":01.2.3}"#,
            r#"{"k":"v\"#,
            r#"[1,2]"#,
            r#""s""#,
            r#"{"#,
            "",
            deep.as_str(),
        ] {
            assert_eq!(
                reference(line).to_labels(),
                streaming(line).to_labels(),
                "{line}"
            );
        }
    }

    #[test]
    fn flattens_and_keeps_first() {
        let mut l = LabelSet::from_stream(&Labels::default());
        apply_all(
            r#"{"a.b":1,"o":{"x":{"y":"z"}},"dup":"first","dup":"second","n":null,"arr":[1]}"#,
            &mut l,
        );
        let out = l.to_labels();
        assert_eq!(out.get("a_b"), Some("1"));
        assert_eq!(out.get("o_x_y"), Some("z"));
        assert_eq!(out.get("dup"), Some("first"));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("tags[0]").unwrap(),
            vec![PathPart::Key("tags".into()), PathPart::Index(0)]
        );
        assert!(parse_path("user[").is_err());
        let mut l = LabelSet::from_stream(&Labels::default());
        let p = vec![("o".to_string(), parse_path("o").unwrap())];
        apply_paths(r#"{"o":{"x":1}}"#, &p, &mut l);
        assert_eq!(l.to_labels().get("o"), Some(r#"{"x":1}"#));
    }
}
