//! rwproxy-cluster owns how a node learns the cluster's state: the sources that read it (a
//! static primary, the LiteFS mount and API, a JSON status URL, a PostgreSQL server, a
//! Patroni-managed one, or a MySQL or MariaDB server) and the single task that
//! publishes it as a [`NodeState`] on a `tokio::sync::watch` channel. The request path only reads
//! that channel; nothing else writes it.
//!
//! # Decisions
//!
//! * **Unknown is unsafe, and a replica never believes it is primary.** Any failure (missing
//!   mount, missing, unreadable or malformed file, error status, bad JSON, timeout) publishes
//!   [`NodeState::unknown`] with the reason; no previous value is kept "just in case".
//! * **LiteFS role derivation** uses the raw `.lag` value: only a lag of exactly `+000000000`
//!   with no `.primary` file claims Primary. LiteFS writes exactly zero on the primary, so a
//!   negative lag (clock skew) only ever comes from a replica: it is clamped to zero for the
//!   published lag but never taken as a primary claim. `.primary` is read before and after
//!   `.lag`, and a claim needs it absent both times, which narrows the torn-read window during a
//!   hand-off.
//! * **LiteFS `.lag` format**: LiteFS prints `%+010d\n` (sign, nine digits, newline; 11 bytes)
//!   and declares the file 11 bytes long, so a value of ten digits (the not-ready sentinel
//!   `+2147483647`) arrives without its newline. The parser accepts a sign followed by nine or
//!   ten digits and an optional newline, nothing else (no spaces, no `-000000000`).
//! * **`-pos` files** must be exactly `%016x/%016x` with an optional newline, lowercase hex as
//!   LiteFS writes it; uppercase is rejected as "not a LiteFS file".
//! * **LiteFS API** (`api` set): `/info` is consulted only to confirm a primary claim made by the
//!   files; it never turns a replica into a primary. A confirmation is cached for one `poll`
//!   interval (a failed fetch for at most one second) and refetched at once after a
//!   `primaryChange`/`init` event or when the files newly claim Primary. When `/info` vetoes a
//!   claim and names another primary, the node is a replica of it with lag unknown (`None`).
//!   `/info` has a one-second timeout. `/events` lines only wake the poll loop: the files stay
//!   the one source of positions, so there is one code path to trust.
//! * **Blocking reads** of the mount run on the blocking pool with a one-second bound; a read
//!   still stuck after that publishes unknown, and no second read is started until the first
//!   returns (a hung FUSE mount cannot exhaust the blocking pool).
//! * **HTTP status document**: `role` and `ready` are required; `primary`, `positions` and
//!   `lag_ms` may be absent (meaning null/empty). An empty `primary` string is malformed. A
//!   primary's lag is published as zero whatever `lag_ms` says ([`NodeState`]'s invariant).
//!   All positions in the document are kept. Bodies over 64 KiB are rejected.
//! * **Polling**: file and HTTP sources re-read every `poll` (at least 1 ms); while [`Demand`]
//!   is active they re-read every [`FAST_POLL`] (2 ms). `Demand` is rwproxy-core's bare
//!   counter, shared with the HTTP side, and has no wake-up; so an idle source sleeps its
//!   `poll` in 5 ms slices and reads at once when it sees the first waiter. A 10 s `poll`
//!   therefore delays a waiting read by at most ~5 ms, for ~200 timer ticks a second.
//! * **Proxies**: HTTP clients ignore `HTTP_PROXY`-style environment variables: the sources talk
//!   to local or cluster-internal endpoints.
//! * **Logging**: a failing source is logged at `warn` once per change of problem text, recovery
//!   once at `info`, and role/primary/readiness changes at `info`. Problem texts contain no
//!   changing numbers, so a steady failure does not log on every poll.
//! * **[`PositionReader`]** reads positions on demand (for a token issued right after a write):
//!   the `-pos` files with the same parser and one-second bound as the poll loop, at most four
//!   blocking reads in flight (a hung mount answers `None` at once rather than piling up
//!   threads), or one fetch of the status document. `None` means "use the published state".
//! * **PostgreSQL** (`postgres/`): one poll query on one long-lived connection (role from
//!   `pg_is_in_recovery()`, the primary from the WAL receiver's `sender_host` while it streams,
//!   the replay or written LSN as the one position); lag from the age of the oldest WAL target
//!   replay has not reached, published in 100 ms steps; polls every 5 ms (not [`FAST_POLL`])
//!   while reads wait; the token after a write is `pg_current_wal_insert_lsn()`, read on a
//!   second connection. Details in `postgres/mod.rs` and `docs/postgres.md`.
//! * **Patroni** (`patroni/`): the PostgreSQL source's poll, unchanged, combined with Patroni's
//!   `GET /primary` and `GET /cluster` (asked once per `poll`, bounded by `timeout`); primary only
//!   while the lock, the leader member and PostgreSQL all agree, `{primary}` from the leader
//!   member by a configured rule. Details in `patroni/derive.rs` and `docs/patroni.md`.
//! * **MySQL / MariaDB** (`mysql/`): two queries per poll on one long-lived connection (the
//!   variables, then `SHOW SLAVE STATUS` / `SHOW REPLICA STATUS`); replication configured is a
//!   replica, none and writable is the primary, none and read-only is a replica with no primary;
//!   the one position is the number of transactions in the server's GTID set (rwproxy-core's
//!   `GtidSet`); lag as for PostgreSQL; the token after a write is the primary's GTID set,
//!   counted, read on a second connection. Details in `mysql/` and `docs/mysql.md`.
//! * **A panicking source** (a bug) publishes unknown and is restarted after a second, rather
//!   than leaving the last value (perhaps Primary) frozen on the channel.

// Tests may fail loudly; the code under test may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
mod http_client;
mod http_source;
mod litefs;
mod mysql;
mod patroni;
mod postgres;
mod probe;
mod publish;
mod schedule;
mod static_source;
#[cfg(test)]
mod test_support;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use rwproxy_core::NodeState;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use http_client::client_builder;
pub use mysql::check_url as check_mysql_url;
pub use patroni::{MemberField, MemberNaming};
pub use postgres::check_url as check_postgres_url;
pub use probe::PositionReader;
/// The shared count of waiting requests (defined in rwproxy-core so the HTTP side and the
/// sources use one counter); re-exported for callers of [`ClusterHandle::start`].
pub use rwproxy_core::{Demand, DemandGuard};
pub use schedule::FAST_POLL;

use publish::Publisher;

/// Where this node's cluster state comes from (`[cluster] source`).
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// A fixed primary with no lag information: lag 0, no positions, always ready.
    Static {
        /// The primary's node name; this node is primary when it equals the node's name.
        primary: String,
    },
    /// The LiteFS mount files, optionally confirmed and sped up by the LiteFS API.
    Litefs(LitefsSpec),
    /// A JSON status document polled over HTTP.
    Http(HttpSpec),
    /// This node's own PostgreSQL server (a primary or a streaming replica).
    Postgres(PostgresSpec),
    /// A Patroni-managed PostgreSQL node: Patroni's leader lock decides the primary.
    Patroni(PatroniSpec),
    /// This node's own MySQL or MariaDB server (a primary or a GTID replica).
    Mysql(MysqlSpec),
}

impl SourceSpec {
    /// The source's `cluster.source` name (`"static"`, `"http"`, ...), as logs name it.
    pub fn name(&self) -> &'static str {
        source_label(self)
    }
}

/// Settings of the Patroni source.
#[derive(Clone, Debug)]
pub struct PatroniSpec {
    /// Base URL of this node's Patroni REST API, e.g. `http://127.0.0.1:8008` (no trailing `/`).
    pub api: String,
    /// This node's PostgreSQL server, polled as the postgres source polls it (its `primary` is
    /// unused: Patroni names the primary).
    pub postgres: PostgresSpec,
    /// This node's Patroni member name (`name` in its patroni.yml).
    pub member: String,
    /// How the leader member becomes `{primary}`.
    pub naming: MemberNaming,
}

/// Settings of the MySQL / MariaDB source.
#[derive(Clone)]
pub struct MysqlSpec {
    /// URL of this node's server, e.g. `mysql://rwproxy@127.0.0.1:3306`.
    pub url: String,
    /// File holding the password, used when the URL has none (else `MYSQL_PWD`).
    pub password_file: Option<PathBuf>,
    /// Name used for the primary instead of the replica's source host.
    pub primary: Option<String>,
    /// The server's flavour; `None` detects it from `@@version`.
    pub flavor: Option<rwproxy_core::gtid::Flavor>,
    /// How often the server is polled when nobody is waiting.
    pub poll: Duration,
    /// Upper bound on connecting and on each query.
    pub timeout: Duration,
    /// Key of the one GTID position in the positions map (the first configured database).
    pub position_key: String,
}

impl std::fmt::Debug for MysqlSpec {
    // By hand: the URL may hold a password, which must not reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlSpec")
            .field("url", &mysql::redact(&self.url))
            .field("password_file", &self.password_file)
            .field("primary", &self.primary)
            .field("flavor", &self.flavor)
            .field("poll", &self.poll)
            .field("timeout", &self.timeout)
            .field("position_key", &self.position_key)
            .finish()
    }
}

/// Settings of the PostgreSQL source.
#[derive(Clone)]
pub struct PostgresSpec {
    /// libpq-style URL of this node's server, e.g. `postgres://rwproxy@127.0.0.1:5432/postgres`.
    pub url: String,
    /// File holding the password, used when the URL has none (else `PGPASSWORD`).
    pub password_file: Option<PathBuf>,
    /// Name used for the primary instead of the replica's `sender_host`.
    pub primary: Option<String>,
    /// How often the server is polled when nobody is waiting.
    pub poll: Duration,
    /// Upper bound on connecting and on each query.
    pub timeout: Duration,
    /// Key of the one WAL position in the positions map (the first configured database).
    pub position_key: String,
}

impl std::fmt::Debug for PostgresSpec {
    // By hand: the URL may hold a password, which must not reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSpec")
            .field("url", &postgres::redact(&self.url))
            .field("password_file", &self.password_file)
            .field("primary", &self.primary)
            .field("poll", &self.poll)
            .field("timeout", &self.timeout)
            .field("position_key", &self.position_key)
            .finish()
    }
}

/// Settings of the LiteFS source.
#[derive(Clone, Debug)]
pub struct LitefsSpec {
    /// The LiteFS FUSE mount directory, e.g. `/litefs`.
    pub mount: PathBuf,
    /// Databases whose `<db>-pos` files give the positions.
    pub databases: Vec<String>,
    /// Base URL of the LiteFS API, e.g. `http://127.0.0.1:20202`; `None` reads files only.
    pub api: Option<String>,
    /// How often the files are re-read when nobody is waiting.
    pub poll: Duration,
}

/// Settings of the JSON status URL source.
#[derive(Clone, Debug)]
pub struct HttpSpec {
    /// The status document's URL.
    pub url: String,
    /// How often it is fetched when nobody is waiting.
    pub poll: Duration,
    /// Upper bound on one fetch, body included.
    pub timeout: Duration,
    /// Configured databases (they order the cookie; every position in the document is kept).
    pub databases: Vec<String>,
}

/// Owns the source task; dropping it stops the task and closes the channel.
#[derive(Debug)]
pub struct ClusterHandle {
    rx: watch::Receiver<NodeState>,
    task: JoinHandle<()>,
}

impl ClusterHandle {
    /// Spawns the source task(s) on the current tokio runtime. `node` is this node's name.
    ///
    /// Must be called from within a tokio runtime. The channel starts at
    /// `NodeState::unknown("starting")` until the first read.
    pub fn start(node: Arc<str>, spec: SourceSpec, demand: Demand) -> ClusterHandle {
        let (tx, rx) = watch::channel(NodeState::unknown("starting"));
        let publisher = Publisher::new(tx, source_label(&spec));
        let task = tokio::spawn(supervise(node, spec, demand, publisher));
        ClusterHandle { rx, task }
    }

    /// A receiver of the published state; its current value counts as seen.
    pub fn subscribe(&self) -> watch::Receiver<NodeState> {
        let mut rx = self.rx.clone();
        rx.mark_unchanged();
        rx
    }
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        // The source task owns the sender and any helper task (through abort-on-drop guards),
        // so aborting it stops everything and receivers see the channel close.
        self.task.abort();
    }
}

fn source_label(spec: &SourceSpec) -> &'static str {
    match spec {
        SourceSpec::Static { .. } => "static",
        SourceSpec::Litefs(_) => "litefs",
        SourceSpec::Http(_) => "http",
        SourceSpec::Postgres(_) => "postgres",
        SourceSpec::Patroni(_) => "patroni",
        SourceSpec::Mysql(_) => "mysql",
    }
}

/// How long a source that panicked waits before it runs again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Runs the source for ever; a panic (a bug) publishes unknown and restarts it, so the channel
/// never freezes on a value nobody maintains any more.
async fn supervise(node: Arc<str>, spec: SourceSpec, demand: Demand, mut publisher: Publisher) {
    loop {
        let run = run_source(&node, &spec, &demand, &mut publisher);
        let outcome = AssertUnwindSafe(run).catch_unwind().await;
        let problem = match outcome {
            Ok(()) => "cluster source stopped unexpectedly; restarting",
            Err(_) => "cluster source failed (panic); restarting",
        };
        tracing::error!(source = publisher.source(), "{problem}");
        publisher.publish(NodeState::unknown(problem));
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

async fn run_source(
    node: &Arc<str>,
    spec: &SourceSpec,
    demand: &Demand,
    publisher: &mut Publisher,
) {
    match spec {
        SourceSpec::Static { primary } => static_source::run(node, primary, publisher).await,
        SourceSpec::Litefs(litefs) => litefs::run(node, litefs, demand, publisher).await,
        SourceSpec::Http(http) => http_source::run(node, http, demand, publisher).await,
        SourceSpec::Postgres(pg) => postgres::run(node, pg, demand, publisher).await,
        SourceSpec::Patroni(spec) => patroni::run(node, spec, demand, publisher).await,
        SourceSpec::Mysql(my) => mysql::run(node, my, demand, publisher).await,
    }
}

/// Aborts a helper task when its owner is dropped (tokio tasks are otherwise detached).
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use rwproxy_core::Role;

    use super::*;
    use crate::test_support::wait_for;

    #[tokio::test]
    async fn static_source_publishes_once_and_keeps_the_channel_open() {
        let handle = ClusterHandle::start(
            "a".into(),
            SourceSpec::Static {
                primary: "p".into(),
            },
            Demand::default(),
        );
        let mut rx = handle.subscribe();
        let state = wait_for(&mut rx, |s| s.role != Role::Unknown).await;
        assert_eq!(state.role, Role::Replica);
        assert_eq!(state.primary.as_deref(), Some("p"));
        // The task stays alive holding the sender: the channel is not closed.
        assert!(rx.has_changed().is_ok());
        drop(handle);
        let closed = tokio::time::timeout(Duration::from_secs(2), rx.changed()).await;
        assert!(
            matches!(closed, Ok(Err(_))),
            "dropping the handle closes the channel"
        );
    }

    #[tokio::test]
    async fn dropping_the_guard_stops_the_helper_task() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let guard = AbortOnDrop(tokio::spawn(async move {
            // Holds the sender until aborted.
            let _tx = tx;
            std::future::pending::<()>().await;
        }));
        drop(guard);
        let closed = tokio::time::timeout(test_support::DEADLINE, rx.recv()).await;
        assert_eq!(
            closed,
            Ok(None),
            "the task was aborted and dropped its sender"
        );
    }

    #[test]
    fn each_source_is_named_in_logs() {
        let litefs = LitefsSpec {
            mount: PathBuf::from("/litefs"),
            databases: vec![],
            api: None,
            poll: Duration::from_secs(1),
        };
        let http = HttpSpec {
            url: "http://127.0.0.1:9/status".into(),
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            databases: vec![],
        };
        let rows = [
            (
                SourceSpec::Static {
                    primary: "p".into(),
                },
                "static",
            ),
            (SourceSpec::Litefs(litefs), "litefs"),
            (SourceSpec::Http(http), "http"),
        ];
        for (spec, name) in rows {
            assert_eq!(source_label(&spec), name);
            assert_eq!(spec.name(), name);
            let (tx, _rx) = watch::channel(NodeState::unknown("starting"));
            assert_eq!(Publisher::new(tx, source_label(&spec)).source(), name);
        }
    }

    #[tokio::test]
    async fn subscribe_marks_the_current_value_seen() {
        let handle = ClusterHandle::start(
            "p".into(),
            SourceSpec::Static {
                primary: "p".into(),
            },
            Demand::default(),
        );
        let mut first = handle.subscribe();
        wait_for(&mut first, |s| s.role == Role::Primary).await;
        let late = handle.subscribe();
        assert!(!late.has_changed().unwrap_or(true));
        assert_eq!(late.borrow().role, Role::Primary);
    }
}
