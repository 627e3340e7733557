//! Compaction scheduling seen from outside: a level that scheduled head cuts
//! fill to the fan-in is merged right after the cut, not at the next
//! compaction interval, and every sample stays readable.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use miru_ingest::remote_write::proto_v1::WriteRequest;

use crate::harness::*;

/// Every metrics part file under `dir` (the local object store).
fn part_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "mpart"))
        .collect()
}

/// Part files of one level (`L{level}_…mpart`).
fn parts_of_level(dir: &Path, level: u32) -> usize {
    part_files(dir)
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("L{level}_"))
        })
        .count()
}

/// Waits until `cond` holds, for at most `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

fn batch(base: i64, b: i64) -> WriteRequest {
    let samples: Vec<(i64, f64)> = (0..10)
        .map(|k| (base + b * 10_000 + k * 1_000, (b * 100 + k) as f64))
        .collect();
    WriteRequest {
        timeseries: vec![series(
            &[("__name__", "compaction_test_metric"), ("job", "c")],
            &samples,
        )],
        metadata: vec![],
    }
}

#[test]
fn a_level_filled_by_scheduled_cuts_is_merged_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    // Cuts every second; the compaction interval (1 h) never comes.
    let s = Server::start(
        dir.path(),
        &[
            "--storage.flush-interval",
            "1s",
            "--storage.compaction-interval",
            "1h",
        ],
    );
    let objects = s.dir.join("data");
    let now = now_ms();
    let base = (now - 120_000).max(now - now.rem_euclid(86_400_000));
    // Four pushes, each cut into its own level-0 part (fan-in is 4).
    for b in 0..4 {
        let (st, body) = push(&s, None, &batch(base, b));
        assert_eq!(st, 204, "{body}");
        let want = b as usize + 1;
        if b < 3 {
            assert!(
                wait_for(Duration::from_secs(20), || parts_of_level(&objects, 0)
                    == want),
                "part {want} was not cut: {:?}\n{}",
                part_files(&objects),
                s.log()
            );
            assert_eq!(parts_of_level(&objects, 1), 0);
        }
    }
    assert!(
        wait_for(Duration::from_secs(20), || parts_of_level(&objects, 1) == 1),
        "the four level-0 parts were not merged: {:?}\n{}",
        part_files(&objects),
        s.log()
    );
    let got = raw(&s, None, "compaction_test_metric");
    assert_eq!(got.len(), 1, "{got:?}");
    let want: Vec<(i64, f64)> = (0..4)
        .flat_map(|b| batch(base, b).timeseries[0].samples.clone())
        .map(|x| (x.timestamp, x.value))
        .collect();
    assert_eq!(got[0].1, want);
}
