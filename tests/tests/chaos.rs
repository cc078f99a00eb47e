//! Chaos: primary loss, primary hand-off and broken links between nodes.
//!
//! Every node sits behind a fault-injecting relay that the other nodes reach it through
//! ([`ChaosCluster`]); the clients here talk to the nodes directly. Every write carries a unique
//! `x-write-id`, every app lists the ids it applied, and after each scenario the answers are
//! audited against what the apps did:
//!
//! * a write answered 2xx was applied exactly once, by the app named in the answer;
//! * a write answered with a code that means "never reached an app" (`no-primary`,
//!   `primary-unreachable`, `loop`, `stale`, `not-ready`, `draining`, `overloaded`, ...) was
//!   applied nowhere;
//! * `primary-timeout` / `primary-failed` ("maybe") writes are counted, applied or not;
//! * rwproxy never makes a 500, every 503 carries `Retry-After`, and no write reaches an app
//!   that does not accept writes (a replica's app answers such a write 500 without
//!   `rwproxy-error`, like a read-only SQLite).
//!
//! `cargo test -p rwproxy-tests --test chaos -- --nocapture` shows the counts per scenario.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rwproxy_tests::app::{App, WRITE_ID};
use rwproxy_tests::chaos_cluster::ChaosCluster;
use rwproxy_tests::relay::Mode;
use rwproxy_tests::{client, eventually, metrics_page};
use tokio::task::JoinHandle;

/// Codes that promise the request reached no app: a client may retry them, writes included.
const NEVER_REACHED: &[&str] = &[
    "no-primary",
    "primary-unreachable",
    "loop",
    "stale",
    "not-ready",
    "draining",
    "overloaded",
    "bad-request",
    "too-large",
    "consistency-timeout",
];
/// Codes after which a write may or may not have been applied (`app-unreachable`: the primary's
/// own app failed mid-request).
const MAYBE: &[&str] = &["primary-timeout", "primary-failed", "app-unreachable"];

/// Bound on waiting for a condition in these tests.
const WAIT: Duration = Duration::from_secs(20);

/// The scenarios measure latencies: on a small machine they must not share it with each other.
/// (Each test has its own runtime; tokio's mutex works across them and is never poisoned.)
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fresh write id: `<scenario>-<counter>`.
fn next_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{:06}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What one write got.
#[derive(Clone, Debug)]
struct WriteOutcome {
    id: String,
    /// The node the client sent it to.
    node: usize,
    started: Instant,
    elapsed: Duration,
    /// `None`: the client got no HTTP answer at all.
    status: Option<u16>,
    /// `rwproxy-error`, when rwproxy made the answer.
    code: Option<String>,
    retry_after: bool,
    /// The app that answered a 2xx (from its JSON body).
    app: Option<String>,
    error: Option<String>,
}

impl WriteOutcome {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// `200`, `503 primary-unreachable`, `500 app`, `transport-error`.
    fn key(&self) -> String {
        match (self.status, &self.code) {
            (None, _) => "transport-error".into(),
            (Some(s), Some(code)) => format!("{s} {code}"),
            (Some(500), None) => "500 app".into(),
            (Some(s), None) => s.to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "write {} to node {} after {:?}: {}{}",
            self.id,
            self.node,
            self.elapsed,
            self.key(),
            self.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
    }
}

/// What one read got.
#[derive(Clone, Debug)]
struct ReadOutcome {
    node: usize,
    status: Option<u16>,
    route: Option<String>,
    code: Option<String>,
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn write(
    client: &reqwest::Client,
    node: usize,
    base: &str,
    id: String,
    body: Vec<u8>,
) -> WriteOutcome {
    let started = Instant::now();
    let sent = client
        .post(format!("{base}/items/{id}"))
        .header(WRITE_ID, &id)
        .timeout(Duration::from_secs(15))
        .body(body)
        .send()
        .await;
    let mut outcome = WriteOutcome {
        id,
        node,
        started,
        elapsed: Duration::ZERO,
        status: None,
        code: None,
        retry_after: false,
        app: None,
        error: None,
    };
    match sent {
        Ok(r) => {
            outcome.status = Some(r.status().as_u16());
            outcome.code = header(&r, "rwproxy-error");
            outcome.retry_after = r.headers().contains_key("retry-after");
            // A body cut after its head (the link to the primary reset between HTTP/2's
            // HEADERS and DATA frames) is an error the client sees, not a silent answer: the
            // audit then knows the write was acknowledged but not which app wrote the answer.
            match r.text().await {
                Ok(text) if outcome.ok() => {
                    outcome.app = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|doc| doc["app"].as_str().map(str::to_owned));
                }
                Ok(_) => {}
                Err(e) => outcome.error = Some(format!("body cut after the head: {e}")),
            }
        }
        Err(e) => outcome.error = Some(format!("{e:?}")),
    }
    outcome.elapsed = started.elapsed();
    outcome
}

async fn read(client: &reqwest::Client, node: usize, base: &str) -> ReadOutcome {
    match client
        .get(format!("{base}/items"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
    {
        Ok(r) => ReadOutcome {
            node,
            status: Some(r.status().as_u16()),
            route: header(&r, "rwproxy-route"),
            code: header(&r, "rwproxy-error"),
        },
        Err(_) => ReadOutcome {
            node,
            status: None,
            route: None,
            code: None,
        },
    }
}

/// Clients writing (and reading) concurrently until stopped or done.
struct Load {
    stop: Arc<AtomicBool>,
    writes: Arc<Mutex<Vec<WriteOutcome>>>,
    reads: Arc<Mutex<Vec<ReadOutcome>>>,
    tasks: Vec<JoinHandle<()>>,
}

struct LoadSpec {
    prefix: &'static str,
    /// `(node index, direct URL)` the clients spread their requests over.
    targets: Vec<(usize, String)>,
    clients: usize,
    /// Writes per client; `None`: until [`Load::finish`].
    per_client: Option<usize>,
    /// Pause between a client's iterations.
    pace: Duration,
    /// Also read from the same node after each write.
    reads: bool,
}

impl Load {
    fn start(spec: LoadSpec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let reads = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let targets = Arc::new(spec.targets);
        for k in 0..spec.clients {
            let (stop, writes, reads, targets) =
                (stop.clone(), writes.clone(), reads.clone(), targets.clone());
            let (prefix, per_client, pace, do_reads) =
                (spec.prefix, spec.per_client, spec.pace, spec.reads);
            tasks.push(tokio::spawn(async move {
                let client = client();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed)
                    && match per_client {
                        Some(n) => i < n,
                        None => true,
                    }
                {
                    let (node, base) = &targets[(k + i) % targets.len()];
                    let id = next_id(prefix);
                    let body = format!("payload of {id}").into_bytes();
                    let outcome = write(&client, *node, base, id, body).await;
                    writes.lock().unwrap().push(outcome);
                    if do_reads {
                        let outcome = read(&client, *node, base).await;
                        reads.lock().unwrap().push(outcome);
                    }
                    i += 1;
                    tokio::time::sleep(pace).await;
                }
            }));
        }
        Load {
            stop,
            writes,
            reads,
            tasks,
        }
    }

    fn writes(&self) -> Vec<WriteOutcome> {
        self.writes.lock().unwrap().clone()
    }

    fn completed(&self) -> usize {
        self.writes.lock().unwrap().len()
    }

    /// Waits until at least `n` completed writes satisfy `pred`; returns them.
    async fn wait_writes(
        &self,
        what: &str,
        n: usize,
        pred: impl Fn(&WriteOutcome) -> bool,
    ) -> Vec<WriteOutcome> {
        eventually(WAIT, what, || {
            let matching: Vec<_> = self.writes().into_iter().filter(|o| pred(o)).collect();
            async move { (matching.len() >= n).then_some(matching) }
        })
        .await
    }

    /// Stops the clients (or waits for them to finish their quota) and returns everything.
    async fn finish(self) -> (Vec<WriteOutcome>, Vec<ReadOutcome>) {
        self.stop.store(true, Ordering::Relaxed);
        self.join().await
    }

    /// Waits for the clients to finish their quota; a client stuck past [`WAIT`] is a hang.
    async fn join(self) -> (Vec<WriteOutcome>, Vec<ReadOutcome>) {
        for task in self.tasks {
            tokio::time::timeout(WAIT * 3, task)
                .await
                .expect("a client hung")
                .unwrap();
        }
        let writes = self.writes.lock().unwrap().clone();
        let reads = self.reads.lock().unwrap().clone();
        (writes, reads)
    }
}

fn tally<'a>(keys: impl Iterator<Item = String> + 'a) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for k in keys {
        *counts.entry(k).or_insert(0) += 1;
    }
    counts
}

fn write_tally(outcomes: &[WriteOutcome]) -> BTreeMap<String, usize> {
    tally(outcomes.iter().map(WriteOutcome::key))
}

fn read_tally(outcomes: &[ReadOutcome]) -> BTreeMap<String, usize> {
    tally(
        outcomes
            .iter()
            .map(|r| match (r.status, &r.code, &r.route) {
                (None, _, _) => "transport-error".into(),
                (Some(s), Some(code), _) => format!("{s} {code}"),
                (Some(s), None, Some(route)) => format!("{s} {route}"),
                (Some(s), None, None) => s.to_string(),
            }),
    )
}

/// The audit of one scenario's writes against what the apps applied.
#[derive(Debug, Default)]
struct Audit {
    violations: Vec<String>,
    maybe_applied: usize,
    maybe_not_applied: usize,
    /// Writes an app refused because it was not accepting writes (500 without rwproxy-error).
    app_refusals: usize,
}

/// Waits until the apps stop applying writes (stragglers of "maybe" writes), at most 5 s.
async fn applied_settled(apps: &[&App]) {
    let count = || apps.iter().map(|a| a.write_ids().len()).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = count();
    loop {
        tokio::time::sleep(ms(300)).await;
        let now = count();
        if now == last || Instant::now() >= deadline {
            return;
        }
        last = now;
    }
}

fn audit(outcomes: &[WriteOutcome], apps: &[&App], app_refusals_allowed: bool) -> Audit {
    let mut audit = Audit::default();
    let mut applied: HashMap<String, Vec<String>> = HashMap::new();
    let mut refused: HashMap<String, Vec<String>> = HashMap::new();
    for app in apps {
        for id in app.write_ids() {
            applied.entry(id).or_default().push(app.name().to_owned());
        }
        for id in app.refused_write_ids() {
            refused.entry(id).or_default().push(app.name().to_owned());
        }
    }
    let sent: HashMap<&str, &WriteOutcome> = outcomes.iter().map(|o| (o.id.as_str(), o)).collect();
    for (id, by) in &applied {
        if by.len() > 1 {
            audit
                .violations
                .push(format!("write {id} applied {} times: {by:?}", by.len()));
        }
        if !sent.contains_key(id.as_str()) {
            audit
                .violations
                .push(format!("write {id} applied by {by:?} but never sent"));
        }
    }
    let no_apps = Vec::new();
    for o in outcomes {
        let by = applied.get(&o.id).unwrap_or(&no_apps);
        let refused_by = refused.get(&o.id).unwrap_or(&no_apps);
        if !refused_by.is_empty() {
            audit.app_refusals += 1;
            if !app_refusals_allowed {
                audit.violations.push(format!(
                    "{} reached {refused_by:?}, an app that does not accept writes",
                    o.describe()
                ));
            }
        }
        let Some(status) = o.status else {
            audit
                .violations
                .push(format!("{}: no HTTP answer", o.describe()));
            continue;
        };
        if status == 503 && !o.retry_after {
            audit
                .violations
                .push(format!("{}: 503 without Retry-After", o.describe()));
        }
        match o.code.as_deref() {
            None if o.ok() => {
                // Acknowledged: applied exactly once, by the app that answered (unknowable
                // when the body was cut, but still exactly once).
                let body_cut = o.error.is_some();
                if by.len() != 1 || (!body_cut && o.app.as_deref() != Some(by[0].as_str())) {
                    audit.violations.push(format!(
                        "{}: answered by {:?} but applied by {by:?}",
                        o.describe(),
                        o.app
                    ));
                }
            }
            None if status == 500 => {
                // The app's own 500: a write that reached an app refusing writes.
                if refused_by.is_empty() {
                    audit
                        .violations
                        .push(format!("{}: a 500 from an app", o.describe()));
                }
                if !by.is_empty() {
                    audit
                        .violations
                        .push(format!("{}: refused yet applied by {by:?}", o.describe()));
                }
            }
            None => audit
                .violations
                .push(format!("{}: unexpected answer", o.describe())),
            Some(_) if status == 500 => audit
                .violations
                .push(format!("{}: rwproxy made a 500", o.describe())),
            Some(code) if NEVER_REACHED.contains(&code) => {
                if !by.is_empty() {
                    audit.violations.push(format!(
                        "{}: the code says no app saw it, yet {by:?} applied it",
                        o.describe()
                    ));
                }
            }
            Some(code) if MAYBE.contains(&code) => {
                if by.is_empty() {
                    audit.maybe_not_applied += 1;
                } else {
                    audit.maybe_applied += 1;
                }
            }
            Some(_) => audit
                .violations
                .push(format!("{}: unexpected rwproxy answer", o.describe())),
        }
    }
    audit
}

/// Prints the scenario's summary and fails on any violation.
fn report(scenario: &str, outcomes: &[WriteOutcome], reads: &[ReadOutcome], audit: &Audit) {
    let slowest = outcomes.iter().map(|o| o.elapsed).max().unwrap_or_default();
    println!(
        "[chaos {scenario}] writes {}: {:?}; maybe-applied {} maybe-not-applied {}; app refusals {}; slowest {:?}",
        outcomes.len(),
        write_tally(outcomes),
        audit.maybe_applied,
        audit.maybe_not_applied,
        audit.app_refusals,
        slowest,
    );
    if !reads.is_empty() {
        println!(
            "[chaos {scenario}] reads {}: {:?}",
            reads.len(),
            read_tally(reads)
        );
    }
    for v in &audit.violations {
        println!("[chaos {scenario}] VIOLATION: {v}");
    }
    assert!(
        audit.violations.is_empty(),
        "{scenario}: {} invariant violations, first: {}",
        audit.violations.len(),
        audit.violations[0]
    );
}

/// `GET url/health`: status and the document's `status`.
async fn health(url: &str) -> (u16, String) {
    let r = client().get(format!("{url}/health")).send().await.unwrap();
    let status = r.status().as_u16();
    let doc: serde_json::Value = r.json().await.unwrap();
    (
        status,
        doc["status"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn health_becomes(url: &str, status: u16, name: &str) {
    let what = format!("{url}/health to answer {status} {name}");
    eventually(WAIT, &what, || async {
        let (s, n) = health(url).await;
        (s == status && n == name).then_some(())
    })
    .await;
}

/// Checks a phase's writes: all answered with one of `codes` within `bound`.
fn expect_phase(
    phase: &str,
    outcomes: &[WriteOutcome],
    codes: &[&str],
    bound: Duration,
) -> Vec<String> {
    println!(
        "[chaos a] phase {phase}: {} writes {:?}, slowest {:?}",
        outcomes.len(),
        write_tally(outcomes),
        outcomes.iter().map(|o| o.elapsed).max().unwrap_or_default()
    );
    let mut problems = Vec::new();
    for o in outcomes {
        if !o.code.as_deref().is_some_and(|c| codes.contains(&c)) {
            problems.push(format!("{phase}: {} (expected {codes:?})", o.describe()));
        }
        if o.elapsed > bound {
            problems.push(format!("{phase}: {} slower than {bound:?}", o.describe()));
        }
    }
    problems
}

/// How long writes may keep failing after a fault ended before they must succeed again: a
/// circuit breaker may still be cooling off (2 s), plus `writes.primary_wait` and slack.
const RECOVERY: Duration = Duration::from_secs(5);

/// After a fault ended at `back`, with `load` running: on every node the load writes to, a
/// write started after `back` must succeed within [`RECOVERY`], and every write started on that
/// node after its first success must succeed too (each node has its own view of the primary,
/// and its own circuit breaker).
async fn load_recovers(scenario: &str, load: &Load, back: Instant, problems: &mut Vec<String>) {
    let deadline = back + RECOVERY;
    let mut nodes: Vec<usize> = load.writes().iter().map(|o| o.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut recovered_at: HashMap<usize, Instant> = HashMap::new();
    loop {
        let since: Vec<WriteOutcome> = load
            .writes()
            .into_iter()
            .filter(|o| o.started >= back)
            .collect();
        for &node in &nodes {
            if recovered_at.contains_key(&node) {
                continue;
            }
            let on_node = since.iter().filter(|o| o.node == node);
            let Some(first) = on_node.clone().filter(|o| o.ok()).min_by_key(|o| o.started) else {
                continue;
            };
            let before: Vec<WriteOutcome> = on_node
                .filter(|o| o.started < first.started)
                .cloned()
                .collect();
            println!(
                "[chaos {scenario}] recovery of node {node}: first success {:?} after the fault ended; before it {:?}",
                first.started + first.elapsed - back,
                write_tally(&before)
            );
            recovered_at.insert(node, first.started + first.elapsed);
        }
        if recovered_at.len() == nodes.len() {
            break;
        }
        if Instant::now() >= deadline {
            for node in nodes.iter().filter(|n| !recovered_at.contains_key(n)) {
                let failed: Vec<WriteOutcome> =
                    since.iter().filter(|o| o.node == *node).cloned().collect();
                problems.push(format!(
                    "recovery: no write to node {node} succeeded within {RECOVERY:?} after the fault ended: {:?}, e.g. {}",
                    write_tally(&failed),
                    failed.last().map_or("-".into(), WriteOutcome::describe)
                ));
            }
            return;
        }
        tokio::time::sleep(ms(20)).await;
    }
    let recovered = |o: &WriteOutcome| recovered_at.get(&o.node).is_some_and(|t| o.started >= *t);
    let after = load
        .wait_writes("writes after recovery", 10, recovered)
        .await;
    println!(
        "[chaos {scenario}] recovered: {} writes {:?}",
        after.len(),
        write_tally(&after)
    );
    for o in after.iter().filter(|o| !o.ok()) {
        problems.push(format!("after recovery: {}", o.describe()));
    }
}

/// Like [`load_recovers`] for one client writing alone to `url` (node `node`).
async fn writes_recover(
    scenario: &str,
    node: usize,
    url: &str,
    outcomes: &mut Vec<WriteOutcome>,
    problems: &mut Vec<String>,
) {
    let client = client();
    let back = Instant::now();
    let mut before = Vec::new();
    loop {
        let o = write(&client, node, url, next_id(scenario), b"after".to_vec()).await;
        outcomes.push(o.clone());
        if o.ok() {
            break;
        }
        before.push(o);
        if back.elapsed() >= RECOVERY {
            problems.push(format!(
                "recovery: no write succeeded within {RECOVERY:?} after the fault ended: {:?}, last {}",
                write_tally(&before),
                before.last().map_or("-".into(), WriteOutcome::describe)
            ));
            return;
        }
        tokio::time::sleep(ms(50)).await;
    }
    println!(
        "[chaos {scenario}] recovery: first success {:?} after the fault ended; before it {:?}",
        back.elapsed(),
        write_tally(&before)
    );
    for _ in 0..10 {
        let o = write(&client, node, url, next_id(scenario), b"after".to_vec()).await;
        if !o.ok() {
            problems.push(format!("after recovery: {}", o.describe()));
        }
        outcomes.push(o);
    }
}

/// Starts `n` nodes behind relays ([`ChaosCluster`]) with the given `writes.primary_wait` and
/// `writes.timeout`, and a `writes.connect_timeout` of 300 ms.
async fn chaos_cluster(n: usize, primary_wait: Duration, timeout: Duration) -> ChaosCluster {
    ChaosCluster::start_with_relays(n, |config| {
        config.writes.primary_wait = primary_wait;
        config.writes.connect_timeout = ms(300);
        config.writes.timeout = timeout;
    })
    .await
}

/// The end of a scenario: waits until the apps of `c` stop applying writes, audits `writes`
/// against them ([`audit`]) and adds the scenario's own `problems` to the violations.
async fn settle_and_audit(
    c: &ChaosCluster,
    writes: &[WriteOutcome],
    app_refusals_allowed: bool,
    problems: Vec<String>,
) -> Audit {
    let apps: Vec<&App> = c.nodes.iter().map(|n| &n.app).collect();
    applied_settled(&apps).await;
    let mut audit = audit(writes, &apps, app_refusals_allowed);
    audit.violations.extend(problems);
    audit
}

/// Adds a violation for every read that was not answered 200 by the node's own app.
fn check_reads_stayed_local(reads: &[ReadOutcome], violations: &mut Vec<String>) {
    for r in reads {
        if r.status != Some(200) || r.route.as_deref() != Some("local") {
            violations.push(format!(
                "a read on node {} got {:?} {:?} route {:?}",
                r.node, r.status, r.code, r.route
            ));
        }
    }
}

/// a. The primary's rwproxy dies while clients write through the replicas, the mounts then
/// report the loss, and the primary comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_then_back() {
    let _serial = serial().await;
    let primary_wait = Duration::from_secs(1);
    let slack = ms(1000);
    let mut c = chaos_cluster(3, primary_wait, Duration::from_secs(2)).await;
    let load = Load::start(LoadSpec {
        prefix: "a",
        targets: vec![(1, c.nodes[1].url()), (2, c.nodes[2].url())],
        clients: 4,
        per_client: None,
        pace: ms(20),
        reads: true,
    });
    load.wait_writes("writes before the kill", 20, WriteOutcome::ok)
        .await;

    // The primary's process dies: its port refuses, it is gone.
    c.nodes[0].kill().await;
    let killed = Instant::now();
    let after_kill = load
        .wait_writes("writes after the kill", 8, |o| o.started >= killed)
        .await;
    let mut problems = expect_phase(
        "primary-down",
        &after_kill,
        &["primary-unreachable", "no-primary"],
        primary_wait + slack,
    );
    for n in &c.nodes[1..] {
        health_becomes(&n.url(), 200, "ok").await;
    }

    // LiteFS on the replicas notices: no `.primary`, lag growing.
    for n in &c.nodes[1..] {
        n.mount.lose_primary(3000);
    }
    c.primary_lost(Some(0)).await;
    for n in &c.nodes[1..] {
        health_becomes(&n.url(), 503, "no-primary").await;
    }
    let lost = Instant::now();
    let after_loss = load
        .wait_writes("writes after the loss", 8, |o| o.started >= lost)
        .await;
    problems.extend(expect_phase(
        "primary-lost",
        &after_loss,
        &["no-primary"],
        primary_wait + slack,
    ));
    for o in &after_loss {
        if o.elapsed + ms(50) < primary_wait {
            problems.push(format!(
                "primary-lost: {} did not wait writes.primary_wait",
                o.describe()
            ));
        }
    }

    // The primary comes back; nothing else is restarted.
    c.nodes[0].restart().await;
    for n in &c.nodes[1..] {
        n.mount.make_replica(&c.nodes[0].name, 0);
    }
    c.primary_seen(0).await;
    load_recovers("a", &load, Instant::now(), &mut problems).await;
    for n in &c.nodes[1..] {
        health_becomes(&n.url(), 200, "ok").await;
    }

    let (writes, reads) = load.finish().await;
    let mut audit = settle_and_audit(&c, &writes, false, problems).await;
    check_reads_stayed_local(&reads, &mut audit.violations);
    println!("[chaos a] relay of node 0: {:?}", c.nodes[0].relay.stats());
    report("a", &writes, &reads, &audit);
    c.stop().await;
}

/// b. The primary is blackholed: connections are accepted and nothing ever answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_primary_blackholed_then_back() {
    let _serial = serial().await;
    let timeout = Duration::from_secs(2);
    let c = chaos_cluster(3, Duration::from_secs(1), timeout).await;
    let load = Load::start(LoadSpec {
        prefix: "b",
        targets: vec![(1, c.nodes[1].url()), (2, c.nodes[2].url())],
        clients: 4,
        per_client: None,
        pace: ms(20),
        reads: true,
    });
    load.wait_writes("writes before the blackhole", 20, WriteOutcome::ok)
        .await;

    c.nodes[0].relay.set_mode(Mode::Blackhole);
    let holed = Instant::now();
    let during = load
        .wait_writes("writes into the blackhole", 8, |o| o.started >= holed)
        .await;
    let mut problems = Vec::new();
    println!(
        "[chaos b] phase blackhole: {} writes {:?}, slowest {:?}",
        during.len(),
        write_tally(&during),
        during.iter().map(|o| o.elapsed).max().unwrap_or_default()
    );
    for o in &during {
        let fine = matches!(
            (o.status, o.code.as_deref()),
            (Some(504), Some("primary-timeout")) | (Some(503), Some("primary-unreachable"))
        );
        if !fine {
            problems.push(format!("blackhole: {}", o.describe()));
        }
        if o.elapsed > timeout + ms(1000) {
            problems.push(format!(
                "blackhole: {} slower than writes.timeout",
                o.describe()
            ));
        }
    }

    // Connections that were in the hole are reset when the link returns; a circuit breaker
    // may still be cooling off: writes must succeed again within RECOVERY.
    c.nodes[0].relay.set_mode(Mode::Pass);
    load_recovers("b", &load, Instant::now(), &mut problems).await;

    let (writes, reads) = load.finish().await;
    let mut audit = settle_and_audit(&c, &writes, false, problems).await;
    check_reads_stayed_local(&reads, &mut audit.violations);
    println!("[chaos b] relay of node 0: {:?}", c.nodes[0].relay.stats());
    report("b", &writes, &reads, &audit);
    c.stop().await;
}

/// The flapping schedule, one step per ~200 ms, repeated: every mode within the first 1.6 s.
const FLAPS: [(Mode, &str); 8] = [
    (Mode::Pass, "pass"),
    (Mode::Reset, "reset"),
    (Mode::Pass, "pass"),
    (Mode::Blackhole, "blackhole"),
    (Mode::Pass, "pass"),
    (Mode::Refuse, "refuse"),
    (Mode::Delay(Duration::from_millis(30)), "delay"),
    (Mode::Reset, "reset"),
];

/// c. The link to the primary flaps every ~200 ms (Pass, Reset, Blackhole, and also Refuse and
/// Delay) while 8 clients write 40 times each through the replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_flapping_link_under_concurrent_writes() {
    let _serial = serial().await;
    let primary_wait = Duration::from_secs(1);
    let timeout = Duration::from_secs(1);
    let c = chaos_cluster(3, primary_wait, timeout).await;
    let load = Load::start(LoadSpec {
        prefix: "c",
        targets: vec![(1, c.nodes[1].url()), (2, c.nodes[2].url())],
        clients: 8,
        per_client: Some(40),
        // Spread the writes over a few seconds of flapping.
        pace: ms(60),
        reads: false,
    });
    let relay = &c.nodes[0].relay;
    let mut step = 0usize;
    let mut switches: BTreeMap<&str, usize> = BTreeMap::new();
    let done = load.join();
    tokio::pin!(done);
    let started = Instant::now();
    let (mut writes, _) = loop {
        tokio::select! {
            finished = &mut done => break finished,
            () = tokio::time::sleep(ms(200)) => {
                let (mode, name) = FLAPS[step % FLAPS.len()];
                step += 1;
                relay.set_mode(mode);
                *switches.entry(name).or_insert(0) += 1;
            }
        }
    };
    relay.set_mode(Mode::Pass);
    println!(
        "[chaos c] flapped {:?} for {:?}; relay of node 0: {:?}",
        switches,
        started.elapsed(),
        relay.stats()
    );
    let flapped = writes.len();
    // The link is whole again: writes must succeed again (whatever state a breaker was left in).
    let mut problems = Vec::new();
    writes_recover("c", 1, &c.nodes[1].url(), &mut writes, &mut problems).await;
    let mut audit = settle_and_audit(&c, &writes, false, problems).await;
    let bound = primary_wait + timeout + ms(1000);
    for o in &writes {
        if o.elapsed > bound {
            audit
                .violations
                .push(format!("{} slower than {bound:?}", o.describe()));
        }
    }
    for n in &c.nodes[1..] {
        if n.app.writes_seen() != 0 {
            audit.violations.push(format!(
                "replica app {} saw {} writes",
                n.app.name(),
                n.app.writes_seen()
            ));
        }
    }
    println!(
        "[chaos c] during the flapping: {} writes {:?}",
        flapped,
        write_tally(&writes[..flapped])
    );
    report("c", &writes, &[], &audit);
    assert_eq!(flapped, 8 * 40);
    c.stop().await;
}

/// d. The primary moves twice (abruptly, as `Cluster::move_primary` does: the old primary's app
/// turns read-only at once, its rwproxy notices at its next poll of the mount) while clients
/// write through every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_primary_moves_twice_under_concurrent_writes() {
    moves_under_load("d", false).await;
}

/// d2. The same with graceful hand-offs (the lease is released, every node sees no primary,
/// then the new primary takes over): no write may reach an app that does not accept writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_graceful_hand_offs_under_concurrent_writes() {
    moves_under_load("d2", true).await;
}

async fn moves_under_load(scenario: &'static str, graceful: bool) {
    let _serial = serial().await;
    let c = chaos_cluster(3, Duration::from_secs(2), Duration::from_secs(2)).await;
    let load = Load::start(LoadSpec {
        prefix: scenario,
        targets: (0..3).map(|i| (i, c.nodes[i].url())).collect(),
        clients: 8,
        per_client: Some(40),
        pace: ms(15),
        reads: false,
    });
    for (after, to) in [(80, 1), (180, 2)] {
        let n = eventually(WAIT, "writes before the hand-off", || {
            let n = load.completed();
            async move { (n >= after).then_some(n) }
        })
        .await;
        let started = Instant::now();
        if graceful {
            c.hand_off(to).await;
        } else {
            c.move_primary(to).await;
        }
        println!(
            "[chaos {scenario}] primary moved to node {to} after {n} writes, seen by all in {:?}",
            started.elapsed()
        );
    }
    let (writes, _) = load.join().await;
    // Abruptly, a demoted app refuses writes for a moment before its rwproxy sees the new
    // primary (the mount's poll): such writes get the app's own 500; they are counted and must
    // not have been applied anywhere. Gracefully, none may happen.
    let mut audit = settle_and_audit(&c, &writes, !graceful, Vec::new()).await;
    for app in c.nodes.iter().map(|n| &n.app) {
        println!(
            "[chaos {scenario}] {} applied {} writes, refused {}",
            app.name(),
            app.write_ids().len(),
            app.refused_write_ids().len()
        );
        if app.write_ids().is_empty() {
            audit.violations.push(format!(
                "{} applied nothing: the hand-offs did not happen under load",
                app.name()
            ));
        }
    }
    report(scenario, &writes, &[], &audit);
    assert_eq!(writes.len(), 8 * 40);
    c.stop().await;
}

/// e. A large forwarded write is cut mid-body on its way to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_cut_mid_body() {
    let _serial = serial().await;
    let c = chaos_cluster(2, Duration::from_secs(1), Duration::from_secs(5)).await;
    let body: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let client = client();
    let mut writes = Vec::new();
    let mut problems = Vec::new();
    // Two streamed bodies (1 MiB) and one small enough for rwproxy to buffer (40 KiB).
    for (len, cut) in [
        (body.len(), 64 << 10),
        (body.len(), 300 << 10),
        (40 << 10, 8 << 10),
    ] {
        c.nodes[0].relay.set_mode(Mode::CutAfter(cut));
        let id = next_id("e");
        let o = write(&client, 1, &c.nodes[1].url(), id, body[..len].to_vec()).await;
        println!(
            "[chaos e] {len}-byte body cut after {cut} bytes: {}",
            o.describe()
        );
        let fine = matches!(
            (o.status, o.code.as_deref()),
            (Some(502), Some("primary-failed")) | (Some(503), Some("primary-unreachable"))
        );
        if !fine {
            problems.push(format!("cut after {cut}: {}", o.describe()));
        }
        writes.push(o);
    }
    c.nodes[0].relay.set_mode(Mode::Pass);
    let o = write(&client, 1, &c.nodes[1].url(), next_id("e"), body.clone()).await;
    println!("[chaos e] link whole again: {}", o.describe());
    if !o.ok() {
        problems.push(format!("after the cut: {}", o.describe()));
    }
    writes.push(o);
    let mut audit = settle_and_audit(&c, &writes, false, problems).await;
    println!(
        "[chaos e] primary app: {} complete writes seen, {} incomplete bodies, applied {:?}",
        c.nodes[0]
            .app
            .seen()
            .iter()
            .filter(|s| s.body_len == body.len())
            .count(),
        c.nodes[0].app.incomplete_bodies(),
        c.nodes[0].app.write_ids()
    );
    // Whatever the code said, a cut body must never be applied.
    for o in &writes[..3] {
        if c.nodes[0].app.write_ids().contains(&o.id) {
            audit
                .violations
                .push(format!("{}: a cut write was applied", o.describe()));
        }
    }
    println!("[chaos e] relay of node 0: {:?}", c.nodes[0].relay.stats());
    report("e", &writes, &[], &audit);
    c.stop().await;
}

/// f. The primary refuses long enough for a circuit breaker to open, then swallows everything
/// (blackhole) while the breaker lets its probe through after the cool-off, then the link
/// returns. Writes must succeed again: a probe lost in the hole must not leave the breaker
/// open for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_refused_then_blackholed_then_back() {
    let _serial = serial().await;
    let timeout = Duration::from_secs(1);
    let c = chaos_cluster(2, Duration::from_secs(1), timeout).await;
    let url = c.nodes[1].url();
    let client = client();
    let mut writes = Vec::new();
    let mut problems = Vec::new();
    let o = write(&client, 1, &url, next_id("f"), b"warm".to_vec()).await;
    assert!(o.ok(), "{}", o.describe());
    writes.push(o);

    // Refused: each write retries for writes.primary_wait, or fails fast once a breaker is
    // open. Four writes are enough for either.
    c.nodes[0].relay.set_mode(Mode::Refuse);
    let mut refused = Vec::new();
    for _ in 0..4 {
        refused.push(write(&client, 1, &url, next_id("f"), b"refused".to_vec()).await);
    }
    println!(
        "[chaos f] refused: {:?}, times {:?}",
        write_tally(&refused),
        refused.iter().map(|o| o.elapsed).collect::<Vec<_>>()
    );
    for (i, o) in refused.iter().enumerate() {
        // The first write may race the relay's reset of the connection the warm-up write left
        // in the pool: sent, then reset, it can only be answered "may have been applied".
        let raced = i == 0 && o.code.as_deref() == Some("primary-failed");
        if o.code.as_deref() != Some("primary-unreachable") && !raced {
            problems.push(format!("refused: {}", o.describe()));
        }
    }
    writes.extend(refused);

    // Blackholed: sooner or later a write connects (directly, or as the breaker's probe after
    // its cool-off) and times out.
    c.nodes[0].relay.set_mode(Mode::Blackhole);
    let holed = Instant::now();
    let mut fast = 0;
    loop {
        let o = write(&client, 1, &url, next_id("f"), b"void".to_vec()).await;
        let reached = o.code.as_deref() == Some("primary-timeout");
        if !reached {
            fast += 1;
        }
        writes.push(o);
        if reached || holed.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(ms(50)).await;
    }
    println!(
        "[chaos f] blackholed: {fast} writes failed fast, then {} after {:?}",
        writes.last().unwrap().describe(),
        holed.elapsed()
    );

    c.nodes[0].relay.set_mode(Mode::Pass);
    writes_recover("f", 1, &url, &mut writes, &mut problems).await;

    let audit = settle_and_audit(&c, &writes, false, problems).await;
    println!("[chaos f] relay of node 0: {:?}", c.nodes[0].relay.stats());
    report("f", &writes, &[], &audit);
    c.stop().await;
}

/// The value of `name` (exact series, labels included) in a Prometheus text page.
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn loop_refusals(admin_url: &str) -> f64 {
    let page = metrics_page(admin_url).await.expect("the metrics page");
    metric(&page, "rwproxy_errors_total{reason=\"loop\"}")
}

/// g. Two nodes disagree about the primary for longer than a write waits (node 1 follows
/// node 2, node 2 follows node 0): node 2 refuses node 1's forwarded writes with `loop`, naming
/// node 0; a small (kept) write follows that chain to node 0, a streamed one cannot. A refused
/// write must end within `writes.primary_wait` with a code that says no app saw it, and any
/// retrying must be paced (at most one attempt per ~200 ms pause), not a storm of requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_nodes_disagree_about_the_primary() {
    let _serial = serial().await;
    let primary_wait = Duration::from_secs(1);
    let c = chaos_cluster(3, primary_wait, Duration::from_secs(2)).await;
    c.nodes[1].mount.make_replica(&c.nodes[2].name, 0);
    let state = c.nodes[1].node.as_ref().unwrap().state();
    let follows = c.nodes[2].name.clone();
    eventually(WAIT, "node 1 to follow node 2", || {
        let ok = state.borrow().primary.as_deref() == Some(follows.as_str());
        async move { ok.then_some(()) }
    })
    .await;
    let admin2 = c.nodes[2].admin_url();
    let client = client();
    let mut writes = Vec::new();
    let mut problems = Vec::new();
    // A small body (rwproxy may keep it to retry) and a large, streamed one.
    for len in [
        100usize,
        200 << 10,
        1 << 20,
        1 << 20,
        1 << 20,
        1 << 20,
        1 << 20,
    ] {
        let before = loop_refusals(&admin2).await;
        let o = write(&client, 1, &c.nodes[1].url(), next_id("g"), vec![b'g'; len]).await;
        let attempts = loop_refusals(&admin2).await - before;
        // One first attempt, then at most one per 200 ms pause of the wait, plus slack.
        let allowed = 2.0 + primary_wait.as_secs_f64() / 0.2;
        println!(
            "[chaos g] {len}-byte write: {}; node 2 refused {attempts} forwarded attempts (allowed {allowed})",
            o.describe()
        );
        // A kept (small) body follows the chain to node 0 (see docs/postgres.md, cascading
        // replication); a streamed one cannot be sent again and is refused.
        let followed = len == 100 && o.ok();
        if !followed && !matches!(o.code.as_deref(), Some("loop" | "primary-unreachable")) {
            problems.push(format!("{len}-byte write: {}", o.describe()));
        }
        if o.elapsed > primary_wait + ms(1000) {
            problems.push(format!(
                "{len}-byte write: {} waited too long",
                o.describe()
            ));
        }
        if attempts > allowed {
            problems.push(format!(
                "{len}-byte write: {attempts} attempts against node 2 in {:?}: retries are not paced",
                o.elapsed
            ));
        }
        writes.push(o);
    }
    // They agree again: the same node takes writes at once.
    c.nodes[1].mount.make_replica(&c.nodes[0].name, 0);
    c.primary_seen(0).await;
    writes_recover("g", 1, &c.nodes[1].url(), &mut writes, &mut problems).await;
    let audit = settle_and_audit(&c, &writes, false, problems).await;
    report("g", &writes, &[], &audit);
    c.stop().await;
}
