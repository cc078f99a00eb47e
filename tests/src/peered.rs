//! A test-controlled LiteFS-format cluster whose nodes know each other (peer-aware health):
//! every node's `cluster.peers` lists the other nodes' admin URLs. A stopped node can be
//! started again on the same addresses, as a restarted process would be.

use std::net::SocketAddr;
use std::time::Duration;

use rwproxy::config::Config;
use rwproxy::Node;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::cluster::{bind_listeners, Cluster};
use crate::{client, eventually};

/// The cluster, with what it takes to restart a node.
pub struct Peered {
    pub cluster: Cluster,
    configs: Vec<Config>,
    admin: Vec<SocketAddr>,
}

impl Peered {
    /// Starts `n` nodes (node 0 primary), each with the others as peers, `tweak` applied last.
    pub async fn start(n: usize, tweak: impl Fn(&mut Config)) -> Peered {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(bind_listeners().await);
        }
        let admin: Vec<SocketAddr> = listeners
            .iter()
            .map(|(_, a)| a.local_addr().expect("addr"))
            .collect();
        let peers_of = |i: usize| -> Vec<String> {
            admin
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| format!("http://{a}"))
                .collect()
        };
        let (cluster, configs) = Cluster::start_on(listeners, &["app.db"], |i, config| {
            config.peers.urls = peers_of(i);
            tweak(config);
        })
        .await;
        Peered {
            cluster,
            configs,
            admin,
        }
    }

    /// Node `i`'s admin URL (valid whether it runs or not).
    pub fn admin_url(&self, i: usize) -> String {
        format!("http://{}", self.admin[i])
    }

    /// Starts stopped node `i` again on its old proxy and admin addresses.
    pub async fn restart(&mut self, i: usize) {
        self.restart_with(i, |_| {}).await;
    }

    /// Like [`Peered::restart`], with `tweak` applied to the node's configuration first.
    pub async fn restart_with(&mut self, i: usize, tweak: impl FnOnce(&mut Config)) {
        tweak(&mut self.configs[i]);
        let proxy = TcpListener::bind(&self.cluster.nodes[i].name)
            .await
            .expect("rebind proxy");
        let admin = TcpListener::bind(self.admin[i])
            .await
            .expect("rebind admin");
        let node = Node::start_on(&self.configs[i], proxy, Some(admin))
            .await
            .expect("restart node");
        self.cluster.nodes[i].node = Some(node);
    }
}

/// `GET url`: status and JSON body (`Null` when the body is not JSON).
pub async fn health(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.expect("an answer");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits (at most `within`) until `url` answers `status` with document status `name`.
pub async fn health_becomes(url: &str, status: u16, name: &str, within: Duration) -> Value {
    let what = format!("{url} to answer {status} {name}");
    eventually(within, &what, || async {
        let (s, doc) = health(url).await;
        (s == status && doc["status"] == name).then_some(doc)
    })
    .await
}
