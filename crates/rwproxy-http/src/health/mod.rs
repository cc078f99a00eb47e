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
mod tracker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};
use rwproxy_core::{NodeState, Role};
use serde::Serialize;
use tokio::sync::watch;

use crate::body::Body;
use crate::proxy::Draining;
use crate::respond;

pub use agent::{agent_line, serve_agent, weight_percent};
pub use app_check::{run_app_check, AppCheck};
pub use tracker::{AppState, HealthTracker, SharedHealth};

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
}

impl HealthStatus {
    /// Every status, in encoding order.
    pub const ALL: [HealthStatus; 7] = [
        HealthStatus::Ok,
        HealthStatus::Lagging,
        HealthStatus::NoPrimary,
        HealthStatus::NotReady,
        HealthStatus::Draining,
        HealthStatus::Unknown,
        HealthStatus::AppDown,
    ];

    /// 200 for `ok`, 503 for everything else.
    pub fn http_status(self) -> StatusCode {
        if self == HealthStatus::Ok {
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
        }
    }

    /// Statuses that turn a healthy node unhealthy at once instead of after `health.fall`
    /// observations. The contract says a node that is not ready, has lost its primary or whose
    /// state source fails is never 200, and a draining node must leave the edge before it stops
    /// accepting; an app-down verdict was already debounced by the app checker. Only lag, which
    /// hovers around its threshold, waits for `fall` observations.
    pub fn skips_fall(self) -> bool {
        !matches!(self, HealthStatus::Ok | HealthStatus::Lagging)
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

#[derive(Serialize)]
struct HealthDoc<'a> {
    status: HealthStatus,
    node: &'a str,
    role: &'static str,
    primary: Option<&'a str>,
    lag_ms: Option<u64>,
    max_lag_ms: u64,
    positions: BTreeMap<&'a str, u64>,
    /// The verdict for this instant, before rise/fall; differs from `status` while a change is
    /// being confirmed.
    observed: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    app: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a str>,
}

/// Everything a health answer reads: cheap to clone, shared by the proxy and admin listeners
/// and the agent listener.
#[derive(Clone, Debug)]
pub struct HealthView {
    node: Arc<str>,
    state: watch::Receiver<NodeState>,
    max_lag: Duration,
    draining: Draining,
    shared: SharedHealth,
}

impl HealthView {
    /// A view of this node's health.
    pub fn new(
        node: Arc<str>,
        state: watch::Receiver<NodeState>,
        max_lag: Duration,
        draining: Draining,
        shared: SharedHealth,
    ) -> Self {
        HealthView {
            node,
            state,
            max_lag,
            draining,
            shared,
        }
    }

    /// The verdict the edge sees now: the debounced one, except that statuses which skip `fall`
    /// take effect at once (the watch task may not have run since `draining` was set).
    fn current(&self, state: &NodeState, max_lag: Duration) -> (HealthStatus, HealthStatus) {
        let observed = evaluate_with_app(
            state,
            max_lag,
            self.draining.is_draining(),
            self.shared.app(),
        );
        let status = if observed.skips_fall() {
            observed
        } else {
            self.shared.reported()
        };
        (status, observed)
    }

    /// The debounced verdict (what `GET /health` answers without `?max_lag=`).
    pub fn status(&self) -> HealthStatus {
        let state = self.state.borrow();
        self.current(&state, self.max_lag).0
    }

    /// Answers a health probe (`GET`/`HEAD`, optional `?max_lag=<duration>`). A probe with its
    /// own threshold is evaluated directly, without rise/fall: its threshold has no history.
    pub fn respond(&self, method: &Method, query: Option<&str>) -> Response<Body> {
        let state = self.state.borrow();
        let max_lag_override = query.and_then(max_lag_override);
        let max_lag = max_lag_override.unwrap_or(self.max_lag);
        let (mut status, observed) = self.current(&state, max_lag);
        if max_lag_override.is_some() {
            status = observed;
        }
        let doc = HealthDoc {
            status,
            node: &self.node,
            role: state.role.as_str(),
            primary: state.primary.as_deref(),
            lag_ms: state.lag.map(|l| l.as_millis() as u64),
            max_lag_ms: max_lag.as_millis() as u64,
            positions: state
                .positions
                .iter()
                .map(|(db, p)| (db.as_ref(), *p))
                .collect(),
            observed,
            app: self.shared.app().as_label(),
            problem: state.problem.as_deref(),
        };
        let body = if method == Method::HEAD {
            Vec::new()
        } else {
            serde_json::to_vec(&doc).unwrap_or_default()
        };
        respond::plain(status.http_status(), "application/json", body)
    }

    /// The HAProxy agent-check line for the current verdict (see [`agent_line`]).
    pub fn agent_line(&self) -> String {
        let state = self.state.borrow();
        let (status, _) = self.current(&state, self.max_lag);
        agent_line(status, &state, self.max_lag)
    }
}

/// `max_lag=<duration>` from a query string, e.g. `?max_lag=2s`.
fn max_lag_override(query: &str) -> Option<Duration> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "max_lag")
        .and_then(|(_, v)| humantime::parse_duration(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwproxy_core::Positions;

    pub(super) fn replica(lag_ms: Option<u64>) -> NodeState {
        NodeState {
            role: Role::Replica,
            primary: Some("p".into()),
            positions: Positions::new(),
            lag: lag_ms.map(Duration::from_millis),
            ready: true,
            problem: None,
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

    #[test]
    fn query_overrides_threshold() {
        assert_eq!(
            max_lag_override("x=1&max_lag=250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(max_lag_override("max_lag=soon"), None);
    }
}
