//! Benchmark: what the mysql source costs, on real MariaDB (a primary and a GTID replica); the
//! parts are described in `rwproxy_benches::sql_source`. The token query is
//! `SELECT @@gtid_current_pos`; apply is paused with `STOP SLAVE SQL_THREAD`; polls are counted
//! by `Com_show_slave_status` (one per poll).
//!
//! Run: `cargo run -p rwproxy-benches --bin mysql [-- WRITES [WAITERS]]` (needs MariaDB).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy_tests::my_cluster::pair;

/// A long `consistency.wait`: the waiting reads must outlast the measurement window.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    rwproxy_benches::sql_source::run(pair(|c| c.consistency.wait = Duration::from_secs(60)).await)
        .await;
}
