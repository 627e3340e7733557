//! Loki push bodies (`POST /loki/api/v1/push`) to log streams, as Loki reads
//! them: `Content-Encoding` (gzip, deflate) first, then by `Content-Type`
//! either JSON (`application/json`) or snappy-compressed protobuf (anything
//! else, as Loki assumes). Every error names the stream and entry at fault.

use miru_model::{ErrorKind, Label, Labels, LogEntry, LogStreamWrite};
use prost::Message;

use super::push;
use crate::body::{BodyError, decode_content_encoding, decode_snappy};
use crate::limits::NameValidation;
use crate::validate::valid_label_name;

/// Why a push body was rejected. All are the sender's fault (400).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("invalid protobuf push request: {0}")]
    Protobuf(prost::DecodeError),
    #[error("invalid json push request: {0}")]
    Json(String),
    #[error("stream {stream}: error parsing labels {labels:?}: {what}")]
    Labels {
        stream: usize,
        labels: String,
        what: String,
    },
    #[error("stream {stream}, entry {entry}: {what}")]
    Entry {
        stream: usize,
        entry: usize,
        what: String,
    },
}

impl PushError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PushError::Body(BodyError::TooLarge { .. }) => ErrorKind::TooLarge,
            _ => ErrorKind::BadData,
        }
    }
}

/// Decodes a push body of at most `limit` decompressed bytes.
pub fn decode_push(
    body: &[u8],
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<LogStreamWrite>, PushError> {
    // Like Loki, `Content-Encoding: snappy` is accepted and means nothing
    // more: protobuf bodies are snappy blocks anyway (some clients say so).
    let encoding = content_encoding.filter(|e| !e.trim().eq_ignore_ascii_case("snappy"));
    let body = decode_content_encoding(body, encoding, limit)?;
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    if mime.as_deref() == Some("application/json") {
        return decode_json(&body);
    }
    let raw = decode_snappy(&body, limit)?;
    let req = push::PushRequest::decode(&raw[..]).map_err(PushError::Protobuf)?;
    req.streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let labels = parse_stream_labels(&s.labels).map_err(|what| PushError::Labels {
                stream: i,
                labels: s.labels.clone(),
                what,
            })?;
            let entries = s
                .entries
                .into_iter()
                .enumerate()
                .map(|(j, e)| {
                    let ts = e.timestamp.ok_or_else(|| PushError::Entry {
                        stream: i,
                        entry: j,
                        what: "missing timestamp".into(),
                    })?;
                    if !(0..1_000_000_000).contains(&ts.nanos) {
                        return Err(PushError::Entry {
                            stream: i,
                            entry: j,
                            what: format!("timestamp nanos {} out of range", ts.nanos),
                        });
                    }
                    Ok(LogEntry {
                        timestamp_ns: ts.unix_nanos(),
                        line: e.line,
                        structured_metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(LogStreamWrite { labels, entries })
        })
        .collect()
}

fn decode_json(body: &[u8]) -> Result<Vec<LogStreamWrite>, PushError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PushError::Json(e.to_string()))?;
    let streams = match v.get("streams") {
        Some(serde_json::Value::Array(s)) => s,
        Some(serde_json::Value::Null) | None => return Ok(Vec::new()),
        Some(_) => return Err(PushError::Json("\"streams\" must be an array".into())),
    };
    let mut out = Vec::with_capacity(streams.len());
    for (i, s) in streams.iter().enumerate() {
        let entry_err = |j: usize, what: String| PushError::Entry {
            stream: i,
            entry: j,
            what,
        };
        let label_err = |what: String| PushError::Labels {
            stream: i,
            labels: s.get("stream").map(|l| l.to_string()).unwrap_or_default(),
            what,
        };
        let mut pairs = Vec::new();
        match s.get("stream") {
            Some(serde_json::Value::Object(m)) => {
                for (k, v) in m {
                    let v = v
                        .as_str()
                        .ok_or_else(|| label_err(format!("value of {k:?} is not a string")))?;
                    pairs.push((k.as_str(), v));
                }
            }
            Some(serde_json::Value::Null) | None => {}
            Some(_) => return Err(label_err("\"stream\" must be an object".into())),
        }
        let labels = checked(pairs).map_err(label_err)?;
        let values = match s.get("values") {
            Some(serde_json::Value::Array(v)) => v.as_slice(),
            Some(serde_json::Value::Null) | None => &[],
            Some(_) => return Err(entry_err(0, "\"values\" must be an array".into())),
        };
        let mut entries = Vec::with_capacity(values.len());
        for (j, e) in values.iter().enumerate() {
            let e = e.as_array().ok_or_else(|| {
                entry_err(
                    j,
                    "an entry must be [\"<unix ns>\", \"<line>\"(, {metadata})]".into(),
                )
            })?;
            if !(2..=3).contains(&e.len()) {
                return Err(entry_err(
                    j,
                    format!("an entry has 2 or 3 elements, not {}", e.len()),
                ));
            }
            let timestamp_ns = match &e[0] {
                serde_json::Value::String(t) => t.parse::<i64>().ok(),
                serde_json::Value::Number(n) => n.as_i64(),
                _ => None,
            }
            .ok_or_else(|| {
                entry_err(j, format!("timestamp {} is not integer nanoseconds", e[0]))
            })?;
            let line = e[1]
                .as_str()
                .ok_or_else(|| entry_err(j, "the line must be a string".into()))?
                .to_string();
            let mut structured_metadata = Vec::new();
            if let Some(md) = e.get(2) {
                let md = md
                    .as_object()
                    .ok_or_else(|| entry_err(j, "structured metadata must be an object".into()))?;
                for (k, v) in md {
                    let v = v.as_str().ok_or_else(|| {
                        entry_err(j, format!("structured metadata {k:?} is not a string"))
                    })?;
                    structured_metadata.push((k.clone(), v.to_string()));
                }
            }
            entries.push(LogEntry {
                timestamp_ns,
                line,
                structured_metadata,
            });
        }
        out.push(LogStreamWrite { labels, entries });
    }
    Ok(out)
}

/// Sorts and checks label pairs: valid names, no duplicates, at least one.
fn checked(mut pairs: Vec<(&str, &str)>) -> Result<Labels, String> {
    pairs.sort_unstable();
    if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("duplicate label name {:?}", w[0].0));
    }
    if let Some((n, _)) = pairs
        .iter()
        .find(|(n, _)| !valid_label_name(n, NameValidation::Legacy))
    {
        return Err(format!("invalid label name {n:?}"));
    }
    let labels: Vec<Label> = pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| Label::new(n, v))
        .collect();
    if labels.is_empty() {
        return Err("at least one label pair is required per stream".into());
    }
    Ok(Labels::from_sorted(labels))
}

/// Parses a stream's labels in selector form, `{app="api", env="prod"}`:
/// equality only, values in double quotes (Go escapes) or backquotes.
pub fn parse_stream_labels(s: &str) -> Result<Labels, String> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or("expected labels in braces, like {app=\"api\"}")?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err(format!("expected a label name at {:?}", preview(rest)));
        }
        rest = rest[name_end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .filter(|r| !r.starts_with('~'))
            .ok_or_else(|| format!("expected = after {name:?}"))?
            .trim_start();
        let (value, after) = unquote(rest)?;
        pairs.push((name.to_string(), value));
        rest = after.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            if rest.is_empty() {
                return Err("trailing comma".into());
            }
        } else if !rest.is_empty() {
            return Err(format!("expected , or }} at {:?}", preview(rest)));
        }
    }
    checked(
        pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect(),
    )
}

fn preview(s: &str) -> String {
    s.chars().take(20).collect()
}

/// A quoted string at the start of `s` and what follows it.
fn unquote(s: &str) -> Result<(String, &str), String> {
    if let Some(r) = s.strip_prefix('`') {
        let end = r.find('`').ok_or("unterminated `string`")?;
        return Ok((r[..end].to_string(), &r[end + 1..]));
    }
    let r = s
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a quoted value at {:?}", preview(s)))?;
    let mut out = String::new();
    let mut chars = r.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &r[i + 1..])),
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated escape")?;
                let mut hex = |n: usize| -> Result<char, String> {
                    let digits: String = (0..n).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    let well_formed =
                        digits.len() == n && digits.chars().all(|d| d.is_ascii_hexdigit());
                    u32::from_str_radix(&digits, 16)
                        .ok()
                        .filter(|_| well_formed)
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("invalid escape \\{e}{digits}"))
                };
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'a' => '\x07',
                    'b' => '\x08',
                    'f' => '\x0c',
                    'v' => '\x0b',
                    '\\' | '"' | '\'' => e,
                    'x' => hex(2)?,
                    'u' => hex(4)?,
                    'U' => hex(8)?,
                    other => return Err(format!("invalid escape \\{other}")),
                });
            }
            '\n' => return Err("newline in quoted value".into()),
            c => out.push(c),
        }
    }
    Err("unterminated quoted value".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(streams: Vec<push::Stream>) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&push::PushRequest { streams }.encode_to_vec())
            .unwrap()
    }

    fn entry(ns: i64, line: &str) -> push::Entry {
        push::Entry {
            timestamp: Some(push::Timestamp::from_unix_nanos(ns)),
            line: line.into(),
            structured_metadata: vec![push::LabelPair {
                name: "trace_id".into(),
                value: "abc".into(),
            }],
        }
    }

    #[test]
    fn stream_labels_parse_like_loki_selectors() {
        let l = parse_stream_labels(r#"{job="a/b", app = "x\"y\n\u00e9", env=`raw\n`}"#).unwrap();
        assert_eq!(l.get("app"), Some("x\"y\né"));
        assert_eq!(l.get("env"), Some("raw\\n"));
        assert_eq!(l.as_slice()[0].name.as_ref(), "app", "sorted");
        for (bad, why) in [
            ("app=\"x\"", "braces"),
            ("{}", "at least one"),
            ("{app=\"\"}", "at least one"),
            ("{app=~\"x\"}", "expected ="),
            ("{app=\"x\",}", "trailing comma"),
            ("{app=\"x\" env=\"y\"}", "expected ,"),
            ("{app=\"x\", app=\"y\"}", "duplicate"),
            ("{1app=\"x\"}", "invalid label name"),
            ("{app=\"x}", "unterminated"),
            ("{app=\"\\q\"}", "invalid escape"),
            ("{app=x}", "quoted value"),
        ] {
            let e = parse_stream_labels(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn protobuf_and_json_bodies_give_the_same_streams() {
        let pb = proto(vec![push::Stream {
            labels: "{app=\"api\", env=\"prod\"}".into(),
            entries: vec![
                entry(1_700_000_000_123_456_789, "hello"),
                entry(-5, "before 1970"),
            ],
            hash: 0,
        }]);
        let json = br#"{"streams":[{"stream":{"env":"prod","app":"api"},"values":[
            ["1700000000123456789","hello",{"trace_id":"abc"}],[-5,"before 1970",{"trace_id":"abc"}]]}]}"#;
        let a = decode_push(&pb, Some("application/x-protobuf"), None, 1 << 20).unwrap();
        let b = decode_push(json, Some("application/json; charset=utf-8"), None, 1 << 20).unwrap();
        assert_eq!(a, b);
        let c = decode_push(&pb, Some("application/x-protobuf"), Some("snappy"), 1 << 20).unwrap();
        assert_eq!(a, c, "Content-Encoding: snappy is the body's own snappy");
        assert_eq!(a[0].entries[0].timestamp_ns, 1_700_000_000_123_456_789);
        assert_eq!(a[0].entries[1].timestamp_ns, -5);
        // gzip around JSON, as Promtail's and Alloy's JSON clients may send.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, json).unwrap();
        let c = decode_push(
            &gz.finish().unwrap(),
            Some("application/json"),
            Some("gzip"),
            1 << 20,
        );
        assert_eq!(c.unwrap(), a);
    }

    #[test]
    fn malformed_bodies_say_what_and_where() {
        let ok_labels = "{app=\"api\"}".to_string();
        let cases: Vec<(Vec<u8>, &str, &str)> = vec![
            (b"not snappy".to_vec(), "application/x-protobuf", "snappy"),
            (
                snap::raw::Encoder::new()
                    .compress_vec(b"\xff\xff\xff")
                    .unwrap(),
                "application/x-protobuf",
                "invalid protobuf",
            ),
            (
                proto(vec![push::Stream {
                    labels: "{app=api}".into(),
                    entries: vec![],
                    hash: 0,
                }]),
                "application/x-protobuf",
                "stream 0: error parsing labels",
            ),
            (
                proto(vec![
                    push::Stream {
                        labels: ok_labels.clone(),
                        entries: vec![entry(1, "x")],
                        hash: 0,
                    },
                    push::Stream {
                        labels: ok_labels,
                        entries: vec![
                            entry(1, "x"),
                            push::Entry {
                                timestamp: None,
                                line: "y".into(),
                                structured_metadata: vec![],
                            },
                        ],
                        hash: 0,
                    },
                ]),
                "application/x-protobuf",
                "stream 1, entry 1: missing timestamp",
            ),
            (b"{".to_vec(), "application/json", "invalid json"),
            (
                br#"{"streams":{}}"#.to_vec(),
                "application/json",
                "must be an array",
            ),
            (
                br#"{"streams":[{"stream":{"a":"b"},"values":[["x","line"]]}]}"#.to_vec(),
                "application/json",
                "stream 0, entry 0: timestamp \"x\" is not integer nanoseconds",
            ),
            (
                br#"{"streams":[{"stream":{"a":"b"},"values":[["1",2]]}]}"#.to_vec(),
                "application/json",
                "the line must be a string",
            ),
            (
                br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#.to_vec(),
                "application/json",
                "value of \"a\" is not a string",
            ),
            (
                br#"{"streams":[{"stream":{},"values":[["1","x"]]}]}"#.to_vec(),
                "application/json",
                "at least one label pair",
            ),
            (
                br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"k":5}]]}]}"#.to_vec(),
                "application/json",
                "structured metadata \"k\" is not a string",
            ),
        ];
        for (body, ct, want) in cases {
            let e = decode_push(&body, Some(ct), None, 1 << 20).unwrap_err();
            assert!(e.to_string().contains(want), "{want}: got {e}");
            assert_eq!(e.kind(), ErrorKind::BadData);
        }
        let big = proto(vec![push::Stream {
            labels: "{a=\"b\"}".into(),
            entries: vec![entry(1, &"x".repeat(5000))],
            hash: 0,
        }]);
        let e = decode_push(&big, None, None, 1000).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    }

    proptest::proptest! {
        /// Arbitrary bytes, and valid bodies with one byte changed, are
        /// decoded or rejected, never a panic; decoded streams have labels.
        #[test]
        fn arbitrary_bodies_never_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            at in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let json = br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"k":"v"}]]}]}"#;
            let mut mutated = json.to_vec();
            let i = at % mutated.len();
            mutated[i] = byte;
            let raw = push::PushRequest {
                streams: vec![push::Stream { labels: "{a=\"b\"}".into(), entries: vec![entry(1, "x")], hash: 0 }],
            }
            .encode_to_vec();
            let mut pb = raw.clone();
            let j = at % pb.len();
            pb[j] = byte;
            let pb = snap::raw::Encoder::new().compress_vec(&pb).unwrap();
            for (body, ct) in [(&data[..], "application/json"), (&data[..], "application/x-protobuf"),
                               (&mutated[..], "application/json"), (&pb[..], "application/x-protobuf")] {
                if let Ok(streams) = decode_push(body, Some(ct), None, 1 << 16) {
                    proptest::prop_assert!(streams.iter().all(|s| !s.labels.is_empty()));
                }
            }
            if let Ok(text) = std::str::from_utf8(&data) {
                let _ = parse_stream_labels(text);
            }
        }
    }
}
