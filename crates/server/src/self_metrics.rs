//! miru's own metrics, served at `/metrics` in the Prometheus text format.

use std::sync::Arc;

use miru_model::TenantId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub tenant: String,
    pub protocol: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub tenant: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub operation: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabels {
    pub tenant: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub status: String,
}

/// Every self-metric, registered once at start-up.
pub struct SelfMetrics {
    pub registry: Registry,
    pub received_samples: Family<ProtocolLabels, Counter>,
    pub accepted_samples: Family<TenantLabel, Counter>,
    pub discarded_samples: Family<ReasonLabels, Counter>,
    pub received_exemplars: Family<TenantLabel, Counter>,
    pub accepted_exemplars: Family<TenantLabel, Counter>,
    pub discarded_exemplars: Family<TenantLabel, Counter>,
    /// Log entries (lines) and their bytes (line + structured metadata),
    /// as Loki's distributor counts them.
    pub received_log_lines: Family<TenantLabel, Counter>,
    pub received_log_bytes: Family<TenantLabel, Counter>,
    pub accepted_log_lines: Family<TenantLabel, Counter>,
    pub discarded_log_lines: Family<ReasonLabels, Counter>,
    pub log_head_streams: Family<TenantLabel, Gauge>,
    pub log_head_bytes: Gauge,
    pub wal_fsync_seconds: Histogram,
    pub wal_bytes: Counter,
    pub head_series: Family<TenantLabel, Gauge>,
    pub head_samples: Gauge,
    pub parts: Family<TenantLabel, Gauge>,
    pub part_bytes: Family<TenantLabel, Gauge>,
    pub parts_written: Family<PartLabels, Counter>,
    pub part_bytes_written: Family<PartLabels, Counter>,
    pub object_store_ops: Family<OpLabels, Counter>,
    pub http_requests: Family<RouteLabels, Counter>,
    pub runtime_config_reload_ok: Gauge,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SelfMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("miru");
        let m = SelfMetrics {
            received_samples: Family::default(),
            accepted_samples: Family::default(),
            discarded_samples: Family::default(),
            received_exemplars: Family::default(),
            accepted_exemplars: Family::default(),
            discarded_exemplars: Family::default(),
            received_log_lines: Family::default(),
            received_log_bytes: Family::default(),
            accepted_log_lines: Family::default(),
            discarded_log_lines: Family::default(),
            log_head_streams: Family::default(),
            log_head_bytes: Gauge::default(),
            wal_fsync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            wal_bytes: Counter::default(),
            head_series: Family::default(),
            head_samples: Gauge::default(),
            parts: Family::default(),
            part_bytes: Family::default(),
            parts_written: Family::default(),
            part_bytes_written: Family::default(),
            object_store_ops: Family::default(),
            http_requests: Family::default(),
            runtime_config_reload_ok: Gauge::default(),
            registry: Registry::default(),
        };
        r.register(
            "received_samples",
            "Samples received, by tenant and protocol",
            m.received_samples.clone(),
        );
        r.register(
            "accepted_samples",
            "Samples written to the WAL and head",
            m.accepted_samples.clone(),
        );
        r.register(
            "discarded_samples",
            "Samples rejected, by tenant and reason",
            m.discarded_samples.clone(),
        );
        r.register(
            "received_exemplars",
            "Exemplars received",
            m.received_exemplars.clone(),
        );
        r.register(
            "accepted_exemplars",
            "Exemplars stored",
            m.accepted_exemplars.clone(),
        );
        r.register(
            "discarded_exemplars",
            "Exemplars dropped or rejected",
            m.discarded_exemplars.clone(),
        );
        r.register(
            "received_log_lines",
            "Log entries received, by tenant",
            m.received_log_lines.clone(),
        );
        r.register(
            "received_log_bytes",
            "Bytes of log lines and structured metadata received, by tenant",
            m.received_log_bytes.clone(),
        );
        r.register(
            "accepted_log_lines",
            "Log entries written to the WAL and log head (identical resends included)",
            m.accepted_log_lines.clone(),
        );
        r.register(
            "discarded_log_lines",
            "Log entries refused, by tenant and reason (Loki's reason names)",
            m.discarded_log_lines.clone(),
        );
        r.register(
            "log_head_streams",
            "Log streams in the in-memory log head, by tenant",
            m.log_head_streams.clone(),
        );
        r.register(
            "log_head_bytes",
            "Bytes of log entries in the log heads not yet cut into parts",
            m.log_head_bytes.clone(),
        );
        r.register(
            "wal_fsync_duration_seconds",
            "Time of one WAL write + fsync (one group commit)",
            m.wal_fsync_seconds.clone(),
        );
        r.register(
            "wal_written_bytes",
            "Bytes written to the WAL",
            m.wal_bytes.clone(),
        );
        r.register(
            "head_series",
            "Series in the in-memory head, by tenant",
            m.head_series.clone(),
        );
        r.register(
            "head_samples",
            "Samples in the in-memory head not yet cut into parts",
            m.head_samples.clone(),
        );
        r.register("parts", "Parts in the catalog, by tenant", m.parts.clone());
        r.register(
            "part_bytes",
            "Bytes of parts in the catalog, by tenant",
            m.part_bytes.clone(),
        );
        r.register(
            "parts_written",
            "Parts written, by tenant and kind (flush, compaction)",
            m.parts_written.clone(),
        );
        r.register(
            "part_written_bytes",
            "Bytes of parts written",
            m.part_bytes_written.clone(),
        );
        r.register(
            "object_store_operations",
            "Object store operations, by operation and status",
            m.object_store_ops.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests, by route and status code",
            m.http_requests.clone(),
        );
        r.register(
            "runtime_config_last_reload_successful",
            "1 when the last runtime config reload succeeded",
            m.runtime_config_reload_ok.clone(),
        );
        SelfMetrics { registry: r, ..m }
    }

    pub fn discard(&self, tenant: &TenantId, reason: &str, n: u64) {
        if n > 0 {
            self.discarded_samples
                .get_or_create(&ReasonLabels {
                    tenant: tenant.to_string(),
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
    }
}

impl SelfMetrics {
    pub fn discard_log_lines(&self, tenant: &TenantId, reason: &str, n: u64) {
        if n > 0 {
            self.discarded_log_lines
                .get_or_create(&ReasonLabels {
                    tenant: tenant.to_string(),
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
    }
}

/// Storage hooks recorded into the self-metrics.
pub struct StorageObserver(pub Arc<SelfMetrics>);

impl miru_storage::Observer for StorageObserver {
    fn wal_fsync(&self, seconds: f64, bytes: usize) {
        self.0.wal_fsync_seconds.observe(seconds);
        self.0.wal_bytes.inc_by(bytes as u64);
    }

    fn part_written(&self, tenant: &TenantId, bytes: u64, _samples: u64, compaction: bool) {
        let l = PartLabels {
            tenant: tenant.to_string(),
            kind: if compaction { "compaction" } else { "flush" }.into(),
        };
        self.0.parts_written.get_or_create(&l).inc();
        self.0.part_bytes_written.get_or_create(&l).inc_by(bytes);
    }

    fn object_store_op(&self, op: &'static str, ok: bool) {
        self.0
            .object_store_ops
            .get_or_create(&OpLabels {
                operation: op.into(),
                status: if ok { "success" } else { "error" }.into(),
            })
            .inc();
    }
}
