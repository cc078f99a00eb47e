//! End to end: reads stay local, writes reach the primary's app intact, and a replica's app
//! never sees a write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{
    client, eventually, h2c_client, header_values, metrics_line, sha256_hex, Answer as _,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_on_the_local_app() {
    let c = Cluster::start(2, |_| {}).await;
    let r = c.nodes[1].get("/items?x=1").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "local");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["app"], "app1");
    assert_eq!(
        c.nodes[0].app.seen().len(),
        0,
        "the primary's app saw a replica's read"
    );
    let seen = &c.nodes[1].app.seen()[0];
    assert_eq!(seen.uri, "/items?x=1");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], c.nodes[1].name.as_str());
    assert_eq!(seen.headers["via"], format!("1.1 {}", c.nodes[1].name));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_method_is_forwarded_intact() {
    let c = Cluster::start(3, |_| {}).await;
    // 1.5 MiB of non-repeating bytes: checksums prove the body arrived whole and in order.
    let body: Vec<u8> = (0..(3 << 19))
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sum = sha256_hex(&body);
    let methods = ["POST", "PUT", "PATCH", "DELETE", "PURGE"];
    for (i, method) in methods.iter().enumerate() {
        let r = c.nodes[1 + i % 2]
            .request(
                method.parse().unwrap(),
                &format!("/things/{i}?q=a%20b&n={i}"),
            )
            .header("x-custom", format!("v{i}"))
            .header("connection", "x-hop")
            .header("x-hop", "drop me")
            .body(body.clone())
            .answer()
            .await;
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(
            r.headers()["rwproxy-route"],
            "primary; reason=write",
            "{method}"
        );
        let doc: serde_json::Value = r.json().await.unwrap();
        assert_eq!(doc["app"], "app0");
        assert_eq!(doc["method"], *method);
        assert_eq!(doc["uri"], format!("/things/{i}?q=a%20b&n={i}"));
        assert_eq!(doc["body_sha256"], sum, "{method} body changed on the way");
    }
    let seen = c.nodes[0].app.seen();
    assert_eq!(seen.len(), methods.len());
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.headers["x-custom"], format!("v{i}"));
        assert!(
            !s.headers.contains_key("x-hop"),
            "hop-by-hop header forwarded"
        );
        assert!(
            !s.headers.contains_key("rwproxy-forwarded-by"),
            "internal header leaked to the app"
        );
        let replica = &c.nodes[1 + i % 2].name;
        assert_eq!(
            s.headers["host"],
            replica.as_str(),
            "Host must be the client's"
        );
        assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1, 127.0.0.1");
        let via = header_values(&s.headers, "via");
        // The replica received HTTP/1.1; the primary received the hop over HTTP/2 when the
        // body was kept in memory (`writes.http2`), over HTTP/1.1 when it was streamed, and
        // Via names the protocol each hop received.
        let via = via.join(", ");
        assert!(
            [
                format!("1.1 {replica}, 2 {}", c.nodes[0].name),
                format!("1.1 {replica}, 1.1 {}", c.nodes[0].name)
            ]
            .contains(&via),
            "{via}"
        );
    }
    assert_eq!(c.writes_seen()[1..], [0, 0], "a replica's app saw a write");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_responses_arrive_incrementally() {
    let c = Cluster::start(2, |config| {
        config.routing.always_forward = vec!["/sse".into()];
    })
    .await;
    // `/sse` is always forwarded: the primary serves it from its own app, a replica streams it
    // from the primary's.
    for (node, route) in [(&c.nodes[0], "local"), (&c.nodes[1], "primary")] {
        let r = node.get("/sse").answer().await;
        assert_eq!(r.status(), 200);
        let served_by = r.headers()["rwproxy-route"].to_str().unwrap().to_owned();
        assert!(served_by.starts_with(route), "{route}: {served_by}");
        let mut stream = r.bytes_stream();
        let mut arrivals = Vec::new();
        let started = Instant::now();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            arrivals.push((
                started.elapsed(),
                String::from_utf8_lossy(&chunk).into_owned(),
            ));
        }
        let text: String = arrivals.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(text, "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n");
        let first = arrivals.first().unwrap().0;
        let last = arrivals.last().unwrap().0;
        // The app spaces events 300 ms apart; a buffering proxy delivers them together.
        assert!(
            last - first >= Duration::from_millis(400),
            "{route}: events were buffered: {arrivals:?}"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_and_always_forward() {
    let c = Cluster::start(2, |config| {
        config.routing.passthrough = vec!["/local/*".into()];
        config.routing.always_forward = vec!["/admin/*".into()];
    })
    .await;
    let replica = &c.nodes[1];
    let r = replica.post("/local/upload").body("x").answer().await;
    // Passthrough goes to the local app whatever the method; this replica's app refuses writes.
    assert_eq!(r.status(), 500);
    assert_eq!(c.nodes[1].app.writes_seen(), 1);
    let r = replica.get("/admin/users").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "primary; reason=write");
    assert_eq!(c.nodes[0].app.seen().len(), 1);
    assert_eq!(c.nodes[0].app.seen()[0].uri, "/admin/users");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_primary_writes_get_503_and_reach_no_app() {
    let c = Cluster::start(2, |config| {
        config.writes.primary_wait = Duration::from_millis(300);
    })
    .await;
    c.nodes[1].lose_primary(1500).await;
    let started = Instant::now();
    let r = c.nodes[1].post("/w").body("payload").answer().await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "did not wait for a primary"
    );
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["rwproxy-error"], "no-primary");
    assert!(r.headers().contains_key("retry-after"));
    let text = r.text().await.unwrap();
    assert_eq!(text.lines().count(), 1, "one-line body: {text:?}");
    assert_eq!(c.writes_seen(), [0, 0], "writes seen by each app");
    // Reads keep being served locally while the lag allows it.
    let r = c.nodes[1].get("/r").answer().await;
    assert_eq!(r.status(), 200);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_a_primary_goes_through_when_one_appears() {
    let c = Cluster::start(2, |_| {}).await;
    c.nodes[1].lose_primary(1500).await;
    let pending = tokio::spawn(c.nodes[1].post("/w").body("late").answer());
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.nodes[1].mount.make_replica(&c.nodes[0].name, 0);
    let r = pending.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.nodes[0].app.writes_seen(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_is_never_forwarded_twice() {
    let c = Cluster::start(3, |_| {}).await;
    // Node 1 believes node 2 is primary, but node 2 believes node 0 is (a cascading replica).
    // Node 2 forwards nothing: it refuses with `loop`, naming its own primary, and node 1, the
    // sender, follows that chain to node 0.
    c.follow(1, 2).await;
    let r = c.nodes[1].post("/w").body("once").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.writes_seen(),
        [1, 0, 0],
        "only the primary's app saw the write"
    );
    let refused = c.nodes[2]
        .post("/w")
        .header("rwproxy-forwarded-by", "someone")
        .body("direct")
        .answer()
        .await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["rwproxy-error"], "loop");
    assert_eq!(
        refused.headers()["rwproxy-primary"],
        c.nodes[0].name.as_str()
    );
    // A chain that leads back to the sender is cut: 503 loop, no app sees the write.
    c.follow(2, 1).await;
    let r = c.nodes[1].post("/w").body("never").answer().await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["rwproxy-error"], "loop");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(c.writes_seen(), [1, 0, 0], "an app saw a looping write");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_primary_in_the_mount_files_is_used_without_restart() {
    let c = Cluster::start(3, |_| {}).await;
    let r = c.nodes[2].post("/a").body("1").answer().await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["app"], "app0");
    c.move_primary(1).await;
    let r = c.nodes[2].post("/b").body("2").answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["app"], "app1");
    // The old primary is a replica now: its own writes go to node 1 too.
    let r = c.nodes[0].post("/c").body("3").answer().await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["app"], "app1");
    assert_eq!(c.writes_seen(), [1, 2, 0], "writes seen by each app");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_clients_are_served() {
    let c = Cluster::start(2, |_| {}).await;
    let h2 = h2c_client();
    let r = h2.get(format!("{}/r", c.nodes[1].url())).answer().await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let r = h2
        .put(format!("{}/w", c.nodes[1].url()))
        .body(vec![7u8; 100_000])
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["app"], "app0");
    assert_eq!(doc["body_len"], 100_000);
    let seen = &c.nodes[0].app.seen()[0];
    assert_eq!(
        seen.headers["host"],
        c.nodes[1].name.as_str(),
        ":authority became Host"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_app_is_waited_for_and_a_dead_one_gets_502() {
    // Reserve a port for an app that is not listening yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = reserved.local_addr().unwrap();
    drop(reserved);
    let c = Cluster::start(1, |config| {
        config.proxy.app = format!("http://{app_addr}").parse().unwrap();
        config.proxy.app_connect_retry = Duration::from_secs(3);
    })
    .await;
    let pending = tokio::spawn(c.nodes[0].get("/r").answer());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late_app = late_app(app_addr).await;
    let r = pending.await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the request should wait for the app to start"
    );
    late_app.abort();
    let _ = late_app.await;

    let started = Instant::now();
    let r = c.nodes[0].get("/r").answer().await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["rwproxy-error"], "app-unreachable");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up before the retry window"
    );
    c.stop().await;
}

/// A minimal app on a fixed address, started late.
async fn late_app(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from("late")),
                    ))
                });
                // No keep-alive: once the listener is gone, the app is really gone.
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    let mut c = Cluster::start(1, |_| {}).await;
    let r = c.nodes[0].get("/sse").answer().await;
    let body = tokio::spawn(async move { r.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = c.nodes[0].url();
    c.nodes[0].stop().await;
    assert_eq!(
        body.await.unwrap(),
        "data: event 0\n\ndata: event 1\n\ndata: event 2\n\n"
    );
    assert!(
        client().get(format!("{url}/r")).send().await.is_err(),
        "still accepting after shutdown"
    );
}

/// Idle keep-alive connections, HTTP/1.1 and h2c alike, and connections that have not sent a
/// byte yet are closed as soon as shutdown starts: shutdown waits for requests in flight, not
/// for the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut c = Cluster::start(1, |config| {
        config.proxy.drain_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = c.nodes[0].name.clone();
    let mut h1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    h1.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = h1.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let h2 = h2c_client();
    let r = h2.get(format!("{}/r", c.nodes[0].url())).answer().await;
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    // Connected, but has not sent a byte yet.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();

    let started = Instant::now();
    c.nodes[0].stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited for idle connections: {:?}",
        started.elapsed()
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), h1.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was left open: {closed:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the silent connection was left open: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delay_reports_draining_while_still_serving() {
    let mut c = Cluster::start(1, |config| {
        config.proxy.drain_delay = Duration::from_millis(800)
    })
    .await;
    let url = c.nodes[0].url();
    let node = c.nodes[0].node.take().unwrap();
    let stopping = tokio::spawn(node.shutdown());
    let health = eventually(Duration::from_secs(2), "health to turn draining", || {
        let url = url.clone();
        async move {
            let r = client().get(format!("{url}/health")).send().await.ok()?;
            (r.status() == 503).then_some(r)
        }
    })
    .await;
    let doc: serde_json::Value = health.json().await.unwrap();
    assert_eq!(doc["status"], "draining");
    let r = client().get(format!("{url}/still-serving")).answer().await;
    assert_eq!(
        r.status(),
        200,
        "requests are served during the drain delay"
    );
    stopping.await.unwrap();
    assert!(
        client().get(format!("{url}/r")).send().await.is_err(),
        "still accepting after shutdown"
    );
}

/// LiteFS polls so rare that only a check made while serving a request can see a hand-off.
fn rare_polls(config: &mut rwproxy::config::Config) {
    config.cluster.source = match &config.cluster.source {
        rwproxy::config::SourceConfig::Litefs { mount, api, .. } => {
            rwproxy::config::SourceConfig::Litefs {
                mount: mount.clone(),
                api: api.clone(),
                poll: Duration::from_secs(30),
            }
        }
        other => other.clone(),
    };
    config.writes.primary_wait = Duration::from_millis(300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_between_polls_never_passes_a_write_to_its_app() {
    let c = Cluster::start(2, rare_polls).await;
    // LiteFS hands the lease to node 1; node 0's rwproxy has not polled since.
    c.nodes[0].app.set_accepts_writes(false);
    c.nodes[0].mount.make_replica(&c.nodes[1].name, 0);
    let r = c.nodes[0].post("/w").body("x").answer().await;
    assert_eq!(
        r.status(),
        503,
        "the demoted node's app must not see the write"
    );
    // Node 0 polled again at once and sent the write to node 1, whose rwproxy has not polled
    // since the hand-off either: it still takes node 0 for the primary and refuses the
    // forwarded write rather than bounce it back.
    assert_eq!(r.headers()["rwproxy-error"], "loop");
    assert_eq!(c.nodes[0].app.writes_seen(), 0);
    assert_eq!(c.nodes[1].app.writes_seen(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_promoted_between_polls_takes_the_write_forwarded_to_it() {
    let c = Cluster::start(2, rare_polls).await;
    // LiteFS hands the lease to node 1, and both nodes' files say so; neither rwproxy has
    // polled since.
    c.nodes[0].app.set_accepts_writes(false);
    c.nodes[0].mount.make_replica(&c.nodes[1].name, 0);
    c.nodes[1].mount.make_primary();
    c.nodes[1].app.set_accepts_writes(true);
    let r = c.nodes[0].post("/w").body("x").answer().await;
    // Node 0 sees its demotion and forwards; node 1 still takes node 0 for the primary, but
    // its files say node 1 is: it polls at once and serves the write as the primary.
    assert_eq!(r.status(), 200, "{:?}", r.headers());
    assert_eq!(r.headers()["rwproxy-route"], "primary; reason=write");
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("__txid="),
        "the new primary issued a token"
    );
    assert_eq!(c.nodes[0].app.writes_seen(), 0);
    assert_eq!(c.nodes[1].app.writes_seen(), 1);
    // A forwarded request to a node whose files do not make it primary is still refused.
    c.nodes[1].mount.make_replica(&c.nodes[0].name, 0);
    let r = c.nodes[1]
        .post("/w")
        .header("rwproxy-forwarded-by", "node-0")
        .body("x")
        .answer()
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["rwproxy-error"], "loop");
    assert_eq!(c.nodes[1].app.writes_seen(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_demoted_between_polls_serves_no_read_older_than_the_clients_write() {
    let c = Cluster::start(2, rare_polls).await;
    // LiteFS hands the lease to node 1 and the client writes there (position 9); node 0 has
    // not replicated that write, and its rwproxy has not polled since it held the lease.
    c.nodes[0].mount.make_replica(&c.nodes[1].name, 0);
    c.nodes[1].mount.make_primary();
    c.nodes[1].mount.set_pos("app.db", 9);
    let token = "app.db=0000000000000009";
    // Node 0 replicates the write a moment later.
    let mount = c.nodes[0].mount.clone();
    let catch_up = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        mount.set_pos("app.db", 9);
    });
    let r = c.nodes[0]
        .get("/r")
        .header("rwproxy-position", token)
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["rwproxy-route"],
        "local; reason=waited",
        "served only once node 0 had the client's write, not from the demoted primary at once"
    );
    catch_up.await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_app_connection_cap_requests_queue_then_get_overloaded() {
    // One connection to the app; a stream from /sse holds it for about 600 ms.
    let one_connection = |queue_timeout: Duration| {
        Cluster::start(1, move |config| {
            config.proxy.app_max_connections = 1;
            config.proxy.app_queue_timeout = queue_timeout;
        })
    };
    let c = one_connection(Duration::from_millis(200)).await;
    let node = &c.nodes[0];
    let sse = node.get("/sse").answer().await;
    assert_eq!(sse.status(), 200);
    let r = node.get("/r").answer().await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["rwproxy-error"], "overloaded");
    assert!(r.headers().contains_key("retry-after"));
    // The stream holding the connection is unaffected, and the refused read never reached the
    // app.
    let events = sse.text().await.unwrap();
    assert_eq!(events.matches("data: event").count(), 3);
    assert_eq!(node.app.seen().len(), 1, "only /sse reached the app");
    let r = node.get("/r").answer().await;
    assert_eq!(r.status(), 200, "the connection came back for the next one");
    c.stop().await;

    // With room to wait, the queued read is served once the stream ends, on the same
    // connection.
    let c = one_connection(Duration::from_secs(10)).await;
    let node = &c.nodes[0];
    let sse = node.get("/sse").answer().await;
    let read = tokio::spawn(node.get("/r").answer());
    let admin = node.admin_url();
    eventually(Duration::from_secs(5), "one read queued", || {
        metrics_line(&admin, |l| l == "rwproxy_app_queued_requests 1")
    })
    .await;
    let events = sse.text().await.unwrap();
    let r = read.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(events.matches("data: event").count(), 3);
    assert_eq!(node.app.seen().len(), 2);
    // Back in the pool, and still the only one.
    eventually(Duration::from_secs(5), "one idle app connection", || {
        metrics_line(&admin, |l| {
            l == r#"rwproxy_upstream_idle_connections{upstream="app"} 1"#
        })
    })
    .await;
    c.stop().await;
}

/// An HTTP/1.0 app (one answer per connection, `HTTP/1.0` status line, Python's `http.server`
/// style): the client is still answered in its own protocol, HTTP/1.1 with keep-alive (RFC 9110
/// §2.5: the version is hop-by-hop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_app_does_not_downgrade_the_client() {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = listener.local_addr().unwrap();
    let app = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut stream = tokio::io::BufReader::new(stream);
                let mut line = String::new();
                // The request head ends with an empty line.
                while stream.read_line(&mut line).await.unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = stream
                    .get_mut()
                    .write_all(b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\n\r\nhello")
                    .await;
            });
        }
    });
    let c = Cluster::start(1, |config| {
        config.proxy.app = format!("http://{app_addr}").parse().unwrap();
    })
    .await;
    let addr = c.nodes[0].url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(b"GET /page HTTP/1.1\r\nHost: example.test\r\n\r\n")
            .await
            .unwrap();
        // One answer: the head, then a chunked body that ends with the last chunk.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while !answer.ends_with(b"0\r\n\r\n") {
                let mut buf = [0u8; 1024];
                let n = stream.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the connection closed: {:?}",
                    String::from_utf8_lossy(&answer)
                );
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("an answer within 10 s");
        seen.push(String::from_utf8_lossy(&answer).into_owned());
    }
    for answer in &seen {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("hello"), "{answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    app.abort();
}
