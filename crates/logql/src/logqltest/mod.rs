//! Loki's logqltest scripts (`clear`, `load`, `eval`), the format of the
//! LogQL conformance corpus: [`parse_script`] turns text into commands,
//! [`load`] fills a [`crate::MemorySource`], [`run_eval`] evaluates one
//! `eval` and compares its result. Times are Go durations from the script
//! epoch 2026-01-01T00:00:00Z. The corpus runner is `tests/conformance.rs`.

mod parse;
mod run;

use miru_model::Labels;

pub use parse::parse_script;
pub use run::{load, run_eval};

/// 2026-01-01T00:00:00Z in Unix nanoseconds.
pub const EPOCH_NS: i64 = 1_767_225_600 * 1_000_000_000;

/// One `load` line: a stream, a line and its repetitions.
#[derive(Debug, Clone)]
pub struct LoadLine {
    pub labels: Labels,
    /// The line; `{{.i}}` stands for the repetition index.
    pub line: String,
    /// Offset from the epoch.
    pub start_ns: i64,
    pub every_ns: i64,
    pub count: usize,
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub enum EvalKind {
    Instant {
        at_ns: i64,
    },
    Range {
        start_ns: i64,
        end_ns: i64,
        step_ns: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Any,
    Msg(String),
    Regex(String),
}

/// An expected series: labels and one value per step (`None` for `_`).
#[derive(Debug, Clone)]
pub struct ExpectedSeries {
    pub labels: Labels,
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone)]
pub struct EvalCmd {
    /// 1-based line of the `eval`.
    pub line: usize,
    pub query: String,
    pub kind: EvalKind,
    pub fail: Option<Expect>,
    pub empty: bool,
    pub ordered: bool,
    pub scalar: Option<f64>,
    pub series: Vec<ExpectedSeries>,
}

#[derive(Debug, Clone)]
pub enum Command {
    Clear,
    Load(Vec<LoadLine>),
    Eval(Box<EvalCmd>),
}

/// A problem in a script, with its line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

/// Loki's runner: NaN equals NaN, infinities exactly, otherwise an absolute
/// or relative difference of at most 1e-6.
pub fn float_eq(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let d = (a - b).abs();
    d <= 1e-6 || d <= 1e-6 * a.abs().max(b.abs())
}
