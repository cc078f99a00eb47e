//! `/peers` on the admin listener: the cluster table of the operator's page. It shows what the
//! node already knows for peer-aware health (the [`PeerView`] the peer poller publishes after
//! every round, `cluster.peers` / `cluster.peers_dns`) beside this node's own state, and flags
//! the disagreements an operator looks for first.
//!
//! The checks are deliberately small, and not `rwproxy status`'s (that code lives in the
//! binary, out of this crate's reach): two nodes claiming the primary role, replicas that
//! follow different primaries (compared by the name each reports, so a source that names the
//! primary by address and one that names it by node name would differ), and peers not heard in
//! the last round. Nothing secret is in the document: names, roles, positions, lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rwproxy_core::{NodeState, Role};
use serde::Serialize;
use tokio::sync::watch;

use crate::health::{PeerReport, PeerView, Stance};

/// What the cluster table reads: this node's state and its peers' latest view. A node without
/// peers holds a view nothing writes (`known: 0`), and the page hides the table.
#[derive(Clone, Debug)]
pub struct PeerTable {
    /// This node's name.
    pub node: Arc<str>,
    /// This node's state.
    pub state: watch::Receiver<NodeState>,
    /// The peer poller's latest round.
    pub view: watch::Receiver<PeerView>,
}

impl PeerTable {
    /// The `/peers` document.
    pub(crate) fn document(&self) -> Vec<u8> {
        let view = self.view.borrow().clone();
        let own = self.state.borrow().clone();
        serde_json::to_vec(&PeersDoc::new(&self.node, &own, &view)).unwrap_or_default()
    }
}

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    node: String,
    /// This node (its own state), not a peer's answer.
    this_node: bool,
    role: &'static str,
    primary: Option<String>,
    lag_ms: Option<u64>,
    /// The peer's own `health.max_lag` (none for this node's row: see `/status`).
    max_lag_ms: Option<u64>,
    ready: bool,
    positions: BTreeMap<String, u64>,
    /// `reaches` (a primary exists for it), `lost` (it lost the primary), `abstains` (cannot
    /// tell): the health peer-aware verdicts read.
    stance: &'static str,
}

#[derive(Debug, Serialize)]
struct PeersDoc {
    node: String,
    /// Peers configured or resolved (this node excluded).
    known: usize,
    /// Peers that answered the last round.
    heard: usize,
    /// This node first, then every peer heard.
    nodes: Vec<Row>,
    /// One sentence per disagreement; empty when the nodes agree.
    disagreements: Vec<String>,
}

fn stance_name(stance: Stance) -> &'static str {
    match stance {
        Stance::Reaches => "reaches",
        Stance::Lost => "lost",
        Stance::Abstains => "abstains",
    }
}

impl PeersDoc {
    fn new(node: &str, own: &NodeState, view: &PeerView) -> Self {
        let own_report = PeerReport {
            node: node.to_owned(),
            role: own.role,
            primary: own.primary.as_deref().map(str::to_owned),
            lag: own.lag,
            max_lag: None,
            ready: own.ready,
            positions: own
                .positions
                .iter()
                .map(|(db, p)| (db.to_string(), *p))
                .collect(),
        };
        let all: Vec<&PeerReport> = std::iter::once(&own_report).chain(&view.heard).collect();
        let nodes = all
            .iter()
            .enumerate()
            .map(|(i, r)| Row {
                node: r.node.clone(),
                this_node: i == 0,
                role: r.role.as_str(),
                primary: r.primary.clone(),
                lag_ms: r.lag.map(|d| d.as_millis() as u64),
                max_lag_ms: r.max_lag.map(|d| d.as_millis() as u64),
                ready: r.ready,
                positions: r.positions.clone(),
                // This node's row has no max_lag, so lag alone never makes it `lost`: its
                // own verdict is on /status.
                stance: stance_name(r.stance()),
            })
            .collect();
        PeersDoc {
            node: node.to_owned(),
            known: view.known,
            heard: view.heard.len(),
            nodes,
            disagreements: disagreements(&all, view),
        }
    }
}

/// The flags of the table: two primaries, replicas following different primaries, peers not
/// heard. Empty when there are no peers.
fn disagreements(all: &[&PeerReport], view: &PeerView) -> Vec<String> {
    if view.known == 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    let primaries: Vec<&str> = all
        .iter()
        .filter(|r| r.role == Role::Primary)
        .map(|r| r.node.as_str())
        .collect();
    if primaries.len() > 1 {
        found.push(format!(
            "{} nodes claim the primary role: {}",
            primaries.len(),
            primaries.join(", ")
        ));
    }
    let followed: BTreeSet<&str> = all
        .iter()
        .filter(|r| r.role == Role::Replica)
        .filter_map(|r| r.primary.as_deref())
        .collect();
    if followed.len() > 1 {
        let list: Vec<&str> = followed.into_iter().collect();
        found.push(format!(
            "replicas follow different primaries: {}",
            list.join(", ")
        ));
    }
    let unheard = view.known.saturating_sub(view.heard.len());
    if unheard > 0 {
        found.push(format!(
            "{unheard} of {} peer(s) not heard in the last round",
            view.known
        ));
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn peer(node: &str, role: Role, primary: Option<&str>) -> PeerReport {
        PeerReport {
            node: node.to_owned(),
            role,
            primary: primary.map(str::to_owned),
            lag: Some(Duration::ZERO),
            max_lag: Some(Duration::from_secs(10)),
            ready: true,
            positions: BTreeMap::new(),
        }
    }

    fn own(role: Role, primary: Option<&str>) -> NodeState {
        let mut state = NodeState::unknown("test");
        state.role = role;
        state.primary = primary.map(Arc::from);
        state.ready = true;
        state
    }

    fn flags(own_state: NodeState, known: usize, heard: Vec<PeerReport>) -> Vec<String> {
        PeersDoc::new("a", &own_state, &PeerView { known, heard }).disagreements
    }

    #[test]
    fn an_agreeing_cluster_has_no_flags() {
        let heard = vec![peer("b", Role::Replica, Some("a"))];
        assert!(flags(own(Role::Primary, Some("a")), 1, heard).is_empty());
        assert!(flags(own(Role::Replica, None), 0, Vec::new()).is_empty());
    }

    #[test]
    fn two_primaries_different_primaries_and_unheard_peers_are_flagged() {
        let heard = vec![
            peer("b", Role::Primary, Some("b")),
            peer("c", Role::Replica, Some("a")),
            peer("d", Role::Replica, Some("b")),
        ];
        let found = flags(own(Role::Primary, Some("a")), 4, heard);
        assert_eq!(
            found,
            [
                "2 nodes claim the primary role: a, b",
                "replicas follow different primaries: a, b",
                "1 of 4 peer(s) not heard in the last round",
            ]
        );
    }

    #[test]
    fn this_node_is_the_first_row() {
        let doc = PeersDoc::new(
            "a",
            &own(Role::Replica, Some("b")),
            &PeerView {
                known: 1,
                heard: vec![peer("b", Role::Primary, Some("b"))],
            },
        );
        let names: Vec<(&str, bool)> = doc
            .nodes
            .iter()
            .map(|r| (r.node.as_str(), r.this_node))
            .collect();
        assert_eq!(names, [("a", true), ("b", false)]);
        assert_eq!(doc.nodes[1].stance, "reaches");
    }
}
