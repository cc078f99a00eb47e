//! What Patroni said, kept in the published state for operators ([`ManagerView`]): the leader,
//! this node's role and timeline in Patroni's words, the members with the lag Patroni reports,
//! and where Patroni's view and rwproxy's disagree. Built from the documents the source already
//! fetched for its decision; nothing is asked twice.

use std::sync::Arc;

use rwproxy_core::{ManagedMember, ManagerView, NodeState};

use super::api::PatroniView;
use super::derive::MemberNaming;

/// The manager's name in documents.
const PATRONI: &str = "patroni";

/// The operator's view of one poll: Patroni's answer (or why there is none), compared with the
/// PostgreSQL source's own state (`database`) and the state rwproxy publishes (`published`).
pub(crate) fn build(
    patroni: Result<&PatroniView, &str>,
    member: &str,
    naming: &MemberNaming,
    database: &NodeState,
    published: &NodeState,
) -> ManagerView {
    let patroni = match patroni {
        Ok(view) => view,
        Err(reason) => return ManagerView::unknown(PATRONI, Arc::from(member), reason),
    };
    let mut leaders = patroni.members.iter().filter(|m| m.is_leader());
    let leader = match (leaders.next(), leaders.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    };
    let mut view = ManagerView {
        manager: PATRONI,
        member: Arc::from(member),
        problem: None,
        leader: leader.map(|l| Arc::from(l.name.as_str())),
        leader_address: leader.and_then(|l| naming.address(l)),
        holds_lock: patroni.holds_lock,
        role: Arc::from(patroni.role.as_str()),
        state: Arc::from(patroni.state.as_str()),
        timeline: patroni.timeline,
        members: patroni
            .members
            .iter()
            .map(|m| ManagedMember {
                name: Arc::from(m.name.as_str()),
                role: Arc::from(m.role.as_str()),
                state: Arc::from(m.state.as_str()),
                host: m.host.as_deref().map(Arc::from),
                timeline: m.timeline,
                lag_bytes: m.lag,
                leader: m.is_leader(),
            })
            .collect(),
        disagreements: Vec::new(),
    };
    view.disagreements = view.disagreements_with(database, published);
    view
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rwproxy_core::Role;

    use super::super::api::parse;
    use super::super::derive::{combine, MemberField};
    use super::*;

    const CLUSTER: &str = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running", "host": "127.0.0.11", "timeline": 4}, {"name": "pg2", "role": "replica", "state": "streaming", "host": "127.0.0.12", "timeline": 4, "lag": 128}]}"#;

    fn naming() -> MemberNaming {
        MemberNaming {
            field: MemberField::Host,
            table: BTreeMap::new(),
        }
    }

    fn database(role: Role) -> NodeState {
        NodeState {
            role,
            ready: true,
            timeline: Some(Arc::new(rwproxy_core::History::from_current(4))),
            ..NodeState::default()
        }
    }

    #[test]
    fn the_view_carries_patronis_words_and_the_members() {
        let node = r#"{"state": "running", "role": "replica", "timeline": 4}"#;
        let patroni = parse(false, node.as_bytes(), CLUSTER.as_bytes()).expect("parses");
        let db = database(Role::Replica);
        let published = combine(db.clone(), Ok(&patroni), "pg2", &naming());
        let view = build(Ok(&patroni), "pg2", &naming(), &db, &published);
        assert_eq!(view.leader.as_deref(), Some("pg1"));
        assert_eq!(view.leader_address.as_deref(), Some("127.0.0.11"));
        assert_eq!((&*view.role, &*view.state), ("replica", "running"));
        assert_eq!(view.timeline, Some(4));
        assert_eq!(view.members.len(), 2);
        assert!(view.members[0].leader && !view.members[1].leader);
        assert_eq!(view.members[1].lag_bytes, Some(128));
        assert_eq!(view.members[1].state.as_ref(), "streaming");
        assert!(view.disagreements.is_empty(), "{:?}", view.disagreements);
    }

    #[test]
    fn a_leader_still_in_recovery_is_flagged_and_an_unanswered_api_is_named() {
        let node = r#"{"state": "running", "role": "master", "timeline": 4}"#;
        let patroni = parse(true, node.as_bytes(), CLUSTER.as_bytes()).expect("parses");
        let db = database(Role::Replica);
        let published = combine(db.clone(), Ok(&patroni), "pg1", &naming());
        let view = build(Ok(&patroni), "pg1", &naming(), &db, &published);
        let codes: Vec<&str> = view.disagreements.iter().map(|d| d.code()).collect();
        assert_eq!(codes, vec!["leader-in-recovery"]);

        let down = build(Err("/primary: cannot connect"), "pg1", &naming(), &db, &db);
        assert_eq!(down.problem.as_deref(), Some("/primary: cannot connect"));
        assert_eq!(down.member.as_ref(), "pg1");
        assert!(down.members.is_empty() && down.disagreements.is_empty());
    }
}
