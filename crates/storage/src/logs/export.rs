//! Bulk export of logs parts straight from the object store, for
//! `miru export logs`: no server, no WAL, one part at a time and batch by
//! batch, so memory stays bounded by one batch and one output row group
//! whatever the time range. Output files: `docs/formats/logs-export-v1.md`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow_array::{
    Array, BooleanArray, MapArray, RecordBatch, StringArray, TimestampNanosecondArray,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use miru_model::{Matcher, TenantId};
use object_store::ObjectStore;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::part_read::{LogPartMeta, RangeReader};
use super::part_write::{LogPartError, properties, schema};
use super::{FORMAT_KEY, VERSION_KEY};
use crate::StorageError;
use crate::catalog::{Catalog, PartEntry};

/// `miru.format` and `miru.version` of an export file.
const EXPORT_FORMAT: &str = "logs-export";
const EXPORT_VERSION: &str = "1";
/// An output row group is flushed once its buffered columns pass this, so
/// very long lines cannot make a 65,536-row group unbounded.
const MAX_BUFFERED_BYTES: usize = 64 << 20;

/// Read access to a tenant's logs parts on an object store, without
/// opening the storage (no WAL, no head: entries not yet flushed are not
/// seen).
pub struct LogArchive {
    store: Arc<dyn ObjectStore>,
}

/// The selected rows of one part, as batches, and what reading cost.
pub struct PartExport {
    /// Rows of the streams matching the selector whose time range overlaps
    /// the export's (an upper bound of the rows the batches hold).
    pub rows_planned: u64,
    /// Bytes fetched from the object store so far for this part.
    pub bytes_fetched: Arc<AtomicU64>,
    pub batches: BoxStream<'static, Result<ExportBatch, StorageError>>,
}

/// Rows of one part with every column of the part schema, all in the
/// export's time range and of matching streams.
pub struct ExportBatch {
    batch: RecordBatch,
}

/// One exported entry, borrowed from its batch.
#[derive(Debug, PartialEq, Eq)]
pub struct ExportRow<'a> {
    pub timestamp_ns: i64,
    /// Stream labels, sorted by name.
    pub labels: Vec<(&'a str, &'a str)>,
    pub line: &'a str,
    /// In the order received.
    pub structured_metadata: Vec<(&'a str, &'a str)>,
}

impl LogArchive {
    pub fn new(store: Arc<dyn ObjectStore>) -> LogArchive {
        LogArchive { store }
    }

    /// The tenant's parts whose key range overlaps `[start_ns, end_ns)`,
    /// oldest day first, then in order of creation.
    pub async fn parts(
        &self,
        tenant: &TenantId,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<PartEntry>, StorageError> {
        let mint = start_ns.div_euclid(1_000_000);
        let maxt = end_ns.saturating_sub(1).div_euclid(1_000_000);
        let mut parts = Catalog::list_log_parts(&self.store, tenant).await?;
        parts.retain(|p| p.name.overlaps(mint, maxt));
        Ok(parts)
    }

    /// Reads the rows of `part` whose stream matches every matcher and
    /// whose timestamp is in `[start_ns, end_ns)`: the footer first (one
    /// ranged read), then only the pages of the matching streams.
    pub async fn read_part(
        &self,
        part: &PartEntry,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<PartExport, StorageError> {
        let key = part.name.key();
        let mut reader = RangeReader::new(Arc::clone(&self.store), &key, part.size);
        let meta = LogPartMeta::load(&key, &mut reader).await?;
        let plan = meta.plan(matchers, start_ns, end_ns, &|_, _| true);
        let bytes_fetched = Arc::clone(&reader.fetched);
        let rows_planned = plan.rows;
        let batches =
            if rows_planned == 0 {
                futures::stream::empty().boxed()
            } else {
                meta.all_columns(reader, &plan)?
                    .filter_map(move |b| {
                        let key = key.clone();
                        async move {
                            let b = match b {
                                Ok(b) => b,
                                Err(e) => return Some(Err(LogPartError::Parquet(key, e).into())),
                            };
                            match in_range(b, start_ns, end_ns) {
                                Ok(b) if b.num_rows() == 0 => None,
                                Ok(b) => Some(ExportBatch::new(b).map_err(|what| {
                                    LogPartError::Invalid { name: key, what }.into()
                                })),
                                Err(what) => {
                                    Some(Err(LogPartError::Invalid { name: key, what }.into()))
                                }
                            }
                        }
                    })
                    .boxed()
            };
        Ok(PartExport {
            rows_planned,
            bytes_fetched,
            batches,
        })
    }
}

/// The rows of `b` with a timestamp in `[start_ns, end_ns)`.
fn in_range(b: RecordBatch, start_ns: i64, end_ns: i64) -> Result<RecordBatch, String> {
    let ts = b
        .column(2)
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .ok_or("column timestamp has an unexpected type")?;
    if ts.values().iter().all(|&t| t >= start_ns && t < end_ns) {
        return Ok(b);
    }
    let keep: BooleanArray = ts
        .values()
        .iter()
        .map(|&t| Some(t >= start_ns && t < end_ns))
        .collect();
    arrow_select::filter::filter_record_batch(&b, &keep).map_err(|e| e.to_string())
}

impl ExportBatch {
    /// Checks the column types once, so that [`ExportBatch::rows`] cannot
    /// meet a surprise.
    fn new(batch: RecordBatch) -> Result<ExportBatch, String> {
        let c = |i: usize| batch.column(i).as_any();
        let typed = batch.num_columns() == 5
            && c(1).downcast_ref::<MapArray>().is_some_and(string_map)
            && c(2).downcast_ref::<TimestampNanosecondArray>().is_some()
            && c(3).downcast_ref::<StringArray>().is_some()
            && c(4).downcast_ref::<MapArray>().is_some_and(string_map);
        if typed {
            Ok(ExportBatch { batch })
        } else {
            Err("columns do not have the logs part types".into())
        }
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// The batch's entries in stored order (by stream, then time).
    pub fn rows(&self) -> impl Iterator<Item = ExportRow<'_>> {
        const CHECKED: &str = "BUG: column types are checked in ExportBatch::new";
        let c = |i: usize| self.batch.column(i).as_any();
        let labels = c(1).downcast_ref::<MapArray>().expect(CHECKED);
        let ts = c(2)
            .downcast_ref::<TimestampNanosecondArray>()
            .expect(CHECKED);
        let lines = c(3).downcast_ref::<StringArray>().expect(CHECKED);
        let md = c(4).downcast_ref::<MapArray>().expect(CHECKED);
        (0..self.batch.num_rows()).map(move |i| ExportRow {
            timestamp_ns: ts.value(i),
            labels: map_pairs(labels, i),
            line: lines.value(i),
            structured_metadata: map_pairs(md, i),
        })
    }
}

fn string_map(m: &MapArray) -> bool {
    m.keys().as_any().downcast_ref::<StringArray>().is_some()
        && m.values().as_any().downcast_ref::<StringArray>().is_some()
}

/// The pairs of map `i`; the key and value arrays are strings (checked in
/// [`ExportBatch::new`]).
fn map_pairs(m: &MapArray, i: usize) -> Vec<(&str, &str)> {
    const CHECKED: &str = "BUG: map types are checked in ExportBatch::new";
    let k = m
        .keys()
        .as_any()
        .downcast_ref::<StringArray>()
        .expect(CHECKED);
    let v = m
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .expect(CHECKED);
    let o = m.value_offsets();
    (o[i] as usize..o[i + 1] as usize)
        .map(|j| (k.value(j), v.value(j)))
        .collect()
}

/// Writes export batches as one Parquet file with the logs part schema.
pub struct ExportParquetWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    rows: u64,
}

impl<W: Write + Send> ExportParquetWriter<W> {
    /// `about` goes into the footer as `miru.export.<key>` pairs (tenant,
    /// selector, range).
    pub fn new(out: W, zstd_level: i32, about: &[(&str, String)]) -> Result<Self, LogPartError> {
        let mut kv = vec![
            KeyValue::new(FORMAT_KEY.into(), EXPORT_FORMAT.to_string()),
            KeyValue::new(VERSION_KEY.into(), EXPORT_VERSION.to_string()),
        ];
        kv.extend(
            about
                .iter()
                .map(|(k, v)| KeyValue::new(format!("miru.export.{k}"), v.clone())),
        );
        let props = properties(zstd_level, kv)?;
        let writer = ArrowWriter::try_new(out, schema(), Some(props))
            .map_err(|e| LogPartError::Parquet("(export)".into(), e))?;
        Ok(ExportParquetWriter { writer, rows: 0 })
    }

    pub fn write(&mut self, b: &ExportBatch) -> Result<(), LogPartError> {
        let err = |e| LogPartError::Parquet("(export)".into(), e);
        self.writer.write(&b.batch).map_err(err)?;
        self.rows += b.num_rows() as u64;
        if self.writer.in_progress_size() > MAX_BUFFERED_BYTES {
            self.writer.flush().map_err(err)?;
        }
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the footer and hands back the output.
    pub fn finish(self) -> Result<W, LogPartError> {
        self.writer
            .into_inner()
            .map_err(|e| LogPartError::Parquet("(export)".into(), e))
    }
}
