//! LogQL execution against storage: the log source the engine reads
//! through (one query budget over heads and Parquet parts), the shared
//! query slots of `query.rs`, the timeout and cancellation on disconnect.
//! Like PromQL, the engine is synchronous and runs on a blocking thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miru_logql::{
    Engine, EngineOptions, LogQuery, LogSource, QueryContext, QueryError, SelectRequest,
    SourceError, StreamIter, Value,
};
use miru_model::TenantId;
use miru_storage::logs::LogReadHints;
use miru_storage::{ScanBudget, ScanLimit, Storage, StorageError};

use crate::query::{CancelOnDrop, QueryService};

/// What a LogQL request asks for.
#[derive(Debug, Clone)]
pub enum LogQlKind {
    Logs(LogQuery),
    Instant {
        t_ns: i64,
    },
    Range {
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
    },
}

/// What reading storage cost a query, for `data.stats` in the answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    pub parts_overlapping: u64,
    pub parts_read: u64,
    /// Sizes of the parts read, and the bytes fetched of them.
    pub part_bytes: u64,
    pub part_bytes_fetched: u64,
    /// Rows of the selected streams in those parts, and how many of them
    /// the block filters skipped.
    pub part_rows: u64,
    pub part_rows_skipped: u64,
    /// Entries examined in the time range and their line bytes (Loki's
    /// lines and bytes processed).
    pub entries: u64,
    pub line_bytes: u64,
    pub exec_seconds: f64,
}

/// Why a LogQL request failed: the engine's error, or the deadline.
#[derive(Debug)]
pub enum LogQlError {
    Query(QueryError),
    Timeout(Duration),
    /// No query slot within the deadline.
    Busy(String),
}

/// The engine with the configured bounds.
pub struct LogQlService {
    engine: Engine,
}

impl LogQlService {
    pub fn new(cfg: &crate::config::QuerySection) -> Self {
        LogQlService {
            engine: Engine::new(EngineOptions {
                max_series: cfg.max_series,
                max_samples: cfg.max_samples,
                parallelism: cfg.parallelism,
                ..EngineOptions::default()
            }),
        }
    }

    pub async fn run(
        &self,
        slots: &QueryService,
        storage: &Storage,
        tenant: &TenantId,
        query: &str,
        kind: LogQlKind,
    ) -> Result<(Value, ReadStats), LogQlError> {
        let cfg = slots.config();
        let started = Instant::now();
        let deadline = started + cfg.timeout;
        let permits = slots
            .acquire(std::slice::from_ref(tenant), deadline)
            .await
            .map_err(|e| LogQlError::Busy(e.to_string()))?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(Arc::clone(&cancel));
        let ctx = QueryContext {
            cancel: Some(Arc::clone(&cancel)),
        };
        let source = Arc::new(StorageLogSource {
            storage: storage.clone(),
            tenant: tenant.clone(),
            rt: tokio::runtime::Handle::current(),
            budget: ScanBudget::new(cfg.max_series as u64, cfg.max_memory_bytes),
            threads: crate::query::threads_per_query(cfg),
            stats: Mutex::new(ReadStats::default()),
        });
        let engine = self.engine.clone();
        let query = query.to_string();
        let src = Arc::clone(&source);
        // The slots go with the evaluation (see `QueryService::run`): on a
        // timeout or a disconnect they are freed once it has stopped.
        let task = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            match kind {
                LogQlKind::Logs(q) => engine.logs(&*src, &query, &q, &ctx),
                LogQlKind::Instant { t_ns } => engine.instant(&*src, &query, t_ns, &ctx),
                LogQlKind::Range {
                    start_ns,
                    end_ns,
                    step_ns,
                } => engine.range(&*src, &query, start_ns, end_ns, step_ns, &ctx),
            }
        });
        let left = deadline.saturating_duration_since(Instant::now());
        let value = match tokio::time::timeout(left, task).await {
            Err(_) => {
                cancel.store(true, Ordering::Relaxed);
                return Err(LogQlError::Timeout(cfg.timeout));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "logql evaluation panicked");
                return Err(LogQlError::Query(QueryError::Execution(format!(
                    "query evaluation failed: {e}"
                ))));
            }
            Ok(Ok(r)) => r.map_err(LogQlError::Query)?,
        };
        let mut stats = *source.stats.lock().expect("BUG: stats lock poisoned");
        stats.exec_seconds = started.elapsed().as_secs_f64();
        Ok((value, stats))
    }
}

struct StorageLogSource {
    storage: Storage,
    tenant: TenantId,
    rt: tokio::runtime::Handle,
    budget: ScanBudget,
    /// Threads that may decode parts for one selection (`query.parallelism`).
    threads: usize,
    stats: Mutex<ReadStats>,
}

fn source_error(e: StorageError) -> SourceError {
    match e {
        StorageError::Limit(ScanLimit::Series(n)) => SourceError {
            message: format!(
                "the query would read more than {n} streams (query.max_series={n}); narrow the stream selector or the time range"
            ),
            limited: true,
        },
        StorageError::Limit(ScanLimit::Bytes(n)) => SourceError {
            message: format!(
                "the query would hold more than {n} bytes of log entries (query.max_memory_bytes={n}); narrow the stream selector, add line filters or shorten the time range"
            ),
            limited: true,
        },
        e => SourceError {
            message: e.to_string(),
            limited: false,
        },
    }
}

impl LogSource for StorageLogSource {
    fn select(&self, req: &SelectRequest<'_>) -> Result<StreamIter<'_>, SourceError> {
        let sel = self
            .rt
            .block_on(self.storage.select_logs(
                &self.tenant,
                req.matchers,
                req.start_ns,
                req.end_ns,
                &LogReadHints {
                    line_contains: req.line_filters.to_vec(),
                    label_equals: req.label_equals.to_vec(),
                    skip_lines: !req.lines_needed,
                    threads: self.threads,
                },
                &self.budget,
            ))
            .map_err(source_error)?;
        {
            let mut s = self.stats.lock().expect("BUG: stats lock poisoned");
            s.parts_overlapping += sel.parts_overlapping;
            s.parts_read += sel.parts_read;
            s.part_bytes += sel.part_bytes;
            s.part_bytes_fetched += sel.part_bytes_fetched;
            s.part_rows += sel.part_rows;
            s.part_rows_skipped += sel.part_rows_skipped;
            s.entries += sel.scanned_entries;
            s.line_bytes += sel.scanned_line_bytes;
        }
        Ok(Box::new(sel.streams.into_iter().map(Ok)))
    }
}
