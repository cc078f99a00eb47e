//! The route layer: `decide()` over the node's state, then carry the decision out — the inner
//! service (the local app, or an embedding app's own router), the forwarder to the primary's
//! rwproxy, a `fly-replay` or redirect answer, or a refusal. Waiting for a primary to be
//! known (`AwaitPrimary`) and the re-check of a write against a demotion the source has not
//! published yet live here, since both end in routing again.
//!
//! A replica's read and a passthrough request (no token to issue, nothing to wait for) take
//! the synchronous path: one decision, then the inner service's own future. Everything else
//! runs the full routing loop in one boxed future.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use http::{Request, Response};
use http_body::Body as HttpBody;
use pin_project_lite::pin_project;
use rwproxy_core::{
    decide, ErrorCode, NodeState, Reason, RequestClass, Route as Decision, RouteInput, Token,
    WaitState,
};
use tokio::sync::watch;
use tower::{Layer, Service};

use super::admission::{discard_body, drain_then_reject};
use super::answers;
use super::consistency::{wait_for_position, BoxResponse};
use super::forward::{self, Forwarded};
use super::meta::{client_of, set_routed, RequestMeta};
use super::outcome::{rejected, route_header, Routed};
use super::shared::Shared;
use super::tokens::{self, TokenAction};
use super::{take_ready, Proxy, RequestId};
use crate::body::{Body, BoxError};
use crate::session::SessionMode;
use crate::upstream::headers::{FORWARDED_BY, FORWARD_SECRET};

/// Builds [`Route`] services around the node's inner service.
///
/// ```
/// # fn demo(proxy: &rwproxy_http::Proxy) {
/// use rwproxy_http::proxy::{AppService, RouteLayer};
/// let local_app = tower::ServiceBuilder::new()
///     .layer(RouteLayer::new(proxy))
///     .service(AppService::new(proxy));
/// # let _ = local_app;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct RouteLayer {
    shared: Arc<Shared>,
}

impl RouteLayer {
    /// Routes over `proxy`'s cluster state and policy.
    pub fn new(proxy: &Proxy) -> Self {
        RouteLayer {
            shared: proxy.shared.clone(),
        }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Routes requests; see [`RouteLayer`]. The inner service gets what this node serves itself,
/// as `Request<Body>`; its response body may be any body.
#[derive(Clone, Debug)]
pub struct Route<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B, R> Service<Request<B>> for Route<S>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<Body>, Response = Response<R>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<LocalFuture<S::Future>, Either<WriteFuture<S::Future>, BoxResponse>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let meta = RequestMeta::of(request.extensions());
        let class = meta.map_or(RequestClass::Passthrough, |m| m.class);
        let forwarded = meta.is_some_and(|m| m.forwarded);
        let internal_headers = meta.is_none_or(|m| m.may_have_internal_headers);
        let token_wait = meta.and_then(|m| m.token_wait.as_ref());
        let path = {
            let state = shared.state.borrow();
            let input = RouteInput {
                class,
                state: &state,
                fresh: shared.freshness.observe(&state) || shared.health.serves_stale_reads(&state),
                forwarded,
                wait: token_wait.map_or(WaitState::Satisfied, |t| t.wait),
                waited_for_primary: false,
            };
            let decision = decide(input, &shared.params.policy);
            // `log.level = "debug"`: why each request went where it went.
            tracing::debug!(
                class = class.as_str(),
                role = state.role.as_str(),
                primary = state.primary.as_deref(),
                fresh = input.fresh,
                token_wait = ?input.wait,
                ?decision,
                "route decided"
            );
            match decision {
                // A write on the primary gets a token; it is re-checked against a demotion
                // first where the source can tell (LiteFS): the full path then.
                Decision::Local(reason)
                    if state.is_primary()
                        && class == RequestClass::Write
                        && !shared.probe.confirms_primaries() =>
                {
                    Path::WriteHere(reason)
                }
                // A read with a token on the primary may get a fresh one; with
                // `consistency.session = "reads-too"` every read may earn one: the full path.
                Decision::Local(_)
                    if state.is_primary()
                        && (class == RequestClass::Write || token_wait.is_some()) =>
                {
                    Path::Full
                }
                Decision::Local(_)
                    if class == RequestClass::Read
                        && shared.params.consistency.session == SessionMode::ReadsToo =>
                {
                    Path::Full
                }
                Decision::Local(reason) => Path::Local(reason),
                // Straight to the forwarder: nothing to wait for or re-check first.
                Decision::Primary(reason) => match state.remote_primary() {
                    Some(primary) => Path::ToPrimary(reason, primary.clone()),
                    None => Path::Full,
                },
                _ => Path::Full,
            }
        };
        let (reason, token) = match path {
            Path::Local(reason) => (reason, None),
            Path::WriteHere(reason) => {
                let client = client_of(meta, request.extensions());
                let tls = tokens::secure(client, request.headers());
                let token = WriteToken {
                    shared: shared.clone(),
                    tls,
                };
                (reason, Some(token))
            }
            Path::ToPrimary(reason, primary) => {
                let (shared, inner) = (self.shared.clone(), take_ready(&mut self.inner));
                return Either::Right(Either::Right(Box::pin(async move {
                    Ok(to_primary(&shared, inner, request, class, reason, primary).await)
                })));
            }
            Path::Full => {
                let (shared, inner) = (self.shared.clone(), take_ready(&mut self.inner));
                return Either::Right(Either::Right(Box::pin(async move {
                    Ok(route(&shared, inner, request, class, forwarded).await)
                })));
            }
        };
        let request = local_request(request, &shared.params, internal_headers);
        let served = LocalFuture {
            inner: self.inner.call(request),
            class,
            reason,
            route_header: shared.params.route_header,
        };
        match token {
            None => Either::Left(served),
            Some(token) => Either::Right(Either::Left(WriteFuture {
                served,
                token: Some(token),
                issuing: None,
            })),
        }
    }
}

/// Where [`Route::call`] sends a request.
enum Path {
    /// The inner service, nothing to do on the way back.
    Local(Reason),
    /// The inner service, then a token: a write on the primary whose source cannot report a
    /// demotion between polls.
    WriteHere(Reason),
    /// The primary's rwproxy, at once.
    ToPrimary(Reason, Arc<str>),
    /// The routing loop, boxed: waits, replays, redirects, refusals, re-checks.
    Full,
}

/// The request as the inner service gets it: internal routing headers are for rwproxy, not
/// for the app; the body is limited to `proxy.max_body` and bounded in time by
/// `proxy.body_timeout` / `proxy.body_min_rate`. `internal_headers` is false when
/// admission's walk over the head saw neither (the request's metadata says so): two hashed
/// removals saved on almost every request.
fn local_request<B>(
    request: Request<B>,
    params: &crate::params::ProxyParams,
    internal_headers: bool,
) -> Request<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = request.into_parts();
    if internal_headers {
        parts.headers.remove(&FORWARDED_BY);
        parts.headers.remove(&FORWARD_SECRET);
    }
    let body = Body::from_any_timed(body, params.max_body, Some(params.body_timeouts));
    Request::from_parts(parts, body)
}

/// Marks the inner service's response as served here (unless the leaf refused it itself).
fn served_here<R>(
    response: Response<R>,
    class: RequestClass,
    reason: Reason,
    route_header_on: bool,
) -> Response<Body>
where
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    let routed = Routed {
        class,
        route: "local",
        reason,
    };
    // The app leaf carried the request's metadata back: the outcome goes into it.
    let unrouted = match parts.extensions.get_mut::<RequestMeta>() {
        Some(meta) if meta.routed.is_some() => false,
        Some(meta) => {
            meta.routed = Some(routed);
            true
        }
        None => {
            set_routed(&mut parts.extensions, routed);
            true
        }
    };
    if unrouted && route_header_on {
        route_header(&mut parts.headers, "local", reason);
    }
    Response::from_parts(parts, Body::from_any(body, None))
}

/// The token a write served on the synchronous path gets on its way back.
pub(crate) struct WriteToken {
    shared: Arc<Shared>,
    tls: bool,
}

pin_project! {
    /// A request served by the inner service on the synchronous path: a replica's read or a
    /// passthrough request.
    pub struct LocalFuture<F> {
        #[pin]
        inner: F,
        class: RequestClass,
        reason: Reason,
        route_header: bool,
    }
}

impl<F, R> Future for LocalFuture<F>
where
    F: Future<Output = Result<Response<R>, Infallible>>,
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        Poll::Ready(Ok(served_here(
            response,
            *this.class,
            *this.reason,
            *this.route_header,
        )))
    }
}

pin_project! {
    /// A write on a primary whose source cannot report a demotion between polls, served on
    /// the synchronous path: its token is issued from the watched state, or from a position
    /// read when the source has one. (A type of its own, so reads' futures stay as small.)
    pub struct WriteFuture<F> {
        #[pin]
        served: LocalFuture<F>,
        token: Option<WriteToken>,
        // The token's position read, once the inner service answered (a source with a probe).
        issuing: Option<BoxResponse>,
    }
}

impl<F, R> Future for WriteFuture<F>
where
    F: Future<Output = Result<Response<R>, Infallible>>,
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(issuing) = this.issuing {
            return issuing.as_mut().poll(cx);
        }
        let Ok(response) = ready!(this.served.poll(cx));
        let Some(token) = this.token.take() else {
            return Poll::Ready(Ok(response));
        };
        match with_token(response, token) {
            Ok(response) => Poll::Ready(Ok(response)),
            Err(mut issuing) => {
                let polled = issuing.as_mut().poll(cx);
                *this.issuing = Some(issuing);
                polled
            }
        }
    }
}

/// Whether the leaf refused the request itself (a refusal gets no token).
fn refused<B>(response: &Response<B>) -> bool {
    Routed::of(response).is_some_and(|r| r.route == "rejected")
}

/// Gives a write served on the synchronous path its token: at once from the watched state
/// (a source without a probe), else `Err` with the future that reads the positions first.
/// Out of line: reads, the common case, do not carry this code in their future's `poll`.
#[inline(never)]
fn with_token(
    mut response: Response<Body>,
    token: WriteToken,
) -> Result<Response<Body>, BoxResponse> {
    let WriteToken { shared, tls } = token;
    if refused(&response) {
        return Ok(response);
    }
    if let Some(positions) = shared.positions_without_probe() {
        shared
            .params
            .consistency
            .issue(response.headers_mut(), &positions, tls);
        return Ok(response);
    }
    Err(Box::pin(async move {
        tokens::apply(
            &shared,
            TokenAction::IssueAfterWrite,
            response.headers_mut(),
            tls,
            "-",
        )
        .await;
        Ok(response)
    }))
}

/// The full routing loop: decide, wait where the decision says so, and carry it out.
///
/// Every await but serving here is boxed: this future is moved into a box for every write
/// on the primary, and inline waits, forwards and drains (each with its timer) would make it
/// several times larger, and that copy dearer, for requests that need none of them.
async fn route<S, B, R>(
    shared: &Shared,
    inner: S,
    mut request: Request<B>,
    class: RequestClass,
    forwarded: bool,
) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<Body>, Response = Response<R>, Error = Infallible> + Send,
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    let params = &shared.params;
    let token_wait = request
        .extensions_mut()
        .get_mut::<RequestMeta>()
        .and_then(|m| m.token_wait.take());
    let (token, mut wait) = match token_wait {
        Some(t) => (Some(t.token), t.wait),
        None => (None, WaitState::Satisfied),
    };
    let mut state_rx = shared.state.clone();
    let mut waited_for_primary = false;
    let mut demotion_seen = false;
    let mut promotion_seen = false;
    loop {
        let (decision, primary, is_primary, token_ahead) = {
            let state = state_rx.borrow_and_update();
            let input = RouteInput {
                class,
                state: &state,
                fresh: shared.freshness.observe(&state) || shared.health.serves_stale_reads(&state),
                forwarded,
                wait,
                waited_for_primary,
            };
            (
                decide(input, &params.policy),
                state.remote_primary().cloned(),
                state.is_primary(),
                token
                    .as_ref()
                    .is_some_and(|t| t.is_ahead_of(&state.positions)),
            )
        };
        match decision {
            // The consistency layer waits where this is the decision; the node's state may
            // have changed since (a stale replica caught up), so the wait can start here too.
            Decision::AwaitPosition => {
                wait = match &token {
                    Some(token) => Box::pin(wait_for_position(shared, token)).await,
                    None => WaitState::Satisfied,
                };
            }
            Decision::AwaitPrimary => {
                let found = Box::pin(tokio::time::timeout(
                    params.primary_wait,
                    state_rx.wait_for(|s| s.is_primary() || s.remote_primary().is_some()),
                ))
                .await;
                waited_for_primary = true;
                let found_primary = matches!(found, Ok(Ok(_)));
                // Releases the state borrowed by `wait_for` before reading the problem.
                drop(found);
                if !found_primary {
                    let problem = state_rx.borrow().problem.clone();
                    tracing::warn!(
                        request_id = RequestId::of(&request)
                            .as_ref()
                            .map_or("-", RequestId::as_str),
                        wait_ms = params.primary_wait.as_millis() as u64,
                        problem = problem.as_deref().unwrap_or("-"),
                        "no primary known; write refused"
                    );
                }
            }
            Decision::Local(reason) => {
                // Only a source that can tell (LiteFS) is asked.
                let suspect = is_primary
                    && shared.probe.confirms_primaries()
                    && match class {
                        RequestClass::Write => true,
                        RequestClass::Read => token_ahead,
                        _ => false,
                    };
                let demoted = suspect
                    && match class {
                        RequestClass::Write => shared.probe.confirms_primary().await == Some(false),
                        // Boxed: rare, and it holds a position read.
                        _ => Box::pin(demoted_under_read(shared, token.as_ref())).await,
                    };
                if demoted {
                    // Never let a write reach a demoted app, nor serve a read older than the
                    // client's token from it: have the source publish the new state now, then
                    // route again (a read as a replica's that has not reached its token).
                    if demotion_seen {
                        return rejected(class, demoted_refusal(class));
                    }
                    demotion_seen = true;
                    let handoff = Handoff {
                        request_id: RequestId::of(&request),
                        now_primary: false,
                        why: "the source no longer says this node is primary; routing again",
                    };
                    Box::pin(handoff.publish(shared, &mut state_rx)).await;
                    if class == RequestClass::Read {
                        wait = WaitState::Behind;
                    }
                    continue;
                }
                let action =
                    TokenAction::for_local(is_primary, class, token, params.consistency.session);
                let meta = RequestMeta::of(request.extensions());
                let internal_headers = meta.is_none_or(|m| m.may_have_internal_headers);
                let client = client_of(meta, request.extensions());
                let tls = action.may_issue() && tokens::secure(client, request.headers());
                let request = local_request(request, params, internal_headers);
                return serve_here(shared, inner, request, class, reason, action, tls).await;
            }
            Decision::Primary(reason) => {
                let Some(primary) = primary else {
                    return rejected(class, ErrorCode::NoPrimary);
                };
                return Box::pin(to_primary(shared, inner, request, class, reason, primary)).await;
            }
            Decision::Replay | Decision::Redirect => {
                let Some(primary) = primary else {
                    return rejected(class, ErrorCode::NoPrimary);
                };
                let answer = match decision {
                    Decision::Replay => answers::replay(&request, class, &primary),
                    _ => answers::redirect(shared, &request, class, &primary),
                };
                if let Some(answer) = answer {
                    // Read the body (at most Fly's 1 MB; a larger one is cut off and the
                    // connection closed after the answer) before answering: a client that
                    // writes its whole body first would otherwise see a broken pipe, not the
                    // 421 or the 307.
                    Box::pin(discard_body(request)).await;
                    return answer;
                }
                return Box::pin(to_primary(
                    shared,
                    inner,
                    request,
                    class,
                    Reason::Write,
                    primary,
                ))
                .await;
            }
            Decision::Reject(ErrorCode::Loop)
                if !promotion_seen && Box::pin(promoted_since_poll(shared)).await =>
            {
                // The sender took this node for the primary and the source, read now, agrees:
                // promoted since the last poll. Have the source publish that now and route
                // again, rather than refuse a write that only this node can take. Once: if the
                // state still says replica, the refusal stands (the app never sees the write
                // before the state says primary).
                promotion_seen = true;
                let handoff = Handoff {
                    request_id: RequestId::of(&request),
                    now_primary: true,
                    why: "forwarded here as to the primary, and the source now says so; routing again",
                };
                Box::pin(handoff.publish(shared, &mut state_rx)).await;
                continue;
            }
            Decision::Reject(code) => {
                let mut answer = Box::pin(drain_then_reject(request, class, code)).await;
                if code == ErrorCode::Loop {
                    super::chain::name_upstream(&mut answer, primary.as_deref());
                }
                if code == ErrorCode::NoPrimary {
                    let problem = state_rx.borrow().problem.clone();
                    super::no_primary::explain(&mut answer, problem.as_deref());
                }
                return answer;
            }
        }
    }
}

/// A hand-off that the source shows but the last poll has not published (this node demoted, or
/// promoted, since).
struct Handoff {
    request_id: Option<RequestId>,
    /// What the source says now: this node is the primary.
    now_primary: bool,
    why: &'static str,
}

impl Handoff {
    /// Logs it, has the source poll at once, and waits up to `writes.primary_wait` for the
    /// published state to agree; the caller then routes again on whatever state there is.
    async fn publish(self, shared: &Shared, state: &mut watch::Receiver<NodeState>) {
        let request_id = self.request_id.as_ref().map_or("-", RequestId::as_str);
        tracing::info!(request_id, "{}", self.why);
        let _poll_now = shared.demand.enter();
        let _ = tokio::time::timeout(
            shared.params.primary_wait,
            state.wait_for(|s| s.is_primary() == self.now_primary),
        )
        .await;
    }
}

/// Whether the source, read right now, says this node is the primary although its last
/// published state does not (LiteFS handed it the lease since the last poll). Asked only for a
/// request another rwproxy forwarded here as to the primary, which would otherwise be refused
/// with `loop`.
async fn promoted_since_poll(shared: &Shared) -> bool {
    shared.probe.confirms_primaries() && shared.probe.confirms_primary().await == Some(true)
}

/// Whether this node, which its last published state calls primary, has been demoted since
/// the last poll, asked of the source right now on behalf of a read whose token is ahead of
/// that state. Asked only when the token is also ahead of the positions read right now: on a
/// real primary a client's token never is (save a restored database or another cluster's
/// cookie), while on a primary demoted between polls it is the new primary's write the client
/// just made. (Every write on the primary asks the source directly: a demoted app must never
/// see a write.)
async fn demoted_under_read(shared: &Shared, token: Option<&Token>) -> bool {
    let Some(token) = token else { return false };
    if !token.is_ahead_of(&shared.current_positions().await.positions) {
        return false;
    }
    shared.probe.confirms_primary().await == Some(false)
}

/// The refusal when a demotion is seen twice and the source has not published the new state
/// within `writes.primary_wait`.
fn demoted_refusal(class: RequestClass) -> ErrorCode {
    match class {
        RequestClass::Read => ErrorCode::ConsistencyTimeout,
        _ => ErrorCode::NoPrimary,
    }
}

/// Forwards to the primary; a write handed back because this node was promoted meanwhile is
/// served here.
async fn to_primary<S, B, R>(
    shared: &Shared,
    inner: S,
    request: Request<B>,
    class: RequestClass,
    reason: Reason,
    primary: Arc<str>,
) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    S: Service<Request<Body>, Response = Response<R>, Error = Infallible> + Send,
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    // Not boxed here: the callers box this whole future (the forwarder's, with its retries and
    // the body kept for them, is larger than the rest of the route's), once.
    let forwarded = forward::to_primary(shared, request, class, reason, primary).await;
    match forwarded {
        Forwarded::Done(response) => response,
        Forwarded::Promoted(request) => {
            tracing::info!(
                request_id = RequestId::of(&request)
                    .as_ref()
                    .map_or("-", RequestId::as_str),
                "this node became primary while a write waited; serving it locally"
            );
            let action = TokenAction::IssueAfterWrite;
            let meta = RequestMeta::of(request.extensions());
            let tls = client_of(meta, request.extensions()).is_some_and(|c| c.tls);
            // Boxed: rare, and inline it would double the size of the forwarder's future.
            Box::pin(serve_here(
                shared,
                inner,
                request,
                class,
                Reason::Write,
                action,
                tls,
            ))
            .await
        }
    }
}

/// Serves a request with the inner service, then gives the response its token.
async fn serve_here<S, R>(
    shared: &Shared,
    mut inner: S,
    request: Request<Body>,
    class: RequestClass,
    reason: Reason,
    action: TokenAction,
    tls: bool,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<R>, Error = Infallible> + Send,
    R: HttpBody<Data = Bytes> + Send + 'static,
    R::Error: Into<BoxError>,
{
    let request_id = RequestId::of(&request);
    // `inner` is the service the route polled ready before it took this request.
    let Ok(response) = inner.call(request).await;
    let mut response = served_here(response, class, reason, shared.params.route_header);
    if !refused(&response) {
        let request_id = request_id.as_ref().map_or("-", RequestId::as_str);
        tokens::apply(shared, action, response.headers_mut(), tls, request_id).await;
    }
    response
}
