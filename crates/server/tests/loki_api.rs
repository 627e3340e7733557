//! The Loki API through the real binary: pushes in protobuf and JSON
//! answered 204, LogQL log and metric queries, the label endpoints and
//! Grafana's health check; bad pushes get 400 without losing the valid
//! rest; acknowledged lines survive `kill -9`; a flushed part is plain
//! Parquet that DuckDB (the real Python package) reads back as is.

use miru_ingest::loki::push::{Entry, LabelPair, PushRequest, Stream, Timestamp};
use prost::Message;
use serde_json::Value;

use crate::external::duckdb_json;
use crate::harness::*;

fn now_ns() -> i64 {
    now_ms() * 1_000_000
}

fn push_proto(s: &Server, tenant: &str, streams: Vec<Stream>) -> (u16, String) {
    let body = snap::raw::Encoder::new()
        .compress_vec(&PushRequest { streams }.encode_to_vec())
        .unwrap();
    let r = client()
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .header("X-Scope-OrgID", tenant)
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

fn push_json(s: &Server, tenant: &str, body: Value) -> (u16, String) {
    let r = client()
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(body.to_string())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap_or_default())
}

/// An entry to push: timestamp, line, structured metadata.
type TestEntry<'a> = (i64, String, Vec<(&'a str, &'a str)>);

fn stream(labels: &str, entries: Vec<TestEntry<'_>>) -> Stream {
    Stream {
        labels: labels.into(),
        entries: entries
            .into_iter()
            .map(|(ts, line, md)| Entry {
                timestamp: Some(Timestamp::from_unix_nanos(ts)),
                line,
                structured_metadata: md
                    .into_iter()
                    .map(|(n, v)| LabelPair {
                        name: n.into(),
                        value: v.into(),
                    })
                    .collect(),
            })
            .collect(),
        hash: 0,
    }
}

fn get(s: &Server, tenant: &str, path: &str, params: &[(&str, String)]) -> (u16, Value) {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    get_json(s, Some(tenant), &format!("{path}?{}", q.join("&")))
}

/// Lines of a streams result, in response order.
fn lines(v: &Value) -> Vec<String> {
    assert_eq!(v["data"]["resultType"], "streams", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["values"].as_array().unwrap().iter())
        .map(|e| e[1].as_str().unwrap().to_string())
        .collect()
}

/// 200 `{app="api"}` lines one second apart ending 10 s ago; every 10th an
/// error with a trace id; and a JSON push of another stream.
fn seed(s: &Server, t0: i64) {
    let entries = (0..200)
        .map(|i| {
            let line = if i % 10 == 0 {
                format!("level=error msg=\"upstream failed\" status=502 trace_id={i:016x}")
            } else {
                format!("level=info msg=\"GET /users/{i}\" status=200 duration={i}ms")
            };
            (t0 + i * 1_000_000_000, line, vec![("user_id", "u42")])
        })
        .collect();
    let (code, body) = push_proto(
        s,
        "team-a",
        vec![stream(r#"{app="api", env="prod"}"#, entries)],
    );
    assert_eq!(code, 204, "{body}");
    let (code, body) = push_json(
        s,
        "team-a",
        serde_json::json!({"streams": [{
            "stream": {"app": "db", "env": "prod"},
            "values": [[(t0 + 5_000_000_000i64).to_string(), "{\"level\":\"warn\",\"msg\":\"slow query\",\"ms\":1200}"]]
        }]}),
    );
    assert_eq!(code, 204, "{body}");
}

fn check_queries(s: &Server, t0: i64) {
    let start = (t0 - 1_000_000_000).to_string();
    let end = (t0 + 300_000_000_000).to_string();
    // Needle search, newest first (backward by default), with a limit.
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{app="api"} |= "trace_id=""#.into()),
            ("start", start.clone()),
            ("end", end.clone()),
            ("limit", "5".into()),
        ],
    );
    assert_eq!(code, 200, "{v}");
    let got = lines(&v);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        got[0].contains(&format!("trace_id={:016x}", 190)),
        "{got:?}"
    );
    assert_eq!(
        v["data"]["stats"]["summary"]["totalLinesProcessed"], 200,
        "no line of the first slice matched: the rest is read at once"
    );
    // A query whose lines are dense near the end of its range reads the
    // newest slices only and stops with its `limit` lines.
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{app="api"}"#.into()),
            ("start", start.clone()),
            ("end", (t0 + 200_000_000_000).to_string()),
            ("limit", "5".into()),
        ],
    );
    assert_eq!(code, 200, "{v}");
    let got = lines(&v);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got[0].contains("/users/199"), "{got:?}");
    assert!(got[4].contains("/users/195"), "{got:?}");
    let processed = v["data"]["stats"]["summary"]["totalLinesProcessed"]
        .as_u64()
        .unwrap();
    assert!((5..20).contains(&processed), "{}", v["data"]["stats"]);
    // Forward, parser and label filter.
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{env="prod"} | logfmt | status >= 500"#.into()),
            ("start", start.clone()),
            ("end", end.clone()),
            ("direction", "forward".into()),
        ],
    );
    assert_eq!(code, 200, "{v}");
    let got = lines(&v);
    assert_eq!(got.len(), 20, "{got:?}");
    assert!(got[0].contains("trace_id=0000000000000000"));
    // Metric queries: instant vector and range matrix.
    let at = (t0 + 200_000_000_000).to_string();
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"sum by (app) (count_over_time({env="prod"} |= "error" [5m]))"#.into(),
            ),
            ("time", at),
        ],
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["metric"]["app"], "api");
    assert_eq!(v["data"]["result"][0]["value"][1], "20");
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/query_range",
        &[
            ("query", r#"sum(count_over_time({app="api"}[1m]))"#.into()),
            ("start", (t0 / 1_000_000_000 + 60).to_string()),
            ("end", (t0 / 1_000_000_000 + 180).to_string()),
            ("step", "60s".into()),
        ],
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let vals: Vec<&str> = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap())
        .collect();
    assert_eq!(vals, ["60", "60", "60"], "{v}");
    // Label endpoints.
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/labels",
        &[("start", start.clone()), ("end", end.clone())],
    );
    assert_eq!(code, 200);
    // `service_name` is Loki 3's discovered service (from `app`).
    assert_eq!(v["data"], serde_json::json!(["app", "env", "service_name"]));
    let (_, v) = get(
        s,
        "team-a",
        "/loki/api/v1/label/app/values",
        &[("start", start.clone()), ("end", end.clone())],
    );
    assert_eq!(v["data"], serde_json::json!(["api", "db"]));
    let (_, v) = get(
        s,
        "team-a",
        "/loki/api/v1/series",
        &[
            ("match[]", r#"{app="db"}"#.into()),
            ("start", start),
            ("end", end),
        ],
    );
    assert_eq!(
        v["data"],
        serde_json::json!([{"app": "db", "env": "prod", "service_name": "db"}])
    );
    // Tenants are apart.
    let (_, v) = get(s, "other", "/loki/api/v1/labels", &[]);
    assert_eq!(v["data"], serde_json::json!([]));
}

#[test]
fn loki_push_and_queries_survive_kill_9_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    let t0 = now_ns() - 300_000_000_000;
    seed(&s, t0);
    check_queries(&s, t0);
    // Grafana's health check.
    let (code, v) = get(
        &s,
        "team-a",
        "/loki/api/v1/query",
        &[("query", "vector(1)+vector(1)".into())],
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");
    // Acknowledged means durable: the WAL brings it all back.
    s.kill9();
    s.start_again();
    check_queries(&s, t0);
    // Cut into a Parquet part; queries read it the same.
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert!(r.status().is_success());
    let files = files_under(&dir.path().join("data/objects/team-a/logs"));
    let parts: Vec<_> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .cloned()
        .collect();
    assert_eq!(parts.len(), 1, "{files:?}");
    assert_eq!(files.len(), 2, "a part and its block filters: {files:?}");
    check_queries(&s, t0);
    check_block_filters(&s, t0);
    s.kill9();
    s.start_again();
    check_queries(&s, t0);
    read_with_duckdb(&parts[0], t0);
}

/// Needle and structured-metadata searches over the flushed part: the
/// block filters rule the part's rows out when the value is absent, and
/// `data.stats.miru` says so.
fn check_block_filters(s: &Server, t0: i64) {
    let start = (t0 - 1_000_000_000).to_string();
    let end = (t0 + 300_000_000_000).to_string();
    let search = |q: &str| {
        let (code, v) = get(
            s,
            "team-a",
            "/loki/api/v1/query_range",
            &[
                ("query", q.into()),
                ("start", start.clone()),
                ("end", end.clone()),
            ],
        );
        assert_eq!(code, 200, "{v}");
        v
    };
    let v = search(r#"{env="prod"} |= "00000000000000b4""#);
    assert_eq!(lines(&v).len(), 1, "{v}");
    let m = &v["data"]["stats"]["miru"];
    // Read newest first: the first slice (the newest 1/64 of the range)
    // holds no line, so the rest of the range is read in one selection.
    assert_eq!(m["partRows"], 201, "{v}");
    assert_eq!(m["partRowsSkippedByBlockFilters"], 0, "{v}");
    for q in [
        r#"{env="prod"} |= "4bf92f3577b34da6""#,
        r#"{env="prod"} | user_id="u43""#,
    ] {
        let v = search(q);
        assert!(lines(&v).is_empty(), "{q}: {v}");
        let m = &v["data"]["stats"]["miru"];
        assert_eq!(m["partRowsSkippedByBlockFilters"], 201, "{q}: {v}");
        // Footer and filters are cached by now: nothing of the part is
        // fetched. (Bytes saved on large parts: storage's tests and
        // docs/benchmarks.md.)
        assert_eq!(m["partBytesFetched"], 0, "{q}: {v}");
        assert_eq!(
            v["data"]["stats"]["summary"]["totalLinesProcessed"], 0,
            "{q}: {v}"
        );
    }
    let v = search(r#"{env="prod"} | user_id="u42" |= "status=502""#);
    assert_eq!(lines(&v).len(), 20, "{v}");
}

fn read_with_duckdb(part: &std::path::Path, t0: i64) {
    let script = r#"
import sys, duckdb, json
rows = duckdb.sql(f"""
  select stream, labels['app'] as app, epoch_ns(timestamp) as ts, line,
         structured_metadata['user_id'] as user_id
  from read_parquet('{sys.argv[1]}') order by stream, ts""").fetchall()
print(json.dumps([[r[0], r[1], r[2], r[3], r[4]] for r in rows]))
"#;
    let Some(rows) = duckdb_json(script, part.to_str().unwrap()) else {
        return;
    };
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 201);
    let api: Vec<&Value> = rows.iter().filter(|r| r[1] == "api").collect();
    assert_eq!(api.len(), 200);
    assert_eq!(api[0][0], r#"{app="api", env="prod", service_name="api"}"#);
    assert_eq!(api[0][2].as_i64().unwrap(), t0);
    assert!(
        api[0][3]
            .as_str()
            .unwrap()
            .contains("trace_id=0000000000000000")
    );
    assert_eq!(api[0][4], "u42");
    assert_eq!(
        api[1][3].as_str().unwrap(),
        "level=info msg=\"GET /users/1\" status=200 duration=1ms"
    );
    let db: Vec<&Value> = rows.iter().filter(|r| r[1] == "db").collect();
    assert_eq!(db[0][4], Value::Null);
}

#[test]
fn bad_pushes_and_queries_get_400_and_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let now = now_ns();
    // Malformed bodies.
    let (code, body) = push_json(
        &s,
        "t",
        serde_json::json!({"streams": [{"stream": {}, "values": [["1", "x"]]}]}),
    );
    assert_eq!(code, 400, "{body}");
    let r = client()
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/x-protobuf")
        .body(b"not snappy".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // One line over max_line_size (256 KiB) and one too old: 400 naming
    // the problem, the valid entry stored.
    let (code, body) = push_proto(
        &s,
        "t",
        vec![stream(
            r#"{app="a"}"#,
            vec![
                (now, "fine".into(), vec![]),
                (now + 1, "x".repeat(300 << 10), vec![]),
                (now - 30 * 86_400_000_000_000, "ancient".into(), vec![]),
            ],
        )],
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Max entry size '262144' bytes exceeded"),
        "{body}"
    );
    let (code, v) = get(
        &s,
        "t",
        "/loki/api/v1/query_range",
        &[("query", r#"{app="a"}"#.into())],
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(lines(&v), ["fine"]);
    // The self-metrics count what came in and why entries were refused.
    let tenant = "tenant=\"t\"";
    assert_eq!(metric_sum(&s, "miru_received_log_lines_total", tenant), 3.0);
    assert_eq!(metric_sum(&s, "miru_accepted_log_lines_total", tenant), 1.0);
    for reason in ["line_too_long", "greater_than_max_sample_age"] {
        assert_eq!(
            metric_sum(
                &s,
                "miru_discarded_log_lines_total",
                &format!("reason=\"{reason}\"")
            ),
            1.0,
            "{reason}"
        );
    }
    assert!(metric_sum(&s, "miru_received_log_bytes_total", tenant) > (300 << 10) as f64);
    assert_eq!(metric_sum(&s, "miru_log_head_streams", tenant), 1.0);
    // LogQL errors are 400 with the position.
    let (code, v) = get(
        &s,
        "t",
        "/loki/api/v1/query_range",
        &[("query", r#"{app="a"} |= "#.into())],
    );
    assert_eq!(code, 400);
    assert!(v.as_str().unwrap().contains("parse error at line 1"), "{v}");
    let (code, _) = get(
        &s,
        "t",
        "/loki/api/v1/query",
        &[("query", r#"{app="a"}"#.into())],
    );
    assert_eq!(code, 400);
}

#[test]
fn a_large_log_head_is_cut_before_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(dir.path(), "storage:\n  max_head_log_bytes: 20000\n", &[]);
    let now = now_ns();
    let entries = (0..100)
        .map(|i| (now + i, format!("line {i} {}", "x".repeat(200)), vec![]))
        .collect();
    let (code, body) = push_proto(&s, "t", vec![stream(r#"{app="a"}"#, entries)]);
    assert_eq!(code, 204, "{body}");
    // The default flush interval is 10 minutes; the byte bound cuts at the
    // next maintenance tick (1 s).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while files_under(&dir.path().join("data/objects/t/logs")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no logs part was cut");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, v) = get(
        &s,
        "t",
        "/loki/api/v1/query_range",
        &[("query", r#"{app="a"}"#.into()), ("limit", "1000".into())],
    );
    assert_eq!(lines(&v).len(), 100);
}

/// Bytes of the lines `seed` pushes to `{app="api"}`.
fn api_line_bytes() -> u64 {
    (0..200)
        .map(|i| {
            if i % 10 == 0 {
                format!("level=error msg=\"upstream failed\" status=502 trace_id={i:016x}").len()
            } else {
                format!("level=info msg=\"GET /users/{i}\" status=200 duration={i}ms").len()
            }
        })
        .sum::<usize>() as u64
}

fn check_index_endpoints(s: &Server, t0: i64, chunks: u64) {
    let range = [
        ("start", (t0 - 1_000_000_000).to_string()),
        ("end", (t0 + 300_000_000_000).to_string()),
    ];
    fn with(
        range: &[(&'static str, String); 2],
        q: &str,
        extra: &[(&'static str, &str)],
    ) -> Vec<(&'static str, String)> {
        let mut p: Vec<(&'static str, String)> = range.to_vec();
        p.push(("query", q.to_string()));
        p.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        p
    }
    let db_bytes = "{\"level\":\"warn\",\"msg\":\"slow query\",\"ms\":1200}".len() as u64;
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/stats",
        &with(&range, r#"{env="prod"}"#, &[]),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["streams"], 2, "{v}");
    assert_eq!(v["chunks"], chunks, "{v}");
    assert_eq!(v["entries"], 201, "{v}");
    assert_eq!(v["bytes"], api_line_bytes() + db_bytes, "{v}");
    // A log query's pipeline is ignored, as Loki does.
    let (_, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/stats",
        &with(&range, r#"{app="db"} |= "x""#, &[]),
    );
    assert_eq!(
        (v["streams"].as_u64(), v["entries"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    // Volume by the selector's labels, then by a target label.
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/volume",
        &with(&range, r#"{app=~".+"}"#, &[]),
    );
    assert_eq!(code, 200, "{v}");
    let r = &v["data"]["result"];
    assert_eq!(v["data"]["resultType"], "vector", "{v}");
    assert_eq!(r[0]["metric"], serde_json::json!({"app": "api"}), "{v}");
    assert_eq!(r[0]["value"][1], api_line_bytes().to_string(), "{v}");
    assert_eq!(r[1]["metric"], serde_json::json!({"app": "db"}), "{v}");
    let (_, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/volume",
        &with(
            &range,
            r#"{app=~".+"}"#,
            &[("targetLabels", "env"), ("limit", "5")],
        ),
    );
    let r = &v["data"]["result"];
    assert_eq!(r.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(r[0]["metric"], serde_json::json!({"env": "prod"}), "{v}");
    assert_eq!(
        r[0]["value"][1],
        (api_line_bytes() + db_bytes).to_string(),
        "{v}"
    );
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/volume_range",
        &with(&range, r#"{env="prod"}"#, &[("step", "60s")]),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    let total: u64 = v["data"]["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, api_line_bytes() + db_bytes, "{v}");
    // By label name: every stream carrying the label counts, value "".
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/volume",
        &with(&range, r#"{app=~".+"}"#, &[("aggregateBy", "labels")]),
    );
    assert_eq!(code, 200, "{v}");
    let all = (api_line_bytes() + db_bytes).to_string();
    let r = &v["data"]["result"];
    assert_eq!(r.as_array().unwrap().len(), 3, "{v}");
    assert_eq!(r[0]["metric"], serde_json::json!({"app": ""}), "{v}");
    assert_eq!(r[0]["value"][1], all, "{v}");
    assert_eq!(r[1]["metric"], serde_json::json!({"env": ""}), "{v}");
    assert_eq!(
        r[2]["metric"],
        serde_json::json!({"service_name": ""}),
        "{v}"
    );
    let (_, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/volume",
        &with(
            &range,
            r#"{app=~".+"}"#,
            &[("aggregateBy", "labels"), ("targetLabels", "env,nope")],
        ),
    );
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([{"metric": {"env": ""}, "value": [v["data"]["result"][0]["value"][0], all]}]),
        "{v}"
    );
    // A target label a stream lacks leaves it out of series volumes.
    let (_, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/volume",
        &with(&range, r#"{app=~".+"}"#, &[("targetLabels", "env,nope")]),
    );
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/index/volume",
        &with(&range, r#"{app=~".+"}"#, &[("aggregateBy", "streams")]),
    );
    assert_eq!(code, 400, "{v}");
    let (code, v) = get(s, "team-a", "/loki/api/v1/detected_labels", &range);
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["detectedLabels"],
        serde_json::json!([
            {"label": "app", "cardinality": 2},
            {"label": "env", "cardinality": 1},
            {"label": "service_name", "cardinality": 2}
        ]),
        "{v}"
    );
    // Fields of the newest lines: logfmt, JSON and structured metadata.
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/detected_fields",
        &with(&range, r#"{env="prod"}"#, &[]),
    );
    assert_eq!(code, 200, "{v}");
    let field = |name: &str| {
        v["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["label"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no field {name}: {v}"))
    };
    assert_eq!(
        field("status"),
        serde_json::json!({"label": "status", "type": "int", "cardinality": 2, "parsers": ["logfmt"]})
    );
    assert_eq!(
        field("level")["parsers"],
        serde_json::json!(["json", "logfmt"]),
        "{v}"
    );
    assert_eq!(field("level")["cardinality"], 3, "{v}");
    assert_eq!(field("ms")["type"], "int", "{v}");
    assert_eq!(field("duration")["type"], "duration", "{v}");
    assert_eq!(field("user_id")["parsers"], serde_json::Value::Null, "{v}");
    let (code, v) = get(
        s,
        "team-a",
        "/loki/api/v1/detected_field/level/values",
        &with(&range, r#"{env="prod"}"#, &[]),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["values"],
        serde_json::json!(["error", "info", "warn"]),
        "{v}"
    );
    let (code, _) = get(
        s,
        "team-a",
        "/loki/api/v1/detected_fields",
        &with(&range, r#"{env="prod""#, &[]),
    );
    assert_eq!(code, 400);
    // Another tenant sees nothing.
    let (_, v) = get(
        s,
        "team-b",
        "/loki/api/v1/index/stats",
        &with(&range, r#"{env="prod"}"#, &[]),
    );
    assert_eq!(v["streams"], 0, "{v}");
}

#[test]
fn index_endpoints_answer_from_the_head_and_the_parts_stream_tables() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let t0 = now_ns() - 300_000_000_000;
    seed(&s, t0);
    check_index_endpoints(&s, t0, 2);
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert!(r.status().is_success());
    check_index_endpoints(&s, t0, 2);
}
