//! Per-tenant limits, from defaults and from the runtime file that is
//! reloaded without a restart.

use std::time::{Duration, Instant};

use miru_ingest::remote_write::proto_v1::WriteRequest;

use crate::harness::*;

fn batch(name: &str, n: usize, ts: i64) -> WriteRequest {
    WriteRequest {
        timeseries: (0..n)
            .map(|i| series(&[("__name__", name), ("i", &i.to_string())], &[(ts, 1.0)]))
            .collect(),
        metadata: vec![],
    }
}

#[test]
fn limits_per_tenant_and_runtime_reload() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime.yaml");
    std::fs::write(
        &runtime,
        "overrides:\n  small:\n    max_global_series_per_user: 5\n    max_label_names_per_series: 3\n    max_request_body_bytes: 2000\n  slow:\n    ingestion_rate: 10\n    ingestion_burst_size: 20\n",
    )
    .unwrap();
    let s = Server::start(
        dir.path(),
        &[
            "--runtime-config.file",
            runtime.to_str().unwrap(),
            "--runtime-config.reload-period",
            "200ms",
        ],
    );
    let t0 = now_ms() - 10_000;

    // Series limit: 429 naming the limit; existing series keep working.
    assert_eq!(push(&s, Some("small"), &batch("a", 5, t0)).0, 204);
    let (st, msg) = push(&s, Some("small"), &batch("b", 1, t0));
    assert_eq!(st, 429, "{msg}");
    assert!(msg.contains("max_global_series_per_user"), "{msg}");
    assert_eq!(push(&s, Some("small"), &batch("a", 5, t0 + 1000)).0, 204);
    // Other tenants have the default limits.
    assert_eq!(push(&s, Some("big"), &batch("b", 50, t0)).0, 204);

    // Label count and body size.
    let many = WriteRequest {
        timeseries: vec![series(
            &[("__name__", "a"), ("i", "0"), ("x", "1"), ("y", "2")],
            &[(t0 + 2000, 1.0)],
        )],
        metadata: vec![],
    };
    let (st, msg) = push(&s, Some("small"), &many);
    assert_eq!(st, 400);
    assert!(msg.contains("too many labels"), "{msg}");
    let (st, msg) = push(&s, Some("small"), &batch("a", 200, t0 + 3000));
    assert_eq!(st, 413, "{msg}");
    assert!(msg.contains("max_request_body_bytes"), "{msg}");

    // Rate limit: burst of 20 samples, then 429 with Retry-After.
    assert_eq!(push(&s, Some("slow"), &batch("r", 20, t0)).0, 204);
    let (st, msg) = push(&s, Some("slow"), &batch("r", 20, t0 + 1000));
    assert_eq!(st, 429);
    assert!(msg.contains("ingestion rate limit"), "{msg}");

    // Raise the series limit in the runtime file: applies without restart.
    std::fs::write(
        &runtime,
        "overrides:\n  small:\n    max_global_series_per_user: 100\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, _) = push(&s, Some("small"), &batch("c", 3, t0 + 5000));
        if st == 204 {
            break;
        }
        assert!(Instant::now() < deadline, "runtime override not applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric_sum(&s, "miru_runtime_config_last_reload_successful", ""),
        1.0
    );
    // A broken runtime file keeps the previous overrides in force.
    std::fs::write(&runtime, "overrides: [this is: not valid").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        metric_sum(&s, "miru_runtime_config_last_reload_successful", ""),
        0.0
    );
    assert_eq!(push(&s, Some("small"), &batch("d", 3, t0 + 6000)).0, 204);
}
