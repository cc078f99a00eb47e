//! The replicated database the history tests run against: one timeline of appended values (a
//! LiteFS database's transactions), a write lease held by one node at most, and for every node
//! the prefix of the timeline it has applied (its TXID, written to its mount's `app.db-pos`).
//!
//! The test controls replication: a replicator task moves replicas forward a few entries per
//! tick, and the fault driver pauses it per node. A node's data and its position change under
//! one lock, as LiteFS applies a transaction and bumps the position together, so a position read
//! after a read answered always covers what the read saw.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::op::{Applied, Key, Value};
use crate::mount::Mount;

/// The database every position file describes.
pub const DB: &str = "app.db";
/// How often the replicator runs.
const TICK: Duration = Duration::from_millis(4);
/// Most entries a replica applies per tick: replicas trail the primary by a few transactions.
const STEP: usize = 3;

/// The shared ledger; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    state: Arc<Mutex<State>>,
}

struct State {
    log: Vec<Applied>,
    /// Per key, `(index in log, value)` in log order: reads take a prefix.
    by_key: std::collections::HashMap<Key, Vec<(usize, Value)>>,
    /// Per node: how many log entries it has applied.
    applied: Vec<usize>,
    /// The node holding the write lease.
    writer: Option<usize>,
    mounts: Vec<Arc<Mount>>,
    /// Per node: replication paused since.
    paused: Vec<Option<Instant>>,
}

impl State {
    /// Moves node `i` to `applied` entries and writes its position (TXID = entries + 1).
    fn advance(&mut self, i: usize, applied: usize) {
        if self.applied[i] != applied {
            self.applied[i] = applied;
            self.mounts[i].set_pos(DB, applied as u64 + 1);
        }
    }
}

/// Why a write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This node does not hold the lease (SQLite on a LiteFS replica is read-only).
    ReadOnly,
}

impl Ledger {
    /// A ledger over these mounts (one per node); node 0 holds the lease, every node is at
    /// position 1 (empty).
    pub fn new(mounts: Vec<Arc<Mount>>) -> Ledger {
        let n = mounts.len();
        for m in &mounts {
            m.set_pos(DB, 1);
        }
        Ledger {
            state: Arc::new(Mutex::new(State {
                log: Vec::new(),
                by_key: Default::default(),
                applied: vec![0; n],
                writer: Some(0),
                mounts,
                paused: vec![None; n],
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `node`'s app appends `value` to `key`: only the lease holder may.
    pub fn write(&self, node: usize, key: Key, value: Value) -> Result<(), Refused> {
        let mut s = self.lock();
        if s.writer != Some(node) {
            return Err(Refused::ReadOnly);
        }
        let index = s.log.len();
        s.log.push(Applied {
            key,
            value,
            node,
            lease_holder: true,
        });
        s.by_key.entry(key).or_default().push((index, value));
        s.advance(node, index + 1);
        Ok(())
    }

    /// `key`'s list as node `node` sees it.
    pub fn read(&self, node: usize, key: Key) -> Vec<Value> {
        let s = self.lock();
        let upto = s.applied[node];
        let Some(entries) = s.by_key.get(&key) else {
            return Vec::new();
        };
        let end = entries.partition_point(|(i, _)| *i < upto);
        entries[..end].iter().map(|(_, v)| *v).collect()
    }

    /// A graceful hand-off of the lease to node `p`, called `name` (like `litefs handoff`):
    /// nobody writes while `p` catches up, then `p` holds the lease and every mount says so
    /// (all under the lock, so the replicator never writes a mount file at the same time).
    pub fn hand_lease_to(&self, p: usize, name: &str) {
        let mut s = self.lock();
        s.writer = None;
        let len = s.log.len();
        s.advance(p, len);
        s.writer = Some(p);
        s.paused[p] = None;
        for (i, mount) in s.mounts.iter().enumerate() {
            if i == p {
                mount.make_primary();
            } else {
                mount.make_replica(name, 0);
            }
        }
    }

    /// The node holding the lease.
    pub fn writer(&self) -> Option<usize> {
        self.lock().writer
    }

    /// Stops (true) or resumes (false) replication to node `i`; its `.lag` grows meanwhile.
    pub fn pause(&self, i: usize, paused: bool) {
        let mut s = self.lock();
        s.paused[i] = paused.then(Instant::now);
        if !paused {
            s.mounts[i].set_lag_ms(0);
        }
    }

    /// One replication step: every replica not paused applies up to [`STEP`] more entries;
    /// paused ones report their growing lag.
    pub fn replicate_once(&self) {
        let mut s = self.lock();
        let len = s.log.len();
        for i in 0..s.applied.len() {
            if Some(i) == s.writer {
                continue;
            }
            match s.paused[i] {
                Some(since) => s.mounts[i].set_lag_ms(since.elapsed().as_millis() as i64),
                None => {
                    let next = (s.applied[i] + STEP).min(len);
                    s.advance(i, next);
                }
            }
        }
    }

    /// Runs [`Ledger::replicate_once`] every tick until the task is aborted.
    pub fn spawn_replicator(&self) -> tokio::task::JoinHandle<()> {
        let ledger = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                ledger.replicate_once();
            }
        })
    }

    /// Whether every node has applied the whole log.
    pub fn caught_up(&self) -> bool {
        let s = self.lock();
        s.applied.iter().all(|a| *a == s.log.len())
    }

    /// The timeline so far.
    pub fn log(&self) -> Vec<Applied> {
        self.lock().log.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_see_a_prefix_and_only_the_lease_holder_writes() {
        let mounts: Vec<_> = (0..2).map(|_| Arc::new(Mount::new())).collect();
        let ledger = Ledger::new(mounts.clone());
        assert_eq!(ledger.write(1, 7, 100), Err(Refused::ReadOnly));
        for v in 0..5 {
            ledger.write(0, 7, v).unwrap();
        }
        assert_eq!(ledger.read(0, 7), vec![0, 1, 2, 3, 4]);
        assert_eq!(ledger.read(1, 7), Vec::<Value>::new());
        assert_eq!(mounts[0].pos(DB), 6);
        ledger.replicate_once();
        assert_eq!(ledger.read(1, 7), vec![0, 1, 2]);
        assert_eq!(mounts[1].pos(DB), 4);
        ledger.pause(1, true);
        ledger.replicate_once();
        assert_eq!(mounts[1].pos(DB), 4, "paused");
        ledger.hand_lease_to(1, "node1");
        assert_eq!(
            ledger.read(1, 7).len(),
            5,
            "caught up before taking the lease"
        );
        assert!(std::fs::metadata(mounts[0].path().join(".primary")).is_ok());
        assert_eq!(ledger.write(0, 7, 9), Err(Refused::ReadOnly));
        ledger.write(1, 7, 9).unwrap();
        ledger.pause(1, false);
        ledger.replicate_once();
        ledger.replicate_once();
        assert!(ledger.caught_up());
    }
}
