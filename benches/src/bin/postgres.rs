//! Benchmark: what the PostgreSQL source costs, on real PostgreSQL (a primary and a streaming
//! replica); the parts are described in `rwproxy_benches::sql_source`. The token query is
//! `SELECT pg_current_wal_insert_lsn()`; apply is paused with `pg_wal_replay_pause()`; polls are
//! counted by logging every statement (`log_min_duration_statement = 0`) for the window.
//!
//! Run: `cargo run -p rwproxy-benches --bin postgres [-- WRITES [WAITERS]]` (needs PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_tests::pg_cluster::pair;

/// A long `consistency.wait`: the waiting reads must outlast the measurement window.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    rwproxy_benches::sql_source::run(pair(|c| c.consistency.wait = Duration::from_secs(60)).await)
        .await;
}
