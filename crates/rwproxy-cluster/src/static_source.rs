//! The static source: a primary fixed by configuration, with no lag or position information.

use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{NodeState, Positions, Role};

use crate::publish::Publisher;

/// The state a static configuration implies for `node`.
pub(crate) fn state(node: &str, primary: &str) -> NodeState {
    if primary.trim().is_empty() {
        // Forwarding to an empty host name cannot work; say so instead of pretending.
        return NodeState::unknown("static source: the primary's name is empty");
    }
    let role = if node == primary {
        Role::Primary
    } else {
        Role::Replica
    };
    NodeState {
        role,
        primary: Some(Arc::from(primary)),
        positions: Positions::new(),
        lag: Some(Duration::ZERO),
        ready: true,
        problem: None,
        ..NodeState::default()
    }
}

/// Publishes the static state once, then keeps the sender alive so receivers do not see the
/// channel close (which would read as the source going away).
pub(crate) async fn run(node: &str, primary: &str, publisher: &mut Publisher) {
    publisher.publish(state(node, primary));
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_when_named_else_replica_of_it() {
        let me = state("iad-1", "iad-1");
        assert_eq!(me.role, Role::Primary);
        assert_eq!(me.primary.as_deref(), Some("iad-1"));
        assert!(me.ready);
        assert_eq!(me.lag, Some(Duration::ZERO));
        assert!(me.positions.is_empty());
        let other = state("ams-1", "iad-1");
        assert_eq!(other.role, Role::Replica);
        assert_eq!(other.remote_primary().map(|p| &**p), Some("iad-1"));
        assert!(other.problem.is_none());
        assert_eq!(state("a", " ").role, Role::Unknown);
    }
}
