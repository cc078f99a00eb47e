//! End to end: limits and malformed input get clear answers, never a hang or a lost write; the
//! forwarded-request marker cannot be forged into changing routing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{eventually, metrics_line, raw_exchange as raw, Answer as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_get_413_and_reach_no_app() {
    let c = Cluster::start(2, |config| config.proxy.max_body = Some(1000)).await;
    for node in [0, 1] {
        let r = c.nodes[node]
            .post("/w")
            .body(vec![1u8; 1001])
            .answer()
            .await;
        assert_eq!(r.status(), 413, "node {node}");
        assert_eq!(r.headers()["rwproxy-error"], "too-large");
    }
    // A chunked body (no declared length) is cut off as soon as it passes the limit.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![2u8; 100])));
    let r = c.nodes[0]
        .post("/w")
        .body(reqwest::Body::wrap_stream(chunks))
        .answer()
        .await;
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["rwproxy-error"], "too-large");
    let ok = c.nodes[1].post("/w").body(vec![1u8; 1000]).answer().await;
    assert_eq!(ok.status(), 200);
    // The over-long declared bodies never reached an app; the cut chunked one may have reached
    // node 0's app, but only incomplete (which the app records with an empty body).
    let seen = c.nodes[0].app.seen();
    assert!(
        seen.iter().all(|s| s.body_len == 1000 || s.body_len == 0),
        "{:?}",
        seen.iter().map(|s| s.body_len).collect::<Vec<_>>()
    );
    let complete: Vec<_> = c.nodes[0]
        .app
        .seen()
        .into_iter()
        .filter(|s| s.body_len == 1000)
        .collect();
    assert_eq!(
        complete.len(),
        1,
        "only the write within the limit was applied"
    );
    assert_eq!(c.nodes[1].app.writes_seen(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_are_refused_by_the_http_layer() {
    let c = Cluster::start(1, |_| {}).await;
    let addr = c.nodes[0].name.clone();
    // Conflicting framing (RFC 9112 §6.3): Transfer-Encoding wins, Content-Length is dropped and
    // the connection is closed after the answer, so nothing can be smuggled behind the body.
    let answer = raw(
        &addr,
        b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "a smuggled request was answered: {answer:?}"
    );
    let seen = c.nodes[0].app.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        !seen[0].headers.contains_key("content-length") || seen[0].headers["content-length"] == "0"
    );
    assert!(seen.iter().all(|s| s.uri != "/smuggled"));
    let answer = raw(&addr, b"GARBAGE\r\n\r\n", Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = raw(&addr, huge.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(
        c.nodes[0].app.seen().len(),
        1,
        "the malformed and oversized requests reached no app"
    );
    // hyper answered those two itself, before any layer saw them: they are counted all the same.
    let admin = c.nodes[0].admin_url();
    eventually(Duration::from_secs(5), "both refusals counted", || {
        metrics_line(&admin, |l| {
            l == "rwproxy_errors_total{reason=\"bad-request\"} 2"
        })
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    let c = Cluster::start(1, |config| {
        config.proxy.header_timeout = Duration::from_millis(300);
        config.proxy.max_connections = 1;
    })
    .await;
    let addr = c.nodes[0].name.clone();
    // Half a request head, then silence: closed after the header timeout.
    let started = Instant::now();
    let answer = raw(&addr, b"GET / HTTP/1.1\r\nHost:", Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a slow client held the connection"
    );
    assert!(!answer.contains("200"), "{answer:?}");

    // One connection allowed: a second one waits until the first closes.
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let second = tokio::spawn({
        let addr = addr.clone();
        async move {
            raw(
                &addr,
                b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Duration::from_secs(5),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "served past max_connections");
    drop(first);
    let answer = second.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_marker_only_counts_with_the_shared_secret() {
    // Without a secret the marker is believed, but it can only restrict: a replica refuses.
    let c = Cluster::start(2, |_| {}).await;
    let r = c.nodes[1]
        .post("/w")
        .header("rwproxy-forwarded-by", "x")
        .body("a")
        .answer()
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["rwproxy-error"], "loop");
    assert_eq!(c.writes_seen(), [0, 0], "writes seen by each app");
    c.stop().await;

    // With a secret, a forged marker is ignored: the write is routed like any client's.
    let c = Cluster::start(2, |config| {
        config.cluster.secret = Some("correct horse battery staple".into())
    })
    .await;
    let r = c.nodes[1]
        .post("/w")
        .header("rwproxy-forwarded-by", "x")
        .header("rwproxy-secret", "wrong guess wrong guess")
        .body("a")
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "primary; reason=write");
    let seen = &c.nodes[0].app.seen()[0];
    assert!(
        !seen.headers.contains_key("rwproxy-secret"),
        "the secret leaked to the app"
    );
    assert!(!seen.headers.contains_key("rwproxy-forwarded-by"));
    assert_eq!(c.nodes[1].app.writes_seen(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_trips_the_breaker_and_writes_fail_fast() {
    let mut c = Cluster::start(2, |config| {
        config.writes.primary_wait = Duration::from_millis(300)
    })
    .await;
    c.nodes[0].stop().await;
    let mut last = Duration::ZERO;
    for _ in 0..4 {
        let started = Instant::now();
        let r = c.nodes[1].post("/w").body("x").answer().await;
        last = started.elapsed();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["rwproxy-error"], "primary-unreachable");
        assert!(r.headers().contains_key("retry-after"));
    }
    // After repeated failures the breaker answers without waiting for primary_wait.
    assert!(
        last < Duration::from_millis(250),
        "the breaker did not open: {last:?}"
    );
    // Reads are still served locally.
    let r = c.nodes[1].get("/r").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(c.nodes[1].app.writes_seen(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_by_a_former_primary_follows_the_new_one() {
    let c = Cluster::start(3, |config| {
        config.writes.primary_wait = Duration::from_secs(4)
    })
    .await;
    // Node 1 still believes node 2 is primary; node 2 knows it is not.
    c.follow(1, 2).await;
    let write = tokio::spawn(
        c.nodes[1]
            .post("/w")
            .header("x-write-id", "once")
            .body("small body")
            .answer(),
    );
    // Wait until node 2 has refused it at least once, then let node 1 learn the truth.
    let admin = c.nodes[2].admin_url();
    eventually(Duration::from_secs(5), "node 2 to answer loop", || {
        metrics_line(&admin, |l| {
            l.starts_with("rwproxy_errors_total{reason=\"loop\"}") && !l.ends_with(" 0")
        })
    })
    .await;
    c.nodes[1].mount.make_replica(&c.nodes[0].name, 0);
    let r = write.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["app"], "app0");
    assert_eq!(
        c.nodes[0].app.write_ids(),
        vec!["once".to_string()],
        "applied exactly once"
    );
    assert_eq!(c.writes_seen()[1..], [0, 0], "a replica's app saw a write");
    c.stop().await;
}
