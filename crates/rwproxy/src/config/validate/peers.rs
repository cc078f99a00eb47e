//! Peer-aware health: `cluster.peers`, `cluster.peers_dns`, `cluster.peer_poll` and the
//! `health.fail_static*` policy keys.

use std::time::Duration;

use rwproxy_http::health::FailStaticPolicy;

use super::super::raw::{RawCluster, RawHealth};
use super::super::{values, PeersConfig};
use super::Checker;

/// Default `cluster.peer_poll`: a lost primary waits about three rounds for the peers' word.
const PEER_POLL: Duration = Duration::from_millis(500);

pub(super) fn peers(c: &mut Checker<'_>, cluster: &RawCluster, health: &RawHealth) -> PeersConfig {
    let mut urls = Vec::new();
    for (i, text) in cluster.peers.iter().flatten().enumerate() {
        let key = format!("cluster.peers[{i}]");
        match values::parse_origin(text, &["http", "https"]) {
            Ok(uri) => match (uri.scheme_str(), uri.authority()) {
                (Some(scheme), Some(authority)) => urls.push(format!("{scheme}://{authority}")),
                _ => c.report(&key, format!("invalid URL {text:?}")),
            },
            Err(message) => c.report(
                &key,
                format!("{message}; a peer's admin listener, e.g. \"http://10.0.0.6:9090\""),
            ),
        }
    }
    let dns = match cluster.peers_dns.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let has_port = text
                .rsplit_once(':')
                .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
            if !has_port {
                c.report(
                    "cluster.peers_dns",
                    format!("invalid {text:?} (expected NAME:PORT, e.g. \"app.internal:9090\")"),
                );
            }
            Some(text.to_owned())
        }
    };
    let poll = c.nonzero_duration("cluster.peer_poll", &cluster.peer_poll, PEER_POLL);
    let defaults = FailStaticPolicy::default();
    let agree = health.fail_static_agree.unwrap_or(defaults.agree);
    if !(0.0..=1.0).contains(&agree) {
        c.report(
            "health.fail_static_agree",
            format!("{agree} is not a share between 0.0 and 1.0"),
        );
    }
    let max = c.duration(
        "health.fail_static_max",
        &health.fail_static_max,
        defaults.max_duration.unwrap_or_default(),
    );
    PeersConfig {
        urls,
        dns,
        poll,
        policy: FailStaticPolicy {
            enabled: health.fail_static.unwrap_or(defaults.enabled),
            agree: agree.clamp(0.0, 1.0),
            min_peers: health
                .fail_static_min_peers
                .map_or(defaults.min_peers, |n| n as usize),
            // "0s": no limit.
            max_duration: (!max.is_zero()).then_some(max),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use crate::config::{parse, Config};
    use std::time::Duration;

    const MINIMAL: &str = "[proxy]\napp = \"http://127.0.0.1:8081\"\n";

    fn ok(extra: &str) -> Config {
        parse(&format!("{MINIMAL}{extra}")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(extra: &str) -> Vec<String> {
        match parse(&format!("{MINIMAL}{extra}")) {
            Ok(_) => panic!("expected problems"),
            Err(errors) => errors.0.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_are_on_with_no_peers() {
        let c = ok("");
        assert!(c.peers.urls.is_empty());
        assert_eq!(c.peers.dns, None);
        assert!(!c.peers.any());
        assert_eq!(c.peers.poll, Duration::from_millis(500));
        let p = c.peers.policy;
        assert!(p.enabled);
        assert_eq!((p.agree, p.min_peers), (0.5, 1));
        assert_eq!(p.max_duration, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn every_key() {
        let c = ok(r#"
[cluster]
peers = ["http://10.0.0.6:9090/", "https://node-b.internal:9443"]
peers_dns = "app.internal:9090"
peer_poll = "250ms"
[health]
fail_static = false
fail_static_agree = 1.0
fail_static_min_peers = 2
fail_static_max = "0s"
"#);
        assert_eq!(
            c.peers.urls,
            ["http://10.0.0.6:9090", "https://node-b.internal:9443"]
        );
        assert_eq!(c.peers.dns.as_deref(), Some("app.internal:9090"));
        assert_eq!(c.peers.poll, Duration::from_millis(250));
        let p = c.peers.policy;
        assert!(!p.enabled);
        assert_eq!((p.agree, p.min_peers, p.max_duration), (1.0, 2, None));
    }

    #[test]
    fn bad_values_name_their_key() {
        let found = problems(
            r#"
[cluster]
peers = ["10.0.0.6:9090", "http://ok:1"]
peers_dns = "app.internal"
peer_poll = "0s"
[health]
fail_static_agree = 1.5
fail_static_max = "soon"
"#,
        );
        let keys: Vec<&str> = found
            .iter()
            .map(|p| p.split(": ").next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "cluster.peers[0]",
                "cluster.peers_dns",
                "cluster.peer_poll",
                "health.fail_static_agree",
                "health.fail_static_max"
            ],
            "{found:?}"
        );
    }
}
