//! A logs block-filters object and queries against it
//! (docs/formats/logs-blooms-v1.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    miru_storage::fuzzing::decode_logs_blooms(data);
});
