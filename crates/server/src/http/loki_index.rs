//! Loki's index endpoints: `index/stats`, `index/volume`,
//! `index/volume_range` and `detected_labels`. They answer from the stream
//! tables of parts and from the head without reading a line: a part's
//! stream that overlaps the range counts whole, as Loki counts chunks.
// Handlers return ready responses as errors, as in `loki.rs`.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use miru_model::{Labels, Matcher};
use miru_storage::logs::LogChunkStats;
use serde_json::{Value, json};

use super::loki::{
    LokiRequest, bad, loki_request, query_param, range_params, seconds, selector, step_param,
};
use super::text_error;
use crate::app::App;

/// Volume series returned when `limit` is not given (Loki's default).
const DEFAULT_VOLUME_LIMIT: usize = 100;

async fn chunks(
    app: &App,
    req: &LokiRequest,
) -> Result<(Vec<Matcher>, Vec<LogChunkStats>), Response> {
    let (start, end) = range_params(&req.params)?;
    let matchers = selector_of(&query_param(&req.params)?)?;
    let got = app
        .storage
        .log_chunk_stats(&req.tenant, &matchers, start, end.saturating_add(1))
        .await
        .map_err(|e| text_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((matchers, got))
}

/// The matchers of the query's selector; a full log query is accepted and
/// its pipeline ignored, as Loki does for index requests.
fn selector_of(q: &str) -> Result<Vec<Matcher>, Response> {
    match miru_logql::parse(q) {
        Ok(miru_logql::syntax::ast::Expr::Log(l)) => Ok(l.matchers),
        Ok(_) => Err(bad(format!("{q:?} is not a stream selector"))),
        Err(_) => selector(q),
    }
}

async fn handle<F>(
    app: Arc<App>,
    method: Method,
    headers: HeaderMap,
    q: Option<String>,
    body: Body,
    f: F,
) -> Response
where
    F: AsyncFnOnce(&App, &LokiRequest) -> Result<Response, Response>,
{
    match loki_request(&app, &method, &headers, q, body).await {
        Ok(req) => f(&app, &req).await.unwrap_or_else(|r| r),
        Err(r) => r,
    }
}

/// `GET|POST /loki/api/v1/index/stats`: streams, chunks, entries and bytes
/// a query would touch (no envelope, as Loki).
pub(super) async fn stats(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    handle(app, method, headers, q, body, async |app, req| {
        let (_, chunks) = chunks(app, req).await?;
        let streams: BTreeSet<&Labels> = chunks.iter().map(|c| &c.labels).collect();
        Ok(axum::Json(json!({
            "streams": streams.len(),
            "chunks": chunks.len(),
            "entries": chunks.iter().map(|c| c.entries).sum::<u64>(),
            "bytes": chunks.iter().map(|c| c.line_bytes).sum::<u64>(),
        }))
        .into_response())
    })
    .await
}

/// The labels a volume groups by: `targetLabels` (comma separated), else
/// the names the selector matches on.
fn group_names(req: &LokiRequest, matchers: &[Matcher]) -> Result<Vec<String>, Response> {
    match req.params.get("aggregateBy") {
        None | Some("series") => {}
        Some(other) => {
            return Err(bad(format!(
                "invalid parameter \"aggregateBy\": {other:?} is not supported (series is)"
            )));
        }
    }
    let mut names: Vec<String> = match req.params.get("targetLabels").filter(|s| !s.is_empty()) {
        Some(t) => t
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => matchers.iter().map(|m| m.name.to_string()).collect(),
    };
    names.sort();
    names.dedup();
    Ok(names)
}

fn group_of(labels: &Labels, names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.to_string())))
        .collect()
}

fn volume_limit(req: &LokiRequest) -> Result<usize, Response> {
    match req.params.get("limit") {
        None => Ok(DEFAULT_VOLUME_LIMIT),
        Some(s) => s.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            bad(format!(
                "invalid parameter \"limit\": {s:?} is not a positive integer"
            ))
        }),
    }
}

fn metric_json(group: &[(String, String)]) -> Value {
    Value::Object(group.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

/// `GET|POST /loki/api/v1/index/volume`: bytes per group over the range, as
/// a vector at `end`, largest first, at most `limit` groups.
pub(super) async fn volume(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    handle(app, method, headers, q, body, async |app, req| {
        let (_, end) = range_params(&req.params)?;
        let (matchers, chunks) = chunks(app, req).await?;
        let names = group_names(req, &matchers)?;
        let limit = volume_limit(req)?;
        let mut by_group: BTreeMap<Vec<(String, String)>, u64> = BTreeMap::new();
        for c in &chunks {
            *by_group.entry(group_of(&c.labels, &names)).or_default() += c.line_bytes;
        }
        let mut groups: Vec<_> = by_group.into_iter().collect();
        groups.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        groups.truncate(limit);
        let result: Vec<Value> = groups
            .iter()
            .map(|(g, bytes)| json!({"metric": metric_json(g), "value": [seconds(end), bytes.to_string()]}))
            .collect();
        Ok(axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
            .into_response())
    })
    .await
}

/// `GET|POST /loki/api/v1/index/volume_range`: bytes per group and step,
/// each chunk counted at the step holding its last entry.
pub(super) async fn volume_range(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    handle(app, method, headers, q, body, async |app, req| {
        let (start, end) = range_params(&req.params)?;
        let step = step_param(&req.params, start, end)?;
        let (matchers, chunks) = chunks(app, req).await?;
        let names = group_names(req, &matchers)?;
        let limit = volume_limit(req)?;
        let mut by_group: BTreeMap<Vec<(String, String)>, BTreeMap<i64, u64>> = BTreeMap::new();
        for c in &chunks {
            // The step ending at or after the chunk's last entry, clamped
            // to the range.
            let last = c.max_ts_ns.clamp(start, end);
            let k = (last - start + step - 1) / step;
            let t = (start + k * step).min(end);
            *by_group
                .entry(group_of(&c.labels, &names))
                .or_default()
                .entry(t)
                .or_default() += c.line_bytes;
        }
        let mut groups: Vec<_> = by_group.into_iter().collect();
        let total = |g: &BTreeMap<i64, u64>| g.values().sum::<u64>();
        groups.sort_by(|a, b| total(&b.1).cmp(&total(&a.1)).then_with(|| a.0.cmp(&b.0)));
        groups.truncate(limit);
        let result: Vec<Value> = groups
            .iter()
            .map(|(g, points)| {
                let values: Vec<Value> = points
                    .iter()
                    .map(|(t, b)| json!([seconds(*t), b.to_string()]))
                    .collect();
                json!({"metric": metric_json(g), "values": values})
            })
            .collect();
        Ok(axum::Json(
            json!({"status": "success", "data": {"resultType": "matrix", "result": result}}),
        )
        .into_response())
    })
    .await
}

/// `GET|POST /loki/api/v1/detected_labels`: stream label names with their
/// number of distinct values in the range (`query` optional).
pub(super) async fn detected_labels(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    handle(app, method, headers, q, body, async |app, req| {
        let (start, end) = range_params(&req.params)?;
        let matchers = match req.params.get("query").filter(|q| !q.is_empty()) {
            Some(q) => selector_of(q)?,
            None => Vec::new(),
        };
        let streams = app
            .storage
            .log_streams(&req.tenant, &matchers, start, end.saturating_add(1))
            .await
            .map_err(|e| text_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for l in &streams {
            for x in l.iter() {
                values.entry(&x.name).or_default().insert(&x.value);
            }
        }
        let detected: Vec<Value> = values
            .iter()
            .filter(|(name, _)| !name.starts_with("__"))
            .map(|(name, v)| json!({"label": name, "cardinality": v.len()}))
            .collect();
        Ok(axum::Json(json!({"detectedLabels": detected})).into_response())
    })
    .await
}
