//! `miru loadgen metrics`: the node_exporter / kube-state-metrics /
//! HTTP-service workload of [`super::workload`], scraped every `--interval`
//! and sent over remote write 1.0, remote write 2.0 or OTLP/HTTP.

use std::sync::Arc;
use std::time::Duration;

use miru_ingest::remote_write::{proto_v1, proto_v2};
use prost::Message;

use super::workload::{self, GenSeries, MetricType, Rng};
use super::{CommonArgs, Runner, dur, endpoint, http_client, post};

/// Wire protocol of `miru loadgen metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsProtocol {
    /// Prometheus remote write 1.0 (snappy protobuf `WriteRequest`).
    Rw1,
    /// Prometheus remote write 2.0 (`io.prometheus.write.v2.Request`, with metadata).
    Rw2,
    /// OTLP/HTTP protobuf: counters as monotonic cumulative sums, classic
    /// histograms as explicit-bucket histograms, `job`/`instance` as
    /// `service.name`/`service.instance.id`.
    Otlp,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Endpoint [default: http://127.0.0.1:9009/api/v1/push, or
    /// .../otlp/v1/metrics with `--protocol otlp`].
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, value_enum, default_value = "rw1")]
    pub protocol: MetricsProtocol,
    /// Active series.
    #[arg(long, default_value_t = 10_000)]
    pub series: usize,
    /// Scrape interval of the simulated targets.
    #[arg(long, default_value = "15s", value_parser = dur)]
    pub interval: Duration,
    /// Share of scrape targets (hosts, pods, service instances) replaced by
    /// new ones every `--churn-interval`: their series end and new series
    /// with a new `instance`/`pod` begin.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    #[arg(long, default_value = "10m", value_parser = dur)]
    pub churn_interval: Duration,
    /// Samples per request.
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Sends the workload; returns a non-zero exit when nothing was accepted.
pub async fn run_metrics(a: MetricsArgs) -> anyhow::Result<()> {
    let interval_ms = a.interval.as_millis().max(1) as i64;
    let start_ms = a.common.start_ms();
    let steps = (a.common.span.as_millis() as i64 / interval_ms).max(1);
    let churn_every = (a.churn_interval.as_millis() as i64 / interval_ms).max(1);
    let mut churn_rng = Rng::new(a.common.seed ^ 0xC4u64);
    let mut series = workload::build(a.series, a.common.seed);
    let url = endpoint(
        &a.url,
        match a.protocol {
            MetricsProtocol::Otlp => "http://127.0.0.1:9009/otlp/v1/metrics",
            _ => "http://127.0.0.1:9009/api/v1/push",
        },
    );
    let headers: Arc<Vec<(&'static str, String)>> = Arc::new(match a.protocol {
        MetricsProtocol::Rw1 => vec![
            ("Content-Type", "application/x-protobuf".into()),
            ("Content-Encoding", "snappy".into()),
            ("X-Prometheus-Remote-Write-Version", "0.1.0".into()),
        ],
        MetricsProtocol::Rw2 => vec![
            (
                "Content-Type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request".into(),
            ),
            ("Content-Encoding", "snappy".into()),
            ("X-Prometheus-Remote-Write-Version", "2.0.0".into()),
        ],
        MetricsProtocol::Otlp => vec![("Content-Type", "application/x-protobuf".into())],
    });
    let tenant: Option<Arc<str>> = a.common.tenant.as_deref().map(Into::into);
    let client = http_client(a.common.concurrency)?;
    let mut runner = Runner::new("samples", steps as u64 * series.len() as u64, &a.common);
    let mut otlp = (a.protocol == MetricsProtocol::Otlp).then(|| otlp::Layout::new(&series));
    let mut rw1_labels = (a.protocol == MetricsProtocol::Rw1).then(|| Rw1Labels::new(&series));
    'steps: for step in 0..steps {
        if a.churn > 0.0 && step > 0 && step % churn_every == 0 {
            workload::churn(&mut series, a.churn, &mut churn_rng);
            otlp = otlp.map(|_| otlp::Layout::new(&series));
            rw1_labels = rw1_labels.map(|_| Rw1Labels::new(&series));
        }
        let ts = start_ms + step * interval_ms;
        let values: Vec<f64> = series
            .iter_mut()
            .map(|s| s.step(a.interval.as_secs_f64()))
            .collect();
        // Requests are cut first and each encoded just before it is sent,
        // so encoding overlaps the receiver's work on the previous ones.
        let requests: Vec<std::ops::Range<usize>> = match &otlp {
            Some(layout) => layout.batches(a.batch),
            None => (0..series.len())
                .step_by(a.batch.max(1))
                .map(|from| from..(from + a.batch).min(series.len()))
                .collect(),
        };
        // One scrape is sent completely before the next, so every series
        // arrives in time order whatever the concurrency.
        for range in requests {
            if runner.expired() {
                break 'steps;
            }
            let (n, body) = match (&otlp, &rw1_labels) {
                (Some(layout), _) => layout.request(range, &values, ts, start_ms - interval_ms),
                (None, Some(labels)) => {
                    let n = range.len() as u64;
                    (n, snappy(&labels.request(range, &values, ts)))
                }
                (None, None) => {
                    let (series, values) = (&series[range.clone()], &values[range.clone()]);
                    (range.len() as u64, snappy(&rw2(series, values, ts)))
                }
            };
            let bytes = body.len() as u64;
            let req = post(
                client.clone(),
                Arc::clone(&url),
                Arc::clone(&headers),
                tenant.clone(),
                body,
            );
            runner.send(n, bytes, req).await?;
        }
        runner.drain().await;
    }
    runner
        .finish(serde_json::json!({"series": series.len(), "steps": steps}))
        .await
}

fn snappy(pb: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(pb)
        .expect("BUG: snappy of a protobuf body")
}

/// Remote write 1.0 requests from each series' labels encoded once (the
/// `labels` fields of its `TimeSeries`), so a scrape only appends samples:
/// the loadgen shares the benchmark machine with the receiver, and building
/// `proto_v1` messages cloned every label string of every sample.
struct Rw1Labels(Vec<Vec<u8>>);

impl Rw1Labels {
    fn new(series: &[GenSeries]) -> Rw1Labels {
        Rw1Labels(
            series
                .iter()
                .map(|s| {
                    let mut out = Vec::new();
                    for (name, value) in &s.labels {
                        out.push(0x0a); // TimeSeries.labels
                        proto_v1::Label {
                            name: name.clone(),
                            value: value.clone(),
                        }
                        .encode_length_delimited(&mut out)
                        .expect("BUG: encoding into a Vec");
                    }
                    out
                })
                .collect(),
        )
    }

    /// The `WriteRequest` of `range`'s series, one sample each: the bytes
    /// `prost` gives for the same message (checked by a test).
    fn request(&self, range: std::ops::Range<usize>, values: &[f64], ts: i64) -> Vec<u8> {
        use prost::encoding::{encode_varint, encoded_len_varint};
        let sample = proto_v1::Sample {
            value: 0.0,
            timestamp: ts,
        };
        let mut out = Vec::new();
        for i in range {
            let sample = proto_v1::Sample {
                value: values[i],
                ..sample
            };
            let sample_len = sample.encoded_len();
            let series_len =
                self.0[i].len() + 1 + encoded_len_varint(sample_len as u64) + sample_len;
            out.push(0x0a); // WriteRequest.timeseries
            encode_varint(series_len as u64, &mut out);
            out.extend_from_slice(&self.0[i]);
            out.push(0x12); // TimeSeries.samples
            encode_varint(sample_len as u64, &mut out);
            sample.encode(&mut out).expect("BUG: encoding into a Vec");
        }
        out
    }
}

fn rw2<'a>(series: &'a [GenSeries], values: &[f64], ts: i64) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut refs = std::collections::HashMap::<&str, u32>::new();
    let mut sym = |s: &'a str, symbols: &mut Vec<String>| -> u32 {
        if s.is_empty() {
            return 0;
        }
        *refs.entry(s).or_insert_with(|| {
            symbols.push(s.to_string());
            (symbols.len() - 1) as u32
        })
    };
    let mut timeseries = Vec::with_capacity(series.len());
    for (s, &value) in series.iter().zip(values) {
        let mut labels_refs = Vec::with_capacity(s.labels.len() * 2);
        for (n, v) in &s.labels {
            labels_refs.push(sym(n, &mut symbols));
            labels_refs.push(sym(v, &mut symbols));
        }
        timeseries.push(proto_v2::TimeSeries {
            labels_refs,
            samples: vec![proto_v2::Sample {
                value,
                timestamp: ts,
                start_timestamp: 0,
            }],
            histograms: vec![],
            exemplars: vec![],
            metadata: Some(proto_v2::Metadata {
                r#type: match s.metric_type {
                    MetricType::Counter => 1,
                    MetricType::Gauge => 2,
                    MetricType::Histogram => 3,
                },
                help_ref: 0,
                unit_ref: 0,
            }),
            created_timestamp: 0,
        });
    }
    proto_v2::Request {
        symbols,
        timeseries,
    }
    .encode_to_vec()
}

mod otlp {
    //! The workload as OTLP metrics: one resource per scrape target.
    use std::collections::BTreeMap;

    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    use super::{GenSeries, MetricType};
    use crate::loadgen::otlp_kv as kv;

    /// A point of one metric: which series it reads and its attributes.
    enum Point {
        Number(usize, Vec<KeyValue>),
        /// Cumulative buckets in `le` order (last is `+Inf`), `_sum`, `_count`.
        Histogram {
            bounds: Vec<f64>,
            buckets: Vec<usize>,
            sum: usize,
            count: usize,
            attrs: Vec<KeyValue>,
        },
    }

    enum Shape {
        Gauge,
        MonotonicSum,
        Histogram,
    }

    struct OtlpMetric {
        name: String,
        shape: Shape,
        points: Vec<Point>,
    }

    struct Target {
        resource: Vec<KeyValue>,
        metrics: Vec<OtlpMetric>,
        samples: u64,
    }

    /// How the series map onto resources, metrics and points; built once
    /// (again after churn) and filled with each scrape's values.
    pub(super) struct Layout {
        targets: Vec<Target>,
    }

    impl Layout {
        pub(super) fn new(series: &[GenSeries]) -> Layout {
            // target -> metric name -> (shape, point key -> member series)
            type Families = BTreeMap<String, BTreeMap<Vec<(String, String)>, Vec<usize>>>;
            let mut by_target: BTreeMap<u32, (Vec<KeyValue>, Families)> = BTreeMap::new();
            for (i, s) in series.iter().enumerate() {
                let name = &s.labels[0].1;
                let family = match s.metric_type {
                    MetricType::Histogram => ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suf| name.strip_suffix(suf))
                        .unwrap_or(name)
                        .to_string(),
                    _ => name.clone(),
                };
                let entry = by_target.entry(s.target).or_insert_with(|| {
                    let mut resource = Vec::new();
                    for (n, v) in &s.labels {
                        match n.as_str() {
                            "job" => resource.push(kv("service.name", v)),
                            "instance" => resource.push(kv("service.instance.id", v)),
                            _ => {}
                        }
                    }
                    (resource, BTreeMap::new())
                });
                let key: Vec<(String, String)> = s.labels[1..]
                    .iter()
                    .filter(|(n, _)| n != "job" && n != "instance" && n != "le")
                    .cloned()
                    .collect();
                entry
                    .1
                    .entry(family)
                    .or_default()
                    .entry(key)
                    .or_default()
                    .push(i);
            }
            let targets = by_target
                .into_values()
                .map(|(resource, families)| {
                    let mut metrics = Vec::new();
                    let mut samples = 0;
                    for (family, points) in families {
                        let attrs =
                            |key: &[(String, String)]| key.iter().map(|(n, v)| kv(n, v)).collect();
                        let first = points.values().next().map(|m| m[0]).unwrap_or(0);
                        let ty = series[first].metric_type;
                        if ty == MetricType::Histogram {
                            let mut numbers = Vec::new();
                            let mut hists = Vec::new();
                            for (key, members) in &points {
                                match histogram_point(series, members, attrs(key)) {
                                    Some(p) => hists.push(p),
                                    // An incomplete family (cut by `--series`):
                                    // its series go as gauges, under their own names.
                                    None => numbers.extend(members.iter().map(|&i| (i, key))),
                                }
                                samples += members.len() as u64;
                            }
                            if !hists.is_empty() {
                                metrics.push(OtlpMetric {
                                    name: family.clone(),
                                    shape: Shape::Histogram,
                                    points: hists,
                                });
                            }
                            for (i, key) in numbers {
                                let mut a: Vec<KeyValue> = attrs(key);
                                if let Some(le) = series[i].labels.iter().find(|l| l.0 == "le") {
                                    a.push(kv("le", &le.1));
                                }
                                metrics.push(OtlpMetric {
                                    name: series[i].labels[0].1.clone(),
                                    shape: Shape::Gauge,
                                    points: vec![Point::Number(i, a)],
                                });
                            }
                            continue;
                        }
                        let (name, shape) = match family.strip_suffix("_total") {
                            Some(base) if ty == MetricType::Counter => {
                                (base.to_string(), Shape::MonotonicSum)
                            }
                            _ => (family.clone(), Shape::Gauge),
                        };
                        let pts: Vec<Point> = points
                            .iter()
                            .flat_map(|(key, members)| {
                                members.iter().map(|&i| Point::Number(i, attrs(key)))
                            })
                            .collect();
                        samples += pts.len() as u64;
                        metrics.push(OtlpMetric {
                            name,
                            shape,
                            points: pts,
                        });
                    }
                    Target {
                        resource,
                        metrics,
                        samples,
                    }
                })
                .collect();
            Layout { targets }
        }

        /// One scrape's requests: ranges of whole targets of about `batch`
        /// samples each.
        pub(super) fn batches(&self, batch: usize) -> Vec<std::ops::Range<usize>> {
            let mut out = Vec::new();
            let (mut from, mut n) = (0, 0u64);
            for (i, t) in self.targets.iter().enumerate() {
                n += t.samples;
                if n >= batch as u64 {
                    out.push(from..i + 1);
                    (from, n) = (i + 1, 0);
                }
            }
            if from < self.targets.len() {
                out.push(from..self.targets.len());
            }
            out
        }

        /// The OTLP/HTTP body of `targets`' points at `ts_ms`, with the
        /// samples it holds.
        pub(super) fn request(
            &self,
            targets: std::ops::Range<usize>,
            values: &[f64],
            ts_ms: i64,
            start_ms: i64,
        ) -> (u64, Vec<u8>) {
            let (ts, start) = (ts_ms as u64 * 1_000_000, start_ms.max(0) as u64 * 1_000_000);
            let targets = &self.targets[targets];
            let req = ExportMetricsServiceRequest {
                resource_metrics: targets
                    .iter()
                    .map(|t| ResourceMetrics {
                        resource: Some(Resource {
                            attributes: t.resource.clone(),
                            ..Default::default()
                        }),
                        scope_metrics: vec![ScopeMetrics {
                            metrics: t
                                .metrics
                                .iter()
                                .map(|m| m.fill(values, ts, start))
                                .collect(),
                            ..Default::default()
                        }],
                        schema_url: String::new(),
                    })
                    .collect(),
            };
            let samples = targets.iter().map(|t| t.samples).sum();
            (samples, req.encode_to_vec())
        }
    }

    fn histogram_point(
        series: &[GenSeries],
        members: &[usize],
        attrs: Vec<KeyValue>,
    ) -> Option<Point> {
        let (mut buckets, mut sum, mut count) = (Vec::new(), None, None);
        for &i in members {
            let name = &series[i].labels[0].1;
            if name.ends_with("_sum") {
                sum = Some(i);
            } else if name.ends_with("_count") {
                count = Some(i);
            } else {
                let le = series[i].labels.iter().find(|l| l.0 == "le")?.1.clone();
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                buckets.push((bound, i));
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.last()?.0 != f64::INFINITY {
            return None;
        }
        Some(Point::Histogram {
            bounds: buckets[..buckets.len() - 1].iter().map(|b| b.0).collect(),
            buckets: buckets.iter().map(|b| b.1).collect(),
            sum: sum?,
            count: count?,
            attrs,
        })
    }

    impl OtlpMetric {
        fn fill(&self, values: &[f64], ts: u64, start: u64) -> Metric {
            let number = |i: usize, attrs: &Vec<KeyValue>| NumberDataPoint {
                attributes: attrs.clone(),
                start_time_unix_nano: start,
                time_unix_nano: ts,
                value: Some(number_data_point::Value::AsDouble(values[i])),
                ..Default::default()
            };
            let numbers = || {
                self.points
                    .iter()
                    .filter_map(|p| match p {
                        Point::Number(i, a) => Some(number(*i, a)),
                        Point::Histogram { .. } => None,
                    })
                    .collect()
            };
            let data = match self.shape {
                Shape::Gauge => metric::Data::Gauge(Gauge {
                    data_points: numbers(),
                }),
                Shape::MonotonicSum => metric::Data::Sum(Sum {
                    data_points: numbers(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                Shape::Histogram => metric::Data::Histogram(Histogram {
                    data_points: self
                        .points
                        .iter()
                        .filter_map(|p| match p {
                            Point::Histogram {
                                bounds,
                                buckets,
                                sum,
                                count,
                                attrs,
                            } => {
                                let mut prev = 0.0;
                                let counts = buckets
                                    .iter()
                                    .map(|&b| {
                                        let c = (values[b] - prev).max(0.0) as u64;
                                        prev = values[b].max(prev);
                                        c
                                    })
                                    .collect();
                                Some(HistogramDataPoint {
                                    attributes: attrs.clone(),
                                    start_time_unix_nano: start,
                                    time_unix_nano: ts,
                                    count: values[*count] as u64,
                                    sum: Some(values[*sum]),
                                    bucket_counts: counts,
                                    explicit_bounds: bounds.clone(),
                                    ..Default::default()
                                })
                            }
                            Point::Number(..) => None,
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            };
            Metric {
                name: self.name.clone(),
                data: Some(data),
                ..Default::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request as `prost` encodes the equivalent `proto_v1` message.
    fn reference(series: &[GenSeries], values: &[f64], ts: i64) -> Vec<u8> {
        proto_v1::WriteRequest {
            timeseries: series
                .iter()
                .zip(values)
                .map(|(s, &value)| proto_v1::TimeSeries {
                    labels: s
                        .labels
                        .iter()
                        .map(|(n, v)| proto_v1::Label {
                            name: n.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                    samples: vec![proto_v1::Sample {
                        value,
                        timestamp: ts,
                    }],
                    exemplars: vec![],
                    histograms: vec![],
                })
                .collect(),
            metadata: vec![],
        }
        .encode_to_vec()
    }

    #[test]
    fn rw1_requests_are_the_bytes_prost_writes() {
        let mut series = workload::build(3000, 2);
        for round in 0..3 {
            let labels = Rw1Labels::new(&series);
            let mut values: Vec<f64> = series.iter_mut().map(|s| s.step(15.0)).collect();
            // Defaults prost leaves out: a zero value, a zero timestamp.
            values[7] = 0.0;
            values[8] = -0.0;
            for ts in [0, 1_795_292_220_000, -5] {
                for range in [0..3000, 100..101, 2990..3000, 5..5] {
                    assert_eq!(
                        labels.request(range.clone(), &values, ts),
                        reference(&series[range.clone()], &values[range], ts),
                        "round {round}, ts {ts}"
                    );
                }
            }
            workload::churn(&mut series, 0.5, &mut Rng::new(round));
        }
    }

    #[test]
    fn otlp_batches_cover_every_target_once() {
        let series = workload::build(3000, 2);
        let layout = otlp::Layout::new(&series);
        let values = vec![1.0; series.len()];
        for batch in [1, 700, 100_000] {
            let ranges = layout.batches(batch);
            let samples: u64 = ranges
                .iter()
                .map(|r| layout.request(r.clone(), &values, 1000, 0).0)
                .sum();
            assert_eq!(samples, 3000, "batch {batch}");
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
            assert_eq!(ranges[0].start, 0);
        }
    }
}
