//! Differential check against a real Prometheus (Debian's `prometheus`,
//! installed by scripts/test.sh): the same samples go to both by remote
//! write, and queries typical of dashboards and alerts must give the same
//! results within float tolerance.
//!
//! Debian ships Prometheus 2.42; the corpus encodes Prometheus 3. Where the
//! two differ the data avoids the difference instead of hiding it:
//! samples sit 7 s off the 15 s grid and queries run at whole minutes, so
//! no range window boundary falls on a sample (Prometheus 3 windows are
//! left-open, 2.x closed), and no query uses functions renamed in 3.0.
//! Subquery ranges are chosen off their step's grid for the same reason:
//! `[15m:30s]` at a whole minute puts an inner step exactly on the window
//! start, which 2.42 includes and Prometheus 3 (and miru) exclude; that
//! query gave 2.840 (miru) vs 1.816 (2.42) at one step when tried.
//! The remaining difference, extrapolation of a counter created inside the
//! window, is checked on its own with both versions' expected values.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use miru_ingest::remote_write::encode_v1_for_tests;
use miru_ingest::remote_write::proto_v1::{TimeSeries, WriteRequest};
use serde_json::Value;

use crate::external::{ChildGuard, prometheus, require_or_skip};
use crate::harness::*;

const STEP_MS: i64 = 15_000;
const SAMPLES: i64 = 120; // 30 minutes

fn workload(t0: i64) -> Vec<TimeSeries> {
    let ts = |i: i64| t0 + i * STEP_MS + 7_000;
    let mut out = Vec::new();
    for (job, instance, rate, reset_at) in [
        ("api", "a:1", 1.0, None),
        ("api", "a:2", 2.5, Some(70)),
        ("db", "d:1", 0.25, None),
    ] {
        let counter: Vec<(i64, f64)> = (0..SAMPLES)
            .map(|i| {
                let base = match reset_at {
                    Some(r) if i >= r => (i - r) as f64,
                    _ => i as f64,
                };
                (ts(i), (rate * 15.0 * base).round())
            })
            .collect();
        out.push(series(
            &[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("instance", instance),
                ("job", job),
            ],
            &counter,
        ));
        let errors: Vec<(i64, f64)> = counter
            .iter()
            .map(|(t, v)| (*t, (v / 10.0).floor()))
            .collect();
        out.push(series(
            &[
                ("__name__", "http_requests_total"),
                ("code", "500"),
                ("instance", instance),
                ("job", job),
            ],
            &errors,
        ));
        for (le, share) in [
            ("0.05", 0.3),
            ("0.1", 0.55),
            ("0.25", 0.8),
            ("1", 0.97),
            ("+Inf", 1.0),
        ] {
            let v: Vec<(i64, f64)> = counter
                .iter()
                .map(|(t, v)| (*t, (v * share).floor()))
                .collect();
            out.push(series(
                &[
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("instance", instance),
                    ("job", job),
                    ("le", le),
                ],
                &v,
            ));
        }
        let gauge: Vec<(i64, f64)> = (0..SAMPLES)
            .map(|i| {
                (
                    ts(i),
                    100.0 + 20.0 * ((i as f64) / 9.0).sin() + rate * i as f64 * 0.1,
                )
            })
            .collect();
        out.push(series(
            &[
                ("__name__", "node_memory_free_bytes"),
                ("instance", instance),
                ("job", job),
            ],
            &gauge,
        ));
        out.push(series(
            &[("__name__", "up"), ("instance", instance), ("job", job)],
            &(0..SAMPLES).map(|i| (ts(i), 1.0)).collect::<Vec<_>>(),
        ));
    }
    // A counter created 25 minutes in, at 10 and +1/s: the one documented
    // deviation (see `counter_created_inside_the_window_follows_prometheus_3`).
    out.push(series(
        &[("__name__", "fresh_requests_total"), ("job", "api")],
        &(100..SAMPLES)
            .map(|i| (ts(i), 10.0 + 15.0 * (i - 100) as f64))
            .collect::<Vec<_>>(),
    ));
    // An info-style metric to join on.
    for (instance, version) in [("a:1", "1.2"), ("a:2", "1.3"), ("d:1", "9.6")] {
        out.push(series(
            &[
                ("__name__", "build_info"),
                ("instance", instance),
                ("version", version),
            ],
            &(0..SAMPLES).map(|i| (ts(i), 1.0)).collect::<Vec<_>>(),
        ));
    }
    out
}

/// Dashboard and alert queries: (query, ordered result).
const QUERIES: &[(&str, bool)] = &[
    ("rate(http_requests_total[5m])", false),
    ("sum by (job) (rate(http_requests_total[5m]))", false),
    (
        "sum by (job, code) (increase(http_requests_total[10m]))",
        false,
    ),
    ("irate(http_requests_total[2m])", false),
    ("resets(http_requests_total[30m])", false),
    (
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        false,
    ),
    (
        "histogram_quantile(0.5, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))",
        false,
    ),
    (
        "topk(2, rate(http_requests_total{code=\"200\"}[5m]))",
        false,
    ),
    (
        "bottomk(1, sum by (instance) (rate(http_requests_total[5m])))",
        false,
    ),
    (
        "sum by (instance) (rate(http_requests_total{code=\"500\"}[5m])) / sum by (instance) (rate(http_requests_total[5m]))",
        false,
    ),
    (
        "rate(http_requests_total{code=\"200\"}[5m]) * on(instance) group_left(version) build_info",
        false,
    ),
    ("up * on(instance) group_left(version) build_info", false),
    ("absent(nonexistent_metric{job=\"x\"})", false),
    ("absent(up)", false),
    ("predict_linear(node_memory_free_bytes[15m], 3600)", false),
    ("deriv(node_memory_free_bytes[10m])", false),
    ("delta(node_memory_free_bytes[10m])", false),
    ("avg_over_time(node_memory_free_bytes[10m])", false),
    (
        "max_over_time(rate(http_requests_total[1m])[9m50s:1m])",
        false,
    ),
    (
        "min_over_time(sum(rate(http_requests_total[2m]))[14m50s:30s])",
        false,
    ),
    (
        "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
        false,
    ),
    ("count_values(\"value\", up)", false),
    ("quantile(0.75, node_memory_free_bytes)", false),
    ("stddev by (job) (node_memory_free_bytes)", false),
    ("node_memory_free_bytes > bool 105", false),
    ("node_memory_free_bytes offset 5m", false),
    ("changes(node_memory_free_bytes[10m])", false),
    ("clamp(node_memory_free_bytes, 90, 110)", false),
    (
        "sort_desc(sum by (instance) (rate(http_requests_total[5m])))",
        true,
    ),
    ("count(up == 1) by (job)", false),
    (
        "sum(rate(http_requests_total[5m])) without (code, instance)",
        false,
    ),
    ("time() - timestamp(up)", false),
    ("scalar(sum(up)) * 2", false),
    ("vector(1) + on() group_left sum(up)", false),
];

fn query(base: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let resp = client()
        .post(format!("{base}{path}"))
        .form(form)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    assert_eq!(status, 200, "{path} {form:?}: {body}");
    body
}

/// One result series: its labels as text and its (time, value) points.
type Points = (String, Vec<(f64, f64)>);

/// Result type and series, in the order the API returned them.
fn normalise(body: &Value) -> (String, Vec<Points>) {
    let data = &body["data"];
    let kind = data["resultType"].as_str().unwrap().to_string();
    let parse = |p: &Value| {
        (
            p[0].as_f64().unwrap(),
            p[1].as_str().unwrap().parse::<f64>().unwrap(),
        )
    };
    let mut out = Vec::new();
    match kind.as_str() {
        "scalar" => out.push((String::new(), vec![parse(&data["result"])])),
        _ => {
            for s in data["result"].as_array().unwrap() {
                let labels: BTreeMap<String, String> = s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let points = match s.get("values") {
                    Some(v) => v.as_array().unwrap().iter().map(parse).collect(),
                    None => vec![parse(&s["value"])],
                };
                out.push((format!("{labels:?}"), points));
            }
        }
    }
    (kind, out)
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-9)
}

fn compare(what: &str, miru: &Value, prom: &Value, ordered: bool) -> Result<(), String> {
    let (mk, mut m) = normalise(miru);
    let (pk, mut p) = normalise(prom);
    if mk != pk {
        return Err(format!("{what}: result type {mk} vs Prometheus {pk}"));
    }
    if !ordered {
        m.sort_by(|a, b| a.0.cmp(&b.0));
        p.sort_by(|a, b| a.0.cmp(&b.0));
    }
    if m.len() != p.len() || m.iter().zip(&p).any(|(x, y)| x.0 != y.0) {
        let ml: Vec<&String> = m.iter().map(|x| &x.0).collect();
        let pl: Vec<&String> = p.iter().map(|x| &x.0).collect();
        return Err(format!(
            "{what}: series differ\n  miru: {ml:?}\n  prom: {pl:?}"
        ));
    }
    for ((labels, mp), (_, pp)) in m.iter().zip(&p) {
        if mp.len() != pp.len() {
            return Err(format!(
                "{what}: {labels}: {} points vs Prometheus {}",
                mp.len(),
                pp.len()
            ));
        }
        for (a, b) in mp.iter().zip(pp) {
            if a.0 != b.0 || !close(a.1, b.1) {
                return Err(format!("{what}: {labels}: {a:?} vs Prometheus {b:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn same_answers_as_prometheus() {
    if !require_or_skip("Debian's prometheus", prometheus().is_some()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("miru"), &[]);
    let pdir = dir.path().join("prometheus");
    std::fs::create_dir_all(&pdir).unwrap();
    std::fs::write(pdir.join("prometheus.yml"), "global: {}\n").unwrap();
    let port = free_port();
    let log_path = pdir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(prometheus().unwrap())
        .current_dir(&pdir)
        .arg(format!(
            "--config.file={}",
            pdir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            pdir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    let mut prom = ChildGuard::new("prometheus", child, log_path);
    let prom_base = format!("http://127.0.0.1:{port}");
    prom.wait_until(Duration::from_secs(30), || {
        client()
            .get(format!("{prom_base}/-/ready"))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });

    let now = now_ms();
    let t0 = (now / 60_000) * 60_000 - SAMPLES * STEP_MS;
    let req = WriteRequest {
        timeseries: workload(t0),
        ..Default::default()
    };
    let (st, body) = push(&s, None, &req);
    assert_eq!(st, 204, "{body}");
    let resp = client()
        .post(format!("{prom_base}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(encode_v1_for_tests(&req))
        .send()
        .unwrap();
    assert!(
        resp.status().is_success(),
        "prometheus: {}",
        resp.text().unwrap_or_default()
    );

    let end_s = ((t0 + SAMPLES * STEP_MS) / 1000).to_string();
    let start_s = ((t0 + 15 * 60_000) / 1000).to_string();
    let mut failures = Vec::new();
    for (q, ordered) in QUERIES {
        let instant = [("query", *q), ("time", end_s.as_str())];
        let m = query(&s.url(""), "/api/v1/query", &instant);
        let p = query(&prom_base, "/api/v1/query", &instant);
        if let Err(e) = compare(&format!("instant {q}"), &m, &p, *ordered) {
            failures.push(e);
        }
        if *ordered {
            continue;
        }
        let range = [
            ("query", *q),
            ("start", start_s.as_str()),
            ("end", end_s.as_str()),
            ("step", "60"),
        ];
        let m = query(&s.url(""), "/api/v1/query_range", &range);
        let p = query(&prom_base, "/api/v1/query_range", &range);
        if let Err(e) = compare(&format!("range {q}"), &m, &p, false) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} comparisons differ from Prometheus:\n{}",
        failures.len(),
        QUERIES.len() * 2,
        failures.join("\n")
    );
    counter_created_inside_the_window_follows_prometheus_3(&s.url(""), &prom_base, &end_s);
}

/// The one place the data does not avoid a 2.x/3.x difference, checked
/// instead: `fresh_requests_total` has 20 samples 15 s apart (first value
/// 10, increase 285 over 285 s), the first 67 s after the start of a 6 m
/// window ending 8 s after the last. Both versions extrapolate 8 s at the
/// end. At the start, Prometheus 3 (and miru) first cap the 67 s at half an
/// interval (7.5 s, since 67 s exceeds 1.1 intervals), then at the counter's
/// zero point (10 s, no change): rate = (285 + 7.5 + 8) / 360. Prometheus
/// 2.42 caps at the zero point first (10 s), which is then under the
/// threshold and kept: (285 + 10 + 8) / 360.
fn counter_created_inside_the_window_follows_prometheus_3(miru: &str, prom: &str, end_s: &str) {
    let form = [("query", "rate(fresh_requests_total[6m])"), ("time", end_s)];
    let value = |base: &str| -> f64 {
        let body = query(base, "/api/v1/query", &form);
        let v = &body["data"]["result"][0]["value"][1];
        v.as_str()
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("{base}: no single value in {body}"))
    };
    let (m, p) = (value(miru), value(prom));
    assert!(
        close(m, 300.5 / 360.0),
        "miru: {m}, Prometheus 3 gives {}",
        300.5 / 360.0
    );
    assert!(
        close(p, 303.0 / 360.0),
        "Prometheus: {p}; 2.42 gives {} (a newer Prometheus would match miru: update this test and docs/benchmarks.md)",
        303.0 / 360.0
    );
}
