//! OTLP logs export requests, in protobuf and in OTLP/JSON; whatever
//! decodes is translated to streams, each of which has a `service_name`
//! label and at least one entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use miru_ingest::otlp::{OtlpEncoding, decode_logs_request, translate_logs};

fuzz_target!(|data: &[u8]| {
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        if let Ok(req) = decode_logs_request(data, encoding) {
            for s in translate_logs(&req, 0) {
                assert!(s.labels.get("service_name").is_some_and(|v| !v.is_empty()));
                assert!(!s.entries.is_empty());
            }
        }
    }
});
