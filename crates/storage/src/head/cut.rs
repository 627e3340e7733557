use std::collections::BTreeMap;
use std::sync::Arc;

use miru_model::{HistogramSample, Labels, Sample};

use super::{HashMap, SeriesState, TenantHead, Timestamped, sort_dedup};
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
    /// Native histogram samples, likewise sorted by labels.
    pub(crate) histograms: Vec<(Labels, Vec<HistogramSample>)>,
    pub(crate) series_ids: Vec<u32>,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
}

impl TenantHead {
    /// Moves the active samples into frozen generations, one per day.
    pub(crate) fn cut(&mut self, segment: u64) {
        if self.active.is_empty() && self.active_histograms.is_empty() {
            return;
        }
        self.rank_active_series();
        let mut floats: ByDay<Sample> = BTreeMap::new();
        let mut histograms: ByDay<HistogramSample> = BTreeMap::new();
        for (id, samples) in self.active.drain() {
            split_by_day(&self.series[&id].labels, id, samples, &mut floats);
        }
        for (id, samples) in self.active_histograms.drain() {
            split_by_day(&self.series[&id].labels, id, samples, &mut histograms);
        }
        self.active_samples = 0;
        self.active_min_ts = i64::MAX;
        self.active_max_ts = i64::MIN;
        let days: std::collections::BTreeSet<i64> =
            floats.keys().chain(histograms.keys()).copied().collect();
        for day in days {
            let mut series = floats.remove(&day).unwrap_or_default();
            let mut hseries = histograms.remove(&day).unwrap_or_default();
            // Label order, through the ranks just assigned.
            sort_by_rank(&self.series, &mut series);
            sort_by_rank(&self.series, &mut hseries);
            let ends = series
                .iter()
                .map(|s| (s.1[0].timestamp_ms, s.1[s.1.len() - 1].timestamp_ms))
                .chain(
                    hseries
                        .iter()
                        .map(|s| (s.1[0].timestamp_ms, s.1[s.1.len() - 1].timestamp_ms)),
                );
            let (min_ts, max_ts) = ends.fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| {
                (lo.min(a), hi.max(b))
            });
            let mut series_ids: Vec<u32> = series
                .iter()
                .map(|s| s.2)
                .chain(hseries.iter().map(|s| s.2))
                .collect();
            series_ids.sort_unstable();
            series_ids.dedup();
            self.frozen.push(Arc::new(Frozen {
                segment,
                day_start_ms: day,
                series: series.into_iter().map(|(l, s, _)| (l, s)).collect(),
                histograms: hseries.into_iter().map(|(l, s, _)| (l, s)).collect(),
                series_ids,
                min_ts,
                max_ts,
            }));
        }
    }

    /// Gives every series with active samples its rank in label order
    /// under a new generation (see `sort_by_labels`): one sort of the labels
    /// per cut, shared by the cut itself and the queries until the next.
    pub(crate) fn rank_active_series(&mut self) {
        let mut ids: Vec<u32> = self.active.keys().copied().collect();
        ids.extend(
            self.active_histograms
                .keys()
                .filter(|id| !self.active.contains_key(id)),
        );
        ids.sort_unstable_by(|a, b| self.series[a].labels.cmp(&self.series[b].labels));
        self.rank_generation = self.rank_generation.wrapping_add(1).max(1);
        let g = self.rank_generation;
        for (rank, id) in ids.iter().enumerate() {
            if let Some(s) = self.series.get_mut(id) {
                s.label_rank = (g, rank as u32);
            }
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

/// Samples of one kind per UTC day: (labels, samples, head series id).
type ByDay<T> = BTreeMap<i64, Vec<(Labels, Vec<T>, u32)>>;

/// Sorts one day's series of the cut by the label ranks the cut assigned.
fn sort_by_rank<T>(states: &HashMap<u32, SeriesState>, day: &mut [(Labels, Vec<T>, u32)]) {
    day.sort_by_cached_key(|s| states[&s.2].label_rank.1);
}

/// Sorts one series' samples and files them under their UTC days.
fn split_by_day<T: Timestamped + Clone>(
    labels: &Labels,
    id: u32,
    mut samples: Vec<T>,
    by_day: &mut ByDay<T>,
) {
    sort_dedup(&mut samples);
    let mut start = 0;
    while start < samples.len() {
        let day = PartName::day_of(samples[start].ts());
        let end = samples[start..]
            .iter()
            .position(|s| PartName::day_of(s.ts()) != day)
            .map_or(samples.len(), |p| start + p);
        by_day
            .entry(day)
            .or_default()
            .push((labels.clone(), samples[start..end].to_vec(), id));
        start = end;
    }
}
