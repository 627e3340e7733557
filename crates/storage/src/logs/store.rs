//! The log side of [`Storage`]: append (head, then WAL, then ack), reads
//! over heads and Parquet parts, and writing cut generations as parts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::StreamExt;
use miru_model::{Labels, LogEntry, LogStreamWrite, Matcher, TenantId};
use object_store::{ObjectStoreExt, PutPayload, path::Path};

use super::blooms::{NeedleKeys, PartBlooms, metadata_keys, needle_keys};
use super::head::{LogHead, sort_dedup_entries};
use super::part_read::{LogPartMeta, RangeReader, ReadPlan, Scanned};
use super::part_write::write_part;
use super::{
    BLOOMS_SUFFIX, FrozenLogs, LogAppendLimits, LogAppendResult, LogChunkStats, LogReadHints,
};
use crate::catalog::PartEntry;
use crate::part::{PartName, Signal};
use crate::{ScanBudget, Storage, StorageError, now_ms};

/// Entries selected for a query, by stream, each stream's entries sorted
/// by (timestamp, line) and deduplicated, plus what reading them cost.
#[derive(Debug, Default)]
pub struct LogSelection {
    pub streams: Vec<(Labels, Vec<LogEntry>)>,
    /// Parts whose key overlapped the time range, and how many of them
    /// had a matching stream (and were decoded).
    pub parts_overlapping: u64,
    pub parts_read: u64,
    /// Object sizes of the parts with a matching stream, and the bytes
    /// actually fetched from them (footers, block filters, pages).
    pub part_bytes: u64,
    pub part_bytes_fetched: u64,
    /// Rows of matching streams in the time range of the parts read, and
    /// how many of them the block filters ruled out without reading.
    pub part_rows: u64,
    pub part_rows_skipped: u64,
    /// Entries and line bytes returned, from parts and from the head.
    pub entries: u64,
    pub line_bytes: u64,
    /// Entries in the time range examined (before the hints' filtering),
    /// and their line bytes.
    pub scanned_entries: u64,
    pub scanned_line_bytes: u64,
}

const NS_PER_MS: i64 = 1_000_000;

/// Selected rows below which a part's read is not cut for several
/// threads: a thread hand-off and a second pass over shared pages cost
/// more than decoding a few blocks.
const SPLIT_MIN_ROWS: usize = 16_384;

impl Storage {
    fn log_head(&self, tenant: &TenantId) -> Arc<Mutex<LogHead>> {
        if let Some(h) = self.read_log_heads().get(tenant) {
            return Arc::clone(h);
        }
        let mut heads = self
            .inner
            .log_heads
            .write()
            .expect("BUG: log heads lock poisoned");
        Arc::clone(
            heads
                .entry(tenant.clone())
                .or_insert_with(|| Arc::new(Mutex::new(LogHead::new(tenant.clone())))),
        )
    }

    fn read_log_heads(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, std::collections::HashMap<TenantId, Arc<Mutex<LogHead>>>>
    {
        self.inner
            .log_heads
            .read()
            .expect("BUG: log heads lock poisoned")
    }

    pub(crate) fn log_heads(&self) -> Vec<Arc<Mutex<LogHead>>> {
        self.read_log_heads().values().map(Arc::clone).collect()
    }

    /// Appends validated log streams. Returns once everything accepted is
    /// fsync'd in the WAL; only then may the caller acknowledge.
    pub async fn append_logs(
        &self,
        tenant: &TenantId,
        streams: Vec<LogStreamWrite>,
        limits: LogAppendLimits,
    ) -> Result<LogAppendResult, StorageError> {
        let now_s = (now_ms() / 1000) as u64;
        let head = self.log_head(tenant);
        let (pending, out) = {
            let _segment = self
                .inner
                .segment
                .read()
                .expect("BUG: segment lock poisoned");
            let mut h = head.lock().expect("BUG: log head lock poisoned");
            let (records, out) = h.append(streams, &limits, now_s);
            let pending = (!records.is_empty()).then(|| self.inner.wal.append(records));
            (pending, out)
        };
        if let Some(rx) = pending {
            rx.await.map_err(|_| StorageError::ShuttingDown)??;
        }
        Ok(out)
    }

    /// Bytes of log entries held in the heads since the last cut.
    pub fn log_head_bytes(&self) -> usize {
        self.log_heads()
            .iter()
            .map(|h| {
                h.lock()
                    .expect("BUG: log head lock poisoned")
                    .active_bytes()
            })
            .sum()
    }

    /// Streams per tenant in the log heads.
    pub fn log_head_streams(&self) -> Vec<(TenantId, usize)> {
        self.log_heads()
            .iter()
            .map(|h| {
                let h = h.lock().expect("BUG: log head lock poisoned");
                (h.tenant().clone(), h.stream_count())
            })
            .collect()
    }

    /// Logs parts of a tenant, for tests and tools.
    pub fn log_parts(&self, tenant: &TenantId) -> Vec<PartEntry> {
        self.inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .log_overlapping(tenant, i64::MIN, i64::MAX)
    }

    fn log_parts_in(&self, tenant: &TenantId, start_ns: i64, end_ns: i64) -> Vec<PartEntry> {
        let mint = start_ns.div_euclid(NS_PER_MS);
        let maxt = end_ns.saturating_sub(1).div_euclid(NS_PER_MS);
        self.inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .log_overlapping(tenant, mint, maxt)
    }

    fn range_reader(&self, e: &PartEntry) -> RangeReader {
        RangeReader::new(Arc::clone(&self.inner.store), &e.name.key(), e.size)
    }

    /// Counts a reader's requests in the object-store metrics.
    fn observe_reader(&self, r: &RangeReader, requests_ok: u64) {
        for _ in 0..r.failed.swap(0, Ordering::Relaxed) {
            self.inner.observer.object_store_op("get", false);
        }
        for _ in 0..requests_ok {
            self.inner.observer.object_store_op("get", true);
        }
    }

    /// A part's decoded footer, through the cache.
    async fn log_part_meta(
        &self,
        e: &PartEntry,
        fetched: &mut u64,
    ) -> Result<Arc<LogPartMeta>, StorageError> {
        let key = e.name.key();
        let mut reader = self.range_reader(e);
        let meta = self
            .inner
            .log_meta_cache
            .get(key.clone(), || async {
                LogPartMeta::load(&key, &mut reader).await
            })
            .await;
        let n = reader.fetched.load(Ordering::Relaxed);
        *fetched += n;
        self.observe_reader(&reader, u64::from(n > 0));
        Ok(meta?)
    }

    /// A part's block filters, through the cache; `None` for parts
    /// written without them or whose filters are missing or damaged (then
    /// every block is read, which is slower but correct).
    async fn log_part_blooms(&self, e: &PartEntry, fetched: &mut u64) -> Option<Arc<PartBlooms>> {
        let key = e.name.key();
        let blooms_key = blooms_key(&e.name);
        let store = Arc::clone(&self.inner.store);
        let mut got = 0;
        let r = self
            .inner
            .log_bloom_cache
            .get(blooms_key.clone(), || async {
                let body = store.get(&Path::from(blooms_key.clone())).await;
                let bytes = match body {
                    Ok(b) => b.bytes().await,
                    Err(e) => Err(e),
                }
                .map_err(|e| e.to_string())?;
                got = bytes.len() as u64;
                PartBlooms::decode(&bytes).map_err(|e| e.to_string())
            })
            .await;
        *fetched += got;
        match r {
            Ok(b) => Some(b),
            Err(why) => {
                tracing::warn!(part = %key, error = %why, "logs part read without its block filters");
                None
            }
        }
    }

    /// Entries of the tenant's streams matching every matcher with
    /// timestamps in `[start_ns, end_ns)`, from parts and heads, charged
    /// against `budget` (one series per stream, bytes per entry). Blocks of
    /// parts that the hints rule out are not read, and rows that fail them
    /// are left out (the caller filters again).
    pub async fn select_logs(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        hints: &LogReadHints,
        budget: &ScanBudget,
    ) -> Result<LogSelection, StorageError> {
        let mut sel = LogSelection::default();
        let mut by_stream: HashMap<Labels, Vec<LogEntry>> = HashMap::new();
        let parts = self.log_parts_in(tenant, start_ns, end_ns);
        sel.parts_overlapping = parts.len() as u64;
        let mut line_keys = NeedleKeys::default();
        for n in &hints.line_contains {
            line_keys.extend(needle_keys(n));
        }
        // First what to read of each part (footers and filters come from
        // caches), then the reads, on several threads when allowed.
        let threads = hints.threads.max(1);
        let mut reads: Vec<(Arc<LogPartMeta>, RangeReader, ReadPlan)> = Vec::new();
        for e in &parts {
            let mut fetched = 0;
            let meta = self.log_part_meta(e, &mut fetched).await?;
            sel.part_bytes_fetched += fetched;
            if meta.matching(matchers, start_ns, end_ns).next().is_none() {
                continue;
            }
            let mut fetched = 0;
            let blooms = if meta.block_rows.is_some() && !hints.is_empty() {
                // Filters cut at another block size than the footer says
                // are not trusted.
                self.log_part_blooms(e, &mut fetched)
                    .await
                    .filter(|b| Some(b.block_rows) == meta.block_rows)
            } else {
                None
            };
            sel.part_bytes_fetched += fetched;
            let may_match = |block: usize, labels: &Labels| {
                let Some(b) = &blooms else { return true };
                if !b.may_contain_needle(block, &line_keys) {
                    return false;
                }
                hints.label_equals.iter().all(|(k, v)| {
                    labels.get(k) == Some(v.as_str())
                        || b.may_contain_all(block, &metadata_keys(k, v))
                })
            };
            let plan = meta.plan(matchers, start_ns, end_ns, &may_match);
            sel.part_rows += plan.rows;
            sel.part_rows_skipped += plan.rows_skipped;
            sel.parts_read += 1;
            sel.part_bytes += e.size;
            let pieces = (plan.selected_rows() / SPLIT_MIN_ROWS).clamp(1, threads);
            for plan in meta.split(plan, pieces) {
                reads.push((Arc::clone(&meta), self.range_reader(e), plan));
            }
        }
        let mut scanned = Scanned::default();
        let mut add = |reader: &RangeReader,
                       got: Result<Vec<(Labels, Vec<LogEntry>)>, StorageError>,
                       part_scanned: Scanned|
         -> Result<(), StorageError> {
            let n = reader.fetched.load(Ordering::Relaxed);
            self.observe_reader(reader, u64::from(n > 0));
            sel.part_bytes_fetched += n;
            scanned.entries += part_scanned.entries;
            scanned.line_bytes += part_scanned.line_bytes;
            for (labels, entries) in got? {
                // Bytes were charged as the part was decoded.
                budget.charge_stream(&labels)?;
                by_stream.entry(labels).or_default().extend(entries);
            }
            Ok(())
        };
        if threads == 1 || reads.len() <= 1 {
            for (meta, reader, plan) in reads {
                let mut part_scanned = Scanned::default();
                let got = meta
                    .read(reader.clone(), &plan, hints, &mut part_scanned, budget)
                    .await;
                add(&reader, got, part_scanned)?;
            }
        } else {
            // Decoding is CPU work: it runs on blocking threads, `threads`
            // reads at a time, results taken in order.
            let hints = Arc::new(hints.clone());
            let mut done = futures::stream::iter(reads)
                .map(|(meta, reader, plan)| {
                    let (hints, budget) = (Arc::clone(&hints), budget.clone());
                    tokio::task::spawn_blocking(move || {
                        let mut part_scanned = Scanned::default();
                        let got = tokio::runtime::Handle::current().block_on(meta.read(
                            reader.clone(),
                            &plan,
                            &hints,
                            &mut part_scanned,
                            &budget,
                        ));
                        (reader, got, part_scanned)
                    })
                })
                .buffered(threads);
            while let Some(joined) = done.next().await {
                let (reader, got, part_scanned) =
                    joined.expect("BUG: logs part read thread panicked");
                add(&reader, got, part_scanned)?;
            }
        }
        let head = self.read_log_heads().get(tenant).map(Arc::clone);
        if let Some(h) = head {
            let got = h.lock().expect("BUG: log head lock poisoned").select(
                matchers,
                start_ns,
                end_ns,
                hints,
                &mut scanned,
            );
            for (labels, entries) in got {
                charge(budget, &labels, &entries)?;
                by_stream.entry(labels).or_default().extend(entries);
            }
        }
        let mut streams: Vec<(Labels, Vec<LogEntry>)> = by_stream.into_iter().collect();
        for (_, entries) in &mut streams {
            sort_dedup_entries(entries);
            sel.entries += entries.len() as u64;
            sel.line_bytes += entries.iter().map(|e| e.line.len() as u64).sum::<u64>();
        }
        streams.sort_by(|a, b| a.0.cmp(&b.0));
        sel.streams = streams;
        sel.scanned_entries = scanned.entries;
        sel.scanned_line_bytes = scanned.line_bytes;
        Ok(sel)
    }

    /// Label sets of the tenant's streams matching every matcher that have
    /// entries in `[start_ns, end_ns)` (by time range of the stream in a
    /// part; head streams by their entries), sorted and unique.
    pub async fn log_streams(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let mut out = Vec::new();
        for e in self.log_parts_in(tenant, start_ns, end_ns) {
            let meta = self.log_part_meta(&e, &mut 0).await?;
            out.extend(
                meta.matching(matchers, start_ns, end_ns)
                    .map(|(_, s)| s.labels.clone()),
            );
        }
        let head = self.read_log_heads().get(tenant).map(Arc::clone);
        if let Some(h) = head {
            out.extend(
                h.lock()
                    .expect("BUG: log head lock poisoned")
                    .stream_labels(matchers, start_ns, end_ns),
            );
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Per (part, stream) and per stream in memory matching every matcher
    /// with entries in `[start_ns, end_ns)`: counts and bytes from the
    /// stream tables, without reading any line. For `index/stats` and
    /// `index/volume`.
    pub async fn log_chunk_stats(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<LogChunkStats>, StorageError> {
        let mut out = Vec::new();
        for e in self.log_parts_in(tenant, start_ns, end_ns) {
            let meta = self.log_part_meta(&e, &mut 0).await?;
            out.extend(
                meta.matching(matchers, start_ns, end_ns)
                    .map(|(_, s)| LogChunkStats {
                        labels: s.labels.clone(),
                        min_ts_ns: s.min_ts_ns,
                        max_ts_ns: s.max_ts_ns,
                        entries: s.rows as u64,
                        line_bytes: s.line_bytes,
                    }),
            );
        }
        let head = self.read_log_heads().get(tenant).map(Arc::clone);
        if let Some(h) = head {
            out.extend(
                h.lock()
                    .expect("BUG: log head lock poisoned")
                    .chunk_stats(matchers, start_ns, end_ns),
            );
        }
        Ok(out)
    }

    /// Writes one frozen log generation as a level-0 logs part.
    pub(crate) async fn write_frozen_logs(
        &self,
        tenant: &TenantId,
        f: &Arc<FrozenLogs>,
    ) -> Result<PartEntry, StorageError> {
        let level = self.inner.cfg.logs_zstd_level;
        let frozen = Arc::clone(f);
        let part = tokio::task::spawn_blocking(move || write_part(&frozen.streams, level))
            .await
            .expect("BUG: logs part writer panicked")?;
        let st = part.stats;
        let name = PartName {
            tenant: tenant.clone(),
            signal: Signal::Logs,
            day_start_ms: f.day_start_ms,
            level: 0,
            min_ts: st.min_ts_ns.div_euclid(NS_PER_MS),
            // The ceiling, so the key's range covers every nanosecond.
            max_ts: st.max_ts_ns.div_euclid(NS_PER_MS)
                + i64::from(st.max_ts_ns.rem_euclid(NS_PER_MS) != 0),
            wal_segment: f.segment,
            id: crate::compact::new_part_id(),
        };
        // The filters first: once the part is listed, they exist. Filters
        // left behind by a crash before the part was written are ignored.
        let r = self
            .inner
            .store
            .put(
                &Path::from(blooms_key(&name)),
                PutPayload::from(Bytes::from(part.blooms)),
            )
            .await;
        self.observe("put", r)?;
        let entry = self.put_part(&name, part.parquet).await?;
        self.inner
            .observer
            .part_written(tenant, entry.size, st.entries, false);
        Ok(entry)
    }
}

/// The key of a part's block filters: the part's key with `.parquet`
/// replaced by `.blooms`.
fn blooms_key(name: &PartName) -> String {
    let key = name.key();
    format!(
        "{}{BLOOMS_SUFFIX}",
        key.strip_suffix(name.signal.extension()).unwrap_or(&key)
    )
}

fn charge(budget: &ScanBudget, labels: &Labels, entries: &[LogEntry]) -> Result<(), StorageError> {
    budget.charge_stream(labels)?;
    let bytes: usize = entries.iter().map(super::head::entry_bytes).sum();
    budget.charge_bytes(bytes as u64)
}
