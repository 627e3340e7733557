//! Parts in S3 (moto's S3 server from the test virtualenv): flushed parts
//! land in the bucket, a miru whose local disk was wiped gets everything
//! back from the bucket, and compaction in the bucket keeps every sample.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use miru_ingest::remote_write::proto_v1::WriteRequest;

use crate::external::{ChildGuard, require_or_skip, venv_bin};
use crate::harness::*;

const BUCKET: &str = "miru-test";

/// A moto S3 server on a loopback port, killed when dropped.
struct Moto {
    guard: ChildGuard,
    port: u16,
}

impl Moto {
    fn start(dir: &Path) -> Moto {
        let bin = venv_bin("moto_server").expect("checked by the caller");
        let port = free_port();
        let log_path = dir.join("moto.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting moto_server");
        let mut guard = ChildGuard::new("moto_server", child, log_path);
        let url = format!("http://127.0.0.1:{port}/");
        guard.wait_until(Duration::from_secs(30), || {
            client()
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        Moto { guard, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every object key in the bucket (ListObjectsV2, unsigned: moto
    /// accepts that).
    fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = self.url(&format!("/{BUCKET}?list-type=2"));
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", urlencode(t)));
            }
            let resp = client().get(&url).send().unwrap();
            assert_eq!(resp.status().as_u16(), 200, "listing {url}");
            let xml = resp.text().unwrap();
            keys.extend(xml_values(&xml, "Key"));
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                return keys;
            }
        }
    }
}

/// The text of every `<tag>…</tag>` in `xml`, XML entities undone.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let Some(j) = rest.find(&close) else { break };
        out.push(
            rest[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[j + close.len()..];
    }
    out
}

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds.
fn utc_date(ms: i64) -> String {
    let (y, m, d) = miru_model::civil::civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

fn part_keys(moto: &Moto, tenant: &str) -> Vec<String> {
    moto.keys()
        .into_iter()
        .filter(|k| k.starts_with(&format!("{tenant}/metrics/")) && k.ends_with(".mpart"))
        .collect()
}

/// The level of a part key (`…/L{level}_…mpart`).
fn level(key: &str) -> u32 {
    let file = key.rsplit('/').next().unwrap();
    file[1..file.find('_').unwrap()].parse().unwrap()
}

/// Every file under `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_ending(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out
}

/// A start time such that `SERIES` series of 20 samples a second apart, in
/// each of `batches` batches 30 s apart, all fall on the current UTC day
/// (so that they share one day's parts) and none is far in the future.
fn base_ts() -> i64 {
    let now = now_ms();
    let day_start = now - now.rem_euclid(86_400_000);
    (now - 300_000).max(day_start)
}

const SERIES: usize = 3;

/// Batch `b`: `SERIES` series with 20 samples each, values unique per batch.
fn batch(base: i64, b: usize) -> WriteRequest {
    let timeseries = (0..SERIES)
        .map(|i| {
            let samples: Vec<(i64, f64)> = (0..20)
                .map(|k| {
                    let ts = base + b as i64 * 30_000 + k * 1_000;
                    (ts, (b * 1000 + i * 100) as f64 + k as f64)
                })
                .collect();
            series(
                &[
                    ("__name__", "s3_test_metric"),
                    ("job", "s3"),
                    ("series", &i.to_string()),
                ],
                &samples,
            )
        })
        .collect();
    WriteRequest {
        timeseries,
        metadata: vec![],
    }
}

/// What `raw` must return after batches `0..n`, sorted by series label.
fn expected(base: i64, n: usize) -> Vec<(String, Vec<(i64, f64)>)> {
    (0..SERIES)
        .map(|i| {
            let samples = (0..n)
                .flat_map(|b| batch(base, b).timeseries[i].samples.clone())
                .map(|s| (s.timestamp, s.value))
                .collect();
            (i.to_string(), samples)
        })
        .collect()
}

fn stored(s: &Server) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut got: Vec<(String, Vec<(i64, f64)>)> = raw(s, None, "s3_test_metric")
        .into_iter()
        .map(|(l, v)| (l["series"].as_str().unwrap().to_string(), v))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

fn flush(s: &Server) -> u64 {
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", s.log());
    r.headers()["x-miru-parts-flushed"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// moto running with the bucket created, or `None` when moto is missing
/// (and that is allowed).
fn moto_with_bucket(dir: &Path) -> Option<Moto> {
    if !require_or_skip(
        "moto_server (Python virtualenv)",
        venv_bin("moto_server").is_some(),
    ) {
        return None;
    }
    let moto = Moto::start(dir);
    let r = client()
        .put(moto.url(&format!("/{BUCKET}")))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "creating the bucket");
    // The bucket exists and is empty.
    assert_eq!(moto.keys(), Vec::<String>::new());
    Some(moto)
}

fn start_miru(dir: &Path, moto: &Moto) -> Server {
    let endpoint = moto.url("");
    Server::start_with_env(
        dir,
        &[
            "--storage.backend",
            "s3",
            "--storage.s3.bucket",
            BUCKET,
            "--storage.s3.endpoint",
            &endpoint,
            "--storage.s3.allow-http",
            "true",
            "--storage.s3.force-path-style",
            "true",
            "--storage.s3.region",
            "us-east-1",
            "--storage.compaction-interval",
            "1h",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    )
}

#[test]
fn s3_parts_survive_a_wiped_disk_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut moto) = moto_with_bucket(dir.path()) else {
        return;
    };
    let mut s = start_miru(&dir.path().join("miru"), &moto);
    let base = base_ts();

    let (st, body) = push(&s, None, &batch(base, 0));
    assert_eq!(st, 204, "{body}");
    assert_eq!(stored(&s), expected(base, 1));
    assert_eq!(flush(&s), 1);

    // The part is in the bucket under the tenant and the samples' day...
    let keys = part_keys(&moto, "anonymous");
    let prefix = format!("anonymous/metrics/{}/", utc_date(base));
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with(&prefix), "{keys:?} not under {prefix}");
    assert_eq!(level(&keys[0]), 0);
    // ...and not on the local disk.
    let data = s.dir.join("data");
    assert!(files_ending(&data, ".mpart").is_empty());

    // Lose the machine: kill -9 and wipe the local disk (the WAL was trimmed
    // by the flush). Everything comes back from the bucket.
    s.kill9();
    std::fs::remove_dir_all(&data).unwrap();
    s.start_again();
    assert_eq!(stored(&s), expected(base, 1), "{}", s.log());

    // Three more parts of the same day and level: with the default fan-in
    // of 4 one compaction pass merges them into one level-1 part.
    for b in 1..4 {
        let (st, body) = push(&s, None, &batch(base, b));
        assert_eq!(st, 204, "{body}");
        assert_eq!(flush(&s), 1);
    }
    assert_eq!(stored(&s), expected(base, 4));
    let before = part_keys(&moto, "anonymous");
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before.iter().all(|k| level(k) == 0), "{before:?}");

    let r = client()
        .post(s.url("/miru/api/v1/admin/compact"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let stats: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(
        stats,
        serde_json::json!({"parts_merged": 4, "parts_written": 1})
    );
    assert_eq!(stored(&s), expected(base, 4));
    let after = part_keys(&moto, "anonymous");
    let merged: Vec<&String> = after.iter().filter(|k| level(k) == 1).collect();
    assert_eq!(merged.len(), 1, "{after:?}");
    assert!(merged[0].starts_with(&prefix), "{after:?}");

    // After a restart (the sources may still be in the bucket, named by the
    // merged part's `.replaces` note) nothing is lost or doubled.
    s.restart();
    assert_eq!(stored(&s), expected(base, 4), "{}", s.log());
    // A second pass has nothing left to merge.
    let r = client()
        .post(s.url("/miru/api/v1/admin/compact"))
        .send()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
    assert_eq!(stats["parts_merged"], 0);

    moto.guard.assert_running();
}

/// After the local disk is lost, the WAL starts again from segment 1 while
/// the parts in the bucket name higher segments as flushed. Samples written
/// after that and not yet flushed must still survive a crash.
#[test]
fn s3_wiped_disk_then_crash_keeps_unflushed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut moto) = moto_with_bucket(dir.path()) else {
        return;
    };
    let mut s = start_miru(&dir.path().join("miru"), &moto);
    let base = base_ts();

    // A few flushes, so the bucket's parts name WAL segments 1, 2 and 3.
    for b in 0..3 {
        let (st, body) = push(&s, None, &batch(base, b));
        assert_eq!(st, 204, "{body}");
        assert_eq!(flush(&s), 1);
    }
    s.kill9();
    std::fs::remove_dir_all(s.dir.join("data")).unwrap();
    s.start_again();
    assert_eq!(stored(&s), expected(base, 3), "{}", s.log());

    // Acknowledged (fsync'd to the new WAL) but not flushed, then a crash.
    let (st, body) = push(&s, None, &batch(base, 3));
    assert_eq!(st, 204, "{body}");
    assert_eq!(stored(&s), expected(base, 4));
    s.restart();
    assert_eq!(stored(&s), expected(base, 4), "{}", s.log());

    moto.guard.assert_running();
}
