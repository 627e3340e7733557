//! Work spread over the query threads: the calling thread does the first
//! item, the others go to a shared pool (rayon's global one, sized by the
//! server at startup), results come back in item order.
//!
//! A pool rather than threads per call: a query may fan out for each
//! selector and range function, and fresh threads cost their start-up and,
//! worse, a cold allocator heap (page faults on every buffer).

use std::sync::{Condvar, Mutex};

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

/// `job` over `items`, results in item order: [`for_each_in_order`] with
/// a helper per item beyond the first, collecting. A panic in any job is
/// resumed here.
pub(crate) fn map_in_order<T, R, F>(items: Vec<T>, job: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let helpers = items.len().saturating_sub(1);
    let mut out = Vec::with_capacity(items.len());
    let done: Result<(), std::convert::Infallible> = for_each_in_order(items, helpers, job, |r| {
        out.push(r);
        Ok(())
    });
    let Ok(()) = done;
    out
}

/// `job` over `items` on the query threads, with `consume` called on the
/// calling thread for each result in item order as soon as it and every
/// earlier one are done: the caller works through the serial part (an
/// aggregation, say) of early items while later ones are still computed,
/// instead of after all of them. The caller takes items too whenever the
/// next result is not ready, so the work completes even when the pool is
/// busy with other queries. The first error of `consume` stops the rest:
/// items not yet started are skipped, and that error is returned once the
/// started ones are done. A panic in any job is resumed here.
pub(crate) fn for_each_in_order<T, R, E, F>(
    items: Vec<T>,
    helpers: usize,
    job: F,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let n = items.len();
    if n <= 1 || helpers == 0 {
        for item in items {
            consume(job(item))?;
        }
        return Ok(());
    }
    let shared = InOrder {
        state: Mutex::new(InOrderState {
            pending: items.into_iter().enumerate(),
            done: std::iter::repeat_with(|| None).take(n).collect(),
        }),
        ready: Condvar::new(),
    };
    let (job, shared) = (&job, &shared);
    rayon_core::in_place_scope(|scope| {
        for _ in 0..helpers.min(n - 1) {
            scope.spawn(move |_| while shared.run_one(job) {});
        }
        for next in 0..n {
            let result = loop {
                let mut st = shared.lock();
                if let Some(r) = st.done[next].take() {
                    break r;
                }
                if let Some((i, item)) = st.pending.next() {
                    drop(st);
                    shared.finish(i, job, item);
                } else {
                    drop(shared.ready.wait(st).expect("BUG: lock poisoned"));
                }
            };
            let stop = match result {
                Ok(r) => consume(r).err().map(Ok),
                Err(panic) => Some(Err(panic)),
            };
            if let Some(stop) = stop {
                // Nothing more starts; the scope waits for what runs.
                shared.lock().pending.by_ref().for_each(drop);
                match stop {
                    Ok(e) => return Err(e),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        }
        Ok(())
    })
}

struct InOrder<T, R> {
    state: Mutex<InOrderState<T, R>>,
    ready: Condvar,
}

struct InOrderState<T, R> {
    pending: std::iter::Enumerate<std::vec::IntoIter<T>>,
    done: Vec<Option<std::thread::Result<R>>>,
}

impl<T, R> InOrder<T, R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, InOrderState<T, R>> {
        self.state.lock().expect("BUG: lock poisoned")
    }

    /// Takes and runs the next item not yet started; false when none is left.
    fn run_one(&self, job: &(impl Fn(T) -> R + Sync)) -> bool {
        let Some((i, item)) = self.lock().pending.next() else {
            return false;
        };
        self.finish(i, job, item);
        true
    }

    /// Runs item `i` and hands its result (or its panic, so that a waiting
    /// caller wakes up rather than waiting forever) to the caller.
    fn finish(&self, i: usize, job: &(impl Fn(T) -> R + Sync), item: T) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(item)));
        self.lock().done[i] = Some(r);
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::{for_each_in_order, map_in_order};

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

    #[test]
    fn results_are_consumed_in_item_order() {
        for helpers in [0, 1, 3] {
            let items: Vec<u64> = (0..32).collect();
            let mut seen = Vec::new();
            let r: Result<(), ()> = for_each_in_order(
                items,
                helpers,
                |i| {
                    std::thread::sleep(std::time::Duration::from_micros((32 - i) * 40));
                    i * 10
                },
                |r| {
                    seen.push(r);
                    Ok(())
                },
            );
            assert_eq!(r, Ok(()));
            assert_eq!(seen, (0..32).map(|i| i * 10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn the_first_error_of_consume_stops_the_items_not_started() {
        let started = std::sync::atomic::AtomicUsize::new(0);
        let mut seen = Vec::new();
        let r = for_each_in_order(
            (0..400u32).collect(),
            1,
            |i| {
                started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(1));
                i
            },
            |i| {
                seen.push(i);
                if i == 5 {
                    Err(format!("stop at {i}"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err("stop at 5".to_string()));
        assert_eq!(seen, (0..=5).collect::<Vec<_>>());
        // The items not started when it stopped never run (all of them
        // would take 400 ms on one thread; it stops after a few).
        assert!(started.into_inner() < 400);
    }

    #[test]
    #[should_panic(expected = "job 3 failed")]
    fn a_panicking_job_of_a_streamed_run_panics_the_caller() {
        let _ = for_each_in_order(
            (0..8).collect::<Vec<u32>>(),
            2,
            |i| {
                assert_ne!(i, 3, "job {i} failed");
                i
            },
            |_| Ok::<(), ()>(()),
        );
    }
}
