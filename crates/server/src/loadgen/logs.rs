//! `miru loadgen logs`: Kubernetes application logs (JSON, logfmt and plain
//! text, one format per container as in real clusters) with realistic stream
//! labels and high-cardinality fields (trace ids, user ids), over Loki push
//! (snappy protobuf or JSON) or OTLP/HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;

use miru_ingest::loki::push;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::workload::Rng;
use super::{CommonArgs, Runner, endpoint, http_client, otlp_kv as kv, post};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogsProtocol {
    /// Loki push, snappy-compressed protobuf (what Promtail and Alloy send).
    LokiProto,
    /// Loki push, JSON.
    LokiJson,
    /// OTLP/HTTP protobuf logs.
    Otlp,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Endpoint [default: http://127.0.0.1:9009/loki/api/v1/push, or
    /// .../otlp/v1/logs with `--protocol otlp`].
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, value_enum, default_value = "loki-proto")]
    pub protocol: LogsProtocol,
    /// Log streams (containers), spread over namespaces and apps.
    #[arg(long, default_value_t = 100)]
    pub streams: usize,
    /// Lines per second of data time, over all streams (total lines: this × `--span`).
    #[arg(long, default_value_t = 100.0)]
    pub lines_per_second: f64,
    /// Lines per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Send `trace_id` and `user_id` as structured metadata too (Loki 3),
    /// not only inside the line.
    #[arg(long)]
    pub structured_metadata: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Logfmt,
    Plain,
}

/// One container's log stream.
struct LogStream {
    labels: Vec<(&'static str, String)>,
    format: Format,
    app: String,
    /// Relative share of all lines (a few chatty streams, many quiet ones).
    weight: f64,
}

/// One generated line.
pub struct LogLine {
    stream: usize,
    ts_ns: i64,
    line: String,
    level: &'static str,
    trace_id: String,
    user_id: String,
}

const APPS: [&str; 10] = [
    "api-gateway",
    "orders",
    "users",
    "cart",
    "payments",
    "inventory",
    "search",
    "notifications",
    "auth",
    "recommendations",
];
const ROUTES: [&str; 6] = [
    "/api/orders",
    "/api/users",
    "/api/cart",
    "/api/search",
    "/api/payments",
    "/health",
];

fn build_streams(n: usize, seed: u64) -> Vec<LogStream> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let app = APPS[i % APPS.len()];
            let ns = format!("team-{}", (i / APPS.len()) % 8);
            let replica = i / (APPS.len() * 8);
            let pod = format!("{app}-{:08x}-{:05x}", rng.next_u64() as u32, replica);
            let format = match i % 3 {
                0 => Format::Json,
                1 => Format::Logfmt,
                _ => Format::Plain,
            };
            LogStream {
                labels: vec![
                    ("cluster", "prod-eu-1".to_string()),
                    ("container", app.to_string()),
                    ("job", format!("{ns}/{app}")),
                    ("namespace", ns),
                    ("pod", pod),
                    ("service_name", app.to_string()),
                ],
                format,
                app: app.to_string(),
                // Zipf-like: stream i gets 1/(1 + i/10) of the weight.
                weight: 1.0 / (1.0 + (i as f64) / 10.0),
            }
        })
        .collect()
}

/// The selector form Loki push wants: `{a="x", b="y"}`.
fn selector(labels: &[(&'static str, String)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(n, v)| format!("{n}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

fn hex(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes * 2);
    while s.len() < bytes * 2 {
        s.push_str(&format!("{:016x}", rng.next_u64()));
    }
    s.truncate(bytes * 2);
    s
}

/// Generates the lines of the workload in time order, deterministically.
struct LineGen {
    streams: Vec<LogStream>,
    cumulative: Vec<f64>,
    rng: Rng,
    start_ns: i64,
    spacing_ns: f64,
    next: u64,
}

impl LineGen {
    fn new(streams: Vec<LogStream>, seed: u64, start_ns: i64, spacing_ns: f64) -> LineGen {
        let mut acc = 0.0;
        let cumulative = streams
            .iter()
            .map(|s| {
                acc += s.weight;
                acc
            })
            .collect();
        LineGen {
            streams,
            cumulative,
            rng: Rng::new(seed ^ 0x10C5),
            start_ns,
            spacing_ns,
            next: 0,
        }
    }

    fn line(&mut self) -> LogLine {
        let rng = &mut self.rng;
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let pick = rng.f64() * total;
        let stream = self
            .cumulative
            .partition_point(|c| *c <= pick)
            .min(self.streams.len() - 1);
        let ts_ns = self.start_ns + (self.next as f64 * self.spacing_ns) as i64;
        self.next += 1;
        let s = &self.streams[stream];
        let trace_id = hex(rng, 16);
        let user_id = format!("u-{:06}", rng.below(200_000));
        let route = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let method = if rng.f64() < 0.8 { "GET" } else { "POST" };
        let roll = rng.f64();
        let (level, status, msg) = if roll < 0.02 {
            (
                "error",
                500,
                "upstream request failed: context deadline exceeded",
            )
        } else if roll < 0.07 {
            ("warn", 429, "rate limited by downstream")
        } else if roll < 0.12 {
            ("debug", 200, "cache lookup")
        } else {
            ("info", 200, "request completed")
        };
        let duration_ms = (rng.f64() * rng.f64() * 800.0 * 10.0).round() / 10.0 + 0.3;
        let bytes = 200 + rng.below(20_000);
        let id = rng.below(100_000);
        let time = miru_model::civil::rfc3339_millis(ts_ns);
        let line = match s.format {
            Format::Json => format!(
                r#"{{"ts":"{time}","level":"{level}","logger":"{}.http","msg":"{msg}","method":"{method}","path":"{route}/{id}","status":{status},"duration_ms":{duration_ms},"bytes":{bytes},"trace_id":"{trace_id}","user_id":"{user_id}"}}"#,
                s.app
            ),
            Format::Logfmt => format!(
                r#"ts={time} level={level} caller=handler.go:{} msg="{msg}" method={method} path={route}/{id} status={status} duration={duration_ms}ms bytes={bytes} trace_id={trace_id} user_id={user_id}"#,
                80 + id % 200
            ),
            Format::Plain => format!(
                "{time} {:<5} [{}] {msg}: {method} {route}/{id} -> {status} in {duration_ms} ms ({bytes} bytes) trace={trace_id} user={user_id}",
                level.to_uppercase(),
                s.app
            ),
        };
        LogLine {
            stream,
            ts_ns,
            line,
            level,
            trace_id,
            user_id,
        }
    }
}

/// Sends the workload; returns a non-zero exit when nothing was accepted.
pub async fn run_logs(a: LogsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.streams > 0, "--streams must be at least 1");
    let total = a
        .common
        .units_over_span(a.lines_per_second, "--lines-per-second")?;
    let start_ns = a.common.start_ms() * 1_000_000;
    let spacing_ns = 1e9 / a.lines_per_second;
    let mut lines = LineGen::new(
        build_streams(a.streams, a.common.seed),
        a.common.seed,
        start_ns,
        spacing_ns,
    );
    let url = endpoint(
        &a.url,
        match a.protocol {
            LogsProtocol::Otlp => "http://127.0.0.1:9009/otlp/v1/logs",
            _ => "http://127.0.0.1:9009/loki/api/v1/push",
        },
    );
    let headers: Arc<Vec<(&'static str, String)>> = Arc::new(match a.protocol {
        // As Promtail and Alloy send it: the snappy block is implied.
        LogsProtocol::LokiProto => vec![("Content-Type", "application/x-protobuf".into())],
        LogsProtocol::LokiJson => vec![("Content-Type", "application/json".into())],
        LogsProtocol::Otlp => vec![("Content-Type", "application/x-protobuf".into())],
    });
    let tenant: Option<Arc<str>> = a.common.tenant.as_deref().map(Into::into);
    let client = http_client(a.common.concurrency)?;
    let mut runner = Runner::new("lines", total, &a.common);
    let mut raw_bytes = 0u64;
    let mut sent = 0u64;
    while sent < total && !runner.expired() {
        let n = (a.batch.max(1) as u64).min(total - sent);
        let batch: Vec<LogLine> = (0..n).map(|_| lines.line()).collect();
        raw_bytes += batch.iter().map(|l| l.line.len() as u64).sum::<u64>();
        sent += n;
        let body = match a.protocol {
            LogsProtocol::LokiProto => snap::raw::Encoder::new().compress_vec(&loki_proto(
                &lines.streams,
                &batch,
                a.structured_metadata,
            ))?,
            LogsProtocol::LokiJson => loki_json(&lines.streams, &batch, a.structured_metadata),
            LogsProtocol::Otlp => otlp(&lines.streams, &batch),
        };
        let bytes = body.len() as u64;
        let req = post(
            client.clone(),
            Arc::clone(&url),
            Arc::clone(&headers),
            tenant.clone(),
            body,
        );
        runner.send(n, bytes, req).await?;
    }
    runner
        .finish(serde_json::json!({
            "streams": a.streams,
            "lines": total,
            "raw_line_bytes": raw_bytes,
        }))
        .await
}

/// Entries of a batch grouped by stream, each stream's in time order.
fn by_stream(batch: &[LogLine]) -> BTreeMap<usize, Vec<&LogLine>> {
    let mut m: BTreeMap<usize, Vec<&LogLine>> = BTreeMap::new();
    for l in batch {
        m.entry(l.stream).or_default().push(l);
    }
    m
}

fn metadata(l: &LogLine) -> [(&'static str, &str); 2] {
    [("trace_id", &l.trace_id), ("user_id", &l.user_id)]
}

fn loki_proto(streams: &[LogStream], batch: &[LogLine], with_metadata: bool) -> Vec<u8> {
    push::PushRequest {
        streams: by_stream(batch)
            .into_iter()
            .map(|(s, entries)| push::Stream {
                labels: selector(&streams[s].labels),
                entries: entries
                    .into_iter()
                    .map(|l| push::Entry {
                        timestamp: Some(push::Timestamp::from_unix_nanos(l.ts_ns)),
                        line: l.line.clone(),
                        structured_metadata: if with_metadata {
                            metadata(l)
                                .iter()
                                .map(|(n, v)| push::LabelPair {
                                    name: n.to_string(),
                                    value: v.to_string(),
                                })
                                .collect()
                        } else {
                            vec![]
                        },
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    }
    .encode_to_vec()
}

fn loki_json(streams: &[LogStream], batch: &[LogLine], with_metadata: bool) -> Vec<u8> {
    let streams: Vec<serde_json::Value> = by_stream(batch)
        .into_iter()
        .map(|(s, entries)| {
            let labels: serde_json::Map<String, serde_json::Value> = streams[s]
                .labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.clone().into()))
                .collect();
            let values: Vec<serde_json::Value> = entries
                .into_iter()
                .map(|l| {
                    let mut v: Vec<serde_json::Value> =
                        vec![l.ts_ns.to_string().into(), l.line.clone().into()];
                    if with_metadata {
                        let md: serde_json::Map<String, serde_json::Value> = metadata(l)
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_string().into()))
                            .collect();
                        v.push(md.into());
                    }
                    v.into()
                })
                .collect();
            serde_json::json!({"stream": labels, "values": values})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "streams": streams })).expect("BUG: JSON of strings")
}

/// One resource per container, with the Kubernetes resource attributes the
/// Collector's k8sattributes processor sets; trace ids as log record fields.
fn otlp(streams: &[LogStream], batch: &[LogLine]) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: by_stream(batch)
            .into_iter()
            .map(|(s, entries)| {
                let st = &streams[s];
                let label = |n: &str| {
                    st.labels
                        .iter()
                        .find(|l| l.0 == n)
                        .map(|l| l.1.as_str())
                        .unwrap_or("")
                };
                ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", &st.app),
                            kv("k8s.cluster.name", label("cluster")),
                            kv("k8s.namespace.name", label("namespace")),
                            kv("k8s.pod.name", label("pod")),
                            kv("k8s.container.name", label("container")),
                        ],
                        ..Default::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records: entries
                            .into_iter()
                            .map(|l| LogRecord {
                                time_unix_nano: l.ts_ns as u64,
                                observed_time_unix_nano: l.ts_ns as u64,
                                severity_number: match l.level {
                                    "debug" => 5,
                                    "info" => 9,
                                    "warn" => 13,
                                    _ => 17,
                                },
                                severity_text: l.level.to_uppercase(),
                                body: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue(l.line.clone())),
                                }),
                                attributes: vec![kv("user_id", &l.user_id)],
                                trace_id: (0..16)
                                    .map(|i| {
                                        u8::from_str_radix(&l.trace_id[2 * i..2 * i + 2], 16)
                                            .unwrap_or(0)
                                    })
                                    .collect(),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }
            })
            .collect(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_deterministic_time_ordered_and_varied() {
        let make = || LineGen::new(build_streams(30, 4), 4, 1_000, 1e7);
        let (mut a, mut b) = (make(), make());
        let la: Vec<LogLine> = (0..2000).map(|_| a.line()).collect();
        let lb: Vec<LogLine> = (0..2000).map(|_| b.line()).collect();
        assert!(
            la.iter()
                .zip(&lb)
                .all(|(x, y)| x.line == y.line && x.ts_ns == y.ts_ns)
        );
        assert!(la.windows(2).all(|w| w[0].ts_ns < w[1].ts_ns));
        let streams: std::collections::BTreeSet<_> = la.iter().map(|l| l.stream).collect();
        assert!(streams.len() >= 25, "{}", streams.len());
        // Each format appears, each line carries its trace id.
        assert!(la.iter().any(|l| l.line.starts_with('{')));
        assert!(la.iter().any(|l| l.line.starts_with("ts=")));
        assert!(la.iter().any(|l| l.line.contains(" -> ")));
        assert!(
            la.iter()
                .all(|l| l.line.contains(&l.trace_id) && l.trace_id.len() == 32)
        );
        let errors = la.iter().filter(|l| l.level == "error").count();
        assert!((10..100).contains(&errors), "{errors}");
    }

    #[test]
    fn loki_bodies_group_entries_by_stream() {
        let mut g = LineGen::new(build_streams(5, 1), 1, 0, 1e6);
        let batch: Vec<LogLine> = (0..50).map(|_| g.line()).collect();
        let req = push::PushRequest::decode(&loki_proto(&g.streams, &batch, true)[..]).unwrap();
        assert_eq!(
            req.streams.iter().map(|s| s.entries.len()).sum::<usize>(),
            50
        );
        for s in &req.streams {
            assert!(
                s.labels.starts_with("{cluster=\"prod-eu-1\", container="),
                "{}",
                s.labels
            );
            let ts = |e: &push::Entry| e.timestamp.unwrap().unix_nanos();
            assert!(s.entries.windows(2).all(|w| ts(&w[0]) < ts(&w[1])));
            assert_eq!(s.entries[0].structured_metadata[0].name, "trace_id");
        }
        let json: serde_json::Value =
            serde_json::from_slice(&loki_json(&g.streams, &batch, false)).unwrap();
        let n: usize = json["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum();
        assert_eq!(n, 50);
        let otlp = ExportLogsServiceRequest::decode(&otlp(&g.streams, &batch)[..]).unwrap();
        let records: usize = otlp
            .resource_logs
            .iter()
            .map(|r| r.scope_logs[0].log_records.len())
            .sum();
        assert_eq!(records, 50);
    }
}
