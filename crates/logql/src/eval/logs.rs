//! Log queries: the selected lines after the pipeline, `limit` of them in
//! `direction` order, grouped into streams by their final labels.

use std::sync::atomic::Ordering;

use miru_model::Labels;

use super::Budget;
use super::QueryContext;
use super::select::{check_selector, run_entry};
use crate::HashMap;
use crate::error::QueryError;
use crate::pipeline::labels::{Category, LabelSet};
use crate::pipeline::{Pipeline, label_filter_hints, line_filter_hints};
use crate::source::{LogSource, SelectRequest};
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
    let hints = line_filter_hints(log);
    let label_hints = label_filter_hints(log);
    let req = SelectRequest {
        matchers: &log.matchers,
        start_ns: q.start_ns,
        end_ns: q.end_ns,
        line_filters: &hints,
        label_equals: &label_hints,
        lines_needed: true,
    };
    let mut lines: Vec<(Labels, LogLine)> = Vec::new();
    for item in src.select(&req)? {
        let (stream_labels, entries) = item?;
        if ctx
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(QueryError::Canceled);
        }
        let base = LabelSet::from_stream(&stream_labels);
        for e in &entries {
            let Some((line, labels)) = run_entry(&pipeline, &base, e) else {
                continue;
            };
            budget.add_samples(1)?;
            lines.push((
                labels.to_labels(),
                LogLine {
                    timestamp_ns: e.timestamp_ns,
                    line,
                    stream_labels: labels.category_labels(Category::Stream),
                    structured_metadata: labels.category_labels(Category::Metadata),
                    parsed: labels.category_labels(Category::Parsed),
                },
            ));
        }
        // Keep memory bounded by the limit: only the best `limit` lines can win.
        if lines.len() > q.limit.saturating_mul(2).max(1024) {
            trim(&mut lines, q);
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

fn trim(lines: &mut Vec<(Labels, LogLine)>, q: &LogQuery) {
    match q.direction {
        Direction::Forward => lines.sort_by_key(|l| l.1.timestamp_ns),
        Direction::Backward => lines.sort_by_key(|l| std::cmp::Reverse(l.1.timestamp_ns)),
    }
    lines.truncate(q.limit);
}
