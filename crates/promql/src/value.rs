use std::sync::Arc;

use miru_model::{FloatHistogram, Labels};

/// The result of a query, as Prometheus' API distinguishes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: i64,
    pub value: PointValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Float(f64),
    Histogram(Arc<FloatHistogram>),
}

/// One series of a matrix; points sorted by time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RangeSeries {
    pub labels: Labels,
    pub floats: Vec<(i64, f64)>,
    pub histograms: Vec<(i64, Arc<FloatHistogram>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// `PromQL warning: ...` annotations, each ending with ` (line:col)`.
    pub warnings: Vec<String>,
    /// `PromQL info: ...` annotations.
    pub infos: Vec<String>,
    /// Samples read from the source.
    pub samples_scanned: u64,
}
