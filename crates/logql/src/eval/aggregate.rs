//! Vector aggregations over one step's vector, with Prometheus' rules for
//! NaN and infinities.

use miru_model::Labels;

use super::StepVec;
use super::range::variance;
use super::select::group_labels;
use crate::HashMap;
use crate::syntax::ast::{Grouping, VectorOp};

fn key(labels: &Labels, g: Option<&Grouping>) -> Labels {
    match g {
        Some(g) => group_labels(labels, g),
        None => Labels::default(),
    }
}

/// Orders by value descending, NaN last.
fn desc(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.total_cmp(&a),
    }
}

fn asc(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.total_cmp(&b),
    }
}

pub(super) fn aggregate(
    op: VectorOp,
    param: Option<f64>,
    g: Option<&Grouping>,
    v: StepVec,
) -> StepVec {
    match op {
        VectorOp::Sort => {
            let mut v = v;
            v.sort_by(|a, b| asc(a.1, b.1));
            return v;
        }
        VectorOp::SortDesc => {
            let mut v = v;
            v.sort_by(|a, b| desc(a.1, b.1));
            return v;
        }
        _ => {}
    }
    // Groups in order of first appearance.
    let mut index: HashMap<Labels, usize> = HashMap::default();
    let mut groups: Vec<(Labels, StepVec)> = Vec::new();
    for (l, x) in v {
        let k = key(&l, g);
        let i = *index.entry(k.clone()).or_insert_with(|| {
            groups.push((k, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((l, x));
    }
    let mut out = Vec::with_capacity(groups.len());
    for (k, members) in groups {
        let vals = || members.iter().map(|m| m.1);
        let n = members.len() as f64;
        let value = match op {
            VectorOp::Sum => vals().sum(),
            VectorOp::Avg => vals().sum::<f64>() / n,
            VectorOp::Count => n,
            VectorOp::Min => vals().fold(f64::NAN, |m, x| if x < m || m.is_nan() { x } else { m }),
            VectorOp::Max => vals().fold(f64::NAN, |m, x| if x > m || m.is_nan() { x } else { m }),
            VectorOp::Stdvar => variance(vals()),
            VectorOp::Stddev => variance(vals()).sqrt(),
            VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk => {
                let k = param.unwrap_or(0.0).max(0.0) as usize;
                let mut m = members;
                if op == VectorOp::Bottomk {
                    m.sort_by(|a, b| asc(a.1, b.1));
                } else {
                    m.sort_by(|a, b| desc(a.1, b.1));
                }
                m.truncate(k);
                out.extend(m);
                continue;
            }
            VectorOp::Sort | VectorOp::SortDesc => continue,
        };
        out.push((k, value));
    }
    out
}
