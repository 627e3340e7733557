//! Runs the upstream promqltest corpus (`../shared/conformance/promql`)
//! against the engine with `promqltest::run_eval` (which repeats the
//! upstream runner's range-mode and `@` re-evaluations), counts passes per
//! file for stable and extended (native histograms read or expected,
//! experimental features) cases, and holds the stable count to a ratchet in
//! `conformance-baseline.txt`. With `MIRU_WRITE_CONFORMANCE=1` it also
//! writes `docs/conformance.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miru_promql::promqltest::{
    Command, EvalCmd, EvalKind, SeqValue, SeriesLine, classic_to_nhcb, load, parse_script, run_eval,
};
use miru_promql::{
    Engine, EngineOptions, MemorySource, QueryContext, QueryError, Series, SeriesSource,
};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/promql"
);
const BASELINE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/conformance-baseline.txt"
);
const REPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/conformance.md");

/// Functions and aggregations Prometheus gates behind
/// `--enable-feature=promql-experimental-functions`.
const EXPERIMENTAL: &[&str] = &[
    "double_exponential_smoothing",
    "info",
    "histogram_quantiles",
    "max_of",
    "min_of",
    "mad_over_time",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_min_over_time",
    "ts_of_max_over_time",
    "sort_by_label",
    "sort_by_label_desc",
    "start",
    "end",
    "range",
    "step",
    "start_timestamp",
    "limitk",
    "limit_ratio",
];

/// Files whose every case needs a feature flag (type-and-unit labels,
/// start timestamps, duration expressions).
const EXTENDED_FILES: &[&str] = &[
    "type_and_unit.test",
    "start_timestamps.test",
    "duration_expression.test",
];

#[derive(Default)]
struct FileStats {
    stable: (usize, usize),
    extended: (usize, usize),
}

struct Failure {
    extended: bool,
    /// Shortened, for grouping in the report.
    cause: String,
    /// The whole message, for `MIRU_CONFORMANCE_VERBOSE`.
    detail: String,
    at: String,
}

fn uses_experimental(expr: &str) -> bool {
    // `@ start()` and `@ end()` are stable modifiers, not function calls.
    let re = regex::Regex::new(r"(@\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\(").expect("static regex");
    let names = re
        .captures_iter(expr)
        .filter(|c| c.get(1).is_none())
        .filter_map(|c| c.get(2).map(|m| m.as_str().to_string()));
    for n in names {
        if EXPERIMENTAL.contains(&n.as_str())
            || n == "fill"
            || n == "fill_left"
            || n == "fill_right"
        {
            return true;
        }
    }
    let words = regex::Regex::new(r"\b(anchored|smoothed)\b").expect("static regex");
    words.is_match(expr) || expr.contains("</") || expr.contains(">/")
}

fn has_histograms(series: &[SeriesLine]) -> bool {
    // Expected results with native histograms.
    series.iter().any(|s| {
        s.values
            .iter()
            .any(|v| matches!(v, SeqValue::Histogram { .. }))
    })
}

/// Remembers whether a query read any native histogram sample, which makes
/// the case "extended".
struct Recording<'a> {
    inner: &'a MemorySource,
    saw_histograms: std::sync::atomic::AtomicBool,
}

impl SeriesSource for Recording<'_> {
    fn select(
        &self,
        matchers: &[miru_model::Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let out = self.inner.select(matchers, mint_ms, maxt_ms)?;
        if out.iter().any(|s| !s.histograms.is_empty()) {
            self.saw_histograms
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(out)
    }
}

/// Whether the case's own evaluation (not the runner's re-evaluations)
/// reads a native histogram sample.
fn reads_histograms(engine: &Engine, src: &MemorySource, cmd: &EvalCmd) -> bool {
    let rec = Recording {
        inner: src,
        saw_histograms: std::sync::atomic::AtomicBool::new(false),
    };
    let ctx = QueryContext::default();
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match cmd.kind {
        EvalKind::Instant { at_ms } => {
            let at = cmd.range_vector.map_or(at_ms, |(_, end, _)| end);
            engine.instant(&rec, &cmd.expr, at, &ctx).map(|_| ())
        }
        EvalKind::Range {
            start_ms,
            end_ms,
            step_ms,
        } => engine
            .range(&rec, &cmd.expr, start_ms, end_ms, step_ms, &ctx)
            .map(|_| ()),
    }));
    rec.saw_histograms
        .load(std::sync::atomic::Ordering::Relaxed)
}

fn short(s: &str) -> String {
    // Group causes: drop error positions, cut at 100 characters.
    let pos = regex::Regex::new(r"\b\d+:\d+: ").expect("static regex");
    let s = pos.replace_all(s, "");
    let at = regex::Regex::new(r", eval at -?\d+ms\]").expect("static regex");
    let s = at.replace_all(&s, "]");
    let s: String = s.chars().take(100).collect();
    s.replace('\n', " ")
}

fn run_file(path: &Path, stats: &mut FileStats, failures: &mut Vec<Failure>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let cmds = match parse_script(&text) {
        Ok(c) => c,
        Err(e) => {
            failures.push(Failure {
                extended: EXTENDED_FILES.contains(&name.as_str()),
                cause: short(&format!("script parse error: {e}")),
                detail: format!("script parse error: {e}"),
                at: name.clone(),
            });
            return;
        }
    };
    let engine = Engine::new(EngineOptions {
        lookback_delta_ms: 300_000,
        max_samples: 50_000_000,
        default_eval_step_ms: 60_000,
        ..EngineOptions::default()
    });
    let mut src = MemorySource::new();
    let whole_file_extended = EXTENDED_FILES.contains(&name.as_str());
    for cmd in &cmds {
        match cmd {
            Command::Clear => src.clear(),
            Command::Load {
                interval_ms,
                with_nhcb,
                series,
            } => {
                load(&mut src, series, *interval_ms);
                if *with_nhcb {
                    load(&mut src, &classic_to_nhcb(series), *interval_ms);
                }
            }
            Command::Eval(e) => {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_eval(&engine, &src, e)
                }))
                .unwrap_or_else(|_| Err("PANIC".to_string()));
                // A case after `load_with_nhcb` that reads only float
                // series (`_bucket`, `_sum`, ...) is stable.
                let extended = whole_file_extended
                    || reads_histograms(&engine, &src, e)
                    || has_histograms(&e.series)
                    || uses_experimental(&e.expr);
                let slot = if extended {
                    &mut stats.extended
                } else {
                    &mut stats.stable
                };
                slot.1 += 1;
                match outcome {
                    Ok(()) => slot.0 += 1,
                    Err(cause) => failures.push(Failure {
                        extended,
                        cause: short(&cause),
                        detail: cause,
                        at: format!("{name}:{}", e.line),
                    }),
                }
            }
        }
    }
}

fn pct(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.1}%", a as f64 * 100.0 / b as f64)
    }
}

fn corpus_commit(dir: &Path) -> String {
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
    let re = regex::Regex::new(r"commit `([0-9a-f]{40})`").expect("static regex");
    re.captures(&readme)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn write_report(dir: &Path, per_file: &BTreeMap<String, FileStats>, failures: &[Failure]) {
    let mut md = String::new();
    md.push_str("# PromQL conformance\n\n");
    md.push_str("Generated by `MIRU_WRITE_CONFORMANCE=1 cargo test -p miru-promql --test conformance -- --nocapture`\n");
    md.push_str(&format!(
        "against the upstream promqltest corpus in `../shared/conformance/promql` (Prometheus commit `{}`).\n\n",
        corpus_commit(dir)
    ));
    md.push_str(
        "\"Stable\" cases use only stable PromQL and read only float samples (classic histograms\n",
    );
    md.push_str("included, also when they follow a `load_with_nhcb`); \"extended\" cases read a native histogram\n");
    md.push_str("sample, expect `{{...}}` results, or use an experimental feature (experimental functions,\n");
    md.push_str("`limitk`/`limit_ratio`, `anchored`/`smoothed`, fill modifiers, histogram trim operators) or\n");
    md.push_str(
        "are in `duration_expression.test`, `type_and_unit.test` or `start_timestamps.test`.\n\n",
    );
    md.push_str(
        "Results and annotations are checked as Prometheus' runner checks them, including its\n",
    );
    md.push_str("re-evaluations of every instant `eval`: as a range query from one minute before to one minute\n");
    md.push_str("after the evaluation time (the middle step must match), and with `@ <evaluation time>` added\n");
    md.push_str("to selectors and outermost subqueries, evaluated at -10t, 0, t/5, t and 10t (-1s, 0, 1s when\n");
    md.push_str("t = 0), each also in range mode; with the same exemptions as upstream (see\n");
    md.push_str(
        "`crates/promql/src/promqltest/run.rs`). A case passes only if all of these pass.\n\n",
    );
    md.push_str("| file | stable pass/total | % | extended pass/total |\n|---|---:|---:|---:|\n");
    let (mut sp, mut st, mut ep, mut et) = (0, 0, 0, 0);
    for (f, s) in per_file {
        md.push_str(&format!(
            "| {f} | {}/{} | {} | {}/{} |\n",
            s.stable.0,
            s.stable.1,
            pct(s.stable.0, s.stable.1),
            s.extended.0,
            s.extended.1
        ));
        sp += s.stable.0;
        st += s.stable.1;
        ep += s.extended.0;
        et += s.extended.1;
    }
    md.push_str(&format!(
        "| **total** | **{sp}/{st}** | **{}** | **{ep}/{et}** |\n\n",
        pct(sp, st)
    ));
    for (title, ext) in [("stable", false), ("extended", true)] {
        let mut by_cause: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for f in failures.iter().filter(|f| f.extended == ext) {
            by_cause.entry(&f.cause).or_default().push(&f.at);
        }
        let mut causes: Vec<(&str, Vec<&str>)> = by_cause.into_iter().collect();
        causes.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        md.push_str(&format!("## Failures of {title} cases by cause\n\n"));
        if causes.is_empty() {
            md.push_str("None.\n\n");
            continue;
        }
        md.push_str("| cause | count | examples |\n|---|---:|---|\n");
        for (cause, at) in causes {
            let ex: Vec<&str> = at.iter().take(3).copied().collect();
            md.push_str(&format!(
                "| {} | {} | {} |\n",
                cause.replace('|', "\\|"),
                at.len(),
                ex.join(", ")
            ));
        }
        md.push('\n');
    }
    if let Err(e) = std::fs::write(REPORT, md) {
        eprintln!("could not write {REPORT}: {e}");
    }
}

#[test]
fn promql_conformance() {
    let dir = PathBuf::from(CORPUS);
    if !dir.is_dir() {
        eprintln!("SKIPPED: ../shared/conformance/promql not found ({CORPUS})");
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "test"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut per_file = BTreeMap::new();
    let mut failures = Vec::new();
    for f in &files {
        let mut stats = FileStats::default();
        run_file(f, &mut stats, &mut failures);
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        per_file.insert(name, stats);
    }
    let stable_pass: usize = per_file.values().map(|s| s.stable.0).sum();
    let stable_total: usize = per_file.values().map(|s| s.stable.1).sum();
    let ext_pass: usize = per_file.values().map(|s| s.extended.0).sum();
    let ext_total: usize = per_file.values().map(|s| s.extended.1).sum();
    for (f, s) in &per_file {
        println!(
            "{f:28} stable {:4}/{:4}  extended {:4}/{:4}",
            s.stable.0, s.stable.1, s.extended.0, s.extended.1
        );
    }
    if std::env::var("MIRU_CONFORMANCE_VERBOSE").is_ok() {
        for f in &failures {
            println!(
                "{}{}: {}",
                if f.extended { "[ext] " } else { "" },
                f.at,
                f.detail
            );
        }
    }
    println!(
        "PromQL conformance: stable {stable_pass}/{stable_total}, extended {ext_pass}/{ext_total}"
    );
    if std::env::var("MIRU_WRITE_CONFORMANCE").is_ok_and(|v| v == "1") {
        write_report(&dir, &per_file, &failures);
    }
    let baseline: usize = std::fs::read_to_string(BASELINE)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        stable_pass >= baseline,
        "stable PromQL conformance dropped: {stable_pass} passing, baseline {baseline}"
    );
}
