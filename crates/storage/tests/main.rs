//! Storage through its public API: append, read back, cut into parts,
//! reopen (WAL replay + catalog), compaction and retention.

use std::sync::Arc;
use std::time::Duration;

use miru_model::{Labels, MatchOp, Matcher, Sample, SeriesWrite, TenantId, WriteBatch};
use miru_storage::{AppendLimits, NoopObserver, Storage, StorageConfig};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

const LIMITS: AppendLimits = AppendLimits {
    max_series: 0,
    out_of_order_window: Duration::ZERO,
    max_exemplars: 100,
};

fn batch(series: usize, from: i64, n: i64) -> WriteBatch {
    WriteBatch {
        series: (0..series)
            .map(|i| SeriesWrite {
                labels: Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total".to_string()),
                    ("cpu", i.to_string()),
                ]),
                samples: (0..n)
                    .map(|k| Sample {
                        timestamp_ms: from + k * 15_000,
                        value: (k * 3 + i as i64) as f64 * 0.25,
                    })
                    .collect(),
                histograms: vec![],
                exemplars: vec![],
            })
            .collect(),
        ..Default::default()
    }
}

async fn open(dir: &std::path::Path) -> Storage {
    std::fs::create_dir_all(dir.join("objects")).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("objects")).unwrap());
    let mut cfg = StorageConfig::new(dir.join("wal"));
    cfg.compaction_fan_in = 2;
    cfg.local_store_root = Some(dir.join("objects"));
    Storage::open(cfg, store, Arc::new(NoopObserver), |_| 100)
        .await
        .unwrap()
        .0
}

fn all() -> Vec<Matcher> {
    vec![Matcher::new("__name__", MatchOp::Regex, ".+").unwrap()]
}

async fn count(s: &Storage, t: &TenantId) -> (usize, usize) {
    let r = s.select(t, &all(), i64::MIN, i64::MAX).await.unwrap();
    (r.len(), r.iter().map(|x| x.samples.len()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_restart_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t1").unwrap();
    // Every character a tenant id may hold, so that part keys with escaped
    // characters are written, fsync'd and listed back.
    let other = TenantId::new("t2(a)*'!-_.").unwrap();
    let base = 1_700_000_000_000;
    {
        let s = open(dir.path()).await;
        s.append(&t, batch(10, base, 20), LIMITS).await.unwrap();
        s.append(&other, batch(1, base, 1), LIMITS).await.unwrap();
        assert_eq!(count(&s, &t).await, (10, 200));
        // Restart without a flush: everything comes back from the WAL.
    }
    let s = open(dir.path()).await;
    assert_eq!(count(&s, &t).await, (10, 200));
    assert_eq!(count(&s, &other).await, (1, 1));
    s.flush().await.unwrap();
    assert_eq!(s.parts(&t).len(), 1);
    assert_eq!(s.parts(&other).len(), 1);
    assert_eq!(count(&s, &t).await, (10, 200));
    // More data, another part, then compaction merges the two.
    let r = s
        .append(&t, batch(10, base + 20 * 15_000, 20), LIMITS)
        .await
        .unwrap();
    assert_eq!(r.samples_accepted, 200);
    s.flush().await.unwrap();
    assert_eq!(s.parts(&t).len(), 2);
    let c = s.compact().await.unwrap();
    assert_eq!(c.parts_written, 1);
    assert_eq!(s.parts(&t).len(), 1);
    assert_eq!(count(&s, &t).await, (10, 400));
    drop(s);
    // Reopen: parts from the store, nothing replayed twice.
    let s = open(dir.path()).await;
    assert_eq!(count(&s, &t).await, (10, 400));
    let sel = vec![Matcher::equal("cpu", "3")];
    let r = s.select(&t, &sel, base, base + 15_000).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].samples.len(), 2);
    assert_eq!(r[0].samples[1].value, (3 + 3) as f64 * 0.25);
    // Retention drops everything older than a day.
    let st = s
        .apply_retention(|x| (x == &t).then_some(Duration::from_secs(86_400)))
        .await
        .unwrap();
    assert_eq!(st.parts_deleted_by_retention, 1);
    assert_eq!(count(&s, &t).await, (0, 0));
    assert_eq!(count(&s, &other).await, (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_flush_does_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t").unwrap();
    let base = 1_700_000_000_000;
    {
        let s = open(dir.path()).await;
        s.append(&t, batch(3, base, 5), LIMITS).await.unwrap();
        s.flush().await.unwrap();
        s.append(&t, batch(3, base + 5 * 15_000, 5), LIMITS)
            .await
            .unwrap();
    }
    // Simulate a crash between part write and WAL trim: copy back a segment
    // is not possible here, but the part's segment tag must make a replay of
    // the remaining segment add only the new samples.
    let s = open(dir.path()).await;
    assert_eq!(count(&s, &t).await, (3, 30));
    let series = s.series(&t, &all(), i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(series.len(), 3);
}

fn histogram(i: i64) -> miru_model::FloatHistogram {
    miru_model::FloatHistogram {
        schema: 1,
        zero_threshold: 1e-128,
        zero_count: 1.0,
        count: 3.0 + i as f64,
        sum: 7.5 * i as f64,
        positive_spans: vec![miru_model::BucketSpan {
            offset: -1,
            length: 2,
        }],
        positive_buckets: vec![1.0, 1.0 + i as f64],
        ..Default::default()
    }
}

/// One series with native histograms only, and one that switches from
/// floats to histograms, as a counter that moves to native histograms does.
fn histogram_batch(from: i64, n: i64) -> WriteBatch {
    let hs = |offset: i64| -> Vec<miru_model::HistogramSample> {
        (0..n)
            .map(|k| miru_model::HistogramSample {
                timestamp_ms: from + (offset + k) * 15_000,
                histogram: Arc::new(histogram(k + from / 15_000)),
            })
            .collect()
    };
    WriteBatch {
        series: vec![
            SeriesWrite {
                labels: Labels::from_pairs([("__name__", "rpc_latency_seconds")]),
                samples: vec![],
                histograms: hs(0),
                exemplars: vec![],
            },
            SeriesWrite {
                labels: Labels::from_pairs([("__name__", "mixed")]),
                samples: vec![Sample {
                    timestamp_ms: from - 15_000,
                    value: 1.0,
                }],
                histograms: hs(0),
                exemplars: vec![],
            },
        ],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_survive_wal_parts_compaction_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t").unwrap();
    let base = 1_700_000_000_000;
    let expect = |r: &[miru_storage::SeriesSamples], hist_per_series: usize| {
        assert_eq!(r.len(), 2, "{r:?}");
        let mixed = r
            .iter()
            .find(|s| s.labels.metric_name() == Some("mixed"))
            .unwrap();
        assert_eq!(mixed.samples.len(), 1);
        for s in r {
            assert_eq!(s.histograms.len(), hist_per_series, "{}", s.labels);
            for w in s.histograms.windows(2) {
                assert!(w[0].timestamp_ms < w[1].timestamp_ms);
            }
            let first = &s.histograms[0];
            assert_eq!(*first.histogram, histogram(base / 15_000));
        }
    };
    {
        let s = open(dir.path()).await;
        let r = s
            .append(&t, histogram_batch(base, 4), LIMITS)
            .await
            .unwrap();
        assert_eq!((r.samples_accepted, r.histograms_accepted), (1, 8));
        // An identical resend is a no-op; a different histogram at the
        // same timestamp is a conflict.
        let r = s
            .append(&t, histogram_batch(base, 4), LIMITS)
            .await
            .unwrap();
        assert_eq!((r.histograms_accepted, r.histograms_deduplicated), (0, 8));
        let mut conflict = histogram_batch(base + 3 * 15_000, 1);
        conflict.series.truncate(1);
        conflict.series[0].histograms[0].histogram = Arc::new(histogram(-1));
        let r = s.append(&t, conflict, LIMITS).await.unwrap();
        assert_eq!(r.rejected, vec![("sample_duplicate_timestamp", 1)]);
        expect(&s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap(), 4);
    }
    // From the WAL, then from a part, then from a compacted part.
    let s = open(dir.path()).await;
    expect(&s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap(), 4);
    s.flush().await.unwrap();
    expect(&s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap(), 4);
    s.append(&t, histogram_batch(base + 4 * 15_000, 4), LIMITS)
        .await
        .unwrap();
    s.flush().await.unwrap();
    assert_eq!(s.compact_full().await.unwrap().parts_written, 1);
    drop(s);
    let s = open(dir.path()).await;
    let r = s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap();
    // The second batch's float sample sits on the first batch's last
    // histogram timestamp: a conflict, so the mixed series keeps 8 too.
    expect(&r, 8);
    // Range selection cuts histogram chunks too.
    let r = s
        .select(
            &t,
            &[Matcher::equal("__name__", "rpc_latency_seconds")],
            base + 15_000,
            base + 30_000,
        )
        .await
        .unwrap();
    assert_eq!(r[0].histograms.len(), 2);
}

/// Series `node_cpu_seconds_total{cpu=<name>}`, one sample each at `ts`.
fn cpus(names: &[&str], ts: i64) -> WriteBatch {
    WriteBatch {
        series: names
            .iter()
            .map(|c| SeriesWrite {
                labels: Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total".to_string()),
                    ("cpu", c.to_string()),
                ]),
                samples: vec![Sample {
                    timestamp_ms: ts,
                    value: 1.0,
                }],
                histograms: vec![],
                exemplars: vec![],
            })
            .collect(),
        ..Default::default()
    }
}

// The head orders a query's series by label ranks from the last cut where
// it can; series created or idle since then must still land in label order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_series_keep_label_order_across_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t1").unwrap();
    let base = 1_700_000_000_000;
    let s = open(dir.path()).await;
    let order = |got: Vec<miru_storage::SeriesSamples>| -> Vec<String> {
        got.iter()
            .map(|x| x.labels.get("cpu").unwrap().to_string())
            .collect()
    };
    // Cut 1 ranks b, d, f; cut 2 ranks a, c, f (b and d idle): b and d now
    // hold ranks of an older cut that collide with the new ones.
    s.append(&t, cpus(&["f", "d", "b"], base), LIMITS)
        .await
        .unwrap();
    s.flush().await.unwrap();
    s.append(&t, cpus(&["f", "c", "a"], base + 60_000), LIMITS)
        .await
        .unwrap();
    s.flush().await.unwrap();
    // Head only: ranked (a, c, f), stale (b, d) and new (e) series.
    s.append(
        &t,
        cpus(&["e", "d", "c", "b", "a", "f"], base + 120_000),
        LIMITS,
    )
    .await
    .unwrap();
    let head = s
        .select(&t, &all(), base + 120_000, i64::MAX)
        .await
        .unwrap();
    assert_eq!(order(head), ["a", "b", "c", "d", "e", "f"]);
    // Parts and head merged, then everything cut and merged again.
    let merged = s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(
        merged.iter().map(|x| x.samples.len()).collect::<Vec<_>>(),
        [2, 2, 2, 2, 1, 3]
    );
    assert_eq!(order(merged), ["a", "b", "c", "d", "e", "f"]);
    s.flush().await.unwrap();
    let parts = s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(order(parts), ["a", "b", "c", "d", "e", "f"]);
}

/// A scan planned in shards gives, shard after shard, exactly the series
/// of the unsharded scan, whichever source holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_scan_concatenates_to_the_whole_scan() {
    use miru_storage::ScanBudget;
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t1").unwrap();
    let base = 1_700_000_000_000;
    let s = open(dir.path()).await;
    // 5000 series in a part, 6000 (1000 new) in the head, one part day.
    s.append(&t, batch(5000, base, 3), LIMITS).await.unwrap();
    s.flush().await.unwrap();
    s.append(&t, batch(6000, base + 60_000, 2), LIMITS)
        .await
        .unwrap();
    let whole = s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(whole.len(), 6000);
    let budget = ScanBudget::unlimited();
    let shards = s
        .plan_scan(&t, &all(), i64::MIN, i64::MAX, &budget, 4)
        .await
        .unwrap();
    assert_eq!(
        shards.len(),
        4,
        "5000 series in the largest source: 4 shards"
    );
    let mut joined = Vec::new();
    for shard in shards {
        s.scan_shard(shard, i64::MIN, i64::MAX, &budget, |x| {
            joined.push(x);
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    }
    assert_eq!(joined, whole);
}

/// A scan merges part, frozen and active data in label order, lets the
/// newest write of a timestamp win, and stops at its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_merges_sources_in_label_order_within_its_budget() {
    use miru_storage::{ScanBudget, ScanLimit, StorageError};
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t1").unwrap();
    let base = 1_700_000_000_000;
    let limits = AppendLimits {
        out_of_order_window: Duration::from_secs(3600),
        ..LIMITS
    };
    let s = open(dir.path()).await;
    // cpu 0..3 in a part, 20 samples each.
    s.append(&t, batch(3, base, 20), limits).await.unwrap();
    s.flush().await.unwrap();
    assert_eq!(s.parts(&t).len(), 1);
    // Head: an older timestamp of cpu 1 rewritten, and a new series cpu 5.
    let rewrite = WriteBatch {
        series: vec![
            SeriesWrite {
                labels: Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total".to_string()),
                    ("cpu", "1".to_string()),
                ]),
                samples: vec![Sample {
                    timestamp_ms: base + 5 * 15_000,
                    value: -1.0,
                }],
                histograms: vec![],
                exemplars: vec![],
            },
            SeriesWrite {
                labels: Labels::from_pairs([
                    ("__name__", "node_cpu_seconds_total".to_string()),
                    ("cpu", "5".to_string()),
                ]),
                samples: vec![Sample {
                    timestamp_ms: base,
                    value: 7.0,
                }],
                histograms: vec![],
                exemplars: vec![],
            },
        ],
        ..Default::default()
    };
    let r = s.append(&t, rewrite, limits).await.unwrap();
    assert_eq!(r.samples_accepted, 2);
    let got = s.select(&t, &all(), i64::MIN, i64::MAX).await.unwrap();
    let cpus: Vec<&str> = got.iter().map(|x| x.labels.get("cpu").unwrap()).collect();
    assert_eq!(cpus, ["0", "1", "2", "5"]);
    assert_eq!(got[1].samples.len(), 20);
    assert_eq!(got[1].samples[5].value, -1.0, "the newer write wins");
    // A regex on a part's label goes through its postings.
    let sel = vec![Matcher::new("cpu", MatchOp::Regex, "1|5").unwrap()];
    let got = s.select(&t, &sel, base, base).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].samples.len(), 1);
    // Budgets stop the scan.
    let mut seen = 0;
    let e = s
        .scan(
            &t,
            &all(),
            i64::MIN,
            i64::MAX,
            &ScanBudget::new(2, 0),
            |_| seen += 1,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::Limit(ScanLimit::Series(2))),
        "{e}"
    );
    assert_eq!(seen, 2);
    let e = s
        .scan(
            &t,
            &all(),
            i64::MIN,
            i64::MAX,
            &ScanBudget::new(0, 500),
            |_| {},
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, StorageError::Limit(ScanLimit::Bytes(500))),
        "{e}"
    );
    // The part's index is cached after the first scan.
    assert!(s.index_cache_bytes() > 0);
}

mod logs {
    use super::*;
    use miru_model::{LogEntry, LogStreamWrite};
    use miru_storage::ScanBudget;
    use miru_storage::logs::{LogAppendLimits, LogReadHints};

    const LOG_LIMITS: LogAppendLimits = LogAppendLimits {
        max_streams: 0,
        out_of_order_window_ns: 3_600_000_000_000,
    };
    /// 2026-11-22T00:00:00Z in ns.
    const T0: i64 = 1_795_305_600_000_000_000;

    fn streams(apps: usize, from: i64, n: i64) -> Vec<LogStreamWrite> {
        (0..apps)
            .map(|a| LogStreamWrite {
                labels: Labels::from_pairs([("app", format!("app-{a}")), ("env", "prod".into())]),
                entries: (0..n)
                    .map(|k| LogEntry {
                        timestamp_ns: from + k * 1_000_000_007,
                        line: format!(
                            "level=info app={a} msg=\"request {k}\" trace_id={:016x}",
                            k * 7919 + a as i64
                        ),
                        structured_metadata: if k % 2 == 0 {
                            vec![("user_id".into(), format!("u{k}"))]
                        } else {
                            vec![]
                        },
                    })
                    .collect(),
            })
            .collect()
    }

    async fn all_lines(s: &Storage, t: &TenantId, m: &[Matcher]) -> Vec<(Labels, Vec<LogEntry>)> {
        s.select_logs(
            t,
            m,
            i64::MIN,
            i64::MAX,
            &LogReadHints::default(),
            &ScanBudget::unlimited(),
        )
        .await
        .unwrap()
        .streams
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logs_survive_wal_replay_parts_and_restart_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let t = TenantId::new("team-a").unwrap();
        let written = streams(3, T0, 50);
        let mut expected: Vec<(Labels, Vec<LogEntry>)> = written
            .iter()
            .map(|w| (w.labels.clone(), w.entries.clone()))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        {
            let s = open(dir.path()).await;
            let r = s
                .append_logs(&t, written.clone(), LOG_LIMITS)
                .await
                .unwrap();
            assert_eq!(r.entries_accepted, 150);
            assert_eq!(all_lines(&s, &t, &[]).await, expected, "from the head");
        }
        // Not flushed: the WAL alone brings everything back.
        let s = open(dir.path()).await;
        assert_eq!(all_lines(&s, &t, &[]).await, expected, "after replay");
        s.flush().await.unwrap();
        assert_eq!(s.log_parts(&t).len(), 1);
        assert!(
            s.log_parts(&t)[0]
                .name
                .key()
                .starts_with("team-a/logs/2026-11-22/L0_")
        );
        assert_eq!(all_lines(&s, &t, &[]).await, expected, "from the part");
        // The same entries again are stored once.
        s.append_logs(&t, written.clone(), LOG_LIMITS)
            .await
            .unwrap();
        assert_eq!(
            all_lines(&s, &t, &[]).await,
            expected,
            "resend deduplicated"
        );
        drop(s);
        let s = open(dir.path()).await;
        assert_eq!(all_lines(&s, &t, &[]).await, expected, "part + replay");
        // Selection by stream and time reads only what matches.
        let m = [Matcher::equal("app", "app-1")];
        let sel = s
            .select_logs(
                &t,
                &m,
                T0 + 10_000_000_070,
                T0 + 20_000_000_140,
                &LogReadHints::default(),
                &ScanBudget::unlimited(),
            )
            .await
            .unwrap();
        assert_eq!(sel.streams.len(), 1);
        assert_eq!(sel.streams[0].1.len(), 10);
        assert_eq!(sel.streams[0].1[0].line, expected[1].1[10].line);
        assert_eq!(sel.parts_read, 1);
        let none = s
            .select_logs(
                &t,
                &[Matcher::equal("app", "nope")],
                i64::MIN,
                i64::MAX,
                &LogReadHints::default(),
                &ScanBudget::unlimited(),
            )
            .await
            .unwrap();
        assert_eq!((none.streams.len(), none.parts_read), (0, 0));
        // Other tenants see nothing.
        assert!(all_lines(&s, &TenantId::anonymous(), &[]).await.is_empty());
        let labels = s.log_streams(&t, &[], i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(labels.len(), 3);
        // A budget refuses oversized selections.
        let err = s
            .select_logs(
                &t,
                &[],
                i64::MIN,
                i64::MAX,
                &LogReadHints::default(),
                &ScanBudget::new(2, 0),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, miru_storage::StorageError::Limit(_)), "{err}");
    }

    /// A pseudo-random 32-hex id per entry, as trace ids are.
    fn trace_id(a: usize, k: i64) -> String {
        let mut x = (a as u64) << 40 | k as u64;
        let mut out = String::new();
        for _ in 0..2 {
            x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29) ^ 0x5851_f42d;
            out.push_str(&format!("{x:016x}"));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn needle_and_metadata_searches_read_only_the_blocks_that_can_match() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path()).await;
        let t = TenantId::new("team-a").unwrap();
        let n = 20_000;
        let written: Vec<LogStreamWrite> = (0..3)
            .map(|a| LogStreamWrite {
                labels: Labels::from_pairs([("app", format!("app-{a}"))]),
                entries: (0..n)
                    .map(|k| LogEntry {
                        timestamp_ns: T0 + k * 1_000_007,
                        line: format!(
                            "level=info msg=\"request completed\" status=200 trace_id={} took={}ms",
                            trace_id(a, k),
                            k % 977
                        ),
                        structured_metadata: vec![(
                            "user_id".into(),
                            format!("u-{}", k * 3 + a as i64),
                        )],
                    })
                    .collect(),
            })
            .collect();
        s.append_logs(&t, written.clone(), LOG_LIMITS)
            .await
            .unwrap();
        s.flush().await.unwrap();
        let part = &s.log_parts(&t)[0];
        let (from, to) = (i64::MIN, i64::MAX);
        let search = |hints: LogReadHints| {
            let s = s.clone();
            let t = t.clone();
            async move {
                s.select_logs(&t, &[], from, to, &hints, &ScanBudget::unlimited())
                    .await
                    .unwrap()
            }
        };
        // A trace id prefix, as users paste it.
        let id = trace_id(1, 12_345);
        let sel = search(LogReadHints {
            line_contains: vec![id[..16].to_string()],
            ..Default::default()
        })
        .await;
        let lines: Vec<&str> = sel
            .streams
            .iter()
            .flat_map(|(_, e)| e.iter().map(|e| e.line.as_str()))
            .collect();
        assert_eq!(lines, vec![written[1].entries[12_345].line.as_str()]);
        assert_eq!(sel.part_rows, 3 * n as u64);
        assert!(
            sel.part_rows_skipped * 100 >= sel.part_rows * 90,
            "only {} of {} rows skipped",
            sel.part_rows_skipped,
            sel.part_rows
        );
        // The first search fetches the footer and the block filters (whole:
        // random 32-hex ids in every line make them large) and one block.
        assert!(
            sel.part_bytes_fetched * 10 < part.size * 4,
            "fetched {} of {} bytes",
            sel.part_bytes_fetched,
            part.size
        );
        // Later searches find footer and filters in memory: one block.
        let again = search(LogReadHints {
            line_contains: vec![id[4..20].to_string()],
            ..Default::default()
        })
        .await;
        assert_eq!(again.entries, 1);
        assert!(
            again.part_bytes_fetched * 10 < part.size,
            "fetched {} of {} bytes",
            again.part_bytes_fetched,
            part.size
        );
        // A structured-metadata value.
        let sel = search(LogReadHints {
            label_equals: vec![("user_id".into(), "u-30002".into())],
            ..Default::default()
        })
        .await;
        let lines: Vec<&str> = sel
            .streams
            .iter()
            .flat_map(|(_, e)| e.iter().map(|e| e.line.as_str()))
            .collect();
        assert_eq!(lines, vec![written[2].entries[10_000].line.as_str()]);
        assert!(
            sel.part_rows_skipped * 100 >= sel.part_rows * 80,
            "{} of {}",
            sel.part_rows_skipped,
            sel.part_rows
        );
        // A stream label named in a hint selects by the stream, not the filters.
        let sel = search(LogReadHints {
            label_equals: vec![("app".into(), "app-0".into())],
            ..Default::default()
        })
        .await;
        assert_eq!(sel.entries, n as u64);
        // A needle in every line reads everything and drops nothing.
        let sel = search(LogReadHints {
            line_contains: vec!["request completed".into()],
            ..Default::default()
        })
        .await;
        assert_eq!((sel.entries, sel.part_rows_skipped), (3 * n as u64, 0));
        // A count needs no lines: the same entries come back without their
        // lines, and the line column (most of the part) is not fetched.
        let all = search(LogReadHints::default()).await;
        let counted = search(LogReadHints {
            skip_lines: true,
            ..Default::default()
        })
        .await;
        let rest = |s: &miru_storage::logs::LogSelection| -> Vec<(i64, Vec<(String, String)>)> {
            s.streams
                .iter()
                .flat_map(|(_, e)| e.iter())
                .map(|e| (e.timestamp_ns, e.structured_metadata.clone()))
                .collect()
        };
        assert_eq!(counted.entries, 3 * n as u64);
        assert_eq!(rest(&counted), rest(&all));
        assert!(
            counted
                .streams
                .iter()
                .flat_map(|(_, e)| e.iter())
                .all(|e| e.line.is_empty())
        );
        assert!(
            counted.part_bytes_fetched * 3 < all.part_bytes_fetched,
            "{} vs {} bytes",
            counted.part_bytes_fetched,
            all.part_bytes_fetched
        );
        // A narrow time window reads only the pages whose timestamps can
        // fall in it (page index), and gives exactly the entries inside.
        let (w0, w1) = (T0 + 10_000 * 1_000_007, T0 + 11_000 * 1_000_007);
        let window = s
            .select_logs(
                &t,
                &[],
                w0,
                w1,
                &LogReadHints::default(),
                &ScanBudget::unlimited(),
            )
            .await
            .unwrap();
        let expected: Vec<i64> = all
            .streams
            .iter()
            .flat_map(|(_, e)| e.iter().map(|e| e.timestamp_ns))
            .filter(|ts| (w0..w1).contains(ts))
            .collect();
        let got: Vec<i64> = window
            .streams
            .iter()
            .flat_map(|(_, e)| e.iter().map(|e| e.timestamp_ns))
            .collect();
        assert_eq!(got, expected);
        assert_eq!(got.len(), 3_000);
        assert!(
            window.part_rows <= 3 * (1_000 + 2 * 4_096),
            "{} rows planned of {}",
            window.part_rows,
            3 * n
        );
        assert!(
            window.part_bytes_fetched * 2 < all.part_bytes_fetched,
            "{} vs {} bytes",
            window.part_bytes_fetched,
            all.part_bytes_fetched
        );
        // Without the filters object the answer is the same, only slower.
        let blooms: Vec<_> = walk(&dir.path().join("objects"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "blooms"))
            .collect();
        assert_eq!(blooms.len(), 1);
        std::fs::remove_file(&blooms[0]).unwrap();
        drop(s);
        let s = open(dir.path()).await;
        let sel = s
            .select_logs(
                &t,
                &[],
                from,
                to,
                &LogReadHints {
                    line_contains: vec![id[..16].to_string()],
                    ..Default::default()
                },
                &ScanBudget::unlimited(),
            )
            .await
            .unwrap();
        assert_eq!(sel.entries, 1);
        assert_eq!(sel.part_rows_skipped, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_on_several_threads_give_what_one_thread_reads() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path()).await;
        let t = TenantId::new("team-a").unwrap();
        // Streams of uneven sizes in two parts and the head: large enough
        // that each part's read is cut into runs of streams.
        let batch = |round: i64| -> Vec<LogStreamWrite> {
            [30_000i64, 1, 20_000, 9_000, 15_000]
                .iter()
                .enumerate()
                .map(|(a, &n)| LogStreamWrite {
                    labels: Labels::from_pairs([("app", format!("app-{a}"))]),
                    entries: (0..n)
                        .map(|k| LogEntry {
                            timestamp_ns: T0 + (round * 40_000 + k) * 1_000_003,
                            line: format!("round={round} k={k} status={}", 200 + k % 7 * 50),
                            structured_metadata: vec![(
                                "level".into(),
                                ["info", "warn"][k as usize % 2].into(),
                            )],
                        })
                        .collect(),
                })
                .collect()
        };
        for round in 0..3 {
            s.append_logs(&t, batch(round), LOG_LIMITS).await.unwrap();
            if round < 2 {
                s.flush().await.unwrap();
            }
        }
        assert_eq!(s.log_parts(&t).len(), 2);
        let select = |hints: LogReadHints, from: i64, to: i64, budget: ScanBudget| {
            let (s, t) = (s.clone(), t.clone());
            async move { s.select_logs(&t, &[], from, to, &hints, &budget).await }
        };
        let facts = |x: &miru_storage::logs::LogSelection| {
            (
                x.streams.clone(),
                x.parts_read,
                x.part_bytes,
                x.part_rows,
                x.part_rows_skipped,
                x.entries,
                x.line_bytes,
                x.scanned_entries,
                x.scanned_line_bytes,
            )
        };
        let window = (T0 + 25_000 * 1_000_003, T0 + 95_000 * 1_000_003);
        for (needle, (from, to)) in [
            (None, (i64::MIN, i64::MAX)),
            (Some("status=350"), (i64::MIN, i64::MAX)),
            (None, window),
            (Some("k=1234 "), window),
        ] {
            let hints = |threads| LogReadHints {
                line_contains: needle.map(str::to_string).into_iter().collect(),
                threads,
                ..Default::default()
            };
            let one = select(hints(1), from, to, ScanBudget::unlimited())
                .await
                .unwrap();
            assert!(one.entries > 0, "{needle:?}");
            for threads in [2, 3, 8] {
                let many = select(hints(threads), from, to, ScanBudget::unlimited())
                    .await
                    .unwrap();
                assert!(
                    facts(&many) == facts(&one),
                    "{needle:?} {from}..{to} on {threads} threads: {} entries against {}",
                    many.entries,
                    one.entries
                );
            }
        }
        // A budget shared by the threads still stops the read.
        let limited = select(
            LogReadHints {
                threads: 2,
                ..Default::default()
            },
            i64::MIN,
            i64::MAX,
            ScanBudget::new(0, 1 << 20),
        )
        .await;
        assert!(
            matches!(limited, Err(miru_storage::StorageError::Limit(_))),
            "{limited:?}"
        );
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stream_limit_and_window_reject_without_touching_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path()).await;
        let t = TenantId::anonymous();
        let limits = LogAppendLimits {
            max_streams: 2,
            ..LOG_LIMITS
        };
        let r = s.append_logs(&t, streams(3, T0, 2), limits).await.unwrap();
        assert_eq!(r.entries_accepted, 4);
        assert_eq!(r.rejected.len(), 1);
        assert!(r.first_error.unwrap().0.is_limit());
        assert_eq!(all_lines(&s, &t, &[]).await.len(), 2);
    }
}

/// Counts the object store reads a storage makes.
#[derive(Default)]
struct CountingObserver(std::sync::atomic::AtomicUsize);
impl miru_storage::Observer for CountingObserver {
    fn object_store_op(&self, op: &'static str, _ok: bool) {
        if op == "get" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A sparse selection (one series in ten, spread over every block of a
/// part) fetches the blocks it needs in one request, not one per block,
/// and gets the same samples the head gave; a damaged block is an error
/// naming the part, not wrong samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_selections_fetch_part_blocks_together() {
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t1").unwrap();
    let base = 1_700_000_000_000;
    let observer = Arc::new(CountingObserver::default());
    std::fs::create_dir_all(dir.path().join("objects")).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("objects")).unwrap());
    let mut cfg = StorageConfig::new(dir.path().join("wal"));
    cfg.local_store_root = Some(dir.path().join("objects"));
    let s = Storage::open(cfg, store, Arc::clone(&observer) as _, |_| 100)
        .await
        .unwrap()
        .0;
    // XOR-encoded values (no short decimal form): ~2 KB chunks, so the
    // part has many 256 KiB blocks.
    let mut w = batch(4000, base, 240);
    for (i, series) in w.series.iter_mut().enumerate() {
        for (k, x) in series.samples.iter_mut().enumerate() {
            x.value = ((i * 7919 + k * 104_729) as f64).sqrt();
        }
    }
    s.append(&t, w, LIMITS).await.unwrap();
    let sparse = vec![Matcher::new("cpu", MatchOp::Regex, ".*7").unwrap()];
    let from_head = s.select(&t, &sparse, i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(from_head.len(), 400);
    s.flush().await.unwrap();
    let part = &s.parts(&t)[0];
    // Warm the part's index cache, then count the reads of one selection.
    s.select(&t, &[Matcher::equal("cpu", "0")], i64::MIN, i64::MAX)
        .await
        .unwrap();
    let before = observer.0.load(std::sync::atomic::Ordering::Relaxed);
    let from_part = s.select(&t, &sparse, i64::MIN, i64::MAX).await.unwrap();
    let reads = observer.0.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert_eq!(from_part, from_head);
    // Blocks hold 256 KiB before compression, so a part of this size has
    // at least size / 256 KiB of them; a request carries up to 4 MiB.
    let path = dir.path().join("objects").join(part.name.key());
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(
        size >= 2 << 20,
        "the part should span many blocks ({size} bytes)"
    );
    assert!(
        reads as u64 <= size / (4 << 20) + 1,
        "{reads} requests for {size} bytes of blocks"
    );
    // The same selection again (a dashboard refresh) finds its blocks
    // decompressed in the block cache: no read at all, same samples.
    assert!(s.block_cache_bytes() > 0);
    let before = observer.0.load(std::sync::atomic::Ordering::Relaxed);
    let again = s.select(&t, &sparse, i64::MIN, i64::MAX).await.unwrap();
    assert_eq!(
        observer.0.load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    assert_eq!(again, from_head);
    drop(s);

    // Damage a byte of the first block: a fresh process's scan fails and
    // says which part.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    let s = open(dir.path()).await;
    let err = s.select(&t, &sparse, i64::MIN, i64::MAX).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("checksum mismatch") && msg.contains(&part.name.key()),
        "{msg}"
    );
}

/// With a block cache smaller than the part, blocks come and go while a
/// scan runs (some of those it reads ahead are cached, some not): every
/// selection still gives what the head gave, and the cache stays within
/// its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_block_cache_gives_the_same_samples() {
    let dir = tempfile::tempdir().unwrap();
    let t = TenantId::new("t1").unwrap();
    std::fs::create_dir_all(dir.path().join("objects")).unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("objects")).unwrap());
    let mut cfg = StorageConfig::new(dir.path().join("wal"));
    cfg.local_store_root = Some(dir.path().join("objects"));
    cfg.block_cache_bytes = 600 << 10;
    let s = Storage::open(cfg, store, Arc::new(NoopObserver), |_| 100)
        .await
        .unwrap()
        .0;
    let mut w = batch(3000, 1_700_000_000_000, 240);
    for (i, series) in w.series.iter_mut().enumerate() {
        for (k, x) in series.samples.iter_mut().enumerate() {
            x.value = ((i * 7919 + k * 104_729) as f64).sqrt();
        }
    }
    s.append(&t, w, LIMITS).await.unwrap();
    let selections = [
        vec![Matcher::new("cpu", MatchOp::Regex, ".*7").unwrap()],
        vec![Matcher::new("cpu", MatchOp::Regex, "1.*|.*3").unwrap()],
        all(),
    ];
    let mut from_head = Vec::new();
    for sel in &selections {
        from_head.push(s.select(&t, sel, i64::MIN, i64::MAX).await.unwrap());
    }
    s.flush().await.unwrap();
    for round in 0..2 {
        for (sel, want) in selections.iter().zip(&from_head) {
            let got = s.select(&t, sel, i64::MIN, i64::MAX).await.unwrap();
            assert!(&got == want, "round {round}: {sel:?} differs");
            assert!(s.block_cache_bytes() <= 600 << 10);
        }
    }
    assert!(s.block_cache_bytes() > 0);
}
