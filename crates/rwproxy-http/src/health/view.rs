//! The health responders' side: the JSON document for `GET`/`HEAD`, `?max_lag=`, and the
//! agent line, all computed from the state channel and the shared debounced verdict.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response};
use rwproxy_core::NodeState;
use serde::Serialize;
use tokio::sync::watch;

use super::source_doc::{ManagerDoc, TimelineDoc};
use super::{agent_line, evaluate_with_app, HealthStatus, PeerVerdict, SharedHealth};
use crate::body::Body;
use crate::live::LiveDuration;
use crate::proxy::Draining;
use crate::respond;

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
    /// Why the node is `degraded`, or why it is not although it lost its primary (peer-aware
    /// health only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// The fail-static verdict from the peers' view (peer-aware health only).
    #[serde(skip_serializing_if = "Option::is_none")]
    peers: Option<&'a PeerVerdict>,
    /// Something wrong that does not change the verdict (see `SharedHealth::set_warning`).
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'a str>,
    /// The PostgreSQL timeline and its ancestors' switch points (PostgreSQL sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<TimelineDoc>,
    /// The failover manager's view beside rwproxy's (the Patroni source).
    #[serde(skip_serializing_if = "Option::is_none")]
    manager: Option<ManagerDoc<'a>>,
}

/// Everything a health answer reads: cheap to clone, shared by the proxy and admin listeners
/// and the agent listener.
#[derive(Clone, Debug)]
pub struct HealthView {
    node: Arc<str>,
    state: watch::Receiver<NodeState>,
    /// `health.max_lag`, shared by every clone and changed in place by a reload.
    max_lag: LiveDuration,
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
            max_lag: LiveDuration::new(max_lag),
            draining,
            shared,
        }
    }

    /// `health.max_lag` now; [`HealthView::set_max_lag`] changes it for every clone.
    pub fn max_lag(&self) -> Duration {
        self.max_lag.get()
    }

    /// Changes `health.max_lag` for this view, its clones and the verdict's debouncing task.
    pub fn set_max_lag(&self, max_lag: Duration) {
        self.max_lag.set(max_lag);
    }

    /// The verdict the edge sees now: the debounced one, except that statuses which skip `fall`
    /// take effect at once (the watch task may not have run since `draining` was set). With
    /// peer-aware health, a lost primary is the state-watch task's call (it may be `degraded`);
    /// `strict` asks for the answer without the peers (`?strict`), as before fail-static.
    fn current(
        &self,
        state: &NodeState,
        max_lag: Duration,
        strict: bool,
    ) -> (HealthStatus, HealthStatus) {
        let observed = evaluate_with_app(
            state,
            max_lag,
            self.draining.is_draining(),
            self.shared.app(),
        );
        let reported = self.shared.reported();
        let peers_decide = self.shared.peer_aware() && observed == HealthStatus::NoPrimary;
        let status = if (observed.skips_fall() && !peers_decide) || contradicted(reported, state) {
            observed
        } else {
            reported
        };
        let status = match status {
            HealthStatus::Degraded | HealthStatus::Ok if strict && peers_decide => observed,
            HealthStatus::Degraded if strict => observed,
            status => status,
        };
        (status, observed)
    }

    /// True when this replica fails static (`degraded`): it serves reads from local data
    /// whatever `reads.max_lag` says, since nothing newer exists anywhere reachable. Never on a
    /// node whose state is unknown or not ready.
    pub fn serves_stale_reads(&self, state: &NodeState) -> bool {
        state.role == rwproxy_core::Role::Replica
            && state.ready
            && self.shared.reported() == HealthStatus::Degraded
    }

    /// The debounced verdict (what `GET /health` answers without `?max_lag=`).
    pub fn status(&self) -> HealthStatus {
        let state = self.state.borrow();
        self.current(&state, self.max_lag.get(), false).0
    }

    /// Answers a health probe (`GET`/`HEAD`, optional `?max_lag=<duration>`). A probe with its
    /// own threshold is evaluated directly, without rise/fall: its threshold has no history.
    pub fn respond(&self, method: &Method, query: Option<&str>) -> Response<Body> {
        let (status, body) = self.with_document(query, |doc| {
            if method == Method::HEAD {
                Vec::new()
            } else {
                serde_json::to_vec(doc).unwrap_or_default()
            }
        });
        respond::plain(status.http_status(), "application/json", body)
    }

    /// The health document with `extra`'s fields appended (the admin listener's `/status`), as
    /// JSON.
    pub fn document_with<E: Serialize>(&self, query: Option<&str>, extra: &E) -> Vec<u8> {
        #[derive(Serialize)]
        struct Extended<'a, E> {
            #[serde(flatten)]
            health: &'a HealthDoc<'a>,
            #[serde(flatten)]
            extra: &'a E,
        }
        self.with_document(query, |health| {
            serde_json::to_vec(&Extended { health, extra }).unwrap_or_default()
        })
        .1
    }

    /// Builds the health document for this instant and hands it to `f`.
    fn with_document<R>(
        &self,
        query: Option<&str>,
        f: impl FnOnce(&HealthDoc) -> R,
    ) -> (HealthStatus, R) {
        let state = self.state.borrow();
        let max_lag_override = query.and_then(max_lag_override);
        let max_lag = max_lag_override.unwrap_or_else(|| self.max_lag.get());
        let strict = query.is_some_and(strict_asked);
        let (mut status, observed) = self.current(&state, max_lag, strict);
        // A probe's own threshold changes the lag verdict, not the peers' (a degraded node has no
        // primary whatever the threshold).
        if max_lag_override.is_some() && status != HealthStatus::Degraded {
            status = observed;
        }
        let peers = self.shared.peer_verdict();
        let reason = peers
            .as_deref()
            .filter(|_| {
                matches!(
                    status,
                    HealthStatus::Degraded | HealthStatus::NoPrimary | HealthStatus::Lagging
                )
            })
            .map(|p| p.reason.as_str());
        let warning = self.shared.warning();
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
            reason,
            peers: peers.as_deref(),
            warning: warning.as_deref(),
            timeline: state.timeline.as_deref().map(TimelineDoc::new),
            manager: state.manager.as_deref().map(ManagerDoc::new),
        };
        (status, f(&doc))
    }

    /// The HAProxy agent-check line for the current verdict (see [`agent_line`]).
    pub fn agent_line(&self) -> String {
        let state = self.state.borrow();
        let max_lag = self.max_lag.get();
        let (status, _) = self.current(&state, max_lag, false);
        agent_line(status, &state, max_lag)
    }
}

/// Whether the debounced verdict names a fact the current state denies: a node that is the
/// primary is never `no-primary`, even while the tracker is still confirming its recovery (a
/// promotion takes writes at once, so the edge should see it at once too).
fn contradicted(reported: HealthStatus, state: &NodeState) -> bool {
    matches!(reported, HealthStatus::NoPrimary | HealthStatus::Degraded)
        && state.role == rwproxy_core::Role::Primary
}

/// `max_lag=<duration>` from a query string, e.g. `?max_lag=2s`.
fn max_lag_override(query: &str) -> Option<Duration> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "max_lag")
        .and_then(|(_, v)| humantime::parse_duration(v).ok())
}

/// `?strict` (or `strict=1`, `strict=true`): today's answer, without the peers' view.
fn strict_asked(query: &str) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k == "strict" && matches!(v, "" | "1" | "true")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promoted_node_is_never_no_primary_while_rise_confirms() {
        let shared = SharedHealth::default();
        let mut tracker = super::super::HealthTracker::new(3, 1, shared.clone());
        tracker.observe(HealthStatus::NoPrimary, super::super::Observation::Tick);
        let (tx, rx) = watch::channel(NodeState {
            role: rwproxy_core::Role::Primary,
            primary: Some("me".into()),
            positions: rwproxy_core::Positions::new(),
            lag: None,
            ready: true,
            problem: None,
            ..NodeState::default()
        });
        let view = HealthView::new(
            "me".into(),
            rx,
            Duration::from_secs(10),
            Draining::default(),
            shared.clone(),
        );
        assert_eq!(shared.reported(), HealthStatus::NoPrimary);
        assert_eq!(view.status(), HealthStatus::Ok);
        // A replica that lost its primary stays no-primary, and one whose primary is back still
        // recovers through rise.
        tx.send_modify(|s| {
            s.role = rwproxy_core::Role::Replica;
            s.primary = None;
        });
        assert_eq!(view.status(), HealthStatus::NoPrimary);
        tx.send_modify(|s| {
            s.primary = Some("p".into());
            s.lag = Some(Duration::ZERO);
        });
        assert_eq!(view.status(), HealthStatus::NoPrimary);
    }

    #[test]
    fn strict_is_a_flag() {
        assert!(strict_asked("strict"));
        assert!(strict_asked("max_lag=2s&strict=1"));
        assert!(strict_asked("strict=true"));
        assert!(!strict_asked("strict=0"));
        assert!(!strict_asked("stricter"));
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
