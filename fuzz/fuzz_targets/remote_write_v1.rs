//! Prometheus remote write 1.0 bodies: the bytes as sent (a snappy block,
//! so mostly the snappy decoder), then the same bytes wrapped in a valid
//! snappy block so that the protobuf decoder and the translation run. The
//! hand-written decoder must agree with the prost reference whenever both
//! accept a body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miru_ingest::remote_write::{decode_v1, decode_v1_reference};
use miru_model::WriteBatch;

/// The server's default decompressed-body limit.
const LIMIT: usize = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let _ = decode_v1(data, LIMIT);
    let block = snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("snappy compression of a fuzz input");
    if let (Ok(ours), Ok(reference)) =
        (decode_v1(&block, LIMIT), decode_v1_reference(&block, LIMIT))
    {
        assert!(
            same(&ours, &reference),
            "decode_v1 and decode_v1_reference disagree:\n{ours:?}\n{reference:?}"
        );
    }
});

/// Equality with values compared bit for bit (NaN, stale markers).
fn same(a: &WriteBatch, b: &WriteBatch) -> bool {
    a.series.len() == b.series.len()
        && a.histogram_count() == b.histogram_count()
        && a.metadata == b.metadata
        && a.series.iter().zip(&b.series).all(|(x, y)| {
            x.labels == y.labels
                // Debug text, so that NaN fields compare equal.
                && format!("{:?}", x.histograms) == format!("{:?}", y.histograms)
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
