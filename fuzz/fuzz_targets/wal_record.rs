//! WAL record payloads (docs/formats/wal-v1.md): the first byte picks the
//! record type (0 is unknown, 1..=4 the defined ones), the rest is the
//! payload, framed with a valid CRC so that it always reaches the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&kind, payload)) = data.split_first() {
        miru_storage::fuzzing::decode_wal_record(kind % 5, payload);
    }
});
