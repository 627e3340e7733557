//! Loki push bodies: the bytes as JSON, as sent with snappy protobuf, and
//! wrapped in a valid snappy block so that the protobuf decoder and the
//! stream-label parser run; decoded streams always have labels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miru_ingest::loki::{decode_push, parse_stream_labels};

/// The server's default decompressed-body limit.
const LIMIT: usize = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let check = |r: Result<Vec<miru_model::LogStreamWrite>, _>| {
        if let Ok(streams) = r {
            assert!(streams.iter().all(|s| !s.labels.is_empty()));
        }
    };
    check(decode_push(data, Some("application/json"), None, LIMIT));
    check(decode_push(data, Some("application/x-protobuf"), None, LIMIT));
    let block = snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("snappy compression of a fuzz input");
    check(decode_push(&block, None, None, LIMIT));
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_stream_labels(s);
    }
});
