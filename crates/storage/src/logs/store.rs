//! The log side of [`Storage`]: append (head, then WAL, then ack), reads
//! over heads and Parquet parts, and writing cut generations as parts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use miru_model::{Labels, LogEntry, LogStreamWrite, Matcher, TenantId};
use object_store::{ObjectStoreExt, path::Path};

use super::head::{LogHead, sort_dedup_entries};
use super::part_read::LogPartReader;
use super::part_write::write_part;
use super::{FrozenLogs, LogAppendLimits, LogAppendResult};
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
    /// Object bytes of the parts fetched.
    pub part_bytes_fetched: u64,
    /// Entries and line bytes returned, from parts and from the head.
    pub entries: u64,
    pub line_bytes: u64,
}

const NS_PER_MS: i64 = 1_000_000;

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

    async fn open_log_part(&self, e: &PartEntry) -> Result<Arc<LogPartReader>, StorageError> {
        let key = e.name.key();
        let r = self.inner.store.get(&Path::from(key.clone())).await;
        let body = self.observe("get", r)?;
        let bytes: Bytes = self.observe("get", body.bytes().await)?;
        let reader = tokio::task::spawn_blocking(move || LogPartReader::open(&key, bytes))
            .await
            .expect("BUG: part reader panicked")?;
        Ok(Arc::new(reader))
    }

    /// Entries of the tenant's streams matching every matcher with
    /// timestamps in `[start_ns, end_ns)`, from parts and heads, charged
    /// against `budget` (one series per stream, bytes per entry).
    pub async fn select_logs(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        budget: &ScanBudget,
    ) -> Result<LogSelection, StorageError> {
        let mut sel = LogSelection::default();
        let mut by_stream: HashMap<Labels, Vec<LogEntry>> = HashMap::new();
        let parts = self.log_parts_in(tenant, start_ns, end_ns);
        sel.parts_overlapping = parts.len() as u64;
        for e in &parts {
            let reader = self.open_log_part(e).await?;
            if !reader
                .streams
                .iter()
                .any(|s| miru_model::matches_all(matchers, &s.labels))
            {
                continue;
            }
            sel.parts_read += 1;
            sel.part_bytes_fetched += e.size;
            let m = matchers.to_vec();
            let got = tokio::task::spawn_blocking(move || reader.select(&m, start_ns, end_ns))
                .await
                .expect("BUG: part reader panicked")?;
            for (labels, entries) in got {
                charge(budget, &by_stream, &labels, &entries)?;
                by_stream.entry(labels).or_default().extend(entries);
            }
        }
        let head = self.read_log_heads().get(tenant).map(Arc::clone);
        if let Some(h) = head {
            let got = h
                .lock()
                .expect("BUG: log head lock poisoned")
                .select(matchers, start_ns, end_ns);
            for (labels, entries) in got {
                charge(budget, &by_stream, &labels, &entries)?;
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
            let reader = self.open_log_part(&e).await?;
            out.extend(
                reader
                    .streams
                    .iter()
                    .filter(|s| {
                        s.max_ts_ns >= start_ns
                            && s.min_ts_ns < end_ns
                            && miru_model::matches_all(matchers, &s.labels)
                    })
                    .map(|s| s.labels.clone()),
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

    /// Writes one frozen log generation as a level-0 logs part.
    pub(crate) async fn write_frozen_logs(
        &self,
        tenant: &TenantId,
        f: &Arc<FrozenLogs>,
    ) -> Result<PartEntry, StorageError> {
        let level = self.inner.cfg.flush_zstd_level;
        let frozen = Arc::clone(f);
        let (bytes, st) = tokio::task::spawn_blocking(move || write_part(&frozen.streams, level))
            .await
            .expect("BUG: logs part writer panicked")?;
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
        let entry = self.put_part(&name, bytes).await?;
        self.inner
            .observer
            .part_written(tenant, entry.size, st.entries, false);
        Ok(entry)
    }
}

fn charge(
    budget: &ScanBudget,
    seen: &HashMap<Labels, Vec<LogEntry>>,
    labels: &Labels,
    entries: &[LogEntry],
) -> Result<(), StorageError> {
    if !seen.contains_key(labels) {
        budget.charge_series()?;
    }
    let bytes: usize = entries.iter().map(super::head::entry_bytes).sum();
    budget.charge_bytes(bytes as u64)
}
