//! PromQL: arbitrary query text, parsed and evaluated as an instant query
//! and as a short range query against a few series (counters, a gauge with
//! a stale marker, a classic histogram and a native one). Errors are fine;
//! panics are not. A one-second deadline and a sample limit keep hostile
//! queries (`x[100y:1ms]`) from stalling the fuzzer.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use miru_promql::promqltest::{Command, load, parse_script};
use miru_promql::{Engine, EngineOptions, MemorySource, QueryContext, Value};

/// Sample `i` at `i * 30s`, 41 samples (0 to 20m).
const DATA: &str = r#"
load 30s
  http_requests_total{job="api", instance="a"} 0+10x40
  http_requests_total{job="api", instance="b"} 0+7x20 0+7x19
  http_requests_total{job="db", instance="a"} 5 _ 9 stale 12+3x36
  temperature{room="x"} 20 21 -3 NaN Inf 22x35
  latency_seconds_bucket{job="api", le="0.1"} 0+1x40
  latency_seconds_bucket{job="api", le="1"} 0+3x40
  latency_seconds_bucket{job="api", le="+Inf"} 0+4x40
  latency_seconds_sum{job="api"} 0+2.5x40
  latency_seconds_count{job="api"} 0+4x40
  native_seconds{job="api"} {{schema:0 sum:5 count:4 z_bucket:1 z_bucket_w:0.001 buckets:[1 1 1] n_buckets:[1]}}+{{schema:0 sum:5 count:4 z_bucket:1 buckets:[1 1 1] n_buckets:[1]}}x40
  native_gauge{job="db"} {{schema:2 sum:-3 count:3 buckets:[1 2] counter_reset_hint:gauge}}x40
  info_metric{job="api", version="1.2", __type__="gauge"} 1x40
"#;

fn source() -> &'static MemorySource {
    static SRC: OnceLock<MemorySource> = OnceLock::new();
    SRC.get_or_init(|| {
        let mut src = MemorySource::new();
        for cmd in parse_script(DATA).expect("fuzz data parses") {
            if let Command::Load {
                interval_ms,
                series,
                ..
            } = cmd
            {
                load(&mut src, &series, interval_ms);
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
        ..EngineOptions::default()
    });
    let src = source();
    let ctx = || QueryContext {
        deadline: Some(Instant::now() + Duration::from_secs(1)),
        cancel: None,
    };
    match engine.instant(src, query, 600_000, &ctx()) {
        Ok(r) => {
            if let Value::Matrix(m) = &r.value {
                assert!(m.windows(2).all(|w| w[0].labels < w[1].labels));
            }
        }
        Err(e) => {
            let _ = e.error_type();
        }
    }
    match engine.range(src, query, 0, 1_200_000, 60_000, &ctx()) {
        Ok(r) => {
            let Value::Matrix(m) = &r.value else {
                panic!("range query returned {:?}", r.value);
            };
            for s in m {
                assert!(s.floats.len() + s.histograms.len() <= 21, "{s:?}");
            }
        }
        Err(e) => {
            let _ = e.error_type();
        }
    }
});
