//! Script text to [`Command`]s.

use std::sync::Arc;

use miru_model::{BucketSpan, CounterResetHint, FloatHistogram, Labels, STALE_NAN_BITS};
use promql_parser::parser::Expr;

use super::{Command, EvalCmd, EvalKind, Expect, ScriptError, SeqValue, SeriesLine, err};

/// Prometheus' duration syntax (`1h30m`, `10s53ms`, `0`), optionally negative.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if s == "0" {
        return Some(0);
    }
    if let Ok(v) = s.parse::<f64>() {
        // Plain numbers are seconds.
        let ms = (v * 1000.0).round() as i64;
        return Some(if neg { -ms } else { ms });
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let mult = match &s[ustart..i] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(if neg { -total } else { total })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        "NaN" | "nan" => return Some(f64::NAN),
        "stale" => return Some(f64::from_bits(STALE_NAN_BITS)),
        _ => {}
    }
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
    }
    if let Some(h) = s.strip_prefix("-0x") {
        return i64::from_str_radix(h, 16).ok().map(|v| -(v as f64));
    }
    s.parse::<f64>().ok()
}

/// Splits `metric{a="b"} 1 2 3` into the descriptor and the rest.
fn split_descriptor(line: &str) -> (&str, &str) {
    let b = line.as_bytes();
    let mut i = 0;
    let mut in_str: Option<u8> = None;
    let mut depth = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                in_str = None;
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            in_str = Some(c);
        } else if c == b'{' {
            depth += 1;
        } else if c == b'}' {
            depth -= 1;
            if depth == 0 {
                return (&line[..=i], &line[i + 1..]);
            }
        } else if depth == 0 && (c == b' ' || c == b'\t') {
            return (&line[..i], &line[i..]);
        }
        i += 1;
    }
    (line, "")
}

/// Labels of a series descriptor such as `up{job="x"}` or `{__name__="y"}`.
pub fn parse_labels(desc: &str) -> Result<Labels, String> {
    let desc = desc.trim();
    if desc == "{}" {
        return Ok(Labels::default());
    }
    let expr = crate::parse(desc).map_err(|e| format!("bad series {desc:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("bad series {desc:?}"));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(n) = &vs.name {
        pairs.push(("__name__".into(), n.clone()));
    }
    for m in &vs.matchers.matchers {
        pairs.push((m.name.clone(), m.value.clone()));
    }
    Ok(Labels::from_pairs(pairs))
}

/// Splits the value part into items, keeping `{{...}}` (and its `xN` or
/// `+{{...}}xN` suffix) together.
fn value_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' || b[i] == b'\t' {
            i += 1;
            continue;
        }
        let start = i;
        let mut depth = 0;
        while i < b.len() {
            match b[i] {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b' ' | b'\t' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        out.push(s[start..i].to_string());
    }
    out
}

fn parse_bucket_list(s: &str) -> Result<Vec<f64>, String> {
    s.split_whitespace()
        .map(|x| parse_float(x).ok_or_else(|| format!("bad bucket {x:?}")))
        .collect()
}

/// A histogram literal `{{schema:0 sum:5 count:4 buckets:[1 2 1]}}`.
pub fn parse_histogram(s: &str) -> Result<(FloatHistogram, bool), String> {
    let inner = s
        .trim()
        .strip_prefix("{{")
        .and_then(|r| r.strip_suffix("}}"))
        .ok_or_else(|| format!("bad histogram {s:?}"))?;
    let mut h = FloatHistogram::default();
    let mut hint_set = false;
    let (mut buckets, mut nbuckets, mut offset, mut noffset) = (Vec::new(), Vec::new(), 0, 0);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .ok_or_else(|| format!("bad histogram field in {s:?}"))?;
        let key = key.trim();
        let after = after.trim_start();
        let (val, next) = if let Some(r) = after.strip_prefix('[') {
            let (v, n) = r
                .split_once(']')
                .ok_or_else(|| format!("unclosed list in {s:?}"))?;
            (v, n)
        } else {
            match after.find([' ', '\t']) {
                Some(p) => (&after[..p], &after[p..]),
                None => (after, ""),
            }
        };
        rest = next.trim_start();
        let num = || parse_float(val.trim()).ok_or_else(|| format!("bad number {val:?}"));
        match key {
            "schema" => h.schema = num()? as i32,
            "sum" => h.sum = num()?,
            "count" => h.count = num()?,
            "z_bucket" => h.zero_count = num()?,
            "z_bucket_w" => h.zero_threshold = num()?,
            "buckets" => buckets = parse_bucket_list(val)?,
            "n_buckets" => nbuckets = parse_bucket_list(val)?,
            "offset" => offset = num()? as i32,
            "n_offset" => noffset = num()? as i32,
            "custom_values" => h.custom_values = parse_bucket_list(val)?,
            "counter_reset_hint" => {
                hint_set = true;
                h.counter_reset_hint = match val.trim() {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(format!("bad counter_reset_hint {other:?}")),
                };
            }
            other => return Err(format!("unknown histogram field {other:?}")),
        }
    }
    if !buckets.is_empty() {
        h.positive_spans = vec![BucketSpan {
            offset,
            length: buckets.len() as u32,
        }];
        h.positive_buckets = buckets;
    }
    if !nbuckets.is_empty() {
        h.negative_spans = vec![BucketSpan {
            offset: noffset,
            length: nbuckets.len() as u32,
        }];
        h.negative_buckets = nbuckets;
    }
    Ok((h, hint_set))
}

fn add_hist(a: &FloatHistogram, b: &FloatHistogram, k: f64) -> FloatHistogram {
    let scaled = crate::histogram::scale(b, k);
    match crate::histogram::add(a, &scaled) {
        Ok(r) => {
            let mut h = r.h;
            h.counter_reset_hint = a.counter_reset_hint;
            h
        }
        Err(_) => a.clone(),
    }
}

/// Expands the value items of a series line.
pub fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let mut out = Vec::new();
    for tok in value_tokens(s) {
        if tok.starts_with("{{") {
            // {{h}}, {{h}}xN, {{h}}+{{d}}xN, {{h}}-{{d}}xN
            let close = tok
                .find("}}")
                .ok_or_else(|| format!("bad histogram {tok:?}"))?
                + 2;
            let (base, hint_set) = parse_histogram(&tok[..close])?;
            let rest = &tok[close..];
            if rest.is_empty() {
                out.push(SeqValue::Histogram {
                    h: Arc::new(base),
                    hint_set,
                });
                continue;
            }
            if let Some(n) = rest.strip_prefix('x') {
                let n: usize = n.parse().map_err(|_| format!("bad repeat in {tok:?}"))?;
                for _ in 0..=n {
                    out.push(SeqValue::Histogram {
                        h: Arc::new(base.clone()),
                        hint_set,
                    });
                }
                continue;
            }
            let sign = if rest.starts_with('+') { 1.0 } else { -1.0 };
            let rest = &rest[1..];
            let close2 = rest
                .find("}}")
                .ok_or_else(|| format!("bad histogram {tok:?}"))?
                + 2;
            let (delta, _) = parse_histogram(&rest[..close2])?;
            let n: usize = rest[close2..]
                .strip_prefix('x')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("bad repeat in {tok:?}"))?;
            for i in 0..=n {
                out.push(SeqValue::Histogram {
                    h: Arc::new(add_hist(&base, &delta, sign * i as f64)),
                    hint_set,
                });
            }
            continue;
        }
        if tok == "_" {
            out.push(SeqValue::Omitted);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad repeat {tok:?}"))?;
            out.extend(std::iter::repeat_n(SeqValue::Omitted, n));
            continue;
        }
        // `0x59` is "0 repeated 59 more times", not hex.
        let repeat_form = tok.rsplit_once('x').is_some_and(|(h, n)| {
            !h.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        });
        if !repeat_form && let Some(v) = parse_float(&tok) {
            out.push(SeqValue::Float(v));
            continue;
        }
        // a+bxN, a-bxN, axN
        let (head, n) = tok
            .rsplit_once('x')
            .ok_or_else(|| format!("bad value {tok:?}"))?;
        let n: usize = n.parse().map_err(|_| format!("bad repeat {tok:?}"))?;
        // Find the operator that is not a sign of a number or exponent.
        let hb = head.as_bytes();
        let mut op_at = None;
        for i in 1..hb.len() {
            if (hb[i] == b'+' || hb[i] == b'-') && hb[i - 1] != b'e' && hb[i - 1] != b'E' {
                op_at = Some(i);
            }
        }
        match op_at {
            None => {
                let v = parse_float(head).ok_or_else(|| format!("bad value {tok:?}"))?;
                out.extend(std::iter::repeat_n(SeqValue::Float(v), n + 1));
            }
            Some(i) => {
                let a = parse_float(&head[..i]).ok_or_else(|| format!("bad value {tok:?}"))?;
                let d = parse_float(&head[i + 1..]).ok_or_else(|| format!("bad value {tok:?}"))?;
                let d = if hb[i] == b'-' { -d } else { d };
                let mut cur = a;
                for _ in 0..=n {
                    out.push(SeqValue::Float(cur));
                    cur += d;
                }
            }
        }
    }
    Ok(out)
}

fn parse_series_line(line: &str) -> Result<SeriesLine, String> {
    let (desc, vals) = split_descriptor(line.trim());
    Ok(SeriesLine {
        labels: parse_labels(desc)?,
        values: parse_values(vals)?,
    })
}

fn parse_expect(rest: &str) -> Expect {
    let rest = rest.trim();
    if let Some(m) = rest.strip_prefix("msg:") {
        Expect::Msg(m.trim().to_string())
    } else if let Some(r) = rest.strip_prefix("regex:") {
        Expect::Regex(r.trim().to_string())
    } else {
        Expect::Any
    }
}

fn parse_eval_header(line: usize, head: &str) -> Result<(EvalKind, String), ScriptError> {
    if let Some(r) = head.strip_prefix("instant at ") {
        let (t, expr) = r
            .trim_start()
            .split_once(' ')
            .ok_or_else(|| err(line, "missing expression"))?;
        let at_ms = parse_duration_ms(t).ok_or_else(|| err(line, format!("bad time {t:?}")))?;
        return Ok((EvalKind::Instant { at_ms }, expr.trim().to_string()));
    }
    if let Some(r) = head.strip_prefix("range from ") {
        let parts: Vec<&str> = r.trim().splitn(6, ' ').collect();
        if parts.len() < 6 || parts[1] != "to" || parts[3] != "step" {
            return Err(err(line, "bad range eval"));
        }
        let p = |s: &str| parse_duration_ms(s).ok_or_else(|| err(line, format!("bad time {s:?}")));
        return Ok((
            EvalKind::Range {
                start_ms: p(parts[0])?,
                end_ms: p(parts[2])?,
                step_ms: p(parts[4])?,
            },
            parts[5].trim().to_string(),
        ));
    }
    Err(err(line, format!("bad eval command {head:?}")))
}

/// Parses a whole script.
pub fn parse_script(text: &str) -> Result<Vec<Command>, ScriptError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_body = |l: &str| l.starts_with(' ') || l.starts_with('\t');
    while i < lines.len() {
        let raw = lines[i];
        let line_no = i + 1;
        let l = raw.trim();
        i += 1;
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if l == "clear" {
            out.push(Command::Clear);
            continue;
        }
        if let Some(r) = l
            .strip_prefix("load_with_nhcb ")
            .map(|r| (r, true))
            .or_else(|| l.strip_prefix("load ").map(|r| (r, false)))
        {
            let (dur, with_nhcb) = r;
            let interval_ms = parse_duration_ms(dur)
                .ok_or_else(|| err(line_no, format!("bad interval {dur:?}")))?;
            let mut series = Vec::new();
            while i < lines.len() && is_body(lines[i]) && !lines[i].trim().is_empty() {
                let body = lines[i].trim();
                i += 1;
                if body.starts_with('#') {
                    continue;
                }
                let (desc, rest) = split_descriptor(body);
                if desc.ends_with("@st") || rest.trim_start().starts_with("@st") {
                    // Start-timestamp lines (experimental) are not loaded.
                    continue;
                }
                series.push(parse_series_line(body).map_err(|m| err(i, m))?);
            }
            out.push(Command::Load {
                interval_ms,
                with_nhcb,
                series,
            });
            continue;
        }
        let (variant, head) = match l.split_once(' ') {
            Some((v, h)) if v.starts_with("eval") => (v, h),
            _ => return Err(err(line_no, format!("unknown command {l:?}"))),
        };
        let (kind, expr) = parse_eval_header(line_no, head)?;
        let mut cmd = EvalCmd {
            line: line_no,
            expr,
            kind,
            fail: None,
            warn: Vec::new(),
            info: Vec::new(),
            no_warn: false,
            no_info: false,
            ordered: false,
            string: None,
            scalar: None,
            range_vector: None,
            series: Vec::new(),
        };
        match variant {
            "eval" => {}
            "eval_fail" => cmd.fail = Some(Expect::Any),
            "eval_warn" => cmd.warn.push(Expect::Any),
            "eval_info" => cmd.info.push(Expect::Any),
            "eval_ordered" => cmd.ordered = true,
            other => return Err(err(line_no, format!("unknown eval variant {other:?}"))),
        }
        while i < lines.len() && is_body(lines[i]) && !lines[i].trim().is_empty() {
            let body = lines[i].trim();
            let bl = i + 1;
            i += 1;
            if body.starts_with('#') {
                continue;
            }
            if let Some(r) = body.strip_prefix("expect ") {
                let r = r.trim();
                if let Some(x) = r.strip_prefix("fail") {
                    cmd.fail = Some(parse_expect(x));
                } else if let Some(x) = r.strip_prefix("warn") {
                    cmd.warn.push(parse_expect(x));
                } else if let Some(x) = r.strip_prefix("info") {
                    cmd.info.push(parse_expect(x));
                } else if r == "no_warn" {
                    cmd.no_warn = true;
                } else if r == "no_info" {
                    cmd.no_info = true;
                } else if r == "ordered" {
                    cmd.ordered = true;
                } else if let Some(x) = r.strip_prefix("string ") {
                    let x = x.trim();
                    let unq = promql_parser::util::unquote_string(x)
                        .unwrap_or_else(|_| x.trim_matches(|c| c == '"' || c == '`').to_string());
                    cmd.string = Some(unq);
                } else if let Some(x) = r.strip_prefix("range vector from ") {
                    let p: Vec<&str> = x.split_whitespace().collect();
                    let d = |s: &str| {
                        parse_duration_ms(s).ok_or_else(|| err(bl, format!("bad time {s:?}")))
                    };
                    if p.len() != 5 {
                        return Err(err(bl, "bad range vector expectation"));
                    }
                    cmd.range_vector = Some((d(p[0])?, d(p[2])?, d(p[4])?));
                } else {
                    return Err(err(bl, format!("unknown expectation {r:?}")));
                }
                continue;
            }
            if let Some(r) = body.strip_prefix("expected_fail_message") {
                cmd.fail = Some(Expect::Msg(r.trim().to_string()));
                continue;
            }
            if let Some(r) = body.strip_prefix("expected_fail_regexp") {
                cmd.fail = Some(Expect::Regex(r.trim().to_string()));
                continue;
            }
            if let Some(v) = parse_float(body) {
                cmd.scalar = Some(v);
                continue;
            }
            cmd.series
                .push(parse_series_line(body).map_err(|m| err(bl, m))?);
        }
        out.push(Command::Eval(Box::new(cmd)));
    }
    Ok(out)
}

/// Converts classic histogram series (`_bucket{le}`, `_sum`, `_count`) to
/// native histograms with custom buckets under the base name, as
/// `load_with_nhcb` does.
pub fn classic_to_nhcb(series: &[SeriesLine]) -> Vec<SeriesLine> {
    use std::collections::BTreeMap;
    #[derive(Default)]
    struct Acc {
        buckets: BTreeMap<u64, (f64, Vec<SeqValue>)>,
        sum: Option<Vec<SeqValue>>,
        count: Option<Vec<SeqValue>>,
    }
    let mut groups: BTreeMap<Labels, Acc> = BTreeMap::new();
    for s in series {
        let Some(name) = s.labels.metric_name() else {
            continue;
        };
        let base_labels = |base: &str, drop_le: bool| {
            Labels::from_pairs(
                s.labels
                    .iter()
                    .filter(|l| !(drop_le && &*l.name == "le"))
                    .map(|l| {
                        if &*l.name == "__name__" {
                            (l.name.to_string(), base.to_string())
                        } else {
                            (l.name.to_string(), l.value.to_string())
                        }
                    }),
            )
        };
        if let Some(base) = name.strip_suffix("_bucket") {
            let Some(le) = s.labels.get("le").and_then(parse_float) else {
                continue;
            };
            let key = base_labels(base, true);
            groups
                .entry(key)
                .or_default()
                .buckets
                .insert(le.to_bits() ^ (1 << 63), (le, s.values.clone()));
        } else if let Some(base) = name.strip_suffix("_sum") {
            groups.entry(base_labels(base, false)).or_default().sum = Some(s.values.clone());
        } else if let Some(base) = name.strip_suffix("_count") {
            groups.entry(base_labels(base, false)).or_default().count = Some(s.values.clone());
        }
    }
    let mut out = Vec::new();
    for (labels, acc) in groups {
        if acc.buckets.is_empty() {
            continue;
        }
        let mut bs: Vec<(f64, Vec<SeqValue>)> = acc.buckets.into_values().collect();
        bs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let n = bs.iter().map(|b| b.1.len()).max().unwrap_or(0);
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let mut cum = Vec::new();
            let mut ok = true;
            for (le, vals) in &bs {
                match vals.get(i) {
                    Some(SeqValue::Float(v)) => cum.push((*le, *v)),
                    _ => ok = false,
                }
            }
            if !ok || cum.is_empty() {
                values.push(SeqValue::Omitted);
                continue;
            }
            let custom: Vec<f64> = cum.iter().map(|c| c.0).filter(|v| v.is_finite()).collect();
            let mut buckets = Vec::new();
            let mut prev = 0.0;
            for (_, v) in &cum {
                buckets.push(v - prev);
                prev = *v;
            }
            let get = |o: &Option<Vec<SeqValue>>| match o.as_ref().and_then(|v| v.get(i)) {
                Some(SeqValue::Float(f)) => Some(*f),
                _ => None,
            };
            let count = get(&acc.count).unwrap_or(prev);
            let sum = get(&acc.sum).unwrap_or(0.0);
            let h = FloatHistogram {
                schema: miru_model::CUSTOM_BUCKETS_SCHEMA,
                count,
                sum,
                positive_spans: vec![BucketSpan {
                    offset: 0,
                    length: buckets.len() as u32,
                }],
                positive_buckets: buckets,
                custom_values: custom,
                ..Default::default()
            };
            values.push(SeqValue::Histogram {
                h: Arc::new(h),
                hint_set: false,
            });
        }
        out.push(SeriesLine { labels, values });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_values() {
        let v = parse_values("1+2x2 _ stale 5x1 _x2 -1-1x1 1e3").unwrap();
        let f: Vec<String> = v
            .iter()
            .map(|x| match x {
                SeqValue::Float(f) if f.to_bits() == STALE_NAN_BITS => "stale".into(),
                SeqValue::Float(f) => f.to_string(),
                SeqValue::Omitted => "_".into(),
                SeqValue::Histogram { .. } => "h".into(),
            })
            .collect();
        assert_eq!(
            f,
            vec![
                "1", "3", "5", "_", "stale", "5", "5", "_", "_", "-1", "-2", "1000"
            ]
        );
    }

    #[test]
    fn parses_histograms_and_labels() {
        let v = parse_values("{{schema:1 sum:3 count:22 buckets:[5 10 7]}}x1").unwrap();
        assert_eq!(v.len(), 2);
        let l = parse_labels("metric{a=\"b\", c=\"d\"}").unwrap();
        assert_eq!(l.get("c"), Some("d"));
        assert_eq!(l.metric_name(), Some("metric"));
        assert_eq!(parse_duration_ms("10s53ms"), Some(10_053));
        assert_eq!(parse_duration_ms("1h5m"), Some(3_900_000));
    }

    #[test]
    fn parses_commands() {
        let cmds = parse_script(
            "load 1m\n  up{job=\"a\"} 1 2\n\neval instant at 1m up\n  expect info\n  up{job=\"a\"} 2\n",
        )
        .unwrap();
        assert_eq!(cmds.len(), 2);
        match &cmds[1] {
            Command::Eval(e) => {
                assert_eq!(e.series.len(), 1);
                assert_eq!(e.info, vec![Expect::Any]);
            }
            _ => panic!("expected eval"),
        }
    }
}
