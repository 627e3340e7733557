//! PromQL execution against storage: the series source the engine reads
//! through (with per-query budgets and tenant federation), the concurrency
//! limiter, and cancellation when the client goes away.
//!
//! The engine is synchronous; a query runs on a blocking thread and reads
//! storage by blocking on its async scan API there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miru_model::{LabelsBuilder, Matcher, TenantId};
use miru_promql::{
    Engine, EngineOptions, QueryContext, QueryError, QueryResult, Series, SeriesSource,
};
use miru_storage::Storage;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::QuerySection;

/// The label Mimir adds to series of a federated (`a|b`) query.
pub const TENANT_LABEL: &str = "__tenant_id__";

/// Rough in-memory cost of one histogram sample besides its buckets.
const HISTOGRAM_BASE_BYTES: u64 = 160;

/// What a query asks for.
#[derive(Debug, Clone)]
pub enum QueryKind {
    Instant {
        time_ms: i64,
    },
    Range {
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    },
}

/// Runs PromQL queries within the configured bounds.
pub struct QueryService {
    engine: Engine,
    cfg: QuerySection,
    global: Arc<Semaphore>,
    per_tenant: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl QueryService {
    pub fn new(cfg: QuerySection) -> Self {
        let engine = Engine::new(EngineOptions {
            lookback_delta_ms: cfg.lookback_delta.as_millis() as i64,
            max_samples: cfg.max_samples,
            ..EngineOptions::default()
        });
        QueryService {
            engine,
            global: Arc::new(Semaphore::new(cfg.max_concurrent.max(1))),
            per_tenant: Mutex::new(HashMap::new()),
            cfg,
        }
    }

    pub fn config(&self) -> &QuerySection {
        &self.cfg
    }

    /// Evaluates `query` for `tenants` (several = a federated query). The
    /// returned future may be dropped at any time (client disconnect): the
    /// evaluation then stops at its next check.
    pub async fn run(
        &self,
        storage: &Storage,
        tenants: &[TenantId],
        query: &str,
        kind: QueryKind,
        timeout: Option<Duration>,
    ) -> Result<QueryResult, QueryError> {
        let timeout = timeout.map_or(self.cfg.timeout, |t| t.min(self.cfg.timeout));
        let deadline = Instant::now() + timeout;
        let _permits = self.acquire(tenants, deadline).await?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(Arc::clone(&cancel));
        let ctx = QueryContext {
            deadline: Some(deadline),
            cancel: Some(cancel),
        };
        let engine = self.engine.clone();
        let source = StorageSource {
            storage: storage.clone(),
            tenants: tenants.to_vec(),
            rt: tokio::runtime::Handle::current(),
            budget: Budget::new(&self.cfg),
        };
        let query = query.to_string();
        tokio::task::spawn_blocking(move || match kind {
            QueryKind::Instant { time_ms } => engine.instant(&source, &query, time_ms, &ctx),
            QueryKind::Range {
                start_ms,
                end_ms,
                step_ms,
            } => engine.range(&source, &query, start_ms, end_ms, step_ms, &ctx),
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "query evaluation panicked");
            Err(QueryError::Source(format!("query evaluation failed: {e}")))
        })
    }

    /// A global slot and one per tenant, waited for until `deadline`.
    async fn acquire(
        &self,
        tenants: &[TenantId],
        deadline: Instant,
    ) -> Result<Vec<OwnedSemaphorePermit>, QueryError> {
        let mut permits = Vec::with_capacity(tenants.len() + 1);
        let wait = |sem: Arc<Semaphore>, limit: &'static str, n: usize| async move {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, sem.acquire_owned()).await {
                Ok(Ok(p)) => Ok(p),
                _ => Err(QueryError::Execution(format!(
                    "query timed out waiting for one of {n} query slots ({limit}={n}); too many queries are running"
                ))),
            }
        };
        if self.cfg.max_concurrent_per_tenant > 0 {
            for t in tenants {
                let sem = {
                    let mut m = self.per_tenant.lock().expect("BUG: limiter lock poisoned");
                    Arc::clone(m.entry(t.as_str().to_string()).or_insert_with(|| {
                        Arc::new(Semaphore::new(self.cfg.max_concurrent_per_tenant))
                    }))
                };
                permits.push(
                    wait(
                        sem,
                        "query.max_concurrent_per_tenant",
                        self.cfg.max_concurrent_per_tenant,
                    )
                    .await?,
                );
            }
        }
        permits.push(
            wait(
                Arc::clone(&self.global),
                "query.max_concurrent",
                self.cfg.max_concurrent.max(1),
            )
            .await?,
        );
        Ok(permits)
    }
}

/// Sets the query's cancel flag when the request future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What one query has loaded so far, against its limits.
struct Budget {
    max_series: u64,
    max_bytes: u64,
    series: AtomicU64,
    bytes: AtomicU64,
}

impl Budget {
    fn new(cfg: &QuerySection) -> Self {
        Budget {
            max_series: cfg.max_series as u64,
            max_bytes: cfg.max_memory_bytes,
            series: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    fn charge(&self, s: &Series) -> Result<(), QueryError> {
        let series = self.series.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_series > 0 && series > self.max_series {
            return Err(QueryError::Execution(format!(
                "the query would load more than {} series (query.max_series={}); narrow the selectors or the time range",
                self.max_series, self.max_series
            )));
        }
        let hist_bytes: u64 = s
            .histograms
            .iter()
            .map(|h| {
                HISTOGRAM_BASE_BYTES
                    + 8 * (h.histogram.positive_buckets.len() + h.histogram.negative_buckets.len())
                        as u64
            })
            .sum();
        let bytes = s.labels.byte_size() as u64 + 16 * s.floats.len() as u64 + hist_bytes;
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if self.max_bytes > 0 && total > self.max_bytes {
            return Err(QueryError::Execution(format!(
                "the query would hold more than {} bytes of series data (query.max_memory_bytes={}); narrow the selectors or the time range",
                self.max_bytes, self.max_bytes
            )));
        }
        Ok(())
    }
}

/// Storage as the engine sees it: one tenant, or several with
/// `__tenant_id__` added to every series (and matchable), as Mimir's
/// tenant federation does.
struct StorageSource {
    storage: Storage,
    tenants: Vec<TenantId>,
    rt: tokio::runtime::Handle,
    budget: Budget,
}

impl SeriesSource for StorageSource {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let federated = self.tenants.len() > 1;
        let (tenant_matchers, matchers): (Vec<&Matcher>, Vec<&Matcher>) = matchers
            .iter()
            .partition(|m| federated && m.name == TENANT_LABEL);
        let matchers: Vec<Matcher> = matchers.into_iter().cloned().collect();
        let mut out = Vec::new();
        for t in &self.tenants {
            if !tenant_matchers.iter().all(|m| m.matches_value(t.as_str())) {
                continue;
            }
            let found = self
                .rt
                .block_on(self.storage.select(t, &matchers, mint_ms, maxt_ms))
                .map_err(|e| QueryError::Source(e.to_string()))?;
            for s in found {
                let labels = if federated {
                    let mut b = LabelsBuilder::with_capacity(s.labels.len() + 1);
                    for l in s.labels.iter() {
                        b.set(Arc::clone(&l.name), Arc::clone(&l.value));
                    }
                    b.set(TENANT_LABEL, t.as_str());
                    b.build()
                } else {
                    s.labels
                };
                let series = Series {
                    labels,
                    floats: s.samples,
                    histograms: s.histograms,
                };
                self.budget.charge(&series)?;
                out.push(series);
            }
        }
        if federated {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out)
    }
}
