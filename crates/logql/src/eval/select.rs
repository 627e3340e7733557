//! Reads the streams of a range aggregation, runs the pipeline over each
//! entry and turns the kept ones into samples (1 per line, its bytes, or
//! the unwrapped value), grouped into series by their final labels.

use std::borrow::Cow;

use miru_model::{Label, Labels, LogEntry, Matcher};

use super::{Budget, QueryContext};
use crate::HashMap;
use crate::error::{QueryError, series_text};
use crate::pipeline::labels::{ERROR_DETAILS_LABEL, ERROR_LABEL, LabelSet};
use crate::pipeline::{Pipeline, SelectionHints, label_filter};
use crate::source::LogSource;
use crate::syntax::ast::{Conversion, Grouping, LogExpr, RangeAgg, RangeOp, Stage};
use crate::syntax::literals::{go_duration_error, parse_bytes, parse_go_duration, parse_go_float};

const EXTRACTION_ERR: &str = "SampleExtractionErr";

/// One series of raw samples, timestamps ascending.
pub(super) struct RawSeries {
    pub(super) labels: Labels,
    pub(super) points: Vec<(i64, f64)>,
}

/// Loki refuses selectors whose every matcher also matches the empty value.
pub(super) fn check_selector(matchers: &[Matcher]) -> Result<(), QueryError> {
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(QueryError::Invalid(
            "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into(),
        ));
    }
    Ok(())
}

pub(super) fn group_labels(labels: &Labels, g: &Grouping) -> Labels {
    let v: Vec<Label> = labels
        .iter()
        .filter(|l| g.labels.iter().any(|n| **n == *l.name) != g.without)
        .cloned()
        .collect();
    Labels::from_sorted(v)
}

/// Runs one entry through the pipeline; the labels of the kept line.
pub(super) fn run_entry<'e>(
    pipeline: &Pipeline,
    stream: &LabelSet,
    entry: &'e miru_model::LogEntry,
) -> Option<(Cow<'e, str>, LabelSet)> {
    let mut labels = stream.clone();
    for (k, v) in &entry.structured_metadata {
        labels.add_metadata(k, v);
    }
    let mut line = Cow::Borrowed(entry.line.as_str());
    pipeline
        .process(entry.timestamp_ns, &mut line, &mut labels)
        .then_some((line, labels))
}

fn fail_on_error(labels: &LabelSet) -> Result<(), QueryError> {
    if let Some(e) = &labels.error {
        return Err(QueryError::Pipeline {
            error: e.clone(),
            series: series_text(&labels.to_labels()),
        });
    }
    Ok(())
}

fn convert(conv: Conversion, v: &str) -> Result<f64, String> {
    match conv {
        Conversion::Float => parse_go_float(v)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {v:?}: invalid syntax")),
        Conversion::Bytes => parse_bytes(v),
        Conversion::Duration => parse_go_duration(v)
            .map(|ns| ns / 1e9)
            .map_err(|e| go_duration_error(v, e)),
    }
}

/// Whether a stage looks at the line (or may put it into a label): all
/// but label filters, `drop` and `keep`.
fn reads_line(s: &Stage) -> bool {
    !matches!(s, Stage::LabelFilter(_) | Stage::Drop(_) | Stage::Keep(_))
}

/// Samples of `agg` for evaluation times in `[first_ns, last_ns]`.
pub(super) fn select_samples(
    src: &dyn LogSource,
    agg: &RangeAgg,
    first_ns: i64,
    last_ns: i64,
    ctx: &QueryContext,
    budget: &mut Budget,
) -> Result<Vec<RawSeries>, QueryError> {
    let log: &LogExpr = &agg.log;
    check_selector(&log.matchers)?;
    let pipeline = Pipeline::for_log(log).map_err(QueryError::Invalid)?;
    let post: Vec<label_filter::Compiled> = match &agg.unwrap {
        Some(u) => u
            .post_filters
            .iter()
            .map(label_filter::compile)
            .collect::<Result<_, _>>()
            .map_err(QueryError::Invalid)?,
        None => Vec::new(),
    };
    let start_ns = first_ns
        .saturating_sub(agg.offset_ns)
        .saturating_sub(agg.range_ns)
        .saturating_add(1);
    let end_ns = last_ns.saturating_sub(agg.offset_ns).saturating_add(1);
    let bytes = matches!(agg.op, RangeOp::BytesOverTime | RangeOp::BytesRate);
    let hints = SelectionHints::of(log);
    let req = hints.request(
        log,
        start_ns,
        end_ns,
        bytes || log.stages.iter().any(reads_line),
    );
    let streams: Vec<(Labels, Vec<LogEntry>)> = src.select(&req)?.collect::<Result<_, _>>()?;
    let work = Extract {
        pipeline: &pipeline,
        agg,
        post: &post,
        bytes,
        ctx,
        allowance: budget.samples_left(),
    };
    // Streams are cut into contiguous runs of about equal entry counts, one
    // per thread; merging the runs in order gives the series, their order
    // and the first error exactly as one pass over the streams would.
    let chunks = split_streams(&streams, threads_for(&streams, budget.parallelism()));
    let locals: Vec<Result<Local, QueryError>> = if chunks.len() <= 1 {
        vec![work.run(&streams)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|r| {
                    let work = &work;
                    let part = &streams[r.clone()];
                    scope.spawn(move || work.run(part))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("BUG: sample extraction thread panicked"))
                .collect()
        })
    };
    let mut by_labels: HashMap<Labels, usize> = HashMap::default();
    let mut out: Vec<RawSeries> = Vec::new();
    for local in locals {
        let local = local?;
        budget.add_samples(local.samples)?;
        for series in local.series {
            match by_labels.get(&series.labels) {
                Some(&i) => out[i].points.extend(series.points),
                None => {
                    budget.add_series(1)?;
                    by_labels.insert(series.labels.clone(), out.len());
                    out.push(series);
                }
            }
        }
    }
    for s in &mut out {
        if !s.points.is_sorted_by_key(|p| p.0) {
            s.points.sort_by_key(|p| p.0);
        }
    }
    debug_assert!(!out.iter().any(
        |s| s.labels.get(ERROR_LABEL).is_some() || s.labels.get(ERROR_DETAILS_LABEL).is_some()
    ));
    Ok(out)
}

/// What one thread extracted from its run of streams: series in order of
/// first appearance, and the samples counted.
struct Local {
    series: Vec<RawSeries>,
    samples: usize,
}

/// The per-entry work of [`select_samples`], shared by its threads.
struct Extract<'a> {
    pipeline: &'a Pipeline,
    agg: &'a RangeAgg,
    post: &'a [label_filter::Compiled],
    bytes: bool,
    ctx: &'a QueryContext,
    /// Samples the query may still take; a run stops past it.
    allowance: usize,
}

/// Where a kept entry's sample goes: a series the run already has, or one
/// with these labels (found or added once the sample is counted).
enum Target {
    Known(usize),
    Labels(Labels),
}

impl Extract<'_> {
    fn run(&self, streams: &[(Labels, Vec<LogEntry>)]) -> Result<Local, QueryError> {
        let mut by_labels: HashMap<Labels, usize> = HashMap::default();
        let mut local = Local {
            series: Vec::new(),
            samples: 0,
        };
        // With only line filters and no unwrap, an entry's labels are its
        // stream's plus its structured metadata, so entries of a stream
        // with equal metadata (the common case: one `detected_level`) share
        // a series, found once instead of building and hashing the labels
        // of every line.
        let labels_from_metadata = self.agg.unwrap.is_none() && self.pipeline.only_filters_lines();
        for (stream_labels, entries) in streams {
            let base = LabelSet::from_stream(stream_labels);
            let mut known: HashMap<&[(String, String)], usize> = HashMap::default();
            let mut last: Option<(&[(String, String)], usize)> = None;
            for (n, entry) in entries.iter().enumerate() {
                if n % 1024 == 0 {
                    self.ctx.check()?;
                }
                let (target, value) = if labels_from_metadata {
                    if !self.pipeline.keeps_line(&entry.line) {
                        continue;
                    }
                    let value = if self.bytes {
                        entry.line.len() as f64
                    } else {
                        1.0
                    };
                    let meta = entry.structured_metadata.as_slice();
                    let target = match last.filter(|(m, _)| *m == meta) {
                        Some((_, i)) => Target::Known(i),
                        None => match known.get(meta) {
                            Some(&i) => Target::Known(i),
                            None => {
                                let mut labels = base.clone();
                                for (k, v) in meta {
                                    labels.add_metadata(k, v);
                                }
                                Target::Labels(self.series_labels(&labels)?)
                            }
                        },
                    };
                    (target, value)
                } else {
                    let Some((line, mut labels)) = run_entry(self.pipeline, &base, entry) else {
                        continue;
                    };
                    let value = match &self.agg.unwrap {
                        None if self.bytes => line.len() as f64,
                        None => 1.0,
                        Some(u) => {
                            let Some(raw) = labels.get(&u.label).filter(|v| !v.is_empty()) else {
                                continue;
                            };
                            let v = match convert(u.conversion, raw) {
                                Ok(v) => v,
                                Err(e) => {
                                    labels.set_error(EXTRACTION_ERR, e);
                                    0.0
                                }
                            };
                            if !self.post.iter().all(|f| f.keep(&mut labels)) {
                                continue;
                            }
                            labels.remove(&u.label);
                            v
                        }
                    };
                    (Target::Labels(self.series_labels(&labels)?), value)
                };
                local.samples += 1;
                if local.samples > self.allowance {
                    // The merge adds this run's count and names the limit.
                    return Ok(local);
                }
                let idx = match target {
                    Target::Known(i) => i,
                    Target::Labels(l) => match by_labels.get(&l) {
                        Some(i) => *i,
                        None => {
                            by_labels.insert(l.clone(), local.series.len());
                            local.series.push(RawSeries {
                                labels: l,
                                points: Vec::new(),
                            });
                            local.series.len() - 1
                        }
                    },
                };
                if labels_from_metadata {
                    let meta = entry.structured_metadata.as_slice();
                    if last.is_none_or(|(m, _)| m != meta) {
                        known.insert(meta, idx);
                        last = Some((meta, idx));
                    }
                }
                local.series[idx].points.push((entry.timestamp_ns, value));
            }
        }
        Ok(local)
    }

    /// The labels of the series a kept entry's sample belongs to; an error
    /// label left by the pipeline fails the query, as in Loki.
    fn series_labels(&self, labels: &LabelSet) -> Result<Labels, QueryError> {
        fail_on_error(labels)?;
        let l = labels.to_labels();
        Ok(match &self.agg.grouping {
            Some(g) => group_labels(&l, g),
            None => l,
        })
    }
}

/// Entries below which a selection is not worth a second thread.
const PARALLEL_MIN_ENTRIES: usize = 16_384;

/// Threads for a selection: `parallelism` (0: one per core), fewer for
/// few streams, one for a small selection.
pub(super) fn threads_for(streams: &[(Labels, Vec<LogEntry>)], parallelism: usize) -> usize {
    let entries: usize = streams.iter().map(|(_, e)| e.len()).sum();
    if entries < PARALLEL_MIN_ENTRIES {
        return 1;
    }
    let threads = match parallelism {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    threads.min(streams.len()).max(1)
}

/// Contiguous index ranges of `streams`, `n` at most, of about equal
/// entry counts.
pub(super) fn split_streams(
    streams: &[(Labels, Vec<LogEntry>)],
    n: usize,
) -> Vec<std::ops::Range<usize>> {
    let total: usize = streams.iter().map(|(_, e)| e.len()).sum();
    let per = total.div_ceil(n.max(1)).max(1);
    let mut out = Vec::with_capacity(n);
    let (mut from, mut acc) = (0, 0);
    for (i, (_, e)) in streams.iter().enumerate() {
        acc += e.len();
        if acc >= per && out.len() + 1 < n {
            out.push(from..i + 1);
            from = i + 1;
            acc = 0;
        }
    }
    if from < streams.len() {
        out.push(from..streams.len());
    }
    out
}
