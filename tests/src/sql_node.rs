//! One rwproxy node in front of a SQL database server, for the PostgreSQL and MariaDB tests: the
//! [`ItemsApp`] on the node's server behind its own rwproxy watching that server (`pg_cluster`
//! and `my_cluster` build pairs of them).

use std::time::Duration;

use rwproxy::config;
use rwproxy::Node;
use rwproxy_core::Role;
use tokio::net::TcpListener;

use crate::items_app::{ItemStore, ItemsApp};
use crate::{client, Answer};

/// Deadline for anything a cluster must reach; generous because the machine may be busy.
pub const WAIT: Duration = Duration::from_secs(20);

/// One node: its app and its rwproxy, named by the proxy's `127.0.0.1:PORT`.
pub struct SqlNode<S> {
    pub name: String,
    pub app: ItemsApp<S>,
    pub node: Node,
}

impl<S: ItemStore> SqlNode<S> {
    /// Starts an app on `app_url` and an rwproxy in front of it watching `server_url`.
    /// `primary` is `cluster.primary` (the name of the primary's rwproxy); `tweak` adjusts the
    /// parsed config.
    pub async fn start(
        server_url: &str,
        app_url: &str,
        primary: Option<&str>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> Self {
        Self::start_on(free_listener().await, server_url, app_url, primary, tweak).await
    }

    /// [`SqlNode::start`] with the proxy listening on `proxy` (a layout with one loopback
    /// address per node, where `writes.primary_url` names the same port on each).
    pub async fn start_on(
        proxy: TcpListener,
        server_url: &str,
        app_url: &str,
        primary: Option<&str>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> Self {
        let admin = free_listener().await;
        Self::start_with_admin(proxy, admin, server_url, app_url, primary, tweak).await
    }

    /// Like [`SqlNode::start`] on listeners bound already (peers need each other's admin
    /// addresses before any of them starts).
    pub async fn start_with_admin(
        proxy: TcpListener,
        admin: TcpListener,
        server_url: &str,
        app_url: &str,
        primary: Option<&str>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> Self {
        let name = proxy.local_addr().expect("addr").to_string();
        let app = ItemsApp::<S>::start(&format!("app-{name}"), app_url).await;
        Self::launch(proxy, admin, server_url, primary, app, tweak).await
    }
}

impl<S> SqlNode<S> {
    /// Starts rwproxy on `proxy` and `admin` in front of `app`, watching `server_url` with the
    /// `source`, adjusted by `tweak`. The node's name (`node`, and `{primary}` in the others'
    /// `writes.primary_url`) is the proxy's address.
    pub async fn launch(
        proxy: TcpListener,
        admin: TcpListener,
        server_url: &str,
        primary: Option<&str>,
        app: ItemsApp<S>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> SqlNode<S>
    where
        S: ItemStore,
    {
        let source = S::SOURCE;
        let name = proxy.local_addr().expect("addr").to_string();
        let primary = primary.map_or(String::new(), |p| format!("primary = \"{p}\"\n"));
        let text = format!(
            r#"
node = "{name}"
[proxy]
listen = "127.0.0.1:0"
app = "{app}"
drain_timeout = "5s"
[admin]
listen = "127.0.0.1:0"
[cluster]
source = "{source}"
url = "{server_url}"
poll = "50ms"
{primary}
[writes]
primary_url = "http://{{primary}}"
primary_wait = "2s"
timeout = "10s"
connect_timeout = "1s"
[reads]
max_lag = "1s"
when_stale = "serve"
[health]
max_lag = "1s"
[consistency]
wait = "3s"
on_timeout = "error"
[log]
access = false
"#,
            app = app.url(),
        );
        let mut config = config::parse(&text).unwrap_or_else(|e| panic!("config: {e}"));
        tweak(&mut config);
        let node = Node::start_on(&config, proxy, Some(admin))
            .await
            .expect("start node");
        SqlNode { name, app, node }
    }

    /// `http://NAME{path}` on the proxy listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.name)
    }

    /// The admin listener's `/health` answer: status code and JSON body.
    pub async fn health(&self) -> (u16, serde_json::Value) {
        let admin = self.node.admin_addr().expect("admin");
        let r = client()
            .get(format!("http://{admin}/health"))
            .answer()
            .await;
        (r.status().as_u16(), r.json().await.expect("health JSON"))
    }

    /// Waits until the health answer satisfies `check`; the panic shows the last answer.
    pub async fn health_until(&self, what: &str, check: impl Fn(u16, &serde_json::Value) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.health().await;
            if check(status, &body) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for: {what}; last health: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the published state satisfies `check`; the panic shows the last state.
    pub async fn state_until(&self, what: &str, check: impl Fn(&rwproxy_core::NodeState) -> bool) {
        let state = self.node.state();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = state.borrow().clone();
            if check(&seen) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for: {what}; last state: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A free listener on `127.0.0.1`.
pub async fn free_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// Waits until `primary`'s node takes itself for the primary and `replica`'s follows it with a
/// known lag (replication is running).
pub async fn until_paired<S>(primary: &SqlNode<S>, replica: &SqlNode<S>) {
    primary
        .state_until("primary role", |s| s.role == Role::Primary)
        .await;
    replica
        .state_until("replica replicating from the primary", |s| {
            s.role == Role::Replica
                && s.primary.as_deref() == Some(primary.name.as_str())
                && s.lag.is_some()
        })
        .await;
}
