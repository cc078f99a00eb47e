//! The SQL rwproxy sends, and reading its answers into a [`Snapshot`]. Text-protocol queries
//! only (one round trip each, no prepared statements to keep per connection). They need no
//! privilege beyond `REPLICATION CLIENT` (MySQL) or `SLAVE MONITOR` (MariaDB 10.5+).

use mysql_async::{Row, Value};
use rwproxy_core::gtid::Flavor;
use rwproxy_core::GtidSet;

use super::connect::Connection;
use crate::error::SourceError;

/// The server's variables, in one row: which server it is, whether it takes writes, and its
/// GTID positions. MariaDB's `gtid_current_pos` is every transaction this server has, whether
/// it wrote it or applied it; `gtid_slave_pos` what its SQL thread applied.
const MARIADB_VARIABLES: &str =
    "SELECT @@version, @@read_only, @@gtid_current_pos, @@gtid_slave_pos";
/// MySQL's `gtid_executed` is every transaction the server has, written or applied.
const MYSQL_VARIABLES: &str = "SELECT @@version, @@read_only, @@gtid_executed, @@gtid_executed";
/// The replication threads, where replication is configured (no row where it is not).
const MARIADB_STATUS: &str = "SHOW SLAVE STATUS";
const MYSQL_STATUS: &str = "SHOW REPLICA STATUS";

/// The token after a write: every transaction the primary has committed so far.
const MARIADB_TOKEN: &str = "SELECT @@gtid_current_pos";
const MYSQL_TOKEN: &str = "SELECT @@gtid_executed";

/// What one poll saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// `@@read_only` is off: the server takes writes.
    pub writable: bool,
    /// Every transaction the server has (a primary's position).
    pub current: GtidSet,
    /// What the SQL thread applied (a replica's position).
    pub applied: GtidSet,
    /// The replication threads; `None` when replication is not configured.
    pub replication: Option<Replication>,
}

/// The row of `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Replication {
    /// The host the replica replicates from.
    pub source_host: Option<String>,
    /// The IO thread is connected to its primary (`Yes`, not `Connecting` or `No`).
    pub receiving: bool,
    /// What the IO thread has received (MariaDB `Gtid_IO_Pos`, MySQL `Retrieved_Gtid_Set`).
    pub received: GtidSet,
}

/// The flavour from `@@version` (MariaDB says so in it; MySQL does not).
pub(crate) fn flavor_of(version: &str) -> Flavor {
    if version.contains("MariaDB") {
        Flavor::MariaDb
    } else {
        Flavor::MySql
    }
}

/// Detects the flavour (one query) unless it is configured.
pub(crate) async fn flavor(conn: &Connection) -> Result<Flavor, SourceError> {
    let rows = conn.query("SELECT @@version").await?;
    let version = rows.first().and_then(|row| text_at(row, 0));
    version
        .map(|v| flavor_of(&v))
        .ok_or_else(|| conn.unexpected("SELECT @@version gave no version"))
}

/// Runs the poll: the variables, then the replication status.
pub(crate) async fn poll(conn: &Connection, flavor: Flavor) -> Result<Snapshot, SourceError> {
    let (variables, status) = match flavor {
        Flavor::MariaDb => (MARIADB_VARIABLES, MARIADB_STATUS),
        Flavor::MySql => (MYSQL_VARIABLES, MYSQL_STATUS),
    };
    let rows = conn.query(variables).await?;
    let row = rows
        .first()
        .ok_or_else(|| conn.unexpected("the poll returned no row"))?;
    let status = conn.query(status).await?;
    parse_poll(row, status.first(), flavor).map_err(|reason| conn.unexpected(&reason))
}

/// Reads every transaction the primary has committed so far.
pub(crate) async fn committed(conn: &Connection, flavor: Flavor) -> Result<GtidSet, SourceError> {
    let sql = match flavor {
        Flavor::MariaDb => MARIADB_TOKEN,
        Flavor::MySql => MYSQL_TOKEN,
    };
    let rows = conn.query(sql).await?;
    rows.first()
        .and_then(|row| text_at(row, 0))
        .and_then(|text| GtidSet::parse_as(&text, flavor))
        .ok_or_else(|| conn.unexpected("the server gave no GTID position"))
}

fn parse_poll(vars: &Row, status: Option<&Row>, flavor: Flavor) -> Result<Snapshot, String> {
    let writable = match text_at(vars, 1).as_deref() {
        Some("0") => true,
        Some("1") => false,
        _ => return Err("@@read_only is not 0 or 1".to_owned()),
    };
    let replication = match status {
        None => None,
        Some(row) => Some(parse_status(row, flavor)?),
    };
    Ok(Snapshot {
        writable,
        current: gtids(text_at(vars, 2), "the server's GTID position", flavor)?,
        applied: gtids(text_at(vars, 3), "the applied GTID position", flavor)?,
        replication,
    })
}

/// A GTID text the server gave (NULL is the empty set), or why it is not one.
fn gtids(text: Option<String>, name: &str, flavor: Flavor) -> Result<GtidSet, String> {
    GtidSet::parse_as(text.as_deref().unwrap_or(""), flavor)
        .ok_or_else(|| format!("{name} is not a GTID set"))
}

fn parse_status(row: &Row, flavor: Flavor) -> Result<Replication, String> {
    let [host, io, received] = match flavor {
        Flavor::MariaDb => ["Master_Host", "Slave_IO_Running", "Gtid_IO_Pos"],
        Flavor::MySql => ["Source_Host", "Replica_IO_Running", "Retrieved_Gtid_Set"],
    };
    let column = |name: &str| {
        let index = row.columns_ref().iter().position(|c| c.name_str() == name);
        index
            .map(|i| text_at(row, i))
            .ok_or_else(|| format!("the replication status has no {name} column"))
    };
    Ok(Replication {
        source_host: column(host)?.filter(|h| !h.is_empty()),
        receiving: column(io)?.as_deref() == Some("Yes"),
        received: gtids(column(received)?, received, flavor)?,
    })
}

/// Column `index` as text; `None` for NULL or a missing column.
fn text_at(row: &Row, index: usize) -> Option<String> {
    match row.as_ref(index)? {
        Value::NULL => None,
        Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flavour_comes_from_the_version() {
        assert_eq!(flavor_of("10.11.19-MariaDB-0+deb12u1-log"), Flavor::MariaDb);
        assert_eq!(flavor_of("8.0.36"), Flavor::MySql);
        assert_eq!(flavor_of("8.4.0-commercial"), Flavor::MySql);
    }
}
