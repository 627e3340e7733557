//! OTLP/HTTP and OTLP/gRPC request bodies (already decompressed) to
//! `ExportMetricsServiceRequest` or `ExportLogsServiceRequest`, in binary
//! protobuf or OTLP/JSON.

use miru_model::ErrorKind;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

/// How the request body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `application/x-protobuf` (and every gRPC request).
    Protobuf,
    /// `application/json`: OTLP/JSON, with hex trace and span ids, 64-bit
    /// integers as strings or numbers and enums as integers.
    Json,
}

/// Why an OTLP body could not be decoded. All are the sender's fault.
/// `signal` is `metrics` or `logs`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid otlp protobuf {signal} request: {source}")]
    Protobuf {
        signal: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("invalid otlp json {signal} request at line {line}, column {column}: {message}")]
    Json {
        signal: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    /// A metric's data that the generated serde code could not read. It
    /// swallows such errors (the field is a flattened `Option`), so they are
    /// found again by a second pass that can only name the JSON path.
    #[error("invalid otlp json metrics request in {path}: {message}")]
    JsonMetricData { path: String, message: String },
}

impl DecodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::Protobuf { .. } | DecodeError::Json { .. } => ErrorKind::BadData,
            DecodeError::JsonMetricData { .. } => ErrorKind::BadData,
        }
    }
}

/// Decodes an OTLP metrics export request.
pub fn decode_metrics_request(
    body: &[u8],
    encoding: OtlpEncoding,
) -> Result<ExportMetricsServiceRequest, DecodeError> {
    match encoding {
        OtlpEncoding::Protobuf => {
            ExportMetricsServiceRequest::decode(body).map_err(|source| DecodeError::Protobuf {
                signal: METRICS,
                source,
            })
        }
        OtlpEncoding::Json => {
            let req: ExportMetricsServiceRequest =
                serde_json::from_slice(body).map_err(|e| json_error(METRICS, e))?;
            let no_data = req
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .any(|m| m.data.is_none());
            if no_data {
                check_metric_data(body, &req)?;
            }
            Ok(req)
        }
    }
}

/// Decodes an OTLP logs export request.
pub fn decode_logs_request(
    body: &[u8],
    encoding: OtlpEncoding,
) -> Result<ExportLogsServiceRequest, DecodeError> {
    match encoding {
        OtlpEncoding::Protobuf => {
            ExportLogsServiceRequest::decode(body).map_err(|source| DecodeError::Protobuf {
                signal: LOGS,
                source,
            })
        }
        OtlpEncoding::Json => serde_json::from_slice(body).map_err(|e| json_error(LOGS, e)),
    }
}

const METRICS: &str = "metrics";
const LOGS: &str = "logs";

fn json_error(signal: &'static str, e: serde_json::Error) -> DecodeError {
    let (line, column) = (e.line(), e.column());
    // serde_json appends the position to its message; it is in our fields.
    let full = e.to_string();
    let position = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&position).unwrap_or(&full).to_string();
    DecodeError::Json {
        signal,
        line,
        column,
        message,
    }
}

/// Just enough of the request's shape to reach each metric as raw JSON.
#[derive(serde::Deserialize)]
struct RawRequest {
    #[serde(default, rename = "resourceMetrics")]
    resource_metrics: Vec<RawResourceMetrics>,
}

#[derive(serde::Deserialize)]
struct RawResourceMetrics {
    #[serde(default, rename = "scopeMetrics")]
    scope_metrics: Vec<RawScopeMetrics>,
}

#[derive(serde::Deserialize)]
struct RawScopeMetrics {
    #[serde(default)]
    metrics: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// For every metric that decoded without data, reads its data field on its
/// own so that the error the flattened field hid comes out. A metric that
/// really has no data field is fine here; translation reports it.
fn check_metric_data(body: &[u8], req: &ExportMetricsServiceRequest) -> Result<(), DecodeError> {
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, Sum, Summary,
    };
    use serde::Deserialize;

    fn check<'de, T: Deserialize<'de>>(
        v: &'de serde_json::Value,
        path: impl FnOnce() -> String,
    ) -> Result<(), DecodeError> {
        T::deserialize(v)
            .map(drop)
            .map_err(|e| DecodeError::JsonMetricData {
                path: path(),
                message: e.to_string(),
            })
    }

    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| json_error(METRICS, e))?;
    for (i, (rm, raw_rm)) in req
        .resource_metrics
        .iter()
        .zip(&raw.resource_metrics)
        .enumerate()
    {
        for (j, (sm, raw_sm)) in rm
            .scope_metrics
            .iter()
            .zip(&raw_rm.scope_metrics)
            .enumerate()
        {
            for (k, (m, raw_m)) in sm.metrics.iter().zip(&raw_sm.metrics).enumerate() {
                if m.data.is_some() {
                    continue;
                }
                for (key, v) in raw_m {
                    let path =
                        || format!("resourceMetrics[{i}].scopeMetrics[{j}].metrics[{k}].{key}");
                    match key.as_str() {
                        "gauge" => check::<Gauge>(v, path)?,
                        "sum" => check::<Sum>(v, path)?,
                        "histogram" => check::<Histogram>(v, path)?,
                        "exponentialHistogram" => check::<ExponentialHistogram>(v, path)?,
                        "summary" => check::<Summary>(v, path)?,
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(())
}

/// The metrics example of opentelemetry-proto (`examples/metrics.json`),
/// trimmed, plus an exemplar and an integer value as a string.
#[cfg(test)]
pub(super) const OTLP_JSON_EXAMPLE: &str = r#"{
  "resourceMetrics": [{
    "resource": {
      "attributes": [
        {"key": "service.name", "value": {"stringValue": "my.service"}},
        {"key": "host.name", "value": {"stringValue": "box-1"}}
      ]
    },
    "scopeMetrics": [{
      "scope": {
        "name": "my.library",
        "version": "1.0.0",
        "attributes": [
          {"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}
        ]
      },
      "metrics": [
        {
          "name": "my.counter",
          "unit": "1",
          "description": "I am a Counter",
          "sum": {
            "aggregationTemporality": 2,
            "isMonotonic": true,
            "dataPoints": [{
              "asInt": "5",
              "startTimeUnixNano": "1544712660300000000",
              "timeUnixNano": "1544712660300000000",
              "attributes": [{"key": "my.counter.attr", "value": {"stringValue": "some value"}}],
              "exemplars": [{
                "timeUnixNano": "1544712660200000000",
                "asDouble": 1.5,
                "traceId": "5B8EFFF798038103D269B633813FC60C",
                "spanId": "eee19b7ec3c1b174",
                "filteredAttributes": [{"key": "user", "value": {"intValue": "7"}}]
              }]
            }]
          }
        },
        {
          "name": "my.gauge",
          "unit": "1",
          "description": "I am a Gauge",
          "gauge": {
            "dataPoints": [{
              "asDouble": 10,
              "timeUnixNano": 1544712660300000000,
              "attributes": [{"key": "my.gauge.attr", "value": {"stringValue": "some value"}}]
            }]
          }
        },
        {
          "name": "my.histogram",
          "unit": "1",
          "description": "I am a Histogram",
          "histogram": {
            "aggregationTemporality": 2,
            "dataPoints": [{
              "startTimeUnixNano": "1544712660300000000",
              "timeUnixNano": "1544712660300000000",
              "count": "2",
              "sum": 2,
              "bucketCounts": ["1", 1],
              "explicitBounds": [1],
              "min": 0,
              "max": 2,
              "attributes": [{"key": "my.histogram.attr", "value": {"stringValue": "some value"}}]
            }]
          }
        },
        {
          "name": "my.exponential.histogram",
          "unit": "1",
          "description": "I am an Exponential Histogram",
          "exponentialHistogram": {
            "aggregationTemporality": 2,
            "dataPoints": [{
              "startTimeUnixNano": "1544712660300000000",
              "timeUnixNano": "1544712660300000000",
              "count": 3,
              "sum": 10,
              "scale": 0,
              "zeroCount": 1,
              "positive": {"offset": 1, "bucketCounts": [0, 2]},
              "min": 0,
              "max": 5,
              "zeroThreshold": 0
            }]
          }
        }
      ]
    }]
  }]
}"#;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        exemplar, metric::Data, number_data_point,
    };

    #[test]
    fn decodes_the_otlp_json_example() {
        let req = decode_metrics_request(OTLP_JSON_EXAMPLE.as_bytes(), OtlpEncoding::Json).unwrap();
        let rm = &req.resource_metrics[0];
        let attrs = &rm.resource.as_ref().unwrap().attributes;
        assert_eq!(attrs[0].key, "service.name");
        assert_eq!(
            attrs[0].value.as_ref().unwrap().value,
            Some(Value::StringValue("my.service".into()))
        );
        let sm = &rm.scope_metrics[0];
        assert_eq!(sm.scope.as_ref().unwrap().name, "my.library");
        assert_eq!(sm.metrics.len(), 4);

        let Some(Data::Sum(sum)) = &sm.metrics[0].data else {
            panic!("expected a sum, got {:?}", sm.metrics[0].data);
        };
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert!(sum.is_monotonic);
        let dp = &sum.data_points[0];
        assert_eq!(dp.value, Some(number_data_point::Value::AsInt(5)));
        assert_eq!(dp.time_unix_nano, 1_544_712_660_300_000_000);
        let ex = &dp.exemplars[0];
        assert_eq!(ex.value, Some(exemplar::Value::AsDouble(1.5)));
        assert_eq!(
            ex.trace_id,
            vec![
                0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
                0xc6, 0x0c
            ]
        );
        assert_eq!(
            ex.span_id,
            vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert_eq!(
            ex.filtered_attributes[0].value.as_ref().unwrap().value,
            Some(Value::IntValue(7))
        );

        let Some(Data::Gauge(g)) = &sm.metrics[1].data else {
            panic!("expected a gauge");
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(10.0))
        );
        assert_eq!(g.data_points[0].time_unix_nano, 1_544_712_660_300_000_000);

        let Some(Data::Histogram(h)) = &sm.metrics[2].data else {
            panic!("expected a histogram");
        };
        let hp = &h.data_points[0];
        assert_eq!((hp.count, hp.sum), (2, Some(2.0)));
        assert_eq!(hp.bucket_counts, vec![1, 1]);
        assert_eq!(hp.explicit_bounds, vec![1.0]);

        let Some(Data::ExponentialHistogram(e)) = &sm.metrics[3].data else {
            panic!("expected an exponential histogram");
        };
        assert_eq!(e.data_points[0].count, 3);
    }

    #[test]
    fn json_errors_say_where() {
        let err = decode_metrics_request(b"{\n  \"resourceMetrics\": [1]\n}", OtlpEncoding::Json)
            .unwrap_err();
        let DecodeError::Json { line, column, .. } = &err else {
            panic!("expected a json error, got {err:?}");
        };
        assert_eq!(*line, 2);
        assert!(*column > 0);
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid otlp json metrics request at line 2, column"),
            "{msg}"
        );
        assert!(
            !msg.contains(" at line 2 column"),
            "position repeated: {msg}"
        );
        assert_eq!(err.kind(), ErrorKind::BadData);

        let err = decode_metrics_request(
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","sum":{"dataPoints":[{"exemplars":[{"traceId":"zz"}]}]}}]}]}]}"#,
            OtlpEncoding::Json,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::JsonMetricData { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "invalid otlp json metrics request in resourceMetrics[0].scopeMetrics[0].metrics[0].sum: invalid character 'z'"
            ),
            "{msg}"
        );

        // A metric that has no data at all decodes; translation reports it.
        let req = decode_metrics_request(
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","unit":"1"}]}]}]}"#,
            OtlpEncoding::Json,
        )
        .unwrap();
        assert!(
            req.resource_metrics[0].scope_metrics[0].metrics[0]
                .data
                .is_none()
        );
    }

    #[test]
    fn decodes_otlp_json_logs() {
        // The logs example of opentelemetry-proto (`examples/logs.json`),
        // trimmed, with the 64-bit integers once as numbers.
        let body = br#"{
          "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeLogs": [{
              "scope": {"name": "my.library", "version": "1.0.0"},
              "logRecords": [{
                "timeUnixNano": "1544712660300000000",
                "observedTimeUnixNano": 1544712660300000001,
                "severityNumber": 10,
                "severityText": "Information",
                "traceId": "5B8EFFF798038103D269B633813FC60C",
                "spanId": "EEE19B7EC3C1B174",
                "body": {"stringValue": "Example log record"},
                "attributes": [
                  {"key": "int.attribute", "value": {"intValue": "10"}},
                  {"key": "map.attribute", "value": {"kvlistValue": {"values": [
                    {"key": "some.map.key", "value": {"stringValue": "some value"}}]}}}
                ]
              }]
            }]
          }]
        }"#;
        let req = decode_logs_request(body, OtlpEncoding::Json).unwrap();
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(r.observed_time_unix_nano, 1_544_712_660_300_000_001);
        assert_eq!(r.severity_number, 10);
        assert_eq!(r.trace_id[..2], [0x5b, 0x8e]);
        assert_eq!(r.span_id.len(), 8);
        assert_eq!(
            r.body.as_ref().unwrap().value,
            Some(Value::StringValue("Example log record".into()))
        );
        assert_eq!(
            r.attributes[0].value.as_ref().unwrap().value,
            Some(Value::IntValue(10))
        );
        assert!(matches!(
            r.attributes[1].value.as_ref().unwrap().value,
            Some(Value::KvlistValue(_))
        ));

        let err = decode_logs_request(
            br#"{"resourceLogs": [{"scopeLogs": 1}]}"#,
            OtlpEncoding::Json,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid otlp json logs request at line 1, column"),
            "{err}"
        );
        // A value the AnyValue reader refuses is an error, not an empty body.
        for bad in [
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"intValue":"x"}}]}]}]}"#,
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}"#,
        ] {
            let err = decode_logs_request(bad.as_bytes(), OtlpEncoding::Json);
            assert!(err.is_err(), "{bad}: {err:?}");
        }
        let err = decode_logs_request(b"\xff\xff", OtlpEncoding::Protobuf).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid otlp protobuf logs request: "),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::BadData);
    }

    #[test]
    fn protobuf_round_trip_and_errors() {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "up".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: 1_000_000,
                                value: Some(number_data_point::Value::AsDouble(1.0)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = req.encode_to_vec();
        let decoded = decode_metrics_request(&body, OtlpEncoding::Protobuf).unwrap();
        assert_eq!(decoded, req);

        let err =
            decode_metrics_request(&body[..body.len() - 3], OtlpEncoding::Protobuf).unwrap_err();
        assert!(matches!(err, DecodeError::Protobuf { .. }));
        assert!(
            err.to_string()
                .starts_with("invalid otlp protobuf metrics request: "),
            "{err}"
        );
    }
}
