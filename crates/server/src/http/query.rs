//! PromQL endpoints of the Prometheus HTTP API: `query`, `query_range`,
//! `query_exemplars`, `format_query` and `parse_query`, with Prometheus'
//! envelope, value encoding, annotations and error codes.

// Helpers return a ready error `Response` as their `Err`, the axum idiom.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use miru_model::Labels;
use miru_promql::{QueryError, QueryResult};
use serde_json::{Value, json};

use super::params::{parse_duration_param, selector_matchers};
use super::prom::{
    ReadRequest, api_error, bad, format_value, labels_json, range, read_request, success,
};
use crate::app::App;
use crate::query::QueryKind;

/// Prometheus refuses range queries with more points per series.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The `query` parameter, refused when longer than
/// `query.max_expression_bytes` (parsing and error positions cost time
/// in proportion to it).
fn query_param(app: &App, req: &ReadRequest) -> Result<String, Response> {
    let Some(q) = req.params.get("query") else {
        return Err(bad("invalid parameter \"query\": query is empty"));
    };
    let max = app.query.config().max_expression_bytes;
    if max > 0 && q.len() > max {
        return Err(bad(format!(
            "invalid parameter \"query\": the query is {} bytes, more than the limit of {max} (query.max_expression_bytes={max})",
            q.len()
        )));
    }
    Ok(q.to_string())
}

/// Parses the `query` parameter for the endpoints that only need its
/// syntax tree; errors carry the `line:col` Prometheus prints.
fn parse_param(query: &str) -> Result<promql_parser::parser::Expr, Response> {
    miru_promql::parse(query).map_err(|e| {
        let (line, col) = miru_promql::parse_error_position(query);
        bad(format!(
            "invalid parameter \"query\": {line}:{col}: parse error: {e}"
        ))
    })
}

fn timeout_param(req: &ReadRequest) -> Result<Option<Duration>, Response> {
    req.params
        .get("timeout")
        .map(|s| {
            parse_duration_param(s).map_err(|e| bad(format!("invalid parameter \"timeout\": {e}")))
        })
        .transpose()
}

/// HTTP status for an `errorType`, as Prometheus' API maps them.
fn status_of(error_type: &str) -> StatusCode {
    match error_type {
        "bad_data" => StatusCode::BAD_REQUEST,
        "execution" => StatusCode::UNPROCESSABLE_ENTITY,
        "timeout" => StatusCode::SERVICE_UNAVAILABLE,
        // Prometheus answers 499 (client closed the connection).
        "canceled" => StatusCode::from_u16(499).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error envelope; limit errors name the setting that bounds them.
fn query_error(e: QueryError, cfg: &crate::config::QuerySection) -> Response {
    let t = e.error_type();
    let msg = match &e {
        QueryError::TooManySamples { limit } => format!(
            "query processing would load too many samples into memory in query execution (query.max_samples={limit})"
        ),
        QueryError::Timeout => format!(
            "query timed out in expression evaluation (query.timeout={}s or the request's timeout)",
            cfg.timeout.as_secs()
        ),
        other => other.to_string(),
    };
    api_error(status_of(t), t, msg)
}

fn seconds(t_ms: i64) -> Value {
    json!(t_ms as f64 / 1000.0)
}

fn respond(req: &ReadRequest, r: QueryResult) -> Response {
    let stats = req.params.get("stats").is_some();
    axum::Json(super::query_json::Answer { result: &r, stats }).into_response()
}

/// `GET|POST /api/v1/query`
pub(super) async fn instant(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let req = match read_request(&app, &method, &headers, q, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let parsed = (|| {
        let query = query_param(&app, &req)?;
        let time_ms = req.params.time_ms("time", now_ms()).map_err(bad)?;
        Ok::<_, Response>((query, time_ms, timeout_param(&req)?))
    })();
    let (query, time_ms, timeout) = match parsed {
        Ok(p) => p,
        Err(r) => return r,
    };
    let kind = QueryKind::Instant { time_ms };
    match app
        .query
        .run(&app.storage, &req.tenants, &query, kind, timeout)
        .await
    {
        Ok(r) => respond(&req, r),
        Err(e) => query_error(e, app.query.config()),
    }
}

/// `GET|POST /api/v1/query_range`
pub(super) async fn range_query(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let req = match read_request(&app, &method, &headers, q, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let parsed = (|| {
        let query = query_param(&app, &req)?;
        let start = req
            .params
            .get("start")
            .ok_or_else(|| bad("invalid parameter \"start\": missing"))?;
        let end = req
            .params
            .get("end")
            .ok_or_else(|| bad("invalid parameter \"end\": missing"))?;
        let start_ms = super::params::parse_time_ms(start)
            .map_err(|e| bad(format!("invalid parameter \"start\": {e}")))?;
        let end_ms = super::params::parse_time_ms(end)
            .map_err(|e| bad(format!("invalid parameter \"end\": {e}")))?;
        if end_ms < start_ms {
            return Err(bad(
                "invalid parameter \"end\": end timestamp must not be before start time",
            ));
        }
        let step = req
            .params
            .get("step")
            .ok_or_else(|| bad("invalid parameter \"step\": missing"))?;
        let step = parse_duration_param(step)
            .map_err(|e| bad(format!("invalid parameter \"step\": {e}")))?;
        let step_ms = step.as_millis() as i64;
        if step_ms <= 0 {
            return Err(bad(
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        if (end_ms - start_ms) / step_ms > MAX_POINTS_PER_SERIES {
            return Err(bad(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        Ok::<_, Response>((query, start_ms, end_ms, step_ms, timeout_param(&req)?))
    })();
    let (query, start_ms, end_ms, step_ms, timeout) = match parsed {
        Ok(p) => p,
        Err(r) => return r,
    };
    let kind = QueryKind::Range {
        start_ms,
        end_ms,
        step_ms,
    };
    match app
        .query
        .run(&app.storage, &req.tenants, &query, kind, timeout)
        .await
    {
        Ok(r) => respond(&req, r),
        Err(e) => query_error(e, app.query.config()),
    }
}

/// Vector selectors of a parsed query, as matcher sets.
struct Selectors(Vec<Vec<miru_model::Matcher>>, Option<String>);

impl promql_parser::util::ExprVisitor for Selectors {
    type Error = ();

    fn pre_visit(&mut self, e: &promql_parser::parser::Expr) -> Result<bool, ()> {
        use promql_parser::parser::Expr;
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        match selector_matchers(vs) {
            Ok(sets) => self.0.extend(sets),
            Err(e) => self.1 = Some(e),
        }
        Ok(true)
    }
}

/// `GET|POST /api/v1/query_exemplars`: exemplars of every series the
/// query's selectors match, in `[start, end]`.
pub(super) async fn exemplars(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let req = match read_request(&app, &method, &headers, q, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let query = match query_param(&app, &req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let (start, end) = match range(&req.params) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let expr = match parse_param(&query) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let mut sel = Selectors(Vec::new(), None);
    let _ = promql_parser::util::walk_expr(&mut sel, &expr);
    if let Some(e) = sel.1 {
        return bad(format!("invalid parameter \"query\": {e}"));
    }
    let mut by_series: BTreeMap<Labels, Vec<miru_model::Exemplar>> = BTreeMap::new();
    for t in &req.tenants {
        for set in &sel.0 {
            for (labels, ex) in app.storage.exemplars(t, set, start, end) {
                let dst = by_series.entry(labels).or_default();
                for e in ex {
                    if !dst.contains(&e) {
                        dst.push(e);
                    }
                }
            }
        }
    }
    let data: Vec<Value> = by_series
        .iter()
        .map(|(labels, ex)| {
            json!({
                "seriesLabels": labels_json(labels),
                "exemplars": ex.iter().map(|e| json!({
                    "labels": labels_json(&e.labels),
                    "value": format_value(e.value),
                    "timestamp": seconds(e.timestamp_ms),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    success(Value::Array(data))
}

/// `GET|POST /api/v1/format_query`: the query pretty-printed.
pub(super) async fn format_query(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let req = match read_request(&app, &method, &headers, q, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let query = match query_param(&app, &req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match parse_param(&query) {
        Ok(e) => success(Value::String(e.prettify())),
        Err(r) => r,
    }
}

/// `GET|POST /api/v1/parse_query`: the query's syntax tree as JSON, in
/// the shape Prometheus' UI tree view reads.
pub(super) async fn parse_query(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let req = match read_request(&app, &method, &headers, q, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let query = match query_param(&app, &req) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match parse_param(&query) {
        Ok(e) => match serde_json::to_value(&e) {
            Ok(v) => success(v),
            Err(err) => api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                err.to_string(),
            ),
        },
        Err(r) => r,
    }
}
