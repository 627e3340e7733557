//! The evaluator: walks the planned tree over a grid of evaluation steps.
//!
//! Every node yields one value per step of its grid (an instant query is a
//! grid of one step), the same model as Prometheus' `rangeEval`; subqueries
//! evaluate their inner expression on a grid of their own.

mod aggregate;
mod binary;
pub(crate) mod label_ids;
pub(crate) mod parallel;
pub(crate) mod rows;
mod select;

pub(crate) use select::{RangeArg, WindowCursor, WindowSpec};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use miru_model::{CounterResetHint, FloatHistogram, Label, Labels};

use crate::annotations::Annotations;
use crate::plan::{Node, ValueType, plan};
use crate::value::{InstantSample, PointValue, QueryResult, RangeSeries, Value};
use crate::{HashMap, HashSet};
use crate::{QueryError, SeriesSource};

/// Prometheus refuses range queries with more points per series than this.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// Samples a query may load from storage plus those its selectors and
    /// range functions produce per step, counted over the whole query;
    /// more fail with `TooManySamples`. Stricter than Prometheus (which
    /// counts what is in memory at once), and a bound on engine memory.
    pub max_samples: usize,
    /// Step of subqueries that give none (`x[1h:]`).
    pub default_eval_step_ms: i64,
    /// Aggregations over selectors, range functions and scalar operations
    /// on them consume their input one series at a time (see
    /// `eval/rows.rs`). Off only to cross-check against the step-major
    /// model, which must give identical results.
    pub series_at_a_time: bool,
    /// Threads a range function (`rate`, `*_over_time`, ...) may spread
    /// its series over; 1 = the evaluating thread only. Results are the
    /// same whatever the number.
    pub parallelism: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 300_000,
            max_samples: 50_000_000,
            default_eval_step_ms: 60_000,
            series_at_a_time: true,
            parallelism: 1,
        }
    }
}

/// Limits of one query execution, checked between series and steps.
#[derive(Debug, Clone, Default)]
pub struct QueryContext {
    pub deadline: Option<Instant>,
    pub cancel: Option<Arc<AtomicBool>>,
}

#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at one point in time.
    pub fn instant(
        &self,
        src: &dyn SeriesSource,
        query: &str,
        time_ms: i64,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        self.instant_inner(src, query, time_ms, None, ctx)
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms`.
    pub fn range(
        &self,
        src: &dyn SeriesSource,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        self.range_inner(src, query, start_ms, end_ms, step_ms, None, ctx)
    }

    /// [`Engine::instant`] with every selector and outermost subquery that
    /// has no `@` (or `@ start()`/`@ end()`) evaluated `@ pin_at_ms`, as
    /// Prometheus' test runner does to check step invariance. The result
    /// must not depend on `time_ms` unless the query calls a function such
    /// as `time()` (see `promqltest::step_invariance_testable`).
    pub fn instant_pinned(
        &self,
        src: &dyn SeriesSource,
        query: &str,
        time_ms: i64,
        pin_at_ms: i64,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        self.instant_inner(src, query, time_ms, Some(pin_at_ms), ctx)
    }

    /// [`Engine::range`] with `@` pinned as in [`Engine::instant_pinned`].
    #[allow(clippy::too_many_arguments)]
    pub fn range_pinned(
        &self,
        src: &dyn SeriesSource,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        pin_at_ms: i64,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        self.range_inner(src, query, start_ms, end_ms, step_ms, Some(pin_at_ms), ctx)
    }

    fn instant_inner(
        &self,
        src: &dyn SeriesSource,
        query: &str,
        time_ms: i64,
        pin_at_ms: Option<i64>,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        let node = plan(
            query,
            time_ms,
            time_ms,
            0,
            self.opts.default_eval_step_ms,
            pin_at_ms,
        )?;
        let grid = Grid {
            start: time_ms,
            end: time_ms,
            step: 1,
        };
        let mut ev = Evaluator::new(src, &self.opts, ctx);
        let val = ev.eval(&node, grid)?;
        let value = match val {
            Val::Scalar(s) => Value::Scalar {
                t: time_ms,
                v: s.first().copied().unwrap_or(f64::NAN),
            },
            Val::Str(s) => Value::String { t: time_ms, s },
            Val::Vector(steps) => {
                let vec = steps.into_iter().next().unwrap_or_default();
                Value::Vector(finish_vector(vec, time_ms)?)
            }
            Val::Matrix(series) => Value::Matrix(finish_matrix(series)?),
        };
        Ok(ev.result(value))
    }

    #[allow(clippy::too_many_arguments)]
    fn range_inner(
        &self,
        src: &dyn SeriesSource,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        pin_at_ms: Option<i64>,
        ctx: &QueryContext,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::Parse {
                message: "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            });
        }
        if end_ms < start_ms {
            return Err(QueryError::Parse {
                message: "end timestamp must not be before start time".into(),
            });
        }
        if end_ms.saturating_sub(start_ms) / step_ms > MAX_POINTS_PER_SERIES {
            return Err(QueryError::Parse {
                message: "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            });
        }
        let node = plan(
            query,
            start_ms,
            end_ms,
            step_ms,
            self.opts.default_eval_step_ms,
            pin_at_ms,
        )?;
        let vt = node.value_type();
        if vt != ValueType::Scalar && vt != ValueType::Vector {
            return Err(QueryError::Parse {
                message: format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    vt.documented()
                ),
            });
        }
        let grid = Grid {
            start: start_ms,
            end: end_ms,
            step: step_ms,
        };
        let mut ev = Evaluator::new(src, &self.opts, ctx);
        let val = ev.eval(&node, grid)?;
        let series = match val {
            Val::Scalar(s) => vec![RangeSeries {
                labels: Labels::default(),
                floats: s
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (grid.ts(i), v))
                    .collect(),
                histograms: Vec::new(),
            }],
            Val::Vector(steps) => assemble_range(steps, grid)?,
            Val::Str(_) | Val::Matrix(_) => {
                return Err(QueryError::exec(
                    "BUG: range query produced a non-vector value",
                ));
            }
        };
        Ok(ev.result(Value::Matrix(series)))
    }
}

/// One sample of an instant vector during evaluation. `drop_name` is
/// Prometheus' delayed `__name__` removal: the name stays until the end of
/// the query (so `label_replace` can still read it) unless relabelled.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) labels: Labels,
    pub(crate) f: f64,
    pub(crate) h: Option<Arc<FloatHistogram>>,
    pub(crate) drop_name: bool,
}

pub(crate) type Vector = Vec<Sample>;

/// A series of a range vector (matrix selector or subquery result).
#[derive(Debug, Clone, Default)]
pub(crate) struct MSeries {
    pub(crate) labels: Labels,
    pub(crate) floats: Vec<(i64, f64)>,
    pub(crate) hists: Vec<(i64, Arc<FloatHistogram>)>,
    pub(crate) drop_name: bool,
}

pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    Str(String),
    /// One vector per step.
    Vector(Vec<Vector>),
    Matrix(Vec<MSeries>),
}

/// Evaluation steps `start, start+step, ..., <= end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) step: i64,
}

impl Grid {
    pub(crate) fn len(&self) -> usize {
        if self.end < self.start || self.step <= 0 {
            return 0;
        }
        (self.end.saturating_sub(self.start) / self.step).saturating_add(1) as usize
    }
    pub(crate) fn ts(&self, i: usize) -> i64 {
        self.start
            .saturating_add((i as i64).saturating_mul(self.step))
    }
    pub(crate) fn last(&self) -> i64 {
        self.ts(self.len().saturating_sub(1))
    }
    pub(crate) fn is_instant(&self) -> bool {
        self.len() <= 1
    }
    fn first_only(&self) -> Grid {
        Grid {
            start: self.start,
            end: self.start,
            step: self.step,
        }
    }
}

/// Fails when the query was canceled or ran out of time; the clock is read
/// every 16th call (`checks` counts them).
pub(crate) fn check_ctx(ctx: &QueryContext, checks: &mut u32) -> Result<(), QueryError> {
    *checks = checks.wrapping_add(1);
    check_ctx_reading_clock(ctx, checks.is_multiple_of(16))
}

fn check_ctx_reading_clock(ctx: &QueryContext, read_clock: bool) -> Result<(), QueryError> {
    if let Some(c) = &ctx.cancel
        && c.load(Ordering::Relaxed)
    {
        return Err(QueryError::Canceled);
    }
    if let Some(d) = ctx.deadline
        && read_clock
        && Instant::now() >= d
    {
        return Err(QueryError::Timeout);
    }
    Ok(())
}

/// Checks cancellation and the deadline once per [`WorkMeter::PER_CHECK`]
/// units of work (samples looked at), for loops over steps: one step over a
/// window of a million points can take as long as a whole ordinary query,
/// so a check per series is too rare, while a clock read per step of the
/// usual small windows would cost more than the step.
pub(crate) struct WorkMeter {
    left: usize,
}

impl WorkMeter {
    const PER_CHECK: usize = 1 << 16;

    pub(crate) fn new() -> Self {
        WorkMeter {
            left: Self::PER_CHECK,
        }
    }

    /// Counts `n` units of work about to be done.
    pub(crate) fn add(&mut self, ctx: &QueryContext, n: usize) -> Result<(), QueryError> {
        if n < self.left {
            self.left -= n;
            return Ok(());
        }
        self.left = Self::PER_CHECK;
        check_ctx_reading_clock(ctx, true)
    }
}

pub(crate) struct Evaluator<'a> {
    pub(crate) src: &'a dyn SeriesSource,
    pub(crate) opts: &'a EngineOptions,
    ctx: &'a QueryContext,
    pub(crate) annos: Annotations,
    pub(crate) samples: u64,
    checks: u32,
}

impl<'a> Evaluator<'a> {
    fn new(src: &'a dyn SeriesSource, opts: &'a EngineOptions, ctx: &'a QueryContext) -> Self {
        Evaluator {
            src,
            opts,
            ctx,
            annos: Annotations::default(),
            samples: 0,
            checks: 0,
        }
    }

    fn result(self, value: Value) -> QueryResult {
        let (warnings, infos) = self.annos.into_parts();
        QueryResult {
            value,
            warnings,
            infos,
            samples_scanned: self.samples,
        }
    }

    /// Fails when the query was canceled or ran out of time.
    pub(crate) fn check(&mut self) -> Result<(), QueryError> {
        check_ctx(self.ctx, &mut self.checks)
    }

    /// The query's limits, for work done off the evaluator (other threads).
    pub(crate) fn ctx(&self) -> &'a QueryContext {
        self.ctx
    }

    pub(crate) fn count_samples(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples = self.samples.saturating_add(n as u64);
        if self.samples > self.opts.max_samples as u64 {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        Ok(())
    }

    pub(crate) fn eval(&mut self, node: &Node, g: Grid) -> Result<Val, QueryError> {
        self.check()?;
        let n = g.len();
        Ok(match node {
            Node::Number(v) => Val::Scalar(vec![*v; n]),
            Node::Str(s) => Val::Str(s.clone()),
            Node::Vector(sel) => Val::Vector(self.eval_vector_selector(sel, g, false)?),
            Node::Matrix { sel, range_ms } => {
                Val::Matrix(self.eval_matrix_selector_top(sel, *range_ms, g)?)
            }
            Node::Subquery(sq) => Val::Matrix(self.eval_subquery(sq, g)?),
            Node::Call(c) => crate::functions::eval_call(self, c, g)?,
            Node::Agg(a) => aggregate::eval_aggregation(self, a, g)?,
            Node::Binary(b) => binary::eval_binary(self, b, g)?,
            Node::Neg(inner) => match self.eval(inner, g)? {
                Val::Scalar(s) => Val::Scalar(s.into_iter().map(|v| -v).collect()),
                Val::Vector(mut steps) => {
                    for v in &mut steps {
                        for s in v.iter_mut() {
                            s.f = -s.f;
                            if let Some(h) = &s.h {
                                s.h = Some(Arc::new(crate::histogram::mul(h, -1.0)));
                            }
                            s.drop_name = true;
                        }
                    }
                    Val::Vector(steps)
                }
                _ => return Err(QueryError::exec("BUG: negation of a non-numeric value")),
            },
            Node::StepInvariant(inner) => {
                if g.is_instant() {
                    return self.eval(inner, g);
                }
                match self.eval(inner, g.first_only())? {
                    Val::Scalar(s) => Val::Scalar(vec![s.first().copied().unwrap_or(f64::NAN); n]),
                    Val::Vector(steps) => {
                        let first = steps.into_iter().next().unwrap_or_default();
                        self.count_samples(first.len().saturating_mul(n))?;
                        Val::Vector(vec![first; n])
                    }
                    other => other,
                }
            }
        })
    }

    pub(crate) fn eval_vector(&mut self, node: &Node, g: Grid) -> Result<Vec<Vector>, QueryError> {
        match self.eval(node, g)? {
            Val::Vector(v) => Ok(v),
            _ => Err(QueryError::exec("BUG: expected an instant vector")),
        }
    }

    pub(crate) fn eval_scalar(&mut self, node: &Node, g: Grid) -> Result<Vec<f64>, QueryError> {
        match self.eval(node, g)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(QueryError::exec("BUG: expected a scalar")),
        }
    }
}

/// In a range evaluation Prometheus refuses two samples with one label set
/// at one step; instant evaluation defers that check to the end.
pub(crate) fn check_step_duplicates(steps: &[Vector], g: Grid) -> Result<(), QueryError> {
    if g.is_instant() {
        return Ok(());
    }
    // Label sets mostly keep their allocation from step to step: ids by
    // address make this a pointer lookup per sample (see `label_ids`).
    let mut ids = label_ids::LabelIds::default();
    let mut seen = label_ids::StepSet::default();
    for v in steps {
        if v.len() < 2 {
            continue;
        }
        seen.clear();
        for s in v {
            if !seen.insert(ids.id(&s.labels)) {
                return Err(duplicate_labelset());
            }
        }
    }
    Ok(())
}

/// A builder holding `l`, for edits.
pub(crate) fn builder_from(l: &Labels) -> miru_model::LabelsBuilder {
    let mut lb = miru_model::LabelsBuilder::with_capacity(l.len() + 1);
    for x in l.iter() {
        lb.set(Arc::clone(&x.name), Arc::clone(&x.value));
    }
    lb
}

pub(crate) fn duplicate_labelset() -> QueryError {
    QueryError::exec("vector cannot contain metrics with the same labelset")
}

/// Labels without `__name__` (and the `__type__`/`__unit__` metadata that
/// Prometheus drops with it).
pub(crate) fn drop_metric_name(l: &Labels) -> Labels {
    if !l
        .iter()
        .any(|x| matches!(&*x.name, "__name__" | "__type__" | "__unit__"))
    {
        return l.clone();
    }
    Labels::from_sorted(
        l.iter()
            .filter(|x| !matches!(&*x.name, "__name__" | "__type__" | "__unit__"))
            .cloned()
            .collect::<Vec<Label>>(),
    )
}

fn finish_vector(vec: Vector, t: i64) -> Result<Vec<InstantSample>, QueryError> {
    let mut out = Vec::with_capacity(vec.len());
    let mut seen = HashSet::with_capacity_and_hasher(vec.len(), Default::default());
    for s in vec {
        let labels = if s.drop_name {
            drop_metric_name(&s.labels)
        } else {
            s.labels
        };
        if !seen.insert(labels.clone()) {
            return Err(duplicate_labelset());
        }
        out.push(InstantSample {
            labels,
            t,
            value: match s.h {
                Some(h) => PointValue::Histogram(h),
                None => PointValue::Float(s.f),
            },
        });
    }
    Ok(out)
}

fn finish_matrix(series: Vec<MSeries>) -> Result<Vec<RangeSeries>, QueryError> {
    let mut by_labels: HashMap<Labels, RangeSeries> = HashMap::default();
    for s in series {
        let labels = if s.drop_name {
            drop_metric_name(&s.labels)
        } else {
            s.labels
        };
        match by_labels.get_mut(&labels) {
            None => {
                by_labels.insert(
                    labels.clone(),
                    RangeSeries {
                        labels,
                        floats: s.floats,
                        histograms: s.hists,
                    },
                );
            }
            Some(existing) => {
                existing.floats.extend(s.floats);
                existing.histograms.extend(s.hists);
                existing.floats.sort_by_key(|p| p.0);
                existing.histograms.sort_by_key(|p| p.0);
                if existing.floats.windows(2).any(|w| w[0].0 == w[1].0)
                    || existing.histograms.windows(2).any(|w| w[0].0 == w[1].0)
                {
                    return Err(duplicate_labelset());
                }
            }
        }
    }
    let mut out: Vec<RangeSeries> = by_labels.into_values().collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

fn assemble_range(steps: Vec<Vector>, g: Grid) -> Result<Vec<RangeSeries>, QueryError> {
    // Points are grouped by label-set id (looked up by the address of the
    // label allocation first, see `label_ids`) and whether the name is to
    // be dropped; the name is dropped once per series. Series whose labels
    // become equal once the name is dropped are merged below.
    let mut ids = label_ids::LabelIds::default();
    let mut index: HashMap<(u32, bool), usize> = HashMap::default();
    let mut parts: Vec<RangeSeries> = Vec::new();
    for (i, v) in steps.into_iter().enumerate() {
        let t = g.ts(i);
        for s in v {
            let idx = *index
                .entry((ids.id(&s.labels), s.drop_name))
                .or_insert_with(|| {
                    parts.push(RangeSeries {
                        labels: if s.drop_name {
                            drop_metric_name(&s.labels)
                        } else {
                            s.labels.clone()
                        },
                        ..Default::default()
                    });
                    parts.len() - 1
                });
            let e = &mut parts[idx];
            let last_t = e
                .floats
                .last()
                .map(|p| p.0)
                .into_iter()
                .chain(e.histograms.last().map(|p| p.0))
                .max();
            if last_t == Some(t) {
                return Err(duplicate_labelset());
            }
            match s.h {
                Some(h) => e.histograms.push((t, h)),
                None => e.floats.push((t, s.f)),
            }
        }
    }
    parts.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<RangeSeries> = Vec::with_capacity(parts.len());
    for p in parts {
        match out.last_mut() {
            Some(last) if last.labels == p.labels => {
                last.floats.extend(p.floats);
                last.histograms.extend(p.histograms);
                last.floats.sort_by_key(|x| x.0);
                last.histograms.sort_by_key(|x| x.0);
                let mut ts: Vec<i64> = last
                    .floats
                    .iter()
                    .map(|x| x.0)
                    .chain(last.histograms.iter().map(|x| x.0))
                    .collect();
                ts.sort_unstable();
                if ts.windows(2).any(|w| w[0] == w[1]) {
                    return Err(duplicate_labelset());
                }
            }
            _ => out.push(p),
        }
    }
    Ok(out)
}

/// Turns per-step vectors into series (a subquery's result), keeping the
/// order in which series first appear.
pub(crate) fn steps_to_series(val: Val, g: Grid) -> Vec<MSeries> {
    match val {
        Val::Scalar(s) => vec![MSeries {
            labels: Labels::default(),
            floats: s
                .into_iter()
                .enumerate()
                .map(|(i, v)| (g.ts(i), v))
                .collect(),
            hists: Vec::new(),
            drop_name: false,
        }],
        Val::Vector(steps) => {
            let mut index: HashMap<Labels, usize> = HashMap::default();
            let mut out: Vec<MSeries> = Vec::new();
            for (i, v) in steps.into_iter().enumerate() {
                let t = g.ts(i);
                for s in v {
                    let idx = *index.entry(s.labels.clone()).or_insert_with(|| {
                        out.push(MSeries {
                            labels: s.labels.clone(),
                            drop_name: s.drop_name,
                            ..Default::default()
                        });
                        out.len() - 1
                    });
                    match s.h {
                        Some(h) => {
                            // A subquery may repeat or skip the sample that
                            // carries a reset hint; forget such hints.
                            let h = match h.counter_reset_hint {
                                CounterResetHint::Reset | CounterResetHint::NotReset => {
                                    let mut c = (*h).clone();
                                    c.counter_reset_hint = CounterResetHint::Unknown;
                                    Arc::new(c)
                                }
                                _ => h,
                            };
                            out[idx].hists.push((t, h));
                        }
                        None => out[idx].floats.push((t, s.f)),
                    }
                }
            }
            out
        }
        Val::Matrix(m) => m,
        Val::Str(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySource;

    fn source() -> MemorySource {
        let mut src = MemorySource::new();
        let l = Labels::from_pairs([("__name__", "up_total"), ("job", "a")]);
        for i in 0..10 {
            src.add_float(&l, i * 60_000, i as f64);
        }
        src
    }

    #[test]
    fn a_work_meter_checks_once_per_batch_of_work() {
        let cancel = Arc::new(AtomicBool::new(true));
        let canceled = QueryContext {
            deadline: None,
            cancel: Some(Arc::clone(&cancel)),
        };
        let mut meter = WorkMeter::new();
        for _ in 0..WorkMeter::PER_CHECK - 1 {
            assert!(
                meter.add(&canceled, 1).is_ok(),
                "checked before a batch was done"
            );
        }
        assert!(matches!(meter.add(&canceled, 1), Err(QueryError::Canceled)));
        // One large unit of work (a step over a huge window) is checked at once.
        let mut meter = WorkMeter::new();
        assert!(matches!(
            meter.add(&canceled, 1 << 20),
            Err(QueryError::Canceled)
        ));
        let past = QueryContext {
            deadline: Some(Instant::now()),
            cancel: None,
        };
        assert!(matches!(
            WorkMeter::new().add(&past, WorkMeter::PER_CHECK),
            Err(QueryError::Timeout)
        ));
        cancel.store(false, Ordering::Relaxed);
        assert!(WorkMeter::new().add(&canceled, 1 << 20).is_ok());
    }

    /// A range function streamed from shards on several threads counts
    /// exactly the samples one thread counts, and fails at the same limit.
    #[test]
    fn streamed_range_functions_count_samples_as_one_thread_does() {
        let mut src = MemorySource::new();
        for i in 0..40 {
            let l =
                Labels::from_pairs([("__name__", "m_total".to_string()), ("i", format!("{i}"))]);
            for t in 0..100 {
                src.add_float(&l, t * 15_000, (t * i) as f64);
            }
        }
        let ctx = QueryContext::default();
        let run = |parallelism: usize, max_samples: usize| {
            Engine::new(EngineOptions {
                parallelism,
                max_samples,
                ..EngineOptions::default()
            })
            .range(
                &src,
                "sum(rate(m_total[5m]))",
                300_000,
                1_485_000,
                60_000,
                &ctx,
            )
        };
        let one = run(1, 50_000_000).unwrap();
        let three = run(3, 50_000_000).unwrap();
        assert_eq!(format!("{:?}", one.value), format!("{:?}", three.value));
        let n = one.samples_scanned as usize;
        assert_eq!(three.samples_scanned as usize, n);
        // 40 series of 20 raw samples each at least.
        assert!(n > 40 * 20, "{n}");
        for threads in [1, 3] {
            assert!(run(threads, n).is_ok(), "{threads} threads at the limit");
            assert!(
                matches!(
                    run(threads, n - 1),
                    Err(QueryError::TooManySamples { limit }) if limit == n - 1
                ),
                "{threads} threads over the limit"
            );
        }
    }

    #[test]
    fn instant_and_range_queries() {
        let e = Engine::default();
        let src = source();
        let ctx = QueryContext::default();
        let r = e.instant(&src, "up_total * 2", 300_000, &ctx).unwrap();
        match r.value {
            Value::Vector(v) => {
                assert_eq!(v.len(), 1);
                assert_eq!(v[0].value, PointValue::Float(10.0));
                assert_eq!(v[0].labels.get("__name__"), None);
            }
            other => panic!("unexpected {other:?}"),
        }
        let r = e
            .range(&src, "rate(up_total[2m])", 120_000, 300_000, 60_000, &ctx)
            .unwrap();
        match r.value {
            Value::Matrix(m) => assert_eq!(m[0].floats.len(), 4),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_carry_types_and_positions() {
        let e = Engine::default();
        let src = source();
        let ctx = QueryContext::default();
        let err = e.instant(&src, "sum(up_total", 0, &ctx).unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
        assert!(err.to_string().starts_with("1:13: parse error:"), "{err}");
        let err = e
            .range(&src, "up_total", 0, 20_000_000, 1, &ctx)
            .unwrap_err();
        assert!(err.to_string().contains("11,000 points"));
        let cancel = Arc::new(AtomicBool::new(true));
        let ctx = QueryContext {
            deadline: None,
            cancel: Some(cancel),
        };
        assert_eq!(
            e.instant(&src, "up_total", 0, &ctx).unwrap_err(),
            QueryError::Canceled
        );
        let small = Engine::new(EngineOptions {
            max_samples: 3,
            ..Default::default()
        });
        let err = small
            .instant(&src, "up_total[10m]", 600_000, &QueryContext::default())
            .unwrap_err();
        assert_eq!(err, QueryError::TooManySamples { limit: 3 });
    }

    #[test]
    fn pinned_queries_are_step_invariant() {
        let e = Engine::default();
        let src = source();
        let ctx = QueryContext::default();
        let value = |r: QueryResult| match r.value {
            Value::Vector(v) => v.iter().map(|s| s.value.clone()).collect::<Vec<_>>(),
            other => panic!("unexpected {other:?}"),
        };
        // Pinned at 3m, evaluated anywhere: the 3m sample.
        for t in [-1_800_000, 0, 180_000, 1_800_000] {
            let r = e
                .instant_pinned(&src, "up_total", t, 180_000, &ctx)
                .unwrap();
            assert_eq!(value(r), vec![PointValue::Float(3.0)], "at {t}");
        }
        // An explicit `@` stays; `@ end()` is pinned like a missing one.
        let r = e
            .instant_pinned(&src, "up_total @ 60", 0, 180_000, &ctx)
            .unwrap();
        assert_eq!(value(r), vec![PointValue::Float(1.0)]);
        let r = e
            .instant_pinned(&src, "up_total @ end()", 0, 180_000, &ctx)
            .unwrap();
        assert_eq!(value(r), vec![PointValue::Float(3.0)]);
        // Inside a subquery nothing is pinned; the subquery itself is.
        let r = e
            .instant_pinned(&src, "max_over_time(up_total[2m:1m])", 0, 300_000, &ctx)
            .unwrap();
        assert_eq!(value(r), vec![PointValue::Float(5.0)]);
        let r = e
            .range_pinned(&src, "up_total", -60_000, 60_000, 60_000, 120_000, &ctx)
            .unwrap();
        match r.value {
            Value::Matrix(m) => {
                assert_eq!(m[0].floats, vec![(-60_000, 2.0), (0, 2.0), (60_000, 2.0)])
            }
            other => panic!("unexpected {other:?}"),
        }
        use crate::promqltest::step_invariance_testable as testable;
        assert!(testable("rate(up_total[5m] @ 100)"));
        assert!(testable("max_over_time(vector(time())[5m:1m])"));
        assert!(!testable("time() - timestamp(up_total)"));
        assert!(!testable("sum(hour(up_total))"));
        assert!(!testable("sum(up_total"));
    }

    #[test]
    fn range_results_merge_series_equal_after_name_drop() {
        let mut src = MemorySource::new();
        let a = Labels::from_pairs([("__name__", "a"), ("x", "1")]);
        let b = Labels::from_pairs([("__name__", "b"), ("x", "1")]);
        for i in 0..5 {
            src.add_float(&a, i * 60_000, 1.0);
            src.add_float(&b, (i + 10) * 60_000, 2.0);
        }
        let e = Engine::default();
        let ctx = QueryContext::default();
        // `a` is visible until 8m, `b` from 10m: one series, no collision.
        let r = e
            .range(&src, "{x=\"1\"} * 1", 0, 900_000, 60_000, &ctx)
            .unwrap();
        match r.value {
            Value::Matrix(m) => {
                assert_eq!(m.len(), 1);
                assert_eq!(m[0].labels, Labels::from_pairs([("x", "1")]));
                let ts: Vec<i64> = m[0].floats.iter().map(|p| p.0 / 60_000).collect();
                assert_eq!(ts, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15]);
                assert_eq!(m[0].floats[9].1, 2.0);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Both visible at 10m to 13m: the same label set twice at one step.
        let mut src2 = src.clone();
        src2.add_float(&a, 600_000, 1.0);
        let err = e
            .range(&src2, "{x=\"1\"} * 1", 0, 900_000, 60_000, &ctx)
            .unwrap_err();
        assert_eq!(err, duplicate_labelset());
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let e = Engine::default();
        let src = source();
        let ctx = QueryContext::default();
        for q in [
            "up_total @ 9223372036854775",
            "up_total offset 292y",
            "max_over_time(up_total[100y:1ms])",
            "histogram_quantile(0.5, up_total)",
            "label_replace(up_total, \"a\", \"$1$2${x}\", \"job\", \"(.*)\")",
            "topk(1e300, up_total)",
            "quantile(NaN, up_total)",
            "day_of_week(vector(1e308))",
        ] {
            let _ = e.instant(&src, q, i64::MAX / 2, &ctx);
            let _ = e.instant(&src, q, i64::MIN / 2, &ctx);
            let _ = e.range(&src, q, -1_000_000, 1_000_000, 60_000, &ctx);
        }
    }
}
