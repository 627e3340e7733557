use std::sync::Arc;

use miru_model::{
    Exemplar, HistogramSample, Labels, MetricMetadata, Sample, SeriesWrite, WriteBatch,
};

use super::{SeriesState, TenantHead, Timestamped};
use crate::wal::RecordBuf;

/// Why the head refused a sample or exemplar (validation happened before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RejectReason {
    /// Older than the newest sample of its series by more than the window.
    OutOfOrder,
    /// Same timestamp as the newest sample, different value.
    DuplicateTimestamp,
    /// Creating the series would exceed the tenant's series limit.
    SeriesLimit,
}

impl RejectReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfOrder => "sample_out_of_order",
            RejectReason::DuplicateTimestamp => "sample_duplicate_timestamp",
            RejectReason::SeriesLimit => "per_user_series_limit",
        }
    }
}

/// What one append did.
#[derive(Debug, Default)]
pub(crate) struct AppendOutcome {
    pub(crate) samples_accepted: u64,
    pub(crate) exemplars_accepted: u64,
    /// Identical re-sends of the newest sample: dropped silently, as
    /// Prometheus does, so that retries are idempotent.
    pub(crate) samples_deduplicated: u64,
    /// Native histogram samples, counted apart from floats (remote write
    /// 2.0 reports them in their own header).
    pub(crate) histograms_accepted: u64,
    pub(crate) histograms_deduplicated: u64,
    pub(crate) exemplars_dropped: u64,
    pub(crate) rejected: Vec<(RejectReason, u64)>,
    pub(crate) first_error: Option<(RejectReason, String)>,
}

impl AppendOutcome {
    fn reject(&mut self, reason: RejectReason, n: u64, msg: impl FnOnce() -> String) {
        if n == 0 {
            return;
        }
        if self.first_error.is_none() {
            self.first_error = Some((reason, msg()));
        }
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += n,
            None => self.rejected.push((reason, n)),
        }
    }
}

/// Limits the head applies itself (the rest is checked in `ingest`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub(crate) max_series: u64,
    pub(crate) out_of_order_window_ms: i64,
    pub(crate) max_exemplars: usize,
    pub(crate) series_limit_name: &'static str,
}

/// How far back in a series' unpersisted samples a resend is looked for.
const RESEND_LOOKBACK: usize = 256;

fn recently_written<T: Timestamped>(buf: &[T], ts: i64, same: impl Fn(&T) -> bool) -> bool {
    buf.iter()
        .rev()
        .take(RESEND_LOOKBACK)
        .any(|x| x.ts() == ts && same(x))
}

/// What becomes of one incoming sample, by Prometheus' rules.
enum Fate {
    /// Stored; `newest` when it moves the series' newest timestamp.
    Accept {
        newest: bool,
    },
    /// An identical resend of stored data: a silent no-op.
    Resend,
    Reject(RejectReason),
}

fn classify(
    st: &SeriesState,
    ts: i64,
    equals_newest: impl FnOnce(&SeriesState) -> bool,
    resent: impl FnOnce() -> bool,
    out_of_order_window_ms: i64,
) -> Fate {
    if ts > st.max_ts {
        Fate::Accept { newest: true }
    } else if ts == st.max_ts {
        if equals_newest(st) {
            Fate::Resend
        } else {
            Fate::Reject(RejectReason::DuplicateTimestamp)
        }
    } else if resent() {
        // A resend of data already in the head (a retry after a lost
        // response): accepted as a no-op, so retries are idempotent rather
        // than out-of-order errors.
        Fate::Resend
    } else if out_of_order_window_ms == 0 || ts < st.max_ts.saturating_sub(out_of_order_window_ms) {
        Fate::Reject(RejectReason::OutOfOrder)
    } else {
        Fate::Accept { newest: false }
    }
}

fn reject_message(
    reason: RejectReason,
    series: usize,
    labels: &Labels,
    ts: i64,
    newest: i64,
    window_ms: i64,
) -> String {
    match reason {
        RejectReason::DuplicateTimestamp => format!(
            "series {series} ({labels}): duplicate sample for timestamp {ts} with a different value"
        ),
        _ => format!(
            "series {series} ({labels}): out of order sample: timestamp {ts} is older than the newest sample {newest} by more than the out-of-order window ({}s)",
            window_ms / 1000
        ),
    }
}

impl TenantHead {
    /// Applies a validated batch and returns the WAL records that make it
    /// durable. The caller must enqueue them before releasing the head.
    pub(crate) fn append(
        &mut self,
        batch: WriteBatch,
        limits: HeadLimits,
        segment: u64,
        now_s: u64,
    ) -> (RecordBuf, AppendOutcome) {
        let mut out = AppendOutcome::default();
        let mut new_series = Vec::new();
        let mut samples_rec: Vec<(u32, Sample)> = Vec::with_capacity(batch.sample_count());
        let mut exemplars_rec: Vec<(u32, Exemplar)> = Vec::new();
        let mut histograms_rec: Vec<(u32, HistogramSample)> = Vec::new();
        let mut span = (i64::MAX, i64::MIN);
        for (
            i,
            SeriesWrite {
                labels,
                samples,
                histograms,
                exemplars,
            },
        ) in batch.series.into_iter().enumerate()
        {
            let Some(id) = self.get_or_create(&labels, limits.max_series, now_s) else {
                out.reject(
                    RejectReason::SeriesLimit,
                    (samples.len() + histograms.len()) as u64,
                    || {
                        format!(
                            "series {i} ({labels}): per-tenant series limit of {} exceeded ({}); reduce the number of series or ask for a higher limit",
                            limits.max_series, limits.series_limit_name
                        )
                    },
                );
                out.exemplars_dropped += exemplars.len() as u64;
                continue;
            };
            let st = self
                .series
                .get_mut(&id)
                .expect("BUG: series id without state");
            st.last_append_s = now_s;
            if st.logged_in_segment != segment {
                st.logged_in_segment = segment;
                new_series.push(id);
            }
            let window = limits.out_of_order_window_ms;
            // A series write carries floats or histograms, rarely both: the
            // map of the other kind is not touched (an entry made and removed
            // again per series and push was a measurable share of ingest).
            if !samples.is_empty() {
                let buf = self.active.entry(id).or_default();
                for s in samples {
                    let bits = s.value.to_bits();
                    let fate = classify(
                        st,
                        s.timestamp_ms,
                        |st| st.last_histogram.is_none() && st.last_value_bits == bits,
                        || recently_written(buf, s.timestamp_ms, |x| x.value.to_bits() == bits),
                        window,
                    );
                    match fate {
                        Fate::Accept { newest } => {
                            if newest {
                                st.max_ts = s.timestamp_ms;
                                st.last_value_bits = bits;
                                st.last_histogram = None;
                            }
                        }
                        Fate::Resend => {
                            out.samples_deduplicated += 1;
                            continue;
                        }
                        Fate::Reject(reason) => {
                            out.reject(reason, 1, || {
                                reject_message(
                                    reason,
                                    i,
                                    &labels,
                                    s.timestamp_ms,
                                    st.max_ts,
                                    window,
                                )
                            });
                            continue;
                        }
                    }
                    buf.push(s);
                    span = (span.0.min(s.timestamp_ms), span.1.max(s.timestamp_ms));
                    samples_rec.push((id, s));
                    out.samples_accepted += 1;
                }
                if buf.is_empty() {
                    self.active.remove(&id);
                }
            }
            if !histograms.is_empty() {
                let hbuf = self.active_histograms.entry(id).or_default();
                for h in histograms {
                    let fate = classify(
                        st,
                        h.timestamp_ms,
                        |st| st.last_histogram.as_ref() == Some(&h.histogram),
                        || recently_written(hbuf, h.timestamp_ms, |x| x.histogram == h.histogram),
                        window,
                    );
                    match fate {
                        Fate::Accept { newest } => {
                            if newest {
                                st.max_ts = h.timestamp_ms;
                                st.last_histogram = Some(Arc::clone(&h.histogram));
                            }
                        }
                        Fate::Resend => {
                            out.histograms_deduplicated += 1;
                            continue;
                        }
                        Fate::Reject(reason) => {
                            out.reject(reason, 1, || {
                                reject_message(
                                    reason,
                                    i,
                                    &labels,
                                    h.timestamp_ms,
                                    st.max_ts,
                                    window,
                                )
                            });
                            continue;
                        }
                    }
                    span = (span.0.min(h.timestamp_ms), span.1.max(h.timestamp_ms));
                    histograms_rec.push((id, h.clone()));
                    hbuf.push(h);
                    out.histograms_accepted += 1;
                }
                if hbuf.is_empty() {
                    self.active_histograms.remove(&id);
                }
            }
            for e in exemplars {
                let st = self
                    .series
                    .get_mut(&id)
                    .expect("BUG: series id without state");
                if limits.max_exemplars == 0 || e.timestamp_ms <= st.max_exemplar_ts {
                    // Prometheus drops out-of-order and repeated exemplars
                    // without failing the request.
                    out.exemplars_dropped += 1;
                    continue;
                }
                st.max_exemplar_ts = e.timestamp_ms;
                exemplars_rec.push((id, e.clone()));
                self.push_exemplar(id, e, limits.max_exemplars);
                out.exemplars_accepted += 1;
            }
        }
        self.active_samples += (out.samples_accepted + out.histograms_accepted) as usize;
        if out.samples_accepted + out.histograms_accepted > 0 {
            self.note_active(span.0);
            self.note_active(span.1);
        }
        // Remote write 2.0 sends its series' metadata with every request:
        // an entry the head already holds, and already logged in this WAL
        // segment, changes nothing (the segment rule of series records:
        // each segment repeats what it needs, so WAL truncation loses none).
        let mut metadata_rec: Vec<MetricMetadata> = Vec::new();
        for m in &batch.metadata {
            match self.metadata.get_mut(&m.metric_family) {
                Some((held, logged)) if held == m && *logged == segment => continue,
                Some((held, logged)) => {
                    held.clone_from(m);
                    *logged = segment;
                }
                None => {
                    self.metadata
                        .insert(m.metric_family.clone(), (m.clone(), segment));
                }
            }
            metadata_rec.push(m.clone());
        }
        let mut rec = RecordBuf::default();
        let series_refs: Vec<(u32, &miru_model::Labels)> = new_series
            .iter()
            .map(|id| (*id, &self.series[id].labels))
            .collect();
        rec.series(&self.tenant, &series_refs);
        rec.samples(&self.tenant, &samples_rec);
        rec.histograms(&self.tenant, &histograms_rec);
        let ex_refs: Vec<(u32, &Exemplar)> = exemplars_rec.iter().map(|(id, e)| (*id, e)).collect();
        rec.exemplars(&self.tenant, &ex_refs);
        rec.metadata(&self.tenant, &metadata_rec);
        (rec, out)
    }

    fn push_exemplar(&mut self, id: u32, e: Exemplar, max: usize) {
        while self.exemplars.len() >= max {
            self.exemplars.pop_front();
        }
        self.exemplars.push_back((id, e));
    }

    /// Replays a series definition from the WAL; returns the head id.
    pub(crate) fn replay_series(&mut self, labels: &miru_model::Labels, now_s: u64) -> u32 {
        self.get_or_create(labels, 0, now_s)
            .expect("BUG: unlimited series creation failed")
    }

    /// Replays samples already acknowledged once: no limit checks, only
    /// exact duplicates (a retried request replayed twice) are dropped.
    pub(crate) fn replay_sample(&mut self, id: u32, s: Sample) {
        let Some(st) = self.series.get_mut(&id) else {
            return;
        };
        let bits = s.value.to_bits();
        if s.timestamp_ms == st.max_ts && bits == st.last_value_bits && st.last_histogram.is_none()
        {
            return;
        }
        if s.timestamp_ms > st.max_ts {
            st.max_ts = s.timestamp_ms;
            st.last_value_bits = bits;
            st.last_histogram = None;
        }
        self.active.entry(id).or_default().push(s);
        self.active_samples += 1;
        self.note_active(s.timestamp_ms);
    }

    /// Replays a histogram sample, as `replay_sample` does floats.
    pub(crate) fn replay_histogram(&mut self, id: u32, h: HistogramSample) {
        let Some(st) = self.series.get_mut(&id) else {
            return;
        };
        if h.timestamp_ms == st.max_ts && st.last_histogram.as_ref() == Some(&h.histogram) {
            return;
        }
        if h.timestamp_ms > st.max_ts {
            st.max_ts = h.timestamp_ms;
            st.last_histogram = Some(Arc::clone(&h.histogram));
        }
        self.note_active(h.timestamp_ms);
        self.active_histograms.entry(id).or_default().push(h);
        self.active_samples += 1;
    }

    pub(crate) fn replay_exemplar(&mut self, id: u32, e: Exemplar, max: usize) {
        if max == 0 {
            return;
        }
        if let Some(st) = self.series.get_mut(&id) {
            st.max_exemplar_ts = st.max_exemplar_ts.max(e.timestamp_ms);
            self.push_exemplar(id, e, max);
        }
    }

    /// Segment 0: logged again by the first append after the restart.
    pub(crate) fn replay_metadata(&mut self, m: MetricMetadata) {
        self.metadata.insert(m.metric_family.clone(), (m, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::{Labels, TenantId};

    fn batch(ts_vals: &[(i64, f64)]) -> WriteBatch {
        WriteBatch {
            series: vec![SeriesWrite {
                labels: Labels::from_pairs([("__name__", "m")]),
                samples: ts_vals
                    .iter()
                    .map(|&(timestamp_ms, value)| Sample {
                        timestamp_ms,
                        value,
                    })
                    .collect(),
                histograms: vec![],
                exemplars: vec![],
            }],
            ..Default::default()
        }
    }

    const LIMITS: HeadLimits = HeadLimits {
        max_series: 1,
        out_of_order_window_ms: 0,
        max_exemplars: 10,
        series_limit_name: "max_global_series_per_user",
    };

    #[test]
    fn prometheus_duplicate_and_order_semantics() {
        let mut h = TenantHead::new(TenantId::anonymous());
        let (_, o) = h.append(batch(&[(10, 1.0), (20, 2.0)]), LIMITS, 1, 0);
        assert_eq!(o.samples_accepted, 2);
        let (rec, o) = h.append(batch(&[(20, 2.0)]), LIMITS, 1, 0);
        assert_eq!((o.samples_accepted, o.samples_deduplicated), (0, 1));
        assert!(o.first_error.is_none());
        assert!(
            rec.is_empty()
                || rec
                    .records
                    .iter()
                    .all(|(k, _)| *k != crate::wal::record_kind_samples())
        );
        let (_, o) = h.append(batch(&[(20, 3.0), (5, 1.0), (30, 1.0)]), LIMITS, 1, 0);
        assert_eq!(o.samples_accepted, 1);
        assert_eq!(
            o.rejected,
            vec![
                (RejectReason::DuplicateTimestamp, 1),
                (RejectReason::OutOfOrder, 1)
            ]
        );
        let mut other = batch(&[(1, 1.0)]);
        other.series[0].labels = Labels::from_pairs([("__name__", "other")]);
        let (_, o) = h.append(other, LIMITS, 1, 0);
        assert_eq!(o.rejected, vec![(RejectReason::SeriesLimit, 1)]);
        assert!(o.first_error.unwrap().1.contains("series limit of 1"));
    }

    #[test]
    fn writes_without_samples_of_a_kind_keep_what_the_head_holds() {
        let mut h = TenantHead::new(TenantId::anonymous());
        h.append(batch(&[(10, 1.0), (20, 2.0)]), LIMITS, 1, 0);
        // No floats (only an exemplar): the held floats stay.
        let mut b = batch(&[]);
        b.series[0].exemplars = vec![Exemplar {
            labels: Labels::from_pairs([("trace_id", "abc")]),
            value: 1.0,
            timestamp_ms: 25,
        }];
        let (_, o) = h.append(b, LIMITS, 1, 0);
        assert_eq!(o.exemplars_accepted, 1);
        let id = h.by_labels[&Labels::from_pairs([("__name__", "m")])];
        assert_eq!(h.active[&id].len(), 2);
        assert!(!h.active_histograms.contains_key(&id));
        // Every sample rejected in a fresh head: no empty entry is left.
        let mut fresh = TenantHead::new(TenantId::anonymous());
        fresh.append(batch(&[(30, 1.0)]), LIMITS, 1, 0);
        fresh.active.clear();
        fresh.append(batch(&[(20, 1.0)]), LIMITS, 1, 0);
        assert!(fresh.active.is_empty(), "{:?}", fresh.active);
    }

    #[test]
    fn metadata_is_logged_once_per_segment_and_on_change() {
        let mut h = TenantHead::new(TenantId::anonymous());
        let md = |help: &str| MetricMetadata {
            metric_family: "up".into(),
            metric_type: miru_model::MetricType::Gauge,
            help: help.into(),
            unit: String::new(),
        };
        let with = |help: &str| {
            let mut b = batch(&[]);
            b.metadata = vec![md(help), md(help)];
            b
        };
        let logged = |rec: &RecordBuf| {
            rec.records
                .iter()
                .filter(|(k, _)| *k == crate::wal::record_kind_metadata())
                .count()
        };
        let (rec, _) = h.append(with("a"), LIMITS, 1, 0);
        assert_eq!(logged(&rec), 1, "new metadata is logged");
        let (rec, _) = h.append(with("a"), LIMITS, 1, 0);
        assert_eq!(logged(&rec), 0, "unchanged in the same segment");
        let (rec, _) = h.append(with("a"), LIMITS, 2, 0);
        assert_eq!(logged(&rec), 1, "a new segment repeats it");
        let (rec, _) = h.append(with("b"), LIMITS, 2, 0);
        assert_eq!(logged(&rec), 1, "a change is logged");
        assert_eq!(h.metadata(), vec![md("b")]);
        h.replay_metadata(md("c"));
        let (rec, _) = h.append(with("c"), LIMITS, 2, 0);
        assert_eq!(logged(&rec), 1, "replayed entries are logged again once");
    }

    #[test]
    fn out_of_order_window_accepts_recent() {
        let mut h = TenantHead::new(TenantId::anonymous());
        let l = HeadLimits {
            out_of_order_window_ms: 100,
            ..LIMITS
        };
        h.append(batch(&[(1000, 1.0)]), l, 1, 0);
        let (_, o) = h.append(batch(&[(950, 1.0), (850, 1.0)]), l, 1, 0);
        assert_eq!(o.samples_accepted, 1);
        assert_eq!(o.rejected, vec![(RejectReason::OutOfOrder, 1)]);
    }
}
