//! The request pipeline: health, classification, the consistency wait, the routing decision,
//! and carrying the decision out.

mod admission;
mod answers;
mod dispatch;
mod forward;
mod request_id;
mod upgrade;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper::body::Incoming;
use rwproxy_core::{
    decide, Demand, ErrorCode, NodeState, Reason, RequestClass, Route, RouteInput, Token, WaitState,
};
use tokio::sync::watch;

use crate::body::Body;
use crate::consistency::{self, PositionProbe};
use crate::freshness::Freshness;
use crate::health::{HealthView, SharedHealth};
use crate::metrics::Metrics;
use crate::params::ProxyParams;
use crate::respond;
use crate::upstream::breaker::{BreakerConfig, Breakers};
use crate::upstream::headers::{ClientInfo, HopIdentity};
use crate::upstream::pool::PoolConfig;
use crate::upstream::{Pool, Target};

pub use request_id::{RequestId, RequestIds, X_REQUEST_ID};

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

/// The proxy: cheap to clone, one per listener connection.
#[derive(Clone, Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    params: ProxyParams,
    state: watch::Receiver<NodeState>,
    /// Connections to the local app, capped at `proxy.app_max_connections`.
    app_pool: Pool,
    /// Connections to primaries' rwproxies.
    primary_pool: Pool,
    breakers: Breakers,
    app: Target,
    hop: HopIdentity,
    freshness: Freshness,
    demand: Demand,
    probe: Arc<dyn PositionProbe>,
    metrics: Arc<Metrics>,
    health: HealthView,
    request_ids: RequestIds,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("node", &self.params.node)
            .finish_non_exhaustive()
    }
}

/// What the pipeline did with one request, for metrics and the access log.
struct Outcome {
    response: Response<Body>,
    class: Option<RequestClass>,
    route: &'static str,
    reason: Reason,
}

impl Outcome {
    fn rejected(class: RequestClass, code: ErrorCode) -> Self {
        Outcome {
            response: respond::error(code),
            class: Some(class),
            route: "rejected",
            reason: Reason::Normal,
        }
    }
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
        let inner = Inner {
            request_ids: RequestIds::new(),
            health,
            app: Target::http(params.app.clone()),
            hop: HopIdentity::new(&params.node),
            freshness: Freshness::new(params.max_lag),
            app_pool: Pool::new(PoolConfig {
                max_per_target: params.app_max_connections,
                queue_timeout: params.app_queue_timeout,
                ..PoolConfig::default()
            }),
            primary_pool: Pool::with_tls(PoolConfig::default(), params.upstream_tls.clone()),
            breakers: Breakers::new(BreakerConfig::default()),
            params,
            state,
            demand,
            probe,
            metrics,
        };
        Proxy {
            inner: Arc::new(inner),
        }
    }

    /// Handles one client request. Never fails: every problem becomes a response.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: ClientInfo,
    ) -> Response<Body> {
        let started = Instant::now();
        let metrics = &self.inner.metrics;
        let in_flight = metrics.track_in_flight();
        // One id per request, the client's own when it sent a sane one: it travels to the app
        // and to the primary (whose rwproxy keeps it), and comes back in the response.
        let request_id = self.inner.request_ids.assign(request.headers_mut());
        let method = request.method().clone();
        let path = self
            .inner
            .params
            .access_log
            .then(|| request.uri().path().to_owned());
        let client_upgrade = upgrade::take(&mut request);
        let client_ip = client.ip;
        // Boxed: the pipeline future is several KiB, and hyper and the service wrappers move the
        // request future by value a few times per request; a box makes those moves cheap.
        let mut outcome = Box::pin(self.pipeline(request, client)).await;
        let idle = self.inner.params.upgrade_idle_timeout;
        upgrade::finish(client_upgrade, &mut outcome, idle);
        let elapsed = started.elapsed();
        drop(in_flight);
        outcome
            .response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), request_id.header_value().clone());
        let status = outcome.response.status();
        if let Some(class) = outcome.class {
            metrics.request(class, outcome.route, status, elapsed);
        }
        // Only rwproxy's own refusals count as its errors (a primary's are counted there).
        if outcome.route == "rejected" {
            if let Some(code) = outcome
                .response
                .headers()
                .get(&respond::RWPROXY_ERROR)
                .and_then(|v| v.to_str().ok())
                .and_then(ErrorCode::from_code)
            {
                metrics.error(code);
            }
        }
        if let Some(path) = path {
            tracing::info!(
                target: "rwproxy::access",
                request_id = %request_id,
                %method,
                path,
                class = outcome.class.map_or("health", RequestClass::as_str),
                route = outcome.route,
                reason = outcome.reason.as_str(),
                status = status.as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                client = %client_ip,
            );
        }
        outcome.response
    }

    async fn pipeline(&self, mut request: Request<Incoming>, client: ClientInfo) -> Outcome {
        let inner = &*self.inner;
        let params = &inner.params;
        if request.uri().path() == params.health.path
            && matches!(*request.method(), Method::GET | Method::HEAD)
        {
            return Outcome {
                response: self.health(&request),
                class: None,
                route: "local",
                reason: Reason::Normal,
            };
        }
        let class = params
            .classifier
            .classify(request.method(), request.uri().path());
        // Request hygiene (`crate::hygiene`): refused heads never reach an app or a primary.
        if let Err(refusal) = admission::hygiene(&mut request, params.allow_underscores_in_headers)
        {
            return admission::refuse(request, class, refusal).await;
        }
        if let Some(max) = params.max_body {
            if admission::declared_length(request.headers()).is_some_and(|n| n > max) {
                return Outcome::rejected(class, ErrorCode::TooLarge);
            }
        }
        let forwarded =
            admission::forwarded_by_a_node(request.headers(), params.forward_secret.as_ref());
        let token = match class {
            RequestClass::Read => params.consistency.token_from(request.headers()),
            _ => None,
        };

        let mut state_rx = inner.state.clone();
        let mut wait = WaitState::Satisfied;
        let mut waited_for_primary = false;
        let mut token_checked = false;
        let mut demotion_seen = false;
        loop {
            let (route, primary, is_primary) = {
                let state = state_rx.borrow_and_update();
                let fresh = inner.freshness.observe(&state);
                if !token_checked {
                    token_checked = true;
                    if token
                        .as_ref()
                        .is_some_and(|t| !state.is_primary() && !state.has_reached(t))
                    {
                        wait = WaitState::Behind;
                    }
                }
                let input = RouteInput {
                    class,
                    state: &state,
                    fresh,
                    forwarded,
                    wait,
                    waited_for_primary,
                };
                (
                    decide(input, &params.policy),
                    state.remote_primary().cloned(),
                    state.is_primary(),
                )
            };
            match route {
                Route::AwaitPosition => {
                    let Some(token) = token.as_ref() else {
                        wait = WaitState::Satisfied;
                        continue;
                    };
                    wait = self.wait_for_position(token, &mut state_rx).await;
                }
                Route::AwaitPrimary => {
                    let found = tokio::time::timeout(
                        params.primary_wait,
                        state_rx.wait_for(|s| s.is_primary() || s.remote_primary().is_some()),
                    )
                    .await;
                    waited_for_primary = true;
                    if !matches!(found, Ok(Ok(_))) {
                        tracing::warn!(
                            request_id = RequestId::of(&request)
                                .as_ref()
                                .map_or("-", RequestId::as_str),
                            wait_ms = params.primary_wait.as_millis() as u64,
                            "no primary known; write refused"
                        );
                    }
                }
                Route::Local(reason) => {
                    if class == RequestClass::Write
                        && is_primary
                        && inner.probe.confirms_primary().await == Some(false)
                    {
                        // Demoted since the last poll: never let the write reach this app.
                        // Wait for the source to publish the new state, then route again.
                        if demotion_seen {
                            return Outcome::rejected(class, ErrorCode::NoPrimary);
                        }
                        demotion_seen = true;
                        tracing::info!(
                            "the source no longer says this node is primary; re-routing the write"
                        );
                        let _ = tokio::time::timeout(
                            params.primary_wait,
                            state_rx.wait_for(|s| !s.is_primary()),
                        )
                        .await;
                        continue;
                    }
                    return self
                        .to_app(request, client, class, reason, is_primary, token.as_ref())
                        .await;
                }
                Route::Primary(reason) => {
                    let Some(primary) = primary else {
                        return Outcome::rejected(class, ErrorCode::NoPrimary);
                    };
                    // This arm and the next two are boxed: their futures are larger than
                    // `to_app`'s, and inline they would size every request's future.
                    return Box::pin(self.to_primary(request, client, class, reason, primary))
                        .await;
                }
                Route::Replay => {
                    return Box::pin(self.replay(request, client, class, primary)).await
                }
                Route::Redirect => {
                    return Box::pin(self.redirect(request, client, class, primary)).await
                }
                Route::Reject(code) => {
                    return admission::drain_then_reject(request, class, code).await
                }
            }
        }
    }

    async fn wait_for_position(
        &self,
        token: &Token,
        state: &mut watch::Receiver<NodeState>,
    ) -> WaitState {
        let inner = &*self.inner;
        let started = Instant::now();
        let outcome =
            consistency::wait_for_token(token, state, &inner.demand, &inner.params.consistency)
                .await;
        inner
            .metrics
            .consistency_wait(started.elapsed(), outcome == WaitState::TimedOut);
        outcome
    }

    fn health(&self, request: &Request<Incoming>) -> Response<Body> {
        self.inner
            .health
            .respond(request.method(), request.uri().query())
    }

    /// This node's health, as the health endpoints answer it.
    pub fn health_view(&self) -> &HealthView {
        &self.inner.health
    }

    /// The proxy's metrics (shared with the admin listener).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Idle pooled connections to the local app (for tests and metrics).
    pub fn idle_app_connections(&self) -> usize {
        self.inner.app_pool.idle_count(&self.inner.app)
    }

    /// Idle pooled connections: `(to the local app, to primaries)`.
    pub fn idle_connections(&self) -> (usize, usize) {
        (
            self.inner.app_pool.idle_total(),
            self.inner.primary_pool.idle_total(),
        )
    }

    /// Requests waiting for a connection to the local app (`proxy.app_max_connections` open).
    pub fn queued_for_app(&self) -> usize {
        self.inner.app_pool.queued_total()
    }

    /// How long forwarded requests may take.
    pub fn write_timeout(&self) -> Duration {
        self.inner.params.write_timeout
    }
}
