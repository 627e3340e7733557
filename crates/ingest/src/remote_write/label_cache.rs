//! Label sets of recently seen series, keyed by the exact protobuf bytes of
//! their label fields in a remote write 1.0 `TimeSeries`.
//!
//! A sender repeats every series in every request, and encodes its labels
//! the same way each time, so most series of a request were decoded before.
//! Decoding a label set means a hash-map probe, a UTF-8 check and an
//! allocation per string, then an allocation for the set and, once the
//! request is done, freeing all of it again: about a fifth of remote write
//! ingest CPU in a profile of the bench's workload. The same bytes always
//! decode to the same labels (decoding is a pure function of them), so a
//! hit returns the earlier result, and the cache is shared by all tenants
//! without leaking anything between them. Only successful decodes are
//! cached; a malformed request takes the full decoder and gets its error.
//!
//! Memory is bounded: the cache is split into shards (fewer lock
//! collisions between worker threads), and a shard that passes its share
//! of [`BUDGET_BYTES`] is emptied and refills with the series that keep
//! coming.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{LazyLock, RwLock};

use miru_model::Labels;

/// Bytes the whole cache may hold, by the estimate of [`cost`].
pub(super) const BUDGET_BYTES: usize = 64 << 20;
const SHARDS: usize = 16;

type Hasher = foldhash::fast::FixedState;

#[derive(Default)]
struct Shard {
    map: HashMap<Box<[u8]>, Labels, Hasher>,
    bytes: usize,
}

pub(super) struct LabelCache {
    shards: Vec<RwLock<Shard>>,
    pick: Hasher,
}

/// What an entry keeps alive: its key, the label array and its strings
/// (strings may be shared with other entries; counted anyway), and the
/// map's slot.
fn cost(raw: &[u8], labels: &Labels) -> usize {
    raw.len() + labels.byte_size() + labels.len() * 48 + 64
}

impl LabelCache {
    fn new() -> Self {
        LabelCache {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            pick: Hasher::with_seed(0x6d69_7275),
        }
    }

    fn shard(&self, raw: &[u8]) -> &RwLock<Shard> {
        // Another seed than the maps' own, so that the keys of one shard
        // still spread over all of its map's buckets and tags.
        let h = self.pick.hash_one(raw);
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    pub(super) fn get(&self, raw: &[u8]) -> Option<Labels> {
        let shard = self.shard(raw).read().unwrap_or_else(|e| e.into_inner());
        shard.map.get(raw).cloned()
    }

    pub(super) fn insert(&self, raw: &[u8], labels: &Labels) {
        let c = cost(raw, labels);
        let mut shard = self.shard(raw).write().unwrap_or_else(|e| e.into_inner());
        if shard.map.contains_key(raw) {
            return;
        }
        if shard.bytes + c > BUDGET_BYTES / SHARDS {
            shard.map = HashMap::default();
            shard.bytes = 0;
        }
        shard.bytes += c;
        shard.map.insert(raw.into(), labels.clone());
    }

    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).bytes)
            .sum()
    }
}

/// The process-wide cache of the remote write 1.0 decoder.
pub(super) static LABEL_CACHE: LazyLock<LabelCache> = LazyLock::new(LabelCache::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_budget_and_keeps_serving() {
        let cache = LabelCache::new();
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "x".repeat(200).as_str())]);
        let per = cost(&[0u8; 24], &labels);
        let n = 2 * BUDGET_BYTES / per;
        for i in 0..n {
            let raw = format!("{i:024}");
            cache.insert(raw.as_bytes(), &labels);
            assert!(cache.bytes() <= BUDGET_BYTES, "{} after {i}", cache.bytes());
        }
        // The newest entries survive the shard resets.
        let last = format!("{:024}", n - 1);
        assert_eq!(cache.get(last.as_bytes()), Some(labels));
        assert_eq!(cache.get(b"never inserted"), None);
    }
}
