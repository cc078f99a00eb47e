//! Cascading replication with real PostgreSQL servers: C streams from replica B, which
//! streams from primary A, one loopback address per node (A 127.0.0.1, B 127.0.0.2), and
//! `writes.primary_url = "http://{primary}:PORT"` with the same port on each. C's primary is
//! B's address (its `sender_host`); a write sent to C must still land on A.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rwproxy_core::Role;
use rwproxy_tests::pg_cluster::PgNode;
use rwproxy_tests::postgres::{PgBin, PgServer, MONITOR_USER};
use rwproxy_tests::{client, Answer as _};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_cascading_replica_follows_the_chain_to_the_primary() {
    let Some(bin) = PgBin::find() else { return };
    let a = PgServer::primary(&bin).await;
    let mut b = PgServer::replica_of(&a);
    b.listen_also("127.0.0.2");
    let c = PgServer::replica_via(&b, "127.0.0.2");

    // One proxy port for every node, on each node's own address.
    let a_proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = a_proxy.local_addr().unwrap().port();
    let Ok(b_proxy) = TcpListener::bind(("127.0.0.2", port)).await else {
        panic!("127.0.0.2:{port} is taken: rerun");
    };
    let c_proxy = TcpListener::bind(("127.0.0.3", port)).await.unwrap();
    let primary_url = |config: &mut rwproxy::config::Config| {
        config.writes.primary_url = format!("http://{{primary}}:{port}");
    };
    let na = PgNode::start_on(
        a_proxy,
        &a.url(MONITOR_USER),
        &a.url("postgres"),
        None,
        primary_url,
    )
    .await;
    let nb = PgNode::start_on(
        b_proxy,
        &b.url(MONITOR_USER),
        &b.url("postgres"),
        None,
        primary_url,
    )
    .await;
    let nc = PgNode::start_on(
        c_proxy,
        &c.url(MONITOR_USER),
        &c.url("postgres"),
        None,
        primary_url,
    )
    .await;
    na.state_until("A primary", |s| s.role == Role::Primary)
        .await;
    nb.state_until("B streams from 127.0.0.1", |s| {
        s.role == Role::Replica && s.primary.as_deref() == Some("127.0.0.1")
    })
    .await;
    nc.state_until("C streams from 127.0.0.2", |s| {
        s.role == Role::Replica && s.primary.as_deref() == Some("127.0.0.2")
    })
    .await;

    let write = client().post(nc.url("/items/cascaded")).answer().await;
    let status = write.status();
    let error = write.headers().get("rwproxy-error").cloned();
    assert!(
        status.is_success(),
        "{status} {error:?}: {}",
        write.text().await.unwrap_or_default()
    );
    let count = a
        .query_text("SELECT count(*) FROM items WHERE name = 'cascaded'")
        .await;
    assert_eq!(count.as_deref(), Some("1"), "the write landed on A");

    // B itself, asked directly as if it were the primary, still refuses (it passes a forwarded
    // write to no app) and names its own primary.
    let refused = client()
        .post(nb.url("/items/direct"))
        .header("rwproxy-forwarded-by", "someone")
        .answer()
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["rwproxy-error"], "loop");
    assert_eq!(refused.headers()["rwproxy-primary"], "127.0.0.1");
}
