//! OTLP metrics decoding and translation to Prometheus series.
//!
//! `decode` turns an (already decompressed) OTLP/HTTP or OTLP/gRPC body into
//! an `ExportMetricsServiceRequest`; `metrics` translates that into a
//! [`WriteBatch`](miru_model::WriteBatch) with the naming rules of
//! Prometheus' and Mimir's OTLP endpoints (`names`, `attributes`), counting
//! what cannot be stored for the partial-success response.

mod attributes;
mod decode;
mod metrics;
mod names;
mod output;
mod points;

pub use decode::{DecodeError, OtlpEncoding, decode_metrics_request};
pub use metrics::{OtlpOptions, OtlpTranslation, translate_metrics};
