//! HTTP/1.1 upgrades (WebSockets and any other `Upgrade` protocol), tunnelled to wherever the
//! route sends the request: the local app for reads, the primary for writes.
//!
//! The upgrade request travels like any other (with `Connection: upgrade` and `Upgrade` kept,
//! see [`upgrade_protocol`]); when the upstream answers `101`, both connections are taken over
//! from HTTP and bytes are copied both ways until either side closes or the tunnel has been
//! silent for `proxy.upgrade_idle_timeout`. The upstream connection never returns to the pool.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use rwproxy_core::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::meta::set_routed;
use super::outcome::Routed;
use crate::body::Body;
use crate::respond;
use crate::upstream::headers::upgrade_protocol;

/// Builds [`Upgrade`] services: tunnels for requests whose upstream answered `101`.
#[derive(Clone, Copy, Debug)]
pub struct UpgradeLayer {
    idle_timeout: Duration,
}

impl UpgradeLayer {
    /// Tunnels closed after `idle_timeout` of silence both ways (`proxy.upgrade_idle_timeout`).
    pub fn new(idle_timeout: Duration) -> Self {
        UpgradeLayer { idle_timeout }
    }
}

impl<S> Layer<S> for UpgradeLayer {
    type Service = Upgrade<S>;

    fn layer(&self, inner: S) -> Upgrade<S> {
        Upgrade {
            inner,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// Tunnels upgraded connections; see [`UpgradeLayer`].
#[derive(Clone, Debug)]
pub struct Upgrade<S> {
    inner: S,
    idle_timeout: Duration,
}

impl<S, B> Service<Request<B>> for Upgrade<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = UpgradeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The client's side of an upgrade request is taken before the request is forwarded.
        let client = upgrade_protocol(request.version(), request.headers())
            .is_some()
            .then(|| hyper::upgrade::on(&mut request));
        UpgradeFuture {
            inner: self.inner.call(request),
            client,
            idle_timeout: self.idle_timeout,
        }
    }
}

pin_project! {
    /// The response future of [`Upgrade`].
    pub struct UpgradeFuture<F> {
        #[pin]
        inner: F,
        client: Option<OnUpgrade>,
        idle_timeout: Duration,
    }
}

impl<F, E> Future for UpgradeFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        finish(this.client.take(), &mut response, *this.idle_timeout);
        Poll::Ready(Ok(response))
    }
}

/// Turns an upstream `101` into a tunnel between the client and the upstream. A `101` to a
/// request that asked for no upgrade is the upstream's error, answered 502.
fn finish(client: Option<OnUpgrade>, response: &mut Response<Body>, idle_timeout: Duration) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let Some(client) = client else {
        tracing::warn!("upstream switched protocols without an upgrade request");
        let routed = Routed::of(response);
        let code = if routed.is_some_and(|r| r.route == "primary") {
            ErrorCode::PrimaryFailed
        } else {
            ErrorCode::AppUnreachable
        };
        let mut refusal = respond::error(code);
        if let Some(routed) = routed {
            set_routed(refusal.extensions_mut(), routed);
        }
        *response = refusal;
        return;
    };
    let upstream = hyper::upgrade::on(&mut *response);
    tokio::spawn(tunnel(client, upstream, idle_timeout));
}

/// Copies bytes both ways until one side closes, an error, or `idle_timeout` of silence.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, idle_timeout: Duration) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    let activity = Activity::new();
    // Every byte crosses the client side, one way or the other: watching it is enough.
    let mut client = Watched {
        inner: TokioIo::new(client),
        activity: activity.clone(),
    };
    let mut upstream = TokioIo::new(upstream);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let idle_until = activity.last() + idle_timeout;
        tokio::select! {
            copied = &mut copy => {
                match copied {
                    Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
                    Err(error) => tracing::debug!(%error, "upgraded connection failed"),
                }
                return;
            }
            () = tokio::time::sleep_until(idle_until) => {
                if activity.last() + idle_timeout <= Instant::now() {
                    tracing::debug!(idle_ms = idle_timeout.as_millis() as u64, "upgraded connection idle; closing it");
                    // Dropping both sides closes both connections.
                    return;
                }
            }
        }
    }
}

/// When bytes last moved, as milliseconds since the tunnel opened.
#[derive(Clone)]
struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// An IO that records when bytes were read from or written to it.
struct Watched<T> {
    inner: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
