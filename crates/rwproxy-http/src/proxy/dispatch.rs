//! Carrying a routing decision out: to the local app, or streamed to the primary's rwproxy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use rwproxy_core::{ErrorCode, Reason, RequestClass, Token};

use super::{Outcome, Proxy, RequestId};
use crate::body::Body;
use crate::respond::RWPROXY_ROUTE;
use crate::upstream::headers::{prepare_request, prepare_response, ClientInfo, FORWARDED_BY};
use crate::upstream::{SendError, Target};

/// Pause between attempts while the primary refuses connections and no new one is known.
const PRIMARY_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What to do about the consistency token on the way back.
#[derive(Debug)]
pub(super) enum TokenAction<'a> {
    /// Nothing.
    None,
    /// A write served by the primary's app: issue the new positions.
    IssueAfterWrite,
    /// A read on the primary carrying this token: if the token is ahead of the primary itself
    /// (a restored database, another cluster's cookie), replace it so replicas stop waiting.
    ResetIfAhead(&'a Token),
}

impl Proxy {
    pub(super) async fn to_app(
        &self,
        request: Request<Incoming>,
        client: ClientInfo,
        class: RequestClass,
        reason: Reason,
        on_primary: bool,
        token: Option<&Token>,
    ) -> Outcome {
        let (mut parts, body) = request.into_parts();
        if prepare_request(&mut parts, client, &self.inner.hop).is_err() {
            return Outcome::rejected(class, ErrorCode::BadRequest);
        }
        // Internal routing headers are for rwproxy, not for the app.
        parts.headers.remove(&FORWARDED_BY);
        let action = match (on_primary, class, token) {
            (true, RequestClass::Write, _) => TokenAction::IssueAfterWrite,
            (true, RequestClass::Read, Some(t)) => TokenAction::ResetIfAhead(t),
            _ => TokenAction::None,
        };
        self.send_to_app(
            Request::from_parts(parts, Body::stream(body)),
            class,
            reason,
            action,
            client.tls,
        )
        .await
    }

    /// Sends an already prepared request to the local app.
    async fn send_to_app(
        &self,
        request: Request<Body>,
        class: RequestClass,
        reason: Reason,
        action: TokenAction<'_>,
        tls: bool,
    ) -> Outcome {
        let inner = &*self.inner;
        let params = &inner.params;
        let request_id = request.extensions().get::<RequestId>().cloned();
        let request_id = request_id.as_ref().map_or("-", RequestId::as_str);
        match inner
            .pool
            .send(
                &inner.app,
                request,
                params.connect_timeout,
                params.app_connect_retry,
            )
            .await
        {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                prepare_response(&mut parts);
                match action {
                    TokenAction::None => {}
                    TokenAction::IssueAfterWrite => {
                        let positions = self.current_positions().await;
                        params
                            .consistency
                            .issue(&mut parts.headers, &positions, tls);
                    }
                    TokenAction::ResetIfAhead(token) => {
                        let snapshot_ahead = token.is_ahead_of(&inner.state.borrow().positions);
                        if snapshot_ahead {
                            let positions = self.current_positions().await;
                            if token.is_ahead_of(&positions) {
                                tracing::info!(
                                    request_id,
                                    "client token is ahead of the primary; replacing it"
                                );
                                params
                                    .consistency
                                    .issue(&mut parts.headers, &positions, tls);
                            }
                        }
                    }
                }
                self.route_header(&mut parts.headers, "local", reason);
                Outcome {
                    response: Response::from_parts(parts, body),
                    class: Some(class),
                    route: "local",
                    reason,
                }
            }
            Err(SendError::Connect { error, .. }) => {
                tracing::warn!(request_id, app = %inner.app.authority, %error, "local app unreachable");
                Outcome::rejected(class, ErrorCode::AppUnreachable)
            }
            Err(SendError::Sent(error)) => {
                tracing::warn!(request_id, app = %inner.app.authority, %error, "local app failed mid-request");
                Outcome::rejected(class, ErrorCode::AppUnreachable)
            }
        }
    }

    /// The positions right now: from the probe, else the last published state.
    async fn current_positions(&self) -> rwproxy_core::Positions {
        match self.inner.probe.current().await {
            Some(positions) => positions,
            None => self.inner.state.borrow().positions.clone(),
        }
    }

    pub(super) async fn to_primary(
        &self,
        request: Request<Incoming>,
        client: ClientInfo,
        class: RequestClass,
        reason: Reason,
        primary: Arc<str>,
    ) -> Outcome {
        let inner = &*self.inner;
        let (mut parts, body) = request.into_parts();
        if prepare_request(&mut parts, client, &inner.hop).is_err() {
            return Outcome::rejected(class, ErrorCode::BadRequest);
        }
        parts
            .headers
            .insert(FORWARDED_BY.clone(), inner.hop.node().clone());
        self.forward(
            Request::from_parts(parts, Body::stream(body)),
            class,
            reason,
            primary,
            client.tls,
        )
        .await
    }

    /// Streams a prepared request to the primary's rwproxy. A write whose connection could not
    /// be made provably never left this node, so it follows the primary (to a new one, or to
    /// this node's own app if this node was promoted) until `writes.primary_wait` runs out.
    async fn forward(
        &self,
        mut request: Request<Body>,
        class: RequestClass,
        reason: Reason,
        mut primary: Arc<str>,
        tls: bool,
    ) -> Outcome {
        let inner = &*self.inner;
        let params = &inner.params;
        let deadline = Instant::now() + params.primary_wait;
        let request_id = request.extensions().get::<RequestId>().cloned();
        let request_id = request_id.as_ref().map_or("-", RequestId::as_str);
        loop {
            let Some(authority) = params.primary_url.authority(&primary) else {
                tracing::error!(request_id, %primary, "writes.primary_url gives no valid URL for this primary");
                return Outcome::rejected(class, ErrorCode::PrimaryUnreachable);
            };
            let target = Target::http(authority);
            let started = Instant::now();
            let sent = tokio::time::timeout(
                params.write_timeout,
                inner
                    .pool
                    .send(&target, request, params.connect_timeout, Duration::ZERO),
            )
            .await;
            let error = match sent {
                Err(_) => {
                    tracing::warn!(request_id, %primary, timeout_ms = params.write_timeout.as_millis() as u64, "primary did not answer in time");
                    return Outcome::rejected(class, ErrorCode::PrimaryTimeout);
                }
                Ok(Ok(response)) => {
                    inner.metrics.forwarded(started.elapsed());
                    inner.metrics.primary_reachable(true);
                    let (mut parts, body) = response.into_parts();
                    prepare_response(&mut parts);
                    self.route_header(&mut parts.headers, "primary", reason);
                    let response = Response::from_parts(parts, body);
                    return Outcome {
                        response,
                        class: Some(class),
                        route: "primary",
                        reason,
                    };
                }
                Ok(Err(SendError::Sent(error))) => {
                    // Connected, then failed: the primary was reachable.
                    inner.metrics.primary_reachable(true);
                    tracing::warn!(request_id, %primary, %error, "connection to the primary failed after the request was sent");
                    return Outcome::rejected(class, ErrorCode::PrimaryFailed);
                }
                Ok(Err(SendError::Connect {
                    error,
                    request: back,
                })) => {
                    request = *back;
                    error
                }
            };
            inner.metrics.primary_reachable(false);
            tracing::warn!(request_id, %primary, %error, "primary unreachable");
            if class != RequestClass::Write || Instant::now() >= deadline {
                return Outcome::rejected(class, ErrorCode::PrimaryUnreachable);
            }
            // Wait for news (a hand-off) or a short pause, then follow the current primary.
            let mut changes = inner.state.clone();
            let pause = PRIMARY_RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now()));
            let _ = tokio::time::timeout(pause, changes.changed()).await;
            let (promoted, next) = {
                let state = inner.state.borrow();
                (state.is_primary(), state.remote_primary().cloned())
            };
            if promoted {
                tracing::info!(
                    request_id,
                    "this node became primary while a write waited; serving it locally"
                );
                request.headers_mut().remove(&FORWARDED_BY);
                return self
                    .send_to_app(
                        request,
                        class,
                        Reason::Write,
                        TokenAction::IssueAfterWrite,
                        tls,
                    )
                    .await;
            }
            if let Some(next) = next {
                primary = next;
            }
        }
    }

    pub(super) fn route_header(
        &self,
        headers: &mut http::HeaderMap,
        route: &'static str,
        reason: Reason,
    ) {
        if !self.inner.params.route_header {
            return;
        }
        let value = match (route, reason) {
            ("local", Reason::Normal) => "local",
            ("local", Reason::Waited) => "local; reason=waited",
            ("local", Reason::Stale) => "local; reason=stale",
            ("primary", Reason::Write) => "primary; reason=write",
            ("primary", Reason::Stale) => "primary; reason=stale",
            ("primary", Reason::ConsistencyTimeout) => "primary; reason=consistency-timeout",
            ("primary", _) => "primary",
            _ => route,
        };
        headers.insert(RWPROXY_ROUTE.clone(), HeaderValue::from_static(value));
    }
}
