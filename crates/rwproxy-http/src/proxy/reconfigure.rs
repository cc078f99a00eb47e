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
use crate::upstream::multiplex::Multiplexed;
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
        // Connections to the primary (both protocols) carry over unless the TLS settings they
        // were made with changed; the new pipeline gets its own warmer either way (the old one
        // stops once the old pipeline is gone).
        let same_tls = params.upstream_tls.is_none() && old.params.upstream_tls.is_none();
        let (primary_pool, multiplexed) = if same_tls {
            (old.primary_pool.clone(), old.multiplexed.clone())
        } else {
            (
                Pool::with_tls(PoolConfig::default(), params.upstream_tls.clone())
                    .counting(old.primary_connections.clone()),
                Multiplexed::new(params.upstream_tls.clone(), old.primary_connections.clone()),
            )
        };
        old.health.set_max_lag(params.health.max_lag);
        let shared = Shared {
            state: old.state.clone(),
            app_pool,
            primary_pool,
            multiplexed,
            primary_connections: old.primary_connections.clone(),
            alive: Arc::new(()),
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
        let shared = Arc::new(shared);
        super::start_warmer(&shared);
        Proxy {
            shared,
            request_ids: self.request_ids.clone(),
        }
    }

    /// The parameters this proxy runs with.
    pub fn params(&self) -> &ProxyParams {
        &self.shared.params
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderName;
    use rwproxy_core::{
        Classifier, Demand, NodeState, Positions, Role, RoutePolicy, StalePolicy, TimeoutPolicy,
        WriteMode,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::consistency::{ConsistencyParams, NoProbe};
    use crate::health::SharedHealth;
    use crate::metrics::Metrics;
    use crate::params::{HealthParams, PrimaryUrl};
    use crate::proxy::Draining;
    use crate::session::SessionMode;

    fn params(node: &str, max_lag: Duration, health_max_lag: Duration) -> ProxyParams {
        ProxyParams {
            node: node.into(),
            app: "127.0.0.1:8081".parse().unwrap(),
            app_connect_retry: Duration::ZERO,
            app_max_connections: Some(16),
            app_queue_timeout: Duration::from_secs(1),
            classifier: Classifier::new(vec![http::Method::GET], &[], &[]).unwrap(),
            policy: RoutePolicy {
                write_mode: WriteMode::Forward,
                when_stale: StalePolicy::Forward,
                on_timeout: TimeoutPolicy::Forward,
            },
            primary_url: PrimaryUrl::new("http://{primary}:8080"),
            primary_wait: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_lag,
            max_body: None,
            forward_secret: None,
            consistency: ConsistencyParams {
                cookie: "__txid".into(),
                header: HeaderName::from_static("rwproxy-position"),
                wait: Duration::from_millis(200),
                cookie_max_age: Duration::from_secs(300),
                max_waiters: 2,
                databases: vec!["app.db".into()],
                session: SessionMode::Writes,
            },
            health: HealthParams {
                path: "/health".into(),
                max_lag: health_max_lag,
            },
            route_header: true,
            access_log: false,
            upstream_tls: None,
            upgrade_idle_timeout: Duration::from_secs(60),
            allow_underscores_in_headers: false,
            body_timeouts: Default::default(),
            warm_path: Default::default(),
        }
    }

    fn replica(lag: Duration) -> NodeState {
        NodeState {
            role: Role::Replica,
            primary: Some("p".into()),
            positions: Positions::default(),
            lag: Some(lag),
            ready: true,
            problem: None,
            ..NodeState::default()
        }
    }

    #[tokio::test]
    async fn state_carries_over_and_parameters_are_replaced() {
        let (_tx, state) = watch::channel(replica(Duration::from_millis(700)));
        let old = Proxy::new(
            params("a", Duration::from_secs(1), Duration::from_secs(10)),
            state.clone(),
            Demand::default(),
            Arc::new(NoProbe),
            Arc::new(Metrics::new(&[], "test")),
            Draining::default(),
            SharedHealth::default(),
        );
        // Fresh under max_lag 1 s (700 ms behind: under the 0.8 s a stale replica must reach).
        assert!(old.shared.freshness.observe(&state.borrow()));
        let agent_view = old.health_view().clone();

        let new = old.reconfigured(params(
            "renamed",
            Duration::from_secs(2),
            Duration::from_secs(3),
        ));
        assert_eq!(new.params().max_lag, Duration::from_secs(2));
        // The node's name belongs to the running node.
        assert_eq!(&*new.params().node, "a");
        assert!(Arc::ptr_eq(&old.shared.breakers, &new.shared.breakers));
        assert!(Arc::ptr_eq(old.metrics(), new.metrics()));
        // health.max_lag changed for every holder of the view, the agent listener's included.
        assert_eq!(agent_view.max_lag(), Duration::from_secs(3));
        // Freshness carried over: 1.7 s is under the new 2 s but over its recovery point
        // (1.6 s), so only a replica that was fresh stays fresh.
        assert!(new
            .shared
            .freshness
            .observe(&replica(Duration::from_millis(1_700))));

        // Nothing keeps the old proxy alive once its last user is gone.
        let old_shared = Arc::downgrade(&old.shared);
        drop(old);
        assert!(old_shared.upgrade().is_none());
    }
}
