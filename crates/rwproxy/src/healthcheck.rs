//! `rwproxy health`: one HTTP GET of a health URL, for container `HEALTHCHECK`s and scripts
//! on images that have no curl. Exit status 0 on `200`, 1 on anything else (another status,
//! no answer, timeout). The response body (the health JSON) is printed for `docker inspect`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The admin listener's health endpoint under the default configuration.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/health";

/// Most of the body kept for printing: health documents are small.
const MAX_BODY: usize = 64 * 1024;

/// Why a probe got no status.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// Not an `http://host[:port]/path` URL.
    #[error("invalid URL {0:?}: expected http://HOST[:PORT]/PATH")]
    Url(String),
    /// Connecting or talking HTTP failed.
    #[error("{0}")]
    Io(String),
    /// No complete answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Fetches `url` once: its status and body (truncated to 64 KiB).
pub async fn probe(url: &str, timeout: Duration) -> Result<(StatusCode, Bytes), HealthcheckError> {
    match tokio::time::timeout(timeout, fetch(url)).await {
        Ok(result) => result,
        Err(_) => Err(HealthcheckError::Timeout(timeout)),
    }
}

async fn fetch(url: &str) -> Result<(StatusCode, Bytes), HealthcheckError> {
    let bad_url = || HealthcheckError::Url(url.to_owned());
    let uri: Uri = url.parse().map_err(|_| bad_url())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad_url());
    }
    let authority = uri.authority().ok_or_else(bad_url)?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let io = |e: &dyn std::fmt::Display| HealthcheckError::Io(e.to_string());

    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| HealthcheckError::Io(format!("cannot connect to {authority}: {e}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io(&e))?;
    // The connection is driven beside the request; it ends when the exchange does.
    let driver = tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(
            header::USER_AGENT,
            concat!("rwproxy-health/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| io(&e))?;
    let response = sender.send_request(request).await.map_err(|e| io(&e))?;
    let status = response.status();
    // A body that is too large or cut short does not change the verdict, which is the status.
    let body = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    driver.abort();
    Ok((status, body))
}

/// The `rwproxy health` command.
pub fn run(url: &str, timeout: Duration) -> ExitCode {
    let Some(runtime) = crate::command_runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(probe(url, timeout)) {
        Ok((status, body)) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&body);
            if !body.ends_with(b"\n") {
                let _ = writeln!(stdout);
            }
            if status == StatusCode::OK {
                ExitCode::SUCCESS
            } else {
                eprintln!("unhealthy: {url} answered {status}");
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("unhealthy: {url}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_and_dead_ports_are_errors() {
        for url in ["https://127.0.0.1/health", "127.0.0.1:9090", "http:///x"] {
            assert!(
                matches!(
                    probe(url, Duration::from_secs(1)).await,
                    Err(HealthcheckError::Url(_))
                ),
                "{url}"
            );
        }
        // A port nobody listens on: bind, learn it, close it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/health");
        assert!(matches!(
            probe(&url, Duration::from_secs(2)).await,
            Err(HealthcheckError::Io(_))
        ));
    }

    #[tokio::test]
    async fn reads_status_and_body() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await.unwrap();
            let body = r#"{"status":"lagging"}"#;
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
        });
        let (status, body) = probe(&format!("http://{addr}/health"), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(&body[..], br#"{"status":"lagging"}"#);
    }
}
