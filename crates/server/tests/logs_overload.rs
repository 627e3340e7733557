//! Logs overload: heavy LogQL queries over a tenant holding a quarter of a
//! million lines (in a Parquet part and in the head) while ingestion goes
//! on. Every query either answers or fails with Loki's plain-text error
//! naming the limit it hit; the process stays within its configured query
//! memory (plus a stated overhead), survives, and ingestion sees no errors.

use std::time::{Duration, Instant};

use crate::harness::{PeakRss, Server, client, now_ms, rss_bytes};

const MAX_CONCURRENT: u64 = 4;
const MAX_MEMORY_BYTES: u64 = 32 << 20;
/// Besides the queries' budgets: the log head growing with the ingestion
/// alongside (~60 MB of lines), allocator slack, response encoding.
const OVERHEAD_BYTES: u64 = 512 << 20;

/// `miru loadgen logs` into the server: 100 streams, `span` of entries
/// ending `start_ago` + span ago; returns its JSON summary.
fn loadgen(s: &Server, start_ago: &str, seed: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_miru"))
        .args(["loadgen", "logs", "--url"])
        .arg(s.url("/loki/api/v1/push"))
        .args([
            "--streams",
            "100",
            "--lines-per-second",
            "1000",
            "--span",
            "2m",
        ])
        .args(["--start-ago", start_ago, "--seed", seed, "--json"])
        .args(["--max-duration", "5m"])
        .output()
        .expect("running miru loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("loadgen JSON summary");
    assert_eq!(
        summary["accepted_lines"], summary["sent_lines"],
        "ingestion saw errors: {summary}"
    );
    assert!(
        summary["errors"].as_object().is_none_or(|e| e.is_empty()),
        "ingestion saw errors: {summary}"
    );
    summary
}

#[test]
fn heavy_log_queries_stay_bounded_while_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(
        dir.path(),
        "limits:\n  ingestion_rate_mb: 0\n  reject_old_samples: false\n",
        &[
            "--query.max-concurrent",
            &MAX_CONCURRENT.to_string(),
            "--query.max-concurrent-per-tenant",
            &MAX_CONCURRENT.to_string(),
            "--query.max-memory-bytes",
            &MAX_MEMORY_BYTES.to_string(),
            "--query.timeout",
            "60s",
        ],
    );
    // Two minutes of 100 streams an hour ago, flushed to a part.
    let first = loadgen(&s, "1h", "1");
    assert_eq!(first["accepted_lines"], 120_000);
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert!(r.status().is_success());
    let baseline = rss_bytes(s.pid());

    let sampler = PeakRss::start(s.pid(), baseline);
    let end_ns = now_ms() * 1_000_000;
    let start_ns = end_ns - 2 * 3_600_000_000_000i64;
    let s_ref: &Server = &s;
    let ingest = std::thread::scope(|scope| {
        // Another two minutes, into the head, while the queries run.
        let ingest = scope.spawn(move || loadgen(s_ref, "20m", "2"));
        let queries = [
            // Every line of the tenant: far over the memory budget.
            (r#"{namespace=~".+"}"#, "5000"),
            (
                r#"sum by (namespace) (count_over_time({namespace=~".+"}[1m]))"#,
                "100",
            ),
            (
                r#"sum(bytes_over_time({namespace=~".+"} | json | level="error" [5m]))"#,
                "100",
            ),
            // A needle: the block filters keep it small.
            (r#"{namespace=~".+"} |= "0123456789abcdef""#, "100"),
        ];
        let started = Instant::now();
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let (q, limit) = queries[i % queries.len()];
                let url = s_ref.url("/loki/api/v1/query_range");
                scope.spawn(move || {
                    let r = client()
                        .get(url)
                        .timeout(Duration::from_secs(300))
                        .query(&[
                            ("query", q.to_string()),
                            ("start", start_ns.to_string()),
                            ("end", end_ns.to_string()),
                            ("step", "60".to_string()),
                            ("limit", limit.to_string()),
                        ])
                        .send()
                        .unwrap_or_else(|e| panic!("{q}: request failed: {e}"));
                    (q, r.status().as_u16(), r.text().expect("body"))
                })
            })
            .collect();
        let (mut answered, mut limited) = (0, 0);
        for h in handles {
            let (q, status, body) = h.join().unwrap();
            match status {
                200 => {
                    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
                    assert_eq!(v["status"], "success", "{q}: {body}");
                    answered += 1;
                }
                422 | 503 => {
                    assert!(
                        body.contains("query."),
                        "{q}: the error names no limit: {body}"
                    );
                    limited += 1;
                }
                other => panic!("{q}: unexpected status {other}: {body}"),
            }
        }
        eprintln!(
            "24 log queries in {:.1}s: {answered} answered, {limited} stopped at a limit",
            started.elapsed().as_secs_f64()
        );
        assert!(answered > 0, "no query answered");
        assert!(
            limited > 0,
            "no query reached the memory limit: the test is too small"
        );
        ingest.join().unwrap()
    });
    assert_eq!(ingest["accepted_lines"], 120_000);

    let peak = sampler.stop();
    let budget = MAX_CONCURRENT * MAX_MEMORY_BYTES;
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
    // Still serving, and nothing was lost.
    let (code, body) = {
        let r = client()
            .get(s.url("/loki/api/v1/index/stats"))
            .query(&[
                ("query", r#"{namespace=~".+"}"#.to_string()),
                ("start", start_ns.to_string()),
                ("end", (now_ms() * 1_000_000).to_string()),
            ])
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["entries"], 240_000, "{body}");
}
