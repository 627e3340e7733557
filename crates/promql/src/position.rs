//! Source positions for annotations and parse errors.
//!
//! `promql-parser` 0.11 keeps no positions in its AST and reports grammar
//! errors without one, while Prometheus ends every annotation with the
//! `line:col` of the offending sub-expression and prefixes parse errors with
//! it. This module recovers both from the query text with a small scanner.

/// A position in the query, 1-based, as Prometheus prints it (`1:6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub(crate) line: usize,
    pub(crate) col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line.max(1), self.col.max(1))
    }
}

pub(crate) fn pos_at(query: &str, offset: usize) -> Pos {
    let offset = offset.min(query.len());
    let before = &query.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    Pos {
        line,
        col: offset - line_start + 1,
    }
}

/// A function call or aggregation as found in the text: where its name
/// starts and where each argument starts.
#[derive(Debug, Clone)]
pub(crate) struct CallSite {
    pub(crate) name: String,
    pub(crate) start: Pos,
    pub(crate) args: Vec<Pos>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// A number or a duration (`5m`, `1e3`, `0x1f`).
    Number,
    Open(u8),
    Close,
    Comma,
    At,
    Other,
}

struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn tokenize(q: &str) -> Vec<Token> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                Tok::Other
            }
            b'(' | b'[' | b'{' => {
                i += 1;
                Tok::Open(c)
            }
            b')' | b']' | b'}' => {
                i += 1;
                Tok::Close
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'@' => {
                i += 1;
                Tok::At
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                Tok::Ident(q[start..i].to_string())
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        // The sign of an exponent (`1e+30`), not of hex.
                        || (matches!(b[i], b'+' | b'-')
                            && matches!(b[i - 1], b'e' | b'E')
                            && !q[start..i].starts_with("0x")
                            && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    i += 1;
                }
                Tok::Number
            }
            _ => {
                // Skip one UTF-8 character.
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
                Tok::Other
            }
        };
        out.push(Token { tok, start, end: i });
    }
    out
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "fill",
    "fill_left",
    "fill_right",
];

const AGGREGATORS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Every call and aggregation in source order (which is the pre-order of
/// the syntax tree, arguments left to right).
pub(crate) fn call_sites(q: &str) -> Vec<CallSite> {
    let toks = tokenize(q);
    let mut sites: Vec<CallSite> = Vec::new();
    // Stack of open brackets; `Some(i)` for the parenthesis of call site i.
    let mut stack: Vec<Option<usize>> = Vec::new();
    let mut pending_call: Option<usize> = None;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        match &t.tok {
            Tok::Ident(name) => {
                let after_at = i > 0 && toks[i - 1].tok == Tok::At;
                let lname = name.to_ascii_lowercase();
                if !after_at && !KEYWORDS.contains(&lname.as_str()) {
                    let next = toks.get(i + 1).map(|t| &t.tok);
                    let is_agg = AGGREGATORS.contains(&lname.as_str());
                    let grouping_next = matches!(next, Some(Tok::Ident(k)) if is_agg && (k.eq_ignore_ascii_case("by") || k.eq_ignore_ascii_case("without")));
                    if next == Some(&Tok::Open(b'(')) || grouping_next {
                        sites.push(CallSite {
                            name: name.clone(),
                            start: pos_at(q, t.start),
                            args: Vec::new(),
                        });
                        let idx = sites.len() - 1;
                        if grouping_next {
                            // Skip `by (...)` to the argument parenthesis.
                            let mut j = i + 2;
                            if toks.get(j).map(|t| &t.tok) == Some(&Tok::Open(b'(')) {
                                let mut depth = 0;
                                while j < toks.len() {
                                    match toks[j].tok {
                                        Tok::Open(_) => depth += 1,
                                        Tok::Close => {
                                            depth -= 1;
                                            if depth == 0 {
                                                break;
                                            }
                                        }
                                        _ => {}
                                    }
                                    j += 1;
                                }
                            }
                            i = j;
                        }
                        pending_call = Some(idx);
                    }
                }
            }
            Tok::Open(c) => {
                if *c == b'(' {
                    if let Some(idx) = pending_call.take() {
                        stack.push(Some(idx));
                        if let Some(n) = toks.get(i + 1)
                            && n.tok != Tok::Close
                        {
                            sites[idx].args.push(pos_at(q, n.start));
                        }
                    } else {
                        stack.push(None);
                    }
                } else {
                    pending_call = None;
                    stack.push(None);
                }
            }
            Tok::Close => {
                stack.pop();
            }
            Tok::Comma => {
                if let Some(Some(idx)) = stack.last()
                    && let Some(n) = toks.get(i + 1)
                {
                    sites[*idx].args.push(pos_at(q, n.start));
                }
            }
            Tok::At | Tok::Number | Tok::Other => {}
        }
        i += 1;
    }
    sites
}

/// A plain number of 2^64 seconds or more where a duration goes: inside
/// brackets (a range or a subquery) or right after `offset` (a sign may
/// come between). promql-parser panics on those (see `syntax.rs`).
pub(crate) fn huge_duration_number(q: &str) -> Option<String> {
    const TOO_LARGE: f64 = 18_446_744_073_709_551_616.0; // 2^64
    let too_large = |text: &str| text.parse::<f64>().is_ok_and(|v| v.abs() >= TOO_LARGE);
    let toks = tokenize(q);
    let is_offset =
        |k: usize| matches!(&toks[k].tok, Tok::Ident(w) if w.eq_ignore_ascii_case("offset"));
    for (i, t) in toks.iter().enumerate() {
        match &t.tok {
            // A range or `range:step`: each side on its own (the scanner
            // would read `:1e30` as a name, metric names may hold ':').
            Tok::Open(b'[') => {
                let end = toks[i + 1..]
                    .iter()
                    .find(|c| c.tok == Tok::Close)
                    .map_or(q.len(), |c| c.start);
                if let Some(side) = q[t.end..end]
                    .split(':')
                    .map(str::trim)
                    .find(|s| too_large(s))
                {
                    return Some(side.to_string());
                }
            }
            Tok::Number => {
                let signed = i >= 2 && matches!(&q[toks[i - 1].start..toks[i - 1].end], "-" | "+");
                let after_offset = (i >= 1 && is_offset(i - 1)) || (signed && is_offset(i - 2));
                let text = &q[t.start..t.end];
                if after_offset && too_large(text) {
                    return Some(text.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// Where a query's syntax tree could become deeper than `limit` levels:
/// the byte offset of the token at which an upper bound of that depth,
/// read from the text alone, first exceeds it. Every node on a path from
/// the root is either a bracketed one (call, aggregation, parentheses,
/// range, subquery), each nested inside the brackets of the one before, or
/// an operator (binary or unary), each a token of its own; so the depth is
/// at most the deepest bracket nesting plus the number of operator
/// characters and keywords. Label matchers (inside braces) and strings do
/// not count.
pub(crate) fn nesting_exceeds(q: &str, limit: usize) -> Option<usize> {
    let mut brackets = 0usize;
    let mut braces = 0usize;
    let mut operators = 0usize;
    for t in tokenize(q) {
        let text = &q[t.start..t.end];
        match &t.tok {
            Tok::Open(b'{') => braces += 1,
            Tok::Close if text == "}" => braces = braces.saturating_sub(1),
            _ if braces > 0 => {}
            Tok::Open(_) => brackets += 1,
            Tok::Close => brackets = brackets.saturating_sub(1),
            Tok::Ident(w)
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                operators += 1
            }
            Tok::Other if text.len() == 1 && "+-*/%^=!<>".contains(text) => operators += 1,
            _ => {}
        }
        if brackets + operators > limit {
            return Some(t.start);
        }
    }
    None
}

/// Best guess of where a query that does not parse goes wrong: the start of
/// the first token after the longest prefix that some short completion
/// turns into a valid query. Returns a 1-based `(line, col)`.
pub fn parse_error_position(query: &str) -> (usize, usize) {
    if let Some(off) = nesting_exceeds(query, crate::syntax::MAX_NESTING) {
        let p = pos_at(query, off);
        return (p.line, p.col);
    }
    let toks = tokenize(query);
    const COMPLETIONS: &[&str] = &[
        "", ")", "))", ")))", "]", "])", "}", "\"}", "1", "x", "x)", "x))", "1)", "1))", "x]",
        "5m]", "5m])", "x}", "=\"\"}", "(x)", "x)[5m:]",
    ];
    // Bounded work: at most this many candidate parses, and this many bytes
    // parsed in all (long queries get fewer tries, not quadratic time).
    let mut budget = 600usize;
    let mut budget_bytes = 256usize << 10;
    for k in (0..=toks.len()).rev() {
        let end = if k == 0 { 0 } else { toks[k - 1].end };
        let cost = COMPLETIONS.len() * (end + 8);
        if budget < COMPLETIONS.len() || budget_bytes < cost {
            break;
        }
        budget -= COMPLETIONS.len();
        budget_bytes -= cost;
        let prefix = &query[..end];
        for c in COMPLETIONS {
            let cand = format!("{prefix} {c}");
            if crate::parse(&cand).is_ok() {
                let off = toks.get(k).map(|t| t.start).unwrap_or(query.len());
                let p = pos_at(query, off);
                return (p.line, p.col);
            }
        }
    }
    (1, 1)
}

/// Private-use code points that stand for bytes of a string literal that
/// are not valid UTF-8 (Go strings may hold them, Rust strings may not).
const RAW_BYTE_BASE: u32 = 0xF700;

/// Whether a string holds bytes that were not valid UTF-8 in the query.
pub(crate) fn has_raw_bytes(s: &str) -> bool {
    s.chars()
        .any(|c| (RAW_BYTE_BASE..RAW_BYTE_BASE + 256).contains(&(c as u32)))
}

/// Go's `strconv.Quote`, with raw bytes printed as `\xNN`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let u = c as u32;
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            _ if (RAW_BYTE_BASE..RAW_BYTE_BASE + 256).contains(&u) => {
                out.push_str(&format!("\\x{:02x}", u - RAW_BYTE_BASE));
            }
            _ if u < 0x20 || u == 0x7f => out.push_str(&format!("\\x{u:02x}")),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Decodes the escapes of a Go string literal body into bytes.
fn go_unescape(body: &str) -> Option<Vec<u8>> {
    let b = body.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |s: &[u8]| {
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| u32::from_str_radix(s, 16).ok())
    };
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1)?;
        i += 2;
        match e {
            b'x' => {
                out.push(hex(b.get(i..i + 2)?)? as u8);
                i += 2;
            }
            b'0'..=b'7' => {
                let s = std::str::from_utf8(b.get(i - 1..i + 2)?).ok()?;
                out.push(u8::from_str_radix(s, 8).ok()?);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let c = char::from_u32(hex(b.get(i..i + n)?)?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += n;
            }
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            other => out.push(other),
        }
    }
    Some(out)
}

/// String literals of the query whose escapes make invalid UTF-8: the
/// value `promql-parser` produced for each, and the value with the raw
/// bytes kept as private-use characters.
pub(crate) fn raw_byte_strings(q: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in tokenize(q) {
        let text = &q[t.start..t.end];
        let Some(first) = text.chars().next() else {
            continue;
        };
        if (first != '"' && first != '\'') || text.len() < 2 || !text.contains("\\") {
            continue;
        }
        let Some(bytes) = go_unescape(&text[1..text.len() - 1]) else {
            continue;
        };
        if std::str::from_utf8(&bytes).is_ok() {
            continue;
        }
        let Ok(parsed) = promql_parser::util::unquote_string(text) else {
            continue;
        };
        let mut kept = String::new();
        for chunk in bytes.utf8_chunks() {
            kept.push_str(chunk.valid());
            for &b in chunk.invalid() {
                kept.push(char::from_u32(RAW_BYTE_BASE + b as u32).unwrap_or('\u{FFFD}'));
            }
        }
        out.push((parsed, kept));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_call_and_argument_positions() {
        let s = call_sites("sum by (job) (rate(foo{a=\"b,c\"}[5m]))");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "sum");
        assert_eq!(s[0].args[0].to_string(), "1:15");
        assert_eq!(s[1].name, "rate");
        assert_eq!(s[1].args.len(), 1);
        assert_eq!(s[1].args[0].to_string(), "1:20");
        let s = call_sites("histogram_quantile(0.5, x) @ start()");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].args[1].to_string(), "1:25");
    }

    #[test]
    fn bounds_the_nesting_of_brackets_and_operators() {
        assert_eq!(nesting_exceeds("sum(rate(x[5m]))", 3), None);
        assert_eq!(nesting_exceeds("sum(rate(x[5m]))", 2), Some(10));
        assert_eq!(nesting_exceeds("a + b - c", 2), None);
        assert_eq!(nesting_exceeds("a + b - c or d", 2), Some(10));
        assert_eq!(nesting_exceeds("a == -b", 2), Some(5));
        // Matchers, strings, comments and exponents are not operators.
        let q = "x{a=~\"(((+-\", b!=\"-\"} + label_replace(y, \"d\", \"(((\", \"\", \"\") # ((((\n* 1e-3";
        assert_eq!(nesting_exceeds(q, 2), None);
        assert_eq!(
            nesting_exceeds(q, 1),
            Some(q.find("label_replace(").unwrap() + 13)
        );
        // Closing brackets lower the bracket depth; operators stay counted.
        assert_eq!(nesting_exceeds("((a)) + ((b))", 3), None);
        assert_eq!(nesting_exceeds("((a)) + ((b))", 2), Some(9));
    }

    #[test]
    fn guesses_parse_error_position() {
        assert_eq!(parse_error_position("foo +"), (1, 6));
        assert_eq!(parse_error_position("sum(foo"), (1, 8));
    }
}
