//! Failing static: when every node this one can hear lost the same primary, no node is worse
//! than the rest, and pulling all of them from the edge turns a primary loss into a full outage.
//! Such a node answers `200 degraded` and keeps serving reads; writes still get `503`.
//!
//! The peers' view arrives in its own `watch` channel ([`PeerView`]), published by whatever
//! knows the other nodes: today the peer poller of the binary (each peer's admin `/status`);
//! a source that holds the member list in its own store (Patroni) can publish the same value.
//! The verdict ([`fail_static`]) is a pure function of this node's state, its own verdict, the
//! peer view and the policy, so it is table-tested. A peer's word only ever keeps a node *in*
//! the edge for reads: it never decides where a write goes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use rwproxy_core::{NodeState, Role};
use serde::Serialize;

use super::HealthStatus;

/// What one peer said about itself on the last poll (its `/status` document).
#[derive(Clone, Debug, PartialEq)]
pub struct PeerReport {
    /// The peer's node name.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// The primary it follows, if any.
    pub primary: Option<String>,
    /// Its replication lag, when known.
    pub lag: Option<Duration>,
    /// Its own `health.max_lag`, when it said.
    pub max_lag: Option<Duration>,
    /// Its initial sync is done (`false` when it reports `not-ready`).
    pub ready: bool,
    /// Its position per database.
    pub positions: BTreeMap<String, u64>,
}

/// Where a peer stands on the question "is there a primary?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stance {
    /// It lost the primary too (follows none, or lags past its own `health.max_lag`).
    Lost,
    /// It is the primary, or follows one and keeps up: a primary exists.
    Reaches,
    /// It cannot say (state unknown, not ready).
    Abstains,
}

impl PeerReport {
    /// This peer's stance.
    pub fn stance(&self) -> Stance {
        match self.role {
            _ if !self.ready => Stance::Abstains,
            Role::Unknown => Stance::Abstains,
            Role::Primary => Stance::Reaches,
            Role::Replica if self.primary.is_none() => Stance::Lost,
            Role::Replica => match (self.lag, self.max_lag) {
                (Some(lag), Some(max)) if lag > max => Stance::Lost,
                (None, _) => Stance::Abstains,
                _ => Stance::Reaches,
            },
        }
    }
}

/// What this node knows of its peers: published by the peer poller after every round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerView {
    /// How many peers are configured or resolved (this node excluded).
    pub known: usize,
    /// The peers that answered in the last round.
    pub heard: Vec<PeerReport>,
}

/// The operator's fail-static policy (`health.fail_static*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FailStaticPolicy {
    /// `health.fail_static`: the off switch.
    pub enabled: bool,
    /// `health.fail_static_agree`: the share of the known peers that must have answered and
    /// lost the primary too (0.0 to 1.0).
    pub agree: f64,
    /// `health.fail_static_min_peers`: at least this many peers must agree; 1 by default, so a
    /// node that hears no peer keeps today's answer (it may be the one cut off).
    pub min_peers: usize,
    /// `health.fail_static_max`: how long a degraded state may last before it counts as an
    /// outage anyway; `None` for no limit.
    pub max_duration: Option<Duration>,
}

impl Default for FailStaticPolicy {
    fn default() -> Self {
        FailStaticPolicy {
            enabled: true,
            agree: 0.5,
            min_peers: 1,
            max_duration: Some(Duration::from_secs(3600)),
        }
    }
}

/// The outcome of [`fail_static`]: degraded, or why this node keeps its own verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every peer that can tell lost the primary too: `200 degraded`, reads served locally.
    Degraded {
        /// Peers that lost the primary too.
        agreeing: usize,
    },
    /// `health.fail_static = false`.
    Disabled,
    /// This node's own verdict is not one failing static applies to (healthy, draining, ...).
    NotApplicable,
    /// Fewer peers agree than the policy asks (none heard: the node may be the one cut off).
    TooFewAgree {
        /// Peers that lost the primary too.
        agreeing: usize,
        /// How many must.
        needed: usize,
    },
    /// A peer still reaches a primary: this node is worse than the rest.
    PeerReachesPrimary {
        /// That peer.
        peer: String,
    },
    /// A peer that lost the primary too holds newer data than this node.
    BehindPeer {
        /// That peer.
        peer: String,
        /// The database this node is behind on.
        db: String,
    },
    /// Degraded for longer than `health.fail_static_max`: counts as an outage now.
    Expired,
}

impl Outcome {
    /// True for [`Outcome::Degraded`].
    pub fn is_degraded(&self) -> bool {
        matches!(self, Outcome::Degraded { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Degraded { agreeing } => write!(
                f,
                "no primary anywhere reachable: {agreeing} peer(s) lost it too; reads served from local data, writes refused"
            ),
            Outcome::Disabled => f.write_str("health.fail_static is off"),
            Outcome::NotApplicable => f.write_str("not applicable to this verdict"),
            Outcome::TooFewAgree { agreeing, needed } => write!(
                f,
                "{agreeing} peer(s) lost the primary too, {needed} needed: this node may be the one cut off"
            ),
            Outcome::PeerReachesPrimary { peer } => {
                write!(f, "peer {peer} still reaches a primary: this node is cut off")
            }
            Outcome::BehindPeer { peer, db } => {
                write!(f, "peer {peer} holds newer data of {db}")
            }
            Outcome::Expired => f.write_str("degraded for longer than health.fail_static_max"),
        }
    }
}

/// Verdicts failing static can turn into `degraded`: the primary is gone, or the replica lags
/// (a source that keeps naming a primary it no longer hears from).
fn applies_to(own: HealthStatus, state: &NodeState) -> bool {
    matches!(own, HealthStatus::NoPrimary | HealthStatus::Lagging)
        && state.role == Role::Replica
        && state.ready
}

/// Decides whether this node, whose own verdict is `own`, fails static. `degraded_for` is how
/// long it has been degraded already ([`DegradedClock`] keeps it). Pure: no clock, no IO.
pub fn fail_static(
    own: HealthStatus,
    state: &NodeState,
    view: &PeerView,
    policy: &FailStaticPolicy,
    degraded_for: Duration,
) -> Outcome {
    if !policy.enabled {
        return Outcome::Disabled;
    }
    if !applies_to(own, state) {
        return Outcome::NotApplicable;
    }
    let mut agreeing = 0;
    for peer in &view.heard {
        match peer.stance() {
            Stance::Reaches => {
                return Outcome::PeerReachesPrimary {
                    peer: peer.node.clone(),
                }
            }
            Stance::Lost => agreeing += 1,
            Stance::Abstains => {}
        }
    }
    let share = (policy.agree.clamp(0.0, 1.0) * view.known as f64).ceil() as usize;
    let needed = share.max(policy.min_peers);
    if agreeing < needed {
        return Outcome::TooFewAgree { agreeing, needed };
    }
    // Nothing replicates any more: a node holding less than a peer that serves too would hand
    // out older data than the site has. Only the freshest keep serving.
    for peer in view.heard.iter().filter(|p| p.stance() == Stance::Lost) {
        for (db, own_position) in state.positions.iter() {
            if peer
                .positions
                .get(db.as_ref())
                .is_some_and(|theirs| theirs > own_position)
            {
                return Outcome::BehindPeer {
                    peer: peer.node.clone(),
                    db: db.to_string(),
                };
            }
        }
    }
    if policy.max_duration.is_some_and(|max| degraded_for >= max) {
        return Outcome::Expired;
    }
    Outcome::Degraded { agreeing }
}

/// The latest fail-static verdict as the health document shows it (`peers` field).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerVerdict {
    /// The outcome and its details.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The outcome as a sentence.
    pub reason: String,
    /// Peers configured or resolved (this node excluded).
    pub known: usize,
    /// Peers that answered in the last round.
    pub heard: usize,
    /// How long this node has been degraded, in milliseconds (0 when it is not).
    pub degraded_ms: u64,
}

impl PeerVerdict {
    /// The verdict for `outcome` reached on `view` after `degraded_for`.
    pub fn new(outcome: Outcome, view: &PeerView, degraded_for: Duration) -> Self {
        PeerVerdict {
            reason: outcome.to_string(),
            outcome,
            known: view.known,
            heard: view.heard.len(),
            degraded_ms: degraded_for.as_millis() as u64,
        }
    }
}

/// How long this node has been degraded: starts with the first degraded outcome, keeps running
/// while the node stays without a primary, whatever the peers say meanwhile (so a flapping peer
/// view cannot restart it, and an expired state stays expired), and resets once the node's own
/// verdict no longer calls for failing static (the primary is back).
#[derive(Debug, Default)]
pub struct DegradedClock {
    since: Option<Instant>,
}

impl DegradedClock {
    /// How long the current degraded spell has lasted at `now` (zero when there is none).
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Folds in the latest outcome.
    pub fn observe(&mut self, outcome: &Outcome, now: Instant) {
        match outcome {
            Outcome::Degraded { .. } => {
                self.since.get_or_insert(now);
            }
            Outcome::NotApplicable | Outcome::Disabled => self.since = None,
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
