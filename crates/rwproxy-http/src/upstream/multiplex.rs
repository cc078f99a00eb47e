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
//!
//! A write is only handed to a connection whose peer is known to speak HTTP/2: a warm
//! connection joins the set once the peer's SETTINGS frame arrived ([`super::sniff`]), and a
//! plain-text connection opened for a request waits for it too while the origin's protocol is
//! unknown (over TLS, ALPN `h2` is the peer's word). A
//! peer that answers otherwise (an HTTP/1.1-only server behind `primary_url`: LiteFS's proxy,
//! nginx, a Go `net/http` server) is remembered as [`PeerProtocol::Http1`] until the primary
//! changes; the caller then forwards over HTTP/1.1 ([`SendError::Connect`] with
//! `ErrorKind::Unsupported`, the request untouched). Over TLS, ALPN decides the same.

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
use tokio::sync::oneshot;

use super::pool::{retry_unsent, SendError, Target};
use super::sniff::{self, Heard, Sniffed};
use crate::body::Body;
use crate::tls::UpstreamTls;

/// A connection that received nothing for this long is PINGed (idle or not); well under the
/// usual idle timeouts of NATs and load balancers (60 s and more). With [`PING_TIMEOUT`] it
/// bounds how long a silently dead connection (a link that drops packets without closing)
/// holds a write handed to it: at most 8 s after the last frame from the primary, then the
/// write is answered 502 `primary-failed` (it may have been applied) and never resent.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A PING unanswered this long closes the connection: many round trips even across the
/// planet (250 ms), room for a few TCP retransmissions of the PING or its answer.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);

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
    /// Primaries found not to speak HTTP/2 (so forwarded to over HTTP/1.1 until the primary
    /// changes).
    pub http2_fallbacks: AtomicU64,
    /// TLS handshakes to primaries that were full ones (certificates checked).
    pub tls_full: AtomicU64,
    /// TLS handshakes to primaries that resumed an earlier session.
    pub tls_resumed: AtomicU64,
}

impl ConnectionCounts {
    pub(crate) fn created(&self, reason: OpenReason) {
        let counter = match reason {
            OpenReason::Warm => &self.created_warm,
            OpenReason::Demand => &self.created_demand,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a finished TLS handshake by kind (resumed or full).
    pub(crate) fn tls_handshake(&self, kind: Option<rustls::HandshakeKind>) {
        let counter = match kind {
            Some(rustls::HandshakeKind::Resumed) => &self.tls_resumed,
            _ => &self.tls_full,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a primary's rwproxy (or whatever `primary_url` reaches) was found to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerProtocol {
    /// HTTP/2: its first frame was SETTINGS (h2c), or it chose `h2` by ALPN.
    Http2,
    /// HTTP/1.1 only: requests to it take the HTTP/1.1 pool.
    Http1,
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
    /// What each target was found to speak; absent: not known yet.
    protocols: Mutex<HashMap<Authority, PeerProtocol>>,
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
                protocols: Mutex::default(),
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
    /// one): they close once their requests in flight end. What they speak is forgotten too:
    /// a node that is primary again is asked again.
    pub fn retain_only(&self, keep: Option<&Target>) {
        let kept = |authority: &Authority| keep.is_some_and(|t| t.authority == *authority);
        self.conns().retain(|authority, _| kept(authority));
        self.protocols().retain(|authority, _| kept(authority));
    }

    fn protocols(&self) -> MutexGuard<'_, HashMap<Authority, PeerProtocol>> {
        self.inner
            .protocols
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What `target` was found to speak, if it is known yet.
    pub fn protocol(&self, target: &Target) -> Option<PeerProtocol> {
        self.protocols().get(&target.authority).copied()
    }

    /// Records what `target` speaks; the first time it is found not to speak HTTP/2 is counted
    /// and logged (once per primary: forgotten when the primary changes).
    fn learned(&self, target: &Target, protocol: PeerProtocol, why: &str) {
        let before = self.protocols().insert(target.authority.clone(), protocol);
        if protocol == PeerProtocol::Http1 && before != Some(PeerProtocol::Http1) {
            self.inner
                .counts
                .http2_fallbacks
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                upstream = %target.authority,
                why,
                "the primary does not speak HTTP/2; forwarding to it over HTTP/1.1 until the primary changes"
            );
        }
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
    /// waited for it uses it). A target known to speak HTTP/1.1 only is refused at once
    /// (`ErrorKind::Unsupported`).
    async fn checkout(
        &self,
        target: &Target,
        connect_timeout: Duration,
    ) -> io::Result<http2::SendRequest<Body>> {
        if self.protocol(target) == Some(PeerProtocol::Http1) {
            return Err(not_http2());
        }
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

    /// One new connection: TCP, TLS with ALPN `h2` for `https`, the HTTP/2 handshake. A warm
    /// connection, and any connection to a target not yet known to speak HTTP/2, is returned
    /// only once the peer's SETTINGS frame arrived: a dead or foreign peer never gets a write.
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
        let (sender, heard) = if target.is_https() {
            let Some(tls) = &self.inner.tls else {
                return Err(io::Error::other("https upstream without a TLS client"));
            };
            let stream = tokio::time::timeout_at(
                started + timeout,
                tls.connect_h2(target.host_port().0, stream),
            )
            .await
            .map_err(|_| timed_out())??;
            self.inner
                .counts
                .tls_handshake(stream.get_ref().1.handshake_kind());
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                self.learned(
                    target,
                    PeerProtocol::Http1,
                    "it did not agree to HTTP/2 by ALPN",
                );
                return Err(not_http2());
            }
            self.learned(target, PeerProtocol::Http2, "ALPN h2");
            self.handshake(stream).await?
        } else {
            self.handshake(stream).await?
        };
        // A warm connection is heard from before it counts as ready (a dead one never does);
        // over TLS, ALPN already told the protocol.
        let must_hear = reason == OpenReason::Warm
            || (!target.is_https() && self.protocol(target) != Some(PeerProtocol::Http2));
        if must_hear {
            let heard = tokio::time::timeout_at(started + timeout, heard)
                .await
                .map_err(|_| timed_out())?
                .unwrap_or(Heard::NotHttp2(sniff::CLOSED_EARLY));
            match heard {
                Heard::Settings => self.learned(target, PeerProtocol::Http2, "SETTINGS"),
                Heard::NotHttp2(why) => {
                    // Dropping the sender closes the connection: nothing was sent on it.
                    self.learned(target, PeerProtocol::Http1, why);
                    return Err(not_http2());
                }
            }
        }
        self.inner.counts.created(reason);
        tracing::debug!(upstream = %target.authority, ?reason, "HTTP/2 connection to the primary opened");
        Ok(sender)
    }

    /// The HTTP/2 handshake over `stream`, and the verdict on the peer's first bytes.
    async fn handshake<S>(
        &self,
        stream: S,
    ) -> io::Result<(http2::SendRequest<Body>, oneshot::Receiver<Heard>)>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (stream, heard) = Sniffed::new(stream);
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
        Ok((sender, heard))
    }
}

/// The error that sends a request to the HTTP/1.1 pool: the primary does not speak HTTP/2.
fn not_http2() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the primary does not speak HTTP/2",
    )
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
