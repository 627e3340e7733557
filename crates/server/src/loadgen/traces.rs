//! `miru loadgen traces`: requests through a microservice shop (gateway,
//! auth, cart, orders, payments, inventory, search, recommendations, with
//! Postgres, Redis and Kafka calls) as OTLP spans: a client span in the
//! caller and a server span in the callee for every hop, semantic-convention
//! attributes, errors that propagate to the root with exception events.
//! Sent over OTLP/HTTP (protobuf) or OTLP/gRPC.

use std::collections::BTreeMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;

use super::workload::Rng;
use super::{CommonArgs, Outcome, Runner, endpoint, http_client, otlp_kv as kv, post};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TracesProtocol {
    /// OTLP/HTTP, binary protobuf.
    OtlpHttp,
    /// OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
    OtlpGrpc,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TracesArgs {
    /// Endpoint [default: http://127.0.0.1:9009/otlp/v1/traces, or
    /// http://127.0.0.1:4317 with `--protocol otlp-grpc`].
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, value_enum, default_value = "otlp-http")]
    pub protocol: TracesProtocol,
    /// Traces (user requests) per second of data time (total: this × `--span`).
    #[arg(long, default_value_t = 10.0)]
    pub traces_per_second: f64,
    /// Spans per request, whole traces (a request holds at least one trace).
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Share of requests where one downstream call fails.
    #[arg(long, default_value_t = 0.02)]
    pub error_rate: f64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A step of a request's path through the system.
#[derive(Clone, Copy)]
enum Call {
    /// An HTTP call to another service: client span here, server span there.
    Http {
        service: &'static str,
        method: &'static str,
        route: &'static str,
        /// Work done in the callee, in sequence.
        then: &'static [Call],
        /// How many times it repeats (1..=max), e.g. once per cart item.
        max_repeat: u64,
    },
    /// A database or cache call: one client span.
    Db {
        system: &'static str,
        operation: &'static str,
        table: &'static str,
    },
    /// Publishing to a queue: one producer span.
    Publish { topic: &'static str },
}

const fn http(
    service: &'static str,
    method: &'static str,
    route: &'static str,
    then: &'static [Call],
) -> Call {
    Call::Http {
        service,
        method,
        route,
        then,
        max_repeat: 1,
    }
}

const fn db(system: &'static str, operation: &'static str, table: &'static str) -> Call {
    Call::Db {
        system,
        operation,
        table,
    }
}

const AUTH: Call = http("auth", "GET", "/verify", &[db("redis", "GET", "sessions")]);
const CART_ITEM: Call = Call::Http {
    service: "inventory",
    method: "GET",
    route: "/items/{id}",
    then: &[db("postgresql", "SELECT", "items")],
    max_repeat: 6,
};

/// Entry points at the gateway and what each does downstream.
const ENDPOINTS: [(&str, &str, &[Call]); 4] = [
    (
        "POST",
        "/api/checkout",
        &[
            AUTH,
            http(
                "cart",
                "GET",
                "/cart/{user}",
                &[db("redis", "HGETALL", "carts"), CART_ITEM],
            ),
            http(
                "orders",
                "POST",
                "/orders",
                &[
                    db("postgresql", "INSERT", "orders"),
                    http(
                        "payments",
                        "POST",
                        "/charge",
                        &[
                            db("postgresql", "SELECT", "accounts"),
                            db("postgresql", "UPDATE", "accounts"),
                        ],
                    ),
                    Call::Publish {
                        topic: "orders.created",
                    },
                ],
            ),
        ],
    ),
    (
        "GET",
        "/api/products/{id}",
        &[
            http(
                "inventory",
                "GET",
                "/items/{id}",
                &[
                    db("redis", "GET", "items"),
                    db("postgresql", "SELECT", "items"),
                ],
            ),
            http(
                "recommendations",
                "GET",
                "/similar/{id}",
                &[db("redis", "ZRANGE", "similar")],
            ),
        ],
    ),
    (
        "GET",
        "/api/search",
        &[http(
            "search",
            "GET",
            "/search",
            &[db("elasticsearch", "search", "products"), CART_ITEM],
        )],
    ),
    (
        "GET",
        "/api/cart",
        &[
            AUTH,
            http(
                "cart",
                "GET",
                "/cart/{user}",
                &[db("redis", "HGETALL", "carts")],
            ),
        ],
    ),
];

/// Builds traces deterministically; spans are grouped by the service that emits them.
struct TraceGen {
    rng: Rng,
    error_rate: f64,
}

/// Spans of one trace, with the service each belongs to.
type TraceSpans = Vec<(&'static str, Span)>;

impl TraceGen {
    fn trace(&mut self, start_ns: u64) -> TraceSpans {
        let trace_id: Vec<u8> = [self.rng.next_u64(), self.rng.next_u64()]
            .iter()
            .flat_map(|x| x.to_be_bytes())
            .collect();
        let (method, route, calls) = ENDPOINTS[self.rng.below(ENDPOINTS.len() as u64) as usize];
        let fail = self.rng.f64() < self.error_rate;
        let mut out = Vec::new();
        let root = Call::Http {
            service: "api-gateway",
            method,
            route,
            then: calls,
            max_repeat: 1,
        };
        // The root has no client span: the user's browser is not traced.
        self.server(&mut out, &trace_id, &[], root, start_ns, fail);
        out
    }

    fn span_id(&mut self) -> Vec<u8> {
        self.rng.next_u64().to_be_bytes().to_vec()
    }

    /// Emits the server span of `call` and its subtree; returns (end, failed).
    fn server(
        &mut self,
        out: &mut TraceSpans,
        trace_id: &[u8],
        parent: &[u8],
        call: Call,
        start: u64,
        fail: bool,
    ) -> (u64, bool) {
        let Call::Http {
            service,
            method,
            route,
            then,
            ..
        } = call
        else {
            unreachable!("server spans are HTTP calls")
        };
        let id = self.span_id();
        let mut t = start + 50_000 + self.rng.below(200_000);
        // A failing request fails in one of its calls, chosen here.
        let failing = if fail && !then.is_empty() {
            Some(self.rng.below(then.len() as u64) as usize)
        } else {
            None
        };
        let mut failed = fail && then.is_empty();
        for (i, c) in then.iter().enumerate() {
            let repeat = match c {
                Call::Http { max_repeat, .. } => 1 + self.rng.below(*max_repeat),
                _ => 1,
            };
            for r in 0..repeat {
                let f = failing == Some(i) && r == 0;
                let (end, child_failed) = self.client(out, trace_id, &id, *c, t, service, f);
                failed |= child_failed;
                t = end + 20_000 + self.rng.below(100_000);
            }
        }
        let end = t + 30_000 + self.rng.below(300_000);
        let status_code: i64 = if failed {
            500
        } else if method == "POST" {
            201
        } else {
            200
        };
        let mut attributes = vec![
            kv("http.request.method", method),
            kv("http.route", route),
            kv(
                "url.path",
                route
                    .replace("{id}", &self.rng.below(50_000).to_string())
                    .replace("{user}", &format!("u-{:06}", self.rng.below(200_000))),
            ),
            kv("http.response.status_code", status_code),
            kv("url.scheme", "http"),
            kv("server.port", 8080i64),
        ];
        if service == "api-gateway" {
            attributes.push(kv(
                "enduser.id",
                format!("u-{:06}", self.rng.below(200_000)),
            ));
            attributes.push(kv(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0",
            ));
        }
        out.push((
            service,
            Span {
                trace_id: trace_id.to_vec(),
                span_id: id,
                parent_span_id: parent.to_vec(),
                name: format!("{method} {route}"),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: failed.then(|| Status {
                    message: String::new(),
                    code: status::StatusCode::Error as i32,
                }),
                ..Default::default()
            },
        ));
        (end, failed)
    }

    /// Emits the caller's span for `call` (and, for HTTP, the callee's subtree).
    #[allow(clippy::too_many_arguments)]
    fn client(
        &mut self,
        out: &mut TraceSpans,
        trace_id: &[u8],
        parent: &[u8],
        call: Call,
        start: u64,
        caller: &'static str,
        fail: bool,
    ) -> (u64, bool) {
        let id = self.span_id();
        let (name, kind, attributes, end, failed) = match call {
            Call::Http {
                service,
                method,
                route,
                ..
            } => {
                let (end, failed) = self.server(out, trace_id, &id, call, start + 100_000, fail);
                let code: i64 = if failed { 500 } else { 200 };
                let attrs = vec![
                    kv("http.request.method", method),
                    kv("server.address", service),
                    kv("server.port", 8080i64),
                    kv("url.full", format!("http://{service}:8080{route}")),
                    kv("http.response.status_code", code),
                ];
                (
                    method.to_string(),
                    span::SpanKind::Client,
                    attrs,
                    end + 80_000,
                    failed,
                )
            }
            Call::Db {
                system,
                operation,
                table,
            } => {
                let took = 150_000 + (self.rng.f64() * self.rng.f64() * 20e6) as u64;
                let statement = match system {
                    "postgresql" => format!("{operation} * FROM {table} WHERE id = $1"),
                    _ => format!("{operation} {table}:?"),
                };
                let attrs = vec![
                    kv("db.system", system),
                    kv("db.operation.name", operation),
                    kv("db.collection.name", table),
                    kv("db.query.text", statement),
                    kv("server.address", format!("{system}.data.svc")),
                ];
                (
                    format!("{operation} {table}"),
                    span::SpanKind::Client,
                    attrs,
                    start + took,
                    fail,
                )
            }
            Call::Publish { topic } => {
                let attrs = vec![
                    kv("messaging.system", "kafka"),
                    kv("messaging.destination.name", topic),
                    kv("messaging.operation.type", "publish"),
                ];
                (
                    format!("publish {topic}"),
                    span::SpanKind::Producer,
                    attrs,
                    start + 400_000 + self.rng.below(2_000_000),
                    fail,
                )
            }
        };
        let events = if fail && !matches!(call, Call::Http { .. }) {
            vec![span::Event {
                time_unix_nano: end,
                name: "exception".into(),
                attributes: vec![
                    kv("exception.type", "TimeoutError"),
                    kv(
                        "exception.message",
                        format!(
                            "{name}: deadline exceeded after {} ms",
                            (end - start) / 1_000_000
                        ),
                    ),
                ],
                dropped_attributes_count: 0,
            }]
        } else {
            vec![]
        };
        out.push((
            caller,
            Span {
                trace_id: trace_id.to_vec(),
                span_id: id,
                parent_span_id: parent.to_vec(),
                name,
                kind: kind as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                events,
                status: failed.then(|| Status {
                    message: "deadline exceeded".into(),
                    code: status::StatusCode::Error as i32,
                }),
                ..Default::default()
            },
        ));
        (end, failed)
    }
}

/// One OTLP request of whole traces: a resource per service.
fn request(traces: Vec<TraceSpans>) -> ExportTraceServiceRequest {
    let mut by_service: BTreeMap<&'static str, Vec<Span>> = BTreeMap::new();
    for (service, span) in traces.into_iter().flatten() {
        by_service.entry(service).or_default().push(span);
    }
    ExportTraceServiceRequest {
        resource_spans: by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", service),
                        kv("service.namespace", "shop"),
                        kv("service.version", "1.14.2"),
                        kv("deployment.environment.name", "production"),
                        kv("k8s.namespace.name", "shop"),
                        kv("k8s.pod.name", format!("{service}-6d8f7c9b5-x2k4q")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "io.opentelemetry.http".into(),
                        version: "2.10.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Sends the workload; returns a non-zero exit when nothing was accepted.
pub async fn run_traces(a: TracesArgs) -> anyhow::Result<()> {
    let total = a
        .common
        .units_over_span(a.traces_per_second, "--traces-per-second")?;
    let start_ns = a.common.start_ms().max(0) as u64 * 1_000_000;
    let spacing_ns = 1e9 / a.traces_per_second;
    let mut traces = TraceGen {
        rng: Rng::new(a.common.seed ^ 0x7ACE),
        error_rate: a.error_rate,
    };
    let tenant: Option<Arc<str>> = a.common.tenant.as_deref().map(Into::into);
    let url = endpoint(
        &a.url,
        match a.protocol {
            TracesProtocol::OtlpGrpc => "http://127.0.0.1:4317",
            TracesProtocol::OtlpHttp => "http://127.0.0.1:9009/otlp/v1/traces",
        },
    );
    let client = http_client(a.common.concurrency)?;
    let grpc = match a.protocol {
        TracesProtocol::OtlpGrpc => Some(
            TraceServiceClient::connect(url.to_string())
                .await
                .map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))?,
        ),
        TracesProtocol::OtlpHttp => None,
    };
    let headers: Arc<Vec<(&'static str, String)>> =
        Arc::new(vec![("Content-Type", "application/x-protobuf".into())]);
    // The total number of spans is known only as traces are made: the bar
    // counts traces, the summary spans.
    let mut runner = Runner::new("spans", 0, &a.common);
    let (mut made, mut spans_total, mut errors) = (0u64, 0u64, 0u64);
    while made < total && !runner.expired() {
        let mut batch = Vec::new();
        let mut spans = 0u64;
        while made < total && (spans as usize) < a.batch.max(1) {
            let t = traces.trace(start_ns + (made as f64 * spacing_ns) as u64);
            errors += u64::from(
                t.iter()
                    .any(|(_, s)| s.parent_span_id.is_empty() && s.status.is_some()),
            );
            spans += t.len() as u64;
            batch.push(t);
            made += 1;
        }
        spans_total += spans;
        runner.set_total(spans_total * total / made.max(1));
        let req = request(batch);
        let bytes = req.encoded_len() as u64;
        match &grpc {
            Some(client) => {
                let (mut client, tenant) = (client.clone(), tenant.clone());
                runner
                    .send(spans, bytes, async move {
                        let mut r = tonic::Request::new(req);
                        if let Some(t) = tenant.as_deref().and_then(|t| t.parse().ok()) {
                            r.metadata_mut().insert("x-scope-orgid", t);
                        }
                        match client.export(r).await {
                            Ok(_) => Outcome::Accepted,
                            Err(s) => {
                                Outcome::Rejected(format!("grpc {:?} {}", s.code(), s.message()))
                            }
                        }
                    })
                    .await?;
            }
            None => {
                let req = post(
                    client.clone(),
                    Arc::clone(&url),
                    Arc::clone(&headers),
                    tenant.clone(),
                    req.encode_to_vec(),
                );
                runner.send(spans, bytes, req).await?;
            }
        }
    }
    runner
        .finish(serde_json::json!({"traces": made, "failed_traces": errors, "spans": spans_total}))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value;

    fn generator(seed: u64, error_rate: f64) -> TraceGen {
        TraceGen {
            rng: Rng::new(seed),
            error_rate,
        }
    }

    #[test]
    fn traces_are_well_formed_trees() {
        let mut g = generator(3, 0.1);
        let mut sizes = Vec::new();
        for i in 0..500 {
            let t = g.trace(1_000_000_000 * i);
            sizes.push(t.len());
            let ids: std::collections::HashMap<&[u8], &Span> =
                t.iter().map(|(_, s)| (&s.span_id[..], s)).collect();
            assert_eq!(ids.len(), t.len(), "span ids unique");
            let roots: Vec<_> = t
                .iter()
                .filter(|(_, s)| s.parent_span_id.is_empty())
                .collect();
            assert_eq!(roots.len(), 1);
            assert_eq!(roots[0].0, "api-gateway");
            for (_, s) in &t {
                assert_eq!(s.trace_id, roots[0].1.trace_id);
                assert!(s.start_time_unix_nano < s.end_time_unix_nano);
                if let Some(p) = ids.get(&s.parent_span_id[..]) {
                    // Children lie within their parent.
                    assert!(p.start_time_unix_nano <= s.start_time_unix_nano);
                    assert!(
                        s.end_time_unix_nano <= p.end_time_unix_nano,
                        "{} in {}",
                        s.name,
                        p.name
                    );
                    // An error under a span makes the span an error too.
                    if s.status.is_some() {
                        assert!(
                            p.status.is_some(),
                            "{} failed, parent {} not",
                            s.name,
                            p.name
                        );
                    }
                } else {
                    assert!(s.parent_span_id.is_empty(), "dangling parent");
                }
            }
        }
        let min = *sizes.iter().min().unwrap();
        let max = *sizes.iter().max().unwrap();
        assert!(min >= 5 && max >= 20, "span counts {min}..{max}");
        // The README states the range the call graph allows: 7 to 33.
        assert!(min >= 7 && max <= 33, "span counts {min}..{max}");
        let failed = (0..500)
            .map(|i| g.trace(i))
            .filter(|t| {
                t.iter()
                    .any(|(_, s)| s.parent_span_id.is_empty() && s.status.is_some())
            })
            .count();
        assert!((20..90).contains(&failed), "{failed} failed traces");
    }

    #[test]
    fn deterministic_and_grouped_by_service() {
        let a: Vec<_> = (0..20).map(|i| generator(5, 0.02).trace(i)).collect();
        let b: Vec<_> = (0..20).map(|i| generator(5, 0.02).trace(i)).collect();
        assert_eq!(
            request(a.clone()).encode_to_vec(),
            request(b).encode_to_vec()
        );
        let req = request(a);
        let services: Vec<String> = req
            .resource_spans
            .iter()
            .map(|r| {
                match &r.resource.as_ref().unwrap().attributes[0]
                    .value
                    .as_ref()
                    .unwrap()
                    .value
                {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => panic!(),
                }
            })
            .collect();
        assert!(services.contains(&"api-gateway".to_string()));
        let mut sorted = services.clone();
        sorted.dedup();
        assert_eq!(sorted, services, "one resource per service");
    }
}
