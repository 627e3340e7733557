//! The scan API: series and samples for matchers and a time range, merged
//! across parts (oldest first), frozen head generations and the active head.
//! Later writes win when timestamps collide, and the result is deduplicated.

use std::collections::{BTreeMap, HashSet};

use miru_model::{Exemplar, HistogramSample, Labels, Matcher, MetricMetadata, Sample, TenantId};

use crate::head::sort_dedup;
use crate::part::{ChunkSamples, PartReader};
use crate::{Storage, StorageError};

/// One series and its samples, sorted by time without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    /// Native histogram samples, likewise sorted.
    pub histograms: Vec<HistogramSample>,
}

/// Samples gathered per series from parts and heads before sorting.
pub(crate) type Merged = BTreeMap<Labels, (Vec<Sample>, Vec<HistogramSample>)>;

impl Storage {
    fn parts_for(&self, tenant: &TenantId, mint: i64, maxt: i64) -> Vec<PartReader> {
        let entries = self
            .inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .overlapping(tenant, mint, maxt);
        entries
            .into_iter()
            .map(|e| PartReader::new(std::sync::Arc::clone(&self.inner.store), e.name, e.size))
            .collect()
    }

    /// Samples of every matching series in `[mint, maxt]` (milliseconds, inclusive).
    pub async fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let mut merged: Merged = BTreeMap::new();
        for p in self.parts_for(tenant, mint, maxt) {
            let index = self.observe("get", p.read_index().await)?;
            let positions = index.select(matchers, mint, maxt);
            if positions.is_empty() {
                continue;
            }
            for (labels, samples) in
                self.observe("get", p.read_series(&index, &positions, mint, maxt).await)?
            {
                let dst = merged.entry(labels).or_default();
                match samples {
                    ChunkSamples::Floats(v) => dst.0.extend(v),
                    ChunkSamples::Histograms(v) => dst.1.extend(v),
                }
            }
        }
        if let Some(h) = self.read_heads().get(tenant) {
            h.lock().expect("BUG: head lock poisoned").select_samples(
                matchers,
                mint,
                maxt,
                &mut merged,
            );
        }
        Ok(merged
            .into_iter()
            .filter_map(|(labels, (mut samples, mut histograms))| {
                sort_dedup(&mut samples);
                sort_dedup(&mut histograms);
                (!samples.is_empty() || !histograms.is_empty()).then_some(SeriesSamples {
                    labels,
                    samples,
                    histograms,
                })
            })
            .collect())
    }

    /// Label sets of matching series with data in `[mint, maxt]`, sorted.
    pub async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let mut out: HashSet<Labels> = HashSet::new();
        for p in self.parts_for(tenant, mint, maxt) {
            let index = self.observe("get", p.read_index().await)?;
            for pos in index.select(matchers, mint, maxt) {
                out.insert(index.series[pos].labels.clone());
            }
        }
        if let Some(h) = self.read_heads().get(tenant) {
            h.lock()
                .expect("BUG: head lock poisoned")
                .select_series(matchers, mint, maxt, &mut out);
        }
        let mut v: Vec<Labels> = out.into_iter().collect();
        v.sort();
        Ok(v)
    }

    pub fn exemplars(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> BTreeMap<Labels, Vec<Exemplar>> {
        self.read_heads()
            .get(tenant)
            .map(|h| {
                h.lock()
                    .expect("BUG: head lock poisoned")
                    .select_exemplars(matchers, mint, maxt)
            })
            .unwrap_or_default()
    }

    pub fn metadata(&self, tenant: &TenantId) -> Vec<MetricMetadata> {
        self.read_heads()
            .get(tenant)
            .map(|h| h.lock().expect("BUG: head lock poisoned").metadata())
            .unwrap_or_default()
    }

    pub(crate) fn observe<T, E>(&self, op: &'static str, r: Result<T, E>) -> Result<T, E> {
        self.inner.observer.object_store_op(op, r.is_ok());
        r
    }
}
