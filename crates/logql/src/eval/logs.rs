//! Log queries: the selected lines after the pipeline, `limit` of them in
//! `direction` order, grouped into streams by their final labels.

use miru_model::{Labels, LogEntry};

use super::Budget;
use super::QueryContext;
use super::select::{check_selector, run_entry, split_streams, threads_for};
use crate::HashMap;
use crate::error::QueryError;
use crate::pipeline::labels::{Category, LabelSet};
use crate::pipeline::{Pipeline, SelectionHints};
use crate::source::LogSource;
use crate::syntax::ast::LogExpr;
use crate::value::{LogLine, Stream, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    Forward,
    #[default]
    Backward,
}

/// The range and shape of a log query.
#[derive(Debug, Clone, Copy)]
pub struct LogQuery {
    /// Inclusive.
    pub start_ns: i64,
    /// Exclusive.
    pub end_ns: i64,
    /// Lines returned at most, over all streams.
    pub limit: usize,
    pub direction: Direction,
}

pub(super) fn eval_logs(
    src: &dyn LogSource,
    log: &LogExpr,
    q: &LogQuery,
    ctx: &QueryContext,
    budget: &mut Budget,
) -> Result<Value, QueryError> {
    check_selector(&log.matchers)?;
    let pipeline = Pipeline::for_log(log).map_err(QueryError::Invalid)?;
    let hints = SelectionHints::of(log);
    let mut lines: Vec<(Labels, LogLine)> = Vec::new();
    let mut slices = Slices::new(q);
    // Lines that passed the pipeline, before trimming to the limit.
    let mut kept = 0u64;
    while let Some((start_ns, end_ns)) = slices.next(kept) {
        let req = hints.request(log, start_ns, end_ns, true);
        let streams: Vec<(Labels, Vec<LogEntry>)> = src.select(&req)?.collect::<Result<_, _>>()?;
        // The pipeline runs over contiguous runs of streams, one per
        // thread; the runs' lines, taken in order, are those one pass over
        // the streams keeps (ties in time keep their order).
        let allowance = budget.samples_left();
        let chunks = split_streams(&streams, threads_for(&streams, budget.parallelism()));
        let run = |part: &[(Labels, Vec<LogEntry>)]| keep_lines(&pipeline, part, q, ctx, allowance);
        let locals: Vec<Result<Kept, QueryError>> = if chunks.len() <= 1 {
            vec![run(&streams)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|r| {
                        let (run, part) = (&run, &streams[r.clone()]);
                        scope.spawn(move || run(part))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("BUG: log pipeline thread panicked"))
                    .collect()
            })
        };
        for local in locals {
            let local = local?;
            budget.add_samples(local.count)?;
            kept += local.count as u64;
            lines.extend(local.lines);
            if lines.len() > trim_above(q) {
                trim(&mut lines, q);
            }
        }
        // Every line of the slices not read yet is older (backward) or
        // newer (forward) than all of these: with `limit` of them, done.
        if lines.len() >= q.limit {
            break;
        }
    }
    trim(&mut lines, q);
    let mut index: HashMap<Labels, usize> = HashMap::default();
    let mut streams: Vec<Stream> = Vec::new();
    for (l, line) in lines {
        let i = *index.entry(l.clone()).or_insert_with(|| {
            streams.push(Stream {
                labels: l,
                entries: Vec::new(),
            });
            streams.len() - 1
        });
        streams[i].entries.push(line);
    }
    Ok(Value::Streams(streams))
}

/// Lines one run of streams kept, the best `limit` of them at most past
/// [`trim_above`], and how many passed the pipeline.
struct Kept {
    lines: Vec<(Labels, LogLine)>,
    count: usize,
}

/// Keeps memory bounded by the limit: only the best `limit` lines can win.
fn trim_above(q: &LogQuery) -> usize {
    q.limit.saturating_mul(2).max(1024)
}

/// Runs the pipeline over `streams`; stops past `allowance` lines (the
/// caller's count then names the limit).
fn keep_lines(
    pipeline: &Pipeline,
    streams: &[(Labels, Vec<LogEntry>)],
    q: &LogQuery,
    ctx: &QueryContext,
    allowance: usize,
) -> Result<Kept, QueryError> {
    let mut out = Kept {
        lines: Vec::new(),
        count: 0,
    };
    for (stream_labels, entries) in streams {
        ctx.check()?;
        let base = LabelSet::from_stream(stream_labels);
        for e in entries {
            let Some((line, labels)) = run_entry(pipeline, &base, e) else {
                continue;
            };
            out.count += 1;
            if out.count > allowance {
                return Ok(out);
            }
            out.lines.push((
                labels.to_labels(),
                LogLine {
                    timestamp_ns: e.timestamp_ns,
                    line: line.into_owned(),
                    stream_labels: labels.category_labels(Category::Stream),
                    structured_metadata: labels.category_labels(Category::Metadata),
                    parsed: labels.category_labels(Category::Parsed),
                },
            ));
        }
        if out.lines.len() > trim_above(q) {
            trim(&mut out.lines, q);
        }
    }
    Ok(out)
}

/// The query's range in the order it is read, from the end backward
/// (from the start forward): first 1/64 of it, then as far as the lines
/// kept so far say `limit` lines will be reached (with a margin), at least
/// doubling what was read, and all the rest when nothing was kept yet. A
/// query that finds its lines near the reading end reads little; one that
/// does not reads its range in two selections (pages across a slice
/// boundary are read by both).
struct Slices {
    start_ns: i64,
    end_ns: i64,
    direction: Direction,
    limit: u64,
    span: i128,
    /// Distance from the reading end covered so far.
    done: i128,
    finished: bool,
}

impl Slices {
    fn new(q: &LogQuery) -> Slices {
        Slices {
            start_ns: q.start_ns,
            end_ns: q.end_ns,
            direction: q.direction,
            limit: q.limit as u64,
            span: (i128::from(q.end_ns) - i128::from(q.start_ns)).max(0),
            done: 0,
            finished: false,
        }
    }

    /// The next `[start, end)` to read given the lines kept so far.
    fn next(&mut self, kept: u64) -> Option<(i64, i64)> {
        if self.finished {
            return None;
        }
        let next = if self.done == 0 {
            (self.span / 64).max(1)
        } else if kept == 0 {
            self.span
        } else {
            // Lines are assumed evenly spread: the distance for `limit` of
            // them, plus a quarter.
            let needed = self.done * i128::from(self.limit) / i128::from(kept) * 5 / 4;
            needed.max(2 * self.done)
        }
        .min(self.span);
        let (from, to) = (self.done, next);
        self.done = next;
        self.finished = next >= self.span;
        let at = |d: i128| match self.direction {
            Direction::Backward => (i128::from(self.end_ns) - d) as i64,
            Direction::Forward => (i128::from(self.start_ns) + d) as i64,
        };
        Some(match self.direction {
            Direction::Backward => (at(to), at(from)),
            Direction::Forward => (at(from), at(to)),
        })
    }
}

fn trim(lines: &mut Vec<(Labels, LogLine)>, q: &LogQuery) {
    match q.direction {
        Direction::Forward => lines.sort_by_key(|l| l.1.timestamp_ns),
        Direction::Backward => lines.sort_by_key(|l| std::cmp::Reverse(l.1.timestamp_ns)),
    }
    lines.truncate(q.limit);
}
