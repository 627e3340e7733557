//! The command line: defaults < YAML file < `MIRU_*` environment < flags,
//! as `miru config` shows them.

use std::process::Command;

fn config(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_miru"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn config_precedence_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("miru.yaml");
    std::fs::write(
        &file,
        "data_dir: /from/file\nserver:\n  listen: 127.0.0.1:1111\nlimits:\n  ingestion_rate: 5\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let defaults = config(&["config"], &[]);
    assert!(defaults.contains("data_dir: ./data"), "{defaults}");
    assert!(defaults.contains("listen: 0.0.0.0:9009"), "{defaults}");
    assert!(defaults.contains("grpc_listen: 0.0.0.0:4317"), "{defaults}");

    let from_file = config(&["config", "--config.file", f], &[]);
    assert!(from_file.contains("data_dir: /from/file"), "{from_file}");
    assert!(from_file.contains("ingestion_rate: 5"), "{from_file}");

    let env = config(
        &["config", "--config.file", f],
        &[
            ("MIRU_DATA_DIR", "/from/env"),
            ("MIRU_LISTEN", "127.0.0.1:2222"),
        ],
    );
    assert!(env.contains("data_dir: /from/env"), "{env}");
    assert!(env.contains("listen: 127.0.0.1:2222"), "{env}");

    let flags = config(
        &["config", "--config.file", f, "--data-dir", "/from/flag"],
        &[("MIRU_DATA_DIR", "/from/env")],
    );
    assert!(flags.contains("data_dir: /from/flag"), "{flags}");

    // A bad file is an error that names it.
    std::fs::write(&file, "no_such_setting: 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_miru"))
        .args(["config", "--config.file", f])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("miru.yaml"));
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_miru"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--data-dir",
        "--listen",
        "--grpc-listen",
        "--config.file",
        "--runtime-config.file",
        "--storage.backend",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(
        help.contains("MIRU_DATA_DIR"),
        "--help lacks the environment variables"
    );
}

/// The server turns transparent huge pages off for itself: with them on,
/// mimalloc's purged ranges came back as freshly zeroed 2 MiB pages and 40 %
/// of the logs ingest CPU went to the kernel clearing them.
#[test]
fn server_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::harness::Server::start(dir.path(), &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    // Linux has reported the flag since 5.0; without it the test fails
    // rather than pass having checked nothing.
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim)
        .expect("/proc/PID/status has no THP_enabled line (kernel older than 5.0?)");
    assert_eq!(thp, "0", "THP still enabled for the server process");
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// Idle blocking threads are retired after 2 s, not tokio's default 10 s:
/// each keeps what it freed in its allocator heap while it waits (after a
/// 50k-series backfill ~100 MiB of a 178 MiB RSS, docs/benchmarks.md).
#[test]
fn idle_blocking_threads_retire_within_seconds() {
    use crate::harness::{client, now_ms, push, series};
    use miru_ingest::remote_write::proto_v1::WriteRequest;
    let dir = tempfile::tempdir().unwrap();
    let server = crate::harness::Server::start(dir.path(), &[]);
    // The blocking threads of start-up (file system calls) retire first.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let before = threads(server.pid());
    let req = WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(now_ms(), 1.0)])],
        ..Default::default()
    };
    assert_eq!(push(&server, None, &req).0, 204);
    // The flush writes its part on a blocking thread.
    let r = client().post(server.url("/ingester/flush")).send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let after_flush = threads(server.pid());
    assert!(
        after_flush > before,
        "the flush started no thread ({before} before, {after_flush} after): the test checks nothing"
    );
    let t0 = std::time::Instant::now();
    while threads(server.pid()) >= after_flush {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(6),
            "the idle blocking thread still lives after 6 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
