//! Per-tenant limits: defaults from the config file, overrides per tenant
//! from a runtime file that is reloaded without restart. Names follow
//! Mimir's so that operators can carry their settings over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use miru_model::TenantId;
use serde::{Deserialize, Serialize};

/// How metric and label names are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NameValidation {
    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names, `[a-zA-Z_][a-zA-Z0-9_]*` for label names.
    #[default]
    Legacy,
    /// Any non-empty UTF-8 name (Prometheus 3).
    Utf8,
}

/// Limits for one tenant. Zero disables a limit unless its doc says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// Samples (plus exemplars and metadata) accepted per second, sustained.
    pub ingestion_rate: f64,
    /// Samples accepted in one burst above the rate.
    pub ingestion_burst_size: u64,
    /// Series held in the head at once; new series past it get a 429.
    pub max_global_series_per_user: u64,
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_metadata_length: usize,
    /// Exemplars kept in memory for the tenant (a ring); 0 drops exemplars.
    pub max_global_exemplars_per_user: usize,
    /// Largest decompressed request body, in bytes (413 above it).
    pub max_request_body_bytes: usize,
    /// Samples newer than now + this are rejected. Seconds.
    pub creation_grace_period_s: u64,
    /// Samples older than now - this are rejected; 0 turns the check off. Seconds.
    pub past_grace_period_s: u64,
    /// How far behind a series' newest sample a sample may still land. Seconds.
    pub out_of_order_time_window_s: u64,
    /// Days of data kept for the tenant; 0 keeps everything.
    pub retention_period_days: u64,
    pub name_validation_scheme: NameValidation,
    /// Native histogram samples are stored; when false they are dropped
    /// (counted as discarded, not an error), as Mimir does.
    pub native_histograms_ingestion_enabled: bool,
    /// Buckets (both sides) a native histogram sample may have; 0 = no limit.
    pub max_native_histogram_buckets: usize,
    /// Log bytes (lines and structured metadata) accepted per second,
    /// sustained, in MB (Loki's `ingestion_rate_mb`); 0 turns it off.
    pub ingestion_rate_mb: f64,
    /// Log bytes accepted in one burst above the rate, in MB.
    pub ingestion_burst_size_mb: f64,
    /// Log streams held in the head at once; new streams past it get a 429.
    pub max_global_streams_per_user: u64,
    /// Longest log line in bytes (400 above it); 0 = no limit.
    pub max_line_size: usize,
    /// Cut longer lines to `max_line_size` instead of rejecting them.
    pub max_line_size_truncate: bool,
    /// Reject log entries older than `reject_old_samples_max_age_s`.
    pub reject_old_samples: bool,
    pub reject_old_samples_max_age_s: u64,
    /// How far behind a stream's newest entry an entry may land. Seconds
    /// (Loki: half of `max_chunk_age`, 1 h).
    pub log_out_of_order_window_s: u64,
    /// Structured metadata per entry: bytes and pairs; 0 = no limit.
    pub max_structured_metadata_size: usize,
    pub max_structured_metadata_entries_count: usize,
    /// Labels tried in order for a `service_name` when a log stream has
    /// none (`unknown_service` when none is set); empty turns it off
    /// (Loki's `discover_service_name`).
    pub discover_service_name: Vec<String>,
    /// Add a `detected_level` structured-metadata pair to every log entry
    /// (Loki's `discover_log_levels`).
    pub discover_log_levels: bool,
    /// Label, structured-metadata, JSON and logfmt field names a level is
    /// read from before the line's words (Loki's `log_level_fields`).
    pub log_level_fields: Vec<String>,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            ingestion_rate: 1_000_000.0,
            ingestion_burst_size: 10_000_000,
            max_global_series_per_user: 5_000_000,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            max_metadata_length: 1024,
            max_global_exemplars_per_user: 100_000,
            max_request_body_bytes: 100 << 20,
            creation_grace_period_s: 600,
            past_grace_period_s: 0,
            out_of_order_time_window_s: 0,
            retention_period_days: 0,
            name_validation_scheme: NameValidation::Legacy,
            native_histograms_ingestion_enabled: true,
            max_native_histogram_buckets: 0,
            ingestion_rate_mb: 4.0,
            ingestion_burst_size_mb: 6.0,
            max_global_streams_per_user: 5_000,
            max_line_size: 256 << 10,
            max_line_size_truncate: false,
            reject_old_samples: true,
            reject_old_samples_max_age_s: 7 * 86_400,
            log_out_of_order_window_s: 3_600,
            max_structured_metadata_size: 64 << 10,
            max_structured_metadata_entries_count: 128,
            discover_service_name: crate::loki::default_service_name_labels(),
            discover_log_levels: true,
            log_level_fields: crate::loki::default_log_level_fields(),
        }
    }
}

/// The runtime file: `overrides: {tenant: {limit: value}}`, as Mimir's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeOverrides {
    pub overrides: HashMap<String, serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OverridesError {
    #[error("override for tenant {tenant:?} is invalid: {source}")]
    Invalid {
        tenant: String,
        source: serde_json::Error,
    },
}

/// Resolves the limits that apply to a tenant: defaults merged with the
/// tenant's overrides. Cheap to clone and share.
#[derive(Debug, Clone)]
pub struct Limits {
    inner: Arc<RwLock<LimitsState>>,
    rate: Arc<Mutex<HashMap<TenantId, TokenBucket>>>,
    /// Log bytes, a bucket apart from samples (Loki and Mimir limits).
    log_rate: Arc<Mutex<HashMap<TenantId, TokenBucket>>>,
}

#[derive(Debug)]
struct LimitsState {
    defaults: TenantLimits,
    per_tenant: HashMap<String, Arc<TenantLimits>>,
    default_arc: Arc<TenantLimits>,
}

impl Limits {
    pub fn new(defaults: TenantLimits) -> Self {
        Limits {
            inner: Arc::new(RwLock::new(LimitsState {
                default_arc: Arc::new(defaults.clone()),
                defaults,
                per_tenant: HashMap::new(),
            })),
            rate: Arc::new(Mutex::new(HashMap::new())),
            log_rate: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn defaults(&self) -> TenantLimits {
        self.read().defaults.clone()
    }

    pub fn for_tenant(&self, tenant: &TenantId) -> Arc<TenantLimits> {
        let s = self.read();
        s.per_tenant
            .get(tenant.as_str())
            .map_or_else(|| Arc::clone(&s.default_arc), Arc::clone)
    }

    /// Replaces all overrides at once. Each tenant's partial map is merged
    /// over the defaults, so an override names only what differs.
    pub fn apply_overrides(&self, o: &RuntimeOverrides) -> Result<(), OverridesError> {
        let defaults = self.defaults();
        let base = serde_json::to_value(&defaults).expect("BUG: limits serialise to JSON");
        let mut per_tenant = HashMap::new();
        for (tenant, partial) in &o.overrides {
            let mut merged = base.clone();
            if let serde_json::Value::Object(m) = &mut merged {
                for (k, v) in partial {
                    m.insert(k.clone(), v.clone());
                }
            }
            let limits: TenantLimits =
                serde_json::from_value(merged).map_err(|source| OverridesError::Invalid {
                    tenant: tenant.clone(),
                    source,
                })?;
            per_tenant.insert(tenant.clone(), Arc::new(limits));
        }
        self.inner
            .write()
            .expect("BUG: limits lock poisoned")
            .per_tenant = per_tenant;
        Ok(())
    }

    /// Takes `n` tokens from the tenant's ingestion bucket. `Err` carries
    /// the limit that was hit, for the 429 message.
    pub fn take_ingestion(&self, tenant: &TenantId, n: u64) -> Result<(), RateLimited> {
        let l = self.for_tenant(tenant);
        if l.ingestion_rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.rate.lock().expect("BUG: rate lock poisoned");
        let b = buckets
            .entry(tenant.clone())
            .or_insert_with(|| TokenBucket::new(l.ingestion_burst_size as f64));
        if b.take(n as f64, l.ingestion_rate, l.ingestion_burst_size as f64) {
            Ok(())
        } else {
            Err(RateLimited {
                rate: l.ingestion_rate,
                burst: l.ingestion_burst_size,
                requested: n,
            })
        }
    }

    /// Takes `bytes` of log data from the tenant's log ingestion bucket.
    pub fn take_log_ingestion(
        &self,
        tenant: &TenantId,
        bytes: u64,
        lines: u64,
    ) -> Result<(), LogRateLimited> {
        let l = self.for_tenant(tenant);
        if l.ingestion_rate_mb <= 0.0 {
            return Ok(());
        }
        let rate = l.ingestion_rate_mb * 1_048_576.0;
        let burst = l.ingestion_burst_size_mb.max(l.ingestion_rate_mb) * 1_048_576.0;
        let mut buckets = self.log_rate.lock().expect("BUG: rate lock poisoned");
        let b = buckets
            .entry(tenant.clone())
            .or_insert_with(|| TokenBucket::new(burst));
        if b.take(bytes as f64, rate, burst) {
            Ok(())
        } else {
            Err(LogRateLimited {
                tenant: tenant.to_string(),
                rate_bytes: rate as u64,
                lines,
                bytes,
            })
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LimitsState> {
        self.inner.read().expect("BUG: limits lock poisoned")
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "ingestion rate limit ({rate} samples/s) with burst size {burst} exceeded while adding {requested} samples and metadata"
)]
pub struct RateLimited {
    pub rate: f64,
    pub burst: u64,
    pub requested: u64,
}

/// Loki's wording, so operators' alerts on the message keep working.
#[derive(Debug, thiserror::Error)]
#[error(
    "Ingestion rate limit exceeded for user {tenant} (limit: {rate_bytes} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your administrator to see if the limit can be increased (ingestion_rate_mb)"
)]
pub struct LogRateLimited {
    pub tenant: String,
    pub rate_bytes: u64,
    pub lines: u64,
    pub bytes: u64,
}

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(burst: f64) -> Self {
        TokenBucket {
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn take(&mut self, n: f64, rate: f64, burst: f64) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        // A request larger than the whole burst can never pass; let it
        // through when the bucket is full rather than reject it forever
        // would hide a misconfiguration, so reject it like Mimir does.
        if n <= self.tokens {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_over_defaults() {
        let l = Limits::new(TenantLimits::default());
        let o: RuntimeOverrides =
            serde_json::from_str(r#"{"overrides":{"t1":{"max_label_names_per_series":3}}}"#)
                .unwrap();
        l.apply_overrides(&o).unwrap();
        let t1 = TenantId::new("t1").unwrap();
        let t2 = TenantId::new("t2").unwrap();
        assert_eq!(l.for_tenant(&t1).max_label_names_per_series, 3);
        assert_eq!(l.for_tenant(&t1).max_label_name_length, 1024);
        assert_eq!(l.for_tenant(&t2).max_label_names_per_series, 30);
        let bad: RuntimeOverrides =
            serde_json::from_str(r#"{"overrides":{"t1":{"no_such_limit":3}}}"#).unwrap();
        assert!(l.apply_overrides(&bad).is_err());
    }

    #[test]
    fn rate_limit_bursts_then_rejects() {
        let l = Limits::new(TenantLimits {
            ingestion_rate: 1.0,
            ingestion_burst_size: 10,
            ..TenantLimits::default()
        });
        let t = TenantId::new("t").unwrap();
        assert!(l.take_ingestion(&t, 10).is_ok());
        let err = l.take_ingestion(&t, 5).unwrap_err();
        assert!(err.to_string().contains("rate limit"));
    }
}
