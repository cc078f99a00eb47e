#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rwproxy_cluster::HttpSpec;
use tokio::net::TcpListener;

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn fixed(primary: &str) -> SourceSpec {
    SourceSpec::Static {
        primary: primary.into(),
    }
}

async fn wait_for(
    rx: &mut watch::Receiver<NodeState>,
    what: impl Fn(&NodeState) -> bool,
) -> NodeState {
    tokio::time::timeout(DEADLINE, rx.wait_for(|s| what(s)))
        .await
        .expect("state reached in time")
        .expect("channel open")
        .clone()
}

#[tokio::test]
async fn a_restart_publishes_the_new_sources_first_read_and_nothing_in_between() {
    let switch = SourceSwitch::start("a".into(), fixed("p"), Demand::default());
    let mut rx = switch.subscribe();
    wait_for(&mut rx, |s| s.primary.as_deref() == Some("p")).await;
    rx.mark_unchanged();
    let outcome = switch.control().restart(fixed("q")).await;
    assert!(outcome.is_healthy(), "{outcome}");
    assert_eq!(
        outcome.to_string(),
        "cluster source restarted (static): replica, primary q"
    );
    // Exactly one change: from the old source's word to the new one's.
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().primary.as_deref(), Some("q"));
    assert!(!rx.has_changed().unwrap());
}

/// A TCP listener that accepts and never answers: an http source's fetch hangs until its
/// timeout.
async fn silent_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status", listener.local_addr().unwrap());
    (listener, url)
}

fn http(url: String, timeout: Duration) -> SourceSpec {
    SourceSpec::Http(HttpSpec {
        url,
        poll: Duration::from_secs(60),
        timeout,
        databases: vec![],
    })
}

#[tokio::test]
async fn a_first_read_that_fails_is_published_with_its_reason() {
    let switch = SourceSwitch::start("a".into(), fixed("p"), Demand::default());
    let mut rx = switch.subscribe();
    wait_for(&mut rx, |s| s.role == Role::Replica).await;
    // Nothing listens there: the fetch is refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status", closed.local_addr().unwrap());
    drop(closed);
    let outcome = switch
        .control()
        .restart(http(url, Duration::from_secs(5)))
        .await;
    assert!(!outcome.is_healthy());
    let line = outcome.to_string();
    assert!(
        line.starts_with("cluster source restarted (http), but its first read failed: "),
        "{line}"
    );
    let state = rx.borrow().clone();
    assert_eq!(state.role, Role::Unknown);
    assert!(state.problem.is_some());
}

#[tokio::test]
async fn a_source_that_does_not_read_within_its_bound_leaves_unknown_with_the_reason() {
    let switch = SourceSwitch::start("a".into(), fixed("p"), Demand::default());
    let mut rx = switch.subscribe();
    wait_for(&mut rx, |s| s.role == Role::Replica).await;
    rx.mark_unchanged();
    // The fetch hangs for its 30 s timeout; the switch waits only 300 ms.
    let (_silent, url) = silent_listener().await;
    let bound = Duration::from_millis(300);
    let outcome = switch
        .control()
        .restart_within(http(url, Duration::from_secs(30)), bound)
        .await;
    assert_eq!(
        outcome,
        Restarted::Unread {
            source: "http",
            bound
        }
    );
    // One change, straight from the old source's word to unknown with the reason.
    assert!(rx.has_changed().unwrap());
    let state = rx.borrow_and_update().clone();
    assert_eq!(state.role, Role::Unknown);
    let problem = state.problem.unwrap();
    assert!(
        problem.contains("the new http source has not read the cluster within 300 ms"),
        "{problem}"
    );
}

#[tokio::test]
async fn stopping_the_switch_closes_the_channel() {
    let switch = SourceSwitch::start("a".into(), fixed("p"), Demand::default());
    let mut rx = switch.subscribe();
    wait_for(&mut rx, |s| s.role == Role::Replica).await;
    let control = switch.control();
    drop(switch);
    let closed = tokio::time::timeout(DEADLINE, rx.changed()).await;
    assert!(matches!(closed, Ok(Err(_))), "the channel closed");
    assert_eq!(control.restart(fixed("q")).await, Restarted::Abandoned);
}

#[test]
fn every_source_gets_its_own_bound_plus_slack() {
    assert_eq!(first_read_bound(&fixed("p")), SLACK);
    assert_eq!(
        first_read_bound(&http("http://x/".into(), Duration::from_millis(500))),
        Duration::from_millis(1500)
    );
}

#[tokio::test]
async fn a_newer_restart_replaces_one_still_waiting_for_its_first_read() {
    let switch = SourceSwitch::start("a".into(), fixed("p"), Demand::default());
    let mut rx = switch.subscribe();
    wait_for(&mut rx, |s| s.role == Role::Replica).await;
    let (silent, url) = silent_listener().await;
    let control = switch.control();
    let waiting = tokio::spawn(async move {
        control
            .restart_within(http(url, Duration::from_secs(30)), DEADLINE * 2)
            .await
    });
    // The first restart's source is running (its fetch reached the listener) and waits.
    let (_fetch, _) = tokio::time::timeout(DEADLINE, silent.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rx.borrow().primary.as_deref(), Some("p"));
    // A second restart replaces the waiting one.
    let outcome = switch.control().restart(fixed("q")).await;
    assert!(outcome.is_healthy(), "{outcome}");
    assert_eq!(
        tokio::time::timeout(DEADLINE, waiting)
            .await
            .unwrap()
            .unwrap(),
        Restarted::Abandoned
    );
    assert_eq!(rx.borrow().primary.as_deref(), Some("q"));
}
