use miru_model::{HistogramSample, Labels, Matcher, Sample};

use crate::QueryError;

/// Where the engine reads raw samples from. Synchronous on purpose: the
/// server adapts its async storage, and tests use [`crate::MemorySource`].
pub trait SeriesSource {
    /// Every series matching all `matchers`, with the samples whose
    /// timestamps lie in `[mint_ms, maxt_ms]` (both inclusive). Series
    /// without samples in the range may be omitted.
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, QueryError>;
}

/// One series as a source returns it; `floats` and `histograms` are each
/// sorted by timestamp. Stale markers are floats with the stale NaN bits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub floats: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}
