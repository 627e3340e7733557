//! Overload: many heavy range queries over a million series while
//! ingestion goes on. Every query either answers or fails with the
//! Prometheus envelope naming the limit it hit; the process stays within
//! its configured query memory (plus a stated overhead), survives, and
//! ingestion sees no errors.

use std::time::{Duration, Instant};

use crate::harness::{PeakRss, Server, client, now_ms, rss_bytes};

const SERIES: usize = 1_000_000;
const MAX_CONCURRENT: u64 = 4;
const MAX_MEMORY_BYTES: u64 = 64 << 20;
const MAX_SAMPLES: u64 = 2_000_000;
/// Besides the queries' own budgets: allocator slack, HTTP buffers and
/// response encoding, and the head's growth from the ingestion that runs
/// alongside.
const OVERHEAD_BYTES: u64 = 512 << 20;

/// Runs `miru loadgen metrics` against the server; returns its JSON summary.
fn loadgen(s: &Server, start_ms: i64, span: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_miru"))
        .args(["loadgen", "metrics", "--url"])
        .arg(s.url("/api/v1/push"))
        .args([
            "--series",
            &SERIES.to_string(),
            "--interval",
            "15s",
            "--span",
            span,
        ])
        .args(["--start", &(start_ms / 1000).to_string()])
        .args([
            "--batch",
            "20000",
            "--concurrency",
            "2",
            "--seed",
            "7",
            "--json",
        ])
        .args(["--max-duration", "10m"])
        .output()
        .expect("running miru loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("loadgen JSON summary")
}

/// Fails, with the server's warnings and panics, when a push failed.
fn assert_clean(s: &Server, summary: &serde_json::Value) {
    let clean = summary["accepted_samples"] == summary["sent_samples"]
        && summary["errors"].as_object().is_none_or(|e| e.is_empty());
    if !clean {
        let log = s.log();
        let notable: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("panicked"))
            .collect();
        panic!(
            "ingestion saw errors: {summary}\nserver warnings ({} lines):\n{}",
            notable.len(),
            notable[notable.len().saturating_sub(40)..].join("\n")
        );
    }
}

#[test]
fn heavy_queries_over_a_million_series_stay_bounded_while_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--query.max-concurrent",
            &MAX_CONCURRENT.to_string(),
            "--query.max-concurrent-per-tenant",
            &MAX_CONCURRENT.to_string(),
            "--query.max-memory-bytes",
            &MAX_MEMORY_BYTES.to_string(),
            "--query.max-samples",
            &MAX_SAMPLES.to_string(),
            "--query.timeout",
            "60s",
        ],
    );
    // Two scrapes of a million series, a minute ago.
    let t0 = (now_ms() / 15_000) * 15_000 - 120_000;
    let first = loadgen(&s, t0, "30s");
    assert_clean(&s, &first);
    assert_eq!(first["accepted_samples"], 2 * SERIES as u64);
    let baseline = rss_bytes(s.pid());

    // Ingestion goes on (two more scrapes) while the queries run.
    let sampler = PeakRss::start(s.pid(), baseline);
    let ingest = {
        let s_ref: &Server = &s;
        std::thread::scope(|scope| {
            let ingest = scope.spawn(move || loadgen(s_ref, t0 + 30_000, "30s"));
            let end_s = (t0 + 60_000) / 1000;
            let queries = [
                "sum by (job) (rate(http_requests_total[5m]))",
                "count({__name__=~\".+\"})",
                "topk(5, sum by (instance) (rate(node_cpu_seconds_total[5m])))",
                "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
                "sum by (namespace) (kube_pod_status_phase)",
            ];
            let started = Instant::now();
            let handles: Vec<_> = (0..50)
                .map(|i| {
                    let q = queries[i % queries.len()];
                    let url = s_ref.url("/api/v1/query_range");
                    scope.spawn(move || {
                        let r = client()
                            .post(url)
                            .timeout(Duration::from_secs(300))
                            .form(&[
                                ("query", q.to_string()),
                                ("start", (end_s - 3600).to_string()),
                                ("end", end_s.to_string()),
                                ("step", "60".to_string()),
                            ])
                            .send()
                            .unwrap_or_else(|e| panic!("{q}: request failed: {e}"));
                        let status = r.status().as_u16();
                        let body: serde_json::Value =
                            serde_json::from_str(&r.text().expect("body")).expect("JSON body");
                        (q, status, body)
                    })
                })
                .collect();
            let mut answered = 0;
            let mut limited = 0;
            for h in handles {
                let (q, status, body) = h.join().unwrap();
                match status {
                    200 => {
                        assert_eq!(body["status"], "success", "{q}: {body}");
                        answered += 1;
                    }
                    422 | 503 => {
                        let err = body["error"].as_str().unwrap_or_default();
                        assert_eq!(body["status"], "error", "{q}: {body}");
                        assert!(
                            err.contains("query."),
                            "{q}: the error names no limit: {body}"
                        );
                        limited += 1;
                    }
                    other => panic!("{q}: unexpected status {other}: {body}"),
                }
            }
            eprintln!(
                "50 range queries in {:.1}s: {answered} answered, {limited} stopped at a limit",
                started.elapsed().as_secs_f64()
            );
            assert!(answered > 0, "no query answered");
            ingest.join().unwrap()
        })
    };
    assert_clean(&s, &ingest);
    assert_eq!(ingest["accepted_samples"], 2 * SERIES as u64);

    let peak = sampler.stop();
    // Each running query holds at most its storage budget plus the step
    // vectors max_samples bounds (~64 bytes each).
    let budget = MAX_CONCURRENT * (MAX_MEMORY_BYTES + MAX_SAMPLES * 64);
    eprintln!(
        "RSS: {} MiB after loading, peak {} MiB during the queries (query budget {} MiB + overhead {} MiB)",
        baseline >> 20,
        peak >> 20,
        budget >> 20,
        OVERHEAD_BYTES >> 20
    );
    assert!(
        peak <= baseline + budget + OVERHEAD_BYTES,
        "RSS grew by {} MiB, more than the query budget {} MiB + overhead {} MiB",
        (peak - baseline) >> 20,
        budget >> 20,
        OVERHEAD_BYTES >> 20
    );
    // Still serving.
    let r = client()
        .post(s.url("/api/v1/query"))
        .form(&[("query", "count(up) or vector(0)")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
