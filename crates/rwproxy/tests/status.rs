//! The real `rwproxy status` binary against the demo cluster: every node in the table and in
//! `--json`, exit status 0 when all agree and 1 with a `PROBLEM:` line when a node is down,
//! nodes from a file, and `--watch` refreshing (plain frames when stdout is not a terminal).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rwproxy::demo::{Demo, DemoOptions};

/// Runs `rwproxy status ARGS` to completion off the async runtime.
async fn status(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_rwproxy"))
            .arg("status")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A loopback address nobody listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_demo_cluster_and_flags_a_dead_node() {
    let demo = Demo::start(&DemoOptions::default()).await.unwrap();
    let nodes = demo.nodes().to_vec();
    // Two admin listeners and one proxy listener: both kinds of URL work.
    let mut args: Vec<String> = vec![
        "--node".into(),
        nodes[0].admin_url.clone(),
        "--node".into(),
        nodes[1].admin_url.clone(),
        "--node".into(),
        nodes[2].url.clone(),
    ];

    // Health verdicts settle through rise/fall after start: wait for a clean look.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let json = loop {
        let out = status([args.clone(), vec!["--json".into()]].concat()).await;
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
        if out.status.success() {
            break doc;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ok: {}",
            text(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(json["ok"], true);
    assert_eq!(json["problems"], serde_json::json!([]));
    let listed = json["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for (i, (node, demo_node)) in listed.iter().zip(&nodes).enumerate() {
        assert_eq!(node["node"], demo_node.name.as_str(), "{node}");
        assert_eq!(node["role"], if i == 0 { "primary" } else { "replica" });
        assert_eq!(node["primary"], nodes[0].name.as_str());
        assert_eq!(node["status"], "ok");
        assert!(node["positions"]["app.db"].is_u64(), "{node}");
        assert!(node["behind"]["app.db"].is_u64(), "{node}");
    }
    assert_eq!(listed[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(listed[0]["rates"]["requests_per_second"].is_f64());
    // Proxy listener: no /status or /metrics of rwproxy's there.
    assert_eq!(listed[2]["version"], serde_json::Value::Null);
    assert_eq!(listed[2]["rates"], serde_json::Value::Null);

    // The table (not a terminal: no colour escapes), one row per node, then the verdict.
    let out = status(args.clone()).await;
    assert!(out.status.success());
    let table = text(&out.stdout);
    assert!(!table.contains('\x1b'), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NODE"), "{table}");
    for (line, node) in lines[1..4].iter().zip(&nodes) {
        assert!(line.starts_with(&format!("{} ", node.name)), "{table}");
    }
    assert!(lines[4].starts_with("ok:"), "{table}");

    // A dead node from a file: its row stays, a PROBLEM line names it, exit status 1.
    let dead = dead_url();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nodes.txt");
    std::fs::write(&file, format!("# extra\n{dead}\n")).unwrap();
    args.extend(["--nodes-file".into(), file.display().to_string()]);
    let out = status(args.clone()).await;
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    assert!(
        table.contains(&format!("PROBLEM: {dead} is unreachable: cannot connect")),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with(&format!("{dead} "))),
        "{table}"
    );

    // --watch refreshes until interrupted: read two reports, then stop it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["status", "--watch", "100ms", "--node", &nodes[0].admin_url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if send.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let headers = tokio::task::spawn_blocking(move || {
        let mut headers = 0;
        while headers < 2 {
            match receive.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.starts_with("NODE") => headers += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        headers
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(headers, 2, "--watch did not refresh");

    demo.shutdown().await;
}

#[tokio::test]
async fn no_nodes_is_a_usage_error() {
    let out = status(vec![]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("no nodes: give --node URL"),
        "{}",
        text(&out.stderr)
    );
}
