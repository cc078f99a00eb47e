//! Jepsen-style history testing of rwproxy's session guarantees: concurrent client sessions
//! ([`client`]) run random writes and reads against a three-node cluster over a test-controlled
//! replicated [`ledger`] while a [`faults`] driver moves the primary, delays and cuts links,
//! pauses replication and restarts nodes; every operation is recorded ([`op`]) and the
//! [`checker`] verifies the history afterwards. [`patroni`] runs the same sessions and checker
//! against a real Patroni cluster under [`patroni_faults`] (leader kills, switchovers,
//! partitions, replay pauses).

pub mod app;
pub mod checker;
pub mod client;
pub mod cluster;
pub mod faults;
pub mod ledger;
pub mod op;
pub mod patroni;
pub mod patroni_faults;

use std::time::{Duration, Instant};

use rwproxy_http::SessionMode;

use self::checker::{Rule, Violation};
use self::client::Workload;
use self::cluster::HistoryCluster;
use self::faults::FaultCounts;
use self::op::{History, OpKind, WriteResult};

/// A seed from `RWPROXY_HISTORY_SEED`, else a fresh one (printed with the results, so a failure
/// can be rerun with the same choices).
pub fn seed() -> u64 {
    std::env::var("RWPROXY_HISTORY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_micros() as u64)
        })
}

/// One run's size and setting.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    /// `consistency.session` of every node.
    pub mode: SessionMode,
    /// Concurrent client sessions.
    pub sessions: usize,
    /// Operations in all, split evenly over the sessions.
    pub ops: usize,
    /// Seed of every random choice (timing is not reproducible; the choices are).
    pub seed: u64,
}

/// What a run did and found.
pub struct RunReport {
    pub config: RunConfig,
    pub history: History,
    pub faults: FaultCounts,
    pub duration: Duration,
    pub violations: Vec<Violation>,
}

impl RunReport {
    /// The violations of the rules the run's mode promises (monotonic reads only with
    /// `"reads-too"`).
    pub fn broken_promises(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| v.rule != Rule::MonotonicReads || self.config.mode == SessionMode::ReadsToo)
            .collect()
    }

    /// Monotonic-read anomalies seen (promised only with `"reads-too"`).
    pub fn monotonic_anomalies(&self) -> usize {
        self.violations
            .iter()
            .filter(|v| v.rule == Rule::MonotonicReads)
            .count()
    }

    /// `(acknowledged writes, reads that answered, operations that failed)`.
    pub fn outcome_counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for op in &self.history.ops {
            match &op.kind {
                OpKind::Write {
                    result: WriteResult::Acked,
                    ..
                } => counts.0 += 1,
                OpKind::Read {
                    values: Some(_), ..
                } => counts.1 += 1,
                _ => counts.2 += 1,
            }
        }
        counts
    }

    /// Operations that failed, by kind and reason (`"write 503 primary-unreachable"`), most
    /// frequent first.
    pub fn failures(&self) -> Vec<(String, usize)> {
        let mut by_reason = std::collections::BTreeMap::new();
        for op in &self.history.ops {
            let Some(reason) = &op.failure else { continue };
            let kind = match op.kind {
                OpKind::Write { .. } => "write",
                OpKind::Read { .. } => "read",
            };
            *by_reason.entry(format!("{kind} {reason}")).or_insert(0) += 1;
        }
        let mut list: Vec<_> = by_reason.into_iter().collect();
        list.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        list
    }

    /// One paragraph for the test output (and docs/guarantees.md).
    pub fn summary(&self) -> String {
        let (acked, reads, failed) = self.outcome_counts();
        format!(
            "mode {:?}, seed {}: {} operations by {} sessions in {:.1} s ({} acknowledged writes, \
             {} reads answered, {} failed or unanswered: {:?}); {}; {} violations of promised rules, \
             {} monotonic-read anomalies",
            self.config.mode,
            self.config.seed,
            self.history.ops.len(),
            self.config.sessions,
            self.duration.as_secs_f64(),
            acked,
            reads,
            failed,
            self.failures(),
            self.faults,
            self.broken_promises().len(),
            self.monotonic_anomalies()
        )
    }

    /// Panics with the first few broken promises, each with its minimal history.
    pub fn assert_no_broken_promises(&self) {
        let broken = self.broken_promises();
        if broken.is_empty() {
            return;
        }
        let shown: Vec<String> = broken.iter().take(5).map(|v| v.to_string()).collect();
        panic!(
            "{}\n{} violations; the first ones:\n{}",
            self.summary(),
            broken.len(),
            shown.join("\n")
        );
    }
}

/// Starts a three-node cluster, runs the sessions against it under faults, heals, lets every
/// replica catch up and checks the history.
pub async fn run(config: RunConfig) -> RunReport {
    let mode = config.mode;
    let mut cluster = HistoryCluster::start(3, |c| {
        c.consistency.session = mode;
        // Replication pauses longer than this turn a replica stale (its reads go to the primary).
        c.reads.max_lag = Duration::from_millis(300);
    })
    .await;
    let clock = Instant::now();
    let per_session = config.ops.div_ceil(config.sessions.max(1));
    let keys = (config.ops / 400).max(8) as u32;
    let sessions: Vec<_> = (0..config.sessions)
        .map(|id| {
            let work = Workload {
                ops: per_session,
                keys,
                write_percent: 40,
                seed: config.seed.wrapping_add(1 + id as u64),
            };
            tokio::spawn(client::run_session(id, cluster.urls.clone(), clock, work))
        })
        .collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let all_done = async {
        let mut ops = Vec::new();
        for s in sessions {
            ops.extend(s.await.expect("session panicked"));
        }
        let _ = stop_tx.send(true);
        ops
    };
    let (ops, faults) = tokio::join!(all_done, faults::drive(&mut cluster, stop_rx, config.seed));
    let duration = clock.elapsed();
    cluster.heal_and_catch_up(Duration::from_secs(10)).await;
    let history = History {
        ops,
        applied: cluster.ledger.log(),
    };
    cluster.stop().await;
    let violations = checker::check(&history);
    RunReport {
        config,
        history,
        faults,
        duration,
        violations,
    }
}
