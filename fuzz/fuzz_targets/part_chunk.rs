//! One series chunk of a metrics part block (docs/formats/metrics-part-v1.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    miru_storage::fuzzing::decode_chunk(data);
});
