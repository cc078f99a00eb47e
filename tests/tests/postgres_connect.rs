//! How the postgres source reaches a real PostgreSQL server: TLS (a server started with
//! `ssl = on` and a certificate made on the spot, the monitoring role allowed over TLS only),
//! and a Unix socket in both URL forms.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use rwproxy_tests::pg_cluster::PgNode;
use rwproxy_tests::postgres::{PgBin, PgServer, MONITOR_USER, PASSWORD};
use rwproxy_tests::tls::Pki;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_source_speaks_tls_and_checks_what_sslmode_asks() {
    let Some(bin) = PgBin::find() else { return };
    let mut server = PgServer::primary(&bin).await;
    let pki = Pki::new();
    let identity = pki.server();
    server.enable_tls(&identity.cert_pem, &identity.key_pem);
    let other_ca = Pki::new();
    let base = |host: &str, query: &str| {
        format!(
            "postgres://{MONITOR_USER}:{PASSWORD}@{host}:{}/postgres?{query}",
            server.port
        )
    };
    let ca = pki.ca_path.display().to_string();
    let wrong_ca = other_ca.ca_path.display().to_string();
    let cases = [
        // Works: the server's certificate names 127.0.0.1 and localhost, signed by `ca`.
        (base("127.0.0.1", "sslmode=require"), None),
        (
            base(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            None,
        ),
        (
            base("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            None,
        ),
        // The default (`prefer`) uses TLS when the server offers it, as libpq does.
        (base("127.0.0.1", ""), None),
        // Refused, with the reason in the health document.
        (
            base(
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={wrong_ca}"),
            ),
            Some("invalid peer certificate"),
        ),
        (base("127.0.0.1", "sslmode=disable"), Some("no encryption")),
    ];
    for (url, failure) in cases {
        let node = PgNode::start(&url, "postgres://u@127.0.0.1:1/x", None, |_| {}).await;
        match failure {
            None => {
                node.health_until(&format!("primary over TLS with {url}"), |code, body| {
                    code == 200 && body["role"] == "primary"
                })
                .await
            }
            Some(reason) => {
                node.health_until(&format!("{reason:?} with {url}"), |code, body| {
                    code == 503 && body["problem"].as_str().is_some_and(|p| p.contains(reason))
                })
                .await
            }
        }
        node.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_source_connects_over_a_unix_socket_in_both_url_forms() {
    let Some(bin) = PgBin::find() else { return };
    let mut server = PgServer::primary(&bin).await;
    let dir = server.unix_socket();
    let dir = dir.display().to_string();
    let encoded: String = dir.replace('/', "%2F");
    for url in [
        format!(
            "postgres://{MONITOR_USER}@/postgres?host={dir}&port={}",
            server.port
        ),
        format!(
            "postgres://{MONITOR_USER}@{encoded}:{}/postgres",
            server.port
        ),
    ] {
        assert_eq!(rwproxy_cluster::check_postgres_url(&url), Ok(()), "{url}");
        let node = PgNode::start(&url, "postgres://u@127.0.0.1:1/x", None, |_| {}).await;
        node.health_until(
            &format!("primary over the socket with {url}"),
            |code, body| code == 200 && body["role"] == "primary",
        )
        .await;
        node.node.shutdown().await;
    }
}
