//! End to end: peer-aware health on a three-node LiteFS-format cluster whose nodes know each
//! other's admin listeners. One cluster walks through every case of the table in
//! docs/operations.md: a replica cut off from a primary the others reach (only it is pulled),
//! the primary lost by everyone (every replica `200 degraded`, reads served, writes `503`), the
//! primary back (all `ok`, no restart), and no peer to hear (today's `503 no-primary`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_tests::peered::{health, health_becomes, Peered};
use rwproxy_tests::{client, eventually, metrics_line};

const WAIT: Duration = Duration::from_secs(10);
/// LiteFS's `.lag` of a replica that has not heard from its primary for a minute.
const LOST_LAG_MS: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_of_the_table() {
    let mut p = Peered::start(3, |config| {
        config.peers.poll = Duration::from_millis(100);
        config.reads.max_lag = Duration::from_secs(1);
        config.writes.primary_wait = Duration::from_millis(200);
    })
    .await;
    let health_url = |p: &Peered, i: usize| format!("{}/health", p.cluster.nodes[i].url());
    for i in 0..3 {
        health_becomes(&health_url(&p, i), 200, "ok", WAIT).await;
    }

    // 1. Node 2 cut off from a primary the others still reach: only node 2 is pulled.
    p.cluster.nodes[2].lose_primary(LOST_LAG_MS).await;
    let doc = health_becomes(&health_url(&p, 2), 503, "no-primary", WAIT).await;
    assert!(
        doc["reason"]
            .as_str()
            .unwrap()
            .contains("still reaches a primary"),
        "{doc}"
    );
    assert_eq!(health(&health_url(&p, 1)).await.0, 200);
    assert_eq!(health(&health_url(&p, 0)).await.0, 200);
    p.cluster.follow(2, 0).await;
    health_becomes(&health_url(&p, 2), 200, "ok", WAIT).await;

    // 2. The primary stops: every replica lost it, none is worse than the other.
    let writes_before = p.cluster.writes_seen();
    p.cluster.nodes[0].stop().await;
    for i in [1, 2] {
        p.cluster.nodes[i].mount.lose_primary(LOST_LAG_MS);
    }
    for i in [1, 2] {
        let doc = health_becomes(&health_url(&p, i), 200, "degraded", WAIT).await;
        assert!(
            doc["reason"]
                .as_str()
                .unwrap()
                .starts_with("no primary anywhere reachable"),
            "{doc}"
        );
        assert_eq!(doc["peers"]["heard"], 1, "{doc}");
        let (status, _) = health(&format!("{}?max_lag=1s", health_url(&p, i))).await;
        assert_eq!(
            status, 200,
            "a probe's own threshold does not undo degraded"
        );
        // `?strict` keeps the answer of before.
        let (status, strict) = health(&format!("{}?strict", health_url(&p, i))).await;
        assert_eq!(
            (status, strict["status"].as_str()),
            (503, Some("no-primary"))
        );
        // Reads are served from local data although the lag is far over reads.max_lag.
        let r = p.cluster.nodes[i].get("/items/1").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["app"], format!("app{i}"));
        // Writes: 503 no-primary with Retry-After, and no app saw them.
        let w = p.cluster.nodes[i]
            .post("/items")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(w.status(), 503);
        assert_eq!(w.headers()["rwproxy-error"], "no-primary");
        assert!(w.headers().contains_key("retry-after"));
        let admin = p.cluster.nodes[i].admin_url();
        eventually(WAIT, "rwproxy_degraded 1", || {
            metrics_line(&admin, |l| l == "rwproxy_degraded 1")
        })
        .await;
    }
    assert_eq!(
        p.cluster.writes_seen(),
        writes_before,
        "no write reached an app"
    );

    // 3. The primary comes back: every node returns to `ok` without a restart of the replicas.
    p.restart(0).await;
    p.cluster.follow(1, 0).await;
    p.cluster.follow(2, 0).await;
    for i in 0..3 {
        health_becomes(&health_url(&p, i), 200, "ok", WAIT).await;
    }
    let admin = p.cluster.nodes[1].admin_url();
    eventually(WAIT, "rwproxy_degraded 0", || {
        metrics_line(&admin, |l| l == "rwproxy_degraded 0")
    })
    .await;

    // 4. No peer to hear (both stopped): a lone node may be the one cut off: 503 as before.
    p.cluster.nodes[0].stop().await;
    p.cluster.nodes[2].stop().await;
    p.cluster.nodes[1].lose_primary(LOST_LAG_MS).await;
    let doc = health_becomes(&health_url(&p, 1), 503, "no-primary", WAIT).await;
    assert_eq!(doc["peers"]["heard"], 0, "{doc}");
    let metrics = p.admin_url(1);
    assert!(
        metrics_line(&metrics, |l| l == "rwproxy_peers{state=\"known\"} 2")
            .await
            .is_some(),
        "the peers stay known"
    );
    p.cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cluster_secret_only_signed_answers_count() {
    const SECRET: &str = "a-secret-of-at-least-16";
    let mut p = Peered::start(3, |config| {
        config.cluster.secret = Some(SECRET.to_owned());
        config.peers.poll = Duration::from_millis(100);
    })
    .await;
    // A poll's nonce gets a proof that only the secret makes.
    let r = client()
        .get(format!("{}/status", p.admin_url(1)))
        .header("rwproxy-peer-nonce", "0123456789abcdef")
        .send()
        .await
        .unwrap();
    let proof = r.headers()["rwproxy-peer-proof"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = r.bytes().await.unwrap();
    use rwproxy_http::peer_auth::verify;
    assert!(verify(
        SECRET.as_bytes(),
        b"0123456789abcdef",
        &body,
        &proof
    ));
    assert!(!verify(
        b"another-secret-16chars",
        b"0123456789abcdef",
        &body,
        &proof
    ));
    // Without a nonce (rwproxy status, scripts): the same document, unsigned.
    let r = client()
        .get(format!("{}/status", p.admin_url(1)))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("rwproxy-peer-proof"));

    // Signed peers agree: degraded.
    p.cluster.nodes[0].stop().await;
    for i in [1, 2] {
        p.cluster.nodes[i].mount.lose_primary(LOST_LAG_MS);
    }
    let health_url = |p: &Peered, i: usize| format!("{}/health", p.cluster.nodes[i].url());
    for i in [1, 2] {
        health_becomes(&health_url(&p, i), 200, "degraded", WAIT).await;
    }
    // Node 2 comes back without the secret: its answers are unsigned and no longer count, so
    // node 1 hears no peer and answers as a lone node would.
    p.cluster.nodes[2].stop().await;
    p.restart_with(2, |config| config.cluster.secret = None)
        .await;
    let doc = health_becomes(&health_url(&p, 1), 503, "no-primary", WAIT).await;
    assert_eq!(doc["peers"]["heard"], 0, "{doc}");
    p.cluster.stop().await;
}
