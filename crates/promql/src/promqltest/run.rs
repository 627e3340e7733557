//! Executing commands: loading series into a [`MemorySource`] and running
//! one `eval` the way Prometheus' runner does.
//!
//! Besides checking the query's own result, the upstream runner re-runs
//! every instant `eval`:
//!
//! - **in range mode**: from one minute before to one minute after the
//!   evaluation time with a one-minute step; the query must not fail, and
//!   the middle step must give the expected result (annotations are not
//!   compared). Skipped for expected failures, `expect string`,
//!   `expect range vector`, queries that mention `start()`, `end()`,
//!   `range()` or `step()`, and (after the range query ran) ordered results;
//! - **with `@` pinned**: every selector and outermost subquery without an
//!   `@` gets `@ <evaluation time>`, and that query is evaluated at
//!   `-10t, 0, t/5, t, 10t` (`-1s, 0, 1s` when `t` is 0); each must give
//!   the same result, annotations and failure, and each is re-run in range
//!   mode too. Skipped when the query calls a function whose value depends
//!   on the evaluation time itself (`time()`, `timestamp()`, `hour()`, ...).

use std::sync::Arc;

use super::check::check_eval;
use super::{EvalCmd, EvalKind, SeqValue, SeriesLine};
use crate::plan::calls_at_unsafe;
use crate::{
    Engine, InstantSample, MemorySource, PointValue, QueryContext, QueryError, QueryResult,
    SeriesSource, Value,
};

/// Loads the samples of a `load` command (sample `i` at `i * interval_ms`).
pub fn load(src: &mut MemorySource, series: &[SeriesLine], interval_ms: i64) {
    for s in series {
        for (i, v) in s.values.iter().enumerate() {
            let t = i as i64 * interval_ms;
            match v {
                SeqValue::Omitted => {}
                SeqValue::Float(f) => src.add_float(&s.labels, t, *f),
                SeqValue::Histogram { h, .. } => src.add_histogram(&s.labels, t, Arc::clone(h)),
            }
        }
    }
}

/// Whether Prometheus' runner would re-evaluate this instant query with `@`
/// pinned: it parses and calls no function that depends on the evaluation
/// time itself outside a subquery.
pub fn step_invariance_testable(query: &str) -> bool {
    matches!(calls_at_unsafe(query), Ok(false))
}

/// Runs one `eval` command with the runner's extra checks (see the module
/// documentation); the error says which evaluation failed and why.
pub fn run_eval(engine: &Engine, src: &dyn SeriesSource, cmd: &EvalCmd) -> Result<(), String> {
    let ctx = QueryContext::default();
    let at_ms = match cmd.kind {
        EvalKind::Range {
            start_ms,
            end_ms,
            step_ms,
        } => {
            return check_eval(
                cmd,
                engine.range(src, &cmd.expr, start_ms, end_ms, step_ms, &ctx),
            );
        }
        // `expect range vector` evaluates at the end of the expected range.
        EvalKind::Instant { at_ms } => cmd.range_vector.map_or(at_ms, |(_, end, _)| end),
    };
    run_instant(engine, src, cmd, at_ms, None, &ctx)?;
    if !step_invariance_testable(&cmd.expr) {
        return Ok(());
    }
    let times = if at_ms == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![
            at_ms.saturating_mul(-10),
            0,
            at_ms / 5,
            at_ms,
            at_ms.saturating_mul(10),
        ]
    };
    for t in times {
        run_instant(engine, src, cmd, t, Some(at_ms), &ctx)
            .map_err(|e| format!("[@ step invariance, eval at {t}ms] {e}"))?;
    }
    Ok(())
}

fn run_instant(
    engine: &Engine,
    src: &dyn SeriesSource,
    cmd: &EvalCmd,
    t: i64,
    pin: Option<i64>,
    ctx: &QueryContext,
) -> Result<(), String> {
    let result = match pin {
        None => engine.instant(src, &cmd.expr, t, ctx),
        Some(p) => engine.instant_pinned(src, &cmd.expr, t, p, ctx),
    };
    let was_scalar = matches!(
        result,
        Ok(QueryResult {
            value: Value::Scalar { .. },
            ..
        })
    );
    check_eval(cmd, result)?;
    if cmd.fail.is_some() || cmd.string.is_some() || cmd.range_vector.is_some() {
        return Ok(());
    }
    if mentions_query_context_function(&cmd.expr, pin.is_some()) {
        return Ok(());
    }
    let (start, end, step) = (t.saturating_sub(60_000), t.saturating_add(60_000), 60_000);
    let range = match pin {
        None => engine.range(src, &cmd.expr, start, end, step, ctx),
        Some(p) => engine.range_pinned(src, &cmd.expr, start, end, step, p, ctx),
    };
    let range = range.map_err(|e| format!("[range mode] unexpected error: {e}"))?;
    if cmd.ordered {
        return Ok(());
    }
    let Value::Matrix(series) = range.value else {
        return Err(format!(
            "[range mode] range query returned {:?}",
            range.value
        ));
    };
    if series.windows(2).any(|w| w[0].labels > w[1].labels) {
        return Err("[range mode] matrix is not sorted by labels".into());
    }
    let mut vec = Vec::new();
    for s in &series {
        if let Some((_, v)) = s.floats.iter().find(|(ts, _)| *ts == t) {
            vec.push(InstantSample {
                labels: s.labels.clone(),
                t,
                value: PointValue::Float(*v),
            });
        }
        if let Some((_, h)) = s.histograms.iter().find(|(ts, _)| *ts == t) {
            vec.push(InstantSample {
                labels: s.labels.clone(),
                t,
                value: PointValue::Histogram(Arc::clone(h)),
            });
        }
    }
    let value = if was_scalar {
        let Some(v) = vec.first().and_then(|s| match s.value {
            PointValue::Float(f) => Some(f),
            PointValue::Histogram(_) => None,
        }) else {
            return Err(
                "[range mode] scalar query returned no float at the evaluation time".into(),
            );
        };
        Value::Scalar { t, v }
    } else {
        Value::Vector(vec)
    };
    // Annotations and order are not compared in range mode.
    let mut plain = cmd.clone();
    plain.warn.clear();
    plain.info.clear();
    plain.no_warn = false;
    plain.no_info = false;
    plain.ordered = false;
    let result: Result<QueryResult, QueryError> = Ok(QueryResult {
        value,
        warnings: Vec::new(),
        infos: Vec::new(),
        samples_scanned: 0,
    });
    check_eval(&plain, result).map_err(|e| format!("[range mode] {e}"))
}

/// Prometheus skips the range-mode re-run of queries whose text calls
/// `start()`, `end()`, `range()` or `step()`. With `@` pinned, its runner
/// checks the re-printed query, in which `@ start()`/`@ end()` became
/// timestamps.
fn mentions_query_context_function(query: &str, pinned: bool) -> bool {
    let text = if pinned {
        let at = regex::Regex::new(r"@\s*(start|end)\s*\(\s*\)").expect("static regex");
        at.replace_all(query, "@ 0").into_owned()
    } else {
        query.to_string()
    };
    let re = regex::Regex::new(r"(start|end|range|step)\(\)").expect("static regex");
    re.is_match(&text)
}
