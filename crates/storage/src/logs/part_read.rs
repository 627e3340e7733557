//! Reads a Parquet logs part (`docs/formats/logs-part-v2.md`) by ranges:
//! the footer's stream table and the block filters decide which rows to
//! decode, and only the pages holding those rows are fetched.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{Array, MapArray, StringArray, TimestampNanosecondArray};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use miru_model::{Label, Labels, LogEntry, Matcher};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection};
use parquet::arrow::async_reader::{
    AsyncFileReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;

use super::blooms::PartBlooms;
use super::part_write::LogPartError;
use super::{
    BLOCK_ROWS_KEY, FORMAT_KEY, FORMAT_NAME, LogReadHints, STREAMS_KEY, VERSION_KEY, VERSIONS_READ,
};
use crate::{ScanBudget, StorageError};

/// One stream of a part, from the footer's stream table.
#[derive(Debug, Clone)]
pub(crate) struct PartStream {
    pub(crate) labels: Labels,
    pub(crate) first_row: usize,
    pub(crate) rows: usize,
    pub(crate) min_ts_ns: i64,
    pub(crate) max_ts_ns: i64,
    /// Bytes of the stream's lines (v2; 0 in v1 parts).
    pub(crate) line_bytes: u64,
}

/// `[stream, [name, value, …], first_row, rows, min_ts_ns, max_ts_ns]`,
/// plus `line_bytes` in v2.
fn parse_stream_row(row: &[serde_json::Value]) -> Option<PartStream> {
    if !(6..=7).contains(&row.len()) {
        return None;
    }
    let pairs: Vec<&str> = row[1]
        .as_array()?
        .iter()
        .map(|v| v.as_str())
        .collect::<Option<_>>()?;
    if !pairs.len().is_multiple_of(2) {
        return None;
    }
    let mut labels: Vec<Label> = pairs.chunks(2).map(|p| Label::new(p[0], p[1])).collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    Some(PartStream {
        labels: Labels::from_sorted(labels),
        first_row: usize::try_from(row[2].as_u64()?).ok()?,
        rows: usize::try_from(row[3].as_u64()?).ok()?,
        min_ts_ns: row[4].as_i64()?,
        max_ts_ns: row[5].as_i64()?,
        line_bytes: row.get(6).map_or(Some(0), serde_json::Value::as_u64)?,
    })
}

/// Reads byte ranges of one object, counting what it fetched. The Parquet
/// reader asks it for the footer, the page index and the pages it needs.
#[derive(Clone)]
pub(crate) struct RangeReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    metadata: Option<Arc<ParquetMetaData>>,
    pub(crate) fetched: Arc<AtomicU64>,
    /// Failed requests, for the object-store metrics.
    pub(crate) failed: Arc<AtomicU64>,
}

impl RangeReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, key: &str, size: u64) -> Self {
        RangeReader {
            store,
            path: Path::from(key),
            size,
            metadata: None,
            fetched: Arc::default(),
            failed: Arc::default(),
        }
    }

    fn count(&self, r: object_store::Result<Vec<Bytes>>) -> parquet::errors::Result<Vec<Bytes>> {
        match r {
            Ok(v) => {
                let n: usize = v.iter().map(Bytes::len).sum();
                self.fetched.fetch_add(n as u64, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err(ParquetError::External(Box::new(e)))
            }
        }
    }
}

impl AsyncFileReader for RangeReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let r = self.store.get_range(&self.path, range).await;
            Ok(self.count(r.map(|b| vec![b]))?.remove(0))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let r = self.store.get_ranges(&self.path, &ranges).await;
            self.count(r)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            if let Some(m) = &self.metadata {
                return Ok(Arc::clone(m));
            }
            let size = self.size;
            let m = ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                // Footer, stream table and page index are usually well
                // under this: one request instead of three.
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(&mut *self, size)
                .await?;
            let m = Arc::new(m);
            self.metadata = Some(Arc::clone(&m));
            Ok(m)
        }
        .boxed()
    }
}

/// A part's footer, decoded: Parquet metadata with the page index and the
/// stream table. Cached between queries.
pub(crate) struct LogPartMeta {
    name: String,
    meta: ArrowReaderMetadata,
    pub(crate) streams: Vec<PartStream>,
    total_rows: usize,
    /// Rows per filter block when the part has block filters (v2).
    pub(crate) block_rows: Option<usize>,
    /// The timestamp column's pages with their time bounds, from the page
    /// index (empty when the part has none): rows of a stream on pages
    /// wholly outside a query's range are not read.
    ts_pages: Vec<TsPage>,
    approx_bytes: usize,
}

/// One page of the timestamp column: its first row in the part and the
/// least and greatest timestamp on it.
#[derive(Debug, Clone, Copy)]
struct TsPage {
    first_row: usize,
    min_ns: i64,
    max_ns: i64,
}

/// The timestamp column's pages in row order, or nothing when the page
/// index is missing or incomplete (then no page is ruled out by time).
fn timestamp_pages(meta: &ParquetMetaData) -> Vec<TsPage> {
    let Some(column) = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "timestamp")
    else {
        return Vec::new();
    };
    let Some(index) = meta.page_index() else {
        return Vec::new();
    };
    let mut pages = Vec::new();
    let mut group_first_row = 0usize;
    for (g, group) in meta.row_groups().iter().enumerate() {
        let (Some(ColumnIndexMetaData::INT64(bounds)), Some(offsets)) =
            (index.column_index(g, column), index.offset_index(g, column))
        else {
            return Vec::new();
        };
        for (i, loc) in offsets.page_locations().iter().enumerate() {
            let (Some(&min_ns), Some(&max_ns)) = (bounds.min_value(i), bounds.max_value(i)) else {
                return Vec::new();
            };
            pages.push(TsPage {
                first_row: group_first_row + loc.first_row_index.max(0) as usize,
                min_ns,
                max_ns,
            });
        }
        group_first_row += group.num_rows().max(0) as usize;
    }
    pages
}

impl crate::part_cache::CacheWeight for LogPartMeta {
    fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }
}

impl crate::part_cache::CacheWeight for PartBlooms {
    fn approx_bytes(&self) -> usize {
        PartBlooms::approx_bytes(self)
    }
}

/// Entries examined in the time range (before the hints' filtering) and
/// their line bytes: what Loki reports as lines and bytes processed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Scanned {
    pub(crate) entries: u64,
    pub(crate) line_bytes: u64,
}

impl Scanned {
    pub(crate) fn add(&mut self, line: &str) {
        self.entries += 1;
        self.line_bytes += line.len() as u64;
    }
}

/// What to read of a part for one query.
pub(crate) struct ReadPlan {
    /// Indexes of the chosen streams with the rows selected of each.
    streams: Vec<(usize, usize)>,
    selection: Vec<Range<usize>>,
    /// Rows of the chosen streams, and how many of them the block filters
    /// ruled out.
    pub(crate) rows: u64,
    pub(crate) rows_skipped: u64,
    /// The query's time range, `[start_ns, end_ns)`.
    start_ns: i64,
    end_ns: i64,
}

impl ReadPlan {
    /// Rows the plan decodes, over all its streams.
    pub(crate) fn selected_rows(&self) -> usize {
        self.streams.iter().map(|s| s.1).sum()
    }
}

impl LogPartMeta {
    /// Reads the footer through `reader`.
    pub(crate) async fn load(
        name: &str,
        reader: &mut RangeReader,
    ) -> Result<LogPartMeta, LogPartError> {
        let meta = reader
            .get_metadata(None)
            .await
            .map_err(|e| LogPartError::Parquet(name.to_string(), e))?;
        Self::from_metadata(name, meta)
    }

    pub(crate) fn from_metadata(
        name: &str,
        metadata: Arc<ParquetMetaData>,
    ) -> Result<LogPartMeta, LogPartError> {
        let invalid = |what: String| LogPartError::Invalid {
            name: name.to_string(),
            what,
        };
        let meta = ArrowReaderMetadata::try_new(metadata, ArrowReaderOptions::new())
            .map_err(|e| LogPartError::Parquet(name.to_string(), e))?;
        let kv = meta.metadata().file_metadata().key_value_metadata();
        let get = |key: &str| {
            kv.and_then(|kv| kv.iter().find(|e| e.key == key))
                .and_then(|e| e.value.as_deref())
        };
        if get(FORMAT_KEY) != Some(FORMAT_NAME) {
            return Err(invalid(format!(
                "not a miru logs part (footer {FORMAT_KEY} is {:?})",
                get(FORMAT_KEY)
            )));
        }
        if !get(VERSION_KEY).is_some_and(|v| VERSIONS_READ.contains(&v)) {
            return Err(invalid(format!(
                "unknown logs part version {:?} (this binary reads {VERSIONS_READ:?})",
                get(VERSION_KEY)
            )));
        }
        let block_rows = match get(BLOCK_ROWS_KEY) {
            None => None,
            Some(v) => Some(
                v.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| invalid(format!("bad {BLOCK_ROWS_KEY} {v:?}")))?,
            ),
        };
        let table_json = get(STREAMS_KEY).unwrap_or("null");
        let table: Vec<Vec<serde_json::Value>> = serde_json::from_str(table_json)
            .map_err(|e| invalid(format!("bad stream table: {e}")))?;
        let total_rows = meta.metadata().file_metadata().num_rows().max(0) as usize;
        let mut streams = Vec::with_capacity(table.len());
        let mut next_row = 0;
        for row in table {
            let stream = parse_stream_row(&row)
                .filter(|s| {
                    s.first_row == next_row
                        && s.first_row
                            .checked_add(s.rows)
                            .is_some_and(|e| e <= total_rows)
                })
                .ok_or_else(|| invalid("stream table does not match the rows".into()))?;
            next_row = stream.first_row + stream.rows;
            streams.push(stream);
        }
        // The decoded footer (row groups x columns, page index) is about
        // the size of its serialised form, which the stream table dominates.
        let row_groups = meta.metadata().num_row_groups();
        let approx_bytes = 2 * table_json.len() + row_groups * 4096 + 4096;
        let ts_pages = timestamp_pages(meta.metadata());
        Ok(LogPartMeta {
            name: name.to_string(),
            meta,
            streams,
            total_rows,
            block_rows,
            ts_pages,
            approx_bytes,
        })
    }

    /// Streams with entries in `[start_ns, end_ns)` matching every matcher.
    pub(crate) fn matching(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> impl Iterator<Item = (usize, &PartStream)> {
        self.streams.iter().enumerate().filter(move |(_, s)| {
            s.rows > 0
                && s.max_ts_ns >= start_ns
                && s.min_ts_ns < end_ns
                && miru_model::matches_all(matchers, &s.labels)
        })
    }

    /// The rows to decode: the matching streams' rows, less the blocks
    /// `block_may_match` rules out (called with the block index and the
    /// streams present in it among the chosen).
    pub(crate) fn plan(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
        block_may_match: &dyn Fn(usize, &Labels) -> bool,
    ) -> ReadPlan {
        let mut plan = ReadPlan {
            streams: Vec::new(),
            selection: Vec::new(),
            rows: 0,
            rows_skipped: 0,
            start_ns,
            end_ns,
        };
        let block_rows = self.block_rows.unwrap_or(usize::MAX);
        for (i, s) in self.matching(matchers, start_ns, end_ns) {
            let end = s.first_row + s.rows;
            let mut row = s.first_row;
            let mut selected = 0;
            while row < end {
                let block = row / block_rows;
                let mut block_end = end.min(block.saturating_add(1).saturating_mul(block_rows));
                // Rows on timestamp pages wholly outside the range are
                // neither read nor counted: they are not in the query.
                let (in_range, until) = self.pages_in_range(row, block_end, start_ns, end_ns);
                if !in_range {
                    row = until;
                    continue;
                }
                block_end = until;
                let keep = block_may_match(block, &s.labels);
                plan.rows += (block_end - row) as u64;
                if keep {
                    match plan.selection.last_mut() {
                        Some(r) if r.end == row => r.end = block_end,
                        _ => plan.selection.push(row..block_end),
                    }
                    selected += block_end - row;
                } else {
                    plan.rows_skipped += (block_end - row) as u64;
                }
                row = block_end;
            }
            if selected > 0 {
                plan.streams.push((i, selected));
            }
        }
        plan
    }

    /// `plan` cut into at most `n` plans of whole streams with about equal
    /// numbers of selected rows, in row order, for reading on several
    /// threads; what they read together is what `plan` reads. Row counts
    /// (`rows`, `rows_skipped`) stay with the first.
    pub(crate) fn split(&self, plan: ReadPlan, n: usize) -> Vec<ReadPlan> {
        if n <= 1 || plan.streams.len() <= 1 {
            return vec![plan];
        }
        let per = plan.selected_rows().div_ceil(n).max(1);
        let mut groups: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
        let mut acc = 0;
        for &s in &plan.streams {
            if acc >= per && groups.len() < n {
                groups.push(Vec::new());
                acc = 0;
            }
            acc += s.1;
            groups.last_mut().expect("BUG: no group").push(s);
        }
        let mut out = Vec::with_capacity(groups.len());
        for (g, streams) in groups.into_iter().enumerate() {
            let first = &self.streams[streams[0].0];
            let last = &self.streams[streams[streams.len() - 1].0];
            let (lo, hi) = (first.first_row, last.first_row + last.rows);
            let selection = plan
                .selection
                .iter()
                .filter(|r| r.start < hi && r.end > lo)
                .map(|r| r.start.max(lo)..r.end.min(hi))
                .collect();
            out.push(ReadPlan {
                streams,
                selection,
                rows: if g == 0 { plan.rows } else { 0 },
                rows_skipped: if g == 0 { plan.rows_skipped } else { 0 },
                start_ns: plan.start_ns,
                end_ns: plan.end_ns,
            });
        }
        out
    }

    /// Whether rows from `row` on may hold timestamps in `[start_ns,
    /// end_ns)` by the timestamp pages' bounds, and up to which row (at most
    /// `until`) that answer holds: a run of pages that all may, or all
    /// cannot.
    fn pages_in_range(
        &self,
        row: usize,
        until: usize,
        start_ns: i64,
        end_ns: i64,
    ) -> (bool, usize) {
        let pages = &self.ts_pages;
        if pages.is_empty() {
            return (true, until);
        }
        // The page holding `row`: the last one starting at or before it.
        let mut p = pages
            .partition_point(|pg| pg.first_row <= row)
            .saturating_sub(1);
        let overlaps = |pg: &TsPage| pg.max_ns >= start_ns && pg.min_ns < end_ns;
        let answer = overlaps(&pages[p]);
        loop {
            p += 1;
            match pages.get(p) {
                Some(pg) if pg.first_row < until => {
                    if overlaps(pg) != answer {
                        return (answer, pg.first_row);
                    }
                }
                _ => return (answer, until),
            }
        }
    }

    /// Every column of the planned rows, batch by batch, for export (the
    /// caller drops rows outside the plan's time range). Only the pages
    /// holding planned rows are fetched through `reader`.
    pub(crate) fn all_columns(
        &self,
        reader: RangeReader,
        plan: &ReadPlan,
    ) -> Result<ParquetRecordBatchStream<RangeReader>, LogPartError> {
        let selection =
            RowSelection::from_consecutive_ranges(plan.selection.iter().cloned(), self.total_rows);
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.meta.clone())
            .with_row_selection(selection)
            .build()
            .map_err(|e| LogPartError::Parquet(self.name.clone(), e))
    }

    /// Decodes the planned rows, keeping entries in the plan's time range,
    /// by stream, each stream's entries in stored order. Only the pages
    /// holding planned rows are fetched through `reader`.
    pub(crate) async fn read(
        &self,
        reader: RangeReader,
        plan: &ReadPlan,
        hints: &LogReadHints,
        scanned: &mut Scanned,
        budget: &ScanBudget,
    ) -> Result<Vec<(Labels, Vec<LogEntry>)>, StorageError> {
        if plan.streams.is_empty() {
            return Ok(Vec::new());
        }
        let (start_ns, end_ns) = (plan.start_ns, plan.end_ns);
        let chosen: Vec<(&PartStream, usize)> = plan
            .streams
            .iter()
            .map(|&(i, rows)| (&self.streams[i], rows))
            .collect();
        let selection =
            RowSelection::from_consecutive_ranges(plan.selection.iter().cloned(), self.total_rows);
        let err = |e| LogPartError::Parquet(self.name.clone(), e);
        let schema = self.meta.parquet_schema();
        // Roots: stream, labels, timestamp, line, structured_metadata. The
        // line column, most of a part's bytes, only when the query reads it.
        let roots: &[usize] = if hints.skip_lines {
            &[2, 4]
        } else {
            &[2, 3, 4]
        };
        let mask = ProjectionMask::roots(schema, roots.iter().copied());
        let mut batches =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.meta.clone())
                .with_projection(mask)
                .with_row_selection(selection)
                .build()
                .map_err(err)?;
        let mut out: Vec<(Labels, Vec<LogEntry>)> = Vec::with_capacity(chosen.len());
        let mut stream_at = 0;
        let mut left_in_stream = chosen[0].1;
        let mut entries = Vec::new();
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(err)?;
            let bad = |what: &str| LogPartError::Invalid {
                name: self.name.clone(),
                what: format!("column {what} has an unexpected type"),
            };
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| bad("timestamp"))?;
            let lines = if hints.skip_lines {
                None
            } else {
                Some(
                    batch
                        .column(1)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| bad("line"))?,
                )
            };
            let md = batch
                .column(roots.len() - 1)
                .as_any()
                .downcast_ref::<MapArray>()
                .ok_or_else(|| bad("structured_metadata"))?;
            let md_keys = md
                .keys()
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad("structured_metadata"))?;
            let md_values = md
                .values()
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad("structured_metadata"))?;
            let offsets = md.value_offsets();
            let mut batch_bytes = 0;
            for i in 0..batch.num_rows() {
                while left_in_stream == 0 {
                    out.push((
                        chosen[stream_at].0.labels.clone(),
                        std::mem::take(&mut entries),
                    ));
                    stream_at += 1;
                    left_in_stream = chosen.get(stream_at).map_or(usize::MAX, |s| s.1);
                }
                left_in_stream -= 1;
                let t = ts.value(i);
                if t < start_ns || t >= end_ns {
                    continue;
                }
                let line = lines.map_or("", |l| l.value(i));
                scanned.add(line);
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                // Rows the hints rule out are not copied: a needle search
                // holds only the lines that contain the needle.
                let has_metadata = |k: &str, v: &str| {
                    (from..to).any(|j| md_keys.value(j) == k && md_values.value(j) == v)
                };
                if !hints.admits(&chosen[stream_at].0.labels, line, has_metadata) {
                    continue;
                }
                let entry = LogEntry {
                    timestamp_ns: t,
                    line: line.to_string(),
                    structured_metadata: (from..to)
                        .map(|j| (md_keys.value(j).to_string(), md_values.value(j).to_string()))
                        .collect(),
                };
                batch_bytes += super::head::entry_bytes(&entry) as u64;
                entries.push(entry);
            }
            // Charged batch by batch (1,024 rows at most), so a large part
            // cannot fill memory before the query's budget says no.
            budget.charge_bytes(batch_bytes)?;
        }
        if stream_at < chosen.len() {
            out.push((chosen[stream_at].0.labels.clone(), entries));
        }
        out.retain(|(_, e)| !e.is_empty());
        Ok(out)
    }
}
