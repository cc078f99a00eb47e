//! What every node runs besides its listeners, shared by the binary's [`Node`](super::Node)
//! and an embedded node ([`crate::embed`]): the cluster source, the pipeline's state, the
//! state-watch task (health, gauges, role logs), the metrics upkeep, the app check and the
//! history observer.

use std::io;
use std::sync::Arc;

use rwproxy_core::{Demand, NodeState};
use rwproxy_http::health::{self, HealthTracker, PeerView, SharedHealth};
use rwproxy_http::history::{self, History, HistorySize, LagLimits, Observed, PeerTable};
use rwproxy_http::{Admin, Draining, Metrics, Proxy};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::fail_static::PeerJudge;
use super::mapping::{app_check, proxy_params, source_spec};
use super::peers::PeerPoller;
use super::source_switch::SourceSwitch;
use super::state_watch::{watch_state, Watch};
use crate::config::Config;
use crate::config::SourceConfig;

/// A started node core. Its tasks stop when `stop` is cancelled; the cluster source stops
/// when `cluster` is dropped (a reload restarts it through `cluster`'s control).
pub(crate) struct Core {
    pub(crate) proxy: Proxy,
    pub(crate) admin: Admin,
    pub(crate) state: watch::Receiver<NodeState>,
    pub(crate) draining: Draining,
    pub(crate) demand: Demand,
    pub(crate) stop: CancellationToken,
    pub(crate) cluster: SourceSwitch,
}

impl Core {
    /// Starts the cluster source and the node's background tasks. Needs a Tokio runtime.
    pub(crate) fn start(config: &Config) -> io::Result<Core> {
        let node: Arc<str> = Arc::from(config.node.as_str());
        let databases: Vec<Arc<str>> = config
            .cluster
            .databases
            .iter()
            .map(|d| Arc::from(d.as_str()))
            .collect();
        let demand = Demand::default();
        let spec = source_spec(config);
        let cluster = SourceSwitch::start(node.clone(), spec, demand.clone());
        let probe = cluster.probe();
        let state = cluster.subscribe();
        let metrics = Arc::new(Metrics::new(&databases, env!("CARGO_PKG_VERSION")));
        metrics.max_lag(config.reads.max_lag, config.health.max_lag);
        let draining = Draining::default();
        let stop = CancellationToken::new();
        let history = History::new(
            node.clone(),
            &databases,
            LagLimits {
                reads: config.reads.max_lag,
                health: config.health.max_lag,
            },
            HistorySize::default(),
        );
        let params = proxy_params(config, node.clone(), databases)?;
        let app_check = app_check(config)?;
        let shared_health = SharedHealth::default();
        let proxy = Proxy::new(
            params,
            state.clone(),
            demand.clone(),
            probe,
            metrics.clone(),
            draining.clone(),
            shared_health.clone(),
        );
        // One view for the peer poller to fill and the cluster table (`/peers`) to read.
        let (peer_view, peer_view_rx) = watch::channel(Default::default());
        let admin = Admin {
            proxy: proxy.clone(),
            demand: demand.clone(),
            history: history.clone(),
            ui: config.admin.ui,
            peers: PeerTable {
                node: node.clone(),
                state: state.clone(),
                view: peer_view_rx,
            },
        };
        tokio::spawn(history::observe(
            history,
            Observed {
                state: state.clone(),
                proxy: proxy.clone(),
                draining: draining.clone(),
            },
            stop.clone().cancelled_owned(),
        ));
        if let Some(check) = app_check {
            tokio::spawn(health::run_app_check(
                check,
                config.health.app_interval,
                config.health.fall,
                shared_health.clone(),
                stop.clone().cancelled_owned(),
            ));
        }
        tokio::spawn(rwproxy_http::metrics::upkeep(
            metrics.clone(),
            stop.clone().cancelled_owned(),
        ));
        let peers = start_peer_poller(config, &node, &state, &stop, &shared_health, peer_view);
        // LiteFS names the primary by its lease.hostname, which may not be the primary
        // rwproxy's `node`; the postgres sources name it by address, never by `node`.
        if matches!(config.cluster.source, SourceConfig::Litefs { .. }) {
            tokio::spawn(super::primary_name::run(
                super::primary_name::NameCheck {
                    primary_url: config.writes.primary_url.clone(),
                    health_path: config.health.path.clone(),
                    shared: shared_health.clone(),
                },
                state.clone(),
                stop.clone(),
            ));
        }
        tokio::spawn(watch_state(
            Watch {
                node,
                metrics,
                draining: draining.clone(),
                view: proxy.health_view().clone(),
                tracker: HealthTracker::new(
                    config.health.rise,
                    config.health.fall,
                    shared_health.clone(),
                ),
                shared: shared_health,
                peers,
            },
            state.clone(),
            stop.clone(),
        ));
        Ok(Core {
            proxy,
            admin,
            state,
            draining,
            demand,
            stop,
            cluster,
        })
    }
}

/// Starts the peer poller when `health.fail_static` is on and peers are configured, and turns
/// peer-aware health on; returns the judge for the state-watch task.
fn start_peer_poller(
    config: &Config,
    node: &Arc<str>,
    state: &watch::Receiver<NodeState>,
    stop: &CancellationToken,
    shared: &SharedHealth,
    view_tx: watch::Sender<PeerView>,
) -> Option<PeerJudge> {
    let peers = &config.peers;
    if !peers.policy.enabled || !peers.any() {
        return None;
    }
    let view_rx = view_tx.subscribe();
    let poller = PeerPoller {
        node: node.clone(),
        urls: peers.urls.clone(),
        dns: peers.dns.clone(),
        poll: peers.poll,
        secret: config
            .cluster
            .secret
            .as_deref()
            .and_then(|s| http::HeaderValue::from_str(s).ok()),
    };
    tokio::spawn(poller.run(view_tx, state.clone(), stop.clone()));
    shared.set_peer_aware(true);
    Some(PeerJudge::new(view_rx, peers.policy, peers.poll))
}
