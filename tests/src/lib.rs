//! Test support for rwproxy's end-to-end tests: real HTTP apps, LiteFS-like mount directories
//! and real rwproxy nodes, all on `127.0.0.1:0`, all stopped when dropped or shut down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod app;
pub mod chaos_cluster;
pub mod cluster;
pub mod history;
pub mod items_app;
pub mod litefs_real;
pub mod mariadb;
pub mod mount;
pub mod my_app;
pub mod my_cluster;
pub mod patroni;
pub mod peered;
pub mod pg_app;
pub mod pg_cluster;
pub mod pg_kv;
pub mod postgres;
pub mod protocols;
pub mod relay;
pub mod sql_node;
pub mod sql_scenarios;
pub mod sql_server;
pub mod tls;
pub mod ws;

use std::future::Future;
use std::time::Duration;

/// Polls `check` until it returns `Some`, or panics after `within` with `what`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A reqwest client builder that talks to loopback directly. reqwest is built without a bundled
/// crypto provider (the workspace uses ring), so the process default is installed first.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Err only means another test already installed it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy()
}

/// A reqwest client that talks to loopback directly and keeps cookies out of the way (tests
/// pass cookies explicitly).
pub fn client() -> reqwest::Client {
    client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Sending a request in a test, where getting no HTTP answer at all is a failure.
pub trait Answer {
    /// Sends the request and returns the answer, whatever its status; panics when no answer
    /// comes back (connection refused or reset, timeout).
    fn answer(self) -> impl Future<Output = reqwest::Response> + Send;
}

impl Answer for reqwest::RequestBuilder {
    async fn answer(self) -> reqwest::Response {
        self.send().await.expect("an HTTP answer")
    }
}

/// Every value of header `name` in `headers`, in order (`set-cookie`, `via`, ...).
pub fn header_values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The Prometheus page of the admin listener at `admin_url` (`GET {admin_url}/metrics`);
/// `None` when the request or its body fails.
pub async fn metrics_page(admin_url: &str) -> Option<String> {
    client()
        .get(format!("{admin_url}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// `Some(())` when some line of the metrics page at `admin_url` satisfies `line`; `None` when
/// none does or the page cannot be fetched (a check for [`eventually`]).
pub async fn metrics_line(admin_url: &str, line: impl Fn(&str) -> bool) -> Option<()> {
    metrics_page(admin_url)
        .await?
        .lines()
        .any(line)
        .then_some(())
}

/// Sends raw bytes to `addr` and returns whatever comes back before the server closes or
/// `wait` passes (hostile-input tests, where no HTTP client would send such bytes).
pub async fn raw_exchange(addr: &str, request: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP/2 client with prior knowledge (h2c) that talks to loopback directly.
pub fn h2c_client() -> reqwest::Client {
    client_builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client")
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Finds an external program a test drives for real (`haproxy`, `promtool`) on `PATH` or in the
/// sbin directories. When it is missing the test should skip: this prints a notice and returns
/// `None`, unless `RWPROXY_REQUIRE_EXTERNAL=1` (set by CI), where a missing program fails.
pub fn external_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from);
    let found = std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var("RWPROXY_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("`{name}` is required (RWPROXY_REQUIRE_EXTERNAL=1) but not installed");
        }
        eprintln!(
            "SKIPPED: `{name}` is not installed; set RWPROXY_REQUIRE_EXTERNAL=1 to fail instead"
        );
    }
    found
}

/// A free `127.0.0.1` port for a program that binds by itself (the port is released first, so
/// another process could take it in between; good enough on a test machine).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
