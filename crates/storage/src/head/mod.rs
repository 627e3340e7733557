//! The in-memory head of one tenant: the series index (labels, postings),
//! the samples written since the last cut, exemplars and metadata. Data is
//! queryable as soon as it is appended. Split by direction: `append`
//! (write path and WAL replay), `read` (selection for queries), `cut`
//! (freezing samples into immutable generations for part writing).

mod append;
mod cut;
mod read;

use std::collections::VecDeque;
use std::sync::Arc;

use miru_model::{
    Exemplar, FloatHistogram, HistogramSample, Labels, LabelsBuilder, MetricMetadata, Sample,
    TenantId,
};

pub(crate) use append::{HeadLimits, RejectReason};
pub(crate) use cut::Frozen;

use crate::postings::Postings;

/// Head maps hash label strings on every append; SipHash's DoS resistance
/// is not needed for keys the tenant already owns, speed is.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Per-series state kept while the series is in the head.
#[derive(Debug)]
struct SeriesState {
    labels: Labels,
    /// Newest timestamp appended; the base of out-of-order checks.
    max_ts: i64,
    /// Value at `max_ts`, to tell a harmless duplicate from a conflict:
    /// the float's bits, or the histogram when the newest sample is one.
    last_value_bits: u64,
    last_histogram: Option<Arc<FloatHistogram>>,
    /// WAL segment in which this series' `Series` record was last written.
    logged_in_segment: u64,
    /// Wall-clock second of the last append, for idle-series removal.
    last_append_s: u64,
    /// Newest exemplar timestamp, for exemplar ordering.
    max_exemplar_ts: i64,
    /// Position in label order among the series of the last cut, valid
    /// while `.0` equals the head's `rank_generation` (see `sort_by_labels`).
    label_rank: (u32, u32),
}

/// The head of one tenant.
#[derive(Debug)]
pub(crate) struct TenantHead {
    tenant: TenantId,
    symbols: HashSet<Arc<str>>,
    by_labels: HashMap<Labels, u32>,
    series: HashMap<u32, SeriesState>,
    postings: Postings,
    next_id: u32,
    /// Samples appended since the last cut, by series id, in arrival order.
    active: HashMap<u32, Vec<Sample>>,
    /// Native histogram samples, likewise.
    active_histograms: HashMap<u32, Vec<HistogramSample>>,
    /// Float and histogram samples in `active` and `active_histograms`.
    active_samples: usize,
    /// Sample-time range of the active samples (`i64::MAX`/`MIN` when empty).
    active_min_ts: i64,
    active_max_ts: i64,
    /// Cut generations not yet persisted as parts, oldest first.
    frozen: Vec<Arc<Frozen>>,
    exemplars: VecDeque<(u32, Exemplar)>,
    /// Metadata by family, with the WAL segment it was last logged in.
    metadata: HashMap<String, (MetricMetadata, u64)>,
    /// Bumped by every cut that ranks series; 0 means "never ranked".
    rank_generation: u32,
}

impl TenantHead {
    pub(crate) fn new(tenant: TenantId) -> Self {
        TenantHead {
            tenant,
            symbols: HashSet::default(),
            by_labels: HashMap::default(),
            series: HashMap::default(),
            postings: Postings::default(),
            next_id: 1,
            active: HashMap::default(),
            active_histograms: HashMap::default(),
            active_samples: 0,
            active_min_ts: i64::MAX,
            active_max_ts: i64::MIN,
            frozen: Vec::new(),
            exemplars: VecDeque::new(),
            metadata: HashMap::default(),
            rank_generation: 0,
        }
    }

    pub(crate) fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub(crate) fn series_count(&self) -> usize {
        self.series.len()
    }

    pub(crate) fn active_samples(&self) -> usize {
        self.active_samples
    }

    /// Milliseconds of sample time the active samples span (0 when empty).
    pub(crate) fn active_span_ms(&self) -> i64 {
        if self.active_samples == 0 {
            0
        } else {
            self.active_max_ts.saturating_sub(self.active_min_ts)
        }
    }

    /// Sorts head series ids by their labels. Queries sort the series they
    /// select by labels (the scan merges sources in label order); comparing
    /// ranks from the last cut, which sorted them anyway, spares most of the
    /// string comparisons. Series created or idle since then have no valid
    /// rank and are compared by labels, which agrees with the ranks, so the
    /// order stays total and exact.
    fn sort_by_labels(&self, ids: &mut [u32]) {
        let g = self.rank_generation;
        let mut keyed: Vec<(Option<u32>, &Labels, u32)> = ids
            .iter()
            .map(|id| {
                let s = &self.series[id];
                let rank = (g != 0 && s.label_rank.0 == g).then_some(s.label_rank.1);
                (rank, &s.labels, *id)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => a.1.cmp(b.1),
        });
        for (slot, k) in ids.iter_mut().zip(keyed) {
            *slot = k.2;
        }
    }

    fn note_active(&mut self, ts: i64) {
        self.active_min_ts = self.active_min_ts.min(ts);
        self.active_max_ts = self.active_max_ts.max(ts);
    }

    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(x) = self.symbols.get(s) {
            return Arc::clone(x);
        }
        self.symbols.insert(Arc::clone(s));
        Arc::clone(s)
    }

    /// Finds or creates a series. `None` when creating it would pass `max_series`.
    fn get_or_create(&mut self, labels: &Labels, max_series: u64, now_s: u64) -> Option<u32> {
        if let Some(&id) = self.by_labels.get(labels) {
            return Some(id);
        }
        if max_series > 0 && self.series.len() as u64 >= max_series {
            return None;
        }
        let mut b = LabelsBuilder::with_capacity(labels.len());
        for l in labels.iter() {
            let (n, v) = (self.intern(&l.name), self.intern(&l.value));
            b.set(n, v);
        }
        let labels = b.build();
        let id = self.next_id;
        self.next_id += 1;
        self.postings.add(&labels, id);
        self.by_labels.insert(labels.clone(), id);
        self.series.insert(
            id,
            SeriesState {
                labels,
                max_ts: i64::MIN,
                last_value_bits: 0,
                last_histogram: None,
                logged_in_segment: 0,
                last_append_s: now_s,
                max_exemplar_ts: i64::MIN,
                label_rank: (0, 0),
            },
        );
        Some(id)
    }

    /// Drops series idle for `idle_s` seconds that hold no unpersisted
    /// samples, so they stop counting against the series limit.
    pub(crate) fn remove_idle_series(&mut self, now_s: u64, idle_s: u64) -> usize {
        let in_frozen: HashSet<u32> = self
            .frozen
            .iter()
            .flat_map(|f| f.series_ids.iter().copied())
            .collect();
        let idle: Vec<u32> = self
            .series
            .iter()
            .filter(|(id, s)| {
                now_s.saturating_sub(s.last_append_s) >= idle_s
                    && !self.active.contains_key(id)
                    && !self.active_histograms.contains_key(id)
                    && !in_frozen.contains(id)
            })
            .map(|(id, _)| *id)
            .collect();
        if idle.is_empty() {
            return 0;
        }
        let gone: HashSet<u32> = idle.iter().copied().collect();
        for id in &idle {
            if let Some(s) = self.series.remove(id) {
                self.by_labels.remove(&s.labels);
            }
        }
        self.postings.remove(&gone);
        self.exemplars.retain(|(id, _)| !gone.contains(id));
        let live: HashSet<Arc<str>> = self
            .series
            .values()
            .flat_map(|s| {
                s.labels
                    .iter()
                    .flat_map(|l| [Arc::clone(&l.name), Arc::clone(&l.value)])
            })
            .collect();
        self.symbols = live;
        idle.len()
    }
}

/// A float or histogram sample: what sorting and day-splitting need.
pub(crate) trait Timestamped {
    fn ts(&self) -> i64;
}

impl Timestamped for Sample {
    fn ts(&self) -> i64 {
        self.timestamp_ms
    }
}

impl Timestamped for HistogramSample {
    fn ts(&self) -> i64 {
        self.timestamp_ms
    }
}

/// Sorts samples by time and keeps the last written of equal timestamps.
pub(crate) fn sort_dedup<T: Timestamped>(samples: &mut Vec<T>) {
    if samples.windows(2).all(|w| w[0].ts() < w[1].ts()) {
        return;
    }
    samples.sort_by_key(|s| s.ts());
    // After a stable sort equal timestamps keep arrival order; keep the last.
    let mut out: Vec<T> = Vec::with_capacity(samples.len());
    for s in samples.drain(..) {
        match out.last_mut() {
            Some(last) if last.ts() == s.ts() => *last = s,
            _ => out.push(s),
        }
    }
    *samples = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_dedup_keeps_last_written() {
        let s = |t, v| Sample {
            timestamp_ms: t,
            value: v,
        };
        let mut v = vec![s(3, 1.0), s(1, 1.0), s(3, 2.0), s(2, 1.0)];
        sort_dedup(&mut v);
        assert_eq!(v, vec![s(1, 1.0), s(2, 1.0), s(3, 2.0)]);
    }
}
