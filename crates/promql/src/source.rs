use miru_model::{HistogramSample, Labels, Matcher, Sample};

use crate::QueryError;

/// Where the engine reads raw samples from. Synchronous on purpose: the
/// server adapts its async storage, and tests use [`crate::MemorySource`].
pub trait SeriesSource: Sync {
    /// Every series matching all `matchers`, with the samples whose
    /// timestamps lie in `[mint_ms, maxt_ms]` (both inclusive), in
    /// ascending label order. Series without samples in the range may be
    /// omitted.
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, QueryError>;

    /// The series of [`SeriesSource::select`] split into at most
    /// `max_shards` shards over ascending, disjoint label ranges, so that
    /// the engine can read (decode) them on several threads and process
    /// each series as it comes: the shards' series, concatenated in order,
    /// are `select`'s. By default one shard holding `select`'s result.
    fn select_shards(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        max_shards: usize,
    ) -> Result<Vec<Box<dyn SeriesShard + Send + '_>>, QueryError> {
        let _ = max_shards;
        let all = self.select(matchers, mint_ms, maxt_ms)?;
        Ok(vec![Box::new(LoadedShard(all))])
    }
}

/// One shard of a selection (see [`SeriesSource::select_shards`]).
pub trait SeriesShard {
    /// Hands the shard's series to `visit` in label order; stops at the
    /// first error, of `visit` or of the source.
    fn for_each(
        self: Box<Self>,
        visit: &mut dyn FnMut(Series) -> Result<(), QueryError>,
    ) -> Result<(), QueryError>;
}

/// A shard whose series are already in memory.
pub struct LoadedShard(pub Vec<Series>);

impl SeriesShard for LoadedShard {
    fn for_each(
        self: Box<Self>,
        visit: &mut dyn FnMut(Series) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        self.0.into_iter().try_for_each(visit)
    }
}

/// One series as a source returns it; `floats` and `histograms` are each
/// sorted by timestamp. Stale markers are floats with the stale NaN bits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub floats: Vec<Sample>,
    pub histograms: Vec<HistogramSample>,
}
