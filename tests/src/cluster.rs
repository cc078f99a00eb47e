//! Real rwproxy nodes in front of test apps, with LiteFS-like mounts as their cluster source.

use std::sync::Arc;
use std::time::Duration;

use rwproxy::config::{self, Config};
use rwproxy::Node;
use tokio::net::TcpListener;

use crate::app::App;
use crate::mount::Mount;
use crate::{client, eventually};

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

    /// A request `method {url}{path}` to the proxy listener, with the test [`client`]; send it
    /// with [`crate::Answer::answer`].
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        client().request(method, format!("{}{path}", self.url()))
    }

    /// `GET {url}{path}`, see [`TestNode::request`].
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// `POST {url}{path}`, see [`TestNode::request`].
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// `PUT {url}{path}`, see [`TestNode::request`].
    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PUT, path)
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

    /// The mount reports no primary (lag `lag_ms`), as LiteFS does when the lease is lost;
    /// waits (at most 5 s) until this node's rwproxy knows no primary.
    pub async fn lose_primary(&self, lag_ms: i64) {
        self.mount.lose_primary(lag_ms);
        self.wait_state("replica to lose its primary", |s| s.primary.is_none())
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
            listeners.push(bind_listeners().await);
        }
        Self::start_on(listeners, databases, |_, config| tweak(config))
            .await
            .0
    }

    /// Starts a node on each pair of `(proxy, admin)` listeners, node 0 primary, `tweak`
    /// given each node's index; returns the settled cluster and each node's configuration.
    pub(crate) async fn start_on(
        listeners: Vec<(TcpListener, TcpListener)>,
        databases: &[&str],
        tweak: impl Fn(usize, &mut Config),
    ) -> (Cluster, Vec<Config>) {
        let names: Vec<String> = listeners
            .iter()
            .map(|(p, _)| p.local_addr().expect("addr").to_string())
            .collect();
        let mut nodes = Vec::new();
        let mut configs = Vec::new();
        for (i, (proxy, admin)) in listeners.into_iter().enumerate() {
            let (mount, app, mut config) = node_parts(i, &names, databases, &|_| {}).await;
            tweak(i, &mut config);
            let node = Node::start_on(&config, proxy, Some(admin))
                .await
                .expect("start node");
            configs.push(config);
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
        (cluster, configs)
    }

    /// Waits until every running node's state matches its mount (primary known or claimed).
    pub async fn settled(&self) {
        settle(self.nodes.iter().filter_map(|n| n.node.as_ref())).await;
    }

    /// Moves the primary to node `p` (mount files and app write permission), as a LiteFS
    /// hand-off would, and waits until every node has seen it.
    pub async fn move_primary(&self, p: usize) {
        let nodes = self.nodes.iter().map(|n| (&n.app, &*n.mount));
        hand_over(nodes, p, &self.nodes[p].name);
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.node.as_ref()?)));
        primary_seen_by(nodes, p, &self.nodes[p].name).await;
    }

    /// Points node `i`'s mount at node `p` as the primary, whatever the other nodes think, and
    /// waits (at most 5 s) until node `i`'s rwproxy follows node `p`.
    pub async fn follow(&self, i: usize, p: usize) {
        let primary = self.nodes[p].name.as_str();
        self.nodes[i].mount.make_replica(primary, 0);
        self.nodes[i]
            .wait_state(&format!("node {i} to follow node {p}"), |s| {
                s.primary.as_deref() == Some(primary)
            })
            .await;
    }

    /// How many writes (requests with a non-read method) each node's app has seen, by node.
    pub fn writes_seen(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.app.writes_seen()).collect()
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

/// A node's proxy and admin listeners, each on a free `127.0.0.1` port.
pub(crate) async fn bind_listeners() -> (TcpListener, TcpListener) {
    let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    (proxy, admin)
}

/// Node `i`'s parts before its rwproxy starts: a mount with every database at position 1 (the
/// primary's, or a replica's of `names[0]` with zero lag), an app (`app{i}`, accepting writes on
/// node 0 only) and the [`base_config`] called `names[i]`, adjusted by `tweak`.
pub(crate) async fn node_parts(
    i: usize,
    names: &[String],
    databases: &[&str],
    tweak: &impl Fn(&mut Config),
) -> (Arc<Mount>, App, Config) {
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
    (mount, app, config)
}

/// Makes node `p` the primary at once, node by node: the app's write permission first (a lost
/// lease makes SQLite read-only at once), then the mount, which names `primary` (node `p`'s
/// name) with zero lag on every other node.
pub(crate) fn hand_over<'a>(
    nodes: impl Iterator<Item = (&'a App, &'a Mount)>,
    p: usize,
    primary: &str,
) {
    for (i, (app, mount)) in nodes.enumerate() {
        app.set_accepts_writes(i == p);
        if i == p {
            mount.make_primary();
        } else {
            mount.make_replica(primary, 0);
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
