use miru_model::Labels;

/// The result of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Log query result, streams in result order.
    Streams(Vec<Stream>),
    /// Instant metric query result.
    Vector(Vec<Sample>),
    /// Range metric query result; series sorted by labels.
    Matrix(Vec<Series>),
    /// A scalar at the evaluation time (nanoseconds).
    Scalar { t_ns: i64, v: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t_ns: i64,
    pub v: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    /// (timestamp ns, value), ascending.
    pub points: Vec<(i64, f64)>,
}

/// One stream of a log query: the final labels (stream, structured
/// metadata and parsed, plus `__error__`) and its lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub labels: Labels,
    pub entries: Vec<LogLine>,
}

/// A line of a log query result, with its labels split by origin as Loki's
/// `categorize-labels` encoding needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub timestamp_ns: i64,
    pub line: String,
    /// The selected stream's own labels.
    pub stream_labels: Labels,
    /// Structured metadata as it survived the pipeline.
    pub structured_metadata: Labels,
    /// Labels parsers and formatters added, plus `__error__`.
    pub parsed: Labels,
}
