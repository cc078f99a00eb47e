//! The health verdict the edge load balancer acts on, and its JSON document.

use std::time::Duration;

use http::{Method, Response, StatusCode};
use rwproxy_core::{NodeState, Role};
use serde::Serialize;

use crate::body::Body;
use crate::respond;

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
}

impl HealthStatus {
    /// 200 for `ok`, 503 for everything else.
    pub fn http_status(self) -> StatusCode {
        if self == HealthStatus::Ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
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

#[derive(Serialize)]
struct HealthDoc<'a> {
    status: HealthStatus,
    node: &'a str,
    role: &'static str,
    primary: Option<&'a str>,
    lag_ms: Option<u64>,
    max_lag_ms: u64,
    positions: std::collections::BTreeMap<&'a str, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a str>,
}

/// Answers a health probe (`GET`/`HEAD`, optional `?max_lag=<duration>`).
pub fn respond(
    method: &Method,
    query: Option<&str>,
    node: &str,
    state: &NodeState,
    default_max_lag: Duration,
    draining: bool,
) -> Response<Body> {
    let max_lag = query.and_then(max_lag_override).unwrap_or(default_max_lag);
    let status = evaluate(state, max_lag, draining);
    let doc = HealthDoc {
        status,
        node,
        role: state.role.as_str(),
        primary: state.primary.as_deref(),
        lag_ms: state.lag.map(|l| l.as_millis() as u64),
        max_lag_ms: max_lag.as_millis() as u64,
        positions: state
            .positions
            .iter()
            .map(|(db, p)| (db.as_ref(), *p))
            .collect(),
        problem: state.problem.as_deref(),
    };
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        serde_json::to_vec(&doc).unwrap_or_default()
    };
    respond::plain(status.http_status(), "application/json", body)
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

    fn replica(lag_ms: Option<u64>) -> NodeState {
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
    fn query_overrides_threshold() {
        assert_eq!(
            max_lag_override("x=1&max_lag=250ms"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(max_lag_override("max_lag=soon"), None);
    }
}
