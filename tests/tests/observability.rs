//! End to end: what operators watch. `/metrics` after real traffic (the contract's names, types
//! and labels, label values only from fixed sets, `promtool check metrics`), the alert rules
//! (`promtool check rules` and `promtool test rules`), request ids across two nodes, and JSON
//! access, warning and event (`rwproxy::event`) logs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rwproxy_core::ErrorCode;
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{eventually, external_program, metrics_page, Answer as _};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn metrics_text(c: &Cluster, i: usize) -> String {
    metrics_page(&c.nodes[i].admin_url())
        .await
        .expect("the metrics page")
}

/// The value of the sample line starting with `series` (name plus labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every `(label, value)` pair of every sample line.
fn label_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = rest.rsplit_once('}').unwrap().0;
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            pairs.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
        }
    }
    pairs
}

/// Traffic of every kind: local reads, forwarded writes, a read-your-writes wait that times
/// out, an app 5xx, odd paths and request ids (which must not become label values).
async fn traffic(c: &Cluster) {
    let replica = &c.nodes[1];
    for path in ["/r", "/very/secret/path?token=abc", "/status/500"] {
        replica
            .get(path)
            .header("x-request-id", "request-id-never-a-label")
            .answer()
            .await;
    }
    let r = replica.post("/w").body("x").answer().await;
    assert_eq!(r.status(), 200);
    let token = r.headers()["rwproxy-position"].to_str().unwrap().to_owned();
    // The replica never reaches the token (nothing replicates in this test): the read waits
    // consistency.wait, then goes to the primary.
    let r = replica
        .get("/after-write")
        .header("rwproxy-position", token)
        .answer()
        .await;
    assert_eq!(
        r.headers()["rwproxy-route"],
        "primary; reason=consistency-timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_traffic_match_the_contract_and_pass_promtool() {
    let c = Cluster::start(2, |config| {
        config.consistency.wait = Duration::from_millis(200);
    })
    .await;
    traffic(&c).await;
    let m = metrics_text(&c, 1).await;

    for (name, kind) in [
        ("rwproxy_requests_total", "counter"),
        ("rwproxy_request_duration_seconds", "histogram"),
        ("rwproxy_errors_total", "counter"),
        ("rwproxy_replication_lag_seconds", "gauge"),
        ("rwproxy_is_primary", "gauge"),
        ("rwproxy_primary_known", "gauge"),
        ("rwproxy_healthy", "gauge"),
        ("rwproxy_position", "gauge"),
        ("rwproxy_consistency_wait_seconds", "histogram"),
        ("rwproxy_consistency_timeouts_total", "counter"),
        ("rwproxy_primary_reachable", "gauge"),
        ("rwproxy_upstream_idle_connections", "gauge"),
        ("rwproxy_app_queued_requests", "gauge"),
        ("rwproxy_build_info", "gauge"),
    ] {
        assert!(
            m.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} is not a {kind}:\n{m}"
        );
    }
    let at_least = |series: &str, min: f64| {
        let v = sample(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
        assert!(v >= min, "{series} = {v}, expected >= {min}");
    };
    at_least(
        r#"rwproxy_requests_total{class="read",route="local",code="2xx"}"#,
        2.0,
    );
    at_least(
        r#"rwproxy_requests_total{class="read",route="local",code="5xx"}"#,
        1.0,
    );
    at_least(
        r#"rwproxy_requests_total{class="write",route="primary",code="2xx"}"#,
        1.0,
    );
    at_least(
        r#"rwproxy_requests_total{class="read",route="primary",code="2xx"}"#,
        1.0,
    );
    at_least(
        r#"rwproxy_request_duration_seconds_count{class="write",route="primary"}"#,
        1.0,
    );
    at_least("rwproxy_consistency_timeouts_total", 1.0);
    at_least("rwproxy_consistency_wait_seconds_count", 1.0);
    at_least(r#"rwproxy_position{db="app.db"}"#, 1.0);
    at_least(r#"rwproxy_upstream_idle_connections{upstream="app"}"#, 1.0);
    at_least(
        // Writes travel over the warm HTTP/2 connections (`writes.http2`), not pooled HTTP/1.1.
        r#"rwproxy_primary_connections{state="warm"}"#,
        1.0,
    );
    assert_eq!(sample(&m, "rwproxy_app_queued_requests"), Some(0.0));
    assert_eq!(sample(&m, "rwproxy_primary_reachable"), Some(1.0));
    assert_eq!(sample(&m, "rwproxy_primary_known"), Some(1.0));
    assert_eq!(sample(&m, "rwproxy_is_primary"), Some(0.0));
    assert_eq!(sample(&m, "rwproxy_replication_lag_seconds"), Some(0.0));
    assert_eq!(
        sample(
            &m,
            &format!(
                "rwproxy_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );

    // Label values come from small fixed sets, never from a request.
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    for (label, value) in label_pairs(&m) {
        let allowed = match label.as_str() {
            "class" => ["read", "write", "passthrough"].contains(&value.as_str()),
            "route" => rwproxy_http::metrics::ROUTES.contains(&value.as_str()),
            "code" => ["1xx", "2xx", "3xx", "4xx", "5xx"].contains(&value.as_str()),
            // Error codes, and why a connection to the primary was opened.
            "reason" => {
                codes.contains(&value.as_str()) || ["warm", "demand"].contains(&value.as_str())
            }
            "db" => value == "app.db",
            "upstream" => value == "app" || value == "primary",
            // Peers' states (rwproxy_peers) and connections to the primary (open, warm).
            "state" => ["known", "heard", "lost-primary", "open", "warm"].contains(&value.as_str()),
            "version" => value == env!("CARGO_PKG_VERSION"),
            "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
            "result" => value == "success" || value == "failure",
            // TLS handshakes to the primary (rwproxy_primary_tls_handshakes_total).
            "kind" => value == "full" || value == "resumed",
            _ => false,
        };
        assert!(allowed, "label {label}={value:?} is not from a fixed set");
    }
    assert!(!m.contains("secret") && !m.contains("request-id-never"));

    if let Some(promtool) = external_program("promtool") {
        for i in 0..2 {
            let text = metrics_text(&c, i).await;
            let mut child = Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "promtool check metrics on node {i}: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_primary_shows_in_metrics() {
    let mut c = Cluster::start(2, |config| {
        config.writes.primary_wait = Duration::from_millis(300);
    })
    .await;
    c.nodes[0].stop().await;
    let r = c.nodes[1].post("/w").body("x").answer().await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["rwproxy-error"], "primary-unreachable");
    let m = metrics_text(&c, 1).await;
    assert_eq!(sample(&m, "rwproxy_primary_reachable"), Some(0.0), "{m}");
    assert_eq!(
        sample(&m, r#"rwproxy_errors_total{reason="primary-unreachable"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"rwproxy_requests_total{class="write",route="rejected",code="5xx"}"#
        ),
        Some(1.0),
        "rwproxy's own answers are route=rejected, apart from the app's"
    );
    c.stop().await;
}

#[test]
fn alert_rules_pass_promtool() {
    let Some(promtool) = external_program("promtool") else {
        return;
    };
    let config = repo_root().join("config");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_follow_a_write_through_two_nodes() {
    let c = Cluster::start(2, |_| {}).await;
    let replica = &c.nodes[1];

    // No id from the client: the replica makes one; the primary's app sees the same one.
    let r = replica.post("/w1").body("x").answer().await;
    assert_eq!(r.status(), 200);
    let made = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 16);
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
    let seen = c.nodes[0].app.seen();
    assert_eq!(seen[0].headers["x-request-id"], made.as_str());
    assert_eq!(seen[0].headers.get_all("x-request-id").iter().count(), 1);

    // The client's own id is kept all the way and echoed.
    let r = replica
        .post("/w2")
        .header("x-request-id", "client-id-42")
        .body("x")
        .answer()
        .await;
    assert_eq!(r.headers()["x-request-id"], "client-id-42");
    assert_eq!(
        c.nodes[0].app.seen()[1].headers["x-request-id"],
        "client-id-42"
    );

    // A read served locally carries it to the local app; an unusable id is replaced.
    let r = replica
        .get("/r")
        .header("x-request-id", "two words")
        .answer()
        .await;
    let replaced = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(replaced.len(), 16);
    assert_eq!(
        c.nodes[1].app.seen()[0].headers["x-request-id"],
        replaced.as_str()
    );
    assert_ne!(replaced, made);

    // rwproxy's own answers carry it too.
    let r = replica
        .get("/health")
        .header("x-request-id", "probe-1")
        .answer()
        .await;
    assert_eq!(r.headers()["x-request-id"], "probe-1");
    c.stop().await;
}

/// Set in the child process of [`access_and_warning_logs_are_json_objects`].
const JSON_LOG_CHILD: &str = "RWPROXY_TEST_JSON_LOG_CHILD";

/// Runs this test binary again as a child that installs rwproxy's real JSON logging (a global
/// subscriber writing to stderr) and drives a write through two nodes, then checks each line
/// the child logged is one JSON object, with the request id in both nodes' access lines and in
/// the warning about an unreachable primary.
#[test]
fn access_and_warning_logs_are_json_objects() {
    if std::env::var_os(JSON_LOG_CHILD).is_some() {
        json_log_child();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "access_and_warning_logs_are_json_objects",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(JSON_LOG_CHILD, "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "no JSON lines:\n{stderr}");
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "rwproxy::access" && l["request_id"] == "json-log-write")
        .collect();
    let routes: BTreeSet<&str> = access
        .iter()
        .map(|l| l["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from(["local", "primary"]),
        "one access line per node for the forwarded write: {access:?}"
    );
    for line in &access {
        for field in [
            "timestamp",
            "level",
            "method",
            "path",
            "class",
            "route",
            "reason",
            "status",
            "duration_ms",
            "client",
        ] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
        assert_eq!(line["method"], "POST");
        assert_eq!(line["path"], "/json-log");
        assert_eq!(line["class"], "write");
        assert_eq!(line["status"], 200);
    }
    // The node's history (#25): each event is one line on target `rwproxy::event`.
    let started: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "rwproxy::event" && l["kind"] == "started")
        .collect();
    assert_eq!(started.len(), 2, "one `started` event per node:\n{stderr}");
    for line in started {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["count"], 1);
        assert!(line["id"].as_u64().is_some(), "{line}");
        assert!(line["node"].as_str().is_some(), "{line}");
        let message = line["message"].as_str().unwrap();
        assert!(message.starts_with("history started (role "), "{line}");
    }
    let warned = lines.iter().any(|l| {
        l["level"] == "WARN"
            && l["request_id"] == "json-log-unreachable"
            && l["message"] == "primary unreachable"
    });
    assert!(
        warned,
        "no warning naming the request id:\n{}",
        stderr
            .lines()
            .filter(|l| l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn json_log_child() {
    rwproxy::logging::init(rwproxy::config::LogFormat::Json, "info");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut c = Cluster::start(2, |config| {
            config.log.access = true;
            config.writes.primary_wait = Duration::from_millis(200);
        })
        .await;
        let r = c.nodes[1]
            .post("/json-log")
            .header("x-request-id", "json-log-write")
            .body("x")
            .answer()
            .await;
        assert_eq!(r.status(), 200);
        c.nodes[0].stop().await;
        let r = c.nodes[1]
            .post("/json-log")
            .header("x-request-id", "json-log-unreachable")
            .body("x")
            .answer()
            .await;
        assert_eq!(r.status(), 503);
        // The access line is written after the response; wait until it is surely out.
        eventually(
            Duration::from_secs(5),
            "metrics to count the 503",
            || async {
                let m = metrics_text(&c, 1).await;
                sample(&m, r#"rwproxy_errors_total{reason="primary-unreachable"}"#).map(|_| ())
            },
        )
        .await;
        c.stop().await;
    });
}
