//! Binary operators with Prometheus' vector matching and Loki's arithmetic
//! (a zero divisor gives NaN), and `label_replace`.

use miru_model::{Label, Labels};

use super::StepVec;
use crate::HashMap;
use crate::error::{QueryError, series_text};
use crate::syntax::ast::{BinOp, Card, VectorMatching};

/// `a op b`; for comparisons `Some(a)` if true and `None` if false, or
/// 1/0 when `as_bool`.
pub(super) fn scalar_op(op: BinOp, a: f64, b: f64, as_bool: bool) -> Option<f64> {
    let cmp = |ok: bool| {
        if as_bool {
            Some(if ok { 1.0 } else { 0.0 })
        } else {
            ok.then_some(a)
        }
    };
    match op {
        BinOp::Add => Some(a + b),
        BinOp::Sub => Some(a - b),
        BinOp::Mul => Some(a * b),
        BinOp::Div => Some(if b == 0.0 { f64::NAN } else { a / b }),
        BinOp::Mod => Some(if b == 0.0 { f64::NAN } else { a % b }),
        BinOp::Pow => Some(a.powf(b)),
        BinOp::Eq => cmp(a == b),
        BinOp::Neq => cmp(a != b),
        BinOp::Gt => cmp(a > b),
        BinOp::Gte => cmp(a >= b),
        BinOp::Lt => cmp(a < b),
        BinOp::Lte => cmp(a <= b),
        BinOp::Or | BinOp::And | BinOp::Unless => None,
    }
}

/// `vector op scalar` (or `scalar op vector` when `scalar_left`).
pub(super) fn vector_scalar(
    op: BinOp,
    as_bool: bool,
    v: StepVec,
    s: f64,
    scalar_left: bool,
) -> StepVec {
    v.into_iter()
        .filter_map(|(l, x)| {
            let (a, b) = if scalar_left { (s, x) } else { (x, s) };
            let r = scalar_op(op, a, b, as_bool)?;
            // A filtering comparison keeps the vector's own value.
            let r = if op.is_comparison() && !as_bool { x } else { r };
            Some((l, r))
        })
        .collect()
}

fn signature(l: &Labels, m: Option<&VectorMatching>) -> Vec<(String, String)> {
    l.iter()
        .filter(|x| match m {
            Some(m) if m.on => m.labels.iter().any(|n| **n == *x.name),
            Some(m) => !m.labels.iter().any(|n| **n == *x.name),
            None => true,
        })
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect()
}

fn result_labels(l: &Labels, one: &Labels, m: Option<&VectorMatching>) -> Labels {
    let card = m.map_or(Card::OneToOne, |m| m.card);
    let mut v: Vec<Label> = if card == Card::OneToOne {
        l.iter()
            .filter(|x| match m {
                Some(m) if m.on => m.labels.iter().any(|n| **n == *x.name),
                Some(m) => !m.labels.iter().any(|n| **n == *x.name),
                None => true,
            })
            .cloned()
            .collect()
    } else {
        l.as_slice().to_vec()
    };
    if let Some(m) = m {
        for name in &m.include {
            v.retain(|x| *x.name != **name);
            if let Some(val) = one.get(name).filter(|s| !s.is_empty()) {
                v.push(Label::new(name.as_str(), val));
            }
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Labels::from_sorted(v)
}

pub(super) fn vector_vector(
    op: BinOp,
    as_bool: bool,
    m: Option<&VectorMatching>,
    lhs: StepVec,
    rhs: StepVec,
) -> Result<StepVec, QueryError> {
    if op.is_set() {
        return Ok(set_op(op, m, lhs, rhs));
    }
    let card = m.map_or(Card::OneToOne, |m| m.card);
    let (many, one) = if card == Card::OneToMany {
        (rhs, lhs)
    } else {
        (lhs, rhs)
    };
    let mut one_sigs: HashMap<Vec<(String, String)>, usize> = HashMap::default();
    for (i, (l, _)) in one.iter().enumerate() {
        if one_sigs.insert(signature(l, m), i).is_some() {
            let side = if card == Card::OneToMany {
                "left"
            } else {
                "right"
            };
            return Err(QueryError::Execution(format!(
                "found duplicate series on the {side} hand-side of the operation: {}; many-to-many matching not allowed: matching labels must be unique on one side",
                series_text(l)
            )));
        }
    }
    let mut matched: HashMap<Vec<(String, String)>, ()> = HashMap::default();
    let mut inserted: HashMap<Labels, ()> = HashMap::default();
    let mut out = Vec::new();
    for (l, x) in &many {
        let sig = signature(l, m);
        let Some(&j) = one_sigs.get(&sig) else {
            continue;
        };
        let (ol, y) = &one[j];
        let (a, b) = if card == Card::OneToMany {
            (*y, *x)
        } else {
            (*x, *y)
        };
        let Some(mut v) = scalar_op(op, a, b, as_bool) else {
            continue;
        };
        if op.is_comparison() && !as_bool {
            v = a;
        }
        let rl = result_labels(l, ol, m);
        if card == Card::OneToOne {
            if matched.insert(sig, ()).is_some() {
                return Err(QueryError::Execution("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into()));
            }
        } else if inserted.insert(rl.clone(), ()).is_some() {
            return Err(QueryError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push((rl, v));
    }
    Ok(out)
}

fn set_op(op: BinOp, m: Option<&VectorMatching>, lhs: StepVec, rhs: StepVec) -> StepVec {
    let rsigs: HashMap<Vec<(String, String)>, ()> =
        rhs.iter().map(|(l, _)| (signature(l, m), ())).collect();
    match op {
        BinOp::And => lhs
            .into_iter()
            .filter(|(l, _)| rsigs.contains_key(&signature(l, m)))
            .collect(),
        BinOp::Unless => lhs
            .into_iter()
            .filter(|(l, _)| !rsigs.contains_key(&signature(l, m)))
            .collect(),
        _ => {
            let lsigs: HashMap<Vec<(String, String)>, ()> =
                lhs.iter().map(|(l, _)| (signature(l, m), ())).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|(l, _)| !lsigs.contains_key(&signature(l, m))),
            );
            out
        }
    }
}

pub(super) fn label_replace(
    v: StepVec,
    re: &regex::Regex,
    dst: &str,
    repl: &str,
    src: &str,
) -> Result<StepVec, QueryError> {
    let mut seen: HashMap<Labels, ()> = HashMap::default();
    let mut out = Vec::with_capacity(v.len());
    for (l, x) in v {
        let value = l.get(src).unwrap_or("");
        let nl = match re.captures(value) {
            Some(caps) => {
                let mut res = String::new();
                caps.expand(repl, &mut res);
                let mut labels: Vec<Label> =
                    l.iter().filter(|x| &*x.name != dst).cloned().collect();
                if !res.is_empty() {
                    labels.push(Label::new(dst, res));
                }
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                Labels::from_sorted(labels)
            }
            None => l,
        };
        if seen.insert(nl.clone(), ()).is_some() {
            return Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
        out.push((nl, x));
    }
    Ok(out)
}
