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
