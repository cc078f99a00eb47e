//! A keep-alive connection pool over hyper's HTTP/1 client connections.
//!
//! rwproxy owns its pool (rather than hyper-util's legacy client) because routing safety needs
//! two facts the legacy client hides: whether a request body was handed to a connection at all
//! (a failed connect returns the request, body intact, so it can go to a new primary or wait for
//! a starting app), and whether a request that failed on a reused connection was ever written
//! (hyper's `try_send_request` gives it back when it was not).
//!
//! A pool may cap the connections open to each upstream (`PoolConfig::max_per_target`, used for
//! the local app). Past the cap a request queues, first come first served: a connection checked
//! in goes straight to the oldest waiter, and a closed one lets the next waiter connect. A
//! request still waiting after `queue_timeout` is handed back unsent.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use http::{Request, Response};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::multiplex::{ConnectionCounts, OpenReason};
use crate::body::{Body, Checkin, ConnectionHome};
use crate::tls::UpstreamTls;

/// How many times a request the pool got back unsent is tried on another connection.
const UNSENT_RETRIES: usize = 3;
/// Connection attempts in flight at once, per pool. A herd of requests released together (reads
/// whose position just arrived) would otherwise open hundreds of connections in the same
/// instant and overflow the upstream's accept backlog, costing a one-second SYN retry.
const MAX_CONCURRENT_CONNECTS: usize = 32;
/// Pause between connect attempts while an upstream refuses connections (cold start).
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Where requests go: one upstream origin.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// `host:port` to connect to; also the pool key.
    pub authority: Authority,
    /// Scheme of the upstream: `https` connects with TLS (see [`Pool::with_tls`]).
    pub scheme: Scheme,
}

impl Target {
    /// A target for an `http://host[:port]` origin; the port defaults to 80.
    pub fn http(authority: Authority) -> Self {
        Target {
            authority,
            scheme: Scheme::HTTP,
        }
    }

    /// A target for an `https://host[:port]` origin; the port defaults to 443.
    pub fn https(authority: Authority) -> Self {
        Target {
            authority,
            scheme: Scheme::HTTPS,
        }
    }

    pub(crate) fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    pub(crate) fn host_port(&self) -> (&str, u16) {
        let host = self.authority.host();
        // IPv6 literals keep their brackets in `host()`.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let default_port = if self.is_https() { 443 } else { 80 };
        (host, self.authority.port_u16().unwrap_or(default_port))
    }
}

/// Why a request failed, and whether it can have reached the upstream's app.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: the request never left this node and is handed back.
    Connect {
        /// The connect error.
        error: io::Error,
        /// The untouched request, body included.
        request: Box<Request<Body>>,
    },
    /// Every connection the pool may open to the target stayed busy for the queue timeout: the
    /// request never left this node and is handed back.
    Saturated {
        /// The untouched request, body included.
        request: Box<Request<Body>>,
    },
    /// The request was handed to a connection and then failed: it may have been applied.
    Sent(hyper::Error),
}

/// Pool settings.
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    /// Idle connections kept per upstream.
    pub max_idle_per_target: usize,
    /// How long an idle connection is kept before it is dropped.
    pub idle_timeout: Duration,
    /// Connections open at once per upstream, idle, busy or connecting (`None`: no limit).
    /// Connections handed to an upgraded protocol (WebSockets) no longer count.
    pub max_per_target: Option<usize>,
    /// How long a request waits for a connection once `max_per_target` are open.
    pub queue_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_idle_per_target: 256,
            idle_timeout: Duration::from_secs(60),
            max_per_target: None,
            queue_timeout: Duration::from_secs(5),
        }
    }
}

/// A shared pool of keep-alive HTTP/1 connections, keyed by upstream authority.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    config: PoolConfig,
    // A std mutex held for a push or a pop only, never across an await. Keyed by the
    // authority's text: `Authority` hashes and compares byte by byte, case-insensitively, which
    // costs more than the rest of a checkout; the keys come from the configuration and the
    // cluster source, so one spelling per upstream.
    upstreams: Mutex<Upstreams>,
    connects: tokio::sync::Semaphore,
    // How `https` targets are reached; without it they cannot be.
    tls: Option<UpstreamTls>,
    // Connections opened and open, for the metrics of the path to the primary.
    counts: Option<Arc<ConnectionCounts>>,
}

type Upstreams = HashMap<Box<str>, Upstream, BuildHasherDefault<KeyHasher>>;

/// FNV-1a for the pool's keys, which SipHash would make costly on every checkout and checkin;
/// the keys come from the configuration and the cluster source, never from clients, so
/// flooding resistance buys nothing here.
struct KeyHasher(u64);

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

#[derive(Debug)]
struct IdleConn {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

/// One upstream's connections.
#[derive(Debug)]
struct Upstream {
    idle: Vec<IdleConn>,
    /// Requests waiting for a connection while the cap is reached, oldest first. A waiter that
    /// gave up has dropped its receiver, which a hand-over notices.
    waiting: VecDeque<oneshot::Sender<http1::SendRequest<Body>>>,
    /// One permit per open connection, held by the connection's task (`None`: no cap).
    open: Option<Arc<Semaphore>>,
}

impl Upstream {
    fn new(config: &PoolConfig) -> Self {
        Upstream {
            idle: Vec::new(),
            waiting: VecDeque::new(),
            open: config
                .max_per_target
                .map(|n| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS)))),
        }
    }

    /// The most recently used idle connection still usable: it is the least likely to have
    /// been closed by the peer. Stale ones on the way are dropped.
    fn take_idle(&mut self, idle_timeout: Duration) -> Option<http1::SendRequest<Body>> {
        while let Some(conn) = self.idle.pop() {
            if conn.sender.is_ready() && conn.since.elapsed() < idle_timeout {
                return Some(conn.sender);
            }
        }
        None
    }
}

/// What a checkout got: a connection, or the right to open one.
enum Checkout {
    Idle(http1::SendRequest<Body>),
    /// Under the cap (or no cap): connect, holding the permit for the connection's life.
    Connect(Option<OwnedSemaphorePermit>),
    /// At the cap: wait for a connection handed over, or for a permit.
    Wait(oneshot::Receiver<http1::SendRequest<Body>>, Arc<Semaphore>),
}

/// Why no connection could be had.
enum CheckoutError {
    Connect(io::Error),
    Saturated,
}

impl ConnectionHome for PoolInner {
    fn take_back(&self, key: Authority, sender: http1::SendRequest<Body>) {
        self.put(key, sender);
    }
}

impl PoolInner {
    /// The upstreams' state, locked for a push or a pop.
    fn upstreams(&self) -> MutexGuard<'_, Upstreams> {
        self.upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection free for the next request: to the oldest live waiter, else to the idle list.
    fn put(&self, key: Authority, mut sender: http1::SendRequest<Body>) {
        let mut upstreams = self.upstreams();
        let upstream = match upstreams.get_mut(key.as_str()) {
            Some(upstream) => upstream,
            // The first connection to this upstream: the only time a key is allocated.
            None => upstreams
                .entry(key.as_str().into())
                .or_insert_with(|| Upstream::new(&self.config)),
        };
        while let Some(waiter) = upstream.waiting.pop_front() {
            match waiter.send(sender) {
                Ok(()) => return,
                // That waiter gave up: try the next.
                Err(back) => sender = back,
            }
        }
        if upstream.idle.len() < self.config.max_idle_per_target {
            upstream.idle.push(IdleConn {
                sender,
                since: Instant::now(),
            });
        }
    }

    fn checkout(&self, key: &Authority) -> Checkout {
        let mut upstreams = self.upstreams();
        let Some(upstream) = upstreams.get_mut(key.as_str()) else {
            let upstream = Upstream::new(&self.config);
            let permit = upstream.open.clone().map(Semaphore::try_acquire_owned);
            upstreams.insert(key.as_str().into(), upstream);
            return Checkout::Connect(permit.and_then(Result::ok));
        };
        if let Some(sender) = upstream.take_idle(self.config.idle_timeout) {
            return Checkout::Idle(sender);
        }
        let Some(open) = &upstream.open else {
            return Checkout::Connect(None);
        };
        // Waiters mostly give up in the order they came (one timeout for all), so those who did
        // gather at the front; dropped here, they cannot pile up while no connection comes back
        // (a hung app). The few in the middle (a client gone, a waiter that got a permit) go
        // when they reach the front or a hand-over passes them.
        while upstream.waiting.front().is_some_and(|w| w.is_closed()) {
            upstream.waiting.pop_front();
        }
        // Queued requests go first: a newcomer does not take a permit they wait for.
        if upstream.waiting.is_empty() {
            if let Ok(permit) = open.clone().try_acquire_owned() {
                return Checkout::Connect(Some(permit));
            }
        }
        let (tx, rx) = oneshot::channel();
        upstream.waiting.push_back(tx);
        Checkout::Wait(rx, open.clone())
    }

    fn take_idle(&self, key: &Authority) -> Option<http1::SendRequest<Body>> {
        let mut upstreams = self.upstreams();
        upstreams
            .get_mut(key.as_str())?
            .take_idle(self.config.idle_timeout)
    }
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Pool {
            inner: Arc::new(PoolInner {
                config,
                upstreams: Mutex::new(HashMap::default()),
                connects: Semaphore::new(MAX_CONCURRENT_CONNECTS),
                tls: None,
                counts: None,
            }),
        }
    }

    /// An empty pool that reaches `https` targets with `tls`.
    pub fn with_tls(config: PoolConfig, tls: Option<UpstreamTls>) -> Self {
        let mut pool = Pool::new(config);
        if let Some(inner) = Arc::get_mut(&mut pool.inner) {
            inner.tls = tls;
        }
        pool
    }

    /// The same pool, counting the connections it opens in `counts`.
    pub fn counting(mut self, counts: Arc<ConnectionCounts>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.counts = Some(counts);
        }
        self
    }

    /// Keeps `want` idle connections to `target` younger than `refresh_after`: older ones are
    /// dropped, missing ones opened (counted as warm). The first connect error ends the round.
    pub async fn warm(
        &self,
        target: &Target,
        want: usize,
        connect_timeout: Duration,
        refresh_after: Duration,
    ) -> io::Result<()> {
        let fresh = {
            let mut upstreams = self.inner.upstreams();
            let upstream = upstreams
                .entry(target.authority.as_str().into())
                .or_insert_with(|| Upstream::new(&self.inner.config));
            upstream
                .idle
                .retain(|c| c.sender.is_ready() && c.since.elapsed() < refresh_after);
            upstream.idle.len()
        };
        for _ in fresh..want {
            let counts = self.inner.counts.clone();
            let tls = self.inner.tls.as_ref();
            let sender = connect(target, tls, &mut None, counts, connect_timeout).await?;
            if let Some(counts) = &self.inner.counts {
                counts.created(OpenReason::Warm);
            }
            self.inner.put(target.authority.clone(), sender);
        }
        Ok(())
    }

    /// Idle connections currently pooled for `target` (for metrics and tests).
    pub fn idle_count(&self, target: &Target) -> usize {
        let upstreams = self.inner.upstreams();
        upstreams
            .get(target.authority.as_str())
            .map_or(0, |u| u.idle.len())
    }

    /// Requests waiting for a connection (at the cap), for every target together.
    pub fn queued_total(&self) -> usize {
        let upstreams = self.inner.upstreams();
        upstreams
            .values()
            .flat_map(|u| &u.waiting)
            .filter(|w| !w.is_closed())
            .count()
    }

    /// Idle connections currently pooled for every target together.
    pub fn idle_total(&self) -> usize {
        let upstreams = self.inner.upstreams();
        upstreams.values().map(|u| u.idle.len()).sum()
    }

    /// Sends `request` to `target` on a pooled or new connection.
    ///
    /// While the target refuses connections, connecting is retried until `connect_retry` has
    /// passed (zero: one attempt); each attempt is bounded by `connect_timeout`.
    pub async fn send(
        &self,
        target: &Target,
        mut request: Request<Body>,
        connect_timeout: Duration,
        connect_retry: Duration,
    ) -> Result<Response<Body>, SendError> {
        let mut unsent_retries = 0;
        loop {
            let connected = self
                .checkout_or_connect(target, connect_timeout, connect_retry)
                .await;
            let mut sender = match connected {
                Ok(sender) => sender,
                Err(CheckoutError::Connect(error)) => {
                    return Err(SendError::Connect {
                        error,
                        request: Box::new(request),
                    })
                }
                Err(CheckoutError::Saturated) => {
                    return Err(SendError::Saturated {
                        request: Box::new(request),
                    })
                }
            };
            match sender.try_send_request(request).await {
                // The connection now belongs to the upgraded protocol: never back to the pool.
                Ok(response) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                    let (parts, incoming) = response.into_parts();
                    return Ok(Response::from_parts(parts, Body::stream(incoming)));
                }
                Ok(response) => {
                    let checkin =
                        Checkin::new(self.inner.clone(), target.authority.clone(), sender);
                    let (parts, incoming) = response.into_parts();
                    return Ok(Response::from_parts(
                        parts,
                        Body::upstream(incoming, checkin),
                    ));
                }
                Err(err) => request = retry_unsent(err, &mut unsent_retries)?,
            }
        }
    }
}

impl Pool {
    /// An idle connection, or a new one. At the cap, the first connection handed over or the
    /// first freed permit, whichever comes first. Waiting for a connect slot, it takes a
    /// connection that another request returned meanwhile rather than opening one more.
    async fn checkout_or_connect(
        &self,
        target: &Target,
        connect_timeout: Duration,
        connect_retry: Duration,
    ) -> Result<http1::SendRequest<Body>, CheckoutError> {
        let open = match self.inner.checkout(&target.authority) {
            Checkout::Idle(sender) => return Ok(sender),
            Checkout::Connect(permit) => permit,
            // Boxed: most requests never queue.
            Checkout::Wait(handed_over, open) => {
                match Box::pin(self.wait_in_queue(handed_over, open)).await {
                    Some(Queued::HandedOver(sender)) => return Ok(sender),
                    Some(Queued::MayConnect(permit)) => Some(permit),
                    None => return Err(CheckoutError::Saturated),
                }
            }
        };
        let _connecting = self
            .inner
            .connects
            .acquire()
            .await
            .map_err(|_| CheckoutError::Connect(io::Error::other("pool closed")))?;
        if let Some(sender) = self.inner.take_idle(&target.authority) {
            return Ok(sender);
        }
        let tls = self.inner.tls.as_ref();
        // Boxed: connecting (with TLS) is a large future that most requests, served by a pooled
        // connection, never start; inline, every request's future would carry its size.
        Box::pin(connect_with_retry(
            target,
            tls,
            open,
            self.inner.counts.clone(),
            connect_timeout,
            connect_retry,
        ))
        .await
        .inspect(|_| {
            if let Some(counts) = &self.inner.counts {
                counts.created(OpenReason::Demand);
            }
        })
        .map_err(CheckoutError::Connect)
    }

    /// The request's turn, or `None` when `queue_timeout` passed first.
    async fn wait_in_queue(
        &self,
        handed_over: oneshot::Receiver<http1::SendRequest<Body>>,
        open: Arc<Semaphore>,
    ) -> Option<Queued> {
        let turn = async {
            tokio::select! {
                // A hand-over first: a connection sent to this waiter is lost if left unread.
                biased;
                sender = handed_over => sender.ok().map(Queued::HandedOver),
                permit = open.acquire_owned() => permit.ok().map(Queued::MayConnect),
            }
        };
        tokio::time::timeout(self.inner.config.queue_timeout, turn)
            .await
            .ok()
            .flatten()
    }
}

/// A request that failed on a connection: back for another try when it was never written (at
/// most [`UNSENT_RETRIES`] times, then handed back unsent), else the error that it may have
/// reached the upstream.
pub(crate) fn retry_unsent(
    mut err: hyper::client::conn::TrySendError<Request<Body>>,
    retries: &mut usize,
) -> Result<Request<Body>, SendError> {
    match err.take_message() {
        Some(back) if *retries < UNSENT_RETRIES => {
            *retries += 1;
            Ok(back)
        }
        Some(back) => {
            let error = io::Error::new(io::ErrorKind::ConnectionAborted, err.into_error());
            Err(SendError::Connect {
                error,
                request: Box::new(back),
            })
        }
        None => Err(SendError::Sent(err.into_error())),
    }
}

/// How a queued request got its turn.
enum Queued {
    HandedOver(http1::SendRequest<Body>),
    MayConnect(OwnedSemaphorePermit),
}

async fn connect_with_retry(
    target: &Target,
    tls: Option<&UpstreamTls>,
    mut open: Option<OwnedSemaphorePermit>,
    counts: Option<Arc<ConnectionCounts>>,
    connect_timeout: Duration,
    retry_for: Duration,
) -> io::Result<http1::SendRequest<Body>> {
    let deadline = Instant::now() + retry_for;
    loop {
        match connect(target, tls, &mut open, counts.clone(), connect_timeout).await {
            Ok(sender) => return Ok(sender),
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionRefused
                    && Instant::now() + CONNECT_RETRY_PAUSE < deadline =>
            {
                tracing::debug!(upstream = %target.authority, "connection refused; retrying");
                tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One connection attempt; the connection's task takes `open` (its slot under the cap) on success.
async fn connect(
    target: &Target,
    tls: Option<&UpstreamTls>,
    open: &mut Option<OwnedSemaphorePermit>,
    counts: Option<Arc<ConnectionCounts>>,
    timeout: Duration,
) -> io::Result<http1::SendRequest<Body>> {
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
    let started = tokio::time::Instant::now();
    let stream = tokio::time::timeout(timeout, TcpStream::connect(target.host_port()))
        .await
        .map_err(|_| timed_out())??;
    // Proxied requests are small writes that must not wait for Nagle.
    stream.set_nodelay(true)?;
    if !target.is_https() {
        return handshake(stream, open, counts).await;
    }
    let Some(tls) = tls else {
        return Err(io::Error::other("https upstream without a TLS client"));
    };
    // The TLS handshake shares the connect timeout. Its failures (a bad certificate) come back
    // as connect errors: the request never left this node.
    let stream =
        tokio::time::timeout_at(started + timeout, tls.connect(target.host_port().0, stream))
            .await
            .map_err(|_| timed_out())??;
    if let Some(counts) = &counts {
        counts.tls_handshake(stream.get_ref().1.handshake_kind());
    }
    handshake(stream, open, counts).await
}

async fn handshake<S>(
    stream: S,
    open: &mut Option<OwnedSemaphorePermit>,
    counts: Option<Arc<ConnectionCounts>>,
) -> io::Result<http1::SendRequest<Body>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e))?;
    let open = open.take();
    if let Some(counts) = &counts {
        counts
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
        if let Some(counts) = counts {
            counts
                .open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        // The slot frees when the connection closes (or is handed to an upgraded protocol).
        drop(open);
    });
    Ok(sender)
}

#[cfg(test)]
mod tests;
