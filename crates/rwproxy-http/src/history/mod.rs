//! The node's recent history: a bounded ring of events (role and primary changes, health
//! verdicts, lag crossing its limits, source errors, the breaker, drain, reloads) and a
//! one-second series of the last hour, served on the admin listener as `/events` and `/series`
//! beside the operator's page (`/`, `/ui`) and its cluster table (`/peers`).
//!
//! Who writes: one observer task ([`observe`]) watches the state channel, the health verdict,
//! the breakers and the drain flag, and samples the metrics' counters once a second. The
//! request path never writes here; it only bumps the counters it bumped before. Other parts of
//! the node (a config reload) may [`History::record`] an event directly.
//!
//! Memory is fixed at start-up: with the defaults (512 events, 3,600 samples) the ring holds at
//! most about 270 KiB (an event is about 110 bytes plus at most 240 bytes of message and its
//! two names) and the series about 510 KiB (144 bytes a sample): under 1 MiB in all.

mod endpoint;
mod event;
mod observer;
mod peers;
mod ring;
mod series;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use rwproxy_core::NodeState;

pub(crate) use endpoint::answer;
pub use event::{Event, EventKind, Happening, Severity, MAX_MESSAGE};
pub use observer::{observe, Observed};
pub use peers::PeerTable;
pub use ring::{Ring, Since, COALESCE_LOOKBACK, COALESCE_WINDOW};
pub use series::{LagLimits, Series, Totals, MAX_DATABASES};

/// How much history a node keeps.
#[derive(Clone, Copy, Debug)]
pub struct HistorySize {
    /// Events in the ring.
    pub events: usize,
    /// One-second samples in the series.
    pub seconds: usize,
}

impl Default for HistorySize {
    /// 512 events and an hour of seconds.
    fn default() -> Self {
        HistorySize {
            events: 512,
            seconds: 3600,
        }
    }
}

/// One node's history; cheap to clone. Written by the observer task, read by the admin
/// listener; the locks are never taken on the request path.
#[derive(Clone, Debug)]
pub struct History(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    node: Arc<str>,
    limits: LagLimits,
    ring: Mutex<Ring>,
    series: Mutex<Series>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl History {
    /// An empty history for node `node` over `databases`, lag drawn against `limits`.
    pub fn new(
        node: Arc<str>,
        databases: &[Arc<str>],
        limits: LagLimits,
        size: HistorySize,
    ) -> Self {
        History(Arc::new(Inner {
            node,
            limits,
            ring: Mutex::new(Ring::new(size.events)),
            series: Mutex::new(Series::new(size.seconds, databases)),
        }))
    }

    /// Records `what` now, coalescing repeats, and writes its log line (`rwproxy::event`).
    pub fn record(&self, what: Happening) {
        self.record_at(what, SystemTime::now());
    }

    fn record_at(&self, what: Happening, at: SystemTime) {
        let mut ring = lock(&self.0.ring);
        let event = ring.record(what, at);
        event::log(&self.0.node, event);
    }

    /// Records one second's sample: the state now and the counters' totals.
    pub fn sample(&self, state: &NodeState, totals: Totals) {
        lock(&self.0.series).record(SystemTime::now(), state, totals);
    }

    /// The events `since` admits, newest first (copies, so the lock is not held by a caller).
    pub fn events(&self, since: Since) -> Vec<Event> {
        lock(&self.0.ring).newest_first(since).cloned().collect()
    }

    /// The lag limits the series is drawn against.
    pub fn limits(&self) -> LagLimits {
        self.0.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_memory_bound_holds() {
        // One event without its heap strings, one sample: the figures the module doc and
        // docs/operations.md give.
        assert!(
            std::mem::size_of::<Event>() <= 112,
            "{}",
            std::mem::size_of::<Event>()
        );
        let per_sample = series::sample_size();
        assert!(per_sample <= 144, "{per_sample}");
        let size = HistorySize::default();
        let worst_event = 112 + MAX_MESSAGE + 2 * 64 + 3 * 16;
        let total = size.events * worst_event + size.seconds * per_sample;
        assert!(total < 1024 * 1024, "{total}");
    }
}
