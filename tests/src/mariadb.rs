//! Real MariaDB servers for the tests: a primary and GTID replicas in temporary directories on
//! free loopback ports, run as the `mysql` OS user when the tests run as root (`mariadbd
//! --user=mysql`), and killed when dropped, panics included.
//!
//! `mariadb-install-db` runs once per test process (about five seconds); every server starts
//! from a copy of that data directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Opts};

use crate::free_port;

/// The password of every test user.
pub const PASSWORD: &str = "rwproxy-test-pw";
/// The monitoring user rwproxy connects as: `SLAVE MONITOR` and nothing else.
pub const MONITOR_USER: &str = "rwproxy";
/// The app's user: everything on the `app` database, no `SUPER` (so `read_only` stops it).
pub const APP_USER: &str = "app";

/// Where the MariaDB programs are, and whether to run the server as `mysql`.
#[derive(Clone, Debug)]
pub struct MariaBin {
    server: PathBuf,
    install: PathBuf,
    as_mysql: bool,
}

impl MariaBin {
    /// Finds `mariadbd` and `mariadb-install-db` (on `PATH` or in the sbin directories).
    /// Missing: `None` with a notice (a skip), or a panic when `RWPROXY_REQUIRE_EXTERNAL=1`.
    pub fn find() -> Option<MariaBin> {
        let server = crate::external_program("mariadbd")?;
        let install = crate::external_program("mariadb-install-db")?;
        let as_mysql = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        Some(MariaBin {
            server,
            install,
            as_mysql,
        })
    }

    /// A freshly installed data directory, made once per process and copied for every server.
    fn template(&self) -> &'static Path {
        static TEMPLATE: OnceLock<tempfile::TempDir> = OnceLock::new();
        TEMPLATE
            .get_or_init(|| {
                let dir = tempfile::tempdir().expect("tempdir");
                self.own(dir.path());
                let data = dir.path().join("data");
                let mut install = Command::new(&self.install);
                install
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
                    .current_dir(std::env::temp_dir());
                if self.as_mysql {
                    install.arg("--user=mysql");
                }
                let output = install.output().expect("run mariadb-install-db");
                assert!(
                    output.status.success(),
                    "mariadb-install-db failed: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
                dir
            })
            .path()
    }

    /// Hands `path` to the `mysql` user (when the servers run as `mysql`).
    fn own(&self, path: &Path) {
        if self.as_mysql {
            let status = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {}", path.display());
        }
    }
}

/// One running server; killed when dropped.
pub struct MariaServer {
    bin: MariaBin,
    dir: tempfile::TempDir,
    server_id: u32,
    /// Its loopback port.
    pub port: u16,
    child: Option<Child>,
}

impl MariaServer {
    /// A new primary (server id 1) with the monitoring, replication and app users and the
    /// app's table.
    pub async fn primary(bin: &MariaBin) -> MariaServer {
        let mut server = MariaServer::install(bin, 1);
        server.start(false).await;
        server
            .exec(&format!(
                "CREATE USER {MONITOR_USER} IDENTIFIED BY '{PASSWORD}';
                 GRANT SLAVE MONITOR ON *.* TO {MONITOR_USER};
                 CREATE USER repl IDENTIFIED BY '{PASSWORD}';
                 GRANT REPLICATION SLAVE ON *.* TO repl;
                 CREATE USER {APP_USER} IDENTIFIED BY '{PASSWORD}';
                 CREATE DATABASE app;
                 GRANT ALL ON app.* TO {APP_USER};
                 CREATE TABLE app.items (name VARCHAR(200) PRIMARY KEY);"
            ))
            .await;
        server
    }

    /// A read-only GTID replica of `primary` (server id `server_id`), replicating everything
    /// from the primary's first transaction.
    pub async fn replica_of(primary: &MariaServer, server_id: u32) -> MariaServer {
        let mut server = MariaServer::install(&primary.bin, server_id);
        server.start(true).await;
        server.follow(primary.port).await;
        server
    }

    fn install(bin: &MariaBin, server_id: u32) -> MariaServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("cp")
            .arg("-a")
            .arg(bin.template().join("data"))
            .arg(dir.path())
            .status()
            .expect("cp");
        assert!(status.success(), "copy the data directory");
        bin.own(dir.path());
        MariaServer {
            bin: bin.clone(),
            dir,
            server_id,
            port: free_port(),
            child: None,
        }
    }

    /// Starts `mariadbd` (binary log and GTID strict mode on, small and without fsync: test
    /// data only) and waits until it accepts connections.
    pub async fn start(&mut self, read_only: bool) {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        let mut command = Command::new(&self.bin.server);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", path("data")))
            .arg(format!("--socket={}", path("sock")))
            .arg(format!("--pid-file={}", path("pid")))
            .arg(format!("--log-error={}", path("error.log")))
            .arg(format!("--log-bin={}", path("data/binlog")))
            .arg(format!("--port={}", self.port))
            .arg(format!("--server-id={}", self.server_id))
            .arg(format!("--read-only={}", u8::from(read_only)))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--log-slave-updates",
                "--gtid-strict-mode=1",
                "--binlog-format=ROW",
                "--innodb-buffer-pool-size=16M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--max-connections=40",
            ])
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.bin.as_mysql {
            command.arg("--user=mysql");
        }
        self.child = Some(command.spawn().expect("start mariadbd"));
        let log = path("error.log");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("mariadbd exited ({status}): {text}");
            }
            if let Ok(conn) = self.root().await {
                let _ = conn.disconnect().await;
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "mariadbd did not accept connections within 60s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (as a crash or a lost machine would stop it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Replicates from the server on `port` with GTIDs and starts replication.
    pub async fn follow(&self, port: u16) {
        self.exec(&format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {port}, \
             MASTER_USER = 'repl', MASTER_PASSWORD = '{PASSWORD}', \
             MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1;
             START SLAVE;"
        ))
        .await;
    }

    /// Promotes a replica as a failover manager does.
    pub async fn promote(&self) {
        self.exec("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;")
            .await;
    }

    /// `mysql://USER:PASSWORD@127.0.0.1:PORT`, for the monitoring or the app user.
    pub fn url(&self, user: &str) -> String {
        format!("mysql://{user}:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// A connection as root (no password, loopback only).
    async fn root(&self) -> mysql_async::Result<Conn> {
        let url = format!("mysql://root@127.0.0.1:{}", self.port);
        let opts = Opts::from_url(&url).expect("url");
        tokio::time::timeout(Duration::from_secs(5), Conn::new(opts))
            .await
            .map_err(|_| mysql_async::Error::Other("connect timed out".into()))?
    }

    /// Runs statements as root.
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.root().await.expect("connect as root");
        conn.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.disconnect().await;
    }

    /// The first column of the first row of `sql`, as root.
    pub async fn text(&self, sql: &str) -> Option<String> {
        let mut conn = self.root().await.expect("connect as root");
        let value: Option<Option<String>> = conn
            .query_first(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.disconnect().await;
        value.flatten()
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        self.stop();
    }
}
