//! End to end: the warm path to the primary (#28). Replicas open `writes.warm_connections`
//! HTTP/2 connections to the primary before any write and again right after a hand-off, and
//! the forwarder's safety facts hold over them: a dead warm connection costs no write, a write
//! that never left is re-routed to the new primary, a write that may have been applied is never
//! sent twice.
//!
//! Every node sits behind a relay (`ChaosCluster`), whose counters show the connections made.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_tests::chaos_cluster::ChaosCluster;
use rwproxy_tests::relay::Mode;
use rwproxy_tests::{client, eventually, Answer};

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
    let warm = r#"rwproxy_primary_connections{state="warm"}"#;
    eventually(
        Duration::from_secs(5),
        "the replica to report 2 warm",
        || {
            let admin = admin.clone();
            async move { (metric(&admin, warm).await == Some(2.0)).then_some(()) }
        },
    )
    .await;
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
    primary.relay.set_mode(Mode::Reset);
    primary.relay.set_mode(Mode::Pass);
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
