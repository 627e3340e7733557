use std::sync::Arc;

use bytes::Bytes;
use miru_model::{HistogramSample, Label, Labels, Matcher, Sample};
use object_store::{ObjectStore, ObjectStoreExt, path::Path};

use super::{ChunkKind, FOOTER_LEN, PART_MAGIC, PART_VERSION, PartError, PartName, decode_chunk};
use crate::codec::{CodecError, Reader};
use crate::postings::{Postings, unapplied};

/// Largest index accepted when decompressing (guards against corrupt sizes).
const MAX_INDEX_BYTES: u64 = 4 << 30;

/// The decoded index of one part: its series and where their chunks are.
#[derive(Debug)]
pub struct PartIndex {
    pub series: Vec<IndexedSeries>,
    blocks: Vec<BlockRef>,
    pub samples: u64,
    /// Label postings over positions in `series`, built when decoded.
    postings: Postings,
    /// Rough bytes the decoded index holds, for the index cache.
    pub approx_bytes: usize,
}

#[derive(Debug)]
pub struct IndexedSeries {
    pub labels: Labels,
    pub kind: ChunkKind,
    pub block: u32,
    pub offset: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub count: u32,
}

#[derive(Debug, Clone, Copy)]
struct BlockRef {
    offset: u64,
    len: u64,
    raw_len: u64,
    crc: u32,
}

impl PartIndex {
    /// Compressed size of a block in bytes (0 for a block the index does
    /// not have: reading it fails later with the part's name).
    pub(crate) fn block_len(&self, block: u32) -> u64 {
        self.blocks.get(block as usize).map_or(0, |b| b.len)
    }
}

/// Reads a part from the object store.
#[derive(Debug, Clone)]
pub struct PartReader {
    store: Arc<dyn ObjectStore>,
    pub name: PartName,
    pub size: u64,
}

impl PartReader {
    pub fn new(store: Arc<dyn ObjectStore>, name: PartName, size: u64) -> Self {
        PartReader { store, name, size }
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> PartError {
        PartError::Corrupt {
            path: self.name.key(),
            what: what.into(),
        }
    }

    pub(crate) fn codec(&self, source: CodecError) -> PartError {
        PartError::Codec {
            path: self.name.key(),
            source,
        }
    }

    async fn get(&self, start: u64, end: u64) -> Result<Bytes, PartError> {
        self.store
            .get_range(&Path::from(self.name.key()), start..end)
            .await
            .map_err(|source| PartError::Store {
                path: self.name.key(),
                source,
            })
    }

    pub async fn read_index(&self) -> Result<PartIndex, PartError> {
        if self.size < (PART_MAGIC.len() + FOOTER_LEN) as u64 {
            return Err(self.corrupt(format!("file is {} bytes, too short", self.size)));
        }
        let footer = self.get(self.size - FOOTER_LEN as u64, self.size).await?;
        let mut r = Reader::new(&footer);
        let mut next = || r.u64_le();
        let index_offset = next().map_err(|e| self.codec(e))?;
        let index_len = next().map_err(|e| self.codec(e))?;
        let index_raw_len = next().map_err(|e| self.codec(e))?;
        let _min = next().map_err(|e| self.codec(e))?;
        let _max = next().map_err(|e| self.codec(e))?;
        let _series = next().map_err(|e| self.codec(e))?;
        let samples = next().map_err(|e| self.codec(e))?;
        let crc = r.u32_le().map_err(|e| self.codec(e))?;
        let version = u16::from_le_bytes([footer[60], footer[61]]);
        if &footer[64..72] != PART_MAGIC {
            return Err(self.corrupt("bad magic in footer"));
        }
        if version != PART_VERSION && version != 1 {
            return Err(self.corrupt(format!("unsupported part version {version}")));
        }
        // zstd cannot expand more than this; a larger claim is corruption and
        // must not become an allocation of that size.
        let max_ratio = 1 << 12;
        if index_offset.checked_add(index_len) != Some(self.size - FOOTER_LEN as u64)
            || index_raw_len > MAX_INDEX_BYTES
            || index_raw_len > index_len.saturating_mul(max_ratio)
        {
            return Err(self.corrupt("index location out of range"));
        }
        let compressed = self.get(index_offset, index_offset + index_len).await?;
        if crc32fast::hash(&compressed) != crc {
            return Err(self.corrupt("index checksum mismatch"));
        }
        let raw = zstd::bulk::decompress(&compressed, index_raw_len as usize)
            .map_err(|e| self.corrupt(format!("index decompression: {e}")))?;
        let mut index = parse_index(&raw, version).map_err(|e| self.codec(e))?;
        index.samples = samples;
        for b in &index.blocks {
            if b.offset
                .checked_add(b.len)
                .is_none_or(|end| end > index_offset)
            {
                return Err(self.corrupt("block location out of range"));
            }
        }
        Ok(index)
    }

    pub(crate) async fn read_block(
        &self,
        index: &PartIndex,
        block: u32,
    ) -> Result<Vec<u8>, PartError> {
        let b = self.block_entry(index, block)?;
        let compressed = self.get(b.offset, b.offset + b.len).await?;
        self.decompress_block(index, block, &compressed)
    }

    /// The compressed bytes of `blocks` in one request to the store (one
    /// round trip, and on the local store one thread hand-off and one file
    /// open, instead of one per block); check and decompress each with
    /// [`PartReader::decompress_block`].
    pub(crate) async fn fetch_blocks(
        &self,
        index: &PartIndex,
        blocks: &[u32],
    ) -> Result<Vec<Bytes>, PartError> {
        let mut ranges = Vec::with_capacity(blocks.len());
        for &block in blocks {
            let b = self.block_entry(index, block)?;
            ranges.push(b.offset..b.offset + b.len);
        }
        self.store
            .get_ranges(&Path::from(self.name.key()), &ranges)
            .await
            .map_err(|source| PartError::Store {
                path: self.name.key(),
                source,
            })
    }

    /// Checks one block's compressed bytes against its checksum and
    /// decompresses them.
    pub(crate) fn decompress_block(
        &self,
        index: &PartIndex,
        block: u32,
        compressed: &[u8],
    ) -> Result<Vec<u8>, PartError> {
        let b = self.block_entry(index, block)?;
        if compressed.len() as u64 != b.len || crc32fast::hash(compressed) != b.crc {
            return Err(self.corrupt(format!("block {block} checksum mismatch")));
        }
        decompress(compressed, b.raw_len as usize)
            .map_err(|e| self.corrupt(format!("block {block} decompression: {e}")))
    }

    fn block_entry(&self, index: &PartIndex, block: u32) -> Result<BlockRef, PartError> {
        index
            .blocks
            .get(block as usize)
            .copied()
            .ok_or_else(|| self.corrupt(format!("series refers to missing block {block}")))
    }
}

thread_local! {
    /// One zstd decompression context per thread, reused: creating one per
    /// block was ~3 % of a range query's CPU.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `zstd::bulk::decompress` through this thread's reused context.
fn decompress(compressed: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(compressed, capacity)
    })
}

/// Decodes one chunk of the given kind straight onto the caller's sample
/// vectors (no intermediate copy), keeping samples in `[mint, maxt]`.
pub(crate) fn decode_kind(
    kind: ChunkKind,
    chunk: &[u8],
    mint: i64,
    maxt: i64,
    floats: &mut Vec<Sample>,
    hists: &mut Vec<HistogramSample>,
) -> Result<(), CodecError> {
    let mut r = Reader::new(chunk);
    match kind {
        ChunkKind::Float => decode_chunk(&mut r, mint, maxt, floats)?,
        ChunkKind::Histogram => crate::histogram_codec::decode_chunk(&mut r, mint, maxt, hists)?,
    };
    Ok(())
}

impl PartIndex {
    /// Positions of series matching all matchers and overlapping the
    /// range, ascending (so in label order).
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<usize> {
        let rest = unapplied(matchers);
        let keep = |s: &IndexedSeries| {
            s.min_ts <= maxt && s.max_ts >= mint && rest.iter().all(|m| m.matches(&s.labels))
        };
        match self.postings.candidates(matchers) {
            Some(ids) => ids
                .into_iter()
                .map(|i| i as usize)
                .filter(|&i| keep(&self.series[i]))
                .collect(),
            None => (0..self.series.len())
                .filter(|&i| keep(&self.series[i]))
                .collect(),
        }
    }
}

fn parse_index(raw: &[u8], version: u16) -> Result<PartIndex, CodecError> {
    let mut r = Reader::new(raw);
    let n_sym = r.len("symbol count", raw.len())?;
    let mut symbols: Vec<Arc<str>> = Vec::with_capacity(n_sym);
    for _ in 0..n_sym {
        symbols.push(r.str()?.into());
    }
    let n_blocks = r.len("block count", raw.len())?;
    let mut blocks = Vec::with_capacity(n_blocks);
    for _ in 0..n_blocks {
        blocks.push(BlockRef {
            offset: r.uvarint()?,
            len: r.uvarint()?,
            raw_len: r.len("block size", 1 << 30)? as u64,
            crc: r.u32_le()?,
        });
    }
    let n_series = r.len("series count", raw.len())?;
    let mut series = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        let n_labels = r.len("label count", raw.len())?;
        let mut labels = Vec::with_capacity(n_labels);
        for _ in 0..n_labels {
            let name = symbol(&mut r, &symbols)?;
            let value = symbol(&mut r, &symbols)?;
            labels.push(Label { name, value });
        }
        if !labels.windows(2).all(|w| w[0].name < w[1].name) {
            return Err(CodecError::Range {
                what: "unsorted labels",
                at: r.pos(),
                value: 0,
            });
        }
        if n_blocks == 0 {
            return Err(CodecError::Range {
                what: "series without any block",
                at: r.pos(),
                value: 0,
            });
        }
        let block = r.len("block", n_blocks - 1)? as u32;
        let offset = r.len("offset", 1 << 30)? as u32;
        let min_ts = r.varint()?;
        let max_ts = min_ts.wrapping_add(r.varint()?);
        let count = r.len("count", 1 << 30)? as u32;
        let kind = if version == 1 {
            ChunkKind::Float
        } else {
            let at = r.pos();
            match r.u8()? {
                0 => ChunkKind::Float,
                1 => ChunkKind::Histogram,
                other => {
                    return Err(CodecError::Range {
                        what: "chunk kind",
                        at,
                        value: u64::from(other),
                    });
                }
            }
        };
        series.push(IndexedSeries {
            labels: Labels::from_sorted(labels),
            kind,
            block,
            offset,
            min_ts,
            max_ts,
            count,
        });
    }
    let mut postings = Postings::default();
    for (i, s) in series.iter().enumerate() {
        postings.add(&s.labels, i as u32);
    }
    let approx_bytes = raw.len()
        + series.len() * std::mem::size_of::<IndexedSeries>()
        + series.iter().map(|s| s.labels.len() * 32).sum::<usize>()
        + postings.approx_bytes();
    Ok(PartIndex {
        series,
        blocks,
        samples: 0,
        postings,
        approx_bytes,
    })
}

fn symbol(r: &mut Reader<'_>, symbols: &[Arc<str>]) -> Result<Arc<str>, CodecError> {
    let at = r.pos();
    let i = r.uvarint()?;
    symbols
        .get(i as usize)
        .map(Arc::clone)
        .ok_or(CodecError::Range {
            what: "symbol reference",
            at,
            value: i,
        })
}
