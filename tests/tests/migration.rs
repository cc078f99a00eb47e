//! End to end: what moving from LiteFS's built-in proxy exposed (#29). Slow clients are bounded
//! (a body sent a byte a second, a body that stops, a client that stops reading its response),
//! `[::]` listens on IPv4 too, `log.level = "debug"` means rwproxy's own decisions, and a
//! replica following a name no node answers to is noticed by health and `rwproxy status`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use rwproxy::config;
use rwproxy::node::Node;
use rwproxy::status;
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{eventually, metrics_page, Answer as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Bounds every wait on a network answer in this file.
const DEADLINE: Duration = Duration::from_secs(20);
/// `proxy.body_timeout` in the slow-body test: longer than a byte a second's pauses, so only
/// the rate bound can cut the trickle.
const BODY_TIMEOUT: Duration = Duration::from_millis(1500);

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Sends a POST head announcing 100 bytes, then the body as `trickle` says: `None` sends one
/// byte a second until rwproxy answers; `Some(n)` sends `n` bytes at once, then nothing. Returns
/// the answer (everything up to the close), how long it took, and the bytes sent.
async fn slow_post(
    addr: SocketAddr,
    path: &str,
    trickle: Option<usize>,
) -> (String, Duration, usize) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let mut sent = 0;
    let sender = async {
        match trickle {
            Some(n) => {
                write.write_all(&vec![b'x'; n]).await.unwrap();
                sent = n;
                std::future::pending::<()>().await;
            }
            None => {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while sent < 100 {
                    tick.tick().await;
                    if write.write_all(b"x").await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                std::future::pending::<()>().await;
            }
        }
    };
    let mut answer = Vec::new();
    let reader = read.read_to_end(&mut answer);
    tokio::select! {
        () = sender => unreachable!(),
        result = tokio::time::timeout(DEADLINE, reader) => {
            // The connection is closed after the answer: read_to_end returns.
            result.expect("rwproxy neither answered nor closed").ok();
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
        sent,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_are_cut_off_with_408() {
    let c = Cluster::start(2, |config| {
        config.proxy.body_timeout = BODY_TIMEOUT;
        config.proxy.body_min_rate = 500;
    })
    .await;
    let (primary, replica) = (addr_of(&c.nodes[0].url()), addr_of(&c.nodes[1].url()));
    // A byte a second to the primary (streamed to its app) and to a replica (a small write kept
    // for a replay, forwarded to the primary), and 10 bytes then silence.
    let ((on_primary, t1, sent1), (on_replica, t2, sent2), (stopped, t3, _)) = tokio::join!(
        slow_post(primary, "/trickle", None),
        slow_post(replica, "/trickle", None),
        slow_post(primary, "/stops", Some(10)),
    );
    for (answer, took, sent) in [(&on_primary, t1, sent1), (&on_replica, t2, sent2)] {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("rwproxy-error: body-timeout"), "{answer}");
        // The rate bound (a byte a second is far below 500 B/s) cut it just after the grace.
        assert!(took >= BODY_TIMEOUT, "{took:?}");
        assert!(sent < 100, "the whole body went through: {sent} bytes");
    }
    assert!(stopped.starts_with("HTTP/1.1 408"), "{stopped}");
    assert!(t3 >= BODY_TIMEOUT, "{t3:?}");

    // Counted, and the primary's app saw its two requests aborted, never complete.
    for (i, expected) in [(0, 2.0), (1, 1.0)] {
        let page = metrics_page(&c.nodes[i].admin_url()).await.unwrap();
        assert_eq!(
            sample(&page, r#"rwproxy_errors_total{reason="body-timeout"}"#),
            Some(expected),
            "node {i}"
        );
    }
    eventually(
        DEADLINE,
        "the primary's app to see two aborted bodies",
        || async { (c.nodes[0].app.incomplete_bodies() == 2).then_some(()) },
    )
    .await;
    assert!(c.nodes[0].app.write_ids().is_empty());
    assert_eq!(
        c.nodes[1].app.writes_seen(),
        0,
        "a replica's app never sees a write"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_counted() {
    let c = Cluster::start(1, |config| {
        config.proxy.write_timeout = Duration::from_millis(500);
    })
    .await;
    let socket = TcpSocket::new_v4().unwrap();
    // A small receive window so that the kernel's buffers fill quickly.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr_of(&c.nodes[0].url())).await.unwrap();
    // 32 MiB: far more than the socket buffers on both sides hold.
    stream
        .write_all(b"GET /bytes/33554432 HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let admin = c.nodes[0].admin_url();
    eventually(
        DEADLINE,
        "the write timeout to close the connection",
        || async {
            let page = metrics_page(&admin).await?;
            (sample(&page, "rwproxy_client_write_timeouts_total") == Some(1.0)).then_some(())
        },
    )
    .await;
    // What was buffered drains, then the connection ends: closed (EOF) or reset.
    let mut buf = vec![0; 1 << 20];
    let mut received = 0usize;
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection stayed open");
    assert!(
        received < 32 << 20,
        "the whole response arrived: {received} bytes"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unspecified_ipv6_listener_serves_ipv4_and_ipv6_clients() {
    let text = r#"
node = "solo"
[proxy]
listen = "[::]:0"
app = "http://127.0.0.1:9"
[admin]
listen = ""
[cluster]
source = "static"
primary = "solo"
"#;
    let config = config::parse(text).unwrap();
    let node = match Node::start(&config).await {
        Ok(node) => node,
        Err(error) => {
            // A host without IPv6 at all cannot bind `[::]`.
            if std::env::var("RWPROXY_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                panic!("cannot listen on [::]: {error}");
            }
            eprintln!("SKIPPED: no IPv6 on this host ({error})");
            return;
        }
    };
    let port = node.proxy_addr().port();
    let client = rwproxy_tests::client();
    for host in ["127.0.0.1", "[::1]"] {
        // Any answer of this node's health (it may still be settling) proves the listener.
        let doc: serde_json::Value = client
            .get(format!("http://{host}:{port}/health"))
            .answer()
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(doc["node"], "solo", "{host}");
    }
    node.shutdown().await;
}

/// A node's health document, whatever its status.
async fn health_doc(url: &str) -> Option<serde_json::Value> {
    rwproxy_tests::client()
        .get(url)
        .answer()
        .await
        .json()
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_following_a_name_no_node_answers_to_is_noticed() {
    let c = Cluster::start(2, |_| {}).await;
    // LiteFS's lease.hostname differs from the primary rwproxy's `node`: the replica's
    // `.primary` says `localhost:PORT`, which reaches the primary, whose node is `127.0.0.1:PORT`.
    let port = addr_of(&c.nodes[0].url()).port();
    let alias = format!("localhost:{port}");
    c.nodes[1].mount.make_replica(&alias, 0);
    c.nodes[1]
        .wait_state("the replica to follow the alias", |s| {
            s.primary.as_deref() == Some(alias.as_str())
        })
        .await;
    let health = format!("{}/health", c.nodes[1].url());
    let doc: serde_json::Value = eventually(
        DEADLINE,
        "a warning in the replica's health, status ok",
        || async {
            let doc = health_doc(&health).await?;
            // The verdict settles to `ok` with the warning: a warning never pulls a node.
            (doc.get("warning").is_some() && doc["status"] == "ok").then_some(doc)
        },
    )
    .await;
    let warning = doc["warning"].as_str().unwrap();
    assert!(warning.contains(&format!("follows `{alias}`")), "{warning}");
    assert!(
        warning.contains(&format!("calls itself `{}`", c.nodes[0].name)),
        "{warning}"
    );
    // Writes through the replica still reach the primary.
    let r = c.nodes[1].post("/w").body("x").answer().await;
    assert_eq!(r.status(), 200);

    let urls: Vec<String> = c.nodes.iter().map(|n| n.admin_url()).collect();
    let client = status::client(Duration::from_secs(2)).unwrap();
    let report = status::gather(&client, &urls, Duration::from_secs(2), &mut HashMap::new()).await;
    assert!(!report.ok(), "status says ok: {:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("follows `{alias}`"))),
        "{:?}",
        report.problems
    );

    // Set right again (the primary's real name): the warning goes away.
    let name = c.nodes[0].name.clone();
    c.nodes[1].mount.make_replica(&name, 0);
    eventually(DEADLINE, "the warning to clear", || async {
        health_doc(&health)
            .await?
            .get("warning")
            .is_none()
            .then_some(())
    })
    .await;
    c.stop().await;
}

/// Set in the child processes of [`debug_logging_is_rwproxys_own_decisions`].
const LOG_CHILD: &str = "RWPROXY_TEST_DEBUG_LOG_CHILD";

/// Runs this test binary again as a child that installs rwproxy's real logging at `debug` (a
/// global subscriber on stderr) and sends traffic through two nodes: rwproxy's routing and
/// token decisions are there, no other crate's debug line is. The same child under
/// `RUST_LOG=debug` (the whole filter replaced) shows that other crates do log at debug.
#[test]
fn debug_logging_is_rwproxys_own_decisions() {
    if let Some(level) = std::env::var_os(LOG_CHILD) {
        log_child(&level.to_string_lossy());
        return;
    }
    let run = |level: &str, rust_log: Option<&str>| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "debug_logging_is_rwproxys_own_decisions",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(LOG_CHILD, level)
            .env_remove("RUST_LOG");
        if let Some(rust_log) = rust_log {
            command.env("RUST_LOG", rust_log);
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "child failed:\n{stderr}");
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        lines
    };
    let is_debug = |l: &serde_json::Value| l["level"] == "DEBUG" || l["level"] == "TRACE";
    let own = |l: &serde_json::Value| l["target"].as_str().unwrap_or("").starts_with("rwproxy");

    let lines = run("debug", None);
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for expected in ["route decided", "position token compared"] {
        assert!(
            messages.contains(&expected),
            "no {expected:?} line: {messages:?}"
        );
    }
    let foreign: Vec<&serde_json::Value> =
        lines.iter().filter(|l| is_debug(l) && !own(l)).collect();
    assert!(foreign.is_empty(), "other crates' debug lines: {foreign:?}");

    // The control: with the whole filter at debug, other crates speak.
    let lines = run("debug", Some("debug"));
    assert!(
        lines.iter().any(|l| is_debug(l) && !own(l)),
        "no other crate logs at debug here: the check above proves nothing"
    );
}

fn log_child(level: &str) {
    rwproxy::logging::init(rwproxy::config::LogFormat::Json, level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let c = Cluster::start(2, |_| {}).await;
        let r = c.nodes[1].post("/logged").body("x").answer().await;
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        c.replicate_from(0);
        let r = c.nodes[1]
            .get("/logged")
            .header("cookie", cookie)
            .answer()
            .await;
        assert_eq!(r.status(), 200);
        c.stop().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn title_case_headers_write_response_names_as_litefs_proxy_did() {
    let request = b"GET /title HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let wait = Duration::from_secs(5);
    let lower = Cluster::start(1, |_| {}).await;
    let titled = Cluster::start(1, |config| config.proxy.title_case_headers = true).await;
    let answer = |c: &Cluster| {
        let addr = c.nodes[0].url().trim_start_matches("http://").to_owned();
        async move { rwproxy_tests::raw_exchange(&addr, request, wait).await }
    };
    let (lower_answer, titled_answer) = tokio::join!(answer(&lower), answer(&titled));
    assert!(lower_answer.starts_with("HTTP/1.1 200"), "{lower_answer}");
    assert!(
        lower_answer.contains("\r\ncontent-length: "),
        "{lower_answer}"
    );
    assert!(
        lower_answer.contains("\r\nrwproxy-route: "),
        "{lower_answer}"
    );
    assert!(titled_answer.starts_with("HTTP/1.1 200"), "{titled_answer}");
    assert!(
        titled_answer.contains("\r\nContent-Length: "),
        "{titled_answer}"
    );
    assert!(
        titled_answer.contains("\r\nRwproxy-Route: "),
        "{titled_answer}"
    );
    assert!(
        !titled_answer.contains("\r\ncontent-length: "),
        "{titled_answer}"
    );
    lower.stop().await;
    titled.stop().await;
}
