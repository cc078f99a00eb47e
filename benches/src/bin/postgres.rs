//! Benchmark: what the PostgreSQL source costs, on real PostgreSQL (a primary and a streaming
//! replica on loopback, a small app per server, an rwproxy per app; see tests/src/pg_cluster.rs).
//!
//! Part 1, the token: the extra latency of a write answered by the primary's app, measured as
//! the median of sequential `POST`s through the primary's rwproxy (postgres source: one
//! `SELECT pg_current_wal_insert_lsn()` after the app answers) minus the median through a second
//! rwproxy in front of the same app with the static source (no token), interleaved; plus the
//! median of that query alone on one connection.
//! Part 2, 1,000 reads waiting for a token: replay is paused on the replica, 1,000 HTTP reads with
//! the token wait; the replica server logs every statement for 5 s and rwproxy's poll queries
//! are counted (the same for 5 s without waiters), with this process's CPU over those 5 s; then
//! replay resumes, and the release of every read by rwproxy and the answers are timed.
//!
//! Run: `cargo run -p rwproxy-benches --bin postgres [-- WRITES [WAITERS]]` (needs PostgreSQL).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use rwproxy::config::SourceConfig;
use rwproxy_benches::{process_cpu, quantile};
use rwproxy_tests::pg_cluster::{pair, PgNode};
use rwproxy_tests::postgres::{PgServer, MONITOR_USER};
use rwproxy_tests::{client, eventually, Answer};

const WINDOW: Duration = Duration::from_secs(5);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (writes, waiters) = (arg(1, 300), arg(2, 1000));
    let Some((primary, replica, p, r)) =
        pair(|c| c.consistency.wait = Duration::from_secs(60)).await
    else {
        eprintln!("PostgreSQL is not installed");
        return;
    };
    token_cost(&primary, &p, writes).await;
    waiting_reads(&replica, &p, &r, waiters).await;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    quantile(&samples, 0.5)
}

async fn token_cost(primary: &PgServer, p: &PgNode, writes: usize) {
    let plain = PgNode::start(
        &primary.url(MONITOR_USER),
        &primary.url("postgres"),
        None,
        |c| {
            c.cluster.source = SourceConfig::Static {
                primary: c.node.clone(),
            }
        },
    )
    .await;
    let http = client();
    let (mut with_token, mut without) = (Vec::new(), Vec::new());
    for i in 0..writes {
        for (node, samples) in [(p, &mut with_token), (&plain, &mut without)] {
            let start = Instant::now();
            let r = http
                .post(node.url(&format!("/items/w-{}-{i}", node.name)))
                .answer()
                .await;
            assert_eq!(r.status(), 201);
            samples.push(start.elapsed());
        }
    }
    let db = primary.connect(MONITOR_USER).await;
    let mut query = Vec::new();
    for _ in 0..writes {
        let start = Instant::now();
        db.simple_query("SELECT pg_current_wal_insert_lsn()")
            .await
            .unwrap();
        query.push(start.elapsed());
    }
    let (a, b) = (median(with_token), median(without));
    println!(
        "token: {writes} writes each; median POST with token {a:?}, without {b:?}, \
         difference {:?}; median pg_current_wal_insert_lsn() round trip {:?}",
        a.saturating_sub(b),
        median(query)
    );
}

/// How many of rwproxy's poll queries the server runs in `WINDOW`: every statement is logged
/// (`log_min_duration_statement = 0`) for the window, and the poll's lines are counted.
async fn polls_in_window(server: &PgServer) -> usize {
    let count = || {
        std::fs::read_to_string(server.log_path())
            .unwrap_or_default()
            .matches("pg_stat_wal_receiver")
            .count()
    };
    let before = count();
    server
        .query_text("ALTER SYSTEM SET log_min_duration_statement = 0")
        .await;
    server.query_text("SELECT pg_reload_conf()").await;
    tokio::time::sleep(WINDOW).await;
    server
        .query_text("ALTER SYSTEM RESET log_min_duration_statement")
        .await;
    server.query_text("SELECT pg_reload_conf()").await;
    count() - before
}

async fn waiting_reads(replica: &PgServer, p: &PgNode, r: &PgNode, waiters: usize) {
    let idle = polls_in_window(replica).await;
    replica.query_text("SELECT pg_wal_replay_pause()").await;
    let write = client().post(p.url("/items/waited-for")).answer().await;
    let token = write.headers()["rwproxy-position"]
        .to_str()
        .unwrap()
        .to_owned();
    let http = client();
    let mut reads = Vec::new();
    for _ in 0..waiters {
        let request = http
            .get(r.url("/items/waited-for"))
            .header("rwproxy-position", &token)
            .send();
        reads.push(tokio::spawn(async move {
            let answer = request.await.expect("answer");
            (answer.status().as_u16(), Instant::now())
        }));
    }
    eventually(Duration::from_secs(60), "every read waiting", || async {
        (r.node.waiting_reads() == waiters).then_some(())
    })
    .await;
    let cpu0 = process_cpu();
    let polls = polls_in_window(replica).await;
    let cpu = process_cpu().saturating_sub(cpu0);
    let per_second = |n: usize| n as f64 / WINDOW.as_secs_f64();
    let admin = replica.connect("postgres").await;
    let resumed = Instant::now();
    admin
        .simple_query("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    eventually(Duration::from_secs(60), "every read released", || async {
        (r.node.waiting_reads() == 0).then_some(())
    })
    .await;
    let released = resumed.elapsed();
    let mut done = Vec::new();
    for read in reads {
        let (status, at) = read.await.unwrap();
        assert_eq!(status, 200);
        done.push(at.saturating_duration_since(resumed));
    }
    done.sort();
    println!(
        "{waiters} waiting reads: replica server runs {:.0} polls/s while they wait ({:.0}/s \
         idle), process CPU {cpu:?} per {WINDOW:?} (client, apps and proxies); after resume: \
         all released by rwproxy within {released:?}; answers (the app queries its server) \
         first / p50 / p99 / last {:?} / {:?} / {:?} / {:?}",
        per_second(polls),
        per_second(idle),
        done[0],
        quantile(&done, 0.5),
        quantile(&done, 0.99),
        done[done.len() - 1]
    );
}
