//! One naming in the PRIMARY column. A replica of the postgres or mysql source follows its
//! primary's replication host (an address), while the primary calls itself by its `node`
//! name. When the followed address is the host of exactly one node `rwproxy status` asked (the
//! one-address-per-node layout of docs/postgres.md), the table and the disagreement checks use
//! that node's name; `--json` keeps the address as `primary_address`.

use std::collections::BTreeSet;

use super::model::NodeReport;

/// Replaces each followed address that names exactly one asked node's host with that node's
/// name. A name any node answers to is left alone, and so is an address shared by several
/// nodes (several nodes on one host: nothing tells them apart).
pub fn name_followed_primaries(nodes: &mut [NodeReport]) {
    let names: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.doc.as_ref().map(|d| d.node.clone()))
        .collect();
    let hosts: Vec<(String, String)> = nodes
        .iter()
        .filter_map(|n| Some((host_of(&n.url)?, n.doc.as_ref()?.node.clone())))
        .collect();
    for node in nodes.iter_mut() {
        let Some(doc) = node.doc.as_mut() else {
            continue;
        };
        let Some(primary) = doc.primary.as_deref() else {
            continue;
        };
        if names.contains(primary) {
            continue;
        }
        let primary = primary.trim_start_matches('[').trim_end_matches(']');
        let mut at_host = hosts.iter().filter(|(host, _)| host == primary);
        if let (Some((_, name)), None) = (at_host.next(), at_host.next()) {
            doc.primary_address = doc.primary.replace(name.clone());
        }
    }
}

/// The host of a node's URL, without IPv6 brackets.
fn host_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::status::checks;
    use crate::status::model::NodeDoc;

    fn node(url: &str, name: &str, role: &str, primary: &str) -> NodeReport {
        NodeReport {
            url: url.to_owned(),
            error: None,
            doc: Some(NodeDoc {
                status: "ok".to_owned(),
                node: name.to_owned(),
                role: role.to_owned(),
                primary: Some(primary.to_owned()),
                ..NodeDoc::default()
            }),
            behind: BTreeMap::new(),
            rates: None,
        }
    }

    fn primary_of(node: &NodeReport) -> (Option<&str>, Option<&str>) {
        let doc = node.doc.as_ref().expect("doc");
        (doc.primary.as_deref(), doc.primary_address.as_deref())
    }

    #[test]
    fn a_replication_host_becomes_the_name_of_the_node_at_that_address() {
        let mut nodes = [
            node("http://127.0.0.11:9090", "pg-a", "primary", "pg-a"),
            node("http://127.0.0.12:9090", "pg-b", "replica", "127.0.0.11"),
            node("http://[::1]:9090", "pg-c", "replica", "127.0.0.11"),
        ];
        name_followed_primaries(&mut nodes);
        assert_eq!(primary_of(&nodes[0]), (Some("pg-a"), None));
        assert_eq!(primary_of(&nodes[1]), (Some("pg-a"), Some("127.0.0.11")));
        assert_eq!(primary_of(&nodes[2]), (Some("pg-a"), Some("127.0.0.11")));
        assert!(checks::problems(&nodes).is_empty());
    }

    #[test]
    fn the_followed_node_is_checked_once_named() {
        // pg-b follows pg-a's address while pg-a says it is a replica: only visible by name.
        let mut nodes = [
            node("http://127.0.0.11:9090", "pg-a", "replica", "127.0.0.13"),
            node("http://127.0.0.12:9090", "pg-b", "replica", "127.0.0.11"),
        ];
        name_followed_primaries(&mut nodes);
        assert_eq!(primary_of(&nodes[1]), (Some("pg-a"), Some("127.0.0.11")));
        let problems = checks::problems(&nodes);
        assert!(
            problems
                .iter()
                .any(|p| p == "pg-b follows pg-a, which says it is replica"),
            "{problems:?}"
        );
    }

    #[test]
    fn names_shared_hosts_and_unknown_addresses_are_left_alone() {
        let mut nodes = [
            node("http://127.0.0.1:9090", "a", "primary", "a"),
            node("http://127.0.0.1:9091", "b", "replica", "127.0.0.1"),
            node("http://10.0.0.9:9090", "c", "replica", "db.internal"),
        ];
        name_followed_primaries(&mut nodes);
        assert_eq!(primary_of(&nodes[1]), (Some("127.0.0.1"), None));
        assert_eq!(primary_of(&nodes[2]), (Some("db.internal"), None));
    }
}
