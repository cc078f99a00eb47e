//! HTTP/2 connections to primaries' rwproxies: a few multiplexed connections per primary,
//! kept alive with PINGs, carrying every forwarded request but upgrades (which stay on the
//! HTTP/1.1 [`Pool`](super::Pool)).
//!
//! One HTTP/2 connection carries any number of writes at once (up to the primary's stream
//! limit), so a burst never waits for new connections, and PINGs both keep it open through
//! idle periods (no timeout on either side closes it) and find a dead one: hyper closes a
//! connection whose PING goes unanswered, and a closed connection is never handed a request.
//!
//! The two safety facts of the HTTP/1 pool hold here too: a request whose connection could not
//! be made, or that hyper hands back before writing it (`try_send_request`), comes back
//! untouched ([`SendError::Connect`]); anything else may have reached the primary
//! ([`SendError::Sent`]). A stream reset with `REFUSED_STREAM` is also unsent by the protocol's
//! word, but hyper does not hand the body back, so it is reported as sent: never delivered
//! twice, at worst answered with an error.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::pool::{retry_unsent, SendError, Target};
use crate::body::Body;
use crate::tls::UpstreamTls;

/// How often an idle connection is PINGed; well under the usual idle timeouts of NATs and load
/// balancers (60 s and more), and what bounds how long a silently dead connection goes unseen.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// A PING unanswered this long closes the connection.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection was opened (the `reason` label of
/// `rwproxy_primary_connections_created_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenReason {
    /// Ahead of any write: a primary became known, or the warm set is short.
    Warm,
    /// A request found no usable connection.
    Demand,
}

/// Counters of the connections to primaries, read at scrape time.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Opened ahead of writes ([`OpenReason::Warm`]).
    pub created_warm: AtomicU64,
    /// Opened by a request that found none ([`OpenReason::Demand`]).
    pub created_demand: AtomicU64,
}

impl ConnectionCounts {
    pub(crate) fn created(&self, reason: OpenReason) {
        let counter = match reason {
            OpenReason::Warm => &self.created_warm,
            OpenReason::Demand => &self.created_demand,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The multiplexed connections, per primary.
#[derive(Clone, Debug)]
pub struct Multiplexed {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Live connections per target authority; a std mutex held for a lookup only.
    conns: Mutex<HashMap<Authority, Vec<http2::SendRequest<Body>>>>,
    /// One connect at a time per pool: concurrent requests finding no connection wait for the
    /// one being made rather than each opening their own.
    connecting: tokio::sync::Mutex<()>,
    tls: Option<UpstreamTls>,
    counts: Arc<ConnectionCounts>,
    /// Next connection to use, round robin.
    next: AtomicUsize,
}

impl Multiplexed {
    /// An empty set; `https` targets are reached with `tls` (ALPN `h2`).
    pub fn new(tls: Option<UpstreamTls>, counts: Arc<ConnectionCounts>) -> Self {
        Multiplexed {
            inner: Arc::new(Inner {
                conns: Mutex::default(),
                connecting: tokio::sync::Mutex::new(()),
                tls,
                counts,
                next: AtomicUsize::new(0),
            }),
        }
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<Authority, Vec<http2::SendRequest<Body>>>> {
        self.inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Live connections to `target` (closed ones are forgotten on the way).
    pub fn live(&self, target: &Target) -> usize {
        let mut conns = self.conns();
        conns.get_mut(&target.authority).map_or(0, |list| {
            list.retain(|c| !c.is_closed());
            list.len()
        })
    }

    /// Forgets every connection to targets other than `keep` (a primary that is no longer
    /// one): they close once their requests in flight end.
    pub fn retain_only(&self, keep: Option<&Target>) {
        self.conns()
            .retain(|authority, _| keep.is_some_and(|t| t.authority == *authority));
    }

    /// A live connection to `target`, round robin, if any.
    fn pick(&self, target: &Target) -> Option<http2::SendRequest<Body>> {
        let mut conns = self.conns();
        let list = conns.get_mut(&target.authority)?;
        list.retain(|c| !c.is_closed());
        if list.is_empty() {
            return None;
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % list.len();
        Some(list[i].clone())
    }

    /// Opens connections until `target` has `want` live ones. Errors are the connect's.
    pub async fn fill(
        &self,
        target: &Target,
        want: usize,
        connect_timeout: Duration,
    ) -> io::Result<()> {
        while self.live(target) < want {
            let sender = self.open(target, connect_timeout, OpenReason::Warm).await?;
            self.conns()
                .entry(target.authority.clone())
                .or_default()
                .push(sender);
        }
        Ok(())
    }

    /// A connection for a request: a live one, else one opened now (one connect at a time; who
    /// waited for it uses it).
    async fn checkout(
        &self,
        target: &Target,
        connect_timeout: Duration,
    ) -> io::Result<http2::SendRequest<Body>> {
        if let Some(sender) = self.pick(target) {
            return Ok(sender);
        }
        let _connecting = self.inner.connecting.lock().await;
        if let Some(sender) = self.pick(target) {
            return Ok(sender);
        }
        let sender = self
            .open(target, connect_timeout, OpenReason::Demand)
            .await?;
        self.conns()
            .entry(target.authority.clone())
            .or_default()
            .push(sender.clone());
        Ok(sender)
    }

    /// Sends `request` to `target` over HTTP/2; see the module docs for what an error means.
    pub async fn send(
        &self,
        target: &Target,
        request: Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<Body>, SendError> {
        let mut request = for_http2(request, target);
        let mut unsent_retries = 0;
        loop {
            let mut sender = match self.checkout(target, connect_timeout).await {
                Ok(sender) => sender,
                Err(error) => {
                    return Err(SendError::Connect {
                        error,
                        request: Box::new(request),
                    })
                }
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (mut parts, incoming) = response.into_parts();
                    // As the HTTP/1.1 pool's answers: the client's own protocol decides.
                    parts.version = Version::HTTP_11;
                    return Ok(Response::from_parts(parts, Body::stream(incoming)));
                }
                Err(err) => request = retry_unsent(err, &mut unsent_retries)?,
            }
        }
    }

    /// One new connection: TCP, TLS with ALPN `h2` for `https`, the HTTP/2 handshake.
    async fn open(
        &self,
        target: &Target,
        timeout: Duration,
        reason: OpenReason,
    ) -> io::Result<http2::SendRequest<Body>> {
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        let started = tokio::time::Instant::now();
        let stream = tokio::time::timeout(timeout, TcpStream::connect(target.host_port()))
            .await
            .map_err(|_| timed_out())??;
        stream.set_nodelay(true)?;
        let sender = if target.is_https() {
            let Some(tls) = &self.inner.tls else {
                return Err(io::Error::other("https upstream without a TLS client"));
            };
            let stream = tokio::time::timeout_at(
                started + timeout,
                tls.connect_h2(target.host_port().0, stream),
            )
            .await
            .map_err(|_| timed_out())??;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the primary did not agree to HTTP/2 (ALPN h2)",
                ));
            }
            self.handshake(stream).await?
        } else {
            self.handshake(stream).await?
        };
        self.inner.counts.created(reason);
        tracing::debug!(upstream = %target.authority, ?reason, "HTTP/2 connection to the primary opened");
        Ok(sender)
    }

    async fn handshake<S>(&self, stream: S) -> io::Result<http2::SendRequest<Body>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e))?;
        let counts = self.inner.counts.clone();
        counts.open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP/2 connection to the primary ended with an error");
            }
            counts.open.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(sender)
    }
}

/// The request as HTTP/2 sends it: an absolute URI whose authority is the request's `Host`
/// (what the primary's app sees is unchanged: the head keeps `Host`), the target's scheme.
fn for_http2(mut request: Request<Body>, target: &Target) -> Request<Body> {
    let authority = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .or_else(|| request.uri().authority().cloned())
        .unwrap_or_else(|| target.authority.clone());
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let scheme = if target.is_https() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    if let Ok(uri) = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = Version::HTTP_2;
    request
}
