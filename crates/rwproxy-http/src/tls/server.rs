//! Terminating TLS on the proxy listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::reload::{self, ReloadingCert};
use super::{invalid, provider, root_store, TlsError};
use crate::server::{self, ConnService, ConnSettings, Protocol};

/// `[proxy.tls]`: the files the listener's TLS is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// PEM certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it issued (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// A listener's TLS: the acceptor, whose certificate follows the files (see [`ServerTls::start`]).
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Loads the certificate, key and client CA, and starts reloading the certificate and key
    /// when their files change or the process gets SIGHUP (a bad new pair keeps the old one).
    /// The reload task ends once every clone of the returned value is dropped. Needs a Tokio
    /// runtime.
    pub fn start(files: ServerTlsFiles) -> Result<ServerTls, TlsError> {
        let resolver = Arc::new(ReloadingCert::load(&files.cert, &files.key)?);
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &files.client_ca {
            Some(ca) => {
                let roots = Arc::new(root_store(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| invalid(ca, format!("unusable client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reload::spawn_watch(Arc::downgrade(&resolver), files.cert, files.key);
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Serves one client connection over TLS: the handshake (bounded by the first-bytes timeout),
/// then HTTP/2 or HTTP/1.1 as ALPN chose.
pub(crate) async fn serve_connection(
    tls: ServerTls,
    stream: TcpStream,
    peer: SocketAddr,
    settings: ConnSettings,
    service: impl ConnService,
) {
    let handshake_timeout = settings.first_bytes_timeout;
    let handshake = tokio::time::timeout(handshake_timeout, tls.acceptor.accept(stream));
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
    server::serve_http(stream, protocol, peer, &settings, service).await;
}
