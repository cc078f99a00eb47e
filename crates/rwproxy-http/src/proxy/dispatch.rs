//! Carrying a routing decision out: to the local app, or streamed to the primary's rwproxy.

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use rwproxy_core::{ErrorCode, Reason, RequestClass, Token};

use super::{Outcome, Proxy, RequestId};
use crate::body::Body;
use crate::respond::RWPROXY_ROUTE;
use crate::session::{token_for_read, SessionMode};
use crate::upstream::headers::{
    prepare_request, prepare_response, ClientInfo, FORWARDED_BY, FORWARD_SECRET, X_FORWARDED_PROTO,
};
use crate::upstream::SendError;

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
    /// `consistency.session = "reads-too"`: a read served here earns the client this node's
    /// positions when they are newer than its token ([`crate::session::token_for_read`]).
    IssueForRead {
        token: Option<&'a Token>,
        on_primary: bool,
    },
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
        if prepare_request(&mut parts, &client, &self.inner.hop).is_err() {
            return Outcome::rejected(class, ErrorCode::BadRequest);
        }
        // Internal routing headers are for rwproxy, not for the app.
        parts.headers.remove(&FORWARDED_BY);
        parts.headers.remove(&FORWARD_SECRET);
        let reads_too = self.inner.params.consistency.session == SessionMode::ReadsToo;
        let action = match (on_primary, class, token) {
            (true, RequestClass::Write, _) => TokenAction::IssueAfterWrite,
            (_, RequestClass::Read, _) if reads_too => {
                TokenAction::IssueForRead { token, on_primary }
            }
            (true, RequestClass::Read, Some(t)) => TokenAction::ResetIfAhead(t),
            _ => TokenAction::None,
        };
        // Only a token needs it: TLS here, or TLS terminated in front of rwproxy (an edge such
        // as Fly's says so in X-Forwarded-Proto; a client that lies only makes its own cookie
        // https-only).
        let secure = !matches!(action, TokenAction::None)
            && (client.tls
                || parts
                    .headers
                    .get(&X_FORWARDED_PROTO)
                    .is_some_and(|p| p == "https"));
        self.send_to_app(
            Request::from_parts(parts, Body::limited(body, self.inner.params.max_body)),
            class,
            reason,
            action,
            secure,
        )
        .await
    }

    /// Sends an already prepared request to the local app.
    pub(super) async fn send_to_app(
        &self,
        request: Request<Body>,
        class: RequestClass,
        reason: Reason,
        action: TokenAction<'_>,
        tls: bool,
    ) -> Outcome {
        let inner = &*self.inner;
        let params = &inner.params;
        let request_id = RequestId::of(&request);
        let request_id = request_id.as_ref().map_or("-", RequestId::as_str);
        match inner
            .app_pool
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
                    TokenAction::IssueForRead { token, on_primary } => {
                        // Read after the app answered: an upper bound of what the read saw.
                        let served = self.current_positions().await;
                        let mode = params.consistency.session;
                        if let Some(positions) = token_for_read(mode, token, &served, on_primary) {
                            params
                                .consistency
                                .issue(&mut parts.headers, &positions, tls);
                        }
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
            Err(SendError::Saturated { .. }) => {
                tracing::warn!(
                    request_id,
                    app = %inner.app.authority,
                    queue_timeout_ms = params.app_queue_timeout.as_millis() as u64,
                    "every connection to the local app stayed busy; request refused unsent"
                );
                Outcome::rejected(class, ErrorCode::Overloaded)
            }
            Err(SendError::Sent(error)) => match crate::body::client_fault(&error) {
                // The client's body broke (malformed chunk, cut off) or outgrew the limit:
                // the client's fault, not the app's.
                Some(code) => {
                    tracing::info!(request_id, code = code.as_str(), %error, "the client's request body failed");
                    Outcome::rejected(class, code)
                }
                None => {
                    tracing::warn!(request_id, app = %inner.app.authority, %error, "local app failed mid-request");
                    Outcome::rejected(class, ErrorCode::AppUnreachable)
                }
            },
        }
    }

    /// The positions right now: from the probe, else the last published state.
    async fn current_positions(&self) -> rwproxy_core::Positions {
        match self.inner.probe.current().await {
            Some(positions) => positions,
            None => self.inner.state.borrow().positions.clone(),
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
