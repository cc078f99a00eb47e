//! The metrics layer: requests in flight, and per finished request its class, route, status
//! and duration; rwproxy's own refusals also by code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use rwproxy_core::ErrorCode;
use tower::{Layer, Service};

use super::outcome::Routed;
use crate::body::Body;
use crate::metrics::Metrics;
use crate::respond::RWPROXY_ERROR;

/// Builds [`RecordMetrics`] services.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// Records into `metrics` (what `/metrics` renders).
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = RecordMetrics<S>;

    fn layer(&self, inner: S) -> RecordMetrics<S> {
        RecordMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Records request metrics; see [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct RecordMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for RecordMetrics<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let started = Instant::now();
        self.metrics.in_flight(1.0);
        MetricsFuture {
            inner: self.inner.call(request),
            started,
            in_flight: Some(InFlight(self.metrics.clone())),
        }
    }
}

/// One request in flight; counted out when it finishes or its client goes away.
struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight(-1.0);
    }
}

pin_project! {
    /// The response future of [`RecordMetrics`].
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        in_flight: Option<InFlight>,
    }
}

impl<F, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let elapsed = this.started.elapsed();
        // Taken: the request is counted out here (the guard's drop) and recorded once.
        if let Some(in_flight) = this.in_flight.take() {
            record(&in_flight.0, &response, elapsed);
        }
        Poll::Ready(Ok(response))
    }
}

/// Records one finished request (health answers carry no [`Routed`] and are not counted).
fn record(metrics: &Metrics, response: &Response<Body>, elapsed: std::time::Duration) {
    let Some(routed) = Routed::of(response) else {
        return;
    };
    metrics.request(routed.class, routed.route, response.status(), elapsed);
    // Only rwproxy's own refusals count as its errors (a primary's are counted there).
    if routed.route == "rejected" {
        if let Some(code) = response
            .headers()
            .get(&RWPROXY_ERROR)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorCode::from_code)
        {
            metrics.error(code);
        }
    }
}
