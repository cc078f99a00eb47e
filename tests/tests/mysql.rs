//! The mysql source against real MariaDB: a primary and a GTID replica, each with a small app
//! that reads and writes its own server, each behind its own rwproxy.
//!
//! The tests that need a server skip with a notice when MariaDB is not installed, unless
//! `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rwproxy_core::{GtidSet, Role};
use rwproxy_tests::mariadb::{MariaServer, APP_USER, MONITOR_USER, PASSWORD};
use rwproxy_tests::my_app::MyApp;
use rwproxy_tests::my_cluster::{pair, MyNode};
use rwproxy_tests::pg_cluster::WAIT;
use rwproxy_tests::{client, eventually, free_port, metrics_line, Answer};
use tokio::net::TcpListener;

/// The `rwproxy-position` value of a response, checked to be `gtid=<16 hex digits>` and to
/// match the `__txid` cookie.
fn token_of(r: &reqwest::Response) -> (String, u64) {
    let header = r
        .headers()
        .get("rwproxy-position")
        .expect("a token after a write")
        .to_str()
        .unwrap()
        .to_owned();
    let hex = header.strip_prefix("gtid=").expect("one GTID position");
    let position = u64::from_str_radix(hex, 16).expect("hex");
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__txid="))
        .expect("cookie");
    assert!(cookie.starts_with(&format!("__txid={hex};")), "{cookie}");
    (header, position)
}

/// How many transactions the server's `gtid_current_pos` holds.
async fn committed(server: &MariaServer) -> u64 {
    let text = server.text("SELECT @@gtid_current_pos").await.unwrap();
    GtidSet::parse(&text).expect("a GTID position").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_its_writes_by_gtid_and_a_stopped_sql_thread_turns_it_stale() {
    let Some((primary, mut replica, p, r)) = pair(|_| {}).await else {
        return;
    };
    replica.exec("STOP SLAVE SQL_THREAD").await;
    let before = committed(&primary).await;
    let write = client().post(r.url("/items/a")).answer().await;
    assert_eq!(write.status(), 201, "a write through the replica");
    let (token, position) = token_of(&write);
    assert!(write
        .text()
        .await
        .unwrap()
        .starts_with(&format!("app-{} wrote", p.name)));
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (1, 0));
    assert_eq!(position, before + 1, "the token covers exactly the write");
    assert_eq!(position, committed(&primary).await);

    // The SQL thread is stopped: without the token the replica's app lacks the row...
    let plain = client().get(r.url("/items/a")).answer().await;
    assert_eq!(plain.status(), 404, "the row is not applied yet");
    // ...and with it the read waits, then follows on_timeout = "error".
    let timed_out = client()
        .get(r.url("/items/a"))
        .header("rwproxy-position", &token)
        .answer()
        .await;
    assert_eq!(timed_out.status(), 504);
    assert_eq!(timed_out.headers()["rwproxy-error"], "consistency-timeout");

    // A stopped SQL thread while the primary wrote: stale, health 503, reads as configured.
    r.health_until("replica lagging", |code, body| {
        code == 503 && body["status"] == "lagging"
    })
    .await;
    let stale_read = client().get(r.url("/items/a")).answer().await;
    assert_eq!(
        stale_read.status(),
        404,
        "when_stale = serve: the app answers"
    );

    // Tokens that are not this source's: ignored (served at once), never a 400 or a wait.
    for bad in [
        "gtid=zz",
        "0-1-5",
        "gtid=",
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
    ] {
        let read = client()
            .get(r.url("/items/a"))
            .header("rwproxy-position", bad)
            .header("cookie", format!("__txid={bad}"))
            .answer()
            .await;
        assert_eq!(read.status(), 404, "{bad:?}: served locally, unwaited");
    }

    // A read with the token waits; starting the SQL thread lets it through.
    let waiting = tokio::spawn(
        client()
            .get(r.url("/items/a"))
            .header("rwproxy-position", token.clone())
            .send(),
    );
    eventually(WAIT, "the read to wait", || async {
        (r.node.waiting_reads() == 1).then_some(())
    })
    .await;
    replica.exec("START SLAVE SQL_THREAD").await;
    let read = waiting.await.unwrap().expect("answer");
    assert_eq!(read.status(), 200);
    assert!(read
        .text()
        .await
        .unwrap()
        .starts_with(&format!("app-{} has a", r.name)));
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
    metrics_line(&admin, |l| l.starts_with("rwproxy_position{db=\"gtid\"} "))
        .await
        .expect("the GTID position as a metric");

    // The replica's server vanishes while a read waits for a token it has not reached: the
    // read ends at consistency.wait with on_timeout, and health names the reason.
    replica.exec("STOP SLAVE SQL_THREAD").await;
    let write = client().post(p.url("/items/b")).answer().await;
    assert_eq!(write.status(), 201);
    let (token, _) = token_of(&write);
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
    let read = waiting.await.unwrap().expect("an answer, not a hang");
    assert_eq!(read.status(), 504);
    assert_eq!(read.headers()["rwproxy-error"], "consistency-timeout");
    r.health_until("the vanished server named", |code, body| {
        code == 503
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("mysql 127.0.0.1:{}:", replica.port)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_primary_stops_writes_and_a_promoted_replica_takes_them_and_is_followed() {
    let Some((mut primary, replica, p, r)) = pair(|_| {}).await else {
        return;
    };
    // A wrong password is a clear reason, never a primary.
    let wrong = format!(
        "mysql://{MONITOR_USER}:not-{PASSWORD}@127.0.0.1:{}",
        primary.port
    );
    let bad = MyNode::start(&wrong, &primary.url(APP_USER), None, |_| {}).await;
    bad.health_until("wrong password reported", |code, body| {
        code == 503
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.contains("Access denied"))
    })
    .await;
    drop(bad);
    // A user without SLAVE MONITOR: the server's own refusal, not "no primary".
    primary
        .exec(&format!("CREATE USER nobody IDENTIFIED BY '{PASSWORD}'"))
        .await;
    let unprivileged =
        MyNode::start(&replica.url("nobody"), &replica.url(APP_USER), None, |_| {}).await;
    unprivileged
        .health_until("the missing privilege reported", |code, body| {
            code == 503
                && body["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains("SLAVE MONITOR"))
        })
        .await;
    drop(unprivileged);

    // A second replica, named to follow whichever node is promoted (cluster.primary), as a
    // DNS name kept by a failover manager would.
    let second = MariaServer::replica_of(&primary, 3).await;
    let s2 = MyNode::start(
        &second.url(MONITOR_USER),
        &second.url(APP_USER),
        Some(&r.name),
        |_| {},
    )
    .await;
    s2.state_until("second replica replicating", |s| s.primary.is_some())
        .await;

    primary.stop();
    // The replicas' IO threads lose their primary: no primary known.
    r.state_until("replica without a primary", |s| s.primary.is_none())
        .await;
    let write = client().post(r.url("/items/lost")).answer().await;
    assert_eq!(write.status(), 503);
    assert_eq!(write.headers()["rwproxy-error"], "no-primary");
    assert!(write.headers().contains_key("retry-after"));
    let (code, body) = r.health().await;
    assert_eq!((code, body["status"].as_str()), (503, Some("no-primary")));
    // The server that vanished under the primary's rwproxy: unknown, with the reason.
    p.health_until("primary's server gone", |code, body| {
        code == 503
            && body["role"] == "unknown"
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with("mysql 127.0.0.1:"))
    })
    .await;
    let refused = client().post(p.url("/items/lost")).answer().await;
    assert_eq!(refused.status(), 503, "no local write on an unknown state");
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (0, 0));

    replica.promote().await;
    r.state_until("promoted replica is primary", |s| s.role == Role::Primary)
        .await;
    let write = client().post(r.url("/items/promoted")).answer().await;
    assert_eq!(write.status(), 201);
    token_of(&write);
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (0, 1));
    let read = client().get(r.url("/items/promoted")).answer().await;
    assert_eq!(read.status(), 200);

    // The failover manager re-points the second replica: it replicates from the promoted
    // server, knows a primary again, and its writes reach the promoted node's app.
    second.exec("STOP SLAVE").await;
    second.follow(replica.port).await;
    s2.state_until("second replica follows the promoted one", |s| {
        s.primary.as_deref() == Some(r.name.as_str()) && s.lag.is_some()
    })
    .await;
    let write = client().post(s2.url("/items/followed")).answer().await;
    assert_eq!(write.status(), 201);
    let (token, _) = token_of(&write);
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
    assert!(read
        .text()
        .await
        .unwrap()
        .starts_with(&format!("app-{} has", s2.name)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_are_not_a_mysql_server_give_clear_reasons() {
    // Needs no MariaDB installed: nothing here is a MySQL server.
    let refused = format!("mysql://{MONITOR_USER}@127.0.0.1:{}", free_port());
    // An HTTP server, not MySQL.
    let http = MyApp::start("http", &refused).await;
    let http_url = format!(
        "mysql://{MONITOR_USER}@{}",
        http.url().trim_start_matches("http://")
    );
    // A server that accepts and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("mysql://{MONITOR_USER}@{}", silent.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    for (url, expect) in [
        (
            refused.clone(),
            "is it a MySQL or MariaDB server, and is it running?",
        ),
        (http_url, "not a MySQL or MariaDB server"),
        (silent_url, "did not finish within"),
    ] {
        let node = MyNode::start(&url, &refused, None, |_| {}).await;
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
