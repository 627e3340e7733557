//! Malformed and invalid writes get a 4xx that says what and where; valid
//! data in other requests and other tenants is unaffected.

use miru_ingest::remote_write::proto_v1::WriteRequest;

use crate::harness::*;

#[test]
fn malformed_requests_get_4xx_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[]);
    let t0 = now_ms() - 30_000;
    let good = WriteRequest {
        timeseries: vec![series(&[("__name__", "good"), ("job", "a")], &[(t0, 1.0)])],
        metadata: vec![],
    };
    assert_eq!(push(&s, Some("other"), &good).0, 204);

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"\xff\xff\xff\xff not snappy".to_vec(), 400, "snappy"),
        (
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff\xff\x0f")
                .unwrap(),
            400,
            "malformed protobuf",
        ),
    ];
    for (body, want, text) in cases {
        let (st, msg) = push_raw(&s, Some("t"), body, "application/x-protobuf");
        assert_eq!(st, want, "{msg}");
        assert!(msg.contains(text), "{msg}");
    }

    let future = now_ms() + 3_600_000;
    let invalid: Vec<(WriteRequest, &str)> = vec![
        (
            one(&[("1bad", "x"), ("__name__", "m")], t0),
            "invalid label name \"1bad\"",
        ),
        (
            one(&[("__name__", "m"), ("b", "1"), ("a", "2")], t0),
            "not sorted",
        ),
        (
            one(&[("__name__", "m"), ("a", "1"), ("a", "2")], t0),
            "duplicate label name",
        ),
        (one(&[("job", "x")], t0), "missing metric name"),
        (one(&[("__name__", "")], t0), "missing metric name"),
        (one(&[("__name__", "m")], future), "too far in the future"),
        (one(&[("__name__", "bad-name")], t0), "invalid metric name"),
    ];
    for (req, text) in invalid {
        let (st, msg) = push(&s, Some("t"), &req);
        assert_eq!(st, 400, "{text}: {msg}");
        assert!(msg.contains(text), "expected {text:?} in {msg:?}");
        assert!(msg.contains("series 0"), "position missing in {msg:?}");
    }
    // Partial batch: the valid series is stored, the response says 400.
    let mixed = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "kept")], &[(t0, 2.0)]),
            series(&[("0x", "y"), ("__name__", "m")], &[(t0, 1.0)]),
        ],
        metadata: vec![],
    };
    let (st, msg) = push(&s, Some("t"), &mixed);
    assert_eq!(st, 400);
    assert!(msg.contains("series 1"), "{msg}");
    assert_eq!(raw(&s, Some("t"), "kept")[0].1, vec![(t0, 2.0)]);
    // Out of order and conflicting duplicates are 400 (never 5xx).
    assert_eq!(
        push(&s, Some("t"), &one(&[("__name__", "kept")], t0 - 1000)).0,
        400
    );
    let mut dup = one(&[("__name__", "kept")], t0);
    dup.timeseries[0].samples[0].value = 9.0;
    let (st, msg) = push(&s, Some("t"), &dup);
    assert_eq!(st, 400);
    assert!(msg.contains("duplicate sample"), "{msg}");
    // An identical resend is accepted (idempotent retries).
    let mut same = one(&[("__name__", "kept")], t0);
    same.timeseries[0].samples[0].value = 2.0;
    assert_eq!(push(&s, Some("t"), &same).0, 204);
    // Wrong encodings and tenants.
    let resp = client()
        .post(s.url("/api/v1/push"))
        .header("Content-Encoding", "gzip")
        .body(vec![1, 2, 3])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let (st, msg) = push(&s, Some("bad/tenant"), &good);
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("X-Scope-OrgID"), "{msg}");
    let (st, _) = push(&s, Some("a|b"), &good);
    assert_eq!(st, 400);

    // Nothing else was touched and the server is healthy.
    assert_eq!(raw(&s, Some("other"), "good")[0].1, vec![(t0, 1.0)]);
    assert_eq!(
        client()
            .get(s.url("/ready"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(
        metric_sum(
            &s,
            "miru_discarded_samples_total",
            "reason=\"label_invalid\""
        ) >= 1.0
    );
}

fn one(pairs: &[(&str, &str)], ts: i64) -> WriteRequest {
    WriteRequest {
        timeseries: vec![series(pairs, &[(ts, 1.0)])],
        metadata: vec![],
    }
}
