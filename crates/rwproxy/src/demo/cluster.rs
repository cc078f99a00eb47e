//! The demo's stand-in for LiteFS: every node's database, the mount files that describe them,
//! replication from the primary after a delay, heartbeats, and moving the primary.
//!
//! Everything sits behind one mutex. The demo is three nodes in one process; one lock keeps
//! each database, its TXID and its `-pos` file in step (rwproxy reads the file right after a
//! write to issue the token, so it must never see an older TXID than the write produced).

use std::io;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rwproxy_core::NodeState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::db::{Database, Op, ReadOnly, Written, FIRST_TXID};
use super::mount::Mount;

/// How often a replica hears from the primary when nothing is written (LiteFS: about 1 s; the
/// demo uses less so that `.lag` stays small and visibly moving).
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(250);
/// How often replication and `.lag` are brought up to date.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// How long a hand-off waits for one node's rwproxy to see a step before going on anyway.
const SEEN_TIMEOUT: Duration = Duration::from_secs(3);

/// The simulated cluster, shared by the apps, the replication task and the promote endpoint.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Each node's name: its rwproxy's `127.0.0.1:PORT`, written into replicas' `.primary`.
    names: Vec<String>,
    mounts: Vec<Mount>,
    delay: Duration,
    inner: Mutex<Inner>,
    /// One hand-off at a time; held across the awaits of [`Cluster::promote`].
    handoff: tokio::sync::Mutex<()>,
    /// Each node's rwproxy state, set once the nodes run: a hand-off waits on them.
    watchers: OnceLock<Vec<watch::Receiver<NodeState>>>,
}

#[derive(Debug)]
struct Inner {
    dbs: Vec<Database>,
    primary: usize,
    /// When each node last heard from the primary (a heartbeat or replicated data).
    heard: Vec<Instant>,
}

/// Why a promotion did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PromoteError {
    /// The node index does not exist.
    #[error("there is no node {0}")]
    NoSuchNode(usize),
    /// A mount file could not be written.
    #[error("cannot update the mount: {0}")]
    Mount(#[from] io::Error),
}

impl Cluster {
    /// A cluster over `mounts` (one per name) whose primary is node 0; the mounts get their
    /// roles at once.
    pub(crate) fn new(names: Vec<String>, mounts: Vec<Mount>, delay: Duration) -> io::Result<Self> {
        let now = Instant::now();
        let dbs = (0..names.len()).map(|i| Database::new(i == 0)).collect();
        for (i, mount) in mounts.iter().enumerate() {
            mount.set_pos(FIRST_TXID)?;
            if i == 0 {
                mount.make_primary()?;
            } else {
                mount.make_replica(&names[0], Duration::ZERO)?;
            }
        }
        Ok(Cluster {
            inner: Mutex::new(Inner {
                dbs,
                primary: 0,
                heard: vec![now; names.len()],
            }),
            names,
            mounts,
            delay,
            handoff: tokio::sync::Mutex::new(()),
            watchers: OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a database half-updated in a way that
        // matters to a demo; keep serving rather than poisoning every later request.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives a hand-off each node's rwproxy state to wait on.
    pub(crate) fn set_watchers(&self, watchers: Vec<watch::Receiver<NodeState>>) {
        let _ = self.watchers.set(watchers);
    }

    /// Node `node`'s name.
    pub(crate) fn name(&self, node: usize) -> &str {
        &self.names[node]
    }

    /// The current primary's index.
    pub(crate) fn primary(&self) -> usize {
        self.lock().primary
    }

    /// Runs `f` on node `node`'s database (reads).
    pub(crate) fn read<R>(&self, node: usize, f: impl FnOnce(&Database) -> R) -> R {
        f(&self.lock().dbs[node])
    }

    /// Writes on node `node`'s database; fails on a replica, as read-only SQLite does.
    pub(crate) fn write(&self, node: usize, op: Op) -> io::Result<Result<Written, ReadOnly>> {
        let mut inner = self.lock();
        let written = inner.dbs[node].write(op, Instant::now());
        if let Ok(w) = &written {
            if w.changed {
                // Before the response leaves: rwproxy reads this file to issue the token.
                self.mounts[node].set_pos(w.txid)?;
            }
        }
        Ok(written)
    }

    /// One replication step: each replica applies the primary's commits older than the
    /// replication delay, counts a heartbeat when one is due, and rewrites its `.lag`.
    fn tick(&self, now: Instant) -> io::Result<()> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let primary = inner.primary;
        let until = now.checked_sub(self.delay).unwrap_or(now);
        let mut oldest = u64::MAX;
        for node in 0..self.names.len() {
            if node == primary {
                continue;
            }
            let commits = inner.dbs[primary].commits_after(inner.dbs[node].txid(), until);
            if let Some(last) = commits.last() {
                for commit in &commits {
                    inner.dbs[node].apply(commit);
                }
                self.mounts[node].set_pos(last.txid)?;
                inner.heard[node] = now;
            } else if now.duration_since(inner.heard[node]) >= HEARTBEAT {
                inner.heard[node] = now;
            }
            oldest = oldest.min(inner.dbs[node].txid());
            self.mounts[node].set_lag(now.duration_since(inner.heard[node]))?;
        }
        inner.dbs[primary].trim_log(oldest);
        Ok(())
    }

    /// Replicates and heartbeats every [`TICK`] until `stop`.
    pub(crate) async fn replicate(&self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Err(error) = self.tick(Instant::now()) {
                tracing::warn!(%error, "demo: cannot update a mount");
            }
        }
    }

    /// Moves the primary to `target` the way a LiteFS hand-off looks from outside, ordered so
    /// that no write is lost and none reaches a read-only app:
    ///
    /// 1. the old primary's mount names `target` as primary, so its rwproxy forwards writes
    ///    (until `target`'s rwproxy claims the role, such a write is answered `503 loop`,
    ///    retryable and not applied). A write its rwproxy already sent to its app still lands
    ///    in the old database and its log;
    /// 2. `target` catches up on the whole log and becomes writable; the old one read-only;
    /// 3. `target`'s mount claims the role, the others follow it.
    ///
    /// Returns the previous primary's index.
    pub(crate) async fn promote(&self, target: usize) -> Result<usize, PromoteError> {
        if target >= self.names.len() {
            return Err(PromoteError::NoSuchNode(target));
        }
        let _one_at_a_time = self.handoff.lock().await;
        let old = self.primary();
        if old == target {
            return Ok(old);
        }
        let new_name = self.names[target].clone();
        self.mounts[old].make_replica(&new_name, Duration::ZERO)?;
        self.seen(old, |s| {
            s.primary.as_deref() == Some(new_name.as_str()) && !s.is_primary()
        })
        .await;
        {
            let mut inner = self.lock();
            let log = inner.dbs[old].demote();
            inner.dbs[target].promote(log);
            inner.primary = target;
            let now = Instant::now();
            inner.heard.iter_mut().for_each(|h| *h = now);
            self.mounts[target].set_pos(inner.dbs[target].txid())?;
            self.mounts[target].make_primary()?;
            for (node, mount) in self.mounts.iter().enumerate() {
                if node != target {
                    mount.make_replica(&new_name, Duration::ZERO)?;
                }
            }
        }
        for node in 0..self.names.len() {
            if node == target {
                self.seen(node, NodeState::is_primary).await;
            } else {
                self.seen(node, |s| s.primary.as_deref() == Some(new_name.as_str()))
                    .await;
            }
        }
        tracing::info!(from = %self.names[old], to = %new_name, "demo: primary moved");
        Ok(old)
    }

    /// Waits (bounded) until node `node`'s rwproxy state satisfies `check`.
    async fn seen(&self, node: usize, check: impl Fn(&NodeState) -> bool) {
        let Some(mut state) = self.watchers.get().and_then(|w| w.get(node)).cloned() else {
            return;
        };
        let seen = tokio::time::timeout(SEEN_TIMEOUT, state.wait_for(|s| check(s))).await;
        if !matches!(seen, Ok(Ok(_))) {
            tracing::warn!(node = %self.names[node], "demo: a node did not see the hand-off in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(delay: Duration) -> (tempfile::TempDir, Cluster) {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..3).map(|i| format!("n{i}")).collect();
        let mounts = (0..3)
            .map(|i| Mount::create(dir.path().join(format!("n{i}")), "app.db", 1).unwrap())
            .collect();
        (dir, Cluster::new(names, mounts, delay).unwrap())
    }

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: "v".into(),
        }
    }

    fn file(dir: &tempfile::TempDir, node: &str, name: &str) -> Option<String> {
        std::fs::read_to_string(dir.path().join(node).join(name)).ok()
    }

    #[test]
    fn writes_replicate_after_the_delay_only() {
        let (dir, c) = cluster(Duration::from_secs(1));
        assert!(
            c.write(1, put("a")).unwrap().is_err(),
            "a replica refuses writes"
        );
        let w = c.write(0, put("a")).unwrap().unwrap();
        assert_eq!(w.txid, 2);
        assert!(file(&dir, "n0", "app.db-pos")
            .unwrap()
            .starts_with("0000000000000002/"));
        let now = Instant::now();
        c.tick(now).unwrap();
        assert_eq!(c.read(1, Database::txid), 1, "not before the delay");
        c.tick(now + Duration::from_secs(2)).unwrap();
        assert_eq!(
            c.read(1, |d| d.get("a").map(str::to_owned)),
            Some("v".into())
        );
        assert!(file(&dir, "n2", "app.db-pos")
            .unwrap()
            .starts_with("0000000000000002/"));
        assert_eq!(file(&dir, "n2", ".lag").unwrap(), "+000000000\n");
        assert_eq!(file(&dir, "n2", ".primary").unwrap(), "n0\n");
    }

    #[test]
    fn lag_grows_between_heartbeats() {
        let (dir, c) = cluster(Duration::ZERO);
        let now = Instant::now() + Duration::from_secs(10);
        c.tick(now).unwrap(); // a heartbeat is due: heard now
        c.tick(now + Duration::from_millis(100)).unwrap();
        assert_eq!(file(&dir, "n1", ".lag").unwrap(), "+000000100\n");
        assert_eq!(file(&dir, "n0", ".lag").unwrap(), "+000000000\n");
    }

    #[tokio::test]
    async fn promotion_moves_the_role_and_the_data() {
        let (dir, c) = cluster(Duration::from_secs(60));
        c.write(0, put("a")).unwrap().unwrap();
        assert_eq!(c.promote(2).await.unwrap(), 0);
        assert_eq!(c.primary(), 2);
        assert_eq!(c.read(2, Database::txid), 2, "the new primary caught up");
        assert!(c.write(0, put("b")).unwrap().is_err());
        assert_eq!(c.write(2, put("b")).unwrap().unwrap().txid, 3);
        assert_eq!(file(&dir, "n2", ".primary"), None);
        assert_eq!(file(&dir, "n0", ".primary").unwrap(), "n2\n");
        assert_eq!(file(&dir, "n1", ".primary").unwrap(), "n2\n");
        // Node 1 still gets the first write, from the new primary's log.
        c.tick(Instant::now() + Duration::from_secs(120)).unwrap();
        assert_eq!(c.read(1, Database::txid), 3);
        assert!(matches!(
            c.promote(7).await,
            Err(PromoteError::NoSuchNode(7))
        ));
    }
}
