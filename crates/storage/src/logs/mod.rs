//! Log storage: the same WAL, cut and object store as metrics, with a log
//! head per tenant and plain Parquet parts (`docs/formats/logs-part-v1.md`).
//! Split by direction: `head` (append, replay, cut, in-memory reads),
//! `part_write`/`part_read` (Parquet), `store` (the `Storage` methods).

mod head;
mod part_read;
mod part_write;
mod store;

pub(crate) use head::{FrozenLogs, LogHead};
pub use part_write::LogPartError;
pub use store::LogSelection;

/// Footer keys of a logs part.
pub(crate) const FORMAT_KEY: &str = "miru.format";
pub(crate) const FORMAT_NAME: &str = "logs-part";
pub(crate) const VERSION_KEY: &str = "miru.version";
pub(crate) const VERSION: &str = "1";
pub(crate) const STREAMS_KEY: &str = "miru.streams";
/// Rows per Parquet row group.
pub(crate) const MAX_ROW_GROUP_ROWS: usize = 65_536;

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
