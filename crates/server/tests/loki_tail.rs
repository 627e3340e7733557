//! `/loki/api/v1/tail` over a real websocket, opened as Grafana's Loki
//! data source opens it for live streaming: the newest `limit` entries
//! since `start` first, then what is pushed, through the query's pipeline,
//! for the tail's tenant only; bad parameters get a 400 before the
//! upgrade; the per-tenant tail limit closes the socket with 1011.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::harness::{Server, client, now_ms, urlencode};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

fn push(s: &Server, tenant: &str, app: &str, entries: &[(i64, &str)]) {
    let values: Vec<Value> = entries
        .iter()
        .map(|(t, l)| json!([t.to_string(), l]))
        .collect();
    let r = client()
        .post(s.url("/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(json!({"streams": [{"stream": {"app": app}, "values": values}]}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

fn tail_url(s: &Server, params: &[(&str, String)]) -> String {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    format!(
        "ws://127.0.0.1:{}/loki/api/v1/tail?{}",
        s.http_port,
        q.join("&")
    )
}

fn connect(
    s: &Server,
    tenant: &str,
    params: &[(&str, String)],
    categorize: bool,
) -> Result<Socket, tungstenite::Error> {
    let mut req = tail_url(s, params).into_client_request().unwrap();
    req.headers_mut()
        .insert("X-Scope-OrgID", tenant.parse().unwrap());
    if categorize {
        req.headers_mut().insert(
            "X-Loki-Response-Encoding-Flags",
            "categorize-labels".parse().unwrap(),
        );
    }
    let (ws, resp) = tungstenite::connect(req)?;
    assert_eq!(resp.status().as_u16(), 101);
    if let MaybeTlsStream::Plain(t) = ws.get_ref() {
        t.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    }
    Ok(ws)
}

/// The next text message (pings are skipped); panics on close or timeout.
fn next_json(ws: &mut Socket) -> Value {
    loop {
        match ws.read().expect("a tail message within 15 s") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(c) => panic!("tail closed: {c:?}"),
            _ => {}
        }
    }
}

/// (stream labels, line) of every entry of a tail message.
fn entries(msg: &Value) -> Vec<(Value, String)> {
    msg["streams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| (s["stream"].clone(), v[1].as_str().unwrap().to_string()))
        })
        .collect()
}

fn status_of(e: tungstenite::Error) -> (u16, String) {
    match e {
        tungstenite::Error::Http(r) => (
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into(),
        ),
        e => panic!("expected an HTTP refusal, got {e}"),
    }
}

#[test]
fn tail_sends_history_then_live_entries_through_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_config(
        dir.path(),
        "query:\n  max_concurrent_tail_requests: 2\n",
        &[],
    );
    let t0 = (now_ms() - 60_000) * 1_000_000;
    push(
        &s,
        "team-a",
        "api",
        &[
            (t0, "level=info msg=\"needle 1\""),
            (t0 + 1, "level=info msg=\"hay\""),
            (t0 + 2, "level=error msg=\"needle 2\""),
        ],
    );
    let start = (t0 - 1_000_000_000).to_string();
    let query = r#"{app="api"} |= "needle""#.to_string();

    // History: the newest `limit` matching entries since `start`.
    let mut ws = connect(
        &s,
        "team-a",
        &[("query", query.clone()), ("start", start.clone())],
        false,
    )
    .unwrap();
    let first = next_json(&mut ws);
    let got: Vec<String> = entries(&first).into_iter().map(|e| e.1).collect();
    assert_eq!(
        got,
        [
            "level=info msg=\"needle 1\"",
            "level=error msg=\"needle 2\""
        ],
        "{first}"
    );
    assert!(first.get("dropped_entries").is_none(), "{first}");
    let mut one = connect(
        &s,
        "team-a",
        &[
            ("query", query.clone()),
            ("start", start.clone()),
            ("limit", "1".into()),
        ],
        false,
    )
    .unwrap();
    let m = next_json(&mut one);
    let got: Vec<String> = entries(&m).into_iter().map(|e| e.1).collect();
    assert_eq!(got, ["level=error msg=\"needle 2\""], "{m}");

    // A third tail of the tenant is over its limit of two: closed with
    // 1011 and the reason, as Loki closes it.
    let mut third = connect(&s, "team-a", &[("query", query.clone())], false).unwrap();
    match third.read() {
        Ok(Message::Close(Some(c))) => {
            assert_eq!(u16::from(c.code), 1011);
            assert!(c.reason.contains("max concurrent tail requests"), "{c:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    drop(one);

    // Live: only this tenant's matching lines, as they are pushed.
    let now = now_ms() * 1_000_000;
    push(&s, "other", "api", &[(now, "needle of another tenant")]);
    push(&s, "team-a", "db", &[(now, "needle in another stream")]);
    push(
        &s,
        "team-a",
        "api",
        &[(now, "hay again"), (now + 1, "level=warn msg=\"needle 3\"")],
    );
    let live = next_json(&mut ws);
    assert_eq!(
        entries(&live),
        [(
            json!({"app": "api", "service_name": "api", "detected_level": "warn"}),
            "level=warn msg=\"needle 3\"".to_string()
        )],
        "{live}"
    );

    // The pipeline runs on live entries; categorize-labels moves parsed
    // labels to the third element, as in query_range.
    let mut attempts = 0;
    let mut cat = loop {
        // The closed tail's slot is freed once the server sees it go.
        attempts += 1;
        assert!(
            attempts <= 100,
            "a closed tail's slot was not freed in 10 s"
        );
        match connect(
            &s,
            "team-a",
            &[
                ("query", r#"{app="api"} | logfmt | level="error""#.into()),
                ("start", now.to_string()),
            ],
            true,
        ) {
            Ok(mut w) => match w.read() {
                Ok(Message::Close(_)) => std::thread::sleep(Duration::from_millis(100)),
                Ok(Message::Text(t)) => panic!("no history expected: {t}"),
                Ok(_) | Err(_) => break w,
            },
            Err(e) => panic!("{e}"),
        }
    };
    let now = now_ms() * 1_000_000;
    push(
        &s,
        "team-a",
        "api",
        &[(now, "level=info msg=a"), (now + 1, "level=error msg=b")],
    );
    let m = next_json(&mut cat);
    assert_eq!(m["encodingFlags"], json!(["categorize-labels"]), "{m}");
    let values = m["streams"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 1, "{m}");
    assert_eq!(values[0][1], "level=error msg=b");
    assert_eq!(values[0][2]["parsed"]["level"], "error", "{m}");
    assert_eq!(
        m["streams"][0]["stream"],
        json!({"app": "api", "service_name": "api"}),
        "{m}"
    );
    assert_eq!(
        values[0][2]["structuredMetadata"]["detected_level"], "error",
        "{m}"
    );

    // Bad parameters: 400 with the reason, before any upgrade.
    for (params, want) in [
        (
            vec![("query", query.clone()), ("delay_for", "6".into())],
            "delay_for can't be greater than 5",
        ),
        (
            vec![("query", format!("rate({query}[1m])"))],
            "tail requires a log query",
        ),
        (vec![("query", "{app=".into())], "parse error"),
        (
            vec![("query", query.clone()), ("limit", "0".into())],
            "limit must be a positive value",
        ),
        (vec![], "query parameter is required"),
    ] {
        let (code, body) = status_of(connect(&s, "team-a", &params, false).unwrap_err());
        assert_eq!(code, 400, "{params:?}: {body}");
        assert!(body.contains(want), "{params:?}: {body}");
    }
}
