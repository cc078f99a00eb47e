//! The request pipeline as a tower middleware stack: health, classification, admission, the
//! consistency wait, the routing decision, and the leaves that carry it out. The stack is
//! assembled in one place, [`stack`]: read it first.

mod access_log;
mod admission;
mod answers;
mod app;
mod chain;
mod classify;
mod consistency;
mod forward;
mod health;
mod lost;
mod meta;
mod metrics;
mod no_primary;
mod outcome;
mod panic;
mod primary_path;
mod reconfigure;
mod request_id;
mod route;
mod shared;
pub mod stack;
mod tokens;
mod upgrade;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rwproxy_core::{Demand, NodeState};
use tokio::sync::watch;

use crate::consistency::PositionProbe;
use crate::freshness::Freshness;
use crate::health::{HealthView, SharedHealth};
use crate::metrics::Metrics;
use crate::params::ProxyParams;
use crate::upstream::breaker::{BreakerConfig, Breakers};
use crate::upstream::headers::HopIdentity;
use crate::upstream::multiplex::{ConnectionCounts, Multiplexed};
use crate::upstream::pool::PoolConfig;
use crate::upstream::warm::Warmer;
use crate::upstream::{Pool, Target};
use shared::Shared;

pub(crate) use meta::RequestMeta;

pub use access_log::{AccessLog, AccessLogLayer};
pub use admission::{Admission, AdmissionLayer};
pub use app::AppService;
pub use classify::{Classify, ClassifyLayer};
pub use consistency::{Consistency, ConsistencyLayer, TokenWait};
pub use health::{Health, HealthLayer};
pub use metrics::{MetricsLayer, RecordMetrics};
pub use outcome::{Answered, Routed};
pub use panic::{CatchPanic, CatchPanicLayer};
pub use request_id::{RequestId, RequestIdLayer, RequestIds, SetRequestId, X_REQUEST_ID};
pub use route::{Route, RouteLayer};
pub use stack::{ProxyService, RwproxyLayer};
pub use upgrade::{Upgrade, UpgradeLayer};

/// Set when the process is shutting down; health turns 503 `draining`.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Starts draining.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// True once draining started.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// One node's pipeline: its state, pools and metrics, from which the layers are built. Cheap
/// to clone.
#[derive(Clone, Debug)]
pub struct Proxy {
    shared: Arc<Shared>,
    request_ids: RequestIdLayer,
}

impl Proxy {
    /// A proxy over the given state channel. `health` carries the debounced health verdict
    /// (written by the node's state-watch task); a fresh [`SharedHealth`] reports `unknown`
    /// until something feeds it.
    pub fn new(
        params: ProxyParams,
        state: watch::Receiver<NodeState>,
        demand: Demand,
        probe: Arc<dyn PositionProbe>,
        metrics: Arc<Metrics>,
        draining: Draining,
        health: SharedHealth,
    ) -> Self {
        let health = HealthView::new(
            params.node.clone(),
            state.clone(),
            params.health.max_lag,
            draining,
            health,
        );
        let primary_connections = Arc::new(ConnectionCounts::default());
        let shared = Shared {
            health,
            app: Target::http(params.app.clone()),
            hop: HopIdentity::new(&params.node),
            freshness: Freshness::new(params.max_lag),
            app_pool: Pool::new(PoolConfig {
                max_per_target: params.app_max_connections,
                queue_timeout: params.app_queue_timeout,
                ..PoolConfig::default()
            }),
            primary_pool: Pool::with_tls(PoolConfig::default(), params.upstream_tls.clone())
                .counting(primary_connections.clone()),
            multiplexed: Multiplexed::new(params.upstream_tls.clone(), primary_connections.clone()),
            primary_connections,
            alive: Arc::new(()),
            breakers: Arc::new(Breakers::new(BreakerConfig::default())),
            params,
            state,
            demand,
            probe,
            metrics,
        };
        let shared = Arc::new(shared);
        start_warmer(&shared);
        Proxy {
            shared,
            request_ids: RequestIdLayer::default(),
        }
    }

    /// The whole pipeline as one layer (see [`stack`]), to wrap the service that serves what
    /// this node serves itself.
    pub fn layer(&self) -> RwproxyLayer {
        stack::layers(self)
    }

    /// The binary's service: the pipeline around the local app (`proxy.app`).
    pub fn service(&self) -> ProxyService {
        tower::Layer::layer(&self.layer(), AppService::new(self))
    }

    /// This node's health, as the health endpoints answer it.
    pub fn health_view(&self) -> &HealthView {
        &self.shared.health
    }

    /// The proxy's metrics (shared with the admin listener).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Idle pooled connections to the local app (for tests and metrics).
    pub fn idle_app_connections(&self) -> usize {
        self.shared.app_pool.idle_count(&self.shared.app)
    }

    /// Idle pooled connections: `(to the local app, to primaries)`.
    pub fn idle_connections(&self) -> (usize, usize) {
        (
            self.shared.app_pool.idle_total(),
            self.shared.primary_pool.idle_total(),
        )
    }

    /// Connections to primaries: `(open, ready for a write now)`, and the counts of those
    /// opened ahead of writes and on demand.
    pub fn primary_connections(&self) -> (usize, usize, &ConnectionCounts) {
        let shared = &self.shared;
        let counts = &*shared.primary_connections;
        let open = counts.open.load(std::sync::atomic::Ordering::Relaxed);
        let target = {
            let primary = shared.state.borrow().remote_primary().cloned();
            primary
                .and_then(|p| shared.params.primary_url.authority(&p))
                .map(|a| shared.params.primary_url.target(a))
        };
        let warm = target.map_or(0, |t| {
            shared.multiplexed.live(&t) + shared.primary_pool.idle_count(&t)
        });
        (open, warm, counts)
    }

    /// Requests waiting for a connection to the local app (`proxy.app_max_connections` open).
    pub fn queued_for_app(&self) -> usize {
        self.shared.app_pool.queued_total()
    }

    /// `cluster.secret`, when set (the admin listener signs peers' `/status` answers with it).
    pub(crate) fn cluster_secret(&self) -> Option<&http::HeaderValue> {
        self.shared.params.forward_secret.as_ref()
    }

    /// The upstreams (primaries' rwproxies) whose circuit breaker is open now, sorted.
    pub fn open_breakers(&self) -> Vec<String> {
        self.shared.breakers.open_upstreams()
    }

    /// How long forwarded requests may take.
    pub fn write_timeout(&self) -> Duration {
        self.shared.params.write_timeout
    }
}

/// Starts the task that keeps connections to the primary warm (none when
/// `writes.warm_connections` is 0, or outside a Tokio runtime).
fn start_warmer(shared: &Arc<Shared>) {
    let params = shared.params.warm_path;
    if params.warm_connections == 0 {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let warmer = Warmer {
        params,
        primary_url: shared.params.primary_url.clone(),
        connect_timeout: shared.params.connect_timeout,
        state: shared.state.clone(),
        pool: Arc::downgrade(&shared.alive),
        http1: shared.primary_pool.clone(),
        http2: shared.multiplexed.clone(),
    };
    runtime.spawn(warmer.run());
}

/// The inner service a layer polled ready, taken for a future that calls it later (tower's
/// contract: the service polled ready is the one called); a clone stays for the next request.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
