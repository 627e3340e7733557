//! `miru loadgen`: sends a realistic, deterministic workload to any
//! compatible endpoint (miru, Mimir, Prometheus with the remote-write
//! receiver, VictoriaMetrics, Loki, Tempo, an OpenTelemetry Collector) and
//! prints what was accepted and how fast. Bounded in time and count;
//! loopback by default.
//!
//! Each signal (`metrics`, `logs`, `traces`) builds its requests; the
//! [`Runner`] here paces, sends, counts and summarises them the same way.

pub mod logs;
pub mod metrics;
pub mod traces;
pub mod workload;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::duration::parse_duration;

pub use logs::{LogsArgs, run_logs};
pub use metrics::{MetricsArgs, run_metrics};
pub use traces::{TracesArgs, run_traces};

/// `[#####     ]  45.0%`: the bar the command-line tools draw on stderr.
pub(crate) fn progress_bar(frac: f64) -> String {
    const WIDTH: usize = 30;
    let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
    format!(
        "[{}{}] {:5.1}%",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        frac * 100.0
    )
}

/// Flags every signal shares: pacing, bounds, tenancy, time range, output.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Span of data time to send (metrics: span/interval scrapes; logs and
    /// traces: entries and traces spread evenly over it).
    #[arg(long, default_value = "10m", value_parser = dur)]
    pub span: Duration,
    /// Data time of the start: `now` minus this (backfills a past window).
    #[arg(long, default_value = "0s", value_parser = dur)]
    pub start_ago: Option<Duration>,
    /// Data time of the start as a Unix time in seconds or RFC 3339
    /// (overrides `--start-ago`): runs fed at different wall-clock times
    /// then hold identical data, so their query answers can be compared.
    #[arg(long, value_parser = start_time)]
    pub start: Option<i64>,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Units (samples, log lines, spans) per second to send at most (0: as
    /// fast as accepted).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Stop after this long, whatever is left.
    #[arg(long, default_value = "30m", value_parser = dur)]
    pub max_duration: Duration,
    /// X-Scope-OrgID to send.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Seed of the workload (same seed, same data).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a JSON summary instead of text (for the benchmark driver).
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// How many units `per_second` of data time makes over `--span` (at
    /// least one); `flag` names the rate in the error when it is not positive.
    pub fn units_over_span(&self, per_second: f64, flag: &str) -> anyhow::Result<u64> {
        anyhow::ensure!(per_second > 0.0, "{flag} must be positive");
        Ok((per_second * self.span.as_secs_f64()).round().max(1.0) as u64)
    }

    /// The data time of the first unit, in Unix milliseconds.
    pub fn start_ms(&self) -> i64 {
        self.start
            .unwrap_or_else(|| now_ms() - self.start_ago.unwrap_or_default().as_millis() as i64)
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn start_time(s: &str) -> Result<i64, String> {
    crate::http::params::parse_time_ms(s)
}

pub(crate) fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// What became of one request.
pub(crate) enum Outcome {
    Accepted,
    /// Why it was not: `"<status> <first line of the body>"` or a transport error.
    Rejected(String),
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    sent_bytes: AtomicU64,
    requests: AtomicU64,
    errors: std::sync::Mutex<BTreeMap<String, u64>>,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

/// Paces requests to `--rate`, keeps `--concurrency` in flight, stops at
/// `--max-duration`, counts outcomes and draws the progress bar.
pub(crate) struct Runner {
    unit: &'static str,
    total: u64,
    rate: f64,
    max_duration: Duration,
    json: bool,
    counters: Arc<Counters>,
    in_flight: Arc<Semaphore>,
    started: Instant,
    last_progress: Instant,
    pending: Vec<JoinHandle<()>>,
}

impl Runner {
    /// `unit` names what is counted (`samples`, `lines`, `spans`); `total`
    /// is how many the whole workload holds (for the progress bar).
    pub(crate) fn new(unit: &'static str, total: u64, common: &CommonArgs) -> Self {
        Runner {
            unit,
            total,
            rate: common.rate,
            max_duration: common.max_duration,
            json: common.json,
            counters: Arc::default(),
            in_flight: Arc::new(Semaphore::new(common.concurrency.max(1))),
            started: Instant::now(),
            last_progress: Instant::now(),
            pending: Vec::new(),
        }
    }

    /// Updates the expected total (when it is known only as units are made).
    pub(crate) fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// True once `--max-duration` has passed: send nothing more.
    pub(crate) fn expired(&self) -> bool {
        self.started.elapsed() >= self.max_duration
    }

    /// Sends one request of `units` units and `bytes` bytes on the wire,
    /// after waiting for the pace and a free slot.
    pub(crate) async fn send<F>(&mut self, units: u64, bytes: u64, request: F) -> anyhow::Result<()>
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        if self.rate > 0.0 {
            let due = self.counters.sent.load(Ordering::Relaxed) as f64 / self.rate;
            let elapsed = self.started.elapsed().as_secs_f64();
            if due > elapsed {
                tokio::time::sleep(Duration::from_secs_f64(due - elapsed)).await;
            }
        }
        let permit = Arc::clone(&self.in_flight).acquire_owned().await?;
        self.counters.sent.fetch_add(units, Ordering::Relaxed);
        self.counters.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
        let c = Arc::clone(&self.counters);
        self.pending.push(tokio::spawn(async move {
            let _permit = permit;
            let t = Instant::now();
            let outcome = request.await;
            c.latencies_us
                .lock()
                .expect("BUG: poisoned")
                .push(t.elapsed().as_micros() as u64);
            c.requests.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Outcome::Accepted => {
                    c.accepted.fetch_add(units, Ordering::Relaxed);
                }
                Outcome::Rejected(why) => {
                    *c.errors
                        .lock()
                        .expect("BUG: poisoned")
                        .entry(why)
                        .or_default() += 1;
                }
            }
        }));
        if self.pending.len() >= 1024 {
            self.pending.retain(|h| !h.is_finished());
        }
        if !self.json && self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.last_progress = Instant::now();
            self.progress();
        }
        Ok(())
    }

    /// Waits until every request sent so far has been answered.
    pub(crate) async fn drain(&mut self) {
        for h in self.pending.drain(..) {
            let _ = h.await;
        }
    }

    fn progress(&self) {
        let sent = self.counters.sent.load(Ordering::Relaxed);
        let frac = sent as f64 / self.total.max(1) as f64;
        let rate = self.counters.accepted.load(Ordering::Relaxed) as f64
            / self.started.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r{}  {sent}/{} {}  {rate:.0}/s accepted  ",
            progress_bar(frac),
            self.total,
            self.unit,
        );
        let _ = std::io::stderr().flush();
    }

    /// Waits for the last answers and prints the summary (text, or one
    /// JSON line with `extra` merged in). Fails when nothing was accepted.
    pub(crate) async fn finish(mut self, extra: serde_json::Value) -> anyhow::Result<()> {
        self.drain().await;
        let c = &self.counters;
        let unit = self.unit;
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut lat = c.latencies_us.lock().expect("BUG: poisoned").clone();
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        let sent = c.sent.load(Ordering::Relaxed);
        let accepted = c.accepted.load(Ordering::Relaxed);
        let bytes = c.sent_bytes.load(Ordering::Relaxed);
        let requests = c.requests.load(Ordering::Relaxed);
        let errors = c.errors.lock().expect("BUG: poisoned").clone();
        if self.json {
            let mut out = serde_json::json!({
                "unit": unit,
                format!("sent_{unit}"): sent,
                format!("accepted_{unit}"): accepted,
                format!("{unit}_per_s"): accepted as f64 / elapsed,
                "sent_bytes": bytes,
                "requests": requests,
                "elapsed_s": elapsed,
                "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)},
                "errors": errors,
            });
            if let (Some(out), serde_json::Value::Object(extra)) = (out.as_object_mut(), extra) {
                out.extend(extra);
            }
            println!("{out}");
        } else {
            eprintln!();
            if let serde_json::Value::Object(extra) = &extra {
                let facts: Vec<String> = extra.iter().map(|(k, v)| format!("{k} {v}")).collect();
                println!("{}  requests {requests}", facts.join("  "));
            }
            println!(
                "{unit} sent {sent}  accepted {accepted}  in {elapsed:.1}s  ({:.0} {unit}/s, {:.1} MB sent)",
                accepted as f64 / elapsed,
                bytes as f64 / 1e6,
            );
            println!(
                "latency ms  p50 {:.1}  p90 {:.1}  p99 {:.1}",
                pct(0.5),
                pct(0.9),
                pct(0.99)
            );
            for (k, n) in &errors {
                println!("rejected {n} requests: {k}");
            }
        }
        if accepted == 0 && sent > 0 {
            anyhow::bail!("nothing was accepted");
        }
        Ok(())
    }
}

/// POSTs `body` with `headers` (and the tenant header) and classifies the answer.
pub(crate) async fn post(
    client: reqwest::Client,
    url: Arc<str>,
    headers: Arc<Vec<(&'static str, String)>>,
    tenant: Option<Arc<str>>,
    body: Vec<u8>,
) -> Outcome {
    let mut r = client.post(&*url).body(body);
    for (name, value) in headers.iter() {
        r = r.header(*name, value);
    }
    if let Some(t) = &tenant {
        r = r.header("X-Scope-OrgID", &**t);
    }
    match r.send().await {
        Ok(resp) if resp.status().is_success() => Outcome::Accepted,
        Ok(resp) => {
            let st = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let first: String = text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect();
            Outcome::Rejected(format!("{st} {}", first.trim()))
        }
        // With its causes ("connection closed before message completed",
        // "connection reset", …): reqwest's own text names only the URL.
        Err(e) => Outcome::Rejected(format!("transport: {:#}", anyhow::Error::from(e))),
    }
}

/// An OTLP attribute with a string or integer value.
pub(crate) fn otlp_kv(key: &str, value: impl Into<AttrValue>) -> KeyValue {
    let value = match value.into() {
        AttrValue::S(s) => any_value::Value::StringValue(s),
        AttrValue::I(i) => any_value::Value::IntValue(i),
    };
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue { value: Some(value) }),
    }
}

pub(crate) enum AttrValue {
    S(String),
    I(i64),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::S(s.to_string())
    }
}

impl From<&String> for AttrValue {
    fn from(s: &String) -> Self {
        AttrValue::S(s.clone())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::S(s)
    }
}

impl From<i64> for AttrValue {
    fn from(i: i64) -> Self {
        AttrValue::I(i)
    }
}

/// `--url`, or the signal's loopback default.
pub(crate) fn endpoint(url: &Option<String>, default: &str) -> Arc<str> {
    url.as_deref().unwrap_or(default).into()
}

pub(crate) fn http_client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()?)
}
