use miru_model::{Labels, LogEntry, Matcher};

/// A literal substring every line of the result must contain (from a
/// `|= "x"` before any stage that rewrites the line). A source may use it
/// to skip data; the engine applies every filter again anyway.
pub type LineFilterHint = String;

/// What the engine asks the storage for.
#[derive(Debug, Clone, Copy)]
pub struct SelectRequest<'a> {
    pub matchers: &'a [Matcher],
    /// Inclusive, nanoseconds since the Unix epoch.
    pub start_ns: i64,
    /// Exclusive.
    pub end_ns: i64,
    pub line_filters: &'a [LineFilterHint],
    /// Pairs every line of the result carries as a stream label or as
    /// structured metadata (from `| name="value"` before any parser).
    pub label_equals: &'a [(String, String)],
    /// Whether the query reads the lines. When false (a metric query that
    /// only counts entries and looks at labels), a source may return every
    /// entry with an empty line and skip reading the lines at all.
    pub lines_needed: bool,
}

/// Why the source failed; the message reaches the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub message: String,
    /// Whether a storage limit (not a fault) stopped the read.
    pub limited: bool,
}

/// Streams of a selection, one `(labels, entries)` at a time.
pub type StreamIter<'a> =
    Box<dyn Iterator<Item = Result<(Labels, Vec<LogEntry>), SourceError>> + 'a>;

/// Where the engine reads log streams from. Synchronous on purpose: the
/// server adapts its storage, tests use [`crate::MemorySource`].
pub trait LogSource: Sync {
    /// Every stream matching all matchers, with its entries in
    /// `[start_ns, end_ns)` in ascending timestamp order. Streams without
    /// entries in the range may be omitted; each stream appears once.
    fn select(&self, req: &SelectRequest<'_>) -> Result<StreamIter<'_>, SourceError>;
}
