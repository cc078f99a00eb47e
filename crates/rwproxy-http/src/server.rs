//! Listeners: accepting connections (HTTP/1.1 and h2c with prior knowledge, or either over TLS
//! with ALPN), serving them with a service, and draining them on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::tls::server::{self as tls, ServerTls};
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
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32);
    let graceful = GracefulShutdown::new();
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
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
        let client = ClientInfo {
            ip: peer.ip(),
            tls: tls.is_some(),
        };
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let response = handler(request, client);
            async move { Ok::<_, Infallible>(response.await) }
        });
        if let Some(tls) = &tls {
            let watcher = graceful.watcher();
            let timeout = limits.header_read_timeout;
            tls::spawn_connection(
                tls,
                stream,
                peer,
                builder.clone(),
                service,
                watcher,
                timeout,
                slot,
            );
            continue;
        }
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "client connection ended with an error");
            }
            // The connection's slot frees when it closes.
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(listener = ?local.map(|a: SocketAddr| a.to_string()), "stopped accepting; draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain_timeout) => tracing::warn!(timeout_ms = drain_timeout.as_millis() as u64, "drain timeout passed; closing remaining connections"),
    }
}
