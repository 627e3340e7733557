//! One OTLP data point to samples: gauges and sums to one series, explicit
//! histograms to cumulative `_bucket` series plus `_sum` and `_count`,
//! summaries to `quantile` series plus `_sum` and `_count`.

use std::collections::BTreeMap;
use std::sync::Arc;

use miru_model::{
    BucketSpan, Exemplar, FloatHistogram, HistogramSample, Labels, LabelsBuilder, METRIC_NAME,
    STALE_NAN_BITS, Sample,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    DataPointFlags, Exemplar as OtlpExemplar, ExponentialHistogramDataPoint, HistogramDataPoint,
    NumberDataPoint, SummaryDataPoint, exemplar, number_data_point,
};

use super::attributes::{attribute_labels, exemplar_labels};
use super::metrics::{OtlpOptions, ResourceContext};
use super::output::Output;

/// The labels shared by every series of one data point, without the name.
pub(super) type BaseLabels = Vec<(Arc<str>, Arc<str>)>;

/// Data point attributes, then promoted resource attributes where the point
/// has none of that name, then `job`/`instance` and scope labels on top.
fn point_labels(
    attrs: &[KeyValue],
    resource: &ResourceContext,
    scope: &[(String, String)],
    opts: &OtlpOptions,
) -> Result<BaseLabels, String> {
    let mut map = attribute_labels(attrs, |k| k == METRIC_NAME, opts.allow_utf8_names)
        .map_err(|e| e.to_string())?;
    for (name, value) in &resource.promoted {
        if map.get(name).is_none_or(String::is_empty) {
            map.insert(name.clone(), value.clone());
        }
    }
    set_job_instance(&mut map, resource);
    for (name, value) in scope {
        map.insert(name.clone(), value.clone());
    }
    Ok(map
        .into_iter()
        .map(|(n, v)| (Arc::from(n), Arc::from(v)))
        .collect())
}

pub(super) fn set_job_instance(map: &mut BTreeMap<String, String>, resource: &ResourceContext) {
    if let Some(job) = &resource.job {
        map.insert("job".into(), job.clone());
    }
    if let Some(instance) = &resource.instance {
        map.insert("instance".into(), instance.clone());
    }
}

pub(super) fn series_labels(base: &BaseLabels, name: &str, extra: Option<(&str, &str)>) -> Labels {
    let mut b = LabelsBuilder::with_capacity(base.len() + 2);
    for (n, v) in base {
        b.set(Arc::clone(n), Arc::clone(v));
    }
    if let Some((n, v)) = extra {
        b.set(n, v);
    }
    b.set(METRIC_NAME, name);
    b.build()
}

/// Per-metric state while its data points are converted.
pub(super) struct MetricCtx<'a> {
    pub(super) family: String,
    pub(super) resource: &'a mut ResourceContext,
    pub(super) scope: &'a [(String, String)],
    pub(super) opts: &'a OtlpOptions,
    /// Rejection reasons with their counts, in first-seen order.
    pub(super) dropped: Vec<(String, usize)>,
    pub(super) wrote: bool,
}

impl MetricCtx<'_> {
    pub(super) fn drop_point(&mut self, reason: String) {
        match self.dropped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.dropped.push((reason, 1)),
        }
    }

    fn base_labels(&mut self, attrs: &[KeyValue]) -> Option<BaseLabels> {
        match point_labels(attrs, self.resource, self.scope, self.opts) {
            Ok(base) => Some(base),
            Err(reason) => {
                self.drop_point(reason);
                None
            }
        }
    }

    fn write(
        &mut self,
        out: &mut Output,
        base: &BaseLabels,
        suffix: &str,
        extra: Option<(&str, &str)>,
        sample: Sample,
        exemplars: Vec<Exemplar>,
    ) {
        let name = format!("{}{suffix}", self.family);
        out.push(series_labels(base, &name, extra), sample, exemplars);
        self.resource.timestamps.insert(sample.timestamp_ms);
        self.wrote = true;
    }
}

pub(super) fn number_point(
    ctx: &mut MetricCtx<'_>,
    out: &mut Output,
    p: &NumberDataPoint,
    keep_exemplars: bool,
) {
    let value = if no_recorded_value(p.flags) {
        stale_nan()
    } else {
        match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            None => {
                ctx.drop_point("data point without a value".into());
                return;
            }
        }
    };
    let Some(base) = ctx.base_labels(&p.attributes) else {
        return;
    };
    let timestamp_ms = ns_to_ms(p.time_unix_nano);
    // Prometheus only keeps exemplars of counters (and histograms).
    let exemplars = if keep_exemplars {
        convert_exemplars(&p.exemplars, timestamp_ms, ctx.opts)
    } else {
        Vec::new()
    };
    let sample = Sample {
        timestamp_ms,
        value,
    };
    ctx.write(out, &base, "", None, sample, exemplars);
}

pub(super) fn histogram_point(ctx: &mut MetricCtx<'_>, out: &mut Output, p: &HistogramDataPoint) {
    let Some(base) = ctx.base_labels(&p.attributes) else {
        return;
    };
    let timestamp_ms = ns_to_ms(p.time_unix_nano);
    let stale = no_recorded_value(p.flags);
    let sample = |v: f64| Sample {
        timestamp_ms,
        value: if stale { stale_nan() } else { v },
    };

    // An unset sum means the _sum series is left out (e.g. histograms of
    // values that can be negative).
    if let Some(sum) = p.sum {
        ctx.write(out, &base, "_sum", None, sample(sum), Vec::new());
    }
    ctx.write(
        out,
        &base,
        "_count",
        None,
        sample(p.count as f64),
        Vec::new(),
    );

    // Buckets are (bound[i-1], bound[i]]; there is one more count than
    // bounds for the implicit +Inf bucket. A mismatched point is read as far
    // as both go, like upstream does.
    let buckets = p.explicit_bounds.len().min(p.bucket_counts.len());
    let bounds = &p.explicit_bounds[..buckets];
    let mut per_bucket: Vec<Vec<Exemplar>> = vec![Vec::new(); buckets + 1];
    for e in convert_exemplars(&p.exemplars, timestamp_ms, ctx.opts) {
        let i = bounds.iter().position(|b| e.value <= *b).unwrap_or(buckets);
        per_bucket[i].push(e);
    }
    let mut cumulative: u64 = 0;
    for (i, (bound, exemplars)) in bounds.iter().zip(per_bucket.iter_mut()).enumerate() {
        cumulative = cumulative.saturating_add(p.bucket_counts[i]);
        let le = format_float(*bound);
        let exemplars = std::mem::take(exemplars);
        ctx.write(
            out,
            &base,
            "_bucket",
            Some(("le", &le)),
            sample(cumulative as f64),
            exemplars,
        );
    }
    let inf_exemplars = per_bucket.pop().unwrap_or_default();
    let inf = sample(p.count as f64);
    ctx.write(
        out,
        &base,
        "_bucket",
        Some(("le", "+Inf")),
        inf,
        inf_exemplars,
    );
}

/// Zero threshold Prometheus' OTLP translator uses when the point has none.
const DEFAULT_ZERO_THRESHOLD: f64 = 1e-128;

/// An exponential histogram point becomes one native histogram sample under
/// the metric's name (no `_bucket`/`_sum`/`_count` series), as Prometheus
/// and Mimir translate it. Scales above 8 are reduced to 8 by merging
/// buckets; scales below -4 cannot be represented and are rejected.
pub(super) fn exponential_histogram_point(
    ctx: &mut MetricCtx<'_>,
    out: &mut Output,
    p: &ExponentialHistogramDataPoint,
) {
    if p.scale < -4 {
        ctx.drop_point(format!(
            "exponential histogram scale {} is below -4, the smallest native histogram schema",
            p.scale
        ));
        return;
    }
    let Some(base) = ctx.base_labels(&p.attributes) else {
        return;
    };
    let scale_down = (p.scale - 8).max(0) as u32;
    let timestamp_ms = ns_to_ms(p.time_unix_nano);
    let (positive_spans, positive_buckets) = p
        .positive
        .as_ref()
        .map(|b| prometheus_buckets(&b.bucket_counts, b.offset, scale_down))
        .unwrap_or_default();
    let (negative_spans, negative_buckets) = p
        .negative
        .as_ref()
        .map(|b| prometheus_buckets(&b.bucket_counts, b.offset, scale_down))
        .unwrap_or_default();
    let sum = if no_recorded_value(p.flags) {
        stale_nan()
    } else {
        p.sum.unwrap_or(0.0)
    };
    let histogram = FloatHistogram {
        counter_reset_hint: miru_model::CounterResetHint::Unknown,
        schema: p.scale.min(8),
        zero_threshold: if p.zero_threshold > 0.0 {
            p.zero_threshold
        } else {
            DEFAULT_ZERO_THRESHOLD
        },
        zero_count: p.zero_count as f64,
        count: p.count as f64,
        sum,
        positive_spans,
        positive_buckets,
        negative_spans,
        negative_buckets,
        custom_values: Vec::new(),
    };
    let exemplars = convert_exemplars(&p.exemplars, timestamp_ms, ctx.opts);
    let labels = series_labels(&base, &ctx.family, None);
    out.push_histogram(
        labels,
        HistogramSample {
            timestamp_ms,
            histogram: Arc::new(histogram),
        },
        exemplars,
    );
    ctx.resource.timestamps.insert(timestamp_ms);
    ctx.wrote = true;
}

/// OTLP bucket `i` (relative to `offset`) covers (base^(offset+i),
/// base^(offset+i+1)]; Prometheus bucket `k` covers (base^(k-1), base^k],
/// so indexes shift by one. With `scale_down` > 0, 2^scale_down adjacent
/// buckets merge into one. Empty buckets are left out, except gaps of up to
/// two buckets, which are cheaper inside a span than as a new span.
fn prometheus_buckets(counts: &[u64], offset: i32, scale_down: u32) -> (Vec<BucketSpan>, Vec<f64>) {
    let mut merged: Vec<(i64, f64)> = Vec::new();
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let otlp_index = i64::from(offset) + i as i64;
        let index = (otlp_index >> scale_down) + 1;
        match merged.last_mut() {
            Some((k, n)) if *k == index => *n += c as f64,
            _ => merged.push((index, c as f64)),
        }
    }
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut buckets = Vec::with_capacity(merged.len());
    let mut next: i64 = 0;
    for (index, count) in merged {
        let gap = index - next;
        match spans.last_mut() {
            Some(span) if gap <= 2 => {
                buckets.extend(std::iter::repeat_n(0.0, gap as usize));
                span.length += gap as u32 + 1;
            }
            _ => spans.push(BucketSpan {
                offset: gap.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                length: 1,
            }),
        }
        buckets.push(count);
        next = index + 1;
    }
    (spans, buckets)
}

pub(super) fn summary_point(ctx: &mut MetricCtx<'_>, out: &mut Output, p: &SummaryDataPoint) {
    let Some(base) = ctx.base_labels(&p.attributes) else {
        return;
    };
    let timestamp_ms = ns_to_ms(p.time_unix_nano);
    let stale = no_recorded_value(p.flags);
    let sample = |v: f64| Sample {
        timestamp_ms,
        value: if stale { stale_nan() } else { v },
    };
    ctx.write(out, &base, "_sum", None, sample(p.sum), Vec::new());
    ctx.write(
        out,
        &base,
        "_count",
        None,
        sample(p.count as f64),
        Vec::new(),
    );
    for q in &p.quantile_values {
        let quantile = format_float(q.quantile);
        let extra = Some(("quantile", quantile.as_str()));
        ctx.write(out, &base, "", extra, sample(q.value), Vec::new());
    }
}

/// Exemplars without a value are skipped. One without a timestamp takes the
/// data point's: validation rejects exemplars at timestamp 0.
fn convert_exemplars(list: &[OtlpExemplar], point_ms: i64, opts: &OtlpOptions) -> Vec<Exemplar> {
    list.iter()
        .filter_map(|e| {
            let value = match e.value? {
                exemplar::Value::AsDouble(v) => v,
                exemplar::Value::AsInt(v) => v as f64,
            };
            let ts = ns_to_ms(e.time_unix_nano);
            Some(Exemplar {
                labels: exemplar_labels(e, opts.allow_utf8_names),
                value,
                timestamp_ms: if ts == 0 { point_ms } else { ts },
            })
        })
        .collect()
}

fn no_recorded_value(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub(super) fn ns_to_ms(ns: u64) -> i64 {
    // u64::MAX / 1e6 is far below i64::MAX, so this cannot wrap.
    (ns / 1_000_000) as i64
}

/// `le` and `quantile` values as Prometheus writes them: shortest decimal,
/// never an exponent, `+Inf`/`-Inf`/`NaN` spelled out.
fn format_float(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_buckets_shift_by_one_and_keep_small_gaps() {
        // OTLP offset -1: buckets at OTLP indexes -1, 0, 1, (2, 3 empty), 4,
        // (5..=8 empty), 9 -> Prometheus indexes 0, 1, 2, 5, 10.
        let (spans, buckets) = prometheus_buckets(&[1, 2, 3, 0, 0, 4, 0, 0, 0, 0, 5], -1, 0);
        assert_eq!(
            spans,
            vec![
                BucketSpan {
                    offset: 0,
                    length: 6
                },
                BucketSpan {
                    offset: 4,
                    length: 1
                }
            ]
        );
        assert_eq!(buckets, vec![1.0, 2.0, 3.0, 0.0, 0.0, 4.0, 5.0]);
    }

    #[test]
    fn scale_down_merges_pairs() {
        // OTLP indexes 0..4 at scale 9 -> scale 8 indexes 0,0,1,1 -> +1.
        let (spans, buckets) = prometheus_buckets(&[1, 2, 3, 4], 0, 1);
        assert_eq!(
            spans,
            vec![BucketSpan {
                offset: 1,
                length: 2
            }]
        );
        assert_eq!(buckets, vec![3.0, 7.0]);
    }
}
