//! `rwproxy check --connect`: the source is read once and its problem named at the command line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::{Command, Output, Stdio};

fn check_connect(name: &str, cluster: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("rwproxy-check-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"n1\"\n[proxy]\nlisten = \"127.0.0.1:0\"\napp = \"http://127.0.0.1:9\"\n\
             [admin]\nlisten = \"\"\n[cluster]\n{cluster}"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["check", "--connect", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    output
}

#[test]
fn a_working_source_is_described_and_a_failing_one_named() {
    let ok = check_connect("static", "source = \"static\"\nprimary = \"n1\"\n");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout.contains("this node is the primary"), "{stdout}");

    // Nothing listens there: the postgres source says so, and the check fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bad = check_connect(
        "postgres",
        &format!(
            "source = \"postgres\"\nurl = \"postgres://rwproxy@127.0.0.1:{port}/postgres\"\n\
             databases = [\"wal\"]\n"
        ),
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cluster source: postgres 127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("error connecting to server"), "{stderr}");
    assert!(!String::from_utf8_lossy(&bad.stdout).contains("ok"));
}
