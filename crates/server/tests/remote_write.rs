//! Remote write 1.0 and 2.0 end to end, the read API, and tenant isolation.

use miru_ingest::remote_write::proto_v1::{Exemplar, Label, MetricMetadata, WriteRequest};
use miru_ingest::remote_write::proto_v2;
use prost::Message;

use crate::harness::*;

#[test]
fn remote_write_v1_round_trip_and_read_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let t0 = now_ms() - 60_000;
    let mut ts = series(
        &[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("job", "api"),
        ],
        &[(t0, 1.0), (t0 + 15_000, 3.5)],
    );
    ts.exemplars.push(Exemplar {
        labels: vec![Label {
            name: "trace_id".into(),
            value: "4bf92f3577b34da6".into(),
        }],
        value: 3.5,
        timestamp: t0 + 15_000,
    });
    let req = WriteRequest {
        timeseries: vec![
            ts,
            series(&[("__name__", "up"), ("job", "api")], &[(t0, 1.0)]),
        ],
        metadata: vec![MetricMetadata {
            r#type: 1,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: "".into(),
        }],
    };
    let (status, body) = push(&s, Some("team-a"), &req);
    assert_eq!(status, 204, "{body}");

    let got = raw(&s, Some("team-a"), "http_requests_total{job=\"api\"}");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0["code"], "200");
    assert_eq!(got[0].1, vec![(t0, 1.0), (t0 + 15_000, 3.5)]);

    let (st, series_body) = get_json(
        &s,
        Some("team-a"),
        "/api/v1/series?match[]=%7Bjob%3D%22api%22%7D",
    );
    assert_eq!(st, 200);
    assert_eq!(series_body["data"].as_array().unwrap().len(), 2);
    let (_, names) = get_json(
        &s,
        Some("team-a"),
        "/prometheus/api/v1/label/__name__/values",
    );
    assert_eq!(
        names["data"],
        serde_json::json!(["http_requests_total", "up"])
    );
    let (_, labels) = get_json(&s, Some("team-a"), "/api/v1/labels");
    assert_eq!(
        labels["data"],
        serde_json::json!(["__name__", "code", "job"])
    );
    let (_, md) = get_json(&s, Some("team-a"), "/api/v1/metadata");
    assert_eq!(md["data"]["http_requests_total"][0]["type"], "counter");
    assert_eq!(
        metric_sum(&s, "miru_accepted_exemplars_total", "team-a"),
        1.0
    );

    // Tenants never see each other's data; no header means `anonymous`.
    assert!(raw(&s, Some("team-b"), "{job=\"api\"}").is_empty());
    assert!(raw(&s, None, "{job=\"api\"}").is_empty());
    let (status, _) = push(&s, None, &req);
    assert_eq!(status, 204);
    assert_eq!(raw(&s, None, "{job=\"api\"}").len(), 2);
    // Federated read over two tenants.
    assert_eq!(raw(&s, Some("team-a|team-b"), "up").len(), 1);

    // Same again after the head is cut into parts and after a restart.
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(raw(&s, Some("team-a"), "http_requests_total")[0].1.len(), 2);
    let mut s = s;
    s.restart();
    assert_eq!(
        raw(&s, Some("team-a"), "http_requests_total")[0].1,
        vec![(t0, 1.0), (t0 + 15_000, 3.5)]
    );
    assert!(raw(&s, Some("team-b"), "up").is_empty());
}

fn v2_body(req: &proto_v2::Request) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

#[test]
fn remote_write_v2_negotiation_and_written_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let t0 = now_ms() - 10_000;
    let req = proto_v2::Request {
        symbols: vec![
            "".into(),
            "__name__".into(),
            "rw2_metric".into(),
            "job".into(),
            "x".into(),
            "trace_id".into(),
            "abc".into(),
            "Help text".into(),
        ],
        timeseries: vec![proto_v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![proto_v2::Sample {
                value: 7.0,
                timestamp: t0,
                start_timestamp: 0,
            }],
            exemplars: vec![proto_v2::Exemplar {
                labels_refs: vec![5, 6],
                value: 7.0,
                timestamp: t0,
            }],
            metadata: Some(proto_v2::Metadata {
                r#type: 2,
                help_ref: 7,
                unit_ref: 0,
            }),
            ..Default::default()
        }],
    };
    let resp = client()
        .post(s.url("/api/v1/write"))
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(v2_body(&req))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let h = resp.headers();
    assert_eq!(h["x-prometheus-remote-write-samples-written"], "1");
    assert_eq!(h["x-prometheus-remote-write-exemplars-written"], "1");
    assert_eq!(h["x-prometheus-remote-write-histograms-written"], "0");
    assert_eq!(raw(&s, None, "rw2_metric")[0].1, vec![(t0, 7.0)]);
    let (_, md) = get_json(&s, None, "/api/v1/metadata?metric=rw2_metric");
    assert_eq!(md["data"]["rw2_metric"][0]["help"], "Help text");

    // Unknown message type or media type: 415, so the sender can fall back.
    for ct in [
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        "application/json",
    ] {
        let resp = client()
            .post(s.url("/api/v1/write"))
            .header("Content-Type", ct)
            .header("Content-Encoding", "snappy")
            .body(v2_body(&req))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 415, "{ct}");
    }
    // An invalid 2.0 request still reports what was written.
    let mut bad = req.clone();
    bad.timeseries.push(proto_v2::TimeSeries {
        labels_refs: vec![3, 4],
        samples: vec![proto_v2::Sample {
            value: 1.0,
            timestamp: t0,
            start_timestamp: 0,
        }],
        ..Default::default()
    });
    bad.timeseries[0].samples[0].timestamp = t0 + 1000;
    let resp = client()
        .post(s.url("/api/v1/write"))
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("Content-Encoding", "snappy")
        .body(v2_body(&bad))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.headers()["x-prometheus-remote-write-samples-written"],
        "1"
    );
    assert!(resp.text().unwrap().contains("missing metric name"));
}

#[test]
fn native_histograms_over_remote_write_1_and_2() {
    use miru_ingest::remote_write::proto_v1::{BucketSpan, Histogram};
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &[]);
    let t0 = now_ms() - 60_000;
    // An integer histogram, schema 0, buckets 1 and 2 with counts 2 and 3
    // (deltas 2, +1), zero bucket 1: as Prometheus' client sends it.
    let int_hist = |ts: i64| Histogram {
        count_int: 6,
        sum: 9.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count_int: 1,
        positive_spans: vec![BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_deltas: vec![2, 1],
        timestamp: ts,
        ..Default::default()
    };
    let mut ts = series(&[("__name__", "rpc_seconds"), ("job", "api")], &[]);
    ts.histograms = vec![int_hist(t0), int_hist(t0 + 15_000)];
    // Spans cover 3 buckets but 2 counts are given: rejected with a reason,
    // the rest of the request is kept.
    let mut bad = series(&[("__name__", "broken_seconds"), ("job", "api")], &[]);
    let mut h = int_hist(t0);
    h.positive_spans[0].length = 3;
    bad.histograms = vec![h];
    let (status, body) = push(
        &s,
        None,
        &WriteRequest {
            timeseries: vec![ts, bad],
            ..Default::default()
        },
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("series 1") && body.contains("spans cover 3 buckets but 2 bucket counts"),
        "{body}"
    );
    let check = |s: &Server| {
        let hs = raw_histograms(s, None, "rpc_seconds");
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].1.len(), 2);
        assert_eq!(
            hs[0].1[0],
            (
                t0,
                serde_json::json!({
                    "count": "6",
                    "sum": "9.5",
                    "buckets": [
                        [3, "-0.001", "0.001", "1"],
                        [0, "1", "2", "2"],
                        [0, "2", "4", "3"]
                    ]
                })
            )
        );
        assert!(raw_histograms(s, None, "broken_seconds").is_empty());
    };
    check(&s);
    assert_eq!(
        metric_sum(
            &s,
            "miru_discarded_samples_total",
            "invalid_native_histogram"
        ),
        1.0
    );

    // Remote write 2.0: a float histogram with custom buckets (NHCB), and
    // the histograms-written header.
    let req = proto_v2::Request {
        symbols: vec!["".into(), "__name__".into(), "nhcb_seconds".into()],
        timeseries: vec![proto_v2::TimeSeries {
            labels_refs: vec![1, 2],
            histograms: vec![Histogram {
                count_float: 4.0,
                sum: 3.0,
                schema: -53,
                positive_spans: vec![BucketSpan {
                    offset: 0,
                    length: 3,
                }],
                positive_counts: vec![1.0, 2.0, 1.0],
                custom_values: vec![0.5, 1.0],
                timestamp: t0,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let resp = client()
        .post(s.url("/api/v1/write"))
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .header("Content-Encoding", "snappy")
        .body(v2_body(&req))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        resp.headers()["x-prometheus-remote-write-histograms-written"],
        "1"
    );
    assert_eq!(
        resp.headers()["x-prometheus-remote-write-samples-written"],
        "0"
    );
    let nhcb = serde_json::json!({
        "count": "4",
        "sum": "3",
        "buckets": [[0, "-Inf", "0.5", "1"], [0, "0.5", "1", "2"], [0, "1", "+Inf", "1"]]
    });
    assert_eq!(raw_histograms(&s, None, "nhcb_seconds")[0].1[0].1, nhcb);

    // Through a restart (WAL replay), then a flush into a part.
    s.restart();
    check(&s);
    let r = client().post(s.url("/ingester/flush")).send().unwrap();
    assert!(r.status().is_success());
    check(&s);
    assert_eq!(raw_histograms(&s, None, "nhcb_seconds")[0].1[0].1, nhcb);
}
