//! The admission layer: the checks made on a request before anything waits or routes.
//!
//! * a declared body over `proxy.max_body` is refused `413 too-large` (a body that grows past
//!   it while streaming is cut by [`Body::limited`]);
//! * the forwarded-by marker, with `cluster.secret` when set, is recognised and recorded in
//!   the request's metadata: the route refuses such a request with
//!   `loop` when this node cannot serve it, so a write never bounces between nodes.
//!
//! * request hygiene ([`crate::hygiene`]) comes first: a refused head (two `Host`s, `CONNECT`,
//!   an unsupported transfer coding, ...) never reaches an app or a primary, and header names
//!   with `_` are dropped unless `proxy.allow_underscores_in_headers` is set.
//!
//! All of these read the head through one walk over its header fields ([`crate::head`]),
//! which also tells the layers below whether rwproxy's forwarding headers or a token carrier
//! (`Cookie`, the token header) are there at all, so most requests skip those lookups.
//!
//! tower-http's `RequestBodyLimitLayer` does not fit: its 413 carries no `rwproxy-error` code
//! and it wraps every body in its own type; [`Body::limited`] enforces the limit while the body
//! streams to the app or the primary.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::Body as HttpBody;
use rwproxy_core::{ErrorCode, RequestClass};
use tower::{Layer, Service};

use super::consistency::BoxResponse;
use super::meta::{class_of, RequestMeta};
use super::outcome::rejected;
use super::shared::Shared;
use super::{Proxy, RequestId};
use crate::body::Body;
use crate::head::HeadFacts;
use crate::hygiene::{self, Refusal};
use crate::upstream::headers::{FORWARDED_BY, FORWARD_SECRET};

/// Builds [`Admission`] services.
///
/// ```
/// # fn demo(proxy: &rwproxy_http::Proxy) {
/// use rwproxy_http::proxy::{AdmissionLayer, ClassifyLayer};
/// let layers = tower::ServiceBuilder::new()
///     .layer(ClassifyLayer::new(proxy))
///     .layer(AdmissionLayer::new(proxy));
/// # let _ = layers;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    shared: Arc<Shared>,
}

impl AdmissionLayer {
    /// Admission with `proxy`'s limits and secret.
    pub fn new(proxy: &Proxy) -> Self {
        AdmissionLayer {
            shared: proxy.shared.clone(),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Admits or refuses requests; see [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct Admission<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for Admission<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    B: HttpBody + Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<BoxResponse, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let params = &self.shared.params;
        // One walk over the header fields answers every question below (see `crate::head`).
        let facts = HeadFacts::scan(request.headers(), Some(&params.consistency.header));
        if let Err(refusal) = hygiene(&request, &facts) {
            let class = class_of(&request);
            return Either::Left(Box::pin(async move {
                Ok(refuse(request, class, refusal).await)
            }));
        }
        if let Some(max) = params.max_body {
            if declared_length(facts.content_length).is_some_and(|n| n > max) {
                let class = class_of(&request);
                let refused = rejected(class, ErrorCode::TooLarge);
                return Either::Left(Box::pin(std::future::ready(Ok(refused))));
            }
        }
        let forwarded = facts.forwarded_by
            && forwarded_by_a_node(request.headers(), params.forward_secret.as_ref());
        let internal = facts.internal_headers();
        let may_carry_token = facts.token_carrier;
        if facts.underscored_names && !params.allow_underscores_in_headers {
            let dropped = hygiene::drop_underscored_headers(request.headers_mut());
            tracing::debug!(dropped, "dropped header names containing '_'");
        }
        let meta = RequestMeta::attach(request.extensions_mut());
        meta.forwarded = forwarded;
        meta.may_have_internal_headers = internal;
        meta.may_carry_token = may_carry_token;
        Either::Right(self.inner.call(request))
    }
}

/// Request hygiene (see [`crate::hygiene`]): `Err` when the head must be refused.
fn hygiene<B>(request: &Request<B>, facts: &HeadFacts<'_>) -> Result<(), Refusal> {
    let checked = hygiene::check_scanned(
        request.method(),
        request.uri(),
        request.version(),
        request.headers(),
        facts,
    );
    if let Err(refusal) = checked {
        // The client's fault, not rwproxy's: informational, and counted as the code's error.
        let request_id = RequestId::of(request);
        tracing::info!(
            request_id = request_id.as_ref().map_or("-", RequestId::as_str),
            refusal = refusal.as_str(),
            code = refusal.code().as_str(),
            "request refused before routing"
        );
        return Err(refusal);
    }
    Ok(())
}

/// Answers a request that failed the hygiene checks. Over HTTP/1.1 the connection is closed
/// after the answer: whatever the client sends next on it is as suspect as what it just sent.
async fn refuse<B: HttpBody>(
    request: Request<B>,
    class: RequestClass,
    refusal: Refusal,
) -> Response<Body> {
    let http1 = request.version() < http::Version::HTTP_2;
    let mut response = drain_then_reject(request, class, refusal.code()).await;
    if http1 {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// True when the request carries the forwarded-request marker and, with `cluster.secret` set,
/// the right secret. A marker without it is ignored: the request is a client's.
fn forwarded_by_a_node(headers: &HeaderMap, secret: Option<&HeaderValue>) -> bool {
    if !headers.contains_key(&FORWARDED_BY) {
        return false;
    }
    match secret {
        None => true,
        Some(secret) => headers
            .get(&FORWARD_SECRET)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), secret.as_bytes())),
    }
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request's declared body length (its `Content-Length`), if any.
fn declared_length(content_length: Option<&HeaderValue>) -> Option<u64> {
    content_length?.to_str().ok()?.parse().ok()
}

/// Request bodies up to this size are read and discarded before rwproxy answers a request it
/// refuses, so the peer (often another rwproxy still streaming a forwarded write) gets the
/// answer instead of a connection reset that would hide it.
const DRAIN_LIMIT: usize = 1 << 20;
/// How long the discarding may take.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Answers `code` after reading and discarding a bounded part of the body (see [`discard_body`]).
pub(super) async fn drain_then_reject<B>(
    request: Request<B>,
    class: RequestClass,
    code: ErrorCode,
) -> Response<Body>
where
    B: HttpBody,
{
    discard_body(request).await;
    rejected(class, code)
}

/// Reads and drops up to [`DRAIN_LIMIT`] bytes of the body within [`DRAIN_TIME`], so that a
/// client that writes its whole body before reading sees the answer rather than a broken pipe.
/// A client that sent `Expect: 100-continue` is waiting to be asked for its body: it is not
/// asked (reading would make hyper send `100 Continue`), and gets the answer at once.
pub(super) async fn discard_body<B: HttpBody>(request: Request<B>) {
    use bytes::Buf as _;
    use http_body_util::BodyExt as _;
    if request.headers().contains_key(http::header::EXPECT) {
        return;
    }
    let mut body = std::pin::pin!(request.into_body());
    let discard = async {
        let mut seen = 0usize;
        // Frames are dropped as they come: nothing is kept in memory.
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.remaining());
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_needs_the_secret_when_one_is_set() {
        let mut h = HeaderMap::new();
        assert!(!forwarded_by_a_node(&h, None));
        h.insert(FORWARDED_BY.clone(), HeaderValue::from_static("n1"));
        assert!(forwarded_by_a_node(&h, None));
        let secret = HeaderValue::from_static("0123456789abcdef");
        assert!(!forwarded_by_a_node(&h, Some(&secret)));
        h.insert(
            FORWARD_SECRET.clone(),
            HeaderValue::from_static("0123456789abcdeX"),
        );
        assert!(!forwarded_by_a_node(&h, Some(&secret)));
        h.insert(FORWARD_SECRET.clone(), secret.clone());
        assert!(forwarded_by_a_node(&h, Some(&secret)));
    }
}
