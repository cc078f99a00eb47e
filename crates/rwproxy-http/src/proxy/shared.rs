//! What every layer of one node's stack reads: the node's parameters, its cluster state, the
//! upstream pools and its metrics. Built once per node; every layer holds an `Arc` of it.

use std::sync::Arc;

use rwproxy_core::{Demand, NodeState, Reading};
use tokio::sync::watch;

use crate::consistency::PositionProbe;
use crate::freshness::Freshness;
use crate::health::HealthView;
use crate::metrics::Metrics;
use crate::params::ProxyParams;
use crate::upstream::breaker::Breakers;
use crate::upstream::headers::HopIdentity;
use crate::upstream::multiplex::{ConnectionCounts, Multiplexed};
use crate::upstream::{Pool, Target};

/// One node's pipeline state.
pub(crate) struct Shared {
    pub(crate) params: ProxyParams,
    pub(crate) state: watch::Receiver<NodeState>,
    /// Connections to the local app, capped at `proxy.app_max_connections` (unused when the
    /// stack wraps an embedding app's own service).
    pub(crate) app_pool: Pool,
    /// Connections to primaries' rwproxies.
    pub(crate) primary_pool: Pool,
    /// HTTP/2 connections to primaries' rwproxies (`writes.http2`).
    pub(crate) multiplexed: Multiplexed,
    /// Connections to primaries opened and open, both protocols (for metrics).
    pub(crate) primary_connections: Arc<ConnectionCounts>,
    /// Held while the pipeline lives: the warmer stops once it is gone.
    pub(crate) alive: Arc<()>,
    /// Shared with the proxies a reload builds: a primary's failures outlive a reload.
    pub(crate) breakers: Arc<Breakers>,
    pub(crate) app: Target,
    pub(crate) hop: HopIdentity,
    pub(crate) freshness: Freshness,
    pub(crate) demand: Demand,
    pub(crate) probe: Arc<dyn PositionProbe>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: HealthView,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node", &self.params.node)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The positions (and timeline) right now: from the probe, else the last published state.
    pub(crate) async fn current_positions(&self) -> Reading {
        if let Some(reading) = self.positions_without_probe() {
            return reading;
        }
        match self.probe.current().await {
            Some(reading) => reading,
            None => self.state.borrow().reading(),
        }
    }

    /// The last published positions when the probe never reads any (a static source): then
    /// they are the current ones, known without awaiting (or boxing) a probe call.
    pub(crate) fn positions_without_probe(&self) -> Option<Reading> {
        (!self.probe.reads_positions()).then(|| self.state.borrow().reading())
    }
}
