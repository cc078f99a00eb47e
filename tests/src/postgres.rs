//! Real PostgreSQL servers for the tests: a primary (`initdb` in a temporary directory, a free
//! loopback port) and streaming replicas (`pg_basebackup -R`), run as the `postgres` OS user when
//! the tests run as root, and stopped (`pg_ctl stop -m immediate`) when dropped, panics included.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tokio_postgres::{Client, NoTls};

use crate::free_port;

/// The superuser's password on every test server (TCP connections need it: scram-sha-256).
pub const PASSWORD: &str = "rwproxy-test-pw";

/// The monitoring role rwproxy connects as: `pg_monitor` and nothing else.
pub const MONITOR_USER: &str = "rwproxy";

/// Where the PostgreSQL server programs are, and whether to run them as `postgres`.
#[derive(Clone, Debug)]
pub struct PgBin {
    dir: PathBuf,
    as_postgres: bool,
}

impl PgBin {
    /// Finds `initdb` and friends: the newest `/usr/lib/postgresql/<version>/bin` (Debian), else
    /// `PATH`. Missing: `None` with a notice (a skip), or a panic when
    /// `RWPROXY_REQUIRE_EXTERNAL=1`.
    pub fn find() -> Option<PgBin> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").is_file().then_some((version, bin))
            })
            .collect();
        versions.sort();
        let dir = match versions.pop() {
            Some((_, bin)) => bin,
            None => crate::external_program("initdb")?.parent()?.to_path_buf(),
        };
        // PostgreSQL refuses to run as root: then every program runs as `postgres`.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        Some(PgBin { dir, as_postgres })
    }

    /// Runs `program args...` (as `postgres` when root) and panics with its output on failure.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// `program` of this installation, run as `postgres` when the tests run as root.
    fn command(&self, program: &str) -> Command {
        let path = self.dir.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        // The `postgres` user may not be allowed into the caller's directory (a repository under
        // /root): run from the temporary directory instead.
        command
            .env_remove("PGPASSWORD")
            .current_dir(std::env::temp_dir());
        command
    }

    /// The directory of `initdb`, `pg_ctl` and friends.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when the servers run as the `postgres` OS user (the tests run as root).
    pub fn as_postgres(&self) -> bool {
        self.as_postgres
    }

    /// Hands `path` to the `postgres` user (when the servers run as `postgres`).
    pub fn own(&self, path: &Path) {
        if self.as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {}", path.display());
        }
    }
}

/// One running server; stopped when dropped.
pub struct PgServer {
    bin: PgBin,
    data: PathBuf,
    /// Its loopback port.
    pub port: u16,
    running: bool,
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// `initdb` a new primary on a free port, start it, and create the monitoring role and the
    /// app's table.
    pub async fn primary(bin: &PgBin) -> PgServer {
        let dir = tempfile::tempdir().expect("tempdir");
        bin.own(dir.path());
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        bin.own(&pwfile);
        bin.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                path_str(&pwfile),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let mut server = PgServer {
            bin: bin.clone(),
            data,
            port: free_port(),
            running: false,
            _dir: dir,
        };
        server.configure();
        server.start();
        let client = server.connect("postgres").await;
        client
            .batch_execute(&format!(
                "CREATE ROLE {MONITOR_USER} LOGIN PASSWORD '{PASSWORD}' IN ROLE pg_monitor;
                 CREATE TABLE items (name text PRIMARY KEY);"
            ))
            .await
            .expect("set up primary");
        server
    }

    /// A streaming replica of `primary` (`pg_basebackup -R`) on a free port, started.
    pub fn replica_of(primary: &PgServer) -> PgServer {
        Self::replica_via(primary, "127.0.0.1")
    }

    /// A streaming replica of `upstream` (a primary, or a replica for cascading replication)
    /// that reaches it at `host` (its `sender_host`), on a free port, started.
    pub fn replica_via(primary: &PgServer, host: &str) -> PgServer {
        let bin = primary.bin.clone();
        let dir = tempfile::tempdir().expect("tempdir");
        bin.own(dir.path());
        let data = dir.path().join("data");
        let conninfo = format!(
            "host={host} port={} user=postgres password={PASSWORD}",
            primary.port
        );
        bin.run(
            "pg_basebackup",
            &[
                "-D",
                path_str(&data),
                "-d",
                &conninfo,
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        let mut server = PgServer {
            bin,
            data,
            port: free_port(),
            running: false,
            _dir: dir,
        };
        server.configure();
        server.start();
        server
    }

    /// Loopback only, no Unix socket, small and fast (no fsync: test data only).
    fn configure(&self) {
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             fsync = off\nshared_buffers = 16MB\nmax_connections = 30\n\
             wal_receiver_status_interval = 1s\nlog_min_messages = warning\n",
            self.port
        ));
        std::fs::write(&conf, text).expect("write postgresql.conf");
    }

    /// Turns TLS on (`ssl = on` with this certificate and key) and makes the monitoring role
    /// connect over TLS only (`hostssl` accepted, `hostnossl` rejected), then restarts.
    pub fn enable_tls(&mut self, cert_pem: &str, key_pem: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let cert = self.data.join("server.crt");
        let key = self.data.join("server.key");
        std::fs::write(&cert, cert_pem).expect("write server.crt");
        std::fs::write(&key, key_pem).expect("write server.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        self.bin.own(&cert);
        self.bin.own(&key);
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).expect("write postgresql.conf");
        let hba = self.data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!(
                "hostnossl all {MONITOR_USER} 127.0.0.1/32 reject\n\
                 hostssl all {MONITOR_USER} 127.0.0.1/32 scram-sha-256\n{rules}"
            ),
        )
        .expect("write pg_hba.conf");
        self.stop();
        self.start();
    }

    /// Opens a Unix socket in a new directory (besides TCP), restarts, and returns the
    /// directory. Local connections are trusted (`initdb --auth-local=trust`).
    pub fn unix_socket(&mut self) -> PathBuf {
        let dir = self.data.with_file_name("sock");
        std::fs::create_dir_all(&dir).expect("socket dir");
        self.bin.own(&dir);
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&format!(
            "\nunix_socket_directories = '{}'\n",
            path_str(&dir)
        ));
        std::fs::write(&conf, text).expect("write postgresql.conf");
        self.stop();
        self.start();
        dir
    }

    /// Listens on `address` too (besides 127.0.0.1), then restarts.
    pub fn listen_also(&mut self, address: &str) {
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&format!("\nlisten_addresses = '127.0.0.1,{address}'\n"));
        std::fs::write(&conf, text).expect("write postgresql.conf");
        self.stop();
        self.start();
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.data.with_file_name("server.log")
    }

    /// `pg_ctl start` and wait until it accepts connections.
    pub fn start(&mut self) {
        let log = self.log_path();
        self.bin.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        self.running = true;
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&mut self) {
        self.bin.run(
            "pg_ctl",
            &["-D", path_str(&self.data), "-m", "fast", "-w", "stop"],
        );
        self.running = false;
    }

    /// `pg_ctl promote` (waits until the server is out of recovery).
    pub fn promote(&self) {
        self.bin
            .run("pg_ctl", &["-D", path_str(&self.data), "-w", "promote"]);
    }

    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/postgres`.
    pub fn url(&self, user: &str) -> String {
        format!(
            "postgres://{user}:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// A new connection as `user` (the superuser `postgres` or [`MONITOR_USER`]).
    pub async fn connect(&self, user: &str) -> Client {
        let (client, connection) = tokio_postgres::connect(&self.url(user), NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{}: {e}", self.port));
        tokio::spawn(connection);
        client
    }

    /// Runs one statement as the superuser and returns the first column of the first row as
    /// text (e.g. an LSN), if any.
    pub async fn query_text(&self, sql: &str) -> Option<String> {
        let client = self.connect("postgres").await;
        let messages = client.simple_query(sql).await.expect(sql);
        messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            // Best effort: a test that panicked still stops its server.
            let _ = self
                .bin
                .command("pg_ctl")
                .args(["-D", path_str(&self.data), "-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Parses an LSN's text form `X/Y` into the 64-bit position tokens carry.
pub fn lsn(text: &str) -> u64 {
    let (high, low) = text.split_once('/').expect("an LSN");
    (u64::from_str_radix(high, 16).expect("hex") << 32) | u64::from_str_radix(low, 16).expect("hex")
}
