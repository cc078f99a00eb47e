//! The state-watch task's side of peer-aware health: folds the latest [`PeerView`] into this
//! node's own verdict with the pure [`fail_static`], keeps the degraded clock, and holds a lost
//! primary back from the tracker until the peers had their say.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rwproxy_core::NodeState;
use rwproxy_http::health::{
    fail_static, DegradedClock, FailStaticPolicy, HealthStatus, PeerVerdict, PeerView, Stance,
};
use tokio::sync::watch;

/// How many poll rounds a lost primary waits for the peers' word before it counts: the first
/// round may have asked peers that had not noticed the loss yet.
const GRACE_ROUNDS: u32 = 3;

/// What the state-watch task feeds its tracker.
pub(super) struct Judged {
    /// The verdict to observe: the node's own, or `degraded`.
    pub(super) status: HealthStatus,
    /// A lost primary still waiting for the peers' word: leave the tracker as it is.
    pub(super) pending: bool,
    /// Peers that lost the primary too (for the gauge).
    pub(super) lost: usize,
    /// The verdict, when it changed since the last call.
    pub(super) changed: Option<Arc<PeerVerdict>>,
}

/// The peer view, the policy and the clocks.
pub(super) struct PeerJudge {
    pub(super) view: watch::Receiver<PeerView>,
    pub(super) policy: FailStaticPolicy,
    grace: Duration,
    clock: DegradedClock,
    lost_since: Option<Instant>,
    last: Option<Arc<PeerVerdict>>,
}

impl PeerJudge {
    /// A judge over `view`, whose poller asks every `poll`.
    pub(super) fn new(
        view: watch::Receiver<PeerView>,
        policy: FailStaticPolicy,
        poll: Duration,
    ) -> Self {
        PeerJudge {
            view,
            policy,
            grace: poll * GRACE_ROUNDS,
            clock: DegradedClock::default(),
            lost_since: None,
            last: None,
        }
    }

    /// Judges this node's own verdict `own` on `state` at `now`.
    pub(super) fn judge(&mut self, own: HealthStatus, state: &NodeState, now: Instant) -> Judged {
        let view = self.view.borrow_and_update();
        let outcome = fail_static(own, state, &view, &self.policy, self.clock.elapsed(now));
        self.clock.observe(&outcome, now);
        let lost_since = if own == HealthStatus::NoPrimary {
            *self.lost_since.get_or_insert(now)
        } else {
            self.lost_since = None;
            now
        };
        let degraded = outcome.is_degraded();
        let pending = own == HealthStatus::NoPrimary
            && !degraded
            && self.policy.enabled
            && now.saturating_duration_since(lost_since) < self.grace;
        let lost = view
            .heard
            .iter()
            .filter(|p| p.stance() == Stance::Lost)
            .count();
        let verdict = PeerVerdict::new(outcome, &view, self.clock.elapsed(now));
        let changed = match &self.last {
            // Same outcome, same peers: only the degraded time moved; republish once a second.
            Some(last)
                if last.outcome == verdict.outcome
                    && (last.known, last.heard) == (verdict.known, verdict.heard)
                    && verdict.degraded_ms.saturating_sub(last.degraded_ms) < 1000 =>
            {
                None
            }
            _ => {
                let verdict = Arc::new(verdict);
                self.last = Some(verdict.clone());
                Some(verdict)
            }
        };
        Judged {
            status: if degraded {
                HealthStatus::Degraded
            } else {
                own
            },
            pending,
            lost,
            changed,
        }
    }

    /// The last verdict's reason, for logs.
    pub(super) fn reason(&self) -> Option<&str> {
        self.last.as_deref().map(|v| v.reason.as_str())
    }

    /// Peers known and heard in the latest view.
    pub(super) fn counts(&self) -> (usize, usize) {
        let view = self.view.borrow();
        (view.known, view.heard.len())
    }
}
