//! Health, readiness, self-metrics and build information.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde_json::json;

use crate::app::App;
use crate::self_metrics::TenantLabel;

pub(super) async fn ready() -> &'static str {
    // Listeners are bound only after WAL replay, so answering means ready.
    "ready\n"
}

pub(super) async fn health() -> &'static str {
    "ok\n"
}

pub(super) async fn index() -> &'static str {
    "miru: Prometheus remote write at /api/v1/push, OTLP metrics and logs at /otlp/v1/metrics and /otlp/v1/logs, Loki push at /loki/api/v1/push, Prometheus API at /api/v1/ and /prometheus/api/v1/, Loki API at /loki/api/v1/, self-metrics at /metrics\n"
}

pub(super) async fn not_found() -> Response {
    super::text_error(
        StatusCode::NOT_FOUND,
        "404 page not found: no such endpoint",
    )
}

pub(super) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let m = &app.metrics;
    set_per_tenant(&m.head_series, app.storage.head_series());
    m.head_samples.set(app.storage.head_samples() as i64);
    set_per_tenant(&m.log_head_streams, app.storage.log_head_streams());
    m.log_head_bytes.set(app.storage.log_head_bytes() as i64);
    for (t, parts, bytes) in app.storage.part_stats() {
        let l = TenantLabel {
            tenant: t.to_string(),
        };
        m.parts.get_or_create(&l).set(parts as i64);
        m.part_bytes.get_or_create(&l).set(bytes as i64);
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &m.registry) {
        return super::text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Sets a per-tenant gauge from the storage's counts.
fn set_per_tenant(
    family: &prometheus_client::metrics::family::Family<
        TenantLabel,
        prometheus_client::metrics::gauge::Gauge,
    >,
    counts: Vec<(miru_model::TenantId, usize)>,
) {
    for (t, n) in counts {
        family
            .get_or_create(&TenantLabel {
                tenant: t.to_string(),
            })
            .set(n as i64);
    }
}

/// Identifies as a Mimir-compatible Prometheus API: a non-empty `features`
/// object makes Grafana treat the data source as Mimir (label APIs with
/// `match[]`, exemplars). The version is the Mimir API level served, with
/// miru's own version as build metadata. There is no ruler or Alertmanager
/// configuration API yet, so those features say "false" and Grafana keeps
/// its alerting UI read-only.
pub(super) async fn buildinfo() -> Json<serde_json::Value> {
    Json(json!({
        "status": "success",
        "data": {
            "application": "miru",
            "version": concat!("2.14.0+miru.", env!("CARGO_PKG_VERSION")),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
            "features": {
                "ruler_config_api": "false",
                "alertmanager_config_api": "false",
                "query_sharding": "false",
                "federated_rules": "false"
            }
        }
    }))
}

/// `POST /ingester/flush` (Mimir's path): cuts the head into parts now.
pub(super) async fn flush(State(app): State<Arc<App>>) -> Response {
    match app.storage.flush().await {
        Ok(s) => (
            StatusCode::NO_CONTENT,
            [("x-miru-parts-flushed", s.parts_flushed.to_string())],
        )
            .into_response(),
        Err(e) => super::text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("flush failed: {e}"),
        ),
    }
}

/// `POST /miru/api/v1/admin/compact[?full=true]`: runs one compaction pass
/// now; `full` merges every tenant-day into one part.
pub(super) async fn compact(
    State(app): State<Arc<App>>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let full = q.is_some_and(|q| q.split('&').any(|kv| kv == "full=true" || kv == "full=1"));
    let r = if full {
        app.storage.compact_full().await
    } else {
        app.storage.compact().await
    };
    match r {
        Ok(s) => {
            axum::Json(json!({"parts_merged": s.parts_merged, "parts_written": s.parts_written}))
                .into_response()
        }
        Err(e) => super::text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("compaction failed: {e}"),
        ),
    }
}
