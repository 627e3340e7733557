//! Number, duration and byte-size conversions with Go's rules, shared by
//! the parser (query literals) and the pipeline (label values): Loki
//! converts with `strconv.ParseFloat`, `time.ParseDuration` and
//! humanize's `ParseBytes`, and their error texts reach users.

/// `strconv.ParseFloat`: decimal or hex float (with a `p` exponent),
/// `Inf`/`NaN` in any case, optional sign.
pub fn parse_go_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = if body.len() > 2 && (body.starts_with("0x") || body.starts_with("0X")) {
        parse_hex_float(&body[2..])?
    } else {
        if body.is_empty() || body.contains('_') || body.starts_with(['+', '-']) {
            return None;
        }
        let lower = body.to_ascii_lowercase();
        if lower.chars().any(|c| c.is_ascii_alphabetic())
            && !matches!(lower.as_str(), "inf" | "infinity" | "nan")
            && !lower.contains('e')
        {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let p = s.find(['p', 'P'])?;
    let (mant, exp) = (&s[..p], &s[p + 1..]);
    let exp: i32 = exp.parse().ok()?;
    let mut v = 0f64;
    let mut scale = 0i32;
    let mut seen_dot = false;
    let mut digits = 0;
    for c in mant.chars() {
        if c == '.' {
            if seen_dot {
                return None;
            }
            seen_dot = true;
            continue;
        }
        let d = c.to_digit(16)?;
        v = v * 16.0 + f64::from(d);
        digits += 1;
        if seen_dot {
            scale -= 4;
        }
    }
    if digits == 0 {
        return None;
    }
    Some(v * 2f64.powi(exp.saturating_add(scale)))
}

/// Why a Go duration does not parse; the text is Go's.
pub fn go_duration_error(orig: &str, kind: DurationError) -> String {
    match kind {
        DurationError::Invalid => format!("time: invalid duration {orig:?}"),
        DurationError::MissingUnit => format!("time: missing unit in duration {orig:?}"),
        DurationError::UnknownUnit(u) => {
            format!("time: unknown unit {u:?} in duration {orig:?}")
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DurationError {
    Invalid,
    MissingUnit,
    UnknownUnit(String),
}

/// `time.ParseDuration`, in nanoseconds (as f64 to keep fractions of huge
/// values representable).
pub fn parse_go_duration(s: &str) -> Result<f64, DurationError> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(DurationError::Invalid);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(DurationError::Invalid);
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut num_len = int_len;
        let mut frac_len = 0;
        if b.get(num_len) == Some(&b'.') {
            num_len += 1;
            frac_len = b[num_len..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            num_len += frac_len;
        }
        if int_len == 0 && frac_len == 0 {
            return Err(DurationError::Invalid);
        }
        let num: f64 = rest[..num_len]
            .parse()
            .or_else(|_| format!("0{}", &rest[..num_len]).parse())
            .map_err(|_| DurationError::Invalid)?;
        rest = &rest[num_len..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(DurationError::MissingUnit);
        }
        let unit = &rest[..unit_len];
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(DurationError::UnknownUnit(unit.to_string())),
        };
        total += num * mult;
        rest = &rest[unit_len..];
    }
    Ok(if neg { -total } else { total })
}

/// Prometheus' `model.ParseDuration` (units y w d h m s ms, each at most
/// once, largest first, integers only), in nanoseconds.
pub fn parse_prom_duration(s: &str) -> Option<i64> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total_ms: i64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let v: i64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.bytes().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..u];
        let idx = UNITS.iter().position(|(name, _)| *name == unit)?;
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        total_ms = total_ms.checked_add(v.checked_mul(UNITS[idx].1)?)?;
        rest = &rest[u..];
    }
    total_ms.checked_mul(1_000_000)
}

/// A duration literal of a query: Go's syntax first, then Prometheus'.
pub fn parse_query_duration(s: &str) -> Option<f64> {
    parse_go_duration(s)
        .ok()
        .or_else(|| parse_prom_duration(s).map(|v| v as f64))
}

/// A byte-size literal of a query (`20MB`, `1.5KiB`): units are case
/// sensitive here, unlike in label values.
pub fn parse_query_bytes(s: &str) -> Option<f64> {
    let n = s
        .bytes()
        .take_while(|c| c.is_ascii_digit() || *c == b'.')
        .count();
    let unit = &s[n..];
    const UNITS: [&str; 15] = [
        "B", "kB", "KB", "KiB", "MB", "MiB", "GB", "GiB", "TB", "TiB", "PB", "PiB", "EB", "EiB",
        "b",
    ];
    if n == 0 || !UNITS.contains(&unit) || unit == "b" {
        return None;
    }
    parse_bytes(s).ok()
}

/// humanize's `ParseBytes`: a number (commas allowed) and an optional
/// case-insensitive SI or IEC unit; the result is truncated to an integer.
pub fn parse_bytes(s: &str) -> Result<f64, String> {
    let n = s
        .bytes()
        .take_while(|c| c.is_ascii_digit() || *c == b'.' || *c == b',')
        .count();
    let num = s[..n].replace(',', "");
    let v: f64 = num
        .parse()
        .map_err(|_| format!("strconv.ParseFloat: parsing {num:?}: invalid syntax"))?;
    let unit = s[n..].trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024f64.powi(2),
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return Err(format!("unhandled size name: {unit}")),
    };
    let v = v * mult;
    if v >= u64::MAX as f64 {
        return Err(format!("too large: {s}"));
    }
    Ok(v.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_floats() {
        assert_eq!(parse_go_float("0x1p3"), Some(8.0));
        assert_eq!(parse_go_float("0x1.8p3"), Some(12.0));
        assert_eq!(parse_go_float("0x1A"), None);
        assert_eq!(parse_go_float("0o17"), None);
        assert_eq!(parse_go_float("1.5e3"), Some(1500.0));
        assert_eq!(parse_go_float("-Inf"), Some(f64::NEG_INFINITY));
        assert!(parse_go_float("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_go_float("5m"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("1h30m"), Ok(5400e9));
        assert_eq!(parse_go_duration("-5s"), Ok(-5e9));
        assert_eq!(parse_go_duration(".5s"), Ok(0.5e9));
        assert_eq!(parse_go_duration("90"), Err(DurationError::MissingUnit));
        assert_eq!(
            parse_go_duration("1d"),
            Err(DurationError::UnknownUnit("d".into()))
        );
        assert_eq!(parse_go_duration("nope"), Err(DurationError::Invalid));
        assert_eq!(parse_prom_duration("1d"), Some(86_400_000_000_000));
        assert_eq!(parse_prom_duration("2w3y"), None);
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("2,048"), Ok(2048.0));
        assert_eq!(parse_bytes("2Kb"), Ok(2000.0));
        assert_eq!(parse_bytes("1.5B"), Ok(1.0));
        assert!(parse_bytes("oops").unwrap_err().contains("parsing \"\""));
        assert_eq!(parse_query_bytes("1KiB"), Some(1024.0));
        assert_eq!(parse_query_bytes("1mb"), None);
    }
}
