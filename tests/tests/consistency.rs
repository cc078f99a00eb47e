//! End to end: position tokens after writes, reads that wait for them, and lag-aware reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use rwproxy_core::StalePolicy;
use rwproxy_core::TimeoutPolicy;
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::{eventually, header_values, metrics_line, Answer as _};

fn txid_cookie(r: &reqwest::Response) -> String {
    let cookies = header_values(r.headers(), "set-cookie");
    let c = cookies
        .iter()
        .find(|c| c.starts_with("__txid="))
        .unwrap_or_else(|| panic!("no __txid cookie in {cookies:?}"));
    assert!(
        c.contains("Path=/") && c.contains("HttpOnly") && c.contains("SameSite=Lax"),
        "{c}"
    );
    c.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_get_a_token_directly_and_through_a_replica() {
    let c = Cluster::start(2, |_| {}).await;
    let r = c.nodes[0].post("/w").body("a").answer().await;
    assert_eq!(r.status(), 200);
    let pos = c.nodes[0].mount.pos("app.db");
    assert_eq!(txid_cookie(&r), format!("__txid={pos:016x}"));
    assert_eq!(
        r.headers()["rwproxy-position"],
        format!("app.db={pos:016x}")
    );

    let r = c.nodes[1].post("/w").body("b").answer().await;
    assert_eq!(r.status(), 200);
    let pos = c.nodes[0].mount.pos("app.db");
    assert_eq!(
        txid_cookie(&r),
        format!("__txid={pos:016x}"),
        "the replica passes the primary's token through"
    );
    assert_eq!(
        r.headers()["rwproxy-position"],
        format!("app.db={pos:016x}")
    );

    // Reads get no token; the app's own cookies survive next to ours.
    let r = c.nodes[0].get("/r").answer().await;
    assert!(r.headers().get("set-cookie").is_none());
    let r = c.nodes[1].post("/cookie").answer().await;
    let cookies = header_values(r.headers(), "set-cookie");
    assert!(
        cookies.iter().any(|c| c.starts_with("session=app")),
        "{cookies:?}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("__txid=")),
        "{cookies:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_released_reads_shares_the_capped_app_connections() {
    let c = Cluster::start(2, |config| {
        config.proxy.app_max_connections = 4;
        // Long enough for the whole herd to gather on a busy machine before the first gives up.
        config.consistency.wait = Duration::from_secs(60);
    })
    .await;
    let r = c.nodes[1].post("/w").body("x").answer().await;
    let cookie = txid_cookie(&r);
    // 100 reads wait on the replica for that write, then are all released at once.
    let reads: Vec<_> = (0..100)
        .map(|_| tokio::spawn(c.nodes[1].get("/r").header("cookie", &cookie).answer()))
        .collect();
    let node = c.nodes[1].node.as_ref().expect("running");
    eventually(Duration::from_secs(50), "100 reads waiting", || async {
        (node.waiting_reads() == 100).then_some(())
    })
    .await;
    c.replicate_from(0);
    for read in reads {
        let r = read.await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["rwproxy-route"], "local; reason=waited");
    }
    let app = &c.nodes[1].app;
    assert_eq!(app.seen().len(), 100);
    assert!(
        app.connections_accepted() <= 4,
        "the replica's app accepted {} connections",
        app.connections_accepted()
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waits_until_the_replica_reaches_the_token() {
    let c = Cluster::start(2, |_| {}).await;
    let r = c.nodes[1].post("/w").body("x").answer().await;
    let cookie = txid_cookie(&r);
    // The replica has not replicated the write yet.
    let started = Instant::now();
    let read = tokio::spawn(c.nodes[1].get("/r").header("cookie", &cookie).answer());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "the read did not wait");
    c.replicate_from(0);
    let r = read.await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "local; reason=waited");
    assert!(started.elapsed() < Duration::from_secs(2), "released late");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["app"], "app1");

    // Once caught up, the same token is served at once.
    let r = c.nodes[1].get("/r").header("cookie", cookie).answer().await;
    assert_eq!(r.headers()["rwproxy-route"], "local");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_waits_in_vain_goes_to_the_primary_or_errors() {
    let c = Cluster::start(2, |config| {
        config.consistency.wait = Duration::from_millis(300)
    })
    .await;
    let r = c.nodes[1].post("/w").body("x").answer().await;
    let token = r.headers()["rwproxy-position"].to_str().unwrap().to_owned();
    let r = c.nodes[1]
        .get("/r")
        .header("rwproxy-position", &token)
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["rwproxy-route"],
        "primary; reason=consistency-timeout"
    );
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["app"], "app0");
    c.stop().await;

    let c = Cluster::start(2, |config| {
        config.consistency.wait = Duration::from_millis(300);
        config.consistency.on_timeout = TimeoutPolicy::Error;
    })
    .await;
    let r = c.nodes[1].post("/w").body("x").answer().await;
    let cookie = txid_cookie(&r);
    let r = c.nodes[1].get("/r").header("cookie", cookie).answer().await;
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["rwproxy-error"], "consistency-timeout");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tokens_are_ignored() {
    let c = Cluster::start(2, |_| {}).await;
    for (name, value) in [
        ("cookie", "__txid=not-hex"),
        ("cookie", "__txid=00000000000000000001"),
        ("rwproxy-position", "app.db=zz"),
        ("rwproxy-position", "garbage,,,"),
    ] {
        let started = Instant::now();
        let r = c.nodes[1].get("/r").header(name, value).answer().await;
        assert_eq!(r.status(), 200, "{value}");
        assert_eq!(r.headers()["rwproxy-route"], "local", "{value}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{value} made the read wait"
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_token_covers_every_database() {
    let c = Cluster::start_with(2, &["app.db", "jobs.db"], |_| {}).await;
    let r = c.nodes[1].post("/w").body("x").answer().await;
    let token = r.headers()["rwproxy-position"].to_str().unwrap().to_owned();
    let (a, j) = (
        c.nodes[0].mount.pos("app.db"),
        c.nodes[0].mount.pos("jobs.db"),
    );
    assert_eq!(token, format!("app.db={a:016x},jobs.db={j:016x}"));
    // Only app.db has replicated: the read must keep waiting for jobs.db.
    c.nodes[1].mount.set_pos("app.db", a);
    let read = tokio::spawn(
        c.nodes[1]
            .get("/r")
            .header("rwproxy-position", &token)
            .answer(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "released before jobs.db caught up");
    c.nodes[1].mount.set_pos("jobs.db", j);
    let r = read.await.unwrap();
    assert_eq!(r.headers()["rwproxy-route"], "local; reason=waited");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_replicas_forward_reject_or_serve_reads() {
    for (policy, status, route) in [
        (StalePolicy::Forward, 200, Some("primary; reason=stale")),
        (StalePolicy::Reject, 503, None),
        (StalePolicy::Serve, 200, Some("local; reason=stale")),
    ] {
        let c = Cluster::start(2, |config| {
            config.reads.max_lag = Duration::from_secs(5);
            config.reads.when_stale = policy;
        })
        .await;
        c.nodes[1].mount.make_replica(&c.nodes[0].name, 6_000);
        c.nodes[1]
            .wait_state("lag to be seen", |s| s.lag == Some(Duration::from_secs(6)))
            .await;
        let r = c.nodes[1].get("/r").answer().await;
        assert_eq!(r.status(), status, "{policy:?}");
        match route {
            Some(route) => assert_eq!(r.headers()["rwproxy-route"], route, "{policy:?}"),
            None => {
                assert_eq!(r.headers()["rwproxy-error"], "stale");
                assert!(r.headers().contains_key("retry-after"));
            }
        }
        // Hysteresis: 4.5 s is under the threshold but above 80% of it: still stale.
        c.nodes[1].mount.make_replica(&c.nodes[0].name, 4_500);
        c.nodes[1]
            .wait_state("lag to be seen", |s| {
                s.lag == Some(Duration::from_millis(4_500))
            })
            .await;
        let r = c.nodes[1].get("/r").answer().await;
        assert_eq!(r.status(), status, "{policy:?} flipped back too early");
        c.nodes[1].mount.make_replica(&c.nodes[0].name, 100);
        eventually(
            Duration::from_secs(5),
            "replica to serve locally again",
            || async {
                let r = c.nodes[1].get("/r").send().await.ok()?;
                (r.headers().get("rwproxy-route")?.to_str().ok()? == "local").then_some(())
            },
        )
        .await;
        c.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_reads_are_capped_and_freed_on_disconnect() {
    let c = Cluster::start(2, |config| {
        config.consistency.max_waiters = 2;
        config.consistency.wait = Duration::from_secs(10);
    })
    .await;
    let r = c.nodes[1].post("/w").body("x").answer().await;
    let cookie = txid_cookie(&r);
    let admin = c.nodes[1].admin_url();
    let waiting = |n: usize| {
        metrics_line(&admin, move |l| {
            l == format!("rwproxy_consistency_waiting {n}")
        })
    };
    let mut readers = Vec::new();
    for _ in 0..2 {
        readers.push(tokio::spawn(
            c.nodes[1].get("/r").header("cookie", &cookie).send(),
        ));
    }
    eventually(Duration::from_secs(5), "two reads waiting", || waiting(2)).await;
    // A third read finds the waiting room full and is served by the primary at once.
    let started = Instant::now();
    let r = c.nodes[1]
        .get("/r")
        .header("cookie", &cookie)
        .answer()
        .await;
    assert_eq!(
        r.headers()["rwproxy-route"],
        "primary; reason=consistency-timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Clients that hang up stop waiting.
    for reader in &readers {
        reader.abort();
    }
    eventually(Duration::from_secs(5), "aborted reads to leave", || {
        waiting(0)
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_ahead_of_the_primary_is_replaced_not_waited_on_forever() {
    let c = Cluster::start(2, |config| {
        config.consistency.wait = Duration::from_millis(300)
    })
    .await;
    let bogus = format!("__txid={:016x}", 1u64 << 40);
    // On the primary: served without a wait, and the cookie is replaced by the primary's
    // position.
    let r = c.nodes[0].get("/r").header("cookie", &bogus).answer().await;
    assert_eq!(consistency_waits(&c.nodes[0].admin_url()).await, 0);
    let fixed = txid_cookie(&r);
    assert_eq!(
        fixed,
        format!("__txid={:016x}", c.nodes[0].mount.pos("app.db"))
    );
    // On a replica: one bounded wait, then the primary serves it and replaces the cookie.
    let r = c.nodes[1].get("/r").header("cookie", &bogus).answer().await;
    assert_eq!(
        r.headers()["rwproxy-route"],
        "primary; reason=consistency-timeout"
    );
    assert_eq!(consistency_waits(&c.nodes[1].admin_url()).await, 1);
    let fixed = txid_cookie(&r);
    let r = c.nodes[1].get("/r").header("cookie", fixed).answer().await;
    assert_eq!(r.headers()["rwproxy-route"], "local");
    // The replaced cookie is one the replica already holds: no second wait.
    assert_eq!(consistency_waits(&c.nodes[1].admin_url()).await, 1);
    c.stop().await;
}

/// How many consistency waits the node behind `admin_url` has finished
/// (`rwproxy_consistency_wait_seconds`' count; 0 before the first).
async fn consistency_waits(admin_url: &str) -> u64 {
    let page = rwproxy_tests::metrics_page(admin_url)
        .await
        .expect("metrics page");
    page.lines()
        .filter(|l| l.starts_with("rwproxy_consistency_wait_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_behind_a_tls_terminating_edge() {
    let c = Cluster::start(2, |_| {}).await;
    let r = c.nodes[1]
        .post("/w")
        .header("x-forwarded-proto", "https")
        .body("x")
        .answer()
        .await;
    let cookie = header_values(r.headers(), "set-cookie");
    assert!(
        cookie
            .iter()
            .any(|c| c.starts_with("__txid=") && c.ends_with("; Secure")),
        "{cookie:?}"
    );
    let r = c.nodes[1].post("/w").body("x").answer().await;
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(!cookie.contains("Secure"), "{cookie}");
    c.stop().await;
}
