//! Terminating TLS on the proxy listener.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::reload::{self, ReloadingCert};
use super::{invalid, provider, root_store, TlsError};

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
        Self::start_recording(files, None)
    }

    /// Like [`ServerTls::start`]; every reload, and every distinct failure to reload, is also
    /// a `tls-reloaded` event in `history`.
    pub fn start_recording(
        files: ServerTlsFiles,
        history: Option<crate::History>,
    ) -> Result<ServerTls, TlsError> {
        let resolver = Arc::new(ReloadingCert::load(&files.cert, &files.key, history)?);
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

    /// The acceptor that runs each connection's handshake.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
