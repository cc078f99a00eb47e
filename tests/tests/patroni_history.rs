//! The history checker ([`rwproxy_tests::history`]) against a real Patroni cluster (etcd + three
//! Patroni-managed PostgreSQL 15 nodes, an app and an rwproxy per node with
//! `consistency.session = "reads-too"`), one cluster for the file's CI test:
//!
//! 1. **history under failovers** (`synchronous_mode` on): sessions append and read through every
//!    node while the leader is killed (`kill -9`), switched over and partitioned from etcd and a
//!    replica's replay is paused; the checker finds 0 violations (read-your-writes, monotonic
//!    reads, writes-follow-reads, no lost, duplicated or phantom writes); the run's table is
//!    printed;
//! 2. **lost tail** (`synchronous_mode` then off): the leader's replication link is cut, writes
//!    are acknowledged by the leader alone, the leader's node dies (Patroni and PostgreSQL,
//!    `kill -9`), Patroni promotes a replica: the writes are gone, and every one of their tokens
//!    is answered `409 token-lost` and counted in `rwproxy_tokens_lost_total`.
//!
//! The soak (`#[ignore]`, docs/guarantees.md): `cargo test -p rwproxy-tests --test
//! patroni_history -- --ignored --nocapture` (`RWPROXY_SOAK_OPS`, default 20000;
//! `RWPROXY_SOAK_FAILOVERS`, default 10).
//!
//! Skips (with a notice) without patroni, etcd or PostgreSQL, unless
//! `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use rwproxy_tests::history::patroni::{run, PatroniRunConfig, PatroniRunReport};
use rwproxy_tests::history::seed;
use rwproxy_tests::patroni::{PatroniCluster, WAIT};
use rwproxy_tests::relay::Mode;
use rwproxy_tests::{client, metrics_page, Answer as _};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs the history and asserts what every run must show.
async fn checked_run(cluster: &PatroniCluster, config: PatroniRunConfig) -> PatroniRunReport {
    let report = run(cluster, config).await;
    eprintln!("history against Patroni:\n{}", report.table());
    report.assert_no_violations();
    let (acked, reads, _) = report.outcome_counts();
    assert!(
        acked >= 50 && reads >= 100,
        "too little succeeded to mean anything:\n{}",
        report.table()
    );
    let faults = report.fault_counts();
    assert!(faults.leader_kills >= 1 && faults.switchovers >= 1 && faults.partitions >= 1);
    assert!(faults.failovers() >= config.min_failovers && faults.replay_pauses >= 1);
    report
}

/// Lost writes: one key of their own, far from the history's keys.
const LOST_KEY: u32 = 1_000_000;
/// How many writes the cut-off leader acknowledges.
const LOST_WRITES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_under_patroni_failovers_and_the_tokens_of_a_lost_tail() {
    let started = Instant::now();
    let Some(mut cluster) = PatroniCluster::start_with_session(true, "reads-too").await else {
        return;
    };
    eprintln!("cluster up in {:?}", started.elapsed());

    // 1. The history under one leader kill, one switchover, one partition and a replay pause.
    checked_run(
        &cluster,
        PatroniRunConfig {
            sessions: 6,
            min_ops: 0,
            min_failovers: 3,
            keys: 8,
            seed: seed(),
        },
    )
    .await;
    eprintln!("history done at {:?}", started.elapsed());

    // 2. The lost tail: asynchronous replication, the leader's replication link cut.
    cluster.set_synchronous(false).await;
    cluster.wait_streaming(3).await;
    let old = cluster.wait_leader_of(None).await;
    cluster.nodes[old].replication_link.set_mode(Mode::Refuse);
    let http = client();
    let mut tokens = Vec::new();
    for n in 0..LOST_WRITES {
        let write = http
            .post(cluster.nodes[old].url(&format!("/kv/{LOST_KEY}")))
            .body((n + 1).to_string())
            .answer()
            .await;
        assert_eq!(write.status(), 200, "the leader alone acknowledges");
        let header = |name: &str| write.headers()[name].to_str().unwrap().to_owned();
        tokens.push((header("rwproxy-position"), header("rwproxy-timeline")));
    }
    // The whole node dies: its Patroni cannot restart its PostgreSQL as a replica that has
    // the tail (and would win the election with it).
    let killed = Instant::now();
    cluster.kill_patroni(old);
    cluster.nodes[old].kill_postgres();
    let new = cluster.wait_new_leader(old).await;
    eprintln!(
        "lost tail: {} died, {} leads {:?} later",
        cluster.nodes[old].name,
        cluster.nodes[new].name,
        killed.elapsed()
    );
    let kept = rwproxy_tests::pg_kv::rows(&cluster.nodes[new].pg_url())
        .await
        .expect("the new leader's rows");
    assert!(
        !kept.iter().any(|(key, _, _)| *key == LOST_KEY),
        "the tail was not lost: the test proves nothing"
    );
    let survivors: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != old).collect();
    // A replica that has not yet reached the new timeline cannot tell that a token is lost: it
    // waits for the position and answers 504 consistency-timeout (or forwards the read to the
    // new leader, which answers 409). Never a 2xx: that would be the silent stale answer.
    let mut answered_409 = 0;
    let mut interim: Vec<String> = Vec::new();
    for &i in &survivors {
        let node = &cluster.nodes[i];
        for (position, timeline) in &tokens {
            let deadline = Instant::now() + WAIT;
            loop {
                assert!(
                    Instant::now() < deadline,
                    "{}: no 409 for {position}",
                    node.name
                );
                let Ok(read) = http
                    .get(node.url(&format!("/kv/{LOST_KEY}")))
                    .header("rwproxy-position", position)
                    .header("rwproxy-timeline", timeline)
                    .send()
                    .await
                else {
                    interim.push(format!("{} no answer", node.name));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let code = read
                    .headers()
                    .get("rwproxy-error")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("from the app")
                    .to_owned();
                assert!(
                    !read.status().is_success(),
                    "{}: a lost write's token answered {} (a stale answer)",
                    node.name,
                    read.status()
                );
                if read.status() == 409 {
                    assert_eq!(code, "token-lost");
                    break;
                }
                interim.push(format!("{} {} {code}", node.name, read.status()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answered_409 += 1;
        }
    }
    // Every 409 was counted once, by the node that made it (the one asked, or the leader a
    // stale replica forwarded the read to).
    let mut counted = 0;
    for &i in &survivors {
        let page = metrics_page(&cluster.nodes[i].admin())
            .await
            .expect("metrics page");
        counted += page
            .lines()
            .find_map(|l| l.strip_prefix("rwproxy_tokens_lost_total "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
    }
    assert_eq!(counted, answered_409, "every lost token counted once");
    eprintln!(
        "lost tail: tokens lost: {} of {} detected (409 token-lost, counted {counted}; {LOST_WRITES} \
         tokens on each of {} nodes); answers before a node reached the new timeline: {interim:?}; \
         whole test {:?}",
        answered_409,
        LOST_WRITES * survivors.len(),
        survivors.len(),
        started.elapsed()
    );
}

/// The soak: at least `RWPROXY_SOAK_OPS` operations and `RWPROXY_SOAK_FAILOVERS` failovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a soak of minutes: run by hand (docs/guarantees.md)"]
async fn soak_on_patroni() {
    let Some(cluster) = PatroniCluster::start_with_session(true, "reads-too").await else {
        return;
    };
    let ops = env_usize("RWPROXY_SOAK_OPS", 20_000);
    checked_run(
        &cluster,
        PatroniRunConfig {
            sessions: 8,
            min_ops: ops,
            min_failovers: env_usize("RWPROXY_SOAK_FAILOVERS", 10),
            keys: (ops / 400).max(8) as u32,
            seed: seed(),
        },
    )
    .await;
}
