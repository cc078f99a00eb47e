//! Rise/fall debouncing of the health verdict, and the lock-free cell that carries the result
//! (and the app check's result) from the background tasks to the responders.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::{HealthStatus, PeerVerdict};

/// What the app check (`health.app_path`) last concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppState {
    /// No app check is configured: the app counts as up.
    Unchecked,
    /// The app passes its check.
    Up,
    /// The app failed `health.fall` checks in a row, or has not passed one yet.
    Down,
}

impl AppState {
    /// `"up"` / `"down"` for the health document; `None` when no check is configured.
    pub fn as_label(self) -> Option<&'static str> {
        match self {
            AppState::Unchecked => None,
            AppState::Up => Some("up"),
            AppState::Down => Some("down"),
        }
    }

    fn encode(self) -> u8 {
        match self {
            AppState::Unchecked => 0,
            AppState::Up => 1,
            AppState::Down => 2,
        }
    }

    fn decode(v: u8) -> Self {
        match v {
            0 => AppState::Unchecked,
            1 => AppState::Up,
            _ => AppState::Down,
        }
    }
}

fn encode_status(status: HealthStatus) -> u8 {
    HealthStatus::ALL
        .iter()
        .position(|s| *s == status)
        .map_or(u8::MAX, |i| i as u8)
}

fn decode_status(v: u8) -> HealthStatus {
    HealthStatus::ALL
        .get(usize::from(v))
        .copied()
        .unwrap_or(HealthStatus::Unknown)
}

/// The debounced verdict and the app's state, shared between the writer tasks and every
/// responder. Two atomics; readers never wait.
#[derive(Clone, Debug)]
pub struct SharedHealth(Arc<Cells>);

#[derive(Debug)]
struct Cells {
    reported: AtomicU8,
    app: AtomicU8,
    /// Peer-aware health is on (`health.fail_static` with peers): a lost primary waits for the
    /// peers' word before it turns the node unhealthy.
    peer_aware: AtomicBool,
    /// The latest fail-static verdict, for the health document's reason (probes only).
    peers: watch::Sender<Option<Arc<PeerVerdict>>>,
    /// A problem worth an operator's attention that does not change the verdict (a primary
    /// that answers to another name than the one this replica follows). Read only by health
    /// documents, never by the request path.
    warning: std::sync::Mutex<Option<Arc<str>>>,
}

impl Default for SharedHealth {
    /// Unhealthy (`unknown`) until the tracker has seen `rise` healthy observations; no app check.
    fn default() -> Self {
        SharedHealth(Arc::new(Cells {
            reported: AtomicU8::new(encode_status(HealthStatus::Unknown)),
            app: AtomicU8::new(AppState::Unchecked.encode()),
            peer_aware: AtomicBool::new(false),
            peers: watch::Sender::new(None),
            warning: std::sync::Mutex::new(None),
        }))
    }
}

impl SharedHealth {
    /// The debounced verdict.
    pub fn reported(&self) -> HealthStatus {
        decode_status(self.0.reported.load(Ordering::Relaxed))
    }

    /// The app check's latest conclusion.
    pub fn app(&self) -> AppState {
        AppState::decode(self.0.app.load(Ordering::Relaxed))
    }

    /// Records the app check's conclusion (the app checker is the only writer).
    pub fn set_app(&self, state: AppState) {
        self.0.app.store(state.encode(), Ordering::Relaxed);
    }

    /// Whether peer-aware health is on (see [`SharedHealth::set_peer_aware`]).
    pub fn peer_aware(&self) -> bool {
        self.0.peer_aware.load(Ordering::Relaxed)
    }

    /// Turns peer-aware health on: the state-watch task then decides when a lost primary turns
    /// the node unhealthy (after the peers had their say), and responders follow its verdict.
    pub fn set_peer_aware(&self, on: bool) {
        self.0.peer_aware.store(on, Ordering::Relaxed);
    }

    /// The latest fail-static verdict, if peer-aware health is on.
    pub fn peer_verdict(&self) -> Option<Arc<PeerVerdict>> {
        self.0.peers.borrow().clone()
    }

    /// Publishes the latest fail-static verdict (the state-watch task is the only writer).
    pub fn set_peer_verdict(&self, verdict: Option<Arc<PeerVerdict>>) {
        self.0.peers.send_replace(verdict);
    }

    /// The current warning (see [`SharedHealth::set_warning`]).
    pub fn warning(&self) -> Option<Arc<str>> {
        self.0
            .warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sets or clears the warning health documents carry; true when it changed.
    pub fn set_warning(&self, warning: Option<Arc<str>>) -> bool {
        let mut cell = self
            .0
            .warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = *cell != warning;
        *cell = warning;
        changed
    }

    fn set_reported(&self, status: HealthStatus) {
        self.0
            .reported
            .store(encode_status(status), Ordering::Relaxed);
    }
}

/// Where an observation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The periodic tick: always counts.
    Tick,
    /// A cluster state change: counts only when it changes the verdict, so that a busy node
    /// (positions and lag move on every poll and transaction) does not confirm a change faster
    /// than an idle one.
    Change,
}

/// Debounces observations: a healthy node turns unhealthy after `fall` consecutive unhealthy
/// observations (at once for the statuses of [`HealthStatus::skips_fall`]), an unhealthy node
/// turns healthy after `rise` consecutive healthy ones. While unhealthy, the reported reason
/// follows the latest observation. Owned by one task; publishes into a [`SharedHealth`].
#[derive(Debug)]
pub struct HealthTracker {
    rise: u32,
    fall: u32,
    reported: HealthStatus,
    last_observed: Option<HealthStatus>,
    streak: u32,
    shared: SharedHealth,
}

impl HealthTracker {
    /// A tracker starting unhealthy (`unknown`); `rise` and `fall` are at least 1.
    pub fn new(rise: u32, fall: u32, shared: SharedHealth) -> Self {
        shared.set_reported(HealthStatus::Unknown);
        HealthTracker {
            rise: rise.max(1),
            fall: fall.max(1),
            reported: HealthStatus::Unknown,
            last_observed: None,
            streak: 0,
            shared,
        }
    }

    /// The debounced verdict.
    pub fn reported(&self) -> HealthStatus {
        self.reported
    }

    /// Folds in one observation and returns the verdict to report.
    pub fn observe(&mut self, observed: HealthStatus, kind: Observation) -> HealthStatus {
        let repeated = self.last_observed == Some(observed);
        self.last_observed = Some(observed);
        if kind == Observation::Change && repeated {
            // No new evidence: the last observation already said the same.
            return self.reported;
        }
        let healthy_now = self.reported.serves();
        let next = match (healthy_now, observed.serves()) {
            // Agreement: nothing pending (`ok` and `degraded` both serve: no debounce between
            // them).
            (true, true) => {
                self.streak = 0;
                observed
            }
            (false, false) => {
                self.streak = 0;
                observed
            }
            // Recovering.
            (false, true) => {
                self.streak += 1;
                if self.streak >= self.rise {
                    observed
                } else {
                    self.reported
                }
            }
            // Failing.
            (true, false) => {
                self.streak += 1;
                if observed.skips_fall() || self.streak >= self.fall {
                    observed
                } else {
                    self.reported
                }
            }
        };
        if next != self.reported {
            self.streak = 0;
            self.reported = next;
            self.shared.set_reported(next);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: HealthStatus = HealthStatus::Ok;
    const LAG: HealthStatus = HealthStatus::Lagging;

    fn run(tracker: &mut HealthTracker, seq: &[HealthStatus]) -> Vec<HealthStatus> {
        seq.iter()
            .map(|s| tracker.observe(*s, Observation::Tick))
            .collect()
    }

    fn tick(tracker: &mut HealthTracker, s: HealthStatus) -> HealthStatus {
        tracker.observe(s, Observation::Tick)
    }

    #[test]
    fn starts_unhealthy_and_rises_after_rise_observations() {
        let shared = SharedHealth::default();
        let mut t = HealthTracker::new(2, 3, shared.clone());
        assert_eq!(shared.reported(), HealthStatus::Unknown);
        assert_eq!(tick(&mut t, OK), HealthStatus::Unknown);
        assert_eq!(tick(&mut t, OK), OK);
        assert_eq!(shared.reported(), OK);
    }

    #[test]
    fn falls_after_fall_consecutive_lagging_observations() {
        let mut t = HealthTracker::new(2, 3, SharedHealth::default());
        run(&mut t, &[OK, OK]);
        assert_eq!(run(&mut t, &[LAG, LAG, OK]), [OK, OK, OK], "a blip");
        assert_eq!(run(&mut t, &[LAG, LAG, LAG]), [OK, OK, LAG]);
        assert_eq!(
            run(&mut t, &[OK, LAG, OK, OK]),
            [LAG, LAG, LAG, OK],
            "rise needs consecutive healthy observations"
        );
    }

    #[test]
    fn hard_failures_skip_fall_but_not_rise() {
        for hard in [
            HealthStatus::Draining,
            HealthStatus::NoPrimary,
            HealthStatus::NotReady,
            HealthStatus::Unknown,
            HealthStatus::AppDown,
        ] {
            let mut t = HealthTracker::new(2, 3, SharedHealth::default());
            run(&mut t, &[OK, OK]);
            assert_eq!(tick(&mut t, hard), hard, "{hard:?}");
            assert_eq!(tick(&mut t, OK), hard, "{hard:?} recovers through rise");
            assert_eq!(tick(&mut t, OK), OK);
        }
    }

    #[test]
    fn the_reason_follows_the_latest_unhealthy_observation() {
        let mut t = HealthTracker::new(1, 1, SharedHealth::default());
        assert_eq!(tick(&mut t, LAG), LAG);
        assert_eq!(
            tick(&mut t, HealthStatus::NoPrimary),
            HealthStatus::NoPrimary
        );
        assert_eq!(tick(&mut t, OK), OK, "rise 1 recovers at once");
    }

    #[test]
    fn repeated_state_changes_are_no_new_evidence() {
        let mut t = HealthTracker::new(2, 3, SharedHealth::default());
        run(&mut t, &[OK, OK]);
        let change = |t: &mut HealthTracker, s| t.observe(s, Observation::Change);
        // A busy lagging replica: the lag moves on every poll, the verdict does not.
        for _ in 0..10 {
            assert_eq!(change(&mut t, LAG), OK);
        }
        assert_eq!(tick(&mut t, LAG), OK, "second observation");
        assert_eq!(tick(&mut t, LAG), LAG, "third observation");
        assert_eq!(change(&mut t, OK), LAG, "a changed verdict counts");
        assert_eq!(change(&mut t, OK), LAG);
        assert_eq!(tick(&mut t, OK), OK);
        // A hard failure seen on a state change applies at once.
        assert_eq!(
            change(&mut t, HealthStatus::NoPrimary),
            HealthStatus::NoPrimary
        );
    }

    #[test]
    fn degraded_serves_and_moves_to_and_from_ok_without_debounce() {
        let deg = HealthStatus::Degraded;
        let mut t = HealthTracker::new(2, 3, SharedHealth::default());
        run(&mut t, &[OK, OK]);
        assert_eq!(tick(&mut t, deg), deg);
        assert_eq!(tick(&mut t, OK), OK);
        assert_eq!(
            tick(&mut t, HealthStatus::NoPrimary),
            HealthStatus::NoPrimary
        );
        assert_eq!(
            run(&mut t, &[deg, deg]),
            [HealthStatus::NoPrimary, deg],
            "rise"
        );
        assert_eq!(run(&mut t, &[LAG, LAG, LAG]), [deg, deg, LAG], "fall");
    }

    #[test]
    fn encodings_round_trip() {
        for s in HealthStatus::ALL {
            assert_eq!(decode_status(encode_status(s)), s);
        }
        for a in [AppState::Unchecked, AppState::Up, AppState::Down] {
            assert_eq!(AppState::decode(a.encode()), a);
        }
    }
}
