//! Serving one connection: HTTP/1.1 or HTTP/2, chosen by ALPN (TLS) or by the first bytes
//! (plaintext: h2c with prior knowledge).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::drain::DrainSignal;
use super::write_deadline::WriteDeadline;
use super::ListenerLimits;
use rwproxy_core::ErrorCode;

use crate::body::Body;
use crate::metrics::Metrics;

/// The HTTP/1 and HTTP/2 connection settings, shared by every connection of a listener.
#[derive(Clone)]
pub(crate) struct Builders {
    http1: Arc<http1::Builder>,
    http2: Arc<http2::Builder<TokioExecutor>>,
}

impl Builders {
    pub(super) fn new(limits: &ListenerLimits) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            // Exact, whatever sizes the reads come in (the buffer limit alone is only reached
            // when a head arrives in several reads).
            .max_header_size(limits.max_header_bytes)
            .writev(false)
            .title_case_headers(limits.title_case_headers);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32);
        Builders {
            http1: Arc::new(h1),
            http2: Arc::new(h2),
        }
    }
}

/// What every connection of a listener shares besides its service.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    pub(crate) builders: Builders,
    /// Bounds the TLS handshake, and the wait for a plaintext connection's first bytes.
    pub(crate) first_bytes_timeout: Duration,
    /// `proxy.write_timeout`: see [`WriteDeadline`].
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) draining: DrainSignal,
    /// Where hyper's own refusals are counted (the proxy listener's; none for the admin one).
    pub(crate) metrics: Option<Arc<Metrics>>,
}

/// The service a connection runs: rwproxy's handler behind `service_fn`.
pub(crate) trait ConnService:
    Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> ConnService for S where
    S: Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Serves one plaintext connection: HTTP/2 when it opens with the HTTP/2 preface (h2c with
/// prior knowledge), HTTP/1.1 otherwise.
///
/// The version is read with `peek` rather than through hyper-util's `auto` connection: `auto`
/// keeps both protocols' state in every connection's task (sized by HTTP/2's) and reads through
/// a rewind buffer for the connection's whole life. Here an HTTP/1 connection's task holds
/// only HTTP/1 state, which is what most of a node's idle keep-alive connections are.
pub(super) async fn serve_plain(
    stream: TcpStream,
    peer: SocketAddr,
    settings: ConnSettings,
    service: impl ConnService,
) {
    // A client that connected but has not spoken yet has nothing in flight: draining closes it.
    let protocol = tokio::select! {
        protocol = sniff_version(&stream, settings.first_bytes_timeout) => protocol,
        () = settings.draining.started() => None,
    };
    let Some(protocol) = protocol else {
        return;
    };
    serve_http(stream, protocol, peer, &settings, service).await;
}

/// Serves HTTP on `io` (plain or TLS) until the client closes it, or until it has finished its
/// request in flight once draining started.
pub(crate) async fn serve_http<I>(
    io: I,
    protocol: Protocol,
    peer: SocketAddr,
    settings: &ConnSettings,
    service: impl ConnService,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builders = &settings.builders;
    let draining = &settings.draining;
    let io = WriteDeadline::new(io, settings.write_timeout, settings.metrics.clone());
    let result = match protocol {
        Protocol::Http1 => {
            let connection = builders
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            until_closed(connection, draining).await
        }
        Protocol::Http2 => {
            // Boxed so that HTTP/2's larger state does not size every HTTP/1 connection's task.
            let mut connection =
                Box::pin(builders.http2.serve_connection(TokioIo::new(io), service));
            until_closed(connection.as_mut(), draining).await
        }
    };
    match result {
        // hyper answered the request itself (400; 431 for a head over the limit; 414 for a
        // target too long) and closed the connection: no layer saw it, so it is counted here.
        Err(error) if error.is_parse() => {
            if let Some(metrics) = &settings.metrics {
                metrics.error(ErrorCode::BadRequest);
            }
            tracing::info!(%error, %peer, "malformed request refused by the HTTP layer");
        }
        Err(error) => tracing::debug!(%error, %peer, "client connection ended with an error"),
        Ok(()) => {}
    }
}

/// A hyper server connection that can be asked to finish its requests in flight and close.
trait Graceful: Future<Output = hyper::Result<()>> {
    fn start_graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http1::UpgradeableConnection<TokioIo<I>, S>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ConnService,
{
    fn start_graceful_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Graceful for http2::Connection<TokioIo<I>, S, TokioExecutor>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: ConnService,
{
    fn start_graceful_shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives `connection` to its end; once draining starts, it finishes what is in flight first.
async fn until_closed<C: Graceful + ?Sized>(
    mut connection: Pin<&mut C>,
    draining: &DrainSignal,
) -> hyper::Result<()> {
    tokio::select! {
        // The connection first: it is what is almost always ready.
        biased;
        result = connection.as_mut() => result,
        () = draining.started() => {
            connection.as_mut().start_graceful_shutdown();
            connection.await
        }
    }
}

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
}

/// The client preface of HTTP/2 with prior knowledge (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Pause between looks while a connection has sent only part of the HTTP/2 preface.
const PARTIAL_PREFACE_PAUSE: Duration = Duration::from_millis(5);

/// Looks at a connection's first bytes without consuming them. `None`: the client closed, or
/// sent nothing within `timeout` (the header read timeout, which hyper applies from here on).
async fn sniff_version(stream: &TcpStream, timeout: Duration) -> Option<Protocol> {
    let look = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            match classify_preface(&buf[..n]) {
                Some(protocol) => return Some(protocol),
                // Closed before sending anything.
                None if n == 0 => return None,
                // A prefix of the HTTP/2 preface: rare (clients send it in one write), so a
                // short pause rather than a readiness loop, which `peek` would make a busy one.
                None => tokio::time::sleep(PARTIAL_PREFACE_PAUSE).await,
            }
        }
    };
    tokio::time::timeout(timeout, look).await.ok().flatten()
}

/// What the first bytes say: `None` while they are a (possibly empty) prefix of the HTTP/2
/// preface and more are needed.
fn classify_preface(first: &[u8]) -> Option<Protocol> {
    if first.len() >= H2_PREFACE.len() && first[..H2_PREFACE.len()] == *H2_PREFACE {
        Some(Protocol::Http2)
    } else if H2_PREFACE.starts_with(first) {
        None
    } else {
        Some(Protocol::Http1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_pick_the_protocol() {
        assert_eq!(
            classify_preface(b"GET / HTTP/1.1\r\n"),
            Some(Protocol::Http1)
        );
        assert_eq!(classify_preface(b"P"), None);
        assert_eq!(classify_preface(b"POST /x HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(classify_preface(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify_preface(H2_PREFACE), Some(Protocol::Http2));
        assert_eq!(classify_preface(b""), None);
    }
}
