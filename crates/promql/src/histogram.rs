//! Arithmetic on native histograms (absolute float counts), enough for
//! PromQL: scaling, addition and subtraction across schemas, custom bucket
//! reconciliation, reset detection and compaction.

use std::collections::BTreeMap;

use miru_model::{BucketSpan, CounterResetHint, FloatHistogram};

use crate::annotations::Annotations;
use crate::position::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistError {
    /// Exponential and custom-bucket histograms do not mix.
    IncompatibleSchema,
}

pub(crate) struct Combined {
    pub(crate) h: FloatHistogram,
    pub(crate) counter_reset_collision: bool,
    pub(crate) nhcb_reconciled: bool,
}

pub(crate) fn is_custom(h: &FloatHistogram) -> bool {
    h.schema == miru_model::CUSTOM_BUCKETS_SCHEMA
}

/// Multiplies every count and the sum by `f`.
pub(crate) fn scale(h: &FloatHistogram, f: f64) -> FloatHistogram {
    let mut out = h.clone();
    out.count *= f;
    out.sum *= f;
    out.zero_count *= f;
    out.positive_buckets.iter_mut().for_each(|b| *b *= f);
    out.negative_buckets.iter_mut().for_each(|b| *b *= f);
    out
}

/// `histogram * factor` as Prometheus' `FloatHistogram.Mul`: a negative
/// factor makes the result a gauge histogram.
pub(crate) fn mul(h: &FloatHistogram, factor: f64) -> FloatHistogram {
    let mut out = scale(h, factor);
    if factor < 0.0 {
        out.counter_reset_hint = CounterResetHint::Gauge;
    }
    out
}

/// `histogram / divisor` as Prometheus' `FloatHistogram.Div`: division by
/// zero removes all buckets (count, sum and zero bucket become ±Inf or
/// NaN); a negative divisor makes the result a gauge histogram.
pub(crate) fn div(h: &FloatHistogram, divisor: f64) -> FloatHistogram {
    let mut out = h.clone();
    out.count /= divisor;
    out.sum /= divisor;
    out.zero_count /= divisor;
    if divisor == 0.0 {
        out.positive_spans.clear();
        out.positive_buckets.clear();
        out.negative_spans.clear();
        out.negative_buckets.clear();
        return out;
    }
    out.positive_buckets.iter_mut().for_each(|b| *b /= divisor);
    out.negative_buckets.iter_mut().for_each(|b| *b /= divisor);
    if divisor < 0.0 {
        out.counter_reset_hint = CounterResetHint::Gauge;
    }
    out
}

fn to_map(spans: &[BucketSpan], buckets: &[f64]) -> BTreeMap<i32, f64> {
    let mut m = BTreeMap::new();
    let mut idx: i32 = 0;
    let mut k = 0usize;
    for (si, s) in spans.iter().enumerate() {
        idx = if si == 0 {
            s.offset
        } else {
            idx.saturating_add(s.offset)
        };
        for _ in 0..s.length {
            if let Some(&v) = buckets.get(k) {
                *m.entry(idx).or_insert(0.0) += v;
            }
            k += 1;
            idx = idx.saturating_add(1);
        }
    }
    m
}

fn from_map(m: &BTreeMap<i32, f64>, keep_zero: bool) -> (Vec<BucketSpan>, Vec<f64>) {
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut buckets = Vec::new();
    let mut next: Option<i32> = None;
    for (&i, &v) in m {
        if v == 0.0 && !keep_zero {
            continue;
        }
        match next {
            Some(n) if n == i => {
                if let Some(last) = spans.last_mut() {
                    last.length += 1;
                }
            }
            Some(n) => spans.push(BucketSpan {
                offset: i.saturating_sub(n),
                length: 1,
            }),
            None => spans.push(BucketSpan {
                offset: i,
                length: 1,
            }),
        }
        buckets.push(v);
        next = Some(i.saturating_add(1));
    }
    (spans, buckets)
}

/// Maps bucket indexes of `from` schema to the coarser `to` schema.
fn reduce(m: BTreeMap<i32, f64>, from: i32, to: i32) -> BTreeMap<i32, f64> {
    if from <= to {
        return m;
    }
    let delta = from.saturating_sub(to).clamp(0, 31) as u32;
    let mut out = BTreeMap::new();
    for (i, v) in m {
        let j = (i.saturating_sub(1) >> delta).saturating_add(1);
        *out.entry(j).or_insert(0.0) += v;
    }
    out
}

/// Upper bound of exponential bucket `idx` for `schema`.
pub(crate) fn exp_upper(schema: i32, idx: i32) -> f64 {
    if schema >= 0 {
        let base = 2f64.powf(2f64.powi(-schema));
        base.powi(idx)
    } else {
        2f64.powf(idx as f64 * 2f64.powi(-schema))
    }
}

fn exp_lower(schema: i32, idx: i32) -> f64 {
    exp_upper(schema, idx - 1)
}

/// A histogram's buckets in a common form for arithmetic.
struct Parts {
    pos: BTreeMap<i32, f64>,
    neg: BTreeMap<i32, f64>,
}

fn parts(h: &FloatHistogram, schema: i32) -> Parts {
    Parts {
        pos: reduce(
            to_map(&h.positive_spans, &h.positive_buckets),
            h.schema,
            schema,
        ),
        neg: reduce(
            to_map(&h.negative_spans, &h.negative_buckets),
            h.schema,
            schema,
        ),
    }
}

/// Moves buckets that lie inside the zero bucket of width `thr` into it.
fn widen_zero(p: &mut Parts, schema: i32, thr: f64) -> f64 {
    let mut moved = 0.0;
    for side in [&mut p.pos, &mut p.neg] {
        let inside: Vec<i32> = side
            .keys()
            .copied()
            .filter(|&i| exp_upper(schema, i) <= thr)
            .collect();
        for i in inside {
            moved += side.remove(&i).unwrap_or(0.0);
        }
    }
    moved
}

/// Maps custom buckets onto a coarser set of bounds (each bound of `to`
/// must be one of `from`'s, +Inf implicit in both).
fn remap_custom(m: &BTreeMap<i32, f64>, from: &[f64], to: &[f64]) -> BTreeMap<i32, f64> {
    let mut out = BTreeMap::new();
    for (&i, &v) in m {
        let upper = from.get(i as usize).copied().unwrap_or(f64::INFINITY);
        let j = to.partition_point(|&b| b < upper) as i32;
        *out.entry(j).or_insert(0.0) += v;
    }
    out
}

fn combine(a: &FloatHistogram, b: &FloatHistogram, sign: f64) -> Result<Combined, HistError> {
    if is_custom(a) != is_custom(b) {
        return Err(HistError::IncompatibleSchema);
    }
    let collision = matches!(
        (a.counter_reset_hint, b.counter_reset_hint),
        (CounterResetHint::Reset, CounterResetHint::NotReset)
            | (CounterResetHint::NotReset, CounterResetHint::Reset)
    );
    let mut out = FloatHistogram {
        counter_reset_hint: a.counter_reset_hint,
        schema: a.schema,
        zero_threshold: a.zero_threshold,
        zero_count: a.zero_count + sign * b.zero_count,
        count: a.count + sign * b.count,
        sum: a.sum + sign * b.sum,
        ..Default::default()
    };
    if a.counter_reset_hint != b.counter_reset_hint {
        out.counter_reset_hint = match (a.counter_reset_hint, b.counter_reset_hint) {
            (CounterResetHint::Gauge, _) | (_, CounterResetHint::Gauge) => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        };
    }
    let mut reconciled = false;
    if is_custom(a) {
        let (pa, pb);
        if a.custom_values == b.custom_values {
            out.custom_values = a.custom_values.clone();
            pa = to_map(&a.positive_spans, &a.positive_buckets);
            pb = to_map(&b.positive_spans, &b.positive_buckets);
        } else {
            reconciled = true;
            let common: Vec<f64> = a
                .custom_values
                .iter()
                .copied()
                .filter(|v| b.custom_values.contains(v))
                .collect();
            pa = remap_custom(
                &to_map(&a.positive_spans, &a.positive_buckets),
                &a.custom_values,
                &common,
            );
            pb = remap_custom(
                &to_map(&b.positive_spans, &b.positive_buckets),
                &b.custom_values,
                &common,
            );
            out.custom_values = common;
        }
        let mut m = pa;
        for (i, v) in pb {
            *m.entry(i).or_insert(0.0) += sign * v;
        }
        let (s, bk) = from_map(&m, true);
        out.positive_spans = s;
        out.positive_buckets = bk;
        return Ok(Combined {
            h: out,
            counter_reset_collision: collision,
            nhcb_reconciled: reconciled,
        });
    }
    let schema = a.schema.min(b.schema);
    out.schema = schema;
    let mut pa = parts(a, schema);
    let mut pb = parts(b, schema);
    let thr = a.zero_threshold.max(b.zero_threshold);
    out.zero_threshold = thr;
    if a.zero_threshold < thr {
        out.zero_count += widen_zero(&mut pa, schema, thr);
    }
    if b.zero_threshold < thr {
        out.zero_count += sign * widen_zero(&mut pb, schema, thr);
    }
    for (i, v) in pb.pos {
        *pa.pos.entry(i).or_insert(0.0) += sign * v;
    }
    for (i, v) in pb.neg {
        *pa.neg.entry(i).or_insert(0.0) += sign * v;
    }
    let (s, bk) = from_map(&pa.pos, true);
    out.positive_spans = s;
    out.positive_buckets = bk;
    let (s, bk) = from_map(&pa.neg, true);
    out.negative_spans = s;
    out.negative_buckets = bk;
    Ok(Combined {
        h: out,
        counter_reset_collision: collision,
        nhcb_reconciled: reconciled,
    })
}

pub(crate) fn add(a: &FloatHistogram, b: &FloatHistogram) -> Result<Combined, HistError> {
    combine(a, b, 1.0)
}

pub(crate) fn sub(a: &FloatHistogram, b: &FloatHistogram) -> Result<Combined, HistError> {
    combine(a, b, -1.0)
}

/// Drops empty buckets and merges adjacent spans.
pub(crate) fn compact(h: &FloatHistogram) -> FloatHistogram {
    let mut out = h.clone();
    let (s, b) = from_map(&to_map(&h.positive_spans, &h.positive_buckets), false);
    out.positive_spans = s;
    out.positive_buckets = b;
    let (s, b) = from_map(&to_map(&h.negative_spans, &h.negative_buckets), false);
    out.negative_spans = s;
    out.negative_buckets = b;
    out
}

/// Same value, ignoring the counter reset hint and empty buckets.
pub(crate) fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let eqf = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
    if a.schema != b.schema
        || !eqf(a.count, b.count)
        || !eqf(a.sum, b.sum)
        || a.zero_threshold != b.zero_threshold
        || !eqf(a.zero_count, b.zero_count)
    {
        return false;
    }
    if is_custom(a) && a.custom_values != b.custom_values {
        return false;
    }
    let (ca, cb) = (compact(a), compact(b));
    ca.positive_spans == cb.positive_spans
        && ca.negative_spans == cb.negative_spans
        && ca.positive_buckets.len() == cb.positive_buckets.len()
        && ca
            .positive_buckets
            .iter()
            .zip(&cb.positive_buckets)
            .all(|(x, y)| eqf(*x, *y))
        && ca
            .negative_buckets
            .iter()
            .zip(&cb.negative_buckets)
            .all(|(x, y)| eqf(*x, *y))
}

/// Whether `cur` follows a counter reset after `prev` (Prometheus'
/// `DetectReset`).
pub(crate) fn detect_reset(cur: &FloatHistogram, prev: &FloatHistogram) -> bool {
    match cur.counter_reset_hint {
        CounterResetHint::Reset => return true,
        CounterResetHint::NotReset => return false,
        _ => {}
    }
    if cur.count < prev.count {
        return true;
    }
    if is_custom(cur) != is_custom(prev) {
        return true;
    }
    if is_custom(cur) {
        if cur.custom_values != prev.custom_values {
            return true;
        }
    } else if cur.schema > prev.schema {
        return true;
    }
    if cur.zero_threshold < prev.zero_threshold {
        return true;
    }
    let schema = cur.schema;
    let mut pp = parts(prev, schema);
    let mut prev_zero = prev.zero_count;
    if !is_custom(cur) && prev.zero_threshold < cur.zero_threshold {
        prev_zero += widen_zero(&mut pp, schema, cur.zero_threshold);
    }
    if cur.zero_count < prev_zero {
        return true;
    }
    let cp = parts(cur, schema);
    for (side_p, side_c) in [(&pp.pos, &cp.pos), (&pp.neg, &cp.neg)] {
        for (i, &v) in side_p {
            if v > 0.0 && side_c.get(i).copied().unwrap_or(0.0) < v {
                return true;
            }
        }
    }
    false
}

/// The increase over a range of histogram samples with counter resets
/// handled (Prometheus' `histogramRate`), before extrapolation.
pub(crate) fn histogram_rate(
    points: &[(i64, std::sync::Arc<FloatHistogram>)],
    is_counter: bool,
    name: &str,
    pos: Pos,
    a: &mut Annotations,
) -> Option<FloatHistogram> {
    let first = &points[0].1;
    let last = &points[points.len() - 1].1;
    if is_counter
        && (first.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        a.warn(
            format!("this native histogram metric is not a counter: {name:?}"),
            pos,
        );
    }
    let mixed = || {
        format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
        )
    };
    let mut prev: FloatHistogram = (**first).clone();
    if is_counter && points.len() > 1 && detect_reset(&points[1].1, first) {
        prev = FloatHistogram {
            schema: points[1].1.schema,
            custom_values: points[1].1.custom_values.clone(),
            ..Default::default()
        };
    }
    if is_custom(last) != is_custom(&prev) {
        a.warn(mixed(), pos);
        return None;
    }
    for (_, h) in &points[1..points.len() - 1] {
        if !is_counter {
            continue;
        }
        if h.counter_reset_hint == CounterResetHint::Gauge {
            a.warn(
                format!("this native histogram metric is not a counter: {name:?}"),
                pos,
            );
        }
        if is_custom(h) != is_custom(&prev) {
            a.warn(mixed(), pos);
            return None;
        }
    }
    let mut h = match sub(last, &prev) {
        Ok(r) => {
            if r.nhcb_reconciled {
                a.info(
                    "mismatched custom buckets were reconciled during subtraction",
                    pos,
                );
            }
            r.h
        }
        Err(_) => {
            a.warn(mixed(), pos);
            return None;
        }
    };
    if is_counter {
        let mut prev_h: &FloatHistogram = &prev;
        for (_, cur) in &points[1..] {
            if detect_reset(cur, prev_h) {
                match add(&h, prev_h) {
                    Ok(r) => {
                        if r.nhcb_reconciled {
                            a.info(
                                "mismatched custom buckets were reconciled during addition",
                                pos,
                            );
                        }
                        h = r.h;
                    }
                    Err(_) => {
                        a.warn(mixed(), pos);
                        return None;
                    }
                }
            }
            prev_h = cur;
        }
    } else if first.counter_reset_hint != CounterResetHint::Gauge
        || last.counter_reset_hint != CounterResetHint::Gauge
    {
        a.warn(
            format!("this native histogram metric is not a gauge: {name:?}"),
            pos,
        );
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    Some(compact(&h))
}

/// A bucket with its bounds, for quantiles and fractions.
pub(crate) struct Bucket {
    pub(crate) lower: f64,
    pub(crate) upper: f64,
    pub(crate) count: f64,
    pub(crate) lower_inclusive: bool,
}

/// All buckets from the lowest to the highest (negative, zero, positive).
pub(crate) fn buckets(h: &FloatHistogram) -> Vec<Bucket> {
    let mut out = Vec::new();
    if is_custom(h) {
        for (i, v) in to_map(&h.positive_spans, &h.positive_buckets) {
            let idx = i as usize;
            let upper = h.custom_values.get(idx).copied().unwrap_or(f64::INFINITY);
            let lower = if idx == 0 {
                f64::NEG_INFINITY
            } else {
                h.custom_values
                    .get(idx - 1)
                    .copied()
                    .unwrap_or(f64::INFINITY)
            };
            out.push(Bucket {
                lower,
                upper,
                count: v,
                lower_inclusive: false,
            });
        }
        return out;
    }
    let neg = to_map(&h.negative_spans, &h.negative_buckets);
    for (&i, &v) in neg.iter().rev() {
        out.push(Bucket {
            lower: -exp_upper(h.schema, i),
            upper: -exp_lower(h.schema, i),
            count: v,
            lower_inclusive: true,
        });
    }
    if h.zero_count != 0.0 || h.zero_threshold != 0.0 {
        out.push(Bucket {
            lower: -h.zero_threshold,
            upper: h.zero_threshold,
            count: h.zero_count,
            lower_inclusive: true,
        });
    }
    for (i, v) in to_map(&h.positive_spans, &h.positive_buckets) {
        out.push(Bucket {
            lower: exp_lower(h.schema, i),
            upper: exp_upper(h.schema, i),
            count: v,
            lower_inclusive: false,
        });
    }
    out
}

/// Prometheus' test-expression form, used as a label value by
/// `count_values` over histograms.
pub(crate) fn to_string(h: &FloatHistogram) -> String {
    use crate::annotations::fmt_g;
    let mut s = format!("{{count:{}, sum:{}", fmt_g(h.count), fmt_g(h.sum));
    for b in buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        // Negative buckets are `[lower,upper)`, the zero bucket is
        // `[-t,t]`, positive and custom buckets are `(lower,upper]`.
        let (l, r) = if !b.lower_inclusive {
            ('(', ']')
        } else if b.upper == -b.lower {
            ('[', ']')
        } else {
            ('[', ')')
        };
        s.push_str(&format!(
            ", {l}{},{}{r}:{}",
            fmt_g(b.lower),
            fmt_g(b.upper),
            fmt_g(b.count)
        ));
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, spans: Vec<(i32, u32)>, buckets: Vec<f64>) -> FloatHistogram {
        let count = buckets.iter().sum();
        FloatHistogram {
            schema,
            count,
            sum: count,
            positive_spans: spans
                .into_iter()
                .map(|(offset, length)| BucketSpan { offset, length })
                .collect(),
            positive_buckets: buckets,
            ..Default::default()
        }
    }

    #[test]
    fn add_reduces_to_common_schema() {
        let a = h(1, vec![(1, 2)], vec![1.0, 2.0]);
        let b = h(0, vec![(1, 1)], vec![4.0]);
        let r = add(&a, &b).unwrap().h;
        assert_eq!(r.schema, 0);
        // Schema-1 buckets 1 and 2 both fall into schema-0 bucket 1.
        assert_eq!(r.positive_buckets, vec![7.0]);
        assert_eq!(r.count, 7.0);
    }

    #[test]
    fn reset_detection() {
        let a = h(0, vec![(0, 2)], vec![1.0, 2.0]);
        let b = h(0, vec![(0, 2)], vec![2.0, 1.0]);
        assert!(detect_reset(&b, &a));
        let c = h(0, vec![(0, 2)], vec![2.0, 3.0]);
        assert!(!detect_reset(&c, &a));
    }
}
