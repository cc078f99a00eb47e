//! What `rwproxy status` learns about each node, shaped for the table and for `--json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manager::{ManagerDoc, TimelineDoc};

/// A node's own account of itself: the admin listener's `/status` document (or, from a proxy
/// listener, the health document, which lacks version and uptime).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct NodeDoc {
    /// The health verdict: `ok`, `lagging`, `no-primary`, ...
    pub status: String,
    /// The node's name (`node` in its configuration).
    pub node: String,
    /// `primary`, `replica` or `unknown`.
    pub role: String,
    /// The primary this node follows (its own name on the primary); a followed address that is
    /// an asked node's host is replaced by that node's name (see `naming`).
    #[serde(default)]
    pub primary: Option<String>,
    /// The address the node reported as its primary, when `primary` was replaced by a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_address: Option<String>,
    /// Replication lag in milliseconds, when known.
    #[serde(default)]
    pub lag_ms: Option<u64>,
    /// The lag threshold of its health verdict.
    #[serde(default)]
    pub max_lag_ms: Option<u64>,
    /// Position per database.
    #[serde(default)]
    pub positions: BTreeMap<String, u64>,
    /// Why the cluster source fails, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// A problem that does not change the verdict (a primary answering to another name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The rwproxy version (only `/status` has it).
    #[serde(default)]
    pub version: Option<String>,
    /// Seconds since the node started (only `/status` has it).
    #[serde(default)]
    pub uptime_seconds: Option<f64>,
    /// The PostgreSQL timeline (PostgreSQL sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<TimelineDoc>,
    /// The failover manager's view beside rwproxy's (the Patroni source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<ManagerDoc>,
}

impl NodeDoc {
    /// Whether the node says it should receive traffic.
    pub fn healthy(&self) -> bool {
        self.status == "ok"
    }
}

/// Request counters read from one `/metrics` scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// Sum of `rwproxy_requests_total` over every label.
    pub requests: f64,
    /// The part of it with `code="5xx"`.
    pub errors: f64,
}

/// Request and error rates of one node.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rates {
    /// Requests answered per second.
    pub requests_per_second: f64,
    /// Responses with a 5xx status per second (rwproxy's own and the app's).
    pub errors_per_second: f64,
    /// Over how many seconds: since the previous refresh under `--watch`, else since start.
    pub window_seconds: f64,
    /// `true` when the window is the node's whole uptime (the first look at a node).
    pub since_start: bool,
}

/// Everything `rwproxy status` shows for one node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeReport {
    /// The base URL it was asked at.
    pub url: String,
    /// Why no document came back (unreachable, timeout, not rwproxy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the node said, when it answered.
    #[serde(flatten)]
    pub doc: Option<NodeDoc>,
    /// How far each database is behind the primary's position (absent without one primary).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub behind: BTreeMap<String, u64>,
    /// Request rates, when `/metrics` answered (admin listener URLs only).
    pub rates: Option<Rates>,
}

impl NodeReport {
    /// The node's name, or its URL when it did not answer.
    pub fn name(&self) -> &str {
        self.doc
            .as_ref()
            .map_or(self.url.as_str(), |d| d.node.as_str())
    }
}

/// The whole cluster as seen now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// One entry per node asked, in the order given.
    pub nodes: Vec<NodeReport>,
    /// Disagreements and unhealthy nodes, one sentence each; empty when all is well.
    pub problems: Vec<String>,
}

impl Report {
    /// No problem found.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}
