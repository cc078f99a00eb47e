//! Terminating TLS on the proxy listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::reload::{self, ReloadingCert};
use super::{invalid, provider, root_store, TlsError};
use crate::body::Body;

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

/// Serves one accepted TCP connection over TLS on its own task: the handshake (bounded by
/// `handshake_timeout`), then HTTP/1.1 or HTTP/2 (ALPN, or the client's preface) with upgrades.
#[allow(clippy::too_many_arguments)]
pub(crate) fn spawn_connection<S>(
    tls: &ServerTls,
    stream: TcpStream,
    peer: SocketAddr,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    watcher: Watcher,
    handshake_timeout: Duration,
    // Held until the connection closes (the listener's connection limit).
    slot: impl Send + 'static,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tls.acceptor.clone();
    tokio::spawn(async move {
        let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
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
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%error, %peer, "client connection ended with an error");
        }
        drop(slot);
    });
}
