//! What queries decode from parts and keep between queries: part indexes
//! (metrics part indexes, logs part footers and block filters) and
//! decompressed metrics part blocks. Parts are immutable, so an entry never
//! goes stale; it leaves when the cache is over its byte bound (least
//! recently used first) or when its part is deleted.
//!
//! Concurrent queries that miss on the same index wait for one decode
//! instead of each holding their own copy: during an incident every
//! dashboard asks for the same parts at once. Blocks are read ahead in
//! batches by each scan, so they are looked up ([`PartCache::peek`]) and
//! added ([`PartCache::insert`]) one by one instead.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// What a cached value costs in memory.
pub(crate) trait CacheWeight {
    fn approx_bytes(&self) -> usize;
}

impl CacheWeight for crate::part::PartIndex {
    fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }
}

/// A decompressed metrics part block (its series chunks end to end).
pub(crate) struct RawBlock(pub(crate) Vec<u8>);

impl CacheWeight for RawBlock {
    fn approx_bytes(&self) -> usize {
        self.0.capacity()
    }
}

/// The cache key of block `block` of the part stored at `part_key`.
pub(crate) fn block_key(part_key: &str, block: u32) -> String {
    format!("{}{block}", blocks_prefix(part_key))
}

/// What the cache keys of every block of the part at `part_key` start with.
pub(crate) fn blocks_prefix(part_key: &str) -> String {
    format!("{part_key}#")
}

struct Entry<V> {
    cell: Arc<OnceCell<Arc<V>>>,
    last_used: u64,
    /// Counted once the index is decoded.
    bytes: usize,
}

pub(crate) struct PartCache<V> {
    max_bytes: usize,
    state: Mutex<State<V>>,
}

struct State<V> {
    entries: HashMap<String, Entry<V>>,
    bytes: usize,
    tick: u64,
}

impl<V> Default for State<V> {
    fn default() -> Self {
        State {
            entries: HashMap::new(),
            bytes: 0,
            tick: 0,
        }
    }
}

impl<V: CacheWeight> PartCache<V> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        PartCache {
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<V>> {
        self.state.lock().expect("BUG: index cache lock poisoned")
    }

    /// The value for `key`, from the cache or loaded once by `load`.
    pub(crate) async fn get<E, F, Fut>(&self, key: String, load: F) -> Result<Arc<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = {
            let mut s = self.lock();
            s.tick += 1;
            let tick = s.tick;
            let e = s.entries.entry(key.clone()).or_insert_with(|| Entry {
                cell: Arc::new(OnceCell::new()),
                last_used: tick,
                bytes: 0,
            });
            e.last_used = tick;
            Arc::clone(&e.cell)
        };
        if let Some(index) = cell.get() {
            return Ok(Arc::clone(index));
        }
        let index = cell
            .get_or_try_init(|| async { load().await.map(Arc::new) })
            .await;
        let index = match index {
            Ok(i) => Arc::clone(i),
            Err(e) => {
                // Do not keep a failed entry; the next query retries.
                let mut s = self.lock();
                if s.entries
                    .get(&key)
                    .is_some_and(|x| Arc::ptr_eq(&x.cell, &cell))
                {
                    s.entries.remove(&key);
                }
                return Err(e);
            }
        };
        // The first caller past the decode counts the entry's bytes.
        let mut guard = self.lock();
        let s = &mut *guard;
        if let Some(e) = s.entries.get_mut(&key)
            && Arc::ptr_eq(&e.cell, &cell)
            && e.bytes == 0
        {
            e.bytes = index.approx_bytes().max(1);
            s.bytes += e.bytes;
            s.evict(self.max_bytes);
        }
        Ok(index)
    }

    /// The value for `key` if it is cached (and loaded).
    pub(crate) fn peek(&self, key: &str) -> Option<Arc<V>> {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.tick += 1;
        let e = s.entries.get_mut(key)?;
        let v = Arc::clone(e.cell.get()?);
        e.last_used = s.tick;
        Some(v)
    }

    /// Whether `key` is cached (and loaded), without counting as a use.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.lock()
            .entries
            .get(key)
            .is_some_and(|e| e.cell.initialized())
    }

    /// Caches `value` under `key` and returns it, or the value already
    /// cached there (another query decoded it first).
    pub(crate) fn insert(&self, key: String, value: V) -> Arc<V> {
        let mut guard = self.lock();
        let s = &mut *guard;
        s.tick += 1;
        if let Some(e) = s.entries.get_mut(&key)
            && let Some(v) = e.cell.get()
        {
            e.last_used = s.tick;
            return Arc::clone(v);
        }
        let value = Arc::new(value);
        let bytes = value.approx_bytes().max(1);
        let entry = Entry {
            cell: Arc::new(OnceCell::new_with(Some(Arc::clone(&value)))),
            last_used: s.tick,
            bytes,
        };
        // A loader of `get` may still hold the replaced (empty) cell; it
        // then keeps its value to itself, as on an eviction.
        if let Some(old) = s.entries.insert(key, entry) {
            s.bytes -= old.bytes;
        }
        s.bytes += bytes;
        s.evict(self.max_bytes);
        value
    }

    /// Forgets every entry whose key starts with `prefix` (the blocks of a
    /// deleted part).
    pub(crate) fn remove_prefix(&self, prefix: &str) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut freed = 0;
        s.entries.retain(|k, e| {
            let keep = !k.starts_with(prefix);
            if !keep {
                freed += e.bytes;
            }
            keep
        });
        s.bytes -= freed;
    }

    /// Forgets a part (it was deleted).
    pub(crate) fn remove(&self, key: &str) {
        let mut guard = self.lock();
        let s = &mut *guard;
        if let Some(e) = s.entries.remove(key) {
            s.bytes -= e.bytes;
        }
    }

    /// Bytes the cached values hold.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl<V> State<V> {
    fn evict(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .filter(|(_, e)| e.bytes > 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> RawBlock {
        RawBlock(vec![7; n])
    }

    #[test]
    fn inserted_blocks_are_found_until_evicted_least_recently_used_first() {
        let c: PartCache<RawBlock> = PartCache::new(250);
        c.insert(block_key("p1", 0), block(100));
        c.insert(block_key("p1", 1), block(100));
        assert!(c.peek("p1#0").is_some(), "a use makes p1#0 the newest");
        c.insert(block_key("p2", 0), block(100));
        assert!(c.contains("p1#0") && c.contains("p2#0"));
        assert!(!c.contains("p1#1"), "the least recently used goes first");
        assert_eq!(c.bytes(), 200);
        assert!(c.peek("p3#0").is_none());
    }

    #[test]
    fn a_second_insert_returns_the_first_value() {
        let c: PartCache<RawBlock> = PartCache::new(1 << 20);
        let a = c.insert("k".into(), block(10));
        let b = c.insert("k".into(), block(20));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(c.bytes(), 10);
    }

    #[test]
    fn removing_a_part_frees_its_blocks_only() {
        let c: PartCache<RawBlock> = PartCache::new(1 << 20);
        c.insert(block_key("a/p1", 0), block(10));
        c.insert(block_key("a/p1", 1), block(10));
        c.insert(block_key("a/p10", 0), block(10));
        c.remove_prefix(&blocks_prefix("a/p1"));
        assert!(!c.contains("a/p1#0") && !c.contains("a/p1#1"));
        assert!(c.contains("a/p10#0"), "a part whose name extends it stays");
        assert_eq!(c.bytes(), 10);
    }

    #[test]
    fn a_value_larger_than_the_bound_is_returned_but_not_kept() {
        let c: PartCache<RawBlock> = PartCache::new(50);
        let v = c.insert("big".into(), block(100));
        assert_eq!(v.0.len(), 100);
        assert!(!c.contains("big"));
        assert_eq!(c.bytes(), 0);
    }
}
