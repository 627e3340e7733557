//! `miru loadgen`: every metrics protocol delivers the same data to the real
//! server; logs and traces reach a receiver decoded entry for entry.
//!
//! Logs and traces go to a receiver written here (Loki pushes through
//! miru's own push decoder, OTLP through the protocol's generated types) because neither Loki, Tempo
//! nor an OpenTelemetry Collector can be installed on this machine. (miru
//! itself ingests logs since this was written: `logs_overload` drives it
//! with `loadgen logs`; it does not ingest traces yet.)

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::harness::{Server, get_json, urlencode};

fn loadgen(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_miru"))
        .arg("loadgen")
        .args(args)
        .args(["--json", "--max-duration", "2m"])
        .output()
        .expect("running miru loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let summary = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("loadgen summary ({e}): {stdout}\n{stderr}"));
    (out.status.success(), summary, stderr)
}

/// Every series of a tenant at `time`, as labels → value.
fn snapshot(s: &Server, tenant: &str, time_s: i64) -> BTreeMap<String, f64> {
    let q = urlencode("{__name__=~\".+\"}");
    let (code, body) = get_json(
        s,
        Some(tenant),
        &format!("/api/v1/query?query={q}&time={time_s}"),
    );
    assert_eq!(code, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (r["metric"].to_string(), v)
        })
        .collect()
}

#[test]
fn metrics_over_rw1_rw2_and_otlp_store_the_same_series_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let start_s = crate::harness::now_ms() / 1000 - 600;
    let common = |tenant: &str, proto: &str, path: &str| -> Vec<String> {
        [
            "metrics",
            "--protocol",
            proto,
            "--url",
            &s.url(path),
            "--tenant",
            tenant,
            "--series",
            "2500",
            "--span",
            "1m",
            "--interval",
            "15s",
            "--batch",
            "700",
            "--seed",
            "11",
        ]
        .iter()
        .map(|x| x.to_string())
        .chain(["--start".to_string(), start_s.to_string()])
        .collect()
    };
    for (tenant, proto, path) in [
        ("t-rw1", "rw1", "/api/v1/push"),
        ("t-rw2", "rw2", "/api/v1/push"),
        ("t-otlp", "otlp", "/otlp/v1/metrics"),
    ] {
        let args = common(tenant, proto, path);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, summary, stderr) = loadgen(&args);
        assert!(ok, "{proto}: {summary} {stderr}");
        assert_eq!(summary["accepted_samples"], 4 * 2500, "{proto}: {summary}");
        assert_eq!(summary["errors"], serde_json::json!({}), "{proto}");
    }
    let last = start_s + 45;
    let rw1 = snapshot(&s, "t-rw1", last);
    assert_eq!(rw1.len(), 2500);
    assert!(
        rw1.keys()
            .any(|k| k.contains("http_request_duration_seconds_bucket"))
    );
    for tenant in ["t-rw2", "t-otlp"] {
        let other = snapshot(&s, tenant, last);
        let missing: Vec<_> = rw1
            .keys()
            .filter(|k| !other.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = other
            .keys()
            .filter(|k| !rw1.contains_key(*k))
            .take(3)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{tenant}: missing {missing:?}, extra {extra:?}"
        );
        for (k, v) in &rw1 {
            assert_eq!(other[k].to_bits(), v.to_bits(), "{tenant}: {k}");
        }
    }
    // RW 2.0 carries the metric types; classic histograms keep their
    // buckets cumulative whatever the protocol.
    for (metric, kind) in [
        ("http_requests_total", "counter"),
        ("node_memory_MemTotal_bytes", "gauge"),
    ] {
        let (_, meta) = get_json(
            &s,
            Some("t-rw2"),
            &format!("/api/v1/metadata?metric={metric}"),
        );
        assert_eq!(meta["data"][metric][0]["type"], kind, "{meta}");
    }
    let q = urlencode(
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))",
    );
    let (_, hq) = get_json(
        &s,
        Some("t-otlp"),
        &format!("/api/v1/query?query={q}&time={last}"),
    );
    let p90: f64 = hq["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(p90 > 0.0 && p90 <= 10.0, "{hq}");

    // Churn replaces targets: more series over the window than are active.
    let mut args = common("t-churn", "rw1", "/api/v1/push");
    args.extend(["--churn", "0.5", "--churn-interval", "30s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, summary, _) = loadgen(&args);
    assert!(ok && summary["accepted_samples"] == 4 * 2500, "{summary}");
    let m = urlencode("{__name__=~\".+\"}");
    let (_, series) = get_json(
        &s,
        Some("t-churn"),
        &format!("/api/v1/series?match[]={m}&start={start_s}&end={last}"),
    );
    let n = series["data"].as_array().unwrap().len();
    assert!((3000..5000).contains(&n), "{n} series with churn");
}

/// What the receiver saw, per path.
#[derive(Default, Debug)]
struct Seen {
    entries: BTreeMap<String, u64>,
    streams: BTreeMap<String, std::collections::BTreeSet<String>>,
    tenants: std::collections::BTreeSet<String>,
    trace_ids: std::collections::BTreeSet<Vec<u8>>,
}

mod receiver {
    use super::Seen;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use miru_ingest::loki::decode_push;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use prost::Message;

    type S = Arc<Mutex<Seen>>;

    fn tenant(h: &HeaderMap, seen: &mut Seen) -> Result<(), (StatusCode, String)> {
        let t = h
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if t == "limited" {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                "ingestion rate limit exceeded".into(),
            ));
        }
        seen.tenants.insert(t.to_string());
        Ok(())
    }

    async fn loki(
        State(s): State<S>,
        h: HeaderMap,
        body: Bytes,
    ) -> Result<StatusCode, (StatusCode, String)> {
        let mut seen = s.lock().unwrap();
        tenant(&h, &mut seen)?;
        let ct = h.get("content-type").and_then(|c| c.to_str().ok());
        let ce = h.get("content-encoding").and_then(|c| c.to_str().ok());
        let json = ct == Some("application/json");
        let streams: Vec<(String, usize)> = decode_push(&body, ct, ce, 64 << 20)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?
            .into_iter()
            .map(|s| (s.labels.to_string(), s.entries.len()))
            .collect();
        let key = if json { "loki-json" } else { "loki-proto" };
        for (labels, n) in streams {
            *seen.entries.entry(key.into()).or_default() += n as u64;
            seen.streams.entry(key.into()).or_default().insert(labels);
        }
        Ok(StatusCode::NO_CONTENT)
    }

    async fn otlp_logs(
        State(s): State<S>,
        h: HeaderMap,
        body: Bytes,
    ) -> Result<StatusCode, (StatusCode, String)> {
        let mut seen = s.lock().unwrap();
        tenant(&h, &mut seen)?;
        let req = ExportLogsServiceRequest::decode(&body[..])
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        for r in &req.resource_logs {
            let n: usize = r.scope_logs.iter().map(|s| s.log_records.len()).sum();
            *seen.entries.entry("otlp-logs".into()).or_default() += n as u64;
            let res = format!("{:?}", r.resource.as_ref().map(|r| &r.attributes));
            seen.streams
                .entry("otlp-logs".into())
                .or_default()
                .insert(res);
        }
        Ok(StatusCode::OK)
    }

    fn count_spans(seen: &mut Seen, key: &str, req: &ExportTraceServiceRequest) {
        for r in &req.resource_spans {
            for ss in &r.scope_spans {
                *seen.entries.entry(key.into()).or_default() += ss.spans.len() as u64;
                for sp in &ss.spans {
                    seen.trace_ids.insert(sp.trace_id.clone());
                }
            }
        }
    }

    async fn otlp_traces(
        State(s): State<S>,
        h: HeaderMap,
        body: Bytes,
    ) -> Result<StatusCode, (StatusCode, String)> {
        let mut seen = s.lock().unwrap();
        tenant(&h, &mut seen)?;
        let req = ExportTraceServiceRequest::decode(&body[..])
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        count_spans(&mut seen, "otlp-http", &req);
        Ok(StatusCode::OK)
    }

    struct Grpc(S);

    #[tonic::async_trait]
    impl TraceService for Grpc {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let mut seen = self.0.lock().unwrap();
            let t = request
                .metadata()
                .get("x-scope-orgid")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            seen.tenants.insert(t.to_string());
            count_spans(&mut seen, "otlp-grpc", request.get_ref());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// Starts the HTTP and gRPC receivers on loopback; returns their ports.
    pub fn start(seen: S) -> (u16, u16) {
        let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let grpc = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ports = (
            http.local_addr().unwrap().port(),
            grpc.local_addr().unwrap().port(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                http.set_nonblocking(true).unwrap();
                grpc.set_nonblocking(true).unwrap();
                let app = axum::Router::new()
                    .route("/loki/api/v1/push", post(loki))
                    .route("/otlp/v1/logs", post(otlp_logs))
                    .route("/v1/traces", post(otlp_traces))
                    .with_state(Arc::clone(&seen));
                let http = tokio::net::TcpListener::from_std(http).unwrap();
                let grpc = tokio::net::TcpListener::from_std(grpc).unwrap();
                let incoming = tokio_stream_from(grpc);
                tokio::spawn(async move {
                    tonic::transport::Server::builder()
                        .add_service(TraceServiceServer::new(Grpc(seen)))
                        .serve_with_incoming(incoming)
                        .await
                        .unwrap();
                });
                axum::serve(http, app).await.unwrap();
            });
        });
        ports
    }

    fn tokio_stream_from(
        l: tokio::net::TcpListener,
    ) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
        futures::stream::unfold(l, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        })
    }
}

#[test]
fn logs_and_traces_reach_a_receiver_whole() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (http, grpc) = receiver::start(Arc::clone(&seen));
    let url = |p: &str| format!("http://127.0.0.1:{http}{p}");
    let logs = |proto: &str, path: &str, tenant: &str| {
        loadgen(&[
            "logs",
            "--protocol",
            proto,
            "--url",
            &url(path),
            "--tenant",
            tenant,
            "--streams",
            "40",
            "--lines-per-second",
            "50",
            "--span",
            "2m",
            "--batch",
            "250",
            "--structured-metadata",
        ])
    };
    for (proto, path, key) in [
        ("loki-proto", "/loki/api/v1/push", "loki-proto"),
        ("loki-json", "/loki/api/v1/push", "loki-json"),
        ("otlp", "/otlp/v1/logs", "otlp-logs"),
    ] {
        let (ok, summary, stderr) = logs(proto, path, "team-a");
        assert!(ok, "{proto}: {summary} {stderr}");
        assert_eq!(summary["accepted_lines"], 6000, "{proto}: {summary}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.entries[key], 6000, "{proto}");
        let streams = seen.streams[key].len();
        assert!((30..=40).contains(&streams), "{proto}: {streams} streams");
    }
    // Rejections are counted by status and reason; nothing accepted fails the run.
    let (ok, summary, _) = logs("loki-proto", "/loki/api/v1/push", "limited");
    assert!(!ok);
    assert_eq!(summary["accepted_lines"], 0);
    assert_eq!(
        summary["errors"]["429 ingestion rate limit exceeded"], 24,
        "{summary}"
    );

    for (proto, target, key) in [
        ("otlp-http", url("/v1/traces"), "otlp-http"),
        ("otlp-grpc", format!("http://127.0.0.1:{grpc}"), "otlp-grpc"),
    ] {
        let (ok, summary, stderr) = loadgen(&[
            "traces",
            "--protocol",
            proto,
            "--url",
            &target,
            "--tenant",
            "team-b",
            "--traces-per-second",
            "5",
            "--span",
            "1m",
            "--batch",
            "300",
        ]);
        assert!(ok, "{proto}: {summary} {stderr}");
        assert_eq!(summary["traces"], 300, "{summary}");
        let spans = summary["accepted_spans"].as_u64().unwrap();
        assert!(spans >= 300 * 5, "{summary}");
        assert_eq!(seen.lock().unwrap().entries[key], spans, "{proto}");
    }
    let seen = seen.lock().unwrap();
    assert!(seen.tenants.contains("team-a") && seen.tenants.contains("team-b"));
    // Same seed, same traces over both transports.
    assert_eq!(seen.trace_ids.len(), 300, "trace ids of both runs");
}
