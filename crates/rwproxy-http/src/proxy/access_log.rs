//! The access log: one `rwproxy::access` event per request (`log.access`).
//!
//! tower-http's `TraceLayer` does not fit: its response callback sees the response and the
//! latency but not the request, so the method, path, client and request id would have to
//! travel in a span, and the JSON log would then nest them under `span` instead of printing
//! the one flat line per request that `docs/observability.md` documents.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::meta::{client_of, RequestMeta};
use super::outcome::Routed;
use super::request_id::X_REQUEST_ID;
use crate::body::Body;
use crate::respond::RWPROXY_ERROR;

/// Builds [`AccessLog`] services.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner }
    }
}

/// Logs one line per request; see [`AccessLogLayer`].
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Boxed: the line is ~100 bytes the response future would otherwise carry and move.
        let line = Box::new(Line {
            started: Instant::now(),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            request_id: request.headers().get(&X_REQUEST_ID).cloned(),
            client: client_of(RequestMeta::of(request.extensions()), request.extensions())
                .map(|c| c.ip),
        });
        AccessLogFuture {
            inner: self.inner.call(request),
            line: Some(line),
        }
    }
}

/// What the line says about the request, captured when it arrives.
struct Line {
    started: Instant,
    method: Method,
    path: String,
    request_id: Option<HeaderValue>,
    client: Option<IpAddr>,
}

pin_project! {
    /// The response future of [`AccessLog`].
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        line: Option<Box<Line>>,
    }
}

impl<F, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        if let Some(line) = this.line.take() {
            log(&line, &response);
        }
        Poll::Ready(Ok(response))
    }
}

fn log(line: &Line, response: &Response<Body>) {
    let routed = Routed::of(response);
    let status = response.status();
    let class = match routed {
        Some(routed) => routed.class.as_str(),
        // Only the health endpoint answers without routing, but for a caught panic.
        None if is_internal(response) => "-",
        None => "health",
    };
    let request_id = line.request_id.as_ref().and_then(|v| v.to_str().ok());
    tracing::info!(
        target: "rwproxy::access",
        request_id = request_id.unwrap_or("-"),
        method = %line.method,
        path = line.path.as_str(),
        class,
        route = routed.map_or("local", |r| r.route),
        reason = logged_reason(routed.as_ref(), response),
        status = status.as_u16(),
        duration_ms = duration_ms(line.started.elapsed()),
        client = %line.client.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
    );
}

/// The access log's `reason`: why the request went where it went, and for rwproxy's own
/// refusals the `rwproxy-error` code (`loop`, `no-primary`...), which says more than the
/// route's reason (a refused request has none of its own).
fn logged_reason(routed: Option<&Routed>, response: &Response<Body>) -> &'static str {
    match routed {
        Some(r) if r.route == "rejected" => response
            .headers()
            .get(&RWPROXY_ERROR)
            .and_then(|v| v.to_str().ok())
            .and_then(rwproxy_core::ErrorCode::from_code)
            .map_or(r.reason.as_str(), |c| c.as_str()),
        Some(r) => r.reason.as_str(),
        None => rwproxy_core::Reason::Normal.as_str(),
    }
}

/// True for the answer to a caught panic.
fn is_internal(response: &Response<Body>) -> bool {
    response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && response
            .headers()
            .get(&RWPROXY_ERROR)
            .is_some_and(|v| v == "internal")
}

/// Milliseconds, rounded to the microsecond (`1.632`, never `1.6319139999999999`).
fn duration_ms(elapsed: Duration) -> f64 {
    let micros = (elapsed.as_nanos() + 500) / 1000;
    micros as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_rounded_to_the_microsecond() {
        let printed = |d: Duration| serde_json::to_string(&duration_ms(d)).unwrap();
        assert_eq!(printed(Duration::from_nanos(1_631_914)), "1.632");
        assert_eq!(printed(Duration::from_nanos(1_631_400)), "1.631");
        assert_eq!(printed(Duration::from_nanos(999)), "0.001");
        assert_eq!(printed(Duration::from_nanos(400)), "0.0");
        assert_eq!(printed(Duration::from_micros(20_000_123)), "20000.123");
    }

    #[test]
    fn a_refusal_is_logged_with_its_code_not_reason_normal() {
        use rwproxy_core::{ErrorCode, Reason, RequestClass};
        let refused = super::super::outcome::routed(
            crate::respond::error(ErrorCode::Loop),
            RequestClass::Write,
            "rejected",
            Reason::Normal,
        );
        let routed = Routed::of(&refused);
        assert_eq!(logged_reason(routed.as_ref(), &refused), "loop");
        let forwarded = super::super::outcome::routed(
            Response::new(Body::empty()),
            RequestClass::Write,
            "primary",
            Reason::Write,
        );
        let routed = Routed::of(&forwarded);
        assert_eq!(logged_reason(routed.as_ref(), &forwarded), "write");
    }
}
