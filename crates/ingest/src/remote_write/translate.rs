use std::sync::Arc;

use miru_model::{
    BucketSpan, CounterResetHint, Exemplar, FloatHistogram, HistogramSample, Label, Labels,
    MetricMetadata, MetricType, Sample, SeriesWrite, WriteBatch, deltas_to_absolute,
};
use prost::Message;

use super::{proto_v1, proto_v2};
use crate::body::{BodyError, decode_snappy};

/// Why a remote write body could not be turned into a batch. Every variant
/// is the sender's fault (a 4xx): senders must not retry it.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("malformed protobuf {message}: {source}")]
    Protobuf {
        message: &'static str,
        source: prost::DecodeError,
    },
    #[error("series {series}: {what}")]
    Labels { series: usize, what: String },
    #[error("malformed protobuf prometheus.WriteRequest at byte {offset}: {what}")]
    Wire { what: String, offset: usize },
    #[error("symbols[0] must be the empty string, got {0:?}")]
    FirstSymbolNotEmpty(String),
    #[error(
        "series {series}: {what} reference {reference} is out of range (symbols table has {len} entries)"
    )]
    SymbolRef {
        series: usize,
        what: &'static str,
        reference: u32,
        len: usize,
    },
    #[error("series {series}: {what} has an odd number of label references ({count})")]
    OddLabelRefs {
        series: usize,
        what: &'static str,
        count: usize,
    },
}

/// Decodes a snappy-compressed `prometheus.WriteRequest`.
pub fn decode_v1(body: &[u8], max_decompressed: usize) -> Result<WriteBatch, RemoteWriteError> {
    let raw = decode_snappy(body, max_decompressed)?;
    super::wire_v1::decode_write_request(&raw)
}

/// Decodes with the generated prost types: the reference the hand-written
/// decoder is tested against, and the path for anything unusual.
pub fn decode_v1_reference(
    body: &[u8],
    max_decompressed: usize,
) -> Result<WriteBatch, RemoteWriteError> {
    let raw = decode_snappy(body, max_decompressed)?;
    let req = proto_v1::WriteRequest::decode(raw.as_slice()).map_err(|source| {
        RemoteWriteError::Protobuf {
            message: "prometheus.WriteRequest",
            source,
        }
    })?;
    let mut batch = WriteBatch::default();
    batch.series.reserve(req.timeseries.len());
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let labels = checked_labels(
            i,
            ts.labels
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str())),
        )?;
        let histograms = ts.histograms.iter().map(histogram_from_proto).collect();
        let samples = ts
            .samples
            .iter()
            .map(|s| Sample {
                timestamp_ms: s.timestamp,
                value: s.value,
            })
            .collect();
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            exemplars.push(Exemplar {
                labels: checked_labels(
                    i,
                    e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                )
                .map_err(|e| exemplar_context(i, e))?,
                value: e.value,
                timestamp_ms: e.timestamp,
            });
        }
        batch.series.push(SeriesWrite {
            labels,
            samples,
            histograms,
            exemplars,
        });
    }
    batch.metadata = req
        .metadata
        .into_iter()
        .map(|m| MetricMetadata {
            metric_family: m.metric_family_name,
            metric_type: metric_type(m.r#type),
            help: m.help,
            unit: m.unit,
        })
        .collect();
    Ok(batch)
}

/// Decodes a snappy-compressed `io.prometheus.write.v2.Request`.
pub fn decode_v2(body: &[u8], max_decompressed: usize) -> Result<WriteBatch, RemoteWriteError> {
    let raw = decode_snappy(body, max_decompressed)?;
    let req =
        proto_v2::Request::decode(raw.as_slice()).map_err(|source| RemoteWriteError::Protobuf {
            message: "io.prometheus.write.v2.Request",
            source,
        })?;
    let symbols = &req.symbols;
    if let Some(first) = symbols.first()
        && !first.is_empty()
    {
        return Err(RemoteWriteError::FirstSymbolNotEmpty(first.clone()));
    }
    // Each symbol becomes one shared string: the labels of every series
    // point at it instead of copying it (a request repeats names and
    // values across thousands of series).
    let shared: Vec<Arc<str>> = symbols.iter().map(|s| Arc::from(s.as_str())).collect();
    let sym = |series: usize, what: &'static str, r: u32| -> Result<&Arc<str>, RemoteWriteError> {
        shared.get(r as usize).ok_or(RemoteWriteError::SymbolRef {
            series,
            what,
            reference: r,
            len: symbols.len(),
        })
    };
    let resolve = |series: usize, what: &'static str, refs: &[u32]| {
        if !refs.len().is_multiple_of(2) {
            return Err(RemoteWriteError::OddLabelRefs {
                series,
                what,
                count: refs.len(),
            });
        }
        let mut pairs = Vec::with_capacity(refs.len() / 2);
        for pair in refs.chunks_exact(2) {
            pairs.push((
                Arc::clone(sym(series, what, pair[0])?),
                Arc::clone(sym(series, what, pair[1])?),
            ));
        }
        Ok(pairs)
    };
    let mut batch = WriteBatch::default();
    batch.series.reserve(req.timeseries.len());
    let mut seen_metadata = foldhash::HashSet::default();
    for (i, ts) in req.timeseries.iter().enumerate() {
        let labels = checked_labels(i, resolve(i, "labels", &ts.labels_refs)?.into_iter())?;
        let mut exemplars = Vec::with_capacity(ts.exemplars.len());
        for e in &ts.exemplars {
            let pairs = resolve(i, "exemplar labels", &e.labels_refs)?;
            exemplars.push(Exemplar {
                labels: checked_labels(i, pairs.into_iter()).map_err(|e| exemplar_context(i, e))?,
                value: e.value,
                timestamp_ms: e.timestamp,
            });
        }
        // Metadata is per series in 2.0, so a request repeats each
        // family's: one entry per distinct (name, type, help, unit) is kept.
        // Names are told apart by address: each is one of `shared`'s strings.
        if let Some(md) = &ts.metadata
            && (md.r#type != 0 || md.help_ref != 0 || md.unit_ref != 0)
            && let Some(name) = labels.metric_name()
            && seen_metadata.insert((name.as_ptr() as usize, md.r#type, md.help_ref, md.unit_ref))
        {
            batch.metadata.push(MetricMetadata {
                metric_family: name.to_string(),
                metric_type: metric_type(md.r#type),
                help: sym(i, "metadata help", md.help_ref)?.to_string(),
                unit: sym(i, "metadata unit", md.unit_ref)?.to_string(),
            });
        }
        batch.series.push(SeriesWrite {
            labels,
            samples: ts
                .samples
                .iter()
                .map(|s| Sample {
                    timestamp_ms: s.timestamp,
                    value: s.value,
                })
                .collect(),
            histograms: ts.histograms.iter().map(histogram_from_proto).collect(),
            exemplars,
        });
    }
    Ok(batch)
}

/// Converts a remote write histogram (1.0 and 2.0 share the message) to
/// miru's float histogram. Integer histograms carry delta-encoded bucket
/// counts; float histograms absolute ones. Consistency (spans vs. buckets,
/// schema) is checked later, per sample, by validation.
pub(super) fn histogram_from_proto(h: &proto_v1::Histogram) -> HistogramSample {
    // `count` is a oneof in the .proto; declared flat here, a histogram is
    // a float one when any float-only field is set. When none is, both
    // readings give the same absolute values.
    let is_float = !h.positive_counts.is_empty()
        || !h.negative_counts.is_empty()
        || h.count_float != 0.0
        || h.zero_count_float != 0.0;
    let spans = |v: &[proto_v1::BucketSpan]| {
        v.iter()
            .map(|s| BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let histogram = if is_float {
        FloatHistogram {
            count: h.count_float,
            zero_count: h.zero_count_float,
            positive_buckets: h.positive_counts.clone(),
            negative_buckets: h.negative_counts.clone(),
            ..Default::default()
        }
    } else {
        FloatHistogram {
            count: h.count_int as f64,
            zero_count: h.zero_count_int as f64,
            positive_buckets: deltas_to_absolute(&h.positive_deltas),
            negative_buckets: deltas_to_absolute(&h.negative_deltas),
            ..Default::default()
        }
    };
    HistogramSample {
        timestamp_ms: h.timestamp,
        histogram: Arc::new(FloatHistogram {
            counter_reset_hint: u8::try_from(h.reset_hint)
                .ok()
                .and_then(CounterResetHint::from_u8)
                .unwrap_or_default(),
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            sum: h.sum,
            positive_spans: spans(&h.positive_spans),
            negative_spans: spans(&h.negative_spans),
            custom_values: h.custom_values.clone(),
            ..histogram
        }),
    }
}

fn exemplar_context(series: usize, e: RemoteWriteError) -> RemoteWriteError {
    match e {
        RemoteWriteError::Labels { what, .. } => RemoteWriteError::Labels {
            series,
            what: format!("exemplar: {what}"),
        },
        other => other,
    }
}

/// Builds labels while checking what only the wire order can show:
/// names must be strictly increasing (sorted, no duplicates), as Mimir
/// requires. Empty values are dropped, as Prometheus drops them.
fn checked_labels<S: AsRef<str> + Into<Arc<str>> + Clone>(
    series: usize,
    pairs: impl Iterator<Item = (S, S)>,
) -> Result<Labels, RemoteWriteError> {
    let mut out: Vec<Label> = Vec::new();
    let mut prev: Option<S> = None;
    for (name, value) in pairs {
        if let Some(p) = &prev {
            let (name, p) = (name.as_ref(), p.as_ref());
            if name == p {
                return Err(RemoteWriteError::Labels {
                    series,
                    what: format!("duplicate label name {name:?}"),
                });
            }
            if name < p {
                return Err(RemoteWriteError::Labels {
                    series,
                    what: format!("labels are not sorted: {name:?} comes after {p:?}"),
                });
            }
        }
        prev = Some(name.clone());
        if !value.as_ref().is_empty() {
            out.push(Label::new(name, value));
        }
    }
    Ok(Labels::from_sorted(out))
}

/// The error for labels out of wire order: equal names are duplicates.
pub(super) fn label_order_error(
    series: usize,
    prev: &str,
    name: &str,
    exemplar: bool,
) -> RemoteWriteError {
    let what = if name == prev {
        format!("duplicate label name {name:?}")
    } else {
        format!("labels are not sorted: {name:?} comes after {prev:?}")
    };
    RemoteWriteError::Labels {
        series,
        what: if exemplar {
            format!("exemplar: {what}")
        } else {
            what
        },
    }
}

pub(super) fn metric_type(t: i32) -> MetricType {
    match t {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote_write::encode_v1_for_tests;

    fn label(n: &str, v: &str) -> proto_v1::Label {
        proto_v1::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn v1_round_trip() {
        let req = proto_v1::WriteRequest {
            timeseries: vec![proto_v1::TimeSeries {
                labels: vec![label("__name__", "up"), label("job", "node")],
                samples: vec![proto_v1::Sample {
                    value: 1.0,
                    timestamp: 1000,
                }],
                exemplars: vec![proto_v1::Exemplar {
                    labels: vec![label("trace_id", "abc")],
                    value: 1.0,
                    timestamp: 1000,
                }],
                histograms: vec![],
            }],
            metadata: vec![proto_v1::MetricMetadata {
                r#type: 2,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: "".into(),
            }],
        };
        let b = decode_v1(&encode_v1_for_tests(&req), 1 << 20).unwrap();
        assert_eq!(b.series.len(), 1);
        assert_eq!(b.series[0].labels.get("job"), Some("node"));
        assert_eq!(b.series[0].exemplars[0].labels.get("trace_id"), Some("abc"));
        assert_eq!(b.metadata[0].metric_type, MetricType::Gauge);
    }

    #[test]
    fn v1_rejects_unsorted_and_duplicate() {
        for (labels, want) in [
            (vec![label("b", "1"), label("a", "1")], "not sorted"),
            (
                vec![label("a", "1"), label("a", "2")],
                "duplicate label name \"a\"",
            ),
        ] {
            let req = proto_v1::WriteRequest {
                timeseries: vec![proto_v1::TimeSeries {
                    labels,
                    ..Default::default()
                }],
                metadata: vec![],
            };
            let err = decode_v1(&encode_v1_for_tests(&req), 1 << 20).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
            assert!(err.to_string().starts_with("series 0"), "{err}");
        }
    }

    #[test]
    fn v1_rejects_garbage() {
        let err = decode_v1(b"not snappy at all", 1 << 20).unwrap_err();
        assert!(err.to_string().contains("snappy"), "{err}");
        let bad_proto = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff])
            .unwrap();
        let err = decode_v1(&bad_proto, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("malformed protobuf"), "{err}");
    }

    #[test]
    fn v2_resolves_symbols() {
        let req = proto_v2::Request {
            symbols: vec![
                "".into(),
                "__name__".into(),
                "up".into(),
                "job".into(),
                "n".into(),
                "help me".into(),
            ],
            timeseries: vec![proto_v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![proto_v2::Sample {
                    value: 2.0,
                    timestamp: 5,
                    start_timestamp: 0,
                }],
                metadata: Some(proto_v2::Metadata {
                    r#type: 1,
                    help_ref: 5,
                    unit_ref: 0,
                }),
                ..Default::default()
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let b = decode_v2(&body, 1 << 20).unwrap();
        assert_eq!(b.series[0].labels.to_string(), "up{job=\"n\"}");
        assert_eq!(b.metadata[0].help, "help me");
        assert_eq!(b.metadata[0].metric_type, MetricType::Counter);

        // Per-series metadata repeated across a family's series is kept
        // once; a series whose metadata differs adds its own entry.
        let mut many = req.clone();
        let series = many.timeseries[0].clone();
        many.symbols.push("m".into());
        for (job, help) in [(6, 5), (4, 5), (6, 0)] {
            let mut s = series.clone();
            s.labels_refs = vec![1, 2, 3, job];
            s.metadata.as_mut().unwrap().help_ref = help;
            many.timeseries.push(s);
        }
        many.timeseries.remove(0);
        let body = snap::raw::Encoder::new()
            .compress_vec(&many.encode_to_vec())
            .unwrap();
        let b = decode_v2(&body, 1 << 20).unwrap();
        assert_eq!(b.series.len(), 3);
        let helps: Vec<&str> = b.metadata.iter().map(|m| m.help.as_str()).collect();
        assert_eq!(helps, ["help me", ""]);

        let mut bad = req.clone();
        bad.timeseries[0].labels_refs = vec![1, 99];
        let body = snap::raw::Encoder::new()
            .compress_vec(&bad.encode_to_vec())
            .unwrap();
        let err = decode_v2(&body, 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("reference 99 is out of range"),
            "{err}"
        );
    }
}
