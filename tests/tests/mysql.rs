//! The mysql source against real MariaDB: a primary and a GTID replica, each with a small app
//! that reads and writes its own server, each behind its own rwproxy.
//!
//! The tests that need a server skip with a notice when MariaDB is not installed, unless
//! `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rwproxy_core::GtidSet;
use rwproxy_tests::mariadb::{MariaServer, APP_USER, MONITOR_USER, PASSWORD};
use rwproxy_tests::my_cluster::{pair, MyNode};
use rwproxy_tests::sql_scenarios::{
    a_promoted_replica_is_followed, a_stale_replica_honours_tokens, non_servers_give_clear_reasons,
    write_through_a_paused_replica,
};

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
    let before = committed(&primary).await;
    let (token, position) = write_through_a_paused_replica(&replica, &p, &r).await;
    assert_eq!(position, before + 1, "the token covers exactly the write");
    assert_eq!(position, committed(&primary).await);
    a_stale_replica_honours_tokens(
        &mut replica,
        &p,
        &r,
        &token,
        &[
            "gtid=zz",
            "0-1-5",
            "gtid=",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",
        ],
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

    a_promoted_replica_is_followed(&mut primary, &replica, &p, &r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_that_are_not_a_mysql_server_give_clear_reasons() {
    // Needs no MariaDB installed: nothing here is a MySQL server.
    non_servers_give_clear_reasons::<MariaServer>(
        |addr| format!("mysql://{MONITOR_USER}@{addr}"),
        [
            "is it a MySQL or MariaDB server, and is it running?",
            "not a MySQL or MariaDB server",
            "did not finish within",
        ],
    )
    .await;
}
