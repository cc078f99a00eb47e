//! TLS with rustls (ring provider): terminating TLS on the proxy listener (ALPN `h2` and
//! `http/1.1`, optional client certificates, certificate reload) and connecting to `https`
//! primaries (webpki roots or a configured CA, optional client certificate).

pub mod client;
mod reload;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

pub use client::{ClientTlsFiles, UpstreamTls};
pub use server::{ServerTls, ServerTlsFiles};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path:?}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file was read but holds nothing usable.
    #[error("{path:?}: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the material (a key that does not match its certificate, ...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every TLS config uses: ring, so that no cmake or NASM is needed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        what: what.into(),
    }
}

/// The certificates of a PEM file, in file order (a chain: the end-entity certificate first).
pub(crate) fn parse_certs(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub(crate) fn parse_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| invalid(path, format!("no private key: {e}")))
}

/// A certificate chain and its key, checked to belong together.
pub(crate) fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let certs = parse_certs(cert_path, cert_pem)?;
    let key = parse_key(key_path, key_pem)?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        invalid(
            key_path,
            format!("does not go with {}: {e}", cert_path.display()),
        )
    })
}

/// A root store holding every certificate of a PEM file.
pub(crate) fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read(path)?;
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(path, &pem)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, format!("unusable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Checks that a file holds PEM certificates (for `rwproxy check`).
pub fn check_certs(path: &Path) -> Result<(), TlsError> {
    parse_certs(path, &read(path)?).map(|_| ())
}

/// Checks that a file holds a PEM private key (for `rwproxy check`).
pub fn check_key(path: &Path) -> Result<(), TlsError> {
    parse_key(path, &read(path)?).map(|_| ())
}

/// Checks that a certificate and a key belong together (for `rwproxy check`).
pub fn check_pair(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    certified_key(cert, &cert_pem, key, &key_pem).map(|_| ())
}

/// Checks a CA bundle (for `rwproxy check`).
pub fn check_ca(path: &Path) -> Result<(), TlsError> {
    root_store(path).map(|_| ())
}
