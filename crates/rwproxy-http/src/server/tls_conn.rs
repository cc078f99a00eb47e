//! Serving one client connection over TLS (the listener's TLS itself is built in `tls::server`).

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::conn::{serve_http, ConnService, ConnSettings, Protocol};
use crate::tls::ServerTls;

/// Serves one client connection over TLS: the handshake (bounded by the first-bytes timeout),
/// then HTTP/2 or HTTP/1.1 as ALPN chose.
pub(super) async fn serve_connection(
    tls: ServerTls,
    stream: TcpStream,
    peer: SocketAddr,
    settings: ConnSettings,
    service: impl ConnService,
) {
    let handshake_timeout = settings.first_bytes_timeout;
    let handshake = tokio::time::timeout(handshake_timeout, tls.acceptor().accept(stream));
    let handshake = tokio::select! {
        done = handshake => done,
        // Nothing is in flight before the handshake ends: draining closes the connection.
        () = settings.draining.started() => return,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, %peer, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let protocol = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Protocol::Http2,
        _ => Protocol::Http1,
    };
    serve_http(stream, protocol, peer, &settings, service).await;
}
