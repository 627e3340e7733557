//! Work spread over the query threads: the calling thread does the first
//! item, the others go to a shared pool (rayon's global one, sized by the
//! server at startup), results come back in item order.
//!
//! A pool rather than threads per call: a query may fan out for each
//! selector and range function, and fresh threads cost their start-up and,
//! worse, a cold allocator heap (page faults on every buffer).

/// Sizes the shared pool of query threads (the engine's
/// `EngineOptions::parallelism` caps what one query uses of it). The first
/// call of a process wins; without one, the pool has a thread per core.
pub fn init_query_threads(threads: usize) {
    // An error means the pool exists already (another service in this
    // process, or a query that ran before): it is kept.
    let _ = rayon_core::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("miru-query-{i}"))
        .build_global();
}

/// `job` over `items`, results in item order. One item runs on the
/// calling thread only. A panic in any job is resumed here once all are
/// done.
pub(crate) fn map_in_order<T, R, F>(items: Vec<T>, job: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    if items.len() <= 1 {
        return items.into_iter().map(job).collect();
    }
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let job = &job;
    rayon_core::in_place_scope(|scope| {
        let mut items = items.into_iter();
        let mut slot_iter = slots.iter_mut();
        let (first, first_slot) = (items.next(), slot_iter.next());
        for (item, slot) in items.zip(slot_iter) {
            scope.spawn(move |_| *slot = Some(job(item)));
        }
        if let (Some(item), Some(slot)) = (first, first_slot) {
            *slot = Some(job(item));
        }
    });
    slots
        .into_iter()
        .map(|r| r.expect("BUG: a job of map_in_order did not run"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::map_in_order;

    #[test]
    fn results_keep_item_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..64).collect();
        let out = map_in_order(items, |i| {
            // Early items take longest, so they finish last.
            std::thread::sleep(std::time::Duration::from_micros((64 - i) * 50));
            i * 10
        });
        assert_eq!(out, (0..64).map(|i| i * 10).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "job 3 failed")]
    fn a_panicking_job_panics_the_caller() {
        map_in_order((0..8).collect::<Vec<u32>>(), |i| {
            assert_ne!(i, 3, "job {i} failed");
            i
        });
    }
}
