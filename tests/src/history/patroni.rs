//! The history checker against a real Patroni cluster ([`crate::patroni`]): concurrent client
//! sessions ([`super::client`]) run the key-value append workload through the three rwproxies
//! (each in front of its node's app, [`crate::pg_kv`] on that node's PostgreSQL) while
//! [`super::patroni_faults`] kills, switches over and partitions the leader and pauses replay on
//! replicas; afterwards the final leader's table is the timeline every rule is checked against.
//!
//! The rules are the checker's own ([`super::checker`]). How they map onto PostgreSQL: a value
//! "in the ledger" is a row of `kv` on the final leader, its place is its `seq`; "applied by a
//! replica" cannot happen inside PostgreSQL (a standby refuses every write), so a write that a
//! primary accepted and a failover then discarded shows as a lost write if it was acknowledged.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checker::{self, Violation};
use super::client::{self, Workload};
use super::cluster::NodeUrls;
use super::op::{Applied, History};
use super::patroni_faults::{self, FaultEvent, FaultKind, PatroniFaultCounts, StopWhen};
use crate::patroni::PatroniCluster;

/// Operations a session runs before it checks whether the run is over; each round is a new
/// session (a new client and cookie jar), so a round must be long enough to mean something.
const ROUND_OPS: usize = 200;

/// One run's size.
#[derive(Clone, Copy, Debug)]
pub struct PatroniRunConfig {
    /// Concurrent client sessions.
    pub sessions: usize,
    /// The run goes on until at least this many operations...
    pub min_ops: usize,
    /// ... and this many failovers (leader kills, switchovers, partitions) happened.
    pub min_failovers: usize,
    /// Keys the sessions share.
    pub keys: u32,
    /// Seed of every random choice.
    pub seed: u64,
}

/// What a run did and found.
pub struct PatroniRunReport {
    pub config: PatroniRunConfig,
    pub history: History,
    pub faults: Vec<FaultEvent>,
    pub duration: Duration,
    /// Session runs (of [`ROUND_OPS`] operations each; `sessions` of them at a time).
    pub session_runs: usize,
    pub violations: Vec<Violation>,
    /// The members' names, by index.
    pub member_names: Vec<String>,
}

/// Runs the sessions against `cluster` under faults until `config`'s bounds are reached, lets
/// every member catch up and checks the history against the final leader's table. The cluster's
/// rwproxies should run with `consistency.session = "reads-too"` (every rule is then promised).
pub async fn run(cluster: &PatroniCluster, config: PatroniRunConfig) -> PatroniRunReport {
    let urls = NodeUrls::new(cluster.nodes.iter().map(|n| n.url("")).collect());
    let clock = Instant::now();
    let workload_done = Arc::new(AtomicBool::new(false));
    let faults_done = Arc::new(AtomicBool::new(false));
    let ops_done = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let sessions: Vec<_> = (0..config.sessions)
        .map(|slot| {
            let (urls, faults_done, ops_done, rounds, workload_done) = (
                urls.clone(),
                faults_done.clone(),
                ops_done.clone(),
                rounds.clone(),
                workload_done.clone(),
            );
            tokio::spawn(async move {
                let mut ops = Vec::new();
                while !faults_done.load(Ordering::SeqCst) {
                    let round = rounds.fetch_add(1, Ordering::SeqCst);
                    let work = Workload {
                        ops: ROUND_OPS,
                        keys: config.keys,
                        write_percent: 40,
                        seed: config.seed.wrapping_add(1 + round as u64),
                    };
                    // Session ids are unique over the run (they are part of every value).
                    let id = round * config.sessions + slot;
                    ops.extend(client::run_session(id, urls.clone(), clock, work).await);
                    let total = ops_done.fetch_add(ROUND_OPS, Ordering::SeqCst) + ROUND_OPS;
                    if total >= config.min_ops {
                        workload_done.store(true, Ordering::SeqCst);
                    }
                }
                ops
            })
        })
        .collect();
    let stop = StopWhen {
        failovers: config.min_failovers,
        workload_done: &workload_done,
    };
    let faults = patroni_faults::drive(cluster, clock, stop, config.seed).await;
    faults_done.store(true, Ordering::SeqCst);
    let mut ops = Vec::new();
    for s in sessions {
        ops.extend(s.await.expect("session panicked"));
    }
    let duration = clock.elapsed();
    cluster.wait_streaming(cluster.nodes.len()).await;
    let leader = cluster.wait_leader_of(None).await;
    let rows = crate::pg_kv::rows(&cluster.nodes[leader].pg_url())
        .await
        .expect("read the final leader's kv table");
    let applied = rows
        .into_iter()
        .map(|(key, value, app)| Applied {
            key,
            value,
            node: cluster
                .nodes
                .iter()
                .position(|n| app == format!("app-{}", n.name))
                .unwrap_or(usize::MAX),
            // A PostgreSQL standby refuses every write: a row was committed by a primary.
            lease_holder: true,
        })
        .collect();
    let history = History { ops, applied };
    let violations = checker::check(&history);
    PatroniRunReport {
        config,
        history,
        faults,
        duration,
        session_runs: rounds.load(Ordering::SeqCst),
        violations,
        member_names: cluster.nodes.iter().map(|n| n.name.clone()).collect(),
    }
}

impl PatroniRunReport {
    /// `(acknowledged writes, reads that answered, operations that failed)`.
    pub fn outcome_counts(&self) -> (usize, usize, usize) {
        let acked = self
            .history
            .ops
            .iter()
            .filter(|op| op.acked_write().is_some())
            .count();
        let reads = self
            .history
            .ops
            .iter()
            .filter(|op| op.read_values().is_some())
            .count();
        (acked, reads, self.history.ops.len() - acked - reads)
    }

    /// Faults by kind.
    pub fn fault_counts(&self) -> PatroniFaultCounts {
        PatroniFaultCounts::of(&self.faults)
    }

    /// Per fault: its kind and its unavailability window for writes, the longest stretch from
    /// the fault's start until Patroni had recovered without a write being acknowledged (the
    /// stretch that straddles the recovery runs on to the next acknowledgement; `None`: no write
    /// was acknowledged after the fault at all).
    pub fn write_windows(&self) -> Vec<(FaultKind, Option<Duration>)> {
        let mut acks: Vec<u64> = self
            .history
            .ops
            .iter()
            .filter(|op| op.acked_write().is_some())
            .map(|op| op.end_us)
            .collect();
        acks.sort_unstable();
        self.faults
            .iter()
            .map(|f| {
                let mut longest = None;
                let mut since = f.start_us;
                for &ack in acks.iter().filter(|a| **a > f.start_us) {
                    let gap = ack - since;
                    longest = Some(longest.map_or(gap, |l: u64| l.max(gap)));
                    if ack > f.recovered_us {
                        break;
                    }
                    since = ack;
                }
                (f.kind, longest.map(Duration::from_micros))
            })
            .collect()
    }

    /// Operations that failed, by kind and reason, most frequent first.
    pub fn failures(&self) -> Vec<(String, usize)> {
        let mut by_reason = std::collections::BTreeMap::new();
        for op in &self.history.ops {
            let Some(reason) = &op.failure else { continue };
            let kind = if matches!(op.kind, super::op::OpKind::Write { .. }) {
                "write"
            } else {
                "read"
            };
            *by_reason.entry(format!("{kind} {reason}")).or_insert(0) += 1;
        }
        let mut list: Vec<_> = by_reason.into_iter().collect();
        list.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        list
    }

    /// The faults in order, e.g. `kill pg1 -> pg3`, with members named by `names`.
    fn fault_sequence(&self, names: &[String]) -> String {
        let name = |i: usize| names.get(i).map_or("?", String::as_str);
        let list: Vec<String> = self
            .faults
            .iter()
            .map(|f| {
                let what = match f.kind {
                    FaultKind::LeaderKill => "kill",
                    FaultKind::Switchover => "switchover",
                    FaultKind::Partition => "partition",
                    FaultKind::ReplayPause => "replay pause",
                };
                match f.new_leader {
                    Some(new) => format!("{what} {} -> {}", name(f.member), name(new)),
                    None => format!("{what} {}", name(f.member)),
                }
            })
            .collect();
        list.join(", ")
    }

    /// The run's table (Markdown, as in docs/guarantees.md).
    pub fn table(&self) -> String {
        let names = &self.member_names;
        let (acked, reads, failed) = self.outcome_counts();
        let windows = |kind: FaultKind| {
            let list: Vec<String> = self
                .write_windows()
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, w)| w.map_or("none".to_owned(), |w| format!("{:.1}", w.as_secs_f64())))
                .collect();
            if list.is_empty() {
                "-".to_owned()
            } else {
                format!("{} s", list.join(", "))
            }
        };
        let mut violations: Vec<String> = checker::tally(&self.violations)
            .into_iter()
            .map(|(rule, n)| format!("{rule:?} {n}"))
            .collect();
        violations.sort();
        let failures: Vec<String> = self
            .failures()
            .iter()
            .take(6)
            .map(|(why, n)| format!("{why}: {n}"))
            .collect();
        let rows = [
            ("seed", self.config.seed.to_string()),
            (
                "operations",
                format!(
                    "{} ({acked} acknowledged writes, {reads} reads answered, {failed} failed or unanswered)",
                    self.history.ops.len()
                ),
            ),
            (
                "sessions",
                format!(
                    "{} at a time, {} session runs of {ROUND_OPS} operations",
                    self.config.sessions, self.session_runs
                ),
            ),
            ("faults", self.fault_counts().to_string()),
            ("fault sequence", self.fault_sequence(names)),
            ("rows on the final leader", self.history.applied.len().to_string()),
            ("duration", format!("{:.1} s", self.duration.as_secs_f64())),
            ("write unavailability, leader kill", windows(FaultKind::LeaderKill)),
            ("write unavailability, switchover", windows(FaultKind::Switchover)),
            ("write unavailability, partition", windows(FaultKind::Partition)),
            ("write unavailability, replay pause", windows(FaultKind::ReplayPause)),
            ("failures (most frequent)", failures.join("; ")),
            (
                "violations",
                if violations.is_empty() {
                    "0".to_owned()
                } else {
                    violations.join(", ")
                },
            ),
        ];
        let mut text = String::from("| | |\n|---|---|\n");
        for (what, value) in rows {
            text.push_str(&format!("| {what} | {value} |\n"));
        }
        text
    }

    /// Panics with the table and the first few violations, each with its minimal history.
    pub fn assert_no_violations(&self) {
        if self.violations.is_empty() {
            return;
        }
        let shown: Vec<String> = self
            .violations
            .iter()
            .take(5)
            .map(|v| v.to_string())
            .collect();
        panic!(
            "{}\n{} violations; the first ones:\n{}",
            self.table(),
            self.violations.len(),
            shown.join("\n")
        );
    }
}
