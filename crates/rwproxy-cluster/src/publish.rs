//! The single writer of the state channel: publishes only real changes and logs transitions
//! once (not once per poll).

use std::sync::Arc;

use rwproxy_core::NodeState;
use tokio::sync::watch;

/// Owns the sender; exactly one source task holds it.
#[derive(Debug)]
pub(crate) struct Publisher {
    tx: watch::Sender<NodeState>,
    source: &'static str,
    log: TransitionLog,
}

impl Publisher {
    /// A publisher for the source named `source` (a log field).
    pub(crate) fn new(tx: watch::Sender<NodeState>, source: &'static str) -> Self {
        Publisher {
            tx,
            source,
            log: TransitionLog::default(),
        }
    }

    /// The source's name, for logs.
    pub(crate) fn source(&self) -> &'static str {
        self.source
    }

    /// Publishes `next` if it differs from the current value (positions and lag included);
    /// receivers wake only then. Returns whether it changed.
    pub(crate) fn publish(&mut self, next: NodeState) -> bool {
        let note = self.log.note(&self.tx.borrow(), &next);
        if let Some(note) = note {
            self.emit(note, &next);
        }
        // This task is the only writer, so comparing inside the closure is the whole story.
        self.tx.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        })
    }

    fn emit(&self, note: Note, state: &NodeState) {
        let role = state.role.as_str();
        let primary = state.primary.as_deref().unwrap_or("-");
        let lag_ms = state.lag.map(|l| l.as_millis());
        match note {
            Note::Failing(problem) => tracing::warn!(
                source = self.source,
                %problem,
                "cluster state unknown: no local writes until the source recovers"
            ),
            Note::Recovered => tracing::info!(
                source = self.source,
                role,
                primary,
                ready = state.ready,
                lag_ms,
                "cluster state source recovered"
            ),
            Note::Changed => tracing::info!(
                source = self.source,
                role,
                primary,
                ready = state.ready,
                lag_ms,
                "cluster state changed"
            ),
        }
    }
}

/// What deserves a log line when going from one state to the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// The source fails with a new problem text.
    Failing(Arc<str>),
    /// The source works again after failing.
    Recovered,
    /// Role, primary or readiness changed while the source works.
    Changed,
}

/// Remembers the last problem logged, so a steady failure logs once.
#[derive(Debug, Default)]
pub(crate) struct TransitionLog {
    logged_problem: Option<Arc<str>>,
}

impl TransitionLog {
    /// The note for the move from `prev` to `next`, if any. The channel's initial "starting"
    /// value is never logged as a problem: it was not published by a source.
    pub(crate) fn note(&mut self, prev: &NodeState, next: &NodeState) -> Option<Note> {
        if next.problem != self.logged_problem {
            self.logged_problem.clone_from(&next.problem);
            // No problem now and a different one logged: a problem was logged, so it recovered.
            return Some(match &next.problem {
                Some(problem) => Note::Failing(problem.clone()),
                None => Note::Recovered,
            });
        }
        (next.problem.is_none() && changed(prev, next)).then_some(Note::Changed)
    }
}

/// Lag and positions move all the time; only these are worth a log line.
fn changed(prev: &NodeState, next: &NodeState) -> bool {
    prev.role != next.role || prev.primary != next.primary || prev.ready != next.ready
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rwproxy_core::{Positions, Role};

    use super::*;
    use crate::test_support::Logs;

    fn replica(pos: u64, lag_ms: u64) -> NodeState {
        NodeState {
            role: Role::Replica,
            primary: Some("p".into()),
            positions: Positions::from([(Arc::from("app.db"), pos)]),
            lag: Some(Duration::from_millis(lag_ms)),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    #[test]
    fn a_steady_failure_is_noted_once_and_recovery_once() {
        let mut log = TransitionLog::default();
        let starting = NodeState::unknown("starting");
        let down = NodeState::unknown("mount missing");
        assert_eq!(
            log.note(&starting, &down),
            Some(Note::Failing("mount missing".into()))
        );
        assert_eq!(log.note(&down, &down), None);
        assert_eq!(log.note(&down, &down), None);
        let other = NodeState::unknown("lag malformed");
        assert_eq!(
            log.note(&down, &other),
            Some(Note::Failing("lag malformed".into()))
        );
        let up = replica(1, 5);
        assert_eq!(log.note(&other, &up), Some(Note::Recovered));
        assert_eq!(
            log.note(&up, &replica(2, 7)),
            None,
            "positions and lag move silently"
        );
        let mut promoted = replica(2, 0);
        promoted.role = Role::Primary;
        assert_eq!(log.note(&up, &promoted), Some(Note::Changed));
    }

    #[test]
    fn first_good_read_is_a_change_not_a_recovery() {
        let mut log = TransitionLog::default();
        assert_eq!(
            log.note(&NodeState::unknown("starting"), &replica(1, 0)),
            Some(Note::Changed)
        );
    }

    #[test]
    fn a_change_of_role_primary_or_readiness_alone_is_noted() {
        let up = replica(1, 5);
        let mut log = TransitionLog::default();
        let moved = NodeState {
            primary: Some("p2".into()),
            ..up.clone()
        };
        assert_eq!(log.note(&up, &moved), Some(Note::Changed), "primary");
        let syncing = NodeState {
            ready: false,
            ..up.clone()
        };
        assert_eq!(log.note(&up, &syncing), Some(Note::Changed), "readiness");
        let promoted = NodeState {
            role: Role::Primary,
            ..up.clone()
        };
        assert_eq!(log.note(&up, &promoted), Some(Note::Changed), "role");
    }

    #[test]
    fn a_steady_failure_is_not_noted_as_a_change() {
        let mut log = TransitionLog::default();
        let down = NodeState::unknown("mount missing");
        let up = replica(1, 5);
        assert!(log.note(&up, &down).is_some());
        // Same problem text again, even from a state that differs in role: nothing new.
        assert_eq!(log.note(&up, &down), None);
    }

    #[test]
    fn transitions_are_logged_with_the_state() {
        let (tx, _rx) = watch::channel(NodeState::unknown("starting"));
        let mut publisher = Publisher::new(tx, "litefs");
        let logs = Logs::capture();

        publisher.publish(NodeState::unknown("mount missing"));
        let text = logs.take();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains("cluster state unknown"), "{text}");
        assert!(text.contains("problem=mount missing"), "{text}");
        assert!(text.contains("source=\"litefs\""), "{text}");

        publisher.publish(NodeState::unknown("mount missing"));
        let text = logs.take();
        assert_eq!(text, "", "a steady failure logs once");

        publisher.publish(replica(1, 5));
        let text = logs.take();
        assert!(text.contains("INFO"), "{text}");
        assert!(text.contains("cluster state source recovered"), "{text}");
        for field in [
            "role=\"replica\"",
            "primary=\"p\"",
            "ready=true",
            "lag_ms=5",
        ] {
            assert!(text.contains(field), "{field}: {text}");
        }

        publisher.publish(replica(2, 9));
        let text = logs.take();
        assert_eq!(text, "", "positions and lag move silently");

        publisher.publish(NodeState {
            role: Role::Primary,
            primary: None,
            lag: None,
            ..replica(3, 0)
        });
        let text = logs.take();
        assert!(text.contains("cluster state changed"), "{text}");
        for field in ["role=\"primary\"", "primary=\"-\""] {
            assert!(text.contains(field), "{field}: {text}");
        }
        assert!(
            !text.contains("lag_ms"),
            "an unknown lag is left out: {text}"
        );
    }

    #[tokio::test]
    async fn receivers_wake_only_on_real_changes() {
        let (tx, mut rx) = watch::channel(NodeState::unknown("starting"));
        let mut publisher = Publisher::new(tx, "test");
        assert!(publisher.publish(replica(1, 5)));
        assert!(rx.has_changed().expect("open"));
        rx.borrow_and_update();
        assert!(!publisher.publish(replica(1, 5)));
        assert!(!rx.has_changed().expect("open"));
        assert!(
            publisher.publish(replica(2, 5)),
            "a position change is a change"
        );
        assert!(rx.has_changed().expect("open"));
        assert_eq!(rx.borrow_and_update().position("app.db"), Some(2));
    }
}
