//! Benchmark: what the PostgreSQL source costs, on real PostgreSQL (a primary and a streaming
//! replica); the parts are described in `rwproxy_benches::sql_source`. The token query is
//! `SELECT pg_current_wal_insert_lsn()`; apply is paused with `pg_wal_replay_pause()`; polls are
//! counted by logging every statement (`log_min_duration_statement = 0`) for the window.
//!
//! Run: `cargo run -p rwproxy-benches --bin postgres [-- WRITES [WAITERS]]` (needs PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_benches::sql_source::{sizes, token_cost, waiting_reads};
use rwproxy_tests::pg_cluster::pair;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (writes, waiters) = sizes();
    let Some((primary, replica, p, r)) =
        pair(|c| c.consistency.wait = Duration::from_secs(60)).await
    else {
        eprintln!("PostgreSQL is not installed");
        return;
    };
    token_cost(&primary, &p, writes).await;
    waiting_reads(&replica, &p, &r, waiters).await;
}
