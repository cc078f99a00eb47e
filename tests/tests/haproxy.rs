//! End to end with a real load balancer: HAProxy in front of two replicas' rwproxies takes a
//! lagging replica out of rotation through `GET /health` (and puts it back when it recovers),
//! and follows the agent-check words (weight by lag, down, drain) from `admin.agent_listen`.
//!
//! Skipped with a notice when `haproxy` is not installed, unless `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::peered::{health_becomes, Peered};
use rwproxy_tests::{client, eventually, external_program, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(15);

/// A running `haproxy`, killed when dropped.
struct Haproxy {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// Starts `haproxy` with a frontend on a free port and `backend` as the backend section's
    /// body; `None` when HAProxy is not installed (the test skips).
    async fn start(backend: &str) -> Option<Haproxy> {
        let program = external_program("haproxy")?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let socket = dir.path().join("admin.sock");
        let config = format!(
            "global\n    stats socket {socket} level admin\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    \
             timeout server 10s\n    timeout check 1s\n\
             frontend edge\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             backend replicas\n    balance roundrobin\n{backend}",
            socket = socket.display(),
        );
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, &config).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut haproxy = Haproxy { child, dir, port };
        eventually(WAIT, "haproxy to listen", || {
            if let Some(status) = haproxy.child.try_wait().unwrap() {
                panic!("haproxy exited ({status}):\n{}", haproxy.log());
            }
            let socket = haproxy.socket();
            async move {
                let up = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                    && tokio::net::UnixStream::connect(socket).await.is_ok();
                up.then_some(())
            }
        })
        .await;
        Some(haproxy)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// `GET path` through HAProxy: which test app answered (`app1`, `app2`), or the status.
    async fn served_by(&self, path: &str) -> String {
        let r = client()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            return format!("status {}", r.status());
        }
        let doc: serde_json::Value = r.json().await.unwrap();
        doc["app"].as_str().unwrap().to_owned()
    }

    /// Which apps served a batch of `n` requests.
    async fn batch(&self, n: usize) -> Vec<String> {
        let mut served = Vec::with_capacity(n);
        for i in 0..n {
            served.push(self.served_by(&format!("/r/{i}")).await);
        }
        served
    }

    /// Waits until HAProxy marks server `name` down.
    async fn until_down(&self, name: &str) {
        eventually(WAIT, &format!("haproxy to mark {name} down"), || async {
            self.server(name).await.0.starts_with("DOWN").then_some(())
        })
        .await;
    }

    /// `(status, weight)` of server `name` on HAProxy's stats page (`show stat`).
    async fn server(&self, name: &str) -> (String, String) {
        let fields = self.server_fields(name, &["status", "weight"]).await;
        (fields[0].clone(), fields[1].clone())
    }

    /// The `columns` of server `name`'s row on HAProxy's stats page (`show stat`).
    async fn server_fields(&self, name: &str, columns: &[&str]) -> Vec<String> {
        let mut stream = tokio::net::UnixStream::connect(self.socket())
            .await
            .unwrap();
        stream.write_all(b"show stat\n").await.unwrap();
        let mut csv = String::new();
        stream.read_to_string(&mut csv).await.unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |n: &str| header.iter().position(|h| *h == n).unwrap();
        let row: Vec<&str> = lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|r| r.get(1) == Some(&name))
            .unwrap_or_else(|| panic!("no server {name} in\n{csv}"));
        columns.iter().map(|c| row[column(c)].to_owned()).collect()
    }
}

/// The HTTP-check backend of nodes 1 and 2 as `r1` and `r2`: `GET /health` every 100 ms.
fn http_check_backend(c: &Cluster) -> String {
    format!(
        "    option httpchk GET /health\n    http-check expect status 200\n    \
         default-server inter 100ms fall 2 rise 2\n    \
         server r1 {} check\n    server r2 {} check\n",
        c.nodes[1].name, c.nodes[2].name
    )
}

/// How often HAProxy marked r1 and r2 down so far (`chkdown` of `show stat`).
async fn checks_down(haproxy: &Haproxy) -> Vec<String> {
    let mut downs = Vec::new();
    for server in ["r1", "r2"] {
        downs.push(haproxy.server_fields(server, &["chkdown"]).await.remove(0));
    }
    downs
}

fn assert_exists(path: &Path) {
    assert!(path.exists(), "{}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_takes_a_lagging_replica_out_and_back_in() {
    let c = Cluster::start(3, |config| {
        config.health.max_lag = Duration::from_secs(1);
        // The lagging replica would still serve reads itself: only the edge keeps them away.
        config.reads.max_lag = Duration::from_secs(60);
    })
    .await;
    let Some(haproxy) = Haproxy::start(&http_check_backend(&c)).await else {
        return;
    };
    assert_exists(&haproxy.socket());
    eventually(WAIT, "both replicas to get traffic", || async {
        let served = haproxy.batch(6).await;
        (served.iter().any(|s| s == "app1") && served.iter().any(|s| s == "app2")).then_some(())
    })
    .await;

    c.nodes[1].mount.set_lag_ms(5000);
    haproxy.until_down("r1").await;
    let served = haproxy.batch(20).await;
    assert!(
        served.iter().all(|s| s == "app2"),
        "every request goes to the healthy replica: {served:?}\n{}",
        haproxy.log()
    );

    c.nodes[1].mount.set_lag_ms(0);
    eventually(WAIT, "traffic to return to r1", || async {
        haproxy
            .batch(4)
            .await
            .iter()
            .any(|s| s == "app1")
            .then_some(())
    })
    .await;
    assert_eq!(haproxy.server("r1").await.0, "UP");
    drop(haproxy);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_follows_the_agent_weight_down_and_drain_words() {
    let c = Cluster::start(3, |config| {
        config.admin.agent_listen = Some("127.0.0.1:0".parse().unwrap());
        config.health.rise = 1;
        config.health.fall = 1;
    })
    .await;
    let backend = format!(
        "    default-server inter 100ms fall 2 rise 2 agent-inter 100ms weight 100\n    \
         server r1 {} check agent-check agent-port {}\n    \
         server r2 {} check agent-check agent-port {}\n",
        c.nodes[1].name,
        c.nodes[1].agent_addr().port(),
        c.nodes[2].name,
        c.nodes[2].agent_addr().port(),
    );
    let Some(haproxy) = Haproxy::start(&backend).await else {
        return;
    };
    // `weight` None: any (an agent's `down` or `drain` leaves the last weight in place).
    let server_is = |name: &'static str, status: &'static str, weight: Option<&'static str>| {
        let haproxy = &haproxy;
        async move {
            let what = format!("{name} to be {status} with weight {weight:?}");
            eventually(WAIT, &what, || async {
                let (s, w) = haproxy.server(name).await;
                (s == status && (weight.is_none() || weight == Some(w.as_str()))).then_some(())
            })
            .await;
        }
    };
    server_is("r1", "UP", Some("100")).await;

    // Half of health.max_lag (10 s): the agent says 55%, HAProxy weighs r1 at 55.
    c.nodes[1].mount.set_lag_ms(5000);
    server_is("r1", "UP", Some("55")).await;

    c.nodes[1].mount.set_lag_ms(20_000);
    server_is("r1", "DOWN (agent)", None).await;
    let served = haproxy.batch(10).await;
    assert!(served.iter().all(|s| s == "app2"), "{served:?}");

    c.nodes[1].mount.set_lag_ms(0);
    server_is("r1", "UP", Some("100")).await;

    c.nodes[2].node.as_ref().unwrap().drain();
    server_is("r2", "DRAIN (agent)", None).await;
    let served = haproxy.batch(10).await;
    assert!(
        served.iter().all(|s| s == "app1"),
        "no new requests to a draining node: {served:?}"
    );
    drop(haproxy);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_keeps_reads_flowing_when_the_primary_is_lost_and_pulls_only_a_cut_off_replica() {
    let mut p = Peered::start(3, |config| {
        config.peers.poll = Duration::from_millis(100);
        config.reads.max_lag = Duration::from_secs(1);
        config.writes.primary_wait = Duration::from_millis(200);
    })
    .await;
    let c = &p.cluster;
    let Some(haproxy) = Haproxy::start(&http_check_backend(c)).await else {
        return;
    };
    let both_serve = || async {
        let served = haproxy.batch(6).await;
        (served.iter().any(|s| s == "app1") && served.iter().any(|s| s == "app2")).then_some(())
    };
    eventually(WAIT, "both replicas to get traffic", both_serve).await;

    // A replica cut off from the primary the other still reaches: HAProxy drops it alone.
    c.nodes[1].lose_primary(60_000).await;
    haproxy.until_down("r1").await;
    let served = haproxy.batch(10).await;
    assert!(served.iter().all(|s| s == "app2"), "{served:?}");
    assert_eq!(haproxy.server("r2").await.0, "UP");
    c.follow(1, 0).await;
    eventually(WAIT, "traffic to return to r1", both_serve).await;

    // The primary is lost by everyone: both replicas stay in, reads keep flowing.
    let downs_before = checks_down(&haproxy).await;
    p.cluster.nodes[0].stop().await;
    for i in [1, 2] {
        p.cluster.nodes[i].mount.lose_primary(60_000);
    }
    for i in [1, 2] {
        let url = format!("{}/health", p.cluster.nodes[i].url());
        health_becomes(&url, 200, "degraded", WAIT).await;
    }
    let served = haproxy.batch(20).await;
    assert!(
        served.iter().any(|s| s == "app1") && served.iter().any(|s| s == "app2"),
        "both degraded replicas keep serving reads: {served:?}\n{}",
        haproxy.log()
    );
    assert!(served.iter().all(|s| s.starts_with("app")), "{served:?}");
    assert_eq!(
        checks_down(&haproxy).await,
        downs_before,
        "HAProxy never marked a replica down during the primary loss\n{}",
        haproxy.log()
    );
    let write = client()
        .post(format!("http://127.0.0.1:{}/items", haproxy.port))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 503);
    assert_eq!(write.headers()["rwproxy-error"], "no-primary");
    assert!(write.headers().contains_key("retry-after"));
    drop(haproxy);
    p.cluster.stop().await;
}
