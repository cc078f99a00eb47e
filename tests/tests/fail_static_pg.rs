//! End to end: peer-aware health on real PostgreSQL, a primary and two streaming replicas, each
//! behind its own rwproxy that knows the others' admin listeners. A replica whose WAL receiver
//! is cut off while the other keeps streaming is pulled alone; when the primary stops, both
//! replicas stay `200 degraded`, serve reads and answer writes `503 no-primary`; when it starts
//! again, every node returns to `ok` without a restart.
//!
//! Skipped with a notice when PostgreSQL is not installed, unless `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_core::Role;
use rwproxy_tests::pg_cluster::{PgNode, WAIT};
use rwproxy_tests::postgres::{PgBin, PgServer, MONITOR_USER};
use rwproxy_tests::{client, eventually, Answer};
use tokio::net::TcpListener;

/// Starts a node per server (index 0 the primary), each with the others as peers.
async fn nodes(servers: &[&PgServer]) -> Vec<PgNode> {
    let mut listeners = Vec::new();
    for _ in servers {
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push((proxy, admin));
    }
    let admins: Vec<String> = listeners
        .iter()
        .map(|(_, a)| format!("http://{}", a.local_addr().unwrap()))
        .collect();
    let primary_name = listeners[0].0.local_addr().unwrap().to_string();
    let mut nodes = Vec::new();
    for (i, ((proxy, admin), server)) in listeners.into_iter().zip(servers).enumerate() {
        let peers: Vec<String> = admins
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a.clone())
            .collect();
        let primary = (i > 0).then_some(primary_name.as_str());
        let node = PgNode::start_with_admin(
            proxy,
            admin,
            &server.url(MONITOR_USER),
            &server.url("postgres"),
            primary,
            move |config| {
                config.peers.urls = peers;
                config.peers.poll = Duration::from_millis(100);
                config.writes.primary_wait = Duration::from_millis(200);
                config.reads.when_stale = rwproxy_core::StalePolicy::Reject;
            },
        )
        .await;
        nodes.push(node);
    }
    nodes
}

/// Waits until `node`'s health answers `code` with `status`; returns the document.
async fn status_is(node: &PgNode, code: u16, status: &str) -> serde_json::Value {
    let what = format!("{} to answer {code} {status}", node.name);
    node.health_until(&what, |c, doc| c == code && doc["status"] == status)
        .await;
    node.health().await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_primary_loss_keeps_replicas_serving_reads() {
    let Some(bin) = PgBin::find() else {
        return;
    };
    let mut primary = PgServer::primary(&bin).await;
    let r1 = PgServer::replica_of(&primary);
    let r2 = PgServer::replica_of(&primary);
    let n = nodes(&[&primary, &r1, &r2]).await;
    n[0].state_until("primary role", |s| s.role == Role::Primary)
        .await;
    for node in &n {
        status_is(node, 200, "ok").await;
    }
    let w = client().post(n[1].url("/items/before")).answer().await;
    assert_eq!(w.status(), 201, "a write forwarded to the primary");
    for node in &n[1..] {
        eventually(WAIT, "the write to replicate", || async {
            let r = client().get(node.url("/items/before")).answer().await;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    // Replica 2's WAL receiver is cut off while replica 1 keeps streaming: only it is pulled.
    let conninfo = r2.query_text("SHOW primary_conninfo").await.unwrap();
    r2.query_text("ALTER SYSTEM SET primary_conninfo = ''")
        .await;
    r2.query_text("SELECT pg_reload_conf()").await;
    let doc = status_is(&n[2], 503, "no-primary").await;
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .contains("still reaches a primary"),
        "{doc}"
    );
    assert_eq!(n[1].health().await.0, 200);
    let escaped = conninfo.replace('\'', "''");
    r2.query_text(&format!("ALTER SYSTEM SET primary_conninfo = '{escaped}'"))
        .await;
    r2.query_text("SELECT pg_reload_conf()").await;
    status_is(&n[2], 200, "ok").await;

    // The primary stops: both replicas lost it alike.
    let app_writes: Vec<usize> = n.iter().map(|x| x.app.writes_seen()).collect();
    primary.stop();
    for node in &n[1..] {
        let doc = status_is(node, 200, "degraded").await;
        assert_eq!(doc["peers"]["outcome"], "degraded", "{doc}");
        let read = client().get(node.url("/items/before")).answer().await;
        assert_eq!(
            read.status(),
            200,
            "reads served from the replica's own data"
        );
        let write = client().post(node.url("/items/during")).answer().await;
        assert_eq!(write.status(), 503);
        assert_eq!(write.headers()["rwproxy-error"], "no-primary");
        assert!(write.headers().contains_key("retry-after"));
    }
    let after: Vec<usize> = n.iter().map(|x| x.app.writes_seen()).collect();
    assert_eq!(after, app_writes, "no write reached an app");

    // The primary starts again: the replicas reconnect and every node is `ok`, no restart.
    primary.start();
    for node in &n {
        status_is(node, 200, "ok").await;
    }
    for node in n {
        node.node.shutdown().await;
    }
}
