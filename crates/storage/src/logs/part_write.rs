//! Writes a frozen log generation as a Parquet part
//! (`docs/formats/logs-part-v2.md`) and its block filters
//! (`docs/formats/logs-blooms-v1.md`).

use std::sync::Arc;

use arrow_array::builder::{MapBuilder, MapFieldNames, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::blooms::{BLOCK_ROWS, BlockBuilder, PartBlooms};
use super::head::FrozenStream;
use super::{
    BLOCK_ROWS_KEY, FORMAT_KEY, FORMAT_NAME, MAX_ROW_GROUP_ROWS, STREAMS_KEY, VERSION, VERSION_KEY,
};

/// What a written part holds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogPartStats {
    pub(crate) entries: u64,
    pub(crate) streams: u64,
    /// Bytes of log lines (the raw size compression is measured against).
    pub(crate) line_bytes: u64,
    pub(crate) min_ts_ns: i64,
    pub(crate) max_ts_ns: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogPartError {
    #[error("logs part {0}: {1}")]
    Parquet(String, parquet::errors::ParquetError),
    #[error("logs part {0}: {1}")]
    Arrow(String, arrow_schema::ArrowError),
    #[error("logs part {name}: {what}")]
    Invalid { name: String, what: String },
}

fn map_field(name: &str) -> Field {
    let entry = Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
        ])),
        false,
    );
    Field::new(name, DataType::Map(Arc::new(entry), false), false)
}

/// The Arrow schema of a v1 part.
pub(crate) fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("stream", DataType::Utf8, false),
        map_field("labels"),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("line", DataType::Utf8, false),
        map_field("structured_metadata"),
    ]))
}

fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(
        Some(MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        }),
        StringBuilder::new(),
        StringBuilder::new(),
    )
    .with_values_field(Arc::new(Field::new("value", DataType::Utf8, false)))
}

/// Writer settings of a part (and of an export file): zstd at `zstd_level`
/// and footer key/value metadata `kv`.
pub(crate) fn properties(
    zstd_level: i32,
    kv: Vec<KeyValue>,
) -> Result<WriterProperties, LogPartError> {
    let level =
        ZstdLevel::try_new(zstd_level).map_err(|e| LogPartError::Parquet("(new)".into(), e))?;
    let ts = ColumnPath::from("timestamp");
    let line = ColumnPath::from("line");
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        // Pages end at block boundaries (and earlier when large), so a
        // block the filters rule out is a page range the reader skips.
        .set_data_page_row_count_limit(BLOCK_ROWS)
        // Timestamps are near-sorted within a stream: deltas pack well.
        // Dictionaries are turned off there, or the writer never uses the
        // requested encoding.
        .set_column_dictionary_enabled(ts.clone(), false)
        .set_column_encoding(ts, Encoding::DELTA_BINARY_PACKED)
        // Lines rarely repeat exactly; a dictionary would fall back anyway
        // after wasting a page of work.
        .set_column_dictionary_enabled(line, false)
        .set_key_value_metadata(Some(kv))
        .build())
}

/// A part ready to store: the Parquet file and its block filters.
pub(crate) struct EncodedLogPart {
    pub(crate) parquet: Vec<u8>,
    pub(crate) blooms: Vec<u8>,
    pub(crate) stats: LogPartStats,
}

/// Encodes streams (sorted by key, entries sorted and deduplicated) as
/// Parquet bytes and block filters.
pub(crate) fn write_part(
    streams: &[FrozenStream],
    zstd_level: i32,
) -> Result<EncodedLogPart, LogPartError> {
    let err_p = |e| LogPartError::Parquet("(new)".into(), e);
    let err_a = |e| LogPartError::Arrow("(new)".into(), e);
    debug_assert!(
        streams.windows(2).all(|w| w[0].key < w[1].key),
        "BUG: streams not sorted"
    );
    let mut st = LogPartStats {
        min_ts_ns: i64::MAX,
        max_ts_ns: i64::MIN,
        ..LogPartStats::default()
    };
    let mut index = Vec::with_capacity(streams.len());
    let mut row = 0u64;
    for s in streams {
        let (Some(first), Some(last)) = (s.entries.first(), s.entries.last()) else {
            continue;
        };
        let pairs: Vec<&str> = s
            .labels
            .iter()
            .flat_map(|l| [&*l.name, &*l.value])
            .collect();
        let line_bytes: u64 = s.entries.iter().map(|e| e.line.len() as u64).sum();
        index.push(serde_json::json!([
            s.key,
            pairs,
            row,
            s.entries.len(),
            first.timestamp_ns,
            last.timestamp_ns,
            line_bytes
        ]));
        row += s.entries.len() as u64;
        st.streams += 1;
        st.min_ts_ns = st.min_ts_ns.min(first.timestamp_ns);
        st.max_ts_ns = st.max_ts_ns.max(last.timestamp_ns);
    }
    let schema = schema();
    let props = properties(
        zstd_level,
        vec![
            KeyValue::new(FORMAT_KEY.into(), FORMAT_NAME.to_string()),
            KeyValue::new(VERSION_KEY.into(), VERSION.to_string()),
            KeyValue::new(
                STREAMS_KEY.into(),
                serde_json::Value::Array(index).to_string(),
            ),
            KeyValue::new(BLOCK_ROWS_KEY.into(), BLOCK_ROWS.to_string()),
        ],
    )?;
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(props)).map_err(err_p)?;
    // Batches of whole streams up to the row-group size keep memory flat.
    let mut at = 0;
    while at < streams.len() {
        let mut end = at;
        let mut rows = 0;
        while end < streams.len()
            && (rows == 0 || rows + streams[end].entries.len() <= MAX_ROW_GROUP_ROWS)
        {
            rows += streams[end].entries.len();
            end += 1;
        }
        let batch = batch(&schema, &streams[at..end], rows).map_err(err_a)?;
        w.write(&batch).map_err(err_p)?;
        at = end;
    }
    let mut blocks = Vec::new();
    let mut block = BlockBuilder::default();
    let mut in_block = 0;
    for e in streams.iter().flat_map(|s| &s.entries) {
        block.add_line(&e.line);
        for (k, v) in &e.structured_metadata {
            block.add_metadata(k, v);
        }
        in_block += 1;
        if in_block == BLOCK_ROWS {
            blocks.push(block.finish());
            in_block = 0;
        }
        st.entries += 1;
        st.line_bytes += e.line.len() as u64;
    }
    if in_block > 0 {
        blocks.push(block.finish());
    }
    w.close().map_err(err_p)?;
    Ok(EncodedLogPart {
        parquet: out,
        blooms: PartBlooms::encode(BLOCK_ROWS, &blocks),
        stats: st,
    })
}

fn batch(
    schema: &Arc<Schema>,
    streams: &[FrozenStream],
    rows: usize,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut stream_col = StringBuilder::with_capacity(rows, rows * 16);
    let mut labels_col = map_builder();
    let mut ts_col = Vec::with_capacity(rows);
    let line_bytes: usize = streams
        .iter()
        .flat_map(|s| s.entries.iter())
        .map(|e| e.line.len())
        .sum();
    let mut line_col = StringBuilder::with_capacity(rows, line_bytes);
    let mut md_col = map_builder();
    for s in streams {
        for e in &s.entries {
            stream_col.append_value(&s.key);
            for l in s.labels.iter() {
                labels_col.keys().append_value(&l.name);
                labels_col.values().append_value(&l.value);
            }
            labels_col.append(true)?;
            ts_col.push(e.timestamp_ns);
            line_col.append_value(&e.line);
            for (k, v) in &e.structured_metadata {
                md_col.keys().append_value(k);
                md_col.values().append_value(v);
            }
            md_col.append(true)?;
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(stream_col.finish()) as ArrayRef,
        Arc::new(labels_col.finish()),
        Arc::new(TimestampNanosecondArray::from(ts_col).with_timezone("UTC")),
        Arc::new(line_col.finish()) as ArrayRef,
        Arc::new(md_col.finish()),
    ];
    debug_assert!(columns[0].as_any().downcast_ref::<StringArray>().is_some());
    RecordBatch::try_new(Arc::clone(schema), columns)
}
