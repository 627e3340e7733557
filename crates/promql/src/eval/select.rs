//! Reading series: instant selectors (lookback, staleness), range
//! selectors (left-open windows) and subqueries.

use std::collections::BTreeMap;
use std::sync::Arc;

use miru_model::{FloatHistogram, Labels, is_stale_nan};

use super::rows::{Point, Row, RowVisitor, scatter};
use super::{Evaluator, Grid, MSeries, Val, Vector, steps_to_series};
use crate::plan::{Node, Selector, Subquery};
use crate::{QueryError, Series, SeriesShard};

/// A range-vector argument of a function: its series and how to place the
/// window `(ref - range, ref]` for an evaluation step.
pub(crate) struct RangeArg {
    pub(crate) series: Vec<MSeries>,
    pub(crate) range_ms: i64,
    pub(crate) offset_ms: i64,
    pub(crate) at_ms: Option<i64>,
}

impl RangeArg {
    pub(crate) fn ref_time(&self, ts: i64) -> i64 {
        self.spec().ref_time(ts)
    }

    pub(crate) fn spec(&self) -> WindowSpec {
        WindowSpec {
            range_ms: self.range_ms,
            offset_ms: self.offset_ms,
            at_ms: self.at_ms,
        }
    }
}

/// Where a range argument's window `(ref - range, ref]` lies for an
/// evaluation step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowSpec {
    pub(crate) range_ms: i64,
    pub(crate) offset_ms: i64,
    pub(crate) at_ms: Option<i64>,
}

impl WindowSpec {
    pub(crate) fn ref_time(&self, ts: i64) -> i64 {
        self.at_ms.unwrap_or(ts).saturating_sub(self.offset_ms)
    }

    /// The raw samples the windows of every step of `g` cover:
    /// `[mint, maxt]` for the source.
    pub(crate) fn fetch_bounds(&self, g: Grid) -> (i64, i64) {
        let (lo, hi) = match self.at_ms {
            Some(at) => (at, at),
            None => (g.start, g.last()),
        };
        let lo = lo.saturating_sub(self.offset_ms);
        let hi = hi.saturating_sub(self.offset_ms);
        (lo.saturating_sub(self.range_ms).saturating_add(1), hi)
    }
}

impl MSeries {
    /// A source's series as a range argument holds it: stale markers
    /// removed (they never appear inside a window).
    pub(crate) fn from_source(s: Series) -> MSeries {
        MSeries {
            labels: s.labels,
            floats: s
                .floats
                .into_iter()
                .filter(|x| !is_stale_nan(x.value))
                .map(|x| (x.timestamp_ms, x.value))
                .collect(),
            hists: s
                .histograms
                .into_iter()
                .filter(|x| !is_stale_hist(&x.histogram))
                .map(|x| (x.timestamp_ms, x.histogram))
                .collect(),
            drop_name: false,
        }
    }
}

/// Upper bound on the steps of one subquery evaluation.
const MAX_SUBQUERY_STEPS: u64 = 5_000_000;

pub(crate) type Window<'s> = (&'s [(i64, f64)], &'s [(i64, Arc<FloatHistogram>)]);

/// The samples of `s` in `(end - range, end]`.
pub(crate) fn window(s: &MSeries, end: i64, range: i64) -> Window<'_> {
    let start = end.saturating_sub(range);
    let f0 = s.floats.partition_point(|p| p.0 <= start);
    let f1 = s.floats.partition_point(|p| p.0 <= end);
    let h0 = s.hists.partition_point(|p| p.0 <= start);
    let h1 = s.hists.partition_point(|p| p.0 <= end);
    (&s.floats[f0..f1.max(f0)], &s.hists[h0..h1.max(h0)])
}

/// The windows `(end - range, end]` of one series for non-decreasing
/// `end`s: four indices that only move forward, so a series costs one pass
/// over its samples for all steps instead of a search per step.
#[derive(Debug, Default)]
pub(crate) struct WindowCursor {
    f0: usize,
    f1: usize,
    h0: usize,
    h1: usize,
}

impl WindowCursor {
    pub(crate) fn window<'s>(&mut self, s: &'s MSeries, end: i64, range: i64) -> Window<'s> {
        let start = end.saturating_sub(range);
        while self.f1 < s.floats.len() && s.floats[self.f1].0 <= end {
            self.f1 += 1;
        }
        while self.f0 < self.f1 && s.floats[self.f0].0 <= start {
            self.f0 += 1;
        }
        while self.h1 < s.hists.len() && s.hists[self.h1].0 <= end {
            self.h1 += 1;
        }
        while self.h0 < self.h1 && s.hists[self.h0].0 <= start {
            self.h0 += 1;
        }
        (&s.floats[self.f0..self.f1], &s.hists[self.h0..self.h1])
    }

    /// Indices of the last window's floats in the series.
    pub(crate) fn float_bounds(&self) -> (usize, usize) {
        (self.f0, self.f1)
    }
}

fn is_stale_hist(h: &FloatHistogram) -> bool {
    is_stale_nan(h.sum)
}

impl Evaluator<'_> {
    /// All series of the selector with samples in `[mint, maxt]`, sorted by
    /// labels; a large selection is read in shards on several threads.
    pub(crate) fn fetch(
        &mut self,
        sel: &Selector,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, QueryError> {
        if sel.matcher_sets.len() == 1 {
            let shards =
                self.src
                    .select_shards(&sel.matcher_sets[0], mint, maxt, self.opts.parallelism)?;
            return self.load(shards);
        }
        let mut union: BTreeMap<Labels, Series> = BTreeMap::new();
        for set in &sel.matcher_sets {
            for s in self.src.select(set, mint, maxt)? {
                union.entry(s.labels.clone()).or_insert(s);
            }
        }
        let out: Vec<Series> = union.into_values().collect();
        self.count_loaded(&out)?;
        Ok(out)
    }

    /// The series of `shards`, read on several threads, concatenated in
    /// order, and counted against `max_samples`.
    pub(crate) fn load(
        &mut self,
        shards: Vec<Box<dyn SeriesShard + Send + '_>>,
    ) -> Result<Vec<Series>, QueryError> {
        let mut out = Vec::new();
        for part in super::parallel::map_in_order(shards, |shard| {
            let mut part = Vec::new();
            shard
                .for_each(&mut |s| {
                    part.push(s);
                    Ok(())
                })
                .map(|()| part)
        }) {
            out.extend(part?);
        }
        self.count_loaded(&out)?;
        Ok(out)
    }

    fn count_loaded(&mut self, series: &[Series]) -> Result<(), QueryError> {
        let n: usize = series
            .iter()
            .map(|s| s.floats.len() + s.histograms.len())
            .sum();
        self.count_samples(n)
    }

    /// An instant selector at every step. With `timestamps`, each value is
    /// the sample's timestamp in seconds (for `timestamp()`).
    pub(crate) fn eval_vector_selector(
        &mut self,
        sel: &Selector,
        g: Grid,
        timestamps: bool,
    ) -> Result<Vec<Vector>, QueryError> {
        let mut out: Vec<Vector> = vec![Vec::new(); g.len()];
        self.selector_rows(sel, g, timestamps, &mut |_, row| {
            scatter(row, &mut out);
            Ok(())
        })?;
        Ok(out)
    }

    /// An instant selector at every step, one row per series.
    pub(crate) fn selector_rows(
        &mut self,
        sel: &Selector,
        g: Grid,
        timestamps: bool,
        visit: &mut RowVisitor<'_>,
    ) -> Result<(), QueryError> {
        let n = g.len();
        let lookback = self.opts.lookback_delta_ms;
        // Non-decreasing (offset and `@` are the same for every step), so
        // each series is read with forward-moving cursors.
        let refs: Vec<i64> = (0..n)
            .map(|i| sel.at_ms.unwrap_or(g.ts(i)).saturating_sub(sel.offset_ms))
            .collect();
        let (lo, hi) = match (refs.first(), refs.last()) {
            (Some(a), Some(b)) => (*a, *b),
            _ => return Ok(()),
        };
        let series = self.fetch(sel, lo.saturating_sub(lookback).saturating_add(1), hi)?;
        let mut row = Row::default();
        for s in series {
            self.check()?;
            row.points.clear();
            let (mut fi, mut hi) = (0, 0);
            for (i, &r) in refs.iter().enumerate() {
                while fi < s.floats.len() && s.floats[fi].timestamp_ms <= r {
                    fi += 1;
                }
                while hi < s.histograms.len() && s.histograms[hi].timestamp_ms <= r {
                    hi += 1;
                }
                let f = fi.checked_sub(1).map(|k| &s.floats[k]);
                let h = hi.checked_sub(1).map(|k| &s.histograms[k]);
                let (t, f, h) = match (f, h) {
                    (Some(f), Some(h)) if h.timestamp_ms > f.timestamp_ms => {
                        (h.timestamp_ms, 0.0, Some(&h.histogram))
                    }
                    (Some(f), _) => (f.timestamp_ms, f.value, None),
                    (None, Some(h)) => (h.timestamp_ms, 0.0, Some(&h.histogram)),
                    (None, None) => continue,
                };
                if t <= r.saturating_sub(lookback) {
                    continue;
                }
                if h.is_none() && is_stale_nan(f) || h.is_some_and(|h| is_stale_hist(h)) {
                    continue;
                }
                row.points.push(if timestamps {
                    Point {
                        step: i as u32,
                        f: t as f64 / 1000.0,
                        h: None,
                    }
                } else {
                    Point {
                        step: i as u32,
                        f,
                        h: h.map(Arc::clone),
                    }
                });
            }
            // Step vectors hold memory too: they count against max_samples.
            self.count_samples(row.points.len())?;
            if row.points.is_empty() {
                continue;
            }
            row.labels = s.labels;
            row.drop_name = false;
            visit(self, &mut row)?;
        }
        Ok(())
    }

    /// The raw series a range selector covers over the whole grid, stale
    /// markers removed (they never appear inside a window).
    pub(crate) fn fetch_range(
        &mut self,
        sel: &Selector,
        range_ms: i64,
        g: Grid,
    ) -> Result<RangeArg, QueryError> {
        let spec = WindowSpec {
            range_ms,
            offset_ms: sel.offset_ms,
            at_ms: sel.at_ms,
        };
        let (mint, maxt) = spec.fetch_bounds(g);
        let series = self
            .fetch(sel, mint, maxt)?
            .into_iter()
            .map(MSeries::from_source)
            .collect();
        Ok(RangeArg {
            series,
            range_ms,
            offset_ms: sel.offset_ms,
            at_ms: sel.at_ms,
        })
    }

    /// A range selector as the result of an instant query.
    pub(crate) fn eval_matrix_selector_top(
        &mut self,
        sel: &Selector,
        range_ms: i64,
        g: Grid,
    ) -> Result<Vec<MSeries>, QueryError> {
        let arg = self.fetch_range(sel, range_ms, g)?;
        let r = arg.ref_time(g.start);
        let mut out = Vec::new();
        for s in &arg.series {
            let (f, h) = window(s, r, range_ms);
            if f.is_empty() && h.is_empty() {
                continue;
            }
            out.push(MSeries {
                labels: s.labels.clone(),
                floats: f.to_vec(),
                hists: h.to_vec(),
                drop_name: false,
            });
        }
        Ok(out)
    }

    /// Evaluates the inner expression of a subquery on its own grid: steps
    /// aligned to multiples of the subquery step, covering the windows of
    /// every outer step.
    pub(crate) fn eval_subquery(
        &mut self,
        sq: &Subquery,
        g: Grid,
    ) -> Result<Vec<MSeries>, QueryError> {
        let (lo, hi) = match sq.at_ms {
            Some(at) => (at, at),
            None => (g.start, g.last()),
        };
        let hi = hi.saturating_sub(sq.offset_ms);
        let first_excl = lo.saturating_sub(sq.offset_ms).saturating_sub(sq.range_ms);
        let step = sq.step_ms.max(1);
        let start = first_excl
            .div_euclid(step)
            .saturating_mul(step)
            .saturating_add(step);
        if start > hi {
            return Ok(Vec::new());
        }
        let inner = Grid {
            start,
            end: hi,
            step,
        };
        // Each inner step holds a vector; refuse grids no sample budget
        // could pay for before allocating them.
        let steps = (hi.saturating_sub(start) / step) as u64 + 1;
        if steps > (self.opts.max_samples as u64).min(MAX_SUBQUERY_STEPS) {
            return Err(QueryError::TooManySamples {
                limit: self.opts.max_samples,
            });
        }
        let val = self.eval(&sq.expr, inner)?;
        Ok(steps_to_series(val, inner))
    }

    /// The range-vector argument of a function, from a selector or a
    /// subquery.
    pub(crate) fn range_arg(&mut self, node: &Node, g: Grid) -> Result<RangeArg, QueryError> {
        match node.unwrapped() {
            Node::Matrix { sel, range_ms } => self.fetch_range(sel, *range_ms, g),
            Node::Subquery(sq) => {
                let series = self.eval_subquery(sq, g)?;
                Ok(RangeArg {
                    series,
                    range_ms: sq.range_ms,
                    offset_ms: sq.offset_ms,
                    at_ms: sq.at_ms,
                })
            }
            _ => match self.eval(node, g)? {
                Val::Matrix(series) => Ok(RangeArg {
                    series,
                    range_ms: 0,
                    offset_ms: 0,
                    at_ms: None,
                }),
                _ => Err(QueryError::exec("BUG: expected a range vector")),
            },
        }
    }
}
