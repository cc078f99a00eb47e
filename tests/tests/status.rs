//! End to end: `rwproxy status`'s view of a real three-node cluster (real rwproxy nodes on
//! LiteFS-format mounts): every node's role, primary, positions behind the primary, version and
//! uptime; a split primary, replicas following different primaries, a stopped node and a node
//! that never answers are each flagged, without the others' rows going missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use rwproxy::status::{self, Report};
use rwproxy_core::Role;
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::eventually;

const TIMEOUT: Duration = Duration::from_secs(2);

async fn look(urls: &[String]) -> Report {
    let client = status::client(TIMEOUT).unwrap();
    status::gather(&client, urls, TIMEOUT, &mut HashMap::new()).await
}

/// Looks until `check` accepts the report (health verdicts settle through rise/fall), at most
/// 5 s; panics with the last report's problems otherwise.
async fn look_until(urls: &[String], what: &str, check: impl Fn(&Report) -> bool) -> Report {
    eventually(Duration::from_secs(5), what, || async {
        let report = look(urls).await;
        check(&report).then_some(report)
    })
    .await
}

fn names(report: &Report) -> Vec<String> {
    report.nodes.iter().map(|n| n.name().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_every_node_then_flags_split_primaries_diverging_replicas_and_a_stopped_node()
{
    let mut c = Cluster::start(3, |_| {}).await;
    let urls: Vec<String> = c.nodes.iter().map(|n| n.admin_url()).collect();
    let primary = c.nodes[0].name.clone();

    // The primary moves ahead by 5 transactions; the replicas have not caught up yet.
    let head = c.nodes[0].mount.pos("app.db") + 5;
    c.nodes[0].mount.set_pos("app.db", head);
    c.nodes[0]
        .wait_state("the primary's new position", |s| {
            s.positions.values().any(|p| *p == head)
        })
        .await;
    let report = look_until(&urls, "a healthy cluster", Report::ok).await;
    assert_eq!(
        names(&report),
        c.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>()
    );
    for (i, node) in report.nodes.iter().enumerate() {
        let doc = node.doc.as_ref().unwrap();
        assert_eq!(doc.role, if i == 0 { "primary" } else { "replica" });
        assert_eq!(doc.primary.as_deref(), Some(primary.as_str()));
        assert_eq!(doc.status, "ok");
        assert_eq!(doc.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        assert!(doc.uptime_seconds.is_some());
        let behind = if i == 0 { 0 } else { 5 };
        assert_eq!(node.behind.get("app.db"), Some(&behind), "node {i}");
        // Rates come from the admin listener's /metrics.
        assert!(node.rates.is_some(), "node {i} has no rates");
    }

    // Split primary: node 2's mount says it is the primary too.
    c.nodes[2].mount.make_primary();
    c.nodes[2]
        .wait_state("node 2 to claim primary", |s| s.role == Role::Primary)
        .await;
    let split = vec![format!(
        "2 nodes say they are the primary: {primary}, {}",
        c.nodes[2].name
    )];
    let report = look_until(&urls, "the split primary flagged", |r| r.problems == split).await;
    // Nothing is "behind" two primaries.
    assert!(report.nodes.iter().all(|n| n.behind.is_empty()));

    // Node 2 back as a replica, but of node 1 (which is a replica itself).
    c.follow(2, 1).await;
    let (n1, n2) = (&c.nodes[1].name, &c.nodes[2].name);
    // Listed by primary name (BTreeMap order).
    let mut followed = [format!("{primary} (by {n1})"), format!("{n1} (by {n2})")];
    followed.sort_by_key(|f| f.split(' ').next().unwrap().to_owned());
    let diverging = vec![
        format!(
            "replicas follow different primaries: {}",
            followed.join("; ")
        ),
        format!("{n2} follows {n1}, which says it is replica"),
    ];
    look_until(&urls, "diverging replicas flagged", |r| {
        r.problems == diverging
    })
    .await;

    // Node 1 stops: its row stays, flagged unreachable; the rest still answer.
    c.follow(2, 0).await;
    look_until(&urls, "a healthy cluster again", Report::ok).await;
    c.nodes[1].stop().await;
    let report = look(&urls).await;
    assert_eq!(report.nodes.len(), 3);
    assert!(report.nodes[1].doc.is_none());
    assert!(report.nodes[0].doc.is_some() && report.nodes[2].doc.is_some());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].starts_with(&format!("{} is unreachable: ", urls[1])),
        "{:?}",
        report.problems
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_answers_is_flagged_and_does_not_hide_the_others() {
    let c = Cluster::start(1, |_| {}).await;
    look_until(&[c.nodes[0].admin_url()], "a healthy node", Report::ok).await;
    // Accepts connections (the kernel's backlog) but never reads or answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let urls = vec![silent_url.clone(), c.nodes[0].admin_url()];
    // The silent node costs one timeout (2 s); the live one answers well within it.
    let report = look(&urls).await;
    assert!(report.nodes[1].doc.is_some(), "{report:?}");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].starts_with(&format!("{silent_url} is unreachable: ")),
        "{:?}",
        report.problems
    );
    drop(silent);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_listener_url_works_too_and_an_unhealthy_node_is_flagged() {
    let c = Cluster::start(2, |_| {}).await;
    c.nodes[1].lose_primary(30_000).await;
    // The proxy listener answers /health itself; it has no /status or /metrics (those reach
    // the app), so version, uptime and rates are unknown.
    let urls = [c.nodes[0].url(), c.nodes[1].url()];
    let report = look_until(&urls, "node 0 healthy", |r| {
        r.nodes[0].doc.as_ref().is_some_and(|d| d.healthy())
    })
    .await;
    let doc = report.nodes[0].doc.as_ref().unwrap();
    assert_eq!((doc.role.as_str(), doc.status.as_str()), ("primary", "ok"));
    assert_eq!(doc.version, None);
    assert_eq!(report.nodes[0].rates, None);
    assert_eq!(
        report.problems,
        vec![format!("{} is unhealthy (no-primary)", c.nodes[1].name)]
    );
    // The admin listener's /status answers 200 for an unhealthy node too (the verdict is in
    // the document), while /health says 503.
    let admin = c.nodes[1].admin_url();
    let client = rwproxy_tests::client();
    let status = client.get(format!("{admin}/status")).send().await.unwrap();
    assert_eq!(status.status(), 200);
    let doc: serde_json::Value = status.json().await.unwrap();
    assert_eq!(doc["status"], "no-primary");
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert!(doc["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let health = client.get(format!("{admin}/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    c.stop().await;
}
