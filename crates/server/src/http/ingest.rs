//! Remote write 1.0/2.0, and the request helpers every write endpoint
//! shares (tenant, bounded body, body error statuses). Each endpoint
//! decodes, then hands the batch to the shared pipeline, then answers in the
//! style its senders expect; OTLP is in `otlp`, Loki push in `loki`.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use miru_ingest::body::BodyError;
use miru_ingest::remote_write::{
    RemoteWriteError, RemoteWriteVersion, check_encoding, decode_v1, decode_v2, negotiate,
};
use miru_model::TenantId;

use super::text_error;
use crate::app::App;
use crate::pipeline::{IngestStatus, ingest};
use crate::tenant::{ORG_ID_HEADER, TenantError, write_tenant};

pub(super) fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn tenant_of(app: &App, headers: &HeaderMap) -> Result<TenantId, TenantError> {
    write_tenant(&app.cfg.tenancy, header_str(headers, ORG_ID_HEADER))
}

pub(super) fn tenant_status(e: &TenantError) -> StatusCode {
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

pub(super) fn body_error_status(e: &BodyError) -> StatusCode {
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
