//! The benchmark of a SQL database source, written once for PostgreSQL (`bin/postgres.rs`) and
//! MariaDB (`bin/mysql.rs`) over [`SourceBench`]: a primary and a replica on loopback, the
//! items app per server, an rwproxy per app (`rwproxy_tests::pg_cluster` / `my_cluster`).
//!
//! Part 1, the token: the extra latency of a write answered by the primary's app, measured as
//! the median of sequential `POST`s through the primary's rwproxy (the source runs its token
//! query after the app answers) minus the median through a second rwproxy in front of the same
//! app with the static source (no token), interleaved; plus the median of that query alone on
//! one connection.
//! Part 2, reads waiting for a token: apply is paused on the replica, N HTTP reads with the
//! token wait; rwproxy's polls are counted on the replica server for 5 s (the same for 5 s
//! without waiters), with this process's CPU over those 5 s; then apply resumes, and the
//! release of every read by rwproxy and the answers are timed.

// A benchmark stops at its first failure, with the reason: no request path runs here.
#![allow(clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable as _;
use rwproxy::config::SourceConfig;
use rwproxy_tests::mariadb::MariaServer;
use rwproxy_tests::postgres::{self, PgServer};
use rwproxy_tests::sql_scenarios::NodeOf;
use rwproxy_tests::sql_server::SqlServer;
use rwproxy_tests::{client, eventually, Answer};

use crate::{process_cpu, quantile};

/// How long polls are counted.
pub const WINDOW: Duration = Duration::from_secs(5);

/// What the benchmark needs of a server beyond the tests' [`SqlServer`].
pub trait SourceBench: SqlServer {
    /// The query the source runs after a write for its token, as the report names it.
    const TOKEN_QUERY: &'static str;
    /// Runs [`Self::TOKEN_QUERY`] `n` times on one monitoring connection; each round trip.
    fn time_token_query(&self, n: usize) -> impl Future<Output = Vec<Duration>> + Send;
    /// How many of rwproxy's poll queries the server runs in `window`.
    fn polls_in(&self, window: Duration) -> impl Future<Output = u64> + Send;
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    quantile(&samples, 0.5)
}

/// Part 1: the token's cost over `writes` writes through `p` (the primary's node).
async fn token_cost<S: SourceBench>(primary: &S, p: &NodeOf<S>, writes: usize) {
    let plain = NodeOf::<S>::start(&primary.monitor_url(), &primary.app_url(), None, |c| {
        c.cluster.source = SourceConfig::Static {
            primary: c.node.clone(),
        }
    })
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
    let query = primary.time_token_query(writes).await;
    let (a, b) = (median(with_token), median(without));
    println!(
        "token: {writes} writes each; median POST with token {a:?}, without {b:?}, \
         difference {:?}; median {} round trip {:?}",
        a.saturating_sub(b),
        S::TOKEN_QUERY,
        median(query)
    );
}

/// Part 2: `waiters` reads through `r` (the replica's node) wait for a write's token.
async fn waiting_reads<S: SourceBench>(replica: &S, p: &NodeOf<S>, r: &NodeOf<S>, waiters: usize) {
    let idle = replica.polls_in(WINDOW).await;
    replica.pause_apply().await;
    let write = client().post(p.url("/items/waited-for")).answer().await;
    let token = write.headers()["rwproxy-position"]
        .to_str()
        .expect("ASCII token")
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
    let polls = replica.polls_in(WINDOW).await;
    let cpu = process_cpu().saturating_sub(cpu0);
    let per_second = |n: u64| n as f64 / WINDOW.as_secs_f64();
    let resumed = Instant::now();
    replica.resume_apply().await;
    eventually(Duration::from_secs(60), "every read released", || async {
        (r.node.waiting_reads() == 0).then_some(())
    })
    .await;
    let released = resumed.elapsed();
    let mut done = Vec::new();
    for read in reads {
        let (status, at) = read.await.expect("read task");
        assert_eq!(status, 200);
        done.push(at.saturating_duration_since(resumed));
    }
    done.sort();
    println!(
        "{waiters} waiting reads: replica server runs {:.0} polls/s while they wait ({:.0}/s \
         idle), process CPU {cpu:?} per {WINDOW:?} (client, apps and proxies); after apply \
         resumes: all released by rwproxy within {released:?}; answers (the app queries its \
         server) first / p50 / p99 / last {:?} / {:?} / {:?} / {:?}",
        per_second(polls),
        per_second(idle),
        done[0],
        quantile(&done, 0.5),
        quantile(&done, 0.99),
        done[done.len() - 1]
    );
}

/// Runs both parts on `pair` (primary, replica and their nodes; `None` when the database is not
/// installed), sized by the command line: `[WRITES [WAITERS]]`, 300 and 1,000 by default.
pub async fn run<S: SourceBench>(pair: Option<(S, S, NodeOf<S>, NodeOf<S>)>) {
    let Some((primary, replica, p, r)) = pair else {
        eprintln!("{} is not installed", S::PRODUCT);
        return;
    };
    let (writes, waiters) = sizes();
    token_cost(&primary, &p, writes).await;
    waiting_reads(&replica, &p, &r, waiters).await;
}

/// `WRITES` and `WAITERS` from the command line (defaults 300 and 1,000).
fn sizes() -> (usize, usize) {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    (arg(1, 300), arg(2, 1000))
}

/// Polls are counted by logging every statement (`log_min_duration_statement = 0`) for the
/// window and counting the poll query's lines.
impl SourceBench for PgServer {
    const TOKEN_QUERY: &'static str = "SELECT pg_current_wal_insert_lsn()";

    async fn time_token_query(&self, n: usize) -> Vec<Duration> {
        let db = self.connect(postgres::MONITOR_USER).await;
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            db.simple_query(Self::TOKEN_QUERY).await.expect("query");
            samples.push(start.elapsed());
        }
        samples
    }

    async fn polls_in(&self, window: Duration) -> u64 {
        let count = || {
            std::fs::read_to_string(self.log_path())
                .unwrap_or_default()
                .matches("pg_stat_wal_receiver")
                .count() as u64
        };
        let before = count();
        self.query_text("ALTER SYSTEM SET log_min_duration_statement = 0")
            .await;
        self.query_text("SELECT pg_reload_conf()").await;
        tokio::time::sleep(window).await;
        self.query_text("ALTER SYSTEM RESET log_min_duration_statement")
            .await;
        self.query_text("SELECT pg_reload_conf()").await;
        count() - before
    }
}

/// Polls are counted by `Com_show_slave_status` (one `SHOW SLAVE STATUS` per poll).
impl SourceBench for MariaServer {
    const TOKEN_QUERY: &'static str = "SELECT @@gtid_current_pos";

    async fn time_token_query(&self, n: usize) -> Vec<Duration> {
        let opts = mysql_async::Opts::from_url(&self.monitor_url()).expect("url");
        let mut db = mysql_async::Conn::new(opts).await.expect("connect");
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            let _: Option<String> = db.query_first(Self::TOKEN_QUERY).await.expect("query");
            samples.push(start.elapsed());
        }
        samples
    }

    async fn polls_in(&self, window: Duration) -> u64 {
        let count = || async {
            self.text(
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME = 'COM_SHOW_SLAVE_STATUS'",
            )
            .await
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
        };
        let before = count().await;
        tokio::time::sleep(window).await;
        count().await - before
    }
}
