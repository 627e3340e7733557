use std::collections::BTreeMap;

use miru_model::{Exemplar, Labels, Matcher, MetricMetadata, matches_all};

use super::{HashSet, TenantHead};
use crate::scan::Merged;

impl TenantHead {
    /// Ids of series matching all matchers, using postings for matchers
    /// that cannot match a missing label.
    fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut candidates: Option<HashSet<u32>> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let mut ids = HashSet::default();
            if let Some(values) = self.postings.get(m.name.as_str()) {
                if m.op == miru_model::MatchOp::Equal {
                    if let Some(list) = values.get(m.value.as_str()) {
                        ids.extend(list.iter().copied());
                    }
                } else {
                    for (v, list) in values {
                        if m.matches_value(v) {
                            ids.extend(list.iter().copied());
                        }
                    }
                }
            }
            candidates = Some(match candidates {
                None => ids,
                Some(c) => c.intersection(&ids).copied().collect(),
            });
            if candidates.as_ref().is_some_and(HashSet::is_empty) {
                return Vec::new();
            }
        }
        let mut out: Vec<u32> = match candidates {
            Some(c) => c
                .into_iter()
                .filter(|id| matches_all(matchers, &self.series[id].labels))
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

    /// Samples in `[mint, maxt]` of matching series, frozen generations
    /// first, then active ones (so later writes come later), unsorted.
    pub(crate) fn select_samples(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        out: &mut Merged,
    ) {
        let in_range = |t: i64| t >= mint && t <= maxt;
        for f in &self.frozen {
            if f.min_ts > maxt || f.max_ts < mint {
                continue;
            }
            for (labels, samples) in &f.series {
                if matches_all(matchers, labels) {
                    let dst = &mut out.entry(labels.clone()).or_default().0;
                    dst.extend(samples.iter().filter(|s| in_range(s.timestamp_ms)));
                }
            }
            for (labels, samples) in &f.histograms {
                if matches_all(matchers, labels) {
                    let dst = &mut out.entry(labels.clone()).or_default().1;
                    dst.extend(samples.iter().filter(|s| in_range(s.timestamp_ms)).cloned());
                }
            }
        }
        for id in self.select_ids(matchers) {
            let floats = self.active.get(&id).map_or(&[][..], Vec::as_slice);
            let hists = self
                .active_histograms
                .get(&id)
                .map_or(&[][..], Vec::as_slice);
            // Straight into the output: no per-series temporary on the query path.
            let mut fit = floats
                .iter()
                .filter(|s| in_range(s.timestamp_ms))
                .peekable();
            let mut hit = hists.iter().filter(|s| in_range(s.timestamp_ms)).peekable();
            if fit.peek().is_none() && hit.peek().is_none() {
                continue;
            }
            let dst = out.entry(self.series[&id].labels.clone()).or_default();
            dst.0.extend(fit);
            dst.1.extend(hit.cloned());
        }
    }

    /// Labels of matching series that have samples in `[mint, maxt]`.
    pub(crate) fn select_series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        out: &mut std::collections::HashSet<Labels>,
    ) {
        let mut tmp = BTreeMap::new();
        self.select_samples(matchers, mint, maxt, &mut tmp);
        out.extend(tmp.into_keys());
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
        self.metadata.values().cloned().collect()
    }
}
