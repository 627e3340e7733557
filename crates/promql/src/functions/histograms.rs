//! `histogram_quantile`, `histogram_fraction` and the native-histogram
//! accessors (`histogram_count`, `_sum`, `_avg`, `_stddev`, `_stdvar`).

use crate::HashMap;

use miru_model::{FloatHistogram, Labels};

use super::{kahan_inc, metric_name};
use crate::QueryError;
use crate::annotations::{Annotations, fmt_g};
use crate::eval::{Evaluator, Grid, Sample, Val, Vector};
use crate::histogram::{self as hist, is_custom};
use crate::plan::Call;
use crate::position::Pos;

pub(super) fn eval(ev: &mut Evaluator<'_>, c: &Call, g: Grid) -> Result<Val, QueryError> {
    match c.name {
        "histogram_quantile" => {
            let q = ev.eval_scalar(&c.args[0], g)?;
            let v = ev.eval_vector(&c.args[1], g)?;
            let qpos = c.arg_pos.first().copied().unwrap_or(c.pos);
            let vpos = c.arg_pos.get(1).copied().unwrap_or(c.pos);
            let mut out = Vec::with_capacity(v.len());
            for (i, vec) in v.into_iter().enumerate() {
                let q = q.get(i).copied().unwrap_or(f64::NAN);
                // Prometheus warns at every step, with or without input.
                if q.is_nan() || !(0.0..=1.0).contains(&q) {
                    ev.annos.warn(
                        format!("quantile value should be between 0 and 1, got {}", fmt_g(q)),
                        qpos,
                    );
                }
                if vec.is_empty() {
                    out.push(Vec::new());
                    continue;
                }
                out.push(per_histogram(
                    &mut ev.annos,
                    vec,
                    vpos,
                    g.ts(i),
                    |a, h, name| native_quantile(q, h, name, vpos, a),
                    |a, labels, buckets, ts| {
                        let (v, forced, min_b, max_b, max_diff) = bucket_quantile(q, buckets);
                        if forced {
                            let _ = ts;
                            a.info(forced_monotonicity(labels, min_b, max_b, max_diff), vpos);
                        }
                        v
                    },
                ));
            }
            Ok(Val::Vector(out))
        }
        "histogram_quantiles" => histogram_quantiles(ev, c, g),
        "histogram_fraction" => {
            let lo = ev.eval_scalar(&c.args[0], g)?;
            let hi = ev.eval_scalar(&c.args[1], g)?;
            let v = ev.eval_vector(&c.args[2], g)?;
            let vpos = c.arg_pos.get(2).copied().unwrap_or(c.pos);
            let mut out = Vec::with_capacity(v.len());
            for (i, vec) in v.into_iter().enumerate() {
                let (lo, hi) = (
                    lo.get(i).copied().unwrap_or(f64::NAN),
                    hi.get(i).copied().unwrap_or(f64::NAN),
                );
                out.push(per_histogram(
                    &mut ev.annos,
                    vec,
                    vpos,
                    g.ts(i),
                    |a, h, name| native_fraction(lo, hi, h, name, vpos, a),
                    |_, _, buckets, _| bucket_fraction(lo, hi, buckets),
                ));
            }
            Ok(Val::Vector(out))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            let v = ev.eval_vector(&c.args[0], g)?;
            let f: fn(&FloatHistogram) -> f64 = match c.name {
                "histogram_count" => |h| h.count,
                "histogram_sum" => |h| h.sum,
                "histogram_avg" => |h| h.sum / h.count,
                "histogram_stddev" => |h| variance(h).sqrt(),
                _ => variance,
            };
            Ok(Val::Vector(
                v.into_iter()
                    .map(|vec| {
                        vec.into_iter()
                            .filter_map(|s| {
                                let h = s.h.as_ref()?;
                                Some(Sample {
                                    f: f(h),
                                    h: None,
                                    labels: s.labels,
                                    drop_name: true,
                                })
                            })
                            .collect()
                    })
                    .collect(),
            ))
        }
        other => Err(QueryError::exec(format!(
            "function {other:?} is not supported"
        ))),
    }
}

/// `histogram_quantiles(v, "label", q0, q1, ...)` (experimental): one
/// `histogram_quantile` per φ, each result labelled `label="<φ>"`.
fn histogram_quantiles(ev: &mut Evaluator<'_>, c: &Call, g: Grid) -> Result<Val, QueryError> {
    let v = ev.eval_vector(&c.args[0], g)?;
    let label = match c.args.get(1).map(|n| n.unwrapped()) {
        Some(crate::plan::Node::Str(s)) => s.clone(),
        _ => {
            return Err(QueryError::exec(
                "expected a string as argument 2 of histogram_quantiles()",
            ));
        }
    };
    let mut qs = Vec::with_capacity(c.args.len().saturating_sub(2));
    for (i, a) in c.args.iter().enumerate().skip(2) {
        let pos = c.arg_pos.get(i).copied().unwrap_or(c.pos);
        qs.push((ev.eval_scalar(a, g)?, pos));
    }
    let vpos = c.arg_pos.first().copied().unwrap_or(c.pos);
    let mut out = Vec::with_capacity(v.len());
    for (i, vec) in v.into_iter().enumerate() {
        let mut step = Vec::new();
        for (q, qpos) in &qs {
            let q = q.get(i).copied().unwrap_or(f64::NAN);
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ev.annos.warn(
                    format!("quantile value should be between 0 and 1, got {}", fmt_g(q)),
                    *qpos,
                );
            }
            if vec.is_empty() {
                continue;
            }
            let value = openmetrics_float(q);
            let samples = per_histogram(
                &mut ev.annos,
                vec.clone(),
                vpos,
                g.ts(i),
                |a, h, name| native_quantile(q, h, name, vpos, a),
                |a, labels, buckets, _| {
                    let (v, forced, min_b, max_b, max_diff) = bucket_quantile(q, buckets);
                    if forced {
                        a.info(forced_monotonicity(labels, min_b, max_b, max_diff), vpos);
                    }
                    v
                },
            );
            step.extend(samples.into_iter().map(|mut s| {
                let mut lb = crate::eval::builder_from(&s.labels);
                lb.set(label.as_str(), value.as_str());
                s.labels = lb.build();
                s
            }));
        }
        out.push(step);
    }
    Ok(Val::Vector(out))
}

fn forced_monotonicity(labels: &Labels, min_b: f64, max_b: f64, max_diff: f64) -> String {
    format!(
        "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}, from buckets {} to {}, with a max diff of {}",
        metric_name(labels),
        fmt_g(min_b),
        fmt_g(max_b),
        fmt_g((max_diff * 100.0).round() / 100.0)
    )
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` with `.0` appended when the
/// result has neither `.` nor `e` (Prometheus' `FormatOpenMetricsFloat`).
pub(crate) fn openmetrics_float(f: f64) -> String {
    let s = fmt_g(f);
    if s.contains(['.', 'e', 'N', 'I']) {
        s
    } else {
        format!("{s}.0")
    }
}

fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in hist::buckets(h) {
        if b.count == 0.0 {
            continue;
        }
        let val = if is_custom(h) {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 { -v } else { v }
        };
        let d = val - mean;
        (var, c) = kahan_inc(b.count * d * d, var, c);
    }
    (var + c) / h.count
}

/// Classic buckets of one series group: output labels, `(le, count)`
/// pairs, and whether the name is to be dropped.
type ClassicGroup = (Labels, Vec<(f64, f64)>, bool);

/// Splits a vector into native histograms and classic bucket series
/// (grouped by labels without `le`) and applies the matching computation.
fn per_histogram(
    a: &mut Annotations,
    vec: Vector,
    pos: Pos,
    ts: i64,
    mut native: impl FnMut(&mut Annotations, &FloatHistogram, &str) -> f64,
    mut classic: impl FnMut(&mut Annotations, &Labels, &mut Vec<(f64, f64)>, i64) -> f64,
) -> Vector {
    let mut groups: HashMap<Labels, ClassicGroup> = HashMap::default();
    let mut order: Vec<Labels> = Vec::new();
    let mut natives: Vec<Sample> = Vec::new();
    for s in vec {
        if s.h.is_some() {
            natives.push(s);
            continue;
        }
        let le = s.labels.get("le").unwrap_or("");
        let Some(upper) = parse_go_float(le) else {
            a.warn(
                format!(
                    "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {:?}",
                    metric_name(&s.labels)
                ),
                pos,
            );
            continue;
        };
        let key = Labels::from_sorted(
            s.labels
                .iter()
                .filter(|l| &*l.name != "le")
                .cloned()
                .collect(),
        );
        let e = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            (key.clone(), Vec::new(), s.drop_name)
        });
        e.1.push((upper, s.f));
    }
    let mut out = Vec::new();
    for s in natives {
        if groups.get(&s.labels).is_some_and(|g| !g.1.is_empty()) {
            a.warn(
                format!(
                    "vector contains a mix of classic and native histograms for metric name {:?}",
                    metric_name(&s.labels)
                ),
                pos,
            );
            groups.remove(&s.labels);
            continue;
        }
        let Some(h) = &s.h else { continue };
        let f = native(a, h, metric_name(&s.labels));
        out.push(Sample {
            labels: s.labels,
            f,
            h: None,
            drop_name: true,
        });
    }
    for key in order {
        let Some((labels, mut buckets, _)) = groups.remove(&key) else {
            continue;
        };
        let f = classic(a, &labels, &mut buckets, ts);
        out.push(Sample {
            labels,
            f,
            h: None,
            drop_name: true,
        });
    }
    out
}

/// Go's `strconv.ParseFloat` for `le` values (accepts `+Inf`, `Inf`, `NaN`).
fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || t != s {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t.starts_with("0x") || t.starts_with("0X") || t.starts_with("-0x") || t.starts_with("+0x") {
        let (neg, hex) = match t.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, t.trim_start_matches('+')),
        };
        let v = i64::from_str_radix(&hex[2..], 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    t.parse::<f64>().ok()
}

fn sort_coalesce(buckets: &mut Vec<(f64, f64)>) {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(u, c) in buckets.iter() {
        match out.last_mut() {
            Some(last) if last.0 == u => last.1 += c,
            _ => out.push((u, c)),
        }
    }
    *buckets = out;
}

/// Quantile of classic buckets `(upper bound, cumulative count)`; also
/// reports whether monotonicity had to be forced, with the bucket range
/// and largest correction.
pub(crate) fn bucket_quantile(q: f64, buckets: &mut Vec<(f64, f64)>) -> (f64, bool, f64, f64, f64) {
    if q.is_nan() {
        return (f64::NAN, false, 0.0, 0.0, 0.0);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false, 0.0, 0.0, 0.0);
    }
    if q > 1.0 {
        return (f64::INFINITY, false, 0.0, 0.0, 0.0);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return (f64::NAN, false, 0.0, 0.0, 0.0);
    }
    sort_coalesce(buckets);
    // Force monotonicity, ignoring tiny floating point differences.
    let (mut forced, mut min_b, mut max_b, mut max_diff) =
        (false, f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    let mut prev = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            b.1 = prev;
            continue;
        }
        if curr < prev {
            b.1 = prev;
            forced = true;
            min_b = min_b.min(b.0);
            max_b = max_b.max(b.0);
            max_diff = max_diff.max(prev - curr);
            continue;
        }
        prev = curr;
    }
    if buckets.len() < 2 {
        return (f64::NAN, forced, min_b, max_b, max_diff);
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return (f64::NAN, forced, min_b, max_b, max_diff);
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|x| x.1 < rank);
    let v = if b == n {
        buckets[n - 1].0
    } else if b == 0 && buckets[0].0 <= 0.0 {
        buckets[0].0
    } else {
        let mut start = 0.0;
        let end = buckets[b].0;
        let mut count = buckets[b].1;
        if b > 0 {
            start = buckets[b - 1].0;
            count -= buckets[b - 1].1;
            rank -= buckets[b - 1].1;
        }
        start + (end - start) * (rank / count)
    };
    (v, forced, min_b, max_b, max_diff)
}

/// `almost.Equal` of Prometheus' util package.
pub(crate) fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<(f64, f64)>) -> f64 {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    sort_coalesce(buckets);
    let count = buckets[buckets.len() - 1].1;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut lower_bound = if buckets[0].0 <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, &(ub, bc)) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].0;
        }
        let interp = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                bc
            } else {
                rank + (bc - rank) * (v - lower_bound) / (ub - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && ub > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && ub > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = bc;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

fn native_quantile(q: f64, h: &FloatHistogram, name: &str, pos: Pos, a: &mut Annotations) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let all = hist::buckets(h);
    let forward = h.sum.is_nan() || q < 0.5;
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut idx = None;
    let order: Vec<usize> = if forward {
        (0..all.len()).collect()
    } else {
        (0..all.len()).rev().collect()
    };
    let mut consumed = 0;
    for (k, &i) in order.iter().enumerate() {
        consumed = k + 1;
        if all[i].count == 0.0 {
            continue;
        }
        idx = Some(i);
        count += all[i].count;
        if count >= rank {
            break;
        }
    }
    let Some(i) = idx else {
        return f64::NAN;
    };
    let (mut lower, mut upper, bcount) = (all[i].lower, all[i].upper, all[i].count);
    let has_pos = !h.positive_buckets.is_empty();
    let has_neg = !h.negative_buckets.is_empty();
    if !is_custom(h) && lower < 0.0 && upper > 0.0 {
        if !has_neg && has_pos {
            lower = 0.0;
        } else if !has_pos && has_neg {
            upper = 0.0;
        }
    } else if is_custom(h) {
        if lower == f64::NEG_INFINITY {
            if upper <= 0.0 {
                return upper;
            }
            lower = 0.0;
        } else if upper == f64::INFINITY {
            return lower;
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            a.info(
                format!(
                    "input to histogram_quantile has NaN observations, result is NaN for metric name {name:?}"
                ),
                pos,
            );
            return f64::NAN;
        }
        return upper;
    }
    if forward {
        rank -= count - bcount;
    } else {
        rank = count - rank;
    }
    if h.sum.is_nan() {
        for &j in &order[consumed..] {
            count += all[j].count;
        }
        if count < h.count {
            a.info(
                format!(
                    "input to histogram_quantile has NaN observations, result is skewed higher for metric name {name:?}"
                ),
                pos,
            );
        }
    }
    let fraction = rank / bcount;
    if is_custom(h) || (lower <= 0.0 && upper >= 0.0) {
        return lower + (upper - lower) * fraction;
    }
    let ll = lower.abs().log2();
    let lu = upper.abs().log2();
    if lower > 0.0 {
        (ll + (lu - ll) * fraction).exp2()
    } else {
        -(lu + (ll - lu) * (1.0 - fraction)).exp2()
    }
}

fn fraction_below(lower: f64, upper: f64, v: f64, linear: bool) -> f64 {
    if v <= lower {
        return 0.0;
    }
    if v >= upper {
        return 1.0;
    }
    if linear {
        return (v - lower) / (upper - lower);
    }
    if lower > 0.0 {
        let (ll, lu) = (lower.log2(), upper.log2());
        (v.log2() - ll) / (lu - ll)
    } else {
        let (ll, lu) = (lower.abs().log2(), upper.abs().log2());
        1.0 - (v.abs().log2() - lu) / (ll - lu)
    }
}

fn native_fraction(
    lower: f64,
    upper: f64,
    h: &FloatHistogram,
    name: &str,
    pos: Pos,
    a: &mut Annotations,
) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let all = hist::buckets(h);
    let has_pos = !h.positive_buckets.is_empty();
    let has_neg = !h.negative_buckets.is_empty();
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut consumed = all.len();
    for (k, b) in all.iter().enumerate() {
        count += b.count;
        let (mut bl, mut bu) = (b.lower, b.upper);
        let mut zero = false;
        if bl <= 0.0 && bu >= 0.0 {
            zero = true;
            if !has_neg && has_pos {
                bl = 0.0;
            } else if !has_pos && has_neg {
                bu = 0.0;
            }
        }
        let linear = is_custom(h) || zero;
        let interp = |v: f64| {
            if linear && bl == f64::NEG_INFINITY {
                b.count
            } else {
                rank + b.count * fraction_below(bl, bu, v, linear)
            }
        };
        if !lower_set && bl >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && bl >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = k + 1;
            break;
        }
        if !lower_set && bl < lower && bu > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && bl < upper && bu > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = k + 1;
            break;
        }
        rank += b.count;
    }
    if h.sum.is_nan() {
        for b in &all[consumed.min(all.len())..] {
            count += b.count;
        }
        if count < h.count {
            a.info(
                format!(
                    "input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name {name:?}"
                ),
                pos,
            );
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / h.count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_quantile_interpolates_linearly() {
        let mut b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        let (v, forced, ..) = bucket_quantile(0.5, &mut b);
        assert!(!forced);
        // rank 20 falls in (0.1, 0.5]: 0.1 + 0.4 * (10/20).
        assert!((v - 0.3).abs() < 1e-12);
        let mut b = vec![(0.1, 10.0), (f64::INFINITY, 40.0)];
        assert_eq!(bucket_quantile(0.99, &mut b).0, 0.1);
    }

    #[test]
    fn classic_quantile_forces_monotonicity() {
        let mut b = vec![(1.0, 10.0), (2.0, 8.0), (f64::INFINITY, 12.0)];
        let (_, forced, min_b, max_b, diff) = bucket_quantile(0.5, &mut b);
        assert!(forced);
        assert_eq!((min_b, max_b, diff), (2.0, 2.0, 2.0));
    }

    #[test]
    fn quantile_labels_use_go_float_format() {
        for (f, s) in [
            (0.0, "0.0"),
            (1.0, "1.0"),
            (0.25, "0.25"),
            (123456.0, "123456.0"),
            (1e6, "1e+06"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (-2.0, "-2.0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(openmetrics_float(f), s, "{f}");
        }
    }

    #[test]
    fn classic_quantile_needs_inf_bucket() {
        let mut b = vec![(1.0, 10.0)];
        assert!(bucket_quantile(0.5, &mut b).0.is_nan());
    }
}
