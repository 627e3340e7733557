//! LogQL: arbitrary query text, parsed and evaluated as an instant query,
//! a short range query and a log query against a few streams (logfmt,
//! JSON, ANSI colours, structured metadata). Errors are fine; panics are
//! not. A step limit keeps hostile queries cheap.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use miru_logql::{Direction, Engine, EngineOptions, LogQuery, MemorySource, QueryContext, Value};
use miru_model::{Labels, LogEntry};

fn source() -> &'static MemorySource {
    static SRC: OnceLock<MemorySource> = OnceLock::new();
    SRC.get_or_init(|| {
        let mut src = MemorySource::new();
        let lines = [
            "level=info took=2s size=3MB n=1",
            "{\"level\":\"error\",\"n\":2,\"o\":{\"a\":[1,2]},\"_entry\":\"x=1\"}",
            "GET /api 200 10.0.0.7",
            "\u{1b}[31mred\u{1b}[0m v=NaN",
            "bad=\"unterminated",
        ];
        for (app, every) in [("a", 10), ("b", 15)] {
            let labels = Labels::from_pairs([("app", app), ("env", "prod")]);
            for i in 0..40i64 {
                let line = lines[(i as usize) % lines.len()];
                src.push(
                    &labels,
                    LogEntry {
                        timestamp_ns: i * every * 1_000_000_000,
                        line: line.to_string(),
                        structured_metadata: vec![("trace".into(), format!("t{}", i % 3))],
                    },
                );
            }
        }
        src
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if query.len() > 4096 {
        return;
    }
    let engine = Engine::new(EngineOptions {
        max_samples: 200_000,
        max_steps: 100,
        ..EngineOptions::default()
    });
    let src = source();
    let ctx = QueryContext::default();
    if let Err(e) = engine.instant(src, query, 300_000_000_000, &ctx) {
        let _ = e.kind();
    }
    match engine.range(src, query, 0, 600_000_000_000, 60_000_000_000, &ctx) {
        Ok(Value::Matrix(m)) => {
            for s in m {
                assert!(s.points.len() <= 11, "{s:?}");
            }
        }
        Ok(Value::Vector(_) | Value::Streams(_) | Value::Scalar { .. }) => {
            panic!("range query returned a non-matrix")
        }
        Err(e) => {
            let _ = e.kind();
        }
    }
    let q = LogQuery {
        start_ns: 0,
        end_ns: 600_000_000_000,
        limit: 50,
        direction: Direction::Backward,
    };
    if let Ok(Value::Streams(s)) = engine.logs(src, query, &q, &ctx) {
        assert!(s.iter().map(|s| s.entries.len()).sum::<usize>() <= 50);
    }
});
