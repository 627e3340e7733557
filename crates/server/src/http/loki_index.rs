//! Loki's index endpoints: `index/stats`, `index/volume`,
//! `index/volume_range` and `detected_labels` answer from the stream
//! tables of parts and from the head without reading a line (a part's
//! stream that overlaps the range counts whole, as Loki counts chunks);
//! `detected_fields` and `detected_field/{name}/values` sample the newest
//! lines of a log query.
// Handlers return ready responses as errors, as in `loki.rs`.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use miru_model::{Labels, Matcher};
use miru_storage::logs::LogChunkStats;
use serde_json::{Value, json};

use super::loki::{
    LokiRequest, bad, error_response, query_param, range_params, seconds, selector, serve_read,
    step_param,
};
use super::text_error;
use crate::app::App;
use crate::logql::LogQlKind;
use miru_logql::pipeline::detect::{field_type, parsed_fields};
use miru_logql::{Direction, LogQuery, Value as LogValue};

/// Volume series returned when `limit` is not given (Loki's default).
const DEFAULT_VOLUME_LIMIT: usize = 100;

async fn chunks(
    app: &App,
    req: &LokiRequest,
) -> Result<(Vec<Matcher>, Vec<LogChunkStats>), Response> {
    let (start, end) = range_params(&req.params)?;
    let matchers = selector(&query_param(&req.params)?)?;
    let got = app
        .storage
        .log_chunk_stats(&req.tenant, &matchers, start, end.saturating_add(1))
        .await
        .map_err(|e| text_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok((matchers, got))
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
    serve_read(app, method, headers, q, body, async |app, req, _| {
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

/// How a volume groups chunks (Loki's `aggregateBy` and `targetLabels`).
enum Grouping {
    /// By the values of these labels; with `targetLabels` given, streams
    /// lacking one of them are left out (Loki adds `name=~".+"` for each).
    Series {
        names: Vec<String>,
        require_all: bool,
    },
    /// One group per label name (value `""`) over the streams carrying it:
    /// these names, or every name.
    Labels(Option<Vec<String>>),
}

fn grouping(req: &LokiRequest, matchers: &[Matcher]) -> Result<Grouping, Response> {
    let targets: Option<Vec<String>> = req
        .params
        .get("targetLabels")
        .filter(|s| !s.is_empty())
        .map(|t| {
            let mut names: Vec<String> = t
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            names.sort();
            names.dedup();
            names
        });
    match req.params.get("aggregateBy") {
        None | Some("series") => Ok(match targets {
            Some(names) => Grouping::Series {
                names,
                require_all: true,
            },
            None => {
                let mut names: Vec<String> = matchers.iter().map(|m| m.name.to_string()).collect();
                names.sort();
                names.dedup();
                Grouping::Series {
                    names,
                    require_all: false,
                }
            }
        }),
        Some("labels") => Ok(Grouping::Labels(targets)),
        Some(other) => Err(bad(format!(
            "invalid parameter \"aggregateBy\": {other:?} is not supported (series or labels)"
        ))),
    }
}

/// The groups one stream counts in.
fn groups_of(labels: &Labels, g: &Grouping) -> Vec<Group> {
    match g {
        Grouping::Series { names, require_all } => {
            let group: Group = names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.to_string())))
                .collect();
            if *require_all && group.len() < names.len() {
                return Vec::new();
            }
            vec![group]
        }
        Grouping::Labels(names) => labels
            .iter()
            .filter(|l| {
                names
                    .as_ref()
                    .is_none_or(|n| n.iter().any(|n| *n == *l.name))
            })
            .map(|l| vec![(l.name.to_string(), String::new())])
            .collect(),
    }
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

/// A volume group: the grouping labels' pairs.
type Group = Vec<(String, String)>;

/// The `limit` groups with the most bytes, largest first (ties by labels).
fn largest<V>(
    by_group: BTreeMap<Group, V>,
    bytes: impl Fn(&V) -> u64,
    limit: usize,
) -> Vec<(Group, V)> {
    let mut groups: Vec<(Group, V)> = by_group.into_iter().collect();
    groups.sort_by(|a, b| bytes(&b.1).cmp(&bytes(&a.1)).then_with(|| a.0.cmp(&b.0)));
    groups.truncate(limit);
    groups
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
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let (_, end) = range_params(&req.params)?;
        let (matchers, chunks) = chunks(app, req).await?;
        let grouping = grouping(req, &matchers)?;
        let limit = volume_limit(req)?;
        let mut by_group: BTreeMap<Group, u64> = BTreeMap::new();
        for c in &chunks {
            for g in groups_of(&c.labels, &grouping) {
                *by_group.entry(g).or_default() += c.line_bytes;
            }
        }
        let groups = largest(by_group, |b| *b, limit);
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
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let (start, end) = range_params(&req.params)?;
        let step = step_param(&req.params, start, end)?;
        let (matchers, chunks) = chunks(app, req).await?;
        let grouping = grouping(req, &matchers)?;
        let limit = volume_limit(req)?;
        let mut by_group: BTreeMap<Group, BTreeMap<i64, u64>> = BTreeMap::new();
        for c in &chunks {
            // The step ending at or after the chunk's last entry, clamped
            // to the range.
            let last = c.max_ts_ns.clamp(start, end);
            let k = (last - start + step - 1) / step;
            let t = (start + k * step).min(end);
            for g in groups_of(&c.labels, &grouping) {
                *by_group.entry(g).or_default().entry(t).or_default() += c.line_bytes;
            }
        }
        let groups = largest(by_group, |points| points.values().sum(), limit);
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
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let (start, end) = range_params(&req.params)?;
        let matchers = match req.params.get("query").filter(|q| !q.is_empty()) {
            Some(q) => selector(q)?,
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

/// Lines sampled for field detection when `line_limit` is not given.
const DEFAULT_LINE_LIMIT: usize = 1000;

/// One detected field: its type (of the first value seen), parsers and
/// distinct values.
#[derive(Default)]
struct Field {
    kind: &'static str,
    parsers: BTreeSet<&'static str>,
    metadata: bool,
    values: BTreeSet<String>,
}

/// Runs the log query of `query` over the newest `line_limit` lines and
/// collects the fields of structured metadata and of the line's parser.
async fn detect(app: &App, req: &LokiRequest) -> Result<BTreeMap<String, Field>, Response> {
    let (start, end) = range_params(&req.params)?;
    let query = query_param(&req.params)?;
    let line_limit = match req.params.get("line_limit") {
        None => DEFAULT_LINE_LIMIT,
        Some(s) => s.parse::<usize>().map_err(|_| {
            bad(format!(
                "invalid parameter \"line_limit\": cannot parse {s:?}"
            ))
        })?,
    };
    let kind = LogQlKind::Logs(LogQuery {
        start_ns: start,
        end_ns: end.saturating_add(1),
        limit: line_limit,
        direction: Direction::Backward,
    });
    let (value, _) = app
        .logql
        .run(&app.query, &app.storage, &req.tenant, &query, kind)
        .await
        .map_err(error_response)?;
    let LogValue::Streams(streams) = value else {
        return Err(bad(format!("{query:?} is not a log query")));
    };
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    let mut add = |name: &str, value: &str, parser: Option<&'static str>| {
        let f = fields.entry(name.to_string()).or_default();
        if f.kind.is_empty() {
            f.kind = field_type(value);
        }
        match parser {
            Some(p) => {
                f.parsers.insert(p);
            }
            None => f.metadata = true,
        }
        f.values.insert(value.to_string());
    };
    for line in streams.iter().flat_map(|s| &s.entries) {
        for l in line.structured_metadata.iter() {
            add(&l.name, &l.value, None);
        }
        let (parser, parsed) = parsed_fields(&line.line);
        for (name, value) in &parsed {
            add(name, value, Some(parser));
        }
    }
    Ok(fields)
}

/// `GET /loki/api/v1/detected_fields`: fields of the newest lines of a log
/// query, with type, cardinality and the parsers that found them
/// (`parsers: null` for structured metadata), at most `limit`.
pub(super) async fn detected_fields(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let limit = match req.params.get("limit") {
            None => DEFAULT_LINE_LIMIT,
            Some(s) => s
                .parse::<usize>()
                .map_err(|_| bad(format!("invalid parameter \"limit\": cannot parse {s:?}")))?,
        };
        let fields = detect(app, req).await?;
        let out: Vec<Value> = fields
            .iter()
            .take(limit)
            .map(|(name, f)| {
                let parsers: Value = if f.parsers.is_empty() {
                    Value::Null
                } else {
                    json!(f.parsers)
                };
                json!({"label": name, "type": f.kind, "cardinality": f.values.len(), "parsers": parsers})
            })
            .collect();
        Ok(axum::Json(json!({"fields": out, "limit": limit})).into_response())
    })
    .await
}

/// `GET /loki/api/v1/detected_field/{name}/values`.
pub(super) async fn detected_field_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    serve_read(app, method, headers, q, body, async |app, req, _| {
        let fields = detect(app, req).await?;
        let values: Vec<&String> = fields
            .get(&name)
            .map(|f| f.values.iter().collect())
            .unwrap_or_default();
        Ok(axum::Json(json!({"values": values})).into_response())
    })
    .await
}
