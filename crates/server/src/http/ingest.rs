//! Write endpoints: Prometheus remote write 1.0/2.0 and OTLP metrics over
//! HTTP. Each decodes, then hands the batch to the shared pipeline, then
//! answers in the style its senders expect.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use miru_ingest::body::{BodyError, decode_content_encoding};
use miru_ingest::otlp::{OtlpEncoding, decode_metrics_request};
use miru_ingest::remote_write::{
    RemoteWriteError, RemoteWriteVersion, check_encoding, decode_v1, decode_v2, negotiate,
};
use miru_model::TenantId;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;

use super::text_error;
use crate::app::App;
use crate::pipeline::{IngestStatus, OtlpOutcome, ingest, ingest_otlp_metrics};
use crate::tenant::{ORG_ID_HEADER, TenantError, write_tenant};

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn tenant_of(app: &App, headers: &HeaderMap) -> Result<TenantId, TenantError> {
    write_tenant(&app.cfg.tenancy, header_str(headers, ORG_ID_HEADER))
}

fn tenant_status(e: &TenantError) -> StatusCode {
    match e {
        TenantError::Missing => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Reads the body up to the tenant's limit; `Err` is a ready 413/400.
pub(super) async fn read_body(
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, (StatusCode, String)> {
    to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body too large: the limit is {limit} bytes (max_request_body_bytes)"
                ),
            )
        } else {
            (
                StatusCode::BAD_REQUEST,
                format!("reading request body: {e}"),
            )
        }
    })
}

fn body_error_status(e: &BodyError) -> StatusCode {
    match e {
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `POST /api/v1/push` (Mimir), `/api/v1/write` (Prometheus), `/api/prom/push`.
pub(super) async fn remote_write(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tenant = match tenant_of(&app, &headers) {
        Ok(t) => t,
        Err(e) => return text_error(tenant_status(&e), e.to_string()),
    };
    let version = match negotiate(header_str(&headers, header::CONTENT_TYPE)) {
        Ok(v) => v,
        Err(msg) => return text_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg),
    };
    if let Err(msg) = check_encoding(header_str(&headers, header::CONTENT_ENCODING)) {
        return text_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, msg);
    }
    let limit = app.limits.for_tenant(&tenant).max_request_body_bytes;
    let raw = match read_body(body, limit).await {
        Ok(b) => b,
        Err((s, m)) => return with_written(text_error(s, m), version, Written::default()),
    };
    let decoded = match version {
        RemoteWriteVersion::V1 => decode_v1(&raw, limit),
        RemoteWriteVersion::V2 => decode_v2(&raw, limit),
    };
    let batch = match decoded {
        Ok(b) => b,
        Err(e) => {
            let status = match &e {
                RemoteWriteError::Body(b) => body_error_status(b),
                _ => StatusCode::BAD_REQUEST,
            };
            return with_written(
                text_error(status, e.to_string()),
                version,
                Written::default(),
            );
        }
    };
    let out = ingest(&app, &tenant, protocol_name(version), batch).await;
    let resp = match out.status {
        IngestStatus::Ok => StatusCode::NO_CONTENT.into_response(),
        IngestStatus::BadData => {
            text_error(StatusCode::BAD_REQUEST, out.message.unwrap_or_default())
        }
        IngestStatus::Limited => {
            let mut r = text_error(
                StatusCode::TOO_MANY_REQUESTS,
                out.message.unwrap_or_default(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        IngestStatus::Unavailable => text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            out.message.unwrap_or_default(),
        ),
    };
    let written = Written {
        samples: out.samples_written,
        histograms: out.histograms_written,
        exemplars: out.exemplars_written,
    };
    with_written(resp, version, written)
}

/// What a remote write 2.0 response reports as written.
#[derive(Default)]
struct Written {
    samples: u64,
    histograms: u64,
    exemplars: u64,
}

fn protocol_name(v: RemoteWriteVersion) -> &'static str {
    match v {
        RemoteWriteVersion::V1 => "remote_write_v1",
        RemoteWriteVersion::V2 => "remote_write_v2",
    }
}

/// Remote write 2.0 receivers always report what they wrote, also on errors.
fn with_written(mut r: Response, v: RemoteWriteVersion, w: Written) -> Response {
    if v == RemoteWriteVersion::V2 {
        let h = r.headers_mut();
        h.insert(
            "x-prometheus-remote-write-samples-written",
            HeaderValue::from(w.samples),
        );
        h.insert(
            "x-prometheus-remote-write-histograms-written",
            HeaderValue::from(w.histograms),
        );
        h.insert(
            "x-prometheus-remote-write-exemplars-written",
            HeaderValue::from(w.exemplars),
        );
    }
    r
}

/// `POST /otlp/v1/metrics` (Mimir), `/v1/metrics` (OTLP default), `/api/v1/otlp/v1/metrics` (Prometheus).
pub(super) async fn otlp_metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = header_str(&headers, header::CONTENT_TYPE).unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => OtlpEncoding::Protobuf,
        "application/json" => OtlpEncoding::Json,
        _ => {
            return otlp_status(
                OtlpEncoding::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type {ct:?}: expected application/x-protobuf or application/json"
                ),
            );
        }
    };
    let tenant = match tenant_of(&app, &headers) {
        Ok(t) => t,
        Err(e) => return otlp_status(encoding, tenant_status(&e), e.to_string()),
    };
    let limit = app.limits.for_tenant(&tenant).max_request_body_bytes;
    let raw = match read_body(body, limit).await {
        Ok(b) => b,
        Err((s, m)) => return otlp_status(encoding, s, m),
    };
    let plain = match decode_content_encoding(
        &raw,
        header_str(&headers, header::CONTENT_ENCODING),
        limit,
    ) {
        Ok(b) => b,
        Err(e) => return otlp_status(encoding, body_error_status(&e), e.to_string()),
    };
    let req = match decode_metrics_request(&plain, encoding) {
        Ok(r) => r,
        Err(e) => return otlp_status(encoding, StatusCode::BAD_REQUEST, e.to_string()),
    };
    match ingest_otlp_metrics(&app, &tenant, "otlp_http", &req).await {
        OtlpOutcome::Done(resp) => otlp_ok(encoding, &resp),
        OtlpOutcome::Limited(msg) => {
            let mut r = otlp_status(encoding, StatusCode::TOO_MANY_REQUESTS, msg);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        OtlpOutcome::Unavailable(msg) => {
            otlp_status(encoding, StatusCode::SERVICE_UNAVAILABLE, msg)
        }
    }
}

fn otlp_ok(encoding: OtlpEncoding, resp: &ExportMetricsServiceResponse) -> Response {
    match encoding {
        OtlpEncoding::Protobuf => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            resp.encode_to_vec(),
        )
            .into_response(),
        OtlpEncoding::Json => {
            let body = match &resp.partial_success {
                None => serde_json::json!({}),
                Some(p) => serde_json::json!({
                    "partialSuccess": {
                        "rejectedDataPoints": p.rejected_data_points.to_string(),
                        "errorMessage": p.error_message,
                    }
                }),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn otlp_status(encoding: OtlpEncoding, status: StatusCode, message: String) -> Response {
    // gRPC codes matching the HTTP status, as the OTLP spec pairs them.
    let code = match status.as_u16() {
        400 | 413 | 415 => 3,
        401 => 16,
        429 => 8,
        503 => 14,
        _ => 13,
    };
    match encoding {
        OtlpEncoding::Protobuf => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            RpcStatus { code, message }.encode_to_vec(),
        )
            .into_response(),
        OtlpEncoding::Json => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({"code": code, "message": message}).to_string(),
        )
            .into_response(),
    }
}
