//! OTLP metrics export requests, in protobuf and in OTLP/JSON; whatever
//! decodes is translated to series with the default options and with every
//! option flipped (new options keep their default until listed here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use miru_ingest::otlp::{OtlpEncoding, OtlpOptions, decode_metrics_request, translate_metrics};

fuzz_target!(|data: &[u8]| {
    // `..default()` so that an option added later compiles, with its default.
    #[allow(clippy::needless_update)]
    let flipped = OtlpOptions {
        add_metric_suffixes: false,
        promote_resource_attributes: vec!["service.version".into(), "host.name".into()],
        keep_identifying_resource_attributes: true,
        allow_utf8_names: true,
        promote_scope_metadata: true,
        ..OtlpOptions::default()
    };
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        if let Ok(req) = decode_metrics_request(data, encoding) {
            let _ = translate_metrics(&req, &OtlpOptions::default());
            let _ = translate_metrics(&req, &flipped);
        }
    }
});
