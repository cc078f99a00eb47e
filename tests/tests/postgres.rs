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
use rwproxy_tests::pg_cluster::{pair, PgNode, WAIT};
use rwproxy_tests::postgres::{lsn, PgServer, MONITOR_USER, PASSWORD};
use rwproxy_tests::sql_scenarios::{
    a_promoted_replica_is_followed, a_stale_replica_honours_tokens, non_servers_give_clear_reasons,
    write_through_a_paused_replica,
};
use rwproxy_tests::{client, eventually, Answer};

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

    let before = lsn(&primary
        .query_text("SELECT pg_current_wal_insert_lsn()")
        .await
        .unwrap());
    let (token, position) = write_through_a_paused_replica(&replica, &p, &r).await;
    let after = lsn(&primary
        .query_text("SELECT pg_current_wal_insert_lsn()")
        .await
        .unwrap());
    assert!(
        before < position && position <= after,
        "{before} < {position} <= {after}"
    );
    a_stale_replica_honours_tokens(
        &mut replica,
        &p,
        &r,
        &token,
        &["wal=zz", "wal=", "0/16B3748"],
    )
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

    a_promoted_replica_is_followed(&mut primary, &replica, &p, &r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_are_not_a_postgres_server_give_clear_reasons() {
    // Needs no PostgreSQL installed: nothing here is a PostgreSQL server.
    non_servers_give_clear_reasons::<PgServer>(
        |addr| format!("postgres://{MONITOR_USER}@{addr}/postgres"),
        [
            "error connecting to server",
            "not a PostgreSQL server",
            "did not finish within",
        ],
    )
    .await;
}
