//! Range aggregations: each series' samples in the window
//! `(t - offset - range, t - offset]` of every step reduced to one value.

use miru_model::{Label, Labels, MatchOp};

use super::select::{RawSeries, select_samples};
use super::{Budget, QueryContext, StepVec, Steps};
use crate::error::QueryError;
use crate::source::LogSource;
use crate::syntax::ast::{RangeAgg, RangeOp};

pub(super) fn eval_range(
    src: &dyn LogSource,
    agg: &RangeAgg,
    steps: &Steps,
    ctx: &QueryContext,
    budget: &mut Budget,
) -> Result<Vec<StepVec>, QueryError> {
    let series = select_samples(src, agg, steps.start, steps.end, ctx, budget)?;
    let mut out: Vec<StepVec> = vec![Vec::new(); steps.count()];
    if agg.op == RangeOp::AbsentOverTime {
        return Ok(absent(agg, &series, steps));
    }
    let range_s = agg.range_ns as f64 / 1e9;
    for s in &series {
        for (i, t) in steps.iter().enumerate() {
            let hi = t.saturating_sub(agg.offset_ns);
            let lo = hi.saturating_sub(agg.range_ns);
            let a = s.points.partition_point(|p| p.0 <= lo);
            let b = s.points.partition_point(|p| p.0 <= hi);
            if a >= b {
                continue;
            }
            let w = &s.points[a..b];
            if let Some(v) = reduce(agg, w, lo, hi, range_s) {
                out[i].push((s.labels.clone(), v));
            }
        }
    }
    Ok(out)
}

fn values(w: &[(i64, f64)]) -> impl Iterator<Item = f64> + '_ {
    w.iter().map(|p| p.1)
}

fn reduce(agg: &RangeAgg, w: &[(i64, f64)], lo: i64, hi: i64, range_s: f64) -> Option<f64> {
    let n = w.len() as f64;
    Some(match agg.op {
        RangeOp::CountOverTime => n,
        RangeOp::Rate if agg.unwrap.is_none() => n / range_s,
        RangeOp::Rate | RangeOp::BytesRate => values(w).sum::<f64>() / range_s,
        RangeOp::BytesOverTime | RangeOp::SumOverTime => values(w).sum(),
        RangeOp::AvgOverTime => values(w).sum::<f64>() / n,
        RangeOp::MinOverTime => {
            values(w).fold(f64::NAN, |m, v| if v < m || m.is_nan() { v } else { m })
        }
        RangeOp::MaxOverTime => {
            values(w).fold(f64::NAN, |m, v| if v > m || m.is_nan() { v } else { m })
        }
        RangeOp::StdvarOverTime => variance(values(w)),
        RangeOp::StddevOverTime => variance(values(w)).sqrt(),
        RangeOp::QuantileOverTime => quantile(agg.param.unwrap_or(f64::NAN), values(w).collect()),
        RangeOp::FirstOverTime => w.first()?.1,
        RangeOp::LastOverTime => w.last()?.1,
        RangeOp::RateCounter => rate_counter(w, lo, hi, range_s),
        RangeOp::AbsentOverTime => 1.0,
    })
}

pub(super) fn variance(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut count, mut mean, mut aux) = (0f64, 0f64, 0f64);
    for v in vals {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

/// Prometheus' quantile: linear interpolation between ranks.
pub(super) fn quantile(q: f64, mut v: Vec<f64>) -> f64 {
    if v.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    v[lower as usize] * (1.0 - weight) + v[upper as usize] * weight
}

/// Prometheus 3's extrapolated counter rate: resets add the pre-drop value
/// back; each edge extrapolates at most half an average interval when the
/// nearest sample is farther than 1.1 intervals, then never below zero.
fn rate_counter(w: &[(i64, f64)], lo: i64, hi: i64, range_s: f64) -> f64 {
    if w.len() < 2 {
        return 0.0;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.1 - first.1;
    let mut prev = first.1;
    for p in &w[1..] {
        if p.1 < prev {
            result += prev;
        }
        prev = p.1;
    }
    let sampled = last.0.saturating_sub(first.0) as f64 / 1e9;
    let mut to_start = first.0.saturating_sub(lo) as f64 / 1e9;
    let mut to_end = hi.saturating_sub(last.0) as f64 / 1e9;
    let avg = sampled / (w.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let factor = (sampled + to_start + to_end) / sampled;
    result * factor / range_s
}

/// `absent_over_time`: 1 at the steps where no series has a sample, with
/// the labels of the selector's equality matchers.
fn absent(agg: &RangeAgg, series: &[RawSeries], steps: &Steps) -> Vec<StepVec> {
    let mut labels: Vec<Label> = agg
        .log
        .matchers
        .iter()
        .filter(|m| m.op == MatchOp::Equal)
        .map(|m| Label::new(m.name.as_str(), m.value.as_str()))
        .collect();
    labels.sort();
    labels.dedup_by(|a, b| a.name == b.name);
    let labels = Labels::from_sorted(labels);
    steps
        .iter()
        .map(|t| {
            let hi = t.saturating_sub(agg.offset_ns);
            let lo = hi.saturating_sub(agg.range_ns);
            let present = series.iter().any(|s| {
                let a = s.points.partition_point(|p| p.0 <= lo);
                let b = s.points.partition_point(|p| p.0 <= hi);
                a < b
            });
            if present {
                Vec::new()
            } else {
                vec![(labels.clone(), 1.0)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0]), 1.5);
        assert_eq!(quantile(2.0, vec![1.0]), f64::INFINITY);
        assert_eq!(quantile(0.99, vec![7.0]), 7.0);
    }
}
