//! LogQL engine of miru.
//!
//! Input: a LogQL query, a time or range, and a [`LogSource`] that returns
//! log streams for matchers. Output: a [`Value`] (streams, vector, matrix
//! or scalar) with Loki 3 semantics; the Loki logqltest corpus is the
//! yardstick (`tests/conformance.rs`, report in `docs/conformance-logql.md`).

mod error;
mod eval;
pub mod logqltest;
mod memory;
pub mod pipeline;
#[cfg(test)]
mod proptests;
mod source;
pub mod syntax;
mod value;

/// Hash maps of the evaluator (label sets hash a lot; SipHash is slow).
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use error::QueryError;
pub use eval::{Direction, Engine, EngineOptions, LogQuery, MetricQuery, QueryContext};
pub use memory::MemorySource;
pub use source::{LineFilterHint, LogSource, SelectRequest, SourceError, StreamIter};
pub use syntax::{ParseError, parse};
pub use value::{LogLine, Sample, Series, Stream, Value};
