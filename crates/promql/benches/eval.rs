//! Micro-benchmarks of the evaluator's hot kernels over a [`MemorySource`]:
//! 10,000 counters, 1,000 classic histograms of 10 buckets and 1,000 info
//! series, 120 samples each (15 s apart, 30 minutes). Every query is a range
//! query over the last 20 minutes with a one-minute step (21 steps).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use miru_model::Labels;
use miru_promql::{Engine, MemorySource, QueryContext, Value};

const SAMPLES: i64 = 120;
const INTERVAL_MS: i64 = 15_000;
const END_MS: i64 = (SAMPLES - 1) * INTERVAL_MS;
const START_MS: i64 = END_MS - 20 * 60_000;
const STEP_MS: i64 = 60_000;

const BUCKETS: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];

fn source() -> MemorySource {
    let mut src = MemorySource::new();
    for i in 0..10_000usize {
        let labels = Labels::from_pairs([
            ("__name__", "http_requests_total".to_string()),
            ("instance", format!("host-{}:9100", i % 1000)),
            ("job", format!("job-{}", i / 1000)),
        ]);
        let mut v = 0.0;
        for k in 0..SAMPLES {
            v += ((k as usize * 7919 + i) % 100) as f64;
            src.add_float(&labels, k * INTERVAL_MS, v);
        }
    }
    for i in 0..1000usize {
        for (b, le) in BUCKETS.iter().enumerate() {
            let labels = Labels::from_pairs([
                ("__name__", "request_duration_seconds_bucket".to_string()),
                ("instance", format!("host-{i}:9100")),
                ("le", (*le).to_string()),
            ]);
            let mut v = 0.0;
            for k in 0..SAMPLES {
                // Cumulative: bucket b holds (b + 1) parts of each increase.
                v += ((b + 1) * (1 + (k as usize + i) % 5)) as f64;
                src.add_float(&labels, k * INTERVAL_MS, v);
            }
        }
        let labels = Labels::from_pairs([
            ("__name__", "node_info".to_string()),
            ("instance", format!("host-{i}:9100")),
            ("version", format!("1.{}", i % 7)),
        ]);
        for k in 0..SAMPLES {
            src.add_float(&labels, k * INTERVAL_MS, 1.0);
        }
    }
    src
}

fn kernels(c: &mut Criterion) {
    let src = source();
    let engine = Engine::default();
    let ctx = QueryContext::default();
    let mut g = c.benchmark_group("range_20m_step_1m");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (name, query, series) in [
        ("rate_10k", "rate(http_requests_total[5m])", 10_000),
        (
            "sum_by_job_rate_10k",
            "sum by (job) (rate(http_requests_total[5m]))",
            10,
        ),
        (
            "histogram_quantile_1k_x10",
            "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
            1,
        ),
        (
            "predict_linear_10k",
            "predict_linear(http_requests_total[10m], 3600)",
            10_000,
        ),
        (
            "group_left_join_10k",
            "rate(http_requests_total[5m]) * on (instance) group_left (version) node_info",
            10_000,
        ),
    ] {
        let mut checked = false;
        g.bench_function(name, |b| {
            // Once, and only for benchmarks that run: the query does what
            // it says.
            if !checked {
                let r = engine
                    .range(&src, query, START_MS, END_MS, STEP_MS, &ctx)
                    .expect("benchmark query evaluates");
                match &r.value {
                    Value::Matrix(m) => assert_eq!(m.len(), series, "{query}"),
                    other => panic!("{query}: unexpected {other:?}"),
                }
                checked = true;
            }
            b.iter(|| {
                black_box(
                    engine
                        .range(&src, query, START_MS, END_MS, STEP_MS, &ctx)
                        .expect("benchmark query evaluates"),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
