//! `rwproxy check --connect`: after the file is valid, read the cluster state source once (as
//! `run` would: connect, authenticate, run the monitoring queries) and say what it found, or
//! what is wrong with it — a wrong password, a URL to something that is not PostgreSQL — at
//! the command line rather than as a write that waits and gets 503.

use std::sync::Arc;
use std::time::Duration;

use rwproxy_cluster::ClusterHandle;
use rwproxy_core::{Demand, NodeState, Role};

use crate::config::Config;

/// How long the first read may take: more than any source's own bound on one read.
const FIRST_READ: Duration = Duration::from_secs(15);

/// Reads the source once. `Ok` names the role and primary; `Err` is the source's problem.
pub fn run(config: &Config) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let node: Arc<str> = Arc::from(config.node.as_str());
        let handle = ClusterHandle::start(
            node,
            crate::node::mapping::source_spec(config),
            Demand::default(),
        );
        let mut states = handle.subscribe();
        match tokio::time::timeout(FIRST_READ, states.changed()).await {
            Ok(Ok(())) => describe(&states.borrow()),
            Ok(Err(_)) => Err("the cluster source stopped".to_owned()),
            Err(_) => Err(format!(
                "the cluster source gave no state within {FIRST_READ:?}"
            )),
        }
    })
}

/// One line for the first state read.
fn describe(state: &NodeState) -> Result<String, String> {
    match state.role {
        Role::Unknown => Err(state
            .problem
            .as_deref()
            .unwrap_or("state unknown")
            .to_owned()),
        Role::Primary => Ok("source: this node is the primary".to_owned()),
        Role::Replica => Ok(match &state.primary {
            Some(primary) => format!("source: this node is a replica of {primary}"),
            None => "source: this node is a replica; no primary is known now".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_state_is_its_problem() {
        assert_eq!(
            describe(&NodeState::unknown("password authentication failed")),
            Err("password authentication failed".to_owned())
        );
    }
}
