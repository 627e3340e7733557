//! The Loki HTTP API: push (`/loki/api/v1/push`), LogQL queries
//! (`query`, `query_range`) and the label/series endpoints Grafana's Loki
//! data source calls, with Loki's response shapes, time parameters
//! (Unix seconds, nanoseconds or RFC 3339) and plain-text errors.

// Helpers return a ready error `Response` as their `Err`, the axum idiom.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use miru_logql::syntax::ast::Expr;
use miru_logql::{Direction, LogQuery, QueryError, Value as LogValue};
use miru_model::{ErrorKind, Labels, Matcher, TenantId};
use serde_json::{Value, json};

use super::ingest::{header_str, read_body, tenant_of, tenant_status};
use super::params::Params;
use super::prom::{format_value as sample_value, labels_json};
use super::text_error;
use crate::app::App;
use crate::logql::{LogQlError, LogQlKind, ReadStats};
use crate::pipeline::{IngestStatus, ingest_logs};
use crate::tenant::{ORG_ID_HEADER, read_tenants};

const MAX_FORM_BYTES: usize = 1 << 20;
/// Loki's default `limit` of log queries.
const DEFAULT_LIMIT: usize = 100;
const NS_PER_S: i64 = 1_000_000_000;

/// `POST /loki/api/v1/push`: 204 once every accepted entry is in the WAL.
pub(super) async fn push(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let tenant = match tenant_of(&app, &headers) {
        Ok(t) => t,
        Err(e) => return text_error(tenant_status(&e), e.to_string()),
    };
    let limit = app.limits.for_tenant(&tenant).max_request_body_bytes;
    let raw = match read_body(body, limit).await {
        Ok(b) => b,
        Err((status, msg)) => return text_error(status, msg),
    };
    let streams = match miru_ingest::loki::decode_push(
        &raw,
        header_str(&headers, header::CONTENT_TYPE),
        header_str(&headers, header::CONTENT_ENCODING),
        limit,
    ) {
        Ok(s) => s,
        Err(e) => {
            let status = if e.kind() == ErrorKind::TooLarge {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return text_error(status, e.to_string());
        }
    };
    let out = ingest_logs(&app, &tenant, streams).await;
    match out.status {
        IngestStatus::Ok => StatusCode::NO_CONTENT.into_response(),
        IngestStatus::BadData => {
            text_error(StatusCode::BAD_REQUEST, out.message.unwrap_or_default())
        }
        IngestStatus::Limited => text_error(
            StatusCode::TOO_MANY_REQUESTS,
            out.message.unwrap_or_default(),
        ),
        IngestStatus::Unavailable => text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            out.message.unwrap_or_default(),
        ),
    }
}

/// A read request: its single tenant and its parameters.
pub(super) struct LokiRequest {
    pub(super) tenant: TenantId,
    pub(super) params: Params,
}

pub(super) async fn loki_request(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    query: Option<String>,
    body: Body,
) -> Result<LokiRequest, Response> {
    let tenants = read_tenants(&app.cfg.tenancy, header_str(headers, ORG_ID_HEADER))
        .map_err(|e| text_error(tenant_status(&e), e.to_string()))?;
    let [tenant] = <[TenantId; 1]>::try_from(tenants).map_err(|_| {
        text_error(
            StatusCode::BAD_REQUEST,
            "queries across several tenants are not supported for logs yet",
        )
    })?;
    let is_form = header_str(headers, header::CONTENT_TYPE)
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let form =
        if method == Method::POST && is_form {
            Some(to_bytes(body, MAX_FORM_BYTES).await.map_err(|e| {
                text_error(StatusCode::BAD_REQUEST, format!("reading form body: {e}"))
            })?)
        } else {
            None
        };
    Ok(LokiRequest {
        tenant,
        params: Params::parse(query.as_deref(), form.as_deref()),
    })
}

/// Runs a read handler: tenant and parameters from the request, then `f`,
/// whose error is a ready response.
pub(super) async fn serve_read<F>(
    app: Arc<App>,
    method: Method,
    headers: HeaderMap,
    q: Option<String>,
    body: Body,
    f: F,
) -> Response
where
    F: AsyncFnOnce(&App, &LokiRequest, &HeaderMap) -> Result<Response, Response>,
{
    match loki_request(&app, &method, &headers, q, body).await {
        Ok(req) => f(&app, &req, &headers).await.unwrap_or_else(|r| r),
        Err(r) => r,
    }
}

pub(super) fn bad(msg: impl Into<String>) -> Response {
    text_error(StatusCode::BAD_REQUEST, msg)
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A Loki time parameter: float seconds (`1700000000.5`), an integer of at
/// most 10 digits as seconds, a longer one as nanoseconds, or RFC 3339.
pub(crate) fn parse_loki_time_ns(s: &str) -> Result<i64, String> {
    if s.contains('.')
        && let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1e9).round() as i64);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(if s.trim_start_matches('-').len() <= 10 {
            n.saturating_mul(NS_PER_S)
        } else {
            n
        });
    }
    super::params::parse_time_ms(s)
        .map(|ms| ms.saturating_mul(1_000_000))
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, Response> {
    p.get(name)
        .map_or(Ok(default), parse_loki_time_ns)
        .map_err(|e| bad(format!("invalid parameter \"{name}\": {e}")))
}

/// `start`/`end` with Loki's defaults (the last hour); start after end is
/// an error.
pub(super) fn range_params(p: &Params) -> Result<(i64, i64), Response> {
    let end = time_param(p, "end", now_ns())?;
    let start = time_param(p, "start", end - 3600 * NS_PER_S)?;
    if end < start {
        return Err(bad(
            "end timestamp must not be before or equal to start time",
        ));
    }
    Ok((start, end))
}

fn limit_param(p: &Params) -> Result<usize, Response> {
    match p.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => s
            .parse::<usize>()
            .map_err(|_| bad(format!("invalid parameter \"limit\": cannot parse {s:?}"))),
    }
}

fn direction_param(p: &Params) -> Result<Direction, Response> {
    match p.get("direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(Direction::Backward),
        Some("forward") => Ok(Direction::Forward),
        Some(other) => Err(bad(format!(
            "invalid parameter \"direction\": {other:?} is not forward or backward"
        ))),
    }
}

/// `step` as a duration (`15s`) or float seconds; Loki's default keeps a
/// range query near 250 points.
pub(super) fn step_param(p: &Params, start: i64, end: i64) -> Result<i64, Response> {
    let step = match p.get("step") {
        Some(s) => {
            let d = super::params::parse_duration_param(s)
                .map_err(|e| bad(format!("invalid parameter \"step\": {e}")))?;
            d.as_nanos().min(i64::MAX as u128) as i64
        }
        None => ((end - start) as f64 / 250.0 / 1e9).ceil().max(1.0) as i64 * NS_PER_S,
    };
    if step <= 0 {
        return Err(bad(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    Ok(step)
}

pub(super) fn query_param(p: &Params) -> Result<String, Response> {
    p.get("query")
        .map(str::to_string)
        .ok_or_else(|| bad("query parameter is required"))
}

fn parse_query(q: &str) -> Result<Expr, Response> {
    miru_logql::parse(q).map_err(|e| bad(e.to_string()))
}

pub(super) fn seconds(t_ns: i64) -> Value {
    json!(t_ns as f64 / 1e9)
}

/// Whether the client asked for structured metadata and parsed labels
/// apart from stream labels (Grafana 10.4+ does).
pub(super) fn categorize_labels(h: &HeaderMap) -> bool {
    header_str(h, "x-loki-response-encoding-flags")
        .is_some_and(|v| v.split(',').any(|f| f.trim() == "categorize-labels"))
}

pub(super) fn result_json(v: &LogValue, categorize: bool) -> (&'static str, Value) {
    match v {
        LogValue::Streams(streams) => {
            let mut out = Vec::new();
            if categorize {
                // One stream per stream label set; the rest rides along
                // with each entry.
                let mut by_stream: Vec<(Labels, Vec<Value>)> = Vec::new();
                for s in streams {
                    for e in &s.entries {
                        let mut extra = serde_json::Map::new();
                        if !e.structured_metadata.is_empty() {
                            extra.insert("structuredMetadata".into(), labels_json(&e.structured_metadata));
                        }
                        if !e.parsed.is_empty() {
                            extra.insert("parsed".into(), labels_json(&e.parsed));
                        }
                        let value = json!([e.timestamp_ns.to_string(), e.line, Value::Object(extra)]);
                        match by_stream.iter_mut().find(|(l, _)| *l == e.stream_labels) {
                            Some((_, v)) => v.push(value),
                            None => by_stream.push((e.stream_labels.clone(), vec![value])),
                        }
                    }
                }
                for (l, values) in by_stream {
                    out.push(json!({"stream": labels_json(&l), "values": values}));
                }
            } else {
                for s in streams {
                    let values: Vec<Value> = s
                        .entries
                        .iter()
                        .map(|e| json!([e.timestamp_ns.to_string(), e.line]))
                        .collect();
                    out.push(json!({"stream": labels_json(&s.labels), "values": values}));
                }
            }
            ("streams", Value::Array(out))
        }
        LogValue::Vector(v) => (
            "vector",
            Value::Array(
                v.iter()
                    .map(|s| json!({"metric": labels_json(&s.labels), "value": [seconds(s.t_ns), sample_value(s.v)]}))
                    .collect(),
            ),
        ),
        LogValue::Matrix(m) => (
            "matrix",
            Value::Array(
                m.iter()
                    .map(|s| {
                        let values: Vec<Value> = s
                            .points
                            .iter()
                            .map(|(t, v)| json!([seconds(*t), sample_value(*v)]))
                            .collect();
                        json!({"metric": labels_json(&s.labels), "values": values})
                    })
                    .collect(),
            ),
        ),
        LogValue::Scalar { t_ns, v } => ("scalar", json!([seconds(*t_ns), sample_value(*v)])),
    }
}

/// `data.stats` with Loki's summary fields (what Grafana shows) and what
/// miru's part pruning skipped: whole parts (by key and stream table),
/// rows (by block filters) and bytes (only the pages of the rows read are
/// fetched).
fn stats_json(s: &ReadStats, returned: usize) -> Value {
    let per_s = |n: u64| {
        if s.exec_seconds > 0.0 {
            (n as f64 / s.exec_seconds) as u64
        } else {
            0
        }
    };
    json!({
        "summary": {
            "bytesProcessedPerSecond": per_s(s.line_bytes),
            "linesProcessedPerSecond": per_s(s.entries),
            "totalBytesProcessed": s.line_bytes,
            "totalLinesProcessed": s.entries,
            "execTime": s.exec_seconds,
            "queueTime": 0.0,
            "subqueries": 0,
            "totalEntriesReturned": returned,
            "splits": 0,
            "shards": 0,
            "totalPostFilterLines": s.entries,
            "totalStructuredMetadataBytesProcessed": 0
        },
        "miru": {
            "partsOverlapping": s.parts_overlapping,
            "partsRead": s.parts_read,
            "partsSkipped": s.parts_overlapping.saturating_sub(s.parts_read),
            "partBytes": s.part_bytes,
            "partBytesFetched": s.part_bytes_fetched,
            "partBytesSkippedFraction": if s.part_bytes > 0 {
                1.0 - (s.part_bytes_fetched as f64 / s.part_bytes as f64).min(1.0)
            } else {
                0.0
            },
            "partRows": s.part_rows,
            "partRowsSkippedByBlockFilters": s.part_rows_skipped
        }
    })
}

pub(super) fn error_response(e: LogQlError) -> Response {
    match e {
        LogQlError::Timeout(d) => text_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("query timed out after {}s (query.timeout)", d.as_secs()),
        ),
        LogQlError::Busy(msg) => text_error(StatusCode::SERVICE_UNAVAILABLE, msg),
        LogQlError::Query(e) => {
            let status = match e.kind() {
                ErrorKind::BadData => StatusCode::BAD_REQUEST,
                ErrorKind::Limited => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let msg = match &e {
                QueryError::TooManySeries { limit } => format!("{e} (query.max_series={limit})"),
                QueryError::TooManySamples { limit } => format!("{e} (query.max_samples={limit})"),
                _ => e.to_string(),
            };
            text_error(status, msg)
        }
    }
}

async fn run(
    app: &App,
    req: &LokiRequest,
    headers: &HeaderMap,
    query: &str,
    kind: LogQlKind,
) -> Response {
    match app
        .logql
        .run(&app.query, &app.storage, &req.tenant, query, kind)
        .await
    {
        Err(e) => error_response(e),
        Ok((value, stats)) => {
            let returned = match &value {
                LogValue::Streams(s) => s.iter().map(|s| s.entries.len()).sum(),
                _ => 0,
            };
            let (kind, result) = result_json(&value, categorize_labels(headers));
            let mut data = json!({"resultType": kind, "result": result, "stats": stats_json(&stats, returned)});
            if categorize_labels(headers) && kind == "streams" {
                data["encodingFlags"] = json!(["categorize-labels"]);
            }
            axum::Json(json!({"status": "success", "data": data})).into_response()
        }
    }
}

/// `GET|POST /loki/api/v1/query`: metric queries at one time.
pub(super) async fn query(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_read(app, method, headers, q, body, async |app, req, headers| {
        let query = query_param(&req.params)?;
        let t = time_param(&req.params, "time", now_ns())?;
        let kind = match parse_query(&query)? {
            Expr::Log(_) => {
                return Err(bad(
                    "log queries are not supported as an instant query type, please change your query to a range query type",
                ));
            }
            Expr::Metric(_) => LogQlKind::Instant { t_ns: t },
        };
        Ok(run(app, req, headers, &query, kind).await)
    })
    .await
}

/// `GET|POST /loki/api/v1/query_range`: log queries (streams) and metric
/// queries (matrix) over a range.
pub(super) async fn query_range(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_read(app, method, headers, q, body, async |app, req, headers| {
        let query = query_param(&req.params)?;
        let (start, end) = range_params(&req.params)?;
        let kind = match parse_query(&query)? {
            Expr::Log(_) => LogQlKind::Logs(LogQuery {
                start_ns: start,
                end_ns: end,
                limit: limit_param(&req.params)?,
                direction: direction_param(&req.params)?,
            }),
            Expr::Metric(_) => LogQlKind::Range {
                start_ns: start,
                end_ns: end,
                step_ns: step_param(&req.params, start, end)?,
            },
        };
        Ok(run(app, req, headers, &query, kind).await)
    })
    .await
}

/// The matchers of a stream selector parameter (`query` or `match[]`).
pub(super) fn selector(s: &str) -> Result<Vec<Matcher>, Response> {
    match parse_query(s)? {
        Expr::Log(l) => Ok(l.matchers),
        Expr::Metric(_) => Err(bad(format!("{s:?} is not a stream selector"))),
    }
}

async fn streams_for(
    app: &App,
    req: &LokiRequest,
    selectors: &[Vec<Matcher>],
) -> Result<Vec<Labels>, Response> {
    let (start, end) = range_params(&req.params)?;
    let mut out = Vec::new();
    for m in selectors {
        let got = app
            .storage
            .log_streams(&req.tenant, m, start, end.saturating_add(1))
            .await
            .map_err(|e| text_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        out.extend(got);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn selectors_from(p: &Params, key: &str) -> Result<Vec<Vec<Matcher>>, Response> {
    let raw: Vec<&String> = p.all(key).iter().filter(|s| !s.is_empty()).collect();
    if raw.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    raw.into_iter().map(|s| selector(s)).collect()
}

/// `GET|POST /loki/api/v1/labels`: label names of the streams in range.
pub(super) async fn labels(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let streams = streams_for(app, req, &selectors_from(&req.params, "query")?).await?;
        let mut names: Vec<String> = streams
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.to_string()))
            .collect();
        names.sort();
        names.dedup();
        Ok(axum::Json(json!({"status": "success", "data": names})).into_response())
    })
    .await
}

/// `GET|POST /loki/api/v1/label/{name}/values`.
pub(super) async fn label_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let streams = streams_for(app, req, &selectors_from(&req.params, "query")?).await?;
        let mut values: Vec<String> = streams
            .iter()
            .filter_map(|l| l.get(&name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(axum::Json(json!({"status": "success", "data": values})).into_response())
    })
    .await
}

/// `GET|POST /loki/api/v1/series`: label sets of the streams matching
/// any `match[]` selector.
pub(super) async fn series(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let mut sel = selectors_from(&req.params, "match[]")?;
        if req.params.all("match[]").iter().all(String::is_empty) {
            sel = selectors_from(&req.params, "match")?;
        }
        let streams = streams_for(app, req, &sel).await?;
        let data: Vec<Value> = streams.iter().map(labels_json).collect();
        Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
    })
    .await
}
