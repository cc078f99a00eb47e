//! The timeline and the failover manager's view (Patroni's) in `rwproxy status`: what each
//! node's `/status` says of them, the cross-node checks (nodes whose managers name different
//! leaders, nodes on different timelines), and the second table's rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::NodeDoc;

/// A node's `timeline` member: the PostgreSQL timeline it runs on and its ancestors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TimelineDoc {
    /// The current timeline.
    pub current: u32,
    /// Ancestor timelines with the LSN where the history left each, oldest first.
    #[serde(default)]
    pub switches: Vec<SwitchDoc>,
}

/// Where the history left one ancestor timeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SwitchDoc {
    /// The ancestor timeline.
    pub timeline: u32,
    /// The switch point, `X/Y`.
    pub switch_lsn: String,
}

/// A node's `manager` member: what its failover manager (Patroni) said in the last poll.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ManagerDoc {
    /// The manager (`patroni`).
    pub name: String,
    /// The node's member name.
    pub member: String,
    /// Why the manager could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The leader member the manager names.
    #[serde(default)]
    pub leader: Option<String>,
    /// The leader's address by the member-to-address rule.
    #[serde(default)]
    pub leader_address: Option<String>,
    /// Whether the manager gives this node the leader lock.
    #[serde(default)]
    pub holds_lock: bool,
    /// The node's role in the manager's words.
    #[serde(default)]
    pub role: String,
    /// The node's database state in the manager's words.
    #[serde(default)]
    pub state: String,
    /// The node's timeline as the manager reports it.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// The members the manager lists.
    #[serde(default)]
    pub members: Vec<MemberDoc>,
    /// Where the manager's view and rwproxy's differ on this node.
    #[serde(default)]
    pub disagreements: Vec<DisagreementDoc>,
}

/// One member in a manager's list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct MemberDoc {
    /// Member name.
    pub name: String,
    /// Role in the manager's words.
    #[serde(default)]
    pub role: String,
    /// State in the manager's words.
    #[serde(default)]
    pub state: String,
    /// Host listed for it.
    #[serde(default)]
    pub host: Option<String>,
    /// Its timeline.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Replication lag in bytes as the manager reports it.
    #[serde(default)]
    pub lag_bytes: Option<u64>,
    /// Whether it is the leader.
    #[serde(default)]
    pub leader: bool,
}

/// One disagreement: a stable code and the sentence an operator reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DisagreementDoc {
    /// `leader-in-recovery`, `primary-without-lock`, ...
    pub code: String,
    /// What it means and what rwproxy does about it.
    pub message: String,
}

/// The problems the managers' views and timelines raise across the nodes: each node's own
/// disagreements and unreadable manager, managers naming different leaders, nodes on
/// different timelines.
pub fn problems(docs: &[&NodeDoc]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut leaders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for doc in docs {
        let Some(manager) = &doc.manager else {
            continue;
        };
        if let Some(problem) = &manager.problem {
            problems.push(format!(
                "{}: {}'s view is unknown: {problem}",
                doc.node, manager.name
            ));
            continue;
        }
        for d in &manager.disagreements {
            problems.push(format!(
                "{}: {} disagrees ({}): {}",
                doc.node, manager.name, d.code, d.message
            ));
        }
        if let Some(leader) = &manager.leader {
            leaders.entry(leader).or_default().push(&doc.node);
        }
    }
    if leaders.len() > 1 {
        problems.push(format!(
            "the nodes' managers name different leaders: {}",
            grouped(&leaders)
        ));
    }
    let mut timelines: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for doc in docs {
        if let Some(timeline) = &doc.timeline {
            timelines
                .entry(timeline.current)
                .or_default()
                .push(&doc.node);
        }
    }
    if timelines.len() > 1 {
        problems.push(format!(
            "nodes are on different timelines: {}",
            grouped(&timelines)
        ));
    }
    problems
}

/// `a (by n1, n2); b (by n3)`.
fn grouped<K: std::fmt::Display>(groups: &BTreeMap<K, Vec<&str>>) -> String {
    groups
        .iter()
        .map(|(key, nodes)| format!("{key} (by {})", nodes.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The second table's header: shown when any node has a timeline or a manager.
pub const HEADER: [&str; 5] = [
    "NODE",
    "TIMELINE",
    "LEADER (manager)",
    "MANAGER SAYS",
    "MEMBERS",
];

/// The second table's row for a node that answered: its timeline and its manager's view.
/// `None` when it has neither.
pub fn cells(doc: &NodeDoc) -> Option<Vec<String>> {
    if doc.timeline.is_none() && doc.manager.is_none() {
        return None;
    }
    let timeline = doc
        .timeline
        .as_ref()
        .map_or("-".to_owned(), |t| t.current.to_string());
    let Some(manager) = &doc.manager else {
        return Some(vec![
            doc.node.clone(),
            timeline,
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    };
    if manager.problem.is_some() {
        // The reason is on the node's PROBLEM line.
        let unknown = format!("{}: unknown", manager.name);
        return Some(vec![
            doc.node.clone(),
            timeline,
            unknown,
            "-".into(),
            "-".into(),
        ]);
    }
    let leader = match (&manager.leader, &manager.leader_address) {
        (Some(name), Some(address)) if address != name => format!("{name} ({address})"),
        (Some(name), _) => name.clone(),
        (None, _) => "none".to_owned(),
    };
    let lock = if manager.holds_lock { ", lock" } else { "" };
    let says = format!(
        "{} {}/{}{lock}",
        manager.member, manager.role, manager.state
    );
    let members = manager
        .members
        .iter()
        .map(|m| {
            let timeline = m.timeline.map(|t| format!(" tl{t}")).unwrap_or_default();
            let lag = m
                .lag_bytes
                .map(|b| format!(" lag {b}B"))
                .unwrap_or_default();
            format!("{} {}/{}{timeline}{lag}", m.name, m.role, m.state)
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(vec![doc.node.clone(), timeline, leader, says, members])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, leader: bool) -> MemberDoc {
        MemberDoc {
            name: name.into(),
            role: if leader { "leader" } else { "replica" }.into(),
            state: if leader { "running" } else { "streaming" }.into(),
            host: Some(format!("10.0.0.{}", &name[2..])),
            timeline: Some(3),
            lag_bytes: (!leader).then_some(0),
            leader,
        }
    }

    fn doc(node: &str, leader: &str, timeline: u32) -> NodeDoc {
        NodeDoc {
            node: node.into(),
            timeline: Some(TimelineDoc {
                current: timeline,
                switches: vec![],
            }),
            manager: Some(ManagerDoc {
                name: "patroni".into(),
                member: node.into(),
                leader: Some(leader.into()),
                leader_address: Some(format!("10.0.0.{}", &leader[2..])),
                holds_lock: node == leader,
                role: if node == leader { "master" } else { "replica" }.into(),
                state: "running".into(),
                timeline: Some(u64::from(timeline)),
                members: vec![
                    member("pg1", leader == "pg1"),
                    member("pg2", leader == "pg2"),
                ],
                ..ManagerDoc::default()
            }),
            ..NodeDoc::default()
        }
    }

    #[test]
    fn agreeing_nodes_raise_nothing() {
        let (a, b) = (doc("pg1", "pg1", 3), doc("pg2", "pg1", 3));
        assert_eq!(problems(&[&a, &b]), Vec::<String>::new());
    }

    #[test]
    fn split_leaders_timelines_unknown_views_and_disagreements_are_flagged() {
        let a = doc("pg1", "pg1", 3);
        let b = doc("pg2", "pg2", 4);
        let mut c = doc("pg3", "pg1", 3);
        c.manager.as_mut().unwrap().problem = Some("/primary: cannot connect".into());
        let mut d = doc("pg4", "pg1", 3);
        d.manager.as_mut().unwrap().disagreements = vec![DisagreementDoc {
            code: "leader-in-recovery".into(),
            message: "the manager names this node leader but ...".into(),
        }];
        assert_eq!(
            problems(&[&a, &b, &c, &d]),
            vec![
                "pg3: patroni's view is unknown: /primary: cannot connect",
                "pg4: patroni disagrees (leader-in-recovery): the manager names this node leader but ...",
                "the nodes' managers name different leaders: pg1 (by pg1, pg4); pg2 (by pg2)",
                "nodes are on different timelines: 3 (by pg1, pg3, pg4); 4 (by pg2)",
            ]
        );
    }

    #[test]
    fn rows_show_the_leader_the_nodes_words_and_the_members() {
        let row = cells(&doc("pg2", "pg1", 3)).unwrap();
        assert_eq!(
            row,
            [
                "pg2",
                "3",
                "pg1 (10.0.0.1)",
                "pg2 replica/running",
                "pg1 leader/running tl3, pg2 replica/streaming tl3 lag 0B",
            ]
        );
        let leader = cells(&doc("pg1", "pg1", 3)).unwrap();
        assert_eq!(leader[3], "pg1 master/running, lock");
        let mut down = doc("pg1", "pg1", 3);
        down.manager.as_mut().unwrap().problem = Some("x".into());
        assert_eq!(cells(&down).unwrap()[2], "patroni: unknown");
        let mut plain = doc("pg1", "pg1", 3);
        plain.manager = None;
        assert_eq!(cells(&plain).unwrap(), ["pg1", "3", "-", "-", "-"]);
        assert_eq!(cells(&NodeDoc::default()), None);
    }
}
