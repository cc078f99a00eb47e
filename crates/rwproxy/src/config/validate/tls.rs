//! `[proxy.tls]` and the `writes` TLS keys: paths that must be given together, and files that
//! must hold what they are for (read now, so `rwproxy check` catches a wrong path).

use std::path::{Path, PathBuf};

use rwproxy_http::tls::{self, ClientTlsFiles, ServerTlsFiles, TlsError};

use super::super::raw::RawProxyTls;
use super::Checker;

/// `[proxy.tls]`: `cert` and `key` both or neither, plus an optional `client_ca`.
pub(super) fn proxy_tls(c: &mut Checker<'_>, raw: Option<RawProxyTls>) -> Option<ServerTlsFiles> {
    let raw = raw?;
    let cert = path(c, "proxy.tls.cert", raw.cert);
    let key = path(c, "proxy.tls.key", raw.key);
    let client_ca = path(c, "proxy.tls.client_ca", raw.client_ca);
    let (cert, key) = match (cert, key) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => {
            if client_ca.is_some() {
                c.report(
                    "proxy.tls.client_ca",
                    "needs proxy.tls.cert and proxy.tls.key (client certificates need TLS)",
                );
            }
            return None;
        }
        (Some(_), None) => {
            c.required(
                "proxy.tls.key",
                "required with proxy.tls.cert (the certificate's private key)",
            );
            return None;
        }
        (None, Some(_)) => {
            c.required(
                "proxy.tls.cert",
                "required with proxy.tls.key (the PEM certificate chain)",
            );
            return None;
        }
    };
    check_identity(c, ("proxy.tls.cert", &cert), ("proxy.tls.key", &key));
    if let Some(ca) = &client_ca {
        check(c, "proxy.tls.client_ca", tls::check_ca(ca));
    }
    Some(ServerTlsFiles {
        cert,
        key,
        client_ca,
    })
}

/// `writes.ca`, and `writes.client_cert` with `writes.client_key` (both or neither).
pub(super) fn writes_tls(
    c: &mut Checker<'_>,
    ca: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
) -> ClientTlsFiles {
    let ca = path(c, "writes.ca", ca);
    if let Some(ca) = &ca {
        check(c, "writes.ca", tls::check_ca(ca));
    }
    let cert = path(c, "writes.client_cert", client_cert);
    let key = path(c, "writes.client_key", client_key);
    let client_identity = match (cert, key) {
        (Some(cert), Some(key)) => {
            check_identity(
                c,
                ("writes.client_cert", &cert),
                ("writes.client_key", &key),
            );
            Some((cert, key))
        }
        (None, None) => None,
        (Some(_), None) => {
            c.required("writes.client_key", "required with writes.client_cert");
            None
        }
        (None, Some(_)) => {
            c.required("writes.client_cert", "required with writes.client_key");
            None
        }
    };
    ClientTlsFiles {
        ca,
        client_identity,
    }
}

/// A non-empty path; `""` counts as absent.
fn path(c: &mut Checker<'_>, key: &str, value: Option<String>) -> Option<PathBuf> {
    match value {
        Some(v) if v.trim().is_empty() => {
            if !v.is_empty() {
                c.report(key, "must be a file path, not blanks");
            }
            None
        }
        Some(v) => Some(PathBuf::from(v)),
        None => None,
    }
}

/// A certificate file, a key file, and the two belonging together, each blamed on its key.
fn check_identity(c: &mut Checker<'_>, cert: (&str, &Path), key: (&str, &Path)) {
    let cert_ok = check(c, cert.0, tls::check_certs(cert.1));
    let key_ok = check(c, key.0, tls::check_key(key.1));
    if cert_ok && key_ok {
        check(c, key.0, tls::check_pair(cert.1, key.1));
    }
}

fn check(c: &mut Checker<'_>, key: &str, result: Result<(), TlsError>) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => {
            c.report(key, error.to_string());
            false
        }
    }
}
