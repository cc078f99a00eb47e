//! Reading the positions right now, outside the poll loop: a token issued right after a write
//! must include that write, and the last polled snapshot may be up to one `poll` old.

use std::path::Path;
use std::sync::Arc;

use rwproxy_core::Reading;
use tokio::sync::Semaphore;

use crate::{http_client, http_source, litefs, mysql, postgres, HttpSpec, SourceSpec};

/// Most blocking mount reads the probe has in flight. A hung FUSE mount then holds at most this
/// many blocking threads; further probes answer `None` at once instead of piling up threads.
const MAX_BLOCKING_READS: usize = 4;

/// Reads current positions for one source; cheap to clone.
#[derive(Clone, Debug)]
pub struct PositionReader {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    None,
    Litefs {
        mount: Arc<Path>,
        databases: Arc<[Arc<str>]>,
        reads: Arc<Semaphore>,
    },
    Http {
        client: reqwest::Client,
        spec: HttpSpec,
        node: Arc<str>,
    },
    Postgres {
        conn: Arc<postgres::Connection>,
        key: Arc<str>,
    },
    Mysql {
        conn: Arc<mysql::Connection>,
        flavor: Arc<mysql::FlavorCell>,
        key: Arc<str>,
    },
}

impl PositionReader {
    /// A reader for `spec` (static sources have no positions: it always answers `None`).
    pub fn new(node: Arc<str>, spec: &SourceSpec) -> Self {
        let kind = match spec {
            SourceSpec::Static { .. } => Kind::None,
            SourceSpec::Litefs(l) => Kind::Litefs {
                mount: Arc::from(l.mount.as_path()),
                databases: l.databases.iter().map(|d| Arc::from(d.as_str())).collect(),
                reads: Arc::new(Semaphore::new(MAX_BLOCKING_READS)),
            },
            SourceSpec::Postgres(p)
            | SourceSpec::Patroni(crate::PatroniSpec { postgres: p, .. }) => Kind::Postgres {
                conn: Arc::new(postgres::Connection::new(p)),
                key: Arc::from(p.position_key.as_str()),
            },
            SourceSpec::Mysql(m) => Kind::Mysql {
                conn: Arc::new(mysql::Connection::new(m)),
                flavor: Arc::new(mysql::FlavorCell::new(m.flavor)),
                key: Arc::from(m.position_key.as_str()),
            },
            SourceSpec::Http(h) => match http_client::build() {
                Ok(client) => Kind::Http {
                    client,
                    spec: h.clone(),
                    node,
                },
                // Without a client there is nothing to read; callers fall back to the state.
                Err(_) => Kind::None,
            },
        };
        PositionReader { kind }
    }

    /// False when [`PositionReader::read`] always answers `None` (a static source).
    pub fn reads_positions(&self) -> bool {
        !matches!(self.kind, Kind::None)
    }

    /// False when [`PositionReader::confirms_primary`] always answers `None` (every source but
    /// LiteFS).
    pub fn confirms_primaries(&self) -> bool {
        matches!(self.kind, Kind::Litefs { .. })
    }

    /// Whether the source still says this node is the primary, read right now: `Some(false)`
    /// when the LiteFS files no longer make it primary (a `.primary` file appeared, or the lag
    /// is no longer zero: this node was demoted since the last poll),
    /// `None` when the source cannot tell cheaply (static, http) or the read fails.
    pub async fn confirms_primary(&self) -> Option<bool> {
        match &self.kind {
            Kind::Litefs { mount, reads, .. } => {
                let mount = mount.clone();
                blocking_read(reads, move || litefs::claims_primary(&mount)).await
            }
            // A server in recovery refuses writes by itself, so a demoted PostgreSQL primary
            // cannot take a write: no extra query per write is needed.
            // A replica's server refuses writes by itself (read_only), as PostgreSQL does.
            Kind::None | Kind::Http { .. } | Kind::Postgres { .. } | Kind::Mysql { .. } => None,
        }
    }

    /// The current positions (and timeline, for PostgreSQL), or `None` when they cannot be read
    /// now (the caller falls back to the last published state).
    pub async fn read(&self) -> Option<Reading> {
        match &self.kind {
            Kind::None => None,
            Kind::Litefs {
                mount,
                databases,
                reads,
            } => {
                let (mount, databases) = (mount.clone(), databases.clone());
                blocking_read(reads, move || litefs::read_positions(&mount, &databases))
                    .await
                    .map(Reading::positions)
            }
            // Boxed: the HTTP client's and the PostgreSQL query's futures are kilobytes, and
            // inline they would size this future for every source, copied into the caller's
            // box at every token issued (~270 instructions per write on the primary).
            Kind::Http { client, spec, node } => Box::pin(http_source::fetch(client, spec, node))
                .await
                .ok()
                .map(|s| Reading::positions(s.positions)),
            Kind::Postgres { conn, key } => Box::pin(postgres::token_position(conn, key)).await,
            Kind::Mysql { conn, flavor, key } => {
                Box::pin(mysql::token_position(conn, flavor, key)).await
            }
        }
    }
}

/// Runs one blocking mount read on a permit of `reads`, waiting for a permit when
/// [`MAX_BLOCKING_READS`] are in flight; the wait and the read together are bounded by
/// `litefs::READ_TIMEOUT`. Busy permits must not mean `None` at once: under ordinary
/// concurrency the callers would then issue tokens from the last polled state, which can be
/// older than the write just made (the history checker caught exactly that).
async fn blocking_read<T: Send + 'static, E: Send + 'static>(
    reads: &Arc<Semaphore>,
    read: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Option<T> {
    let reads = reads.clone();
    let work = async move {
        let permit = reads.acquire_owned().await.ok()?;
        let task = tokio::task::spawn_blocking(move || {
            // Released when the read really ends, not when the caller stops waiting.
            let _permit = permit;
            read()
        });
        task.await.ok()?.ok()
    };
    tokio::time::timeout(litefs::READ_TIMEOUT, work)
        .await
        .ok()?
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::test_support::{full, serve};
    use crate::LitefsSpec;

    fn litefs(mount: &Path, databases: &[&str]) -> PositionReader {
        let spec = SourceSpec::Litefs(LitefsSpec {
            mount: mount.to_path_buf(),
            databases: databases.iter().map(|d| d.to_string()).collect(),
            api: None,
            poll: Duration::from_secs(10),
        });
        PositionReader::new("me".into(), &spec)
    }

    #[tokio::test]
    async fn static_sources_have_no_positions() {
        let spec = SourceSpec::Static {
            primary: "me".into(),
        };
        assert_eq!(PositionReader::new("me".into(), &spec).read().await, None);
    }

    #[tokio::test]
    async fn reads_the_pos_files_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reader = litefs(dir.path(), &["a.db", "b.db"]);
        assert_eq!(reader.read().await, None, "missing files");
        std::fs::write(
            dir.path().join("a.db-pos"),
            "0000000000000010/0000000000000000\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("b.db-pos"),
            "0000000000000002/0000000000000000\n",
        )
        .expect("write");
        let positions = reader.read().await.expect("readable").positions;
        assert_eq!(positions.get("a.db"), Some(&16));
        assert_eq!(positions.get("b.db"), Some(&2));
        assert_eq!(litefs(dir.path(), &["../a.db"]).read().await, None);
    }

    #[tokio::test]
    async fn confirms_primary_reads_the_mount_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reader = litefs(dir.path(), &["a.db"]);
        assert_eq!(
            reader.confirms_primary().await,
            None,
            "no .lag: cannot tell"
        );
        std::fs::write(dir.path().join(".lag"), "+000000000\n").expect("write");
        assert_eq!(reader.confirms_primary().await, Some(true));
        std::fs::write(dir.path().join(".primary"), "p2\n").expect("write");
        assert_eq!(reader.confirms_primary().await, Some(false), "demoted");

        let Kind::Litefs { reads, .. } = &reader.kind else {
            panic!("a litefs reader");
        };
        let stuck = reads
            .clone()
            .acquire_many_owned(MAX_BLOCKING_READS as u32)
            .await
            .expect("permits");
        assert_eq!(
            reader.confirms_primary().await,
            None,
            "busy for good: none after the read timeout"
        );
        drop(stuck);
        assert_eq!(reader.confirms_primary().await, Some(false));

        let spec = SourceSpec::Static {
            primary: "me".into(),
        };
        let fixed = PositionReader::new("me".into(), &spec);
        assert_eq!(fixed.confirms_primary().await, None);
        assert!(!fixed.confirms_primaries() && !fixed.reads_positions());
        assert!(reader.confirms_primaries() && reader.reads_positions());
    }

    #[tokio::test]
    async fn busy_blocking_reads_wait_for_a_permit_within_the_read_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("a.db-pos"),
            "0000000000000001/0000000000000000\n",
        )
        .expect("write");
        let reader = litefs(dir.path(), &["a.db"]);
        let Kind::Litefs { reads, .. } = &reader.kind else {
            panic!("a litefs reader");
        };
        // As if MAX_BLOCKING_READS reads were stuck on a hung mount.
        let stuck = reads
            .clone()
            .acquire_many_owned(MAX_BLOCKING_READS as u32)
            .await
            .expect("permits");
        // Stuck for good: the wait is bounded by the read timeout.
        let started = std::time::Instant::now();
        assert_eq!(reader.read().await, None);
        assert!(started.elapsed() >= litefs::READ_TIMEOUT);
        // Busy for a moment: the read waits for the permit and succeeds.
        let waiting = tokio::spawn({
            let reader = reader.clone();
            async move { reader.read().await }
        });
        tokio::task::yield_now().await;
        drop(stuck);
        assert!(waiting.await.expect("join").is_some());
    }

    #[tokio::test]
    async fn http_positions_come_from_the_document() {
        let answer = Arc::new(Mutex::new(200u16));
        let server = serve({
            let answer = answer.clone();
            move |_| {
                let status = *answer.lock().expect("lock");
                full(
                    status,
                    r#"{"role":"primary","primary":null,"positions":{"a.db":42},"lag_ms":null,"ready":true}"#,
                )
            }
        })
        .await;
        let spec = SourceSpec::Http(HttpSpec {
            url: format!("http://{}/status", server.addr),
            poll: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            databases: vec!["a.db".into()],
        });
        let reader = PositionReader::new("me".into(), &spec);
        assert_eq!(
            reader
                .read()
                .await
                .and_then(|r| r.positions.get("a.db").copied()),
            Some(42)
        );
        assert_eq!(
            reader.confirms_primary().await,
            None,
            "http cannot tell cheaply"
        );
        *answer.lock().expect("lock") = 500;
        assert_eq!(reader.read().await, None);
    }
}
