//! Background work on the storage: cutting the head into level-0 parts
//! (then trimming the WAL), merging parts (compaction) and deleting parts
//! past their tenant's retention. All of it runs under one lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use miru_model::{HistogramSample, Labels, Sample, TenantId};
use object_store::{ObjectStoreExt, PutPayload, path::Path};

use crate::catalog::{PartEntry, REPLACES_SUFFIX};
use crate::head::{Frozen, sort_dedup};
use crate::part::{ChunkKind, PartIndex, PartName, PartReader, PartWriter, Signal, decode_kind};
use crate::{Storage, StorageError, now_ms};

static PART_SEQ: AtomicU64 = AtomicU64::new(0);

/// Makes a just-written local part durable: its data, then its name.
fn sync_file_and_dir(file: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A part id unique within the tenant and ordered by creation time: the
/// creation millisecond, the process id and a per-process counter.
pub(crate) fn new_part_id() -> String {
    format!(
        "{:013}_{:x}{:04x}",
        now_ms(),
        std::process::id(),
        PART_SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionStats {
    pub parts_flushed: u64,
    pub parts_merged: u64,
    pub parts_written: u64,
    pub parts_deleted_by_retention: u64,
    pub series_removed_idle: u64,
    pub streams_removed_idle: u64,
}

impl Storage {
    /// Cuts every head into frozen generations, rotates the WAL, writes the
    /// generations as level-0 parts and deletes WAL segments whose data is
    /// now in parts.
    pub async fn flush(&self) -> Result<CompactionStats, StorageError> {
        let _m = self.inner.maintenance.lock().await;
        let mut stats = CompactionStats::default();
        let heads = self.heads();
        let log_heads = self.log_heads();
        let (old_seg, rotated) = {
            let mut seg = self
                .inner
                .segment
                .write()
                .expect("BUG: segment lock poisoned");
            for h in &heads {
                h.lock().expect("BUG: head lock poisoned").cut(*seg);
            }
            for h in &log_heads {
                h.lock().expect("BUG: log head lock poisoned").cut(*seg);
            }
            let rx = self.inner.wal.rotate();
            let old = *seg;
            *seg += 1;
            (old, rx)
        };
        let new_seg = rotated.await.map_err(|_| StorageError::ShuttingDown)??;
        debug_assert_eq!(new_seg, old_seg + 1, "BUG: WAL and head segments diverged");
        let mut first_err = None;
        for h in &heads {
            let (tenant, frozen) = {
                let g = h.lock().expect("BUG: head lock poisoned");
                (g.tenant().clone(), g.frozen())
            };
            for f in frozen {
                match self.write_frozen(&tenant, &f).await {
                    Ok(entry) => {
                        self.catalog_add(entry);
                        h.lock().expect("BUG: head lock poisoned").drop_frozen(&f);
                        stats.parts_flushed += 1;
                    }
                    Err(e) => {
                        tracing::error!(tenant = %tenant, error = %e, "writing a part failed; will retry at the next cut");
                        first_err.get_or_insert(e);
                        // Newer generations of this tenant must wait: a part
                        // tagged with a newer segment would make replay skip
                        // the older generation's samples after a crash.
                        break;
                    }
                }
            }
        }
        for h in &log_heads {
            let (tenant, frozen) = {
                let g = h.lock().expect("BUG: log head lock poisoned");
                (g.tenant().clone(), g.frozen())
            };
            for f in frozen {
                match self.write_frozen_logs(&tenant, &f).await {
                    Ok(entry) => {
                        self.catalog_add(entry);
                        h.lock()
                            .expect("BUG: log head lock poisoned")
                            .drop_frozen(&f);
                        stats.parts_flushed += 1;
                    }
                    Err(e) => {
                        tracing::error!(tenant = %tenant, error = %e, "writing a logs part failed; will retry at the next cut");
                        first_err.get_or_insert(e);
                        // Oldest first, as for metrics (replay rule).
                        break;
                    }
                }
            }
        }
        let oldest_needed = heads
            .iter()
            .filter_map(|h| {
                h.lock()
                    .expect("BUG: head lock poisoned")
                    .oldest_frozen_segment()
            })
            .chain(log_heads.iter().filter_map(|h| {
                h.lock()
                    .expect("BUG: log head lock poisoned")
                    .oldest_frozen_segment()
            }))
            .min()
            .unwrap_or(new_seg);
        if oldest_needed > 1 {
            let up_to = old_seg.min(oldest_needed - 1);
            self.inner
                .wal
                .remove_up_to(up_to)
                .await
                .map_err(|_| StorageError::ShuttingDown)??;
        }
        let now_s = (now_ms() / 1000) as u64;
        let idle = self.inner.cfg.series_idle_timeout.as_secs();
        for h in &heads {
            stats.series_removed_idle += h
                .lock()
                .expect("BUG: head lock poisoned")
                .remove_idle_series(now_s, idle) as u64;
        }
        for h in &log_heads {
            stats.streams_removed_idle += h
                .lock()
                .expect("BUG: log head lock poisoned")
                .remove_idle_streams(now_s, idle) as u64;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    fn catalog_add(&self, e: PartEntry) {
        self.inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .add(e);
    }

    pub(crate) async fn put_part(
        &self,
        name: &PartName,
        bytes: Vec<u8>,
    ) -> Result<PartEntry, StorageError> {
        let size = bytes.len() as u64;
        let r = self
            .inner
            .store
            .put(
                &Path::from(name.key()),
                PutPayload::from(Bytes::from(bytes)),
            )
            .await;
        self.observe("put", r)?;
        if let Some(root) = self.inner.cfg.local_store_root.clone() {
            let location = Path::from(name.key());
            tokio::task::spawn_blocking(move || {
                // The store's own mapping from key to file (it escapes some
                // characters), so the synced file is the written one.
                let file = object_store::local::LocalFileSystem::new_with_prefix(&root)?
                    .path_to_filesystem(&location)?;
                sync_file_and_dir(&file).map_err(|e| object_store::Error::Generic {
                    store: "filesystem",
                    source: Box::new(e),
                })
            })
            .await
            .expect("BUG: fsync task panicked")?;
        }
        Ok(PartEntry {
            name: name.clone(),
            size,
        })
    }

    async fn write_frozen(
        &self,
        tenant: &TenantId,
        f: &Arc<Frozen>,
    ) -> Result<PartEntry, StorageError> {
        let level = self.inner.cfg.flush_zstd_level;
        let frozen = Arc::clone(f);
        let (bytes, st) = tokio::task::spawn_blocking(move || {
            let mut w = PartWriter::new(level);
            // Floats and histograms are each sorted by labels; interleave
            // them so the part stays in (labels, kind) order.
            let mut hists = frozen.histograms.iter().peekable();
            for (labels, samples) in &frozen.series {
                while let Some((hl, hs)) = hists.next_if(|(hl, _)| hl < labels) {
                    w.add_histograms(hl, hs);
                }
                w.add(labels, samples);
            }
            for (hl, hs) in hists {
                w.add_histograms(hl, hs);
            }
            w.finish()
        })
        .await
        .expect("BUG: part writer panicked");
        let name = PartName {
            tenant: tenant.clone(),
            signal: Signal::Metrics,
            day_start_ms: f.day_start_ms,
            level: 0,
            min_ts: st.min_ts,
            max_ts: st.max_ts,
            wal_segment: f.segment,
            id: new_part_id(),
        };
        let entry = self.put_part(&name, bytes).await?;
        self.inner
            .observer
            .part_written(tenant, entry.size, st.samples, false);
        Ok(entry)
    }

    /// Merges parts: per tenant and day, once a level holds `fan_in` parts
    /// all of them become one part of the next level, and a day that has
    /// settled is merged into a single part.
    pub async fn compact(&self) -> Result<CompactionStats, StorageError> {
        self.compact_with(false).await
    }

    /// Merges every tenant-day with more than one part into a single part,
    /// whatever the levels (an operator's "force merge").
    pub async fn compact_full(&self) -> Result<CompactionStats, StorageError> {
        self.compact_with(true).await
    }

    async fn compact_with(&self, full: bool) -> Result<CompactionStats, StorageError> {
        let _m = self.inner.maintenance.lock().await;
        let mut stats = CompactionStats::default();
        let tenants = self
            .inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .tenants();
        let now = now_ms();
        let settle = self.inner.cfg.compaction_day_settle.as_millis() as i64;
        let fan_in = self.inner.cfg.compaction_fan_in.max(2);
        for tenant in tenants {
            let parts = self.parts(&tenant);
            let mut by_day: BTreeMap<i64, Vec<PartEntry>> = BTreeMap::new();
            for p in parts {
                by_day.entry(p.name.day_start_ms).or_default().push(p);
            }
            for (day, parts) in by_day {
                let settled = full || day + 86_400_000 + settle < now;
                let groups: Vec<Vec<PartEntry>> = if settled {
                    if parts.len() > 1 { vec![parts] } else { vec![] }
                } else {
                    let mut by_level: BTreeMap<u32, Vec<PartEntry>> = BTreeMap::new();
                    for p in parts {
                        by_level.entry(p.name.level).or_default().push(p);
                    }
                    by_level
                        .into_values()
                        .filter(|v| v.len() >= fan_in)
                        .collect()
                };
                for group in groups {
                    stats.parts_merged += group.len() as u64;
                    self.merge(&tenant, day, group).await?;
                    stats.parts_written += 1;
                }
            }
        }
        Ok(stats)
    }

    async fn merge(
        &self,
        tenant: &TenantId,
        day: i64,
        sources: Vec<PartEntry>,
    ) -> Result<(), StorageError> {
        let readers: Vec<PartReader> = sources
            .iter()
            .map(|e| PartReader::new(Arc::clone(&self.inner.store), e.name.clone(), e.size))
            .collect();
        let mut indexes = Vec::with_capacity(readers.len());
        for r in &readers {
            indexes.push(self.observe("get", r.read_index().await)?);
        }
        // Every output series, with where it is in each source. Sources are
        // in creation order, so later data wins in `sort_dedup`.
        let mut plan: BTreeMap<(Labels, ChunkKind), Vec<(usize, usize)>> = BTreeMap::new();
        for (src, idx) in indexes.iter().enumerate() {
            for (pos, s) in idx.series.iter().enumerate() {
                plan.entry((s.labels.clone(), s.kind))
                    .or_default()
                    .push((src, pos));
            }
        }
        let mut blocks: Vec<Option<(u32, Arc<Vec<u8>>)>> = vec![None; readers.len()];
        let mut writer = PartWriter::new(self.inner.cfg.compact_zstd_level);
        let mut floats: Vec<Sample> = Vec::new();
        let mut hists: Vec<HistogramSample> = Vec::new();
        let mut total = 0u64;
        for ((labels, kind), locs) in &plan {
            floats.clear();
            hists.clear();
            for &(src, pos) in locs {
                let s = &indexes[src].series[pos];
                let block = self
                    .cached_block(&readers[src], &indexes[src], &mut blocks[src], s.block)
                    .await?;
                let chunk = block.get(s.offset as usize..).unwrap_or(&[]);
                decode_kind(*kind, chunk, i64::MIN, i64::MAX, &mut floats, &mut hists).map_err(
                    |source| crate::part::PartError::Codec {
                        path: readers[src].name.key(),
                        source,
                    },
                )?;
            }
            sort_dedup(&mut floats);
            sort_dedup(&mut hists);
            total += (floats.len() + hists.len()) as u64;
            writer.add(labels, &floats);
            writer.add_histograms(labels, &hists);
        }
        let Some((min_ts, max_ts)) = writer.time_range() else {
            return Ok(());
        };
        let (bytes, _) = tokio::task::block_in_place(|| writer.finish());
        let name = PartName {
            tenant: tenant.clone(),
            signal: Signal::Metrics,
            day_start_ms: day,
            level: sources.iter().map(|s| s.name.level).max().unwrap_or(0) + 1,
            min_ts,
            max_ts,
            wal_segment: sources
                .iter()
                .map(|s| s.name.wal_segment)
                .max()
                .unwrap_or(0),
            // Sorts right after its newest source, so that parts written
            // after that source still win on equal timestamps. (Parts written
            // between two sources but not merged can still lose to the older
            // source's data; only out-of-order rewrites can produce that.)
            id: format!(
                "{}_m{:x}",
                sources
                    .iter()
                    .map(|s| s.name.id.as_str())
                    .max()
                    .unwrap_or("0"),
                PART_SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff
            ),
        };
        let entry = self.put_part(&name, bytes).await?;
        self.inner
            .observer
            .part_written(tenant, entry.size, total, true);
        let note = Path::from(format!("{}{REPLACES_SUFFIX}", name.key()));
        let keys: Vec<String> = sources.iter().map(|s| s.name.key()).collect();
        let body = serde_json::to_vec(&keys).expect("BUG: strings serialise to JSON");
        let r = self.inner.store.put(&note, PutPayload::from(body)).await;
        self.observe("put", r)?;
        {
            let mut c = self
                .inner
                .catalog
                .lock()
                .expect("BUG: catalog lock poisoned");
            c.add(entry);
            for s in &sources {
                c.remove(&s.name);
            }
        }
        for src in &sources {
            self.forget_part(&src.name.key());
        }
        self.delete_later(sources.into_iter().map(|s| s.name).collect(), note);
        Ok(())
    }

    async fn cached_block(
        &self,
        reader: &PartReader,
        index: &PartIndex,
        slot: &mut Option<(u32, Arc<Vec<u8>>)>,
        block: u32,
    ) -> Result<Arc<Vec<u8>>, StorageError> {
        if let Some((b, data)) = slot
            && *b == block
        {
            return Ok(Arc::clone(data));
        }
        let data = Arc::new(self.observe("get", reader.read_block(index, block).await)?);
        *slot = Some((block, Arc::clone(&data)));
        Ok(data)
    }

    /// Drops what the caches hold of a part that left the catalog. A query
    /// that listed it just before may still cache a block of it; that block
    /// leaves with the least recently used ones.
    fn forget_part(&self, key: &str) {
        self.inner.index_cache.remove(key);
        self.inner
            .block_cache
            .remove_prefix(&crate::part_cache::blocks_prefix(key));
    }

    /// Deletes replaced parts after a grace period, so that queries that
    /// listed them just before the swap can still read them.
    fn delete_later(&self, names: Vec<PartName>, note: Path) {
        let store = Arc::clone(&self.inner.store);
        let observer = Arc::clone(&self.inner.observer);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            for n in names {
                let r = store.delete(&Path::from(n.key())).await;
                observer.object_store_op("delete", r.is_ok());
                if let Err(e) = r {
                    tracing::warn!(part = %n, error = %e, "deleting a replaced part failed");
                    return;
                }
            }
            let r = store.delete(&note).await;
            observer.object_store_op("delete", r.is_ok());
        });
    }

    /// Deletes parts entirely older than their tenant's retention.
    pub async fn apply_retention(
        &self,
        retention: impl Fn(&TenantId) -> Option<Duration>,
    ) -> Result<CompactionStats, StorageError> {
        let _m = self.inner.maintenance.lock().await;
        let mut stats = CompactionStats::default();
        let now = now_ms();
        let tenants = self
            .inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .tenants();
        for t in tenants {
            let Some(keep) = retention(&t) else { continue };
            let cutoff = now - keep.as_millis() as i64;
            for p in self.parts(&t) {
                if p.name.max_ts < cutoff {
                    let r = self.inner.store.delete(&Path::from(p.name.key())).await;
                    self.observe("delete", r)?;
                    self.inner
                        .catalog
                        .lock()
                        .expect("BUG: catalog lock poisoned")
                        .remove(&p.name);
                    self.forget_part(&p.name.key());
                    stats.parts_deleted_by_retention += 1;
                }
            }
        }
        Ok(stats)
    }
}
