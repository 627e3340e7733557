//! The ingestion paths every protocol goes through after decoding, one for
//! metrics (`ingest`) and one for logs (`ingest_logs`): rate limit,
//! validation, append (WAL + head), accounting. OTLP requests of either
//! signal are translated first and answered with partial success.

use std::time::Duration;

use miru_ingest::otlp::{translate_logs, translate_metrics};
use miru_ingest::validate::validate_batch;
use miru_model::{TenantId, WriteBatch};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

use crate::app::App;
use crate::self_metrics::{ProtocolLabels, TenantLabel};

/// How a write ended, independent of the protocol that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestStatus {
    /// Everything valid was stored.
    Ok,
    /// Some data was invalid (400); the valid rest was stored.
    BadData,
    /// A per-tenant limit refused data (429); the rest was stored.
    Limited,
    /// Storage failed; nothing is acknowledged (5xx, senders retry).
    Unavailable,
}

#[derive(Debug)]
pub struct IngestOutcome {
    pub status: IngestStatus,
    pub message: Option<String>,
    /// Float samples stored (or identical resends of stored ones).
    pub samples_written: u64,
    pub histograms_written: u64,
    pub exemplars_written: u64,
    /// Samples, exemplars and histograms not stored (for OTLP partial success).
    pub rejected: u64,
}

pub async fn ingest(
    app: &App,
    tenant: &TenantId,
    protocol: &'static str,
    mut batch: WriteBatch,
) -> IngestOutcome {
    let m = &app.metrics;
    // Native histogram samples count as samples, as in Mimir.
    let samples = (batch.sample_count() + batch.histogram_count()) as u64;
    let exemplars = batch.exemplar_count() as u64;
    m.received_samples
        .get_or_create(&ProtocolLabels {
            tenant: tenant.to_string(),
            protocol: protocol.to_string(),
        })
        .inc_by(samples);
    m.received_exemplars
        .get_or_create(&TenantLabel {
            tenant: tenant.to_string(),
        })
        .inc_by(exemplars);
    let limits = app.limits.for_tenant(tenant);
    let cost = samples + exemplars + batch.metadata.len() as u64;
    if let Err(e) = app.limits.take_ingestion(tenant, cost) {
        m.discard(tenant, "rate_limited", samples);
        return IngestOutcome {
            status: IngestStatus::Limited,
            message: Some(e.to_string()),
            samples_written: 0,
            histograms_written: 0,
            exemplars_written: 0,
            rejected: samples + exemplars,
        };
    }
    let rej = validate_batch(&mut batch, &limits, now_ms());
    for (reason, n) in &rej.counts {
        m.discard(tenant, reason.as_str(), *n);
    }
    m.discard(
        tenant,
        miru_ingest::validate::Reason::NativeHistogramsDisabled.as_str(),
        rej.silent,
    );
    let append_limits = miru_storage::AppendLimits {
        max_series: limits.max_global_series_per_user,
        out_of_order_window: Duration::from_secs(limits.out_of_order_time_window_s),
        max_exemplars: limits.max_global_exemplars_per_user,
    };
    let exemplars_after_validation = batch.exemplar_count() as u64;
    match app.storage.append(tenant, batch, append_limits).await {
        Err(e) => {
            tracing::error!(tenant = %tenant, error = %e, "append failed");
            IngestOutcome {
                status: IngestStatus::Unavailable,
                message: Some(format!("storage unavailable: {e}")),
                samples_written: 0,
                histograms_written: 0,
                exemplars_written: 0,
                rejected: samples + exemplars,
            }
        }
        Ok(r) => {
            let tl = TenantLabel {
                tenant: tenant.to_string(),
            };
            m.accepted_samples
                .get_or_create(&tl)
                .inc_by(r.samples_accepted + r.histograms_accepted);
            m.accepted_exemplars
                .get_or_create(&tl)
                .inc_by(r.exemplars_accepted);
            m.discarded_exemplars
                .get_or_create(&tl)
                .inc_by(exemplars - exemplars_after_validation + r.exemplars_dropped);
            for (reason, n) in &r.rejected {
                m.discard(tenant, reason, *n);
            }
            let head_rejected: u64 = r.rejected.iter().map(|(_, n)| n).sum();
            let (status, message) = match (&r.first_error, &rej.first_message) {
                (Some((true, msg)), _) => (IngestStatus::Limited, Some(msg.clone())),
                (_, Some(msg)) => (IngestStatus::BadData, Some(msg.clone())),
                (Some((false, msg)), None) => (IngestStatus::BadData, Some(msg.clone())),
                (None, None) => (IngestStatus::Ok, None),
            };
            IngestOutcome {
                status,
                message,
                samples_written: r.samples_accepted + r.samples_deduplicated,
                histograms_written: r.histograms_accepted + r.histograms_deduplicated,
                exemplars_written: r.exemplars_accepted,
                rejected: rej.total() + head_rejected,
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What an OTLP export ends as, for either transport to render. `R` is the
/// signal's export response.
#[derive(Debug)]
pub enum OtlpOutcome<R> {
    /// Stored; the response carries partial success when anything was dropped.
    Done(R),
    /// A per-tenant limit refused data (HTTP 429, gRPC RESOURCE_EXHAUSTED).
    Limited(String),
    /// Storage failed (HTTP 503, gRPC UNAVAILABLE); the client retries.
    Unavailable(String),
}

/// OTLP metrics after decoding, shared by OTLP/HTTP and OTLP/gRPC:
/// translate, count what could not be translated, ingest, and build the
/// partial-success answer the OTLP spec asks for.
pub async fn ingest_otlp_metrics(
    app: &App,
    tenant: &TenantId,
    protocol: &'static str,
    req: &ExportMetricsServiceRequest,
) -> OtlpOutcome<ExportMetricsServiceResponse> {
    let tr = translate_metrics(req, &app.otlp);
    if tr.rejected_points > 0 {
        app.metrics
            .discard(tenant, "otlp_untranslatable", tr.rejected_points as u64);
    }
    let out = ingest(app, tenant, protocol, tr.batch).await;
    match out.status {
        IngestStatus::Ok | IngestStatus::BadData => {
            let rejected = tr.rejected_points + out.rejected as i64;
            let message = [Some(tr.error_message), out.message]
                .into_iter()
                .flatten()
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            OtlpOutcome::Done(ExportMetricsServiceResponse {
                partial_success: (rejected > 0 || !message.is_empty()).then_some(
                    ExportMetricsPartialSuccess {
                        rejected_data_points: rejected,
                        error_message: message,
                    },
                ),
            })
        }
        IngestStatus::Limited => OtlpOutcome::Limited(out.message.unwrap_or_default()),
        IngestStatus::Unavailable => OtlpOutcome::Unavailable(out.message.unwrap_or_default()),
    }
}

/// What a log push ended as, for the Loki and OTLP logs endpoints.
#[derive(Debug)]
pub struct LogIngestOutcome {
    pub status: IngestStatus,
    pub message: Option<String>,
    pub entries_written: u64,
    pub rejected: u64,
}

/// The one path every log protocol goes through after decoding: rate
/// limit (bytes), validation, append (WAL + head). Invalid entries are
/// dropped and the rest stored, as Loki does; the status says whether
/// anything was refused and why.
pub async fn ingest_logs(
    app: &App,
    tenant: &TenantId,
    mut streams: Vec<miru_model::LogStreamWrite>,
) -> LogIngestOutcome {
    let lines: u64 = streams.iter().map(|s| s.entries.len() as u64).sum();
    let bytes: u64 = streams
        .iter()
        .flat_map(|s| s.entries.iter())
        .map(|e| {
            (e.line.len()
                + e.structured_metadata
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()) as u64
        })
        .sum();
    let m = &app.metrics;
    let tenant_label = TenantLabel {
        tenant: tenant.to_string(),
    };
    m.received_log_lines
        .get_or_create(&tenant_label)
        .inc_by(lines);
    m.received_log_bytes
        .get_or_create(&tenant_label)
        .inc_by(bytes);
    if let Err(e) = app.limits.take_log_ingestion(tenant, bytes, lines) {
        m.discard_log_lines(tenant, "rate_limited", lines);
        return LogIngestOutcome {
            status: IngestStatus::Limited,
            message: Some(e.to_string()),
            entries_written: 0,
            rejected: lines,
        };
    }
    let limits = app.limits.for_tenant(tenant);
    let now_ns = now_ms().saturating_mul(1_000_000);
    let v = miru_ingest::loki::validate_streams(&mut streams, &limits, now_ns);
    for (reason, n) in &v.counts {
        m.discard_log_lines(tenant, reason.as_str(), *n);
    }
    miru_ingest::loki::discover(&mut streams, &limits);
    let append_limits = miru_storage::logs::LogAppendLimits {
        max_streams: limits.max_global_streams_per_user,
        out_of_order_window_ns: (limits.log_out_of_order_window_s as i64)
            .saturating_mul(1_000_000_000),
    };
    // Open tails see what was accepted; a copy is kept only when there
    // are any.
    let for_tails = app.tails.has_tails(tenant).then(|| streams.clone());
    match app
        .storage
        .append_logs(tenant, streams, append_limits)
        .await
    {
        Err(e) => {
            m.discard_log_lines(tenant, "storage_unavailable", lines - v.dropped());
            tracing::error!(tenant = %tenant, error = %e, "log append failed");
            LogIngestOutcome {
                status: IngestStatus::Unavailable,
                message: Some(format!("storage unavailable: {e}")),
                entries_written: 0,
                rejected: lines,
            }
        }
        Ok(r) => {
            if let Some(streams) = for_tails {
                app.tails.publish(tenant, &streams);
            }
            for (reason, n) in &r.rejected {
                m.discard_log_lines(tenant, reason.as_str(), *n);
            }
            m.accepted_log_lines
                .get_or_create(&tenant_label)
                .inc_by(r.entries_accepted + r.entries_deduplicated);
            let head_rejected: u64 = r.rejected.iter().map(|(_, n)| n).sum();
            let (status, message) = match (&r.first_error, &v.first_error) {
                (Some((reason, msg)), _) if reason.is_limit() => {
                    (IngestStatus::Limited, Some(msg.clone()))
                }
                (_, Some(msg)) => (IngestStatus::BadData, Some(msg.clone())),
                (Some((_, msg)), None) => (IngestStatus::BadData, Some(msg.clone())),
                (None, None) => (IngestStatus::Ok, None),
            };
            LogIngestOutcome {
                status,
                message,
                entries_written: r.entries_accepted + r.entries_deduplicated,
                rejected: v.dropped() + head_rejected,
            }
        }
    }
}

/// OTLP logs after decoding, shared by OTLP/HTTP and OTLP/gRPC: translate
/// to streams as Loki does, ingest, and report the entries that validation
/// or the head refused (with the first reason) as partial success.
pub async fn ingest_otlp_logs(
    app: &App,
    tenant: &TenantId,
    req: &ExportLogsServiceRequest,
) -> OtlpOutcome<ExportLogsServiceResponse> {
    let streams = translate_logs(req, now_ms().saturating_mul(1_000_000));
    let out = ingest_logs(app, tenant, streams).await;
    match out.status {
        IngestStatus::Ok | IngestStatus::BadData => {
            let message = out.message.unwrap_or_default();
            let rejected = i64::try_from(out.rejected).unwrap_or(i64::MAX);
            OtlpOutcome::Done(ExportLogsServiceResponse {
                partial_success: (rejected > 0 || !message.is_empty()).then_some(
                    ExportLogsPartialSuccess {
                        rejected_log_records: rejected,
                        error_message: message,
                    },
                ),
            })
        }
        IngestStatus::Limited => OtlpOutcome::Limited(out.message.unwrap_or_default()),
        IngestStatus::Unavailable => OtlpOutcome::Unavailable(out.message.unwrap_or_default()),
    }
}
