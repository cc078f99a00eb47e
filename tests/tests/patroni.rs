//! rwproxy against a real Patroni cluster (etcd + three Patroni-managed PostgreSQL 15 nodes with
//! `synchronous_mode`, an app and an rwproxy per node), one cluster for the whole file, under a
//! steady stream of writes and token reads through every node:
//!
//! 1. **failover**: `kill -9` of the leader's PostgreSQL; writes resume on the new leader with no
//!    rwproxy restart; the unavailability window (kill → first acknowledged write) is printed;
//! 2. **switchover**: `patronictl switchover --force`;
//! 3. **partitioned leader**: its Patroni's link to etcd is cut: its rwproxy stops taking writes
//!    no later than its `/primary` stops answering 200 plus one poll (and the `timeout`); the
//!    others follow the new leader; healed, the old leader rejoins as a replica;
//!
//! and at the end: every write acknowledged to a client is on the final leader exactly once, no
//! token read returned older data, every answer rwproxy made itself was a success or a 503 with
//! `Retry-After`.
//!
//! Skips (with a notice) without patroni, etcd or PostgreSQL, unless
//! `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rwproxy_tests::patroni::{PatroniCluster, WAIT};
use rwproxy_tests::{client, eventually};

/// What the load saw.
#[derive(Default)]
struct Record {
    /// Acknowledged writes (201): name → (when sent, when acknowledged, the app that wrote it).
    acked: BTreeMap<String, (Instant, Instant, String)>,
    /// Answers by kind, e.g. `201`, `503 no-primary`, `500 app: <message>`.
    outcomes: BTreeMap<String, usize>,
    /// rwproxy's own answers that broke the contract (no `Retry-After` on a 503, a status that is
    /// neither a success nor a retryable 503/504).
    contract: Vec<String>,
    /// Token reads that answered 404: older data than the token promised.
    stale: Vec<String>,
    /// Token reads that answered 200.
    fresh_reads: usize,
}

struct Load {
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `workers` clients, each writing `POST /items/wW-N` through node `N % 3` and reading it back
/// with its token through the next node.
fn start_load(urls: Vec<String>, workers: usize) -> Load {
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let tasks = (0..workers)
        .map(|w| {
            let (record, stop, counter, urls) =
                (record.clone(), stop.clone(), counter.clone(), urls.clone());
            tokio::spawn(async move {
                let http = client();
                while !stop.load(Ordering::SeqCst) {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let name = format!("w{w}-{n}");
                    let via = &urls[n % urls.len()];
                    let sent = Instant::now();
                    let answer = http
                        .post(format!("{via}/items/{name}"))
                        .timeout(Duration::from_secs(40))
                        .send()
                        .await;
                    let Ok(resp) = answer else {
                        record_outcome(&record, "client error".into());
                        continue;
                    };
                    let status = resp.status().as_u16();
                    let error = header(&resp, "rwproxy-error");
                    let retry_after = header(&resp, "retry-after");
                    let token = header(&resp, "rwproxy-position");
                    let body = resp.text().await.unwrap_or_default();
                    if status == 201 {
                        record
                            .lock()
                            .unwrap()
                            .acked
                            .insert(name.clone(), (sent, Instant::now(), writer(&body)));
                        record_outcome(&record, "201".into());
                    } else {
                        note_failure(&record, status, error, retry_after, &body);
                        // Back off a little, as a client told to retry would.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let Some(token) = token else {
                        record
                            .lock()
                            .unwrap()
                            .contract
                            .push(format!("{name}: no token"));
                        continue;
                    };
                    let reader = &urls[(n + 1) % urls.len()];
                    let read = http
                        .get(format!("{reader}/items/{name}"))
                        .header("rwproxy-position", &token)
                        .timeout(Duration::from_secs(40))
                        .send()
                        .await;
                    match read.map(|r| r.status().as_u16()) {
                        Ok(200) => record.lock().unwrap().fresh_reads += 1,
                        Ok(404) => record
                            .lock()
                            .unwrap()
                            .stale
                            .push(format!("{name} read via {reader} with {token}")),
                        Ok(other) => record_outcome(&record, format!("read {other}")),
                        Err(_) => record_outcome(&record, "read client error".into()),
                    }
                }
            })
        })
        .collect();
    Load {
        record,
        stop,
        tasks,
    }
}

/// The app that wrote an item, from its answer (`app-pgN wrote NAME`).
fn writer(body: &str) -> String {
    body.split(' ').next().unwrap_or_default().to_owned()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn record_outcome(record: &Mutex<Record>, kind: String) {
    *record.lock().unwrap().outcomes.entry(kind).or_default() += 1;
}

fn note_failure(
    record: &Mutex<Record>,
    status: u16,
    error: Option<String>,
    retry_after: Option<String>,
    body: &str,
) {
    match error {
        // rwproxy's own answer: a retryable 503 with Retry-After (or a 504 timeout).
        Some(code) => {
            if !(status == 503 && retry_after.is_some() || status == 504) {
                record
                    .lock()
                    .unwrap()
                    .contract
                    .push(format!("{status} {code} retry-after={retry_after:?}"));
            }
            record_outcome(record, format!("{status} {code}"));
        }
        // The app's own answer, passed through as it answered (PostgreSQL cut the transaction
        // off mid-demotion, or refused it as read-only: either way nothing was applied).
        None => {
            let message = body.split(": ").nth(1).unwrap_or(body).trim();
            let short: String = message.chars().take(60).collect();
            record_outcome(record, format!("{status} app: {short}"));
        }
    }
}

impl Load {
    fn acked_count(&self) -> usize {
        self.record.lock().unwrap().acked.len()
    }

    /// Waits until a write sent after `since` is acknowledged by another app than `old`'s
    /// (the new leader's); returns how long after `since`. The old leader's backends outlive a
    /// `kill -9` of its postmaster for a moment, and may still commit (to the synchronous
    /// standby too): such a write is not the new leader's.
    async fn first_ack_after(&self, since: Instant, old: &str, what: &str) -> Duration {
        let old_app = format!("app-{old}");
        eventually(WAIT, what, || {
            let first = self
                .record
                .lock()
                .unwrap()
                .acked
                .values()
                .filter(|(sent, _, app)| *sent > since && *app != old_app)
                .map(|(_, acked, _)| *acked)
                .min();
            async move { first.map(|at| at - since) }
        })
        .await
    }

    async fn finish(mut self) -> Record {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks.drain(..) {
            task.await.expect("load task");
        }
        Arc::try_unwrap(self.record)
            .ok()
            .expect("tasks done")
            .into_inner()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_switchover_and_partition_under_load() {
    let started = Instant::now();
    let Some(cluster) = PatroniCluster::start(true).await else {
        return;
    };
    eprintln!("cluster up in {:?}", started.elapsed());
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url("")).collect();
    let load = start_load(urls, 3);
    let warm = load.acked_count();
    eventually(WAIT, "writes flow", || async {
        (load.acked_count() > warm + 20).then_some(())
    })
    .await;

    // The operator's view: every node's `rwproxy status` names the same leader and timeline.
    let first = cluster.wait_leader_of(None).await;
    let timeline_before = status_names_leader(&cluster, first).await;

    // 1. Failover: kill -9 of the leader's PostgreSQL. Patroni fails over only to the
    // synchronous standby (else it restarts the crashed primary in place): wait for one.
    eventually(WAIT, "a synchronous standby", || cluster.sync_standby()).await;
    let old = cluster.wait_leader_of(None).await;
    let killed = Instant::now();
    cluster.nodes[old].kill_postgres();
    let new = cluster.wait_new_leader(old).await;
    let window = load
        .first_ack_after(
            killed,
            &cluster.nodes[old].name,
            "a write after the failover",
        )
        .await;
    eprintln!(
        "failover: {} -> {}, unavailability window (kill -> first write acknowledged by the new \
         leader): {window:?}",
        cluster.nodes[old].name, cluster.nodes[new].name
    );
    cluster.wait_streaming(3).await;

    // 2. Switchover to another member.
    let from = cluster.wait_leader_of(None).await;
    let to = eventually(WAIT, "a synchronous standby", || cluster.sync_standby()).await;
    let switched = Instant::now();
    cluster.switchover(to);
    cluster.wait_leader_of(Some(to)).await;
    let window = load
        .first_ack_after(
            switched,
            &cluster.nodes[from].name,
            "a write after the switchover",
        )
        .await;
    eprintln!(
        "switchover: {} -> {}, first acknowledged write after {window:?}",
        cluster.nodes[from].name, cluster.nodes[to].name
    );
    cluster.wait_streaming(3).await;
    // Two promotions since the first look: the new leader and a later timeline show everywhere.
    let timeline_after = status_names_leader(&cluster, to).await;
    assert!(
        timeline_after > timeline_before,
        "timeline {timeline_before} -> {timeline_after}"
    );

    // 3. Partition the leader from etcd.
    let cut = cluster.wait_leader_of(None).await;
    let node = &cluster.nodes[cut];
    let partitioned = Instant::now();
    node.partition(true);
    // Sample /primary and rwproxy's role together: rwproxy must not stay primary longer than
    // one poll + one timeout after /primary stopped answering 200.
    let http = client();
    let mut lock_lost: Option<Instant> = None;
    let proxy_lost = loop {
        let answered_200 = http
            .get(node.api("/primary"))
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        let now = Instant::now();
        if !answered_200 && lock_lost.is_none() {
            lock_lost = Some(now);
        }
        if !node.state().is_primary() {
            break now;
        }
        if let Some(lost) = lock_lost {
            assert!(
                now - lost < Duration::from_secs(2),
                "rwproxy still primary {:?} after /primary stopped answering 200",
                now - lost
            );
        }
        assert!(
            partitioned.elapsed() < WAIT,
            "the partitioned leader never stepped down"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lock_lost = lock_lost.unwrap_or(proxy_lost);
    eprintln!(
        "partition: /primary stopped answering 200 {:?} after the cut; rwproxy stopped taking \
         writes {:?} after that",
        lock_lost - partitioned,
        proxy_lost.saturating_duration_since(lock_lost)
    );
    let successor = cluster.wait_new_leader(cut).await;
    let leader_ip = cluster.nodes[successor].ip.to_string();
    for (i, other) in cluster.nodes.iter().enumerate().filter(|(i, _)| *i != cut) {
        eventually(
            WAIT,
            &format!("{} follows the new leader", other.name),
            || {
                let s = other.state();
                let ok = s.is_primary() == (i == successor)
                    && s.primary.as_deref() == Some(leader_ip.as_str());
                async move { ok.then_some(()) }
            },
        )
        .await;
    }
    let window = load
        .first_ack_after(
            proxy_lost,
            &node.name,
            "a write after the old leader stepped down",
        )
        .await;
    eprintln!(
        "partition: first acknowledged write {window:?} after the old leader's rwproxy \
         stepped down ({:?} after the cut)",
        proxy_lost - partitioned
    );
    node.partition(false);
    cluster.wait_streaming(3).await;
    eventually(
        WAIT,
        "the old leader's rwproxy follows the new leader",
        || {
            let s = node.state();
            let ok = !s.is_primary() && s.primary.as_deref() == Some(leader_ip.as_str());
            async move { ok.then_some(()) }
        },
    )
    .await;

    // The end: every acknowledged write on the final leader, exactly once.
    let record = load.finish().await;
    let leader = cluster.wait_leader_of(None).await;
    let items = cluster.items(leader).await;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &items {
        *counts.entry(item.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = record
        .acked
        .keys()
        .filter(|name| !counts.contains_key(name.as_str()))
        .collect();
    let twice: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "writes acknowledged: {}, token reads fresh: {}, outcomes: {:?}, total {:?}",
        record.acked.len(),
        record.fresh_reads,
        record.outcomes,
        started.elapsed()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(twice.is_empty(), "writes applied twice: {twice:?}");
    assert!(
        record.stale.is_empty(),
        "stale token reads: {:?}",
        record.stale
    );
    assert!(
        record.contract.is_empty(),
        "contract breaches: {:?}",
        record.contract
    );
    assert!(
        !record.outcomes.keys().any(|k| k.contains("duplicate key")),
        "a write was applied twice: {:?}",
        record.outcomes
    );
    assert!(record.acked.len() > 50, "too little load to prove anything");
}

/// `rwproxy status --json` over the three admin listeners, until every node's Patroni names
/// `leader` and every node is on one timeline (rwproxy's and Patroni's alike) with no
/// disagreement flagged: the operator's view agrees. Returns that timeline.
async fn status_names_leader(cluster: &PatroniCluster, leader: usize) -> u64 {
    use rwproxy::status;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.admin()).collect();
    let http = status::client(Duration::from_secs(2)).unwrap();
    let want = cluster.nodes[leader].name.clone();
    let deadline = Instant::now() + WAIT;
    loop {
        let report = status::gather(
            &http,
            &urls,
            Duration::from_secs(2),
            &mut Default::default(),
        )
        .await;
        let json = status::json(&report);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        if let Some(timeline) = agreed_timeline(&doc, &want) {
            return timeline;
        }
        assert!(
            Instant::now() < deadline,
            "rwproxy status never named {want} the leader on every node; last report: {json}"
        );
        // The next look: Patroni's and rwproxy's polls run every 100 ms here.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The timeline every node of a `rwproxy status --json` document is on, when all three name
/// `leader` as Patroni's leader, rwproxy's timeline and Patroni's agree, and nothing about
/// Patroni or timelines is flagged.
fn agreed_timeline(doc: &serde_json::Value, leader: &str) -> Option<u64> {
    let nodes = doc["nodes"].as_array()?;
    let mut timelines = nodes.iter().map(|n| n["timeline"]["current"].as_u64());
    let timeline = timelines.next()??;
    let agree = nodes.len() == 3
        && timelines.all(|t| t == Some(timeline))
        && nodes.iter().all(|n| {
            let m = &n["manager"];
            m["name"] == "patroni"
                && m["leader"] == leader
                && m["timeline"] == timeline
                && m["disagreements"] == serde_json::json!([])
                && m["members"].as_array().is_some_and(|ms| ms.len() == 3)
        })
        && !doc["problems"].as_array()?.iter().any(|p| {
            let p = p.as_str().unwrap_or_default();
            p.contains("patroni") || p.contains("timeline") || p.contains("leaders")
        });
    agree.then_some(timeline)
}

/// How the fake Patroni API answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fake {
    /// This node holds the lock and leads.
    Leader,
    /// Another member (`pg9`) leads; `/primary` answers 503.
    Follower,
    /// No member leads (a failover under way).
    NoLeader,
    /// `200` with a body that is not JSON.
    Garbage,
    /// `500` on everything.
    Failing,
    /// Headers only after longer than rwproxy's `timeout`.
    Slow,
}

/// A real HTTP server answering Patroni-shaped documents as `mode` says; `member` is the name
/// of the node it serves.
async fn fake_patroni(
    mode: Arc<Mutex<Fake>>,
    member: Arc<Mutex<String>>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (mode, member) = (mode.clone(), member.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let mode = *mode.lock().unwrap();
                    let me = member.lock().unwrap().clone();
                    let path = req.uri().path().to_owned();
                    async move {
                        let (status, body) = fake_answer(mode, &me, &path).await;
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, task)
}

async fn fake_answer(mode: Fake, me: &str, path: &str) -> (u16, String) {
    let node = |role: &str| format!(r#"{{"state": "running", "role": "{role}", "timeline": 4}}"#);
    let cluster = |leader: Option<&str>| {
        let member = |name: &str| {
            let role = if Some(name) == leader {
                "leader"
            } else {
                "replica"
            };
            format!(
                r#"{{"name": "{name}", "role": "{role}", "state": "running", "host": "127.0.0.1", "timeline": 4}}"#
            )
        };
        format!(r#"{{"members": [{}, {}]}}"#, member(me), member("pg9"))
    };
    match (mode, path) {
        (Fake::Leader, "/primary") => (200, node("master")),
        (Fake::Leader, _) => (200, cluster(Some(me))),
        (Fake::Follower, "/primary") => (503, node("replica")),
        (Fake::Follower, _) => (200, cluster(Some("pg9"))),
        (Fake::NoLeader, "/primary") => (503, node("replica")),
        (Fake::NoLeader, _) => (200, cluster(None)),
        (Fake::Garbage, _) => (200, "<html>not patroni</html>".into()),
        (Fake::Failing, _) => (500, "internal error".into()),
        (Fake::Slow, _) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (200, node("master"))
        }
    }
}

/// The codes of the disagreements a health document's `manager` flags.
fn disagreements(health: &serde_json::Value) -> Vec<String> {
    health["manager"]["disagreements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["code"].as_str().map(str::to_owned))
        .collect()
}

/// The Patroni source with a real rwproxy and a real PostgreSQL primary, and a fake Patroni API
/// that misbehaves on demand: whatever it does wrong, the node is never primary, its health says
/// why, and a write gets rwproxy's 503 (never the app).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_silent_patroni_api_stops_writes_with_a_clear_reason() {
    use rwproxy::config::SourceConfig;
    use rwproxy_tests::pg_cluster::PgNode;
    use rwproxy_tests::postgres::{PgBin, PgServer, MONITOR_USER};
    let Some(bin) = PgBin::find() else {
        return;
    };
    let server = PgServer::primary(&bin).await;
    let mode = Arc::new(Mutex::new(Fake::Leader));
    let member = Arc::new(Mutex::new(String::new()));
    let (api, _fake) = fake_patroni(mode.clone(), member.clone()).await;
    let api_url = format!("http://{api}");
    let pg_url = server.url(MONITOR_USER);
    // PgNode names each node after its listener address: that is the member name here too.
    let node = PgNode::start(&pg_url, &server.url("postgres"), None, |c| {
        c.cluster.source = SourceConfig::Patroni {
            api: api_url.parse().unwrap(),
            member: None,
            naming: rwproxy_cluster::MemberNaming {
                field: rwproxy_cluster::MemberField::Name,
                table: Default::default(),
            },
            url: pg_url.clone(),
            password_file: None,
            poll: Duration::from_millis(50),
            timeout: Duration::from_millis(300),
        };
    })
    .await;
    *member.lock().unwrap() = node.name.clone();
    node.state_until("primary while Patroni says so", |s| s.is_primary())
        .await;
    let write = client()
        .post(node.url("/items/first"))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 201, "the leader takes writes");
    // The operator's view: Patroni's words beside rwproxy's; the fake's timeline (4) is not
    // PostgreSQL's (1), which is flagged and changes nothing else.
    let (_, body) = node.health().await;
    assert_eq!(body["manager"]["leader"], node.name.as_str(), "{body}");
    assert_eq!(body["manager"]["holds_lock"], true, "{body}");
    assert_eq!(disagreements(&body), ["timeline-differs"], "{body}");
    assert_eq!(body["timeline"]["current"], 1, "{body}");

    let rows = [
        // Lock lost, PostgreSQL not demoted: a replica whose lag is unknown (diverging).
        (Fake::Follower, "replica", "unknown", None),
        (Fake::NoLeader, "replica", "no-primary", None),
        (
            Fake::Garbage,
            "unknown",
            "unknown",
            Some("bad /primary document"),
        ),
        (
            Fake::Failing,
            "unknown",
            "unknown",
            Some("/primary answered 500"),
        ),
        (
            Fake::Slow,
            "unknown",
            "unknown",
            Some("no answer within 300ms"),
        ),
    ];
    for (i, (fake, role, status, problem)) in rows.into_iter().enumerate() {
        *mode.lock().unwrap() = fake;
        node.health_until(&format!("{fake:?}"), |_, body| {
            let text = body["problem"].as_str().unwrap_or_default();
            body["role"] == role
                && body["status"] == status
                && problem.is_none_or(|p| text.contains(p))
        })
        .await;
        let (code, body) = node.health().await;
        let flagged = match fake {
            Fake::Follower => vec!["primary-without-lock", "timeline-differs"],
            Fake::NoLeader => vec!["no-leader", "primary-without-lock", "timeline-differs"],
            _ => vec![],
        };
        assert_eq!(disagreements(&body), flagged, "{fake:?}: {body}");
        if let Some(problem) = problem {
            let unknown = body["manager"]["problem"].as_str().unwrap_or_default();
            assert!(unknown.contains(problem), "{fake:?}: {body}");
        }
        if let Some(problem) = problem {
            assert_eq!(code, 503, "{fake:?}: {body}");
            let text = body["problem"].as_str().unwrap_or_default();
            assert!(
                text.starts_with("patroni ") && text.contains(problem),
                "{fake:?}: {body}"
            );
        }
        let writes_before = node.app.writes_seen();
        let started = Instant::now();
        let write = client()
            .post(node.url(&format!("/items/refused-{i}")))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap();
        if fake == Fake::Follower {
            // Forwarded to the leader's name, pg9, which does not resolve: rwproxy's own 503.
            assert!(
                write.status() == 502 || write.status() == 503,
                "{fake:?}: {}",
                write.status()
            );
        } else {
            assert_eq!(write.status(), 503, "{fake:?}");
            assert_eq!(
                header(&write, "rwproxy-error").as_deref(),
                Some("no-primary")
            );
        }
        assert!(
            header(&write, "rwproxy-error").is_some(),
            "{fake:?}: rwproxy answered"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{fake:?}: bounded"
        );
        assert_eq!(
            node.app.writes_seen(),
            writes_before,
            "{fake:?}: the app saw no write"
        );
    }
    // Patroni leads again: writes flow again, no restart.
    *mode.lock().unwrap() = Fake::Leader;
    node.state_until("primary again", |s| s.is_primary()).await;
    let write = client()
        .post(node.url("/items/again"))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 201);
}
