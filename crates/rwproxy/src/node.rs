//! One running rwproxy node: the cluster source, the proxy listener, the admin listener and the
//! task that mirrors state changes into metrics and logs. Used by `run`, `demo` and the tests.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use http::uri::Authority;
use rwproxy_cluster::{ClusterHandle, HttpSpec, LitefsSpec, SourceSpec};
use rwproxy_core::{Classifier, Demand, NodeState, RoutePolicy};
use rwproxy_http::health::{self, HealthStatus};
use rwproxy_http::{
    serve, Admin, ConsistencyParams, Draining, HealthParams, ListenerLimits, Metrics, PrimaryUrl,
    Proxy, ProxyParams,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceConfig};
use crate::probe;

/// A started node. Dropping it does not stop it; call [`Node::shutdown`].
#[derive(Debug)]
pub struct Node {
    proxy_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    state: watch::Receiver<NodeState>,
    draining: Draining,
    stop: CancellationToken,
    servers: Vec<JoinHandle<()>>,
    _cluster: ClusterHandle,
}

impl Node {
    /// Binds the listeners and starts every task. Fails only when a listener cannot be bound or
    /// the configuration cannot be mapped (which `check` would have reported).
    pub async fn start(config: &Config) -> io::Result<Node> {
        let proxy = TcpListener::bind(config.proxy.listen).await?;
        let admin = match config.admin.listen {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Self::start_on(config, proxy, admin).await
    }

    /// Like [`Node::start`] on listeners bound already (tests bind first to learn their ports;
    /// `proxy.listen` and `admin.listen` are then ignored).
    pub async fn start_on(
        config: &Config,
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
    ) -> io::Result<Node> {
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
        let draining = Draining::default();
        let stop = CancellationToken::new();
        let params = proxy_params(config, node.clone(), databases)?;
        let proxy = Proxy::new(
            params,
            state.clone(),
            demand.clone(),
            probe,
            metrics.clone(),
            draining.clone(),
        );

        let proxy_addr = listener.local_addr()?;
        let mut servers = Vec::new();
        let handler = move |request, client| {
            let proxy = proxy.clone();
            async move { proxy.handle(request, client).await }
        };
        let drain = config.proxy.drain_timeout;
        let limits = ListenerLimits::default();
        servers.push(tokio::spawn(serve(
            listener,
            handler,
            limits,
            stop.clone().cancelled_owned(),
            drain,
        )));

        let mut admin_addr = None;
        if let Some(listener) = admin_listener {
            admin_addr = Some(listener.local_addr()?);
            let admin = Admin {
                node: node.clone(),
                state: state.clone(),
                metrics: metrics.clone(),
                draining: draining.clone(),
                health_max_lag: config.health.max_lag,
                demand: demand.clone(),
            };
            let handler = move |request: http::Request<hyper::body::Incoming>, _client| {
                let response = admin.handle(&request);
                async move { response }
            };
            // The admin listener stays up while the proxy drains, so probes see `draining`.
            servers.push(tokio::spawn(serve(
                listener,
                handler,
                limits,
                stop.clone().cancelled_owned(),
                drain,
            )));
        }
        tokio::spawn(watch_state(
            node,
            state.clone(),
            metrics,
            draining.clone(),
            config.health.max_lag,
            stop.clone(),
        ));
        tracing::info!(%proxy_addr, admin = ?admin_addr, app = %config.proxy.app, source = config.cluster.source.name(), "rwproxy started");
        Ok(Node {
            proxy_addr,
            admin_addr,
            state,
            draining,
            stop,
            servers,
            _cluster: cluster,
        })
    }

    /// Where the proxy listener accepts clients.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where the admin listener accepts, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The node's cluster state.
    pub fn state(&self) -> watch::Receiver<NodeState> {
        self.state.clone()
    }

    /// Turns health to `draining`, stops accepting, lets in-flight requests finish (bounded by
    /// `proxy.drain_timeout`) and returns when every listener has stopped.
    pub async fn shutdown(self) {
        self.draining.start();
        self.stop.cancel();
        for server in self.servers {
            let _ = server.await;
        }
    }
}

fn source_spec(config: &Config) -> SourceSpec {
    let databases = config.cluster.databases.clone();
    match &config.cluster.source {
        SourceConfig::Static { primary } => SourceSpec::Static {
            primary: primary.clone(),
        },
        SourceConfig::Litefs { mount, api, poll } => SourceSpec::Litefs(LitefsSpec {
            mount: mount.clone(),
            databases,
            api: api
                .as_ref()
                .map(|u| u.to_string().trim_end_matches('/').to_owned()),
            poll: *poll,
        }),
        SourceConfig::Http { url, poll, timeout } => SourceSpec::Http(HttpSpec {
            url: url.to_string(),
            poll: *poll,
            timeout: *timeout,
            databases,
        }),
    }
}

fn proxy_params(
    config: &Config,
    node: Arc<str>,
    databases: Vec<Arc<str>>,
) -> io::Result<ProxyParams> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let app: Authority = config
        .proxy
        .app
        .authority()
        .cloned()
        .ok_or_else(|| invalid("proxy.app has no host".into()))?;
    let classifier = Classifier::new(
        config.reads.methods.clone(),
        &config.routing.passthrough,
        &config.routing.always_forward,
    )
    .map_err(|e| invalid(e.to_string()))?;
    Ok(ProxyParams {
        node,
        app,
        app_connect_retry: config.proxy.app_connect_retry,
        classifier,
        policy: RoutePolicy {
            write_mode: config.writes.mode,
            when_stale: config.reads.when_stale,
            on_timeout: config.consistency.on_timeout,
        },
        primary_url: PrimaryUrl::new(config.writes.primary_url.clone()),
        primary_wait: config.writes.primary_wait,
        write_timeout: config.writes.timeout,
        connect_timeout: config.writes.connect_timeout,
        max_lag: config.reads.max_lag,
        consistency: ConsistencyParams {
            cookie: config.consistency.cookie.clone(),
            header: config.consistency.header.clone(),
            wait: config.consistency.wait,
            cookie_max_age: config.consistency.cookie_max_age,
            max_waiters: config.consistency.max_waiters,
            databases,
        },
        health: HealthParams {
            path: config.health.path.clone(),
            max_lag: config.health.max_lag,
        },
        route_header: config.reads.route_header,
        access_log: config.log.access,
    })
}

/// Mirrors every state change into the gauges, and logs role and health changes once each.
async fn watch_state(
    node: Arc<str>,
    mut state: watch::Receiver<NodeState>,
    metrics: Arc<Metrics>,
    draining: Draining,
    max_lag: std::time::Duration,
    stop: CancellationToken,
) {
    let mut last_health: Option<HealthStatus> = None;
    loop {
        let status = {
            let current = state.borrow_and_update();
            let status = health::evaluate(&current, max_lag, draining.is_draining());
            metrics.state(&current, status == HealthStatus::Ok);
            status
        };
        if last_health != Some(status) {
            if status == HealthStatus::Ok {
                tracing::info!(%node, "healthy");
            } else {
                tracing::warn!(%node, status = ?status, "unhealthy");
            }
            last_health = Some(status);
        }
        tokio::select! {
            changed = state.changed() => if changed.is_err() { return },
            () = stop.cancelled() => {
                metrics.state(&state.borrow(), false);
                return;
            }
        }
    }
}
