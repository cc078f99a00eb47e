//! The scenarios the PostgreSQL and MariaDB source tests share, written once over
//! [`SqlServer`]: what differs between the databases (how replay is paused, how a replica is
//! promoted and re-pointed, the token's database name, the health problem's wording) is the
//! server's; what rwproxy must do about it is the same.

use tokio::net::TcpListener;

use crate::sql_node::{SqlNode, WAIT};
use crate::sql_server::SqlServer;
use crate::{client, eventually, metrics_line, Answer};

/// A node in front of a server of kind `S`.
pub type NodeOf<S> = SqlNode<<S as SqlServer>::Store>;

/// The `rwproxy-position` value of a response and its position, checked to be one
/// `S::POSITION_DB=<16 hex digits>` that the `__txid` cookie repeats.
pub fn token_of<S: SqlServer>(r: &reqwest::Response) -> (String, u64) {
    let header = r
        .headers()
        .get("rwproxy-position")
        .expect("a token after a write")
        .to_str()
        .expect("ASCII token")
        .to_owned();
    let hex = header
        .strip_prefix(&format!("{}=", S::POSITION_DB))
        .unwrap_or_else(|| panic!("one {} position: {header}", S::POSITION_DB));
    let position = u64::from_str_radix(hex, 16).expect("hex");
    let cookie = crate::header_values(r.headers(), "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("__txid="))
        .expect("cookie");
    assert!(cookie.starts_with(&format!("__txid={hex};")), "{cookie}");
    (header, position)
}

/// With apply paused on `replica`, writes `/items/a` through the replica's node `r`: the
/// primary's app `p` takes it; answers the token and its position.
pub async fn write_through_a_paused_replica<S: SqlServer>(
    replica: &S,
    p: &NodeOf<S>,
    r: &NodeOf<S>,
) -> (String, u64) {
    replica.pause_apply().await;
    let write = client().post(r.url("/items/a")).answer().await;
    assert_eq!(write.status(), 201, "a write through the replica");
    let token = token_of::<S>(&write);
    let body = write.text().await.expect("body");
    assert!(body.starts_with(&format!("app-{} wrote", p.name)), "{body}");
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (1, 0));
    token
}

/// Continues [`write_through_a_paused_replica`]: the replica is stale and its app lacks the
/// row; a read with the token times out, a read without serves the stale row (`when_stale =
/// "serve"`), tokens of other sources are ignored; a read with the token waits until apply
/// resumes; then the replica's server vanishes while a read waits, which ends at
/// `consistency.wait` and is named in health.
pub async fn a_stale_replica_honours_tokens<S: SqlServer>(
    replica: &mut S,
    p: &NodeOf<S>,
    r: &NodeOf<S>,
    token: &str,
    foreign_tokens: &[&str],
) {
    let plain = client().get(r.url("/items/a")).answer().await;
    assert_eq!(plain.status(), 404, "the row is not applied yet");
    let timed_out = client()
        .get(r.url("/items/a"))
        .header("rwproxy-position", token)
        .answer()
        .await;
    assert_eq!(timed_out.status(), 504);
    assert_eq!(timed_out.headers()["rwproxy-error"], "consistency-timeout");

    // Apply paused while the primary wrote: stale, health 503, reads served as configured.
    r.health_until("replica lagging", |code, body| {
        code == 503 && body["status"] == "lagging"
    })
    .await;
    let stale_read = client().get(r.url("/items/a")).answer().await;
    assert_eq!(
        stale_read.status(),
        404,
        "when_stale = serve: the local app answers"
    );

    // Tokens that are not this source's: ignored (served at once), never a 400 or a wait.
    for bad in foreign_tokens {
        let read = client()
            .get(r.url("/items/a"))
            .header("rwproxy-position", *bad)
            .header("cookie", format!("__txid={bad}"))
            .answer()
            .await;
        assert_eq!(read.status(), 404, "{bad:?}: served locally, unwaited");
    }

    // A read with the token waits; resuming apply lets it through.
    let waiting = tokio::spawn(
        client()
            .get(r.url("/items/a"))
            .header("rwproxy-position", token)
            .send(),
    );
    eventually(WAIT, "the read to wait", || async {
        (r.node.waiting_reads() == 1).then_some(())
    })
    .await;
    replica.resume_apply().await;
    let read = waiting.await.expect("task").expect("answer");
    assert_eq!(read.status(), 200);
    let body = read.text().await.expect("body");
    assert!(body.starts_with(&format!("app-{} has a", r.name)), "{body}");
    r.health_until("replica fresh again", |code, body| {
        code == 200 && body["status"] == "ok"
    })
    .await;
    assert_eq!(
        p.app.reads_seen(),
        0,
        "every read was served by the replica"
    );
    let admin = format!("http://{}", r.node.admin_addr().expect("admin"));
    let metric = format!("rwproxy_position{{db=\"{}\"}} ", S::POSITION_DB);
    metrics_line(&admin, |l| l.starts_with(&metric))
        .await
        .expect("the position as a metric");

    // The replica's server vanishes while a read waits for a token it has not reached: the
    // read ends at consistency.wait with on_timeout, and health names the reason.
    replica.pause_apply().await;
    let write = client().post(p.url("/items/b")).answer().await;
    assert_eq!(write.status(), 201);
    let (token, _) = token_of::<S>(&write);
    let waiting = tokio::spawn(
        client()
            .get(r.url("/items/b"))
            .header("rwproxy-position", token)
            .send(),
    );
    eventually(WAIT, "the read to wait", || async {
        (r.node.waiting_reads() == 1).then_some(())
    })
    .await;
    replica.stop();
    let read = waiting.await.expect("task").expect("an answer, not a hang");
    assert_eq!(read.status(), 504);
    assert_eq!(read.headers()["rwproxy-error"], "consistency-timeout");
    let prefix = replica.problem_prefix();
    r.health_until("the vanished server named", |code, body| {
        code == 503
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with(&prefix))
    })
    .await;
}

/// The primary's server is lost: every node stops writes with a retryable 503 and health says
/// why; the replica is promoted and takes writes; a second replica, named to follow whichever
/// node is promoted (`cluster.primary`, as a DNS name kept by a failover manager would), is
/// re-pointed, follows it, and reads its own writes across the change.
pub async fn a_promoted_replica_is_followed<S: SqlServer>(
    primary: &mut S,
    replica: &S,
    p: &NodeOf<S>,
    r: &NodeOf<S>,
) {
    let second = S::second_replica(primary).await;
    let s2 = NodeOf::<S>::start(
        &second.monitor_url(),
        &second.app_url(),
        Some(&r.name),
        |_| {},
    )
    .await;
    s2.state_until("second replica replicating", |s| s.primary.is_some())
        .await;

    primary.stop();
    // The replicas lose their primary: no primary known.
    r.state_until("replica without a primary", |s| s.primary.is_none())
        .await;
    s2.state_until("second replica without a primary", |s| s.primary.is_none())
        .await;
    let write = client().post(r.url("/items/lost")).answer().await;
    assert_eq!(write.status(), 503);
    assert_eq!(write.headers()["rwproxy-error"], "no-primary");
    assert!(write.headers().contains_key("retry-after"));
    let (code, body) = r.health().await;
    assert_eq!((code, body["status"].as_str()), (503, Some("no-primary")));
    // The server that vanished under the primary's rwproxy: unknown, with the reason.
    let prefix = primary.problem_prefix();
    p.health_until("primary's server gone", |code, body| {
        code == 503
            && body["role"] == "unknown"
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with(&prefix))
    })
    .await;
    let refused = client().post(p.url("/items/lost")).answer().await;
    assert_eq!(refused.status(), 503, "no local write on an unknown state");
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (0, 0));

    replica.promote().await;
    r.state_until("promoted replica is primary", |s| {
        s.role == rwproxy_core::Role::Primary
    })
    .await;
    let write = client().post(r.url("/items/promoted")).answer().await;
    assert_eq!(write.status(), 201);
    token_of::<S>(&write);
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (0, 1));
    let read = client().get(r.url("/items/promoted")).answer().await;
    assert_eq!(read.status(), 200);

    // The failover manager re-points the second replica: it replicates from the promoted
    // server, knows a primary again, and its writes reach the promoted node's app.
    second.follow(replica).await;
    s2.state_until("second replica follows the promoted one", |s| {
        s.primary.as_deref() == Some(r.name.as_str()) && s.lag.is_some()
    })
    .await;
    let write = client().post(s2.url("/items/followed")).answer().await;
    assert_eq!(write.status(), 201);
    let (token, _) = token_of::<S>(&write);
    assert_eq!(
        (
            p.app.writes_seen(),
            r.app.writes_seen(),
            s2.app.writes_seen()
        ),
        (0, 2, 0)
    );
    let read = client()
        .get(s2.url("/items/followed"))
        .header("rwproxy-position", token)
        .answer()
        .await;
    assert_eq!(read.status(), 200, "read-your-writes after the failover");
    let body = read.text().await.expect("body");
    assert!(body.starts_with(&format!("app-{} has", s2.name)), "{body}");
}

/// Nodes whose `cluster.url` is not a server of kind `S` (nothing listening, an HTTP server, a
/// server that accepts and never speaks) report `unknown` with a problem containing the
/// matching `expect`ed words and refuse writes. `url_at(addr)` is the source's URL for a
/// server at `addr` (`127.0.0.1:PORT`). Needs no server installed.
pub async fn non_servers_give_clear_reasons<S: SqlServer>(
    url_at: impl Fn(&str) -> String,
    expect: [&str; 3],
) {
    let refused = url_at(&format!("127.0.0.1:{}", crate::free_port()));
    let http = crate::items_app::ItemsApp::<S::Store>::start("http", &refused).await;
    let http_url = url_at(http.url().trim_start_matches("http://"));
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_url = url_at(&silent.local_addr().expect("addr").to_string());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    for (url, expect) in [refused.clone(), http_url, silent_url]
        .into_iter()
        .zip(expect)
    {
        let node = NodeOf::<S>::start(&url, &refused, None, |_| {}).await;
        node.health_until(&format!("reason for {url}"), |code, body| {
            code == 503
                && body["status"] == "unknown"
                && body["problem"].as_str().is_some_and(|p| p.contains(expect))
        })
        .await;
        let write = client().post(node.url("/items/x")).answer().await;
        assert_eq!(write.status(), 503, "{url}");
    }
}
