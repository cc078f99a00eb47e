//! The PostgreSQL source (`[cluster] source = "postgres"`): polls this node's own server, a
//! primary or a streaming replica, over one long-lived connection.
//!
//! * role: `pg_is_in_recovery()`; out of recovery is the primary;
//! * primary: on a replica, the WAL receiver's `sender_host` while it streams (or the static
//!   `cluster.primary` instead); no streaming receiver means no primary known;
//! * position: the primary's written WAL position (`pg_current_wal_lsn()`), a replica's replay
//!   position (`pg_last_wal_replay_lsn()`), as a 64-bit LSN under one key for the cluster;
//! * lag: see [`derive`].
//!
//! While reads wait for a position the poll runs every [`WAITING_POLL`] (at most 200 one-row
//! queries a second), not every [`crate::FAST_POLL`].

mod connect;
pub(crate) mod derive;
mod query;
mod timeline;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{NodeState, Positions, Reading};
use tokio::time::Instant;

use crate::publish::Publisher;
use crate::{schedule, Demand, PostgresSpec};

pub use connect::check_url;
pub(crate) use connect::{redact, Connection};
pub(crate) use derive::{host_name, LagTracker, Naming};
pub(crate) use timeline::TimelineTracker;

/// Poll interval while a read waits for this node to reach its token: the server sees at most
/// 200 cheap queries a second however many reads wait.
pub(crate) const WAITING_POLL: Duration = Duration::from_millis(5);

/// Polls the server for ever, publishing each result.
pub(crate) async fn run(
    node: &Arc<str>,
    spec: &PostgresSpec,
    demand: &Demand,
    publisher: &mut Publisher,
) {
    let conn = Connection::new(spec);
    let key: Arc<str> = Arc::from(spec.position_key.as_str());
    let fixed_primary: Option<Arc<str>> = spec.primary.as_deref().map(Arc::from);
    let naming = Naming {
        node,
        position_key: &key,
        primary_override: fixed_primary.as_ref(),
    };
    let mut lag = LagTracker::default();
    loop {
        let state = poll_state(&conn, &naming, &mut lag).await;
        publisher.publish(state);
        if demand.active() > 0 {
            tokio::time::sleep(WAITING_POLL.min(spec.poll)).await;
        } else {
            schedule::pause(spec.poll, demand, None).await;
        }
    }
}

/// One poll of the server, derived into this node's state (unknown when the poll fails), with
/// the timeline history in [`NodeState::timeline`]. The Patroni source composes exactly this.
pub(crate) async fn poll_state(
    conn: &Connection,
    naming: &Naming<'_>,
    lag: &mut LagTracker,
) -> NodeState {
    match query::poll(conn).await {
        Ok(snapshot) => {
            let mut state = derive::derive(naming, &snapshot, lag, Instant::now());
            lag.timeline.follow(conn, &snapshot).await;
            state.timeline = lag.timeline.published();
            state
        }
        Err(e) => NodeState::unknown(e.to_string()),
    }
}

/// Reads the position a token must carry right after a write: the primary's insert position,
/// and beside it the timeline it is on (issued as the token's `rwproxy-timeline`), read
/// together; on a replica, after a read it served, its replay position. `None` when the server
/// cannot answer now.
pub(crate) async fn token_position(conn: &Connection, key: &Arc<str>) -> Option<Reading> {
    let (position, timeline) = query::insert_position_timeline(conn).await.ok()?;
    Some(Reading {
        positions: Positions::from([(key.clone(), position)]),
        timeline,
    })
}
