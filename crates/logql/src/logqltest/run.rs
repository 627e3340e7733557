//! Loading streams and checking one `eval`.

use miru_model::{Labels, LogEntry};

use super::{EPOCH_NS, EvalCmd, EvalKind, Expect, LoadLine, float_eq};
use crate::eval::{Engine, QueryContext};
use crate::memory::MemorySource;
use crate::value::Value;

/// Adds the lines' entries; empty stream label values are dropped, as
/// Loki drops them on write.
pub fn load(src: &mut MemorySource, lines: &[LoadLine]) {
    for l in lines {
        let labels = Labels::from_sorted(
            l.labels
                .iter()
                .filter(|x| !x.value.is_empty())
                .cloned()
                .collect(),
        );
        for i in 0..l.count {
            let ts = EPOCH_NS + l.start_ns + l.every_ns * i as i64;
            let line = l.line.replace("{{.i}}", &i.to_string());
            src.push(
                &labels,
                LogEntry {
                    timestamp_ns: ts,
                    line,
                    structured_metadata: l.metadata.clone(),
                },
            );
        }
    }
}

fn fmt_series(labels: &Labels, vals: &[Option<f64>]) -> String {
    let v: Vec<String> = vals
        .iter()
        .map(|v| v.map_or("_".into(), |x| x.to_string()))
        .collect();
    format!("{} {}", crate::error::series_text(labels), v.join(" "))
}

/// Evaluates `cmd` against `src`; `Err` says why the result differs.
pub fn run_eval(engine: &Engine, src: &MemorySource, cmd: &EvalCmd) -> Result<(), String> {
    let ctx = QueryContext::default();
    let (res, times): (_, Vec<i64>) = match cmd.kind {
        EvalKind::Instant { at_ns } => (
            engine.instant(src, &cmd.query, EPOCH_NS + at_ns, &ctx),
            vec![EPOCH_NS + at_ns],
        ),
        EvalKind::Range {
            start_ns,
            end_ns,
            step_ns,
        } => {
            let times = if step_ns > 0 {
                (0..)
                    .map(|i| EPOCH_NS + start_ns + i * step_ns)
                    .take_while(|t| *t <= EPOCH_NS + end_ns)
                    .collect()
            } else {
                Vec::new()
            };
            (
                engine.range(
                    src,
                    &cmd.query,
                    EPOCH_NS + start_ns,
                    EPOCH_NS + end_ns,
                    step_ns,
                    &ctx,
                ),
                times,
            )
        }
    };
    let value = match (res, &cmd.fail) {
        (Err(e), Some(expect)) => {
            let msg = e.to_string();
            return match expect {
                Expect::Any => Ok(()),
                Expect::Msg(m) if msg.contains(m.as_str()) => Ok(()),
                Expect::Regex(r) if regex::Regex::new(r).is_ok_and(|re| re.is_match(&msg)) => {
                    Ok(())
                }
                _ => Err(format!("wrong error: {msg} (expected {expect:?})")),
            };
        }
        (Err(e), None) => return Err(format!("unexpected error: {e}")),
        (Ok(_), Some(_)) => return Err("expected failure, got a result".into()),
        (Ok(v), None) => v,
    };
    // Actual series as (labels, value per step).
    let actual: Vec<(Labels, Vec<Option<f64>>)> = match &value {
        Value::Scalar { v, .. } => {
            return match cmd.scalar {
                Some(e) if float_eq(e, *v) => Ok(()),
                Some(e) => Err(format!("scalar: expected {e}, got {v}")),
                None => Err(format!("expected series, got scalar {v}")),
            };
        }
        Value::Vector(v) => v
            .iter()
            .map(|s| (s.labels.clone(), vec![Some(s.v)]))
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let vals = times
                    .iter()
                    .map(|t| s.points.iter().find(|p| p.0 == *t).map(|p| p.1))
                    .collect();
                (s.labels.clone(), vals)
            })
            .collect(),
        Value::Streams(_) => return Err("log query result in a metric eval".into()),
    };
    if cmd.empty || (cmd.series.is_empty() && cmd.scalar.is_none()) {
        if actual.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = actual.iter().map(|(l, v)| fmt_series(l, v)).collect();
        return Err(format!("expected empty, got {}", shown.join("; ")));
    }
    if let Some(e) = cmd.scalar {
        return Err(format!("expected scalar {e}, got a vector"));
    }
    if actual.len() != cmd.series.len() {
        let shown: Vec<String> = actual.iter().map(|(l, v)| fmt_series(l, v)).collect();
        return Err(format!(
            "expected {} series, got {}: {}",
            cmd.series.len(),
            actual.len(),
            shown.join("; ")
        ));
    }
    for (i, exp) in cmd.series.iter().enumerate() {
        let found = if cmd.ordered {
            actual.get(i).filter(|a| a.0 == exp.labels)
        } else {
            actual.iter().find(|a| a.0 == exp.labels)
        };
        let Some((_, vals)) = found else {
            let shown: Vec<String> = actual.iter().map(|(l, v)| fmt_series(l, v)).collect();
            let what = if cmd.ordered { "at its position" } else { "" };
            return Err(format!(
                "missing series {}{what}; got {}",
                crate::error::series_text(&exp.labels),
                shown.join("; ")
            ));
        };
        let same = vals.len() == exp.values.len()
            && vals.iter().zip(&exp.values).all(|(a, e)| match (a, e) {
                (None, None) => true,
                (Some(a), Some(e)) => float_eq(*a, *e),
                _ => false,
            });
        if !same {
            return Err(format!(
                "values differ: expected {}, got {}",
                fmt_series(&exp.labels, &exp.values),
                fmt_series(&exp.labels, vals)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logqltest::{Command, parse_script};

    fn outcomes(script: &str) -> Vec<Result<(), String>> {
        let mut src = MemorySource::new();
        let engine = Engine::default();
        let mut out = Vec::new();
        for c in parse_script(script).unwrap() {
            match c {
                Command::Clear => src.clear(),
                Command::Load(l) => load(&mut src, &l),
                Command::Eval(e) => out.push(run_eval(&engine, &src, &e)),
            }
        }
        out
    }

    #[test]
    fn checker_rejects_wrong_results() {
        let r = outcomes(
            "load\n  {app=\"a\"} \"x\" @ 10s [repeat every 10s for 3]\n\
             eval instant at 30s count_over_time({app=\"a\"}[1m])\n  {app=\"a\"} 3\n\
             eval instant at 30s count_over_time({app=\"a\"}[1m])\n  {app=\"a\"} 4\n\
             eval instant at 30s count_over_time({app=\"a\"}[1m])\n  {app=\"b\"} 3\n\
             eval instant at 30s count_over_time({app=\"a\"}[1m])\n  expect empty\n\
             eval range from 10s to 30s step 10s count_over_time({app=\"a\"}[1m])\n  {app=\"a\"} 1 2 3\n\
             eval range from 10s to 30s step 10s count_over_time({app=\"a\"}[1m])\n  {app=\"a\"} 1 _ 3\n\
             eval instant at 30s count_over_time({app=\"a\"}[1m])\n  expect fail\n",
        );
        let ok: Vec<bool> = r.iter().map(Result::is_ok).collect();
        assert_eq!(ok, vec![true, false, false, false, true, false, false]);
    }
}
