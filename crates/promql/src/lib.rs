//! PromQL evaluation engine of miru.
//!
//! Input: a query string (parsed by `promql-parser`), an evaluation time or
//! range, and a [`SeriesSource`] that returns raw samples for label matchers.
//! Output: a [`QueryResult`] with the value and Prometheus-style annotations.
//! Semantics follow Prometheus 3 (delayed `__name__` removal, left-open range
//! windows, lookback delta); the upstream promqltest corpus is the yardstick
//! (`tests/conformance.rs`, report in `docs/conformance.md`).

mod annotations;
mod error;
mod eval;
mod functions;
mod histogram;
mod memory;
mod plan;
mod position;
pub mod promqltest;
mod source;
mod syntax;
mod value;

/// Hash maps of the evaluator: labels and signatures hash a lot, and
/// SipHash is slow for them.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use error::QueryError;
pub use eval::parallel::init_query_threads;
pub use eval::{Engine, EngineOptions, QueryContext};
pub use memory::MemorySource;
pub use position::parse_error_position;
pub use source::{LoadedShard, Series, SeriesShard, SeriesSource};
pub use syntax::{MAX_NESTING, parse};
pub use value::{InstantSample, PointValue, QueryResult, RangeSeries, Value};
