//! Log entries as they arrive: a stream (its label set) and its lines.

use crate::Labels;

/// One log line with its timestamp and Loki 3 structured metadata
/// (per-entry name/value pairs that are not stream labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub timestamp_ns: i64,
    pub line: String,
    pub structured_metadata: Vec<(String, String)>,
}

/// The entries of one stream in a push request, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStreamWrite {
    pub labels: Labels,
    pub entries: Vec<LogEntry>,
}
