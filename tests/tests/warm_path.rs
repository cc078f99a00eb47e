//! End to end: the warm path to the primary (#28). Replicas open `writes.warm_connections`
//! HTTP/2 connections to the primary before any write and again right after a hand-off, and
//! the forwarder's safety facts hold over them: a dead warm connection costs no write, a write
//! that never left is re-routed to the new primary, a write that may have been applied is never
//! sent twice.
//!
//! Every node sits behind a relay (`ChaosCluster`), whose counters show the connections made.
//! Also: a `primary_url` that speaks HTTP/1.1 only is detected on the warm-up connection and
//! served over HTTP/1.1; a silently dead link holds a write for at most the PING bound; TLS
//! reconnects resume their session.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rwproxy::config::{self, ClientTlsFiles, ServerTlsFiles};
use rwproxy::Node;
use rwproxy_tests::app::App;
use rwproxy_tests::chaos_cluster::ChaosCluster;
use rwproxy_tests::relay::{Mode, Relay};
use rwproxy_tests::tls::Pki;
use rwproxy_tests::{client, eventually, Answer};
use tokio::net::TcpListener;

/// The value of the sample `name` (with its labels, exactly as rendered) on `admin`'s
/// `/metrics`.
async fn metric(admin: &str, name: &str) -> Option<f64> {
    let text = client()
        .get(format!("{admin}/metrics"))
        .answer()
        .await
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Waits until `admin`'s replica reports `n` connections to the primary ready for a write.
async fn warm_reported(admin: &str, n: usize) {
    let warm = r#"rwproxy_primary_connections{state="warm"}"#;
    eventually(
        Duration::from_secs(5),
        &format!("the replica to report {n} warm"),
        || async move { (metric(admin, warm).await == Some(n as f64)).then_some(()) },
    )
    .await;
}

/// Resets the `n` connections `relay` carries, then lets new ones pass. (Setting `Pass` right
/// after `Reset` could be seen first by the connections' tasks, which would then live on.)
async fn reset_all(relay: &Relay, n: u64) {
    let resets = relay.stats().resets;
    relay.set_mode(Mode::Reset);
    eventually(Duration::from_secs(5), "the connections reset", || {
        let now = relay.stats().resets;
        async move { (now >= resets + n).then_some(()) }
    })
    .await;
    relay.set_mode(Mode::Pass);
}

async fn write(url: &str, body: &'static str) -> reqwest::Response {
    client().post(format!("{url}/w")).body(body).answer().await
}

/// Warm before the first write and after a hand-off; a dead warm connection costs no write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_warm_before_writes_and_replaced_when_dead() {
    let cluster = ChaosCluster::start_with_relays(3, |_| {}).await;
    let (primary, replica) = (&cluster.nodes[0], &cluster.nodes[2]);
    // Two replicas, two warm connections each, and no write yet.
    eventually(Duration::from_secs(5), "warm connections to node 0", || {
        let accepted = primary.relay.stats().accepted;
        async move { (accepted >= 4).then_some(()) }
    })
    .await;
    let admin = replica.admin_url();
    warm_reported(&admin, 2).await;
    let accepted = primary.relay.stats().accepted;
    for _ in 0..5 {
        assert_eq!(write(&replica.url(), "w").await.status(), 200);
    }
    assert_eq!(
        primary.relay.stats().accepted,
        accepted,
        "the writes took warm connections"
    );
    let demand = r#"rwproxy_primary_connections_created_total{reason="demand"}"#;
    assert_eq!(metric(&admin, demand).await, Some(0.0));

    // Every warm connection dies (reset); the next writes are served all the same.
    reset_all(&primary.relay, 4).await;
    for _ in 0..5 {
        assert_eq!(write(&replica.url(), "w").await.status(), 200);
    }
    assert_eq!(primary.app.writes_seen(), 10, "each write applied once");

    // A hand-off to node 1: the replicas warm up to it before any write goes there.
    cluster.hand_off(1).await;
    let new_primary = &cluster.nodes[1];
    eventually(Duration::from_secs(5), "warm connections to node 1", || {
        let accepted = new_primary.relay.stats().accepted;
        async move { (accepted >= 4).then_some(()) }
    })
    .await;
    // Ready once their SETTINGS came back (until then a write would take HTTP/1.1).
    warm_reported(&admin, 2).await;
    let accepted = new_primary.relay.stats().accepted;
    assert_eq!(write(&replica.url(), "w").await.status(), 200);
    assert_eq!(new_primary.app.writes_seen(), 1);
    assert_eq!(new_primary.relay.stats().accepted, accepted);
    cluster.stop().await;
}

/// A write that may have reached the primary's app is never sent again; one that never left
/// this node follows the primary to its new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maybe_sent_writes_are_not_repeated_and_unsent_ones_follow_the_primary() {
    let cluster = ChaosCluster::start_with_relays(3, |c| {
        c.writes.primary_wait = Duration::from_secs(5);
    })
    .await;
    let (primary, replica) = (&cluster.nodes[0], &cluster.nodes[2]);
    eventually(Duration::from_secs(5), "warm connections to node 0", || {
        let accepted = primary.relay.stats().accepted;
        async move { (accepted >= 4).then_some(()) }
    })
    .await;

    // The write reaches the app, then the connection breaks before the answer comes back.
    primary
        .relay
        .set_mode(Mode::Delay(Duration::from_millis(300)));
    let url = replica.url();
    let pending = tokio::spawn(async move { write(&url, "maybe").await });
    eventually(Duration::from_secs(5), "the app to apply the write", || {
        let n = primary.app.writes_seen();
        async move { (n == 1).then_some(()) }
    })
    .await;
    primary.relay.set_mode(Mode::Reset);
    let answer = pending.await.unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(
        answer.headers()["rwproxy-error"],
        "primary-failed",
        "a write that may have been applied is answered, not retried"
    );
    primary.relay.set_mode(Mode::Pass);
    // Give a (wrong) second delivery every chance to show up.
    assert_eq!(write(&replica.url(), "after").await.status(), 200);
    assert_eq!(
        primary.app.writes_seen(),
        2,
        "the broken write was applied once"
    );

    // Node 0 dies: its connections reset and new ones are refused. A write sent now never
    // leaves the replica, waits for the hand-off, and is served by node 1.
    primary.relay.set_mode(Mode::Refuse);
    let url = replica.url();
    let pending = tokio::spawn(async move { write(&url, "unsent").await });
    cluster.move_primary(1).await;
    let answer = pending.await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(cluster.nodes[1].app.writes_seen(), 1);
    assert_eq!(primary.app.writes_seen(), 2);
    cluster.stop().await;
}

/// A server that speaks HTTP/1.1 only (hyper's http1, like LiteFS's Go proxy or nginx without
/// h2c) on `127.0.0.1:0`: answers every request 200 and counts those it served. Stops when the
/// returned guard is dropped.
struct Http1Only {
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Http1Only {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Http1Only {
    async fn start() -> Http1Only {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let _ = request.into_body().collect().await;
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"applied\n",
                        ))))
                    }
                });
                connections.spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Http1Only { addr, served, task }
    }
}

/// A replica whose primary is `primary` (static source), reached at `primary_url`, with
/// `writes.warm_connections = warm` and the default `writes.http2 = true`.
async fn replica_of(primary: &str, primary_url: &str, warm: usize, app: &App) -> Node {
    let text = format!(
        r#"
node = "replica"
[proxy]
listen = "127.0.0.1:0"
app = "{app}"
[admin]
listen = "127.0.0.1:0"
[cluster]
source = "static"
primary = "{primary}"
[writes]
primary_url = "{primary_url}"
warm_connections = {warm}
[log]
access = false
"#,
        app = app.url(),
    );
    Node::start(&config::parse(&text).unwrap()).await.unwrap()
}

fn admin_of(node: &Node) -> String {
    format!("http://{}", node.admin_addr().unwrap())
}

/// A `primary_url` that speaks HTTP/1.1 only: found out on the warm-up connection (or, without
/// warm connections, on the first write's connection before the write is handed to it), counted
/// once, and every write served over HTTP/1.1 exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_only_primary_is_detected_before_any_write_and_served_over_http1() {
    let server = Http1Only::start().await;
    let app = App::start("replica-app", false, None, &["app.db"]).await;
    let primary = server.addr.to_string();
    let fallbacks = "rwproxy_primary_http2_fallbacks_total";

    // With warm connections: the warm-up finds out before any write, then warms HTTP/1.1.
    let warmed = replica_of(&primary, "http://{primary}", 2, &app).await;
    let admin = admin_of(&warmed);
    eventually(Duration::from_secs(5), "the fallback to be counted", || {
        let admin = admin.clone();
        async move { (metric(&admin, fallbacks).await == Some(1.0)).then_some(()) }
    })
    .await;
    warm_reported(&admin, 2).await;
    let url = format!("http://{}", warmed.proxy_addr());
    for _ in 0..5 {
        let answer = write(&url, "w").await;
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "applied\n");
    }
    assert_eq!(server.served.load(Ordering::SeqCst), 5, "each write once");
    assert_eq!(metric(&admin, fallbacks).await, Some(1.0), "counted once");
    warmed.shutdown().await;

    // Without: the first write's HTTP/2 connection hears HTTP/1.1 before the write is handed
    // to it; the write goes over HTTP/1.1, once.
    let cold = replica_of(&primary, "http://{primary}", 0, &app).await;
    let admin = admin_of(&cold);
    let url = format!("http://{}", cold.proxy_addr());
    for _ in 0..3 {
        assert_eq!(write(&url, "w").await.status(), 200);
    }
    assert_eq!(server.served.load(Ordering::SeqCst), 8, "each write once");
    assert_eq!(metric(&admin, fallbacks).await, Some(1.0));
    cold.shutdown().await;
}

/// A link that drops everything without closing (the relay swallows both ways): the write
/// handed to the dead warm connection is answered 502 `primary-failed` (it may have been
/// applied, so it is not resent) once PINGs find the connection dead, well before 15 s; once
/// the link is back, writes are served on fresh connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_link_holds_a_write_for_the_ping_bound_only() {
    let cluster = ChaosCluster::start_with_relays(2, |c| {
        c.writes.primary_wait = Duration::from_secs(1);
    })
    .await;
    let (primary, replica) = (&cluster.nodes[0], &cluster.nodes[1]);
    let admin = replica.admin_url();
    warm_reported(&admin, 2).await;
    assert_eq!(write(&replica.url(), "before").await.status(), 200);

    primary.relay.set_mode(Mode::Blackhole);
    let started = Instant::now();
    let answer = write(&replica.url(), "into the void").await;
    let held = started.elapsed();
    assert_eq!(answer.status(), 502);
    assert_eq!(answer.headers()["rwproxy-error"], "primary-failed");
    // PING_INTERVAL (5 s) after the last frame, plus PING_TIMEOUT (3 s); slack for a loaded
    // machine, still well under the 15 s of the former settings.
    assert!(
        held < Duration::from_secs(11),
        "held {held:?}: the PING bound is 8 s"
    );

    primary.relay.set_mode(Mode::Pass);
    warm_reported(&admin, 2).await;
    assert_eq!(write(&replica.url(), "after").await.status(), 200);
    assert_eq!(
        primary.app.writes_seen(),
        2,
        "the swallowed write was never applied nor resent"
    );
    cluster.stop().await;
}

/// TLS between the nodes: a reconnect after the connections died resumes the session (TLS
/// 1.3 ticket) instead of a full handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_reconnects_to_the_primary_resume_the_session() {
    let pki = Pki::new();
    let server = pki.server();
    let server_files = ServerTlsFiles {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca: None,
    };
    let upstream = ClientTlsFiles {
        ca: Some(pki.ca_path.clone()),
        client_identity: None,
    };
    let cluster = ChaosCluster::start_with_relays(2, move |c| {
        c.proxy.tls = Some(server_files.clone());
        c.writes.primary_url = "https://{primary}".into();
        c.writes.tls = upstream.clone();
    })
    .await;
    let (primary, replica) = (&cluster.nodes[0], &cluster.nodes[1]);
    let admin = replica.admin_url();
    let full = r#"rwproxy_primary_tls_handshakes_total{kind="full"}"#;
    let resumed = r#"rwproxy_primary_tls_handshakes_total{kind="resumed"}"#;
    warm_reported(&admin, 2).await;
    // The second warm connection may already have resumed the first one's session.
    let full_before = metric(&admin, full).await.unwrap();
    let resumed_before = metric(&admin, resumed).await.unwrap_or(0.0);
    assert!(
        full_before >= 1.0,
        "the first connection is a full handshake"
    );

    // Every connection dies; the warmer reconnects, resuming.
    reset_all(&primary.relay, 2).await;
    eventually(Duration::from_secs(10), "resumed handshakes", || {
        let admin = admin.clone();
        async move { (metric(&admin, resumed).await? >= resumed_before + 2.0).then_some(()) }
    })
    .await;
    warm_reported(&admin, 2).await;
    assert_eq!(
        metric(&admin, full).await.unwrap(),
        full_before,
        "no full handshake on reconnect"
    );
    // A write still goes through (clients reach the replica over TLS as well).
    let https_url = replica.url().replacen("http://", "https://", 1);
    let answer = pki
        .reqwest(None)
        .post(format!("{https_url}/w"))
        .body("w")
        .answer()
        .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(primary.app.writes_seen(), 1);
    cluster.stop().await;
}
