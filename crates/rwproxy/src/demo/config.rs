//! Each demo node's rwproxy configuration, written as the TOML a user would write and parsed by
//! the real parser: the demo runs exactly what `rwproxy run` would.

use std::net::SocketAddr;
use std::path::Path;

use crate::config::{self, Config, ConfigErrors};

/// The database whose position backs the consistency token.
pub(crate) const DATABASE: &str = "app.db";

/// The TOML for one node. `name` is the node's rwproxy address, so `{primary}` in
/// `writes.primary_url` becomes the primary's rwproxy address.
pub(crate) fn node_toml(
    name: &str,
    proxy: SocketAddr,
    admin: SocketAddr,
    app: SocketAddr,
    mount: &Path,
) -> String {
    // toml::Value renders correctly quoted strings, whatever the temporary directory's path.
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        r#"node = {name}

[proxy]
listen = {proxy}
app = {app}
app_connect_retry = "5s"
drain_timeout = "2s"

[admin]
listen = {admin}

[cluster]
source = "litefs"
mount = {mount}
databases = ["{DATABASE}"]
poll = "50ms"

[writes]
mode = "forward"
primary_url = "http://{{primary}}"
primary_wait = "5s"
timeout = "10s"

[reads]
max_lag = "5s"

[routing]
# The demo's control endpoints (/demo/promote, /demo/status) are served by the node they are
# sent to, whatever the method: a passthrough POST is not forwarded to the primary.
passthrough = ["/demo/*"]

[consistency]
wait = "5s"
on_timeout = "forward"

[health]
max_lag = "10s"
"#,
        name = quote(name),
        proxy = quote(&proxy.to_string()),
        admin = quote(&admin.to_string()),
        app = quote(&format!("http://{app}")),
        mount = quote(&mount.display().to_string()),
    )
}

/// Parses [`node_toml`] with the real configuration parser.
pub(crate) fn node_config(
    name: &str,
    proxy: SocketAddr,
    admin: SocketAddr,
    app: SocketAddr,
    mount: &Path,
) -> Result<Config, ConfigErrors> {
    config::parse(&node_toml(name, proxy, admin, app, mount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceConfig;

    #[test]
    fn the_node_config_is_valid() {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let config = node_config(
            "127.0.0.1:4000",
            addr(4000),
            addr(4001),
            addr(4002),
            Path::new("/tmp/a \"quoted\" dir"),
        )
        .unwrap();
        assert_eq!(config.node, "127.0.0.1:4000");
        assert_eq!(
            config
                .writes
                .primary_uri("127.0.0.1:4003")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:4003/"
        );
        assert!(matches!(
            config.cluster.source,
            SourceConfig::Litefs { ref mount, .. } if mount == Path::new("/tmp/a \"quoted\" dir")
        ));
        assert_eq!(config.routing.passthrough, vec!["/demo/*".to_owned()]);
    }
}
