//! A deterministic metrics workload shaped like what Kubernetes clusters
//! scrape: node_exporter hosts, kube-state-metrics pods and HTTP services
//! with classic histograms. The same seed gives the same series and values.

/// A small, fast, seedable generator (xorshift64*), so runs repeat exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// How a series' value evolves from one scrape to the next.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Monotonic counter: adds about `rate` per second, rounded to `step`.
    Counter { rate: f64, step: f64 },
    /// Gauge wandering around `base` by up to `spread`, rounded to `step`.
    Gauge { base: f64, spread: f64, step: f64 },
    /// A value that never changes (sizes, info metrics, states).
    Constant(f64),
    /// Cumulative histogram bucket: a fraction of the request counter.
    Bucket { rate: f64, fraction: f64 },
}

/// The metric type of a series' family, as remote write 2.0 metadata and
/// OTLP need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    /// A series of a classic histogram (`_bucket`, `_sum` or `_count`).
    Histogram,
}

/// One generated series: its labels and its current value.
#[derive(Debug, Clone)]
pub struct GenSeries {
    pub labels: Vec<(String, String)>,
    pub metric_type: MetricType,
    /// The scrape target (host, pod or service instance) it belongs to:
    /// churn replaces whole targets, as a rollout or a reschedule does.
    pub target: u32,
    /// How many times its target was replaced (0: the original).
    pub generation: u32,
    kind: Kind,
    value: f64,
    rng: Rng,
}

impl GenSeries {
    /// Advances by one scrape of `interval_s` seconds and returns the value.
    pub fn step(&mut self, interval_s: f64) -> f64 {
        let round = |v: f64, step: f64| (v / step).round() * step;
        self.value = match self.kind {
            Kind::Counter { rate, step } => {
                let inc = rate * interval_s * (0.5 + self.rng.f64());
                round(self.value + inc, step)
            }
            Kind::Gauge { base, spread, step } => {
                round(base + spread * (self.rng.f64() * 2.0 - 1.0), step)
            }
            Kind::Constant(v) => v,
            Kind::Bucket { rate, fraction } => {
                let inc = rate * interval_s * fraction * (0.5 + self.rng.f64());
                (self.value + inc).round()
            }
        };
        // Tidy binary noise from the rounding (1.1 * 3 = 3.3000000000000003).
        let tidy: f64 = format!("{:.6}", self.value).parse().unwrap_or(self.value);
        self.value = tidy;
        self.value
    }

    /// Replaces the series by its successor on a new target: `instance` and
    /// `pod` get a `-r<generation>` suffix and counters start again from 0.
    fn replace(&mut self) {
        self.generation += 1;
        let suffix = format!("-r{}", self.generation);
        // The previous generation's suffix is replaced where it was put.
        let previous = match self.generation {
            1 => 0,
            g => format!("-r{}", g - 1).len(),
        };
        for (name, value) in &mut self.labels {
            if name != "instance" && name != "pod" {
                continue;
            }
            // `host:port` keeps its port last.
            let end = value.rfind(':').unwrap_or(value.len());
            value.replace_range(end - previous..end, &suffix);
        }
        if matches!(self.kind, Kind::Counter { .. } | Kind::Bucket { .. }) {
            self.value = 0.0;
        }
    }
}

/// Replaces about `fraction` of the scrape targets (all their series) by
/// new ones; which ones follows `rng`, so runs repeat exactly.
pub fn churn(series: &mut [GenSeries], fraction: f64, rng: &mut Rng) {
    let targets = series.iter().map(|s| s.target + 1).max().unwrap_or(0);
    let replaced: Vec<bool> = (0..targets).map(|_| rng.f64() < fraction).collect();
    for s in series {
        if replaced[s.target as usize] {
            s.replace();
        }
    }
}

fn labels(name: &str, base: &[(&str, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![("__name__".into(), name.into())];
    v.extend(base.iter().map(|(k, val)| (k.to_string(), val.clone())));
    v.extend(
        extra
            .iter()
            .map(|(k, val)| (k.to_string(), val.to_string())),
    );
    v.sort();
    v
}

struct Builder {
    out: Vec<GenSeries>,
    rng: Rng,
    target: u32,
    /// Set while adding a classic histogram: its series share one random
    /// stream, so the cumulative buckets stay ordered (rounding is monotonic).
    histogram_seed: Option<u64>,
}

impl Builder {
    fn add(&mut self, l: Vec<(String, String)>, kind: Kind) {
        let seed = self.histogram_seed.unwrap_or_else(|| self.rng.next_u64());
        let metric_type = match kind {
            _ if self.histogram_seed.is_some() => MetricType::Histogram,
            Kind::Counter { .. } | Kind::Bucket { .. } => MetricType::Counter,
            Kind::Gauge { .. } | Kind::Constant(_) => MetricType::Gauge,
        };
        let start = match kind {
            _ if self.histogram_seed.is_some() => 0.0,
            Kind::Counter { rate, step } => {
                ((rate * 86_400.0 * Rng::new(seed).f64()) / step).round() * step
            }
            Kind::Gauge { base, .. } => base,
            Kind::Constant(v) => v,
            Kind::Bucket { .. } => 0.0,
        };
        self.out.push(GenSeries {
            labels: l,
            metric_type,
            target: self.target,
            generation: 0,
            kind,
            value: start,
            rng: Rng::new(seed),
        });
    }

    fn node(&mut self, host: usize) {
        self.target += 1;
        let base = [
            ("job", "node".to_string()),
            ("instance", format!("node-{host}:9100")),
        ];
        let cpus = 8;
        for cpu in 0..cpus {
            for (mode, rate) in [
                ("idle", 0.7),
                ("user", 0.15),
                ("system", 0.08),
                ("iowait", 0.02),
                ("irq", 0.001),
                ("softirq", 0.01),
                ("steal", 0.0),
                ("nice", 0.001),
            ] {
                let c = cpu.to_string();
                self.add(
                    labels(
                        "node_cpu_seconds_total",
                        &base,
                        &[("cpu", &c), ("mode", mode)],
                    ),
                    Kind::Counter { rate, step: 0.01 },
                );
            }
        }
        let mem_total = 34_359_738_368.0;
        self.add(
            labels("node_memory_MemTotal_bytes", &base, &[]),
            Kind::Constant(mem_total),
        );
        for (m, frac) in [
            ("MemFree", 0.2),
            ("MemAvailable", 0.5),
            ("Cached", 0.25),
            ("Buffers", 0.02),
            ("Active", 0.4),
            ("Inactive", 0.3),
            ("Dirty", 0.0001),
            ("Slab", 0.03),
            ("SwapFree", 0.0),
            ("Shmem", 0.01),
        ] {
            self.add(
                labels(&format!("node_memory_{m}_bytes"), &base, &[]),
                Kind::Gauge {
                    base: mem_total * frac,
                    spread: mem_total * frac * 0.01,
                    step: 4096.0,
                },
            );
        }
        for (dev, mount) in [
            ("sda1", "/"),
            ("sda2", "/var"),
            ("sdb1", "/data"),
            ("tmpfs", "/run"),
            ("overlay", "/var/lib/containers"),
        ] {
            let size = 107_374_182_400.0;
            self.add(
                labels(
                    "node_filesystem_size_bytes",
                    &base,
                    &[("device", dev), ("mountpoint", mount), ("fstype", "ext4")],
                ),
                Kind::Constant(size),
            );
            self.add(
                labels(
                    "node_filesystem_avail_bytes",
                    &base,
                    &[("device", dev), ("mountpoint", mount), ("fstype", "ext4")],
                ),
                Kind::Gauge {
                    base: size * 0.4,
                    spread: size * 0.001,
                    step: 4096.0,
                },
            );
            self.add(
                labels(
                    "node_filesystem_files_free",
                    &base,
                    &[("device", dev), ("mountpoint", mount), ("fstype", "ext4")],
                ),
                Kind::Gauge {
                    base: 6_000_000.0,
                    spread: 1000.0,
                    step: 1.0,
                },
            );
            self.add(
                labels(
                    "node_filesystem_readonly",
                    &base,
                    &[("device", dev), ("mountpoint", mount), ("fstype", "ext4")],
                ),
                Kind::Constant(0.0),
            );
        }
        for dev in ["eth0", "eth1", "lo"] {
            for (m, rate) in [
                ("receive_bytes", 2e6),
                ("transmit_bytes", 1.5e6),
                ("receive_packets", 2000.0),
                ("transmit_packets", 1800.0),
                ("receive_errs", 0.001),
                ("receive_drop", 0.01),
            ] {
                self.add(
                    labels(
                        &format!("node_network_{m}_total"),
                        &base,
                        &[("device", dev)],
                    ),
                    Kind::Counter { rate, step: 1.0 },
                );
            }
        }
        for dev in ["nvme0n1", "nvme1n1"] {
            for (m, rate, step) in [
                ("reads_completed_total", 50.0, 1.0),
                ("writes_completed_total", 80.0, 1.0),
                ("read_bytes_total", 4e5, 512.0),
                ("written_bytes_total", 8e5, 512.0),
                ("io_time_seconds_total", 0.05, 0.001),
                ("read_time_seconds_total", 0.02, 0.001),
            ] {
                self.add(
                    labels(&format!("node_disk_{m}"), &base, &[("device", dev)]),
                    Kind::Counter { rate, step },
                );
            }
        }
        for (m, b) in [
            ("node_load1", 1.5),
            ("node_load5", 1.4),
            ("node_load15", 1.3),
        ] {
            self.add(
                labels(m, &base, &[]),
                Kind::Gauge {
                    base: b,
                    spread: 0.5,
                    step: 0.01,
                },
            );
        }
        self.add(
            labels("node_context_switches_total", &base, &[]),
            Kind::Counter {
                rate: 20_000.0,
                step: 1.0,
            },
        );
        self.add(
            labels("node_intr_total", &base, &[]),
            Kind::Counter {
                rate: 15_000.0,
                step: 1.0,
            },
        );
        self.add(
            labels("node_boot_time_seconds", &base, &[]),
            Kind::Constant(1_699_000_000.0),
        );
        self.add(labels("up", &base, &[]), Kind::Constant(1.0));
    }

    fn pod(&mut self, ns: usize, pod: usize) {
        self.target += 1;
        let n = format!("ns-{ns}");
        let p = format!("app-{ns}-{pod}-7c9f8d6b5-x{pod:03}");
        let base = [
            ("job", "kube-state-metrics".to_string()),
            ("namespace", n),
            ("pod", p),
        ];
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            self.add(
                labels("kube_pod_status_phase", &base, &[("phase", phase)]),
                Kind::Constant(if phase == "Running" { 1.0 } else { 0.0 }),
            );
        }
        self.add(
            labels(
                "kube_pod_container_status_restarts_total",
                &base,
                &[("container", "app")],
            ),
            Kind::Counter {
                rate: 0.0001,
                step: 1.0,
            },
        );
        self.add(
            labels(
                "kube_pod_container_resource_requests",
                &base,
                &[("container", "app"), ("resource", "cpu"), ("unit", "core")],
            ),
            Kind::Constant(0.25),
        );
        self.add(
            labels(
                "kube_pod_container_resource_requests",
                &base,
                &[
                    ("container", "app"),
                    ("resource", "memory"),
                    ("unit", "byte"),
                ],
            ),
            Kind::Constant(268_435_456.0),
        );
        self.add(
            labels(
                "kube_pod_container_status_ready",
                &base,
                &[("container", "app")],
            ),
            Kind::Constant(1.0),
        );
        self.add(
            labels(
                "kube_pod_info",
                &base,
                &[("node", "node-1"), ("host_ip", "10.0.0.1")],
            ),
            Kind::Constant(1.0),
        );
    }

    fn service(&mut self, svc: usize, inst: usize) {
        self.target += 1;
        let base = [
            ("job", format!("svc-{svc}")),
            ("instance", format!("10.1.{svc}.{inst}:8080")),
        ];
        let buckets = [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
        ];
        for route in [
            "/api/orders",
            "/api/users",
            "/api/cart",
            "/health",
            "/metrics",
        ] {
            for method in ["GET", "POST"] {
                let rate = 5.0 + self.rng.f64() * 100.0;
                for (code, share) in [("200", 0.97), ("404", 0.02), ("500", 0.01)] {
                    self.add(
                        labels(
                            "http_requests_total",
                            &base,
                            &[("route", route), ("method", method), ("code", code)],
                        ),
                        Kind::Counter {
                            rate: rate * share,
                            step: 1.0,
                        },
                    );
                }
                self.histogram_seed = Some(self.rng.next_u64());
                let n = buckets.len();
                for (i, le) in buckets.iter().enumerate() {
                    let fraction = ((i + 1) as f64 / n as f64).powf(0.3);
                    self.add(
                        labels(
                            "http_request_duration_seconds_bucket",
                            &base,
                            &[("route", route), ("method", method), ("le", le)],
                        ),
                        Kind::Bucket { rate, fraction },
                    );
                }
                self.add(
                    labels(
                        "http_request_duration_seconds_sum",
                        &base,
                        &[("route", route), ("method", method)],
                    ),
                    Kind::Counter {
                        rate: rate * 0.05,
                        step: 0.001,
                    },
                );
                self.add(
                    labels(
                        "http_request_duration_seconds_count",
                        &base,
                        &[("route", route), ("method", method)],
                    ),
                    Kind::Bucket {
                        rate,
                        fraction: 1.0,
                    },
                );
                self.histogram_seed = None;
            }
        }
    }
}

/// Builds at least `n` series (whole targets) and returns exactly `n`.
pub fn build(n: usize, seed: u64) -> Vec<GenSeries> {
    let mut b = Builder {
        out: Vec::with_capacity(n + 256),
        rng: Rng::new(seed),
        target: 0,
        histogram_seed: None,
    };
    let (mut host, mut ns, mut svc) = (0, 0, 0);
    while b.out.len() < n {
        // Roughly 45% node, 15% kube-state, 40% service series.
        b.node(host);
        host += 1;
        for p in 0..12 {
            b.pod(ns, p);
        }
        ns += 1;
        b.service(svc / 4, svc % 4);
        svc += 1;
    }
    b.out.truncate(n);
    b.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_unique() {
        let a = build(5000, 7);
        let b = build(5000, 7);
        assert_eq!(a.len(), 5000);
        let mut names: Vec<_> = a.iter().map(|s| s.labels.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 5000, "series must be unique");
        let (mut a, mut b) = (a, b);
        for _ in 0..3 {
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                assert_eq!(x.step(15.0).to_bits(), y.step(15.0).to_bits());
            }
        }
    }

    #[test]
    fn classic_histogram_buckets_stay_cumulative() {
        let mut s = build(3000, 3);
        for _ in 0..50 {
            let values: Vec<f64> = s.iter_mut().map(|x| x.step(15.0)).collect();
            let mut checked = 0;
            for w in s.windows(2).zip(values.windows(2)) {
                let (pair, v) = w;
                let name = |x: &GenSeries| x.labels[0].1.clone();
                let le = |x: &GenSeries| x.labels.iter().find(|l| l.0 == "le").map(|l| l.1.clone());
                if name(&pair[0]).ends_with("_bucket") && name(&pair[1]).ends_with("_bucket") {
                    let (a, b) = (le(&pair[0]).unwrap(), le(&pair[1]).unwrap());
                    let parse = |x: &str| {
                        if x == "+Inf" {
                            f64::INFINITY
                        } else {
                            x.parse().unwrap()
                        }
                    };
                    if parse(&a) < parse(&b) {
                        assert!(v[0] <= v[1], "bucket le={a} {} > le={b} {}", v[0], v[1]);
                        checked += 1;
                    }
                }
            }
            assert!(checked > 100);
        }
        assert!(s.iter().any(|x| x.metric_type == MetricType::Histogram));
    }

    #[test]
    fn churn_replaces_whole_targets_with_new_series() {
        let mut s = build(2000, 5);
        let before: Vec<_> = s.iter().map(|x| x.labels.clone()).collect();
        churn(&mut s, 0.3, &mut Rng::new(9));
        let changed: Vec<bool> = s.iter().zip(&before).map(|(a, b)| a.labels != *b).collect();
        let share = changed.iter().filter(|c| **c).count() as f64 / s.len() as f64;
        assert!((0.1..0.6).contains(&share), "share {share}");
        for (x, ch) in s.iter().zip(&changed) {
            // A target is replaced whole or not at all.
            let same_target = s.iter().zip(&changed).filter(|(y, _)| y.target == x.target);
            assert!(same_target.clone().all(|(_, c)| c == ch));
            if *ch {
                let inst = x
                    .labels
                    .iter()
                    .find(|l| l.0 == "instance" || l.0 == "pod")
                    .unwrap();
                assert!(inst.1.contains("-r1"), "{inst:?}");
            }
        }
        churn(&mut s, 1.0, &mut Rng::new(9));
        let inst = s[0].labels.iter().find(|l| l.0 == "instance").unwrap();
        assert!(
            inst.1.contains("-r") && !inst.1.contains("-r1-r"),
            "{inst:?}"
        );
        let mut names: Vec<_> = s.iter().map(|x| x.labels.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 2000);
    }
}
