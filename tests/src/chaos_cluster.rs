//! A cluster whose nodes talk to each other through fault-injecting [`Relay`]s.
//!
//! Each node's NAME (what the others put into `writes.primary_url = "http://{primary}"`, and
//! what the mounts' `.primary` says) is the address of its relay, so every forwarded request
//! crosses the relay in front of its target; the tests' clients talk to the nodes directly.
//! Breaking node `i`'s relay therefore cuts the others off from node `i` and from nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rwproxy::config::Config;
use rwproxy::Node;

use crate::app::App;
use crate::cluster::{bind_listeners, hand_over, node_parts, primary_seen_by, settle};
use crate::eventually;
use crate::mount::Mount;
use crate::relay::{Mode, Relay};

/// One node behind its relay.
pub struct ChaosNode {
    /// The node's name: its relay's `127.0.0.1:PORT`.
    pub name: String,
    /// The relay the other nodes reach this node through.
    pub relay: Relay,
    pub mount: Arc<Mount>,
    pub app: App,
    pub node: Option<Node>,
    /// The configuration the node runs with (kept for [`ChaosNode::restart`]).
    pub config: Config,
    /// The proxy listener's own address (clients connect here, not through the relay).
    direct: SocketAddr,
}

impl ChaosNode {
    /// `http://127.0.0.1:PORT` of the proxy listener itself: what the tests' clients use.
    pub fn url(&self) -> String {
        format!("http://{}", self.direct)
    }

    /// `http://127.0.0.1:PORT` of the relay: the way the other nodes come in.
    pub fn relay_url(&self) -> String {
        format!("http://{}", self.name)
    }

    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self) -> String {
        let node = self.node.as_ref().expect("running");
        format!("http://{}", node.admin_addr().expect("admin enabled"))
    }

    /// Stops the proxy (drains) and waits for it. The relay keeps its mode.
    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }

    /// The process dies: the port refuses connections (relay `Refuse`, which also resets what
    /// the relay carries) and the proxy stops.
    pub async fn kill(&mut self) {
        self.relay.set_mode(Mode::Refuse);
        self.stop().await;
    }

    /// Starts the proxy again (on a new port; the relay follows it) and lets traffic through.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (proxy, admin) = bind_listeners().await;
        self.direct = proxy.local_addr().expect("addr");
        let node = Node::start_on(&self.config, proxy, Some(admin))
            .await
            .expect("restart node");
        self.node = Some(node);
        self.relay.set_target(self.direct);
        self.relay.set_mode(Mode::Pass);
    }
}

/// A cluster of nodes behind relays; node 0 starts as the primary.
pub struct ChaosCluster {
    pub nodes: Vec<ChaosNode>,
    pub databases: Vec<String>,
}

impl ChaosCluster {
    /// Starts `n` nodes with the database `app.db`, each behind its own relay in
    /// [`Mode::Pass`]; node 0 is primary, the others replicas of it with zero lag. `tweak`
    /// adjusts every node's configuration (the usual test configuration of
    /// [`crate::cluster::Cluster`]).
    pub async fn start_with_relays(n: usize, tweak: impl Fn(&mut Config)) -> ChaosCluster {
        let databases = ["app.db"];
        let mut listeners = Vec::new();
        let mut relays = Vec::new();
        for _ in 0..n {
            let (proxy, admin) = bind_listeners().await;
            let relay = Relay::start(proxy.local_addr().expect("addr")).await;
            listeners.push((proxy, admin));
            relays.push(relay);
        }
        let names: Vec<String> = relays.iter().map(|r| r.addr().to_string()).collect();
        let mut nodes = Vec::new();
        for (i, ((proxy, admin), relay)) in listeners.into_iter().zip(relays).enumerate() {
            let (mount, app, config) = node_parts(i, &names, &databases, &tweak).await;
            let direct = proxy.local_addr().expect("addr");
            let node = Node::start_on(&config, proxy, Some(admin))
                .await
                .expect("start node");
            nodes.push(ChaosNode {
                name: names[i].clone(),
                relay,
                mount,
                app,
                node: Some(node),
                config,
                direct,
            });
        }
        let cluster = ChaosCluster {
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

    /// Waits until every running node other than `except` knows no primary.
    pub async fn primary_lost(&self, except: Option<usize>) {
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(node) = &n.node else { continue };
            if Some(i) == except {
                continue;
            }
            let state = node.state();
            eventually(Duration::from_secs(5), "the loss of the primary", || {
                let s = state.borrow().clone();
                async move { (!s.is_primary() && s.primary.is_none()).then_some(()) }
            })
            .await;
        }
    }

    /// Moves the primary to node `p` as [`crate::cluster::Cluster::move_primary`] does (app
    /// write permission first, as a lost lease makes SQLite read-only at once, then the mount
    /// files) and waits until every running node has seen it.
    pub async fn move_primary(&self, p: usize) {
        let nodes = self.nodes.iter().map(|n| (&n.app, &*n.mount));
        hand_over(nodes, p, &self.nodes[p].name);
        self.primary_seen(p).await;
    }

    /// A graceful hand-off to node `p`, the way a LiteFS lease changes hands: first no node has
    /// a primary (no `.primary`, a small lag) and every node sees that, then the old primary's
    /// app turns read-only, then node `p` becomes primary and every node sees it.
    pub async fn hand_off(&self, p: usize) {
        for n in &self.nodes {
            n.mount.lose_primary(100);
        }
        self.primary_lost(None).await;
        for (i, n) in self.nodes.iter().enumerate() {
            n.app.set_accepts_writes(i == p);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if i == p {
                n.mount.make_primary();
            } else {
                n.mount.make_replica(&self.nodes[p].name, 0);
            }
        }
        self.primary_seen(p).await;
    }

    /// Waits until every running node agrees that node `p` is the primary.
    pub async fn primary_seen(&self, p: usize) {
        let nodes = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.node.as_ref()?)));
        primary_seen_by(nodes, p, &self.nodes[p].name).await;
    }

    /// Stops every node (relays stop when the cluster is dropped).
    pub async fn stop(mut self) {
        for n in &mut self.nodes {
            n.stop().await;
        }
    }
}
