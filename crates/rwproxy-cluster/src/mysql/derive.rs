//! Turning a poll's [`Snapshot`] into a [`NodeState`].
//!
//! # Role
//!
//! * replication configured (`SHOW SLAVE STATUS` / `SHOW REPLICA STATUS` has a row): a
//!   **replica**, whatever `read_only` says (a failover manager that stopped replication but has
//!   not reset it yet has not promoted this server);
//! * no replication and `read_only = 0`: the **primary**;
//! * no replication and `read_only = 1`: neither. A server being promoted or fenced by a
//!   failover manager, or a former replica whose replication was removed: rwproxy publishes a
//!   replica with no primary known and an unknown lag, so writes wait `writes.primary_wait`
//!   and then get 503 `no-primary`, and `/health` says the lag is unknown.
//!
//! # Position and lag
//!
//! The one position is the number of transactions the server has ([`GtidSet::count`]): all of
//! them on the primary, the applied ones on a replica. Lag is measured as for PostgreSQL (see
//! `postgres/derive.rs`): the target is what the replica knows its primary has (applied plus
//! received by the IO thread), and the lag is the age of the oldest target the applied position
//! has not reached. An idle cluster is fresh, a stopped or slow SQL thread grows a lag while the
//! primary writes, and an IO thread cut off from its primary grows it from the last poll that
//! saw it connected.

use std::time::Duration;

use rwproxy_core::{GtidSet, NodeState, Positions, Role};
use tokio::time::Instant;

use super::query::Snapshot;
// The same naming settings and lag design as the PostgreSQL source.
use crate::postgres::derive::{host_name, in_steps, LagTracker, Naming};

/// The node's state from one poll.
pub(crate) fn derive(
    naming: &Naming<'_>,
    snapshot: &Snapshot,
    lag: &mut LagTracker,
    now: Instant,
) -> NodeState {
    let position = |set: &GtidSet| -> Positions {
        Positions::from([(naming.position_key.clone(), set.count())])
    };
    let Some(replication) = &snapshot.replication else {
        if snapshot.writable {
            return NodeState {
                role: Role::Primary,
                primary: Some(naming.node.clone()),
                positions: position(&snapshot.current),
                lag: Some(Duration::ZERO),
                ready: true,
                problem: None,
                ..NodeState::default()
            };
        }
        return NodeState {
            role: Role::Replica,
            primary: None,
            positions: position(&snapshot.current),
            lag: None,
            ready: true,
            problem: None,
            ..NodeState::default()
        };
    };
    let primary = replication
        .receiving
        .then(|| match naming.primary_override {
            Some(name) => Some(name.clone()),
            None => replication.source_host.as_deref().map(host_name),
        })
        .flatten();
    let applied = snapshot.applied.count();
    let target = replication
        .receiving
        .then(|| snapshot.applied.union(&replication.received).count());
    NodeState {
        role: Role::Replica,
        primary,
        positions: position(&snapshot.applied),
        lag: lag.observe(now, applied, target).map(in_steps),
        ready: true,
        problem: None,
        ..NodeState::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::query::Replication;
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn gtids(text: &str) -> GtidSet {
        GtidSet::parse(text).expect("a GTID set")
    }

    fn naming<'a>(node: &'a Arc<str>, key: &'a Arc<str>) -> Naming<'a> {
        Naming {
            node,
            position_key: key,
            primary_override: None,
        }
    }

    fn replica(applied: &str, received: &str, receiving: bool) -> Snapshot {
        Snapshot {
            writable: false,
            current: gtids(applied),
            applied: gtids(applied),
            replication: Some(Replication {
                source_host: Some("10.0.0.1".into()),
                receiving,
                received: gtids(received),
            }),
        }
    }

    fn standalone(writable: bool) -> Snapshot {
        Snapshot {
            writable,
            current: gtids("0-1-42"),
            applied: gtids("0-1-40"),
            replication: None,
        }
    }

    #[test]
    fn role_table() {
        let (node, key) = (Arc::from("me"), Arc::from("gtid"));
        let derived = |s: &Snapshot| {
            derive(
                &naming(&node, &key),
                s,
                &mut LagTracker::default(),
                Instant::now(),
            )
        };
        let primary = derived(&standalone(true));
        assert_eq!(primary.role, Role::Primary);
        assert_eq!(primary.primary.as_deref(), Some("me"));
        assert_eq!(primary.position("gtid"), Some(42), "all it has");
        assert_eq!(primary.lag, Some(Duration::ZERO));
        assert!(primary.ready);

        let fenced = derived(&standalone(false));
        assert_eq!(fenced.role, Role::Replica);
        assert_eq!(fenced.primary, None);
        assert_eq!(fenced.lag, None);
        assert_eq!(fenced.position("gtid"), Some(42));

        // Replication configured: a replica even when writable.
        let mut writable_replica = replica("0-1-7", "0-1-7", true);
        writable_replica.writable = true;
        let state = derived(&writable_replica);
        assert_eq!(state.role, Role::Replica);
        assert_eq!(state.primary.as_deref(), Some("10.0.0.1"));
        assert_eq!(state.position("gtid"), Some(7), "what it applied");
        assert_eq!(state.lag, Some(Duration::ZERO));
        assert!(state.ready);
    }

    #[test]
    fn the_primary_is_known_while_the_io_thread_is_connected() {
        let (node, key, fixed) = (Arc::from("me"), Arc::from("gtid"), Arc::from("db-1"));
        let now = Instant::now();
        let mut named = naming(&node, &key);
        named.primary_override = Some(&fixed);
        let state = derive(
            &named,
            &replica("0-1-7", "0-1-7", true),
            &mut LagTracker::default(),
            now,
        );
        assert_eq!(state.primary.as_deref(), Some("db-1"));
        let state = derive(
            &named,
            &replica("0-1-7", "0-1-7", false),
            &mut LagTracker::default(),
            now,
        );
        assert_eq!(state.primary, None, "not connected: no primary known");
        assert_eq!(state.lag, None, "never seen connected: lag unknown");
        let mut no_host = replica("0-1-7", "0-1-7", true);
        if let Some(r) = no_host.replication.as_mut() {
            r.source_host = None;
        }
        let state = derive(&named, &no_host, &mut LagTracker::default(), now);
        assert_eq!(state.primary.as_deref(), Some("db-1"), "the override");
        let state = derive(
            &naming(&node, &key),
            &no_host,
            &mut LagTracker::default(),
            now,
        );
        assert_eq!(state.primary, None);
    }

    #[test]
    fn a_stopped_sql_thread_grows_a_lag_while_the_primary_writes() {
        let (node, key) = (Arc::from("me"), Arc::from("gtid"));
        let names = naming(&node, &key);
        let mut tracker = LagTracker::default();
        let t0 = Instant::now();
        let fresh = derive(&names, &replica("0-1-5", "0-1-5", true), &mut tracker, t0);
        assert_eq!(fresh.lag, Some(Duration::ZERO), "idle is fresh");
        let behind = replica("0-1-5", "0-1-9", true);
        assert_eq!(
            derive(&names, &behind, &mut tracker, t0).lag,
            Some(Duration::ZERO)
        );
        let later = derive(&names, &behind, &mut tracker, t0 + 3 * SECOND);
        assert_eq!(later.lag, Some(3 * SECOND));
        let caught_up = replica("0-1-9", "0-1-9", true);
        let state = derive(&names, &caught_up, &mut tracker, t0 + 4 * SECOND);
        assert_eq!(state.lag, Some(Duration::ZERO));
        // Cut off from the primary: the lag grows from the last poll that saw it connected.
        let cut_off = replica("0-1-9", "0-1-9", false);
        let state = derive(&names, &cut_off, &mut tracker, t0 + 6 * SECOND);
        assert_eq!(state.lag, Some(2 * SECOND));
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(&*host_name("::1"), "[::1]");
        assert_eq!(&*host_name("[::1]"), "[::1]");
        assert_eq!(&*host_name("db.internal"), "db.internal");
    }
}
