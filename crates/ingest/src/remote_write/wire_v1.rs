//! A hand-written decoder for `prometheus.WriteRequest`, the hot path of
//! ingestion. It reads the protobuf wire format directly from the
//! decompressed buffer and interns label strings per request, so a series
//! costs one allocation for its label set instead of two per string (the
//! generated prost decoder spent most of ingest CPU in the allocator).
//! `proto_v1` stays the reference: a property test checks both agree.

use std::collections::HashMap;
use std::sync::Arc;

use miru_model::{Exemplar, Label, Labels, MetricMetadata, Sample, SeriesWrite, WriteBatch};

use super::translate::{RemoteWriteError, label_order_error, metric_type};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(what: &str, at: usize) -> RemoteWriteError {
    RemoteWriteError::Wire {
        what: what.to_string(),
        offset: at,
    }
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Wire { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, RemoteWriteError> {
        let start = self.pos;
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| malformed("truncated varint", start))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(malformed("varint longer than 10 bytes", start))
    }

    fn key(&mut self) -> Result<(u32, u8), RemoteWriteError> {
        let at = self.pos;
        let k = self.varint()?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(malformed("field number 0", at));
        }
        Ok((field, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], RemoteWriteError> {
        let at = self.pos;
        let n = self.varint()? as usize;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| malformed("length past the end of the message", at))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed64(&mut self) -> Result<u64, RemoteWriteError> {
        let at = self.pos;
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| malformed("truncated fixed64", at))?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn skip(&mut self, wire_type: u8) -> Result<(), RemoteWriteError> {
        let at = self.pos;
        match wire_type {
            VARINT => {
                self.varint()?;
            }
            FIXED64 => {
                self.fixed64()?;
            }
            LEN => {
                self.bytes()?;
            }
            FIXED32 => {
                if self.pos + 4 > self.buf.len() {
                    return Err(malformed("truncated fixed32", at));
                }
                self.pos += 4;
            }
            _ => return Err(malformed(&format!("unsupported wire type {wire_type}"), at)),
        }
        Ok(())
    }

    fn expect(
        &self,
        wire_type: u8,
        want: u8,
        field: &str,
        at: usize,
    ) -> Result<(), RemoteWriteError> {
        if wire_type == want {
            Ok(())
        } else {
            Err(malformed(
                &format!("field {field} has wire type {wire_type}, expected {want}"),
                at,
            ))
        }
    }
}

/// Per-request string interner: each distinct label string is checked for
/// UTF-8 and allocated once.
#[derive(Default)]
struct Interner<'a> {
    map: HashMap<&'a [u8], Arc<str>, foldhash::fast::RandomState>,
}

impl<'a> Interner<'a> {
    fn get(&mut self, b: &'a [u8], at: usize) -> Result<Arc<str>, RemoteWriteError> {
        if let Some(s) = self.map.get(b) {
            return Ok(Arc::clone(s));
        }
        let s: Arc<str> = std::str::from_utf8(b)
            .map_err(|_| malformed("label string is not valid UTF-8", at))?
            .into();
        self.map.insert(b, Arc::clone(&s));
        Ok(s)
    }
}

/// Decodes an uncompressed `prometheus.WriteRequest`.
pub(super) fn decode_write_request(buf: &[u8]) -> Result<WriteBatch, RemoteWriteError> {
    // Offsets in errors are relative to the decompressed message.
    let mut w = Wire::new(buf);
    let mut interner = Interner::default();
    let mut batch = WriteBatch::default();
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    while !w.done() {
        let at = w.pos;
        let (field, wt) = w.key()?;
        match field {
            1 => {
                w.expect(wt, LEN, "timeseries", at)?;
                let ts = w.bytes()?;
                let index = batch.series.len();
                let s = decode_series(ts, offset(ts), index, &mut interner)?;
                batch.series.push(s);
            }
            3 => {
                w.expect(wt, LEN, "metadata", at)?;
                let md = w.bytes()?;
                batch.metadata.push(decode_metadata(md, offset(md))?);
            }
            _ => w.skip(wt)?,
        }
    }
    Ok(batch)
}

fn decode_series<'a>(
    buf: &'a [u8],
    base: usize,
    index: usize,
    interner: &mut Interner<'a>,
) -> Result<SeriesWrite, RemoteWriteError> {
    let mut w = Wire::new(buf);
    let mut labels: Vec<Label> = Vec::with_capacity(12);
    let mut samples = Vec::new();
    let mut exemplars = Vec::new();
    let mut histograms = Vec::new();
    while !w.done() {
        let at = base + w.pos;
        let (field, wt) = w.key()?;
        match field {
            1 => {
                w.expect(wt, LEN, "labels", at)?;
                let l = w.bytes()?;
                let (n, v) = decode_label(l, at)?;
                labels.push(Label {
                    name: interner.get(n, at)?,
                    value: interner.get(v, at)?,
                });
            }
            2 => {
                w.expect(wt, LEN, "samples", at)?;
                samples.push(decode_sample(w.bytes()?, at)?);
            }
            3 => {
                w.expect(wt, LEN, "exemplars", at)?;
                exemplars.push(decode_exemplar(w.bytes()?, at, index, interner)?);
            }
            4 => {
                w.expect(wt, LEN, "histograms", at)?;
                // Rare enough that the generated decoder is fine here.
                let h = <super::proto_v1::Histogram as prost::Message>::decode(w.bytes()?)
                    .map_err(|e| malformed(&format!("histogram: {e}"), at))?;
                histograms.push(super::translate::histogram_from_proto(&h));
            }
            _ => w.skip(wt)?,
        }
    }
    Ok(SeriesWrite {
        labels: sorted_labels(labels, index, false)?,
        samples,
        histograms,
        exemplars,
    })
}

fn decode_label(buf: &[u8], at: usize) -> Result<(&[u8], &[u8]), RemoteWriteError> {
    // Elided lifetimes tie both slices to `buf`, a sub-slice of the root.
    let mut w = Wire::new(buf);
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !w.done() {
        let (field, wt) = w.key()?;
        match field {
            1 => {
                w.expect(wt, LEN, "label name", at)?;
                name = w.bytes()?;
            }
            2 => {
                w.expect(wt, LEN, "label value", at)?;
                value = w.bytes()?;
            }
            _ => w.skip(wt)?,
        }
    }
    Ok((name, value))
}

fn decode_sample(buf: &[u8], at: usize) -> Result<Sample, RemoteWriteError> {
    let mut w = Wire::new(buf);
    let mut s = Sample {
        timestamp_ms: 0,
        value: 0.0,
    };
    while !w.done() {
        let (field, wt) = w.key()?;
        match field {
            1 => {
                w.expect(wt, FIXED64, "sample value", at)?;
                s.value = f64::from_bits(w.fixed64()?);
            }
            2 => {
                w.expect(wt, VARINT, "sample timestamp", at)?;
                s.timestamp_ms = w.varint()? as i64;
            }
            _ => w.skip(wt)?,
        }
    }
    Ok(s)
}

fn decode_exemplar<'a>(
    buf: &'a [u8],
    at: usize,
    index: usize,
    interner: &mut Interner<'a>,
) -> Result<Exemplar, RemoteWriteError> {
    let mut w = Wire::new(buf);
    let mut labels = Vec::new();
    let (mut value, mut ts) = (0.0, 0i64);
    while !w.done() {
        let (field, wt) = w.key()?;
        match field {
            1 => {
                w.expect(wt, LEN, "exemplar labels", at)?;
                let (n, v) = decode_label(w.bytes()?, at)?;
                labels.push(Label {
                    name: interner.get(n, at)?,
                    value: interner.get(v, at)?,
                });
            }
            2 => {
                w.expect(wt, FIXED64, "exemplar value", at)?;
                value = f64::from_bits(w.fixed64()?);
            }
            3 => {
                w.expect(wt, VARINT, "exemplar timestamp", at)?;
                ts = w.varint()? as i64;
            }
            _ => w.skip(wt)?,
        }
    }
    Ok(Exemplar {
        labels: sorted_labels(labels, index, true)?,
        value,
        timestamp_ms: ts,
    })
}

fn decode_metadata(buf: &[u8], at: usize) -> Result<MetricMetadata, RemoteWriteError> {
    let mut w = Wire::new(buf);
    let mut md = MetricMetadata {
        metric_family: String::new(),
        metric_type: metric_type(0),
        help: String::new(),
        unit: String::new(),
    };
    let text = |b: &[u8]| -> Result<String, RemoteWriteError> {
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| malformed("metadata string is not valid UTF-8", at))
    };
    while !w.done() {
        let (field, wt) = w.key()?;
        match (field, wt) {
            (1, VARINT) => md.metric_type = metric_type(w.varint()? as i32),
            (2, LEN) => md.metric_family = text(w.bytes()?)?,
            (4, LEN) => md.help = text(w.bytes()?)?,
            (5, LEN) => md.unit = text(w.bytes()?)?,
            (1 | 2 | 4 | 5, _) => {
                return Err(malformed(
                    &format!("metadata field {field} has wire type {wt}"),
                    at,
                ));
            }
            _ => w.skip(wt)?,
        }
    }
    Ok(md)
}

/// Checks wire order (sorted, unique names) and drops empty values.
fn sorted_labels(
    mut labels: Vec<Label>,
    series: usize,
    exemplar: bool,
) -> Result<Labels, RemoteWriteError> {
    for win in labels.windows(2) {
        if win[1].name <= win[0].name {
            return Err(label_order_error(
                series,
                &win[0].name,
                &win[1].name,
                exemplar,
            ));
        }
    }
    labels.retain(|l| !l.value.is_empty());
    Ok(Labels::from_sorted(labels))
}

#[cfg(test)]
mod tests {
    use super::super::proto_v1 as pb;
    use super::super::translate::decode_v1_reference;
    use super::super::{decode_v1, encode_v1_for_tests};
    use proptest::prelude::*;

    fn label() -> impl Strategy<Value = pb::Label> {
        ("[a-c_]{0,3}", "[x-z]{0,2}").prop_map(|(name, value)| pb::Label { name, value })
    }

    fn series() -> impl Strategy<Value = pb::TimeSeries> {
        (
            proptest::collection::vec(label(), 0..5),
            proptest::collection::vec((any::<f64>(), any::<i64>()), 0..4),
            proptest::collection::vec(
                (
                    proptest::collection::vec(label(), 0..2),
                    any::<f64>(),
                    any::<i64>(),
                ),
                0..2,
            ),
            0usize..2,
        )
            .prop_map(|(labels, samples, exemplars, h)| pb::TimeSeries {
                labels,
                samples: samples
                    .into_iter()
                    .map(|(value, timestamp)| pb::Sample { value, timestamp })
                    .collect(),
                exemplars: exemplars
                    .into_iter()
                    .map(|(labels, value, timestamp)| pb::Exemplar {
                        labels,
                        value,
                        timestamp,
                    })
                    .collect(),
                histograms: vec![pb::Histogram::default(); h],
            })
    }

    fn request() -> impl Strategy<Value = pb::WriteRequest> {
        (
            proptest::collection::vec(series(), 0..6),
            proptest::collection::vec((0i32..9, "[a-z]{0,4}", ".{0,4}", "[a-z]{0,3}"), 0..3),
        )
            .prop_map(|(timeseries, md)| pb::WriteRequest {
                timeseries,
                metadata: md
                    .into_iter()
                    .map(
                        |(r#type, metric_family_name, help, unit)| pb::MetricMetadata {
                            r#type,
                            metric_family_name,
                            help,
                            unit,
                        },
                    )
                    .collect(),
            })
    }

    fn same(a: &miru_model::WriteBatch, b: &miru_model::WriteBatch) -> bool {
        // Compare bit patterns so NaN samples count as equal.
        a.series.len() == b.series.len()
            && a.histogram_count() == b.histogram_count()
            && a.metadata == b.metadata
            && a.series.iter().zip(&b.series).all(|(x, y)| {
                x.labels == y.labels
                    && x.histograms == y.histograms
                    && x.samples.len() == y.samples.len()
                    && x.samples.iter().zip(&y.samples).all(|(s, t)| {
                        s.timestamp_ms == t.timestamp_ms && s.value.to_bits() == t.value.to_bits()
                    })
                    && x.exemplars.len() == y.exemplars.len()
                    && x.exemplars.iter().zip(&y.exemplars).all(|(e, f)| {
                        e.labels == f.labels
                            && e.timestamp_ms == f.timestamp_ms
                            && e.value.to_bits() == f.value.to_bits()
                    })
            })
    }

    /// A request whose one series has its labels split by a sample (two
    /// encoded `TimeSeries` concatenated merge into one): legal protobuf
    /// that no sender writes; every label is kept, as prost does.
    #[test]
    fn labels_split_by_other_fields_are_all_kept() {
        use prost::Message;
        let label = |n: &str, v: &str| pb::Label {
            name: n.into(),
            value: v.into(),
        };
        let first = pb::TimeSeries {
            labels: vec![label("__name__", "split_test")],
            samples: vec![pb::Sample {
                value: 1.5,
                timestamp: 7,
            }],
            ..Default::default()
        };
        let second = pb::TimeSeries {
            labels: vec![label("job", "x")],
            ..Default::default()
        };
        let mut ts = first.encode_to_vec();
        ts.extend(second.encode_to_vec());
        let mut req = vec![0x0a];
        prost::encoding::encode_varint(ts.len() as u64, &mut req);
        req.extend(ts);
        let body = snap::raw::Encoder::new().compress_vec(&req).unwrap();
        let a = decode_v1(&body, 1 << 20).unwrap();
        let b = decode_v1_reference(&body, 1 << 20).unwrap();
        assert!(same(&a, &b), "{a:?}\n{b:?}");
        assert_eq!(a.series[0].labels.len(), 2);
    }

    proptest! {
        #[test]
        fn agrees_with_prost(req in request()) {
            let body = encode_v1_for_tests(&req);
            match (decode_v1(&body, 1 << 20), decode_v1_reference(&body, 1 << 20)) {
                (Ok(a), Ok(b)) => prop_assert!(same(&a, &b), "{a:?}\n{b:?}"),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                (a, b) => prop_assert!(false, "disagree: {a:?} vs {b:?}"),
            }
        }

        #[test]
        fn garbage_never_panics_and_agrees_on_validity(raw in proptest::collection::vec(any::<u8>(), 0..120)) {
            let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
            let ours = decode_v1(&body, 1 << 20);
            let reference = decode_v1_reference(&body, 1 << 20);
            if let (Ok(a), Ok(b)) = (&ours, &reference) {
                prop_assert!(same(a, b));
            }
        }
    }
}
