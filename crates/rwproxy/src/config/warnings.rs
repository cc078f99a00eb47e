//! Settings that are valid but likely wrong: `rwproxy check` prints them on stderr and still
//! succeeds, `rwproxy run` logs them at start-up.

use std::time::Duration;

use super::{Config, Problem, SourceConfig};

/// Below this, a lag threshold makes a healthy, idle LiteFS replica flap: LiteFS heartbeats
/// once a second, so an idle replica's `.lag` is a saw-tooth from 0 to about 1000 ms.
pub const LITEFS_MIN_MAX_LAG: Duration = Duration::from_secs(2);

/// Every warning for `config`, each naming its key.
pub fn warnings(config: &Config) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if matches!(config.cluster.source, SourceConfig::Litefs { .. }) {
        for (key, value) in [
            ("reads.max_lag", config.reads.max_lag),
            ("health.max_lag", config.health.max_lag),
        ] {
            if value < LITEFS_MIN_MAX_LAG {
                warnings.push(Problem::new(
                    key,
                    format!(
                        "{} is under 2s: LiteFS heartbeats once a second, so an idle replica's \
                         lag runs from 0 to about 1s and a healthy replica would flap; use 2s \
                         or more",
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
    }
    warnings.extend(postgres_primary_port(config));
    warnings.extend(passthrough_everything(&config.routing.passthrough));
    warnings
}

/// With the postgres source, `{primary}` is a replica's `sender_host`: a host, no port. The
/// replicas reach this node, once promoted, at `primary_url`'s port on its replication host;
/// a different `proxy.listen` port means that is some other node (several nodes on one host
/// told apart by port), and writes would go there after the first failover.
fn postgres_primary_port(config: &Config) -> Option<Problem> {
    let SourceConfig::Postgres { primary: None, .. } = &config.cluster.source else {
        return None;
    };
    let template = &config.writes.primary_url;
    let after_scheme = template.split_once("://")?.1;
    if !after_scheme.starts_with("{primary}") {
        return None;
    }
    let uri: http::Uri = template
        .replace("{primary}", "primary.invalid")
        .parse()
        .ok()?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let listen = config.proxy.listen.port();
    (port != listen).then(|| {
        Problem::new(
            "writes.primary_url",
            format!(
                "port {port} differs from proxy.listen's {listen}: once this node is promoted, \
                 the replicas send writes to its replication host at port {port}, which is not \
                 this node (several nodes on one host need one address each; see \
                 docs/postgres.md)"
            ),
        )
    })
}

/// Paths that no deliberate passthrough glob (static files, a favicon) covers all of.
const PROBE_PATHS: [&str; 4] = ["/", "/login", "/api/items/1", "/a/b/c.json"];

/// A passthrough glob that matches every path sends every request, writes included, to this
/// node's own app, on a replica too: almost certainly `"/*"` written for "my static files".
fn passthrough_everything(globs: &[String]) -> Option<Problem> {
    let everything = globs.iter().find(|glob| {
        rwproxy_core::class::compile_glob(glob).is_ok_and(|g| {
            let matcher = g.compile_matcher();
            PROBE_PATHS.iter().all(|p| matcher.is_match(p))
        })
    })?;
    Some(Problem::new(
        "routing.passthrough",
        format!(
            "\"{everything}\" matches every path: every request, writes included, goes to this \
             node's own app, on a replica too (writes there fail or are lost); list only the \
             paths the app serves the same on every node, e.g. \"/static/*\""
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(source: &str, reads: &str, health: &str) -> Config {
        let text = format!(
            "[proxy]\napp = \"http://127.0.0.1:8081\"\n[cluster]\nsource = \"{source}\"\n\
             primary = \"a\"\nmount = \"/litefs\"\n[reads]\nmax_lag = \"{reads}\"\n\
             [health]\nmax_lag = \"{health}\"\n"
        );
        super::super::parse(&text).unwrap()
    }

    #[test]
    fn litefs_lag_thresholds_under_two_seconds_are_warned_about() {
        let found = warnings(&config("litefs", "500ms", "1s"));
        let keys: Vec<&str> = found.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["reads.max_lag", "health.max_lag"]);
        assert!(
            found[0]
                .message
                .starts_with("500ms is under 2s: LiteFS heartbeats"),
            "{}",
            found[0]
        );
        assert!(warnings(&config("litefs", "2s", "10s")).is_empty());
    }

    #[test]
    fn a_postgres_primary_url_on_another_port_than_the_listener_is_warned_about() {
        let pg = |listen: &str, primary_url: &str, primary: &str| {
            let text = format!(
                "[proxy]\nlisten = \"{listen}\"\napp = \"http://127.0.0.1:8081\"\n[cluster]\n\
                 source = \"postgres\"\nurl = \"postgres://rwproxy@127.0.0.1/postgres\"\n\
                 databases = [\"wal\"]\n{primary}[writes]\nprimary_url = \"{primary_url}\"\n"
            );
            warnings(&super::super::parse(&text).unwrap())
        };
        let found = pg("127.0.0.1:8082", "http://{primary}:8080", "");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "writes.primary_url");
        assert!(found[0]
            .message
            .starts_with("port 8080 differs from proxy.listen's 8082"));
        assert!(pg("127.0.0.2:8080", "http://{primary}:8080", "").is_empty());
        assert!(pg("0.0.0.0:80", "http://{primary}", "").is_empty());
        assert!(
            pg(
                "127.0.0.1:8082",
                "http://{primary}:8080",
                "primary = \"pg.internal\"\n"
            )
            .is_empty(),
            "cluster.primary names the primary, port and all"
        );
        assert!(pg("127.0.0.1:8082", "http://lb.internal:8080", "").is_empty());
    }

    #[test]
    fn a_passthrough_glob_covering_everything_is_warned_about() {
        let with = |globs: &str| {
            let text = format!(
                "[proxy]\napp = \"http://127.0.0.1:8081\"\n[routing]\npassthrough = [{globs}]\n"
            );
            warnings(&super::super::parse(&text).unwrap())
        };
        for everything in [r#""/*""#, r#""/static/*", "/**""#, r#""/{*,x}""#] {
            let found = with(everything);
            assert_eq!(found.len(), 1, "{everything}: {found:?}");
            assert_eq!(found[0].key, "routing.passthrough");
            assert!(
                found[0].message.contains("matches every path"),
                "{}",
                found[0]
            );
        }
        for narrow in [r#""/static/*", "/*.ico""#, r#""/health*""#, ""] {
            assert!(with(narrow).is_empty(), "{narrow}");
        }
    }

    #[test]
    fn other_sources_are_not_warned_about() {
        assert!(warnings(&config("static", "100ms", "100ms")).is_empty());
    }
}
