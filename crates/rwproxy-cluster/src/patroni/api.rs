//! Reading Patroni's REST API: `GET /primary` (this node's leader lock and role) and
//! `GET /cluster` (the members and which of them leads), fetched together, each bounded by the
//! source's `timeout` and a body limit.

use std::time::Duration;

use serde::Deserialize;

use crate::http_client;

/// A Patroni document larger than this is not a Patroni document (a three-node `/cluster` is
/// well under 1 KiB).
const MAX_DOCUMENT: usize = 256 * 1024;

/// What Patroni said about this node and the cluster in one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PatroniView {
    /// `GET /primary` answered 200: Patroni holds the leader lock for this node and its
    /// PostgreSQL runs as primary.
    pub holds_lock: bool,
    /// This node's role in Patroni's words (`master`/`primary`, `replica`, `standby_leader`…).
    pub role: String,
    /// This node's PostgreSQL state in Patroni's words (`running`, `starting`, `stopped`…).
    pub state: String,
    /// This node's timeline, when Patroni reports one.
    pub timeline: Option<u64>,
    /// Every member of the cluster, from `GET /cluster`.
    pub members: Vec<Member>,
}

/// One member of `GET /cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct Member {
    /// The member's Patroni name (`name` in its patroni.yml).
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, `standby_leader`…
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`…
    #[serde(default)]
    pub state: String,
    /// The host part of the member's `postgresql.connect_address`.
    #[serde(default)]
    pub host: Option<String>,
    /// The member's timeline.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// The replication lag Patroni reports for a replica, in bytes (`"unknown"`, or absent on
    /// the leader: `None`).
    #[serde(default, deserialize_with = "lag_bytes")]
    pub lag: Option<u64>,
}

/// A member's `lag`: a number of bytes, or anything else (Patroni writes `"unknown"`) as none.
fn lag_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_u64())
}

impl Member {
    /// True for the member that holds the leader lock of a primary (not a standby) cluster.
    pub(crate) fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "master" | "primary")
    }
}

#[derive(Deserialize)]
struct NodeDoc {
    #[serde(default)]
    role: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    timeline: Option<u64>,
}

#[derive(Deserialize)]
struct ClusterDoc {
    members: Vec<Member>,
}

/// Fetches `/primary` and `/cluster` of the API at `base` (no trailing slash) concurrently.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    base: &str,
    timeout: Duration,
) -> Result<PatroniView, String> {
    let primary = get(client, base, "/primary", timeout);
    let cluster = get(client, base, "/cluster", timeout);
    let ((primary_status, primary_body), (cluster_status, cluster_body)) =
        tokio::try_join!(primary, cluster)?;
    // /primary answers 503 with the same document when this node is not the leader.
    if primary_status != 200 && primary_status != 503 {
        return Err(format!("/primary answered {primary_status}"));
    }
    if cluster_status != 200 {
        return Err(format!("/cluster answered {cluster_status}"));
    }
    parse(primary_status == 200, &primary_body, &cluster_body)
}

/// Parses the two documents; `holds_lock` is whether `/primary` answered 200.
pub(crate) fn parse(
    holds_lock: bool,
    node_body: &[u8],
    cluster_body: &[u8],
) -> Result<PatroniView, String> {
    let node: NodeDoc =
        serde_json::from_slice(node_body).map_err(|e| format!("bad /primary document: {e}"))?;
    let cluster: ClusterDoc =
        serde_json::from_slice(cluster_body).map_err(|e| format!("bad /cluster document: {e}"))?;
    Ok(PatroniView {
        holds_lock,
        role: node.role,
        state: node.state,
        timeline: node.timeline,
        members: cluster.members,
    })
}

async fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let fetch = async {
        let resp = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .map_err(|e| format!("{path}: {}", http_client::describe(&e, Some(timeout))))?;
        let status = resp.status().as_u16();
        let body = http_client::read_limited(resp, MAX_DOCUMENT, Some(timeout))
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        Ok((status, body))
    };
    // One bound on headers and body together: a server that trickles its body is as unanswered
    // as one that says nothing.
    tokio::time::timeout(timeout, fetch)
        .await
        .unwrap_or_else(|_| Err(format!("{path}: no answer within {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents as Patroni 3.0.2 serves them (captured from a real cluster).
    const LEADER_NODE: &str = r#"{"state": "running", "role": "master", "server_version": 150018, "xlog": {"location": 22023896}, "timeline": 1, "patroni": {"version": "3.0.2", "scope": "t1"}}"#;
    const CLUSTER: &str = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running", "api_url": "http://127.0.0.11:18008/patroni", "host": "127.0.0.11", "port": 15432, "timeline": 1}, {"name": "pg2", "role": "replica", "state": "running", "api_url": "http://127.0.0.12:18008/patroni", "host": "127.0.0.12", "port": 15432, "timeline": 1, "lag": 0}]}"#;

    #[test]
    fn real_documents_parse() {
        let view = parse(true, LEADER_NODE.as_bytes(), CLUSTER.as_bytes()).unwrap();
        assert!(view.holds_lock);
        assert_eq!(view.role, "master");
        assert_eq!(view.timeline, Some(1));
        assert_eq!(view.members.len(), 2);
        assert!(view.members[0].is_leader());
        assert!(!view.members[1].is_leader());
        assert_eq!(view.members[1].host.as_deref(), Some("127.0.0.12"));
        assert_eq!((view.members[0].lag, view.members[1].lag), (None, Some(0)));
        // A replica whose lag Patroni cannot tell ("lag": "unknown") still parses.
        let starting = r#"{"members": [{"name": "pg2", "role": "replica", "state": "starting", "lag": "unknown"}]}"#;
        let view = parse(false, b"{}", starting.as_bytes()).expect("parses");
        assert_eq!(view.members[0].lag, None);
    }

    #[test]
    fn garbage_is_named() {
        let err = parse(true, b"<html>", CLUSTER.as_bytes()).unwrap_err();
        assert!(err.starts_with("bad /primary document"), "{err}");
        let err = parse(true, LEADER_NODE.as_bytes(), b"{\"members\": 3}").unwrap_err();
        assert!(err.starts_with("bad /cluster document"), "{err}");
        assert!(parse(true, LEADER_NODE.as_bytes(), b"{}").is_err());
    }
}
