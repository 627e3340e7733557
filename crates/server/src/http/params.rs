//! Request parameters of the Prometheus HTTP API: query string and form
//! bodies (repeated `match[]`), times as Unix seconds or RFC 3339, and
//! series selectors parsed with the PromQL parser.

use std::collections::HashMap;

use miru_model::{MatchOp, Matcher};

/// Parameters from the query string and, for form POSTs, the body.
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, Vec<String>>,
}

impl Params {
    pub fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Params {
        let mut p = Params::default();
        for src in [query.map(str::as_bytes), form_body].into_iter().flatten() {
            for (k, v) in form_urlencoded::parse(src) {
                p.values
                    .entry(k.into_owned())
                    .or_default()
                    .push(v.into_owned());
            }
        }
        p
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.values
            .get(k)
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn all(&self, k: &str) -> &[String] {
        self.values.get(k).map_or(&[], Vec::as_slice)
    }

    /// A time parameter in milliseconds, or `default` when absent.
    pub fn time_ms(&self, k: &str, default: i64) -> Result<i64, String> {
        match self.get(k) {
            None => Ok(default),
            Some(s) => parse_time_ms(s).map_err(|e| format!("invalid parameter {k:?}: {e}")),
        }
    }

    pub fn limit(&self) -> Result<Option<usize>, String> {
        match self.get("limit") {
            None => Ok(None),
            Some(s) => match s.parse::<i64>() {
                Ok(0) => Ok(None),
                Ok(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(format!(
                    "invalid parameter \"limit\": {s:?} is not a non-negative integer"
                )),
            },
        }
    }
}

/// Earliest and latest times the API accepts, as Prometheus' MinTime/MaxTime
/// (in milliseconds, with room for arithmetic).
pub const MIN_TIME_MS: i64 = i64::MIN / 2;
pub const MAX_TIME_MS: i64 = i64::MAX / 2;

/// Parses `1700000000`, `1700000000.123` or RFC 3339 (`2023-11-14T22:13:20Z`).
pub fn parse_time_ms(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (f * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return Err(format!("timestamp {s:?} out of range"));
        }
        return Ok(ms as i64);
    }
    parse_rfc3339_ms(s).ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if digits == 0 {
            return None;
        }
        let frac = &r[..digits];
        let padded: String = frac.chars().chain("000".chars()).take(3).collect();
        frac_ms = padded.parse().ok()?;
        rest = &r[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if mo > 2 { mo - 3 } else { mo + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec - offset_s) * 1000 + frac_ms)
}

/// Parses a series selector such as `up{job=~"api|db"}` into matchers.
/// Selectors with `or` alternatives are returned as several sets.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    use promql_parser::parser::Expr;
    let expr = miru_promql::parse(s).map_err(|e| format!("invalid series selector {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "invalid series selector {s:?}: expected a vector selector"
        ));
    };
    selector_matchers(&vs).map_err(|e| format!("invalid series selector {s:?}: {e}"))
}

/// The matcher sets of a parsed vector selector (one per `or` alternative).
pub fn selector_matchers(
    vs: &promql_parser::parser::VectorSelector,
) -> Result<Vec<Vec<Matcher>>, String> {
    use promql_parser::label::MatchOp as P;
    let convert = |ms: &[promql_parser::label::Matcher],
                   name: &Option<String>|
     -> Result<Vec<Matcher>, String> {
        let mut out = Vec::with_capacity(ms.len() + 1);
        if let Some(n) = name {
            out.push(Matcher::equal(miru_model::METRIC_NAME, n));
        }
        for m in ms {
            let op = match m.op {
                P::Equal => MatchOp::Equal,
                P::NotEqual => MatchOp::NotEqual,
                P::Re(_) => MatchOp::Regex,
                P::NotRe(_) => MatchOp::NotRegex,
            };
            out.push(Matcher::new(&m.name, op, &m.value).map_err(|e| e.to_string())?);
        }
        if out.iter().all(|m| m.matches_empty()) {
            return Err("match[] must contain at least one non-empty matcher".to_string());
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![convert(&vs.matchers.matchers, &vs.name)?])
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|set| convert(set, &vs.name))
            .collect()
    }
}

/// A duration parameter as Prometheus' API takes it: float seconds
/// (`15`, `0.5`) or a duration (`15s`, `1m30s`).
pub fn parse_duration_param(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if (0.0..1e15).contains(&secs) {
            return Ok(std::time::Duration::from_secs_f64(secs));
        }
        return Err(format!("cannot parse {s:?} to a valid duration"));
    }
    crate::duration::parse_duration(s)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time_ms("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time_ms("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time_ms("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(
            parse_time_ms("2023-11-14T23:13:20.25+01:00"),
            Ok(1_700_000_000_250)
        );
        assert!(parse_time_ms("yesterday").is_err());
        assert!(parse_time_ms("NaN").is_err());
    }

    #[test]
    fn selectors() {
        let m = parse_selector("up{job=~\"a|b\", instance!=\"x\"}").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].len(), 3);
        assert!(parse_selector("{job=\"\"}").is_err());
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("up{").is_err());
    }

    #[test]
    fn repeated_params_and_form() {
        let p = Params::parse(
            Some("match[]=a&match[]=b&start=1"),
            Some(b"match[]=c&end=2"),
        );
        assert_eq!(p.all("match[]").len(), 3);
        assert_eq!(p.time_ms("end", 0), Ok(2000));
    }
}
