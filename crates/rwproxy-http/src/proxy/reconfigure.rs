//! A running proxy rebuilt with new parameters (a configuration reload): what is state carries
//! over, what is a parameter is replaced.
//!
//! A new parameter joins the reload by being a field of [`ProxyParams`]: the binary maps the
//! reloaded file with the same function as at start, and every layer reads `shared.params`.

use std::sync::Arc;

use super::shared::Shared;
use super::Proxy;
use crate::params::ProxyParams;
use crate::upstream::headers::HopIdentity;
use crate::upstream::pool::PoolConfig;
use crate::upstream::{Pool, Target};

impl Proxy {
    /// This proxy with `params` in place of its own, sharing everything that is state: the
    /// cluster state, metrics, breakers, the health verdict (whose `health.max_lag` changes for
    /// every holder of its view), the consistency waiters and the request-id counter.
    ///
    /// The pool to the local app is kept unless its limits changed; the pool to primaries is
    /// kept unless TLS toward them is configured (before or now), so new CA or client
    /// certificate files take effect. A replaced pool's connections close once the requests
    /// that use them finish. `params.node` is taken as this node's name: it does not change.
    pub fn reconfigured(&self, params: ProxyParams) -> Proxy {
        let old = &self.shared;
        let app_pool = if params.app_max_connections == old.params.app_max_connections
            && params.app_queue_timeout == old.params.app_queue_timeout
        {
            old.app_pool.clone()
        } else {
            Pool::new(PoolConfig {
                max_per_target: params.app_max_connections,
                queue_timeout: params.app_queue_timeout,
                ..PoolConfig::default()
            })
        };
        let primary_pool = if params.upstream_tls.is_none() && old.params.upstream_tls.is_none() {
            old.primary_pool.clone()
        } else {
            Pool::with_tls(PoolConfig::default(), params.upstream_tls.clone())
        };
        old.health.set_max_lag(params.health.max_lag);
        let shared = Shared {
            state: old.state.clone(),
            app_pool,
            primary_pool,
            breakers: old.breakers.clone(),
            app: Target::http(params.app.clone()),
            hop: HopIdentity::new(&old.params.node),
            freshness: old.freshness.with_max_lag(params.max_lag),
            demand: old.demand.clone(),
            probe: old.probe.clone(),
            metrics: old.metrics.clone(),
            health: old.health.clone(),
            params: ProxyParams {
                node: old.params.node.clone(),
                ..params
            },
        };
        Proxy {
            shared: Arc::new(shared),
            request_ids: self.request_ids.clone(),
        }
    }

    /// The parameters this proxy runs with.
    pub fn params(&self) -> &ProxyParams {
        &self.shared.params
    }
}
