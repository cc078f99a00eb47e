//! The source against real HTTP servers serving Patroni-shaped documents (and against a
//! PostgreSQL address nobody listens on): bad input gives a clear reason, never a hang.

use std::collections::BTreeMap;
use std::time::Duration;

use rwproxy_core::Role;
use tokio::sync::mpsc;

use super::*;
use crate::test_support::{full, refused_addr, serve, streaming, wait_for};
use crate::{ClusterHandle, PostgresSpec, SourceSpec};

const NODE: &str = r#"{"state": "running", "role": "master", "timeline": 3}"#;
const CLUSTER: &str = r#"{"members": [{"name": "pg1", "role": "leader", "state": "running", "host": "127.0.0.11", "timeline": 3}]}"#;

fn client() -> reqwest::Client {
    http_client::build().expect("client")
}

#[tokio::test]
async fn the_api_is_read_from_primary_and_cluster() {
    let server = serve(|path| match path {
        "/primary" => full(200, NODE),
        "/cluster" => full(200, CLUSTER),
        _ => full(404, "no"),
    })
    .await;
    let base = format!("http://{}", server.addr);
    let view = api::fetch(&client(), &base, Duration::from_secs(1))
        .await
        .expect("view");
    assert!(view.holds_lock);
    assert_eq!(view.timeline, Some(3));
    assert_eq!(view.members[0].name, "pg1");

    // Not the leader: /primary answers 503 with the same document.
    let replica = serve(|path| match path {
        "/primary" => full(503, r#"{"state": "running", "role": "replica"}"#),
        _ => full(200, CLUSTER),
    })
    .await;
    let view = api::fetch(
        &client(),
        &format!("http://{}", replica.addr),
        Duration::from_secs(1),
    )
    .await
    .expect("view");
    assert!(!view.holds_lock);
    assert_eq!(view.role, "replica");
}

#[tokio::test]
async fn a_down_garbled_or_failing_api_is_named() {
    let timeout = Duration::from_secs(1);
    let down = format!("http://{}", refused_addr().await);
    let err = api::fetch(&client(), &down, timeout).await.unwrap_err();
    assert!(err.contains("cannot connect"), "{err}");

    let garbage = serve(|_| full(200, "<html>hello</html>")).await;
    let err = api::fetch(&client(), &format!("http://{}", garbage.addr), timeout)
        .await
        .unwrap_err();
    assert!(err.starts_with("bad /primary document"), "{err}");

    let failing = serve(|path| match path {
        "/primary" => full(200, NODE),
        _ => full(500, "oops"),
    })
    .await;
    let err = api::fetch(&client(), &format!("http://{}", failing.addr), timeout)
        .await
        .unwrap_err();
    assert_eq!(err, "/cluster answered 500");

    let huge = serve(|_| full(200, " ".repeat(300 * 1024))).await;
    let err = api::fetch(&client(), &format!("http://{}", huge.addr), timeout)
        .await
        .unwrap_err();
    assert!(err.contains("body larger than"), "{err}");
}

#[tokio::test]
async fn a_slow_api_costs_one_timeout_never_a_hang() {
    // Headers at once, then a body that never ends.
    let (keep, rx) = mpsc::unbounded_channel();
    let rx = std::sync::Mutex::new(Some(rx));
    let slow = serve(move |path| match (path, rx.lock().expect("lock").take()) {
        ("/primary", Some(rx)) => streaming(rx),
        _ => full(200, CLUSTER),
    })
    .await;
    let timeout = Duration::from_millis(200);
    let started = tokio::time::Instant::now();
    let err = api::fetch(&client(), &format!("http://{}", slow.addr), timeout)
        .await
        .unwrap_err();
    assert_eq!(err, "/primary: no answer within 200ms");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(keep);
}

fn spec(api: String, pg_port: u16) -> PatroniSpec {
    PatroniSpec {
        api,
        postgres: PostgresSpec {
            url: format!("postgres://rwproxy@127.0.0.1:{pg_port}/postgres"),
            password_file: None,
            primary: None,
            poll: Duration::from_millis(20),
            timeout: Duration::from_millis(300),
            position_key: "wal".into(),
        },
        member: "pg1".into(),
        naming: MemberNaming {
            field: MemberField::Host,
            table: BTreeMap::new(),
        },
    }
}

#[tokio::test]
async fn the_source_publishes_unknown_with_the_reason_when_either_side_fails() {
    let pg_down = refused_addr().await.port();
    // Patroni answers, PostgreSQL does not: the postgres source's reason.
    let patroni = serve(|path| match path {
        "/primary" => full(200, NODE),
        _ => full(200, CLUSTER),
    })
    .await;
    let handle = ClusterHandle::start(
        "pg1".into(),
        SourceSpec::Patroni(spec(format!("http://{}", patroni.addr), pg_down)),
        Demand::default(),
    );
    let mut rx = handle.subscribe();
    let state = wait_for(&mut rx, |s| {
        s.problem
            .as_deref()
            .is_some_and(|p| p.starts_with("postgres "))
    })
    .await;
    assert_eq!(state.role, Role::Unknown);

    // Neither answers: never primary; the reason names one of them.
    let handle = ClusterHandle::start(
        "pg1".into(),
        SourceSpec::Patroni(spec(format!("http://{}", refused_addr().await), pg_down)),
        Demand::default(),
    );
    let mut rx = handle.subscribe();
    let state = wait_for(&mut rx, |s| {
        s.problem
            .as_deref()
            .is_some_and(|p| p.starts_with("patroni "))
    })
    .await;
    assert_eq!(state.role, Role::Unknown);
    assert!(!state.is_primary());
}
