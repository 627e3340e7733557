//! OTLP/HTTP: metrics (`/otlp/v1/metrics`, `/v1/metrics`,
//! `/api/v1/otlp/v1/metrics`) and logs (`/otlp/v1/logs`, `/v1/logs`).
//! Both read the body the same way (encoding from `Content-Type`, tenant,
//! size limit, gzip/deflate) and answer in the request's encoding: 200 with
//! the export response (partial success when something was dropped), or a
//! `google.rpc.Status` with 400/413/415/429/503.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use miru_ingest::body::decode_content_encoding;
use miru_ingest::otlp::{OtlpEncoding, decode_logs_request, decode_metrics_request};
use miru_model::TenantId;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use serde_json::{Value, json};

use super::ingest::{body_error_status, header_str, read_body, tenant_of, tenant_status};
use crate::app::App;
use crate::pipeline::{OtlpOutcome, ingest_otlp_logs, ingest_otlp_metrics};

/// A decompressed OTLP/HTTP request body and what it belongs to.
struct OtlpRequest {
    encoding: OtlpEncoding,
    tenant: TenantId,
    body: Vec<u8>,
}

/// Reads an OTLP/HTTP request up to its decompressed body; `Err` is the
/// ready error response (in the request's encoding where it is known).
async fn read_request(app: &App, headers: &HeaderMap, body: Body) -> Result<OtlpRequest, Response> {
    let ct = header_str(headers, header::CONTENT_TYPE).unwrap_or("");
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
            return Err(otlp_status(
                OtlpEncoding::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported content type {ct:?}: expected application/x-protobuf or application/json"
                ),
            ));
        }
    };
    let tenant = tenant_of(app, headers)
        .map_err(|e| otlp_status(encoding, tenant_status(&e), e.to_string()))?;
    let limit = app.limits.for_tenant(&tenant).max_request_body_bytes;
    let raw = read_body(body, limit)
        .await
        .map_err(|(s, m)| otlp_status(encoding, s, m))?;
    let body = decode_content_encoding(&raw, header_str(headers, header::CONTENT_ENCODING), limit)
        .map_err(|e| otlp_status(encoding, body_error_status(&e), e.to_string()))?;
    Ok(OtlpRequest {
        encoding,
        tenant,
        body,
    })
}

/// `POST /otlp/v1/metrics` (Mimir), `/v1/metrics` (OTLP default), `/api/v1/otlp/v1/metrics` (Prometheus).
pub(super) async fn metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = match read_request(&app, &headers, body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let req = match decode_metrics_request(&r.body, r.encoding) {
        Ok(req) => req,
        Err(e) => return otlp_status(r.encoding, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let out = ingest_otlp_metrics(&app, &r.tenant, "otlp_http", &req).await;
    respond(r.encoding, out)
}

/// `POST /otlp/v1/logs` (Loki), `/v1/logs` (OTLP default).
pub(super) async fn logs(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let r = match read_request(&app, &headers, body).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let req = match decode_logs_request(&r.body, r.encoding) {
        Ok(req) => req,
        Err(e) => return otlp_status(r.encoding, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let out = ingest_otlp_logs(&app, &r.tenant, &req).await;
    respond(r.encoding, out)
}

/// An export response in OTLP/JSON. Written by hand: the generated serde
/// code writes the 64-bit count as a number, OTLP/JSON wants a string.
trait ExportResponse: Message {
    fn to_json(&self) -> Value;
}

impl ExportResponse for ExportMetricsServiceResponse {
    fn to_json(&self) -> Value {
        match &self.partial_success {
            None => json!({}),
            Some(p) => json!({
                "partialSuccess": {
                    "rejectedDataPoints": p.rejected_data_points.to_string(),
                    "errorMessage": p.error_message,
                }
            }),
        }
    }
}

impl ExportResponse for ExportLogsServiceResponse {
    fn to_json(&self) -> Value {
        match &self.partial_success {
            None => json!({}),
            Some(p) => json!({
                "partialSuccess": {
                    "rejectedLogRecords": p.rejected_log_records.to_string(),
                    "errorMessage": p.error_message,
                }
            }),
        }
    }
}

fn respond<R: ExportResponse>(encoding: OtlpEncoding, out: OtlpOutcome<R>) -> Response {
    match out {
        OtlpOutcome::Done(resp) => match encoding {
            OtlpEncoding::Protobuf => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                resp.encode_to_vec(),
            )
                .into_response(),
            OtlpEncoding::Json => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                resp.to_json().to_string(),
            )
                .into_response(),
        },
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
            json!({"code": code, "message": message}).to_string(),
        )
            .into_response(),
    }
}
