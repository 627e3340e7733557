//! Storage shared by every signal: the WAL, the in-memory head, immutable
//! parts on an object store, compaction and retention, and the scan API the
//! query side reads through.
//!
//! Input: validated `WriteBatch`es per tenant. Output: series and samples
//! for matchers and a time range, merged across head and parts.

mod catalog;
pub mod codec;
mod compact;
#[doc(hidden)]
pub mod fuzzing;
mod head;
mod histogram_codec;
pub mod logs;
pub mod part;
mod part_cache;
mod postings;
mod scan;
mod store;
mod wal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use miru_model::{ErrorKind, TenantId, WriteBatch};
use object_store::ObjectStore;

pub use catalog::PartEntry;
pub use compact::CompactionStats;
pub use scan::{ScanBudget, ScanLimit, ScanShard, SeriesSamples};
pub use store::{ObjectStoreConfig, build_object_store};

use head::{HeadLimits, TenantHead};

/// Storage settings (the `storage` section of the config file).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Local directory for the WAL.
    pub wal_dir: PathBuf,
    /// How often the head is cut into parts.
    pub flush_interval: Duration,
    /// Cut early when the head holds this many samples.
    pub max_head_samples: usize,
    /// Series idle this long leave the head after a cut.
    pub series_idle_timeout: Duration,
    /// zstd level for parts cut from the head and for compacted parts.
    pub flush_zstd_level: i32,
    pub compact_zstd_level: i32,
    /// zstd level of logs parts. Log lines are most of what a tenant keeps
    /// and are read far less often than written: level 10 makes the real
    /// Apache access logs 15.1x smaller (12.0x at 3) for ~10 s more flush
    /// CPU per GB of lines (docs/benchmarks.md, "Logs at rest").
    pub logs_zstd_level: i32,
    /// Parts of one level and day merged into the next level.
    pub compaction_fan_in: usize,
    /// A finished day (this long after its end) is merged into one part.
    pub compaction_day_settle: Duration,
    /// When parts live in a local directory, its path: part files and their
    /// directories are fsync'd after each write, because the WAL segments
    /// they replace are deleted next (object_store's local store does not
    /// fsync). `None` for remote stores, which are durable on success.
    pub local_store_root: Option<PathBuf>,
    /// Bytes of decoded part indexes kept between queries.
    pub index_cache_bytes: usize,
    /// Bytes of decompressed metrics part blocks kept between queries:
    /// dashboards refresh the same ranges, and decompressing and checking
    /// the blocks was a sixth of a repeated range query's CPU.
    pub block_cache_bytes: usize,
}

impl StorageConfig {
    pub fn new(wal_dir: PathBuf) -> Self {
        StorageConfig {
            wal_dir,
            flush_interval: Duration::from_secs(600),
            max_head_samples: 50_000_000,
            series_idle_timeout: Duration::from_secs(1800),
            flush_zstd_level: 3,
            compact_zstd_level: 9,
            logs_zstd_level: 10,
            compaction_fan_in: 4,
            compaction_day_settle: Duration::from_secs(3600),
            local_store_root: None,
            index_cache_bytes: 256 << 20,
            block_cache_bytes: 128 << 20,
        }
    }
}

/// Hooks for self-observability; the server implements them with metrics.
pub trait Observer: Send + Sync {
    fn wal_fsync(&self, _seconds: f64, _bytes: usize) {}
    fn part_written(&self, _tenant: &TenantId, _bytes: u64, _samples: u64, _compaction: bool) {}
    fn object_store_op(&self, _op: &'static str, _ok: bool) {}
}

/// An observer that records nothing.
pub struct NoopObserver;
impl Observer for NoopObserver {}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error(transparent)]
    Part(#[from] part::PartError),
    #[error(transparent)]
    LogPart(#[from] logs::LogPartError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("storage is shutting down")]
    ShuttingDown,
    /// A scan ran out of its budget (see [`ScanBudget`]).
    #[error("scan limit reached: {0:?}")]
    Limit(ScanLimit),
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::ShuttingDown => ErrorKind::Unavailable,
            StorageError::Store(_) => ErrorKind::Unavailable,
            StorageError::Limit(_) => ErrorKind::Limited,
            _ => ErrorKind::Internal,
        }
    }
}

/// Limits the storage layer enforces for one append.
#[derive(Debug, Clone, Copy)]
pub struct AppendLimits {
    pub max_series: u64,
    pub out_of_order_window: Duration,
    pub max_exemplars: usize,
}

/// Result of an append, for the response and the metrics.
#[derive(Debug, Default)]
pub struct AppendResult {
    /// Float samples stored.
    pub samples_accepted: u64,
    pub samples_deduplicated: u64,
    /// Native histogram samples stored.
    pub histograms_accepted: u64,
    pub histograms_deduplicated: u64,
    pub exemplars_accepted: u64,
    pub exemplars_dropped: u64,
    /// Rejections by reason label (`sample_out_of_order`, ...).
    pub rejected: Vec<(&'static str, u64)>,
    /// First rejection: whether it is a limit (429) and its message.
    pub first_error: Option<(bool, String)>,
}

/// What start-up recovery did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoveryStats {
    pub parts: usize,
    pub wal_segments: u64,
    pub wal_records: u64,
    pub wal_truncated_bytes: u64,
    /// Bytes not replayed after a bad frame in a closed segment.
    pub wal_corrupt_bytes: u64,
    pub samples_replayed: u64,
    pub samples_skipped: u64,
    /// Log entries replayed into the heads, and skipped as already in parts.
    pub log_entries_replayed: u64,
    pub log_entries_skipped: u64,
}

pub(crate) struct Inner {
    cfg: StorageConfig,
    store: Arc<dyn ObjectStore>,
    wal: wal::Wal,
    /// The current WAL segment. Appends hold it shared while they apply to
    /// the head and enqueue WAL records; a cut holds it exclusively, so a
    /// generation and a segment contain exactly the same writes.
    segment: RwLock<u64>,
    heads: RwLock<HashMap<TenantId, Arc<Mutex<TenantHead>>>>,
    log_heads: RwLock<HashMap<TenantId, Arc<Mutex<logs::LogHead>>>>,
    catalog: Mutex<catalog::Catalog>,
    index_cache: part_cache::PartCache<part::PartIndex>,
    /// Logs part footers and block filters; a quarter of
    /// `index_cache_bytes` each.
    log_meta_cache: part_cache::PartCache<logs::LogPartMeta>,
    log_bloom_cache: part_cache::PartCache<logs::PartBlooms>,
    /// Decompressed metrics part blocks (`block_cache_bytes`).
    block_cache: part_cache::PartCache<part_cache::RawBlock>,
    observer: Arc<dyn Observer>,
    /// Serialises cuts, part writes and compactions.
    maintenance: tokio::sync::Mutex<()>,
}

/// Handle to the storage; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The head series a replayed sample belongs to, or `None` when its
/// tenant-day is already in a part written after this segment (counted as
/// skipped) or its series record is missing.
fn replay_target(
    flushed: &HashMap<(TenantId, i64), u64>,
    ids: &HashMap<(TenantId, u32), u32>,
    tenant: &TenantId,
    seg: u64,
    wal_id: u32,
    timestamp_ms: i64,
    stats: &mut RecoveryStats,
) -> Option<u32> {
    let day = part::PartName::day_of(timestamp_ms);
    if flushed
        .get(&(tenant.clone(), day))
        .is_some_and(|&f| f >= seg)
    {
        stats.samples_skipped += 1;
        return None;
    }
    let id = ids.get(&(tenant.clone(), wal_id)).copied();
    if id.is_some() {
        stats.samples_replayed += 1;
    }
    id
}

impl Storage {
    /// Opens storage: lists parts, replays the WAL, starts a new segment.
    pub async fn open(
        cfg: StorageConfig,
        store: Arc<dyn ObjectStore>,
        observer: Arc<dyn Observer>,
        max_exemplars: impl Fn(&TenantId) -> usize,
    ) -> Result<(Storage, RecoveryStats), StorageError> {
        let catalog = catalog::Catalog::load(&store).await?;
        let flushed = catalog.flushed_through(part::Signal::Metrics);
        let logs_flushed = catalog.flushed_through(part::Signal::Logs);
        let mut log_heads: HashMap<TenantId, logs::LogHead> = HashMap::new();
        let mut stats = RecoveryStats {
            parts: catalog
                .tenants()
                .iter()
                .map(|t| catalog.tenant_parts(t).len())
                .sum(),
            ..Default::default()
        };
        let now_s = (now_ms() / 1000) as u64;
        let mut heads: HashMap<TenantId, TenantHead> = HashMap::new();
        // WAL series ids are only meaningful within their segment.
        let mut ids: HashMap<(TenantId, u32), u32> = HashMap::new();
        let mut current_seg = 0u64;
        let replay_dir = cfg.wal_dir.clone();
        let replayed = tokio::task::block_in_place(|| {
            wal::replay(&replay_dir, |seg, rec| {
                if seg != current_seg {
                    ids.clear();
                    current_seg = seg;
                }
                match rec {
                    wal::Record::Series { tenant, series } => {
                        let h = heads
                            .entry(tenant.clone())
                            .or_insert_with(|| TenantHead::new(tenant.clone()));
                        for (wal_id, labels) in series {
                            let id = h.replay_series(&labels, now_s);
                            ids.insert((tenant.clone(), wal_id), id);
                        }
                    }
                    wal::Record::Samples { tenant, samples } => {
                        let h = heads
                            .entry(tenant.clone())
                            .or_insert_with(|| TenantHead::new(tenant.clone()));
                        for (wal_id, s) in samples {
                            let id = replay_target(
                                &flushed,
                                &ids,
                                &tenant,
                                seg,
                                wal_id,
                                s.timestamp_ms,
                                &mut stats,
                            );
                            if let Some(id) = id {
                                h.replay_sample(id, s);
                            }
                        }
                    }
                    wal::Record::Histograms { tenant, histograms } => {
                        let h = heads
                            .entry(tenant.clone())
                            .or_insert_with(|| TenantHead::new(tenant.clone()));
                        for (wal_id, s) in histograms {
                            let id = replay_target(
                                &flushed,
                                &ids,
                                &tenant,
                                seg,
                                wal_id,
                                s.timestamp_ms,
                                &mut stats,
                            );
                            if let Some(id) = id {
                                h.replay_histogram(id, s);
                            }
                        }
                    }
                    wal::Record::Exemplars { tenant, exemplars } => {
                        let max = max_exemplars(&tenant);
                        let h = heads
                            .entry(tenant.clone())
                            .or_insert_with(|| TenantHead::new(tenant.clone()));
                        for (wal_id, e) in exemplars {
                            if let Some(&id) = ids.get(&(tenant.clone(), wal_id)) {
                                h.replay_exemplar(id, e, max);
                            }
                        }
                    }
                    wal::Record::Metadata { tenant, metadata } => {
                        let h = heads
                            .entry(tenant.clone())
                            .or_insert_with(|| TenantHead::new(tenant.clone()));
                        for m in metadata {
                            h.replay_metadata(m);
                        }
                    }
                    wal::Record::Logs { tenant, streams } => {
                        let h = log_heads
                            .entry(tenant.clone())
                            .or_insert_with(|| logs::LogHead::new(tenant.clone()));
                        for mut w in streams {
                            let before = w.entries.len();
                            w.entries.retain(|e| {
                                let day =
                                    part::PartName::day_of(e.timestamp_ns.div_euclid(1_000_000));
                                logs_flushed
                                    .get(&(tenant.clone(), day))
                                    .is_none_or(|&f| f < seg)
                            });
                            stats.log_entries_skipped += (before - w.entries.len()) as u64;
                            stats.log_entries_replayed += w.entries.len() as u64;
                            if !w.entries.is_empty() {
                                h.replay(w, now_s);
                            }
                        }
                    }
                }
            })
        })?;
        // Replayed series have no label ranks yet; give them some now
        // rather than at the next cut, so queries sort them cheaply.
        for h in heads.values_mut() {
            h.rank_active_series();
        }
        stats.wal_segments = replayed.segments;
        stats.wal_records = replayed.records;
        stats.wal_truncated_bytes = replayed.truncated_bytes;
        stats.wal_corrupt_bytes = replayed.corrupt_bytes;
        // After `flushed`'s segments too: if the WAL was lost with the local
        // disk, replay must not skip new segments as already in parts.
        let first_seg = replayed
            .last_segment
            .max(flushed.values().copied().max())
            .max(logs_flushed.values().copied().max())
            .map_or(1, |s| s + 1);
        let wal = wal::Wal::start(&cfg.wal_dir, first_seg, Arc::clone(&observer))?;
        let index_cache = part_cache::PartCache::new(cfg.index_cache_bytes);
        let log_meta_cache = part_cache::PartCache::new(cfg.index_cache_bytes / 4);
        let log_bloom_cache = part_cache::PartCache::new(cfg.index_cache_bytes / 4);
        let block_cache = part_cache::PartCache::new(cfg.block_cache_bytes);
        let storage = Storage {
            inner: Arc::new(Inner {
                cfg,
                store,
                wal,
                segment: RwLock::new(first_seg),
                heads: RwLock::new(
                    heads
                        .into_iter()
                        .map(|(t, h)| (t, Arc::new(Mutex::new(h))))
                        .collect(),
                ),
                log_heads: RwLock::new(
                    log_heads
                        .into_iter()
                        .map(|(t, h)| (t, Arc::new(Mutex::new(h))))
                        .collect(),
                ),
                catalog: Mutex::new(catalog),
                index_cache,
                log_meta_cache,
                log_bloom_cache,
                block_cache,
                observer,
                maintenance: tokio::sync::Mutex::new(()),
            }),
        };
        Ok((storage, stats))
    }

    pub fn config(&self) -> &StorageConfig {
        &self.inner.cfg
    }

    fn head(&self, tenant: &TenantId) -> Arc<Mutex<TenantHead>> {
        if let Some(h) = self.read_heads().get(tenant) {
            return Arc::clone(h);
        }
        let mut heads = self.inner.heads.write().expect("BUG: heads lock poisoned");
        Arc::clone(
            heads
                .entry(tenant.clone())
                .or_insert_with(|| Arc::new(Mutex::new(TenantHead::new(tenant.clone())))),
        )
    }

    fn read_heads(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<TenantId, Arc<Mutex<TenantHead>>>> {
        self.inner.heads.read().expect("BUG: heads lock poisoned")
    }

    pub(crate) fn heads(&self) -> Vec<Arc<Mutex<TenantHead>>> {
        self.read_heads().values().map(Arc::clone).collect()
    }

    /// Appends a validated batch. Returns once everything accepted is
    /// fsync'd in the WAL; only then may the caller acknowledge.
    pub async fn append(
        &self,
        tenant: &TenantId,
        batch: WriteBatch,
        limits: AppendLimits,
    ) -> Result<AppendResult, StorageError> {
        let now_s = (now_ms() / 1000) as u64;
        let head_limits = HeadLimits {
            max_series: limits.max_series,
            out_of_order_window_ms: limits.out_of_order_window.as_millis() as i64,
            max_exemplars: limits.max_exemplars,
            series_limit_name: "max_global_series_per_user",
        };
        let head = self.head(tenant);
        let (pending, outcome) = {
            let segment = self
                .inner
                .segment
                .read()
                .expect("BUG: segment lock poisoned");
            let mut h = head.lock().expect("BUG: head lock poisoned");
            let (records, outcome) = h.append(batch, head_limits, *segment, now_s);
            let pending = (!records.is_empty()).then(|| self.inner.wal.append(records));
            (pending, outcome)
        };
        if let Some(rx) = pending {
            rx.await.map_err(|_| StorageError::ShuttingDown)??;
        }
        Ok(AppendResult {
            samples_accepted: outcome.samples_accepted,
            samples_deduplicated: outcome.samples_deduplicated,
            histograms_accepted: outcome.histograms_accepted,
            histograms_deduplicated: outcome.histograms_deduplicated,
            exemplars_accepted: outcome.exemplars_accepted,
            exemplars_dropped: outcome.exemplars_dropped,
            rejected: outcome
                .rejected
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect(),
            first_error: outcome
                .first_error
                .map(|(r, m)| (r == head::RejectReason::SeriesLimit, m)),
        })
    }

    /// Samples held in heads, to decide on an early cut.
    pub fn head_samples(&self) -> usize {
        self.heads()
            .iter()
            .map(|h| h.lock().expect("BUG: head lock poisoned").active_samples())
            .sum()
    }

    /// The widest sample-time span of any tenant's uncut head, in ms. A
    /// backfill can put hours of sample time in the head within seconds;
    /// cutting on this bounds head memory by sample time, as Prometheus'
    /// head compaction does.
    pub fn head_span_ms(&self) -> i64 {
        self.heads()
            .iter()
            .map(|h| h.lock().expect("BUG: head lock poisoned").active_span_ms())
            .max()
            .unwrap_or(0)
    }

    /// Series per tenant in the head.
    pub fn head_series(&self) -> Vec<(TenantId, usize)> {
        self.heads()
            .iter()
            .map(|h| {
                let h = h.lock().expect("BUG: head lock poisoned");
                (h.tenant().clone(), h.series_count())
            })
            .collect()
    }

    /// Parts and bytes per tenant in the catalog.
    pub fn part_stats(&self) -> Vec<(TenantId, usize, u64)> {
        self.inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .stats()
    }

    /// Parts of a tenant, for tests and tools.
    pub fn parts(&self, tenant: &TenantId) -> Vec<PartEntry> {
        self.inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .tenant_parts(tenant)
    }
}
