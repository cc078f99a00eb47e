//! The admin listener: `/metrics`, `/health` (and `/status`), `/health/agent`, `/live`, and the
//! node's history (`/events`, `/series`) and its peers (`/peers`) with the operator's page (`/`, `/ui`).

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::body::Body;
use crate::peer_auth;
use crate::proxy::Proxy;
use crate::respond;

/// What the admin endpoints read.
#[derive(Clone, Debug)]
pub struct Admin {
    /// The proxy: its health view, metrics and upstream pool.
    pub proxy: Proxy,
    /// Reads waiting for a position (read when metrics are scraped, so a client that hung up
    /// is never counted).
    pub demand: rwproxy_core::Demand,
    /// The node's recent history (`/events`, `/series`).
    pub history: crate::History,
    /// `admin.ui`: serve the operator's page on `/` and `/ui`.
    pub ui: bool,
    /// This node and its peers as peer-aware health last heard them (`/peers`).
    pub peers: crate::history::PeerTable,
}

impl Admin {
    /// Answers one admin request.
    pub fn handle<B>(&self, request: &Request<B>) -> Response<Body> {
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
                let metrics = self.proxy.metrics();
                metrics.consistency_waiting(self.demand.active());
                let (app, primary) = self.proxy.idle_connections();
                metrics.upstream_idle(app, primary);
                metrics.app_queued(self.proxy.queued_for_app());
                let (open, warm, counts) = self.proxy.primary_connections();
                metrics.primary_connections(
                    open,
                    warm,
                    counts
                        .created_warm
                        .load(std::sync::atomic::Ordering::Relaxed),
                    counts
                        .created_demand
                        .load(std::sync::atomic::Ordering::Relaxed),
                );
                metrics.primary_protocol(counts);
                respond::plain(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics.render(),
                )
            }
            "/health" => self
                .proxy
                .health_view()
                .respond(method, request.uri().query()),
            "/status" => self.status(method, request.uri().query(), request.headers()),
            // HAProxy's agent-check words, for people and scripts (HAProxy itself speaks the
            // raw TCP form on `admin.agent_listen`).
            "/health/agent" => respond::plain(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                self.proxy.health_view().agent_line(),
            ),
            // Liveness: the process runs and answers. Never tied to lag or the primary, so an
            // orchestrator does not restart a node that only needs to catch up.
            "/live" => respond::plain(StatusCode::OK, "text/plain; charset=utf-8", "live\n"),
            // The operator's page's cluster table: this node and its peers, with disagreements.
            "/peers" => respond::plain(
                StatusCode::OK,
                "application/json",
                if method == Method::HEAD {
                    Vec::new()
                } else {
                    self.peers.document()
                },
            ),
            path => match crate::history::answer(
                &self.history,
                self.ui,
                method,
                path,
                request.uri().query(),
            ) {
                Some(response) => response,
                None => respond::plain(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "not found; try /, /health, /status, /events, /series, /peers, /health/agent, /live or /metrics\n",
                ),
            },
        }
    }

    /// `/status`: the health document plus what `rwproxy status` shows beside it (version,
    /// uptime). Always `200` when answered: the verdict is in `status`, and a tool reading
    /// this must not mistake an unhealthy node for an unreachable one.
    fn status(&self, method: &Method, query: Option<&str>, headers: &HeaderMap) -> Response<Body> {
        #[derive(Serialize)]
        struct Extra {
            version: &'static str,
            uptime_seconds: f64,
        }
        let metrics = self.proxy.metrics();
        let body = if method == Method::HEAD {
            Vec::new()
        } else {
            self.proxy.health_view().document_with(
                query,
                &Extra {
                    version: metrics.version(),
                    uptime_seconds: metrics.uptime().as_secs_f64(),
                },
            )
        };
        let proof = signature(self.proxy.cluster_secret(), headers, &body);
        let mut response = respond::plain(StatusCode::OK, "application/json", body);
        if let Some(proof) = proof {
            response
                .headers_mut()
                .insert(peer_auth::PEER_PROOF.clone(), proof);
        }
        response
    }
}

/// With `cluster.secret` set, a peer's poll (it carries a nonce) gets a signed answer, so the
/// asking node knows the answer comes from a node holding the secret.
fn signature(
    secret: Option<&HeaderValue>,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<HeaderValue> {
    let secret = secret?;
    let nonce = headers.get(&peer_auth::PEER_NONCE)?;
    if nonce.len() > peer_auth::MAX_NONCE_LEN {
        return None;
    }
    let proof = peer_auth::sign(secret.as_bytes(), nonce.as_bytes(), body);
    HeaderValue::from_str(&proof).ok()
}
