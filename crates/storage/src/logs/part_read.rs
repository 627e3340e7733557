//! Reads a Parquet logs part (`docs/formats/logs-part-v1.md`): the stream
//! table from the footer decides which row ranges to decode, so a query
//! for a few streams decompresses only their pages.

use std::ops::Range;

use arrow_array::{Array, MapArray, StringArray, TimestampNanosecondArray};
use bytes::Bytes;
use miru_model::{Label, Labels, LogEntry, Matcher};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::file::metadata::PageIndexPolicy;

use super::part_write::LogPartError;
use super::{FORMAT_KEY, FORMAT_NAME, STREAMS_KEY, VERSION, VERSION_KEY};

/// One stream of a part, from the footer's stream table.
#[derive(Debug, Clone)]
pub(crate) struct PartStream {
    pub(crate) labels: Labels,
    pub(crate) first_row: usize,
    pub(crate) rows: usize,
    pub(crate) min_ts_ns: i64,
    pub(crate) max_ts_ns: i64,
}

/// An opened part: its bytes, decoded footer and stream table.
pub(crate) struct LogPartReader {
    name: String,
    bytes: Bytes,
    meta: ArrowReaderMetadata,
    pub(crate) streams: Vec<PartStream>,
    total_rows: usize,
}

impl LogPartReader {
    pub(crate) fn open(name: &str, bytes: Bytes) -> Result<LogPartReader, LogPartError> {
        let invalid = |what: String| LogPartError::Invalid {
            name: name.to_string(),
            what,
        };
        let meta = ArrowReaderMetadata::load(
            &bytes,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
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
        if get(VERSION_KEY) != Some(VERSION) {
            return Err(invalid(format!(
                "unknown logs part version {:?} (this binary reads {VERSION})",
                get(VERSION_KEY)
            )));
        }
        let table: Vec<(String, Vec<String>, usize, usize, i64, i64)> =
            serde_json::from_str(get(STREAMS_KEY).unwrap_or("null"))
                .map_err(|e| invalid(format!("bad stream table: {e}")))?;
        let total_rows = meta.metadata().file_metadata().num_rows().max(0) as usize;
        let mut streams = Vec::with_capacity(table.len());
        let mut next_row = 0;
        for (_, pairs, first_row, rows, min_ts_ns, max_ts_ns) in table {
            if pairs.len() % 2 != 0 || first_row != next_row || first_row + rows > total_rows {
                return Err(invalid("stream table does not match the rows".into()));
            }
            next_row = first_row + rows;
            let mut labels: Vec<Label> = pairs
                .chunks(2)
                .map(|p| Label::new(p[0].as_str(), p[1].as_str()))
                .collect();
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            streams.push(PartStream {
                labels: Labels::from_sorted(labels),
                first_row,
                rows,
                min_ts_ns,
                max_ts_ns,
            });
        }
        Ok(LogPartReader {
            name: name.to_string(),
            bytes,
            meta,
            streams,
            total_rows,
        })
    }

    /// Entries in `[start_ns, end_ns)` of the streams matching every
    /// matcher, by stream, each stream's entries in stored order.
    pub(crate) fn select(
        &self,
        matchers: &[Matcher],
        start_ns: i64,
        end_ns: i64,
    ) -> Result<Vec<(Labels, Vec<LogEntry>)>, LogPartError> {
        let chosen: Vec<&PartStream> = self
            .streams
            .iter()
            .filter(|s| {
                s.rows > 0
                    && s.max_ts_ns >= start_ns
                    && s.min_ts_ns < end_ns
                    && miru_model::matches_all(matchers, &s.labels)
            })
            .collect();
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let ranges: Vec<Range<usize>> = chosen
            .iter()
            .map(|s| s.first_row..s.first_row + s.rows)
            .collect();
        let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), self.total_rows);
        let err = |e| LogPartError::Parquet(self.name.clone(), e);
        let schema = self.meta.parquet_schema();
        // Leaves: stream, labels.key, labels.value, timestamp, line,
        // structured_metadata.key, structured_metadata.value.
        let mask = ProjectionMask::roots(schema, [2, 3, 4]);
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.bytes.clone(),
            self.meta.clone(),
        )
        .with_projection(mask)
        .with_row_selection(selection)
        .build()
        .map_err(err)?;
        let mut out: Vec<(Labels, Vec<LogEntry>)> = Vec::with_capacity(chosen.len());
        let mut stream_at = 0;
        let mut left_in_stream = chosen[0].rows;
        let mut entries = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| LogPartError::Arrow(self.name.clone(), e))?;
            let bad = |what: &str| LogPartError::Invalid {
                name: self.name.clone(),
                what: format!("column {what} has an unexpected type"),
            };
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
                .ok_or_else(|| bad("timestamp"))?;
            let lines = batch
                .column(1)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| bad("line"))?;
            let md = batch
                .column(2)
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
            for i in 0..batch.num_rows() {
                while left_in_stream == 0 {
                    out.push((
                        chosen[stream_at].labels.clone(),
                        std::mem::take(&mut entries),
                    ));
                    stream_at += 1;
                    left_in_stream = chosen.get(stream_at).map_or(usize::MAX, |s| s.rows);
                }
                left_in_stream -= 1;
                let t = ts.value(i);
                if t < start_ns || t >= end_ns {
                    continue;
                }
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                entries.push(LogEntry {
                    timestamp_ns: t,
                    line: lines.value(i).to_string(),
                    structured_metadata: (from..to)
                        .map(|j| (md_keys.value(j).to_string(), md_values.value(j).to_string()))
                        .collect(),
                });
            }
        }
        if stream_at < chosen.len() {
            out.push((chosen[stream_at].labels.clone(), entries));
        }
        out.retain(|(_, e)| !e.is_empty());
        Ok(out)
    }
}
