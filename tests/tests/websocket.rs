//! End to end: WebSockets (HTTP/1.1 upgrades) tunnel through rwproxy to the local app for reads
//! and to the primary for writes, and a silent tunnel is closed after
//! `proxy.upgrade_idle_timeout`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::ws::{next_message, next_text, open, Ws};
use rwproxy_tests::Answer as _;
use tokio_tungstenite::tungstenite::Message;

async fn echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(next_text(ws).await, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_read_tunnels_to_the_local_app() {
    let c = Cluster::start(2, |_| {}).await;
    let (mut ws, response) = open(&c.nodes[1].name, "/ws/chat").await;
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["rwproxy-route"], "local");
    assert_eq!(next_text(&mut ws).await, "app:app1 /ws/chat");
    for i in 0..20 {
        echo(&mut ws, &format!("message {i}")).await;
    }
    // A large binary message crosses intact.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    let back = next_message(&mut ws).await;
    assert_eq!(back.into_data().to_vec(), big);
    ws.close(None).await.unwrap();

    let seen = c.nodes[1].app.seen();
    assert!(
        seen.is_empty(),
        "the app's upgrade endpoint records nothing"
    );
    assert!(
        c.nodes[0].app.seen().is_empty(),
        "the primary's app saw a replica's read"
    );

    // Plain requests still work on the same node (its pool holds no upgraded connection).
    let r = c.nodes[1].get("/after").answer().await;
    assert_eq!(r.status(), 200);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_on_an_always_forward_path_tunnels_to_the_primary() {
    let c = Cluster::start(3, |config| {
        config.routing.always_forward = vec!["/ws/live/*".into()];
    })
    .await;
    let (mut ws, response) = open(&c.nodes[2].name, "/ws/live/orders").await;
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["rwproxy-route"], "primary; reason=write");
    assert_eq!(next_text(&mut ws).await, "app:app0 /ws/live/orders");
    for i in 0..10 {
        echo(&mut ws, &format!("order {i}")).await;
    }
    ws.close(None).await.unwrap();

    // Several at once, through both replicas.
    let mut sockets = Vec::new();
    for i in 0..6 {
        let (mut ws, _) = open(&c.nodes[1 + i % 2].name, "/ws/live/x").await;
        assert_eq!(next_text(&mut ws).await, "app:app0 /ws/live/x");
        sockets.push(ws);
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        echo(ws, &format!("socket {i}")).await;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    let c = Cluster::start(2, |config| {
        config.proxy.upgrade_idle_timeout = Duration::from_secs(1);
    })
    .await;

    // Traffic keeps a tunnel open well past the idle timeout.
    let (mut busy, _) = open(&c.nodes[1].name, "/ws/busy").await;
    assert_eq!(next_text(&mut busy).await, "app:app1 /ws/busy");
    let started = tokio::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        echo(&mut busy, &format!("keepalive {i}")).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // Silence closes it: the client sees the connection end, without a message.
    let (mut quiet, _) = open(&c.nodes[1].name, "/ws/quiet").await;
    assert_eq!(next_text(&mut quiet).await, "app:app1 /ws/quiet");
    let silent_from = tokio::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), quiet.next())
        .await
        .expect("the idle tunnel was not closed");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    assert!(
        silent_from.elapsed() >= Duration::from_millis(700),
        "closed too early: {:?}",
        silent_from.elapsed()
    );
    c.stop().await;
}
