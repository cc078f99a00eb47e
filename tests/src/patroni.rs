//! A real Patroni cluster for the tests: one etcd and three Patroni-managed PostgreSQL nodes in a
//! temporary directory, each node on its own loopback address (127.0.0.11, .12, .13) so that
//! Patroni's member `host` is the address of that node's rwproxy. Every node has a small app
//! ([`PgApp`]) and an rwproxy with `source = "patroni"`; every Patroni reaches etcd through its
//! own [`Relay`], so a partition is a cut link. Everything runs as the `postgres` OS user when
//! the tests run as root, and everything is stopped when the cluster is dropped, panics included.
//!
//! Timings are short for tests: `ttl` 10 s, `loop_wait` 1 s, `retry_timeout` 4 s (Patroni
//! demands `loop_wait + 2 × retry_timeout ≤ ttl`), `primary_start_timeout` 0 (a crashed
//! leader's PostgreSQL fails over at once instead of being restarted in place).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rwproxy::{config, Node};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::pg_app::PgApp;
use crate::postgres::PgBin;
use crate::relay::{Mode, Relay};
use crate::{client, eventually, free_port};

/// Deadline for what the cluster must reach (a failover is ~ttl; the machine may be busy).
pub const WAIT: Duration = Duration::from_secs(60);

/// Where the external programs are; `None` (skip, or a panic under
/// `RWPROXY_REQUIRE_EXTERNAL=1`) when one is missing.
#[derive(Clone, Debug)]
struct Programs {
    patroni: PathBuf,
    patronictl: PathBuf,
    etcd: PathBuf,
    pg: PgBin,
}

impl Programs {
    fn find() -> Option<Programs> {
        Some(Programs {
            patroni: crate::external_program("patroni")?,
            patronictl: crate::external_program("patronictl")?,
            etcd: crate::external_program("etcd")?,
            pg: PgBin::find()?,
        })
    }

    /// `program`, run as `postgres` when root (setpriv execs it: the child's pid is the
    /// program's own, so killing it kills the program).
    fn command(&self, program: &Path) -> Command {
        let mut command = if self.pg.as_postgres() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--reset-env",
            ])
            .arg(program);
            c
        } else {
            Command::new(program)
        };
        command.current_dir(std::env::temp_dir());
        command
    }

    fn own(&self, path: &Path) {
        self.pg.own(path);
    }
}

/// A child process killed (SIGKILL) when dropped.
struct Process(Option<Child>);

impl Process {
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One Patroni member with its app and its rwproxy.
pub struct PatroniNode {
    /// The Patroni member name and rwproxy node name (`pg1`…).
    pub name: String,
    /// Its loopback address (`127.0.0.11`…).
    pub ip: Ipv4Addr,
    /// Its PostgreSQL port.
    pub pg_port: u16,
    /// Its Patroni REST API port.
    pub api_port: u16,
    /// Its link to etcd.
    pub etcd_link: Relay,
    /// The other members' link to its Patroni API (its `restapi.connect_address`).
    pub api_link: Relay,
    /// The replicas' link to its PostgreSQL (its `postgresql.connect_address`, on its own
    /// address so that the member's `host` stays its address): cut it and no replica receives
    /// its WAL, as in a network partition of the replication link.
    pub replication_link: Relay,
    /// The app in front of its PostgreSQL.
    pub app: PgApp,
    /// Its rwproxy (`None` until started).
    pub proxy: Option<Node>,
    /// Its rwproxy's address.
    pub proxy_addr: SocketAddr,
    config: PathBuf,
    data: PathBuf,
    patroni: Process,
}

impl PatroniNode {
    /// `http://IP:PORT{path}` on this node's rwproxy.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy_addr)
    }

    /// `http://IP:API_PORT{path}` on this node's Patroni.
    pub fn api(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.api_port)
    }

    /// The superuser URL of this node's PostgreSQL.
    pub fn pg_url(&self) -> String {
        format!("postgres://postgres@{}:{}/postgres", self.ip, self.pg_port)
    }

    /// The rwproxy's admin origin.
    pub fn admin(&self) -> String {
        let addr = self
            .proxy
            .as_ref()
            .and_then(|n| n.admin_addr())
            .expect("admin listener");
        format!("http://{addr}")
    }

    /// The rwproxy's published state.
    pub fn state(&self) -> rwproxy_core::NodeState {
        self.proxy.as_ref().expect("proxy").state().borrow().clone()
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// `kill -9` of this node's PostgreSQL (the postmaster; its children follow).
    pub fn kill_postgres(&self) {
        let pid = self.postmaster_pid().expect("postmaster.pid");
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pid}");
    }

    /// Cuts (`true`) or heals this node's links to etcd and to the other members' Patroni
    /// (which would otherwise see its WAL position and refuse to take over as "not the
    /// healthiest node"). Its local rwproxy still reaches its own API.
    pub fn partition(&self, cut: bool) {
        let mode = if cut { Mode::Refuse } else { Mode::Pass };
        self.etcd_link.set_mode(mode);
        self.api_link.set_mode(mode);
    }
}

/// The cluster; dropping it stops every process it started.
pub struct PatroniCluster {
    programs: Programs,
    /// The members, in start order.
    pub nodes: Vec<PatroniNode>,
    /// The Patroni scope (cluster name).
    pub scope: String,
    /// Patroni's `synchronous_mode`.
    pub synchronous: bool,
    /// Every rwproxy's `consistency.session` (`"writes"`, `"reads-too"`).
    session: &'static str,
    etcd: Process,
    etcd_addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// The loopback address of member `i` (0-based).
fn member_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 11 + u8::try_from(i).expect("few members"))
}

/// A port free on every one of `ips` (tries a few candidates).
fn port_free_on(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..50 {
        let port = free_port();
        let all = ips
            .iter()
            .all(|ip| std::net::TcpListener::bind((IpAddr::V4(*ip), port)).is_ok());
        if all {
            return port;
        }
    }
    panic!("no port free on {ips:?}");
}

impl PatroniCluster {
    /// Starts etcd and three members (the first bootstraps; the others clone it), waits until
    /// all three stream, then starts an app and an rwproxy per node. `synchronous` sets
    /// Patroni's `synchronous_mode`. `None` (skip) when Patroni, etcd or PostgreSQL is missing.
    pub async fn start(synchronous: bool) -> Option<PatroniCluster> {
        Self::start_with_session(synchronous, "writes").await
    }

    /// As [`PatroniCluster::start`], with every rwproxy's `consistency.session` set to
    /// `session` (the history checker runs with `"reads-too"`).
    pub async fn start_with_session(
        synchronous: bool,
        session: &'static str,
    ) -> Option<PatroniCluster> {
        let programs = Programs::find()?;
        let dir = tempfile::tempdir().expect("tempdir");
        programs.own(dir.path());
        let (etcd, etcd_addr) = start_etcd(&programs, dir.path());
        let ips: Vec<Ipv4Addr> = (0..3).map(member_ip).collect();
        let pg_port = port_free_on(&ips);
        let api_port = port_free_on(&ips);
        let proxy_port = port_free_on(&ips);
        let scope = format!("rwproxy-test-{}", std::process::id());
        let mut nodes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let name = format!("pg{}", i + 1);
            let etcd_link = Relay::start(etcd_addr).await;
            let api_link = Relay::start(SocketAddr::new(IpAddr::V4(*ip), api_port)).await;
            let replication_link = Relay::start_on(
                SocketAddr::new(IpAddr::V4(*ip), 0),
                SocketAddr::new(IpAddr::V4(*ip), pg_port),
            )
            .await;
            let node_dir = dir.path().join(&name);
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let config = node_dir.join("patroni.yml");
            let data = node_dir.join("data");
            let yaml = patroni_yaml(&PatroniYaml {
                scope: &scope,
                name: &name,
                ip: *ip,
                pg_port,
                api_port,
                etcd: etcd_link.addr(),
                api_link: api_link.addr(),
                replication_link: replication_link.addr(),
                dir: &node_dir,
                pg_bin: programs.pg.dir(),
                synchronous,
            });
            std::fs::write(&config, yaml).expect("patroni.yml");
            programs.own(&node_dir);
            let app = PgApp::start_durable(
                &format!("app-{name}"),
                &format!("postgres://postgres@{ip}:{pg_port}/postgres"),
            )
            .await;
            nodes.push(PatroniNode {
                name,
                ip: *ip,
                pg_port,
                api_port,
                etcd_link,
                api_link,
                replication_link,
                app,
                proxy: None,
                proxy_addr: SocketAddr::new(IpAddr::V4(*ip), proxy_port),
                config,
                data,
                patroni: Process(None),
            });
        }
        let mut cluster = PatroniCluster {
            programs,
            nodes,
            scope,
            synchronous,
            session,
            etcd,
            etcd_addr,
            dir,
        };
        // The first member bootstraps alone, so it is the first leader.
        cluster.start_patroni(0);
        cluster.wait_leader_of(Some(0)).await;
        let setup = cluster.sql(
            0,
            "CREATE ROLE rwproxy LOGIN IN ROLE pg_monitor; \
             GRANT EXECUTE ON FUNCTION pg_read_file(text) TO rwproxy; \
             CREATE TABLE items (name text PRIMARY KEY);",
        );
        setup.await;
        // The history checker's table ([`crate::pg_kv`]), before any replica clones the leader.
        let setup = cluster.sql(0, crate::pg_kv::KV_TABLE);
        setup.await;
        cluster.start_patroni(1);
        cluster.start_patroni(2);
        cluster.wait_streaming(3).await;
        for i in 0..3 {
            cluster.start_proxy(i).await;
        }
        for i in 0..3 {
            let node = &cluster.nodes[i];
            let want_primary = i == 0;
            let leader_ip = cluster.nodes[0].ip.to_string();
            eventually(WAIT, &format!("{} follows pg1", node.name), || {
                let s = node.state();
                let ok = s.is_primary() == want_primary
                    && s.primary.as_deref() == Some(leader_ip.as_str());
                async move { ok.then_some(()) }
            })
            .await;
        }
        Some(cluster)
    }

    fn start_patroni(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log =
            std::fs::File::create(node.config.with_file_name("patroni.log")).expect("patroni log");
        self.programs
            .own(&node.config.with_file_name("patroni.log"));
        let child = self
            .programs
            .command(&self.programs.patroni)
            .arg(&node.config)
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start patroni");
        node.patroni = Process(Some(child));
    }

    /// `kill -9` of member `i`'s Patroni (its PostgreSQL keeps running, as after a crash of
    /// the agent alone).
    pub fn kill_patroni(&mut self, i: usize) {
        self.nodes[i].patroni.kill();
    }

    /// Starts member `i`'s Patroni again (after [`PatroniCluster::kill_patroni`]).
    pub fn restart_patroni(&mut self, i: usize) {
        self.start_patroni(i);
    }

    async fn start_proxy(&mut self, i: usize) {
        let node = &self.nodes[i];
        let listener = TcpListener::bind(node.proxy_addr)
            .await
            .expect("bind proxy");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let text = format!(
            r#"
node = "{name}"
[proxy]
listen = "{addr}"
app = "{app}"
drain_timeout = "5s"
[admin]
listen = "127.0.0.1:0"
[cluster]
source = "patroni"
api = "http://{ip}:{api_port}"
url = "postgres://rwproxy@{ip}:{pg_port}/postgres"
poll = "100ms"
timeout = "500ms"
[writes]
primary_url = "http://{{primary}}:{proxy_port}"
primary_wait = "20s"
timeout = "10s"
connect_timeout = "1s"
[reads]
max_lag = "2s"
when_stale = "forward"
[health]
max_lag = "5s"
[consistency]
wait = "5s"
on_timeout = "error"
session = "{session}"
[log]
access = false
"#,
            name = node.name,
            addr = node.proxy_addr,
            app = node.app.url(),
            ip = node.ip,
            api_port = node.api_port,
            pg_port = node.pg_port,
            proxy_port = node.proxy_addr.port(),
            session = self.session,
        );
        let config = config::parse(&text).unwrap_or_else(|e| panic!("config: {e}"));
        let proxy = Node::start_on(&config, listener, Some(admin))
            .await
            .expect("start rwproxy");
        self.nodes[i].proxy = Some(proxy);
    }

    /// `GET /cluster` from the first member whose Patroni answers.
    pub async fn cluster_view(&self) -> Option<Value> {
        for node in &self.nodes {
            let answer = client()
                .get(node.api("/cluster"))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(resp) = answer {
                if let Ok(json) = resp.json::<Value>().await {
                    return Some(json);
                }
            }
        }
        None
    }

    /// The index of the member Patroni names leader, if any.
    pub async fn leader(&self) -> Option<usize> {
        self.member_with_role("leader").await
    }

    /// The index of the synchronous standby (the only switchover candidate under
    /// `synchronous_mode`), if any.
    pub async fn sync_standby(&self) -> Option<usize> {
        self.member_with_role("sync_standby").await
    }

    async fn member_with_role(&self, role: &str) -> Option<usize> {
        let view = self.cluster_view().await?;
        let members = view.get("members")?.as_array()?;
        let member = members
            .iter()
            .find(|m| m.get("role").and_then(Value::as_str) == Some(role))?;
        let name = member.get("name")?.as_str()?;
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Waits until the leader is `want` (or any leader, with `None`) and its `/primary` is 200;
    /// returns its index.
    pub async fn wait_leader_of(&self, want: Option<usize>) -> usize {
        let what = format!("leader {want:?}");
        self.wait_leader(&what, |l| want.is_none_or(|w| w == l))
            .await
    }

    /// Waits until a member other than `old` leads (its `/primary` answering 200).
    pub async fn wait_new_leader(&self, old: usize) -> usize {
        self.wait_leader("a new leader", |l| l != old).await
    }

    /// Waits until `/cluster` names a leader that `accept`s and whose `/primary` answers 200.
    async fn wait_leader(&self, what: &str, accept: impl Fn(usize) -> bool) -> usize {
        eventually(WAIT, what, || async {
            let leader = self.leader().await.filter(|l| accept(*l))?;
            let status = client()
                .get(self.nodes[leader].api("/primary"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .ok()?
                .status();
            (status == 200).then_some(leader)
        })
        .await
    }

    /// Waits until `n` members run, every replica's WAL receiver streams (asked of PostgreSQL:
    /// Patroni 3.0 says `running` for a replica still waiting for WAL) and, under
    /// `synchronous_mode`, Patroni names a synchronous standby: only then can it fail over.
    pub async fn wait_streaming(&self, n: usize) {
        eventually(WAIT, &format!("{n} members streaming"), || async {
            let view = self.cluster_view().await?;
            let members = view.get("members")?.as_array()?;
            if members.len() < n {
                return None;
            }
            let leader = self.leader().await?;
            for i in (0..self.nodes.len()).filter(|i| *i != leader) {
                let streaming = self
                    .query_text(
                        i,
                        "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
                    )
                    .await;
                if streaming.as_deref() != Some("1") {
                    return None;
                }
            }
            if self.synchronous {
                self.sync_standby().await?;
            }
            Some(())
        })
        .await;
    }

    /// The first column of the first row of `sql` on member `i`, `None` when it cannot answer.
    async fn query_text(&self, i: usize, sql: &str) -> Option<String> {
        let url = self.nodes[i].pg_url();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(connection);
        let messages = client.simple_query(sql).await.ok()?;
        messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
    }

    /// Runs `sql` as the superuser on member `i`.
    pub async fn sql(&self, i: usize, sql: &str) {
        let (client, connection) =
            tokio_postgres::connect(&self.nodes[i].pg_url(), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to {}: {e}", self.nodes[i].name));
        tokio::spawn(connection);
        client.batch_execute(sql).await.expect(sql);
    }

    /// The item names in member `i`'s `items` table.
    pub async fn items(&self, i: usize) -> Vec<String> {
        let (client, connection) =
            tokio_postgres::connect(&self.nodes[i].pg_url(), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to {}: {e}", self.nodes[i].name));
        tokio::spawn(connection);
        let rows = client
            .query("SELECT name FROM items", &[])
            .await
            .expect("select items");
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    }

    /// `patronictl switchover --force` to `candidate` (a member index).
    pub fn switchover(&self, candidate: usize) {
        let name = &self.nodes[candidate].name;
        self.patronictl(&["switchover", "--force", "--candidate", name]);
    }

    /// Runs `patronictl -c <pg1's patroni.yml> ARGS` (as `postgres` when root); panics with its
    /// output when it fails.
    fn patronictl(&self, args: &[&str]) {
        let output = self
            .programs
            .command(&self.programs.patronictl)
            .arg("-c")
            .arg(&self.nodes[0].config)
            .args(args)
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .output()
            .expect("patronictl");
        assert!(
            output.status.success(),
            "patronictl {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Turns Patroni's `synchronous_mode` on or off (`patronictl edit-config`) and waits until
    /// the leader's PostgreSQL follows: a synchronous standby named, or none (commits no longer
    /// wait for any replica).
    pub async fn set_synchronous(&mut self, on: bool) {
        let setting = format!("synchronous_mode={on}");
        self.patronictl(&["edit-config", "--force", "--set", &setting]);
        self.synchronous = on;
        eventually(WAIT, "the leader's synchronous_standby_names", || async {
            let leader = self.leader().await?;
            let names = self
                .query_text(leader, "SHOW synchronous_standby_names")
                .await?;
            (names.is_empty() != on).then_some(())
        })
        .await;
    }

    /// The directory everything lives in (logs: `<dir>/pgN/patroni.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// etcd's client address (the relays' target).
    pub fn etcd_addr(&self) -> SocketAddr {
        self.etcd_addr
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What Patroni did is what explains a failed test.
            for node in &self.nodes {
                let log = std::fs::read_to_string(node.config.with_file_name("patroni.log"))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("--- {} patroni.log (last 40 lines)\n{tail}", node.name);
            }
        }
        for node in &mut self.nodes {
            node.proxy = None;
            node.patroni.kill();
            // Patroni killed: its PostgreSQL is stopped here, or it would outlive the test.
            if node.data.join("postmaster.pid").exists() {
                let _ = self
                    .programs
                    .command(&self.programs.pg.dir().join("pg_ctl"))
                    .arg("-D")
                    .arg(&node.data)
                    .args(["-m", "immediate", "-w", "-t", "20", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        self.etcd.kill();
    }
}

fn start_etcd(programs: &Programs, dir: &Path) -> (Process, SocketAddr) {
    let client_port = free_port();
    let peer_port = free_port();
    let data = dir.join("etcd");
    let log = std::fs::File::create(dir.join("etcd.log")).expect("etcd log");
    programs.own(&dir.join("etcd.log"));
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let child = programs
        .command(&programs.etcd)
        .args(["--name", "e1", "--data-dir"])
        .arg(&data)
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("e1={peer_url}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let addr = SocketAddr::from(([127, 0, 0, 1], client_port));
    (Process(Some(child)), addr)
}

struct PatroniYaml<'a> {
    scope: &'a str,
    name: &'a str,
    ip: Ipv4Addr,
    pg_port: u16,
    api_port: u16,
    etcd: SocketAddr,
    api_link: SocketAddr,
    replication_link: SocketAddr,
    dir: &'a Path,
    pg_bin: &'a Path,
    synchronous: bool,
}

/// One member's patroni.yml: etcd v3 through its relay (`use_proxies`: no discovery of etcd's
/// advertised address, which would bypass the relay), trust authentication on loopback only
/// (test data), short timings, no fsync.
fn patroni_yaml(y: &PatroniYaml<'_>) -> String {
    let dir = y.dir.display();
    format!(
        r#"scope: {scope}
name: {name}
restapi:
  listen: {ip}:{api_port}
  connect_address: {api_link}
etcd3:
  hosts: {etcd}
  use_proxies: true
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    primary_start_timeout: 0
    maximum_lag_on_failover: 1073741824
    synchronous_mode: {synchronous}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: "on"
        fsync: "off"
        shared_buffers: 16MB
        max_connections: 40
        wal_receiver_status_interval: 1s
  initdb:
  - encoding: UTF8
  - locale: C
  - auth: trust
  pg_hba:
  - host replication all 127.0.0.0/8 trust
  - host all all 127.0.0.0/8 trust
postgresql:
  listen: {ip}:{pg_port}
  connect_address: {replication_link}
  data_dir: {dir}/data
  bin_dir: {pg_bin}
  pgpass: {dir}/pgpass
  authentication:
    replication:
      username: postgres
    superuser:
      username: postgres
  parameters:
    unix_socket_directories: {dir}
"#,
        scope = y.scope,
        name = y.name,
        ip = y.ip,
        api_port = y.api_port,
        pg_port = y.pg_port,
        etcd = y.etcd,
        api_link = y.api_link,
        replication_link = y.replication_link,
        synchronous = y.synchronous,
        pg_bin = y.pg_bin.display(),
    )
}
