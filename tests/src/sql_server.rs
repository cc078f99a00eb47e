//! What the scenarios shared by the PostgreSQL and MariaDB tests ([`crate::sql_scenarios`]) and
//! benchmarks need of a database server, implemented for [`PgServer`] and [`MariaServer`].

use std::future::Future;

use crate::items_app::ItemStore;
use crate::mariadb::{self, MariaServer};
use crate::my_app::MyStore;
use crate::pg_app::PgStore;
use crate::postgres::{self, PgServer};

/// A test database server that replicates: started, stopped, paused and promoted by the test.
pub trait SqlServer: Send + Sync + Sized {
    /// The items app's store on this kind of server.
    type Store: ItemStore;
    /// The database name of the server's position in tokens and metrics (`wal`, `gtid`).
    const POSITION_DB: &'static str;
    /// The product's name, for messages.
    const PRODUCT: &'static str;

    /// The monitoring role's URL (`cluster.url`).
    fn monitor_url(&self) -> String;
    /// The app's URL (a role that may write).
    fn app_url(&self) -> String;
    /// How a node's health names this server when it cannot reach it (the start of `problem`).
    fn problem_prefix(&self) -> String;
    /// Stops applying replicated changes on this replica (they keep arriving).
    fn pause_apply(&self) -> impl Future<Output = ()> + Send;
    /// Applies replicated changes again.
    fn resume_apply(&self) -> impl Future<Output = ()> + Send;
    /// A second replica of `primary`.
    fn second_replica(primary: &Self) -> impl Future<Output = Self> + Send;
    /// Promotes this replica as a failover manager does.
    fn promote(&self) -> impl Future<Output = ()> + Send;
    /// Re-points this replica at `primary`, as a failover manager does after a promotion.
    fn follow(&self, primary: &Self) -> impl Future<Output = ()> + Send;
    /// Stops the server.
    fn stop(&mut self);
}

impl SqlServer for PgServer {
    type Store = PgStore;
    const POSITION_DB: &'static str = "wal";
    const PRODUCT: &'static str = "PostgreSQL";

    fn monitor_url(&self) -> String {
        self.url(postgres::MONITOR_USER)
    }

    fn app_url(&self) -> String {
        self.url("postgres")
    }

    fn problem_prefix(&self) -> String {
        format!("postgres 127.0.0.1:{}/", self.port)
    }

    async fn pause_apply(&self) {
        self.query_text("SELECT pg_wal_replay_pause()").await;
    }

    async fn resume_apply(&self) {
        self.query_text("SELECT pg_wal_replay_resume()").await;
    }

    async fn second_replica(primary: &Self) -> Self {
        PgServer::replica_of(primary)
    }

    async fn promote(&self) {
        PgServer::promote(self);
    }

    async fn follow(&self, primary: &Self) {
        self.query_text(&format!(
            "ALTER SYSTEM SET primary_conninfo = \
             'host=127.0.0.1 port={} user=postgres password={}'",
            primary.port,
            postgres::PASSWORD
        ))
        .await;
        self.query_text("SELECT pg_reload_conf()").await;
    }

    fn stop(&mut self) {
        PgServer::stop(self);
    }
}

impl SqlServer for MariaServer {
    type Store = MyStore;
    const POSITION_DB: &'static str = "gtid";
    const PRODUCT: &'static str = "MariaDB";

    fn monitor_url(&self) -> String {
        self.url(mariadb::MONITOR_USER)
    }

    fn app_url(&self) -> String {
        self.url(mariadb::APP_USER)
    }

    fn problem_prefix(&self) -> String {
        format!("mysql 127.0.0.1:{}:", self.port)
    }

    async fn pause_apply(&self) {
        self.exec("STOP SLAVE SQL_THREAD").await;
    }

    async fn resume_apply(&self) {
        self.exec("START SLAVE SQL_THREAD").await;
    }

    /// Server id 3: the pair's replica has 2.
    async fn second_replica(primary: &Self) -> Self {
        MariaServer::replica_of(primary, 3).await
    }

    async fn promote(&self) {
        MariaServer::promote(self).await;
    }

    async fn follow(&self, primary: &Self) {
        self.exec("STOP SLAVE").await;
        MariaServer::follow(self, primary.port).await;
    }

    fn stop(&mut self) {
        MariaServer::stop(self);
    }
}
