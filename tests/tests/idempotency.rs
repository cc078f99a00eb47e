//! End to end: a write that failed after it was sent is retried only when it carries an
//! `Idempotency-Key` (and its body was kept); otherwise the client gets 502 `primary-failed`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rwproxy::config;
use rwproxy::Node;
use rwproxy_tests::client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fake primary rwproxy: the first connection reads a request and hangs up without an answer
/// (the write may have been applied), every later one answers 200.
async fn flaky_primary() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = Vec::new();
                // Read the whole request (head and the small body).
                while !String::from_utf8_lossy(&got).contains("small body") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got.extend_from_slice(&buf[..k]),
                    }
                }
                if n > 0 {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\napplied")
                        .await;
                }
                // n == 0: drop the connection without answering.
            });
        }
    });
    (addr, requests)
}

async fn replica_of(primary: &str) -> Node {
    let app = rwproxy_tests::app::App::start("replica-app", false, None, &["app.db"]).await;
    let text = format!(
        r#"
node = "replica"
[proxy]
listen = "127.0.0.1:0"
app = "{}"
[admin]
listen = ""
[cluster]
source = "static"
primary = "{primary}"
[writes]
primary_url = "http://{{primary}}"
primary_wait = "2s"
# The fake primary speaks HTTP/1.1 only and counts connections as requests: no HTTP/2, and no
# connections opened ahead of the write.
http2 = false
warm_connections = 0
[log]
access = false
"#,
        app.url()
    );
    std::mem::forget(app); // lives for the test process; the replica must never use it anyway
    Node::start(&config::parse(&text).unwrap()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_writes_with_an_idempotency_key_are_delivered_twice() {
    let (primary, requests) = flaky_primary().await;
    let node = replica_of(&primary).await;
    let url = format!("http://{}/w", node.proxy_addr());
    let r = client().post(&url).body("small body").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["rwproxy-error"], "primary-failed");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "a write without a key was sent again"
    );
    node.shutdown().await;

    let (primary, requests) = flaky_primary().await;
    let node = replica_of(&primary).await;
    let url = format!("http://{}/w", node.proxy_addr());
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        client()
            .post(&url)
            .header("idempotency-key", "k-1")
            .body("small body")
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "applied");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    node.shutdown().await;
}
