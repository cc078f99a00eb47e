//! The health document's `timeline` and `manager` members: the PostgreSQL timeline history and
//! the failover manager's view (Patroni's) from the published state, shaped for JSON.

use rwproxy_core::{History, ManagerView};
use serde::Serialize;

/// `"timeline": {"current": 3, "switches": [{"timeline": 1, "switch_lsn": "0/3000148"}]}`.
#[derive(Serialize)]
pub(super) struct TimelineDoc {
    current: u32,
    /// Ancestors, oldest first, each with the LSN where the history left it.
    switches: Vec<SwitchDoc>,
}

#[derive(Serialize)]
struct SwitchDoc {
    timeline: u32,
    /// PostgreSQL's text form, `X/Y`.
    switch_lsn: String,
}

impl TimelineDoc {
    pub(super) fn new(history: &History) -> Self {
        TimelineDoc {
            current: history.current,
            switches: history
                .switches
                .iter()
                .map(|s| SwitchDoc {
                    timeline: s.timeline,
                    switch_lsn: format!(
                        "{:X}/{:X}",
                        s.switch_lsn >> 32,
                        s.switch_lsn & 0xFFFF_FFFF
                    ),
                })
                .collect(),
        }
    }
}

/// `"manager": {...}`: what the failover manager said, beside rwproxy's own fields.
#[derive(Serialize)]
pub(super) struct ManagerDoc<'a> {
    /// `patroni`.
    name: &'a str,
    /// This node's member name.
    member: &'a str,
    /// Why the manager could not be read; the rest is empty then.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a str>,
    leader: Option<&'a str>,
    leader_address: Option<&'a str>,
    holds_lock: bool,
    role: &'a str,
    state: &'a str,
    timeline: Option<u64>,
    members: Vec<MemberDoc<'a>>,
    /// Empty when the two views agree.
    disagreements: Vec<DisagreementDoc>,
}

#[derive(Serialize)]
struct MemberDoc<'a> {
    name: &'a str,
    role: &'a str,
    state: &'a str,
    host: Option<&'a str>,
    timeline: Option<u64>,
    lag_bytes: Option<u64>,
    leader: bool,
}

#[derive(Serialize)]
struct DisagreementDoc {
    code: &'static str,
    message: String,
}

impl<'a> ManagerDoc<'a> {
    pub(super) fn new(view: &'a ManagerView) -> Self {
        ManagerDoc {
            name: view.manager,
            member: &view.member,
            problem: view.problem.as_deref(),
            leader: view.leader.as_deref(),
            leader_address: view.leader_address.as_deref(),
            holds_lock: view.holds_lock,
            role: &view.role,
            state: &view.state,
            timeline: view.timeline,
            members: view
                .members
                .iter()
                .map(|m| MemberDoc {
                    name: &m.name,
                    role: &m.role,
                    state: &m.state,
                    host: m.host.as_deref(),
                    timeline: m.timeline,
                    lag_bytes: m.lag_bytes,
                    leader: m.leader,
                })
                .collect(),
            disagreements: view
                .disagreements
                .iter()
                .map(|d| DisagreementDoc {
                    code: d.code(),
                    message: d.to_string(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rwproxy_core::{Disagreement, ManagedMember};
    use serde_json::json;

    use super::*;

    #[test]
    fn the_timeline_prints_its_switch_points_as_postgres_does() {
        let history = History::parse(3, "1\t0/3000148\tr\n2\t1/5000A08\tr\n").expect("parses");
        assert_eq!(
            serde_json::to_value(TimelineDoc::new(&history)).unwrap(),
            json!({"current": 3, "switches": [
                {"timeline": 1, "switch_lsn": "0/3000148"},
                {"timeline": 2, "switch_lsn": "1/5000A08"},
            ]})
        );
    }

    #[test]
    fn the_managers_view_carries_members_and_disagreements() {
        let view = ManagerView {
            manager: "patroni",
            member: "pg1".into(),
            leader: Some("pg1".into()),
            leader_address: Some("10.0.0.1".into()),
            role: "master".into(),
            state: "running".into(),
            timeline: Some(3),
            members: vec![ManagedMember {
                name: "pg1".into(),
                role: "leader".into(),
                state: "running".into(),
                host: Some(Arc::from("10.0.0.1")),
                timeline: Some(3),
                lag_bytes: None,
                leader: true,
            }],
            disagreements: vec![Disagreement::LeaderInRecovery],
            ..ManagerView::default()
        };
        let doc = serde_json::to_value(ManagerDoc::new(&view)).unwrap();
        assert_eq!(doc["name"], "patroni");
        assert_eq!(doc["leader_address"], "10.0.0.1");
        assert_eq!(doc["members"][0]["leader"], true);
        assert_eq!(doc["members"][0]["lag_bytes"], json!(null));
        assert_eq!(doc["disagreements"][0]["code"], "leader-in-recovery");
        assert!(doc.get("problem").is_none());
        let down = ManagerView::unknown("patroni", "pg1".into(), "/cluster answered 500");
        let doc = serde_json::to_value(ManagerDoc::new(&down)).unwrap();
        assert_eq!(doc["problem"], "/cluster answered 500");
        assert_eq!(doc["members"], json!([]));
    }
}
