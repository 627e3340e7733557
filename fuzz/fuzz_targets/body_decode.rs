//! Request body decompression: gzip, deflate (zlib) and snappy, bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miru_ingest::body::decode_content_encoding;

/// Small enough that an expanding input reaches it now and then.
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for encoding in ["gzip", "deflate", "snappy"] {
        if let Ok(out) = decode_content_encoding(data, Some(encoding), LIMIT) {
            assert!(
                out.len() <= LIMIT,
                "{encoding}: {} bytes over the limit",
                out.len()
            );
        }
    }
});
