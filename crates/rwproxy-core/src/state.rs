//! What this node knows about the cluster, published by the cluster source.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::manager::ManagerView;
use crate::timeline::History;

/// Replication positions (LiteFS TXIDs) per database name.
pub type Positions = BTreeMap<Arc<str>, u64>;

/// Positions read at one moment, with the timeline they are on: what a token issued now
/// carries (the position header, and `rwproxy-timeline` when a timeline is known).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// Position per database.
    pub positions: Positions,
    /// The PostgreSQL timeline the positions are on; `None` for sources without timelines.
    pub timeline: Option<u32>,
}

impl Reading {
    /// The positions a source without timelines read.
    pub fn positions(positions: Positions) -> Self {
        Reading {
            positions,
            timeline: None,
        }
    }
}

/// This node's role as reported by the cluster source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// This node holds the write lease: writes go to its own app.
    Primary,
    /// This node follows a primary (which may currently be unknown).
    Replica,
    /// The source failed or has not answered yet. Treated as unsafe: no local writes.
    Unknown,
}

impl Role {
    /// The name used in health documents and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Unknown => "unknown",
        }
    }
}

/// One consistent snapshot of the cluster as seen from this node.
///
/// Exactly one task (the cluster source) writes it, through a `tokio::sync::watch` channel;
/// the request path only borrows the latest value.
///
/// Sources without timelines or a failover manager leave those fields at their default:
/// construct with `..NodeState::default()` so a new field does not touch every source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// Primary, replica or unknown.
    pub role: Role,
    /// The primary's node name when known (this node's own name when it is the primary).
    pub primary: Option<Arc<str>>,
    /// Local replication position of each configured database.
    pub positions: Positions,
    /// How far behind the primary this node is; `None` when unknown. Always zero on a primary.
    pub lag: Option<Duration>,
    /// False until the node has finished its initial sync (LiteFS's not-ready sentinel).
    pub ready: bool,
    /// Why the state is unknown (the source failed), for health and logs.
    pub problem: Option<Arc<str>>,
    /// The current timeline and its ancestors' switch points (PostgreSQL sources); what tells
    /// a token whose write a failover lost. `None` when the source has no timelines or has not
    /// learnt it yet.
    pub timeline: Option<Arc<History>>,
    /// What the failover manager (Patroni) says beside rwproxy's own view, for operators;
    /// `None` for sources without one. Never decides a route: the role above already does.
    pub manager: Option<Arc<ManagerView>>,
}

impl Default for NodeState {
    /// Unknown, with no reason, position or timeline: the safe base for
    /// `..NodeState::default()`.
    fn default() -> Self {
        NodeState {
            role: Role::Unknown,
            primary: None,
            positions: Positions::new(),
            lag: None,
            ready: false,
            problem: None,
            timeline: None,
            manager: None,
        }
    }
}

impl NodeState {
    /// The state before the source has said anything: unknown, hence unsafe.
    pub fn unknown(problem: impl Into<Arc<str>>) -> Self {
        NodeState {
            problem: Some(problem.into()),
            ..NodeState::default()
        }
    }

    /// The timeline a token issued from this state carries, when one is known.
    pub fn current_timeline(&self) -> Option<u32> {
        self.timeline
            .as_deref()
            .map(|h| h.current)
            .filter(|t| *t > 0)
    }

    /// This state's positions and timeline, as a token issued from it carries them.
    pub fn reading(&self) -> Reading {
        Reading {
            positions: self.positions.clone(),
            timeline: self.current_timeline(),
        }
    }

    /// True when this node may pass writes to its own app.
    pub fn is_primary(&self) -> bool {
        self.role == Role::Primary
    }

    /// The primary's name if it is another node (the target for forwarded requests).
    pub fn remote_primary(&self) -> Option<&Arc<str>> {
        match self.role {
            Role::Primary => None,
            _ => self.primary.as_ref(),
        }
    }

    /// The local position of one database.
    pub fn position(&self, db: &str) -> Option<u64> {
        self.positions.get(db).copied()
    }

    /// True when every database named in `token` has reached at least the token's position.
    /// Databases this node does not know are ignored: a token is never an error. An unknown
    /// state (the source failed: no positions at all) reaches no token, so a read waiting on it
    /// is not served by an app whose data may be older than the token.
    pub fn has_reached(&self, token: &Token) -> bool {
        if self.role == Role::Unknown {
            return false;
        }
        token
            .entries()
            .iter()
            .all(|(db, want)| match self.positions.get(db.as_ref()) {
                Some(have) => have >= want,
                None => true,
            })
    }
}

use crate::Token;

#[cfg(test)]
mod tests {
    use super::*;

    fn state(positions: &[(&str, u64)]) -> NodeState {
        NodeState {
            role: Role::Replica,
            primary: Some("p".into()),
            positions: positions.iter().map(|(d, p)| (Arc::from(*d), *p)).collect(),
            lag: Some(Duration::ZERO),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    #[test]
    fn reached_compares_every_known_database() {
        let s = state(&[("a.db", 10), ("b.db", 5)]);
        assert!(s.has_reached(&Token::from_pairs([("a.db", 10), ("b.db", 5)])));
        assert!(!s.has_reached(&Token::from_pairs([("a.db", 10), ("b.db", 6)])));
        assert!(s.has_reached(&Token::from_pairs([("other.db", 99)])));
    }

    #[test]
    fn an_unknown_state_keeps_its_reason() {
        let unknown = NodeState::unknown("source failed");
        assert_eq!(unknown.role, Role::Unknown);
        assert_eq!(unknown.problem.as_deref(), Some("source failed"));
        assert!(!unknown.ready);
    }

    #[test]
    fn an_unknown_state_reaches_no_token() {
        let unknown = NodeState::unknown("source failed");
        assert!(!unknown.has_reached(&Token::from_pairs([("a.db", 0)])));
    }

    #[test]
    fn role_names_and_accessors() {
        let rows = [
            (Role::Primary, "primary", true),
            (Role::Replica, "replica", false),
            (Role::Unknown, "unknown", false),
        ];
        for (role, name, primary) in rows {
            assert_eq!(role.as_str(), name);
            let s = NodeState { role, ..state(&[]) };
            assert_eq!(s.is_primary(), primary, "{role:?}");
        }
        let s = state(&[("a.db", 0), ("b.db", 7)]);
        assert_eq!(s.position("a.db"), Some(0));
        assert_eq!(s.position("b.db"), Some(7));
        assert_eq!(s.position("c.db"), None);
        assert!(!NodeState::unknown("x").is_primary());
    }

    #[test]
    fn the_timeline_comes_with_the_reading() {
        let mut s = state(&[("wal", 7)]);
        assert_eq!(s.reading(), Reading::positions(s.positions.clone()));
        s.timeline = Some(Arc::new(History::from_current(3)));
        assert_eq!(s.current_timeline(), Some(3));
        assert_eq!(s.reading().timeline, Some(3));
        s.timeline = Some(Arc::new(History::default()));
        assert_eq!(s.current_timeline(), None, "no timeline 0");
        let d = NodeState::default();
        assert_eq!((d.role, d.problem, d.ready), (Role::Unknown, None, false));
    }

    #[test]
    fn remote_primary_is_none_on_the_primary() {
        let mut s = state(&[]);
        assert_eq!(s.remote_primary().map(|p| p.as_ref()), Some("p"));
        s.role = Role::Primary;
        assert!(s.remote_primary().is_none());
    }
}
