//! One running rwproxy node: the cluster source, the proxy listener, the admin listener and the
//! task that mirrors state changes into metrics and logs. Used by `run`, `demo` and the tests.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use rwproxy_cluster::{ClusterHandle, HttpSpec, LitefsSpec, SourceSpec};
use rwproxy_core::{Classifier, Demand, NodeState, Role, RoutePolicy};
use rwproxy_http::health::{
    self, AppCheck, HealthStatus, HealthTracker, Observation, SharedHealth,
};
use rwproxy_http::{
    serve, serve_with_tls, Admin, ConsistencyParams, Draining, HealthParams, ListenerLimits,
    Metrics, PrimaryUrl, Proxy, ProxyParams,
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
    agent_addr: Option<SocketAddr>,
    state: watch::Receiver<NodeState>,
    draining: Draining,
    demand: Demand,
    drain_delay: std::time::Duration,
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
    /// `proxy.listen` and `admin.listen` are then ignored). The agent listener, when
    /// configured, is bound here; [`Node::agent_addr`] says where.
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
        let health_view = proxy.health_view().clone();
        let admin = Admin {
            proxy: proxy.clone(),
            demand: demand.clone(),
        };

        let proxy_addr = listener.local_addr()?;
        let mut servers = Vec::new();
        let handler = move |request, client| {
            let proxy = proxy.clone();
            async move { proxy.handle(request, client).await }
        };
        let drain = config.proxy.drain_timeout;
        let limits = ListenerLimits {
            header_read_timeout: config.proxy.header_timeout,
            max_connections: config.proxy.max_connections,
            ..ListenerLimits::default()
        };
        let tls = crate::tls::server_tls(config)?;
        servers.push(tokio::spawn(serve_with_tls(
            listener,
            handler,
            limits,
            tls,
            stop.clone().cancelled_owned(),
            drain,
        )));

        let mut admin_addr = None;
        if let Some(listener) = admin_listener {
            admin_addr = Some(listener.local_addr()?);
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
        let mut agent_addr = None;
        if let Some(addr) = config.admin.agent_listen {
            let listener = TcpListener::bind(addr).await?;
            agent_addr = Some(listener.local_addr()?);
            servers.push(tokio::spawn(health::serve_agent(
                listener,
                health_view,
                stop.clone().cancelled_owned(),
            )));
        }
        if let Some(check) = app_check {
            tokio::spawn(health::run_app_check(
                check,
                config.health.app_interval,
                config.health.fall,
                shared_health.clone(),
                stop.clone().cancelled_owned(),
            ));
        }
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
        tracing::info!(%proxy_addr, admin = ?admin_addr, agent = ?agent_addr, app = %config.proxy.app, source = config.cluster.source.name(), "rwproxy started");
        Ok(Node {
            proxy_addr,
            admin_addr,
            agent_addr,
            state,
            draining,
            demand,
            drain_delay: config.proxy.drain_delay,
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

    /// Where the HAProxy agent-check listener accepts, if enabled (`admin.agent_listen`).
    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent_addr
    }

    /// The node's cluster state.
    pub fn state(&self) -> watch::Receiver<NodeState> {
        self.state.clone()
    }

    /// Reads waiting for this node to reach their token right now.
    pub fn waiting_reads(&self) -> usize {
        self.demand.active()
    }

    /// Turns health to `draining` (503, agent `drain`) while still serving, so the edge can move
    /// traffic away before [`Node::shutdown`] stops accepting (a pre-stop hook's job).
    pub fn drain(&self) {
        self.draining.start();
    }

    /// Turns health to `draining`, stops accepting, lets in-flight requests finish (bounded by
    /// `proxy.drain_timeout`) and returns when every listener has stopped.
    pub async fn shutdown(self) {
        self.draining.start();
        if !self.drain_delay.is_zero() {
            // Give the edge time to see `draining` on its next health checks and move traffic
            // away while this node still answers.
            tracing::info!(
                delay_ms = self.drain_delay.as_millis() as u64,
                "draining: health reports 503 before the listeners stop"
            );
            tokio::time::sleep(self.drain_delay).await;
        }
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
        max_body: config.proxy.max_body,
        forward_secret: match &config.cluster.secret {
            Some(secret) => Some(
                http::HeaderValue::from_str(secret)
                    .map_err(|_| invalid("cluster.secret is not a valid header value".into()))?,
            ),
            None => None,
        },
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
        upstream_tls: crate::tls::upstream_tls(config)?,
        upgrade_idle_timeout: config.proxy.upgrade_idle_timeout,
    })
}

/// The app check for `health.app_path`, if configured.
fn app_check(config: &Config) -> io::Result<Option<AppCheck>> {
    let Some(path) = &config.health.app_path else {
        return Ok(None);
    };
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let app = config
        .proxy
        .app
        .authority()
        .cloned()
        .ok_or_else(|| invalid("proxy.app has no host".into()))?;
    let path = path
        .parse()
        .map_err(|_| invalid(format!("health.app_path: invalid path {path:?}")))?;
    Ok(Some(AppCheck::new(app, path, config.health.app_timeout)))
}

/// What the state-watch task works with.
struct Watch {
    node: Arc<str>,
    metrics: Arc<Metrics>,
    draining: Draining,
    max_lag: Duration,
    tracker: HealthTracker,
    shared: SharedHealth,
}

/// The role and primary last logged.
#[derive(Clone, PartialEq)]
struct RoleView {
    role: Role,
    primary: Option<Arc<str>>,
}

/// Feeds every state change and a periodic tick into the health tracker, mirrors the state and
/// the debounced verdict into the gauges, and logs role, primary and health changes once each.
async fn watch_state(mut w: Watch, mut state: watch::Receiver<NodeState>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(health::TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick would complete at once; observations come from changes and later ticks.
    ticker.reset();
    // Starting up unknown is not news; the cluster source logs why the state is unknown.
    let mut logged_health = HealthStatus::Unknown;
    let mut logged_role: Option<RoleView> = None;
    let mut kind = Observation::Change;
    loop {
        let (reported, role, lag) = {
            let current = state.borrow_and_update();
            let observed = health::evaluate_with_app(
                &current,
                w.max_lag,
                w.draining.is_draining(),
                w.shared.app(),
            );
            let reported = w.tracker.observe(observed, kind);
            w.metrics.state(&current, reported == HealthStatus::Ok);
            let role = RoleView {
                role: current.role,
                primary: current.primary.clone(),
            };
            (reported, role, current.lag)
        };
        if logged_role.as_ref() != Some(&role) {
            let before = logged_role.as_ref().and_then(|r| r.primary.as_ref());
            if role.primary.is_some() && role.primary.as_ref() != before {
                // A new primary gets a fresh chance: an old one's connect failure says nothing
                // about it.
                w.metrics.primary_reachable(true);
            }
            log_role_change(&w.node, logged_role.as_ref(), &role);
            logged_role = Some(role);
        }
        if reported != logged_health {
            log_health_change(&w, reported, lag);
            logged_health = reported;
        }
        kind = tokio::select! {
            changed = state.changed() => match changed {
                Ok(()) => Observation::Change,
                Err(_) => return,
            },
            _ = ticker.tick() => Observation::Tick,
            () = stop.cancelled() => {
                w.metrics.state(&state.borrow(), false);
                return;
            }
        }
    }
}

fn log_role_change(node: &str, before: Option<&RoleView>, now: &RoleView) {
    let was_primary = before.is_some_and(|b| b.role == Role::Primary);
    let had_primary = before.and_then(|b| b.primary.clone());
    match now.role {
        Role::Primary if !was_primary => {
            tracing::info!(node, "became primary: writes go to the local app")
        }
        Role::Primary => {}
        Role::Replica => {
            if was_primary {
                tracing::warn!(node, "no longer primary: writes leave this node");
            }
            match &now.primary {
                Some(primary) if had_primary.as_ref() != Some(primary) => {
                    tracing::info!(node, %primary, "following primary");
                }
                Some(_) => {}
                None if had_primary.is_some() || was_primary || before.is_none() => {
                    tracing::warn!(
                        node,
                        "lost the primary: writes wait for one, then get 503 no-primary"
                    );
                }
                None => {}
            }
        }
        // The cluster source logs why the state is unknown.
        Role::Unknown if was_primary => {
            tracing::warn!(node, "no longer primary: cluster state unknown");
        }
        Role::Unknown => {}
    }
}

fn log_health_change(w: &Watch, reported: HealthStatus, lag: Option<Duration>) {
    let node = &*w.node;
    let lag_ms = lag.map(|l| l.as_millis() as u64);
    let max_lag_ms = w.max_lag.as_millis() as u64;
    match reported {
        HealthStatus::Ok => tracing::info!(node, lag_ms, "healthy: health answers 200"),
        HealthStatus::Lagging => tracing::warn!(
            node,
            lag_ms,
            max_lag_ms,
            "replication lag over health.max_lag: unhealthy (lagging)"
        ),
        status => tracing::warn!(
            node,
            status = status.as_str(),
            lag_ms,
            "unhealthy: health answers 503"
        ),
    }
}
