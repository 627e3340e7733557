//! Property tests: no input makes the parser, the pipeline stages or the
//! engine panic, and every query that parses also evaluates or fails
//! cleanly.

use miru_model::{Labels, LogEntry};
use proptest::prelude::*;

use crate::pipeline::Pipeline;
use crate::pipeline::labels::LabelSet;
use crate::{Engine, EngineOptions, MemorySource, QueryContext, parse};

const FRAGMENTS: &[&str] = &[
    "{app=\"a\"}",
    "{app=~\"a|b\"}",
    "|= \"x\"",
    "!= \"y\"",
    "|~ \"(?i)x\"",
    "|> \"<_> x\"",
    "| json",
    "| logfmt",
    "| logfmt --strict",
    "| pattern \"<a> <b>\"",
    "| regexp \"(?P<n>\\\\d+)\"",
    "| unpack",
    "| n > 1",
    "| n > 1s",
    "| n > 1KB",
    "| __error__=\"\"",
    "| line_format \"{{.n}}\"",
    "| label_format m=n",
    "| drop n",
    "| keep app",
    "| decolorize",
    "| unwrap n",
    "[1m]",
    "[5s]",
    "offset 10s",
    "count_over_time(",
    "rate(",
    "sum_over_time(",
    "quantile_over_time(0.5,",
    "rate_counter(",
    "sum(",
    "topk(2,",
    "sort(",
    "by (app)",
    "without (n)",
    ")",
    "(",
    "+",
    "/",
    "> bool",
    "and",
    "or",
    "unless",
    "on(app)",
    "group_left",
    "1",
    "vector(1)",
    ",",
    "\"",
];

fn source() -> MemorySource {
    let mut src = MemorySource::new();
    for (i, line) in ["n=1 x", "n=2s y", "{\"n\":3}", "\x1b[31mn=4\x1b[0m", "1 2"]
        .iter()
        .enumerate()
    {
        for app in ["a", "b"] {
            src.push(
                &Labels::from_pairs([("app", app)]),
                LogEntry {
                    timestamp_ns: i as i64 * 7_000_000_000,
                    line: line.to_string(),
                    structured_metadata: vec![("m".into(), "v".into())],
                },
            );
        }
    }
    src
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn parse_never_panics(s in "\\PC{0,80}") {
        let _ = parse(&s);
    }

    #[test]
    fn stages_never_panic(line in "\\PC{0,60}", pick in 0usize..8) {
        let stages = ["| json", "| logfmt --strict --keep-empty", "| unpack", "| pattern \"<a> <_> <b>\"",
            "| regexp \"(?P<a>\\\\w+)\"", "| json a=\"x.y[0]\"", "| line_format \"{{ . }}{{ __line__ | upper }}\"", "|> \"<_>\""];
        let q = format!("{{app=\"a\"}} {}", stages[pick]);
        let Ok(crate::syntax::ast::Expr::Log(log)) = parse(&q) else { panic!("{q} does not parse") };
        let p = Pipeline::for_log(&log).unwrap();
        let mut labels = LabelSet::from_stream(&Labels::from_pairs([("app", "a")]));
        let mut l = std::borrow::Cow::Borrowed(line.as_str());
        let _ = p.process(0, &mut l, &mut labels);
    }

    #[test]
    fn queries_from_fragments_evaluate_or_fail(parts in proptest::collection::vec(0usize..FRAGMENTS.len(), 1..12)) {
        let q: Vec<&str> = parts.iter().map(|i| FRAGMENTS[*i]).collect();
        let q = q.join(" ");
        let engine = Engine::new(EngineOptions { max_steps: 100, ..EngineOptions::default() });
        let src = source();
        let ctx = QueryContext::default();
        if parse(&q).is_ok() {
            let _ = engine.instant(&src, &q, 30_000_000_000, &ctx);
            let _ = engine.range(&src, &q, 0, 40_000_000_000, 5_000_000_000, &ctx);
        }
    }
}

/// Hostile queries end quickly with a result or an error.
#[test]
fn hostile_queries_are_bounded() {
    let src = source();
    let engine = Engine::default();
    let ctx = QueryContext::default();
    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let deep_filter = format!(
        "{{app=\"a\"}} | {}n=\"1\"{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    let deep_tpl = format!(
        "{{app=\"a\"}} | line_format \"{}x{}\"",
        "{{if 1}}".repeat(5_000),
        "{{end}}".repeat(5_000)
    );
    let queries = [
        deep.as_str(),
        deep_filter.as_str(),
        deep_tpl.as_str(),
        r#"count_over_time({app="a"} | line_format "{{range 10000}}{{range 10000}}{{end}}{{end}}" [1m])"#,
        r#"count_over_time({app="a"} | label_format x="{{ repeat 10000 (repeat 10000 \"aaaa\") }}" [1m])"#,
        r#"count_over_time({app="a"} | line_format "{{ printf \"%999999999s\" .app }}" [1m])"#,
        r#"count_over_time({app="a"}[100000000000y])"#,
    ];
    for q in queries {
        let started = std::time::Instant::now();
        let _ = engine.instant(&src, q, 30_000_000_000, &ctx);
        let _ = engine.range(&src, q, i64::MIN, i64::MAX, 1, &ctx);
        assert!(
            started.elapsed().as_secs() < 5,
            "{q} took {:?}",
            started.elapsed()
        );
    }
}
