//! The scan API: series and samples for matchers and a time range, merged
//! across parts (oldest first), frozen head generations and the active head.
//! Later writes win when timestamps collide, and the result is deduplicated.
//!
//! A scan streams: series are produced one at a time in label order, each
//! decoded from its part blocks only when its turn comes, and charged to a
//! [`ScanBudget`] as it is produced, so a query that would hold too much
//! stops at its limit instead of after loading everything. Matchers go
//! through the postings of the head and of each part's (cached) index.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use miru_model::{
    Exemplar, HistogramSample, Labels, Matcher, MetricMetadata, Sample, TenantId, matches_all,
};

use crate::head::{Frozen, Timestamped, sort_dedup};
use crate::part::{PartIndex, PartReader, decode_kind};
use crate::part_cache::{RawBlock, block_key};
use crate::{Storage, StorageError};

/// One series and its samples, sorted by time without duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    /// Native histogram samples, likewise sorted.
    pub histograms: Vec<HistogramSample>,
}

/// Rough in-memory cost of one histogram sample besides its buckets.
const HISTOGRAM_BASE_BYTES: u64 = 160;

/// Bytes a query holds for these samples (what budgets count).
pub(crate) fn samples_bytes(floats: &[Sample], hists: &[HistogramSample]) -> u64 {
    16 * floats.len() as u64
        + hists
            .iter()
            .map(|h| {
                HISTOGRAM_BASE_BYTES
                    + 8 * (h.histogram.positive_buckets.len() + h.histogram.negative_buckets.len())
                        as u64
            })
            .sum::<u64>()
}

/// Which bound a scan hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanLimit {
    /// More series than allowed.
    Series(u64),
    /// More bytes of labels and samples than allowed.
    Bytes(u64),
}

/// Series and bytes one query may hold, shared by all the scans of the
/// query (one per selector). Zero means no bound. A clone is the same
/// budget (its counters are shared), for reads of one query on several
/// threads.
#[derive(Debug, Default, Clone)]
pub struct ScanBudget {
    max_series: u64,
    max_bytes: u64,
    charged: Arc<Charged>,
}

/// What a budget has been charged, shared by its clones.
#[derive(Debug, Default)]
struct Charged {
    series: AtomicU64,
    bytes: AtomicU64,
    /// Hashes of the log streams charged so far: a log query reads its
    /// range in slices, and a stream counts once however many it is in.
    streams_seen: std::sync::Mutex<HashSet<u64>>,
}

impl ScanBudget {
    pub fn new(max_series: u64, max_bytes: u64) -> Self {
        ScanBudget {
            max_series,
            max_bytes,
            ..ScanBudget::default()
        }
    }

    pub fn unlimited() -> Self {
        ScanBudget::default()
    }

    /// Bytes charged so far.
    pub fn bytes(&self) -> u64 {
        self.charged.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn charge_series(&self) -> Result<(), StorageError> {
        let n = self.charged.series.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_series > 0 && n > self.max_series {
            return Err(StorageError::Limit(ScanLimit::Series(self.max_series)));
        }
        Ok(())
    }

    /// Charges a log stream the first time this query meets it.
    pub(crate) fn charge_stream(&self, labels: &Labels) -> Result<(), StorageError> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(labels);
        let new = self
            .charged
            .streams_seen
            .lock()
            .expect("BUG: scan budget lock poisoned")
            .insert(h);
        if new { self.charge_series() } else { Ok(()) }
    }

    pub(crate) fn charge_bytes(&self, n: u64) -> Result<(), StorageError> {
        let total = self.charged.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if self.max_bytes > 0 && total > self.max_bytes {
            return Err(StorageError::Limit(ScanLimit::Bytes(self.max_bytes)));
        }
        Ok(())
    }
}

/// One ordered source of series during a scan. Every cursor yields
/// ascending labels; the scan merges them.
enum Cursor {
    Part {
        reader: PartReader,
        index: Arc<PartIndex>,
        positions: Vec<usize>,
        at: usize,
        /// The last decompressed block: a part's series are stored in
        /// label order, so consecutive series mostly share it.
        block: Option<(u32, Arc<RawBlock>)>,
        /// Blocks fetched ahead (compressed, ascending), for the series
        /// after the current one: see [`READ_AHEAD_BYTES`].
        ahead: VecDeque<(u32, Bytes)>,
    },
    /// The float or (`histograms`) the histogram series of a generation.
    Frozen {
        frozen: Arc<Frozen>,
        histograms: bool,
        positions: Vec<usize>,
        at: usize,
    },
    Active {
        /// In label order; samples are taken out as the scan passes.
        series: Vec<(Labels, Vec<Sample>, Vec<HistogramSample>)>,
        at: usize,
    },
}

/// Compressed bytes of part blocks one scan shard fetches ahead, shared
/// among its part cursors: when a cursor needs a block it does not hold,
/// it fetches the blocks its next series need in one request, up to its
/// share (at least one block). A block per request costs a round trip on
/// an object store and two thread hand-offs on the local one, more than
/// decoding a sparse selection's chunks; shared, so a scan over many parts
/// holds no more than this (plus a block per part) however many there are.
const READ_AHEAD_BYTES: u64 = 4 << 20;

/// Fewest series (in the largest source) worth a shard of their own: below
/// this, a thread costs more than it saves. Shards run on the process-wide
/// query pool, so a hand-off costs microseconds against the milliseconds
/// of decoding 256 series (at 1,024, selections of 600–1,000 series such as
/// a `predict_linear` over a filesystem metric ran on one core: 35 → 29 ms
/// and 25 → 20 ms on two cores, interleaved runs on the bench's data).
const MIN_SERIES_PER_SHARD: usize = 256;

/// One part of a scan: every source restricted to one label range. The
/// shards of a scan cover disjoint, ascending label ranges, so they can run
/// at once (on threads of their own) and their outputs, concatenated in
/// order, are the whole scan's (see [`Storage::plan_scan`]).
pub struct ScanShard {
    cursors: Vec<Cursor>,
}

impl Cursor {
    fn peek(&self) -> Option<&Labels> {
        (self.len() > 0).then(|| self.labels_at(0))
    }

    /// Series entries left (a series may count twice in a part: float and
    /// histogram entries).
    fn len(&self) -> usize {
        match self {
            Cursor::Part { positions, at, .. } | Cursor::Frozen { positions, at, .. } => {
                positions.len() - at
            }
            Cursor::Active { series, at } => series.len() - at,
        }
    }

    /// Labels of the `i`-th entry left (`i < self.len()`).
    fn labels_at(&self, i: usize) -> &Labels {
        match self {
            Cursor::Part {
                index,
                positions,
                at,
                ..
            } => &index.series[positions[at + i]].labels,
            Cursor::Frozen {
                frozen,
                histograms: false,
                positions,
                at,
            } => &frozen.series[positions[at + i]].0,
            Cursor::Frozen {
                frozen,
                histograms: true,
                positions,
                at,
            } => &frozen.histograms[positions[at + i]].0,
            Cursor::Active { series, at } => &series[at + i].0,
        }
    }

    /// Moves the entries with labels `>= split` into a new cursor.
    fn split_off(&mut self, split: &Labels) -> Cursor {
        // Entries are in label order: binary search for the first `>= split`.
        let (mut keep, mut hi) = (0, self.len());
        while keep < hi {
            let mid = keep + (hi - keep) / 2;
            if self.labels_at(mid) < split {
                keep = mid + 1;
            } else {
                hi = mid;
            }
        }
        match self {
            Cursor::Part {
                reader,
                index,
                positions,
                at,
                ..
            } => Cursor::Part {
                reader: reader.clone(),
                index: Arc::clone(index),
                positions: positions.split_off(*at + keep),
                at: 0,
                block: None,
                ahead: VecDeque::new(),
            },
            Cursor::Frozen {
                frozen,
                histograms,
                positions,
                at,
            } => Cursor::Frozen {
                frozen: Arc::clone(frozen),
                histograms: *histograms,
                positions: positions.split_off(*at + keep),
                at: 0,
            },
            Cursor::Active { series, at } => Cursor::Active {
                series: series.split_off(*at + keep),
                at: 0,
            },
        }
    }

    /// Appends the samples of the series `labels` (the current one) to
    /// `dst` and advances. Returns the bytes copied that still need
    /// charging (the active head's were charged when copied).
    async fn take(
        &mut self,
        storage: &Storage,
        labels: &Labels,
        mint: i64,
        maxt: i64,
        read_ahead: u64,
        dst: &mut (Vec<Sample>, Vec<HistogramSample>),
    ) -> Result<u64, StorageError> {
        let in_range = |t: i64| t >= mint && t <= maxt;
        match self {
            Cursor::Part {
                reader,
                index,
                positions,
                at,
                block,
                ahead,
            } => {
                let (f0, h0) = (dst.0.len(), dst.1.len());
                // A series may have a float and a histogram entry; the
                // first is the current one (its labels were just compared).
                let first = *at;
                while let Some(&p) = positions.get(*at) {
                    let s = &index.series[p];
                    if *at > first && &s.labels != labels {
                        break;
                    }
                    if block.as_ref().is_none_or(|(b, _)| *b != s.block) {
                        let cache = &storage.inner.block_cache;
                        let part_key = reader.name.key();
                        let raw = match cache.peek(&block_key(&part_key, s.block)) {
                            Some(raw) => raw,
                            None => {
                                while ahead.front().is_some_and(|(b, _)| *b < s.block) {
                                    ahead.pop_front();
                                }
                                if ahead.front().is_none_or(|(b, _)| *b != s.block) {
                                    let wanted =
                                        blocks_ahead(index, &positions[*at..], read_ahead, |b| {
                                            cache.contains(&block_key(&part_key, b))
                                        });
                                    let fetched = storage.observe(
                                        "get",
                                        reader.fetch_blocks(index, &wanted).await,
                                    )?;
                                    *ahead = wanted.into_iter().zip(fetched).collect();
                                }
                                let (b, compressed) =
                                    ahead.pop_front().expect("BUG: block just fetched");
                                let raw = reader
                                    .decompress_block(index, b, &compressed)
                                    .map_err(StorageError::from)?;
                                cache.insert(block_key(&part_key, b), RawBlock(raw))
                            }
                        };
                        *block = Some((s.block, raw));
                    }
                    let (_, raw) = block.as_ref().expect("BUG: block just loaded");
                    let chunk = raw
                        .0
                        .get(s.offset as usize..)
                        .ok_or_else(|| reader.corrupt("series offset out of range"))?;
                    decode_kind(s.kind, chunk, mint, maxt, &mut dst.0, &mut dst.1)
                        .map_err(|e| reader.codec(e))?;
                    *at += 1;
                }
                Ok(samples_bytes(&dst.0[f0..], &dst.1[h0..]))
            }
            Cursor::Frozen {
                frozen,
                histograms,
                positions,
                at,
            } => {
                let (f0, h0) = (dst.0.len(), dst.1.len());
                let p = positions[*at];
                if *histograms {
                    let samples = frozen.histograms[p].1.iter();
                    dst.1
                        .extend(samples.filter(|s| in_range(s.timestamp_ms)).cloned());
                } else {
                    let samples = frozen.series[p].1.iter();
                    dst.0.extend(samples.filter(|s| in_range(s.timestamp_ms)));
                }
                *at += 1;
                Ok(samples_bytes(&dst.0[f0..], &dst.1[h0..]))
            }
            Cursor::Active { series, at } => {
                let (_, f, h) = &mut series[*at];
                // Often the only source of a series: move, not copy.
                append_or_move(&mut dst.0, std::mem::take(f));
                append_or_move(&mut dst.1, std::mem::take(h));
                *at += 1;
                Ok(0)
            }
        }
    }
}

/// The distinct blocks the entries at `positions` need, in order, up to
/// `max_bytes` of compressed bytes (at least the first, which the caller
/// does not hold), leaving out those `cached` holds. A part's entries are
/// stored in position order, so their blocks ascend.
fn blocks_ahead(
    index: &PartIndex,
    positions: &[usize],
    max_bytes: u64,
    cached: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut blocks: Vec<u32> = Vec::new();
    let mut bytes = 0;
    let mut last = None;
    for &p in positions {
        let b = index.series[p].block;
        if last == Some(b) {
            continue;
        }
        last = Some(b);
        if !blocks.is_empty() && cached(b) {
            continue;
        }
        if !blocks.is_empty() && bytes + index.block_len(b) > max_bytes {
            break;
        }
        bytes += index.block_len(b);
        blocks.push(b);
    }
    blocks
}

fn append_or_move<T>(dst: &mut Vec<T>, mut src: Vec<T>) {
    if dst.is_empty() {
        *dst = src;
    } else {
        dst.append(&mut src);
    }
}

/// Splits a scan's cursors into at most `max_shards` shards of about equal
/// size, at labels taken from the largest source.
fn into_shards(mut cursors: Vec<Cursor>, max_shards: usize) -> Vec<ScanShard> {
    let Some(largest) = cursors.iter().max_by_key(|c| c.len()) else {
        return vec![ScanShard { cursors }];
    };
    let n = max_shards.min(largest.len() / MIN_SERIES_PER_SHARD).max(1);
    let mut splits: Vec<Labels> = (1..n)
        .map(|j| largest.labels_at(largest.len() * j / n).clone())
        .collect();
    splits.dedup();
    let mut shards = Vec::with_capacity(splits.len() + 1);
    for split in &splits {
        let tail: Vec<Cursor> = cursors.iter_mut().map(|c| c.split_off(split)).collect();
        let head = std::mem::replace(&mut cursors, tail);
        shards.push(ScanShard {
            cursors: head.into_iter().filter(|c| c.len() > 0).collect(),
        });
    }
    shards.push(ScanShard { cursors });
    shards
}

/// Positions in a frozen generation's label-sorted list of series that
/// match and have samples (sorted by time) in `[mint, maxt]`.
fn frozen_positions<T: Timestamped>(
    list: &[(Labels, Vec<T>)],
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<usize> {
    let overlaps = |v: &[T]| {
        let i = v.partition_point(|s| s.ts() < mint);
        i < v.len() && v[i].ts() <= maxt
    };
    list.iter()
        .enumerate()
        .filter(|(_, (l, v))| overlaps(v) && matches_all(matchers, l))
        .map(|(i, _)| i)
        .collect()
}

impl Storage {
    fn parts_for(&self, tenant: &TenantId, mint: i64, maxt: i64) -> Vec<PartReader> {
        let entries = self
            .inner
            .catalog
            .lock()
            .expect("BUG: catalog lock poisoned")
            .overlapping(tenant, mint, maxt);
        entries
            .into_iter()
            .map(|e| PartReader::new(std::sync::Arc::clone(&self.inner.store), e.name, e.size))
            .collect()
    }

    /// The decoded index of a part, through the index cache.
    async fn part_index(&self, p: &PartReader) -> Result<Arc<PartIndex>, StorageError> {
        // Counted as a store read only when it is one (not a cache hit).
        let index = self
            .inner
            .index_cache
            .get(p.name.key(), || async {
                self.observe("get", p.read_index().await)
            })
            .await;
        Ok(index?)
    }

    /// Bytes the part index cache holds.
    pub fn index_cache_bytes(&self) -> usize {
        self.inner.index_cache.bytes()
    }

    /// Bytes the decompressed block cache holds.
    pub fn block_cache_bytes(&self) -> usize {
        self.inner.block_cache.bytes()
    }

    /// Samples of every matching series in `[mint, maxt]` (milliseconds, inclusive).
    pub async fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let mut out = Vec::new();
        self.scan(
            tenant,
            matchers,
            mint,
            maxt,
            &ScanBudget::unlimited(),
            |s| out.push(s),
        )
        .await?;
        Ok(out)
    }

    /// Calls `visit` with every matching series that has samples in
    /// `[mint, maxt]`, in label order, one at a time (see the module
    /// comment). Fails with [`StorageError::Limit`] when `budget` runs out.
    pub async fn scan(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        budget: &ScanBudget,
        mut visit: impl FnMut(SeriesSamples),
    ) -> Result<(), StorageError> {
        let mut visit = |s| {
            visit(s);
            ControlFlow::Continue(())
        };
        for shard in self
            .plan_scan(tenant, matchers, mint, maxt, budget, 1)
            .await?
        {
            self.scan_shard(shard, mint, maxt, budget, &mut visit)
                .await?;
        }
        Ok(())
    }

    /// Prepares the scan of [`Storage::scan`] in at most `max_shards`
    /// shards over disjoint label ranges, so that decoding, the bulk of a
    /// scan, can use several cores: run each with [`Storage::scan_shard`]
    /// (at once, on threads of their own) and concatenate their outputs in
    /// shard order. Part indexes are loaded and the head's samples copied
    /// (and charged to `budget`) here; the shards read and decode the part
    /// blocks. Small scans get one shard.
    pub async fn plan_scan(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        budget: &ScanBudget,
        max_shards: usize,
    ) -> Result<Vec<ScanShard>, StorageError> {
        // Sources oldest first: on equal timestamps the last one wins.
        let mut cursors = Vec::new();
        for reader in self.parts_for(tenant, mint, maxt) {
            let index = self.part_index(&reader).await?;
            let positions = index.select(matchers, mint, maxt);
            if !positions.is_empty() {
                cursors.push(Cursor::Part {
                    reader,
                    index,
                    positions,
                    at: 0,
                    block: None,
                    ahead: VecDeque::new(),
                });
            }
        }
        let head = self.read_heads().get(tenant).map(Arc::clone);
        if let Some(h) = head {
            let sel = h
                .lock()
                .expect("BUG: head lock poisoned")
                .select_for_scan(matchers, mint, maxt, budget)?;
            for frozen in sel.frozen {
                let floats = frozen_positions(&frozen.series, matchers, mint, maxt);
                let hists = frozen_positions(&frozen.histograms, matchers, mint, maxt);
                for (histograms, positions) in [(false, floats), (true, hists)] {
                    if !positions.is_empty() {
                        cursors.push(Cursor::Frozen {
                            frozen: Arc::clone(&frozen),
                            histograms,
                            positions,
                            at: 0,
                        });
                    }
                }
            }
            if !sel.active.is_empty() {
                cursors.push(Cursor::Active {
                    series: sel.active,
                    at: 0,
                });
            }
        }
        Ok(into_shards(cursors, max_shards))
    }

    /// Runs one shard of a scan planned by [`Storage::plan_scan`] with the
    /// same `mint`, `maxt` and `budget`: calls `visit` with its series in
    /// label order, until it breaks.
    pub async fn scan_shard(
        &self,
        shard: ScanShard,
        mint: i64,
        maxt: i64,
        budget: &ScanBudget,
        mut visit: impl FnMut(SeriesSamples) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let mut cursors = shard.cursors;
        let parts = cursors
            .iter()
            .filter(|c| matches!(c, Cursor::Part { .. }))
            .count();
        let read_ahead = READ_AHEAD_BYTES / parts.max(1) as u64;
        let mut at_min = Vec::with_capacity(cursors.len());
        // Series of one scan hold similar numbers of samples: start each
        // with room for as many as the previous one.
        let mut room = 0;
        loop {
            // The smallest current labels and the cursors holding them, in
            // one linear pass (few cursors: that beats a heap, and each
            // cursor's labels are compared once).
            at_min.clear();
            let mut min: Option<&Labels> = None;
            for (i, c) in cursors.iter().enumerate() {
                let Some(l) = c.peek() else { continue };
                match min.map(|m| l.cmp(m)) {
                    None | Some(std::cmp::Ordering::Less) => {
                        min = Some(l);
                        at_min.clear();
                        at_min.push(i);
                    }
                    Some(std::cmp::Ordering::Equal) => at_min.push(i),
                    Some(std::cmp::Ordering::Greater) => {}
                }
            }
            let Some(labels) = min.cloned() else {
                return Ok(());
            };
            // Not when only the active head holds the series: its vector
            // is moved in whole, and the room would be allocated for nothing.
            let only_active = matches!(cursors[at_min[0]], Cursor::Active { .. });
            let mut samples = (
                Vec::with_capacity(if only_active { 0 } else { room }),
                Vec::new(),
            );
            let mut bytes = 0;
            for &i in &at_min {
                bytes += cursors[i]
                    .take(self, &labels, mint, maxt, read_ahead, &mut samples)
                    .await?;
            }
            let (mut floats, mut hists) = samples;
            // A part's or a frozen generation's samples are sorted without
            // duplicates; the active head may hold out-of-order samples, and
            // several sources interleave.
            if at_min.len() > 1 || only_active {
                sort_dedup(&mut floats);
                sort_dedup(&mut hists);
            }
            room = floats.len();
            if floats.is_empty() && hists.is_empty() {
                continue;
            }
            budget.charge_series()?;
            budget.charge_bytes(bytes + labels.byte_size() as u64)?;
            if visit(SeriesSamples {
                labels,
                samples: floats,
                histograms: hists,
            })
            .is_break()
            {
                return Ok(());
            }
        }
    }

    /// Label sets of matching series with data in `[mint, maxt]`, sorted.
    pub async fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let mut out: HashSet<Labels> = HashSet::new();
        for p in self.parts_for(tenant, mint, maxt) {
            let index = self.part_index(&p).await?;
            for pos in index.select(matchers, mint, maxt) {
                out.insert(index.series[pos].labels.clone());
            }
        }
        if let Some(h) = self.read_heads().get(tenant) {
            h.lock()
                .expect("BUG: head lock poisoned")
                .select_series(matchers, mint, maxt, &mut out);
        }
        let mut v: Vec<Labels> = out.into_iter().collect();
        v.sort();
        Ok(v)
    }

    pub fn exemplars(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> BTreeMap<Labels, Vec<Exemplar>> {
        self.read_heads()
            .get(tenant)
            .map(|h| {
                h.lock()
                    .expect("BUG: head lock poisoned")
                    .select_exemplars(matchers, mint, maxt)
            })
            .unwrap_or_default()
    }

    pub fn metadata(&self, tenant: &TenantId) -> Vec<MetricMetadata> {
        self.read_heads()
            .get(tenant)
            .map(|h| h.lock().expect("BUG: head lock poisoned").metadata())
            .unwrap_or_default()
    }

    pub(crate) fn observe<T, E>(&self, op: &'static str, r: Result<T, E>) -> Result<T, E> {
        self.inner.observer.object_store_op(op, r.is_ok());
        r
    }
}
