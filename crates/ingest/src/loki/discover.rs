//! What a Loki 3 distributor adds to accepted streams by default:
//! `service_name` for streams without one (`discover_service_name`) and a
//! `detected_level` structured-metadata pair for every entry
//! (`discover_log_levels`), which Grafana's log-volume histogram and Logs
//! Drilldown group by. Semantics follow Loki's documentation and field
//! detection; this is our own implementation.

use miru_model::{Labels, LabelsBuilder, LogStreamWrite};

use crate::limits::TenantLimits;

pub const SERVICE_NAME: &str = "service_name";
pub const UNKNOWN_SERVICE: &str = "unknown_service";
pub const DETECTED_LEVEL: &str = "detected_level";
const UNKNOWN_LEVEL: &str = "unknown";

/// Loki's default `discover_service_name`: labels tried in order.
pub fn default_service_name_labels() -> Vec<String> {
    [
        "service",
        "app",
        "application",
        "app_name",
        "name",
        "app_kubernetes_io_name",
        "container",
        "container_name",
        "k8s_container_name",
        "component",
        "workload",
        "job",
        "k8s_job_name",
    ]
    .map(String::from)
    .to_vec()
}

/// Loki's default `log_level_fields`: where a level may already be.
pub fn default_log_level_fields() -> Vec<String> {
    [
        "level",
        "LEVEL",
        "Level",
        "log.level",
        "severity",
        "SEVERITY",
        "Severity",
        "SeverityText",
        "lvl",
        "LVL",
        "Lvl",
        "severity_text",
        "Severity_Text",
        "SEVERITY_TEXT",
    ]
    .map(String::from)
    .to_vec()
}

/// Applies the tenant's discovery settings to accepted streams.
pub fn discover(streams: &mut [LogStreamWrite], l: &TenantLimits) {
    for w in streams.iter_mut() {
        if !l.discover_service_name.is_empty() && w.labels.get(SERVICE_NAME).is_none() {
            w.labels = with_service_name(&w.labels, &l.discover_service_name);
        }
        if l.discover_log_levels {
            // A level label holds for the whole stream: looked up once.
            let from_labels = l
                .log_level_fields
                .iter()
                .find_map(|f| w.labels.get(f.as_str()));
            for e in &mut w.entries {
                set_detected_level(
                    from_labels,
                    &e.line,
                    &mut e.structured_metadata,
                    &l.log_level_fields,
                );
            }
        }
    }
}

fn with_service_name(labels: &Labels, candidates: &[String]) -> Labels {
    let value = candidates
        .iter()
        .find_map(|c| labels.get(c).filter(|v| !v.is_empty()))
        .unwrap_or(UNKNOWN_SERVICE)
        .to_string();
    let mut b = LabelsBuilder::with_capacity(labels.len() + 1);
    for l in labels.iter() {
        b.set(
            std::sync::Arc::clone(&l.name),
            std::sync::Arc::clone(&l.value),
        );
    }
    b.set(SERVICE_NAME, value);
    b.build()
}

/// Level names and their abbreviations, with the canonical name.
const LEVEL_NAMES: &[(&str, &str)] = &[
    ("trace", "trace"),
    ("trc", "trace"),
    ("debug", "debug"),
    ("dbg", "debug"),
    ("info", "info"),
    ("inf", "info"),
    ("information", "info"),
    ("warn", "warn"),
    ("wrn", "warn"),
    ("warning", "warn"),
    ("error", "error"),
    ("err", "error"),
    ("critical", "critical"),
    ("fatal", "fatal"),
];

/// A known level's canonical name (case-insensitive), else `None`. No
/// allocation: it runs for every ingested entry.
fn normalize(v: &str) -> Option<&'static str> {
    LEVEL_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, level)| *level)
}

fn set_detected_level(
    from_labels: Option<&str>,
    line: &str,
    metadata: &mut Vec<(String, String)>,
    fields: &[String],
) {
    if let Some((_, v)) = metadata.iter_mut().find(|(k, _)| k == DETECTED_LEVEL) {
        if let Some(n) = normalize(v) {
            *v = n.to_string();
        }
        return;
    }
    let level = level_of(from_labels, line, metadata, fields);
    // The head keeps this vector: an exact fit, not the four slots a
    // first push would reserve (144 bytes per entry).
    metadata.reserve_exact(1);
    metadata.push((DETECTED_LEVEL.to_string(), level));
}

fn level_of(
    from_labels: Option<&str>,
    line: &str,
    metadata: &[(String, String)],
    fields: &[String],
) -> String {
    let given = from_labels.or_else(|| {
        fields.iter().find_map(|f| {
            metadata
                .iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| v.as_str())
        })
    });
    if let Some(v) = given {
        return normalize(v).map_or_else(|| v.to_string(), String::from);
    }
    if let Some((_, n)) = metadata.iter().find(|(k, _)| k == "severity_number") {
        return match n.parse::<i64>() {
            Ok(0) => UNKNOWN_LEVEL,
            Ok(1..=4) => "trace",
            Ok(5..=8) => "debug",
            Ok(9..=12) => "info",
            Ok(13..=16) => "warn",
            Ok(17..=20) => "error",
            Ok(21..=24) => "fatal",
            Ok(_) => UNKNOWN_LEVEL,
            Err(_) => "info",
        }
        .to_string();
    }
    let from_fields = if is_json(line) {
        json_level(line, fields)
    } else if line.contains('=') {
        logfmt_level(line, fields)
    } else {
        None
    };
    from_fields
        .or_else(|| keyword_level(line))
        .unwrap_or(UNKNOWN_LEVEL)
        .to_string()
}

fn is_json(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('{') && t.ends_with('}')
}

/// The level named by the string value of a field in `fields` (`None`
/// when that value is no level name): at the top level the field listed
/// first wins; else the first nested object (document order, one level
/// down) holding one. Read with a visitor that keeps nothing but that
/// level: no tree of the line is built, no string copied.
fn json_level(line: &str, fields: &[String]) -> Option<&'static str> {
    // A key must appear verbatim in the text: most lines are not parsed.
    if !fields.iter().any(|f| line.contains(f.as_str())) {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let found = serde::de::DeserializeSeed::deserialize(
        level_json::Object {
            fields,
            nested: true,
        },
        &mut de,
    )
    .ok()?;
    de.end().ok()?;
    found.and_then(|(_, level)| level)
}

/// The level named by the value of the first logfmt key (case-insensitive)
/// named in `fields` (`None` when that value is no level name).
fn logfmt_level(line: &str, fields: &[String]) -> Option<&'static str> {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[key_start..i];
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let value = if b.get(i) == Some(&b'"') {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            let v = &line[start..i.min(b.len())];
            i += 1;
            v
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            &line[start..i]
        };
        if fields.iter().any(|f| f.eq_ignore_ascii_case(key)) {
            return normalize(value);
        }
    }
    None
}

/// The level keyword appearing first in the line as a whole word
/// (case-insensitive; a word right after `:` does not count). Scans the
/// words once, without allocating.
fn keyword_level(line: &str) -> Option<&'static str> {
    const KEYWORDS: &[(&str, &str)] = &[
        ("trace", "trace"),
        ("debug", "debug"),
        ("fatal", "fatal"),
        ("critical", "critical"),
        ("error", "error"),
        ("err", "error"),
        ("warning", "warn"),
        ("warn", "warn"),
        ("info", "info"),
    ];
    let b = line.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        if !word(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && word(b[i]) {
            i += 1;
        }
        if start > 0 && b[start - 1] == b':' {
            continue;
        }
        // Word bytes are ASCII, so both ends are character boundaries.
        let token = &line[start..i];
        if let Some((_, level)) = KEYWORDS.iter().find(|(k, _)| k.eq_ignore_ascii_case(token)) {
            return Some(level);
        }
    }
    None
}

/// Serde visitors for [`json_level`].
mod level_json {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// A field's value as a level: `None` when it names no known level
    /// (the field still counts as found).
    type Level = Option<&'static str>;

    /// Visitor methods answering `None` for arrays (skipped whole) and for
    /// every scalar but strings.
    macro_rules! skip_arrays_and_scalars {
        () => {
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        };
    }

    /// An object's best match: (index in `fields`, value). With `nested`,
    /// object values one level down are searched when the object itself
    /// has no match. Anything but an object yields `None`.
    pub(super) struct Object<'a> {
        pub(super) fields: &'a [String],
        pub(super) nested: bool,
    }

    impl<'de> DeserializeSeed<'de> for Object<'_> {
        type Value = Option<(usize, Level)>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Object<'_> {
        type Value = Option<(usize, Level)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut own, mut nested) = (None::<(usize, Level)>, None);
            while let Some(key) = map.next_key_seed(Key(self.fields))? {
                match key {
                    Some(i) if own.as_ref().is_none_or(|(j, _)| i < *j) => {
                        if let Some(v) = map.next_value_seed(StringValue)? {
                            own = Some((i, v));
                        }
                    }
                    _ if self.nested && nested.is_none() => {
                        nested = map.next_value_seed(Object {
                            fields: self.fields,
                            nested: false,
                        })?;
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(own.or(nested))
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        skip_arrays_and_scalars!();
    }

    /// A key's index in `fields`, if it is one of them.
    struct Key<'a>(&'a [String]);

    impl<'de> DeserializeSeed<'de> for Key<'_> {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Key<'_> {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_str<E>(self, k: &str) -> Result<Self::Value, E> {
            Ok(self.0.iter().position(|f| f == k))
        }
    }

    /// A string value's level, or `None` for any other JSON value (skipped).
    struct StringValue;

    impl<'de> DeserializeSeed<'de> for StringValue {
        type Value = Option<Level>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for StringValue {
        type Value = Option<Level>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(super::normalize(v)))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_map(map).map(|_| None)
        }
        skip_arrays_and_scalars!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::LogEntry;

    fn level(labels: &[(&str, &str)], line: &str, md: &[(&str, &str)]) -> String {
        let mut w = vec![LogStreamWrite {
            labels: Labels::from_pairs(labels.iter().copied()),
            entries: vec![LogEntry {
                timestamp_ns: 0,
                line: line.into(),
                structured_metadata: md
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }],
        }];
        discover(&mut w, &TenantLimits::default());
        let md = &w[0].entries[0].structured_metadata;
        let found: Vec<&String> = md
            .iter()
            .filter(|(k, _)| k == DETECTED_LEVEL)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found.len(), 1, "{md:?}");
        found[0].clone()
    }

    #[test]
    fn levels_come_from_fields_severity_formats_then_keywords() {
        assert_eq!(level(&[("level", "WARNING")], "x", &[]), "warn");
        assert_eq!(level(&[], "x", &[("severity", "Err")]), "error");
        assert_eq!(
            level(&[], "x", &[("lvl", "notice")]),
            "notice",
            "kept as is"
        );
        assert_eq!(level(&[], "x", &[("severity_number", "17")]), "error");
        assert_eq!(level(&[], "x", &[("severity_number", "x")]), "info");
        assert_eq!(level(&[], r#"{"msg":"a","level":"DEBUG"}"#, &[]), "debug");
        assert_eq!(level(&[], r#"{"log":{"level":"fatal"}}"#, &[]), "fatal");
        // Top level before nested objects; there, the field listed first.
        assert_eq!(
            level(
                &[],
                r#"{"a":{"level":"debug"},"severity":"warn","level":"error"}"#,
                &[]
            ),
            "error"
        );
        assert_eq!(
            level(
                &[],
                r#"{"a":{"x":{"level":"debug"}},"b":{"lvl":"warn"},"c":{"level":"info"}}"#,
                &[]
            ),
            "warn",
            "two levels down is not searched; the first nested object with a field wins"
        );
        assert_eq!(
            level(&[], r#"{"level":5,"msg":"x","arr":[{"level":"dbg"}]}"#, &[]),
            "unknown",
            "non-string levels and arrays are skipped"
        );
        assert_eq!(
            level(&[], r#"{"level":"error" trailing garbage info}"#, &[]),
            "error",
            "invalid JSON falls back to the keyword scan"
        );
        assert_eq!(level(&[], r#"ts=1 LEVEL=inf msg="a b""#, &[]), "info");
        assert_eq!(level(&[], r#"msg="level=error" level=warn"#, &[]), "warn");
        assert_eq!(
            level(&[], "2026-11-22 GET /x failed: Error connecting", &[]),
            "error"
        );
        assert_eq!(
            level(&[], "[WARN] disk at 91%, error budget ok", &[]),
            "warn"
        );
        assert_eq!(level(&[], "misc:error in terror", &[]), "unknown");
        assert_eq!(level(&[], "all good", &[]), "unknown");
        assert_eq!(level(&[], "x", &[("detected_level", "WRN")]), "warn");
    }

    #[test]
    fn service_name_from_the_first_candidate_label_else_unknown_service() {
        let mut w = vec![
            LogStreamWrite {
                labels: Labels::from_pairs([("job", "j"), ("app", "api")]),
                entries: Vec::new(),
            },
            LogStreamWrite {
                labels: Labels::from_pairs([("env", "prod")]),
                entries: Vec::new(),
            },
            LogStreamWrite {
                labels: Labels::from_pairs([("service_name", "s"), ("app", "api")]),
                entries: Vec::new(),
            },
        ];
        discover(&mut w, &TenantLimits::default());
        assert_eq!(w[0].labels.get(SERVICE_NAME), Some("api"));
        assert_eq!(w[1].labels.get(SERVICE_NAME), Some(UNKNOWN_SERVICE));
        assert_eq!(w[2].labels.get(SERVICE_NAME), Some("s"));
        let off = TenantLimits {
            discover_service_name: Vec::new(),
            discover_log_levels: false,
            ..TenantLimits::default()
        };
        let mut w = vec![LogStreamWrite {
            labels: Labels::from_pairs([("app", "api")]),
            entries: Vec::new(),
        }];
        discover(&mut w, &off);
        assert_eq!(w[0].labels.get(SERVICE_NAME), None);
    }
}
