//! The binary's log output: no colour codes when stderr is not a terminal (a file, a pipe, a
//! log collector).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = std::env::temp_dir().join(format!("rwproxy-logging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        r#"
node = "n1"
[proxy]
listen = "127.0.0.1:0"
app = "http://127.0.0.1:9"
[admin]
listen = ""
[cluster]
source = "static"
primary = "n1"
"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["run", "-c"])
        .arg(&config)
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let first = first.expect("a log line within 30 s");
    assert!(!first.contains('\u{1b}'), "colour codes in {first:?}");
    assert!(
        first.contains("INFO") || first.contains("WARN"),
        "{first:?}"
    );
}
