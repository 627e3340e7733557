use std::collections::BTreeMap;

use miru_model::{HistogramSample, Labels, Matcher, Sample, matches_all};

use crate::{LoadedShard, QueryError, Series, SeriesShard, SeriesSource};

/// An in-memory [`SeriesSource`], for tests and the conformance runner.
/// Later writes of the same timestamp replace earlier ones.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    series: BTreeMap<Labels, Stored>,
}

#[derive(Debug, Default, Clone)]
struct Stored {
    floats: BTreeMap<i64, f64>,
    histograms: BTreeMap<i64, std::sync::Arc<miru_model::FloatHistogram>>,
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a float sample (a stale NaN is a staleness marker). A float
    /// replaces a histogram at the same timestamp and vice versa.
    pub fn add_float(&mut self, labels: &Labels, timestamp_ms: i64, value: f64) {
        let s = self.series.entry(labels.clone()).or_default();
        s.histograms.remove(&timestamp_ms);
        s.floats.insert(timestamp_ms, value);
    }

    pub fn add_histogram(
        &mut self,
        labels: &Labels,
        timestamp_ms: i64,
        h: std::sync::Arc<miru_model::FloatHistogram>,
    ) {
        let s = self.series.entry(labels.clone()).or_default();
        s.floats.remove(&timestamp_ms);
        s.histograms.insert(timestamp_ms, h);
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }
}

impl SeriesSource for MemorySource {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let mut out = Vec::new();
        if mint_ms > maxt_ms {
            return Ok(out);
        }
        for (labels, s) in &self.series {
            if !matches_all(matchers, labels) {
                continue;
            }
            let floats: Vec<Sample> = s
                .floats
                .range(mint_ms..=maxt_ms)
                .map(|(&t, &v)| Sample {
                    timestamp_ms: t,
                    value: v,
                })
                .collect();
            let histograms: Vec<HistogramSample> = s
                .histograms
                .range(mint_ms..=maxt_ms)
                .map(|(&t, h)| HistogramSample {
                    timestamp_ms: t,
                    histogram: std::sync::Arc::clone(h),
                })
                .collect();
            if floats.is_empty() && histograms.is_empty() {
                continue;
            }
            out.push(Series {
                labels: labels.clone(),
                floats,
                histograms,
            });
        }
        Ok(out)
    }

    /// `select`'s series cut into at most `max_shards` shards of near-equal
    /// length, of two series at least (so a single series makes a single
    /// shard), so that tests exercise the engine's sharded and unsharded
    /// paths.
    fn select_shards(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
        max_shards: usize,
    ) -> Result<Vec<Box<dyn SeriesShard + Send + '_>>, QueryError> {
        let mut all = self.select(matchers, mint_ms, maxt_ms)?;
        let per = all.len().div_ceil(max_shards.max(1)).max(2);
        let mut shards: Vec<Box<dyn SeriesShard + Send>> = Vec::new();
        while !all.is_empty() {
            let rest = all.split_off(per.min(all.len()));
            shards.push(Box::new(LoadedShard(std::mem::replace(&mut all, rest))));
        }
        Ok(shards)
    }
}
