//! Comparing one evaluation's outcome with an `eval` command's expectations.

use miru_model::FloatHistogram;

use crate::annotations::fmt_g;

use super::{EvalCmd, EvalKind, Expect, SeqValue, SeriesLine, almost_equal, compact_histogram};

const EPSILON: f64 = 1e-6;

fn expect_matches(e: &Expect, s: &str) -> bool {
    match e {
        Expect::Any => true,
        Expect::Msg(m) => m == s,
        Expect::Regex(r) => regex::Regex::new(r)
            .map(|re| re.is_match(s))
            .unwrap_or(false),
    }
}

fn check_annotations(kind: &str, exp: &[Expect], actual: &[String]) -> Result<(), String> {
    if exp.is_empty() {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!("expected {kind} annotations but none were found"));
    }
    for e in exp {
        if !actual.iter().any(|a| expect_matches(e, a)) {
            return Err(format!(
                "expected {kind} annotation {e:?} not found, got {actual:?}"
            ));
        }
    }
    for a in actual {
        if !exp.iter().any(|e| expect_matches(e, a)) {
            return Err(format!("unexpected {kind} annotation {a:?}"));
        }
    }
    Ok(())
}

fn histograms_match(exp: &FloatHistogram, act: &FloatHistogram, hint_set: bool) -> bool {
    let (e, a) = (compact_histogram(exp), compact_histogram(act));
    let eq = |x: f64, y: f64| almost_equal(x, y, EPSILON);
    e.schema == a.schema
        && eq(e.count, a.count)
        && eq(e.sum, a.sum)
        && (!crate::histogram::is_custom(&e) || e.custom_values == a.custom_values)
        && e.zero_threshold == a.zero_threshold
        && eq(e.zero_count, a.zero_count)
        && e.positive_spans == a.positive_spans
        && e.negative_spans == a.negative_spans
        && e.positive_buckets.len() == a.positive_buckets.len()
        && e.negative_buckets.len() == a.negative_buckets.len()
        && e.positive_buckets
            .iter()
            .zip(&a.positive_buckets)
            .all(|(x, y)| eq(*x, *y))
        && e.negative_buckets
            .iter()
            .zip(&a.negative_buckets)
            .all(|(x, y)| eq(*x, *y))
        && (!hint_set || e.counter_reset_hint == a.counter_reset_hint)
}

/// A compact form of a histogram for failure messages.
fn brief(h: &FloatHistogram) -> String {
    let c = compact_histogram(h);
    format!(
        "{{schema:{} count:{} sum:{} z:{}@{} +{:?}{:?} -{:?}{:?} cv:{:?} hint:{:?}}}",
        c.schema,
        fmt_g(c.count),
        fmt_g(c.sum),
        fmt_g(c.zero_count),
        fmt_g(c.zero_threshold),
        c.positive_spans
            .iter()
            .map(|s| (s.offset, s.length))
            .collect::<Vec<_>>(),
        c.positive_buckets,
        c.negative_spans
            .iter()
            .map(|s| (s.offset, s.length))
            .collect::<Vec<_>>(),
        c.negative_buckets,
        c.custom_values,
        c.counter_reset_hint
    )
}

fn fmt_value(v: &crate::PointValue) -> String {
    match v {
        crate::PointValue::Float(f) => format!("{f}"),
        crate::PointValue::Histogram(h) => format!("{h:?}"),
    }
}

fn compare_point(exp: &SeqValue, act: &crate::PointValue, what: &str) -> Result<(), String> {
    match (exp, act) {
        (SeqValue::Float(e), crate::PointValue::Float(a)) => {
            if almost_equal(*e, *a, EPSILON) {
                Ok(())
            } else {
                Err(format!("expected {e} for {what} but got {a}"))
            }
        }
        (SeqValue::Histogram { h, hint_set }, crate::PointValue::Histogram(a)) => {
            if histograms_match(h, a, *hint_set) {
                Ok(())
            } else {
                Err(format!(
                    "histogram mismatch for {what}: expected {} but got {}",
                    brief(h),
                    brief(a)
                ))
            }
        }
        (SeqValue::Histogram { .. }, a) => Err(format!(
            "expected histogram for {what} but got {}",
            fmt_value(a)
        )),
        (_, a) => Err(format!(
            "expected float for {what} but got {}",
            fmt_value(a)
        )),
    }
}

fn compare_matrix(
    expected: &[SeriesLine],
    series: &[crate::RangeSeries],
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    if series.windows(2).any(|w| w[0].labels >= w[1].labels) {
        return Err("matrix is not sorted by labels".into());
    }
    for s in series {
        let Some(e) = expected.iter().find(|e| e.labels == s.labels) else {
            return Err(format!("unexpected series {} in result", s.labels));
        };
        let mut ef = Vec::new();
        let mut eh = Vec::new();
        for (i, v) in e.values.iter().enumerate() {
            let t = start + i as i64 * step;
            if t > end {
                return Err(format!(
                    "expected more points than the range has for {}",
                    s.labels
                ));
            }
            match v {
                SeqValue::Omitted => {}
                SeqValue::Float(f) => ef.push((t, *f)),
                SeqValue::Histogram { h, hint_set } => eh.push((t, h, *hint_set)),
            }
        }
        if ef.len() != s.floats.len() || eh.len() != s.histograms.len() {
            return Err(format!(
                "expected {} floats and {} histograms for {} but got {:?} / {} histograms",
                ef.len(),
                eh.len(),
                s.labels,
                s.floats,
                s.histograms.len()
            ));
        }
        for ((et, ev), (at, av)) in ef.iter().zip(&s.floats) {
            if et != at {
                return Err(format!(
                    "expected timestamp {et} but got {at} for {}",
                    s.labels
                ));
            }
            if !almost_equal(*ev, *av, EPSILON) {
                return Err(format!(
                    "expected {ev} at t={et} for {} but got {av}",
                    s.labels
                ));
            }
        }
        for ((et, eh, hs), (at, ah)) in eh.iter().zip(&s.histograms) {
            if et != at || !histograms_match(eh, ah, *hs) {
                return Err(format!(
                    "histogram mismatch at t={at} for {}: expected {} but got {}",
                    s.labels,
                    brief(eh),
                    brief(ah)
                ));
            }
        }
    }
    for e in expected {
        if !series.iter().any(|s| s.labels == e.labels) {
            return Err(format!("expected series {} not found", e.labels));
        }
    }
    Ok(())
}

/// Checks one evaluation's outcome against the script's expectations, as
/// Prometheus' runner does (minus its extra range/`@` re-evaluations).
pub fn check_eval(
    cmd: &EvalCmd,
    result: Result<crate::QueryResult, crate::QueryError>,
) -> Result<(), String> {
    if let Some(f) = &cmd.fail {
        return match result {
            Ok(_) => Err("expected error but query succeeded".into()),
            Err(e) => {
                let msg = e.to_string();
                if expect_matches(f, &msg) {
                    Ok(())
                } else {
                    Err(format!("error {msg:?} does not match expected {f:?}"))
                }
            }
        };
    }
    let res = result.map_err(|e| format!("unexpected error: {e}"))?;
    check_annotations("warn", &cmd.warn, &res.warnings)?;
    check_annotations("info", &cmd.info, &res.infos)?;
    if cmd.no_warn && !res.warnings.is_empty() {
        return Err(format!("unexpected warnings {:?}", res.warnings));
    }
    if cmd.no_info && !res.infos.is_empty() {
        return Err(format!("unexpected infos {:?}", res.infos));
    }
    match (&cmd.kind, &res.value) {
        (
            EvalKind::Range {
                start_ms,
                end_ms,
                step_ms,
            },
            crate::Value::Matrix(m),
        ) => compare_matrix(&cmd.series, m, *start_ms, *end_ms, *step_ms),
        (EvalKind::Range { .. }, v) => Err(format!("range query returned {v:?}")),
        (EvalKind::Instant { .. }, v) => {
            if let Some(s) = &cmd.string {
                return match v {
                    crate::Value::String { s: got, .. } if got == s => Ok(()),
                    other => Err(format!("expected string {s:?} but got {other:?}")),
                };
            }
            if let Some(x) = cmd.scalar {
                return match v {
                    crate::Value::Scalar { v, .. } if almost_equal(x, *v, EPSILON) => Ok(()),
                    other => Err(format!("expected scalar {x} but got {other:?}")),
                };
            }
            match v {
                crate::Value::Matrix(m) => {
                    if cmd.ordered {
                        return Err("expected ordered result, but query returned a matrix".into());
                    }
                    let Some((s, e, st)) = cmd.range_vector else {
                        // Prometheus compares instant matrices against
                        // points from the evaluation time with step 0.
                        return compare_matrix(&cmd.series, m, 0, i64::MAX, 0);
                    };
                    compare_matrix(&cmd.series, m, s, e, st)
                }
                crate::Value::Vector(vec) => {
                    for (i, s) in vec.iter().enumerate() {
                        let Some(pos) = cmd.series.iter().position(|e| e.labels == s.labels) else {
                            return Err(format!(
                                "unexpected metric {} in result, has value {}",
                                s.labels,
                                fmt_value(&s.value)
                            ));
                        };
                        if cmd.ordered && pos != i {
                            return Err(format!(
                                "expected metric {} at position {} but was at {}",
                                s.labels,
                                pos + 1,
                                i + 1
                            ));
                        }
                        let Some(exp) = cmd.series[pos].values.first() else {
                            return Err(format!("no expected value for {}", s.labels));
                        };
                        compare_point(exp, &s.value, &s.labels.to_string())?;
                    }
                    for e in &cmd.series {
                        if !vec.iter().any(|s| s.labels == e.labels) {
                            return Err(format!("expected metric {} not found", e.labels));
                        }
                    }
                    Ok(())
                }
                crate::Value::Scalar { v, .. } => Err(format!(
                    "expected vector or matrix result, but got scalar {v}"
                )),
                crate::Value::String { s, .. } => Err(format!("unexpected string {s:?}")),
            }
        }
    }
}
