//! Reads the streams of a range aggregation, runs the pipeline over each
//! entry and turns the kept ones into samples (1 per line, its bytes, or
//! the unwrapped value), grouped into series by their final labels.

use std::sync::atomic::Ordering;

use miru_model::{Label, Labels, Matcher};

use super::{Budget, QueryContext};
use crate::HashMap;
use crate::error::{QueryError, series_text};
use crate::pipeline::labels::{ERROR_DETAILS_LABEL, ERROR_LABEL, LabelSet};
use crate::pipeline::{Pipeline, label_filter, label_filter_hints, line_filter_hints};
use crate::source::{LogSource, SelectRequest};
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
pub(super) fn run_entry(
    pipeline: &Pipeline,
    stream: &LabelSet,
    entry: &miru_model::LogEntry,
) -> Option<(String, LabelSet)> {
    let mut labels = stream.clone();
    for (k, v) in &entry.structured_metadata {
        labels.add_metadata(k, v);
    }
    let mut line = entry.line.clone();
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
    let hints = line_filter_hints(log);
    let label_hints = label_filter_hints(log);
    let start_ns = first_ns
        .saturating_sub(agg.offset_ns)
        .saturating_sub(agg.range_ns)
        .saturating_add(1);
    let end_ns = last_ns.saturating_sub(agg.offset_ns).saturating_add(1);
    let bytes = matches!(agg.op, RangeOp::BytesOverTime | RangeOp::BytesRate);
    let req = SelectRequest {
        matchers: &log.matchers,
        start_ns,
        end_ns,
        line_filters: &hints,
        label_equals: &label_hints,
        lines_needed: bytes || log.stages.iter().any(reads_line),
    };
    let mut by_labels: HashMap<Labels, usize> = HashMap::default();
    let mut out: Vec<RawSeries> = Vec::new();
    for item in src.select(&req)? {
        let (stream_labels, entries) = item?;
        let base = LabelSet::from_stream(&stream_labels);
        for (n, entry) in entries.iter().enumerate() {
            if n % 1024 == 0
                && ctx
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(QueryError::Canceled);
            }
            let Some((line, mut labels)) = run_entry(&pipeline, &base, entry) else {
                continue;
            };
            let value = match &agg.unwrap {
                None if bytes => line.len() as f64,
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
                    if !post.iter().all(|f| f.keep(&mut labels)) {
                        continue;
                    }
                    labels.remove(&u.label);
                    v
                }
            };
            fail_on_error(&labels)?;
            let mut l = labels.to_labels();
            if let Some(g) = &agg.grouping {
                l = group_labels(&l, g);
            }
            budget.add_samples(1)?;
            let idx = match by_labels.get(&l) {
                Some(i) => *i,
                None => {
                    budget.add_series(1)?;
                    by_labels.insert(l.clone(), out.len());
                    out.push(RawSeries {
                        labels: l,
                        points: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            out[idx].points.push((entry.timestamp_ns, value));
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
