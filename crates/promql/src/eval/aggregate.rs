//! Aggregation operators (`sum`, `avg`, ..., `topk`, `count_values`).

use crate::HashMap;
use std::sync::Arc;

use miru_model::{FloatHistogram, Labels, METRIC_NAME};

use super::rows::streamable;
use super::{Evaluator, Grid, Sample, Val, Vector};
use crate::QueryError;
use crate::functions::kahan_inc;
use crate::histogram as hist;
use crate::plan::{Agg, AggOp, Node};

/// The grouping key of a series (`by`: the listed labels, `without`: all
/// but the listed ones and the metric name).
fn group_key(l: &Labels, grouping: &[String], without: bool) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    for x in l.iter() {
        let listed = grouping.iter().any(|g| **g == *x.name);
        let keep = if without {
            !listed && &*x.name != METRIC_NAME
        } else {
            listed
        };
        if keep {
            buf.extend_from_slice(x.name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(x.value.as_bytes());
            buf.push(0xfe);
        }
    }
    buf
}

fn group_labels(l: &Labels, grouping: &[String], without: bool) -> Labels {
    Labels::from_sorted(
        l.iter()
            .filter(|x| {
                let listed = grouping.iter().any(|g| **g == *x.name);
                if without {
                    !listed && &*x.name != METRIC_NAME
                } else {
                    listed
                }
            })
            .cloned()
            .collect(),
    )
}

/// Parameter values of `topk(k, ...)` / `quantile(q, ...)` per step, with
/// the summary Prometheus checks before evaluating.
struct Params {
    values: Vec<f64>,
    min: f64,
    max: f64,
    any_nan: bool,
}

fn params(ev: &mut Evaluator<'_>, p: Option<&Node>, g: Grid) -> Result<Params, QueryError> {
    let Some(p) = p else {
        return Ok(Params {
            values: vec![0.0; g.len()],
            min: 0.0,
            max: 0.0,
            any_nan: false,
        });
    };
    let values = ev.eval_scalar(p, g)?;
    let mut min = f64::MAX;
    let mut max = -f64::MAX;
    let mut any_nan = false;
    for &v in &values {
        // Go's math.Max/Min propagate NaN.
        max = if v.is_nan() || max.is_nan() {
            f64::NAN
        } else {
            max.max(v)
        };
        min = if v.is_nan() || min.is_nan() {
            f64::NAN
        } else {
            min.min(v)
        };
        any_nan |= v.is_nan();
    }
    Ok(Params {
        values,
        min,
        max,
        any_nan,
    })
}

pub(crate) fn eval_aggregation(
    ev: &mut Evaluator<'_>,
    a: &Agg,
    g: Grid,
) -> Result<Val, QueryError> {
    if a.op == AggOp::CountValues {
        return count_values(ev, a, g);
    }
    let p = params(ev, a.param.as_ref(), g)?;
    match a.op {
        AggOp::Topk | AggOp::Bottomk | AggOp::Limitk | AggOp::LimitRatio => {
            let input = ev.eval_vector(&a.expr, g)?;
            aggregate_k(ev, a, g, &p, input)
        }
        _ => {
            if a.op == AggOp::Quantile {
                if p.any_nan {
                    ev.annos.warn(
                        "quantile value should be between 0 and 1, got NaN",
                        a.param_pos,
                    );
                }
                if p.max > 1.0 {
                    ev.annos.warn(
                        format!(
                            "quantile value should be between 0 and 1, got {}",
                            crate::annotations::fmt_g(p.max)
                        ),
                        a.param_pos,
                    );
                }
                if p.min < 0.0 {
                    ev.annos.warn(
                        format!(
                            "quantile value should be between 0 and 1, got {}",
                            crate::annotations::fmt_g(p.min)
                        ),
                        a.param_pos,
                    );
                }
            }
            if ev.opts.series_at_a_time && streamable(&a.expr) {
                return aggregate_rows(ev, a, g, &p);
            }
            let input = ev.eval_vector(&a.expr, g)?;
            aggregate(ev, a, &p, input)
        }
    }
}

/// The groups of one aggregation fed by rows: one accumulator per step.
struct RowGroup {
    labels: Labels,
    /// (first step with a sample, ordinal of the first row with a sample
    /// at that step): the order in which the step-major model meets the
    /// group, which decides the order of each step's output vector.
    first: (u32, u32),
    steps: Vec<Group>,
}

/// [`aggregate`] over a series-local expression, consuming its rows as
/// they are produced: no per-step vectors of input samples, and the
/// grouping key computed once per series. Each (step, group) accumulator
/// sees the same samples in the same order as in the step-major model, so
/// the results are identical to the last bit.
fn aggregate_rows(ev: &mut Evaluator<'_>, a: &Agg, g: Grid, p: &Params) -> Result<Val, QueryError> {
    let n = g.len();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::default();
    let mut groups: Vec<RowGroup> = Vec::new();
    let mut ordinal: u32 = 0;
    ev.eval_rows(&a.expr, g, &mut |ev, row| {
        let key = group_key(&row.labels, &a.grouping, a.without);
        let gi = match index.get(&key) {
            Some(&i) => i,
            None => {
                // The per-step accumulators are output-sized memory.
                ev.count_samples(n)?;
                groups.push(RowGroup {
                    labels: group_labels(&row.labels, &a.grouping, a.without),
                    first: (u32::MAX, u32::MAX),
                    steps: (0..n).map(|_| Group::default()).collect(),
                });
                index.insert(key, groups.len() - 1);
                groups.len() - 1
            }
        };
        let rg = &mut groups[gi];
        if let Some(first) = row.points.first()
            && (first.step, ordinal) < rg.first
        {
            rg.first = (first.step, ordinal);
        }
        ordinal = ordinal.saturating_add(1);
        for pt in &row.points {
            let Some(gr) = rg.steps.get_mut(pt.step as usize) else {
                continue;
            };
            let s = Input {
                labels: &row.labels,
                f: pt.f,
                h: pt.h.as_ref(),
                drop_name: row.drop_name,
            };
            if !gr.seen {
                init_group(ev, a, gr, s);
                continue;
            }
            if gr.incompatible {
                continue;
            }
            if s.drop_name {
                gr.drop_name = true;
            }
            accumulate(ev, a, gr, s);
        }
        Ok(())
    })?;
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&gi| groups[gi].first);
    let mut out = Vec::with_capacity(n);
    for step in 0..n {
        ev.check()?;
        let q = p.values.get(step).copied().unwrap_or(f64::NAN);
        let mut res = Vec::new();
        for &gi in &order {
            let rg = &mut groups[gi];
            let gr = &mut rg.steps[step];
            if !gr.seen {
                continue;
            }
            gr.labels = rg.labels.clone();
            if let Some(s) = finish_group(ev, a, gr, q) {
                res.push(s);
            }
        }
        out.push(res);
    }
    Ok(Val::Vector(out))
}

#[derive(Default)]
struct Group {
    labels: Labels,
    seen: bool,
    f: f64,
    mean: f64,
    kahan: f64,
    count: f64,
    // Boxed: aggregations over rows keep one group per step.
    h: Option<Box<FloatHistogram>>,
    has_float: bool,
    has_hist: bool,
    incompatible: bool,
    incremental_mean: bool,
    values: Vec<f64>,
    drop_name: bool,
    reset_seen: bool,
    not_reset_seen: bool,
}

/// One input sample of an aggregation, borrowed from a step vector or a
/// row.
#[derive(Clone, Copy)]
struct Input<'s> {
    labels: &'s Labels,
    f: f64,
    h: Option<&'s Arc<FloatHistogram>>,
    drop_name: bool,
}

impl<'s> Input<'s> {
    fn of(s: &'s Sample) -> Self {
        Input {
            labels: &s.labels,
            f: s.f,
            h: s.h.as_ref(),
            drop_name: s.drop_name,
        }
    }
}

fn aggregate(
    ev: &mut Evaluator<'_>,
    a: &Agg,
    p: &Params,
    input: Vec<Vector>,
) -> Result<Val, QueryError> {
    let mut index: HashMap<Vec<u8>, usize> = HashMap::default();
    // Group of an input series by the address of its label allocation,
    // which most series keep from step to step (kept alive here, so the
    // address cannot be reused). Bounded, for inputs with new labels at
    // every step.
    let mut by_ptr: HashMap<usize, (Labels, usize)> = HashMap::default();
    let by_ptr_cap = input.first().map_or(0, Vec::len) * 2 + 1024;
    let mut groups: Vec<Group> = Vec::new();
    let mut out = Vec::with_capacity(input.len());
    for (step, vec) in input.into_iter().enumerate() {
        ev.check()?;
        for gr in groups.iter_mut() {
            gr.seen = false;
        }
        let q = p.values.get(step).copied().unwrap_or(f64::NAN);
        let mut order: Vec<usize> = Vec::new();
        for s in vec {
            let ptr = s.labels.as_slice().as_ptr() as usize;
            let gi = match by_ptr.get(&ptr) {
                Some(&(_, i)) => i,
                None => {
                    let key = group_key(&s.labels, &a.grouping, a.without);
                    let gi = match index.get(&key) {
                        Some(&i) => i,
                        None => {
                            groups.push(Group {
                                labels: group_labels(&s.labels, &a.grouping, a.without),
                                ..Default::default()
                            });
                            index.insert(key, groups.len() - 1);
                            groups.len() - 1
                        }
                    };
                    if by_ptr.len() < by_ptr_cap {
                        by_ptr.insert(ptr, (s.labels.clone(), gi));
                    }
                    gi
                }
            };
            let gr = &mut groups[gi];
            if !gr.seen {
                order.push(gi);
                init_group(ev, a, gr, Input::of(&s));
                continue;
            }
            if gr.incompatible {
                continue;
            }
            if s.drop_name {
                gr.drop_name = true;
            }
            accumulate(ev, a, gr, Input::of(&s));
        }
        order.sort_unstable();
        order.dedup();
        let mut res = Vec::with_capacity(order.len());
        for gi in order {
            let gr = &mut groups[gi];
            if !gr.seen {
                continue;
            }
            if let Some(s) = finish_group(ev, a, gr, q) {
                res.push(s);
            }
        }
        out.push(res);
    }
    Ok(Val::Vector(out))
}

fn track_hint(gr: &mut Group, h: &FloatHistogram) {
    match h.counter_reset_hint {
        miru_model::CounterResetHint::Reset => gr.reset_seen = true,
        miru_model::CounterResetHint::NotReset => gr.not_reset_seen = true,
        _ => {}
    }
}

fn init_group(ev: &mut Evaluator<'_>, a: &Agg, gr: &mut Group, s: Input<'_>) {
    let labels = std::mem::take(&mut gr.labels);
    *gr = Group {
        labels,
        seen: true,
        f: s.f,
        mean: s.f,
        count: 1.0,
        drop_name: s.drop_name,
        ..Default::default()
    };
    match a.op {
        AggOp::Sum | AggOp::Avg => match s.h {
            None => gr.has_float = true,
            Some(h) => {
                gr.h = Some(Box::new((**h).clone()));
                gr.has_hist = true;
                track_hint(gr, h);
            }
        },
        AggOp::Stddev | AggOp::Stdvar => {
            if s.h.is_some() {
                gr.seen = false;
                ev.annos.info(
                    format!("ignored histogram in {} aggregation", a.op.name()),
                    a.expr_pos,
                );
            } else if s.f.is_nan() || s.f.is_infinite() {
                gr.f = f64::NAN;
            } else {
                gr.f = 0.0;
            }
        }
        AggOp::Quantile => {
            if s.h.is_some() {
                gr.seen = false;
                ev.annos
                    .info("ignored histogram in quantile aggregation", a.expr_pos);
            }
            gr.values = vec![s.f];
        }
        AggOp::Group => gr.f = 1.0,
        AggOp::Min | AggOp::Max if s.h.is_some() => {
            gr.seen = false;
            ev.annos.info(
                format!("ignored histogram in {} aggregation", a.op.name()),
                a.expr_pos,
            );
        }
        _ => {}
    }
}

fn mixed_schema_warning(ev: &mut Evaluator<'_>, a: &Agg, s: Input<'_>) {
    ev.annos.warn(
        format!(
            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
            s.labels.get(METRIC_NAME).unwrap_or("")
        ),
        a.expr_pos,
    );
}

/// Adds a histogram sample to a `sum`/`avg` group.
fn add_histogram(
    ev: &mut Evaluator<'_>,
    a: &Agg,
    gr: &mut Group,
    s: Input<'_>,
    h: &Arc<FloatHistogram>,
) {
    gr.has_hist = true;
    let Some(acc) = gr.h.take() else { return };
    track_hint(gr, h);
    match hist::add(&acc, h) {
        Ok(r) => {
            if r.nhcb_reconciled {
                ev.annos.info(
                    "mismatched custom buckets were reconciled during aggregation",
                    a.expr_pos,
                );
            }
            gr.h = Some(Box::new(r.h));
        }
        Err(_) => {
            gr.h = Some(acc);
            mixed_schema_warning(ev, a, s);
            gr.incompatible = true;
        }
    }
}

fn accumulate(ev: &mut Evaluator<'_>, a: &Agg, gr: &mut Group, s: Input<'_>) {
    match a.op {
        AggOp::Sum => match s.h {
            Some(h) => add_histogram(ev, a, gr, s, h),
            None => {
                gr.has_float = true;
                (gr.f, gr.kahan) = kahan_inc(s.f, gr.f, gr.kahan);
            }
        },
        AggOp::Avg => {
            gr.count += 1.0;
            match s.h {
                Some(h) => add_histogram(ev, a, gr, s, h),
                None => {
                    gr.has_float = true;
                    if !gr.incremental_mean {
                        let (nv, nc) = kahan_inc(s.f, gr.f, gr.kahan);
                        if !nv.is_infinite() {
                            gr.f = nv;
                            gr.kahan = nc;
                            return;
                        }
                        gr.incremental_mean = true;
                        gr.mean = gr.f / (gr.count - 1.0);
                        gr.kahan /= gr.count - 1.0;
                    }
                    let q = (gr.count - 1.0) / gr.count;
                    (gr.mean, gr.kahan) = kahan_inc(s.f / gr.count, q * gr.mean, q * gr.kahan);
                }
            }
        }
        AggOp::Group => {}
        AggOp::Max => {
            if s.h.is_some() {
                ev.annos
                    .info("ignored histogram in max aggregation", a.expr_pos);
                return;
            }
            if gr.f < s.f || gr.f.is_nan() {
                gr.f = s.f;
            }
        }
        AggOp::Min => {
            if s.h.is_some() {
                ev.annos
                    .info("ignored histogram in min aggregation", a.expr_pos);
                return;
            }
            if gr.f > s.f || gr.f.is_nan() {
                gr.f = s.f;
            }
        }
        AggOp::Count => gr.count += 1.0,
        AggOp::Stddev | AggOp::Stdvar => {
            if s.h.is_none() {
                gr.count += 1.0;
                let delta = s.f - gr.mean;
                gr.mean += delta / gr.count;
                gr.f += delta * (s.f - gr.mean);
            } else {
                ev.annos.info(
                    format!("ignored histogram in {} aggregation", a.op.name()),
                    a.expr_pos,
                );
            }
        }
        AggOp::Quantile => {
            if s.h.is_some() {
                ev.annos
                    .info("ignored histogram in quantile aggregation", a.expr_pos);
                return;
            }
            gr.values.push(s.f);
        }
        _ => {}
    }
}

fn finish_group(ev: &mut Evaluator<'_>, a: &Agg, gr: &mut Group, q: f64) -> Option<Sample> {
    let mut h_out = None;
    let f = match a.op {
        AggOp::Avg | AggOp::Sum => {
            if gr.has_float && gr.has_hist {
                ev.annos.warn(
                    "encountered a mix of histograms and floats for aggregation",
                    a.expr_pos,
                );
                return None;
            }
            if gr.incompatible {
                return None;
            }
            if gr.has_hist {
                let mut h = gr.h.take().map(|h| *h).unwrap_or_default();
                if a.op == AggOp::Avg {
                    h = hist::scale(&h, 1.0 / gr.count);
                }
                h_out = Some(Arc::new(hist::compact(&h)));
                0.0
            } else if a.op == AggOp::Sum {
                gr.f + gr.kahan
            } else if gr.incremental_mean {
                gr.mean + gr.kahan
            } else {
                gr.f / gr.count + gr.kahan / gr.count
            }
        }
        AggOp::Count => gr.count,
        AggOp::Stdvar => gr.f / gr.count,
        AggOp::Stddev => (gr.f / gr.count).sqrt(),
        AggOp::Quantile => crate::functions::quantile(q, &mut gr.values),
        _ => gr.f,
    };
    if gr.reset_seen && gr.not_reset_seen {
        ev.annos.warn(
            "conflicting counter resets during histogram aggregation",
            a.expr_pos,
        );
    }
    Some(Sample {
        labels: gr.labels.clone(),
        f,
        h: h_out,
        drop_name: gr.drop_name,
    })
}

/// Go's `container/heap` on a slice with a "less" order, so that ties are
/// resolved exactly as Prometheus' `topk`/`bottomk` resolve them.
fn heap_up(h: &mut [Sample], mut j: usize, less: &dyn Fn(&Sample, &Sample) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if i == j || !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [Sample], i0: usize, less: &dyn Fn(&Sample, &Sample) -> bool) {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        let j2 = j1 + 1;
        if j2 < n && less(&h[j2], &h[j1]) {
            j = j2;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn aggregate_k(
    ev: &mut Evaluator<'_>,
    a: &Agg,
    g: Grid,
    p: &Params,
    input: Vec<Vector>,
) -> Result<Val, QueryError> {
    let n = g.len();
    if a.op == AggOp::LimitRatio {
        if p.max == 0.0 && p.min == 0.0 {
            return Ok(Val::Vector(vec![Vec::new(); n]));
        }
        if p.any_nan {
            return Err(QueryError::exec("Ratio value is NaN"));
        }
        return Err(QueryError::exec("limit_ratio is not supported"));
    }
    if p.max < 1.0 {
        return Ok(Val::Vector(vec![Vec::new(); n]));
    }
    if p.any_nan {
        return Err(QueryError::exec("Parameter value is NaN"));
    }
    if p.min <= i64::MIN as f64 {
        return Err(QueryError::exec(format!(
            "Scalar value {} underflows int64",
            crate::annotations::fmt_g(p.min)
        )));
    }
    if p.max >= i64::MAX as f64 {
        return Err(QueryError::exec(format!(
            "Scalar value {} overflows int64",
            crate::annotations::fmt_g(p.max)
        )));
    }
    // Prometheus caps k by the number of input series over all steps.
    let mut distinct: crate::HashSet<&Labels> = crate::HashSet::default();
    for v in &input {
        for s in v {
            distinct.insert(&s.labels);
        }
    }
    let total_series = distinct.len() as i64;
    let top_less = |x: &Sample, y: &Sample| x.f.is_nan() || x.f < y.f;
    let bottom_less = |x: &Sample, y: &Sample| x.f.is_nan() || x.f > y.f;
    let less: &dyn Fn(&Sample, &Sample) -> bool = if a.op == AggOp::Bottomk {
        &bottom_less
    } else {
        &top_less
    };
    let mut out = Vec::with_capacity(n);
    let mut index: HashMap<Vec<u8>, usize> = HashMap::default();
    let mut ngroups = 0usize;
    for (step, vec) in input.iter().enumerate() {
        ev.check()?;
        let k = (p.values.get(step).copied().unwrap_or(0.0) as i64).min(total_series);
        if k < 1 {
            out.push(Vec::new());
            continue;
        }
        let k = k as usize;
        let mut heaps: Vec<Option<Vec<Sample>>> = Vec::new();
        for s in vec {
            let key = group_key(&s.labels, &a.grouping, a.without);
            let gi = *index.entry(key).or_insert_with(|| {
                ngroups += 1;
                ngroups - 1
            });
            if heaps.len() <= gi {
                heaps.resize_with(gi + 1, || None);
            }
            if s.h.is_some() && a.op != AggOp::Limitk {
                ev.annos.info(
                    format!("ignored histogram in {} aggregation", a.op.name()),
                    a.pos,
                );
                continue;
            }
            let heap = heaps[gi].get_or_insert_with(Vec::new);
            match a.op {
                AggOp::Limitk => {
                    if heap.len() < k {
                        heap.push(s.clone());
                    }
                }
                _ => {
                    if heap.len() < k {
                        heap.push(s.clone());
                        let j = heap.len() - 1;
                        heap_up(heap, j, less);
                    } else if (a.op == AggOp::Topk
                        && (heap[0].f < s.f || (heap[0].f.is_nan() && !s.f.is_nan())))
                        || (a.op == AggOp::Bottomk
                            && (heap[0].f > s.f || (heap[0].f.is_nan() && !s.f.is_nan())))
                    {
                        heap[0] = s.clone();
                        if k > 1 {
                            heap_down(heap, 0, less);
                        }
                    }
                }
            }
        }
        let mut res = Vec::new();
        for heap in heaps.into_iter().flatten() {
            let mut heap = heap;
            if a.op != AggOp::Limitk && heap.len() > 1 {
                // sort.Reverse of the heap order; Go sorts short slices
                // with insertion sort, which is stable.
                heap.sort_by(|x, y| {
                    if less(y, x) {
                        std::cmp::Ordering::Less
                    } else if less(x, y) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    }
                });
            }
            res.extend(heap);
        }
        out.push(res);
    }
    Ok(Val::Vector(out))
}

fn format_value(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

fn count_values(ev: &mut Evaluator<'_>, a: &Agg, g: Grid) -> Result<Val, QueryError> {
    let label = match a.param.as_ref().map(|p| p.unwrapped()) {
        Some(Node::Str(s)) => s.clone(),
        _ => return Err(QueryError::exec("count_values needs a string parameter")),
    };
    if !crate::functions::valid_label_name(&label) {
        return Err(QueryError::exec(format!(
            "invalid label name {}",
            crate::position::go_quote(&label)
        )));
    }
    let mut grouping = a.grouping.clone();
    if !a.without {
        grouping.push(label.clone());
        grouping.sort();
    }
    let input = ev.eval_vector(&a.expr, g)?;
    let mut out = Vec::with_capacity(input.len());
    for vec in input {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::default();
        let mut res: Vec<Sample> = Vec::new();
        for s in vec {
            let mut lb = super::builder_from(&s.labels);
            let v = match &s.h {
                Some(h) => hist::to_string(h),
                None => format_value(s.f),
            };
            lb.set(label.as_str(), v);
            let m = lb.build();
            let key = group_key(&m, &grouping, a.without);
            match index.get(&key) {
                Some(&i) => res[i].f += 1.0,
                None => {
                    index.insert(key, res.len());
                    res.push(Sample {
                        labels: group_labels(&m, &grouping, a.without),
                        f: 1.0,
                        h: None,
                        drop_name: false,
                    });
                }
            }
        }
        out.push(res);
    }
    super::check_step_duplicates(&out, g)?;
    Ok(Val::Vector(out))
}
