//! End to end: the node's recent history on the admin listener. `/events` tells a hand-off
//! (role and primary changes, newest first), follows with `?since=` (an id or an RFC 3339
//! time) and refuses a bad one; a flapping cluster source stays a couple of lines with counts;
//! `/series` has a sample a second with requests by status class and refusals by code; the
//! breaker and a drain are events too; and `admin.ui = false` turns the page off but not the
//! JSON.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{client, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

async fn json(url: &str) -> Value {
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

async fn events(admin: &str, query: &str) -> Vec<Value> {
    let doc = json(&format!("{admin}/events{query}")).await;
    doc["events"].as_array().unwrap().clone()
}

/// `url` is refused: 400, `rwproxy-error: bad-request`, one line naming `since`.
async fn bad_request(url: &str) {
    let refused = client().get(url).send().await.unwrap();
    assert_eq!(refused.status(), 400, "{url}");
    assert_eq!(refused.headers()["rwproxy-error"], "bad-request");
    let body = refused.text().await.unwrap();
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(body.contains("since"), "{body}");
}

/// Waits until `admin`'s events hold one that `check` accepts; returns every event then.
async fn event_seen(admin: &str, what: &str, check: impl Fn(&Value) -> bool) -> Vec<Value> {
    eventually(WAIT, what, || async {
        let all = events(admin, "").await;
        all.iter().any(&check).then_some(all)
    })
    .await
}

fn kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_a_hand_off_follow_with_since_and_stay_small_when_a_source_flaps() {
    let mut c = Cluster::start(2, |config| {
        config.health.rise = 1;
    })
    .await;
    let (n0, n1) = (c.nodes[0].name.clone(), c.nodes[1].name.clone());
    let admin0 = c.nodes[0].admin_url();
    let admin1 = c.nodes[1].admin_url();

    // Start-up is one `started` event, not a role change from "unknown".
    let start = event_seen(&admin0, "node 0 started", |e| e["kind"] == "started").await;
    assert!(kind(&start, "role-changed").is_empty(), "{start:?}");
    let started = kind(&start, "started")[0];
    assert!(
        started["message"]
            .as_str()
            .unwrap()
            .starts_with("role primary"),
        "{started}"
    );
    let before = json(&format!("{admin0}/events")).await["last_id"]
        .as_u64()
        .unwrap();

    // The hand-off, as both nodes tell it.
    c.move_primary(1).await;
    let seen = event_seen(&admin0, "node 0's hand-off", |e| {
        e["kind"] == "primary-changed" && e["from"] == n0.as_str() && e["to"] == n1.as_str()
    })
    .await;
    let role = event_seen(&admin0, "node 0's role change", |e| {
        e["kind"] == "role-changed" && e["from"] == "primary" && e["to"] == "replica"
    })
    .await;
    let hand_off = kind(&seen, "primary-changed")[0];
    assert_eq!(
        hand_off["summary"],
        format!("primary changed from {n0} to {n1}")
    );
    assert_eq!(hand_off["severity"], "info");
    assert_eq!(hand_off["count"], 1);
    // RFC 3339, UTC, milliseconds: `2026-12-07T21:51:25.123Z`.
    let at = hand_off["at"].as_str().unwrap();
    assert!(
        at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
        "{at}"
    );
    // Newest first.
    let ids: Vec<u64> = role.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    event_seen(&admin1, "node 1's promotion", |e| {
        e["kind"] == "role-changed" && e["from"] == "replica" && e["to"] == "primary"
    })
    .await;

    // Following: only what came after the id, or after the time.
    let after = events(&admin0, &format!("?since={before}")).await;
    assert!(!after.is_empty());
    assert!(after.iter().all(|e| e["id"].as_u64().unwrap() > before));
    assert!(kind(&after, "started").is_empty());
    let at = hand_off["at"].as_str().unwrap().to_owned();
    let later = events(&admin0, &format!("?since={at}")).await;
    assert!(later
        .iter()
        .all(|e| e["at"].as_str().unwrap() > at.as_str()));
    let everything = events(&admin0, "?since=1970-01-01T00:00:00Z").await;
    assert!(everything.len() > later.len());
    bad_request(&format!("{admin0}/events?since=yesterday")).await;

    // A flapping source: the mount goes away and comes back, again and again.
    const FLAPS: usize = 25;
    let node = &c.nodes[0];
    for _ in 0..FLAPS {
        node.mount.remove_dir();
        node.wait_state("source to fail", |s| s.problem.is_some())
            .await;
        node.mount.recreate_dir();
        node.mount.make_replica(&n1, 0);
        node.mount.set_pos("app.db", 1);
        node.wait_state("source to recover", |s| {
            s.problem.is_none() && s.primary.is_some()
        })
        .await;
    }
    let flapped = eventually(WAIT, "the flaps to be counted", || async {
        let all = events(&admin0, "").await;
        let recovered: u64 = kind(&all, "source-recovered")
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum();
        // The observer may miss a flap shorter than its wake-up; most are seen.
        (recovered >= FLAPS as u64 / 2).then_some(all)
    })
    .await;
    let errors = kind(&flapped, "source-error");
    let recoveries = kind(&flapped, "source-recovered");
    assert_eq!(recoveries.len(), 1, "{flapped:#?}");
    assert!(errors.len() <= 2, "{errors:#?}");
    assert!(errors.iter().any(|e| e["count"].as_u64().unwrap() > 1));
    assert_eq!(errors[0]["severity"], "warn");
    assert!(
        flapped.len() < 20,
        "{} events for {FLAPS} flaps: {flapped:#?}",
        flapped.len()
    );
    let doc = json(&format!("{admin0}/events")).await;
    assert_eq!(doc["dropped"], 0);
    assert_eq!(doc["capacity"], 512);
    assert_eq!(doc["node"], n0.as_str());

    // The series: a sample a second, requests by status class, refusals by code.
    for _ in 0..5 {
        let r = c.nodes[1].get("/").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let series = eventually(WAIT, "requests in the series", || async {
        let s = json(&format!("{admin1}/series")).await;
        let total: u64 = s["requests"]["2xx"]
            .as_array()
            .map(|c| c.iter().map(|v| v.as_u64().unwrap()).sum())
            .unwrap_or(0);
        (total >= 5).then_some(s)
    })
    .await;
    let samples = series["t"].as_array().unwrap().len();
    assert!(samples >= 2, "{series}");
    assert_eq!(series["lag_ms"].as_array().unwrap().len(), samples);
    assert_eq!(
        series["positions"]["app.db"].as_array().unwrap().len(),
        samples
    );
    assert_eq!(series["interval_seconds"], 1);
    assert_eq!(series["capacity"], 3600);
    assert_eq!(series["reads_max_lag_ms"], 5000);
    assert_eq!(series["health_max_lag_ms"], 10000);
    let t: Vec<u64> = series["t"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
    let last = *t.last().unwrap();
    let newer = json(&format!("{admin1}/series?since={last}")).await;
    assert!(newer["t"].as_array().unwrap().len() < samples);
    bad_request(&format!("{admin1}/series?since=soon")).await;

    // A refusal shows under its code: node 0 loses its primary and a write waits, then 503.
    c.nodes[0].lose_primary(2_000).await;
    let refused = c.nodes[0].post("/w").send().await.unwrap();
    assert_eq!(refused.status(), 503);
    eventually(WAIT, "the no-primary refusal in the series", || async {
        let s = json(&format!("{admin0}/series")).await;
        let total: u64 = s["refusals"]["no-primary"]
            .as_array()
            .map(|c| c.iter().map(|v| v.as_u64().unwrap()).sum())
            .unwrap_or(0);
        (total >= 1).then_some(())
    })
    .await;
    event_seen(&admin0, "the lost primary", |e| {
        e["kind"] == "primary-lost" && e["from"] == n1.as_str() && e["severity"] == "warn"
    })
    .await;

    // The primary's rwproxy goes away: writes fail to connect and the breaker opens.
    c.follow(0, 1).await;
    c.nodes[1].stop().await;
    for i in 0..4 {
        let r = c.nodes[0].post(&format!("/b{i}")).send().await.unwrap();
        assert_eq!(r.status(), 503);
    }
    event_seen(&admin0, "the breaker to open", |e| {
        e["kind"] == "breaker-open" && e["to"] == n1.as_str() && e["severity"] == "warn"
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_can_be_turned_off_and_serves_its_own_files_only() {
    let c = Cluster::start(1, |config| config.admin.ui = false).await;
    let admin = c.nodes[0].admin_url();
    for path in ["/", "/ui", "/ui/page.js"] {
        let r = client().get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("admin.ui = false"));
    }
    assert!(!events(&admin, "").await.is_empty());
    c.nodes[0].node.as_ref().unwrap().drain();
    event_seen(&admin, "the drain", |e| e["kind"] == "drain-started").await;
    event_seen(&admin, "health to turn draining", |e| {
        e["kind"] == "health-changed" && e["to"] == "draining" && e["severity"] == "warn"
    })
    .await;
    c.stop().await;

    let on = Cluster::start(1, |_| {}).await;
    let admin = on.nodes[0].admin_url();
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/page.css", "text/css; charset=utf-8"),
        ("/ui/page.js", "text/javascript; charset=utf-8"),
    ] {
        let r = client().get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert!(r.headers().get("set-cookie").is_none());
    }
    let head = client()
        .head(format!("{admin}/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    on.stop().await;
}

/// `/peers`: this node first, then every peer heard, with no flags while the three agree; a
/// stopped peer is flagged as not heard. A node without peers answers `known: 0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_shows_the_cluster_table_and_flags_a_peer_not_heard() {
    let mut p = rwproxy_tests::peered::Peered::start(3, |config| {
        config.peers.poll = Duration::from_millis(100);
    })
    .await;
    let names: Vec<String> = p.cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let admin = p.cluster.nodes[1].admin_url();
    let doc = eventually(WAIT, "node 1 hears both peers", || async {
        let doc = json(&format!("{admin}/peers")).await;
        (doc["heard"] == 2).then_some(doc)
    })
    .await;
    assert_eq!(doc["known"], 2);
    assert_eq!(doc["node"], names[1].as_str());
    let rows = doc["nodes"].as_array().unwrap();
    let row_names: Vec<&str> = rows.iter().map(|r| r["node"].as_str().unwrap()).collect();
    assert_eq!(row_names[0], names[1], "this node comes first");
    assert_eq!(rows[0]["this_node"], true);
    let mut sorted = row_names.clone();
    sorted.sort_unstable();
    let mut expected: Vec<&str> = names.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
    let primary = rows
        .iter()
        .find(|r| r["node"] == names[0].as_str())
        .unwrap();
    assert_eq!(primary["role"], "primary");
    assert_eq!(primary["stance"], "reaches");
    assert!(primary["positions"]["app.db"].is_u64(), "{primary}");
    assert_eq!(rows[0]["role"], "replica");
    assert_eq!(rows[0]["primary"], names[0].as_str());
    assert_eq!(doc["disagreements"], serde_json::json!([]), "{doc}");

    p.cluster.nodes[2].stop().await;
    let doc = eventually(WAIT, "node 1 flags node 2 as not heard", || async {
        let doc = json(&format!("{admin}/peers")).await;
        (doc["heard"] == 1).then_some(doc)
    })
    .await;
    assert_eq!(
        doc["disagreements"],
        serde_json::json!(["1 of 2 peer(s) not heard in the last round"])
    );
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 2);
    p.cluster.stop().await;

    // A node without peers: no rows but its own, nothing flagged (the page hides the table).
    let c = Cluster::start(1, |_| {}).await;
    let doc = json(&format!("{}/peers", c.nodes[0].admin_url())).await;
    assert_eq!(doc["known"], 0);
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(doc["disagreements"], serde_json::json!([]));
    c.stop().await;
}
