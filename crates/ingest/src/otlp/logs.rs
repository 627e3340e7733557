//! OTLP log records to Loki streams, mapped as Loki 3 maps them by default:
//! a fixed list of resource attributes become stream labels, everything
//! else (other resource attributes, the scope, the record's attributes and
//! fields) becomes structured metadata; the body is the line. Names are
//! sanitised into label names (`k8s.pod.name` is `k8s_pod_name`) and nested
//! maps are flattened (`{"http": {"method": "GET"}}` is `http_method`).

use std::collections::HashMap;

use miru_model::{Labels, LabelsBuilder, LogEntry, LogStreamWrite};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::attributes::{hex, value_string};
use super::names::normalize_label;

/// The resource attributes Loki 3 indexes as stream labels by default.
pub const INDEX_LABEL_RESOURCE_ATTRIBUTES: &[&str] = &[
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
];

/// The `service_name` of a resource without `service.name`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

const SERVICE_NAME_LABEL: &str = "service_name";

/// Translates an export request into streams, one per distinct label set
/// (records of several resources with equal labels share a stream), entries
/// in request order. `now_ns` is the timestamp of records that carry none.
pub fn translate_logs(req: &ExportLogsServiceRequest, now_ns: i64) -> Vec<LogStreamWrite> {
    let mut streams: Vec<LogStreamWrite> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for rl in &req.resource_logs {
        let attrs = rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let (labels, resource_md) = resource_labels(attrs);
        let records: usize = rl.scope_logs.iter().map(|s| s.log_records.len()).sum();
        if records == 0 {
            continue;
        }
        let i = *index.entry(labels).or_insert_with_key(|labels| {
            streams.push(LogStreamWrite {
                labels: labels.clone(),
                entries: Vec::with_capacity(records),
            });
            streams.len() - 1
        });
        let entries = &mut streams[i].entries;
        for sl in &rl.scope_logs {
            let scope_md = sl.scope.as_ref().map(scope_metadata).unwrap_or_default();
            for r in &sl.log_records {
                let mut md =
                    Vec::with_capacity(r.attributes.len() + 6 + resource_md.len() + scope_md.len());
                for kv in &r.attributes {
                    flatten(kv, None, &mut md);
                }
                record_fields(r, &mut md);
                md.extend(resource_md.iter().cloned());
                md.extend(scope_md.iter().cloned());
                entries.push(LogEntry {
                    timestamp_ns: timestamp(r, now_ns),
                    line: value_string(r.body.as_ref()),
                    structured_metadata: md,
                });
            }
        }
    }
    streams
}

/// The stream labels of a resource and the rest of its attributes as
/// structured metadata. A resource without `service.name` (or with an empty
/// one) gets `service_name="unknown_service"`, so that every stream has it.
fn resource_labels(attrs: &[KeyValue]) -> (Labels, Vec<(String, String)>) {
    let mut labels = LabelsBuilder::default();
    let mut metadata = Vec::new();
    let mut pairs = Vec::new();
    for kv in attrs {
        if INDEX_LABEL_RESOURCE_ATTRIBUTES.contains(&kv.key.as_str()) {
            flatten(kv, None, &mut pairs);
            for (name, value) in pairs.drain(..) {
                labels.set(name, value);
            }
        } else {
            flatten(kv, None, &mut metadata);
        }
    }
    if labels.get(SERVICE_NAME_LABEL).is_none_or(str::is_empty) {
        labels.set(SERVICE_NAME_LABEL, UNKNOWN_SERVICE);
    }
    (labels.build(), metadata)
}

/// The scope's attributes, then `scope_name`, `scope_version` and
/// `scope_dropped_attributes_count` where set.
fn scope_metadata(scope: &InstrumentationScope) -> Vec<(String, String)> {
    let mut md = Vec::with_capacity(scope.attributes.len() + 3);
    for kv in &scope.attributes {
        flatten(kv, None, &mut md);
    }
    if !scope.name.is_empty() {
        md.push(("scope_name".into(), scope.name.clone()));
    }
    if !scope.version.is_empty() {
        md.push(("scope_version".into(), scope.version.clone()));
    }
    if scope.dropped_attributes_count != 0 {
        md.push((
            "scope_dropped_attributes_count".into(),
            scope.dropped_attributes_count.to_string(),
        ));
    }
    md
}

/// The record's own fields that Loki keeps as structured metadata.
fn record_fields(r: &LogRecord, md: &mut Vec<(String, String)>) {
    if r.time_unix_nano != 0 && r.observed_time_unix_nano != 0 {
        md.push((
            "observed_timestamp".into(),
            r.observed_time_unix_nano.to_string(),
        ));
    }
    if r.severity_number != 0 {
        md.push(("severity_number".into(), r.severity_number.to_string()));
    }
    if !r.severity_text.is_empty() {
        md.push(("severity_text".into(), r.severity_text.clone()));
    }
    // Ids of the wrong length or all zeros are invalid, and the OTLP spec
    // asks receivers to treat them as absent.
    let valid_id = |id: &[u8], len: usize| id.len() == len && id.iter().any(|&b| b != 0);
    if valid_id(&r.trace_id, 16) {
        md.push(("trace_id".into(), hex(&r.trace_id)));
    }
    if valid_id(&r.span_id, 8) {
        md.push(("span_id".into(), hex(&r.span_id)));
    }
    if r.flags != 0 {
        md.push(("flags".into(), r.flags.to_string()));
    }
}

/// When the record happened: its time, else when it was observed, else now.
/// Times past the year 2262 saturate (and are then refused as too new).
fn timestamp(r: &LogRecord, now_ns: i64) -> i64 {
    match (r.time_unix_nano, r.observed_time_unix_nano) {
        (0, 0) => now_ns,
        (0, t) | (t, _) => i64::try_from(t).unwrap_or(i64::MAX),
    }
}

/// One attribute as name/value pairs: a map value is flattened, each entry
/// named `<name>_<key>` (recursively); any other value is one pair with the
/// value as a string. An attribute with an empty key is left out.
fn flatten(kv: &KeyValue, prefix: Option<&str>, out: &mut Vec<(String, String)>) {
    let joined;
    let key = match prefix {
        Some(p) => {
            joined = format!("{p}_{}", kv.key);
            joined.as_str()
        }
        None => kv.key.as_str(),
    };
    let name = normalize_label(key);
    if name.is_empty() {
        return;
    }
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::KvlistValue(map)) => {
            for child in &map.values {
                flatten(child, Some(&name), out);
            }
        }
        _ => out.push((name.into_owned(), value_string(kv.value.as_ref()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    const NOW: i64 = 1_800_000_000_000_000_000;

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> Value {
        Value::StringValue(v.into())
    }

    fn map(entries: Vec<KeyValue>) -> Value {
        Value::KvlistValue(KeyValueList { values: entries })
    }

    fn resource_logs(
        resource: Vec<KeyValue>,
        scope: Option<InstrumentationScope>,
        records: Vec<LogRecord>,
    ) -> ResourceLogs {
        ResourceLogs {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope,
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn record(t: u64, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: t,
            body: Some(AnyValue {
                value: Some(s(body)),
            }),
            ..Default::default()
        }
    }

    fn md(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn maps_resource_scope_and_record_as_loki_does() {
        let req = ExportLogsServiceRequest {
            resource_logs: vec![resource_logs(
                vec![
                    kv("service.name", s("checkout")),
                    kv("k8s.namespace.name", s("shop")),
                    kv("k8s.pod.name", s("")),
                    kv("host.name", s("box-1")),
                    kv(
                        "team",
                        map(vec![kv("name", s("pay")), kv("size", Value::IntValue(4))]),
                    ),
                ],
                Some(InstrumentationScope {
                    name: "shop.logger".into(),
                    version: "1.2.0".into(),
                    attributes: vec![kv("lib.kind", s("std"))],
                    dropped_attributes_count: 0,
                }),
                vec![LogRecord {
                    time_unix_nano: 1_700_000_000_000_000_001,
                    observed_time_unix_nano: 1_700_000_000_000_000_002,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(AnyValue {
                        value: Some(s("payment failed")),
                    }),
                    attributes: vec![
                        kv("http.status_code", Value::IntValue(502)),
                        kv("retry", Value::BoolValue(true)),
                        kv("ratio", Value::DoubleValue(0.25)),
                        kv(
                            "tags",
                            Value::ArrayValue(ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(s("a")),
                                }],
                            }),
                        ),
                        kv("raw", Value::BytesValue(b"hi!".to_vec())),
                        kv("1st", s("x")),
                        kv("", s("no name")),
                        kv(
                            "req",
                            map(vec![kv("h", map(vec![kv("user-agent", s("curl"))]))]),
                        ),
                    ],
                    flags: 1,
                    trace_id: (1..=16).collect(),
                    span_id: vec![0xaa; 8],
                    ..Default::default()
                }],
            )],
        };
        let got = translate_logs(&req, NOW);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].labels,
            Labels::from_pairs([("k8s_namespace_name", "shop"), ("service_name", "checkout")]),
            "empty index attributes are no label"
        );
        let e = &got[0].entries[0];
        assert_eq!(e.timestamp_ns, 1_700_000_000_000_000_001);
        assert_eq!(e.line, "payment failed");
        assert_eq!(
            e.structured_metadata,
            md(&[
                ("http_status_code", "502"),
                ("retry", "true"),
                ("ratio", "0.25"),
                ("tags", r#"["a"]"#),
                ("raw", "aGkh"),
                ("key_1st", "x"),
                ("req_h_user_agent", "curl"),
                ("observed_timestamp", "1700000000000000002"),
                ("severity_number", "17"),
                ("severity_text", "ERROR"),
                ("trace_id", "0102030405060708090a0b0c0d0e0f10"),
                ("span_id", "aaaaaaaaaaaaaaaa"),
                ("flags", "1"),
                ("host_name", "box-1"),
                ("team_name", "pay"),
                ("team_size", "4"),
                ("lib_kind", "std"),
                ("scope_name", "shop.logger"),
                ("scope_version", "1.2.0"),
            ])
        );
    }

    #[test]
    fn timestamps_fall_back_to_observed_then_now() {
        let observed_only = LogRecord {
            observed_time_unix_nano: 42,
            ..record(0, "a")
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![resource_logs(
                vec![],
                None,
                vec![
                    observed_only,
                    record(0, "b"),
                    record(u64::MAX, "c"),
                    LogRecord {
                        body: None,
                        ..record(7, "")
                    },
                ],
            )],
        };
        let got = translate_logs(&req, NOW);
        let e = &got[0].entries;
        assert_eq!(
            e.iter().map(|e| e.timestamp_ns).collect::<Vec<_>>(),
            [42, NOW, i64::MAX, 7]
        );
        assert!(
            e.iter().all(|e| e.structured_metadata.is_empty()),
            "no observed_timestamp without a timestamp: {e:?}"
        );
        assert_eq!(e[3].line, "", "no body is an empty line");
    }

    #[test]
    fn bodies_and_ids_as_strings() {
        let body = |v: Value| LogRecord {
            body: Some(AnyValue { value: Some(v) }),
            ..record(1, "")
        };
        let req = ExportLogsServiceRequest {
            resource_logs: vec![resource_logs(
                vec![kv("service.name", s(""))],
                None,
                vec![
                    body(map(vec![kv("msg", s("<hi>")), kv("n", Value::IntValue(3))])),
                    body(Value::IntValue(-5)),
                    LogRecord {
                        trace_id: vec![0; 16],
                        span_id: vec![1; 4],
                        ..record(1, "bad ids")
                    },
                ],
            )],
        };
        let got = translate_logs(&req, NOW);
        assert_eq!(
            got[0].labels,
            Labels::from_pairs([("service_name", UNKNOWN_SERVICE)])
        );
        let e = &got[0].entries;
        assert_eq!(e[0].line, r#"{"msg":"\u003chi\u003e","n":3}"#);
        assert_eq!(e[1].line, "-5");
        assert!(e[2].structured_metadata.is_empty(), "{:?}", e[2]);
    }

    #[test]
    fn groups_records_by_stream_labels() {
        let res =
            |svc: &str, host: &str| vec![kv("service.name", s(svc)), kv("host.name", s(host))];
        let req = ExportLogsServiceRequest {
            resource_logs: vec![
                resource_logs(res("a", "h1"), None, vec![record(1, "a1")]),
                resource_logs(res("b", "h1"), None, vec![record(2, "b1")]),
                // Same labels as the first: one stream, metadata per entry.
                resource_logs(res("a", "h2"), None, vec![record(3, "a2"), record(4, "a3")]),
                resource_logs(res("c", "h1"), None, vec![]),
            ],
        };
        let got = translate_logs(&req, NOW);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].labels.get("service_name"), Some("a"));
        let lines: Vec<_> = got[0].entries.iter().map(|e| e.line.as_str()).collect();
        assert_eq!(lines, ["a1", "a2", "a3"]);
        assert_eq!(
            got[0].entries[1].structured_metadata,
            md(&[("host_name", "h2")])
        );
        assert_eq!(got[1].labels.get("service_name"), Some("b"));
        assert!(translate_logs(&ExportLogsServiceRequest::default(), NOW).is_empty());
    }
}
