//! The HTTP shell: one router for every API, a request-id and logging
//! middleware, and the mapping from outcomes to status codes. Routes are
//! grouped by API family: `ingest` (remote write), `otlp` (OTLP metrics and
//! logs), `prom` (Prometheus reads), `loki` (Loki push and reads),
//! `loki_index` (index stats, volumes, detected labels and fields),
//! `status` (health, readiness, self-metrics).

mod ingest;
pub(crate) mod loki;
mod loki_index;
mod loki_tail;
mod otlp;
pub mod params;
mod prom;
mod query;
mod query_json;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::app::App;
use crate::self_metrics::RouteLabels;

pub fn router(app: Arc<App>) -> Router {
    let prom = Router::new()
        .route("/api/v1/series", get(prom::series).post(prom::series))
        .route("/api/v1/labels", get(prom::labels).post(prom::labels))
        .route("/api/v1/label/{name}/values", get(prom::label_values))
        .route("/api/v1/metadata", get(prom::metadata))
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route(
            "/api/v1/query_range",
            get(query::range_query).post(query::range_query),
        )
        .route(
            "/api/v1/query_exemplars",
            get(query::exemplars).post(query::exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(query::format_query).post(query::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(query::parse_query).post(query::parse_query),
        )
        .route("/api/v1/status/buildinfo", get(status::buildinfo));
    Router::new()
        .route("/api/v1/push", post(ingest::remote_write))
        .route("/api/v1/write", post(ingest::remote_write))
        .route("/api/prom/push", post(ingest::remote_write))
        .route("/otlp/v1/metrics", post(otlp::metrics))
        .route("/v1/metrics", post(otlp::metrics))
        .route("/api/v1/otlp/v1/metrics", post(otlp::metrics))
        .route("/otlp/v1/logs", post(otlp::logs))
        .route("/v1/logs", post(otlp::logs))
        .route("/loki/api/v1/push", post(loki::push))
        .route("/loki/api/v1/query", get(loki::query).post(loki::query))
        .route(
            "/loki/api/v1/query_range",
            get(loki::query_range).post(loki::query_range),
        )
        .route("/loki/api/v1/labels", get(loki::labels).post(loki::labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(loki::label_values).post(loki::label_values),
        )
        .route("/loki/api/v1/series", get(loki::series).post(loki::series))
        .route("/loki/api/v1/tail", get(loki_tail::tail))
        .route(
            "/loki/api/v1/index/stats",
            get(loki_index::stats).post(loki_index::stats),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(loki_index::volume).post(loki_index::volume),
        )
        .route(
            "/loki/api/v1/index/volume_range",
            get(loki_index::volume_range).post(loki_index::volume_range),
        )
        .route(
            "/loki/api/v1/detected_labels",
            get(loki_index::detected_labels).post(loki_index::detected_labels),
        )
        .route(
            "/loki/api/v1/detected_fields",
            get(loki_index::detected_fields).post(loki_index::detected_fields),
        )
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(loki_index::detected_field_values).post(loki_index::detected_field_values),
        )
        .route("/miru/api/v1/raw", get(prom::raw).post(prom::raw))
        .route("/ingester/flush", get(status::flush).post(status::flush))
        .route("/miru/api/v1/admin/compact", post(status::compact))
        .route("/metrics", get(status::metrics))
        .route("/ready", get(status::ready))
        .route("/health", get(status::health))
        .route("/", get(status::index))
        .merge(prom.clone())
        .nest("/prometheus", prom)
        .fallback(status::not_found)
        // Bodies are limited per tenant inside the handlers.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(Arc::clone(&app), observe))
        .with_state(app)
}

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(0);

/// Gives each request an id (or keeps the caller's `X-Request-Id`), logs
/// it with its outcome and counts it by route and status.
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{:x}",
                app.started.elapsed().as_micros(),
                REQUEST_SEQ.fetch_add(1, Ordering::Relaxed)
            )
        });
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let tenant = req
        .headers()
        .get(crate::tenant::ORG_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route, tenant = %tenant);
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let status = resp.status();
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let _e = span.enter();
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), elapsed_ms, "request failed");
    } else if status.is_client_error() {
        tracing::warn!(status = status.as_u16(), elapsed_ms, "request rejected");
    } else {
        tracing::debug!(status = status.as_u16(), elapsed_ms, "request done");
    }
    app.metrics
        .http_requests
        .get_or_create(&RouteLabels {
            route,
            status: status.as_u16().to_string(),
        })
        .inc();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// A plain-text error, the style remote-write senders log as is.
pub fn text_error(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        m,
    )
        .into_response()
}
