//! Benchmark: what the mysql source costs, on real MariaDB (a primary and a GTID replica on
//! loopback, a small app per server, an rwproxy per app; see tests/src/my_cluster.rs).
//!
//! Part 1, the token: the extra latency of a write answered by the primary's app, measured as
//! the median of sequential `POST`s through the primary's rwproxy (mysql source: one
//! `SELECT @@gtid_current_pos` after the app answers) minus the median through a second rwproxy
//! in front of the same app with the static source (no token), interleaved; plus the median of
//! that query alone on one connection.
//! Part 2, 1,000 reads waiting for a token: the replica's SQL thread is stopped, 1,000 HTTP
//! reads with the token wait; rwproxy's polls are counted on the replica server for 5 s
//! (`Com_show_slave_status`, one per poll; the same for 5 s without waiters), with this
//! process's CPU over those 5 s; then the SQL thread starts, and the release of every read by
//! rwproxy and the answers are timed.
//!
//! Run: `cargo run -p rwproxy-benches --bin mysql [-- WRITES [WAITERS]]` (needs MariaDB).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable as _;
use rwproxy::config::SourceConfig;
use rwproxy_benches::{process_cpu, quantile};
use rwproxy_tests::mariadb::{MariaServer, APP_USER, MONITOR_USER};
use rwproxy_tests::my_cluster::{pair, MyNode};
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
        eprintln!("MariaDB is not installed");
        return;
    };
    token_cost(&primary, &p, writes).await;
    waiting_reads(&replica, &p, &r, waiters).await;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    quantile(&samples, 0.5)
}

async fn token_cost(primary: &MariaServer, p: &MyNode, writes: usize) {
    let plain = MyNode::start(
        &primary.url(MONITOR_USER),
        &primary.url(APP_USER),
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
    let opts = mysql_async::Opts::from_url(&primary.url(MONITOR_USER)).unwrap();
    let mut db = mysql_async::Conn::new(opts).await.unwrap();
    let mut query = Vec::new();
    for _ in 0..writes {
        let start = Instant::now();
        let _: Option<String> = db.query_first("SELECT @@gtid_current_pos").await.unwrap();
        query.push(start.elapsed());
    }
    let (a, b) = (median(with_token), median(without));
    println!(
        "token: {writes} writes each; median POST with token {a:?}, without {b:?}, \
         difference {:?}; median SELECT @@gtid_current_pos round trip {:?}",
        a.saturating_sub(b),
        median(query)
    );
}

/// How many `SHOW SLAVE STATUS` (one per rwproxy poll) the server runs in `WINDOW`.
async fn polls_in_window(server: &MariaServer) -> u64 {
    let count = || async {
        server
            .text("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'COM_SHOW_SLAVE_STATUS'")
            .await
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = count().await;
    tokio::time::sleep(WINDOW).await;
    count().await - before
}

async fn waiting_reads(replica: &MariaServer, p: &MyNode, r: &MyNode, waiters: usize) {
    let idle = polls_in_window(replica).await;
    replica.exec("STOP SLAVE SQL_THREAD").await;
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
    let per_second = |n: u64| n as f64 / WINDOW.as_secs_f64();
    let resumed = Instant::now();
    replica.exec("START SLAVE SQL_THREAD").await;
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
         idle), process CPU {cpu:?} per {WINDOW:?} (client, apps and proxies); after START SLAVE \
         SQL_THREAD: all released by rwproxy within {released:?}; answers (the app queries its \
         server) first / p50 / p99 / last {:?} / {:?} / {:?} / {:?}",
        per_second(polls),
        per_second(idle),
        done[0],
        quantile(&done, 0.5),
        quantile(&done, 0.99),
        done[done.len() - 1]
    );
}
