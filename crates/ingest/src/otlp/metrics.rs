//! OTLP metrics to Prometheus series, as Prometheus'
//! `otlptranslator/prometheusremotewrite` and Mimir's distributor do it:
//! gauges and cumulative sums become one series per data point, explicit
//! histograms become `_bucket`/`_sum`/`_count` series, summaries become
//! `quantile` series plus `_sum`/`_count`, and every resource gets a
//! `target_info` series. What cannot be stored is counted and described in
//! the result, never turned into an error for the whole request.

use std::collections::BTreeSet;
use std::sync::Arc;

use miru_model::{METRIC_NAME, MetricMetadata, MetricType, Sample, WriteBatch};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, ScopeMetrics, metric::Data,
};

use super::attributes::{attribute_labels, value_string};
use super::names::{NameError, SuffixKind, label_name, metadata_unit, metric_name};
use super::output::{Output, dropped};
use super::points::{
    BaseLabels, MetricCtx, exponential_histogram_point, histogram_point, number_point,
    series_labels, set_job_instance, summary_point,
};

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// Resource attributes that become `job` and `instance` instead of labels.
const IDENTIFYING_ATTRIBUTES: [&str; 3] = [SERVICE_NAMESPACE, SERVICE_NAME, SERVICE_INSTANCE_ID];
const TARGET_INFO: &str = "target_info";

/// How OTLP names and resources map onto Prometheus series.
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    /// Append unit suffixes (`_seconds`, `_bytes`, `_per_second`...),
    /// `_total` to monotonic sums and `_ratio` to gauges with unit `1`.
    pub add_metric_suffixes: bool,
    /// Resource attributes copied onto every series as labels (names
    /// sanitised). A data point attribute of the same name wins.
    pub promote_resource_attributes: Vec<String>,
    /// Keep `service.name`, `service.namespace` and `service.instance.id`
    /// as labels of `target_info` (they are always in `job`/`instance`).
    pub keep_identifying_resource_attributes: bool,
    /// Keep metric and label names as sent instead of replacing every
    /// character outside the legacy Prometheus charset with `_`.
    pub allow_utf8_names: bool,
    /// Add `otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url`
    /// and scope attributes as labels. Off by default, as in Prometheus
    /// (`otlp.promote_scope_metadata`) and Mimir.
    pub promote_scope_metadata: bool,
}

impl Default for OtlpOptions {
    fn default() -> Self {
        OtlpOptions {
            add_metric_suffixes: true,
            promote_resource_attributes: Vec::new(),
            keep_identifying_resource_attributes: false,
            allow_utf8_names: false,
            promote_scope_metadata: false,
        }
    }
}

/// The series of a request, plus what was left out, for the OTLP
/// partial-success response (`rejected_data_points`, `error_message`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtlpTranslation {
    pub batch: WriteBatch,
    /// OTLP data points that produced no sample.
    pub rejected_points: i64,
    /// Why points were rejected or something was left out; empty if nothing.
    pub error_message: String,
}

/// Translates an export request. Never fails: what cannot be translated is
/// counted in `rejected_points` and described in `error_message`.
pub fn translate_metrics(req: &ExportMetricsServiceRequest, opts: &OtlpOptions) -> OtlpTranslation {
    let promoted: Vec<(&str, String)> = opts
        .promote_resource_attributes
        .iter()
        // An attribute name that cannot be a label name is a configuration
        // mistake, not the sender's; it is skipped.
        .filter_map(|a| {
            Some((
                a.as_str(),
                label_name(a, opts.allow_utf8_names).ok()?.into_owned(),
            ))
        })
        .collect();
    let mut out = Output::default();
    for rm in &req.resource_metrics {
        let attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let mut resource = ResourceContext::new(attrs, &promoted);
        for sm in &rm.scope_metrics {
            let scope = scope_labels(sm, opts);
            for metric in &sm.metrics {
                translate_metric(metric, &mut resource, &scope, opts, &mut out);
            }
        }
        add_target_info(attrs, &resource, opts, &mut out);
    }
    out.finish()
}

/// What is constant for all data points of one `ResourceMetrics`.
pub(super) struct ResourceContext {
    pub(super) job: Option<String>,
    pub(super) instance: Option<String>,
    pub(super) promoted: Vec<(String, String)>,
    /// Timestamps of the samples written for this resource; `target_info`
    /// gets a sample at each.
    pub(super) timestamps: BTreeSet<i64>,
}

impl ResourceContext {
    fn new(attrs: &[KeyValue], promoted: &[(&str, String)]) -> Self {
        let get = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| value_string(kv.value.as_ref()))
        };
        let job = get(SERVICE_NAME).map(|name| match get(SERVICE_NAMESPACE) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        });
        let promoted = promoted
            .iter()
            .filter_map(|(attr, label)| Some((label.clone(), get(attr)?)))
            .collect();
        ResourceContext {
            job: job.filter(|j| !j.is_empty()),
            instance: get(SERVICE_INSTANCE_ID).filter(|i| !i.is_empty()),
            promoted,
            timestamps: BTreeSet::new(),
        }
    }
}

/// `otel_scope_*` labels of a scope; none when the scope has no name.
/// Attributes first, so that name, version and schema URL win collisions.
fn scope_labels(sm: &ScopeMetrics, opts: &OtlpOptions) -> Vec<(String, String)> {
    let Some(scope) = sm
        .scope
        .as_ref()
        .filter(|s| opts.promote_scope_metadata && !s.name.is_empty())
    else {
        return Vec::new();
    };
    let mut labels = Vec::with_capacity(scope.attributes.len() + 3);
    for kv in &scope.attributes {
        let key = format!("otel_scope_{}", kv.key);
        if let Ok(name) = label_name(&key, opts.allow_utf8_names) {
            labels.push((name.into_owned(), value_string(kv.value.as_ref())));
        }
    }
    labels.push(("otel_scope_name".into(), scope.name.clone()));
    labels.push(("otel_scope_version".into(), scope.version.clone()));
    labels.push(("otel_scope_schema_url".into(), sm.schema_url.clone()));
    labels
}

fn translate_metric(
    metric: &Metric,
    resource: &mut ResourceContext,
    scope: &[(String, String)],
    opts: &OtlpOptions,
    out: &mut Output,
) {
    let name = &metric.name;
    let Some(data) = &metric.data else {
        out.reject(0, format!("metric {name:?} has no data"));
        return;
    };
    let (what, points) = match data {
        Data::Gauge(g) => ("gauge", g.data_points.len()),
        Data::Sum(s) => ("sum", s.data_points.len()),
        Data::Histogram(h) => ("histogram", h.data_points.len()),
        Data::ExponentialHistogram(h) => ("exponential histogram", h.data_points.len()),
        Data::Summary(s) => ("summary", s.data_points.len()),
    };
    if points == 0 {
        return;
    }
    // Delta sums and histograms are rejected, as Prometheus and Mimir do by
    // default (their delta ingestion is an experimental opt-in that writes
    // the deltas as if they were gauges, which PromQL's rate() misreads).
    let temporality = match data {
        Data::Sum(s) => Some(s.aggregation_temporality),
        Data::Histogram(h) => Some(h.aggregation_temporality),
        Data::ExponentialHistogram(h) => Some(h.aggregation_temporality),
        _ => None,
    };
    if let Some(t) = temporality
        && t != AggregationTemporality::Cumulative as i32
    {
        let t = match AggregationTemporality::try_from(t) {
            Ok(AggregationTemporality::Delta) => "delta".to_string(),
            Ok(_) => "unspecified".to_string(),
            Err(_) => format!("unknown ({t})"),
        };
        out.reject(
            points,
            format!(
                "{what} {name:?}: {t} aggregation temporality is not supported, only cumulative; {}",
                dropped(points)
            ),
        );
        return;
    }

    let (suffix_kind, metric_type) = match data {
        Data::Gauge(_) => (SuffixKind::Gauge, MetricType::Gauge),
        Data::Sum(s) if s.is_monotonic => (SuffixKind::MonotonicCounter, MetricType::Counter),
        Data::Sum(_) => (SuffixKind::Other, MetricType::Gauge),
        Data::Histogram(_) | Data::ExponentialHistogram(_) => {
            (SuffixKind::Other, MetricType::Histogram)
        }
        Data::Summary(_) => (SuffixKind::Other, MetricType::Summary),
    };
    let family = match metric_name(
        name,
        &metric.unit,
        suffix_kind,
        opts.add_metric_suffixes,
        opts.allow_utf8_names,
    ) {
        Ok(f) => f,
        Err(NameError::Empty) => {
            out.reject(
                points,
                format!("{what} with an empty name; {}", dropped(points)),
            );
            return;
        }
        Err(e) => {
            out.reject(points, format!("{what} {name:?}: {e}; {}", dropped(points)));
            return;
        }
    };

    let mut ctx = MetricCtx {
        family,
        resource,
        scope,
        opts,
        dropped: Vec::new(),
        wrote: false,
    };
    match data {
        Data::Gauge(g) => {
            for p in &g.data_points {
                number_point(&mut ctx, out, p, false);
            }
        }
        Data::Sum(s) => {
            for p in &s.data_points {
                number_point(&mut ctx, out, p, true);
            }
        }
        Data::Histogram(h) => {
            for p in &h.data_points {
                histogram_point(&mut ctx, out, p);
            }
        }
        Data::Summary(s) => {
            for p in &s.data_points {
                summary_point(&mut ctx, out, p);
            }
        }
        Data::ExponentialHistogram(h) => {
            for p in &h.data_points {
                exponential_histogram_point(&mut ctx, out, p);
            }
        }
    }

    if ctx.wrote {
        out.metadata(MetricMetadata {
            metric_family: ctx.family.clone(),
            metric_type,
            help: metric.description.clone(),
            unit: metadata_unit(&metric.unit),
        });
    }
    for (reason, n) in ctx.dropped {
        out.reject(n, format!("{what} {name:?}: {reason}; {}", dropped(n)));
    }
}

/// One `target_info` sample (value 1) per timestamp written for the
/// resource, carrying the resource attributes that are not `job`/`instance`.
/// Upstream writes samples from the earliest to the latest timestamp every
/// half lookback delta instead; a sample wherever the resource had one keeps
/// the info joinable at every one of its samples without a lookback setting.
fn add_target_info(
    attrs: &[KeyValue],
    resource: &ResourceContext,
    opts: &OtlpOptions,
    out: &mut Output,
) {
    if resource.timestamps.is_empty() {
        return;
    }
    let identifying = |k: &str| IDENTIFYING_ATTRIBUTES.contains(&k);
    if attrs.iter().all(|kv| identifying(&kv.key)) {
        // Only job and instance: target_info would say nothing new.
        return;
    }
    let skip = |k: &str| {
        k == METRIC_NAME || (!opts.keep_identifying_resource_attributes && identifying(k))
    };
    let mut map = match attribute_labels(attrs, skip, opts.allow_utf8_names) {
        Ok(map) => map,
        Err(e) => {
            out.reject(0, format!("resource {e}; {TARGET_INFO} not written"));
            return;
        }
    };
    set_job_instance(&mut map, resource);
    let has_identity = ["job", "instance"]
        .iter()
        .any(|l| map.get(*l).is_some_and(|v| !v.is_empty()));
    if !has_identity {
        return;
    }
    let base: BaseLabels = map
        .into_iter()
        .map(|(n, v)| (Arc::from(n), Arc::from(v)))
        .collect();
    let labels = series_labels(&base, TARGET_INFO, None);
    for &timestamp_ms in &resource.timestamps {
        let sample = Sample {
            timestamp_ms,
            value: 1.0,
        };
        out.push_unique(labels.clone(), sample);
    }
    out.metadata(MetricMetadata {
        metric_family: TARGET_INFO.into(),
        metric_type: MetricType::Gauge,
        help: "Target metadata".into(),
        unit: String::new(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::decode::{OTLP_JSON_EXAMPLE, OtlpEncoding, decode_metrics_request};
    use miru_model::{SeriesWrite, is_stale_nan};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar as OtlpExemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
        Histogram, HistogramDataPoint, NumberDataPoint, ResourceMetrics, Sum, Summary,
        SummaryDataPoint, exemplar, number_data_point, summary_data_point::ValueAtQuantile,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    const T_NS: u64 = 1_700_000_000_123_456_789;
    const T_MS: i64 = 1_700_000_000_123;
    const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
    const DELTA: i32 = AggregationTemporality::Delta as i32;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "io.example.lib".into(),
                        version: "1.2.0".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn service() -> Vec<KeyValue> {
        vec![
            kv("service.name", "api"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "pod-1"),
            kv("host.name", "box-1"),
        ]
    }

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: format!("{name} help"),
            data: Some(data),
            ..Default::default()
        }
    }

    fn number(ts: u64, value: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: ts,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn gauge(points: Vec<NumberDataPoint>) -> Data {
        Data::Gauge(Gauge {
            data_points: points,
        })
    }

    fn sum(monotonic: bool, temporality: i32, points: Vec<NumberDataPoint>) -> Data {
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality,
            is_monotonic: monotonic,
        })
    }

    fn exemplar(value: f64, trace: u8) -> OtlpExemplar {
        OtlpExemplar {
            time_unix_nano: T_NS - 1_000_000,
            value: Some(exemplar::Value::AsDouble(value)),
            trace_id: vec![trace; 16],
            span_id: vec![trace; 8],
            ..Default::default()
        }
    }

    /// Most tests look at scope labels too, so they turn promotion on.
    fn translate(req: &ExportMetricsServiceRequest) -> OtlpTranslation {
        let opts = OtlpOptions {
            promote_scope_metadata: true,
            ..OtlpOptions::default()
        };
        translate_metrics(req, &opts)
    }

    #[test]
    fn scope_labels_are_off_by_default() {
        let req = request(
            service(),
            vec![metric(
                "cpu.utilization",
                "1",
                gauge(vec![number(T_NS, 0.5, vec![])]),
            )],
        );
        let t = translate_metrics(&req, &OtlpOptions::default());
        let s = series(&t, "cpu_utilization_ratio", &[]);
        assert_eq!(
            s.labels.to_string(),
            "cpu_utilization_ratio{instance=\"pod-1\", job=\"shop/api\"}"
        );
    }

    /// The series named `name` whose labels include all of `with`.
    fn series<'a>(t: &'a OtlpTranslation, name: &str, with: &[(&str, &str)]) -> &'a SeriesWrite {
        t.batch
            .series
            .iter()
            .find(|s| {
                s.labels.metric_name() == Some(name)
                    && with.iter().all(|(n, v)| s.labels.get(n) == Some(*v))
            })
            .unwrap_or_else(|| panic!("no series {name} {with:?} in {:#?}", names(t)))
    }

    fn names(t: &OtlpTranslation) -> Vec<String> {
        t.batch
            .series
            .iter()
            .map(|s| s.labels.to_string())
            .collect()
    }

    fn values(s: &SeriesWrite) -> Vec<f64> {
        s.samples.iter().map(|x| x.value).collect()
    }

    fn metadata<'a>(t: &'a OtlpTranslation, family: &str) -> &'a MetricMetadata {
        t.batch
            .metadata
            .iter()
            .find(|m| m.metric_family == family)
            .unwrap_or_else(|| panic!("no metadata for {family}: {:?}", t.batch.metadata))
    }

    #[test]
    fn gauge_gets_job_instance_scope_and_attribute_labels() {
        let req = request(
            service(),
            vec![metric(
                "cpu.utilization",
                "1",
                gauge(vec![number(T_NS, 0.5, vec![kv("cpu.core", "3")])]),
            )],
        );
        let t = translate(&req);
        assert_eq!((t.rejected_points, t.error_message.as_str()), (0, ""));
        let s = series(&t, "cpu_utilization_ratio", &[]);
        assert_eq!(
            s.labels.to_string(),
            "cpu_utilization_ratio{cpu_core=\"3\", instance=\"pod-1\", job=\"shop/api\", \
             otel_scope_name=\"io.example.lib\", otel_scope_version=\"1.2.0\"}"
        );
        assert_eq!(
            s.samples,
            vec![Sample {
                timestamp_ms: T_MS,
                value: 0.5
            }]
        );
        assert_eq!(
            metadata(&t, "cpu_utilization_ratio"),
            &MetricMetadata {
                metric_family: "cpu_utilization_ratio".into(),
                metric_type: MetricType::Gauge,
                help: "cpu.utilization help".into(),
                unit: String::new(),
            }
        );
    }

    #[test]
    fn target_info_carries_the_other_resource_attributes() {
        let req = request(
            service(),
            vec![metric(
                "system.memory.usage",
                "By",
                gauge(vec![
                    number(T_NS, 1.0, vec![]),
                    number(T_NS + 15_000_000_000, 2.0, vec![]),
                ]),
            )],
        );
        let t = translate(&req);
        // Two points of one series merge into one SeriesWrite.
        let s = series(&t, "system_memory_usage_bytes", &[]);
        assert_eq!(values(s), vec![1.0, 2.0]);
        assert_eq!(metadata(&t, "system_memory_usage_bytes").unit, "bytes");

        let info = series(&t, "target_info", &[]);
        assert_eq!(
            info.labels.to_string(),
            "target_info{host_name=\"box-1\", instance=\"pod-1\", job=\"shop/api\"}"
        );
        let ts: Vec<i64> = info.samples.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(ts, vec![T_MS, T_MS + 15_000]);
        assert_eq!(values(info), vec![1.0, 1.0]);
        assert_eq!(metadata(&t, "target_info").metric_type, MetricType::Gauge);
        assert_eq!(t.batch.series.len(), 2);

        let keep = OtlpOptions {
            keep_identifying_resource_attributes: true,
            ..Default::default()
        };
        let t = translate_metrics(&req, &keep);
        let info = series(&t, "target_info", &[]);
        assert_eq!(info.labels.get("service_name"), Some("api"));
        assert_eq!(info.labels.get("service_namespace"), Some("shop"));
        assert_eq!(info.labels.get("service_instance_id"), Some("pod-1"));
    }

    #[test]
    fn no_target_info_without_other_attributes_or_identity() {
        let points = || gauge(vec![number(T_NS, 1.0, vec![])]);
        let only_identity = request(
            vec![kv("service.name", "api")],
            vec![metric("up", "", points())],
        );
        let t = translate(&only_identity);
        assert_eq!(
            names(&t),
            vec![
                "up{job=\"api\", otel_scope_name=\"io.example.lib\", otel_scope_version=\"1.2.0\"}"
            ]
        );

        let no_identity = request(vec![kv("host.name", "h")], vec![metric("up", "", points())]);
        let t = translate(&no_identity);
        assert_eq!(t.batch.series.len(), 1);
        assert!(series(&t, "up", &[]).labels.get("job").is_none());
    }

    #[test]
    fn job_is_service_name_alone_without_namespace() {
        let req = request(
            vec![kv("service.name", "api"), kv("service.instance.id", "i")],
            vec![metric(
                "up",
                "",
                gauge(vec![number(T_NS, 1.0, vec![kv("job", "mine")])]),
            )],
        );
        let t = translate(&req);
        let s = series(&t, "up", &[]);
        assert_eq!(s.labels.get("job"), Some("api"));
        assert_eq!(s.labels.get("instance"), Some("i"));
    }

    #[test]
    fn monotonic_sum_is_a_counter_with_exemplars() {
        let mut p = number(T_NS, 42.0, vec![kv("code", "200")]);
        p.value = Some(number_data_point::Value::AsInt(42));
        p.exemplars = vec![exemplar(0.25, 0xab)];
        let req = request(
            service(),
            vec![metric("requests", "1", sum(true, CUMULATIVE, vec![p]))],
        );
        let t = translate(&req);
        let s = series(&t, "requests_total", &[("code", "200")]);
        assert_eq!(values(s), vec![42.0]);
        assert_eq!(s.exemplars.len(), 1);
        let e = &s.exemplars[0];
        assert_eq!(e.value, 0.25);
        assert_eq!(e.timestamp_ms, T_MS - 1);
        assert_eq!(
            e.labels.get("trace_id"),
            Some("abababababababababababababababab")
        );
        assert_eq!(e.labels.get("span_id"), Some("abababababababab"));
        let m = metadata(&t, "requests_total");
        assert_eq!((m.metric_type, m.unit.as_str()), (MetricType::Counter, ""));
    }

    #[test]
    fn non_monotonic_sum_is_a_gauge_without_total() {
        let req = request(
            service(),
            vec![metric(
                "queue.depth",
                "{item}",
                sum(false, CUMULATIVE, vec![number(T_NS, 7.0, vec![])]),
            )],
        );
        let t = translate(&req);
        assert_eq!(values(series(&t, "queue_depth", &[])), vec![7.0]);
        assert_eq!(metadata(&t, "queue_depth").metric_type, MetricType::Gauge);
    }

    #[test]
    fn delta_sums_and_histograms_are_rejected() {
        let req = request(
            service(),
            vec![
                metric(
                    "requests",
                    "1",
                    sum(
                        true,
                        DELTA,
                        vec![number(T_NS, 1.0, vec![]), number(T_NS, 2.0, vec![])],
                    ),
                ),
                metric(
                    "latency",
                    "s",
                    Data::Histogram(Histogram {
                        data_points: vec![HistogramDataPoint::default()],
                        aggregation_temporality: 0,
                    }),
                ),
                metric("up", "", gauge(vec![number(T_NS, 1.0, vec![])])),
            ],
        );
        let t = translate(&req);
        assert_eq!(t.rejected_points, 3);
        assert_eq!(
            t.error_message,
            "sum \"requests\": delta aggregation temporality is not supported, only cumulative; \
             2 data points dropped; histogram \"latency\": unspecified aggregation temporality \
             is not supported, only cumulative; 1 data point dropped"
        );
        series(&t, "up", &[]);
        assert!(
            t.batch
                .metadata
                .iter()
                .all(|m| m.metric_family != "requests_total")
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_exemplars_in_their_bucket() {
        let p = HistogramDataPoint {
            attributes: vec![kv("http.route", "/a")],
            time_unix_nano: T_NS,
            count: 6,
            sum: Some(500.0),
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![10.0, 100.5],
            exemplars: vec![exemplar(1000.0, 3), exemplar(5.0, 1), exemplar(100.5, 2)],
            ..Default::default()
        };
        let req = request(
            service(),
            vec![metric(
                "http.server.duration",
                "ms",
                Data::Histogram(Histogram {
                    data_points: vec![p],
                    aggregation_temporality: CUMULATIVE,
                }),
            )],
        );
        let t = translate(&req);
        assert_eq!(t.rejected_points, 0);
        let name = "http_server_duration_milliseconds";
        let bucket = format!("{name}_bucket");
        let b10 = series(&t, &bucket, &[("le", "10"), ("http_route", "/a")]);
        let b100 = series(&t, &bucket, &[("le", "100.5")]);
        let inf = series(&t, &bucket, &[("le", "+Inf")]);
        assert_eq!(
            (values(b10), values(b100), values(inf)),
            (vec![1.0], vec![3.0], vec![6.0])
        );
        let trace = |s: &SeriesWrite| -> Vec<String> {
            s.exemplars
                .iter()
                .map(|e| e.labels.get("trace_id").unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(trace(b10), vec!["01".repeat(16)]);
        assert_eq!(trace(b100), vec!["02".repeat(16)]);
        assert_eq!(trace(inf), vec!["03".repeat(16)]);
        assert_eq!(values(series(&t, &format!("{name}_sum"), &[])), vec![500.0]);
        let count = series(&t, &format!("{name}_count"), &[]);
        assert_eq!(values(count), vec![6.0]);
        assert!(count.exemplars.is_empty());
        let m = metadata(&t, name);
        assert_eq!(
            (m.metric_type, m.unit.as_str()),
            (MetricType::Histogram, "milliseconds")
        );
        // 3 buckets, _sum, _count, target_info.
        assert_eq!(t.batch.series.len(), 6);
    }

    #[test]
    fn histogram_without_sum_or_buckets() {
        let p = HistogramDataPoint {
            time_unix_nano: T_NS,
            count: 4,
            ..Default::default()
        };
        let req = request(
            vec![],
            vec![metric(
                "h",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![p],
                    aggregation_temporality: CUMULATIVE,
                }),
            )],
        );
        let t = translate(&req);
        let mut got = names(&t);
        got.sort();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(values(series(&t, "h_bucket", &[("le", "+Inf")])), vec![4.0]);
        assert_eq!(values(series(&t, "h_count", &[])), vec![4.0]);
    }

    #[test]
    fn summary_has_quantiles_sum_and_count() {
        let p = SummaryDataPoint {
            time_unix_nano: T_NS,
            count: 10,
            sum: 12.5,
            quantile_values: vec![
                ValueAtQuantile {
                    quantile: 0.5,
                    value: 1.0,
                },
                ValueAtQuantile {
                    quantile: 0.99,
                    value: 3.0,
                },
            ],
            ..Default::default()
        };
        let req = request(
            service(),
            vec![metric(
                "rpc.duration",
                "s",
                Data::Summary(Summary {
                    data_points: vec![p],
                }),
            )],
        );
        let t = translate(&req);
        let name = "rpc_duration_seconds";
        assert_eq!(values(series(&t, name, &[("quantile", "0.5")])), vec![1.0]);
        assert_eq!(values(series(&t, name, &[("quantile", "0.99")])), vec![3.0]);
        assert_eq!(values(series(&t, &format!("{name}_sum"), &[])), vec![12.5]);
        assert_eq!(
            values(series(&t, &format!("{name}_count"), &[])),
            vec![10.0]
        );
        assert_eq!(metadata(&t, name).metric_type, MetricType::Summary);
    }

    #[test]
    fn no_recorded_value_becomes_a_stale_marker() {
        let mut g = number(T_NS, 0.0, vec![]);
        g.value = None;
        g.flags = 1;
        let h = HistogramDataPoint {
            time_unix_nano: T_NS,
            flags: 1,
            count: 3,
            sum: Some(1.0),
            bucket_counts: vec![1, 2],
            explicit_bounds: vec![1.0],
            ..Default::default()
        };
        let req = request(
            service(),
            vec![
                metric("g", "", gauge(vec![g])),
                metric(
                    "h",
                    "",
                    Data::Histogram(Histogram {
                        data_points: vec![h],
                        aggregation_temporality: CUMULATIVE,
                    }),
                ),
            ],
        );
        let t = translate(&req);
        assert_eq!(t.rejected_points, 0);
        let stale: Vec<&SeriesWrite> = t
            .batch
            .series
            .iter()
            .filter(|s| s.labels.metric_name() != Some("target_info"))
            .collect();
        assert_eq!(stale.len(), 5);
        for s in stale {
            assert_eq!(s.samples.len(), 1);
            assert!(is_stale_nan(s.samples[0].value), "{}", s.labels);
            assert_eq!(s.samples[0].timestamp_ms, T_MS);
        }
    }

    #[test]
    fn exponential_histograms_become_native_histograms() {
        use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
        let point = ExponentialHistogramDataPoint {
            time_unix_nano: T_NS,
            count: 10,
            sum: Some(12.5),
            scale: 10,
            zero_count: 1,
            zero_threshold: 0.0,
            positive: Some(Buckets {
                offset: 3,
                bucket_counts: vec![2, 3, 0, 4],
            }),
            negative: None,
            ..Default::default()
        };
        let mut bad_scale = point.clone();
        bad_scale.scale = -5;
        let req = request(
            service(),
            vec![
                metric(
                    "latency",
                    "s",
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![point, bad_scale],
                        aggregation_temporality: CUMULATIVE,
                    }),
                ),
                metric(
                    "delta.latency",
                    "s",
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![ExponentialHistogramDataPoint::default()],
                        aggregation_temporality: DELTA,
                    }),
                ),
            ],
        );
        let t = translate(&req);
        let s = series(&t, "latency_seconds", &[("job", "shop/api")]);
        assert!(s.samples.is_empty());
        assert_eq!(s.histograms.len(), 1);
        let h = &s.histograms[0];
        assert_eq!(h.timestamp_ms, T_MS);
        // Scale 10 is reduced to 8: OTLP indexes 3,4,(5),6 >> 2 = 0,1,1 -> +1.
        assert_eq!(h.histogram.schema, 8);
        assert_eq!(
            h.histogram.positive_spans,
            vec![miru_model::BucketSpan {
                offset: 1,
                length: 2
            }]
        );
        assert_eq!(h.histogram.positive_buckets, vec![2.0, 7.0]);
        assert_eq!((h.histogram.count, h.histogram.sum), (10.0, 12.5));
        assert_eq!(h.histogram.zero_count, 1.0);
        assert_eq!(h.histogram.zero_threshold, 1e-128);
        assert_eq!(h.histogram.validate(), Ok(()));
        assert_eq!(t.batch.histogram_count(), 1);
        assert!(t.batch.metadata.iter().any(
            |m| m.metric_family == "latency_seconds" && m.metric_type == MetricType::Histogram
        ));
        assert_eq!(t.rejected_points, 2);
        assert!(
            t.error_message.contains("scale -5 is below -4"),
            "{}",
            t.error_message
        );
        assert!(
            t.error_message.contains("delta aggregation temporality"),
            "{}",
            t.error_message
        );
    }

    #[test]
    fn invalid_metrics_and_points_are_counted_not_fatal() {
        let mut no_value = number(T_NS, 0.0, vec![]);
        no_value.value = None;
        let req = request(
            service(),
            vec![
                metric("", "", gauge(vec![number(T_NS, 1.0, vec![])])),
                metric("...", "", gauge(vec![number(T_NS, 1.0, vec![])])),
                metric(
                    "g",
                    "",
                    gauge(vec![
                        no_value.clone(),
                        no_value,
                        number(T_NS, 1.0, vec![kv("", "x")]),
                        number(T_NS, 2.0, vec![]),
                    ]),
                ),
                Metric {
                    name: "nothing".into(),
                    ..Default::default()
                },
            ],
        );
        let t = translate(&req);
        assert_eq!(t.rejected_points, 5);
        assert_eq!(
            t.error_message,
            "gauge with an empty name; 1 data point dropped; \
             gauge \"...\": name \"...\" normalizes to the invalid name \"\"; 1 data point dropped; \
             gauge \"g\": data point without a value; 2 data points dropped; \
             gauge \"g\": attribute \"\" cannot be a label name: name is empty; 1 data point dropped; \
             metric \"nothing\" has no data"
        );
        assert_eq!(values(series(&t, "g", &[])), vec![2.0]);
    }

    #[test]
    fn many_problems_are_summarised() {
        let metrics = (0..15)
            .map(|i| {
                metric(
                    &format!("d{i}"),
                    "",
                    sum(true, DELTA, vec![number(T_NS, 1.0, vec![])]),
                )
            })
            .collect();
        let t = translate(&request(service(), metrics));
        assert_eq!(t.rejected_points, 15);
        assert!(
            t.error_message.ends_with("; and 5 more problems"),
            "{}",
            t.error_message
        );
        assert!(t.batch.series.is_empty());
    }

    #[test]
    fn colliding_attributes_and_promoted_resource_attributes() {
        let req = request(
            service(),
            vec![metric(
                "up",
                "",
                gauge(vec![number(
                    T_NS,
                    1.0,
                    vec![
                        kv("a.b", "1"),
                        kv("a_b", "2"),
                        kv("__name__", "ignored"),
                        kv("deployment.environment", "mine"),
                    ],
                )]),
            )],
        );
        let opts = OtlpOptions {
            promote_resource_attributes: vec![
                "host.name".into(),
                "deployment.environment".into(),
                "missing".into(),
            ],
            ..Default::default()
        };
        let mut req = req;
        req.resource_metrics[0]
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("deployment.environment", "prod"));
        let t = translate_metrics(&req, &opts);
        let s = series(&t, "up", &[]);
        assert_eq!(s.labels.get("a_b"), Some("1;2"));
        assert_eq!(s.labels.get("host_name"), Some("box-1"));
        // The data point's own attribute wins over a promoted one.
        assert_eq!(s.labels.get("deployment_environment"), Some("mine"));
        assert_eq!(s.labels.get("missing"), None);
        // Promoted attributes stay on target_info as well (not removed).
        let info = series(&t, "target_info", &[]);
        assert_eq!(info.labels.get("deployment_environment"), Some("prod"));
    }

    #[test]
    fn suffixes_off_and_utf8_names() {
        let req = request(
            service(),
            vec![metric(
                "http.server.duration",
                "ms",
                sum(
                    true,
                    CUMULATIVE,
                    vec![number(T_NS, 1.0, vec![kv("http.method", "GET")])],
                ),
            )],
        );
        let plain = OtlpOptions {
            add_metric_suffixes: false,
            ..Default::default()
        };
        let t = translate_metrics(&req, &plain);
        let s = series(&t, "http_server_duration", &[("http_method", "GET")]);
        assert_eq!(values(s), vec![1.0]);

        let utf8 = OtlpOptions {
            allow_utf8_names: true,
            ..Default::default()
        };
        let t = translate_metrics(&req, &utf8);
        series(
            &t,
            "http.server.duration_milliseconds_total",
            &[("http.method", "GET")],
        );
        assert_eq!(
            series(&t, "target_info", &[]).labels.get("host.name"),
            Some("box-1")
        );
    }

    #[test]
    fn resources_with_identical_target_info_share_samples() {
        let mut req = request(
            service(),
            vec![metric("up", "", gauge(vec![number(T_NS, 1.0, vec![])]))],
        );
        let copy = req.resource_metrics[0].clone();
        req.resource_metrics.push(copy);
        let t = translate(&req);
        assert_eq!(series(&t, "target_info", &[]).samples.len(), 1);
        assert_eq!(values(series(&t, "up", &[])), vec![1.0, 1.0]);
    }

    #[test]
    fn translates_the_otlp_json_example() {
        let req = decode_metrics_request(OTLP_JSON_EXAMPLE.as_bytes(), OtlpEncoding::Json).unwrap();
        let t = translate(&req);
        let ts = 1_544_712_660_300;
        let common = [
            ("job", "my.service"),
            ("otel_scope_name", "my.library"),
            ("otel_scope_version", "1.0.0"),
            ("otel_scope_my_scope_attribute", "some scope attribute"),
        ];
        let counter = series(&t, "my_counter_total", &common);
        assert_eq!(counter.labels.get("my_counter_attr"), Some("some value"));
        assert_eq!(
            counter.samples,
            vec![Sample {
                timestamp_ms: ts,
                value: 5.0
            }]
        );
        let e = &counter.exemplars[0];
        assert_eq!(
            e.labels.get("trace_id"),
            Some("5b8efff798038103d269b633813fc60c")
        );
        assert_eq!(e.labels.get("span_id"), Some("eee19b7ec3c1b174"));
        assert_eq!(e.labels.get("user"), Some("7"));
        assert_eq!(e.timestamp_ms, ts - 100);

        assert_eq!(values(series(&t, "my_gauge_ratio", &common)), vec![10.0]);
        assert_eq!(
            values(series(&t, "my_histogram_bucket", &[("le", "1")])),
            vec![1.0]
        );
        assert_eq!(
            values(series(&t, "my_histogram_bucket", &[("le", "+Inf")])),
            vec![2.0]
        );
        assert_eq!(values(series(&t, "my_histogram_sum", &[])), vec![2.0]);
        assert_eq!(values(series(&t, "my_histogram_count", &[])), vec![2.0]);
        let info = series(
            &t,
            "target_info",
            &[("job", "my.service"), ("host_name", "box-1")],
        );
        assert_eq!(info.labels.get("otel_scope_name"), None);

        let exp = series(&t, "my_exponential_histogram", &[]);
        assert_eq!(exp.histograms.len(), 1);
        assert_eq!(exp.histograms[0].histogram.validate(), Ok(()));
        assert_eq!(t.rejected_points, 0, "{}", t.error_message);
    }
}
