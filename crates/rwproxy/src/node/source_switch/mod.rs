//! Restarting the cluster source on a reload without a gap in the published state.
//!
//! Everything in the node (the pipeline, health, history, peers) watches one state channel,
//! which this module's relay task owns. The relay copies the running source's state into it.
//! A restart starts the new source beside the old one; the old one keeps publishing until the
//! new one has read the cluster once (that first read, success or failure, is published at
//! once and the old source stops), or until [`first_read_bound`] passes: then the node shows
//! unknown with that reason rather than the old source's word, which may be wrong by now, and
//! the new source publishes whenever it reads. The position probe (tokens after a write, the
//! LiteFS primary check) is swapped at the same moment, so a request never pairs the new
//! source's state with the old one's probe.

mod probe;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rwproxy_cluster::{ClusterHandle, Demand, SourceSpec};
use rwproxy_core::{NodeState, Role};
use rwproxy_http::PositionProbe;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub(crate) use self::probe::SwitchedProbe;

/// The reason a source's channel starts with, before its first read (as
/// [`ClusterHandle::start`] has it).
const STARTING: &str = "starting";

/// Added to every source's own bound on its first read: scheduling slack on a busy host.
const SLACK: Duration = Duration::from_secs(1);

/// The node's cluster state channel and the task that feeds it; dropping this stops the task
/// and the source(s), and receivers see the channel close (as with a [`ClusterHandle`]).
#[derive(Debug)]
pub(crate) struct SourceSwitch {
    control: SourceControl,
    state: watch::Receiver<NodeState>,
    probe: SwitchedProbe,
    relay: JoinHandle<()>,
}

impl Drop for SourceSwitch {
    fn drop(&mut self) {
        // The relay owns the sender and every running source's handle.
        self.relay.abort();
    }
}

/// Asks the relay for a restart; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct SourceControl {
    node: Arc<str>,
    commands: mpsc::Sender<Restart>,
}

struct Restart {
    spec: SourceSpec,
    /// How long the new source's first read may take (see [`first_read_bound`]).
    bound: Duration,
    probe: Arc<dyn PositionProbe>,
    reply: oneshot::Sender<Restarted>,
}

/// How a restart ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Restarted {
    /// The new source read the cluster (`state`, unknown with its reason when the read
    /// failed) and publishes from now on; the old one stopped.
    Read {
        /// The new source's `cluster.source` name.
        source: &'static str,
        /// Its first reading, as published.
        state: NodeState,
    },
    /// The new source had not read the cluster within `bound`: the node shows unknown until
    /// it does; the old one stopped.
    Unread {
        /// The new source's `cluster.source` name.
        source: &'static str,
        /// How long it was given.
        bound: Duration,
    },
    /// The node is stopping, or a newer restart replaced this one before it read: the old
    /// source keeps publishing.
    Abandoned,
}

impl Restarted {
    /// Whether the node now runs a source that read the cluster successfully.
    pub(crate) fn is_healthy(&self) -> bool {
        matches!(self, Restarted::Read { state, .. } if state.role != Role::Unknown)
    }
}

impl fmt::Display for Restarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restarted::Read { source, state } if state.role == Role::Unknown => write!(
                f,
                "cluster source restarted ({source}), but its first read failed: {}",
                state.problem.as_deref().unwrap_or("unknown state")
            ),
            Restarted::Read { source, state } => write!(
                f,
                "cluster source restarted ({source}): {}, primary {}",
                state.role.as_str(),
                state.primary.as_deref().unwrap_or("-")
            ),
            Restarted::Unread { source, bound } => write!(
                f,
                "cluster source restarted ({source}), but it has not read the cluster within {} ms: state unknown until it does",
                bound.as_millis()
            ),
            Restarted::Abandoned => {
                f.write_str("cluster source restart abandoned (the node is stopping or a newer reload replaced it)")
            }
        }
    }
}

impl SourceSwitch {
    /// Starts the source for `spec` and the relay. Needs a Tokio runtime. The channel starts
    /// at `unknown("starting")` until the first read, as the source's own does.
    pub(crate) fn start(node: Arc<str>, spec: SourceSpec, demand: Demand) -> SourceSwitch {
        let probe = SwitchedProbe::new(crate::probe::for_source(node.clone(), &spec));
        let source = ClusterHandle::start(node.clone(), spec, demand.clone());
        let (tx, state) = watch::channel(NodeState::unknown(STARTING));
        // One restart waits at a time (reloads are serial); a second queued one replaces it.
        let (commands, requests) = mpsc::channel(4);
        let relay = tokio::spawn(
            Relay {
                node: node.clone(),
                demand,
                out: tx,
                probe: probe.clone(),
            }
            .run(source, requests),
        );
        SourceSwitch {
            control: SourceControl { node, commands },
            state,
            probe,
            relay,
        }
    }

    /// A receiver of the node's state; its current value counts as seen.
    pub(crate) fn subscribe(&self) -> watch::Receiver<NodeState> {
        let mut rx = self.state.clone();
        rx.mark_unchanged();
        rx
    }

    /// The probe that follows the running source.
    pub(crate) fn probe(&self) -> Arc<dyn PositionProbe> {
        Arc::new(self.probe.clone())
    }

    /// What restarts the source.
    pub(crate) fn control(&self) -> SourceControl {
        self.control.clone()
    }
}

impl SourceControl {
    /// Replaces the running source with one for `spec`; returns once the switch is made (the
    /// new source read the cluster, or its bound passed) or abandoned.
    pub(crate) async fn restart(&self, spec: SourceSpec) -> Restarted {
        let bound = first_read_bound(&spec);
        self.restart_within(spec, bound).await
    }

    /// [`SourceControl::restart`] giving the new source's first read `bound`.
    async fn restart_within(&self, spec: SourceSpec, bound: Duration) -> Restarted {
        let probe = crate::probe::for_source(self.node.clone(), &spec);
        let (reply, outcome) = oneshot::channel();
        let restart = Restart {
            spec,
            bound,
            probe,
            reply,
        };
        if self.commands.send(restart).await.is_err() {
            return Restarted::Abandoned;
        }
        outcome.await.unwrap_or(Restarted::Abandoned)
    }
}

/// How long a new source's first read may take before the node stops believing the old one:
/// the bounds the source itself puts on a read (connect and up to two queries for the
/// databases, one fetch for http, a mount read and an `/info` fetch for LiteFS), plus
/// [`SLACK`].
pub(crate) fn first_read_bound(spec: &SourceSpec) -> Duration {
    let own = match spec {
        SourceSpec::Static { .. } => Duration::ZERO,
        SourceSpec::Litefs(_) => Duration::from_secs(2),
        SourceSpec::Http(http) => http.timeout,
        SourceSpec::Postgres(pg) => pg.timeout * 3,
        SourceSpec::Patroni(patroni) => patroni.postgres.timeout * 3,
        SourceSpec::Mysql(my) => my.timeout * 3,
    };
    own + SLACK
}

/// The relay task's fixed parts.
struct Relay {
    node: Arc<str>,
    demand: Demand,
    out: watch::Sender<NodeState>,
    probe: SwitchedProbe,
}

/// What ended the wait for a new source's first read.
enum Wait {
    Read,
    Unread,
    Replaced(Box<Restart>),
    Stopping,
}

impl Relay {
    /// Copies the running source's state out; on a restart, runs the new source beside it
    /// until the switch.
    async fn run(self, running: ClusterHandle, mut requests: mpsc::Receiver<Restart>) {
        let mut rx = running.subscribe();
        // The source may have read before this task first ran.
        self.forward(rx.borrow_and_update().clone());
        // Held for as long as the relay runs: dropping it stops that source.
        let mut _running = running;
        let mut next_request: Option<Restart> = None;
        loop {
            let restart = match next_request.take() {
                Some(restart) => restart,
                None => tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        self.forward(rx.borrow_and_update().clone());
                        continue;
                    }
                    request = requests.recv() => match request {
                        Some(restart) => restart,
                        None => return,
                    },
                },
            };
            let source = restart.spec.name();
            let bound = restart.bound;
            let candidate =
                ClusterHandle::start(self.node.clone(), restart.spec.clone(), self.demand.clone());
            let mut candidate_rx = candidate.subscribe();
            let starting = NodeState::unknown(STARTING);
            let deadline = tokio::time::sleep(bound);
            tokio::pin!(deadline);
            let wait = loop {
                tokio::select! {
                    // The new source's word first: once it read, the old one's is moot.
                    biased;
                    // Its value counts even when it was published before this subscribed.
                    _ = candidate_rx.wait_for(|state| *state != starting) => break Wait::Read,
                    _ = &mut deadline => break Wait::Unread,
                    request = requests.recv() => match request {
                        Some(newer) => break Wait::Replaced(Box::new(newer)),
                        None => break Wait::Stopping,
                    },
                    changed = rx.changed() => {
                        if changed.is_err() {
                            break Wait::Stopping;
                        }
                        self.forward(rx.borrow_and_update().clone());
                    }
                }
            };
            let outcome = match wait {
                Wait::Read => {
                    let state = candidate_rx.borrow_and_update().clone();
                    self.probe.store(restart.probe);
                    self.forward(state.clone());
                    Restarted::Read { source, state }
                }
                Wait::Unread => {
                    candidate_rx.mark_unchanged();
                    self.probe.store(restart.probe);
                    self.forward(NodeState::unknown(format!(
                        "cluster source restarting: the new {source} source has not read the cluster within {} ms",
                        bound.as_millis()
                    )));
                    Restarted::Unread { source, bound }
                }
                Wait::Replaced(newer) => {
                    next_request = Some(*newer);
                    let _ = restart.reply.send(Restarted::Abandoned);
                    continue;
                }
                Wait::Stopping => {
                    let _ = restart.reply.send(Restarted::Abandoned);
                    return;
                }
            };
            // Dropping the old handle stops the old source and its helper tasks.
            _running = candidate;
            rx = candidate_rx;
            log(&outcome);
            let _ = restart.reply.send(outcome);
        }
    }

    /// Publishes `next` when it differs from the current value (receivers wake only then).
    fn forward(&self, next: NodeState) {
        self.out.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
    }
}

fn log(outcome: &Restarted) {
    if outcome.is_healthy() {
        tracing::info!("{outcome}");
    } else {
        tracing::warn!("{outcome}");
    }
}

#[cfg(test)]
mod tests;
