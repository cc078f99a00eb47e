//! rwproxy nodes in front of PostgreSQL servers: the items app ([`crate::pg_app::PgApp`]) behind an rwproxy
//! with the postgres source, and a primary + streaming replica pair of them.

use rwproxy::config;

use crate::pg_app::PgStore;
use crate::postgres::{PgBin, PgServer, MONITOR_USER};
use crate::sql_node::{until_paired, SqlNode};

pub use crate::sql_node::WAIT;

/// A node in front of PostgreSQL.
pub type PgNode = SqlNode<PgStore>;

/// A primary and a streaming replica with a node each (the replica's adjusted by `tweak`);
/// `None` (skip) without PostgreSQL.
pub async fn pair(
    tweak: impl FnOnce(&mut config::Config),
) -> Option<(PgServer, PgServer, PgNode, PgNode)> {
    let bin = PgBin::find()?;
    let primary = PgServer::primary(&bin).await;
    let replica = PgServer::replica_of(&primary);
    let p = PgNode::start(
        &primary.url(MONITOR_USER),
        &primary.url("postgres"),
        None,
        |_| {},
    )
    .await;
    let r = PgNode::start(
        &replica.url(MONITOR_USER),
        &replica.url("postgres"),
        Some(&p.name),
        tweak,
    )
    .await;
    until_paired(&p, &r).await;
    Some((primary, replica, p, r))
}
