use std::collections::BTreeMap;
use std::sync::Arc;

use miru_model::{Labels, Sample};

use super::{TenantHead, sort_dedup};
use crate::part::PartName;

/// Samples cut from the head for one UTC day, sorted by labels, waiting to
/// be written as a part. Immutable and shared with queries until written.
#[derive(Debug)]
pub(crate) struct Frozen {
    /// The WAL segment that was current when the cut happened: once this
    /// generation is a part, replay may skip this tenant-day up to here.
    pub(crate) segment: u64,
    pub(crate) day_start_ms: i64,
    pub(crate) series: Vec<(Labels, Vec<Sample>)>,
    pub(crate) series_ids: Vec<u32>,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
}

impl TenantHead {
    /// Moves the active samples into frozen generations, one per day.
    pub(crate) fn cut(&mut self, segment: u64) {
        if self.active.is_empty() {
            return;
        }
        let mut by_day: BTreeMap<i64, Vec<(Labels, Vec<Sample>, u32)>> = BTreeMap::new();
        for (id, mut samples) in self.active.drain() {
            sort_dedup(&mut samples);
            let labels = self.series[&id].labels.clone();
            let mut start = 0;
            while start < samples.len() {
                let day = PartName::day_of(samples[start].timestamp_ms);
                let end = samples[start..]
                    .iter()
                    .position(|s| PartName::day_of(s.timestamp_ms) != day)
                    .map_or(samples.len(), |p| start + p);
                by_day.entry(day).or_default().push((
                    labels.clone(),
                    samples[start..end].to_vec(),
                    id,
                ));
                start = end;
            }
        }
        self.active_samples = 0;
        self.active_min_ts = i64::MAX;
        self.active_max_ts = i64::MIN;
        for (day, mut series) in by_day {
            series.sort_by(|a, b| a.0.cmp(&b.0));
            let min_ts = series
                .iter()
                .map(|s| s.1[0].timestamp_ms)
                .min()
                .unwrap_or(day);
            let max_ts = series
                .iter()
                .map(|s| s.1[s.1.len() - 1].timestamp_ms)
                .max()
                .unwrap_or(day);
            let series_ids = series.iter().map(|s| s.2).collect();
            self.frozen.push(Arc::new(Frozen {
                segment,
                day_start_ms: day,
                series: series.into_iter().map(|(l, s, _)| (l, s)).collect(),
                series_ids,
                min_ts,
                max_ts,
            }));
        }
    }

    /// Frozen generations waiting to be written, oldest first.
    pub(crate) fn frozen(&self) -> Vec<Arc<Frozen>> {
        self.frozen.clone()
    }

    /// Forgets a generation once its part is in the catalog.
    pub(crate) fn drop_frozen(&mut self, f: &Arc<Frozen>) {
        self.frozen.retain(|x| !Arc::ptr_eq(x, f));
    }

    /// The oldest WAL segment still needed by a frozen generation.
    pub(crate) fn oldest_frozen_segment(&self) -> Option<u64> {
        self.frozen.iter().map(|f| f.segment).min()
    }
}
