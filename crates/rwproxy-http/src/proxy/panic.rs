//! Panics while handling a request become `500` with `rwproxy-error: internal` instead of a
//! connection closed with no answer.
//!
//! tower-http's `CatchPanicLayer` does not fit: it boxes every response body
//! (`UnsyncBoxBody`), an allocation and a dynamic call per body frame on every request, to
//! catch what should never happen. This layer keeps rwproxy's body type.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::{CatchUnwind, FutureExt as _};
use http::{Request, Response};
use pin_project_lite::pin_project;
use rwproxy_core::ErrorCode;
use tower::{Layer, Service};

use crate::body::Body;
use crate::respond;

/// Builds [`CatchPanic`] services.
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// Answers a panic with `500 internal`; see [`CatchPanicLayer`].
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = PanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
            Ok(future) => PanicFuture::Running {
                future: AssertUnwindSafe(future).catch_unwind(),
            },
            Err(panic) => PanicFuture::Panicked { panic: Some(panic) },
        }
    }
}

pin_project! {
    /// The response future of [`CatchPanic`].
    #[project = PanicProj]
    pub enum PanicFuture<F> {
        /// The request is being handled.
        Running {
            #[pin]
            future: CatchUnwind<AssertUnwindSafe<F>>,
        },
        /// The service panicked before it returned a future.
        Panicked {
            panic: Option<Box<dyn Any + Send>>,
        },
    }
}

impl<F, E> Future for PanicFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PanicProj::Running { future } => match future.poll(cx) {
                Poll::Ready(Ok(result)) => Poll::Ready(result),
                Poll::Ready(Err(panic)) => Poll::Ready(Ok(internal(&*panic))),
                Poll::Pending => Poll::Pending,
            },
            PanicProj::Panicked { panic } => {
                let message = panic.take();
                Poll::Ready(Ok(internal(message.as_deref().unwrap_or(&"panic"))))
            }
        }
    }
}

/// The answer to a caught panic, logged with its message.
fn internal(panic: &(dyn Any + Send)) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(
        panic = message,
        "request handling panicked; answered 500 internal"
    );
    respond::error(ErrorCode::Internal)
}
