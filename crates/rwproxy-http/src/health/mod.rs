//! The health verdict the edge load balancer acts on: the pure verdict for one state, the
//! rise/fall tracker that debounces it, the JSON document, the HAProxy agent dialect and the
//! optional check of the local app.
//!
//! Who writes what: the node's state-watch task feeds every state change and a periodic tick
//! into a [`HealthTracker`], which publishes the debounced verdict in a [`SharedHealth`] cell;
//! the app checker publishes the app's state in the same cell. The responders ([`HealthView`])
//! only read atomics and borrow the state channel: no locks on the request path.

mod agent;
mod app_check;
mod fail_static;
mod source_doc;
mod tracker;
mod view;

use std::time::Duration;

use http::StatusCode;
use rwproxy_core::{NodeState, Role};
use serde::Serialize;

pub use agent::{agent_line, serve_agent, weight_percent};
pub use app_check::{run_app_check, AppCheck};
pub use fail_static::{
    fail_static, DegradedClock, FailStaticPolicy, Outcome, PeerReport, PeerVerdict, PeerView,
    Stance,
};
pub use tracker::{AppState, HealthTracker, Observation, SharedHealth};
pub use view::HealthView;

/// How often the state-watch task re-evaluates health without a state change, so that rise and
/// fall counts advance on a steady state (defaults react within about a second).
pub const TICK: Duration = Duration::from_millis(250);

/// Why this node should or should not receive traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// Serve traffic.
    Ok,
    /// The replica lags more than the threshold.
    Lagging,
    /// A replica that does not know its primary.
    NoPrimary,
    /// Initial sync not done.
    NotReady,
    /// Shutting down.
    Draining,
    /// The cluster source fails, or lag is unknown.
    Unknown,
    /// The local app fails its health check (`health.app_path`).
    AppDown,
    /// No primary anywhere this node can hear, and no peer better off: still `200`, reads are
    /// served from local data, writes get `503 no-primary` (`health.fail_static`).
    Degraded,
}

impl HealthStatus {
    /// Every status, in encoding order.
    pub const ALL: [HealthStatus; 8] = [
        HealthStatus::Ok,
        HealthStatus::Lagging,
        HealthStatus::NoPrimary,
        HealthStatus::NotReady,
        HealthStatus::Draining,
        HealthStatus::Unknown,
        HealthStatus::AppDown,
        HealthStatus::Degraded,
    ];

    /// True when the node should receive traffic: `ok`, or `degraded` (reads only).
    pub fn serves(self) -> bool {
        matches!(self, HealthStatus::Ok | HealthStatus::Degraded)
    }

    /// 200 for `ok` and `degraded`, 503 for everything else.
    pub fn http_status(self) -> StatusCode {
        if self.serves() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// The name used in the JSON document and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Lagging => "lagging",
            HealthStatus::NoPrimary => "no-primary",
            HealthStatus::NotReady => "not-ready",
            HealthStatus::Draining => "draining",
            HealthStatus::Unknown => "unknown",
            HealthStatus::AppDown => "app-down",
            HealthStatus::Degraded => "degraded",
        }
    }

    /// Statuses that turn a healthy node unhealthy at once instead of after `health.fall`
    /// observations. The contract says a node that is not ready, has lost its primary or whose
    /// state source fails is never 200, and a draining node must leave the edge before it stops
    /// accepting; an app-down verdict was already debounced by the app checker. Only lag, which
    /// hovers around its threshold, waits for `fall` observations.
    pub fn skips_fall(self) -> bool {
        !matches!(
            self,
            HealthStatus::Ok | HealthStatus::Lagging | HealthStatus::Degraded
        )
    }
}

/// The verdict for `state` with lag threshold `max_lag`. Pure, so it is table-tested.
pub fn evaluate(state: &NodeState, max_lag: Duration, draining: bool) -> HealthStatus {
    if draining {
        return HealthStatus::Draining;
    }
    match state.role {
        Role::Unknown => HealthStatus::Unknown,
        _ if !state.ready => HealthStatus::NotReady,
        Role::Primary => HealthStatus::Ok,
        Role::Replica if state.primary.is_none() => HealthStatus::NoPrimary,
        Role::Replica => match state.lag {
            None => HealthStatus::Unknown,
            Some(lag) if lag > max_lag => HealthStatus::Lagging,
            Some(_) => HealthStatus::Ok,
        },
    }
}

/// [`evaluate`], then the app check: a node whose cluster state is fine but whose app fails its
/// check is `app-down`. The cluster's verdict comes first because it is the more specific one.
pub fn evaluate_with_app(
    state: &NodeState,
    max_lag: Duration,
    draining: bool,
    app: AppState,
) -> HealthStatus {
    match evaluate(state, max_lag, draining) {
        HealthStatus::Ok if app == AppState::Down => HealthStatus::AppDown,
        status => status,
    }
}

#[cfg(test)]
mod tests {
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
    fn verdicts() {
        let ten = Duration::from_secs(10);
        assert_eq!(evaluate(&replica(Some(10)), ten, false), HealthStatus::Ok);
        assert_eq!(
            evaluate(&replica(Some(10_001)), ten, false),
            HealthStatus::Lagging
        );
        assert_eq!(evaluate(&replica(None), ten, false), HealthStatus::Unknown);
        assert_eq!(
            evaluate(
                &NodeState {
                    primary: None,
                    ..replica(Some(1))
                },
                ten,
                false
            ),
            HealthStatus::NoPrimary
        );
        assert_eq!(
            evaluate(
                &NodeState {
                    ready: false,
                    ..replica(Some(1))
                },
                ten,
                false
            ),
            HealthStatus::NotReady
        );
        assert_eq!(
            evaluate(&NodeState::unknown("x"), ten, false),
            HealthStatus::Unknown
        );
        assert_eq!(
            evaluate(
                &NodeState {
                    role: Role::Primary,
                    ..replica(Some(0))
                },
                ten,
                false
            ),
            HealthStatus::Ok
        );
        assert_eq!(
            evaluate(&replica(Some(1)), ten, true),
            HealthStatus::Draining
        );
    }

    #[test]
    fn the_app_check_comes_after_the_cluster_verdict() {
        let ten = Duration::from_secs(10);
        let ok = replica(Some(1));
        assert_eq!(
            evaluate_with_app(&ok, ten, false, AppState::Down),
            HealthStatus::AppDown
        );
        assert_eq!(
            evaluate_with_app(&ok, ten, false, AppState::Up),
            HealthStatus::Ok
        );
        assert_eq!(
            evaluate_with_app(&ok, ten, false, AppState::Unchecked),
            HealthStatus::Ok
        );
        assert_eq!(
            evaluate_with_app(&replica(Some(20_000)), ten, false, AppState::Down),
            HealthStatus::Lagging
        );
        assert_eq!(
            evaluate_with_app(&ok, ten, true, AppState::Down),
            HealthStatus::Draining
        );
    }

    #[test]
    fn names_match_serde() {
        for status in HealthStatus::ALL {
            assert_eq!(
                serde_json::to_string(&status).unwrap_or_default(),
                format!("\"{}\"", status.as_str())
            );
        }
    }
}
