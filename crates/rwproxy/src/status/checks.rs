//! The disagreements `rwproxy status` flags (each makes it exit non-zero), and how far each
//! node's positions are behind the primary's.

use std::collections::BTreeMap;

use super::model::{NodeDoc, NodeReport};

/// One sentence per problem: unreachable or unhealthy nodes, several nodes saying primary,
/// replicas naming different primaries, a replica following a node that says it is not the
/// primary.
pub fn problems(nodes: &[NodeReport]) -> Vec<String> {
    let mut problems = Vec::new();
    for node in nodes {
        match (&node.doc, &node.error) {
            (_, Some(error)) => problems.push(format!("{} is unreachable: {error}", node.url)),
            (Some(doc), None) if !doc.healthy() => {
                let why = doc
                    .problem
                    .as_deref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default();
                problems.push(format!("{} is unhealthy ({}{why})", doc.node, doc.status));
            }
            _ => {}
        }
    }
    let docs: Vec<&NodeDoc> = nodes.iter().filter_map(|n| n.doc.as_ref()).collect();

    let primaries: Vec<&str> = docs
        .iter()
        .filter(|d| d.role == "primary")
        .map(|d| d.node.as_str())
        .collect();
    if primaries.len() > 1 {
        problems.push(format!(
            "{} nodes say they are the primary: {}",
            primaries.len(),
            primaries.join(", ")
        ));
    }

    // Which primary each replica follows; a replica that knows none is already unhealthy.
    let mut followed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for doc in docs.iter().filter(|d| d.role == "replica") {
        if let Some(primary) = doc.primary.as_deref() {
            followed.entry(primary).or_default().push(&doc.node);
        }
    }
    if followed.len() > 1 {
        let who: Vec<String> = followed
            .iter()
            .map(|(primary, replicas)| format!("{primary} (by {})", replicas.join(", ")))
            .collect();
        problems.push(format!(
            "replicas follow different primaries: {}",
            who.join("; ")
        ));
    }
    // A replica following a name its primary does not answer to (LiteFS's lease.hostname is
    // not the primary rwproxy's `node`) says so itself: only it knows its source. (With the
    // postgres sources a replica follows an address, never a node's name.)
    for doc in &docs {
        if let Some(warning) = &doc.warning {
            problems.push(format!("{}: {warning}", doc.node));
        }
    }
    for (primary, replicas) in &followed {
        let verb = if replicas.len() == 1 {
            "follows"
        } else {
            "follow"
        };
        if let Some(named) = docs.iter().find(|d| d.node == *primary) {
            if named.role != "primary" {
                problems.push(format!(
                    "{} {verb} {primary}, which says it is {}",
                    replicas.join(", "),
                    named.role
                ));
            }
        }
    }
    problems.extend(super::manager::problems(&docs));
    problems
}

/// For each node, how far each database's position is behind the primary's. Empty for every
/// node unless exactly one node says primary (with two, "behind" has no single meaning).
pub fn behind(nodes: &[NodeReport]) -> Vec<BTreeMap<String, u64>> {
    let mut primaries = nodes
        .iter()
        .filter_map(|n| n.doc.as_ref())
        .filter(|d| d.role == "primary");
    let primary = match (primaries.next(), primaries.next()) {
        (Some(primary), None) => Some(primary),
        _ => None,
    };
    nodes
        .iter()
        .map(|node| match (primary, &node.doc) {
            (Some(primary), Some(doc)) => doc
                .positions
                .iter()
                .filter_map(|(db, position)| {
                    let head = primary.positions.get(db)?;
                    Some((db.clone(), head.saturating_sub(*position)))
                })
                .collect(),
            _ => BTreeMap::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, role: &str, primary: Option<&str>, status: &str) -> NodeReport {
        NodeReport {
            url: format!("http://{name}"),
            error: None,
            doc: Some(NodeDoc {
                status: status.to_owned(),
                node: name.to_owned(),
                role: role.to_owned(),
                primary: primary.map(str::to_owned),
                positions: [("app.db".to_owned(), 10)].into(),
                ..NodeDoc::default()
            }),
            behind: BTreeMap::new(),
            rates: None,
        }
    }

    #[test]
    fn a_consistent_cluster_has_no_problem() {
        let nodes = [
            node("a", "primary", Some("a"), "ok"),
            node("b", "replica", Some("a"), "ok"),
            node("c", "replica", Some("a"), "ok"),
        ];
        assert_eq!(problems(&nodes), Vec::<String>::new());
    }

    #[test]
    fn split_primaries_diverging_replicas_and_down_nodes_are_flagged() {
        let mut down = node("d", "replica", None, "ok");
        down.doc = None;
        down.error = Some("connection refused".to_owned());
        let nodes = [
            node("a", "primary", Some("a"), "ok"),
            node("b", "primary", Some("b"), "ok"),
            node("c", "replica", Some("a"), "ok"),
            node("e", "replica", Some("b"), "lagging"),
            down,
        ];
        assert_eq!(
            problems(&nodes),
            vec![
                "e is unhealthy (lagging)",
                "http://d is unreachable: connection refused",
                "2 nodes say they are the primary: a, b",
                "replicas follow different primaries: a (by c); b (by e)",
            ]
        );
    }

    #[test]
    fn following_a_node_that_is_not_primary_is_flagged() {
        let nodes = [
            node("a", "replica", Some("b"), "ok"),
            node("b", "replica", Some("c"), "ok"),
        ];
        let found = problems(&nodes);
        assert!(
            found.contains(&"a follows b, which says it is replica".to_owned()),
            "{found:?}"
        );
    }

    #[test]
    fn a_nodes_warning_is_a_problem() {
        // LiteFS's lease.hostname is `localhost`; the primary's rwproxy calls itself `vm`.
        let mut nodes = vec![
            node("vm", "primary", None, "ok"),
            node("replica-1", "replica", Some("localhost"), "ok"),
        ];
        nodes[1].doc.as_mut().unwrap().warning =
            Some("the rwproxy at http://localhost:8080 calls itself `vm`".to_owned());
        assert_eq!(
            problems(&nodes),
            vec!["replica-1: the rwproxy at http://localhost:8080 calls itself `vm`"]
        );
    }

    #[test]
    fn behind_counts_from_the_single_primary() {
        let mut nodes = vec![
            node("a", "primary", Some("a"), "ok"),
            node("b", "replica", Some("a"), "ok"),
        ];
        nodes[0].doc.as_mut().unwrap().positions = [("app.db".to_owned(), 15)].into();
        assert_eq!(behind(&nodes)[1], [("app.db".to_owned(), 5)].into());
        assert_eq!(behind(&nodes)[0], [("app.db".to_owned(), 0)].into());
        nodes[1].doc.as_mut().unwrap().role = "primary".to_owned();
        assert!(behind(&nodes).iter().all(BTreeMap::is_empty));
    }
}
