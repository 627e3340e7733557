//! `miru loadgen`: sends a realistic, deterministic workload to any
//! compatible endpoint (miru, Mimir, Prometheus with the remote-write
//! receiver, VictoriaMetrics) and prints what was accepted and how fast.
//! Bounded in time and count; loopback by default.

pub mod workload;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use miru_ingest::remote_write::proto_v1::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;
use tokio::sync::Semaphore;

use crate::duration::parse_duration;

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Remote write endpoint.
    #[arg(long, default_value = "http://127.0.0.1:9009/api/v1/push")]
    pub url: String,
    /// Active series.
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Scrape interval of the simulated targets.
    #[arg(long, default_value = "15s", value_parser = dur)]
    pub interval: Duration,
    /// Span of sample time to send (e.g. 2h sends 2h/interval samples per series).
    #[arg(long, default_value = "10m", value_parser = dur)]
    pub span: Duration,
    /// Sample time of the first scrape: `now` minus this (backfills a past window).
    #[arg(long, default_value = "0s", value_parser = dur)]
    pub start_ago: Option<Duration>,
    /// Sample time of the first scrape as a Unix time in seconds or RFC 3339
    /// (overrides `--start-ago`): runs fed at different wall-clock times
    /// then hold identical data, so their query answers can be compared.
    #[arg(long, value_parser = start_time)]
    pub start: Option<i64>,
    /// Samples per request.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Samples per second to send at most (0: as fast as accepted).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Stop after this long, whatever is left.
    #[arg(long, default_value = "30m", value_parser = dur)]
    pub max_duration: Duration,
    /// X-Scope-OrgID to send.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Seed of the workload (same seed, same series and values).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a JSON summary instead of text (for the benchmark driver).
    #[arg(long)]
    pub json: bool,
}

fn start_time(s: &str) -> Result<i64, String> {
    crate::http::params::parse_time_ms(s)
}

fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Default)]
struct Counters {
    sent_samples: AtomicU64,
    accepted_samples: AtomicU64,
    requests: AtomicU64,
    errors: std::sync::Mutex<BTreeMap<String, u64>>,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

/// Sends the workload; returns a non-zero exit when nothing was accepted.
pub async fn run_metrics(a: MetricsArgs) -> anyhow::Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let interval_ms = a.interval.as_millis().max(1) as i64;
    let start_ms = a
        .start
        .unwrap_or(now_ms - a.start_ago.unwrap_or_default().as_millis() as i64);
    let steps = (a.span.as_millis() as i64 / interval_ms).max(1);
    let mut series = workload::build(a.series, a.seed);
    let total = steps as u64 * series.len() as u64;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .build()?;
    let c = Arc::new(Counters::default());
    let sem = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let labels: Vec<Vec<Label>> = series
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.clone(),
                    value: v.clone(),
                })
                .collect()
        })
        .collect();
    'steps: for step in 0..steps {
        let ts = start_ms + step * interval_ms;
        let values: Vec<f64> = series
            .iter_mut()
            .map(|s| s.step(a.interval.as_secs_f64()))
            .collect();
        // One scrape is sent completely before the next, so every series
        // arrives in time order whatever the concurrency.
        let mut handles = Vec::new();
        for chunk_start in (0..series.len()).step_by(a.batch.max(1)) {
            if started.elapsed() >= a.max_duration {
                break 'steps;
            }
            let end = (chunk_start + a.batch).min(series.len());
            let req = WriteRequest {
                timeseries: (chunk_start..end)
                    .map(|i| TimeSeries {
                        labels: labels[i].clone(),
                        samples: vec![Sample {
                            value: values[i],
                            timestamp: ts,
                        }],
                        exemplars: vec![],
                        histograms: vec![],
                    })
                    .collect(),
                metadata: vec![],
            };
            let n = (end - chunk_start) as u64;
            let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())?;
            if a.rate > 0.0 {
                let due = c.sent_samples.load(Ordering::Relaxed) as f64 / a.rate;
                let el = started.elapsed().as_secs_f64();
                if due > el {
                    tokio::time::sleep(Duration::from_secs_f64(due - el)).await;
                }
            }
            let permit = Arc::clone(&sem).acquire_owned().await?;
            c.sent_samples.fetch_add(n, Ordering::Relaxed);
            let (client, c2, url, tenant) = (
                client.clone(),
                Arc::clone(&c),
                a.url.clone(),
                a.tenant.clone(),
            );
            handles.push(tokio::spawn(async move {
                let _permit = permit;
                let t = Instant::now();
                let mut r = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body);
                if let Some(t) = &tenant {
                    r = r.header("X-Scope-OrgID", t);
                }
                let res = r.send().await;
                c2.latencies_us
                    .lock()
                    .expect("BUG: poisoned")
                    .push(t.elapsed().as_micros() as u64);
                c2.requests.fetch_add(1, Ordering::Relaxed);
                let key = match res {
                    Ok(resp) if resp.status().is_success() => {
                        c2.accepted_samples.fetch_add(n, Ordering::Relaxed);
                        return;
                    }
                    Ok(resp) => {
                        let st = resp.status().as_u16();
                        let text = resp.text().await.unwrap_or_default();
                        format!("{st} {}", text.chars().take(120).collect::<String>().trim())
                    }
                    Err(e) => format!("transport: {e}"),
                };
                *c2.errors
                    .lock()
                    .expect("BUG: poisoned")
                    .entry(key)
                    .or_default() += 1;
            }));
            if !a.json && last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                progress(&c, total, started);
            }
        }
        for h in handles {
            let _ = h.await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = c.latencies_us.lock().expect("BUG: poisoned").clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let sent = c.sent_samples.load(Ordering::Relaxed);
    let accepted = c.accepted_samples.load(Ordering::Relaxed);
    let errors = c.errors.lock().expect("BUG: poisoned").clone();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "series": series.len(), "steps": steps, "sent_samples": sent, "accepted_samples": accepted,
                "requests": c.requests.load(Ordering::Relaxed), "elapsed_s": elapsed,
                "samples_per_s": accepted as f64 / elapsed,
                "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)},
                "errors": errors,
            })
        );
    } else {
        eprintln!();
        println!(
            "series {}  scrapes {}  requests {}",
            series.len(),
            steps,
            c.requests.load(Ordering::Relaxed)
        );
        println!(
            "samples sent {sent}  accepted {accepted}  in {elapsed:.1}s  ({:.0} samples/s)",
            accepted as f64 / elapsed
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
        anyhow::bail!("no sample was accepted");
    }
    Ok(())
}

fn progress(c: &Counters, total: u64, started: Instant) {
    let sent = c.sent_samples.load(Ordering::Relaxed);
    let frac = sent as f64 / total.max(1) as f64;
    let width = 30;
    let filled = (frac * width as f64) as usize;
    let rate = c.accepted_samples.load(Ordering::Relaxed) as f64
        / started.elapsed().as_secs_f64().max(0.001);
    eprint!(
        "\r[{}{}] {:5.1}%  {sent}/{total} samples  {rate:.0}/s accepted  ",
        "#".repeat(filled.min(width)),
        " ".repeat(width - filled.min(width)),
        frac * 100.0
    );
    let _ = std::io::stderr().flush();
}
