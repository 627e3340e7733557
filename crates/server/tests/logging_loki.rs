//! Loki push from `python-logging-loki` (the `logging_loki.LokiHandler` of
//! many Python services), read back through the Loki API.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::external::{python, require_or_skip};
use crate::harness::*;

/// Logs three records through `LokiHandler` (JSON push, one request per
/// record) without a tenant header. Exits 1 if any push failed (the handler
/// only reports failures through `handleError`). Argument: push URL.
const SCRIPT: &str = r#"
import logging
import sys

import logging_loki

failures = []


class Handler(logging_loki.LokiHandler):
    def handleError(self, record):
        failures.append(sys.exc_info()[1])
        super().handleError(record)


handler = Handler(url=sys.argv[1], tags={"application": "billing", "env": "prod"}, version="1")
log = logging.getLogger("billing.invoices")
log.setLevel(logging.DEBUG)
log.propagate = False
log.addHandler(handler)

log.info("invoice %s created", "inv-1")
log.warning("invoice inv-1 overdue", extra={"tags": {"customer-id": "c-42"}})
log.error("payment declined for inv-1")
handler.close()
print(f"failures={failures}", flush=True)
if failures:
    sys.exit(1)
"#;

fn run(dir: &std::path::Path, url: &str) -> (bool, String) {
    let py = python().expect("checked by the caller");
    let script = dir.join("logging_loki_push.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let log_path = dir.join("logging-loki.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(py)
        .arg(&script)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting python");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the logging_loki script did not finish in 60s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.success(),
        std::fs::read_to_string(&log_path).unwrap_or_default(),
    )
}

fn get(s: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let (status, v) = get_json(s, None, &format!("{path}?{}", q.join("&")));
    assert_eq!(status, 200, "{path}: {v}");
    v
}

#[test]
fn python_logging_loki_handler_pushes_queryable_streams() {
    if !require_or_skip("python-logging-loki", python().is_some()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("miru"), &[]);
    let (ok, out) = run(dir.path(), &s.url("/loki/api/v1/push"));
    assert!(ok, "push failed:\n{out}\nmiru log:\n{}", s.log());

    let start = ((now_ms() - 600_000) * 1_000_000).to_string();
    let end = ((now_ms() + 60_000) * 1_000_000).to_string();
    let v = get(
        &s,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{application="billing"}"#),
            ("start", &start),
            ("end", &end),
            ("direction", "forward"),
        ],
    );
    assert_eq!(v["data"]["resultType"], "streams", "{v}");
    // One stream per label set: the handler's tags, `severity` (the level
    // name in lower case), `logger` and the record's extra tags (names
    // cleaned to label names).
    let mut streams: Vec<(Value, Vec<String>)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            let lines = st["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e[1].as_str().unwrap().to_string())
                .collect();
            (st["stream"].clone(), lines)
        })
        .collect();
    streams.sort_by_key(|(labels, _)| labels["severity"].as_str().unwrap().to_string());
    // Loki 3 adds `service_name` (from `application`) and, as structured
    // metadata, `detected_level` (from `severity`).
    let labels = |severity: &str, level: &str| {
        json!({
            "application": "billing",
            "env": "prod",
            "logger": "billing.invoices",
            "severity": severity,
            "service_name": "billing",
            "detected_level": level,
        })
    };
    let mut warning = labels("warning", "warn");
    warning["customer_id"] = json!("c-42");
    assert_eq!(
        streams,
        vec![
            (
                labels("error", "error"),
                vec!["payment declined for inv-1".to_string()]
            ),
            (
                labels("info", "info"),
                vec!["invoice inv-1 created".to_string()]
            ),
            (warning, vec!["invoice inv-1 overdue".to_string()]),
        ]
    );

    let v = get(&s, "/loki/api/v1/labels", &[]);
    assert_eq!(
        v["data"],
        json!([
            "application",
            "customer_id",
            "env",
            "logger",
            "service_name",
            "severity"
        ])
    );
    let v = get(&s, "/loki/api/v1/label/severity/values", &[]);
    assert_eq!(v["data"], json!(["error", "info", "warning"]));
    let v = get(
        &s,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"sum by (severity) (count_over_time({logger="billing.invoices"} |= "inv-1" [10m]))"#,
            ),
            ("time", &end),
        ],
    );
    let mut counts: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["severity"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            ("error".to_string(), "1".to_string()),
            ("info".to_string(), "1".to_string()),
            ("warning".to_string(), "1".to_string()),
        ]
    );
}
