//! Real rwproxy nodes in front of test apps, with LiteFS-like mounts as their cluster source.

use std::sync::Arc;
use std::time::Duration;

use rwproxy::config::{self, Config};
use rwproxy::Node;
use tokio::net::TcpListener;

use crate::app::App;
use crate::eventually;
use crate::mount::Mount;

/// One node: its mount, its app and its rwproxy.
pub struct TestNode {
    /// The node's name: its proxy's `127.0.0.1:PORT`, so `primary_url = "http://{primary}"`.
    pub name: String,
    pub mount: Arc<Mount>,
    pub app: App,
    pub node: Option<Node>,
}

impl TestNode {
    /// `http://127.0.0.1:PORT` of the proxy listener.
    pub fn url(&self) -> String {
        format!("http://{}", self.name)
    }

    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self) -> String {
        let node = self.node.as_ref().expect("running");
        format!("http://{}", node.admin_addr().expect("admin enabled"))
    }

    /// `127.0.0.1:PORT` of the HAProxy agent-check listener (`admin.agent_listen`).
    pub fn agent_addr(&self) -> std::net::SocketAddr {
        let node = self.node.as_ref().expect("running");
        node.agent_addr().expect("agent listener enabled")
    }

    /// Waits (at most 5 s) until this node's published state satisfies `check`.
    pub async fn wait_state(&self, what: &str, check: impl Fn(&rwproxy_core::NodeState) -> bool) {
        let state = self.node.as_ref().expect("running").state();
        eventually(Duration::from_secs(5), what, || {
            let ok = check(&state.borrow());
            async move { ok.then_some(()) }
        })
        .await;
    }

    /// Stops the proxy (drains) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }
}

/// A cluster of nodes; node 0 starts as the primary.
pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub databases: Vec<String>,
}

/// The base configuration of every test node; `tweak` adjusts it per test.
pub(crate) fn base_config(name: &str, app: &str, mount: &Mount, databases: &[&str]) -> Config {
    let dbs: Vec<String> = databases.iter().map(|d| format!("\"{d}\"")).collect();
    let text = format!(
        r#"
node = "{name}"
[proxy]
listen = "127.0.0.1:0"
app = "{app}"
app_connect_retry = "2s"
drain_timeout = "5s"
[admin]
listen = "127.0.0.1:0"
[cluster]
source = "litefs"
mount = "{mount}"
databases = [{dbs}]
poll = "20ms"
[writes]
primary_url = "http://{{primary}}"
primary_wait = "2s"
timeout = "10s"
connect_timeout = "1s"
[consistency]
wait = "2s"
[log]
access = false
"#,
        mount = mount.path().display(),
        dbs = dbs.join(", "),
    );
    config::parse(&text).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

impl Cluster {
    /// Starts `n` nodes with the default single database `app.db`.
    pub async fn start(n: usize, tweak: impl Fn(&mut Config)) -> Cluster {
        Self::start_with(n, &["app.db"], tweak).await
    }

    /// Starts `n` nodes; node 0 is primary, the others replicas of it with zero lag.
    pub async fn start_with(n: usize, databases: &[&str], tweak: impl Fn(&mut Config)) -> Cluster {
        let mut listeners = Vec::new();
        for _ in 0..n {
            let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
            let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
            listeners.push((proxy, admin));
        }
        let names: Vec<String> = listeners
            .iter()
            .map(|(p, _)| p.local_addr().expect("addr").to_string())
            .collect();
        let mut nodes = Vec::new();
        for (i, (proxy, admin)) in listeners.into_iter().enumerate() {
            let mount = Arc::new(Mount::new());
            for db in databases {
                mount.set_pos(db, 1);
            }
            if i == 0 {
                mount.make_primary();
            } else {
                mount.make_replica(&names[0], 0);
            }
            let app = App::start(&format!("app{i}"), i == 0, Some(mount.clone()), databases).await;
            let mut config = base_config(&names[i], &app.url(), &mount, databases);
            tweak(&mut config);
            let node = Node::start_on(&config, proxy, Some(admin))
                .await
                .expect("start node");
            nodes.push(TestNode {
                name: names[i].clone(),
                mount,
                app,
                node: Some(node),
            });
        }
        let cluster = Cluster {
            nodes,
            databases: databases.iter().map(|s| s.to_string()).collect(),
        };
        cluster.settled().await;
        cluster
    }

    /// Waits until every running node's state matches its mount (primary known or claimed).
    pub async fn settled(&self) {
        settle(self.nodes.iter().filter_map(|n| n.node.as_ref())).await;
    }

    /// Moves the primary to node `p` (mount files and app write permission), as a LiteFS
    /// hand-off would, and waits until every node has seen it.
    pub async fn move_primary(&self, p: usize) {
        for (i, n) in self.nodes.iter().enumerate() {
            n.app.set_accepts_writes(i == p);
            if i == p {
                n.mount.make_primary();
            } else {
                n.mount.make_replica(&self.nodes[p].name, 0);
            }
        }
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.node.as_ref()?)));
        primary_seen_by(nodes, p, &self.nodes[p].name).await;
    }

    /// Copies the primary's positions to every replica (replication caught up).
    pub fn replicate_from(&self, p: usize) {
        for db in &self.databases {
            let pos = self.nodes[p].mount.pos(db);
            for n in &self.nodes {
                n.mount.set_pos(db, pos);
            }
        }
    }

    /// Stops every node.
    pub async fn stop(mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
    }
}

/// Waits until each node's state matches its mount: no source problem, and the primary known
/// (or this node primary).
pub(crate) async fn settle<'a>(nodes: impl Iterator<Item = &'a Node>) {
    for node in nodes {
        let state = node.state();
        eventually(Duration::from_secs(5), "node state to settle", || {
            let s = state.borrow().clone();
            async move { (s.problem.is_none() && (s.is_primary() || s.primary.is_some())).then_some(()) }
        })
        .await;
    }
}

/// Waits until every node agrees that node `p`, called `primary`, is the primary.
pub(crate) async fn primary_seen_by<'a>(
    nodes: impl Iterator<Item = (usize, &'a Node)>,
    p: usize,
    primary: &str,
) {
    for (i, node) in nodes {
        let state = node.state();
        eventually(Duration::from_secs(5), "hand-off to be seen", || {
            let s = state.borrow().clone();
            let ok = if i == p {
                s.is_primary()
            } else {
                s.primary.as_deref() == Some(primary)
            };
            async move { ok.then_some(()) }
        })
        .await;
    }
}
