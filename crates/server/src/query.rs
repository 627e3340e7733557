//! PromQL execution against storage: the series source the engine reads
//! through (with per-query budgets and tenant federation), the concurrency
//! limiter, and cancellation when the client goes away.
//!
//! The engine is synchronous; a query runs on a blocking thread and reads
//! storage by blocking on its async scan API there.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miru_model::{LabelsBuilder, Matcher, TenantId};
use miru_promql::{
    Engine, EngineOptions, LoadedShard, QueryContext, QueryError, QueryResult, Series, SeriesShard,
    SeriesSource,
};
use miru_storage::{ScanBudget, ScanLimit, ScanShard, SeriesSamples, Storage, StorageError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::QuerySection;

/// The label Mimir adds to series of a federated (`a|b`) query.
pub const TENANT_LABEL: &str = "__tenant_id__";

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
        miru_promql::init_query_threads(threads_per_query(&cfg));
        let engine = Engine::new(EngineOptions {
            lookback_delta_ms: cfg.lookback_delta.as_millis() as i64,
            max_samples: cfg.max_samples,
            parallelism: threads_per_query(&cfg),
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
        let permits = self.acquire(tenants, deadline).await?;
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
            budget: ScanBudget::new(self.cfg.max_series as u64, self.cfg.max_memory_bytes),
        };
        let query = query.to_string();
        // The slots go with the evaluation, not with this future: a query
        // whose client went away holds its slots until it has noticed the
        // cancellation and stopped, so abandoned queries cannot pile up
        // beyond the concurrency limits.
        tokio::task::spawn_blocking(move || {
            let _permits = permits;
            match kind {
                QueryKind::Instant { time_ms } => engine.instant(&source, &query, time_ms, &ctx),
                QueryKind::Range {
                    start_ms,
                    end_ms,
                    step_ms,
                } => engine.range(&source, &query, start_ms, end_ms, step_ms, &ctx),
            }
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "query evaluation panicked");
            Err(QueryError::Source(format!("query evaluation failed: {e}")))
        })
    }

    /// A global slot and one per tenant, waited for until `deadline`.
    pub(crate) async fn acquire(
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

/// `query.parallelism`, with 0 meaning one thread per core.
pub(crate) fn threads_per_query(cfg: &QuerySection) -> usize {
    match cfg.parallelism {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Sets the query's cancel flag when the request future is dropped.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Storage as the engine sees it: one tenant, or several with
/// `__tenant_id__` added to every series (and matchable), as Mimir's
/// tenant federation does.
struct StorageSource {
    storage: Storage,
    tenants: Vec<TenantId>,
    rt: tokio::runtime::Handle,
    /// Shared by every selector of the query.
    budget: ScanBudget,
}

/// The engine's error for a storage failure; limits name their setting.
fn source_error(e: StorageError) -> QueryError {
    match e {
        StorageError::Limit(ScanLimit::Series(n)) => QueryError::Execution(format!(
            "the query would load more than {n} series (query.max_series={n}); narrow the selectors or the time range"
        )),
        StorageError::Limit(ScanLimit::Bytes(n)) => QueryError::Execution(format!(
            "the query would hold more than {n} bytes of series data (query.max_memory_bytes={n}); narrow the selectors or the time range"
        )),
        e => QueryError::Source(e.to_string()),
    }
}

impl StorageSource {
    /// The storage matchers of a selector and the tenants it covers (a
    /// federated query matches `__tenant_id__` against the tenant names).
    fn split_matchers(&self, matchers: &[Matcher]) -> (Vec<&TenantId>, Vec<Matcher>) {
        let federated = self.tenants.len() > 1;
        let (tenant_matchers, matchers): (Vec<&Matcher>, Vec<&Matcher>) = matchers
            .iter()
            .partition(|m| federated && m.name == TENANT_LABEL);
        let tenants = self
            .tenants
            .iter()
            .filter(|t| tenant_matchers.iter().all(|m| m.matches_value(t.as_str())))
            .collect();
        (tenants, matchers.into_iter().cloned().collect())
    }
}

impl SeriesSource for StorageSource {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let federated = self.tenants.len() > 1;
        let (tenants, matchers) = self.split_matchers(matchers);
        let mut out = Vec::new();
        for t in tenants {
            let plan = self
                .storage
                .plan_scan(t, &matchers, mint_ms, maxt_ms, &self.budget, 1);
            for shard in self.rt.block_on(plan).map_err(source_error)? {
                let scan = self
                    .storage
                    .scan_shard(shard, mint_ms, maxt_ms, &self.budget, |s| {
                        out.push(to_series(s, federated.then_some(t)));
                        ControlFlow::Continue(())
                    });
                self.rt.block_on(scan).map_err(source_error)?;
            }
        }
        if federated {
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        Ok(out)
    }

    /// A selector of one tenant is split along the storage's scan shards;
    /// a federated one (series of several tenants, merged and sorted) is
    /// read whole.
    fn select_shards(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        max_shards: usize,
    ) -> Result<Vec<Box<dyn SeriesShard + Send + '_>>, QueryError> {
        if self.tenants.len() > 1 {
            let all = self.select(matchers, mint_ms, maxt_ms)?;
            return Ok(vec![Box::new(LoadedShard(all))]);
        }
        let (tenants, matchers) = self.split_matchers(matchers);
        let Some(t) = tenants.first() else {
            return Ok(Vec::new());
        };
        let plan = self
            .storage
            .plan_scan(t, &matchers, mint_ms, maxt_ms, &self.budget, max_shards);
        let shards = self.rt.block_on(plan).map_err(source_error)?;
        Ok(shards
            .into_iter()
            .map(|shard| {
                Box::new(StorageShard {
                    src: self,
                    shard,
                    mint_ms,
                    maxt_ms,
                }) as Box<dyn SeriesShard + Send + '_>
            })
            .collect())
    }
}

/// A storage scan shard, decoded on whichever thread runs it.
struct StorageShard<'s> {
    src: &'s StorageSource,
    shard: ScanShard,
    mint_ms: i64,
    maxt_ms: i64,
}

impl SeriesShard for StorageShard<'_> {
    fn for_each(
        self: Box<Self>,
        visit: &mut dyn FnMut(Series) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let mut failed = None;
        let scan = self.src.storage.scan_shard(
            self.shard,
            self.mint_ms,
            self.maxt_ms,
            &self.src.budget,
            |s| match visit(to_series(s, None)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(e) => {
                    failed = Some(e);
                    ControlFlow::Break(())
                }
            },
        );
        self.src.rt.block_on(scan).map_err(source_error)?;
        failed.map_or(Ok(()), Err)
    }
}

/// A storage series as the engine reads it; `tenant` adds the federation
/// label.
fn to_series(s: SeriesSamples, tenant: Option<&TenantId>) -> Series {
    let labels = match tenant {
        Some(t) => {
            let mut b = LabelsBuilder::with_capacity(s.labels.len() + 1);
            for l in s.labels.iter() {
                b.set(Arc::clone(&l.name), Arc::clone(&l.value));
            }
            b.set(TENANT_LABEL, t.as_str());
            b.build()
        }
        None => s.labels,
    };
    Series {
        labels,
        floats: s.samples,
        histograms: s.histograms,
    }
}
