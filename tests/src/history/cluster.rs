//! Three (or more) real rwproxy nodes over a [`Ledger`], each behind a fault-injecting
//! [`Relay`] for the traffic other nodes send it (as in [`crate::chaos_cluster`]); clients talk
//! to the nodes directly, through [`NodeUrls`], which follow restarts.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rwproxy::config::Config;
use rwproxy::Node;

use super::app::LedgerApp;
use super::ledger::{Ledger, DB};
use crate::cluster::{base_config, bind_listeners, primary_seen_by, settle};
use crate::mount::Mount;
use crate::relay::{Mode, Relay};

/// Where clients reach each node's proxy listener right now (`http://127.0.0.1:PORT`).
#[derive(Clone, Default)]
pub struct NodeUrls(Arc<RwLock<Vec<String>>>);

impl NodeUrls {
    /// Fixed URLs, one per node (nodes that never move, as a Patroni cluster's rwproxies).
    pub fn new(urls: Vec<String>) -> NodeUrls {
        NodeUrls(Arc::new(RwLock::new(urls)))
    }

    /// Node `i`'s current URL.
    pub fn get(&self, i: usize) -> String {
        self.0.read().unwrap()[i].clone()
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.0.read().unwrap().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set(&self, i: usize, url: String) {
        self.0.write().unwrap()[i] = url;
    }
}

/// One node: its relay, mount, app and (while running) rwproxy.
pub struct HistoryNode {
    /// Its relay's address: what the mounts' `.primary` and `writes.primary_url` name.
    pub name: String,
    pub relay: Relay,
    pub mount: Arc<Mount>,
    pub node: Option<Node>,
    config: Config,
    _app: LedgerApp,
}

/// The cluster, its ledger and its replicator.
pub struct HistoryCluster {
    pub nodes: Vec<HistoryNode>,
    pub ledger: Ledger,
    pub urls: NodeUrls,
    replicator: tokio::task::JoinHandle<()>,
}

impl HistoryCluster {
    /// Starts `n` nodes; node 0 holds the lease. `tweak` adjusts every node's configuration.
    pub async fn start(n: usize, tweak: impl Fn(&mut Config)) -> HistoryCluster {
        let mounts: Vec<Arc<Mount>> = (0..n).map(|_| Arc::new(Mount::new())).collect();
        let ledger = Ledger::new(mounts.clone());
        let mut listeners = Vec::new();
        let mut relays = Vec::new();
        for _ in 0..n {
            let (proxy, admin) = bind_listeners().await;
            relays.push(Relay::start(proxy.local_addr().expect("addr")).await);
            listeners.push((proxy, admin));
        }
        let names: Vec<String> = relays.iter().map(|r| r.addr().to_string()).collect();
        let urls = NodeUrls(Arc::new(RwLock::new(vec![String::new(); n])));
        let mut nodes = Vec::new();
        for (i, ((proxy, admin), relay)) in listeners.into_iter().zip(relays).enumerate() {
            let mount = mounts[i].clone();
            if i == 0 {
                mount.make_primary();
            } else {
                mount.make_replica(&names[0], 0);
            }
            let app = LedgerApp::start(ledger.clone(), i).await;
            let mut config = base_config(&names[i], &app.url(), &mount, &[DB]);
            tweak(&mut config);
            urls.set(i, url_of(proxy.local_addr().expect("addr")));
            let node = Node::start_on(&config, proxy, Some(admin))
                .await
                .expect("start node");
            nodes.push(HistoryNode {
                name: names[i].clone(),
                relay,
                mount,
                node: Some(node),
                config,
                _app: app,
            });
        }
        let replicator = ledger.spawn_replicator();
        let cluster = HistoryCluster {
            nodes,
            ledger,
            urls,
            replicator,
        };
        settle(cluster.nodes.iter().filter_map(|n| n.node.as_ref())).await;
        cluster
    }

    /// A graceful hand-off of the primary to node `p` ([`Ledger::hand_lease_to`]); waits until
    /// every running node has seen it.
    pub async fn move_primary(&self, p: usize) {
        let primary = &self.nodes[p].name;
        self.ledger.hand_lease_to(p, primary);
        let running = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.node.as_ref()?)));
        primary_seen_by(running, p, primary).await;
    }

    /// Node `i`'s rwproxy stops: its relay refuses connections at once, in-flight requests
    /// drain, then its listeners close. Its app and database keep running.
    pub async fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.relay.set_mode(Mode::Refuse);
        if let Some(node) = n.node.take() {
            node.shutdown().await;
        }
    }

    /// Starts node `i`'s rwproxy again on a new port (its relay and clients follow).
    pub async fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let (proxy, admin) = bind_listeners().await;
        let addr = proxy.local_addr().expect("addr");
        let node = Node::start_on(&n.config, proxy, Some(admin))
            .await
            .expect("restart node");
        n.node = Some(node);
        n.relay.set_target(addr);
        n.relay.set_mode(Mode::Pass);
        self.urls.set(i, url_of(addr));
        settle(self.nodes[i].node.iter()).await;
    }

    /// Heals every fault and waits (at most `within`) until every replica has the whole log.
    pub async fn heal_and_catch_up(&mut self, within: Duration) {
        for i in 0..self.nodes.len() {
            self.nodes[i].relay.set_mode(Mode::Pass);
            self.ledger.pause(i, false);
            if self.nodes[i].node.is_none() {
                self.restart(i).await;
            }
        }
        let ledger = self.ledger.clone();
        crate::eventually(within, "every replica to catch up", || {
            let done = ledger.caught_up();
            async move { done.then_some(()) }
        })
        .await;
    }

    /// Stops every node and the replicator.
    pub async fn stop(mut self) {
        self.replicator.abort();
        for n in &mut self.nodes {
            if let Some(node) = n.node.take() {
                node.shutdown().await;
            }
        }
    }
}

fn url_of(addr: SocketAddr) -> String {
    format!("http://{addr}")
}
