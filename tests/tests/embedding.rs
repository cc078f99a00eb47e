//! Embedding: the example's axum notes app with rwproxy's layer in-process, as primary and as
//! replica, in one cluster with a node running the `rwproxy` binary's code in front of the same
//! app without the layer. Writes on every replica reach the primary, whichever kind it is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/rwproxy/examples/axum_notes.rs"]
mod axum_notes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum_notes::{Notes, NotesNode, NODE_HEADER};
use rwproxy::demo::Mount;
use rwproxy::Node;
use rwproxy_core::{NodeState, Role};
use rwproxy_tests::{client, eventually};
use tokio::net::TcpListener;
use tokio::sync::watch;

const SETTLE: Duration = Duration::from_secs(10);

/// A node running the binary's code, in front of the notes app without rwproxy's layer.
struct BinaryNode {
    node: Node,
    app: tokio::task::JoinHandle<()>,
}

impl BinaryNode {
    async fn start(listener: TcpListener, notes: Arc<Notes>, mount: &Path) -> BinaryNode {
        let name = listener.local_addr().unwrap().to_string();
        let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app_addr = app_listener.local_addr().unwrap();
        let router = axum_notes::notes_app(notes, mount, &name);
        let app = tokio::spawn(async move {
            let _ = axum::serve(app_listener, router).await;
        });
        let toml = format!(
            r#"node = "{name}"
[proxy]
listen = "127.0.0.1:0"
app = "http://{app_addr}"
[cluster]
source = "litefs"
mount = {mount:?}
databases = ["{db}"]
poll = "50ms"
[writes]
primary_url = "http://{{primary}}"
"#,
            mount = mount.display().to_string(),
            db = axum_notes::DATABASE,
        );
        let config = rwproxy::config::parse(&toml).unwrap();
        let node = Node::start_on(&config, listener, None).await.unwrap();
        BinaryNode { node, app }
    }

    async fn stop(self) {
        self.node.shutdown().await;
        self.app.abort();
        let _ = self.app.await;
    }
}

async fn role_is(state: watch::Receiver<NodeState>, role: Role, primary: Option<SocketAddr>) {
    let primary = primary.map(|p| p.to_string());
    eventually(SETTLE, "the node to see its role", || {
        let state = state.borrow().clone();
        let primary = primary.clone();
        async move {
            let seen = state.remote_primary().map(|p| p.to_string());
            (state.role == role && seen == primary).then_some(())
        }
    })
    .await;
}

/// Sends a write through `via`; returns the response's status, serving node, route and token.
async fn put(via: SocketAddr, key: &str, text: &str) -> (u16, String, String, Option<String>) {
    let response = client()
        .put(format!("http://{via}/notes/{key}"))
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    (
        response.status().as_u16(),
        header(NODE_HEADER).unwrap_or_default(),
        header("rwproxy-route").unwrap_or_default(),
        header("rwproxy-position"),
    )
}

/// Reads a note through `via` with a token; returns the status, serving node, route and body.
async fn get(via: SocketAddr, key: &str, token: &str) -> (u16, String, String, String) {
    let response = client()
        .get(format!("http://{via}/notes/{key}"))
        .header("rwproxy-position", token)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let (node, route) = (header(NODE_HEADER), header("rwproxy-route"));
    let status = response.status().as_u16();
    (status, node, route, response.text().await.unwrap())
}

struct Cluster {
    a: NotesNode,
    b: NotesNode,
    c: BinaryNode,
    c_addr: SocketAddr,
    mounts: [Arc<Mount>; 3],
    _dir: tempfile::TempDir,
}

/// A and B: the notes app with rwproxy embedded; C: the binary's node. A is primary.
async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let notes = Arc::new(Notes::default());
    let listeners = [
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mounts = ["a", "b", "c"].map(|n| notes.add_mount(dir.path().join(n)).unwrap());
    mounts[0].make_primary().unwrap();
    for m in &mounts[1..] {
        m.make_replica(&addrs[0].to_string(), Duration::ZERO)
            .unwrap();
    }
    let [la, lb, lc] = listeners;
    let a = NotesNode::start(la, notes.clone(), mounts[0].path())
        .await
        .unwrap();
    let b = NotesNode::start(lb, notes.clone(), mounts[1].path())
        .await
        .unwrap();
    let c = BinaryNode::start(lc, notes, mounts[2].path()).await;
    role_is(a.rwproxy.state(), Role::Primary, None).await;
    role_is(b.rwproxy.state(), Role::Replica, Some(addrs[0])).await;
    role_is(c.node.state(), Role::Replica, Some(addrs[0])).await;
    Cluster {
        a,
        b,
        c,
        c_addr: addrs[2],
        mounts,
        _dir: dir,
    }
}

impl Cluster {
    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
        self.c.stop().await;
    }
}

#[tokio::test]
async fn embedded_and_binary_nodes_forward_writes_to_either_kind_of_primary() {
    let cluster = cluster().await;
    let (a, b, c) = (cluster.a.addr, cluster.b.addr, cluster.c_addr);

    // An embedded replica forwards a write to the embedded primary, whose layer issues a token.
    let (status, node, route, token) = put(b, "one", "first note").await;
    assert_eq!(status, 201);
    assert_eq!(node, a.to_string(), "served by the primary's app");
    assert_eq!(route, "primary; reason=write");
    let token = token.expect("the primary issued a position token");

    // The replica serves the read in-process once it has reached the token.
    let (status, node, route, body) = get(b, "one", &token).await;
    assert_eq!((status, body.as_str()), (200, "first note"));
    assert_eq!(
        node,
        b.to_string(),
        "served by the replica's own app, no second hop"
    );
    assert!(route.starts_with("local"), "{route}");

    // A binary replica forwards to the embedded primary too, and serves its own reads.
    let (status, node, route, token) = put(c, "two", "second note").await;
    assert_eq!((status, node.as_str()), (201, a.to_string().as_str()));
    assert_eq!(route, "primary; reason=write");
    let (status, node, _, body) = get(c, "two", &token.unwrap()).await;
    assert_eq!((status, body.as_str()), (200, "second note"));
    assert_eq!(node, c.to_string());

    // The layer answers the health path (healthy once the verdict has risen); the admin
    // listener serves metrics.
    let health: serde_json::Value = eventually(SETTLE, "the replica to report healthy", || async {
        let health = client()
            .get(format!("http://{b}/health"))
            .send()
            .await
            .unwrap();
        match health.status().as_u16() {
            200 => Some(health.json().await.unwrap()),
            _ => None,
        }
    })
    .await;
    assert_eq!(health["role"], "replica", "{health}");
    let admin = cluster.b.rwproxy.admin_addr().unwrap();
    let metrics = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rwproxy_requests_total")
                && l.contains("route=\"primary\"")
                && l.contains("class=\"write\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Move the primary to the binary node: both embedded nodes now forward writes to it.
    let c_name = c.to_string();
    cluster.mounts[0]
        .make_replica(&c_name, Duration::ZERO)
        .unwrap();
    cluster.mounts[1]
        .make_replica(&c_name, Duration::ZERO)
        .unwrap();
    cluster.mounts[2].make_primary().unwrap();
    role_is(cluster.c.node.state(), Role::Primary, None).await;
    role_is(cluster.a.rwproxy.state(), Role::Replica, Some(c)).await;
    role_is(cluster.b.rwproxy.state(), Role::Replica, Some(c)).await;
    for via in [a, b] {
        let (status, node, route, token) = put(via, "three", "third note").await;
        assert!(status == 201 || status == 200, "{status}");
        assert_eq!(node, c_name, "served by the binary primary's app");
        assert_eq!(route, "primary; reason=write");
        assert!(token.is_some(), "the binary primary issued a token");
    }
    cluster.stop().await;
}
