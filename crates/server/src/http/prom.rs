//! Prometheus HTTP API reads that the metrics foundation serves: series,
//! label names and values, metadata, and miru's raw-samples endpoint (the
//! query language itself comes with the PromQL engine).

// Helpers return a ready error `Response` as their `Err`, the axum idiom;
// it is built once per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use miru_model::{Labels, Matcher, TenantId};
use serde_json::{Value, json};

use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params, parse_selector};
use crate::app::App;
use crate::tenant::{ORG_ID_HEADER, TenantError, read_tenants};

/// Largest form body accepted on read endpoints.
const MAX_FORM_BYTES: usize = 8 << 20;

/// The Prometheus API error envelope.
pub(super) fn api_error(status: StatusCode, error_type: &str, msg: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"status": "error", "errorType": error_type, "error": msg.into()})),
    )
        .into_response()
}

pub(super) fn success(data: Value) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

pub(super) struct ReadRequest {
    pub(super) tenants: Vec<TenantId>,
    pub(super) params: Params,
    /// `limit`, checked once for every endpoint that takes it.
    limit: Option<usize>,
}

pub(super) async fn read_request(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
    query: Option<String>,
    body: Body,
) -> Result<ReadRequest, Response> {
    let tenants = read_tenants(
        &app.cfg.tenancy,
        headers.get(ORG_ID_HEADER).and_then(|v| v.to_str().ok()),
    )
    .map_err(|e| {
        let status = if e == TenantError::Missing {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        api_error(status, "bad_data", e.to_string())
    })?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let form = if method == Method::POST && is_form {
        Some(to_bytes(body, MAX_FORM_BYTES).await.map_err(|e| {
            api_error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("reading form body: {e}"),
            )
        })?)
    } else {
        None
    };
    let params = Params::parse(query.as_deref(), form.as_deref());
    let limit = params.limit().map_err(bad)?;
    Ok(ReadRequest {
        tenants,
        params,
        limit,
    })
}

pub(super) fn bad(msg: impl Into<String>) -> Response {
    api_error(StatusCode::BAD_REQUEST, "bad_data", msg)
}

/// Matcher sets from `match[]`; `required` makes an empty list an error.
fn matcher_sets(p: &Params, required: bool) -> Result<Vec<Vec<Matcher>>, Response> {
    let raw = p.all("match[]");
    if raw.is_empty() {
        if required {
            return Err(bad("no match[] parameter provided"));
        }
        // Everything: any series has a metric name.
        return Ok(vec![vec![
            Matcher::new("__name__", miru_model::MatchOp::Regex, ".+").expect("BUG: static regex"),
        ]]);
    }
    let mut out = Vec::new();
    for s in raw {
        out.extend(parse_selector(s).map_err(bad)?);
    }
    Ok(out)
}

pub(super) fn range(p: &Params) -> Result<(i64, i64), Response> {
    let start = p.time_ms("start", MIN_TIME_MS).map_err(bad)?;
    let end = p.time_ms("end", MAX_TIME_MS).map_err(bad)?;
    if end < start {
        return Err(bad("end timestamp must not be before start time"));
    }
    Ok((start, end))
}

async fn matching_series(
    app: &App,
    req: &ReadRequest,
    required: bool,
) -> Result<Vec<Labels>, Response> {
    let sets = matcher_sets(&req.params, required)?;
    let (start, end) = range(&req.params)?;
    let mut all = BTreeSet::new();
    for t in &req.tenants {
        for set in &sets {
            let found = app.storage.series(t, set, start, end).await.map_err(|e| {
                api_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e.to_string())
            })?;
            all.extend(found);
        }
    }
    Ok(all.into_iter().collect())
}

pub(super) fn labels_json(l: &Labels) -> Value {
    Value::Object(
        l.iter()
            .map(|x| (x.name.to_string(), Value::String(x.value.to_string())))
            .collect(),
    )
}

fn limited<T>(mut v: Vec<T>, limit: Option<usize>) -> (Vec<T>, Option<String>) {
    match limit {
        Some(n) if v.len() > n => {
            v.truncate(n);
            (v, Some("results truncated due to limit".to_string()))
        }
        _ => (v, None),
    }
}

fn success_with_warning(data: Value, warning: Option<String>) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if let Some(w) = warning {
        body["warnings"] = json!([w]);
    }
    axum::Json(body).into_response()
}

/// `GET|POST /api/v1/series`
pub(super) async fn series(
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
    let limit = req.limit;
    match matching_series(&app, &req, true).await {
        Ok(s) => {
            let (s, w) = limited(s, limit);
            success_with_warning(Value::Array(s.iter().map(labels_json).collect()), w)
        }
        Err(r) => r,
    }
}

/// `GET|POST /api/v1/labels`
pub(super) async fn labels(
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
    let limit = req.limit;
    match matching_series(&app, &req, false).await {
        Ok(s) => {
            let names: BTreeSet<String> = s
                .iter()
                .flat_map(|l| l.iter().map(|x| x.name.to_string()))
                .collect();
            let (names, w) = limited(names.into_iter().collect(), limit);
            success_with_warning(json!(names), w)
        }
        Err(r) => r,
    }
}

/// Reverses Prometheus' `U__` escaping of UTF-8 label names in URLs.
fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let hex: String = chars.by_ref().take_while(|c| *c != '_').collect();
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(ch) => out.push(ch),
            None => return name.to_string(),
        }
    }
    out
}

/// `GET /api/v1/label/<name>/values`
pub(super) async fn label_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let req = match read_request(&app, &method, &headers, q, body).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let limit = req.limit;
    let name = unescape_label_name(&name);
    match matching_series(&app, &req, false).await {
        Ok(s) => {
            let values: BTreeSet<String> = s
                .iter()
                .filter_map(|l| l.get(&name).map(str::to_string))
                .collect();
            let (values, w) = limited(values.into_iter().collect(), limit);
            success_with_warning(json!(values), w)
        }
        Err(r) => r,
    }
}

/// `GET /api/v1/metadata`
pub(super) async fn metadata(
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
    let metric = req.params.get("metric").map(str::to_string);
    let limit = req.limit;
    let mut by_name: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for t in &req.tenants {
        for m in app.storage.metadata(t) {
            if metric.as_ref().is_some_and(|x| x != &m.metric_family) {
                continue;
            }
            let entry = json!({"type": m.metric_type.as_str(), "help": m.help, "unit": m.unit});
            let v = by_name.entry(m.metric_family.clone()).or_default();
            if !v.contains(&entry) {
                v.push(entry);
            }
        }
    }
    let entries: Vec<(String, Vec<Value>)> = by_name.into_iter().collect();
    let (entries, _) = limited(entries, limit);
    success(Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k, Value::Array(v)))
            .collect(),
    ))
}

/// `GET|POST /miru/api/v1/raw?match[]=...&start=...&end=...`: the stored
/// samples of matching series, in the Prometheus matrix shape. This is not
/// PromQL: no lookback, no functions, every stored sample in the range.
pub(super) async fn raw(
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
    let sets = match matcher_sets(&req.params, true) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (start, end) = match range(&req.params) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut merged: BTreeMap<Labels, miru_storage::SeriesSamples> = BTreeMap::new();
    for t in &req.tenants {
        for set in &sets {
            match app.storage.select(t, set, start, end).await {
                Ok(found) => {
                    for s in found {
                        merged.entry(s.labels.clone()).or_insert(s);
                    }
                }
                Err(e) => {
                    return api_error(StatusCode::UNPROCESSABLE_ENTITY, "execution", e.to_string());
                }
            }
        }
    }
    let result: Vec<Value> = merged
        .values()
        .map(|s| {
            let mut m = serde_json::Map::new();
            m.insert("metric".into(), labels_json(&s.labels));
            if !s.samples.is_empty() {
                m.insert(
                    "values".into(),
                    s.samples
                        .iter()
                        .map(|x| json!([x.timestamp_ms as f64 / 1000.0, format_value(x.value)]))
                        .collect(),
                );
            }
            if !s.histograms.is_empty() {
                m.insert(
                    "histograms".into(),
                    s.histograms
                        .iter()
                        .map(|x| {
                            json!([x.timestamp_ms as f64 / 1000.0, histogram_json(&x.histogram)])
                        })
                        .collect(),
                );
            }
            Value::Object(m)
        })
        .collect();
    success(json!({"resultType": "matrix", "result": result}))
}

/// A native histogram as Prometheus' API encodes it (see
/// [`super::query_json::HistogramJson`]).
pub(super) fn histogram_json(h: &miru_model::FloatHistogram) -> Value {
    serde_json::to_value(super::query_json::HistogramJson(h))
        .expect("BUG: a histogram is always valid JSON")
}

/// Prometheus' string form of a sample value (`NaN`, `+Inf`, `-Inf`, …).
pub(super) fn format_value(v: f64) -> String {
    super::query_json::PromFloat(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u_escaping() {
        assert_eq!(unescape_label_name("job"), "job");
        assert_eq!(unescape_label_name("U__http_2e_status"), "http.status");
        assert_eq!(unescape_label_name("U__a__b"), "a_b");
    }
}
