//! The SQL rwproxy sends, and parsing its text answers. Simple queries (one round trip, no
//! prepared statements to keep per connection), results as text.

use tokio_postgres::SimpleQueryMessage;

use super::connect::Connection;
use crate::error::SourceError;

/// The poll: role, position and the WAL receiver, in one row. `pg_current_wal_lsn()` fails
/// during recovery, so the CASE asks it only of a primary (volatile functions are not folded).
/// The LEFT JOIN keeps the row when there is no WAL receiver. The last column is the timeline:
/// a primary's insertion timeline (the first 8 hex digits of its current WAL file's name;
/// `pg_walfile_name` fails during recovery), a replica's receiving timeline.
const POLL: &str = "SELECT pg_is_in_recovery(), \
     CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, \
     pg_last_wal_receive_lsn(), r.status, r.sender_host, r.latest_end_lsn, r.pid, \
     CASE WHEN pg_is_in_recovery() THEN r.received_tli::bigint \
     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END \
     FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true";

/// The token after a write: the end of the WAL inserted so far. It covers the write's commit
/// record even when the app committed with `synchronous_commit = off` (acknowledged before the
/// WAL is written or flushed); a replica reaches it once the WAL writer has sent it.
/// The name of the WAL file holding it carries the timeline the write is on.
///
/// On a replica (a `reads-too` token after a read it served) it is the replay position, read
/// after the read: an upper bound of what the read saw, where the last poll's position may be
/// below it (the history checker found monotonic reads broken that way against Patroni). Its
/// timeline is the WAL receiver's, as in the poll (none without a receiver).
const INSERT_POSITION_TIMELINE: &str = "SELECT CASE WHEN pg_is_in_recovery() \
     THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_insert_lsn()) END, \
     (SELECT received_tli FROM pg_stat_wal_receiver)";

/// What one poll saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// `pg_is_in_recovery()`: a standby (or a server still starting up).
    pub in_recovery: bool,
    /// The primary's written WAL position, or a replica's replay position.
    pub position: Option<u64>,
    /// A replica's `pg_last_wal_receive_lsn()` (flushed received WAL).
    pub received: Option<u64>,
    /// The WAL receiver, when one runs.
    pub receiver: Option<Receiver>,
    /// The primary's insertion timeline or the replica's receiving timeline, when known.
    pub timeline: Option<u32>,
}

/// The row of `pg_stat_wal_receiver`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Receiver {
    /// `status = 'streaming'`.
    pub streaming: bool,
    /// The host the replica streams from.
    pub sender_host: Option<String>,
    /// The primary's WAL end as last reported to this replica.
    pub latest_end: Option<u64>,
}

/// Runs the poll query.
pub(crate) async fn poll(conn: &Connection) -> Result<Snapshot, SourceError> {
    let messages = conn.simple_query(POLL).await?;
    let row = first_row(&messages).ok_or_else(|| conn.unexpected("the poll returned no row"))?;
    parse_poll(row).map_err(|reason| conn.unexpected(&reason))
}

/// Reads the primary's insert position and its timeline, or a replica's replay position and
/// its receiving timeline.
pub(crate) async fn insert_position_timeline(
    conn: &Connection,
) -> Result<(u64, Option<u32>), SourceError> {
    let messages = conn.simple_query(INSERT_POSITION_TIMELINE).await?;
    let row = first_row(&messages);
    let position = row
        .and_then(|row| row.get(0))
        .and_then(parse_lsn)
        .ok_or_else(|| conn.unexpected("pg_current_wal_insert_lsn() gave no position"))?;
    let timeline = row
        .and_then(|row| row.get(1))
        .and_then(rwproxy_core::timeline::timeline_of_walfile)
        .or_else(|| row.and_then(|row| row.get(2)).and_then(|t| t.parse().ok()));
    Ok((position, timeline))
}

/// The text of timeline `timeline`'s history file, when the role may read it
/// (`pg_read_file` needs superuser, `pg_read_server_files` or a grant); `None` otherwise.
pub(crate) async fn history_file(conn: &Connection, timeline: u32) -> Option<String> {
    let sql = format!("SELECT pg_read_file('pg_wal/{timeline:08X}.history')");
    let messages = conn.simple_query(&sql).await.ok()?;
    first_row(&messages)?.get(0).map(str::to_owned)
}

fn first_row(messages: &[SimpleQueryMessage]) -> Option<&tokio_postgres::SimpleQueryRow> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })
}

fn parse_poll(row: &tokio_postgres::SimpleQueryRow) -> Result<Snapshot, String> {
    if row.len() != 8 {
        return Err(format!("the poll returned {} columns, not 8", row.len()));
    }
    let lsn = |i: usize, name: &str| -> Result<Option<u64>, String> {
        match row.get(i) {
            None => Ok(None),
            Some(text) => parse_lsn(text)
                .map(Some)
                .ok_or_else(|| format!("{name} is not an LSN")),
        }
    };
    let in_recovery = match row.get(0) {
        Some("t") => true,
        Some("f") => false,
        _ => return Err("pg_is_in_recovery() is not a boolean".to_owned()),
    };
    let receiver = match row.get(3) {
        // A receiver runs but its columns are hidden: the role lacks pg_read_all_stats.
        None if row.get(6).is_some() => {
            return Err(
                "the role cannot read pg_stat_wal_receiver (grant it pg_monitor)".to_owned(),
            )
        }
        None => None,
        Some(status) => Some(Receiver {
            streaming: status == "streaming",
            sender_host: row.get(4).filter(|h| !h.is_empty()).map(str::to_owned),
            latest_end: lsn(5, "latest_end_lsn")?,
        }),
    };
    Ok(Snapshot {
        in_recovery,
        position: lsn(1, "the WAL position")?,
        received: lsn(2, "pg_last_wal_receive_lsn()")?,
        receiver,
        timeline: row
            .get(7)
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| *t > 0),
    })
}

/// Parses PostgreSQL's `X/Y` LSN text (shared with the history file's parser).
pub(crate) use rwproxy_core::timeline::parse_lsn;
