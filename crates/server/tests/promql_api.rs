//! The PromQL API as Grafana's Prometheus data source uses it: Save & test,
//! autocomplete, Explore instant and range queries, the exemplars probe, a
//! dashboard-like batch of range queries, error envelopes and limits.

use miru_ingest::remote_write::proto_v1::{Exemplar, Label, WriteRequest};
use serde_json::{Value, json};

use crate::harness::*;

/// A form body, `application/x-www-form-urlencoded`.
fn form_body(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POST a form like Grafana's backend does (its default method).
fn post_form(s: &Server, tenant: Option<&str>, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let body = form_body(form);
    let mut r = client()
        .post(s.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A counter per (job, instance) growing by `rate` per second, every 15 s
/// for the 10 minutes before `end`, plus histogram buckets.
fn load(s: &Server, tenant: Option<&str>, end: i64) {
    let mut ts = Vec::new();
    for (job, instance, rate) in [("api", "a:1", 1.0), ("api", "a:2", 2.0), ("db", "d:1", 0.5)] {
        let samples: Vec<(i64, f64)> = (0..=40)
            .map(|i| (end - 600_000 + i * 15_000, rate * 15.0 * i as f64))
            .collect();
        ts.push(series(
            &[
                ("__name__", "http_requests_total"),
                ("instance", instance),
                ("job", job),
            ],
            &samples,
        ));
        for (le, share) in [("0.1", 0.5), ("0.5", 0.9), ("+Inf", 1.0)] {
            let samples: Vec<(i64, f64)> = samples.iter().map(|(t, v)| (*t, v * share)).collect();
            ts.push(series(
                &[
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("instance", instance),
                    ("job", job),
                    ("le", le),
                ],
                &samples,
            ));
        }
    }
    ts[0].exemplars.push(Exemplar {
        labels: vec![Label {
            name: "trace_id".into(),
            value: "4bf92f3577b34da6".into(),
        }],
        value: 15.0,
        timestamp: end - 600_000 + 15_000,
    });
    let (st, body) = push(
        s,
        tenant,
        &WriteRequest {
            timeseries: ts,
            ..Default::default()
        },
    );
    assert_eq!(st, 204, "{body}");
}

fn value_of(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn grafana_prometheus_data_source_flows() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // Whole minutes, so that steps line up with samples.
    let end = (now_ms() / 60_000) * 60_000;
    load(&s, None, end);
    let end_s = (end / 1000).to_string();
    let start_s = ((end - 600_000) / 1000).to_string();

    // Save & test: `1+1` at time 4, by POST and by GET, also under /prometheus.
    for path in ["/api/v1/query", "/prometheus/api/v1/query"] {
        let (st, body) = post_form(&s, None, path, &[("query", "1+1"), ("time", "4")]);
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            body,
            json!({"status": "success", "data": {"resultType": "scalar", "result": [4.0, "2"]}})
        );
    }
    let (st, body) = get_json(&s, None, "/api/v1/query?query=1%2B1&time=4");
    assert_eq!((st, &body["data"]["result"]), (200, &json!([4.0, "2"])));
    let (st, body) = get_json(&s, None, "/api/v1/status/buildinfo");
    assert_eq!(st, 200);
    assert!(
        body["data"]["features"]
            .as_object()
            .is_some_and(|f| !f.is_empty()),
        "{body}"
    );

    // Autocomplete: metric names, label names, label values, with match[].
    let q = format!("/api/v1/label/__name__/values?start={start_s}&end={end_s}");
    let (_, body) = get_json(&s, None, &q);
    assert_eq!(
        body["data"],
        json!([
            "http_request_duration_seconds_bucket",
            "http_requests_total"
        ])
    );
    let (_, body) = post_form(
        &s,
        None,
        "/api/v1/labels",
        &[
            ("match[]", "http_requests_total"),
            ("start", &start_s),
            ("end", &end_s),
        ],
    );
    assert_eq!(body["data"], json!(["__name__", "instance", "job"]));
    let q = format!(
        "/api/v1/label/job/values?match[]={}",
        urlencode("http_requests_total{instance=~\"a.*\"}")
    );
    assert_eq!(get_json(&s, None, &q).1["data"], json!(["api"]));

    // Explore, instant: a rate per job at `end`.
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[
            ("query", "sum by (job) (rate(http_requests_total[5m]))"),
            ("time", &end_s),
        ],
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "vector");
    let result = body["data"]["result"].as_array().unwrap();
    let per_job: Vec<(String, f64)> = result
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap().to_string(),
                value_of(&r["value"][1]),
            )
        })
        .collect();
    assert_eq!(per_job.len(), 2, "{body}");
    for (job, v) in per_job {
        let want = if job == "api" { 3.0 } else { 0.5 };
        assert!((v - want).abs() < 1e-9, "{job}: {v}");
    }

    // Explore, range: every step has a point; histogram_quantile works.
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query_range",
        &[
            (
                "query",
                "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
            ),
            ("start", &((end - 300_000) / 1000).to_string()),
            ("end", &end_s),
            ("step", "60"),
        ],
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let values = body["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 6, "{body}");
    for v in values {
        // 90% of observations are at or below 0.5.
        assert!((value_of(&v[1]) - 0.5).abs() < 1e-9, "{v}");
    }

    // The exemplars probe at start-up, then real exemplars.
    let (st, body) = get_json(&s, None, "/api/v1/query_exemplars?query=test");
    assert_eq!((st, &body["status"]), (200, &json!("success")), "{body}");
    let q = format!(
        "/api/v1/query_exemplars?query={}&start={start_s}&end={end_s}",
        urlencode("rate(http_requests_total{job=\"api\"}[5m])")
    );
    let (_, body) = get_json(&s, None, &q);
    assert_eq!(
        body["data"][0]["exemplars"][0]["labels"],
        json!({"trace_id": "4bf92f3577b34da6"})
    );
    assert_eq!(body["data"][0]["seriesLabels"]["instance"], "a:1");

    // A dashboard opening: several range queries at once, all answered.
    let queries = [
        "sum(rate(http_requests_total[5m]))",
        "topk(2, rate(http_requests_total[5m]))",
        "sum by (job) (increase(http_requests_total[10m]))",
        "rate(http_requests_total[5m]) / on(instance) group_left(job) rate(http_requests_total[5m])",
        "absent(nonexistent_metric)",
        "max_over_time(rate(http_requests_total[1m])[5m:1m])",
    ];
    std::thread::scope(|scope| {
        let handles: Vec<_> = queries
            .iter()
            .map(|q| {
                let s = &s;
                let start = start_s.clone();
                let end = end_s.clone();
                scope.spawn(move || {
                    post_form(
                        s,
                        None,
                        "/api/v1/query_range",
                        &[
                            ("query", q),
                            ("start", &start),
                            ("end", &end),
                            ("step", "15s"),
                        ],
                    )
                })
            })
            .collect();
        for (q, h) in queries.iter().zip(handles) {
            let (st, body) = h.join().unwrap();
            assert_eq!(st, 200, "{q}: {body}");
            assert!(
                !body["data"]["result"].as_array().unwrap().is_empty(),
                "{q}: {body}"
            );
        }
    });

    // format_query and parse_query.
    let (_, body) = get_json(
        &s,
        None,
        "/api/v1/format_query?query=sum(rate(foo%5B5m%5D))by(job)",
    );
    assert_eq!(body["data"], "sum by (job) (rate(foo[5m]))");
    let (st, body) = get_json(&s, None, "/api/v1/parse_query?query=up");
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["type"], "vectorSelector", "{body}");
}

#[test]
fn errors_use_the_prometheus_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let end = (now_ms() / 60_000) * 60_000;
    load(&s, None, end);
    let t = (end / 1000).to_string();

    // A syntax error: bad_data, 400, with the position.
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[("query", "sum(rate(x[5m])"), ("time", &t)],
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("1:16: parse error"),
        "{body}"
    );
    // The syntax-only endpoints report the position too.
    for path in ["format_query", "parse_query", "query_exemplars"] {
        let (st, body) = post_form(
            &s,
            None,
            &format!("/api/v1/{path}"),
            &[("query", "foo +"), ("start", "0"), ("end", &t)],
        );
        assert_eq!(st, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("1:6: parse error"),
            "{path}: {body}"
        );
    }
    // A number too large for a duration (the parser library panics on it):
    // bad_data on every endpoint that parses, and the server keeps serving.
    for path in ["query", "format_query", "parse_query"] {
        let (st, body) = post_form(
            &s,
            None,
            &format!("/api/v1/{path}"),
            &[("query", "x[5m:1e30] offset 1e30"), ("time", &t)],
        );
        assert_eq!(
            (st, &body["errorType"]),
            (400, &json!("bad_data")),
            "{path}"
        );
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("parse error: duration out of range: 1e30"),
            "{path}: {body}"
        );
    }
    // An oversized query is refused before parsing, naming the limit.
    let huge = format!("{}1", "1+".repeat(70_000));
    let (st, body) = post_form(&s, None, "/api/v1/query", &[("query", &huge)]);
    assert_eq!((st, &body["errorType"]), (400, &json!("bad_data")));
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("query.max_expression_bytes=131072"),
        "{body}"
    );
    // Many-to-many matching: execution, 422.
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[
            ("query", "http_requests_total + on(job) http_requests_total"),
            ("time", &t),
        ],
    );
    assert_eq!(
        (st, &body["errorType"]),
        (422, &json!("execution")),
        "{body}"
    );
    // Bad parameters.
    for (form, want) in [
        (
            vec![
                ("query", "up"),
                ("start", "10"),
                ("end", "5"),
                ("step", "1"),
            ],
            "end timestamp must not be before start time",
        ),
        (
            vec![("query", "up"), ("start", "0"), ("end", "5"), ("step", "0")],
            "zero or negative query resolution step",
        ),
        (
            vec![
                ("query", "up"),
                ("start", "0"),
                ("end", "100000"),
                ("step", "1"),
            ],
            "exceeded maximum resolution of 11,000 points",
        ),
        (
            vec![("query", "up"), ("start", "0"), ("end", "100")],
            "\"step\"",
        ),
        (
            vec![("start", "0"), ("end", "100"), ("step", "1")],
            "\"query\"",
        ),
    ] {
        let (st, body) = post_form(&s, None, "/api/v1/query_range", &form);
        assert_eq!(
            (st, &body["errorType"]),
            (400, &json!("bad_data")),
            "{form:?}: {body}"
        );
        assert!(
            body["error"].as_str().unwrap().contains(want),
            "{form:?}: {body}"
        );
    }
    // Values: NaN and infinities are strings.
    let (_, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[("query", "vector(0) / 0"), ("time", &t)],
    );
    assert_eq!(body["data"]["result"][0]["value"][1], "NaN");
    let (_, body) = post_form(&s, None, "/api/v1/query", &[("query", "1/0"), ("time", &t)]);
    assert_eq!(body["data"]["result"][1], "+Inf");
    let (_, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[("query", "-1/0"), ("time", &t)],
    );
    assert_eq!(body["data"]["result"][1], "-Inf");
    // An info annotation (rate over a name that does not look like a counter).
    let (_, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[
            ("query", "rate(http_request_duration_seconds_bucket[5m])"),
            ("time", &t),
        ],
    );
    assert!(
        body.get("infos").is_none(),
        "_bucket is a counter name: {body}"
    );
}

#[test]
fn query_limits_name_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &["--query.max-series=2", "--query.max-samples=50"],
    );
    let end = (now_ms() / 60_000) * 60_000;
    load(&s, None, end);
    let t = (end / 1000).to_string();
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[("query", "count(http_requests_total)"), ("time", &t)],
    );
    assert_eq!(
        (st, &body["errorType"]),
        (422, &json!("execution")),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("query.max_series=2"),
        "{body}"
    );
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[
            (
                "query",
                "sum(rate({__name__=~\"http_requests_total|http_request_duration_seconds_bucket\", instance=\"a:1\", le=~\"|0.1\"}[10m]))",
            ),
            ("time", &t),
        ],
    );
    assert_eq!(
        (st, &body["errorType"]),
        (422, &json!("execution")),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("query.max_samples=50"),
        "{body}"
    );
    // A small query still works, and so does ingestion.
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[
            ("query", "http_requests_total{instance=\"a:1\"}"),
            ("time", &t),
        ],
    );
    assert_eq!(st, 200, "{body}");
    load(&s, Some("other"), end);

    let dir2 = tempfile::tempdir().unwrap();
    let s2 = Server::start(dir2.path(), &["--query.max-memory-bytes=1000"]);
    load(&s2, None, end);
    let (st, body) = post_form(
        &s2,
        None,
        "/api/v1/query",
        &[
            ("query", "sum(rate(http_requests_total[10m]))"),
            ("time", &t),
        ],
    );
    assert_eq!(
        (st, &body["errorType"]),
        (422, &json!("execution")),
        "{body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("query.max_memory_bytes=1000"),
        "{body}"
    );
}

/// Query texts whose syntax trees are `n` levels deep, in the shapes that
/// nest: parentheses, calls, aggregations, left- and right-associative
/// operator chains, unary minus.
fn nested_queries(n: usize) -> Vec<String> {
    vec![
        format!("{}1{}", "(".repeat(n), ")".repeat(n)),
        format!("{}vector(1){}", "abs(".repeat(n), ")".repeat(n)),
        format!("{}up{}", "sum(".repeat(n), ")".repeat(n)),
        vec!["1"; n].join(" + "),
        vec!["up"; n].join(" ^ "),
        format!("{}up", "-".repeat(n)),
        // Two brackets per level.
        format!(
            "{}vector(1){}",
            "max_over_time(".repeat(n / 2),
            "[5m:1m])".repeat(n / 2)
        ),
    ]
}

#[test]
fn deeply_nested_queries_are_refused_without_taking_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    // Deep but within the limit: answered.
    for q in nested_queries(500) {
        let (st, body) = post_form(&s, None, "/api/v1/query", &[("query", &q), ("time", "4")]);
        assert_eq!(st, 200, "{}: {body}", &q[..40.min(q.len())]);
        let range = [
            ("query", q.as_str()),
            ("start", "0"),
            ("end", "600"),
            ("step", "60"),
        ];
        let (st, body) = post_form(&s, None, "/api/v1/query_range", &range);
        assert_eq!(st, 200, "{}: {body}", &q[..40.min(q.len())]);
    }
    // Ten times deeper (each would overflow a thread's stack): bad_data
    // naming the position where the limit is crossed, on every endpoint
    // that parses; the server stays up.
    for q in nested_queries(5000) {
        let short = &q[..40.min(q.len())];
        for (path, form) in [
            ("/api/v1/query", vec![("query", q.as_str()), ("time", "4")]),
            (
                "/api/v1/query_range",
                vec![
                    ("query", q.as_str()),
                    ("start", "0"),
                    ("end", "60"),
                    ("step", "15"),
                ],
            ),
            ("/api/v1/parse_query", vec![("query", q.as_str())]),
            ("/api/v1/format_query", vec![("query", q.as_str())]),
        ] {
            let (st, body) = post_form(&s, None, path, &form);
            assert_eq!(
                (st, &body["errorType"]),
                (400, &json!("bad_data")),
                "{path} {short}: {body}"
            );
            // `[invalid parameter "query": ]1:COL: parse error: …`
            let err = body["error"].as_str().unwrap();
            let at = err
                .find(": parse error: expression nested too deeply")
                .unwrap_or_else(|| panic!("{path} {short}: {err}"));
            let pos = err[..at].rsplit(' ').next().unwrap();
            let col = pos.strip_prefix("1:").and_then(|c| c.parse::<usize>().ok());
            assert!(col.is_some_and(|c| c > 1), "{path} {short}: {err}");
        }
    }
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[("query", "1+1"), ("time", "4")],
    );
    assert_eq!(
        (st, &body["data"]["result"][1]),
        (200, &json!("2")),
        "{body}"
    );
}

/// A query that needs no data and keeps both cores busy for tens of seconds
/// (101 windows of 864,000 subquery points, each sorted for the median): one
/// series, so only checks inside its per-step loop can stop it early.
const SLOW_QUERY: &str = "quantile_over_time(0.5, (sin(vector(time())) * 1000 % 17)[10d:1s])";

fn slow_query_form(timeout: &str) -> Vec<(&'static str, String)> {
    vec![
        ("query", SLOW_QUERY.to_string()),
        ("start", "1000000000".to_string()),
        ("end", "1000006000".to_string()),
        ("step", "60".to_string()),
        ("timeout", timeout.to_string()),
    ]
}

/// CPU the server uses over `window`, after `grace` for a query to notice.
fn cpu_after(s: &Server, grace: std::time::Duration, window: std::time::Duration) -> f64 {
    std::thread::sleep(grace);
    let before = cpu_seconds(s.pid());
    std::thread::sleep(window);
    cpu_seconds(s.pid()) - before
}

#[test]
fn a_query_stops_when_its_time_runs_out_or_its_client_goes_away() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &["--query.max-concurrent=1", "--query.timeout=120s"],
    );
    let form = slow_query_form("1s");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let (st, body) = post_form(&s, None, "/api/v1/query_range", &form);
    let took = started.elapsed();
    assert_eq!((st, &body["errorType"]), (503, &json!("timeout")), "{body}");
    assert!(
        took < Duration::from_secs(5),
        "a 1 s timeout answered after {took:?}"
    );
    let idle = cpu_after(&s, Duration::from_secs(1), Duration::from_secs(2));
    assert!(
        idle < 0.5,
        "{idle} CPU seconds used after the timeout: the query ran on"
    );

    // A client that gives up (as Grafana does when a panel refreshes)
    // drops its connection; the evaluation must stop with it, and keep its
    // query slot until it has, or abandoned queries would pile up beyond
    // the concurrency limit.
    let form = slow_query_form("100s");
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = form_body(&form);
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let sent = impatient
        .post(s.url("/api/v1/query_range"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send();
    assert!(
        sent.is_err(),
        "the slow query answered within 500 ms: {sent:?}"
    );
    let busy = cpu_after(&s, Duration::from_secs(1), Duration::from_secs(2));
    assert!(
        busy < 0.5,
        "{busy} CPU seconds used after the client went away: the query ran on"
    );
    let (st, body) = post_form(
        &s,
        None,
        "/api/v1/query",
        &[("query", "1+1"), ("time", "4"), ("timeout", "5s")],
    );
    assert_eq!(
        (st, &body["data"]["result"][1]),
        (200, &json!("2")),
        "{body}"
    );
}

#[test]
fn tenants_are_isolated_and_federated_queries_label_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let end = (now_ms() / 60_000) * 60_000;
    load(&s, Some("team-a"), end);
    let t = (end / 1000).to_string();
    let q = [
        ("query", "count(http_requests_total)"),
        ("time", t.as_str()),
    ];
    let (_, body) = post_form(&s, Some("team-b"), "/api/v1/query", &q);
    assert_eq!(body["data"]["result"], json!([]), "{body}");
    let (_, body) = post_form(&s, Some("team-a"), "/api/v1/query", &q);
    assert_eq!(body["data"]["result"][0]["value"][1], "3");
    load(&s, Some("team-b"), end);
    let (_, body) = post_form(
        &s,
        Some("team-a|team-b"),
        "/api/v1/query",
        &[
            (
                "query",
                "count by (__tenant_id__) (http_requests_total{__tenant_id__=~\"team-.*\"})",
            ),
            ("time", &t),
        ],
    );
    let mut tenants: Vec<&str> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["__tenant_id__"].as_str().unwrap())
        .collect();
    tenants.sort();
    assert_eq!(tenants, vec!["team-a", "team-b"], "{body}");
}
