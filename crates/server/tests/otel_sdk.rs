//! OTLP metrics from the real OpenTelemetry Python SDK (HTTP/protobuf and
//! gRPC exporters), and OTLP/HTTP JSON with gzip sent by hand.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::external::{python, require_or_skip};
use crate::harness::*;

/// Records a few instruments and exports them once (force_flush, then the
/// final export of shutdown). Exits 1 unless every export succeeded.
/// Arguments: `http|grpc`, endpoint, tenant.
const SDK_SCRIPT: &str = r#"
import math
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

protocol, endpoint, tenant = sys.argv[1:4]
if protocol == "http":
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as Base,
    )

    kwargs = dict(endpoint=endpoint, headers={"X-Scope-OrgID": tenant}, timeout=10)
elif protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
        OTLPMetricExporter as Base,
    )

    kwargs = dict(
        endpoint=endpoint,
        insecure=True,
        headers=(("x-scope-orgid", tenant),),
        timeout=10,
    )
else:
    sys.exit(f"unknown protocol {protocol}")

results = []


class Recording(Base):
    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        results.append(result)
        return result


resource = Resource.create(
    {
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": "i-1",
        "deployment.environment": "prod",
    }
)
reader = PeriodicExportingMetricReader(Recording(**kwargs), export_interval_millis=math.inf)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

exponential = View(
    instrument_name="rpc.duration", aggregation=ExponentialBucketHistogramAggregation()
)
provider = MeterProvider(resource=resource, metric_readers=[reader], views=[exponential])
meter = provider.get_meter("shop.checkout", "0.1.0")

orders = meter.create_counter("orders", unit="1", description="Orders placed")
orders.add(3, {"payment.method": "card"})
orders.add(2, {"payment.method": "cash"})
orders.add(1, {"payment.method": "card"})

depth = meter.create_up_down_counter("queue.depth", unit="{items}", description="Items waiting")
depth.add(5)
depth.add(-2)

latency = meter.create_histogram("http.server.duration", unit="ms", description="Server latency")
for v in (12, 40, 700):
    latency.record(v, {"http.request.method": "GET", "http.response.status_code": 200})

rpc = meter.create_histogram("rpc.duration", unit="s", description="RPC latency")
for v in (0.002, 0.004, 0.5):
    rpc.record(v)

flushed = provider.force_flush(timeout_millis=20_000)
provider.shutdown()
ok = [r == MetricExportResult.SUCCESS for r in results]
print(f"flushed={flushed} exports={ok}", flush=True)
if not flushed or not ok or not all(ok):
    sys.exit(1)
"#;

/// Runs the SDK script; returns whether it exited 0, and its output.
fn run_sdk(dir: &Path, protocol: &str, endpoint: &str, tenant: &str) -> (bool, String) {
    let py = python().expect("checked by the caller");
    let script = dir.join("otel_metrics.py");
    std::fs::write(&script, SDK_SCRIPT).unwrap();
    let log_path = dir.join(format!("otel-{protocol}-{}.log", now_ms()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(py)
        .arg(&script)
        .args([protocol, endpoint, tenant])
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
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

/// The one series matching `selector` for tenant `otel`: its labels and
/// last value.
fn one(s: &Server, selector: &str) -> (Value, f64) {
    let got = raw(s, Some("otel"), selector);
    assert_eq!(got.len(), 1, "{selector}: {got:?}");
    let (labels, samples) = got.into_iter().next().unwrap();
    let now = now_ms();
    assert!(
        samples
            .iter()
            .all(|&(t, _)| t > now - 120_000 && t <= now + 1_000),
        "{selector}: timestamps {samples:?}"
    );
    (labels, samples.last().expect("no samples").1)
}

/// What the SDK script must produce in miru, translated as Prometheus 3 and
/// Mimir translate OTLP (suffixes on, underscore escaping).
fn assert_sdk_metrics(s: &Server) {
    // No `otel_scope_*` labels: Prometheus and Mimir do not promote scope
    // metadata by default, and neither does miru.
    let scope: [(&str, &str); 0] = [];
    let with = |name: &str, extra: &[(&str, &str)]| {
        let mut m = serde_json::Map::new();
        m.insert("__name__".into(), json!(name));
        m.insert("job".into(), json!("shop/checkout"));
        m.insert("instance".into(), json!("i-1"));
        for (k, v) in scope.iter().chain(extra) {
            m.insert(k.to_string(), json!(v));
        }
        Value::Object(m)
    };

    // Monotonic sum with unit "1": `_total`, no unit suffix.
    let (labels, v) = one(s, "orders_total{payment_method=\"card\"}");
    assert_eq!(
        labels,
        with("orders_total", &[("payment_method", "card")]),
        "exact label set"
    );
    assert_eq!(v, 4.0);
    assert_eq!(one(s, "orders_total{payment_method=\"cash\"}").1, 2.0);

    // Non-monotonic sum: a gauge; the annotation unit `{items}` adds nothing.
    let (labels, v) = one(s, "queue_depth");
    assert_eq!(labels, with("queue_depth", &[]));
    assert_eq!(v, 3.0);

    // Explicit-bucket histogram with the SDK's default boundaries.
    let method = [
        ("http_request_method", "GET"),
        ("http_response_status_code", "200"),
    ];
    let buckets = raw(s, Some("otel"), "http_server_duration_milliseconds_bucket");
    let mut les: Vec<(String, f64)> = buckets
        .iter()
        .map(|(l, samples)| {
            let mut without_le = l.clone();
            without_le.as_object_mut().unwrap().remove("le");
            assert_eq!(
                without_le,
                with("http_server_duration_milliseconds_bucket", &method)
            );
            (
                l["le"].as_str().unwrap().to_string(),
                samples.last().unwrap().1,
            )
        })
        .collect();
    les.sort_by(|a, b| {
        let f = |s: &str| s.parse::<f64>().unwrap_or(f64::INFINITY);
        f(&a.0).total_cmp(&f(&b.0))
    });
    let want: Vec<(String, f64)> = [
        ("0", 0.0),
        ("5", 0.0),
        ("10", 0.0),
        ("25", 1.0),
        ("50", 2.0),
        ("75", 2.0),
        ("100", 2.0),
        ("250", 2.0),
        ("500", 2.0),
        ("750", 3.0),
        ("1000", 3.0),
        ("2500", 3.0),
        ("5000", 3.0),
        ("7500", 3.0),
        ("10000", 3.0),
        ("+Inf", 3.0),
    ]
    .iter()
    .map(|(le, v)| (le.to_string(), *v))
    .collect();
    assert_eq!(les, want);
    let (labels, v) = one(s, "http_server_duration_milliseconds_sum");
    assert_eq!(
        labels,
        with("http_server_duration_milliseconds_sum", &method)
    );
    assert_eq!(v, 752.0);
    assert_eq!(one(s, "http_server_duration_milliseconds_count").1, 3.0);

    // Exponential histogram: one native histogram series under the base
    // name, whose buckets hold each recorded value (this checks the OTLP ->
    // Prometheus bucket index shift and the schema).
    let hists = raw_histograms(s, Some("otel"), "rpc_duration_seconds");
    assert_eq!(hists.len(), 1, "{hists:?}");
    assert_eq!(hists[0].0, with("rpc_duration_seconds", &[]));
    let h = &hists[0].1.last().unwrap().1;
    assert_eq!(h["count"], "3");
    assert_eq!(h["sum"].as_str().unwrap().parse::<f64>().unwrap(), 0.506);
    let buckets: Vec<(f64, f64, f64)> = h["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            assert_eq!(b[0], 0, "positive buckets are (lower, upper]: {b}");
            let f = |i: usize| b[i].as_str().unwrap().parse::<f64>().unwrap();
            (f(1), f(2), f(3))
        })
        .collect();
    assert_eq!(buckets.iter().map(|b| b.2).sum::<f64>(), 3.0, "{h}");
    for v in [0.002, 0.004, 0.5] {
        assert!(
            buckets
                .iter()
                .any(|(lo, hi, c)| *lo < v && v <= *hi && *c >= 1.0),
            "{v} is in no bucket of {h}"
        );
    }

    // The resource: job/instance from service.*, the rest on target_info.
    let (labels, v) = one(s, "target_info");
    assert_eq!(v, 1.0);
    let sdk_version = labels["telemetry_sdk_version"].clone();
    assert!(sdk_version.is_string(), "{labels}");
    assert_eq!(
        labels,
        json!({
            "__name__": "target_info",
            "deployment_environment": "prod",
            "instance": "i-1",
            "job": "shop/checkout",
            "telemetry_sdk_language": "python",
            "telemetry_sdk_name": "opentelemetry",
            "telemetry_sdk_version": sdk_version,
        })
    );

    let (st, md) = get_json(s, Some("otel"), "/api/v1/metadata");
    assert_eq!(st, 200);
    let md = &md["data"];
    let meta = |family: &str| md[family][0].clone();
    assert_eq!(
        meta("orders_total"),
        json!({"type": "counter", "help": "Orders placed", "unit": ""})
    );
    assert_eq!(
        meta("queue_depth"),
        json!({"type": "gauge", "help": "Items waiting", "unit": ""})
    );
    assert_eq!(
        meta("http_server_duration_milliseconds"),
        json!({"type": "histogram", "help": "Server latency", "unit": "milliseconds"})
    );
    assert_eq!(meta("target_info")["type"], "gauge");

    // Nothing was dropped, and other tenants see nothing.
    assert_eq!(
        metric_sum(s, "miru_discarded_samples_total", "otel"),
        0.0,
        "{}",
        s.log()
    );
    assert!(raw(s, None, "orders_total").is_empty());
    assert!(raw(s, None, "target_info").is_empty());
}

#[test]
fn otel_python_sdk_over_http_protobuf() {
    if !require_or_skip("the OpenTelemetry Python SDK", python().is_some()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("miru"), &[]);
    let endpoint = s.url("/otlp/v1/metrics");
    let (ok, out) = run_sdk(dir.path(), "http", &endpoint, "otel");
    assert!(ok, "export failed:\n{out}\nmiru log:\n{}", s.log());
    assert_sdk_metrics(&s);
    assert!(
        metric_sum(&s, "miru_received_samples_total", "otlp_http") > 0.0,
        "{}",
        s.log()
    );

    // The script does notice a failed export: an invalid tenant is a 400.
    let (ok, out) = run_sdk(dir.path(), "http", &endpoint, "bad/tenant");
    assert!(!ok, "export to an invalid tenant succeeded:\n{out}");
}

#[test]
fn otel_python_sdk_over_grpc() {
    if !require_or_skip("the OpenTelemetry Python SDK", python().is_some()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("miru"), &[]);
    let endpoint = format!("127.0.0.1:{}", s.grpc_port);
    let (ok, out) = run_sdk(dir.path(), "grpc", &endpoint, "otel");
    assert!(ok, "export failed:\n{out}\nmiru log:\n{}", s.log());
    assert_sdk_metrics(&s);
    assert!(
        metric_sum(&s, "miru_received_samples_total", "otlp_grpc") > 0.0,
        "{}",
        s.log()
    );

    // INVALID_ARGUMENT for an invalid tenant is not retried; the script fails.
    let (ok, out) = run_sdk(dir.path(), "grpc", &endpoint, "bad/tenant");
    assert!(!ok, "export to an invalid tenant succeeded:\n{out}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn post_otlp(
    s: &Server,
    content_type: &str,
    gzipped: bool,
    body: Vec<u8>,
) -> (u16, String, String) {
    let mut r = client()
        .post(s.url("/otlp/v1/metrics"))
        .header("Content-Type", content_type)
        .header("X-Scope-OrgID", "otel-json");
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
    (status, ct, resp.text().unwrap())
}

#[test]
fn otlp_http_json_with_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let t_ms = now_ms() - 5_000;
    let t_ns = (t_ms as u64 * 1_000_000).to_string();
    let body = json!({
        "resourceMetrics": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "json-svc"}},
                {"key": "host.name", "value": {"stringValue": "box-7"}},
            ]},
            "scopeMetrics": [{
                "scope": {"name": "manual", "version": "1"},
                "metrics": [
                    {
                        "name": "json.requests",
                        "unit": "1",
                        "description": "Requests by route",
                        "sum": {
                            "aggregationTemporality": 2,
                            "isMonotonic": true,
                            "dataPoints": [{
                                "asInt": "7",
                                "timeUnixNano": t_ns,
                                "attributes": [{"key": "route", "value": {"stringValue": "/a"}}],
                            }],
                        },
                    },
                    {
                        "name": "json.temperature",
                        "unit": "Cel",
                        "gauge": {"dataPoints": [{"asDouble": 21.5, "timeUnixNano": t_ns}]},
                    },
                ],
            }],
        }],
    });
    let (st, ct, text) = post_otlp(
        &s,
        "application/json",
        true,
        gzip(body.to_string().as_bytes()),
    );
    assert_eq!(st, 200, "{text}");
    assert_eq!(ct, "application/json");
    // Full success: no partialSuccess.
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({}));

    let got = raw(&s, Some("otel-json"), "json_requests_total");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].0,
        json!({
            "__name__": "json_requests_total",
            "job": "json-svc",
            "route": "/a",
        })
    );
    assert_eq!(got[0].1, vec![(t_ms, 7.0)]);
    let got = raw(&s, Some("otel-json"), "json_temperature_celsius");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, vec![(t_ms, 21.5)]);
    let got = raw(&s, Some("otel-json"), "target_info");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0["host_name"], "box-7");
    assert_eq!(got[0].0["job"], "json-svc");

    // A delta sum cannot be stored: 200 with a partial success that says so.
    let mut delta = body.clone();
    delta["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["aggregationTemporality"] =
        json!(1);
    let (st, ct, text) = post_otlp(
        &s,
        "application/json",
        true,
        gzip(delta.to_string().as_bytes()),
    );
    assert_eq!((st, ct.as_str()), (200, "application/json"), "{text}");
    let resp: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(resp["partialSuccess"]["rejectedDataPoints"], "1", "{resp}");
    assert!(
        resp["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("delta"),
        "{resp}"
    );

    // Malformed JSON (gzipped): 400 with a google.rpc.Status in JSON.
    let (st, ct, text) = post_otlp(
        &s,
        "application/json",
        true,
        gzip(br#"{"resourceMetrics": [{"scopeMetrics": "#),
    );
    assert_eq!((st, ct.as_str()), (400, "application/json"), "{text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["code"], 3, "{status}");
    assert!(
        status["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{status}"
    );
    // A body that claims gzip but is not: 400 as well.
    let (st, _, text) = post_otlp(&s, "application/json", true, b"not gzip".to_vec());
    assert_eq!(st, 400, "{text}");

    // An unsupported content type: 415.
    let (st, _, text) = post_otlp(&s, "text/plain", false, body.to_string().into_bytes());
    assert_eq!(st, 415, "{text}");

    // The rejected requests stored nothing more.
    assert_eq!(
        raw(&s, Some("otel-json"), "json_requests_total")[0].1,
        vec![(t_ms, 7.0)]
    );
}
