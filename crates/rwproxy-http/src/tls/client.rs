//! TLS toward `https` primaries: the pool wraps its TCP connections with this.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{certified_key, parse_certs, parse_key, provider, read, root_store, TlsError};

/// `writes.ca`, `writes.client_cert` and `writes.client_key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// PEM CA bundle trusted for the primary's certificate; `None`: the webpki (Mozilla) roots.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain and key presented to the primary (mutual TLS).
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// Connects TLS to upstreams: HTTP/1.1 by ALPN for the pool, `h2` for the multiplexed
/// connections. Both share one session store, so a reconnect resumes the last session (TLS 1.3
/// tickets; no 0-RTT early data: `enable_early_data` stays off, so no request is ever sent in a
/// form a network attacker could replay).
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
    connector_h2: TlsConnector,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamTls")
    }
}

impl UpstreamTls {
    /// Builds the client config from the files.
    pub fn new(files: &ClientTlsFiles) -> Result<Self, TlsError> {
        let roots = match &files.ca {
            Some(ca) => root_store(ca)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match &files.client_identity {
            Some((cert, key)) => {
                // Checked as a pair first, for an error that names the files.
                let (cert_pem, key_pem) = (read(cert)?, read(key)?);
                certified_key(cert, &cert_pem, key, &key_pem)?;
                builder.with_client_auth_cert(
                    parse_certs(cert, &cert_pem)?,
                    parse_key(key, &key_pem)?,
                )?
            }
            None => builder.with_no_client_auth(),
        };
        // rustls' default: an in-memory store of 256 sessions, shared by both configs below.
        config.enable_early_data = false;
        let mut h2 = config.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // HTTP/1.1 too, so a server without HTTP/2 still completes the handshake and is told apart.
        h2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            connector_h2: TlsConnector::from(Arc::new(h2)),
        })
    }

    /// The TLS handshake over `stream` with the server named `host` (a DNS name or an IP).
    pub(crate) async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<TlsStream<TcpStream>> {
        connect_with(&self.connector, host, stream).await
    }

    /// As [`UpstreamTls::connect`], offering `h2` first by ALPN.
    pub(crate) async fn connect_h2(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<TlsStream<TcpStream>> {
        connect_with(&self.connector_h2, host, stream).await
    }
}

/// The TLS handshake with `connector` over `stream`, checking the server's name `host`.
async fn connect_with(
    connector: &TlsConnector,
    host: &str,
    stream: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    connector.connect(name, stream).await
}

/// The alerts a server sends when it refuses the client's certificate.
const REFUSALS: [rustls::AlertDescription; 8] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnsupportedCertificate,
    rustls::AlertDescription::CertificateRevoked,
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::AccessDenied,
];

/// True when `error` (or what caused it) is the upstream refusing this node's client
/// certificate. TLS 1.3 lets the client finish its handshake before the server has checked the
/// client's certificate, so the refusal arrives as an alert on the first read, after the request
/// was written; but a server that refuses the certificate never reads that request, so it
/// reached no app.
pub fn refused_our_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(current) = cause {
        // tokio-rustls wraps rustls' error in an `io::Error`, whose `source` skips it.
        let wrapped = current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        let tls_error = wrapped.unwrap_or(current).downcast_ref::<rustls::Error>();
        if let Some(rustls::Error::AlertReceived(alert)) = tls_error {
            return REFUSALS.contains(alert);
        }
        // Over HTTP/2 the h2 crate keeps only an IO error's kind and text, so rustls' error
        // arrives as its message ("received fatal alert: CertificateRequired").
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            if io_error.kind() == io::ErrorKind::InvalidData && io_error.get_ref().is_some() {
                let text = io_error.to_string();
                if let Some(name) = text.strip_prefix("received fatal alert: ") {
                    return REFUSALS.iter().any(|alert| format!("{alert:?}") == name);
                }
            }
        }
        cause = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose `source` is `inner`, as hyper's errors are.
    #[derive(Debug)]
    struct Outer(io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection error")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn alert(alert: rustls::AlertDescription) -> Outer {
        Outer(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(alert),
        ))
    }

    #[test]
    fn certificate_refusals_are_told_from_other_failures() {
        use rustls::AlertDescription as Alert;
        for refused in [
            Alert::CertificateRequired,
            Alert::BadCertificate,
            Alert::UnknownCA,
        ] {
            assert!(refused_our_certificate(&alert(refused)), "{refused:?}");
        }
        assert!(!refused_our_certificate(&alert(Alert::InternalError)));
        // As the h2 crate passes it on: the kind and the text only.
        let text = |t: &str| Outer(io::Error::new(io::ErrorKind::InvalidData, t.to_owned()));
        assert!(refused_our_certificate(&text(
            "received fatal alert: CertificateRequired"
        )));
        assert!(!refused_our_certificate(&text(
            "received fatal alert: InternalError"
        )));
        let reset = Outer(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!refused_our_certificate(&reset));
    }
}
