//! The fault driver: one fault at a time, each held for a random while and then healed, until
//! told to stop. Faults: moving the primary (a graceful hand-off), delaying or cutting the
//! links into a node, pausing replication to a replica, stopping and restarting a node's
//! rwproxy.

use std::fmt;
use std::time::Duration;

use tokio::sync::watch;

use super::cluster::HistoryCluster;
use crate::relay::Mode;

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub primary_moves: usize,
    pub link_delays: usize,
    pub link_cuts: usize,
    pub replication_pauses: usize,
    pub node_restarts: usize,
}

impl FaultCounts {
    /// All faults together.
    pub fn total(&self) -> usize {
        self.primary_moves
            + self.link_delays
            + self.link_cuts
            + self.replication_pauses
            + self.node_restarts
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &FaultCounts) {
        self.primary_moves += other.primary_moves;
        self.link_delays += other.link_delays;
        self.link_cuts += other.link_cuts;
        self.replication_pauses += other.replication_pauses;
        self.node_restarts += other.node_restarts;
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults ({} primary moves, {} link delays, {} link cuts, {} replication pauses, {} node restarts)",
            self.total(),
            self.primary_moves,
            self.link_delays,
            self.link_cuts,
            self.replication_pauses,
            self.node_restarts
        )
    }
}

/// Waits `d`, or less when `stop` turns true; true when stopped.
async fn hold(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let _ = tokio::time::timeout(d, stop.wait_for(|s| *s)).await;
    *stop.borrow()
}

/// Injects faults into `cluster` until `stop` turns true; every fault is healed before the
/// next one starts and before this returns.
pub async fn drive(
    cluster: &mut HistoryCluster,
    mut stop: watch::Receiver<bool>,
    seed: u64,
) -> FaultCounts {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut counts = FaultCounts::default();
    let n = cluster.nodes.len();
    loop {
        if hold(Duration::from_millis(rng.u64(20..150)), &mut stop).await {
            return counts;
        }
        let i = rng.usize(..n);
        let held = Duration::from_millis(rng.u64(30..400));
        match rng.u8(..5) {
            0 => {
                let Some(writer) = cluster.ledger.writer() else {
                    continue;
                };
                if i == writer {
                    continue;
                }
                counts.primary_moves += 1;
                cluster.move_primary(i).await;
            }
            1 => {
                counts.link_delays += 1;
                let delay = Duration::from_millis(rng.u64(2..40));
                cluster.nodes[i].relay.set_mode(Mode::Delay(delay));
                hold(held, &mut stop).await;
                cluster.nodes[i].relay.set_mode(Mode::Pass);
            }
            2 => {
                counts.link_cuts += 1;
                let cut = if rng.bool() {
                    Mode::Reset
                } else {
                    Mode::Refuse
                };
                cluster.nodes[i].relay.set_mode(cut);
                hold(held, &mut stop).await;
                cluster.nodes[i].relay.set_mode(Mode::Pass);
            }
            3 => {
                if cluster.ledger.writer() == Some(i) {
                    continue;
                }
                counts.replication_pauses += 1;
                cluster.ledger.pause(i, true);
                // Longer than `reads.max_lag` now and then, so the replica turns stale.
                hold(held * 2, &mut stop).await;
                cluster.ledger.pause(i, false);
            }
            _ => {
                counts.node_restarts += 1;
                cluster.kill(i).await;
                hold(held, &mut stop).await;
                cluster.restart(i).await;
            }
        }
    }
}
