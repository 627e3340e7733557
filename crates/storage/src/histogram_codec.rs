//! Byte encoding of native histogram samples, shared by the WAL
//! (`docs/formats/wal-v2.md`, record type 5) and parts
//! (`docs/formats/metrics-part-v2.md`, histogram chunks).
//!
//! One histogram is written field by field; bucket counts are absolute
//! floats XOR-ed with the same bucket of the previous histogram in the
//! chunk when the bucket layout is unchanged (the common case for a
//! scraped histogram), so unchanged buckets become zero bytes that zstd
//! removes. Native histograms are a small share of samples; this favours
//! a format short enough to verify over the last byte.

use std::sync::Arc;

use miru_model::{BucketSpan, CounterResetHint, FloatHistogram, HistogramSample};

use crate::codec::{CodecError, Reader, put_uvarint, put_varint};

/// Most spans or buckets accepted per histogram side when decoding; far
/// above what Prometheus allows (160 buckets by default), bounding
/// allocations on corrupt input.
const MAX_BUCKETS: usize = 1 << 16;

/// Appends one histogram. `prev` is the previous histogram of the same
/// chunk (or `None`): bucket counts are XOR-ed with it when the layout
/// matches.
pub(crate) fn put_histogram(b: &mut Vec<u8>, h: &FloatHistogram, prev: Option<&FloatHistogram>) {
    let same_layout = prev.is_some_and(|p| same_layout(p, h));
    b.push(h.counter_reset_hint.as_u8() | if same_layout { 0x80 } else { 0 });
    put_varint(b, i64::from(h.schema));
    for v in [h.zero_threshold, h.zero_count, h.count, h.sum] {
        b.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    if !same_layout {
        put_spans(b, &h.positive_spans);
        put_spans(b, &h.negative_spans);
        put_uvarint(b, h.custom_values.len() as u64);
        for v in &h.custom_values {
            b.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    let prev_pos = prev
        .filter(|_| same_layout)
        .map(|p| &p.positive_buckets[..]);
    let prev_neg = prev
        .filter(|_| same_layout)
        .map(|p| &p.negative_buckets[..]);
    put_counts(b, &h.positive_buckets, prev_pos);
    put_counts(b, &h.negative_buckets, prev_neg);
}

fn same_layout(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    a.positive_spans == b.positive_spans
        && a.negative_spans == b.negative_spans
        && a.custom_values.len() == b.custom_values.len()
        && a.custom_values
            .iter()
            .zip(&b.custom_values)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn put_spans(b: &mut Vec<u8>, spans: &[BucketSpan]) {
    put_uvarint(b, spans.len() as u64);
    for s in spans {
        put_varint(b, i64::from(s.offset));
        put_uvarint(b, u64::from(s.length));
    }
}

fn put_counts(b: &mut Vec<u8>, counts: &[f64], prev: Option<&[f64]>) {
    for (i, v) in counts.iter().enumerate() {
        let base = prev.map_or(0, |p| p[i].to_bits());
        // Varint of the XOR: identical counts cost one byte.
        put_uvarint(b, v.to_bits() ^ base);
    }
}

/// Reads one histogram written by [`put_histogram`] with the same `prev`.
pub(crate) fn read_histogram(
    r: &mut Reader<'_>,
    prev: Option<&FloatHistogram>,
) -> Result<FloatHistogram, CodecError> {
    let at = r.pos();
    let flags = r.u8()?;
    let same_layout = flags & 0x80 != 0;
    let counter_reset_hint = CounterResetHint::from_u8(flags & 0x7f).ok_or(CodecError::Range {
        what: "counter reset hint",
        at,
        value: u64::from(flags),
    })?;
    let at = r.pos();
    let schema = i32::try_from(r.varint()?).map_err(|_| CodecError::Range {
        what: "histogram schema",
        at,
        value: 0,
    })?;
    let mut f = [0f64; 4];
    for v in &mut f {
        *v = f64::from_bits(r.u64_le()?);
    }
    let (positive_spans, negative_spans, custom_values) = if same_layout {
        let p = prev.ok_or(CodecError::Range {
            what: "histogram refers to a missing previous layout",
            at,
            value: 0,
        })?;
        (
            p.positive_spans.clone(),
            p.negative_spans.clone(),
            p.custom_values.clone(),
        )
    } else {
        let pos = read_spans(r)?;
        let neg = read_spans(r)?;
        let n = r.len("custom bucket count", MAX_BUCKETS.min(r.remaining() / 8))?;
        let mut cv = Vec::with_capacity(n);
        for _ in 0..n {
            cv.push(f64::from_bits(r.u64_le()?));
        }
        (pos, neg, cv)
    };
    let prev = prev.filter(|_| same_layout);
    let positive_buckets = read_counts(r, &positive_spans, prev.map(|p| &p.positive_buckets[..]))?;
    let negative_buckets = read_counts(r, &negative_spans, prev.map(|p| &p.negative_buckets[..]))?;
    Ok(FloatHistogram {
        counter_reset_hint,
        schema,
        zero_threshold: f[0],
        zero_count: f[1],
        count: f[2],
        sum: f[3],
        positive_spans,
        positive_buckets,
        negative_spans,
        negative_buckets,
        custom_values,
    })
}

fn read_spans(r: &mut Reader<'_>) -> Result<Vec<BucketSpan>, CodecError> {
    let n = r.len("span count", MAX_BUCKETS.min(r.remaining()))?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = r.pos();
        let offset = i32::try_from(r.varint()?).map_err(|_| CodecError::Range {
            what: "span offset",
            at,
            value: 0,
        })?;
        let length = r.len("span length", MAX_BUCKETS)? as u32;
        out.push(BucketSpan { offset, length });
    }
    Ok(out)
}

fn read_counts(
    r: &mut Reader<'_>,
    spans: &[BucketSpan],
    prev: Option<&[f64]>,
) -> Result<Vec<f64>, CodecError> {
    let at = r.pos();
    let n: usize = spans.iter().map(|s| s.length as usize).sum();
    // Each count takes at least one byte.
    if n > r.remaining() || prev.is_some_and(|p| p.len() != n) {
        return Err(CodecError::Range {
            what: "bucket count",
            at,
            value: n as u64,
        });
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let base = prev.map_or(0, |p| p[i].to_bits());
        out.push(f64::from_bits(r.uvarint()? ^ base));
    }
    Ok(out)
}

/// Appends a chunk of histogram samples (sorted by time, unique):
/// count, first timestamp, then timestamp deltas, each followed by the
/// histogram.
pub(crate) fn encode_chunk(samples: &[HistogramSample], out: &mut Vec<u8>) {
    put_uvarint(out, samples.len() as u64);
    let mut prev_ts = 0i64;
    let mut prev: Option<&FloatHistogram> = None;
    for (i, s) in samples.iter().enumerate() {
        put_varint(
            out,
            if i == 0 {
                s.timestamp_ms
            } else {
                s.timestamp_ms.wrapping_sub(prev_ts)
            },
        );
        prev_ts = s.timestamp_ms;
        put_histogram(out, &s.histogram, prev);
        prev = Some(&s.histogram);
    }
}

/// Decodes a chunk, keeping samples in `[mint, maxt]`.
pub(crate) fn decode_chunk(
    r: &mut Reader<'_>,
    mint: i64,
    maxt: i64,
    out: &mut Vec<HistogramSample>,
) -> Result<usize, CodecError> {
    let n = r.len("histogram sample count", r.remaining())?;
    let mut ts = 0i64;
    let mut prev: Option<Arc<FloatHistogram>> = None;
    for i in 0..n {
        let d = r.varint()?;
        ts = if i == 0 { d } else { ts.wrapping_add(d) };
        let h = Arc::new(read_histogram(r, prev.as_deref())?);
        if ts >= mint && ts <= maxt {
            out.push(HistogramSample {
                timestamp_ms: ts,
                histogram: Arc::clone(&h),
            });
        }
        prev = Some(h);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_histogram() -> impl Strategy<Value = FloatHistogram> {
        (
            0u8..4,
            -4i32..=8,
            any::<f64>(),
            any::<f64>(),
            proptest::collection::vec((-5i32..5, 0u32..4), 0..4),
            proptest::collection::vec(any::<f64>(), 0..3),
        )
            .prop_map(|(hint, schema, count, sum, spans, cv)| {
                let spans: Vec<BucketSpan> = spans
                    .into_iter()
                    .map(|(offset, length)| BucketSpan { offset, length })
                    .collect();
                let n: u32 = spans.iter().map(|s| s.length).sum();
                FloatHistogram {
                    counter_reset_hint: CounterResetHint::from_u8(hint).unwrap(),
                    schema,
                    zero_threshold: 1e-128,
                    zero_count: 2.0,
                    count,
                    sum,
                    positive_buckets: (0..n).map(|i| f64::from(i) * 1.5).collect(),
                    negative_spans: spans.clone(),
                    negative_buckets: (0..n).map(f64::from).collect(),
                    positive_spans: spans,
                    custom_values: cv,
                }
            })
    }

    fn bits_eq(a: &FloatHistogram, b: &FloatHistogram) -> bool {
        let f = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        a.counter_reset_hint == b.counter_reset_hint
            && a.schema == b.schema
            && f(&[a.zero_threshold, a.zero_count, a.count, a.sum])
                == f(&[b.zero_threshold, b.zero_count, b.count, b.sum])
            && a.positive_spans == b.positive_spans
            && a.negative_spans == b.negative_spans
            && f(&a.positive_buckets) == f(&b.positive_buckets)
            && f(&a.negative_buckets) == f(&b.negative_buckets)
            && f(&a.custom_values) == f(&b.custom_values)
    }

    proptest! {
        #[test]
        fn chunks_round_trip(hs in proptest::collection::vec(arb_histogram(), 0..6), repeat in any::<bool>()) {
            // Repeating the first histogram exercises the same-layout path.
            let hs: Vec<FloatHistogram> = if repeat && !hs.is_empty() {
                std::iter::repeat_n(hs[0].clone(), 3).chain(hs).collect()
            } else { hs };
            let samples: Vec<HistogramSample> = hs.into_iter().enumerate().map(|(i, h)| HistogramSample {
                timestamp_ms: 1000 + i as i64 * 15_000,
                histogram: Arc::new(h),
            }).collect();
            let mut b = Vec::new();
            encode_chunk(&samples, &mut b);
            let mut out = Vec::new();
            let mut r = Reader::new(&b);
            prop_assert_eq!(decode_chunk(&mut r, i64::MIN, i64::MAX, &mut out).unwrap(), samples.len());
            prop_assert!(r.is_empty());
            prop_assert_eq!(out.len(), samples.len());
            for (x, y) in out.iter().zip(&samples) {
                prop_assert_eq!(x.timestamp_ms, y.timestamp_ms);
                prop_assert!(bits_eq(&x.histogram, &y.histogram));
            }
        }

        #[test]
        fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut out = Vec::new();
            let _ = decode_chunk(&mut Reader::new(&b), i64::MIN, i64::MAX, &mut out);
        }
    }
}
