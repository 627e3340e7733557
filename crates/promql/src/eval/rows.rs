//! Series-at-a-time evaluation of series-local expressions.
//!
//! The evaluator's general model is step-major: one vector per step, each
//! sample carrying its label set. For expressions whose output series each
//! depend on one input series only — selectors, range functions such as
//! `rate`, and operators with a scalar on one side — the result can instead
//! be produced one series at a time, over all steps at once (VictoriaMetrics'
//! rollup model). An aggregation over such an expression consumes the rows
//! directly (`sum by (job) (rate(x[5m]))` never builds per-step vectors of
//! input samples), and every other consumer gets the same per-step vectors
//! as before through [`scatter`]: the row producers are the only
//! implementation of those nodes' semantics.

use std::sync::Arc;

use miru_model::{FloatHistogram, Labels};

use super::{Evaluator, Grid, Sample, Vector};
use crate::QueryError;
use crate::plan::{BinOp, Node, ValueType};

/// One output series: its values at the steps where it has one, in step
/// order.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub(crate) labels: Labels,
    pub(crate) drop_name: bool,
    pub(crate) points: Vec<Point>,
}

#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub(crate) step: u32,
    pub(crate) f: f64,
    pub(crate) h: Option<Arc<FloatHistogram>>,
}

/// Receives the rows of an expression in the order the step-major model
/// would list them within each step's vector.
pub(crate) type RowVisitor<'v> =
    dyn FnMut(&mut Evaluator<'_>, &mut Row) -> Result<(), QueryError> + 'v;

/// Whether `node` can be evaluated with [`Evaluator::eval_rows`].
pub(crate) fn streamable(node: &Node) -> bool {
    match node {
        Node::Vector(_) => true,
        Node::Call(c) => {
            c.name != "absent_over_time"
                && c.args.iter().any(|a| a.value_type() == ValueType::Matrix)
        }
        Node::Binary(b) => {
            if matches!(b.op, BinOp::And | BinOp::Or | BinOp::Unless) {
                return false;
            }
            match (b.lhs.value_type(), b.rhs.value_type()) {
                (ValueType::Vector, ValueType::Scalar) => streamable(&b.lhs),
                (ValueType::Scalar, ValueType::Vector) => streamable(&b.rhs),
                _ => false,
            }
        }
        _ => false,
    }
}

impl Evaluator<'_> {
    /// Evaluates a [`streamable`] node, one row per output series.
    pub(crate) fn eval_rows(
        &mut self,
        node: &Node,
        g: Grid,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), QueryError> {
        self.check()?;
        match node {
            Node::Vector(sel) => self.selector_rows(sel, g, false, visit),
            Node::Call(c) => crate::functions::range_function_rows(self, c, g, visit).map(|_| ()),
            Node::Binary(b) => super::binary::scalar_side_rows(self, b, g, visit),
            _ => Err(QueryError::exec(
                "BUG: expression cannot be evaluated by series",
            )),
        }
    }
}

/// Appends the points of `row` to the vectors of their steps.
pub(crate) fn scatter(row: &mut Row, out: &mut [Vector]) {
    for p in row.points.drain(..) {
        if let Some(v) = out.get_mut(p.step as usize) {
            v.push(Sample {
                labels: row.labels.clone(),
                f: p.f,
                h: p.h,
                drop_name: row.drop_name,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use miru_model::{FloatHistogram, Labels, STALE_NAN_BITS};
    use proptest::prelude::*;

    use crate::{Engine, EngineOptions, MemorySource, QueryContext, QueryResult};

    /// Aggregations whose input is streamable, over the shapes dashboards
    /// use; each must give the same answer both ways.
    const QUERIES: &[&str] = &[
        "sum by (job) (rate(m_total[3m]))",
        "avg by (job) (m_total)",
        "count without (instance) (m_total > 4)",
        "min by (job) (2 - m_total)",
        "max(m_total == bool 3)",
        "group by (job) (increase(m_total[5m]))",
        "stddev by (job) (m_total * 1e300)",
        "stdvar(max_over_time(m_total[2m]))",
        "quantile by (job) (0.3, last_over_time(m_total[4m]))",
        "sum by (__name__) (last_over_time({__name__=~\"m_total|h\"}[4m]))",
        "avg by (job) (sum_over_time(h[3m]))",
        "sum(h * 2)",
        "count by (job) (predict_linear(m_total[5m], 60) < 10)",
        "sum by (job) (rate(m_total[3m] offset 2m))",
        "quantile(time() / 1000, m_total)",
        // Ties broken by input order: the groups' order must match too.
        "bottomk(1, count by (job) (m_total))",
        "topk(2, group by (job) (m_total))",
    ];

    fn run(
        src: &MemorySource,
        series_at_a_time: bool,
        parallelism: usize,
        q: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> String {
        let e = Engine::new(EngineOptions {
            series_at_a_time,
            parallelism,
            ..EngineOptions::default()
        });
        let ctx = QueryContext::default();
        // Debug output prints floats exactly (NaN and -0.0 included). The
        // sample counts differ by design: per-group accumulators count too.
        let show = |r: Result<QueryResult, crate::QueryError>| {
            format!(
                "{:?}",
                r.map(|r| QueryResult {
                    samples_scanned: 0,
                    ..r
                })
            )
        };
        let range = show(e.range(src, q, start, end, step, &ctx));
        let instant = show(e.instant(src, q, end, &ctx));
        format!("{range}\n{instant}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn series_at_a_time_equals_step_major(
            samples in proptest::collection::vec(
                (0usize..6, 0i64..40, prop_oneof![
                    8 => 0.0f64..10.0,
                    1 => Just(f64::NAN),
                    1 => Just(f64::INFINITY),
                    1 => Just(f64::from_bits(STALE_NAN_BITS)),
                    1 => Just(-1.0),
                ], any::<bool>()),
                0..160,
            ),
            start in 0i64..20,
            steps in 1i64..12,
            step in 1i64..4,
        ) {
            let mut src = MemorySource::new();
            let mut totals = [0.0f64; 6];
            for (series, t, v, hist) in samples {
                let job = ["a", "b", "c"][series % 3];
                let labels = Labels::from_pairs([
                    ("__name__", "m_total".to_string()),
                    ("instance", format!("i{series}")),
                    ("job", job.to_string()),
                ]);
                if hist && series < 2 {
                    let labels = Labels::from_pairs([("__name__", "h"), ("job", job)]);
                    totals[series] += v.abs().min(1e6);
                    let h = FloatHistogram {
                        count: totals[series],
                        sum: v,
                        ..Default::default()
                    };
                    src.add_histogram(&labels, t * 30_000, std::sync::Arc::new(h));
                } else {
                    src.add_float(&labels, t * 30_000, v);
                }
            }
            let start = start * 30_000;
            let end = start + steps * step * 30_000;
            for q in QUERIES {
                let rows = run(&src, true, 1, q, start, end, step * 30_000);
                let steps = run(&src, false, 1, q, start, end, step * 30_000);
                prop_assert_eq!(&rows, &steps, "query {}", q);
                // Range functions spread over threads (tiny rounds in
                // tests, so several rounds and workers are exercised).
                let threads = run(&src, true, 3, q, start, end, step * 30_000);
                prop_assert_eq!(&rows, &threads, "query {} on 3 threads", q);
            }
        }
    }
}
