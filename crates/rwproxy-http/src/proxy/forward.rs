//! Forwarding to the primary's rwproxy, and what makes it safe: a circuit breaker per primary,
//! and retries only of requests that provably reached no app.
//!
//! A write is retried against the current primary (a new one after a hand-off, or this node's
//! own app if it was promoted) until `writes.primary_wait` runs out when:
//! * its connection could not be made (the pool hands the untouched request back), or the
//!   breaker of that primary is open (nothing was sent);
//! * the old primary refused it with `loop` (it is no longer primary and passed it to no app) —
//!   only for small bodies, which are kept so they can be sent again;
//! * it failed after being sent, carries an `Idempotency-Key` and its body was kept: the app
//!   promises to apply a key once, so a second delivery is safe.
//!
//! Anything else that may have reached an app is never retried: it gets 502/504 with a code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{request, Extensions, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::BodyExt as _;
use rwproxy_core::{ErrorCode, Reason, RequestClass};

use super::chain::Chain;
use super::meta::{carry_back, prepare_head, RequestMeta};
use super::outcome::{rejected, route_header, routed};
use super::shared::Shared;
use super::RequestId;
use crate::body::{Body, BoxError};
use crate::respond::RWPROXY_ERROR;
use crate::tls::client::refused_our_certificate;
use crate::upstream::breaker::{Admission, ProbeGuard};
use crate::upstream::headers::{prepare_response, FORWARDED_BY, FORWARD_SECRET};
use crate::upstream::{SendError, Target};

/// Pause between attempts while the primary cannot be reached and no new one is known.
const PRIMARY_RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Write bodies up to this size are kept in memory so the write can be sent again.
pub(crate) const REPLAY_LIMIT: u64 = 64 * 1024;
/// The header that makes a write safe to deliver twice (the app deduplicates by it).
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// A request body on its way to the primary.
enum Payload {
    /// Kept in memory: can be sent again.
    Kept(Bytes),
    /// Streamed: can be sent once (handed back untouched only when the connect failed).
    Streamed(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Option<Body> {
        match self {
            Payload::Kept(bytes) => Some(Body::full(bytes.clone())),
            Payload::Streamed(body) => body.take(),
        }
    }

    fn is_kept(&self) -> bool {
        matches!(self, Payload::Kept(_))
    }
}

/// What one attempt came to, when it did not produce the final answer.
enum Retry {
    /// Nothing reached any app: try the current primary; when time is up, answer this code.
    Unsent(ErrorCode),
    /// The request may have reached the app but is safe to deliver again (idempotency key).
    Idempotent,
}

/// How forwarding ended.
pub(super) enum Forwarded {
    /// With this response (the primary's, or rwproxy's refusal).
    Done(Response<Body>),
    /// This node became primary while the write waited: the route serves it locally (its head
    /// is already rewritten for the hop and marked prepared in its [`RequestMeta`]).
    Promoted(Request<Body>),
}

/// The forwarder to the primary's rwproxy: the second leaf of the stack, reached through the
/// route's decision (it needs the primary's name and the reason, and may hand a write back
/// when this node was promoted, so it is a function of the route rather than a `Service`).
pub(super) async fn to_primary<B>(
    shared: &Shared,
    request: Request<B>,
    class: RequestClass,
    reason: Reason,
    primary: Arc<str>,
) -> Forwarded
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    {
        let inner = shared;
        let (mut parts, body) = request.into_parts();
        // Not sent upstream: kept aside (so the head copied for each attempt of a kept body
        // copies none), back on the response or on a request handed back when promoted.
        let extensions = std::mem::take(&mut parts.extensions);
        let meta = RequestMeta::of(&extensions);
        if prepare_head(&mut parts, meta, &extensions, &inner.hop).is_err() {
            return Forwarded::Done(rejected(class, ErrorCode::BadRequest));
        }
        let request_id = match meta.and_then(|m| m.request_id.as_ref()) {
            Some(id) => Some(id.clone()),
            None => RequestId::in_headers(&parts.headers),
        };
        parts
            .headers
            .insert(FORWARDED_BY.clone(), inner.hop.node().clone());
        if let Some(secret) = &inner.params.forward_secret {
            parts.headers.insert(FORWARD_SECRET.clone(), secret.clone());
        }
        let timeouts = Some(inner.params.body_timeouts);
        let payload = if class == RequestClass::Write && replayable(&parts, &body) {
            // Bounded in time like a streamed body: a slow client must not hold the write.
            let body = Body::from_any_timed(body, inner.params.max_body, timeouts);
            match body.collect().await {
                Ok(collected) => Payload::Kept(collected.to_bytes()),
                Err(error) => {
                    let code = crate::body::client_fault(&*error).unwrap_or(ErrorCode::BadRequest);
                    return Forwarded::Done(rejected(class, code));
                }
            }
        } else {
            Payload::Streamed(Some(Body::from_any_timed(
                body,
                inner.params.max_body,
                timeouts,
            )))
        };
        let head = Head {
            parts,
            extensions,
            request_id,
        };
        forward(shared, head, payload, class, reason, primary).await
    }
}

/// A forwarded request's head, rewritten for the hop, with what stays on this node: its
/// extensions (back on the response) and its id (for log lines).
struct Head {
    parts: request::Parts,
    extensions: Extensions,
    request_id: Option<RequestId>,
}

impl Forwarded {
    fn rejected(class: RequestClass, code: ErrorCode) -> Self {
        Forwarded::Done(rejected(class, code))
    }
}

/// Sends to the primary, following it until `writes.primary_wait` runs out for requests
/// that may be retried (see the module docs).
async fn forward(
    shared: &Shared,
    head: Head,
    mut payload: Payload,
    class: RequestClass,
    reason: Reason,
    mut primary: Arc<str>,
) -> Forwarded {
    let inner = shared;
    let params = &inner.params;
    let deadline = Instant::now() + params.primary_wait;
    let Head {
        mut parts,
        extensions,
        request_id,
    } = head;
    let request_id = request_id.as_ref().map_or("-", RequestId::as_str);
    let mut idempotent_retries = 0;
    let mut chain = Chain::new(&primary);
    loop {
        let Some(authority) = params.primary_url.authority(&primary) else {
            tracing::error!(request_id, %primary, "writes.primary_url gives no valid URL for this primary");
            return Forwarded::rejected(class, ErrorCode::PrimaryUnreachable);
        };
        let target = params.primary_url.target(authority);
        let retry = match inner.breakers.admit(&target.authority) {
            Admission::FailFast(_) => {
                // This primary failed repeatedly just now: answer at once rather than
                // holding the client for the whole primary_wait.
                inner.metrics.primary_reachable(false);
                return Forwarded::rejected(class, ErrorCode::PrimaryUnreachable);
            }
            admission @ (Admission::Go | Admission::Probe) => {
                let _probe = (admission == Admission::Probe)
                    .then(|| ProbeGuard::new(&inner.breakers, &target.authority));
                let Some(body) = payload.take() else {
                    return Forwarded::rejected(class, ErrorCode::PrimaryUnreachable);
                };
                // A kept body may be sent again after the request is gone (a `loop` refusal,
                // an idempotent retry), so its head is copied; a streamed one only comes back
                // untouched, head included, from a failed connect.
                let head = match payload.is_kept() {
                    true => parts.clone(),
                    false => std::mem::replace(&mut parts, Request::new(()).into_parts().0),
                };
                let request = Request::from_parts(head, body);
                match attempt(shared, &target, request, &primary, request_id).await {
                    Attempt::Done(response) => match refused_as_loop(&response, &payload, class) {
                        true => match chain.follow(&response, &inner.hop, request_id) {
                            // A replica of a replica (cascading replication): its upstream is
                            // tried at once, the same safety holding (nothing reached an app).
                            Some(upstream) => {
                                primary = upstream;
                                continue;
                            }
                            None => Retry::Unsent(ErrorCode::Loop),
                        },
                        false => return forwarded(shared, response, extensions, class, reason),
                    },
                    Attempt::Unsent(back) => {
                        let (head, body) = back.into_parts();
                        if let Payload::Streamed(slot) = &mut payload {
                            parts = head;
                            *slot = Some(body);
                        }
                        Retry::Unsent(ErrorCode::PrimaryUnreachable)
                    }
                    // A kept body is sent again, like an unsent one; a streamed one cannot
                    // be (the next turn finds the payload empty and answers
                    // `primary-unreachable`).
                    Attempt::Refused => Retry::Unsent(ErrorCode::PrimaryUnreachable),
                    // The key is looked up only here: a kept body's head is still at hand.
                    Attempt::Failed(code)
                        if code == ErrorCode::PrimaryFailed
                            && payload.is_kept()
                            && idempotent_retries == 0
                            && parts.headers.contains_key(&IDEMPOTENCY_KEY) =>
                    {
                        idempotent_retries += 1;
                        Retry::Idempotent
                    }
                    Attempt::Failed(code) => return Forwarded::rejected(class, code),
                }
            }
        };
        if class != RequestClass::Write || Instant::now() >= deadline {
            let code = match retry {
                Retry::Unsent(code) => code,
                Retry::Idempotent => ErrorCode::PrimaryFailed,
            };
            return Forwarded::rejected(class, code);
        }
        if let Retry::Idempotent = retry {
            tracing::info!(request_id, %primary, "retrying a write that carries an Idempotency-Key");
        }
        // Wait for news (a hand-off) or a short pause, then follow the current primary.
        let mut changes = inner.state.clone();
        // Only news from now on counts: the clone starts at whatever version the proxy's
        // own receiver last saw, which may be long ago.
        changes.mark_unchanged();
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
            let Some(body) = payload.take() else {
                return Forwarded::rejected(class, ErrorCode::PrimaryUnreachable);
            };
            let mut request = Request::from_parts(parts, body);
            request.headers_mut().remove(&FORWARDED_BY);
            request.headers_mut().remove(&FORWARD_SECRET);
            *request.extensions_mut() = extensions;
            RequestMeta::attach(request.extensions_mut()).prepared = true;
            return Forwarded::Promoted(request);
        }
        if let Some(next) = next {
            primary = next;
        }
    }
}

/// One attempt against one primary.
async fn attempt(
    shared: &Shared,
    target: &Target,
    request: Request<Body>,
    primary: &str,
    request_id: &str,
) -> Attempt {
    let inner = shared;
    let params = &inner.params;
    let started = Instant::now();
    let sent = tokio::time::timeout(
        params.write_timeout,
        super::primary_path::send(shared, target, request),
    )
    .await;
    match sent {
        Err(_) => {
            // A primary that accepts connections but never answers is as unreachable as
            // one that refuses them.
            inner.breakers.failure(&target.authority);
            tracing::warn!(request_id, %primary, timeout_ms = params.write_timeout.as_millis() as u64, "primary did not answer in time");
            Attempt::Failed(ErrorCode::PrimaryTimeout)
        }
        Ok(Ok(response)) => {
            inner.breakers.success(&target.authority);
            inner.metrics.forwarded(started.elapsed());
            inner.metrics.primary_reachable(true);
            Attempt::Done(response)
        }
        Ok(Err(SendError::Sent(error))) if refused_our_certificate(&error) => {
            inner.breakers.failure(&target.authority);
            inner.metrics.primary_reachable(false);
            tracing::warn!(request_id, %primary, %error, "the primary refused this node's client certificate (writes.client_cert); the request reached no app");
            Attempt::Refused
        }
        Ok(Err(SendError::Sent(error))) => {
            // Connected, then failed: the primary was reachable.
            inner.breakers.success(&target.authority);
            match crate::body::client_fault(&error) {
                // The client's body broke or outgrew the limit: not the primary's fault.
                Some(code) => {
                    tracing::info!(request_id, code = code.as_str(), %error, "the client's request body failed");
                    Attempt::Failed(code)
                }
                None => {
                    inner.metrics.primary_reachable(true);
                    tracing::warn!(request_id, %primary, %error, "connection to the primary failed after the request was sent");
                    Attempt::Failed(ErrorCode::PrimaryFailed)
                }
            }
        }
        Ok(Err(SendError::Connect { error, request })) => {
            inner.breakers.failure(&target.authority);
            inner.metrics.primary_reachable(false);
            tracing::warn!(request_id, %primary, %error, "primary unreachable");
            Attempt::Unsent(*request)
        }
        // Only with a connection cap, which pools to primaries do not have.
        Ok(Err(SendError::Saturated { .. })) => Attempt::Failed(ErrorCode::Overloaded),
    }
}

/// The old primary answered `loop`: it is no longer primary and passed the write to no app.
/// Retried only when the body was kept (a streamed body is gone: the 503 goes to the client,
/// whose retry is equally safe).
fn refused_as_loop(response: &Response<Body>, payload: &Payload, class: RequestClass) -> bool {
    class == RequestClass::Write
        && payload.is_kept()
        && response.status() == StatusCode::SERVICE_UNAVAILABLE
        && response
            .headers()
            .get(&RWPROXY_ERROR)
            .is_some_and(|v| v == ErrorCode::Loop.as_str())
}

fn forwarded(
    shared: &Shared,
    response: Response<Body>,
    extensions: Extensions,
    class: RequestClass,
    reason: Reason,
) -> Forwarded {
    let (mut parts, body) = response.into_parts();
    prepare_response(&mut parts);
    super::chain::strip_upstream(&mut parts.headers, class);
    carry_back(extensions, &mut parts.extensions);
    if shared.params.route_header {
        route_header(&mut parts.headers, "primary", reason);
    }
    let response = Response::from_parts(parts, body);
    Forwarded::Done(routed(response, class, "primary", reason))
}

/// How one attempt ended.
enum Attempt {
    /// The primary answered (any status).
    Done(Response<Body>),
    /// Nothing was sent; the request comes back untouched.
    Unsent(Request<Body>),
    /// It may have reached the app.
    Failed(ErrorCode),
    /// The primary refused the connection after the request was written, without reading it
    /// (TLS 1.3 client certificate refusal): it reached no app, but a streamed body is gone.
    Refused,
}

/// A write whose body is small enough to keep: a declared length within [`REPLAY_LIMIT`], or
/// no body at all.
fn replayable<B: HttpBody>(parts: &request::Parts, body: &B) -> bool {
    if body.is_end_stream() {
        return true;
    }
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= REPLAY_LIMIT)
}
