//! OTLP attributes to label pairs: value stringification (as the OpenTelemetry
//! collector's `AsString`), name sanitising with collision merging, and
//! exemplar labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use miru_model::{Labels, LabelsBuilder};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::Exemplar as OtlpExemplar;

use super::names::{NameError, label_name};

/// Longest exemplar label set in characters (OpenMetrics); attributes that
/// would exceed it are left out, trace and span ids are always kept.
const MAX_EXEMPLAR_RUNES: usize = 128;

pub(super) const TRACE_ID: &str = "trace_id";
pub(super) const SPAN_ID: &str = "span_id";

/// An attribute key that cannot become a label name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("attribute {key:?} cannot be a label name: {source}")]
pub(super) struct AttributeNameError {
    key: String,
    source: NameError,
}

/// Turns attributes into label pairs keyed by sanitised name. Keys for which
/// `skip` is true are left out. When several keys sanitise to the same name
/// their values are joined with `;` in the order of the original keys.
pub(super) fn attribute_labels(
    attrs: &[KeyValue],
    skip: impl Fn(&str) -> bool,
    allow_utf8: bool,
) -> Result<BTreeMap<String, String>, AttributeNameError> {
    let mut sorted: Vec<&KeyValue> = attrs.iter().filter(|kv| !skip(&kv.key)).collect();
    // Stable, so repeated keys keep their wire order.
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = BTreeMap::new();
    for kv in sorted {
        let name = label_name(&kv.key, allow_utf8).map_err(|source| AttributeNameError {
            key: kv.key.clone(),
            source,
        })?;
        let value = value_string(kv.value.as_ref());
        let entry: &mut String = out.entry(name.into_owned()).or_default();
        if entry.is_empty() {
            *entry = value;
        } else {
            entry.push(';');
            entry.push_str(&value);
        }
    }
    Ok(out)
}

/// Labels of one exemplar: `trace_id` and `span_id` in lowercase hex, then
/// the filtered attributes if everything fits in 128 characters.
pub(super) fn exemplar_labels(e: &OtlpExemplar, allow_utf8: bool) -> Labels {
    let mut b = LabelsBuilder::default();
    let mut runes = 0;
    for (name, id) in [(TRACE_ID, &e.trace_id), (SPAN_ID, &e.span_id)] {
        if !id.is_empty() {
            let value = hex(id);
            runes += name.len() + value.len();
            b.set(name, value);
        }
    }
    let mut attrs = Vec::with_capacity(e.filtered_attributes.len());
    for kv in &e.filtered_attributes {
        // An attribute whose name cannot be a label is left out, like one
        // that does not fit: exemplars are best effort.
        let Ok(name) = label_name(&kv.key, allow_utf8) else {
            continue;
        };
        let value = value_string(kv.value.as_ref());
        runes += name.chars().count() + value.chars().count();
        attrs.push((name.into_owned(), value));
    }
    if runes <= MAX_EXEMPLAR_RUNES {
        for (name, value) in attrs {
            if b.get(&name).is_none() {
                b.set(name, value);
            }
        }
    }
    b.build()
}

/// The string form of an attribute value, as the collector's `AsString`:
/// numbers in shortest form, bytes in base64, arrays and maps as JSON.
pub(super) fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => format_double(*d),
        Some(Value::BytesValue(b)) => base64(b),
        Some(v @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            let mut out = String::new();
            write_json(Some(v), &mut out);
            out
        }
    }
}

/// Shortest round-trip decimal, switching to exponent form below 1e-6 and
/// from 1e21 on, like JavaScript's `Number.prototype.toString`.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{d:e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        };
    }
    d.to_string()
}

fn write_json(v: Option<&Value>, out: &mut String) {
    match v {
        None | Some(Value::StringValueStrindex(_)) => out.push_str("null"),
        Some(Value::StringValue(s)) => write_json_string(s, out),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) if d.is_finite() => out.push_str(&format_double(*d)),
        Some(Value::DoubleValue(_)) => out.push_str("null"),
        Some(Value::BytesValue(b)) => write_json_string(&base64(b), out),
        Some(Value::ArrayValue(a)) => {
            out.push('[');
            for (i, item) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item.value.as_ref(), out);
            }
            out.push(']');
        }
        Some(Value::KvlistValue(kv)) => {
            // A map in the collector: keys sorted, the last duplicate wins.
            let map: BTreeMap<&str, Option<&Value>> = kv
                .values
                .iter()
                .map(|kv| {
                    let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.as_str(), value)
                })
                .collect();
            out.push('{');
            for (i, (k, v)) in map.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, out);
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string as Go's `json.Marshal` writes it (what the collector's
/// `AsString` uses): HTML-safe, so `<`, `>`, `&` and the JavaScript line
/// separators are escaped too.
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.to_string())
    }

    #[test]
    fn values_as_strings() {
        let str_of = |v: Value| value_string(Some(&AnyValue { value: Some(v) }));
        assert_eq!(str_of(s("x")), "x");
        assert_eq!(str_of(Value::BoolValue(true)), "true");
        assert_eq!(str_of(Value::IntValue(-42)), "-42");
        assert_eq!(str_of(Value::DoubleValue(1.0)), "1");
        assert_eq!(str_of(Value::DoubleValue(0.25)), "0.25");
        assert_eq!(str_of(Value::DoubleValue(1e21)), "1e+21");
        assert_eq!(str_of(Value::DoubleValue(1.5e-7)), "1.5e-7");
        assert_eq!(str_of(Value::BytesValue(b"hello".to_vec())), "aGVsbG8=");
        assert_eq!(str_of(Value::BytesValue(b"hi!".to_vec())), "aGkh");
        assert_eq!(str_of(Value::BytesValue(b"h".to_vec())), "aA==");
        let array = Value::ArrayValue(ArrayValue {
            values: vec![
                AnyValue {
                    value: Some(s("a\"b")),
                },
                AnyValue {
                    value: Some(Value::IntValue(1)),
                },
                AnyValue { value: None },
            ],
        });
        assert_eq!(str_of(array), r#"["a\"b",1,null]"#);
        let map = Value::KvlistValue(KeyValueList {
            values: vec![
                kv("z", Value::BoolValue(false)),
                kv("a", Value::DoubleValue(2.5)),
            ],
        });
        assert_eq!(str_of(map), r#"{"a":2.5,"z":false}"#);
        let escaped = Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(s("<a&b>\u{8}\u{1}\u{2028}")),
            }],
        });
        assert_eq!(str_of(escaped), r#"["\u003ca\u0026b\u003e\b\u0001\u2028"]"#);
        assert_eq!(value_string(None), "");
    }

    #[test]
    fn colliding_names_join_values_in_key_order() {
        let attrs = vec![
            kv("http_method", s("b")),
            kv("http.method", s("a")),
            kv("host", s("h")),
            kv("skip.me", s("x")),
        ];
        let labels = attribute_labels(&attrs, |k| k == "skip.me", false).unwrap();
        assert_eq!(labels.get("http_method").map(String::as_str), Some("a;b"));
        assert_eq!(labels.get("host").map(String::as_str), Some("h"));
        assert_eq!(labels.len(), 2);

        let utf8 = attribute_labels(&attrs, |_| false, true).unwrap();
        assert_eq!(utf8.get("http.method").map(String::as_str), Some("a"));

        let err = attribute_labels(&[kv("", s("v"))], |_| false, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "attribute \"\" cannot be a label name: name is empty"
        );
    }

    #[test]
    fn exemplar_labels_carry_ids_and_fitting_attributes() {
        let mut e = OtlpExemplar {
            trace_id: vec![0xab; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            filtered_attributes: vec![kv("user.id", s("42"))],
            ..Default::default()
        };
        let l = exemplar_labels(&e, false);
        assert_eq!(l.get(TRACE_ID), Some("abababababababababababababababab"));
        assert_eq!(l.get(SPAN_ID), Some("0102030405060708"));
        assert_eq!(l.get("user_id"), Some("42"));

        e.filtered_attributes = vec![kv("big", s(&"x".repeat(100)))];
        let l = exemplar_labels(&e, false);
        assert_eq!(l.get("big"), None);
        assert_eq!(l.len(), 2);
    }
}
