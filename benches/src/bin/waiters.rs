//! Benchmark: many reads waiting for a position at once.
//!
//! Part 1 (mechanism, 10,000 waiters): tasks wait on the node's shared state channel through the
//! same `wait_for_token` the proxy uses; measures CPU while they wait and how fast all are
//! released once the position arrives.
//! Part 2 (end to end, default 1,000 waiters): real HTTP clients with a `__txid` cookie ahead of
//! a real rwproxy node (LiteFS source on a mount directory); the position file is then advanced
//! and the time until every response has arrived is measured. (Client, proxy and app share one
//! process and its 20,000 file descriptors. Without a cap on connections to the app, past ~1,000
//! the released herd overflows the test app's accept backlog — see docs/benchmarks.md.)
//!
//! Run: `cargo run --release -p rwproxy-benches --bin waiters [-- HTTP_WAITERS [APP_MAX_CONNECTIONS]]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderName;
use rwproxy_benches::{process_cpu, quantile};
use rwproxy_core::{Demand, NodeState, Positions, Role, Token};
use rwproxy_http::consistency::{wait_for_token, ConsistencyParams};
use rwproxy_tests::app::App;
use rwproxy_tests::mount::Mount;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const IDLE: Duration = Duration::from_secs(2);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let http_waiters: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    // `proxy.app_max_connections`, to compare caps (default: rwproxy's own default).
    let app_max_connections: Option<usize> = std::env::args().nth(2).and_then(|a| a.parse().ok());
    mechanism(10_000).await;
    end_to_end(http_waiters, app_max_connections).await;
}

async fn mechanism(n: usize) {
    let mut state = NodeState {
        role: Role::Replica,
        primary: Some("p".into()),
        positions: Positions::new(),
        lag: Some(Duration::ZERO),
        ready: true,
        problem: None,
        ..NodeState::default()
    };
    state.positions.insert("app.db".into(), 1);
    let (tx, rx) = watch::channel(state.clone());
    let demand = Demand::default();
    let params = Arc::new(ConsistencyParams {
        cookie: "__txid".into(),
        header: HeaderName::from_static("rwproxy-position"),
        wait: Duration::from_secs(60),
        cookie_max_age: Duration::from_secs(300),
        max_waiters: n,
        databases: vec!["app.db".into()],
        session: rwproxy_http::SessionMode::Writes,
    });
    let token = Token::from_pairs([("app.db", 2)]);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (mut rx, demand, params, token) =
            (rx.clone(), demand.clone(), params.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            wait_for_token(&token, &mut rx, &demand, &params).await;
            Instant::now()
        }));
    }
    while demand.active() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu = process_cpu();
    tokio::time::sleep(IDLE).await;
    let idle_cpu = process_cpu() - cpu;
    state.positions.insert("app.db".into(), 2);
    let released_at = Instant::now();
    tx.send_replace(state);
    let mut latencies = Vec::with_capacity(n);
    for t in tasks {
        latencies.push(t.await.unwrap() - released_at);
    }
    latencies.sort();
    println!(
        "mechanism: {n} waiters; CPU while waiting {:?} over {IDLE:?}; released p50 {:?} p99 {:?} max {:?}",
        idle_cpu,
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
}

async fn end_to_end(n: usize, app_max_connections: Option<usize>) {
    let mount = Arc::new(Mount::new());
    mount.make_replica("primary.invalid:1", 0);
    mount.set_pos("app.db", 1);
    let app = App::start("app", false, None, &["app.db"]).await;
    let text = format!(
        r#"
node = "bench"
[proxy]
listen = "127.0.0.1:0"
app = "{app}"
{cap}
[admin]
listen = ""
[cluster]
source = "litefs"
mount = "{mount}"
poll = "100ms"
[consistency]
wait = "60s"
max_waiters = 20000
[log]
access = false
level = "warn"
"#,
        app = app.url(),
        mount = mount.path().display(),
        cap = app_max_connections.map_or(String::new(), |n| format!("app_max_connections = {n}")),
    );
    let config = rwproxy::config::parse(&text).expect("config");
    let node = rwproxy::Node::start(&config).await.expect("node");
    let addr = node.proxy_addr();
    let state = node.state();
    while state.borrow().problem.is_some() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let request = b"GET /r HTTP/1.1\r\nHost: bench\r\nCookie: __txid=0000000000000002\r\n\r\n";
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.write_all(request).await.expect("write");
            let mut buf = [0u8; 512];
            let read = stream.read(&mut buf).await.expect("read");
            (Instant::now(), buf[..read].starts_with(b"HTTP/1.1 200"))
        }));
    }
    // Wait until every request has reached the waiting room.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = app.seen().is_empty() && tasks.iter().all(|t| !t.is_finished());
        assert!(waiting, "a read was released early");
        if metrics_waiting(&node).await >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = process_cpu();
    tokio::time::sleep(IDLE).await;
    let idle_cpu = process_cpu() - cpu;
    let released_at = Instant::now();
    mount.set_pos("app.db", 2);
    let mut latencies = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        let (at, ok) = t.await.unwrap();
        latencies.push(at - released_at);
        failed += usize::from(!ok);
    }
    latencies.sort();
    println!("end to end: {failed} of {n} responses were not 200");
    println!(
        "end to end: {n} HTTP reads waiting; CPU while waiting {:?} over {IDLE:?}; first response {:?}, p50 {:?}, p99 {:?}, last {:?} after the position file changed",
        idle_cpu,
        latencies.first().copied().unwrap_or_default(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    node.shutdown().await;
}

/// How many reads the node's pipeline has waiting (from the demand the source sees).
async fn metrics_waiting(node: &rwproxy::Node) -> usize {
    node.waiting_reads()
}
