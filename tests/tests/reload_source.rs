//! A reload that changes the cluster source's settings restarts the source live (issue #26):
//! under steady load the node's behaviour changes as soon as the new source has read the
//! cluster, no request fails and the node never shows unknown in between; a new source that
//! cannot read leaves a clear answer and reason; a storm of source changes leaves exactly one
//! poller running.
//!
//! The node is a replica whose writes go to `writes.primary_url = "http://{primary}"`: the
//! primary's *name* is the address of one of two test apps answering `primary-1` or
//! `primary-2`, so every write's answer says which primary the running source names. The
//! http sources' status documents are served by a test app that counts every fetch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use rwproxy::node::Node;
use rwproxy_core::{NodeState, Role};
use rwproxy_tests::{client, eventually};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long any awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(15);

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The two primaries, the local app and the status documents.
struct World {
    local: SocketAddr,
    primaries: [SocketAddr; 2],
    /// Serves `/status/{name}`: a replica of the primary `names[name]`.
    status: SocketAddr,
    /// Fetches of each status document.
    hits: Arc<Mutex<HashMap<String, u64>>>,
    dir: tempfile::TempDir,
    /// One client for the test's own requests (building one costs more than a reload).
    client: reqwest::Client,
}

impl World {
    async fn start() -> World {
        let mut primaries = Vec::new();
        for answer in ["primary-1", "primary-2"] {
            primaries.push(serve(Router::new().fallback(move || async move { answer })).await);
        }
        let primaries: [SocketAddr; 2] = primaries.try_into().unwrap();
        let local = serve(Router::new().fallback(|| async { "local" })).await;
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let counted = hits.clone();
        let status = serve(Router::new().route(
            "/status/{which}",
            get(move |Path(which): Path<String>| {
                *counted.lock().unwrap().entry(which.clone()).or_default() += 1;
                let primary = match which.as_str() {
                    "one" => primaries[0],
                    _ => primaries[1],
                };
                async move {
                    format!(
                        r#"{{"role":"replica","primary":"{primary}","positions":{{}},"lag_ms":0,"ready":true}}"#
                    )
                }
            }),
        ))
        .await;
        World {
            local,
            primaries,
            status,
            hits,
            dir: tempfile::tempdir().unwrap(),
            client: client(),
        }
    }

    /// The configuration file with `cluster` as its `[cluster]` keys.
    fn file(&self, cluster: &str) -> String {
        format!(
            r#"node = "r"
[proxy]
listen = "127.0.0.1:0"
app = "http://{local}"
[cluster]
{cluster}
[writes]
primary_url = "http://{{primary}}"
primary_wait = "100ms"
"#,
            local = self.local,
        )
    }

    fn static_source(&self, which: usize) -> String {
        format!(
            "source = \"static\"\nprimary = \"{}\"",
            self.primaries[which]
        )
    }

    fn http_source(&self, which: &str, poll: &str) -> String {
        format!(
            "source = \"http\"\nurl = \"http://{}/status/{which}\"\npoll = \"{poll}\"\ntimeout = \"2s\"",
            self.status
        )
    }

    fn hits(&self, which: &str) -> u64 {
        self.hits.lock().unwrap().get(which).copied().unwrap_or(0)
    }

    /// Starts a node from `cluster`, reloading from the same file.
    async fn node(&self, cluster: &str) -> Node {
        let path = self.dir.path().join("rwproxy.toml");
        std::fs::write(&path, self.file(cluster)).unwrap();
        let config = rwproxy::config::load(&path).unwrap();
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = Node::start_on(&config, proxy, Some(admin)).await.unwrap();
        node.reloader().set_file(path);
        node
    }

    /// A node from `cluster` (whose primary is `primary-1`), every state it publishes
    /// recorded, under steady write load.
    async fn loaded(&self, cluster: &str) -> (Arc<Node>, Arc<Mutex<Vec<NodeState>>>, Load) {
        let node = Arc::new(self.node(cluster).await);
        wait_for_primary(&node, "primary-1").await;
        let states = record_states(node.state());
        let load = Load::start(&node);
        load.wait_for(20).await;
        (node, states, load)
    }

    /// Waits until the document `polled` was fetched ten more times; meanwhile each of
    /// `stopped` (document, fetches counted before) may have been fetched at most once more
    /// (a fetch in flight at its source's switch): their pollers stopped.
    async fn assert_only_polled(&self, polled: &str, stopped: &[(String, u64)]) {
        let start = self.hits(polled);
        eventually(DEADLINE, "ten more polls of the running source", || async {
            (self.hits(polled) >= start + 10).then_some(())
        })
        .await;
        for (doc, before) in stopped {
            let now = self.hits(doc);
            assert!(
                now <= before + 1,
                "the poller of {doc} still runs: {before} -> {now}"
            );
        }
    }

    /// Rewrites the file with `cluster` and reloads `node` through `POST /reload`; returns the
    /// answer's status and body.
    async fn reload(&self, node: &Node, cluster: &str) -> (u16, String) {
        std::fs::write(self.dir.path().join("rwproxy.toml"), self.file(cluster)).unwrap();
        let url = format!("http://{}/reload", node.admin_addr().unwrap());
        let response = self.client.post(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

/// Which primary answers a write, or what went wrong.
async fn write(node: &Node) -> Result<String, String> {
    // One client per test thread: building one costs more than a reload.
    thread_local! {
        static CLIENT: reqwest::Client = client();
    }
    write_with(&CLIENT.with(Clone::clone), node).await
}

/// [`write`] on `client`'s connections.
async fn write_with(client: &reqwest::Client, node: &Node) -> Result<String, String> {
    let url = format!("http://{}/items", node.proxy_addr());
    let response = client
        .post(url)
        .body("x")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let code = response
        .headers()
        .get("rwproxy-error")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status == 200 {
        Ok(body)
    } else {
        Err(format!("{status} {code:?} {body}"))
    }
}

/// Steady write load from four clients until stopped; every answer kept.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Result<String, String>>>>,
    sent: Arc<AtomicU64>,
}

impl Load {
    fn start(node: &Arc<Node>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let tasks = (0..4)
            .map(|_| {
                let (node, stop, sent) = (node.clone(), stop.clone(), sent.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut answers = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        answers.push(write_with(&client, &node).await);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    answers
                })
            })
            .collect();
        Load { stop, tasks, sent }
    }

    /// Waits until `more` further requests were answered.
    async fn wait_for(&self, more: u64) {
        let target = self.sent.load(Ordering::Relaxed) + more;
        eventually(DEADLINE, "the load to make progress", || async {
            (self.sent.load(Ordering::Relaxed) >= target).then_some(())
        })
        .await;
    }

    async fn finish(self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.unwrap());
        }
        all
    }
}

/// Every state the node publishes, recorded by a task until the channel closes.
fn record_states(mut state: watch::Receiver<NodeState>) -> Arc<Mutex<Vec<NodeState>>> {
    let seen = Arc::new(Mutex::new(vec![state.borrow_and_update().clone()]));
    let log = seen.clone();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            let next = state.borrow_and_update().clone();
            log.lock().unwrap().push(next);
        }
    });
    seen
}

async fn wait_for_primary(node: &Node, answer: &str) {
    eventually(
        DEADLINE,
        &format!("writes answered by {answer}"),
        || async { (write(node).await.ok().as_deref() == Some(answer)).then_some(()) },
    )
    .await;
}

/// Asserts that after a reload answered, writes go to `answer` at once and the load lost
/// nothing and never saw the node without a primary.
async fn assert_switched_under_load(
    node: &Arc<Node>,
    load: Load,
    states: &Mutex<Vec<NodeState>>,
    answer: &str,
) {
    // Behaviour changed at once: the very next write, and every one after.
    for _ in 0..5 {
        assert_eq!(write(node).await.as_deref(), Ok(answer));
    }
    load.wait_for(20).await;
    let answers = load.finish().await;
    let failed: Vec<_> = answers.iter().filter(|a| a.is_err()).collect();
    assert!(failed.is_empty(), "failed under reload: {failed:?}");
    assert!(answers.len() > 20, "the load ran: {}", answers.len());
    let unknown: Vec<_> = states
        .lock()
        .unwrap()
        .iter()
        .skip(1)
        .filter(|s| s.role == Role::Unknown)
        .cloned()
        .collect();
    assert!(unknown.is_empty(), "unknown between sources: {unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_static_primary_applies_at_the_reload_under_load() {
    let world = World::start().await;
    let (node, states, load) = world.loaded(&world.static_source(0)).await;

    let (status, body) = world.reload(&node, &world.static_source(1)).await;
    assert_eq!(status, 200, "{body}");
    let expected = format!(
        "reloaded\ncluster source restarted (static): replica, primary {}\n",
        world.primaries[1]
    );
    assert_eq!(body, expected);
    assert_switched_under_load(&node, load, &states, "primary-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_http_source_url_and_poll_apply_under_load_and_the_old_poller_stops() {
    let world = World::start().await;
    let (node, states, load) = world.loaded(&world.http_source("one", "50ms")).await;

    let (status, body) = world.reload(&node, &world.http_source("two", "20ms")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("reloaded\ncluster source restarted (http): replica, primary "),
        "{body}"
    );
    let old_hits = world.hits("one");
    assert_switched_under_load(&node, load, &states, "primary-2").await;

    // The old poller stopped.
    world
        .assert_only_polled("two", &[("one".to_owned(), old_hits)])
        .await;

    // Only the poll interval changes: the source restarts with it, same document.
    let (status, body) = world.reload(&node, &world.http_source("two", "1h")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cluster source restarted (http)"), "{body}");
    let after = world.hits("two");
    // The new source read once at its start; with a 1 h poll nothing more, while writes
    // still go to primary-2 (the restart kept the word).
    for _ in 0..5 {
        assert_eq!(write(&node).await.as_deref(), Ok("primary-2"));
    }
    assert!(world.hits("two") <= after + 1, "a 20 ms poller still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_read_leaves_a_clear_answer_and_an_invalid_one_changes_nothing() {
    let world = World::start().await;
    let node = world.node(&world.static_source(0)).await;
    wait_for_primary(&node, "primary-1").await;

    // Not a URL the http source can use: refused by validation, nothing changes.
    let (status, body) = world
        .reload(&node, "source = \"http\"\nurl = \"ftp://nowhere/status\"")
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("cluster.url"), "{body}");
    assert_eq!(write(&node).await.as_deref(), Ok("primary-1"));

    // Nothing listens there: the first read fails, the node says so.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let unreachable = format!("source = \"http\"\nurl = \"http://{gone}/status\"\npoll = \"1s\"");
    let (status, body) = world.reload(&node, &unreachable).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("cluster source restarted (http), but its first read failed: "),
        "{body}"
    );
    let answer = write(&node).await.unwrap_err();
    assert!(
        answer.starts_with("503 Service Unavailable Some(\"no-primary\")"),
        "{answer}"
    );
    let health = world
        .client
        .get(format!("http://{}/health", node.admin_addr().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health = health.text().await.unwrap();
    assert!(health.contains(&gone.to_string()), "{health}");

    // Back to a working source: served again at once.
    let (status, body) = world.reload(&node, &world.static_source(1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(write(&node).await.as_deref(), Ok("primary-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_source_changes_leaves_one_poller() {
    let world = World::start().await;
    let (node, states, load) = world.loaded(&world.http_source("one", "20ms")).await;

    // Thirty reloads, each a change of source (a document of its own, a poll of 10 to
    // 30 ms), as fast as they are answered.
    let docs: Vec<String> = (0..30).map(|round| format!("s{round}")).collect();
    for (round, doc) in docs.iter().enumerate() {
        let poll = format!("{}ms", 10 + 10 * (round % 3));
        let (status, body) = world.reload(&node, &world.http_source(doc, &poll)).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("cluster source restarted (http): replica"),
            "{body}"
        );
    }
    let mut stopped: Vec<(String, u64)> = docs
        .iter()
        .map(|doc| (doc.clone(), world.hits(doc)))
        .collect();
    stopped.push(("one".to_owned(), world.hits("one")));
    assert_switched_under_load(&node, load, &states, "primary-2").await;
    // Only the last source polls.
    let (last, _) = stopped.remove(docs.len() - 1);
    world.assert_only_polled(&last, &stopped).await;
}
