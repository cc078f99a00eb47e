//! End to end: TLS on the proxy listener (HTTP/2 by ALPN, `Secure` cookies, certificate reload),
//! forwarded writes over https between nodes with client certificates (mutual TLS), trailers
//! through HTTP/2 and HTTP/1.1 hops, and the TLS keys' validation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rwproxy::config::{ClientTlsFiles, Config, ServerTlsFiles};
use rwproxy_tests::cluster::Cluster;
use rwproxy_tests::tls::{peer_certificate, Identity, Pki};
use rwproxy_tests::{eventually, Answer as _};

/// TLS on every node's listener with `server`; forwarded writes go over https, trusting the
/// test CA and presenting `client` when given; `require_client_certs` turns on mutual TLS.
fn with_tls(
    pki: &Pki,
    server: &Identity,
    client: Option<&Identity>,
    require_client_certs: bool,
) -> impl Fn(&mut Config) {
    let server = ServerTlsFiles {
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_ca: require_client_certs.then(|| pki.ca_path.clone()),
    };
    let upstream = ClientTlsFiles {
        ca: Some(pki.ca_path.clone()),
        client_identity: client.map(|c| (c.cert.clone(), c.key.clone())),
    };
    move |config: &mut Config| {
        config.proxy.tls = Some(server.clone());
        config.writes.primary_url = "https://{primary}".into();
        config.writes.tls = upstream.clone();
    }
}

fn https(name: &str) -> String {
    format!("https://{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_with_alpn_and_secure_cookies() {
    let pki = Pki::new();
    let server = pki.server();
    let c = Cluster::start(2, with_tls(&pki, &server, None, false)).await;
    let client = pki.reqwest(None);
    let replica = https(&c.nodes[1].name);

    let r = client.get(format!("{replica}/items")).answer().await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), Version::HTTP_2, "ALPN should pick h2");
    assert_eq!(r.headers()["rwproxy-route"], "local");
    let seen = &c.nodes[1].app.seen()[0];
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["via"], format!("2 {}", c.nodes[1].name));

    // A write through the replica travels to the primary over https and comes back with a
    // Secure cookie.
    let r = client
        .post(format!("{replica}/things"))
        .body(vec![7u8; 300_000])
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "primary; reason=write");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__txid="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["app"], "app0");
    assert_eq!(doc["body_len"], 300_000);
    assert_eq!(
        c.nodes[0].app.seen()[0].headers["x-forwarded-proto"],
        "https"
    );

    // HTTP/1.1 clients are served on the same listener.
    let http1 = rwproxy_tests::client_builder()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = http1
        .post(format!("{}/direct", https(&c.nodes[0].name)))
        .body("x")
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), Version::HTTP_11);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");

    // Plain HTTP on a TLS listener gets nowhere.
    let plain = rwproxy_tests::client()
        .get(format!("{}/items", c.nodes[1].url()))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    c.stop().await;
}

/// The `tls-reloaded` events of the node's history.
async fn tls_reloads(admin: &str) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = reqwest::get(format!("{admin}/events"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "tls-reloaded")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_reloads_when_its_files_change() {
    let pki = Pki::new();
    let cert = pki.dir().join("live.pem");
    let key = pki.dir().join("live.key");
    let first = pki.server_at(&cert, &key);
    let c = Cluster::start(1, with_tls(&pki, &first, None, false)).await;
    let url = format!("{}/health", https(&c.nodes[0].name));
    let served = || {
        // A new client each time: a resumed TLS session would report the certificate of the
        // session it resumes.
        let client = pki.reqwest(None);
        let url = url.clone();
        async move {
            let r = client.get(&url).answer().await;
            peer_certificate(&r).expect("peer certificate")
        }
    };
    assert_eq!(served().await, first.der);

    // New files: new connections get the new certificate.
    let second = pki.server_at(&cert, &key);
    eventually(Duration::from_secs(15), "the new certificate", || async {
        (served().await == second.der).then_some(())
    })
    .await;
    // The reload is in the node's history (/events), an info line without a message.
    let admin = c.nodes[0].admin_url();
    let reloads = tls_reloads(&admin).await;
    assert!(
        reloads
            .iter()
            .any(|e| e["severity"] == "info" && e["message"].is_null()),
        "{reloads:?}"
    );

    // A broken key, then a certificate that does not match the key: the old pair stays in
    // service (checked over more than one poll interval).
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let other = pki.server();
    std::fs::write(&cert, &other.cert_pem).unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        assert_eq!(served().await, second.der, "a bad pair replaced a good one");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&key, &first.key_pem).unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        assert_eq!(served().await, second.der, "a mismatched pair was used");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both failures are warnings in the history, saying the previous certificate stays.
    let reloads = tls_reloads(&admin).await;
    let failed: Vec<_> = reloads.iter().filter(|e| e["severity"] == "warn").collect();
    assert!(!failed.is_empty(), "{reloads:?}");
    assert!(
        failed.iter().all(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("not reloaded, the previous certificate stays: ")),
        "{failed:?}"
    );

    // A good pair again is picked up: the watcher survived the errors.
    let third = pki.server_at(&cert, &key);
    eventually(Duration::from_secs(15), "the third certificate", || async {
        (served().await == third.der).then_some(())
    })
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_nodes_and_clients_without_a_certificate_refused() {
    let pki = Pki::new();
    let server = pki.server();
    let node_client = pki.client();
    let c = Cluster::start(2, with_tls(&pki, &server, Some(&node_client), true)).await;
    let replica = https(&c.nodes[1].name);

    let user = pki.client();
    let client = pki.reqwest(Some(&user));
    let r = client
        .put(format!("{replica}/things/1"))
        .body("payload")
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["rwproxy-route"], "primary; reason=write");
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc["app"], "app0");
    assert_eq!(c.nodes[0].app.writes_seen(), 1);

    // No client certificate: the handshake is refused, nothing reaches an app.
    let anonymous = pki.reqwest(None);
    for url in [
        format!("{replica}/things/2"),
        format!("{}/x", https(&c.nodes[0].name)),
    ] {
        let r = anonymous.put(&url).body("payload").send().await;
        assert!(r.is_err(), "{url}: {r:?}");
    }
    // A certificate from another CA is refused too.
    let stranger = Pki::new().client();
    let r = pki
        .reqwest(Some(&stranger))
        .put(format!("{replica}/things/3"))
        .body("payload")
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(c.writes_seen(), [1, 0], "writes seen by each app");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_client_certificate_cannot_forward() {
    let pki = Pki::new();
    let server = pki.server();
    // Nodes require client certificates but present none to each other.
    let c = Cluster::start(2, with_tls(&pki, &server, None, true)).await;
    let user = pki.client();
    let r = pki
        .reqwest(Some(&user))
        .post(format!("{}/things", https(&c.nodes[1].name)))
        .body("x")
        .answer()
        .await;
    // TLS 1.3 reports a refused client certificate only after the client's first request was
    // written; the primary never read it, so it is reported as never sent.
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["rwproxy-error"], "primary-unreachable");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(c.writes_seen(), [0, 0], "writes seen by each app");
    c.stop().await;
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body of `data` followed by the trailer `x-checksum: <checksum>`.
fn body_with_trailers(data: &'static str, checksum: &str) -> TestBody {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_str(checksum).unwrap());
    let frames = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(data.as_bytes()))),
        Ok(Frame::trailers(trailers)),
    ];
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

/// Checks that `response` is a 200 with `rwproxy-route: route`, then collects it: its body and
/// its trailers (which must be there).
async fn body_and_trailers(
    response: http::Response<hyper::body::Incoming>,
    route: &str,
) -> (Bytes, HeaderMap) {
    assert_eq!(response.status(), 200, "expected route {route}");
    assert_eq!(response.headers()["rwproxy-route"], route);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("response trailers");
    (collected.to_bytes(), trailers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_pass_through_in_both_directions() {
    let pki = Pki::new();
    let server = pki.server();
    let c = Cluster::start(2, with_tls(&pki, &server, None, false)).await;
    let replica = c.nodes[1].name.clone();

    // HTTP/2 (ALPN) client -> replica -> HTTP/1.1 over TLS -> primary -> HTTP/1.1 -> app.
    let tls = pki.connect(&replica, &[b"h2"], None).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::post(format!("https://{replica}/trailers"))
        .header("trailer", "x-checksum")
        .body(body_with_trailers("hello trailers", "sum-123"))
        .unwrap();
    let response = h2.send_request(request).await.unwrap();
    let (body, trailers) = body_and_trailers(response, "primary; reason=write").await;
    assert_eq!(trailers["x-echo-checksum"], "sum-123");
    assert_eq!(trailers["x-app"], "app0");
    assert_eq!(body, Bytes::from("app0 got 14 bytes, te=trailers"));

    // HTTP/1.1 client with TE: trailers, served by the replica's own app.
    let tls = pki.connect(&replica, &[b"http/1.1"], None).await.unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    // A GET with a body: hyper's client sends it only when told it is chunked.
    let request = Request::get("/trailers")
        .header("host", &replica)
        .header("transfer-encoding", "chunked")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .body(body_with_trailers("abc", "sum-h1"))
        .unwrap();
    let response = h1.send_request(request).await.unwrap();
    let (body, trailers) = body_and_trailers(response, "local").await;
    assert_eq!(trailers["x-echo-checksum"], "sum-h1");
    assert_eq!(trailers["x-app"], "app1");
    assert_eq!(body, Bytes::from("app1 got 3 bytes, te=trailers"));
    c.stop().await;
}

#[test]
fn tls_keys_are_validated() {
    let pki = Pki::new();
    let good = pki.server();
    let other = pki.server();
    let text = |tls: &str, writes: &str| {
        format!(
            "[proxy]\napp = \"http://127.0.0.1:8081\"\n{tls}\n[writes]\nprimary_url = \"https://{{primary}}:8443\"\n{writes}\n"
        )
    };
    let ok = text(
        &format!(
            "[proxy.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}",
            good.cert, good.key, pki.ca_path
        ),
        &format!(
            "ca = {:?}\nclient_cert = {:?}\nclient_key = {:?}",
            pki.ca_path, good.cert, good.key
        ),
    );
    let config = rwproxy::config::parse(&ok).unwrap_or_else(|e| panic!("{e}"));
    let tls = config.proxy.tls.expect("tls");
    assert_eq!(tls.client_ca.as_deref(), Some(pki.ca_path.as_path()));
    assert_eq!(config.proxy.upgrade_idle_timeout, Duration::from_secs(300));

    let problems = |text: String| {
        rwproxy::config::parse(&text)
            .map(|_| Vec::new())
            .unwrap_or_else(|e| e.0.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    };
    let p = problems(text(&format!("[proxy.tls]\ncert = {:?}", good.cert), ""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("proxy.tls.key: required"), "{p:?}");

    let p = problems(text(
        &format!("[proxy.tls]\ncert = {:?}\nkey = {:?}", good.cert, other.key),
        "",
    ));
    assert!(p.len() == 1 && p[0].starts_with("proxy.tls.key: "), "{p:?}");
    assert!(p[0].contains("does not go with"), "{p:?}");

    let p = problems(text(
        "[proxy.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\nsurprise = 1",
        "ca = \"/nonexistent/ca.pem\"\nclient_cert = \"/nonexistent/c.pem\"",
    ));
    let keys: Vec<&str> = p.iter().map(|l| l.split(':').next().unwrap()).collect();
    for key in [
        "proxy.tls.surprise",
        "proxy.tls.cert",
        "proxy.tls.key",
        "writes.ca",
        "writes.client_key",
    ] {
        assert!(keys.contains(&key), "{key} not reported: {p:?}");
    }
    let p = problems(
        "[proxy]\napp = \"http://127.0.0.1:8081\"\nupgrade_idle_timeout = \"0s\"\n".to_owned(),
    );
    assert_eq!(p, ["proxy.upgrade_idle_timeout: must be greater than zero"]);
}
