//! WAL record payloads (format: `docs/formats/wal-v3.md`, `wal-v2.md`). Each record
//! names its tenant; series are referred to by a per-tenant id that a
//! `Series` record in the same segment defines.

use std::sync::Arc;

use miru_model::{
    Exemplar, HistogramSample, Label, Labels, LogEntry, LogStreamWrite, MetricMetadata, MetricType,
    Sample, TenantId,
};

use crate::codec::{CodecError, Reader, put_str, put_uvarint, put_varint};

pub(crate) const RECORD_SERIES: u8 = 1;
pub(crate) const RECORD_SAMPLES: u8 = 2;
pub(crate) const RECORD_EXEMPLARS: u8 = 3;
pub(crate) const RECORD_METADATA: u8 = 4;
pub(crate) const RECORD_HISTOGRAMS: u8 = 5;
pub(crate) const RECORD_LOGS: u8 = 6;

/// One decoded WAL record.
#[derive(Debug, PartialEq)]
pub(crate) enum Record {
    Series {
        tenant: TenantId,
        series: Vec<(u32, Labels)>,
    },
    Samples {
        tenant: TenantId,
        samples: Vec<(u32, Sample)>,
    },
    Exemplars {
        tenant: TenantId,
        exemplars: Vec<(u32, Exemplar)>,
    },
    Metadata {
        tenant: TenantId,
        metadata: Vec<MetricMetadata>,
    },
    Histograms {
        tenant: TenantId,
        histograms: Vec<(u32, HistogramSample)>,
    },
    /// Log entries by stream; streams carry their labels (no ids).
    Logs {
        tenant: TenantId,
        streams: Vec<LogStreamWrite>,
    },
}

/// Builds the record bytes of one append: header-less payloads, framed by
/// the segment writer.
#[derive(Debug, Default)]
pub(crate) struct RecordBuf {
    pub(crate) records: Vec<(u8, Vec<u8>)>,
}

impl RecordBuf {
    pub(crate) fn series(&mut self, tenant: &TenantId, series: &[(u32, &Labels)]) {
        if series.is_empty() {
            return;
        }
        let mut b = Vec::new();
        put_str(&mut b, tenant.as_str());
        put_uvarint(&mut b, series.len() as u64);
        for (id, labels) in series {
            put_uvarint(&mut b, u64::from(*id));
            put_labels(&mut b, labels);
        }
        self.records.push((RECORD_SERIES, b));
    }

    pub(crate) fn samples(&mut self, tenant: &TenantId, samples: &[(u32, Sample)]) {
        if samples.is_empty() {
            return;
        }
        let mut b = Vec::with_capacity(16 + samples.len() * 12);
        put_str(&mut b, tenant.as_str());
        put_uvarint(&mut b, samples.len() as u64);
        let base = samples[0].1.timestamp_ms;
        put_varint(&mut b, base);
        for (id, s) in samples {
            put_uvarint(&mut b, u64::from(*id));
            put_varint(&mut b, s.timestamp_ms.wrapping_sub(base));
            b.extend_from_slice(&s.value.to_bits().to_le_bytes());
        }
        self.records.push((RECORD_SAMPLES, b));
    }

    pub(crate) fn histograms(&mut self, tenant: &TenantId, histograms: &[(u32, HistogramSample)]) {
        if histograms.is_empty() {
            return;
        }
        let mut b = Vec::with_capacity(16 + histograms.len() * 64);
        put_str(&mut b, tenant.as_str());
        put_uvarint(&mut b, histograms.len() as u64);
        let base = histograms[0].1.timestamp_ms;
        put_varint(&mut b, base);
        for (id, s) in histograms {
            put_uvarint(&mut b, u64::from(*id));
            put_varint(&mut b, s.timestamp_ms.wrapping_sub(base));
            crate::histogram_codec::put_histogram(&mut b, &s.histogram, None);
        }
        self.records.push((RECORD_HISTOGRAMS, b));
    }

    pub(crate) fn exemplars(&mut self, tenant: &TenantId, exemplars: &[(u32, &Exemplar)]) {
        if exemplars.is_empty() {
            return;
        }
        let mut b = Vec::new();
        put_str(&mut b, tenant.as_str());
        put_uvarint(&mut b, exemplars.len() as u64);
        for (id, e) in exemplars {
            put_uvarint(&mut b, u64::from(*id));
            put_varint(&mut b, e.timestamp_ms);
            b.extend_from_slice(&e.value.to_bits().to_le_bytes());
            put_labels(&mut b, &e.labels);
        }
        self.records.push((RECORD_EXEMPLARS, b));
    }

    pub(crate) fn metadata(&mut self, tenant: &TenantId, metadata: &[MetricMetadata]) {
        if metadata.is_empty() {
            return;
        }
        let mut b = Vec::new();
        put_str(&mut b, tenant.as_str());
        put_uvarint(&mut b, metadata.len() as u64);
        for m in metadata {
            put_str(&mut b, &m.metric_family);
            put_str(&mut b, m.metric_type.as_str());
            put_str(&mut b, &m.help);
            put_str(&mut b, &m.unit);
        }
        self.records.push((RECORD_METADATA, b));
    }

    /// One record with every stream's accepted entries (type 6).
    pub(crate) fn logs(&mut self, tenant: &TenantId, streams: &[(&Labels, &[LogEntry])]) {
        let streams: Vec<_> = streams.iter().filter(|(_, e)| !e.is_empty()).collect();
        if streams.is_empty() {
            return;
        }
        let bytes: usize = streams
            .iter()
            .flat_map(|(_, e)| e.iter())
            .map(|e| e.line.len() + 12)
            .sum();
        let mut b = Vec::with_capacity(16 + bytes);
        put_str(&mut b, tenant.as_str());
        put_uvarint(&mut b, streams.len() as u64);
        for (labels, entries) in streams {
            put_labels(&mut b, labels);
            put_uvarint(&mut b, entries.len() as u64);
            let base = entries[0].timestamp_ns;
            put_varint(&mut b, base);
            for e in entries.iter() {
                put_varint(&mut b, e.timestamp_ns.wrapping_sub(base));
                put_str(&mut b, &e.line);
                put_uvarint(&mut b, e.structured_metadata.len() as u64);
                for (k, v) in &e.structured_metadata {
                    put_str(&mut b, k);
                    put_str(&mut b, v);
                }
            }
        }
        self.records.push((RECORD_LOGS, b));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

fn put_labels(b: &mut Vec<u8>, labels: &Labels) {
    put_uvarint(b, labels.len() as u64);
    for l in labels.iter() {
        put_str(b, &l.name);
        put_str(b, &l.value);
    }
}

fn read_labels(r: &mut Reader<'_>, max: usize) -> Result<Labels, CodecError> {
    let n = r.len("label count", max)?;
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let name: Arc<str> = r.str()?.into();
        let value: Arc<str> = r.str()?.into();
        labels.push(Label { name, value });
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels.dedup_by(|a, b| a.name == b.name);
    Ok(Labels::from_sorted(labels))
}

fn read_tenant(r: &mut Reader<'_>) -> Result<TenantId, CodecError> {
    let at = r.pos();
    TenantId::new(r.str()?).map_err(|_| CodecError::Range {
        what: "tenant id",
        at,
        value: 0,
    })
}

/// Decodes one record payload of the given type.
pub(crate) fn decode(kind: u8, payload: &[u8]) -> Result<Record, CodecError> {
    let mut r = Reader::new(payload);
    let max = payload.len();
    let tenant = read_tenant(&mut r)?;
    let n = r.len("entry count", max)?;
    let rec = match kind {
        RECORD_SERIES => {
            let mut series = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.len("series id", u32::MAX as usize)? as u32;
                series.push((id, read_labels(&mut r, max)?));
            }
            Record::Series { tenant, series }
        }
        RECORD_SAMPLES => {
            let base = r.varint()?;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.len("series id", u32::MAX as usize)? as u32;
                let ts = base.wrapping_add(r.varint()?);
                let value = f64::from_bits(r.u64_le()?);
                samples.push((
                    id,
                    Sample {
                        timestamp_ms: ts,
                        value,
                    },
                ));
            }
            Record::Samples { tenant, samples }
        }
        RECORD_EXEMPLARS => {
            let mut exemplars = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.len("series id", u32::MAX as usize)? as u32;
                let timestamp_ms = r.varint()?;
                let value = f64::from_bits(r.u64_le()?);
                let labels = read_labels(&mut r, max)?;
                exemplars.push((
                    id,
                    Exemplar {
                        labels,
                        value,
                        timestamp_ms,
                    },
                ));
            }
            Record::Exemplars { tenant, exemplars }
        }
        RECORD_METADATA => {
            let mut metadata = Vec::with_capacity(n);
            for _ in 0..n {
                let metric_family = r.str()?.to_string();
                let metric_type = MetricType::parse(r.str()?).unwrap_or_default();
                let help = r.str()?.to_string();
                let unit = r.str()?.to_string();
                metadata.push(MetricMetadata {
                    metric_family,
                    metric_type,
                    help,
                    unit,
                });
            }
            Record::Metadata { tenant, metadata }
        }
        RECORD_HISTOGRAMS => {
            let base = r.varint()?;
            let mut histograms = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.len("series id", u32::MAX as usize)? as u32;
                let timestamp_ms = base.wrapping_add(r.varint()?);
                let h = crate::histogram_codec::read_histogram(&mut r, None)?;
                histograms.push((
                    id,
                    HistogramSample {
                        timestamp_ms,
                        histogram: Arc::new(h),
                    },
                ));
            }
            Record::Histograms { tenant, histograms }
        }
        RECORD_LOGS => {
            let mut streams = Vec::with_capacity(n);
            for _ in 0..n {
                let labels = read_labels(&mut r, max)?;
                let count = r.len("entry count", max)?;
                let base = r.varint()?;
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let timestamp_ns = base.wrapping_add(r.varint()?);
                    let line = r.str()?.to_string();
                    let pairs = r.len("metadata count", max)?;
                    let mut structured_metadata = Vec::with_capacity(pairs);
                    for _ in 0..pairs {
                        let k = r.str()?.to_string();
                        let v = r.str()?.to_string();
                        structured_metadata.push((k, v));
                    }
                    entries.push(LogEntry {
                        timestamp_ns,
                        line,
                        structured_metadata,
                    });
                }
                streams.push(LogStreamWrite { labels, entries });
            }
            Record::Logs { tenant, streams }
        }
        other => {
            return Err(CodecError::Range {
                what: "record type",
                at: 0,
                value: u64::from(other),
            });
        }
    };
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let t = TenantId::new("t").unwrap();
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let e = Exemplar {
            labels: Labels::from_pairs([("trace_id", "abc")]),
            value: 2.5,
            timestamp_ms: 9,
        };
        let md = MetricMetadata {
            metric_family: "up".into(),
            metric_type: MetricType::Gauge,
            help: "h".into(),
            unit: "".into(),
        };
        let s = Sample {
            timestamp_ms: 1000,
            value: 1.0,
        };
        let mut b = RecordBuf::default();
        b.series(&t, &[(3, &l)]);
        b.samples(
            &t,
            &[
                (3, s),
                (
                    3,
                    Sample {
                        timestamp_ms: 990,
                        value: -1.0,
                    },
                ),
            ],
        );
        b.exemplars(&t, &[(3, &e)]);
        b.metadata(&t, std::slice::from_ref(&md));
        let h = HistogramSample {
            timestamp_ms: 1015,
            histogram: Arc::new(miru_model::FloatHistogram {
                schema: 3,
                count: 4.0,
                sum: 1.5,
                positive_spans: vec![miru_model::BucketSpan {
                    offset: -1,
                    length: 2,
                }],
                positive_buckets: vec![1.0, 3.0],
                ..Default::default()
            }),
        };
        b.histograms(&t, &[(3, h.clone())]);
        let decoded: Vec<Record> = b
            .records
            .iter()
            .map(|(k, p)| decode(*k, p).unwrap())
            .collect();
        assert_eq!(
            decoded[0],
            Record::Series {
                tenant: t.clone(),
                series: vec![(3, l)]
            }
        );
        assert_eq!(
            decoded[1],
            Record::Samples {
                tenant: t.clone(),
                samples: vec![
                    (3, s),
                    (
                        3,
                        Sample {
                            timestamp_ms: 990,
                            value: -1.0
                        }
                    )
                ]
            }
        );
        assert_eq!(
            decoded[2],
            Record::Exemplars {
                tenant: t.clone(),
                exemplars: vec![(3, e)]
            }
        );
        assert_eq!(
            decoded[3],
            Record::Metadata {
                tenant: t.clone(),
                metadata: vec![md]
            }
        );
        assert_eq!(
            decoded[4],
            Record::Histograms {
                tenant: t,
                histograms: vec![(3, h)]
            }
        );
    }

    #[test]
    fn log_records_round_trip() {
        let t = TenantId::new("t").unwrap();
        let a = Labels::from_pairs([("app", "api"), ("env", "prod")]);
        let b = Labels::from_pairs([("app", "db")]);
        let entries_a = vec![
            LogEntry {
                timestamp_ns: 1_700_000_000_123_456_789,
                line: "GET /users 200 \u{e9}t\u{e9}".into(),
                structured_metadata: vec![
                    ("trace_id".into(), "abc".into()),
                    ("x".into(), "".into()),
                ],
            },
            LogEntry {
                // Out of order within the record: deltas are signed.
                timestamp_ns: 1_700_000_000_000_000_000,
                line: String::new(),
                structured_metadata: vec![],
            },
        ];
        let entries_b = vec![LogEntry {
            timestamp_ns: -5,
            line: "boot".into(),
            structured_metadata: vec![],
        }];
        let mut buf = RecordBuf::default();
        buf.logs(&t, &[(&a, &entries_a), (&b, &[]), (&b, &entries_b)]);
        assert_eq!(buf.records.len(), 1);
        let (kind, payload) = &buf.records[0];
        assert_eq!(*kind, RECORD_LOGS);
        assert_eq!(
            decode(*kind, payload).unwrap(),
            Record::Logs {
                tenant: t.clone(),
                streams: vec![
                    LogStreamWrite {
                        labels: a,
                        entries: entries_a
                    },
                    LogStreamWrite {
                        labels: b,
                        entries: entries_b
                    },
                ]
            }
        );
        let mut empty = RecordBuf::default();
        empty.logs(&t, &[]);
        assert!(empty.is_empty());
    }
}
