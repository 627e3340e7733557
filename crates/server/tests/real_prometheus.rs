//! The real Prometheus (the Debian package) scraping two targets and
//! remote-writing to miru: miru's own `/metrics`, and a static exposition
//! with a counter, a gauge and a histogram served from this test.
//!
//! Debian 12 ships Prometheus 2.42, which only speaks remote write 1.0, so
//! remote write 2.0 from a real Prometheus is not covered here.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::external::{ChildGuard, prometheus, require_or_skip};
use crate::harness::*;

/// What the static target serves: Prometheus text format 0.0.4.
const EXPOSITION: &str = "\
# HELP shop_orders_total Orders placed.
# TYPE shop_orders_total counter
shop_orders_total{method=\"card\",region=\"eu\"} 17
shop_orders_total{method=\"cash\",region=\"eu\"} 4
# HELP shop_queue_depth Items waiting.
# TYPE shop_queue_depth gauge
shop_queue_depth 3
# HELP shop_request_duration_seconds Request latency.
# TYPE shop_request_duration_seconds histogram
shop_request_duration_seconds_bucket{route=\"/cart\",le=\"0.1\"} 5
shop_request_duration_seconds_bucket{route=\"/cart\",le=\"0.5\"} 8
shop_request_duration_seconds_bucket{route=\"/cart\",le=\"+Inf\"} 9
shop_request_duration_seconds_sum{route=\"/cart\"} 2.75
shop_request_duration_seconds_count{route=\"/cart\"} 9
";

/// One HTTP/1.1 request as read by [`LoopbackHttp`].
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A response: status, extra headers, body.
type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.1 server on a loopback port: one request per
/// connection (`Connection: close`), handled on one thread; stops when
/// dropped.
struct LoopbackHttp {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LoopbackHttp {
    fn start(handler: impl Fn(Request) -> Response + Send + 'static) -> LoopbackHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => serve_one(conn, &handler),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        LoopbackHttp {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LoopbackHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut conn: TcpStream, handler: &impl Fn(Request) -> Response) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < len {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let (status, extra, out) = handler(Request {
        method,
        path,
        headers,
        body,
    });
    let mut resp = format!("HTTP/1.1 {status} X\r\n");
    for (n, v) in extra {
        resp.push_str(&format!("{n}: {v}\r\n"));
    }
    resp.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    ));
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.write_all(&out);
}

/// The static scrape target.
fn static_target() -> LoopbackHttp {
    LoopbackHttp::start(|_| {
        (
            200,
            vec![(
                "Content-Type".into(),
                "text/plain; version=0.0.4; charset=utf-8".into(),
            )],
            EXPOSITION.as_bytes().to_vec(),
        )
    })
}

/// Debian's Prometheus 2.42 ignores `remote_write.headers`
/// (prometheus/prometheus#13030, a packaging bug), so its requests would
/// land in `anonymous`. Like the nginx in front of Cortex in the old days,
/// this proxy forwards to miru and adds `X-Scope-OrgID` when the request
/// lacks it; `sent_by_prometheus` records whether Prometheus sent it.
struct TenantProxy {
    http: LoopbackHttp,
    sent_by_prometheus: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
}

fn tenant_proxy(upstream: String, tenant: &'static str) -> TenantProxy {
    let sent = Arc::new(AtomicBool::new(false));
    let forwarded = Arc::new(AtomicU64::new(0));
    let (sent2, forwarded2) = (Arc::clone(&sent), Arc::clone(&forwarded));
    let http = LoopbackHttp::start(move |req| {
        let is_org = |n: &str| n.eq_ignore_ascii_case("x-scope-orgid");
        let mut r = client().request(
            req.method.parse().unwrap(),
            format!("{upstream}{}", req.path),
        );
        let mut has_org = false;
        for (n, v) in &req.headers {
            let hop = ["host", "content-length", "connection", "accept-encoding"]
                .iter()
                .any(|h| n.eq_ignore_ascii_case(h));
            if !hop {
                has_org |= is_org(n);
                r = r.header(n, v);
            }
        }
        if has_org {
            sent2.store(true, Ordering::Relaxed);
        } else {
            r = r.header("X-Scope-OrgID", tenant);
        }
        forwarded2.fetch_add(1, Ordering::Relaxed);
        match r.body(req.body).send() {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.bytes().unwrap_or_default().to_vec();
                (status, vec![], body)
            }
            Err(e) => (502, vec![], e.to_string().into_bytes()),
        }
    });
    TenantProxy {
        http,
        sent_by_prometheus: sent,
        forwarded,
    }
}

fn start_prometheus(dir: &std::path::Path, config: &str) -> (ChildGuard, u16) {
    let bin = prometheus().expect("checked by the caller");
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(bin)
        .current_dir(dir)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    let mut guard = ChildGuard::new("prometheus", child, log_path);
    let ready = format!("http://127.0.0.1:{port}/-/ready");
    guard.wait_until(Duration::from_secs(30), || {
        client()
            .get(&ready)
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    (guard, port)
}

/// The one stored series of `selector` for `tenant`, or why not.
fn one_series(
    s: &Server,
    tenant: Option<&str>,
    selector: &str,
) -> Result<(Value, Vec<(i64, f64)>), String> {
    let mut got = raw(s, tenant, selector);
    match got.len() {
        1 => Ok(got.remove(0)),
        n => Err(format!("{selector}: {n} series")),
    }
}

fn last_value(s: &Server, selector: &str) -> Result<f64, String> {
    let (_, samples) = one_series(s, Some("prom"), selector)?;
    samples
        .last()
        .map(|&(_, v)| v)
        .ok_or_else(|| format!("{selector}: no samples"))
}

fn expect_value(s: &Server, selector: &str, want: f64) -> Result<(), String> {
    let v = last_value(s, selector)?;
    if v == want {
        Ok(())
    } else {
        Err(format!("{selector}: last value {v}, want {want}"))
    }
}

/// Everything the scrape and the remote write should have delivered.
fn check_delivered(s: &Server, target: &str, miru_target: &str) -> Result<(), String> {
    for job in ["miru", "static"] {
        let sel = format!("up{{job=\"{job}\"}}");
        let (labels, samples) = one_series(s, Some("prom"), &sel)?;
        let want = if job == "miru" { miru_target } else { target };
        if labels["instance"] != want {
            return Err(format!("{sel}: labels {labels}"));
        }
        // A scrape every second: several samples, the last one successful.
        if samples.len() < 2 || samples.last().unwrap().1 != 1.0 {
            return Err(format!("{sel}: samples {samples:?}"));
        }
    }

    let (labels, _) = one_series(
        s,
        Some("prom"),
        "shop_orders_total{job=\"static\",method=\"card\"}",
    )?;
    let want = serde_json::json!({
        "__name__": "shop_orders_total",
        "env": "test",
        "instance": target,
        "job": "static",
        "method": "card",
        "region": "eu",
    });
    if labels != want {
        return Err(format!("shop_orders_total labels {labels}, want {want}"));
    }
    expect_value(s, "shop_orders_total{method=\"card\"}", 17.0)?;
    expect_value(s, "shop_orders_total{method=\"cash\"}", 4.0)?;
    expect_value(s, "shop_queue_depth{job=\"static\",env=\"test\"}", 3.0)?;
    for (le, want) in [("0.1", 5.0), ("0.5", 8.0), ("+Inf", 9.0)] {
        let sel = format!("shop_request_duration_seconds_bucket{{route=\"/cart\",le=\"{le}\"}}");
        expect_value(s, &sel, want)?;
    }
    let buckets = raw(s, Some("prom"), "shop_request_duration_seconds_bucket");
    if buckets.len() != 3 {
        return Err(format!("{} bucket series", buckets.len()));
    }
    expect_value(
        s,
        "shop_request_duration_seconds_sum{route=\"/cart\"}",
        2.75,
    )?;
    expect_value(
        s,
        "shop_request_duration_seconds_count{route=\"/cart\"}",
        9.0,
    )?;

    // Prometheus' own series about the scrape, e.g. how many samples it got.
    expect_value(s, "scrape_samples_scraped{job=\"static\"}", 8.0)?;
    // miru's self-metrics arrived through the same path.
    let own = raw(s, Some("prom"), "{job=\"miru\"}");
    if !own.iter().any(|(l, _)| {
        l["__name__"]
            .as_str()
            .is_some_and(|n| n.starts_with("miru_"))
    }) {
        return Err(format!(
            "no miru_* series in job=\"miru\" ({} series)",
            own.len()
        ));
    }

    // Metadata is sent separately, every metadata_config.send_interval.
    let (st, md) = get_json(s, Some("prom"), "/api/v1/metadata");
    if st != 200 {
        return Err(format!("metadata: {st} {md}"));
    }
    let data = &md["data"];
    for (family, typ, help) in [
        ("shop_orders_total", "counter", "Orders placed."),
        ("shop_queue_depth", "gauge", "Items waiting."),
        (
            "shop_request_duration_seconds",
            "histogram",
            "Request latency.",
        ),
    ] {
        let m = &data[family][0];
        if m["type"] != typ || m["help"] != help {
            return Err(format!("metadata of {family}: {m}"));
        }
    }
    Ok(())
}

#[test]
fn prometheus_scrapes_and_remote_writes_to_miru() {
    if !require_or_skip("prometheus (Debian package)", prometheus().is_some()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("miru"), &[]);
    let target = static_target();
    let target_addr = format!("127.0.0.1:{}", target.port);
    let miru_addr = format!("127.0.0.1:{}", s.http_port);
    let proxy = tenant_proxy(format!("http://{miru_addr}"), "prom");
    let proxy_addr = format!("127.0.0.1:{}", proxy.http.port);
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: miru
    static_configs:
      - targets: ["{miru_addr}"]
  - job_name: static
    static_configs:
      - targets: ["{target_addr}"]
    relabel_configs:
      - target_label: env
        replacement: test
remote_write:
  - url: http://{proxy_addr}/api/v1/push
    headers:
      X-Scope-OrgID: prom
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send: true
      send_interval: 1s
"#
    );
    let (mut prom, _prom_port) = start_prometheus(dir.path(), &config);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check_delivered(&s, &target_addr, &miru_addr) {
            Ok(()) => break,
            Err(why) => {
                prom.assert_running();
                assert!(
                    Instant::now() < deadline,
                    "not delivered within 60s: {why}\nprometheus log:\n{}\nmiru log:\n{}",
                    prom.log(),
                    s.log()
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    // Samples carry Prometheus' scrape timestamps: recent, increasing.
    let (_, samples) = one_series(&s, Some("prom"), "up{job=\"static\"}").unwrap();
    let now = now_ms();
    assert!(
        samples
            .iter()
            .all(|&(t, _)| t > now - 120_000 && t <= now + 1_000),
        "{samples:?}"
    );
    assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "{samples:?}");
    // Nothing was discarded on the way in.
    assert_eq!(
        metric_sum(&s, "miru_discarded_samples_total", "prom"),
        0.0,
        "{}",
        s.log()
    );

    // Other tenants see none of it.
    assert!(raw(&s, None, "up").is_empty());
    assert!(raw(&s, None, "{job=\"static\"}").is_empty());
    assert!(raw(&s, Some("other"), "shop_orders_total").is_empty());
    let (_, md) = get_json(&s, None, "/api/v1/metadata");
    assert!(md["data"].get("shop_orders_total").is_none(), "{md}");

    assert!(proxy.forwarded.load(Ordering::Relaxed) > 0);
    if !proxy.sent_by_prometheus.load(Ordering::Relaxed) {
        eprintln!(
            "note: this Prometheus did not send remote_write.headers \
             (prometheus/prometheus#13030); the test proxy added X-Scope-OrgID"
        );
    }
    prom.assert_running();
    drop(prom);
    drop(proxy);
    drop(target);
}
