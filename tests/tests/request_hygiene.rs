//! End to end: request hygiene (issue #17). What HTTP conformance and smuggling scanners try,
//! sent with raw sockets (HTTP/1.1) and hyper's HTTP/2 client (h2c), each asserting both the
//! answer and what the app received: nothing, or exactly one well-formed request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rwproxy_core::WriteMode;
use rwproxy_tests::app::Seen;
use rwproxy_tests::cluster::{Cluster, TestNode};
use rwproxy_tests::{eventually, metrics_line, metrics_page, raw_exchange};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(3);

/// One raw HTTP/1.1 exchange with `node`.
async fn raw(node: &TestNode, request: &[u8]) -> String {
    raw_exchange(&node.name, request, WAIT).await
}

/// The status line's code and the `rwproxy-error` header of a raw answer.
fn status_and_code(answer: &str) -> (u16, Option<String>) {
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let code = answer.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("rwproxy-error: ")
            .map(str::to_owned)
    });
    (status, code)
}

/// Requests the app saw with a complete body (what an app would act on).
fn complete(seen: &[Seen], incomplete: usize) -> usize {
    seen.len() - incomplete
}

/// `rwproxy_errors_total{reason=...}` on `node`.
async fn errors(node: &TestNode, reason: &str) -> u64 {
    let page = metrics_page(&node.admin_url()).await.expect("metrics");
    let prefix = format!("rwproxy_errors_total{{reason=\"{reason}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Sends one request over a fresh h2c (prior knowledge) connection with hyper's client, which
/// sends the headers as given (a `host` beside `:authority`, two `host`s).
async fn h2(node: &TestNode, request: Request<Full<Bytes>>) -> http::Response<Bytes> {
    send_h2(node, request).await.expect("an HTTP/2 answer")
}

/// [`h2`], where the stream may be reset instead of answered.
async fn send_h2(
    node: &TestNode,
    request: Request<Full<Bytes>>,
) -> Result<http::Response<Bytes>, hyper::Error> {
    let stream = TcpStream::connect(&node.name).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("an answer in time");
    let answer = match response {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            body.collect()
                .await
                .map(|b| http::Response::from_parts(parts, b.to_bytes()))
        }
        Err(error) => Err(error),
    };
    driver.abort();
    answer
}

fn h2_request(method: Method, uri: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    // A valid first chunk, so that the request is already on its way to the app when the
    // framing breaks: only then can the failure be blamed on the wrong side.
    let bad_tails: [&[u8]; 5] = [
        b"zz\r\nhello\r\n0\r\n\r\n",                  // not a hex size
        b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", // a size that overflows
        b" 5\r\nhello\r\n0\r\n\r\n",                  // a leading space
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",              // a bare LF in a chunk extension
        b"5\r\nhelloXX0\r\n\r\n",                     // a bad chunk terminator
    ];
    for tail in bad_tails {
        let mut request =
            b"POST /w HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                .to_vec();
        request.extend_from_slice(tail);
        let answer = raw(node, &request).await;
        assert_eq!(
            status_and_code(&answer),
            (400, Some("bad-request".into())),
            "{:?}: {answer:?}",
            String::from_utf8_lossy(tail)
        );
    }
    let seen = node.app.seen();
    assert_eq!(
        complete(&seen, node.app.incomplete_bodies()),
        0,
        "the app acted on a broken body: {seen:?}"
    );
    assert_eq!(errors(node, "bad-request").await, 5);
    assert_eq!(
        errors(node, "app-unreachable").await,
        0,
        "blamed on the app"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_shorter_than_its_length_is_the_clients_fault() {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    // Boxed: hyper's HTTP/2 client wants an `Unpin` body.
    let body = StreamBody::new(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|frame| (frame, rx)) },
    )));
    let request = Request::post(format!("http://{}/w", node.name))
        .header("content-length", "100")
        .body(body)
        .unwrap();
    let stream = TcpStream::connect(&node.name).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    let response = tokio::spawn(sender.send_request(request));
    tx.send(Ok(Frame::data(Bytes::from_static(b"only ten.."))))
        .await
        .unwrap();
    // Once rwproxy is streaming the request to the app, end the body 90 bytes short.
    let admin = node.admin_url();
    eventually(WAIT, "the request to be in flight", || {
        metrics_line(&admin, |l| l == "rwproxy_in_flight_requests 1")
    })
    .await;
    drop(tx);
    // The stream is reset (RFC 9113 §8.1.1: malformed), so the 400 never reaches the client,
    // and hyper may drop rwproxy's handler before it ends. What matters: the request settles,
    // is never blamed on the app, and the app acted on nothing.
    let _ = tokio::time::timeout(WAIT, response).await;
    eventually(WAIT, "the request to settle", || {
        metrics_line(&admin, |l| l == "rwproxy_in_flight_requests 0")
    })
    .await;
    assert_eq!(
        errors(node, "app-unreachable").await,
        0,
        "blamed on the app"
    );
    assert!(errors(node, "bad-request").await <= 1);
    let seen = node.app.seen();
    assert_eq!(complete(&seen, node.app.incomplete_bodies()), 0, "{seen:?}");
    driver.abort();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_forwarded_to_the_primary_is_the_clients_fault_too() {
    let c = Cluster::start(2, |_| {}).await;
    let replica = &c.nodes[1];
    let answer = raw(
        replica,
        b"POST /w HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
    )
    .await;
    assert_eq!(
        status_and_code(&answer),
        (400, Some("bad-request".into())),
        "{answer:?}"
    );
    assert_eq!(errors(replica, "bad-request").await, 1);
    assert_eq!(errors(replica, "primary-failed").await, 0);
    let primary = &c.nodes[0];
    assert_eq!(
        complete(&primary.app.seen(), primary.app.incomplete_bodies()),
        0
    );
    assert_eq!(c.writes_seen()[1], 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_and_a_host_that_contradicts_the_authority_are_refused() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    let answer = raw(node, b"GET /r HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert_eq!(
        status_and_code(&answer),
        (400, Some("bad-request".into())),
        "{answer:?}"
    );
    // The connection is closed after a refusal: what follows on it is as suspect.
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer:?}"
    );
    let url = format!("http://{}/r", node.name);
    let r = h2(
        node,
        h2_request(Method::GET, &url, &[("host", "a"), ("host", "b")]),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["rwproxy-error"], "bad-request");
    let r = h2(node, h2_request(Method::GET, &url, &[("host", "evil")])).await;
    assert_eq!(r.status(), 400, "host beside a different :authority");
    assert_eq!(r.headers()["rwproxy-error"], "bad-request");
    assert!(node.app.seen().is_empty(), "{:?}", node.app.seen());

    // A matching host passes, and the app sees the authority.
    let r = h2(node, h2_request(Method::GET, &url, &[("host", &node.name)])).await;
    assert_eq!(r.status(), 200);
    let seen = node.app.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["host"], node.name.as_str());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_invalid_host_is_refused() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    for request in [
        // HTTP/1.1 needs Host even with an absolute-form target (RFC 9112 §3.2).
        &b"GET http://real.example/r HTTP/1.1\r\n\r\n"[..],
        b"GET /r HTTP/1.1\r\nHost: evil.example/x?\r\n\r\n",
        b"GET /r HTTP/1.1\r\nHost: user@real.example\r\n\r\n",
        b"GET /r HTTP/1.1\r\nHost: real.example evil.example\r\n\r\n",
    ] {
        let answer = raw(node, request).await;
        assert_eq!(
            status_and_code(&answer),
            (400, Some("bad-request".into())),
            "{:?}: {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(node.app.seen().is_empty(), "{:?}", node.app.seen());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_names_the_host() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    let answer = raw(
        node,
        b"GET http://real.example/r HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_and_code(&answer).0, 200, "{answer:?}");
    let seen = node.app.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["host"], "real.example");
    assert_eq!(seen[0].headers["x-forwarded-host"], "real.example");
    assert_eq!(seen[0].uri, "/r");
    let answer = raw(
        node,
        b"GET http://u:p@real.example/r HTTP/1.1\r\nHost: real.example\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_and_code(&answer),
        (400, Some("bad-request".into())),
        "{answer:?}"
    );
    assert_eq!(node.app.seen().len(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_answered_by_rwproxy() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    let answer = raw(
        node,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_and_code(&answer),
        (501, Some("not-implemented".into())),
        "{answer:?}"
    );
    let r = h2(node, h2_request(Method::CONNECT, "example.com:443", &[])).await;
    assert_eq!(r.status(), 501);
    assert_eq!(r.headers()["rwproxy-error"], "not-implemented");
    assert!(node.app.seen().is_empty(), "{:?}", node.app.seen());
    assert_eq!(errors(node, "not-implemented").await, 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_strip_rwproxys_own_headers() {
    let c = Cluster::start(2, |_| {}).await;
    // Through a replica to the primary's app, and straight to the primary's app.
    for node in [&c.nodes[1], &c.nodes[0]] {
        let answer = raw(
            node,
            b"POST /w HTTP/1.1\r\nHost: x\r\nX-Request-Id: probe-1\r\nX-Forwarded-For: 203.0.113.9\r\n\
              Connection: close, X-Request-Id, X-Forwarded-For, Via, X-Forwarded-Proto, Host, Content-Length\r\n\
              Content-Length: 2\r\n\r\nhi",
        )
        .await;
        assert_eq!(status_and_code(&answer).0, 200, "{answer:?}");
    }
    let seen = c.nodes[0].app.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.headers["x-request-id"], "probe-1");
        assert!(
            s.headers["x-forwarded-for"]
                .to_str()
                .unwrap()
                .starts_with("203.0.113.9, 127.0.0.1"),
            "{:?}",
            s.headers
        );
        assert_eq!(s.headers["x-forwarded-proto"], "http");
        assert!(s.headers.contains_key("via"));
        assert_eq!(s.headers["host"], "x");
        assert_eq!(s.body_len, 2);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrades_never_reach_the_app() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    for request in [
        &b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"[..],
        b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: HTTP/2.0\r\n\r\n",
    ] {
        let answer = raw(node, request).await;
        assert_eq!(status_and_code(&answer).0, 200, "{answer:?}");
    }
    let seen = node.app.seen();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        for gone in ["upgrade", "http2-settings", "connection"] {
            assert!(!s.headers.contains_key(gone), "{gone}: {:?}", s.headers);
        }
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscored_header_names_are_dropped_unless_allowed() {
    let request = b"POST /w HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\nX_Forwarded_For: 6.6.6.6\r\nX-Kept: 1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    let answer = raw(node, request).await;
    assert_eq!(status_and_code(&answer).0, 200, "{answer:?}");
    let url = format!("http://{}/r", node.name);
    let r = h2(
        node,
        h2_request(Method::GET, &url, &[("x_forwarded_for", "6.6.6.6")]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let seen = node.app.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert!(
            !s.headers.contains_key("transfer_encoding"),
            "{:?}",
            s.headers
        );
        assert!(
            !s.headers.contains_key("x_forwarded_for"),
            "{:?}",
            s.headers
        );
    }
    assert_eq!(seen[0].headers["x-kept"], "1");
    assert_eq!(seen[0].body_len, 2);
    c.stop().await;

    let c = Cluster::start(1, |config| config.proxy.allow_underscores_in_headers = true).await;
    let node = &c.nodes[0];
    let answer = raw(node, request).await;
    assert_eq!(status_and_code(&answer).0, 200, "{answer:?}");
    let seen = node.app.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["transfer_encoding"], "chunked");
    assert_eq!(seen[0].body_len, 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_one_chunked_are_refused() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    for (coding, want) in [
        ("gzip, chunked", (501, Some("not-implemented".to_owned()))),
        ("chunked, chunked", (400, Some("bad-request".to_owned()))),
    ] {
        let request = format!(
            "POST /w HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        );
        let answer = raw(node, request.as_bytes()).await;
        assert_eq!(status_and_code(&answer), want, "{coding}: {answer:?}");
    }
    assert!(node.app.seen().is_empty(), "{:?}", node.app.seen());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_reaches_the_app_in_canonical_form() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    let answer = raw(
        node,
        b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(status_and_code(&answer).0, 200, "{answer:?}");
    let seen = node.app.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["content-length"], "5");
    assert_eq!(seen[0].body_len, 5);
    c.stop().await;
}

/// The smuggled request every framing case tries to slip behind the first one.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Framing cases of the CL.TE / TE.CL desync scanners (smuggler, Burp's HTTP Request Smuggler):
/// conflicting `Content-Length` and `Transfer-Encoding`, and `Transfer-Encoding` obfuscated so
/// that one parser sees it and another does not. Each body is followed by [`SMUGGLED`]; the
/// number is the status rwproxy answers (200: one request reached the app, framed one way).
fn framing_cases() -> Vec<(&'static str, u16, String)> {
    let te_variants = [
        // Whitespace and case are not obfuscation to hyper: chunked, Content-Length dropped.
        ("te-tab", 200, "Transfer-Encoding:\tchunked"),
        ("te-case", 200, "TRANSFER-ENCODING: ChUnKeD"),
        // A bare LF ends a header line for hyper as for most parsers (RFC 9112 §2.2 allows it).
        ("te-bare-lf", 200, "X: y\nTransfer-Encoding: chunked"),
        // Dropped before the app (a `_`-to-`-` backend would read it): Content-Length frames.
        ("te-underscore", 200, "Transfer_Encoding: chunked"),
        // hyper: the last coding is not chunked, or the head does not parse.
        (
            "te-duplicate",
            400,
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        ),
        ("te-vertical-tab", 400, "Transfer-Encoding:\x0bchunked"),
        ("te-space-before-colon", 400, "Transfer-Encoding : chunked"),
        ("te-xchunked", 400, "Transfer-Encoding: xchunked"),
        ("te-quoted", 400, "Transfer-Encoding: \"chunked\""),
        ("te-list", 400, "Transfer-Encoding: chunked, identity"),
        ("te-obs-fold", 400, "Transfer-Encoding:\r\n chunked"),
        (
            "te-leading-space",
            400,
            "X: y\r\n Transfer-Encoding: chunked",
        ),
        ("te-nul", 400, "Transfer-Encoding: chunked\0"),
        // rwproxy's hygiene checks.
        (
            "te-duplicate-reversed",
            501,
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
        ),
        (
            "te-double-chunked",
            400,
            "Transfer-Encoding: chunked, chunked",
        ),
    ];
    let mut cases = vec![
        // CL.TE: a front end using Content-Length forwards everything; a back end using
        // Transfer-Encoding stops at `0` and reads the rest as a new request.
        (
            "cl-te",
            200,
            format!(
                "POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
        ),
        // TE.CL: the chunk carries the smuggled request; Content-Length ends the body early.
        (
            "te-cl",
            200,
            format!(
                "POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n",
                SMUGGLED.len()
            ),
        ),
    ];
    for (name, status, te) in te_variants {
        cases.push((
            name,
            status,
            format!(
                "POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{te}\r\n\r\n0\r\n\r\n{SMUGGLED}",
                5 + SMUGGLED.len()
            ),
        ));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_tricks_never_smuggle_a_second_request() {
    let c = Cluster::start(1, |_| {}).await;
    let node = &c.nodes[0];
    for (name, status, request) in framing_cases() {
        let before = node.app.seen().len();
        let answer = raw(node, request.as_bytes()).await;
        assert_eq!(status_and_code(&answer).0, status, "{name}: {answer:?}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{name}: a second request was answered: {answer:?}"
        );
        let seen = node.app.seen();
        let new = &seen[before..];
        assert!(new.iter().all(|s| s.uri == "/w"), "{name}: {new:?}");
        let expected = usize::from(status == 200);
        assert_eq!(new.len(), expected, "{name}: the app saw {new:?}");
    }
    assert_eq!(node.app.incomplete_bodies(), 0);
    c.stop().await;
}

/// A client that writes its whole request before reading (curl, most scripts) gets the 421 or
/// 307 rather than a broken pipe: rwproxy reads the body (up to 1 MiB) before answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_forwarding_modes_read_the_body_before_answering() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for (mode, status) in [(WriteMode::FlyReplay, 421), (WriteMode::Redirect, 307)] {
        let c = Cluster::start(2, |config| config.writes.mode = mode).await;
        let replica = &c.nodes[1];
        // Within Fly's 1 MB replay limit, and well past the ~700 KB where the pipe broke.
        let body = vec![b'x'; 990_000];
        let mut request = format!(
            "POST /things HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        // A small send buffer, so that the body cannot hide in kernel buffers on loopback:
        // all of it must be read by rwproxy for the write to finish.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(16 * 1024).unwrap();
        let mut stream = socket.connect(replica.name.parse().unwrap()).await.unwrap();
        stream
            .write_all(&request)
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: the whole body could not be written: {e}"));
        let mut head = vec![0u8; 512];
        let n = tokio::time::timeout(WAIT, stream.read(&mut head))
            .await
            .expect("an answer in time")
            .unwrap_or_else(|e| panic!("{mode:?}: no answer: {e}"));
        let answer = String::from_utf8_lossy(&head[..n]);
        assert_eq!(status_and_code(&answer).0, status, "{mode:?}: {answer:?}");
        assert_eq!(c.writes_seen(), [0, 0], "{mode:?}");
        c.stop().await;
    }
}
