//! Prometheus' promqltest scripts (`load`, `clear`, `eval`), the format of
//! the upstream conformance corpus: [`parse_script`] turns text into
//! commands, [`run_eval`] evaluates one `eval` command and checks it as
//! Prometheus' runner does (including its re-evaluations of instant queries
//! in range mode and with `@` pinned), [`check_eval`] compares one result.
//! The corpus runner itself is `tests/conformance.rs`.

mod check;
mod parse;
mod run;

use std::sync::Arc;

use miru_model::{FloatHistogram, Labels};

pub use check::check_eval;
pub use parse::{
    classic_to_nhcb, parse_duration_ms, parse_histogram, parse_labels, parse_script, parse_values,
};
pub use run::{load, run_eval, step_invariance_testable};

/// One value of a series line.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample at this step.
    Omitted,
    Float(f64),
    Histogram {
        h: Arc<FloatHistogram>,
        /// Whether the script named a counter reset hint explicitly.
        hint_set: bool,
    },
}

#[derive(Debug, Clone)]
pub struct SeriesLine {
    pub labels: Labels,
    pub values: Vec<SeqValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Any,
    Msg(String),
    Regex(String),
}

#[derive(Debug, Clone)]
pub enum EvalKind {
    Instant {
        at_ms: i64,
    },
    Range {
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    },
}

#[derive(Debug, Clone)]
pub struct EvalCmd {
    /// 1-based line of the `eval` command.
    pub line: usize,
    pub expr: String,
    pub kind: EvalKind,
    pub fail: Option<Expect>,
    pub warn: Vec<Expect>,
    pub info: Vec<Expect>,
    pub no_warn: bool,
    pub no_info: bool,
    pub ordered: bool,
    pub string: Option<String>,
    pub scalar: Option<f64>,
    /// `expect range vector from .. to .. step ..`.
    pub range_vector: Option<(i64, i64, i64)>,
    pub series: Vec<SeriesLine>,
}

#[derive(Debug, Clone)]
pub enum Command {
    Load {
        interval_ms: i64,
        with_nhcb: bool,
        series: Vec<SeriesLine>,
    },
    Clear,
    Eval(Box<EvalCmd>),
}

/// A problem in a script, with its line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        message: message.into(),
    }
}

/// Compacted copy of a histogram for comparisons.
pub fn compact_histogram(h: &FloatHistogram) -> FloatHistogram {
    crate::histogram::compact(h)
}

/// `almost.Equal` with Prometheus' test epsilon semantics (NaN equals NaN).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    crate::functions::almost_equal(a, b, epsilon)
}
