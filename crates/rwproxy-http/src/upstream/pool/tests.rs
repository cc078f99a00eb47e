//! The connection cap against a real HTTP/1.1 upstream on loopback whose answers the test holds
//! back and releases.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::*;

/// An upstream that counts the connections it accepted and the requests it is holding, and
/// answers each request once the test adds a permit to `release`.
struct HeldUpstream {
    target: Target,
    connections: Arc<AtomicUsize>,
    holding: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl HeldUpstream {
    async fn start(close_after_answer: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority = listener.local_addr().expect("addr").to_string();
        let connections = Arc::new(AtomicUsize::new(0));
        let holding = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let task = tokio::spawn({
            let (connections, holding, release) =
                (connections.clone(), holding.clone(), release.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (holding, release) = (holding.clone(), release.clone());
                    let service = service_fn(move |_request| {
                        let (holding, release) = (holding.clone(), release.clone());
                        async move {
                            holding.fetch_add(1, Ordering::SeqCst);
                            release.acquire().await.expect("open").forget();
                            holding.fetch_sub(1, Ordering::SeqCst);
                            let mut response = Response::new(Body::full("ok"));
                            if close_after_answer {
                                response.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            }
        });
        HeldUpstream {
            target: Target::http(authority.parse().expect("authority")),
            connections,
            holding,
            release,
            task,
        }
    }

    /// Waits (at most 5 s) until the upstream holds `n` requests.
    async fn wait_holding(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.holding.load(Ordering::SeqCst) != n {
            assert!(
                Instant::now() < deadline,
                "upstream holds {} requests, expected {n}",
                self.holding.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for HeldUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn capped(max: usize, queue_timeout: Duration) -> Pool {
    Pool::new(PoolConfig {
        max_per_target: Some(max),
        queue_timeout,
        ..PoolConfig::default()
    })
}

fn get(path: &'static str) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = http::Uri::from_static(path);
    request
        .headers_mut()
        .insert(http::header::HOST, http::HeaderValue::from_static("test"));
    request
}

/// Awaits `f`, failing the test after 10 s rather than hanging it.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("finished within 10 s")
}

/// Sends `GET path` and reads the answer to its end (which checks the connection back in).
async fn fetch(pool: Pool, target: Target, path: &'static str) -> Result<String, SendError> {
    let timeout = Duration::from_secs(5);
    let response = pool
        .send(&target, get(path), timeout, Duration::ZERO)
        .await?;
    let body = response.into_body().collect().await.expect("body");
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Starts `n` concurrent `GET /` through `pool` to `upstream`.
fn fetch_concurrently(
    pool: &Pool,
    upstream: &HeldUpstream,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<String, SendError>>> {
    (0..n)
        .map(|_| tokio::spawn(fetch(pool.clone(), upstream.target.clone(), "/")))
        .collect()
}

/// Waits for every request and checks that each got the upstream's answer.
async fn all_answered(requests: Vec<tokio::task::JoinHandle<Result<String, SendError>>>) {
    for request in requests {
        let body = within(request).await.expect("task");
        assert_eq!(body.ok().as_deref(), Some("ok"));
    }
}

#[tokio::test]
async fn past_the_cap_requests_queue_and_reuse_the_open_connections() {
    let upstream = HeldUpstream::start(false).await;
    let pool = capped(2, Duration::from_secs(10));
    let requests = fetch_concurrently(&pool, &upstream, 6);
    // Two reach the upstream; the other four wait in the pool, not on new connections.
    upstream.wait_holding(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(upstream.holding.load(Ordering::SeqCst), 2);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);
    upstream.release.add_permits(6);
    all_answered(requests).await;
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_still_queued_after_the_timeout_comes_back_unsent() {
    let upstream = HeldUpstream::start(false).await;
    let pool = capped(1, Duration::from_millis(200));
    let first = tokio::spawn(fetch(pool.clone(), upstream.target.clone(), "/first"));
    upstream.wait_holding(1).await;
    let started = Instant::now();
    let second = within(pool.send(
        &upstream.target,
        get("/second"),
        Duration::from_secs(5),
        Duration::ZERO,
    ))
    .await;
    let waited = started.elapsed();
    match second {
        Err(SendError::Saturated { request }) => assert_eq!(request.uri(), "/second"),
        other => panic!("expected the request back unsent, got {other:?}"),
    }
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    // The queue holds nothing for the request that gave up: the next one gets the connection.
    upstream.release.add_permits(2);
    assert_eq!(
        within(first).await.expect("task").ok().as_deref(),
        Some("ok")
    );
    let third = within(fetch(pool.clone(), upstream.target.clone(), "/third")).await;
    assert_eq!(third.ok().as_deref(), Some("ok"));
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_closed_connection_lets_the_next_queued_request_connect() {
    // Every answer closes its connection: queued requests can only go on new ones.
    let upstream = HeldUpstream::start(true).await;
    let pool = capped(1, Duration::from_secs(10));
    let requests = fetch_concurrently(&pool, &upstream, 3);
    upstream.wait_holding(1).await;
    upstream.release.add_permits(3);
    all_answered(requests).await;
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn without_a_cap_every_concurrent_request_gets_a_connection() {
    let upstream = HeldUpstream::start(false).await;
    let pool = Pool::new(PoolConfig::default());
    let requests = fetch_concurrently(&pool, &upstream, 4);
    upstream.wait_holding(4).await;
    upstream.release.add_permits(4);
    all_answered(requests).await;
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 4);
}
