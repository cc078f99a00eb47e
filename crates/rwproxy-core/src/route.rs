//! The routing decision: a pure function of the request's class, the node's state and how the
//! request's consistency wait went. No IO; the HTTP layer carries the decision out.

use crate::{ErrorCode, NodeState, RequestClass, Role};

/// How writes leave a replica (`writes.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Stream the request to the primary's rwproxy.
    Forward,
    /// Answer with `fly-replay: instance=<primary>` for Fly.io's edge to replay.
    FlyReplay,
    /// Answer 307 to the primary's URL.
    Redirect,
}

/// What a replica that lags more than `reads.max_lag` does with reads (`reads.when_stale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StalePolicy {
    /// Send them to the primary.
    Forward,
    /// Answer 503 `stale`.
    Reject,
    /// Serve them locally anyway.
    Serve,
}

/// What a read does when it waited `consistency.wait` in vain (`consistency.on_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPolicy {
    /// Serve it from the primary.
    Forward,
    /// Answer 504 `consistency-timeout`.
    Error,
}

/// The operator's routing choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    /// `writes.mode`.
    pub write_mode: WriteMode,
    /// `reads.when_stale`.
    pub when_stale: StalePolicy,
    /// `consistency.on_timeout`.
    pub on_timeout: TimeoutPolicy,
}

/// Where the request stands with respect to its consistency token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitState {
    /// No token, or the node already has the token's positions.
    Satisfied,
    /// The token is ahead of this node and nobody has waited yet.
    Behind,
    /// The node reached the token while the request waited.
    Reached,
    /// The wait ended without reaching the token (deadline, or too many waiters).
    TimedOut,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct RouteInput<'a> {
    /// The request's class.
    pub class: RequestClass,
    /// The node's current state.
    pub state: &'a NodeState,
    /// Whether this replica is fresh enough to serve reads (lag within `reads.max_lag`, with
    /// hysteresis applied by the caller). Ignored on the primary.
    pub fresh: bool,
    /// The request was forwarded here by another rwproxy, which expected this node to be primary.
    pub forwarded: bool,
    /// The consistency wait so far.
    pub wait: WaitState,
    /// The write waited `writes.primary_wait` for a primary already.
    pub waited_for_primary: bool,
}

/// Why a request went where it went; shown in the `rwproxy-route` response header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The default for the class on this node.
    Normal,
    /// A write (or an `always_forward` path) on a replica.
    Write,
    /// This replica lags more than `reads.max_lag`.
    Stale,
    /// The read waited for the client's token and this node reached it.
    Waited,
    /// The read waited for the client's token in vain.
    ConsistencyTimeout,
}

impl Reason {
    /// Short name for headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Normal => "normal",
            Reason::Write => "write",
            Reason::Stale => "stale",
            Reason::Waited => "waited",
            Reason::ConsistencyTimeout => "consistency-timeout",
        }
    }
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The local app.
    Local(Reason),
    /// The primary's rwproxy.
    Primary(Reason),
    /// A `fly-replay` answer naming the primary.
    Replay,
    /// A 307 to the primary.
    Redirect,
    /// Wait until the node reaches the client's token, then decide again.
    AwaitPosition,
    /// Wait until a primary is known (at most `writes.primary_wait`), then decide again.
    AwaitPrimary,
    /// rwproxy answers itself with this code.
    Reject(ErrorCode),
}

impl Route {
    /// The `route` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Route::Local(_) => "local",
            Route::Primary(_) => "primary",
            Route::Replay => "replay",
            Route::Redirect => "redirect",
            Route::AwaitPosition | Route::AwaitPrimary | Route::Reject(_) => "rejected",
        }
    }
}

/// Decides where a request goes. See the module docs of each input for their meaning.
pub fn decide(input: RouteInput<'_>, policy: &RoutePolicy) -> Route {
    let state = input.state;
    match input.class {
        RequestClass::Passthrough => Route::Local(Reason::Normal),
        RequestClass::Write => decide_write(input, policy),
        RequestClass::Read if state.role == Role::Primary => Route::Local(Reason::Normal),
        RequestClass::Read if input.forwarded => Route::Reject(ErrorCode::Loop),
        RequestClass::Read => decide_replica_read(input, policy),
    }
}

fn decide_write(input: RouteInput<'_>, policy: &RoutePolicy) -> Route {
    let state = input.state;
    if state.role == Role::Primary {
        return Route::Local(Reason::Normal);
    }
    if input.forwarded {
        // The sender thought this node was primary; forwarding again could loop, and this
        // node's app must never see a write. The request reached no app, so the sender may retry.
        return Route::Reject(ErrorCode::Loop);
    }
    match (state.remote_primary(), input.waited_for_primary) {
        (Some(_), _) => to_primary(policy.write_mode, Reason::Write),
        (None, false) => Route::AwaitPrimary,
        (None, true) => Route::Reject(ErrorCode::NoPrimary),
    }
}

fn decide_replica_read(input: RouteInput<'_>, policy: &RoutePolicy) -> Route {
    let state = input.state;
    let primary_known = state.remote_primary().is_some();
    if !input.fresh {
        match policy.when_stale {
            StalePolicy::Forward if primary_known => return Route::Primary(Reason::Stale),
            StalePolicy::Forward | StalePolicy::Reject => {
                let code = if state.role == Role::Unknown || !state.ready {
                    ErrorCode::NotReady
                } else {
                    ErrorCode::Stale
                };
                return Route::Reject(code);
            }
            StalePolicy::Serve => {}
        }
    }
    match input.wait {
        WaitState::Satisfied => Route::Local(if input.fresh {
            Reason::Normal
        } else {
            Reason::Stale
        }),
        WaitState::Reached => Route::Local(Reason::Waited),
        WaitState::Behind => Route::AwaitPosition,
        WaitState::TimedOut => match policy.on_timeout {
            TimeoutPolicy::Forward if primary_known => Route::Primary(Reason::ConsistencyTimeout),
            _ => Route::Reject(ErrorCode::ConsistencyTimeout),
        },
    }
}

/// Reads forwarded to the primary always stream there; only writes honour fly-replay/redirect.
fn to_primary(mode: WriteMode, reason: Reason) -> Route {
    match mode {
        WriteMode::Forward => Route::Primary(reason),
        WriteMode::FlyReplay => Route::Replay,
        WriteMode::Redirect => Route::Redirect,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Positions;

    const POLICY: RoutePolicy = RoutePolicy {
        write_mode: WriteMode::Forward,
        when_stale: StalePolicy::Forward,
        on_timeout: TimeoutPolicy::Forward,
    };

    fn node(role: Role, primary: Option<&str>) -> NodeState {
        NodeState {
            role,
            primary: primary.map(Into::into),
            positions: Positions::new(),
            lag: Some(Duration::ZERO),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    fn input(class: RequestClass, state: &NodeState) -> RouteInput<'_> {
        RouteInput {
            class,
            state,
            fresh: true,
            forwarded: false,
            wait: WaitState::Satisfied,
            waited_for_primary: false,
        }
    }

    use RequestClass::{Passthrough, Read, Write};

    #[test]
    fn table() {
        let primary = node(Role::Primary, Some("p"));
        let replica = node(Role::Replica, Some("p"));
        let orphan = node(Role::Replica, None);
        let unknown = NodeState::unknown("source failed");
        let fwd = |s| RouteInput {
            forwarded: true,
            ..input(Write, s)
        };
        let stale = |c, s| RouteInput {
            fresh: false,
            ..input(c, s)
        };
        let wait = |w, s| RouteInput {
            wait: w,
            ..input(Read, s)
        };
        let cases: Vec<(&str, RouteInput<'_>, RoutePolicy, Route)> = vec![
            (
                "primary read",
                input(Read, &primary),
                POLICY,
                Route::Local(Reason::Normal),
            ),
            (
                "primary write",
                input(Write, &primary),
                POLICY,
                Route::Local(Reason::Normal),
            ),
            (
                "primary forwarded write",
                fwd(&primary),
                POLICY,
                Route::Local(Reason::Normal),
            ),
            (
                "primary stale flag ignored",
                stale(Read, &primary),
                POLICY,
                Route::Local(Reason::Normal),
            ),
            (
                "replica read",
                input(Read, &replica),
                POLICY,
                Route::Local(Reason::Normal),
            ),
            (
                "replica write",
                input(Write, &replica),
                POLICY,
                Route::Primary(Reason::Write),
            ),
            (
                "replica passthrough write",
                input(Passthrough, &replica),
                POLICY,
                Route::Local(Reason::Normal),
            ),
            (
                "orphan passthrough",
                input(Passthrough, &unknown),
                POLICY,
                Route::Local(Reason::Normal),
            ),
            (
                "replica forwarded write loops",
                fwd(&replica),
                POLICY,
                Route::Reject(ErrorCode::Loop),
            ),
            (
                "replica forwarded read loops",
                RouteInput {
                    forwarded: true,
                    ..input(Read, &replica)
                },
                POLICY,
                Route::Reject(ErrorCode::Loop),
            ),
            (
                "orphan write waits",
                input(Write, &orphan),
                POLICY,
                Route::AwaitPrimary,
            ),
            (
                "orphan write after wait",
                RouteInput {
                    waited_for_primary: true,
                    ..input(Write, &orphan)
                },
                POLICY,
                Route::Reject(ErrorCode::NoPrimary),
            ),
            (
                "unknown write waits",
                input(Write, &unknown),
                POLICY,
                Route::AwaitPrimary,
            ),
            (
                "stale read forwarded",
                stale(Read, &replica),
                POLICY,
                Route::Primary(Reason::Stale),
            ),
            (
                "stale read rejected",
                stale(Read, &replica),
                RoutePolicy {
                    when_stale: StalePolicy::Reject,
                    ..POLICY
                },
                Route::Reject(ErrorCode::Stale),
            ),
            (
                "stale read served",
                stale(Read, &replica),
                RoutePolicy {
                    when_stale: StalePolicy::Serve,
                    ..POLICY
                },
                Route::Local(Reason::Stale),
            ),
            (
                "stale orphan read",
                stale(Read, &orphan),
                POLICY,
                Route::Reject(ErrorCode::Stale),
            ),
            (
                "unknown read",
                stale(Read, &unknown),
                POLICY,
                Route::Reject(ErrorCode::NotReady),
            ),
            (
                "token behind",
                wait(WaitState::Behind, &replica),
                POLICY,
                Route::AwaitPosition,
            ),
            (
                "token reached",
                wait(WaitState::Reached, &replica),
                POLICY,
                Route::Local(Reason::Waited),
            ),
            (
                "token timeout forwards",
                wait(WaitState::TimedOut, &replica),
                POLICY,
                Route::Primary(Reason::ConsistencyTimeout),
            ),
            (
                "token timeout errors",
                wait(WaitState::TimedOut, &replica),
                RoutePolicy {
                    on_timeout: TimeoutPolicy::Error,
                    ..POLICY
                },
                Route::Reject(ErrorCode::ConsistencyTimeout),
            ),
            (
                "token timeout without primary",
                wait(WaitState::TimedOut, &orphan),
                POLICY,
                Route::Reject(ErrorCode::ConsistencyTimeout),
            ),
            (
                "stale beats token",
                RouteInput {
                    fresh: false,
                    wait: WaitState::Behind,
                    ..input(Read, &replica)
                },
                POLICY,
                Route::Primary(Reason::Stale),
            ),
            (
                "fly-replay write",
                input(Write, &replica),
                RoutePolicy {
                    write_mode: WriteMode::FlyReplay,
                    ..POLICY
                },
                Route::Replay,
            ),
            (
                "redirect write",
                input(Write, &replica),
                RoutePolicy {
                    write_mode: WriteMode::Redirect,
                    ..POLICY
                },
                Route::Redirect,
            ),
            (
                "fly-replay stale read still streams",
                stale(Read, &replica),
                RoutePolicy {
                    write_mode: WriteMode::FlyReplay,
                    ..POLICY
                },
                Route::Primary(Reason::Stale),
            ),
        ];
        for (name, input, policy, want) in cases {
            assert_eq!(decide(input, &policy), want, "{name}");
        }
    }

    #[test]
    fn a_replica_that_cannot_serve_a_read_names_why() {
        // (state, when_stale, code): `not-ready` when the node does not know its role or has
        // not finished syncing, `stale` when it is ready and only behind.
        let not_ready = NodeState {
            ready: false,
            lag: None,
            ..node(Role::Replica, None)
        };
        let ready_unknown = NodeState {
            ready: true,
            ..NodeState::unknown("source failed")
        };
        let rows = [
            (
                node(Role::Replica, None),
                StalePolicy::Forward,
                ErrorCode::Stale,
            ),
            (
                node(Role::Replica, Some("p")),
                StalePolicy::Reject,
                ErrorCode::Stale,
            ),
            (not_ready.clone(), StalePolicy::Forward, ErrorCode::NotReady),
            (not_ready, StalePolicy::Reject, ErrorCode::NotReady),
            (
                NodeState::unknown("x"),
                StalePolicy::Reject,
                ErrorCode::NotReady,
            ),
            (ready_unknown, StalePolicy::Forward, ErrorCode::NotReady),
        ];
        for (state, when_stale, code) in rows {
            let input = RouteInput {
                fresh: false,
                ..input(Read, &state)
            };
            let policy = RoutePolicy {
                when_stale,
                ..POLICY
            };
            assert_eq!(
                decide(input, &policy),
                Route::Reject(code),
                "{state:?} {when_stale:?}"
            );
        }
    }

    #[test]
    fn a_stale_replica_serving_anyway_still_honours_tokens() {
        let replica = node(Role::Replica, Some("p"));
        let serve = RoutePolicy {
            when_stale: StalePolicy::Serve,
            ..POLICY
        };
        let stale_wait = |wait| RouteInput {
            fresh: false,
            wait,
            ..input(Read, &replica)
        };
        assert_eq!(
            decide(stale_wait(WaitState::Behind), &serve),
            Route::AwaitPosition
        );
        assert_eq!(
            decide(stale_wait(WaitState::Reached), &serve),
            Route::Local(Reason::Waited)
        );
        assert_eq!(
            decide(stale_wait(WaitState::TimedOut), &serve),
            Route::Primary(Reason::ConsistencyTimeout)
        );
    }

    #[test]
    fn labels_and_reasons() {
        let rows = [
            (Route::Local(Reason::Normal), "local"),
            (Route::Primary(Reason::Write), "primary"),
            (Route::Replay, "replay"),
            (Route::Redirect, "redirect"),
            (Route::AwaitPosition, "rejected"),
            (Route::AwaitPrimary, "rejected"),
            (Route::Reject(ErrorCode::Stale), "rejected"),
        ];
        for (route, label) in rows {
            assert_eq!(route.label(), label, "{route:?}");
        }
        let reasons = [
            (Reason::Normal, "normal"),
            (Reason::Write, "write"),
            (Reason::Stale, "stale"),
            (Reason::Waited, "waited"),
            (Reason::ConsistencyTimeout, "consistency-timeout"),
        ];
        for (reason, name) in reasons {
            assert_eq!(reason.as_str(), name);
        }
    }

    #[test]
    fn a_replica_never_routes_a_write_locally() {
        let states = [
            node(Role::Replica, Some("p")),
            node(Role::Replica, None),
            NodeState::unknown("x"),
            NodeState {
                ready: false,
                lag: None,
                ..node(Role::Replica, Some("p"))
            },
        ];
        let modes = [
            WriteMode::Forward,
            WriteMode::FlyReplay,
            WriteMode::Redirect,
        ];
        let waits = [
            WaitState::Satisfied,
            WaitState::Behind,
            WaitState::Reached,
            WaitState::TimedOut,
        ];
        for state in &states {
            for write_mode in modes {
                for wait in waits {
                    for (fresh, forwarded, waited_for_primary) in [
                        (true, false, false),
                        (false, true, true),
                        (true, true, false),
                        (false, false, true),
                    ] {
                        let input = RouteInput {
                            class: Write,
                            state,
                            fresh,
                            forwarded,
                            wait,
                            waited_for_primary,
                        };
                        let route = decide(
                            input,
                            &RoutePolicy {
                                write_mode,
                                ..POLICY
                            },
                        );
                        assert!(
                            !matches!(route, Route::Local(_)),
                            "{state:?} {write_mode:?} -> {route:?}"
                        );
                    }
                }
            }
        }
    }
}
