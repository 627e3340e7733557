use std::collections::BTreeMap;

use std::sync::Arc;

use miru_model::{Exemplar, HistogramSample, Labels, Matcher, MetricMetadata, Sample, matches_all};

use super::{Frozen, HashSet, TenantHead, Timestamped};
use crate::StorageError;
use crate::postings::unapplied;
use crate::scan::{ScanBudget, samples_bytes};

/// The head's share of a scan (see [`TenantHead::select_for_scan`]).
pub(crate) struct HeadSelection {
    pub(crate) frozen: Vec<Arc<Frozen>>,
    /// Labels and in-range samples of matching active series, in label order.
    pub(crate) active: Vec<(Labels, Vec<Sample>, Vec<HistogramSample>)>,
}

/// A series' active samples in `[mint, maxt]` (all of them when `whole`).
fn copy_in_range<T: Timestamped + Clone>(
    samples: Option<&Vec<T>>,
    whole: bool,
    mint: i64,
    maxt: i64,
) -> Vec<T> {
    match samples {
        None => Vec::new(),
        Some(v) if whole => v.clone(),
        Some(v) => v
            .iter()
            .filter(|s| s.ts() >= mint && s.ts() <= maxt)
            .cloned()
            .collect(),
    }
}

impl TenantHead {
    /// Ids of series matching all matchers, ascending.
    pub(crate) fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        let rest = unapplied(matchers);
        let mut out: Vec<u32> = match self.postings.candidates(matchers) {
            Some(c) => c
                .into_iter()
                .filter(|id| {
                    let labels = &self.series[id].labels;
                    rest.iter().all(|m| m.matches(labels))
                })
                .collect(),
            None => self
                .series
                .iter()
                .filter(|(_, s)| matches_all(matchers, &s.labels))
                .map(|(id, _)| *id)
                .collect(),
        };
        out.sort_unstable();
        out
    }

    /// What a scan needs from the head, taken under its lock: the frozen
    /// generations overlapping the range (shared, immutable) and a copy of
    /// the in-range active samples of matching series in label order,
    /// charged to `budget` as they are copied so an oversized query stops
    /// early.
    pub(crate) fn select_for_scan(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        budget: &ScanBudget,
    ) -> Result<HeadSelection, StorageError> {
        let frozen = self
            .frozen
            .iter()
            .filter(|f| f.min_ts <= maxt && f.max_ts >= mint)
            .cloned()
            .collect();
        let mut active = Vec::new();
        if self.active_samples > 0 && self.active_min_ts <= maxt && self.active_max_ts >= mint {
            // Dashboards mostly ask for windows that hold the whole head:
            // then every sample is copied as is, without testing each.
            let whole = mint <= self.active_min_ts && self.active_max_ts <= maxt;
            let mut ids = self.select_ids(matchers);
            self.sort_by_labels(&mut ids);
            for id in ids {
                let floats = copy_in_range(self.active.get(&id), whole, mint, maxt);
                let hists = copy_in_range(self.active_histograms.get(&id), whole, mint, maxt);
                if floats.is_empty() && hists.is_empty() {
                    continue;
                }
                budget.charge_bytes(samples_bytes(&floats, &hists))?;
                active.push((self.series[&id].labels.clone(), floats, hists));
            }
        }
        Ok(HeadSelection { frozen, active })
    }

    /// Adds the labels of matching series that have samples in
    /// `[mint, maxt]` to `out`.
    pub(crate) fn select_series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        out: &mut std::collections::HashSet<Labels>,
    ) {
        let in_range = |t: i64| t >= mint && t <= maxt;
        for f in &self.frozen {
            if f.min_ts > maxt || f.max_ts < mint {
                continue;
            }
            for (labels, samples) in &f.series {
                if samples.iter().any(|s| in_range(s.timestamp_ms)) && matches_all(matchers, labels)
                {
                    out.insert(labels.clone());
                }
            }
            for (labels, samples) in &f.histograms {
                if samples.iter().any(|s| in_range(s.timestamp_ms)) && matches_all(matchers, labels)
                {
                    out.insert(labels.clone());
                }
            }
        }
        for id in self.select_ids(matchers) {
            let has_float = self
                .active
                .get(&id)
                .is_some_and(|v| v.iter().any(|s| in_range(s.timestamp_ms)));
            let has_hist = || {
                self.active_histograms
                    .get(&id)
                    .is_some_and(|v| v.iter().any(|s| in_range(s.timestamp_ms)))
            };
            if has_float || has_hist() {
                out.insert(self.series[&id].labels.clone());
            }
        }
    }

    pub(crate) fn select_exemplars(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> BTreeMap<Labels, Vec<Exemplar>> {
        let ids: HashSet<u32> = self.select_ids(matchers).into_iter().collect();
        let mut out: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
        for (id, e) in &self.exemplars {
            if ids.contains(id) && e.timestamp_ms >= mint && e.timestamp_ms <= maxt {
                out.entry(self.series[id].labels.clone())
                    .or_default()
                    .push(e.clone());
            }
        }
        out
    }

    pub(crate) fn metadata(&self) -> Vec<MetricMetadata> {
        self.metadata.values().map(|(m, _)| m.clone()).collect()
    }
}
