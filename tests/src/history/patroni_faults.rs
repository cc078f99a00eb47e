//! The fault script the history checker runs against a real Patroni cluster: one fault at a
//! time, in turn a WAL replay pause on a replica, `kill -9` of the leader's PostgreSQL,
//! `patronictl switchover`, and the leader cut from etcd (and from the other members' Patroni);
//! each
//! held until Patroni has recovered (a new leader whose `/primary` answers 200, every member
//! streaming again) before the next one, with a short calm between them.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::eventually;
use crate::patroni::{PatroniCluster, WAIT};

/// How long a replica's replay stays paused: longer than the harness's `reads.max_lag` (2 s),
/// so the replica turns stale and its reads go to the leader for a while.
const REPLAY_PAUSE: Duration = Duration::from_secs(3);

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `kill -9` of the leader's postmaster: Patroni fails over.
    LeaderKill,
    /// `patronictl switchover --force` to another member.
    Switchover,
    /// The leader's links to etcd and to the other members cut until a new leader runs.
    Partition,
    /// `pg_wal_replay_pause()` on a replica for [`REPLAY_PAUSE`].
    ReplayPause,
}

impl FaultKind {
    /// Whether it moves the leader.
    pub fn is_failover(self) -> bool {
        self != FaultKind::ReplayPause
    }
}

/// One injected fault: what, on which member, and when (microseconds on the run's clock).
#[derive(Clone, Copy, Debug)]
pub struct FaultEvent {
    pub kind: FaultKind,
    /// The member it hit (the old leader, or the paused replica).
    pub member: usize,
    /// The new leader, for a failover.
    pub new_leader: Option<usize>,
    /// When it began.
    pub start_us: u64,
    /// When Patroni had recovered (every member streaming again).
    pub recovered_us: u64,
}

/// Faults by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatroniFaultCounts {
    pub leader_kills: usize,
    pub switchovers: usize,
    pub partitions: usize,
    pub replay_pauses: usize,
}

impl PatroniFaultCounts {
    /// The counts of `events`.
    pub fn of(events: &[FaultEvent]) -> PatroniFaultCounts {
        let mut c = PatroniFaultCounts::default();
        for e in events {
            match e.kind {
                FaultKind::LeaderKill => c.leader_kills += 1,
                FaultKind::Switchover => c.switchovers += 1,
                FaultKind::Partition => c.partitions += 1,
                FaultKind::ReplayPause => c.replay_pauses += 1,
            }
        }
        c
    }

    /// Faults that moved the leader.
    pub fn failovers(&self) -> usize {
        self.leader_kills + self.switchovers + self.partitions
    }
}

impl fmt::Display for PatroniFaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failovers ({} leader kills, {} switchovers, {} partitions), {} replay pauses",
            self.failovers(),
            self.leader_kills,
            self.switchovers,
            self.partitions,
            self.replay_pauses
        )
    }
}

/// When to stop injecting faults.
pub struct StopWhen<'a> {
    /// At least this many failovers (kills, switchovers, partitions) were injected...
    pub failovers: usize,
    /// ... and this says the workload has done enough (checked between faults).
    pub workload_done: &'a AtomicBool,
}

/// Runs the fault script on `cluster` until `stop` holds (whole cycles of the four kinds are
/// not required); `clock` is the run's start. Every fault is healed before this returns.
pub async fn drive(
    cluster: &PatroniCluster,
    clock: Instant,
    stop: StopWhen<'_>,
    seed: u64,
) -> Vec<FaultEvent> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // The pause first: a run stopped after its first three failovers has had one of each.
    let script = [
        FaultKind::ReplayPause,
        FaultKind::LeaderKill,
        FaultKind::Switchover,
        FaultKind::Partition,
    ];
    let mut events = Vec::new();
    for kind in script.iter().cycle() {
        let failovers = PatroniFaultCounts::of(&events).failovers();
        if failovers >= stop.failovers && stop.workload_done.load(Ordering::SeqCst) {
            break;
        }
        // A calm between faults: the sessions run against a healthy cluster for a while.
        tokio::time::sleep(Duration::from_millis(rng.u64(500..2000))).await;
        events.push(inject(cluster, *kind, clock, &mut rng).await);
    }
    events
}

fn micros(clock: Instant) -> u64 {
    clock.elapsed().as_micros() as u64
}

/// Injects one fault of `kind` and waits until Patroni has recovered from it.
async fn inject(
    cluster: &PatroniCluster,
    kind: FaultKind,
    clock: Instant,
    rng: &mut fastrand::Rng,
) -> FaultEvent {
    let leader = cluster.wait_leader_of(None).await;
    // Under synchronous_mode Patroni fails over (or switches over) only to the synchronous
    // standby: wait for one, and aim a switchover at it.
    let sync = if cluster.synchronous {
        Some(eventually(WAIT, "a synchronous standby", || cluster.sync_standby()).await)
    } else {
        None
    };
    let others: Vec<usize> = (0..cluster.nodes.len()).filter(|i| *i != leader).collect();
    let start_us = micros(clock);
    let (member, new_leader) = match kind {
        FaultKind::LeaderKill => {
            cluster.nodes[leader].kill_postgres();
            (leader, Some(cluster.wait_new_leader(leader).await))
        }
        FaultKind::Switchover => {
            let to = sync.unwrap_or_else(|| others[rng.usize(..others.len())]);
            // patronictl is a blocking child process (its Python start-up takes a second).
            tokio::task::block_in_place(|| cluster.switchover(to));
            (leader, Some(cluster.wait_leader_of(Some(to)).await))
        }
        FaultKind::Partition => {
            cluster.nodes[leader].partition(true);
            let new = cluster.wait_new_leader(leader).await;
            cluster.nodes[leader].partition(false);
            (leader, Some(new))
        }
        FaultKind::ReplayPause => {
            let replica = others[rng.usize(..others.len())];
            cluster.sql(replica, "SELECT pg_wal_replay_pause()").await;
            tokio::time::sleep(REPLAY_PAUSE).await;
            cluster.sql(replica, "SELECT pg_wal_replay_resume()").await;
            (replica, None)
        }
    };
    cluster.wait_streaming(cluster.nodes.len()).await;
    FaultEvent {
        kind,
        member,
        new_leader,
        start_us,
        recovered_us: micros(clock),
    }
}
