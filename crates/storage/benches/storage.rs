//! Micro-benchmarks of the storage hot paths: encoding a part (chunk
//! encoding + zstd), appending to the head through the fsync'd WAL,
//! selecting series through the postings (list intersection) and scanning
//! a part (block reads, zstd, chunk decoding, the merge).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use miru_model::{Labels, MatchOp, Matcher, Sample, SeriesWrite, TenantId, WriteBatch};
use miru_storage::part::PartWriter;
use miru_storage::{AppendLimits, NoopObserver, ScanBudget, Storage, StorageConfig};

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

const LIMITS: AppendLimits = AppendLimits {
    max_series: 0,
    out_of_order_window: Duration::ZERO,
    max_exemplars: 0,
};

/// A storage on an in-memory object store (the WAL in `dir`).
fn open_storage(rt: &tokio::runtime::Runtime, dir: &tempfile::TempDir) -> Storage {
    let store = Arc::new(object_store::memory::InMemory::new());
    rt.block_on(Storage::open(
        StorageConfig::new(dir.path().join("wal")),
        store,
        Arc::new(NoopObserver),
        |_| 0,
    ))
    .unwrap()
    .0
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Appends `data` in batches of 10,000 series.
fn load(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    tenant: &TenantId,
    data: &[(Labels, Vec<Sample>)],
) {
    for chunk in data.chunks(10_000) {
        let batch = WriteBatch {
            series: chunk
                .iter()
                .map(|(l, s)| SeriesWrite {
                    labels: l.clone(),
                    samples: s.clone(),
                    histograms: vec![],
                    exemplars: vec![],
                })
                .collect(),
            ..Default::default()
        };
        rt.block_on(storage.append(tenant, batch, LIMITS)).unwrap();
    }
}

/// Series selected and samples read by one scan.
fn scan_count(
    rt: &tokio::runtime::Runtime,
    storage: &Storage,
    tenant: &TenantId,
    matchers: &[Matcher],
) -> (usize, usize) {
    let (mut series, mut samples) = (0, 0);
    rt.block_on(storage.scan(
        tenant,
        matchers,
        i64::MIN,
        i64::MAX,
        &ScanBudget::unlimited(),
        |s| {
            series += 1;
            samples += s.samples.len();
        },
    ))
    .unwrap();
    (series, samples)
}

/// `{__name__="node_cpu_seconds_total", mode="idle", cpu="3"}` among
/// 128,000 head series: the cost is intersecting the three postings lists
/// (8,000 series per cpu, 16,000 per mode) and checking the candidates.
fn select_postings(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let storage = open_storage(&rt, &dir);
    let tenant = TenantId::new("bench").unwrap();
    let modes = [
        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
    ];
    let data: Vec<(Labels, Vec<Sample>)> = (0..128_000usize)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (i % 16).to_string()),
                ("instance", format!("host-{}:9100", i / 128)),
                ("mode", modes[(i / 16) % 8].to_string()),
            ]);
            let sample = Sample {
                timestamp_ms: 1_700_000_000_000,
                value: i as f64,
            };
            (labels, vec![sample])
        })
        .collect();
    load(&rt, &storage, &tenant, &data);
    let matchers = [
        Matcher::new("__name__", MatchOp::Equal, "node_cpu_seconds_total").unwrap(),
        Matcher::new("mode", MatchOp::Equal, "idle").unwrap(),
        Matcher::new("cpu", MatchOp::Equal, "3").unwrap(),
    ];
    // The selection is what the name says: one series per host.
    assert_eq!(scan_count(&rt, &storage, &tenant, &matchers).0, 1000);
    c.bench_function("select_postings_128k_head_series", |b| {
        b.iter(|| black_box(scan_count(&rt, &storage, &tenant, &matchers)))
    });
}

/// Every series of one part of 2,000 series x 120 samples.
fn scan_part(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let storage = open_storage(&rt, &dir);
    let tenant = TenantId::new("bench").unwrap();
    let data = series(2000, 120);
    load(&rt, &storage, &tenant, &data);
    rt.block_on(storage.flush()).unwrap();
    let all = [Matcher::new("__name__", MatchOp::Equal, "node_cpu_seconds_total").unwrap()];
    assert_eq!(scan_count(&rt, &storage, &tenant, &all), (2000, 240_000));
    c.bench_function("scan_part_2000x120", |b| {
        b.iter(|| black_box(scan_count(&rt, &storage, &tenant, &all)))
    });
}

fn head_append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let storage = open_storage(&rt, &dir);
    let tenant = TenantId::new("bench").unwrap();
    let data = series(2000, 1);
    let limits = LIMITS;
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

criterion_group!(
    benches,
    part_encoding,
    head_append,
    select_postings,
    scan_part
);
criterion_main!(benches);
