//! Following this server's timeline and its history, published beside the WAL position so the
//! request path can tell a token whose write a failover lost (see `rwproxy_core::timeline`).
//!
//! * the current timeline comes with every poll (a primary's insertion timeline, a replica's
//!   receiving timeline);
//! * when it changes, the new timeline's history file is read once with `pg_read_file`, which
//!   gives every ancestor's exact switch point, if the role may (superuser,
//!   `pg_read_server_files`, or `GRANT EXECUTE ON FUNCTION pg_read_file(text)`);
//! * otherwise a primary that the source saw change timeline records its first position on the
//!   new timeline as the old one's switch point: an upper bound, so tokens between the real
//!   switch point and it are not detected, and no kept write is ever called lost. A replica
//!   without the file knows its timeline only, and detects nothing.

use std::sync::Arc;

use rwproxy_core::timeline::History;

use super::connect::Connection;
use super::query::{self, Snapshot};

/// What the source knows of the timeline history, across polls.
#[derive(Debug, Default)]
pub(crate) struct TimelineTracker {
    /// The history as known now.
    pub history: History,
    /// The timeline whose history file was last asked for (once per timeline).
    file_asked_for: u32,
    /// The history as last published: shared by every poll's state while it does not change.
    published: Option<Arc<History>>,
}

impl TimelineTracker {
    /// Folds in one poll, reading the history file when the timeline is new.
    pub(crate) async fn follow(&mut self, conn: &Connection, snapshot: &Snapshot) {
        let Some(now) = snapshot.timeline else {
            return;
        };
        self.observe(snapshot.in_recovery, now, snapshot.position);
        if now > 1 && self.file_asked_for != now {
            self.file_asked_for = now;
            if let Some(exact) = query::history_file(conn, now)
                .await
                .and_then(|text| History::parse(now, &text))
            {
                self.history = exact;
            }
        }
    }

    /// The history to publish in the node's state; `None` until a timeline is known.
    pub(crate) fn published(&mut self) -> Option<Arc<History>> {
        if self.history.current == 0 {
            return None;
        }
        if self.published.as_deref() != Some(&self.history) {
            self.published = Some(Arc::new(self.history.clone()));
        }
        self.published.clone()
    }

    /// The bookkeeping of [`TimelineTracker::follow`] without the file.
    fn observe(&mut self, in_recovery: bool, now: u32, position: Option<u64>) {
        let before = self.history.current;
        if now == before {
            return;
        }
        match position {
            // Promoted under our eyes: the first position on the new timeline bounds the
            // switch point from above.
            Some(first_seen) if !in_recovery && before != 0 && now > before => {
                self.history.observe_switch(before, now, first_seen);
            }
            // A replica following a new timeline, or the first poll: ancestors stay as known.
            _ if now > before => self.history.current = now,
            // Back to an older timeline (a rebuilt node): what was known is not its history.
            _ => self.history = History::from_current(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rwproxy_core::timeline::{TimelineMark, Verdict};

    #[test]
    fn a_promotion_seen_by_the_source_bounds_the_switch_point() {
        let mut t = TimelineTracker::default();
        t.observe(true, 1, Some(0x100));
        assert_eq!(t.history, History::from_current(1));
        let first = t.published().expect("a timeline");
        assert!(Arc::ptr_eq(&first, &t.published().expect("same")), "shared");
        t.observe(true, 1, Some(0x200));
        t.observe(false, 2, Some(0x300));
        assert_eq!(t.history.current, 2);
        assert_eq!(t.published().as_deref(), Some(&t.history), "a new one");
        assert_eq!(TimelineTracker::default().published(), None);
        let mark = Some(TimelineMark(1));
        assert_eq!(t.history.verdict(mark, 0x300), Verdict::Kept);
        assert!(matches!(
            t.history.verdict(mark, 0x301),
            Verdict::Lost { .. }
        ));
    }

    #[test]
    fn a_replica_moving_on_and_a_node_going_back_record_no_switch() {
        let mut t = TimelineTracker::default();
        t.observe(true, 1, Some(0x100));
        t.observe(true, 2, Some(0x300));
        assert_eq!(t.history, History::from_current(2));
        let mut promoted = TimelineTracker::default();
        promoted.observe(true, 1, Some(0x100));
        promoted.observe(false, 2, Some(0x300));
        promoted.observe(true, 1, Some(0x400));
        assert_eq!(promoted.history, History::from_current(1));
    }
}
