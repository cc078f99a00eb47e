//! Whether a replica is fresh enough to serve reads itself, with hysteresis so that a node
//! hovering near `reads.max_lag` does not flip between local and forwarded on every poll.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rwproxy_core::{NodeState, Role};

/// Tracks read freshness. A fresh node turns stale when its lag exceeds `max_lag`; a stale node
/// turns fresh again only once its lag is at or below `recover_at` (80% of `max_lag`).
#[derive(Debug)]
pub struct Freshness {
    max_lag: Duration,
    recover_at: Duration,
    fresh: AtomicBool,
}

impl Freshness {
    /// A tracker for `max_lag`, starting stale (nothing is known yet).
    pub fn new(max_lag: Duration) -> Self {
        Freshness {
            max_lag,
            recover_at: max_lag.mul_f64(0.8),
            fresh: AtomicBool::new(false),
        }
    }

    /// A tracker for a new `max_lag` (a reload) that starts where this one is, so a fresh
    /// replica does not forward its reads until it proves it caught up again.
    pub fn with_max_lag(&self, max_lag: Duration) -> Self {
        let next = Freshness::new(max_lag);
        next.fresh
            .store(self.fresh.load(Ordering::Relaxed), Ordering::Relaxed);
        next
    }

    /// Folds in the current state and says whether local reads are allowed. Unknown lag, an
    /// unknown role and a node that is not ready are always stale.
    pub fn observe(&self, state: &NodeState) -> bool {
        let lag = match (state.role, state.lag, state.ready) {
            (Role::Primary, _, _) => return true,
            (Role::Unknown, _, _) | (_, None, _) | (_, _, false) => {
                self.fresh.store(false, Ordering::Relaxed);
                return false;
            }
            (Role::Replica, Some(lag), true) => lag,
        };
        let was_fresh = self.fresh.load(Ordering::Relaxed);
        let now_fresh = if was_fresh {
            lag <= self.max_lag
        } else {
            lag <= self.recover_at
        };
        if now_fresh != was_fresh {
            self.fresh.store(now_fresh, Ordering::Relaxed);
            tracing::info!(
                lag_ms = lag.as_millis() as u64,
                max_lag_ms = self.max_lag.as_millis() as u64,
                "{}",
                if now_fresh {
                    "replica caught up: serving reads locally"
                } else {
                    stale_message(state.remote_primary().is_some())
                }
            );
        }
        now_fresh
    }
}

/// The log line for a replica turning stale: its reads go to the primary only when one is
/// known; without one they follow `reads.when_stale` (`forward` then has nowhere to go and
/// answers 503 `stale`).
fn stale_message(primary_known: bool) -> &'static str {
    if primary_known {
        "replica lag over threshold: reads leave this node"
    } else {
        "replica lag over threshold and no primary is known: stale reads follow \
         reads.when_stale (forward answers 503 stale)"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stale_line_says_where_reads_go() {
        assert!(super::stale_message(true).contains("reads leave this node"));
        assert!(!super::stale_message(false).contains("leave this node"));
        assert!(super::stale_message(false).contains("no primary"));
    }

    use super::*;
    use rwproxy_core::Positions;

    fn replica(lag_ms: Option<u64>) -> NodeState {
        NodeState {
            role: Role::Replica,
            primary: Some("p".into()),
            positions: Positions::new(),
            lag: lag_ms.map(Duration::from_millis),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    #[test]
    fn hysteresis_between_eighty_and_hundred_percent() {
        let f = Freshness::new(Duration::from_secs(5));
        assert!(f.observe(&replica(Some(100))));
        assert!(
            f.observe(&replica(Some(5000))),
            "at the threshold is still fresh"
        );
        assert!(!f.observe(&replica(Some(5001))));
        assert!(
            !f.observe(&replica(Some(4500))),
            "must fall to 80% before recovering"
        );
        assert!(f.observe(&replica(Some(4000))));
        assert!(f.observe(&replica(Some(4900))));
    }

    #[test]
    fn unknown_lag_and_not_ready_are_stale() {
        let f = Freshness::new(Duration::from_secs(5));
        assert!(!f.observe(&replica(None)));
        assert!(!f.observe(&NodeState {
            ready: false,
            ..replica(Some(0))
        }));
        assert!(!f.observe(&NodeState::unknown("x")));
        assert!(f.observe(&NodeState {
            role: Role::Primary,
            ..replica(None)
        }));
    }
}
