//! The one task that writes a node's history: it watches the state channel (the publisher's
//! output), reads the debounced health verdict, the open breakers and the drain flag on a
//! short tick, and samples the counters once a second. It only observes: the modules it
//! watches know nothing of it.

use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{NodeState, Role};
use tokio::sync::watch;

use super::event::{EventKind, Happening};
use super::series::Totals;
use super::History;
use crate::health::HealthStatus;
use crate::proxy::{Draining, Proxy};

/// How often the verdict, the breakers and the drain flag are looked at between state changes:
/// the health tracker's own tick, so a verdict change is seen within one.
const TICK: Duration = crate::health::TICK;

/// How often a sample is taken.
const SAMPLE: Duration = Duration::from_secs(1);

/// What the observer watches.
#[derive(Clone, Debug)]
pub struct Observed {
    /// The node's state channel (its cluster source's publisher writes it).
    pub state: watch::Receiver<NodeState>,
    /// The proxy: its health view, breakers and metrics.
    pub proxy: Proxy,
    /// The drain flag.
    pub draining: Draining,
}

/// What the observer saw last, to tell changes.
#[derive(Debug)]
struct Seen {
    role: Role,
    primary: Option<Arc<str>>,
    /// The problem a `source-error` event reported, so a recovery is news only after one.
    reported_problem: Option<Arc<str>>,
    over_reads: bool,
    over_health: bool,
    verdict: HealthStatus,
    draining: bool,
    open_breakers: Vec<String>,
}

/// Records events and samples into `history` until `stop` resolves or the state channel
/// closes.
pub async fn observe(
    history: History,
    mut observed: Observed,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = tokio::time::interval(SAMPLE);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The channel's value before the source has published anything ("starting") is not news.
    let placeholder = observed.state.borrow().problem.clone();
    let mut seen: Option<Seen> = None;
    loop {
        let state = observed.state.borrow_and_update().clone();
        match &mut seen {
            Some(seen) => compare(&history, &observed, seen, &state),
            None if state.problem.is_some() && state.problem == placeholder => {}
            None => seen = Some(start(&history, &observed, &state)),
        }
        tokio::select! {
            changed = observed.state.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tick.tick() => {}
            _ = sample.tick() => {
                let totals = Totals::from_exposition(&observed.proxy.metrics().render());
                history.sample(&observed.state.borrow(), totals);
            }
            () = &mut stop => return,
        }
    }
}

/// The first real state: one `started` event that says where the node stands.
fn start(history: &History, observed: &Observed, state: &NodeState) -> Seen {
    let limits = history.limits();
    let verdict = observed.proxy.health_view().status();
    let mut seen = Seen {
        role: state.role,
        primary: state.primary.clone(),
        reported_problem: None,
        over_reads: state.lag.is_some_and(|l| l > limits.reads),
        over_health: state.lag.is_some_and(|l| l > limits.health),
        verdict,
        draining: observed.draining.is_draining(),
        open_breakers: observed.proxy.open_breakers(),
    };
    let primary = state.primary.as_deref().unwrap_or("none");
    history.record(Happening::new(EventKind::Started).message(&format!(
        "role {}, primary {primary}, health {}",
        state.role.as_str(),
        verdict.as_str()
    )));
    if let Some(problem) = &state.problem {
        history.record(Happening::new(EventKind::SourceError).message(problem));
        seen.reported_problem = Some(problem.clone());
    }
    seen
}

fn compare(history: &History, observed: &Observed, seen: &mut Seen, state: &NodeState) {
    source(history, seen, state);
    role_and_primary(history, seen, state);
    lag(history, seen, state);
    let verdict = observed.proxy.health_view().status();
    if verdict != seen.verdict {
        history.record(
            Happening::new(EventKind::HealthChanged)
                .from(seen.verdict.as_str())
                .to(verdict.as_str())
                .message(&reason(verdict, state, history)),
        );
        seen.verdict = verdict;
    }
    let draining = observed.draining.is_draining();
    if draining && !seen.draining {
        history.record(Happening::new(EventKind::DrainStarted));
    }
    seen.draining = draining;
    let open = observed.proxy.open_breakers();
    if open != seen.open_breakers {
        for upstream in open.iter().filter(|u| !seen.open_breakers.contains(u)) {
            history.record(Happening::new(EventKind::BreakerOpen).to(upstream.as_str()));
        }
        for upstream in seen.open_breakers.iter().filter(|u| !open.contains(u)) {
            history.record(Happening::new(EventKind::BreakerClosed).to(upstream.as_str()));
        }
        seen.open_breakers = open;
    }
}

fn source(history: &History, seen: &mut Seen, state: &NodeState) {
    if state.problem == seen.reported_problem {
        return;
    }
    match &state.problem {
        Some(problem) => {
            history.record(Happening::new(EventKind::SourceError).message(problem));
        }
        None => history.record(Happening::new(EventKind::SourceRecovered)),
    }
    seen.reported_problem.clone_from(&state.problem);
}

fn role_and_primary(history: &History, seen: &mut Seen, state: &NodeState) {
    if state.role != seen.role {
        history.record(
            Happening::new(EventKind::RoleChanged)
                .from(seen.role.as_str())
                .to(state.role.as_str()),
        );
        seen.role = state.role;
    }
    if state.primary != seen.primary {
        let happening = match (&seen.primary, &state.primary) {
            (Some(from), Some(to)) => Happening::new(EventKind::PrimaryChanged)
                .from(from.clone())
                .to(to.clone()),
            (Some(from), None) => Happening::new(EventKind::PrimaryLost).from(from.clone()),
            (None, Some(to)) => Happening::new(EventKind::PrimaryFound).to(to.clone()),
            (None, None) => return,
        };
        history.record(happening);
        seen.primary.clone_from(&state.primary);
    }
}

/// Lag crossing either limit, up or down. Unknown lag crosses nothing: the source's error or
/// the verdict says that part.
fn lag(history: &History, seen: &mut Seen, state: &NodeState) {
    let Some(lag) = state.lag else {
        return;
    };
    let limits = history.limits();
    let crossings = [
        (
            lag > limits.reads,
            &mut seen.over_reads,
            EventKind::LagOverReadsMax,
            EventKind::LagUnderReadsMax,
            limits.reads,
        ),
        (
            lag > limits.health,
            &mut seen.over_health,
            EventKind::LagOverHealthMax,
            EventKind::LagUnderHealthMax,
            limits.health,
        ),
    ];
    for (over, was_over, up, down, limit) in crossings {
        if over != *was_over {
            // The limit, not the lag, is the message: repeats of a hovering lag coalesce.
            let limit = humantime::format_duration(limit);
            history.record(
                Happening::new(if over { up } else { down }).message(&format!("limit {limit}")),
            );
            *was_over = over;
        }
    }
}

/// Why the verdict is what it is, in words that stay the same while the cause does (so a
/// flapping verdict coalesces).
fn reason(verdict: HealthStatus, state: &NodeState, history: &History) -> String {
    match verdict {
        HealthStatus::Ok => "serving".to_owned(),
        HealthStatus::Lagging => format!(
            "lag over health.max_lag {}",
            humantime::format_duration(history.limits().health)
        ),
        HealthStatus::NoPrimary => "replica without a known primary".to_owned(),
        HealthStatus::Degraded => {
            "every reachable node lost the primary: reads served locally (fail-static)".to_owned()
        }
        HealthStatus::NotReady => "initial sync not done".to_owned(),
        HealthStatus::Draining => "shutting down".to_owned(),
        HealthStatus::Unknown => match &state.problem {
            Some(problem) => format!("cluster state unknown: {problem}"),
            None => "lag unknown".to_owned(),
        },
        HealthStatus::AppDown => "the local app fails its health check".to_owned(),
    }
}
