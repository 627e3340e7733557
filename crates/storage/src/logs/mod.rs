//! Log storage: the same WAL, cut and object store as metrics, with a log
//! head per tenant and plain Parquet parts (`docs/formats/logs-part-v2.md`)
//! with block filters beside them (`docs/formats/logs-blooms-v1.md`).
//! Split by direction: `head` (append, replay, cut, in-memory reads),
//! `part_write`/`part_read` (Parquet), `blooms` (block filters), `store`
//! (the `Storage` methods).

pub(crate) mod blooms;
mod export;
mod head;
mod part_read;
mod part_write;
mod store;

pub(crate) use blooms::PartBlooms;
pub use export::{ExportBatch, ExportParquetWriter, ExportRow, LogArchive, PartExport};
pub(crate) use head::{FrozenLogs, LogHead};
pub(crate) use part_read::LogPartMeta;
pub use part_write::LogPartError;
pub use store::LogSelection;

/// Footer keys of a logs part.
pub(crate) const FORMAT_KEY: &str = "miru.format";
pub(crate) const FORMAT_NAME: &str = "logs-part";
pub(crate) const VERSION_KEY: &str = "miru.version";
pub(crate) const VERSION: &str = "2";
/// Versions this binary reads: v1 parts have no block filters.
pub(crate) const VERSIONS_READ: [&str; 2] = ["1", "2"];
pub(crate) const STREAMS_KEY: &str = "miru.streams";
/// Rows per block of the part's block filters (v2).
pub(crate) const BLOCK_ROWS_KEY: &str = "miru.block_rows";
/// Suffix of the block filters object beside a part (the part's key with
/// `.parquet` replaced).
pub(crate) const BLOOMS_SUFFIX: &str = ".blooms";
/// Rows per Parquet row group.
pub(crate) const MAX_ROW_GROUP_ROWS: usize = 65_536;

/// What a query promises about every entry it wants, so that storage can
/// skip blocks (and rows) that cannot qualify. Storage may return entries
/// that do not satisfy the hints; the query applies its filters anyway.
#[derive(Debug, Clone, Default)]
pub struct LogReadHints {
    /// Substrings every wanted line contains (`|= "…"`).
    pub line_contains: Vec<String>,
    /// Pairs every wanted entry carries as a stream label or as structured
    /// metadata (`| trace_id="…"` before any parser).
    pub label_equals: Vec<(String, String)>,
    /// The query never reads the lines: entries may come with empty lines
    /// and the line column is not fetched.
    pub skip_lines: bool,
    /// Threads that may decode parts at once for this read (0 or 1: the
    /// calling task alone). The pages of large selections are cut into
    /// runs of whole streams, decoded side by side.
    pub threads: usize,
}

impl LogReadHints {
    /// Whether no needle or label pair narrows the rows (`skip_lines`
    /// narrows nothing).
    pub fn is_empty(&self) -> bool {
        self.line_contains.is_empty() && self.label_equals.is_empty()
    }

    /// Whether an entry of a stream with `labels` may be wanted;
    /// `has_metadata(name, value)` tells whether it carries that pair.
    pub(crate) fn admits(
        &self,
        labels: &miru_model::Labels,
        line: &str,
        has_metadata: impl Fn(&str, &str) -> bool,
    ) -> bool {
        self.line_contains.iter().all(|n| line.contains(n.as_str()))
            && self
                .label_equals
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v.as_str()) || has_metadata(k, v))
    }
}

/// What the stream tables say about one stream's entries in one part (or
/// in memory): Loki's "chunk" for index statistics and volumes. A part's
/// stream overlapping a range counts whole, as Loki counts chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunkStats {
    pub labels: miru_model::Labels,
    pub min_ts_ns: i64,
    pub max_ts_ns: i64,
    pub entries: u64,
    pub line_bytes: u64,
}

/// Limits the log head enforces for one append (per tenant).
#[derive(Debug, Clone, Copy)]
pub struct LogAppendLimits {
    /// Streams a tenant may hold in the head (0: no limit).
    pub max_streams: u64,
    /// How far behind a stream's newest entry an entry may be.
    pub out_of_order_window_ns: i64,
}

/// Why the head refused entries (the reason label of the discarded
/// counters, as Loki names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRejectReason {
    /// A new stream past `max_streams` (Loki answers 429).
    StreamLimit,
    /// Older than the out-of-order window allows (400).
    TooFarBehind,
}

impl LogRejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LogRejectReason::StreamLimit => "stream_limit",
            LogRejectReason::TooFarBehind => "too_far_behind",
        }
    }

    /// Whether the sender should retry later (a limit) rather than fix
    /// the data.
    pub fn is_limit(self) -> bool {
        self == LogRejectReason::StreamLimit
    }
}

/// Result of a log append, for the response and the metrics.
#[derive(Debug, Default)]
pub struct LogAppendResult {
    pub entries_accepted: u64,
    pub bytes_accepted: u64,
    pub entries_deduplicated: u64,
    pub rejected: Vec<(LogRejectReason, u64)>,
    /// The first rejection's reason and message.
    pub first_error: Option<(LogRejectReason, String)>,
}
