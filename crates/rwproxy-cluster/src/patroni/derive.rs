//! Combining the PostgreSQL source's view of this node with Patroni's: a pure function,
//! table-tested.
//!
//! * **Primary** only while all three agree: `GET /primary` answered 200 (Patroni holds the
//!   leader lock for this node), `GET /cluster` names this node's member as the leader, and
//!   PostgreSQL is out of recovery. Anything less is not primary, even for one poll.
//! * **`{primary}`** is the leader member's address by [`MemberNaming`]; every node, the
//!   primary included, names the primary the same way.
//! * A PostgreSQL server still out of recovery while Patroni says it is not the leader (the lock
//!   was lost, demotion has not happened yet) is published as a replica with an unknown lag: it
//!   takes no write, and its reads are not trusted as fresh.
//! * This node named leader while its PostgreSQL is still in recovery (a promotion under way)
//!   has no primary for that moment, so writes wait (`writes.primary_wait`) instead of being
//!   forwarded to this very node.
//! * Patroni unanswered, or PostgreSQL unanswered: unknown, hence unsafe.

use rwproxy_core::{NodeState, Role};
use std::collections::BTreeMap;
use std::sync::Arc;

use super::api::{Member, PatroniView};
use crate::postgres::host_name;

/// Which member field becomes `{primary}` (`cluster.primary_from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberField {
    /// The host of the member's `postgresql.connect_address` (the default).
    Host,
    /// The member's Patroni name.
    Name,
}

/// The rule that maps a Patroni member to the name used for `{primary}`: the per-member table
/// first (`[cluster.members]`), then the chosen field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberNaming {
    /// The field used for members absent from `table`.
    pub field: MemberField,
    /// Member name → `{primary}`, overriding `field`.
    pub table: BTreeMap<String, String>,
}

impl MemberNaming {
    /// The `{primary}` name of `member`; `None` when the rule gives nothing (no `host`).
    pub(crate) fn address(&self, member: &Member) -> Option<Arc<str>> {
        if let Some(fixed) = self.table.get(&member.name) {
            return Some(Arc::from(fixed.as_str()));
        }
        match self.field {
            MemberField::Name => Some(Arc::from(member.name.as_str())),
            MemberField::Host => member
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(host_name),
        }
    }
}

/// This node's state from the PostgreSQL source's state (`pg`) and Patroni's view.
///
/// `member` is this node's Patroni member name.
pub(crate) fn combine(
    pg: NodeState,
    patroni: Result<&PatroniView, &str>,
    member: &str,
    naming: &MemberNaming,
) -> NodeState {
    let view = match patroni {
        Ok(view) => view,
        Err(reason) => return NodeState::unknown(format!("patroni {reason}")),
    };
    if pg.role == Role::Unknown {
        return pg;
    }
    let leaders: Vec<&Member> = view.members.iter().filter(|m| m.is_leader()).collect();
    let leader = match leaders.as_slice() {
        [one] => Some(*one),
        // None, or (never from a sane DCS) several: no primary is known.
        _ => None,
    };
    let leader_is_me = leader.is_some_and(|l| l.name == member);
    let leader_address = leader.and_then(|l| naming.address(l));
    if view.holds_lock && leader_is_me && pg.role == Role::Primary {
        if let Some(address) = leader_address {
            return NodeState {
                primary: Some(address),
                ..pg
            };
        }
        return NodeState::unknown(format!(
            "patroni: the leader member {member:?} has no host to name it by \
             (set cluster.primary_from = \"name\" or [cluster.members])"
        ));
    }
    let lag = match pg.role {
        // Out of recovery without the lock: a diverging former primary, not a fresh replica.
        Role::Primary => None,
        _ => pg.lag,
    };
    NodeState {
        role: Role::Replica,
        // Never this node itself: a write forwarded to it would come back as a loop.
        primary: if leader_is_me { None } else { leader_address },
        lag,
        ..pg
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rwproxy_core::Positions;

    use super::*;

    fn member(name: &str, role: &str, host: Option<&str>) -> Member {
        Member {
            name: name.into(),
            role: role.into(),
            state: "running".into(),
            host: host.map(str::to_owned),
            timeline: Some(2),
            lag: None,
        }
    }

    fn view(holds_lock: bool, leader: Option<&str>) -> PatroniView {
        let members = ["pg1", "pg2", "pg3"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let role = if Some(*name) == leader {
                    "leader"
                } else {
                    "replica"
                };
                member(name, role, Some(&format!("10.0.0.{}", i + 1)))
            })
            .collect();
        PatroniView {
            holds_lock,
            role: if holds_lock { "master" } else { "replica" }.into(),
            state: "running".into(),
            timeline: Some(2),
            members,
        }
    }

    fn pg(role: Role) -> NodeState {
        NodeState {
            role,
            primary: None,
            positions: Positions::from([(Arc::from("wal"), 42)]),
            lag: Some(match role {
                Role::Primary => Duration::ZERO,
                _ => Duration::from_millis(300),
            }),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    fn by_host() -> MemberNaming {
        MemberNaming {
            field: MemberField::Host,
            table: BTreeMap::new(),
        }
    }

    /// (pg role, /primary 200, leader, expected role, expected primary, expected lag)
    type Row = (
        Role,
        bool,
        Option<&'static str>,
        Role,
        Option<&'static str>,
        Option<Duration>,
    );

    #[test]
    fn the_three_views_decide_the_role_and_the_primary() {
        // (pg role, /primary 200, leader, expected role, expected primary, expected lag)
        let ms = Duration::from_millis;
        let rows: [Row; 8] = [
            // All agree: primary, named by its own address.
            (
                Role::Primary,
                true,
                Some("pg1"),
                Role::Primary,
                Some("10.0.0.1"),
                Some(ms(0)),
            ),
            // A replica following the leader.
            (
                Role::Replica,
                false,
                Some("pg2"),
                Role::Replica,
                Some("10.0.0.2"),
                Some(ms(300)),
            ),
            // Lock lost, PostgreSQL not demoted yet: no writes, forward to the new leader.
            (
                Role::Primary,
                false,
                Some("pg2"),
                Role::Replica,
                Some("10.0.0.2"),
                None,
            ),
            // Lock lost, no leader yet: no writes, no primary.
            (Role::Primary, false, None, Role::Replica, None, None),
            // /primary says 200 but /cluster names another leader (views from two moments).
            (
                Role::Primary,
                true,
                Some("pg2"),
                Role::Replica,
                Some("10.0.0.2"),
                None,
            ),
            // Patroni says leader, /primary not yet 200 (promotion under way): writes wait.
            (Role::Primary, false, Some("pg1"), Role::Replica, None, None),
            // Promotion under way, PostgreSQL still in recovery (Patroni's word without
            // PostgreSQL's is not enough): writes wait, and not for this very node.
            (
                Role::Replica,
                true,
                Some("pg1"),
                Role::Replica,
                None,
                Some(ms(300)),
            ),
            // No leader at all (failover in progress): replica without a primary.
            (
                Role::Replica,
                false,
                None,
                Role::Replica,
                None,
                Some(ms(300)),
            ),
        ];
        for (i, (pg_role, lock, leader, role, primary, lag)) in rows.into_iter().enumerate() {
            let got = combine(pg(pg_role), Ok(&view(lock, leader)), "pg1", &by_host());
            assert_eq!(got.role, role, "row {i}");
            assert_eq!(got.primary.as_deref(), primary, "row {i}");
            assert_eq!(got.lag, lag, "row {i}");
            assert_eq!(got.position("wal"), Some(42), "row {i}: positions kept");
        }
    }

    #[test]
    fn patroni_or_postgres_unanswered_is_unknown() {
        let got = combine(
            pg(Role::Primary),
            Err("/primary: cannot connect"),
            "pg1",
            &by_host(),
        );
        assert_eq!(got.role, Role::Unknown);
        assert_eq!(
            got.problem.as_deref(),
            Some("patroni /primary: cannot connect")
        );
        let down = NodeState::unknown("postgres 127.0.0.1:5432: cannot connect");
        let got = combine(
            down.clone(),
            Ok(&view(true, Some("pg1"))),
            "pg1",
            &by_host(),
        );
        assert_eq!(got, down);
    }

    #[test]
    fn two_leaders_are_no_leader() {
        let mut two = view(true, Some("pg1"));
        two.members[1].role = "leader".into();
        let got = combine(pg(Role::Primary), Ok(&two), "pg1", &by_host());
        assert_eq!(got.role, Role::Replica);
        assert_eq!(got.primary, None);
    }

    #[test]
    fn a_standby_leader_is_not_a_primary() {
        let mut standby = view(false, None);
        standby.members[0].role = "standby_leader".into();
        let got = combine(pg(Role::Replica), Ok(&standby), "pg1", &by_host());
        assert_eq!((got.role, got.primary), (Role::Replica, None));
    }

    #[test]
    fn members_are_named_by_the_table_then_the_field() {
        let mut naming = MemberNaming {
            field: MemberField::Name,
            table: BTreeMap::from([("pg2".to_owned(), "db-b.internal".to_owned())]),
        };
        let pg1 = member("pg1", "leader", Some("10.0.0.1"));
        let pg2 = member("pg2", "leader", Some("10.0.0.2"));
        let v6 = member("pg3", "leader", Some("fd00::3"));
        let hostless = member("pg4", "leader", None);
        assert_eq!(naming.address(&pg1).as_deref(), Some("pg1"));
        assert_eq!(naming.address(&pg2).as_deref(), Some("db-b.internal"));
        naming.field = MemberField::Host;
        assert_eq!(naming.address(&pg1).as_deref(), Some("10.0.0.1"));
        assert_eq!(naming.address(&pg2).as_deref(), Some("db-b.internal"));
        assert_eq!(naming.address(&v6).as_deref(), Some("[fd00::3]"));
        assert_eq!(naming.address(&hostless), None);
        // The leader has no host: this node cannot name itself, so it is not published primary.
        let mut v = view(true, Some("pg1"));
        v.members[0].host = None;
        let got = combine(pg(Role::Primary), Ok(&v), "pg1", &by_host());
        assert_eq!(got.role, Role::Unknown);
        assert!(got.problem.as_deref().unwrap_or("").contains("no host"));
    }
}
