//! rwproxy nodes in front of PostgreSQL servers: a small app per server ([`PgApp`]) behind its
//! own rwproxy with the postgres source, and a primary + streaming replica pair of them.

use std::time::Duration;

use rwproxy::config;
use rwproxy::Node;
use rwproxy_core::Role;
use tokio::net::TcpListener;

use crate::pg_app::PgApp;
use crate::postgres::{PgBin, PgServer, MONITOR_USER};
use crate::{client, eventually, Answer};

/// Deadline for anything the cluster must reach; generous because the machine may be busy.
pub const WAIT: Duration = Duration::from_secs(20);

/// One node: its app and its rwproxy, named by the proxy's `127.0.0.1:PORT`.
pub struct PgNode {
    pub name: String,
    pub app: PgApp,
    pub node: Node,
}

impl PgNode {
    /// Starts an app on `server` and an rwproxy in front of it. `primary` is `cluster.primary`
    /// (the name of the primary's rwproxy); `tweak` adjusts the parsed config.
    pub async fn start(
        server_url: &str,
        app_url: &str,
        primary: Option<&str>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> PgNode {
        let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(proxy, server_url, app_url, primary, tweak).await
    }

    /// [`PgNode::start`] with the proxy listening on `proxy` (a layout with one loopback
    /// address per node, where `writes.primary_url` names the same port on each).
    pub async fn start_on(
        proxy: TcpListener,
        server_url: &str,
        app_url: &str,
        primary: Option<&str>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> PgNode {
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_with_admin(proxy, admin, server_url, app_url, primary, tweak).await
    }

    /// Like [`PgNode::start`] on listeners bound already (peers need each other's admin
    /// addresses before any of them starts).
    pub async fn start_with_admin(
        proxy: TcpListener,
        admin: TcpListener,
        server_url: &str,
        app_url: &str,
        primary: Option<&str>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> PgNode {
        let name = proxy.local_addr().expect("addr").to_string();
        let app = PgApp::start(&format!("app-{name}"), app_url).await;
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
source = "postgres"
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
        PgNode { name, app, node }
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
        let status = r.status().as_u16();
        (status, r.json().await.expect("health JSON"))
    }

    /// Waits until the health answer satisfies `check`.
    pub async fn health_until(&self, what: &str, check: impl Fn(u16, &serde_json::Value) -> bool) {
        eventually(WAIT, what, || async {
            let (status, body) = self.health().await;
            check(status, &body).then_some(())
        })
        .await;
    }

    /// Waits until the published state satisfies `check`.
    pub async fn state_until(&self, what: &str, check: impl Fn(&rwproxy_core::NodeState) -> bool) {
        let state = self.node.state();
        eventually(WAIT, what, || {
            let ok = check(&state.borrow());
            async move { ok.then_some(()) }
        })
        .await;
    }
}

/// A primary and a streaming replica with a node each (the replica's adjusted by `tweak`);
/// `None` (skip) without PostgreSQL.
pub async fn pair(
    tweak: impl FnOnce(&mut config::Config),
) -> Option<(PgServer, PgServer, PgNode, PgNode)> {
    let bin = PgBin::find()?;
    let primary = PgServer::primary(&bin).await;
    let replica = PgServer::replica_of(&primary);
    let p = PgNode::start(
        &primary.url(MONITOR_USER),
        &primary.url("postgres"),
        None,
        |_| {},
    )
    .await;
    let r = PgNode::start(
        &replica.url(MONITOR_USER),
        &replica.url("postgres"),
        Some(&p.name),
        tweak,
    )
    .await;
    p.state_until("primary role", |s| s.role == Role::Primary)
        .await;
    r.state_until("replica streaming from the primary", |s| {
        s.role == Role::Replica && s.primary.as_deref() == Some(p.name.as_str()) && s.lag.is_some()
    })
    .await;
    Some((primary, replica, p, r))
}
