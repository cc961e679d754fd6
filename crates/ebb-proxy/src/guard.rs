//! Counters that must come back down: a request's in-flight and waiting counts are raised by
//! a guard and lowered when the guard drops, so a request that ends any way at all (answered,
//! client gone, timed out, panicked) leaves no count behind.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A gauge a guard raises and lowers.
pub trait Gauge: Sync {
    /// One more; the count before it.
    fn up(&self) -> u64;
    /// One fewer.
    fn down(&self);
}

impl Gauge for AtomicU64 {
    fn up(&self) -> u64 {
        self.fetch_add(1, Ordering::AcqRel)
    }
    fn down(&self) {
        self.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gauge for AtomicU32 {
    fn up(&self) -> u64 {
        u64::from(self.fetch_add(1, Ordering::AcqRel))
    }
    fn down(&self) {
        self.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One count held on a gauge until dropped.
#[must_use = "the count is released when this is dropped"]
pub struct Held<'a>(&'a dyn Gauge);

impl<'a> Held<'a> {
    /// Raises `gauge` until the returned guard drops.
    pub fn new(gauge: &'a dyn Gauge) -> Held<'a> {
        gauge.up();
        Held(gauge)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.down();
    }
}

/// One count held on a gauge inside a shared value, for a count that must outlive the
/// borrow that started it: a streamed answer keeps its request in flight until its last byte,
/// long after the handler that counted it has returned.
#[must_use = "the count is released when this is dropped"]
pub struct HeldBy<T: Send + Sync + 'static> {
    owner: std::sync::Arc<T>,
    gauge: fn(&T) -> &dyn Gauge,
}

impl<T: Send + Sync + 'static> HeldBy<T> {
    /// Raises the gauge `gauge` picks out of `owner` until the returned guard drops.
    pub fn new(owner: std::sync::Arc<T>, gauge: fn(&T) -> &dyn Gauge) -> HeldBy<T> {
        HeldBy::counting(owner, gauge).0
    }

    /// [`HeldBy::new`], with the count the gauge held before it: read and raised at once, so
    /// that of requests counted on a replica at the same moment each sees its own place.
    pub fn counting(owner: std::sync::Arc<T>, gauge: fn(&T) -> &dyn Gauge) -> (HeldBy<T>, u64) {
        let before = gauge(&owner).up();
        (HeldBy { owner, gauge }, before)
    }
}

impl<T: Send + Sync + 'static> Drop for HeldBy<T> {
    fn drop(&mut self) {
        (self.gauge)(&self.owner).down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_future_releases_its_count() {
        let g = AtomicU64::new(0);
        let fut = async {
            let _held = Held::new(&g);
            std::future::pending::<()>().await;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = tokio::time::timeout(std::time::Duration::from_millis(5), fut).await;
            assert!(r.is_err());
        });
        assert_eq!(g.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_owned_count_lasts_until_its_guard_drops() {
        struct Owner {
            n: AtomicU32,
        }
        let owner = std::sync::Arc::new(Owner {
            n: AtomicU32::new(0),
        });
        let held = HeldBy::new(owner.clone(), |o| &o.n);
        let again = HeldBy::new(owner.clone(), |o| &o.n);
        assert_eq!(owner.n.load(Ordering::Relaxed), 2);
        drop(held);
        drop(again);
        assert_eq!(owner.n.load(Ordering::Relaxed), 0);
    }

    /// Eight threads counting on one gauge at once each see a place of their own: a slot
    /// taken by one is never also read as free by another.
    #[test]
    fn counts_raised_at_once_each_see_their_own_place() {
        struct Owner {
            n: AtomicU32,
        }
        let owner = std::sync::Arc::new(Owner {
            n: AtomicU32::new(0),
        });
        let mut places: Vec<u64> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let owner = owner.clone();
                    sc.spawn(move || {
                        let (held, before) = HeldBy::counting(owner, |o| &o.n);
                        std::mem::forget(held);
                        before
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        places.sort_unstable();
        assert_eq!(places, (0..8).collect::<Vec<u64>>());
    }
}
