//! OTLP metric, unit and attribute names to Prometheus names, following the
//! rules of `github.com/prometheus/otlptranslator` with the defaults that
//! Prometheus 3 and Mimir use (underscore escaping with suffixes, label names
//! keep repeated underscores and get `key` before a single leading `_`).

use std::borrow::Cow;

/// The role of a metric as far as suffixes are concerned: only gauges get
/// `_ratio` and only monotonic counters get `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SuffixKind {
    Gauge,
    MonotonicCounter,
    Other,
}

/// Why a name could not be turned into a valid Prometheus name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name {original:?} normalizes to the invalid name {normalized:?}")]
    Invalid {
        original: String,
        normalized: String,
    },
}

/// Builds the Prometheus metric family name of an OTLP metric.
pub(super) fn metric_name(
    name: &str,
    unit: &str,
    kind: SuffixKind,
    add_suffixes: bool,
    allow_utf8: bool,
) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if allow_utf8 {
        return Ok(if add_suffixes {
            utf8_name_with_suffixes(name, unit, kind)
        } else {
            name.to_string()
        });
    }
    let normalized = if add_suffixes {
        legacy_name_with_suffixes(name, unit, kind)
    } else {
        legacy_name_without_suffixes(name)
    };
    if normalized.is_empty() {
        return Err(NameError::Invalid {
            original: name.to_string(),
            normalized,
        });
    }
    // A name the sender chose is kept even if it is all underscores; one we
    // produced by replacing characters must carry at least one real one.
    if normalized != name && normalized.bytes().all(|b| b == b'_') {
        return Err(NameError::Invalid {
            original: name.to_string(),
            normalized,
        });
    }
    Ok(normalized)
}

/// The unit as written in metric metadata: `ms` is `milliseconds`, `By/s`
/// is `bytes_per_second`, `1` and annotations like `{request}` are empty.
pub(super) fn metadata_unit(unit: &str) -> String {
    let (main, per) = unit_suffixes(unit);
    let (main, per) = (clean_unit(&main), clean_unit(&per));
    let joined = match (main.is_empty(), per.is_empty()) {
        (false, false) => format!("{main}_{per}"),
        (false, true) => main,
        _ => per,
    };
    let trimmed = joined.strip_prefix('_').unwrap_or(&joined);
    trimmed.strip_suffix('_').unwrap_or(trimmed).to_string()
}

/// Builds a label name from an attribute key. In legacy mode the key is
/// [`normalize_label`]d; a key that is empty or becomes only underscores is
/// refused (names starting with `__` are reserved and kept).
pub(super) fn label_name(key: &str, allow_utf8: bool) -> Result<Cow<'_, str>, NameError> {
    if key.is_empty() {
        return Err(NameError::Empty);
    }
    let underscores_only = |s: &str| s.bytes().all(|b| b == b'_');
    if allow_utf8 {
        if underscores_only(key) {
            return Err(NameError::Invalid {
                original: key.to_string(),
                normalized: key.to_string(),
            });
        }
        return Ok(Cow::Borrowed(key));
    }
    let out = normalize_label(key);
    if underscores_only(&out) {
        return Err(NameError::Invalid {
            original: key.to_string(),
            normalized: out.into_owned(),
        });
    }
    Ok(out)
}

/// An attribute key as a legacy label name, never failing: every character
/// outside `[a-zA-Z0-9_]` becomes `_`, a leading digit gets `key_` before it
/// and a single leading underscore gets `key`. The empty key stays empty.
pub(super) fn normalize_label(key: &str) -> Cow<'_, str> {
    let Some(&first) = key.as_bytes().first() else {
        return Cow::Borrowed(key);
    };
    let already_valid = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let single_underscore = key.starts_with('_') && !key.starts_with("__");
    if already_valid && !first.is_ascii_digit() && !single_underscore {
        return Cow::Borrowed(key);
    }
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.as_bytes()[0].is_ascii_digit() {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    Cow::Owned(out)
}

fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// Full normalisation: the name is cut into tokens at every character that
/// is not `[a-zA-Z0-9:]` (so runs of `_` collapse), unit tokens and the type
/// suffix are appended unless already present, tokens are joined with `_`.
fn legacy_name_with_suffixes(name: &str, unit: &str, kind: SuffixKind) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !is_metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();

    let (main, per) = unit_suffixes(unit);
    let (mut main, mut per) = (clean_unit(&main), clean_unit(&per));
    if tokens.contains(&main) {
        main.clear();
    }
    if per == "per_" {
        per.clear();
    } else {
        if per.ends_with('_') {
            per.pop();
        }
        if tokens.contains(&per) {
            per.clear();
        }
    }
    if !per.is_empty() && main.ends_with('_') {
        main.pop();
    }
    if !main.is_empty() {
        tokens.push(main);
    }
    if !per.is_empty() {
        tokens.push(per);
    }

    if kind == SuffixKind::MonotonicCounter {
        tokens.retain(|t| t != "total");
        tokens.push("total".to_string());
    }
    // Unit "1" on a gauge means a ratio. Counters with unit "1" are counts
    // of things (many receivers use "1" for those), so they get no `_ratio`.
    if unit == "1" && kind == SuffixKind::Gauge {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".to_string());
    }

    let mut joined = tokens.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        joined.insert(0, '_');
    }
    joined
}

/// Only replaces invalid characters: every run of characters outside
/// `[a-zA-Z0-9:_]` becomes one `_`, and leading or trailing runs vanish.
fn legacy_name_without_suffixes(name: &str) -> String {
    let mut joined = name
        .split(|c: char| !is_metric_char(c) && c != '_')
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        joined.insert(0, '_');
    }
    joined
}

/// With UTF-8 names the name is kept and suffixes are appended in the order
/// unit, per-unit, `_total`, `_ratio`, each first removed if already there.
fn utf8_name_with_suffixes(name: &str, unit: &str, kind: SuffixKind) -> String {
    let ratio = unit == "1" && kind == SuffixKind::Gauge;
    let total = kind == SuffixKind::MonotonicCounter;
    let (main, per) = unit_suffixes(unit);

    let mut base = name;
    if ratio {
        base = trim_suffix_and_delimiter(base, "ratio");
    }
    if total {
        base = trim_suffix_and_delimiter(base, "total");
    }
    if !per.is_empty() {
        base = trim_suffix_and_delimiter(base, &per);
    }
    let mut out = base.to_string();
    if !main.is_empty() && !out.ends_with(main.as_str()) {
        out.push('_');
        out.push_str(&main);
    }
    if !per.is_empty() {
        out.push('_');
        out.push_str(&per);
    }
    if total {
        out.push_str("_total");
    }
    if ratio {
        out.push_str("_ratio");
    }
    out
}

fn trim_suffix_and_delimiter<'a>(name: &'a str, suffix: &str) -> &'a str {
    if name.ends_with(suffix) && name.len() > suffix.len() + 1 {
        let cut = name.len() - suffix.len() - 1;
        if name.is_char_boundary(cut) {
            return &name[..cut];
        }
    }
    name
}

/// Splits a UCUM unit into the main unit word and the `per_<unit>` word,
/// before any character cleaning. Annotations (`{...}`) produce nothing.
fn unit_suffixes(unit: &str) -> (String, String) {
    let (main_raw, per_raw) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit, None),
    };
    let usable = |s: &str| !s.is_empty() && !s.contains(['{', '}']);

    let main_raw = main_raw.trim();
    let main = if usable(main_raw) {
        main_unit_word(main_raw).unwrap_or(main_raw).to_string()
    } else {
        String::new()
    };

    let per = match per_raw.map(str::trim) {
        Some(p) if usable(p) => format!("per_{}", per_unit_word(p).unwrap_or(p)),
        _ => String::new(),
    };
    (main, per)
}

/// Replaces characters outside `[a-zA-Z0-9:]` by `_`, collapses runs of
/// `_` and drops one leading `_`.
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        let c = if is_metric_char(c) { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with('_') {
        out.remove(0);
    }
    out
}

fn main_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(name: &str, unit: &str, kind: SuffixKind) -> String {
        metric_name(name, unit, kind, true, false).unwrap()
    }

    #[test]
    fn unit_suffixes_follow_ucum() {
        assert_eq!(
            legacy("http.server.duration", "ms", SuffixKind::Other),
            "http_server_duration_milliseconds"
        );
        assert_eq!(
            legacy("system.memory.usage", "By", SuffixKind::Other),
            "system_memory_usage_bytes"
        );
        assert_eq!(
            legacy("system.network.io", "By/s", SuffixKind::Other),
            "system_network_io_bytes_per_second"
        );
        assert_eq!(
            legacy("rate", "{packets}/s", SuffixKind::Other),
            "rate_per_second"
        );
        assert_eq!(legacy("active", "{request}", SuffixKind::Other), "active");
        assert_eq!(
            legacy("odd", "foo/bar", SuffixKind::Other),
            "odd_foo_per_bar"
        );
        assert_eq!(legacy("temp", "Cel", SuffixKind::Gauge), "temp_celsius");
        // The unit is not repeated when the name already carries it.
        assert_eq!(
            legacy("request.duration.seconds", "s", SuffixKind::Other),
            "request_duration_seconds"
        );
    }

    #[test]
    fn type_suffixes() {
        assert_eq!(
            legacy("requests", "1", SuffixKind::MonotonicCounter),
            "requests_total"
        );
        assert_eq!(
            legacy("requests.total.count", "", SuffixKind::MonotonicCounter),
            "requests_count_total"
        );
        assert_eq!(
            legacy("cpu.utilization", "1", SuffixKind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(legacy("queue.size", "1", SuffixKind::Other), "queue_size");
        assert_eq!(
            legacy("bytes.sent", "By", SuffixKind::MonotonicCounter),
            "bytes_sent_total"
        );
    }

    #[test]
    fn invalid_characters_and_leading_digits() {
        assert_eq!(legacy("foo__bar", "", SuffixKind::Other), "foo_bar");
        assert_eq!(
            legacy("ünïcode.metric", "", SuffixKind::Other),
            "n_code_metric"
        );
        assert_eq!(legacy("2xx.count", "", SuffixKind::Other), "_2xx_count");
        assert_eq!(legacy("ns:metric", "", SuffixKind::Other), "ns:metric");
        assert_eq!(
            metric_name("...", "", SuffixKind::Other, true, false),
            Err(NameError::Invalid {
                original: "...".into(),
                normalized: String::new()
            })
        );
        assert_eq!(
            metric_name("", "s", SuffixKind::Other, true, false),
            Err(NameError::Empty)
        );
    }

    #[test]
    fn without_suffixes_only_sanitises() {
        let plain = |n: &str, u: &str, k| metric_name(n, u, k, false, false).unwrap();
        assert_eq!(
            plain("http.server.duration", "ms", SuffixKind::Other),
            "http_server_duration"
        );
        assert_eq!(
            plain("requests", "1", SuffixKind::MonotonicCounter),
            "requests"
        );
        assert_eq!(plain("a..b__c", "", SuffixKind::Other), "a_b__c");
        assert_eq!(plain("9lives", "", SuffixKind::Gauge), "_9lives");
        assert!(metric_name("%%", "", SuffixKind::Other, false, false).is_err());
    }

    #[test]
    fn utf8_names_keep_their_characters() {
        let utf8 = |n: &str, u: &str, k| metric_name(n, u, k, true, true).unwrap();
        assert_eq!(
            utf8("http.server.duration", "ms", SuffixKind::Other),
            "http.server.duration_milliseconds"
        );
        assert_eq!(
            utf8("requests_total", "1", SuffixKind::MonotonicCounter),
            "requests_total"
        );
        assert_eq!(utf8("load", "1", SuffixKind::Gauge), "load_ratio");
        assert_eq!(
            utf8("net.io", "By/s", SuffixKind::MonotonicCounter),
            "net.io_bytes_per_second_total"
        );
        assert_eq!(
            metric_name("net.io", "By", SuffixKind::Other, false, true).unwrap(),
            "net.io"
        );
    }

    #[test]
    fn metadata_units() {
        assert_eq!(metadata_unit("ms"), "milliseconds");
        assert_eq!(metadata_unit("By/s"), "bytes_per_second");
        assert_eq!(metadata_unit("1"), "");
        assert_eq!(metadata_unit("{request}"), "");
        assert_eq!(metadata_unit("{packet}/s"), "per_second");
        assert_eq!(metadata_unit(""), "");
    }

    #[test]
    fn label_names() {
        let l = |k: &str| label_name(k, false).unwrap().into_owned();
        assert_eq!(l("http.method"), "http_method");
        assert_eq!(l("already_fine"), "already_fine");
        assert_eq!(l("123abc"), "key_123abc");
        assert_eq!(l("_private"), "key_private");
        assert_eq!(l("__reserved__"), "__reserved__");
        assert_eq!(l("a..b"), "a__b");
        assert_eq!(l("é"), "key_");
        assert!(label_name("ключ", false).is_err());
        assert_eq!(label_name("", false), Err(NameError::Empty));
        assert!(label_name("__", false).is_err());
        assert!(label_name("..", false).is_err());
        assert_eq!(label_name("http.method", true).unwrap(), "http.method");
        assert!(label_name("___", true).is_err());
        assert_eq!(normalize_label("__"), "__");
        assert_eq!(normalize_label(".x"), "key_x");
        assert_eq!(normalize_label(""), "");
    }
}
