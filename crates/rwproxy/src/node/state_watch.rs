//! The task that mirrors every state change into health, metrics and one log line per change.

use rwproxy_core::{NodeState, Role};
use rwproxy_http::health::{self, HealthStatus, HealthTracker, Observation, SharedHealth};
use rwproxy_http::{Draining, HealthView, Metrics};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::fail_static::PeerJudge;

/// While degraded, a warning is repeated this often (the first one comes at once).
const DEGRADED_REMINDER: Duration = Duration::from_secs(60);

/// What the state-watch task works with.
pub(super) struct Watch {
    pub(super) node: Arc<str>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) draining: Draining,
    /// The health view whose `health.max_lag` (changed in place by a reload) the verdict uses.
    pub(super) view: HealthView,
    pub(super) tracker: HealthTracker,
    pub(super) shared: SharedHealth,
    /// Peer-aware health, when `health.fail_static` is on and peers are configured.
    pub(super) peers: Option<PeerJudge>,
}

/// The role and primary last logged.
#[derive(Clone, PartialEq)]
struct RoleView {
    role: Role,
    primary: Option<Arc<str>>,
}

/// Feeds every state change and a periodic tick into the health tracker, mirrors the state and
/// the debounced verdict into the gauges, and logs role, primary and health changes once each.
pub(super) async fn watch_state(
    mut w: Watch,
    mut state: watch::Receiver<NodeState>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(health::TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick would complete at once; observations come from changes and later ticks.
    ticker.reset();
    // Starting up unknown is not news; the cluster source logs why the state is unknown.
    let mut logged_health = HealthStatus::Unknown;
    let mut logged_role: Option<RoleView> = None;
    let mut kind = Observation::Change;
    let mut reminded = tokio::time::Instant::now();
    // A pending receiver that never changes when peer-aware health is off.
    let (_no_peers, idle_view) = watch::channel(Default::default());
    let mut view = w
        .peers
        .as_ref()
        .map_or(idle_view, |judge| judge.view.clone());
    loop {
        let (reported, role, lag) = {
            let current = state.borrow_and_update();
            let observed = health::evaluate_with_app(
                &current,
                w.view.max_lag(),
                w.draining.is_draining(),
                w.shared.app(),
            );
            let reported = match &mut w.peers {
                None => w.tracker.observe(observed, kind),
                Some(judge) => {
                    let judged = judge.judge(observed, &current, std::time::Instant::now());
                    if let Some(verdict) = judged.changed {
                        w.shared.set_peer_verdict(Some(verdict));
                    }
                    let reported = if judged.pending {
                        w.tracker.reported()
                    } else {
                        w.tracker.observe(judged.status, kind)
                    };
                    let (known, heard) = judge.counts();
                    w.metrics.fail_static(
                        reported == HealthStatus::Degraded,
                        known,
                        heard,
                        judged.lost,
                    );
                    reported
                }
            };
            w.metrics.state(&current, reported.serves());
            let role = RoleView {
                role: current.role,
                primary: current.primary.clone(),
            };
            (reported, role, current.lag)
        };
        if logged_role.as_ref() != Some(&role) {
            let before = logged_role.as_ref().and_then(|r| r.primary.as_ref());
            if role.primary.is_some() && role.primary.as_ref() != before {
                // A new primary gets a fresh chance: an old one's connect failure says nothing
                // about it.
                w.metrics.primary_reachable(true);
            }
            log_role_change(&w.node, logged_role.as_ref(), &role);
            logged_role = Some(role);
        }
        if reported != logged_health {
            log_health_change(&w, reported, lag);
            logged_health = reported;
            reminded = tokio::time::Instant::now();
        } else if reported == HealthStatus::Degraded && reminded.elapsed() >= DEGRADED_REMINDER {
            log_health_change(&w, reported, lag);
            reminded = tokio::time::Instant::now();
        }
        kind = tokio::select! {
            changed = state.changed() => match changed {
                Ok(()) => Observation::Change,
                Err(_) => return,
            },
            _ = ticker.tick() => Observation::Tick,
            // A new peer view is new evidence like a state change.
            Ok(()) = view.changed() => Observation::Change,
            () = stop.cancelled() => {
                w.metrics.state(&state.borrow(), false);
                return;
            }
        }
    }
}

fn log_role_change(node: &str, before: Option<&RoleView>, now: &RoleView) {
    let was_primary = before.is_some_and(|b| b.role == Role::Primary);
    let had_primary = before.and_then(|b| b.primary.clone());
    match now.role {
        Role::Primary if !was_primary => {
            tracing::info!(node, "became primary: writes go to the local app")
        }
        Role::Primary => {}
        Role::Replica => {
            if was_primary {
                tracing::warn!(node, "no longer primary: writes leave this node");
            }
            match &now.primary {
                Some(primary) if had_primary.as_ref() != Some(primary) => {
                    tracing::info!(node, %primary, "following primary");
                }
                Some(_) => {}
                None if had_primary.is_some() || was_primary || before.is_none() => {
                    tracing::warn!(
                        node,
                        "lost the primary: writes wait for one, then get 503 no-primary"
                    );
                }
                None => {}
            }
        }
        // The cluster source logs why the state is unknown.
        Role::Unknown if was_primary => {
            tracing::warn!(node, "no longer primary: cluster state unknown");
        }
        Role::Unknown => {}
    }
}

fn log_health_change(w: &Watch, reported: HealthStatus, lag: Option<Duration>) {
    let node = &*w.node;
    let lag_ms = lag.map(|l| l.as_millis() as u64);
    let max_lag_ms = w.view.max_lag().as_millis() as u64;
    match reported {
        HealthStatus::Ok => tracing::info!(node, lag_ms, "healthy: health answers 200"),
        HealthStatus::Degraded => tracing::warn!(
            node,
            lag_ms,
            reason = w.peers.as_ref().and_then(|p| p.reason()).unwrap_or(""),
            "DEGRADED (fail-static): no primary anywhere reachable; health answers 200 degraded, \
             reads are served from local data whatever reads.max_lag, writes get 503 no-primary"
        ),
        HealthStatus::Lagging => tracing::warn!(
            node,
            lag_ms,
            max_lag_ms,
            "replication lag over health.max_lag: unhealthy (lagging)"
        ),
        status => tracing::warn!(
            node,
            status = status.as_str(),
            lag_ms,
            peers = w.peers.as_ref().and_then(|p| p.reason()).unwrap_or(""),
            "unhealthy: health answers 503"
        ),
    }
}
