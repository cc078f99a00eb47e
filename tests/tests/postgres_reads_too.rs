//! `consistency.session = "reads-too"` on a PostgreSQL replica: the token a read earns covers
//! what the read saw, even when the last poll is older. The history checker found monotonic
//! reads broken against Patroni because a replica's token came from the last poll
//! (docs/guarantees.md, "What it found"); this pins it down deterministically: the replica's
//! rwproxy polls once a minute, so its polled position stays behind a write it has replayed.
//!
//! Skips (with a notice) without PostgreSQL, unless `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy::config::SourceConfig;
use rwproxy_http::SessionMode;
use rwproxy_tests::pg_cluster::{pair, WAIT};
use rwproxy_tests::{client, eventually, Answer as _};

/// The LSN of a response's `rwproxy-position` (`wal=<16 hex digits>`).
fn lsn_of(r: &reqwest::Response) -> u64 {
    let header = r.headers()["rwproxy-position"].to_str().unwrap();
    let hex = header.rsplit('=').next().unwrap();
    u64::from_str_radix(hex, 16).unwrap()
}

/// `X/Y` as PostgreSQL prints an LSN.
fn parse_pg_lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap();
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_read_earns_a_token_covering_what_it_saw() {
    let Some((_primary, replica, p, r)) = pair(|c| {
        c.consistency.session = SessionMode::ReadsToo;
        if let SourceConfig::Postgres { poll, .. } = &mut c.cluster.source {
            *poll = Duration::from_secs(60);
        }
    })
    .await
    else {
        return;
    };
    let write = client().post(p.url("/items/seen")).answer().await;
    assert_eq!(write.status(), 201);
    let written = lsn_of(&write);
    // The replica's server has replayed the write; its rwproxy has not polled since.
    eventually(WAIT, "the replica replays the write", || async {
        let text = replica
            .query_text("SELECT pg_last_wal_replay_lsn()::text")
            .await?;
        (parse_pg_lsn(&text) >= written).then_some(())
    })
    .await;
    let read = client().get(r.url("/items/seen")).answer().await;
    assert_eq!(read.status(), 200, "the replica's app sees the write");
    let token = lsn_of(&read);
    assert!(
        token >= written,
        "the read saw the write at {written:X} but its token says {token:X}"
    );
}
