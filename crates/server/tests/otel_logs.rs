//! OTLP logs through the real binary, read back through the Loki API: the
//! real OpenTelemetry Python SDK (stdlib `logging` through the SDK's
//! `LoggingHandler`, batch processor, HTTP/protobuf and gRPC exporters, both
//! gzipped) and requests made by hand (OTLP/JSON with gzip, protobuf, a
//! gRPC client), mapped to streams and structured metadata as Loki 3 maps
//! them; partial success, 400, 415 and 429 answers.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};

use crate::external::{python, require_or_skip};
use crate::harness::*;

/// Logs four records with the stdlib `logging` module, two of them inside a
/// span, and exports them once (force_flush). Prints the span's ids and
/// trace flags (sampled, here also the W3C level 2 random bit) as JSON
/// and exits 1 unless every export succeeded. Arguments: `http|grpc`,
/// endpoint, tenant.
const SDK_SCRIPT: &str = r#"
import json
import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

protocol, endpoint, tenant = sys.argv[1:4]
if protocol == "http":
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as Base

    kwargs = dict(
        endpoint=endpoint,
        headers={"X-Scope-OrgID": tenant},
        timeout=10,
        compression=Compression.Gzip,
    )
elif protocol == "grpc":
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as Base

    kwargs = dict(
        endpoint=endpoint,
        insecure=True,
        headers=(("x-scope-orgid", tenant),),
        timeout=10,
        compression=grpc.Compression.Gzip,
    )
else:
    sys.exit(f"unknown protocol {protocol}")

results = []


class Recording(Base):
    def export(self, batch, *args, **kwargs):
        result = super().export(batch, *args, **kwargs)
        results.append(result)
        return result


# Without service.instance.id the SDK sets a random one, and as an index
# label it would make each run a new stream.
resource = Resource.create(
    {
        "service.name": "checkout",
        "service.instance.id": "i-1",
        "k8s.namespace.name": "shop",
        "team": "payments",
    }
)
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(BatchLogRecordProcessor(Recording(**kwargs)))
log = logging.getLogger("shop.checkout")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))

tracer = TracerProvider().get_tracer("shop")
with tracer.start_as_current_span("place-order") as span:
    ids = span.get_span_context()
    log.info("order placed", extra={"order.id": "o-1", "amount": 12.5})
    log.error("payment failed: %s", "declined", extra={"retry": True})
log.warning("stock low", extra={"item": {"sku": "A-1", "left": 2}})
log.info({"event": "refund", "amount": 3})

flushed = provider.force_flush(20_000)
provider.shutdown()
ok = [r == LogRecordExportResult.SUCCESS for r in results]
print(json.dumps({
    "trace_id": format(ids.trace_id, "032x"),
    "span_id": format(ids.span_id, "016x"),
    "trace_flags": int(ids.trace_flags),
    "flushed": flushed,
    "exports": ok,
}), flush=True)
if not flushed or not ok or not all(ok):
    sys.exit(1)
"#;

/// Runs the SDK script; returns whether it exited 0, and its output.
fn run_sdk(dir: &Path, protocol: &str, endpoint: &str, tenant: &str) -> (bool, String) {
    let py = python().expect("checked by the caller");
    let script = dir.join("otel_logs.py");
    std::fs::write(&script, SDK_SCRIPT).unwrap();
    let log_path = dir.join(format!("otel-logs-{protocol}-{}.log", now_ms()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(py)
        .arg(&script)
        .args([protocol, endpoint, tenant])
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SERVICE_NAME")
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting python");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SDK script did not finish in 60s:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(&log_path).unwrap_or_default(),
    )
}

fn now_ns() -> i64 {
    now_ms() * 1_000_000
}

/// GET a Loki API path for `tenant` with parameters, optionally asking for
/// categorized labels (stream labels apart from structured metadata).
fn loki_get(
    s: &Server,
    tenant: &str,
    path: &str,
    params: &[(&str, &str)],
    categorize: bool,
) -> Value {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let mut r = client()
        .get(s.url(&format!("{path}?{}", q.join("&"))))
        .header("X-Scope-OrgID", tenant);
    if categorize {
        r = r.header("X-Loki-Response-Encoding-Flags", "categorize-labels");
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    assert_eq!(status, 200, "{path} {params:?}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A categorized `query_range` over the last hour, oldest first: each
/// stream's labels and its entries as (line, structured metadata).
fn query(s: &Server, tenant: &str, logql: &str) -> Vec<(Value, Vec<(String, Value)>)> {
    let start = (now_ns() - 3_600_000_000_000).to_string();
    let end = (now_ns() + 60_000_000_000).to_string();
    let v = loki_get(
        s,
        tenant,
        "/loki/api/v1/query_range",
        &[
            ("query", logql),
            ("start", &start),
            ("end", &end),
            ("direction", "forward"),
        ],
        true,
    );
    assert_eq!(v["data"]["resultType"], "streams", "{v}");
    assert_eq!(
        v["data"]["encodingFlags"],
        json!(["categorize-labels"]),
        "{v}"
    );
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            let entries = st["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let md = e[2].get("structuredMetadata").cloned().unwrap_or(json!({}));
                    (e[1].as_str().unwrap().to_string(), md)
                })
                .collect();
            (st["stream"].clone(), entries)
        })
        .collect()
}

/// The lines of a query's entries, in order, over all streams.
fn lines(result: &[(Value, Vec<(String, Value)>)]) -> Vec<String> {
    result
        .iter()
        .flat_map(|(_, e)| e.iter().map(|(l, _)| l.clone()))
        .collect()
}

/// What the SDK script must produce for `tenant`, mapped as Loki 3 maps it.
fn assert_sdk_logs(s: &Server, tenant: &str, script_output: &str) {
    let ids: Value = script_output
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no ids printed:\n{script_output}"));
    let trace_id = ids["trace_id"].as_str().unwrap();
    let span_id = ids["span_id"].as_str().unwrap();
    let flags = ids["trace_flags"].as_u64().unwrap();
    assert_eq!(flags & 1, 1, "the span is sampled: {ids}");
    let flags = flags.to_string();

    let got = query(s, tenant, r#"{service_name="checkout"}"#);
    // One stream: only the default index-label attributes are labels.
    assert_eq!(got.len(), 1, "{got:?}");
    let stream = json!({
        "service_name": "checkout",
        "service_instance_id": "i-1",
        "k8s_namespace_name": "shop",
    });
    assert_eq!(got[0].0, stream);
    assert_eq!(
        lines(&got),
        [
            "order placed",
            "payment failed: declined",
            "stock low",
            r#"{"amount":3,"event":"refund"}"#,
        ]
    );
    let entries = &got[0].1;
    let sdk_version = entries[0].1["telemetry_sdk_version"].clone();
    assert!(sdk_version.is_string(), "{:?}", entries[0]);
    for (line, md) in entries {
        // The rest of the resource, the scope (the Python logger's name)
        // and the code location the handler adds, on every entry.
        for (k, v) in [
            ("team", json!("payments")),
            ("telemetry_sdk_language", json!("python")),
            ("telemetry_sdk_name", json!("opentelemetry")),
            ("telemetry_sdk_version", sdk_version.clone()),
            ("scope_name", json!("shop.checkout")),
        ] {
            assert_eq!(md[k], v, "{k} of {line:?}: {md}");
        }
        assert!(
            md["code_file_path"]
                .as_str()
                .is_some_and(|p| p.ends_with("otel_logs.py")),
            "{md}"
        );
        assert!(
            md["code_line_number"]
                .as_str()
                .unwrap()
                .parse::<u32>()
                .is_ok(),
            "{md}"
        );
        let observed: i64 = md["observed_timestamp"].as_str().unwrap().parse().unwrap();
        assert!(
            (now_ns() - 300_000_000_000..=now_ns()).contains(&observed),
            "{md}"
        );
    }
    // Loki 3's discover_log_levels: the level from severity_text.
    let levels: Vec<&Value> = entries.iter().map(|e| &e.1["detected_level"]).collect();
    assert_eq!(
        levels,
        [
            &json!("info"),
            &json!("error"),
            &json!("warn"),
            &json!("info")
        ]
    );
    let without_common = |md: &Value| {
        let mut m = md.as_object().unwrap().clone();
        for k in [
            "team",
            "telemetry_sdk_language",
            "telemetry_sdk_name",
            "telemetry_sdk_version",
            "scope_name",
            "code_file_path",
            "code_function_name",
            "code_line_number",
            "observed_timestamp",
            "detected_level",
        ] {
            m.remove(k);
        }
        Value::Object(m)
    };
    assert_eq!(
        without_common(&entries[0].1),
        json!({
            "order_id": "o-1",
            "amount": "12.5",
            "severity_number": "9",
            "severity_text": "INFO",
            "trace_id": trace_id,
            "span_id": span_id,
            "flags": flags,
        })
    );
    assert_eq!(
        without_common(&entries[1].1),
        json!({
            "retry": "true",
            "severity_number": "17",
            "severity_text": "ERROR",
            "trace_id": trace_id,
            "span_id": span_id,
            "flags": flags,
        })
    );
    // Outside the span: no trace context. A map attribute is flattened.
    assert_eq!(
        without_common(&entries[2].1),
        json!({
            "item_sku": "A-1",
            "item_left": "2",
            "severity_number": "13",
            "severity_text": "WARN",
        })
    );
    assert_eq!(
        without_common(&entries[3].1),
        json!({"severity_number": "9", "severity_text": "INFO"})
    );

    // Structured metadata filters as Loki's do.
    let in_trace = query(
        s,
        tenant,
        &format!(r#"{{service_name="checkout"}} | trace_id="{trace_id}""#),
    );
    assert_eq!(
        lines(&in_trace),
        ["order placed", "payment failed: declined"]
    );
    let warn = query(
        s,
        tenant,
        r#"{k8s_namespace_name="shop"} | severity_text="WARN""#,
    );
    assert_eq!(lines(&warn), ["stock low"]);

    // The label endpoints see only stream labels.
    let v = loki_get(s, tenant, "/loki/api/v1/labels", &[], false);
    assert_eq!(
        v["data"],
        json!(["k8s_namespace_name", "service_instance_id", "service_name"])
    );
    let v = loki_get(
        s,
        tenant,
        "/loki/api/v1/label/service_name/values",
        &[],
        false,
    );
    assert_eq!(v["data"], json!(["checkout"]));
    let v = loki_get(
        s,
        tenant,
        "/loki/api/v1/series",
        &[("match[]", r#"{service_name=~"check.*"}"#)],
        false,
    );
    assert_eq!(v["data"], json!([stream]));
    // Other tenants see nothing.
    let v = loki_get(s, "someone-else", "/loki/api/v1/labels", &[], false);
    assert_eq!(v["data"], json!([]));
}

#[test]
fn otel_python_sdk_logs_over_http() {
    if !require_or_skip("the OpenTelemetry Python SDK", python().is_some()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("miru"), &[]);
    let endpoint = s.url("/otlp/v1/logs");
    let (ok, out) = run_sdk(dir.path(), "http", &endpoint, "otel");
    assert!(ok, "export failed:\n{out}\nmiru log:\n{}", s.log());
    assert_sdk_logs(&s, "otel", &out);

    // The OTLP default path works the same.
    let (ok, out) = run_sdk(dir.path(), "http", &s.url("/v1/logs"), "otel-default-path");
    assert!(ok, "export failed:\n{out}\nmiru log:\n{}", s.log());
    assert_sdk_logs(&s, "otel-default-path", &out);

    // The script does notice a failed export: an invalid tenant is a 400.
    let (ok, out) = run_sdk(dir.path(), "http", &endpoint, "bad/tenant");
    assert!(!ok, "export to an invalid tenant succeeded:\n{out}");
}

#[test]
fn otel_python_sdk_logs_over_grpc() {
    if !require_or_skip("the OpenTelemetry Python SDK", python().is_some()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("miru"), &[]);
    let endpoint = format!("127.0.0.1:{}", s.grpc_port);
    let (ok, out) = run_sdk(dir.path(), "grpc", &endpoint, "otel");
    assert!(ok, "export failed:\n{out}\nmiru log:\n{}", s.log());
    assert_sdk_logs(&s, "otel", &out);

    // INVALID_ARGUMENT for an invalid tenant is not retried; the script fails.
    let (ok, out) = run_sdk(dir.path(), "grpc", &endpoint, "bad/tenant");
    assert!(!ok, "export to an invalid tenant succeeded:\n{out}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// POSTs to `/otlp/v1/logs`; returns status, content type and body bytes.
fn post_logs(
    s: &Server,
    tenant: &str,
    content_type: &str,
    gzipped: bool,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let mut r = client()
        .post(s.url("/otlp/v1/logs"))
        .header("Content-Type", content_type)
        .header("X-Scope-OrgID", tenant);
    if gzipped {
        r = r.header("Content-Encoding", "gzip");
    }
    let resp = r.body(body).send().unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.bytes().unwrap().to_vec())
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// `google.rpc.Status`, the OTLP/HTTP error body in protobuf.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A protobuf request: one resource of `service`, one record per line.
fn proto_request(service: &str, records: &[(i64, &str)]) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records
                    .iter()
                    .map(|&(t, line)| LogRecord {
                        time_unix_nano: t as u64,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(line.into())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn otlp_logs_by_hand_json_gzip_protobuf_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime.yaml");
    std::fs::write(
        &runtime,
        "overrides:\n  slow:\n    ingestion_rate_mb: 0.0001\n    ingestion_burst_size_mb: 0.0001\n",
    )
    .unwrap();
    let s = Server::start(
        &dir.path().join("miru"),
        &["--runtime-config.file", runtime.to_str().unwrap()],
    );
    let t = now_ns() - 5_000_000_000;
    let body = json!({
        "resourceLogs": [{
            // No service.name: the stream gets service_name="unknown_service".
            "resource": {"attributes": [
                {"key": "k8s.pod.name", "value": {"stringValue": "api-7f9"}},
                {"key": "host.name", "value": {"stringValue": "box-7"}},
            ]},
            "scopeLogs": [{
                "scope": {"name": "manual", "version": "2"},
                "logRecords": [
                    {
                        "timeUnixNano": t.to_string(),
                        "severityNumber": 13,
                        "severityText": "Warning",
                        "traceId": "5B8EFFF798038103D269B633813FC60C",
                        "spanId": "EEE19B7EC3C1B174",
                        "flags": 1,
                        "body": {"stringValue": "disk almost full"},
                        "attributes": [
                            {"key": "disk.used", "value": {"doubleValue": 0.93}},
                            {"key": "labels", "value": {"kvlistValue": {"values": [
                                {"key": "tier", "value": {"stringValue": "gold"}},
                            ]}}},
                            {"key": "mounts", "value": {"arrayValue": {"values": [
                                {"stringValue": "/"}, {"stringValue": "/data"},
                            ]}}},
                        ],
                    },
                    {
                        // No time: the observed time is the timestamp, and
                        // there is no observed_timestamp metadata.
                        "observedTimeUnixNano": (t + 1_000_000).to_string(),
                        "body": {"kvlistValue": {"values": [
                            {"key": "msg", "value": {"stringValue": "a <map> body"}},
                            {"key": "code", "value": {"intValue": "7"}},
                        ]}},
                    },
                ],
            }],
        }],
    });
    let (st, ct, resp) = post_logs(
        &s,
        "by-hand",
        "application/json",
        true,
        gzip(body.to_string().as_bytes()),
    );
    assert_eq!(
        (st, ct.as_str()),
        (200, "application/json"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(json_of(&resp), json!({}), "full success: no partialSuccess");

    let got = query(&s, "by-hand", r#"{service_name="unknown_service"}"#);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].0,
        json!({"service_name": "unknown_service", "k8s_pod_name": "api-7f9"})
    );
    assert_eq!(
        got[0].1,
        vec![
            (
                "disk almost full".to_string(),
                json!({
                    "disk_used": "0.93",
                    "labels_tier": "gold",
                    "mounts": r#"["/","/data"]"#,
                    "severity_number": "13",
                    "severity_text": "Warning",
                    "trace_id": "5b8efff798038103d269b633813fc60c",
                    "span_id": "eee19b7ec3c1b174",
                    "flags": "1",
                    "host_name": "box-7",
                    "scope_name": "manual",
                    "scope_version": "2",
                    "detected_level": "warn",
                })
            ),
            (
                r#"{"code":7,"msg":"a \u003cmap\u003e body"}"#.to_string(),
                json!({"host_name": "box-7", "scope_name": "manual", "scope_version": "2", "detected_level": "unknown"})
            ),
        ]
    );

    // Protobuf in, protobuf out; entries that validation refuses (one too
    // old) are counted in a partial success that names the first reason,
    // and the rest is stored.
    let old = now_ns() - 30 * 86_400 * 1_000_000_000;
    let req = proto_request("pb", &[(t, "fresh"), (old, "ancient")]);
    let (st, ct, resp) = post_logs(
        &s,
        "by-hand",
        "application/x-protobuf",
        false,
        req.encode_to_vec(),
    );
    assert_eq!((st, ct.as_str()), (200, "application/x-protobuf"));
    let resp = ExportLogsServiceResponse::decode(&resp[..]).unwrap();
    let partial = resp.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("timestamp too old"),
        "{}",
        partial.error_message
    );
    assert_eq!(
        lines(&query(&s, "by-hand", r#"{service_name="pb"}"#)),
        ["fresh"]
    );
    // The same in JSON: the count is a string, as OTLP/JSON writes int64.
    let (st, _, resp) = post_logs(
        &s,
        "by-hand",
        "application/json",
        false,
        json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": old.to_string(), "body": {"stringValue": "ancient"}},
        ]}]}]})
        .to_string()
        .into_bytes(),
    );
    assert_eq!(st, 200);
    let resp = json_of(&resp);
    assert_eq!(resp["partialSuccess"]["rejectedLogRecords"], "1", "{resp}");

    // Malformed bodies: 400 with a google.rpc.Status in the request's
    // encoding that says what is wrong; nothing more is stored.
    let (st, ct, resp) = post_logs(
        &s,
        "by-hand",
        "application/json",
        true,
        gzip(br#"{"resourceLogs": [{"scopeLogs": "#),
    );
    assert_eq!((st, ct.as_str()), (400, "application/json"));
    let status = json_of(&resp);
    assert_eq!(status["code"], 3, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid otlp json logs request at line 1, column"),
        "{status}"
    );
    let (st, ct, resp) = post_logs(
        &s,
        "by-hand",
        "application/x-protobuf",
        false,
        b"\x0a\xff\xff\xff".to_vec(),
    );
    assert_eq!((st, ct.as_str()), (400, "application/x-protobuf"));
    let status = RpcStatus::decode(&resp[..]).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status
            .message
            .starts_with("invalid otlp protobuf logs request: "),
        "{}",
        status.message
    );
    let (st, _, resp) = post_logs(
        &s,
        "by-hand",
        "application/json",
        true,
        b"not gzip".to_vec(),
    );
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&resp));
    let (st, _, _) = post_logs(&s, "by-hand", "text/plain", false, b"hello".to_vec());
    assert_eq!(st, 415);

    // Over the tenant's log ingestion rate: 429 with Retry-After.
    let big = proto_request("slow", &[(t, &"x".repeat(1000))]);
    let r = client()
        .post(s.url("/v1/logs"))
        .header("Content-Type", "application/x-protobuf")
        .header("X-Scope-OrgID", "slow")
        .body(big.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let status = RpcStatus::decode(&r.bytes().unwrap()[..]).unwrap();
    assert_eq!(status.code, 8, "{}", status.message);

    // What was stored before the bad requests is still all there.
    let v = loki_get(&s, "by-hand", "/loki/api/v1/labels", &[], false);
    assert_eq!(v["data"], json!(["k8s_pod_name", "service_name"]));
    assert_eq!(
        lines(&query(&s, "by-hand", r#"{service_name=~".+"}"#)).len(),
        3,
        "two unknown_service entries and one pb entry"
    );
}

#[test]
fn otlp_logs_over_grpc_partial_success_and_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime.yaml");
    std::fs::write(
        &runtime,
        "overrides:\n  slow:\n    ingestion_rate_mb: 0.0001\n    ingestion_burst_size_mb: 0.0001\n",
    )
    .unwrap();
    let s = Server::start(
        &dir.path().join("miru"),
        &["--runtime-config.file", runtime.to_str().unwrap()],
    );
    let t = now_ns() - 5_000_000_000;
    let old = now_ns() - 30 * 86_400 * 1_000_000_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let export = |tenant: &str, req: ExportLogsServiceRequest| {
        rt.block_on(async {
            let mut c = LogsServiceClient::connect(format!("http://127.0.0.1:{}", s.grpc_port))
                .await
                .unwrap();
            let mut r = tonic::Request::new(req);
            r.metadata_mut()
                .insert("x-scope-orgid", tenant.parse().unwrap());
            c.export(r).await.map(tonic::Response::into_inner)
        })
    };

    let resp = export(
        "grpc",
        proto_request("svc", &[(t, "kept"), (old, "too old")]),
    )
    .unwrap();
    let partial = resp.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("timestamp too old"),
        "{partial:?}"
    );
    assert_eq!(
        lines(&query(&s, "grpc", r#"{service_name="svc"}"#)),
        ["kept"]
    );

    let resp = export("grpc", proto_request("svc", &[(t + 1, "all good")])).unwrap();
    assert_eq!(resp.partial_success, None);

    let err = export("bad/tenant", proto_request("svc", &[(t, "x")])).unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let err = export("slow", proto_request("svc", &[(t, &"x".repeat(1000))])).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("rate limit"), "{err}");
}
