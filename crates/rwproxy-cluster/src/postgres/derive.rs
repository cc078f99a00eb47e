//! Turning a poll's [`Snapshot`] into a [`NodeState`], and the lag estimate.
//!
//! # Lag
//!
//! PostgreSQL has no "seconds behind" that is right on an idle cluster
//! (`now() - pg_last_xact_replay_timestamp()` grows while nobody writes), so rwproxy measures
//! lag itself, from positions it already polls, at no extra cost to the server:
//!
//! * the **target** is the furthest WAL position the replica knows the primary has: the
//!   larger of `pg_last_wal_receive_lsn()` and the receiver's `latest_end_lsn`;
//! * every poll that sees the target ahead of the replay position notes `(target, now)`;
//! * the lag is the age of the oldest noted target the replay position has not reached, and
//!   zero when replay has caught up with everything noted.
//!
//! So an idle cluster reads as fresh, replay that is paused or slow while the primary writes
//! grows a lag from the first poll that saw WAL it had not replayed, and a WAL record applied
//! within one poll never shows as lag. When the WAL receiver is not streaming (cut off from
//! the primary), the lag keeps growing from the last poll that saw it streaming: rwproxy cannot
//! know what the primary wrote since. A replica that was never seen streaming has an unknown
//! lag. The estimate's resolution is one `poll` (and it is published in 100 ms steps); WAL the
//! primary has not yet sent is invisible.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{NodeState, Positions, Role};
use tokio::time::Instant;

use super::query::Snapshot;

/// Most noted targets kept; past it the newest is moved forward in place, which can only make
/// the lag look larger (never smaller) than it is.
const MAX_NOTED: usize = 256;

/// Remembers when targets were first seen, and when the receiver was last seen streaming.
#[derive(Debug, Default)]
pub(crate) struct LagTracker {
    /// Targets the replay position had not reached when seen, oldest first, strictly increasing.
    noted: VecDeque<(u64, Instant)>,
    /// The last poll that saw the receiver streaming, and the lag then.
    last_streaming: Option<(Instant, Duration)>,
    /// The timeline and its history, the other thing a poll remembers (see [`super::timeline`]).
    pub(crate) timeline: super::TimelineTracker,
}

impl LagTracker {
    /// The lag of a replica at `replay`, given the target it knows (if streaming).
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        replay: u64,
        streaming_target: Option<u64>,
    ) -> Option<Duration> {
        if let Some(target) = streaming_target {
            self.note(now, replay, target);
        }
        while self.noted.front().is_some_and(|(lsn, _)| *lsn <= replay) {
            self.noted.pop_front();
        }
        let behind = self.noted.front().map_or(Duration::ZERO, |(_, seen)| {
            now.saturating_duration_since(*seen)
        });
        match streaming_target {
            Some(_) => {
                self.last_streaming = Some((now, behind));
                Some(behind)
            }
            None => self.last_streaming.map(|(seen, lag_then)| {
                (lag_then + now.saturating_duration_since(seen)).max(behind)
            }),
        }
    }

    fn note(&mut self, now: Instant, replay: u64, target: u64) {
        if target <= replay || self.noted.back().is_some_and(|(lsn, _)| *lsn >= target) {
            return;
        }
        if self.noted.len() >= MAX_NOTED {
            if let Some(newest) = self.noted.back_mut() {
                newest.0 = target;
            }
            return;
        }
        self.noted.push_back((target, now));
    }
}

/// The settings derivation needs.
#[derive(Debug)]
pub(crate) struct Naming<'a> {
    /// This node's name (the primary's name when this node is the primary).
    pub node: &'a Arc<str>,
    /// The key of the one position in [`NodeState::positions`].
    pub position_key: &'a Arc<str>,
    /// `cluster.primary`: the name used for the primary instead of `sender_host`.
    pub primary_override: Option<&'a Arc<str>>,
}

/// The node's state from one poll.
pub(crate) fn derive(
    naming: &Naming<'_>,
    snapshot: &Snapshot,
    lag: &mut LagTracker,
    now: Instant,
) -> NodeState {
    let positions: Positions = snapshot
        .position
        .map(|p| (naming.position_key.clone(), p))
        .into_iter()
        .collect();
    if !snapshot.in_recovery {
        return NodeState {
            role: Role::Primary,
            primary: Some(naming.node.clone()),
            positions,
            lag: Some(Duration::ZERO),
            ready: snapshot.position.is_some(),
            problem: None,
            ..NodeState::default()
        };
    }
    let streaming = snapshot.receiver.as_ref().filter(|r| r.streaming);
    let primary = streaming.and_then(|r| match naming.primary_override {
        Some(name) => Some(name.clone()),
        None => r.sender_host.as_deref().map(host_name),
    });
    let lag = match snapshot.position {
        Some(replay) => {
            let target = streaming.map(|r| {
                let received = snapshot.received.unwrap_or(0);
                received.max(r.latest_end.unwrap_or(0))
            });
            lag.observe(now, replay, target).map(in_steps)
        }
        None => None,
    };
    NodeState {
        role: Role::Replica,
        primary,
        positions,
        lag,
        ready: snapshot.position.is_some(),
        problem: None,
        ..NodeState::default()
    }
}

/// Published lag moves in steps of this size. Every change of the published state wakes every
/// read waiting for a token; a lag that grew by a few milliseconds on each fast poll would wake
/// them all 200 times a second for nothing.
const LAG_STEP: Duration = Duration::from_millis(100);

/// `lag` rounded down to a whole [`LAG_STEP`].
pub(crate) fn in_steps(lag: Duration) -> Duration {
    let step = LAG_STEP.as_nanos();
    let steps = lag.as_nanos() / step;
    Duration::from_nanos(u64::try_from(steps * step).unwrap_or(u64::MAX))
}

/// `sender_host` as a name for `{primary}` in `writes.primary_url`: an IPv6 address gets its
/// brackets, a Unix socket directory (the primary on this machine) becomes `localhost`.
pub(crate) fn host_name(host: &str) -> Arc<str> {
    if host.starts_with('/') {
        Arc::from("localhost")
    } else if host.contains(':') && !host.starts_with('[') {
        Arc::from(format!("[{host}]"))
    } else {
        Arc::from(host)
    }
}

#[cfg(test)]
mod tests {
    use super::super::query::Receiver;
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn naming<'a>(node: &'a Arc<str>, key: &'a Arc<str>) -> Naming<'a> {
        Naming {
            node,
            position_key: key,
            primary_override: None,
        }
    }

    fn replica(replay: u64, received: u64, streaming: bool) -> Snapshot {
        Snapshot {
            in_recovery: true,
            position: Some(replay),
            received: Some(received),
            receiver: Some(Receiver {
                streaming,
                sender_host: Some("10.0.0.1".into()),
                latest_end: Some(received),
            }),
            timeline: Some(1),
        }
    }

    #[test]
    fn a_server_out_of_recovery_is_the_primary_of_itself() {
        let (node, key) = (Arc::from("me"), Arc::from("wal"));
        let snapshot = Snapshot {
            in_recovery: false,
            position: Some(42),
            received: None,
            receiver: None,
            timeline: Some(1),
        };
        let state = derive(
            &naming(&node, &key),
            &snapshot,
            &mut LagTracker::default(),
            Instant::now(),
        );
        assert_eq!(state.role, Role::Primary);
        assert_eq!(state.primary.as_deref(), Some("me"));
        assert_eq!(state.position("wal"), Some(42));
        assert_eq!(state.lag, Some(Duration::ZERO));
        assert!(state.ready);
    }

    #[test]
    fn a_streaming_replica_follows_its_sender_or_the_override() {
        let (node, key, fixed) = (Arc::from("me"), Arc::from("wal"), Arc::from("pg-primary"));
        let now = Instant::now();
        let state = derive(
            &naming(&node, &key),
            &replica(7, 7, true),
            &mut LagTracker::default(),
            now,
        );
        assert_eq!(state.role, Role::Replica);
        assert_eq!(state.primary.as_deref(), Some("10.0.0.1"));
        assert_eq!(state.position("wal"), Some(7));
        assert_eq!(state.lag, Some(Duration::ZERO));
        let mut named = naming(&node, &key);
        named.primary_override = Some(&fixed);
        let state = derive(
            &named,
            &replica(7, 7, true),
            &mut LagTracker::default(),
            now,
        );
        assert_eq!(state.primary.as_deref(), Some("pg-primary"));
        // Not streaming: no primary known, whatever the override says.
        let state = derive(
            &named,
            &replica(7, 7, false),
            &mut LagTracker::default(),
            now,
        );
        assert_eq!(state.primary, None);
        assert_eq!(state.lag, None, "never seen streaming: lag unknown");
    }

    #[test]
    fn published_lag_moves_in_steps() {
        assert_eq!(in_steps(Duration::from_millis(99)), Duration::ZERO);
        assert_eq!(
            in_steps(Duration::from_millis(1_250)),
            Duration::from_millis(1_200)
        );
        assert_eq!(in_steps(4 * SECOND), 4 * SECOND);
    }

    #[test]
    fn sender_hosts_become_usable_names() {
        assert_eq!(&*host_name("10.0.0.1"), "10.0.0.1");
        assert_eq!(&*host_name("::1"), "[::1]");
        assert_eq!(&*host_name("/var/run/postgresql"), "localhost");
        assert_eq!(&*host_name("pg-1.internal"), "pg-1.internal");
    }

    #[test]
    fn an_idle_cluster_is_fresh_however_long_it_idles() {
        let mut lag = LagTracker::default();
        let start = Instant::now();
        for hour in 0..3 {
            let now = start + Duration::from_secs(3600 * hour);
            assert_eq!(lag.observe(now, 100, Some(100)), Some(Duration::ZERO));
        }
    }

    #[test]
    fn wal_applied_within_a_poll_is_no_lag() {
        let mut lag = LagTracker::default();
        let start = Instant::now();
        assert_eq!(lag.observe(start, 100, Some(150)), Some(Duration::ZERO));
        assert_eq!(
            lag.observe(start + SECOND / 10, 150, Some(150)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn paused_replay_while_the_primary_writes_grows_a_lag_that_recovers() {
        let mut lag = LagTracker::default();
        let start = Instant::now();
        assert_eq!(lag.observe(start, 100, Some(100)), Some(Duration::ZERO));
        lag.observe(start + SECOND, 100, Some(200));
        lag.observe(start + 2 * SECOND, 100, Some(300));
        assert_eq!(
            lag.observe(start + 5 * SECOND, 100, Some(300)),
            Some(4 * SECOND)
        );
        // Replay resumes part-way: the lag is the age of the oldest WAL still not replayed.
        assert_eq!(
            lag.observe(start + 6 * SECOND, 250, Some(300)),
            Some(4 * SECOND)
        );
        assert_eq!(
            lag.observe(start + 7 * SECOND, 300, Some(300)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_replica_cut_off_from_its_primary_has_a_growing_lag() {
        let mut lag = LagTracker::default();
        let start = Instant::now();
        assert_eq!(lag.observe(start, 100, Some(100)), Some(Duration::ZERO));
        assert_eq!(lag.observe(start + SECOND, 100, None), Some(SECOND));
        assert_eq!(lag.observe(start + 9 * SECOND, 100, None), Some(9 * SECOND));
        // Streaming again and caught up: fresh.
        assert_eq!(
            lag.observe(start + 10 * SECOND, 100, Some(100)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_full_record_only_overestimates() {
        let mut lag = LagTracker::default();
        let start = Instant::now();
        for i in 0..(MAX_NOTED as u64 + 50) {
            lag.observe(start + SECOND * (i as u32), 0, Some(i + 1));
        }
        assert_eq!(lag.noted.len(), MAX_NOTED);
        let now = start + SECOND * 1000;
        // Replay passed everything but the last target: the newest record's time is older
        // than that target really is, never newer.
        let last = MAX_NOTED as u64 + 50;
        let reported = lag.observe(now, last - 1, Some(last)).expect("streaming");
        assert!(reported >= now - (start + SECOND * (last as u32 - 1)));
    }
}
