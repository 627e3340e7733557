//! Prometheus remote write 2.0 bodies: the bytes as sent (a snappy block,
//! so mostly the snappy decoder), then the same bytes wrapped in a valid
//! snappy block so that the protobuf decoder and the translation run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miru_ingest::remote_write::decode_v2;

/// The server's default decompressed-body limit.
const LIMIT: usize = 1 << 24;

fuzz_target!(|data: &[u8]| {
    let _ = decode_v2(data, LIMIT);
    let block = snap::raw::Encoder::new()
        .compress_vec(data)
        .expect("snappy compression of a fuzz input");
    let _ = decode_v2(&block, LIMIT);
});
