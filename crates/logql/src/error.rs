use miru_model::{ErrorKind, Labels};

use crate::source::SourceError;
use crate::syntax::ParseError;

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A query that parses but cannot run as asked (e.g. `approx_topk` in
    /// a range query, a selector without a non-empty matcher).
    #[error("{0}")]
    Invalid(String),
    /// A sample of a metric query kept an `__error__` label.
    #[error(
        "pipeline error: '{error}' for series: '{series}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{error}\").\nTo skip all errors you can use `| __error__=\"\"`."
    )]
    Pipeline { error: String, series: String },
    /// Vector matching or label sets that collide.
    #[error("{0}")]
    Execution(String),
    #[error("maximum number of series ({limit}) reached for a single query")]
    TooManySeries { limit: usize },
    #[error("the query hit the max number of entries or samples ({limit})")]
    TooManySamples { limit: usize },
    #[error("query canceled")]
    Canceled,
    #[error("reading logs: {0}")]
    Source(#[from] SourceError),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::Parse(_)
            | QueryError::Invalid(_)
            | QueryError::Pipeline { .. }
            | QueryError::Execution(_) => ErrorKind::BadData,
            QueryError::TooManySeries { .. } | QueryError::TooManySamples { .. } => {
                ErrorKind::Limited
            }
            QueryError::Canceled => ErrorKind::Unavailable,
            QueryError::Source(e) if e.limited => ErrorKind::Limited,
            QueryError::Source(_) => ErrorKind::Internal,
        }
    }
}

/// `{a="b", c="d"}` with Go-quoted values (Loki prints error series so).
pub(crate) fn series_text(l: &Labels) -> String {
    let parts: Vec<String> = l
        .iter()
        .map(|l| format!("{}={:?}", l.name, &*l.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}
