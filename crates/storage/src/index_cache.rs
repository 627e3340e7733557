//! Decoded part indexes (metrics part indexes, logs part footers and block
//! filters), kept between queries. Parts are immutable, so an entry never
//! goes stale; it leaves when the cache is over its byte bound (least
//! recently used first) or when its part is deleted.
//!
//! Concurrent queries that miss on the same part wait for one decode
//! instead of each holding their own copy: during an incident every
//! dashboard asks for the same parts at once.

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

struct Entry<V> {
    cell: Arc<OnceCell<Arc<V>>>,
    last_used: u64,
    /// Counted once the index is decoded.
    bytes: usize,
}

pub(crate) struct IndexCache<V> {
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

impl<V: CacheWeight> IndexCache<V> {
    pub(crate) fn new(max_bytes: usize) -> Self {
        IndexCache {
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

    /// Forgets a part (it was deleted).
    pub(crate) fn remove(&self, key: &str) {
        let mut guard = self.lock();
        let s = &mut *guard;
        if let Some(e) = s.entries.remove(key) {
            s.bytes -= e.bytes;
        }
    }

    /// Bytes held by decoded indexes.
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
