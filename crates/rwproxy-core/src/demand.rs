//! A count of requests waiting for this node's position to advance.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts requests currently waiting for a position. The HTTP side enters it while a read waits;
/// cluster sources poll faster while it is non-zero, so a catch-up is seen within milliseconds
/// without a poll loop per request.
#[derive(Clone, Debug, Default)]
pub struct Demand(Arc<AtomicUsize>);

/// Leaves the [`Demand`] when dropped (also when a waiting client disconnects).
#[derive(Debug)]
pub struct DemandGuard(Arc<AtomicUsize>);

impl Demand {
    /// Registers one waiter until the guard is dropped.
    pub fn enter(&self) -> DemandGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        DemandGuard(self.0.clone())
    }

    /// Registers one waiter unless `limit` are already waiting.
    pub fn try_enter(&self, limit: usize) -> Option<DemandGuard> {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| DemandGuard(self.0.clone()))
    }

    /// How many are waiting now.
    pub fn active(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for DemandGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_cap() {
        let d = Demand::default();
        let a = d.enter();
        let b = d.try_enter(2).expect("room for a second");
        assert_eq!(d.active(), 2);
        assert!(d.try_enter(2).is_none());
        drop(a);
        drop(b);
        assert_eq!(d.active(), 0);
    }
}
