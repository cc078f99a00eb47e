//! Listeners: accepting connections (HTTP/1.1 and h2c with prior knowledge, or either over TLS
//! with ALPN), serving them with a service, and draining them on shutdown.

mod conn;
mod drain;
mod spare;
mod tls_conn;
mod write_deadline;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;

use futures_util::future::Either;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::util::Oneshot;

use conn::{serve_plain, Builders, ConnService, ConnSettings};
use drain::DrainSignal;
use spare::{Recycle, SpareExtensions};

use crate::body::Body;
use crate::metrics::Metrics;
use crate::tls::ServerTls;
use crate::upstream::headers::ClientInfo;

/// Limits applied to client connections.
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// Time allowed for a client to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1); larger ones get 431.
    pub max_header_bytes: usize,
    /// Most client connections open at once; past it the listener stops accepting (the kernel's
    /// backlog holds new ones) until one closes.
    pub max_connections: usize,
    /// Longest a client may leave a response unread (no write progress) before its connection
    /// is closed (`proxy.write_timeout`); `None`: unbounded.
    pub write_timeout: Option<Duration>,
    /// Write HTTP/1.1 response header names in Title-Case (`Content-Type`), as Go servers (and
    /// so LiteFS's proxy) do, for clients that wrongly depend on it (`proxy.title_case_headers`).
    pub title_case_headers: bool,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            write_timeout: Some(Duration::from_secs(60)),
            title_case_headers: false,
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to `drain_timeout` for open connections to finish their requests.
pub async fn serve<H, F>(
    listener: TcpListener,
    handler: H,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) where
    H: Fn(Request<Incoming>, ClientInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    serve_with_tls(listener, handler, limits, None, shutdown, drain_timeout).await
}

/// [`serve`], terminating TLS on every connection when `tls` is set.
pub async fn serve_with_tls<H, F>(
    listener: TcpListener,
    handler: H,
    limits: ListenerLimits,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) where
    H: Fn(Request<Incoming>, ClientInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let make = move |client: ClientInfo| {
        let handler = handler.clone();
        service_fn(move |request| {
            let response = handler(request, client.clone());
            async move { Ok::<_, Infallible>(response.await) }
        })
    };
    serve_connections(listener, make, limits, tls, None, shutdown, drain_timeout).await
}

/// Serves a tower service (rwproxy's middleware stack, see `proxy::stack`) on `listener`,
/// TLS on every connection when `tls` is set. Each request carries its connection's
/// [`ClientInfo`] in its extensions, inside the stack's per-request metadata (one insert:
/// the layers below fill the same value in).
///
/// `metrics`, when given, counts the requests hyper refuses itself before they reach `service`
/// (a malformed head: 400; a head over the size limit: 431; a target too long: 414) under
/// `rwproxy_errors_total{reason="bad-request"}`.
pub async fn serve_service<S>(
    listener: TcpListener,
    service: S,
    limits: ListenerLimits,
    tls: Option<ServerTls>,
    metrics: Option<Arc<Metrics>>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let make = move |client: ClientInfo| WithClient {
        service: RefCell::new(service.clone()),
        client,
        spare: SpareExtensions::default(),
    };
    serve_connections(
        listener,
        make,
        limits,
        tls,
        metrics,
        shutdown,
        drain_timeout,
    )
    .await
}

/// A tower service as hyper's connection service: each request gets the connection's
/// [`ClientInfo`] (in its `RequestMeta`, in the extension map the connection's last response
/// gave back: see [`spare`]).
///
/// Tower services are called through `&mut` after `poll_ready`, hyper's through `&`: the
/// connection's own copy sits in a `RefCell` (a connection is served by one task, and no
/// response future borrows the service) and is called directly when it is ready at once, as
/// rwproxy's stack always is. Only a service that is not gets the usual clone that waits for
/// readiness ([`Oneshot`]): a clone of the whole stack per request was ~150 instructions.
#[derive(Clone)]
struct WithClient<S> {
    service: RefCell<S>,
    client: ClientInfo,
    spare: SpareExtensions,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for WithClient<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Recycle<Either<S::Future, Oneshot<S, Request<Incoming>>>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        use tower::ServiceExt as _;
        self.spare.attach(&mut request, &self.client);
        let mut service = self.service.borrow_mut();
        let mut cx = Context::from_waker(Waker::noop());
        let future = match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Either::Left(service.call(request)),
            // Not ready (or failing): a clone polls it with the connection's waker.
            _ => Either::Right(service.clone().oneshot(request)),
        };
        self.spare.recycle(future)
    }
}

/// The accept loop: one service per connection from `make`, until `shutdown`; then draining.
async fn serve_connections<M, C>(
    listener: TcpListener,
    make: M,
    limits: ListenerLimits,
    tls: Option<ServerTls>,
    metrics: Option<Arc<Metrics>>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) where
    M: Fn(ClientInfo) -> C,
    C: ConnService,
{
    let settings = ConnSettings {
        builders: Builders::new(&limits),
        first_bytes_timeout: limits.header_read_timeout,
        write_timeout: limits.write_timeout,
        draining: DrainSignal::new(),
        metrics,
    };
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    // Bounded so that every slot can be taken back at once when draining (`acquire_many`
    // counts in u32).
    let max_connections = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let client = ClientInfo::new(peer.ip(), tls.is_some());
        let service = make(client);
        let settings = settings.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                // Boxed: the TLS handshake and stream would otherwise size every plaintext
                // connection's task too.
                Some(tls) => {
                    Box::pin(tls_conn::serve_connection(
                        tls, stream, peer, settings, service,
                    ))
                    .await
                }
                None => serve_plain(stream, peer, settings, service).await,
            }
            // The connection's slot frees when it closes.
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(listener = ?local.map(|a: SocketAddr| a.to_string()), "stopped accepting; draining connections");
    settings.draining.start();
    // Every connection holds a slot until it closes: all slots back means all closed.
    let all_closed = async {
        let _ = slots.acquire_many(max_connections as u32).await;
    };
    tokio::select! {
        () = all_closed => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain_timeout) => tracing::warn!(timeout_ms = drain_timeout.as_millis() as u64, "drain timeout passed; closing remaining connections"),
    }
}
