//! Starts and stops the real binary in a temporary directory and speaks to
//! it over loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use miru_ingest::remote_write::encode_v1_for_tests;
use miru_ingest::remote_write::proto_v1::{Label, Sample, TimeSeries, WriteRequest};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    pub http_port: u16,
    pub grpc_port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    starts: u32,
}

impl Server {
    /// Starts miru with its data in `dir` and extra flags.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_env(dir, extra, &[])
    }

    /// Like [`Server::start`], with `yaml` written to `dir/miru.yaml` and
    /// passed as `--config.file` before `extra`.
    pub fn start_with_config(dir: &Path, yaml: &str, extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("miru.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        let mut args = vec!["--config.file", cfg.to_str().unwrap()];
        args.extend_from_slice(extra);
        Server::start(dir, &args)
    }

    /// Like [`Server::start`], with extra environment variables (kept for
    /// restarts).
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Server {
            child: None,
            dir: dir.to_path_buf(),
            http_port: free_port(),
            grpc_port: free_port(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts: 0,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        self.starts += 1;
        let log =
            std::fs::File::create(self.dir.join(format!("miru-{}.log", self.starts))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_miru"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--grpc-listen")
            .arg(format!("127.0.0.1:{}", self.grpc_port))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting miru");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = client().get(self.url("/ready")).send()
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "miru exited during start-up with {status}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("miru not ready after 60s; log:\n{}", self.log());
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("miru-{}.log", self.starts)))
            .unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http_port, path)
    }

    /// `kill -9`, then wait for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns how long the process took to exit and its status.
    pub fn sigterm(&mut self) -> (Duration, std::process::ExitStatus) {
        let mut c = self.child.take().expect("not running");
        let start = Instant::now();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return (start.elapsed(), st);
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                panic!("miru did not exit within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Every file under `dir`, recursively (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: pairs
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends a remote write 1.0 request; returns status and body text.
pub fn push(server: &Server, tenant: Option<&str>, req: &WriteRequest) -> (u16, String) {
    push_raw(
        server,
        tenant,
        encode_v1_for_tests(req),
        "application/x-protobuf",
    )
}

pub fn push_raw(
    server: &Server,
    tenant: Option<&str>,
    body: Vec<u8>,
    content_type: &str,
) -> (u16, String) {
    let mut r = client()
        .post(server.url("/api/v1/push"))
        .header("Content-Type", content_type)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// GET a Prometheus API path as a tenant; returns status and JSON.
pub fn get_json(
    server: &Server,
    tenant: Option<&str>,
    path_and_query: &str,
) -> (u16, serde_json::Value) {
    let mut r = client().get(server.url(path_and_query));
    if let Some(t) = tenant {
        r = r.header("X-Scope-OrgID", t);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// All stored samples of a selector, as (labels text, [(ts, value)]).
pub fn raw(
    server: &Server,
    tenant: Option<&str>,
    selector: &str,
) -> Vec<(serde_json::Value, Vec<(i64, f64)>)> {
    let q = format!("/miru/api/v1/raw?match[]={}", urlencode(selector));
    let (status, body) = get_json(server, tenant, &q);
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("values").is_some())
        .map(|s| {
            let vals = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    let ts = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let val: f64 = v[1].as_str().unwrap().parse().unwrap_or(f64::NAN);
                    (ts, val)
                })
                .collect();
            (s["metric"].clone(), vals)
        })
        .collect()
}

/// Stored native histogram samples of a selector, as (labels, [(ts,
/// histogram JSON as the Prometheus API encodes it)]).
pub fn raw_histograms(
    server: &Server,
    tenant: Option<&str>,
    selector: &str,
) -> Vec<(serde_json::Value, Vec<(i64, serde_json::Value)>)> {
    let q = format!("/miru/api/v1/raw?match[]={}", urlencode(selector));
    let (status, body) = get_json(server, tenant, &q);
    assert_eq!(status, 200, "{body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("histograms").is_some())
        .map(|s| {
            let hs = s["histograms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        (v[0].as_f64().unwrap() * 1000.0).round() as i64,
                        v[1].clone(),
                    )
                })
                .collect();
            (s["metric"].clone(), hs)
        })
        .collect()
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Reads one self-metric value (sum over all label sets matching `filter`).
pub fn metric_sum(server: &Server, name: &str, filter: &str) -> f64 {
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Resident memory of a process, from `/proc` (0 when unreadable).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`
/// (0 when unreadable). Clock ticks are 1/100 s on Linux.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime: fields 14 and 15 of the line, from 1, so 11 and 12
    // from 0 after the name (field 2).
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The peak resident memory of a process, sampled every 50 ms on a thread
/// until [`PeakRss::stop`].
pub struct PeakRss {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pid: u32, floor: u64) -> PeakRss {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let peak = std::sync::Arc::new(AtomicU64::new(floor));
        let (d, p) = (std::sync::Arc::clone(&done), std::sync::Arc::clone(&peak));
        let thread = std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        PeakRss { done, peak, thread }
    }

    /// Stops sampling; the highest value seen.
    pub fn stop(self) -> u64 {
        use std::sync::atomic::Ordering;
        self.done.store(true, Ordering::Relaxed);
        self.thread.join().expect("RSS sampler panicked");
        self.peak.load(Ordering::Relaxed)
    }
}
