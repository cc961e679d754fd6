//! Independent simulation runs spread over every core.

use std::sync::Mutex;

/// `run(index, item)` for every item, on all cores, the results in the items' order;
/// `done(finished, total)` is called as each run ends.
pub fn map_on_all_cores<T: Send, R: Send>(
    items: Vec<T>,
    run: &(dyn Fn(usize, T) -> R + Sync),
    done: &(dyn Fn(usize, usize) + Sync),
) -> Vec<R> {
    let total = items.len();
    let queue = Mutex::new(items.into_iter().enumerate().rev().collect::<Vec<_>>());
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(total));
    let work = || loop {
        let next = queue.lock().map(|mut q| q.pop()).ok().flatten();
        let Some((i, item)) = next else { break };
        let r = run(i, item);
        if let Ok(mut all) = results.lock() {
            all.push((i, r));
            done(all.len(), total);
        }
    };
    let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
    std::thread::scope(|s| {
        for _ in 1..workers.min(total.max(1)) {
            s.spawn(work);
        }
        work();
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_runs_once_and_results_keep_the_items_order() {
        let calls = AtomicUsize::new(0);
        let out = map_on_all_cores(
            (0..50u64).collect(),
            &|i, x| {
                calls.fetch_add(1, Ordering::Relaxed);
                (i, x * x)
            },
            &|_, _| {},
        );
        assert_eq!(calls.load(Ordering::Relaxed), 50);
        assert!(out
            .iter()
            .enumerate()
            .all(|(k, (i, sq))| *i == k && *sq == (k * k) as u64));
    }
}
