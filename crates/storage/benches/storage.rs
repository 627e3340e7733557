//! Micro-benchmarks of the storage hot paths: encoding a part (chunk
//! encoding + zstd) and appending to the head through the fsync'd WAL.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use miru_model::{Labels, Sample, SeriesWrite, TenantId, WriteBatch};
use miru_storage::part::PartWriter;
use miru_storage::{AppendLimits, NoopObserver, Storage, StorageConfig};

fn series(n: usize, samples: usize) -> Vec<(Labels, Vec<Sample>)> {
    let mut v: Vec<(Labels, Vec<Sample>)> = (0..n)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (i % 16).to_string()),
                ("instance", format!("host-{}:9100", i / 16)),
                ("mode", "idle".to_string()),
            ]);
            let mut v = 1000.0;
            let s = (0..samples)
                .map(|k| {
                    v += ((k * 7919 + i) % 1000) as f64 / 100.0;
                    Sample {
                        timestamp_ms: 1_700_000_000_000 + k as i64 * 15_000,
                        value: (v * 100.0f64).round() / 100.0,
                    }
                })
                .collect();
            (labels, s)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn part_encoding(c: &mut Criterion) {
    let data = series(1000, 120);
    c.bench_function("part_write_1000x120", |b| {
        b.iter(|| {
            let mut w = PartWriter::new(3);
            for (l, s) in &data {
                w.add(l, s);
            }
            black_box(w.finish())
        })
    });
}

fn head_append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(object_store::memory::InMemory::new());
    let storage = rt
        .block_on(Storage::open(
            StorageConfig::new(dir.path().join("wal")),
            store,
            Arc::new(NoopObserver),
            |_| 0,
        ))
        .unwrap()
        .0;
    let tenant = TenantId::new("bench").unwrap();
    let data = series(2000, 1);
    let limits = AppendLimits {
        max_series: 0,
        out_of_order_window: Duration::ZERO,
        max_exemplars: 0,
    };
    let mut ts = 1_700_000_000_000i64;
    c.bench_function("append_2000_series_fsync", |b| {
        b.iter(|| {
            ts += 15_000;
            let batch = WriteBatch {
                series: data
                    .iter()
                    .map(|(l, s)| SeriesWrite {
                        labels: l.clone(),
                        samples: vec![Sample {
                            timestamp_ms: ts,
                            value: s[0].value,
                        }],
                        histograms: vec![],
                        exemplars: vec![],
                    })
                    .collect(),
                ..Default::default()
            };
            black_box(rt.block_on(storage.append(&tenant, batch, limits)).unwrap())
        })
    });
}

criterion_group!(benches, part_encoding, head_append);
criterion_main!(benches);
