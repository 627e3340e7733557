use std::collections::BTreeMap;
use std::sync::Arc;

use miru_model::{HistogramSample, Labels, Sample};

use super::{ChunkKind, FOOTER_LEN, PART_MAGIC, PART_VERSION, encode_chunk};
use crate::codec::{put_str, put_uvarint, put_varint};

/// Uncompressed size at which a block is closed and compressed.
const BLOCK_TARGET_BYTES: usize = 256 << 10;

/// Builds a part file in memory from series given in label order.
pub struct PartWriter {
    zstd_level: i32,
    out: Vec<u8>,
    block: Vec<u8>,
    blocks: Vec<BlockEntry>,
    series: Vec<SeriesEntry>,
    last: Option<(Labels, ChunkKind)>,
    min_ts: i64,
    max_ts: i64,
    samples: u64,
}

struct BlockEntry {
    offset: u64,
    len: u64,
    raw_len: u64,
    crc: u32,
}

struct SeriesEntry {
    labels: Labels,
    kind: ChunkKind,
    block: u32,
    offset: u32,
    min_ts: i64,
    max_ts: i64,
    count: u32,
}

/// What a finished part holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartStats {
    pub series: u64,
    pub samples: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    pub bytes: u64,
}

impl PartWriter {
    pub fn new(zstd_level: i32) -> Self {
        let mut out = Vec::with_capacity(1 << 16);
        out.extend_from_slice(PART_MAGIC);
        PartWriter {
            zstd_level,
            out,
            block: Vec::with_capacity(BLOCK_TARGET_BYTES + (BLOCK_TARGET_BYTES >> 2)),
            blocks: Vec::new(),
            series: Vec::new(),
            last: None,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            samples: 0,
        }
    }

    /// Adds one series' float samples. Series must come in strictly
    /// increasing (labels, kind) order, floats before histograms of the same
    /// labels; samples strictly increasing in time. Empty series are skipped.
    pub fn add(&mut self, labels: &Labels, samples: &[Sample]) {
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let range = (first.timestamp_ms, last.timestamp_ms);
            self.add_chunk(labels, ChunkKind::Float, range, samples.len(), |b| {
                encode_chunk(samples, b)
            });
        }
    }

    /// Adds one series' native histogram samples (same ordering rules).
    pub fn add_histograms(&mut self, labels: &Labels, samples: &[HistogramSample]) {
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let range = (first.timestamp_ms, last.timestamp_ms);
            self.add_chunk(labels, ChunkKind::Histogram, range, samples.len(), |b| {
                crate::histogram_codec::encode_chunk(samples, b)
            });
        }
    }

    fn add_chunk(
        &mut self,
        labels: &Labels,
        kind: ChunkKind,
        (min, max): (i64, i64),
        count: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        debug_assert!(
            self.last
                .as_ref()
                .is_none_or(|(l, k)| (l, *k) < (labels, kind)),
            "BUG: part series out of order"
        );
        if self.block.len() >= BLOCK_TARGET_BYTES {
            self.close_block();
        }
        let offset = self.block.len() as u32;
        encode(&mut self.block);
        self.min_ts = self.min_ts.min(min);
        self.max_ts = self.max_ts.max(max);
        self.samples += count as u64;
        self.series.push(SeriesEntry {
            labels: labels.clone(),
            kind,
            block: self.blocks.len() as u32,
            offset,
            min_ts: min,
            max_ts: max,
            count: count as u32,
        });
        self.last = Some((labels.clone(), kind));
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Time range of what was added so far; `None` when empty.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (!self.is_empty()).then_some((self.min_ts, self.max_ts))
    }

    fn close_block(&mut self) {
        if self.block.is_empty() {
            return;
        }
        let compressed = zstd::bulk::compress(&self.block, self.zstd_level)
            .expect("BUG: zstd compression of an in-memory buffer failed");
        self.blocks.push(BlockEntry {
            offset: self.out.len() as u64,
            len: compressed.len() as u64,
            raw_len: self.block.len() as u64,
            crc: crc32fast::hash(&compressed),
        });
        self.out.extend_from_slice(&compressed);
        self.block.clear();
    }

    /// Writes index and footer and returns the file bytes.
    pub fn finish(mut self) -> (Vec<u8>, PartStats) {
        self.close_block();
        // Symbol table: every label string once, sorted, referenced by index.
        let mut symbols: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        for s in &self.series {
            for l in s.labels.iter() {
                symbols.insert(Arc::clone(&l.name), 0);
                symbols.insert(Arc::clone(&l.value), 0);
            }
        }
        let mut index = Vec::new();
        put_uvarint(&mut index, symbols.len() as u64);
        for (i, (s, slot)) in symbols.iter_mut().enumerate() {
            put_str(&mut index, s);
            *slot = i as u64;
        }
        put_uvarint(&mut index, self.blocks.len() as u64);
        for b in &self.blocks {
            put_uvarint(&mut index, b.offset);
            put_uvarint(&mut index, b.len);
            put_uvarint(&mut index, b.raw_len);
            index.extend_from_slice(&b.crc.to_le_bytes());
        }
        put_uvarint(&mut index, self.series.len() as u64);
        for s in &self.series {
            put_uvarint(&mut index, s.labels.len() as u64);
            for l in s.labels.iter() {
                put_uvarint(&mut index, symbols[&l.name]);
                put_uvarint(&mut index, symbols[&l.value]);
            }
            put_uvarint(&mut index, u64::from(s.block));
            put_uvarint(&mut index, u64::from(s.offset));
            put_varint(&mut index, s.min_ts);
            put_varint(&mut index, s.max_ts.wrapping_sub(s.min_ts));
            put_uvarint(&mut index, u64::from(s.count));
            index.push(s.kind as u8);
        }
        let compressed = zstd::bulk::compress(&index, self.zstd_level)
            .expect("BUG: zstd compression of an in-memory buffer failed");
        let index_offset = self.out.len() as u64;
        self.out.extend_from_slice(&compressed);
        let (min_ts, max_ts) = self.time_range().unwrap_or((0, 0));
        let footer_start = self.out.len();
        for v in [
            index_offset,
            compressed.len() as u64,
            index.len() as u64,
            min_ts as u64,
            max_ts as u64,
            self.series.len() as u64,
            self.samples,
        ] {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
        self.out
            .extend_from_slice(&crc32fast::hash(&compressed).to_le_bytes());
        self.out.extend_from_slice(&PART_VERSION.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes());
        self.out.extend_from_slice(PART_MAGIC);
        debug_assert_eq!(self.out.len() - footer_start, FOOTER_LEN);
        let stats = PartStats {
            series: self.series.len() as u64,
            samples: self.samples,
            min_ts,
            max_ts,
            bytes: self.out.len() as u64,
        };
        (self.out, stats)
    }
}
