//! Tokens across an asynchronous failover that lost a tail of writes, against real PostgreSQL:
//! the replica stops receiving WAL, the primary acknowledges a write, the primary stops and the
//! replica is promoted (timeline 2). The lost write's token (timeline 1, past the switch point)
//! is answered `409 token-lost` and counted; a kept write's token is served as before.
//!
//! Skips with a notice when PostgreSQL is not installed, unless `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_cluster::{ClusterHandle, Demand, PostgresSpec, SourceSpec};
use rwproxy_core::timeline::History;
use rwproxy_core::Role;
use rwproxy_tests::pg_cluster::{pair, WAIT};
use rwproxy_tests::{client, eventually, metrics_line, Answer};

/// The token headers of a write's answer: (`rwproxy-position`, `rwproxy-timeline`).
fn token_of(r: &reqwest::Response) -> (String, String) {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} after a write"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    (header("rwproxy-position"), header("rwproxy-timeline"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_of_a_write_lost_in_an_async_failover_is_answered_token_lost() {
    let Some((mut primary, replica, p, r)) = pair(|_| {}).await else {
        return;
    };
    // A watcher of the replica as the superuser: it may read the history file, so it publishes
    // the exact switch point (the nodes' pg_monitor role publishes the one it saw).
    let spec = SourceSpec::Postgres(PostgresSpec {
        url: replica.url("postgres"),
        password_file: None,
        primary: None,
        poll: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        position_key: "wal".into(),
    });
    let watcher = ClusterHandle::start("watcher".into(), spec, Demand::default());

    // Written while the replica streams: kept across the failover.
    let kept = client().post(p.url("/items/kept")).answer().await;
    assert_eq!(kept.status(), 201);
    let (kept_position, kept_timeline) = token_of(&kept);
    assert_eq!(kept_timeline, "00000001");
    r.state_until("replica on timeline 1 with the kept write", |s| {
        s.current_timeline() == Some(1) && s.position("wal") >= Some(lsn_of(&kept_position))
    })
    .await;

    // The replica stops receiving WAL; the primary acknowledges a write the replica never gets.
    replica
        .query_text("ALTER SYSTEM SET primary_conninfo = ''")
        .await;
    replica.query_text("SELECT pg_reload_conf()").await;
    r.state_until("replica cut off", |s| s.primary.is_none())
        .await;
    let lost = client().post(p.url("/items/lost")).answer().await;
    assert_eq!(lost.status(), 201);
    let (lost_position, lost_timeline) = token_of(&lost);
    assert_eq!(lost_timeline, "00000001");
    primary.stop();
    replica.promote();
    r.state_until("promoted on timeline 2", |s| {
        s.role == Role::Primary && s.current_timeline() == Some(2)
    })
    .await;
    // The timeline travels in its own field, not as fake databases beside the position.
    r.state_until("only the WAL position among the positions", |s| {
        s.positions.keys().map(|k| &**k).eq(["wal"])
    })
    .await;

    // The write is not on the new primary, whose position may well pass the lost token's.
    let missing = client().get(r.url("/items/lost")).answer().await;
    assert_eq!(missing.status(), 404, "the write was lost");
    let read = client()
        .get(r.url("/items/lost"))
        .header("rwproxy-position", &lost_position)
        .header("rwproxy-timeline", &lost_timeline)
        .answer()
        .await;
    assert_eq!(read.status(), 409);
    assert_eq!(read.headers()["rwproxy-error"], "token-lost");
    let (fresh_position, fresh_timeline) = token_of(&read);
    assert_eq!(
        fresh_timeline, "00000002",
        "a new token comes with the answer"
    );
    assert!(read
        .text()
        .await
        .unwrap()
        .contains("lost in a database failover"));
    let admin = format!("http://{}", r.node.admin_addr().expect("admin"));
    metrics_line(&admin, |l| l == "rwproxy_tokens_lost_total 1")
        .await
        .expect("the lost token counted");

    // The kept write's token, the new token, and an old token without a timeline are served.
    for (position, timeline) in [
        (kept_position.as_str(), Some(kept_timeline.as_str())),
        (fresh_position.as_str(), Some(fresh_timeline.as_str())),
        (lost_position.as_str(), None),
    ] {
        let mut request = client()
            .get(r.url("/items/kept"))
            .header("rwproxy-position", position);
        if let Some(timeline) = timeline {
            request = request.header("rwproxy-timeline", timeline);
        }
        let read = request.answer().await;
        assert_eq!(read.status(), 200, "{position} {timeline:?}");
    }

    // With the history file readable, the switch point published is PostgreSQL's own.
    let file = replica
        .query_text("SELECT pg_read_file('pg_wal/00000002.history')")
        .await
        .expect("history file");
    let exact = History::parse(2, &file).expect("history parses");
    let mut state = watcher.subscribe();
    eventually(
        WAIT,
        "the watcher publishes the history file's switch point",
        || {
            let published = state.borrow_and_update().timeline.clone();
            let want = exact.clone();
            async move { (published.as_deref() == Some(&want)).then_some(()) }
        },
    )
    .await;
    assert!(exact.switches[0].switch_lsn < lsn_of(&lost_position));
}

/// The LSN of a `wal=<16 hex>` token.
fn lsn_of(position: &str) -> u64 {
    let hex = position.strip_prefix("wal=").expect("one WAL position");
    u64::from_str_radix(hex, 16).expect("hex")
}
