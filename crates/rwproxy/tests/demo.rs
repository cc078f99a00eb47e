//! `rwproxy demo`: the in-process cluster behaves as the printed instructions say, and the real
//! binary prints its URLs and stops by itself with `--duration`. Loopback and ephemeral ports
//! only; each test takes a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rwproxy::demo::{Demo, DemoOptions, NODE_HEADER};

fn client() -> reqwest::Client {
    rwproxy_cluster::client_builder()
        .unwrap()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Sends `request`; panics when no HTTP answer comes back.
async fn send(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.unwrap()
}

/// Checks who answered: the status, the `rwproxy-route` header and the demo node that served it
/// (`NODE_HEADER`, a node's name).
#[track_caller]
fn assert_served(response: &reqwest::Response, status: u16, route: &str, node: &str) {
    assert_eq!(response.status(), status);
    assert_eq!(header(response, "rwproxy-route"), route);
    assert_eq!(header(response, NODE_HEADER), node);
}

/// The `__txid=<16 hex>` pair of the response's token cookie.
fn txid_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find_map(|v| v.split(';').next().filter(|c| c.starts_with("__txid=")))
        .unwrap_or_else(|| panic!("no __txid cookie in {:?}", response.headers()))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_forward_reads_wait_for_their_cookie_and_promotion_moves_writes() {
    let delay = Duration::from_millis(1500);
    let demo = Demo::start(&DemoOptions {
        base_port: None,
        replication_delay: delay,
    })
    .await
    .unwrap();
    let http = client();
    let nodes = demo.nodes().to_vec();
    assert_eq!(nodes.len(), 3);
    assert_eq!(demo.primary(), 0);
    let (primary, r1, r2) = (&nodes[0], &nodes[1], &nodes[2]);

    // A write through a replica is served by the primary's app and returns the token.
    let write = send(http.put(format!("{}/notes/a", r1.url)).body("hello")).await;
    assert_served(&write, 201, "primary; reason=write", &primary.name);
    let cookie = txid_cookie(&write);
    assert_eq!(cookie.len(), "__txid=".len() + 16, "{cookie}");

    // Without the token, the other replica answers at once from what it has: not there yet.
    let stale = send(http.get(format!("{}/notes/a", r2.url))).await;
    assert_served(&stale, 404, "local", &r2.name);

    // With it, the read waits for replication and is then served by that replica.
    let started = Instant::now();
    let read = send(
        http.get(format!("{}/notes/a", r2.url))
            .header("cookie", &cookie),
    )
    .await;
    assert_served(&read, 200, "local; reason=waited", &r2.name);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(read.text().await.unwrap(), "hello");

    // What rwproxy prevents: the replica's app itself refuses writes.
    let direct = send(http.put(format!("{}/notes/x", r2.app_url)).body("no")).await;
    assert_eq!(direct.status(), 500);
    assert_eq!(
        direct.text().await.unwrap(),
        "attempt to write a readonly database\n"
    );

    // Health on the admin listener.
    let health = send(http.get(format!("{}/health", r2.admin_url))).await;
    assert_eq!(health.status(), 200);
    let doc: serde_json::Value = health.json().await.unwrap();
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["role"], "replica");
    assert_eq!(doc["primary"], primary.name.as_str());
    // One name per node: the same in /health as in the demo-node header and the table.
    assert_eq!(doc["node"], r2.name.as_str());

    // Promotion through a passthrough path: the POST reaches node3's own app.
    let promote = send(http.post(format!("{}/demo/promote", r2.url))).await;
    assert_served(&promote, 200, "local", &r2.name);
    assert_eq!(demo.primary(), 2);

    // The old primary now forwards writes to the new one, which already has the first note.
    let write = send(http.put(format!("{}/notes/b", primary.url)).body("world")).await;
    assert_served(&write, 201, "primary; reason=write", &r2.name);
    let notes: serde_json::Value = send(http.get(format!("{}/notes", r2.url)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notes, serde_json::json!({"a": "hello", "b": "world"}));
    let status: serde_json::Value = send(http.get(format!("{}/demo/status", primary.url)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["role"], "replica");
    assert_eq!(status["primary"], r2.name.as_str());

    // `rwproxy health` (the container HEALTHCHECK) agrees with the admin listener.
    let health = |url: String| {
        Command::new(env!("CARGO_BIN_EXE_rwproxy"))
            .args(["health", "--url", &url, "--timeout", "5s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let url = format!("{}/health", r1.admin_url);
    assert!(tokio::task::spawn_blocking(move || health(url))
        .await
        .unwrap()
        .success());

    let dir = demo.dir().to_owned();
    demo.shutdown().await;
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn the_binary_prints_the_urls_and_stops_after_duration() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["demo", "--duration", "3s", "--replication-delay", "500ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rwproxy demo --duration 3s did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // One row per node, named by its rwproxy address (the name /health and Via use too).
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("127.0.0.1:"))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    for (row, role) in rows.iter().zip(["primary", "replica", "replica"]) {
        let name = row.split_whitespace().next().unwrap();
        assert_eq!(row.split_whitespace().nth(1), Some(role), "{row}");
        assert!(row.contains(&format!("http://{name} ")), "{row}");
        assert_eq!(row.matches("http://127.0.0.1:").count(), 3, "{row}");
    }
    assert!(stdout.contains("Replication delay: 500ms"), "{stdout}");
    assert!(stdout.contains("curl -i -X POST"), "{stdout}");
    assert!(
        stdout.contains(" status --node http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("--duration elapsed"), "{stdout}");
    let removed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("stopped; removed "))
        .unwrap_or_else(|| panic!("no final line in:\n{stdout}"));
    assert!(
        !std::path::Path::new(removed).exists(),
        "{removed} left behind"
    );
}

#[test]
fn health_fails_without_a_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let status = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["health", "--url", &format!("http://{addr}/health")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}
