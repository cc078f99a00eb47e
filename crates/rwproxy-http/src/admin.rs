//! The admin listener: `/metrics`, `/health` and `/status`.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rwproxy_core::NodeState;
use tokio::sync::watch;

use crate::body::Body;
use crate::health;
use crate::metrics::Metrics;
use crate::proxy::Draining;
use crate::respond;

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct Admin {
    /// This node's name.
    pub node: Arc<str>,
    /// The cluster state.
    pub state: watch::Receiver<NodeState>,
    /// The proxy's metrics.
    pub metrics: Arc<Metrics>,
    /// Shutdown flag.
    pub draining: Draining,
    /// Health threshold.
    pub health_max_lag: std::time::Duration,
    /// Reads waiting for a position (read when metrics are scraped, so a client that hung up
    /// is never counted).
    pub demand: rwproxy_core::Demand,
}

impl Admin {
    /// Answers one admin request.
    pub fn handle(&self, request: &Request<Incoming>) -> Response<Body> {
        let method = request.method();
        if !matches!(*method, Method::GET | Method::HEAD) {
            return respond::plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "GET or HEAD only\n",
            );
        }
        match request.uri().path() {
            "/metrics" => {
                self.metrics.consistency_waiting(self.demand.active());
                respond::plain(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.metrics.render(),
                )
            }
            "/health" | "/status" => {
                let state = self.state.borrow();
                health::respond(
                    method,
                    request.uri().query(),
                    &self.node,
                    &state,
                    self.health_max_lag,
                    self.draining.is_draining(),
                )
            }
            _ => respond::plain(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found; try /health or /metrics\n",
            ),
        }
    }
}
