//! Entry points for the fuzz targets in `fuzz/` (outside the workspace).
//! Not an API: each function feeds arbitrary bytes to one crate-private
//! decoder and throws the result away; only a panic, a hang or a huge
//! allocation is a finding.
#![doc(hidden)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};

use crate::codec::Reader;
use crate::part::{
    FOOTER_LEN, PART_MAGIC, PART_VERSION, PartError, PartIndex, PartName, PartReader,
};
use crate::wal::SEGMENT_MAGIC;

/// Decodes one WAL record payload of type `kind`.
///
/// The record decoder is private to the `wal` module, so this goes through
/// replay: it writes a segment holding one correctly framed record (the
/// CRC matches, so the payload always reaches the decoder) to a scratch
/// directory under the temporary directory, and replays it.
pub fn decode_wal_record(kind: u8, data: &[u8]) {
    let _ = replay_one_record(kind, data);
}

/// Decodes a logs block-filters object and, when it decodes, asks every
/// block about a needle and a metadata pair taken from the same bytes.
pub fn decode_logs_blooms(data: &[u8]) {
    use crate::logs::blooms::{PartBlooms, metadata_keys, needle_keys};
    let split = data.len().min(64);
    let (needle, body) = data.split_at(split);
    let needle = String::from_utf8_lossy(needle);
    let keys = needle_keys(&needle);
    for b in [body, data] {
        if let Ok(f) = PartBlooms::decode(b) {
            for i in 0..f.blocks().min(1024) + 1 {
                let _ = f.may_contain_needle(i, &keys);
                let _ = f.may_contain_all(i, &metadata_keys(&needle, &needle));
            }
        }
    }
}

/// Decodes one series chunk of a part block.
pub fn decode_chunk(data: &[u8]) {
    let mut out = Vec::new();
    let _ = crate::part::decode_chunk(&mut Reader::new(data), i64::MIN, i64::MAX, &mut out);
}

/// Parses `data` as the uncompressed index of a part.
///
/// The index parser is private to the `part::read` module, so this builds a
/// part file around `data` (header magic, the index zstd-compressed, a
/// valid footer) in an in-memory object store and reads its index through
/// [`PartReader::read_index`].
pub fn parse_part_index(data: &[u8]) {
    let _ = read_index_of(data);
}

/// Replays a scratch segment holding one frame; returns how many records
/// decoded (0 or 1).
fn replay_one_record(kind: u8, data: &[u8]) -> u64 {
    static DIR: OnceLock<Mutex<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("miru-fuzz-wal-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("BUG: cannot create the fuzzing WAL directory");
        Mutex::new(d)
    });
    let dir = dir.lock().unwrap_or_else(|e| e.into_inner());
    let mut seg = Vec::with_capacity(SEGMENT_MAGIC.len() + 9 + data.len());
    seg.extend_from_slice(SEGMENT_MAGIC);
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(data);
    seg.extend_from_slice(&(data.len() as u32).to_le_bytes());
    seg.extend_from_slice(&h.finalize().to_le_bytes());
    seg.push(kind);
    seg.extend_from_slice(data);
    std::fs::write(dir.join(crate::wal::segment_file_name(1)), &seg)
        .expect("BUG: cannot write the fuzzing WAL segment");
    let stats = crate::wal::replay(&dir, |_, _| {}).expect("BUG: replay of a scratch segment");
    debug_assert_eq!(
        stats.truncated_bytes, 0,
        "BUG: a well-framed record was cut"
    );
    stats.records
}

fn read_index_of(data: &[u8]) -> Result<PartIndex, PartError> {
    let compressed =
        zstd::bulk::compress(data, 1).expect("BUG: zstd compression of an in-memory buffer");
    let mut file = Vec::with_capacity(PART_MAGIC.len() + compressed.len() + FOOTER_LEN);
    file.extend_from_slice(PART_MAGIC);
    let index_offset = file.len() as u64;
    file.extend_from_slice(&compressed);
    for v in [
        index_offset,
        compressed.len() as u64,
        data.len() as u64,
        0,
        0,
        0,
        0,
    ] {
        file.extend_from_slice(&v.to_le_bytes());
    }
    file.extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
    file.extend_from_slice(&PART_VERSION.to_le_bytes());
    file.extend_from_slice(&0u16.to_le_bytes());
    file.extend_from_slice(PART_MAGIC);
    let name = PartName::parse("fuzz/metrics/1970-01-01/L0_0_0_0_fuzz.mpart")
        .expect("BUG: the fuzzing part name does not parse");
    let size = file.len() as u64;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    futures::executor::block_on(async {
        store
            .put(&Path::from(name.key()), PutPayload::from(file))
            .await
            .expect("BUG: in-memory put failed");
        PartReader::new(store, name, size).read_index().await
    })
}

#[cfg(test)]
mod tests {
    //! The wrappers must keep reaching the decoders when the formats
    //! change; otherwise the fuzz targets would only exercise error paths.
    use super::*;
    use miru_model::{Labels, Sample, TenantId};

    #[test]
    fn wal_wrapper_reaches_the_decoder() {
        let mut b = crate::wal::RecordBuf::default();
        let labels = Labels::from_pairs([("__name__", "up")]);
        b.series(&TenantId::anonymous(), &[(1, &labels)]);
        let (kind, payload) = &b.records[0];
        assert_eq!(replay_one_record(*kind, payload), 1);
        assert_eq!(replay_one_record(*kind, &payload[..payload.len() - 1]), 0);
    }

    #[test]
    fn index_wrapper_reaches_the_parser() {
        let mut w = crate::part::PartWriter::new(1);
        let samples = [Sample {
            timestamp_ms: 1,
            value: 1.0,
        }];
        w.add(&Labels::from_pairs([("__name__", "up")]), &samples);
        w.add(&Labels::from_pairs([("__name__", "up2")]), &samples);
        let (file, _) = w.finish();
        let footer = &file[file.len() - FOOTER_LEN..];
        let u64_at = |i: usize| u64::from_le_bytes(footer[i..i + 8].try_into().unwrap()) as usize;
        let (offset, len, raw_len) = (u64_at(0), u64_at(8), u64_at(16));
        let raw = zstd::bulk::decompress(&file[offset..offset + len], raw_len).unwrap();
        // The wrapper's file has no blocks, so the index parses and only
        // the block check after it fails.
        match read_index_of(&raw) {
            Err(PartError::Corrupt { what, .. }) => assert_eq!(what, "block location out of range"),
            other => panic!("index did not parse: {other:?}"),
        }
        assert_eq!(read_index_of(&[0, 0, 0]).unwrap().series.len(), 0);
    }
}
