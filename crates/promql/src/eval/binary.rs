//! Binary operators: arithmetic, comparisons (with and without `bool`),
//! set operators, and vector matching (`on`/`ignoring`, `group_left/right`).

use crate::{HashMap, HashSet};
use std::sync::Arc;

use miru_model::{FloatHistogram, Labels, LabelsBuilder, METRIC_NAME};

use super::label_ids::{SignatureIds, StepMap, StepSet};
use super::rows::RowVisitor;
use super::{Evaluator, Grid, Sample, Val, Vector, check_step_duplicates};
use crate::QueryError;
use crate::histogram::{self as hist, HistError};
use crate::plan::{BinOp, Binary, Card, Matching, ValueType};

pub(crate) fn eval_binary(ev: &mut Evaluator<'_>, b: &Binary, g: Grid) -> Result<Val, QueryError> {
    let lt = b.lhs.value_type();
    let rt = b.rhs.value_type();
    match (lt, rt) {
        (ValueType::Scalar, ValueType::Scalar) => {
            let l = ev.eval_scalar(&b.lhs, g)?;
            let r = ev.eval_scalar(&b.rhs, g)?;
            Ok(Val::Scalar(
                l.iter()
                    .zip(r.iter())
                    .map(|(&a, &c)| scalar_binop(b.op, a, c))
                    .collect(),
            ))
        }
        (ValueType::Vector, ValueType::Scalar) => {
            let l = ev.eval_vector(&b.lhs, g)?;
            let r = ev.eval_scalar(&b.rhs, g)?;
            let out = vector_scalar(ev, b, l, &r, false);
            check_step_duplicates(&out, g)?;
            Ok(Val::Vector(out))
        }
        (ValueType::Scalar, ValueType::Vector) => {
            let l = ev.eval_scalar(&b.lhs, g)?;
            let r = ev.eval_vector(&b.rhs, g)?;
            let out = vector_scalar(ev, b, r, &l, true);
            check_step_duplicates(&out, g)?;
            Ok(Val::Vector(out))
        }
        (ValueType::Vector, ValueType::Vector) => {
            let l = ev.eval_vector(&b.lhs, g)?;
            let r = ev.eval_vector(&b.rhs, g)?;
            let mut out = Vec::with_capacity(l.len());
            let mut join = JoinState::default();
            for (lv, rv) in l.into_iter().zip(r) {
                ev.check()?;
                let v = match b.op {
                    BinOp::And | BinOp::Or | BinOp::Unless => set_op(b.op, &b.matching, lv, rv),
                    _ => vector_binop(ev, b, lv, rv, &mut join)?,
                };
                out.push(v);
            }
            check_step_duplicates(&out, g)?;
            Ok(Val::Vector(out))
        }
        _ => Err(QueryError::exec(format!(
            "binary operator {:?} not allowed on {} and {}",
            b.op.symbol(),
            lt.documented(),
            rt.documented()
        ))),
    }
}

pub(crate) fn scalar_binop(op: BinOp, l: f64, r: f64) -> f64 {
    let b = |x: bool| if x { 1.0 } else { 0.0 };
    match op {
        BinOp::Add => l + r,
        BinOp::Sub => l - r,
        BinOp::Mul => l * r,
        BinOp::Div => l / r,
        BinOp::Pow => l.powf(r),
        BinOp::Mod => go_fmod(l, r),
        BinOp::Atan2 => l.atan2(r),
        BinOp::Eq => b(l == r),
        BinOp::Ne => b(l != r),
        BinOp::Gt => b(l > r),
        BinOp::Lt => b(l < r),
        BinOp::Ge => b(l >= r),
        BinOp::Le => b(l <= r),
        BinOp::And | BinOp::Or | BinOp::Unless => f64::NAN,
    }
}

/// Go's `math.Mod` (sign of the dividend, NaN for a zero divisor), which
/// Rust's `%` matches for finite values.
fn go_fmod(l: f64, r: f64) -> f64 {
    l % r
}

/// What an element-wise operation produced.
struct ElemResult {
    f: f64,
    h: Option<Arc<FloatHistogram>>,
    keep: bool,
}

enum ElemNote {
    Info(String),
    Warn(String),
}

fn vector_elem_binop(
    op: BinOp,
    lf: f64,
    rf: f64,
    lh: Option<&Arc<FloatHistogram>>,
    rh: Option<&Arc<FloatHistogram>>,
) -> (Option<ElemResult>, Option<ElemNote>) {
    let incompatible = |l: &str, r: &str| {
        (
            None,
            Some(ElemNote::Info(format!(
                "incompatible sample types encountered for binary operator \"{}\": {l} {} {r}",
                op.symbol(),
                op.symbol()
            ))),
        )
    };
    let float = |f: f64, keep: bool| (Some(ElemResult { f, h: None, keep }), None);
    let histo = |h: FloatHistogram| {
        (
            Some(ElemResult {
                f: 0.0,
                h: Some(Arc::new(h)),
                keep: true,
            }),
            None,
        )
    };
    match (lh, rh) {
        (None, None) => match op {
            BinOp::Add => float(lf + rf, true),
            BinOp::Sub => float(lf - rf, true),
            BinOp::Mul => float(lf * rf, true),
            BinOp::Div => float(lf / rf, true),
            BinOp::Pow => float(lf.powf(rf), true),
            BinOp::Mod => float(go_fmod(lf, rf), true),
            BinOp::Atan2 => float(lf.atan2(rf), true),
            BinOp::Eq => float(lf, lf == rf),
            BinOp::Ne => float(lf, lf != rf),
            BinOp::Gt => float(lf, lf > rf),
            BinOp::Lt => float(lf, lf < rf),
            BinOp::Ge => float(lf, lf >= rf),
            BinOp::Le => float(lf, lf <= rf),
            BinOp::And | BinOp::Or | BinOp::Unless => (None, None),
        },
        (None, Some(h)) => match op {
            BinOp::Mul => histo(hist::compact(&hist::mul(h, lf))),
            _ => incompatible("float", "histogram"),
        },
        (Some(h), None) => match op {
            BinOp::Mul => histo(hist::compact(&hist::mul(h, rf))),
            BinOp::Div => histo(hist::compact(&hist::div(h, rf))),
            _ => incompatible("histogram", "float"),
        },
        (Some(a), Some(b)) => match op {
            BinOp::Add | BinOp::Sub => {
                let res = if op == BinOp::Add {
                    hist::add(a, b)
                } else {
                    hist::sub(a, b)
                };
                match res {
                    Ok(r) => {
                        let mut h = r.h;
                        if op == BinOp::Sub {
                            h.counter_reset_hint = miru_model::CounterResetHint::Gauge;
                        }
                        let what = if op == BinOp::Add {
                            "addition"
                        } else {
                            "subtraction"
                        };
                        let note = if r.counter_reset_collision {
                            Some(ElemNote::Warn(format!(
                                "conflicting counter resets during histogram {what}"
                            )))
                        } else if r.nhcb_reconciled {
                            Some(ElemNote::Info(format!(
                                "mismatched custom buckets were reconciled during {what}"
                            )))
                        } else {
                            None
                        };
                        // Prometheus returns the collision as an error of
                        // the element, which drops it.
                        if r.counter_reset_collision {
                            return (None, note);
                        }
                        let (res, _) = histo(hist::compact(&h));
                        (res, note)
                    }
                    Err(HistError::IncompatibleSchema) => (
                        None,
                        Some(ElemNote::Warn(format!(
                            "incompatible bucket layout encountered for binary operator {}",
                            op.symbol()
                        ))),
                    ),
                }
            }
            BinOp::Eq => (
                Some(ElemResult {
                    f: 0.0,
                    h: Some(Arc::clone(a)),
                    keep: hist::equals(a, b),
                }),
                None,
            ),
            BinOp::Ne => (
                Some(ElemResult {
                    f: 0.0,
                    h: Some(Arc::clone(a)),
                    keep: !hist::equals(a, b),
                }),
                None,
            ),
            _ => incompatible("histogram", "histogram"),
        },
    }
}

fn note(ev: &mut Evaluator<'_>, n: Option<ElemNote>, b: &Binary) {
    match n {
        Some(ElemNote::Info(m)) => ev.annos.info(m, b.pos),
        Some(ElemNote::Warn(m)) => ev.annos.warn(m, b.pos),
        None => {}
    }
}

fn vector_scalar(
    ev: &mut Evaluator<'_>,
    b: &Binary,
    vecs: Vec<Vector>,
    scalars: &[f64],
    swap: bool,
) -> Vec<Vector> {
    let mut out = Vec::with_capacity(vecs.len());
    for (v, &sv) in vecs.into_iter().zip(scalars.iter()) {
        let mut res = Vec::with_capacity(v.len());
        for mut s in v {
            if scalar_elem(ev, b, &mut s.f, &mut s.h, sv, swap) {
                if drops_name(b) {
                    s.drop_name = true;
                }
                res.push(s);
            }
        }
        out.push(res);
    }
    out
}

/// Whether a vector/scalar operation removes the metric name.
fn drops_name(b: &Binary) -> bool {
    b.op.changes_schema() || b.return_bool
}

/// Applies a vector/scalar operation to one sample in place; false when the
/// sample is filtered out (or has no result).
fn scalar_elem(
    ev: &mut Evaluator<'_>,
    b: &Binary,
    f: &mut f64,
    h: &mut Option<Arc<FloatHistogram>>,
    sv: f64,
    swap: bool,
) -> bool {
    // Two floats (nearly every sample): the outcome of the general path
    // below without its notes and histogram cases. A comparison keeps the
    // vector side's value (or gives 0/1 with `bool`).
    if h.is_none() && !b.op.is_set() {
        let (lf, rf) = if swap { (sv, *f) } else { (*f, sv) };
        let r = scalar_binop(b.op, lf, rf);
        if !b.op.is_comparison() {
            *f = r;
            return true;
        }
        if b.return_bool {
            *f = r;
            return true;
        }
        return r == 1.0;
    }
    let (lf, rf, lh, rh) = if swap {
        (sv, *f, None, h.as_ref())
    } else {
        (*f, sv, h.as_ref(), None)
    };
    let (r, n) = vector_elem_binop(b.op, lf, rf, lh, rh);
    // Prometheus keeps only info-level notes for vector/scalar pairs.
    if let Some(ElemNote::Info(_)) = &n {
        note(ev, n, b);
    }
    let Some(mut r) = r else { return false };
    if b.op.is_comparison() && swap {
        r.f = rf;
        r.h = h.clone();
    }
    if b.return_bool {
        r.f = if r.keep { 1.0 } else { 0.0 };
        r.h = None;
        r.keep = true;
    }
    if r.keep {
        *f = r.f;
        *h = r.h;
    }
    r.keep
}

/// A vector/scalar operation over a series-local vector side, one row at a
/// time (see [`super::rows`]).
pub(crate) fn scalar_side_rows(
    ev: &mut Evaluator<'_>,
    b: &Binary,
    g: Grid,
    visit: &mut RowVisitor<'_>,
) -> Result<(), QueryError> {
    let (vector, scalar, swap) = if b.lhs.value_type() == ValueType::Vector {
        (&b.lhs, &b.rhs, false)
    } else {
        (&b.rhs, &b.lhs, true)
    };
    let scalars = ev.eval_scalar(scalar, g)?;
    ev.eval_rows(vector, g, &mut |ev, row| {
        row.points.retain_mut(|p| {
            let sv = scalars.get(p.step as usize).copied().unwrap_or(f64::NAN);
            scalar_elem(ev, b, &mut p.f, &mut p.h, sv, swap)
        });
        if row.points.is_empty() {
            return Ok(());
        }
        row.drop_name |= drops_name(b);
        visit(ev, row)
    })
}

/// The join key of a series: the `on` labels, or all labels but the
/// `ignoring` ones and the metric name.
pub(crate) fn signature(l: &Labels, m: &Matching) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    for x in l.iter() {
        let keep = if m.on {
            m.labels.iter().any(|n| **n == *x.name)
        } else {
            &*x.name != METRIC_NAME && !m.labels.iter().any(|n| **n == *x.name)
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

fn set_op(op: BinOp, m: &Matching, lhs: Vector, rhs: Vector) -> Vector {
    match op {
        BinOp::And => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let right: HashSet<Vec<u8>> = rhs.iter().map(|s| signature(&s.labels, m)).collect();
            lhs.into_iter()
                .filter(|s| right.contains(&signature(&s.labels, m)))
                .collect()
        }
        BinOp::Or => {
            if lhs.is_empty() {
                return rhs;
            }
            if rhs.is_empty() {
                return lhs;
            }
            let left: HashSet<Vec<u8>> = lhs.iter().map(|s| signature(&s.labels, m)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels, m))),
            );
            out
        }
        _ => {
            if lhs.is_empty() || rhs.is_empty() {
                return lhs;
            }
            let right: HashSet<Vec<u8>> = rhs.iter().map(|s| signature(&s.labels, m)).collect();
            lhs.into_iter()
                .filter(|s| !right.contains(&signature(&s.labels, m)))
                .collect()
        }
    }
}

/// Go's `labels.Labels.String()`: `{a="1", b="2"}`, name included.
pub(crate) fn labels_string(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, x) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&x.name);
        s.push('=');
        s.push_str(&format!("{:?}", &*x.value));
    }
    s.push('}');
    s
}

/// Labels a join used to match: `on` keeps the listed ones, `ignoring`
/// drops them and the metric name.
fn match_labels(l: &Labels, m: &Matching) -> Labels {
    Labels::from_sorted(
        l.iter()
            .filter(|x| {
                let listed = m.labels.iter().any(|n| **n == *x.name);
                if m.on {
                    listed
                } else {
                    !listed && &*x.name != METRIC_NAME
                }
            })
            .cloned()
            .collect(),
    )
}

/// Result labels of matched pairs across the steps of one binary
/// operation, by the addresses of the operands' label allocations (kept
/// alive here, so the addresses cannot be reused): a series pair gets its
/// labels built once, and the result keeps one allocation from step to step.
#[derive(Default)]
struct LabelCache {
    by_ptr: HashMap<(usize, usize), (Labels, Labels, Labels)>,
}

impl LabelCache {
    fn get(&mut self, ls: &Labels, rs: &Labels, b: &Binary) -> Labels {
        let key = (
            ls.as_slice().as_ptr() as usize,
            rs.as_slice().as_ptr() as usize,
        );
        self.by_ptr
            .entry(key)
            .or_insert_with(|| (ls.clone(), rs.clone(), result_labels(ls, rs, b)))
            .2
            .clone()
    }
}

fn result_labels(ls: &Labels, rs: &Labels, b: &Binary) -> Labels {
    let m = &b.matching;
    let mut lb = super::builder_from(ls);
    if b.op.changes_schema() {
        lb.remove(METRIC_NAME);
        lb.remove("__type__");
        lb.remove("__unit__");
    }
    if m.card == Card::OneToOne {
        if m.on {
            let keep: Vec<(std::sync::Arc<str>, std::sync::Arc<str>)> = ls
                .iter()
                .filter(|x| m.labels.iter().any(|n| **n == *x.name))
                .filter(|x| {
                    !(b.op.changes_schema()
                        && matches!(&*x.name, "__name__" | "__type__" | "__unit__"))
                })
                .map(|x| (Arc::clone(&x.name), Arc::clone(&x.value)))
                .collect();
            lb = LabelsBuilder::with_capacity(keep.len());
            for (n, v) in keep {
                lb.set(n, v);
            }
        } else {
            for n in &m.labels {
                lb.remove(n);
            }
        }
    }
    for n in &m.include {
        match rs.get(n) {
            Some(v) if !v.is_empty() => lb.set(n.as_str(), v),
            _ => lb.remove(n),
        }
    }
    lb.build()
}

/// What a vector/vector operation keeps from step to step: result labels
/// and signature ids per series (see [`super::label_ids`]), and its
/// per-step lookup tables.
#[derive(Default)]
struct JoinState {
    labels: LabelCache,
    sigs: SignatureIds,
    /// Index in the "one" side's vector by signature, this step.
    right: StepMap,
    /// Signatures matched this step (one-to-one).
    matched_one: StepSet,
}

fn vector_binop(
    ev: &mut Evaluator<'_>,
    b: &Binary,
    lhs: Vector,
    rhs: Vector,
    join: &mut JoinState,
) -> Result<Vector, QueryError> {
    let m = &b.matching;
    if (lhs.is_empty() && rhs.is_empty())
        || ((lhs.is_empty() || rhs.is_empty()) && m.fill_lhs.is_none() && m.fill_rhs.is_none())
    {
        return Ok(Vec::new());
    }
    // One-to-many is many-to-one with the sides swapped.
    let swapped = m.card == Card::OneToMany;
    let (lhs, rhs) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    // Prometheus does not swap the fill values with the sides: with
    // `group_right`, `fill_right` stands in for a missing "one" (left)
    // sample and `fill_left` for a missing "many" (right) one.
    let (fill_for_right, fill_for_left) = (m.fill_rhs, m.fill_lhs);
    let JoinState {
        labels: cache,
        sigs,
        right,
        matched_one,
    } = join;

    right.clear();
    for (i, rs) in rhs.iter().enumerate() {
        let sig = sigs.id(&rs.labels, m);
        if let Some(j) = right.get(sig) {
            let one_side = if swapped { "left" } else { "right" };
            let mut d1 = labels_string(&rs.labels);
            let mut d2 = labels_string(&rhs[j].labels);
            if d1 > d2 {
                std::mem::swap(&mut d1, &mut d2);
            }
            return Err(QueryError::exec(format!(
                "found duplicate series for the match group {} on the {one_side} hand-side of the operation: [{d1}, {d2}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels_string(&match_labels(&rs.labels, m))
            )));
        }
        right.insert(sig, i);
    }

    matched_one.clear();
    let mut matched_many: HashMap<u32, HashSet<Labels>> = HashMap::default();
    let mut out = Vec::new();

    // `cache` is only for pairs of real samples: a fill-in sample has new
    // labels at every step.
    let mut do_op = |ev: &mut Evaluator<'_>,
                     matched_one: &mut StepSet,
                     matched_many: &mut HashMap<u32, HashSet<Labels>>,
                     ls: &Sample,
                     rs: &Sample,
                     sig: u32,
                     out: &mut Vector,
                     cached: bool|
     -> Result<(), QueryError> {
        let (mut fl, mut fr, mut hl, mut hr) = (ls.f, rs.f, ls.h.as_ref(), rs.h.as_ref());
        if swapped {
            std::mem::swap(&mut fl, &mut fr);
            std::mem::swap(&mut hl, &mut hr);
        }
        let (r, n) = vector_elem_binop(b.op, fl, fr, hl, hr);
        note(ev, n, b);
        let Some(mut r) = r else { return Ok(()) };
        let labels = if cached {
            cache.get(&ls.labels, &rs.labels, b)
        } else {
            result_labels(&ls.labels, &rs.labels, b)
        };
        if m.card == Card::OneToOne {
            if !matched_one.insert(sig) {
                return Err(QueryError::exec(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
        } else if !matched_many.entry(sig).or_default().insert(labels.clone()) {
            return Err(QueryError::exec(
                "multiple matches for labels: grouping labels must ensure unique matches",
            ));
        }
        if b.return_bool {
            r.h = None;
            r.f = if r.keep { 1.0 } else { 0.0 };
        } else if !r.keep {
            return Ok(());
        }
        out.push(Sample {
            labels,
            f: r.f,
            h: r.h,
            drop_name: b.return_bool,
        });
        Ok(())
    };

    for ls in &lhs {
        let sig = sigs.id(&ls.labels, m);
        match right.get(sig) {
            Some(j) => do_op(
                ev,
                matched_one,
                &mut matched_many,
                ls,
                &rhs[j],
                sig,
                &mut out,
                true,
            )?,
            None => {
                if let Some(fill) = fill_for_right {
                    let rs = Sample {
                        labels: match_labels(&ls.labels, m),
                        f: fill,
                        h: None,
                        drop_name: false,
                    };
                    do_op(
                        ev,
                        matched_one,
                        &mut matched_many,
                        ls,
                        &rs,
                        sig,
                        &mut out,
                        false,
                    )?;
                }
            }
        }
    }
    if let Some(fill) = fill_for_left {
        for rs in &rhs {
            let sig = sigs.id(&rs.labels, m);
            let done = if m.card == Card::OneToOne {
                matched_one.contains(sig)
            } else {
                matched_many.get(&sig).is_some_and(|s| !s.is_empty())
            };
            if done {
                continue;
            }
            let ls = Sample {
                labels: match_labels(&rs.labels, m),
                f: fill,
                h: None,
                drop_name: false,
            };
            do_op(
                ev,
                matched_one,
                &mut matched_many,
                &ls,
                rs,
                sig,
                &mut out,
                false,
            )?;
        }
    }
    Ok(out)
}
