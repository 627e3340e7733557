//! Live tails: every accepted log push is offered to the open tails of its
//! tenant whose stream selector matches (Loki's ingester tailers). Each
//! tail has a bounded queue; when a slow client lets it fill, the entries
//! that did not fit are recorded as dropped (reported to the client as
//! Loki's `dropped_entries`), so a tail never holds back ingestion nor
//! grows without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use miru_model::{Labels, LogStreamWrite, Matcher, TenantId};
use tokio::sync::mpsc;

/// Batches a tail may have queued before new ones are dropped.
const QUEUE_BATCHES: usize = 64;
/// Dropped entries remembered per tail between two messages (as Loki).
const MAX_DROPPED_REMEMBERED: usize = 1000;

/// A dropped entry: its stream and time.
pub type Dropped = (Labels, i64);

struct Subscriber {
    id: u64,
    tenant: TenantId,
    matchers: Vec<Matcher>,
    tx: mpsc::Sender<Arc<Vec<LogStreamWrite>>>,
    dropped: Arc<Mutex<Vec<Dropped>>>,
}

/// The open tails of every tenant.
#[derive(Default)]
pub struct TailHub {
    subscribers: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
}

/// An open tail: its queue of matching pushes and what did not fit. The
/// tail is closed when this is dropped.
pub struct TailSubscription {
    hub: Arc<TailHub>,
    id: u64,
    pub rx: mpsc::Receiver<Arc<Vec<LogStreamWrite>>>,
    dropped: Arc<Mutex<Vec<Dropped>>>,
}

impl TailHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers
            .lock()
            .expect("BUG: tail hub lock poisoned")
    }

    /// Opens a tail for the tenant's streams matching `matchers`, unless
    /// the tenant already has `max_per_tenant` open (0: no limit).
    pub fn subscribe(
        self: &Arc<Self>,
        tenant: &TenantId,
        matchers: Vec<Matcher>,
        max_per_tenant: usize,
    ) -> Result<TailSubscription, String> {
        let mut subs = self.lock();
        let open = subs.iter().filter(|s| &s.tenant == tenant).count();
        if max_per_tenant > 0 && open >= max_per_tenant {
            return Err(format!(
                "max concurrent tail requests limit exceeded, count > limit ({} > {max_per_tenant}) (query.max_concurrent_tail_requests)",
                open + 1
            ));
        }
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(Mutex::new(Vec::new()));
        subs.push(Subscriber {
            id,
            tenant: tenant.clone(),
            matchers,
            tx,
            dropped: Arc::clone(&dropped),
        });
        Ok(TailSubscription {
            hub: Arc::clone(self),
            id,
            rx,
            dropped,
        })
    }

    /// Offers accepted streams to the tenant's tails. Cheap when nobody
    /// tails: one lock and an empty scan.
    pub fn publish(&self, tenant: &TenantId, streams: &[LogStreamWrite]) {
        let subs = self.lock();
        for s in subs.iter().filter(|s| &s.tenant == tenant) {
            let wanted: Vec<LogStreamWrite> = streams
                .iter()
                .filter(|w| {
                    !w.entries.is_empty() && miru_model::matches_all(&s.matchers, &w.labels)
                })
                .cloned()
                .collect();
            if wanted.is_empty() {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(batch)) = s.tx.try_send(Arc::new(wanted)) {
                let mut d = s.dropped.lock().expect("BUG: dropped lock poisoned");
                for w in batch.iter() {
                    for e in &w.entries {
                        if d.len() < MAX_DROPPED_REMEMBERED {
                            d.push((w.labels.clone(), e.timestamp_ns));
                        }
                    }
                }
            }
        }
    }

    /// Whether any tail is open for the tenant (so a push needs to keep a
    /// copy of its streams).
    pub fn has_tails(&self, tenant: &TenantId) -> bool {
        self.lock().iter().any(|s| &s.tenant == tenant)
    }
}

impl TailSubscription {
    /// Entries dropped since the last call.
    pub fn take_dropped(&self) -> Vec<Dropped> {
        std::mem::take(&mut *self.dropped.lock().expect("BUG: dropped lock poisoned"))
    }
}

impl Drop for TailSubscription {
    fn drop(&mut self) {
        self.hub.lock().retain(|s| s.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miru_model::{LogEntry, MatchOp};

    fn push(app: &str, n: usize) -> Vec<LogStreamWrite> {
        vec![LogStreamWrite {
            labels: Labels::from_pairs([("app", app)]),
            entries: (0..n)
                .map(|i| LogEntry {
                    timestamp_ns: i as i64,
                    line: format!("line {i}"),
                    structured_metadata: Vec::new(),
                })
                .collect(),
        }]
    }

    #[test]
    fn tails_get_their_tenants_matching_streams_and_count_what_does_not_fit() {
        let hub = Arc::new(TailHub::default());
        let t = TenantId::new("t").unwrap();
        let api = vec![Matcher::new("app", MatchOp::Equal, "api").unwrap()];
        let mut sub = hub.subscribe(&t, api.clone(), 2).unwrap();
        let _second = hub.subscribe(&t, api.clone(), 2).unwrap();
        let e = hub.subscribe(&t, api.clone(), 2).err().unwrap();
        assert!(e.contains("max concurrent tail requests"), "{e}");
        assert!(hub.subscribe(&TenantId::new("u").unwrap(), api, 2).is_ok());

        hub.publish(&t, &push("db", 1));
        hub.publish(&TenantId::new("u").unwrap(), &push("api", 1));
        hub.publish(&t, &push("api", 2));
        let got = sub.rx.try_recv().unwrap();
        assert_eq!(got[0].entries.len(), 2);
        assert!(
            sub.rx.try_recv().is_err(),
            "other tenants and streams stay out"
        );

        for _ in 0..QUEUE_BATCHES + 3 {
            hub.publish(&t, &push("api", 1));
        }
        assert_eq!(sub.take_dropped().len(), 3);
        assert!(sub.take_dropped().is_empty());
        drop(sub);
        assert!(
            hub.subscribe(&t, Vec::new(), 2).is_ok(),
            "a closed tail frees its slot"
        );
    }
}
