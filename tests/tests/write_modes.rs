//! End to end: `writes.mode = "fly-replay"` and `"redirect"` with real clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_core::WriteMode;
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::ws::{next_text, open};
use rwproxy_tests::{sha256_hex, Answer as _};

fn body(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fly_replay_answers_421_naming_the_primary() {
    let c = Cluster::start(2, |config| {
        config.writes.mode = WriteMode::FlyReplay;
        config.routing.always_forward = vec!["/login".into()];
    })
    .await;
    let replica = &c.nodes[1];
    let r = replica.post("/things").body(body(10_000)).answer().await;
    assert_eq!(r.status(), 421);
    assert_eq!(
        r.headers()["fly-replay"],
        format!("instance={}", c.nodes[0].name)
    );
    assert_eq!(r.headers()["rwproxy-error"], "fly-replay");

    // An always_forward read and a body-less write are replayed too; plain reads stay local.
    let r = replica.get("/login").answer().await;
    assert_eq!(r.status(), 421);
    let r = replica
        .request(reqwest::Method::DELETE, "/things/1")
        .answer()
        .await;
    assert_eq!(r.status(), 421);
    let r = replica.get("/things").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "local");

    // On the primary itself writes are served.
    let r = c.nodes[0].post("/things").body("x").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(c.writes_seen(), [1, 0], "writes seen by each app");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fly_replay_forwards_what_fly_cannot_replay() {
    let c = Cluster::start(2, |config| {
        config.writes.mode = WriteMode::FlyReplay;
    })
    .await;
    let replica = &c.nodes[1];

    // Over 1 MB with a content-length: Fly's edge could not replay it, so it is streamed.
    let big = body(1_500_000);
    let r = replica.put("/upload").body(big.clone()).answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "primary; reason=write");
    assert!(!r.headers().contains_key("fly-replay"));
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["app"], "app0");
    assert_eq!(doc["body_sha256"], sha256_hex(&big));

    // A body of unknown length (chunked): forwarded as well, even a small one.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(body(1000)), Ok(body(2000))];
    let r = replica
        .post("/stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["app"], "app0");
    assert_eq!(doc["body_len"], 3000);

    // Just under the limit, with a length: replayed.
    let r = replica.post("/small").body(body(1_000_000)).answer().await;
    assert_eq!(r.status(), 421);

    // A request Fly already replayed once is not bounced again.
    let r = replica
        .post("/replayed")
        .header("fly-replay-src", "instance=old;region=iad;t=1")
        .body("x")
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(c.writes_seen(), [3, 0], "writes seen by each app");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_answers_307_to_the_same_url_on_the_primary() {
    let c = Cluster::start(2, |config| {
        config.writes.mode = WriteMode::Redirect;
    })
    .await;
    let replica = &c.nodes[1];
    let r = replica
        .post("/things/7?q=a%20b&n=1")
        .body("hello")
        .answer()
        .await;
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()["rwproxy-error"], "redirect");
    assert_eq!(
        r.headers()["location"],
        format!("http://{}/things/7?q=a%20b&n=1", c.nodes[0].name)
    );

    // A client that follows redirects repeats the write, body and method, on the primary.
    let following = rwproxy_tests::client_builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let payload = body(200_000);
    let r = following
        .put(format!("{}/things/8?x=1", replica.url()))
        .body(payload.clone())
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.url().as_str(),
        format!("{}/things/8?x=1", c.nodes[0].url())
    );
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["app"], "app0");
    assert_eq!(doc["method"], "PUT");
    assert_eq!(doc["uri"], "/things/8?x=1");
    assert_eq!(doc["body_sha256"], sha256_hex(&payload));
    assert_eq!(c.writes_seen(), [1, 0], "writes seen by each app");

    // Reads stay local.
    let r = replica.get("/things").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "local");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_mode_tunnels_websocket_writes_instead() {
    let c = Cluster::start(2, |config| {
        config.writes.mode = WriteMode::Redirect;
        config.routing.always_forward = vec!["/ws/*".into()];
    })
    .await;
    let (mut ws, response) = open(&c.nodes[1].name, "/ws/feed").await;
    assert_eq!(response.status(), 101);
    assert_eq!(next_text(&mut ws).await, "app:app0 /ws/feed");
    c.stop().await;
}
