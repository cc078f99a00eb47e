//! End to end, in a real browser: Debian's headless Chromium loads the operator's page from a
//! test cluster's admin listener after a hand-off, a lag excursion, forwarded writes and a
//! refusal, and the DOM after the page's script ran shows the verdict, the primary, the
//! hand-off event and a lag chart with points. Screenshots (desktop, phone width, dark) are saved
//! under `target/test-artefacts/`; with `RWPROXY_UPDATE_SCREENSHOT=1` the desktop one also
//! replaces `docs/images/operator-page.png`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{client, eventually, external_program};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
/// How long one browser run may take before the test fails (it usually takes 2 to 5 s).
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

async fn json(url: &str) -> Value {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `admin`'s series holds `more` samples beyond what it holds now, so that the
/// state of this moment is drawn.
async fn samples_pass(admin: &str, more: usize) {
    let now = json(&format!("{admin}/series")).await["t"]
        .as_array()
        .unwrap()
        .len();
    eventually(WAIT, "series samples", || async {
        let n = json(&format!("{admin}/series")).await["t"]
            .as_array()
            .unwrap()
            .len();
        (n >= now + more).then_some(())
    })
    .await;
}

/// Runs headless Chromium with `extra` arguments on `url`; returns its standard output. Killed
/// when it runs past [`BROWSER_LIMIT`].
async fn chromium(chromium: &Path, profile: &Path, extra: &[String], url: &str) -> String {
    let out = profile.join("stdout.txt");
    let err = profile.join("stderr.txt");
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            // Lets the page's fetches and first refreshes finish before the dump or the shot.
            "--virtual-time-budget=6000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(extra)
        .arg(url)
        .stdin(std::process::Stdio::null())
        // Files, not pipes: a large DOM must not block the browser on a full pipe.
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("chromium starts");
    let deadline = std::time::Instant::now() + BROWSER_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium ran past {BROWSER_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "chromium failed: {}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    std::fs::read_to_string(&out).unwrap()
}

/// The text inside the element with id `id` (its first text run), from a dumped DOM.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[start..];
    let open = rest.find('>').unwrap() + 1;
    let close = rest[open..].find('<').unwrap();
    &rest[open..open + close]
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_verdict_the_primary_the_hand_off_and_the_lag_chart() {
    let Some(browser) = external_program("chromium") else {
        return;
    };
    let c = Cluster::start(2, |config| {
        config.writes.primary_wait = Duration::from_millis(300);
        config.health.rise = 1;
    })
    .await;
    let (n0, n1) = (c.nodes[0].name.clone(), c.nodes[1].name.clone());
    let admin = c.nodes[0].admin_url();
    samples_pass(&admin, 2).await;

    // Node 0 hands the primary to node 1, then serves reads and forwards writes.
    c.move_primary(1).await;
    for i in 0..6 {
        assert_eq!(c.nodes[0].get("/").send().await.unwrap().status(), 200);
        let write = c.nodes[0].post(&format!("/w{i}")).send().await.unwrap();
        assert_eq!(write.status(), 200);
    }
    samples_pass(&admin, 2).await;
    // Lag climbs over reads.max_lag (5 s), then health.max_lag (10 s), then recovers.
    let node = &c.nodes[0];
    for lag_ms in [2_500, 6_500, 11_500, 7_000, 300] {
        node.mount.make_replica(&n1, lag_ms);
        node.wait_state("lag to be read", |s| {
            s.lag == Some(Duration::from_millis(lag_ms as u64))
        })
        .await;
        samples_pass(&admin, 1).await;
    }
    // A short loss of the primary: a write is refused with 503 no-primary.
    node.lose_primary(2_000).await;
    let refused = node.post("/lost").send().await.unwrap();
    assert_eq!(refused.status(), 503);
    c.follow(0, 1).await;
    eventually(WAIT, "node 0 healthy again", || async {
        let doc = json(&format!("{admin}/status")).await;
        (doc["status"] == "ok").then_some(())
    })
    .await;
    samples_pass(&admin, 2).await;

    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(&browser, profile.path(), &["--dump-dom".to_owned()], &admin).await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the script never rendered: {dom}"
    );
    assert_eq!(text_of(&dom, "verdict"), "ok (200)");
    assert_eq!(text_of(&dom, "node"), n0);
    assert_eq!(text_of(&dom, "role"), "replica");
    assert_eq!(text_of(&dom, "primary"), n1);
    assert!(
        dom.contains(&format!("primary changed from {n0} to {n1}")),
        "no hand-off in the timeline: {dom}"
    );
    assert!(dom.contains("data-kind=\"primary-changed\""));
    assert!(dom.contains("data-kind=\"lag-over-health-max\""));
    assert!(dom.contains("data-kind=\"primary-lost\""));
    let points: usize = {
        let at = dom.find("id=\"lag-chart\"").unwrap();
        let rest = &dom[at..];
        let p = rest.find("data-points=\"").unwrap() + "data-points=\"".len();
        let end = rest[p..].find('"').unwrap();
        rest[p..p + end].parse().unwrap()
    };
    assert!(points >= 8, "lag chart with {points} points");
    assert!(dom.contains("<polyline"), "no line drawn");
    // The charts are described in words too (the lag's highest value was 11.5 s).
    assert!(dom.contains("highest 11.5 s"), "no words for the lag chart");
    assert!(dom.contains("aria-label=\"Per second over the last"));
    assert!(
        dom.contains("refused no-primary"),
        "no refusal in the legend"
    );
    assert!(dom.contains("<th scope=\"col\">Time</th>"));
    // No peers configured: no cluster table.
    assert!(
        dom.contains("id=\"cluster\" hidden"),
        "a cluster table without peers"
    );

    let dir = artefacts();
    let desktop = dir.join("operator-page.png");
    let phone = dir.join("operator-page-phone.png");
    let dark = dir.join("operator-page-dark.png");
    for (path, size, scheme) in [
        (&desktop, "1100,2000", None),
        (&phone, "390,1600", None),
        (&dark, "1100,1200", Some("--force-dark-mode")),
    ] {
        let _ = std::fs::remove_file(path);
        let mut args = vec![
            format!("--screenshot={}", path.display()),
            format!("--window-size={size}"),
        ];
        args.extend(scheme.map(str::to_owned));
        chromium(&browser, profile.path(), &args, &admin).await;
        let png = std::fs::read(path).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{} is no PNG", path.display());
        assert!(png.len() > 10_000, "{} is nearly empty", path.display());
    }
    if std::env::var("RWPROXY_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&desktop, docs.join("operator-page.png")).unwrap();
    }
    c.stop().await;
}

/// Where the node knows its peers, the page shows the cluster table: a row per node with real
/// headers, and a stopped peer flagged in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_cluster_table_where_the_node_knows_its_peers() {
    let Some(browser) = external_program("chromium") else {
        return;
    };
    let mut p = rwproxy_tests::peered::Peered::start(3, |config| {
        config.peers.poll = Duration::from_millis(100);
    })
    .await;
    let names: Vec<String> = p.cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let admin = p.cluster.nodes[1].admin_url();
    p.cluster.nodes[2].stop().await;
    eventually(WAIT, "node 1 hears node 0 only", || async {
        let doc = json(&format!("{admin}/peers")).await;
        (doc["known"] == 2 && doc["heard"] == 1).then_some(())
    })
    .await;

    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(&browser, profile.path(), &["--dump-dom".to_owned()], &admin).await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the script never rendered: {dom}"
    );
    assert!(
        !dom.contains("id=\"cluster\" hidden"),
        "the table is hidden: {dom}"
    );
    assert!(dom.contains("<th scope=\"col\">Health</th>"));
    assert!(
        dom.contains(&format!("<th scope=\"row\">{} (this node)</th>", names[1])),
        "no row for this node: {dom}"
    );
    let primary_row = dom
        .find(&format!("data-node=\"{}\"", names[0]))
        .map(|at| &dom[at..at + dom[at..].find("</tr>").unwrap()])
        .unwrap_or_else(|| panic!("no row for the primary: {dom}"));
    assert!(primary_row.contains("<td>primary</td>"), "{primary_row}");
    assert!(
        primary_row.contains("<td>reaches a primary</td>"),
        "{primary_row}"
    );
    assert!(
        dom.contains("Disagreement: 1 of 2 peer(s) not heard in the last round"),
        "the stopped peer is not flagged: {dom}"
    );
    let shot = artefacts().join("operator-page-peers.png");
    let _ = std::fs::remove_file(&shot);
    let args = [
        format!("--screenshot={}", shot.display()),
        "--window-size=1100,900".to_owned(),
    ];
    chromium(&browser, profile.path(), &args, &admin).await;
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
    p.cluster.stop().await;
}
