//! The LiteFS source end to end: a temporary directory as the mount, a real hyper server as
//! the LiteFS API.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rwproxy_core::Role;
use tokio::sync::{mpsc, watch};

use crate::test_support::{
    full, refused_addr, serve, streaming, wait_for, wait_within, TestServer, DEADLINE,
};
use crate::{ClusterHandle, Demand, LitefsSpec, SourceSpec};

const LONG_POLL: Duration = Duration::from_secs(10);
/// Long enough for a wrongly woken loop to show itself; short enough to keep tests fast.
const QUIET: Duration = Duration::from_millis(150);

struct Mount(tempfile::TempDir);

impl Mount {
    fn new() -> Self {
        Mount(tempfile::tempdir().expect("tempdir"))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes atomically (as LiteFS's files change atomically): a reader never sees half a file.
    fn write(&self, name: &str, content: &str) {
        let tmp = self.path().join(format!("{name}.tmp"));
        std::fs::write(&tmp, content).expect("write");
        std::fs::rename(&tmp, self.path().join(name)).expect("rename");
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path().join(name)).expect("remove");
    }

    fn pos(&self, txid: u64) {
        self.write(
            "app.db-pos",
            &format!("{txid:016x}/{:016x}\n", 0xc0ffee_u64),
        );
    }

    fn lag(&self, ms: i64) {
        self.write(".lag", &format!("{ms:+010}\n"));
    }

    fn replica_of(&self, primary: &str, lag_ms: i64, txid: u64) {
        self.write(".primary", &format!("{primary}\n"));
        self.lag(lag_ms);
        self.pos(txid);
    }

    fn primary(&self, txid: u64) {
        let _ = std::fs::remove_file(self.path().join(".primary"));
        self.lag(0);
        self.pos(txid);
    }
}

fn start(mount: &Mount, poll: Duration, api: Option<String>, demand: Demand) -> ClusterHandle {
    let spec = SourceSpec::Litefs(LitefsSpec {
        mount: mount.path().to_path_buf(),
        databases: vec!["app.db".into()],
        api,
        poll,
    });
    ClusterHandle::start(Arc::from("me"), spec, demand)
}

fn problem_contains(state: &rwproxy_core::NodeState, text: &str) -> bool {
    state.problem.as_deref().is_some_and(|p| p.contains(text))
}

#[tokio::test]
async fn follows_file_changes_without_restart() {
    let mount = Mount::new();
    mount.replica_of("p1", 5, 1);
    let handle = start(&mount, Duration::from_millis(5), None, Demand::default());
    let mut rx = handle.subscribe();

    let s = wait_for(&mut rx, |s| s.role == Role::Replica).await;
    assert_eq!(s.primary.as_deref(), Some("p1"));
    assert_eq!(s.lag, Some(Duration::from_millis(5)));
    assert_eq!(s.position("app.db"), Some(1));
    assert!(s.ready);

    mount.pos(2);
    wait_for(&mut rx, |s| s.position("app.db") == Some(2)).await;

    // Promotion: `.primary` disappears and the lag reads exactly zero.
    mount.primary(3);
    let s = wait_for(&mut rx, |s| s.role == Role::Primary).await;
    assert_eq!(s.primary.as_deref(), Some("me"));
    assert_eq!(s.lag, Some(Duration::ZERO));

    // Hand-off to p2.
    mount.replica_of("p2", 12, 3);
    let s = wait_for(&mut rx, |s| s.role == Role::Replica).await;
    assert_eq!(s.primary.as_deref(), Some("p2"));

    // Not ready: the primary stays known so writes can still be forwarded.
    mount.write(".lag", "+2147483647");
    let s = wait_for(&mut rx, |s| !s.ready).await;
    assert_eq!(
        (s.role, s.primary.as_deref(), s.lag),
        (Role::Replica, Some("p2"), None)
    );

    // Disconnected: no `.primary`, lag growing. A replica that lost its primary.
    mount.remove(".primary");
    mount.lag(4_000);
    let s = wait_for(&mut rx, |s| s.ready && s.primary.is_none()).await;
    assert_eq!(s.role, Role::Replica);
    assert_eq!(s.lag, Some(Duration::from_secs(4)));

    // Clock skew on a disconnected replica is still not a primary claim.
    mount.lag(-40);
    let s = wait_for(&mut rx, |s| s.lag == Some(Duration::ZERO)).await;
    assert_eq!((s.role, s.primary.as_deref()), (Role::Replica, None));

    mount.write(".lag", "soon\n");
    let s = wait_for(&mut rx, |s| s.role == Role::Unknown).await;
    assert!(problem_contains(&s, ".lag"), "{s:?}");

    mount.replica_of("p2", 1, 4);
    wait_for(&mut rx, |s| {
        s.role == Role::Replica && s.position("app.db") == Some(4)
    })
    .await;

    // The mount goes away entirely (LiteFS stopped and the directory removed).
    std::fs::remove_dir_all(mount.path()).expect("remove mount");
    let s = wait_for(&mut rx, |s| s.role == Role::Unknown).await;
    assert!(problem_contains(&s, "litefs mount"), "{s:?}");
    assert!(s.positions.is_empty());

    std::fs::create_dir(mount.path()).expect("recreate mount");
    mount.replica_of("p3", 2, 9);
    let s = wait_for(&mut rx, |s| s.role == Role::Replica).await;
    assert_eq!(
        (s.primary.as_deref(), s.position("app.db")),
        (Some("p3"), Some(9))
    );
    assert!(s.problem.is_none());
}

#[tokio::test]
async fn missing_position_file_is_unknown() {
    let mount = Mount::new();
    mount.lag(0);
    let handle = start(&mount, Duration::from_millis(5), None, Demand::default());
    let mut rx = handle.subscribe();
    let s = wait_for(&mut rx, |s| s.problem.as_deref() != Some("starting")).await;
    assert_eq!(
        s.role,
        Role::Unknown,
        "a primary with an unreadable position is not a primary"
    );
    assert!(problem_contains(&s, "app.db-pos"), "{s:?}");
}

#[tokio::test]
async fn demand_makes_a_long_poll_fast() {
    let mount = Mount::new();
    mount.replica_of("p1", 5, 1);
    let demand = Demand::default();
    let handle = start(&mount, LONG_POLL, None, demand.clone());
    let mut rx = handle.subscribe();
    wait_for(&mut rx, |s| s.position("app.db") == Some(1)).await;

    mount.pos(2);
    // Nobody waits: the source sleeps out its 10 s poll, so the change stays unseen.
    let unseen = wait_within(&mut rx, QUIET, |s| s.position("app.db") == Some(2)).await;
    assert!(unseen.is_err(), "read early without demand: {unseen:?}");

    // A waiting request wakes the source and makes it poll fast.
    let _guard = demand.enter();
    wait_for(&mut rx, |s| s.position("app.db") == Some(2)).await;
    mount.pos(3);
    wait_for(&mut rx, |s| s.position("app.db") == Some(3)).await;
}

/// A fake LiteFS API: `/info` answers the current document, `/events` streams what the test
/// sends, one channel per connection.
pub(super) struct FakeApi {
    info: Mutex<String>,
    events: Mutex<Option<mpsc::UnboundedSender<Bytes>>>,
    connections: watch::Sender<usize>,
    pub(super) info_requests: AtomicUsize,
}

impl FakeApi {
    pub(super) async fn start(info: &str) -> (Arc<FakeApi>, TestServer) {
        let api = Arc::new(FakeApi {
            info: Mutex::new(info.to_owned()),
            events: Mutex::new(None),
            connections: watch::channel(0).0,
            info_requests: AtomicUsize::new(0),
        });
        let server = serve({
            let api = api.clone();
            move |path| match path {
                "/info" => {
                    api.info_requests.fetch_add(1, Ordering::SeqCst);
                    full(200, api.info.lock().expect("lock").clone())
                }
                "/events" => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    *api.events.lock().expect("lock") = Some(tx);
                    api.connections.send_modify(|n| *n += 1);
                    streaming(rx)
                }
                _ => full(404, "not found"),
            }
        })
        .await;
        (api, server)
    }

    pub(super) fn set_info(&self, info: &str) {
        *self.info.lock().expect("lock") = info.to_owned();
    }

    pub(super) async fn wait_connections(&self, n: usize) {
        let mut rx = self.connections.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|c| *c >= n))
            .await
            .expect("events stream connected in time")
            .expect("open");
    }

    pub(super) fn send(&self, line: &str) {
        let events = self.events.lock().expect("lock");
        let tx = events.as_ref().expect("an events stream is connected");
        tx.send(Bytes::from(format!("{line}\n")))
            .expect("stream open");
    }

    /// Sends raw bytes on the current events stream (no newline added).
    pub(super) fn send_raw(&self, bytes: Vec<u8>) {
        let events = self.events.lock().expect("lock");
        let tx = events.as_ref().expect("an events stream is connected");
        tx.send(Bytes::from(bytes)).expect("stream open");
    }

    /// How many `/events` connections were made so far.
    pub(super) fn connections(&self) -> usize {
        *self.connections.borrow()
    }

    pub(super) fn close_stream(&self) {
        self.events.lock().expect("lock").take();
    }
}

const INFO_REPLICA_OF_P1: &str =
    r#"{"clusterID":"c","isPrimary":false,"candidate":true,"primary":{"hostname":"p1"}}"#;

#[tokio::test]
async fn a_tx_event_shows_the_new_position_at_once() {
    let mount = Mount::new();
    mount.replica_of("p1", 5, 1);
    let (api, server) = FakeApi::start(INFO_REPLICA_OF_P1).await;
    let handle = start(
        &mount,
        LONG_POLL,
        Some(format!("http://{}", server.addr)),
        Demand::default(),
    );
    let mut rx = handle.subscribe();
    wait_for(&mut rx, |s| s.position("app.db") == Some(1)).await;
    api.wait_connections(1).await;

    mount.pos(2);
    let unseen = wait_within(&mut rx, QUIET, |s| s.position("app.db") == Some(2)).await;
    assert!(unseen.is_err(), "read early without an event: {unseen:?}");

    api.send(r#"{"type":"tx","db":"app.db","data":{"txID":"0000000000000002","postApplyChecksum":"0000000000c0ffee"}}"#);
    let s = wait_for(&mut rx, |s| s.position("app.db") == Some(2)).await;
    assert_eq!(s.role, Role::Replica);
    assert_eq!(
        api.info_requests.load(Ordering::SeqCst),
        0,
        "/info is only asked to confirm a primary claim"
    );
}

#[tokio::test]
async fn info_vetoes_a_primary_claim_until_a_primary_change() {
    let mount = Mount::new();
    mount.primary(7);
    let (api, server) = FakeApi::start(r#"{"isPrimary":false,"primary":{"hostname":"p9"}}"#).await;
    let handle = start(
        &mount,
        LONG_POLL,
        Some(format!("http://{}", server.addr)),
        Demand::default(),
    );
    let mut rx = handle.subscribe();

    let s = wait_for(&mut rx, |s| s.role != Role::Unknown).await;
    assert_eq!(s.role, Role::Replica, "the files' claim was vetoed");
    assert_eq!(s.primary.as_deref(), Some("p9"));
    assert_eq!(s.position("app.db"), Some(7));

    api.wait_connections(1).await;
    api.set_info(r#"{"isPrimary":true,"primary":{"hostname":"me"}}"#);
    api.send(r#"{"type":"primaryChange","data":{"isPrimary":true,"hostname":"me"}}"#);
    let s = wait_for(&mut rx, |s| s.role == Role::Primary).await;
    assert_eq!(s.primary.as_deref(), Some("me"));
}

#[tokio::test]
async fn an_unreachable_api_never_confirms_a_primary() {
    let mount = Mount::new();
    mount.primary(1);
    let api = format!("http://{}", refused_addr().await);
    let handle = start(
        &mount,
        Duration::from_millis(5),
        Some(api),
        Demand::default(),
    );
    let mut rx = handle.subscribe();
    let s = wait_for(&mut rx, |s| s.problem.as_deref() != Some("starting")).await;
    assert_eq!(s.role, Role::Unknown);
    assert!(problem_contains(&s, "cannot confirm"), "{s:?}");

    // A replica does not need the API.
    mount.replica_of("p1", 3, 2);
    let s = wait_for(&mut rx, |s| s.role == Role::Replica).await;
    assert_eq!(s.primary.as_deref(), Some("p1"));
}

#[tokio::test]
async fn the_events_stream_reconnects() {
    let mount = Mount::new();
    mount.replica_of("p1", 5, 1);
    let (api, server) = FakeApi::start(INFO_REPLICA_OF_P1).await;
    let handle = start(
        &mount,
        LONG_POLL,
        Some(format!("http://{}", server.addr)),
        Demand::default(),
    );
    let mut rx = handle.subscribe();
    api.wait_connections(1).await;
    api.send(r#"{"type":"init","data":{"isPrimary":false,"hostname":"p1"}}"#);
    api.close_stream();
    api.wait_connections(2).await;

    // The new stream works like the first.
    wait_for(&mut rx, |s| s.position("app.db") == Some(1)).await;
    mount.pos(5);
    api.send(r#"{"type":"tx","db":"app.db","data":{"txID":"0000000000000005"}}"#);
    wait_for(&mut rx, |s| s.position("app.db") == Some(5)).await;
}
