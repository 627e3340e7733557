//! The uncompressed index of a metrics part (docs/formats/metrics-part-v1.md),
//! read through a part file built around it with a valid footer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    miru_storage::fuzzing::parse_part_index(data);
});
