//! Table tests of the fail-static verdict, its policy keys and the degraded clock.

use super::*;
use rwproxy_core::Positions;

fn own(primary: Option<&str>, pos: u64) -> NodeState {
    let mut positions = Positions::new();
    positions.insert("app.db".into(), pos);
    NodeState {
        role: Role::Replica,
        primary: primary.map(Into::into),
        positions,
        lag: Some(Duration::from_secs(30)),
        ready: true,
        problem: None,
        ..NodeState::default()
    }
}

fn peer(node: &str, role: Role, primary: Option<&str>, lag_ms: u64, pos: u64) -> PeerReport {
    PeerReport {
        node: node.into(),
        role,
        primary: primary.map(Into::into),
        lag: Some(Duration::from_millis(lag_ms)),
        max_lag: Some(Duration::from_secs(10)),
        ready: true,
        positions: [("app.db".to_owned(), pos)].into(),
    }
}

fn lost(node: &str, pos: u64) -> PeerReport {
    peer(node, Role::Replica, None, 30_000, pos)
}

fn view(known: usize, heard: Vec<PeerReport>) -> PeerView {
    PeerView { known, heard }
}

fn decide(own_status: HealthStatus, state: &NodeState, view: &PeerView) -> Outcome {
    fail_static(
        own_status,
        state,
        view,
        &FailStaticPolicy::default(),
        Duration::ZERO,
    )
}

#[test]
fn table() {
    use HealthStatus::*;
    let np = own(None, 5);
    let cases: Vec<(&str, HealthStatus, NodeState, PeerView, Outcome)> = vec![
        (
            "every peer lost the primary",
            NoPrimary,
            np.clone(),
            view(2, vec![lost("b", 5), lost("c", 5)]),
            Outcome::Degraded { agreeing: 2 },
        ),
        (
            "the primary's node is gone, the other replica lost it too",
            NoPrimary,
            np.clone(),
            view(2, vec![lost("b", 5)]),
            Outcome::Degraded { agreeing: 1 },
        ),
        (
            "a peer follows a primary and keeps up",
            NoPrimary,
            np.clone(),
            view(
                2,
                vec![lost("b", 5), peer("c", Role::Replica, Some("p"), 100, 9)],
            ),
            Outcome::PeerReachesPrimary { peer: "c".into() },
        ),
        (
            "a peer is the primary",
            NoPrimary,
            np.clone(),
            view(2, vec![peer("p", Role::Primary, Some("p"), 0, 9)]),
            Outcome::PeerReachesPrimary { peer: "p".into() },
        ),
        (
            "no peer heard: maybe this node is the one cut off",
            NoPrimary,
            np.clone(),
            view(2, vec![]),
            Outcome::TooFewAgree {
                agreeing: 0,
                needed: 1,
            },
        ),
        (
            "no peer configured",
            NoPrimary,
            np.clone(),
            view(0, vec![]),
            Outcome::TooFewAgree {
                agreeing: 0,
                needed: 1,
            },
        ),
        (
            "a peer that cannot tell does not count",
            NoPrimary,
            np.clone(),
            view(
                2,
                vec![PeerReport {
                    ready: false,
                    ..lost("b", 5)
                }],
            ),
            Outcome::TooFewAgree {
                agreeing: 0,
                needed: 1,
            },
        ),
        (
            "one of four peers is not half",
            NoPrimary,
            np.clone(),
            view(4, vec![lost("b", 5)]),
            Outcome::TooFewAgree {
                agreeing: 1,
                needed: 2,
            },
        ),
        (
            "a peer lagging past its own threshold lost the primary too",
            Lagging,
            own(Some("p"), 5),
            view(1, vec![peer("b", Role::Replica, Some("p"), 20_000, 5)]),
            Outcome::Degraded { agreeing: 1 },
        ),
        (
            "a peer holding newer data",
            NoPrimary,
            np.clone(),
            view(2, vec![lost("b", 5), lost("c", 6)]),
            Outcome::BehindPeer {
                peer: "c".into(),
                db: "app.db".into(),
            },
        ),
        (
            "a healthy node is not degraded",
            Ok,
            own(Some("p"), 5),
            view(2, vec![lost("b", 5)]),
            Outcome::NotApplicable,
        ),
        (
            "draining wins",
            Draining,
            np.clone(),
            view(2, vec![lost("b", 5)]),
            Outcome::NotApplicable,
        ),
        (
            "the state source fails",
            Unknown,
            NodeState::unknown("x"),
            view(2, vec![lost("b", 5)]),
            Outcome::NotApplicable,
        ),
        (
            "not ready",
            NoPrimary,
            NodeState {
                ready: false,
                ..np.clone()
            },
            view(2, vec![lost("b", 5)]),
            Outcome::NotApplicable,
        ),
    ];
    for (name, status, state, view, expected) in cases {
        assert_eq!(decide(status, &state, &view), expected, "{name}");
    }
}

#[test]
fn the_policy_keys() {
    let state = own(None, 5);
    let all_lost = view(2, vec![lost("b", 5), lost("c", 5)]);
    let one_lost = view(2, vec![lost("b", 5)]);
    let off = FailStaticPolicy {
        enabled: false,
        ..FailStaticPolicy::default()
    };
    let run = |policy: &FailStaticPolicy, view: &PeerView, for_: Duration| {
        fail_static(HealthStatus::NoPrimary, &state, view, policy, for_)
    };
    assert_eq!(run(&off, &all_lost, Duration::ZERO), Outcome::Disabled);
    let everyone = FailStaticPolicy {
        agree: 1.0,
        ..FailStaticPolicy::default()
    };
    assert_eq!(
        run(&everyone, &one_lost, Duration::ZERO),
        Outcome::TooFewAgree {
            agreeing: 1,
            needed: 2
        }
    );
    assert!(run(&everyone, &all_lost, Duration::ZERO).is_degraded());
    let lone_allowed = FailStaticPolicy {
        agree: 0.0,
        min_peers: 0,
        ..FailStaticPolicy::default()
    };
    assert!(run(&lone_allowed, &view(2, vec![]), Duration::ZERO).is_degraded());
    let hour = Duration::from_secs(3600);
    assert_eq!(
        run(&FailStaticPolicy::default(), &all_lost, hour),
        Outcome::Expired
    );
    let unlimited = FailStaticPolicy {
        max_duration: None,
        ..FailStaticPolicy::default()
    };
    assert!(run(&unlimited, &all_lost, hour * 100).is_degraded());
}

#[test]
fn stances() {
    assert_eq!(lost("b", 1).stance(), Stance::Lost);
    assert_eq!(
        peer("b", Role::Replica, Some("p"), 9_999, 1).stance(),
        Stance::Reaches
    );
    let unknown_lag = PeerReport {
        lag: None,
        ..peer("b", Role::Replica, Some("p"), 0, 1)
    };
    assert_eq!(unknown_lag.stance(), Stance::Abstains);
    assert_eq!(
        peer("b", Role::Unknown, None, 0, 1).stance(),
        Stance::Abstains
    );
}

#[test]
fn the_clock_runs_while_degraded_or_expired_and_resets_on_recovery() {
    let mut clock = DegradedClock::default();
    let t0 = Instant::now();
    let later = t0 + Duration::from_secs(5);
    clock.observe(
        &Outcome::TooFewAgree {
            agreeing: 0,
            needed: 1,
        },
        t0,
    );
    assert_eq!(clock.elapsed(later), Duration::ZERO);
    clock.observe(&Outcome::Degraded { agreeing: 1 }, t0);
    clock.observe(&Outcome::Degraded { agreeing: 1 }, later);
    assert_eq!(clock.elapsed(later), Duration::from_secs(5));
    clock.observe(&Outcome::Expired, later);
    clock.observe(
        &Outcome::TooFewAgree {
            agreeing: 0,
            needed: 1,
        },
        later,
    );
    assert_eq!(
        clock.elapsed(later),
        Duration::from_secs(5),
        "a peer blip does not reset it"
    );
    clock.observe(&Outcome::NotApplicable, later);
    assert_eq!(clock.elapsed(later), Duration::ZERO);
}

#[test]
fn reasons_read_as_sentences() {
    assert_eq!(
        Outcome::PeerReachesPrimary { peer: "b".into() }.to_string(),
        "peer b still reaches a primary: this node is cut off"
    );
    assert!(Outcome::Degraded { agreeing: 2 }
        .to_string()
        .starts_with("no primary anywhere reachable: 2 peer(s)"));
}
