//! `rwproxy demo`: a self-contained local cluster on loopback, to see rwproxy work in a minute.
//!
//! Three nodes, each made of:
//! * a small notes app ([`app`]) reading and writing only its own node's database;
//! * a directory in LiteFS's mount format ([`mount`]) that says who the primary is, how far
//!   behind this node is and its TXID;
//! * a real rwproxy [`Node`] configured with the `litefs` source on that directory ([`config`]).
//!
//! A stand-in for LiteFS ([`cluster`]) ships commits from the primary to the replicas after a
//! configurable delay (so that the read-your-writes wait is visible), heartbeats, keeps the mount
//! files current and moves the primary on request (`POST /demo/promote` on any node).

mod app;
mod cluster;
mod config;
mod db;
mod intro;
mod mount;
mod run;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Node;
use cluster::Cluster;

pub use intro::intro;
pub use mount::Mount;
pub use run::run;

/// The response header the demo app adds, naming the node that answered (its name, as in
/// `/health` and the `Via` header).
pub const NODE_HEADER: &str = "demo-node";

/// How many nodes the demo runs: one primary and two replicas.
pub const NODES: usize = 3;

/// Pause between stopping the nodes and removing their mounts: a few source polls.
const MOUNT_QUIESCE: Duration = Duration::from_millis(200);

/// How long [`Demo::start`] waits for every rwproxy to see its role.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the demo is started.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// First port to use: node `i` (from 0) gets `base + 3i` (rwproxy), `base + 3i + 1` (admin)
    /// and `base + 3i + 2` (app). `None`: ephemeral ports.
    pub base_port: Option<u16>,
    /// How long a commit on the primary takes to reach the replicas.
    pub replication_delay: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            base_port: None,
            replication_delay: Duration::from_secs(1),
        }
    }
}

/// Where one demo node can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoNode {
    /// The node's one name, everywhere (the printed table, the `demo-node` header, `/health`,
    /// `Via`, `rwproxy status`): its rwproxy address `127.0.0.1:PORT`, which is what replicas'
    /// `.primary` files hold and `writes.primary_url = "http://{primary}"` expands. Several
    /// nodes on one host are told apart by port, as in a single-host LiteFS setup.
    pub name: String,
    /// `http://127.0.0.1:PORT` of its rwproxy: where clients go.
    pub url: String,
    /// `http://127.0.0.1:PORT` of its rwproxy's admin listener (`/health`, `/metrics`).
    pub admin_url: String,
    /// `http://127.0.0.1:PORT` of its app (what rwproxy protects; not for clients).
    pub app_url: String,
    /// Its LiteFS-format mount directory.
    pub mount: PathBuf,
}

/// A running demo cluster. Dropping it does not stop it cleanly; call [`Demo::shutdown`].
#[derive(Debug)]
pub struct Demo {
    nodes: Vec<DemoNode>,
    proxies: Vec<Node>,
    cluster: Arc<Cluster>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    replication_delay: Duration,
    /// Removed (with every mount) when the demo stops or is dropped.
    dir: tempfile::TempDir,
}

/// The three listeners of one node.
struct Listeners {
    proxy: TcpListener,
    admin: TcpListener,
    app: TcpListener,
}

async fn bind(base: Option<u16>, offset: u16) -> io::Result<TcpListener> {
    let port = match base {
        None => 0,
        Some(base) => base.checked_add(offset).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--base-port {base} leaves no room for {} ports", 3 * NODES),
            )
        })?,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

impl Demo {
    /// Creates the mounts, starts the apps, the replication task and one rwproxy per node, and
    /// returns once every rwproxy knows its role.
    pub async fn start(options: &DemoOptions) -> io::Result<Demo> {
        let dir = tempfile::Builder::new().prefix("rwproxy-demo-").tempdir()?;
        let mut listeners = Vec::new();
        for i in 0..NODES as u16 {
            listeners.push(Listeners {
                proxy: bind(options.base_port, 3 * i).await?,
                admin: bind(options.base_port, 3 * i + 1).await?,
                app: bind(options.base_port, 3 * i + 2).await?,
            });
        }
        let mut nodes = Vec::new();
        let mut mounts = Vec::new();
        for l in &listeners {
            let name = l.proxy.local_addr()?.to_string();
            // Named after the node too (a colon is fine in a Unix file name).
            let mount_dir = dir.path().join(&name);
            mounts.push(mount::Mount::create(
                mount_dir.clone(),
                config::DATABASE,
                db::FIRST_TXID,
            )?);
            nodes.push(DemoNode {
                url: format!("http://{name}"),
                admin_url: format!("http://{}", l.admin.local_addr()?),
                app_url: format!("http://{}", l.app.local_addr()?),
                name,
                mount: mount_dir,
            });
        }
        let names = nodes.iter().map(|n| n.name.clone()).collect();
        let cluster = Arc::new(Cluster::new(names, mounts, options.replication_delay)?);

        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        {
            let cluster = cluster.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move { cluster.replicate(stop).await }));
        }
        let mut proxies = Vec::new();
        let mut started = Ok(());
        for (i, l) in listeners.into_iter().enumerate() {
            let app = app::App {
                node: i,
                name: Arc::from(nodes[i].name.as_str()),
                cluster: cluster.clone(),
            };
            let app_addr = l.app.local_addr()?;
            tasks.push(tokio::spawn(app::serve(l.app, app, stop.clone())));
            let config = config::node_config(
                &nodes[i].name,
                l.proxy.local_addr()?,
                l.admin.local_addr()?,
                app_addr,
                &nodes[i].mount,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()));
            match config {
                Ok(config) => match Node::start_on(&config, l.proxy, Some(l.admin)).await {
                    Ok(node) => proxies.push(node),
                    Err(e) => started = Err(e),
                },
                Err(e) => started = Err(e),
            }
            if started.is_err() {
                break;
            }
        }
        let demo = Demo {
            nodes,
            proxies,
            cluster,
            stop,
            tasks,
            replication_delay: options.replication_delay,
            dir,
        };
        if let Err(error) = started {
            demo.shutdown().await;
            return Err(error);
        }
        demo.cluster
            .set_watchers(demo.proxies.iter().map(Node::state).collect());
        if let Err(error) = demo.settled().await {
            demo.shutdown().await;
            return Err(error);
        }
        Ok(demo)
    }

    /// Waits until every rwproxy has read its role from its mount.
    async fn settled(&self) -> io::Result<()> {
        let primary = self.nodes[self.primary()].name.clone();
        for (node, proxy) in self.nodes.iter().zip(&self.proxies) {
            let mut state = proxy.state();
            let settled = tokio::time::timeout(
                SETTLE_TIMEOUT,
                state.wait_for(|s| {
                    s.problem.is_none() && s.ready && s.primary.as_deref() == Some(primary.as_str())
                }),
            )
            .await;
            if !matches!(settled, Ok(Ok(_))) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{}'s rwproxy did not read its mount in time", node.name),
                ));
            }
        }
        Ok(())
    }

    /// The nodes, in start order (the first starts as the primary).
    pub fn nodes(&self) -> &[DemoNode] {
        &self.nodes
    }

    /// The index in [`Demo::nodes`] of the current primary.
    pub fn primary(&self) -> usize {
        self.cluster.primary()
    }

    /// How long commits take to reach the replicas.
    pub fn replication_delay(&self) -> Duration {
        self.replication_delay
    }

    /// The directory holding every node's mount (removed on shutdown).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Makes node `index` the primary (what `POST /demo/promote` on that node does) and returns
    /// once every rwproxy has seen it.
    pub async fn promote(&self, index: usize) -> io::Result<()> {
        self.cluster
            .promote(index)
            .await
            .map(|_| ())
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Stops every rwproxy (draining, as on SIGTERM), then the apps and replication, and
    /// removes the mounts.
    pub async fn shutdown(self) {
        // Concurrently: each drain may take up to its drain_timeout.
        let drains: Vec<_> = self
            .proxies
            .into_iter()
            .map(|node| tokio::spawn(node.shutdown()))
            .collect();
        for drain in drains {
            let _ = drain.await;
        }
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        // A stopped node's cluster source may still finish one mount read; removing the files
        // under it would make it report (and log) a broken mount on the way out.
        tokio::time::sleep(MOUNT_QUIESCE).await;
        if let Err(error) = self.dir.close() {
            tracing::warn!(%error, "demo: cannot remove the mount directory");
        }
    }
}
