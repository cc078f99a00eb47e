//! A failover manager's view of the cluster (Patroni's today), kept beside rwproxy's own so an
//! operator sees both, and the rules that flag where they disagree.
//!
//! The source that talks to the manager fills a [`ManagerView`] from what it already fetched
//! for its own decision (no second request), and [`ManagerView::disagreements_with`] compares
//! it with the database's own account and with the state rwproxy published. The view never
//! routes a request: the published role already combines both sides. It only explains.

use std::fmt;
use std::sync::Arc;

use crate::{NodeState, Role};

/// What the failover manager said in the source's last poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagerView {
    /// The manager's name (`patroni`).
    pub manager: &'static str,
    /// This node's member name in the manager's cluster.
    pub member: Arc<str>,
    /// Why the manager's view is unknown (its API down, slow or garbled); everything else is
    /// empty then.
    pub problem: Option<Arc<str>>,
    /// The leader member the manager names, when exactly one.
    pub leader: Option<Arc<str>>,
    /// The leader's address by the member-to-address rule (what `{primary}` becomes).
    pub leader_address: Option<Arc<str>>,
    /// The manager says this node holds the leader lock *and* runs as primary (Patroni's
    /// `GET /primary` answered 200).
    pub holds_lock: bool,
    /// This node's role in the manager's words (`master`, `primary`, `replica`...).
    pub role: Arc<str>,
    /// This node's database state in the manager's words (`running`, `starting`...).
    pub state: Arc<str>,
    /// This node's timeline as the manager reports it.
    pub timeline: Option<u64>,
    /// Every member the manager lists.
    pub members: Vec<ManagedMember>,
    /// Where the manager's view and rwproxy's differ, filled by the source with
    /// [`ManagerView::disagreements_with`].
    pub disagreements: Vec<Disagreement>,
}

/// One member of the manager's cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedMember {
    /// The member's name.
    pub name: Arc<str>,
    /// Its role in the manager's words (`leader`, `replica`, `sync_standby`...).
    pub role: Arc<str>,
    /// Its state in the manager's words (`running`, `streaming`, `stopped`...).
    pub state: Arc<str>,
    /// The host the manager lists for it.
    pub host: Option<Arc<str>>,
    /// Its timeline, when listed.
    pub timeline: Option<u64>,
    /// Its replication lag in bytes as the manager reports it (`None`: not a replica, or
    /// "unknown").
    pub lag_bytes: Option<u64>,
    /// Whether the manager names it the leader.
    pub leader: bool,
}

/// A way the manager's view and rwproxy's (or the database's) differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// This node's member name is not in the manager's member list.
    NotAMember,
    /// The manager names no leader (failover in progress, or the leader key expired).
    NoLeader,
    /// The manager names more than one leader.
    SeveralLeaders(Vec<Arc<str>>),
    /// The node's own answer says it holds the leader lock, the member list names another
    /// leader (or none): two answers from different moments.
    LockButNotLeader,
    /// The manager names this node leader, its database is still in recovery.
    LeaderInRecovery,
    /// The database runs as primary, the manager does not give this node the lock (a
    /// demotion pending, or a database the manager does not control).
    PrimaryWithoutLock,
    /// The leader has no address by the member-to-address rule.
    LeaderUnnamed,
    /// rwproxy says primary while the manager names another leader (or none).
    PrimaryNotLeader,
    /// rwproxy follows a primary that is not the manager's leader.
    FollowsNotLeader {
        /// What rwproxy follows.
        primary: Arc<str>,
        /// The leader's address.
        leader: Arc<str>,
    },
    /// The database's timeline differs from the manager's for this node.
    TimelineDiffers {
        /// The timeline rwproxy read from the database.
        database: u32,
        /// The manager's.
        manager: u64,
    },
}

impl Disagreement {
    /// A short stable code for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Disagreement::NotAMember => "not-a-member",
            Disagreement::NoLeader => "no-leader",
            Disagreement::SeveralLeaders(_) => "several-leaders",
            Disagreement::LockButNotLeader => "lock-but-not-leader",
            Disagreement::LeaderInRecovery => "leader-in-recovery",
            Disagreement::PrimaryWithoutLock => "primary-without-lock",
            Disagreement::LeaderUnnamed => "leader-unnamed",
            Disagreement::PrimaryNotLeader => "primary-not-leader",
            Disagreement::FollowsNotLeader { .. } => "follows-not-leader",
            Disagreement::TimelineDiffers { .. } => "timeline-differs",
        }
    }
}

impl fmt::Display for Disagreement {
    /// One sentence an operator reads, saying what rwproxy does about it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disagreement::NotAMember => write!(
                f,
                "this node's member name is not in the manager's member list \
                 (check cluster.member): it never takes writes"
            ),
            Disagreement::NoLeader => write!(
                f,
                "the manager names no leader (failover in progress?): writes wait for one"
            ),
            Disagreement::SeveralLeaders(names) => {
                let names: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
                write!(
                    f,
                    "the manager names several leaders ({}): no primary is followed",
                    names.join(", ")
                )
            }
            Disagreement::LockButNotLeader => write!(
                f,
                "the manager gives this node the leader lock but its member list names \
                 another leader: no writes here until both agree"
            ),
            Disagreement::LeaderInRecovery => write!(
                f,
                "the manager names this node leader but its database is still in recovery \
                 (promotion under way?): writes wait"
            ),
            Disagreement::PrimaryWithoutLock => write!(
                f,
                "the database runs as primary but the manager does not give this node the \
                 leader lock (demotion pending?): no writes here"
            ),
            Disagreement::LeaderUnnamed => write!(
                f,
                "the leader has no address by the member-to-address rule \
                 (cluster.primary_from or [cluster.members]): no primary is followed"
            ),
            Disagreement::PrimaryNotLeader => write!(
                f,
                "rwproxy says primary but the manager names another leader"
            ),
            Disagreement::FollowsNotLeader { primary, leader } => write!(
                f,
                "rwproxy follows {primary} but the manager's leader is {leader}"
            ),
            Disagreement::TimelineDiffers { database, manager } => write!(
                f,
                "the database is on timeline {database}, the manager reports {manager}"
            ),
        }
    }
}

impl ManagerView {
    /// A view that says only why the manager could not be read.
    pub fn unknown(manager: &'static str, member: Arc<str>, problem: impl Into<Arc<str>>) -> Self {
        ManagerView {
            manager,
            member,
            problem: Some(problem.into()),
            ..ManagerView::default()
        }
    }

    /// The leader members the manager lists.
    pub fn leaders(&self) -> impl Iterator<Item = &ManagedMember> {
        self.members.iter().filter(|m| m.leader)
    }

    /// Where this view differs from the database's own account (`database`: the role and
    /// timeline read from the database alone) and from the state rwproxy published
    /// (`published`). Empty when the manager could not be read (its problem says why) or when
    /// the database could not be (the published state's problem says why).
    pub fn disagreements_with(
        &self,
        database: &NodeState,
        published: &NodeState,
    ) -> Vec<Disagreement> {
        let mut found = Vec::new();
        if self.problem.is_some() || database.role == Role::Unknown {
            return found;
        }
        if !self.members.iter().any(|m| m.name == self.member) {
            found.push(Disagreement::NotAMember);
        }
        let leaders: Vec<&ManagedMember> = self.leaders().collect();
        let leader_is_me = match leaders.as_slice() {
            [] => {
                found.push(Disagreement::NoLeader);
                false
            }
            [one] => one.name == self.member,
            several => {
                found.push(Disagreement::SeveralLeaders(
                    several.iter().map(|m| m.name.clone()).collect(),
                ));
                false
            }
        };
        if self.holds_lock && !leader_is_me {
            found.push(Disagreement::LockButNotLeader);
        }
        let database_primary = database.role == Role::Primary;
        if (leader_is_me || self.holds_lock) && !database_primary {
            found.push(Disagreement::LeaderInRecovery);
        }
        if database_primary && !(leader_is_me && self.holds_lock) {
            found.push(Disagreement::PrimaryWithoutLock);
        }
        if leaders.len() == 1 && self.leader_address.is_none() {
            found.push(Disagreement::LeaderUnnamed);
        }
        if published.role == Role::Primary && !leader_is_me {
            found.push(Disagreement::PrimaryNotLeader);
        }
        if published.role != Role::Primary {
            if let (Some(primary), Some(leader)) = (&published.primary, &self.leader_address) {
                if primary != leader {
                    found.push(Disagreement::FollowsNotLeader {
                        primary: primary.clone(),
                        leader: leader.clone(),
                    });
                }
            }
        }
        if let (Some(database), Some(manager)) = (database.current_timeline(), self.timeline) {
            if u64::from(database) != manager {
                found.push(Disagreement::TimelineDiffers { database, manager });
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::History;

    fn member(name: &str, leader: bool) -> ManagedMember {
        ManagedMember {
            name: name.into(),
            role: if leader { "leader" } else { "replica" }.into(),
            state: "running".into(),
            host: Some(format!("10.0.0.{}", &name[2..]).into()),
            timeline: Some(2),
            lag_bytes: (!leader).then_some(0),
            leader,
        }
    }

    /// Patroni's view from pg1, with `leaders` named leader and pg1's lock as given.
    fn view(leaders: &[&str], holds_lock: bool) -> ManagerView {
        let members = ["pg1", "pg2", "pg3"]
            .iter()
            .map(|n| member(n, leaders.contains(n)))
            .collect();
        ManagerView {
            manager: "patroni",
            member: "pg1".into(),
            leader: match leaders {
                [one] => Some((*one).into()),
                _ => None,
            },
            leader_address: match leaders {
                [one] => Some(format!("10.0.0.{}", &one[2..]).into()),
                _ => None,
            },
            holds_lock,
            timeline: Some(2),
            members,
            ..ManagerView::default()
        }
    }

    fn db(role: Role) -> NodeState {
        NodeState {
            role,
            ready: true,
            timeline: Some(Arc::new(History::from_current(2))),
            ..NodeState::default()
        }
    }

    fn published(role: Role, primary: Option<&str>) -> NodeState {
        NodeState {
            primary: primary.map(Arc::from),
            ..db(role)
        }
    }

    fn codes(found: &[Disagreement]) -> Vec<&'static str> {
        found.iter().map(Disagreement::code).collect()
    }

    #[test]
    fn agreeing_views_have_no_disagreement() {
        let leader = view(&["pg1"], true);
        let me = published(Role::Primary, Some("10.0.0.1"));
        assert_eq!(leader.disagreements_with(&db(Role::Primary), &me), vec![]);
        let replica = view(&["pg2"], false);
        let follows = published(Role::Replica, Some("10.0.0.2"));
        assert_eq!(
            replica.disagreements_with(&db(Role::Replica), &follows),
            vec![]
        );
    }

    #[test]
    fn an_unreadable_manager_or_database_says_nothing_else() {
        let unread = ManagerView::unknown("patroni", "pg1".into(), "connection refused");
        assert_eq!(
            (unread.manager, &*unread.member),
            ("patroni", "pg1"),
            "the view still names its manager and member"
        );
        assert_eq!(unread.problem.as_deref(), Some("connection refused"));
        // The manager's problem is the whole story: no member list to find disagreements in.
        let me = published(Role::Primary, Some("10.0.0.1"));
        assert_eq!(unread.disagreements_with(&db(Role::Primary), &me), vec![]);
        // A database that cannot be read (its problem is the state's) is not "in recovery".
        let leader = view(&["pg1"], true);
        let unknown = NodeState::unknown("postgres down");
        assert_eq!(leader.disagreements_with(&unknown, &unknown), vec![]);
    }

    #[test]
    fn each_rule_names_its_disagreement() {
        let replica = db(Role::Replica);
        let primary_db = db(Role::Primary);
        let follows2 = published(Role::Replica, Some("10.0.0.2"));
        let waiting = published(Role::Replica, None);
        let says_primary = published(Role::Primary, Some("10.0.0.1"));
        let follows3 = published(Role::Replica, Some("10.0.0.3"));
        // (view, database, published, expected codes)
        let rows: Vec<(ManagerView, &NodeState, &NodeState, Vec<&str>)> = vec![
            (view(&[], false), &replica, &waiting, vec!["no-leader"]),
            (
                view(&["pg2", "pg3"], false),
                &replica,
                &waiting,
                vec!["several-leaders"],
            ),
            // Patroni says leader, PostgreSQL still in recovery.
            (
                view(&["pg1"], true),
                &replica,
                &waiting,
                vec!["leader-in-recovery"],
            ),
            // Either half is enough: the member list names it leader (the lock's key not read
            // yet), or it holds the lock while the list names another (two moments).
            (
                view(&["pg1"], false),
                &replica,
                &waiting,
                vec!["leader-in-recovery"],
            ),
            (
                view(&["pg2"], true),
                &replica,
                &follows2,
                vec!["lock-but-not-leader", "leader-in-recovery"],
            ),
            // Lock lost, PostgreSQL not demoted yet.
            (
                view(&["pg2"], false),
                &primary_db,
                &follows2,
                vec!["primary-without-lock"],
            ),
            // /primary and /cluster from two moments.
            (
                view(&["pg2"], true),
                &primary_db,
                &follows2,
                vec!["lock-but-not-leader", "primary-without-lock"],
            ),
            // rwproxy's published state against the leader (a source bug or a stale poll).
            (
                view(&["pg2"], false),
                &replica,
                &says_primary,
                vec!["primary-not-leader"],
            ),
            (
                view(&["pg2"], false),
                &replica,
                &follows3,
                vec!["follows-not-leader"],
            ),
        ];
        for (i, (view, database, published, want)) in rows.into_iter().enumerate() {
            assert_eq!(
                codes(&view.disagreements_with(database, published)),
                want,
                "row {i}"
            );
        }
    }

    #[test]
    fn membership_naming_and_timeline_are_checked() {
        let mut stranger = view(&["pg2"], false);
        stranger.member = "pg9".into();
        let follows2 = published(Role::Replica, Some("10.0.0.2"));
        assert_eq!(
            codes(&stranger.disagreements_with(&db(Role::Replica), &follows2)),
            vec!["not-a-member"]
        );
        let mut unnamed = view(&["pg2"], false);
        unnamed.leader_address = None;
        let waiting = published(Role::Replica, None);
        assert_eq!(
            codes(&unnamed.disagreements_with(&db(Role::Replica), &waiting)),
            vec!["leader-unnamed"]
        );
        let mut behind = view(&["pg2"], false);
        behind.timeline = Some(3);
        let found = behind.disagreements_with(&db(Role::Replica), &follows2);
        assert_eq!(
            found,
            vec![Disagreement::TimelineDiffers {
                database: 2,
                manager: 3
            }]
        );
        assert_eq!(
            found[0].to_string(),
            "the database is on timeline 2, the manager reports 3"
        );
    }

    #[test]
    fn unknown_sides_say_nothing_here() {
        let down = ManagerView::unknown("patroni", "pg1".into(), "connection refused");
        assert_eq!(down.problem.as_deref(), Some("connection refused"));
        let any = published(Role::Replica, None);
        assert!(down.disagreements_with(&db(Role::Replica), &any).is_empty());
        let db_down = NodeState::unknown("postgres down");
        assert!(view(&[], false)
            .disagreements_with(&db_down, &db_down)
            .is_empty());
    }

    #[test]
    fn every_disagreement_has_a_code_and_a_sentence() {
        let all = [
            Disagreement::NotAMember,
            Disagreement::NoLeader,
            Disagreement::SeveralLeaders(vec!["a".into(), "b".into()]),
            Disagreement::LockButNotLeader,
            Disagreement::LeaderInRecovery,
            Disagreement::PrimaryWithoutLock,
            Disagreement::LeaderUnnamed,
            Disagreement::PrimaryNotLeader,
            Disagreement::FollowsNotLeader {
                primary: "x".into(),
                leader: "y".into(),
            },
            Disagreement::TimelineDiffers {
                database: 1,
                manager: 2,
            },
        ];
        let codes: std::collections::BTreeSet<&str> = all.iter().map(|d| d.code()).collect();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
        assert!(all[2].to_string().contains("(a, b)"));
        assert!(all[8].to_string().contains("follows x"));
        assert!(all.iter().all(|d| d.to_string().len() > 20));
    }
}
