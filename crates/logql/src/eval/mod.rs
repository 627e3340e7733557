//! Evaluation: log queries (`logs.rs`) and metric queries, which are
//! evaluated step by step — range aggregations read the source once for
//! all steps (`select.rs`, `range.rs`), then vector aggregations
//! (`aggregate.rs`) and binary operators (`binary.rs`) work on one step's
//! vector at a time.

mod aggregate;
mod binary;
mod logs;
mod range;
mod select;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use miru_model::Labels;

use crate::HashMap;
use crate::error::QueryError;
use crate::source::LogSource;
use crate::syntax::ast::{Expr, MetricExpr, VectorOp};
use crate::syntax::parse;
use crate::value::{Sample, Series, Value};

pub use logs::{Direction, LogQuery};

/// One step's vector: (labels, value).
pub(crate) type StepVec = Vec<(Labels, f64)>;

/// Bounds of one engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Series a metric query may produce from the source.
    pub max_series: usize,
    /// Samples (metric queries) or entries (log queries) a query may read
    /// after filtering.
    pub max_samples: usize,
    /// Steps a range query may have.
    pub max_steps: usize,
    /// Threads a query may run its pipeline on (streams split among
    /// them); 0 = one per core.
    pub parallelism: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            max_series: 500_000,
            max_samples: 50_000_000,
            max_steps: 11_000,
            parallelism: 0,
        }
    }
}

/// Per-query state from the caller.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    /// Set to stop the query (client gone, deadline passed).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl QueryContext {
    fn check(&self) -> Result<(), QueryError> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(QueryError::Canceled);
        }
        Ok(())
    }
}

/// A metric query's time range: evaluation times `start, start+step, ..
/// <= end` (an instant query has one).
#[derive(Debug, Clone, Copy)]
pub struct MetricQuery {
    pub start_ns: i64,
    pub end_ns: i64,
    pub step_ns: i64,
}

pub(crate) struct Steps {
    pub(crate) start: i64,
    pub(crate) end: i64,
    step: i64,
}

impl Steps {
    pub(crate) fn count(&self) -> usize {
        if self.step <= 0 {
            return 1;
        }
        usize::try_from(self.end.saturating_sub(self.start) / self.step)
            .map_or(usize::MAX, |n| n.saturating_add(1))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.count()).map(|i| {
            self.start
                .saturating_add((i as i64).saturating_mul(self.step.max(0)))
        })
    }
}

pub(crate) struct Budget {
    series: usize,
    samples: usize,
    opts: EngineOptions,
}

impl Budget {
    pub(crate) fn add_series(&mut self, n: usize) -> Result<(), QueryError> {
        self.series += n;
        if self.series > self.opts.max_series {
            return Err(QueryError::TooManySeries {
                limit: self.opts.max_series,
            });
        }
        Ok(())
    }

    pub(crate) fn parallelism(&self) -> usize {
        self.opts.parallelism
    }

    /// Samples the query may still read before its limit.
    pub(crate) fn samples_left(&self) -> usize {
        self.opts.max_samples.saturating_sub(self.samples)
    }

    pub(crate) fn add_samples(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples += n;
        if self.samples > self.opts.max_samples {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        Ok(())
    }
}

/// An evaluated metric node.
enum Val {
    Scalar(f64),
    Vector(Vec<StepVec>),
}

/// The LogQL engine; cheap to share.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    fn budget(&self) -> Budget {
        Budget {
            series: 0,
            samples: 0,
            opts: self.opts.clone(),
        }
    }

    /// A metric query at one time: a vector or a scalar.
    pub fn instant(
        &self,
        src: &dyn LogSource,
        query: &str,
        t_ns: i64,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        self.metric(
            src,
            query,
            MetricQuery {
                start_ns: t_ns,
                end_ns: t_ns,
                step_ns: 0,
            },
            ctx,
        )
    }

    /// A metric query over a range: a matrix (a scalar expression gives
    /// one series without labels).
    pub fn range(
        &self,
        src: &dyn LogSource,
        query: &str,
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        if step_ns <= 0 {
            return Err(QueryError::Invalid(
                "zero or negative query resolution step widths are not accepted".into(),
            ));
        }
        self.metric(
            src,
            query,
            MetricQuery {
                start_ns,
                end_ns,
                step_ns,
            },
            ctx,
        )
    }

    fn metric(
        &self,
        src: &dyn LogSource,
        query: &str,
        q: MetricQuery,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        let Expr::Metric(expr) = parse(query)? else {
            return Err(QueryError::Invalid(
                "log queries are not supported as metric queries; use Engine::logs".into(),
            ));
        };
        self.eval_metric(src, &expr, q, ctx)
    }

    /// Evaluates a parsed metric expression.
    pub fn eval_metric(
        &self,
        src: &dyn LogSource,
        expr: &MetricExpr,
        q: MetricQuery,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        let instant = q.step_ns <= 0;
        if q.end_ns < q.start_ns {
            return Err(QueryError::Invalid(
                "end timestamp must not be before start time".into(),
            ));
        }
        let steps = Steps {
            start: q.start_ns,
            end: q.end_ns,
            step: q.step_ns,
        };
        if steps.count() > self.opts.max_steps {
            return Err(QueryError::Invalid(format!(
                "exceeded maximum resolution of {} points per timeseries. Try increasing the value of the step parameter",
                self.opts.max_steps
            )));
        }
        let mut budget = self.budget();
        let v = self.eval(src, expr, &steps, instant, ctx, &mut budget)?;
        Ok(match v {
            Val::Scalar(s) if instant => Value::Scalar {
                t_ns: q.start_ns,
                v: s,
            },
            Val::Scalar(s) => Value::Matrix(vec![Series {
                labels: Labels::default(),
                points: steps.iter().map(|t| (t, s)).collect(),
            }]),
            Val::Vector(mut per_step) if instant => {
                let v = per_step.pop().unwrap_or_default();
                let mut out: Vec<Sample> = v
                    .into_iter()
                    .map(|(labels, v)| Sample {
                        labels,
                        t_ns: q.start_ns,
                        v,
                    })
                    .collect();
                if !matches!(
                    expr,
                    MetricExpr::Vector {
                        op: VectorOp::Sort | VectorOp::SortDesc,
                        ..
                    }
                ) && !is_sorted_result(expr)
                {
                    out.sort_by(|a, b| a.labels.cmp(&b.labels));
                }
                Value::Vector(out)
            }
            Val::Vector(per_step) => {
                let mut series: HashMap<Labels, Vec<(i64, f64)>> = HashMap::default();
                for (t, vec) in steps.iter().zip(per_step) {
                    for (l, v) in vec {
                        series.entry(l).or_default().push((t, v));
                    }
                }
                let mut out: Vec<Series> = series
                    .into_iter()
                    .map(|(labels, points)| Series { labels, points })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
        })
    }

    fn eval(
        &self,
        src: &dyn LogSource,
        e: &MetricExpr,
        steps: &Steps,
        instant: bool,
        ctx: &QueryContext,
        budget: &mut Budget,
    ) -> Result<Val, QueryError> {
        ctx.check()?;
        Ok(match e {
            MetricExpr::Literal(v) => Val::Scalar(*v),
            MetricExpr::VectorLit(v) => Val::Vector(
                steps
                    .iter()
                    .map(|_| vec![(Labels::default(), *v)])
                    .collect(),
            ),
            MetricExpr::Range(agg) => Val::Vector(range::eval_range(src, agg, steps, ctx, budget)?),
            MetricExpr::Vector {
                op,
                param,
                inner,
                grouping,
            } => {
                if *op == VectorOp::ApproxTopk && !instant {
                    return Err(QueryError::Invalid(
                        "approx_topk is only supported on instant queries".into(),
                    ));
                }
                let Val::Vector(v) = self.eval(src, inner, steps, instant, ctx, budget)? else {
                    return Err(QueryError::Invalid(
                        "vector aggregation needs a vector".into(),
                    ));
                };
                let mut out = Vec::with_capacity(v.len());
                for step in v {
                    out.push(aggregate::aggregate(*op, *param, grouping.as_ref(), step));
                }
                Val::Vector(out)
            }
            MetricExpr::Binary {
                op,
                return_bool,
                matching,
                lhs,
                rhs,
            } => {
                let l = self.eval(src, lhs, steps, instant, ctx, budget)?;
                let r = self.eval(src, rhs, steps, instant, ctx, budget)?;
                match (l, r) {
                    (Val::Scalar(a), Val::Scalar(b)) => {
                        Val::Scalar(binary::scalar_op(*op, a, b, true).unwrap_or(f64::NAN))
                    }
                    (Val::Vector(a), Val::Scalar(b)) => Val::Vector(
                        a.into_iter()
                            .map(|v| binary::vector_scalar(*op, *return_bool, v, b, false))
                            .collect(),
                    ),
                    (Val::Scalar(a), Val::Vector(b)) => Val::Vector(
                        b.into_iter()
                            .map(|v| binary::vector_scalar(*op, *return_bool, v, a, true))
                            .collect(),
                    ),
                    (Val::Vector(a), Val::Vector(b)) => {
                        let mut out = Vec::with_capacity(a.len());
                        for (x, y) in a.into_iter().zip(b) {
                            out.push(binary::vector_vector(
                                *op,
                                *return_bool,
                                matching.as_ref(),
                                x,
                                y,
                            )?);
                        }
                        Val::Vector(out)
                    }
                }
            }
            MetricExpr::LabelReplace {
                inner,
                dst,
                replacement,
                src: src_label,
                regex,
            } => {
                let Val::Vector(v) = self.eval(src, inner, steps, instant, ctx, budget)? else {
                    return Err(QueryError::Invalid("label_replace needs a vector".into()));
                };
                let re = regex::Regex::new(&format!("^(?s:{regex})$")).map_err(|e| {
                    QueryError::Invalid(format!(
                        "invalid regular expression in label_replace(): {e}"
                    ))
                })?;
                let mut out = Vec::with_capacity(v.len());
                for step in v {
                    out.push(binary::label_replace(
                        step,
                        &re,
                        dst,
                        replacement,
                        src_label,
                    )?);
                }
                Val::Vector(out)
            }
        })
    }

    /// A log query: the streams of the selected lines after the pipeline.
    pub fn logs(
        &self,
        src: &dyn LogSource,
        query: &str,
        q: &LogQuery,
        ctx: &QueryContext,
    ) -> Result<Value, QueryError> {
        match parse(query)? {
            Expr::Log(log) => logs::eval_logs(src, &log, q, ctx, &mut self.budget()),
            Expr::Metric(_) => Err(QueryError::Invalid(
                "metric queries need Engine::instant or Engine::range".into(),
            )),
        }
    }
}

/// Whether the outermost operation orders the result (sort functions,
/// possibly under arithmetic with a scalar).
fn is_sorted_result(e: &MetricExpr) -> bool {
    match e {
        MetricExpr::Vector { op, .. } => matches!(op, VectorOp::Sort | VectorOp::SortDesc),
        MetricExpr::Binary { lhs, rhs, .. } => {
            (is_sorted_result(lhs) && rhs.is_scalar()) || (is_sorted_result(rhs) && lhs.is_scalar())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use miru_model::LogEntry;

    use super::*;
    use crate::memory::MemorySource;

    fn source() -> MemorySource {
        let mut src = MemorySource::new();
        let a = Labels::from_pairs([("app", "a")]);
        for (i, line) in ["level=info n=1", "level=error n=2", "level=error n=3"]
            .iter()
            .enumerate()
        {
            let entry = LogEntry {
                timestamp_ns: (i as i64 + 1) * 1_000_000_000,
                line: line.to_string(),
                structured_metadata: vec![("trace".into(), format!("t{i}"))],
            };
            src.push(&a, entry);
        }
        src
    }

    /// A source that counts the entries it hands out.
    struct Counting {
        inner: MemorySource,
        entries: std::sync::atomic::AtomicUsize,
    }

    impl LogSource for Counting {
        fn select(
            &self,
            req: &crate::source::SelectRequest<'_>,
        ) -> Result<crate::source::StreamIter<'_>, crate::source::SourceError> {
            let streams: Vec<_> = self.inner.select(req)?.collect::<Result<_, _>>()?;
            let n: usize = streams
                .iter()
                .map(|(_, e): &(Labels, Vec<LogEntry>)| e.len())
                .sum();
            self.entries.fetch_add(n, Ordering::Relaxed);
            Ok(Box::new(streams.into_iter().map(Ok)))
        }
    }

    #[test]
    fn log_queries_read_from_the_reading_end_and_stop_at_the_limit() {
        let mut inner = MemorySource::new();
        let per_stream = 6_400i64;
        for app in ["a", "b", "c"] {
            let l = Labels::from_pairs([("app", app)]);
            for k in 0..per_stream {
                inner.push(
                    &l,
                    LogEntry {
                        timestamp_ns: k * 1_000_000_000,
                        line: format!("app={app} n={k} rare={}", k == 3_000),
                        structured_metadata: Vec::new(),
                    },
                );
            }
        }
        let src = Counting {
            inner,
            entries: 0.into(),
        };
        let ctx = QueryContext::default();
        let run = |query: &str, direction: Direction, limit: usize| {
            src.entries.store(0, Ordering::Relaxed);
            let q = LogQuery {
                start_ns: 0,
                end_ns: per_stream * 1_000_000_000,
                limit,
                direction,
            };
            let Value::Streams(s) = Engine::default().logs(&src, query, &q, &ctx).unwrap() else {
                panic!("not streams");
            };
            let mut ts: Vec<i64> = s
                .iter()
                .flat_map(|s| s.entries.iter().map(|e| e.timestamp_ns / 1_000_000_000))
                .collect();
            ts.sort_unstable();
            (ts, src.entries.load(Ordering::Relaxed))
        };
        let all = 3 * per_stream as usize;
        // Newest 100 lines: the last 34 seconds of three streams, read from
        // the newest 1/64 of the range only.
        let (ts, read) = run(r#"{app=~".+"} | logfmt | n >= 0"#, Direction::Backward, 100);
        assert_eq!(ts.len(), 100);
        assert_eq!(ts[0], per_stream - 34);
        assert!(read * 32 < all, "read {read} of {all}");
        let (ts, read) = run(r#"{app=~".+"} | logfmt"#, Direction::Forward, 100);
        assert_eq!((ts.len(), ts[0], ts[99]), (100, 0, 33));
        assert!(read * 32 < all, "read {read} of {all}");
        // One line in 100: the first slice's matches say how far to read.
        let (ts, read) = run(r#"{app=~".+"} |~ "n=[0-9]*00 ""#, Direction::Backward, 100);
        assert_eq!((ts.len(), ts[0], ts[99]), (100, 3_000, 6_300));
        assert!(read * 3 < all * 2, "read {read} of {all}");
        // A filter that matches too few lines reads the whole range once.
        let (ts, read) = run(
            r#"{app=~".+"} | logfmt | rare="true""#,
            Direction::Backward,
            100,
        );
        assert_eq!(ts, vec![3_000, 3_000, 3_000]);
        assert_eq!(read, all);
    }

    /// Stream names and entry counts of uneven sizes, 40k entries in all:
    /// above the size at which a selection is split among threads.
    const UNEVEN_STREAMS: [(&str, i32); 7] = [
        ("a", 9_000),
        ("b", 1),
        ("c", 12_000),
        ("d", 500),
        ("e", 8_000),
        ("f", 6_000),
        ("g", 4_499),
    ];

    #[test]
    fn metric_queries_give_the_same_answer_on_any_number_of_threads() {
        let mut src = MemorySource::new();
        for &(app, n) in &UNEVEN_STREAMS {
            let l = Labels::from_pairs([
                ("app", app),
                ("env", if n % 2 == 0 { "prod" } else { "dev" }),
            ]);
            for k in 0..n {
                let line = if k % 997 == 0 {
                    format!("level=warn took=oops path=/x{}", k % 5)
                } else {
                    format!("level=info took={}ms path=/x{}", k % 89, k % 5)
                };
                src.push(
                    &l,
                    LogEntry {
                        timestamp_ns: i64::from(k) * 100_000_000,
                        line,
                        structured_metadata: Vec::new(),
                    },
                );
            }
        }
        let ctx = QueryContext::default();
        let run = |threads: usize, query: &str| {
            Engine::new(EngineOptions {
                parallelism: threads,
                ..EngineOptions::default()
            })
            .range(&src, query, 0, 1_200_000_000_000, 60_000_000_000, &ctx)
        };
        for query in [
            r#"sum by (path) (count_over_time({app=~".+"} | logfmt [2m]))"#,
            r#"quantile_over_time(0.9, {env=~".+"} | logfmt | unwrap duration(took) | __error__="" [5m]) by (app, path)"#,
            r#"sum by (app, __error__) (count_over_time({app=~".+"} | logfmt | took=~".*s" [5m]))"#,
            r#"bytes_over_time({app=~"a|c|e"} |= "warn" [10m])"#,
        ] {
            let one = run(1, query);
            assert!(one.is_ok(), "{query}: {one:?}");
            for threads in [2, 3, 4] {
                assert_eq!(run(threads, query), one, "{query} on {threads} threads");
            }
        }
        // The first error is the one a single pass meets.
        let q = r#"sum(sum_over_time({app=~".+"} | logfmt | unwrap duration(took) [5m]))"#;
        let one = run(1, q);
        assert!(one.is_err());
        assert_eq!(run(3, q), one);
    }

    #[test]
    fn metric_queries_with_only_line_filters_group_by_metadata_as_the_full_pipeline_does() {
        // Entries of a stream whose structured metadata repeat, alternate,
        // are missing, come in another order, or name a stream label: the
        // series found once per metadata (the path for pipelines of line
        // filters only) must be the series the full pipeline builds.
        let mut src = MemorySource::new();
        let meta = |k: usize| -> Vec<(String, String)> {
            let level = ["info", "warn", "info", "error"][k % 4];
            match k % 7 {
                0 => Vec::new(),
                1 => vec![("app".into(), "m".into())],
                2 => vec![("trace".into(), "t".into()), ("level".into(), level.into())],
                _ => vec![("level".into(), level.into()), ("trace".into(), "t".into())],
            }
        };
        for app in ["a", "b"] {
            let l = Labels::from_pairs([("app", app)]);
            for k in 0..3_000usize {
                src.push(
                    &l,
                    LogEntry {
                        timestamp_ns: k as i64 * 100_000_000,
                        line: format!("k={k} {}", if k % 3 == 0 { "GET" } else { "POST" }),
                        structured_metadata: meta(k),
                    },
                );
            }
        }
        let ctx = QueryContext::default();
        let run = |query: &str| {
            Engine::default().range(&src, query, 0, 300_000_000_000, 30_000_000_000, &ctx)
        };
        for (fast, full) in [
            (
                r#"count_over_time({app=~".+"} [1m])"#,
                r#"count_over_time({app=~".+"} | __error__="" [1m])"#,
            ),
            (
                r#"bytes_over_time({app=~".+"} |= "GET" [1m])"#,
                r#"bytes_over_time({app=~".+"} |= "GET" | __error__="" [1m])"#,
            ),
            (
                r#"sum by (level) (rate({app="a"} != "POST" |~ "k=1" [2m]))"#,
                r#"sum by (level) (rate({app="a"} != "POST" |~ "k=1" | __error__="" [2m]))"#,
            ),
            (
                r#"sum by (app_extracted) (count_over_time({app=~".+"} |= "GET" [1m]))"#,
                r#"sum by (app_extracted) (count_over_time({app=~".+"} |= "GET" | __error__="" [1m]))"#,
            ),
        ] {
            let (a, b) = (run(fast), run(full));
            assert!(a.is_ok(), "{fast}: {a:?}");
            assert_eq!(a, b, "{fast}");
        }
        let Ok(Value::Matrix(m)) = run(r#"count_over_time({app=~".+"} [1m])"#) else {
            panic!("not a matrix");
        };
        // a and b, each with no metadata, app_extracted, and three levels.
        assert_eq!(
            m.len(),
            10,
            "{:?}",
            m.iter().map(|s| &s.labels).collect::<Vec<_>>()
        );
    }

    #[test]
    fn log_queries_give_the_same_lines_on_any_number_of_threads() {
        // Streams of uneven sizes whose lines share 50 timestamps, so the
        // limit cuts through lines of equal time, and every query reads
        // them all in one slice (split among threads).
        let mut src = MemorySource::new();
        for &(app, n) in &UNEVEN_STREAMS[..5] {
            let l = Labels::from_pairs([("app", app)]);
            for k in 0..n {
                src.push(
                    &l,
                    LogEntry {
                        timestamp_ns: i64::from(k % 50) * 1_000_000_000,
                        line: format!(
                            "level={} took={} app={app} k={k}",
                            ["info", "warn"][k as usize % 2],
                            k % 97
                        ),
                        structured_metadata: Vec::new(),
                    },
                );
            }
        }
        let ctx = QueryContext::default();
        let run = |threads: usize, max_samples: usize, query: &str, limit: usize, direction| {
            Engine::new(EngineOptions {
                parallelism: threads,
                max_samples,
                ..EngineOptions::default()
            })
            .logs(
                &src,
                query,
                &LogQuery {
                    start_ns: 0,
                    end_ns: 5_000_000_000_000,
                    limit,
                    direction,
                },
                &ctx,
            )
        };
        for (query, limit) in [
            (r#"{app=~".+"} | logfmt | took > 90"#, 100),
            (r#"{app=~".+"} |= "warn""#, 5_000),
            (r#"{app=~".+"}"#, 30),
        ] {
            for direction in [Direction::Backward, Direction::Forward] {
                let one = run(1, 1_000_000, query, limit, direction);
                let Ok(Value::Streams(s)) = &one else {
                    panic!("{query}: {one:?}");
                };
                assert_eq!(
                    s.iter().map(|s| s.entries.len()).sum::<usize>(),
                    limit,
                    "{query}"
                );
                for threads in [2, 3, 4] {
                    assert_eq!(
                        run(threads, 1_000_000, query, limit, direction),
                        one,
                        "{query} on {threads} threads"
                    );
                }
            }
        }
        // The entry limit holds however the streams are split.
        for threads in [1, 2, 4] {
            let r = run(threads, 1_000, r#"{app=~".+"}"#, 5_000, Direction::Backward);
            assert!(
                matches!(r, Err(QueryError::TooManySamples { limit: 1_000 })),
                "{r:?}"
            );
        }
    }

    #[test]
    fn log_query_keeps_categories_limit_and_direction() {
        let src = source();
        let q = LogQuery {
            start_ns: 0,
            end_ns: 10_000_000_000,
            limit: 1,
            direction: Direction::Backward,
        };
        let ctx = QueryContext::default();
        let Value::Streams(s) = Engine::default()
            .logs(&src, r#"{app="a"} |= "error" | logfmt"#, &q, &ctx)
            .unwrap()
        else {
            panic!("not streams");
        };
        assert_eq!(s.len(), 1);
        let line = &s[0].entries[0];
        assert_eq!(line.timestamp_ns, 3_000_000_000);
        assert_eq!(line.stream_labels.get("app"), Some("a"));
        assert_eq!(line.structured_metadata.get("trace"), Some("t2"));
        assert_eq!(line.parsed.get("n"), Some("3"));
        assert_eq!(s[0].labels.get("level"), Some("error"));
        let fwd = LogQuery {
            direction: Direction::Forward,
            limit: 10,
            ..q
        };
        let Value::Streams(s) = Engine::default()
            .logs(&src, r#"{app="a"}"#, &fwd, &ctx)
            .unwrap()
        else {
            panic!("not streams");
        };
        assert_eq!(s.len(), 3, "one stream per metadata value");
        assert_eq!(s[0].entries[0].timestamp_ns, 1_000_000_000);
    }

    #[test]
    fn limits_and_cancel() {
        let src = source();
        let engine = Engine::new(EngineOptions {
            max_samples: 2,
            ..EngineOptions::default()
        });
        let err = engine
            .instant(
                &src,
                r#"count_over_time({app="a"}[1m])"#,
                5_000_000_000,
                &QueryContext::default(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), miru_model::ErrorKind::Limited);
        let cancel = Arc::new(AtomicBool::new(true));
        let ctx = QueryContext {
            cancel: Some(cancel),
        };
        let err = Engine::default()
            .instant(
                &src,
                r#"count_over_time({app="a"}[1m])"#,
                5_000_000_000,
                &ctx,
            )
            .unwrap_err();
        assert_eq!(err, QueryError::Canceled);
        let err = Engine::default()
            .instant(
                &src,
                r#"count_over_time({app=~".*"}[1m])"#,
                5_000_000_000,
                &QueryContext::default(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), miru_model::ErrorKind::BadData);
        let err = Engine::default()
            .instant(
                &src,
                "count_over_time({app=}[1m])",
                0,
                &QueryContext::default(),
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("parse error at line 1, col 22: syntax error: unexpected"),
            "{err}"
        );
    }
}
