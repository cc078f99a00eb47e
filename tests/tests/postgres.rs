//! The PostgreSQL source against real PostgreSQL: a primary and a streaming replica
//! (`pg_basebackup -R`), each with a small app that reads and writes its own server, each behind
//! its own rwproxy.
//!
//! The tests that need a server skip with a notice when PostgreSQL is not installed, unless
//! `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_cluster::{ClusterHandle, Demand, PostgresSpec, SourceSpec};
use rwproxy_core::Role;
use rwproxy_tests::pg_app::PgApp;
use rwproxy_tests::pg_cluster::{pair, PgNode, WAIT};
use rwproxy_tests::postgres::{lsn, PgServer, MONITOR_USER, PASSWORD};
use rwproxy_tests::{client, eventually, free_port, metrics_line, Answer};
use tokio::net::TcpListener;

/// The `rwproxy-position` value of a response, checked to be `wal=<16 hex digits>`.
fn token_of(r: &reqwest::Response) -> (String, u64) {
    let header = r
        .headers()
        .get("rwproxy-position")
        .expect("a token after a write")
        .to_str()
        .unwrap()
        .to_owned();
    let hex = header.strip_prefix("wal=").expect("one WAL position");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_reads_its_writes_by_lsn_and_paused_replay_turns_it_stale() {
    let Some((primary, mut replica, p, r)) = pair(|_| {}).await else {
        return;
    };
    // The replica's own name for its primary is the WAL receiver's sender_host.
    let spec = SourceSpec::Postgres(PostgresSpec {
        url: replica.url(MONITOR_USER),
        password_file: None,
        primary: None,
        poll: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        position_key: "wal".into(),
    });
    let handle = ClusterHandle::start("watcher".into(), spec, Demand::default());
    let mut state = handle.subscribe();
    let seen = eventually(WAIT, "sender_host as primary", || {
        let s = state.borrow_and_update().clone();
        async move { s.primary.filter(|_| s.role == Role::Replica) }
    })
    .await;
    assert_eq!(&*seen, "127.0.0.1");
    drop(handle);
    // A role without pg_monitor cannot see the WAL receiver: a clear problem, not "no primary".
    primary
        .query_text(&format!("CREATE ROLE nobody LOGIN PASSWORD '{PASSWORD}'"))
        .await;
    let spec = SourceSpec::Postgres(PostgresSpec {
        url: replica.url("nobody"),
        password_file: None,
        primary: None,
        poll: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        position_key: "wal".into(),
    });
    let handle = ClusterHandle::start("watcher".into(), spec, Demand::default());
    let mut state = handle.subscribe();
    let problem = eventually(WAIT, "the missing privilege reported", || {
        let s = state.borrow_and_update().clone();
        async move { s.problem.filter(|p| p.contains("pg_monitor")) }
    })
    .await;
    assert!(
        problem.contains("cannot read pg_stat_wal_receiver"),
        "{problem}"
    );
    drop(handle);

    replica.query_text("SELECT pg_wal_replay_pause()").await;
    let before = lsn(&primary
        .query_text("SELECT pg_current_wal_insert_lsn()")
        .await
        .unwrap());
    let write = client().post(r.url("/items/a")).answer().await;
    assert_eq!(write.status(), 201, "a write through the replica");
    let (token, position) = token_of(&write);
    assert!(write
        .text()
        .await
        .unwrap()
        .starts_with(&format!("app-{} wrote", p.name)));
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (1, 0));
    let after = lsn(&primary
        .query_text("SELECT pg_current_wal_insert_lsn()")
        .await
        .unwrap());
    assert!(
        before < position && position <= after,
        "{before} < {position} <= {after}"
    );

    // Replay is paused: without the token the replica's app does not have the row...
    let plain = client().get(r.url("/items/a")).answer().await;
    assert_eq!(plain.status(), 404, "the row is not replayed yet");
    // ...and with it the read waits, then follows on_timeout = "error".
    let timed_out = client()
        .get(r.url("/items/a"))
        .header("rwproxy-position", &token)
        .answer()
        .await;
    assert_eq!(timed_out.status(), 504);
    assert_eq!(timed_out.headers()["rwproxy-error"], "consistency-timeout");

    // Paused replay while the primary wrote: stale, health 503, reads served as configured.
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

    // A read with the token waits; resuming replay lets it through.
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
    replica.query_text("SELECT pg_wal_replay_resume()").await;
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
    metrics_line(&admin, |l| l.starts_with("rwproxy_position{db=\"wal\"} "))
        .await
        .expect("the WAL position as a metric");

    // The replica's server disappears while a read waits for a token it has not reached: the
    // read ends at consistency.wait with on_timeout, and health names the reason.
    replica.query_text("SELECT pg_wal_replay_pause()").await;
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
                .is_some_and(|p| p.starts_with(&format!("postgres 127.0.0.1:{}/", replica.port)))
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
        "postgres://{MONITOR_USER}:not-{PASSWORD}@127.0.0.1:{}/postgres",
        primary.port
    );
    let bad = PgNode::start(&wrong, &primary.url("postgres"), None, |_| {}).await;
    bad.health_until("wrong password reported", |code, body| {
        code == 503
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.contains("password authentication failed"))
    })
    .await;
    // A write there says the source is the problem (the details stay in /health and the log).
    let write = client().post(bad.url("/items/never")).answer().await;
    assert_eq!(write.status(), 503);
    assert_eq!(write.headers()["rwproxy-error"], "no-primary");
    let body = write.text().await.unwrap();
    assert!(body.contains("cluster state source fails"), "{body}");
    assert!(!body.contains("password"), "{body}");

    // A second replica, named to follow whichever node is promoted (cluster.primary), as a
    // DNS name kept by a failover manager would.
    let second = PgServer::replica_of(&primary);
    let s2 = PgNode::start(
        &second.url(MONITOR_USER),
        &second.url("postgres"),
        Some(&r.name),
        |_| {},
    )
    .await;
    s2.state_until("second replica streaming", |s| s.primary.is_some())
        .await;

    primary.stop();
    // The replicas' receivers stop: no primary known.
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
    // The server that disappeared under the primary's rwproxy: unknown, with the reason.
    p.health_until("primary's server gone", |code, body| {
        code == 503
            && body["role"] == "unknown"
            && body["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with("postgres 127.0.0.1:"))
    })
    .await;
    let refused = client().post(p.url("/items/lost")).answer().await;
    assert_eq!(refused.status(), 503, "no local write on an unknown state");
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (0, 0));

    replica.promote();
    r.state_until("promoted replica is primary", |s| s.role == Role::Primary)
        .await;
    let write = client().post(r.url("/items/promoted")).answer().await;
    assert_eq!(write.status(), 201);
    token_of(&write);
    assert_eq!((p.app.writes_seen(), r.app.writes_seen()), (0, 1));
    let read = client().get(r.url("/items/promoted")).answer().await;
    assert_eq!(read.status(), 200);

    // The failover manager re-points the second replica: it streams from the promoted server
    // (a new timeline), knows a primary again, and its writes reach the promoted node's app.
    second
        .query_text(&format!(
            "ALTER SYSTEM SET primary_conninfo = \
             'host=127.0.0.1 port={} user=postgres password={PASSWORD}'",
            replica.port
        ))
        .await;
    second.query_text("SELECT pg_reload_conf()").await;
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
    assert_eq!(
        read.status(),
        200,
        "read-your-writes across the new timeline"
    );
    assert!(read
        .text()
        .await
        .unwrap()
        .starts_with(&format!("app-{} has", s2.name)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_are_not_a_postgres_server_give_clear_reasons() {
    // Needs no PostgreSQL installed: nothing here is a PostgreSQL server.
    // Nothing listens.
    let refused = format!(
        "postgres://{MONITOR_USER}@127.0.0.1:{}/postgres",
        free_port()
    );
    // An HTTP server, not PostgreSQL.
    let http = PgApp::start("http", &refused).await;
    let http_url = format!(
        "postgres://{MONITOR_USER}@{}/postgres",
        http.url().trim_start_matches("http://")
    );
    // A server that accepts and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!(
        "postgres://{MONITOR_USER}@{}/postgres",
        silent.local_addr().unwrap()
    );
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    for (url, expect) in [
        (refused, "error connecting to server"),
        (http_url, "not a PostgreSQL server"),
        (silent_url, "did not finish within"),
    ] {
        let node = PgNode::start(&url, "postgres://u@127.0.0.1:1/x", None, |_| {}).await;
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
