//! What every node runs besides its listeners, shared by the binary's [`Node`](super::Node)
//! and an embedded node ([`crate::embed`]): the cluster source, the pipeline's state, the
//! state-watch task (health, gauges, role logs), the metrics upkeep, the app check and the
//! history observer.

use std::io;
use std::sync::Arc;

use rwproxy_cluster::ClusterHandle;
use rwproxy_core::{Demand, NodeState};
use rwproxy_http::health::{self, HealthTracker, SharedHealth};
use rwproxy_http::history::{self, History, HistorySize, LagLimits, Observed};
use rwproxy_http::{Admin, Draining, Metrics, Proxy};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::mapping::{app_check, proxy_params, source_spec};
use super::state_watch::{watch_state, Watch};
use crate::config::Config;
use crate::probe;

/// A started node core. Its tasks stop when `stop` is cancelled; the cluster source stops
/// when `cluster` is dropped.
pub(crate) struct Core {
    pub(crate) proxy: Proxy,
    pub(crate) admin: Admin,
    pub(crate) state: watch::Receiver<NodeState>,
    pub(crate) draining: Draining,
    pub(crate) demand: Demand,
    pub(crate) stop: CancellationToken,
    pub(crate) cluster: ClusterHandle,
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
        let probe = probe::for_source(node.clone(), &spec);
        let cluster = ClusterHandle::start(node.clone(), spec, demand.clone());
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
        let admin = Admin {
            proxy: proxy.clone(),
            demand: demand.clone(),
            history: history.clone(),
            ui: config.admin.ui,
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
        tokio::spawn(watch_state(
            Watch {
                node,
                metrics,
                draining: draining.clone(),
                max_lag: config.health.max_lag,
                tracker: HealthTracker::new(
                    config.health.rise,
                    config.health.fall,
                    shared_health.clone(),
                ),
                shared: shared_health,
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
