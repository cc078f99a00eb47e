//! The classify layer: records the request's [`RequestClass`] (read, write, passthrough; an
//! `always_forward` path is a write) in its metadata for the layers below.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use super::meta::RequestMeta;
use super::shared::Shared;
use super::Proxy;

/// Builds [`Classify`] services.
///
/// ```
/// # fn demo(proxy: &rwproxy_http::Proxy) {
/// use rwproxy_http::proxy::ClassifyLayer;
/// let layer = tower::ServiceBuilder::new().layer(ClassifyLayer::new(proxy));
/// # let _ = layer;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClassifyLayer {
    shared: Arc<Shared>,
}

impl ClassifyLayer {
    /// Classifies with `proxy`'s rules (`reads.methods`, `routing.*`).
    pub fn new(proxy: &Proxy) -> Self {
        ClassifyLayer {
            shared: proxy.shared.clone(),
        }
    }
}

impl<S> Layer<S> for ClassifyLayer {
    type Service = Classify<S>;

    fn layer(&self, inner: S) -> Classify<S> {
        Classify {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Classifies requests; see [`ClassifyLayer`].
#[derive(Clone, Debug)]
pub struct Classify<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for Classify<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        let class = self
            .shared
            .params
            .classifier
            .classify(request.method(), request.uri().path());
        // The listener attached the metadata; an embedding app's request gets it here.
        RequestMeta::attach(request.extensions_mut()).class = class;
        self.inner.call(request)
    }
}
