//! A 2xx means the data survives `kill -9`: writers push concurrently while
//! the process is killed and restarted; afterwards every acknowledged
//! sample is there, exactly once, with its value.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use miru_ingest::remote_write::proto_v1::WriteRequest;

use crate::harness::*;

const WRITERS: usize = 4;
const SERIES_PER_WRITER: usize = 8;
const SAMPLES_PER_REQUEST: i64 = 5;

fn request(writer: usize, first: i64, base: i64) -> WriteRequest {
    let w = writer.to_string();
    WriteRequest {
        timeseries: (0..SERIES_PER_WRITER)
            .map(|s| {
                let s = s.to_string();
                let samples: Vec<(i64, f64)> = (first..first + SAMPLES_PER_REQUEST)
                    .map(|i| (base + i * 10, i as f64))
                    .collect();
                series(
                    &[("__name__", "durable"), ("s", &s), ("writer", &w)],
                    &samples,
                )
            })
            .collect(),
        metadata: vec![],
    }
}

#[test]
fn acknowledged_samples_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Frequent cuts so that kills also land during part writes and WAL trims.
    let mut s = Server::start(
        dir.path(),
        &[
            "--storage.flush-interval",
            "1s",
            "--storage.compaction-interval",
            "2s",
        ],
    );
    let port = s.http_port;
    let base = now_ms() - 3_600_000;
    let stop = Arc::new(AtomicBool::new(false));
    // Per writer: the first sample index of every acknowledged request.
    let acked: Arc<Mutex<Vec<Vec<i64>>>> = Arc::new(Mutex::new(vec![Vec::new(); WRITERS]));
    let mut threads = Vec::new();
    for w in 0..WRITERS {
        let stop = Arc::clone(&stop);
        let acked = Arc::clone(&acked);
        threads.push(std::thread::spawn(move || {
            let c = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut next = 0i64;
            let mut acks = 0u64;
            // Whether the current request was sent before without an answer.
            let mut retrying = false;
            while !stop.load(Ordering::Relaxed) {
                let body = miru_ingest::remote_write::encode_v1_for_tests(&request(w, next, base));
                let r = c
                    .post(format!("http://127.0.0.1:{port}/api/v1/push"))
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .header("X-Scope-OrgID", "durable")
                    .body(body)
                    .send();
                match r {
                    Ok(resp) if resp.status().as_u16() == 204 => {
                        acked.lock().unwrap()[w].push(next);
                        next += SAMPLES_PER_REQUEST;
                        acks += 1;
                        retrying = false;
                    }
                    Ok(resp) => {
                        let st = resp.status().as_u16();
                        let text = resp.text().unwrap_or_default();
                        if st == 400 && retrying && text.contains("out of order") {
                            // The earlier attempt was stored and already cut
                            // into a part; a sender drops a 400, so do we.
                            next += SAMPLES_PER_REQUEST;
                            retrying = false;
                        } else {
                            assert!(st >= 500, "writer {w}: unexpected {st}: {text}");
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    // Killed mid-request: unknown outcome, resend the same data.
                    Err(_) => {
                        retrying = true;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            acks
        }));
    }
    let mut rng_state = 0x9e3779b97f4a7c15u64;
    let mut rand_ms = |lo: u64, hi: u64| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        lo + rng_state % (hi - lo)
    };
    for _round in 0..6 {
        std::thread::sleep(Duration::from_millis(rand_ms(300, 1500)));
        s.restart();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let total_acks: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        total_acks > 20,
        "too few acknowledged writes ({total_acks}) to prove anything"
    );
    let acked = acked.lock().unwrap().clone();

    // One more kill -9 after the writers stopped, then check.
    s.restart();
    let start = Instant::now();
    let got = raw(&s, Some("durable"), "durable");
    let mut by_key: BTreeMap<(String, String), Vec<(i64, f64)>> = BTreeMap::new();
    for (labels, samples) in got {
        by_key.insert(
            (
                labels["writer"].as_str().unwrap().to_string(),
                labels["s"].as_str().unwrap().to_string(),
            ),
            samples,
        );
    }
    for (w, acked_requests) in acked.iter().enumerate() {
        for sidx in 0..SERIES_PER_WRITER {
            let samples = by_key
                .get(&(w.to_string(), sidx.to_string()))
                .cloned()
                .unwrap_or_default();
            // Exactly once: strictly increasing timestamps, each with its own value.
            for win in samples.windows(2) {
                assert!(
                    win[0].0 < win[1].0,
                    "writer {w} series {sidx}: duplicate or unordered samples"
                );
            }
            for (ts, v) in &samples {
                assert_eq!(
                    ((ts - base) / 10) as f64,
                    *v,
                    "writer {w} series {sidx}: wrong value at {ts}"
                );
            }
            // Every acknowledged sample is there.
            let have: std::collections::HashSet<i64> =
                samples.iter().map(|(_, v)| *v as i64).collect();
            for first in acked_requests {
                for i in *first..first + SAMPLES_PER_REQUEST {
                    assert!(
                        have.contains(&i),
                        "writer {w} series {sidx}: acknowledged sample {i} lost\n{}",
                        s.log()
                    );
                }
            }
        }
    }
    eprintln!(
        "durability: {total_acks} acknowledged writes over 7 kills; verified in {:?}",
        start.elapsed()
    );
}

#[test]
fn sigterm_flushes_and_exits_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    let t0 = now_ms() - 60_000;
    let req = WriteRequest {
        timeseries: (0..100)
            .map(|i| {
                series(
                    &[("__name__", "term"), ("i", &i.to_string())],
                    &[(t0, i as f64)],
                )
            })
            .collect(),
        metadata: vec![],
    };
    assert_eq!(push(&s, None, &req).0, 204);
    let (took, status) = s.sigterm();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(s.log().contains("head flushed"), "{}", s.log());
    s.start_again();
    assert!(s.log().contains("samples_replayed=0"), "{}", s.log());
    assert_eq!(raw(&s, None, "term").len(), 100);
}
