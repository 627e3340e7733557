//! OTLP decoding and translation: metrics to Prometheus series, logs to
//! Loki streams.
//!
//! `decode` turns an (already decompressed) OTLP/HTTP or OTLP/gRPC body into
//! an export request; `metrics` translates metrics into a
//! [`WriteBatch`](miru_model::WriteBatch) with the naming rules of
//! Prometheus' and Mimir's OTLP endpoints (`names`, `attributes`), counting
//! what cannot be stored for the partial-success response; `logs`
//! translates log records into streams as Loki's OTLP endpoint does.

mod attributes;
mod decode;
mod logs;
mod metrics;
mod names;
mod output;
mod points;

pub use decode::{DecodeError, OtlpEncoding, decode_logs_request, decode_metrics_request};
pub use logs::{INDEX_LABEL_RESOURCE_ATTRIBUTES, UNKNOWN_SERVICE, translate_logs};
pub use metrics::{OtlpOptions, OtlpTranslation, translate_metrics};
