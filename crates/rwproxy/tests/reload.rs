//! The real binary reloading its configuration (SIGHUP, `rwproxy reload`, `POST /reload`)
//! under steady load: a new routing glob and a new `reads.max_lag` apply to the very next
//! request and no request fails; a broken file changes nothing and the node says why with the
//! lines `rwproxy check` prints; a storm of reloads neither leaks connections nor stalls.
//!
//! The node is a replica (`cluster.source = "http"`, the status document served by the test's
//! local app with a lag the test sets); `writes.primary_url` points at a second app that
//! answers `primary`, so every answer says where it was served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

/// The local app (`local` for everything, the cluster status document on `/cluster`) and the
/// primary (`primary` for everything).
struct Apps {
    local: SocketAddr,
    primary: SocketAddr,
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn start_apps(lag_ms: u64) -> Apps {
    let lag = Arc::new(AtomicU64::new(lag_ms));
    let doc = lag.clone();
    let local = Router::new()
        .route(
            "/cluster",
            get(move || {
                let lag = doc.load(Ordering::Relaxed);
                async move {
                    format!(r#"{{"role":"replica","primary":"p","positions":{{}},"lag_ms":{lag},"ready":true}}"#)
                }
            }),
        )
        .fallback(|| async { "local" });
    let primary = Router::new().fallback(|| async { "primary" });
    Apps {
        local: serve(local).await,
        primary: serve(primary).await,
    }
}

/// A loopback port free a moment ago (the binary binds it from its file).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Where a node's file puts it and what it points at.
struct Layout {
    proxy: SocketAddr,
    admin: SocketAddr,
    local: SocketAddr,
    primary: SocketAddr,
    /// More `[proxy]` keys, one a line.
    proxy_keys: std::sync::Mutex<String>,
}

impl Layout {
    /// The configuration file: the test's apps and listeners, then `extra` (TOML sections).
    fn text(&self, extra: &str) -> String {
        format!(
            r#"node = "r"
[proxy]
listen = "{proxy}"
app = "http://{local}"
{proxy_keys}
[admin]
listen = "{admin}"
[cluster]
source = "http"
url = "http://{local}/cluster"
poll = "50ms"
[writes]
primary_url = "http://{primary}"
{extra}
"#,
            proxy = self.proxy,
            admin = self.admin,
            local = self.local,
            primary = self.primary,
            proxy_keys = self.proxy_keys.lock().unwrap(),
        )
    }
}

/// A running `rwproxy run -c FILE`, killed when dropped.
struct Node {
    child: Child,
    layout: Layout,
    file: PathBuf,
    log: PathBuf,
    proxy: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    async fn start(apps: &Apps, extra: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rwproxy.toml");
        let log = dir.path().join("rwproxy.log");
        let layout = Layout {
            proxy: free_port(),
            admin: free_port(),
            local: apps.local,
            primary: apps.primary,
            proxy_keys: std::sync::Mutex::new(String::new()),
        };
        write_atomically(&file, &layout.text(extra));
        let child = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
            .args(["run", "-c"])
            .arg(&file)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut node = Node {
            child,
            proxy: layout.proxy,
            admin: layout.admin,
            layout,
            file,
            log,
            _dir: dir,
        };
        let client = client();
        let live = format!("http://{}/live", node.admin);
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while client.get(&live).send().await.is_err() {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("rwproxy exited ({status}):\n{}", node.log_text());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rwproxy did not start:\n{}",
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node
    }

    fn text(&self, extra: &str) -> String {
        self.layout.text(extra)
    }

    /// Replaces the file whole (written aside, then renamed), so a reload never reads half.
    fn write(&self, extra: &str) {
        write_atomically(&self.file, &self.text(extra));
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// `rwproxy reload -c FILE`, off the runtime.
    async fn reload_command(&self) -> Output {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_rwproxy"))
                .args(["reload", "-c"])
                .arg(file)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    /// The value of one sample of `/metrics` (`name{labels}` as rendered), 0 when absent.
    async fn metric(&self, sample: &str) -> f64 {
        let text = client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    async fn reloads(&self, result: &str) -> f64 {
        self.metric(&format!(
            "rwproxy_config_reloads_total{{result=\"{result}\"}}"
        ))
        .await
    }

    /// Waits until `/metrics` counts `n` reloads with `result`.
    async fn await_reloads(&self, result: &str, n: f64) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let seen = self.reloads(result).await;
            if seen >= n {
                assert_eq!(seen, n, "more {result} reloads than asked for");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} {result} reloads not counted (saw {seen}):\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Open file descriptors of the process (sockets included).
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |dir| dir.count())
    }
}

fn write_atomically(path: &Path, text: &str) {
    let aside = path.with_extension("toml.new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn client() -> reqwest::Client {
    rwproxy_cluster::client_builder()
        .unwrap()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Where `GET path` is served: the body, `local` or `primary`.
async fn served_by(client: &reqwest::Client, node: &Node, path: &str) -> String {
    let response = client.get(node.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response.text().await.unwrap()
}

/// Waits until the node has read its cluster source and serves reads itself.
async fn await_local_reads(client: &reqwest::Client, node: &Node) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let response = client.get(node.url("/page")).send().await.unwrap();
        if response.status() == 200 && response.text().await.unwrap() == "local" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reads never served locally:\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Steady load: `workers` loops of GETs over keep-alive connections until stopped; every
/// answer that is not a 200 (or no answer) is counted as lost.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
}

impl Load {
    fn start(node: &Node, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let client = client();
        let tasks = (0..workers)
            .map(|i| {
                let (stop, client, url) = (
                    stop.clone(),
                    client.clone(),
                    node.url(&format!("/load/{i}")),
                );
                tokio::spawn(async move {
                    let (mut ok, mut lost) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(r) if r.status() == 200 => match r.text().await {
                                Ok(_) => ok += 1,
                                Err(e) => lost.push(e.to_string()),
                            },
                            Ok(r) => lost.push(format!("status {}", r.status())),
                            Err(e) => lost.push(e.to_string()),
                        }
                    }
                    (ok, lost)
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops it; returns how many requests succeeded, after asserting that none was lost.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for task in self.tasks {
            let (ok, lost) = task.await.unwrap();
            assert!(lost.is_empty(), "requests lost during reloads: {lost:?}");
            total += ok;
        }
        total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_applies_a_new_glob_and_max_lag_at_once_and_loses_nothing() {
    let apps = start_apps(2_000).await;
    let node = Node::start(&apps, "[reads]\nmax_lag = \"5s\"\n").await;
    let client = client();
    // A replica 2 s behind, max_lag 5 s: once the source has been read, reads are served here.
    await_local_reads(&client, &node).await;
    assert_eq!(served_by(&client, &node, "/forward/x").await, "local");
    let load = Load::start(&node, 4);

    // A new glob, through `rwproxy reload`: applied when it exits 0, so the next request obeys.
    node.write("[reads]\nmax_lag = \"5s\"\n[routing]\nalways_forward = [\"/forward/*\"]\n");
    let out = node.reload_command().await;
    assert!(
        out.status.success(),
        "rwproxy reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reloaded\n");
    assert_eq!(served_by(&client, &node, "/forward/x").await, "primary");
    assert_eq!(served_by(&client, &node, "/page").await, "local");

    // A new max_lag, through SIGHUP: 1 s is under the replica's 2 s lag, so reads leave.
    node.write("[reads]\nmax_lag = \"1s\"\n[routing]\nalways_forward = [\"/forward/*\"]\n");
    node.hangup();
    node.await_reloads("success", 2.0).await;
    assert_eq!(served_by(&client, &node, "/page").await, "primary");
    assert_eq!(served_by(&client, &node, "/forward/x").await, "primary");

    let served = load.finish().await;
    assert!(served > 0, "the load sent nothing");
    assert_eq!(node.reloads("failure").await, 0.0);
    assert!(
        node.metric("rwproxy_config_last_reload_success_timestamp_seconds")
            .await
            > 1.7e9
    );
    assert_eq!(node.metric("rwproxy_reads_max_lag_seconds").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_and_says_why() {
    let apps = start_apps(0).await;
    let good = "[routing]\nalways_forward = [\"/forward/*\"]\n";
    let node = Node::start(&apps, good).await;
    let client = client();
    assert_eq!(served_by(&client, &node, "/forward/x").await, "primary");

    // What `rwproxy check` says about the broken file is what the node logs and answers.
    node.write("[routing]\nalways_forward = []\n[reads]\nmax_lag = \"5 parsecs\"\nmax_lagg = 1\n");
    let check = Command::new(env!("CARGO_BIN_EXE_rwproxy"))
        .args(["check", "-c"])
        .arg(&node.file)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(64));
    let problems = String::from_utf8(check.stderr).unwrap();
    assert!(
        problems.contains("reads.max_lag: invalid duration"),
        "{problems}"
    );
    assert!(problems.contains("reads.max_lagg"), "{problems}");

    node.hangup();
    node.await_reloads("failure", 1.0).await;
    assert_eq!(served_by(&client, &node, "/forward/x").await, "primary");
    let log = node.log_text();
    for line in problems.lines() {
        assert!(
            log.contains(&format!("configuration reload refused: {line}")),
            "{line} not in:\n{log}"
        );
    }
    assert_eq!(
        node.metric("rwproxy_config_last_reload_successful").await,
        0.0
    );

    // The admin endpoint answers the same lines; `rwproxy reload` refuses before asking.
    let answer = client
        .post(format!("http://{}/reload", node.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    assert_eq!(
        answer.text().await.unwrap(),
        format!("{}\n", problems.trim_end())
    );
    node.await_reloads("failure", 2.0).await;
    let out = node.reload_command().await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(String::from_utf8_lossy(&out.stderr), problems);
    assert_eq!(served_by(&client, &node, "/forward/x").await, "primary");

    // A valid file that moves the listener: the rest applies (a glob, the log level), the
    // listener stays, and the answer names what needs a restart.
    assert_eq!(served_by(&client, &node, "/forward/loud").await, "primary");
    let logged = |path: &str| node.log_text().contains(&format!("path=\"{path}\""));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !logged("/forward/loud") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no access log line:\n{}",
            node.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let moved = node
        .text("[routing]\npassthrough = [\"/forward/*\"]\n[log]\nlevel = \"warn\"\n")
        .replace(&node.proxy.to_string(), &free_port().to_string());
    write_atomically(&node.file, &moved);
    let out = node.reload_command().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "reloaded\nproxy.listen: changed, but takes effect only at start (restart to apply it)\n"
    );
    assert_eq!(served_by(&client, &node, "/forward/quiet").await, "local");
    // The access log line (info) is written when the answer's head is ready, before the
    // client gets it: at "warn" there is none.
    assert!(!logged("/forward/quiet"), "{}", node.log_text());
    assert!(
        node.log_text().contains("needs_restart=proxy.listen"),
        "{}",
        node.log_text()
    );
    assert_eq!(
        node.metric("rwproxy_config_last_reload_successful").await,
        1.0
    );

    let wrong_method = client
        .get(format!("http://{}/reload", node.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_neither_leaks_nor_stalls() {
    let apps = start_apps(0).await;
    // Alternating the app's connection cap makes every reload build a new pool to the app, so
    // a proxy that outlived its reload would keep its pooled connections open: a leak shows
    // in the descriptor count.
    let file = |node: &Node, n: u32| {
        *node.layout.proxy_keys.lock().unwrap() = format!("app_max_connections = {}", 1000 + n % 2);
        node.write(&format!("[reads]\nmax_lag = \"{}ms\"\n", 1000 + n));
    };
    let node = Node::start(&apps, "").await;
    file(&node, 0);
    let client = client();
    await_local_reads(&client, &node).await;
    drop(client);
    let baseline = node.open_fds();

    let load = Load::start(&node, 4);
    // 100 SIGHUPs over one second, the file changing under them; signals that arrive during a
    // reload fold into the next one, so at least one reload and at most 100 are counted.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for n in 1..=100 {
        tick.tick().await;
        file(&node, n);
        node.hangup();
    }
    // 100 reloads over the admin endpoint at once: each is applied, one after the other.
    let admin = client_for_storm();
    let posts = (0..100).map(|_| {
        let (admin, url) = (admin.clone(), format!("http://{}/reload", node.admin));
        tokio::spawn(async move { admin.post(url).send().await.map(|r| r.status().as_u16()) })
    });
    for post in posts.collect::<Vec<_>>() {
        assert_eq!(post.await.unwrap().unwrap(), 200);
    }
    let served = load.finish().await;
    assert!(served > 0);
    let hups = node.reloads("success").await - 100.0;
    assert!(
        (1.0..=100.0).contains(&hups),
        "{hups} reloads counted for 100 SIGHUPs"
    );
    assert_eq!(node.reloads("failure").await, 0.0);
    // The last file is the one in force.
    assert_eq!(node.metric("rwproxy_reads_max_lag_seconds").await, 1.1);

    // Not stalled: one more reload answers at once and applies.
    let out = node.reload_command().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not leaked: once the load's connections are gone, the old proxies and their pools are.
    drop(admin);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let fds = node.open_fds();
        if fds <= baseline + 8 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{fds} descriptors open after the storm, {baseline} before"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client_for_storm() -> reqwest::Client {
    rwproxy_cluster::client_builder()
        .unwrap()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
