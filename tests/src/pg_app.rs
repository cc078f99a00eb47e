//! The [`ItemsApp`] on its node's PostgreSQL server. Its session runs with
//! `synchronous_commit = off` (the hardest case for a token) unless started durable. It keeps
//! the history checker's key-value lists too ([`crate::pg_kv`], `/kv/KEY`).

use std::sync::Arc;

use tokio_postgres::{Client, NoTls};

use crate::items_app::{ItemStore, ItemsApp};
use crate::pg_kv::KvRequest;

/// The items app on PostgreSQL (table `items (name text PRIMARY KEY)`).
pub type PgApp = ItemsApp<PgStore>;

/// The app's PostgreSQL side.
pub struct PgStore {
    database_url: String,
    /// One connection shared by every request (tokio-postgres pipelines them), reopened after
    /// it fails: the server restarts or is promoted under the app in some tests.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// Commits wait for the server's `synchronous_commit` (on: a synchronous standby too, under
    /// Patroni's `synchronous_mode`) instead of `off`.
    durable: bool,
}

impl ItemsApp<PgStore> {
    /// As [`PgApp::start`], but an acknowledged write is as durable as the server's own
    /// `synchronous_commit` makes it (the Patroni tests prove no acknowledged write is lost).
    pub async fn start_durable(name: &str, database_url: &str) -> PgApp {
        Self::serve(name, PgStore::new(database_url, true)).await
    }
}

impl PgStore {
    fn new(database_url: &str, durable: bool) -> PgStore {
        PgStore {
            database_url: database_url.to_owned(),
            client: tokio::sync::Mutex::new(None),
            durable,
        }
    }

    /// The shared connection, opened when there is none or it failed.
    async fn client(&self) -> Result<Arc<Client>, String> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let (client, connection) = tokio_postgres::connect(&self.database_url, NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        if !self.durable {
            client
                .batch_execute("SET synchronous_commit = off")
                .await
                .map_err(|e| e.to_string())?;
        }
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }
}

/// The server's own message where there is one ("cannot execute INSERT in a read-only
/// transaction"), else the driver's.
pub(crate) fn describe(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

impl ItemStore for PgStore {
    const SOURCE: &'static str = "postgres";

    fn open(database_url: &str) -> PgStore {
        PgStore::new(database_url, false)
    }

    async fn insert(&self, item: &str) -> Result<(), String> {
        self.client()
            .await?
            .execute("INSERT INTO items (name) VALUES ($1)", &[&item])
            .await
            .map_err(describe)?;
        Ok(())
    }

    async fn contains(&self, item: &str) -> Result<bool, String> {
        let rows = self
            .client()
            .await?
            .query("SELECT 1 FROM items WHERE name = $1", &[&item])
            .await
            .map_err(describe)?;
        Ok(!rows.is_empty())
    }

    async fn kv(&self, app: &str, request: KvRequest) -> Option<Result<String, String>> {
        Some(match self.client().await {
            Ok(client) => crate::pg_kv::run(&client, app, request).await,
            Err(e) => Err(e),
        })
    }
}
