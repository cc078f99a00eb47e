//! The consistency layer: a read that carries a client's position token (`__txid` cookie or
//! the token header) waits here, up to `consistency.wait`, until this replica has reached it;
//! then it goes on with what the wait found ([`TokenWait`] in its metadata) for the route to
//! decide on (served locally, or sent to the primary / refused after a timeout).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::Either;
use http::{Request, Response};
use rwproxy_core::{decide, RequestClass, Route, RouteInput, Token, WaitState};
use tower::{Layer, Service};

use super::meta::RequestMeta;
use super::shared::Shared;
use super::{take_ready, Proxy};
use crate::body::Body;

/// A read's token and what waiting for it found; in the request's metadata when the read
/// carried a token.
#[derive(Clone, Debug)]
pub struct TokenWait {
    /// The client's token.
    pub token: Token,
    /// `Satisfied` (no wait needed), `Reached`, `TimedOut`, or `Behind` when the route will
    /// not serve the read here anyway (stale replica, forwarded request).
    pub wait: WaitState,
}

/// A boxed response future: waiting is the rare path, so only it pays for a box.
pub(crate) type BoxResponse =
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Builds [`Consistency`] services.
///
/// ```
/// # fn demo(proxy: &rwproxy_http::Proxy) {
/// use rwproxy_http::proxy::{ClassifyLayer, ConsistencyLayer};
/// let layers = tower::ServiceBuilder::new()
///     .layer(ClassifyLayer::new(proxy))
///     .layer(ConsistencyLayer::new(proxy));
/// # let _ = layers;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ConsistencyLayer {
    shared: Arc<Shared>,
}

impl ConsistencyLayer {
    /// Waits on `proxy`'s cluster state, with its `consistency.*` settings.
    pub fn new(proxy: &Proxy) -> Self {
        ConsistencyLayer {
            shared: proxy.shared.clone(),
        }
    }
}

impl<S> Layer<S> for ConsistencyLayer {
    type Service = Consistency<S>;

    fn layer(&self, inner: S) -> Consistency<S> {
        Consistency {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Waits for reads' tokens; see [`ConsistencyLayer`].
#[derive(Clone, Debug)]
pub struct Consistency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for Consistency<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, BoxResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let meta = RequestMeta::of(request.extensions());
        let class = meta.map_or(RequestClass::Passthrough, |m| m.class);
        // Admission's walk over the headers found no `Cookie` and no token header: two hashed
        // lookups saved on most reads.
        let may_carry_token = meta.is_none_or(|m| m.may_carry_token);
        let forwarded = meta.is_some_and(|m| m.forwarded);
        if class != RequestClass::Read || !may_carry_token {
            return Either::Left(self.inner.call(request));
        }
        let shared = &self.shared;
        let Some(token) = shared.params.consistency.token_from(request.headers()) else {
            return Either::Left(self.inner.call(request));
        };
        if let Some(lost) = super::lost::lost_write(shared, request.headers(), &token) {
            let shared = self.shared.clone();
            return Either::Right(Box::pin(async move {
                Ok(super::lost::answer(&shared, request.headers(), lost).await)
            }));
        }
        let (behind, must_wait) = {
            let state = shared.state.borrow();
            if state.is_primary() || state.has_reached(&token) {
                (false, false)
            } else {
                // Wait only where the route would serve the read here once the position is
                // reached: a stale replica or a forwarded read goes elsewhere at once.
                let input = RouteInput {
                    class,
                    state: &state,
                    fresh: shared.freshness.observe(&state),
                    forwarded,
                    wait: WaitState::Behind,
                    waited_for_primary: false,
                };
                (
                    true,
                    matches!(decide(input, &shared.params.policy), Route::AwaitPosition),
                )
            }
        };
        // `log.level = "debug"`: the client's token against this node's position.
        tracing::debug!(?token, positions = ?shared.state.borrow().positions, behind, must_wait, "position token compared");
        if !must_wait {
            let wait = match behind {
                true => WaitState::Behind,
                false => WaitState::Satisfied,
            };
            RequestMeta::attach(request.extensions_mut()).token_wait =
                Some(TokenWait { token, wait });
            return Either::Left(self.inner.call(request));
        }
        let mut inner = take_ready(&mut self.inner);
        let shared = self.shared.clone();
        Either::Right(Box::pin(async move {
            let wait = wait_for_position(&shared, &token).await;
            RequestMeta::attach(request.extensions_mut()).token_wait =
                Some(TokenWait { token, wait });
            inner.call(request).await
        }))
    }
}

/// Waits until the node reaches `token` (or the wait times out), recording the wait.
pub(super) async fn wait_for_position(shared: &Shared, token: &Token) -> WaitState {
    let started = Instant::now();
    let mut state = shared.state.clone();
    let outcome = crate::consistency::wait_for_token(
        token,
        &mut state,
        &shared.demand,
        &shared.params.consistency,
    )
    .await;
    shared
        .metrics
        .consistency_wait(started.elapsed(), outcome == WaitState::TimedOut);
    tracing::debug!(
        ?token,
        ?outcome,
        waited_ms = started.elapsed().as_millis() as u64,
        "position wait ended"
    );
    outcome
}
