//! End to end: the health endpoints the edge acts on. The JSON document and every 503 reason,
//! `HEAD`, `?max_lag=`, rise/fall debouncing, the app check, the HAProxy agent dialect (HTTP and
//! raw TCP) and liveness.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{client, eventually};
use serde_json::Value;
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(10);

/// `GET url`: status and JSON body.
async fn health(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/json");
    (status, r.json().await.unwrap())
}

/// Waits until `url` answers `status` with document status `name`; returns the document.
async fn health_becomes(url: &str, status: u16, name: &str) -> Value {
    let what = format!("{url} to answer {status} {name}");
    eventually(WAIT, &what, || async {
        let (s, doc) = health(url).await;
        (s == status && doc["status"] == name).then_some(doc)
    })
    .await
}

/// GET `url` as text.
async fn text(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_every_503_reason() {
    let c = Cluster::start(2, |config| {
        config.health.max_lag = Duration::from_secs(1);
        config.health.rise = 1;
        config.health.fall = 1;
    })
    .await;
    let primary = format!("{}/health", c.nodes[0].url());
    let doc = health_becomes(&primary, 200, "ok").await;
    assert_eq!(doc["node"], c.nodes[0].name.as_str());
    assert_eq!(doc["role"], "primary");
    assert_eq!(doc["primary"], c.nodes[0].name.as_str());
    assert_eq!(doc["lag_ms"], 0);
    assert_eq!(doc["max_lag_ms"], 1000);
    assert_eq!(doc["positions"], serde_json::json!({"app.db": 1}));
    assert_eq!(doc["observed"], "ok");
    assert!(doc.get("app").is_none(), "no app check configured");

    let replica = format!("{}/health", c.nodes[1].url());
    let admin = format!("{}/health", c.nodes[1].admin_url());
    let doc = health_becomes(&replica, 200, "ok").await;
    assert_eq!(doc["role"], "replica");
    assert_eq!(doc["primary"], c.nodes[0].name.as_str());

    let mount = &c.nodes[1].mount;
    mount.set_lag_ms(5000);
    let doc = health_becomes(&replica, 503, "lagging").await;
    assert_eq!(doc["lag_ms"], 5000);
    health_becomes(&admin, 503, "lagging").await;

    mount.lose_primary(500);
    let doc = health_becomes(&replica, 503, "no-primary").await;
    assert_eq!(doc["primary"], Value::Null);

    mount.make_replica(&c.nodes[0].name, 0);
    health_becomes(&replica, 200, "ok").await;
    mount.set_not_ready();
    health_becomes(&replica, 503, "not-ready").await;

    mount.remove_dir();
    let doc = health_becomes(&replica, 503, "unknown").await;
    assert_eq!(doc["role"], "unknown");
    assert_eq!(doc["lag_ms"], Value::Null);
    assert!(doc["problem"].is_string(), "{doc}");

    mount.recreate_dir();
    mount.set_pos("app.db", 1);
    mount.make_replica(&c.nodes[0].name, 0);
    health_becomes(&replica, 200, "ok").await;

    c.nodes[1].node.as_ref().unwrap().drain();
    let doc = health_becomes(&replica, 503, "draining").await;
    assert_eq!(doc["observed"], "draining");
    health_becomes(&admin, 503, "draining").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_a_per_probe_max_lag() {
    let c = Cluster::start(2, |config| {
        config.health.path = "/_health".into();
        config.health.rise = 1;
    })
    .await;
    c.nodes[1].mount.set_lag_ms(2000);
    let replica = format!("{}/_health", c.nodes[1].url());
    let doc = eventually(WAIT, "lag 2000 to show", || async {
        let (s, doc) = health(&replica).await;
        (s == 200 && doc["lag_ms"] == 2000).then_some(doc)
    })
    .await;
    assert_eq!(doc["max_lag_ms"], 10_000);

    for base in [
        c.nodes[1].url() + "/_health",
        c.nodes[1].admin_url() + "/health",
    ] {
        let r = client().head(&base).send().await.unwrap();
        assert_eq!(r.status(), 200, "{base}");
        assert!(r.bytes().await.unwrap().is_empty(), "HEAD has no body");

        let (s, doc) = health(&format!("{base}?max_lag=1s")).await;
        assert_eq!(
            (s, doc["status"].as_str()),
            (503, Some("lagging")),
            "{base}"
        );
        assert_eq!(doc["max_lag_ms"], 1000);
        let (s, _) = health(&format!("{base}?x=1&max_lag=5s")).await;
        assert_eq!(s, 200, "{base}");
        let r = client()
            .head(format!("{base}?max_lag=500ms"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{base}");
        // A threshold that does not parse is ignored, not an error.
        let (s, doc) = health(&format!("{base}?max_lag=soon")).await;
        assert_eq!((s, doc["max_lag_ms"].as_u64()), (200, Some(10_000)));
    }
    // The health path is answered before routing: never sent to the app.
    assert!(c.nodes[1].app.seen().is_empty());
    c.stop().await;
}

/// Polls `url` until the document's status is `until`, collecting every distinct
/// `(status, observed)` pair seen on the way.
async fn trace_until(url: &str, until: &str) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, doc) = health(url).await;
        let pair = (
            doc["status"].as_str().unwrap().to_owned(),
            doc["observed"].as_str().unwrap().to_owned(),
        );
        if seen.last() != Some(&pair) {
            seen.push(pair.clone());
        }
        if pair.0 == until {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never became {until}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rise_and_fall_debounce_lag_but_not_a_lost_primary() {
    // 8 observations at one per 250 ms tick: each change takes well over a second to confirm.
    let c = Cluster::start(2, |config| {
        config.health.max_lag = Duration::from_secs(1);
        config.health.rise = 8;
        config.health.fall = 8;
    })
    .await;
    let replica = format!("{}/health", c.nodes[1].url());
    health_becomes(&replica, 200, "ok").await;
    let metrics = format!("{}/metrics", c.nodes[1].admin_url());

    c.nodes[1].mount.set_lag_ms(5000);
    let trace = trace_until(&replica, "lagging").await;
    assert!(
        trace.contains(&("ok".into(), "lagging".into())),
        "fall: still healthy while the lag is being confirmed: {trace:?}"
    );
    let (_, m) = text(&metrics).await;
    assert!(m.contains("rwproxy_healthy 0"), "{m}");

    c.nodes[1].mount.set_lag_ms(0);
    let trace = trace_until(&replica, "ok").await;
    assert!(
        trace.contains(&("lagging".into(), "ok".into())),
        "rise: still unhealthy while the recovery is being confirmed: {trace:?}"
    );
    let m = eventually(WAIT, "rwproxy_healthy 1", || async {
        let (_, m) = text(&metrics).await;
        m.contains("rwproxy_healthy 1").then_some(m)
    })
    .await;
    assert!(m.contains("rwproxy_is_primary 0"));

    // Losing the primary is never debounced: the contract says such a node is never 200.
    c.nodes[1].mount.lose_primary(100);
    let trace = trace_until(&replica, "no-primary").await;
    assert!(
        trace
            .iter()
            .all(|(status, observed)| observed != "no-primary" || status == "no-primary"),
        "a lost primary answered 200: {trace:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_check_turns_health_app_down() {
    let c = Cluster::start(1, |config| {
        config.health.app_path = Some("/healthz".into());
        config.health.app_interval = Duration::from_millis(50);
        config.health.rise = 1;
        config.health.fall = 2;
    })
    .await;
    let url = format!("{}/health", c.nodes[0].url());
    let doc = health_becomes(&url, 200, "ok").await;
    assert_eq!(doc["app"], "up");
    c.nodes[0].app.set_healthz(false);
    let doc = health_becomes(&url, 503, "app-down").await;
    assert_eq!(doc["app"], "down");
    assert_eq!(doc["role"], "primary");
    c.nodes[0].app.set_healthz(true);
    health_becomes(&url, 200, "ok").await;
    assert!(c.nodes[0]
        .app
        .seen()
        .iter()
        .all(|s| s.uri == "/healthz" && s.headers["user-agent"] == "rwproxy-app-check"));
    c.stop().await;
}

/// Reads the agent line from the raw TCP agent listener, as HAProxy does.
async fn agent_tcp(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut line = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut line))
        .await
        .expect("agent closes the connection")
        .unwrap();
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_check_words_over_http_and_tcp_and_liveness() {
    let c = Cluster::start(2, |config| {
        config.admin.agent_listen = Some("127.0.0.1:0".parse().unwrap());
        config.health.rise = 1;
        config.health.fall = 1;
    })
    .await;
    let agent = |i: usize| format!("{}/health/agent", c.nodes[i].admin_url());
    let line = eventually(WAIT, "primary agent up", || async {
        let (s, line) = text(&agent(0)).await;
        (s == 200 && line.starts_with("up")).then_some(line)
    })
    .await;
    assert_eq!(line, "up ready 100%\n");
    assert_eq!(agent_tcp(c.nodes[0].agent_addr()).await, "up ready 100%\n");

    // Half of health.max_lag (10 s): weight 55%.
    c.nodes[1].mount.set_lag_ms(5000);
    let want = "up ready 55%\n";
    eventually(WAIT, "replica weight 55%", || async {
        (text(&agent(1)).await.1 == want).then_some(())
    })
    .await;
    assert_eq!(agent_tcp(c.nodes[1].agent_addr()).await, want);

    c.nodes[1].mount.set_lag_ms(20_000);
    eventually(WAIT, "replica agent down", || async {
        (text(&agent(1)).await.1 == "down #lagging\n").then_some(())
    })
    .await;
    assert_eq!(agent_tcp(c.nodes[1].agent_addr()).await, "down #lagging\n");

    // Liveness has nothing to do with lag.
    assert_eq!(
        text(&format!("{}/live", c.nodes[1].admin_url())).await,
        (200, "live\n".to_owned())
    );

    c.nodes[1].node.as_ref().unwrap().drain();
    assert_eq!(text(&agent(1)).await.1, "drain\n");
    assert_eq!(agent_tcp(c.nodes[1].agent_addr()).await, "drain\n");
    assert_eq!(
        text(&format!("{}/live", c.nodes[1].admin_url())).await.0,
        200
    );
    c.stop().await;
}
