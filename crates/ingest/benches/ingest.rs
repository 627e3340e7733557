//! Micro-benchmarks of decoding and validating a remote write request.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use miru_ingest::limits::TenantLimits;
use miru_ingest::remote_write::proto_v1::{Label, Sample, TimeSeries, WriteRequest};
use miru_ingest::remote_write::{decode_v1, encode_v1_for_tests};
use miru_ingest::validate::validate_batch;

fn request(n: usize) -> Vec<u8> {
    let l = |n: &str, v: String| Label {
        name: n.into(),
        value: v,
    };
    let req = WriteRequest {
        timeseries: (0..n)
            .map(|i| TimeSeries {
                labels: vec![
                    l("__name__", "http_requests_total".into()),
                    l("code", ["200", "404", "500"][i % 3].into()),
                    l("instance", format!("10.1.{}.{}:8080", i / 250, i % 250)),
                    l("job", "api".into()),
                    l("method", "GET".into()),
                    l("route", format!("/api/v{}", i % 7)),
                ],
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: 1_700_000_000_000,
                }],
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    encode_v1_for_tests(&req)
}

fn decode(c: &mut Criterion) {
    let body = request(5000);
    c.bench_function("decode_v1_5000_series", |b| {
        b.iter(|| black_box(decode_v1(&body, 1 << 26).unwrap()))
    });
    let limits = TenantLimits::default();
    c.bench_function("decode_and_validate_5000_series", |b| {
        b.iter(|| {
            let mut batch = decode_v1(&body, 1 << 26).unwrap();
            black_box(validate_batch(&mut batch, &limits, 1_700_000_000_000))
        })
    });
}

criterion_group!(benches, decode);
criterion_main!(benches);
