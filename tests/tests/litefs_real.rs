//! End to end against a real LiteFS cluster (FUSE, real replication, LiteFS's own proxy): the
//! mixed cluster of the migration procedure (docs/migrating-from-litefs-proxy.md). rwproxy runs
//! on new ports beside LiteFS's proxies, as the procedure says; a write through the replica's
//! rwproxy reaches the primary through LiteFS's proxy there, and a read carrying LiteFS's cookie
//! waits on the replica for real replication; rwproxy's own cookie is honoured by LiteFS's proxy
//! (a roll-back) and by the replica's rwproxy. Skips without the LiteFS binary, FUSE or python3,
//! unless `RWPROXY_REQUIRE_EXTERNAL=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use rwproxy::config;
use rwproxy::node::Node;
use rwproxy_tests::litefs_real::{requirements, LitefsCluster, LitefsNode, PRIMARY_NAME};
use rwproxy_tests::{client, eventually, Answer as _};

/// rwproxy beside LiteFS's proxy on `litefs`'s node, forwarding writes to `primary_url`.
async fn rwproxy_beside(litefs: &LitefsNode, name: &str, primary_url: &str) -> Node {
    let text = format!(
        r#"
node = "{name}"
[proxy]
listen = "127.0.0.1:0"
app = "{app}"
[admin]
listen = "127.0.0.1:0"
[cluster]
source = "litefs"
mount = "{mount}"
databases = ["db.sqlite"]
api = "http://127.0.0.1:{api}"
[writes]
primary_url = "{primary_url}"
# No `http2 = false`: LiteFS's proxy speaks HTTP/1.1 only, which the replica finds out on its
# warm-up connection (writes then go over HTTP/1.1), as the migration guide says.
[health]
path = "/litefs/health"
"#,
        app = litefs.app_url(),
        mount = litefs.mount.display(),
        api = litefs.api_port,
    );
    Node::start(&config::parse(&text).unwrap()).await.unwrap()
}

fn url(node: &Node) -> String {
    format!("http://{}", node.proxy_addr())
}

/// The `__txid=...` pair of a response's `Set-Cookie`.
fn txid_cookie(response: &reqwest::Response) -> String {
    let set = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("__txid="))
        .unwrap_or_else(|| panic!("no __txid cookie: {:?}", response.headers()));
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_cluster_of_litefs_proxies_and_rwproxy_keeps_writes_and_cookies() {
    let Some((litefs, python)) = requirements() else {
        return;
    };
    let cluster = LitefsCluster::start(&litefs, &python).await;
    let primary_litefs_proxy = cluster.primary.proxy_url().unwrap();
    // The primary's rwproxy is called what the static lease names the primary.
    let primary = rwproxy_beside(&cluster.primary, PRIMARY_NAME, "http://{primary}").await;
    // The replica's rwproxy forwards writes to the primary's LiteFS proxy (mixed cluster).
    let replica = rwproxy_beside(&cluster.replica, "node-b", &primary_litefs_proxy).await;
    let client = client();
    for node in [&primary, &replica] {
        let health = format!("{}/litefs/health", url(node));
        eventually(Duration::from_secs(20), "rwproxy's health 200", || async {
            (client.get(&health).send().await.ok()?.status() == 200).then_some(())
        })
        .await;
    }

    // A write through the replica's rwproxy, applied by the primary behind LiteFS's proxy,
    // which sets its cookie.
    let r = client
        .post(format!("{}/", url(&replica)))
        .body("one")
        .answer()
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.headers());
    let litefs_cookie = txid_cookie(&r);
    // LiteFS's proxy was found not to speak HTTP/2 (h2c), once.
    let admin = format!("http://{}", replica.admin_addr().unwrap());
    eventually(Duration::from_secs(10), "the HTTP/1.1 fallback", || {
        rwproxy_tests::metrics_line(&admin, |l| l == "rwproxy_primary_http2_fallbacks_total 1")
    })
    .await;
    // Read back on the replica with LiteFS's cookie: rwproxy waits for real replication.
    let r = client
        .get(format!("{}/", url(&replica)))
        .header("cookie", &litefs_cookie)
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        "1",
        "the replica's read saw the write"
    );

    // A write through the primary's rwproxy: rwproxy's cookie ...
    let r = client
        .post(format!("{}/", url(&primary)))
        .body("two")
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    let rwproxy_cookie = txid_cookie(&r);
    // ... honoured by LiteFS's proxy (a roll-back keeps sessions) ...
    let r = client
        .get(format!("{primary_litefs_proxy}/"))
        .header("cookie", &rwproxy_cookie)
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "2");
    // ... and by the replica's rwproxy, which waits for it.
    let r = client
        .get(format!("{}/", url(&replica)))
        .header("cookie", &rwproxy_cookie)
        .answer()
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "2");

    // The replica's rwproxy follows the name LiteFS wrote, and calls it the primary's.
    let doc: serde_json::Value = client
        .get(format!("{}/litefs/health", url(&replica)))
        .answer()
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["role"], "replica");
    assert_eq!(doc["primary"], PRIMARY_NAME);
    replica.shutdown().await;
    primary.shutdown().await;
    drop(cluster);
}
