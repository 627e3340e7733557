/// Why a query failed. [`QueryError::error_type`] gives the `errorType`
/// string of Prometheus' HTTP API.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query text does not parse or does not type-check; the message
    /// starts with `line:col: parse error:` as Prometheus' does.
    #[error("{message}")]
    Parse { message: String },
    /// The query parsed but failed while evaluating (e.g. many-to-many
    /// matching, duplicate label sets after relabelling).
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in expression evaluation")]
    Timeout,
    #[error("query was canceled in expression evaluation")]
    Canceled,
    #[error(
        "query processing would load too many samples into memory in query execution (limit {limit})"
    )]
    TooManySamples { limit: usize },
    /// The series source failed.
    #[error("expanding series: {0}")]
    Source(String),
}

impl QueryError {
    /// The `errorType` Prometheus' API reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::Parse { .. } => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples { .. } => "execution",
            QueryError::Timeout => "timeout",
            QueryError::Canceled => "canceled",
            QueryError::Source(_) => "internal",
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        QueryError::Execution(msg.into())
    }
}
