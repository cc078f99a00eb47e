//! The MySQL and MariaDB source (`[cluster] source = "mysql"`): polls this node's own server, a
//! primary or a GTID replica, over one long-lived connection.
//!
//! * flavour: configured, or asked once from `@@version` (on the first successful answer);
//! * role: see [`derive`] (replication configured is a replica; none and writable is the
//!   primary);
//! * primary: on a replica, the host it replicates from while its IO thread is connected (or
//!   the static `cluster.primary` instead);
//! * position: the number of transactions in the server's GTID set (MariaDB
//!   `gtid_current_pos` on the primary and `gtid_slave_pos` on a replica, MySQL
//!   `gtid_executed`), under one key for the cluster;
//! * lag: as for PostgreSQL, see [`derive`].
//!
//! While reads wait for a position the poll runs every [`crate::postgres::WAITING_POLL`].

mod connect;
mod derive;
mod query;

use std::sync::Arc;

use rwproxy_core::gtid::Flavor;
use rwproxy_core::{NodeState, Positions, Reading};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::postgres::derive::{LagTracker, Naming};
use crate::postgres::WAITING_POLL;
use crate::publish::Publisher;
use crate::{schedule, Demand, MysqlSpec};

pub use connect::check_url;
pub(crate) use connect::{redact, Connection};

/// Polls the server for ever, publishing each result.
pub(crate) async fn run(
    node: &Arc<str>,
    spec: &MysqlSpec,
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
    let flavor = FlavorCell::new(spec.flavor);
    let mut lag = LagTracker::default();
    loop {
        let state = match poll(&conn, &flavor).await {
            Ok(snapshot) => derive::derive(&naming, &snapshot, &mut lag, Instant::now()),
            Err(e) => NodeState::unknown(e.to_string()),
        };
        publisher.publish(state);
        if demand.active() > 0 {
            tokio::time::sleep(WAITING_POLL.min(spec.poll)).await;
        } else {
            schedule::pause(spec.poll, demand, None).await;
        }
    }
}

async fn poll(
    conn: &Connection,
    flavor: &FlavorCell,
) -> Result<query::Snapshot, crate::error::SourceError> {
    query::poll(conn, flavor.get(conn).await?).await
}

/// The configured flavour, or the one the server said it is (asked once, on first success).
#[derive(Debug)]
pub(crate) struct FlavorCell {
    cell: OnceCell<Flavor>,
}

impl FlavorCell {
    /// `configured`, or detect on first use.
    pub(crate) fn new(configured: Option<Flavor>) -> Self {
        FlavorCell {
            cell: configured.map_or_else(OnceCell::new, |f| OnceCell::new_with(Some(f))),
        }
    }

    async fn get(&self, conn: &Connection) -> Result<Flavor, crate::error::SourceError> {
        self.cell
            .get_or_try_init(|| query::flavor(conn))
            .await
            .copied()
    }
}

/// Reads the position a token must carry right after a write: every transaction the primary
/// has committed, counted. `None` when the server cannot answer now.
pub(crate) async fn token_position(
    conn: &Connection,
    flavor: &FlavorCell,
    key: &Arc<str>,
) -> Option<Reading> {
    let flavor = flavor.get(conn).await.ok()?;
    let committed = query::committed(conn, flavor).await.ok()?;
    Some(Reading::positions(Positions::from([(
        key.clone(),
        committed.count(),
    )])))
}
