//! Function calls. Range-vector functions live in `range.rs`, histogram
//! functions in `histograms.rs`; this file has the dispatch and the
//! instant-vector and scalar functions.

mod histograms;
mod range;
mod regression;

pub(crate) use histograms::almost_equal;
pub(crate) use range::range_function_rows;

use crate::HashSet;

use miru_model::{Labels, LabelsBuilder, METRIC_NAME, MatchOp};

use crate::QueryError;
use crate::eval::{
    Evaluator, Grid, Sample, Val, Vector, check_step_duplicates, duplicate_labelset,
};
use crate::plan::{Call, Node, ValueType};

/// One step of Kahan-Babuška (Neumaier) summation, as Prometheus'
/// `kahansum.Inc`: returns the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    // Both compensations are computed and one is picked, rather than
    // branching: the branch is unpredictable on real data and this is the
    // inner loop of `sum`, `avg`, `*_over_time` and the regressions. Same
    // values as the branching form (the discarded term is never used).
    let t = sum + inc;
    let big_sum = (sum - t) + inc;
    let big_inc = (inc - t) + sum;
    let d = if sum.abs() >= inc.abs() {
        big_sum
    } else {
        big_inc
    };
    let c = if t.is_infinite() { 0.0 } else { c + d };
    (t, c)
}

/// The φ-quantile of `values` (sorted in place), interpolating between
/// neighbours as Prometheus' `quantile` does.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaNs sort first, as Go's vectorByValueHeap orders them.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

pub(crate) fn metric_name(l: &Labels) -> &str {
    l.get(METRIC_NAME).unwrap_or("")
}

fn string_arg(c: &Call, i: usize) -> Result<&str, QueryError> {
    match c.args.get(i).map(|n| n.unwrapped()) {
        Some(Node::Str(s)) => Ok(s),
        _ => Err(QueryError::exec(format!(
            "expected a string as argument {} of {}()",
            i + 1,
            c.name
        ))),
    }
}

fn scalar_arg(
    ev: &mut Evaluator<'_>,
    c: &Call,
    i: usize,
    g: Grid,
) -> Result<Option<Vec<f64>>, QueryError> {
    match c.args.get(i) {
        None => Ok(None),
        Some(n) => Ok(Some(ev.eval_scalar(n, g)?)),
    }
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, c: &Call, g: Grid) -> Result<Val, QueryError> {
    let n = g.len();
    if c.args.iter().any(|a| a.value_type() == ValueType::Matrix) {
        return range::eval_range_function(ev, c, g);
    }
    if (c.name == "sort" || c.name == "sort_desc" || c.name.starts_with("sort_by_label"))
        && !g.is_instant()
    {
        ev.annos.warn(
            "sort is ineffective for range queries since results are always ordered by labels",
            c.pos,
        );
    }
    let val = match c.name {
        "time" => Val::Scalar((0..n).map(|i| g.ts(i) as f64 / 1000.0).collect()),
        "pi" => Val::Scalar(vec![std::f64::consts::PI; n]),
        "min_of" | "max_of" => {
            let a = ev.eval_scalar(&c.args[0], g)?;
            let b = ev.eval_scalar(&c.args[1], g)?;
            let f = if c.name == "min_of" { go_min } else { go_max };
            Val::Scalar(a.into_iter().zip(b).map(|(a, b)| f(a, b)).collect())
        }
        "vector" => {
            let s = ev.eval_scalar(&c.args[0], g)?;
            Val::Vector(
                s.into_iter()
                    .map(|f| {
                        vec![Sample {
                            labels: Labels::default(),
                            f,
                            h: None,
                            drop_name: false,
                        }]
                    })
                    .collect(),
            )
        }
        "scalar" => {
            let v = ev.eval_vector(&c.args[0], g)?;
            Val::Scalar(
                v.iter()
                    .map(|vec| {
                        let mut floats = vec.iter().filter(|s| s.h.is_none());
                        match (floats.next(), floats.next()) {
                            (Some(s), None) => s.f,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            )
        }
        "timestamp" => {
            let steps = match &c.args[0] {
                Node::Vector(sel) => ev.eval_vector_selector(sel, g, true)?,
                other => {
                    let mut v = ev.eval_vector(other, g)?;
                    for (i, vec) in v.iter_mut().enumerate() {
                        for s in vec.iter_mut() {
                            s.f = g.ts(i) as f64 / 1000.0;
                            s.h = None;
                        }
                    }
                    v
                }
            };
            let steps = steps
                .into_iter()
                .map(|v| {
                    v.into_iter()
                        .map(|mut s| {
                            s.drop_name = true;
                            s
                        })
                        .collect()
                })
                .collect();
            Val::Vector(steps)
        }
        "label_replace" => label_replace(ev, c, g)?,
        "label_join" => label_join(ev, c, g)?,
        "absent" => {
            let v = ev.eval_vector(&c.args[0], g)?;
            let labels = absent_labels(&c.args[0]);
            Val::Vector(
                v.into_iter()
                    .map(|vec| {
                        if vec.is_empty() {
                            vec![Sample {
                                labels: labels.clone(),
                                f: 1.0,
                                h: None,
                                drop_name: false,
                            }]
                        } else {
                            Vec::new()
                        }
                    })
                    .collect(),
            )
        }
        "sort" | "sort_desc" => {
            let desc = c.name == "sort_desc";
            let mut v = ev.eval_vector(&c.args[0], g)?;
            for vec in v.iter_mut() {
                vec.retain(|s| s.h.is_none());
                vec.sort_by(|a, b| sort_cmp(a.f, b.f, desc));
            }
            Val::Vector(v)
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let desc = c.name == "sort_by_label_desc";
            let names: Vec<String> = (1..c.args.len())
                .map(|i| string_arg(c, i).map(str::to_string))
                .collect::<Result<_, _>>()?;
            let mut v = ev.eval_vector(&c.args[0], g)?;
            for vec in v.iter_mut() {
                vec.sort_by(|a, b| {
                    for name in &names {
                        let x = a.labels.get(name).unwrap_or("");
                        let y = b.labels.get(name).unwrap_or("");
                        if x == y {
                            continue;
                        }
                        let o = natural_cmp(x, y);
                        return if desc { o.reverse() } else { o };
                    }
                    let o = a.labels.cmp(&b.labels);
                    if desc { o.reverse() } else { o }
                });
            }
            Val::Vector(v)
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let v = ev.eval_vector(&c.args[0], g)?;
            let (lo, hi) = match c.name {
                "clamp" => (
                    scalar_arg(ev, c, 1, g)?.unwrap_or_default(),
                    scalar_arg(ev, c, 2, g)?.unwrap_or_default(),
                ),
                "clamp_min" => (
                    scalar_arg(ev, c, 1, g)?.unwrap_or_default(),
                    vec![f64::INFINITY; n],
                ),
                _ => (
                    vec![f64::NEG_INFINITY; n],
                    scalar_arg(ev, c, 1, g)?.unwrap_or_default(),
                ),
            };
            let mut out = Vec::with_capacity(n);
            for (i, vec) in v.into_iter().enumerate() {
                let (lo, hi) = (
                    lo.get(i).copied().unwrap_or(f64::NAN),
                    hi.get(i).copied().unwrap_or(f64::NAN),
                );
                if hi < lo {
                    out.push(Vec::new());
                    continue;
                }
                out.push(
                    vec.into_iter()
                        .filter(|s| s.h.is_none())
                        .map(|mut s| {
                            s.f = go_max(lo, go_min(hi, s.f));
                            s.drop_name = true;
                            s
                        })
                        .collect(),
                );
            }
            Val::Vector(out)
        }
        "round" => {
            let v = ev.eval_vector(&c.args[0], g)?;
            let to = scalar_arg(ev, c, 1, g)?;
            let mut out = Vec::with_capacity(n);
            for (i, vec) in v.into_iter().enumerate() {
                let to_nearest = to.as_ref().and_then(|t| t.get(i).copied()).unwrap_or(1.0);
                let inv = 1.0 / to_nearest;
                out.push(float_map(vec, |f| (f * inv + 0.5).floor() / inv));
            }
            Val::Vector(out)
        }
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => date_function(ev, c, g)?,
        "histogram_quantile"
        | "histogram_fraction"
        | "histogram_count"
        | "histogram_sum"
        | "histogram_avg"
        | "histogram_stddev"
        | "histogram_stdvar"
        | "histogram_quantiles" => histograms::eval(ev, c, g)?,
        name => {
            let Some(f) = simple_math(name) else {
                return Err(QueryError::exec(format!(
                    "function {name:?} is not supported"
                )));
            };
            let v = ev.eval_vector(&c.args[0], g)?;
            Val::Vector(v.into_iter().map(|vec| float_map(vec, f)).collect())
        }
    };
    if let Val::Vector(v) = &val {
        check_step_duplicates(v, g)?;
    }
    Ok(val)
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over numbers, +0 over -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over numbers, -0 over +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Ascending (or descending) with NaN last either way.
fn sort_cmp(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Equal);
            if desc { o.reverse() } else { o }
        }
    }
}

/// Natural order: digit runs compare as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let x = a[si..i].trim_start_matches('0');
            let y = b[sj..j].trim_start_matches('0');
            let o = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        } else {
            if ab[i] != bb[j] {
                return ab[i].cmp(&bb[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}

fn float_map(vec: Vector, f: impl Fn(f64) -> f64) -> Vector {
    vec.into_iter()
        .filter(|s| s.h.is_none())
        .map(|mut s| {
            s.f = f(s.f);
            s.drop_name = true;
            s
        })
        .collect()
}

fn simple_math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

/// Labels `absent()` reports: the equality matchers of a selector argument,
/// minus names matched more than once.
pub(crate) fn absent_labels(arg: &Node) -> Labels {
    let sel = match arg.unwrapped() {
        Node::Vector(s) => s,
        Node::Matrix { sel, .. } => sel,
        _ => return Labels::default(),
    };
    let Some(ms) = sel.matcher_sets.first() else {
        return Labels::default();
    };
    let mut lb = LabelsBuilder::default();
    let mut has: HashSet<&str> = HashSet::default();
    for m in ms {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && !has.contains(m.name.as_str()) {
            lb.set(m.name.as_str(), m.value.as_str());
            has.insert(&m.name);
        } else {
            lb.remove(&m.name);
        }
    }
    lb.build()
}

pub(crate) fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && !crate::position::has_raw_bytes(s)
}

/// Expands `$1`, `${1}`, `$name` in `template` with Go's rules (the longest
/// name wins; unknown groups expand to nothing).
fn expand(caps: &regex::Captures<'_>, template: &str) -> String {
    let mut out = String::new();
    caps.expand(template, &mut out);
    out
}

fn relabel_finish(steps: Vec<Vector>) -> Result<Vec<Vector>, QueryError> {
    for v in &steps {
        let mut seen = HashSet::with_capacity_and_hasher(v.len(), Default::default());
        for s in v {
            if !seen.insert(&s.labels) {
                return Err(duplicate_labelset());
            }
        }
    }
    Ok(steps)
}

fn label_replace(ev: &mut Evaluator<'_>, c: &Call, g: Grid) -> Result<Val, QueryError> {
    let dst = string_arg(c, 1)?.to_string();
    let repl = string_arg(c, 2)?.to_string();
    let src = string_arg(c, 3)?.to_string();
    let re_str = string_arg(c, 4)?;
    let re = regex::Regex::new(&format!("^(?s:{re_str})$")).map_err(|_| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {re_str}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let v = ev.eval_vector(&c.args[0], g)?;
    let mut out = Vec::with_capacity(v.len());
    for vec in v {
        let mut res = Vec::with_capacity(vec.len());
        for mut s in vec {
            let src_val = s.labels.get(&src).unwrap_or("").to_string();
            if let Some(caps) = re.captures(&src_val) {
                let value = expand(&caps, &repl);
                s.labels = set_label(&s.labels, &dst, &value);
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
            }
            res.push(s);
        }
        out.push(res);
    }
    Ok(Val::Vector(relabel_finish(out)?))
}

fn set_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut lb = crate::eval::builder_from(l);
    if value.is_empty() {
        lb.remove(name);
    } else {
        lb.set(name, value);
    }
    lb.build()
}

fn label_join(ev: &mut Evaluator<'_>, c: &Call, g: Grid) -> Result<Val, QueryError> {
    let dst = string_arg(c, 1)?.to_string();
    let sep = string_arg(c, 2)?.to_string();
    let mut srcs = Vec::new();
    for i in 3..c.args.len() {
        let s = string_arg(c, i)?;
        if !valid_label_name(s) {
            return Err(QueryError::exec(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s.to_string());
    }
    if !valid_label_name(&dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let v = ev.eval_vector(&c.args[0], g)?;
    let mut out = Vec::with_capacity(v.len());
    for vec in v {
        let mut res = Vec::with_capacity(vec.len());
        for mut s in vec {
            let joined = srcs
                .iter()
                .map(|n| s.labels.get(n).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&sep);
            s.labels = set_label(&s.labels, &dst, &joined);
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
            res.push(s);
        }
        out.push(res);
    }
    Ok(Val::Vector(relabel_finish(out)?))
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_part(name: &str, secs: i64) -> f64 {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let leap = if m > 2 && is_leap(y) { 1 } else { 0 };
            (CUM[(m - 1) as usize] + d + leap) as f64
        }
        _ => {
            // days_in_month
            const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            let extra = if m == 2 && is_leap(y) { 1 } else { 0 };
            (DAYS[(m - 1) as usize] + extra) as f64
        }
    }
}

fn date_function(ev: &mut Evaluator<'_>, c: &Call, g: Grid) -> Result<Val, QueryError> {
    let name = c.name;
    if c.args.is_empty() {
        return Ok(Val::Vector(
            (0..g.len())
                .map(|i| {
                    vec![Sample {
                        labels: Labels::default(),
                        f: date_part(name, g.ts(i).div_euclid(1000)),
                        h: None,
                        drop_name: false,
                    }]
                })
                .collect(),
        ));
    }
    let v = ev.eval_vector(&c.args[0], g)?;
    Ok(Val::Vector(
        v.into_iter()
            .map(|vec| {
                float_map(vec, |f| {
                    if !f.is_finite() || f.abs() > 1e15 {
                        return f64::NAN;
                    }
                    date_part(name, f.trunc() as i64)
                })
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free compensation equals Prometheus' branching
    /// `kahanSumInc` bit for bit, special values included.
    #[test]
    fn kahan_inc_matches_the_branching_form() {
        fn reference(inc: f64, sum: f64, c: f64) -> (f64, f64) {
            let t = sum + inc;
            let c = if t.is_infinite() {
                0.0
            } else if sum.abs() >= inc.abs() {
                c + ((sum - t) + inc)
            } else {
                c + ((inc - t) + sum)
            };
            (t, c)
        }
        let vals = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            1e-300,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.1,
            3.0e16,
            -7.5,
        ];
        let bits = |(a, b): (f64, f64)| (a.to_bits(), b.to_bits());
        for &inc in &vals {
            for &sum in &vals {
                for &c in &vals[..5] {
                    assert_eq!(
                        bits(kahan_inc(inc, sum, c)),
                        bits(reference(inc, sum, c)),
                        "inc {inc} sum {sum} c {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn dates() {
        // 2024-02-29 12:34:56 UTC
        let t = 1_709_210_096;
        assert_eq!(date_part("year", t), 2024.0);
        assert_eq!(date_part("month", t), 2.0);
        assert_eq!(date_part("day_of_month", t), 29.0);
        assert_eq!(date_part("days_in_month", t), 29.0);
        assert_eq!(date_part("day_of_year", t), 60.0);
        assert_eq!(date_part("day_of_week", t), 4.0);
        assert_eq!(date_part("hour", t), 12.0);
        assert_eq!(date_part("minute", t), 34.0);
        assert_eq!(date_part("year", -1), 1969.0);
    }

    #[test]
    fn go_min_max_special_cases() {
        assert_eq!(go_max(f64::NAN, f64::INFINITY), f64::INFINITY);
        assert_eq!(go_min(f64::NEG_INFINITY, f64::NAN), f64::NEG_INFINITY);
        assert!(go_max(f64::NAN, 3.0).is_nan());
        assert!(go_min(3.0, f64::NAN).is_nan());
        assert!(go_max(-0.0, 0.0).is_sign_positive());
        assert!(go_min(0.0, -0.0).is_sign_negative());
        assert_eq!(go_min(-2.0, -5.0), -5.0);
        assert_eq!(go_max(-2.0, -5.0), -2.0);
    }

    #[test]
    fn quantiles_interpolate() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(1.0, &mut v), 4.0);
        assert!(quantile(f64::NAN, &mut v).is_nan());
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("a2", "a10"), std::cmp::Ordering::Less);
        assert_eq!(natural_cmp("b", "a10"), std::cmp::Ordering::Greater);
    }
}
