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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::mpsc;

    use super::*;
    use crate::test_support::{full, refused_addr, serve, streaming};

    #[tokio::test]
    async fn a_body_of_exactly_the_limit_is_read_a_longer_one_is_refused() {
        let server = serve(|_| full(200, "0123456789")).await;
        let client = build().expect("client");
        let url = format!("http://{}/", server.addr);
        let get = || async { client.get(&url).send().await.expect("answered") };
        assert_eq!(
            read_limited(get().await, 10, None).await.as_deref(),
            Ok(&b"0123456789"[..])
        );
        assert_eq!(
            read_limited(get().await, 9, None).await,
            Err("body larger than 9 bytes".to_owned())
        );
    }

    #[tokio::test]
    async fn failures_are_described_with_their_cause() {
        let client = build().expect("client");
        let refused = format!("http://{}/", refused_addr().await);
        let err = client.get(&refused).send().await.expect_err("refused");
        let text = describe(&err, Some(Duration::from_secs(1)));
        assert!(text.starts_with("cannot connect: "), "{text}");
        assert!(
            text.len() > "cannot connect: ".len(),
            "the cause is named: {text}"
        );

        // A body that never ends: only the request's timeout stops it.
        let (_keep, rx) = mpsc::unbounded_channel();
        let rx = Mutex::new(Some(rx));
        let server = serve(move |_| match rx.lock().expect("lock").take() {
            Some(rx) => streaming(rx),
            None => full(503, "busy"),
        })
        .await;
        let timeout = Duration::from_millis(100);
        let mut resp = client
            .get(format!("http://{}/", server.addr))
            .timeout(timeout)
            .send()
            .await
            .expect("headers");
        let err = loop {
            match resp.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the body never ends"),
                Err(e) => break e,
            }
        };
        assert_eq!(describe(&err, Some(timeout)), "no answer within 100ms");
        let text = describe(&err, None);
        assert!(text.starts_with("error reading the body: "), "{text}");
    }
}
