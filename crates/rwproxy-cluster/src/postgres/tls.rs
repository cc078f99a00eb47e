//! TLS to the PostgreSQL server, with rustls (ring provider, no OpenSSL), for the libpq
//! `sslmode` values that make sense for a monitoring connection:
//!
//! | `sslmode` | rwproxy |
//! |---|---|
//! | `disable` | plain TCP |
//! | `allow`, `prefer` (default) | TLS when the server offers it, certificate not checked |
//! | `require` | TLS or no connection; certificate checked as `verify-ca` when `sslrootcert` is given (as libpq does) |
//! | `verify-ca` | TLS, the chain must lead to `sslrootcert` |
//! | `verify-full` | as `verify-ca`, and the certificate must name the host of the URL |
//!
//! `sslrootcert` is a PEM file, or `system` for the Mozilla roots built into rwproxy. Client
//! certificates (`sslcert`, `sslkey`) and the other `ssl*` options are refused by name rather
//! than ignored. tokio-postgres parses neither `verify-*` nor `sslrootcert`, so they are taken
//! out of the URL here and the rest goes to tokio-postgres unchanged.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the connection is protected, from `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when offered, any certificate (`allow`, `prefer`).
    Prefer,
    /// TLS or fail, any certificate.
    Require,
    /// TLS, chain checked against the roots, any name.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

/// A URL split into what tokio-postgres reads and what this module reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsUrl {
    /// The URL without `sslmode` and `sslrootcert`.
    pub(crate) url: String,
    /// The mode (libpq's default, `prefer`, when the URL names none).
    pub(crate) mode: TlsMode,
    /// Where the trusted roots are: a PEM file, or `None` with `system_roots`.
    pub(crate) root_cert: Option<PathBuf>,
    /// `sslrootcert=system`: the bundled Mozilla roots.
    pub(crate) system_roots: bool,
}

/// Options of libpq's TLS family that rwproxy does not implement: refused by name.
const UNSUPPORTED: [&str; 7] = [
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslnegotiation",
];

/// Splits the TLS options out of `url` and checks them.
pub(crate) fn split(url: &str) -> Result<TlsUrl, String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut mode = None;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("{key}: the value is not UTF-8 once percent-decoded"))?;
        match key {
            "sslmode" => mode = Some(parse_mode(&decoded)?),
            "sslrootcert" => root_cert = Some(decoded.into_owned()),
            key if UNSUPPORTED.contains(&key) => {
                return Err(format!(
                    "{key}: not supported (rwproxy supports sslmode and sslrootcert; client \
                     certificates are not)"
                ))
            }
            _ => kept.push(pair),
        }
    }
    let system_roots = root_cert.as_deref() == Some("system");
    let root_cert = root_cert.filter(|_| !system_roots).map(PathBuf::from);
    let has_roots = system_roots || root_cert.is_some();
    let mode = match mode {
        // libpq: with a root certificate, `require` verifies the chain like `verify-ca`.
        Some(TlsMode::Require) if has_roots => TlsMode::VerifyCa,
        Some(m @ (TlsMode::VerifyCa | TlsMode::VerifyFull)) if !has_roots => {
            return Err(format!(
                "sslmode={}: needs sslrootcert (a PEM file of the CA that signed the \
                 server's certificate, or \"system\")",
                if m == TlsMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ))
        }
        Some(m) => m,
        None if system_roots => TlsMode::VerifyFull,
        None => TlsMode::Prefer,
    };
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(TlsUrl {
        url,
        mode,
        root_cert,
        system_roots,
    })
}

fn parse_mode(value: &str) -> Result<TlsMode, String> {
    Ok(match value {
        "disable" => TlsMode::Disable,
        "allow" | "prefer" => TlsMode::Prefer,
        "require" => TlsMode::Require,
        "verify-ca" => TlsMode::VerifyCa,
        "verify-full" => TlsMode::VerifyFull,
        other => {
            return Err(format!(
                "sslmode: invalid value {other:?} (expected disable, allow, prefer, require, \
                 verify-ca or verify-full)"
            ))
        }
    })
}

impl TlsUrl {
    /// The mode tokio-postgres applies: whether TLS is tried, and whether it is required.
    pub(crate) fn ssl_mode(&self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode;
        match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }

    /// The TLS connector for this mode (reads `sslrootcert`); `None` for `disable`.
    pub(crate) fn connector(&self) -> Result<Option<MakeRustlsConnect>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?;
        let config = match self.mode {
            TlsMode::Disable => return Ok(None),
            TlsMode::Prefer | TlsMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    roots: None,
                    provider,
                }))
                .with_no_client_auth(),
            TlsMode::VerifyCa => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Verifier {
                    roots: Some(Arc::new(self.roots()?)),
                    provider,
                }))
                .with_no_client_auth(),
            TlsMode::VerifyFull => builder
                .with_root_certificates(self.roots()?)
                .with_no_client_auth(),
        };
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        if self.system_roots {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        }
        let Some(path) = &self.root_cert else {
            return Ok(RootCertStore::empty());
        };
        let shown = path.display();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?
        {
            let cert = cert.map_err(|e| format!("sslrootcert {shown}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("sslrootcert {shown}: no certificate in it"));
        }
        Ok(roots)
    }
}

/// Checks the server's certificate for `prefer`/`require` (not at all, as libpq) and for
/// `verify-ca` (the chain, not the name). The handshake signatures are always checked: the
/// server must hold the key of the certificate it shows.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_roots_are_taken_out_of_the_url() {
        let t = split(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(t.url, "postgres://u@h/db?connect_timeout=3");
        assert_eq!(t.mode, TlsMode::VerifyFull);
        assert_eq!(t.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let t = split("postgres://u@h/db").unwrap();
        assert_eq!(
            (t.url.as_str(), t.mode),
            ("postgres://u@h/db", TlsMode::Prefer)
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=allow").unwrap().mode,
            TlsMode::Prefer
        );
        assert_eq!(
            split("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem")
                .unwrap()
                .mode,
            TlsMode::VerifyCa,
            "libpq: require with a root certificate verifies the chain"
        );
        assert!(
            split("postgres://u@h/db?sslrootcert=system")
                .unwrap()
                .system_roots
        );
    }

    #[test]
    fn what_cannot_work_is_refused_by_name() {
        assert!(split("postgres://u@h/db?sslmode=verify-ca")
            .unwrap_err()
            .contains("sslrootcert"));
        assert!(split("postgres://u@h/db?sslmode=verify-full")
            .unwrap_err()
            .contains("verify-full"));
        assert!(split("postgres://u@h/db?sslmode=on")
            .unwrap_err()
            .contains("invalid value"));
        assert!(split("postgres://u@h/db?sslcert=c.pem")
            .unwrap_err()
            .contains("sslcert"));
    }

    #[test]
    fn a_root_file_without_certificates_is_an_error() {
        let dir = std::env::temp_dir().join(format!("rwproxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let t = split(&format!(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ))
        .unwrap();
        let error = t.connector().err().unwrap_or_default();
        assert!(error.contains("no certificate"), "{error}");
        let missing =
            split("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").unwrap();
        let error = missing.connector().err().unwrap_or_default();
        assert!(error.contains("cannot read sslrootcert"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
