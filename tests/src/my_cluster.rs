//! rwproxy nodes in front of MariaDB servers: a small app per server ([`MyApp`]) behind its own
//! rwproxy with the mysql source, and a primary + GTID replica pair of them.

use rwproxy::config;
use rwproxy::Node;
use rwproxy_core::Role;
use tokio::net::TcpListener;

use crate::mariadb::{MariaBin, MariaServer, APP_USER, MONITOR_USER};
use crate::my_app::MyApp;
use crate::pg_cluster::WAIT;
use crate::{client, Answer};

/// One node: its app and its rwproxy, named by the proxy's `127.0.0.1:PORT`.
pub struct MyNode {
    pub name: String,
    pub app: MyApp,
    pub node: Node,
}

impl MyNode {
    /// Starts an app on `app_url` and an rwproxy in front of it watching `server_url`.
    /// `primary` is `cluster.primary` (the name of the primary's rwproxy); `tweak` adjusts the
    /// parsed config.
    pub async fn start(
        server_url: &str,
        app_url: &str,
        primary: Option<&str>,
        tweak: impl FnOnce(&mut config::Config),
    ) -> MyNode {
        let proxy = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let name = proxy.local_addr().expect("addr").to_string();
        let app = MyApp::start(&format!("app-{name}"), app_url).await;
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
source = "mysql"
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
        MyNode { name, app, node }
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
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// A primary and a GTID replica with a node each (the replica's adjusted by `tweak`); `None`
/// (skip) without MariaDB.
pub async fn pair(
    tweak: impl FnOnce(&mut config::Config),
) -> Option<(MariaServer, MariaServer, MyNode, MyNode)> {
    let bin = MariaBin::find()?;
    let primary = MariaServer::primary(&bin).await;
    let replica = MariaServer::replica_of(&primary, 2).await;
    let p = MyNode::start(
        &primary.url(MONITOR_USER),
        &primary.url(APP_USER),
        None,
        |_| {},
    )
    .await;
    let r = MyNode::start(
        &replica.url(MONITOR_USER),
        &replica.url(APP_USER),
        Some(&p.name),
        tweak,
    )
    .await;
    p.state_until("primary role", |s| s.role == Role::Primary)
        .await;
    r.state_until("replica replicating from the primary", |s| {
        s.role == Role::Replica && s.primary.as_deref() == Some(p.name.as_str()) && s.lag.is_some()
    })
    .await;
    Some((primary, replica, p, r))
}
