//! The health layer: answers `GET`/`HEAD` on the health path (`health.path`) from the node's
//! health view, and passes every other request on untouched.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{Method, Request, Response};
use tower::{Layer, Service};

use super::outcome::{answered, Answered};
use super::shared::Shared;
use super::Proxy;
use crate::body::Body;

/// Builds [`Health`] services.
///
/// ```
/// # fn demo(proxy: &rwproxy_http::Proxy) {
/// use rwproxy_http::proxy::HealthLayer;
/// let layer = tower::ServiceBuilder::new().layer(HealthLayer::new(proxy));
/// # let _ = layer;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HealthLayer {
    shared: Arc<Shared>,
}

impl HealthLayer {
    /// The health layer of `proxy`'s node.
    pub fn new(proxy: &Proxy) -> Self {
        HealthLayer {
            shared: proxy.shared.clone(),
        }
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;

    fn layer(&self, inner: S) -> Health<S> {
        Health {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Answers the health path; see [`HealthLayer`].
#[derive(Clone, Debug)]
pub struct Health<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for Health<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<Answered, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path() == self.shared.params.health.path
            && matches!(*request.method(), Method::GET | Method::HEAD)
        {
            let response = self
                .shared
                .health
                .respond(request.method(), request.uri().query());
            return Either::Left(answered(response));
        }
        Either::Right(self.inner.call(request))
    }
}
