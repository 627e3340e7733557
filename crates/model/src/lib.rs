//! Shared vocabulary of miru: tenants, labels, matchers, samples, log entries, the
//! error kinds every stage maps its errors onto, and calendar dates. No I/O lives here.
//!
//! Input: nothing. Output: types used by `ingest`, `storage` and `server`.

pub mod civil;
mod error;
mod histogram;
mod labels;
mod log;
mod matcher;
mod sample;
mod tenant;

pub use error::ErrorKind;
pub use histogram::{
    Bucket, BucketSpan, CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, HistogramError,
    HistogramSample, deltas_to_absolute, exponential_bucket_bound,
};
pub use labels::{Label, Labels, LabelsBuilder, METRIC_NAME};
pub use log::{LogEntry, LogStreamWrite, format_stream_labels};
pub use matcher::{MatchOp, Matcher, MatcherError, matches_all};
pub use sample::{
    Exemplar, MetricMetadata, MetricType, STALE_NAN_BITS, Sample, SeriesWrite, WriteBatch,
    is_stale_nan,
};
pub use tenant::{TenantError, TenantId};
