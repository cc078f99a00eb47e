//! rwproxy nodes in front of MariaDB servers: the items app ([`crate::my_app::MyApp`]) behind an rwproxy with
//! the mysql source, and a primary + GTID replica pair of them.

use rwproxy::config;

use crate::mariadb::{MariaBin, MariaServer, APP_USER, MONITOR_USER};
use crate::my_app::MyStore;
use crate::sql_node::{until_paired, SqlNode};

/// A node in front of MariaDB.
pub type MyNode = SqlNode<MyStore>;

/// A primary and a GTID replica with a node each (the replica's adjusted by `tweak`); `None`
/// (skip) without MariaDB.
pub async fn pair(
    tweak: impl FnOnce(&mut config::Config),
) -> Option<(MariaServer, MariaServer, MyNode, MyNode)> {
    let bin = MariaBin::find()?;
    let primary = MariaServer::primary(&bin).await;
    let replica = MariaServer::replica_of(&primary, 2).await;
    let p = MyNode::start(
        &primary.url(MONITOR_USER),
        &primary.url(APP_USER),
        None,
        |_| {},
    )
    .await;
    let r = MyNode::start(
        &replica.url(MONITOR_USER),
        &replica.url(APP_USER),
        Some(&p.name),
        tweak,
    )
    .await;
    until_paired(&p, &r).await;
    Some((primary, replica, p, r))
}
