//! The [`ItemsApp`] on its node's MariaDB server (table `app.items`).

use mysql_async::prelude::Queryable as _;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};

use crate::items_app::{ItemStore, ItemsApp};

/// The items app on MariaDB.
pub type MyApp = ItemsApp<MyStore>;

/// The app's MariaDB side: mysql_async's pool reconnects by itself after the server restarts or
/// is promoted.
pub struct MyStore {
    pool: Pool,
}

impl ItemStore for MyStore {
    const SOURCE: &'static str = "mysql";

    /// `database_url` is `mysql://USER:PASSWORD@HOST:PORT`.
    fn open(database_url: &str) -> MyStore {
        let opts = Opts::from_url(database_url).expect("database url");
        // Exactly the address given, never the server's Unix socket.
        // At most 8 connections: a burst of 1,000 requests queues for them rather than passing
        // the server's max_connections.
        let limits = PoolConstraints::new(0, 8).expect("0 <= 8");
        let opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .pool_opts(PoolOpts::default().with_constraints(limits));
        MyStore {
            pool: Pool::new(opts),
        }
    }

    async fn insert(&self, item: &str) -> Result<(), String> {
        let mut conn = self.pool.get_conn().await.map_err(|e| e.to_string())?;
        conn.exec_drop("INSERT INTO app.items (name) VALUES (?)", (item,))
            .await
            .map_err(|e| e.to_string())
    }

    async fn contains(&self, item: &str) -> Result<bool, String> {
        let mut conn = self.pool.get_conn().await.map_err(|e| e.to_string())?;
        let row: Option<u8> = conn
            .exec_first("SELECT 1 FROM app.items WHERE name = ?", (item,))
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.is_some())
    }
}
