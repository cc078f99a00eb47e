//! One node's copy of the demo database: the notes, its TXID, whether it may be written (only
//! on the primary, as LiteFS makes SQLite read-only on replicas), and the commit log replicas
//! pull from. Pure data; the cluster module decides who writes and when replication happens.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// The TXID of a freshly created database (LiteFS numbers transactions from 1).
pub(crate) const FIRST_TXID: u64 = 1;

/// One change to the notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Store `value` under `key`.
    Put { key: String, value: String },
    /// Remove `key`.
    Delete { key: String },
}

/// One committed transaction, kept on the primary until every replica has applied it.
#[derive(Clone, Debug)]
pub(crate) struct Commit {
    pub(crate) txid: u64,
    /// When the primary committed it: replicas apply it `replication_delay` later.
    pub(crate) at: Instant,
    pub(crate) op: Op,
}

/// A write reached a read-only database (a replica's app was asked to write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadOnly;

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// The TXID after the write.
    pub(crate) txid: u64,
    /// False when the write changed nothing (deleting a missing note): no transaction.
    pub(crate) changed: bool,
    /// For a put: whether the key existed before.
    pub(crate) existed: bool,
}

/// One node's database.
#[derive(Debug)]
pub(crate) struct Database {
    notes: BTreeMap<String, String>,
    txid: u64,
    writable: bool,
    log: VecDeque<Commit>,
}

impl Database {
    /// An empty database at [`FIRST_TXID`].
    pub(crate) fn new(writable: bool) -> Self {
        Database {
            notes: BTreeMap::new(),
            txid: FIRST_TXID,
            writable,
            log: VecDeque::new(),
        }
    }

    pub(crate) fn txid(&self) -> u64 {
        self.txid
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.notes.get(key).map(String::as_str)
    }

    pub(crate) fn notes(&self) -> &BTreeMap<String, String> {
        &self.notes
    }

    /// Applies a write as the primary: a new transaction, logged for the replicas.
    pub(crate) fn write(&mut self, op: Op, now: Instant) -> Result<Written, ReadOnly> {
        if !self.writable {
            return Err(ReadOnly);
        }
        let existed = match &op {
            Op::Put { key, .. } | Op::Delete { key } => self.notes.contains_key(key),
        };
        if matches!(op, Op::Delete { .. }) && !existed {
            // Like `DELETE ... WHERE` matching no row: nothing to commit, the TXID stays.
            return Ok(Written {
                txid: self.txid,
                changed: false,
                existed,
            });
        }
        let commit = Commit {
            txid: self.txid + 1,
            at: now,
            op,
        };
        self.apply(&commit);
        self.log.push_back(commit);
        Ok(Written {
            txid: self.txid,
            changed: true,
            existed,
        })
    }

    /// Applies a commit replicated from the primary. Commits must arrive in order; one this
    /// database already has is skipped, so re-shipping a log is harmless.
    pub(crate) fn apply(&mut self, commit: &Commit) {
        if commit.txid <= self.txid {
            return;
        }
        match &commit.op {
            Op::Put { key, value } => {
                self.notes.insert(key.clone(), value.clone());
            }
            Op::Delete { key } => {
                self.notes.remove(key);
            }
        }
        self.txid = commit.txid;
    }

    /// The logged commits after `txid` that were committed at or before `until`, in order.
    pub(crate) fn commits_after(&self, txid: u64, until: Instant) -> Vec<Commit> {
        self.log
            .iter()
            .filter(|c| c.txid > txid && c.at <= until)
            .cloned()
            .collect()
    }

    /// Forgets logged commits up to `txid` (every replica has them).
    pub(crate) fn trim_log(&mut self, txid: u64) {
        while self.log.front().is_some_and(|c| c.txid <= txid) {
            self.log.pop_front();
        }
    }

    /// Hands the primary role over: this database stops taking writes and gives up its log.
    pub(crate) fn demote(&mut self) -> VecDeque<Commit> {
        self.writable = false;
        std::mem::take(&mut self.log)
    }

    /// Takes the primary role over: catches up on every commit of the old primary's log (LiteFS
    /// hands off only to a caught-up node), then keeps that log so the other replicas can still
    /// pull what they miss.
    pub(crate) fn promote(&mut self, log: VecDeque<Commit>) {
        for commit in &log {
            self.apply(commit);
        }
        self.log = log;
        self.writable = true;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn writes_bump_the_txid_and_replicas_refuse_them() {
        let now = Instant::now();
        let mut primary = Database::new(true);
        let written = primary.write(put("a", "1"), now).unwrap();
        assert_eq!(
            written,
            Written {
                txid: 2,
                changed: true,
                existed: false
            }
        );
        assert_eq!(primary.get("a"), Some("1"));
        let mut replica = Database::new(false);
        assert_eq!(replica.write(put("a", "2"), now), Err(ReadOnly));
        assert_eq!(replica.txid(), FIRST_TXID);
    }

    #[test]
    fn deleting_a_missing_note_commits_nothing() {
        let mut db = Database::new(true);
        let written = db
            .write(Op::Delete { key: "x".into() }, Instant::now())
            .unwrap();
        assert!(!written.changed);
        assert_eq!(db.txid(), FIRST_TXID);
        assert!(db.commits_after(0, Instant::now()).is_empty());
    }

    #[test]
    fn replicas_only_get_commits_old_enough_and_in_order() {
        let start = Instant::now();
        let mut primary = Database::new(true);
        primary.write(put("a", "1"), start).unwrap();
        primary
            .write(put("b", "2"), start + Duration::from_secs(1))
            .unwrap();
        let mut replica = Database::new(false);
        for commit in primary.commits_after(replica.txid(), start) {
            replica.apply(&commit);
        }
        assert_eq!(
            (replica.txid(), replica.get("a"), replica.get("b")),
            (2, Some("1"), None)
        );
        for commit in primary.commits_after(0, start + Duration::from_secs(1)) {
            replica.apply(&commit);
        }
        assert_eq!((replica.txid(), replica.get("b")), (3, Some("2")));
        primary.trim_log(2);
        assert_eq!(
            primary
                .commits_after(0, start + Duration::from_secs(9))
                .len(),
            1
        );
    }

    #[test]
    fn promotion_catches_up_and_keeps_the_log() {
        let now = Instant::now();
        let mut old = Database::new(true);
        old.write(put("a", "1"), now).unwrap();
        let mut new = Database::new(false);
        new.promote(old.demote());
        assert!(!old.is_writable() && new.is_writable());
        assert_eq!((new.txid(), new.get("a")), (2, Some("1")));
        // A replica that had nothing still finds the commit on the new primary.
        assert_eq!(new.commits_after(FIRST_TXID, now).len(), 1);
        assert_eq!(old.write(put("b", "2"), now), Err(ReadOnly));
    }
}
