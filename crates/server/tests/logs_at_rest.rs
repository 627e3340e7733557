//! Logs at rest: the real Apache access logs of `../shared/data`, pushed as
//! three streams (plain, JSON, logfmt) the way `bench/push_apache_logs.py`
//! does, take at most 1/15 of their raw line bytes once flushed (issue 5's
//! goal), counting the Parquet parts and their block filters.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::harness::{Server, client, files_under, now_ms};

const APACHE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/logs/apache-access-semicomplete"
);

fn bytes_under(dir: &Path, suffix: &str) -> u64 {
    files_under(dir)
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn apache_access_logs_compress_at_least_15x() {
    let base = PathBuf::from(APACHE);
    if !base.is_dir() {
        eprintln!(
            "SKIPPED LOUDLY: {APACHE} is absent (../shared/data is not checked out next to the repo)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(
        dir.path(),
        "limits:\n  ingestion_rate_mb: 0\n  reject_old_samples: false\n",
        &[],
    );
    // Noon of yesterday (UTC): the 17 minutes of entries never straddle a
    // day boundary, which would split them over two parts.
    const DAY_MS: i64 = 86_400_000;
    let t0 = ((now_ms() / DAY_MS - 1) * DAY_MS + DAY_MS / 2) * 1_000_000;
    let mut raw = 0u64;
    for (format, file) in [
        ("plain", "apache_logs"),
        ("json", "apache_logs.jsonl"),
        ("logfmt", "apache_logs.logfmt"),
    ] {
        let bytes = std::fs::read(base.join(file)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        raw += lines.iter().map(|l| l.len() as u64).sum::<u64>();
        for (c, chunk) in lines.chunks(1000).enumerate() {
            let values: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(j, l)| {
                    let ts = t0 + ((c * 1000 + j) as i64) * 100_000_000;
                    json!([ts.to_string(), l])
                })
                .collect();
            let body = json!({"streams": [{"stream": {"job": "apache", "format": format}, "values": values}]});
            let r = client()
                .post(s.url("/loki/api/v1/push"))
                .header("X-Scope-OrgID", "apache")
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap());
        }
    }
    assert!(raw > 8_000_000, "only {raw} raw bytes read from {APACHE}");
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert!(r.status().is_success());
    let logs = dir.path().join("data/objects/apache/logs");
    let parts = bytes_under(&logs, ".parquet");
    let filters = bytes_under(&logs, ".blooms");
    assert!(parts > 0, "no logs part under {}", logs.display());
    let ratio = raw as f64 / (parts + filters) as f64;
    eprintln!("{raw} raw line bytes -> {parts} B of parts + {filters} B of filters: {ratio:.2}x");
    assert!(ratio >= 15.0, "compression {ratio:.2}x is below 15x");
}
