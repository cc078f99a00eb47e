//! The HTTP client the sources share, and turning its failures into stable one-line reasons.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use crate::error::SourceError;

/// Connecting to a local or cluster-internal endpoint should never take longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for plain-HTTP status endpoints. Proxy environment variables are ignored: the
/// endpoints are local or cluster-internal, and a proxy in between would report its own state.
pub(crate) fn build() -> Result<reqwest::Client, SourceError> {
    client_builder()
        .map_err(SourceError::Client)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .map_err(|e| SourceError::Client(describe(&e, None)))
}

/// A reqwest client builder for cluster-internal endpoints: proxy environment variables ignored,
/// and TLS for `https` URLs by ring-based rustls (no cmake or NASM to build) with the Mozilla
/// roots. reqwest is built without a bundled crypto provider, so every client of rwproxy's starts
/// here rather than relying on a process-wide default.
pub fn client_builder() -> Result<reqwest::ClientBuilder, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tls_backend_preconfigured(tls))
}

/// A one-line reason for a failed request, with the cause chain (reqwest's own message omits
/// it, and "connection refused" is what an operator needs to see).
pub(crate) fn describe(err: &reqwest::Error, timeout: Option<Duration>) -> String {
    if err.is_timeout() {
        if let Some(t) = timeout {
            return format!("no answer within {t:?}");
        }
    }
    let mut text = if err.is_connect() {
        "cannot connect".to_owned()
    } else if err.is_body() || err.is_decode() {
        "error reading the body".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a response body of at most `limit` bytes; a longer one is an error, not truncated.
pub(crate) async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    timeout: Option<Duration>,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
