//! Functions over range vectors: `rate` and friends, `*_over_time`,
//! `deriv`, `predict_linear`, `changes`, `resets`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use miru_model::{CounterResetHint, FloatHistogram, Labels};

use super::regression::{FIT_LANES, TimeSumsCache, fit, fit_many};
use super::{absent_labels, kahan_inc, metric_name, quantile};
use crate::QueryError;
use crate::SeriesShard;
use crate::annotations::{Annotations, fmt_g};
use crate::eval::parallel::{for_each_in_order, map_in_order};
use crate::eval::rows::{Point, Row, RowVisitor, scatter};
use crate::eval::{
    Evaluator, Grid, MSeries, QueryContext, RangeArg, Sample, Val, Vector, WindowCursor,
    WindowSpec, WorkMeter, check_ctx,
};
use crate::histogram as hist;
use crate::plan::{Call, Node, ValueType};
use crate::position::Pos;

type Out = Option<(f64, Option<Arc<FloatHistogram>>)>;

/// What a kernel knows about the step it computes.
struct Step<'a> {
    floats: &'a [(i64, f64)],
    hists: &'a [(i64, Arc<FloatHistogram>)],
    range_end: i64,
    range_ms: i64,
    ts: i64,
    labels: &'a Labels,
    /// Position of the first argument (the one Prometheus cites).
    pos: Pos,
    params: &'a [f64],
    /// Known: no float in the window is below its predecessor, so a
    /// counter needs no reset correction (see `range_function_rows`).
    no_float_drops: bool,
    /// The step's position in the query's grid.
    index: usize,
}

fn float(v: f64) -> Out {
    Some((v, None))
}

fn histo(h: FloatHistogram) -> Out {
    Some((0.0, Some(Arc::new(h))))
}

fn mixed_warning(a: &mut Annotations, s: &Step<'_>) {
    a.warn(
        format!(
            "encountered a mix of histograms and floats for metric name {:?}",
            metric_name(s.labels)
        ),
        s.pos,
    );
}

fn ignored_hist_info(a: &mut Annotations, s: &Step<'_>) {
    a.info(
        format!(
            "ignored histograms in a range containing both floats and histograms for metric name {:?}",
            metric_name(s.labels)
        ),
        s.pos,
    );
}

pub(super) fn eval_range_function(
    ev: &mut Evaluator<'_>,
    c: &Call,
    g: Grid,
) -> Result<Val, QueryError> {
    let mut out: Vec<Vector> = vec![Vec::new(); g.len()];
    let present = range_function_rows(ev, c, g, &mut |_, row| {
        scatter(row, &mut out);
        Ok(())
    })?;
    if c.name == "absent_over_time" {
        let mi = range_arg_index(c)?;
        let labels = absent_labels(&c.args[mi]);
        return Ok(Val::Vector(
            present
                .into_iter()
                .map(|p| {
                    if p {
                        Vec::new()
                    } else {
                        vec![Sample {
                            labels: labels.clone(),
                            f: 1.0,
                            h: None,
                            drop_name: true,
                        }]
                    }
                })
                .collect(),
        ));
    }
    Ok(Val::Vector(out))
}

fn range_arg_index(c: &Call) -> Result<usize, QueryError> {
    c.args
        .iter()
        .position(|a| a.value_type() == ValueType::Matrix)
        .ok_or_else(|| QueryError::exec("BUG: no range argument"))
}

/// Evaluates a function over a range vector one series at a time (all
/// steps of a series in one pass over its samples), handing each result
/// series to `visit`. Returns, per step, whether any series had samples in
/// its window (what `absent_over_time` needs; it visits no rows).
pub(crate) fn range_function_rows(
    ev: &mut Evaluator<'_>,
    c: &Call,
    g: Grid,
    visit: &mut RowVisitor<'_>,
) -> Result<Vec<bool>, QueryError> {
    let n = g.len();
    let mi = range_arg_index(c)?;
    // Scalar parameters, one value per step.
    let mut params: Vec<Vec<f64>> = Vec::new();
    for (i, a) in c.args.iter().enumerate() {
        if i != mi && a.value_type() == ValueType::Scalar {
            params.push(ev.eval_scalar(a, g)?);
        }
    }
    if c.name == "double_exponential_smoothing" {
        for i in 0..n {
            let sf = params
                .first()
                .and_then(|p| p.get(i))
                .copied()
                .unwrap_or(0.5);
            let tf = params.get(1).and_then(|p| p.get(i)).copied().unwrap_or(0.5);
            if !(sf > 0.0 && sf < 1.0) {
                return Err(QueryError::exec(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(QueryError::exec(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
        }
    }
    let pos = c.arg_pos.first().copied().unwrap_or(c.pos);
    let keeps_name = matches!(c.name, "last_over_time" | "first_over_time");
    let mut present = vec![false; n];
    // A range selector streams: each shard of the selection is decoded and
    // run through the function on one thread, series by series, so the raw
    // samples of the whole selection are never held at once. A selection
    // too small for several shards is loaded and its series spread over
    // the threads instead (range functions cost more than decoding).
    let arg = if let Node::Matrix { sel, range_ms } = c.args[mi].unwrapped()
        && sel.matcher_sets.len() == 1
    {
        let window = WindowSpec {
            range_ms: *range_ms,
            offset_ms: sel.offset_ms,
            at_ms: sel.at_ms,
        };
        let (mint, maxt) = window.fetch_bounds(g);
        // More shards than threads: the rows of early shards are consumed
        // (aggregated, say) on this thread while later ones are computed.
        let threads = ev.opts.parallelism.max(1);
        let max_shards = if threads > 1 {
            threads * SHARDS_PER_THREAD
        } else {
            1
        };
        let shards = ev
            .src
            .select_shards(&sel.matcher_sets[0], mint, maxt, max_shards)?;
        if shards.len() > 1 || threads <= 1 {
            let job = RangeJob {
                name: c.name,
                g,
                window,
                params: &params,
                pos,
                ctx: ev.ctx(),
                budget: SampleBudget::new(ev.samples, ev.opts.max_samples),
            };
            for_each_in_order(
                shards,
                threads - 1,
                |shard| job.run_shard(shard),
                |b| consume(ev, b, keeps_name, &mut present, visit),
            )?;
            return Ok(present);
        }
        RangeArg {
            series: ev
                .load(shards)?
                .into_iter()
                .map(MSeries::from_source)
                .collect(),
            range_ms: *range_ms,
            offset_ms: sel.offset_ms,
            at_ms: sel.at_ms,
        }
    } else {
        ev.range_arg(&c.args[mi], g)?
    };
    let job = RangeJob {
        name: c.name,
        g,
        window: arg.spec(),
        params: &params,
        pos,
        ctx: ev.ctx(),
        budget: SampleBudget::new(0, 0),
    };
    let workers = ev.opts.parallelism.max(1);
    // Rounds bound what the workers hold before it is counted and consumed.
    for round in arg.series.chunks(workers * ROUND_SERIES_PER_WORKER) {
        let slices: Vec<&[MSeries]> = if workers > 1 && round.len() >= 2 * MIN_SERIES_PER_WORKER {
            round.chunks(round.len().div_ceil(workers)).collect()
        } else {
            vec![round]
        };
        for b in map_in_order(slices, |slice| job.run(slice)) {
            consume(ev, b, keeps_name, &mut present, visit)?;
        }
    }
    Ok(present)
}

/// Hands a batch's rows to `visit` in series order, so that errors, limits
/// and the visitor see exactly what a single thread would have produced.
fn consume(
    ev: &mut Evaluator<'_>,
    b: Batch,
    keeps_name: bool,
    present: &mut [bool],
    visit: &mut RowVisitor<'_>,
) -> Result<(), QueryError> {
    ev.annos.merge(b.annos);
    for (p, q) in present.iter_mut().zip(&b.present) {
        *p |= q;
    }
    let mut row = Row::default();
    for out in b.rows {
        // Raw samples read (when streamed) and step results hold memory
        // too: both count against max_samples.
        ev.count_samples(out.raw)?;
        ev.count_samples(out.points.len())?;
        if out.points.is_empty() {
            continue;
        }
        row.points = out.points;
        row.labels = out.labels;
        row.drop_name = !keeps_name || out.drop_name;
        visit(ev, &mut row)?;
    }
    b.end
}

/// Shards a streamed range function asks the source for per query
/// thread (each holds at least the storage's minimum of series).
const SHARDS_PER_THREAD: usize = 4;

/// Series a worker takes per round of a parallel range function over a
/// range argument held in memory (tiny in tests, so that the property
/// tests exercise several rounds and workers).
const ROUND_SERIES_PER_WORKER: usize = if cfg!(test) { 1 } else { 2048 };
/// Fewest series per worker worth a thread.
const MIN_SERIES_PER_WORKER: usize = if cfg!(test) { 1 } else { 256 };

/// The query's `max_samples` as shared by the threads of a streamed range
/// function: a worker stops once the query as a whole would exceed it, so
/// the threads together never hold more than the limit allows. The
/// evaluator still counts every row, in series order, as it consumes them.
struct SampleBudget {
    used: AtomicU64,
    max: u64,
}

impl SampleBudget {
    /// `max` 0: not enforced here (in-memory arguments were counted when
    /// loaded).
    fn new(used: u64, max: usize) -> Self {
        SampleBudget {
            used: AtomicU64::new(used),
            max: max as u64,
        }
    }

    fn charge(&self, n: usize) -> Result<(), QueryError> {
        let total = self.used.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if self.max > 0 && total > self.max {
            return Err(QueryError::TooManySamples {
                limit: self.max as usize,
            });
        }
        Ok(())
    }
}

/// One range function over a range argument, computable for any run of
/// its series independently (so runs can go to several threads).
struct RangeJob<'a> {
    name: &'a str,
    g: Grid,
    window: WindowSpec,
    /// Scalar parameters, one value per step.
    params: &'a [Vec<f64>],
    pos: Pos,
    ctx: &'a QueryContext,
    budget: SampleBudget,
}

/// What a [`RangeJob`] computed for a run of series: per series its
/// points, the steps with a non-empty window, the annotations raised, and
/// what stopped the run early (the first error), if anything did.
struct Batch {
    rows: Vec<RowOut>,
    present: Vec<bool>,
    annos: Annotations,
    end: Result<(), QueryError>,
    /// `deriv`'s and `predict_linear`'s time sums per step, for the next series.
    time_sums: TimeSumsCache,
}

struct RowOut {
    labels: Labels,
    drop_name: bool,
    /// Raw samples read for this series (streamed runs only: an argument
    /// held in memory was counted when it was loaded).
    raw: usize,
    points: Vec<Point>,
}

impl RangeJob<'_> {
    fn batch(&self) -> Batch {
        Batch {
            rows: Vec::new(),
            present: vec![false; self.g.len()],
            annos: Annotations::default(),
            end: Ok(()),
            time_sums: TimeSumsCache::default(),
        }
    }

    /// Over series held in memory.
    fn run(&self, series: &[MSeries]) -> Batch {
        let mut b = self.batch();
        b.rows.reserve(series.len());
        let mut checks = 0u32;
        for s in series {
            match check_ctx(self.ctx, &mut checks).and_then(|()| self.series(s, &mut b)) {
                Ok(points) => b.rows.push(RowOut {
                    labels: s.labels.clone(),
                    drop_name: s.drop_name,
                    raw: 0,
                    points,
                }),
                Err(e) => {
                    b.end = Err(e);
                    break;
                }
            }
        }
        b
    }

    /// Over a shard of the source, read as it goes.
    fn run_shard(&self, shard: Box<dyn SeriesShard + Send + '_>) -> Batch {
        let mut b = self.batch();
        let mut checks = 0u32;
        let end = shard.for_each(&mut |s| {
            check_ctx(self.ctx, &mut checks)?;
            let raw = s.floats.len() + s.histograms.len();
            let s = MSeries::from_source(s);
            let points = self.series(&s, &mut b)?;
            self.budget.charge(raw + points.len())?;
            b.rows.push(RowOut {
                labels: s.labels,
                drop_name: false,
                raw,
                points,
            });
            Ok(())
        });
        b.end = end;
        b
    }

    fn series(&self, s: &MSeries, b: &mut Batch) -> Result<Vec<Point>, QueryError> {
        let (g, arg) = (self.g, self.window);
        let absent = self.name == "absent_over_time";
        // For counter functions, the number of drops (resets) up to each
        // float sample: a window without any skips the reset correction
        // pass, which adds nothing there (so results are exactly the same).
        // Most counters never drop within a query's range; for those the
        // table stays empty (one read-only pass finds that out).
        let counter_fn = matches!(self.name, "rate" | "increase");
        let drops = if counter_fn && s.floats.windows(2).any(|w| w[1].1 < w[0].1) {
            reset_counts(&s.floats)
        } else {
            Vec::new()
        };
        if s.hists.is_empty() && matches!(self.name, "rate" | "increase" | "delta") {
            let points = self.float_rates(s, &drops, &mut b.present)?;
            if counter_fn && !points.is_empty() {
                self.note_if_not_counter(&s.labels, &mut b.annos);
            }
            return Ok(points);
        }
        if matches!(self.name, "deriv" | "predict_linear") {
            b.time_sums.begin_series(&s.floats);
        }
        if s.hists.is_empty() && matches!(self.name, "deriv" | "predict_linear") {
            return self.float_regressions(s, &mut b.present, &mut b.time_sums);
        }
        let mut points = Vec::new();
        let mut produced_float = false;
        let mut cursor = WindowCursor::default();
        let mut step_params = vec![0.0; self.params.len()];
        let mut meter = WorkMeter::new();
        for (i, present_i) in b.present.iter_mut().enumerate() {
            let ts = g.ts(i);
            let r = arg.ref_time(ts);
            let (floats, hists) = cursor.window(s, r, arg.range_ms);
            if floats.is_empty() && hists.is_empty() {
                continue;
            }
            meter.add(self.ctx, floats.len() + hists.len())?;
            let (f0, f1) = cursor.float_bounds();
            let no_float_drops =
                counter_fn && f1 > f0 && (drops.is_empty() || drops[f1 - 1] == drops[f0]);
            *present_i = true;
            if absent {
                continue;
            }
            for (k, p) in self.params.iter().enumerate() {
                step_params[k] = p.get(i).copied().unwrap_or(f64::NAN);
            }
            let step = Step {
                floats,
                hists,
                range_end: r,
                range_ms: arg.range_ms,
                ts,
                labels: &s.labels,
                pos: self.pos,
                params: &step_params,
                no_float_drops,
                index: i,
            };
            if let Some((f, h)) = kernel(self.name, &step, &mut b.annos, &mut b.time_sums)? {
                produced_float |= h.is_none();
                points.push(Point {
                    step: i as u32,
                    f,
                    h,
                });
            }
        }
        if counter_fn && produced_float {
            self.note_if_not_counter(&s.labels, &mut b.annos);
        }
        Ok(points)
    }

    fn note_if_not_counter(&self, labels: &Labels, annos: &mut Annotations) {
        let name = metric_name(labels);
        if !name.is_empty()
            && !["_total", "_sum", "_count", "_bucket"]
                .iter()
                .any(|suf| name.ends_with(suf))
        {
            annos.info(
                format!(
                    "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
                ),
                self.pos,
            );
        }
    }

    /// `deriv` or `predict_linear` of a float-only series at every step:
    /// the windows are found first, then fitted [`FIT_LANES`] at a time
    /// (see [`fit_many`]), each step's time sums shared with the series
    /// before that had the same times. Same results, bit for bit, as the
    /// step-by-step [`kernel`].
    fn float_regressions(
        &self,
        s: &MSeries,
        present: &mut [bool],
        sums: &mut TimeSumsCache,
    ) -> Result<Vec<Point>, QueryError> {
        let predict = self.name == "predict_linear";
        // (step, the window's samples in `s.floats`, intercept time)
        let mut windows: Vec<(usize, (usize, usize), i64)> = Vec::new();
        let mut cursor = WindowCursor::default();
        for (i, present_i) in present.iter_mut().enumerate() {
            let ts = self.g.ts(i);
            let (floats, _) = cursor.window(s, self.window.ref_time(ts), self.window.range_ms);
            if floats.is_empty() {
                continue;
            }
            *present_i = true;
            if floats.len() < 2 {
                continue;
            }
            let intercept = if predict { ts } else { floats[0].0 };
            windows.push((i, cursor.float_bounds(), intercept));
        }
        let point = |i: usize, (slope, intercept): (f64, f64)| {
            let f = if predict {
                let d = self
                    .params
                    .first()
                    .map_or(0.0, |p| p.get(i).copied().unwrap_or(f64::NAN));
                slope * d + intercept
            } else {
                slope
            };
            Point {
                step: i as u32,
                f,
                h: None,
            }
        };
        let mut points = Vec::with_capacity(windows.len());
        let one = |(i, (a, b), at): (usize, (usize, usize), i64), sums: &mut TimeSumsCache| {
            let w = &s.floats[a..b];
            point(i, fit(w, &sums.get(i, w, at)))
        };
        let mut meter = WorkMeter::new();
        let mut groups = windows.chunks_exact(FIT_LANES);
        for g in &mut groups {
            meter.add(self.ctx, g.iter().map(|&(_, (a, b), _)| b - a).sum())?;
            if g.iter()
                .all(|&(i, (a, b), at)| sums.keep(i, &s.floats[a..b], at))
            {
                let fits = fit_many(
                    &s.floats,
                    std::array::from_fn(|k| g[k].1),
                    std::array::from_fn(|k| sums.kept(g[k].0)),
                );
                points.extend(g.iter().zip(fits).map(|(w, f)| point(w.0, f)));
            } else {
                points.extend(g.iter().map(|&w| one(w, sums)));
            }
        }
        points.extend(groups.remainder().iter().map(|&w| one(w, sums)));
        Ok(points)
    }

    /// `rate`, `increase` or `delta` of a float-only series at every step
    /// (`drops` as [`reset_counts`] gives them, or empty when the series
    /// never drops):
    /// the windows are found first, then the arithmetic runs in a loop of
    /// its own. The extrapolation is a chain of divisions whose latency
    /// dominates; with nothing else in the loop the processor overlaps the
    /// chains of consecutive steps. Same formula as [`extrapolated_rate`]
    /// (one function computes both).
    fn float_rates(
        &self,
        s: &MSeries,
        drops: &[u32],
        present: &mut [bool],
    ) -> Result<Vec<Point>, QueryError> {
        let is_counter = self.name != "delta";
        let is_rate = self.name == "rate";
        let range_ms = self.window.range_ms;
        let mut windows: Vec<RateWindow> = Vec::new();
        let mut cursor = WindowCursor::default();
        let mut meter = WorkMeter::new();
        for (i, present_i) in present.iter_mut().enumerate() {
            let r = self.window.ref_time(self.g.ts(i));
            let (floats, _) = cursor.window(s, r, range_ms);
            if floats.is_empty() {
                continue;
            }
            *present_i = true;
            if floats.len() < 2 {
                continue;
            }
            let (f0, f1) = cursor.float_bounds();
            let (first, last) = (floats[0], floats[floats.len() - 1]);
            let mut result = last.1 - first.1;
            if is_counter && !drops.is_empty() && drops[f1 - 1] != drops[f0] {
                meter.add(self.ctx, floats.len())?;
                for w in floats.windows(2) {
                    if w[1].1 < w[0].1 {
                        result += w[0].1;
                    }
                }
            }
            windows.push(RateWindow {
                step: i as u32,
                first_t: first.0,
                last_t: last.0,
                n_minus_one: floats.len() - 1,
                first_v: first.1,
                result,
                range_end: r,
            });
        }
        let mut factors = FactorMemo::default();
        Ok(windows
            .iter()
            .map(|w| Point {
                step: w.step,
                f: w.result
                    * factors.factor(
                        w.first_t,
                        w.last_t,
                        w.n_minus_one,
                        is_counter.then_some((w.first_v, w.result)),
                        w.range_end,
                        range_ms,
                        is_rate,
                    ),
                h: None,
            })
            .collect())
    }
}

/// Whether `deriv`/`predict_linear` have the two floats a regression
/// needs; notes histograms they ignore either way (as Prometheus does:
/// not for an empty float window).
fn regression_ready(s: &Step<'_>, a: &mut Annotations) -> bool {
    if s.floats.is_empty() {
        return false;
    }
    if !s.hists.is_empty() {
        ignored_hist_info(a, s);
    }
    s.floats.len() >= 2
}

/// One step of a range function. `time_sums` carries the regressions'
/// time sums from series to series (see `regression.rs`).
fn kernel(
    name: &str,
    s: &Step<'_>,
    a: &mut Annotations,
    time_sums: &mut TimeSumsCache,
) -> Result<Out, QueryError> {
    Ok(match name {
        "rate" => extrapolated_rate(s, a, true, true),
        "increase" => extrapolated_rate(s, a, true, false),
        "delta" => extrapolated_rate(s, a, false, false),
        "irate" => instant_value(s, a, true),
        "idelta" => instant_value(s, a, false),
        "deriv" => {
            if !regression_ready(s, a) {
                return Ok(None);
            }
            let intercept_time = s.floats[0].0;
            let (slope, _) = fit(s.floats, &time_sums.get(s.index, s.floats, intercept_time));
            float(slope)
        }
        "predict_linear" => {
            if !regression_ready(s, a) {
                return Ok(None);
            }
            let d = s.params.first().copied().unwrap_or(0.0);
            let (slope, intercept) = fit(s.floats, &time_sums.get(s.index, s.floats, s.ts));
            float(slope * d + intercept)
        }
        "changes" => changes_or_resets(s, false),
        "resets" => changes_or_resets(s, true),
        "count_over_time" => float((s.floats.len() + s.hists.len()) as f64),
        "present_over_time" => float(1.0),
        "last_over_time" => {
            let f = s.floats.last();
            let h = s.hists.last();
            match (f, h) {
                (Some(f), Some(h)) if h.0 > f.0 => Some((0.0, Some(Arc::clone(&h.1)))),
                (Some(f), _) => float(f.1),
                (None, Some(h)) => Some((0.0, Some(Arc::clone(&h.1)))),
                (None, None) => None,
            }
        }
        "first_over_time" => {
            let f = s.floats.first();
            let h = s.hists.first();
            match (f, h) {
                (Some(f), Some(h)) if h.0 < f.0 => Some((0.0, Some(Arc::clone(&h.1)))),
                (Some(f), _) => float(f.1),
                (None, Some(h)) => Some((0.0, Some(Arc::clone(&h.1)))),
                (None, None) => None,
            }
        }
        "ts_of_last_over_time" => {
            let t = s
                .floats
                .last()
                .map(|p| p.0)
                .into_iter()
                .chain(s.hists.last().map(|p| p.0))
                .max();
            t.and_then(|t| float(t as f64 / 1000.0))
        }
        "ts_of_first_over_time" => {
            let t = s
                .floats
                .first()
                .map(|p| p.0)
                .into_iter()
                .chain(s.hists.first().map(|p| p.0))
                .min();
            t.and_then(|t| float(t as f64 / 1000.0))
        }
        "max_over_time" | "min_over_time" | "ts_of_max_over_time" | "ts_of_min_over_time" => {
            if s.floats.is_empty() {
                return Ok(None);
            }
            if !s.hists.is_empty() {
                ignored_hist_info(a, s);
            }
            let is_max = name.contains("max");
            let with_ts = name.starts_with("ts_of");
            let mut best = s.floats[0].1;
            let mut best_t = s.floats[0].0;
            for &(t, v) in s.floats {
                let better = if is_max {
                    if with_ts { v >= best } else { v > best }
                } else if with_ts {
                    v <= best
                } else {
                    v < best
                };
                if better || best.is_nan() {
                    best = v;
                    best_t = t;
                }
            }
            if with_ts {
                float(best_t as f64 / 1000.0)
            } else {
                float(best)
            }
        }
        "sum_over_time" => {
            if !s.floats.is_empty() && !s.hists.is_empty() {
                mixed_warning(a, s);
                return Ok(None);
            }
            if s.floats.is_empty() {
                return Ok(sum_hists(s, a, false));
            }
            let mut sum = 0.0;
            let mut c = 0.0;
            for &(_, v) in s.floats {
                (sum, c) = kahan_inc(v, sum, c);
            }
            if sum.is_infinite() {
                float(sum)
            } else {
                float(sum + c)
            }
        }
        "avg_over_time" => {
            if !s.floats.is_empty() && !s.hists.is_empty() {
                mixed_warning(a, s);
                return Ok(None);
            }
            if s.floats.is_empty() {
                return Ok(sum_hists(s, a, true));
            }
            float(avg_floats(s.floats))
        }
        "quantile_over_time" => {
            let q = s.params.first().copied().unwrap_or(f64::NAN);
            if s.floats.is_empty() {
                return Ok(None);
            }
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                a.warn(
                    format!("quantile value should be between 0 and 1, got {}", fmt_g(q)),
                    s.pos,
                );
            }
            if !s.hists.is_empty() {
                ignored_hist_info(a, s);
            }
            let mut v: Vec<f64> = s.floats.iter().map(|p| p.1).collect();
            float(quantile(q, &mut v))
        }
        "stddev_over_time" | "stdvar_over_time" => {
            if s.floats.is_empty() {
                return Ok(None);
            }
            if !s.hists.is_empty() {
                ignored_hist_info(a, s);
            }
            let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &(_, v) in s.floats {
                count += 1.0;
                let delta = v - (mean + cmean);
                (mean, cmean) = kahan_inc(delta / count, mean, cmean);
                (aux, caux) = kahan_inc(delta * (v - (mean + cmean)), aux, caux);
            }
            let var = (aux + caux) / count;
            float(if name == "stddev_over_time" {
                var.sqrt()
            } else {
                var
            })
        }
        "mad_over_time" => {
            if s.floats.is_empty() {
                return Ok(None);
            }
            if !s.hists.is_empty() {
                ignored_hist_info(a, s);
            }
            if s.floats.iter().any(|p| p.1.is_nan()) {
                return Ok(float(f64::NAN));
            }
            let mut v: Vec<f64> = s.floats.iter().map(|p| p.1).collect();
            let median = quantile(0.5, &mut v);
            for x in v.iter_mut() {
                *x = (*x - median).abs();
            }
            float(quantile(0.5, &mut v))
        }
        "double_exponential_smoothing" => {
            let l = s.floats.len();
            if l < 2 {
                if l == 1 && !s.hists.is_empty() {
                    ignored_hist_info(a, s);
                }
                return Ok(None);
            }
            let sf = s.params.first().copied().unwrap_or(0.5);
            let tf = s.params.get(1).copied().unwrap_or(0.5);
            let mut s0 = 0.0;
            let mut s1 = s.floats[0].1;
            let mut b = s.floats[1].1 - s.floats[0].1;
            for i in 1..l {
                let x = sf * s.floats[i].1;
                if i - 1 > 0 {
                    b = tf * (s1 - s0) + (1.0 - tf) * b;
                }
                let y = (1.0 - sf) * (s1 + b);
                s0 = s1;
                s1 = x + y;
            }
            if !s.hists.is_empty() {
                ignored_hist_info(a, s);
            }
            float(s1)
        }
        other => {
            return Err(QueryError::exec(format!(
                "function {other:?} is not supported"
            )));
        }
    })
}

fn avg_floats(floats: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (floats[0].1, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &(_, v)) in floats.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(v, sum, c);
            if !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn sum_hists(s: &Step<'_>, a: &mut Annotations, avg: bool) -> Out {
    let mut reset = false;
    let mut not_reset = false;
    let mut reconciled = false;
    let mut acc: Option<FloatHistogram> = None;
    for (_, h) in s.hists {
        match h.counter_reset_hint {
            CounterResetHint::Reset => reset = true,
            CounterResetHint::NotReset => not_reset = true,
            _ => {}
        }
        acc = Some(match acc {
            None => (**h).clone(),
            Some(cur) => match hist::add(&cur, h) {
                Ok(r) => {
                    reconciled |= r.nhcb_reconciled;
                    r.h
                }
                Err(_) => {
                    a.warn(
                        format!(
                            "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {:?}",
                            metric_name(s.labels)
                        ),
                        s.pos,
                    );
                    return None;
                }
            },
        });
    }
    if reset && not_reset {
        a.warn(
            "conflicting counter resets during histogram aggregation",
            s.pos,
        );
    }
    if reconciled {
        a.info(
            "mismatched custom buckets were reconciled during aggregation",
            s.pos,
        );
    }
    let mut h = acc?;
    if avg {
        h = hist::scale(&h, 1.0 / s.hists.len() as f64);
    }
    histo(h)
}

fn changes_or_resets(s: &Step<'_>, resets: bool) -> Out {
    // Merge floats and histograms in time order.
    let (mut i, mut j) = (0, 0);
    let mut prev: Option<(f64, Option<&FloatHistogram>)> = None;
    let mut count = 0usize;
    while i < s.floats.len() || j < s.hists.len() {
        let take_float = j >= s.hists.len() || (i < s.floats.len() && s.floats[i].0 < s.hists[j].0);
        let cur: (f64, Option<&FloatHistogram>) = if take_float {
            i += 1;
            (s.floats[i - 1].1, None)
        } else {
            j += 1;
            (0.0, Some(&*s.hists[j - 1].1))
        };
        if let Some(p) = prev {
            match (p.1, cur.1) {
                (None, None) => {
                    if resets {
                        if cur.0 < p.0 {
                            count += 1;
                        }
                    } else if cur.0 != p.0 && !(cur.0.is_nan() && p.0.is_nan()) {
                        count += 1;
                    }
                }
                (Some(ph), Some(ch)) => {
                    if resets {
                        if hist::detect_reset(ch, ph) {
                            count += 1;
                        }
                    } else if !hist::equals(ch, ph) {
                        count += 1;
                    }
                }
                _ => count += 1,
            }
        }
        prev = Some(cur);
    }
    float(count as f64)
}

fn extrapolated_rate(s: &Step<'_>, a: &mut Annotations, is_counter: bool, is_rate: bool) -> Out {
    if !s.floats.is_empty() && !s.hists.is_empty() {
        mixed_warning(a, s);
        return None;
    }
    let (first_t, last_t, n_minus_one);
    let mut result_f = 0.0;
    let mut result_h: Option<FloatHistogram> = None;
    if !s.hists.is_empty() {
        if s.hists.len() < 2 {
            return None;
        }
        n_minus_one = s.hists.len() - 1;
        first_t = s.hists[0].0;
        last_t = s.hists[n_minus_one].0;
        result_h = Some(hist::histogram_rate(
            s.hists,
            is_counter,
            metric_name(s.labels),
            s.pos,
            a,
        )?);
    } else {
        if s.floats.len() < 2 {
            return None;
        }
        n_minus_one = s.floats.len() - 1;
        first_t = s.floats[0].0;
        last_t = s.floats[n_minus_one].0;
        result_f = s.floats[n_minus_one].1 - s.floats[0].1;
        if is_counter && !s.no_float_drops {
            for w in s.floats.windows(2) {
                if w[1].1 < w[0].1 {
                    result_f += w[0].1;
                }
            }
        }
    }
    // The counter's zero point: from the first value and the increase.
    let zero_from = is_counter.then(|| match &result_h {
        Some(h) => (s.hists[0].1.count, h.count),
        None => (s.floats[0].1, result_f),
    });
    let factor = extrapolation_factor(
        first_t,
        last_t,
        n_minus_one,
        zero_from,
        s.range_end,
        s.range_ms,
        is_rate,
    );
    match result_h {
        Some(h) => histo(hist::compact(&hist::scale(&h, factor))),
        None => float(result_f * factor),
    }
}

/// One window of [`RangeJob::float_rates`].
struct RateWindow {
    step: u32,
    first_t: i64,
    last_t: i64,
    n_minus_one: usize,
    first_v: f64,
    /// The increase (reset-corrected for counters).
    result: f64,
    range_end: i64,
}

/// Prometheus' `extrapolatedRate` without its value: what the increase
/// between the first and last sample of the window `(range_end - range_ms,
/// range_end]` is multiplied by. Extrapolation toward the window's edges
/// stops at 1.1 average sample intervals and, for counters (`zero_from` =
/// the first value and the increase, for a histogram their counts), at the
/// point where the counter would have been zero.
#[inline(always)]
fn extrapolation_factor(
    first_t: i64,
    last_t: i64,
    n_minus_one: usize,
    zero_from: Option<(f64, f64)>,
    range_end: i64,
    range_ms: i64,
    is_rate: bool,
) -> f64 {
    FactorMemo::default().factor(
        first_t,
        last_t,
        n_minus_one,
        zero_from,
        range_end,
        range_ms,
        is_rate,
    )
}

/// The divisions of [`extrapolation_factor`] by their inputs, for the
/// steps of one series: a regularly scraped series has the same distances
/// to the window's edges, the same sampled interval and so the same factor
/// at most steps, and a division costs more than comparing its inputs.
/// Same operations on the same inputs, so the same bits.
#[derive(Default)]
struct FactorMemo {
    to_start: Option<(i64, f64)>,
    to_end: Option<(i64, f64)>,
    sampled: Option<((i64, usize), (f64, f64))>,
    factor: Option<((u64, u64, u64), f64)>,
}

/// `f(key)`, computed only when `key` differs from the last one.
#[inline(always)]
fn memo<K: PartialEq + Copy, V: Copy>(
    slot: &mut Option<(K, V)>,
    key: K,
    f: impl FnOnce() -> V,
) -> V {
    match slot {
        Some((k, v)) if *k == key => *v,
        _ => {
            let v = f();
            *slot = Some((key, v));
            v
        }
    }
}

impl FactorMemo {
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn factor(
        &mut self,
        first_t: i64,
        last_t: i64,
        n_minus_one: usize,
        zero_from: Option<(f64, f64)>,
        range_end: i64,
        range_ms: i64,
        is_rate: bool,
    ) -> f64 {
        let range_start = range_end.saturating_sub(range_ms);
        let seconds = |ms: i64| ms as f64 / 1000.0;
        let mut to_start = memo(&mut self.to_start, first_t - range_start, || {
            seconds(first_t - range_start)
        });
        let mut to_end = memo(&mut self.to_end, range_end - last_t, || {
            seconds(range_end - last_t)
        });
        let (sampled, avg_between) =
            memo(&mut self.sampled, (last_t - first_t, n_minus_one), || {
                let sampled = seconds(last_t - first_t);
                (sampled, sampled / n_minus_one as f64)
            });
        let threshold = avg_between * 1.1;
        if to_start >= threshold {
            to_start = avg_between / 2.0;
        }
        if let Some((first, increase)) = zero_from {
            // With two intervals or more, `to_start` is below `sampled`
            // (under 1.1 of half of it, or a quarter of it), and a first
            // value at least the increase puts the zero point at least
            // `sampled` before the first sample: nothing to limit, and
            // the division is skipped (counters are mostly far from zero).
            if !(n_minus_one >= 2 && first >= increase) {
                let mut to_zero = to_start;
                if increase > 0.0 && first >= 0.0 {
                    to_zero = sampled * (first / increase);
                }
                if to_zero < to_start {
                    to_start = to_zero;
                }
            }
        }
        if to_end >= threshold {
            to_end = avg_between / 2.0;
        }
        // A tuple, not an array: an array key is stored and reloaded as a
        // vector, which stalls store forwarding (the hottest instruction
        // of `rate` in a profile).
        let key = (sampled.to_bits(), to_start.to_bits(), to_end.to_bits());
        memo(&mut self.factor, key, || {
            let mut factor = if sampled != 0.0 {
                (sampled + to_start + to_end) / sampled
            } else {
                1.0
            };
            if is_rate {
                factor /= range_ms as f64 / 1000.0;
            }
            factor
        })
    }
}

fn instant_value(s: &Step<'_>, a: &mut Annotations, is_rate: bool) -> Out {
    if s.floats.len() + s.hists.len() < 2 {
        return None;
    }
    // The last two samples, floats and histograms merged by time.
    #[derive(Clone)]
    struct P<'x> {
        t: i64,
        f: f64,
        h: Option<&'x Arc<FloatHistogram>>,
    }
    let mut ss: Vec<P<'_>> = s
        .floats
        .iter()
        .rev()
        .take(2)
        .map(|p| P {
            t: p.0,
            f: p.1,
            h: None,
        })
        .chain(s.hists.iter().rev().take(2).map(|p| P {
            t: p.0,
            f: 0.0,
            h: Some(&p.1),
        }))
        .collect();
    ss.sort_by_key(|p| p.t);
    let ss = &ss[ss.len() - 2..];
    let (prev, last) = (&ss[0], &ss[1]);
    let interval = last.t - prev.t;
    if interval == 0 {
        return None;
    }
    let mut result_f = last.f;
    let mut result_h = None;
    match (prev.h, last.h) {
        (None, None) => {
            if !is_rate || last.f >= prev.f || last.f.is_nan() || prev.f.is_nan() {
                result_f = last.f - prev.f;
            }
        }
        (Some(ph), Some(lh)) => {
            let name = metric_name(s.labels);
            if is_rate
                && (lh.counter_reset_hint == CounterResetHint::Gauge
                    || ph.counter_reset_hint == CounterResetHint::Gauge)
            {
                a.warn(
                    format!("this native histogram metric is not a counter: {name:?}"),
                    s.pos,
                );
            }
            if !is_rate
                && (lh.counter_reset_hint != CounterResetHint::Gauge
                    || ph.counter_reset_hint != CounterResetHint::Gauge)
            {
                a.warn(
                    format!("this native histogram metric is not a gauge: {name:?}"),
                    s.pos,
                );
            }
            let mut h = (**lh).clone();
            if !is_rate || !hist::detect_reset(lh, ph) {
                match hist::sub(lh, ph) {
                    Ok(r) => {
                        if r.nhcb_reconciled {
                            a.info(
                                "mismatched custom buckets were reconciled during subtraction",
                                s.pos,
                            );
                        }
                        h = r.h;
                    }
                    Err(_) => {
                        a.warn(
                            format!(
                                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {name:?}"
                            ),
                            s.pos,
                        );
                        return None;
                    }
                }
            }
            h.counter_reset_hint = CounterResetHint::Gauge;
            result_h = Some(hist::compact(&h));
        }
        _ => {
            mixed_warning(a, s);
            return None;
        }
    }
    if is_rate {
        let secs = interval as f64 / 1000.0;
        match &mut result_h {
            Some(h) => *h = hist::scale(h, 1.0 / secs),
            None => result_f /= secs,
        }
    }
    match result_h {
        Some(h) => histo(h),
        None => float(result_f),
    }
}

/// For each sample, how many times the value dropped (a counter reset) up
/// to it.
fn reset_counts(floats: &[(i64, f64)]) -> Vec<u32> {
    let mut acc = 0u32;
    std::iter::once(0)
        .chain(floats.windows(2).map(|w| {
            acc += u32::from(w[1].1 < w[0].1);
            acc
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step<'a>(floats: &'a [(i64, f64)], start: i64, end: i64, labels: &'a Labels) -> Step<'a> {
        Step {
            floats,
            hists: &[],
            range_end: end,
            range_ms: end - start,
            ts: end,
            labels,
            pos: Pos::default(),
            params: &[],
            no_float_drops: false,
            index: 0,
        }
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // Samples every 60s over a 5m window, counter increasing by 60/min.
        let floats: Vec<(i64, f64)> = (1..=5).map(|i| (i * 60_000, i as f64 * 60.0)).collect();
        let l = Labels::default();
        let s = step(&floats, 0, 300_000, &l);
        let mut a = Annotations::default();
        let (v, _) = extrapolated_rate(&s, &mut a, true, true).unwrap();
        // 240 over 240s sampled; extrapolated to zero at t=0 → 300 over 300s.
        assert!((v - 1.0).abs() < 1e-12, "{v}");
        let (inc, _) = extrapolated_rate(&s, &mut a, true, false).unwrap();
        assert!((inc - 300.0).abs() < 1e-9, "{inc}");
    }

    #[test]
    fn rate_handles_counter_resets() {
        let floats = vec![
            (60_000, 10.0),
            (120_000, 20.0),
            (180_000, 5.0),
            (240_000, 15.0),
        ];
        let l = Labels::default();
        let s = step(&floats, 60_000, 240_000, &l);
        let mut a = Annotations::default();
        let (inc, _) = extrapolated_rate(&s, &mut a, true, false).unwrap();
        // Raw increase 5 plus 20 for the reset; samples touch both window
        // edges, so nothing is extrapolated.
        assert!((inc - 25.0).abs() < 1e-9, "{inc}");
    }

    /// Prometheus' extrapolation as written there, one window at a time.
    fn reference_factor(
        first_t: i64,
        last_t: i64,
        n_minus_one: usize,
        zero_from: Option<(f64, f64)>,
        range_end: i64,
        range_ms: i64,
        is_rate: bool,
    ) -> f64 {
        let range_start = range_end - range_ms;
        let mut to_start = (first_t - range_start) as f64 / 1000.0;
        let mut to_end = (range_end - last_t) as f64 / 1000.0;
        let sampled = (last_t - first_t) as f64 / 1000.0;
        let avg_between = sampled / n_minus_one as f64;
        let threshold = avg_between * 1.1;
        if to_start >= threshold {
            to_start = avg_between / 2.0;
        }
        if let Some((first, increase)) = zero_from {
            let mut to_zero = to_start;
            if increase > 0.0 && first >= 0.0 {
                to_zero = sampled * (first / increase);
            }
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        if to_end >= threshold {
            to_end = avg_between / 2.0;
        }
        let mut factor = (sampled + to_start + to_end) / sampled;
        if is_rate {
            factor /= range_ms as f64 / 1000.0;
        }
        factor
    }

    proptest::proptest! {
        /// The memo and the skipped zero-point division give the bits of
        /// the plain formula, over windows that mostly repeat (regular
        /// scrapes) and sometimes do not, with first values and increases
        /// on both sides of each other.
        #[test]
        fn memoised_factors_are_the_formula_s_bits(
            windows in proptest::collection::vec((
                0i64..4, 1i64..400_000, 1usize..40, 0i64..4,
                proptest::prop_oneof![proptest::prelude::Just(0.0), -10.0f64..1e12, proptest::prelude::Just(f64::INFINITY)],
                proptest::prop_oneof![proptest::prelude::Just(0.0), -10.0f64..1e6, 1e6f64..1e13],
            ), 1..60),
            range_ms in 1i64..600_000,
            is_rate: bool,
            counter: bool,
        ) {
            let mut memo = FactorMemo::default();
            let mut end = 10_000_000i64;
            let base_span = (range_ms / 3).max(40);
            for (jump, span, n, tail, first, increase) in windows {
                // Mostly a regular scrape: the same span and offsets; else
                // another span, or the samples shifted within the window
                // (then only the clamped distance to the start may repeat).
                end += 60_000;
                let span = if jump == 0 { span.min(range_ms).max(n as i64) } else { base_span.max(n as i64) };
                let last_t = end - if tail == 0 { span % (range_ms - span).max(1) } else { 0 };
                let first_t = last_t - span;
                let zero = counter.then_some((first, increase));
                let got = memo.factor(first_t, last_t, n, zero, end, range_ms, is_rate);
                let want = reference_factor(first_t, last_t, n, zero, end, range_ms, is_rate);
                proptest::prop_assert_eq!(got.to_bits(), want.to_bits(), "{} {} {} {:?}", first_t, last_t, n, zero);
            }
        }
    }
}
