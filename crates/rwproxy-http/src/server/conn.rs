//! Serving one connection: HTTP/1.1 or HTTP/2, chosen by ALPN (TLS) or by the first bytes
//! (plaintext: h2c with prior knowledge).

use std::convert::Infallible;
use std::net::SocketAddr;
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
use super::ListenerLimits;
use crate::body::Body;

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
            .max_header_size(limits.max_header_bytes);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32);
        Builders {
            http1: Arc::new(h1),
            http2: Arc::new(h2),
        }
    }
}

/// Serves one plaintext connection: HTTP/2 when it opens with the HTTP/2 preface (h2c with
/// prior knowledge), HTTP/1.1 otherwise.
///
/// The version is read with `peek` rather than through hyper-util's `auto` connection: `auto`
/// keeps both protocols' state in every connection's task (sized by HTTP/2's) and reads through
/// a rewind buffer for the connection's whole life. Here an HTTP/1 connection's task holds
/// only HTTP/1 state, which is what most of a node's idle keep-alive connections are.
pub(super) async fn serve_plain<S>(
    stream: TcpStream,
    peer: SocketAddr,
    builders: Builders,
    service: S,
    first_bytes_timeout: Duration,
    draining: DrainSignal,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let Some(protocol) = sniff_version(&stream, first_bytes_timeout).await else {
        return;
    };
    serve_http(stream, protocol, peer, &builders, service, draining).await;
}

/// Serves HTTP on `io` (plain or TLS) until the client closes it, or until it has finished its
/// request in flight once draining started.
pub(crate) async fn serve_http<I, S>(
    io: I,
    protocol: Protocol,
    peer: SocketAddr,
    builders: &Builders,
    service: S,
    draining: DrainSignal,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let result = match protocol {
        Protocol::Http1 => {
            let connection = builders
                .http1
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                // The connection first: it is what is almost always ready.
                biased;
                result = connection.as_mut() => result,
                () = draining.started() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
        Protocol::Http2 => {
            // Boxed so that HTTP/2's larger state does not size every HTTP/1 connection's task.
            let mut connection =
                Box::pin(builders.http2.serve_connection(TokioIo::new(io), service));
            tokio::select! {
                biased;
                result = connection.as_mut() => result,
                () = draining.started() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "client connection ended with an error");
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
